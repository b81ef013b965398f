/*
 * reconcile.h - compare a folder tree with the catalog and queue what differs.
 *
 * Used at start-up (what changed while the agent was down), for new folders,
 * after an inotify overflow or a catalog that could not be written, for a
 * watched folder that came back, and by `custodian scan` and the daily run.
 * The catalog's live versions are the stat cache: a file whose size, mtime
 * and inode match its live version is not read again.
 *
 * The walk only reads the catalog; what it finds is handed out as changes
 * and written in short transactions, so that no walk ever holds the catalog's
 * write lock (the agent's own events must get in between).
 */
#ifndef CST_RECONCILE_H
#define CST_RECONCILE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"

/* The page cache a walk's connection needs: a walk reads each page about once, in order,
 * so a small cache reads no more than SQLite's default 2 MiB one, and leaves less in a
 * thread's malloc arena afterwards (glibc does not give back the top of a thread's
 * arena on malloc_trim). */
#define RECONCILE_CACHE_KIB 256

struct reconcile_counts {
    int64_t seen, queued, tombstoned, unprotected;
    int64_t folders, helper_folders; /* folders walked; of them, by the second walker */
};

enum reconcile_kind {
    RECONCILE_QUEUE,       /* new or changed: ship it */
    RECONCILE_GONE,        /* live in the catalog, no longer on disk: tombstone it */
    RECONCILE_GONE_FILE,   /* live as a file, a folder on disk now: tombstone the file alone */
    RECONCILE_UNPROTECTED, /* cannot be read or watched at all (e.g. its path is too long) */
};

struct reconcile_change {
    enum reconcile_kind kind;
    char *path; /* malloc'd */
    char *why;  /* RECONCILE_UNPROTECTED: what stops it (malloc'd), else NULL */
};

/* Called for each change found; returning non-zero stops the walk. */
typedef int (*reconcile_emit_fn)(void *arg, const struct reconcile_change *c);

/* Walk root against cat (reads only) and emit every change. With helper_catalog (the
 * catalog's path), a second thread with its own read-only connection walks beside the
 * caller; emit is then called from either thread, one call at a time. stop, if not
 * NULL, is polled: when it becomes non-zero the walk ends early (returns 1). */
int reconcile_walk(struct catalog *cat, const char *helper_catalog, const char *root,
                   char *const *excludes, size_t n_excludes, reconcile_emit_fn emit, void *arg,
                   const atomic_int *stop, struct reconcile_counts *counts, struct cst_err *err);
/* Write one change, inside the caller's transaction. A path reported gone that is
 * there again (a file again, for RECONCILE_GONE_FILE) is left alone.
 * RECONCILE_UNPROTECTED writes nothing. */
int reconcile_apply(struct catalog *cat, const struct reconcile_change *c, int64_t now,
                    struct cst_err *err);
void reconcile_change_clear(struct reconcile_change *c);

/* Walk and write in short transactions of their own (the caller holds none).
 * Unprotected paths are logged and counted. */
int reconcile_tree(struct catalog *cat, const char *root, char *const *excludes, size_t n_excludes,
                   struct reconcile_counts *counts, struct cst_err *err);

#endif
