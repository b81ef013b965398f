/*
 * checkpoint.c - the WAL checkpoint on a thread of its own (the agent's).
 *
 * With SQLite's automatic checkpoint, the commit that takes the WAL past its
 * threshold also copies every page it holds into the database and fsyncs it,
 * on the thread that committed: the agent's event loop, which nothing else can
 * relieve (a tenth of its time in a small-file backlog). Here the loop's
 * connection only notes the WAL's size after each commit (a WAL hook) and wakes
 * a thread that checkpoints through a second connection, PASSIVE: it never
 * blocks the loop's transactions, and each commit is durable in the WAL when it
 * returns whatever the checkpoint is doing (synchronous = FULL), so what is
 * recorded and when it is durable do not change.
 *
 * Bounds: a PASSIVE checkpoint can fall behind a writer that never pauses, and
 * the WAL is only reused from its start once everything in it is in the
 * database. When the WAL reaches four times the threshold the loop's own
 * connection checkpoints (the old way) at its next commit, so the WAL stays
 * bounded even if the thread fails. A failed checkpoint is logged (the first,
 * then every 100th) and kept for status (catalog_checkpoint_stats).
 */
#include "catalog_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

struct catalog_ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sqlite3 *db; /* the thread's own connection */
    char *path;
    int soft, hard; /* WAL frames: wake the thread; checkpoint on the loop */
    int wanted, stopping;
    /* Under mu: read by the loop (status). */
    int64_t done, failed;
    char error[CST_ERR_SIZE];
};

static void note_failure(struct catalog_ckpt *c, const char *who, int rc, const char *msg)
{
    int64_t n;

    pthread_mutex_lock(&c->mu);
    n = ++c->failed;
    snprintf(c->error, sizeof(c->error), "catalog %s: WAL checkpoint (%s) failed: %s (%s)", c->path,
             who, msg, sqlite3_errstr(rc));
    pthread_mutex_unlock(&c->mu);
    /* The WAL grows meanwhile (up to the hard bound, then the loop checkpoints): said
     * once, then every 100th time, not per commit. */
    if (n == 1 || n % 100 == 0)
        log_error("catalog %s: WAL checkpoint (%s) failed (%lld so far): %s", c->path, who,
                  (long long)n, msg);
}

static void *ckpt_main(void *arg)
{
    struct catalog_ckpt *c = arg;

    for (;;) {
        int rc;

        pthread_mutex_lock(&c->mu);
        while (!c->wanted && !c->stopping)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stopping) {
            pthread_mutex_unlock(&c->mu);
            break;
        }
        c->wanted = 0;
        pthread_mutex_unlock(&c->mu);
        rc = sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc == SQLITE_OK) {
            pthread_mutex_lock(&c->mu);
            c->done++;
            c->error[0] = '\0';
            pthread_mutex_unlock(&c->mu);
        } else if (rc != SQLITE_BUSY) {
            /* BUSY: another checkpoint (the loop's, past the hard bound, or a command's)
             * is running; it does the same work. */
            note_failure(c, "thread", rc, sqlite3_errmsg(c->db));
        }
    }
    return NULL;
}

/* On the loop's thread, after each commit: frames is the WAL's length in pages. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    struct catalog_ckpt *c = arg;

    if (frames >= c->hard) {
        int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);

        /* BUSY: the thread is at it; the next commit looks again. */
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            note_failure(c, "loop", rc, sqlite3_errmsg(db));
    } else if (frames >= c->soft) {
        pthread_mutex_lock(&c->mu);
        c->wanted = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    /* Never an error: the commit has happened, whatever the checkpoint did. */
    return SQLITE_OK;
}

int catalog_checkpointer_start(struct catalog *cat, int soft_pages, struct cst_err *err)
{
    struct catalog_ckpt *c;
    int rc;

    if (cat->ckpt)
        return 0;
    if (soft_pages < 1)
        return cst_err_set(err, "catalog %s: WAL checkpoint threshold %d is not positive",
                           cat->path, soft_pages);
    c = util_xcalloc(1, sizeof(*c));
    c->path = util_xstrdup(cat->path);
    c->soft = soft_pages;
    c->hard = soft_pages > 0x7fffffff / 4 ? 0x7fffffff : 4 * soft_pages;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    if (sqlite3_open_v2(cat->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        cst_err_set(err, "catalog %s: cannot open a connection for WAL checkpoints: %s", cat->path,
                    c->db ? sqlite3_errmsg(c->db) : "out of memory");
        goto fail;
    }
    /* Its own checkpoints only: none on close (the loop's connection closes last and
     * checkpoints then, as before). */
    if (sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_db_config(c->db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL) != SQLITE_OK) {
        cst_err_set(err, "catalog %s: cannot set up the WAL checkpoint connection: %s", cat->path,
                    sqlite3_errmsg(c->db));
        goto fail;
    }
    rc = pthread_create(&c->thread, NULL, ckpt_main, c);
    if (rc != 0) {
        cst_err_set(err, "catalog %s: cannot start the WAL checkpoint thread: %s", cat->path,
                    strerror(rc));
        goto fail;
    }
    cat->ckpt = c;
    /* Replaces the automatic checkpoint (wal_autocheckpoint) on this connection. */
    sqlite3_wal_hook(cat->db, wal_hook, c);
    return 0;
fail:
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
    return -1;
}

void catalog_checkpoint_stats(struct catalog *cat, int64_t *done, int64_t *failed, char *error,
                              size_t size)
{
    struct catalog_ckpt *c = cat->ckpt;

    *done = *failed = 0;
    if (size > 0)
        error[0] = '\0';
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    *done = c->done;
    *failed = c->failed;
    if (size > 0)
        snprintf(error, size, "%s", c->error);
    pthread_mutex_unlock(&c->mu);
}

void catalog_checkpointer_stop(struct catalog *cat)
{
    struct catalog_ckpt *c = cat->ckpt;

    if (c == NULL)
        return;
    /* Back to SQLite's automatic checkpoint for whatever this connection still writes. */
    sqlite3_wal_autocheckpoint(cat->db, CATALOG_WAL_CHECKPOINT_PAGES);
    pthread_mutex_lock(&c->mu);
    c->stopping = 1;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    sqlite3_close(c->db);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
    cat->ckpt = NULL;
}
