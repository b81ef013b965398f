/*
 * daily.c - the daily protection run's records: one row per attempt
 * (the plan's checklist: ran, manifest written, verified off-server on
 * every destination), the artifacts each attempt produced with their
 * copies, and the catalog copy itself.
 *
 * Attempts are never rewritten once finished and never deleted: a retry is
 * a new attempt. These statements run a few times a day, so they are
 * prepared on each use and kept out of the statement cache, which is sized
 * for the agent's hot paths.
 */
#include "catalog_int.h"

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

/* Step a statement that returns no rows, then finalize it. */
static int run_done(struct catalog *cat, sqlite3_stmt *st, const char *what, struct cst_err *err)
{
    int rc = 0;

    if (sqlite3_step(st) != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, what);
    sqlite3_finalize(st);
    return rc;
}

int catalog_daily_begin(struct catalog *cat, const char *date, const char *made_on, int backfill,
                        int64_t pid, int64_t now, int *attempt, struct cst_err *err)
{
    static const char q_stale[] =
        "UPDATE daily_attempts SET status = 'failed', finished_at = ?1,"
        " error = 'interrupted: the attempt stopped before it finished (its process died)'"
        " WHERE status = 'running'";
    static const char q_next[] =
        "SELECT coalesce(max(attempt), 0) + 1 FROM daily_attempts WHERE date = ?1";
    static const char q_ins[] =
        "INSERT INTO daily_attempts (date, attempt, made_on, backfill, pid, status, started_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)";
    sqlite3_stmt *st;

    if ((st = prepare(cat, q_stale, err)) == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    if (run_done(cat, st, "mark interrupted daily runs", err) < 0)
        return -1;
    if ((st = prepare(cat, q_next, err)) == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        catalog_sql_err(cat, err, "number the daily run's attempt");
        sqlite3_finalize(st);
        return -1;
    }
    *attempt = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if ((st = prepare(cat, q_ins, err)) == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, *attempt);
    sqlite3_bind_text(st, 3, made_on, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, backfill);
    sqlite3_bind_int64(st, 5, pid);
    sqlite3_bind_int64(st, 6, now);
    return run_done(cat, st, "record daily run", err);
}

int catalog_daily_finish(struct catalog *cat, const struct catalog_daily *d, struct cst_err *err)
{
    static const char q[] =
        "UPDATE daily_attempts SET status = ?3, finished_at = ?4, ran = ?5, manifest_written = ?6,"
        " offsite_verified = ?7, db_status = ?8, files_status = ?9, catalog_status = ?10,"
        " error = ?11, audit_rows = ?12, audit_head = ?13"
        " WHERE date = ?1 AND attempt = ?2 AND status = 'running'";
    sqlite3_stmt *st = prepare(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, d->date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, d->attempt);
    sqlite3_bind_text(st, 3, d->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, d->finished_at);
    sqlite3_bind_int(st, 5, d->ran);
    sqlite3_bind_int(st, 6, d->manifest_written);
    sqlite3_bind_int(st, 7, d->offsite_verified);
    sqlite3_bind_text(st, 8, d->db_status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, d->files_status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, d->catalog_status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, d->error, -1, SQLITE_STATIC);
    if (d->audit_rows > 0) {
        sqlite3_bind_int64(st, 12, d->audit_rows);
        sqlite3_bind_blob(st, 13, d->audit_head, 32, SQLITE_STATIC);
    }
    if (sqlite3_step(st) != SQLITE_DONE) {
        catalog_sql_err(cat, err, "record daily run");
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    /* A finished attempt is never rewritten: one that is not running any more (another
     * run marked it interrupted) keeps what it says. */
    if (sqlite3_changes(cat->db) != 1)
        return cst_err_set(err,
                           "catalog %s: daily run %s attempt %d is no longer marked running "
                           "(another run marked it interrupted); its record was not changed",
                           cat->path, d->date, d->attempt);
    return 0;
}

static void text_into(sqlite3_stmt *st, int col, char *out, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, col);

    snprintf(out, size, "%s", t ? (const char *)t : "");
}

int catalog_daily_get(struct catalog *cat, const char *date, struct catalog_daily *d,
                      struct cst_err *err)
{
    static const char q[] =
        "SELECT r.date, r.attempt, r.made_on, r.backfill, r.status, r.started_at,"
        " coalesce(r.finished_at, 0), coalesce(a.pid, 0), r.attempts,"
        " coalesce(r.ok_attempt, 0), r.ran, r.manifest_written, r.offsite_verified,"
        " r.db_status, r.files_status, r.catalog_status, r.error, coalesce(a.audit_rows, 0),"
        " a.audit_head"
        " FROM daily_runs r JOIN daily_attempts a ON a.date = r.date AND a.attempt = r.attempt"
        " WHERE ?1 IS NULL OR r.date = ?1 ORDER BY r.date DESC LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    memset(d, 0, sizeof(*d));
    if (st == NULL)
        return -1;
    if (date)
        sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "daily run lookup", err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        text_into(st, 0, d->date, sizeof(d->date));
        d->attempt = sqlite3_column_int(st, 1);
        text_into(st, 2, d->made_on, sizeof(d->made_on));
        d->backfill = sqlite3_column_int(st, 3);
        text_into(st, 4, d->status, sizeof(d->status));
        d->started_at = sqlite3_column_int64(st, 5);
        d->finished_at = sqlite3_column_int64(st, 6);
        d->pid = sqlite3_column_int64(st, 7);
        d->attempts = sqlite3_column_int(st, 8);
        d->ok_attempt = sqlite3_column_int(st, 9);
        d->ran = sqlite3_column_int(st, 10);
        d->manifest_written = sqlite3_column_int(st, 11);
        d->offsite_verified = sqlite3_column_int(st, 12);
        d->db_status = catalog_column_dup(st, 13);
        d->files_status = catalog_column_dup(st, 14);
        d->catalog_status = catalog_column_dup(st, 15);
        d->error = catalog_column_dup(st, 16);
        d->audit_rows = sqlite3_column_int64(st, 17);
        if (sqlite3_column_bytes(st, 18) == 32)
            memcpy(d->audit_head, sqlite3_column_blob(st, 18), 32);
        rc = 1;
    }
    sqlite3_reset(st);
    return rc;
}

void catalog_daily_clear(struct catalog_daily *d)
{
    free(d->db_status);
    free(d->files_status);
    free(d->catalog_status);
    free(d->error);
    memset(d, 0, sizeof(*d));
}

int catalog_daily_last_success(struct catalog *cat, char out[11], struct cst_err *err)
{
    static const char q[] = "SELECT max(date) FROM daily_attempts WHERE status = 'ok'";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    out[0] = '\0';
    if (st == NULL)
        return -1;
    rc = catalog_step(cat, st, "last daily run", err);
    if (rc < 0)
        return -1;
    if (rc == 1 && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        text_into(st, 0, out, 11);
        rc = 1;
    } else {
        rc = 0;
    }
    sqlite3_reset(st);
    return rc;
}

int catalog_artifact_record(struct catalog *cat, const struct catalog_artifact *a, int64_t now,
                            struct cst_err *err)
{
    /* The same attempt records its artifacts twice (before the catalog copy, so that
     * the copy knows them, and at the end): the same values again. */
    static const char q[] =
        "INSERT OR REPLACE INTO artifacts (date, attempt, kind, remote_key, sealed,"
        " plain_sha256, plain_size, stored_sha256, stored_size, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = prepare(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, a->date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, a->attempt);
    sqlite3_bind_text(st, 3, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, a->remote_key, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, a->sealed);
    sqlite3_bind_blob(st, 6, a->plain_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, a->plain_size);
    sqlite3_bind_blob(st, 8, a->stored_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, a->stored_size);
    sqlite3_bind_int64(st, 10, now);
    return run_done(cat, st, "record artifact", err);
}

int catalog_artifact_copy(struct catalog *cat, const struct catalog_artifact *a, const char *dest,
                          int64_t now, struct cst_err *err)
{
    static const char q[] = "INSERT OR REPLACE INTO artifact_copies (date, attempt, kind, dest,"
                            " verified_at) VALUES (?,?,?,?,?)";
    sqlite3_stmt *st = prepare(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, a->date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, a->attempt);
    sqlite3_bind_text(st, 3, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    return run_done(cat, st, "record artifact copy", err);
}

int catalog_artifact_get(struct catalog *cat, const char *date, const char *kind,
                         struct catalog_artifact *a, struct cst_err *err)
{
    static const char q[] =
        "SELECT a.attempt, a.remote_key, a.sealed, a.plain_sha256, a.plain_size,"
        " a.stored_sha256, a.stored_size FROM artifacts a WHERE a.date = ?1 AND a.kind = ?2"
        " ORDER BY EXISTS (SELECT 1 FROM artifact_copies c WHERE c.date = a.date"
        "   AND c.attempt = a.attempt AND c.kind = a.kind) DESC, a.attempt DESC LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    memset(a, 0, sizeof(*a));
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "artifact lookup", err);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        snprintf(a->date, sizeof(a->date), "%s", date);
        snprintf(a->kind, sizeof(a->kind), "%s", kind);
        a->attempt = sqlite3_column_int(st, 0);
        a->remote_key = catalog_column_dup(st, 1);
        a->sealed = sqlite3_column_int(st, 2);
        if (sqlite3_column_bytes(st, 3) == 32)
            memcpy(a->plain_sha256, sqlite3_column_blob(st, 3), 32);
        a->plain_size = sqlite3_column_int64(st, 4);
        if (sqlite3_column_bytes(st, 5) == 32)
            memcpy(a->stored_sha256, sqlite3_column_blob(st, 5), 32);
        a->stored_size = sqlite3_column_int64(st, 6);
        rc = 1;
    }
    sqlite3_reset(st);
    return rc;
}

int catalog_artifact_has_copy(struct catalog *cat, const struct catalog_artifact *a,
                              const char *dest, struct cst_err *err)
{
    static const char q[] = "SELECT 1 FROM artifact_copies WHERE date = ? AND attempt = ? AND"
                            " kind = ? AND dest = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, a->date, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, a->attempt);
    sqlite3_bind_text(st, 3, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, dest, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "artifact copy lookup", err);
    if (rc < 0)
        return -1;
    sqlite3_reset(st);
    return rc;
}

int catalog_backup_to(struct catalog *cat, const char *path, struct cst_err *err)
{
    /*
     * VACUUM INTO reads the whole catalog in one read transaction: in WAL mode the
     * agent keeps committing meanwhile, and the copy is the catalog as it stood when
     * the read began. SQLite's online backup in steps restarts whenever another
     * connection commits between two steps, so under a steady stream of agent
     * commits it never finished.
     */
    sqlite3_stmt *st = prepare(cat, "VACUUM INTO ?1", err);
    int rc;

    if (st == NULL)
        return cst_err_wrap(err, "cannot copy catalog %s", cat->path);
    sqlite3_bind_text(st, 1, path, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        cst_err_set(err, "copy of catalog %s into %s failed: %s", cat->path, path,
                    sqlite3_errmsg(cat->db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int64_t catalog_daily_last_success_at(struct catalog *cat)
{
    static const char q[] =
        "SELECT coalesce(max(finished_at), 0) FROM daily_attempts WHERE status = 'ok'";
    sqlite3_stmt *st = catalog_stmt(cat, q, NULL);
    int64_t at = 0;

    if (st == NULL)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        at = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return at;
}
