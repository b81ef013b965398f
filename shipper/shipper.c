/*
 * shipper.c - the pipeline (see shipper.h).
 *
 * Stages and where they run:
 *   fill_paths   loop    ready path-queue entries not already in flight
 *   seal         worker  read once: SHA-256 + zstd + encrypt into a spool file;
 *                        discard if the file changed while it was read
 *   flush        loop    one transaction for every result since the last one:
 *                        dedupe by object id, queue one copy per destination
 *                        lacking it, park the version until a copy exists
 *   fill_copies  loop    per destination, ready copy-queue entries
 *   put_batch    dest    store durably and verify (dest.h)
 *   copies_done  loop    one transaction for the batches finished within
 *                        RECORD_GROUP_MS: copies recorded, waiting versions
 *                        promoted, spool removed when no copy needs it
 * Batches are whatever is ready when the previous step ends, so a quiet host
 * ships one file at once and a burst ships in large batches.
 */
#include "shipper.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/pathenc.h"
#include "common/json.h"
#include "common/util.h"
#include "shipper/container.h"

#define READ_BUF (256 * 1024)
#define INFLIGHT_BUCKETS 1024
/* Sealed results waiting for the batch in flight; sealing pauses above this. */
#define MAX_FLUSH 4096
/* Threads that make spool files durable. They only wait on the disk: many at once let
 * their fdatasyncs share journal commits, and no sealing worker waits for the disk. */
#define SYNC_THREADS 16
/* Batches grow with a backlog: after a batch of at least GROW_FROM results, the next one
 * starts when GROW_TO results are ready or GROW_MS after the previous one started, whichever
 * comes first. Each batch costs a catalog commit (its pages written to the WAL, an
 * fdatasync) and, at the destination, a folder fsync per shard touched, nearly one per object
 * in a batch of 50 against a fifth in one of 1,000: larger batches write less per file. A
 * quiet host (batches of a few files) never waits; a new file in a backlog waits GROW_MS at
 * most more. */
#define GROW_FROM 32
#define GROW_TO 1024
#define GROW_MS 50
/* Finished copy batches are recorded together, at most one transaction per this long while
 * they keep coming: an S3 lane finishes one object per batch, and a transaction each (its
 * WAL fdatasync on the loop thread, an audit row) held the loop up more than the uploads.
 * The first one after a quiet spell is recorded at once. */
#define RECORD_GROUP_MS 25

enum seal_outcome { SEAL_OK, SEAL_GONE, SEAL_CHANGED, SEAL_SYMLINK, SEAL_SKIP, SEAL_ERROR };

struct job {
    struct work work;
    struct shipper *s;
    struct catalog_queue_item item;
    int forced; /* waited max_delay already: a consistent read counts even if it changed since */
    enum seal_outcome outcome;
    char error[CST_ERR_SIZE];
    char *spool_path; /* the sealed file; removed with the job unless the copy queue took it */
    int spool_queued; /* the copy queue refers to spool_path (once flush commits) */
    struct crypt_sealed_info info;
    char object_id[65];
    struct stat st;
    char *link_target;
    struct job *next;
};

#define BUSY_BUCKETS 1024

struct busy_node {
    char object_id[65];
    struct busy_node *next;
};

struct inflight_node {
    int64_t path_id;
    struct inflight_node *next;
};

/* One destination's side of the copy stage. */
struct lane {
    struct shipper *s;
    struct dest *d;
    size_t batches;
    struct busy_node *busy[BUSY_BUCKETS]; /* object ids in flight to this destination */
    size_t n_busy;
    int64_t down_until; /* backing off after failures */
    int failures;       /* consecutive failed batches */
    int extending;      /* a batch of lock extensions is in flight */
    uint64_t drained;   /* copy_gen when its ready entries were last all taken */
};

struct copy_batch {
    struct lane *lane;
    struct dest_put *puts;
    struct catalog_copy_item *items;
    size_t n;
    int64_t started;
    struct copy_batch *next; /* finished, waiting to be recorded */
};

/* One sync thread's share of a batch: it takes the next spool file in turn. */
struct sync_runner {
    struct work work;
    struct sync_batch *b;
};

/* Sealed results being made durable together (spool files, then the spool folder),
 * then recorded in one transaction: the next batch is sealed meanwhile. */
struct sync_batch {
    struct work dir_work;
    struct shipper *s;
    struct job *list;
    size_t n; /* jobs in list */
    size_t left;
    int files_done;
    int dir_failed;
    char dir_error[CST_ERR_SIZE];
    struct job **todo; /* the sealed spool files, each fdatasynced by one runner */
    size_t n_todo;
    atomic_size_t next_todo;
    struct sync_runner runners[SYNC_THREADS];
};

/* Spool files no destination needs any more, removed on a worker (an unlink is a tenth of
 * the loop's time in a backlog otherwise). One that a crash leaves behind is removed at the
 * next start (recover_spool: nothing refers to it). */
struct unlink_batch {
    struct work work;
    struct shipper *s;
    struct unlink_batch *next; /* the shipper's list, for shipper_free */
    char **paths;
    size_t n, cap;
};

struct shipper {
    struct shipper_params p;
    ev_timer next_timer;
    /* Once per loop iteration, before it waits again (an idle watcher would starve while
     * completions keep arriving). */
    ev_prepare kick_prep;
    ev_prepare batch_prep;
    ev_timer batch_timer;    /* a growing batch's deadline (GROW_MS) */
    size_t last_batch;       /* results in the last batch */
    ev_tstamp last_batch_at; /* when it started */
    struct workpool *sync_pool;
    struct sync_batch *syncing;
    size_t sealing;
    size_t max_sealing;
    struct job *done_head, *done_tail;
    size_t done_count;
    struct catalog_queue_cursor cursor; /* where the last read of the path queue ended */
    int stopping;
    int64_t catalog_backoff_until;
    struct inflight_node *inflight[INFLIGHT_BUCKETS];
    size_t inflight_count;
    struct lane *lanes;
    char catalog_error[CST_ERR_SIZE]; /* the last write that failed, until one succeeds */
    char **sourcing;                  /* objects whose bytes are being found for queued copies */
    size_t n_sourcing;
    struct unlink_batch *unlinking; /* submitted to the workers, done() not run yet */
    size_t n_unlinking;
    /* Bumped whenever the copy queue may hold new ready work (a flush, a copy batch done, a
     * source found, a kick, the timer): a lane or the sourcing that took all there was reads
     * the copy queue again only then, not after every sealed file. */
    uint64_t copy_gen;
    uint64_t sources_drained;
    ev_timer cover_timer;
    /* A coverage check in slices (shipper_cover_start, the timer): the next slice, one per
     * loop turn, and what the current destination was found to lack so far. */
    ev_timer cover_step;
    size_t cover_next;
    int64_t cover_found;
    int covered_once; /* a check has begun since the start */
    /* Finished copy batches not recorded yet (RECORD_GROUP_MS), and when the last were. */
    struct copy_batch *rec_head, *rec_tail;
    size_t rec_batches;
    ev_timer rec_timer;
    ev_tstamp last_rec_at;
};

static void fill(struct shipper *s);
static void flush(struct shipper *s, struct job *list);

/* --- Object Lock --- */

/* The retain-until a copy of object_id needs on a destination that locks: its newest
 * version's own deletion date (the caller's rule, the retention planner's); `fallback` is
 * the capture time when the catalog knows no version (yet). 0: nothing is locked. */
static int64_t object_lock_until(struct shipper *s, const char *object_id, int64_t fallback,
                                 struct cst_err *err)
{
    int64_t at;

    if (s->p.lock_until == NULL)
        return 0;
    if (catalog_object_newest_capture(s->p.catalog, object_id, &at, err) < 0)
        return -1;
    return s->p.lock_until(s->p.arg, at > 0 ? at : fallback);
}

/* S3 keeps whole seconds: a copy shows `want` when it shows its second or later. */
static int lock_covers(int64_t shows, int64_t want)
{
    return shows >= want - want % 1000;
}

/* --- paths being sealed --- */

static int inflight_has(void *arg, int64_t id)
{
    struct shipper *s = arg;

    for (struct inflight_node *n = s->inflight[(uint64_t)id % INFLIGHT_BUCKETS]; n; n = n->next)
        if (n->path_id == id)
            return 1;
    return 0;
}

static void inflight_add(struct shipper *s, int64_t id)
{
    struct inflight_node *n = util_xmalloc(sizeof(*n));

    n->path_id = id;
    n->next = s->inflight[(uint64_t)id % INFLIGHT_BUCKETS];
    s->inflight[(uint64_t)id % INFLIGHT_BUCKETS] = n;
    s->inflight_count++;
}

static void inflight_del(struct shipper *s, int64_t id)
{
    struct inflight_node **pp = &s->inflight[(uint64_t)id % INFLIGHT_BUCKETS];

    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->path_id == id) {
            struct inflight_node *n = *pp;
            *pp = n->next;
            free(n);
            s->inflight_count--;
            return;
        }
}

void shipper_object_id(const unsigned char naming_key[32], const unsigned char sha256[32],
                       char out[65])
{
    unsigned char id[32];

    crypto_generichash(id, sizeof(id), sha256, 32, naming_key, 32);
    util_hex(id, sizeof(id), out);
}

static int64_t stat_mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int64_t backoff_ms(int attempts)
{
    int shift = attempts < 8 ? attempts : 8;
    int64_t d = (int64_t)1000 << shift;

    if (d > 300000)
        d = 300000;
    return d + (int64_t)randombytes_uniform(1000);
}

static void job_free(struct job *j)
{
    if (j->spool_path) {
        unlink(j->spool_path);
        free(j->spool_path);
    }
    free(j->item.path);
    free(j->link_target);
    free(j);
}

static char *shown(const char *path)
{
    return pathenc_escape(path, strlen(path));
}

/* --- seal: on a worker --- */

/* Each worker keeps its sealer (zstd context, hash contexts, secure memory) and read
 * buffer from one file to the next: set up once per thread, not per file. */
struct seal_state {
    struct crypt_sealer *sealer;
    unsigned char *buf;
};

static pthread_key_t seal_key;
static pthread_once_t seal_once = PTHREAD_ONCE_INIT;

static void seal_state_free(void *arg)
{
    struct seal_state *st = arg;

    crypt_sealer_free(st->sealer);
    free(st->buf);
    free(st);
}

static void seal_key_init(void)
{
    if (pthread_key_create(&seal_key, seal_state_free) != 0)
        abort(); /* only when the process is out of keys: nothing works then */
}

static struct seal_state *seal_state(void)
{
    struct seal_state *st;

    pthread_once(&seal_once, seal_key_init);
    st = pthread_getspecific(seal_key);
    if (st == NULL) {
        st = util_xcalloc(1, sizeof(*st));
        st->buf = util_xmalloc(READ_BUF);
        pthread_setspecific(seal_key, st);
    }
    return st;
}

/* A sealer for the next object on out_fd, the worker's own when it has one. */
static struct crypt_sealer *seal_begin(struct seal_state *st, const unsigned char *public_key,
                                       int out_fd, struct cst_err *err)
{
    if (st->sealer && crypt_sealer_reset(st->sealer, public_key, out_fd, err) == 0)
        return st->sealer;
    crypt_sealer_free(st->sealer);
    st->sealer = crypt_sealer_new(public_key, CRYPT_LEVEL_AUTO, out_fd, err);
    return st->sealer;
}

static void seal_run(struct work *w)
{
    struct job *j = (struct job *)w;
    struct shipper *s = j->s;
    struct cst_err err = {{0}};
    struct seal_state *state = seal_state();
    struct crypt_sealer *sealer = NULL;
    unsigned char *buf = state->buf;
    int sealed = 0;
    struct stat after;
    int fd = -1, spool_fd = -1, named = 0;
    uint64_t total = 0;
    ssize_t first;
    unsigned char first_sha[32];

    if (lstat(j->item.path, &j->st) < 0) {
        j->outcome = errno == ENOENT || errno == ENOTDIR ? SEAL_GONE : SEAL_ERROR;
        snprintf(j->error, sizeof(j->error), "cannot stat: %s", strerror(errno));
        return;
    }
    if (S_ISLNK(j->st.st_mode)) {
        char target[4096];
        ssize_t n = readlink(j->item.path, target, sizeof(target) - 1);

        if (n < 0) {
            j->outcome = errno == ENOENT ? SEAL_GONE : SEAL_ERROR;
            snprintf(j->error, sizeof(j->error), "cannot read link: %s", strerror(errno));
            return;
        }
        target[n] = '\0';
        j->link_target = util_xstrdup(target);
        j->outcome = SEAL_SYMLINK;
        return;
    }
    if (!S_ISREG(j->st.st_mode)) {
        j->outcome = SEAL_SKIP;
        snprintf(j->error, sizeof(j->error), "not a regular file or symlink");
        return;
    }
    fd = open(j->item.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM)
        fd = open(j->item.path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        j->outcome = errno == ENOENT ? SEAL_GONE : SEAL_ERROR;
        snprintf(j->error, sizeof(j->error), "cannot open: %s", strerror(errno));
        return;
    }
    if (fstat(fd, &j->st) < 0 || !S_ISREG(j->st.st_mode)) {
        j->outcome = SEAL_CHANGED;
        snprintf(j->error, sizeof(j->error), "replaced while opening");
        goto out;
    }
    do
        first = read(fd, buf, READ_BUF);
    while (first < 0 && errno == EINTR);
    if (first < 0) {
        cst_err_sys(&err, "read failed");
        goto fail;
    }
    if (first == j->st.st_size) {
        /* The whole file in one read (a small file): its object id is known before its spool
         * file exists, which then gets its final name at once, no rename. A sealing cut
         * short leaves a "*.obj" that no copy refers to: start-up removes it, like a
         * "seal.*" (recover_spool). */
        unsigned int md_len = sizeof(first_sha);

        if (EVP_Digest(buf, (size_t)first, first_sha, &md_len, EVP_sha256(), NULL) != 1) {
            cst_err_set(&err, "cannot hash %s (libcrypto)", j->item.path);
            goto fail;
        }
        shipper_object_id(s->p.naming_key, first_sha, j->object_id);
        j->spool_path = util_printf("%s/%s-XXXXXX.obj", s->p.spool_dir, j->object_id);
        spool_fd = mkostemps(j->spool_path, 4, O_CLOEXEC);
        named = 1;
    } else {
        j->spool_path = util_join(s->p.spool_dir, "seal.XXXXXX");
        spool_fd = mkostemp(j->spool_path, O_CLOEXEC);
    }
    if (spool_fd < 0) {
        j->outcome = SEAL_ERROR;
        snprintf(j->error, sizeof(j->error), "cannot create spool file in %s: %s", s->p.spool_dir,
                 strerror(errno));
        free(j->spool_path);
        j->spool_path = NULL;
        goto out;
    }
    sealer = seal_begin(state, s->p.public_key, spool_fd, &err);
    if (sealer == NULL)
        goto fail;
    total = (uint64_t)first;
    /* A small file's bytes were hashed to name it: the sealer takes that digest. */
    if (named ? crypt_sealer_write_whole(sealer, buf, (size_t)first, first_sha, &err) < 0
              : first > 0 && crypt_sealer_write(sealer, buf, (size_t)first, &err) < 0)
        goto fail;
    for (;;) {
        ssize_t n = first == 0 ? 0 : read(fd, buf, READ_BUF);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cst_err_sys(&err, "read failed");
            goto fail;
        }
        if (n == 0)
            break;
        if (named) { /* it grew after its size was read: no version of the file */
            j->outcome = SEAL_CHANGED;
            snprintf(j->error, sizeof(j->error), "changed while being read");
            goto out;
        }
        total += (uint64_t)n;
        if (crypt_sealer_write(sealer, buf, (size_t)n, &err) < 0)
            goto fail;
    }
    /* Content read while it changed is no version of the file: discard, retry. */
    if (fstat(fd, &after) < 0 || after.st_size != j->st.st_size ||
        stat_mtime_ns(&after) != stat_mtime_ns(&j->st) || after.st_ino != j->st.st_ino ||
        total != (uint64_t)j->st.st_size || after.st_ctim.tv_sec != j->st.st_ctim.tv_sec ||
        after.st_ctim.tv_nsec != j->st.st_ctim.tv_nsec) {
        j->outcome = SEAL_CHANGED;
        snprintf(j->error, sizeof(j->error), "changed while being read");
        goto out;
    }
    if (crypt_sealer_finish(sealer, &j->info, &err) < 0)
        goto fail;
    sealed = 1; /* finish wiped the stream's secrets: the sealer can be kept */
    /* Not made durable here: the whole batch is, together, before any catalog row points
     * at it (sync_batch), so that this worker goes on sealing instead of waiting. */
    if (close(spool_fd) < 0) {
        spool_fd = -1;
        cst_err_sys(&err, "cannot write spool file %s", j->spool_path);
        goto fail;
    }
    spool_fd = -1;
    /* Read once, unchanged, and the sealer took the very digest that named it. */
    if (named)
        goto sealed_ok;
    shipper_object_id(s->p.naming_key, j->info.plain_sha256, j->object_id);
    /* Its name for the copy queue, unique per sealing (two sealings of one content are
     * different ciphertexts): "<object id>-<mkostemp suffix>.obj". */
    {
        /* The mkostemp suffix of "seal.XXXXXX": its last 6 characters. */
        size_t end = strlen(j->spool_path);
        char *final =
            util_printf("%s/%s-%.6s.obj", s->p.spool_dir, j->object_id, j->spool_path + end - 6);

        if (rename(j->spool_path, final) < 0) {
            cst_err_sys(&err, "cannot rename spool file %s", j->spool_path);
            free(final);
            goto fail;
        }
        free(j->spool_path);
        j->spool_path = final;
    }
sealed_ok:
    j->outcome = SEAL_OK;
    goto out;
fail:
    j->outcome = SEAL_ERROR;
    snprintf(j->error, sizeof(j->error), "%s", err.msg);
out:
    if (sealer && !sealed) {
        /* Stopped mid-object: its stream state is wiped with it, not kept for the next. */
        crypt_sealer_free(sealer);
        state->sealer = NULL;
    }
    if (spool_fd >= 0)
        close(spool_fd);
    if (fd >= 0)
        close(fd);
}

static void seal_done(struct work *w)
{
    struct job *j = (struct job *)w;
    struct shipper *s = j->s;

    s->sealing--;
    j->next = NULL;
    if (s->done_tail)
        s->done_tail->next = j;
    else
        s->done_head = j;
    s->done_tail = j;
    s->done_count++;
    /* Once the results that woke the loop are all in (idle), they go as one batch, unless
     * a batch is in flight: then they wait for it and go with whatever follows. */
    if (s->syncing == NULL)
        ev_prepare_start(s->p.loop, &s->batch_prep);
    /* Keep the workers busy: more to seal (coalesced, once per loop iteration), read on
     * from where the last read ended. */
    if (!s->stopping)
        ev_prepare_start(s->p.loop, &s->kick_prep);
}

/* --- sync: the batch's spool files made durable together, on the sync threads --- */

static void sync_step(struct sync_batch *b);

static void spool_sync_one(struct job *j)
{
    int fd = open(j->spool_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fdatasync(fd) < 0) {
        j->outcome = SEAL_ERROR;
        snprintf(j->error, sizeof(j->error), "cannot fdatasync spool file %s: %s", j->spool_path,
                 strerror(errno));
    }
    if (fd >= 0)
        close(fd);
}

/* A runner syncs the batch's next file until none is left: all SYNC_THREADS fdatasyncs are
 * in flight at once, as with one job per file, but with one hand-off to a thread and one back
 * to the loop per runner instead of per file. */
static void spool_sync_run(struct work *w)
{
    struct sync_batch *b = ((struct sync_runner *)w)->b;
    size_t i;

    while ((i = atomic_fetch_add(&b->next_todo, 1)) < b->n_todo)
        spool_sync_one(b->todo[i]);
}

static void spool_sync_done(struct work *w)
{
    sync_step(((struct sync_runner *)w)->b);
}

static void spool_dir_run(struct work *w)
{
    struct sync_batch *b = (struct sync_batch *)w;
    struct cst_err err;

    if (util_fsync_dir(b->s->p.spool_dir, &err) < 0) {
        b->dir_failed = 1;
        snprintf(b->dir_error, sizeof(b->dir_error), "%s", err.msg);
    }
}

static void spool_dir_done(struct work *w)
{
    sync_step((struct sync_batch *)w);
}

/* Every file of the batch first, then their folder entries (one fsync), then the
 * catalog: a row never points at a spool file that a power cut could take back. */
static void sync_step(struct sync_batch *b)
{
    struct shipper *s = b->s;
    struct job *list;

    if (--b->left > 0)
        return;
    if (!b->files_done) {
        b->files_done = 1;
        for (struct job *j = b->list; j; j = j->next)
            if (j->outcome == SEAL_OK) {
                b->left = 1;
                b->dir_work.run = spool_dir_run;
                b->dir_work.done = spool_dir_done;
                workpool_submit(s->sync_pool, &b->dir_work);
                return;
            }
    }
    if (b->dir_failed)
        for (struct job *j = b->list; j; j = j->next)
            if (j->outcome == SEAL_OK) {
                j->outcome = SEAL_ERROR;
                snprintf(j->error, sizeof(j->error), "%s", b->dir_error);
            }
    list = b->list;
    s->syncing = NULL;
    free(b->todo);
    free(b);
    ev_unref(s->p.loop);
    flush(s, list);
    /* What was sealed meanwhile is the next batch. */
    if (s->done_head)
        ev_prepare_start(s->p.loop, &s->batch_prep);
}

static void sync_start(struct shipper *s)
{
    struct sync_batch *b;

    if (s->syncing || s->done_head == NULL)
        return;
    if (s->last_batch >= GROW_FROM && s->done_count < GROW_TO && !s->stopping) {
        ev_tstamp wait = s->last_batch_at + GROW_MS / 1000.0 - ev_now(s->p.loop);

        if (wait > 0) {
            if (!ev_is_active(&s->batch_timer)) {
                ev_timer_set(&s->batch_timer, wait, 0.0);
                ev_timer_start(s->p.loop, &s->batch_timer);
            }
            return;
        }
    }
    ev_timer_stop(s->p.loop, &s->batch_timer);
    s->last_batch = s->done_count;
    s->last_batch_at = ev_now(s->p.loop);
    b = util_xcalloc(1, sizeof(*b));
    b->s = s;
    b->list = s->done_head;
    s->done_head = s->done_tail = NULL;
    b->n = s->done_count;
    s->done_count = 0;
    s->syncing = b;
    /* The pool's wake-up does not keep the loop running; a batch in flight must. */
    ev_ref(s->p.loop);
    b->left = 1; /* held until every runner has been submitted */
    b->todo = util_xcalloc(b->n, sizeof(*b->todo));
    for (struct job *j = b->list; j; j = j->next)
        if (j->outcome == SEAL_OK)
            b->todo[b->n_todo++] = j;
    atomic_store(&b->next_todo, 0);
    for (size_t r = 0; r < SYNC_THREADS && r < b->n_todo; r++) {
        b->left++;
        b->runners[r].b = b;
        b->runners[r].work.run = spool_sync_run;
        b->runners[r].work.done = spool_sync_done;
        workpool_submit(s->sync_pool, &b->runners[r].work);
    }
    sync_step(b);
}

static void on_batch_prep(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    ev_prepare_stop(loop, w);
    sync_start(w->data);
}

static void on_batch_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    sync_start(w->data);
}

/* --- flush: sealed results into the catalog, on the loop --- */

static void version_of(const struct job *j, struct catalog_version *v, int64_t shipped_at)
{
    memset(v, 0, sizeof(*v));
    v->path = j->item.path;
    v->kind = j->outcome == SEAL_SYMLINK ? CATALOG_SYMLINK : CATALOG_FILE;
    v->size = (int64_t)j->st.st_size;
    v->mtime_ns = stat_mtime_ns(&j->st);
    v->inode = (int64_t)j->st.st_ino;
    if (v->kind == CATALOG_FILE) {
        memcpy(v->sha256, j->info.plain_sha256, 32);
        memcpy(v->object_id, j->object_id, sizeof(v->object_id));
    }
    v->link_target = j->link_target;
    v->first_seen = j->item.queued_at;
    v->shipped_at = shipped_at;
}

/* The live version of j's path, or one waiting for its first copy, already is
 * exactly this content and stat: recording it again would record it twice. */
static int same_as_live(struct shipper *s, const struct job *j, struct cst_err *err)
{
    struct catalog_version live;
    int rc, same;

    if (j->outcome == SEAL_OK &&
        (rc = catalog_pending_match(s->p.catalog, j->item.path, (int64_t)j->st.st_size,
                                    stat_mtime_ns(&j->st), (int64_t)j->st.st_ino, j->object_id,
                                    err)) != 0)
        return rc;
    rc = catalog_live_version(s->p.catalog, j->item.path, &live, err);
    if (rc <= 0)
        return rc;
    same = live.size == (int64_t)j->st.st_size && live.inode == (int64_t)j->st.st_ino &&
           live.mtime_ns == stat_mtime_ns(&j->st) &&
           (j->outcome == SEAL_SYMLINK
                ? live.kind == CATALOG_SYMLINK && live.link_target &&
                      strcmp(live.link_target, j->link_target) == 0
                : live.kind == CATALOG_FILE && strcmp(live.object_id, j->object_id) == 0);
    catalog_version_clear(&live);
    return same;
}

/* Queue the copies j's object still needs (destinations lacking it, and queued
 * copies still waiting for their bytes); record or park its version unless the
 * live version already is this content. */
static int flush_sealed(struct shipper *s, struct job *j, int64_t now, int *recorded,
                        struct cst_err *err)
{
    struct catalog_object o;
    struct catalog_version v;
    unsigned lacking = 0;
    int have_copy = 0, queued_elsewhere = 0, same = 0, unsourced = 0, known;
    char *spool = NULL;
    int64_t stored_size;
    unsigned char stored_sha[32];

    /* Content never seen before (nearly every file of a backlog) has no version, pending
     * version, copy, queued copy or exemption (see catalog_object_known): every
     * destination lacks it, and none of these is looked up. */
    known = catalog_object_known(s->p.catalog, j->object_id, err);
    if (known < 0)
        return -1;
    if (known && (same = same_as_live(s, j, err)) < 0)
        return -1;
    /* A new version makes its content hot again: every destination holds it, also those
     * that the archive tier had relieved of it (retention). */
    if (known && !same && catalog_exempt_clear(s->p.catalog, j->object_id, err) < 0)
        return -1;
    for (size_t d = 0; d < s->p.n_dests; d++) {
        if (!known) {
            lacking |= 1u << d;
            continue;
        }
        int c = catalog_copy_exists(s->p.catalog, j->object_id, s->p.dests[d]->name, err), q = 1;

        if (c == 0)
            q = catalog_copy_queue_has(s->p.catalog, j->object_id, s->p.dests[d]->name, err);
        if (c == 0 && q == 0 && same)
            q = catalog_exempt_has(s->p.catalog, j->object_id, s->p.dests[d]->name, err);
        if (c < 0 || q < 0)
            return cst_err_wrap(err, "cannot read copies of %s", j->object_id);
        if (c)
            have_copy = 1;
        else if (!q)
            lacking |= 1u << d;
    }
    if (known &&
        (unsourced = catalog_copy_queue_unsourced_has(s->p.catalog, j->object_id, err)) < 0)
        return -1;
    if (same && !lacking && !unsourced)
        return 0;
    memset(&o, 0, sizeof(o));
    memcpy(o.id, j->object_id, sizeof(o.id));
    memcpy(o.sha256, j->info.plain_sha256, 32);
    memcpy(o.stored_sha256, j->info.stored_sha256, 32);
    o.plain_size = (int64_t)j->info.plain_size;
    o.stored_size = (int64_t)j->info.stored_size;
    o.compressed = j->info.compressed;
    if (catalog_record_object(s->p.catalog, &o, now, err) < 0)
        return -1;
    if (lacking || unsourced) {
        /* A copy already queued elsewhere keeps its spool file; else ours becomes it. */
        if (known)
            queued_elsewhere = catalog_copy_queue_find(s->p.catalog, j->object_id, &spool,
                                                       &stored_size, stored_sha, err);
        if (queued_elsewhere < 0)
            return cst_err_wrap(err, "cannot read the copy queue");
        if (!queued_elsewhere) {
            /* Ours becomes it (once the transaction commits: flush). */
            spool = util_xstrdup(strrchr(j->spool_path, '/') + 1);
            j->spool_queued = 1;
            stored_size = (int64_t)j->info.stored_size;
            memcpy(stored_sha, j->info.stored_sha256, 32);
        }
        for (size_t d = 0; d < s->p.n_dests; d++)
            if ((lacking & (1u << d)) &&
                catalog_copy_queue_add(s->p.catalog, j->object_id, s->p.dests[d]->name, spool,
                                       stored_size, stored_sha, now, err) < 0) {
                free(spool);
                return -1;
            }
        /* Copies that were waiting for these bytes (a lost spool file, a damaged copy,
         * a destination added later) can go now. */
        if (unsourced && catalog_copy_queue_source(s->p.catalog, j->object_id, spool, stored_size,
                                                   stored_sha, now, err) < 0) {
            free(spool);
            return -1;
        }
        free(spool);
    }
    if (same)
        return 0;
    version_of(j, &v, now);
    /* Content already locked on a destination, until a date earlier than this version
     * needs: the stored version's retention is extended before this one counts. */
    for (size_t d = 0; known && s->p.lock_until && d < s->p.n_dests; d++) {
        int64_t shows, want;
        int c;

        if (!dest_locks(s->p.dests[d]))
            continue;
        c = catalog_copy_locked_until(s->p.catalog, j->object_id, s->p.dests[d]->name, &shows, err);
        if (c < 0)
            return -1;
        want = s->p.lock_until(s->p.arg, v.first_seen);
        if (c == 0 || lock_covers(shows, want))
            continue;
        if (catalog_lock_extend_add(s->p.catalog, j->object_id, s->p.dests[d]->name, want, now,
                                    err) < 0)
            return -1;
        have_copy = 0; /* the version waits in pending_versions */
    }
    if (have_copy) {
        /* Restorable already (same content shipped before): recorded at once. */
        if (catalog_record_version(s->p.catalog, &v, err) < 0)
            return -1;
        *recorded = 1;
    } else if (catalog_pending_add(s->p.catalog, &v, err) < 0) {
        return -1;
    }
    return 0;
}

static void flush(struct shipper *s, struct job *list)
{
    struct job *j;
    struct cst_err err;
    int64_t now = util_now_ms();
    int ok = 0;

    if (list == NULL)
        return;
    if (catalog_begin(s->p.catalog, &err) < 0)
        goto out;
    for (j = list; j; j = j->next) {
        struct catalog_version v;
        int recorded = 0;
        char *name;
        int rc = 0;
        int64_t gen = catalog_queue_gen(s->p.catalog, j->item.path_id, &err);

        if (gen < 0)
            goto fail;
        /* Only what is current is recorded. An entry gone (the file was deleted or
         * renamed) or queued again since it was read (the file changed) makes this
         * result stale: nothing is recorded, and the newer event ships the newer
         * content. The exception is a forced ship (max_delay) of a consistent read,
         * so that a file that never stops changing still gets versions. */
        if (gen != j->item.gen &&
            (gen == 0 || !j->forced || (j->outcome != SEAL_OK && j->outcome != SEAL_SYMLINK))) {
            log_debug("dropped a stale result path=%s gen=%lld now=%lld", j->item.path,
                      (long long)j->item.gen, (long long)gen);
            continue;
        }

        switch (j->outcome) {
        case SEAL_GONE:
            /* Deleted before it could be read: its delete event tombstones it. */
            name = shown(j->item.path);
            log_warn("file vanished before it could be shipped path=%s", name);
            free(name);
            rc = catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err);
            break;
        case SEAL_SKIP:
            name = shown(j->item.path);
            log_info("skipped path=%s reason=\"%s\"", name, j->error);
            free(name);
            rc = catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err);
            break;
        case SEAL_CHANGED:
            log_debug("changed while read, retrying path=%s", j->item.path);
            rc = catalog_queue_retry(s->p.catalog, j->item.path_id, j->item.gen,
                                     s->p.settle_ms > 100 ? s->p.settle_ms : 100, j->error, &err);
            break;
        case SEAL_ERROR:
            name = shown(j->item.path);
            log_warn("cannot ship path=%s error=\"%s\" attempt=%d", name, j->error,
                     j->item.attempts + 1);
            free(name);
            rc = catalog_queue_retry(s->p.catalog, j->item.path_id, j->item.gen,
                                     backoff_ms(j->item.attempts), j->error, &err);
            break;
        case SEAL_SYMLINK:
            rc = same_as_live(s, j, &err);
            if (rc == 0) {
                version_of(j, &v, now);
                rc = catalog_record_version(s->p.catalog, &v, &err);
                name = shown(j->item.path);
                log_info("recorded symlink path=%s", name);
                free(name);
            }
            if (rc >= 0)
                rc = gen == j->item.gen
                         ? catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err)
                         : catalog_queue_restart(s->p.catalog, j->item.path_id, now, &err);
            break;
        case SEAL_OK:
            rc = flush_sealed(s, j, now, &recorded, &err);
            if (rc == 0)
                rc = gen == j->item.gen
                         ? catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err)
                         : catalog_queue_restart(s->p.catalog, j->item.path_id, now, &err);
            if (rc == 0 && recorded) {
                name = shown(j->item.path);
                log_info("shipped path=%s bytes=%lld object=%.16s dedup=yes ms=%lld", name,
                         (long long)j->st.st_size, j->object_id,
                         (long long)(now - j->item.queued_at));
                free(name);
            }
            break;
        }
        if (rc < 0)
            goto fail;
    }
    /* The spool files and their folder entries were made durable before (sync_step). */
    if (catalog_commit(s->p.catalog, &err) < 0)
        goto fail;
    ok = 1;
    goto out;
fail:
    catalog_rollback(s->p.catalog);
out:
    if (!ok) {
        /* Nothing recorded: the queue entries stay and are sealed again, after a pause. */
        log_error("cannot record sealed files: %s", err.msg);
        snprintf(s->catalog_error, sizeof(s->catalog_error), "%s", err.msg);
        s->catalog_backoff_until = util_mono_ms() + 5000;
    } else {
        s->catalog_error[0] = '\0';
    }
    while (list) {
        j = list;
        list = j->next;
        inflight_del(s, j->item.path_id);
        if (ok && j->spool_queued) {
            free(j->spool_path); /* now the copy queue's */
            j->spool_path = NULL;
        }
        job_free(j);
    }
    s->copy_gen++;
    fill(s);
}

/* --- copies: per destination, on the loop --- */

static struct busy_node **busy_bucket(struct lane *l, const char *object_id)
{
    /* Object ids are hex of a keyed hash: their first bytes are as good as any hash. */
    return &l->busy[strtoul((char[4]){object_id[0], object_id[1], object_id[2], '\0'}, NULL, 16) %
                    BUSY_BUCKETS];
}

static int lane_busy(void *arg, const char *object_id)
{
    struct lane *l = arg;

    for (struct busy_node *b = *busy_bucket(l, object_id); b; b = b->next)
        if (strcmp(b->object_id, object_id) == 0)
            return 1;
    return 0;
}

static void lane_busy_add(struct lane *l, const char *object_id)
{
    struct busy_node **head = busy_bucket(l, object_id);
    struct busy_node *b = util_xmalloc(sizeof(*b));

    snprintf(b->object_id, sizeof(b->object_id), "%s", object_id);
    b->next = *head;
    *head = b;
    l->n_busy++;
}

static void lane_unbusy(struct lane *l, const char *object_id)
{
    for (struct busy_node **pp = busy_bucket(l, object_id); *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->object_id, object_id) == 0) {
            struct busy_node *b = *pp;

            *pp = b->next;
            free(b);
            l->n_busy--;
            return;
        }
}

static void log_promoted(void *arg, const char *path, int64_t size, int64_t first_seen)
{
    struct copy_batch *b = arg;
    char *name = shown(path);

    log_info("shipped path=%s bytes=%lld dest=%s ms=%lld", name, (long long)size, b->lane->d->name,
             (long long)(util_now_ms() - first_seen));
    free(name);
}

/* The retention a new copy shows; a version captured while it was on its way may need a
 * later one (the copy was queued with an earlier date): extended next. */
static int record_lock(struct shipper *s, struct lane *l, const char *object_id,
                       const struct dest_put *put, int64_t now, struct cst_err *err)
{
    int64_t want = object_lock_until(s, object_id, now, err);

    if (want < 0 ||
        catalog_copy_set_lock(s->p.catalog, object_id, l->d->name, put->retained_until, err) < 0)
        return -1;
    if (want > 0 && !lock_covers(put->retained_until, want))
        return catalog_lock_extend_add(s->p.catalog, object_id, l->d->name, want, now, err);
    return 0;
}

static void unlink_batch_free(struct unlink_batch *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->paths[i]);
    free(u->paths);
    free(u);
}

static void unlink_run(struct work *w)
{
    struct unlink_batch *u = (struct unlink_batch *)w;

    /* As before on the loop: a file already gone is what was wanted; any other failure
     * leaves a file that nothing refers to, removed at the next start. */
    for (size_t i = 0; i < u->n; i++)
        if (unlink(u->paths[i]) < 0 && errno != ENOENT)
            log_warn("cannot remove spool file %s: %s", u->paths[i], strerror(errno));
}

static void unlink_done(struct work *w)
{
    struct unlink_batch *u = (struct unlink_batch *)w;
    struct shipper *s = u->s;

    for (struct unlink_batch **pp = &s->unlinking; *pp; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            break;
        }
    s->n_unlinking--;
    unlink_batch_free(u);
}

static int record_batch(struct shipper *s, struct copy_batch *b, int64_t now, struct cst_err *err)
{
    struct lane *l = b->lane;
    struct dest_put *puts = b->puts;

    for (size_t i = 0; i < b->n; i++) {
        struct catalog_copy_item *it = &b->items[i];
        int rc;

        if (puts[i].ok) {
            rc = catalog_record_copy(s->p.catalog, it->object_id, l->d->name, puts[i].remote_key,
                                     it->stored_size, it->stored_sha256, now, err);
            if (rc == 0 && dest_locks(l->d))
                rc = record_lock(s, l, it->object_id, &puts[i], now, err);
            if (rc == 0)
                rc = catalog_copy_queue_done(s->p.catalog, it->object_id, l->d->name, err);
            if (rc == 0)
                rc = catalog_pending_promote(s->p.catalog, it->object_id, now, log_promoted, b,
                                             err) < 0
                         ? -1
                         : 0;
        } else if (puts[i].kind == DEST_ERR_SOURCE) {
            log_warn("spool file of object %.16s is lost (%s); its bytes are found again",
                     it->object_id, puts[i].error);
            rc = catalog_copy_queue_unsource(s->p.catalog, it->object_id, err);
        } else {
            /* The destination's own backoff paces retries; an entry only steps aside
             * briefly so that the others get their turn. */
            int64_t delay = puts[i].kind == DEST_ERR_CONFIG
                                ? 60000 + (int64_t)randombytes_uniform(10000)
                                : 1000 + (int64_t)randombytes_uniform(1000);
            rc = catalog_copy_queue_retry(s->p.catalog, it->object_id, l->d->name, delay,
                                          dest_error_name(puts[i].kind), puts[i].error, err);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* One audit row per destination for the copies a group recorded. */
static int audit_group(struct shipper *s, struct copy_batch *list, struct cst_err *err)
{
    for (size_t d = 0; d < s->p.n_dests; d++) {
        struct lane *l = &s->lanes[d];
        size_t ok_count = 0, failed = 0;
        uint64_t bytes = 0;
        struct json detail;
        int rc;

        for (struct copy_batch *b = list; b; b = b->next)
            for (size_t i = 0; b->lane == l && i < b->n; i++) {
                if (b->puts[i].ok) {
                    ok_count++;
                    bytes += (uint64_t)b->items[i].plain_size;
                } else if (b->puts[i].kind != DEST_ERR_SOURCE) {
                    failed++;
                }
            }
        if (ok_count == 0)
            continue;
        json_init(&detail);
        json_obj_begin(&detail);
        json_key(&detail, "dest");
        json_str(&detail, l->d->name);
        json_key(&detail, "copies");
        json_int(&detail, (int64_t)ok_count);
        json_key(&detail, "bytes");
        json_int(&detail, (int64_t)bytes);
        json_key(&detail, "failed");
        json_int(&detail, (int64_t)failed);
        json_obj_end(&detail);
        rc = catalog_audit(s->p.catalog, "agent", "ship_batch", detail.buf, err);
        json_free(&detail);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Every finished copy batch waiting, in one transaction: copies recorded, waiting versions
 * promoted, then spool files no copy needs any more removed. */
static void record_copies(struct shipper *s)
{
    struct copy_batch *list = s->rec_head;
    struct unlink_batch *u;
    struct cst_err err;
    int64_t now = util_now_ms();
    size_t n = 0;
    int committed = 0;

    ev_timer_stop(s->p.loop, &s->rec_timer);
    if (list == NULL)
        return;
    s->rec_head = s->rec_tail = NULL;
    s->rec_batches = 0;
    s->last_rec_at = ev_now(s->p.loop);
    if (catalog_begin(s->p.catalog, &err) < 0)
        goto out;
    for (struct copy_batch *b = list; b; b = b->next)
        if (record_batch(s, b, now, &err) < 0)
            goto fail;
    if (audit_group(s, list, &err) < 0 || catalog_commit(s->p.catalog, &err) < 0)
        goto fail;
    committed = 1;
    goto out;
fail:
    catalog_rollback(s->p.catalog);
out:
    for (struct copy_batch *b = list; b; b = b->next)
        n += b->n;
    if (!committed) {
        /* The copies are stored, but not recorded: they are redone (harmlessly) later. */
        log_error("cannot record %zu copies: %s", n, err.msg);
        snprintf(s->catalog_error, sizeof(s->catalog_error), "%s", err.msg);
        s->catalog_backoff_until = util_mono_ms() + 5000;
    } else {
        s->catalog_error[0] = '\0';
    }
    u = util_xcalloc(1, sizeof(*u));
    while (list) {
        struct copy_batch *b = list;
        struct lane *l = b->lane;
        struct dest_put *puts = b->puts;
        size_t ok_count = 0;
        uint64_t bytes = 0;

        list = b->next;
        for (size_t i = 0; committed && i < b->n; i++) {
            /* A spool file goes when no destination needs it any more (the commit is
             * durable: nothing refers to it now). */
            if ((puts[i].ok &&
                 catalog_copy_queue_count(s->p.catalog, b->items[i].object_id) == 0) ||
                puts[i].kind == DEST_ERR_SOURCE) {
                if (u->n == u->cap) {
                    u->cap = u->cap ? 2 * u->cap : 64;
                    u->paths = util_xrealloc(u->paths, u->cap * sizeof(*u->paths));
                }
                u->paths[u->n++] = util_join(s->p.spool_dir, b->items[i].spool);
            }
            if (puts[i].ok) {
                ok_count++;
                bytes += (uint64_t)b->items[i].plain_size;
            }
        }
        if (ok_count > 0 && s->p.on_batch)
            s->p.on_batch(s->p.arg, ok_count, bytes);
        for (size_t i = 0; i < b->n; i++) {
            lane_unbusy(l, b->items[i].object_id);
            free((char *)puts[i].spool_path);
            free((char *)puts[i].remote_key);
        }
        catalog_copy_items_free(b->items, b->n);
        free(puts);
        free(b);
    }
    if (u->n == 0) {
        unlink_batch_free(u);
    } else {
        u->s = s;
        u->work.run = unlink_run;
        u->work.done = unlink_done;
        u->next = s->unlinking;
        s->unlinking = u;
        s->n_unlinking++;
        workpool_submit(s->p.pool, &u->work);
    }
    s->copy_gen++;
    fill(s);
}

static void on_rec_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    record_copies(w->data);
}

/* A copy batch is back from its destination: the lane may start the next one now; the
 * results are recorded with the others that finish within RECORD_GROUP_MS. Until then its
 * objects stay busy on the lane, so that no copy is started twice. */
static void copies_done(void *arg, struct dest_put *puts, size_t n)
{
    struct copy_batch *b = arg;
    struct lane *l = b->lane;
    struct shipper *s = l->s;
    size_t ok_count = 0, failed = 0;
    const char *worst = NULL;
    enum dest_error worst_kind = DEST_OK;
    ev_tstamp wait;

    l->batches--;
    b->puts = puts;
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        if (puts[i].ok) {
            ok_count++;
        } else if (puts[i].kind != DEST_ERR_SOURCE) {
            failed++;
            worst = puts[i].error;
            worst_kind = puts[i].kind;
        }
    }
    /* The destination's own backoff bounds the rate of attempts while it is down. */
    if (ok_count == 0 && failed > 0) {
        l->failures++;
        /* Exponential with jitter, at most one attempt per 30 s while it stays down (a
         * configuration problem: at most one a minute). */
        int64_t delay = backoff_ms(l->failures - 1);
        if (delay > 30000)
            delay = 30000 + (int64_t)randombytes_uniform(1000);
        if (worst_kind == DEST_ERR_CONFIG && delay < 60000)
            delay = 60000;
        l->down_until = util_mono_ms() + delay;
        if (l->failures == 1 || l->failures % 10 == 0)
            log_warn("destination %s is failing (%s error, %d in a row): %s; retrying in %lld s",
                     l->d->name, dest_error_name(worst_kind), l->failures, worst,
                     (long long)delay / 1000);
    } else if (ok_count > 0) {
        if (l->failures > 0)
            log_info("destination %s is back after %d failed attempts", l->d->name, l->failures);
        l->failures = 0;
        l->down_until = 0;
    }
    b->next = NULL;
    if (s->rec_tail)
        s->rec_tail->next = b;
    else
        s->rec_head = b;
    s->rec_tail = b;
    s->rec_batches++;
    wait = s->last_rec_at + RECORD_GROUP_MS / 1000.0 - ev_now(s->p.loop);
    if (s->stopping || wait <= 0) {
        record_copies(s);
        return;
    }
    if (!ev_is_active(&s->rec_timer)) {
        ev_timer_set(&s->rec_timer, wait, 0.0);
        ev_timer_start(s->p.loop, &s->rec_timer);
    }
    fill(s); /* the lane has room for another batch */
}

static void fill_copies(struct lane *l, int64_t now)
{
    struct shipper *s = l->s;

    while (l->batches < l->d->max_concurrent && util_mono_ms() >= l->down_until &&
           l->drained != s->copy_gen) {
        struct catalog_copy_item *items;
        struct dest_put *puts;
        int64_t *retains;
        struct copy_batch *b;
        struct cst_err err;
        size_t n;

        if (catalog_copy_queue_ready(s->p.catalog, l->d->name, now, l->d->max_batch, lane_busy, l,
                                     &items, &n, &err) < 0) {
            log_error("cannot read the copy queue: %s", err.msg);
            return;
        }
        if (n < l->d->max_batch)
            l->drained = s->copy_gen; /* all there was: none until something changes */
        if (n == 0) {
            catalog_copy_items_free(items, n);
            return;
        }
        /* A copy to a destination that locks goes locked, or not at all (yet). */
        retains = util_xcalloc(n, sizeof(*retains));
        for (size_t i = 0; dest_locks(l->d) && i < n; i++) {
            retains[i] = object_lock_until(s, items[i].object_id, items[i].queued_at, &err);
            if (retains[i] < 0) {
                log_error("cannot compute the retention of %.16s: %s", items[i].object_id, err.msg);
                free(retains);
                catalog_copy_items_free(items, n);
                return;
            }
        }
        puts = util_xcalloc(n, sizeof(*puts));
        b = util_xcalloc(1, sizeof(*b));
        b->lane = l;
        b->items = items;
        b->n = n;
        b->started = now;
        for (size_t i = 0; i < n; i++) {
            puts[i].spool_path = util_join(s->p.spool_dir, items[i].spool);
            puts[i].remote_key = dest_object_key(items[i].object_id);
            puts[i].stored_size = (uint64_t)items[i].stored_size;
            memcpy(puts[i].stored_sha256, items[i].stored_sha256, 32);
            puts[i].plain_size = (uint64_t)items[i].plain_size;
            memcpy(puts[i].plain_sha256, items[i].plain_sha256, 32);
            if (dest_locks(l->d))
                puts[i].retain_until = retains[i];
            puts[i].owner = b;
            /* Every spool file the copy queue names was made durable before it was recorded
             * (sync_batch; source_run for bytes copied from another destination). */
            puts[i].spool_durable = 1;
            lane_busy_add(l, items[i].object_id);
        }
        free(retains);
        l->batches++;
        l->d->ops->put_batch(l->d, puts, n, copies_done, b);
    }
}

/* --- lock extensions: a stored copy retained longer, in place --- */

struct extend_batch {
    struct lane *lane;
    struct dest_put *puts;
    struct catalog_lock_item *items;
    size_t n;
};

static void extends_done(void *arg, struct dest_put *puts, size_t n)
{
    struct extend_batch *b = arg;
    struct lane *l = b->lane;
    struct shipper *s = l->s;
    struct cst_err err;
    int64_t now = util_now_ms();
    int rc = catalog_begin(s->p.catalog, &err);

    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct catalog_lock_item *it = &b->items[i];
        char until[32];

        util_format_ms(it->until, until, sizeof(until));
        if (puts[i].ok) {
            log_info("lock extended dest=%s object=%.16s until=%s", l->d->name, it->object_id,
                     until);
            rc = catalog_lock_extend_done(s->p.catalog, it->object_id, l->d->name, it->until,
                                          puts[i].retained_until, &err);
            if (rc == 0)
                rc = catalog_pending_promote(s->p.catalog, it->object_id, now, NULL, NULL, &err) < 0
                         ? -1
                         : 0;
        } else {
            log_warn("cannot extend the lock dest=%s object=%.16s until=%s: %s", l->d->name,
                     it->object_id, until, puts[i].error);
            rc = catalog_lock_extend_retry(s->p.catalog, it->object_id, l->d->name,
                                           now + (puts[i].kind == DEST_ERR_CONFIG ? 60000 : 5000),
                                           puts[i].error, &err);
        }
    }
    if (rc == 0)
        rc = catalog_commit(s->p.catalog, &err);
    else
        catalog_rollback(s->p.catalog);
    if (rc < 0) {
        /* Nothing recorded: extended again (harmlessly: a later date shows already). */
        log_error("cannot record lock extensions on %s: %s", l->d->name, err.msg);
        s->catalog_backoff_until = util_mono_ms() + 5000;
    }
    for (size_t i = 0; i < n; i++)
        lane_unbusy(l, b->items[i].object_id);
    l->extending = 0;
    catalog_lock_items_free(b->items, b->n);
    free(puts);
    free(b);
    fill(s);
}

static void fill_extends(struct lane *l, int64_t now)
{
    struct shipper *s = l->s;
    struct catalog_lock_item *items;
    struct extend_batch *b;
    struct cst_err err;
    size_t n;

    if (l->extending || s->p.lock_until == NULL || !dest_locks(l->d) ||
        util_mono_ms() < l->down_until)
        return;
    if (catalog_lock_extend_ready(s->p.catalog, l->d->name, now, l->d->max_batch, lane_busy, l,
                                  &items, &n, &err) < 0) {
        log_error("cannot read the lock extensions: %s", err.msg);
        return;
    }
    if (n == 0) {
        catalog_lock_items_free(items, n);
        return;
    }
    b = util_xcalloc(1, sizeof(*b));
    b->lane = l;
    b->items = items;
    b->n = n;
    b->puts = util_xcalloc(n, sizeof(*b->puts));
    for (size_t i = 0; i < n; i++) {
        b->puts[i].remote_key = items[i].remote_key;
        b->puts[i].stored_size = (uint64_t)items[i].stored_size;
        b->puts[i].retain_until = items[i].until;
        b->puts[i].in_place = 1;
        b->puts[i].owner = b;
        lane_busy_add(l, items[i].object_id);
    }
    l->extending = 1;
    l->d->ops->put_batch(l->d, b->puts, n, extends_done, b);
}

/* --- sourcing: finding the bytes of a copy queued without them --- */

/* A copy queued by coverage (a destination added later, a damaged copy) or whose
 * spool file was lost has no bytes yet. In order of preference they come from
 * another queued copy's spool file, from another destination's ciphertext (the
 * object is the same bytes everywhere, and no secret key is needed to copy it),
 * or from sealing the live file again when its content is unchanged. */

#define MAX_SOURCING 4
#define SOURCE_RETRY_MS 30000
#define SOURCE_GIVE_UP_MS 3600000

struct source_job {
    struct work work;
    struct shipper *s;
    char object_id[65];
    struct catalog_copy *cands;
    size_t n_cands;
    /* out */
    char *tmp;
    int ok;
    int64_t size;
    unsigned char sha[32];
    char from[64];
    char error[CST_ERR_SIZE];
};

static int sourcing_has(void *arg, const char *object_id)
{
    struct shipper *s = arg;

    for (size_t i = 0; i < s->n_sourcing; i++)
        if (strcmp(s->sourcing[i], object_id) == 0)
            return 1;
    return 0;
}

static void sourcing_del(struct shipper *s, const char *object_id)
{
    for (size_t i = 0; i < s->n_sourcing; i++)
        if (strcmp(s->sourcing[i], object_id) == 0) {
            free(s->sourcing[i]);
            s->sourcing[i] = s->sourcing[--s->n_sourcing];
            return;
        }
}

static struct dest *fetch_dest(struct shipper *s, const char *name)
{
    for (size_t d = 0; s->p.fetch_dests && d < s->p.n_dests; d++)
        if (strcmp(s->p.dests[d]->name, name) == 0)
            return s->p.fetch_dests[d];
    return NULL;
}

static int hash_fd(int fd, unsigned char out[32], int64_t *size)
{
    unsigned char buf[1 << 16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 32;
    off_t off = 0;
    int rc = -1;

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof(buf), off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto out;
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        off += n;
    }
    EVP_DigestFinal_ex(ctx, out, &len);
    *size = (int64_t)off;
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* On the aux thread: the first candidate copy that reads back as recorded. */
static void source_run(struct work *w)
{
    struct source_job *sj = (struct source_job *)w;
    struct shipper *s = sj->s;

    for (size_t i = 0; i < sj->n_cands && !sj->ok; i++) {
        const struct catalog_copy *c = &sj->cands[i];
        struct dest *d = fetch_dest(s, c->dest);
        struct cst_err err = {{0}};
        char *tmp;
        int fd;

        if (d == NULL)
            continue;
        tmp = util_join(s->p.spool_dir, "seal.fetch-XXXXXX");
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
            snprintf(sj->error, sizeof(sj->error), "cannot create a spool file in %s: %s",
                     s->p.spool_dir, strerror(errno));
            free(tmp);
            return;
        }
        if (d->ops->get(d, c->remote_key, fd, &err) < 0) {
            snprintf(sj->error, sizeof(sj->error), "%s", err.msg);
        } else if (hash_fd(fd, sj->sha, &sj->size) < 0 || fdatasync(fd) < 0) {
            snprintf(sj->error, sizeof(sj->error), "cannot read back %s: %s", tmp, strerror(errno));
        } else if (sj->size != c->stored_size || memcmp(sj->sha, c->stored_sha256, 32) != 0) {
            snprintf(sj->error, sizeof(sj->error),
                     "the copy on %s is not what was stored (%lld bytes, %lld expected)", c->dest,
                     (long long)sj->size, (long long)c->stored_size);
        } else {
            sj->ok = 1;
            sj->tmp = tmp;
            snprintf(sj->from, sizeof(sj->from), "%s", c->dest);
            tmp = NULL;
        }
        close(fd);
        if (tmp) {
            unlink(tmp);
            free(tmp);
        }
    }
}

/* Nothing could be copied: seal the live file again if there is one. */
static int source_by_sealing(struct shipper *s, const char *object_id, const char *why, int64_t now,
                             struct cst_err *err)
{
    char **paths;
    size_t n;
    int rc;

    if (catalog_object_live_paths(s->p.catalog, object_id, &paths, &n, err) < 0)
        return -1;
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = catalog_queue_path(s->p.catalog, paths[i], "reseal", now, err);
        free(paths[i]);
    }
    free(paths);
    if (rc < 0)
        return -1;
    if (n > 0) {
        char *msg = util_printf("%s; sealing the live file again", why);

        log_warn("object %.16s: %s", object_id, msg);
        rc = catalog_copy_queue_unsourced_retry(s->p.catalog, object_id, SOURCE_RETRY_MS, msg, err);
        free(msg);
        return rc;
    }
    char *msg = util_printf("%s, and no live file has this content: the copy cannot be made", why);
    log_error("object %.16s: %s", object_id, msg);
    rc = catalog_copy_queue_unsourced_retry(s->p.catalog, object_id, SOURCE_GIVE_UP_MS, msg, err);
    free(msg);
    return rc;
}

static void source_finish(struct source_job *sj)
{
    struct shipper *s = sj->s;
    struct cst_err err = {{0}};
    int64_t now = util_now_ms();
    int rc = catalog_begin(s->p.catalog, &err);

    if (rc == 0 && sj->ok) {
        char *name = util_printf("%s.obj", sj->object_id);
        char *final = util_join(s->p.spool_dir, name);

        if (rename(sj->tmp, final) < 0) {
            rc = cst_err_sys(&err, "cannot rename spool file %s", sj->tmp);
            unlink(sj->tmp);
        } else {
            rc = catalog_copy_queue_source(s->p.catalog, sj->object_id, name, sj->size, sj->sha,
                                           now, &err);
            if (rc >= 0) {
                log_info("copying object %.16s from destination %s's copy (%lld bytes)",
                         sj->object_id, sj->from, (long long)sj->size);
                rc = 0;
            }
        }
        free(final);
        free(name);
    } else if (rc == 0) {
        char *why = util_printf("no intact copy could be read (%s)",
                                sj->n_cands ? sj->error : "none is recorded");

        rc = source_by_sealing(s, sj->object_id, why, now, &err);
        free(why);
    }
    if (rc == 0)
        rc = catalog_commit(s->p.catalog, &err);
    else
        catalog_rollback(s->p.catalog);
    if (rc < 0) {
        log_error("cannot record the source of object %.16s: %s", sj->object_id, err.msg);
        s->catalog_backoff_until = util_mono_ms() + 5000;
    }
    sourcing_del(s, sj->object_id);
    catalog_copies_free(sj->cands, sj->n_cands);
    free(sj->tmp);
    free(sj);
}

static void source_done(struct work *w)
{
    struct shipper *s = ((struct source_job *)w)->s;

    source_finish((struct source_job *)w);
    s->copy_gen++;
    fill(s);
}

/* Take the next copies that need their bytes and find them. */
static void fill_sources(struct shipper *s, int64_t now)
{
    char **ids;
    size_t n;
    struct cst_err err;

    if (s->n_sourcing >= MAX_SOURCING || s->sources_drained == s->copy_gen)
        return;
    if (catalog_copy_queue_unsourced(s->p.catalog, now, MAX_SOURCING - s->n_sourcing, sourcing_has,
                                     s, &ids, &n, &err) < 0) {
        log_error("cannot read the copy queue: %s", err.msg);
        return;
    }
    if (n < MAX_SOURCING - s->n_sourcing)
        s->sources_drained = s->copy_gen; /* all there was: none until something changes */
    if (n > 0)
        s->copy_gen++; /* sourced from the spool: the lanes look again */
    for (size_t i = 0; i < n; i++) {
        char *spool = NULL;
        int64_t size;
        unsigned char sha[32];
        int found = catalog_copy_queue_find(s->p.catalog, ids[i], &spool, &size, sha, &err);

        if (found < 0) {
            log_error("%s", err.msg);
            free(ids[i]);
            continue;
        }
        if (found == 1) {
            /* Another destination's queued copy has the bytes in the spool already. */
            if (catalog_copy_queue_source(s->p.catalog, ids[i], spool, size, sha, now, &err) < 0)
                log_error("%s", err.msg);
            free(spool);
            free(ids[i]);
            continue;
        }
        struct source_job *sj = util_xcalloc(1, sizeof(*sj));

        sj->s = s;
        snprintf(sj->object_id, sizeof(sj->object_id), "%s", ids[i]);
        if (catalog_good_copies(s->p.catalog, ids[i], &sj->cands, &sj->n_cands, &err) < 0) {
            log_error("%s", err.msg);
            free(sj);
            free(ids[i]);
            continue;
        }
        sj->work.run = source_run;
        sj->work.done = source_done;
        s->sourcing = util_xrealloc(s->sourcing, (s->n_sourcing + 1) * sizeof(char *));
        s->sourcing[s->n_sourcing++] = ids[i];
        if (s->p.aux_pool && sj->n_cands > 0)
            workpool_submit(s->p.aux_pool, &sj->work);
        else
            source_finish(sj); /* nothing to copy from: straight to sealing again */
    }
    free(ids);
}

/* --- fill: on the loop --- */

static void fill_paths(struct shipper *s, int64_t now)
{
    struct catalog_queue_item *items;
    size_t n;
    struct cst_err err;

    /* Refilled when half has been sealed, in one read, rather than one read per sealed file;
     * a quiet host (nothing sealing) reads at once. */
    if (s->sealing > s->max_sealing / 2 || s->done_count >= MAX_FLUSH)
        return;
    if (catalog_queue_ready_page(s->p.catalog, now, &s->cursor, s->max_sealing - s->sealing,
                                 inflight_has, s, &items, &n, &err) < 0) {
        log_error("cannot read the queue: %s", err.msg);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct job *j = util_xcalloc(1, sizeof(*j));

        j->s = s;
        j->item = items[i];
        j->forced = now - items[i].queued_at >= s->p.max_delay_ms;
        items[i].path = NULL; /* moved into the job */
        j->work.run = seal_run;
        j->work.done = seal_done;
        inflight_add(s, j->item.path_id);
        s->sealing++;
        workpool_submit(s->p.pool, &j->work);
    }
    catalog_queue_items_free(items, n);
}

static void fill(struct shipper *s)
{
    int64_t now, next, mono = util_mono_ms();
    double after;

    if (s->stopping)
        return;
    ev_timer_stop(s->p.loop, &s->next_timer);
    if (mono < s->catalog_backoff_until) {
        ev_timer_set(&s->next_timer, (double)(s->catalog_backoff_until - mono) / 1000.0, 0.0);
        ev_timer_start(s->p.loop, &s->next_timer);
        return;
    }
    now = util_now_ms();
    fill_paths(s, now);
    fill_sources(s, now);
    for (size_t d = 0; d < s->p.n_dests; d++) {
        fill_copies(&s->lanes[d], now);
        fill_extends(&s->lanes[d], now);
    }
    /* Entries not ready yet (settling, backing off): wake up when the first is. */
    int64_t next_copy = INT64_MAX, next_lock = INT64_MAX;
    struct cst_err err;
    int rc = catalog_queue_next_ready(s->p.catalog, now, &next, &err);
    /* Per destination (an index search each): asked on every fill, a scan of the whole copy
     * queue cost more than the rest of the fill in a backlog. */
    for (size_t d = 0; rc == 0 && d < s->p.n_dests; d++) {
        int64_t at;

        rc = catalog_copy_queue_next_ready(s->p.catalog, s->p.dests[d]->name, now, &at, &err);
        if (rc == 0 && at < next_copy)
            next_copy = at;
    }
    if (rc == 0 && s->p.lock_until)
        rc = catalog_lock_extend_next_ready(s->p.catalog, now, &next_lock, &err);
    if (rc < 0) {
        /* The catalog cannot say when: look again soon rather than sleep for ever. */
        log_warn("cannot read the queue schedule: %s", err.msg);
        next = next_copy = now + 1000;
    }
    if (next_copy < next)
        next = next_copy;
    if (next_lock < next)
        next = next_lock;
    after = next == INT64_MAX ? -1.0 : (double)(next - now) / 1000.0;
    for (size_t d = 0; d < s->p.n_dests; d++) {
        struct lane *l = &s->lanes[d];
        double up = (double)(l->down_until - mono) / 1000.0;

        if (l->down_until > mono && (after < 0 || up < after))
            after = up;
    }
    if (after >= 0) {
        ev_timer_set(&s->next_timer, after > 0.001 ? after : 0.001, 0.0);
        ev_timer_start(s->p.loop, &s->next_timer);
    }
}

static void on_next_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct shipper *s = t->data;

    (void)loop;
    (void)revents;
    s->copy_gen++; /* entries whose time came (retries, backoffs) */
    fill(s);
}

static void on_kick(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    ev_prepare_stop(loop, w);
    fill(w->data);
}

/* --- start-up: the spool against the copy queue --- */

struct spool_check {
    struct shipper *s;
    char **keep;
    size_t n_keep;
    int64_t lost;
};

static int check_spool_file(void *arg, const char *name)
{
    struct spool_check *c = arg;
    char *path = util_join(c->s->p.spool_dir, name);
    struct stat sb;

    if (stat(path, &sb) == 0) {
        c->keep = util_xrealloc(c->keep, (c->n_keep + 1) * sizeof(char *));
        c->keep[c->n_keep++] = util_xstrdup(name);
    } else {
        c->lost++;
    }
    free(path);
    return 0;
}

/* Remove the shipper's spool files nothing refers to; re-seal objects whose spool file is
 * gone. */
static int recover_spool(struct shipper *s, struct cst_err *err)
{
    struct spool_check c = {s, NULL, 0, 0};
    DIR *dir;
    struct dirent *de;
    int rc;

    rc = catalog_each_spool_file(s->p.catalog, check_spool_file, &c, err);
    if (rc == 0 && c.lost > 0) {
        /* A lost spool file (power cut before it reached the disk): seal again. */
        rc = catalog_begin(s->p.catalog, err);
        for (size_t d = 0; rc == 0 && d < s->p.n_dests; d++) {
            struct catalog_copy_item *items;
            size_t n;

            rc = catalog_copy_queue_ready(s->p.catalog, s->p.dests[d]->name, INT64_MAX,
                                          (size_t)1 << 20, NULL, NULL, &items, &n, err);
            for (size_t i = 0; rc == 0 && i < n; i++) {
                int kept = 0;

                for (size_t k = 0; k < c.n_keep && !kept; k++)
                    kept = strcmp(c.keep[k], items[i].spool) == 0;
                if (!kept)
                    rc = catalog_copy_queue_unsource(s->p.catalog, items[i].object_id, err);
            }
            if (rc == 0)
                catalog_copy_items_free(items, n);
        }
        if (rc == 0)
            rc = catalog_commit(s->p.catalog, err);
        else
            catalog_rollback(s->p.catalog);
        if (rc == 0)
            log_warn("%lld spool files were lost; their bytes are found again", (long long)c.lost);
    }
    /* Only the shipper's own names: "seal.*" (a sealing that never finished; only one
     * shipping process runs at a time, under the agent lock, so its writer is gone) and
     * "*.obj" nothing refers to. Other files in the spool folder (a daily run's) are not ours. */
    dir = opendir(s->p.spool_dir);
    while (rc == 0 && dir && (de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        int kept = 0;

        if (de->d_name[0] == '.')
            continue;
        if (strncmp(de->d_name, "seal.", 5) != 0 &&
            !(len > 4 && strcmp(de->d_name + len - 4, ".obj") == 0))
            continue;
        for (size_t k = 0; k < c.n_keep && !kept; k++)
            kept = strcmp(c.keep[k], de->d_name) == 0;
        if (!kept) {
            char *p = util_join(s->p.spool_dir, de->d_name);
            unlink(p);
            free(p);
        }
    }
    if (dir)
        closedir(dir);
    for (size_t k = 0; k < c.n_keep; k++)
        free(c.keep[k]);
    free(c.keep);
    return rc;
}

/* --- coverage --- */

#define COVER_EVERY_S 600.0
#define COVER_RETRY_S 60.0

int64_t shipper_cover(struct shipper *s)
{
    struct cst_err err;
    int64_t total = 0, now = util_now_ms();

    if (catalog_begin(s->p.catalog, &err) < 0) {
        log_error("cannot check coverage: %s", err.msg);
        return -1;
    }
    for (size_t d = 0; d < s->p.n_dests; d++) {
        int64_t n = catalog_coverage_queue(s->p.catalog, s->p.dests[d]->name, now, &err);

        if (n < 0) {
            catalog_rollback(s->p.catalog);
            log_error("cannot check coverage: %s", err.msg);
            return -1;
        }
        if (n > 0)
            log_warn("destination %s lacks %lld objects; copying them", s->p.dests[d]->name,
                     (long long)n);
        total += n;
    }
    if (catalog_commit(s->p.catalog, &err) < 0) {
        log_error("cannot check coverage: %s", err.msg);
        return -1;
    }
    if (total > 0)
        shipper_kick(s);
    return total;
}

/* The check in slices: objects by the first hex digit of their id, one slice of one
 * destination per loop turn. Over 100,000 objects the whole check is 60-140 ms of the
 * loop; a slice is a sixteenth of that, so `status` and the watcher wait for no more.
 * An object added between slices is new: it is queued to every destination anyway. */
#define COVER_SLICES 16
/* Where slices begin: ids are lowercase hex (shipper_object_id), and 'g' sorts after
 * every id that starts with 'f'. */
static const char HEX_BOUNDS[] = "0123456789abcdefg";

static void cover_retry(struct shipper *s)
{
    log_warn("checking what the destinations lack again in %.0f s", COVER_RETRY_S);
    ev_timer_stop(s->p.loop, &s->cover_timer);
    ev_timer_set(&s->cover_timer, COVER_RETRY_S, COVER_EVERY_S);
    ev_timer_start(s->p.loop, &s->cover_timer);
}

static void on_cover_step(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct shipper *s = t->data;
    size_t d = s->cover_next / COVER_SLICES, slice = s->cover_next % COVER_SLICES;
    const char *name = s->p.dests[d]->name;
    /* The first slice starts at '', so that no id sorts below every slice. */
    char lo[2] = {slice > 0 ? HEX_BOUNDS[slice] : '\0', '\0'};
    char hi[2] = {HEX_BOUNDS[slice + 1], '\0'};
    struct cst_err err;
    int64_t n = -1;

    (void)loop;
    (void)revents;
    if (s->stopping)
        return;
    if (catalog_begin(s->p.catalog, &err) == 0) {
        n = catalog_coverage_queue_range(s->p.catalog, name, util_now_ms(), lo, hi, &err);
        if (n < 0)
            catalog_rollback(s->p.catalog);
        else if (catalog_commit(s->p.catalog, &err) < 0)
            n = -1;
    }
    if (n < 0) {
        log_error("cannot check coverage of %s: %s", name, err.msg);
        cover_retry(s);
        return;
    }
    s->cover_found += n;
    if (n > 0)
        shipper_kick(s);
    if (slice + 1 == COVER_SLICES) {
        if (s->cover_found > 0)
            log_warn("destination %s lacks %lld objects; copying them", name,
                     (long long)s->cover_found);
        s->cover_found = 0;
    }
    if (++s->cover_next < s->p.n_dests * COVER_SLICES) {
        ev_timer_set(t, 0.0, 0.0);
        ev_timer_start(s->p.loop, t);
    }
}

/* Start a check in slices, unless one is under way. */
static void cover_begin(struct shipper *s)
{
    if (s->stopping || ev_is_active(&s->cover_step) || s->p.n_dests == 0)
        return;
    s->covered_once = 1;
    s->cover_next = 0;
    s->cover_found = 0;
    ev_timer_set(&s->cover_step, 0.0, 0.0);
    ev_timer_start(s->p.loop, &s->cover_step);
}

static void on_cover_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    cover_begin(t->data);
}

/* Queued copies to destinations that left the config will never be made: drop them
 * (their spool files go with the start-up cleanup), saying so once. */
static int forget_removed_dests(struct shipper *s, struct cst_err *err)
{
    char **names = util_xcalloc(s->p.n_dests, sizeof(char *));
    struct catalog_forgotten *gone;
    size_t n;
    int rc;

    for (size_t d = 0; d < s->p.n_dests; d++)
        names[d] = s->p.dests[d]->name;
    rc = catalog_begin(s->p.catalog, err);
    if (rc == 0)
        rc = catalog_forget_dests(s->p.catalog, names, s->p.n_dests, util_now_ms(), &gone, &n, err);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct json j;

        log_warn("destination %s was removed from the config: %lld queued copies to it are "
                 "dropped",
                 gone[i].dest, (long long)gone[i].dropped);
        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "dest");
        json_str(&j, gone[i].dest);
        json_key(&j, "copies_dropped");
        json_int(&j, gone[i].dropped);
        json_obj_end(&j);
        rc = catalog_audit(s->p.catalog, "agent", "dest_removed", j.buf, err);
        json_free(&j);
    }
    if (rc == 0)
        catalog_forgotten_free(gone, n);
    if (rc == 0)
        rc = catalog_lock_extend_forget(s->p.catalog, names, s->p.n_dests, err);
    if (rc == 0)
        rc = catalog_commit(s->p.catalog, err);
    else
        catalog_rollback(s->p.catalog);
    free(names);
    return rc;
}

struct shipper *shipper_new(const struct shipper_params *p, struct cst_err *err)
{
    struct shipper *s;

    if (p->n_dests == 0 || p->n_dests > 32)
        return cst_err_set(err, "between 1 and 32 destinations are needed"), NULL;
    if (util_mkdir_p(p->spool_dir, 0700, err) < 0)
        return NULL;
    if (sodium_init() < 0)
        return cst_err_set(err, "libsodium failed to initialise"), NULL;
    s = util_xcalloc(1, sizeof(*s));
    s->p = *p;
    s->copy_gen = 1; /* lanes and sourcing start at 0: they read the copy queue at once */
    /* Enough sealing queued to keep every worker busy, also while the loop is in a batch's
     * commit (tens of ms in a backlog, when batches have grown): the workers' queue is only
     * refilled by the loop. 64 small files per worker are about 10 ms of sealing. */
    s->max_sealing = (size_t)(p->workers > 0 ? p->workers : 2) * 64;
    s->lanes = util_xcalloc(p->n_dests, sizeof(*s->lanes));
    for (size_t d = 0; d < p->n_dests; d++) {
        s->lanes[d].s = s;
        s->lanes[d].d = p->dests[d];
    }
    ev_timer_init(&s->next_timer, on_next_timer, 0.0, 0.0);
    s->next_timer.data = s;
    ev_prepare_init(&s->kick_prep, on_kick);
    s->kick_prep.data = s;
    ev_prepare_init(&s->batch_prep, on_batch_prep);
    s->batch_prep.data = s;
    ev_timer_init(&s->batch_timer, on_batch_timer, 0.0, 0.0);
    s->batch_timer.data = s;
    ev_timer_init(&s->rec_timer, on_rec_timer, 0.0, 0.0);
    s->rec_timer.data = s;
    s->sync_pool = workpool_new(p->loop, SYNC_THREADS);
    workpool_name(s->sync_pool, "cst-sync");
    ev_timer_init(&s->cover_timer, on_cover_timer, COVER_EVERY_S, COVER_EVERY_S);
    s->cover_timer.data = s;
    ev_timer_init(&s->cover_step, on_cover_step, 0.0, 0.0);
    s->cover_step.data = s;
    if (forget_removed_dests(s, err) < 0 || recover_spool(s, err) < 0) {
        shipper_free(s);
        return NULL;
    }
    /* Whatever a destination lacks (added since, copies found damaged) is queued now,
     * or when the caller says (cover_later), and checked again every so often. */
    if (!p->cover_later) {
        if (shipper_cover(s) < 0) {
            cst_err_set(err, "cannot check what the destinations lack (see the log)");
            shipper_free(s);
            return NULL;
        }
        ev_timer_start(s->p.loop, &s->cover_timer);
    } else {
        /* The caller's moment may not come (a start-up scan that keeps failing): the
         * first check begins after a minute regardless. */
        ev_timer_set(&s->cover_timer, COVER_RETRY_S, COVER_EVERY_S);
        ev_timer_start(s->p.loop, &s->cover_timer);
    }
    return s;
}

void shipper_cover_start(struct shipper *s)
{
    if (s->stopping || s->covered_once)
        return;
    /* Nothing is lost while this waits: the objects stay lacking in the catalog, and
     * `status` reports them as copied by nothing yet until a slice queues them. */
    cover_begin(s);
    ev_timer_stop(s->p.loop, &s->cover_timer);
    ev_timer_set(&s->cover_timer, COVER_EVERY_S, COVER_EVERY_S);
    ev_timer_start(s->p.loop, &s->cover_timer);
}

void shipper_kick(struct shipper *s)
{
    /* Coalesce many kicks in one loop iteration into one queue read, from the top: what
     * was just queued is the newest. */
    s->cursor.valid = 0;
    s->copy_gen++; /* another part of the agent (or process) may have queued copies */
    if (!s->stopping)
        ev_prepare_start(s->p.loop, &s->kick_prep);
}

void shipper_stop(struct shipper *s)
{
    s->stopping = 1;
    ev_timer_stop(s->p.loop, &s->cover_timer);
    ev_timer_stop(s->p.loop, &s->cover_step);
    ev_timer_stop(s->p.loop, &s->next_timer);
    ev_prepare_stop(s->p.loop, &s->kick_prep);
    /* Copies already made are recorded now, not at the group's deadline. */
    if (s->rec_head)
        record_copies(s);
    /* What was sealed goes now, not at a growing batch's deadline. */
    if (ev_is_active(&s->batch_timer)) {
        ev_timer_stop(s->p.loop, &s->batch_timer);
        ev_prepare_start(s->p.loop, &s->batch_prep);
    }
}

size_t shipper_in_flight(const struct shipper *s)
{
    size_t n = s->sealing + s->done_count + s->n_sourcing + s->n_unlinking +
               (s->syncing ? s->syncing->n : 0) + s->rec_batches;

    for (size_t d = 0; d < s->p.n_dests; d++)
        n += s->lanes[d].batches + (size_t)s->lanes[d].extending;
    return n;
}

int shipper_idle(struct shipper *s)
{
    struct catalog_queue_item *items;
    struct catalog_copy_item *copies;
    size_t n = 0;
    struct cst_err err;
    int64_t now = util_now_ms();

    /* A coverage check under way is work too (the agent trims its memory after it). */
    if (shipper_in_flight(s) > 0 || ev_is_active(&s->cover_step))
        return 0;
    if (catalog_queue_ready(s->p.catalog, now, 1, NULL, NULL, &items, &n, &err) < 0)
        return 0;
    catalog_queue_items_free(items, n);
    if (n)
        return 0;
    for (size_t d = 0; d < s->p.n_dests; d++) {
        if (util_mono_ms() < s->lanes[d].down_until)
            continue; /* backing off: not idle work */
        if (catalog_copy_queue_ready(s->p.catalog, s->p.dests[d]->name, now, 1, NULL, NULL, &copies,
                                     &n, &err) < 0)
            return 0;
        catalog_copy_items_free(copies, n);
        if (n)
            return 0;
        if (s->p.lock_until && dest_locks(s->p.dests[d])) {
            struct catalog_lock_item *locks;

            if (catalog_lock_extend_ready(s->p.catalog, s->p.dests[d]->name, now, 1, NULL, NULL,
                                          &locks, &n, &err) < 0)
                return 0;
            catalog_lock_items_free(locks, n);
            if (n)
                return 0; /* a lock extension to make: versions wait for it */
        }
    }
    return 1;
}

int shipper_drained(struct shipper *s)
{
    struct catalog_backlog b;

    if (shipper_in_flight(s) > 0 || catalog_backlog(s->p.catalog, &b, NULL) < 0)
        return 0;
    return b.queued + b.waiting + b.copies == 0;
}

void shipper_free(struct shipper *s)
{
    if (s == NULL)
        return;
    /* Copies not recorded by now (the agent stops the shipper first, which records them)
     * are dropped, not recorded: the workers and maybe the catalog are gone. They are
     * stored; the next start records them again. */
    ev_timer_stop(s->p.loop, &s->rec_timer);
    while (s->rec_head) {
        struct copy_batch *b = s->rec_head;

        s->rec_head = b->next;
        for (size_t i = 0; i < b->n; i++) {
            free((char *)b->puts[i].spool_path);
            free((char *)b->puts[i].remote_key);
        }
        catalog_copy_items_free(b->items, b->n);
        free(b->puts);
        free(b);
    }
    s->rec_tail = NULL;
    s->rec_batches = 0;
    shipper_stop(s);
    ev_prepare_stop(s->p.loop, &s->batch_prep);
    ev_timer_stop(s->p.loop, &s->batch_timer);
    /* Queued syncs still run (their done() does not): the batch is dropped unrecorded, its
     * paths stay queued and are sealed again by the next start. */
    workpool_free(s->sync_pool);
    if (s->syncing) {
        while (s->syncing->list) {
            struct job *j = s->syncing->list;
            s->syncing->list = j->next;
            job_free(j);
        }
        free(s->syncing->todo);
        free(s->syncing);
        ev_unref(s->p.loop);
    }
    while (s->done_head) {
        struct job *j = s->done_head;
        s->done_head = j->next;
        job_free(j);
    }
    for (size_t i = 0; i < INFLIGHT_BUCKETS; i++)
        while (s->inflight[i]) {
            struct inflight_node *n = s->inflight[i];
            s->inflight[i] = n->next;
            free(n);
        }
    for (size_t d = 0; d < s->p.n_dests; d++) {
        for (size_t i = 0; i < BUSY_BUCKETS; i++)
            while (s->lanes[d].busy[i]) {
                struct busy_node *b = s->lanes[d].busy[i];
                s->lanes[d].busy[i] = b->next;
                free(b);
            }
    }
    free(s->lanes);
    for (size_t i = 0; i < s->n_sourcing; i++)
        free(s->sourcing[i]);
    free(s->sourcing);
    /* The workers are stopped (agent_run frees the pools first): ran, done() not called. */
    while (s->unlinking) {
        struct unlink_batch *u = s->unlinking;
        s->unlinking = u->next;
        unlink_batch_free(u);
    }
    free(s);
}

const char *shipper_catalog_error(const struct shipper *s)
{
    return s->catalog_error[0] ? s->catalog_error : NULL;
}
