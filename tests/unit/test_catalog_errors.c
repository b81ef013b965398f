/*
 * test_catalog_errors.c - a catalog that fails is never taken for one that
 * says "no": every lookup, count and listing returns -1 with SQLite's
 * message when its statement fails (here: interrupted by a progress handler
 * while it runs), and the statement cache never finalizes a statement a
 * caller may still hold, however many statements there are.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog/catalog_int.h"

struct fixture {
    char dir[64], db[96];
    struct catalog *cat;
};

static const unsigned char zero_sha[32];

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    struct cst_err err;

    snprintf(f->dir, sizeof(f->dir), "/tmp/cst-catalog-errors-XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->db, sizeof(f->db), "%s/catalog.db", f->dir);
    f->cat = catalog_open(f->db, &err);
    if (f->cat == NULL) {
        fprintf(stderr, "catalog_open: %s\n", err.msg);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];

    catalog_close(f->cat);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* ---- the statement cache ---- */

#define MANY 200
static char many_sql[MANY][40]; /* distinct addresses: the cache keys on them */

static void test_statement_cache_never_evicts(void **state)
{
    static const char held_sql[] = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 "
                                   "FROM c WHERE x < 3) SELECT x FROM c";
    struct fixture *f = *state;
    struct cst_err err;
    sqlite3_stmt *first[MANY], *held;

    /* More statements than the old 48 slots before and after the one a caller holds
     * (the old cache finalized its last slot to make room). */
    for (int i = 0; i < MANY; i++)
        snprintf(many_sql[i], sizeof(many_sql[i]), "SELECT %d", i);
    for (int i = 0; i < 47; i++)
        assert_non_null(first[i] = catalog_stmt(f->cat, many_sql[i], &err));
    held = catalog_stmt(f->cat, held_sql, &err);
    assert_non_null(held);
    assert_int_equal(sqlite3_step(held), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(held, 0), 1);
    for (int i = 47; i < MANY; i++)
        assert_non_null(first[i] = catalog_stmt(f->cat, many_sql[i], &err));
    /* The held statement goes on where it was. */
    assert_int_equal(sqlite3_step(held), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(held, 0), 2);
    assert_int_equal(sqlite3_step(held), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(held, 0), 3);
    assert_int_equal(sqlite3_step(held), SQLITE_DONE);
    /* Every literal still has its one statement, and each works. */
    assert_ptr_equal(catalog_stmt(f->cat, held_sql, &err), held);
    for (int i = 0; i < MANY; i++) {
        assert_ptr_equal(catalog_stmt(f->cat, many_sql[i], &err), first[i]);
        assert_int_equal(sqlite3_step(first[i]), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(first[i], 0), i);
    }
}

/* ---- failed statements ---- */

static const char *failing_sql; /* a statement whose SQL holds this is interrupted */

static int interrupt_it(void *arg)
{
    sqlite3 *db = arg;

    for (sqlite3_stmt *st = sqlite3_next_stmt(db, NULL); st; st = sqlite3_next_stmt(db, st))
        if (sqlite3_stmt_busy(st) && strstr(sqlite3_sql(st), failing_sql))
            return 1;
    return 0;
}

static void fail_statements_with(struct fixture *f, const char *sql)
{
    failing_sql = sql;
    sqlite3_progress_handler(f->cat->db, sql ? 1 : 0, sql ? interrupt_it : NULL, f->cat->db);
}

static void expect_error(struct fixture *f, int rc, struct cst_err *err, const char *what)
{
    if (rc != -1)
        fail_msg("%s returned %d on a failed statement", what, rc);
    if (strstr(err->msg, "interrupted") == NULL)
        fail_msg("%s: message does not say what failed: %s", what, err->msg);
    (void)f;
}

static void seed(struct fixture *f)
{
    struct cst_err err;
    struct catalog_object o;
    struct catalog_version v;
    struct catalog_artifact a;

    memset(&o, 0, sizeof(o));
    memset(o.id, 'a', 64);
    o.plain_size = 10;
    assert_int_equal(catalog_record_object(f->cat, &o, 1, &err), 0);
    assert_int_equal(catalog_record_copy(f->cat, o.id, "nas", "k", 10, zero_sha, 1, &err), 0);
    assert_int_equal(catalog_copy_queue_add(f->cat, o.id, "s3", "spool", 10, zero_sha, 1, &err), 0);
    memset(&v, 0, sizeof(v));
    v.path = (char *)"/d/x";
    memcpy(v.object_id, o.id, 65);
    v.first_seen = v.shipped_at = 1;
    assert_int_equal(catalog_record_version(f->cat, &v, &err), 0);
    v.path = (char *)"/d/pending";
    assert_int_equal(catalog_pending_add(f->cat, &v, &err), 0);
    assert_int_equal(catalog_queue_path(f->cat, "/d/q", "new", 1, &err), 0);
    assert_int_equal(catalog_state_set_int(f->cat, "k", 5, &err), 0);
    int attempt;

    assert_int_equal(
        catalog_daily_begin(f->cat, "2026-11-20", "2026-11-20", 0, 1, 1, &attempt, &err), 0);
    memset(&a, 0, sizeof(a));
    snprintf(a.date, sizeof(a.date), "2026-11-20");
    snprintf(a.kind, sizeof(a.kind), "files");
    a.remote_key = (char *)"r";
    a.attempt = attempt;
    assert_int_equal(catalog_artifact_record(f->cat, &a, 1, &err), 0);
    assert_int_equal(catalog_artifact_copy(f->cat, &a, "nas", 1, &err), 0);
    assert_int_equal(catalog_audit(f->cat, "test", "seed", "{}", &err), 0);
}

static void test_failed_lookups_are_errors(void **state)
{
    struct fixture *f = *state;
    struct cst_err err;
    struct catalog_object o;
    struct catalog_daily d;
    struct catalog_artifact a;
    struct catalog_backlog b;
    char id[65], *text = NULL, date[11];
    int64_t x, y, z;
    unsigned char sha[32];

    seed(f);
    memset(id, 'a', 64);
    id[64] = '\0';
    /* Each call runs once unharmed (its statement is then cached), then fails. */
    for (int round = 0; round < 2; round++) {
        int fail = round == 1;
        int rc;

#define CHECK(sql, call, ok)                                                                       \
    do {                                                                                           \
        fail_statements_with(f, fail ? (sql) : NULL);                                              \
        rc = (call);                                                                               \
        fail_statements_with(f, NULL);                                                             \
        if (fail)                                                                                  \
            expect_error(f, rc, &err, #call);                                                      \
        else if (rc != (ok))                                                                       \
            fail_msg("%s returned %d", #call, rc);                                                 \
    } while (0)

        CHECK("FROM objects WHERE id", catalog_object_get(f->cat, id, &o, &err), 1);
        CHECK("SELECT 1 FROM copies", catalog_copy_exists(f->cat, id, "nas", &err), 1);
        CHECK("SELECT remote_key FROM copies", catalog_copy_key(f->cat, id, "nas", &text, &err), 1);
        free(text);
        text = NULL;
        CHECK("FROM agent_state", catalog_state_get_int(f->cat, "k", 0, &x, &err), 0);
        CHECK("min(queued_at) FROM queue", catalog_queue_stats(f->cat, &x, &y, &err), 0);
        CHECK("WHERE attempts > 0", catalog_queue_failing(f->cat, &x, &text, &err), 0);
        free(text);
        text = NULL;
        CHECK("min(ready_at) FROM queue", catalog_queue_next_ready(f->cat, 0, &x, &err), 0);
        CHECK("min(ready_at) FROM copy_queue",
              catalog_copy_queue_next_ready(f->cat, NULL, 0, &x, &err), 0);
        CHECK("SELECT 1 FROM copy_queue", catalog_copy_queue_has(f->cat, id, "s3", &err), 1);
        CHECK("stored_sha256 FROM copy_queue WHERE object_id",
              catalog_copy_queue_find(f->cat, id, &text, &x, sha, &err), 1);
        free(text);
        text = NULL;
        CHECK("FROM copy_queue WHERE dest = ?1",
              catalog_copy_queue_stats(f->cat, "s3", &x, &y, &text, &err), 0);
        free(text);
        text = NULL;
        CHECK("coalesce(min(first_seen), 0) FROM pending_versions",
              catalog_pending_stats(f->cat, &x, &y, &err), 0);
        CHECK("pv.inode = ?4", catalog_pending_match(f->cat, "/d/pending", 0, 0, 0, NULL, &err), 1);
        CHECK("(SELECT count(*) FROM queue)", catalog_backlog(f->cat, &b, &err), 0);
        CHECK("c.object_id = o.id AND c.dest", catalog_dest_stats(f->cat, "nas", &x, &y, &z, &err),
              0);
        CHECK("WHERE ?1 IS NULL OR r.date", catalog_daily_get(f->cat, NULL, &d, &err), 1);
        if (!fail)
            catalog_daily_clear(&d);
        CHECK("max(date) FROM daily_attempts", catalog_daily_last_success(f->cat, date, &err), 0);
        CHECK("FROM artifacts a WHERE",
              catalog_artifact_get(f->cat, "2026-11-20", "files", &a, &err), 1);
        CHECK("SELECT 1 FROM artifact_copies", catalog_artifact_has_copy(f->cat, &a, "nas", &err),
              1);
        free(a.remote_key);
        a.remote_key = NULL;
        CHECK("FROM audit ORDER BY id", catalog_audit_verify(f->cat, &x, &err), 0);
        CHECK("SELECT id FROM paths", catalog_path_id(f->cat, "/d/x", 0, &err) > 0 ? 1 : -1, 1);
    }
}

static int count_copies(void *arg, const char *dest, const char *key, int64_t at)
{
    (void)dest, (void)key, (void)at;
    (*(int *)arg)++;
    return 0;
}

static void test_failed_listings_and_moves_are_errors(void **state)
{
    struct fixture *f = *state;
    struct cst_err err;
    struct catalog_version v;
    int n = 0;

    seed(f);
    /* A move whose read of the live versions fails must not tombstone them and say ok. */
    fail_statements_with(f, "p2.path = ?1");
    assert_int_equal(catalog_record_move(f->cat, "/d", "/e", 5, &err), -1);
    fail_statements_with(f, NULL);
    assert_int_equal(catalog_live_version(f->cat, "/d/x", &v, &err), 1);
    catalog_version_clear(&v);
    fail_statements_with(f, "SELECT p.path FROM queue q");
    assert_int_equal(catalog_record_move(f->cat, "/d", "/e", 5, &err), -1);
    fail_statements_with(f, NULL);

    fail_statements_with(f, "FROM copies WHERE object_id = ? ORDER BY dest");
    assert_int_equal(catalog_each_copy(
                         f->cat, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                         count_copies, &n, &err),
                     -1);
    fail_statements_with(f, "FROM queue q JOIN paths");
    {
        struct catalog_queue_item *items;
        size_t got;

        assert_int_equal(catalog_queue_ready(f->cat, 10, 5, NULL, NULL, &items, &got, &err), -1);
    }
    fail_statements_with(f, "FROM audit WHERE at >= ?");
    assert_int_equal(catalog_each_audit(f->cat, 0, NULL, NULL, &err), -1);
    fail_statements_with(f, "SELECT id, hash FROM audit");
    assert_int_equal(catalog_audit(f->cat, "test", "x", "{}", &err), -1);
    fail_statements_with(f, NULL);
    /* The chain is whole: a failed head read did not start a second chain. */
    {
        int64_t rows;

        assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);
        assert_int_equal(rows, 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_statement_cache_never_evicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_lookups_are_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_listings_and_moves_are_errors, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
