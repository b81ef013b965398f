/*
 * test_snapshot.c - the pure parts of billing-cycle snapshots: how labels
 * become file names, the remote keys, retain-until dates, the storage class
 * per destination, the signature file, and the tar + zstd package written
 * and read back (agent/snapshot.c, agent/snapshot_tar.c), members hashed on
 * the writer's hasher thread, and the package sealed on a thread of its own
 * (agent/snapshot_seal.c), including its write errors.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/snapshot.h"
#include "agent/snapshot_seal.h"
#include "agent/snapshot_tar.h"
#include "common/util.h"
#include "shipper/container.h"

static void expect_escape(const char *label, const char *want)
{
    char *got = snapshot_escape_label(label);

    assert_string_equal(got, want);
    free(got);
}

static void test_escape_label(void **state)
{
    (void)state;
    expect_escape("2026-11", "2026-11");
    expect_escape("Nov 2026 (1)", "Nov 2026 (1)");
    expect_escape("Zoë-période", "Zoë-période");
    expect_escape("2026/11", "2026%2F11");
    expect_escape("..", "%2E.");
    expect_escape(".hidden.x", "%2Ehidden.x");
    expect_escape("a\\b", "a%5Cb");
    expect_escape("100%", "100%25");
    expect_escape("~x", "%7Ex");
    expect_escape("tab\there\nnl\x7f", "tab%09here%0Anl%7F");
    expect_escape("bad\xff\xc3(", "bad%FF%C3(");
    expect_escape("", "");
}

static void test_escape_long_label(void **state)
{
    char label[400], *got;
    unsigned char md[32];
    unsigned int n = 32;
    char hex[65], want_tail[18];

    (void)state;
    memset(label, 'a', 300);
    label[300] = '\0';
    got = snapshot_escape_label(label);
    EVP_Digest(label, 300, md, &n, EVP_sha256(), NULL);
    util_hex(md, 32, hex);
    snprintf(want_tail, sizeof(want_tail), "~%.16s", hex);
    assert_int_equal(strlen(got), 180 + 17);
    assert_string_equal(got + 180, want_tail);
    free(got);
    /* never cut inside %XX or a UTF-8 character */
    for (int i = 0; i < 100; i++)
        memcpy(label + 3 * i, "é/", 3);
    label[300] = '\0';
    got = snapshot_escape_label(label);
    assert_true(strlen(got) <= 200);
    assert_non_null(strchr(got, '~'));
    {
        size_t cut = (size_t)(strchr(got, '~') - got);

        /* the pieces are "é" (2 bytes) and "%2F" (3): the cut falls after a whole one */
        assert_true(cut >= 2 &&
                    (memcmp(got + cut - 3, "%2F", 3) == 0 || memcmp(got + cut - 2, "é", 2) == 0));
    }
    free(got);
}

static void test_keys(void **state)
{
    char *k;

    (void)state;
    k = snapshot_package_name("2026-11", "20261120");
    assert_string_equal(k, "snapshot_2026-11_20261120.tar.zst");
    free(k);
    k = snapshot_remote_key("a/b", "20261120");
    assert_string_equal(
        k, "backups/snapshots/billing-cycles/2026/snapshot_a%2Fb_20261120.tar.zst.cst");
    free(k);
    k = snapshot_sig_key("x", "20270102-open");
    assert_string_equal(
        k, "backups/snapshots/billing-cycles/2027/snapshot_x_20270102-open.tar.zst.sig");
    free(k);
}

static void test_retain_until(void **state)
{
    char when[40];

    (void)state;
    util_format_ms(snapshot_retain_until("20261120", 84), when, sizeof(when));
    assert_string_equal(when, "2033-11-20T00:00:00.000Z");
    util_format_ms(snapshot_retain_until("20240131", 1), when, sizeof(when));
    assert_string_equal(when, "2024-02-29T00:00:00.000Z");
    util_format_ms(snapshot_retain_until("20240229", 12), when, sizeof(when));
    assert_string_equal(when, "2025-02-28T00:00:00.000Z");
    util_format_ms(snapshot_retain_until("20261231-open", 1), when, sizeof(when));
    assert_string_equal(when, "2027-01-31T00:00:00.000Z");
    assert_int_equal(snapshot_retain_until("bad", 1), 0);
}

static void test_class_on(void **state)
{
    struct cfg_dest d;
    int archive;

    (void)state;
    memset(&d, 0, sizeof(d));
    d.type = CFG_DEST_LOCAL;
    assert_null(snapshot_class_on(&d, &archive));
    assert_false(archive);
    d.role = CFG_ROLE_ARCHIVE;
    assert_null(snapshot_class_on(&d, &archive));
    assert_true(archive);
    d.type = CFG_DEST_S3;
    d.role = CFG_ROLE_PRIMARY;
    d.hot_class = "STANDARD_IA";
    assert_string_equal(snapshot_class_on(&d, &archive), "STANDARD_IA");
    assert_false(archive);
    d.archive_class = "DEEP_ARCHIVE";
    assert_string_equal(snapshot_class_on(&d, &archive), "DEEP_ARCHIVE");
    assert_true(archive);
    d.archive_class = NULL;
    d.role = CFG_ROLE_ARCHIVE;
    assert_null(snapshot_class_on(&d, &archive)); /* the bucket's own default */
    assert_true(archive);
}

static char *make_sig(const unsigned char sk[64], const unsigned char pkg[32],
                      const unsigned char sealed[32])
{
    unsigned char msg[64], sig[64];
    char a[65], b[65], s[129];

    memcpy(msg, pkg, 32);
    memcpy(msg + 32, sealed, 32);
    crypto_sign_detached(sig, NULL, msg, 64, sk);
    util_hex(pkg, 32, a);
    util_hex(sealed, 32, b);
    util_hex(sig, 64, s);
    return util_printf("custodian snapshot-signature v1\npackage: p.tar.zst\npackage-sha256: "
                       "%s\npackage-size: 10\nsealed-sha256: %s\nsealed-size: 20\nsigns: x\n"
                       "signature: %s\n",
                       a, b, s);
}

static void test_signature(void **state)
{
    unsigned char pk[32], sk[64], other_pk[32], other_sk[64], pkg[32], sealed[32];
    struct snapshot_sig sig;
    struct cst_err err;
    char *text;

    (void)state;
    assert_true(sodium_init() >= 0);
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(other_pk, other_sk);
    randombytes_buf(pkg, 32);
    randombytes_buf(sealed, 32);
    text = make_sig(sk, pkg, sealed);
    assert_int_equal(snapshot_sig_check(text, pk, &sig, &err), 0);
    assert_memory_equal(sig.package_sha256, pkg, 32);
    assert_memory_equal(sig.sealed_sha256, sealed, 32);
    assert_int_equal(sig.package_size, 10);
    assert_int_equal(sig.sealed_size, 20);
    assert_string_equal(sig.package, "p.tar.zst");
    assert_int_equal(snapshot_sig_check(text, other_pk, &sig, &err), -1);
    assert_non_null(strstr(err.msg, "does not verify"));
    /* one hex digit of the signed hash changed */
    strstr(text, "package-sha256: ")[16] ^= 1;
    assert_int_equal(snapshot_sig_check(text, pk, &sig, &err), -1);
    free(text);
    assert_int_equal(snapshot_sig_check("custodian snapshot-signature v1\n", pk, &sig, &err), -1);
    assert_non_null(strstr(err.msg, "malformed"));
}

/* --- the package --- */

struct buf {
    unsigned char *data;
    size_t len, cap;
};

static int to_buf(void *arg, const void *p, size_t len)
{
    struct buf *b = arg;

    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    return 0;
}

struct seen {
    int n;
    char names[8][64];
    unsigned char sha[8][32];
    uint64_t size[8];
};

static int on_member(void *arg, const char *name, uint64_t size, struct tar_member *m)
{
    struct seen *s = arg;
    unsigned char buf[4096];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n32 = 32;
    struct cst_err err;
    ssize_t n;

    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
    s->size[s->n] = size;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = tar_member_read(m, buf, sizeof(buf), &err)) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)n);
    EVP_DigestFinal_ex(ctx, s->sha[s->n], &n32);
    EVP_MD_CTX_free(ctx);
    s->n++;
    return n < 0 ? -1 : 0;
}

/* Write members into a package in memory, then a file; returns its fd. */
static int package_fd(struct buf *b)
{
    char path[] = "/tmp/test_snapshot.XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(util_write_all(fd, b->data, b->len), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static void test_tar_round_trip(void **state)
{
    struct buf b = {NULL, 0, 0};
    struct cst_err err;
    struct tar_writer *t = tar_writer_new(to_buf, &b, &err);
    unsigned char sha_mem[32], sha_file[32], big[300000];
    char path[] = "/tmp/test_snapshot_in.XXXXXX";
    int in = mkstemp(path), fd;
    struct seen s;

    (void)state;
    assert_non_null(t);
    randombytes_buf(big, sizeof(big));
    assert_true(in >= 0);
    unlink(path);
    assert_int_equal(util_write_all(in, big, sizeof(big)), 0);
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    assert_int_equal(tar_add_mem(t, "period.json", "{\"a\":1}\n", 8, 1700000000, sha_mem, &err), 0);
    assert_int_equal(
        tar_add_fd(t, "files/invoices/Zoë naïve.pdf", in, sizeof(big), 1700000000, sha_file, &err),
        0);
    assert_int_equal(tar_add_mem(t, "empty.txt", "", 0, 1700000000, NULL, &err), 0);
    /* the file ends early: an error, never a short member */
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    assert_int_equal(tar_add_fd(t, "files/short", in, sizeof(big) + 1, 0, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "ended after"));
    tar_writer_free(t);
    close(in);

    /* a good package again, read back */
    free(b.data);
    memset(&b, 0, sizeof(b));
    t = tar_writer_new(to_buf, &b, &err);
    assert_int_equal(tar_add_mem(t, "period.json", "{\"a\":1}\n", 8, 1700000000, NULL, &err), 0);
    assert_int_equal(tar_add_mem(t, "files/x/Zoë.pdf", big, sizeof(big), 1700000000, NULL, &err),
                     0);
    assert_int_equal(tar_writer_finish(t, &err), 0);
    tar_writer_free(t);
    /* one zstd frame: the magic, nothing after its end */
    assert_memory_equal(b.data, "\x28\xb5\x2f\xfd", 4);
    fd = package_fd(&b);
    memset(&s, 0, sizeof(s));
    assert_int_equal(tar_each(fd, on_member, &s, &err), 0);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.names[0], "period.json");
    assert_memory_equal(s.sha[0], sha_mem, 32);
    assert_string_equal(s.names[1], "files/x/Zoë.pdf");
    assert_memory_equal(s.sha[1], sha_file, 32);
    assert_int_equal(s.size[1], sizeof(big));
    close(fd);
    free(b.data);
}

static void test_tar_refuses_unsafe_names(void **state)
{
    static const char *const bad[] = {"../etc/passwd", "/abs", "a/../../b", "a//b"};
    struct cst_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct buf b = {NULL, 0, 0};
        struct tar_writer *t = tar_writer_new(to_buf, &b, &err);
        struct seen s;
        int fd;

        assert_int_equal(tar_add_mem(t, bad[i], "x", 1, 0, NULL, &err), 0);
        assert_int_equal(tar_writer_finish(t, &err), 0);
        tar_writer_free(t);
        fd = package_fd(&b);
        memset(&s, 0, sizeof(s));
        assert_int_equal(tar_each(fd, on_member, &s, &err), -1);
        assert_non_null(strstr(err.msg, "not a safe relative path"));
        assert_int_equal(s.n, 0);
        close(fd);
        free(b.data);
    }
}

/* Members hashed on the hasher thread come back in member order, with their tags, even
 * the one whose file ended early; more outstanding than TAR_HASHED_MAX is refused. */
static void test_tar_hashed_in_member_order(void **state)
{
    struct buf b = {NULL, 0, 0};
    struct cst_err err;
    struct tar_writer *t = tar_writer_new(to_buf, &b, &err);
    static unsigned char big[3 * 700000];
    unsigned char sha[32], want[32];
    unsigned int n = 32;
    char path[] = "/tmp/test_snapshot_hashed.XXXXXX";
    int in = mkstemp(path);
    size_t tag, sizes[] = {0, 1, 700000, sizeof(big), 65536};

    (void)state;
    assert_non_null(t);
    assert_true(in >= 0);
    unlink(path);
    randombytes_buf(big, sizeof(big));
    assert_int_equal(util_write_all(in, big, sizeof(big)), 0);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(lseek(in, 0, SEEK_SET), 0);
        assert_int_equal(tar_add_fd_hashed(t, "files/a", in, sizes[i], 0, 100 + i, &err), 0);
    }
    /* the file ends early: an error, and still a result in its place */
    assert_int_equal(lseek(in, 0, SEEK_SET), 0);
    assert_int_equal(tar_add_fd_hashed(t, "files/short", in, sizeof(big) + 1, 0, 7, &err), -1);
    assert_non_null(strstr(err.msg, "ended after"));
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(tar_hashed(t, 1, &tag, sha), 1);
        assert_int_equal(tag, 100 + i);
        EVP_Digest(big, sizes[i], want, &n, EVP_sha256(), NULL);
        assert_memory_equal(sha, want, 32);
    }
    assert_int_equal(tar_hashed(t, 1, &tag, sha), 1);
    assert_int_equal(tag, 7);
    assert_int_equal(tar_hashed(t, 1, &tag, sha), 0); /* none outstanding */
    assert_int_equal(tar_hashed(t, 0, &tag, sha), 0);
    for (size_t i = 0; i < TAR_HASHED_MAX; i++)
        assert_int_equal(tar_add_fd_hashed(t, "files/e", in, 0, 0, i, &err), 0);
    assert_int_equal(tar_add_fd_hashed(t, "files/e", in, 0, 0, 0, &err), -1);
    assert_non_null(strstr(err.msg, "member hashes are not taken"));
    tar_writer_free(t); /* with results outstanding */
    close(in);
    free(b.data);
}

static void test_seal_pipe_round_trip(void **state)
{
    unsigned char pk[32], sk[32], sha[32], want[32];
    static unsigned char plain[5 * 1048576 + 12345];
    char sealed_path[] = "/tmp/test_snapshot_sealed.XXXXXX",
         open_path[] = "/tmp/test_snapshot_opened.XXXXXX";
    int sealed = mkstemp(sealed_path), opened = mkstemp(open_path);
    struct crypt_sealed_info info;
    struct cst_err err;
    struct seal_pipe *p;
    unsigned int n = 32;
    uint64_t size = 0;
    size_t off = 0, step = 1;

    (void)state;
    assert_true(sealed >= 0 && opened >= 0);
    unlink(sealed_path);
    unlink(open_path);
    crypto_box_keypair(pk, sk);
    randombytes_buf(plain, sizeof(plain));
    p = seal_pipe_new(pk, sealed, &err);
    assert_non_null(p);
    /* pieces of every size, across the 1 MiB hand-offs */
    while (off < sizeof(plain)) {
        size_t len = step < sizeof(plain) - off ? step : sizeof(plain) - off;

        assert_int_equal(seal_pipe_write(p, plain + off, len), 0);
        off += len;
        step = step * 3 + 1;
    }
    assert_null(seal_pipe_error(p));
    assert_int_equal(seal_pipe_finish(p, &info, &err), 0);
    seal_pipe_free(p);
    EVP_Digest(plain, sizeof(plain), want, &n, EVP_sha256(), NULL);
    assert_memory_equal(info.plain_sha256, want, 32);
    assert_int_equal(info.plain_size, sizeof(plain));
    assert_int_equal(info.stored_size, (uint64_t)lseek(sealed, 0, SEEK_END));
    assert_int_equal(lseek(sealed, 0, SEEK_SET), 0);
    assert_int_equal(crypt_open_fd(sealed, opened, pk, sk, sha, &size, &err), 0);
    assert_memory_equal(sha, want, 32);
    assert_int_equal(size, sizeof(plain));
    close(sealed);
    close(opened);
}

/* A write error on the sealing thread: the producer is told, never blocked, and the
 * error names what failed and why. */
static void test_seal_pipe_write_error(void **state)
{
    unsigned char pk[32], sk[32];
    static unsigned char plain[1 << 20];
    int full = open("/dev/full", O_WRONLY | O_CLOEXEC), failed = 0;
    struct crypt_sealed_info info;
    struct cst_err err;
    struct seal_pipe *p;

    (void)state;
    assert_true(full >= 0);
    crypto_box_keypair(pk, sk);
    p = seal_pipe_new(pk, full, &err);
    assert_non_null(p);
    for (int i = 0; i < 64 && !failed; i++)
        failed = seal_pipe_write(p, plain, sizeof(plain)) < 0;
    assert_true(failed);
    assert_non_null(seal_pipe_error(p));
    assert_non_null(strstr(seal_pipe_error(p), "No space left on device"));
    assert_int_equal(seal_pipe_finish(p, &info, &err), -1);
    assert_non_null(strstr(err.msg, "No space left on device"));
    assert_int_equal(seal_pipe_write(p, plain, 1), -1); /* after finish: nothing seals it */
    seal_pipe_free(p);

    /* abandoned while buffers are queued: free stops the thread */
    p = seal_pipe_new(pk, full, &err);
    assert_non_null(p);
    seal_pipe_write(p, plain, sizeof(plain));
    seal_pipe_write(p, plain, sizeof(plain) / 2);
    seal_pipe_free(p);
    close(full);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_label),
        cmocka_unit_test(test_escape_long_label),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_retain_until),
        cmocka_unit_test(test_class_on),
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_tar_round_trip),
        cmocka_unit_test(test_tar_refuses_unsafe_names),
        cmocka_unit_test(test_tar_hashed_in_member_order),
        cmocka_unit_test(test_seal_pipe_round_trip),
        cmocka_unit_test(test_seal_pipe_write_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
