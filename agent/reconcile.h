/*
 * reconcile.h - compare a folder tree with the catalog and queue what differs.
 *
 * Used at start-up (what changed while the agent was down), for new folders,
 * after an inotify overflow and by `custodian scan`. The catalog's live
 * versions are the stat cache: a file whose size, mtime and inode match its
 * live version is not read again.
 */
#ifndef CST_RECONCILE_H
#define CST_RECONCILE_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"

struct reconcile_counts {
    int64_t seen, queued, tombstoned;
};

/* Inside the caller's transaction. */
int reconcile_tree(struct catalog *cat, const char *root, char *const *excludes, size_t n_excludes,
                   struct reconcile_counts *counts, struct cst_err *err);

#endif
