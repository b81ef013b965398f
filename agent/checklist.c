/*
 * checklist.c - the §6 checklist from the catalog (see checklist.h).
 *
 * Each row holds one day, one closed billing period or one month; each box
 * is yes (a recorded fact says so), no (with the reason a gap has), or
 * empty (not yet due, or nothing to check). A section fails when a box that
 * was due is not ticked because something failed or did not happen; it is
 * "not done" when the only gaps are things not performed yet.
 */
#include "checklist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/sched.h"
#include "common/util.h"

#define DAILY_GRACE_S (3 * 3600) /* a run in progress or being retried is not yet a gap */

/* --- dates --- */

static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, char out[11])
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp + (mp < 10 ? 3 : -9);

    snprintf(out, 11, "%04d-%02d-%02d", (int)(y + (m <= 2)), (int)m, (int)d);
}

static int64_t day_number(const char *date)
{
    int y, m, d;

    if (sched_parse_date(date, &y, &m, &d) < 0)
        return INT64_MIN;
    return days_from_civil(y, m, d);
}

/* --- the daily boxes --- */

struct day {
    char date[11];
    int attempts;
    struct catalog_daily best; /* the newest ok attempt, else the newest (strings owned) */
    int have_best, best_ok;
    char *earlier; /* what earlier attempts of the day said */
};

struct days {
    struct day *d;
    size_t n;
    int64_t first; /* day number of d[0] */
};

static char *dup_or_null(const char *s)
{
    return s ? util_xstrdup(s) : NULL;
}

static void keep_best(struct day *day, const struct catalog_daily *a)
{
    if (day->have_best) {
        free(day->best.db_status);
        free(day->best.files_status);
        free(day->best.catalog_status);
        free(day->best.error);
    }
    day->best = *a;
    day->best.db_status = dup_or_null(a->db_status);
    day->best.files_status = dup_or_null(a->files_status);
    day->best.catalog_status = dup_or_null(a->catalog_status);
    day->best.error = dup_or_null(a->error);
    day->have_best = 1;
    day->best_ok = strcmp(a->status, "ok") == 0;
}

static int on_attempt(void *arg, const struct catalog_daily *a)
{
    struct days *ds = arg;
    int64_t k = day_number(a->date) - ds->first;
    struct day *day;

    if (k < 0 || (size_t)k >= ds->n)
        return 0;
    day = &ds->d[k];
    day->attempts++;
    /* Attempts come oldest first: an ok one is kept over any later failure. */
    if (!day->best_ok || strcmp(a->status, "ok") == 0) {
        if (day->have_best && !day->best_ok) {
            char *more = util_printf("%s%sattempt %d %s: %s", day->earlier ? day->earlier : "",
                                     day->earlier ? "; " : "", day->best.attempt, day->best.status,
                                     day->best.error ? day->best.error : "no error recorded");

            free(day->earlier);
            day->earlier = more;
        }
        keep_best(day, a);
    }
    return 0;
}

struct dests_seen {
    char *names;
    int64_t last;
};

static int on_copy(void *arg, const char *dest, int64_t verified_at)
{
    struct dests_seen *ds = arg;
    char *more = util_printf("%s%s%s", ds->names, ds->names[0] ? ", " : "", dest);

    free(ds->names);
    ds->names = more;
    if (verified_at > ds->last)
        ds->last = verified_at;
    return 0;
}

/* The part of a run's error that a box is about ("shipping: ..." for off-server). */
static const char *error_part(const char *error, const char *part)
{
    const char *p;

    if (error == NULL)
        return NULL;
    p = strstr(error, part);
    return p ? p : error;
}

static void daily_section(struct cli *cli, struct report *r, const char *from, const char *to,
                          const char *today, int64_t now_s, const struct sched_zone *zone,
                          int64_t installed_day, struct cst_err *err, int *rc)
{
    struct report_section *s = report_section_add(r, "daily", "Daily");
    struct days ds;
    int64_t lo = day_number(from), hi = day_number(to), t = day_number(today);
    int gaps = 0, pending = 0, rows = 0;
    char first_gap[512] = "";

    report_columns(s, "date", "Date", NULL, "ran", "Backup job ran successfully", NULL, "manifest",
                   "Manifest/checksum created", NULL, "offsite", "Backup copied off-server", NULL,
                   "finished", "Finished", NULL, "destinations", "Verified on", NULL, "attempts",
                   "Attempts", "runs", "result", "Result", NULL, "gap", "Gap, and why", NULL,
                   (char *)NULL);
    if (hi > t)
        hi = t;
    if (lo < installed_day)
        lo = installed_day;
    memset(&ds, 0, sizeof(ds));
    ds.first = lo;
    ds.n = hi >= lo ? (size_t)(hi - lo + 1) : 0;
    ds.d = util_xcalloc(ds.n + 1, sizeof(*ds.d));
    for (size_t i = 0; i < ds.n; i++)
        civil_from_days(lo + (int64_t)i, ds.d[i].date);
    if (ds.n && catalog_each_daily_attempt(cli->cat, ds.d[0].date, ds.d[ds.n - 1].date, on_attempt,
                                           &ds, err) < 0) {
        *rc = -1;
        goto out;
    }
    for (size_t i = 0; i < ds.n; i++) {
        struct day *day = &ds.d[i];
        const struct catalog_daily *b = &day->best;
        struct dests_seen seen = {util_xstrdup(""), 0};
        char gap[1024] = "";
        int ran = 0, manifest = 0, offsite = 0, due = 1;
        enum report_status st;

        if (day->have_best && catalog_each_artifact_copy(cli->cat, b->date, b->attempt,
                                                         "manifest-sig", on_copy, &seen, err) < 0) {
            free(seen.names);
            *rc = -1;
            goto out;
        }
        if (!day->have_best) {
            int y, m, d;
            int64_t at;

            if (strcmp(day->date, today) == 0 && sched_parse_date(day->date, &y, &m, &d) == 0 &&
                sched_run_instant(zone, y, m, d, cli->cfg->daily_hour, cli->cfg->daily_minute,
                                  &at) == 0 &&
                now_s < at + DAILY_GRACE_S) {
                due = 0;
                snprintf(gap, sizeof(gap), "not yet: the run is at %02d:%02d", cli->cfg->daily_hour,
                         cli->cfg->daily_minute);
            } else {
                snprintf(gap, sizeof(gap),
                         "no run recorded for this day (the agent was not running, or missed "
                         "it)");
            }
        } else if (strcmp(b->status, "running") == 0) {
            due = 0;
            snprintf(gap, sizeof(gap), "running (attempt %d)", b->attempt);
        } else {
            ran = day->best_ok && !b->backfill;
            manifest = b->manifest_written;
            offsite = b->offsite_verified;
            if (day->best_ok && b->backfill)
                snprintf(gap, sizeof(gap),
                         "only a backfill, made on %s: that restore point holds the files and "
                         "database as they were on %s",
                         b->made_on[0] ? b->made_on : "a later day",
                         b->made_on[0] ? b->made_on : "that day");
            else if (!day->best_ok)
                snprintf(gap, sizeof(gap), "the run failed (attempt %d): %s", b->attempt,
                         b->error ? b->error : "no error recorded");
            if (!manifest && gap[0] == '\0')
                snprintf(gap, sizeof(gap), "no signed manifest was shipped");
            if (!offsite && (gap[0] == '\0' || day->best_ok)) {
                size_t len = strlen(gap);

                snprintf(gap + len, sizeof(gap) - len, "%snot copied off-server: %s",
                         len ? "; " : "",
                         b->error ? error_part(b->error, "shipping:")
                                  : "not verified on every destination");
            }
        }
        if (day->earlier && (ran && manifest && offsite)) {
            size_t len = strlen(gap);

            snprintf(gap + len, sizeof(gap) - len, "(earlier: %s)", day->earlier);
        }
        st = !due ? REPORT_NOT_DONE : ran && manifest && offsite ? REPORT_PASSED : REPORT_FAILED;
        gaps += st == REPORT_FAILED;
        pending += st == REPORT_NOT_DONE;
        if (st == REPORT_FAILED && first_gap[0] == '\0')
            snprintf(first_gap, sizeof(first_gap), "%s: %s", day->date, gap);
        report_row(s, 400);
        rows++;
        report_cell_text(s, 0, day->date);
        if (due) {
            report_cell_bool(s, 1, ran);
            report_cell_bool(s, 2, manifest);
            report_cell_bool(s, 3, offsite);
        }
        report_cell_time(s, 4, day->have_best ? b->finished_at : 0);
        report_cell_text(s, 5, seen.names);
        report_cell_int(s, 6, day->attempts);
        report_cell_status(s, 7, st);
        report_cell_text(s, 8, gap);
        free(seen.names);
    }
    if (rows == 0)
        report_set(s, REPORT_NOT_APPLICABLE,
                   "no day of the range is both past and after "
                   "custodian was installed");
    else if (gaps)
        report_set(s, REPORT_FAILED, "%d of %d days have a gap; the first, %s", gaps, rows,
                   first_gap);
    else if (pending)
        report_set(s, REPORT_NOT_DONE, "every past day is ticked; today's run is not done yet");
    else
        report_set(s, REPORT_PASSED,
                   "every day of the range: the job ran, its manifest was "
                   "made and it was verified off-server");
out:
    for (size_t i = 0; i < ds.n; i++) {
        if (ds.d[i].have_best) {
            free(ds.d[i].best.db_status);
            free(ds.d[i].best.files_status);
            free(ds.d[i].best.catalog_status);
            free(ds.d[i].best.error);
        }
        free(ds.d[i].earlier);
    }
    free(ds.d);
}

/* --- per billing-cycle close --- */

struct cycles {
    struct report_section *s;
    const char *from, *to; /* YYYYMMDD */
    int rows, gaps, not_yet;
    char first_gap[512];
    int any_archive_dest;
};

static int on_snapshot(void *arg, const struct catalog_snapshot *snap)
{
    struct cycles *c = arg;
    char date[9], gap[1024] = "";
    int complete, archived, verified;
    enum report_status st;

    snprintf(date, sizeof(date), "%.8s", snap->close_date);
    if (strcmp(date, c->from) < 0 || strcmp(date, c->to) > 0)
        return 0;
    complete = snap->complete;
    archived = snap->archived_at > 0;
    verified = snap->verified_at > 0;
    if (!complete)
        snprintf(gap, sizeof(gap), "made INCOMPLETE: %lld referenced files or documents missing",
                 (long long)snap->missing);
    if (!archived) {
        size_t len = strlen(gap);

        snprintf(gap + len, sizeof(gap) - len, "%s%s", len ? "; " : "",
                 c->any_archive_dest ? "no verified copy in archive storage yet"
                                     : "no destination is archive storage (role archive or "
                                       "archive_class)");
    }
    if (!verified) {
        size_t len = strlen(gap);

        snprintf(gap + len, sizeof(gap) - len, "%s%s", len ? "; " : "",
                 "its contents were not verified yet (custodian verify --snapshot, or a "
                 "restore test with the secret key)");
    }
    /* Verification is an operator's (or the monthly test's) step: its absence alone is
     * "not done", not a failure. */
    st = complete && archived && verified ? REPORT_PASSED
         : complete && archived           ? REPORT_NOT_DONE
                                          : REPORT_FAILED;
    c->rows++;
    c->gaps += st == REPORT_FAILED;
    c->not_yet += st == REPORT_NOT_DONE;
    if (st == REPORT_FAILED && c->first_gap[0] == '\0')
        snprintf(c->first_gap, sizeof(c->first_gap), "%s of %s: %s", snap->label, snap->close_date,
                 gap);
    report_row(c->s, 400);
    report_cell_text(c->s, 0, snap->label);
    report_cell_text(c->s, 1, snap->close_date);
    report_cell_bool(c->s, 2, complete);
    report_cell_bool(c->s, 3, archived);
    report_cell_bool(c->s, 4, verified);
    report_cell_time(c->s, 5, snap->created_at);
    report_cell_time(c->s, 6, snap->archived_at);
    report_cell_time(c->s, 7, snap->verified_at);
    report_cell_status(c->s, 8, st);
    report_cell_text(c->s, 9, gap);
    return 0;
}

static void cycles_section(struct cli *cli, struct report *r, const char *from, const char *to,
                           struct cst_err *err, int *rc)
{
    struct report_section *s = report_section_add(r, "cycles", "Per billing cycle close");
    struct cycles c;
    struct catalog_snapshot_job job;

    memset(&c, 0, sizeof(c));
    c.s = s;
    char f[9], t[9];
    snprintf(f, sizeof(f), "%.4s%.2s%.2s", from, from + 5, from + 8);
    snprintf(t, sizeof(t), "%.4s%.2s%.2s", to, to + 5, to + 8);
    c.from = f;
    c.to = t;
    for (size_t i = 0; i < cli->cfg->n_dests; i++) {
        const struct cfg_dest *d = &cli->cfg->dests[i];

        c.any_archive_dest |= d->role == CFG_ROLE_ARCHIVE || d->archive_class != NULL;
    }
    report_columns(s, "label", "Billing period", NULL, "close_date", "Closed", NULL, "created",
                   "Snapshot package created", NULL, "archived",
                   "Snapshot uploaded to archive storage", NULL, "verified",
                   "Snapshot restore test metadata verified", NULL, "created_at", "Created", NULL,
                   "archived_at", "In archive storage", NULL, "verified_at", "Verified", NULL,
                   "result", "Result", NULL, "gap", "Gap, and why", NULL, (char *)NULL);
    if (catalog_each_snapshot(cli->cat, on_snapshot, &c, err) < 0) {
        *rc = -1;
        return;
    }
    memset(&job, 0, sizeof(job));
    if (catalog_snapshot_job_get(cli->cat, &job) >= 0 && job.waiting) {
        char *save = NULL;

        for (char *line = strtok_r(job.waiting, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
            report_row(s, 400);
            report_cell_text(s, 0, line);
            report_cell_bool(s, 2, 0);
            report_cell_status(s, 8, REPORT_NOT_DONE);
            report_cell_text(s, 9, "closed; its snapshot waits for files not yet backed up");
            c.not_yet++;
            c.rows++;
        }
    }
    catalog_snapshot_job_clear(&job);
    if (!cfg_snapshots_on(cli->cfg) && c.rows == 0)
        report_set(s, REPORT_NOT_APPLICABLE, "billing-cycle snapshots are off (%s)",
                   cli->cfg->mongodb_uri ? "[snapshots] enabled = no" : "no [mongodb] uri");
    else if (c.rows == 0)
        report_set(s, REPORT_NOT_APPLICABLE, "no billing period closed in the range");
    else if (c.gaps)
        report_set(s, REPORT_FAILED, "%d of %d closes have a gap; the first, %s", c.gaps, c.rows,
                   c.first_gap);
    else if (c.not_yet)
        report_set(s, REPORT_NOT_DONE, "%d of %d closes are not verified yet (or wait for files)",
                   c.not_yet, c.rows);
    else
        report_set(s, REPORT_PASSED,
                   "every period closed in the range: packaged, in archive "
                   "storage, verified");
}

/* --- monthly --- */

static void monthly_section(struct cli *cli, struct report *r, const char *from, const char *to,
                            const char *today, struct cst_err *err, int *rc)
{
    struct report_section *s = report_section_add(r, "monthly", "Monthly");
    int gaps = 0, pending = 0, rows = 0;
    char first_gap[512] = "";
    int fy, fm, ty, tm, y, m;

    report_columns(s, "month", "Month", NULL, "restore_test", "Test restore (DB + sample files)",
                   NULL, "pruning", "Retention pruning verified", NULL, "archive",
                   "Archive accessibility verified", NULL, "tested_at", "Tested", NULL, "result",
                   "Result", NULL, "gap", "Gap, and why", NULL, (char *)NULL);
    sscanf(from, "%d-%d", &fy, &fm);
    sscanf(to, "%d-%d", &ty, &tm);
    for (y = fy, m = fm; y < ty || (y == ty && m <= tm); m = m == 12 ? 1 : m + 1, y += m == 1) {
        struct catalog_restore_test t;
        char month[8], gap[1024] = "", due_day[11];
        int found, tested = 0, pruning = 0, archive = 0, archive_na = 0, due;
        enum report_status st;

        snprintf(month, sizeof(month), "%04d-%02d", y, m);
        snprintf(due_day, sizeof(due_day), "%s-%02d", month, cli->cfg->rt.day_of_month);
        found = catalog_restore_test_get(cli->cat, month, &t, err);
        if (found < 0) {
            *rc = -1;
            return;
        }
        due = strcmp(due_day, today) < 0;
        if (found == 1) {
            int running = strcmp(t.status, "running") == 0;
            int no_archive = strcmp(t.archive, "not applicable") == 0;

            tested = strcmp(t.db, "passed") == 0 && strcmp(t.files, "passed") == 0;
            pruning = strcmp(t.pruning, "passed") == 0;
            archive = strcmp(t.archive, "passed") == 0;
            if (running)
                snprintf(gap, sizeof(gap), "the restore test is running");
            else if (!tested)
                snprintf(gap, sizeof(gap), "the restore test %s: %s", t.status,
                         t.summary ? t.summary : "");
            if (!running && !pruning) {
                size_t len = strlen(gap);

                /* prune --check, as the restore test ran it */
                snprintf(gap + len, sizeof(gap) - len, "%spruning (prune --check): %s",
                         len ? "; " : "", t.pruning[0] ? t.pruning : "not checked");
            }
            if (!running && !archive && !no_archive) {
                size_t len = strlen(gap);

                snprintf(gap + len, sizeof(gap) - len, "%sarchive accessibility: %s",
                         len ? "; " : "", t.archive[0] ? t.archive : "not checked");
            }
            archive_na = no_archive;
            if (strcmp(t.status, "failed") == 0)
                st = REPORT_FAILED;
            else if (running || !tested || !pruning || !(archive || no_archive))
                st = REPORT_NOT_DONE; /* incomplete: e.g. no secret key on this host */
            else
                st = REPORT_PASSED;
        } else {
            snprintf(gap, sizeof(gap), "%s",
                     due ? "no restore test recorded for this month"
                         : "not yet: the restore test is due on the day "
                           "of [restore_test] day_of_month");
            st = due ? REPORT_FAILED : REPORT_NOT_DONE;
        }
        gaps += st == REPORT_FAILED;
        pending += st == REPORT_NOT_DONE;
        if (st == REPORT_FAILED && first_gap[0] == '\0')
            snprintf(first_gap, sizeof(first_gap), "%s: %s", month, gap);
        report_row(s, 400);
        rows++;
        report_cell_text(s, 0, month);
        if (found == 1 || due) {
            report_cell_bool(s, 1, tested);
            report_cell_bool(s, 2, pruning);
            if (archive_na)
                report_cell_text(s, 3, "nothing archived yet");
            else
                report_cell_bool(s, 3, archive);
        }
        report_cell_time(s, 4, found == 1 ? t.finished_at : 0);
        report_cell_status(s, 5, st);
        report_cell_text(s, 6, gap);
        if (found == 1)
            catalog_restore_test_clear(&t);
    }
    if (gaps)
        report_set(s, REPORT_FAILED, "%d of %d months have a gap; the first, %s", gaps, rows,
                   first_gap);
    else if (pending)
        report_set(s, REPORT_NOT_DONE, "%d of %d months are not verified yet; see each row",
                   pending, rows);
    else
        report_set(s, REPORT_PASSED,
                   "every month: restore test passed, pruning verified, archive accessible");
}

struct report *checklist_build(struct cli *cli, const char *from, const char *to,
                               const char *subject, struct cst_err *err)
{
    struct sched_zone *zone = sched_zone_load(cli->cfg->timezone, err);
    struct report *r;
    char today[11], installed[11];
    int64_t now_ms = util_now_ms(), installed_at = 0;
    int rc = 0;

    if (zone == NULL)
        return NULL;
    if (catalog_state_get_int(cli->cat, "installed_at", 0, &installed_at, err) < 0) {
        sched_zone_free(zone);
        return NULL;
    }
    sched_local_date(zone, now_ms / 1000, today);
    sched_local_date(zone, installed_at / 1000, installed);
    r = report_new("checklist", "Operational checklist (retention plan §6)", subject,
                   cli->cfg->timezone);
    report_fact_text(r, NULL, "from", "From", from);
    report_fact_text(r, NULL, "to", "To", to);
    report_fact_text(r, NULL, "installed", "Custodian installed on (days before are not listed)",
                     installed);
    report_fact_text(r, NULL, "today", "Today (days after are not listed)", today);
    report_fact_text(r, NULL, "source", "Answered from",
                     "the catalog alone: each box is ticked only from a recorded fact");
    daily_section(cli, r, from, to, today, now_ms / 1000, zone, day_number(installed), err, &rc);
    if (rc == 0)
        cycles_section(cli, r, from, to, err, &rc);
    if (rc == 0)
        monthly_section(cli, r, from, to, today, err, &rc);
    sched_zone_free(zone);
    if (rc < 0) {
        report_free(r);
        return NULL;
    }
    report_decide(r, NULL);
    {
        size_t gaps = 0;

        for (size_t i = 0; i < r->n_sections; i++)
            gaps += r->sections[i]->status == REPORT_FAILED;
        if (gaps)
            r->verdict_text = util_printf(
                "%zu section(s) have gaps that need an operator (see the reasons)", gaps);
        else if (r->verdict == REPORT_NOT_DONE)
            r->verdict_text = util_xstrdup("no failure, but boxes remain unticked (not yet due, "
                                           "or not verified yet)");
        else
            r->verdict_text = util_xstrdup("every box is ticked");
    }
    return r;
}
