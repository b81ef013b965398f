/*
 * locks.c - Object Lock retentions of copies, and the queue of retentions to
 * extend (lock_extend, migration 8).
 *
 * A copy on an object-locked destination is locked until its object's own
 * deletion date: its newest version's capture + delete_after_months (the
 * retention planner's rule, so that prune and the lock agree). Content that
 * comes back in a new version needs a later date than the stored copy shows:
 * the shipper extends the retention of the stored version in place, and the
 * new version counts as shipped only once every such extension is done
 * (catalog_pending_promote waits while a lock_extend row exists).
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static int step_done(struct catalog *cat, sqlite3_stmt *st, const char *what, struct cst_err *err)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return catalog_sql_err(cat, err, what);
    return 0;
}

int catalog_object_newest_capture(struct catalog *cat, const char *object_id, int64_t *at,
                                  struct cst_err *err)
{
    static const char q[] =
        "SELECT max(t) FROM (SELECT max(first_seen) AS t FROM versions WHERE object_id = ?1"
        " UNION ALL SELECT max(first_seen) FROM pending_versions WHERE object_id = ?1)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    *at = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "read the captures of an object", err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        *at = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

/* One integer column of a good copy (0 when NULL). 1 found, 0 no such copy, -1 with err. */
static int copy_int(struct catalog *cat, const char *q, const char *object_id, const char *dest,
                    const char *what, int64_t *out, struct cst_err *err)
{
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    *out = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, what, err);
    if (rc == 1)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc;
}

int catalog_copy_locked_until(struct catalog *cat, const char *object_id, const char *dest,
                              int64_t *until, struct cst_err *err)
{
    return copy_int(cat,
                    "SELECT coalesce(locked_until, 0) FROM copies WHERE object_id = ?1"
                    " AND dest = ?2 AND damaged_at IS NULL",
                    object_id, dest, "read the lock of a copy", until, err);
}

int catalog_copy_verified_at(struct catalog *cat, const char *object_id, const char *dest,
                             int64_t *at, struct cst_err *err)
{
    return copy_int(cat,
                    "SELECT coalesce(verified_at, 0) FROM copies WHERE object_id = ?1"
                    " AND dest = ?2 AND damaged_at IS NULL",
                    object_id, dest, "read when a copy was made", at, err);
}

int catalog_copy_set_lock(struct catalog *cat, const char *object_id, const char *dest,
                          int64_t until, struct cst_err *err)
{
    static const char q[] =
        "UPDATE copies SET locked_until = ?3 WHERE object_id = ?1 AND dest = ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    if (until > 0)
        sqlite3_bind_int64(st, 3, until);
    else
        sqlite3_bind_null(st, 3);
    return step_done(cat, st, "record the lock of a copy", err);
}

int catalog_lock_extend_add(struct catalog *cat, const char *object_id, const char *dest,
                            int64_t until, int64_t now, struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO lock_extend (object_id, dest, until, queued_at, ready_at) VALUES"
        " (?1, ?2, ?3, ?4, ?4) ON CONFLICT (object_id, dest) DO UPDATE SET"
        " until = max(until, excluded.until)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, until);
    sqlite3_bind_int64(st, 4, now);
    return step_done(cat, st, "queue a lock extension", err);
}

int catalog_lock_extend_ready(struct catalog *cat, const char *dest, int64_t now, size_t limit,
                              int (*skip)(void *arg, const char *object_id), void *arg,
                              struct catalog_lock_item **items, size_t *n, struct cst_err *err)
{
    static const char q[] =
        "SELECT l.object_id, l.until, c.remote_key, c.stored_size FROM lock_extend l"
        " JOIN copies c ON c.object_id = l.object_id AND c.dest = l.dest"
        " WHERE l.dest = ?1 AND l.ready_at <= ?2 ORDER BY l.ready_at, l.object_id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    struct catalog_lock_item *out;
    size_t count = 0;
    int rc = SQLITE_DONE;

    *items = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    out = util_xcalloc(limit ? limit : 1, sizeof(*out));
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        struct catalog_lock_item *it = &out[count];

        if (skip && skip(arg, id))
            continue;
        snprintf(it->object_id, sizeof(it->object_id), "%s", id);
        it->until = sqlite3_column_int64(st, 1);
        it->remote_key = catalog_column_dup(st, 2);
        it->stored_size = sqlite3_column_int64(st, 3);
        count++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        catalog_lock_items_free(out, count);
        return catalog_sql_err(cat, err, "read the lock extensions");
    }
    *items = out;
    *n = count;
    return 0;
}

void catalog_lock_items_free(struct catalog_lock_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].remote_key);
    free(items);
}

int catalog_lock_extend_done(struct catalog *cat, const char *object_id, const char *dest,
                             int64_t until, int64_t shows, struct cst_err *err)
{
    /* A later date asked for meanwhile keeps the row (it is done next). */
    static const char q[] =
        "DELETE FROM lock_extend WHERE object_id = ?1 AND dest = ?2 AND until <= ?3";

    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, until);
    if (step_done(cat, st, "finish a lock extension", err) < 0)
        return -1;
    return catalog_copy_set_lock(cat, object_id, dest, shows, err);
}

int catalog_lock_extend_retry(struct catalog *cat, const char *object_id, const char *dest,
                              int64_t ready_at, const char *why, struct cst_err *err)
{
    static const char q[] = "UPDATE lock_extend SET attempts = attempts + 1, last_error = ?3,"
                            " ready_at = ?4 WHERE object_id = ?1 AND dest = ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, ready_at);
    return step_done(cat, st, "retry a lock extension", err);
}

int catalog_lock_extend_has(struct catalog *cat, const char *object_id, struct cst_err *err)
{
    static const char q[] = "SELECT 1 FROM lock_extend WHERE object_id = ?1 LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "read the lock extensions", err);
    sqlite3_reset(st);
    return rc;
}

int catalog_lock_extend_forget(struct catalog *cat, char *const *configured, size_t n,
                               struct cst_err *err)
{
    static const char q_list[] = "SELECT DISTINCT dest FROM lock_extend";
    static const char q_del[] = "DELETE FROM lock_extend WHERE dest = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q_list, err);
    char **gone = NULL;
    size_t n_gone = 0;
    int rc, failed = 0;

    if (st == NULL)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *dest = (const char *)sqlite3_column_text(st, 0);
        int known = 0;

        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(configured[i], dest) == 0;
        if (!known) {
            gone = util_xrealloc(gone, (n_gone + 1) * sizeof(char *));
            gone[n_gone++] = util_xstrdup(dest);
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        failed = catalog_sql_err(cat, err, "list lock extensions");
    for (size_t i = 0; i < n_gone; i++) {
        /* A destination no longer configured extends nothing: its rows would hold the
         * versions waiting on them forever. */
        if (!failed && (st = catalog_stmt(cat, q_del, err)) != NULL) {
            sqlite3_bind_text(st, 1, gone[i], -1, SQLITE_STATIC);
            failed = step_done(cat, st, "drop lock extensions", err);
        } else if (!failed) {
            failed = -1;
        }
        free(gone[i]);
    }
    free(gone);
    return failed ? -1 : 0;
}

int catalog_lock_extend_next_ready(struct catalog *cat, int64_t after, int64_t *next,
                                   struct cst_err *err)
{
    static const char q[] = "SELECT min(ready_at) FROM lock_extend WHERE ready_at > ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    *next = INT64_MAX;
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, after);
    rc = catalog_step(cat, st, "read the lock extensions", err);
    if (rc == 1 && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *next = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc < 0 ? -1 : 0;
}

int catalog_point_lock_basis(struct catalog *cat, const char *date, int64_t fallback, int64_t *at,
                             int *first_of_month, struct cst_err *err)
{
    /* The point's instant, as the planner takes it (catalog_plan_points): its first
     * successful attempt's start; this attempt's while none has succeeded yet. */
    static const char q_at[] =
        "SELECT min(started_at) FROM daily_attempts WHERE date = ?1 AND status = 'ok'";
    static const char q_first[] =
        "SELECT NOT EXISTS (SELECT 1 FROM daily_attempts WHERE status = 'ok' AND pruned_at IS"
        " NULL AND date <> ?1 AND substr(date, 1, 7) = substr(?1, 1, 7) GROUP BY date"
        " HAVING min(started_at) < ?2)";
    sqlite3_stmt *st = catalog_stmt(cat, q_at, err);
    int rc;

    *at = fallback;
    *first_of_month = 1;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "read a restore point", err);
    if (rc == 1 && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *at = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc < 0)
        return -1;
    st = catalog_stmt(cat, q_first, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, *at);
    rc = catalog_step(cat, st, "read the restore points of a month", err);
    if (rc == 1)
        *first_of_month = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    return rc < 0 ? -1 : 0;
}

int catalog_hold_each_object(struct catalog *cat, const char *kind, const char *value,
                             int64_t before, int (*cb)(void *arg, const char *object_id), void *arg,
                             struct cst_err *err)
{
    /* Every version a hold covers, recorded or still waiting for its first copy, as the
     * planner reads holds (prune_plan.c): a path or anything under it, a billing
     * period's snapshot members, everything captured before an instant, everything. */
#define HOLD_VERSIONS(cond)                                                                        \
    "SELECT DISTINCT object_id FROM (SELECT v.object_id, v.first_seen, p.path, v.id AS vid"        \
    " FROM versions v JOIN paths p ON p.id = v.path_id WHERE v.object_id IS NOT NULL UNION ALL"    \
    " SELECT pv.object_id, pv.first_seen, p.path, NULL FROM pending_versions pv JOIN paths p"      \
    " ON p.id = pv.path_id) WHERE " cond " ORDER BY object_id"
    static const char q_all[] = HOLD_VERSIONS("1");
    static const char q_path[] =
        HOLD_VERSIONS("path = CAST(?1 AS BLOB) OR substr(path, 1, length(CAST(?1 AS BLOB)) + 1)"
                      " = CAST(?1 || '/' AS BLOB)");
    static const char q_before[] = HOLD_VERSIONS("first_seen < ?2");
    static const char q_period[] =
        HOLD_VERSIONS("vid IN (SELECT sv.version_id FROM snapshot_versions sv JOIN snapshots s"
                      " ON s.id = sv.snapshot_id WHERE s.label = ?1)");
#undef HOLD_VERSIONS
    const char *q = strcmp(kind, "path") == 0     ? q_path
                    : strcmp(kind, "before") == 0 ? q_before
                    : strcmp(kind, "period") == 0 ? q_period
                                                  : q_all;
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    if (q == q_path || q == q_period)
        sqlite3_bind_text(st, 1, value ? value : "", -1, SQLITE_STATIC);
    if (q == q_before)
        sqlite3_bind_int64(st, 2, before);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, (const char *)sqlite3_column_text(st, 0));
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list what a hold covers");
    sqlite3_reset(st);
    return rc;
}

int catalog_copy_set_tier(struct catalog *cat, const char *object_id, const char *dest,
                          const char *tier, struct cst_err *err)
{
    static const char q[] = "UPDATE copies SET tier = ?3 WHERE object_id = ?1 AND dest = ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, tier, -1, SQLITE_STATIC);
    return step_done(cat, st, "record the tier of a copy", err);
}

/* --- archive restores (restore_jobs) --- */

static void job_from_row(sqlite3_stmt *st, struct catalog_restore_job *j)
{
    memset(j, 0, sizeof(*j));
    j->id = sqlite3_column_int64(st, 0);
    j->dest = catalog_column_dup(st, 1);
    j->remote_key = catalog_column_dup(st, 2);
    j->what = catalog_column_dup(st, 3);
    j->tier = catalog_column_dup(st, 4);
    j->storage_class = catalog_column_dup(st, 5);
    j->requested_at = sqlite3_column_int64(st, 6);
    j->requested_by = catalog_column_dup(st, 7);
    j->expected_by = sqlite3_column_int64(st, 8);
    j->status = catalog_column_dup(st, 9);
    j->checked_at = sqlite3_column_int64(st, 10);
    j->ready_at = sqlite3_column_int64(st, 11);
}

#define JOB_COLUMNS                                                                                \
    "id, dest, remote_key, what, tier, storage_class, requested_at, requested_by, expected_by,"    \
    " status, coalesce(checked_at, 0), coalesce(ready_at, 0)"

void catalog_restore_job_clear(struct catalog_restore_job *j)
{
    free(j->dest);
    free(j->remote_key);
    free(j->what);
    free(j->tier);
    free(j->storage_class);
    free(j->requested_by);
    free(j->status);
    memset(j, 0, sizeof(*j));
}

int catalog_restore_job_find(struct catalog *cat, const char *dest, const char *remote_key,
                             struct catalog_restore_job *j, struct cst_err *err)
{
    static const char q[] = "SELECT " JOB_COLUMNS " FROM restore_jobs WHERE dest = ?1 AND"
                            " remote_key = ?2 AND status <> 'done' ORDER BY id DESC LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    memset(j, 0, sizeof(*j));
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, remote_key, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "read the restore jobs", err);
    if (rc == 1)
        job_from_row(st, j);
    sqlite3_reset(st);
    return rc;
}

int catalog_restore_job_add(struct catalog *cat, const struct catalog_restore_job *j, int64_t *id,
                            struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO restore_jobs (dest, remote_key, what, tier, storage_class, requested_at,"
        " requested_by, expected_by, status) VALUES (?,?,?,?,?,?,?,?,'pending')";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, j->dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->remote_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, j->what, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, j->tier, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, j->storage_class, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, j->requested_at);
    sqlite3_bind_text(st, 7, j->requested_by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, j->expected_by);
    if (step_done(cat, st, "record a restore job", err) < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(cat->db);
    return 0;
}

int catalog_restore_job_set(struct catalog *cat, int64_t id, const char *status, int64_t now,
                            struct cst_err *err)
{
    static const char q[] =
        "UPDATE restore_jobs SET status = ?2, checked_at = ?3, ready_at = CASE WHEN ?2 <>"
        " 'pending' THEN coalesce(ready_at, ?3) END WHERE id = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    return step_done(cat, st, "update a restore job", err);
}

int catalog_each_restore_job(struct catalog *cat, int all,
                             int (*cb)(void *arg, const struct catalog_restore_job *j), void *arg,
                             struct cst_err *err)
{
    static const char q[] = "SELECT " JOB_COLUMNS " FROM restore_jobs WHERE ?1 OR status <> 'done'"
                            " ORDER BY id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    sqlite3_bind_int(st, 1, all);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        struct catalog_restore_job j;

        job_from_row(st, &j);
        rc = cb(arg, &j);
        catalog_restore_job_clear(&j);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list the restore jobs");
    sqlite3_reset(st);
    return rc;
}
