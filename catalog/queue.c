/*
 * queue.c - the durable work queue: one row per path that needs shipping.
 *
 * A row is written in the same transaction as the reason it exists, and
 * removed only after the path's copies are verified and recorded. The `gen`
 * column makes removal safe against a change that arrives while the old
 * content is being shipped: the ship removes the row only if nothing bumped
 * it meanwhile, so the new content is shipped too.
 */
#include "catalog_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int catalog_queue_path(struct catalog *cat, const char *path, const char *reason, int64_t ready_at,
                       struct cst_err *err)
{
    /* gen only grows, even across a row removed and queued again (a file deleted
     * and written anew while its old content was being sealed): a seal in flight
     * can never match a newer entry. ready_at never moves past queued_at +
     * max_delay, so a file that keeps changing still ships (shipper.h). */
    static const char q[] =
        "INSERT INTO queue (path_id, reason, queued_at, ready_at, gen) VALUES (?1, ?2, ?3, ?4, ?5) "
        "ON CONFLICT (path_id) DO UPDATE SET reason = excluded.reason, "
        "ready_at = min(excluded.ready_at, queued_at + ?6), gen = max(gen + 1, excluded.gen)";
    int64_t id = catalog_path_id(cat, path, 1, err);
    sqlite3_stmt *st;

    if (id < 0)
        return -1;
    st = catalog_stmt(cat, q, err);
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, util_now_ms());
    sqlite3_bind_int64(st, 4, ready_at);
    sqlite3_bind_int64(st, 5, util_now_us());
    sqlite3_bind_int64(st, 6, cat->max_delay_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "queue path");
    }
    sqlite3_reset(st);
    return 0;
}

int catalog_queue_ready(struct catalog *cat, int64_t now, size_t limit,
                        int (*skip)(void *arg, int64_t path_id), void *arg,
                        struct catalog_queue_item **items, size_t *n, struct cst_err *err)
{
    struct catalog_queue_cursor from_top = {0, 0, 0};

    return catalog_queue_ready_page(cat, now, &from_top, limit, skip, arg, items, n, err);
}

int catalog_queue_ready_page(struct catalog *cat, int64_t now, struct catalog_queue_cursor *cur,
                             size_t limit, int (*skip)(void *arg, int64_t path_id), void *arg,
                             struct catalog_queue_item **items, size_t *n, struct cst_err *err)
{
    /* Newest first: a file written during a long backlog (a start-up scan of years of
     * files) goes ahead of it, so the live RPO stays seconds. queue_by_ready (ready_at,
     * rowid) read backwards; no sort. */
    static const char q_top[] =
        "SELECT q.path_id, q.gen, q.queued_at, q.attempts, q.reason, p.path, q.ready_at "
        "FROM queue q JOIN paths p ON p.id = q.path_id "
        "WHERE q.ready_at <= ?1 ORDER BY q.ready_at DESC, q.path_id DESC";
    static const char q_after[] =
        "SELECT q.path_id, q.gen, q.queued_at, q.attempts, q.reason, p.path, q.ready_at "
        "FROM queue q JOIN paths p ON p.id = q.path_id "
        "WHERE q.ready_at <= ?1 AND (q.ready_at, q.path_id) < (?2, ?3) "
        "ORDER BY q.ready_at DESC, q.path_id DESC";
    sqlite3_stmt *st = catalog_stmt(cat, cur->valid ? q_after : q_top, err);
    struct catalog_queue_item *out;
    size_t count = 0;
    int rc = 0;

    *items = NULL;
    *n = 0;
    if (st == NULL)
        return -1;
    out = util_xcalloc(limit ? limit : 1, sizeof(*out));
    sqlite3_bind_int64(st, 1, now);
    if (cur->valid) {
        sqlite3_bind_int64(st, 2, cur->ready_at);
        sqlite3_bind_int64(st, 3, cur->path_id);
    }
    while (count < limit && (rc = catalog_step(cat, st, "read queue", err)) == 1) {
        int64_t id = sqlite3_column_int64(st, 0);

        cur->ready_at = sqlite3_column_int64(st, 6);
        cur->path_id = id;
        if (skip && skip(arg, id))
            continue;
        out[count].path_id = id;
        out[count].gen = sqlite3_column_int64(st, 1);
        out[count].queued_at = sqlite3_column_int64(st, 2);
        out[count].attempts = sqlite3_column_int(st, 3);
        snprintf(out[count].reason, sizeof(out[count].reason), "%s",
                 (const char *)sqlite3_column_text(st, 4));
        out[count].path = catalog_column_dup(st, 5);
        count++;
    }
    if (rc < 0) {
        catalog_queue_items_free(out, count);
        return -1;
    }
    /* At the end: the next page starts from the top again (what was queued since). */
    cur->valid = rc == 1;
    sqlite3_reset(st);
    *items = out;
    *n = count;
    return 0;
}

void catalog_queue_items_free(struct catalog_queue_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].path);
    free(items);
}

int catalog_queue_next_ready(struct catalog *cat, int64_t after, int64_t *next, struct cst_err *err)
{
    static const char q[] = "SELECT min(ready_at) FROM queue WHERE ready_at > ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *next = INT64_MAX;
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, after);
    if (catalog_step(cat, st, "queue schedule", err) < 0)
        return -1;
    if (sqlite3_column_type(st, 0) != SQLITE_NULL)
        *next = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

int catalog_queue_done(struct catalog *cat, int64_t path_id, int64_t gen, struct cst_err *err)
{
    static const char q[] = "DELETE FROM queue WHERE path_id = ? AND gen = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, path_id);
    sqlite3_bind_int64(st, 2, gen);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "dequeue");
    sqlite3_reset(st);
    return 0;
}

int catalog_queue_retry(struct catalog *cat, int64_t path_id, int64_t gen, int64_t delay_ms,
                        const char *why, struct cst_err *err)
{
    static const char q[] = "UPDATE queue SET attempts = attempts + 1, last_error = ?3, "
                            "ready_at = max(ready_at, ?4) WHERE path_id = ?1 AND gen = ?2";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, path_id);
    sqlite3_bind_int64(st, 2, gen);
    sqlite3_bind_text(st, 3, why, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, util_now_ms() + delay_ms);
    if (sqlite3_step(st) != SQLITE_DONE)
        return catalog_sql_err(cat, err, "requeue");
    sqlite3_reset(st);
    return 0;
}

int catalog_queue_stats(struct catalog *cat, int64_t *depth, int64_t *oldest_queued_at,
                        struct cst_err *err)
{
    static const char q[] = "SELECT count(*), min(queued_at) FROM queue";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *depth = 0;
    *oldest_queued_at = 0;
    if (st == NULL)
        return -1;
    if (catalog_step(cat, st, "queue stats", err) < 0)
        return -1;
    *depth = sqlite3_column_int64(st, 0);
    *oldest_queued_at = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    return 0;
}

int catalog_queue_failing(struct catalog *cat, int64_t *count, char **last_error,
                          struct cst_err *err)
{
    static const char q[] = "SELECT count(*), (SELECT last_error FROM queue WHERE attempts > 0 "
                            "ORDER BY ready_at DESC LIMIT 1) FROM queue WHERE attempts > 0";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    *count = 0;
    *last_error = NULL;
    if (st == NULL)
        return -1;
    if (catalog_step(cat, st, "queue failures", err) < 0)
        return -1;
    *count = sqlite3_column_int64(st, 0);
    *last_error = catalog_column_dup(st, 1);
    sqlite3_reset(st);
    return 0;
}

int64_t catalog_queue_gen(struct catalog *cat, int64_t path_id, struct cst_err *err)
{
    static const char q[] = "SELECT gen FROM queue WHERE path_id = ?";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);
    int64_t gen = 0;
    int rc;

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, path_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        gen = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return catalog_sql_err(cat, err, "read queue generation");
    return gen;
}

int catalog_queue_restart(struct catalog *cat, int64_t path_id, int64_t now, struct cst_err *err)
{
    static const char q[] = "UPDATE queue SET queued_at = ?2 WHERE path_id = ?1";
    sqlite3_stmt *st = catalog_stmt(cat, q, err);

    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, path_id);
    sqlite3_bind_int64(st, 2, now);
    if (sqlite3_step(st) != SQLITE_DONE) {
        sqlite3_reset(st);
        return catalog_sql_err(cat, err, "restart queue entry");
    }
    sqlite3_reset(st);
    return 0;
}

void catalog_set_max_delay(struct catalog *cat, int64_t max_delay_ms)
{
    cat->max_delay_ms = max_delay_ms > 0 ? max_delay_ms : INT64_MAX / 4;
}
