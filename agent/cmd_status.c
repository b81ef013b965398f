/*
 * cmd_status.c - `custodian status`: one verdict, then the figures behind it.
 *
 * OK means protection is whole: the agent runs and answers, every watched
 * root has its watch, the catalog can be written, no path is known to be
 * unprotectable, nothing is failing to ship, every destination holds a good
 * copy of every retained object (or is copying what it lacks without errors),
 * no copy is known damaged, the daily run is not failing or overdue, the
 * billing-cycle snapshot job is not failing and no period's newest snapshot
 * is incomplete, and the newest restore test did not fail.
 * Anything else is a problem, named on its own line, and the exit status is 1
 * so that a monitor can run this command. Being busy (a backlog that drains)
 * is not a problem; it is shown as "catching up".
 */
#include <bson/bson.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/checklist.h"
#include "agent/cli.h"
#include "agent/control.h"
#include "agent/rt_schedule.h"
#include "agent/sched.h"
#include "common/json.h"
#include "common/util.h"

#define AGENT_ANSWER_MS 3000
#define DAILY_GRACE_S (3 * 3600) /* a run in progress or being retried is not yet overdue */
#define NOTICE_DAYS 7

struct verdict {
    char **problems, **notes;
    size_t n_problems, n_notes;
};

static void add(char ***list, size_t *n, const char *fmt, va_list ap)
{
    char buf[2048];

    vsnprintf(buf, sizeof(buf), fmt, ap);
    *list = util_xrealloc(*list, (*n + 1) * sizeof(char *));
    (*list)[(*n)++] = util_xstrdup(buf);
}

static void problem(struct verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct verdict *v, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    add(&v->problems, &v->n_problems, fmt, ap);
    va_end(ap);
}

static void note(struct verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct verdict *v, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    add(&v->notes, &v->n_notes, fmt, ap);
    va_end(ap);
}

static void verdict_free(struct verdict *v)
{
    for (size_t i = 0; i < v->n_problems; i++)
        free(v->problems[i]);
    for (size_t i = 0; i < v->n_notes; i++)
        free(v->notes[i]);
    free(v->problems);
    free(v->notes);
}

static const char *doc_str(const bson_t *doc, const char *dotted)
{
    bson_iter_t it;

    if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, dotted, &it) &&
        BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

static int64_t doc_int(const bson_t *doc, const char *dotted)
{
    bson_iter_t it;

    if (bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, dotted, &it) &&
        (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_BOOL(&it)))
        return BSON_ITER_HOLDS_BOOL(&it) ? bson_iter_bool(&it) : bson_iter_as_int64(&it);
    return 0;
}

/* What only the running agent knows. */
static void judge_agent(struct verdict *v, const bson_t *h)
{
    bson_iter_t it, arr;
    const char *s;
    int64_t n;

    if (bson_iter_init_find(&it, h, "roots") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            bson_iter_t r;
            const char *path = NULL, *why = NULL;
            int watched = 0;

            if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &r))
                continue;
            while (bson_iter_next(&r)) {
                if (strcmp(bson_iter_key(&r), "path") == 0 && BSON_ITER_HOLDS_UTF8(&r))
                    path = bson_iter_utf8(&r, NULL);
                else if (strcmp(bson_iter_key(&r), "why") == 0 && BSON_ITER_HOLDS_UTF8(&r))
                    why = bson_iter_utf8(&r, NULL);
                else if (strcmp(bson_iter_key(&r), "watched") == 0 && BSON_ITER_HOLDS_BOOL(&r))
                    watched = bson_iter_bool(&r);
            }
            if (!watched)
                problem(v, "watched folder %s is NOT watched: %s", path ? path : "?",
                        why ? why : "?");
        }
    }
    if ((s = doc_str(h, "catalog_error")) != NULL)
        problem(v, "catalog not writable: %s (since %s); changes are rescanned once it is", s,
                doc_str(h, "catalog_error_since") ? doc_str(h, "catalog_error_since") : "?");
    else if ((s = doc_str(h, "shipper_catalog_error")) != NULL)
        problem(v, "catalog not writable: %s", s);
    if ((s = doc_str(h, "catalog_checkpoint_error")) != NULL)
        problem(v, "%s; the catalog's WAL grows until a checkpoint succeeds", s);
    if ((n = doc_int(h, "unprotected_count")) > 0) {
        const char *path = doc_str(h, "unprotected.0.path"), *why = doc_str(h, "unprotected.0.why");

        problem(v, "%lld paths are NOT protected, e.g. %s (%s)", (long long)n, path ? path : "?",
                why ? why : "?");
    }
    if (!doc_int(h, "ready"))
        note(v, "the agent is still scanning the watched folders after its start");
    if ((n = doc_int(h, "unwatched_folders")) > 0)
        note(v,
             "%lld folders have no inotify watch (fs.inotify.max_user_watches); they are "
             "rescanned every 10 s",
             (long long)n);
}

static int print_notice(void *arg, int64_t at, const char *dest, const char *notice)
{
    struct verdict *v = arg;
    char when[40];

    (void)dest;
    util_format_ms(at, when, sizeof(when));
    note(v, "%s (%s)", notice, when);
    return 0;
}

/* The daily run: failing, or owed for longer than a run and its retries take. */
static void judge_daily(struct verdict *v, struct cli *cli, const struct catalog_daily *last,
                        int have_last)
{
    struct cst_err err;
    struct sched_zone *zone = sched_zone_load(cli->cfg->timezone, &err);
    char success[SCHED_DATE_SIZE] = "", due[SCHED_DATE_SIZE];
    int64_t now = util_now_ms() / 1000, at;
    int missed = 0, y, m, d;

    if (have_last && strcmp(last->status, "failed") == 0)
        problem(v, "the daily run for %s FAILED (attempt %d): %s", last->date, last->attempts,
                last->error ? last->error : "see the log");
    if (zone == NULL) {
        problem(v, "%s", err.msg);
        return;
    }
    int64_t installed = 0;

    if (catalog_daily_last_success(cli->cat, success, &err) < 0 ||
        catalog_state_get_int(cli->cat, "installed_at", 0, &installed, &err) < 0) {
        problem(v, "%s", err.msg);
        sched_zone_free(zone);
        return;
    }
    if (!success[0])
        sched_local_date(zone, installed / 1000, success);
    if (sched_due(zone, cli->cfg->daily_hour, cli->cfg->daily_minute, success, now, due, &missed) ==
            1 &&
        sched_parse_date(due, &y, &m, &d) == 0 &&
        sched_run_instant(zone, y, m, d, cli->cfg->daily_hour, cli->cfg->daily_minute, &at) == 0 &&
        now - at > DAILY_GRACE_S)
        problem(v, "the daily run for %s is overdue (last success: %s)", due,
                success[0] ? success : "never");
    sched_zone_free(zone);
}

/* --- billing-cycle snapshots --- */

struct snapshots_seen {
    struct cli *cli;
    struct verdict *v;
    struct catalog_snapshot last; /* newest made */
    int have_last;
    /* per period, its newest package */
    struct {
        char *key, *label, *date, *error;
        int complete, lacking;
        int64_t missing;
    } * newest;
    size_t n;
};

static int see_snapshot(void *arg, const struct catalog_snapshot *s)
{
    struct snapshots_seen *ss = arg;
    size_t i;
    int lacking = 0;

    for (size_t d = 0; d < ss->cli->cfg->n_dests; d++)
        lacking += catalog_snapshot_has_copy(ss->cli->cat, s->id, ss->cli->cfg->dests[d].name) != 1;
    for (i = 0; i < ss->n && strcmp(ss->newest[i].key, s->period_key) != 0; i++)
        ;
    if (i == ss->n) {
        ss->newest = util_xrealloc(ss->newest, (ss->n + 1) * sizeof(*ss->newest));
        memset(&ss->newest[ss->n++], 0, sizeof(*ss->newest));
        ss->newest[i].key = util_xstrdup(s->period_key);
    } else {
        free(ss->newest[i].label);
        free(ss->newest[i].date);
        free(ss->newest[i].error);
    }
    /* Oldest close date first: the last one seen is the period's newest. */
    ss->newest[i].label = util_xstrdup(s->label);
    ss->newest[i].date = util_xstrdup(s->close_date);
    ss->newest[i].error = s->last_error ? util_xstrdup(s->last_error) : NULL;
    ss->newest[i].complete = s->complete;
    ss->newest[i].missing = s->missing;
    ss->newest[i].lacking = lacking;
    if (!ss->have_last || s->created_at >= ss->last.created_at) {
        if (ss->have_last)
            catalog_snapshot_clear(&ss->last);
        ss->last = *s;
        ss->last.label = util_xstrdup(s->label);
        ss->last.period_key = util_xstrdup(s->period_key);
        ss->last.remote_key = util_xstrdup(s->remote_key);
        ss->last.sig_key = util_xstrdup(s->sig_key);
        ss->last.sig = util_xstrdup(s->sig);
        ss->last.spool = s->spool ? util_xstrdup(s->spool) : NULL;
        ss->last.verify_detail = s->verify_detail ? util_xstrdup(s->verify_detail) : NULL;
        ss->last.last_error = s->last_error ? util_xstrdup(s->last_error) : NULL;
        ss->have_last = 1;
    }
    return 0;
}

/* A failing job, or a period whose newest package is incomplete or not everywhere. */
static void judge_snapshots(struct verdict *v, struct cli *cli, struct snapshots_seen *ss,
                            struct catalog_snapshot_job *job)
{
    struct cst_err err;
    char since[40], next[40];
    int failing;

    memset(ss, 0, sizeof(*ss));
    ss->cli = cli;
    ss->v = v;
    memset(job, 0, sizeof(*job));
    if (!cfg_snapshots_on(cli->cfg)) {
        note(v, "billing-cycle snapshots are off (%s)",
             cli->cfg->mongodb_uri ? "[snapshots] enabled = no" : "no [mongodb] uri");
        return;
    }
    if (catalog_snapshot_job_get(cli->cat, job) < 0 ||
        catalog_each_snapshot(cli->cat, see_snapshot, ss, &err) < 0) {
        problem(v, "billing-cycle snapshots: the catalog cannot be read");
        return;
    }
    failing = job->failures > 0;
    if (failing) {
        util_format_ms(job->failing_since, since, sizeof(since));
        util_format_ms(job->next_run_at, next, sizeof(next));
        problem(v,
                "billing-cycle snapshots are FAILING since %s (%lld runs in a row): %s; next "
                "attempt %s",
                since, (long long)job->failures, job->last_error ? job->last_error : "?",
                job->next_run_at ? next : "when the agent runs");
    }
    for (size_t i = 0; i < ss->n; i++) {
        if (!ss->newest[i].complete)
            problem(v,
                    "snapshot %s of %s is INCOMPLETE: %lld referenced files or documents are "
                    "missing (missing.txt); once they are back, close the period again to make "
                    "a complete one",
                    ss->newest[i].label, ss->newest[i].date, (long long)ss->newest[i].missing);
        if (ss->newest[i].lacking && !failing)
            note(v, "snapshot %s of %s is being copied to %d more destination(s)",
                 ss->newest[i].label, ss->newest[i].date, ss->newest[i].lacking);
    }
    if (job->waiting) {
        char *save = NULL;

        for (char *line = strtok_r(job->waiting, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            note(v, "snapshot waits for files: %s", line);
    }
    if (ss->have_last && !ss->last.archived_at)
        note(v,
             "snapshot %s of %s is in no archive storage (no destination has role archive or "
             "archive_class)",
             ss->last.label, ss->last.close_date);
}

static void snapshots_free(struct snapshots_seen *ss, struct catalog_snapshot_job *job)
{
    for (size_t i = 0; i < ss->n; i++) {
        free(ss->newest[i].key);
        free(ss->newest[i].label);
        free(ss->newest[i].date);
        free(ss->newest[i].error);
    }
    free(ss->newest);
    if (ss->have_last)
        catalog_snapshot_clear(&ss->last);
    catalog_snapshot_job_clear(job);
}

/* The monthly restore test: a failed one is a problem (backups that do not restore are no
 * protection); one overdue is a note, as is one that ran without the secret key. */
static void judge_restore_test(struct verdict *v, struct cli *cli, struct catalog_restore_test *t,
                               int *have)
{
    struct cst_err err;
    struct sched_zone *zone;
    char last[8] = "", due[8];
    int64_t installed = 0, next;

    *have = catalog_restore_test_get(cli->cat, NULL, t, &err);
    if (*have < 0) {
        problem(v, "restore tests: %s", err.msg);
        *have = 0;
        return;
    }
    if (*have && strcmp(t->status, "failed") == 0)
        problem(v,
                "the restore test of %s FAILED: %s (report: custodian report restore-test "
                "--month %s)",
                t->month, t->summary ? t->summary : "see its report", t->month);
    else if (*have && strcmp(t->status, "incomplete") == 0)
        note(v, "the restore test of %s is incomplete: %s", t->month,
             t->summary ? t->summary : "checks were not done");
    if (!cli->cfg->rt.enabled || (zone = sched_zone_load(cli->cfg->timezone, &err)) == NULL)
        return;
    if (catalog_restore_test_last_month(cli->cat, last, &err) >= 0 &&
        catalog_state_get_int(cli->cat, "installed_at", 0, &installed, &err) == 0 &&
        rt_schedule_due(zone, cli->cfg->rt.day_of_month, cli->cfg->rt.hour, cli->cfg->rt.minute,
                        last, installed, util_now_ms() / 1000, due, &next) == 1 &&
        !(*have && strcmp(t->status, "running") == 0))
        note(v, "the restore test of %s is owed (the agent runs it; or: custodian restore-test)",
             due);
    sched_zone_free(zone);
}

static void restore_test_json(struct json *j, const struct catalog_restore_test *t, int have)
{
    if (!have) {
        json_null(j);
        return;
    }
    json_obj_begin(j);
    json_key(j, "month");
    json_str(j, t->month);
    json_key(j, "status");
    json_str(j, t->status);
    json_key(j, "trigger");
    json_str(j, t->trigger);
    json_key(j, "started_at");
    json_time(j, t->started_at);
    json_key(j, "finished_at");
    json_time(j, t->finished_at);
    json_key(j, "with_secret_key");
    json_bool(j, t->with_secret_key);
    json_key(j, "checks");
    json_obj_begin(j);
    json_key(j, "db");
    json_str(j, t->db[0] ? t->db : NULL);
    json_key(j, "files");
    json_str(j, t->files[0] ? t->files : NULL);
    json_key(j, "snapshots");
    json_str(j, t->snapshot[0] ? t->snapshot : NULL);
    json_key(j, "archive");
    json_str(j, t->archive[0] ? t->archive : NULL);
    json_key(j, "pruning");
    json_str(j, t->pruning[0] ? t->pruning : NULL);
    json_key(j, "rto");
    json_str(j, t->rto[0] ? t->rto : NULL);
    json_obj_end(j);
    json_key(j, "summary");
    json_str(j, t->summary);
    json_key(j, "report");
    json_str(j, t->report_json);
    json_key(j, "stored_on");
    json_str(j, t->stored_on);
    json_obj_end(j);
}

/* The checklist's state for today: today's daily boxes, and this month's. */
static struct report *checklist_today(struct cli *cli)
{
    struct sched_zone *zone;
    struct cst_err err;
    char today[11];

    if ((zone = sched_zone_load(cli->cfg->timezone, &err)) == NULL)
        return NULL;
    sched_local_date(zone, util_now_ms() / 1000, today);
    sched_zone_free(zone);
    return checklist_build(cli, today, today, today, &err);
}

/* One line per box of a checklist section's first row: "ran yes, manifest NO (why)". */
static void print_checklist_row(const struct report *r, const char *id, const char *label)
{
    for (size_t i = 0; r && i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];

        if (strcmp(s->id, id) != 0)
            continue;
        printf("%-22s ", label);
        if (s->n_rows == 0) {
            printf("%s\n", s->summary ? s->summary : "-");
            return;
        }
        for (size_t c = 1; c < s->n_cols; c++) {
            const struct report_value *v = &s->cells[c];

            if (v->type == RV_BOOL)
                printf("%s %s, ", s->cols[c].title, v->i ? "yes" : "NO");
        }
        printf("%s\n", report_status_name((enum report_status)s->cells[s->n_cols - 2].i));
        if (s->cells[s->n_cols - 1].type == RV_TEXT && s->cells[s->n_cols - 1].text[0])
            printf("%-22s %s\n", "", s->cells[s->n_cols - 1].text);
        return;
    }
}

void cmd_snapshot_json(struct json *j, struct catalog *cat, const struct catalog_snapshot *s);

static void print_time(const char *label, int64_t ms)
{
    char buf[40];

    if (ms <= 0) {
        printf("%-22s never\n", label);
        return;
    }
    util_format_ms(ms, buf, sizeof(buf));
    printf("%-22s %s\n", label, buf);
}

static int cmd_status_exec(struct cli *cli, int argc, char **argv)
{
    struct catalog_stats st;
    struct cst_err err;
    int64_t depth, oldest, failing, now = util_now_ms(), overflows, pending, pending_oldest;
    char *last_error = NULL, *answer = NULL, *sock;
    struct catalog_daily daily;
    struct catalog_coverage *cov;
    struct verdict v = {0};
    struct snapshots_seen snaps;
    struct catalog_snapshot_job job;
    struct catalog_restore_test rtest;
    struct report *today = NULL;
    bson_t *health = NULL;
    bson_error_t berr;
    int rc, running, have_daily, have_rtest = 0, have_prune = 0;
    struct catalog_prune_run prune;

    (void)argv;
    if (argc > 1)
        return cli_fail(EXIT_USAGE, "usage: custodian status [--json]");
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    running = cli_agent_running(cli);
    if (catalog_stats(cli->cat, &st, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);

    /* The agent first: what it alone knows. */
    sock = cli_state_path(cli, "agent.sock");
    if (!running) {
        problem(&v, "the agent is not running: nothing is being protected (start it: systemctl "
                    "start custodian)");
    } else if ((answer = control_query(sock, AGENT_ANSWER_MS, &err)) == NULL) {
        problem(&v, "the agent does not answer: %s", err.msg);
    } else if ((health = bson_new_from_json((const uint8_t *)answer, -1, &berr)) == NULL) {
        problem(&v, "the agent's answer is not readable: %s", berr.message);
    } else {
        judge_agent(&v, health);
    }
    free(sock);

    if (catalog_queue_stats(cli->cat, &depth, &oldest, &err) < 0 ||
        catalog_queue_failing(cli->cat, &failing, &last_error, &err) < 0 ||
        /* Versions sealed but not yet on any destination are unshipped changes too. */
        catalog_pending_stats(cli->cat, &pending, &pending_oldest, &err) < 0 ||
        catalog_state_get_int(cli->cat, "inotify_overflows", 0, &overflows, &err) < 0 ||
        (have_daily = catalog_daily_get(cli->cat, NULL, &daily, &err)) < 0) {
        free(last_error);
        free(answer);
        if (health)
            bson_destroy(health);
        verdict_free(&v);
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    }
    if (pending && (depth == 0 || pending_oldest < oldest))
        oldest = pending_oldest;
    depth += pending;
    /* A run whose process died stays "running" in the catalog until the next run
     * marks it interrupted; say what it is now. */
    if (have_daily && strcmp(daily.status, "running") == 0 &&
        (daily.pid <= 0 || (kill((pid_t)daily.pid, 0) < 0 && errno == ESRCH)))
        snprintf(daily.status, sizeof(daily.status), "interrupted");
    if (failing)
        problem(&v, "%lld files are failing to ship: %s", (long long)failing,
                last_error ? last_error : "?");
    else if (depth)
        note(&v, "catching up: %lld changes queued, the oldest %lld s ago", (long long)depth,
             (long long)(now - oldest) / 1000);

    cov = util_xcalloc(cli->cfg->n_dests + 1, sizeof(*cov));
    for (size_t i = 0; i < cli->cfg->n_dests; i++) {
        const char *name = cli->cfg->dests[i].name;
        struct catalog_coverage *c = &cov[i];
        int64_t backlog, backlog_oldest;
        char *dest_error = NULL;

        if (catalog_coverage_stats(cli->cat, name, c, &err) < 0) {
            problem(&v, "destination %s: %s", name, err.msg);
            continue;
        }
        if (catalog_copy_queue_stats(cli->cat, name, &backlog, &backlog_oldest, &dest_error, &err) <
            0) {
            problem(&v, "destination %s: %s", name, err.msg);
            continue;
        }
        if (c->failing)
            problem(&v, "destination %s is failing (%lld copies waiting): %s", name,
                    (long long)backlog, dest_error ? dest_error : "?");
        if (c->damaged)
            problem(&v,
                    "destination %s has %lld DAMAGED copies (found missing or different); "
                    "they are being copied again",
                    name, (long long)c->damaged);
        if (c->unqueued)
            problem(&v,
                    "destination %s lacks %lld objects that nothing is copying yet (the "
                    "agent queues them at start-up and every 10 minutes)",
                    name, (long long)c->unqueued);
        if (c->artifacts_lacking)
            problem(&v,
                    "destination %s lacks %lld artifacts of earlier daily points (the next "
                    "daily run copies them from another destination)",
                    name, (long long)c->artifacts_lacking);
        if (c->lacking && !c->failing && !c->unqueued)
            note(&v, "destination %s is catching up: %lld objects still to copy", name,
                 (long long)c->lacking);
        free(dest_error);
    }
    judge_daily(&v, cli, &daily, have_daily);
    have_prune = catalog_prune_run_last(cli->cat, &prune, &err);
    if (have_prune < 0) {
        problem(&v, "%s", err.msg);
        have_prune = 0;
    } else if (have_prune == 1) {
        char when[40];

        util_format_ms(prune.finished_at ? prune.finished_at : prune.started_at, when,
                       sizeof(when));
        if (strcmp(prune.status, "failed") == 0)
            problem(&v, "the last prune (%s) FAILED: %s", when, prune.error ? prune.error : "?");
        else
            note(&v, "last prune %s: %s, %lld deleted, %lld kept past a date", when, prune.status,
                 (long long)prune.deleted, (long long)prune.kept);
    } else if (!cli->cfg->prune) {
        note(&v, "retention pruning is off ([retention] prune = no)");
    }
    judge_snapshots(&v, cli, &snaps, &job);
    judge_restore_test(&v, cli, &rtest, &have_rtest);
    today = checklist_today(cli);
    catalog_each_dest_notice(cli->cat, now - (int64_t)NOTICE_DAYS * 86400000, print_notice, &v,
                             &err);
    if (cli->cfg->verify_per_day == 0)
        note(&v, "rolling verification is off ([verify] per_day = 0)");

    if (cli->json) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "verdict");
        json_str(&j, v.n_problems ? "failing" : "ok");
        json_key(&j, "problems");
        json_arr_begin(&j);
        for (size_t i = 0; i < v.n_problems; i++)
            json_str(&j, v.problems[i]);
        json_arr_end(&j);
        json_key(&j, "notes");
        json_arr_begin(&j);
        for (size_t i = 0; i < v.n_notes; i++)
            json_str(&j, v.notes[i]);
        json_arr_end(&j);
        json_key(&j, "agent_running");
        json_bool(&j, running);
        json_key(&j, "agent");
        json_raw(&j, health ? answer : NULL);
        json_key(&j, "queue_depth");
        json_int(&j, depth);
        json_key(&j, "oldest_queued_at");
        json_time(&j, depth ? oldest : 0);
        json_key(&j, "oldest_queued_age_s");
        json_int(&j, depth ? (now - oldest) / 1000 : 0);
        json_key(&j, "failing");
        json_int(&j, failing);
        json_key(&j, "last_error");
        json_str(&j, last_error);
        json_key(&j, "live_files");
        json_int(&j, st.live_files);
        json_key(&j, "versions");
        json_int(&j, st.versions);
        json_key(&j, "objects");
        json_int(&j, st.objects);
        json_key(&j, "stored_bytes");
        json_int(&j, st.stored_bytes);
        json_key(&j, "last_shipped_at");
        json_time(&j, st.last_shipped_at);
        json_key(&j, "inotify_overflows");
        json_int(&j, overflows);
        json_key(&j, "destinations");
        json_arr_begin(&j);
        for (size_t i = 0; i < cli->cfg->n_dests; i++) {
            int64_t backlog, backlog_oldest;
            char *dest_error = NULL;

            if (catalog_copy_queue_stats(cli->cat, cli->cfg->dests[i].name, &backlog,
                                         &backlog_oldest, &dest_error, &err) < 0)
                backlog = backlog_oldest = 0;
            json_obj_begin(&j);
            json_key(&j, "name");
            json_str(&j, cli->cfg->dests[i].name);
            json_key(&j, "copies");
            json_int(&j, cov[i].copies);
            json_key(&j, "backlog");
            json_int(&j, backlog);
            json_key(&j, "oldest_pending_age_s");
            json_int(&j, backlog ? (now - backlog_oldest) / 1000 : 0);
            json_key(&j, "objects_missing");
            json_int(&j, cov[i].lacking);
            json_key(&j, "objects_lacking");
            json_int(&j, cov[i].lacking);
            json_key(&j, "objects_unqueued");
            json_int(&j, cov[i].unqueued);
            json_key(&j, "damaged");
            json_int(&j, cov[i].damaged);
            json_key(&j, "failing");
            json_int(&j, cov[i].failing);
            json_key(&j, "last_verified_at");
            json_time(&j, cov[i].last_verified_at);
            json_key(&j, "oldest_check_at");
            json_time(&j, cov[i].oldest_check);
            json_key(&j, "last_error");
            json_str(&j, backlog ? dest_error : NULL);
            json_obj_end(&j);
            free(dest_error);
        }
        json_arr_end(&j);
        json_key(&j, "last_daily_run");
        if (have_daily) {
            json_obj_begin(&j);
            json_key(&j, "date");
            json_str(&j, daily.date);
            json_key(&j, "status");
            json_str(&j, daily.status);
            json_key(&j, "attempt");
            json_int(&j, daily.attempt);
            json_key(&j, "attempts");
            json_int(&j, daily.attempts);
            json_key(&j, "ok_attempt");
            if (daily.ok_attempt)
                json_int(&j, daily.ok_attempt);
            else
                json_null(&j);
            json_key(&j, "made_on");
            json_str(&j, daily.made_on[0] ? daily.made_on : NULL);
            json_key(&j, "backfill");
            json_bool(&j, daily.backfill);
            json_key(&j, "ran");
            json_bool(&j, daily.ran);
            json_key(&j, "manifest_written");
            json_bool(&j, daily.manifest_written);
            json_key(&j, "offsite_verified");
            json_bool(&j, daily.offsite_verified);
            json_key(&j, "db");
            json_str(&j, daily.db_status);
            json_key(&j, "files");
            json_str(&j, daily.files_status);
            json_key(&j, "catalog");
            json_str(&j, daily.catalog_status);
            json_key(&j, "error");
            json_str(&j, daily.error);
            json_key(&j, "finished_at");
            json_time(&j, daily.finished_at);
            json_obj_end(&j);
        } else {
            json_null(&j);
        }
        json_key(&j, "last_snapshot");
        if (snaps.have_last)
            cmd_snapshot_json(&j, cli->cat, &snaps.last);
        else
            json_null(&j);
        json_key(&j, "snapshot_job");
        json_obj_begin(&j);
        json_key(&j, "enabled");
        json_bool(&j, cfg_snapshots_on(cli->cfg));
        json_key(&j, "last_run_at");
        json_time(&j, job.last_run_at);
        json_key(&j, "last_ok_at");
        json_time(&j, job.last_ok_at);
        json_key(&j, "failures");
        json_int(&j, job.failures);
        json_key(&j, "failing_since");
        json_time(&j, job.failing_since);
        json_key(&j, "last_error");
        json_str(&j, job.last_error);
        json_key(&j, "next_run_at");
        json_time(&j, job.next_run_at);
        json_key(&j, "waiting");
        json_str(&j, job.waiting);
        json_obj_end(&j);
        json_key(&j, "last_restore_test");
        restore_test_json(&j, &rtest, have_rtest);
        /* Every scheduled job's last result, in one place. */
        json_key(&j, "next_lock_expiry");
        json_time(&j, catalog_next_lock_expiry(cli->cat, util_now_ms()));
        json_key(&j, "jobs");
        json_arr_begin(&j);
        json_obj_begin(&j);
        json_key(&j, "job");
        json_str(&j, "daily");
        json_key(&j, "last_result");
        json_str(&j, have_daily ? daily.status : NULL);
        json_key(&j, "for");
        json_str(&j, have_daily ? daily.date : NULL);
        json_key(&j, "finished_at");
        json_time(&j, have_daily ? daily.finished_at : 0);
        json_key(&j, "last_success_at");
        json_time(&j, catalog_daily_last_success_at(cli->cat));
        json_obj_end(&j);
        json_obj_begin(&j);
        json_key(&j, "job");
        json_str(&j, "snapshot");
        json_key(&j, "last_result");
        json_str(&j, !job.last_run_at ? NULL : job.failures ? "failed" : "ok");
        json_key(&j, "for");
        json_null(&j);
        json_key(&j, "finished_at");
        json_time(&j, job.last_run_at);
        json_key(&j, "last_success_at");
        json_time(&j, job.last_ok_at);
        json_obj_end(&j);
        json_obj_begin(&j);
        json_key(&j, "job");
        json_str(&j, "restore_test");
        json_key(&j, "last_result");
        json_str(&j, have_rtest ? rtest.status : NULL);
        json_key(&j, "for");
        json_str(&j, have_rtest ? rtest.month : NULL);
        json_key(&j, "finished_at");
        json_time(&j, have_rtest ? rtest.finished_at : 0);
        json_key(&j, "last_success_at");
        json_time(&j, catalog_restore_test_last_passed_at(cli->cat));
        json_obj_end(&j);
        json_obj_begin(&j);
        json_key(&j, "job");
        json_str(&j, "prune");
        json_key(&j, "last_result");
        json_str(&j, have_prune ? prune.status : NULL);
        json_key(&j, "for");
        json_null(&j);
        json_key(&j, "finished_at");
        json_time(&j, have_prune ? prune.finished_at : 0);
        json_key(&j, "last_success_at");
        json_time(&j, catalog_prune_last_ok_at(cli->cat));
        json_obj_end(&j);
        json_arr_end(&j);
        json_key(&j, "checklist_today");
        if (today) {
            char *doc = report_json(today);

            doc[strlen(doc) - 1] = '\0'; /* its newline */
            json_raw(&j, doc);
            free(doc);
        } else {
            json_null(&j);
        }
        json_obj_end(&j);
        json_print(&j, stdout);
        json_free(&j);
    } else {
        if (v.n_problems)
            printf("FAILING: %zu problem%s; protection is NOT whole\n", v.n_problems,
                   v.n_problems == 1 ? "" : "s");
        else
            printf("OK: protection is whole\n");
        for (size_t i = 0; i < v.n_problems; i++)
            printf("  PROBLEM  %s\n", v.problems[i]);
        for (size_t i = 0; i < v.n_notes; i++)
            printf("  note     %s\n", v.notes[i]);
        printf("\n");
        printf("%-22s %s\n", "agent", running ? "running" : "not running");
        printf("%-22s %lld\n", "queued", (long long)depth);
        if (depth)
            printf("%-22s %lld s (live RPO)\n", "oldest unshipped",
                   (long long)(now - oldest) / 1000);
        printf("%-22s %lld (%lld versions, %lld objects, %lld bytes stored)\n", "live files",
               (long long)st.live_files, (long long)st.versions, (long long)st.objects,
               (long long)st.stored_bytes);
        print_time("last shipped", st.last_shipped_at);
        if (overflows)
            printf("%-22s %lld (each followed by a full rescan)\n", "inotify overflows",
                   (long long)overflows);
        for (size_t i = 0; i < cli->cfg->n_dests; i++) {
            int64_t backlog, backlog_oldest;
            char label[96], *dest_error = NULL;

            if (catalog_copy_queue_stats(cli->cat, cli->cfg->dests[i].name, &backlog,
                                         &backlog_oldest, &dest_error, &err) < 0)
                backlog = backlog_oldest = 0;
            snprintf(label, sizeof(label), "destination %s", cli->cfg->dests[i].name);
            printf("%-22s %lld copies, lacks %lld, damaged %lld, backlog %lld", label,
                   (long long)cov[i].copies, (long long)cov[i].lacking, (long long)cov[i].damaged,
                   (long long)backlog);
            if (backlog)
                printf(" (oldest %lld s)", (long long)(now - backlog_oldest) / 1000);
            printf("\n");
            if (backlog && dest_error)
                printf("%-22s %s\n", "", dest_error);
            free(dest_error);
        }
        if (!have_daily) {
            printf("%-22s never\n", "last daily run");
        } else {
            printf("%-22s %s: %s (attempt %d)", "last daily run", daily.date, daily.status,
                   daily.attempt);
            if (daily.backfill)
                printf(", a backfill made on %s", daily.made_on);
            if (strcmp(daily.status, "ok") != 0 && daily.ok_attempt)
                printf("; attempt %d of that day succeeded", daily.ok_attempt);
            printf("\n");
            printf("%-22s ran %s, manifest %s, verified off-server %s\n", "",
                   daily.ran ? "yes" : "NO", daily.manifest_written ? "yes" : "NO",
                   daily.offsite_verified ? "yes" : "NO");
            printf("%-22s db: %s; files: %s; catalog: %s\n", "",
                   daily.db_status ? daily.db_status : "-",
                   daily.files_status ? daily.files_status : "-",
                   daily.catalog_status ? daily.catalog_status : "-");
            if (daily.error)
                printf("%-22s error: %s\n", "", daily.error);
        }
        if (!snaps.have_last) {
            printf("%-22s %s\n", "last snapshot", cfg_snapshots_on(cli->cfg) ? "none yet" : "off");
        } else {
            const struct catalog_snapshot *ls = &snaps.last;

            printf("%-22s %s of %s: %s, %lld files in the package, %lld by reference, %lld "
                   "missing\n",
                   "last snapshot", ls->label, ls->close_date,
                   ls->complete ? "complete" : "INCOMPLETE", (long long)ls->files,
                   (long long)ls->refs, (long long)ls->missing);
            printf("%-22s created %s, uploaded to archive %s, metadata verified %s\n", "", "yes",
                   ls->archived_at ? "yes" : "NO", ls->verified_at ? "yes" : "NO");
        }
        if (job.failures)
            printf("%-22s failing (%lld runs): %s\n", "snapshot job", (long long)job.failures,
                   job.last_error ? job.last_error : "?");
        if (!have_rtest) {
            printf("%-22s never\n", "last restore test");
        } else {
            printf("%-22s %s: %s%s\n", "last restore test", rtest.month,
                   strcmp(rtest.status, "passed") == 0 ? "passed" : rtest.status,
                   rtest.with_secret_key ? "" : " (run without the secret key)");
            printf("%-22s db %s, files %s, snapshots %s, archive %s, pruning %s, RTO %s\n", "",
                   rtest.db[0] ? rtest.db : "-", rtest.files[0] ? rtest.files : "-",
                   rtest.snapshot[0] ? rtest.snapshot : "-", rtest.archive[0] ? rtest.archive : "-",
                   rtest.pruning[0] ? rtest.pruning : "-", rtest.rto[0] ? rtest.rto : "-");
        }
        if (!have_prune) {
            printf("%-22s %s\n", "last prune", cli->cfg->prune ? "never" : "off");
        } else {
            char when[40];

            util_format_ms(prune.finished_at ? prune.finished_at : prune.started_at, when,
                           sizeof(when));
            printf("%-22s %s: %s, %lld deleted, %lld kept past a date%s%s\n", "last prune", when,
                   prune.status, (long long)prune.deleted, (long long)prune.kept,
                   prune.error ? ": " : "", prune.error ? prune.error : "");
        }
        print_checklist_row(today, "daily", "checklist today");
        print_checklist_row(today, "monthly", "checklist this month");
    }
    rc = v.n_problems ? EXIT_FAILED : EXIT_OK;
    free(cov);
    free(last_error);
    free(answer);
    if (health)
        bson_destroy(health);
    if (have_daily)
        catalog_daily_clear(&daily);
    snapshots_free(&snaps, &job);
    if (have_rtest)
        catalog_restore_test_clear(&rtest);
    if (have_prune)
        free(prune.error);
    report_free(today);
    verdict_free(&v);
    return rc;
}

const struct cmd_entry cmd_status_entry = {
    .name = "status",
    .usage = "",
    .help = "one verdict (exit 1 when protection is not whole), then queue, destinations, "
            "daily run",
    .exec = cmd_status_exec,
};
