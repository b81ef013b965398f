/*
 * coverage.c - every configured destination holds every retained object.
 *
 * Coverage is checked, not assumed: a destination added later, a copy that
 * a check found missing or different (damaged), or a queue entry whose
 * destination left the config all show up here. A copy that must be made
 * again is a copy-queue entry with spool '' (its bytes are still to be
 * found: another entry's spool file, another destination's ciphertext, or a
 * fresh seal of the live file); the shipper sources it, then ships it like
 * any other. Damaged copies stay in the table, marked, for the audit trail;
 * they count for nothing (not for dedup, not for restore) until a verified
 * copy replaces them.
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* Objects some version (live, deleted or waiting for its first copy) still refers to. */
#define RETAINED(o)                                                                                \
    "((SELECT deleted_at FROM objects od WHERE od.id = " o ") IS NULL AND (EXISTS (SELECT 1"       \
    " FROM versions v WHERE v.object_id = " o ") OR EXISTS (SELECT 1 FROM pending_versions pv"     \
    " WHERE pv.object_id = " o ")))"
/* No good copy of o on d. */
#define LACKING(o, d)                                                                              \
    "NOT EXISTS (SELECT 1 FROM copies c WHERE c.object_id = " o " AND c.dest = " d                 \
    " AND c.damaged_at IS NULL)"
/* A retained object that d lacks and is not exempt from. The lacking copy is tested first:
 * SQLite tests the terms in this order, and for an object the destination holds (nearly
 * all of them) that one seek in copies is then all it costs. Over 100,000 objects: 0.46 s
 * with the retention test first, 0.08 s this way, at every start and every 10 minutes. */
#define NEEDS_COPY(o, d) LACKING(o, d) " AND " RETAINED(o) " AND NOT " EXEMPT(o, d)
#define QUEUED(o, d)                                                                               \
    "EXISTS (SELECT 1 FROM copy_queue q WHERE q.object_id = " o " AND q.dest = " d ")"
/* A destination that deliberately holds no copy (the archive tier does: retention). */
#define EXEMPT(o, d)                                                                               \
    "EXISTS (SELECT 1 FROM dest_exempt x WHERE x.object_id = " o " AND x.dest = " d ")"

/* Object ids are printable ASCII (lowercase hex): "" and "\x7f" bound them all. */
int64_t catalog_coverage_queue(struct catalog *cat, const char *dest, int64_t now,
                               struct cst_err *err)
{
    return catalog_coverage_queue_range(cat, dest, now, "", "\x7f", err);
}

int64_t catalog_coverage_queue_range(struct catalog *cat, const char *dest, int64_t now,
                                     const char *lo, const char *hi, struct cst_err *err)
{
    static const char q[] =
        "INSERT INTO copy_queue (object_id, dest, spool, stored_size, stored_sha256, queued_at,"
        " ready_at) SELECT o.id, ?1, '', 0, x'', ?2, ?2 FROM objects o"
        " WHERE o.id >= ?3 AND o.id < ?4 AND " NEEDS_COPY("o.id", "?1") " AND NOT " QUEUED("o.id",
                                                                                           "?1");
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int64_t n;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, lo, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, hi, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "queue copies for coverage");
    }
    n = sqlite3_changes64(cat->db);
    sqlite3_reset(st);
    return n;
}

int catalog_coverage_stats(struct catalog *cat, const char *dest, struct catalog_coverage *c,
                           struct cst_err *err)
{
    /* clang-format off */
    static const char q[] =
        "SELECT (SELECT count(*) FROM copies WHERE dest = ?1 AND damaged_at IS NULL),"
        " (SELECT count(*) FROM objects o WHERE " NEEDS_COPY("o.id", "?1") "),"
        " (SELECT count(*) FROM objects o WHERE " NEEDS_COPY("o.id", "?1")
        "   AND NOT " QUEUED("o.id", "?1") "),"
        " (SELECT count(*) FROM copies WHERE dest = ?1 AND damaged_at IS NOT NULL),"
        " (SELECT coalesce(max(verified_at), 0) FROM copies WHERE dest = ?1),"
        " (SELECT coalesce(min(checked_at), 0) FROM copies WHERE dest = ?1"
        "   AND damaged_at IS NULL),"
        " (SELECT count(*) FROM copy_queue WHERE dest = ?1 AND attempts > 0),"
        /* artifacts of daily points another destination holds */
        " (SELECT count(*) FROM artifacts a JOIN daily_attempts t ON"
        "   t.date = a.date AND t.attempt = a.attempt WHERE t.pruned_at IS"
        "   NULL AND NOT EXISTS (SELECT 1 FROM artifact_copies c WHERE"
        "   c.date = a.date AND c.attempt = a.attempt AND c.kind = a.kind"
        "   AND c.dest = ?1) AND EXISTS (SELECT 1 FROM artifact_copies c"
        "   WHERE c.date = a.date AND c.attempt = a.attempt AND"
        "   c.kind = a.kind))";
    /* clang-format on */
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    memset(c, 0, sizeof(*c));
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        c->copies = sqlite3_column_int64(st, 0);
        c->lacking = sqlite3_column_int64(st, 1);
        c->unqueued = sqlite3_column_int64(st, 2);
        c->damaged = sqlite3_column_int64(st, 3);
        c->last_verified_at = sqlite3_column_int64(st, 4);
        c->oldest_check = sqlite3_column_int64(st, 5);
        c->failing = sqlite3_column_int64(st, 6);
        c->artifacts_lacking = sqlite3_column_int64(st, 7);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return catalog_sql_err(cat, err, "coverage of a destination");
    return 0;
}

int catalog_copy_queue_unsourced(struct catalog *cat, int64_t now, size_t limit,
                                 int (*skip)(void *arg, const char *object_id), void *arg,
                                 char ***ids, size_t *n, struct cst_err *err)
{
    /* INDEXED BY: without statistics the planner walks the primary key for the GROUP BY, a
     * scan of the whole queue on every fill; the partial index holds only these rows. */
    static const char q[] = "SELECT object_id, min(ready_at) AS r FROM copy_queue"
                            " INDEXED BY copy_queue_unsourced WHERE spool = ''"
                            " AND ready_at <= ? GROUP BY object_id ORDER BY r, object_id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    char **out;
    size_t count = 0;
    int rc = SQLITE_DONE;

    *ids = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    out = util_xcalloc(limit ? limit : 1, sizeof(*out));
    sqlite3_bind_int64(st, 1, now);
    while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);

        if (skip && skip(arg, id))
            continue;
        out[count++] = util_xstrdup(id);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        for (size_t i = 0; i < count; i++)
            free(out[i]);
        free(out);
        return catalog_sql_err(cat, err, "read copies without a source");
    }
    *ids = out;
    *n = count;
    return 0;
}

int catalog_copy_queue_source(struct catalog *cat, const char *object_id, const char *spool,
                              int64_t stored_size, const unsigned char stored_sha256[32],
                              int64_t now, struct cst_err *err)
{
    static const char q[] = "UPDATE copy_queue SET spool = ?2, stored_size = ?3,"
                            " stored_sha256 = ?4, ready_at = min(ready_at, ?5)"
                            " WHERE object_id = ?1 AND spool = ''";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int n;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, spool, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, stored_size);
    sqlite3_bind_blob(st, 4, stored_sha256, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "source queued copies");
    }
    n = sqlite3_changes(cat->db);
    sqlite3_reset(st);
    return n;
}

int catalog_copy_queue_unsourced_retry(struct catalog *cat, const char *object_id, int64_t delay_ms,
                                       const char *why, struct cst_err *err)
{
    static const char q[] =
        "UPDATE copy_queue SET attempts = attempts + 1, error_kind = 'source', last_error = ?2,"
        " ready_at = ?3 WHERE object_id = ?1 AND spool = ''";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, util_now_ms() + delay_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "retry copies without a source");
    }
    sqlite3_reset(st);
    return 0;
}

static int read_copies(struct catalog *cat, sqlite3_stmt *st, struct catalog_copy **out, size_t *n,
                       struct cst_err *err, const char *what)
{
    struct catalog_copy *rows = NULL;
    size_t count = 0;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct catalog_copy *c;

        rows = util_xrealloc(rows, (count + 1) * sizeof(*rows));
        c = &rows[count++];
        memset(c, 0, sizeof(*c));
        snprintf(c->object_id, sizeof(c->object_id), "%s",
                 (const char *)sqlite3_column_text(st, 0));
        c->dest = catalog_column_dup(st, 1);
        c->remote_key = catalog_column_dup(st, 2);
        c->stored_size = sqlite3_column_int64(st, 3);
        if (sqlite3_column_bytes(st, 4) == 32)
            memcpy(c->stored_sha256, sqlite3_column_blob(st, 4), 32);
        c->checked_at = sqlite3_column_int64(st, 5);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        catalog_copies_free(rows, count);
        return catalog_sql_err(cat, err, what);
    }
    *out = rows;
    *n = count;
    return 0;
}

int catalog_good_copies(struct catalog *cat, const char *object_id, struct catalog_copy **out,
                        size_t *n, struct cst_err *err)
{
    static const char q[] =
        "SELECT object_id, dest, remote_key, coalesce(stored_size, -1), stored_sha256,"
        " coalesce(checked_at, 0) FROM copies WHERE object_id = ? AND damaged_at IS NULL"
        " ORDER BY checked_at DESC, dest";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *out = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    return read_copies(cat, st, out, n, err, "list copies of an object");
}

int catalog_copies_to_check(struct catalog *cat, const char *dest, size_t limit,
                            struct catalog_copy **out, size_t *n, struct cst_err *err)
{
    static const char q[] =
        "SELECT object_id, dest, remote_key, coalesce(stored_size, -1), stored_sha256,"
        " coalesce(checked_at, 0) FROM copies WHERE dest = ?1 AND damaged_at IS NULL"
        " ORDER BY coalesce(checked_at, 0), object_id LIMIT ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *out = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (int64_t)limit);
    return read_copies(cat, st, out, n, err, "list copies to check");
}

void catalog_copies_free(struct catalog_copy *copies, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(copies[i].dest);
        free(copies[i].remote_key);
    }
    free(copies);
}

int catalog_copy_checked(struct catalog *cat, const char *object_id, const char *dest, int64_t now,
                         struct cst_err *err)
{
    static const char q[] = "UPDATE copies SET checked_at = ?3 WHERE object_id = ?1 AND dest = ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "record a check");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_copy_damaged(struct catalog *cat, const char *object_id, const char *dest,
                         const char *why, int64_t now, struct cst_err *err)
{
    static const char q[] = "UPDATE copies SET damaged_at = ?3, damage = ?4, checked_at = ?3"
                            " WHERE object_id = ?1 AND dest = ?2 AND damaged_at IS NULL";
    static const char q_queue[] =
        "INSERT OR IGNORE INTO copy_queue (object_id, dest, spool, stored_size, stored_sha256,"
        " queued_at, ready_at) VALUES (?1, ?2, '', 0, x'', ?3, ?3)";
    const char *steps[] = {q, q_queue};

    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st = catalog_stmt(cat, steps[i], err);

        if (st == NULL)
            return -1;
        sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, dest, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now);
        if (i == 0)
            sqlite3_bind_text(st, 4, why, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_DONE) {
            sqlite3_reset(st);
            return catalog_sql_err(cat, err, "mark a copy damaged");
        }
        sqlite3_reset(st);
    }
    return 0;
}

int catalog_forget_dests(struct catalog *cat, char *const *configured, size_t n_configured,
                         int64_t now, struct catalog_forgotten **out, size_t *n_out,
                         struct cst_err *err)
{
    static const char q_list[] = "SELECT dest, count(*) FROM copy_queue GROUP BY dest";
    static const char q_del[] = "DELETE FROM copy_queue WHERE dest = ?";
    static const char q_note[] = "INSERT INTO dest_notices (at, dest, notice) VALUES (?,?,?)";
    sqlite3_stmt *st = catalog_stmt(cat, q_list, err);
    struct catalog_forgotten *gone = NULL;
    size_t n = 0;
    int rc;

    *out = NULL;
    *n_out = 0;
    if (st == NULL)
        return -1;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *dest = (const char *)sqlite3_column_text(st, 0);
        int known = 0;

        for (size_t i = 0; i < n_configured && !known; i++)
            known = strcmp(configured[i], dest) == 0;
        if (known)
            continue;
        gone = util_xrealloc(gone, (n + 1) * sizeof(*gone));
        gone[n].dest = util_xstrdup(dest);
        gone[n].dropped = sqlite3_column_int64(st, 1);
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        catalog_forgotten_free(gone, n);
        return catalog_sql_err(cat, err, "list queued copies by destination");
    }
    for (size_t i = 0; i < n; i++) {
        char *notice = util_printf("destination %s removed from the config: %lld copies dropped "
                                   "from the queue",
                                   gone[i].dest, (long long)gone[i].dropped);

        st = catalog_stmt(cat, q_del, err);
        if (st != NULL) {
            sqlite3_bind_text(st, 1, gone[i].dest, -1, SQLITE_STATIC);
            rc = sqlite3_step(st);
            sqlite3_reset(st);
            if (rc == SQLITE_DONE && (st = catalog_stmt(cat, q_note, err)) != NULL) {
                sqlite3_bind_int64(st, 1, now);
                sqlite3_bind_text(st, 2, gone[i].dest, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, notice, -1, SQLITE_STATIC);
                rc = sqlite3_step(st);
                sqlite3_reset(st);
            }
        }
        free(notice);
        if (st == NULL || rc != SQLITE_DONE) {
            catalog_forgotten_free(gone, n);
            return st == NULL ? -1 : catalog_sql_err(cat, err, "forget a removed destination");
        }
    }
    *out = gone;
    *n_out = n;
    return 0;
}

void catalog_forgotten_free(struct catalog_forgotten *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i].dest);
    free(f);
}

int catalog_each_dest_notice(struct catalog *cat, int64_t since,
                             int (*cb)(void *arg, int64_t at, const char *dest, const char *notice),
                             void *arg, struct cst_err *err)
{
    static const char q[] = "SELECT at, dest, notice FROM dest_notices WHERE at >= ? ORDER BY id";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc = 0, step = SQLITE_DONE;

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, since);
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = cb(arg, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                (const char *)sqlite3_column_text(st, 2));
    if (rc == 0 && step != SQLITE_DONE)
        rc = catalog_sql_err(cat, err, "read destination notices");
    sqlite3_reset(st);
    return rc;
}

int catalog_copy_queue_unsourced_has(struct catalog *cat, const char *object_id,
                                     struct cst_err *err)
{
    static const char q[] = "SELECT 1 FROM copy_queue WHERE object_id = ? AND spool = '' LIMIT 1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int rc;

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return catalog_sql_err(cat, err, "look for copies without a source");
    return rc == SQLITE_ROW;
}

int catalog_copy_queue_unsource(struct catalog *cat, const char *object_id, struct cst_err *err)
{
    static const char q[] = "UPDATE copy_queue SET spool = '', stored_size = 0,"
                            " stored_sha256 = x'' WHERE object_id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "forget a lost spool file");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_object_live_paths(struct catalog *cat, const char *object_id, char ***paths, size_t *n,
                              struct cst_err *err)
{
    static const char q[] =
        "SELECT p.path FROM pending_versions pv JOIN paths p ON p.id = pv.path_id"
        " WHERE pv.object_id = ?1 AND pv.deleted_at IS NULL UNION"
        " SELECT p.path FROM versions v JOIN paths p ON p.id = v.path_id"
        " WHERE v.object_id = ?1 AND v.deleted_at IS NULL";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    char **out = NULL;
    size_t count = 0;
    int rc;

    *paths = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, object_id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        out = util_xrealloc(out, (count + 1) * sizeof(*out));
        out[count++] = catalog_column_dup(st, 0);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        for (size_t i = 0; i < count; i++)
            free(out[i]);
        free(out);
        return catalog_sql_err(cat, err, "list the live paths of an object");
    }
    *paths = out;
    *n = count;
    return 0;
}
