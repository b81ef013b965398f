/*
 * agent.c - the service: one libev loop, the watcher feeding the catalog's
 * queue, the shipper draining it.
 *
 * Watcher callbacks write to the catalog inside one transaction per burst of
 * events, committed at batch_end (before the loop sleeps again), so an event
 * costs a row, not an fsync. Anything the watcher could have missed while the
 * agent was down is found by the start-up reconciliation.
 */
#include "agent.h"

#include <ev.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/dests.h"
#include "agent/keys.h"
#include "agent/reconcile.h"
#include "agent/sched.h"
#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"
#include "shipper/curl_ev.h"
#include "shipper/shipper.h"
#include "shipper/workpool.h"
#include "watcher/watcher.h"

struct agent {
    struct cli *cli;
    const struct agent_options *opts;
    struct ev_loop *loop;
    struct catalog *cat;
    struct shipper *shipper;
    struct watcher *watcher;
    struct workpool *pool;    /* sealing: hashing, compression, encryption */
    struct workpool *io_pool; /* destinations whose I/O blocks (local: syncfs) */
    struct curl_ev *curl;
    struct dest **dests;
    size_t n_dests;
    unsigned char public_key[32];
    unsigned char *naming_key;
    int in_tx;
    int tx_failed;
    int stopping;
    int status;
    int64_t started_mono;
    int64_t shipped_files;
    ev_signal sig_term, sig_int;
    ev_timer poll;
    ev_timer stop_check;
    /* the daily run, in a child process */
    struct sched_zone *zone;
    ev_timer daily_timer;
    ev_child daily_child;
    char daily_date[SCHED_DATE_SIZE];
};

/* --- catalog writes from watcher events --- */

static int tx(struct agent *a)
{
    struct cst_err err;

    if (a->in_tx)
        return 0;
    if (catalog_begin(a->cat, &err) < 0) {
        log_error("%s", err.msg);
        return -1;
    }
    a->in_tx = 1;
    return 0;
}

static void tx_error(struct agent *a, const char *what, const char *path, struct cst_err *err)
{
    char *shown = pathenc_escape(path, strlen(path));

    log_error("cannot record %s path=%s: %s", what, shown, err->msg);
    free(shown);
    a->tx_failed = 1;
}

static void on_changed(void *arg, const char *path, int closed)
{
    struct agent *a = arg;
    struct cst_err err;
    int64_t now = util_now_ms();

    if (tx(a) < 0)
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

    if (tx(a) < 0)
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

    if (tx(a) < 0)
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

static void rescan(struct agent *a, const char *root, const char *why)
{
    struct reconcile_counts c = {0, 0, 0};
    struct cst_err err;

    if (tx(a) < 0)
        return;
    if (reconcile_tree(a->cat, root, a->cli->cfg->excludes, a->cli->cfg->n_excludes, &c, &err) <
        0) {
        tx_error(a, "rescan", root, &err);
        return;
    }
    if (c.queued || c.tombstoned || strcmp(why, "folder") != 0)
        log_info("rescanned %s (%s): files=%lld queued=%lld deleted=%lld", root, why,
                 (long long)c.seen, (long long)c.queued, (long long)c.tombstoned);
}

static void on_rescan(void *arg, const char *path)
{
    struct agent *a = arg;
    int64_t overflows = a->watcher ? watcher_overflow_count(a->watcher) : 0;
    struct cst_err err;

    rescan(a, path, "folder");
    if (a->in_tx && overflows > 0)
        catalog_state_set_int(a->cat, "inotify_overflows", overflows, &err);
}

static void on_batch_end(void *arg)
{
    struct agent *a = arg;
    struct cst_err err;

    if (!a->in_tx)
        return;
    a->in_tx = 0;
    if (a->tx_failed) {
        /* Lost events are found again by a rescan; nothing here is the only record. */
        catalog_rollback(a->cat);
        a->tx_failed = 0;
        log_warn("events were not recorded; a rescan of every folder will follow");
        for (size_t i = 0; i < a->cli->cfg->n_watch_paths; i++)
            rescan(a, a->cli->cfg->watch_paths[i], "recovery");
        if (a->in_tx) {
            a->in_tx = 0;
            if (a->tx_failed || catalog_commit(a->cat, &err) < 0)
                catalog_rollback(a->cat);
            a->tx_failed = 0;
        }
    } else if (catalog_commit(a->cat, &err) < 0) {
        log_error("%s", err.msg);
    }
    shipper_kick(a->shipper);
}

static const struct watcher_callbacks watcher_cb = {
    .changed = on_changed,
    .removed = on_removed,
    .moved = on_moved,
    .rescan = on_rescan,
    .batch_end = on_batch_end,
};

/* --- lifecycle --- */

static void on_batch(void *arg, size_t files, uint64_t bytes)
{
    struct agent *a = arg;

    (void)bytes;
    a->shipped_files += (int64_t)files;
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

/* What is owed now (a missed run), else the next run at daily_at. */
static void plan_daily(struct agent *a)
{
    const struct cfg *cfg = a->cli->cfg;
    int64_t now = util_now_ms() / 1000, next;
    char last[SCHED_DATE_SIZE] = "";
    int missed = 0;

    if (catalog_daily_last_success(a->cat, last) != 1)
        sched_local_date(a->zone, catalog_state_get_int(a->cat, "installed_at", 0) / 1000, last);
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
    pid_t pid;

    (void)revents;
    if (ev_is_active(&a->daily_child))
        return; /* still running: its exit plans the next */
    pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "custodian", "-c", a->cli->config_path, "daily", "--date",
              a->daily_date, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        log_error("cannot start the daily run: %s; retrying in a minute", strerror(errno));
        schedule_daily(a, 60.0, "retry after fork failure");
        return;
    }
    log_info("daily run started date=%s pid=%d", a->daily_date, (int)pid);
    ev_child_set(&a->daily_child, pid, 0);
    ev_child_start(loop, &a->daily_child);
}

static void begin_stop(struct agent *a)
{
    if (a->stopping)
        return;
    a->stopping = 1;
    watcher_free(a->watcher);
    a->watcher = NULL;
    shipper_stop(a->shipper);
    ev_timer_stop(a->loop, &a->poll);
    ev_timer_stop(a->loop, &a->daily_timer);
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

        catalog_queue_stats(a->cat, &depth, &oldest);
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
    return EXIT_OK;
}

static void audit(struct agent *a, const char *action, const char *detail)
{
    struct cst_err err;

    if (catalog_audit(a->cat, "agent", action, detail, &err) < 0)
        log_error("%s", err.msg);
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
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (opts->watch && cfg_check_watch_paths(cli->cfg, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
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
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    a.loop = ev_default_loop(EVFLAG_AUTO);
    a.pool = workpool_new(a.loop, cli->cfg->workers);
    /* A batch waiting on the disk must not hold up a sealing worker. */
    a.io_pool = workpool_new(a.loop, 1);
    a.curl = curl_ev_new(a.loop);
    struct dest_env env = {a.loop, a.io_pool, a.curl};
    if (dests_open(cli->cfg, &env, &a.dests, &a.n_dests, &err) < 0) {
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
    sp.on_batch = on_batch;
    sp.arg = &a;
    a.shipper = shipper_new(&sp, &err);
    if (a.shipper == NULL) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    if (opts->watch) {
        a.watcher = watcher_new(a.loop, cli->cfg->watch_paths, cli->cfg->n_watch_paths,
                                cli->cfg->excludes, cli->cfg->n_excludes, &watcher_cb, &a, &err);
        if (a.watcher == NULL) {
            rc = cli_fail(EXIT_FAILED, "%s", err.msg);
            goto out;
        }
        /* Watches are in place first; the scan then finds whatever changed while down. */
        for (size_t i = 0; i < cli->cfg->n_watch_paths; i++)
            rescan(&a, cli->cfg->watch_paths[i], "start-up");
        on_batch_end(&a);
        audit(&a, "agent_start", "{}");
        a.zone = sched_zone_load(cli->cfg->timezone, &err);
        if (a.zone == NULL) {
            rc = cli_fail(EXIT_USAGE, "%s", err.msg);
            goto out;
        }
        ev_timer_init(&a.daily_timer, on_daily_timer, 0.0, 0.0);
        a.daily_timer.data = &a;
        ev_child_init(&a.daily_child, on_daily_exit, 0, 0);
        a.daily_child.data = &a;
        plan_daily(&a);
        log_info("agent started: watching %zu folders (%zu watches), %zu destination(s), "
                 "settle_ms=%d",
                 cli->cfg->n_watch_paths, watcher_watch_count(a.watcher), a.n_dests,
                 cli->cfg->settle_ms);
    }
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
        char *detail = util_printf("{\"shipped_files\":%lld}", (long long)a.shipped_files);
        audit(&a, "agent_stop", detail);
        free(detail);
        log_info("agent stopped shipped_files=%lld", (long long)a.shipped_files);
    }
    rc = a.status;
out:
    if (a.in_tx)
        catalog_rollback(a.cat);
    watcher_free(a.watcher);
    /* Worker threads first: nothing may call back into what is freed next. */
    workpool_free(a.pool);
    workpool_free(a.io_pool);
    shipper_free(a.shipper);
    /* Transfers are removed from the multi handle before their owners go. */
    curl_ev_free(a.curl);
    dests_free(a.dests, a.n_dests);
    a.dests = NULL;
    if (a.loop) {
        ev_signal_stop(a.loop, &a.sig_term);
        ev_signal_stop(a.loop, &a.sig_int);
        ev_timer_stop(a.loop, &a.poll);
        ev_timer_stop(a.loop, &a.stop_check);
        ev_timer_stop(a.loop, &a.daily_timer);
        ev_child_stop(a.loop, &a.daily_child);
        ev_loop_destroy(a.loop);
        curl_global_cleanup();
    }
    sched_zone_free(a.zone);
    if (a.naming_key)
        sodium_free(a.naming_key);
    free(spool);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}
