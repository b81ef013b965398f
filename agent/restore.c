/*
 * restore.c - fetch, open, verify, place (see restore.h).
 *
 * Nothing is written where the operator will look until it has verified:
 * the plaintext goes to an anonymous file (O_TMPFILE) in the target's
 * folder, is checked against the catalog's SHA-256 and size, and only then
 * linked into place (never over an existing name without --force, so a file
 * that appeared meanwhile is not clobbered either). The target's folder is
 * found beneath the restore root without following any symlink
 * (common/beneath.c), and decryption stops at the recorded size, so neither a
 * planted link nor a forged object can make a restore write anywhere else or
 * any more.
 */
#include "restore.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/dests.h"
#include "agent/keys.h"
#include "common/beneath.h"
#include "common/json.h"
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
    int wait; /* --wait: an archived copy's thaw is waited for */
};

void restorer_set_wait(struct restorer *r, int wait)
{
    r->wait = wait;
}

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
    /* A secret key from another key set would make every object look damaged: say so. */
    if (need_secret && keys_check_backup_pair(cfg->public_key, cfg->secret_key, &err) < 0) {
        cli_fail(EXIT_USAGE, "%s", err.msg);
        return NULL;
    }
    r = util_xcalloc(1, sizeof(*r));
    r->cli = cli;
    r->from_dest = from_dest;
    r->secret_key = sodium_malloc(32);
    if (r->secret_key != NULL)
        sodium_memzero(r->secret_key, 32);
    /* Without need_secret (verify, thaws, the restore test on a host without the key) a
     * missing or unreadable secret key is no error: nothing is decrypted then. */
    if (r->secret_key == NULL || keys_load_public(cfg->public_key, r->public_key, &err) < 0 ||
        ((need_secret || (cfg->secret_key && access(cfg->secret_key, R_OK) == 0)) &&
         keys_load_secret(cfg->secret_key ? cfg->secret_key : "(no [keys] secret_key)",
                          "backup-secret-key", r->secret_key, 32, &err) < 0)) {
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

/* What to fetch: where each destination keeps it, and what it must turn out to be. */
struct wanted {
    const char *what; /* for messages: "object <id>", or a daily artifact's key */
    /* 1 and *key where d keeps it, 0 if d holds none, -1 and err if the catalog cannot say */
    int (*key_on)(struct restorer *r, struct dest *d, const void *arg, char **key,
                  struct cst_err *err);
    const void *arg;
    int sealed;                  /* a container to open, or plain bytes */
    const unsigned char *sha256; /* of the plaintext (sealed), or of the bytes as stored */
    int64_t size;
};

/* Plain bytes from in_fd to out_fd, hashed on the way. It stops writing at max bytes:
 * *size is then max + 1, which fails the caller's size check. */
static int copy_hashing(int in_fd, int out_fd, uint64_t max, unsigned char sha[32], uint64_t *size)
{
    char buf[1 << 16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 32;
    ssize_t n;

    *size = 0;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = util_read_full(in_fd, buf, sizeof(buf))) > 0) {
        if ((uint64_t)n > max - *size) {
            *size = max + 1;
            n = 0;
            break;
        }
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

/* GET key from dest, check it against w, write it to out_fd (truncated first). */
static int get_checked(struct restorer *r, const struct wanted *w, struct dest *dest,
                       const char *key, int out_fd, struct cst_err *err)
{
    unsigned char sha[32];
    uint64_t size;
    int obj_fd, rc = -1;

    obj_fd = beneath_scratch_file(r->spool, err);
    if (obj_fd < 0)
        return -1;
    if (dest->ops->get(dest, key, obj_fd, err) == 0 && lseek(obj_fd, 0, SEEK_SET) == 0 &&
        ftruncate(out_fd, 0) == 0 && lseek(out_fd, 0, SEEK_SET) == 0) {
        /* Never more than the recorded size: the hash is only known at the end. */
        if (w->sealed && crypt_open_fd_limit(obj_fd, out_fd, r->public_key, r->secret_key,
                                             (uint64_t)w->size, sha, &size, err) < 0)
            cst_err_wrap(err, "%s on destination %s", w->what, dest->name);
        else if (!w->sealed && copy_hashing(obj_fd, out_fd, (uint64_t)w->size, sha, &size) < 0)
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
    return rc;
}

/* --- archived copies: thawed first (RestoreObject), a job in the catalog --- */

/* The provider's expected thaw time (AWS's published figures), in hours. */
static int thaw_hours(const char *storage_class, const char *tier)
{
    int deep = strcmp(storage_class, "DEEP_ARCHIVE") == 0, bulk = strcmp(tier, "Bulk") == 0;

    return deep ? (bulk ? 48 : 12) : (bulk ? 12 : 5);
}

static const char *dest_tier(struct restorer *r, const struct dest *d)
{
    for (size_t i = 0; i < r->cli->cfg->n_dests; i++)
        if (strcmp(r->cli->cfg->dests[i].name, d->name) == 0)
            return cfg_restore_tiers[r->cli->cfg->dests[i].restore_tier];
    return "Standard";
}

static int audit_thaw(struct restorer *r, const struct catalog_restore_job *j, int64_t id,
                      struct cst_err *err)
{
    struct json detail;
    int rc;

    json_init(&detail);
    json_obj_begin(&detail);
    json_key(&detail, "job");
    json_int(&detail, id);
    json_key(&detail, "dest");
    json_str(&detail, j->dest);
    json_key(&detail, "key");
    json_str(&detail, j->remote_key);
    json_key(&detail, "tier");
    json_str(&detail, j->tier);
    json_obj_end(&detail);
    rc = catalog_audit(r->cli->cat, cli_user(), "restore_thaw", detail.buf, err);
    json_free(&detail);
    return rc;
}

/* The job thawing key on dest: the one recorded (an earlier run asked), or a new request. */
static int thaw_job(struct restorer *r, const struct wanted *w, struct dest *dest, const char *key,
                    const struct dest_stat *st, struct catalog_restore_job *j, struct cst_err *err)
{
    int64_t id, now = util_now_ms();
    char when[40];
    int rc = catalog_restore_job_find(r->cli->cat, dest->name, key, j, err);

    if (rc < 0)
        return -1;
    /* Asked again when none was asked, or the thawed copy it made has expired since. */
    if (rc == 1 && st->thaw != 0)
        return 0;
    if (rc == 1)
        catalog_restore_job_clear(j);
    j->dest = util_xstrdup(dest->name);
    j->remote_key = util_xstrdup(key);
    j->what = util_xstrdup(w->what);
    j->tier = util_xstrdup(dest_tier(r, dest));
    j->storage_class = util_xstrdup(st->storage_class);
    j->requested_at = now;
    j->requested_by = util_xstrdup(cli_user());
    j->expected_by = now + (int64_t)thaw_hours(st->storage_class, j->tier) * 3600000;
    j->status = util_xstrdup("pending");
    if (dest_thaw(dest, key, j->tier, 7, err) < 0)
        return -1;
    if (catalog_begin(r->cli->cat, err) < 0)
        return -1;
    if (catalog_restore_job_add(r->cli->cat, j, &id, err) < 0 || audit_thaw(r, j, id, err) < 0 ||
        catalog_commit(r->cli->cat, err) < 0) {
        catalog_rollback(r->cli->cat);
        return -1;
    }
    j->id = id;
    util_format_ms(j->expected_by, when, sizeof(when));
    fprintf(stderr,
            "custodian: %s on %s is in the archive class %s: thaw requested (restore job %lld, "
            "tier %s, expected within %d hours, by %s)\n",
            w->what, dest->name, st->storage_class, (long long)id, j->tier,
            thaw_hours(st->storage_class, j->tier), when);
    return 0;
}

/* A copy read: the thaw job that made it readable (a restore run again) is done. */
static int job_done(struct restorer *r, struct dest *dest, const char *key, struct cst_err *err)
{
    struct catalog_restore_job j;
    int rc = catalog_restore_job_find(r->cli->cat, dest->name, key, &j, err);

    if (rc == 1)
        rc = catalog_restore_job_set(r->cli->cat, j.id, "done", util_now_ms(), err);
    catalog_restore_job_clear(&j);
    return rc < 0 ? -1 : 0;
}

/* Until key on dest is readable: its thaw asked for (or the job an earlier run recorded
 * found), then waited for with --wait; without it, err says when to come back. 0 once it
 * can be read, -1. */
static int thaw_until_ready(struct restorer *r, const struct wanted *w, struct dest *dest,
                            const char *key, struct cst_err *err)
{
    struct catalog_restore_job j;
    struct dest_stat st;
    int64_t started = util_mono_ms(), pause_ms = 1000;
    char requested[40], expected[40];
    int rc = -1, needs;

    memset(&j, 0, sizeof(j));
    for (;;) {
        needs = dest_needs_thaw(dest, key, &st, err);
        if (needs <= 0) {
            rc = needs;
            break;
        }
        if (j.id == 0 && thaw_job(r, w, dest, key, &st, &j, err) < 0)
            break;
        util_format_ms(j.requested_at, requested, sizeof(requested));
        util_format_ms(j.expected_by, expected, sizeof(expected));
        if (!r->wait) {
            cst_err_set(err,
                        "%s on %s is being thawed from %s (restore job %lld, tier %s, requested "
                        "%s, expected by %s): run this restore again then, or with --wait; "
                        "`custodian restore jobs` lists what is pending",
                        w->what, dest->name, st.storage_class, (long long)j.id, j.tier, requested,
                        expected);
            break;
        }
        fprintf(stderr,
                "custodian: waiting for the thaw of %s on %s (restore job %lld, tier %s, "
                "requested %s, expected by %s): %lld s so far\n",
                w->what, dest->name, (long long)j.id, j.tier, requested, expected,
                (long long)((util_mono_ms() - started) / 1000));
        if (st.thaw == 0) {
            /* The provider knows of no thaw (it expired, or was never taken): ask again. */
            catalog_restore_job_clear(&j);
            continue;
        }
        usleep((useconds_t)pause_ms * 1000);
        if (pause_ms < 60000)
            pause_ms *= 2;
        if (pause_ms > 60000)
            pause_ms = 60000;
    }
    catalog_restore_job_clear(&j);
    return rc;
}

/* Thaw key on dest and fetch it once it is readable. */
static int fetch_thawed(struct restorer *r, const struct wanted *w, struct dest *dest,
                        const char *key, int out_fd, struct cst_err *err)
{
    if (thaw_until_ready(r, w, dest, key, err) < 0 || get_checked(r, w, dest, key, out_fd, err) < 0)
        return -1;
    return job_done(r, dest, key, err);
}

int restorer_thaw(struct restorer *r, struct dest *d, const char *key, const char *what,
                  struct cst_err *err)
{
    struct wanted w = {what, NULL, NULL, 0, NULL, 0};

    return thaw_until_ready(r, &w, d, key, err);
}

int restorer_thaw_done(struct restorer *r, struct dest *d, const char *key, struct cst_err *err)
{
    return job_done(r, d, key, err);
}

/* Fetch w from the first destination that holds it (only --from's, if given), check
 * it, and write it to out_fd (truncated first); a bad copy makes the next one tried. A
 * copy in an archive class is the last resort: thawed only when no other copy reads. */
static int fetch_checked(struct restorer *r, const struct wanted *w, int out_fd,
                         struct cst_err *err)
{
    int tried = 0, rc = -1;
    struct dest *archived = NULL;
    char *archived_key = NULL;

    for (size_t d = 0; d < r->n_dests && rc < 0; d++) {
        struct dest *dest = r->dests[d];
        struct dest_stat st;
        struct cst_err why;
        char *key;

        if (r->from_dest && strcmp(dest->name, r->from_dest) != 0)
            continue;
        switch (w->key_on(r, dest, w->arg, &key, err)) {
        case -1:
            free(archived_key);
            return -1;
        case 0:
            continue;
        }
        tried++;
        rc = get_checked(r, w, dest, key, out_fd, err);
        if (rc == 0 && job_done(r, dest, key, err) < 0)
            rc = -1;
        if (rc < 0 && archived == NULL && dest_needs_thaw(dest, key, &st, &why) == 1) {
            archived = dest;
            archived_key = key;
            key = NULL;
            fprintf(stderr,
                    "custodian: %s on %s is in the archive class %s; a copy that needs no thaw "
                    "is looked for first\n",
                    w->what, dest->name, st.storage_class);
        } else if (rc < 0 && r->from_dest == NULL && d + 1 < r->n_dests) {
            fprintf(stderr, "custodian: %s; trying the next destination\n", err->msg);
        }
        free(key);
    }
    if (rc < 0 && archived)
        rc = fetch_thawed(r, w, archived, archived_key, out_fd, err);
    free(archived_key);
    if (tried == 0)
        return cst_err_set(err, "no %scopy of %s is recorded", r->from_dest ? "such " : "",
                           w->what);
    return rc;
}

static int object_key_on(struct restorer *r, struct dest *d, const void *arg, char **key,
                         struct cst_err *err)
{
    return catalog_copy_key(r->cli->cat, arg, d->name, key, err);
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
    int fd, rc = -1;
    char buf[1 << 16];

    if (v->kind == CATALOG_SYMLINK)
        return cst_err_set(err, "%s is a symlink (to %s); restore it with --to", v->path,
                           v->link_target);
    fd = beneath_scratch_file(r->spool, err);
    if (fd < 0)
        return -1;
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

int restore_root_open(struct restore_root *root, const char *path, int create, struct cst_err *err)
{
    size_t n = strlen(path);

    /* Shown as "<path>/<rel>": without its trailing slashes ("/" becomes ""). */
    root->path = util_xstrdup(path);
    while (n > 0 && root->path[n - 1] == '/')
        root->path[--n] = '\0';
    /* The root is the operator's own choice (or a watched folder): symlinks up to it are
     * followed, as a shell would; none below it ever is. */
    if (create && util_mkdir_p(path, 0700, err) < 0) {
        free(root->path);
        root->path = NULL;
        root->fd = -1;
        return -1;
    }
    root->fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root->fd < 0) {
        cst_err_sys(err, "cannot open folder %s", path);
        free(root->path);
        root->path = NULL;
        return -1;
    }
    return 0;
}

void restore_root_close(struct restore_root *root)
{
    if (root->fd >= 0)
        close(root->fd);
    root->fd = -1;
    free(root->path);
    root->path = NULL;
}

/* Put content at rel beneath root: written by fill() into an anonymous file in the
 * target folder, made durable, then linked into place (never over an existing name
 * without force) and the folder synced. On failure nothing is left behind. fill is
 * NULL for a symlink to link_target. */
static int place(const struct restore_root *root, const char *rel, int force,
                 int (*fill)(void *arg, int fd, struct cst_err *err), void *arg,
                 const char *link_target, int64_t mtime_ns, struct cst_err *err)
{
    const char *leaf;
    char tmp_name[32];
    int dir_fd, fd = -1, named = 0, rc = -1;
    struct stat st;

    dir_fd = beneath_open_parent(root->fd, root->path, rel, 1, 0700, &leaf, err);
    if (dir_fd < 0)
        return -1;
    if (!force && fstatat(dir_fd, leaf, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        cst_err_set(err, "%s/%s exists; restore elsewhere with --to, or replace it with --force",
                    root->path, rel);
        goto out;
    }
    if (fill == NULL) {
        if (beneath_symlink(link_target, dir_fd, leaf, force, err) < 0)
            goto fail_named;
    } else {
        fd = beneath_tmpfile(dir_fd, &named, tmp_name, err);
        if (fd < 0)
            goto fail_named;
        if (fill(arg, fd, err) < 0)
            goto fail;
        if (mtime_ns > 0) {
            struct timespec times[2];

            times[0].tv_sec = times[1].tv_sec = (time_t)(mtime_ns / 1000000000);
            times[0].tv_nsec = times[1].tv_nsec = (long)(mtime_ns % 1000000000);
            futimens(fd, times);
        }
        if (fsync(fd) < 0) {
            cst_err_sys(err, "fsync of the file restored to %s/%s failed", root->path, rel);
            goto fail;
        }
        if (beneath_link(fd, named, tmp_name, dir_fd, leaf, force, err) < 0) {
            named = 0; /* beneath_link removed it */
            goto fail_named;
        }
        named = 0;
    }
    if (fsync(dir_fd) < 0) {
        cst_err_sys(err, "fsync of the folder of %s/%s failed", root->path, rel);
        goto out;
    }
    rc = 0;
    goto out;
fail_named:
    if (errno == EEXIST)
        cst_err_set(err, "%s/%s exists; restore elsewhere with --to, or replace it with --force",
                    root->path, rel);
    else
        cst_err_wrap(err, "%s/%s", root->path, rel);
fail:
    if (named)
        unlinkat(dir_fd, tmp_name, 0);
out:
    if (fd >= 0)
        close(fd);
    close(dir_fd);
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

int restorer_to_path(struct restorer *r, const struct catalog_version *v,
                     const struct restore_root *root, const char *rel, int force,
                     struct cst_err *err)
{
    struct fill_version f = {r, v};

    if (v->kind == CATALOG_SYMLINK)
        return place(root, rel, force, NULL, NULL, v->link_target, 0, err);
    return place(root, rel, force, fill_version, &f, NULL, v->mtime_ns, err);
}

int restorer_scratch_file(struct restorer *r, struct cst_err *err)
{
    return beneath_scratch_file(r->spool, err);
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

static int artifact_key_on(struct restorer *r, struct dest *d, const void *arg, char **key,
                           struct cst_err *err)
{
    const struct catalog_artifact *a = arg;
    int has = catalog_artifact_has_copy(r->cli->cat, a, d->name, err);

    if (has < 0)
        return -1;
    *key = has == 1 ? util_xstrdup(a->remote_key) : NULL;
    return has;
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
                              const struct restore_root *root, const char *rel, int force,
                              struct cst_err *err)
{
    struct fill_artifact f = {r, a};

    return place(root, rel, force, fill_artifact, &f, NULL, 0, err);
}

int restorer_check_copy(struct restorer *r, struct dest *d, const char *key,
                        const unsigned char plain_sha256[32], int64_t plain_size,
                        struct cst_err *err)
{
    int fd = beneath_scratch_file(r->spool, err), out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    unsigned char sha[32];
    uint64_t size;
    int rc = -1;

    if (fd < 0)
        goto out;
    if (out < 0) {
        cst_err_sys(err, "cannot open /dev/null");
        goto out;
    }
    if (d->ops->get(d, key, fd, err) < 0 || lseek(fd, 0, SEEK_SET) != 0)
        goto out;
    if (crypt_open_fd_limit(fd, out, r->public_key, r->secret_key, (uint64_t)plain_size, sha, &size,
                            err) < 0)
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
    return rc;
}
