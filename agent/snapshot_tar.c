/*
 * snapshot_tar.c - the package's tar + zstd, through libarchive (see
 * snapshot_tar.h).
 *
 * libarchive converts names through the thread's locale; custodian runs in
 * the C locale, where a UTF-8 name cannot be converted (libarchive 3.6
 * then crashes in the pax writer). Every libarchive call here runs under a
 * C.UTF-8 LC_CTYPE set with uselocale() for this thread only, so nothing
 * else in the process sees another locale.
 *
 * The output is not blocked (bytes_per_block 0): the compressor's buffers
 * go to the sink as they are, without a copy into 10 KiB blocks, and the
 * last block is not padded: padding would be added after the zstd frame,
 * where `zstd -d` takes it for a second frame (bytes_in_last_block 1 says
 * so too, should blocking ever come back).
 *
 * A member read from a file is hashed on a thread of its own (the member
 * hasher) while this thread compresses the same bytes: each chunk is read
 * into one of READ_SLOTS buffers, handed to the hasher, and given to
 * libarchive; the buffer is read again only after the hasher released it.
 * Both only read a chunk once it is handed over, so one mutex over the
 * counters is all the sharing there is. A member's SHA-256 is kept as a
 * result, taken in member order with tar_hashed, so the caller can go on
 * with the next member before the hash of the last one is known.
 */
#include "snapshot_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/archive_lib.h"
#include "common/util.h"

#define TAR_BUF (1 << 20)
#define READ_SLOTS 8
#define READ_SLOT (512u << 10)
#define HASH_ITEMS 32 /* chunks handed to the hasher and not yet hashed */
/* The hasher is faster than the compressor: woken for every chunk, it would sleep again
 * after each (a context switch per file). It is woken once this many wait, or when this
 * thread is about to wait for it. */
#define HASH_WAKE 4

struct hash_item {
    int slot;   /* the READ_SLOTS buffer, or -1 (a member end without bytes) */
    size_t len; /* bytes of the chunk */
    int last;   /* the member's last chunk: its hash is final after it */
};

struct hashed {
    size_t tag;
    int failed; /* OpenSSL failed on it: sha is not the member's */
    unsigned char sha[32];
};

struct tar_writer {
    struct archive *a;
    tar_sink_fn sink;
    void *arg;
    int sink_failed;
    locale_t utf8, saved;

    /* The member hasher. Counters only under mu; a slot belongs to the hasher from its
     * hand-off until slot_busy is cleared. */
    pthread_t hasher;
    int hasher_started;
    pthread_mutex_t mu;
    pthread_cond_t work;    /* an item was handed over, or stopping */
    pthread_cond_t settled; /* a slot was released or a member hashed */
    unsigned char *slot[READ_SLOTS];
    int slot_busy[READ_SLOTS];
    size_t next_slot;
    struct hash_item item[HASH_ITEMS];
    size_t items_given, items_hashed;
    struct hashed result[TAR_HASHED_MAX];
    size_t members_given, members_hashed, members_taken;
    int stopping;
    EVP_MD_CTX *ctx; /* the hasher's */
    int hash_failed; /* the hasher's: OpenSSL failed during the current member */
};

/* Enter / leave the UTF-8 locale for this thread. */
static void enter(locale_t utf8, locale_t *saved)
{
    *saved = utf8 ? uselocale(utf8) : (locale_t)0;
}

static void leave(locale_t saved)
{
    if (saved)
        uselocale(saved);
}

static void *hasher_main(void *arg)
{
    struct tar_writer *t = arg;

    for (;;) {
        struct hash_item it;
        size_t member;
        unsigned int n = 32;

        pthread_mutex_lock(&t->mu);
        while (t->items_hashed == t->items_given && !t->stopping)
            pthread_cond_wait(&t->work, &t->mu);
        if (t->stopping) {
            pthread_mutex_unlock(&t->mu);
            return NULL;
        }
        it = t->item[t->items_hashed % HASH_ITEMS];
        member = t->members_hashed;
        pthread_mutex_unlock(&t->mu);

        if (it.slot >= 0 && EVP_DigestUpdate(t->ctx, t->slot[it.slot], it.len) != 1)
            t->hash_failed = 1;
        if (it.last) {
            struct hashed *h = &t->result[member % TAR_HASHED_MAX];

            if (EVP_DigestFinal_ex(t->ctx, h->sha, &n) != 1)
                t->hash_failed = 1;
            h->failed = t->hash_failed;
            t->hash_failed = EVP_DigestInit_ex(t->ctx, EVP_sha256(), NULL) != 1;
        }

        pthread_mutex_lock(&t->mu);
        if (it.slot >= 0)
            t->slot_busy[it.slot] = 0;
        if (it.last)
            t->members_hashed++;
        t->items_hashed++;
        pthread_cond_signal(&t->settled);
        pthread_mutex_unlock(&t->mu);
    }
}

/* Under mu: wake the hasher (it may sleep with fewer than HASH_WAKE items waiting) and
 * wait for it to settle one. */
static void wait_for_hasher(struct tar_writer *t)
{
    pthread_cond_signal(&t->work);
    pthread_cond_wait(&t->settled, &t->mu);
}

/* A free read buffer, waiting for the hasher to release it. */
static int take_slot(struct tar_writer *t)
{
    int i = (int)(t->next_slot++ % READ_SLOTS);

    pthread_mutex_lock(&t->mu);
    while (t->slot_busy[i])
        wait_for_hasher(t);
    t->slot_busy[i] = 1;
    pthread_mutex_unlock(&t->mu);
    return i;
}

static void give_item(struct tar_writer *t, int slot, size_t len, int last)
{
    pthread_mutex_lock(&t->mu);
    while (t->items_given - t->items_hashed == HASH_ITEMS)
        wait_for_hasher(t);
    t->item[t->items_given % HASH_ITEMS] = (struct hash_item){slot, len, last};
    t->items_given++;
    if (t->items_given - t->items_hashed >= HASH_WAKE)
        pthread_cond_signal(&t->work);
    pthread_mutex_unlock(&t->mu);
}

static void hasher_stop(struct tar_writer *t)
{
    if (!t->hasher_started)
        return;
    pthread_mutex_lock(&t->mu);
    t->stopping = 1;
    pthread_cond_signal(&t->work);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->hasher, NULL);
    t->hasher_started = 0;
}

static la_ssize_t write_cb(struct archive *a, void *client, const void *buf, size_t len)
{
    struct tar_writer *t = client;

    if (t->sink(t->arg, buf, len) < 0) {
        t->sink_failed = 1;
        sym_archive_set_error(a, EIO, "the package could not be written on");
        return -1;
    }
    return (la_ssize_t)len;
}

static int la_fail(struct archive *a, struct cst_err *err, const char *what)
{
    const char *msg = sym_archive_error_string(a);

    return cst_err_set(err, "%s: %s", what, msg ? msg : "libarchive failed");
}

struct tar_writer *tar_writer_new(tar_sink_fn sink, void *arg, struct cst_err *err)
{
    struct tar_writer *t;
    char level[16];

    /* Every libarchive call goes through a writer or tar_each: loading there covers them all. */
    if (archive_lib_load(err) < 0)
        return NULL;
    t = util_xcalloc(1, sizeof(*t));
    t->sink = sink;
    t->arg = arg;
    t->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (t->utf8 == (locale_t)0) {
        cst_err_set(err, "the C.UTF-8 locale is not available (libc-bin); package member names "
                         "are UTF-8");
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->work, NULL);
    pthread_cond_init(&t->settled, NULL);
    for (size_t i = 0; i < READ_SLOTS; i++)
        t->slot[i] = util_xmalloc(READ_SLOT);
    t->ctx = EVP_MD_CTX_new();
    if (t->ctx == NULL || EVP_DigestInit_ex(t->ctx, EVP_sha256(), NULL) != 1) {
        cst_err_set(err, "cannot start the package: SHA-256 is not available (out of memory)");
        tar_writer_free(t);
        return NULL;
    }
    {
        int rc = pthread_create(&t->hasher, NULL, hasher_main, t);

        if (rc != 0) {
            errno = rc;
            cst_err_sys(err, "cannot start the package's member hasher thread");
            tar_writer_free(t);
            return NULL;
        }
        t->hasher_started = 1;
    }
    enter(t->utf8, &t->saved);
    t->a = sym_archive_write_new();
    snprintf(level, sizeof(level), "%d", SNAPSHOT_TAR_ZSTD_LEVEL);
    if (t->a == NULL || sym_archive_write_add_filter_zstd(t->a) != ARCHIVE_OK ||
        sym_archive_write_set_filter_option(t->a, "zstd", "compression-level", level) !=
            ARCHIVE_OK ||
        sym_archive_write_set_format_pax_restricted(t->a) != ARCHIVE_OK ||
        sym_archive_write_set_options(t->a, "hdrcharset=UTF-8") != ARCHIVE_OK ||
        sym_archive_write_set_bytes_per_block(t->a, 0) != ARCHIVE_OK ||
        sym_archive_write_set_bytes_in_last_block(t->a, 1) != ARCHIVE_OK ||
        sym_archive_write_open(t->a, t, NULL, write_cb, NULL) != ARCHIVE_OK) {
        if (t->a)
            la_fail(t->a, err, "cannot start the package (tar + zstd)");
        else
            cst_err_set(err, "cannot start the package: out of memory");
        leave(t->saved);
        tar_writer_free(t);
        return NULL;
    }
    leave(t->saved);
    return t;
}

static int header(struct tar_writer *t, const char *name, uint64_t size, int64_t mtime,
                  struct cst_err *err)
{
    struct archive_entry *e = sym_archive_entry_new();
    int rc;

    sym_archive_entry_set_pathname_utf8(e, name);
    sym_archive_entry_set_size(e, (la_int64_t)size);
    sym_archive_entry_set_filetype(e, AE_IFREG);
    sym_archive_entry_set_perm(e, 0644);
    sym_archive_entry_set_mtime(e, (time_t)mtime, 0);
    rc = sym_archive_write_header(t->a, e);
    sym_archive_entry_free(e);
    if (rc != ARCHIVE_OK) {
        char what[512];

        snprintf(what, sizeof(what), "cannot add %s to the package", name);
        return la_fail(t->a, err, what);
    }
    return 0;
}

static int data(struct tar_writer *t, const char *name, const void *buf, size_t len,
                struct cst_err *err)
{
    while (len > 0) {
        la_ssize_t n = sym_archive_write_data(t->a, buf, len);

        if (n <= 0) {
            char what[512];

            snprintf(what, sizeof(what), "cannot write %s into the package", name);
            return la_fail(t->a, err, what);
        }
        buf = (const char *)buf + n;
        len -= (size_t)n;
    }
    return 0;
}

int tar_add_mem(struct tar_writer *t, const char *name, const void *buf, size_t len, int64_t mtime,
                unsigned char sha[32], struct cst_err *err)
{
    int rc;

    enter(t->utf8, &t->saved);
    rc = header(t, name, len, mtime, err);
    if (rc == 0)
        rc = data(t, name, buf, len, err);
    if (rc == 0 && sym_archive_write_finish_entry(t->a) != ARCHIVE_OK)
        rc = la_fail(t->a, err, "cannot finish a package member");
    leave(t->saved);
    if (rc == 0 && sha) {
        unsigned int n = 32;

        EVP_Digest(buf, len, sha, &n, EVP_sha256(), NULL);
    }
    return rc;
}

int tar_add_fd_hashed(struct tar_writer *t, const char *name, int fd, uint64_t size, int64_t mtime,
                      size_t tag, struct cst_err *err)
{
    uint64_t left = size;
    int rc, ended = 0;

    pthread_mutex_lock(&t->mu);
    if (t->members_given - t->members_taken == TAR_HASHED_MAX) {
        pthread_mutex_unlock(&t->mu);
        return cst_err_set(err, "cannot add %s to the package: %d member hashes are not taken",
                           name, TAR_HASHED_MAX);
    }
    t->result[t->members_given % TAR_HASHED_MAX].tag = tag;
    pthread_mutex_unlock(&t->mu);
    enter(t->utf8, &t->saved);
    rc = header(t, name, size, mtime, err);
    while (rc == 0 && left > 0) {
        size_t want = left < READ_SLOT ? (size_t)left : READ_SLOT;
        int i = take_slot(t);
        ssize_t got = util_read_full(fd, t->slot[i], want);

        if (got <= 0) {
            if (got < 0)
                rc = cst_err_sys(err, "cannot read %s", name);
            else
                rc = cst_err_set(err, "%s ended after %llu of %llu bytes while it was packaged",
                                 name, (unsigned long long)(size - left), (unsigned long long)size);
            pthread_mutex_lock(&t->mu);
            t->slot_busy[i] = 0;
            pthread_mutex_unlock(&t->mu);
            break;
        }
        left -= (uint64_t)got;
        ended = left == 0;
        give_item(t, i, (size_t)got, ended);
        rc = data(t, name, t->slot[i], (size_t)got, err);
    }
    /* Every member given gets a result, so that results stay in member order. */
    if (!ended)
        give_item(t, -1, 0, 1);
    pthread_mutex_lock(&t->mu);
    t->members_given++;
    pthread_mutex_unlock(&t->mu);
    if (rc == 0 && sym_archive_write_finish_entry(t->a) != ARCHIVE_OK)
        rc = la_fail(t->a, err, "cannot finish a package member");
    leave(t->saved);
    return rc;
}

int tar_hashed(struct tar_writer *t, int wait, size_t *tag, unsigned char sha[32])
{
    int got = 0;

    pthread_mutex_lock(&t->mu);
    while (wait && t->members_hashed == t->members_taken && t->members_taken < t->members_given)
        wait_for_hasher(t);
    if (t->members_hashed > t->members_taken) {
        const struct hashed *h = &t->result[t->members_taken % TAR_HASHED_MAX];

        *tag = h->tag;
        memcpy(sha, h->sha, 32);
        t->members_taken++;
        got = h->failed ? -1 : 1;
    }
    pthread_mutex_unlock(&t->mu);
    return got;
}

int tar_add_fd(struct tar_writer *t, const char *name, int fd, uint64_t size, int64_t mtime,
               unsigned char sha[32], struct cst_err *err)
{
    unsigned char scratch[32] = {0}; /* an output; initialised for cppcheck */
    size_t tag;
    int rc = tar_add_fd_hashed(t, name, fd, size, mtime, 0, err);

    /* Taken even after a failure, so that the results stay in member order. */
    if (tar_hashed(t, 1, &tag, sha && rc == 0 ? sha : scratch) < 0 && rc == 0)
        rc = cst_err_set(err, "cannot compute the SHA-256 of %s (OpenSSL failed)", name);
    return rc;
}

int tar_writer_finish(struct tar_writer *t, struct cst_err *err)
{
    int rc = 0;

    enter(t->utf8, &t->saved);
    if (sym_archive_write_close(t->a) != ARCHIVE_OK)
        rc = la_fail(t->a, err, "cannot finish the package");
    leave(t->saved);
    return rc;
}

void tar_writer_free(struct tar_writer *t)
{
    if (t == NULL)
        return;
    if (t->a) {
        locale_t saved;

        enter(t->utf8, &saved);
        sym_archive_write_free(t->a); /* closes first if still open */
        leave(saved);
    }
    hasher_stop(t);
    if (t->utf8)
        freelocale(t->utf8);
    for (size_t i = 0; i < READ_SLOTS; i++)
        free(t->slot[i]);
    EVP_MD_CTX_free(t->ctx);
    pthread_cond_destroy(&t->settled);
    pthread_cond_destroy(&t->work);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* --- reading --- */

struct tar_member {
    struct archive *a;
    const char *name;
};

ssize_t tar_member_read(struct tar_member *m, void *buf, size_t len, struct cst_err *err)
{
    la_ssize_t n = sym_archive_read_data(m->a, buf, len);

    if (n < 0) {
        char what[512];

        snprintf(what, sizeof(what), "cannot read %s from the package", m->name);
        return la_fail(m->a, err, what);
    }
    return (ssize_t)n;
}

/* A name that stays inside the folder it is extracted into. */
static int safe_name(const char *name)
{
    const char *p = name;

    if (name[0] == '\0' || name[0] == '/')
        return 0;
    while (*p) {
        size_t n = strcspn(p, "/");

        if ((n == 2 && p[0] == '.' && p[1] == '.') || n == 0)
            return 0;
        p += n;
        if (*p == '/')
            p++;
    }
    return name[strlen(name) - 1] != '/';
}

int tar_each(int fd, int (*cb)(void *arg, const char *name, uint64_t size, struct tar_member *m),
             void *arg, struct cst_err *err)
{
    locale_t utf8, saved;
    struct archive *a;
    struct archive_entry *e;
    int rc = 0, r;

    if (archive_lib_load(err) < 0)
        return -1;
    utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (utf8 == (locale_t)0)
        return cst_err_set(err, "the C.UTF-8 locale is not available (libc-bin)");
    enter(utf8, &saved);
    a = sym_archive_read_new();
    if (a == NULL || sym_archive_read_support_filter_zstd(a) != ARCHIVE_OK ||
        sym_archive_read_support_format_tar(a) != ARCHIVE_OK ||
        sym_archive_read_open_fd(a, fd, TAR_BUF) != ARCHIVE_OK) {
        rc = a ? la_fail(a, err, "cannot open the package (tar + zstd)")
               : cst_err_set(err, "out of memory");
        goto out;
    }
    while ((r = sym_archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *name = sym_archive_entry_pathname_utf8(e);
        struct tar_member m;

        if (name == NULL)
            name = sym_archive_entry_pathname(e);
        if (name == NULL || !safe_name(name)) {
            rc = cst_err_set(err,
                             "the package holds a member named %s, which is not a safe "
                             "relative path",
                             name ? name : "(unreadable)");
            goto out;
        }
        if (sym_archive_entry_filetype(e) != AE_IFREG) {
            rc = cst_err_set(err, "the package member %s is not a regular file", name);
            goto out;
        }
        m.a = a;
        m.name = name;
        rc = cb(arg, name, (uint64_t)sym_archive_entry_size(e), &m);
        if (rc != 0)
            goto out;
    }
    if (r != ARCHIVE_EOF)
        rc = la_fail(a, err, "the package is damaged");
out:
    if (a)
        sym_archive_read_free(a);
    leave(saved);
    freelocale(utf8);
    return rc;
}
