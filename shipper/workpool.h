/*
 * workpool.h - worker threads that hand results back to the event loop.
 *
 * A job's run() executes on a worker; its done() runs later on the loop
 * thread (woken by one ev_async), where it may touch the catalog. The shape
 * is libuv's threadpool: a queue under a mutex for work, another for
 * completions, and a single async wake-up.
 */
#ifndef CST_WORKPOOL_H
#define CST_WORKPOOL_H

#include <ev.h>

struct work {
    void (*run)(struct work *w);  /* on a worker thread */
    void (*done)(struct work *w); /* on the loop thread */
    struct work *next;
};

struct workpool;

struct workpool *workpool_new(struct ev_loop *loop, int threads);
/* Name the pool's threads (the first 15 bytes), as `top -H`, `ps -L` and perf show them:
 * what each thread group costs can then be measured. */
void workpool_name(struct workpool *pool, const char *name);
void workpool_submit(struct workpool *pool, struct work *w);
/* Jobs submitted whose done() has not run yet. */
int workpool_pending(const struct workpool *pool);
/* Stop the threads after the jobs already queued have run; their done()
 * callbacks are not called. workpool_free(NULL) does nothing. */
void workpool_free(struct workpool *pool);

#endif
