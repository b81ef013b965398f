/*
 * agent.c - the service: one libev loop, the watcher feeding the catalog's
 * queue, the shipper draining it.
 *
 * Watcher callbacks write to the catalog inside one transaction per burst of
 * events, committed at batch_end (before the loop sleeps again), so an event
 * costs a row, not an fsync. Anything the watcher could have missed while the
 * agent was down is found by the start-up reconciliation.
 *
 * No event is ever dropped silently: when the catalog cannot be written (its
 * disk is full, another process holds the write lock), the roots the lost
 * events touched are rescanned once it can be written again, with backoff,
 * and `status` says "catalog not writable" until then. Walks run on their own
 * thread (rescan.c) and write in short transactions, so the loop keeps
 * answering. What only the running agent knows (roots watched, catalog
 * writable, paths that cannot be protected) is served to `status` over the
 * control socket.
 */
#include "agent.h"

#include <ev.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/alerts.h"
#include "agent/control.h"
#include "agent/dests.h"
#include "agent/keys.h"
#include "agent/metrics.h"
#include "agent/notify.h"
#include "agent/prune.h"
#include "agent/reconcile.h"
#include "agent/rescan.h"
#include "agent/rt_schedule.h"
#include "agent/sched.h"
#include "common/log.h"
#include "common/pathenc.h"
#include "common/json.h"
#include "common/util.h"
#include "shipper/curl_ev.h"
#include "shipper/shipper.h"
#include "shipper/verifier.h"
#include "shipper/workpool.h"
#include "watcher/watcher.h"

/* The loop never waits long on another process's write lock: it retries. */
#define AGENT_BUSY_TIMEOUT_MS 250
#define RECOVERY_FIRST_S 1.0
#define RECOVERY_MAX_S 30.0
#define MAX_UNPROTECTED 1000
#define METRICS_EVERY_S 15.0

struct unprotected {
    char *path, *why;
    uint64_t walk; /* the walk that last saw it (0: the watcher) */
};

struct agent {
    struct cli *cli;
    const struct agent_options *opts;
    struct ev_loop *loop;
    struct catalog *cat;
    struct shipper *shipper;
    struct watcher *watcher;
    struct rescan *rescan;
    struct verifier *verifier;
    struct control *control;
    struct workpool *pool;     /* sealing: hashing, compression, encryption */
    struct workpool *io_pool;  /* destinations whose I/O blocks (local) */
    struct workpool *aux_pool; /* one thread: copies between destinations, verification */
    struct curl_ev *curl;
    struct notify *notify; /* systemd: READY, STATUS, WATCHDOG, STOPPING */
    struct dest **dests, **fetch_dests;
    size_t n_dests;
    unsigned char public_key[32];
    unsigned char *naming_key;
    int stopping;
    int status;
    int ready; /* the start-up rescans are done */
    int64_t started_mono, started_at;
    int64_t shipped_files;
    int trimmed; /* memory given back since the shipper was last busy */
    /* events of the current burst */
    int in_tx, tx_failed;
    unsigned char *touched; /* per root: this burst has events under it */
    unsigned char *dirty;   /* per root: events were lost; rescan it */
    ev_timer recovery;
    double recovery_delay;
    char catalog_error[CST_ERR_SIZE];
    int64_t catalog_error_since;
    struct unprotected *unprot;
    size_t n_unprot;
    int64_t unprot_total;
    ev_signal sig_term, sig_int;
    ev_timer poll;
    ev_timer metrics;
    ev_timer stop_check;
    /* the daily run, in a child process */
    struct sched_zone *zone;
    struct plan_rules rules; /* retention: the dates Object Lock retains copies until */
    ev_timer daily_timer;
    ev_child daily_child;
    ev_child prune_child; /* the daily prune ([retention] prune), after a daily run */
    char daily_date[SCHED_DATE_SIZE];
    /* billing-cycle snapshots: `custodian snapshot --pending` in a child, every poll */
    ev_timer snapshot_timer;
    ev_child snapshot_child;
    int64_t snapshot_failures;
    struct rt_schedule *rt_schedule; /* the monthly restore test, in a child */
    struct alerts *alerts;           /* [alerts] command */
};

static int within(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static int root_index(struct agent *a, const char *path)
{
    for (size_t i = 0; i < a->cli->cfg->n_watch_paths; i++)
        if (within(path, a->cli->cfg->watch_paths[i]))
            return (int)i;
    return -1;
}

/* --- the catalog: failures, recovery --- */

static void catalog_failed(struct agent *a, const char *why)
{
    if (a->catalog_error[0] == '\0') {
        a->catalog_error_since = util_now_ms();
        log_error("catalog not writable: %s; changes are kept as folders to rescan once it is "
                  "(see `custodian status`)",
                  why);
    }
    snprintf(a->catalog_error, sizeof(a->catalog_error), "%s", why);
}

static void schedule_recovery(struct agent *a)
{
    if (ev_is_active(&a->recovery) || a->stopping)
        return;
    ev_timer_set(&a->recovery, a->recovery_delay, 0.0);
    ev_timer_start(a->loop, &a->recovery);
    a->recovery_delay =
        a->recovery_delay * 2 > RECOVERY_MAX_S ? RECOVERY_MAX_S : a->recovery_delay * 2;
}

static int any_dirty(struct agent *a)
{
    for (size_t i = 0; i < a->cli->cfg->n_watch_paths; i++)
        if (a->dirty[i])
            return 1;
    return 0;
}

static void catalog_written(struct agent *a)
{
    if (a->catalog_error[0] && !any_dirty(a) && !ev_is_active(&a->recovery)) {
        log_info("catalog writable again after %lld s; nothing was lost",
                 (long long)(util_now_ms() - a->catalog_error_since) / 1000);
        a->catalog_error[0] = '\0';
        a->recovery_delay = RECOVERY_FIRST_S;
    }
}

static void mark_dirty(struct agent *a, int root)
{
    if (root >= 0)
        a->dirty[root] = 1;
    else
        memset(a->dirty, 1, a->cli->cfg->n_watch_paths);
    schedule_recovery(a);
}

static void on_recovery(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct agent *a = t->data;

    (void)loop;
    (void)revents;
    for (size_t i = 0; i < a->cli->cfg->n_watch_paths; i++)
        if (a->dirty[i]) {
            a->dirty[i] = 0;
            rescan_request(a->rescan, a->cli->cfg->watch_paths[i], "catalog recovery");
        }
}

/* --- catalog writes from watcher events --- */

static int tx(struct agent *a, const char *path)
{
    struct cst_err err;
    int root = root_index(a, path);

    if (root >= 0)
        a->touched[root] = 1;
    if (a->tx_failed)
        return -1;
    if (a->in_tx)
        return 0;
    if (catalog_begin(a->cat, &err) < 0) {
        catalog_failed(a, err.msg);
        a->tx_failed = 1;
        return -1;
    }
    a->in_tx = 1;
    return 0;
}

static void tx_error(struct agent *a, const char *what, const char *path, struct cst_err *err)
{
    char *shown = pathenc_escape(path, strlen(path));

    log_warn("cannot record %s path=%s: %s", what, shown, err->msg);
    free(shown);
    catalog_failed(a, err->msg);
    a->tx_failed = 1;
}

static void on_changed(void *arg, const char *path, int closed)
{
    struct agent *a = arg;
    struct cst_err err;
    int64_t now = util_now_ms();

    if (tx(a, path) < 0)
        return;
    if (catalog_queue_path(a->cat, path, closed ? "closed" : "modified",
                           closed ? now : now + a->cli->cfg->settle_ms, &err) < 0)
        tx_error(a, "change", path, &err);
}

static void on_removed(void *arg, const char *path)
{
    struct agent *a = arg;
    struct cst_err err;
    int n;

    if (tx(a, path) < 0)
        return;
    n = catalog_record_delete(a->cat, path, util_now_ms(), &err);
    if (n < 0) {
        tx_error(a, "deletion", path, &err);
    } else if (n > 0) {
        char *shown = pathenc_escape(path, strlen(path));
        log_info("deleted path=%s versions_kept=%d", shown, n);
        free(shown);
    }
}

static void on_moved(void *arg, const char *from, const char *to)
{
    struct agent *a = arg;
    struct cst_err err;

    if (tx(a, from) < 0 || tx(a, to) < 0)
        return;
    if (catalog_record_move(a->cat, from, to, util_now_ms(), &err) < 0) {
        tx_error(a, "rename", to, &err);
    } else {
        char *f = pathenc_escape(from, strlen(from)), *t = pathenc_escape(to, strlen(to));
        log_info("renamed from=%s to=%s", f, t);
        free(f);
        free(t);
    }
}

static void on_batch_end(void *arg)
{
    struct agent *a = arg;
    struct cst_err err;
    size_t n = a->cli->cfg->n_watch_paths;

    if (a->in_tx) {
        if (a->tx_failed) {
            catalog_rollback(a->cat);
        } else if (catalog_commit(a->cat, &err) < 0) {
            catalog_failed(a, err.msg);
            a->tx_failed = 1;
        }
    }
    if (a->tx_failed) {
        /* Lost events are found again by a rescan of the roots they touched. */
        for (size_t i = 0; i < n; i++)
            if (a->touched[i])
                mark_dirty(a, (int)i);
    } else if (a->in_tx) {
        catalog_written(a);
    }
    memset(a->touched, 0, n);
    a->in_tx = a->tx_failed = 0;
    if (a->shipper)
        shipper_kick(a->shipper);
}

/* --- rescans --- */

static void on_rescan(void *arg, const char *path)
{
    struct agent *a = arg;

    rescan_request(a->rescan, path, "folder");
}

static void unprotected_add(struct agent *a, const char *path, const char *why, uint64_t walk)
{
    for (size_t i = 0; i < a->n_unprot; i++)
        if (strcmp(a->unprot[i].path, path) == 0) {
            a->unprot[i].walk = walk;
            return;
        }
    a->unprot_total++;
    {
        char *shown = pathenc_escape(path, strlen(path));

        log_error("NOT PROTECTED path=%s reason=\"%s\"", shown, why);
        free(shown);
    }
    if (a->n_unprot >= MAX_UNPROTECTED)
        return; /* counted, not listed */
    a->unprot = util_xrealloc(a->unprot, (a->n_unprot + 1) * sizeof(*a->unprot));
    a->unprot[a->n_unprot].path = util_xstrdup(path);
    a->unprot[a->n_unprot].why = util_xstrdup(why);
    a->unprot[a->n_unprot].walk = walk;
    a->n_unprot++;
}

/* A finished walk of root is the truth about what under root cannot be protected. */
static void unprotected_prune(struct agent *a, const char *root, uint64_t walk)
{
    for (size_t i = 0; i < a->n_unprot;) {
        if (within(a->unprot[i].path, root) && a->unprot[i].walk != walk) {
            free(a->unprot[i].path);
            free(a->unprot[i].why);
            a->unprot[i] = a->unprot[--a->n_unprot];
            a->unprot_total--;
        } else {
            i++;
        }
    }
}

static void on_unprotected(void *arg, const char *path, const char *why)
{
    unprotected_add(arg, path, why, 0);
}

static int on_rescan_changes(void *arg, const char *root, uint64_t walk,
                             const struct reconcile_change *c, size_t n)
{
    struct agent *a = arg;
    struct cst_err err;
    int64_t now = util_now_ms();
    int rc;

    if (a->in_tx)
        on_batch_end(a);
    rc = catalog_begin(a->cat, &err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (c[i].kind == RECONCILE_UNPROTECTED)
            unprotected_add(a, c[i].path, c[i].why, walk);
        else
            rc = reconcile_apply(a->cat, &c[i], now, &err);
    }
    if (rc == 0)
        rc = catalog_commit(a->cat, &err);
    else
        catalog_rollback(a->cat);
    if (rc < 0) {
        catalog_failed(a, err.msg);
        mark_dirty(a, root_index(a, root));
        return -1;
    }
    catalog_written(a);
    shipper_kick(a->shipper);
    return 0;
}

static void agent_ready(struct agent *a);

static void on_rescan_done(void *arg, const char *root, const char *why, uint64_t walk,
                           const struct reconcile_counts *c, int rc, const char *error)
{
    struct agent *a = arg;

    if (rc < 0) {
        int r = root_index(a, root);
        const char *path;
        const char *lost_why = NULL;
        int watched = 1;

        if (a->watcher && r >= 0 && (size_t)r < watcher_root_count(a->watcher))
            watcher_root_info(a->watcher, (size_t)r, &path, &watched, &lost_why);
        /* A root that is gone is the watcher's to report (and rescan when back). */
        if (watched) {
            log_error("rescan of %s (%s) failed: %s; trying again", root, why, error);
            mark_dirty(a, r);
        }
    } else if (rc == 0) {
        unprotected_prune(a, root, walk);
        if (c->queued || c->tombstoned || strcmp(why, "folder") != 0)
            log_info("rescanned %s (%s): files=%lld queued=%lld deleted=%lld folders=%lld "
                     "helper_folders=%lld",
                     root, why, (long long)c->seen, (long long)c->queued, (long long)c->tombstoned,
                     (long long)c->folders, (long long)c->helper_folders);
    }
    if (!a->ready && !rescan_busy(a->rescan))
        agent_ready(a);
}

static void on_root_state(void *arg, const char *root, int watched, const char *why)
{
    struct agent *a = arg;
    struct cst_err err;
    struct json j;

    (void)a;
    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "root");
    json_str(&j, root);
    json_key(&j, "watched");
    json_bool(&j, watched);
    json_key(&j, "why");
    json_str(&j, why);
    json_obj_end(&j);
    /* Best effort: the audit row is a record, the watcher's state is the truth. */
    if (catalog_audit(a->cat, "agent", watched ? "root_watched" : "root_lost", j.buf, &err) < 0)
        log_warn("cannot record the audit row: %s", err.msg);
    json_free(&j);
}

static const struct watcher_callbacks watcher_cb = {
    .changed = on_changed,
    .removed = on_removed,
    .moved = on_moved,
    .rescan = on_rescan,
    .batch_end = on_batch_end,
    .root_state = on_root_state,
    .unprotected = on_unprotected,
};

/* --- what status asks the running agent --- */

static void describe(void *arg, struct json *j)
{
    struct agent *a = arg;

    json_obj_begin(j);
    json_key(j, "pid");
    json_int(j, (int64_t)getpid());
    json_key(j, "started_at");
    json_time(j, a->started_at);
    json_key(j, "ready");
    json_bool(j, a->ready);
    json_key(j, "roots");
    json_arr_begin(j);
    for (size_t i = 0; a->watcher && i < watcher_root_count(a->watcher); i++) {
        const char *path, *why;
        int watched;

        watcher_root_info(a->watcher, i, &path, &watched, &why);
        json_obj_begin(j);
        json_key(j, "path");
        json_str(j, path);
        json_key(j, "watched");
        json_bool(j, watched);
        json_key(j, "why");
        json_str(j, why);
        json_obj_end(j);
    }
    json_arr_end(j);
    json_key(j, "catalog_error");
    json_str(j, a->catalog_error[0] ? a->catalog_error : NULL);
    json_key(j, "catalog_error_since");
    json_time(j, a->catalog_error[0] ? a->catalog_error_since : 0);
    json_key(j, "shipper_catalog_error");
    json_str(j, a->shipper ? shipper_catalog_error(a->shipper) : NULL);
    {
        char ckpt_error[CST_ERR_SIZE];
        int64_t ckpt_done, ckpt_failed;

        catalog_checkpoint_stats(a->cat, &ckpt_done, &ckpt_failed, ckpt_error, sizeof(ckpt_error));
        json_key(j, "catalog_checkpoint_error");
        json_str(j, ckpt_error[0] ? ckpt_error : NULL);
        json_key(j, "catalog_checkpoints_failed");
        json_int(j, ckpt_failed);
    }
    json_key(j, "rescans_pending");
    json_bool(j, a->rescan && (rescan_busy(a->rescan) || any_dirty(a)));
    json_key(j, "inotify_overflows");
    json_int(j, a->watcher ? watcher_overflow_count(a->watcher) : 0);
    json_key(j, "unwatched_folders");
    json_int(j, a->watcher ? watcher_unwatched_count(a->watcher) : 0);
    json_key(j, "verify_per_day");
    json_int(j, a->cli->cfg->verify_per_day);
    json_key(j, "unprotected_count");
    json_int(j, a->unprot_total);
    json_key(j, "unprotected");
    json_arr_begin(j);
    for (size_t i = 0; i < a->n_unprot && i < 20; i++) {
        char *shown = pathenc_escape(a->unprot[i].path, strlen(a->unprot[i].path));

        json_obj_begin(j);
        json_key(j, "path");
        json_str(j, shown);
        json_key(j, "why");
        json_str(j, a->unprot[i].why);
        json_obj_end(j);
        free(shown);
    }
    json_arr_end(j);
    json_obj_end(j);
}

static void on_metrics(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct agent *a = t->data;
    struct metrics_agent m = {a->started_at,
                              0,
                              0,
                              a->catalog_error[0] == '\0',
                              a->unprot_total,
                              a->watcher ? watcher_overflow_count(a->watcher) : 0};
    struct cst_err err;

    (void)loop;
    (void)revents;
    for (size_t i = 0; a->watcher && i < watcher_root_count(a->watcher); i++) {
        const char *path, *why;
        int watched;

        watcher_root_info(a->watcher, i, &path, &watched, &why);
        m.roots++;
        m.roots_unwatched += !watched;
    }
    if (metrics_write(a->cli->cfg->metrics_textfile, a->cat, a->cli->cfg, &m, &err) < 0)
        log_warn("%s", err.msg);
}

/* --- lifecycle --- */

/* Object Lock: a copy is locked until its version's own deletion date (the retention
 * planner's rule, so that prune and the lock agree). */
static int64_t lock_until(void *arg, int64_t captured_at)
{
    struct agent *a = arg;

    return plan_version_until(a->zone, &a->rules, captured_at);
}

static void on_batch(void *arg, size_t files, uint64_t bytes)
{
    struct agent *a = arg;

    (void)bytes;
    a->shipped_files += (int64_t)files;
}

static void on_damaged(void *arg)
{
    struct agent *a = arg;

    shipper_kick(a->shipper);
}

/* --- the daily run: scheduled here, run by `custodian daily` in a child --- */

#define DAILY_RETRY_S (15 * 60)

static void schedule_daily(struct agent *a, double after, const char *why)
{
    ev_timer_stop(a->loop, &a->daily_timer);
    ev_timer_set(&a->daily_timer, after > 0 ? after : 0.0, 0.0);
    ev_timer_start(a->loop, &a->daily_timer);
    log_info("daily run scheduled date=%s in_s=%.0f (%s)", a->daily_date, after, why);
}

static void on_prune_exit(struct ev_loop *loop, ev_child *w, int revents)
{
    int status = w->rstatus;

    (void)revents;
    ev_child_stop(loop, w);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        log_info("daily prune finished (see `custodian status`)");
    else
        log_error("daily prune FAILED exit=%d; it runs again after the next daily run (see "
                  "`custodian status`)",
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* The plan's daily pruning job (§8.3), in a child, once the day's run is done. */
static void start_prune(struct agent *a)
{
    pid_t pid;

    if (!a->cli->cfg->prune || ev_is_active(&a->prune_child))
        return;
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "custodian", "-c", a->cli->config_path, "prune", "--confirm",
              "--agent", (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        log_error("cannot start the daily prune: %s", strerror(errno));
        return;
    }
    log_info("daily prune started pid=%d", (int)pid);
    ev_child_set(&a->prune_child, pid, 0);
    ev_child_start(a->loop, &a->prune_child);
}

/* What is owed now (a missed run), else the next run at daily_at. */
static void plan_daily(struct agent *a)
{
    const struct cfg *cfg = a->cli->cfg;
    int64_t now = util_now_ms() / 1000, next;
    char last[SCHED_DATE_SIZE] = "";
    int missed = 0, found;
    int64_t installed_at = 0;
    struct cst_err err;

    found = catalog_daily_last_success(a->cat, last, &err);
    if (found == 0 && catalog_state_get_int(a->cat, "installed_at", 0, &installed_at, &err) < 0)
        found = -1;
    /* Not knowing is not "done": the day's run is then owed now (a catalog that cannot be
     * read fails it, and a failed run is retried). */
    if (found < 0)
        log_error("cannot read the last daily run from the catalog: %s", err.msg);
    if (found != 1)
        sched_local_date(a->zone, installed_at / 1000, last);
    if (sched_due(a->zone, cfg->daily_hour, cfg->daily_minute, last, now, a->daily_date, &missed) ==
        1) {
        if (missed > 0)
            log_warn("%d daily run(s) were missed while the agent was down; running the "
                     "newest one now",
                     missed);
        schedule_daily(a, 5.0, "owed: catching up");
        return;
    }
    if (sched_next_run(a->zone, cfg->daily_hour, cfg->daily_minute, now, &next, a->daily_date) <
        0) {
        log_error("cannot compute the next daily run; retrying in an hour");
        ev_timer_set(&a->daily_timer, 3600.0, 0.0);
        ev_timer_start(a->loop, &a->daily_timer);
        return;
    }
    schedule_daily(a, (double)(next - now), "next daily_at");
}

static void on_daily_exit(struct ev_loop *loop, ev_child *w, int revents)
{
    struct agent *a = w->data;
    int status = w->rstatus;

    (void)revents;
    ev_child_stop(loop, w);
    if (a->stopping)
        return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        log_info("daily run finished date=%s", a->daily_date);
        plan_daily(a);
        start_prune(a);
    } else {
        /* Never silently skipped: the same run again soon, loudly. */
        log_error("daily run FAILED date=%s exit=%d; next attempt in %d minutes (see "
                  "`custodian status`)",
                  a->daily_date, WIFEXITED(status) ? WEXITSTATUS(status) : -1, DAILY_RETRY_S / 60);
        schedule_daily(a, DAILY_RETRY_S, "retry after failure");
    }
}

static void on_daily_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct agent *a = t->data;
    char today[SCHED_DATE_SIZE];
    int backfill;
    pid_t pid;

    (void)revents;
    if (ev_is_active(&a->daily_child))
        return; /* still running: its exit plans the next */
    /* A run owed for an earlier day (caught up after downtime, or retried past
     * midnight) is made now: it says so, as a backfill made today for that day. */
    sched_local_date(a->zone, util_now_ms() / 1000, today);
    backfill = strcmp(a->daily_date, today) < 0;
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "custodian", "-c", a->cli->config_path, "daily", "--date",
              a->daily_date, backfill ? "--backfill" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        log_error("cannot start the daily run: %s; retrying in a minute", strerror(errno));
        schedule_daily(a, 60.0, "retry after fork failure");
        return;
    }
    log_info("daily run started date=%s pid=%d%s", a->daily_date, (int)pid,
             backfill ? " (a backfill: that day is over)" : "");
    ev_child_set(&a->daily_child, pid, 0);
    ev_child_start(loop, &a->daily_child);
}

/* --- billing-cycle snapshots: polled here, made by `custodian snapshot --pending` --- */

#define SNAPSHOT_RETRY_FIRST_MS 30000
#define SNAPSHOT_RETRY_MAX_MS (15 * 60 * 1000)

static void schedule_snapshot(struct agent *a, int64_t after_ms)
{
    struct cst_err err;

    ev_timer_stop(a->loop, &a->snapshot_timer);
    ev_timer_set(&a->snapshot_timer, (double)after_ms / 1000.0, 0.0);
    ev_timer_start(a->loop, &a->snapshot_timer);
    if (catalog_snapshot_job_next(a->cat, util_now_ms() + after_ms, &err) < 0)
        log_warn("cannot record the next snapshot poll: %s", err.msg);
}

static void on_snapshot_exit(struct ev_loop *loop, ev_child *w, int revents)
{
    struct agent *a = w->data;
    int status = w->rstatus;
    int64_t poll = a->cli->cfg->snap.poll_ms, delay = poll;

    (void)revents;
    ev_child_stop(loop, w);
    if (a->stopping)
        return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        a->snapshot_failures = 0;
    } else {
        int64_t first = poll < SNAPSHOT_RETRY_FIRST_MS ? poll : SNAPSHOT_RETRY_FIRST_MS;
        int64_t cap = poll > SNAPSHOT_RETRY_MAX_MS ? poll : SNAPSHOT_RETRY_MAX_MS;
        struct cst_err err;

        if (WIFSIGNALED(status)) {
            /* It could not say so itself. */
            char *why = util_printf("the snapshot job was killed by signal %d", WTERMSIG(status));

            if (catalog_snapshot_job_record(a->cat, 0, why, NULL, util_now_ms(), &err) < 0)
                log_warn("cannot record the snapshot job: %s", err.msg);
            free(why);
        }
        a->snapshot_failures++;
        /* Backoff: retried soon, then less often, never dropped. */
        delay = first;
        for (int64_t i = 1; i < a->snapshot_failures && delay < cap; i++)
            delay *= 2;
        if (delay > cap)
            delay = cap;
        log_error("billing-cycle snapshots FAILED (attempt %lld); next attempt in %lld s (see "
                  "`custodian status`)",
                  (long long)a->snapshot_failures, (long long)delay / 1000);
    }
    schedule_snapshot(a, delay);
}

static void on_snapshot_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct agent *a = t->data;
    pid_t parent = getpid(), pid;

    (void)revents;
    if (ev_is_active(&a->snapshot_child))
        return; /* still running: its exit plans the next */
    pid = fork();
    if (pid == 0) {
        /* A snapshot interrupted at any point is made again; it must not outlive us. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        execl("/proc/self/exe", "custodian", "-c", a->cli->config_path, "snapshot", "--pending",
              (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        log_error("cannot start the snapshot job: %s; retrying in a minute", strerror(errno));
        schedule_snapshot(a, 60000);
        return;
    }
    log_debug("snapshot job started pid=%d", (int)pid);
    ev_child_set(&a->snapshot_child, pid, 0);
    ev_child_start(loop, &a->snapshot_child);
}

static void stop_snapshot_job(struct agent *a)
{
    pid_t pid = a->snapshot_child.pid;
    int64_t until = util_mono_ms() + 10000;
    int status;

    ev_timer_stop(a->loop, &a->snapshot_timer);
    if (!ev_is_active(&a->snapshot_child))
        return;
    ev_child_stop(a->loop, &a->snapshot_child);
    /* Interrupted is safe: the next start makes that package again. */
    kill(pid, SIGTERM);
    while (waitpid(pid, &status, WNOHANG) == 0 && util_mono_ms() < until)
        usleep(20 * 1000);
}

/* alerts.h: what only this process knows. */
static void alert_facts(void *arg, struct alerts_agent *out)
{
    struct agent *a = arg;

    out->catalog_error = a->catalog_error[0] ? a->catalog_error : NULL;
    for (size_t i = 0; a->watcher && i < watcher_root_count(a->watcher) && i < ALERTS_MAX_ROOTS;
         i++, out->n_roots++)
        watcher_root_info(a->watcher, i, &out->roots[i].path, &out->roots[i].watched,
                          &out->roots[i].why);
}

/* Idle: the main connection's page cache, and what the threads freed (sealing contexts,
 * batches, the start-up scan's listings: glibc keeps freed memory in each thread's arena),
 * go back to the system. Once per idle spell: with nothing allocated since, there is
 * nothing more to give. Over 100,000 watched files: RssAnon 7.5 -> 3.4 MiB when idle. */
static void trim_when_idle(struct agent *a)
{
    if (!a->ready || a->stopping || !shipper_idle(a->shipper) ||
        (a->rescan && rescan_busy(a->rescan))) {
        a->trimmed = 0;
        return;
    }
    if (a->trimmed)
        return;
    a->trimmed = 1;
    catalog_release_memory(a->cat);
    malloc_trim(0);
}

static void agent_ready(struct agent *a)
{
    a->ready = 1;
    /* Coverage is checked once the start-up scans are done, not before them (it held
     * them up by 60-140 ms over 100,000 objects), in slices on the loop from here on. */
    shipper_cover_start(a->shipper);
    a->rt_schedule = rt_schedule_start(a->loop, a->cli, a->zone);
    a->alerts = alerts_start(a->loop, a->cli, alert_facts, a);
    alerts_kick(a->alerts);
    /* READY=1 only now: the start-up rescans are committed (and SIGTERM is handled:
     * the handlers are set before the loop runs). */
    a->notify = notify_start(a->loop, a->cat);
    if (cfg_snapshots_on(a->cli->cfg))
        schedule_snapshot(a, 1000);
    log_info("agent started: watching %zu folders (%zu watches), %zu destination(s), "
             "settle_ms=%d",
             a->cli->cfg->n_watch_paths, watcher_watch_count(a->watcher), a->n_dests,
             a->cli->cfg->settle_ms);
    trim_when_idle(a);
}

static void begin_stop(struct agent *a)
{
    if (a->stopping)
        return;
    a->stopping = 1;
    watcher_free(a->watcher);
    a->watcher = NULL;
    rescan_free(a->rescan);
    a->rescan = NULL;
    verifier_stop(a->verifier);
    shipper_stop(a->shipper);
    ev_timer_stop(a->loop, &a->poll);
    ev_timer_stop(a->loop, &a->metrics);
    ev_timer_stop(a->loop, &a->daily_timer);
    ev_timer_stop(a->loop, &a->recovery);
    stop_snapshot_job(a);
    rt_schedule_stop(a->rt_schedule);
    alerts_stop(a->alerts);
    ev_timer_set(&a->stop_check, 0.0, 0.05);
    ev_timer_again(a->loop, &a->stop_check);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct agent *a = w->data;

    (void)loop;
    (void)revents;
    log_info("stopping: finishing what is in flight signal=%d in_flight=%zu", w->signum,
             shipper_in_flight(a->shipper));
    notify_stopping(a->notify, shipper_in_flight(a->shipper));
    begin_stop(a);
}

static void on_stop_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct agent *a = t->data;

    (void)revents;
    if (a->stopping) {
        if (shipper_in_flight(a->shipper) == 0) {
            ev_timer_stop(loop, t);
            ev_break(loop, EVBREAK_ALL);
        }
        return;
    }
    /* `ship`: done when nothing is left to do. */
    if (a->opts->until_idle &&
        (a->opts->until_empty ? shipper_drained(a->shipper) : shipper_idle(a->shipper))) {
        begin_stop(a);
        return;
    }
    if (a->opts->timeout_ms > 0 && util_mono_ms() - a->started_mono > a->opts->timeout_ms) {
        int64_t depth, oldest;
        struct cst_err err;

        if (catalog_queue_stats(a->cat, &depth, &oldest, &err) < 0)
            log_error("gave up waiting; the queue cannot be read: %s", err.msg);
        else
            log_error("gave up waiting: %lld queued entries remain (see `custodian status`)",
                      (long long)depth);
        a->status = EXIT_FAILED;
        begin_stop(a);
    }
}

static void on_poll(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct agent *a = t->data;

    (void)loop;
    (void)revents;
    /* Entries queued by other processes (`custodian scan`) are seen here. */
    shipper_kick(a->shipper);
    trim_when_idle(a);
}

static int load_keys(struct agent *a)
{
    struct cst_err err;
    const struct cfg *cfg = a->cli->cfg;

    if (keys_load_public(cfg->public_key, a->public_key, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    a->naming_key = sodium_malloc(32);
    if (a->naming_key == NULL)
        return cli_fail(EXIT_FAILED, "out of memory");
    if (keys_load_secret(cfg->naming_key, "naming-key", a->naming_key, 32, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    /* Refused now, not at the first daily run or the first restore. */
    if (keys_check_signing_key(cfg->signing_key, &err) < 0 ||
        (cfg->secret_key && keys_check_backup_pair(cfg->public_key, cfg->secret_key, &err) < 0))
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    return EXIT_OK;
}

static void audit(struct agent *a, const char *action, const char *detail)
{
    struct cst_err err;

    if (catalog_audit(a->cat, "agent", action, detail, &err) < 0)
        log_error("%s", err.msg);
}

/* The watcher, its rescans, the status socket and rolling verification: the service. */
static int start_watching(struct agent *a, const char *spool)
{
    const struct cfg *cfg = a->cli->cfg;
    struct cst_err err;
    char *sock;

    struct rescan_params rp = {
        .loop = a->loop,
        .catalog_path = NULL,
        .excludes = cfg->excludes,
        .n_excludes = cfg->n_excludes,
        .apply = on_rescan_changes,
        .done = on_rescan_done,
        .arg = a,
    };
    char *catalog_path = cli_state_path(a->cli, "catalog.db");

    rp.catalog_path = catalog_path;
    a->rescan = rescan_new(&rp, &err);
    free(catalog_path);
    if (a->rescan == NULL)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    sock = cli_state_path(a->cli, "agent.sock");
    a->control = control_new(a->loop, sock, describe, a, &err);
    free(sock);
    if (a->control == NULL)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    struct verifier_params vp = {
        .loop = a->loop,
        .catalog = a->cat,
        .dests = a->fetch_dests,
        .n_dests = a->n_dests,
        .pool = a->aux_pool,
        .scratch_dir = spool,
        .per_day = cfg->verify_per_day,
        .on_damaged = on_damaged,
        .arg = a,
    };
    a->verifier = verifier_new(&vp);
    if (cfg->metrics_textfile) {
        ev_timer_init(&a->metrics, on_metrics, 1.0, METRICS_EVERY_S);
        a->metrics.data = a;
        ev_timer_start(a->loop, &a->metrics);
    }
    if (cfg->verify_per_day == 0)
        log_warn("rolling verification is off ([verify] per_day = 0): damaged copies are found "
                 "only by `custodian verify`");
    a->watcher = watcher_new(a->loop, cfg->watch_paths, cfg->n_watch_paths, cfg->excludes,
                             cfg->n_excludes, &watcher_cb, a, &err);
    if (a->watcher == NULL)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    /* Watches are in place first; the scan then finds whatever changed while down.
     * "agent started" is logged when these walks are done. */
    for (size_t i = 0; i < cfg->n_watch_paths; i++)
        rescan_request(a->rescan, cfg->watch_paths[i], "start-up");
    audit(a, "agent_start", "{}");
    if (a->zone == NULL)
        a->zone = sched_zone_load(cfg->timezone, &err);
    if (a->zone == NULL)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    ev_timer_init(&a->daily_timer, on_daily_timer, 0.0, 0.0);
    a->daily_timer.data = a;
    ev_child_init(&a->daily_child, on_daily_exit, 0, 0);
    a->daily_child.data = a;
    ev_child_init(&a->prune_child, on_prune_exit, 0, 0);
    a->prune_child.data = a;
    plan_daily(a);
    ev_timer_init(&a->snapshot_timer, on_snapshot_timer, 0.0, 0.0);
    a->snapshot_timer.data = a;
    ev_child_init(&a->snapshot_child, on_snapshot_exit, 0, 0);
    a->snapshot_child.data = a;
    return EXIT_OK;
}

int agent_run(struct cli *cli, const struct agent_options *opts)
{
    struct agent a;
    struct cst_err err;
    struct shipper_params sp;
    char *spool = NULL;
    int lock_fd = -1, rc;

    memset(&a, 0, sizeof(a));
    a.cli = cli;
    a.opts = opts;
    a.status = EXIT_OK;
    a.started_mono = util_mono_ms();
    a.started_at = util_now_ms();
    a.recovery_delay = RECOVERY_FIRST_S;
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (opts->watch && cfg_check_watch_paths(cli->cfg, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    a.touched = util_xcalloc(cli->cfg->n_watch_paths + 1, 1);
    a.dirty = util_xcalloc(cli->cfg->n_watch_paths + 1, 1);
    if ((rc = load_keys(&a)) != EXIT_OK)
        goto out;
    lock_fd = cli_lock_agent(cli, &err);
    if (lock_fd < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    if ((rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        goto out;
    a.cat = cli->cat;
    catalog_set_busy_timeout(a.cat, AGENT_BUSY_TIMEOUT_MS);
    /* The loop's commits leave the WAL checkpoints to a thread (catalog/checkpoint.c). */
    if (catalog_checkpointer_start(a.cat, CATALOG_WAL_CHECKPOINT_PAGES, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    catalog_set_max_delay(a.cat, cli->cfg->max_delay_ms);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    a.loop = ev_default_loop(EVFLAG_AUTO);
    a.pool = workpool_new(a.loop, cli->cfg->workers);
    workpool_name(a.pool, "cst-seal");
    /* A batch waiting on the disk must not hold up a sealing worker. */
    a.io_pool = workpool_new(a.loop, 1);
    workpool_name(a.io_pool, "cst-io");
    a.aux_pool = workpool_new(a.loop, 1);
    workpool_name(a.aux_pool, "cst-aux");
    a.curl = curl_ev_new(a.loop);
    ev_timer_init(&a.recovery, on_recovery, RECOVERY_FIRST_S, 0.0);
    a.recovery.data = &a;
    struct dest_env env = {a.loop, a.io_pool, a.curl};
    size_t n_fetch = 0;
    if (dests_open(cli->cfg, &env, &a.dests, &a.n_dests, &err) < 0 ||
        dests_open(cli->cfg, NULL, &a.fetch_dests, &n_fetch, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    /* This process ships: it may mark a destination at first use, and it removes what
     * dead processes left there (temporary files, multipart uploads), in the background. */
    if (dests_usage(a.dests, a.n_dests, a.cat, 1, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < a.n_dests; i++)
        dest_startup(a.dests[i]);
    spool = cli_state_path(cli, "spool");
    if (util_mkdir_p(spool, 0700, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    memset(&sp, 0, sizeof(sp));
    sp.loop = a.loop;
    sp.catalog = a.cat;
    sp.public_key = a.public_key;
    sp.naming_key = a.naming_key;
    sp.spool_dir = spool;
    sp.dests = a.dests;
    sp.n_dests = a.n_dests;
    sp.pool = a.pool;
    sp.workers = cli->cfg->workers;
    sp.settle_ms = cli->cfg->settle_ms;
    sp.max_delay_ms = cli->cfg->max_delay_ms;
    sp.fetch_dests = a.fetch_dests;
    sp.aux_pool = a.aux_pool;
    sp.on_batch = on_batch;
    sp.arg = &a;
    sp.cover_later = opts->watch;
    a.rules = prune_rules(cli->cfg);
    for (size_t d = 0; d < cli->cfg->n_dests; d++)
        if (cli->cfg->dests[d].type == CFG_DEST_S3 && cli->cfg->dests[d].object_lock)
            sp.lock_until = lock_until;
    if (sp.lock_until && (a.zone = sched_zone_load(cli->cfg->timezone, &err)) == NULL) {
        rc = cli_fail(EXIT_USAGE, "%s", err.msg);
        goto out;
    }
    a.shipper = shipper_new(&sp, &err);
    if (a.shipper == NULL) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    if (opts->watch && (rc = start_watching(&a, spool)) != EXIT_OK)
        goto out;
    ev_signal_init(&a.sig_term, on_signal, SIGTERM);
    a.sig_term.data = &a;
    ev_signal_start(a.loop, &a.sig_term);
    ev_signal_init(&a.sig_int, on_signal, SIGINT);
    a.sig_int.data = &a;
    ev_signal_start(a.loop, &a.sig_int);
    ev_timer_init(&a.poll, on_poll, 2.0, 2.0);
    a.poll.data = &a;
    ev_timer_start(a.loop, &a.poll);
    ev_init(&a.stop_check, on_stop_check);
    a.stop_check.data = &a;
    a.stop_check.repeat = 0.1;
    if (opts->until_idle)
        ev_timer_again(a.loop, &a.stop_check);
    shipper_kick(a.shipper);

    ev_run(a.loop, 0);

    if (opts->watch) {
        struct json detail;

        json_init(&detail);
        json_obj_begin(&detail);
        json_key(&detail, "shipped_files");
        json_int(&detail, a.shipped_files);
        json_obj_end(&detail);
        audit(&a, "agent_stop", detail.buf);
        json_free(&detail);
        log_info("agent stopped shipped_files=%lld", (long long)a.shipped_files);
    }
    rc = a.status;
out:
    if (a.in_tx)
        catalog_rollback(a.cat);
    notify_free(a.notify);
    rt_schedule_free(a.rt_schedule);
    alerts_free(a.alerts);
    watcher_free(a.watcher);
    rescan_free(a.rescan);
    control_free(a.control);
    /* Worker threads first: nothing may call back into what is freed next. */
    workpool_free(a.pool);
    workpool_free(a.io_pool);
    workpool_free(a.aux_pool);
    verifier_free(a.verifier);
    shipper_free(a.shipper);
    /* Transfers are removed from the multi handle before their owners go. */
    curl_ev_free(a.curl);
    dests_free(a.dests, a.n_dests);
    dests_free(a.fetch_dests, a.fetch_dests ? a.n_dests : 0);
    a.dests = NULL;
    if (a.loop) {
        ev_signal_stop(a.loop, &a.sig_term);
        ev_signal_stop(a.loop, &a.sig_int);
        ev_timer_stop(a.loop, &a.poll);
        ev_timer_stop(a.loop, &a.metrics);
        ev_timer_stop(a.loop, &a.stop_check);
        ev_timer_stop(a.loop, &a.daily_timer);
        ev_timer_stop(a.loop, &a.recovery);
        ev_child_stop(a.loop, &a.daily_child);
        ev_child_stop(a.loop, &a.prune_child);
        ev_timer_stop(a.loop, &a.snapshot_timer);
        ev_child_stop(a.loop, &a.snapshot_child);
        ev_loop_destroy(a.loop);
        curl_global_cleanup();
    }
    sched_zone_free(a.zone);
    if (a.naming_key)
        sodium_free(a.naming_key);
    for (size_t i = 0; i < a.n_unprot; i++) {
        free(a.unprot[i].path);
        free(a.unprot[i].why);
    }
    free(a.unprot);
    free(a.touched);
    free(a.dirty);
    free(spool);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}
