/*
 * test_container.c - the object container: round trips at the chunk
 * boundaries, the released vector in tests/vectors/container-v1/ (decoded
 * both by crypt_open_fd and by a from-the-spec decoder that uses libsodium
 * and zstd alone, as docs/FORMAT.md promises), and refusal of every damaged,
 * truncated, extended or foreign object. Run with cwd = repo root.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <zstd.h>

#include "common/err.h"
#include "shipper/container.h"
#include "shipper/stream_push.h"

#define VECTOR_DIR "tests/vectors/container-v1/"
#define REFUSED_DIR "tests/vectors/container-v1-refused/"
/* From tests/vectors/container-v1/README; the vector is never regenerated. */
#define VECTOR_PLAIN_SIZE 413333
#define VECTOR_PLAIN_SHA256 "8c16a257207bf5e10d2ff5e3d92549caa524a738d6f138ec58cef7b87cd5824d"
#define VECTOR_KEY_ID "9a509666238b7c71"
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#define HEADER 122
#define ABYTES 17
#define CHUNK 65536

static unsigned char test_pk[32], test_sk[32];
static unsigned char other_pk[32], other_sk[32];

/* ---- helpers ---- */

static void sha256(const void *buf, size_t len, unsigned char out[32])
{
    unsigned int out_len = 0;

    assert_int_equal(EVP_Digest(buf, len, out, &out_len, EVP_sha256(), NULL), 1);
    assert_int_equal(out_len, 32);
}

static void to_hex(const unsigned char *bin, size_t len, char *out)
{
    size_t i;

    for (i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", bin[i]);
}

static int temp_fd(void)
{
    char name[] = "/tmp/cst-test-container-XXXXXX";
    int fd = mkstemp(name);

    assert_true(fd >= 0);
    assert_int_equal(unlink(name), 0);
    return fd;
}

static int fd_holding(const unsigned char *buf, size_t len)
{
    int fd = temp_fd();

    assert_int_equal(pwrite(fd, buf, len, 0), (ssize_t)len);
    return fd;
}

/* Whole contents of fd (tests only; the code under test never does this). */
static unsigned char *slurp_fd(int fd, size_t *len)
{
    struct stat st;
    unsigned char *buf;

    assert_int_equal(fstat(fd, &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
    *len = (size_t)st.st_size;
    return buf;
}

static unsigned char *slurp_path(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    unsigned char *buf;

    if (fd < 0)
        fail_msg("cannot open %s (run the test from the repo root): %s", path, strerror(errno));
    buf = slurp_fd(fd, len);
    close(fd);
    return buf;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* A key file: "custodian <kind> v1\n<64 lowercase hex>\n". */
static void read_key_file(const char *path, const char *kind, unsigned char key[32])
{
    char first_line[128];
    size_t len, i;
    unsigned char *text = slurp_path(path, &len);
    const char *hex;

    snprintf(first_line, sizeof(first_line), "custodian %s v1\n", kind);
    assert_true(len == strlen(first_line) + 65);
    assert_memory_equal(text, first_line, strlen(first_line));
    hex = (const char *)text + strlen(first_line);
    assert_int_equal(hex[64], '\n');
    for (i = 0; i < 32; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

        assert_true(hi >= 0 && lo >= 0);
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    free(text);
}

static void fill_compressible(unsigned char *buf, size_t len)
{
    size_t at = 0;
    unsigned line = 0;

    while (at < len) {
        char text[128];
        int n = snprintf(text, sizeof(text), "invoice INV-%06u amount=%u.%02u status=paid\n", line,
                         (line * 7919) % 5000, line % 100);
        size_t take = (size_t)n < len - at ? (size_t)n : len - at;

        memcpy(buf + at, text, take);
        at += take;
        line++;
    }
}

static unsigned char *make_data(size_t len, int compressible)
{
    unsigned char *buf = malloc(len + 1);

    assert_non_null(buf);
    if (compressible)
        fill_compressible(buf, len);
    else
        randombytes_buf(buf, len);
    return buf;
}

/* Seal buf into a fresh temp file in writes of `step` bytes; returns the fd. */
static int seal_buffer(const unsigned char *pk, int level, const unsigned char *buf, size_t len,
                       size_t step, struct crypt_sealed_info *info)
{
    struct cst_err err = {{0}};
    int fd = temp_fd();
    struct crypt_sealer *s = crypt_sealer_new(pk, level, fd, &err);
    size_t at = 0;

    if (s == NULL)
        fail_msg("crypt_sealer_new: %s", err.msg);
    do {
        size_t n = len - at < step ? len - at : step;

        if (crypt_sealer_write(s, buf + at, n, &err) != 0)
            fail_msg("crypt_sealer_write: %s", err.msg);
        at += n;
    } while (at < len);
    if (crypt_sealer_finish(s, info, &err) != 0)
        fail_msg("crypt_sealer_finish: %s", err.msg);
    crypt_sealer_free(s);
    return fd;
}

/* Open the object in in_fd (from offset 0) into a temp file; returns crypt_open_fd's result. */
static int open_to_buffer(int in_fd, const unsigned char *pk, const unsigned char *sk,
                          unsigned char **out, size_t *out_len, unsigned char sha[32],
                          uint64_t *size, struct cst_err *err)
{
    int out_fd = temp_fd();
    int rc;

    assert_int_equal(lseek(in_fd, 0, SEEK_SET), 0);
    rc = crypt_open_fd(in_fd, out_fd, pk, sk, sha, size, err);
    if (out != NULL && out_len != NULL)
        *out = slurp_fd(out_fd, out_len);
    close(out_fd);
    return rc;
}

/* Open in_fd discarding the plaintext; the object must be refused as damaged. */
static void assert_refused_as_damaged(int in_fd, const char *what, size_t position)
{
    struct cst_err err = {{0}};
    int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    int rc;

    assert_true(null_fd >= 0);
    assert_int_equal(lseek(in_fd, 0, SEEK_SET), 0);
    rc = crypt_open_fd(in_fd, null_fd, test_pk, test_sk, NULL, NULL, &err);
    close(null_fd);
    if (rc != -1)
        fail_msg("%s at %zu was accepted", what, position);
    if (strncmp(err.msg, "integrity error: ", 17) != 0)
        fail_msg("%s at %zu: unexpected message: %s", what, position, err.msg);
}

/* ---- round trips ---- */

static void round_trip(size_t len, int level, int compressible, size_t step)
{
    unsigned char *data = make_data(len, compressible);
    unsigned char want_sha[32], got_sha[32], stored_sha[32];
    struct crypt_sealed_info info;
    struct cst_err err = {{0}};
    unsigned char *object, *plain;
    size_t object_len, plain_len;
    uint64_t size = 0;
    int fd, expect_compressed;

    memset(&info, 0xaa, sizeof(info));
    fd = seal_buffer(test_pk, level, data, len, step, &info);
    sha256(data, len, want_sha);
    assert_int_equal(info.plain_size, len);
    assert_memory_equal(info.plain_sha256, want_sha, 32);

    if (level == 0)
        expect_compressed = 0;
    else if (level == CRYPT_LEVEL_AUTO)
        expect_compressed = compressible && len >= 65535;
    else
        expect_compressed = 1;
    if (info.compressed != expect_compressed)
        fail_msg("len=%zu level=%d compressible=%d: compressed=%d", len, level, compressible,
                 info.compressed);

    object = slurp_fd(fd, &object_len);
    assert_int_equal(info.stored_size, object_len);
    sha256(object, object_len, stored_sha);
    assert_memory_equal(info.stored_sha256, stored_sha, 32);
    assert_int_equal(object[9], expect_compressed ? 1 : 0);
    if (!expect_compressed) {
        /* Raw payload: full 64 KiB chunks, then the final one (never empty unless len is 0). */
        size_t chunks = len == 0 ? 1 : (len + CHUNK - 1) / CHUNK;

        assert_int_equal(object_len, HEADER + chunks * (4 + ABYTES) + len);
    }

    assert_int_equal(open_to_buffer(fd, test_pk, test_sk, &plain, &plain_len, got_sha, &size, &err),
                     0);
    assert_int_equal(plain_len, len);
    assert_int_equal(size, len);
    if (len > 0)
        assert_memory_equal(plain, data, len);
    assert_memory_equal(got_sha, want_sha, 32);

    free(plain);
    free(object);
    free(data);
    close(fd);
}

static void test_round_trips(void **state)
{
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 3 * 1024 * 1024};
    static const int levels[] = {CRYPT_LEVEL_AUTO, 0, 3};
    size_t i, j;
    int compressible;

    (void)state;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        for (j = 0; j < sizeof(levels) / sizeof(levels[0]); j++)
            for (compressible = 0; compressible <= 1; compressible++) {
                /* Alternate one big write with odd-sized ones that straddle every buffer. */
                size_t step = (i + j + (size_t)compressible) % 2 ? 4093 : SIZE_MAX;

                round_trip(sizes[i], levels[j], compressible, step);
            }
}

/* A small object (the whole plaintext in one chunk) is compressed in one pass: compressible
 * text is stored compressed, random bytes raw, in one chunk after the header, whether it came
 * in one write or many. */
static void test_small_object_one_pass(void **state)
{
    static const size_t steps[] = {SIZE_MAX, 100};

    (void)state;
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++)
        for (int compressible = 0; compressible <= 1; compressible++) {
            unsigned char *data = make_data(4096, compressible), *object, *plain;
            unsigned char want_sha[32], got_sha[32];
            struct crypt_sealed_info info;
            struct cst_err err = {{0}};
            size_t object_len, plain_len;
            uint64_t size = 0;
            int fd = seal_buffer(test_pk, CRYPT_LEVEL_AUTO, data, 4096, steps[k], &info);

            sha256(data, 4096, want_sha);
            assert_int_equal(info.compressed, compressible);
            object = slurp_fd(fd, &object_len);
            assert_int_equal(object_len, info.stored_size);
            assert_int_equal(object[9], compressible ? 1 : 0);
            if (compressible)
                assert_true(object_len < HEADER + 4 + ABYTES + 4096 / 2);
            else
                assert_int_equal(object_len, HEADER + 4 + ABYTES + 4096);
            /* One chunk: its length prefix covers everything after the header. */
            assert_int_equal(object[HEADER] | object[HEADER + 1] << 8 | object[HEADER + 2] << 16 |
                                 (uint32_t)object[HEADER + 3] << 24,
                             object_len - HEADER - 4);
            assert_int_equal(
                open_to_buffer(fd, test_pk, test_sk, &plain, &plain_len, got_sha, &size, &err), 0);
            assert_int_equal(plain_len, 4096);
            assert_memory_equal(plain, data, 4096);
            assert_memory_equal(got_sha, want_sha, 32);
            free(plain);
            free(object);
            free(data);
            close(fd);
        }
}

static void test_other_levels(void **state)
{
    (void)state;
    round_trip(300000, 1, 1, 1000);
    round_trip(300000, 19, 1, 70000);
    round_trip(200000, 19, 0, 1);
}

/* One sealer reused for several objects (as each sealing worker does): every object
 * opens to its own content, and each has its own object key and stream header. */
static void test_reset_reuses_a_sealer(void **state)
{
    static const size_t sizes[] = {300000, 17, 0, 70000, 4000};
    unsigned char headers[5][HEADER];
    struct cst_err err = {{0}};
    struct crypt_sealer *s = NULL;

    (void)state;
    for (size_t i = 0; i < 5; i++) {
        unsigned char *data = make_data(sizes[i], i % 2 == 0);
        unsigned char *object, *plain = NULL;
        size_t object_len, plain_len = 0;
        struct crypt_sealed_info info;
        int fd = temp_fd();

        if (s == NULL)
            s = crypt_sealer_new(test_pk, CRYPT_LEVEL_AUTO, fd, &err);
        else
            assert_int_equal(crypt_sealer_reset(s, test_pk, fd, &err), 0);
        assert_non_null(s);
        if (i == 3) {
            /* Abandoned mid-object after an error: the next reset still starts clean. */
            assert_int_equal(crypt_sealer_write(s, data, sizes[i], &err), 0);
            assert_int_equal(crypt_sealer_finish(s, &info, &err), 0);
            assert_int_equal(crypt_sealer_write(s, data, 1, &err), -1);
            assert_int_equal(crypt_sealer_reset(s, test_pk, fd, &err), 0);
            assert_int_equal(ftruncate(fd, 0), 0);
            assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        }
        assert_int_equal(crypt_sealer_write(s, data, sizes[i], &err), 0);
        assert_int_equal(crypt_sealer_finish(s, &info, &err), 0);
        assert_int_equal(info.plain_size, sizes[i]);
        object = slurp_fd(fd, &object_len);
        assert_int_equal(info.stored_size, object_len);
        memcpy(headers[i], object, HEADER);
        for (size_t k = 0; k < i; k++)
            assert_memory_not_equal(headers[k] + 18, headers[i] + 18, HEADER - 18);
        assert_int_equal(open_to_buffer(fd, test_pk, test_sk, &plain, &plain_len, NULL, NULL, &err),
                         0);
        assert_int_equal(plain_len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(plain, data, sizes[i]);
        free(plain);
        free(object);
        free(data);
        close(fd);
    }
    crypt_sealer_free(s);
}

/* A whole plaintext given with its digest (a small file hashed to name it): the same
 * object as written in parts, opened to the same bytes, on a fresh and a reused sealer;
 * nothing may be written after it, nor the whole after a part. */
static void test_write_whole_takes_the_callers_digest(void **state)
{
    static const size_t sizes[] = {0, 17, 4096, 200000};
    struct cst_err err = {{0}};
    struct crypt_sealer *s = NULL;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        unsigned char *data = make_data(sizes[i], i % 2 == 1), *plain = NULL;
        unsigned char sha[32], got_sha[32];
        struct crypt_sealed_info info;
        size_t plain_len = 0;
        uint64_t size = 0;
        int fd = temp_fd();

        sha256(data, sizes[i], sha);
        if (s == NULL)
            s = crypt_sealer_new(test_pk, CRYPT_LEVEL_AUTO, fd, &err);
        else
            assert_int_equal(crypt_sealer_reset(s, test_pk, fd, &err), 0);
        assert_non_null(s);
        assert_int_equal(crypt_sealer_write_whole(s, data, sizes[i], sha, &err), 0);
        assert_int_equal(crypt_sealer_finish(s, &info, &err), 0);
        assert_int_equal(info.plain_size, sizes[i]);
        assert_memory_equal(info.plain_sha256, sha, 32);
        assert_int_equal(
            open_to_buffer(fd, test_pk, test_sk, &plain, &plain_len, got_sha, &size, &err), 0);
        assert_int_equal(plain_len, sizes[i]);
        if (sizes[i] > 0)
            assert_memory_equal(plain, data, sizes[i]);
        assert_memory_equal(got_sha, sha, 32);
        free(plain);
        free(data);
        close(fd);
    }
    /* Misuse fails the object, and the next reset starts clean. */
    assert_int_equal(crypt_sealer_reset(s, test_pk, -1, &err), 0);
    assert_int_equal(
        crypt_sealer_write_whole(s, "ab", 2,
                                 (const unsigned char *)"0123456789abcdef0123456789abcdef", &err),
        0);
    assert_int_equal(crypt_sealer_write(s, "c", 1, &err), -1);
    assert_non_null(strstr(err.msg, "after the whole"));
    assert_int_equal(crypt_sealer_reset(s, test_pk, -1, &err), 0);
    assert_int_equal(crypt_sealer_write(s, "a", 1, &err), 0);
    assert_int_equal(
        crypt_sealer_write_whole(s, "b", 1,
                                 (const unsigned char *)"0123456789abcdef0123456789abcdef", &err),
        -1);
    crypt_sealer_free(s);
}

static void test_header_layout(void **state)
{
    struct crypt_sealed_info info;
    unsigned char id[8];
    unsigned char *object;
    size_t len;
    int fd;

    (void)state;
    fd = seal_buffer(test_pk, 0, (const unsigned char *)"", 0, 1, &info);
    object = slurp_fd(fd, &len);
    assert_int_equal(len, HEADER + 4 + ABYTES);
    assert_memory_equal(object, "CSTDOBJ\n", 8);
    assert_int_equal(object[8], 1);
    assert_int_equal(object[9], 0);
    crypt_key_id(test_pk, id);
    assert_memory_equal(object + 10, id, 8);
    assert_memory_equal(object + HEADER, "\x11\x00\x00\x00", 4);
    free(object);
    close(fd);
}

static void test_pipes(void **state)
{
    unsigned char data[3000], sha[32], want[32], out[4000];
    struct crypt_sealed_info info;
    struct cst_err err = {{0}};
    struct crypt_sealer *s;
    int object_pipe[2], plain_pipe[2];
    uint64_t size = 0;

    (void)state;
    fill_compressible(data, sizeof(data));
    sha256(data, sizeof(data), want);
    assert_int_equal(pipe(object_pipe), 0);
    assert_int_equal(pipe(plain_pipe), 0);
    s = crypt_sealer_new(test_pk, CRYPT_LEVEL_AUTO, object_pipe[1], &err);
    assert_non_null(s);
    assert_int_equal(crypt_sealer_write(s, data, sizeof(data), &err), 0);
    assert_int_equal(crypt_sealer_finish(s, &info, &err), 0);
    crypt_sealer_free(s);
    close(object_pipe[1]);
    if (crypt_open_fd(object_pipe[0], plain_pipe[1], test_pk, test_sk, sha, &size, &err) != 0)
        fail_msg("open from pipe: %s", err.msg);
    close(plain_pipe[1]);
    assert_int_equal(read(plain_pipe[0], out, sizeof(out)), sizeof(data));
    assert_memory_equal(out, data, sizeof(data));
    assert_memory_equal(sha, want, 32);
    assert_int_equal(size, sizeof(data));
    close(object_pipe[0]);
    close(plain_pipe[0]);
}

static void test_misuse(void **state)
{
    struct cst_err err = {{0}};
    struct crypt_sealed_info info;
    struct crypt_sealer *s;
    unsigned char zero_pk[32] = {0};
    int fd;

    (void)state;
    crypt_sealer_free(NULL);
    assert_null(crypt_sealer_new(test_pk, 20, 1, &err));
    assert_non_null(strstr(err.msg, "out of range"));
    assert_null(crypt_sealer_new(test_pk, -1, 1, &err));
    /* A low-order point would seal the key to something anyone can open. */
    assert_null(crypt_sealer_new(zero_pk, 0, 1, &err));

    fd = temp_fd();
    s = crypt_sealer_new(test_pk, 3, fd, &err);
    assert_non_null(s);
    assert_int_equal(crypt_sealer_finish(s, &info, &err), 0);
    assert_int_equal(crypt_sealer_write(s, "x", 1, &err), -1);
    assert_int_equal(crypt_sealer_finish(s, &info, &err), -1);
    crypt_sealer_free(s);
    close(fd);

    /* Freed mid-stream: nothing leaks, the key is wiped. */
    fd = temp_fd();
    s = crypt_sealer_new(test_pk, CRYPT_LEVEL_AUTO, fd, &err);
    assert_non_null(s);
    assert_int_equal(crypt_sealer_write(s, "abc", 3, &err), 0);
    crypt_sealer_free(s);
    close(fd);
}

static void test_io_errors_are_not_integrity_errors(void **state)
{
    unsigned char data[200000];
    struct cst_err err = {{0}};
    struct crypt_sealer *s;
    int dir_fd, null_fd;

    (void)state;
    /* Writes start once the 128 KiB trial is decided. */
    memset(data, 'a', sizeof(data));
    s = crypt_sealer_new(test_pk, CRYPT_LEVEL_AUTO, -1, &err);
    assert_non_null(s);
    assert_int_equal(crypt_sealer_write(s, data, sizeof(data), &err), -1);
    assert_non_null(strstr(err.msg, "cannot write sealed object"));
    assert_int_equal(crypt_sealer_write(s, data, 1, &err), -1);
    assert_int_equal(crypt_sealer_finish(s, NULL, &err), -1);
    crypt_sealer_free(s);

    dir_fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    assert_int_equal(crypt_open_fd(dir_fd, null_fd, test_pk, test_sk, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "cannot read object"));
    assert_null(strstr(err.msg, "integrity error"));
    close(dir_fd);
    close(null_fd);
}

/* ---- the released vector ---- */

/*
 * docs/FORMAT.md, "Decrypting with libsodium alone", step by step and with
 * nothing from container.c, so the spec and the code cannot drift apart.
 */
/* docs/FORMAT.md section 5, frame_ok, as printed there. */
static int frame_ok(const unsigned char *p, size_t len)
{
    unsigned fhd, single, n;
    unsigned long long window = 0;

    if (len < 6 || p[0] != 0x28 || p[1] != 0xb5 || p[2] != 0x2f || p[3] != 0xfd)
        return 0;
    fhd = p[4];
    if ((fhd & 0x08) || !(fhd & 0x04) || (fhd & 0x03))
        return 0;
    single = fhd >> 5 & 1;
    n = (fhd >> 6) == 0 ? single : 1u << (fhd >> 6); /* content size bytes */
    if (len < 5 + !single + n)
        return 0;
    if (!single) {
        unsigned long long base = 1ull << (10 + (p[5] >> 3));
        window = base + base / 8 * (p[5] & 7);
    } else {
        for (unsigned i = 0; i < n; i++)
            window |= (unsigned long long)p[5 + i] << (8 * i);
        if (n == 2)
            window += 256;
    }
    return window <= 8u << 20;
}

static unsigned char *decode_by_the_spec(const unsigned char *object, size_t len,
                                         const unsigned char *pk, const unsigned char *sk,
                                         size_t plain_cap, size_t *plain_len)
{
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char key[32];
    unsigned char *payload = malloc(len), *plain;
    size_t payload_len = 0, at = HEADER;
    unsigned char tag = 0;

    assert_non_null(payload);
    assert_true(len >= HEADER);
    assert_memory_equal(object, "CSTDOBJ\n", 8);
    assert_int_equal(object[8], 1);
    assert_int_equal(object[9] & ~1, 0);
    assert_int_equal(crypto_box_seal_open(key, object + 18, 80, pk, sk), 0);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&st, object + 98, key), 0);
    while (tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        unsigned long long n = 0;
        uint32_t clen;

        assert_true(at + 4 <= len);
        clen = (uint32_t)object[at] | (uint32_t)object[at + 1] << 8 |
               (uint32_t)object[at + 2] << 16 | (uint32_t)object[at + 3] << 24;
        at += 4;
        assert_true(clen >= 17 && clen <= 65536 + 17 && at + clen <= len);
        assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(&st, payload + payload_len, &n,
                                                                    &tag, object + at, clen, object,
                                                                    HEADER),
                         0);
        payload_len += (size_t)n;
        at += clen;
    }
    assert_int_equal(at, len);
    sodium_memzero(key, sizeof(key));
    if ((object[9] & 1) == 0) {
        *plain_len = payload_len;
        return payload;
    }
    assert_true(frame_ok(payload, payload_len));
    plain = malloc(plain_cap + 1);
    assert_non_null(plain);
    {
        ZSTD_DCtx *z = ZSTD_createDCtx();
        ZSTD_inBuffer in = {payload, payload_len, 0};
        ZSTD_outBuffer out = {plain, plain_cap + 1, 0};

        assert_non_null(z);
        assert_false(ZSTD_isError(ZSTD_DCtx_setParameter(z, ZSTD_d_windowLogMax, 23)));
        assert_int_equal(ZSTD_decompressStream(z, &out, &in), 0); /* the frame ended... */
        assert_int_equal(in.pos, payload_len);                    /* ...with the payload */
        *plain_len = out.pos;
        ZSTD_freeDCtx(z);
    }
    free(payload);
    return plain;
}

static void test_vector(void **state)
{
    unsigned char pk[32], sk[32], derived_pk[32], id[8];
    unsigned char sha[32], out_sha[32];
    char hex[65];
    struct cst_err err = {{0}};
    unsigned char *plain, *object, *out, *by_spec;
    size_t plain_len, object_len, out_len, by_spec_len;
    uint64_t size = 0;
    int fd;

    (void)state;
    read_key_file(VECTOR_DIR "backup.pub", "backup-public-key", pk);
    read_key_file(VECTOR_DIR "backup.key", "backup-secret-key", sk);
    assert_int_equal(crypto_scalarmult_base(derived_pk, sk), 0);
    assert_memory_equal(derived_pk, pk, 32);
    crypt_key_id(pk, id);
    to_hex(id, 8, hex);
    assert_string_equal(hex, VECTOR_KEY_ID);

    plain = slurp_path(VECTOR_DIR "plain.bin", &plain_len);
    assert_int_equal(plain_len, VECTOR_PLAIN_SIZE);
    sha256(plain, plain_len, sha);
    to_hex(sha, 32, hex);
    assert_string_equal(hex, VECTOR_PLAIN_SHA256);

    object = slurp_path(VECTOR_DIR "object.bin", &object_len);
    assert_int_equal(object[9], 1); /* this vector exercises the zstd path */
    assert_memory_equal(object + 10, id, 8);
    fd = fd_holding(object, object_len);
    if (open_to_buffer(fd, pk, sk, &out, &out_len, out_sha, &size, &err) != 0)
        fail_msg("vector does not open: %s", err.msg);
    assert_int_equal(out_len, plain_len);
    assert_int_equal(size, plain_len);
    assert_memory_equal(out, plain, plain_len);
    assert_memory_equal(out_sha, sha, 32);
    close(fd);

    by_spec = decode_by_the_spec(object, object_len, pk, sk, plain_len, &by_spec_len);
    assert_int_equal(by_spec_len, plain_len);
    assert_memory_equal(by_spec, plain, plain_len);

    free(by_spec);
    free(out);
    free(object);
    free(plain);
}

static void test_vector_empty(void **state)
{
    unsigned char pk[32], sk[32], sha[32];
    char hex[65];
    struct cst_err err = {{0}};
    unsigned char *plain, *object, *out, *by_spec;
    size_t plain_len, object_len, out_len, by_spec_len;
    uint64_t size = 1;
    int fd;

    (void)state;
    read_key_file(VECTOR_DIR "backup.pub", "backup-public-key", pk);
    read_key_file(VECTOR_DIR "backup.key", "backup-secret-key", sk);
    plain = slurp_path(VECTOR_DIR "empty.bin", &plain_len);
    assert_int_equal(plain_len, 0);
    object = slurp_path(VECTOR_DIR "object-empty.bin", &object_len);
    assert_int_equal(object_len, HEADER + 4 + ABYTES);
    assert_int_equal(object[9], 0); /* and this one the raw path */
    fd = fd_holding(object, object_len);
    if (open_to_buffer(fd, pk, sk, &out, &out_len, sha, &size, &err) != 0)
        fail_msg("empty vector does not open: %s", err.msg);
    assert_int_equal(out_len, 0);
    assert_int_equal(size, 0);
    to_hex(sha, 32, hex);
    assert_string_equal(hex, EMPTY_SHA256);
    close(fd);

    by_spec = decode_by_the_spec(object, object_len, pk, sk, 0, &by_spec_len);
    assert_int_equal(by_spec_len, 0);

    free(by_spec);
    free(out);
    free(object);
    free(plain);
}

/* ---- refusal ---- */

static void flip_positions(const unsigned char *object, size_t len, size_t stride,
                           unsigned char mask)
{
    int fd = fd_holding(object, len);
    size_t pos;

    for (pos = 0; pos < len; pos += stride) {
        unsigned char flipped = object[pos] ^ mask;

        assert_int_equal(pwrite(fd, &flipped, 1, (off_t)pos), 1);
        assert_refused_as_damaged(fd, "flipped byte", pos);
        assert_int_equal(pwrite(fd, object + pos, 1, (off_t)pos), 1);
    }
    /* And the untouched object still opens. */
    {
        struct cst_err err = {{0}};

        assert_int_equal(open_to_buffer(fd, test_pk, test_sk, NULL, NULL, NULL, NULL, &err), 0);
    }
    close(fd);
}

static void flip_test(size_t len, int compressible, int level, size_t stride)
{
    unsigned char *data = make_data(len, compressible);
    struct crypt_sealed_info info;
    unsigned char *object;
    size_t object_len;
    int fd = seal_buffer(test_pk, level, data, len, 777, &info);

    object = slurp_fd(fd, &object_len);
    close(fd);
    flip_positions(object, object_len, stride, 0x01);
    if (stride == 1)
        flip_positions(object, object_len, stride, 0x80);
    free(object);
    free(data);
}

static void test_flip_every_byte_small(void **state)
{
    (void)state;
    flip_test(200, 0, 0, 1);              /* 343-byte object, raw */
    flip_test(200, 1, 3, 1);              /* zstd */
    flip_test(0, 0, CRYPT_LEVEL_AUTO, 1); /* empty, raw */
    flip_test(0, 0, 3, 1);                /* empty zstd frame */
}

static void test_flip_every_97th_byte_large(void **state)
{
    (void)state;
    flip_test(200000, 0, 0, 97);                /* 4 raw chunks */
    flip_test(400000, 0, 3, 97);                /* multi-chunk zstd frame */
    flip_test(600000, 1, CRYPT_LEVEL_AUTO, 97); /* compressible, 2+ chunks */
}

static void test_truncation(void **state)
{
    unsigned char *data = make_data(150000, 0);
    struct crypt_sealed_info info;
    unsigned char *object;
    size_t object_len;
    int fd = seal_buffer(test_pk, 0, data, 150000, 150000, &info);
    size_t first_chunk_end = HEADER + 4 + CHUNK + ABYTES;

    (void)state;
    object = slurp_fd(fd, &object_len);
    close(fd);
    assert_int_equal(object_len, HEADER + 3 * (4 + ABYTES) + 150000);
    {
        const size_t cuts[] = {0,
                               1,
                               7,
                               8,
                               9,
                               HEADER - 1,
                               HEADER,
                               HEADER + 1,
                               HEADER + 4,
                               HEADER + 5,
                               HEADER + 4 + 16,
                               first_chunk_end - 1,
                               first_chunk_end, /* a clean chunk boundary, but no final chunk */
                               first_chunk_end + 2,
                               first_chunk_end + 4 + CHUNK + ABYTES, /* after chunk 2 */
                               object_len - ABYTES,
                               object_len - 1};

        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
            fd = fd_holding(object, cuts[i]);
            assert_refused_as_damaged(fd, "truncation", cuts[i]);
            close(fd);
        }
    }
    free(object);
    free(data);
}

static void test_trailing_data(void **state)
{
    static const size_t sizes[] = {0, 200, 70000};
    unsigned char *data = make_data(70000, 1);
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct crypt_sealed_info info;
        int fd = seal_buffer(test_pk, i == 1 ? 3 : 0, data, sizes[i], 5000, &info);
        unsigned char *object;
        size_t object_len;

        object = slurp_fd(fd, &object_len);
        /* One more byte, then a whole second copy: both refused. */
        assert_int_equal(pwrite(fd, "\0", 1, (off_t)object_len), 1);
        assert_refused_as_damaged(fd, "trailing byte", object_len);
        assert_int_equal(pwrite(fd, object, object_len, (off_t)object_len), (ssize_t)object_len);
        assert_refused_as_damaged(fd, "object appended to itself", object_len);
        free(object);
        close(fd);
    }
    free(data);
}

static void test_wrong_key(void **state)
{
    unsigned char data[1000], want_id[8], our_id[8];
    char want_hex[17], our_hex[17], expect[256];
    struct crypt_sealed_info info;
    struct cst_err err = {{0}};
    int fd, null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

    (void)state;
    fill_compressible(data, sizeof(data));
    fd = seal_buffer(test_pk, CRYPT_LEVEL_AUTO, data, sizeof(data), 100, &info);
    crypt_key_id(test_pk, want_id);
    crypt_key_id(other_pk, our_id);
    to_hex(want_id, 8, want_hex);
    to_hex(our_id, 8, our_hex);
    snprintf(expect, sizeof(expect),
             "object was sealed to key id %s, not to this secret key (key id %s)", want_hex,
             our_hex);

    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(crypt_open_fd(fd, null_fd, other_pk, other_sk, NULL, NULL, &err), -1);
    assert_string_equal(err.msg, expect);

    /* A secret key that is not the public key's own is named as such, not as damage. */
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(crypt_open_fd(fd, null_fd, test_pk, other_sk, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "secret key does not belong to the public key"));
    close(fd);
    close(null_fd);
}

/* A forged object that inflates (8 MiB of zeros is a few hundred bytes sealed) stops at the
 * limit given, with at most that many bytes written, and opens in full at its own size. */
static void test_limit_stops_an_inflating_object(void **state)
{
    size_t len = 8u << 20;
    unsigned char *data = calloc(1, len), sha[32];
    struct crypt_sealed_info info;
    struct cst_err err = {{0}};
    uint64_t size = 0;
    int fd, out = temp_fd();
    struct stat st;

    (void)state;
    assert_non_null(data);
    fd = seal_buffer(test_pk, CRYPT_LEVEL_AUTO, data, len, len, &info);
    assert_true(info.compressed);
    assert_true(info.stored_size < 64 * 1024);

    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(crypt_open_fd_limit(fd, out, test_pk, test_sk, 1000, sha, &size, &err), -1);
    assert_non_null(strstr(err.msg, "integrity error: object decompresses to more than the 1000"));
    assert_int_equal(fstat(out, &st), 0);
    assert_true(st.st_size <= 1000);

    /* Exactly its size is fine, and one byte less is not. */
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(crypt_open_fd_limit(fd, out, test_pk, test_sk, len - 1, sha, &size, &err), -1);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(ftruncate(out, 0), 0);
    assert_int_equal(lseek(out, 0, SEEK_SET), 0);
    assert_int_equal(crypt_open_fd_limit(fd, out, test_pk, test_sk, len, sha, &size, &err), 0);
    assert_int_equal(size, len);
    assert_memory_equal(sha, info.plain_sha256, 32);
    close(fd);
    close(out);
    free(data);
}

/*
 * tests/vectors/container-v1-refused/: objects on the edge that must open, and objects
 * every reader must refuse (expected.tsv says which, and as what): zstd frames without a
 * checksum, with a window over 8 MiB, needing a dictionary, skippable frames, and the
 * container's own damage. Damage is an integrity error; another key is not.
 */
static void test_refused_vectors(void **state)
{
    size_t tsv_len, checked = 0;
    char *tsv = (char *)slurp_path(REFUSED_DIR "expected.tsv", &tsv_len);
    char *line, *save = NULL;
    unsigned char pk[32], sk[32];

    (void)state;
    tsv[tsv_len] = '\0';
    read_key_file(VECTOR_DIR "backup.pub", "backup-public-key", pk);
    read_key_file(VECTOR_DIR "backup.key", "backup-secret-key", sk);
    line = strtok_r(tsv, "\n", &save); /* the column names */
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        char name[128], verdict[32], want[80], path[256], hex[65];
        unsigned char sha[32];
        struct cst_err err = {{0}};
        int fd, rc;

        assert_int_equal(sscanf(line, "%127[^\t]\t%31[^\t]\t%79[^\t]", name, verdict, want), 3);
        snprintf(path, sizeof(path), REFUSED_DIR "%s", name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        rc = open_to_buffer(fd, pk, sk, NULL, NULL, sha, NULL, &err);
        close(fd);
        if (strcmp(verdict, "open") == 0) {
            if (rc != 0)
                fail_msg("%s must open: %s", name, err.msg);
            to_hex(sha, 32, hex);
            assert_string_equal(hex, want);
        } else if (rc == 0) {
            fail_msg("%s opened; it must be refused (%s)", name, verdict);
        } else if (strcmp(verdict, "integrity") == 0) {
            if (strncmp(err.msg, "integrity error: ", 17) != 0)
                fail_msg("%s: refused, but not as an integrity error: %s", name, err.msg);
        } else {
            assert_string_equal(verdict, "key-mismatch");
            if (strstr(err.msg, "integrity error") != NULL ||
                strstr(err.msg, "not to this secret key") == NULL)
                fail_msg("%s: not reported as another key's object: %s", name, err.msg);
        }
        checked++;
    }
    assert_true(checked >= 29);
    free(tsv);
}

static void test_key_id(void **state)
{
    unsigned char digest[32], id[8];

    (void)state;
    crypto_generichash(digest, 32, test_pk, 32, NULL, 0);
    crypt_key_id(test_pk, id);
    assert_memory_equal(id, digest, 8);
}

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    crypto_box_keypair(test_pk, test_sk);
    crypto_box_keypair(other_pk, other_sk);
    return 0;
}

/* One chunk pushed by stream_push and by libsodium's push from the same state: the same
 * bytes out and the same state after. */
static void push_both(struct stream_push *p, crypto_secretstream_xchacha20poly1305_state *ours,
                      crypto_secretstream_xchacha20poly1305_state *theirs, const unsigned char *m,
                      size_t mlen, const unsigned char *ad, size_t adlen, unsigned char tag)
{
    size_t n = mlen + crypto_secretstream_xchacha20poly1305_ABYTES;
    unsigned char *a = malloc(n), *b = malloc(n);
    unsigned long long blen = 0;
    struct cst_err err = {{0}};

    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(stream_push(p, ours, a, m, mlen, ad, adlen, tag, &err), 0);
    assert_int_equal(
        crypto_secretstream_xchacha20poly1305_push(theirs, b, &blen, m, mlen, ad, adlen, tag), 0);
    assert_int_equal(blen, n);
    if (memcmp(a, b, n) != 0)
        fail_msg("chunk of %zu bytes (ad %zu, tag %u) differs from libsodium's", mlen, adlen, tag);
    if (memcmp(ours, theirs, sizeof(*ours)) != 0)
        fail_msg("state after a chunk of %zu bytes (ad %zu, tag %u) differs", mlen, adlen, tag);
    free(a);
    free(b);
}

/* The chunks' encryption is libsodium's secretstream push, byte for byte and state for
 * state, whichever does the work: every length around the switch to OpenSSL and the
 * 16-byte padding, a whole chunk and more, each tag, the header as additional data or
 * none, one stream of many chunks, and the counter's wrap-around (a rekey). */
static void test_stream_push_is_libsodiums(void **state)
{
    static const size_t lengths[] = {0,    1,    15,   16,    17,    63,    64,     65,
                                     1023, 1024, 2047, 2048,  2049,  2063,  2064,   4095,
                                     4096, 4097, 9999, 65535, 65536, 65537, 100000, 1 << 20};
    static const unsigned char tags[] = {crypto_secretstream_xchacha20poly1305_TAG_MESSAGE,
                                         crypto_secretstream_xchacha20poly1305_TAG_PUSH,
                                         crypto_secretstream_xchacha20poly1305_TAG_REKEY,
                                         crypto_secretstream_xchacha20poly1305_TAG_FINAL};
    static const size_t adlens[] = {0, 1, 16, CRYPT_HEADER_SIZE};
    crypto_secretstream_xchacha20poly1305_state ours, theirs;
    unsigned char key[32], header[24], ad[CRYPT_HEADER_SIZE];
    unsigned char *m = malloc(1 << 20);
    struct cst_err err = {{0}};
    struct stream_push *p = stream_push_new();

    (void)state;
    assert_non_null(p);
    assert_non_null(m);
    randombytes_buf(m, 1 << 20);
    randombytes_buf(ad, sizeof(ad));
    crypto_secretstream_xchacha20poly1305_keygen(key);
    assert_int_equal(crypto_secretstream_xchacha20poly1305_init_push(&ours, header, key), 0);
    theirs = ours;
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++)
        for (size_t t = 0; t < sizeof(tags); t++)
            for (size_t a = 0; a < sizeof(adlens) / sizeof(adlens[0]); a++)
                push_both(p, &ours, &theirs, m, lengths[i], ad, adlens[a], tags[t]);
    for (size_t len = 0; len < 300; len++)
        push_both(p, &ours, &theirs, m + len, 2048 + len * 7, ad, CRYPT_HEADER_SIZE,
                  crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    /* The counter wraps: libsodium rekeys (its own rekey: versions differ in where the
     * counter starts again), and so must we. */
    memset(ours.nonce, 0xff, 4);
    theirs = ours;
    memcpy(key, ours.k, sizeof(key));
    push_both(p, &ours, &theirs, m, 65536, ad, CRYPT_HEADER_SIZE,
              crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
    assert_memory_not_equal(key, ours.k, sizeof(key));
    push_both(p, &ours, &theirs, m, 65536, ad, CRYPT_HEADER_SIZE,
              crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    stream_push_wipe(p);
    /* Still usable after a wipe (a reused sealer's next object). */
    push_both(p, &ours, &theirs, m, 5000, ad, CRYPT_HEADER_SIZE,
              crypto_secretstream_xchacha20poly1305_TAG_FINAL);
    assert_int_equal(stream_push(p, &ours, m, m, (1 << 20) + 1, ad, 0, 0, &err), -1);
    stream_push_free(p);
    free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_push_is_libsodiums),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_other_levels),
        cmocka_unit_test(test_small_object_one_pass),
        cmocka_unit_test(test_write_whole_takes_the_callers_digest),
        cmocka_unit_test(test_header_layout),
        cmocka_unit_test(test_reset_reuses_a_sealer),
        cmocka_unit_test(test_pipes),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_io_errors_are_not_integrity_errors),
        cmocka_unit_test(test_vector),
        cmocka_unit_test(test_vector_empty),
        cmocka_unit_test(test_flip_every_byte_small),
        cmocka_unit_test(test_flip_every_97th_byte_large),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_trailing_data),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_key_id),
        cmocka_unit_test(test_refused_vectors),
        cmocka_unit_test(test_limit_stops_an_inflating_object),
    };

    return cmocka_run_group_tests(tests, setup, NULL);
}
