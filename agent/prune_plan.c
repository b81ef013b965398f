/*
 * prune_plan.c - the retention planner (see prune_plan.h).
 *
 * Everything is indexed once (versions and copies grouped by object, points
 * sorted by instant), then each object is judged on its own, so a catalog of a
 * million versions is planned in one pass plus a sort.
 */
#include "prune_plan.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

#define DAY_MS 86400000LL

static int days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int64_t plan_add_months(const struct sched_zone *zone, int64_t t, int months)
{
    int y, m, d, hh, mi, ss;
    int64_t secs = t >= 0 ? t / 1000 : (t - 999) / 1000, ms = t - secs * 1000, out;
    int total;

    sched_localtime(zone, secs, &y, &m, &d, &hh, &mi, &ss);
    total = y * 12 + (m - 1) + months;
    y = total / 12;
    m = total % 12 + 1;
    if (d > days_in_month(y, m))
        d = days_in_month(y, m);
    if (y < 1 || y > 9999 || sched_local_instant(zone, y, m, d, hh, mi, ss, &out) < 0)
        return months > 0 ? INT64_MAX : INT64_MIN;
    return out * 1000 + ms;
}

/* Days from the civil date to 1970-01-01 (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int within(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);

    while (n > 1 && prefix[n - 1] == '/')
        n--;
    return strncmp(path, prefix, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

struct ctx {
    const struct plan_input *in;
    struct plan_output *out;
    size_t cap_actions, cap_keeps;
    /* versions and copies grouped by object (CSR) */
    size_t *v_start, *v_list, *c_start, *c_list;
    /* points sorted by instant; for each, until when it keeps what it saw (0: not
     * kept), and a sparse table of range maxima over that */
    size_t *p_order;
    int64_t *p_expiry;
    int64_t **p_max;
    size_t p_levels;
    unsigned char *obj_in_kept_snapshot, *obj_held_by_period;
    int64_t *obj_snapshot_until;
};

static void act(struct ctx *c, enum plan_action_kind kind, size_t index, size_t dest,
                const char *rule)
{
    struct plan_output *o = c->out;

    if (o->n_actions == c->cap_actions) {
        c->cap_actions = c->cap_actions ? c->cap_actions * 2 : 64;
        o->actions = util_xrealloc(o->actions, c->cap_actions * sizeof(*o->actions));
    }
    o->actions[o->n_actions++] = (struct plan_action){kind, index, dest, rule};
}

static void keep(struct ctx *c, size_t object, unsigned reasons)
{
    struct plan_output *o = c->out;

    if (o->n_keeps == c->cap_keeps) {
        c->cap_keeps = c->cap_keeps ? c->cap_keeps * 2 : 64;
        o->keeps = util_xrealloc(o->keeps, c->cap_keeps * sizeof(*o->keeps));
    }
    o->keeps[o->n_keeps++] = (struct plan_keep){object, reasons};
}

static const struct plan_input *sort_in;

static int by_point_instant(const void *a, const void *b)
{
    int64_t x = sort_in->points[*(const size_t *)a].at, y = sort_in->points[*(const size_t *)b].at;

    return x < y ? -1 : x > y;
}

static void group(size_t n_items, size_t n_objects, const void *items, size_t stride,
                  size_t object_off, size_t **start, size_t **list)
{
    size_t *s = util_xcalloc(n_objects + 1, sizeof(size_t)),
           *l = util_xcalloc(n_items + 1, sizeof(size_t));
    size_t *fill = util_xcalloc(n_objects + 1, sizeof(size_t));

    for (size_t i = 0; i < n_items; i++) {
        size_t o = *(const size_t *)((const char *)items + i * stride + object_off);

        if (o < n_objects)
            s[o + 1]++;
    }
    for (size_t o = 0; o < n_objects; o++)
        s[o + 1] += s[o];
    for (size_t i = 0; i < n_items; i++) {
        size_t o = *(const size_t *)((const char *)items + i * stride + object_off);

        if (o < n_objects)
            l[s[o] + fill[o]++] = i;
    }
    free(fill);
    *start = s;
    *list = l;
}

static int hold_covers_instant(const struct plan_input *in, int64_t at)
{
    for (size_t h = 0; h < in->n_holds; h++) {
        const struct plan_hold *hd = &in->holds[h];

        if (hd->kind == PLAN_HOLD_ALL || (hd->kind == PLAN_HOLD_BEFORE && at < hd->before))
            return 1;
        if (hd->kind == PLAN_HOLD_PERIOD)
            for (size_t s = 0; s < in->n_snapshots; s++) {
                const struct plan_snapshot *sn = &in->snapshots[s];

                if (strcmp(sn->label, hd->period) == 0 && at >= sn->period_start &&
                    at <= sn->period_end)
                    return 1;
            }
    }
    return 0;
}

static int hold_covers_version(const struct plan_input *in, const struct plan_version *v)
{
    for (size_t h = 0; h < in->n_holds; h++) {
        const struct plan_hold *hd = &in->holds[h];

        if (hd->kind == PLAN_HOLD_ALL ||
            (hd->kind == PLAN_HOLD_BEFORE && v->captured_at < hd->before) ||
            (hd->kind == PLAN_HOLD_PATH && v->path && within(v->path, hd->path)))
            return 1;
    }
    return 0;
}

int64_t plan_version_until(const struct sched_zone *zone, const struct plan_rules *r,
                           int64_t captured_at)
{
    return plan_add_months(zone, captured_at, r->delete_after_months);
}

int64_t plan_point_until(const struct sched_zone *zone, const struct plan_rules *r, int year,
                         int mon, int day, int64_t at, int first_of_month)
{
    /* Kept while its date is one of the last keep_daily: it may go from local midnight
     * keep_daily days after its date. */
    int64_t until = 0;
    time_t t = (time_t)((days_from_civil(year, mon, day) + r->keep_daily) * 86400);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || sched_local_instant(zone, tm.tm_year + 1900, tm.tm_mon + 1,
                                                         tm.tm_mday, 0, 0, 0, &until) < 0)
        until = at + (int64_t)r->keep_daily * DAY_MS; /* a date past year 9999 */
    else
        until *= 1000;
    if (first_of_month) {
        int64_t monthly = plan_add_months(zone, at, r->keep_monthly_months);

        if (monthly > until)
            until = monthly;
    }
    return until;
}

/* Daily restore points: which stay, and until when each keeps what it saw. */
static void plan_points(struct ctx *c)
{
    const struct plan_input *in = c->in;
    struct plan_output *o = c->out;
    int ty, tm, td;
    int64_t today;

    sched_localtime(in->zone, in->now / 1000, &ty, &tm, &td, NULL, NULL, NULL);
    today = days_from_civil(ty, tm, td);
    c->p_order = util_xcalloc(in->n_points + 1, sizeof(size_t));
    c->p_expiry = util_xcalloc(in->n_points + 1, sizeof(int64_t));
    o->point_kept = util_xcalloc(in->n_points + 1, 1);
    for (size_t i = 0; i < in->n_points; i++)
        c->p_order[i] = i;
    sort_in = in;
    qsort(c->p_order, in->n_points, sizeof(size_t), by_point_instant);
    for (size_t k = 0; k < in->n_points; k++) {
        size_t i = c->p_order[k];
        const struct plan_point *p = &in->points[i];
        int64_t day = days_from_civil(p->year, p->mon, p->day);
        /* The first point of its month: no earlier point in the same month. */
        int first = k == 0 || in->points[c->p_order[k - 1]].year != p->year ||
                    in->points[c->p_order[k - 1]].mon != p->mon;
        /* kept whole for keep_daily days: dates today-keep_daily+1 .. today (and any
         * later date: a clock that went back must not cost a point) */
        int64_t expiry = p->at + ((int64_t)in->rules.keep_daily + 1) * DAY_MS;
        int kept = day > today - in->rules.keep_daily;

        if (first) {
            int64_t monthly = plan_add_months(in->zone, p->at, in->rules.keep_monthly_months);

            if (monthly > expiry)
                expiry = monthly;
            if (in->now < monthly)
                kept = 1;
        }
        if (!kept && hold_covers_instant(in, p->at))
            kept = 1, expiry = INT64_MAX;
        c->p_expiry[k] = kept ? expiry : 0;
        o->point_kept[i] = (unsigned char)kept;
        if (!kept)
            act(c, PLAN_DELETE_POINT, i, 0,
                "daily restore point past keep_daily and not the "
                "first of a month within keep_monthly_months");
    }
    /* p_max[l][k] = max of p_expiry[k .. k + 2^l - 1] */
    c->p_levels = 1;
    while (((size_t)1 << c->p_levels) <= in->n_points)
        c->p_levels++;
    c->p_max = util_xcalloc(c->p_levels, sizeof(int64_t *));
    c->p_max[0] = c->p_expiry;
    for (size_t l = 1; l < c->p_levels; l++) {
        size_t half = (size_t)1 << (l - 1);

        c->p_max[l] = util_xcalloc(in->n_points + 1, sizeof(int64_t));
        for (size_t k = 0; k + 2 * half <= in->n_points; k++) {
            int64_t a = c->p_max[l - 1][k], b = c->p_max[l - 1][k + half];

            c->p_max[l][k] = a > b ? a : b;
        }
    }
}

/* Max of p_expiry over sorted points [lo, hi] (inclusive, lo <= hi). */
static int64_t points_max(const struct ctx *c, size_t lo, size_t hi)
{
    size_t len = hi - lo + 1, l = 0;
    int64_t a, b;

    while (((size_t)2 << l) <= len)
        l++;
    a = c->p_max[l][lo];
    b = c->p_max[l][hi + 1 - ((size_t)1 << l)];
    return a > b ? a : b;
}

static void plan_snapshots(struct ctx *c)
{
    const struct plan_input *in = c->in;
    struct plan_output *o = c->out;

    o->snapshot_kept = util_xcalloc(in->n_snapshots + 1, 1);
    c->obj_in_kept_snapshot = util_xcalloc(in->n_objects + 1, 1);
    c->obj_held_by_period = util_xcalloc(in->n_objects + 1, 1);
    c->obj_snapshot_until = util_xcalloc(in->n_objects + 1, sizeof(int64_t));
    for (size_t s = 0; s < in->n_snapshots; s++) {
        const struct plan_snapshot *sn = &in->snapshots[s];
        int held = 0;

        for (size_t h = 0; h < in->n_holds; h++) {
            const struct plan_hold *hd = &in->holds[h];

            held |= hd->kind == PLAN_HOLD_ALL ||
                    (hd->kind == PLAN_HOLD_BEFORE && sn->closed_at < hd->before) ||
                    (hd->kind == PLAN_HOLD_PERIOD && strcmp(hd->period, sn->label) == 0);
        }
        int64_t until = plan_add_months(in->zone, sn->closed_at, in->rules.delete_after_months);
        int kept = held || in->now < until;

        o->snapshot_kept[s] = (unsigned char)kept;
        for (size_t k = 0; k < sn->n_objects; k++) {
            size_t obj = sn->objects[k];

            if (obj >= in->n_objects)
                continue;
            if (kept) {
                c->obj_in_kept_snapshot[obj] = 1;
                if (until > c->obj_snapshot_until[obj])
                    c->obj_snapshot_until[obj] = until;
            }
            if (held)
                c->obj_held_by_period[obj] = 1;
        }
        if (!kept)
            act(c, PLAN_DELETE_SNAPSHOT, s, 0, "snapshot past close + delete_after_months");
    }
}

/* The first sorted point taken at or after t. */
static size_t first_point_from(const struct ctx *c, int64_t t)
{
    size_t lo = 0, hi = c->in->n_points;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (c->in->points[c->p_order[mid]].at < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Until when the kept points taken while v was live ([captured, deleted)) keep it. */
static int64_t point_hold_until(struct ctx *c, const struct plan_version *v)
{
    size_t lo = first_point_from(c, v->captured_at), end = first_point_from(c, v->deleted_at);

    if (lo >= end)
        return 0; /* no point saw it */
    return points_max(c, lo, end - 1);
}

static void plan_object(struct ctx *c, size_t o)
{
    const struct plan_input *in = c->in;
    int64_t delete_at = 0, hot_until = 0;
    unsigned reasons = 0;
    int held = c->obj_held_by_period[o], any_version = 0;

    for (size_t k = c->v_start[o]; k < c->v_start[o + 1]; k++) {
        const struct plan_version *v = &in->versions[c->v_list[k]];
        int64_t va = plan_version_until(in->zone, &in->rules, v->captured_at);
        int64_t hu = plan_add_months(in->zone, v->captured_at, in->rules.hot_months);
        int64_t by_point;

        any_version = 1;
        if (hu > hot_until)
            hot_until = hu;
        if (va > delete_at)
            delete_at = va;
        if (hold_covers_version(in, v))
            held = 1;
        if (v->deleted_at == 0) {
            if (va <= in->now)
                reasons |= PLAN_KEEP_LIVE;
            delete_at = INT64_MAX;
            continue;
        }
        by_point = point_hold_until(c, v);
        if (by_point > delete_at) {
            delete_at = by_point;
            if (va <= in->now && by_point > in->now)
                reasons |= PLAN_KEEP_POINT;
        }
    }
    if (!any_version && !c->obj_in_kept_snapshot[o]) {
        /* Referenced by nothing we know of: never deleted on a guess. */
        c->out->delete_at[o] = INT64_MAX;
        return;
    }
    if (c->obj_in_kept_snapshot[o]) {
        if (delete_at <= in->now)
            reasons |= PLAN_KEEP_SNAPSHOT;
        if (c->obj_snapshot_until[o] > delete_at)
            delete_at = c->obj_snapshot_until[o];
        if (delete_at <= in->now)
            delete_at = INT64_MAX; /* held by a snapshot kept on a hold */
    }
    if (held) {
        if (delete_at <= in->now)
            reasons |= PLAN_KEEP_HOLD;
        delete_at = INT64_MAX;
    }
    c->out->delete_at[o] = delete_at;
    if (delete_at <= in->now) {
        for (size_t k = c->c_start[o]; k < c->c_start[o + 1]; k++)
            if (in->copies[c->c_list[k]].locked_until > in->now)
                reasons |= PLAN_KEEP_LOCK;
        if (reasons & PLAN_KEEP_LOCK) {
            keep(c, o, reasons);
            return;
        }
        act(c, PLAN_DELETE_OBJECT, o, 0,
            "past delete_after_months, no live file, hold, "
            "snapshot or restore point needs it");
        return;
    }
    /* Still kept: the tiers. */
    if (in->now >= hot_until && c->c_start[o] < c->c_start[o + 1]) {
        size_t archived = 0, hot_only = 0;

        for (size_t k = c->c_start[o]; k < c->c_start[o + 1]; k++) {
            const struct plan_copy *cp = &in->copies[c->c_list[k]];
            const struct plan_dest *d = &in->dests[cp->dest];

            if (!cp->verified)
                continue;
            if (cp->tier == PLAN_ARCHIVE && (d->archive_role || d->archive_class))
                archived++;
            else if (d->archive_class && !d->archive_role)
                act(c, PLAN_TRANSITION, o, cp->dest, "cold: past hot_months");
            else if (!d->archive_role)
                hot_only++;
        }
        if (hot_only && !held && archived >= (size_t)in->rules.min_copies) {
            for (size_t k = c->c_start[o]; k < c->c_start[o + 1]; k++) {
                const struct plan_copy *cp = &in->copies[c->c_list[k]];
                const struct plan_dest *d = &in->dests[cp->dest];

                if (!d->archive_role && !d->archive_class)
                    act(c, PLAN_DELETE_COPY, o, cp->dest,
                        "cold: past hot_months, min_copies verified in the archive tier");
            }
        } else if (hot_only && !held) {
            reasons |= PLAN_KEEP_COPIES;
        }
    }
    if (reasons)
        keep(c, o, reasons);
}

int plan_compute(const struct plan_input *in, struct plan_output *out)
{
    struct ctx c;

    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    c.in = in;
    c.out = out;
    group(in->n_versions, in->n_objects, in->versions, sizeof(*in->versions),
          offsetof(struct plan_version, object), &c.v_start, &c.v_list);
    group(in->n_copies, in->n_objects, in->copies, sizeof(*in->copies),
          offsetof(struct plan_copy, object), &c.c_start, &c.c_list);
    out->delete_at = util_xcalloc(in->n_objects + 1, sizeof(int64_t));
    plan_points(&c);
    plan_snapshots(&c);
    for (size_t o = 0; o < in->n_objects; o++)
        plan_object(&c, o);
    free(c.v_start);
    free(c.v_list);
    free(c.c_start);
    free(c.c_list);
    free(c.p_order);
    for (size_t l = 1; l < c.p_levels; l++)
        free(c.p_max[l]);
    free(c.p_max);
    free(c.p_expiry);
    free(c.obj_in_kept_snapshot);
    free(c.obj_held_by_period);
    free(c.obj_snapshot_until);
    return 0;
}

void plan_output_free(struct plan_output *out)
{
    free(out->actions);
    free(out->keeps);
    free(out->delete_at);
    free(out->point_kept);
    free(out->snapshot_kept);
    memset(out, 0, sizeof(*out));
}
