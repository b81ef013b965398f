/*
 * test_prune_plan.c - agent/prune_plan.c over eight simulated years.
 *
 * A clinic in New York: files edited, created and deleted (with dedup), a
 * daily restore point at 02:00 (some days missed), a snapshot every 14 days,
 * a path hold and a period hold, three destinations (a hot-only NAS, an S3
 * bucket with an archive class, an archive-role bucket). Every day the plan is
 * computed and carried out, and checked against an oracle written here from
 * the rules alone (glibc's mktime in America/New_York for calendar months):
 * nothing is deleted that a rule keeps, everything a rule lets go does go,
 * the restore points kept are exactly the last keep_daily days and the first
 * of each month, snapshots go the day after close + 84 months, hot copies go
 * only with min_copies verified archive copies, and a clock that goes back
 * never deletes more.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/prune_plan.h"

#define DAY 86400000LL
#define N_PATHS 24
#define MAX_OBJ 8192
#define MAX_VER 12288
#define MAX_PTS 4096
#define MAX_SNAP 256

static struct sched_zone *ny;

/* ---- the oracle's calendar: glibc in New York ---- */

static int64_t oracle_local(int y, int mo, int d, int h, int mi)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm) * 1000;
}

static int64_t oracle_add_months(int64_t t, int months)
{
    time_t s = (time_t)(t / 1000);
    struct tm tm;
    int dim;

    localtime_r(&s, &tm);
    tm.tm_mon += months;
    tm.tm_year += tm.tm_mon / 12;
    tm.tm_mon %= 12;
    if (tm.tm_mon < 0) {
        tm.tm_mon += 12;
        tm.tm_year--;
    }
    {
        static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int y = tm.tm_year + 1900;

        dim = dm[tm.tm_mon] + (tm.tm_mon == 1 && ((y % 4 == 0 && y % 100) || y % 400 == 0));
    }
    if (tm.tm_mday > dim)
        tm.tm_mday = dim;
    tm.tm_isdst = -1;
    return (int64_t)mktime(&tm) * 1000 + t % 1000;
}

static void oracle_date(int64_t t, int *y, int *m, int *d)
{
    time_t s = (time_t)(t / 1000);
    struct tm tm;

    localtime_r(&s, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

/* ---- plan_add_months against the oracle ---- */

static void test_add_months(void **state)
{
    (void)state;
    /* month ends and leap days */
    assert_int_equal(plan_add_months(ny, oracle_local(2024, 1, 31, 10, 0), 1),
                     oracle_local(2024, 2, 29, 10, 0));
    assert_int_equal(plan_add_months(ny, oracle_local(2023, 1, 31, 10, 0), 1),
                     oracle_local(2023, 2, 28, 10, 0));
    assert_int_equal(plan_add_months(ny, oracle_local(2024, 2, 29, 10, 0), 12),
                     oracle_local(2025, 2, 28, 10, 0));
    assert_int_equal(plan_add_months(ny, oracle_local(2026, 12, 3, 9, 0), 84),
                     oracle_local(2033, 12, 3, 9, 0));
    assert_int_equal(plan_add_months(ny, oracle_local(2026, 12, 3, 9, 0), -24),
                     oracle_local(2024, 12, 3, 9, 0));
    /* across DST: the same wall time, whatever the offset */
    assert_int_equal(plan_add_months(ny, oracle_local(2026, 1, 15, 2, 0), 6),
                     oracle_local(2026, 7, 15, 2, 0));
    /* a wall time that does not exist (spring forward) comes out an hour later */
    assert_int_equal(plan_add_months(ny, oracle_local(2026, 2, 8, 2, 30), 1),
                     oracle_local(2026, 3, 8, 3, 30));
    /* 2,000 instants over 10 years, every month count up to 84 */
    srand(7);
    for (int i = 0; i < 2000; i++) {
        int64_t t = oracle_local(2026, 1, 1, 0, 0) + (int64_t)(rand() % (3650 * 24)) * 3600000 +
                    (rand() % 3600) * 1000;
        int months = rand() % 85;
        int64_t got = plan_add_months(ny, t, months), want = oracle_add_months(t, months);

        /* a repeated hour (fall back): both answers are the "same" wall time */
        if (got != want)
            assert_int_equal(llabs(got - want), 3600000);
    }
}

/* ---- the simulated clinic ---- */

struct sim {
    struct plan_dest dests[3];
    struct plan_object objects[MAX_OBJ];
    char ids[MAX_OBJ][12];
    int object_deleted[MAX_OBJ];
    struct plan_version versions[MAX_VER];
    size_t n_versions, n_objects;
    struct plan_copy copies[MAX_OBJ * 3];
    size_t n_copies;
    struct plan_point points[MAX_PTS];
    int point_deleted[MAX_PTS];
    size_t n_points;
    struct plan_snapshot snaps[MAX_SNAP];
    char labels[MAX_SNAP][16];
    size_t *snap_refs[MAX_SNAP];
    int snap_deleted[MAX_SNAP];
    size_t n_snaps;
    char paths[N_PATHS][32];
    int live_version[N_PATHS]; /* index, -1: no file */
    struct plan_hold holds[2];
    size_t n_holds;
    struct plan_rules rules;
};

static size_t new_object(struct sim *s, int64_t now)
{
    size_t o = s->n_objects++;

    assert_true(o < MAX_OBJ);
    snprintf(s->ids[o], sizeof(s->ids[o]), "o%05zu", o);
    s->objects[o].id = s->ids[o];
    for (size_t d = 0; d < 3; d++)
        s->copies[s->n_copies++] = (struct plan_copy){o, d, d == 2 ? PLAN_ARCHIVE : PLAN_HOT, 1, 0};
    (void)now;
    return o;
}

/* The plan's input for the sim's state at now (only what exists by then). */
struct view {
    struct plan_input in;
    struct plan_version versions[MAX_VER];
    struct plan_copy copies[MAX_OBJ * 3];
    struct plan_point points[MAX_PTS];
    size_t point_index[MAX_PTS];
    struct plan_snapshot snaps[MAX_SNAP];
    size_t snap_index[MAX_SNAP];
};

static void make_view(struct sim *s, struct view *v, int64_t now)
{
    memset(&v->in, 0, sizeof(v->in));
    v->in.rules = s->rules;
    v->in.zone = ny;
    v->in.now = now;
    v->in.dests = s->dests;
    v->in.n_dests = 3;
    v->in.objects = s->objects;
    v->in.n_objects = s->n_objects;
    size_t n = 0;
    for (size_t i = 0; i < s->n_versions; i++)
        if (!s->object_deleted[s->versions[i].object] && s->versions[i].captured_at <= now) {
            v->versions[n] = s->versions[i];
            if (v->versions[n].deleted_at > now)
                v->versions[n].deleted_at = 0;
            n++;
        }
    v->in.versions = v->versions;
    v->in.n_versions = n;
    n = 0;
    for (size_t i = 0; i < s->n_copies; i++)
        if (!s->object_deleted[s->copies[i].object] && s->copies[i].dest != SIZE_MAX)
            v->copies[n++] = s->copies[i];
    v->in.copies = v->copies;
    v->in.n_copies = n;
    n = 0;
    for (size_t i = 0; i < s->n_points; i++)
        if (!s->point_deleted[i] && s->points[i].at <= now) {
            v->point_index[n] = i;
            v->points[n++] = s->points[i];
        }
    v->in.points = v->points;
    v->in.n_points = n;
    n = 0;
    for (size_t i = 0; i < s->n_snaps; i++)
        if (!s->snap_deleted[i] && s->snaps[i].closed_at <= now) {
            v->snap_index[n] = i;
            v->snaps[n++] = s->snaps[i];
        }
    v->in.snapshots = v->snaps;
    v->in.n_snapshots = n;
    v->in.holds = s->holds;
    v->in.n_holds = s->n_holds;
}

/* ---- the oracle: the rules, written out plainly ---- */

struct oracle {
    unsigned char point_kept[MAX_PTS], snap_kept[MAX_SNAP], in_kept_snap[MAX_OBJ];
    int64_t kept_at[MAX_PTS]; /* instants of kept points, sorted */
    size_t n_kept;
};

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static int held_path(const struct view *v, const char *path)
{
    for (size_t h = 0; h < v->in.n_holds; h++) {
        const char *hp = v->in.holds[h].path;

        if (v->in.holds[h].kind == PLAN_HOLD_PATH &&
            (strcmp(path, hp) == 0 ||
             (strncmp(path, hp, strlen(hp)) == 0 && path[strlen(hp)] == '/')))
            return 1;
    }
    return 0;
}

static void oracle_build(const struct view *v, int64_t now, struct oracle * or)
{
    int ty, tm, td;
    int64_t today;

    memset(or, 0, sizeof(* or));
    oracle_date(now, &ty, &tm, &td);
    today = oracle_local(ty, tm, td, 12, 0) / DAY;
    for (size_t k = 0; k < v->in.n_points; k++) {
        const struct plan_point *p = &v->points[k];
        int first = 1, kept;

        for (size_t j = 0; j < v->in.n_points; j++)
            if (v->points[j].year == p->year && v->points[j].mon == p->mon &&
                v->points[j].at < p->at)
                first = 0;
        /* the last keep_daily days, whole */
        kept = oracle_local(p->year, p->mon, p->day, 12, 0) / DAY > today - v->in.rules.keep_daily;
        /* the first of each month, for keep_monthly_months */
        if (first && now < oracle_add_months(p->at, v->in.rules.keep_monthly_months))
            kept = 1;
        /* a period hold keeps the points inside the period */
        for (size_t h = 0; h < v->in.n_holds; h++)
            if (v->in.holds[h].kind == PLAN_HOLD_PERIOD)
                for (size_t s = 0; s < v->in.n_snapshots; s++)
                    if (strcmp(v->snaps[s].label, v->in.holds[h].period) == 0 &&
                        p->at >= v->snaps[s].period_start && p->at <= v->snaps[s].period_end)
                        kept = 1;
        or->point_kept[k] = (unsigned char)kept;
        if (kept)
            or->kept_at[or->n_kept++] = p->at;
    }
    qsort(or->kept_at, or->n_kept, sizeof(int64_t), cmp64);
    for (size_t s = 0; s < v->in.n_snapshots; s++) {
        int kept = now < oracle_add_months(v->snaps[s].closed_at, v->in.rules.delete_after_months);

        for (size_t h = 0; h < v->in.n_holds; h++)
            if (v->in.holds[h].kind == PLAN_HOLD_PERIOD &&
                strcmp(v->in.holds[h].period, v->snaps[s].label) == 0)
                kept = 1;
        or->snap_kept[s] = (unsigned char)kept;
        for (size_t k = 0; kept && k < v->snaps[s].n_objects; k++)
            or->in_kept_snap[v->snaps[s].objects[k]] = 1;
    }
}

/* A kept point taken while the version was live, [captured, deleted)? */
static int seen_by_kept_point(const struct oracle * or, const struct plan_version *ver)
{
    size_t lo = 0, hi = or->n_kept;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (or->kept_at[mid] < ver->captured_at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < or->n_kept && or->kept_at[lo] < ver->deleted_at;
}

/* 1 deletable, 0 kept, -1 no version (not judged). */
static int oracle_deletable(const struct view *v, const struct oracle * or, size_t o, int64_t now,
                            const size_t *vs, size_t nv)
{
    if (nv == 0)
        return -1;
    if (or->in_kept_snap[o])
        return 0;
    for (size_t i = 0; i < nv; i++) {
        const struct plan_version *ver = &v->versions[vs[i]];

        if (ver->deleted_at == 0 || held_path(v, ver->path) ||
            oracle_add_months(ver->captured_at, v->in.rules.delete_after_months) > now ||
            seen_by_kept_point(or, ver))
            return 0;
    }
    return 1;
}

static int has(const struct plan_output *out, enum plan_action_kind kind, size_t index, size_t dest)
{
    for (size_t i = 0; i < out->n_actions; i++)
        if (out->actions[i].kind == kind && out->actions[i].index == index &&
            (kind != PLAN_TRANSITION && kind != PLAN_DELETE_COPY ? 1
                                                                 : out->actions[i].dest == dest))
            return 1;
    return 0;
}

static void check_plan(struct view *v, const struct plan_output *out, int64_t now)
{
    static struct oracle or ;
    static size_t start[MAX_OBJ + 1], list[MAX_VER], fill[MAX_OBJ];
    static unsigned char planned_delete[MAX_OBJ];

    oracle_build(v, now, & or);
    memset(start, 0, sizeof(start));
    memset(fill, 0, sizeof(fill));
    memset(planned_delete, 0, sizeof(planned_delete));
    for (size_t i = 0; i < v->in.n_versions; i++)
        start[v->versions[i].object + 1]++;
    for (size_t o = 0; o < v->in.n_objects; o++)
        start[o + 1] += start[o];
    for (size_t i = 0; i < v->in.n_versions; i++) {
        size_t o = v->versions[i].object;

        list[start[o] + fill[o]++] = i;
    }
    for (size_t i = 0; i < out->n_actions; i++)
        if (out->actions[i].kind == PLAN_DELETE_OBJECT)
            planned_delete[out->actions[i].index] = 1;
    /* deletions: exactly what the rules allow */
    for (size_t o = 0; o < v->in.n_objects; o++) {
        int want = oracle_deletable(v, & or, o, now, list + start[o], start[o + 1] - start[o]);

        if (want >= 0 && want != planned_delete[o])
            fail_msg("object %zu at %lld: oracle says %d, plan says %d", o, (long long)now, want,
                     planned_delete[o]);
    }
    for (size_t k = 0; k < v->in.n_points; k++)
        if (or.point_kept[k] != out->point_kept[k])
            fail_msg("point %04d-%02d-%02d at %lld: oracle %d, plan %d", v->points[k].year,
                     v->points[k].mon, v->points[k].day, (long long)now, or.point_kept[k],
                     out->point_kept[k]);
    for (size_t s = 0; s < v->in.n_snapshots; s++)
        assert_int_equal(or.snap_kept[s], out->snapshot_kept[s]);
    /* tiers */
    for (size_t i = 0; i < out->n_actions; i++) {
        const struct plan_action *a = &out->actions[i];
        size_t archived = 0;
        int64_t hot_until = 0;

        if (a->kind != PLAN_TRANSITION && a->kind != PLAN_DELETE_COPY)
            continue;
        for (size_t k = start[a->index]; k < start[a->index + 1]; k++) {
            const struct plan_version *ver = &v->versions[list[k]];
            int64_t hu = oracle_add_months(ver->captured_at, v->in.rules.hot_months);

            if (hu > hot_until)
                hot_until = hu;
            if (a->kind == PLAN_DELETE_COPY)
                assert_false(held_path(v, ver->path)); /* a hold freezes tier deletions */
        }
        assert_true(now >= hot_until);
        assert_false(planned_delete[a->index]);
        if (a->kind == PLAN_TRANSITION) {
            assert_int_equal(a->dest, 1); /* only the S3 bucket with an archive class */
            continue;
        }
        assert_int_equal(a->dest, 0); /* only the hot-only NAS */
        for (size_t c = 0; c < v->in.n_copies; c++)
            archived += v->copies[c].object == a->index && v->copies[c].tier == PLAN_ARCHIVE &&
                        v->copies[c].verified;
        assert_true(archived >= (size_t)v->in.rules.min_copies);
    }
}

static void apply(struct sim *s, struct view *v, const struct plan_output *out, int64_t now,
                  int *deleted_objects)
{
    for (size_t i = 0; i < out->n_actions; i++) {
        const struct plan_action *a = &out->actions[i];

        switch (a->kind) {
        case PLAN_DELETE_OBJECT:
            s->object_deleted[a->index] = 1;
            (*deleted_objects)++;
            break;
        case PLAN_DELETE_POINT:
            s->point_deleted[v->point_index[a->index]] = 1;
            break;
        case PLAN_DELETE_SNAPSHOT:
            s->snap_deleted[v->snap_index[a->index]] = 1;
            break;
        case PLAN_TRANSITION:
        case PLAN_DELETE_COPY:
            for (size_t c = 0; c < s->n_copies; c++)
                if (s->copies[c].object == a->index && s->copies[c].dest == a->dest) {
                    if (a->kind == PLAN_TRANSITION)
                        s->copies[c].tier = PLAN_ARCHIVE;
                    else
                        s->copies[c].dest = SIZE_MAX; /* gone */
                }
            break;
        }
    }
    (void)now;
}

static void test_eight_years(void **state)
{
    struct sim *s = calloc(1, sizeof(*s));
    struct view *v = calloc(1, sizeof(*v)), *back = calloc(1, sizeof(*back));
    int64_t start = oracle_local(2026, 1, 1, 0, 0);
    int deleted_objects = 0, transitions = 0, hot_deleted = 0, kept_live = 0, kept_hold = 0;
    unsigned seed = 11;

    (void)state;
    s->rules = (struct plan_rules){24, 84, 35, 84, 2};
    s->dests[0] = (struct plan_dest){"nas", 0, 0};
    s->dests[1] = (struct plan_dest){"s3", 0, 1};
    s->dests[2] = (struct plan_dest){"glacier", 1, 0};
    for (int p = 0; p < N_PATHS; p++) {
        snprintf(s->paths[p], sizeof(s->paths[p]), "/app/data/invoices/f%02d.pdf", p);
        s->live_version[p] = -1;
    }
    for (int day = 0; day < 8 * 366; day++) {
        int y, m, d;
        int64_t noon;

        oracle_date(start + (int64_t)day * DAY + 12 * 3600000LL, &y, &m, &d);
        noon = oracle_local(y, m, d, 10, 0);
        if (day == 0) {
            /* a file nobody ever touches again: past retention, still live */
            size_t o = new_object(s, noon);

            s->versions[s->n_versions++] =
                (struct plan_version){o, "/app/data/images/logo.png", noon - 60000, 0};
        }
        /* edits at 10:00: a new version of one file, sometimes the content of an older
         * one (dedup), sometimes a deletion */
        for (int k = 0; k < 2; k++) {
            int p = (int)(rand_r(&seed) % N_PATHS), r = (int)(rand_r(&seed) % 10);
            int64_t at = noon + k * 60000;

            if (s->live_version[p] >= 0 && r == 0) {
                s->versions[s->live_version[p]].deleted_at = at;
                s->live_version[p] = -1;
                continue;
            }
            size_t o = (r == 1 && s->n_objects > 0) ? (size_t)rand_r(&seed) % s->n_objects
                                                    : new_object(s, at);
            if (s->object_deleted[o])
                o = new_object(s, at);
            if (s->live_version[p] >= 0)
                s->versions[s->live_version[p]].deleted_at = at;
            assert_true(s->n_versions < MAX_VER);
            s->versions[s->n_versions] = (struct plan_version){o, s->paths[p], at, 0};
            s->live_version[p] = (int)s->n_versions++;
        }
        /* the daily point at 02:00, except on some missed days */
        if (rand_r(&seed) % 17 != 0) {
            s->points[s->n_points] = (struct plan_point){y, m, d, oracle_local(y, m, d, 2, 0)};
            s->n_points++;
        }
        /* a billing period closes every 14 days */
        if (day % 14 == 13) {
            size_t n = s->n_snaps++, cnt = 0;

            snprintf(s->labels[n], sizeof(s->labels[n]), "P%03zu", n);
            s->snap_refs[n] = calloc(N_PATHS, sizeof(size_t));
            for (int p = 0; p < N_PATHS; p++)
                if (s->live_version[p] >= 0)
                    s->snap_refs[n][cnt++] = s->versions[s->live_version[p]].object;
            s->snaps[n] = (struct plan_snapshot){s->labels[n],
                                                 oracle_local(y, m, d, 18, 0),
                                                 oracle_local(y, m, d, 18, 0) - 14 * DAY,
                                                 oracle_local(y, m, d, 18, 0),
                                                 s->snap_refs[n],
                                                 cnt};
        }
        /* legal holds: on f07 from year 2 on, and on period P010 from year 3 on */
        s->n_holds = 0;
        if (day >= 366)
            s->holds[s->n_holds++] =
                (struct plan_hold){PLAN_HOLD_PATH, "/app/data/invoices/f07.pdf", NULL, 0};
        if (day >= 2 * 366)
            s->holds[s->n_holds++] = (struct plan_hold){PLAN_HOLD_PERIOD, NULL, "P010", 0};

        /* the daily prune, at 03:00 */
        int64_t now = oracle_local(y, m, d, 3, 0);
        struct plan_output out;

        make_view(s, v, now);
        assert_int_equal(plan_compute(&v->in, &out), 0);
        if (day % 5 == 0 || day + 1 == 8 * 366)
            check_plan(v, &out, now);
        for (size_t i = 0; i < out.n_actions; i++) {
            transitions += out.actions[i].kind == PLAN_TRANSITION;
            hot_deleted += out.actions[i].kind == PLAN_DELETE_COPY;
        }
        for (size_t i = 0; i < out.n_keeps; i++) {
            kept_live += (out.keeps[i].reasons & PLAN_KEEP_LIVE) != 0;
            kept_hold += (out.keeps[i].reasons & PLAN_KEEP_HOLD) != 0;
        }
        /* a clock that goes back a month never deletes more */
        if (day % 97 == 0) {
            struct plan_output earlier;

            make_view(s, back, now);
            back->in.now = now - 30 * DAY;
            assert_int_equal(plan_compute(&back->in, &earlier), 0);
            for (size_t i = 0; i < earlier.n_actions; i++)
                if (earlier.actions[i].kind == PLAN_DELETE_OBJECT)
                    assert_true(has(&out, PLAN_DELETE_OBJECT, earlier.actions[i].index, 0));
            plan_output_free(&earlier);
        }
        apply(s, v, &out, now, &deleted_objects);
        plan_output_free(&out);
    }
    /* the story holds together */
    assert_true(deleted_objects > 50);
    assert_true(transitions > 100 && hot_deleted > 100);
    assert_true(kept_live > 0 && kept_hold > 0);
    {
        size_t kept = 0;

        for (size_t i = 0; i < s->n_points; i++)
            kept += !s->point_deleted[i];
        /* 35 days, plus one point for each of (at most) 84 months */
        assert_true(kept >= 35 && kept <= 35 + 85);
    }
    for (size_t i = 0; i < s->n_snaps; i++)
        free(s->snap_refs[i]);
    free(s);
    free(v);
    free(back);
}

/* A planned delete never touches a copy under Object Lock; transitions keep going. */
static void test_lock_and_min_copies(void **state)
{
    struct plan_dest dests[2] = {{"nas", 0, 0}, {"glacier", 1, 0}};
    struct plan_object objects[2] = {{"a"}, {"b"}};
    int64_t t0 = oracle_local(2026, 1, 5, 10, 0), now = oracle_local(2034, 1, 6, 3, 0);
    struct plan_version versions[2] = {{0, "/x/a", t0, t0 + DAY}, {1, "/x/b", t0, t0 + DAY}};
    struct plan_copy copies[3] = {{0, 0, PLAN_HOT, 1, 0},
                                  {0, 1, PLAN_ARCHIVE, 1, oracle_local(2035, 1, 1, 0, 0)},
                                  {1, 0, PLAN_HOT, 1, 0}};
    struct plan_input in = {.rules = {24, 84, 35, 84, 2},
                            .zone = ny,
                            .now = now,
                            .dests = dests,
                            .n_dests = 2,
                            .objects = objects,
                            .n_objects = 2,
                            .versions = versions,
                            .n_versions = 2,
                            .copies = copies,
                            .n_copies = 3};
    struct plan_output out;

    (void)state;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_false(has(&out, PLAN_DELETE_OBJECT, 0, 0)); /* locked until 2035 */
    assert_true(has(&out, PLAN_DELETE_OBJECT, 1, 0));
    assert_int_equal(out.n_keeps, 1);
    assert_true(out.keeps[0].reasons & PLAN_KEEP_LOCK);
    plan_output_free(&out);
    /* cold, but only one archive copy where two are required: the hot copy stays */
    in.now = oracle_local(2028, 6, 1, 3, 0);
    copies[1].locked_until = 0;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_false(has(&out, PLAN_DELETE_COPY, 0, 0));
    assert_true(out.n_keeps >= 1 && (out.keeps[0].reasons & PLAN_KEEP_COPIES));
    plan_output_free(&out);
    in.rules.min_copies = 1;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_true(has(&out, PLAN_DELETE_COPY, 0, 0));
    assert_false(has(&out, PLAN_DELETE_COPY, 1, 0)); /* b has no archive copy at all */
    plan_output_free(&out);
}

/* Object Lock dates agree with the plan: nothing the lock still holds is planned for
 * deletion, and the plan lets it go the moment the lock ends (a point across DST, a
 * month end, the first point of a month; a version's object). */
static void test_lock_dates_agree_with_the_plan(void **state)
{
    struct plan_rules rules = {24, 84, 35, 84, 2};
    struct plan_point points[2] = {{2026, 3, 1, oracle_local(2026, 3, 1, 2, 0)},
                                   {2026, 3, 7, oracle_local(2026, 3, 7, 2, 0)}};
    struct plan_dest dests[1] = {{"vault", 0, 0}};
    struct plan_object objects[1] = {{"a"}};
    int64_t t0 = oracle_local(2026, 1, 31, 10, 0);
    struct plan_version versions[1] = {{0, "/x/a", t0, t0 + DAY}};
    struct plan_copy copies[1] = {{0, 0, PLAN_HOT, 1, 0}};
    struct plan_input in = {.rules = rules,
                            .zone = ny,
                            .dests = dests,
                            .n_dests = 1,
                            .objects = objects,
                            .n_objects = 1,
                            .versions = versions,
                            .n_versions = 1,
                            .copies = copies,
                            .n_copies = 1,
                            .points = points,
                            .n_points = 2};
    int64_t daily = plan_point_until(ny, &rules, 2026, 3, 7, points[1].at, 0);
    int64_t monthly = plan_point_until(ny, &rules, 2026, 3, 1, points[0].at, 1);
    int64_t version = plan_version_until(ny, &rules, t0);
    struct plan_output out;

    (void)state;
    /* 7 March + 35 days: local midnight of 11 April (across the DST change) */
    assert_int_equal(daily, oracle_local(2026, 4, 11, 0, 0));
    assert_int_equal(monthly, oracle_add_months(points[0].at, 84));
    assert_int_equal(version, oracle_local(2033, 1, 31, 10, 0));
    in.now = daily - 1;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_true(out.point_kept[1]);
    plan_output_free(&out);
    in.now = daily;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_false(out.point_kept[1]);
    assert_true(out.point_kept[0]);
    plan_output_free(&out);
    in.now = monthly - 1;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_true(out.point_kept[0]);
    plan_output_free(&out);
    in.now = monthly;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_false(out.point_kept[0]);
    plan_output_free(&out);
    /* the version's object, with no point that saw it */
    in.n_points = 0;
    in.now = version - 1;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_false(has(&out, PLAN_DELETE_OBJECT, 0, 0));
    plan_output_free(&out);
    in.now = version;
    assert_int_equal(plan_compute(&in, &out), 0);
    assert_true(has(&out, PLAN_DELETE_OBJECT, 0, 0));
    plan_output_free(&out);
}

static int setup(void **state)
{
    struct cst_err err;

    (void)state;
    setenv("TZ", "America/New_York", 1);
    tzset();
    ny = sched_zone_load("America/New_York", &err);
    return ny ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sched_zone_free(ny);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_months),
        cmocka_unit_test(test_eight_years),
        cmocka_unit_test(test_lock_and_min_copies),
        cmocka_unit_test(test_lock_dates_agree_with_the_plan),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
