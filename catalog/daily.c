/*
 * daily.c - the daily protection run's records: the plan's checklist per
 * local date (ran, manifest written, verified off-server on every
 * destination) and the artifacts the run produced, with their copies.
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int catalog_daily_begin(struct catalog *cat, const char *date, int64_t now, struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO daily_runs (date, status, started_at) VALUES (?1, 'running', ?2)"
        " ON CONFLICT (date) DO UPDATE SET status = 'running', started_at = ?2,"
        " finished_at = NULL, attempts = attempts + 1, ran = 0, manifest_written = 0,"
        " offsite_verified = 0, db_status = NULL, files_status = NULL, catalog_status = NULL,"
        " error = NULL";
    static const char q_a[] = "DELETE FROM artifacts WHERE date = ?1";
    static const char q_c[] = "DELETE FROM artifact_copies WHERE date = ?1";
    const char *qs[] = {q, q_a, q_c};

    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *st = catalog_stmt(cat, qs[i], err);

        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
        if (i == 0)
            sqlite3_bind_int64(st, 2, now);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_reset(st);
            return catalog_sql_err(cat, err, "record daily run");
        }
        sqlite3_reset(st);
    }
    return 0;
}

int catalog_daily_finish(struct catalog *cat, const struct catalog_daily *d, struct cst_err *err)
{
    static const char q[] =
        "UPDATE daily_runs SET status = ?2, finished_at = ?3, ran = ?4, manifest_written = ?5,"
        " offsite_verified = ?6, db_status = ?7, files_status = ?8, catalog_status = ?9,"
        " error = ?10 WHERE date = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, d->date, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, d->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, d->finished_at);
    sqlite3_bind_int(st, 4, d->ran);
    sqlite3_bind_int(st, 5, d->manifest_written);
    sqlite3_bind_int(st, 6, d->offsite_verified);
    sqlite3_bind_text(st, 7, d->db_status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, d->files_status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, d->catalog_status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, d->error, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record daily run");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_daily_get(struct catalog *cat, const char *date, struct catalog_daily *d,
                      struct cst_err *err)
{
    static const char q[] =
        "SELECT date, status, started_at, coalesce(finished_at, 0), attempts, ran,"
        " manifest_written, offsite_verified, db_status, files_status, catalog_status, error"
        " FROM daily_runs WHERE ?1 IS NULL OR date = ?1 ORDER BY date DESC LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    memset(d, 0, sizeof(*d));
    if (st == NULL)
        return -1;
    if (date)
        sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "daily run lookup", err);
    if (found < 0)
        return -1;
    if (found) {
        snprintf(d->date, sizeof(d->date), "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(d->status, sizeof(d->status), "%s", (const char *)sqlite3_column_text(st, 1));
        d->started_at = sqlite3_column_int64(st, 2);
        d->finished_at = sqlite3_column_int64(st, 3);
        d->attempts = sqlite3_column_int(st, 4);
        d->ran = sqlite3_column_int(st, 5);
        d->manifest_written = sqlite3_column_int(st, 6);
        d->offsite_verified = sqlite3_column_int(st, 7);
        d->db_status = catalog_column_dup(st, 8);
        d->files_status = catalog_column_dup(st, 9);
        d->catalog_status = catalog_column_dup(st, 10);
        d->error = catalog_column_dup(st, 11);
    }
    sqlite3_reset(st);
    return found;
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
    static const char q[] = "SELECT max(date) FROM daily_runs WHERE status = 'ok'";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found = 0;

    out[0] = '\0';
    if (st == NULL)
        return -1;
    if (catalog_step(cat, st, "last daily run", err) < 0)
        return -1;
    if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
        snprintf(out, 11, "%s", (const char *)sqlite3_column_text(st, 0));
        found = 1;
    }
    sqlite3_reset(st);
    return found;
}

int64_t catalog_daily_last_success_at(struct catalog *cat)
{
    static const char q[] =
        "SELECT coalesce(max(finished_at), 0) FROM daily_runs WHERE status = 'ok'";
    sqlite3_stmt *st = catalog_stmt(cat, q, NULL);
    int64_t at = 0;

    if (st == NULL)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        at = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return at;
}

int catalog_artifact_record(struct catalog *cat, const struct catalog_artifact *a, int64_t now,
                            struct cst_err *err)
{
    static const char q[] =
        "INSERT OR REPLACE INTO artifacts (date, kind, remote_key, sealed, plain_sha256,"
        " plain_size, stored_sha256, stored_size, created_at) VALUES (?,?,?,?,?,?,?,?,?)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, a->date, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->remote_key, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, a->sealed);
    sqlite3_bind_blob(st, 5, a->plain_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, a->plain_size);
    sqlite3_bind_blob(st, 7, a->stored_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, a->stored_size);
    sqlite3_bind_int64(st, 9, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record artifact");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_artifact_copy(struct catalog *cat, const char *date, const char *kind, const char *dest,
                          int64_t now, struct cst_err *err)
{
    static const char q[] = "INSERT OR REPLACE INTO artifact_copies (date, kind, dest, "
                            "verified_at) VALUES (?,?,?,?)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record artifact copy");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_artifact_get(struct catalog *cat, const char *date, const char *kind,
                         struct catalog_artifact *a, struct cst_err *err)
{
    static const char q[] =
        "SELECT remote_key, sealed, plain_sha256, plain_size, stored_sha256, stored_size"
        " FROM artifacts WHERE date = ? AND kind = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    memset(a, 0, sizeof(*a));
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "artifact lookup", err);
    if (found < 0)
        return -1;
    if (found) {
        snprintf(a->date, sizeof(a->date), "%s", date);
        snprintf(a->kind, sizeof(a->kind), "%s", kind);
        a->remote_key = catalog_column_dup(st, 0);
        a->sealed = sqlite3_column_int(st, 1);
        if (sqlite3_column_bytes(st, 2) == 32)
            memcpy(a->plain_sha256, sqlite3_column_blob(st, 2), 32);
        a->plain_size = sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) == 32)
            memcpy(a->stored_sha256, sqlite3_column_blob(st, 4), 32);
        a->stored_size = sqlite3_column_int64(st, 5);
    }
    sqlite3_reset(st);
    return found;
}

int catalog_artifact_has_copy(struct catalog *cat, const char *date, const char *kind,
                              const char *dest, struct cst_err *err)
{
    static const char q[] =
        "SELECT 1 FROM artifact_copies WHERE date = ? AND kind = ? AND dest = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, dest, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "artifact copy lookup", err);
    if (found >= 0)
        sqlite3_reset(st);
    return found;
}

int catalog_backup_to(struct catalog *cat, const char *path, struct cst_err *err)
{
    sqlite3 *dst = NULL;
    sqlite3_backup *b;
    int rc;

    if (sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        cst_err_set(err, "cannot create catalog copy %s: %s", path,
                    dst ? sqlite3_errmsg(dst) : "out of memory");
        sqlite3_close(dst);
        return -1;
    }
    b = sqlite3_backup_init(dst, "main", cat->db, "main");
    if (b == NULL) {
        cst_err_set(err, "cannot copy catalog %s: %s", cat->path, sqlite3_errmsg(dst));
        sqlite3_close(dst);
        return -1;
    }
    /* In steps, so the agent's own writes are not held up for the whole copy. */
    do {
        rc = sqlite3_backup_step(b, 256);
        if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
            sqlite3_sleep(20);
    } while (rc == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) {
        cst_err_set(err, "copy of catalog %s failed: %s", cat->path, sqlite3_errstr(rc));
        sqlite3_close(dst);
        return -1;
    }
    if (sqlite3_close(dst) != SQLITE_OK)
        return cst_err_set(err, "cannot close catalog copy %s", path);
    return 0;
}
