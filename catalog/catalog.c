/*
 * catalog.c - opening the catalog, migrations, transactions, the statement
 * cache and small key/value state.
 *
 * WAL mode with synchronous=FULL: a commit is durable when it returns, which
 * is what lets the shipper delete a spool file or a queue entry right after.
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int catalog_sql_err(struct catalog *cat, struct cst_err *err, const char *what)
{
    return cst_err_set(err, "catalog %s: %s: %s", cat->path, what, sqlite3_errmsg(cat->db));
}

sqlite3_stmt *catalog_stmt(struct catalog *cat, const char *sql, struct cst_err *err)
{
    sqlite3_stmt *st = NULL;

    for (size_t i = 0; i < cat->n_cache; i++) {
        if (cat->cache[i].sql == sql) {
            sqlite3_reset(cat->cache[i].stmt);
            sqlite3_clear_bindings(cat->cache[i].stmt);
            return cat->cache[i].stmt;
        }
    }
    if (sqlite3_prepare_v3(cat->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        catalog_sql_err(cat, err, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    if (cat->n_cache == cat->cap_cache) {
        cat->cap_cache = cat->cap_cache ? 2 * cat->cap_cache : 64;
        cat->cache = util_xrealloc(cat->cache, cat->cap_cache * sizeof(*cat->cache));
    }
    cat->cache[cat->n_cache].sql = sql;
    cat->cache[cat->n_cache].stmt = st;
    cat->n_cache++;
    return st;
}

int catalog_step(struct catalog *cat, sqlite3_stmt *st, const char *what, struct cst_err *err)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    catalog_sql_err(cat, err, what);
    sqlite3_reset(st);
    return -1;
}

/* Bind the [lo, hi) range of paths strictly below folder `prefix` ("/" is the root). */
void catalog_bind_below(sqlite3_stmt *st, int lo_idx, const char *prefix)
{
    size_t n = strlen(prefix);
    char *lo, *hi;

    while (n > 0 && prefix[n - 1] == '/')
        n--;
    lo = util_xmalloc(n + 2);
    hi = util_xmalloc(n + 2);
    memcpy(lo, prefix, n);
    memcpy(hi, prefix, n);
    lo[n] = '/';
    hi[n] = '/' + 1;
    sqlite3_bind_blob(st, lo_idx, lo, (int)n + 1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, lo_idx + 1, hi, (int)n + 1, SQLITE_TRANSIENT);
    free(lo);
    free(hi);
}

int catalog_bind_path(sqlite3_stmt *st, int idx, const char *path)
{
    return sqlite3_bind_blob(st, idx, path, (int)strlen(path), SQLITE_TRANSIENT);
}

char *catalog_column_dup(sqlite3_stmt *st, int col)
{
    const void *p;
    int n;
    char *s;

    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return NULL;
    p = sqlite3_column_blob(st, col);
    n = sqlite3_column_bytes(st, col);
    s = util_xmalloc((size_t)n + 1);
    if (n > 0)
        memcpy(s, p, (size_t)n);
    s[n] = '\0';
    return s;
}

static int exec(struct catalog *cat, const char *sql, struct cst_err *err)
{
    char *msg = NULL;

    if (sqlite3_exec(cat->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        cst_err_set(err, "catalog %s: %s", cat->path, msg ? msg : sqlite3_errmsg(cat->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

void catalog_set_cache_kib(struct catalog *cat, int kib)
{
    char sql[48];

    snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", kib);
    (void)sqlite3_exec(cat->db, sql, NULL, NULL, NULL); /* a bound, not a need */
}

int catalog_user_version(struct catalog *cat)
{
    sqlite3_stmt *st;
    int v = -1;

    if (sqlite3_prepare_v2(cat->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(struct catalog *cat, struct cst_err *err)
{
    int have = catalog_user_version(cat), latest = catalog_schema_latest();

    if (have < 0)
        return catalog_sql_err(cat, err, "reading user_version");
    if (have > latest)
        return cst_err_set(err,
                           "catalog %s has schema version %d, newer than this custodian "
                           "understands (%d); upgrade custodian",
                           cat->path, have, latest);
    for (int v = have + 1; v <= latest; v++) {
        char bump[64];

        if (exec(cat, "BEGIN IMMEDIATE", err) < 0)
            return -1;
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d", v);
        if (exec(cat, catalog_migration_sql(v), err) < 0 || exec(cat, bump, err) < 0) {
            cst_err_wrap(err, "migration to schema version %d failed", v);
            exec(cat, "ROLLBACK", NULL);
            return -1;
        }
        if (exec(cat, "COMMIT", err) < 0)
            return -1;
    }
    return 0;
}

static struct catalog *open_common(const char *path, int flags, struct cst_err *err)
{
    struct catalog *cat = util_xcalloc(1, sizeof(*cat));

    cat->path = util_xstrdup(path);
    cat->max_delay_ms = 60000;
    if (sqlite3_open_v2(path, &cat->db, flags, NULL) != SQLITE_OK) {
        cst_err_set(err, "cannot open catalog %s: %s", path,
                    cat->db ? sqlite3_errmsg(cat->db) : "out of memory");
        catalog_close(cat);
        return NULL;
    }
    /* The agent and CLI commands share the file; wait for each other's short
     * transactions rather than failing. */
    sqlite3_busy_timeout(cat->db, 10000);
    return cat;
}

struct catalog *catalog_open(const char *path, struct cst_err *err)
{
    int64_t installed_at;
    struct catalog *cat =
        open_common(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, err);

    if (cat == NULL)
        return NULL;
    /* A catalog newer than this build is refused before anything is written to it. */
    if (catalog_user_version(cat) > catalog_schema_latest()) {
        migrate(cat, err);
        catalog_close(cat);
        return NULL;
    }
    /* A checkpoint every 8000 pages (32 MiB of WAL) rather than SQLite's 1000: a shipping
     * backlog dirties the same pages (indexes by object id, the queues) in commit after
     * commit, and a checkpoint writes each page once however often the WAL holds it, so
     * rarer checkpoints write less (measured: a fifth less written in all for a backlog of
     * 20,000 small files). Readers are unaffected; the WAL file keeps its largest size. */
    if (exec(cat, "PRAGMA journal_mode = WAL", err) < 0 ||
        exec(cat, "PRAGMA synchronous = FULL", err) < 0 ||
        exec(cat, "PRAGMA foreign_keys = ON", err) < 0 ||
        exec(cat, "PRAGMA wal_autocheckpoint = " CST_STR(CATALOG_WAL_CHECKPOINT_PAGES), err) < 0 ||
        migrate(cat, err) < 0) {
        catalog_close(cat);
        return NULL;
    }
    /* When protection began: daily runs missed before it are not owed. */
    if (catalog_state_get_int(cat, "installed_at", 0, &installed_at, err) < 0 ||
        (installed_at == 0 && catalog_state_set_int(cat, "installed_at", util_now_ms(), err) < 0)) {
        catalog_close(cat);
        return NULL;
    }
    return cat;
}

struct catalog *catalog_open_readonly(const char *path, struct cst_err *err)
{
    struct catalog *cat = open_common(path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, err);
    int v;

    if (cat == NULL)
        return NULL;
    v = catalog_user_version(cat);
    if (v < 1 || v > catalog_schema_latest()) {
        cst_err_set(err, "catalog %s: %s", path,
                    v < 1 ? "not a custodian catalog (run custodian init)"
                          : "schema is newer than this custodian; upgrade custodian");
        catalog_close(cat);
        return NULL;
    }
    return cat;
}

void catalog_close(struct catalog *cat)
{
    if (cat == NULL)
        return;
    catalog_checkpointer_stop(cat);
    for (size_t i = 0; i < cat->n_cache; i++)
        sqlite3_finalize(cat->cache[i].stmt);
    free(cat->cache);
    if (cat->db)
        sqlite3_close(cat->db);
    free(cat->path);
    free(cat);
}

void catalog_release_memory(struct catalog *cat)
{
    if (cat && cat->db)
        sqlite3_db_release_memory(cat->db);
}

void catalog_set_busy_timeout(struct catalog *cat, int ms)
{
    sqlite3_busy_timeout(cat->db, ms);
}

int catalog_begin(struct catalog *cat, struct cst_err *err)
{
    if (exec(cat, "BEGIN IMMEDIATE", err) < 0)
        return -1;
    cat->in_tx = 1;
    return 0;
}

int catalog_commit(struct catalog *cat, struct cst_err *err)
{
    if (exec(cat, "COMMIT", err) < 0) {
        catalog_rollback(cat);
        return -1;
    }
    cat->in_tx = 0;
    return 0;
}

void catalog_rollback(struct catalog *cat)
{
    if (cat->in_tx || !sqlite3_get_autocommit(cat->db))
        exec(cat, "ROLLBACK", NULL);
    cat->in_tx = 0;
}

int catalog_integrity_check(struct catalog *cat, struct cst_err *err)
{
    sqlite3_stmt *st;
    int rc = -1;

    if (sqlite3_prepare_v2(cat->db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK)
        return catalog_sql_err(cat, err, "integrity_check");
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);

        if (r && strcmp(r, "ok") == 0)
            rc = 0;
        else
            cst_err_set(err, "catalog %s fails integrity_check: %s", cat->path, r ? r : "?");
    } else {
        catalog_sql_err(cat, err, "integrity_check");
    }
    sqlite3_finalize(st);
    return rc;
}

int64_t catalog_path_id(struct catalog *cat, const char *path, int create, struct cst_err *err)
{
    static const char q_sel[] = "SELECT id FROM paths WHERE path = ?";
    static const char q_ins[] = "INSERT INTO paths (path) VALUES (?)";
    sqlite3_stmt *st = catalog_stmt(cat, q_sel, err);
    int64_t id = 0;
    int found;

    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    found = catalog_step(cat, st, "path lookup", err);
    if (found < 0)
        return -1;
    if (found)
        id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (id || !create)
        return id;
    st = catalog_stmt(cat, q_ins, err);
    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    if (sqlite3_step(st) != SQLITE_DONE) {
        catalog_sql_err(cat, err, "insert path");
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return sqlite3_last_insert_rowid(cat->db);
}

int catalog_state_set_int(struct catalog *cat, const char *key, int64_t value, struct cst_err *err)
{
    static const char q[] = "INSERT INTO agent_state (key, value) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, value);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "set state");
    sqlite3_reset(st);
    return 0;
}

int catalog_state_get_int(struct catalog *cat, const char *key, int64_t dflt, int64_t *value,
                          struct cst_err *err)
{
    static const char q[] = "SELECT value FROM agent_state WHERE key = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    *value = dflt;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "read state", err);
    if (found < 0)
        return -1;
    if (found)
        *value = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

int catalog_row_exists(struct catalog *cat, const char *sql, const char *a, const char *b,
                       struct cst_err *err)
{
    sqlite3_stmt *st = catalog_stmt(cat, sql, err);
    int found;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "lookup", err);
    if (found >= 0)
        sqlite3_reset(st);
    return found;
}

int64_t catalog_last_rowid(struct catalog *cat)
{
    return sqlite3_last_insert_rowid(cat->db);
}
