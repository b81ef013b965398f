/*
 * verifier.h - rolling verification: every copy on every destination is read
 * back and hashed again, a few at a time, least recently checked first, so
 * that each one is re-read within a bounded period (copies / per_day days).
 *
 * A copy that reads back different, or is gone, is marked damaged in the
 * catalog (never again used for dedup or restore) and a new copy is queued;
 * the shipper then finds its bytes (coverage.c). A destination that cannot be
 * reached proves nothing either way: its copies are simply checked later.
 * Only ciphertext is read, so no secret key is needed.
 */
#ifndef CST_VERIFIER_H
#define CST_VERIFIER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "shipper/dest.h"
#include "shipper/workpool.h"

struct verifier;

struct verifier_params {
    struct ev_loop *loop;
    struct catalog *catalog;
    struct dest **dests; /* blocking handles, used only on pool's thread */
    size_t n_dests;
    struct workpool *pool;         /* one thread, shared with the shipper's copying between dests */
    const char *scratch_dir;       /* where a copy is read back to (an unnamed O_TMPFILE) */
    int64_t per_day;               /* copies re-read per destination per day; 0: none */
    void (*on_damaged)(void *arg); /* a copy was found damaged (a new one is queued) */
    void *arg;
};

struct verifier *verifier_new(const struct verifier_params *p);
/* Stop starting checks; one in flight still finishes (its pool is freed first). */
void verifier_stop(struct verifier *v);
void verifier_free(struct verifier *v);

/* Read back one copy: 1 intact, 0 damaged (why filled), -1 not checkable now (err). */
int verifier_check_copy(struct dest *d, const struct catalog_copy *c, const char *scratch_dir,
                        char *why, size_t why_len, struct cst_err *err);

#endif
