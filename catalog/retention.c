/*
 * retention.c - the catalog's side of the seven-year lifecycle: legal holds,
 * the retention planner's input (agent/prune_plan.h), and the records of what
 * pruning removed. Nothing is ever deleted from the catalog: a pruned object
 * is marked, a removed copy moves to pruned_copies with the audit row that
 * removed it, so `catalog history` and an auditor still see it for seven
 * years and more.
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

/* --- legal holds --- */

int catalog_hold_add(struct catalog *cat, const struct catalog_hold *h, int64_t *id,
                     struct cst_err *err)
{
    static const char q[] = "INSERT INTO holds (kind, value, reason, created_at, created_by)"
                            " VALUES (?, ?, ?, ?, ?)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, h->kind, -1, SQLITE_STATIC);
    if (h->value)
        sqlite3_bind_text(st, 2, h->value, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, h->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, h->created_at);
    sqlite3_bind_text(st, 5, h->created_by, -1, SQLITE_STATIC);
    if (step_done(cat, st, "add a hold", err) < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(cat->db);
    return 0;
}

int catalog_hold_release(struct catalog *cat, int64_t id, const char *by, const char *reason,
                         int64_t now, struct cst_err *err)
{
    static const char q[] = "UPDATE holds SET released_at = ?2, released_by = ?3,"
                            " release_reason = ?4 WHERE id = ?1 AND released_at IS NULL";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, by, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
    if (step_done(cat, st, "release a hold", err) < 0)
        return -1;
    return sqlite3_changes(cat->db) == 1;
}

int catalog_each_hold(struct catalog *cat, int active_only,
                      int (*cb)(void *arg, const struct catalog_hold *h), void *arg,
                      struct cst_err *err)
{
    static const char q[] =
        "SELECT id, kind, value, reason, created_at, created_by, coalesce(released_at, 0),"
        " released_by, release_reason FROM holds WHERE NOT ?1 OR released_at IS NULL ORDER BY id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    struct catalog_hold *rows = NULL;
    size_t n = 0;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    sqlite3_bind_int(st, 1, active_only);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct catalog_hold *h;

        rows = util_xrealloc(rows, (n + 1) * sizeof(*rows));
        h = &rows[n++];
        h->id = sqlite3_column_int64(st, 0);
        h->kind = catalog_column_dup(st, 1);
        h->value = catalog_column_dup(st, 2);
        h->reason = catalog_column_dup(st, 3);
        h->created_at = sqlite3_column_int64(st, 4);
        h->created_by = catalog_column_dup(st, 5);
        h->released_at = sqlite3_column_int64(st, 6);
        h->released_by = catalog_column_dup(st, 7);
        h->release_reason = catalog_column_dup(st, 8);
    }
    sqlite3_reset(st);
    if (step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list holds");
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = cb(arg, &rows[i]);
        free(rows[i].kind);
        free(rows[i].value);
        free(rows[i].reason);
        free(rows[i].created_by);
        free(rows[i].released_by);
        free(rows[i].release_reason);
    }
    free(rows);
    return rc;
}

/* --- the planner's input: streamed, so that a million versions cost no more than
 * their arrays in the caller --- */

int catalog_plan_objects(struct catalog *cat, int (*cb)(void *arg, const char *id), void *arg,
                         struct cst_err *err)
{
    static const char q[] = "SELECT id FROM objects WHERE deleted_at IS NULL ORDER BY id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, (const char *)sqlite3_column_text(st, 0));
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list objects");
    sqlite3_reset(st);
    return rc;
}

int catalog_plan_versions(struct catalog *cat,
                          int (*cb)(void *arg, const char *object_id, const char *path,
                                    int64_t captured_at, int64_t deleted_at),
                          void *arg, struct cst_err *err)
{
    /* Versions waiting for their first copy count as live ones of their files. */
    static const char q[] =
        "SELECT v.object_id, p.path, v.first_seen, coalesce(v.deleted_at, 0) FROM versions v"
        " JOIN paths p ON p.id = v.path_id JOIN objects o ON o.id = v.object_id"
        " WHERE o.deleted_at IS NULL UNION ALL"
        " SELECT pv.object_id, p.path, pv.first_seen, coalesce(pv.deleted_at, 0)"
        " FROM pending_versions pv JOIN paths p ON p.id = pv.path_id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        char *path = catalog_column_dup(st, 1);

        rc = cb(arg, (const char *)sqlite3_column_text(st, 0), path, sqlite3_column_int64(st, 2),
                sqlite3_column_int64(st, 3));
        free(path);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list versions");
    sqlite3_reset(st);
    return rc;
}

int catalog_plan_copies(struct catalog *cat,
                        int (*cb)(void *arg, const char *object_id, const char *dest,
                                  const char *remote_key, const char *tier, int good,
                                  int64_t locked_until),
                        void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT c.object_id, c.dest, c.remote_key, c.tier, c.damaged_at IS NULL,"
        " coalesce(c.locked_until, 0)"
        " FROM copies c JOIN objects o ON o.id = c.object_id WHERE o.deleted_at IS NULL";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, (const char *)sqlite3_column_text(st, 0),
                (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
                (const char *)sqlite3_column_text(st, 3), sqlite3_column_int(st, 4),
                sqlite3_column_int64(st, 5));
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list copies");
    sqlite3_reset(st);
    return rc;
}

int catalog_plan_points(struct catalog *cat, int (*cb)(void *arg, const char *date, int64_t at),
                        void *arg, struct cst_err *err)
{
    /* A date is a restore point once an attempt for it succeeded; it stands for the
     * files live when its first successful attempt took its list. */
    static const char q[] = "SELECT date, min(started_at) FROM daily_attempts WHERE status = 'ok'"
                            " AND pruned_at IS NULL GROUP BY date ORDER BY date";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list restore points");
    sqlite3_reset(st);
    return rc;
}

int catalog_plan_snapshots(struct catalog *cat,
                           int (*cb)(void *arg, int64_t id, const char *label, int64_t closed_at,
                                     int64_t start, int64_t end),
                           void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT id, label, coalesce(closed_at, created_at), coalesce(period_start, 0),"
        " coalesce(period_end, 0) FROM snapshots WHERE pruned_at IS NULL ORDER BY id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
                sqlite3_column_int64(st, 4));
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list snapshots");
    sqlite3_reset(st);
    return rc;
}

int catalog_plan_snapshot_objects(struct catalog *cat,
                                  int (*cb)(void *arg, int64_t snapshot_id, const char *object_id),
                                  void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT sv.snapshot_id, v.object_id FROM snapshot_versions sv"
        " JOIN versions v ON v.id = sv.version_id JOIN snapshots s ON s.id = sv.snapshot_id"
        " WHERE s.pruned_at IS NULL AND v.object_id IS NOT NULL";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1));
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list what snapshots hold");
    sqlite3_reset(st);
    return rc;
}

/* --- carrying the plan out --- */

int catalog_prune_pending_add(struct catalog *cat, const char *what, const char *id,
                              const char *dest, const char *remote_key, int64_t audit_id,
                              struct cst_err *err)
{
    static const char q[] = "INSERT OR IGNORE INTO prune_pending (what, id, dest, remote_key,"
                            " audit_id) VALUES (?, ?, ?, ?, ?)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, what, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, remote_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, audit_id);
    return step_done(cat, st, "record a deletion in progress", err);
}

int64_t catalog_prune_pending_get(struct catalog *cat, const char *what, const char *id,
                                  const char *dest, const char *remote_key, struct cst_err *err)
{
    static const char q[] = "SELECT audit_id FROM prune_pending WHERE what = ? AND id = ? AND"
                            " dest = ? AND remote_key = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int64_t audit = 0;
    int rc;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, what, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, remote_key, -1, SQLITE_STATIC);
    rc = catalog_step(cat, st, "find a deletion in progress", err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        audit = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return audit;
}

int catalog_prune_pending_done(struct catalog *cat, const char *what, const char *id,
                               const char *dest, const char *remote_key, struct cst_err *err)
{
    static const char q[] = "DELETE FROM prune_pending WHERE what = ? AND id = ? AND dest = ? AND"
                            " remote_key = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, what, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, remote_key, -1, SQLITE_STATIC);
    return step_done(cat, st, "finish a deletion", err);
}

int catalog_copy_pruned(struct catalog *cat, const char *object_id, const char *dest,
                        const char *rule, int64_t audit_id, int64_t now, struct cst_err *err)
{
    static const char q_move[] =
        "INSERT INTO pruned_copies (object_id, dest, remote_key, verified_at, pruned_at, rule,"
        " audit_id) SELECT object_id, dest, remote_key, verified_at, ?3, ?4, ?5 FROM copies"
        " WHERE object_id = ?1 AND dest = ?2";
    static const char q_del[] = "DELETE FROM copies WHERE object_id = ?1 AND dest = ?2";
    static const char q_unqueue[] = "DELETE FROM copy_queue WHERE object_id = ?1 AND dest = ?2";
    const char *steps[] = {q_move, q_del, q_unqueue};

    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *st = catalog_stmt(cat, steps[i], err);

        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
        if (i == 0) {
            sqlite3_bind_int64(st, 3, now);
            sqlite3_bind_text(st, 4, rule, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 5, audit_id);
        }
        if (step_done(cat, st, "record a removed copy", err) < 0)
            return -1;
    }
    return 0;
}

int catalog_dest_exempt_add(struct catalog *cat, const char *object_id, const char *dest,
                            int64_t now, struct cst_err *err)
{
    static const char q[] =
        "INSERT OR IGNORE INTO dest_exempt (object_id, dest, since) VALUES (?, ?, ?)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    return step_done(cat, st, "exempt a destination", err);
}

int catalog_object_pruned(struct catalog *cat, const char *object_id, int64_t now,
                          struct cst_err *err)
{
    static const char q[] = "UPDATE objects SET deleted_at = ?2 WHERE id = ?1";
    static const char q_unqueue[] = "DELETE FROM copy_queue WHERE object_id = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if (step_done(cat, st, "mark an object pruned", err) < 0)
        return -1;
    st = catalog_stmt(cat, q_unqueue, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    return step_done(cat, st, "unqueue a pruned object", err);
}

int catalog_point_pruned(struct catalog *cat, const char *date, int64_t now, struct cst_err *err)
{
    static const char q[] = "UPDATE daily_attempts SET pruned_at = ?2 WHERE date = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    return step_done(cat, st, "mark a restore point pruned", err);
}

int catalog_snapshot_pruned(struct catalog *cat, int64_t id, int64_t now, struct cst_err *err)
{
    static const char q[] = "UPDATE snapshots SET pruned_at = ?2 WHERE id = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    return step_done(cat, st, "mark a snapshot pruned", err);
}

int catalog_each_point_key(struct catalog *cat, const char *date,
                           int (*cb)(void *arg, const char *remote_key, const char *dest),
                           void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT a.remote_key, c.dest FROM artifacts a JOIN artifact_copies c ON c.date = a.date"
        " AND c.attempt = a.attempt AND c.kind = a.kind WHERE a.date = ? ORDER BY 1, 2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    char **keys = NULL, **dests = NULL;
    size_t n = 0;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, date, -1, SQLITE_STATIC);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        keys = util_xrealloc(keys, (n + 1) * sizeof(char *));
        dests = util_xrealloc(dests, (n + 1) * sizeof(char *));
        keys[n] = catalog_column_dup(st, 0);
        dests[n++] = catalog_column_dup(st, 1);
    }
    sqlite3_reset(st);
    if (step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list a restore point's artifacts");
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = cb(arg, keys[i], dests[i]);
        free(keys[i]);
        free(dests[i]);
    }
    free(keys);
    free(dests);
    return rc;
}

int catalog_exempt_has(struct catalog *cat, const char *object_id, const char *dest,
                       struct cst_err *err)
{
    static const char q[] = "SELECT 1 FROM dest_exempt WHERE object_id = ? AND dest = ?";

    return catalog_row_exists(cat, q, object_id, dest, err);
}

int catalog_exempt_clear(struct catalog *cat, const char *object_id, struct cst_err *err)
{
    static const char q[] = "DELETE FROM dest_exempt WHERE object_id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    return step_done(cat, st, "end an object's exemptions", err);
}

int catalog_prune_run_begin(struct catalog *cat, int64_t now, int64_t as_of, int confirmed,
                            int64_t *id, struct cst_err *err)
{
    static const char q[] = "INSERT INTO prune_runs (started_at, as_of, confirmed, status)"
                            " VALUES (?, ?, ?, 'running')";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, as_of);
    sqlite3_bind_int(st, 3, confirmed);
    if (step_done(cat, st, "record a prune run", err) < 0)
        return -1;
    *id = sqlite3_last_insert_rowid(cat->db);
    return 0;
}

int catalog_prune_run_end(struct catalog *cat, int64_t id, const char *status, int64_t deleted,
                          int64_t kept, const char *error, int64_t now, struct cst_err *err)
{
    static const char q[] = "UPDATE prune_runs SET finished_at = ?2, status = ?3, deleted = ?4,"
                            " kept = ?5, error = ?6 WHERE id = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, deleted);
    sqlite3_bind_int64(st, 5, kept);
    if (error)
        sqlite3_bind_text(st, 6, error, -1, SQLITE_TRANSIENT);
    return step_done(cat, st, "finish a prune run", err);
}

int catalog_prune_run_last(struct catalog *cat, struct catalog_prune_run *r, struct cst_err *err)
{
    static const char q[] =
        "SELECT id, started_at, coalesce(finished_at, 0), as_of, confirmed, status, deleted, kept,"
        " error FROM prune_runs WHERE confirmed ORDER BY id DESC LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    memset(r, 0, sizeof(*r));
    if (st == NULL)
        return -1;
    rc = catalog_step(cat, st, "last prune run", err);
    if (rc == 1) {
        r->id = sqlite3_column_int64(st, 0);
        r->started_at = sqlite3_column_int64(st, 1);
        r->finished_at = sqlite3_column_int64(st, 2);
        r->as_of = sqlite3_column_int64(st, 3);
        r->confirmed = sqlite3_column_int(st, 4);
        snprintf(r->status, sizeof(r->status), "%s", (const char *)sqlite3_column_text(st, 5));
        r->deleted = sqlite3_column_int64(st, 6);
        r->kept = sqlite3_column_int64(st, 7);
        r->error = catalog_column_dup(st, 8);
    }
    if (rc >= 0)
        sqlite3_reset(st);
    return rc;
}

int catalog_pruned_copy_has(struct catalog *cat, const char *object_id, const char *dest,
                            struct cst_err *err)
{
    static const char q[] = "SELECT 1 FROM pruned_copies WHERE object_id = ? AND dest = ?";

    return catalog_row_exists(cat, q, object_id, dest, err);
}

int catalog_each_pruned_copy(struct catalog *cat, const char *object_id,
                             int (*cb)(void *arg, const char *dest, const char *key,
                                       int64_t pruned_at, const char *rule, int64_t audit_id),
                             void *arg, struct cst_err *err)
{
    static const char q[] = "SELECT dest, remote_key, pruned_at, rule, coalesce(audit_id, 0)"
                            " FROM pruned_copies WHERE object_id = ? ORDER BY pruned_at, dest";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step = SQLITE_DONE;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_TRANSIENT);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, (const char *)sqlite3_column_text(st, 0),
                (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2),
                (const char *)sqlite3_column_text(st, 3), sqlite3_column_int64(st, 4));
    if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW)
        rc = catalog_sql_err(cat, err, "list removed copies");
    sqlite3_reset(st);
    return rc;
}

int catalog_artifacts_lacking(struct catalog *cat, const char *dest,
                              int (*cb)(void *arg, const struct catalog_artifact *a,
                                        const char *from),
                              void *arg, struct cst_err *err)
{
    /* Artifacts of points not pruned that some other destination holds and dest does not. */
    static const char q[] =
        "SELECT a.date, a.attempt, a.kind, a.remote_key, a.sealed, a.stored_sha256,"
        " a.stored_size, (SELECT c.dest FROM artifact_copies c WHERE c.date = a.date AND"
        "   c.attempt = a.attempt AND c.kind = a.kind AND c.dest <> ?1 LIMIT 1)"
        " FROM artifacts a JOIN daily_attempts t ON t.date = a.date AND t.attempt = a.attempt"
        " WHERE t.pruned_at IS NULL AND NOT EXISTS (SELECT 1 FROM artifact_copies c"
        "   WHERE c.date = a.date AND c.attempt = a.attempt AND c.kind = a.kind AND c.dest = ?1)"
        " AND EXISTS (SELECT 1 FROM artifact_copies c WHERE c.date = a.date AND"
        "   c.attempt = a.attempt AND c.kind = a.kind)"
        " ORDER BY a.date, a.attempt, a.kind";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    struct catalog_artifact *rows = NULL;
    char **from = NULL;
    size_t n = 0;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_TRANSIENT);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct catalog_artifact *a;

        rows = util_xrealloc(rows, (n + 1) * sizeof(*rows));
        from = util_xrealloc(from, (n + 1) * sizeof(char *));
        a = &rows[n];
        memset(a, 0, sizeof(*a));
        snprintf(a->date, sizeof(a->date), "%s", (const char *)sqlite3_column_text(st, 0));
        a->attempt = sqlite3_column_int(st, 1);
        snprintf(a->kind, sizeof(a->kind), "%s", (const char *)sqlite3_column_text(st, 2));
        a->remote_key = catalog_column_dup(st, 3);
        a->sealed = sqlite3_column_int(st, 4);
        if (sqlite3_column_bytes(st, 5) == 32)
            memcpy(a->stored_sha256, sqlite3_column_blob(st, 5), 32);
        a->stored_size = sqlite3_column_int64(st, 6);
        from[n++] = catalog_column_dup(st, 7);
    }
    sqlite3_reset(st);
    if (step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list artifacts a destination lacks");
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = cb(arg, &rows[i], from[i]);
        free(rows[i].remote_key);
        free(from[i]);
    }
    free(rows);
    free(from);
    return rc;
}
