/*
 * test_evidence.c - catalog/evidence.c: the dump-time record of each
 * collection, restore tests (a finished one is never rewritten, one left
 * running is marked interrupted and does not count as done), the active
 * alerts kept across restarts, and the daily attempts the checklist reads;
 * plus the audit rows' identity (user and command in every detail).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <bson/bson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/catalog.h"

struct fixture {
    char path[64];
    struct catalog *cat;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct cst_err err;
    int fd;

    snprintf(f->path, sizeof(f->path), "/tmp/test_evidence.XXXXXX");
    fd = mkstemp(f->path);
    if (fd < 0)
        return -1;
    close(fd);
    unlink(f->path);
    f->cat = catalog_open(f->path, &err);
    if (f->cat == NULL)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char aux[96];

    catalog_close(f->cat);
    unlink(f->path);
    snprintf(aux, sizeof(aux), "%s-wal", f->path);
    unlink(aux);
    snprintf(aux, sizeof(aux), "%s-shm", f->path);
    unlink(aux);
    free(f);
    return 0;
}

struct seen {
    int n;
    uint64_t crc;
    int has_crc_view;
};

static int on_ns(void *arg, const struct catalog_dump_ns *ns)
{
    struct seen *s = arg;

    s->n++;
    if (strcmp(ns->coll, "invoices") == 0)
        s->crc = ns->crc64;
    if (strcmp(ns->type, "view") == 0)
        s->has_crc_view = ns->has_crc;
    return 0;
}

static void test_dump_record(void **state)
{
    struct fixture *f = *state;
    struct cst_err err;
    struct catalog_dump_ns a = {"billing", "invoices", "collection",         20,
                                4000,      1,          0xfedcba9876543210ull};
    struct catalog_dump_ns v = {"billing", "unpaid", "view", 0, 0, 0, 0};
    struct seen s = {0, 0, -1};

    assert_int_equal(catalog_dump_ns_record(f->cat, "2026-11-01", 1, &a, &err), 0);
    assert_int_equal(catalog_dump_ns_record(f->cat, "2026-11-01", 1, &v, &err), 0);
    assert_int_equal(catalog_each_dump_ns(f->cat, "2026-11-01", 1, on_ns, &s, &err), 2);
    assert_int_equal(s.n, 2);
    assert_true(s.crc == 0xfedcba9876543210ull); /* all 64 bits, the top one too */
    assert_int_equal(s.has_crc_view, 0);
    s.n = 0;
    assert_int_equal(catalog_each_dump_ns(f->cat, "2026-11-01", 2, on_ns, &s, &err), 0);
}

static void test_restore_tests(void **state)
{
    struct fixture *f = *state;
    struct catalog_restore_test t, got;
    struct cst_err err;
    char last[8];

    memset(&t, 0, sizeof(t));
    snprintf(t.month, sizeof(t.month), "2026-10");
    snprintf(t.trigger, sizeof(t.trigger), "schedule");
    t.started_at = 1000;
    assert_int_equal(catalog_restore_test_begin(f->cat, &t, &err), 0);
    assert_int_equal(catalog_restore_test_last_month(f->cat, last, &err), 0);
    /* the next begins while that one is marked running: its process is gone */
    struct catalog_restore_test u = t;
    snprintf(u.month, sizeof(u.month), "2026-11");
    assert_int_equal(catalog_restore_test_begin(f->cat, &u, &err), 0);
    assert_int_equal(catalog_restore_test_get(f->cat, "2026-10", &got, &err), 1);
    assert_string_equal(got.status, "failed");
    assert_non_null(strstr(got.summary, "interrupted"));
    catalog_restore_test_clear(&got);
    /* an interrupted test does not count as done */
    assert_int_equal(catalog_restore_test_last_month(f->cat, last, &err), 0);
    snprintf(u.status, sizeof(u.status), "passed");
    snprintf(u.db, sizeof(u.db), "passed");
    snprintf(u.pruning, sizeof(u.pruning), "not done");
    u.finished_at = 2000;
    u.summary = "ok";
    assert_int_equal(catalog_restore_test_finish(f->cat, &u, &err), 0);
    assert_int_equal(catalog_restore_test_last_month(f->cat, last, &err), 1);
    assert_string_equal(last, "2026-11");
    assert_int_equal(catalog_restore_test_last_passed_at(f->cat), 2000);
    /* finished once, never rewritten */
    snprintf(u.status, sizeof(u.status), "failed");
    assert_int_equal(catalog_restore_test_finish(f->cat, &u, &err), -1);
    assert_int_equal(catalog_restore_test_get(f->cat, NULL, &got, &err), 1);
    assert_string_equal(got.month, "2026-11");
    assert_string_equal(got.status, "passed");
    assert_string_equal(got.pruning, "not done");
    assert_string_equal(got.files, "");
    catalog_restore_test_clear(&got);
}

static void test_alerts_kept(void **state)
{
    struct fixture *f = *state;
    struct catalog_alert a = {"destination_failing:nas",
                              "destination_failing",
                              "nas",
                              "destination nas is failing",
                              500,
                              0},
                         *rows;
    struct cst_err err;
    size_t n;

    assert_int_equal(catalog_alert_save(f->cat, &a, &err), 0);
    a.fired_at = 600;
    a.message = "destination nas is failing: 3 copies waiting";
    assert_int_equal(catalog_alert_save(f->cat, &a, &err), 0);
    assert_int_equal(catalog_alerts_load(f->cat, &rows, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].seen_at, 500); /* first seen is kept */
    assert_int_equal(rows[0].fired_at, 600);
    assert_string_equal(rows[0].message, "destination nas is failing: 3 copies waiting");
    catalog_alerts_free(rows, n);
    assert_int_equal(catalog_alert_delete(f->cat, a.key, &err), 0);
    assert_int_equal(catalog_alerts_load(f->cat, &rows, &n, &err), 0);
    assert_int_equal(n, 0);
    catalog_alerts_free(rows, n);
}

static int count_attempt(void *arg, const struct catalog_daily *d)
{
    int *n = arg;

    assert_true(strcmp(d->date, "2026-11-02") >= 0 && strcmp(d->date, "2026-11-03") <= 0);
    (*n)++;
    return 0;
}

static void test_daily_attempts_in_range(void **state)
{
    struct fixture *f = *state;
    struct cst_err err;
    int attempt, n = 0;
    const char *dates[] = {"2026-11-01", "2026-11-02", "2026-11-02", "2026-11-03", "2026-11-04"};

    for (size_t i = 0; i < 5; i++)
        assert_int_equal(
            catalog_daily_begin(f->cat, dates[i], dates[i], 0, 1, 1000, &attempt, &err), 0);
    assert_int_equal(
        catalog_each_daily_attempt(f->cat, "2026-11-02", "2026-11-03", count_attempt, &n, &err), 0);
    assert_int_equal(n, 3);
}

static int detail_of(void *arg, int64_t id, int64_t at, const char *actor, const char *action,
                     const char *detail)
{
    char **out = arg;

    (void)id;
    (void)at;
    (void)actor;
    (void)action;
    free(*out);
    *out = strdup(detail);
    return 0;
}

/* What another process (or the test) writes, through its own connection. */
static void raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* The metrics' and status's next lock expiry and last successful prune. */
static void test_lock_expiry_and_last_prune(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(catalog_next_lock_expiry(f->cat, 1000), 0);
    assert_int_equal(catalog_prune_last_ok_at(f->cat), 0);
    raw_exec(f->path,
             "INSERT INTO objects (id, sha256, plain_size, stored_size, stored_sha256, compressed, "
             "created_at) VALUES "
             "('o1', zeroblob(32), 1, 1, zeroblob(32), 0, 0);"
             "INSERT INTO copies (object_id, dest, remote_key, verified_at, locked_until) "
             "VALUES ('o1', 'nas', 'k', 1, 900), ('o1', 's3', 'k', 1, 5000);"
             "INSERT INTO snapshot_copies (snapshot_id, dest, storage_class, "
             "retain_until, verified_at) VALUES (1, 'arch', 'GLACIER', 3000, 1), "
             "(2, 'arch', 'GLACIER', NULL, 1);");
    /* the soonest still in the future, of copies and snapshot copies alike */
    assert_int_equal(catalog_next_lock_expiry(f->cat, 1000), 3000);
    assert_int_equal(catalog_next_lock_expiry(f->cat, 3000), 5000);
    assert_int_equal(catalog_next_lock_expiry(f->cat, 5000), 0);
    /* dry runs and failures are no success; the newest confirmed ok one is */
    raw_exec(f->path, "INSERT INTO prune_runs (started_at, finished_at, as_of, confirmed, status) "
                      "VALUES (10, 20, 10, 1, 'ok'), (30, 40, 30, 0, 'ok'),"
                      " (50, 60, 50, 1, 'failed');");
    assert_int_equal(catalog_prune_last_ok_at(f->cat), 20);
}

static void test_audit_rows_name_user_and_command(void **state)
{
    struct fixture *f = *state;
    struct cst_err err;
    char *detail = NULL;
    bson_error_t berr;
    bson_t *doc;
    bson_iter_t it;
    int64_t before = catalog_audit_rows_written(), rows;

    catalog_audit_set_command("custodian restore file '/a b'");
    assert_int_equal(catalog_audit(f->cat, "operator", "restore_file",
                                   "{\"path\":\"/a b\",\"outcome\":\"ok\"}", &err),
                     0);
    assert_int_equal(catalog_audit(f->cat, "agent", "agent_start", "{}", &err), 0);
    catalog_audit_set_command(NULL);
    assert_int_equal(catalog_audit_rows_written(), before + 2);
    assert_int_equal(catalog_each_audit(f->cat, 0, detail_of, &detail, &err), 0);
    doc = bson_new_from_json((const uint8_t *)detail, -1, &berr);
    assert_non_null(doc);
    assert_true(bson_iter_init_find(&it, doc, "uid"));
    assert_int_equal(bson_iter_as_int64(&it), (int64_t)geteuid());
    assert_true(bson_iter_init_find(&it, doc, "command"));
    assert_string_equal(bson_iter_utf8(&it, NULL), "custodian restore file '/a b'");
    bson_destroy(doc);
    free(detail);
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dump_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_tests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alerts_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_daily_attempts_in_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_rows_name_user_and_command, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_expiry_and_last_prune, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
