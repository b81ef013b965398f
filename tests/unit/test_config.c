/*
 * test_config.c - agent/config.c: a full config loads with the right values
 * and defaults, and every kind of mistake is refused with a message that
 * names the file, the line and the key.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/config.h"
#include "common/log.h"

/* The end of a variadic list of needles: NULL itself may be a plain int. */
#define END ((const char *)NULL)

struct fixture {
    char dir[256]; /* realpath of a fresh temporary directory */
    char conf[PATH_MAX];
};

/* Nine lines that make a valid config; error cases append to it, so line 10 comes next. */
static const char minimal[] = "[watch]\n"                     /* 1 */
                              "path = data\n"                 /* 2 */
                              "[keys]\n"                      /* 3 */
                              "public_key = k/backup.pub\n"   /* 4 */
                              "naming_key = k/naming.key\n"   /* 5 */
                              "signing_key = k/signing.key\n" /* 6 */
                              "[destination nas]\n"           /* 7 */
                              "type = local\n"                /* 8 */
                              "path = nas\n";                 /* 9 */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char tmpl[] = "/tmp/test_config.XXXXXX";
    char *real;

    if (f == NULL || mkdtemp(tmpl) == NULL || (real = realpath(tmpl, NULL)) == NULL ||
        strlen(real) >= sizeof(f->dir)) {
        free(f);
        return -1;
    }
    strcpy(f->dir, real);
    free(real);
    snprintf(f->conf, sizeof(f->conf), "%s/custodian.conf", f->dir);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void make_dir(const struct fixture *f, const char *rel)
{
    char path[PATH_MAX * 2];

    snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

/* "<fixture dir>/rel" for comparing resolved paths. */
static const char *in_dir(const struct fixture *f, const char *rel)
{
    static char path[PATH_MAX * 2];

    snprintf(path, sizeof(path), "%s/%s", f->dir, rel);
    return path;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

/*
 * Write text as the config, expect cfg_load to refuse it, and expect the
 * message to hold the file name followed by ":<line>:" (line 0: no line
 * number, the file name directly followed by ':') and each of the needles.
 */
static void expect_error(const struct fixture *f, const char *text, int line, ...)
{
    struct cst_err err = {{0}};
    char where[PATH_MAX + 32];
    struct cfg *cfg;
    const char *needle;
    va_list ap;

    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    if (cfg != NULL) {
        cfg_free(cfg);
        fail_msg("config was accepted:\n%s", text);
    }
    if (line > 0)
        snprintf(where, sizeof(where), "%s:%d: ", f->conf, line);
    else
        snprintf(where, sizeof(where), "%s: ", f->conf);
    assert_contains(err.msg, where);
    va_start(ap, line);
    while ((needle = va_arg(ap, const char *)) != NULL)
        assert_contains(err.msg, needle);
    va_end(ap);
}

static void expect_error_after_minimal(const struct fixture *f, const char *more, int line, ...)
{
    char text[4096];
    char needles[4][256] = {{0}};
    const char *needle;
    va_list ap;
    int n = 0;

    snprintf(text, sizeof(text), "%s%s", minimal, more);
    va_start(ap, line);
    while ((needle = va_arg(ap, const char *)) != NULL && n < 4)
        snprintf(needles[n++], sizeof(needles[0]), "%s", needle);
    va_end(ap);
    expect_error(f, text, line, needles[0], n > 1 ? needles[1] : END, n > 2 ? needles[2] : END,
                 n > 3 ? needles[3] : END, END);
}

static void test_full_config(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct cfg *cfg;
    char text[8192];

    make_dir(f, "data");
    make_dir(f, "data/images");
    make_dir(f, "invoices");
    snprintf(text, sizeof(text),
             "; custodian demo config\n"
             "[agent]\n"
             "state_dir   = state                ; catalog.db, spool/, locks\n"
             "timezone    = Europe/Berlin\n"
             "daily_at    = 3:30\n"
             "settle_ms   = 2500                 ; a file changed but not closed ships after;\n"
             "                                   ; a file closed after writing ships at once\n"
             "log_level   = debug\n"
             "workers     = 8\n"
             "\n"
             "[watch]\n"
             "path    = data/images/             ; repeatable\n"
             "path    = %s/invoices\n"
             "    path = ./data/../data/bug-reports//\n"
             "exclude = *.tmp                    ; repeatable glob\n"
             "  exclude = *;x\n"
             "\n"
             "# hash comments too\n"
             "[keys]\n"
             "public_key  = keys/backup.pub\n"
             "naming_key  = /etc/custodian/keys/naming.key\n"
             "signing_key = keys/signing.key\n"
             "secret_key  = ../secret/backup.key   ; only where restores run\n"
             "\n"
             "[destination nas]                  ; one section per destination\n"
             "path = nas/custodian\n"
             "type = local\n"
             "max_inflight = 16\n"
             "[destination offsite]\n"
             "type = s3\n"
             "role = replica\n"
             "endpoint = https://s3.example.com\n"
             "bucket = tbot-backups\n"
             "access_key_file = s3/access\n"
             "secret_key_file = s3/secret\n"
             "path_style = yes\n"
             "object_lock = On\n"
             "lock_mode = COMPLIANCE\n"
             "ca_file = ca.pem\n"
             "hot_class = STANDARD\n"
             "archive_class = DEEP_ARCHIVE\n"
             "bandwidth_kbps = 20000\n"
             "[destination vault]\n"
             "type = sftp\n"
             "role = archive\n"
             "url = sftp://backup@vault.example.com:2222/custodian\n"
             "identity = ssh/id_ed25519\n"
             "known_hosts = ssh/known_hosts\n"
             "\n"
             "[mongodb]\n"
             "uri          = mongodb://127.0.0.1:27017/billing\n"
             "dump_command = docker exec billing-automation-mongo mongodump --archive\n"
             "\n"
             "[retention]\n"
             "hot_months          = 12\n"
             "delete_after_months = 96\n"
             "keep_daily          = 60\n",
             f->dir);
    write_file(f->conf, text);

    cfg = cfg_load(f->conf, &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return;
    }
    assert_string_equal(cfg->file, f->conf);
    assert_string_equal(cfg->state_dir, in_dir(f, "state"));
    assert_string_equal(cfg->timezone, "Europe/Berlin");
    assert_int_equal(cfg->daily_hour, 3);
    assert_int_equal(cfg->daily_minute, 30);
    assert_int_equal(cfg->settle_ms, 2500);
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->workers, 8);

    /* An indented key is a key, not a continuation of the previous value. */
    assert_int_equal(cfg->n_watch_paths, 3);
    assert_string_equal(cfg->watch_paths[0], in_dir(f, "data/images"));
    assert_string_equal(cfg->watch_paths[1], in_dir(f, "invoices"));
    assert_string_equal(cfg->watch_paths[2], in_dir(f, "data/bug-reports"));
    assert_non_null(cfg->watch_path_lines);
    assert_int_equal(cfg->watch_path_lines[0], 12);
    assert_int_equal(cfg->watch_path_lines[2], 14);
    assert_int_equal(cfg->n_excludes, 2);
    assert_string_equal(cfg->excludes[0], "*.tmp");
    assert_string_equal(cfg->excludes[1], "*;x"); /* ';' without a blank before is data */

    assert_string_equal(cfg->public_key, in_dir(f, "keys/backup.pub"));
    assert_string_equal(cfg->naming_key, "/etc/custodian/keys/naming.key");
    assert_string_equal(cfg->signing_key, in_dir(f, "keys/signing.key"));
    {
        char parent[PATH_MAX];
        char expect[PATH_MAX + 32];

        snprintf(parent, sizeof(parent), "%s", f->dir);
        *strrchr(parent, '/') = '\0';
        snprintf(expect, sizeof(expect), "%s/secret/backup.key", parent);
        assert_string_equal(cfg->secret_key, expect);
    }

    assert_int_equal(cfg->n_dests, 3);
    assert_string_equal(cfg->dests[0].name, "nas");
    assert_int_equal(cfg->dests[0].type, CFG_DEST_LOCAL);
    assert_int_equal(cfg->dests[0].role, CFG_ROLE_PRIMARY);
    assert_string_equal(cfg->dests[0].path, in_dir(f, "nas/custodian"));
    assert_int_equal(cfg->dests[0].max_inflight, 16);
    assert_int_equal(cfg->dests[0].bandwidth_kbps, 0);
    assert_null(cfg->dests[0].bucket);

    assert_string_equal(cfg->dests[1].name, "offsite");
    assert_int_equal(cfg->dests[1].type, CFG_DEST_S3);
    assert_int_equal(cfg->dests[1].role, CFG_ROLE_REPLICA);
    assert_string_equal(cfg->dests[1].endpoint, "https://s3.example.com");
    assert_string_equal(cfg->dests[1].bucket, "tbot-backups");
    assert_string_equal(cfg->dests[1].region, "us-east-1");
    assert_string_equal(cfg->dests[1].access_key_file, in_dir(f, "s3/access"));
    assert_string_equal(cfg->dests[1].secret_key_file, in_dir(f, "s3/secret"));
    assert_string_equal(cfg->dests[1].ca_file, in_dir(f, "ca.pem"));
    assert_int_equal(cfg->dests[1].path_style, 1);
    assert_int_equal(cfg->dests[1].object_lock, 1);
    assert_int_equal(cfg->dests[1].lock_mode, CFG_LOCK_COMPLIANCE);
    assert_string_equal(cfg->dests[1].hot_class, "STANDARD");
    assert_string_equal(cfg->dests[1].archive_class, "DEEP_ARCHIVE");
    assert_int_equal(cfg->dests[1].max_inflight, 4);
    assert_int_equal(cfg->dests[1].bandwidth_kbps, 20000);
    assert_null(cfg->dests[1].path);

    assert_string_equal(cfg->dests[2].name, "vault");
    assert_int_equal(cfg->dests[2].type, CFG_DEST_SFTP);
    assert_int_equal(cfg->dests[2].role, CFG_ROLE_ARCHIVE);
    assert_string_equal(cfg->dests[2].url, "sftp://backup@vault.example.com:2222/custodian");
    assert_string_equal(cfg->dests[2].identity, in_dir(f, "ssh/id_ed25519"));
    assert_string_equal(cfg->dests[2].known_hosts, in_dir(f, "ssh/known_hosts"));

    assert_string_equal(cfg->mongodb_uri, "mongodb://127.0.0.1:27017/billing");
    assert_string_equal(cfg->dump_command,
                        "docker exec billing-automation-mongo mongodump --archive");
    assert_int_equal(cfg->hot_months, 12);
    assert_int_equal(cfg->delete_after_months, 96);
    assert_int_equal(cfg->keep_daily, 60);

    /* data/bug-reports was never created. */
    assert_int_equal(cfg_check_watch_paths(cfg, &err), -1);
    cfg_free(cfg);
}

static void test_defaults(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char text[1024];
    struct cfg *cfg;

    snprintf(text, sizeof(text),
             "%s[destination cloud]\ntype = s3\nendpoint = "
             "http://127.0.0.1:9000\nbucket = b\n",
             minimal);
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return;
    }
    assert_string_equal(cfg->state_dir, "/var/lib/custodian");
    assert_string_equal(cfg->timezone, "America/New_York");
    assert_int_equal(cfg->daily_hour, 2);
    assert_int_equal(cfg->daily_minute, 0);
    assert_int_equal(cfg->settle_ms, 1500);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->n_excludes, 0);
    assert_null(cfg->secret_key);
    assert_null(cfg->mongodb_uri);
    assert_null(cfg->dump_command);
    assert_int_equal(cfg->hot_months, 24);
    assert_int_equal(cfg->delete_after_months, 84);
    assert_int_equal(cfg->keep_daily, 35);
    assert_int_equal(cfg->n_dests, 2);
    assert_int_equal(cfg->dests[0].role, CFG_ROLE_PRIMARY);
    assert_int_equal(cfg->dests[0].max_inflight, 4);
    assert_int_equal(cfg->dests[0].bandwidth_kbps, 0);
    assert_string_equal(cfg->dests[1].region, "us-east-1");
    assert_int_equal(cfg->dests[1].path_style, 0);
    assert_int_equal(cfg->dests[1].object_lock, 0);
    assert_null(cfg->dests[1].ca_file);
    cfg_free(cfg);
}

/* A config given by a relative name resolves against its own directory, and is named as given. */
static void test_relative_config_path(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char cwd[PATH_MAX];
    struct cfg *cfg;

    make_dir(f, "sub");
    snprintf(f->conf, sizeof(f->conf), "%s/sub/c.conf", f->dir);
    write_file(f->conf, minimal);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(f->dir), 0);
    cfg = cfg_load("sub/c.conf", &err);
    assert_non_null(cfg);
    assert_string_equal(cfg->file, "sub/c.conf");
    assert_string_equal(cfg->watch_paths[0], in_dir(f, "sub/data"));
    assert_string_equal(cfg->dests[0].path, in_dir(f, "sub/nas"));
    cfg_free(cfg);

    write_file(f->conf, "[agent]\nsettle_ms = x\n");
    assert_null(cfg_load("sub/c.conf", &err));
    assert_contains(err.msg, "sub/c.conf:2: [agent] settle_ms: value 'x' is not a number");
    assert_int_equal(chdir(cwd), 0);
}

static void test_unknown_key(void **state)
{
    expect_error_after_minimal(*state, "[agent]\ncolour = red\n", 11, "[agent] colour: unknown key",
                               END);
    expect_error_after_minimal(*state, "colour = red\n", 10,
                               "[destination nas] colour: unknown key", END);
    /* A key of one section written in another. */
    expect_error_after_minimal(*state, "[agent]\nhot_months = 3\n", 11,
                               "[agent] hot_months: unknown key", END);
}

static void test_unknown_section(void **state)
{
    expect_error_after_minimal(*state, "[frobnicate]\n", 10, "[frobnicate]: unknown section", END);
    expect_error_after_minimal(*state, "\n\n[Agent]  ; wrong case\nlog_level = info\n", 12,
                               "[Agent]: unknown section", END);
    expect_error_after_minimal(*state, "[destination]\ntype = local\n", 10,
                               "[destination]: a destination needs a name", END);
    expect_error_after_minimal(*state, "[destination a/b]\n", 10, "[destination a/b]: ", END);
    expect_error_after_minimal(*state, "[destination nas]\n", 10,
                               "[destination nas]: destination defined twice (first on line 7)",
                               END);
}

static void test_bad_number(void **state)
{
    expect_error_after_minimal(*state, "[agent]\nsettle_ms = abc\n", 11,
                               "[agent] settle_ms: value 'abc' is not a number", END);
    expect_error_after_minimal(*state, "[agent]\nworkers = 4x\n", 11,
                               "[agent] workers: value '4x' is not a number", END);
    expect_error_after_minimal(*state, "bandwidth_kbps = 1.5\n", 10,
                               "[destination nas] bandwidth_kbps: value '1.5' is not a number",
                               END);
}

static void test_out_of_range(void **state)
{
    expect_error_after_minimal(*state, "[agent]\nsettle_ms = 600001\n", 11,
                               "[agent] settle_ms: value 600001 is out of range (0 to 600000)",
                               END);
    expect_error_after_minimal(*state, "[agent]\nworkers = 0\n", 11,
                               "[agent] workers: value 0 is out of range (1 to 64)", END);
    expect_error_after_minimal(*state, "max_inflight = 65\n", 10,
                               "[destination nas] max_inflight: value 65 is out of range", END);
    expect_error_after_minimal(*state, "[retention]\nkeep_daily = 99999999999999999999999\n", 11,
                               "[retention] keep_daily: value 99999999999999999999999 is out of "
                               "range (1 to 10000)",
                               END);
    expect_error_after_minimal(*state, "[retention]\ndelete_after_months = 24\n", 11,
                               "[retention] delete_after_months: value 24 must be greater than "
                               "hot_months (24)",
                               END);
    expect_error_after_minimal(*state, "[retention]\nhot_months = 100\n", 11,
                               "[retention] hot_months: value 100 must be less than "
                               "delete_after_months (84)",
                               END);
}

static void test_bad_values(void **state)
{
    expect_error_after_minimal(*state, "[agent]\nlog_level = loud\n", 11,
                               "[agent] log_level: value 'loud' is not one of: error, warn, info, "
                               "debug",
                               END);
    expect_error_after_minimal(*state,
                               "[destination c]\ntype = s3\nendpoint = https://e\nbucket = b\n"
                               "path_style = maybe\n",
                               14, "[destination c] path_style: value 'maybe' is not a boolean",
                               END);
    expect_error_after_minimal(*state, "[destination x]\ntype = ftp\n", 11,
                               "[destination x] type: value 'ftp' is not one of: local, s3, sftp",
                               END);
    expect_error_after_minimal(*state,
                               "[destination c]\ntype = s3\nendpoint = http://s3.example.com\n"
                               "bucket = b\n",
                               12, "[destination c] endpoint: plain http is allowed only", END);
    expect_error_after_minimal(*state, "[destination v]\ntype = sftp\nurl = ssh://h/x\n", 12,
                               "[destination v] url: value 'ssh://h/x' does not start with sftp://",
                               END);
    expect_error_after_minimal(*state, "[agent]\nstate_dir =\n", 11,
                               "[agent] state_dir: value is empty", END);
    expect_error_after_minimal(*state, "[agent]\nstate_dir = ~/state\n", 11,
                               "[agent] state_dir: '~' is not expanded", END);
}

static void test_duplicate_key(void **state)
{
    expect_error_after_minimal(*state, "[agent]\nsettle_ms = 1\nsettle_ms = 2\n", 12,
                               "[agent] settle_ms: key set twice (first on line 11)", END);
    expect_error_after_minimal(*state, "type = local\n", 10,
                               "[destination nas] type: key set twice (first on line 8)", END);
    /* A second [keys] section does not make a second public_key acceptable. */
    expect_error_after_minimal(*state, "[keys]\npublic_key = other.pub\n", 11,
                               "[keys] public_key: key set twice (first on line 4)", END);
}

static void test_missing_required(void **state)
{
    expect_error(*state,
                 "[watch]\npath = data\n[keys]\nnaming_key = n\nsigning_key = s\n"
                 "[destination nas]\ntype = local\npath = nas\n",
                 0, "[keys] public_key: required key missing", END);
    expect_error(*state,
                 "[watch]\npath = data\n[keys]\npublic_key = p\nsigning_key = s\n"
                 "[destination nas]\ntype = local\npath = nas\n",
                 0, "[keys] naming_key: required key missing", END);
    expect_error(*state,
                 "[watch]\nexclude = *.tmp\n[keys]\npublic_key = p\nnaming_key = n\n"
                 "signing_key = s\n[destination nas]\ntype = local\npath = nas\n",
                 0, "[watch] path: required key missing", END);
    expect_error(*state,
                 "[watch]\npath = data\n[keys]\npublic_key = p\nnaming_key = n\nsigning_key = s\n",
                 0, "[destination NAME]: required section missing", END);
    expect_error(*state, "", 0, "required key missing", END);
    expect_error_after_minimal(*state, "[destination empty]\n", 10,
                               "[destination empty] type: required key missing", END);
}

static void test_dest_required_keys(void **state)
{
    expect_error(*state,
                 "[watch]\npath = data\n[keys]\npublic_key = p\nnaming_key = n\nsigning_key = s\n"
                 "\n[destination nas]\ntype = local\nmax_inflight = 2\n",
                 8, "[destination nas] path: required key missing for a destination of type local",
                 END);
    expect_error_after_minimal(
        *state, "[destination c]\ntype = s3\nendpoint = https://e\n", 10,
        "[destination c] bucket: required key missing for a destination of type s3", END);
    expect_error_after_minimal(*state, "[destination c]\nbucket = b\ntype = s3\n", 10,
                               "[destination c] endpoint: required key missing", END);
    expect_error_after_minimal(
        *state, "[destination v]\ntype = sftp\n", 10,
        "[destination v] url: required key missing for a destination of type sftp", END);
}

static void test_wrong_dest_type_key(void **state)
{
    expect_error_after_minimal(
        *state, "bucket = b\n", 10,
        "[destination nas] bucket: not a key for a destination of type local "
        "(it belongs to s3)",
        END);
    /* The key comes before type: still refused, at the key's own line. */
    expect_error(
        *state,
        "[watch]\npath = data\n[keys]\npublic_key = p\nnaming_key = n\nsigning_key = s\n"
        "[destination nas]\nurl = sftp://h/x\ntype = local\npath = nas\n",
        8, "[destination nas] url: not a key for a destination of type local (it belongs to sftp)",
        END);
    expect_error_after_minimal(
        *state,
        "[destination c]\ntype = s3\nendpoint = https://e\nbucket = b\n"
        "known_hosts = kh\n",
        14, "[destination c] known_hosts: not a key for a destination of type s3", END);
}

static void test_bad_daily_at(void **state)
{
    expect_error_after_minimal(*state, "[agent]\ndaily_at = 25:00\n", 11,
                               "[agent] daily_at: value '25:00' is not a time of day", END);
    expect_error_after_minimal(*state, "[agent]\ndaily_at = 02:60\n", 11,
                               "[agent] daily_at: value '02:60'", END);
    expect_error_after_minimal(*state, "[agent]\ndaily_at = 2pm\n", 11,
                               "[agent] daily_at: value '2pm'", END);
    expect_error_after_minimal(*state, "[agent]\ndaily_at = 02:00:00\n", 11,
                               "[agent] daily_at: value '02:00:00'", END);
}

static void test_unknown_timezone(void **state)
{
    expect_error_after_minimal(*state, "[agent]\ntimezone = Mars/Olympus_Mons\n", 11,
                               "[agent] timezone: unknown time zone 'Mars/Olympus_Mons'", END);
    expect_error_after_minimal(*state, "[agent]\ntimezone = ../../etc/passwd\n", 11,
                               "[agent] timezone: value '../../etc/passwd' is not a time zone",
                               END);
    expect_error_after_minimal(*state, "[agent]\ntimezone = America\n", 11,
                               "[agent] timezone: unknown time zone 'America'", END);
}

static void test_inline_comment(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char text[1024];
    struct cfg *cfg;

    /* The message shows the value without the comment. */
    expect_error_after_minimal(f, "[agent]\nsettle_ms = abc   ; quiet time\n", 11,
                               "[agent] settle_ms: value 'abc' is not a number", END);

    snprintf(text, sizeof(text),
             "%s[agent]   ; the agent\nsettle_ms = 42 ; ms\nlog_level\t=\twarn\t; tabs\n"
             "daily_at = 23:59;\n",
             minimal);
    write_file(f->conf, text);
    assert_null(cfg_load(f->conf, &err)); /* "23:59;" has no blank before ';': not a comment */
    assert_contains(err.msg, ":13: [agent] daily_at: value '23:59;'");

    snprintf(text, sizeof(text),
             "%s[agent]   ; the agent\nsettle_ms = 42 ; ms\nlog_level\t=\twarn\t; tabs\n", minimal);
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return;
    }
    assert_int_equal(cfg->settle_ms, 42);
    assert_int_equal(cfg->log_level, LOG_WARN);
    cfg_free(cfg);
}

static void test_syntax(void **state)
{
    char line[400];

    expect_error(*state, "settle_ms = 5\n[agent]\n", 1,
                 "settle_ms: key appears before any [section]", END);
    expect_error_after_minimal(*state, "[agent\n", 10, "has no closing ']'", END);
    expect_error_after_minimal(*state, "[agent]\njust some words\n", 11,
                               "expected 'key = value' or '[section]'", END);
    memset(line, 'x', sizeof(line));
    memcpy(line, "dump_command = ", 15);
    line[sizeof(line) - 2] = '\n';
    line[sizeof(line) - 1] = '\0';
    {
        char more[512];

        snprintf(more, sizeof(more), "[mongodb]\n%s", line);
        expect_error_after_minimal(*state, more, 11, "line is too long", END);
    }
}

static void test_overlapping_paths(void **state)
{
    expect_error_after_minimal(*state, "[watch]\npath = data/images\n", 11, "[watch] path: folder ",
                               "/data/images is inside ", "(line 2)", END);
    expect_error_after_minimal(*state, "[watch]\npath = data/\n", 11, "[watch] path: folder ",
                               "is listed twice (also on line 2)", END);
    expect_error_after_minimal(*state, "[destination usb]\ntype = local\npath = data/backups\n", 12,
                               "[destination usb] path: ", "inside the watched folder", END);
    expect_error_after_minimal(*state, "[agent]\nstate_dir = data/.custodian\n", 11,
                               "[agent] state_dir: ", "inside the watched folder", END);
}

static void test_unreadable(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char path[PATH_MAX + 16];

    snprintf(path, sizeof(path), "%s/nope.conf", f->dir);
    assert_null(cfg_load(path, &err));
    assert_contains(err.msg, "cannot read config ");
    assert_contains(err.msg, "nope.conf: No such file or directory");

    assert_null(cfg_load(f->dir, &err));
    assert_contains(err.msg, "cannot read config ");
    assert_contains(err.msg, "Is a directory");
}

static void test_check_watch_paths(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char text[1024];
    char expect[PATH_MAX * 2];
    struct cfg *cfg;

    make_dir(f, "images");
    write_file(in_dir(f, "afile"), "x");
    snprintf(text, sizeof(text),
             "[watch]\npath = images\n\npath = invoices\n[keys]\npublic_key = p\nnaming_key = "
             "n\nsigning_key = s\n[destination nas]\ntype = local\npath = /mnt/nas\n");
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return;
    }
    assert_int_equal(cfg_check_watch_paths(cfg, &err), -1);
    snprintf(expect, sizeof(expect), "%s:4: [watch] path: folder %s/invoices does not exist",
             f->conf, f->dir);
    assert_string_equal(err.msg, expect);

    make_dir(f, "invoices");
    assert_int_equal(cfg_check_watch_paths(cfg, &err), 0);
    cfg_free(cfg);

    snprintf(text, sizeof(text),
             "[watch]\npath = afile\n[keys]\npublic_key = p\nnaming_key = "
             "n\nsigning_key = s\n[destination nas]\ntype = local\npath = /mnt/nas\n");
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    assert_non_null(cfg);
    assert_int_equal(cfg_check_watch_paths(cfg, &err), -1);
    assert_contains(err.msg, ":2: [watch] path: ");
    assert_contains(err.msg, "/afile is not a folder");
    cfg_free(cfg);
    cfg_free(NULL);
}

/* [snapshots]: the app's defaults, files_root from the [watch] paths, decimal minutes. */
static void test_snapshots(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char text[2048];
    struct cfg *cfg;

    snprintf(text, sizeof(text),
             "[watch]\npath = app/data/images\npath = app/data/invoices\n%s"
             "[mongodb]\nuri = mongodb://127.0.0.1/billing\n",
             minimal + strlen("[watch]\npath = data\n"));
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return;
    }
    assert_true(cfg_snapshots_on(cfg));
    assert_string_equal(cfg->snap.periods_collection, "billingPeriods");
    assert_string_equal(cfg->snap.period_closed_field, "closedAt");
    assert_string_equal(cfg->snap.period_key_field, "_id");
    assert_string_equal(cfg->snap.invoice_file_field, "pdf.file");
    assert_null(cfg->snap.invoice_timesheets_field);
    assert_string_equal(cfg->snap.timesheet_period_field, "billingPeriodId");
    assert_string_equal(cfg->snap.files_root, in_dir(f, "app/data"));
    assert_int_equal(cfg->snap.poll_ms, 15 * 60000);
    assert_int_equal(cfg->snap.wait_for_files_ms, 60 * 60000);
    cfg_free(cfg);

    /* one watch path: its parent; decimals; a mapping of the app's own names */
    snprintf(text, sizeof(text),
             "%s[mongodb]\nuri = mongodb://127.0.0.1/billing\n[snapshots]\n"
             "poll_minutes = 0.05\nwait_for_files_minutes = 0\nperiod_key_field = label\n"
             "invoice_period_field = period.label\nfiles_root = /srv/app\n",
             minimal);
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return;
    }
    assert_int_equal(cfg->snap.poll_ms, 3000);
    assert_int_equal(cfg->snap.wait_for_files_ms, 0);
    assert_string_equal(cfg->snap.invoice_period_field, "period.label");
    assert_string_equal(cfg->snap.files_root, "/srv/app");
    cfg_free(cfg);

    /* off without a MongoDB: on by nothing but enabled; a key that would do nothing refused */
    write_file(f->conf, minimal);
    cfg = cfg_load(f->conf, &err);
    assert_non_null(cfg);
    assert_false(cfg_snapshots_on(cfg));
    assert_string_equal(cfg->snap.files_root, f->dir);
    cfg_free(cfg);
    expect_error_after_minimal(f, "[snapshots]\npoll_minutes = 5\n", 11,
                               "[snapshots] poll_minutes: snapshots read the billing periods "
                               "from MongoDB: set [mongodb] uri",
                               END);
    snprintf(text, sizeof(text), "%s[snapshots]\nenabled = no\n", minimal);
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    assert_non_null(cfg);
    assert_false(cfg_snapshots_on(cfg));
    cfg_free(cfg);
}

static void test_snapshots_errors(void **state)
{
    const char *mongo = "[mongodb]\nuri = mongodb://127.0.0.1/billing\n[snapshots]\n";
    char more[512];

    snprintf(more, sizeof(more), "%spoll_minutes = 0.01\n", mongo);
    expect_error_after_minimal(*state, more, 13,
                               "[snapshots] poll_minutes: value 0.01 is out of range (0.05 to "
                               "1440 minutes)",
                               END);
    snprintf(more, sizeof(more), "%spoll_minutes = 1e3\n", mongo);
    expect_error_after_minimal(*state, more, 13, "is not a number of minutes", END);
    snprintf(more, sizeof(more), "%swait_for_files_minutes = -1\n", mongo);
    expect_error_after_minimal(*state, more, 13, "wait_for_files_minutes", END);
    snprintf(more, sizeof(more), "%sinvoice_file_field = pdf..file\n", mongo);
    expect_error_after_minimal(
        *state, more, 13, "[snapshots] invoice_file_field: 'pdf..file' is not a field path", END);
    snprintf(more, sizeof(more), "%speriod_key_field = $id\n", mongo);
    expect_error_after_minimal(*state, more, 13, "period_key_field", END);
    snprintf(more, sizeof(more), "%speriods_collection = a$b\n", mongo);
    expect_error_after_minimal(*state, more, 13,
                               "[snapshots] periods_collection: 'a$b' is not a MongoDB "
                               "collection name",
                               END);
    snprintf(more, sizeof(more), "%senabled = maybe\n", mongo);
    expect_error_after_minimal(*state, more, 13, "[snapshots] enabled", END);
}

/* Object Lock: the mode has no default and means nothing without object_lock. */
static void test_lock_mode(void **state)
{
    const char *s3 = "[destination vault]\ntype = s3\nendpoint = https://s3.example\n"
                     "bucket = b\n";
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char text[1024];
    struct cfg *cfg;

    snprintf(text, sizeof(text), "%sobject_lock = yes\n", s3);
    expect_error_after_minimal(
        f, text, 14, "[destination vault] lock_mode: required with object_lock = yes", END);
    snprintf(text, sizeof(text), "%slock_mode = COMPLIANCE\n", s3);
    expect_error_after_minimal(f, text, 14,
                               "[destination vault] lock_mode: does nothing without "
                               "object_lock = yes",
                               END);
    snprintf(text, sizeof(text), "%sobject_lock = yes\nlock_mode = forever\n", s3);
    expect_error_after_minimal(f, text, 15, "GOVERNANCE, COMPLIANCE", END);
    snprintf(text, sizeof(text), "%s%sobject_lock = yes\nlock_mode = governance\n", minimal, s3);
    write_file(f->conf, text);
    cfg = cfg_load(f->conf, &err);
    if (cfg == NULL) {
        fail_msg("%s", err.msg);
        return;
    }
    assert_int_equal(cfg->dests[0].lock_mode, CFG_LOCK_NONE);
    assert_int_equal(cfg->dests[1].lock_mode, CFG_LOCK_GOVERNANCE);
    assert_int_equal(cfg->dests[1].object_lock, 1);
    cfg_free(cfg);
}

static void test_reference(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);

    (void)state;
    assert_non_null(out);
    cfg_print_reference(out);
    assert_int_equal(fclose(out), 0);
    assert_contains(buf, "section\tkey\ttype\tdefault\thelp\n");
    assert_contains(buf, "\nagent\tsettle_ms\tinteger 0..600000\t1500\t");
    assert_contains(buf, "\nagent\tdaily_at\ttime of day HH:MM\t02:00\t");
    assert_contains(buf, "\nagent\tlog_level\tone of error|warn|info|debug\tinfo\t");
    assert_contains(buf, "\nwatch\tpath\tpath, repeatable\t(required)\t");
    assert_contains(buf, "\nwatch\texclude\tglob, repeatable\t(none)\t");
    assert_contains(buf, "\nkeys\tsecret_key\tpath\t(none)\t");
    assert_contains(buf, "\nretention\tkeep_daily\tinteger 1..10000\t35\t");
    assert_contains(buf, "\ndestination NAME\tbucket\tstring (s3 only)\t(required)\t");
    assert_contains(buf, "\ndestination NAME\tmax_inflight\tinteger 1..64\t4\t");
    assert_contains(buf, "\ndestination NAME\tpath_style\tboolean (s3 only)\tno\t");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_full_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relative_config_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_number, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dest_required_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_dest_type_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_daily_at, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_timezone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inline_comment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_watch_paths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
