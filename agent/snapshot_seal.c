/*
 * snapshot_seal.c - sealing the package on its own thread (see
 * snapshot_seal.h).
 *
 * SLOTS buffers of SLOT_SIZE bytes form a ring. The producer fills the slot
 * at `head` and, once full (or at finish), publishes it by raising `queued`;
 * the sealing thread takes the slot at `tail`, seals it outside the lock
 * and then gives it back by lowering `queued`. A slot is touched by exactly
 * one side at a time, so only the counters need the mutex. After a failure
 * the thread keeps taking slots (and drops them), so that a producer never
 * waits on a queue nobody empties; the producer sees `failed` at its next
 * hand-off.
 */
#include "snapshot_seal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define SLOTS 4
#define SLOT_SIZE (1u << 20)
#define WRITEBACK_EVERY (64u << 20)

struct seal_pipe {
    struct crypt_sealer *sealer;
    int fd;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t to_seal; /* a slot was queued, or the producer is done */
    pthread_cond_t to_fill; /* a slot was given back */
    unsigned char *slot[SLOTS];
    size_t slot_len[SLOTS];
    size_t head, tail, queued; /* head/tail count slots ever queued/taken */
    size_t fill;               /* bytes in the producer's slot at head */
    int done;                  /* the producer queues nothing more */
    int failed;                /* set by the thread; err then holds why */
    struct cst_err err;
    uint64_t written, flushed; /* the thread's: plaintext sealed, write-back started */
};

static void *seal_thread(void *arg)
{
    struct seal_pipe *p = arg;

    for (;;) {
        unsigned char *buf;
        size_t len;
        int failed;

        pthread_mutex_lock(&p->mu);
        while (p->queued == 0 && !p->done)
            pthread_cond_wait(&p->to_seal, &p->mu);
        if (p->queued == 0) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        buf = p->slot[p->tail % SLOTS];
        len = p->slot_len[p->tail % SLOTS];
        failed = p->failed;
        pthread_mutex_unlock(&p->mu);

        if (!failed) {
            struct cst_err e;

            if (crypt_sealer_write(p->sealer, buf, len, &e) < 0) {
                pthread_mutex_lock(&p->mu);
                p->err = e;
                p->failed = 1;
                pthread_mutex_unlock(&p->mu);
            } else {
                p->written += len;
                /* Start write-back as the package grows, of this file only (never syncfs). */
                if (p->written - p->flushed >= WRITEBACK_EVERY) {
                    sync_file_range(p->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
                    p->flushed = p->written;
                }
            }
        }

        pthread_mutex_lock(&p->mu);
        p->tail++;
        p->queued--;
        pthread_cond_signal(&p->to_fill);
        pthread_mutex_unlock(&p->mu);
    }
}

struct seal_pipe *seal_pipe_new(const unsigned char public_key[32], int out_fd, struct cst_err *err)
{
    struct seal_pipe *p = util_xcalloc(1, sizeof(*p));
    int rc;

    p->fd = out_fd;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->to_seal, NULL);
    pthread_cond_init(&p->to_fill, NULL);
    for (size_t i = 0; i < SLOTS; i++)
        p->slot[i] = util_xmalloc(SLOT_SIZE);
    p->sealer = crypt_sealer_new(public_key, 0, out_fd, err);
    if (p->sealer == NULL)
        goto fail;
    rc = pthread_create(&p->thread, NULL, seal_thread, p);
    if (rc != 0) {
        errno = rc;
        cst_err_sys(err, "cannot start the package's sealing thread");
        goto fail;
    }
    p->started = 1;
    return p;
fail:
    seal_pipe_free(p);
    return NULL;
}

/* Publish the slot at head (fill bytes) and wait until the next one is free. 0, or -1 once
 * the thread failed. */
static int hand_off(struct seal_pipe *p)
{
    int failed;

    pthread_mutex_lock(&p->mu);
    if (p->fill > 0) {
        p->slot_len[p->head % SLOTS] = p->fill;
        p->head++;
        p->queued++;
        p->fill = 0;
        pthread_cond_signal(&p->to_seal);
    }
    while (p->queued == SLOTS && !p->failed)
        pthread_cond_wait(&p->to_fill, &p->mu);
    failed = p->failed;
    pthread_mutex_unlock(&p->mu);
    return failed ? -1 : 0;
}

int seal_pipe_write(void *arg, const void *buf, size_t len)
{
    struct seal_pipe *p = arg;
    const unsigned char *src = buf;

    if (!p->started) /* finished or stopped: nothing seals what would be queued */
        return -1;
    while (len > 0) {
        size_t room = SLOT_SIZE - p->fill;

        if (room > len)
            room = len;
        memcpy(p->slot[p->head % SLOTS] + p->fill, src, room);
        p->fill += room;
        src += room;
        len -= room;
        if (p->fill == SLOT_SIZE && hand_off(p) < 0)
            return -1;
    }
    return 0;
}

const char *seal_pipe_error(struct seal_pipe *p)
{
    const char *msg;

    pthread_mutex_lock(&p->mu);
    msg = p->failed ? p->err.msg : NULL;
    pthread_mutex_unlock(&p->mu);
    return msg;
}

/* Tell the thread nothing more comes and wait for it to end. */
static void stop(struct seal_pipe *p)
{
    if (!p->started)
        return;
    pthread_mutex_lock(&p->mu);
    p->done = 1;
    pthread_cond_signal(&p->to_seal);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    p->started = 0;
}

int seal_pipe_finish(struct seal_pipe *p, struct crypt_sealed_info *info, struct cst_err *err)
{
    int rc = hand_off(p);

    stop(p);
    /* The thread has ended: its fields are ours now, without the lock. */
    if (rc < 0 || p->failed) {
        snprintf(err->msg, sizeof(err->msg), "%s", p->err.msg);
        return -1;
    }
    return crypt_sealer_finish(p->sealer, info, err);
}

void seal_pipe_free(struct seal_pipe *p)
{
    if (p == NULL)
        return;
    if (p->started) {
        /* Abandoned: what is still queued is only dropped. */
        pthread_mutex_lock(&p->mu);
        p->failed = 1;
        if (p->err.msg[0] == '\0')
            snprintf(p->err.msg, sizeof(p->err.msg), "the package was abandoned");
        pthread_mutex_unlock(&p->mu);
        stop(p);
    }
    crypt_sealer_free(p->sealer);
    for (size_t i = 0; i < SLOTS; i++)
        free(p->slot[i]);
    pthread_cond_destroy(&p->to_fill);
    pthread_cond_destroy(&p->to_seal);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
