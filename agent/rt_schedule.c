/*
 * rt_schedule.c - the monthly restore test's schedule in the agent (see
 * rt_schedule.h).
 */
#include "rt_schedule.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define RETRY_S (15 * 60)

struct rt_schedule {
    struct ev_loop *loop;
    struct cli *cli;
    const struct sched_zone *zone;
    ev_timer timer;
    ev_child child;
    char month[8];
    int stopping;
};

int rt_schedule_due(const struct sched_zone *z, int day, int hour, int min, const char *last_month,
                    int64_t installed_at_ms, int64_t now, char due_month[8], int64_t *next)
{
    int y, m;
    int64_t at;

    if (day < 1 || day > 28)
        return -1;
    sched_localtime(z, now, &y, &m, NULL, NULL, NULL, NULL);
    if (sched_run_instant(z, y, m, day, hour, min, &at) < 0)
        return -1;
    if (at > now) {
        /* This month's is still to come: the latest was last month's. */
        int64_t this_month = at;

        if (--m == 0) {
            m = 12;
            y--;
        }
        if (y < 1 || sched_run_instant(z, y, m, day, hour, min, &at) < 0)
            return -1;
        *next = this_month;
    } else {
        int ny = m == 12 ? y + 1 : y, nm = m == 12 ? 1 : m + 1;

        if (sched_run_instant(z, ny, nm, day, hour, min, next) < 0)
            return -1;
    }
    snprintf(due_month, 8, "%04d-%02d", y, m);
    if (last_month && last_month[0])
        return strcmp(due_month, last_month) > 0;
    return at * 1000 >= installed_at_ms;
}

static void schedule(struct rt_schedule *s, double after, const char *why)
{
    ev_timer_stop(s->loop, &s->timer);
    ev_timer_set(&s->timer, after > 0 ? after : 0.0, 0.0);
    ev_timer_start(s->loop, &s->timer);
    log_info("restore test scheduled month=%s in_s=%.0f (%s)", s->month, after, why);
}

/* What is owed now, else the next one. retry: the last one did not finish. */
static void plan(struct rt_schedule *s, int retry)
{
    const struct cfg *cfg = s->cli->cfg;
    char last[8] = "";
    int64_t installed = 0, now = util_now_ms() / 1000, next = 0;
    struct cst_err err;
    int due;

    if (catalog_restore_test_last_month(s->cli->cat, last, &err) < 0 ||
        catalog_state_get_int(s->cli->cat, "installed_at", 0, &installed, &err) < 0) {
        log_error("cannot read the restore tests from the catalog: %s; trying again in %d "
                  "minutes",
                  err.msg, RETRY_S / 60);
        schedule(s, RETRY_S, "catalog not readable");
        return;
    }
    due = rt_schedule_due(s->zone, cfg->rt.day_of_month, cfg->rt.hour, cfg->rt.minute, last,
                          installed, now, s->month, &next);
    if (due < 0) {
        log_error("cannot compute the next restore test; trying again in an hour");
        schedule(s, 3600.0, "schedule error");
    } else if (due) {
        schedule(s, retry ? RETRY_S : 10.0, retry ? "the last one did not finish" : "owed");
    } else {
        schedule(s, (double)(next - now), "next day_of_month at");
    }
}

static void on_exit_child(struct ev_loop *loop, ev_child *w, int revents)
{
    struct rt_schedule *s = w->data;
    int status = w->rstatus;

    (void)revents;
    ev_child_stop(loop, w);
    if (s->stopping)
        return;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        log_info("restore test passed month=%s", s->month);
    else if (WIFEXITED(status))
        log_error("restore test month=%s did not pass (exit %d): see `custodian report "
                  "restore-test --month %s`",
                  s->month, WEXITSTATUS(status), s->month);
    else
        log_error("restore test month=%s was killed by signal %d", s->month, WTERMSIG(status));
    plan(s, 1);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct rt_schedule *s = t->data;
    pid_t parent = getpid(), pid;

    (void)revents;
    if (ev_is_active(&s->child))
        return;
    pid = fork();
    if (pid == 0) {
        /* An interrupted test is run again; it must not outlive the agent. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1);
        execl("/proc/self/exe", "custodian", "-c", s->cli->config_path, "restore-test", "--month",
              s->month, "--scheduled", (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        log_error("cannot start the restore test: %s; retrying in a minute", strerror(errno));
        schedule(s, 60.0, "fork failed");
        return;
    }
    log_info("restore test started month=%s pid=%d", s->month, (int)pid);
    ev_child_set(&s->child, pid, 0);
    ev_child_start(loop, &s->child);
}

struct rt_schedule *rt_schedule_start(struct ev_loop *loop, struct cli *cli,
                                      const struct sched_zone *zone)
{
    struct rt_schedule *s;

    if (!cli->cfg->rt.enabled)
        return NULL;
    s = util_xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->cli = cli;
    s->zone = zone;
    ev_timer_init(&s->timer, on_timer, 0.0, 0.0);
    s->timer.data = s;
    ev_child_init(&s->child, on_exit_child, 0, 0);
    s->child.data = s;
    plan(s, 0);
    return s;
}

void rt_schedule_stop(struct rt_schedule *s)
{
    int64_t until = util_mono_ms() + 10000;
    pid_t pid;
    int status;

    if (s == NULL || s->stopping)
        return;
    s->stopping = 1;
    ev_timer_stop(s->loop, &s->timer);
    if (!ev_is_active(&s->child))
        return;
    pid = s->child.pid;
    ev_child_stop(s->loop, &s->child);
    kill(pid, SIGTERM);
    while (waitpid(pid, &status, WNOHANG) == 0 && util_mono_ms() < until)
        usleep(20 * 1000);
}

void rt_schedule_free(struct rt_schedule *s)
{
    if (s == NULL)
        return;
    rt_schedule_stop(s);
    free(s);
}
