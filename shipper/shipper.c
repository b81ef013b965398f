/*
 * shipper.c - the pipeline (see shipper.h).
 *
 * Stages and where they run:
 *   fill      loop    take ready queue entries not already in flight
 *   seal      worker  read once: SHA-256 + zstd + encrypt into a spool file;
 *                     discard if the file changed while it was read
 *   sealed    loop    object id, dedupe against the catalog
 *   store     worker  one put_batch per destination (durable + verified)
 *   stored    loop    one transaction records the batch, then spool removed
 * A batch is whatever is sealed when the previous store finishes, so a
 * quiet host ships one file at once and a burst ships in large batches.
 */
#include "shipper.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"
#include "shipper/container.h"
#include "shipper/workpool.h"

#define MAX_DESTS 16
#define READ_BUF (256 * 1024)
#define MAX_STORE_BATCH 512
#define INFLIGHT_BUCKETS 1024

enum seal_outcome { SEAL_OK, SEAL_GONE, SEAL_CHANGED, SEAL_SYMLINK, SEAL_SKIP, SEAL_ERROR };

struct job {
    struct work work;
    struct shipper *s;
    struct catalog_queue_item item;
    enum seal_outcome outcome;
    char error[CST_ERR_SIZE];
    char *spool_path;
    struct crypt_sealed_info info;
    char object_id[65];
    struct stat st;
    char *link_target;
    unsigned need;           /* bit per destination: an upload is needed */
    unsigned ok;             /* bit per destination: verified copy now present */
    char *key;               /* remote key */
    struct job *same_object; /* an earlier job in the batch uploading this object */
    struct job *next;
};

struct store {
    struct work work;
    struct shipper *s;
    struct job **jobs;
    size_t n;
};

struct inflight_node {
    int64_t path_id;
    struct inflight_node *next;
};

struct shipper {
    struct shipper_params p;
    struct workpool *pool;
    ev_timer next_timer;
    ev_idle kick_idle;
    size_t sealing;
    size_t max_sealing;
    size_t pending_count;
    struct job *pending_head, *pending_tail;
    int storing;
    size_t storing_count;
    int stopping;
    struct inflight_node *inflight[INFLIGHT_BUCKETS];
    size_t inflight_count;
};

static void fill(struct shipper *s);

/* --- the in-flight set: queue entries being worked on --- */

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

static void job_free(struct job *j)
{
    if (j->spool_path) {
        unlink(j->spool_path);
        free(j->spool_path);
    }
    free(j->item.path);
    free(j->link_target);
    free(j->key);
    free(j);
}

/* --- seal: on a worker --- */

static void seal_run(struct work *w)
{
    struct job *j = (struct job *)w;
    struct shipper *s = j->s;
    struct cst_err err = {{0}};
    struct crypt_sealer *sealer = NULL;
    unsigned char *buf = NULL;
    struct stat after;
    int fd = -1, spool_fd = -1;
    uint64_t total = 0;

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
    j->spool_path = util_join(s->p.spool_dir, "seal.XXXXXX");
    spool_fd = mkostemp(j->spool_path, O_CLOEXEC);
    if (spool_fd < 0) {
        j->outcome = SEAL_ERROR;
        snprintf(j->error, sizeof(j->error), "cannot create spool file in %s: %s", s->p.spool_dir,
                 strerror(errno));
        free(j->spool_path);
        j->spool_path = NULL;
        goto out;
    }
    sealer = crypt_sealer_new(s->p.public_key, CRYPT_LEVEL_AUTO, spool_fd, &err);
    if (sealer == NULL)
        goto fail;
    buf = util_xmalloc(READ_BUF);
    for (;;) {
        ssize_t n = read(fd, buf, READ_BUF);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cst_err_sys(&err, "read failed");
            goto fail;
        }
        if (n == 0)
            break;
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
    if (close(spool_fd) < 0) {
        spool_fd = -1;
        cst_err_sys(&err, "cannot write spool file %s", j->spool_path);
        goto fail;
    }
    spool_fd = -1;
    shipper_object_id(s->p.naming_key, j->info.plain_sha256, j->object_id);
    j->outcome = SEAL_OK;
    goto out;
fail:
    j->outcome = SEAL_ERROR;
    snprintf(j->error, sizeof(j->error), "%s", err.msg);
out:
    crypt_sealer_free(sealer);
    free(buf);
    if (spool_fd >= 0)
        close(spool_fd);
    if (fd >= 0)
        close(fd);
}

/* --- recording, on the loop --- */

static int64_t backoff_ms(int attempts)
{
    int shift = attempts < 8 ? attempts : 8;
    int64_t d = (int64_t)1000 << shift;

    if (d > 300000)
        d = 300000;
    return d + (int64_t)randombytes_uniform(1000);
}

static void retry(struct shipper *s, struct job *j, int64_t delay, const char *why)
{
    struct cst_err err;

    if (catalog_queue_retry(s->p.catalog, j->item.path_id, j->item.gen, delay, why, &err) < 0)
        log_error("cannot requeue: %s", err.msg);
}

/* Record j's version unless the live version already is exactly this. */
static int record_version(struct shipper *s, struct job *j, int64_t now, struct cst_err *err)
{
    struct catalog_version live, v;
    int rc = catalog_live_version(s->p.catalog, j->item.path, &live, err);

    if (rc < 0)
        return -1;
    if (rc == 1) {
        int same = live.size == (int64_t)j->st.st_size && live.inode == (int64_t)j->st.st_ino &&
                   live.mtime_ns == stat_mtime_ns(&j->st) &&
                   (j->outcome == SEAL_SYMLINK
                        ? live.kind == CATALOG_SYMLINK && live.link_target &&
                              strcmp(live.link_target, j->link_target) == 0
                        : live.kind == CATALOG_FILE && strcmp(live.object_id, j->object_id) == 0);
        catalog_version_clear(&live);
        if (same)
            return 0;
    }
    memset(&v, 0, sizeof(v));
    v.path = j->item.path;
    v.kind = j->outcome == SEAL_SYMLINK ? CATALOG_SYMLINK : CATALOG_FILE;
    v.size = (int64_t)j->st.st_size;
    v.mtime_ns = stat_mtime_ns(&j->st);
    v.inode = (int64_t)j->st.st_ino;
    if (v.kind == CATALOG_FILE) {
        memcpy(v.sha256, j->info.plain_sha256, 32);
        memcpy(v.object_id, j->object_id, sizeof(v.object_id));
    }
    v.link_target = j->link_target;
    v.first_seen = j->item.queued_at;
    v.shipped_at = now;
    return catalog_record_version(s->p.catalog, &v, err);
}

static void log_shipped(struct shipper *s, struct job *j, int64_t now, const char *how)
{
    char *shown = pathenc_escape(j->item.path, strlen(j->item.path));

    log_info("shipped path=%s bytes=%lld stored=%lld object=%.16s %s ms=%lld", shown,
             (long long)j->st.st_size, (long long)j->info.stored_size, j->object_id, how,
             (long long)(now - j->item.queued_at));
    free(shown);
    (void)s;
}

/* Versions that need no upload (symlinks, content every destination holds). */
static void record_now(struct shipper *s, struct job *j)
{
    struct cst_err err;
    int64_t now = util_now_ms();

    if (catalog_begin(s->p.catalog, &err) < 0 || record_version(s, j, now, &err) < 0 ||
        catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err) < 0 ||
        catalog_commit(s->p.catalog, &err) < 0) {
        catalog_rollback(s->p.catalog);
        log_error("cannot record %s: %s", j->item.path, err.msg);
        retry(s, j, backoff_ms(j->item.attempts), err.msg);
        return;
    }
    if (j->outcome == SEAL_SYMLINK) {
        char *shown = pathenc_escape(j->item.path, strlen(j->item.path));
        log_info("recorded symlink path=%s", shown);
        free(shown);
    } else {
        log_shipped(s, j, now, "dedup=yes");
    }
}

static void maybe_store(struct shipper *s);

static void seal_done(struct work *w)
{
    struct job *j = (struct job *)w;
    struct shipper *s = j->s;
    struct cst_err err;
    char *shown;
    int keep = 0;

    s->sealing--;
    switch (j->outcome) {
    case SEAL_GONE:
        /* Deleted before it could be read: the delete event tombstones it. */
        shown = pathenc_escape(j->item.path, strlen(j->item.path));
        log_warn("file vanished before it could be shipped path=%s", shown);
        free(shown);
        if (catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err) < 0)
            log_error("%s", err.msg);
        break;
    case SEAL_SKIP:
        shown = pathenc_escape(j->item.path, strlen(j->item.path));
        log_info("skipped path=%s reason=\"%s\"", shown, j->error);
        free(shown);
        if (catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err) < 0)
            log_error("%s", err.msg);
        break;
    case SEAL_CHANGED:
        log_debug("changed while read, retrying path=%s", j->item.path);
        retry(s, j, s->p.settle_ms > 100 ? s->p.settle_ms : 100, j->error);
        break;
    case SEAL_ERROR:
        shown = pathenc_escape(j->item.path, strlen(j->item.path));
        log_warn("cannot ship path=%s error=\"%s\" attempt=%d", shown, j->error,
                 j->item.attempts + 1);
        free(shown);
        retry(s, j, backoff_ms(j->item.attempts), j->error);
        break;
    case SEAL_SYMLINK:
        record_now(s, j);
        break;
    case SEAL_OK:
        j->need = 0;
        for (size_t d = 0; d < s->p.n_dests; d++)
            if (catalog_copy_exists(s->p.catalog, j->object_id, s->p.dests[d]->name) != 1)
                j->need |= 1u << d;
        if (j->need == 0) {
            record_now(s, j);
            break;
        }
        j->key = dest_object_key(j->object_id);
        j->next = NULL;
        if (s->pending_tail)
            s->pending_tail->next = j;
        else
            s->pending_head = j;
        s->pending_tail = j;
        s->pending_count++;
        keep = 1;
        break;
    }
    if (!keep) {
        inflight_del(s, j->item.path_id);
        job_free(j);
    }
    maybe_store(s);
    fill(s);
}

/* --- store: on a worker --- */

static void store_run(struct work *w)
{
    struct store *b = (struct store *)w;
    struct shipper *s = b->s;
    struct dest_item *items = util_xcalloc(b->n, sizeof(*items));
    struct job **owners = util_xcalloc(b->n, sizeof(*owners));

    for (size_t d = 0; d < s->p.n_dests; d++) {
        size_t n = 0;
        struct cst_err err = {{0}};

        for (size_t i = 0; i < b->n; i++) {
            struct job *j = b->jobs[i];

            if (!(j->need & (1u << d)) || j->same_object)
                continue;
            memset(&items[n], 0, sizeof(items[n]));
            items[n].spool_path = j->spool_path;
            items[n].remote_key = j->key;
            items[n].stored_size = j->info.stored_size;
            memcpy(items[n].stored_sha256, j->info.stored_sha256, 32);
            owners[n++] = j;
        }
        if (n == 0)
            continue;
        s->p.dests[d]->ops->put_batch(s->p.dests[d], items, n, &err);
        for (size_t i = 0; i < n; i++) {
            if (items[i].ok)
                owners[i]->ok |= 1u << d;
            else
                snprintf(owners[i]->error, sizeof(owners[i]->error), "destination %s: %s",
                         s->p.dests[d]->name, items[i].error);
        }
    }
    free(items);
    free(owners);
}

static void store_done(struct work *w)
{
    struct store *b = (struct store *)w;
    struct shipper *s = b->s;
    struct cst_err err;
    int64_t now = util_now_ms();
    size_t shipped = 0, failed = 0;
    uint64_t bytes = 0;
    int committed = 0;

    if (catalog_begin(s->p.catalog, &err) < 0)
        goto out;
    for (size_t i = 0; i < b->n; i++) {
        struct job *j = b->jobs[i];
        struct job *src = j->same_object ? j->same_object : j;
        struct catalog_object o;

        if ((src->ok & j->need) != j->need)
            continue;
        memset(&o, 0, sizeof(o));
        memcpy(o.id, src->object_id, sizeof(o.id));
        memcpy(o.sha256, src->info.plain_sha256, 32);
        memcpy(o.stored_sha256, src->info.stored_sha256, 32);
        o.plain_size = (int64_t)src->info.plain_size;
        o.stored_size = (int64_t)src->info.stored_size;
        o.compressed = src->info.compressed;
        if (catalog_record_object(s->p.catalog, &o, now, &err) < 0)
            goto fail;
        for (size_t d = 0; d < s->p.n_dests; d++)
            if ((j->need & (1u << d)) && !j->same_object &&
                catalog_record_copy(s->p.catalog, j->object_id, s->p.dests[d]->name, j->key, now,
                                    &err) < 0)
                goto fail;
        if (record_version(s, j, now, &err) < 0 ||
            catalog_queue_done(s->p.catalog, j->item.path_id, j->item.gen, &err) < 0)
            goto fail;
    }
    for (size_t i = 0; i < b->n; i++) {
        struct job *j = b->jobs[i];
        struct job *src = j->same_object ? j->same_object : j;

        if ((src->ok & j->need) == j->need) {
            shipped++;
            bytes += j->info.plain_size;
            continue;
        }
        failed++;
        char *shown = pathenc_escape(j->item.path, strlen(j->item.path));
        log_warn("cannot ship path=%s error=\"%s\" attempt=%d", shown, src->error,
                 j->item.attempts + 1);
        free(shown);
        retry(s, j, backoff_ms(j->item.attempts), src->error);
    }
    if (shipped > 0) {
        char *detail = util_printf("{\"files\":%zu,\"bytes\":%llu,\"failed\":%zu}", shipped,
                                   (unsigned long long)bytes, failed);
        int rc = catalog_audit(s->p.catalog, "agent", "ship_batch", detail, &err);

        free(detail);
        if (rc < 0)
            goto fail;
    }
    if (catalog_commit(s->p.catalog, &err) < 0)
        goto fail;
    committed = 1;
    goto out;
fail:
    catalog_rollback(s->p.catalog);
out:
    if (!committed) {
        /* Nothing recorded: the queue entries stay and the files ship again. */
        log_error("cannot record shipped batch of %zu files: %s", b->n, err.msg);
        for (size_t i = 0; i < b->n; i++)
            retry(s, b->jobs[i], backoff_ms(b->jobs[i]->item.attempts), err.msg);
    } else {
        for (size_t i = 0; i < b->n; i++) {
            struct job *j = b->jobs[i];
            struct job *src = j->same_object ? j->same_object : j;

            if ((src->ok & j->need) == j->need)
                log_shipped(s, j, now, j->same_object ? "dedup=batch" : "dedup=no");
        }
        if (s->p.on_batch)
            s->p.on_batch(s->p.arg, shipped, bytes);
    }
    for (size_t i = 0; i < b->n; i++) {
        inflight_del(s, b->jobs[i]->item.path_id);
        job_free(b->jobs[i]);
    }
    s->storing = 0;
    s->storing_count = 0;
    free(b->jobs);
    free(b);
    maybe_store(s);
    fill(s);
}

static void maybe_store(struct shipper *s)
{
    struct store *b;

    if (s->storing || s->pending_head == NULL)
        return;
    b = util_xcalloc(1, sizeof(*b));
    b->s = s;
    b->jobs = util_xcalloc(MAX_STORE_BATCH, sizeof(*b->jobs));
    while (s->pending_head && b->n < MAX_STORE_BATCH) {
        struct job *j = s->pending_head;

        s->pending_head = j->next;
        if (s->pending_head == NULL)
            s->pending_tail = NULL;
        s->pending_count--;
        /* The same content twice in one batch is uploaded once. */
        for (size_t i = 0; i < b->n; i++)
            if (!b->jobs[i]->same_object && strcmp(b->jobs[i]->object_id, j->object_id) == 0) {
                j->same_object = b->jobs[i];
                break;
            }
        b->jobs[b->n++] = j;
    }
    b->work.run = store_run;
    b->work.done = store_done;
    s->storing = 1;
    s->storing_count = b->n;
    workpool_submit(s->pool, &b->work);
}

/* --- fill: on the loop --- */

static void fill(struct shipper *s)
{
    struct catalog_queue_item *items;
    size_t n;
    struct cst_err err;
    int64_t now, next;

    if (s->stopping)
        return;
    if (s->sealing >= s->max_sealing || s->pending_count >= MAX_STORE_BATCH)
        return;
    now = util_now_ms();
    if (catalog_queue_ready(s->p.catalog, now, s->max_sealing - s->sealing, inflight_has, s, &items,
                            &n, &err) < 0) {
        log_error("cannot read the queue: %s", err.msg);
        n = 0;
        items = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        struct job *j = util_xcalloc(1, sizeof(*j));

        j->s = s;
        j->item = items[i];
        items[i].path = NULL; /* moved into the job */
        j->work.run = seal_run;
        j->work.done = seal_done;
        inflight_add(s, j->item.path_id);
        s->sealing++;
        workpool_submit(s->pool, &j->work);
    }
    catalog_queue_items_free(items, n);
    /* Entries not ready yet (settling, backing off): wake up when the first is. */
    next = catalog_queue_next_ready(s->p.catalog, now);
    ev_timer_stop(s->p.loop, &s->next_timer);
    if (next != INT64_MAX) {
        double after = (double)(next - now) / 1000.0;

        ev_timer_set(&s->next_timer, after > 0.001 ? after : 0.001, 0.0);
        ev_timer_start(s->p.loop, &s->next_timer);
    }
}

static void on_next_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    fill(t->data);
}

static void on_kick(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
    fill(w->data);
}

struct shipper *shipper_new(const struct shipper_params *p, struct cst_err *err)
{
    struct shipper *s;

    if (p->n_dests == 0 || p->n_dests > MAX_DESTS)
        return cst_err_set(err, "between 1 and %d destinations are needed", MAX_DESTS), NULL;
    if (util_mkdir_p(p->spool_dir, 0700, err) < 0)
        return NULL;
    if (sodium_init() < 0)
        return cst_err_set(err, "libsodium failed to initialise"), NULL;
    s = util_xcalloc(1, sizeof(*s));
    s->p = *p;
    s->pool = workpool_new(p->loop, p->workers > 0 ? p->workers : 2);
    /* Enough sealed work queued to keep every worker busy while a store runs. */
    s->max_sealing = (size_t)(p->workers > 0 ? p->workers : 2) * 4;
    ev_timer_init(&s->next_timer, on_next_timer, 0.0, 0.0);
    s->next_timer.data = s;
    ev_idle_init(&s->kick_idle, on_kick);
    s->kick_idle.data = s;
    return s;
}

void shipper_kick(struct shipper *s)
{
    /* Coalesce many kicks in one loop iteration into one queue read. */
    if (!s->stopping)
        ev_idle_start(s->p.loop, &s->kick_idle);
}

void shipper_stop(struct shipper *s)
{
    s->stopping = 1;
    ev_timer_stop(s->p.loop, &s->next_timer);
    ev_idle_stop(s->p.loop, &s->kick_idle);
}

size_t shipper_in_flight(const struct shipper *s)
{
    return s->inflight_count;
}

int shipper_idle(struct shipper *s)
{
    struct catalog_queue_item *items;
    size_t n = 0;
    struct cst_err err;

    if (s->inflight_count > 0)
        return 0;
    if (catalog_queue_ready(s->p.catalog, util_now_ms(), 1, NULL, NULL, &items, &n, &err) < 0)
        return 0;
    catalog_queue_items_free(items, n);
    return n == 0;
}

void shipper_free(struct shipper *s)
{
    if (s == NULL)
        return;
    shipper_stop(s);
    workpool_free(s->pool);
    while (s->pending_head) {
        struct job *j = s->pending_head;
        s->pending_head = j->next;
        job_free(j);
    }
    for (size_t i = 0; i < INFLIGHT_BUCKETS; i++)
        while (s->inflight[i]) {
            struct inflight_node *n = s->inflight[i];
            s->inflight[i] = n->next;
            free(n);
        }
    free(s);
}
