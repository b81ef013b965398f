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

/* One sealed (or plain) file to put on destinations. */
struct dests_item {
    const char *spool_path, *remote_key;
    uint64_t stored_size, plain_size;
    unsigned char stored_sha256[32], plain_sha256[32];
    int no_overwrite;     /* a name already on a destination is a failure, never replaced */
    int64_t retain_until; /* Object Lock (ms) on destinations that lock; 0: none */
};

struct dests_put_hooks {
    /* Fill what a put needs per destination (storage class, retention), after the common
     * fields; may be NULL. */
    void (*prepare)(void *arg, const struct dest *d, size_t dest_index, size_t item,
                    struct dest_put *put);
    /* See the outcome (version, retention read back) of a put; may be NULL. */
    void (*finished)(void *arg, const struct dest *d, size_t dest_index, size_t item,
                     const struct dest_put *put);
    void *arg;
};

/*
 * Put every item on each configured destination whose bit is set in mask, one
 * destination and one item at a time, on a private loop (for jobs outside the agent's
 * loop: the daily run, snapshots); hooks may be NULL. ok[d * n + i] is set to 1 for each
 * verified copy (the caller sizes it n_dests * n); each failure is appended to *errors
 * ("destination D: KEY: why", "; " between). Returns how many (item, destination) pairs
 * failed.
 */
int dests_put_blocking(const struct cfg *cfg, const struct dests_item *items, size_t n,
                       unsigned mask, const struct dests_put_hooks *hooks, unsigned char *ok,
                       char **errors);

#endif
