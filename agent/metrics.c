/*
 * metrics.c - the Prometheus textfile (see metrics.h).
 *
 * Names follow Prometheus conventions: a custodian_ prefix, base units
 * (_seconds, _bytes), _total for counters, _timestamp_seconds for instants.
 * The values are those `custodian status --json` shows, from the same
 * catalog queries.
 */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

struct out {
    char *buf;
    size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        o->cap = o->cap * 2 + (size_t)(n > 0 ? n : 0) + 256;
        o->buf = util_xrealloc(o->buf, o->cap);
    }
}

static void head(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(struct out *o, const char *name, const char *type, const char *help,
                   double value)
{
    head(o, name, type, help);
    put(o, "%s %.17g\n", name, value);
}

/* A label value, escaped as the exposition format wants (\, ", newline). */
static void label(struct out *o, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            put(o, "\\%c", *v);
        else if (*v == '\n')
            put(o, "\\n");
        else
            put(o, "%c", *v);
    }
}

static void per_dest(struct out *o, const struct cfg *cfg, const char *name, const char *help,
                     const double *values)
{
    head(o, name, "gauge", help);
    for (size_t i = 0; i < cfg->n_dests; i++) {
        put(o, "%s{destination=\"", name);
        label(o, cfg->dests[i].name);
        put(o, "\"} %.17g\n", values[i]);
    }
}

static double seconds(int64_t ms)
{
    return (double)ms / 1000.0;
}

/* 0, or -1 with err when the catalog cannot be read (no file is better than zeros). */
static int render(struct out *o, struct catalog *cat, const struct cfg *cfg,
                  const struct metrics_agent *a, struct cst_err *err)
{
    int64_t now = util_now_ms(), depth, oldest, pending, pending_oldest, failing;
    char *last_error = NULL;
    struct catalog_stats st;
    struct catalog_daily daily;
    int rc = -1, have_daily;
    size_t n = cfg->n_dests ? cfg->n_dests : 1;
    double *backlog = util_xcalloc(n, sizeof(double)), *age = util_xcalloc(n, sizeof(double)),
           *success = util_xcalloc(n, sizeof(double)), *fails = util_xcalloc(n, sizeof(double)),
           *lacking = util_xcalloc(n, sizeof(double)), *damaged = util_xcalloc(n, sizeof(double));

    if (catalog_queue_stats(cat, &depth, &oldest, err) < 0 ||
        catalog_pending_stats(cat, &pending, &pending_oldest, err) < 0 ||
        catalog_queue_failing(cat, &failing, &last_error, err) < 0 ||
        catalog_stats(cat, &st, err) < 0 ||
        (have_daily = catalog_daily_get(cat, NULL, &daily, err)) < 0)
        goto out;
    if (pending && (depth == 0 || pending_oldest < oldest))
        oldest = pending_oldest;
    depth += pending;
    metric(o, "custodian_up", "gauge", "1 while the agent runs and writes this file.", 1);
    metric(o, "custodian_agent_start_time_seconds", "gauge", "When the agent started (Unix time).",
           seconds(a->started_at));
    metric(o, "custodian_queue_depth", "gauge",
           "Changes not yet safe on any destination (queued, or sealed and waiting for a first "
           "copy).",
           (double)depth);
    metric(o, "custodian_oldest_unshipped_age_seconds", "gauge",
           "Age of the oldest change not yet safe: the live RPO (0 when nothing waits).",
           depth ? seconds(now - oldest) : 0);
    metric(o, "custodian_files_failing", "gauge", "Queued files whose last attempt failed.",
           (double)failing);
    metric(o, "custodian_live_files", "gauge", "Files whose newest version is live.",
           (double)st.live_files);
    metric(o, "custodian_objects", "gauge", "Distinct objects (contents) stored.",
           (double)st.objects);
    metric(o, "custodian_stored_bytes", "gauge", "Bytes of sealed objects (one copy each).",
           (double)st.stored_bytes);
    for (size_t i = 0; i < cfg->n_dests; i++) {
        struct catalog_coverage cov;
        int64_t b, b_oldest;
        char *e = NULL;

        if (catalog_copy_queue_stats(cat, cfg->dests[i].name, &b, &b_oldest, &e, err) < 0 ||
            catalog_coverage_stats(cat, cfg->dests[i].name, &cov, err) < 0) {
            free(e);
            if (have_daily)
                catalog_daily_clear(&daily);
            goto out;
        }
        free(e);
        backlog[i] = (double)b;
        age[i] = b ? seconds(now - b_oldest) : 0;
        success[i] = seconds(cov.last_verified_at);
        fails[i] = (double)cov.failing;
        lacking[i] = (double)cov.lacking;
        damaged[i] = (double)cov.damaged;
    }
    per_dest(o, cfg, "custodian_destination_backlog", "Copies queued for the destination.",
             backlog);
    per_dest(o, cfg, "custodian_destination_oldest_pending_age_seconds",
             "Age of the destination's oldest queued copy.", age);
    per_dest(o, cfg, "custodian_destination_last_success_timestamp_seconds",
             "When the destination last stored a verified copy (Unix time).", success);
    per_dest(o, cfg, "custodian_destination_failing_copies",
             "Queued copies whose last attempt at the destination failed.", fails);
    per_dest(o, cfg, "custodian_destination_lacking_objects",
             "Retained objects without a good copy on the destination.", lacking);
    per_dest(o, cfg, "custodian_destination_damaged_copies",
             "Copies found missing or different, not yet replaced.", damaged);
    if (have_daily) {
        metric(o, "custodian_daily_last_run_failed", "gauge",
               "1 if the newest daily run failed, 0 if it succeeded or is running.",
               strcmp(daily.status, "failed") == 0);
        catalog_daily_clear(&daily);
    }
    metric(o, "custodian_daily_last_success_timestamp_seconds", "gauge",
           "When the newest successful daily run finished (Unix time, 0: never).",
           seconds(catalog_daily_last_success_at(cat)));
    {
        struct catalog_snapshot_job job;

        if (catalog_snapshot_job_get(cat, &job) >= 0) {
            metric(o, "custodian_snapshot_job_last_success_timestamp_seconds", "gauge",
                   "When the billing-cycle snapshot job last ran without failing (Unix time, "
                   "0: never).",
                   seconds(job.last_ok_at));
            catalog_snapshot_job_clear(&job);
        }
    }
    {
        struct catalog_restore_test t;
        int found = catalog_restore_test_get(cat, NULL, &t, err);

        if (found < 0)
            goto out;
        metric(o, "custodian_restore_test_last_success_timestamp_seconds", "gauge",
               "When the newest passed monthly restore test finished (Unix time, 0: never).",
               seconds(catalog_restore_test_last_passed_at(cat)));
        metric(o, "custodian_restore_test_last_failed", "gauge",
               "1 if the newest restore test failed, 0 if it passed, is running, or was not "
               "complete.",
               found == 1 && strcmp(t.status, "failed") == 0);
        if (found == 1)
            catalog_restore_test_clear(&t);
    }
    {
        struct catalog_prune_run pr;
        int found = catalog_prune_run_last(cat, &pr, err);

        if (found < 0)
            goto out;
        metric(o, "custodian_prune_last_success_timestamp_seconds", "gauge",
               "When the newest confirmed prune that succeeded finished (Unix time, 0: never).",
               seconds(catalog_prune_last_ok_at(cat)));
        metric(
            o, "custodian_prune_last_failed", "gauge",
            "1 if the newest confirmed prune failed, 0 if it succeeded, is running, or none ran.",
            found == 1 && strcmp(pr.status, "failed") == 0);
        if (found == 1)
            free(pr.error);
    }
    metric(o, "custodian_next_lock_expiry_timestamp_seconds", "gauge",
           "When the soonest Object Lock on a stored copy or archived snapshot expires (Unix "
           "time, 0: nothing is locked).",
           seconds(catalog_next_lock_expiry(cat, util_now_ms())));
    metric(o, "custodian_inotify_overflows_total", "counter",
           "inotify queue overflows (each followed by a full rescan).",
           (double)a->inotify_overflows);
    metric(o, "custodian_watched_roots", "gauge", "Configured watched folders.", a->roots);
    metric(o, "custodian_watched_roots_unwatched", "gauge",
           "Watched folders without their watch now (deleted, unmounted, replaced).",
           a->roots_unwatched);
    metric(o, "custodian_catalog_writable", "gauge",
           "1 when the catalog could be written at the last attempt.", a->catalog_writable);
    metric(o, "custodian_unprotected_paths", "gauge",
           "Paths that cannot be protected (e.g. longer than PATH_MAX).",
           (double)a->unprotected_paths);
    rc = 0;
out:
    free(last_error);
    free(backlog);
    free(age);
    free(success);
    free(fails);
    free(lacking);
    free(damaged);
    return rc;
}

int metrics_write(const char *path, struct catalog *cat, const struct cfg *cfg,
                  const struct metrics_agent *agent, struct cst_err *err)
{
    struct out o = {util_xmalloc(4096), 0, 4096};
    char *tmp = util_printf("%s.tmp.%d", path, (int)getpid()), *dir = util_xstrdup(path), *slash;
    int fd, rc = -1;

    if (render(&o, cat, cfg, agent, err) < 0)
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        cst_err_sys(err, "metrics: cannot create %s", tmp);
        goto out;
    }
    if (util_write_all(fd, o.buf, o.len) < 0 || fsync(fd) < 0) {
        cst_err_sys(err, "metrics: cannot write %s", tmp);
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) < 0 || rename(tmp, path) < 0) {
        cst_err_sys(err, "metrics: cannot put %s in place", path);
        unlink(tmp);
        goto out;
    }
    slash = strrchr(dir, '/');
    if (slash && slash != dir)
        *slash = '\0';
    rc = util_fsync_dir(slash ? dir : ".", err);
out:
    free(o.buf);
    free(tmp);
    free(dir);
    return rc;
}
