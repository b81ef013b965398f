/*
 * evidence.c - the catalog's records of proof: what each daily dump held
 * per namespace as it was written, the monthly restore tests and their
 * checks, the alerts the agent has raised and not yet seen clear, and the
 * lookups the plan's checklist is answered from.
 *
 * Like daily.c, these statements run a few times a day (the alert state a
 * few times a minute at most), so they are prepared on each use and kept out
 * of the statement cache.
 */
#include "catalog_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static sqlite3_stmt *prepare(struct catalog *cat, const char *sql, struct cst_err *err)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL) != SQLITE_OK) {
        catalog_sql_err(cat, err, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static int run_done(struct catalog *cat, sqlite3_stmt *st, const char *what, struct cst_err *err)
{
    int rc = 0;

    if (sqlite3_step(st) != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, what);
    sqlite3_finalize(st);
    return rc;
}

static void text_into(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    snprintf(out, size, "%s", t ? (const char *)t : "");
}

/* Step through every row of st with row(); finalizes st. -1 on error, else what row()
 * returned last (0 when it never stopped early) or the count in *n. */
static int each_row(struct catalog *cat, sqlite3_stmt *st, const char *what,
                    int (*row)(sqlite3_stmt *st, void *ctx), void *ctx, int *n, struct cst_err *err)
{
    int step, rc = 0;

    *n = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        (*n)++;
        if ((rc = row(st, ctx)) != 0)
            break;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, what);
    sqlite3_finalize(st);
    return rc;
}

/* --- dumps --- */

int catalog_dump_ns_record(struct catalog *cat, const char *date, int attempt,
                           const struct catalog_dump_ns *ns, struct cst_err *err)
{
    static const char q[] =
        "INSERT OR REPLACE INTO dump_collections (date, attempt, db, coll, type, docs, doc_bytes,"
        " crc64) VALUES (?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = prepare(cat, q, err);
    char crc[17];

    if (st == NULL)
        return -1;
    snprintf(crc, sizeof(crc), "%016" PRIx64, ns->crc64);
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_text(st, 3, ns->db, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, ns->coll, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, ns->type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, ns->docs);
    sqlite3_bind_int64(st, 7, ns->doc_bytes);
    if (ns->has_crc)
        sqlite3_bind_text(st, 8, crc, -1, SQLITE_TRANSIENT);
    return run_done(cat, st, "record the dump's collections", err);
}

struct dump_visit {
    int (*cb)(void *arg, const struct catalog_dump_ns *ns);
    void *arg;
};

static int dump_row(sqlite3_stmt *st, void *ctx)
{
    struct dump_visit *v = ctx;
    struct catalog_dump_ns ns;
    const unsigned char *crc = sqlite3_column_text(st, 5);
    int rc;

    memset(&ns, 0, sizeof(ns));
    ns.db = catalog_column_dup(st, 0);
    ns.coll = catalog_column_dup(st, 1);
    ns.type = catalog_column_dup(st, 2);
    ns.docs = sqlite3_column_int64(st, 3);
    ns.doc_bytes = sqlite3_column_int64(st, 4);
    if (crc && strlen((const char *)crc) == 16) {
        ns.has_crc = 1;
        ns.crc64 = strtoull((const char *)crc, NULL, 16);
    }
    rc = v->cb(v->arg, &ns);
    free(ns.db);
    free(ns.coll);
    free(ns.type);
    return rc;
}

int catalog_each_dump_ns(struct catalog *cat, const char *date, int attempt,
                         int (*cb)(void *arg, const struct catalog_dump_ns *ns), void *arg,
                         struct cst_err *err)
{
    static const char q[] = "SELECT db, coll, type, docs, doc_bytes, crc64 FROM dump_collections"
                            " WHERE date = ? AND attempt = ? ORDER BY db, coll";
    sqlite3_stmt *st = prepare(cat, q, err);
    struct dump_visit v = {cb, arg};
    int n, rc;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, attempt);
    rc = each_row(cat, st, "read the dump's collections", dump_row, &v, &n, err);
    return rc < 0 ? -1 : n;
}

int catalog_latest_artifact(struct catalog *cat, const char *kind, struct catalog_artifact *a,
                            struct cst_err *err)
{
    static const char q[] =
        "SELECT a.date, a.attempt, a.remote_key, a.sealed, a.plain_sha256, a.plain_size,"
        " a.stored_sha256, a.stored_size FROM artifacts a WHERE a.kind = ?1"
        " AND EXISTS (SELECT 1 FROM artifact_copies c WHERE c.date = a.date"
        "   AND c.attempt = a.attempt AND c.kind = a.kind)"
        " ORDER BY a.date DESC, a.attempt DESC LIMIT 1";
    sqlite3_stmt *st = prepare(cat, q, err);
    int rc;

    memset(a, 0, sizeof(*a));
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, kind, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        text_into(st, 0, a->date, sizeof(a->date));
        a->attempt = sqlite3_column_int(st, 1);
        snprintf(a->kind, sizeof(a->kind), "%s", kind);
        a->remote_key = catalog_column_dup(st, 2);
        a->sealed = sqlite3_column_int(st, 3);
        if (sqlite3_column_bytes(st, 4) == 32)
            memcpy(a->plain_sha256, sqlite3_column_blob(st, 4), 32);
        a->plain_size = sqlite3_column_int64(st, 5);
        if (sqlite3_column_bytes(st, 6) == 32)
            memcpy(a->stored_sha256, sqlite3_column_blob(st, 6), 32);
        a->stored_size = sqlite3_column_int64(st, 7);
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = catalog_sql_err(cat, err, "find the newest daily artifact");
    }
    sqlite3_finalize(st);
    return rc;
}

struct copy_visit {
    int (*cb)(void *arg, const char *dest, int64_t verified_at);
    void *arg;
};

static int copy_row(sqlite3_stmt *st, void *ctx)
{
    struct copy_visit *v = ctx;

    return v->cb(v->arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
}

int catalog_each_artifact_copy(struct catalog *cat, const char *date, int attempt, const char *kind,
                               int (*cb)(void *arg, const char *dest, int64_t verified_at),
                               void *arg, struct cst_err *err)
{
    static const char q[] = "SELECT dest, verified_at FROM artifact_copies WHERE date = ? AND"
                            " attempt = ? AND kind = ? ORDER BY dest";
    sqlite3_stmt *st = prepare(cat, q, err);
    struct copy_visit v = {cb, arg};
    int n;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, attempt);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
    return each_row(cat, st, "read artifact copies", copy_row, &v, &n, err);
}

struct attempt_visit {
    int (*cb)(void *arg, const struct catalog_daily *d);
    void *arg;
};

static int attempt_row(sqlite3_stmt *st, void *ctx)
{
    struct attempt_visit *v = ctx;
    struct catalog_daily d;
    int rc;

    memset(&d, 0, sizeof(d));
    text_into(st, 0, d.date, sizeof(d.date));
    d.attempt = sqlite3_column_int(st, 1);
    text_into(st, 2, d.made_on, sizeof(d.made_on));
    d.backfill = sqlite3_column_int(st, 3);
    text_into(st, 4, d.status, sizeof(d.status));
    d.started_at = sqlite3_column_int64(st, 5);
    d.finished_at = sqlite3_column_int64(st, 6);
    d.pid = sqlite3_column_int64(st, 7);
    d.ran = sqlite3_column_int(st, 8);
    d.manifest_written = sqlite3_column_int(st, 9);
    d.offsite_verified = sqlite3_column_int(st, 10);
    d.db_status = catalog_column_dup(st, 11);
    d.files_status = catalog_column_dup(st, 12);
    d.catalog_status = catalog_column_dup(st, 13);
    d.error = catalog_column_dup(st, 14);
    d.attempts = d.attempt;
    rc = v->cb(v->arg, &d);
    free(d.db_status);
    free(d.files_status);
    free(d.catalog_status);
    free(d.error);
    return rc;
}

int catalog_each_daily_attempt(struct catalog *cat, const char *from, const char *to,
                               int (*cb)(void *arg, const struct catalog_daily *d), void *arg,
                               struct cst_err *err)
{
    static const char q[] =
        "SELECT date, attempt, coalesce(made_on, ''), backfill, status, started_at,"
        " coalesce(finished_at, 0), coalesce(pid, 0), ran, manifest_written, offsite_verified,"
        " db_status, files_status, catalog_status, error FROM daily_attempts"
        " WHERE date >= ?1 AND date <= ?2 ORDER BY date, attempt";
    sqlite3_stmt *st = prepare(cat, q, err);
    struct attempt_visit v = {cb, arg};
    int n;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, from, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, to, -1, SQLITE_STATIC);
    return each_row(cat, st, "read daily runs", attempt_row, &v, &n, err);
}

struct version_visit {
    int (*cb)(void *arg, const struct catalog_version *v);
    void *arg;
};

static int version_row(sqlite3_stmt *st, void *ctx)
{
    struct version_visit *vv = ctx;
    struct catalog_version v;
    int rc;

    memset(&v, 0, sizeof(v));
    v.id = sqlite3_column_int64(st, 0);
    v.path_id = sqlite3_column_int64(st, 1);
    v.path = catalog_column_dup(st, 2);
    v.kind = CATALOG_FILE;
    v.size = sqlite3_column_int64(st, 3);
    v.mtime_ns = sqlite3_column_int64(st, 4);
    v.inode = sqlite3_column_int64(st, 5);
    if (sqlite3_column_bytes(st, 6) == 32)
        memcpy(v.sha256, sqlite3_column_blob(st, 6), 32);
    text_into(st, 7, v.object_id, sizeof(v.object_id));
    v.first_seen = sqlite3_column_int64(st, 8);
    v.shipped_at = sqlite3_column_int64(st, 9);
    v.deleted_at = sqlite3_column_int64(st, 10);
    rc = vv->cb(vv->arg, &v);
    free(v.path);
    return rc;
}

int catalog_sample_versions(struct catalog *cat, int64_t n, int64_t since,
                            int (*cb)(void *arg, const struct catalog_version *v), void *arg,
                            struct cst_err *err)
{
    static const char q[] =
        "SELECT v.id, v.path_id, p.path, v.size, v.mtime_ns, v.inode, v.sha256, v.object_id,"
        " v.first_seen, v.shipped_at, coalesce(v.deleted_at, 0)"
        " FROM versions v JOIN paths p ON p.id = v.path_id"
        " WHERE v.kind = 'file' AND (v.first_seen >= ?2 OR v.id IN ("
        "   SELECT l.id FROM versions l WHERE l.kind = 'file' AND l.deleted_at IS NULL"
        "   AND l.id = " NEWEST_OF("l.path_id") "   ORDER BY random() LIMIT ?1))"
                                                " ORDER BY v.id";
    sqlite3_stmt *st = prepare(cat, q, err);
    struct version_visit vv = {cb, arg};
    int rows;

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, n);
    sqlite3_bind_int64(st, 2, since);
    return each_row(cat, st, "choose the files to restore", version_row, &vv, &rows, err);
}

int catalog_live_bytes(struct catalog *cat, int64_t *files, int64_t *bytes, struct cst_err *err)
{
    static const char q[] =
        "SELECT count(*), coalesce(sum(v.size), 0) FROM versions v WHERE v.kind = 'file'"
        " AND v.deleted_at IS NULL AND v.id = " NEWEST_OF("v.path_id");
    sqlite3_stmt *st = prepare(cat, q, err);
    int rc;

    *files = *bytes = 0;
    if (st == NULL)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *files = sqlite3_column_int64(st, 0);
        *bytes = sqlite3_column_int64(st, 1);
        rc = 0;
    } else {
        rc = catalog_sql_err(cat, err, "count the live files");
    }
    sqlite3_finalize(st);
    return rc;
}

/* --- restore tests --- */

int catalog_restore_test_begin(struct catalog *cat, struct catalog_restore_test *t,
                               struct cst_err *err)
{
    static const char q_stale[] =
        "UPDATE restore_tests SET status = 'failed', finished_at = ?1,"
        " summary = 'interrupted: the test stopped before it finished (its process died)'"
        " WHERE status = 'running'";
    static const char q_ins[] =
        "INSERT INTO restore_tests (month, trigger, pid, status, started_at, with_secret_key)"
        " VALUES (?1, ?2, ?3, 'running', ?4, ?5)";
    sqlite3_stmt *st;

    if ((st = prepare(cat, q_stale, err)) == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, t->started_at);
    if (run_done(cat, st, "mark interrupted restore tests", err) < 0)
        return -1;
    if ((st = prepare(cat, q_ins, err)) == NULL)
        return -1;
    sqlite3_bind_text(st, 1, t->month, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->trigger, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->pid);
    sqlite3_bind_int64(st, 4, t->started_at);
    sqlite3_bind_int(st, 5, t->with_secret_key);
    if (run_done(cat, st, "record the restore test", err) < 0)
        return -1;
    t->id = sqlite3_last_insert_rowid(cat->db);
    snprintf(t->status, sizeof(t->status), "running");
    return 0;
}

static void bind_or_null(sqlite3_stmt *st, int idx, const char *s)
{
    if (s && s[0])
        sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, idx);
}

int catalog_restore_test_finish(struct catalog *cat, const struct catalog_restore_test *t,
                                struct cst_err *err)
{
    static const char q[] =
        "UPDATE restore_tests SET status = ?2, finished_at = ?3, db = ?4, files = ?5,"
        " snapshot = ?6, archive = ?7, pruning = ?8, rto = ?9, summary = ?10, report_json = ?11,"
        " report_html = ?12, stored_on = ?13 WHERE id = ?1 AND status = 'running'";
    sqlite3_stmt *st = prepare(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, t->id);
    sqlite3_bind_text(st, 2, t->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, t->finished_at);
    bind_or_null(st, 4, t->db);
    bind_or_null(st, 5, t->files);
    bind_or_null(st, 6, t->snapshot);
    bind_or_null(st, 7, t->archive);
    bind_or_null(st, 8, t->pruning);
    bind_or_null(st, 9, t->rto);
    bind_or_null(st, 10, t->summary);
    bind_or_null(st, 11, t->report_json);
    bind_or_null(st, 12, t->report_html);
    bind_or_null(st, 13, t->stored_on);
    if (run_done(cat, st, "record the restore test's result", err) < 0)
        return -1;
    if (sqlite3_changes(cat->db) != 1)
        return cst_err_set(err,
                           "catalog %s: restore test %lld is no longer marked running (another "
                           "test marked it interrupted); its record was not changed",
                           cat->path, (long long)t->id);
    return 0;
}

int catalog_restore_test_get(struct catalog *cat, const char *month, struct catalog_restore_test *t,
                             struct cst_err *err)
{
    static const char q[] =
        "SELECT id, month, trigger, coalesce(pid, 0), status, started_at, coalesce(finished_at, 0),"
        " with_secret_key, db, files, snapshot, archive, pruning, rto, summary, report_json,"
        " report_html, stored_on FROM restore_tests WHERE ?1 IS NULL OR month = ?1"
        " ORDER BY id DESC LIMIT 1";
    sqlite3_stmt *st = prepare(cat, q, err);
    int rc;

    memset(t, 0, sizeof(*t));
    if (st == NULL)
        return -1;
    if (month)
        sqlite3_bind_text(st, 1, month, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        t->id = sqlite3_column_int64(st, 0);
        text_into(st, 1, t->month, sizeof(t->month));
        text_into(st, 2, t->trigger, sizeof(t->trigger));
        t->pid = sqlite3_column_int64(st, 3);
        text_into(st, 4, t->status, sizeof(t->status));
        t->started_at = sqlite3_column_int64(st, 5);
        t->finished_at = sqlite3_column_int64(st, 6);
        t->with_secret_key = sqlite3_column_int(st, 7);
        text_into(st, 8, t->db, sizeof(t->db));
        text_into(st, 9, t->files, sizeof(t->files));
        text_into(st, 10, t->snapshot, sizeof(t->snapshot));
        text_into(st, 11, t->archive, sizeof(t->archive));
        text_into(st, 12, t->pruning, sizeof(t->pruning));
        text_into(st, 13, t->rto, sizeof(t->rto));
        t->summary = catalog_column_dup(st, 14);
        t->report_json = catalog_column_dup(st, 15);
        t->report_html = catalog_column_dup(st, 16);
        t->stored_on = catalog_column_dup(st, 17);
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = catalog_sql_err(cat, err, "read the restore tests");
    }
    sqlite3_finalize(st);
    return rc;
}

int catalog_restore_test_last_month(struct catalog *cat, char out[8], struct cst_err *err)
{
    static const char q[] = "SELECT max(month) FROM restore_tests WHERE status <> 'running'"
                            " AND coalesce(summary, '') NOT LIKE 'interrupted:%'";
    sqlite3_stmt *st = prepare(cat, q, err);
    int rc;

    out[0] = '\0';
    if (st == NULL)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        text_into(st, 0, out, 8);
        rc = 1;
    } else if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = catalog_sql_err(cat, err, "read the restore tests");
    }
    sqlite3_finalize(st);
    return rc;
}

int64_t catalog_restore_test_last_passed_at(struct catalog *cat)
{
    static const char q[] =
        "SELECT coalesce(max(finished_at), 0) FROM restore_tests WHERE status = 'passed'";
    sqlite3_stmt *st = prepare(cat, q, NULL);
    int64_t at = 0;

    if (st == NULL)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        at = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return at;
}

int64_t catalog_next_lock_expiry(struct catalog *cat, int64_t now)
{
    /* Object Lock on stored objects (copies) and on archived snapshot packages. */
    static const char q[] =
        "SELECT coalesce(min(u), 0) FROM (SELECT locked_until AS u FROM copies"
        " WHERE locked_until > ?1 UNION ALL SELECT retain_until FROM snapshot_copies"
        " WHERE retain_until > ?1)";
    sqlite3_stmt *st = prepare(cat, q, NULL);
    int64_t at = 0;

    if (st == NULL)
        return 0;
    sqlite3_bind_int64(st, 1, now);
    if (sqlite3_step(st) == SQLITE_ROW)
        at = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return at;
}

void catalog_restore_test_clear(struct catalog_restore_test *t)
{
    free(t->summary);
    free(t->report_json);
    free(t->report_html);
    free(t->stored_on);
    memset(t, 0, sizeof(*t));
}

/* --- alerts --- */

struct alert_list {
    struct catalog_alert *a;
    size_t n;
};

static int alert_row(sqlite3_stmt *st, void *ctx)
{
    struct alert_list *l = ctx;
    struct catalog_alert *a;

    l->a = util_xrealloc(l->a, (l->n + 1) * sizeof(*l->a));
    a = &l->a[l->n++];
    a->key = catalog_column_dup(st, 0);
    a->kind = catalog_column_dup(st, 1);
    a->subject = catalog_column_dup(st, 2);
    a->message = catalog_column_dup(st, 3);
    a->seen_at = sqlite3_column_int64(st, 4);
    a->fired_at = sqlite3_column_int64(st, 5);
    return 0;
}

int catalog_alerts_load(struct catalog *cat, struct catalog_alert **out, size_t *n,
                        struct cst_err *err)
{
    static const char q[] = "SELECT key, kind, subject, message, seen_at, coalesce(fired_at, 0)"
                            " FROM alerts ORDER BY seen_at, key";
    sqlite3_stmt *st = prepare(cat, q, err);
    struct alert_list l = {NULL, 0};
    int rows;

    *out = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    if (each_row(cat, st, "read the alerts", alert_row, &l, &rows, err) < 0) {
        catalog_alerts_free(l.a, l.n);
        return -1;
    }
    *out = l.a;
    *n = l.n;
    return 0;
}

int catalog_alert_save(struct catalog *cat, const struct catalog_alert *a, struct cst_err *err)
{
    static const char q[] = "INSERT INTO alerts (key, kind, subject, message, seen_at, fired_at)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (key) DO UPDATE SET"
                            " message = excluded.message, fired_at = excluded.fired_at";
    sqlite3_stmt *st = prepare(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, a->key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, a->message, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, a->seen_at);
    if (a->fired_at > 0)
        sqlite3_bind_int64(st, 6, a->fired_at);
    return run_done(cat, st, "record an alert", err);
}

int catalog_alert_delete(struct catalog *cat, const char *key, struct cst_err *err)
{
    sqlite3_stmt *st = prepare(cat, "DELETE FROM alerts WHERE key = ?1", err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return run_done(cat, st, "clear an alert", err);
}

void catalog_alerts_free(struct catalog_alert *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].key);
        free(a[i].kind);
        free(a[i].subject);
        free(a[i].message);
    }
    free(a);
}
