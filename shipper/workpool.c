/*
 * workpool.c - the worker threads (see workpool.h).
 */
#include "workpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/prio.h"
#include "common/util.h"

struct workpool {
    struct ev_loop *loop;
    ev_async wake;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct work *todo_head, *todo_tail;
    struct work *done_head, *done_tail;
    int pending;
    int stopping;
    int nthreads;
    pthread_t *threads;
};

static void push(struct work **head, struct work **tail, struct work *w)
{
    w->next = NULL;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

static void *worker_main(void *arg)
{
    struct workpool *pool = arg;

    prio_background_thread();
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->todo_head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->cond, &pool->lock);
        if (pool->todo_head == NULL)
            break;
        struct work *w = pool->todo_head;
        pool->todo_head = w->next;
        if (pool->todo_head == NULL)
            pool->todo_tail = NULL;
        pthread_mutex_unlock(&pool->lock);
        w->run(w);
        pthread_mutex_lock(&pool->lock);
        push(&pool->done_head, &pool->done_tail, w);
        if (!pool->stopping)
            ev_async_send(pool->loop, &pool->wake);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

static void on_wake(struct ev_loop *loop, ev_async *watcher, int revents)
{
    struct workpool *pool = watcher->data;
    struct work *list;

    (void)loop;
    (void)revents;
    pthread_mutex_lock(&pool->lock);
    list = pool->done_head;
    pool->done_head = pool->done_tail = NULL;
    pthread_mutex_unlock(&pool->lock);
    while (list) {
        struct work *next = list->next;

        pool->pending--;
        list->done(list);
        list = next;
    }
}

struct workpool *workpool_new(struct ev_loop *loop, int threads)
{
    struct workpool *pool = util_xcalloc(1, sizeof(*pool));

    pool->loop = loop;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    ev_async_init(&pool->wake, on_wake);
    pool->wake.data = pool;
    ev_async_start(loop, &pool->wake);
    /* The async watcher must not keep the loop alive on its own. */
    ev_unref(loop);
    pool->threads = util_xcalloc((size_t)threads, sizeof(pthread_t));
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0)
            break;
        pool->nthreads++;
    }
    return pool;
}

void workpool_name(struct workpool *pool, const char *name)
{
    char comm[16];

    snprintf(comm, sizeof(comm), "%s", name);
    /* A name is a label only: a thread that keeps the process's name works the same. */
    for (int i = 0; i < pool->nthreads; i++)
        (void)pthread_setname_np(pool->threads[i], comm);
}

void workpool_submit(struct workpool *pool, struct work *w)
{
    pthread_mutex_lock(&pool->lock);
    push(&pool->todo_head, &pool->todo_tail, w);
    pool->pending++;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
}

int workpool_pending(const struct workpool *pool)
{
    return pool->pending;
}

void workpool_free(struct workpool *pool)
{
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    ev_ref(pool->loop);
    ev_async_stop(pool->loop, &pool->wake);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->cond);
    free(pool->threads);
    free(pool);
}
