/*
 * dest.h - where sealed objects go: one interface, a backend per `type`.
 *
 * Every backend fills a const struct dest_ops (required operations first,
 * then optional ones, NULL when absent), the way pgBackRest's
 * StorageInterface does. put_batch() runs on a worker thread and may block;
 * it returns only after each item is durable at the destination and read
 * back (verified), item by item.
 */
#ifndef CST_DEST_H
#define CST_DEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct dest;

struct dest_item {
    const char *spool_path;          /* the sealed object, locally */
    const char *remote_key;          /* "objects/ab/abcd…" */
    uint64_t stored_size;            /* expected size at the destination */
    unsigned char stored_sha256[32]; /* expected SHA-256 at the destination */
    int ok;                          /* out: stored and verified */
    char error[CST_ERR_SIZE];        /* out: why not */
};

struct dest_ops {
    const char *type;
    /* required */
    int (*put_batch)(struct dest *d, struct dest_item *items, size_t n, struct cst_err *err);
    int (*get)(struct dest *d, const char *remote_key, int out_fd, struct cst_err *err);
    void (*free)(struct dest *d);
    /* optional */
    int (*exists)(struct dest *d, const char *remote_key, uint64_t *size, struct cst_err *err);
};

enum dest_role { DEST_ROLE_PRIMARY = 0, DEST_ROLE_REPLICA, DEST_ROLE_ARCHIVE };

struct dest {
    const struct dest_ops *ops;
    char *name;
    int role;
    void *impl;
};

/* A folder on a mounted disk or NAS; created if missing. */
struct dest *dest_local_new(const char *name, const char *root, struct cst_err *err);
/* "objects/<2 hex>/<id>" (malloc'd). */
char *dest_object_key(const char *object_id);
void dest_free(struct dest *d);

#endif
