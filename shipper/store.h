/*
 * store.h - the one storage guarantee, and the primitives a backend supplies
 * for it (the shape of pgBackRest's StorageInterface).
 *
 * store.c owns the sequence every copy goes through, whatever the backend:
 *
 *   1. the destination's root is there and carries this install's marker
 *      (backends with STORE_FEAT_MARKER: local folders, SFTP base folders);
 *   2. the sealed bytes are streamed through a store_source, which hashes
 *      them and refuses to hand over the last byte when they are not what
 *      was sealed (the spool file changed: a source error, never a copy);
 *   3. the backend writes them under a temporary name that names this
 *      process, makes them durable and moves them into place (commit); an
 *      object already under the final name is verified and kept, or, when
 *      damaged, replaced without ever leaving the name empty of an object;
 *   4. once per batch, every folder an object was moved into is made
 *      durable (one fsync per folder);
 *   5. verification by one rule: when the backend has
 *      STORE_FEAT_SERVER_CHECKS_HASH the commit is the proof (the server
 *      refused the body unless it matched the signed SHA-256); otherwise the
 *      object is read back and its SHA-256 compared with the sealed one.
 *      Size is never proof. Objects above the destination's read-back limit
 *      are checked by sampled ranges instead (docs/destinations.md);
 *   6. what the object's plan asks for, a storage class or an Object Lock
 *      retention (dest_put.storage_class, retain_until), is checked on the
 *      stored version (describe); a retention the store dropped on the way
 *      (RGW does on multipart uploads) is set on that version and read back
 *      again. A copy whose class or lock does not show is not verified. Puts
 *      that ask for neither make no request here: the hot path stays as it is;
 *   7. the result goes back to the caller's done() on the loop thread.
 *
 * Backends: dest_local.c, dest_s3.c, dest_sftp.c. Their blocking primitives
 * run on the destination's own threads (one per max_inflight) and must be
 * safe to call from several threads at once; the blocking operations of
 * dest.h (get, exists, list, remove, probe) go through here as well.
 */
#ifndef CST_STORE_H
#define CST_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shipper/dest.h"

/* A successful commit proves the stored bytes: no read-back. */
#define STORE_FEAT_SERVER_CHECKS_HASH (1u << 0)
/* The commit returned only after the object was on stable storage. */
#define STORE_FEAT_DURABLE_COMMIT (1u << 1)
/* The root is a folder that must exist and carry the destination marker. */
#define STORE_FEAT_MARKER (1u << 2)

/* The marker file at a destination's root (STORE_FEAT_MARKER). */
#define STORE_MARKER_KEY "custodian-destination.txt"
/* Temporary names start with this; list() never shows them. */
#define STORE_TEMP_PREFIX ".tmp."

/* Why a primitive failed, and what kind of failure it is. */
struct store_err {
    enum dest_error kind;
    struct cst_err err;
};

int store_fail(struct store_err *e, enum dest_error kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- what is being written --- */

struct store_source;

/* Up to len bytes of the object (0 at its end). -1 when the spool file cannot be read,
 * ends early, or (checked before its last bytes are returned) is not what was sealed:
 * the backend then abandons the write. Paced by the destination's bandwidth limit. */
ssize_t store_source_read(struct store_source *src, void *buf, size_t len);
/* Back to the first byte (a backend that must send the object again). */
int store_source_rewind(struct store_source *src);
uint64_t store_source_size(const struct store_source *src);
/* The spool file, for a backend that can place it without copying (a hard link);
 * NULL when the bytes come from memory. */
const char *store_source_path(const struct store_source *src);
/* The whole object was read and matched what was sealed. */
int store_source_complete(const struct store_source *src);

struct store_write {
    struct dest_put *put; /* remote_key, stored_size, stored_sha256; kind+error on failure */
    struct store_source *src;
    /* set by write(): */
    int exists;  /* the final name already holds an object; the temporary one is kept */
    char *temp;  /* the backend's temporary name while it is kept (malloc'd) */
    char **dirs; /* folders (keys, "" = root) whose entries changed: fsynced once per batch */
    size_t n_dirs;
    void *impl; /* an asynchronous backend's own state */
    void *core; /* store.c's */
};

/* Remember that folder `dir` (a key, "" for the root) changed for w (deduplicated). */
void store_write_touch(struct store_write *w, const char *dir);
/* The folder part of a key ("objects/ab" of "objects/ab/abcd"; "" at the root), malloc'd. */
char *store_key_dir(const char *key);

/* Asynchronous backends: w has finished (put->kind set when it failed). On the loop. */
void store_write_done(struct store_write *w);

/* --- temporary names and their owners --- */

/* ".tmp.<pid>-<start time>.<counter>.<name>": names this process, so that start-up
 * cleanup removes only what a dead process left (malloc'd). */
char *store_temp_name(const char *name);
/* 1: a temporary name whose owner has exited; 0: not a temporary name, or its owner
 * (this process or another) still runs. Also knows the names of older versions. */
int store_temp_is_stale(const char *name);
/* This process, as temporary names and upload records name it: "<pid>-<start time>". */
const char *store_owner(void);
/* 1 when the owner named like store_owner() still runs. */
int store_owner_alive(const char *owner);

/* --- the primitives --- */

enum store_root { STORE_ROOT_MISSING = 0, STORE_ROOT_EMPTY, STORE_ROOT_USED };

typedef int (*store_sink_fn)(void *arg, const void *buf, size_t len);

struct store_driver {
    const char *type;
    unsigned features;
    /* Stream w->src into a temporary name, make it durable, and move it to
     * w->put->remote_key without replacing anything. An object already there:
     * w->exists = 1, the temporary one kept (w->temp); settle() decides. Blocking;
     * 0, or -1 with w->put->kind and error. NULL for purely asynchronous backends. */
    int (*write)(struct dest *d, struct store_write *w);
    /* After exists: replace = 0 drops the temporary object; 1 puts it in place of the
     * damaged one (moved aside first where a rename cannot replace). */
    int (*settle)(struct dest *d, struct store_write *w, int replace, struct store_err *e);
    /* Asynchronous alternative to write(), used when there is a loop (s3). */
    void (*write_async)(struct dest *d, struct store_write *w);
    /* fsync one folder (a key, "" for the root). NULL: commits are durable alone. */
    int (*sync_dir)(struct dest *d, const char *dir, struct store_err *e);
    /* Bytes [off, off+len) of key, in order, into sink. */
    int (*read)(struct dest *d, const char *key, uint64_t off, uint64_t len, store_sink_fn sink,
                void *arg, struct store_err *e);
    /* 1 with *size, 0 when absent, -1. */
    int (*stat)(struct dest *d, const char *key, uint64_t *size, struct store_err *e);
    /* STORE_FEAT_MARKER: what the root is now (enum store_root), or -1. Creates nothing. */
    int (*root)(struct dest *d, struct store_err *e);
    /* optional */
    /* The read-back of a whole object from one open: 1 with *size (and, when *size is
     * `want`, every byte of key in order into sink), 0 when absent, -1. Saves the separate
     * stat(): for a small object that lookup is as dear as the read. */
    int (*read_whole)(struct dest *d, const char *key, uint64_t want, store_sink_fn sink, void *arg,
                      uint64_t *size, struct store_err *e);
    int (*get)(struct dest *d, const char *key, int out_fd, struct cst_err *err);
    int (*list)(struct dest *d, const char *prefix,
                int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                struct cst_err *err);
    int (*remove)(struct dest *d, const char *key, struct cst_err *err);
    int (*remove_dir)(struct dest *d, const char *dir, struct cst_err *err);
    /* What the store says about one version of key (version NULL or "": the latest):
     * size, storage class, version id, Object Lock. 1 with *st, 0 when absent, -1. Where
     * it is missing, dest_put.storage_class is ignored and dest_ops.stat absent. */
    int (*describe)(struct dest *d, const char *key, const char *version, struct dest_stat *st,
                    struct store_err *e);
    /* Retain that version of key until until_ms, in the destination's lock mode
     * (store_params.lock_mode). Needed with a lock mode. */
    int (*set_retention)(struct dest *d, const char *key, const char *version, int64_t until_ms,
                         struct store_err *e);
    /* Set or clear the legal-hold flag of that version of key. Optional (with a lock mode). */
    int (*set_legal_hold)(struct dest *d, const char *key, const char *version, int on,
                          struct store_err *e);
    /* Thaw an archived object for days at tier (RestoreObject). Optional. */
    int (*thaw)(struct dest *d, const char *key, const char *tier, int days, struct store_err *e);
    /* Start-up, in processes that ship: remove what dead processes left behind
     * (temporary files, multipart uploads), never what a live one is writing. */
    int (*cleanup)(struct dest *d, struct cst_err *err);
    /* doctor: reach, authenticate; returns 0 when usable. */
    int (*probe_connect)(struct dest *d, struct dest_probe *out);
    /* doctor: backend checks while the probe object exists (s3: no anonymous read). */
    int (*probe_object)(struct dest *d, const char *key, struct dest_probe *out);
    /* Make blocked calls return (shutting down). */
    void (*stop)(struct dest *d);
    void (*free)(struct dest *d);
};

/* The dest_ops every backend exposes: the core's, dispatching to the driver. */
void store_put_batch(struct dest *d, struct dest_put *puts, size_t n, dest_done_fn done, void *arg);
int store_get(struct dest *d, const char *key, int out_fd, struct cst_err *err);
int store_exists(struct dest *d, const char *key, uint64_t *size, struct cst_err *err);
int store_remove(struct dest *d, const char *key, struct cst_err *err);
int store_list(struct dest *d, const char *prefix,
               int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
               struct cst_err *err);
int store_probe(struct dest *d, struct dest_probe *out);
void store_free(struct dest *d);
/* dest_ops.stat, for backends with describe. */
int store_stat(struct dest *d, const char *key, struct dest_stat *st, struct cst_err *err);

#define STORE_DEST_OPS_FIELDS(type_name)                                                           \
    .type = (type_name), .put_batch = store_put_batch, .get = store_get, .free = store_free,       \
    .exists = store_exists, .remove = store_remove, .list = store_list, .probe = store_probe
#define STORE_DEST_OPS(type_name)                                                                  \
    {                                                                                              \
        STORE_DEST_OPS_FIELDS(type_name)                                                           \
    }

struct store_params {
    const char *name;
    const char *where; /* the root as an operator knows it ("/mnt/nas/custodian") */
    const struct dest_ops *ops;
    const struct store_driver *driver;
    void *impl;
    size_t max_batch, max_concurrent;
    int threads;            /* destination threads for the blocking primitives (0: none) */
    uint64_t readback_full; /* objects up to this size are read back whole; 0: all */
    long bandwidth_kbps;    /* pace of store_source_read; 0: unlimited */
    /* "GOVERNANCE" or "COMPLIANCE": the destination locks the puts that carry a
     * retain_until, in this mode (the driver has set_retention and describe). NULL: it
     * has no Object Lock, and retain_until is ignored. */
    const char *lock_mode;
};

/* A destination around a backend (the backend's constructor calls this last). With
 * env NULL or without a loop, every operation blocks in the caller. */
struct dest *store_dest_new(const struct store_params *p, const struct dest_env *env);

#endif
