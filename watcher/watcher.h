/*
 * watcher.h - recursive inotify over the protected folders.
 *
 * The watcher only says what happened to which path; what to do about it
 * (queue, tombstone, reconcile with the catalog) is the agent's business.
 * When it cannot be sure it saw everything (queue overflow, no more
 * watches) it says so through rescan(), never by staying silent.
 *
 * The roots themselves are watched too: a root deleted and made again,
 * replaced by a rename (`mv new invoices`), unmounted and mounted again, or a
 * symlink root pointed elsewhere is noticed (its own events, its parent's
 * events, and a check of every root every few seconds), reported through
 * root_state(), and watched again and rescanned as soon as it is back.
 */
#ifndef CST_WATCHER_H
#define CST_WATCHER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct watcher_callbacks {
    /* A file or symlink may have new content. closed: a writer just closed it, so
     * it is complete now; otherwise wait for it to settle. */
    void (*changed)(void *arg, const char *path, int closed);
    /* A file or folder left the watched trees (deleted or moved out). */
    void (*removed)(void *arg, const char *path);
    /* A file or folder was renamed within the watched trees. */
    void (*moved)(void *arg, const char *from, const char *to);
    /* Something under path may have changed unseen (new folder, overflow, no
     * watch): compare it with the catalog. */
    void (*rescan)(void *arg, const char *path);
    /* The end of one burst of callbacks: a good moment to commit. */
    void (*batch_end)(void *arg);
    /* A watched root was lost (deleted, moved away, unmounted, replaced: watched 0,
     * why says how) or is watched again (watched 1; a rescan() of it follows). */
    void (*root_state)(void *arg, const char *root, int watched, const char *why);
    /* A folder that can never be watched (its path is too long, say). */
    void (*unprotected)(void *arg, const char *path, const char *why);
};

struct watcher;

struct watcher *watcher_new(struct ev_loop *loop, char *const *roots, size_t n_roots,
                            char *const *excludes, size_t n_excludes,
                            const struct watcher_callbacks *cb, void *arg, struct cst_err *err);
void watcher_free(struct watcher *w);

/* Is this path excluded by the configured globs? (name is its last component) */
int watcher_excluded(char *const *excludes, size_t n_excludes, const char *path, const char *name);

size_t watcher_watch_count(const struct watcher *w);
size_t watcher_root_count(const struct watcher *w);
/* Root i: its configured path, whether it is watched now, and if not, why. */
void watcher_root_info(const struct watcher *w, size_t i, const char **path, int *watched,
                       const char **why);
/* Look at every root now (as the periodic check does): a root that is gone is
 * reported, one that came back is watched again and rescanned. */
void watcher_check_roots(struct watcher *w);
int64_t watcher_overflow_count(const struct watcher *w);
/* Folders that could not be watched (max_user_watches reached); they are rescanned
 * periodically instead. */
int watcher_unwatched_count(const struct watcher *w);

#endif
