/*
 * test_sftp.c - the pure logic of shipper/dest_sftp.c, without a server:
 * url parsing, remote keys and paths, the host key algorithms offered
 * first (from known_hosts), what each SFTP status or session failure means
 * (kind and message), what a host key check's answer means, and what
 * dest_sftp_new refuses (no known_hosts, a private key readable by others,
 * bad urls). Transfers are tested against a real sshd by the end-to-end
 * tests.
 *
 * (The backend used libcurl until it needed fsync@openssh.com; the tests of
 * libcurl's URL escaping, quote commands and long-listing parser went with
 * that code. Temporary names are store.c's now: tests/unit/test_store.c.)
 *
 * The file under test is included so that its static functions can be
 * called; its one public symbol is renamed so that it does not clash with
 * the copy in the library this test is linked with.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define dest_sftp_new dest_sftp_new_under_test
#include "shipper/dest_sftp.c" /* NOLINT(bugprone-suspicious-include) */
#undef dest_sftp_new

/* ---- url ---- */

static void test_url_full(void **state)
{
    struct sftp_target t;
    struct cst_err err;

    (void)state;
    assert_int_equal(sftp_parse_url("sftp://backup@nas.example:2222/srv/custodian/", &t, &err), 0);
    assert_string_equal(t.user, "backup");
    assert_string_equal(t.host, "nas.example");
    assert_int_equal(t.port, 2222);
    assert_string_equal(t.base, "/srv/custodian");
    sftp_target_clear(&t);
}

static void test_url_defaults_and_escapes(void **state)
{
    struct sftp_target t;
    struct cst_err err;

    (void)state;
    assert_int_equal(sftp_parse_url("SFTP://a%40b@host/my%20backups/x y", &t, &err), 0);
    assert_string_equal(t.user, "a@b");
    assert_int_equal(t.port, 22);
    assert_string_equal(t.base, "/my backups/x y");
    sftp_target_clear(&t);

    assert_int_equal(sftp_parse_url("sftp://u@[::1]:2322/", &t, &err), 0);
    assert_string_equal(t.host, "::1");
    assert_int_equal(t.port, 2322);
    assert_string_equal(t.base, "");
    sftp_target_clear(&t);
}

static void expect_url_error(const char *url, const char *needle)
{
    struct sftp_target t;
    struct cst_err err = {{0}};

    assert_int_equal(sftp_parse_url(url, &t, &err), -1);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("url %s: '%s' does not mention '%s'", url, err.msg, needle);
    assert_null(t.user);
    assert_null(t.host);
    assert_null(t.base);
}

static void test_url_errors(void **state)
{
    (void)state;
    expect_url_error("https://u@h/x", "must start with sftp://");
    expect_url_error("sftp://h:22/x", "must name the user");
    expect_url_error("sftp://@h:22/x", "must name the user");
    expect_url_error("sftp://u:secret@h/x", "no password");
    expect_url_error("sftp://u@h", "has no path");
    expect_url_error("sftp://u@h:0/x", "port");
    expect_url_error("sftp://u@h:70000/x", "port");
    expect_url_error("sftp://u@h:22a/x", "port");
    expect_url_error("sftp://u@h:/x", "port");
    expect_url_error("sftp://u@/x", "bad host");
    expect_url_error("sftp://u@[::1/x", "IPv6");
    expect_url_error("sftp://u@h/~/backups", "absolute");
    expect_url_error("sftp://u@h/a%zzb", "escape");
    expect_url_error("sftp://u@h/a%0ab", "control");
    expect_url_error("sftp://u@h/a%2", "escape");
    expect_url_error("sftp://u@h/a//b", "plain");
    expect_url_error("sftp://u@h/a/../b", "plain");
    expect_url_error("sftp://u@h/a/..", "plain");
    expect_url_error("sftp://u@h/./a", "plain");
}

/* ---- keys, paths, temporary names ---- */

static void test_key_valid(void **state)
{
    (void)state;
    assert_true(sftp_key_valid("objects/ab/abcdef"));
    assert_true(sftp_key_valid("backups/daily/db/2026/11/20/dump file.enc"));
    assert_true(sftp_key_valid("a..b/.c"));
    assert_false(sftp_key_valid(""));
    assert_false(sftp_key_valid(NULL));
    assert_false(sftp_key_valid("/objects/ab"));
    assert_false(sftp_key_valid("objects//ab"));
    assert_false(sftp_key_valid("objects/ab/"));
    assert_false(sftp_key_valid("objects/../etc"));
    assert_false(sftp_key_valid("./x"));
    assert_false(sftp_key_valid("x/.."));
    assert_false(sftp_key_valid("a\nb"));
}

static void test_remote_and_temp_paths(void **state)
{
    char *p;

    (void)state;
    p = sftp_remote_path("/srv/c", "objects/ab/abcd");
    assert_string_equal(p, "/srv/c/objects/ab/abcd");
    free(p);
    p = sftp_remote_path("", "objects/ab/abcd");
    assert_string_equal(p, "/objects/ab/abcd");
    free(p);
    p = sftp_remote_path("/srv/c", "");
    assert_string_equal(p, "/srv/c");
    free(p);
    p = sftp_remote_path("", "");
    assert_string_equal(p, "/");
    free(p);
}

/* ---- host key algorithms: what known_hosts holds for the host first ---- */

static void test_hostkey_pref(void **state)
{
    char path[] = "/tmp/test_sftp_kh.XXXXXX";
    int fd = mkstemp(path);
    struct sftp_target t = {.user = "u", .host = "127.0.0.1", .port = 2222, .base = ""};
    char *pref;
    FILE *f;

    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    /* an ECDSA key for this host and port, an ed25519 one for another port */
    fputs("[127.0.0.1]:2222 ecdsa-sha2-nistp256 "
          "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCbCRYiVtZv5S/0bTEhXB6mAv3/p3O+L"
          "uHbQgiA+9ScLECupn4u4yev8XjPtaIAQybXSNAKaK8AL5ZO6nxGZ/uU=\n"
          "[127.0.0.1]:2323 ssh-ed25519 "
          "AAAAC3NzaC1lZDI1NTE5AAAAIBN30IqvVJuxP8fRyVwq6LSFRuBj1vlXlud/TRWYt9b3\n",
          f);
    fclose(f);
    pref = hostkey_pref(&t, path);
    assert_true(strncmp(pref, "ecdsa-sha2-nistp256,", 20) == 0);
    assert_non_null(strstr(pref, "ssh-ed25519"));
    free(pref);
    t.port = 2323;
    pref = hostkey_pref(&t, path);
    assert_true(strncmp(pref, "ssh-ed25519,", 12) == 0);
    free(pref);
    t.port = 22;
    pref = hostkey_pref(&t, path); /* nothing known: the default order */
    assert_true(strncmp(pref, "ssh-ed25519,", 12) == 0);
    free(pref);
    unlink(path);
}

/* ---- what errors mean ---- */

static struct dest explain_dest = {.name = "offsite"};
static struct sftp explain_sftp = {
    .d = &explain_dest,
    .t = {.user = "backup", .host = "127.0.0.1", .port = 2222, .base = "/srv/c"},
    .display = "sftp://backup@127.0.0.1:2222/srv/c",
    .identity = "/etc/custodian/id_ed25519",
    .known_hosts = "/etc/custodian/known_hosts",
};

static enum dest_error explain(long fx, int code, const char *msg, char *out, size_t len)
{
    struct store_err e = {DEST_OK, {{0}}};

    sftp_explain(&explain_sftp, fx, code, msg, "cannot upload objects/ab/abcd", &e);
    snprintf(out, len, "%s", e.err.msg);
    return e.kind;
}

static void test_explain(void **state)
{
    char msg[CST_ERR_SIZE];
    struct store_err e = {DEST_OK, {{0}}};

    (void)state;
    assert_int_equal(hostkey_verdict(&explain_sftp, LIBSSH2_KNOWNHOST_CHECK_MATCH, &e), 0);
    assert_int_equal(hostkey_verdict(&explain_sftp, LIBSSH2_KNOWNHOST_CHECK_NOTFOUND, &e), -1);
    assert_int_equal(e.kind, DEST_ERR_CONFIG);
    assert_non_null(strstr(e.err.msg, "destination offsite (sftp://backup@127.0.0.1:2222/srv/c): "
                                      "host key of 127.0.0.1:2222 is not in "
                                      "/etc/custodian/known_hosts (unknown or changed): refusing "
                                      "to connect"));
    assert_non_null(strstr(e.err.msg, "ssh-keyscan -p 2222 127.0.0.1"));
    assert_int_equal(hostkey_verdict(&explain_sftp, LIBSSH2_KNOWNHOST_CHECK_MISMATCH, &e), -1);
    assert_int_equal(e.kind, DEST_ERR_CONFIG);
    assert_non_null(strstr(e.err.msg, "(changed: the file holds another key"));
    assert_int_equal(hostkey_verdict(&explain_sftp, LIBSSH2_KNOWNHOST_CHECK_FAILURE, &e), -1);
    assert_int_equal(e.kind, DEST_ERR_CONFIG);

    assert_int_equal(explain(LIBSSH2_FX_PERMISSION_DENIED, 0, NULL, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
    assert_non_null(strstr(msg, "destination offsite (sftp://backup@127.0.0.1:2222/srv/c): cannot "
                                "upload objects/ab/abcd: permission denied: let user backup"));
    assert_non_null(strstr(msg, "/srv/c"));
    assert_int_equal(explain(LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM, 0, NULL, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
    assert_non_null(strstr(msg, "free space on 127.0.0.1"));
    assert_int_equal(explain(LIBSSH2_FX_QUOTA_EXCEEDED, 0, NULL, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
    assert_int_equal(explain(LIBSSH2_FX_OP_UNSUPPORTED, 0, NULL, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
    assert_non_null(strstr(msg, "fsync@openssh.com"));
    assert_int_equal(explain(LIBSSH2_FX_FAILURE, 0, NULL, msg, sizeof(msg)), DEST_ERR_TRANSIENT);
    assert_non_null(strstr(msg, "will retry"));
    assert_int_equal(explain(LIBSSH2_FX_NO_SUCH_FILE, 0, NULL, msg, sizeof(msg)),
                     DEST_ERR_TRANSIENT);
    assert_int_equal(
        explain(-1, LIBSSH2_ERROR_SOCKET_RECV, "Failed getting banner", msg, sizeof(msg)),
        DEST_ERR_TRANSIENT);
    assert_non_null(strstr(msg, "closed it (Failed getting banner, libssh2 error -43)"));
    assert_int_equal(explain(-1, LIBSSH2_ERROR_TIMEOUT, NULL, msg, sizeof(msg)),
                     DEST_ERR_TRANSIENT);
}

/* ---- dest_sftp_new ---- */

struct files {
    char dir[64];
    char key[128], pub[128], kh[128];
};

static int files_setup(void **state)
{
    struct files *f = calloc(1, sizeof(*f));
    FILE *fp;

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_sftp.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->key, sizeof(f->key), "%s/id_ed25519", f->dir);
    snprintf(f->pub, sizeof(f->pub), "%s/id_ed25519.pub", f->dir);
    snprintf(f->kh, sizeof(f->kh), "%s/known_hosts", f->dir);
    fp = fopen(f->key, "w");
    fputs("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n", fp);
    fclose(fp);
    chmod(f->key, 0600);
    fp = fopen(f->kh, "w");
    fputs("[127.0.0.1]:2222 ssh-ed25519 AAAA\n", fp);
    fclose(fp);
    *state = f;
    return 0;
}

static int files_teardown(void **state)
{
    struct files *f = *state;

    unlink(f->key);
    unlink(f->pub);
    unlink(f->kh);
    rmdir(f->dir);
    free(f);
    return 0;
}

static struct dest *open_with(const struct files *f, const char *url, const char *identity,
                              const char *known_hosts, struct cst_err *err)
{
    struct dest_sftp_config c = {.name = "offsite",
                                 .url = url,
                                 .identity = identity,
                                 .known_hosts = known_hosts,
                                 .max_inflight = 4,
                                 .bandwidth_kbps = 8000};

    (void)f;
    return dest_sftp_new_under_test(&c, NULL, err);
}

static void test_new_ok(void **state)
{
    struct files *f = *state;
    struct cst_err err = {{0}};
    struct dest *d = open_with(f, "sftp://backup@127.0.0.1:2222/srv/c", f->key, f->kh, &err);
    struct sftp *s;

    assert_non_null(d);
    s = d->impl;
    assert_string_equal(d->ops->type, "sftp");
    assert_string_equal(d->name, "offsite");
    assert_int_equal(d->max_batch, 32);
    assert_int_equal(d->max_concurrent, 2);
    assert_int_equal(s->max_idle, 4); /* one session per destination thread */
    assert_true(d->ops->put_batch == store_put_batch);
    assert_non_null(d->ops->get);
    assert_non_null(d->ops->exists);
    assert_non_null(d->ops->remove);
    assert_non_null(d->ops->list);
    assert_non_null(d->ops->probe);
    assert_true(d->driver->features & STORE_FEAT_MARKER);
    assert_false(d->driver->features & STORE_FEAT_SERVER_CHECKS_HASH);
    assert_null(s->identity_pub);
    assert_string_equal(s->display, "sftp://backup@127.0.0.1:2222/srv/c");
    dest_free(d);

    /* identity.pub next to the key is used */
    FILE *fp = fopen(f->pub, "w");
    fputs("ssh-ed25519 AAAA test\n", fp);
    fclose(fp);
    d = open_with(f, "sftp://backup@127.0.0.1:2222/", f->key, f->kh, &err);
    assert_non_null(d);
    s = d->impl;
    assert_string_equal(s->identity_pub, f->pub);
    assert_string_equal(s->display, "sftp://backup@127.0.0.1:2222/");
    dest_free(d);
    unlink(f->pub);
}

static void expect_refused(struct dest *d, const struct cst_err *err, const char *needle)
{
    assert_null(d);
    if (strstr(err->msg, needle) == NULL)
        fail_msg("'%s' does not mention '%s'", err->msg, needle);
}

static void test_new_refusals(void **state)
{
    struct files *f = *state;
    struct cst_err err = {{0}};
    const char *url = "sftp://backup@127.0.0.1:2222/srv/c";
    struct dest *d;

    d = open_with(f, url, f->key, NULL, &err);
    expect_refused(d, &err, "known_hosts is required");
    expect_refused(d, &err, "ssh-keyscan -p 2222 127.0.0.1");
    d = open_with(f, url, f->key, "/nonexistent/known_hosts", &err);
    expect_refused(d, &err, "/nonexistent/known_hosts cannot be read");
    d = open_with(f, url, NULL, f->kh, &err);
    expect_refused(d, &err, "identity is required");
    d = open_with(f, url, "/nonexistent/id", f->kh, &err);
    expect_refused(d, &err, "/nonexistent/id");
    d = open_with(f, url, f->dir, f->kh, &err);
    expect_refused(d, &err, "not a regular file");
    chmod(f->key, 0640);
    d = open_with(f, url, f->key, f->kh, &err);
    expect_refused(d, &err, "permissions 0640");
    expect_refused(d, &err, "are too open");
    expect_refused(d, &err, "chmod 600");
    chmod(f->key, 0604);
    d = open_with(f, url, f->key, f->kh, &err);
    expect_refused(d, &err, "chmod 600");
    chmod(f->key, 0400);
    d = open_with(f, url, f->key, f->kh, &err);
    assert_non_null(d);
    dest_free(d);
    chmod(f->key, 0600);
    d = open_with(f, "sftp://127.0.0.1/srv", f->key, f->kh, &err);
    expect_refused(d, &err, "destination offsite: url");
    expect_refused(d, &err, "must name the user");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_full),
        cmocka_unit_test(test_url_defaults_and_escapes),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_remote_and_temp_paths),
        cmocka_unit_test(test_hostkey_pref),
        cmocka_unit_test(test_explain),
        cmocka_unit_test_setup_teardown(test_new_ok, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_new_refusals, files_setup, files_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
