/*
 * rescan.h - the agent's reconcile walks, on a thread of their own.
 *
 * A walk of a large tree takes seconds; on the loop it would hold up events,
 * shipping and `status`. Here a thread walks (reconcile_walk, with its own
 * read-only connection to the catalog) and hands what it finds to the loop in
 * batches, which the loop writes in short transactions. The thread waits when
 * the loop falls behind, so memory stays bounded whatever the tree's size.
 * Requests for the same tree while one waits are merged.
 */
#ifndef CST_RESCAN_H
#define CST_RESCAN_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/reconcile.h"

struct rescan;

struct rescan_params {
    struct ev_loop *loop;
    const char *catalog_path;
    char *const *excludes;
    size_t n_excludes;
    /* On the loop: changes found under root, to be written. Returns 0, or -1 when
     * they could not be (the walk goes on; the caller arranges another). */
    int (*apply)(void *arg, const char *root, uint64_t walk, const struct reconcile_change *c,
                 size_t n);
    /* On the loop: walk number `walk` of root ended; rc 0, 1 (stopped) or -1 with
     * error. Walks are numbered from 1, in the order they run. */
    void (*done)(void *arg, const char *root, const char *why, uint64_t walk,
                 const struct reconcile_counts *counts, int rc, const char *error);
    void *arg;
};

struct rescan *rescan_new(const struct rescan_params *p, struct cst_err *err);
/* Walk root (or merge with a waiting request that covers it). */
void rescan_request(struct rescan *r, const char *root, const char *why);
/* Walking, or requests waiting. */
int rescan_busy(struct rescan *r);
/* Stops a walk in progress; rescan_free(NULL) does nothing. */
void rescan_free(struct rescan *r);

#endif
