/*
 * snapshot.c - making billing-cycle snapshots (see snapshot.h).
 *
 * One job at a time (flock on state_dir/snapshot.lock). A package is made in
 * four steps, each safe to interrupt:
 *
 *   1. read    the period, its invoices and timesheets off MongoDB cursors
 *              into unlinked temporary files (memory does not grow with the
 *              period); collect the files they reference and find each in
 *              the catalog: held (the live file still has the cataloged
 *              size, mtime and inode), a reference (refs.tsv: the live file
 *              changed or is gone), missing (never seen, after
 *              wait_for_files_minutes), or waited for (the job tries again)
 *   2. pack    stream the members through libarchive's tar + zstd into the
 *              container sealer, into state_dir/snapshots/<name>.partial; a
 *              held file whose bytes turn out not to be the cataloged
 *              SHA-256 becomes a reference and the package is made again.
 *              Three threads share the work through bounded buffers: this
 *              one reads and compresses, the tar writer's hasher checks
 *              each file's SHA-256 (snapshot_tar.h), and the sealer
 *              encrypts, hashes and writes the package (snapshot_seal.h)
 *   3. record  fsync, rename to <name>.cst, sign; then one transaction: the
 *              snapshot row, the versions it holds or references, an audit
 *              row. A crash before this leaves only files in the snapshots
 *              folder, which the next job removes: no row, nothing remote
 *   4. copy    the .cst and .sig to every destination lacking them,
 *              verified there; the spool file goes once all hold it. Copies
 *              still owed are retried by every later run (and made to a
 *              destination added later), from the spool or from another
 *              destination's ciphertext.
 */
#include "snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/archive_lib.h"
#include "agent/dests.h"
#include "agent/drain.h"
#include "agent/keys.h"
#include "agent/mongo_conn.h"
#include "agent/mongoc_lib.h"
#include "agent/periods.h"
#include "agent/sched.h"
#include "agent/snapshot_seal.h"
#include "agent/snapshot_tar.h"
#include "common/json.h"
#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"
#include "shipper/container.h"

#define LABEL_MAX 200
#define LABEL_CUT 180

/* --- names --- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n;
    unsigned min;
    unsigned cp;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xE0) == 0xC0)
        n = 2, min = 0x80, cp = s[0] & 0x1F;
    else if ((s[0] & 0xF0) == 0xE0)
        n = 3, min = 0x800, cp = s[0] & 0x0F;
    else if ((s[0] & 0xF8) == 0xF0)
        n = 4, min = 0x10000, cp = s[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

char *snapshot_escape_label(const char *label)
{
    const unsigned char *s = (const unsigned char *)label;
    size_t cap = strlen(label) * 3 + 1, len = 0, cut = 0;
    char *out = util_xmalloc(cap + 24);

    for (size_t i = 0; s[i];) {
        size_t n = utf8_len(s + i);
        int escape = n == 0 || s[i] < 0x20 || s[i] == 0x7F || s[i] == '/' || s[i] == '\\' ||
                     s[i] == '%' || s[i] == '~' || (i == 0 && s[i] == '.');

        if (escape) {
            snprintf(out + len, 4, "%%%02X", s[i]);
            len += 3;
            i++;
        } else {
            memcpy(out + len, s + i, n);
            len += n;
            i += n;
        }
        if (len <= LABEL_CUT)
            cut = len; /* the last boundary that fits */
    }
    out[len] = '\0';
    if (len > LABEL_MAX) {
        unsigned char md[32];
        unsigned int mdlen = 32;
        char hex[65];

        EVP_Digest(label, strlen(label), md, &mdlen, EVP_sha256(), NULL);
        util_hex(md, 32, hex);
        snprintf(out + cut, 18, "~%.16s", hex);
    }
    return out;
}

char *snapshot_package_name(const char *label, const char *close_date)
{
    char *esc = snapshot_escape_label(label);
    char *name = util_printf("snapshot_%s_%s.tar.zst", esc, close_date);

    free(esc);
    return name;
}

static char *key_with(const char *label, const char *close_date, const char *ext)
{
    char *name = snapshot_package_name(label, close_date);
    char *key = util_printf(SNAPSHOT_KEY_PREFIX "%.4s/%s%s", close_date, name, ext);

    free(name);
    return key;
}

char *snapshot_remote_key(const char *label, const char *close_date)
{
    return key_with(label, close_date, ".cst");
}

char *snapshot_sig_key(const char *label, const char *close_date)
{
    return key_with(label, close_date, ".sig");
}

int64_t snapshot_retain_until(const char *close_date, int months)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = 0, m = 0, d = 0, max;
    struct tm tm;

    if (sscanf(close_date, "%4d%2d%2d", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1)
        return 0;
    m += months;
    y += (m - 1) / 12;
    m = (m - 1) % 12 + 1;
    max = mdays[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    if (d > max)
        d = max;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    return (int64_t)timegm(&tm) * 1000;
}

const char *snapshot_class_on(const struct cfg_dest *d, int *archive)
{
    *archive = d->role == CFG_ROLE_ARCHIVE;
    if (d->type != CFG_DEST_S3)
        return NULL;
    if (d->archive_class) {
        *archive = 1;
        return d->archive_class;
    }
    /* An archive-role bucket without archive_class is archive storage by itself. */
    return *archive ? NULL : d->hot_class;
}

/* --- the signature --- */

static void sig_message(const unsigned char pkg[32], const unsigned char sealed[32],
                        unsigned char msg[64])
{
    memcpy(msg, pkg, 32);
    memcpy(msg + 32, sealed, 32);
}

static char *sig_text(const char *package, const struct crypt_sealed_info *info,
                      const unsigned char *sk)
{
    unsigned char msg[64], sig[64];
    char pkg_hex[65], sealed_hex[65], sig_hex[129];

    sig_message(info->plain_sha256, info->stored_sha256, msg);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
    util_hex(info->plain_sha256, 32, pkg_hex);
    util_hex(info->stored_sha256, 32, sealed_hex);
    util_hex(sig, 64, sig_hex);
    return util_printf("custodian snapshot-signature v1\n"
                       "package: %s\n"
                       "package-sha256: %s\n"
                       "package-size: %llu\n"
                       "sealed-sha256: %s\n"
                       "sealed-size: %llu\n"
                       "signs: Ed25519 over SHA-256(package) || SHA-256(sealed object), the 64 "
                       "bytes whose hex is above\n"
                       "signature: %s\n",
                       package, pkg_hex, (unsigned long long)info->plain_size, sealed_hex,
                       (unsigned long long)info->stored_size, sig_hex);
}

/* The value of "name: value" in text (a copy into out), or -1. */
static int sig_field(const char *text, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);

    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        size_t len = strcspn(line, "\n");

        if (len > n + 2 && strncmp(line, name, n) == 0 && line[n] == ':' && line[n + 1] == ' ') {
            snprintf(out, outlen, "%.*s", (int)(len - n - 2), line + n + 2);
            return 0;
        }
    }
    return -1;
}

int snapshot_sig_check(const char *text, const unsigned char pk[32], struct snapshot_sig *out,
                       struct cst_err *err)
{
    char pkg[80], sealed[80], sig_hex[160], size[32];
    unsigned char sig[64], msg[64];

    memset(out, 0, sizeof(*out));
    if (strncmp(text, "custodian snapshot-signature v1\n", 32) != 0 ||
        sig_field(text, "package", out->package, sizeof(out->package)) < 0 ||
        sig_field(text, "package-sha256", pkg, sizeof(pkg)) < 0 ||
        sig_field(text, "sealed-sha256", sealed, sizeof(sealed)) < 0 ||
        sig_field(text, "signature", sig_hex, sizeof(sig_hex)) < 0 ||
        util_unhex(pkg, out->package_sha256, 32) < 0 ||
        util_unhex(sealed, out->sealed_sha256, 32) < 0 || util_unhex(sig_hex, sig, 64) < 0)
        return cst_err_set(err, "the signature file is malformed");
    if (sig_field(text, "package-size", size, sizeof(size)) == 0)
        out->package_size = strtoull(size, NULL, 10);
    if (sig_field(text, "sealed-size", size, sizeof(size)) == 0)
        out->sealed_size = strtoull(size, NULL, 10);
    sig_message(out->package_sha256, out->sealed_sha256, msg);
    if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0)
        return cst_err_set(err, "the signature does not verify: the package, its signature file "
                                "or the key is not the one that made it");
    return 0;
}

/* --- the job --- */

struct job {
    struct cli *cli;
    const struct cfg *cfg;
    struct periods *periods;
    struct sched_zone *zone;
    char *dir; /* state_dir/snapshots */
    unsigned char public_key[32];
    unsigned char *sign_sk;
    int lock_fd;
    int failed, incomplete, made, waiting_n;
    char *errors;  /* what failed, "; " between */
    char *waiting; /* one line per period waiting for files */
};

static void append(char **list, const char *sep, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void append(char **list, const char *sep, const char *fmt, ...)
{
    char buf[CST_ERR_SIZE + 512], *more;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    more = util_printf("%s%s%s", *list ? *list : "", *list ? sep : "", buf);
    free(*list);
    *list = more;
}

static void job_fail(struct job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void job_fail(struct job *j, const char *fmt, ...)
{
    char buf[CST_ERR_SIZE + 512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    j->failed++;
    log_error("snapshot: %s", buf);
    append(&j->errors, "; ", "%s", buf);
}

struct spools {
    char **names;
    size_t n;
};

static int collect_spool(void *arg, const struct catalog_snapshot *s)
{
    struct spools *sp = arg;

    if (s->spool) {
        sp->names = util_xrealloc(sp->names, (sp->n + 1) * sizeof(char *));
        sp->names[sp->n++] = util_xstrdup(s->spool);
    }
    return 0;
}

/* Everything in the snapshots folder that no snapshot row needs: what an interrupted job
 * left (a .partial package, a package sealed but never recorded, a .sig being copied). */
static void remove_leftovers(struct job *j)
{
    struct spools sp = {NULL, 0};
    struct cst_err err;
    struct dirent *de;
    DIR *d;

    if (catalog_each_snapshot(j->cli->cat, collect_spool, &sp, &err) < 0) {
        log_warn("snapshot: cannot list snapshots, leftovers kept: %s", err.msg);
        goto out;
    }
    d = opendir(j->dir);
    while (d && (de = readdir(d)) != NULL) {
        int keep = de->d_name[0] == '.';

        for (size_t i = 0; i < sp.n && !keep; i++)
            keep = strcmp(sp.names[i], de->d_name) == 0;
        if (!keep) {
            char *path = util_join(j->dir, de->d_name);

            log_info("snapshot: removing what an interrupted job left file=%s", path);
            unlink(path);
            free(path);
        }
    }
    if (d)
        closedir(d);
out:
    for (size_t i = 0; i < sp.n; i++)
        free(sp.names[i]);
    free(sp.names);
}

static int job_open(struct job *j, struct cli *cli)
{
    struct cst_err err;
    char *lock_path;
    int rc;

    memset(j, 0, sizeof(*j));
    j->cli = cli;
    j->lock_fd = -1;
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    j->cfg = cli->cfg;
    if (!cfg_snapshots_on(j->cfg))
        return cli_fail(EXIT_USAGE,
                        "%s: billing-cycle snapshots are off: they need [mongodb] uri (and "
                        "[snapshots] enabled = yes)",
                        cli->config_path);
    /* Both libraries are needed by every job: loaded before anything is opened or recorded,
     * so that a missing one fails the command without a job record. */
    if (mongoc_lib_load(&err) < 0 || archive_lib_load(&err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    if (keys_load_public(j->cfg->public_key, j->public_key, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    j->sign_sk = sodium_malloc(64);
    if (j->sign_sk == NULL ||
        keys_load_secret(j->cfg->signing_key, "signing-secret-key", j->sign_sk, 64, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", j->sign_sk ? err.msg : "out of memory");
    j->zone = sched_zone_load(j->cfg->timezone, &err);
    if (j->zone == NULL)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if ((rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    j->dir = cli_state_path(cli, "snapshots");
    if (util_mkdir_p(j->dir, 0700, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    lock_path = cli_state_path(cli, "snapshot.lock");
    j->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock_path);
    /* One job at a time; a second one waits for the first. */
    if (j->lock_fd < 0 || flock(j->lock_fd, LOCK_EX) < 0)
        return cli_fail(EXIT_FAILED, "cannot take the snapshot lock in %s: %s", j->cfg->state_dir,
                        strerror(errno));
    return EXIT_OK;
}

static void job_close(struct job *j)
{
    periods_close(j->periods);
    sched_zone_free(j->zone);
    if (j->sign_sk)
        sodium_free(j->sign_sk);
    free(j->dir);
    free(j->errors);
    free(j->waiting);
    if (j->lock_fd >= 0)
        close(j->lock_fd);
    mongo_cleanup();
}

/* --- step 4: copies on every destination --- */

struct copy_plan {
    const struct cfg *cfg;
    const struct catalog_snapshot *s;
    int64_t *retained; /* per destination: the package's retain-until read back */
};

/* Per destination: the package in the archive class where that is archive storage (the
 * signature stays in the hot class, readable at once); both locked until retain_until where
 * the bucket has Object Lock. */
static void prepare_put(void *arg, const struct dest *d, size_t dest_index, size_t item,
                        struct dest_put *put)
{
    struct copy_plan *plan = arg;
    const struct cfg_dest *cd = &plan->cfg->dests[dest_index];
    int archive;
    const char *cls = snapshot_class_on(cd, &archive);

    (void)d;
    if (item == 0)
        put->storage_class = cls;
    if (cd->type == CFG_DEST_S3 && cd->object_lock)
        put->retain_until = plan->s->retain_until;
}

static void put_finished(void *arg, const struct dest *d, size_t dest_index, size_t item,
                         const struct dest_put *put)
{
    struct copy_plan *plan = arg;

    (void)d;
    if (item == 0 && put->ok)
        plan->retained[dest_index] = put->retained_until;
}

/* Where a destination holding it keeps the package's ciphertext: fetch it into the snapshots
 * folder (checked against the recorded SHA-256) so that it can be copied on. 0, or -1. */
static int fetch_ciphertext(struct job *j, const struct catalog_snapshot *s, const char *spool,
                            struct cst_err *err)
{
    struct dest **dests = NULL;
    size_t nd = 0;
    int rc = -1, tried = 0;

    if (dests_open(j->cfg, NULL, &dests, &nd, err) < 0)
        return -1;
    for (size_t d = 0; d < nd && rc < 0; d++) {
        char *tmp = util_printf("%s.fetch", spool);
        unsigned char sha[32];
        unsigned int n32 = 32;
        EVP_MD_CTX *ctx;
        char buf[1 << 16];
        ssize_t got;
        uint64_t size = 0;
        int fd;

        if (catalog_snapshot_has_copy(j->cli->cat, s->id, dests[d]->name) != 1) {
            free(tmp);
            continue;
        }
        tried++;
        fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            cst_err_sys(err, "cannot create %s", tmp);
            free(tmp);
            break;
        }
        if (dests[d]->ops->get(dests[d], s->remote_key, fd, err) == 0 &&
            lseek(fd, 0, SEEK_SET) == 0) {
            ctx = EVP_MD_CTX_new();
            EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
            while ((got = util_read_full(fd, buf, sizeof(buf))) > 0) {
                EVP_DigestUpdate(ctx, buf, (size_t)got);
                size += (uint64_t)got;
            }
            EVP_DigestFinal_ex(ctx, sha, &n32);
            EVP_MD_CTX_free(ctx);
            if (got < 0)
                cst_err_sys(err, "cannot read %s", tmp);
            else if (memcmp(sha, s->stored_sha256, 32) != 0 || (int64_t)size != s->stored_size)
                cst_err_set(err, "the copy on %s is not the sealed package the catalog recorded",
                            dests[d]->name);
            else if (fdatasync(fd) < 0 || rename(tmp, spool) < 0)
                cst_err_sys(err, "cannot keep the fetched package as %s", spool);
            else
                rc = 0;
        }
        close(fd);
        if (rc < 0)
            unlink(tmp);
        free(tmp);
    }
    dests_free(dests, nd);
    if (tried == 0)
        return cst_err_set(err, "no destination holds a copy of %s", s->remote_key);
    return rc;
}

/* Write the signature text beside the spool file (plain, as it is stored). */
static char *write_sig_file(struct job *j, const struct catalog_snapshot *s, struct cst_err *err)
{
    char *name = util_printf("%s.sig", s->spool ? s->spool : "package");
    char *path = util_join(j->dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    free(name);
    if (fd < 0 || util_write_all(fd, s->sig, strlen(s->sig)) < 0 || fdatasync(fd) < 0) {
        cst_err_sys(err, "cannot write %s", path);
        if (fd >= 0)
            close(fd);
        unlink(path);
        free(path);
        return NULL;
    }
    if (close(fd) < 0) {
        cst_err_sys(err, "cannot write %s", path);
        unlink(path);
        free(path);
        return NULL;
    }
    return path;
}

/*
 * Make the copies snapshot s still lacks. Returns 0 when every configured destination
 * holds it, 1 when the package is lost before any copy was made (the row is forgotten:
 * the period is packaged again), -1 when a copy failed (retried by the next run).
 */
static int copy_snapshot(struct job *j, struct catalog_snapshot *s)
{
    const struct cfg *cfg = j->cfg;
    struct cst_err err;
    unsigned mask = 0, have_any = 0;
    size_t lacking = 0;
    char *spool_path = NULL, *sig_path = NULL, *errors = NULL;
    struct dests_item items[2];
    unsigned char *ok = NULL;
    struct copy_plan plan = {cfg, s, NULL};
    struct dests_put_hooks hooks = {prepare_put, put_finished, &plan};
    int rc = -1;

    for (size_t d = 0; d < cfg->n_dests; d++) {
        if (catalog_snapshot_has_copy(j->cli->cat, s->id, cfg->dests[d].name) == 1) {
            have_any = 1;
        } else {
            lacking++;
            if (d < 32)
                mask |= 1u << d;
        }
    }
    if (lacking == 0) {
        rc = 0;
        goto done;
    }
    if (s->spool == NULL) {
        char *name = snapshot_package_name(s->label, s->close_date);

        s->spool = util_printf("%s.cst", name);
        free(name);
    }
    spool_path = util_join(j->dir, s->spool);
    if (access(spool_path, F_OK) < 0) {
        if (!have_any) {
            /* Sealed, recorded, never stored anywhere, and its bytes are gone: it does not
             * exist. Forget it so that the period is packaged again. */
            struct json jd;
            char *detail;

            json_init(&jd);
            json_obj_begin(&jd);
            json_key(&jd, "label");
            json_str(&jd, s->label);
            json_key(&jd, "close_date");
            json_str(&jd, s->close_date);
            json_key(&jd, "why");
            json_str(&jd, "the package was lost before any destination held it");
            json_obj_end(&jd);
            detail = util_xstrdup(jd.buf);
            json_free(&jd);

            log_warn("snapshot %s of %s was lost before any copy was made; it is made again",
                     s->label, s->close_date);
            if (catalog_begin(j->cli->cat, &err) < 0 ||
                catalog_snapshot_forget(j->cli->cat, s->id, &err) < 0 ||
                catalog_audit(j->cli->cat, "agent", "snapshot_forgotten", detail, &err) < 0 ||
                catalog_commit(j->cli->cat, &err) < 0) {
                catalog_rollback(j->cli->cat);
                job_fail(j, "snapshot %s of %s: %s", s->label, s->close_date, err.msg);
                free(detail);
                goto out;
            }
            free(detail);
            rc = 1;
            goto out;
        }
        if (fetch_ciphertext(j, s, spool_path, &err) < 0) {
            job_fail(j, "snapshot %s of %s: cannot copy it to the destinations lacking it: %s",
                     s->label, s->close_date, err.msg);
            goto out;
        }
        catalog_snapshot_set_spool(j->cli->cat, s->id, s->spool, &err);
    }
    sig_path = write_sig_file(j, s, &err);
    if (sig_path == NULL) {
        job_fail(j, "snapshot %s of %s: %s", s->label, s->close_date, err.msg);
        goto out;
    }
    memset(items, 0, sizeof(items));
    items[0].spool_path = spool_path;
    items[0].remote_key = s->remote_key;
    items[0].stored_size = (uint64_t)s->stored_size;
    memcpy(items[0].stored_sha256, s->stored_sha256, 32);
    items[0].plain_size = (uint64_t)s->plain_size;
    memcpy(items[0].plain_sha256, s->plain_sha256, 32);
    items[1].spool_path = sig_path;
    items[1].remote_key = s->sig_key;
    items[1].stored_size = items[1].plain_size = strlen(s->sig);
    {
        unsigned int n32 = 32;

        EVP_Digest(s->sig, strlen(s->sig), items[1].stored_sha256, &n32, EVP_sha256(), NULL);
        memcpy(items[1].plain_sha256, items[1].stored_sha256, 32);
    }
    ok = util_xcalloc(cfg->n_dests * 2 + 1, 1);
    plan.retained = util_xcalloc(cfg->n_dests + 1, sizeof(int64_t));
    dests_put_blocking(cfg, items, 2, mask, &hooks, ok, &errors);
    lacking = 0;
    if (catalog_begin(j->cli->cat, &err) < 0)
        goto record_failed;
    for (size_t d = 0; d < cfg->n_dests; d++) {
        int archive;
        const char *cls = snapshot_class_on(&cfg->dests[d], &archive);

        if (d < 32 && !(mask & (1u << d)))
            continue;
        if (!ok[d * 2] || !ok[d * 2 + 1]) {
            lacking++;
            continue;
        }
        if (catalog_snapshot_copy(j->cli->cat, s->id, cfg->dests[d].name, cls, plan.retained[d],
                                  util_now_ms(), &err) < 0 ||
            (archive && catalog_snapshot_archived(j->cli->cat, s->id, util_now_ms(), &err) < 0))
            goto record_failed;
        log_info("snapshot stored label=%s date=%s dest=%s key=%s%s%s%s", s->label, s->close_date,
                 cfg->dests[d].name, s->remote_key, cls ? " class=" : "", cls ? cls : "",
                 plan.retained[d] ? " locked=yes" : "");
    }
    if (catalog_snapshot_set_error(j->cli->cat, s->id, lacking ? errors : NULL, &err) < 0 ||
        catalog_commit(j->cli->cat, &err) < 0)
        goto record_failed;
    if (lacking) {
        job_fail(j, "snapshot %s of %s is not on every destination yet: %s", s->label,
                 s->close_date, errors ? errors : "?");
        goto out;
    }
    rc = 0;
done:
    if (s->spool) {
        char *path = util_join(j->dir, s->spool);

        if (catalog_snapshot_set_spool(j->cli->cat, s->id, NULL, &err) == 0)
            unlink(path);
        free(path);
        free(s->spool);
        s->spool = NULL;
    }
    goto out;
record_failed:
    catalog_rollback(j->cli->cat);
    job_fail(j, "snapshot %s of %s: %s", s->label, s->close_date, err.msg);
out:
    if (sig_path) {
        unlink(sig_path);
        free(sig_path);
    }
    free(spool_path);
    free(errors);
    free(ok);
    free(plan.retained);
    return rc;
}

struct owed {
    struct catalog_snapshot *list;
    size_t n;
    const struct cfg *cfg;
    struct catalog *cat;
};

static int collect_owed(void *arg, const struct catalog_snapshot *s)
{
    struct owed *o = arg;
    int lacks = s->spool != NULL;

    for (size_t d = 0; d < o->cfg->n_dests && !lacks; d++)
        lacks = catalog_snapshot_has_copy(o->cat, s->id, o->cfg->dests[d].name) != 1;
    if (!lacks)
        return 0;
    o->list = util_xrealloc(o->list, (o->n + 1) * sizeof(*o->list));
    /* A deep copy: the callback's row is freed after it returns. */
    struct catalog_snapshot *c = &o->list[o->n++];
    *c = *s;
    c->label = util_xstrdup(s->label);
    c->period_key = util_xstrdup(s->period_key);
    c->remote_key = util_xstrdup(s->remote_key);
    c->sig_key = util_xstrdup(s->sig_key);
    c->sig = util_xstrdup(s->sig);
    c->spool = s->spool ? util_xstrdup(s->spool) : NULL;
    c->verify_detail = s->verify_detail ? util_xstrdup(s->verify_detail) : NULL;
    c->last_error = s->last_error ? util_xstrdup(s->last_error) : NULL;
    return 0;
}

/* Copies owed by earlier runs (a destination down, one added since). */
static void copy_owed(struct job *j)
{
    struct owed o = {NULL, 0, j->cfg, j->cli->cat};
    struct cst_err err;

    if (catalog_each_snapshot(j->cli->cat, collect_owed, &o, &err) < 0) {
        job_fail(j, "%s", err.msg);
        return;
    }
    for (size_t i = 0; i < o.n; i++) {
        copy_snapshot(j, &o.list[i]);
        catalog_snapshot_clear(&o.list[i]);
    }
    free(o.list);
}

/* --- step 1: read the period --- */

enum file_state { F_HELD, F_REF, F_MISSING, F_WAIT };

struct file_ref {
    char *rel;     /* path under files_root, as the member files/<rel> */
    char *abs;     /* files_root/rel; NULL when rel is not a path under files_root */
    char *used_by; /* "invoice <id>" / "timesheet <id>" */
    enum file_state state;
    const char *why; /* static: why missing, or why a reference */
    int have_version;
    struct catalog_version v;
};

struct listed_id {
    bson_value_t value;
    char *json;
    char *used_by;
};

/* A temporary file holding a member until it goes into the package. Written through a
 * buffer: a member is thousands of short lines (a document, a SHA256SUMS line each). */
#define SIDE_BUF (64u << 10)

struct side {
    int fd;
    uint64_t len;   /* bytes written, buffered ones included */
    char *buf;      /* SIDE_BUF bytes, allocated at the first write */
    size_t pending; /* of buf, not yet written to fd */
};

struct build {
    struct job *j;
    const struct period *per;
    char close_date[SNAPSHOT_DATE_SIZE];
    int force;
    int64_t now;
    struct side invoices, timesheets, ids;
    int64_t n_invoices, n_timesheets, n_ids;
    char **seen; /* ids (Extended JSON) of the timesheets written, sorted once complete */
    size_t n_seen;
    struct listed_id *listed;
    size_t n_listed;
    struct file_ref *files;
    size_t n_files;
    char **notes; /* missing.txt lines that are not files: "-\t<why>" */
    size_t n_notes;
    int failed;
    struct cst_err err;
};

static int side_open(struct build *b, struct side *s)
{
    s->len = 0;
    s->buf = NULL;
    s->pending = 0;
    s->fd = open(b->j->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        char *tmp = util_join(b->j->dir, "side.XXXXXX");

        s->fd = mkostemp(tmp, O_CLOEXEC);
        if (s->fd >= 0)
            unlink(tmp);
        free(tmp);
    }
    if (s->fd < 0)
        return cst_err_sys(&b->err, "cannot create a temporary file in %s", b->j->dir);
    return 0;
}

static int side_flush(struct build *b, struct side *s)
{
    if (s->pending > 0 && util_write_all(s->fd, s->buf, s->pending) < 0)
        return cst_err_sys(&b->err, "cannot write a temporary file in %s", b->j->dir);
    s->pending = 0;
    return 0;
}

static int side_write(struct build *b, struct side *s, const void *buf, size_t len)
{
    if (s->buf == NULL)
        s->buf = util_xmalloc(SIDE_BUF);
    if (s->pending + len > SIDE_BUF && side_flush(b, s) < 0)
        return -1;
    if (len >= SIDE_BUF) {
        if (util_write_all(s->fd, buf, len) < 0)
            return cst_err_sys(&b->err, "cannot write a temporary file in %s", b->j->dir);
    } else {
        memcpy(s->buf + s->pending, buf, len);
        s->pending += len;
    }
    s->len += len;
    return 0;
}

/* Everything written, on disk, and the file at its start to be read into the package. */
static int side_rewind(struct build *b, struct side *s, const char *name)
{
    if (side_flush(b, s) < 0)
        return -1;
    if (lseek(s->fd, 0, SEEK_SET) != 0)
        return cst_err_sys(&b->err, "cannot read back %s", name);
    return 0;
}

static void side_close(struct side *s)
{
    if (s->fd > 0)
        close(s->fd);
    s->fd = -1;
    free(s->buf);
    s->buf = NULL;
    s->pending = 0;
}

/* "invoice {"$oid":"..."}" for messages and missing.txt. */
static char *doc_name(const char *kind, const bson_t *doc)
{
    bson_iter_t it;
    char *id, *out;

    if (!periods_field(doc, "_id", &it))
        return util_printf("%s (without _id)", kind);
    id = periods_value_json(bson_iter_value(&it));
    out = util_printf("%s %s", kind, id);
    free(id);
    return out;
}

static void note_missing(struct build *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_missing(struct build *b, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    /* One line each: tabs and newlines in ids or paths would break the format. */
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\t')
            *c = ' ';
    b->notes = util_xrealloc(b->notes, (b->n_notes + 1) * sizeof(char *));
    b->notes[b->n_notes++] = util_printf("-\t%s", buf);
}

/* The file a document references in field, if any. */
static void add_file_of(struct build *b, const bson_t *doc, const char *kind, const char *field,
                        const char *key)
{
    bson_iter_t it;
    const char *path;
    struct file_ref *f;
    char *who = doc_name(kind, doc);

    if (!periods_field(doc, field, &it) || BSON_ITER_HOLDS_NULL(&it)) {
        note_missing(b, "%s has no %s ([snapshots] %s)", who, field, key);
        free(who);
        return;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        note_missing(b, "%s: %s is a %s, not a path ([snapshots] %s)", who, field,
                     periods_type_name(bson_iter_type(&it)), key);
        free(who);
        return;
    }
    path = bson_iter_utf8(&it, NULL);
    b->files = util_xrealloc(b->files, (b->n_files + 1) * sizeof(*b->files));
    f = &b->files[b->n_files++];
    memset(f, 0, sizeof(*f));
    f->used_by = who;
    {
        const char *root = b->j->cfg->snap.files_root;
        size_t rl = strlen(root);
        const char *rel = path;
        int ok = 1;

        /* An absolute path is accepted when it lies under files_root. */
        if (path[0] == '/') {
            if (strcmp(root, "/") == 0)
                rel = path + 1;
            else if (strncmp(path, root, rl) == 0 && path[rl] == '/')
                rel = path + rl + 1;
            else
                ok = 0;
        }
        while (ok && rel[0] == '.' && rel[1] == '/')
            rel += 2;
        for (const char *p = rel; ok && *p;) {
            size_t n = strcspn(p, "/");

            if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.') || (n == 1 && p[0] == '.'))
                ok = 0;
            p += n;
            if (*p == '/')
                p++;
        }
        if (rel[0] == '\0' || rel[strlen(rel) - 1] == '/')
            ok = 0;
        f->rel = util_xstrdup(ok ? rel : path);
        f->abs =
            ok ? (strcmp(root, "/") == 0 ? util_printf("/%s", rel) : util_join(root, rel)) : NULL;
        if (!ok) {
            f->state = F_MISSING;
            f->why = "the path does not lie under [snapshots] files_root";
        }
    }
}

static int write_doc(struct build *b, struct side *s, const bson_t *doc)
{
    size_t len;
    char *json = periods_doc_json(doc, &len);
    int rc;

    if (json == NULL)
        return cst_err_set(&b->err, "a document of the period cannot be written as JSON");
    rc = side_write(b, s, json, len);
    if (rc == 0)
        rc = side_write(b, s, "\n", 1);
    bson_free(json);
    return rc;
}

/* The id as it goes in timesheet-ids.txt: 24 hex digits for an ObjectId, a string as it
 * is (escaped like paths), a number in decimal, anything else as Extended JSON. */
static char *id_text(const bson_value_t *v)
{
    char hex[25];

    switch (v->value_type) {
    case BSON_TYPE_OID:
        bson_oid_to_string(&v->value.v_oid, hex);
        return util_xstrdup(hex);
    case BSON_TYPE_UTF8:
        return pathenc_escape(v->value.v_utf8.str, v->value.v_utf8.len);
    case BSON_TYPE_INT32:
        return util_printf("%d", v->value.v_int32);
    case BSON_TYPE_INT64:
        return util_printf("%lld", (long long)v->value.v_int64);
    default:
        return periods_value_json(v);
    }
}

static int on_invoice(void *arg, const bson_t *doc)
{
    struct build *b = arg;
    const struct cfg_snapshots *m = &b->j->cfg->snap;
    bson_iter_t it, arr;

    if (write_doc(b, &b->invoices, doc) < 0)
        return -1;
    b->n_invoices++;
    add_file_of(b, doc, "invoice", m->invoice_file_field, "invoice_file_field");
    if (m->invoice_timesheets_field && periods_field(doc, m->invoice_timesheets_field, &it) &&
        !BSON_ITER_HOLDS_NULL(&it)) {
        char *who = doc_name("invoice", doc);

        if (BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &arr)) {
            while (bson_iter_next(&arr)) {
                struct listed_id *l;

                b->listed = util_xrealloc(b->listed, (b->n_listed + 1) * sizeof(*b->listed));
                l = &b->listed[b->n_listed++];
                bson_value_copy(bson_iter_value(&arr), &l->value);
                l->json = periods_value_json(&l->value);
                l->used_by = util_xstrdup(who);
            }
        } else {
            note_missing(b, "%s: %s is a %s, not an array of timesheet ids", who,
                         m->invoice_timesheets_field, periods_type_name(bson_iter_type(&it)));
        }
        free(who);
    }
    return 0;
}

static int on_timesheet(void *arg, const bson_t *doc)
{
    struct build *b = arg;
    bson_iter_t it;
    char *text;
    int rc;

    if (write_doc(b, &b->timesheets, doc) < 0)
        return -1;
    b->n_timesheets++;
    if (periods_field(doc, "_id", &it)) {
        b->seen = util_xrealloc(b->seen, (b->n_seen + 1) * sizeof(char *));
        b->seen[b->n_seen++] = periods_value_json(bson_iter_value(&it));
        text = id_text(bson_iter_value(&it));
        rc = side_write(b, &b->ids, text, strlen(text));
        if (rc == 0)
            rc = side_write(b, &b->ids, "\n", 1);
        free(text);
        b->n_ids++;
        if (rc < 0)
            return -1;
    }
    add_file_of(b, doc, "timesheet", b->j->cfg->snap.timesheet_file_field, "timesheet_file_field");
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_listed(const void *a, const void *b)
{
    return strcmp(((const struct listed_id *)a)->json, ((const struct listed_id *)b)->json);
}

static int cmp_file(const void *a, const void *b)
{
    return strcmp(((const struct file_ref *)a)->rel, ((const struct file_ref *)b)->rel);
}

static int seen(struct build *b, const char *json)
{
    return b->n_seen > 0 && bsearch(&json, b->seen, b->n_seen, sizeof(char *), cmp_str) != NULL;
}

/* The documents: invoices, the period's timesheets, then those invoices list besides. */
static int read_documents(struct build *b)
{
    struct periods *p = b->j->periods;
    bson_value_t *want = NULL;
    size_t n_want = 0;
    int rc;

    if (side_open(b, &b->invoices) < 0 || side_open(b, &b->timesheets) < 0 ||
        side_open(b, &b->ids) < 0)
        return -1;
    if (periods_each_invoice(p, b->per, on_invoice, b, &b->err) != 0 ||
        periods_each_timesheet(p, b->per, on_timesheet, b, &b->err) != 0)
        return -1;
    if (b->n_seen)
        qsort(b->seen, b->n_seen, sizeof(char *), cmp_str);
    if (b->n_listed) {
        qsort(b->listed, b->n_listed, sizeof(*b->listed), cmp_listed);
        want = util_xcalloc(b->n_listed, sizeof(*want));
        for (size_t i = 0; i < b->n_listed; i++) {
            if ((i > 0 && strcmp(b->listed[i].json, b->listed[i - 1].json) == 0) ||
                seen(b, b->listed[i].json))
                continue;
            want[n_want++] = b->listed[i].value; /* shallow: owned by listed */
        }
    }
    if (n_want) {
        rc = periods_each_timesheet_by_id(p, want, n_want, on_timesheet, b, &b->err);
        free(want);
        if (rc != 0)
            return -1;
        if (b->n_seen)
            qsort(b->seen, b->n_seen, sizeof(char *), cmp_str);
        /* Listed but nowhere to be found: missing, loudly, and still in timesheet-ids.txt. */
        for (size_t i = 0; i < b->n_listed; i++) {
            char *text;

            if ((i > 0 && strcmp(b->listed[i].json, b->listed[i - 1].json) == 0) ||
                seen(b, b->listed[i].json))
                continue;
            note_missing(b, "timesheet %s, listed on %s, is not in %s", b->listed[i].json,
                         b->listed[i].used_by, b->j->cfg->snap.timesheets_collection);
            text = id_text(&b->listed[i].value);
            rc = side_write(b, &b->ids, text, strlen(text));
            if (rc == 0)
                rc = side_write(b, &b->ids, "\n", 1);
            free(text);
            b->n_ids++;
            if (rc < 0)
                return -1;
        }
    } else {
        free(want);
    }
    /* One entry per path, in path order. */
    if (b->n_files) {
        size_t w = 0;

        qsort(b->files, b->n_files, sizeof(*b->files), cmp_file);
        for (size_t i = 0; i < b->n_files; i++) {
            if (w > 0 && strcmp(b->files[w - 1].rel, b->files[i].rel) == 0) {
                free(b->files[i].rel);
                free(b->files[i].abs);
                free(b->files[i].used_by);
                continue;
            }
            b->files[w++] = b->files[i];
        }
        b->n_files = w;
    }
    return 0;
}

/* Where each referenced file stands in the catalog. Returns how many are waited for. */
static size_t classify(struct build *b, int waiting_over)
{
    size_t wait = 0;

    for (size_t i = 0; i < b->n_files; i++) {
        struct file_ref *f = &b->files[i];
        struct cst_err err;
        struct stat st;
        int rc;

        if (f->abs == NULL)
            continue;
        if (f->have_version) {
            catalog_version_clear(&f->v);
            f->have_version = 0;
        }
        /* The newest version, even of a file deleted since: its object is the content. */
        rc = catalog_version_at(b->j->cli->cat, f->abs, INT64_MAX, &f->v, &err);
        if (rc < 0) {
            f->state = F_WAIT;
            f->why = "the catalog could not be read";
            wait++;
            continue;
        }
        if (rc == 0) {
            f->state = waiting_over ? F_MISSING : F_WAIT;
            f->why = "never seen by custodian: not in the catalog";
            wait += !waiting_over;
            continue;
        }
        f->have_version = 1;
        if (f->v.kind != CATALOG_FILE) {
            f->state = F_MISSING;
            f->why = "a symbolic link in the catalog, not a file";
        } else if (f->v.deleted_at) {
            f->state = F_REF;
            f->why = "deleted since it was shipped";
        } else if (lstat(f->abs, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != f->v.size ||
                   (int64_t)st.st_ino != f->v.inode ||
                   (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != f->v.mtime_ns) {
            f->state = F_REF;
            f->why = "changed since it was shipped";
        } else {
            f->state = F_HELD;
        }
    }
    return wait;
}

/* Some waited-for files exist on disk: the catalog may only be behind. */
static int some_on_disk(struct build *b)
{
    for (size_t i = 0; i < b->n_files; i++)
        if (b->files[i].state == F_WAIT && access(b->files[i].abs, F_OK) == 0)
            return 1;
    return 0;
}

static void build_free(struct build *b)
{
    side_close(&b->invoices);
    side_close(&b->timesheets);
    side_close(&b->ids);
    for (size_t i = 0; i < b->n_seen; i++)
        free(b->seen[i]);
    free(b->seen);
    for (size_t i = 0; i < b->n_listed; i++) {
        bson_value_destroy(&b->listed[i].value);
        free(b->listed[i].json);
        free(b->listed[i].used_by);
    }
    free(b->listed);
    for (size_t i = 0; i < b->n_files; i++) {
        free(b->files[i].rel);
        free(b->files[i].abs);
        free(b->files[i].used_by);
        if (b->files[i].have_version)
            catalog_version_clear(&b->files[i].v);
    }
    free(b->files);
    for (size_t i = 0; i < b->n_notes; i++)
        free(b->notes[i]);
    free(b->notes);
}

/* --- step 2: the package --- */

struct packing {
    struct build *b;
    struct tar_writer *tar;
    struct seal_pipe *seal;
    struct side sums;
    size_t unchecked; /* files added whose hash check_hashed has not seen yet */
    int64_t mtime;
    int64_t files, refs, missing, file_bytes, ref_bytes;
};

/* A SHA256SUMS line as sha256sum writes it (names holding '\' or a newline escaped, the
 * line then starting with '\'). */
static int sum_line(struct packing *pk, const char *name, const unsigned char sha[32])
{
    char hex[65];
    int escape = strpbrk(name, "\\\n") != NULL;
    char *line, *shown = util_xmalloc(strlen(name) * 2 + 1);
    size_t n = 0;
    int rc;

    for (const char *c = name; *c; c++) {
        if (escape && (*c == '\\' || *c == '\n')) {
            shown[n++] = '\\';
            shown[n++] = *c == '\n' ? 'n' : '\\';
        } else {
            shown[n++] = *c;
        }
    }
    shown[n] = '\0';
    util_hex(sha, 32, hex);
    line = util_printf("%s%s  %s\n", escape ? "\\" : "", hex, shown);
    rc = side_write(pk->b, &pk->sums, line, strlen(line));
    free(line);
    free(shown);
    return rc;
}

static int member_mem(struct packing *pk, const char *name, const void *buf, size_t len)
{
    unsigned char sha[32];

    if (tar_add_mem(pk->tar, name, buf, len, pk->mtime, sha, &pk->b->err) < 0)
        return -1;
    return sum_line(pk, name, sha);
}

static int member_side(struct packing *pk, const char *name, struct side *s)
{
    unsigned char sha[32];

    if (side_rewind(pk->b, s, name) < 0)
        return -1;
    if (tar_add_fd(pk->tar, name, s->fd, s->len, pk->mtime, sha, &pk->b->err) < 0)
        return -1;
    return sum_line(pk, name, sha);
}

/* A held file whose bytes were not the cataloged ones: it is a reference now, and the
 * package must be made again. Returns 1. */
static int changed_while_packed(struct file_ref *f, const char *how)
{
    log_info("snapshot: %s %s; it is referenced instead path=%s", f->rel, how, f->abs);
    f->state = F_REF;
    f->why = "changed since it was shipped";
    return 1;
}

/* Check the member hashes the tar writer's hasher has finished (every one outstanding with
 * wait) against the catalog's, in member order, and list them in SHA256SUMS. 0, 1 a file's
 * bytes were not the cataloged ones (now a reference: pack again), -1 with b->err. */
static int check_hashed(struct packing *pk, int wait)
{
    unsigned char sha[32];
    size_t i;
    int got;

    while (pk->unchecked > 0 && (got = tar_hashed(pk->tar, wait, &i, sha)) != 0) {
        struct file_ref *f = &pk->b->files[i];
        char *name;
        int rc;

        pk->unchecked--;
        if (got < 0)
            return cst_err_set(&pk->b->err, "cannot compute the SHA-256 of %s (OpenSSL failed)",
                               f->abs);
        if (memcmp(sha, f->v.sha256, 32) != 0)
            return changed_while_packed(f, "live bytes are not the cataloged version");
        name = util_printf("files/%s", f->rel);
        rc = sum_line(pk, name, sha);
        free(name);
        if (rc < 0)
            return -1;
        pk->files++;
        pk->file_bytes += f->v.size;
    }
    return 0;
}

/* The held file files[i]. 0 added (its hash is checked by check_hashed, later) or found
 * changed before a byte went in (now a reference), 1 its bytes were not the cataloged ones
 * (now a reference: the package must be made again), -1 with b->err. */
static int member_file(struct packing *pk, size_t i)
{
    struct build *b = pk->b;
    struct file_ref *f = &b->files[i];
    char *name = util_printf("files/%s", f->rel);
    struct stat st;
    int fd = open(f->abs, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), rc = -1;

    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size != f->v.size ||
        (int64_t)st.st_ino != f->v.inode ||
        (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec != f->v.mtime_ns) {
        f->state = F_REF;
        f->why = "changed since it was shipped";
        rc = 0;
        goto out;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    if (pk->unchecked == TAR_HASHED_MAX && (rc = check_hashed(pk, 1)) != 0)
        goto out;
    rc = tar_add_fd_hashed(pk->tar, name, fd, (uint64_t)st.st_size, st.st_mtim.tv_sec, i, &b->err);
    pk->unchecked++; /* a result even after a failure */
    if (rc < 0) {
        if (seal_pipe_error(pk->seal) != NULL)
            goto out;
        /* The live file changed under us (shorter, unreadable): the catalog's object is
         * the content; this package is abandoned and made again. */
        rc = changed_while_packed(f, "changed while it was packaged");
        goto out;
    }
    rc = check_hashed(pk, 0);
out:
    if (fd >= 0)
        close(fd);
    free(name);
    return rc;
}

static int member_refs(struct packing *pk)
{
    struct side s;
    int rc = side_open(pk->b, &s);
    const char *head = "path\tversion\tobject_id\tsha256\tsize\n";

    if (rc == 0)
        rc = side_write(pk->b, &s, head, strlen(head));
    for (size_t i = 0; rc == 0 && i < pk->b->n_files; i++) {
        struct file_ref *f = &pk->b->files[i];
        char sha[65], *line, *shown;

        if (f->state != F_REF)
            continue;
        util_hex(f->v.sha256, 32, sha);
        shown = pathenc_escape(f->rel, strlen(f->rel));
        line = util_printf("%s\t%lld\t%s\t%s\t%lld\n", shown, (long long)f->v.id, f->v.object_id,
                           sha, (long long)f->v.size);
        rc = side_write(pk->b, &s, line, strlen(line));
        free(line);
        free(shown);
        pk->refs++;
        pk->ref_bytes += f->v.size;
    }
    if (rc == 0)
        rc = member_side(pk, "refs.tsv", &s);
    side_close(&s);
    return rc;
}

static int member_missing(struct packing *pk)
{
    struct side s;
    int rc = side_open(pk->b, &s);
    const char *head = "path\twhy\n";

    if (rc == 0)
        rc = side_write(pk->b, &s, head, strlen(head));
    for (size_t i = 0; rc == 0 && i < pk->b->n_files; i++) {
        struct file_ref *f = &pk->b->files[i];
        char *line, *shown;

        if (f->state != F_MISSING)
            continue;
        shown = pathenc_escape(f->rel, strlen(f->rel));
        line = util_printf("%s\t%s (referenced by %s)\n", shown, f->why, f->used_by);
        for (char *c = line + strlen(shown) + 1; *c && c[1]; c++)
            if (*c == '\t' || *c == '\n')
                *c = ' ';
        rc = side_write(pk->b, &s, line, strlen(line));
        free(line);
        free(shown);
        pk->missing++;
    }
    for (size_t i = 0; rc == 0 && i < pk->b->n_notes; i++) {
        rc = side_write(pk->b, &s, pk->b->notes[i], strlen(pk->b->notes[i]));
        if (rc == 0)
            rc = side_write(pk->b, &s, "\n", 1);
        pk->missing++;
    }
    if (rc == 0)
        rc = member_side(pk, "missing.txt", &s);
    side_close(&s);
    return rc;
}

static int member_manifest(struct packing *pk)
{
    struct build *b = pk->b;
    const struct cfg_snapshots *m = &b->j->cfg->snap;
    struct json j;
    int rc;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "format");
    json_str(&j, "custodian billing-cycle snapshot v1");
    json_key(&j, "label");
    json_str(&j, b->per->label);
    json_key(&j, "period_key");
    json_raw(&j, b->per->key_json);
    json_key(&j, "start");
    json_time(&j, b->per->start);
    json_key(&j, "end");
    json_time(&j, b->per->end);
    json_key(&j, "closed");
    json_time(&j, b->per->closed ? b->per->closed_at : 0);
    json_key(&j, "close_date");
    json_str(&j, b->close_date);
    json_key(&j, "created");
    json_time(&j, b->now);
    json_key(&j, "complete");
    json_bool(&j, pk->missing == 0);
    json_key(&j, "counts");
    json_obj_begin(&j);
    json_key(&j, "invoices");
    json_int(&j, b->n_invoices);
    json_key(&j, "timesheets");
    json_int(&j, b->n_timesheets);
    json_key(&j, "timesheet_ids");
    json_int(&j, b->n_ids);
    json_key(&j, "files");
    json_int(&j, pk->files);
    json_key(&j, "refs");
    json_int(&j, pk->refs);
    json_key(&j, "missing");
    json_int(&j, pk->missing);
    json_obj_end(&j);
    json_key(&j, "bytes");
    json_obj_begin(&j);
    json_key(&j, "files");
    json_int(&j, pk->file_bytes);
    json_key(&j, "refs");
    json_int(&j, pk->ref_bytes);
    json_obj_end(&j);
    json_key(&j, "custodian_version");
    json_str(&j, CUSTODIAN_VERSION);
    json_key(&j, "timezone");
    json_str(&j, b->j->cfg->timezone);
    json_key(&j, "mapping");
    json_obj_begin(&j);
    json_key(&j, "periods");
    json_str(&j, m->periods_collection);
    json_key(&j, "period_key_field");
    json_str(&j, m->period_key_field);
    json_key(&j, "invoices");
    json_str(&j, m->invoices_collection);
    json_key(&j, "invoice_period_field");
    json_str(&j, m->invoice_period_field);
    json_key(&j, "invoice_file_field");
    json_str(&j, m->invoice_file_field);
    json_key(&j, "invoice_timesheets_field");
    json_str(&j, m->invoice_timesheets_field);
    json_key(&j, "timesheets");
    json_str(&j, m->timesheets_collection);
    json_key(&j, "timesheet_period_field");
    json_str(&j, m->timesheet_period_field);
    json_key(&j, "timesheet_file_field");
    json_str(&j, m->timesheet_file_field);
    json_key(&j, "files_root");
    json_str(&j, m->files_root);
    json_obj_end(&j);
    json_key(&j, "files");
    json_arr_begin(&j);
    for (size_t i = 0; i < b->n_files; i++) {
        const struct file_ref *f = &b->files[i];
        char sha[65];

        if (f->state != F_HELD && f->state != F_REF)
            continue;
        util_hex(f->v.sha256, 32, sha);
        json_obj_begin(&j);
        json_key(&j, "path");
        json_str(&j, f->rel);
        json_key(&j, "in");
        json_str(&j, f->state == F_HELD ? "package" : "refs.tsv");
        json_key(&j, "version");
        json_int(&j, f->v.id);
        json_key(&j, "object_id");
        json_str(&j, f->v.object_id);
        json_key(&j, "sha256");
        json_str(&j, sha);
        json_key(&j, "size");
        json_int(&j, f->v.size);
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_obj_end(&j);
    rc = member_mem(pk, "snapshot.json", j.buf, j.len);
    json_free(&j);
    return rc;
}

/* Write the whole package into partial. 0 done (*info filled), 1 a held file's bytes were
 * not the cataloged ones (it is a reference now: pack again), -1 with b->err. */
static int pack(struct build *b, const char *partial, struct crypt_sealed_info *info,
                struct packing *out)
{
    struct packing pk;
    int fd, rc = -1;
    size_t len;
    char *period = NULL;

    memset(&pk, 0, sizeof(pk));
    pk.b = b;
    pk.sums.fd = -1;
    pk.mtime = b->now / 1000;
    fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return cst_err_sys(&b->err, "cannot create %s", partial);
    /* Sealing runs on its own thread, overlapping tar + zstd on this one. */
    pk.seal = seal_pipe_new(b->j->public_key, fd, &b->err);
    if (pk.seal == NULL)
        goto out;
    pk.tar = tar_writer_new(seal_pipe_write, pk.seal, &b->err);
    if (pk.tar == NULL || side_open(b, &pk.sums) < 0)
        goto out;
    period = periods_doc_json(b->per->doc, &len);
    if (period == NULL) {
        cst_err_set(&b->err, "the period document cannot be written as JSON");
        goto out;
    }
    period = util_xrealloc(period, len + 2); /* bson_malloc is malloc */
    memcpy(period + len, "\n", 2);
    if (member_mem(&pk, "period.json", period, len + 1) < 0 ||
        member_side(&pk, "invoices.jsonl", &b->invoices) < 0 ||
        member_side(&pk, "timesheets.jsonl", &b->timesheets) < 0 ||
        member_side(&pk, "timesheet-ids.txt", &b->ids) < 0)
        goto out;
    for (size_t i = 0; i < b->n_files; i++) {
        if (b->files[i].state != F_HELD)
            continue;
        rc = member_file(&pk, i);
        if (rc != 0)
            goto out;
        rc = -1;
    }
    /* Every file's hash checked before the members that list them. */
    rc = check_hashed(&pk, 1);
    if (rc != 0)
        goto out;
    rc = -1;
    if (member_refs(&pk) < 0 || member_missing(&pk) < 0 || member_manifest(&pk) < 0 ||
        side_rewind(b, &pk.sums, "SHA256SUMS") < 0)
        goto out;
    {
        unsigned char sha[32];

        /* SHA256SUMS itself is the last member and lists every other. */
        if (tar_add_fd(pk.tar, "SHA256SUMS", pk.sums.fd, pk.sums.len, pk.mtime, sha, &b->err) < 0 ||
            tar_writer_finish(pk.tar, &b->err) < 0)
            goto out;
    }
    if (seal_pipe_finish(pk.seal, info, &b->err) < 0)
        goto out;
    if (fdatasync(fd) < 0) {
        cst_err_sys(&b->err, "cannot make %s durable", partial);
        goto out;
    }
    rc = 0;
out:
    /* A failure on the sealing thread is the cause of whatever failed here after it. */
    if (rc < 0 && pk.seal && seal_pipe_error(pk.seal))
        snprintf(b->err.msg, sizeof(b->err.msg), "cannot write the package %s: %s", partial,
                 seal_pipe_error(pk.seal));
    tar_writer_free(pk.tar); /* may still flush into the pipe: free it first */
    seal_pipe_free(pk.seal);
    pk.seal = NULL;
    side_close(&pk.sums);
    bson_free(period);
    if (close(fd) < 0 && rc == 0)
        rc = cst_err_sys(&b->err, "cannot write %s", partial);
    *out = pk;
    return rc;
}

/* --- step 3: record --- */

static char *snapshot_detail(const struct catalog_snapshot *s)
{
    struct json j;
    char hex[65], *out;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "label");
    json_str(&j, s->label);
    json_key(&j, "close_date");
    json_str(&j, s->close_date);
    json_key(&j, "period_key");
    json_raw(&j, s->period_key);
    json_key(&j, "complete");
    json_bool(&j, s->complete);
    json_key(&j, "invoices");
    json_int(&j, s->invoices);
    json_key(&j, "timesheets");
    json_int(&j, s->timesheets);
    json_key(&j, "files");
    json_int(&j, s->files);
    json_key(&j, "refs");
    json_int(&j, s->refs);
    json_key(&j, "missing");
    json_int(&j, s->missing);
    util_hex(s->plain_sha256, 32, hex);
    json_key(&j, "package_sha256");
    json_str(&j, hex);
    json_key(&j, "key");
    json_str(&j, s->remote_key);
    json_key(&j, "outcome");
    json_str(&j, s->complete ? "ok" : "incomplete");
    json_obj_end(&j);
    out = util_xstrdup(j.buf);
    json_free(&j);
    return out;
}

static int record(struct build *b, const char *spool_name, const struct crypt_sealed_info *info,
                  const struct packing *pk, struct catalog_snapshot *s)
{
    struct catalog *cat = b->j->cli->cat;
    char *package = snapshot_package_name(b->per->label, b->close_date), *detail;
    int rc = -1;

    memset(s, 0, sizeof(*s));
    s->label = util_xstrdup(b->per->label);
    s->period_key = util_xstrdup(b->per->key_json);
    snprintf(s->close_date, sizeof(s->close_date), "%s", b->close_date);
    s->closed_at = b->per->closed ? b->per->closed_at : 0;
    s->period_start = b->per->start;
    s->period_end = b->per->end;
    s->remote_key = snapshot_remote_key(b->per->label, b->close_date);
    s->sig_key = snapshot_sig_key(b->per->label, b->close_date);
    s->sig = sig_text(package, info, b->j->sign_sk);
    s->spool = util_xstrdup(spool_name);
    memcpy(s->plain_sha256, info->plain_sha256, 32);
    memcpy(s->stored_sha256, info->stored_sha256, 32);
    s->plain_size = (int64_t)info->plain_size;
    s->stored_size = (int64_t)info->stored_size;
    s->invoices = b->n_invoices;
    s->timesheets = b->n_timesheets;
    s->files = pk->files;
    s->refs = pk->refs;
    s->missing = pk->missing;
    s->file_bytes = pk->file_bytes;
    s->complete = pk->missing == 0;
    s->retain_until = snapshot_retain_until(b->close_date, b->j->cfg->delete_after_months);
    s->created_at = b->now;
    free(package);
    if (catalog_begin(cat, &b->err) < 0)
        return -1;
    if (catalog_snapshot_add(cat, s, &b->err) < 0)
        goto out;
    for (size_t i = 0; i < b->n_files; i++) {
        const struct file_ref *f = &b->files[i];

        if ((f->state == F_HELD || f->state == F_REF) &&
            catalog_snapshot_add_version(cat, s->id, f->v.id, f->state == F_HELD, &b->err) < 0)
            goto out;
    }
    detail = snapshot_detail(s);
    rc = catalog_audit(cat, "agent", "snapshot", detail, &b->err);
    free(detail);
    if (rc == 0)
        rc = catalog_commit(cat, &b->err);
out:
    if (rc < 0)
        catalog_rollback(cat);
    return rc;
}

/*
 * Package period per as of close_date. Returns 0 made (complete or not; *made filled),
 * 1 waiting for files not yet in the catalog, -1 failed (b->err).
 */
static int make_snapshot(struct job *j, const struct period *per, const char *close_date, int force,
                         struct catalog_snapshot *made)
{
    struct build b;
    struct crypt_sealed_info info;
    struct packing pk;
    char *name = snapshot_package_name(per->label, close_date);
    char *spool_name = util_printf("%s.cst", name);
    char *partial = util_printf("%s/%s.partial", j->dir, name);
    char *final = util_join(j->dir, spool_name);
    int64_t deadline = per->closed ? per->closed_at + j->cfg->snap.wait_for_files_ms : 0;
    int64_t t0 = util_mono_ms();
    int rc = -1, drained = 0;
    size_t wait;

    memset(&b, 0, sizeof(b));
    memset(&pk, 0, sizeof(pk));
    b.j = j;
    b.per = per;
    b.force = force;
    b.now = util_now_ms();
    b.invoices.fd = b.timesheets.fd = b.ids.fd = -1;
    snprintf(b.close_date, sizeof(b.close_date), "%s", close_date);
    if (read_documents(&b) < 0)
        goto fail;
    if (b.n_invoices == 0 && b.n_timesheets == 0 && !force) {
        /* A period key the app's documents never use reads as an empty period: never
         * packaged silently. An empty period that is real is packaged with --force. */
        const struct cfg_snapshots *m = &j->cfg->snap;

        cst_err_set(&b.err,
                    "no invoice has [snapshots] invoice_period_field %s = %s and no timesheet "
                    "has timesheet_period_field %s = %s (period_key_field %s): is the mapping "
                    "the app's? If the period really is empty, run `custodian snapshot %s "
                    "--force`",
                    m->invoice_period_field, per->key_json, m->timesheet_period_field,
                    per->key_json, m->period_key_field, per->label);
        goto fail;
    }
    for (;;) {
        wait = classify(&b, force || b.now >= deadline);
        if (wait == 0 || drained || cli_agent_running(j->cli) || !some_on_disk(&b))
            break;
        /* No agent ships them: scan and ship here, then look again. */
        char *st = NULL;

        files_drain(j->cli, &st);
        free(st);
        drained = 1;
    }
    if (wait > 0) {
        char until[40];

        util_format_ms(deadline, until, sizeof(until));
        append(&j->waiting, "\n",
               "%s (closed %s): %zu referenced files are not in the catalog "
               "yet; waiting until %s, then they are listed as missing",
               per->label, close_date, wait, until);
        j->waiting_n++;
        log_info("snapshot of %s waits for %zu files not yet in the catalog (until %s)", per->label,
                 wait, until);
        rc = 1;
        goto out;
    }
    for (;;) {
        rc = pack(&b, partial, &info, &pk);
        if (rc != 1)
            break;
    }
    if (rc < 0)
        goto fail;
    if (rename(partial, final) < 0 || util_fsync_dir(j->dir, &b.err) < 0) {
        cst_err_sys(&b.err, "cannot move the package into place at %s", final);
        goto fail;
    }
    if (record(&b, spool_name, &info, &pk, made) < 0)
        goto fail;
    log_info("snapshot made label=%s date=%s invoices=%lld timesheets=%lld files=%lld refs=%lld "
             "missing=%lld bytes=%llu ms=%lld",
             per->label, close_date, (long long)b.n_invoices, (long long)b.n_timesheets,
             (long long)pk.files, (long long)pk.refs, (long long)pk.missing,
             (unsigned long long)info.plain_size, (long long)(util_mono_ms() - t0));
    if (!made->complete)
        log_error("snapshot %s of %s is INCOMPLETE: %lld referenced files or documents are "
                  "missing (missing.txt in the package)",
                  per->label, close_date, (long long)pk.missing);
    rc = 0;
    goto out;
fail:
    unlink(partial);
    rc = -1;
    job_fail(j, "snapshot of %s (%s): %s", per->label, close_date, b.err.msg);
out:
    build_free(&b);
    free(name);
    free(spool_name);
    free(partial);
    free(final);
    return rc;
}

/* --- the two ways in --- */

static void close_date_of(struct job *j, const struct period *per, char out[SNAPSHOT_DATE_SIZE])
{
    char date[SCHED_DATE_SIZE];
    int64_t ms = per->closed ? per->closed_at : util_now_ms();
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);

    sched_local_date(j->zone, secs, date);
    snprintf(out, SNAPSHOT_DATE_SIZE, "%.4s%.2s%.2s%s", date, date + 5, date + 8,
             per->closed ? "" : "-open");
}

/* Package per unless it has a package for this close date; then make its copies. */
static int snapshot_period(struct job *j, const struct period *per, int force, int announce)
{
    char close_date[SNAPSHOT_DATE_SIZE];
    struct catalog_snapshot s;
    int rc, found;

    close_date_of(j, per, close_date);
    found = catalog_snapshot_find(j->cli->cat, per->key_json, close_date, &s);
    if (found < 0) {
        job_fail(j, "cannot read the catalog's snapshots");
        return -1;
    }
    if (found) {
        if (!announce) {
            /* --pending: its copies were seen to by copy_owed() already. */
            found = !s.complete;
            catalog_snapshot_clear(&s);
            return found ? 2 : 0;
        }
        printf("%s: made %s%s; a snapshot is never made twice for one close date\n", s.remote_key,
               close_date, s.complete ? "" : ", INCOMPLETE");
    } else {
        rc = make_snapshot(j, per, close_date, force, &s);
        if (rc != 0)
            return rc;
        j->made++;
        if (!s.complete)
            j->incomplete++;
        printf("made %s: %lld invoices, %lld timesheets, %lld files in the package, %lld by "
               "reference, %lld missing%s\n",
               s.remote_key, (long long)s.invoices, (long long)s.timesheets, (long long)s.files,
               (long long)s.refs, (long long)s.missing, s.complete ? "" : " (INCOMPLETE)");
    }
    rc = copy_snapshot(j, &s);
    if (rc == 1) {
        /* Lost before any copy: made again from the period as it is now. */
        catalog_snapshot_clear(&s);
        return snapshot_period(j, per, force, announce);
    }
    found = !s.complete;
    catalog_snapshot_clear(&s);
    return rc < 0 ? -1 : found ? 2 : 0;
}

static int connect_periods(struct job *j)
{
    struct cst_err err;

    j->periods = periods_open(j->cfg, &err);
    if (j->periods == NULL) {
        job_fail(j, "%s", err.msg);
        return -1;
    }
    if (periods_check(j->periods, NULL, NULL, &err) > 0) {
        job_fail(j, "the [snapshots] mapping does not match the app's data: %s", err.msg);
        return -1;
    }
    return 0;
}

static int pending_one(void *arg, struct period *per)
{
    struct job *j = arg;

    if (per->closed)
        snapshot_period(j, per, 0, 0);
    return 0;
}

int snapshot_pending(struct cli *cli)
{
    struct job j;
    struct cst_err err;
    int rc = job_open(&j, cli);

    if (rc != EXIT_OK) {
        job_close(&j);
        return rc;
    }
    remove_leftovers(&j);
    copy_owed(&j);
    if (connect_periods(&j) == 0 && periods_each(j.periods, pending_one, &j, &err) != 0)
        job_fail(&j, "%s", err.msg);
    if (catalog_snapshot_job_record(cli->cat, j.failed == 0, j.errors, j.waiting, util_now_ms(),
                                    &err) < 0)
        log_error("cannot record the snapshot job: %s", err.msg);
    if (j.failed)
        rc = cli_fail(EXIT_FAILED, "billing-cycle snapshots FAILED: %s", j.errors);
    else
        printf("billing-cycle snapshots: %d made%s, %d waiting for files\n", j.made,
               j.incomplete ? " (some INCOMPLETE: see missing.txt)" : "", j.waiting_n);
    job_close(&j);
    return rc;
}

int snapshot_label(struct cli *cli, const char *label, int force)
{
    struct job j;
    struct period per;
    struct cst_err err;
    int rc = job_open(&j, cli), found;

    if (rc != EXIT_OK) {
        job_close(&j);
        return rc;
    }
    remove_leftovers(&j);
    if (connect_periods(&j) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", j.errors);
        goto out;
    }
    found = periods_find_label(j.periods, label, &per, &err);
    if (found < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    if (found == 0) {
        rc = cli_fail(EXIT_FAILED, "no period in %s has %s = %s", j.cfg->snap.periods_collection,
                      j.cfg->snap.period_label_field, label);
        goto out;
    }
    if (!per.closed && !force) {
        rc = cli_fail(EXIT_FAILED,
                      "period %s is open (%s holds no date); snapshot it anyway with --force",
                      label, j.cfg->snap.period_closed_field);
        period_clear(&per);
        goto out;
    }
    rc = snapshot_period(&j, &per, force, 1);
    period_clear(&per);
    if (rc == 1)
        rc = cli_fail(EXIT_FAILED,
                      "the snapshot of %s waits for files not yet in the catalog: "
                      "%s; run it again later, or with --force to list them as "
                      "missing now",
                      label, j.waiting);
    else if (rc == 2)
        rc = cli_fail(EXIT_FAILED, "the snapshot of %s is INCOMPLETE: see missing.txt", label);
    else if (rc < 0)
        rc = cli_fail(EXIT_FAILED, "%s", j.errors);
out:
    job_close(&j);
    return rc;
}
