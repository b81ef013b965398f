/*
 * dest.h - where sealed objects go: one interface, a backend per `type`.
 *
 * Callers see one struct dest_ops per destination. Its operations are the
 * same for every backend: store.c's, which own the sequence that makes a
 * copy durable and verified (store.h), over the primitives each backend
 * supplies (struct store_driver, the way pgBackRest's StorageInterface
 * splits a driver from the storage core). Uploads are asynchronous:
 * put_batch() returns at once and calls done() later on the loop thread,
 * after each item is durable at the destination and verified there (or has
 * failed, with a kind that says whether retrying soon can help). The
 * blocking operations (get, exists, list, remove, probe) may be called from
 * any thread, also several at once, and from a destination opened without
 * an event loop.
 */
#ifndef CST_DEST_H
#define CST_DEST_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct dest;
struct workpool;
struct curl_ev;

enum dest_error {
    DEST_OK = 0,
    DEST_ERR_TRANSIENT, /* timeout, connection refused, 5xx, 429: retry with backoff */
    DEST_ERR_CONFIG,    /* credentials, TLS, missing bucket, host key: retry slowly, tell */
    DEST_ERR_SOURCE,    /* the spool file is missing or not what was sealed: re-seal */
};

struct dest_put {
    /* in */
    const char *spool_path;          /* the sealed object, locally */
    const char *remote_key;          /* "objects/ab/abcd…" */
    uint64_t stored_size;            /* size of the sealed object */
    unsigned char stored_sha256[32]; /* SHA-256 of the sealed object */
    uint64_t plain_size;             /* of the content: never sent to a destination */
    unsigned char plain_sha256[32];  /* of the content: never sent to a destination */
    void *owner;                     /* the caller's */
    /* in, optional per object (zero: the destination's defaults); backends without
     * storage classes ignore it */
    const char *storage_class; /* s3: this class instead of hot_class, read back after the
                                * commit from the stored version (store.h, step 6) */
    int64_t retain_until;      /* s3 with object_lock: Object Lock retention until then (ms),
                                * in the destination's lock_mode, read back likewise */
    int in_place; /* the object is stored there already (remote_key, stored_size): no bytes
                   * are sent; its stored version gets what the plan asks for (a retention
                   * extended to retain_until) and is checked as in store.h step 6. A new
                   * upload would make a second version under Object Lock, doubling storage */
    /* in, optional: the caller made spool_path's data durable (fdatasync) before it asked;
     * a backend that places that very file (local: a hard link) need not sync it again.
     * 0 (the safe default): the backend syncs what it stores. */
    int spool_durable;
    /* out */
    int ok;               /* stored and verified */
    enum dest_error kind; /* why not */
    char error[CST_ERR_SIZE];
    char version_id[128];   /* s3: the version stored, on a versioned bucket ("" otherwise) */
    int64_t retained_until; /* s3: the retain-until HEAD shows on it (ms), 0 when none */
};

typedef void (*dest_done_fn)(void *arg, struct dest_put *puts, size_t n);

/* What a destination says about one stored object (stat). */
struct dest_stat {
    uint64_t size;
    char storage_class[64]; /* "" when the store has no classes (S3 says STANDARD when
                             * HEAD names none) */
    char version_id[128];   /* "" when unversioned */
    char lock_mode[32];     /* Object Lock mode, "" when none */
    int64_t retain_until;   /* ms, 0 when none */
    int legal_hold;         /* the Object Lock legal-hold flag is ON */
    int thaw;               /* x-amz-restore: 0 none, DEST_THAW_ONGOING, DEST_THAW_READY */
};

#define DEST_THAW_ONGOING 1
#define DEST_THAW_READY 2

struct dest_check {
    char name[64]; /* "reachable", "authenticated", "write probe", … */
    int ok;
    char detail[512]; /* what was seen; what to do when not ok */
};

struct dest_probe {
    struct dest_check checks[16];
    size_t n;
};

struct dest_ops {
    const char *type;
    /* all present for every backend but stat (store.h: STORE_DEST_OPS) */
    void (*put_batch)(struct dest *d, struct dest_put *puts, size_t n, dest_done_fn done,
                      void *arg);
    int (*get)(struct dest *d, const char *remote_key, int out_fd, struct cst_err *err);
    void (*free)(struct dest *d);
    int (*exists)(struct dest *d, const char *remote_key, uint64_t *size, struct cst_err *err);
    int (*remove)(struct dest *d, const char *remote_key, struct cst_err *err);
    /* Optional (NULL where the backend cannot describe objects: local, sftp). The latest
     * version: 1 and *st filled, 0 when the object is absent, -1 with err. */
    int (*stat)(struct dest *d, const char *remote_key, struct dest_stat *st, struct cst_err *err);
    /* Every key under prefix, with its size; cb returning non-zero stops. */
    int (*list)(struct dest *d, const char *prefix,
                int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                struct cst_err *err);
    /* doctor: reach, authenticate, write/read/delete a probe object, backend-specific
     * checks. Fills out; returns 0 when every check passed, -1 otherwise. */
    int (*probe)(struct dest *d, struct dest_probe *out);
};

enum dest_role { DEST_ROLE_PRIMARY = 0, DEST_ROLE_REPLICA, DEST_ROLE_ARCHIVE };

struct store_driver;
struct store;

struct dest {
    const struct dest_ops *ops;
    const struct store_driver *driver; /* the backend's primitives (store.h) */
    struct store *store;               /* the core's state for this destination */
    char *name;
    int role;
    size_t max_batch;      /* items per put_batch call */
    size_t max_concurrent; /* put_batch calls outstanding at once */
    void *impl;
};

/* What asynchronous backends run on. loop NULL: command-line use, blocking ops only. */
struct dest_env {
    struct ev_loop *loop;
    struct workpool *pool; /* for backends whose I/O blocks (local) */
    struct curl_ev *curl;  /* for libcurl backends (s3, sftp) */
};

struct dest_s3_config {
    const char *name;
    const char *endpoint; /* https://host[:port] (http:// only for loopback) */
    const char *bucket;
    const char *region;
    const char *access_key_file, *secret_key_file; /* mode 0600, one line each */
    const char *ca_file;                           /* NULL: the system's CAs */
    const char *hot_class;                         /* x-amz-storage-class, NULL: bucket default */
    /* The tier transition: a bucket lifecycle rule (ID custodian-archive) moves objects/ to
     * archive_class transition_days after their upload, keeping version ids and locks
     * (a self-copy would make a second, locked version). 0: no rule. */
    const char *archive_class;
    int transition_days;
    int object_lock;       /* the bucket has Object Lock: puts may carry a retention */
    const char *lock_mode; /* "GOVERNANCE" or "COMPLIANCE", with object_lock */
    int path_style;
    int max_inflight;
    long bandwidth_kbps;   /* 0: unlimited */
    uint64_t part_size;    /* multipart above this size; >= 5 MiB */
    const char *state_dir; /* uploads/ there records multipart uploads in progress; NULL: none */
};

struct dest_sftp_config {
    const char *name;
    const char *url;         /* sftp://user@host:port/base */
    const char *identity;    /* private key file */
    const char *known_hosts; /* must hold the server's key */
    int max_inflight;        /* sessions (and threads) at once */
    long bandwidth_kbps;
    uint64_t readback_full; /* copies up to this size are read back whole; larger: sampled */
};

struct dest_local_config {
    const char *name;
    const char *path; /* never created: a missing folder is an unmounted one */
    int max_inflight; /* threads writing (and fdatasyncing) at once */
    long bandwidth_kbps;
};

/* Append a check to a probe report (probe implementations). */
void dest_check_add(struct dest_probe *out, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A folder on a mounted disk or NAS. */
struct dest *dest_local_new(const struct dest_local_config *c, const struct dest_env *env,
                            struct cst_err *err);
struct dest *dest_s3_new(const struct dest_s3_config *c, const struct dest_env *env,
                         struct cst_err *err);
struct dest *dest_sftp_new(const struct dest_sftp_config *c, const struct dest_env *env,
                           struct cst_err *err);
/* S3 objects whose metadata still holds what versions before this one wrote (the
 * plaintext's SHA-256 and size). fix: rewrite their metadata by a self-copy, unless the
 * bucket has Object Lock (then out->locked and nothing changes). */
struct dest_scrub {
    int64_t objects, legacy, fixed;
    int locked;
    char example[256]; /* one such key */
    char error[512];   /* the first fix that failed */
};
int dest_s3_scrub(struct dest *d, int fix, struct dest_scrub *out, struct cst_err *err);
/* The tier transition's lifecycle rule on an S3 destination with transition_days: 0 when
 * the bucket has it (installed now when the bucket had no lifecycle configuration, or only
 * an older custodian rule), -1 with err saying why not (another configuration is there:
 * custodian never replaces an operator's rules). */
int dest_s3_lifecycle_ensure(struct dest *d, struct cst_err *err);

/* The destination locks the puts that carry a retain_until (s3 with object_lock). */
int dest_locks(const struct dest *d);
/* Set (on 1) or clear (on 0) the Object Lock legal-hold flag of key's latest version on a
 * destination that locks, then read it back: 0 once HEAD shows it so, -1 with err. */
int dest_set_legal_hold(struct dest *d, const char *key, int on, struct cst_err *err);
/* Archive classes that must be thawed before a GET (S3 GLACIER, DEEP_ARCHIVE): 1 when key's
 * copy on d is stored in one and no thawed copy is ready (st filled), 0 when it can be
 * read as it is, -1 with err. */
int dest_needs_thaw(struct dest *d, const char *key, struct dest_stat *st, struct cst_err *err);
/* Ask for a temporary readable copy of key (S3 RestoreObject) for `days`, at `tier`
 * (Standard | Bulk). 0 when asked (or already under way), -1 with err. */
int dest_thaw(struct dest *d, const char *key, const char *tier, int days, struct cst_err *err);

/* "objects/<2 hex>/<id>" (malloc'd). */
char *dest_object_key(const char *object_id);
const char *dest_error_name(enum dest_error kind);
void dest_free(struct dest *d);

/*
 * The destination marker (local and SFTP roots; docs/destinations.md): a root
 * that is missing, or carries no marker once copies were recorded on it, is
 * unreachable (copies wait, nothing is created there). What the catalog
 * knows decides whether an unmarked root may be marked now.
 */
struct dest_usage {
    int in_use;               /* copies are recorded on this destination */
    const char *recorded_key; /* one of them, or NULL */
    int may_mark;             /* this process ships: it may mark the root at first use */
};
/* The install the marker names (hex; NULL: not known, only the name is compared). */
void dest_set_install(struct dest *d, const char *install_id);
void dest_set_usage(struct dest *d, const struct dest_usage *u);
/* In a process that ships, once: check (and at first use mark) the root, and remove
 * what dead processes left behind. On the destination's threads when it has them. */
void dest_startup(struct dest *d);
/* The marker's state in words, for status and doctor: 0 ready, -1 not (why in out). */
int dest_root_state(struct dest *d, char *out, size_t outlen);

#endif
