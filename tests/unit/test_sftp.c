/*
 * test_sftp.c - the pure logic of shipper/dest_sftp.c, without a server:
 * url parsing, remote paths and temporary names, URL escaping, quote-command
 * quoting, OpenSSH long-listing lines, what each libcurl error means (kind
 * and message), and what dest_sftp_new refuses (no known_hosts, a private
 * key readable by others, bad urls). Transfers are tested against a real
 * sshd by the end-to-end tests.
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

    p = sftp_temp_key("objects/ab/abcd", 4242, 7);
    assert_string_equal(p, "objects/ab/.tmp.abcd.4242.7");
    free(p);
    p = sftp_temp_key("probe", 1, 2);
    assert_string_equal(p, ".tmp.probe.1.2");
    free(p);
}

static void test_url_building(void **state)
{
    struct sftp_target t = {.user = "u", .host = "127.0.0.1", .port = 2322, .base = ""};
    char *u;

    (void)state;
    u = sftp_url(&t, "/srv/my backups/q\"uote/100%/objects/ab/.tmp.x.1.2", 0);
    assert_string_equal(u, "sftp://127.0.0.1:2322/srv/my%20backups/q%22uote/100%25/objects/ab/"
                           ".tmp.x.1.2");
    free(u);
    u = sftp_url(&t, "/srv/c", 1);
    assert_string_equal(u, "sftp://127.0.0.1:2322/srv/c/");
    free(u);
    u = sftp_url(&t, "/", 1);
    assert_string_equal(u, "sftp://127.0.0.1:2322/");
    free(u);
    u = sftp_url(&t, "/a#b?c/é", 0);
    assert_string_equal(u, "sftp://127.0.0.1:2322/a%23b%3Fc/%C3%A9");
    free(u);
    t.host = "::1";
    u = sftp_url(&t, "/x", 0);
    assert_string_equal(u, "sftp://[::1]:2322/x");
    free(u);
}

static void test_quote_path(void **state)
{
    char *q;

    (void)state;
    q = sftp_quote_path("/srv/my backups/a\"b\\c");
    assert_string_equal(q, "\"/srv/my backups/a\\\"b\\\\c\"");
    free(q);
    q = sftp_quote_path("/plain");
    assert_string_equal(q, "\"/plain\"");
    free(q);
}

/* ---- listings ---- */

static void test_long_entry(void **state)
{
    const char *name;
    char type;
    uint64_t size;

    (void)state;
    assert_int_equal(
        sftp_parse_long_entry("-rw-------    1 root     root        65536 Nov 25 16:26 "
                              "a000000000000000000000000000000000000000000000000004",
                              &type, &size, &name),
        0);
    assert_int_equal(type, '-');
    assert_int_equal(size, 65536);
    assert_string_equal(name, "a000000000000000000000000000000000000000000000000004");

    /* older than six months: the year instead of the time; a day below 10 is padded */
    assert_int_equal(
        sftp_parse_long_entry("drwx------    2 backup   backup       4096 Jan  5  2024 "
                              "ab",
                              &type, &size, &name),
        0);
    assert_int_equal(type, 'd');
    assert_string_equal(name, "ab");

    /* names keep their spaces, even leading ones */
    assert_int_equal(
        sftp_parse_long_entry("-rw-r--r--    1 1000     1000   123456789012 Dec 31 23:59 "
                              " my file  .txt",
                              &type, &size, &name),
        0);
    assert_int_equal(size, 123456789012ULL);
    assert_string_equal(name, " my file  .txt");

    assert_int_equal(sftp_parse_long_entry("lrwxrwxrwx    1 root     root           4 Nov 25 16:26 "
                                           "l -> /etc",
                                           &type, &size, &name),
                     0);
    assert_int_equal(type, 'l');

    assert_int_equal(sftp_parse_long_entry("", &type, &size, &name), -1);
    assert_int_equal(sftp_parse_long_entry("just-a-name", &type, &size, &name), -1);
    assert_int_equal(
        sftp_parse_long_entry("-rw------- 1 root root big Nov 25 16:26 x", &type, &size, &name),
        -1);
    assert_int_equal(
        sftp_parse_long_entry("-rw------- 1 root root 12 Nov 25 16:26", &type, &size, &name), -1);
}

struct collected {
    char keys[8][128];
    uint64_t sizes[8];
    int n;
};

static int collect(void *arg, const char *key, uint64_t size)
{
    struct collected *c = arg;

    if (c->n < 8) {
        snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", key);
        c->sizes[c->n] = size;
    }
    c->n++;
    return 0;
}

static void test_lister(void **state)
{
    static const char listing[] =
        "drwx------    5 root     root         4096 Nov 25 16:26 .\n"
        "drwx------    3 root     root         4096 Nov 25 16:26 ..\n"
        "-rw-------    1 root     root          100 Nov 25 16:26 abc1\n"
        "-rw-------    1 root     root            0 Nov 25 16:26 .tmp.abc2.77.1\n"
        "drwx------    2 root     root         4096 Nov 25 16:26 ab\n"
        "drwx------    2 root     root         4096 Nov 25 16:26 cd\n"
        "-rw-------    1 root     root          200 Nov 25 16:26 abc3\r\n"
        "lrwxrwxrwx    1 root     root            4 Nov 25 16:26 abl -> abc1\n"
        "garbage\n"
        "-rw-------    1 root     root          300 Nov 25 16:26 zzz\n";
    struct sftp_pending_dir *stack = NULL;
    struct collected c = {0};
    struct sftp_lister l = {
        .dir_key = "objects/", .filter = "ab", .cb = collect, .arg = &c, .stack = &stack};

    (void)state;
    /* fed in awkward pieces, as curl may */
    for (size_t i = 0; i < sizeof(listing) - 1; i += 7) {
        size_t n = sizeof(listing) - 1 - i < 7 ? sizeof(listing) - 1 - i : 7;

        assert_int_equal(sftp_list_cb((char *)listing + i, 1, n, &l), n);
    }
    assert_int_equal(c.n, 2);
    assert_string_equal(c.keys[0], "objects/abc1");
    assert_int_equal(c.sizes[0], 100);
    assert_string_equal(c.keys[1], "objects/abc3");
    assert_int_equal(c.sizes[1], 200);
    assert_non_null(stack);
    assert_string_equal(stack->key, "objects/ab/");
    assert_null(stack->next);
    free(stack->key);
    free(stack);
}

static int stop_at_first(void *arg, const char *key, uint64_t size)
{
    (void)key;
    (void)size;
    (*(int *)arg)++;
    return 1;
}

static void test_lister_stops(void **state)
{
    static const char listing[] = "-rw-------    1 root     root          100 Nov 25 16:26 a\n"
                                  "-rw-------    1 root     root          100 Nov 25 16:26 b\n";
    struct sftp_pending_dir *stack = NULL;
    int calls = 0;
    struct sftp_lister l = {
        .dir_key = "", .filter = "", .cb = stop_at_first, .arg = &calls, .stack = &stack};

    (void)state;
    assert_int_equal(sftp_list_cb((char *)listing, 1, sizeof(listing) - 1, &l), 0);
    assert_int_equal(calls, 1);
    assert_true(l.stopped);
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

static enum dest_error explain(CURLcode rc, const char *errbuf, int seen, enum curl_khmatch m,
                               char *msg, size_t len)
{
    struct sftp_call call = {.hostkey_seen = seen, .hostkey_match = m};

    snprintf(call.errbuf, sizeof(call.errbuf), "%s", errbuf);
    return sftp_explain(&explain_sftp, &call, rc, "cannot upload objects/ab/abcd", msg, len);
}

static void test_explain(void **state)
{
    char msg[CST_ERR_SIZE];

    (void)state;
    assert_int_equal(
        explain(CURLE_PEER_FAILED_VERIFICATION, "", 1, CURLKHMATCH_MISSING, msg, sizeof(msg)),
        DEST_ERR_CONFIG);
    assert_non_null(strstr(msg, "destination offsite (sftp://backup@127.0.0.1:2222/srv/c): cannot "
                                "upload objects/ab/abcd: host key of 127.0.0.1:2222 is not in "
                                "/etc/custodian/known_hosts (unknown or changed): refusing to "
                                "connect"));
    assert_int_equal(
        explain(CURLE_PEER_FAILED_VERIFICATION, "", 1, CURLKHMATCH_MISMATCH, msg, sizeof(msg)),
        DEST_ERR_CONFIG);
    assert_non_null(strstr(msg, "host key of 127.0.0.1:2222 is not in /etc/custodian/known_hosts "
                                "(changed"));
    assert_non_null(strstr(msg, "refusing to connect"));
    assert_int_equal(
        explain(CURLE_PEER_FAILED_VERIFICATION, "x", 0, CURLKHMATCH_OK, msg, sizeof(msg)),
        DEST_ERR_CONFIG);
    assert_int_equal(
        explain(CURLE_LOGIN_DENIED, "Authentication failure", 1, CURLKHMATCH_OK, msg, sizeof(msg)),
        DEST_ERR_CONFIG);
    assert_non_null(strstr(msg, "user backup was refused with the key /etc/custodian/id_ed25519"));
    assert_non_null(strstr(msg, "authorized_keys"));
    assert_int_equal(explain(CURLE_REMOTE_ACCESS_DENIED, "Upload failed: Permission denied", 1,
                             CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
    assert_non_null(strstr(msg, "permission denied"));
    assert_non_null(strstr(msg, "/srv/c"));
    assert_int_equal(explain(CURLE_REMOTE_DISK_FULL, "", 1, CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
    assert_int_equal(explain(CURLE_QUOTE_ERROR, "rename command failed: Permission denied", 1,
                             CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
    assert_int_equal(explain(CURLE_QUOTE_ERROR, "rename command failed: Failure", 1, CURLKHMATCH_OK,
                             msg, sizeof(msg)),
                     DEST_ERR_TRANSIENT);
    assert_int_equal(
        explain(CURLE_COULDNT_CONNECT, "Failed to connect", 0, CURLKHMATCH_OK, msg, sizeof(msg)),
        DEST_ERR_TRANSIENT);
    assert_non_null(strstr(msg, "127.0.0.1:2222"));
    assert_int_equal(explain(CURLE_COULDNT_RESOLVE_HOST, "", 0, CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_TRANSIENT);
    assert_int_equal(explain(CURLE_OPERATION_TIMEDOUT, "", 0, CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_TRANSIENT);
    assert_int_equal(explain(CURLE_SSH, "", 1, CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_TRANSIENT);
    assert_non_null(strstr(msg, "closed"));
    assert_int_equal(explain(CURLE_SEND_ERROR, "", 1, CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_TRANSIENT);
    assert_int_equal(explain(CURLE_UNSUPPORTED_PROTOCOL, "", 0, CURLKHMATCH_OK, msg, sizeof(msg)),
                     DEST_ERR_CONFIG);
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
    curl_global_init(CURL_GLOBAL_DEFAULT);
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
    curl_global_cleanup();
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
    assert_int_equal(d->max_batch, 1);
    assert_int_equal(d->max_concurrent, 4);
    assert_non_null(d->ops->put_batch);
    assert_non_null(d->ops->get);
    assert_non_null(d->ops->exists);
    assert_non_null(d->ops->remove);
    assert_non_null(d->ops->list);
    assert_non_null(d->ops->probe);
    assert_int_equal(s->send_speed, 8000 * 125 / 4); /* kilobits/s over the uploads at once */
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
        cmocka_unit_test(test_url_building),
        cmocka_unit_test(test_quote_path),
        cmocka_unit_test(test_long_entry),
        cmocka_unit_test(test_lister),
        cmocka_unit_test(test_lister_stops),
        cmocka_unit_test(test_explain),
        cmocka_unit_test_setup_teardown(test_new_ok, files_setup, files_teardown),
        cmocka_unit_test_setup_teardown(test_new_refusals, files_setup, files_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
