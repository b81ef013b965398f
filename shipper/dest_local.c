/*
 * dest_local.c - the `local` destination: a folder on a mounted disk or
 * NAS. It supplies store.h's primitives; store.c runs the sequence.
 *
 * write   the spool file is hard-linked in when both share a filesystem
 *         (its bytes reach the disk once: the shipper made it durable before
 *         it asked, dest_put.spool_durable, and a spool file nobody vouches
 *         for is fdatasynced here), else copied through the store_source
 *         (hashed on the way) and fdatasynced; then moved to its final name with
 *         renameat2(RENAME_NOREPLACE), so that an object already there is
 *         verified and kept rather than silently replaced.
 * settle  a damaged object is replaced by rename(2), which swaps the name
 *         atomically: the name is never empty.
 * sync    each folder an object was moved into, once per batch.
 * verify  store.c reads every copy back and compares its SHA-256, the
 *         hard-linked ones too: the link proves which inode it is, not what
 *         the inode holds now (read_whole: one open, its fstat for the size,
 *         then that many bytes).
 *
 * The folder is never created: a missing one is a NAS that is not mounted.
 * Every write opens the root and checks that it is still the folder whose
 * marker store.c checked at the start of the batch (same device and inode),
 * and works below that descriptor, so that an unmount in the middle of a
 * batch sends nothing to the disk underneath.
 */
#include "dest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "shipper/store.h"

#define LOCAL_BUF (256u * 1024)
#define LOCAL_THREADS_DEFAULT 4

struct local {
    char *root;
    pthread_mutex_t lock;
    int have_id; /* the root's identity, as of the last root() */
    dev_t dev;
    ino_t ino;
    char **known; /* folders (keys) known to exist under that root */
    size_t n_known;
};

static int fail_errno(struct store_err *e, struct dest *d, const char *what, const char *path)
{
    int saved = errno;
    enum dest_error kind =
        saved == EACCES || saved == EPERM || saved == EROFS ? DEST_ERR_CONFIG : DEST_ERR_TRANSIENT;

    return store_fail(e, kind, "destination %s: %s %s: %s", d->name, what, path, strerror(saved));
}

static char *path_of(const struct local *l, const char *key)
{
    return key[0] ? util_join(l->root, key) : util_xstrdup(l->root);
}

/* The root, if it is still the folder store.c checked. */
static int open_root(struct dest *d, struct store_err *e)
{
    struct local *l = d->impl;
    struct stat sb;
    int fd = open(l->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), same;

    if (fd < 0)
        return fail_errno(e, d, "cannot open folder", l->root);
    if (fstat(fd, &sb) < 0) {
        fail_errno(e, d, "cannot stat folder", l->root);
        close(fd);
        return -1;
    }
    pthread_mutex_lock(&l->lock);
    same = !l->have_id || (sb.st_dev == l->dev && sb.st_ino == l->ino);
    pthread_mutex_unlock(&l->lock);
    if (!same) {
        close(fd);
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s: %s changed since it was checked (unmounted or "
                          "remounted): copies wait",
                          d->name, l->root);
    }
    return fd;
}

static int known(struct local *l, const char *dir)
{
    int found = 0;

    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->n_known && !found; i++)
        found = strcmp(l->known[i], dir) == 0;
    pthread_mutex_unlock(&l->lock);
    return found;
}

static void remember(struct local *l, const char *dir)
{
    pthread_mutex_lock(&l->lock);
    l->known = util_xrealloc(l->known, (l->n_known + 1) * sizeof(char *));
    l->known[l->n_known++] = util_xstrdup(dir);
    pthread_mutex_unlock(&l->lock);
}

static void forget_all(struct local *l)
{
    for (size_t i = 0; i < l->n_known; i++)
        free(l->known[i]);
    free(l->known);
    l->known = NULL;
    l->n_known = 0;
}

/* The folders of dir below the root exist (created 0700 as needed; a created folder's
 * parent is touched, so that its entry is made durable with the batch). */
static int ensure_dirs(struct dest *d, int rootfd, const char *dir, struct store_write *w,
                       struct store_err *e)
{
    struct local *l = d->impl;
    char *prefix;

    if (dir[0] == '\0' || known(l, dir))
        return 0;
    prefix = util_xstrdup(dir);
    for (char *p = prefix;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;

        *p = '\0';
        if (!known(l, prefix)) {
            if (mkdirat(rootfd, prefix, 0700) == 0) {
                char *parent = store_key_dir(prefix);

                store_write_touch(w, parent);
                free(parent);
            } else if (errno != EEXIST) {
                char *path = path_of(l, prefix);

                fail_errno(e, d, "cannot create folder", path);
                free(path);
                free(prefix);
                return -1;
            }
            remember(l, prefix);
        }
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(prefix);
    return 0;
}

/* Copy the source into fd, through the store_source (hashed, paced, checked). */
static int copy_source(struct store_source *src, int fd)
{
    char *buf = util_xmalloc(LOCAL_BUF);
    int rc = 0;

    for (;;) {
        ssize_t n = store_source_read(src, buf, LOCAL_BUF);

        if (n < 0) {
            rc = -1;
            errno = 0;
            break;
        }
        if (n == 0)
            break;
        if (util_write_all(fd, buf, (size_t)n) < 0) {
            rc = -1;
            break;
        }
    }
    free(buf);
    return rc;
}

/* Move temp to name in dirfd without replacing: 0 moved, 1 name taken, -1 errno. */
static int move_noreplace(int dirfd, const char *temp, const char *name)
{
    struct stat sb;

    if (renameat2(dirfd, temp, dirfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return 1;
    if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
        return -1;
    /* A filesystem without RENAME_NOREPLACE (some NAS protocols): link then unlink. */
    if (linkat(dirfd, temp, dirfd, name, 0) == 0) {
        unlinkat(dirfd, temp, 0);
        return 0;
    }
    if (errno == EEXIST)
        return 1;
    if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS)
        return -1;
    /* Nor hard links: only this process writes this name, so look, then rename. */
    if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    return renameat(dirfd, temp, dirfd, name) == 0 ? 0 : -1;
}

static int local_write(struct dest *d, struct store_write *w)
{
    struct local *l = d->impl;
    struct dest_put *p = w->put;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    const char *spool = store_source_path(w->src);
    const char *slash = strrchr(p->remote_key, '/');
    const char *name = slash ? slash + 1 : p->remote_key;
    char *dir = store_key_dir(p->remote_key), *temp = NULL, *shown = NULL;
    int rootfd = -1, dirfd = -1, fd = -1, linked = 0, rc = -1, moved;
    struct stat sb;

    rootfd = open_root(d, &e);
    if (rootfd < 0)
        goto fail;
    if (ensure_dirs(d, rootfd, dir, w, &e) < 0)
        goto fail;
    dirfd = dir[0] ? openat(rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : dup(rootfd);
    if (dirfd < 0 && errno == ENOENT) {
        /* A folder removed behind our back: forget what we knew and create it again. */
        pthread_mutex_lock(&l->lock);
        forget_all(l);
        pthread_mutex_unlock(&l->lock);
        if (ensure_dirs(d, rootfd, dir, w, &e) < 0)
            goto fail;
        dirfd = openat(rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    shown = path_of(l, dir);
    if (dirfd < 0) {
        fail_errno(&e, d, "cannot open folder", shown);
        goto fail;
    }
    temp = store_temp_name(name);
    /* Same filesystem as the spool: the sealed file itself becomes the copy. Only one
     * destination may own its inode: two "copies" sharing an inode would be one copy. */
    if (spool && linkat(AT_FDCWD, spool, dirfd, temp, 0) == 0) {
        if (fstatat(dirfd, temp, &sb, AT_SYMLINK_NOFOLLOW) == 0 && sb.st_nlink == 2 &&
            (uint64_t)sb.st_size == p->stored_size)
            linked = 1;
        else
            unlinkat(dirfd, temp, 0);
    }
    /* A hard link to a spool file its caller already made durable shares that file's
     * blocks: syncing them again would only flush the disk cache once more per object, so
     * it is not even opened. Otherwise data first, then the name: a crash leaves a
     * temporary file, never a torn object. */
    if (linked && p->spool_durable)
        goto move;
    fd = openat(dirfd, temp,
                linked ? O_RDONLY | O_CLOEXEC : O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fail_errno(&e, d, "cannot create a temporary file in", shown);
        goto fail_unlink;
    }
    if (!linked && copy_source(w->src, fd) < 0) {
        if (errno != 0)
            fail_errno(&e, d, "cannot write a temporary file in", shown);
        goto fail_unlink;
    }
    if (fdatasync(fd) < 0) {
        fail_errno(&e, d, "fdatasync failed in", shown);
        goto fail_unlink;
    }
    if (close(fd) < 0) {
        fd = -1;
        fail_errno(&e, d, "cannot write a temporary file in", shown);
        goto fail_unlink;
    }
    fd = -1;
move:
    moved = move_noreplace(dirfd, temp, name);
    if (moved < 0) {
        fail_errno(&e, d, "cannot move a temporary file into place in", shown);
        goto fail_unlink;
    }
    store_write_touch(w, dir);
    if (moved == 1) {
        w->exists = 1;
        w->temp = temp;
        temp = NULL;
    }
    rc = 0;
    goto out;
fail_unlink:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlinkat(dirfd, temp, 0);
fail:
    if (e.err.msg[0]) {
        p->kind = e.kind;
        snprintf(p->error, sizeof(p->error), "%s", e.err.msg);
    }
out:
    if (dirfd >= 0)
        close(dirfd);
    if (rootfd >= 0)
        close(rootfd);
    free(temp);
    free(shown);
    free(dir);
    return rc;
}

static int local_settle(struct dest *d, struct store_write *w, int replace, struct store_err *e)
{
    char *dir = store_key_dir(w->put->remote_key);
    const char *slash = strrchr(w->put->remote_key, '/');
    const char *name = slash ? slash + 1 : w->put->remote_key;
    int rootfd = open_root(d, e), dirfd = -1, rc = -1;

    if (rootfd < 0)
        goto out;
    dirfd = dir[0] ? openat(rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : dup(rootfd);
    if (dirfd < 0) {
        fail_errno(e, d, "cannot open the folder of", w->put->remote_key);
        goto out;
    }
    if (!replace) {
        if (unlinkat(dirfd, w->temp, 0) < 0 && errno != ENOENT)
            fail_errno(e, d, "cannot remove the temporary copy of", w->put->remote_key);
        else
            rc = 0;
    } else if (renameat(dirfd, w->temp, dirfd, name) < 0) {
        /* rename(2) swaps the name atomically: the damaged object stays until it does. */
        fail_errno(e, d, "cannot replace the damaged copy", w->put->remote_key);
        unlinkat(dirfd, w->temp, 0);
    } else {
        rc = 0;
    }
out:
    if (dirfd >= 0)
        close(dirfd);
    if (rootfd >= 0)
        close(rootfd);
    free(dir);
    return rc;
}

static int local_sync_dir(struct dest *d, const char *dir, struct store_err *e)
{
    struct local *l = d->impl;
    int rootfd = open_root(d, e), fd, rc = 0;

    if (rootfd < 0)
        return -1;
    fd = dir[0] ? openat(rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : dup(rootfd);
    if (fd < 0 || fsync(fd) < 0) {
        char *path = path_of(l, dir);

        rc = fail_errno(e, d, "cannot fsync folder", path);
        free(path);
    }
    if (fd >= 0)
        close(fd);
    close(rootfd);
    return rc;
}

static int local_read(struct dest *d, const char *key, uint64_t off, uint64_t len,
                      store_sink_fn sink, void *arg, struct store_err *e)
{
    struct local *l = d->impl;
    char *path = path_of(l, key);
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0) {
        rc = fail_errno(e, d, "cannot read", path);
        goto out;
    }
    posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_SEQUENTIAL);
    buf = util_xmalloc(LOCAL_BUF);
    while (len > 0) {
        size_t want = len > LOCAL_BUF ? LOCAL_BUF : (size_t)len;
        ssize_t n;

        do
            n = pread(fd, buf, want, (off_t)off);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            rc = fail_errno(e, d, "cannot read", path);
            break;
        }
        if (n == 0)
            break; /* shorter than asked: the caller sees what it got */
        if (sink(arg, buf, (size_t)n) < 0) {
            rc = store_fail(e, DEST_ERR_TRANSIENT, "destination %s: reading %s stopped", d->name,
                            path);
            break;
        }
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(path);
    return rc;
}

static int local_read_whole(struct dest *d, const char *key, uint64_t want, store_sink_fn sink,
                            void *arg, uint64_t *size, struct store_err *e)
{
    struct local *l = d->impl;
    char *path = path_of(l, key);
    char *buf = NULL;
    struct stat sb;
    uint64_t off = 0;
    size_t cap;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), rc = 1;

    if (fd < 0) {
        /* As local_stat: what is not a regular file there is no object (a symlink too). */
        rc = errno == ENOENT || errno == ENOTDIR || errno == ELOOP
                 ? 0
                 : fail_errno(e, d, "cannot read", path);
        goto out;
    }
    if (fstat(fd, &sb) < 0) {
        rc = fail_errno(e, d, "cannot stat", path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = 0;
        goto out;
    }
    *size = (uint64_t)sb.st_size;
    if (*size != want)
        goto out; /* the caller reports the size; nothing to read */
    /* A small object needs a small buffer: no 256 KiB allocation per read-back. Reading
     * stops at the size fstat gave (one pread for a small object, no second one for EOF). */
    cap = want == 0 ? 1 : want < LOCAL_BUF ? (size_t)want : LOCAL_BUF;
    buf = util_xmalloc(cap);
    while (off < want) {
        size_t ask = want - off < cap ? (size_t)(want - off) : cap;
        ssize_t n;

        do
            n = pread(fd, buf, ask, (off_t)off);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            rc = fail_errno(e, d, "cannot read", path);
            break;
        }
        if (n == 0)
            break; /* the caller compares what it got with the size */
        if (sink(arg, buf, (size_t)n) < 0) {
            rc = store_fail(e, DEST_ERR_TRANSIENT, "destination %s: reading %s stopped", d->name,
                            path);
            break;
        }
        off += (uint64_t)n;
    }
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(path);
    return rc;
}

static int local_stat(struct dest *d, const char *key, uint64_t *size, struct store_err *e)
{
    struct local *l = d->impl;
    char *path = path_of(l, key);
    struct stat sb;
    int rc;

    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        *size = (uint64_t)sb.st_size;
        rc = 1;
    } else if (errno == ENOENT || errno == ENOTDIR || (errno == 0 && !S_ISREG(sb.st_mode))) {
        rc = 0;
    } else {
        rc = fail_errno(e, d, "cannot stat", path);
    }
    free(path);
    return rc;
}

static int local_root(struct dest *d, struct store_err *e)
{
    struct local *l = d->impl;
    struct stat sb;
    struct dirent *de;
    DIR *dir;
    int state = STORE_ROOT_EMPTY;

    errno = 0;
    if (stat(l->root, &sb) < 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return STORE_ROOT_MISSING;
        return fail_errno(e, d, "cannot stat folder", l->root);
    }
    if (!S_ISDIR(sb.st_mode))
        return store_fail(e, DEST_ERR_CONFIG, "destination %s: %s is not a folder", d->name,
                          l->root);
    pthread_mutex_lock(&l->lock);
    if (l->have_id && (l->dev != sb.st_dev || l->ino != sb.st_ino))
        forget_all(l); /* remounted: what we knew of the old folder says nothing */
    l->have_id = 1;
    l->dev = sb.st_dev;
    l->ino = sb.st_ino;
    pthread_mutex_unlock(&l->lock);
    dir = opendir(l->root);
    if (dir == NULL)
        return fail_errno(e, d, "cannot read folder", l->root);
    while ((de = readdir(dir)) != NULL) {
        /* A freshly formatted disk has lost+found: still empty for our purposes. */
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, "lost+found") == 0)
            continue;
        state = STORE_ROOT_USED;
        break;
    }
    closedir(dir);
    return state;
}

/* Walk dir (a key) depth first: files through cb(key, size); returns cb's stop or -1. */
static int walk(struct dest *d, const char *dir, const char *prefix,
                int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                struct cst_err *err)
{
    struct local *l = d->impl;
    char *path = path_of(l, dir);
    DIR *dh = opendir(path);
    struct dirent *de;
    int rc = 0;

    if (dh == NULL) {
        rc =
            errno == ENOENT ? 0 : cst_err_sys(err, "destination %s: cannot list %s", d->name, path);
        free(path);
        return rc;
    }
    while (rc == 0 && (de = readdir(dh)) != NULL) {
        char *key;
        struct stat sb;

        if (de->d_name[0] == '.')
            continue; /* ., .., and temporary files */
        key = dir[0] ? util_printf("%s/%s", dir, de->d_name) : util_xstrdup(de->d_name);
        if (strncmp(key, prefix, strlen(key) < strlen(prefix) ? strlen(key) : strlen(prefix)) !=
            0) {
            free(key);
            continue;
        }
        if (fstatat(dirfd(dh), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(sb.st_mode))
                rc = walk(d, key, prefix, cb, arg, err);
            else if (S_ISREG(sb.st_mode) && strncmp(key, prefix, strlen(prefix)) == 0)
                rc = cb(arg, key, (uint64_t)sb.st_size) ? 1 : 0;
        }
        free(key);
    }
    closedir(dh);
    free(path);
    return rc;
}

static int local_list(struct dest *d, const char *prefix,
                      int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                      struct cst_err *err)
{
    return walk(d, "", prefix ? prefix : "", cb, arg, err) < 0 ? -1 : 0;
}

static int local_remove(struct dest *d, const char *key, struct cst_err *err)
{
    struct local *l = d->impl;
    char *path = path_of(l, key);
    int rc = 0;

    if (unlink(path) < 0 && errno != ENOENT)
        rc = cst_err_sys(err, "destination %s: cannot remove %s", d->name, path);
    free(path);
    return rc;
}

static int local_remove_dir(struct dest *d, const char *dir, struct cst_err *err)
{
    struct local *l = d->impl;
    char *path = path_of(l, dir);
    int rc = 0;

    if (rmdir(path) < 0 && errno != ENOENT)
        rc = cst_err_sys(err, "destination %s: cannot remove folder %s", d->name, path);
    free(path);
    return rc;
}

/* Temporary files whose owner has exited, anywhere below dir. */
static void remove_stale(struct dest *d, int dirfd, const char *shown, size_t *removed)
{
    DIR *dh;
    struct dirent *de;
    int fd = dup(dirfd);

    if (fd < 0 || (dh = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((de = readdir(dh)) != NULL) {
        struct stat sb;
        int is_dir = de->d_type == DT_DIR;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        /* The listing's type, not a stat per object: this runs at every start, over
         * every object the destination holds, while the start-up scan runs. */
        if (de->d_type == DT_UNKNOWN) {
            if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
                continue;
            is_dir = S_ISDIR(sb.st_mode);
        }
        if (is_dir) {
            int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);

            if (sub >= 0) {
                remove_stale(d, sub, shown, removed);
                close(sub);
            }
        } else if (store_temp_is_stale(de->d_name)) {
            if (unlinkat(dirfd, de->d_name, 0) == 0)
                (*removed)++;
        }
    }
    closedir(dh);
}

static int local_cleanup(struct dest *d, struct cst_err *err)
{
    struct local *l = d->impl;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    size_t removed = 0;
    int rootfd = open_root(d, &e);

    if (rootfd < 0) {
        *err = e.err;
        return -1;
    }
    remove_stale(d, rootfd, l->root, &removed);
    close(rootfd);
    if (removed)
        log_info("removed %zu temporary files that stopped processes left dest=%s", removed,
                 d->name);
    return 0;
}

/* doctor: the folder is there and private. */
static int local_probe_connect(struct dest *d, struct dest_probe *out)
{
    struct local *l = d->impl;
    struct stat sb;

    if (stat(l->root, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        dest_check_add(out, "reachable", 0,
                       "%s is not a folder (%s): is the NAS mounted? nothing was created; mount "
                       "it, or create the folder (mode 0700) where it belongs",
                       l->root, errno ? strerror(errno) : "not a directory");
        return -1;
    }
    dest_check_add(out, "reachable", 1, "%s", l->root);
    dest_check_add(out, "private", (sb.st_mode & 0007) == 0,
                   (sb.st_mode & 0007)
                       ? "%s is open to other users (mode %04o); run chmod o-rwx on it"
                       : "%s is not open to other users (mode %04o)",
                   l->root, (unsigned)(sb.st_mode & 07777));
    return 0;
}

static void local_free(struct dest *d)
{
    struct local *l = d->impl;

    forget_all(l);
    pthread_mutex_destroy(&l->lock);
    free(l->root);
    free(l);
}

static const struct store_driver local_driver = {
    .type = "local",
    .features = STORE_FEAT_DURABLE_COMMIT | STORE_FEAT_MARKER,
    .write = local_write,
    .settle = local_settle,
    .sync_dir = local_sync_dir,
    .read = local_read,
    .stat = local_stat,
    .root = local_root,
    .read_whole = local_read_whole,
    .list = local_list,
    .remove = local_remove,
    .remove_dir = local_remove_dir,
    .cleanup = local_cleanup,
    .probe_connect = local_probe_connect,
    .free = local_free,
};

static const struct dest_ops dest_local_ops = STORE_DEST_OPS("local");

struct dest *dest_local_new(const struct dest_local_config *c, const struct dest_env *env,
                            struct cst_err *err)
{
    struct local *l;
    size_t len;

    if (c->path == NULL || c->path[0] != '/') {
        cst_err_set(err, "destination %s: path must be an absolute folder", c->name);
        return NULL;
    }
    l = util_xcalloc(1, sizeof(*l));
    l->root = util_xstrdup(c->path);
    len = strlen(l->root);
    while (len > 1 && l->root[len - 1] == '/')
        l->root[--len] = '\0';
    pthread_mutex_init(&l->lock, NULL);
    struct store_params p = {
        .name = c->name,
        .where = l->root,
        .ops = &dest_local_ops,
        .driver = &local_driver,
        .impl = l,
        /* Large batches, two at once: one is made durable while the next is written. (4096
         * was tried: fewer shard-folder fsyncs per object, but its puts took the peak RSS
         * above 32 MiB.) */
        .max_batch = 1024,
        .max_concurrent = 2,
        .threads = c->max_inflight > 0 ? c->max_inflight : LOCAL_THREADS_DEFAULT,
        .readback_full = 0, /* every copy is read back whole */
        .bandwidth_kbps = c->bandwidth_kbps,
    };
    return store_dest_new(&p, env);
}
