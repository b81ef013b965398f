/*
 * dest_local.c - the `local` destination: a folder on a mounted disk/NAS.
 *
 * Durability is paid per batch: every object of the batch is written to a
 * temporary name (hard-linked from the spool when both share a filesystem,
 * so its bytes reach the disk once) and renamed into place, then one
 * syncfs() makes data and renames durable together. A crash leaves at most
 * ".tmp." files, which start-up removes, and final names the catalog never
 * recorded. A copied object is then read back and its SHA-256 compared; a
 * linked one is the very inode that was hashed while it was sealed.
 */
#include "dest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "shipper/workpool.h"

struct local {
    char *root;
    struct workpool *pool;
    char **known; /* shard folders known to exist */
    size_t n_known;
};

struct local_batch {
    struct work work;
    struct dest *d;
    struct dest_put *puts;
    size_t n;
    dest_done_fn done;
    void *arg;
};

static int copy_fd(int in, int out)
{
    char buf[1 << 16];

    for (;;) {
        ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);

        if (n > 0)
            continue;
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP)
            return -1;
        break;
    }
    /* Fallback for filesystems without copy_file_range. */
    for (;;) {
        ssize_t n = util_read_full(in, buf, sizeof(buf));

        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (util_write_all(out, buf, (size_t)n) < 0)
            return -1;
    }
}

/* SHA-256 and size of a file, to verify what landed. */
static int hash_file(const char *path, unsigned char out[32], uint64_t *size)
{
    unsigned char buf[1 << 16];
    EVP_MD_CTX *ctx;
    unsigned int len = 32;
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;

    if (fd < 0)
        return -1;
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    *size = 0;
    for (;;) {
        ssize_t n = util_read_full(fd, buf, sizeof(buf));

        if (n < 0)
            goto out;
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    EVP_DigestFinal_ex(ctx, out, &len);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    close(fd);
    return rc;
}

/* The shard folder of a key exists (created once, then remembered). */
static int ensure_folder(struct local *l, const char *dir)
{
    for (size_t i = 0; i < l->n_known; i++)
        if (strcmp(l->known[i], dir) == 0)
            return 0;
    if (util_mkdir_p(dir, 0700, NULL) < 0)
        return -1;
    l->known = util_xrealloc(l->known, (l->n_known + 1) * sizeof(char *));
    l->known[l->n_known++] = util_xstrdup(dir);
    return 0;
}

static void store_batch(struct dest *d, struct dest_put *items, size_t n)
{
    struct local *l = d->impl;
    char **final = util_xcalloc(n, sizeof(char *));
    ino_t *linked = util_xcalloc(n, sizeof(ino_t)); /* inode shared with the spool, or 0 */
    int rootfd;

    for (size_t i = 0; i < n; i++) {
        struct dest_put *it = &items[i];
        char *dir, *tmp;
        int in = -1, out = -1;
        struct stat sb;

        it->ok = 0;
        it->kind = DEST_ERR_TRANSIENT;
        final[i] = util_join(l->root, it->remote_key);
        dir = util_xstrdup(final[i]);
        *strrchr(dir, '/') = '\0';
        if (ensure_folder(l, dir) < 0) {
            snprintf(it->error, sizeof(it->error), "cannot create folder %s: %s", dir,
                     strerror(errno));
            free(dir);
            continue;
        }
        free(dir);
        tmp = util_printf("%s.tmp.%d.%zu", final[i], (int)getpid(), i);
        in = open(it->spool_path, O_RDONLY | O_CLOEXEC);
        if (in < 0 || fstat(in, &sb) < 0 || (uint64_t)sb.st_size != it->stored_size) {
            it->kind = DEST_ERR_SOURCE;
            snprintf(it->error, sizeof(it->error), "spool file %s is missing or truncated",
                     it->spool_path);
            goto next;
        }
        /* Same filesystem as the spool: the sealed file itself becomes the copy (a
         * hard link), so its bytes reach the disk once, not twice. */
        if (link(it->spool_path, tmp) == 0) {
            struct stat ls;

            /* Only one destination may own the spool's inode: two "copies" sharing
             * one inode would be one copy. Another got there first: copy instead. */
            if (stat(tmp, &ls) == 0 && ls.st_nlink == 2) {
                linked[i] = ls.st_ino;
                goto place;
            }
            unlink(tmp);
        }
        out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0 || copy_fd(in, out) < 0) {
            snprintf(it->error, sizeof(it->error), "cannot write %s: %s", tmp, strerror(errno));
            if (out >= 0)
                close(out);
            unlink(tmp);
            goto next;
        }
        if (close(out) < 0) {
            snprintf(it->error, sizeof(it->error), "cannot write %s: %s", tmp, strerror(errno));
            unlink(tmp);
            goto next;
        }
    place:
        /* Renamed before the sync: an object under its final name that did not reach
         * the disk is harmless, because only the catalog says a copy exists, and it
         * says so after the sync below. */
        if (rename(tmp, final[i]) < 0) {
            snprintf(it->error, sizeof(it->error), "cannot rename %s: %s", tmp, strerror(errno));
            unlink(tmp);
            goto next;
        }
        it->ok = 1; /* in place; not yet durable */
    next:
        free(tmp);
        if (in >= 0)
            close(in);
    }

    /* One sync for the whole batch: the data and the renames (the journal commit
     * carries the directory entries) become durable together. */
    rootfd = open(l->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0 || syncfs(rootfd) < 0) {
        struct cst_err err;

        cst_err_sys(&err, "cannot sync destination %s (%s)", d->name, l->root);
        for (size_t i = 0; i < n; i++)
            if (items[i].ok) {
                items[i].ok = 0;
                snprintf(items[i].error, sizeof(items[i].error), "%s", err.msg);
            }
    }
    if (rootfd >= 0)
        close(rootfd);
    for (size_t i = 0; i < n; i++) {
        unsigned char sha[32];
        uint64_t size;
        struct stat sb;

        if (!items[i].ok)
            continue;
        if (linked[i]) {
            /* The very inode that was hashed while it was sealed. */
            if (stat(final[i], &sb) == 0 && sb.st_ino == linked[i] &&
                (uint64_t)sb.st_size == items[i].stored_size)
                continue;
        } else if (hash_file(final[i], sha, &size) == 0 && size == items[i].stored_size &&
                   memcmp(sha, items[i].stored_sha256, 32) == 0) {
            continue;
        }
        items[i].ok = 0;
        /* Was the copy bad, or the spool file it came from? */
        if (hash_file(items[i].spool_path, sha, &size) == 0 &&
            (size != items[i].stored_size || memcmp(sha, items[i].stored_sha256, 32) != 0))
            items[i].kind = DEST_ERR_SOURCE;
        snprintf(items[i].error, sizeof(items[i].error),
                 "verification of %s failed: the stored copy differs from what was sealed",
                 final[i]);
    }
    for (size_t i = 0; i < n; i++)
        free(final[i]);
    free(final);
    free(linked);
}

static void batch_run(struct work *w)
{
    struct local_batch *b = (struct local_batch *)w;

    store_batch(b->d, b->puts, b->n);
}

static void batch_done(struct work *w)
{
    struct local_batch *b = (struct local_batch *)w;

    b->done(b->arg, b->puts, b->n);
    free(b);
}

static void local_put_batch(struct dest *d, struct dest_put *puts, size_t n, dest_done_fn done,
                            void *arg)
{
    struct local *l = d->impl;
    struct local_batch *b = util_xcalloc(1, sizeof(*b));

    b->d = d;
    b->puts = puts;
    b->n = n;
    b->done = done;
    b->arg = arg;
    b->work.run = batch_run;
    b->work.done = batch_done;
    if (l->pool) {
        workpool_submit(l->pool, &b->work);
    } else {
        batch_run(&b->work);
        batch_done(&b->work);
    }
}

static int local_get(struct dest *d, const char *remote_key, int out_fd, struct cst_err *err)
{
    struct local *l = d->impl;
    char *path = util_join(l->root, remote_key);
    int in = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

    if (in < 0) {
        rc = cst_err_sys(err, "destination %s: cannot read %s", d->name, path);
    } else {
        if (copy_fd(in, out_fd) < 0)
            rc = cst_err_sys(err, "destination %s: cannot copy %s", d->name, path);
        close(in);
    }
    free(path);
    return rc;
}

static int local_exists(struct dest *d, const char *remote_key, uint64_t *size, struct cst_err *err)
{
    struct local *l = d->impl;
    char *path = util_join(l->root, remote_key);
    struct stat sb;
    int rc;

    if (stat(path, &sb) == 0) {
        *size = (uint64_t)sb.st_size;
        rc = 1;
    } else if (errno == ENOENT) {
        rc = 0;
    } else {
        rc = cst_err_sys(err, "destination %s: cannot stat %s", d->name, path);
    }
    free(path);
    return rc;
}

/* doctor: the folder is there, private, and a probe object survives a round trip. */
static int local_probe(struct dest *d, struct dest_probe *out)
{
    struct local *l = d->impl;
    char *dir = util_join(l->root, "custodian-probe");
    char *path = NULL, *tmp = NULL;
    unsigned char sent[64], got[64];
    struct stat sb;
    int fd, failed = 0;

    out->n = 0;
    if (stat(l->root, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
        dest_check_add(out, "reachable", 0, "%s is not a folder: %s", l->root, strerror(errno));
        free(dir);
        return -1;
    }
    dest_check_add(out, "reachable", 1, "%s", l->root);
    dest_check_add(out, "private", (sb.st_mode & 0007) == 0,
                   (sb.st_mode & 0007)
                       ? "%s is open to other users (mode %04o); run chmod o-rwx on it"
                       : "%s is not open to other users (mode %04o)",
                   l->root, (unsigned)(sb.st_mode & 07777));
    failed |= (sb.st_mode & 0007) != 0;
    for (size_t i = 0; i < sizeof(sent); i++)
        sent[i] = (unsigned char)(rand() & 0xff);
    path = util_printf("%s/probe-%d", dir, (int)getpid());
    tmp = util_printf("%s.tmp", path);
    if (util_mkdir_p(dir, 0700, NULL) < 0 ||
        (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        dest_check_add(out, "write probe", 0, "cannot create %s: %s", tmp, strerror(errno));
        failed = 1;
        goto out;
    }
    if (util_write_all(fd, sent, sizeof(sent)) < 0 || fsync(fd) < 0 || close(fd) < 0 ||
        rename(tmp, path) < 0 || util_fsync_dir(dir, NULL) < 0) {
        dest_check_add(out, "write probe", 0, "cannot write %s: %s", path, strerror(errno));
        failed = 1;
        goto out;
    }
    dest_check_add(out, "write probe", 1, "%s", path);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || util_read_full(fd, got, sizeof(got)) != (ssize_t)sizeof(got) ||
        memcmp(sent, got, sizeof(got)) != 0) {
        dest_check_add(out, "read probe", 0, "%s did not read back as written", path);
        failed = 1;
    } else {
        dest_check_add(out, "read probe", 1, "read back identical");
    }
    if (fd >= 0)
        close(fd);
    if (unlink(path) < 0 || rmdir(dir) < 0) {
        dest_check_add(out, "delete probe", 0, "cannot remove %s: %s", path, strerror(errno));
        failed = 1;
    } else {
        dest_check_add(out, "delete probe", 1, "removed");
    }
out:
    unlink(tmp);
    free(tmp);
    free(path);
    free(dir);
    return failed ? -1 : 0;
}

/* Every file under root/dir whose key starts with prefix; dot files (temporaries) are
 * skipped. Returns 0, 1 when cb stopped, -1 with err. */
static int list_dir(struct dest *d, const char *root, const char *dir_key, const char *prefix,
                    int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                    struct cst_err *err)
{
    char *path = dir_key[0] ? util_join(root, dir_key) : util_xstrdup(root);
    DIR *dir = opendir(path);
    struct dirent *de;
    int rc = 0;

    if (dir == NULL) {
        rc = errno == ENOENT || errno == ENOTDIR
                 ? 0
                 : cst_err_sys(err, "destination %s: cannot list %s", d->name, path);
        free(path);
        return rc;
    }
    while (rc == 0 && (errno = 0, de = readdir(dir)) != NULL) {
        char *key =
            dir_key[0] ? util_printf("%s/%s", dir_key, de->d_name) : util_xstrdup(de->d_name);
        size_t klen = strlen(key), plen = strlen(prefix);
        struct stat sb;

        /* Only what can hold a key with the prefix: a key below it, or a folder
         * on the way to it. */
        if (de->d_name[0] == '.' || strncmp(key, prefix, klen < plen ? klen : plen) != 0 ||
            fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
            free(key);
            continue;
        }
        if (S_ISDIR(sb.st_mode))
            rc = list_dir(d, root, key, prefix, cb, arg, err);
        else if (S_ISREG(sb.st_mode) && klen >= plen)
            rc = cb(arg, key, (uint64_t)sb.st_size) != 0 ? 1 : 0;
        free(key);
    }
    if (rc == 0 && errno != 0)
        rc = cst_err_sys(err, "destination %s: cannot list %s", d->name, path);
    closedir(dir);
    free(path);
    return rc;
}

static int local_list(struct dest *d, const char *prefix,
                      int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                      struct cst_err *err)
{
    struct local *l = d->impl;
    const char *slash;
    char *top;
    int rc;

    if (prefix == NULL)
        prefix = "";
    /* Start at the folder the prefix names, not at the root. */
    slash = strrchr(prefix, '/');
    top = util_printf("%.*s", slash ? (int)(slash - prefix) : 0, prefix);
    rc = list_dir(d, l->root, top, prefix, cb, arg, err);
    free(top);
    return rc < 0 ? -1 : 0;
}

static void local_free(struct dest *d)
{
    struct local *l = d->impl;

    for (size_t i = 0; i < l->n_known; i++)
        free(l->known[i]);
    free(l->known);
    free(l->root);
    free(l);
}

static const struct dest_ops dest_local_ops = {
    .type = "local",
    .put_batch = local_put_batch,
    .get = local_get,
    .free = local_free,
    .exists = local_exists,
    .list = local_list,
    .probe = local_probe,
};

/* Remove temporary files a crash left behind (".tmp." names under objects/). */
static void remove_stale_temps(const char *root)
{
    char *objects = util_join(root, "objects");
    DIR *top = opendir(objects);
    struct dirent *de;

    if (top == NULL) {
        free(objects);
        return;
    }
    while ((de = readdir(top)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char *sub = util_join(objects, de->d_name);
        DIR *dir = opendir(sub);
        struct dirent *fe;

        while (dir && (fe = readdir(dir)) != NULL) {
            if (strstr(fe->d_name, ".tmp.") != NULL) {
                char *p = util_join(sub, fe->d_name);
                unlink(p);
                free(p);
            }
        }
        if (dir)
            closedir(dir);
        free(sub);
    }
    closedir(top);
    free(objects);
}

struct dest *dest_local_new(const char *name, const char *root, const struct dest_env *env,
                            struct cst_err *err)
{
    struct dest *d;
    struct local *l;

    if (util_mkdir_p(root, 0700, err) < 0) {
        cst_err_wrap(err, "destination %s", name);
        return NULL;
    }
    if (access(root, W_OK) < 0) {
        cst_err_sys(err, "destination %s: folder %s is not writable", name, root);
        return NULL;
    }
    remove_stale_temps(root);
    d = util_xcalloc(1, sizeof(*d));
    l = util_xcalloc(1, sizeof(*l));
    l->root = util_xstrdup(root);
    l->pool = env ? env->pool : NULL;
    d->ops = &dest_local_ops;
    /* Durability is paid per batch (one syncfs), so batches are large and one at a time. */
    d->max_batch = 256;
    d->max_concurrent = 1;
    d->name = util_xstrdup(name);
    d->impl = l;
    return d;
}
