/*
 * prune_plan.h - the retention plan as a pure function: catalog state, rules,
 * legal holds and "now" in; what to move to the archive tier, what to delete
 * and what stays (and why) out. No I/O: `custodian prune` gathers the input
 * from the catalog and carries the actions out, and the unit tests drive it
 * through simulated years.
 *
 * The rules (docs/retention-plan.md; time-based only, so that a flood of
 * changes cannot push history out):
 *   - a version captured at T is hot until T + hot_months and kept until
 *     T + delete_after_months; after that its object goes, unless it is still
 *     the live version of a file that exists ("past retention, still live"),
 *     a legal hold covers it, a retained snapshot references its object, or a
 *     retained daily restore point saw it live. With dedup an object goes only
 *     when every reference to it allows it.
 *   - daily restore points: the last keep_daily days whole, and the first
 *     point of each month until keep_monthly_months;
 *   - snapshots: until close + delete_after_months, never earlier;
 *   - tiers: once cold, an object must have min_copies verified copies in the
 *     archive tier (archive-role destinations, and S3 destinations with an
 *     archive class, after a transition) before its copies on hot-only
 *     destinations go; if that cannot be met they stay, with a warning.
 * Months are calendar months in the configured zone: 2024-01-31 + 1 month is
 * 2024-02-29, at the same local wall time (sched.h rules across DST).
 */
#ifndef CST_PRUNE_PLAN_H
#define CST_PRUNE_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "agent/sched.h"

struct plan_rules {
    int hot_months, delete_after_months, keep_daily, keep_monthly_months, min_copies;
};

enum plan_tier { PLAN_HOT = 0, PLAN_ARCHIVE = 1 };

struct plan_dest {
    const char *name;
    int archive_role;  /* role = archive: holds everything in its archive class from the start */
    int archive_class; /* an S3 destination that can transition a copy to an archive class */
};

struct plan_object {
    const char *id;
};

struct plan_version {
    size_t object;       /* index into objects */
    const char *path;    /* for path holds */
    int64_t captured_at; /* ms */
    int64_t deleted_at;  /* ms, 0 while it is the live version of a file that exists */
};

struct plan_copy {
    size_t object, dest;  /* indexes */
    enum plan_tier tier;  /* the class it is stored in now */
    int verified;         /* a good (not damaged) copy */
    int64_t locked_until; /* Object Lock retain-until, ms (0: none) */
};

struct plan_point {
    int year, mon, day; /* its local date */
    int64_t at;         /* the instant its file list was taken, ms */
};

struct plan_snapshot {
    const char *label;
    int64_t closed_at;                /* ms */
    int64_t period_start, period_end; /* ms, for period holds over daily points */
    const size_t *objects;            /* objects it holds or references */
    size_t n_objects;
};

enum plan_hold_kind { PLAN_HOLD_PATH, PLAN_HOLD_PERIOD, PLAN_HOLD_BEFORE, PLAN_HOLD_ALL };

struct plan_hold {
    enum plan_hold_kind kind;
    const char *path;   /* PATH: a prefix (a folder or a file) */
    const char *period; /* PERIOD: a snapshot label */
    int64_t before;     /* BEFORE: captured (or dated) before this instant, ms */
};

struct plan_input {
    struct plan_rules rules;
    const struct sched_zone *zone;
    int64_t now; /* ms */
    const struct plan_dest *dests;
    size_t n_dests;
    const struct plan_object *objects;
    size_t n_objects;
    const struct plan_version *versions;
    size_t n_versions;
    const struct plan_copy *copies;
    size_t n_copies;
    const struct plan_point *points;
    size_t n_points;
    const struct plan_snapshot *snapshots;
    size_t n_snapshots;
    const struct plan_hold *holds;
    size_t n_holds;
};

enum plan_action_kind {
    PLAN_TRANSITION,    /* copy (object, dest) to the archive class */
    PLAN_DELETE_COPY,   /* a hot copy that the archive tier now replaces */
    PLAN_DELETE_OBJECT, /* past retention everywhere: every copy goes */
    PLAN_DELETE_POINT,  /* a daily restore point (its artifacts) */
    PLAN_DELETE_SNAPSHOT,
};

/* Why something past one of its dates stays. */
enum plan_keep_reason {
    PLAN_KEEP_LIVE = 1,     /* the live version of a file that exists */
    PLAN_KEEP_HOLD = 2,     /* a legal hold covers it */
    PLAN_KEEP_SNAPSHOT = 4, /* a retained snapshot references it */
    PLAN_KEEP_POINT = 8,    /* a retained daily restore point saw it live */
    PLAN_KEEP_LOCK = 16,    /* Object Lock still forbids the delete */
    PLAN_KEEP_COPIES = 32,  /* fewer than min_copies archive copies: hot copies stay */
};

struct plan_action {
    enum plan_action_kind kind;
    size_t index;     /* object, point or snapshot */
    size_t dest;      /* TRANSITION, DELETE_COPY */
    const char *rule; /* a static string naming the rule */
};

struct plan_keep {
    size_t object;
    unsigned reasons; /* enum plan_keep_reason bits */
};

struct plan_output {
    struct plan_action *actions;
    size_t n_actions;
    struct plan_keep *keeps; /* objects past their versions' retention that stay */
    size_t n_keeps;
    /* per object: when its last reference allows it to go (ms; INT64_MAX: while live or
     * held); the Object Lock retain-until date of its copies */
    int64_t *delete_at;
    /* per point, per snapshot: 1 kept, 0 to delete */
    unsigned char *point_kept, *snapshot_kept;
};

/* t + months calendar months at the same local wall time in zone (day clamped to the
 * month's length), ms. */
int64_t plan_add_months(const struct sched_zone *zone, int64_t t, int months);

/* Object Lock dates that agree with the plan (a lock never outlives nothing the plan keeps,
 * and never lets go of what it keeps by these rules): what a version captured at t holds
 * may go at t + delete_after_months; */
int64_t plan_version_until(const struct sched_zone *zone, const struct plan_rules *r,
                           int64_t captured_at);
/* a daily restore point for local date Y-M-D taken at `at` may go from local midnight
 * keep_daily days after its date, or, the first point of its month, at
 * at + keep_monthly_months when that is later. */
int64_t plan_point_until(const struct sched_zone *zone, const struct plan_rules *r, int year,
                         int mon, int day, int64_t at, int first_of_month);

/* Compute the plan. Returns 0, -1 only on out-of-memory-like impossibilities. */
int plan_compute(const struct plan_input *in, struct plan_output *out);
void plan_output_free(struct plan_output *out);

#endif
