/*
 * dests.h - building the configured destinations (shipper/dest.h) from the
 * config, by `type`, and telling them what the catalog knows about them.
 */
#ifndef CST_DESTS_H
#define CST_DESTS_H

#include <stddef.h>

#include "agent/config.h"
#include "catalog/catalog.h"
#include "shipper/dest.h"

/* All destinations of cfg, or -1 with err naming the one that failed. env may be
 * NULL for command-line use (blocking operations only). */
int dests_open(const struct cfg *cfg, const struct dest_env *env, struct dest ***out, size_t *n,
               struct cst_err *err);
/* Tell each destination what the catalog knows of it (copies recorded there, one of
 * them): the marker check needs it. may_mark: this process ships and may mark a root at
 * first use (docs/destinations.md). */
int dests_usage(struct dest **dests, size_t n, struct catalog *cat, int may_mark,
                struct cst_err *err);
void dests_free(struct dest **dests, size_t n);

#endif
