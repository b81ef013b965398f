/*
 * shipper.h - the pipeline from the catalog's queues to verified copies.
 *
 * Two stages. Sealing: for each ready path in the queue, a worker reads the
 * file once (SHA-256, zstd, encryption into a spool file, container.h);
 * back on the loop the object id (keyed BLAKE2b of the SHA-256) is checked
 * against the catalog, and one transaction per burst turns the results into
 * copy-queue entries, one per destination still lacking the object.
 * Copying: each destination works through its own entries at its own pace
 * (dest.h); a verified copy is recorded in one transaction with the
 * versions that were waiting for it. A destination that is down backs off
 * on its own and holds up no other.
 */
#ifndef CST_SHIPPER_H
#define CST_SHIPPER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "common/err.h"
#include "shipper/dest.h"
#include "shipper/workpool.h"

struct shipper;

struct shipper_params {
    struct ev_loop *loop;
    struct catalog *catalog;
    const unsigned char *public_key; /* 32 bytes */
    const unsigned char *naming_key; /* 32 bytes, sodium_malloc'd by the caller */
    const char *spool_dir;
    struct dest **dests;
    size_t n_dests;
    struct workpool *pool; /* worker threads, shared with the local destination */
    int workers;
    int settle_ms; /* how long to wait before re-reading a file that changed while read */
    /* A file that keeps changing is shipped anyway after this long, from a consistent
     * read, and again once it settles (the catalog's queue holds the clock). */
    int64_t max_delay_ms;
    /* Blocking handles of the same destinations (opened without a loop), used only on
     * aux_pool's single thread: copying an object's ciphertext from one destination
     * to another that lacks it. NULL: copies are made only from the spool or by
     * sealing the live file again. */
    struct dest **fetch_dests;
    struct workpool *aux_pool;
    /* Object Lock: the retain-until (ms) that a version captured at `captured_at` needs on
     * the destinations that lock (dest_locks()). Copies are locked until their newest
     * version's date; content that comes back in a new version has its stored copy's
     * retention extended in place before the version counts as shipped. NULL: nothing is
     * locked. Called with `arg`. */
    int64_t (*lock_until)(void *arg, int64_t captured_at);
    /* Called on the loop after each committed batch (may be NULL). */
    void (*on_batch)(void *arg, size_t files, uint64_t bytes);
    void *arg;
    /* 0: shipper_new checks coverage itself. 1: the caller calls shipper_cover_start
     * later (the agent does, once its start-up scan is done: the check blocks the loop
     * for 60-140 ms over 100,000 objects, which the scan need not wait for). */
    int cover_later;
};

struct shipper *shipper_new(const struct shipper_params *p, struct cst_err *err);
/* Look at the queue now (after something was queued). */
void shipper_kick(struct shipper *s);
/* Stop taking new work; what is in flight still finishes. */
void shipper_stop(struct shipper *s);
/* Entries being worked on right now. */
size_t shipper_in_flight(const struct shipper *s);
/* Nothing in flight, no coverage check under way and nothing ready in either queue. */
int shipper_idle(struct shipper *s);
/* Nothing in flight and both queues (and waiting versions) empty. */
int shipper_drained(struct shipper *s);
void shipper_free(struct shipper *s);

/* The catalog write that last failed (NULL once one has succeeded since). */
const char *shipper_catalog_error(const struct shipper *s);

/* Coverage: queue a copy of every retained object a configured destination lacks
 * (a destination added later, a copy found damaged). Returns how many were queued. */
int64_t shipper_cover(struct shipper *s);
/* With cover_later: the first coverage check (in slices on the loop; without this call
 * it begins a minute after shipper_new), then one every 10 minutes. A check that fails
 * is logged and tried again in a minute (`status` reports the gap meanwhile). */
void shipper_cover_start(struct shipper *s);

/* Keyed BLAKE2b-256 of a SHA-256 digest, as 64 hex chars (out[65]). */
void shipper_object_id(const unsigned char naming_key[32], const unsigned char sha256[32],
                       char out[65]);

#endif
