/*
 * prune.h - the retention plan carried out: the catalog's state handed to the
 * planner (prune_plan.h), its actions shown (a dry run) or done (--confirm),
 * each deletion an audit row written before the remote delete, and
 * `prune --check`, which compares every destination's listing with the plan.
 *
 * A deletion is resumable: the audit row and a prune_pending row are
 * committed first, then the remote object is removed, then the catalog
 * records it. A run killed in between finishes the pending deletions first,
 * under their existing audit rows, so a rerun reaches the same end state with
 * exactly one audit row per deletion.
 */
#ifndef CST_PRUNE_H
#define CST_PRUNE_H

#include <stdint.h>

#include "agent/cli.h"
#include "agent/prune_plan.h"

struct prune_options {
    int confirm;       /* act; otherwise a dry run */
    int64_t as_of;     /* the plan's "now" (ms); 0: now */
    const char *actor; /* audit rows' actor: "agent" or the Unix user */
};

/* The [retention] keys as the planner's rules. */
struct plan_rules prune_rules(const struct cfg *cfg);

/* `custodian prune`: returns an exit status. */
int prune_run(struct cli *cli, const struct prune_options *o);
/* `custodian prune --check`: returns an exit status (1 when a destination disagrees). */
int prune_check(struct cli *cli, int64_t as_of);

/* What prune --check found (the restore test's pruning check reports it). */
struct prune_check_result {
    int64_t dests, listed; /* destinations compared, objects listed on them */
    int64_t unlistable;    /* destinations that could not be listed */
    int64_t missing;       /* recorded good copies not there */
    int64_t left;          /* past retention and still there */
    int64_t stale;         /* pruned and still there */
    int64_t unknown;       /* there, not in the catalog */
    int64_t problems;      /* the sum */
    char first[768];       /* the first problem, "" when none */
};
struct dest;
/* The comparison over open destinations (blocking operations), printing each FAIL line
 * when print. An audit row prune_check records the count. 0, or -1 with err when the
 * catalog cannot give the plan's input. */
int prune_check_dests(struct cli *cli, int64_t as_of, struct dest **dests, size_t nd, int print,
                      struct prune_check_result *r, struct cst_err *err);

#endif
