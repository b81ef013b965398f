/*
 * hold.h - legal holds, as other parts of custodian use them (the commands are
 * in cmd_hold.c).
 */
#ifndef CST_HOLD_H
#define CST_HOLD_H

#include <stddef.h>
#include <stdint.h>

#include "agent/cli.h"
#include "common/err.h"
#include "shipper/dest.h"

/* Set the S3 legal-hold flag on the copies, on the Object Lock destinations among dests,
 * of every object an active hold covers, made (or verified again) since `since` (ms; 0:
 * every copy). A hold flags the copies that exist when it is placed; this flags the ones
 * shipped after it (prune --confirm runs it). *set and *failed count copies; err holds the
 * first failure. 0, or -1 when the catalog could not be read. */
int hold_flags_catch_up(struct cli *cli, struct dest **dests, size_t n_dests, int64_t since,
                        int64_t *set, int64_t *failed, struct cst_err *err);

#endif
