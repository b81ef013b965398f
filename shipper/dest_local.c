/*
 * dest_local.c - the `local` destination: a folder on a mounted disk/NAS.
 *
 * Durability is paid per batch: every object of the batch is written to a
 * temporary name (hard-linked from the spool when both share a filesystem,
 * so its bytes reach the disk once), one syncfs() makes them all durable
 * together, then each is renamed into place and each touched folder is
 * fsynced once. A crash leaves
 * at most ".tmp." files, which the next batch in that folder ignores and
 * start-up removes. Each object is then read back and its SHA-256 compared.
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

static void store_batch(struct dest *d, struct dest_put *items, size_t n)
{
    struct cst_err cerr;
    struct cst_err *err = &cerr;
    struct local *l = d->impl;
    char **tmp = util_xcalloc(n, sizeof(char *));
    char **final = util_xcalloc(n, sizeof(char *));
    char **dirs = util_xcalloc(n, sizeof(char *));
    size_t ndirs = 0;
    int rootfd = -1;

    for (size_t i = 0; i < n; i++) {
        struct dest_put *it = &items[i];
        char *dir, *slash;
        int in = -1, out = -1;
        struct stat sb;

        it->ok = 0;
        it->kind = DEST_ERR_TRANSIENT;
        final[i] = util_join(l->root, it->remote_key);
        dir = util_xstrdup(final[i]);
        slash = strrchr(dir, '/');
        *slash = '\0';
        if (util_mkdir_p(dir, 0700, NULL) < 0) {
            snprintf(it->error, sizeof(it->error), "cannot create folder %s: %s", dir,
                     strerror(errno));
            free(dir);
            continue;
        }
        size_t k;
        for (k = 0; k < ndirs && strcmp(dirs[k], dir) != 0; k++)
            ;
        if (k == ndirs)
            dirs[ndirs++] = dir;
        else
            free(dir);
        tmp[i] = util_printf("%s.tmp.%d.%zu", final[i], (int)getpid(), i);
        in = open(it->spool_path, O_RDONLY | O_CLOEXEC);
        if (in < 0 || fstat(in, &sb) < 0 || (uint64_t)sb.st_size != it->stored_size) {
            it->kind = DEST_ERR_SOURCE;
            snprintf(it->error, sizeof(it->error), "spool file %s is missing or truncated",
                     it->spool_path);
            goto next;
        }
        /* Same filesystem as the spool: the sealed file itself becomes the copy (a
         * hard link), so its bytes are written to disk once, not twice. */
        if (link(it->spool_path, tmp[i]) == 0) {
            struct stat linked;

            /* Only one destination may own the spool's inode: two "copies" sharing
             * one inode would be one copy. Another got there first: copy instead. */
            if (stat(tmp[i], &linked) == 0 && linked.st_nlink == 2) {
                it->ok = 1;
                goto next;
            }
            unlink(tmp[i]);
        }
        out = open(tmp[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0 || copy_fd(in, out) < 0) {
            snprintf(it->error, sizeof(it->error), "cannot write %s: %s", tmp[i], strerror(errno));
            if (out >= 0)
                close(out);
            out = -1;
            unlink(tmp[i]);
            goto next;
        }
        if (close(out) < 0) {
            out = -1;
            snprintf(it->error, sizeof(it->error), "cannot write %s: %s", tmp[i], strerror(errno));
            unlink(tmp[i]);
            goto next;
        }
        out = -1;
        it->ok = 1; /* written; not yet durable */
    next:
        if (in >= 0)
            close(in);
    }

    /* One sync for the whole batch: concurrent writeback shares the journal commit. */
    rootfd = open(l->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0 || syncfs(rootfd) < 0) {
        cst_err_sys(err, "cannot sync destination %s (%s)", d->name, l->root);
        for (size_t i = 0; i < n; i++)
            if (items[i].ok) {
                items[i].ok = 0;
                unlink(tmp[i]);
                snprintf(items[i].error, sizeof(items[i].error), "%s", err->msg);
            }
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!items[i].ok)
            continue;
        if (rename(tmp[i], final[i]) < 0) {
            items[i].ok = 0;
            snprintf(items[i].error, sizeof(items[i].error), "cannot rename %s: %s", tmp[i],
                     strerror(errno));
            unlink(tmp[i]);
        }
    }
    for (size_t k = 0; k < ndirs; k++) {
        struct cst_err derr;

        if (util_fsync_dir(dirs[k], &derr) < 0) {
            /* Renames in that folder may not survive a power cut: not verified. */
            size_t len = strlen(dirs[k]);
            for (size_t i = 0; i < n; i++)
                if (items[i].ok && strncmp(final[i], dirs[k], len) == 0 && final[i][len] == '/') {
                    items[i].ok = 0;
                    snprintf(items[i].error, sizeof(items[i].error), "%s", derr.msg);
                }
        }
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char sha[32];
        uint64_t size;

        if (!items[i].ok)
            continue;
        if (hash_file(final[i], sha, &size) < 0 || size != items[i].stored_size ||
            memcmp(sha, items[i].stored_sha256, 32) != 0) {
            items[i].ok = 0;
            /* Was the copy bad, or the spool file it came from? */
            if (hash_file(items[i].spool_path, sha, &size) == 0 &&
                (size != items[i].stored_size || memcmp(sha, items[i].stored_sha256, 32) != 0))
                items[i].kind = DEST_ERR_SOURCE;
            snprintf(items[i].error, sizeof(items[i].error),
                     "verification of %s failed: the stored copy differs from what was sealed",
                     final[i]);
        }
    }
out:
    if (rootfd >= 0)
        close(rootfd);
    for (size_t i = 0; i < n; i++) {
        free(tmp[i]);
        free(final[i]);
    }
    for (size_t k = 0; k < ndirs; k++)
        free(dirs[k]);
    free(tmp);
    free(final);
    free(dirs);
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

static void local_free(struct dest *d)
{
    struct local *l = d->impl;

    free(l->root);
    free(l);
}

static const struct dest_ops dest_local_ops = {
    .type = "local",
    .put_batch = local_put_batch,
    .get = local_get,
    .free = local_free,
    .exists = local_exists,
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
