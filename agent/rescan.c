/*
 * rescan.c - reconcile walks on their own thread (see rescan.h).
 *
 * Requests and results each sit in a list under one mutex; the thread sleeps
 * on a condition variable for work or room, and one ev_async wakes the loop
 * for results (the shape of libuv's threadpool, with back-pressure added).
 */
#include "rescan.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/prio.h"
#include "common/util.h"

#define BATCH 256
#define MAX_OUT 4 /* batches waiting for the loop before the walk pauses */

struct request {
    char *root, *why;
    struct request *next;
};

struct message {
    int is_done;
    uint64_t walk;
    char *root, *why;
    struct reconcile_change *changes;
    size_t n;
    struct reconcile_counts counts;
    int rc;
    char error[CST_ERR_SIZE];
    struct message *next;
};

struct rescan {
    struct rescan_params p;
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct request *requests;
    struct message *out_head, *out_tail;
    size_t out_count;
    atomic_int stop;     /* read by the walk without the lock */
    uint64_t walks_done; /* walks whose end the loop has seen */
    ev_async wake;
    uint64_t walks; /* walks started (counted under mu) */
    char *catalog_path;
    /* the thread's own */
    struct catalog *cat;
    struct message *batch;
    const char *root, *why;
};

static int within(const char *path, const char *dir)
{
    size_t n = strlen(dir);

    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

static void message_free(struct message *m)
{
    for (size_t i = 0; i < m->n; i++)
        reconcile_change_clear(&m->changes[i]);
    free(m->changes);
    free(m->root);
    free(m->why);
    free(m);
}

static struct message *message_new(struct rescan *r, const char *root, const char *why)
{
    struct message *m = util_xcalloc(1, sizeof(*m));

    m->walk = r->walks;
    m->root = util_xstrdup(root);
    m->why = util_xstrdup(why);
    return m;
}

/* On the thread: hand m to the loop, waiting for room first. 0, or 1 if stopping. */
static int post(struct rescan *r, struct message *m)
{
    pthread_mutex_lock(&r->mu);
    while (!m->is_done && r->out_count >= MAX_OUT && !r->stop)
        pthread_cond_wait(&r->cond, &r->mu);
    if (r->stop && !m->is_done) {
        pthread_mutex_unlock(&r->mu);
        message_free(m);
        return 1;
    }
    if (r->out_tail)
        r->out_tail->next = m;
    else
        r->out_head = m;
    r->out_tail = m;
    r->out_count++;
    pthread_mutex_unlock(&r->mu);
    ev_async_send(r->p.loop, &r->wake);
    return 0;
}

static int on_change(void *arg, const struct reconcile_change *c)
{
    struct rescan *r = arg;
    struct message *b = r->batch;

    if (b == NULL)
        b = r->batch = message_new(r, r->root, r->why);
    if (b->changes == NULL)
        b->changes = util_xcalloc(BATCH, sizeof(*b->changes));
    b->changes[b->n].kind = c->kind;
    b->changes[b->n].path = util_xstrdup(c->path);
    b->changes[b->n].why = c->why ? util_xstrdup(c->why) : NULL;
    if (++b->n < BATCH)
        return 0;
    r->batch = NULL;
    return post(r, b);
}

static void walk_one(struct rescan *r, struct request *q)
{
    struct message *done = message_new(r, q->root, q->why);
    struct cst_err err = {{0}};
    int idle;

    done->is_done = 1;
    if (r->cat == NULL && (r->cat = catalog_open_readonly(r->p.catalog_path, &err)) != NULL)
        catalog_set_cache_kib(r->cat, RECONCILE_CACHE_KIB);
    if (r->cat == NULL) {
        done->rc = -1;
    } else {
        r->root = q->root;
        r->why = q->why;
        done->rc = reconcile_walk(r->cat, r->p.catalog_path, q->root, r->p.excludes,
                                  r->p.n_excludes, on_change, r, &r->stop, &done->counts, &err);
        if (r->batch) {
            if (done->rc == 0 && post(r, r->batch) != 0)
                done->rc = 1;
            else if (done->rc != 0)
                message_free(r->batch);
            r->batch = NULL;
        }
    }
    snprintf(done->error, sizeof(done->error), "%s", err.msg);
    /* Nothing else to walk: the connection and its page cache (2 MB after a large tree)
     * go before the loop hears that the walk ended (it gives memory back when idle),
     * rather than stay for the agent's idle life; the next walk opens one. */
    pthread_mutex_lock(&r->mu);
    idle = r->requests == NULL;
    pthread_mutex_unlock(&r->mu);
    if (idle) {
        catalog_close(r->cat);
        r->cat = NULL;
    }
    post(r, done);
}

static void *thread_main(void *arg)
{
    struct rescan *r = arg;

    prio_background_thread();
    (void)pthread_setname_np(pthread_self(), "cst-scan");
    pthread_mutex_lock(&r->mu);
    for (;;) {
        struct request *q;

        while (r->requests == NULL && !r->stop)
            pthread_cond_wait(&r->cond, &r->mu);
        if (r->stop)
            break;
        q = r->requests;
        r->requests = q->next;
        r->walks++;
        pthread_mutex_unlock(&r->mu);
        walk_one(r, q);
        free(q->root);
        free(q->why);
        free(q);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    catalog_close(r->cat);
    r->cat = NULL;
    return NULL;
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    struct rescan *r = w->data;
    struct message *list;

    (void)loop;
    (void)revents;
    pthread_mutex_lock(&r->mu);
    list = r->out_head;
    r->out_head = r->out_tail = NULL;
    r->out_count = 0;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    while (list) {
        struct message *m = list;

        list = m->next;
        if (m->is_done) {
            pthread_mutex_lock(&r->mu);
            r->walks_done++;
            pthread_mutex_unlock(&r->mu);
            r->p.done(r->p.arg, m->root, m->why, m->walk, &m->counts, m->rc,
                      m->rc < 0 ? m->error : NULL);
        } else {
            r->p.apply(r->p.arg, m->root, m->walk, m->changes, m->n);
        }
        message_free(m);
    }
}

struct rescan *rescan_new(const struct rescan_params *p, struct cst_err *err)
{
    struct rescan *r = util_xcalloc(1, sizeof(*r));

    r->p = *p;
    r->p.catalog_path = r->catalog_path = util_xstrdup(p->catalog_path);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cond, NULL);
    ev_async_init(&r->wake, on_wake);
    r->wake.data = r;
    ev_async_start(p->loop, &r->wake);
    if (pthread_create(&r->thread, NULL, thread_main, r) != 0) {
        cst_err_set(err, "cannot start the rescan thread");
        rescan_free(r);
        return NULL;
    }
    r->started = 1;
    return r;
}

void rescan_request(struct rescan *r, const char *root, const char *why)
{
    struct request **pp, *q;

    pthread_mutex_lock(&r->mu);
    for (q = r->requests; q; q = q->next)
        if (within(root, q->root)) {
            pthread_mutex_unlock(&r->mu);
            return; /* a waiting walk covers it */
        }
    /* Waiting walks inside root are covered by this one. */
    for (pp = &r->requests; *pp;) {
        q = *pp;
        if (within(q->root, root)) {
            *pp = q->next;
            free(q->root);
            free(q->why);
            free(q);
        } else {
            pp = &q->next;
        }
    }
    q = util_xcalloc(1, sizeof(*q));
    q->root = util_xstrdup(root);
    q->why = util_xstrdup(why);
    *pp = q;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
}

int rescan_busy(struct rescan *r)
{
    int busy;

    pthread_mutex_lock(&r->mu);
    busy = r->walks != r->walks_done || r->requests != NULL;
    pthread_mutex_unlock(&r->mu);
    return busy;
}

void rescan_free(struct rescan *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
    if (r->started)
        pthread_join(r->thread, NULL);
    ev_async_stop(r->p.loop, &r->wake);
    while (r->requests) {
        struct request *q = r->requests;

        r->requests = q->next;
        free(q->root);
        free(q->why);
        free(q);
    }
    while (r->out_head) {
        struct message *m = r->out_head;

        r->out_head = m->next;
        message_free(m);
    }
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cond);
    free(r->catalog_path);
    free(r);
}
