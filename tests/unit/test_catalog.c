/*
 * test_catalog.c - catalog/: migrations and refusals, the work queue and its
 * generations, versions with tombstones and raw-byte paths, folder deletes
 * and moves against real files, copies and statistics, the hash-chained
 * audit log, transactions and integrity_check.
 *
 * Every test gets a fresh catalog in its own temporary directory; a second
 * raw SQLite connection plays the operator (or attacker) with the sqlite3
 * shell.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog/catalog.h"

static const unsigned char k_zero_sha[32];
#include "common/util.h"

struct fixture {
    char dir[256]; /* realpath of a fresh temporary directory */
    char db[PATH_MAX];
    struct catalog *cat;
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
    char tmpl[] = "/tmp/test_catalog.XXXXXX";
    struct cst_err err = {{0}};
    char *real;

    if (f == NULL || mkdtemp(tmpl) == NULL || (real = realpath(tmpl, NULL)) == NULL ||
        strlen(real) >= sizeof(f->dir)) {
        free(f);
        return -1;
    }
    strcpy(f->dir, real);
    free(real);
    snprintf(f->db, sizeof(f->db), "%s/catalog.db", f->dir);
    f->cat = catalog_open(f->db, &err);
    if (f->cat == NULL) {
        fprintf(stderr, "catalog_open: %s\n", err.msg);
        nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    catalog_close(f->cat);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* --- helpers --- */

static char *in_dir(const struct fixture *f, const char *rel)
{
    return util_printf("%s/%s", f->dir, rel);
}

/* Run SQL on a second, independent connection (the sqlite3 shell). */
static void raw_exec(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        char copy[512];

        snprintf(copy, sizeof(copy), "%s", msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(h);
        fail_msg("raw sql failed: %s: %s", sql, copy);
    }
    sqlite3_close(h);
}

/* First column of the first row as text (malloc'd), or NULL when there is no row. */
static char *raw_text(const char *db, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    char *out = NULL;

    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        out = util_xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return out;
}

static int64_t raw_int(const char *db, const char *sql)
{
    char *s = raw_text(db, sql);
    int64_t v;

    assert_non_null(s);
    v = strtoll(s, NULL, 10);
    free(s);
    return v;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("\"%s\" does not mention \"%s\"", haystack, needle);
}

/* An object whose id is 64 copies of hex digit `tag` and whose hashes are all `tag`. */
static void make_object(struct catalog *cat, char tag, int64_t plain, int64_t stored, char id[65])
{
    struct catalog_object o;
    struct cst_err err = {{0}};

    memset(&o, 0, sizeof(o));
    memset(o.id, tag, 64);
    memset(o.sha256, tag, 32);
    memset(o.stored_sha256, tag ^ 0x55, 32);
    o.plain_size = plain;
    o.stored_size = stored;
    o.compressed = 1;
    assert_int_equal(catalog_record_object(cat, &o, 1000, &err), 0);
    if (id)
        memcpy(id, o.id, 65);
}

static void record_file_full(struct catalog *cat, const char *path, const char *object_id,
                             int64_t first_seen, int64_t size, int64_t mtime_ns, int64_t inode)
{
    struct catalog_version v;
    struct cst_err err = {{0}};

    memset(&v, 0, sizeof(v));
    v.path = (char *)path;
    v.kind = CATALOG_FILE;
    v.size = size;
    v.mtime_ns = mtime_ns;
    v.inode = inode;
    memset(v.sha256, object_id[0], 32);
    snprintf(v.object_id, sizeof(v.object_id), "%s", object_id);
    v.first_seen = first_seen;
    v.shipped_at = first_seen + 100;
    if (catalog_record_version(cat, &v, &err) != 0)
        fail_msg("record_version: %s", err.msg);
}

static void record_file(struct catalog *cat, const char *path, const char *object_id,
                        int64_t first_seen)
{
    record_file_full(cat, path, object_id, first_seen, 10, 5, 77);
}

static void record_symlink(struct catalog *cat, const char *path, const char *target,
                           int64_t first_seen, int64_t size, int64_t mtime_ns, int64_t inode)
{
    struct catalog_version v;
    struct cst_err err = {{0}};

    memset(&v, 0, sizeof(v));
    v.path = (char *)path;
    v.kind = CATALOG_SYMLINK;
    v.size = size;
    v.mtime_ns = mtime_ns;
    v.inode = inode;
    v.link_target = (char *)target;
    v.first_seen = first_seen;
    v.shipped_at = first_seen;
    if (catalog_record_version(cat, &v, &err) != 0)
        fail_msg("record_version (symlink): %s", err.msg);
}

/* 1 if path has a live version (object id copied out when obj is set). */
static int live(struct catalog *cat, const char *path, char obj[65])
{
    struct catalog_version v;
    struct cst_err err = {{0}};
    int rc = catalog_live_version(cat, path, &v, &err);

    assert_true(rc == 0 || rc == 1);
    if (rc == 1) {
        assert_string_equal(v.path, path);
        if (obj)
            memcpy(obj, v.object_id, 65);
        catalog_version_clear(&v);
    }
    return rc;
}

/* Object id of the version standing at `at`, "" if none. */
static void object_at(struct catalog *cat, const char *path, int64_t at, char out[65])
{
    struct catalog_version v;
    struct cst_err err = {{0}};
    int rc = catalog_version_at(cat, path, at, &v, &err);

    assert_true(rc == 0 || rc == 1);
    out[0] = '\0';
    if (rc == 1) {
        memcpy(out, v.object_id, 65);
        catalog_version_clear(&v);
    }
}

static int64_t deleted_at(struct catalog *cat, const char *path)
{
    struct catalog_version v;
    struct cst_err err = {{0}};
    int64_t d;

    assert_int_equal(catalog_version_at(cat, path, INT64_MAX, &v, &err), 1);
    d = v.deleted_at;
    catalog_version_clear(&v);
    return d;
}

static void real_stat(const char *path, int64_t *size, int64_t *mtime_ns, int64_t *inode)
{
    struct stat sb;

    assert_int_equal(lstat(path, &sb), 0);
    *size = (int64_t)sb.st_size;
    *mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    *inode = (int64_t)sb.st_ino;
}

static void write_text(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

static void mkdir_rel(const struct fixture *f, const char *rel)
{
    char *p = in_dir(f, rel);

    assert_int_equal(mkdir(p, 0700), 0);
    free(p);
}

/* Record a version of a real file with its real stat. */
static void record_real(struct catalog *cat, const char *path, const char *object_id,
                        int64_t first_seen)
{
    int64_t size, mtime_ns, inode;

    real_stat(path, &size, &mtime_ns, &inode);
    record_file_full(cat, path, object_id, first_seen, size, mtime_ns, inode);
}

struct queue_list {
    struct catalog_queue_item *items;
    size_t n;
};

static struct queue_list ready(struct catalog *cat, int64_t now, size_t limit)
{
    struct queue_list q = {NULL, 0};
    struct cst_err err = {{0}};

    assert_int_equal(catalog_queue_ready(cat, now, limit, NULL, NULL, &q.items, &q.n, &err), 0);
    return q;
}

static int64_t queue_depth(struct catalog *cat)
{
    int64_t depth = -1, oldest = -1;

    assert_int_equal(catalog_queue_stats(cat, &depth, &oldest, NULL), 0);
    return depth;
}

/* Collects the paths visited by catalog_each_version_at/of. */
struct visit {
    size_t n;
    char *paths[32];
    char objects[32][65];
    int64_t first_seen[32], deleted_at[32];
    int stop_after; /* return 7 after this many, 0 = never */
};

static int collect(void *arg, const struct catalog_version *v)
{
    struct visit *vis = arg;

    assert_true(vis->n < 32);
    vis->paths[vis->n] = util_xstrdup(v->path);
    memcpy(vis->objects[vis->n], v->object_id, 65);
    vis->first_seen[vis->n] = v->first_seen;
    vis->deleted_at[vis->n] = v->deleted_at;
    vis->n++;
    return vis->stop_after && vis->n >= (size_t)vis->stop_after ? 7 : 0;
}

static void visit_free(struct visit *vis)
{
    for (size_t i = 0; i < vis->n; i++)
        free(vis->paths[i]);
    vis->n = 0;
}

/* Visit prefix at `at` and compare with a NULL-terminated list of expected paths, in order. */
static void expect_listing(struct catalog *cat, const char *prefix, int64_t at, ...)
{
    struct visit vis;
    struct cst_err err = {{0}};
    va_list ap;
    size_t i = 0;
    const char *want;

    memset(&vis, 0, sizeof(vis));
    assert_int_equal(catalog_each_version_at(cat, prefix, at, collect, &vis, &err), 0);
    va_start(ap, at);
    while ((want = va_arg(ap, const char *)) != NULL) {
        if (i >= vis.n)
            fail_msg("listing of \"%s\" at %lld: missing \"%s\"", prefix, (long long)at, want);
        if (strcmp(vis.paths[i], want) != 0)
            fail_msg("listing of \"%s\" at %lld: entry %zu is \"%s\", expected \"%s\"", prefix,
                     (long long)at, i, vis.paths[i], want);
        i++;
    }
    va_end(ap);
    if (i != vis.n)
        fail_msg("listing of \"%s\" at %lld: unexpected extra \"%s\"", prefix, (long long)at,
                 vis.paths[i]);
    visit_free(&vis);
}

/* --- migrations and opening --- */

/* The old one-value forms of lookups that now report errors apart (they must not fail here). */
static int64_t next_ready(struct catalog *cat, int64_t after)
{
    int64_t next = -1;

    assert_int_equal(catalog_queue_next_ready(cat, after, &next, NULL), 0);
    return next;
}

static char *copy_key(struct catalog *cat, const char *object_id, const char *dest)
{
    char *key = (char *)"unset";
    int rc = catalog_copy_key(cat, object_id, dest, &key, NULL);

    assert_true(rc == 0 || rc == 1);
    assert_true((rc == 1) == (key != NULL));
    return key;
}

static int64_t state_get(struct catalog *cat, const char *key, int64_t dflt)
{
    int64_t v = 0;

    assert_int_equal(catalog_state_get_int(cat, key, dflt, &v, NULL), 0);
    return v;
}

static void test_fresh_catalog(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char *mode, obj[65];
    int latest = catalog_schema_latest();

    assert_true(latest >= 1);
    assert_int_equal(catalog_user_version(f->cat), latest);
    assert_int_equal(raw_int(f->db, "PRAGMA user_version"), latest);
    mode = raw_text(f->db, "PRAGMA journal_mode");
    assert_non_null(mode);
    assert_string_equal(mode, "wal");
    free(mode);
    assert_int_equal(
        raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                       "('paths','objects','copies','versions','queue','audit','agent_state')"),
        7);

    /* Reopening migrates nothing and keeps the data. */
    make_object(f->cat, 'a', 1, 1, obj);
    record_file(f->cat, "/keep", obj, 100);
    catalog_close(f->cat);
    f->cat = catalog_open(f->db, &err);
    assert_non_null(f->cat);
    assert_int_equal(catalog_user_version(f->cat), latest);
    assert_int_equal(live(f->cat, "/keep", NULL), 1);
    catalog_close(f->cat);
    f->cat = catalog_open(f->db, &err);
    assert_non_null(f->cat);
    assert_int_equal(catalog_user_version(f->cat), latest);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM versions"), 1);
    assert_int_equal(catalog_integrity_check(f->cat, &err), 0);
}

/* Every lookup of the copy queue by object goes through its primary key (object_id, dest):
 * no second index by object to write for each queued copy. */
static void test_copy_queue_by_object_uses_the_key(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(
        raw_int(f->db, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = "
                       "'copy_queue' AND sql LIKE '%(object_id)%'"),
        0);
    {
        sqlite3 *h = NULL;
        sqlite3_stmt *st = NULL;
        int keyed = 0;

        assert_int_equal(sqlite3_open_v2(f->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(h,
                                            "EXPLAIN QUERY PLAN SELECT count(*) FROM copy_queue "
                                            "WHERE object_id = 'x'",
                                            -1, &st, NULL),
                         SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *detail = (const char *)sqlite3_column_text(st, 3);

            if (detail && strstr(detail, "USING PRIMARY KEY (object_id=?)"))
                keyed = 1;
        }
        sqlite3_finalize(st);
        sqlite3_close(h);
        assert_true(keyed);
    }
}

/* A coverage check in 16 slices of the object ids (the agent's, one per loop turn) queues
 * exactly what one check over all objects would: each lacking object once, none twice. */
static void test_coverage_in_slices_is_the_whole_check(void **state)
{
    struct fixture *f = *state;
    static const char bounds[] = "0123456789abcdefg";
    struct cst_err err;
    int64_t total = 0;

    /* 64 retained objects, four per first hex digit; "a" holds the even ones. */
    raw_exec(f->db, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 63)"
                    " INSERT INTO objects (id, sha256, plain_size, stored_size, stored_sha256,"
                    " compressed, created_at) SELECT substr('0123456789abcdef', i % 16 + 1, 1) ||"
                    " printf('%063d', i), x'00', 1, 1, x'00', 0, 1 FROM n;"
                    "INSERT INTO paths (id, path) SELECT rowid, CAST(id AS BLOB) FROM objects;"
                    "INSERT INTO versions (path_id, kind, size, mtime_ns, inode, object_id,"
                    " first_seen, shipped_at) SELECT rowid, 'file', 1, 1, 1, id, 1, 1 FROM objects;"
                    "INSERT INTO copies (object_id, dest, remote_key, verified_at) SELECT id, 'a',"
                    " id, 1 FROM objects WHERE rowid % 2 = 0;");
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < 16; i++) {
            char lo[2] = {i > 0 ? bounds[i] : '\0', '\0'}, hi[2] = {bounds[i + 1], '\0'};
            int64_t n = catalog_coverage_queue_range(f->cat, "a", 5, lo, hi, &err);

            assert_true(n >= 0);
            total += n;
        }
    /* The second pass found everything queued already. */
    assert_int_equal(total, 32);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM copy_queue WHERE dest = 'a' AND"
                                    " object_id IN (SELECT object_id FROM copies)"),
                     0);
    assert_int_equal(catalog_coverage_queue(f->cat, "a", 5, &err), 0);
    assert_int_equal(catalog_coverage_queue(f->cat, "b", 5, &err), 64);
}

static void test_newer_catalog_refused(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char *path = in_dir(f, "newer.db"), sql[128];
    int newer = catalog_schema_latest() + 1;

    snprintf(sql, sizeof(sql),
             "CREATE TABLE future (x); INSERT INTO future VALUES (42); "
             "PRAGMA user_version = %d;",
             newer);
    raw_exec(path, sql);

    assert_null(catalog_open(path, &err));
    assert_contains(err.msg, "newer");
    assert_contains(err.msg, path);
    /* Refused, not migrated: version and content as they were. */
    assert_int_equal(raw_int(path, "PRAGMA user_version"), newer);
    assert_int_equal(raw_int(path, "SELECT x FROM future"), 42);
    assert_int_equal(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'paths'"), 0);

    memset(&err, 0, sizeof(err));
    assert_null(catalog_open_readonly(path, &err));
    assert_contains(err.msg, "newer");
    /* A refused newer catalog is left exactly as it was (not switched to WAL). */
    {
        char *mode = raw_text(path, "PRAGMA journal_mode");

        assert_string_equal(mode, "delete");
        free(mode);
    }
    free(path);
}

static void test_readonly_refuses_non_catalog(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char *other = in_dir(f, "other.db"), *missing = in_dir(f, "missing.db");
    struct stat sb;

    raw_exec(other, "CREATE TABLE something (x);");
    assert_null(catalog_open_readonly(other, &err));
    assert_contains(err.msg, "not a custodian catalog");
    assert_contains(err.msg, other);

    /* A missing file is refused and not created. */
    memset(&err, 0, sizeof(err));
    assert_null(catalog_open_readonly(missing, &err));
    assert_true(err.msg[0] != '\0');
    assert_int_equal(stat(missing, &sb), -1);
    free(other);
    free(missing);
}

static void test_readonly_reads_but_cannot_write(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog *ro;
    char obj[65], got[65];

    make_object(f->cat, 'b', 1, 1, obj);
    record_file(f->cat, "/ro/file", obj, 100);
    ro = catalog_open_readonly(f->db, &err);
    assert_non_null(ro);
    assert_int_equal(catalog_user_version(ro), catalog_schema_latest());
    assert_int_equal(live(ro, "/ro/file", got), 1);
    assert_string_equal(got, obj);
    assert_int_equal(catalog_queue_path(ro, "/ro/other", "new", 1, &err), -1);
    assert_true(err.msg[0] != '\0');
    catalog_close(ro);
}

static void test_version_zero_is_migrated(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char *empty = in_dir(f, "empty.db"), *zero = in_dir(f, "zero.db");
    struct catalog *cat;
    int fd;

    /* A zero-byte file. */
    fd = open(empty, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    cat = catalog_open(empty, &err);
    assert_non_null(cat);
    assert_int_equal(catalog_user_version(cat), catalog_schema_latest());
    assert_int_equal(catalog_queue_path(cat, "/x", "new", 1, &err), 0);
    catalog_close(cat);

    /* A real SQLite file, user_version 0, no tables. */
    raw_exec(zero, "PRAGMA user_version = 0; CREATE TABLE t (x); DROP TABLE t;");
    assert_int_equal(raw_int(zero, "PRAGMA user_version"), 0);
    cat = catalog_open(zero, &err);
    assert_non_null(cat);
    assert_int_equal(catalog_user_version(cat), catalog_schema_latest());
    assert_int_equal(catalog_integrity_check(cat, &err), 0);
    catalog_close(cat);
    assert_int_equal(raw_int(zero, "PRAGMA user_version"), catalog_schema_latest());
    free(empty);
    free(zero);
}

static void test_failed_migration_rolls_back(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char *clash = in_dir(f, "clash.db");

    /* A table the first migration wants to create already exists: migration 1 fails. */
    raw_exec(clash, "CREATE TABLE audit (x);");
    assert_null(catalog_open(clash, &err));
    assert_contains(err.msg, "migration to schema version 1");
    assert_int_equal(raw_int(clash, "PRAGMA user_version"), 0);
    assert_int_equal(raw_int(clash, "SELECT count(*) FROM sqlite_master WHERE name = 'paths'"), 0);
    free(clash);
}

/* --- the work queue --- */

static void test_queue_generations(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct queue_list q;
    int64_t t0 = util_now_ms(), path_id, queued_at, gen1, gen2;

    assert_int_equal(catalog_queue_path(f->cat, "/q/a", "new", 1000, &err), 0);
    q = ready(f->cat, 999, 10);
    assert_int_equal(q.n, 0);
    catalog_queue_items_free(q.items, q.n);

    q = ready(f->cat, 1000, 10);
    assert_int_equal(q.n, 1);
    assert_string_equal(q.items[0].path, "/q/a");
    assert_string_equal(q.items[0].reason, "new");
    gen1 = q.items[0].gen;
    assert_true(gen1 > 0);
    assert_int_equal(q.items[0].attempts, 0);
    assert_true(q.items[0].queued_at >= t0 && q.items[0].queued_at <= util_now_ms());
    path_id = q.items[0].path_id;
    queued_at = q.items[0].queued_at;
    assert_true(path_id > 0);
    catalog_queue_items_free(q.items, q.n);

    /* A change while the old content ships: same row, next generation, new ready time. */
    assert_int_equal(catalog_queue_path(f->cat, "/q/a", "modified", 2000, &err), 0);
    assert_int_equal(queue_depth(f->cat), 1);
    q = ready(f->cat, 1999, 10);
    assert_int_equal(q.n, 0);
    catalog_queue_items_free(q.items, q.n);
    q = ready(f->cat, 2000, 10);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.items[0].path_id, path_id);
    gen2 = q.items[0].gen;
    assert_true(gen2 > gen1);
    assert_string_equal(q.items[0].reason, "modified");
    assert_int_equal(q.items[0].queued_at, queued_at); /* still the oldest wait */
    catalog_queue_items_free(q.items, q.n);

    /* The ship of the first generation finishing must not remove the second. */
    assert_int_equal(catalog_queue_done(f->cat, path_id, gen1, &err), 0);
    assert_int_equal(queue_depth(f->cat), 1);
    assert_int_equal(catalog_queue_gen(f->cat, path_id, &err), gen2);
    assert_int_equal(catalog_queue_done(f->cat, path_id, gen2, &err), 0);
    assert_int_equal(queue_depth(f->cat), 0);
    assert_int_equal(catalog_queue_gen(f->cat, path_id, &err), 0);
    /* Done on an absent entry is harmless. */
    assert_int_equal(catalog_queue_done(f->cat, path_id, gen2, &err), 0);

    /* Queued again after removal: a new row whose generation was never used before,
     * so a seal of the old content still in flight can never match it. */
    assert_int_equal(catalog_queue_path(f->cat, "/q/a", "new", 3000, &err), 0);
    q = ready(f->cat, 3000, 10);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.items[0].path_id, path_id); /* the path keeps its id */
    assert_true(q.items[0].gen > gen2);
    catalog_queue_items_free(q.items, q.n);
}

struct skip_set {
    int64_t ids[4];
    size_t n;
    int calls;
};

static int skip_some(void *arg, int64_t path_id)
{
    struct skip_set *s = arg;

    s->calls++;
    for (size_t i = 0; i < s->n; i++)
        if (s->ids[i] == path_id)
            return 1;
    return 0;
}

static void test_queue_ready_order_limit_skip(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct queue_list q;
    struct skip_set skip = {{0}, 0, 0};
    int64_t ids[8];
    char path[16];

    /* /q/1 is ready last, /q/5 first: the newest comes first (new work goes ahead of a
     * backlog). */
    for (int i = 1; i <= 5; i++) {
        snprintf(path, sizeof(path), "/q/%d", i);
        assert_int_equal(catalog_queue_path(f->cat, path, "new", (6 - i) * 100, &err), 0);
    }
    q = ready(f->cat, INT64_MAX, 10);
    assert_int_equal(q.n, 5);
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof(path), "/q/%d", i + 1);
        assert_string_equal(q.items[i].path, path);
        ids[i + 1] = q.items[i].path_id;
    }
    catalog_queue_items_free(q.items, q.n);

    /* ready_at is respected. */
    q = ready(f->cat, 350, 10);
    assert_int_equal(q.n, 3);
    assert_string_equal(q.items[0].path, "/q/3");
    assert_string_equal(q.items[1].path, "/q/4");
    assert_string_equal(q.items[2].path, "/q/5");
    catalog_queue_items_free(q.items, q.n);
    q = ready(f->cat, 99, 10);
    assert_int_equal(q.n, 0);
    catalog_queue_items_free(q.items, q.n);

    /* The limit takes the newest. */
    q = ready(f->cat, 1000, 2);
    assert_int_equal(q.n, 2);
    assert_string_equal(q.items[0].path, "/q/1");
    assert_string_equal(q.items[1].path, "/q/2");
    catalog_queue_items_free(q.items, q.n);
    q = ready(f->cat, 1000, 0);
    assert_int_equal(q.n, 0);
    catalog_queue_items_free(q.items, q.n);

    /* Skipped entries (in flight) do not use up the limit. */
    skip.ids[0] = ids[1];
    skip.ids[1] = ids[3];
    skip.n = 2;
    assert_int_equal(catalog_queue_ready(f->cat, 1000, 2, skip_some, &skip, &q.items, &q.n, &err),
                     0);
    assert_int_equal(q.n, 2);
    assert_string_equal(q.items[0].path, "/q/2");
    assert_string_equal(q.items[1].path, "/q/4");
    assert_true(skip.calls >= 4);
    catalog_queue_items_free(q.items, q.n);

    /* Equal ready times: by path id, the one first queued last. */
    assert_int_equal(catalog_queue_path(f->cat, "/q/7", "new", 100, &err), 0);
    assert_int_equal(catalog_queue_path(f->cat, "/q/6", "new", 100, &err), 0);
    q = ready(f->cat, 100, 10);
    assert_int_equal(q.n, 3);
    assert_string_equal(q.items[0].path, "/q/6");
    assert_string_equal(q.items[1].path, "/q/7");
    assert_string_equal(q.items[2].path, "/q/5");
    catalog_queue_items_free(q.items, q.n);

    /* The next wake-up. */
    assert_int_equal(next_ready(f->cat, 0), 100);
    assert_int_equal(next_ready(f->cat, 99), 100);
    assert_int_equal(next_ready(f->cat, 100), 200);
    assert_int_equal(next_ready(f->cat, 450), 500);
    assert_int_equal(next_ready(f->cat, 500), INT64_MAX);
}

static void test_queue_empty(void **state)
{
    struct fixture *f = *state;
    struct queue_list q;
    int64_t depth = -1, oldest = -1, failing = -1;
    char *last = (char *)"unset";

    assert_int_equal(catalog_queue_stats(f->cat, &depth, &oldest, NULL), 0);
    assert_int_equal(depth, 0);
    assert_int_equal(oldest, 0);
    assert_int_equal(catalog_queue_failing(f->cat, &failing, &last, NULL), 0);
    assert_int_equal(failing, 0);
    assert_null(last);
    assert_int_equal(next_ready(f->cat, INT64_MIN), INT64_MAX);
    q = ready(f->cat, INT64_MAX, 10);
    assert_int_equal(q.n, 0);
    catalog_queue_items_free(q.items, q.n);
}

static void test_queue_retry_stats_failing(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct queue_list q;
    int64_t t0 = util_now_ms(), depth, oldest, failing, a_id = 0, b_id = 0, next, a_gen, b_gen;
    char *last = NULL;

    assert_int_equal(catalog_queue_path(f->cat, "/r/a", "new", 1000, &err), 0);
    assert_int_equal(catalog_queue_path(f->cat, "/r/b", "new", 1000, &err), 0);
    assert_int_equal(catalog_queue_stats(f->cat, &depth, &oldest, NULL), 0);
    assert_int_equal(depth, 2);
    assert_true(oldest >= t0 && oldest <= util_now_ms());
    q = ready(f->cat, 1000, 10);
    assert_int_equal(q.n, 2);
    /* Equal ready times: the one first queued last comes first. */
    assert_string_equal(q.items[0].path, "/r/b");
    a_id = q.items[1].path_id;
    b_id = q.items[0].path_id;
    a_gen = q.items[1].gen;
    b_gen = q.items[0].gen;
    catalog_queue_items_free(q.items, q.n);

    /* A retry pushes the entry a minute into the future and counts the attempt. */
    assert_int_equal(catalog_queue_retry(f->cat, a_id, a_gen, 60000, "dest nas: timed out", &err),
                     0);
    q = ready(f->cat, 1000, 10);
    assert_int_equal(q.n, 1);
    assert_string_equal(q.items[0].path, "/r/b");
    catalog_queue_items_free(q.items, q.n);
    next = next_ready(f->cat, 1000);
    assert_true(next >= t0 + 60000 && next <= util_now_ms() + 60000);
    q = ready(f->cat, next, 10);
    assert_int_equal(q.n, 2);
    assert_string_equal(q.items[0].path, "/r/a"); /* ready later: the newest */
    assert_int_equal(q.items[0].attempts, 1);
    assert_int_equal(q.items[0].gen, a_gen);
    catalog_queue_items_free(q.items, q.n);

    assert_int_equal(catalog_queue_failing(f->cat, &failing, &last, NULL), 0);
    assert_int_equal(failing, 1);
    assert_non_null(last);
    assert_string_equal(last, "dest nas: timed out");
    free(last);

    /* A retry with a stale generation changes nothing. */
    assert_int_equal(catalog_queue_retry(f->cat, b_id, b_gen - 1, 60000, "stale", &err), 0);
    assert_int_equal(catalog_queue_failing(f->cat, &failing, &last, NULL), 0);
    assert_int_equal(failing, 1);
    free(last);

    /* A shorter delay never pulls an entry forward. */
    assert_int_equal(catalog_queue_retry(f->cat, a_id, a_gen, 0, "again", &err), 0);
    assert_int_equal(next_ready(f->cat, 1000), next);
    q = ready(f->cat, next, 10);
    assert_string_equal(q.items[0].path, "/r/a");
    assert_int_equal(q.items[0].attempts, 2);
    catalog_queue_items_free(q.items, q.n);

    /* The newest error is the one of the entry retried furthest out. */
    assert_int_equal(catalog_queue_retry(f->cat, b_id, b_gen, 120000, "dest s3: 503", &err), 0);
    assert_int_equal(catalog_queue_failing(f->cat, &failing, &last, NULL), 0);
    assert_int_equal(failing, 2);
    assert_string_equal(last, "dest s3: 503");
    free(last);
    assert_int_equal(catalog_queue_stats(f->cat, &depth, &oldest, NULL), 0);
    assert_int_equal(depth, 2);

    /* Once done, the entry no longer counts as failing. */
    assert_int_equal(catalog_queue_done(f->cat, b_id, b_gen, &err), 0);
    assert_int_equal(catalog_queue_failing(f->cat, &failing, &last, NULL), 0);
    assert_int_equal(failing, 1);
    assert_string_equal(last, "again");
    free(last);
}

/* --- versions --- */

static void test_version_lifecycle(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_version v;
    struct visit vis;
    char o1[65], o2[65], got[65];
    unsigned char sha[32];

    make_object(f->cat, '1', 10, 20, o1);
    make_object(f->cat, '2', 11, 21, o2);
    record_file_full(f->cat, "/v/a", o1, 1000, 10, 123456789, 77);

    assert_int_equal(catalog_live_version(f->cat, "/v/a", &v, &err), 1);
    assert_string_equal(v.path, "/v/a");
    assert_true(v.id > 0 && v.path_id > 0);
    assert_int_equal(v.kind, CATALOG_FILE);
    assert_int_equal(v.size, 10);
    assert_int_equal(v.mtime_ns, 123456789);
    assert_int_equal(v.inode, 77);
    memset(sha, '1', 32);
    assert_memory_equal(v.sha256, sha, 32);
    assert_string_equal(v.object_id, o1);
    assert_null(v.link_target);
    assert_int_equal(v.first_seen, 1000);
    assert_int_equal(v.shipped_at, 1100);
    assert_int_equal(v.deleted_at, 0);
    catalog_version_clear(&v);

    /* Before it was first seen there was nothing. */
    object_at(f->cat, "/v/a", 999, got);
    assert_string_equal(got, "");
    object_at(f->cat, "/v/a", 1000, got);
    assert_string_equal(got, o1);
    object_at(f->cat, "/v/a", 5000, got);
    assert_string_equal(got, o1);

    /* A second version. */
    record_file(f->cat, "/v/a", o2, 2000);
    object_at(f->cat, "/v/a", 1999, got);
    assert_string_equal(got, o1);
    object_at(f->cat, "/v/a", 2000, got);
    assert_string_equal(got, o2);
    assert_int_equal(live(f->cat, "/v/a", got), 1);
    assert_string_equal(got, o2);

    /* Deletion is a tombstone on the newest version. */
    assert_int_equal(catalog_record_delete(f->cat, "/v/a", 3000, &err), 1);
    assert_int_equal(live(f->cat, "/v/a", NULL), 0);
    assert_int_equal(catalog_version_at(f->cat, "/v/a", INT64_MAX, &v, &err), 1);
    assert_string_equal(v.object_id, o2);
    assert_int_equal(v.deleted_at, 3000);
    catalog_version_clear(&v);
    object_at(f->cat, "/v/a", 2999, got);
    assert_string_equal(got, o2);
    object_at(f->cat, "/v/a", 3000, got);
    assert_string_equal(got, "");
    object_at(f->cat, "/v/a", 1500, got);
    assert_string_equal(got, o1);
    /* Nothing live left to delete. */
    assert_int_equal(catalog_record_delete(f->cat, "/v/a", 3500, &err), 0);
    assert_int_equal(deleted_at(f->cat, "/v/a"), 3000);

    /* Re-created later. */
    record_file(f->cat, "/v/a", o1, 4000);
    assert_int_equal(live(f->cat, "/v/a", got), 1);
    assert_string_equal(got, o1);
    object_at(f->cat, "/v/a", 3500, got);
    assert_string_equal(got, "");

    /* The whole history, oldest first. */
    memset(&vis, 0, sizeof(vis));
    assert_int_equal(catalog_each_version_of(f->cat, "/v/a", collect, &vis, &err), 0);
    assert_int_equal(vis.n, 3);
    assert_string_equal(vis.objects[0], o1);
    assert_int_equal(vis.first_seen[0], 1000);
    assert_int_equal(vis.deleted_at[0], 0);
    assert_string_equal(vis.objects[1], o2);
    assert_int_equal(vis.deleted_at[1], 3000);
    assert_string_equal(vis.objects[2], o1);
    assert_int_equal(vis.first_seen[2], 4000);
    visit_free(&vis);

    /* Unknown paths. */
    assert_int_equal(live(f->cat, "/v/none", NULL), 0);
    object_at(f->cat, "/v/none", INT64_MAX, got);
    assert_string_equal(got, "");
    assert_int_equal(catalog_record_delete(f->cat, "/v/none", 1, &err), 0);
    memset(&vis, 0, sizeof(vis));
    assert_int_equal(catalog_each_version_of(f->cat, "/v/none", collect, &vis, &err), 0);
    assert_int_equal(vis.n, 0);
}

static void test_folder_delete_boundaries(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char o[65];
    static const char *const inside[] = {"/d/a", "/d/a/x", "/d/a/y/z"};
    /* Siblings sharing a string prefix, including bytes on either side of '/'. */
    static const char *const outside[] = {"/d/ab/x", "/d/a-b", "/d/a.x",   "/d/a0",
                                          "/d/a0/x", "/d/b",   "/d/a\x01", "/d"};

    make_object(f->cat, 'c', 1, 1, o);
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++)
        record_file(f->cat, inside[i], o, 100);
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++)
        record_file(f->cat, outside[i], o, 100);

    assert_int_equal(catalog_record_delete(f->cat, "/d/a", 5000, &err), 3);
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
        assert_int_equal(live(f->cat, inside[i], NULL), 0);
        assert_int_equal(deleted_at(f->cat, inside[i]), 5000);
    }
    for (size_t i = 0; i < sizeof(outside) / sizeof(outside[0]); i++)
        if (live(f->cat, outside[i], NULL) != 1)
            fail_msg("deleting /d/a also deleted %s", outside[i]);

    /* A folder with no version of its own. */
    record_file(f->cat, "/e/1", o, 100);
    record_file(f->cat, "/e/sub/2", o, 100);
    record_file(f->cat, "/e1", o, 100);
    assert_int_equal(catalog_record_delete(f->cat, "/e", 6000, &err), 2);
    assert_int_equal(live(f->cat, "/e1", NULL), 1);
    assert_int_equal(live(f->cat, "/e/sub/2", NULL), 0);

    /* A file: only itself. */
    record_file(f->cat, "/g/x", o, 100);
    record_file(f->cat, "/g/xy", o, 100);
    assert_int_equal(catalog_record_delete(f->cat, "/g/x", 7000, &err), 1);
    assert_int_equal(live(f->cat, "/g/xy", NULL), 1);

    /* A file whose name a folder took: the file alone, never what is below the name. */
    record_file(f->cat, "/h/x", o, 100);
    record_file(f->cat, "/h/x/inner", o, 100);
    assert_int_equal(catalog_record_delete_file(f->cat, "/h/x", 8000, &err), 1);
    assert_int_equal(deleted_at(f->cat, "/h/x"), 8000);
    assert_int_equal(live(f->cat, "/h/x/inner", NULL), 1);
    assert_int_equal(catalog_record_delete_file(f->cat, "/h/x", 8100, &err), 0);
}

/* A version sealed earlier can be recorded later (its first copy made later): the path's
 * newest is the one first seen last, for every reader. Here the later one was deleted
 * before the earlier one was recorded: the path is not live, whatever the ids say. */
static void test_newest_is_the_one_first_seen_last(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_stats st;
    int64_t files = -1, bytes = -1;
    char o[65];

    make_object(f->cat, 'n', 1, 1, o);
    record_file(f->cat, "/n/f", o, 2000); /* id 1, the newer */
    assert_int_equal(catalog_record_delete(f->cat, "/n/f", 3000, &err), 1);
    record_file(f->cat, "/n/f", o, 1000); /* id 2, sealed first */
    assert_int_equal(live(f->cat, "/n/f", NULL), 0);
    assert_int_equal(catalog_stats(f->cat, &st, &err), 0);
    assert_int_equal(st.live_files, 0);
    assert_int_equal(catalog_live_bytes(f->cat, &files, &bytes, &err), 0);
    assert_int_equal(files, 0);
    assert_int_equal(bytes, 0);
    /* and at 1500, the earlier one stood */
    object_at(f->cat, "/n/f", 1500, o);
    assert_true(o[0] != '\0');
}

struct listed {
    char *paths[8];
    size_t n;
};

static int list_path(void *arg, const char *path)
{
    struct listed *l = arg;

    if (l->n == 8)
        return -1;
    l->paths[l->n++] = util_xstrdup(path);
    return 0;
}

static void listed_free(struct listed *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->paths[i]);
    l->n = 0;
}

/* The copy schedule per destination (an index search; the shipper asks on every fill) and
 * for all of them; a pending version found by its path through pending_by_path. */
static void test_copy_schedule_and_pending_by_path(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char sha[32] = {0};
    char a[65], b[65];
    int64_t next;
    struct catalog_version v;
    sqlite3 *h;
    sqlite3_stmt *st;
    int uses_index = 0;

    make_object(f->cat, 'a', 1, 1, a);
    make_object(f->cat, 'b', 1, 1, b);
    assert_int_equal(catalog_copy_queue_add(f->cat, a, "nas", "a.obj", 1, sha, 3000, &err), 0);
    assert_int_equal(catalog_copy_queue_add(f->cat, b, "nas", "b.obj", 1, sha, 5000, &err), 0);
    assert_int_equal(catalog_copy_queue_add(f->cat, a, "s3", "a.obj", 1, sha, 4000, &err), 0);
    assert_int_equal(catalog_copy_queue_next_ready(f->cat, "nas", 1000, &next, &err), 0);
    assert_int_equal(next, 3000);
    assert_int_equal(catalog_copy_queue_next_ready(f->cat, "nas", 3000, &next, &err), 0);
    assert_int_equal(next, 5000);
    assert_int_equal(catalog_copy_queue_next_ready(f->cat, "s3", 1000, &next, &err), 0);
    assert_int_equal(next, 4000);
    assert_int_equal(catalog_copy_queue_next_ready(f->cat, "s3", 4000, &next, &err), 0);
    assert_true(next == INT64_MAX);
    assert_int_equal(catalog_copy_queue_next_ready(f->cat, "gone", 0, &next, &err), 0);
    assert_true(next == INT64_MAX);
    assert_int_equal(catalog_copy_queue_next_ready(f->cat, NULL, 3000, &next, &err), 0);
    assert_int_equal(next, 4000);

    memset(&v, 0, sizeof(v));
    v.path = "/p/waiting";
    v.kind = CATALOG_FILE;
    v.size = 10;
    v.mtime_ns = 20;
    v.inode = 30;
    memcpy(v.object_id, a, sizeof(v.object_id));
    v.first_seen = 1000;
    assert_int_equal(catalog_pending_add(f->cat, &v, &err), 0);
    assert_int_equal(catalog_pending_match(f->cat, "/p/waiting", 10, 20, 30, a, &err), 1);
    assert_int_equal(catalog_pending_match(f->cat, "/p/waiting", 10, 20, 30, NULL, &err), 1);
    assert_int_equal(catalog_pending_match(f->cat, "/p/waiting", 10, 20, 30, b, &err), 0);
    assert_int_equal(catalog_pending_match(f->cat, "/p/waiting", 11, 20, 30, NULL, &err), 0);
    assert_int_equal(catalog_pending_match(f->cat, "/p/other", 10, 20, 30, NULL, &err), 0);
    /* Listed below a folder, never a sibling that shares its prefix; not once deleted, and
     * then no longer a match for a file with its stat (that file ships again). */
    v.path = "/p/waiting2";
    assert_int_equal(catalog_pending_add(f->cat, &v, &err), 0);
    v.path = "/pp/x";
    assert_int_equal(catalog_pending_add(f->cat, &v, &err), 0);
    /* twice for one path: listed once; a path with a live version: the walk's, not listed */
    v.path = "/p/waiting2";
    v.size = 11;
    assert_int_equal(catalog_pending_add(f->cat, &v, &err), 0);
    record_file(f->cat, "/p/live", a, 500);
    v.path = "/p/live";
    assert_int_equal(catalog_pending_add(f->cat, &v, &err), 0);
    v.size = 10;
    {
        struct listed l = {0};

        assert_int_equal(catalog_each_pending_below(f->cat, "/p/", list_path, &l, &err), 0);
        assert_int_equal(l.n, 2);
        assert_string_equal(l.paths[0], "/p/waiting");
        assert_string_equal(l.paths[1], "/p/waiting2");
        listed_free(&l);
        assert_int_equal(catalog_each_pending_below(f->cat, "/p/waiting", list_path, &l, &err), 0);
        assert_int_equal(l.n, 1);
        listed_free(&l);
        assert_int_equal(catalog_record_delete(f->cat, "/p/waiting", 2000, &err), 1);
        assert_int_equal(catalog_each_pending_below(f->cat, "/p", list_path, &l, &err), 0);
        assert_int_equal(l.n, 1);
        assert_string_equal(l.paths[0], "/p/waiting2");
        listed_free(&l);
    }
    assert_int_equal(catalog_pending_match(f->cat, "/p/waiting", 10, 20, 30, NULL, &err), 0);
    /* Found through the index, not by reading every pending version. */
    assert_int_equal(sqlite3_open_v2(f->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(h,
                           "EXPLAIN QUERY PLAN SELECT 1 FROM paths p JOIN "
                           "pending_versions pv ON pv.path_id = p.id WHERE p.path = ?1",
                           -1, &st, NULL),
        SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        uses_index |= strstr((const char *)sqlite3_column_text(st, 3), "pending_by_path") != NULL;
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_true(uses_index);
}

/* Copies still waiting for their bytes (spool ''), oldest ready first, once per object; the
 * read goes through the partial index of those rows (INDEXED BY: it fails without it), so
 * a long queue of sourced copies is never read on a fill. */
static void test_copy_queue_unsourced_by_index(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char sha[32] = {0};
    char a[65], b[65], c[65];
    char **ids;
    size_t n;

    make_object(f->cat, 'a', 1, 1, a);
    make_object(f->cat, 'b', 1, 1, b);
    make_object(f->cat, 'c', 1, 1, c);
    assert_int_equal(catalog_copy_queue_add(f->cat, a, "nas", "", 1, sha, 3000, &err), 0);
    assert_int_equal(catalog_copy_queue_add(f->cat, a, "s3", "", 1, sha, 2500, &err), 0);
    assert_int_equal(catalog_copy_queue_add(f->cat, b, "nas", "", 1, sha, 2000, &err), 0);
    assert_int_equal(catalog_copy_queue_add(f->cat, c, "nas", "c.obj", 1, sha, 1000, &err), 0);
    assert_int_equal(catalog_copy_queue_unsourced(f->cat, 5000, 10, NULL, NULL, &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], b);
    assert_string_equal(ids[1], a);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    /* Not ready yet; then sourced: no longer asked for. */
    assert_int_equal(catalog_copy_queue_unsourced(f->cat, 2200, 10, NULL, NULL, &ids, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], b);
    free(ids[0]);
    free(ids);
    assert_int_equal(catalog_copy_queue_source(f->cat, b, "b.obj", 1, sha, 2000, &err), 1);
    assert_int_equal(catalog_copy_queue_unsourced(f->cat, 5000, 10, NULL, NULL, &ids, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], a);
    free(ids[0]);
    free(ids);
}

static void test_raw_byte_paths(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_version v;
    struct queue_list q;
    struct visit vis;
    char objs[6][65];
    /* Listed in byte order, which is the order of catalog_each_version_at. */
    static const char *const paths[] = {
        "/r/bad\xff\xfe", "/r/new\nline", "/r/r\xc3\xa9sum\xc3\xa9",
        "/r/tab\tname",   "/r/\xc0\xaf",  "/r/\xed\xa0\x80",
    };
    static const char *const near[] = {"/r/new",  "/r/new\n",   "/r/newline",
                                       "/r/bad",  "/r/bad\xff", "/r/bad\xff\xfe\x01",
                                       "/r/\xc0", "/r/resume"};

    for (int i = 0; i < 6; i++) {
        make_object(f->cat, (char)('a' + i), 1, 1, objs[i]);
        record_file(f->cat, paths[i], objs[i], 100);
    }
    for (int i = 0; i < 6; i++) {
        assert_int_equal(catalog_live_version(f->cat, paths[i], &v, &err), 1);
        assert_int_equal(strlen(v.path), strlen(paths[i]));
        assert_memory_equal(v.path, paths[i], strlen(paths[i]));
        assert_string_equal(v.object_id, objs[i]);
        catalog_version_clear(&v);
    }
    for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++)
        assert_int_equal(live(f->cat, near[i], NULL), 0);

    memset(&vis, 0, sizeof(vis));
    assert_int_equal(catalog_each_version_at(f->cat, "/r", 1000, collect, &vis, &err), 0);
    assert_int_equal(vis.n, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(vis.paths[i], paths[i]);
        assert_string_equal(vis.objects[i], objs[i]);
    }
    visit_free(&vis);

    /* Deleting by a raw path. */
    assert_int_equal(catalog_record_delete(f->cat, "/r/new\nline", 2000, &err), 1);
    assert_int_equal(live(f->cat, "/r/new\nline", NULL), 0);
    assert_int_equal(live(f->cat, "/r/bad\xff\xfe", NULL), 1);

    /* The queue keeps raw paths too. */
    assert_int_equal(catalog_queue_path(f->cat, "/r/q\n\xff", "new", 1, &err), 0);
    q = ready(f->cat, 1, 10);
    assert_int_equal(q.n, 1);
    assert_string_equal(q.items[0].path, "/r/q\n\xff");
    catalog_queue_items_free(q.items, q.n);

    /* A symlink with a raw target and no object. */
    record_symlink(f->cat, "/r/link\xfe", "../t\n\xff", 100, 7, 9, 11);
    assert_int_equal(catalog_live_version(f->cat, "/r/link\xfe", &v, &err), 1);
    assert_int_equal(v.kind, CATALOG_SYMLINK);
    assert_string_equal(v.object_id, "");
    assert_non_null(v.link_target);
    assert_string_equal(v.link_target, "../t\n\xff");
    assert_int_equal(v.size, 7);
    catalog_version_clear(&v);
}

static void test_each_version_at_prefix(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct visit vis;
    char o1[65], o2[65];

    make_object(f->cat, '1', 1, 1, o1);
    make_object(f->cat, '2', 1, 1, o2);
    record_file(f->cat, "/p", o1, 100);
    record_file(f->cat, "/p/a", o1, 100);
    record_file(f->cat, "/p/a", o2, 400);
    record_file(f->cat, "/p/b", o1, 100);
    record_file(f->cat, "/p/b/c", o1, 200);
    record_file(f->cat, "/p/b/d", o1, 100);
    record_file(f->cat, "/p/bc", o1, 100);
    record_file(f->cat, "/q/x", o1, 100);
    assert_int_equal(catalog_record_delete(f->cat, "/p/b/d", 300, &err), 1);

    expect_listing(f->cat, "/p/b", 250, "/p/b", "/p/b/c", "/p/b/d", NULL);
    expect_listing(f->cat, "/p/b", 300, "/p/b", "/p/b/c", NULL);
    expect_listing(f->cat, "/p/b/", 150, "/p/b", "/p/b/d", NULL);
    expect_listing(f->cat, "/p/b", 99, NULL);
    expect_listing(f->cat, "/p/b/c", 1000, "/p/b/c", NULL);
    expect_listing(f->cat, "/p", 1000, "/p", "/p/a", "/p/b", "/p/b/c", "/p/bc", NULL);
    expect_listing(f->cat, "", 1000, "/p", "/p/a", "/p/b", "/p/b/c", "/p/bc", "/q/x", NULL);
    expect_listing(f->cat, "/nothing", 1000, NULL);
    /* The root "/" as prefix lists everything. */
    expect_listing(f->cat, "/", 1000, "/p", "/p/a", "/p/b", "/p/b/c", "/p/bc", "/q/x", NULL);

    /* Deleted, then re-created: the gap in between shows nothing. */
    record_file(f->cat, "/z", o1, 100);
    assert_int_equal(catalog_record_delete(f->cat, "/z", 200, &err), 1);
    record_file(f->cat, "/z", o2, 400);
    expect_listing(f->cat, "/z", 150, "/z", NULL);
    expect_listing(f->cat, "/z", 300, NULL);
    memset(&vis, 0, sizeof(vis));
    assert_int_equal(catalog_each_version_at(f->cat, "/z", 500, collect, &vis, &err), 0);
    assert_int_equal(vis.n, 1);
    assert_string_equal(vis.objects[0], o2);
    assert_int_equal(vis.deleted_at[0], 0);
    visit_free(&vis);

    /* Each path as it stood at the time asked. */
    memset(&vis, 0, sizeof(vis));
    assert_int_equal(catalog_each_version_at(f->cat, "/p/a", 250, collect, &vis, &err), 0);
    assert_int_equal(vis.n, 1);
    assert_string_equal(vis.objects[0], o1);
    visit_free(&vis);
    assert_int_equal(catalog_each_version_at(f->cat, "/p/a", 400, collect, &vis, &err), 0);
    assert_int_equal(vis.n, 1);
    assert_string_equal(vis.objects[0], o2);
    visit_free(&vis);

    /* A callback's non-zero return stops the walk and is returned. */
    vis.stop_after = 2;
    assert_int_equal(catalog_each_version_at(f->cat, "", 1000, collect, &vis, &err), 7);
    assert_int_equal(vis.n, 2);
    visit_free(&vis);
}

struct history_check {
    struct catalog *cat;
    const char *dest;
    int64_t first_seen[8];
    int64_t ids[8];
    int copies_found;
    size_t n;
};

static int history_cb(void *arg, const struct catalog_version *v)
{
    struct history_check *h = arg;

    assert_true(h->n < 8);
    h->first_seen[h->n] = v->first_seen;
    h->ids[h->n] = v->id;
    h->n++;
    /* Other queries may run from inside the walk. */
    if (catalog_copy_exists(h->cat, v->object_id, h->dest, NULL) == 1)
        h->copies_found++;
    return 0;
}

static int stop_at_once(void *arg, const struct catalog_version *v)
{
    (void)v;
    (*(int *)arg)++;
    return -3;
}

/* The start-up scan's view of one folder: its live files with their stat, and the
 * subfolders that hold live versions, in the order of the full paths. */
static void test_live_in_dir(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_dir_entry *e;
    size_t n;
    char o1[65], o2[65];

    make_object(f->cat, '1', 1, 1, o1);
    make_object(f->cat, '2', 1, 1, o2);
    record_file(f->cat, "/d", o1, 100); /* the folder's own path: not an entry */
    record_file(f->cat, "/d/a", o1, 100);
    record_file_full(f->cat, "/d/a", o2, 400, 33, 44, 55); /* the newest counts */
    record_file(f->cat, "/d/a.b", o1, 100);
    record_file(f->cat, "/d/a/x", o1, 100); /* a subtree: "a/" sorts after "a.b" */
    record_file(f->cat, "/d/a/y/z", o1, 100);
    record_file(f->cat, "/d/a0", o1, 100);
    record_file(f->cat, "/d/gone", o1, 100);
    record_file(f->cat, "/d/dead/only", o1, 100);
    record_symlink(f->cat, "/d/link", "a", 100, 1, 2, 3);
    record_file(f->cat, "/d0", o1, 100);
    record_file(f->cat, "/d.x", o1, 100);
    assert_int_equal(catalog_record_delete(f->cat, "/d/gone", 300, &err), 1);
    assert_int_equal(catalog_record_delete(f->cat, "/d/dead", 300, &err), 1);

    assert_int_equal(catalog_live_in_dir(f->cat, "/d/", 100, &e, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_string_equal(e[0].name, "a");
    assert_int_equal(e[0].subtree, 0);
    assert_int_equal(e[0].size, 33);
    assert_int_equal(e[0].mtime_ns, 44);
    assert_int_equal(e[0].inode, 55);
    assert_string_equal(e[1].name, "a.b");
    assert_string_equal(e[2].name, "a");
    assert_int_equal(e[2].subtree, 1);
    assert_string_equal(e[3].name, "a0");
    assert_string_equal(e[4].name, "link");
    assert_int_equal(e[4].kind, CATALOG_SYMLINK);
    catalog_dir_entries_free(e, n);

    /* More than the caller holds: 1 and nothing. */
    assert_int_equal(catalog_live_in_dir(f->cat, "/d", 4, &e, &n, &err), 1);
    assert_null(e);
    assert_int_equal(n, 0);
    assert_int_equal(catalog_live_in_dir(f->cat, "/d/a", 100, &e, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].name, "x");
    assert_string_equal(e[1].name, "y");
    assert_int_equal(e[1].subtree, 1);
    catalog_dir_entries_free(e, n);
    assert_int_equal(catalog_live_in_dir(f->cat, "/nothing", 100, &e, &n, &err), 0);
    assert_int_equal(n, 0);
    catalog_dir_entries_free(e, n);
}

static void test_each_version_of_order(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct history_check h;
    char o[65];
    int calls = 0;

    make_object(f->cat, 'h', 1, 1, o);
    assert_int_equal(catalog_record_copy(f->cat, o, "nas", "objects/h", 1, k_zero_sha, 50, &err),
                     0);
    record_file(f->cat, "/h", o, 300);
    record_file(f->cat, "/h", o, 100);
    record_file(f->cat, "/h", o, 200);
    record_file(f->cat, "/h", o, 200);
    record_file(f->cat, "/h2", o, 150);

    memset(&h, 0, sizeof(h));
    h.cat = f->cat;
    h.dest = "nas";
    assert_int_equal(catalog_each_version_of(f->cat, "/h", history_cb, &h, &err), 0);
    assert_int_equal(h.n, 4);
    assert_int_equal(h.first_seen[0], 100);
    assert_int_equal(h.first_seen[1], 200);
    assert_int_equal(h.first_seen[2], 200);
    assert_int_equal(h.first_seen[3], 300);
    assert_true(h.ids[1] < h.ids[2]);
    assert_int_equal(h.copies_found, 4);

    /* The version standing at 250 is the later of the two recorded at 200. */
    {
        struct catalog_version v;

        assert_int_equal(catalog_version_at(f->cat, "/h", 250, &v, &err), 1);
        assert_int_equal(v.id, h.ids[2]);
        catalog_version_clear(&v);
    }

    assert_int_equal(catalog_each_version_of(f->cat, "/h", stop_at_once, &calls, &err), -3);
    assert_int_equal(calls, 1);
    /* One rule for "newest" everywhere: the tombstone lands on the live version. */
    assert_int_equal(catalog_record_delete(f->cat, "/h", 1000, &err), 1);
    assert_int_equal(live(f->cat, "/h", NULL), 0);
    expect_listing(f->cat, "/h", 2000, NULL);
}

static int copy_cb(void *arg, const char *dest, const char *remote_key, int64_t verified_at)
{
    char *out = arg;
    char line[128];

    snprintf(line, sizeof(line), "%s=%s@%lld;", dest, remote_key, (long long)verified_at);
    strcat(out, line);
    return 0;
}

/* Known: recorded, pruned or not; unknown otherwise. Copies, queued copies and versions
 * cannot name an unknown object (foreign keys): the shipper relies on it. */
static void test_object_known(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char o1[65], unknown[65];

    memset(unknown, 'z', 64);
    unknown[64] = '\0';
    assert_int_equal(catalog_object_known(f->cat, unknown, &err), 0);
    make_object(f->cat, 'a', 100, 60, o1);
    assert_int_equal(catalog_object_known(f->cat, o1, &err), 1);
    assert_int_equal(catalog_object_pruned(f->cat, o1, 2000, &err), 0);
    assert_int_equal(catalog_object_known(f->cat, o1, &err), 1);
    assert_int_equal(catalog_copy_queue_add(f->cat, unknown, "d", "spool", 1, k_zero_sha, 1, &err),
                     -1);
    assert_int_equal(catalog_record_copy(f->cat, unknown, "d", "key", 1, k_zero_sha, 1, &err), -1);
    assert_int_equal(catalog_object_known(f->cat, unknown, &err), 0);
}

static void test_objects_and_copies(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_object got, again;
    char o1[65], o2[65], *key, listing[512] = "";
    unsigned char sha[32];

    make_object(f->cat, 'a', 100, 60, o1);
    make_object(f->cat, 'b', 200, 150, o2);
    assert_int_equal(catalog_object_get(f->cat, o1, &got, NULL), 1);
    assert_string_equal(got.id, o1);
    memset(sha, 'a', 32);
    assert_memory_equal(got.sha256, sha, 32);
    memset(sha, 'a' ^ 0x55, 32);
    assert_memory_equal(got.stored_sha256, sha, 32);
    assert_int_equal(got.plain_size, 100);
    assert_int_equal(got.stored_size, 60);
    assert_int_equal(got.compressed, 1);
    assert_int_equal(catalog_object_get(f->cat, "0000", &got, NULL), 0);

    /* Recording an object again is a no-op: the first record stands. */
    memset(&again, 0, sizeof(again));
    memcpy(again.id, o1, 65);
    again.plain_size = 999;
    assert_int_equal(catalog_record_object(f->cat, &again, 5, &err), 0);
    assert_int_equal(catalog_object_get(f->cat, o1, &got, NULL), 1);
    assert_int_equal(got.plain_size, 100);

    assert_int_equal(catalog_copy_exists(f->cat, o1, "nas", NULL), 0);
    assert_null(copy_key(f->cat, o1, "nas"));
    assert_int_equal(catalog_record_copy(f->cat, o1, "s3", "k/s3/a", 1, k_zero_sha, 2000, &err), 0);
    assert_int_equal(catalog_record_copy(f->cat, o1, "nas", "k/nas/a", 1, k_zero_sha, 1000, &err),
                     0);
    assert_int_equal(catalog_copy_exists(f->cat, o1, "nas", NULL), 1);
    assert_int_equal(catalog_copy_exists(f->cat, o1, "s3", NULL), 1);
    assert_int_equal(catalog_copy_exists(f->cat, o1, "sftp", NULL), 0);
    assert_int_equal(catalog_copy_exists(f->cat, o2, "nas", NULL), 0);
    key = copy_key(f->cat, o1, "nas");
    assert_non_null(key);
    assert_string_equal(key, "k/nas/a");
    free(key);
    assert_null(copy_key(f->cat, o1, "sftp"));
    assert_null(copy_key(f->cat, o2, "nas"));

    /* Re-verifying a copy updates it in place. */
    assert_int_equal(catalog_record_copy(f->cat, o1, "nas", "k/nas/a2", 1, k_zero_sha, 3000, &err),
                     0);
    key = copy_key(f->cat, o1, "nas");
    assert_string_equal(key, "k/nas/a2");
    free(key);
    assert_int_equal(catalog_each_copy(f->cat, o1, copy_cb, listing, &err), 0);
    assert_string_equal(listing, "nas=k/nas/a2@3000;s3=k/s3/a@2000;");
    listing[0] = '\0';
    assert_int_equal(catalog_each_copy(f->cat, o2, copy_cb, listing, &err), 0);
    assert_string_equal(listing, "");

    /* A copy of an object the catalog does not know is refused (foreign key). */
    memset(&err, 0, sizeof(err));
    assert_int_equal(catalog_record_copy(f->cat, "ffff", "nas", "k", 1, k_zero_sha, 1, &err), -1);
    assert_true(err.msg[0] != '\0');
}

/* Object Lock: a version whose content must first have its stored copy's lock extended
 * waits in pending_versions until the extension is done; a later date asked for meanwhile
 * keeps the row. Archive restores: a job per (destination, key), found until done. */
static void test_lock_extensions_and_restore_jobs(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_version v;
    struct catalog_lock_item *items;
    struct catalog_restore_job job, got;
    unsigned char sha[32];
    char o[65];
    int64_t until, at, id;
    size_t n;

    make_object(f->cat, 'c', 100, 60, o);
    memset(sha, 'c' ^ 0x55, 32);
    assert_int_equal(catalog_record_copy(f->cat, o, "vault", "objects/cc/x", 60, sha, 10, &err), 0);
    assert_int_equal(catalog_copy_set_lock(f->cat, o, "vault", 5000, &err), 0);
    assert_int_equal(catalog_copy_locked_until(f->cat, o, "vault", &until, &err), 1);
    assert_int_equal(until, 5000);
    assert_int_equal(catalog_copy_locked_until(f->cat, o, "other", &until, &err), 0);
    memset(&v, 0, sizeof(v));
    v.path = "/d/again.pdf";
    v.kind = CATALOG_FILE;
    v.size = 100;
    memset(v.sha256, 'c', 32);
    snprintf(v.object_id, sizeof(v.object_id), "%s", o);
    v.first_seen = 777;
    assert_int_equal(catalog_pending_add(f->cat, &v, &err), 0);
    assert_int_equal(catalog_object_newest_capture(f->cat, o, &at, &err), 0);
    assert_int_equal(at, 777);
    assert_int_equal(catalog_lock_extend_add(f->cat, o, "vault", 9000, 20, &err), 0);
    assert_int_equal(catalog_lock_extend_has(f->cat, o, &err), 1);
    /* held back while the extension is to be done */
    assert_int_equal(catalog_pending_promote(f->cat, o, 30, NULL, NULL, &err), 0);
    assert_int_equal(
        catalog_lock_extend_ready(f->cat, "vault", 20, 10, NULL, NULL, &items, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(items[0].remote_key, "objects/cc/x");
    assert_int_equal(items[0].until, 9000);
    assert_int_equal(items[0].stored_size, 60);
    catalog_lock_items_free(items, n);
    /* a later date asked for meanwhile: the row stays, at that date */
    assert_int_equal(catalog_lock_extend_add(f->cat, o, "vault", 9500, 21, &err), 0);
    assert_int_equal(catalog_lock_extend_add(f->cat, o, "vault", 8000, 22, &err), 0);
    assert_int_equal(catalog_lock_extend_done(f->cat, o, "vault", 9000, 9000, &err), 0);
    assert_int_equal(catalog_lock_extend_has(f->cat, o, &err), 1);
    assert_int_equal(catalog_lock_extend_done(f->cat, o, "vault", 9500, 9500, &err), 0);
    assert_int_equal(catalog_lock_extend_has(f->cat, o, &err), 0);
    assert_int_equal(catalog_copy_locked_until(f->cat, o, "vault", &until, &err), 1);
    assert_int_equal(until, 9500);
    assert_int_equal(catalog_pending_promote(f->cat, o, 40, NULL, NULL, &err), 1);

    memset(&job, 0, sizeof(job));
    job.dest = "cold";
    job.remote_key = "objects/cc/x";
    job.what = "object c";
    job.tier = "Bulk";
    job.storage_class = "DEEP_ARCHIVE";
    job.requested_at = 100;
    job.requested_by = "clerk";
    job.expected_by = 200;
    assert_int_equal(catalog_restore_job_find(f->cat, "cold", "objects/cc/x", &got, &err), 0);
    assert_int_equal(catalog_restore_job_add(f->cat, &job, &id, &err), 0);
    assert_int_equal(catalog_restore_job_find(f->cat, "cold", "objects/cc/x", &got, &err), 1);
    assert_int_equal(got.id, id);
    assert_string_equal(got.status, "pending");
    assert_string_equal(got.tier, "Bulk");
    assert_int_equal(got.expected_by, 200);
    catalog_restore_job_clear(&got);
    assert_int_equal(catalog_restore_job_set(f->cat, id, "ready", 150, &err), 0);
    assert_int_equal(catalog_restore_job_find(f->cat, "cold", "objects/cc/x", &got, &err), 1);
    assert_string_equal(got.status, "ready");
    assert_int_equal(got.ready_at, 150);
    catalog_restore_job_clear(&got);
    assert_int_equal(catalog_restore_job_set(f->cat, id, "done", 160, &err), 0);
    assert_int_equal(catalog_restore_job_find(f->cat, "cold", "objects/cc/x", &got, &err), 0);
}

static void test_stats(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_stats st;
    char o1[65], o2[65], o3[65];
    int64_t copies, missing, last;

    assert_int_equal(catalog_stats(f->cat, &st, &err), 0);
    assert_int_equal(st.paths, 0);
    assert_int_equal(st.live_files, 0);
    assert_int_equal(st.versions, 0);
    assert_int_equal(st.objects, 0);
    assert_int_equal(st.stored_bytes, 0);
    assert_int_equal(st.plain_bytes, 0);
    assert_int_equal(st.copies, 0);
    assert_int_equal(st.last_shipped_at, 0);
    assert_int_equal(catalog_dest_stats(f->cat, "nas", &copies, &missing, &last, NULL), 0);
    assert_int_equal(copies, 0);
    assert_int_equal(missing, 0);
    assert_int_equal(last, 0);

    make_object(f->cat, '1', 100, 60, o1);
    make_object(f->cat, '2', 200, 150, o2);
    make_object(f->cat, '3', 5, 9, o3);
    assert_int_equal(catalog_record_copy(f->cat, o1, "nas", "k1", 1, k_zero_sha, 1000, &err), 0);
    assert_int_equal(catalog_record_copy(f->cat, o1, "s3", "k1", 1, k_zero_sha, 1500, &err), 0);
    assert_int_equal(catalog_record_copy(f->cat, o2, "nas", "k2", 1, k_zero_sha, 2000, &err), 0);
    record_file(f->cat, "/s/a", o1, 1000);              /* shipped 1100 */
    record_file(f->cat, "/s/a", o2, 2000);              /* shipped 2100 */
    record_file(f->cat, "/s/b", o3, 1100);              /* shipped 1200, then deleted */
    record_symlink(f->cat, "/s/c", "a", 3000, 1, 1, 1); /* shipped 3000 */
    assert_int_equal(catalog_record_delete(f->cat, "/s/b", 4000, &err), 1);
    assert_int_equal(catalog_queue_path(f->cat, "/s/q", "new", 1, &err), 0);

    assert_int_equal(catalog_stats(f->cat, &st, &err), 0);
    assert_int_equal(st.paths, 4);
    assert_int_equal(st.live_files, 2);
    assert_int_equal(st.versions, 4);
    assert_int_equal(st.objects, 3);
    assert_int_equal(st.stored_bytes, 60 + 150 + 9);
    assert_int_equal(st.plain_bytes, 100 + 200 + 5);
    assert_int_equal(st.copies, 3);
    assert_int_equal(st.last_shipped_at, 3000);

    assert_int_equal(catalog_dest_stats(f->cat, "nas", &copies, &missing, &last, NULL), 0);
    assert_int_equal(copies, 2);
    assert_int_equal(missing, 1);
    assert_int_equal(last, 2000);
    assert_int_equal(catalog_dest_stats(f->cat, "s3", &copies, &missing, &last, NULL), 0);
    assert_int_equal(copies, 1);
    assert_int_equal(missing, 2);
    assert_int_equal(last, 1500);
    assert_int_equal(catalog_dest_stats(f->cat, "sftp", &copies, &missing, &last, NULL), 0);
    assert_int_equal(copies, 0);
    assert_int_equal(missing, 3);
    assert_int_equal(last, 0);
}

static void test_state(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};

    assert_int_equal(state_get(f->cat, "last_rescan", -5), -5);
    assert_int_equal(catalog_state_set_int(f->cat, "last_rescan", 1234, &err), 0);
    assert_int_equal(state_get(f->cat, "last_rescan", -5), 1234);
    assert_int_equal(catalog_state_set_int(f->cat, "last_rescan", INT64_MIN, &err), 0);
    assert_int_equal(state_get(f->cat, "last_rescan", -5), INT64_MIN);
}

/* --- moves against real files --- */

static void test_move_file_unchanged(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_version before, after;
    char o[65], *a, *b;

    mkdir_rel(f, "m");
    a = in_dir(f, "m/a");
    b = in_dir(f, "m/b");
    write_text(a, "hello");
    make_object(f->cat, 'm', 5, 5, o);
    record_real(f->cat, a, o, 1000);
    assert_int_equal(catalog_live_version(f->cat, a, &before, &err), 1);
    assert_int_equal(rename(a, b), 0);

    assert_int_equal(catalog_record_move(f->cat, a, b, 2000, &err), 1);
    assert_int_equal(catalog_live_version(f->cat, b, &after, &err), 1);
    assert_string_equal(after.object_id, o);
    assert_memory_equal(after.sha256, before.sha256, 32);
    assert_int_equal(after.size, before.size);
    assert_int_equal(after.inode, before.inode);
    assert_int_equal(after.mtime_ns, before.mtime_ns);
    assert_int_equal(after.kind, CATALOG_FILE);
    assert_int_equal(after.first_seen, 2000);
    assert_int_equal(after.shipped_at, 2000);
    catalog_version_clear(&before);
    catalog_version_clear(&after);

    assert_int_equal(live(f->cat, a, NULL), 0);
    assert_int_equal(deleted_at(f->cat, a), 2000);
    assert_int_equal(queue_depth(f->cat), 0);
    free(a);
    free(b);
}

static void expect_queued_moved(struct catalog *cat, const char *path, int64_t at)
{
    struct queue_list q = ready(cat, at, 32);
    size_t i;

    for (i = 0; i < q.n; i++)
        if (strcmp(q.items[i].path, path) == 0)
            break;
    if (i == q.n)
        fail_msg("%s is not queued", path);
    assert_string_equal(q.items[i].reason, "moved");
    catalog_queue_items_free(q.items, q.n);
    /* Ready exactly at the move. */
    q = ready(cat, at - 1, 32);
    for (i = 0; i < q.n; i++)
        assert_string_not_equal(q.items[i].path, path);
    catalog_queue_items_free(q.items, q.n);
}

static void test_move_file_changed(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char o[65], *a, *b, *c, *d, *tmp;

    mkdir_rel(f, "m");
    a = in_dir(f, "m/a");
    b = in_dir(f, "m/b");
    c = in_dir(f, "m/c");
    d = in_dir(f, "m/d");
    tmp = in_dir(f, "m/tmp");
    make_object(f->cat, 'n', 5, 5, o);

    /* Different size at the destination. */
    write_text(a, "hello");
    record_real(f->cat, a, o, 1000);
    assert_int_equal(rename(a, b), 0);
    write_text(b, "hello world");
    assert_int_equal(catalog_record_move(f->cat, a, b, 2000, &err), 1);
    assert_int_equal(live(f->cat, b, NULL), 0);
    assert_int_equal(live(f->cat, a, NULL), 0);
    assert_int_equal(deleted_at(f->cat, a), 2000);
    expect_queued_moved(f->cat, b, 2000);

    /* Same size, but another file (inode) took the place. */
    write_text(c, "12345");
    record_real(f->cat, c, o, 3000);
    write_text(tmp, "54321"); /* created while c exists: another inode */
    assert_int_equal(rename(tmp, d), 0);
    assert_int_equal(unlink(c), 0);
    assert_int_equal(catalog_record_move(f->cat, c, d, 4000, &err), 1);
    assert_int_equal(live(f->cat, d, NULL), 0);
    expect_queued_moved(f->cat, d, 4000);
    assert_int_equal(live(f->cat, c, NULL), 0);

    /* Nothing at the destination at all. */
    {
        char *e = in_dir(f, "m/e"), *g = in_dir(f, "m/gone");

        write_text(e, "e");
        record_real(f->cat, e, o, 5000);
        assert_int_equal(unlink(e), 0);
        assert_int_equal(catalog_record_move(f->cat, e, g, 6000, &err), 1);
        assert_int_equal(live(f->cat, g, NULL), 0);
        expect_queued_moved(f->cat, g, 6000);
        free(e);
        free(g);
    }
    free(a);
    free(b);
    free(c);
    free(d);
    free(tmp);
}

static void test_move_folder(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_version v;
    char o1[65], o2[65], o3[65], got[65];
    char *d = in_dir(f, "m/d"), *e = in_dir(f, "m/e");
    char *d_f1 = in_dir(f, "m/d/f1"), *d_f2 = in_dir(f, "m/d/sub/f2"), *d_ln = in_dir(f, "m/d/ln");
    char *d_pending = in_dir(f, "m/d/pending"), *dd_f3 = in_dir(f, "m/dd/f3");
    char *e_f1 = in_dir(f, "m/e/f1"), *e_f2 = in_dir(f, "m/e/sub/f2"), *e_ln = in_dir(f, "m/e/ln");
    char *e_pending = in_dir(f, "m/e/pending"), *ed_f3 = in_dir(f, "m/ed/f3");
    int64_t size, mtime_ns, inode;

    mkdir_rel(f, "m");
    mkdir_rel(f, "m/d");
    mkdir_rel(f, "m/d/sub");
    mkdir_rel(f, "m/dd");
    write_text(d_f1, "1");
    write_text(d_f2, "22");
    write_text(d_pending, "pending");
    write_text(dd_f3, "333");
    assert_int_equal(symlink("f1", d_ln), 0);
    make_object(f->cat, '1', 1, 1, o1);
    make_object(f->cat, '2', 2, 2, o2);
    make_object(f->cat, '3', 3, 3, o3);
    record_real(f->cat, d_f1, o1, 1000);
    record_real(f->cat, d_f2, o2, 1000);
    record_real(f->cat, dd_f3, o3, 1000);
    real_stat(d_ln, &size, &mtime_ns, &inode);
    record_symlink(f->cat, d_ln, "f1", 1000, size, mtime_ns, inode);
    /* Not shipped yet, only queued. */
    assert_int_equal(catalog_queue_path(f->cat, d_pending, "new", 1500, &err), 0);

    assert_int_equal(rename(d, e), 0);
    assert_int_equal(catalog_record_move(f->cat, d, e, 5000, &err), 3);

    assert_int_equal(live(f->cat, e_f1, got), 1);
    assert_string_equal(got, o1);
    assert_int_equal(live(f->cat, e_f2, got), 1);
    assert_string_equal(got, o2);
    assert_int_equal(catalog_live_version(f->cat, e_ln, &v, &err), 1);
    assert_int_equal(v.kind, CATALOG_SYMLINK);
    assert_string_equal(v.link_target, "f1");
    assert_string_equal(v.object_id, "");
    assert_int_equal(v.first_seen, 5000);
    catalog_version_clear(&v);

    assert_int_equal(live(f->cat, d_f1, NULL), 0);
    assert_int_equal(live(f->cat, d_f2, NULL), 0);
    assert_int_equal(live(f->cat, d_ln, NULL), 0);
    assert_int_equal(deleted_at(f->cat, d_f2), 5000);
    /* The sibling sharing a string prefix is untouched. */
    assert_int_equal(live(f->cat, dd_f3, got), 1);
    assert_string_equal(got, o3);
    assert_int_equal(live(f->cat, ed_f3, NULL), 0);
    /* What was only queued is queued at its new place. */
    expect_queued_moved(f->cat, e_pending, 5000);

    expect_listing(f->cat, e, 5000, e_f1, e_ln, e_f2, NULL);
    expect_listing(f->cat, d, 5000, NULL);
    expect_listing(f->cat, d, 4999, d_f1, d_ln, d_f2, NULL);
    assert_int_equal(catalog_integrity_check(f->cat, &err), 0);

    free(d);
    free(e);
    free(d_f1);
    free(d_f2);
    free(d_ln);
    free(d_pending);
    free(dd_f3);
    free(e_f1);
    free(e_f2);
    free(e_ln);
    free(e_pending);
    free(ed_f3);
}

/* --- audit --- */

static void append_rows(struct catalog *cat, int n)
{
    struct cst_err err = {{0}};

    for (int i = 1; i <= n; i++) {
        char detail[64];

        snprintf(detail, sizeof(detail), "{\"n\":%d}", i);
        assert_int_equal(catalog_audit(cat, i % 2 ? "cli" : "agent", "backup", detail, &err), 0);
    }
}

struct audit_rows {
    int n;
    int64_t ids[8];
    char details[8][256];
};

static int audit_cb(void *arg, int64_t id, int64_t at, const char *actor, const char *action,
                    const char *detail)
{
    struct audit_rows *r = arg;

    assert_true(r->n < 8);
    assert_true(at > 0);
    assert_non_null(actor);
    assert_string_equal(action, "backup");
    r->ids[r->n] = id;
    snprintf(r->details[r->n], sizeof(r->details[0]), "%s", detail);
    r->n++;
    return 0;
}

static void test_audit_chain(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct audit_rows r;
    int64_t rows = -1;

    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);
    assert_int_equal(rows, 0);

    append_rows(f->cat, 5);
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);
    assert_int_equal(rows, 5);
    memset(&r, 0, sizeof(r));
    assert_int_equal(catalog_each_audit(f->cat, 0, audit_cb, &r, &err), 0);
    assert_int_equal(r.n, 5);
    for (int i = 0; i < 5; i++) {
        char want[64];

        /* Every row names who wrote it (the Unix user) ahead of the caller's fields. */
        snprintf(want, sizeof(want), ",\"n\":%d}", i + 1);
        assert_int_equal(r.ids[i], i + 1);
        assert_contains(r.details[i], "\"user\":");
        assert_true(strlen(r.details[i]) > strlen(want));
        assert_string_equal(r.details[i] + strlen(r.details[i]) - strlen(want), want);
    }
    memset(&r, 0, sizeof(r));
    assert_int_equal(catalog_each_audit(f->cat, INT64_MAX, audit_cb, &r, &err), 0);
    assert_int_equal(r.n, 0);

    /* Edited detail in row 3. */
    raw_exec(f->db,
             "UPDATE audit SET detail = replace(detail, '\"n\":3}', '\"n\":99}') WHERE id = 3");
    memset(&err, 0, sizeof(err));
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), -1);
    assert_contains(err.msg, "row 3 ");
    assert_contains(err.msg, "altered");
    assert_int_equal(rows, 2);
    /* Put back, the chain holds again. */
    raw_exec(f->db,
             "UPDATE audit SET detail = replace(detail, '\"n\":99}', '\"n\":3}') WHERE id = 3");
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);
    assert_int_equal(rows, 5);

    /* Other fields are covered too. */
    raw_exec(f->db, "UPDATE audit SET at = at + 1 WHERE id = 4");
    memset(&err, 0, sizeof(err));
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), -1);
    assert_contains(err.msg, "row 4 ");
    raw_exec(f->db, "UPDATE audit SET at = at - 1 WHERE id = 4");
    raw_exec(f->db, "UPDATE audit SET actor = 'mallory' WHERE id = 5");
    memset(&err, 0, sizeof(err));
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), -1);
    assert_contains(err.msg, "row 5 ");
    raw_exec(f->db, "UPDATE audit SET actor = 'cli' WHERE id = 5");
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);

    /* A row deleted from the middle. */
    raw_exec(f->db, "DELETE FROM audit WHERE id = 3");
    memset(&err, 0, sizeof(err));
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), -1);
    assert_contains(err.msg, "missing");
    assert_contains(err.msg, "row 3 ");
    assert_int_equal(rows, 2);
}

static void test_audit_first_row_deleted(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    int64_t rows = -1;

    append_rows(f->cat, 3);
    raw_exec(f->db, "DELETE FROM audit WHERE id = 1");
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), -1);
    assert_contains(err.msg, "row 1 ");
    assert_contains(err.msg, "missing");
    /* Appending continues the chain from the last row. */
    raw_exec(f->db, "DELETE FROM audit");
    append_rows(f->cat, 2);
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);
    assert_int_equal(rows, 2);
}

/* --- integrity and transactions --- */

static void test_integrity_check(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char o[65];

    assert_int_equal(catalog_integrity_check(f->cat, &err), 0);
    make_object(f->cat, 'i', 1, 1, o);
    record_file(f->cat, "/i", o, 1);
    assert_int_equal(catalog_queue_path(f->cat, "/j", "new", 1, &err), 0);
    append_rows(f->cat, 2);
    assert_int_equal(catalog_integrity_check(f->cat, &err), 0);
}

static void test_transactions(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_stats st;
    char o[65];

    assert_int_equal(catalog_begin(f->cat, &err), 0);
    assert_int_equal(catalog_queue_path(f->cat, "/t/a", "new", 1, &err), 0);
    make_object(f->cat, 't', 1, 1, o);
    record_file(f->cat, "/t/v", o, 1);
    assert_int_equal(queue_depth(f->cat), 1);
    catalog_rollback(f->cat);
    assert_int_equal(queue_depth(f->cat), 0);
    assert_int_equal(live(f->cat, "/t/v", NULL), 0);
    assert_int_equal(catalog_stats(f->cat, &st, &err), 0);
    assert_int_equal(st.paths, 0);
    assert_int_equal(st.objects, 0);

    assert_int_equal(catalog_begin(f->cat, &err), 0);
    assert_int_equal(catalog_queue_path(f->cat, "/t/b", "new", 1, &err), 0);
    /* Not visible to another connection before commit. */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM queue"), 0);
    assert_int_equal(catalog_commit(f->cat, &err), 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM queue"), 1);
    assert_int_equal(queue_depth(f->cat), 1);

    /* Survives a reopen. */
    catalog_close(f->cat);
    f->cat = catalog_open(f->db, &err);
    assert_non_null(f->cat);
    assert_int_equal(queue_depth(f->cat), 1);

    /* Misuse is reported, not fatal. */
    memset(&err, 0, sizeof(err));
    assert_int_equal(catalog_commit(f->cat, &err), -1);
    assert_true(err.msg[0] != '\0');
    catalog_rollback(f->cat); /* harmless without a transaction */
    assert_int_equal(catalog_begin(f->cat, &err), 0);
    memset(&err, 0, sizeof(err));
    assert_int_equal(catalog_begin(f->cat, &err), -1);
    assert_true(err.msg[0] != '\0');
    catalog_rollback(f->cat);
    assert_int_equal(catalog_begin(f->cat, &err), 0);
    assert_int_equal(catalog_commit(f->cat, &err), 0);
}

/* --- billing-cycle snapshots --- */

static void fill_snapshot(struct catalog_snapshot *s, const char *label, const char *key,
                          const char *date, int64_t created)
{
    memset(s, 0, sizeof(*s));
    s->label = (char *)label;
    s->period_key = (char *)key;
    snprintf(s->close_date, sizeof(s->close_date), "%s", date);
    s->closed_at = created - 1000;
    s->remote_key = (char *)"backups/snapshots/billing-cycles/2026/x.tar.zst.cst";
    s->sig_key = (char *)"backups/snapshots/billing-cycles/2026/x.tar.zst.sig";
    s->sig = (char *)"custodian snapshot-signature v1\n";
    s->spool = (char *)"x.tar.zst.cst";
    memset(s->plain_sha256, 0xa1, 32);
    memset(s->stored_sha256, 0xb2, 32);
    s->plain_size = 1000;
    s->stored_size = 1100;
    s->invoices = 3;
    s->timesheets = 5;
    s->files = 7;
    s->refs = 1;
    s->complete = 1;
    s->retain_until = 2000000000000;
    s->created_at = created;
}

struct labels {
    char seen[8][64];
    int n;
};

static int collect_of_version(void *arg, const char *label, const char *date, int held)
{
    struct labels *l = arg;

    snprintf(l->seen[l->n++], sizeof(l->seen[0]), "%s %s %d", label, date, held);
    return 0;
}

static void test_snapshots(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    struct catalog_snapshot s, got;
    struct catalog_snapshot_job job;
    struct catalog_version v;
    struct labels l = {{{0}}, 0};
    char obj[65];
    int64_t first, second;

    make_object(f->cat, 'a', 10, 20, obj);
    record_file(f->cat, "/app/data/invoices/a.pdf", obj, 100);
    assert_int_equal(catalog_live_version(f->cat, "/app/data/invoices/a.pdf", &v, &err), 1);

    assert_int_equal(catalog_begin(f->cat, &err), 0);
    fill_snapshot(&s, "2026-11", "{\"$oid\":\"1\"}", "20261120", 5000);
    assert_int_equal(catalog_snapshot_add(f->cat, &s, &err), 0);
    first = s.id;
    assert_int_equal(catalog_snapshot_add_version(f->cat, first, v.id, 1, &err), 0);
    assert_int_equal(catalog_commit(f->cat, &err), 0);
    /* the same period and close date never twice */
    fill_snapshot(&s, "2026-11", "{\"$oid\":\"1\"}", "20261120", 6000);
    assert_int_equal(catalog_snapshot_add(f->cat, &s, &err), -1);
    /* closed again on another date: a second one; the label alone finds the newest */
    fill_snapshot(&s, "2026-11", "{\"$oid\":\"1\"}", "20261125", 7000);
    s.complete = 0;
    s.missing = 2;
    assert_int_equal(catalog_snapshot_add(f->cat, &s, &err), 0);
    second = s.id;
    assert_int_equal(catalog_snapshot_add_version(f->cat, second, v.id, 0, &err), 0);

    assert_int_equal(catalog_snapshot_find(f->cat, "{\"$oid\":\"1\"}", "20261120", &got), 1);
    assert_int_equal(got.id, first);
    assert_string_equal(got.spool, "x.tar.zst.cst");
    assert_int_equal(got.files, 7);
    catalog_snapshot_clear(&got);
    assert_int_equal(catalog_snapshot_find(f->cat, "{\"$oid\":\"2\"}", "20261120", NULL), 0);
    assert_int_equal(catalog_snapshot_by_label(f->cat, "2026-11", NULL, &got), 1);
    assert_int_equal(got.id, second);
    assert_int_equal(got.complete, 0);
    assert_int_equal(got.missing, 2);
    catalog_snapshot_clear(&got);
    assert_int_equal(catalog_snapshot_by_label(f->cat, "2026-11", "20261120", &got), 1);
    assert_int_equal(got.id, first);
    catalog_snapshot_clear(&got);

    /* copies, the checklist, the spool */
    assert_int_equal(catalog_snapshot_has_copy(f->cat, first, "nas"), 0);
    assert_int_equal(
        catalog_snapshot_copy(f->cat, first, "nas", "DEEP_ARCHIVE", 2000000000000, 8000, &err), 0);
    assert_int_equal(catalog_snapshot_has_copy(f->cat, first, "nas"), 1);
    assert_int_equal(catalog_snapshot_archived(f->cat, first, 8000, &err), 0);
    assert_int_equal(catalog_snapshot_archived(f->cat, first, 9000, &err), 0);
    assert_int_equal(catalog_snapshot_verified(f->cat, first, 9500, "full", &err), 0);
    assert_int_equal(catalog_snapshot_set_spool(f->cat, first, NULL, &err), 0);
    assert_int_equal(catalog_snapshot_by_label(f->cat, "2026-11", "20261120", &got), 1);
    assert_int_equal(got.archived_at, 8000); /* the first time is kept */
    assert_int_equal(got.verified_at, 9500);
    assert_string_equal(got.verify_detail, "full");
    assert_null(got.spool);
    catalog_snapshot_clear(&got);

    /* catalog history: which snapshots hold or reference the version */
    assert_int_equal(catalog_each_snapshot_of_version(f->cat, v.id, collect_of_version, &l, &err),
                     0);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.seen[0], "2026-11 20261120 1");
    assert_string_equal(l.seen[1], "2026-11 20261125 0");

    /* a package lost before any copy is forgotten with its versions */
    assert_int_equal(catalog_snapshot_forget(f->cat, second, &err), 0);
    assert_int_equal(catalog_snapshot_by_label(f->cat, "2026-11", NULL, &got), 1);
    assert_int_equal(got.id, first);
    catalog_snapshot_clear(&got);
    l.n = 0;
    catalog_each_snapshot_of_version(f->cat, v.id, collect_of_version, &l, &err);
    assert_int_equal(l.n, 1);
    catalog_version_clear(&v);

    /* the job: failures count up and are kept with the first time, reset by success */
    assert_int_equal(catalog_snapshot_job_get(f->cat, &job), 0);
    assert_int_equal(catalog_snapshot_job_record(f->cat, 0, "MongoDB down", NULL, 100, &err), 0);
    assert_int_equal(catalog_snapshot_job_record(f->cat, 0, "still down", NULL, 200, &err), 0);
    assert_int_equal(catalog_snapshot_job_next(f->cat, 300, &err), 0);
    assert_int_equal(catalog_snapshot_job_get(f->cat, &job), 1);
    assert_int_equal(job.failures, 2);
    assert_int_equal(job.failing_since, 100);
    assert_int_equal(job.next_run_at, 300);
    assert_string_equal(job.last_error, "still down");
    catalog_snapshot_job_clear(&job);
    assert_int_equal(catalog_snapshot_job_record(f->cat, 1, NULL, "2026-12 waits", 400, &err), 0);
    assert_int_equal(catalog_snapshot_job_get(f->cat, &job), 1);
    assert_int_equal(job.failures, 0);
    assert_int_equal(job.failing_since, 0);
    assert_int_equal(job.last_ok_at, 400);
    assert_null(job.last_error);
    assert_string_equal(job.waiting, "2026-12 waits");
    catalog_snapshot_job_clear(&job);
}

/* --- the WAL checkpoint thread (checkpoint.c) --- */

static int64_t file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Commits of about six pages each (a 16 KiB audit detail). */
static void big_commits(struct catalog *cat, int n, const char *wal, int64_t *wal_max)
{
    struct cst_err err = {{0}};
    char *detail = malloc(16 * 1024 + 16);

    assert_non_null(detail);
    strcpy(detail, "{\"pad\":\"");
    memset(detail + 8, 'x', 16 * 1024);
    strcpy(detail + 8 + 16 * 1024, "\"}");
    for (int i = 0; i < n; i++) {
        assert_int_equal(catalog_begin(cat, &err), 0);
        assert_int_equal(catalog_audit(cat, "test", "pad", detail, &err), 0);
        assert_int_equal(catalog_commit(cat, &err), 0);
        if (wal_max && file_size(wal) > *wal_max)
            *wal_max = file_size(wal);
    }
    free(detail);
}

static void test_checkpoint_thread(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char error[CST_ERR_SIZE], *wal = util_printf("%s-wal", f->db);
    int64_t done = -1, failed = -1, wal_max = 0, rows = 0, deadline;

    /* Without the thread: nothing to report. */
    catalog_checkpoint_stats(f->cat, &done, &failed, error, sizeof(error));
    assert_int_equal(done, 0);
    assert_int_equal(failed, 0);
    assert_string_equal(error, "");
    assert_int_equal(catalog_checkpointer_start(f->cat, 0, &err), -1);
    assert_non_null(strstr(err.msg, "not positive"));

    /* A threshold of 32 pages: 300 commits of ~6 pages would make a WAL of ~7 MiB. */
    assert_int_equal(catalog_checkpointer_start(f->cat, 32, &err), 0);
    assert_int_equal(catalog_checkpointer_start(f->cat, 32, &err), 0); /* started once */
    big_commits(f->cat, 300, wal, &wal_max);
    deadline = util_mono_ms() + 10000;
    do {
        catalog_checkpoint_stats(f->cat, &done, &failed, error, sizeof(error));
        if (done > 0)
            break;
        usleep(10000);
    } while (util_mono_ms() < deadline);
    assert_true(done > 0);
    assert_int_equal(failed, 0);
    assert_string_equal(error, "");
    /* Bounded: the hard bound is 4 x 32 pages, plus the commits made while a checkpoint
     * ran (generous: twice that, and 64 pages more; a page is 4 KiB + a 24-byte header). */
    assert_true(wal_max > 0);
    assert_true(wal_max <= (2 * 4 * 32 + 64) * (4096 + 24) + 32);
    /* Everything committed is there, by another connection and after a reopen. */
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM audit WHERE action = 'pad'"), 300);
    catalog_close(f->cat);
    assert_int_equal(file_size(wal), 0); /* the last close checkpointed and removed it */
    f->cat = catalog_open(f->db, &err);
    assert_non_null(f->cat);
    assert_int_equal(catalog_audit_verify(f->cat, &rows, &err), 0);
    assert_true(rows >= 300);
    assert_int_equal(catalog_integrity_check(f->cat, &err), 0);
    free(wal);
}

/* A reader that holds the WAL open (a long status query, the sqlite3 shell) keeps the
 * thread from finishing: the WAL grows past the bound only while it holds it. */
static void test_checkpoint_with_a_reader(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char *wal = util_printf("%s-wal", f->db);
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    int64_t wal_max = 0, wal_after = 0, done, failed;
    char error[CST_ERR_SIZE];

    assert_int_equal(catalog_checkpointer_start(f->cat, 32, &err), 0);
    big_commits(f->cat, 10, wal, NULL);
    assert_int_equal(sqlite3_open_v2(f->db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, "SELECT id FROM audit", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW); /* a read transaction stays open */
    big_commits(f->cat, 100, wal, &wal_max);
    sqlite3_finalize(st);
    sqlite3_close(h);
    /* Released: after a commit or two (the one that checkpoints, the next restarts) the
     * commits reuse the WAL from its start: its size stays. */
    big_commits(f->cat, 200, wal, &wal_after);
    assert_true(wal_after <= wal_max + 16 * (4096 + 24));
    catalog_checkpoint_stats(f->cat, &done, &failed, error, sizeof(error));
    assert_int_equal(failed, 0);
    assert_int_equal(raw_int(f->db, "SELECT count(*) FROM audit WHERE action = 'pad'"), 310);
    free(wal);
    (void)done;
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_fresh_catalog),
        T(test_copy_queue_by_object_uses_the_key),
        T(test_coverage_in_slices_is_the_whole_check),
        T(test_newer_catalog_refused),
        T(test_readonly_refuses_non_catalog),
        T(test_readonly_reads_but_cannot_write),
        T(test_version_zero_is_migrated),
        T(test_failed_migration_rolls_back),
        T(test_queue_generations),
        T(test_queue_ready_order_limit_skip),
        T(test_queue_empty),
        T(test_queue_retry_stats_failing),
        T(test_version_lifecycle),
        T(test_folder_delete_boundaries),
        T(test_newest_is_the_one_first_seen_last),
        T(test_copy_schedule_and_pending_by_path),
        T(test_copy_queue_unsourced_by_index),
        T(test_raw_byte_paths),
        T(test_each_version_at_prefix),
        T(test_live_in_dir),
        T(test_each_version_of_order),
        T(test_object_known),
        T(test_objects_and_copies),
        T(test_lock_extensions_and_restore_jobs),
        T(test_stats),
        T(test_state),
        T(test_move_file_unchanged),
        T(test_move_file_changed),
        T(test_move_folder),
        T(test_audit_chain),
        T(test_audit_first_row_deleted),
        T(test_integrity_check),
        T(test_transactions),
        T(test_snapshots),
        T(test_checkpoint_thread),
        T(test_checkpoint_with_a_reader),
    };
#undef T

    return cmocka_run_group_tests(tests, NULL, NULL);
}
