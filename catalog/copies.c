/*
 * copies.c - replication bookkeeping: the copy queue (one entry per object
 * and destination) and versions waiting for their object's first copy.
 *
 * A sealed object waits in the spool until every destination holds a
 * verified copy; each destination works through its own entries, so one
 * that is down holds up no other. A version is recorded as soon as one
 * verified copy exists (it can then be restored); until then it waits in
 * pending_versions.
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int catalog_copy_queue_add(struct catalog *cat, const char *object_id, const char *dest,
                           const char *spool, int64_t stored_size,
                           const unsigned char stored_sha256[32], int64_t now, struct cst_err *err)
{
    static const char q[] = "INSERT OR IGNORE INTO copy_queue (object_id, dest, spool, "
                            "stored_size, stored_sha256, queued_at, ready_at) "
                            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, spool, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, stored_size);
    sqlite3_bind_blob(st, 5, stored_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "queue copy");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_copy_queue_find(struct catalog *cat, const char *object_id, char **spool,
                            int64_t *stored_size, unsigned char stored_sha256[32],
                            struct cst_err *err)
{
    static const char q[] = "SELECT spool, stored_size, stored_sha256 FROM copy_queue WHERE "
                            "object_id = ? AND spool <> '' LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found = 0, step;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    if ((step = catalog_step(cat, st, "copy queue lookup", err)) < 0)
        return -1;
    if (step == 1 && sqlite3_column_bytes(st, 2) == 32) {
        *spool = catalog_column_dup(st, 0);
        *stored_size = sqlite3_column_int64(st, 1);
        memcpy(stored_sha256, sqlite3_column_blob(st, 2), 32);
        found = 1;
    }
    sqlite3_reset(st);
    return found;
}

int catalog_copy_queue_has(struct catalog *cat, const char *object_id, const char *dest,
                           struct cst_err *err)
{
    static const char q[] = "SELECT 1 FROM copy_queue WHERE object_id = ? AND dest = ?";

    return catalog_row_exists(cat, q, object_id, dest, err);
}

int catalog_copy_queue_ready(struct catalog *cat, const char *dest, int64_t now, size_t limit,
                             int (*skip)(void *arg, const char *object_id), void *arg,
                             struct catalog_copy_item **items, size_t *n, struct cst_err *err)
{
    static const char q[] =
        "SELECT c.object_id, c.spool, c.stored_size, c.stored_sha256, o.plain_size, o.sha256,"
        " c.queued_at, c.attempts FROM copy_queue c JOIN objects o ON o.id = c.object_id"
        " WHERE c.dest = ?1 AND c.ready_at <= ?2 AND c.spool <> '' ORDER BY c.ready_at DESC, "
        "c.object_id DESC"; /* newest first, as the path queue */
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    struct catalog_copy_item *out;
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
        struct catalog_copy_item *it = &out[count];

        if (skip && skip(arg, id))
            continue;
        snprintf(it->object_id, sizeof(it->object_id), "%s", id);
        it->spool = catalog_column_dup(st, 1);
        it->stored_size = sqlite3_column_int64(st, 2);
        if (sqlite3_column_bytes(st, 3) == 32)
            memcpy(it->stored_sha256, sqlite3_column_blob(st, 3), 32);
        it->plain_size = sqlite3_column_int64(st, 4);
        if (sqlite3_column_bytes(st, 5) == 32)
            memcpy(it->plain_sha256, sqlite3_column_blob(st, 5), 32);
        it->queued_at = sqlite3_column_int64(st, 6);
        it->attempts = sqlite3_column_int(st, 7);
        count++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        catalog_copy_items_free(out, count);
        return catalog_sql_err(cat, err, "read copy queue");
    }
    *items = out;
    *n = count;
    return 0;
}

void catalog_copy_items_free(struct catalog_copy_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].spool);
    free(items);
}

int catalog_copy_queue_done(struct catalog *cat, const char *object_id, const char *dest,
                            struct cst_err *err)
{
    static const char q[] = "DELETE FROM copy_queue WHERE object_id = ? AND dest = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "dequeue copy");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_copy_queue_retry(struct catalog *cat, const char *object_id, const char *dest,
                             int64_t delay_ms, const char *kind, const char *why,
                             struct cst_err *err)
{
    static const char q[] =
        "UPDATE copy_queue SET attempts = attempts + 1, error_kind = ?3, last_error = ?4,"
        " ready_at = ?5 WHERE object_id = ?1 AND dest = ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, util_now_ms() + delay_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "requeue copy");
    }
    sqlite3_reset(st);
    return 0;
}

int64_t catalog_copy_queue_count(struct catalog *cat, const char *object_id)
{
    static const char q[] = "SELECT count(*) FROM copy_queue WHERE object_id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, NULL);
    int64_t n = -1;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    /* -1 on error: a caller that deletes a spool file at 0 keeps it. */
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

int catalog_copy_queue_next_ready(struct catalog *cat, const char *dest, int64_t after,
                                  int64_t *next, struct cst_err *err)
{
    /* One destination's: a search of copy_queue_by_dest (the shipper asks on every fill).
     * Every destination's: a scan. */
    static const char q_dest[] =
        "SELECT min(ready_at) FROM copy_queue WHERE dest = ?1 AND ready_at > ?2";
    static const char q_all[] = "SELECT min(ready_at) FROM copy_queue WHERE ready_at > ?2";
    sqlite3_stmt *st = catalog_stmt(cat, dest ? q_dest : q_all, err);

    *next = INT64_MAX;
    if (st == NULL)
        return -1;
    if (dest)
        sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after);
    if (catalog_step(cat, st, "copy queue schedule", err) < 0)
        return -1;
    if (sqlite3_column_type(st, 0) != SQLITE_NULL)
        *next = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

int catalog_copy_queue_stats(struct catalog *cat, const char *dest, int64_t *depth, int64_t *oldest,
                             char **last_error, struct cst_err *err)
{
    static const char q[] =
        "SELECT count(*), coalesce(min(queued_at), 0), (SELECT last_error FROM copy_queue"
        " WHERE dest = ?1 AND last_error IS NOT NULL ORDER BY ready_at DESC LIMIT 1)"
        " FROM copy_queue WHERE dest = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *depth = *oldest = 0;
    *last_error = NULL;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    if (catalog_step(cat, st, "copy queue stats", err) < 0)
        return -1;
    *depth = sqlite3_column_int64(st, 0);
    *oldest = sqlite3_column_int64(st, 1);
    *last_error = catalog_column_dup(st, 2);
    sqlite3_reset(st);
    return 0;
}

int catalog_each_spool_file(struct catalog *cat, int (*cb)(void *arg, const char *spool), void *arg,
                            struct cst_err *err)
{
    static const char q[] = "SELECT DISTINCT spool FROM copy_queue WHERE spool <> ''";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    char **names = NULL;
    size_t n = 0;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    /* Collected first: the callback may write to the catalog. */
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        names = util_xrealloc(names, (n + 1) * sizeof(char *));
        names[n++] = catalog_column_dup(st, 0);
    }
    sqlite3_reset(st);
    if (step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "list spool files");
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = cb(arg, names[i]);
        free(names[i]);
    }
    free(names);
    return rc;
}

int catalog_reseal_object(struct catalog *cat, const char *object_id, int64_t now,
                          struct cst_err *err)
{
    static const char q_paths[] =
        "SELECT p.path FROM pending_versions pv JOIN paths p ON p.id = pv.path_id"
        " WHERE pv.object_id = ?1 UNION"
        " SELECT p.path FROM versions v JOIN paths p ON p.id = v.path_id"
        " WHERE v.object_id = ?1 AND v.deleted_at IS NULL";
    static const char q_drop_copies[] = "DELETE FROM copy_queue WHERE object_id = ?";
    static const char q_drop_pending[] = "DELETE FROM pending_versions WHERE object_id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q_paths, err);
    char **paths = NULL;
    size_t n = 0;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    while ((step = catalog_step(cat, st, "paths of a lost spool file", err)) == 1) {
        paths = util_xrealloc(paths, (n + 1) * sizeof(char *));
        paths[n++] = catalog_column_dup(st, 0);
    }
    if (step < 0)
        rc = -1;
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = catalog_queue_path(cat, paths[i], "reseal", now, err);
        free(paths[i]);
    }
    free(paths);
    if (rc < 0)
        return -1;
    const char *drops[] = {q_drop_copies, q_drop_pending};
    for (int i = 0; i < 2; i++) {
        st = catalog_stmt(cat, drops[i], err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_reset(st);
            return catalog_sql_err(cat, err, "forget lost spool file");
        }
        sqlite3_reset(st);
    }
    return 0;
}

int catalog_pending_add(struct catalog *cat, const struct catalog_version *v, struct cst_err *err)
{
    static const char q[] = "INSERT INTO pending_versions (path_id, size, mtime_ns, inode, "
                            "sha256, object_id, first_seen) VALUES (?,?,?,?,?,?,?)";
    int64_t path_id = catalog_path_id(cat, v->path, 1, err);
    sqlite3_stmt *st;

    if (path_id < 0)
        return -1;
    st = catalog_stmt(cat, q, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, path_id);
    sqlite3_bind_int64(st, 2, v->size);
    sqlite3_bind_int64(st, 3, v->mtime_ns);
    sqlite3_bind_int64(st, 4, v->inode);
    sqlite3_bind_blob(st, 5, v->sha256, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, v->object_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, v->first_seen);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record pending version");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_pending_promote(struct catalog *cat, const char *object_id, int64_t shipped_at,
                            void (*cb)(void *arg, const char *path, int64_t size,
                                       int64_t first_seen),
                            void *arg, struct cst_err *err)
{
    static const char q_list[] =
        "SELECT p.path, pv.size, pv.first_seen FROM pending_versions pv JOIN paths p"
        " ON p.id = pv.path_id WHERE pv.object_id = ?1 ORDER BY pv.id";
    static const char q_ins[] =
        "INSERT INTO versions (path_id, kind, size, mtime_ns, inode, sha256, object_id,"
        " first_seen, shipped_at, deleted_at) SELECT path_id, 'file', size, mtime_ns, inode,"
        " sha256, object_id, first_seen, ?2, deleted_at FROM pending_versions"
        " WHERE object_id = ?1 ORDER BY id";
    static const char q_del[] = "DELETE FROM pending_versions WHERE object_id = ?1";
    sqlite3_stmt *st;
    int n, step;

    /* A copy whose Object Lock must first be extended holds the versions back. */
    n = catalog_lock_extend_has(cat, object_id, err);
    if (n != 0)
        return n < 0 ? -1 : 0;
    if (cb) {
        st = catalog_stmt(cat, q_list, err);
        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
        while ((step = catalog_step(cat, st, "list pending versions", err)) == 1) {
            char *path = catalog_column_dup(st, 0);

            cb(arg, path, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
            free(path);
        }
        if (step < 0)
            return -1;
        sqlite3_reset(st);
    }
    st = catalog_stmt(cat, q_ins, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, shipped_at);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record versions");
    }
    n = sqlite3_changes(cat->db);
    sqlite3_reset(st);
    st = catalog_stmt(cat, q_del, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "clear pending versions");
    }
    sqlite3_reset(st);
    return n;
}

int catalog_pending_stats(struct catalog *cat, int64_t *count, int64_t *oldest_first_seen,
                          struct cst_err *err)
{
    static const char q[] = "SELECT count(*), coalesce(min(first_seen), 0) FROM pending_versions";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *count = *oldest_first_seen = 0;
    if (st == NULL)
        return -1;
    if (catalog_step(cat, st, "pending stats", err) < 0)
        return -1;
    *count = sqlite3_column_int64(st, 0);
    *oldest_first_seen = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
}

int catalog_pending_match(struct catalog *cat, const char *path, int64_t size, int64_t mtime_ns,
                          int64_t inode, const char *object_id, struct cst_err *err)
{
    /* The path first, then its pending versions (pending_by_path). */
    static const char q[] =
        "SELECT 1 FROM paths p JOIN pending_versions pv ON pv.path_id = p.id"
        " WHERE p.path = ?1 AND pv.size = ?2 AND pv.mtime_ns = ?3 AND pv.inode = ?4"
        " AND pv.deleted_at IS NULL AND (?5 IS NULL OR pv.object_id = ?5)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    sqlite3_bind_int64(st, 2, size);
    sqlite3_bind_int64(st, 3, mtime_ns);
    sqlite3_bind_int64(st, 4, inode);
    if (object_id)
        sqlite3_bind_text(st, 5, object_id, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "pending lookup", err);
    if (found >= 0)
        sqlite3_reset(st);
    return found;
}

int catalog_backlog(struct catalog *cat, struct catalog_backlog *b, struct cst_err *err)
{
    static const char q[] = "SELECT (SELECT count(*) FROM queue),"
                            " (SELECT count(*) FROM pending_versions),"
                            " (SELECT count(*) FROM copy_queue)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    memset(b, 0, sizeof(*b));
    if (st == NULL)
        return -1;
    if (catalog_step(cat, st, "backlog", err) < 0)
        return -1;
    b->queued = sqlite3_column_int64(st, 0);
    b->waiting = sqlite3_column_int64(st, 1);
    b->copies = sqlite3_column_int64(st, 2);
    sqlite3_reset(st);
    return 0;
}

int catalog_dest_in_use(struct catalog *cat, const char *dest, char **recorded_key,
                        struct cst_err *err)
{
    /* Once, at start-up: prepared here rather than kept in the statement cache. */
    static const char q[] = "SELECT remote_key FROM copies WHERE dest = ?1"
                            " UNION ALL SELECT remote_key FROM artifact_copies ac"
                            " JOIN artifacts a ON a.date = ac.date AND a.kind = ac.kind"
                            " WHERE ac.dest = ?1 LIMIT 1";
    sqlite3_stmt *st = NULL;
    int rc;

    *recorded_key = NULL;
    if (sqlite3_prepare_v2(cat->db, q, -1, &st, NULL) != SQLITE_OK)
        return catalog_sql_err(cat, err, "cannot read the copies of a destination");
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *recorded_key = catalog_column_dup(st, 0);
        rc = 1;
    } else if (rc == SQLITE_DONE) {
        rc = 0;
    } else {
        rc = catalog_sql_err(cat, err, "cannot read the copies of a destination");
    }
    sqlite3_finalize(st);
    return rc;
}

int catalog_each_pending_below(struct catalog *cat, const char *prefix,
                               int (*cb)(void *arg, const char *path), void *arg,
                               struct cst_err *err)
{
    /* From pending_versions (CROSS JOIN keeps that order): the table is empty or small
     * while copies flow, so this costs next to nothing, where a range of the paths index
     * would read every path below prefix. A path with a live version is left out: the
     * walk has judged it already (and its delete covers the waiting version too). */
    static const char q[] =
        "SELECT DISTINCT p.path FROM pending_versions pv CROSS JOIN paths p ON p.id = pv.path_id"
        " WHERE pv.deleted_at IS NULL AND (p.path = ?1 OR (p.path >= ?2 AND p.path < ?3))"
        " AND NOT EXISTS (SELECT 1 FROM versions v WHERE v.id = " NEWEST_OF(
            "p.id") " AND v.deleted_at IS NULL)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    char **paths = NULL;
    size_t np = 0;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, prefix);
    catalog_bind_below(st, 2, prefix);
    /* Collected first: the callback may write to the catalog. */
    while ((step = catalog_step(cat, st, "list pending versions", err)) == 1) {
        paths = util_xrealloc(paths, (np + 1) * sizeof(*paths));
        paths[np++] = catalog_column_dup(st, 0);
    }
    if (step < 0)
        rc = -1;
    sqlite3_reset(st);
    for (size_t i = 0; i < np; i++) {
        if (rc == 0)
            rc = cb(arg, paths[i]);
        free(paths[i]);
    }
    free(paths);
    return rc;
}
