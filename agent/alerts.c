/*
 * alerts.c - the events an operator must act on, and the command told of
 * them (see alerts.h).
 *
 * Each evaluation computes the set of events true now from the catalog and
 * from what the agent knows. Against the events already active (kept in the
 * catalog's alerts table and in memory): a new one is told "firing" once it
 * has lasted its hold time (after_minutes for a destination, none for the
 * rest); one that is no longer true is told "cleared" if it was ever told
 * firing, then forgotten. Notifications go out one at a time; one that
 * fails is tried again a minute later, so an operator hears of each event at
 * least once. When the catalog itself cannot be written, memory is the
 * record until it can: alerts and their audit rows are written then.
 */
#include "alerts.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/cmdline.h"
#include "agent/sched.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#define EVERY_S 15.0
#define RETRY_MS 60000
#define KILL_AFTER_S 5.0
#define AUDIT_CHECK_EVERY_MS (6 * 3600 * 1000) /* the whole chain is read: not every tick */
#define DAILY_GRACE_S (3 * 3600)

struct event {
    char *key, *kind, *subject, *message;
    int64_t hold_ms;
};

struct active {
    struct catalog_alert a;
    int seen_now;       /* true in this evaluation */
    int clearing;       /* no longer true: tell "cleared", then forget */
    int64_t not_before; /* a failed notification is tried again after this (ms) */
    int persisted;      /* the catalog has its current state */
};

struct pending_audit {
    char *detail;
};

struct alerts {
    struct ev_loop *loop;
    struct cli *cli;
    void (*agent_state)(void *arg, struct alerts_agent *out);
    void *arg;
    ev_timer tick;
    ev_timer timeout;
    ev_child child;
    struct active *act;
    size_t n_act;
    /* the notification in progress */
    char *running_key;
    int running_cleared;
    int out_fd;
    int killed;
    int64_t started;
    /* audit rows the catalog could not take yet */
    struct pending_audit *audits;
    size_t n_audits;
    int64_t audit_checked_at;
    int audit_broken;
    char audit_error[512];
    int stopping;
};

/* --- events true now --- */

struct events {
    struct event *e;
    size_t n;
};

static void event(struct events *ev, const char *kind, const char *subject, int64_t hold_ms,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void event(struct events *ev, const char *kind, const char *subject, int64_t hold_ms,
                  const char *fmt, ...)
{
    char buf[2048];
    struct event *e;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    ev->e = util_xrealloc(ev->e, (ev->n + 1) * sizeof(*ev->e));
    e = &ev->e[ev->n++];
    e->kind = util_xstrdup(kind);
    e->subject = subject ? util_xstrdup(subject) : NULL;
    e->key = subject ? util_printf("%s:%s", kind, subject) : util_xstrdup(kind);
    e->message = util_xstrdup(buf);
    e->hold_ms = hold_ms;
}

static void events_free(struct events *ev)
{
    for (size_t i = 0; i < ev->n; i++) {
        free(ev->e[i].key);
        free(ev->e[i].kind);
        free(ev->e[i].subject);
        free(ev->e[i].message);
    }
    free(ev->e);
}

static void daily_events(struct alerts *al, struct events *ev)
{
    struct cli *cli = al->cli;
    struct catalog_daily d;
    struct cst_err err;
    struct sched_zone *zone;
    char success[SCHED_DATE_SIZE] = "", due[SCHED_DATE_SIZE];
    int64_t now = util_now_ms() / 1000, at, installed = 0;
    int found = catalog_daily_get(cli->cat, NULL, &d, &err), missed, y, m, dd;

    if (found == 1 && strcmp(d.status, "failed") == 0)
        event(ev, "daily_run_failed", d.date, 0, "the daily run for %s failed (attempt %d): %s",
              d.date, d.attempt, d.error ? d.error : "see the agent's log");
    if (found == 1)
        catalog_daily_clear(&d);
    if ((zone = sched_zone_load(cli->cfg->timezone, &err)) == NULL)
        return;
    if (catalog_daily_last_success(cli->cat, success, &err) >= 0 &&
        catalog_state_get_int(cli->cat, "installed_at", 0, &installed, &err) == 0) {
        if (!success[0])
            sched_local_date(zone, installed / 1000, success);
        if (sched_due(zone, cli->cfg->daily_hour, cli->cfg->daily_minute, success, now, due,
                      &missed) == 1 &&
            sched_parse_date(due, &y, &m, &dd) == 0 &&
            sched_run_instant(zone, y, m, dd, cli->cfg->daily_hour, cli->cfg->daily_minute, &at) ==
                0 &&
            now - at > DAILY_GRACE_S)
            event(ev, "daily_run_missed", due, 0,
                  "the daily run for %s is overdue (last success: %s)", due,
                  success[0] ? success : "never");
    }
    sched_zone_free(zone);
}

struct incomplete {
    struct events *ev;
    struct {
        char *key, *label, *date;
        int complete;
        int64_t missing;
    } * p;
    size_t n;
};

static int on_snapshot(void *arg, const struct catalog_snapshot *s)
{
    struct incomplete *in = arg;
    size_t i;

    for (i = 0; i < in->n && strcmp(in->p[i].key, s->period_key) != 0; i++)
        ;
    if (i == in->n) {
        in->p = util_xrealloc(in->p, (in->n + 1) * sizeof(*in->p));
        memset(&in->p[in->n++], 0, sizeof(*in->p));
        in->p[i].key = util_xstrdup(s->period_key);
    } else {
        free(in->p[i].label);
        free(in->p[i].date);
    }
    in->p[i].label = util_xstrdup(s->label);
    in->p[i].date = util_xstrdup(s->close_date);
    in->p[i].complete = s->complete;
    in->p[i].missing = s->missing;
    return 0;
}

static void evaluate_events(struct alerts *al, struct events *ev)
{
    struct cli *cli = al->cli;
    const struct cfg *cfg = cli->cfg;
    struct alerts_agent ag;
    struct cst_err err;
    int64_t now = util_now_ms(), depth, oldest, pending, pending_oldest;

    memset(&ag, 0, sizeof(ag));
    al->agent_state(al->arg, &ag);
    if (ag.catalog_error)
        event(ev, "catalog_not_writable", NULL, 0,
              "the catalog cannot be written: %s; changes are rescanned once it can",
              ag.catalog_error);
    for (size_t i = 0; i < ag.n_roots; i++)
        if (!ag.roots[i].watched)
            event(ev, "root_not_watched", ag.roots[i].path, 0,
                  "watched folder %s is NOT watched: %s", ag.roots[i].path,
                  ag.roots[i].why ? ag.roots[i].why : "?");
    daily_events(al, ev);
    for (size_t i = 0; i < cfg->n_dests; i++) {
        struct catalog_coverage c;
        int64_t backlog, backlog_oldest;
        char *last = NULL;

        if (catalog_coverage_stats(cli->cat, cfg->dests[i].name, &c, &err) < 0 ||
            catalog_copy_queue_stats(cli->cat, cfg->dests[i].name, &backlog, &backlog_oldest, &last,
                                     &err) < 0) {
            free(last);
            continue;
        }
        if (c.failing)
            event(ev, "destination_failing", cfg->dests[i].name, cfg->alerts.after_ms,
                  "destination %s is failing: %lld copies waiting: %s", cfg->dests[i].name,
                  (long long)backlog, last ? last : "?");
        free(last);
    }
    if (catalog_queue_stats(cli->cat, &depth, &oldest, &err) == 0 &&
        catalog_pending_stats(cli->cat, &pending, &pending_oldest, &err) == 0) {
        if (pending && (depth == 0 || pending_oldest < oldest))
            oldest = pending_oldest;
        if (depth + pending > 0 && now - oldest > cfg->alerts.rpo_ms)
            event(ev, "rpo_exceeded", NULL, 0,
                  "the oldest change not yet safe on a destination is %lld s old (threshold "
                  "%ld s): %lld changes wait",
                  (long long)(now - oldest) / 1000, cfg->alerts.rpo_ms / 1000,
                  (long long)(depth + pending));
    }
    {
        struct catalog_restore_test t;

        if (catalog_restore_test_get(cli->cat, NULL, &t, &err) == 1) {
            if (strcmp(t.status, "failed") == 0)
                event(ev, "restore_test_failed", t.month, 0, "the restore test of %s failed: %s",
                      t.month, t.summary ? t.summary : "see its report");
            catalog_restore_test_clear(&t);
        }
    }
    {
        struct incomplete in = {ev, NULL, 0};

        if (catalog_each_snapshot(cli->cat, on_snapshot, &in, &err) == 0)
            for (size_t i = 0; i < in.n; i++)
                if (!in.p[i].complete) {
                    char *subject = util_printf("%s:%s", in.p[i].label, in.p[i].date);

                    event(ev, "snapshot_incomplete", subject, 0,
                          "snapshot %s of %s is INCOMPLETE: %lld referenced files or documents "
                          "are missing",
                          in.p[i].label, in.p[i].date, (long long)in.p[i].missing);
                    free(subject);
                }
        for (size_t i = 0; i < in.n; i++) {
            free(in.p[i].key);
            free(in.p[i].label);
            free(in.p[i].date);
        }
        free(in.p);
    }
    /* The whole chain is read: at start, then every few hours. */
    if (al->audit_checked_at == 0 || now - al->audit_checked_at >= AUDIT_CHECK_EVERY_MS) {
        int64_t rows;

        al->audit_checked_at = now;
        al->audit_broken = catalog_audit_verify(cli->cat, &rows, &err) < 0 &&
                           strncmp(err.msg, "audit log:", 10) == 0;
        snprintf(al->audit_error, sizeof(al->audit_error), "%s", al->audit_broken ? err.msg : "");
    }
    if (al->audit_broken)
        event(ev, "audit_chain_broken", NULL, 0, "the audit log's hash chain is broken: %s",
              al->audit_error);
}

/* --- records --- */

static void audit_row(struct alerts *al, const struct catalog_alert *a, const char *state,
                      const char *outcome)
{
    struct json j;
    struct cst_err err;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "event");
    json_str(&j, state);
    json_key(&j, "kind");
    json_str(&j, a->kind);
    json_key(&j, "key");
    json_str(&j, a->key);
    json_key(&j, "subject");
    json_str(&j, a->subject);
    json_key(&j, "message");
    json_str(&j, a->message);
    json_key(&j, "since");
    json_time(&j, a->seen_at);
    json_key(&j, "outcome");
    json_str(&j, outcome);
    json_obj_end(&j);
    if (catalog_audit(al->cli->cat, "agent", "alert", j.buf, &err) < 0) {
        /* Kept until the catalog takes it: an alert about the catalog is one of them. */
        al->audits = util_xrealloc(al->audits, (al->n_audits + 1) * sizeof(*al->audits));
        al->audits[al->n_audits++].detail = util_xstrdup(j.buf);
    }
    json_free(&j);
}

static void flush_audits(struct alerts *al)
{
    struct cst_err err;
    size_t done = 0;

    if (al->n_audits == 0)
        return;
    while (done < al->n_audits &&
           catalog_audit(al->cli->cat, "agent", "alert", al->audits[done].detail, &err) == 0)
        free(al->audits[done++].detail);
    memmove(al->audits, al->audits + done, (al->n_audits - done) * sizeof(*al->audits));
    al->n_audits -= done;
}

static void persist(struct alerts *al, struct active *x)
{
    struct cst_err err;
    int rc = x->clearing && x->a.fired_at == 0 ? catalog_alert_delete(al->cli->cat, x->a.key, &err)
                                               : catalog_alert_save(al->cli->cat, &x->a, &err);

    x->persisted = rc == 0;
    if (rc < 0)
        log_warn("cannot record the alert %s: %s", x->a.key, err.msg);
}

/* --- telling the command --- */

static char *env_var(const char *name, const char *value)
{
    return util_printf("%s=%s", name, value ? value : "");
}

static void start_command(struct alerts *al, struct active *x)
{
    const struct cfg *cfg = al->cli->cfg;
    const char *state = x->clearing ? "cleared" : "firing";
    char **argv = NULL, **envp = NULL, host[256] = "", since[40], at[40];
    extern char **environ;
    struct cst_err err;
    struct json j;
    size_t n_env = 0, k = 0;
    int in[2] = {-1, -1};
    pid_t pid;

    if (cmdline_split(cfg->alerts.command, &argv, &err) < 0) {
        log_error("[alerts] command: %s", err.msg);
        x->not_before = util_now_ms() + RETRY_MS;
        return;
    }
    gethostname(host, sizeof(host) - 1);
    util_format_ms(x->a.seen_at, since, sizeof(since));
    util_format_ms(util_now_ms(), at, sizeof(at));
    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "event");
    json_str(&j, state);
    json_key(&j, "kind");
    json_str(&j, x->a.kind);
    json_key(&j, "key");
    json_str(&j, x->a.key);
    json_key(&j, "subject");
    json_str(&j, x->a.subject);
    json_key(&j, "message");
    json_str(&j, x->a.message);
    json_key(&j, "since");
    json_str(&j, since);
    json_key(&j, "at");
    json_str(&j, at);
    json_key(&j, "host");
    json_str(&j, host);
    json_key(&j, "config");
    json_str(&j, al->cli->config_path);
    json_obj_end(&j);
    while (environ[n_env])
        n_env++;
    envp = util_xcalloc(n_env + 10, sizeof(char *));
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "CUSTODIAN_ALERT_", 16) != 0)
            envp[k++] = util_xstrdup(environ[i]);
    envp[k++] = env_var("CUSTODIAN_ALERT_EVENT", state);
    envp[k++] = env_var("CUSTODIAN_ALERT_KIND", x->a.kind);
    envp[k++] = env_var("CUSTODIAN_ALERT_KEY", x->a.key);
    envp[k++] = env_var("CUSTODIAN_ALERT_SUBJECT", x->a.subject);
    envp[k++] = env_var("CUSTODIAN_ALERT_MESSAGE", x->a.message);
    envp[k++] = env_var("CUSTODIAN_ALERT_SINCE", since);
    envp[k++] = env_var("CUSTODIAN_ALERT_AT", at);
    envp[k++] = env_var("CUSTODIAN_ALERT_HOST", host);
    envp[k] = NULL;
    al->out_fd = memfd_create("custodian-alert-output", MFD_CLOEXEC);
    if (al->out_fd < 0 || pipe2(in, O_CLOEXEC) < 0) {
        log_error("cannot run the alert command %s: %s", argv[0], strerror(errno));
        x->not_before = util_now_ms() + RETRY_MS;
        goto out;
    }
    pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls until exec: the agent has threads. */
        if (dup2(in[0], STDIN_FILENO) < 0 || dup2(al->out_fd, STDOUT_FILENO) < 0 ||
            dup2(al->out_fd, STDERR_FILENO) < 0)
            _exit(126);
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL); /* the agent ignores it; the command should not have to */
        execvpe(argv[0], argv, envp);
        _exit(127);
    }
    close(in[0]);
    in[0] = -1;
    if (pid < 0) {
        log_error("cannot run the alert command %s: %s", argv[0], strerror(errno));
        x->not_before = util_now_ms() + RETRY_MS;
        goto out;
    }
    /* A small document: the pipe takes it whole, whatever the command does. */
    if (util_write_all(in[1], j.buf, j.len) < 0 || util_write_all(in[1], "\n", 1) < 0)
        log_warn("the alert command %s did not read its input: %s", argv[0], strerror(errno));
    al->running_key = util_xstrdup(x->a.key);
    al->running_cleared = x->clearing;
    al->killed = 0;
    al->started = util_mono_ms();
    ev_child_set(&al->child, pid, 0);
    ev_child_start(al->loop, &al->child);
    ev_timer_set(&al->timeout, (double)cfg->alerts.timeout_s, 0.0);
    ev_timer_start(al->loop, &al->timeout);
    log_info("alert %s key=%s command=%s", state, x->a.key, argv[0]);
out:
    if (in[0] >= 0)
        close(in[0]);
    if (in[1] >= 0)
        close(in[1]);
    if (al->running_key == NULL && al->out_fd >= 0) {
        close(al->out_fd);
        al->out_fd = -1;
    }
    for (size_t i = 0; envp && envp[i]; i++)
        free(envp[i]);
    free(envp);
    cmdline_free(argv);
    json_free(&j);
}

/* The next notification owed, if none is running. */
static void send_next(struct alerts *al)
{
    int64_t now = util_now_ms();

    if (al->running_key || al->stopping)
        return;
    for (size_t i = 0; i < al->n_act; i++) {
        struct active *x = &al->act[i];

        if (x->not_before > now)
            continue;
        if (x->clearing ? x->a.fired_at > 0 : x->a.fired_at == 0) {
            start_command(al, x);
            if (al->running_key)
                return;
        }
    }
}

static struct active *find_active(struct alerts *al, const char *key)
{
    for (size_t i = 0; i < al->n_act; i++)
        if (strcmp(al->act[i].a.key, key) == 0)
            return &al->act[i];
    return NULL;
}

static void forget(struct alerts *al, struct active *x)
{
    size_t i = (size_t)(x - al->act);

    free(x->a.key);
    free(x->a.kind);
    free(x->a.subject);
    free(x->a.message);
    al->act[i] = al->act[--al->n_act];
}

static void on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    struct alerts *al = w->data;
    int status = w->rstatus, ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    struct active *x = find_active(al, al->running_key);
    char tail[512] = "", outcome[768];
    off_t size;

    (void)revents;
    ev_child_stop(loop, w);
    ev_timer_stop(loop, &al->timeout);
    /* What the command said, for the log and the audit row (secrets masked). */
    size = lseek(al->out_fd, 0, SEEK_END);
    if (size > 0) {
        ssize_t n;
        char *shown;

        lseek(al->out_fd, size > (off_t)sizeof(tail) - 1 ? size - (off_t)sizeof(tail) + 1 : 0,
              SEEK_SET);
        n = util_read_full(al->out_fd, tail, sizeof(tail) - 1);
        tail[n > 0 ? n : 0] = '\0';
        while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
            tail[--n] = '\0';
        shown = cmdline_redact(tail, NULL);
        snprintf(tail, sizeof(tail), "%s", shown);
        free(shown);
    }
    close(al->out_fd);
    al->out_fd = -1;
    if (ok)
        snprintf(outcome, sizeof(outcome), "told");
    else if (al->killed)
        snprintf(outcome, sizeof(outcome),
                 "not told: the command took longer than %d s and was "
                 "stopped",
                 al->cli->cfg->alerts.timeout_s);
    else
        snprintf(outcome, sizeof(outcome), "not told: the command %s %d%s%s",
                 WIFEXITED(status) ? "exited with status" : "was killed by signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), tail[0] ? ": " : "",
                 tail);
    if (x) {
        audit_row(al, &x->a, al->running_cleared ? "cleared" : "firing", outcome);
        if (!ok) {
            log_error("alert %s %s; trying again in a minute", x->a.key, outcome);
            x->not_before = util_now_ms() + RETRY_MS;
        } else if (al->running_cleared) {
            struct cst_err err;

            if (catalog_alert_delete(al->cli->cat, x->a.key, &err) < 0)
                log_warn("cannot record the alert %s: %s", x->a.key, err.msg);
            forget(al, x);
        } else {
            x->a.fired_at = util_now_ms();
            persist(al, x);
        }
    }
    free(al->running_key);
    al->running_key = NULL;
    send_next(al);
}

static void on_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct alerts *al = t->data;

    (void)revents;
    if (!ev_is_active(&al->child))
        return;
    /* The command's whole process group: a script's own children too. */
    kill(-al->child.pid, al->killed ? SIGKILL : SIGTERM);
    kill(al->child.pid, al->killed ? SIGKILL : SIGTERM);
    al->killed = 1;
    ev_timer_set(t, KILL_AFTER_S, 0.0);
    ev_timer_start(loop, t);
}

/* --- the evaluation --- */

static void evaluate(struct alerts *al)
{
    struct events ev = {NULL, 0};
    int64_t now = util_now_ms();

    if (al->stopping)
        return;
    flush_audits(al);
    evaluate_events(al, &ev);
    for (size_t i = 0; i < al->n_act; i++)
        al->act[i].seen_now = 0;
    for (size_t i = 0; i < ev.n; i++) {
        struct active *x = find_active(al, ev.e[i].key);

        if (x == NULL) {
            al->act = util_xrealloc(al->act, (al->n_act + 1) * sizeof(*al->act));
            x = &al->act[al->n_act++];
            memset(x, 0, sizeof(*x));
            x->a.key = util_xstrdup(ev.e[i].key);
            x->a.kind = util_xstrdup(ev.e[i].kind);
            x->a.subject = ev.e[i].subject ? util_xstrdup(ev.e[i].subject) : NULL;
            x->a.message = util_xstrdup(ev.e[i].message);
            x->a.seen_at = now;
            persist(al, x);
        } else if (strcmp(x->a.message, ev.e[i].message) != 0) {
            free(x->a.message);
            x->a.message = util_xstrdup(ev.e[i].message);
            x->persisted = 0;
        }
        x->seen_now = 1;
        x->clearing = 0;
        /* Held back until it has lasted long enough (a destination's after_minutes). */
        if (x->a.fired_at == 0 && now - x->a.seen_at < ev.e[i].hold_ms)
            x->not_before = x->a.seen_at + ev.e[i].hold_ms;
    }
    for (size_t i = 0; i < al->n_act;) {
        struct active *x = &al->act[i];

        if (!x->seen_now && !x->clearing) {
            x->clearing = 1;
            x->not_before = 0;
            if (x->a.fired_at == 0) {
                /* Never told, so there is nothing to take back. */
                persist(al, x);
                if (al->running_key == NULL || strcmp(al->running_key, x->a.key) != 0) {
                    forget(al, x);
                    continue;
                }
            }
        }
        if (!x->persisted && !x->clearing)
            persist(al, x);
        i++;
    }
    events_free(&ev);
    send_next(al);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    evaluate(t->data);
}

struct alerts *alerts_start(struct ev_loop *loop, struct cli *cli,
                            void (*agent_state)(void *arg, struct alerts_agent *out), void *arg)
{
    struct alerts *al;
    struct catalog_alert *rows = NULL;
    size_t n = 0;
    struct cst_err err;

    if (cli->cfg->alerts.command == NULL)
        return NULL;
    al = util_xcalloc(1, sizeof(*al));
    al->loop = loop;
    al->cli = cli;
    al->agent_state = agent_state;
    al->arg = arg;
    al->out_fd = -1;
    if (catalog_alerts_load(cli->cat, &rows, &n, &err) < 0)
        log_error("cannot read the active alerts: %s; they are evaluated afresh", err.msg);
    al->act = util_xcalloc(n + 1, sizeof(*al->act));
    for (size_t i = 0; i < n; i++) {
        al->act[i].a = rows[i];
        al->act[i].persisted = 1;
    }
    al->n_act = n;
    free(rows); /* the strings now belong to al->act */
    ev_timer_init(&al->tick, on_tick, EVERY_S, EVERY_S);
    al->tick.data = al;
    ev_timer_start(loop, &al->tick);
    ev_timer_init(&al->timeout, on_timeout, 0.0, 0.0);
    al->timeout.data = al;
    ev_child_init(&al->child, on_child, 0, 0);
    al->child.data = al;
    return al;
}

void alerts_kick(struct alerts *al)
{
    if (al)
        evaluate(al);
}

void alerts_stop(struct alerts *al)
{
    int64_t until;
    int status;

    if (al == NULL || al->stopping)
        return;
    al->stopping = 1;
    ev_timer_stop(al->loop, &al->tick);
    if (!ev_is_active(&al->child))
        return;
    /* Let a notification in progress finish within its timeout, then stop it. */
    until = util_mono_ms() + (int64_t)al->cli->cfg->alerts.timeout_s * 1000;
    while (waitpid(al->child.pid, &status, WNOHANG) == 0 && util_mono_ms() < until)
        usleep(20 * 1000);
    if (util_mono_ms() >= until) {
        kill(-al->child.pid, SIGKILL);
        kill(al->child.pid, SIGKILL);
        waitpid(al->child.pid, &status, 0);
    }
    ev_child_stop(al->loop, &al->child);
    ev_timer_stop(al->loop, &al->timeout);
}

void alerts_free(struct alerts *al)
{
    if (al == NULL)
        return;
    alerts_stop(al);
    flush_audits(al);
    for (size_t i = 0; i < al->n_act; i++) {
        free(al->act[i].a.key);
        free(al->act[i].a.kind);
        free(al->act[i].a.subject);
        free(al->act[i].a.message);
    }
    free(al->act);
    for (size_t i = 0; i < al->n_audits; i++)
        free(al->audits[i].detail);
    free(al->audits);
    free(al->running_key);
    if (al->out_fd >= 0)
        close(al->out_fd);
    free(al);
}
