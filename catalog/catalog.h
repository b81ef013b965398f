/*
 * catalog.h - the SQLite catalog: what was seen, what was shipped where,
 * the durable work queue, and the hash-chained audit log.
 *
 * Only the event-loop thread (or a CLI command) touches a struct catalog.
 * Paths are raw bytes (Linux paths cannot hold NUL, so they are passed as C
 * strings) and stored as BLOBs. Times are UTC milliseconds since the epoch.
 */
#ifndef CST_CATALOG_H
#define CST_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct catalog;

enum catalog_kind { CATALOG_FILE = 0, CATALOG_SYMLINK = 1 };

struct catalog_version {
    int64_t id;
    int64_t path_id;
    char *path; /* malloc'd; freed by catalog_version_clear */
    int kind;
    int64_t size, mtime_ns, inode;
    unsigned char sha256[32];
    char object_id[65]; /* "" for a symlink */
    char *link_target;  /* malloc'd, symlinks only */
    int64_t first_seen, shipped_at, deleted_at;
};

struct catalog_object {
    char id[65];
    unsigned char sha256[32];
    unsigned char stored_sha256[32];
    int64_t plain_size, stored_size;
    int compressed;
};

struct catalog_queue_item {
    int64_t path_id;
    int64_t gen;
    int64_t queued_at;
    int attempts;
    char reason[24];
    char *path; /* malloc'd */
};

/* The newest schema version this build knows (PRAGMA user_version). */
int catalog_schema_latest(void);

/* Open (creating if needed) in WAL mode and migrate forward. A catalog newer
 * than this build is refused, never touched. */
struct catalog *catalog_open(const char *path, struct cst_err *err);
/* Open an existing catalog for reading only (reports, audits); no migration. */
struct catalog *catalog_open_readonly(const char *path, struct cst_err *err);
void catalog_close(struct catalog *cat);
/* Give back the page cache's memory that no statement holds (the pages are read again
 * when needed): for an agent with nothing to do. */
void catalog_release_memory(struct catalog *cat);
int catalog_user_version(struct catalog *cat);
/* The page cache's bound, in KiB (SQLite's default is 2,000). */
void catalog_set_cache_kib(struct catalog *cat, int kib);
/* WAL pages between checkpoints (SQLite's default is 1000): see catalog_open. */
#define CATALOG_WAL_CHECKPOINT_PAGES 8000
/* For a long-lived writer (the agent): WAL checkpoints on a thread of its own, through a
 * second connection, once the WAL holds soft_pages pages, instead of inside the commit
 * that crosses the threshold. Past 4 * soft_pages the committing connection checkpoints
 * itself, so the WAL stays bounded if the thread falls behind or fails. Stopped by
 * catalog_close. -1 and err if the connection or thread cannot be made. */
int catalog_checkpointer_start(struct catalog *cat, int soft_pages, struct cst_err *err);
/* Checkpoints the thread completed, checkpoints that failed (either side) and the last
 * failure's message ("" after a success); zeros without a checkpoint thread. */
void catalog_checkpoint_stats(struct catalog *cat, int64_t *done, int64_t *failed, char *error,
                              size_t size);

/* How long a write waits for another process's transaction before it fails (default
 * 10 s; the agent's loop must never wait that long: it retries instead). */
void catalog_set_busy_timeout(struct catalog *cat, int ms);
int catalog_begin(struct catalog *cat, struct cst_err *err);
int catalog_commit(struct catalog *cat, struct cst_err *err);
void catalog_rollback(struct catalog *cat);

/* --- the work queue --- */

/* Queue path (insert or refresh) so it ships once ready_at has passed. Bumps the
 * entry's generation, so a ship already in flight cannot remove it. */
int catalog_queue_path(struct catalog *cat, const char *path, const char *reason, int64_t ready_at,
                       struct cst_err *err);
/* Up to limit entries ready at now, oldest first, skipping those skip() claims. */
int catalog_queue_ready(struct catalog *cat, int64_t now, size_t limit,
                        int (*skip)(void *arg, int64_t path_id), void *arg,
                        struct catalog_queue_item **items, size_t *n, struct cst_err *err);
/* Where the last page of ready entries ended (newest first); valid = 0: from the top. */
struct catalog_queue_cursor {
    int valid;
    int64_t ready_at;
    int64_t path_id;
};
/* Like catalog_queue_ready, from *cur on; *cur is moved past every row read (skipped ones
 * too) and set back to the top when the queue's end was reached. Callers that page
 * through a long queue do not read the entries they skip (in flight) again and again. */
int catalog_queue_ready_page(struct catalog *cat, int64_t now, struct catalog_queue_cursor *cur,
                             size_t limit, int (*skip)(void *arg, int64_t path_id), void *arg,
                             struct catalog_queue_item **items, size_t *n, struct cst_err *err);
void catalog_queue_items_free(struct catalog_queue_item *items, size_t n);
/* *next: earliest ready_at later than `after`, or INT64_MAX when there is none.
 * 0, or -1 and err (then *next is INT64_MAX, and the caller must retry, not sleep). */
int catalog_queue_next_ready(struct catalog *cat, int64_t after, int64_t *next,
                             struct cst_err *err);
/* Remove the entry if it is still at generation gen (nothing re-queued it meanwhile). */
int catalog_queue_done(struct catalog *cat, int64_t path_id, int64_t gen, struct cst_err *err);
/* The entry's current generation: > 0, 0 if path_id has no entry, -1 on error. */
int64_t catalog_queue_gen(struct catalog *cat, int64_t path_id, struct cst_err *err);
/* A version was recorded from an entry that changed again since: its max_delay
 * clock starts again from now. */
int catalog_queue_restart(struct catalog *cat, int64_t path_id, int64_t now, struct cst_err *err);
/* A path queued again and again (a file that keeps changing) still becomes ready at
 * most this long after it was first queued (default 60 s; <= 0: no bound). */
void catalog_set_max_delay(struct catalog *cat, int64_t max_delay_ms);
/* Push the entry back by delay_ms and note why. */
int catalog_queue_retry(struct catalog *cat, int64_t path_id, int64_t gen, int64_t delay_ms,
                        const char *why, struct cst_err *err);
/* Lookups and counts below return -1 with err when SQLite fails: a failed read is an
 * error, never "none" or "0". */
int catalog_queue_stats(struct catalog *cat, int64_t *depth, int64_t *oldest_queued_at,
                        struct cst_err *err);
/* Entries that failed at least once, and the newest error among them (malloc'd or NULL). */
int catalog_queue_failing(struct catalog *cat, int64_t *count, char **last_error,
                          struct cst_err *err);

/* --- versions, objects, copies --- */

/* The newest version of path: 1 and *v filled if it exists and is not deleted, 0 if
 * none is live, -1 on error. */
int catalog_live_version(struct catalog *cat, const char *path, struct catalog_version *v,
                         struct cst_err *err);
/* The version of path that stood at time at (INT64_MAX: newest, even if deleted). */
int catalog_version_at(struct catalog *cat, const char *path, int64_t at, struct catalog_version *v,
                       struct cst_err *err);
void catalog_version_clear(struct catalog_version *v);

/* 1 and *o filled, 0 if there is no such object, -1 and err on error. */
int catalog_object_get(struct catalog *cat, const char *object_id, struct catalog_object *o,
                       struct cst_err *err);
/* 1 if the objects table has object_id (pruned or not), 0 if not, -1 and err on error.
 * Objects rows are never deleted, and copies, queued copies and versions (pending or
 * not) reference them (foreign keys): an unknown object has none of these. */
int catalog_object_known(struct catalog *cat, const char *object_id, struct cst_err *err);
/* 1 if dest holds a verified copy of object_id, 0 if not, -1 and err on error. */
int catalog_copy_exists(struct catalog *cat, const char *object_id, const char *dest,
                        struct cst_err *err);
/* 1 and *key (malloc'd) the remote key of a verified copy on dest, 0 (*key NULL) if dest
 * holds none, -1 and err on error. */
int catalog_copy_key(struct catalog *cat, const char *object_id, const char *dest, char **key,
                     struct cst_err *err);

int catalog_record_object(struct catalog *cat, const struct catalog_object *o, int64_t now,
                          struct cst_err *err);
int catalog_record_copy(struct catalog *cat, const char *object_id, const char *dest,
                        const char *remote_key, int64_t stored_size,
                        const unsigned char stored_sha256[32], int64_t verified_at,
                        struct cst_err *err);
/* Record a shipped version (v->path, kind, stat, sha256, object_id, link_target,
 * first_seen, shipped_at). */
int catalog_record_version(struct catalog *cat, const struct catalog_version *v,
                           struct cst_err *err);
/* Tombstone: mark the live version of path, and of every path below it when it
 * was a folder, deleted at `at`. Returns how many versions were marked. */
int catalog_record_delete(struct catalog *cat, const char *path, int64_t at, struct cst_err *err);
/* The same for path alone, not what is below it: a file whose name is now a folder's. */
int catalog_record_delete_file(struct catalog *cat, const char *path, int64_t at,
                               struct cst_err *err);
/* A rename: every live version at or under `from` gets a new version at the
 * matching place under `to` with the same content, when the file there still
 * has the recorded inode and size (else it is queued); `from` is tombstoned. */
int catalog_record_move(struct catalog *cat, const char *from, const char *to, int64_t at,
                        struct cst_err *err);

/* Visit each live path at or below prefix (prefix "" = all) as it stood at `at`. */
int catalog_each_version_at(struct catalog *cat, const char *prefix, int64_t at,
                            int (*cb)(void *arg, const struct catalog_version *v), void *arg,
                            struct cst_err *err);
/* What the catalog holds live directly in one folder, for a walk that merges it with the
 * folder's listing: the folder's files and symlinks with their stat, and the names of its
 * subfolders that hold live versions further down. */
struct catalog_dir_entry {
    char *name;  /* below the folder, no slash; malloc'd */
    int subtree; /* 1: a subfolder with live versions below it (the fields below are 0) */
    int kind;    /* CATALOG_FILE or CATALOG_SYMLINK */
    int64_t size, mtime_ns, inode;
};
/* The live entries of folder dir (an absolute path without a trailing slash), sorted by
 * the bytes of name, a subtree as if its name ended in '/' (the order of the full paths).
 * *out is malloc'd (free with catalog_dir_entries_free). Memory is the folder's own
 * entries, whatever lies below it, and at most max of them: 0, or 1 (nothing in *out)
 * when there are more, or -1 and err on error. */
int catalog_live_in_dir(struct catalog *cat, const char *dir, size_t max,
                        struct catalog_dir_entry **out, size_t *n, struct cst_err *err);
void catalog_dir_entries_free(struct catalog_dir_entry *e, size_t n);
/* Visit every version of path, oldest first. */
int catalog_each_version_of(struct catalog *cat, const char *path,
                            int (*cb)(void *arg, const struct catalog_version *v), void *arg,
                            struct cst_err *err);
/* Visit the copies of an object. */
int catalog_each_copy(struct catalog *cat, const char *object_id,
                      int (*cb)(void *arg, const char *dest, const char *remote_key,
                                int64_t verified_at),
                      void *arg, struct cst_err *err);

/* Visit recorded copies (all, or a random sample of `sample` when > 0), with the
 * object's plaintext SHA-256 and size. */
int catalog_each_copy_sample(struct catalog *cat, const char *dest, int64_t sample,
                             int (*cb)(void *arg, const char *object_id, const char *dest,
                                       const char *remote_key, int64_t stored_size,
                                       const unsigned char stored_sha256[32]),
                             void *arg, struct cst_err *err);

struct catalog_stats {
    int64_t paths, live_files, versions, objects, stored_bytes, plain_bytes, copies;
    int64_t last_shipped_at;
};
int catalog_stats(struct catalog *cat, struct catalog_stats *st, struct cst_err *err);
/* Copies on dest, objects lacking one there, and the newest verification time. */
int catalog_dest_stats(struct catalog *cat, const char *dest, int64_t *copies, int64_t *missing,
                       int64_t *last_verified_at, struct cst_err *err);

/* --- replication: one queue entry per copy, versions waiting for a first copy --- */

struct catalog_copy_item {
    char object_id[65];
    char *spool; /* file name under the spool folder (malloc'd) */
    int64_t stored_size;
    unsigned char stored_sha256[32];
    int64_t plain_size;
    unsigned char plain_sha256[32];
    int64_t queued_at;
    int attempts;
};

/* Queue a copy of object_id to dest (nothing if already queued). */
int catalog_copy_queue_add(struct catalog *cat, const char *object_id, const char *dest,
                           const char *spool, int64_t stored_size,
                           const unsigned char stored_sha256[32], int64_t now, struct cst_err *err);
/* 1 and the spool file and seal of a queued copy of object_id (any destination), 0 if none,
 * -1 and err on error. */
int catalog_copy_queue_find(struct catalog *cat, const char *object_id, char **spool,
                            int64_t *stored_size, unsigned char stored_sha256[32],
                            struct cst_err *err);
/* 1 if a copy of object_id to dest is queued, 0 if not, -1 and err on error. */
int catalog_copy_queue_has(struct catalog *cat, const char *object_id, const char *dest,
                           struct cst_err *err);
/* Up to limit copies to dest ready at now, oldest first, skipping what skip() claims. */
int catalog_copy_queue_ready(struct catalog *cat, const char *dest, int64_t now, size_t limit,
                             int (*skip)(void *arg, const char *object_id), void *arg,
                             struct catalog_copy_item **items, size_t *n, struct cst_err *err);
void catalog_copy_items_free(struct catalog_copy_item *items, size_t n);
int catalog_copy_queue_done(struct catalog *cat, const char *object_id, const char *dest,
                            struct cst_err *err);
int catalog_copy_queue_retry(struct catalog *cat, const char *object_id, const char *dest,
                             int64_t delay_ms, const char *kind, const char *why,
                             struct cst_err *err);
/* Copies of object_id still queued (to any destination); -1 on error (never 0). */
int64_t catalog_copy_queue_count(struct catalog *cat, const char *object_id);
/* *next: earliest ready_at later than `after` for dest (NULL: any), or INT64_MAX. 0, or -1
 * and err. */
int catalog_copy_queue_next_ready(struct catalog *cat, const char *dest, int64_t after,
                                  int64_t *next, struct cst_err *err);
/* Backlog of dest: queued copies, the oldest one's queued_at, the newest error (malloc'd). */
int catalog_copy_queue_stats(struct catalog *cat, const char *dest, int64_t *depth, int64_t *oldest,
                             char **last_error, struct cst_err *err);
/* Visit each distinct spool file the copy queue refers to. */
int catalog_each_spool_file(struct catalog *cat, int (*cb)(void *arg, const char *spool), void *arg,
                            struct cst_err *err);
/* The spool file of object_id is lost: forget its queued copies and queue again every
 * path whose content it is (pending or live), so that it is sealed anew. */
int catalog_reseal_object(struct catalog *cat, const char *object_id, int64_t now,
                          struct cst_err *err);

/* --- Object Lock (locks.c) --- */

/* The newest capture (first_seen) of any version of object_id, recorded or waiting;
 * 0 when none. */
int catalog_object_newest_capture(struct catalog *cat, const char *object_id, int64_t *at,
                                  struct cst_err *err);
/* 1 and when the good copy of object_id on dest was last verified (made, or checked again),
 * 0 when there is no good copy, -1. */
int catalog_copy_verified_at(struct catalog *cat, const char *object_id, const char *dest,
                             int64_t *at, struct cst_err *err);
/* 1 and the retain-until recorded for the good copy of object_id on dest (0: none), 0 when
 * there is no good copy, -1. */
int catalog_copy_locked_until(struct catalog *cat, const char *object_id, const char *dest,
                              int64_t *until, struct cst_err *err);
/* Record the retain-until the copy shows (0: none). */
int catalog_copy_set_lock(struct catalog *cat, const char *object_id, const char *dest,
                          int64_t until, struct cst_err *err);
/* The copy of object_id on dest must be retained until `until` (a later date asked for
 * earlier is kept). Versions of the object wait until it is done. */
int catalog_lock_extend_add(struct catalog *cat, const char *object_id, const char *dest,
                            int64_t until, int64_t now, struct cst_err *err);
struct catalog_lock_item {
    char object_id[65];
    int64_t until;
    char *remote_key; /* malloc'd */
    int64_t stored_size;
};
int catalog_lock_extend_ready(struct catalog *cat, const char *dest, int64_t now, size_t limit,
                              int (*skip)(void *arg, const char *object_id), void *arg,
                              struct catalog_lock_item **items, size_t *n, struct cst_err *err);
void catalog_lock_items_free(struct catalog_lock_item *items, size_t n);
/* The extension to `until` is done and the copy shows `shows`. */
int catalog_lock_extend_done(struct catalog *cat, const char *object_id, const char *dest,
                             int64_t until, int64_t shows, struct cst_err *err);
int catalog_lock_extend_retry(struct catalog *cat, const char *object_id, const char *dest,
                              int64_t ready_at, const char *why, struct cst_err *err);
/* 1 when an extension of some copy of object_id is still to be done, 0, -1. */
int catalog_lock_extend_has(struct catalog *cat, const char *object_id, struct cst_err *err);
/* *next: the earliest ready_at later than `after`, or INT64_MAX. */
int catalog_lock_extend_next_ready(struct catalog *cat, int64_t after, int64_t *next,
                                   struct cst_err *err);
/* What the Object Lock date of a daily point's artifacts rests on: the point's instant
 * (its first successful attempt's start, `fallback` while none succeeded) and whether it
 * is the first point of its month (the monthly rule keeps it longer). */
int catalog_point_lock_basis(struct catalog *cat, const char *date, int64_t fallback, int64_t *at,
                             int *first_of_month, struct cst_err *err);
/* Each object a hold of that kind covers (kind and value as in struct catalog_hold;
 * before: the instant a "before" hold's date stands for), once, in id order; cb returning
 * non-zero stops (and is returned). */
int catalog_hold_each_object(struct catalog *cat, const char *kind, const char *value,
                             int64_t before, int (*cb)(void *arg, const char *object_id), void *arg,
                             struct cst_err *err);
/* The copy of object_id on dest is stored in that tier now ("hot" | "archive"). */
int catalog_copy_set_tier(struct catalog *cat, const char *object_id, const char *dest,
                          const char *tier, struct cst_err *err);
/* --- archive restores: thaw jobs (locks.c) --- */
struct catalog_restore_job {
    int64_t id;
    char *dest, *remote_key, *what, *tier, *storage_class, *requested_by;
    char *status; /* pending | ready | done */
    int64_t requested_at, expected_by, checked_at, ready_at;
};
void catalog_restore_job_clear(struct catalog_restore_job *j);
/* 1 and *j: the newest job for that copy not yet done; 0 none; -1. */
int catalog_restore_job_find(struct catalog *cat, const char *dest, const char *remote_key,
                             struct catalog_restore_job *j, struct cst_err *err);
/* A new pending job (dest, remote_key, what, tier, storage_class, requested_at,
 * requested_by, expected_by of j). */
int catalog_restore_job_add(struct catalog *cat, const struct catalog_restore_job *j, int64_t *id,
                            struct cst_err *err);
/* pending | ready | done, checked now. */
int catalog_restore_job_set(struct catalog *cat, int64_t id, const char *status, int64_t now,
                            struct cst_err *err);
/* Jobs not done (all: every one), oldest first. */
int catalog_each_restore_job(struct catalog *cat, int all,
                             int (*cb)(void *arg, const struct catalog_restore_job *j), void *arg,
                             struct cst_err *err);
/* Drop the extensions of destinations no longer configured. */
int catalog_lock_extend_forget(struct catalog *cat, char *const *configured, size_t n,
                               struct cst_err *err);

/* A version whose object has no verified copy yet (path, stat, sha256, object_id,
 * first_seen of v are used). */
int catalog_pending_add(struct catalog *cat, const struct catalog_version *v, struct cst_err *err);
/* object_id now has a verified copy: its pending versions become versions, each
 * reported to cb (may be NULL). Returns how many: none while a lock extension of one of
 * its copies is still to be done. */
int catalog_pending_promote(struct catalog *cat, const char *object_id, int64_t shipped_at,
                            void (*cb)(void *arg, const char *path, int64_t size,
                                       int64_t first_seen),
                            void *arg, struct cst_err *err);
int catalog_pending_stats(struct catalog *cat, int64_t *count, int64_t *oldest_first_seen,
                          struct cst_err *err);
/* Everything not yet done: paths to seal, versions waiting for a first copy, copies
 * still to make (all destinations). */
struct catalog_backlog {
    int64_t queued, waiting, copies;
};
int catalog_backlog(struct catalog *cat, struct catalog_backlog *b, struct cst_err *err);
/* 1 when copies (of objects or daily artifacts) are recorded on dest, with the remote key of
 * one of them in *recorded_key (malloc'd); 0 when none; -1 with err. */
int catalog_dest_in_use(struct catalog *cat, const char *dest, char **recorded_key,
                        struct cst_err *err);
/* 1 if a version of path with this stat (and object_id, unless NULL) is waiting for
 * its first copy: it needs no second sealing. 0 if not, -1 and err on error. */
int catalog_pending_match(struct catalog *cat, const char *path, int64_t size, int64_t mtime_ns,
                          int64_t inode, const char *object_id, struct cst_err *err);

/* Each path at or below prefix with a version waiting for its first copy and not deleted,
 * and no live version (a walk finds those whose file is gone: nothing else would end their
 * wait as deleted; a path with a live version is the walk's own).
 * Stops at the callback's first nonzero return, which it returns. */
int catalog_each_pending_below(struct catalog *cat, const char *prefix,
                               int (*cb)(void *arg, const char *path), void *arg,
                               struct cst_err *err);

/* --- coverage: every configured destination holds every retained object --- */

/* Queue a copy to dest (its source still to be found) of every retained object that
 * has no good copy there and none queued. Returns how many were queued, -1 on error. */
int64_t catalog_coverage_queue(struct catalog *cat, const char *dest, int64_t now,
                               struct cst_err *err);
/* The same, for the objects whose id (lowercase hex) is >= lo and < hi only: a check
 * over many objects in slices, each a few ms, so that the agent's loop keeps answering. */
int64_t catalog_coverage_queue_range(struct catalog *cat, const char *dest, int64_t now,
                                     const char *lo, const char *hi, struct cst_err *err);
struct catalog_coverage {
    int64_t copies;            /* good copies on the destination */
    int64_t lacking;           /* retained objects without a good copy there (queued or not) */
    int64_t unqueued;          /* of those, not even queued: a gap nobody is closing yet */
    int64_t damaged;           /* copies a check found missing or different */
    int64_t failing;           /* queued copies whose last attempt failed */
    int64_t last_verified_at;  /* newest copy made */
    int64_t oldest_check;      /* least recently checked good copy (0: never checked) */
    int64_t artifacts_lacking; /* daily points' artifacts another destination holds */
};
int catalog_coverage_stats(struct catalog *cat, const char *dest, struct catalog_coverage *c,
                           struct cst_err *err);
/* Up to limit objects whose queued copies still need their bytes, ready at now. */
int catalog_copy_queue_unsourced(struct catalog *cat, int64_t now, size_t limit,
                                 int (*skip)(void *arg, const char *object_id), void *arg,
                                 char ***ids, size_t *n, struct cst_err *err);
/* The sealed bytes of object_id are in spool now: queued copies without a source use
 * them. Returns how many entries were sourced. */
int catalog_copy_queue_source(struct catalog *cat, const char *object_id, const char *spool,
                              int64_t stored_size, const unsigned char stored_sha256[32],
                              int64_t now, struct cst_err *err);
/* No source could be found for object_id's queued copies now: try again later. */
int catalog_copy_queue_unsourced_retry(struct catalog *cat, const char *object_id, int64_t delay_ms,
                                       const char *why, struct cst_err *err);

/* 1 if some queued copy of object_id has no source yet, 0 if none, -1 on error. */
int catalog_copy_queue_unsourced_has(struct catalog *cat, const char *object_id,
                                     struct cst_err *err);
/* The spool file of object_id's queued copies is gone: they need a source again. */
int catalog_copy_queue_unsource(struct catalog *cat, const char *object_id, struct cst_err *err);
/* Paths whose live (or waiting) version has object_id's content (malloc'd array). */
int catalog_object_live_paths(struct catalog *cat, const char *object_id, char ***paths, size_t *n,
                              struct cst_err *err);

struct catalog_copy {
    char object_id[65];
    char *dest, *remote_key; /* malloc'd */
    int64_t stored_size;
    unsigned char stored_sha256[32];
    int64_t checked_at;
};
/* The good (not damaged) copies of object_id, most recently checked first. */
int catalog_good_copies(struct catalog *cat, const char *object_id, struct catalog_copy **out,
                        size_t *n, struct cst_err *err);
/* Up to limit good copies on dest, least recently checked first (rolling verification). */
int catalog_copies_to_check(struct catalog *cat, const char *dest, size_t limit,
                            struct catalog_copy **out, size_t *n, struct cst_err *err);
void catalog_copies_free(struct catalog_copy *copies, size_t n);
/* A check read the copy back intact. */
int catalog_copy_checked(struct catalog *cat, const char *object_id, const char *dest, int64_t now,
                         struct cst_err *err);
/* A check found the copy missing or different: it counts for nothing from now on, and
 * a new copy is queued. */
int catalog_copy_damaged(struct catalog *cat, const char *object_id, const char *dest,
                         const char *why, int64_t now, struct cst_err *err);

/* Queued copies to destinations that are no longer configured are dropped, with a notice
 * per destination (dest_notices); *out lists them (free with catalog_forgotten_free). */
struct catalog_forgotten {
    char *dest;
    int64_t dropped;
};
int catalog_forget_dests(struct catalog *cat, char *const *configured, size_t n_configured,
                         int64_t now, struct catalog_forgotten **out, size_t *n_out,
                         struct cst_err *err);
void catalog_forgotten_free(struct catalog_forgotten *f, size_t n);
int catalog_each_dest_notice(struct catalog *cat, int64_t since,
                             int (*cb)(void *arg, int64_t at, const char *dest, const char *notice),
                             void *arg, struct cst_err *err);

/* --- the seven-year lifecycle (retention.c) --- */

struct catalog_artifact;

struct catalog_hold {
    int64_t id;
    char *kind;   /* path | period | before | all */
    char *value;  /* the prefix, the label, the date (YYYY-MM-DD); NULL for all */
    char *reason; /* why, as the operator said */
    int64_t created_at;
    char *created_by;
    int64_t released_at; /* 0: active */
    char *released_by, *release_reason;
};
int catalog_hold_add(struct catalog *cat, const struct catalog_hold *h, int64_t *id,
                     struct cst_err *err);
/* 1 released, 0 no active hold with that id, -1 on error. */
int catalog_hold_release(struct catalog *cat, int64_t id, const char *by, const char *reason,
                         int64_t now, struct cst_err *err);
int catalog_each_hold(struct catalog *cat, int active_only,
                      int (*cb)(void *arg, const struct catalog_hold *h), void *arg,
                      struct cst_err *err);

/* The planner's input, streamed (objects not pruned, their versions incl. those waiting
 * for a first copy, their copies, the daily points and snapshots not pruned). */
int catalog_plan_objects(struct catalog *cat, int (*cb)(void *arg, const char *id), void *arg,
                         struct cst_err *err);
int catalog_plan_versions(struct catalog *cat,
                          int (*cb)(void *arg, const char *object_id, const char *path,
                                    int64_t captured_at, int64_t deleted_at),
                          void *arg, struct cst_err *err);
int catalog_plan_copies(struct catalog *cat,
                        int (*cb)(void *arg, const char *object_id, const char *dest,
                                  const char *remote_key, const char *tier, int good,
                                  int64_t locked_until),
                        void *arg, struct cst_err *err);
int catalog_plan_points(struct catalog *cat, int (*cb)(void *arg, const char *date, int64_t at),
                        void *arg, struct cst_err *err);
int catalog_plan_snapshots(struct catalog *cat,
                           int (*cb)(void *arg, int64_t id, const char *label, int64_t closed_at,
                                     int64_t start, int64_t end),
                           void *arg, struct cst_err *err);
int catalog_plan_snapshot_objects(struct catalog *cat,
                                  int (*cb)(void *arg, int64_t snapshot_id, const char *object_id),
                                  void *arg, struct cst_err *err);

/* A deletion in progress: its audit row is written, the remote delete not yet recorded. */
int catalog_prune_pending_add(struct catalog *cat, const char *what, const char *id,
                              const char *dest, const char *remote_key, int64_t audit_id,
                              struct cst_err *err);
/* The audit row of a deletion in progress, 0 if none, -1 on error. */
int64_t catalog_prune_pending_get(struct catalog *cat, const char *what, const char *id,
                                  const char *dest, const char *remote_key, struct cst_err *err);
int catalog_prune_pending_done(struct catalog *cat, const char *what, const char *id,
                               const char *dest, const char *remote_key, struct cst_err *err);
/* The copy (object_id, dest) was removed: it moves to pruned_copies. */
int catalog_copy_pruned(struct catalog *cat, const char *object_id, const char *dest,
                        const char *rule, int64_t audit_id, int64_t now, struct cst_err *err);
/* dest deliberately holds no copy of object_id (the archive tier does): coverage agrees. */
int catalog_dest_exempt_add(struct catalog *cat, const char *object_id, const char *dest,
                            int64_t now, struct cst_err *err);
int catalog_exempt_has(struct catalog *cat, const char *object_id, const char *dest,
                       struct cst_err *err);
/* A new version refers to object_id: it is hot again, everywhere. */
int catalog_exempt_clear(struct catalog *cat, const char *object_id, struct cst_err *err);
int catalog_object_pruned(struct catalog *cat, const char *object_id, int64_t now,
                          struct cst_err *err);
int catalog_point_pruned(struct catalog *cat, const char *date, int64_t now, struct cst_err *err);
int catalog_snapshot_pruned(struct catalog *cat, int64_t id, int64_t now, struct cst_err *err);
/* Every artifact of date's attempts, on each destination holding a copy. */
int catalog_each_point_key(struct catalog *cat, const char *date,
                           int (*cb)(void *arg, const char *remote_key, const char *dest),
                           void *arg, struct cst_err *err);

struct catalog_prune_run {
    int64_t id, started_at, finished_at, as_of;
    int confirmed;
    char status[16];
    int64_t deleted, kept;
    char *error; /* malloc'd or NULL */
};
int catalog_prune_run_begin(struct catalog *cat, int64_t now, int64_t as_of, int confirmed,
                            int64_t *id, struct cst_err *err);
int catalog_prune_run_end(struct catalog *cat, int64_t id, const char *status, int64_t deleted,
                          int64_t kept, const char *error, int64_t now, struct cst_err *err);
/* The newest confirmed run: 1 and *r (free r->error), 0 if none, -1. */
int catalog_prune_run_last(struct catalog *cat, struct catalog_prune_run *r, struct cst_err *err);
/* When the newest confirmed prune that succeeded finished (ms), 0: never (or unreadable). */
int64_t catalog_prune_last_ok_at(struct catalog *cat);
/* 1 if pruning removed the copy of object_id on dest (it should not be there). */
int catalog_pruned_copy_has(struct catalog *cat, const char *object_id, const char *dest,
                            struct cst_err *err);
/* Copies of object_id that pruning removed, with when, why and the audit row. */
int catalog_each_pruned_copy(struct catalog *cat, const char *object_id,
                             int (*cb)(void *arg, const char *dest, const char *key,
                                       int64_t pruned_at, const char *rule, int64_t audit_id),
                             void *arg, struct cst_err *err);
/* Coverage of the daily points: each artifact (not pruned) that dest lacks and another
 * destination (from) holds. */
int catalog_artifacts_lacking(struct catalog *cat, const char *dest,
                              int (*cb)(void *arg, const struct catalog_artifact *a,
                                        const char *from),
                              void *arg, struct cst_err *err);
/* The rowid of the last row inserted on this connection (the audit row just written). */
int64_t catalog_last_rowid(struct catalog *cat);

/* --- the daily run --- */

/*
 * Each daily run is an attempt for a date: attempts are numbered 1, 2, ...
 * per date, never reused, and every one is kept with its artifacts, so a
 * retry never rewrites what an earlier attempt recorded or shipped.
 */
struct catalog_daily {
    char date[11];    /* the day the point is for */
    int attempt;      /* this attempt's number */
    char made_on[11]; /* the local date it ran on ("" when not recorded, before schema 4) */
    int backfill;     /* made on another day than date */
    char status[16];  /* running | ok | failed */
    int64_t started_at, finished_at, pid;
    int attempts;   /* of the date so far (= the newest attempt's number) */
    int ok_attempt; /* the newest attempt of the date that succeeded, 0 if none */
    int ran, manifest_written, offsite_verified;
    char *db_status, *files_status, *catalog_status, *error; /* malloc'd or NULL */
    int64_t audit_rows; /* the audit chain head its manifest published (0: none) */
    unsigned char audit_head[32];
};

struct catalog_artifact {
    char date[11];
    int attempt;
    char kind[24];
    char *remote_key; /* malloc'd */
    int sealed;
    unsigned char plain_sha256[32], stored_sha256[32];
    int64_t plain_size, stored_size;
};

/* A new attempt for date starts; *attempt gets its number (the date's highest + 1).
 * Attempts of any date still marked running are marked failed (interrupted): the
 * caller holds the daily run's lock, so their process is gone. */
int catalog_daily_begin(struct catalog *cat, const char *date, const char *made_on, int backfill,
                        int64_t pid, int64_t now, int *attempt, struct cst_err *err);
/* Record how attempt d->attempt of d->date ended. */
int catalog_daily_finish(struct catalog *cat, const struct catalog_daily *d, struct cst_err *err);
/* 1 and *d filled with the latest attempt for date (date NULL: of the newest date), 0 if
 * none, -1 on error. */
int catalog_daily_get(struct catalog *cat, const char *date, struct catalog_daily *d,
                      struct cst_err *err);
/* Date of the newest date with a successful attempt into out[11]; 0 if none, -1 on error. */
int catalog_daily_last_success(struct catalog *cat, char out[11], struct cst_err *err);
void catalog_daily_clear(struct catalog_daily *d);
/* When the newest successful run finished (ms), 0 if none. */
int64_t catalog_daily_last_success_at(struct catalog *cat);
int catalog_artifact_record(struct catalog *cat, const struct catalog_artifact *a, int64_t now,
                            struct cst_err *err);
int catalog_artifact_copy(struct catalog *cat, const struct catalog_artifact *a, const char *dest,
                          int64_t now, struct cst_err *err);
/* The artifact of kind for date: of the newest attempt that has a verified copy of it,
 * else of the newest attempt that made it. 1 and *a filled (free remote_key), 0 if no
 * attempt made one, -1 on error. */
int catalog_artifact_get(struct catalog *cat, const char *date, const char *kind,
                         struct catalog_artifact *a, struct cst_err *err);
/* 1 if dest holds a verified copy of that artifact (its date, attempt and kind), 0 if
 * not, -1 on error. */
int catalog_artifact_has_copy(struct catalog *cat, const struct catalog_artifact *a,
                              const char *dest, struct cst_err *err);
/* A consistent copy of the whole catalog into path, which must not exist or be empty
 * (VACUUM INTO: one read transaction, so it ends in bounded time however busy the
 * agent's writes keep the catalog). */
int catalog_backup_to(struct catalog *cat, const char *path, struct cst_err *err);

/* --- billing-cycle snapshots --- */

struct catalog_snapshot {
    int64_t id;
    char *label, *period_key; /* malloc'd; the key as canonical Extended JSON */
    char close_date[16]; /* YYYYMMDD, or YYYYMMDD-open: an open period snapshotted with --force */
    int64_t closed_at, period_start, period_end; /* 0: unknown (an open period, --force) */
    char *remote_key, *sig_key, *sig;            /* malloc'd */
    char *spool; /* malloc'd; file under state_dir/snapshots, NULL once every copy is made */
    unsigned char plain_sha256[32], stored_sha256[32];
    int64_t plain_size, stored_size;
    int64_t invoices, timesheets, files, refs, missing, file_bytes;
    int complete;
    int64_t retain_until, created_at, archived_at, verified_at;
    char *verify_detail, *last_error; /* malloc'd or NULL */
};

void catalog_snapshot_clear(struct catalog_snapshot *s);
/* 1 and *s filled, 0 if there is no snapshot id, -1 and err. */
int catalog_snapshot_by_id(struct catalog *cat, int64_t id, struct catalog_snapshot *s,
                           struct cst_err *err);
/* Record a new snapshot (s->id is set); with its versions, in the caller's transaction. */
int catalog_snapshot_add(struct catalog *cat, struct catalog_snapshot *s, struct cst_err *err);
int catalog_snapshot_add_version(struct catalog *cat, int64_t snapshot_id, int64_t version_id,
                                 int held, struct cst_err *err);
/* 1 and *s filled (s may be NULL) if (period_key, close_date) has a snapshot, 0 if not. */
int catalog_snapshot_find(struct catalog *cat, const char *period_key, const char *close_date,
                          struct catalog_snapshot *s);
/* The snapshot of label made on close_date (NULL: the newest of label); 1, 0, -1. */
int catalog_snapshot_by_label(struct catalog *cat, const char *label, const char *close_date,
                              struct catalog_snapshot *s);
/* Every snapshot, oldest close date first. */
int catalog_each_snapshot(struct catalog *cat,
                          int (*cb)(void *arg, const struct catalog_snapshot *s), void *arg,
                          struct cst_err *err);
int catalog_snapshot_copy(struct catalog *cat, int64_t id, const char *dest,
                          const char *storage_class, int64_t retain_until, int64_t now,
                          struct cst_err *err);
/* 1 if dest holds a verified copy of snapshot id. */
int catalog_snapshot_has_copy(struct catalog *cat, int64_t id, const char *dest);
int catalog_each_snapshot_copy(struct catalog *cat, int64_t id,
                               int (*cb)(void *arg, const char *dest, const char *storage_class,
                                         int64_t retain_until, int64_t verified_at),
                               void *arg, struct cst_err *err);
int catalog_snapshot_set_spool(struct catalog *cat, int64_t id, const char *spool,
                               struct cst_err *err);
/* The newest copy error (NULL: none). */
int catalog_snapshot_set_error(struct catalog *cat, int64_t id, const char *error,
                               struct cst_err *err);
/* Checklist: a copy in archive storage exists (kept the first time). */
int catalog_snapshot_archived(struct catalog *cat, int64_t id, int64_t now, struct cst_err *err);
/* Checklist: `verify --snapshot` checked it; detail says what was checked. */
int catalog_snapshot_verified(struct catalog *cat, int64_t id, int64_t now, const char *detail,
                              struct cst_err *err);
/* A package that never reached any destination and whose bytes were lost: forget it
 * (and its versions) so that the period is packaged again. */
int catalog_snapshot_forget(struct catalog *cat, int64_t id, struct cst_err *err);
/* The snapshots that hold (held 1) or reference (held 0) a version. */
int catalog_each_snapshot_of_version(struct catalog *cat, int64_t version_id,
                                     int (*cb)(void *arg, const char *label, const char *close_date,
                                               int held),
                                     void *arg, struct cst_err *err);

/* The snapshot job's state (one row), for `status`. */
struct catalog_snapshot_job {
    int64_t last_run_at, last_ok_at, failures, failing_since, next_run_at;
    char *last_error, *waiting; /* malloc'd or NULL */
};
int catalog_snapshot_job_get(struct catalog *cat, struct catalog_snapshot_job *j);
void catalog_snapshot_job_clear(struct catalog_snapshot_job *j);
/* A run ended: ok resets the failure count, else it grows and error is kept. waiting:
 * the periods still waiting for files (one per line), or NULL. */
int catalog_snapshot_job_record(struct catalog *cat, int ok, const char *error, const char *waiting,
                                int64_t now, struct cst_err *err);
/* When the agent runs the job next. */
int catalog_snapshot_job_next(struct catalog *cat, int64_t next_run_at, struct cst_err *err);

/* --- agent state (small key/value facts: rescans, last start) --- */
int catalog_state_set_int(struct catalog *cat, const char *key, int64_t value, struct cst_err *err);
/* *value: the stored value, or dflt when the key was never set. 0, or -1 and err. */
int catalog_state_get_int(struct catalog *cat, const char *key, int64_t dflt, int64_t *value,
                          struct cst_err *err);

/* --- audit log --- */

/* Append a hash-chained row: who, what, and a JSON detail document. */
int catalog_audit(struct catalog *cat, const char *actor, const char *action,
                  const char *detail_json, struct cst_err *err);
/* Recompute the chain: 0 if intact (*rows set), -1 with the first bad row in err. */
int catalog_audit_verify(struct catalog *cat, int64_t *rows, struct cst_err *err);
/* The chain's head: how many rows, and the hash of the last one (zeros when empty).
 * Rows are numbered 1..rows without gaps (catalog_audit_verify checks it). */
int catalog_audit_head(struct catalog *cat, int64_t *rows, unsigned char hash[32],
                       struct cst_err *err);
/* The stored hash of row id: 1 and hash filled, 0 if there is no such row, -1 on error. */
int catalog_audit_row_hash(struct catalog *cat, int64_t id, unsigned char hash[32],
                           struct cst_err *err);
int catalog_each_audit(struct catalog *cat, int64_t since,
                       int (*cb)(void *arg, int64_t id, int64_t at, const char *actor,
                                 const char *action, const char *detail),
                       void *arg, struct cst_err *err);

/* --- proof: dump records, restore tests, alerts, the checklist (catalog/evidence.c) --- */

/* Who is writing audit rows in this process: every row's detail names the Unix user (of
 * the effective uid) and this command line (already escaped for display). Set once, by
 * main(), before any thread starts; NULL leaves the command out. */
void catalog_audit_set_command(const char *command);
/* Audit rows this process has appended so far. */
int64_t catalog_audit_rows_written(void);

/* What a daily dump held for one namespace as it was written. */
struct catalog_dump_ns {
    char *db, *coll, *type; /* malloc'd when read back */
    int64_t docs, doc_bytes;
    int has_crc;    /* views carry no documents and no CRC */
    uint64_t crc64; /* CRC-64/XZ of the documents, as the archive's EOF header has it */
};
/* Record it for (date, attempt), in the caller's transaction. */
int catalog_dump_ns_record(struct catalog *cat, const char *date, int attempt,
                           const struct catalog_dump_ns *ns, struct cst_err *err);
/* Visit what was recorded for (date, attempt). Returns how many, -1 and err on error. */
int catalog_each_dump_ns(struct catalog *cat, const char *date, int attempt,
                         int (*cb)(void *arg, const struct catalog_dump_ns *ns), void *arg,
                         struct cst_err *err);
/* The newest daily artifact of kind that has a verified copy somewhere: 1 and *a (free
 * a->remote_key), 0 if there is none, -1 and err. */
int catalog_latest_artifact(struct catalog *cat, const char *kind, struct catalog_artifact *a,
                            struct cst_err *err);
/* Every destination holding a verified copy of that artifact, with when it was made. */
int catalog_each_artifact_copy(struct catalog *cat, const char *date, int attempt, const char *kind,
                               int (*cb)(void *arg, const char *dest, int64_t verified_at),
                               void *arg, struct cst_err *err);
/* Every daily attempt for a date in [from, to] (YYYY-MM-DD), by date then attempt. */
int catalog_each_daily_attempt(struct catalog *cat, const char *from, const char *to,
                               int (*cb)(void *arg, const struct catalog_daily *d), void *arg,
                               struct cst_err *err);

/* The file versions a restore test restores: up to n live files chosen at random, and
 * every version first seen at or after since (the test's day), each once, by version. */
int catalog_sample_versions(struct catalog *cat, int64_t n, int64_t since,
                            int (*cb)(void *arg, const struct catalog_version *v), void *arg,
                            struct cst_err *err);

/* Live files now and the sum of their sizes (what a whole restore point restores). */
int catalog_live_bytes(struct catalog *cat, int64_t *files, int64_t *bytes, struct cst_err *err);

/* A monthly restore test. Each check is "passed", "failed", "not done" or "not
 * applicable" ("" while running). */
struct catalog_restore_test {
    int64_t id;
    char month[8];    /* YYYY-MM */
    char trigger[16]; /* schedule | operator */
    char status[16];  /* running | passed | failed | incomplete */
    int64_t pid, started_at, finished_at;
    int with_secret_key;
    char db[16], files[16], snapshot[16], archive[16], pruning[16], rto[16];
    char *summary, *report_json, *report_html, *stored_on; /* malloc'd or NULL */
};
/* A test of t->month starts (t->id set). Tests still marked running are marked failed
 * (interrupted): the caller holds the restore test's lock, so their process is gone. */
int catalog_restore_test_begin(struct catalog *cat, struct catalog_restore_test *t,
                               struct cst_err *err);
/* Record how test t->id ended (status, checks, summary, report). */
int catalog_restore_test_finish(struct catalog *cat, const struct catalog_restore_test *t,
                                struct cst_err *err);
/* The newest test of month (NULL: of any month): 1 and *t, 0 if none, -1 and err. */
int catalog_restore_test_get(struct catalog *cat, const char *month, struct catalog_restore_test *t,
                             struct cst_err *err);
/* The newest month whose test finished (whatever its verdict), into out[8]; 0 if none. */
int catalog_restore_test_last_month(struct catalog *cat, char out[8], struct cst_err *err);
void catalog_restore_test_clear(struct catalog_restore_test *t);
/* When the newest passed restore test finished (ms), 0 if none. */
int64_t catalog_restore_test_last_passed_at(struct catalog *cat);
/* The soonest Object Lock retain-until after now (ms) of any copy or archived snapshot
 * copy; 0 when none is locked. */
int64_t catalog_next_lock_expiry(struct catalog *cat, int64_t now);

/* An alert the agent raised and has not yet seen clear. */
struct catalog_alert {
    char *key, *kind, *subject, *message; /* malloc'd */
    int64_t seen_at, fired_at;            /* fired_at 0: the command was not told yet */
};
int catalog_alerts_load(struct catalog *cat, struct catalog_alert **out, size_t *n,
                        struct cst_err *err);
/* Insert or update the alert of a->key. */
int catalog_alert_save(struct catalog *cat, const struct catalog_alert *a, struct cst_err *err);
int catalog_alert_delete(struct catalog *cat, const char *key, struct cst_err *err);
void catalog_alerts_free(struct catalog_alert *a, size_t n);

/* PRAGMA integrity_check: 0 if "ok". */
int catalog_integrity_check(struct catalog *cat, struct cst_err *err);

#endif
