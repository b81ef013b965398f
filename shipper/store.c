/*
 * store.c - the storage core: one sequence that makes every copy durable
 * and verified, whatever the backend (see store.h for the steps).
 *
 * A batch moves through phases on the loop thread; the blocking work of
 * each phase runs on the destination's own threads (a workpool of
 * max_inflight threads), so that many objects are written and fsynced at
 * once (concurrent fdatasyncs share a journal commit) and a slow
 * destination never holds up a sealing worker:
 *
 *   root    the root is there and marked (STORE_FEAT_MARKER)
 *   write   every object: streamed, made durable, moved into place
 *   sync    every folder an object moved into: fsynced once
 *   verify  every object: the commit's proof, or read back and hashed
 *   plan    the objects that ask for a storage class or a retention: the
 *           stored version described, a dropped retention set, described
 *           again (no request for the others)
 *   report  done(arg, puts, n)
 *
 * Without an event loop (command-line use) the same phases run one after
 * the other in the caller.
 */
#include "shipper/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "shipper/workpool.h"

#define STORE_BUF (256u * 1024)
#define STORE_MARKER_MAX 4096
/* Objects above the read-back limit: this many ranges of this size, plus the first and
 * the last, are read back and compared with the spool file. */
#define STORE_SAMPLES 8
#define STORE_SAMPLE_LEN (1u << 20)

struct store {
    struct dest *d;
    const struct store_driver *drv;
    char *where; /* the root as an operator knows it, for messages */
    struct ev_loop *loop;
    struct workpool *pool; /* NULL: every phase runs in the caller */
    size_t threads;        /* the pool's */
    uint64_t readback_full;
    char *lock_mode; /* Object Lock mode of retentions; NULL: none (store_params) */
    pthread_mutex_t lock;
    int stopping;
    /* bandwidth */
    double rate; /* bytes per second, 0: unlimited */
    double next_send;
    /* marker */
    char *install_id;
    int usage_known, in_use, may_mark;
    char *recorded_key;
    int seen_marker; /* this process found (or wrote) the marker */
    pthread_mutex_t mark_lock;
    /* outstanding work, freed with the destination when its done() never came */
    struct batch *batches;
    struct work *startup;
};

/* ---- errors ---- */

int store_fail(struct store_err *e, enum dest_error kind, const char *fmt, ...)
{
    va_list ap;

    e->kind = kind;
    va_start(ap, fmt);
    vsnprintf(e->err.msg, sizeof(e->err.msg), fmt, ap);
    va_end(ap);
    return -1;
}

static void put_fail(struct dest_put *p, enum dest_error kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put_fail(struct dest_put *p, enum dest_error kind, const char *fmt, ...)
{
    va_list ap;

    p->ok = 0;
    p->kind = kind;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
}

static double mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- owners of temporary names ---- */

/* Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat). */
static int proc_start_time(long pid, unsigned long long *out)
{
    char path[64], buf[1024], *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    n = util_read_full(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* The command name is in parentheses and may hold anything: count from the last ')'. */
    p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    p++;
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return -1;
    }
    *out = strtoull(p + 1, NULL, 10);
    return 0;
}

static pthread_mutex_t owner_lock = PTHREAD_MUTEX_INITIALIZER;
static char owner_tag[48];
static long owner_pid;
static unsigned long temp_counter;

const char *store_owner(void)
{
    pthread_mutex_lock(&owner_lock);
    if (owner_pid != (long)getpid()) {
        unsigned long long start = 0;

        owner_pid = (long)getpid();
        proc_start_time(owner_pid, &start);
        snprintf(owner_tag, sizeof(owner_tag), "%ld-%llu", owner_pid, start);
    }
    pthread_mutex_unlock(&owner_lock);
    return owner_tag;
}

int store_owner_alive(const char *owner)
{
    char *end;
    long pid = strtol(owner, &end, 10);
    unsigned long long start, now;

    if (end == owner || *end != '-' || pid <= 0)
        return 0;
    start = strtoull(end + 1, NULL, 10);
    if (proc_start_time(pid, &now) < 0)
        return 0;
    /* The same pid started at another time is another process (pids are reused). */
    return now == start;
}

char *store_temp_name(const char *name)
{
    unsigned long n = __atomic_add_fetch(&temp_counter, 1, __ATOMIC_RELAXED);

    return util_printf(STORE_TEMP_PREFIX "%s.%lu.%s", store_owner(), n, name);
}

static int all_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int store_temp_is_stale(const char *name)
{
    const char *p, *dash, *dot;

    if (strncmp(name, STORE_TEMP_PREFIX, strlen(STORE_TEMP_PREFIX)) == 0) {
        p = name + strlen(STORE_TEMP_PREFIX);
        dash = strchr(p, '-');
        dot = dash ? strchr(dash, '.') : NULL;
        if (dash && dot && all_digits(p, (size_t)(dash - p)) &&
            all_digits(dash + 1, (size_t)(dot - dash - 1))) {
            char owner[48];

            snprintf(owner, sizeof(owner), "%.*s", (int)(dot - p), p);
            return !store_owner_alive(owner);
        }
    }
    /* Older versions: "NAME.tmp.PID.N" (local) and ".tmp.NAME.PID.N" (sftp), owned by PID. */
    if (strstr(name, STORE_TEMP_PREFIX) == NULL)
        return 0;
    const char *last = strrchr(name, '.');
    if (last == NULL || last == name || !all_digits(last + 1, strlen(last + 1)))
        return 0;
    const char *prev = last - 1;
    while (prev > name && *prev != '.')
        prev--;
    if (*prev != '.' || !all_digits(prev + 1, (size_t)(last - prev - 1)))
        return 0;
    long pid = strtol(prev + 1, NULL, 10);
    return pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

/* ---- keys and folders ---- */

char *store_key_dir(const char *key)
{
    const char *slash = strrchr(key, '/');

    return slash ? util_printf("%.*s", (int)(slash - key), key) : util_xstrdup("");
}

void store_write_touch(struct store_write *w, const char *dir)
{
    for (size_t i = 0; i < w->n_dirs; i++)
        if (strcmp(w->dirs[i], dir) == 0)
            return;
    w->dirs = util_xrealloc(w->dirs, (w->n_dirs + 1) * sizeof(char *));
    w->dirs[w->n_dirs++] = util_xstrdup(dir);
}

static void write_clear(struct store_write *w)
{
    for (size_t i = 0; i < w->n_dirs; i++)
        free(w->dirs[i]);
    free(w->dirs);
    free(w->temp);
    w->dirs = NULL;
    w->n_dirs = 0;
    w->temp = NULL;
}

/* ---- the source: sealed bytes, checked as they are read ---- */

enum source_problem { SRC_FINE = 0, SRC_OPEN, SRC_SIZE, SRC_READ, SRC_SHORT, SRC_CHANGED };

struct store_source {
    struct store *st;
    int fd;
    const char *path;
    const unsigned char *mem;
    uint64_t size, pos;
    const unsigned char *want;
    EVP_MD_CTX *sha;
    int checked, complete;
    enum source_problem problem;
    int err_no;
    int need_open;        /* the spool file is opened at the first read (source_open) */
    long long found_size; /* SRC_SIZE: what the spool file holds, -1 if unknown */
};

/* The spool file, opened when its bytes are first read: a hard-linked local copy never
 * reads them (store_source_path), and so never pays for an open and a stat. */
static int source_open_fd(struct store_source *src)
{
    struct stat sb;

    src->need_open = 0;
    src->fd = open(src->path, O_RDONLY | O_CLOEXEC);
    if (src->fd < 0) {
        src->problem = SRC_OPEN;
        src->err_no = errno;
        return -1;
    }
    if (fstat(src->fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != src->size) {
        src->problem = SRC_SIZE;
        src->found_size = fstat(src->fd, &sb) == 0 ? (long long)sb.st_size : -1;
        return -1;
    }
    return 0;
}

static void pace(struct store *st, size_t n)
{
    double start, now;

    if (st == NULL || st->rate <= 0)
        return;
    pthread_mutex_lock(&st->lock);
    now = mono_s();
    /* Idle time is not saved up: a pause does not buy a burst (50 ms of slack, for the
     * time between two reads). */
    if (st->next_send < now - 0.05)
        st->next_send = now - 0.05;
    start = st->next_send;
    st->next_send += (double)n / st->rate;
    pthread_mutex_unlock(&st->lock);
    if (start > now) {
        double wait = start - now;
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
}

static int source_check_end(struct store_source *src)
{
    unsigned char got[32];
    unsigned int len = sizeof(got);

    if (src->checked)
        return src->complete ? 0 : -1;
    src->checked = 1;
    if (EVP_DigestFinal_ex(src->sha, got, &len) != 1 || memcmp(got, src->want, 32) != 0) {
        src->problem = SRC_CHANGED;
        return -1;
    }
    src->complete = 1;
    return 0;
}

ssize_t store_source_read(struct store_source *src, void *buf, size_t len)
{
    uint64_t left = src->size - src->pos;
    ssize_t n;

    if (src->problem != SRC_FINE || (src->need_open && source_open_fd(src) < 0))
        return -1;
    if (left == 0)
        return source_check_end(src) < 0 ? -1 : 0;
    if (len > left)
        len = (size_t)left;
    if (src->mem) {
        memcpy(buf, src->mem + src->pos, len);
        n = (ssize_t)len;
    } else {
        do
            n = pread(src->fd, buf, len, (off_t)src->pos);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            src->problem = SRC_READ;
            src->err_no = errno;
            return -1;
        }
        if (n == 0) {
            src->problem = SRC_SHORT;
            return -1;
        }
    }
    EVP_DigestUpdate(src->sha, buf, (size_t)n);
    src->pos += (uint64_t)n;
    /* Checked before the last bytes are handed over: a changed file is never committed. */
    if (src->pos == src->size && source_check_end(src) < 0)
        return -1;
    pace(src->st, (size_t)n);
    return n;
}

int store_source_rewind(struct store_source *src)
{
    if (EVP_DigestInit_ex(src->sha, EVP_sha256(), NULL) != 1)
        return -1;
    src->pos = 0;
    src->checked = src->complete = 0;
    src->problem = SRC_FINE;
    src->need_open = src->fd < 0 && src->mem == NULL; /* opening failed: tried again */
    return 0;
}

uint64_t store_source_size(const struct store_source *src)
{
    return src->size;
}

const char *store_source_path(const struct store_source *src)
{
    return src->mem ? NULL : src->path;
}

int store_source_complete(const struct store_source *src)
{
    return src->complete;
}

/* The source of p: its spool file (opened at the first read) or the bytes in mem. 0, or -1
 * with an error in p. */
static int source_open(struct store *st, struct store_source *src, struct dest_put *p,
                       const unsigned char *mem)
{
    memset(src, 0, sizeof(*src));
    src->st = st;
    src->fd = -1;
    src->size = p->stored_size;
    src->want = p->stored_sha256;
    src->mem = mem;
    src->path = p->spool_path;
    src->need_open = mem == NULL;
    src->sha = EVP_MD_CTX_new();
    if (src->sha == NULL || EVP_DigestInit_ex(src->sha, EVP_sha256(), NULL) != 1) {
        put_fail(p, DEST_ERR_TRANSIENT, "destination %s: out of memory", st->d->name);
        return -1;
    }
    return 0;
}

static void source_close(struct store_source *src)
{
    if (src->fd >= 0)
        close(src->fd);
    src->fd = -1;
    EVP_MD_CTX_free(src->sha);
    src->sha = NULL;
}

/* A backend failed while reading the source: say what was wrong with the source. */
static void source_explain(struct store *st, struct store_source *src, struct dest_put *p)
{
    switch (src->problem) {
    case SRC_FINE:
        return;
    case SRC_OPEN:
        put_fail(p, DEST_ERR_SOURCE, "destination %s: cannot open spool file %s: %s", st->d->name,
                 p->spool_path, strerror(src->err_no));
        return;
    case SRC_SIZE:
        put_fail(p, DEST_ERR_SOURCE,
                 "destination %s: spool file %s has %lld bytes, not the %" PRIu64
                 " that were sealed: it is sealed again",
                 st->d->name, p->spool_path, src->found_size, p->stored_size);
        return;
    case SRC_READ:
        put_fail(p, DEST_ERR_SOURCE, "destination %s: cannot read spool file %s: %s", st->d->name,
                 p->spool_path, strerror(src->err_no));
        return;
    case SRC_SHORT:
        put_fail(p, DEST_ERR_SOURCE,
                 "destination %s: spool file %s ended after %" PRIu64 " of %" PRIu64
                 " bytes: it is sealed again",
                 st->d->name, p->spool_path, src->pos, src->size);
        return;
    case SRC_CHANGED:
        put_fail(p, DEST_ERR_SOURCE,
                 "destination %s: spool file %s is not what was sealed (its SHA-256 differs): "
                 "it is sealed again; nothing was stored",
                 st->d->name, p->spool_path);
        return;
    }
}

/* ---- verification: the one rule ---- */

struct hash_sink {
    EVP_MD_CTX *ctx;
    uint64_t got;
};

static int hash_sink(void *arg, const void *buf, size_t len)
{
    struct hash_sink *h = arg;

    EVP_DigestUpdate(h->ctx, buf, len);
    h->got += len;
    return 0;
}

struct compare_sink {
    int fd;
    uint64_t off, got;
    unsigned char *buf;
    int differs;
};

static int compare_sink(void *arg, const void *data, size_t len)
{
    struct compare_sink *c = arg;

    while (len > 0) {
        size_t n = len > STORE_BUF ? STORE_BUF : len;
        ssize_t r = pread(c->fd, c->buf, n, (off_t)(c->off + c->got));

        if (r != (ssize_t)n || memcmp(c->buf, data, n) != 0) {
            c->differs = 1;
            return -1;
        }
        c->got += n;
        data = (const unsigned char *)data + n;
        len -= n;
    }
    return 0;
}

/* An object of this size is read back whole (else in samples compared with the spool). */
static int read_back_whole(const struct store *st, uint64_t size, const unsigned char *mem)
{
    return st->readback_full == 0 || size <= st->readback_full || mem != NULL ||
           size <= (uint64_t)STORE_SAMPLE_LEN * (STORE_SAMPLES + 2);
}

/* verify_object through the driver's read_whole: the size and the bytes from one open. */
static int verify_whole(struct store *st, struct dest_put *p, int *damaged, struct store_err *e)
{
    struct dest *d = st->d;
    struct hash_sink h = {EVP_MD_CTX_new(), 0};
    unsigned char md[32];
    unsigned int len = 32;
    uint64_t size = 0;
    int rc;

    if (h.ctx == NULL || EVP_DigestInit_ex(h.ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h.ctx);
        return store_fail(e, DEST_ERR_TRANSIENT, "out of memory");
    }
    rc = st->drv->read_whole(d, p->remote_key, p->stored_size, hash_sink, &h, &size, e);
    if (rc == 1 && size == p->stored_size)
        EVP_DigestFinal_ex(h.ctx, md, &len);
    EVP_MD_CTX_free(h.ctx);
    if (rc < 0) {
        cst_err_wrap(&e->err, "destination %s: cannot read %s back to verify it", d->name,
                     p->remote_key);
        return -1;
    }
    *damaged = 1;
    if (rc == 0)
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: verification of %s failed: it is not there", d->name,
                          p->remote_key);
    if (size != p->stored_size)
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: verification of %s failed: it holds %" PRIu64
                          " bytes, %" PRIu64 " were sealed",
                          d->name, p->remote_key, size, p->stored_size);
    if (h.got != size || memcmp(md, p->stored_sha256, 32) != 0)
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: verification of %s failed: read back, its "
                          "SHA-256 differs from what was sealed",
                          d->name, p->remote_key);
    *damaged = 0;
    return 0;
}

/*
 * Is the object under p->remote_key exactly what was sealed? 0 yes; -1 with e, and
 * *damaged = 1 when it is there but differs (or is missing), 0 when it could not be read.
 */
static int verify_object(struct store *st, struct dest_put *p, const unsigned char *mem,
                         int *damaged, struct store_err *e)
{
    const struct store_driver *drv = st->drv;
    struct dest *d = st->d;
    uint64_t size = 0;
    int rc;

    *damaged = 0;
    e->kind = DEST_ERR_TRANSIENT;
    if (drv->read_whole && read_back_whole(st, p->stored_size, mem))
        return verify_whole(st, p, damaged, e);
    rc = drv->stat(d, p->remote_key, &size, e);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        *damaged = 1;
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: verification of %s failed: it is not there", d->name,
                          p->remote_key);
    }
    if (size != p->stored_size) {
        *damaged = 1;
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: verification of %s failed: it holds %" PRIu64
                          " bytes, %" PRIu64 " were sealed",
                          d->name, p->remote_key, size, p->stored_size);
    }
    if (read_back_whole(st, size, mem)) {
        struct hash_sink h = {EVP_MD_CTX_new(), 0};
        unsigned char md[32];
        unsigned int len = 32;

        if (h.ctx == NULL || EVP_DigestInit_ex(h.ctx, EVP_sha256(), NULL) != 1) {
            EVP_MD_CTX_free(h.ctx);
            return store_fail(e, DEST_ERR_TRANSIENT, "out of memory");
        }
        rc = drv->read(d, p->remote_key, 0, size, hash_sink, &h, e);
        if (rc == 0)
            EVP_DigestFinal_ex(h.ctx, md, &len);
        EVP_MD_CTX_free(h.ctx);
        if (rc < 0) {
            cst_err_wrap(&e->err, "destination %s: cannot read %s back to verify it", d->name,
                         p->remote_key);
            return -1;
        }
        if (h.got != size || memcmp(md, p->stored_sha256, 32) != 0) {
            *damaged = 1;
            return store_fail(e, DEST_ERR_TRANSIENT,
                              "destination %s: verification of %s failed: read back, its "
                              "SHA-256 differs from what was sealed",
                              d->name, p->remote_key);
        }
        return 0;
    }
    /* Large: sampled ranges (the first, the last, and random ones) against the spool. */
    struct compare_sink c = {.buf = util_xmalloc(STORE_BUF)};

    c.fd = open(p->spool_path, O_RDONLY | O_CLOEXEC);
    if (c.fd < 0) {
        free(c.buf);
        return store_fail(e, DEST_ERR_SOURCE, "destination %s: cannot open spool file %s: %s",
                          d->name, p->spool_path, strerror(errno));
    }
    rc = 0;
    for (int i = 0; i < STORE_SAMPLES + 2 && rc == 0; i++) {
        uint64_t span = size - STORE_SAMPLE_LEN;

        if (i == 0)
            c.off = 0;
        else if (i == 1)
            c.off = span;
        else
            c.off = ((uint64_t)arc4random() << 32 | arc4random()) % (span + 1);
        c.got = 0;
        rc = drv->read(d, p->remote_key, c.off, STORE_SAMPLE_LEN, compare_sink, &c, e);
        if (rc == 0 && c.got != STORE_SAMPLE_LEN)
            c.differs = 1;
        if (c.differs)
            rc = -1;
    }
    close(c.fd);
    free(c.buf);
    if (c.differs) {
        *damaged = 1;
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: verification of %s failed: bytes %" PRIu64 " to %" PRIu64
                          " read back differ from what was sealed",
                          d->name, p->remote_key, c.off, c.off + STORE_SAMPLE_LEN);
    }
    if (rc < 0)
        cst_err_wrap(&e->err, "destination %s: cannot read %s back to verify it", d->name,
                     p->remote_key);
    return rc;
}

/* A copy did not verify: was the spool file it came from already wrong? */
static int spool_is_wrong(const struct dest_put *p)
{
    unsigned char buf[1 << 16], md[32];
    unsigned int len = 32;
    EVP_MD_CTX *ctx;
    uint64_t total = 0;
    int fd, wrong = 0;

    if (p->spool_path == NULL || (fd = open(p->spool_path, O_RDONLY | O_CLOEXEC)) < 0)
        return 1;
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (;;) {
        ssize_t n = util_read_full(fd, buf, sizeof(buf));

        if (n < 0)
            wrong = 1;
        if (n <= 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    close(fd);
    return wrong || total != p->stored_size || memcmp(md, p->stored_sha256, 32) != 0;
}

/* ---- one object: write (and settle), verify ---- */

enum item_state { ITEM_PENDING = 0, ITEM_WRITTEN, ITEM_VERIFIED, ITEM_FAILED };

struct batch;

struct item {
    struct work work;
    struct batch *b;
    struct store *st;
    struct store_write w;
    struct store_source src;
    const unsigned char *mem; /* bytes from memory (marker, probe) instead of a spool file */
    enum item_state state;
};

static int stopping(struct store *st)
{
    int s;

    pthread_mutex_lock(&st->lock);
    s = st->stopping;
    pthread_mutex_unlock(&st->lock);
    return s;
}

/* Blocking: write, and settle an object that was already there. Sets it->state. */
static void item_write(struct item *it)
{
    struct store *st = it->st;
    struct dest *d = st->d;
    struct dest_put *p = it->w.put;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    int damaged;

    it->state = ITEM_FAILED;
    if (stopping(st)) {
        put_fail(p, DEST_ERR_TRANSIENT, "destination %s: shutting down", d->name);
        return;
    }
    if (st->drv->write == NULL) {
        put_fail(p, DEST_ERR_CONFIG, "destination %s: uploads need the agent's event loop",
                 d->name);
        return;
    }
    if (source_open(st, &it->src, p, it->mem) < 0)
        goto out;
    it->w.src = &it->src;
    p->kind = DEST_OK;
    p->error[0] = '\0';
    if (st->drv->write(d, &it->w) < 0) {
        if (it->src.problem != SRC_FINE)
            source_explain(st, &it->src, p);
        else if (p->kind == DEST_OK)
            put_fail(p, DEST_ERR_TRANSIENT, "destination %s: cannot store %s", d->name,
                     p->remote_key);
        goto out;
    }
    if (!it->w.exists) {
        it->state = ITEM_WRITTEN;
        goto out;
    }
    /* The name is taken (content-addressed: a copy from an earlier attempt): keep it if it
     * is exactly this object; replace it only if it is damaged. */
    if (verify_object(st, p, it->mem, &damaged, &e) == 0) {
        if (st->drv->settle(d, &it->w, 0, &e) < 0)
            log_warn("%s", e.err.msg); /* a temporary file left: start-up removes it */
        log_debug("object already at the destination, verified dest=%s key=%s", d->name,
                  p->remote_key);
        it->state = ITEM_VERIFIED;
        goto out;
    }
    if (!damaged) {
        put_fail(p, e.kind, "%s", e.err.msg);
        if (st->drv->settle(d, &it->w, 0, &e) < 0)
            log_warn("%s", e.err.msg);
        goto out;
    }
    log_warn("replacing a damaged copy dest=%s key=%s: %s", d->name, p->remote_key, e.err.msg);
    if (st->drv->settle(d, &it->w, 1, &e) < 0) {
        put_fail(p, e.kind, "%s", e.err.msg);
        goto out;
    }
    it->state = ITEM_WRITTEN;
out:
    source_close(&it->src);
}

/* Blocking: the one rule. Sets it->state. */
static void item_verify(struct item *it)
{
    struct store *st = it->st;
    struct dest_put *p = it->w.put;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    int damaged;

    if ((st->drv->features & STORE_FEAT_SERVER_CHECKS_HASH) && !it->w.exists) {
        it->state = ITEM_VERIFIED;
        return;
    }
    if (stopping(st)) {
        put_fail(p, DEST_ERR_TRANSIENT, "destination %s: shutting down", st->d->name);
        it->state = ITEM_FAILED;
        return;
    }
    if (verify_object(st, p, it->mem, &damaged, &e) == 0) {
        it->state = ITEM_VERIFIED;
        return;
    }
    it->state = ITEM_FAILED;
    /* The backend got what the source gave it: was the spool file already wrong? */
    if (damaged && it->mem == NULL && spool_is_wrong(p))
        put_fail(p, DEST_ERR_SOURCE, "%s; the spool file itself is not what was sealed", e.err.msg);
    else
        put_fail(p, e.kind, "%s", e.err.msg);
}

/* ---- one object: what its plan asks for (class, retention) ---- */

static int wants_class(const struct store *st, const struct dest_put *p)
{
    return st->drv->describe && p->storage_class && p->storage_class[0];
}

static int wants_lock(const struct store *st, const struct dest_put *p)
{
    return st->lock_mode && p->retain_until > 0;
}

/* The retention asked for shows: the mode, and a date no earlier (S3 keeps whole seconds). */
static int lock_shows(const struct store *st, const struct dest_put *p, const struct dest_stat *ds)
{
    return strcasecmp(ds->lock_mode, st->lock_mode) == 0 && ds->retain_until > 0 &&
           ds->retain_until >= p->retain_until - p->retain_until % 1000;
}

/*
 * Blocking: the stored version shows the class and the retention asked for; a retention
 * that did not come with the upload (RGW drops lock headers on multipart uploads) is set on
 * that version once and read back. Only a version that shows both is verified.
 */
static void item_plan(struct item *it)
{
    struct store *st = it->st;
    struct dest *d = st->d;
    struct dest_put *p = it->w.put;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    struct dest_stat ds;
    char want[32], got[32];
    int lock = wants_lock(st, p), set = 0, rc;

    if (!wants_class(st, p) && !lock)
        return;
    it->state = ITEM_FAILED;
    if (stopping(st)) {
        put_fail(p, DEST_ERR_TRANSIENT, "destination %s: shutting down", d->name);
        return;
    }
    if (st->drv->describe == NULL || (lock && st->drv->set_retention == NULL)) {
        put_fail(p, DEST_ERR_CONFIG, "destination %s: cannot check the storage class or lock of %s",
                 d->name, p->remote_key);
        return;
    }
    for (;;) {
        memset(&ds, 0, sizeof(ds));
        rc = st->drv->describe(d, p->remote_key, p->version_id, &ds, &e);
        if (rc < 0) {
            put_fail(p, e.kind, "%s", e.err.msg);
            return;
        }
        if (rc == 0 || ds.size != p->stored_size) {
            put_fail(p, DEST_ERR_TRANSIENT,
                     "destination %s: %s %s after it was stored (version %s)", d->name,
                     p->remote_key, rc == 0 ? "is not there" : "has another size",
                     p->version_id[0] ? p->version_id : "latest");
            return;
        }
        /* An unversioned commit: the version is what the store names now. */
        if (p->version_id[0] == '\0')
            snprintf(p->version_id, sizeof(p->version_id), "%s", ds.version_id);
        if (wants_class(st, p) && strcmp(ds.storage_class, p->storage_class) != 0) {
            put_fail(p, DEST_ERR_CONFIG,
                     "destination %s: %s landed in storage class %s, not %s: check that the "
                     "store offers that class for this bucket",
                     d->name, p->remote_key, ds.storage_class[0] ? ds.storage_class : "(none)",
                     p->storage_class);
            return;
        }
        if (!lock || lock_shows(st, p, &ds))
            break;
        util_format_ms(p->retain_until, want, sizeof(want));
        if (set) {
            if (ds.retain_until > 0)
                util_format_ms(ds.retain_until, got, sizeof(got));
            put_fail(p, DEST_ERR_CONFIG,
                     "destination %s: %s is not locked after setting its retention: version %s "
                     "shows mode '%s' until %s, not %s until %s",
                     d->name, p->remote_key, p->version_id[0] ? p->version_id : "latest",
                     ds.lock_mode, ds.retain_until > 0 ? got : "(none)", st->lock_mode, want);
            return;
        }
        log_info("setting the retention on the stored version dest=%s key=%s version=%s "
                 "until=%s",
                 d->name, p->remote_key, p->version_id[0] ? p->version_id : "-", want);
        if (st->drv->set_retention(d, p->remote_key, p->version_id, p->retain_until, &e) < 0) {
            put_fail(p, e.kind, "%s", e.err.msg);
            return;
        }
        set = 1;
    }
    if (lock)
        p->retained_until = ds.retain_until;
    it->state = ITEM_VERIFIED;
}

/* ---- the marker ---- */

static char *marker_text(struct store *st)
{
    char when[32];

    util_format_ms(util_now_ms(), when, sizeof(when));
    return util_printf("custodian destination marker: this folder holds custodian's encrypted "
                       "copies. Do not delete this file.\n"
                       "install %s\n"
                       "destination %s\n"
                       "marked %s\n",
                       st->install_id ? st->install_id : "-", st->d->name, when);
}

/* The value of "key value" line key in text, into out. */
static int marker_field(const char *text, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);

    const char *line = text;

    while (line && *line) {
        const char *end = strchr(line, '\n');

        if (strncmp(line, key, klen) == 0 && line[klen] == ' ') {
            const char *v = line + klen + 1;
            size_t n = end ? (size_t)(end - v) : strlen(v);

            snprintf(out, outlen, "%.*s", (int)n, v);
            return 0;
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

struct mem_sink {
    char buf[STORE_MARKER_MAX + 1];
    size_t len;
};

static int mem_sink(void *arg, const void *data, size_t len)
{
    struct mem_sink *m = arg;

    if (m->len + len > STORE_MARKER_MAX)
        return -1;
    memcpy(m->buf + m->len, data, len);
    m->len += len;
    return 0;
}

static int write_blocking(struct store *st, struct dest_put *p, const unsigned char *mem);

/* 1 marker present and ours, 0 absent, -1 (e: somebody else's, or unreadable). */
static int marker_check(struct store *st, struct store_err *e)
{
    struct dest *d = st->d;
    struct mem_sink m;
    uint64_t size = 0;
    char install[128], name[256];
    int rc = st->drv->stat(d, STORE_MARKER_KEY, &size, e);

    if (rc <= 0)
        return rc;
    m.len = 0;
    if (size > STORE_MARKER_MAX ||
        st->drv->read(d, STORE_MARKER_KEY, 0, size, mem_sink, &m, e) < 0) {
        if (size > STORE_MARKER_MAX)
            store_fail(e, DEST_ERR_CONFIG, "destination %s: %s/%s is not a custodian marker",
                       d->name, st->where, STORE_MARKER_KEY);
        return -1;
    }
    m.buf[m.len] = '\0';
    if (marker_field(m.buf, "destination", name, sizeof(name)) < 0 ||
        marker_field(m.buf, "install", install, sizeof(install)) < 0)
        return store_fail(e, DEST_ERR_CONFIG,
                          "destination %s: %s/%s is not a custodian marker: copies wait; remove "
                          "it if the folder is meant for custodian",
                          d->name, st->where, STORE_MARKER_KEY);
    if (st->install_id && strcmp(install, "-") != 0 && strcmp(install, st->install_id) != 0)
        return store_fail(e, DEST_ERR_CONFIG,
                          "destination %s: %s is marked as a destination of another install "
                          "(%s, not this one, %s): copies wait; point this destination at its "
                          "own folder",
                          d->name, st->where, install, st->install_id);
    if (strcmp(name, d->name) != 0)
        return store_fail(e, DEST_ERR_CONFIG,
                          "destination %s: %s is marked as destination '%s' of this install: "
                          "copies wait; if the destination was renamed, change the line "
                          "'destination %s' of %s/%s to 'destination %s'",
                          d->name, st->where, name, name, st->where, STORE_MARKER_KEY, d->name);
    return 1;
}

static int marker_write(struct store *st, struct store_err *e)
{
    char *text = marker_text(st);
    struct dest_put p;
    unsigned int len = 32;
    int rc;

    memset(&p, 0, sizeof(p));
    p.remote_key = STORE_MARKER_KEY;
    p.stored_size = strlen(text);
    EVP_Digest(text, strlen(text), p.stored_sha256, &len, EVP_sha256(), NULL);
    rc = write_blocking(st, &p, (const unsigned char *)text);
    free(text);
    if (rc < 0)
        return store_fail(e, p.kind, "destination %s: cannot mark %s: %s", st->d->name, st->where,
                          p.error);
    return 0;
}

/* The root there, and its marker: 1 marked (and ours), 0 there without a marker (root
 * says whether empty), -1 with e (not there, or another's). */
static int root_marked(struct store *st, int *root, struct store_err *e)
{
    int rc;

    *root = st->drv->root(st->d, e);
    if (*root < 0)
        return -1;
    if (*root == STORE_ROOT_MISSING)
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: %s does not exist (not mounted?): copies wait, and "
                          "nothing is created there",
                          st->d->name, st->where);
    rc = marker_check(st, e);
    if (rc == 1) {
        pthread_mutex_lock(&st->lock);
        st->seen_marker = 1;
        pthread_mutex_unlock(&st->lock);
    }
    return rc;
}

/*
 * Is the root there and ours? Marks it when this process may (docs/destinations.md,
 * "Destinations that are not there"). 0 ready, -1 with e.
 */
static int root_ready(struct store *st, int allow_mark, struct store_err *e)
{
    struct dest *d = st->d;
    int root, rc, in_use, may_mark, known;
    char *recorded = NULL;

    if (!(st->drv->features & STORE_FEAT_MARKER))
        return 0;
    e->kind = DEST_ERR_TRANSIENT;
    rc = root_marked(st, &root, e);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    /* No marker: decided one batch at a time, with the root and the marker read again.
     * Another batch may be marking the folder right now, and while it writes the marker
     * the folder holds its temporary file, unmarked: seen from here without the lock,
     * that was "not empty and carries no marker", a configuration error and a minute's
     * wait on a new install's first files. */
    pthread_mutex_lock(&st->mark_lock);
    rc = root_marked(st, &root, e);
    if (rc != 0) {
        pthread_mutex_unlock(&st->mark_lock);
        return rc < 0 ? -1 : 0;
    }
    pthread_mutex_lock(&st->lock);
    known = st->usage_known;
    /* Marked once in this process's life and now without a marker: the folder was
     * unmounted (the catalog may not have recorded a copy there yet). Never mark it again. */
    in_use = known && !st->seen_marker ? st->in_use : 1;
    may_mark = allow_mark && st->usage_known && st->may_mark;
    if (st->recorded_key)
        recorded = util_xstrdup(st->recorded_key);
    pthread_mutex_unlock(&st->lock);
    rc = -1;
    if (may_mark && ((!in_use && root == STORE_ROOT_EMPTY) || recorded)) {
        uint64_t size;
        int there = recorded ? st->drv->stat(d, recorded, &size, e) : 0;

        if (there < 0)
            goto out;
        if (!recorded || there == 1) {
            rc = marker_write(st, e);
            if (rc == 0) {
                pthread_mutex_lock(&st->lock);
                st->seen_marker = 1;
                pthread_mutex_unlock(&st->lock);
                log_info("%s destination %s dest=%s",
                         recorded ? "marked (it holds recorded copies)" : "marked (first use)",
                         st->where, d->name);
            }
            rc = rc < 0 ? -1 : 0;
            goto out;
        }
    }
    if (!in_use && root == STORE_ROOT_EMPTY)
        store_fail(e, DEST_ERR_TRANSIENT,
                   "destination %s: %s is not marked yet: the agent marks this empty folder "
                   "when it first ships to it",
                   d->name, st->where);
    else if (root == STORE_ROOT_EMPTY && !known)
        store_fail(e, DEST_ERR_TRANSIENT,
                   "destination %s: %s is empty and not marked: not mounted, or not used yet "
                   "(the agent marks an empty folder when it first ships to it); copies wait",
                   d->name, st->where);
    else if (!in_use)
        store_fail(e, DEST_ERR_CONFIG,
                   "destination %s: %s is not empty and carries no custodian marker "
                   "(%s): custodian starts only on an empty folder; point the destination at "
                   "an empty folder",
                   d->name, st->where, STORE_MARKER_KEY);
    else
        store_fail(e, DEST_ERR_TRANSIENT,
                   "destination %s: %s carries no custodian marker (%s) although copies are "
                   "recorded there: not mounted, or another folder; copies wait, and nothing "
                   "is written there",
                   d->name, st->where, STORE_MARKER_KEY);
out:
    pthread_mutex_unlock(&st->mark_lock);
    free(recorded);
    return rc;
}

/* ---- a batch: phases on the loop, work on the destination's threads ---- */

enum phase { PHASE_ROOT, PHASE_WRITE, PHASE_SYNC, PHASE_VERIFY, PHASE_PLAN };

struct dir_job {
    struct work work;
    struct batch *b;
    char *dir;
    int failed;
    struct store_err e;
};

/* One of the pool's threads working through a phase's objects (run_todo). */
struct runner {
    struct work work;
    struct batch *b;
};

struct batch {
    struct work root_work;
    struct store *st;
    struct dest_put *puts;
    size_t n;
    dest_done_fn done;
    void *arg;
    struct item *items;
    enum phase phase;
    size_t left;
    int root_failed;
    struct store_err root_err;
    struct dir_job *dirs;
    size_t n_dirs;
    /* The blocking work of the current phase, taken in turn by the runners. */
    struct work **todo;
    size_t n_todo;
    atomic_size_t next_todo;
    void (*todo_run)(struct work *w);
    struct runner *runners;
    struct batch *prev, *next;
};

static void phase_write(struct batch *b);
static void phase_sync(struct batch *b);
static void phase_verify(struct batch *b);
static void phase_plan(struct batch *b);
static void batch_finish(struct batch *b);

static void batch_free(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        write_clear(&b->items[i].w);
    for (size_t i = 0; i < b->n_dirs; i++)
        free(b->dirs[i].dir);
    free(b->dirs);
    free(b->todo);
    free(b->runners);
    free(b->items);
    free(b);
}

static void phase_step(struct batch *b)
{
    if (--b->left > 0)
        return;
    switch (b->phase) {
    case PHASE_ROOT:
        if (b->root_failed) {
            for (size_t i = 0; i < b->n; i++) {
                put_fail(&b->puts[i], b->root_err.kind, "%s", b->root_err.err.msg);
                b->items[i].state = ITEM_FAILED;
            }
            batch_finish(b);
        } else {
            phase_write(b);
        }
        return;
    case PHASE_WRITE:
        phase_sync(b);
        return;
    case PHASE_SYNC:
        for (size_t k = 0; k < b->n_dirs; k++) {
            if (!b->dirs[k].failed)
                continue;
            for (size_t i = 0; i < b->n; i++) {
                struct item *it = &b->items[i];

                if (it->state != ITEM_WRITTEN)
                    continue;
                for (size_t j = 0; j < it->w.n_dirs; j++)
                    if (strcmp(it->w.dirs[j], b->dirs[k].dir) == 0) {
                        put_fail(it->w.put, b->dirs[k].e.kind, "%s", b->dirs[k].e.err.msg);
                        it->state = ITEM_FAILED;
                        break;
                    }
            }
        }
        phase_verify(b);
        return;
    case PHASE_VERIFY:
        phase_plan(b);
        return;
    case PHASE_PLAN:
        batch_finish(b);
        return;
    }
}

static void root_run(struct work *w)
{
    struct batch *b = (struct batch *)w;

    b->root_failed = root_ready(b->st, 1, &b->root_err) < 0;
}

static void root_done(struct work *w)
{
    phase_step((struct batch *)w);
}

static void item_write_run(struct work *w)
{
    item_write((struct item *)w);
}

static void item_verify_run(struct work *w)
{
    item_verify((struct item *)w);
}

static void item_plan_run(struct work *w)
{
    item_plan((struct item *)w);
}

static void item_done(struct work *w)
{
    phase_step(((struct item *)w)->b);
}

static void dir_run(struct work *w)
{
    struct dir_job *j = (struct dir_job *)w;

    j->e.kind = DEST_ERR_TRANSIENT;
    if (stopping(j->b->st))
        j->failed = store_fail(&j->e, DEST_ERR_TRANSIENT, "destination %s: shutting down",
                               j->b->st->d->name) < 0;
    else
        j->failed = j->b->st->drv->sync_dir(j->b->st->d, j->dir, &j->e) < 0;
}

static void dir_done(struct work *w)
{
    phase_step(((struct dir_job *)w)->b);
}

void store_write_done(struct store_write *w)
{
    struct item *it = w->core;

    it->state = w->put->kind == DEST_OK ? ITEM_WRITTEN : ITEM_FAILED;
    if (it->b)
        phase_step(it->b);
}

static void submit(struct store *st, struct work *w, void (*run)(struct work *),
                   void (*done)(struct work *))
{
    w->run = run;
    w->done = done;
    if (st->pool) {
        workpool_submit(st->pool, w);
    } else {
        run(w);
        done(w);
    }
}

static void runner_run(struct work *w)
{
    struct batch *b = ((struct runner *)w)->b;
    size_t i;

    while ((i = atomic_fetch_add(&b->next_todo, 1)) < b->n_todo)
        b->todo_run(b->todo[i]);
}

static void runner_done(struct work *w)
{
    phase_step(((struct runner *)w)->b);
}

/* This phase's blocking work for w: with a pool, queued for the runners (run_todo); without,
 * run at once. The caller counts it in b->left either way. */
static void add_todo(struct batch *b, struct work *w, void (*run)(struct work *),
                     void (*done)(struct work *))
{
    if (b->st->pool == NULL) {
        b->left++;
        submit(b->st, w, run, done);
        return;
    }
    if (b->todo == NULL)
        b->todo = util_xcalloc(b->n > b->n_dirs ? b->n : b->n_dirs, sizeof(*b->todo));
    b->todo_run = run;
    b->todo[b->n_todo++] = w;
}

/*
 * The queued work, on as many of the pool's threads as it can use, each taking the next
 * object as it finishes one: as many run at once as with one job per object, but with one
 * hand-off to a thread and one back to the loop per thread instead of per object (two
 * context switches each, for a small object as much as its own work).
 */
static void run_todo(struct batch *b)
{
    struct store *st = b->st;
    size_t k = b->n_todo < st->threads ? b->n_todo : st->threads;

    if (k == 0)
        return;
    atomic_store(&b->next_todo, 0);
    if (b->runners == NULL)
        b->runners = util_xcalloc(st->threads, sizeof(*b->runners));
    b->left += k;
    for (size_t r = 0; r < k; r++) {
        b->runners[r].b = b;
        submit(st, &b->runners[r].work, runner_run, runner_done);
    }
}

static void phase_write(struct batch *b)
{
    struct store *st = b->st;

    b->phase = PHASE_WRITE;
    b->left = 1; /* held until every write has started */
    b->n_todo = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];

        if (it->w.put->in_place) {
            /* Nothing to send: the plan phase checks (and extends) the stored version. */
            it->state = wants_lock(st, it->w.put) ? ITEM_VERIFIED : ITEM_FAILED;
            if (it->state == ITEM_FAILED)
                put_fail(it->w.put, DEST_ERR_CONFIG,
                         "destination %s: %s has no Object Lock retention to extend", st->d->name,
                         it->w.put->remote_key);
            continue;
        }
        if (st->drv->write_async && st->loop) {
            it->state = ITEM_PENDING;
            it->w.put->kind = DEST_OK;
            it->w.put->error[0] = '\0';
            b->left++;
            st->drv->write_async(st->d, &it->w);
        } else {
            add_todo(b, &it->work, item_write_run, item_done);
        }
    }
    run_todo(b);
    phase_step(b);
}

static void phase_sync(struct batch *b)
{
    struct store *st = b->st;

    b->phase = PHASE_SYNC;
    if (st->drv->sync_dir) {
        for (size_t i = 0; i < b->n; i++) {
            struct item *it = &b->items[i];

            if (it->state != ITEM_WRITTEN)
                continue;
            for (size_t j = 0; j < it->w.n_dirs; j++) {
                size_t k;

                for (k = 0; k < b->n_dirs; k++)
                    if (strcmp(b->dirs[k].dir, it->w.dirs[j]) == 0)
                        break;
                if (k < b->n_dirs)
                    continue;
                b->dirs = util_xrealloc(b->dirs, (b->n_dirs + 1) * sizeof(*b->dirs));
                memset(&b->dirs[b->n_dirs], 0, sizeof(b->dirs[0]));
                b->dirs[b->n_dirs].b = b;
                b->dirs[b->n_dirs].dir = util_xstrdup(it->w.dirs[j]);
                b->n_dirs++;
            }
        }
    }
    /* Each folder once for the whole batch; in parallel, they share journal commits. */
    b->left = 1;
    b->n_todo = 0;
    if (b->todo && b->n_dirs > b->n) {
        free(b->todo); /* sized for the items: more folders than objects (nested keys) */
        b->todo = NULL;
    }
    for (size_t k = 0; k < b->n_dirs; k++)
        add_todo(b, &b->dirs[k].work, dir_run, dir_done);
    run_todo(b);
    phase_step(b);
}

static void phase_verify(struct batch *b)
{
    struct store *st = b->st;

    b->phase = PHASE_VERIFY;
    b->left = 1;
    b->n_todo = 0;
    for (size_t i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];

        if (it->state != ITEM_WRITTEN)
            continue;
        if ((st->drv->features & STORE_FEAT_SERVER_CHECKS_HASH) && !it->w.exists) {
            it->state = ITEM_VERIFIED; /* the server refused anything but the signed hash */
            continue;
        }
        add_todo(b, &it->work, item_verify_run, item_done);
    }
    run_todo(b);
    phase_step(b);
}

static void phase_plan(struct batch *b)
{
    struct store *st = b->st;

    b->phase = PHASE_PLAN;
    b->left = 1;
    for (size_t i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];

        if (it->state != ITEM_VERIFIED ||
            (!wants_class(st, it->w.put) && !wants_lock(st, it->w.put)))
            continue;
        b->left++;
        submit(st, &it->work, item_plan_run, item_done);
    }
    phase_step(b);
}

static void batch_finish(struct batch *b)
{
    struct store *st = b->st;

    for (size_t i = 0; i < b->n; i++) {
        struct dest_put *p = &b->puts[i];

        p->ok = b->items[i].state == ITEM_VERIFIED;
        if (p->ok) {
            p->kind = DEST_OK;
            p->error[0] = '\0';
        } else if (p->kind == DEST_OK) {
            put_fail(p, DEST_ERR_TRANSIENT, "destination %s: %s was not stored", st->d->name,
                     p->remote_key);
        }
    }
    pthread_mutex_lock(&st->lock);
    if (b->prev)
        b->prev->next = b->next;
    else if (st->batches == b)
        st->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    pthread_mutex_unlock(&st->lock);
    if (st->pool)
        ev_unref(st->loop);
    b->done(b->arg, b->puts, b->n);
    batch_free(b);
}

void store_put_batch(struct dest *d, struct dest_put *puts, size_t n, dest_done_fn done, void *arg)
{
    struct store *st = d->store;
    struct batch *b = util_xcalloc(1, sizeof(*b));

    b->st = st;
    b->puts = puts;
    b->n = n;
    b->done = done;
    b->arg = arg;
    b->items = util_xcalloc(n ? n : 1, sizeof(*b->items));
    for (size_t i = 0; i < n; i++) {
        struct item *it = &b->items[i];

        puts[i].ok = 0;
        puts[i].kind = DEST_OK;
        puts[i].error[0] = '\0';
        puts[i].version_id[0] = '\0';
        puts[i].retained_until = 0;
        it->b = b;
        it->st = st;
        it->w.put = &puts[i];
        it->w.core = it;
        it->src.fd = -1;
    }
    pthread_mutex_lock(&st->lock);
    b->next = st->batches;
    if (b->next)
        b->next->prev = b;
    st->batches = b;
    pthread_mutex_unlock(&st->lock);
    /* The pool's wake-up does not keep a loop running; a batch in flight must. */
    if (st->pool)
        ev_ref(st->loop);
    if (n == 0) {
        batch_finish(b);
        return;
    }
    b->phase = PHASE_ROOT;
    b->left = 1;
    if (st->drv->features & STORE_FEAT_MARKER)
        submit(st, &b->root_work, root_run, root_done);
    else
        phase_step(b);
}

/* The whole sequence for one object, in the caller (marker, probe). */
static int write_blocking(struct store *st, struct dest_put *p, const unsigned char *mem)
{
    struct item it;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    int rc = -1;

    memset(&it, 0, sizeof(it));
    it.st = st;
    it.mem = mem;
    it.w.put = p;
    it.w.core = &it;
    it.src.fd = -1;
    if (p->in_place && wants_lock(st, p))
        it.state = ITEM_VERIFIED;
    else if (p->in_place)
        put_fail(p, DEST_ERR_CONFIG, "destination %s: %s has no Object Lock retention to extend",
                 st->d->name, p->remote_key);
    else
        item_write(&it);
    if (it.state == ITEM_WRITTEN && st->drv->sync_dir) {
        for (size_t j = 0; j < it.w.n_dirs; j++)
            if (st->drv->sync_dir(st->d, it.w.dirs[j], &e) < 0) {
                put_fail(p, e.kind, "%s", e.err.msg);
                it.state = ITEM_FAILED;
                break;
            }
    }
    if (it.state == ITEM_WRITTEN)
        item_verify(&it);
    if (it.state == ITEM_VERIFIED)
        item_plan(&it);
    if (it.state == ITEM_VERIFIED) {
        p->ok = 1;
        rc = 0;
    }
    write_clear(&it.w);
    return rc;
}

/* ---- the blocking operations ---- */

struct fd_sink {
    int fd;
};

static int fd_sink(void *arg, const void *buf, size_t len)
{
    struct fd_sink *f = arg;

    return util_write_all(f->fd, buf, len);
}

int store_get(struct dest *d, const char *key, int out_fd, struct cst_err *err)
{
    struct store *st = d->store;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    struct fd_sink f = {out_fd};
    uint64_t size = 0;
    int rc;

    /* A folder that is not there (not mounted) or not ours says nothing about what is
     * stored: an error, never "missing". */
    if (root_ready(st, 0, &e) < 0) {
        *err = e.err;
        return -1;
    }
    if (st->drv->get)
        return st->drv->get(d, key, out_fd, err);
    rc = st->drv->stat(d, key, &size, &e);
    if (rc == 0)
        store_fail(&e, DEST_ERR_TRANSIENT, "destination %s: cannot read %s: it is not there",
                   d->name, key);
    if (rc == 1 && st->drv->read(d, key, 0, size, fd_sink, &f, &e) == 0)
        return 0;
    *err = e.err;
    return -1;
}

int store_exists(struct dest *d, const char *key, uint64_t *size, struct cst_err *err)
{
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    uint64_t sz = 0;
    int rc;

    /* Rolling verification and verify take "not there" as proof that a copy is gone: only
     * say so when the destination itself is there and is ours. */
    if (root_ready(d->store, 0, &e) < 0) {
        *err = e.err;
        return -1;
    }
    rc = d->store->drv->stat(d, key, &sz, &e);

    if (rc < 0)
        *err = e.err;
    if (rc == 1 && size)
        *size = sz;
    return rc;
}

int store_stat(struct dest *d, const char *key, struct dest_stat *st, struct cst_err *err)
{
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    int rc;

    memset(st, 0, sizeof(*st));
    if (d->store->drv->describe == NULL)
        return cst_err_set(err, "destination %s: it cannot describe its objects", d->name);
    /* Like exists: "not there" only from a destination that is there and ours. */
    if (root_ready(d->store, 0, &e) < 0) {
        *err = e.err;
        return -1;
    }
    rc = d->store->drv->describe(d, key, NULL, st, &e);
    if (rc < 0)
        *err = e.err;
    return rc;
}

int store_remove(struct dest *d, const char *key, struct cst_err *err)
{
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};

    /* "Removed" from a folder that is not there (not mounted) would be a lie. */
    if (root_ready(d->store, 0, &e) < 0) {
        *err = e.err;
        return -1;
    }
    if (d->store->drv->remove == NULL)
        return cst_err_set(err, "destination %s: removing is not supported", d->name);
    return d->store->drv->remove(d, key, err);
}

int store_list(struct dest *d, const char *prefix,
               int (*cb)(void *arg, const char *key, uint64_t size), void *arg, struct cst_err *err)
{
    if (d->store->drv->list == NULL)
        return cst_err_set(err, "destination %s: listing is not supported", d->name);
    return d->store->drv->list(d, prefix, cb, arg, err);
}

/* doctor: reach (backend), folder and marker (core), then a probe object written, read
 * back and removed through the same sequence as every copy. */
int store_probe(struct dest *d, struct dest_probe *out)
{
    struct store *st = d->store;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    unsigned char *payload = NULL, rnd[8];
    char hex[17], *key = NULL;
    struct dest_put p;
    unsigned int len = 32;
    int failed = 0;
    const size_t size = 64u << 10;

    memset(out, 0, sizeof(*out));
    if (st->drv->probe_connect && st->drv->probe_connect(d, out) < 0)
        return -1;
    if (st->drv->features & STORE_FEAT_MARKER) {
        int root = st->drv->root(d, &e);

        if (root < 0 || root == STORE_ROOT_MISSING) {
            dest_check_add(out, "folder", 0, "%s",
                           root < 0 ? e.err.msg
                                    : "does not exist (not mounted?); nothing was created: mount "
                                      "it, or create the folder (mode 0700) where it belongs");
            return -1;
        }
        dest_check_add(out, "folder", 1, "%s is there", st->where);
        if (root_ready(st, 0, &e) < 0) {
            /* Not marked yet but may be at first use: fine; anything else is not. */
            int first_use = st->usage_known && !st->in_use && root == STORE_ROOT_EMPTY;

            dest_check_add(out, "marker", first_use, "%s", e.err.msg);
            if (!first_use)
                return -1;
        } else {
            dest_check_add(out, "marker", 1, "%s/%s names this install and destination", st->where,
                           STORE_MARKER_KEY);
        }
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        rnd[i] = (unsigned char)arc4random_uniform(256);
    util_hex(rnd, sizeof(rnd), hex);
    key = util_printf("custodian-probe/%s", hex);
    payload = util_xmalloc(size);
    for (size_t i = 0; i < size; i++)
        payload[i] = (unsigned char)(rnd[i % sizeof(rnd)] ^ (i * 131u >> 3));
    memset(&p, 0, sizeof(p));
    p.remote_key = key;
    p.stored_size = size;
    EVP_Digest(payload, size, p.stored_sha256, &len, EVP_sha256(), NULL);
    if (write_blocking(st, &p, payload) < 0) {
        dest_check_add(out, "write probe", 0, "%s", p.error);
        failed = 1;
        goto out;
    }
    dest_check_add(out, "write probe", 1,
                   "wrote %zu bytes to %s (temporary name, %s, moved into "
                   "place)",
                   size, key,
                   st->drv->features & STORE_FEAT_SERVER_CHECKS_HASH ? "hash checked by the server"
                                                                     : "fsync");
    /* Read back always here, also where a commit proves the bytes: this checks reading. */
    int damaged;

    if (verify_object(st, &p, payload, &damaged, &e) < 0) {
        dest_check_add(out, "read probe", 0, "%s", e.err.msg);
        failed = 1;
    } else {
        dest_check_add(out, "read probe", 1,
                       "read back %zu bytes, SHA-256 equal to what was written", size);
    }
    if (st->drv->probe_object && st->drv->probe_object(d, key, out) < 0)
        failed = 1;
out:
    if (st->drv->remove && p.ok) {
        struct cst_err err;
        uint64_t sz;
        int there;

        /* The driver's own stat: store_exists refuses to answer for a root that is not
         * marked yet, and doctor never marks one (the agent does, at first use). */
        if (st->drv->remove(d, key, &err) < 0) {
            dest_check_add(out, "delete probe", 0, "%s", err.msg);
            failed = 1;
        } else if ((there = st->drv->stat(d, key, &sz, &e)) < 0) {
            dest_check_add(out, "delete probe", 0, "%s", e.err.msg);
            failed = 1;
        } else if (there > 0) {
            dest_check_add(out, "delete probe", 0, "%s is still there after its removal", key);
            failed = 1;
        } else {
            dest_check_add(out, "delete probe", 1, "removed %s", key);
        }
        if (st->drv->remove_dir)
            st->drv->remove_dir(d, "custodian-probe", &err);
    }
    free(payload);
    free(key);
    return failed ? -1 : 0;
}

/* ---- start-up ---- */

struct startup {
    struct work work;
    struct store *st;
};

static void startup_run(struct work *w)
{
    struct startup *s = (struct startup *)w;
    struct store *st = s->st;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    struct cst_err err;

    /* Runs even when the process is already stopping (a `ship` with nothing to do): its
     * cleanup is quick, and a stopped backend fails at once. */
    if (root_ready(st, 1, &e) < 0) {
        log_warn("%s", e.err.msg);
        return; /* no cleanup where the root is not ours */
    }
    if (st->drv->cleanup && st->drv->cleanup(st->d, &err) < 0)
        log_warn("%s", err.msg);
}

static void startup_done(struct work *w)
{
    struct startup *s = (struct startup *)w;

    s->st->startup = NULL;
    free(s);
}

void dest_startup(struct dest *d)
{
    struct store *st = d->store;
    struct startup *s = util_xcalloc(1, sizeof(*s));

    s->st = st;
    st->startup = &s->work;
    submit(st, &s->work, startup_run, startup_done);
}

void dest_set_install(struct dest *d, const char *install_id)
{
    struct store *st = d->store;

    pthread_mutex_lock(&st->lock);
    free(st->install_id);
    st->install_id = install_id ? util_xstrdup(install_id) : NULL;
    pthread_mutex_unlock(&st->lock);
}

void dest_set_usage(struct dest *d, const struct dest_usage *u)
{
    struct store *st = d->store;

    pthread_mutex_lock(&st->lock);
    st->usage_known = 1;
    st->in_use = u->in_use;
    st->may_mark = u->may_mark;
    free(st->recorded_key);
    st->recorded_key = u->recorded_key ? util_xstrdup(u->recorded_key) : NULL;
    pthread_mutex_unlock(&st->lock);
}

int dest_root_state(struct dest *d, char *out, size_t outlen)
{
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};

    if (root_ready(d->store, 0, &e) == 0) {
        snprintf(out, outlen, "ready");
        return 0;
    }
    snprintf(out, outlen, "%s", e.err.msg);
    return -1;
}

/* ---- life cycle ---- */

struct dest *store_dest_new(const struct store_params *p, const struct dest_env *env)
{
    struct dest *d = util_xcalloc(1, sizeof(*d));
    struct store *st = util_xcalloc(1, sizeof(*st));

    st->d = d;
    st->drv = p->driver;
    st->where = util_xstrdup(p->where ? p->where : p->name);
    st->readback_full = p->readback_full;
    st->lock_mode = p->lock_mode ? util_xstrdup(p->lock_mode) : NULL;
    st->rate = p->bandwidth_kbps > 0 ? (double)p->bandwidth_kbps * 125.0 : 0.0;
    pthread_mutex_init(&st->lock, NULL);
    pthread_mutex_init(&st->mark_lock, NULL);
    if (env && env->loop) {
        st->loop = env->loop;
        if (p->threads > 0) {
            st->pool = workpool_new(env->loop, p->threads);
            workpool_name(st->pool, "cst-store");
            st->threads = (size_t)p->threads;
        }
    }
    d->ops = p->ops;
    d->driver = p->driver;
    d->store = st;
    d->name = util_xstrdup(p->name);
    d->impl = p->impl;
    d->max_batch = p->max_batch;
    d->max_concurrent = p->max_concurrent;
    return d;
}

/*
 * Work still queued fails at once, blocked calls are unblocked (driver stop), the
 * threads are joined; batches whose done() never came are freed without it, as an
 * asynchronous backend's are.
 */
int dest_locks(const struct dest *d)
{
    return d->store != NULL && d->store->lock_mode != NULL;
}

int dest_set_legal_hold(struct dest *d, const char *key, int on, struct cst_err *err)
{
    struct store *st = d->store;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    struct dest_stat ds;
    int rc;

    if (!dest_locks(d) || st->drv->set_legal_hold == NULL || st->drv->describe == NULL)
        return cst_err_set(err, "destination %s: it has no Object Lock legal holds", d->name);
    memset(&ds, 0, sizeof(ds));
    rc = st->drv->describe(d, key, NULL, &ds, &e);
    if (rc == 0)
        return cst_err_set(err, "destination %s: %s is not there", d->name, key);
    if (rc > 0 && ds.legal_hold == on)
        return 0; /* already so (a hold placed again, a rerun) */
    if (rc < 0 || st->drv->set_legal_hold(d, key, ds.version_id, on, &e) < 0 ||
        (rc = st->drv->describe(d, key, ds.version_id, &ds, &e)) < 0) {
        *err = e.err;
        return -1;
    }
    if (rc == 0 || ds.legal_hold != on)
        return cst_err_set(err,
                           "destination %s: %s does not show the legal hold %s after it was set",
                           d->name, key, on ? "ON" : "OFF");
    return 0;
}

int dest_needs_thaw(struct dest *d, const char *key, struct dest_stat *st, struct cst_err *err)
{
    int rc;

    memset(st, 0, sizeof(*st));
    if (d->store == NULL || d->store->drv->thaw == NULL || d->ops->stat == NULL)
        return 0;
    rc = d->ops->stat(d, key, st, err);
    if (rc <= 0)
        return rc;
    return (strcmp(st->storage_class, "GLACIER") == 0 ||
            strcmp(st->storage_class, "DEEP_ARCHIVE") == 0) &&
           st->thaw != DEST_THAW_READY;
}

int dest_thaw(struct dest *d, const char *key, const char *tier, int days, struct cst_err *err)
{
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};

    if (d->store == NULL || d->store->drv->thaw == NULL)
        return cst_err_set(err, "destination %s cannot thaw archived objects", d->name);
    if (d->store->drv->thaw(d, key, tier, days, &e) < 0) {
        *err = e.err;
        return -1;
    }
    return 0;
}

void store_free(struct dest *d)
{
    struct store *st = d->store;

    if (st == NULL)
        return;
    pthread_mutex_lock(&st->lock);
    st->stopping = 1;
    pthread_mutex_unlock(&st->lock);
    if (st->drv->stop)
        st->drv->stop(d);
    workpool_free(st->pool);
    st->pool = NULL;
    st->drv->free(d);
    while (st->batches) {
        struct batch *b = st->batches;

        st->batches = b->next;
        batch_free(b);
    }
    if (st->startup)
        free(st->startup);
    pthread_mutex_destroy(&st->lock);
    pthread_mutex_destroy(&st->mark_lock);
    free(st->install_id);
    free(st->recorded_key);
    free(st->lock_mode);
    free(st->where);
    free(st);
    d->store = NULL;
}
