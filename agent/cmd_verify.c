/*
 * cmd_verify.c - two checks that backups are really there.
 *
 * `custodian verify --manifest DATE [--from DEST]`: fetch that day's
 * manifests from each destination, check their Ed25519 signature, then fetch
 * every artifact they list and check its SHA-256 as stored. Needs no secret
 * key and trusts nothing but the signing key: the catalog could be the thing
 * that is gone.
 *
 * `custodian verify [--sample N] [--deep] [--from DEST]`: every recorded copy
 * of a file object (or N chosen at random) exists at its destination with
 * the recorded size; with --deep each is fetched, decrypted and compared with
 * the content's SHA-256 (needs the secret key).
 */
#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/daily.h"
#include "agent/keys.h"
#include "agent/restore.h"
#include "agent/sched.h"
#include "agent/snapshot_check.h"
#include "shipper/dest.h"
#include "shipper/verifier.h"
#include "common/util.h"

/* Fetch key from dest into memory (manifests are small); SHA-256 of what came. */
static char *fetch(struct dest *dest, const char *key, const char *spool, size_t *len,
                   unsigned char sha[32], struct cst_err *err)
{
    char *tmp = util_join(spool, "verify.XXXXXX"), *buf = NULL;
    int fd = mkostemp(tmp, O_CLOEXEC);
    EVP_MD_CTX *ctx;
    unsigned int n32 = 32;
    off_t size;

    if (fd < 0) {
        cst_err_sys(err, "cannot create %s", tmp);
        free(tmp);
        return NULL;
    }
    unlink(tmp);
    free(tmp);
    if (dest->ops->get(dest, key, fd, err) < 0 || (size = lseek(fd, 0, SEEK_END)) < 0 ||
        lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        return NULL;
    }
    buf = util_xmalloc((size_t)size + 1);
    if (util_read_full(fd, buf, (size_t)size) != (ssize_t)size) {
        cst_err_sys(err, "cannot read %s", key);
        free(buf);
        close(fd);
        return NULL;
    }
    close(fd);
    buf[size] = '\0';
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, buf, (size_t)size);
    EVP_DigestFinal_ex(ctx, sha, &n32);
    EVP_MD_CTX_free(ctx);
    *len = (size_t)size;
    return buf;
}

static int verify_on(struct dest *dest, const char *date, const unsigned char pk[32],
                     const char *spool)
{
    char *keys[3], *text[3] = {NULL, NULL, NULL};
    size_t len[3];
    unsigned char sha[32];
    struct cst_err err;
    int bad = 0, checked = 0;
    static const char *const kinds[] = {"manifest-sha256", "manifest-json", "manifest-sig"};

    for (int i = 0; i < 3; i++) {
        keys[i] = daily_artifact_key(kinds[i], date);
        text[i] = fetch(dest, keys[i], spool, &len[i], sha, &err);
        if (text[i] == NULL) {
            printf("FAIL  %s: %s: %s\n", dest->name, keys[i], err.msg);
            bad = 1;
        }
    }
    if (bad)
        goto out;
    if (daily_manifest_verify(text[0], len[0], text[1], len[1], text[2], pk, &err) < 0) {
        printf("FAIL  %s: %s\n", dest->name, err.msg);
        bad = 1;
        goto out;
    }
    printf("ok    %s: manifest signature verified\n", dest->name);
    for (char *line = strtok(text[0], "\n"); line; line = strtok(NULL, "\n")) {
        char hex[65], *key = strstr(line, "  ");
        size_t n;
        char *body;

        if (key == NULL || key - line != 64) {
            printf("FAIL  %s: malformed manifest line\n", dest->name);
            bad = 1;
            continue;
        }
        key += 2;
        body = fetch(dest, key, spool, &n, sha, &err);
        if (body == NULL) {
            printf("FAIL  %s: %s: %s\n", dest->name, key, err.msg);
            bad = 1;
            continue;
        }
        free(body);
        util_hex(sha, 32, hex);
        checked++;
        if (strncmp(hex, line, 64) != 0) {
            printf("FAIL  %s: %s: SHA-256 %s, the manifest says %.64s\n", dest->name, key, hex,
                   line);
            bad = 1;
        } else {
            printf("ok    %s: %s\n", dest->name, key);
        }
    }
out:
    for (int i = 0; i < 3; i++) {
        free(keys[i]);
        free(text[i]);
    }
    return bad ? -1 : checked;
}

struct copy_check {
    struct cli *cli;
    struct restorer *r;
    int deep;
    int64_t checked, failed, skipped, damaged;
    char *scratch;
};

/* A copy proven missing or different is marked damaged: it is not used for dedup or
 * restore any more, and the agent copies the object again. */
static void mark_damaged(struct copy_check *c, const char *object_id, const char *dest,
                         const char *why)
{
    struct cst_err err;

    if (catalog_copy_damaged(c->cli->cat, object_id, dest, why, util_now_ms(), &err) < 0)
        fprintf(stderr, "custodian: cannot mark the copy damaged: %s\n", err.msg);
    else
        c->damaged++;
}

static int check_copy(void *arg, const char *object_id, const char *dest_name, const char *key,
                      int64_t stored_size, const unsigned char stored_sha256[32])
{
    struct copy_check *c = arg;
    struct dest **dests, *d = NULL;
    struct cst_err err;
    uint64_t size = 0;
    size_t n;
    int rc;

    dests = restorer_dests(c->r, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(dests[i]->name, dest_name) == 0)
            d = dests[i];
    if (d == NULL) {
        c->skipped++; /* a destination no longer configured */
        return 0;
    }
    c->checked++;
    if (c->deep) {
        struct catalog_object o;
        struct catalog_copy copy = {
            .dest = (char *)dest_name, .remote_key = (char *)key, .stored_size = stored_size};
        char why[CST_ERR_SIZE];

        snprintf(copy.object_id, sizeof(copy.object_id), "%s", object_id);
        memcpy(copy.stored_sha256, stored_sha256, 32);
        /* The stored bytes first (no key needed), then the content inside them. */
        rc = verifier_check_copy(d, &copy, c->scratch, why, sizeof(why), &err);
        if (rc == 0) {
            mark_damaged(c, object_id, dest_name, why);
            rc = cst_err_set(&err, "%s", why);
        } else if (rc == 1 && catalog_object_get(c->cli->cat, object_id, &o) != 1) {
            rc = cst_err_set(&err, "object %s is not in the catalog", object_id);
        } else if (rc == 1) {
            rc = restorer_check_copy(c->r, d, key, o.sha256, o.plain_size, &err);
        }
    } else if (d->ops->exists == NULL) {
        c->skipped++;
        c->checked--;
        return 0;
    } else {
        rc = d->ops->exists(d, key, &size, &err);
        if (rc == 0) {
            mark_damaged(c, object_id, dest_name, "missing");
            rc = cst_err_set(&err, "missing");
        } else if (rc == 1 && stored_size >= 0 && (int64_t)size != stored_size) {
            rc = cst_err_set(&err, "%llu bytes, the catalog recorded %lld",
                             (unsigned long long)size, (long long)stored_size);
            mark_damaged(c, object_id, dest_name, err.msg);
        } else if (rc == 1) {
            rc = 0;
        }
    }
    if (rc < 0) {
        c->failed++;
        printf("FAIL  %s: %s: %s\n", dest_name, key, err.msg);
    }
    return 0;
}

/* Coverage: what each destination lacks or holds damaged fails verify as surely as a
 * bad copy does. Returns how many destinations are not whole. */
static int report_coverage(struct cli *cli, const char *from)
{
    int gaps = 0;

    for (size_t i = 0; i < cli->cfg->n_dests; i++) {
        const char *name = cli->cfg->dests[i].name;
        struct catalog_coverage cov;
        struct cst_err err;

        if (from && strcmp(from, name) != 0)
            continue;
        if (catalog_coverage_stats(cli->cat, name, &cov, &err) < 0) {
            printf("FAIL  %s: %s\n", name, err.msg);
            gaps++;
        } else if (cov.lacking || cov.damaged) {
            printf("FAIL  %s: lacks %lld objects, %lld copies known damaged (the agent copies "
                   "them again)\n",
                   name, (long long)cov.lacking, (long long)cov.damaged);
            gaps++;
        }
    }
    return gaps;
}

static int verify_copies(struct cli *cli, const char *from, int64_t sample, int deep)
{
    struct copy_check c = {cli, NULL, deep, 0, 0, 0, 0, NULL};
    struct cst_err err;
    int rc, gaps;

    c.r = restorer_new(cli, from, deep, &rc);
    if (c.r == NULL)
        return rc;
    c.scratch = cli_state_path(cli, "spool");
    if (util_mkdir_p(c.scratch, 0700, &err) < 0) {
        free(c.scratch);
        restorer_free(c.r);
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    }
    rc = catalog_each_copy_sample(cli->cat, from, sample, check_copy, &c, &err);
    restorer_free(c.r);
    free(c.scratch);
    if (rc < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    gaps = report_coverage(cli, from);
    {
        struct cst_err aerr;
        char *detail =
            util_printf("{\"checked\":%lld,\"failed\":%lld,\"deep\":%s}", (long long)c.checked,
                        (long long)c.failed, deep ? "true" : "false");

        catalog_audit(cli->cat, "operator", "verify", detail, &aerr);
        free(detail);
    }
    printf("checked %lld copies%s: %lld failed%s\n", (long long)c.checked,
           deep ? " (fetched, decrypted and hashed)" : " (present, right size)",
           (long long)c.failed, c.skipped ? " (some on unconfigured destinations skipped)" : "");
    if (c.damaged)
        printf("%lld copies were marked damaged; the agent copies them again\n",
               (long long)c.damaged);
    return c.failed || gaps ? EXIT_FAILED : EXIT_OK;
}

static int cmd_verify_exec(struct cli *cli, int argc, char **argv)
{
    const char *date = NULL, *from = NULL, *snapshot = NULL, *snapshot_date = NULL;
    int64_t sample = 0;
    int deep = 0;
    unsigned char pk[32];
    struct restorer *r;
    struct dest **dests;
    struct cst_err err;
    size_t n;
    int rc, y, m, d, failed = 0;
    char *spool;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--manifest") == 0 && i + 1 < argc &&
            sched_parse_date(argv[i + 1], &y, &m, &d) == 0)
            date = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--snapshot") == 0 && i + 1 < argc)
            snapshot = argv[++i];
        else if (strcmp(argv[i], "--date") == 0 && i + 1 < argc)
            snapshot_date = argv[++i];
        else if (strcmp(argv[i], "--sample") == 0 && i + 1 < argc && atoll(argv[i + 1]) > 0)
            sample = atoll(argv[++i]);
        else if (strcmp(argv[i], "--deep") == 0)
            deep = 1;
        else
            return cli_fail(EXIT_USAGE, "usage: custodian verify [--manifest DATE | --snapshot "
                                        "LABEL [--date YYYYMMDD]] [--sample N] [--deep] "
                                        "[--from DEST]");
    }
    if ((snapshot_date && !snapshot) || (snapshot && (date || sample || deep)))
        return cli_fail(EXIT_USAGE, "usage: custodian verify --snapshot LABEL [--date YYYYMMDD] "
                                    "[--from DEST]");
    if (snapshot)
        return snapshot_verify(cli, snapshot, snapshot_date, from);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    if (date == NULL)
        return verify_copies(cli, from, sample, deep);
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    /* The public half of the signing key, or signing.pub where only that is at hand. */
    if (keys_load_signing_pk(cli->cfg->signing_key, pk, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    r = restorer_new(cli, from, 0, &rc);
    if (r == NULL)
        return rc;
    spool = cli_state_path(cli, "spool");
    dests = restorer_dests(r, &n);
    for (size_t i = 0; i < n; i++) {
        if (from && strcmp(dests[i]->name, from) != 0)
            continue;
        if (verify_on(dests[i], date, pk, spool) < 0)
            failed++;
    }
    free(spool);
    restorer_free(r);
    if (failed)
        return cli_fail(EXIT_FAILED, "the %s manifest did not verify on %d destination(s)", date,
                        failed);
    printf("the %s manifest and every copy it lists verified\n", date);
    return EXIT_OK;
}

const struct cmd_entry cmd_verify_entry = {
    .name = "verify",
    .usage = "[--manifest DATE | --snapshot LABEL] [--sample N] [--deep] [--from DEST]",
    .help = "check that copies exist (--deep: restore and hash), a daily manifest, or a "
            "snapshot",
    .exec = cmd_verify_exec,
};
