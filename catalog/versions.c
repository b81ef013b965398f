/*
 * versions.c - versions of paths, the objects that hold their content, and
 * the copies of those objects on each destination.
 *
 * A version row is only ever written together with the verified copies of
 * its object (see the shipper), so "a version exists" means "it can be
 * restored". Deletion is a tombstone (deleted_at); nothing is removed.
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

#define VERSION_COLS                                                                               \
    "v.id, v.path_id, p.path, v.kind, v.size, v.mtime_ns, v.inode, v.sha256, v.object_id, "        \
    "v.link_target, v.first_seen, v.shipped_at, v.deleted_at"

static void read_version(sqlite3_stmt *st, struct catalog_version *v)
{
    const void *sha;

    memset(v, 0, sizeof(*v));
    v->id = sqlite3_column_int64(st, 0);
    v->path_id = sqlite3_column_int64(st, 1);
    v->path = catalog_column_dup(st, 2);
    v->kind = strcmp((const char *)sqlite3_column_text(st, 3), "symlink") == 0 ? CATALOG_SYMLINK
                                                                               : CATALOG_FILE;
    v->size = sqlite3_column_int64(st, 4);
    v->mtime_ns = sqlite3_column_int64(st, 5);
    v->inode = sqlite3_column_int64(st, 6);
    sha = sqlite3_column_blob(st, 7);
    if (sha && sqlite3_column_bytes(st, 7) == 32)
        memcpy(v->sha256, sha, 32);
    if (sqlite3_column_type(st, 8) != SQLITE_NULL)
        snprintf(v->object_id, sizeof(v->object_id), "%s",
                 (const char *)sqlite3_column_text(st, 8));
    v->link_target = catalog_column_dup(st, 9);
    v->first_seen = sqlite3_column_int64(st, 10);
    v->shipped_at = sqlite3_column_int64(st, 11);
    v->deleted_at = sqlite3_column_int64(st, 12);
}

void catalog_version_clear(struct catalog_version *v)
{
    free(v->path);
    free(v->link_target);
    memset(v, 0, sizeof(*v));
}

int catalog_version_at(struct catalog *cat, const char *path, int64_t at, struct catalog_version *v,
                       struct cst_err *err)
{
    static const char q[] = "SELECT " VERSION_COLS " FROM versions v JOIN paths p ON "
                            "p.id = v.path_id WHERE p.path = ?1 AND v.first_seen <= ?2 "
                            "ORDER BY v.first_seen DESC, v.id DESC LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    sqlite3_bind_int64(st, 2, at);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        read_version(st, v);
        sqlite3_reset(st);
        if (at != INT64_MAX && v->deleted_at && v->deleted_at <= at) {
            catalog_version_clear(v);
            return 0;
        }
        return 1;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return catalog_sql_err(cat, err, "version lookup");
    return 0;
}

int catalog_live_version(struct catalog *cat, const char *path, struct catalog_version *v,
                         struct cst_err *err)
{
    int rc = catalog_version_at(cat, path, INT64_MAX, v, err);

    if (rc == 1 && v->deleted_at) {
        catalog_version_clear(v);
        return 0;
    }
    return rc;
}

int catalog_object_get(struct catalog *cat, const char *object_id, struct catalog_object *o,
                       struct cst_err *err)
{
    static const char q[] = "SELECT sha256, plain_size, stored_size, stored_sha256, compressed "
                            "FROM objects WHERE id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "object lookup", err);
    if (found < 0)
        return -1;
    if (found) {
        memset(o, 0, sizeof(*o));
        snprintf(o->id, sizeof(o->id), "%s", object_id);
        if (sqlite3_column_bytes(st, 0) == 32)
            memcpy(o->sha256, sqlite3_column_blob(st, 0), 32);
        o->plain_size = sqlite3_column_int64(st, 1);
        o->stored_size = sqlite3_column_int64(st, 2);
        if (sqlite3_column_bytes(st, 3) == 32)
            memcpy(o->stored_sha256, sqlite3_column_blob(st, 3), 32);
        o->compressed = sqlite3_column_int(st, 4);
    }
    sqlite3_reset(st);
    return found;
}

int catalog_object_known(struct catalog *cat, const char *object_id, struct cst_err *err)
{
    /* The id's own index answers: the row itself is not read. */
    static const char q[] = "SELECT 1 FROM objects WHERE id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "object lookup", err);
    if (found >= 0)
        sqlite3_reset(st);
    return found;
}

int catalog_copy_exists(struct catalog *cat, const char *object_id, const char *dest,
                        struct cst_err *err)
{
    static const char q[] =
        "SELECT 1 FROM copies WHERE object_id = ? AND dest = ? AND damaged_at IS NULL";

    return catalog_row_exists(cat, q, object_id, dest, err);
}

int catalog_copy_key(struct catalog *cat, const char *object_id, const char *dest, char **key,
                     struct cst_err *err)
{
    static const char q[] =
        "SELECT remote_key FROM copies WHERE object_id = ? AND dest = ? AND damaged_at IS NULL";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int found;

    *key = NULL;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    found = catalog_step(cat, st, "copy lookup", err);
    if (found < 0)
        return -1;
    if (found)
        *key = catalog_column_dup(st, 0);
    sqlite3_reset(st);
    return found;
}

int catalog_record_object(struct catalog *cat, const struct catalog_object *o, int64_t now,
                          struct cst_err *err)
{
    /* Content pruned long ago and seen again is alive again. */
    static const char q[] = "INSERT INTO objects (id, sha256, plain_size, stored_size, "
                            "stored_sha256, compressed, created_at) VALUES (?,?,?,?,?,?,?) "
                            "ON CONFLICT (id) DO UPDATE SET deleted_at = NULL";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, o->id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, o->sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, o->plain_size);
    sqlite3_bind_int64(st, 4, o->stored_size);
    sqlite3_bind_blob(st, 5, o->stored_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, o->compressed);
    sqlite3_bind_int64(st, 7, now);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "record object");
    sqlite3_reset(st);
    return 0;
}

int catalog_record_copy(struct catalog *cat, const char *object_id, const char *dest,
                        const char *remote_key, int64_t stored_size,
                        const unsigned char stored_sha256[32], int64_t verified_at,
                        struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO copies (object_id, dest, remote_key, verified_at, stored_size, stored_sha256,"
        " checked_at) VALUES (?1,?2,?3,?4,?5,?6,?4) ON CONFLICT (object_id, dest) DO UPDATE SET "
        "remote_key = excluded.remote_key, verified_at = excluded.verified_at, "
        "stored_size = excluded.stored_size, stored_sha256 = excluded.stored_sha256, "
        "checked_at = excluded.verified_at, damaged_at = NULL, damage = NULL";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, remote_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, verified_at);
    sqlite3_bind_int64(st, 5, stored_size);
    sqlite3_bind_blob(st, 6, stored_sha256, 32, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "record copy");
    sqlite3_reset(st);
    return 0;
}

int catalog_record_version(struct catalog *cat, const struct catalog_version *v,
                           struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO versions (path_id, kind, size, mtime_ns, inode, sha256, object_id, "
        "link_target, first_seen, shipped_at) VALUES (?,?,?,?,?,?,?,?,?,?)";
    int64_t path_id = catalog_path_id(cat, v->path, 1, err);
    sqlite3_stmt *st;

    if (path_id < 0)
        return -1;
    st = catalog_stmt(cat, q, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, path_id);
    sqlite3_bind_text(st, 2, v->kind == CATALOG_SYMLINK ? "symlink" : "file", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, v->size);
    sqlite3_bind_int64(st, 4, v->mtime_ns);
    sqlite3_bind_int64(st, 5, v->inode);
    if (v->kind == CATALOG_FILE) {
        sqlite3_bind_blob(st, 6, v->sha256, 32, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, v->object_id, -1, SQLITE_STATIC);
    }
    if (v->link_target)
        catalog_bind_path(st, 8, v->link_target);
    sqlite3_bind_int64(st, 9, v->first_seen);
    sqlite3_bind_int64(st, 10, v->shipped_at);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "record version");
    sqlite3_reset(st);
    return 0;
}

/* Bind [lo, hi) to no path at all: ?1 alone then selects. */
static void bind_none(sqlite3_stmt *st, int lo_idx)
{
    sqlite3_bind_blob(st, lo_idx, "", 0, SQLITE_STATIC);
    sqlite3_bind_blob(st, lo_idx + 1, "", 0, SQLITE_STATIC);
}

static int record_delete(struct catalog *cat, const char *path, int below, int64_t at,
                         struct cst_err *err);

int catalog_record_delete(struct catalog *cat, const char *path, int64_t at, struct cst_err *err)
{
    return record_delete(cat, path, 1, at, err);
}

int catalog_record_delete_file(struct catalog *cat, const char *path, int64_t at,
                               struct cst_err *err)
{
    return record_delete(cat, path, 0, at, err);
}

static int record_delete(struct catalog *cat, const char *path, int below, int64_t at,
                         struct cst_err *err)
{
    static const char q[] =
        "UPDATE versions SET deleted_at = ?4 WHERE deleted_at IS NULL AND id IN ("
        " SELECT " NEWEST_OF("p.id") " FROM paths p"
                                     " WHERE p.path = ?1 OR (p.path >= ?2 AND p.path < ?3))";
    static const char q_pending[] =
        "UPDATE pending_versions SET deleted_at = ?4 WHERE deleted_at IS NULL AND path_id IN ("
        " SELECT id FROM paths WHERE path = ?1 OR (path >= ?2 AND path < ?3))";
    /* Nothing is left to ship there; a seal in flight finds its entry gone and is
     * dropped, so a file deleted while it was read never becomes a live version. */
    static const char q_unqueue[] = "DELETE FROM queue WHERE path_id IN (SELECT id FROM paths"
                                    " WHERE path = ?1 OR (path >= ?2 AND path < ?3))";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int changed;

    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    if (below)
        catalog_bind_below(st, 2, path);
    else
        bind_none(st, 2);
    sqlite3_bind_int64(st, 4, at);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "record delete");
    changed = sqlite3_changes(cat->db);
    sqlite3_reset(st);
    /* Versions still waiting for their first copy carry the tombstone with them. */
    st = catalog_stmt(cat, q_pending, err);
    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    if (below)
        catalog_bind_below(st, 2, path);
    else
        bind_none(st, 2);
    sqlite3_bind_int64(st, 4, at);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "record delete");
    changed += sqlite3_changes(cat->db);
    sqlite3_reset(st);
    st = catalog_stmt(cat, q_unqueue, err);
    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    if (below)
        catalog_bind_below(st, 2, path);
    else
        bind_none(st, 2);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "unqueue deleted paths");
    }
    sqlite3_reset(st);
    return changed;
}

int catalog_record_move(struct catalog *cat, const char *from, const char *to, int64_t at,
                        struct cst_err *err)
{
    static const char q_live[] =
        "SELECT " VERSION_COLS " FROM versions v JOIN paths p ON p.id = v.path_id"
        " WHERE v.id IN (SELECT " NEWEST_OF(
            "p2.id") " FROM paths p2"
                     "  WHERE p2.path = ?1 OR (p2.path >= ?2 AND p2.path < ?3))"
                     " AND v.deleted_at IS NULL";
    /* Paths still to ship, or sealed and waiting for a first copy, ship again at `to`. */
    static const char q_queued[] =
        "SELECT p.path FROM queue q JOIN paths p ON p.id = q.path_id"
        " WHERE p.path = ?1 OR (p.path >= ?2 AND p.path < ?3) UNION"
        " SELECT p.path FROM pending_versions pv JOIN paths p ON p.id = pv.path_id"
        " WHERE pv.deleted_at IS NULL AND (p.path = ?1 OR (p.path >= ?2 AND p.path < ?3))";
    static const char q_unqueue[] = "DELETE FROM queue WHERE path_id IN (SELECT id FROM paths"
                                    " WHERE path = ?1 OR (path >= ?2 AND path < ?3))";
    size_t from_len = strlen(from), n = 0, cap = 16;
    struct catalog_version *rows = util_xcalloc(cap, sizeof(*rows));
    char **queued = NULL;
    size_t nq = 0;
    sqlite3_stmt *st = catalog_stmt(cat, q_live, err);
    int rc = -1, step;

    if (st == NULL)
        goto out;
    catalog_bind_path(st, 1, from);
    catalog_bind_below(st, 2, from);
    while ((step = catalog_step(cat, st, "read moved versions", err)) == 1) {
        if (n == cap) {
            cap *= 2;
            rows = util_xrealloc(rows, cap * sizeof(*rows));
        }
        read_version(st, &rows[n++]);
    }
    if (step < 0)
        goto out;
    sqlite3_reset(st);
    st = catalog_stmt(cat, q_queued, err);
    if (st == NULL)
        goto out;
    catalog_bind_path(st, 1, from);
    catalog_bind_below(st, 2, from);
    while ((step = catalog_step(cat, st, "read moved queue entries", err)) == 1) {
        queued = util_xrealloc(queued, (nq + 1) * sizeof(*queued));
        queued[nq++] = catalog_column_dup(st, 0);
    }
    if (step < 0)
        goto out;
    sqlite3_reset(st);

    if (catalog_record_delete(cat, from, at, err) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct catalog_version *v = &rows[i];
        char *dest = util_printf("%s%s", to, v->path + from_len);
        struct stat sb;

        /* The content is known only if the file there is still the one we shipped. */
        if (lstat(dest, &sb) == 0 && (int64_t)sb.st_ino == v->inode &&
            (int64_t)sb.st_size == v->size &&
            (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec == v->mtime_ns &&
            (v->kind == CATALOG_SYMLINK) == (S_ISLNK(sb.st_mode) != 0)) {
            free(v->path);
            v->path = dest;
            v->first_seen = at;
            v->shipped_at = at;
            if (catalog_record_version(cat, v, err) < 0)
                goto out;
        } else {
            if (catalog_queue_path(cat, dest, "moved", at, err) < 0) {
                free(dest);
                goto out;
            }
            free(dest);
        }
    }
    for (size_t i = 0; i < nq; i++) {
        char *dest = util_printf("%s%s", to, queued[i] + from_len);

        rc = catalog_queue_path(cat, dest, "moved", at, err);
        free(dest);
        if (rc < 0)
            goto out;
    }
    /* The old names have nothing left to ship. */
    st = catalog_stmt(cat, q_unqueue, err);
    if (st == NULL)
        goto out;
    catalog_bind_path(st, 1, from);
    catalog_bind_below(st, 2, from);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        rc = catalog_sql_err(cat, err, "unqueue moved paths");
        goto out;
    }
    sqlite3_reset(st);
    rc = (int)n;
out:
    for (size_t i = 0; i < n; i++)
        catalog_version_clear(&rows[i]);
    free(rows);
    for (size_t i = 0; i < nq; i++)
        free(queued[i]);
    free(queued);
    return rc;
}

int catalog_each_version_at(struct catalog *cat, const char *prefix, int64_t at,
                            int (*cb)(void *arg, const struct catalog_version *v), void *arg,
                            struct cst_err *err)
{
    static const char q[] =
        "SELECT " VERSION_COLS " FROM versions v JOIN paths p ON p.id = v.path_id"
        " WHERE v.id = (SELECT v2.id FROM versions v2 WHERE v2.path_id = v.path_id"
        "   AND v2.first_seen <= ?4 ORDER BY v2.first_seen DESC, v2.id DESC LIMIT 1)"
        " AND (v.deleted_at IS NULL OR v.deleted_at > ?4)"
        " AND (?5 OR p.path = ?1 OR (p.path >= ?2 AND p.path < ?3))"
        " ORDER BY p.path";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    size_t n = strlen(prefix);
    char *trimmed = util_xstrdup(prefix);
    if (n > 1 && trimmed[n - 1] == '/')
        trimmed[n - 1] = '\0';
    catalog_bind_path(st, 1, trimmed);
    catalog_bind_below(st, 2, trimmed);
    sqlite3_bind_int64(st, 4, at);
    sqlite3_bind_int(st, 5, prefix[0] == '\0');
    free(trimmed);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct catalog_version v;

        read_version(st, &v);
        rc = cb(arg, &v);
        catalog_version_clear(&v);
        if (rc != 0)
            break;
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "listing versions");
    sqlite3_reset(st);
    return rc;
}

int catalog_each_version_of(struct catalog *cat, const char *path,
                            int (*cb)(void *arg, const struct catalog_version *v), void *arg,
                            struct cst_err *err)
{
    static const char q[] = "SELECT " VERSION_COLS " FROM versions v JOIN paths p ON "
                            "p.id = v.path_id WHERE p.path = ? ORDER BY v.first_seen, v.id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;
    struct catalog_version *all = NULL;
    size_t n = 0;

    if (st == NULL)
        return -1;
    catalog_bind_path(st, 1, path);
    /* Collect first: the callback may run other catalog queries (copies). */
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        all = util_xrealloc(all, (n + 1) * sizeof(*all));
        read_version(st, &all[n++]);
    }
    if (step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "listing history");
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = cb(arg, &all[i]);
        catalog_version_clear(&all[i]);
    }
    free(all);
    return rc;
}

int catalog_each_copy(struct catalog *cat, const char *object_id,
                      int (*cb)(void *arg, const char *dest, const char *remote_key,
                                int64_t verified_at),
                      void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT dest, remote_key, verified_at FROM copies WHERE object_id = ? ORDER BY dest";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_TRANSIENT);
    while (rc == 0 && (step = catalog_step(cat, st, "list copies", err)) == 1)
        rc = cb(arg, (const char *)sqlite3_column_text(st, 0),
                (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
    if (rc == 0 && step < 0)
        return -1;
    sqlite3_reset(st);
    return rc;
}

int catalog_stats(struct catalog *cat, struct catalog_stats *s, struct cst_err *err)
{
    static const char q[] =
        "SELECT (SELECT count(*) FROM paths),"
        " (SELECT count(*) FROM versions v WHERE v.deleted_at IS NULL AND v.id ="
        "   " NEWEST_OF(
            "v.path_id") "),"
                         " (SELECT count(*) FROM versions), (SELECT count(*) FROM objects),"
                         " (SELECT coalesce(sum(stored_size), 0) FROM objects),"
                         " (SELECT coalesce(sum(plain_size), 0) FROM objects), (SELECT count(*) "
                         "FROM copies),"
                         " (SELECT coalesce(max(shipped_at), 0) FROM versions)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    memset(s, 0, sizeof(*s));
    if (st == NULL)
        return -1;
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "stats");
    }
    s->paths = sqlite3_column_int64(st, 0);
    s->live_files = sqlite3_column_int64(st, 1);
    s->versions = sqlite3_column_int64(st, 2);
    s->objects = sqlite3_column_int64(st, 3);
    s->stored_bytes = sqlite3_column_int64(st, 4);
    s->plain_bytes = sqlite3_column_int64(st, 5);
    s->copies = sqlite3_column_int64(st, 6);
    s->last_shipped_at = sqlite3_column_int64(st, 7);
    sqlite3_reset(st);
    return 0;
}

int catalog_dest_stats(struct catalog *cat, const char *dest, int64_t *copies, int64_t *missing,
                       int64_t *last_verified_at, struct cst_err *err)
{
    static const char q[] = "SELECT (SELECT count(*) FROM copies WHERE dest = ?1"
                            "   AND damaged_at IS NULL),"
                            " (SELECT count(*) FROM objects o WHERE NOT EXISTS"
                            "   (SELECT 1 FROM copies c WHERE c.object_id = o.id AND c.dest = ?1"
                            "    AND c.damaged_at IS NULL)),"
                            " (SELECT coalesce(max(verified_at), 0) FROM copies WHERE dest = ?1)";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *copies = *missing = *last_verified_at = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_TRANSIENT);
    if (catalog_step(cat, st, "destination stats", err) < 0)
        return -1;
    *copies = sqlite3_column_int64(st, 0);
    *missing = sqlite3_column_int64(st, 1);
    *last_verified_at = sqlite3_column_int64(st, 2);
    sqlite3_reset(st);
    return 0;
}

int catalog_each_copy_sample(struct catalog *cat, const char *dest, int64_t sample,
                             int (*cb)(void *arg, const char *object_id, const char *dest,
                                       const char *remote_key, int64_t stored_size,
                                       const unsigned char stored_sha256[32]),
                             void *arg, struct cst_err *err)
{
    static const char q[] =
        "SELECT object_id, dest, remote_key, coalesce(stored_size, -1), stored_sha256 FROM copies"
        " WHERE (?1 IS NULL OR dest = ?1) AND damaged_at IS NULL"
        " ORDER BY CASE WHEN ?2 > 0 THEN random() ELSE 0 END, object_id, dest"
        " LIMIT CASE WHEN ?2 > 0 THEN ?2 ELSE -1 END";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    struct row {
        char *object_id, *dest, *key;
        int64_t size;
        unsigned char sha[32];
    } *rows = NULL;
    size_t n = 0;
    int rc = 0, step;

    if (st == NULL)
        return -1;
    if (dest)
        sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, sample);
    /* Collected first: the callback does slow I/O and must not hold the read open. */
    while ((step = catalog_step(cat, st, "list copies", err)) == 1) {
        rows = util_xrealloc(rows, (n + 1) * sizeof(*rows));
        rows[n].object_id = catalog_column_dup(st, 0);
        rows[n].dest = catalog_column_dup(st, 1);
        rows[n].key = catalog_column_dup(st, 2);
        rows[n].size = sqlite3_column_int64(st, 3);
        memset(rows[n].sha, 0, 32);
        if (sqlite3_column_bytes(st, 4) == 32)
            memcpy(rows[n].sha, sqlite3_column_blob(st, 4), 32);
        n++;
    }
    if (step < 0)
        rc = -1; /* err is filled; nothing is checked from a partial list */
    sqlite3_reset(st);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = cb(arg, rows[i].object_id, rows[i].dest, rows[i].key, rows[i].size, rows[i].sha);
        free(rows[i].object_id);
        free(rows[i].dest);
        free(rows[i].key);
    }
    free(rows);
    return rc;
}

static void dir_entry_add(struct catalog_dir_entry **out, size_t *n, size_t *cap,
                          const struct catalog_dir_entry *e)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *out = util_xrealloc(*out, *cap * sizeof(**out));
    }
    (*out)[(*n)++] = *e;
}

int catalog_live_in_dir(struct catalog *cat, const char *dir, size_t max,
                        struct catalog_dir_entry **out, size_t *n, struct cst_err *err)
{
    /* One range of the paths index in path order; a row below a subfolder ends the range
     * there and the next one starts past that subfolder (a skip-scan), so the folder's
     * own rows are read and each subfolder costs one seek, however much it holds. */
    static const char q[] =
        "SELECT p.path, v.kind, v.size, v.mtime_ns, v.inode FROM paths p JOIN versions v"
        " ON v.id = " NEWEST_OF("p.id") " WHERE p.path >= ?1 AND p.path < ?2"
                                        " AND v.deleted_at IS NULL ORDER BY p.path";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    size_t plen = strlen(dir), cap = 0;
    char *lo, *hi;
    int rc = 0, step = SQLITE_DONE, more = 1;

    *out = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    while (plen > 0 && dir[plen - 1] == '/')
        plen--;
    /* lo: "dir/" then past each subfolder; hi: "dir0" ('0' follows '/'). */
    lo = util_xmalloc(plen + 2);
    memcpy(lo, dir, plen);
    lo[plen] = '/';
    lo[plen + 1] = '\0';
    hi = util_xstrdup(lo);
    hi[plen] = '/' + 1;
    plen++;
    while (more) {
        more = 0;
        sqlite3_bind_blob(st, 1, lo, (int)strlen(lo), SQLITE_TRANSIENT);
        sqlite3_bind_blob(st, 2, hi, (int)strlen(hi), SQLITE_TRANSIENT);
        while ((step = sqlite3_step(st)) == SQLITE_ROW) {
            if (*n == max) {
                rc = 1; /* more than the caller will hold */
                break;
            }
            const char *path = sqlite3_column_blob(st, 0);
            size_t len = (size_t)sqlite3_column_bytes(st, 0);
            const char *name = path + plen, *slash;
            struct catalog_dir_entry e = {0};
            size_t name_len;

            if (len <= plen)
                continue; /* "dir/" itself: not a name */
            slash = memchr(name, '/', len - plen);
            name_len = slash ? (size_t)(slash - name) : len - plen;
            e.name = util_xmalloc(name_len + 1);
            memcpy(e.name, name, name_len);
            e.name[name_len] = '\0';
            if (slash) {
                e.subtree = 1;
                dir_entry_add(out, n, &cap, &e);
                /* Next: past "dir/name/" ('0' follows '/'). */
                free(lo);
                lo = util_xmalloc((size_t)(slash - path) + 2);
                memcpy(lo, path, (size_t)(slash - path));
                lo[slash - path] = '/' + 1;
                lo[slash - path + 1] = '\0';
                more = 1;
                break;
            }
            e.kind = strcmp((const char *)sqlite3_column_text(st, 1), "symlink") == 0
                         ? CATALOG_SYMLINK
                         : CATALOG_FILE;
            e.size = sqlite3_column_int64(st, 2);
            e.mtime_ns = sqlite3_column_int64(st, 3);
            e.inode = sqlite3_column_int64(st, 4);
            dir_entry_add(out, n, &cap, &e);
        }
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = catalog_sql_err(cat, err, "listing a folder's versions");
            more = 0;
        }
        if (rc != 0)
            more = 0;
        sqlite3_reset(st);
    }
    free(lo);
    free(hi);
    if (rc != 0) {
        catalog_dir_entries_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

void catalog_dir_entries_free(struct catalog_dir_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].name);
    free(e);
}
