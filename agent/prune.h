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

struct prune_options {
    int confirm;       /* act; otherwise a dry run */
    int64_t as_of;     /* the plan's "now" (ms); 0: now */
    const char *actor; /* audit rows' actor: "agent" or the Unix user */
};

/* `custodian prune`: returns an exit status. */
int prune_run(struct cli *cli, const struct prune_options *o);
/* `custodian prune --check`: returns an exit status (1 when a destination disagrees). */
int prune_check(struct cli *cli, int64_t as_of);

#endif
