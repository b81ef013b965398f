/*
 * snapshots.c - the billing-cycle snapshots' records: one row per package
 * (never rewritten), the versions it holds or references, its copies per
 * destination, the plan's per-cycle checklist, and the job's state.
 *
 * A row is written once the package is sealed and signed, before any copy
 * is made, so that an interrupted upload resumes with the very same bytes;
 * a package that never reached a destination and lost its spool file is the
 * only thing ever forgotten (catalog_snapshot_forget).
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define SNAPSHOT_COLS                                                                              \
    "id, label, period_key, close_date, coalesce(closed_at, 0), coalesce(period_start, 0),"        \
    " coalesce(period_end, 0), remote_key, sig_key, sig, spool, plain_sha256, plain_size,"         \
    " stored_sha256, stored_size, invoices, timesheets, files, refs, missing, file_bytes,"         \
    " complete, retain_until, created_at, coalesce(archived_at, 0), coalesce(verified_at, 0),"     \
    " verify_detail, last_error"

static void blob32(sqlite3_stmt *st, int col, unsigned char out[32])
{
    if (sqlite3_column_bytes(st, col) == 32)
        memcpy(out, sqlite3_column_blob(st, col), 32);
}

static void read_snapshot(sqlite3_stmt *st, struct catalog_snapshot *s)
{
    memset(s, 0, sizeof(*s));
    s->id = sqlite3_column_int64(st, 0);
    s->label = catalog_column_dup(st, 1);
    s->period_key = catalog_column_dup(st, 2);
    snprintf(s->close_date, sizeof(s->close_date), "%s", (const char *)sqlite3_column_text(st, 3));
    s->closed_at = sqlite3_column_int64(st, 4);
    s->period_start = sqlite3_column_int64(st, 5);
    s->period_end = sqlite3_column_int64(st, 6);
    s->remote_key = catalog_column_dup(st, 7);
    s->sig_key = catalog_column_dup(st, 8);
    s->sig = catalog_column_dup(st, 9);
    s->spool = catalog_column_dup(st, 10);
    blob32(st, 11, s->plain_sha256);
    s->plain_size = sqlite3_column_int64(st, 12);
    blob32(st, 13, s->stored_sha256);
    s->stored_size = sqlite3_column_int64(st, 14);
    s->invoices = sqlite3_column_int64(st, 15);
    s->timesheets = sqlite3_column_int64(st, 16);
    s->files = sqlite3_column_int64(st, 17);
    s->refs = sqlite3_column_int64(st, 18);
    s->missing = sqlite3_column_int64(st, 19);
    s->file_bytes = sqlite3_column_int64(st, 20);
    s->complete = sqlite3_column_int(st, 21);
    s->retain_until = sqlite3_column_int64(st, 22);
    s->created_at = sqlite3_column_int64(st, 23);
    s->archived_at = sqlite3_column_int64(st, 24);
    s->verified_at = sqlite3_column_int64(st, 25);
    s->verify_detail = catalog_column_dup(st, 26);
    s->last_error = catalog_column_dup(st, 27);
}

void catalog_snapshot_clear(struct catalog_snapshot *s)
{
    free(s->label);
    free(s->period_key);
    free(s->remote_key);
    free(s->sig_key);
    free(s->sig);
    free(s->spool);
    free(s->verify_detail);
    free(s->last_error);
    memset(s, 0, sizeof(*s));
}

static void bind_ms_or_null(sqlite3_stmt *st, int idx, int64_t ms)
{
    if (ms > 0)
        sqlite3_bind_int64(st, idx, ms);
    else
        sqlite3_bind_null(st, idx);
}

int catalog_snapshot_add(struct catalog *cat, struct catalog_snapshot *s, struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO snapshots (label, period_key, close_date, closed_at, period_start,"
        " period_end, remote_key, sig_key, sig, spool, plain_sha256, plain_size, stored_sha256,"
        " stored_size, invoices, timesheets, files, refs, missing, file_bytes, complete,"
        " retain_until, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
        " ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, s->label, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->period_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->close_date, -1, SQLITE_STATIC);
    bind_ms_or_null(st, 4, s->closed_at);
    bind_ms_or_null(st, 5, s->period_start);
    bind_ms_or_null(st, 6, s->period_end);
    sqlite3_bind_text(st, 7, s->remote_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, s->sig_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, s->sig, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, s->spool, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 11, s->plain_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 12, s->plain_size);
    sqlite3_bind_blob(st, 13, s->stored_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 14, s->stored_size);
    sqlite3_bind_int64(st, 15, s->invoices);
    sqlite3_bind_int64(st, 16, s->timesheets);
    sqlite3_bind_int64(st, 17, s->files);
    sqlite3_bind_int64(st, 18, s->refs);
    sqlite3_bind_int64(st, 19, s->missing);
    sqlite3_bind_int64(st, 20, s->file_bytes);
    sqlite3_bind_int(st, 21, s->complete);
    sqlite3_bind_int64(st, 22, s->retain_until);
    sqlite3_bind_int64(st, 23, s->created_at);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record snapshot");
    }
    sqlite3_reset(st);
    s->id = sqlite3_last_insert_rowid(cat->db);
    return 0;
}

int catalog_snapshot_add_version(struct catalog *cat, int64_t snapshot_id, int64_t version_id,
                                 int held, struct cst_err *err)
{
    static const char q[] =
        "INSERT OR IGNORE INTO snapshot_versions (snapshot_id, version_id, held) VALUES (?,?,?)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, snapshot_id);
    sqlite3_bind_int64(st, 2, version_id);
    sqlite3_bind_int(st, 3, held);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record snapshot version");
    }
    sqlite3_reset(st);
    return 0;
}

/* Step a query of SNAPSHOT_COLS once: 1 and *s filled (if s), 0, or -1. */
static int one_snapshot(sqlite3_stmt *st, struct catalog_snapshot *s)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        if (s)
            read_snapshot(st, s);
        sqlite3_reset(st);
        return 1;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int catalog_snapshot_find(struct catalog *cat, const char *period_key, const char *close_date,
                          struct catalog_snapshot *s)
{
    static const char q[] =
        "SELECT " SNAPSHOT_COLS " FROM snapshots WHERE period_key = ? AND close_date = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, NULL);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, period_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, close_date, -1, SQLITE_STATIC);
    return one_snapshot(st, s);
}

int catalog_snapshot_by_label(struct catalog *cat, const char *label, const char *close_date,
                              struct catalog_snapshot *s)
{
    static const char q[] = "SELECT " SNAPSHOT_COLS " FROM snapshots WHERE label = ?1 AND"
                            " (?2 IS NULL OR close_date = ?2) ORDER BY close_date DESC, id DESC"
                            " LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, NULL);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, label, -1, SQLITE_STATIC);
    if (close_date)
        sqlite3_bind_text(st, 2, close_date, -1, SQLITE_STATIC);
    return one_snapshot(st, s);
}

int catalog_each_snapshot(struct catalog *cat,
                          int (*cb)(void *arg, const struct catalog_snapshot *s), void *arg,
                          struct cst_err *err)
{
    /* Prepared on its own: callbacks may run other cached statements. */
    static const char q[] =
        "SELECT " SNAPSHOT_COLS " FROM snapshots ORDER BY close_date, label, id";
    sqlite3_stmt *st;
    int rc, stop = 0;

    if (sqlite3_prepare_v2(cat->db, q, -1, &st, NULL) != SQLITE_OK)
        return catalog_sql_err(cat, err, "list snapshots");
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct catalog_snapshot s;

        read_snapshot(st, &s);
        stop = cb(arg, &s);
        catalog_snapshot_clear(&s);
    }
    if (!stop && rc != SQLITE_DONE) {
        catalog_sql_err(cat, err, "list snapshots");
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

int catalog_snapshot_copy(struct catalog *cat, int64_t id, const char *dest,
                          const char *storage_class, int64_t retain_until, int64_t now,
                          struct cst_err *err)
{
    static const char q[] =
        "INSERT OR REPLACE INTO snapshot_copies (snapshot_id, dest, storage_class,"
        " retain_until, verified_at) VALUES (?,?,?,?,?)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, storage_class, -1, SQLITE_STATIC);
    bind_ms_or_null(st, 4, retain_until);
    sqlite3_bind_int64(st, 5, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record snapshot copy");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_snapshot_has_copy(struct catalog *cat, int64_t id, const char *dest)
{
    static const char q[] = "SELECT 1 FROM snapshot_copies WHERE snapshot_id = ? AND dest = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, NULL);
    int found;

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    found = sqlite3_step(st) == SQLITE_ROW;
    sqlite3_reset(st);
    return found;
}

int catalog_each_snapshot_copy(struct catalog *cat, int64_t id,
                               int (*cb)(void *arg, const char *dest, const char *storage_class,
                                         int64_t retain_until, int64_t verified_at),
                               void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT dest, storage_class, coalesce(retain_until, 0), verified_at FROM snapshot_copies"
        " WHERE snapshot_id = ? ORDER BY dest";
    sqlite3_stmt *st;
    int rc, stop = 0;

    if (sqlite3_prepare_v2(cat->db, q, -1, &st, NULL) != SQLITE_OK)
        return catalog_sql_err(cat, err, "list snapshot copies");
    sqlite3_bind_int64(st, 1, id);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
        stop = cb(arg, (const char *)sqlite3_column_text(st, 0),
                  (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2),
                  sqlite3_column_int64(st, 3));
    if (!stop && rc != SQLITE_DONE) {
        catalog_sql_err(cat, err, "list snapshot copies");
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

/* UPDATE snapshots SET <one column> = text (or NULL) WHERE id. */
static int set_text(struct catalog *cat, const char *q, int64_t id, const char *text,
                    const char *what, struct cst_err *err)
{
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, what);
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_snapshot_set_spool(struct catalog *cat, int64_t id, const char *spool,
                               struct cst_err *err)
{
    static const char q[] = "UPDATE snapshots SET spool = ?1 WHERE id = ?2";

    return set_text(cat, q, id, spool, "record snapshot spool", err);
}

int catalog_snapshot_set_error(struct catalog *cat, int64_t id, const char *error,
                               struct cst_err *err)
{
    static const char q[] = "UPDATE snapshots SET last_error = ?1 WHERE id = ?2";

    return set_text(cat, q, id, error, "record snapshot error", err);
}

int catalog_snapshot_archived(struct catalog *cat, int64_t id, int64_t now, struct cst_err *err)
{
    static const char q[] =
        "UPDATE snapshots SET archived_at = coalesce(archived_at, ?1) WHERE id = ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record snapshot checklist");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_snapshot_verified(struct catalog *cat, int64_t id, int64_t now, const char *detail,
                              struct cst_err *err)
{
    static const char q[] =
        "UPDATE snapshots SET verified_at = ?1, verify_detail = ?2 WHERE id = ?3";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, detail, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, id);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record snapshot checklist");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_snapshot_forget(struct catalog *cat, int64_t id, struct cst_err *err)
{
    static const char q1[] = "DELETE FROM snapshot_versions WHERE snapshot_id = ?";
    static const char q2[] = "DELETE FROM snapshot_copies WHERE snapshot_id = ?";
    static const char q3[] = "DELETE FROM snapshots WHERE id = ?";
    const char *qs[] = {q1, q2, q3};

    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *st = catalog_stmt(cat, qs[i], err);

        if (st == NULL)
            return -1;
        sqlite3_bind_int64(st, 1, id);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_reset(st);
            return catalog_sql_err(cat, err, "forget snapshot");
        }
        sqlite3_reset(st);
    }
    return 0;
}

int catalog_each_snapshot_of_version(struct catalog *cat, int64_t version_id,
                                     int (*cb)(void *arg, const char *label, const char *close_date,
                                               int held),
                                     void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT s.label, s.close_date, sv.held FROM snapshot_versions sv JOIN snapshots s ON"
        " s.id = sv.snapshot_id WHERE sv.version_id = ? ORDER BY s.close_date, s.id";
    sqlite3_stmt *st;
    int rc, stop = 0;

    if (sqlite3_prepare_v2(cat->db, q, -1, &st, NULL) != SQLITE_OK)
        return catalog_sql_err(cat, err, "list snapshots of a version");
    sqlite3_bind_int64(st, 1, version_id);
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW)
        stop = cb(arg, (const char *)sqlite3_column_text(st, 0),
                  (const char *)sqlite3_column_text(st, 1), sqlite3_column_int(st, 2));
    if (!stop && rc != SQLITE_DONE) {
        catalog_sql_err(cat, err, "list snapshots of a version");
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

/* --- the job's state --- */

int catalog_snapshot_job_get(struct catalog *cat, struct catalog_snapshot_job *j)
{
    static const char q[] =
        "SELECT coalesce(last_run_at, 0), coalesce(last_ok_at, 0), failures,"
        " coalesce(failing_since, 0), coalesce(next_run_at, 0), last_error, waiting"
        " FROM snapshot_job WHERE id = 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, NULL);
    int found = 0;

    memset(j, 0, sizeof(*j));
    if (st == NULL)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW) {
        j->last_run_at = sqlite3_column_int64(st, 0);
        j->last_ok_at = sqlite3_column_int64(st, 1);
        j->failures = sqlite3_column_int64(st, 2);
        j->failing_since = sqlite3_column_int64(st, 3);
        j->next_run_at = sqlite3_column_int64(st, 4);
        j->last_error = catalog_column_dup(st, 5);
        j->waiting = catalog_column_dup(st, 6);
        found = 1;
    }
    sqlite3_reset(st);
    return found;
}

void catalog_snapshot_job_clear(struct catalog_snapshot_job *j)
{
    free(j->last_error);
    free(j->waiting);
    memset(j, 0, sizeof(*j));
}

int catalog_snapshot_job_record(struct catalog *cat, int ok, const char *error, const char *waiting,
                                int64_t now, struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO snapshot_job (id, last_run_at, last_ok_at, failures, failing_since,"
        " last_error, waiting) VALUES (1, ?1, CASE WHEN ?2 THEN ?1 END, CASE WHEN ?2 THEN 0"
        " ELSE 1 END, CASE WHEN ?2 THEN NULL ELSE ?1 END, ?3, ?4)"
        " ON CONFLICT (id) DO UPDATE SET last_run_at = ?1,"
        " last_ok_at = CASE WHEN ?2 THEN ?1 ELSE last_ok_at END,"
        " failures = CASE WHEN ?2 THEN 0 ELSE failures + 1 END,"
        " failing_since = CASE WHEN ?2 THEN NULL ELSE coalesce(failing_since, ?1) END,"
        " last_error = ?3, waiting = ?4";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, ok);
    sqlite3_bind_text(st, 3, ok ? NULL : error, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, waiting, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record snapshot job");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_snapshot_job_next(struct catalog *cat, int64_t next_run_at, struct cst_err *err)
{
    static const char q[] = "INSERT INTO snapshot_job (id, next_run_at) VALUES (1, ?1)"
                            " ON CONFLICT (id) DO UPDATE SET next_run_at = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, next_run_at);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record snapshot job");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_snapshot_by_id(struct catalog *cat, int64_t id, struct catalog_snapshot *s,
                           struct cst_err *err)
{
    static const char q[] = "SELECT " SNAPSHOT_COLS " FROM snapshots WHERE id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    rc = catalog_step(cat, st, "snapshot lookup", err);
    if (rc == 1)
        read_snapshot(st, s);
    if (rc >= 0)
        sqlite3_reset(st);
    return rc;
}
