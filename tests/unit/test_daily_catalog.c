/*
 * test_daily_catalog.c - catalog/daily.c and the audit chain's head: a
 * schema-3 catalog's daily runs and artifacts migrate forward as the
 * attempts they were; every attempt of a date is kept, a retry never
 * rewrites a finished or interrupted one; the artifact a restore takes;
 * the audit head; and the catalog copy ends in bounded time while another
 * connection commits all along.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/catalog_int.h"
#include "common/util.h"

struct fixture {
    char dir[256];
    char db[PATH_MAX];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char tmpl[] = "/tmp/test_daily_catalog.XXXXXX";

    if (f == NULL || mkdtemp(tmpl) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->dir, sizeof(f->dir), "%s", tmpl);
    snprintf(f->db, sizeof(f->db), "%s/catalog.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void raw_exec(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
    sqlite3_close(h);
}

static int64_t raw_int(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;

    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

static struct catalog *open_ok(const char *path)
{
    struct cst_err err = {{0}};
    struct catalog *cat = catalog_open(path, &err);

    if (cat == NULL)
        fail_msg("catalog_open: %s", err.msg);
    return cat;
}

/* --- migration from schema 3 --- */

static void test_schema3_runs_migrate_as_the_attempts_they_were(void **state)
{
    struct fixture *f = *state;
    struct catalog_daily d;
    struct catalog_artifact a;
    struct catalog *cat;
    char last[11];

    for (int v = 1; v <= 3; v++)
        raw_exec(f->db, catalog_migration_sql(v));
    raw_exec(f->db,
             "PRAGMA user_version = 3;"
             "INSERT INTO daily_runs (date, status, started_at, finished_at, attempts, ran,"
             " manifest_written, offsite_verified, db_status, files_status, catalog_status, error)"
             " VALUES ('2026-11-19', 'ok', 100, 200, 1, 1, 1, 1, 'ok', 'ok: 3 files', 'ok', NULL),"
             " ('2026-11-20', 'failed', 300, 400, 2, 1, 1, 0, 'failed: boom', 'ok: 4 files',"
             "  'ok', 'db: failed: boom');"
             "INSERT INTO artifacts VALUES ('2026-11-19', 'db', 'backups/daily/db/x19', 1,"
             " zeroblob(32), 10, zeroblob(32), 20, 150),"
             " ('2026-11-20', 'files', 'backups/daily/files/x20', 1, zeroblob(32), 11,"
             " zeroblob(32), 21, 350);"
             "INSERT INTO artifact_copies VALUES ('2026-11-19', 'db', 'offsite', 160),"
             " ('2026-11-20', 'files', 'offsite', 360);");
    cat = open_ok(f->db);
    assert_int_equal(catalog_user_version(cat), catalog_schema_latest());
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM daily_attempts"), 2);
    assert_int_equal(raw_int(f->db, "SELECT attempt FROM daily_attempts WHERE date = '2026-11-20'"),
                     2);
    assert_int_equal(raw_int(f->db, "SELECT attempt FROM artifacts WHERE date = '2026-11-20'"), 2);
    assert_int_equal(
        raw_int(f->db, "SELECT attempt FROM artifact_copies WHERE date = '2026-11-19'"), 1);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE name LIKE '%_v3'"),
                     0);

    /* The view answers what the table answered. */
    assert_int_equal(catalog_daily_get(cat, "2026-11-20", &d, NULL), 1);
    assert_string_equal(d.status, "failed");
    assert_int_equal(d.attempt, 2);
    assert_int_equal(d.attempts, 2);
    assert_int_equal(d.ok_attempt, 0);
    assert_string_equal(d.made_on, "");
    assert_string_equal(d.error, "db: failed: boom");
    assert_int_equal(d.started_at, 300);
    catalog_daily_clear(&d);
    assert_int_equal(catalog_daily_get(cat, NULL, &d, NULL), 1);
    assert_string_equal(d.date, "2026-11-20");
    catalog_daily_clear(&d);
    assert_int_equal(catalog_daily_last_success(cat, last, NULL), 1);
    assert_string_equal(last, "2026-11-19");

    /* Old objects keep their recorded names. */
    assert_int_equal(catalog_artifact_get(cat, "2026-11-19", "db", &a, NULL), 1);
    assert_int_equal(a.attempt, 1);
    assert_string_equal(a.remote_key, "backups/daily/db/x19");
    assert_int_equal(catalog_artifact_has_copy(cat, &a, "offsite", NULL), 1);
    assert_int_equal(catalog_artifact_has_copy(cat, &a, "elsewhere", NULL), 0);
    free(a.remote_key);
    assert_int_equal(catalog_artifact_get(cat, "2026-11-19", "files", &a, NULL), 0);
    catalog_close(cat);
}

/* --- attempts --- */

static void begin(struct catalog *cat, const char *date, const char *made_on, int64_t now,
                  int want_attempt)
{
    struct cst_err err = {{0}};
    int attempt = 0;

    assert_int_equal(catalog_begin(cat, &err), 0);
    if (catalog_daily_begin(cat, date, made_on, strcmp(date, made_on) != 0, 4242, now, &attempt,
                            &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(catalog_commit(cat, &err), 0);
    assert_int_equal(attempt, want_attempt);
}

static int finish(struct catalog *cat, const char *date, int attempt, const char *status,
                  struct cst_err *err)
{
    struct catalog_daily d;
    int rc;

    memset(&d, 0, sizeof(d));
    snprintf(d.date, sizeof(d.date), "%s", date);
    d.attempt = attempt;
    snprintf(d.status, sizeof(d.status), "%s", status);
    d.finished_at = 999;
    d.ran = 1;
    d.audit_rows = 7;
    memset(d.audit_head, 0xab, 32);
    rc = catalog_daily_finish(cat, &d, err);
    return rc;
}

static void record(struct catalog *cat, const char *date, int attempt, const char *kind,
                   const char *key, const char *copy_on)
{
    struct cst_err err = {{0}};
    struct catalog_artifact a;

    memset(&a, 0, sizeof(a));
    snprintf(a.date, sizeof(a.date), "%s", date);
    a.attempt = attempt;
    snprintf(a.kind, sizeof(a.kind), "%s", kind);
    a.remote_key = (char *)key;
    a.sealed = 1;
    if (catalog_artifact_record(cat, &a, 1, &err) < 0 ||
        (copy_on && catalog_artifact_copy(cat, &a, copy_on, 2, &err) < 0))
        fail_msg("%s", err.msg);
}

static void test_every_attempt_is_kept(void **state)
{
    struct fixture *f = *state;
    struct catalog *cat = open_ok(f->db);
    struct cst_err err = {{0}};
    struct catalog_daily d;
    struct catalog_artifact a;
    char last[11];

    begin(cat, "2026-11-20", "2026-11-20", 10, 1);
    record(cat, "2026-11-20", 1, "db", "k1", "offsite");
    /* Attempt 1's process died: the next attempt marks it interrupted. */
    begin(cat, "2026-11-20", "2026-11-20", 20, 2);
    assert_int_equal(catalog_daily_get(cat, "2026-11-20", &d, NULL), 1);
    assert_int_equal(d.attempt, 2);
    assert_string_equal(d.status, "running");
    assert_int_equal(d.pid, 4242);
    catalog_daily_clear(&d);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM daily_attempts WHERE attempt = 1 AND "
                                    "status = 'failed' AND error LIKE 'interrupted:%'"),
                     1);
    /* ...and what attempt 1 says is never rewritten, even by itself. */
    assert_int_equal(finish(cat, "2026-11-20", 1, "ok", &err), -1);
    assert_non_null(strstr(err.msg, "no longer marked running"));
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM daily_attempts WHERE attempt = 1 AND "
                                    "status = 'failed'"),
                     1);

    /* Attempt 2 made a dump, not yet copied anywhere: a restore takes attempt 1's. */
    record(cat, "2026-11-20", 2, "db", "k2", NULL);
    assert_int_equal(catalog_artifact_get(cat, "2026-11-20", "db", &a, NULL), 1);
    assert_int_equal(a.attempt, 1);
    assert_string_equal(a.remote_key, "k1");
    free(a.remote_key);
    record(cat, "2026-11-20", 2, "db", "k2", "offsite");
    assert_int_equal(catalog_artifact_get(cat, "2026-11-20", "db", &a, NULL), 1);
    assert_int_equal(a.attempt, 2);
    assert_string_equal(a.remote_key, "k2");
    assert_int_equal(catalog_artifact_has_copy(cat, &a, "offsite", NULL), 1);
    free(a.remote_key);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM artifacts WHERE date = '2026-11-20'"), 2);

    assert_int_equal(finish(cat, "2026-11-20", 2, "ok", &err), 0);
    assert_int_equal(catalog_daily_get(cat, "2026-11-20", &d, NULL), 1);
    assert_string_equal(d.status, "ok");
    assert_int_equal(d.attempts, 2);
    assert_int_equal(d.ok_attempt, 2);
    assert_int_equal(d.audit_rows, 7);
    assert_int_equal(d.audit_head[31], 0xab);
    catalog_daily_clear(&d);
    assert_int_equal(finish(cat, "2026-11-20", 2, "failed", &err), -1);

    /* A third attempt that fails: the day still has its successful one. */
    begin(cat, "2026-11-20", "2026-11-20", 30, 3);
    assert_int_equal(finish(cat, "2026-11-20", 3, "failed", &err), 0);
    assert_int_equal(catalog_daily_get(cat, "2026-11-20", &d, NULL), 1);
    assert_string_equal(d.status, "failed");
    assert_int_equal(d.ok_attempt, 2);
    catalog_daily_clear(&d);
    assert_int_equal(catalog_daily_last_success(cat, last, NULL), 1);
    assert_string_equal(last, "2026-11-20");

    /* A backfill says when it was made. */
    begin(cat, "2026-11-18", "2026-11-20", 40, 1);
    assert_int_equal(catalog_daily_get(cat, "2026-11-18", &d, NULL), 1);
    assert_string_equal(d.made_on, "2026-11-20");
    assert_int_equal(d.backfill, 1);
    catalog_daily_clear(&d);
    assert_int_equal(catalog_daily_get(cat, "2026-11-17", &d, NULL), 0);
    catalog_close(cat);
}

/* --- the audit head --- */

static void test_audit_head(void **state)
{
    struct fixture *f = *state;
    struct catalog *cat = open_ok(f->db);
    struct cst_err err = {{0}};
    unsigned char head[32], row[32], zero[32] = {0};
    int64_t rows = -1;

    assert_int_equal(catalog_audit_head(cat, &rows, head, &err), 0);
    assert_int_equal(rows, 0);
    assert_memory_equal(head, zero, 32);
    for (int i = 0; i < 3; i++)
        assert_int_equal(catalog_audit(cat, "test", "thing", "{}", &err), 0);
    assert_int_equal(catalog_audit_head(cat, &rows, head, &err), 0);
    assert_int_equal(rows, 3);
    assert_int_equal(catalog_audit_row_hash(cat, 3, row, &err), 1);
    assert_memory_equal(head, row, 32);
    assert_int_equal(catalog_audit_row_hash(cat, 2, row, &err), 1);
    assert_memory_not_equal(head, row, 32);
    assert_int_equal(catalog_audit_row_hash(cat, 4, row, &err), 0);
    catalog_close(cat);
}

/* --- the catalog copy while another connection commits --- */

struct writer {
    const char *db;
    volatile int stop;
    int64_t commits;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    sqlite3 *h = NULL;

    if (sqlite3_open(w->db, &h) != SQLITE_OK)
        return NULL;
    sqlite3_busy_timeout(h, 5000);
    sqlite3_exec(h, "CREATE TABLE IF NOT EXISTS churn (x)", NULL, NULL, NULL);
    while (!w->stop) {
        if (sqlite3_exec(h, "INSERT INTO churn VALUES (randomblob(100))", NULL, NULL, NULL) ==
            SQLITE_OK)
            w->commits++;
        usleep(2000);
    }
    sqlite3_close(h);
    return NULL;
}

static void test_copy_ends_while_another_connection_commits(void **state)
{
    struct fixture *f = *state;
    struct catalog *cat = open_ok(f->db);
    struct cst_err err = {{0}};
    char *copy = util_printf("%s/copy.db", f->dir);
    struct writer w = {f->db, 0, 0};
    pthread_t thread;
    int64_t t0, ms, before;

    /* Big enough that copying it takes many commits' time. */
    raw_exec(f->db, "CREATE TABLE pad (b); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT "
                    "i + 1 FROM n WHERE i < 128) INSERT INTO pad SELECT zeroblob(1048576) FROM n;");
    assert_int_equal(pthread_create(&thread, NULL, writer_main, &w), 0);
    while (w.commits < 20)
        usleep(1000);
    before = w.commits;
    t0 = util_mono_ms();
    if (catalog_backup_to(cat, copy, &err) < 0)
        fail_msg("%s", err.msg);
    ms = util_mono_ms() - t0;
    w.stop = 1;
    pthread_join(thread, NULL);
    print_message("catalog copy of 128 MiB: %lld ms, %lld commits by another connection "
                  "meanwhile\n",
                  (long long)ms, (long long)(w.commits - before));
    assert_true(ms < 60000);
    assert_true(w.commits - before > 0);
    assert_int_equal(raw_int(copy, "SELECT count(*) FROM pad"), 128);
    assert_int_equal(raw_int(copy, "PRAGMA user_version"), catalog_schema_latest());
    {
        struct catalog *c = open_ok(copy);

        assert_int_equal(catalog_integrity_check(c, &err), 0);
        catalog_close(c);
    }
    /* It never overwrites: a non-empty target is refused. */
    assert_int_equal(catalog_backup_to(cat, copy, &err), -1);
    free(copy);
    catalog_close(cat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema3_runs_migrate_as_the_attempts_they_were, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_every_attempt_is_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_copy_ends_while_another_connection_commits, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
