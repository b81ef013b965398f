/*
 * restore.c - fetch, open, verify, place (see restore.h).
 *
 * Nothing is written where the operator will look until it has verified:
 * the plaintext goes to a temporary file beside the target, is checked
 * against the catalog's SHA-256 and size, and only then renamed into place
 * (renameat2 RENAME_NOREPLACE without --force, so a file that appeared
 * meanwhile is not clobbered either).
 */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/dests.h"
#include "agent/keys.h"
#include "common/util.h"
#include "shipper/container.h"

struct restorer {
    struct cli *cli;
    unsigned char public_key[32];
    unsigned char *secret_key;
    struct dest **dests;
    size_t n_dests;
    const char *from_dest;
    char *spool;
};

struct restorer *restorer_new(struct cli *cli, const char *from_dest, int need_secret, int *status)
{
    struct restorer *r;
    struct cst_err err;
    const struct cfg *cfg = cli->cfg;

    *status = EXIT_USAGE;
    if (need_secret && cfg->secret_key == NULL) {
        cli_fail(EXIT_USAGE,
                 "%s: [keys] secret_key is not set; restores need the backup secret key "
                 "(backup.key), which should live only where restores run",
                 cli->config_path);
        return NULL;
    }
    if (sodium_init() < 0) {
        *status = cli_fail(EXIT_FAILED, "libsodium failed to initialise");
        return NULL;
    }
    r = util_xcalloc(1, sizeof(*r));
    r->cli = cli;
    r->from_dest = from_dest;
    r->secret_key = sodium_malloc(32);
    if (r->secret_key == NULL || keys_load_public(cfg->public_key, r->public_key, &err) < 0 ||
        keys_load_secret(cfg->secret_key, "backup-secret-key", r->secret_key, 32, &err) < 0) {
        cli_fail(EXIT_USAGE, "%s", r->secret_key ? err.msg : "out of memory");
        restorer_free(r);
        return NULL;
    }
    if (from_dest) {
        size_t i;

        for (i = 0; i < cfg->n_dests && strcmp(cfg->dests[i].name, from_dest) != 0; i++)
            ;
        if (i == cfg->n_dests) {
            cli_fail(EXIT_USAGE, "no destination named %s in %s", from_dest, cli->config_path);
            restorer_free(r);
            return NULL;
        }
    }
    if (dests_open(cfg, NULL, &r->dests, &r->n_dests, &err) < 0) {
        *status = cli_fail(EXIT_FAILED, "%s", err.msg);
        restorer_free(r);
        return NULL;
    }
    r->spool = cli_state_path(cli, "spool");
    if (util_mkdir_p(r->spool, 0700, &err) < 0) {
        *status = cli_fail(EXIT_FAILED, "%s", err.msg);
        restorer_free(r);
        return NULL;
    }
    *status = EXIT_OK;
    return r;
}

void restorer_free(struct restorer *r)
{
    if (r == NULL)
        return;
    if (r->secret_key)
        sodium_free(r->secret_key);
    dests_free(r->dests, r->n_dests);
    free(r->spool);
    free(r);
}

/* Decrypt v's object into out_fd (from offset 0, truncated first) and check it. */
/* What to fetch: where each destination keeps it, and what it must turn out to be. */
struct wanted {
    const char *what; /* for messages: "object <id>", or a daily artifact's key */
    char *(*key_on)(struct restorer *r, struct dest *d, const void *arg); /* NULL: not there */
    const void *arg;
    int sealed;                  /* a container to open, or plain bytes */
    const unsigned char *sha256; /* of the plaintext (sealed), or of the bytes as stored */
    int64_t size;
};

/* Plain bytes from in_fd to out_fd, hashed on the way. */
static int copy_hashing(int in_fd, int out_fd, unsigned char sha[32], uint64_t *size)
{
    char buf[1 << 16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 32;
    ssize_t n;

    *size = 0;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = util_read_full(in_fd, buf, sizeof(buf))) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        *size += (uint64_t)n;
        if (util_write_all(out_fd, buf, (size_t)n) < 0)
            n = -1;
        if (n < 0)
            break;
    }
    EVP_DigestFinal_ex(ctx, sha, &len);
    EVP_MD_CTX_free(ctx);
    return n < 0 ? -1 : 0;
}

/* Fetch w from the first destination that holds it (only --from's, if given), check
 * it, and write it to out_fd (truncated first); a bad copy makes the next one tried. */
static int fetch_checked(struct restorer *r, const struct wanted *w, int out_fd,
                         struct cst_err *err)
{
    int tried = 0, rc = -1;

    for (size_t d = 0; d < r->n_dests && rc < 0; d++) {
        struct dest *dest = r->dests[d];
        char *key, *obj_path;
        unsigned char sha[32];
        uint64_t size;
        int obj_fd;

        if (r->from_dest && strcmp(dest->name, r->from_dest) != 0)
            continue;
        key = w->key_on(r, dest, w->arg);
        if (key == NULL)
            continue;
        tried++;
        obj_path = util_join(r->spool, "fetch.XXXXXX");
        obj_fd = mkostemp(obj_path, O_CLOEXEC);
        if (obj_fd < 0) {
            cst_err_sys(err, "cannot create a temporary file in %s", r->spool);
            free(obj_path);
            free(key);
            return -1;
        }
        unlink(obj_path);
        free(obj_path);
        if (dest->ops->get(dest, key, obj_fd, err) == 0 && lseek(obj_fd, 0, SEEK_SET) == 0 &&
            ftruncate(out_fd, 0) == 0 && lseek(out_fd, 0, SEEK_SET) == 0) {
            if (w->sealed &&
                crypt_open_fd(obj_fd, out_fd, r->public_key, r->secret_key, sha, &size, err) < 0)
                cst_err_wrap(err, "%s on destination %s", w->what, dest->name);
            else if (!w->sealed && copy_hashing(obj_fd, out_fd, sha, &size) < 0)
                cst_err_sys(err, "copy of %s failed", w->what);
            else if (memcmp(sha, w->sha256, 32) != 0 || (int64_t)size != w->size)
                cst_err_set(err,
                            "integrity error: %s from destination %s is not the content the "
                            "catalog recorded",
                            w->what, dest->name);
            else
                rc = 0;
        }
        close(obj_fd);
        free(key);
        if (rc < 0 && r->from_dest == NULL && d + 1 < r->n_dests)
            fprintf(stderr, "custodian: %s; trying the next destination\n", err->msg);
    }
    if (tried == 0)
        return cst_err_set(err, "no %scopy of %s is recorded", r->from_dest ? "such " : "",
                           w->what);
    return rc;
}

static char *object_key_on(struct restorer *r, struct dest *d, const void *arg)
{
    return catalog_copy_key(r->cli->cat, arg, d->name);
}

static int fetch_verified(struct restorer *r, const struct catalog_version *v, int out_fd,
                          struct cst_err *err)
{
    char what[80];
    struct wanted w = {what, object_key_on, v->object_id, 1, v->sha256, v->size};

    snprintf(what, sizeof(what), "object %s", v->object_id);
    return fetch_checked(r, &w, out_fd, err);
}

int restorer_to_fd(struct restorer *r, const struct catalog_version *v, int out_fd,
                   struct cst_err *err)
{
    char *tmp = util_join(r->spool, "restore.XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC), rc = -1;
    char buf[1 << 16];

    if (fd < 0) {
        cst_err_sys(err, "cannot create a temporary file in %s", r->spool);
        free(tmp);
        return -1;
    }
    unlink(tmp);
    free(tmp);
    if (v->kind == CATALOG_SYMLINK) {
        close(fd);
        return cst_err_set(err, "%s is a symlink (to %s); restore it with --to", v->path,
                           v->link_target);
    }
    if (fetch_verified(r, v, fd, err) < 0 || lseek(fd, 0, SEEK_SET) != 0)
        goto out;
    for (;;) {
        ssize_t n = util_read_full(fd, buf, sizeof(buf));

        if (n < 0) {
            cst_err_sys(err, "read of temporary file failed");
            goto out;
        }
        if (n == 0)
            break;
        if (util_write_all(out_fd, buf, (size_t)n) < 0) {
            cst_err_sys(err, "write to output failed");
            goto out;
        }
    }
    rc = 0;
out:
    close(fd);
    return rc;
}

/* Put content at out_path: written by fill() into a temporary file beside it,
 * made durable, then renamed into place (never over an existing file without
 * force) and the folder synced. On failure nothing is left behind. fill is NULL
 * for a symlink to link_target. */
static int place(const char *out_path, int force,
                 int (*fill)(void *arg, int fd, struct cst_err *err), void *arg,
                 const char *link_target, int64_t mtime_ns, struct cst_err *err)
{
    char *copy = util_xstrdup(out_path), *dir = dirname(copy);
    char *base_copy = util_xstrdup(out_path), *base = basename(base_copy);
    char *tmp = NULL;
    int fd = -1, rc = -1;

    if (!force && access(out_path, F_OK) == 0) {
        cst_err_set(err, "%s exists; restore elsewhere with --to, or replace it with --force",
                    out_path);
        goto out;
    }
    if (util_mkdir_p(dir, 0700, err) < 0)
        goto out;
    tmp = util_printf("%s/.%s.custodian-restore.%d", dir, base, (int)getpid());
    if (fill == NULL) {
        unlink(tmp);
        if (symlink(link_target, tmp) < 0) {
            cst_err_sys(err, "cannot create symlink %s", tmp);
            goto out;
        }
    } else {
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            cst_err_sys(err, "cannot create %s", tmp);
            goto out;
        }
        if (fill(arg, fd, err) < 0)
            goto fail;
        if (mtime_ns > 0) {
            struct timespec times[2];

            times[0].tv_sec = times[1].tv_sec = (time_t)(mtime_ns / 1000000000);
            times[0].tv_nsec = times[1].tv_nsec = (long)(mtime_ns % 1000000000);
            futimens(fd, times);
        }
        if (fsync(fd) < 0) {
            cst_err_sys(err, "fsync of %s failed", tmp);
            goto fail;
        }
        if (close(fd) < 0) {
            fd = -1;
            cst_err_sys(err, "write of %s failed", tmp);
            goto fail;
        }
        fd = -1;
    }
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out_path, force ? 0 : RENAME_NOREPLACE) < 0) {
        cst_err_sys(err, "cannot move the restored file into place at %s", out_path);
        goto fail;
    }
    rc = util_fsync_dir(dir, err);
    goto out;
fail:
    unlink(tmp);
out:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(copy);
    free(base_copy);
    return rc;
}

struct fill_version {
    struct restorer *r;
    const struct catalog_version *v;
};

static int fill_version(void *arg, int fd, struct cst_err *err)
{
    struct fill_version *f = arg;

    return fetch_verified(f->r, f->v, fd, err);
}

int restorer_to_path(struct restorer *r, const struct catalog_version *v, const char *out_path,
                     int force, struct cst_err *err)
{
    struct fill_version f = {r, v};

    if (v->kind == CATALOG_SYMLINK)
        return place(out_path, force, NULL, NULL, v->link_target, 0, err);
    return place(out_path, force, fill_version, &f, NULL, v->mtime_ns, err);
}

const unsigned char *restorer_secret_key(struct restorer *r)
{
    return r->secret_key;
}

struct dest **restorer_dests(struct restorer *r, size_t *n)
{
    *n = r->n_dests;
    return r->dests;
}

static char *artifact_key_on(struct restorer *r, struct dest *d, const void *arg)
{
    const struct catalog_artifact *a = arg;

    if (catalog_artifact_has_copy(r->cli->cat, a->date, a->kind, d->name) != 1)
        return NULL;
    return util_xstrdup(a->remote_key);
}

int restorer_artifact_to_fd(struct restorer *r, const struct catalog_artifact *a, int out_fd,
                            struct cst_err *err)
{
    struct wanted w = {a->remote_key,
                       artifact_key_on,
                       a,
                       a->sealed,
                       a->sealed ? a->plain_sha256 : a->stored_sha256,
                       a->sealed ? a->plain_size : a->stored_size};

    return fetch_checked(r, &w, out_fd, err);
}

struct fill_artifact {
    struct restorer *r;
    const struct catalog_artifact *a;
};

static int fill_artifact(void *arg, int fd, struct cst_err *err)
{
    struct fill_artifact *f = arg;

    return restorer_artifact_to_fd(f->r, f->a, fd, err);
}

int restorer_artifact_to_path(struct restorer *r, const struct catalog_artifact *a,
                              const char *out_path, int force, struct cst_err *err)
{
    struct fill_artifact f = {r, a};

    return place(out_path, force, fill_artifact, &f, NULL, 0, err);
}

int restorer_check_copy(struct restorer *r, struct dest *d, const char *key,
                        const unsigned char plain_sha256[32], int64_t plain_size,
                        struct cst_err *err)
{
    char *tmp = util_join(r->spool, "check.XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC), out = open("/dev/null", O_WRONLY | O_CLOEXEC), rc = -1;
    unsigned char sha[32];
    uint64_t size;

    if (fd < 0 || out < 0) {
        cst_err_sys(err, "cannot create %s", tmp);
        goto out;
    }
    unlink(tmp);
    if (d->ops->get(d, key, fd, err) < 0 || lseek(fd, 0, SEEK_SET) != 0)
        goto out;
    if (crypt_open_fd(fd, out, r->public_key, r->secret_key, sha, &size, err) < 0)
        goto out;
    if (memcmp(sha, plain_sha256, 32) != 0 || (int64_t)size != plain_size) {
        cst_err_set(err, "integrity error: decrypts, but not to the content the catalog recorded");
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (out >= 0)
        close(out);
    free(tmp);
    return rc;
}
