/*
 * cmd_verify.c - two checks that backups are really there.
 *
 * `custodian verify --manifest DATE [--attempt N] [--from DEST]`: on each
 * destination, every attempt of that day that left a manifest (or attempt
 * N): fetch the manifest trio, check its Ed25519 signature and that the
 * signed JSON is that day's and that attempt's, then stream every artifact
 * it lists through SHA-256 and compare. Needs no secret key and trusts
 * nothing but the signing key: the catalog could be the thing that is gone.
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

#include "agent/dests.h"
#include "agent/manifest.h"
#include "agent/prune.h"
#include "agent/report.h"
#include "agent/restore.h"
#include "agent/sched.h"
#include "agent/snapshot_check.h"
#include "common/json.h"
#include "common/util.h"
#include "shipper/dest.h"
#include "shipper/verifier.h"

/* One attempt's manifest on dest: its signature, its date and attempt, then every
 * artifact it lists, hashed as it streams by. Returns how many artifacts were
 * checked, or -1 when anything failed. */
static int verify_attempt(struct dest *dest, const char *date, int attempt,
                          const unsigned char pk[32])
{
    static const char *const kinds[] = {"manifest-sha256", "manifest-json", "manifest-sig"};
    char *keys[3], *text[3] = {NULL, NULL, NULL}, label[64];
    size_t len[3];
    struct manifest m;
    struct cst_err err;
    int bad = 0, checked = 0;

    snprintf(label, sizeof(label), "%s attempt %d", date, attempt);
    for (int i = 0; i < 3; i++) {
        keys[i] = manifest_artifact_key(kinds[i], date, attempt);
        text[i] = manifest_fetch_small(dest, keys[i], &len[i], &err);
        if (text[i] == NULL) {
            printf("FAIL  %s: %s: %s\n", dest->name, keys[i], err.msg);
            bad = 1;
        }
    }
    if (bad)
        goto out;
    if (manifest_check(text[0], len[0], text[1], len[1], text[2], pk, date, attempt, &m, &err) <
        0) {
        printf("FAIL  %s: %s: %s\n", dest->name, keys[1], err.msg);
        bad = 1;
        goto out;
    }
    printf("ok    %s: manifest signature verified (%s%s)\n", dest->name, label,
           m.backfill ? ", a backfill" : "");
    for (size_t i = 0; i < m.n_artifacts; i++) {
        unsigned char sha[32];
        char hex[65], want[65];
        uint64_t size;

        checked++;
        if (manifest_hash_remote(dest, m.artifacts[i].key, sha, &size, &err) < 0) {
            printf("FAIL  %s: %s: %s\n", dest->name, m.artifacts[i].key, err.msg);
            bad = 1;
            continue;
        }
        util_hex(sha, 32, hex);
        util_hex(m.artifacts[i].stored_sha256, 32, want);
        if (strcmp(hex, want) != 0 || (int64_t)size != m.artifacts[i].stored_size) {
            printf("FAIL  %s: %s: SHA-256 %s (%llu bytes), the manifest says %s (%lld bytes)\n",
                   dest->name, m.artifacts[i].key, hex, (unsigned long long)size, want,
                   (long long)m.artifacts[i].stored_size);
            bad = 1;
        } else {
            printf("ok    %s: %s\n", dest->name, m.artifacts[i].key);
        }
    }
out:
    for (int i = 0; i < 3; i++) {
        free(keys[i]);
        free(text[i]);
    }
    return bad ? -1 : checked;
}

struct attempts {
    int list[64];
    size_t n;
};

static int add_attempt(void *arg, const char *date, int attempt)
{
    struct attempts *a = arg;

    (void)date;
    for (size_t i = 0; i < a->n; i++)
        if (a->list[i] == attempt)
            return 0;
    if (a->n < sizeof(a->list) / sizeof(a->list[0]))
        a->list[a->n++] = attempt;
    return 0;
}

static int by_number(const void *x, const void *y)
{
    return *(const int *)x - *(const int *)y;
}

/* Every attempt of date with a manifest on dest (or only `only`), each verified. */
static int verify_on(struct dest *dest, const char *date, int only, const unsigned char pk[32])
{
    struct attempts found = {{0}, 0};
    struct cst_err err;
    int bad = 0;

    if (only > 0) {
        add_attempt(&found, date, only);
    } else if (manifest_list(dest, date, add_attempt, &found, &err) < 0) {
        printf("FAIL  %s: %s\n", dest->name, err.msg);
        return -1;
    }
    if (found.n == 0) {
        printf("FAIL  %s: no manifest of %s there\n", dest->name, date);
        return -1;
    }
    qsort(found.list, found.n, sizeof(found.list[0]), by_number);
    for (size_t i = 0; i < found.n; i++)
        if (verify_attempt(dest, date, found.list[i], pk) < 0)
            bad = 1;
    return bad ? -1 : 0;
}

struct copy_check {
    struct cli *cli;
    struct restorer *r;
    int deep;
    int64_t checked, failed, skipped, damaged;
    char *scratch;
    struct sched_zone *zone; /* for the Object Lock dates (retention rules) */
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

/* On a destination that locks, a copy is verified only when HEAD shows it locked until
 * its object's own date (the one recorded, or the retention rule's). One that shows none,
 * or an earlier one, fails, and its retention is queued to be extended by the agent. */
static int check_lock(struct copy_check *c, struct dest *d, const char *object_id, const char *key,
                      struct cst_err *err)
{
    struct plan_rules rules = prune_rules(c->cli->cfg);
    struct dest_stat st;
    int64_t want, newest;
    char when[32];
    int rc;

    if (catalog_copy_locked_until(c->cli->cat, object_id, d->name, &want, err) < 0 ||
        catalog_object_newest_capture(c->cli->cat, object_id, &newest, err) < 0)
        return -1;
    if (newest > 0 && c->zone && plan_version_until(c->zone, &rules, newest) > want)
        want = plan_version_until(c->zone, &rules, newest);
    if (want <= 0)
        return 0; /* nothing says until when (no version refers to it) */
    memset(&st, 0, sizeof(st));
    rc = d->ops->stat(d, key, &st, err);
    if (rc <= 0)
        return rc < 0 ? -1 : cst_err_set(err, "missing");
    if (st.retain_until >= want - want % 1000)
        return 0;
    util_format_ms(want, when, sizeof(when));
    if (catalog_lock_extend_add(c->cli->cat, object_id, d->name, want, util_now_ms(), err) < 0)
        return -1;
    return cst_err_set(err, "not locked until %s (HEAD shows %s); the agent extends it", when,
                       st.retain_until > 0 ? "an earlier date" : "no lock");
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
        } else if (rc == 1 && catalog_object_get(c->cli->cat, object_id, &o, &err) != 1) {
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
    if (rc >= 0 && dest_locks(d) && d->ops->stat)
        rc = check_lock(c, d, object_id, key, &err);
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
    struct copy_check c = {cli, NULL, deep, 0, 0, 0, 0, NULL, NULL};
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
    c.zone = sched_zone_load(cli->cfg->timezone, &err);
    rc = catalog_each_copy_sample(cli->cat, from, sample, check_copy, &c, &err);
    sched_zone_free(c.zone);
    restorer_free(c.r);
    free(c.scratch);
    if (rc < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    gaps = report_coverage(cli, from);
    {
        struct cst_err aerr;
        struct json detail;

        json_init(&detail);
        json_obj_begin(&detail);
        json_key(&detail, "checked");
        json_int(&detail, c.checked);
        json_key(&detail, "failed");
        json_int(&detail, c.failed);
        json_key(&detail, "deep");
        json_bool(&detail, deep);
        json_key(&detail, "outcome");
        json_str(&detail, c.failed ? "failed" : "ok");
        json_obj_end(&detail);
        if (catalog_audit(cli->cat, "operator", "verify", detail.buf, &aerr) < 0)
            fprintf(stderr, "custodian: warning: verify not written to the audit log: %s\n",
                    aerr.msg);
        json_free(&detail);
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
    const char *date = NULL, *from = NULL, *snapshot = NULL, *snapshot_date = NULL, *report = NULL;
    int64_t sample = 0;
    int deep = 0, attempt = 0;
    unsigned char pk[32];
    struct dest **dests;
    struct cst_err err;
    size_t n;
    int rc, y, m, d, failed = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--manifest") == 0 && i + 1 < argc &&
            sched_parse_date(argv[i + 1], &y, &m, &d) == 0)
            date = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--attempt") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0)
            attempt = atoi(argv[++i]);
        else if (strcmp(argv[i], "--snapshot") == 0 && i + 1 < argc)
            snapshot = argv[++i];
        else if (strcmp(argv[i], "--date") == 0 && i + 1 < argc)
            snapshot_date = argv[++i];
        else if (strcmp(argv[i], "--sample") == 0 && i + 1 < argc && atoll(argv[i + 1]) > 0)
            sample = atoll(argv[++i]);
        else if (strcmp(argv[i], "--deep") == 0)
            deep = 1;
        else if (strcmp(argv[i], "--report") == 0 && i + 1 < argc)
            report = argv[++i];
        else
            return cli_fail(EXIT_USAGE, "usage: custodian verify [--manifest DATE [--attempt N] | "
                                        "--snapshot LABEL [--date YYYYMMDD] | --report FILE] "
                                        "[--sample N] [--deep] [--from DEST]");
    }
    if (report) {
        if (argc != 3)
            return cli_fail(EXIT_USAGE, "usage: custodian verify --report FILE");
        return report_verify_file(cli, report);
    }
    if ((snapshot_date && !snapshot) || (snapshot && (date || sample || deep)))
        return cli_fail(EXIT_USAGE, "usage: custodian verify --snapshot LABEL [--date YYYYMMDD] "
                                    "[--from DEST]");
    if (snapshot)
        return snapshot_verify(cli, snapshot, snapshot_date, from);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    if (attempt > 0 && date == NULL)
        return cli_fail(EXIT_USAGE, "--attempt goes with --manifest DATE");
    if (date == NULL)
        return verify_copies(cli, from, sample, deep);
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    if (manifest_signing_public(cli->cfg, pk, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if (from) {
        for (n = 0; n < cli->cfg->n_dests && strcmp(cli->cfg->dests[n].name, from) != 0; n++)
            ;
        if (n == cli->cfg->n_dests)
            return cli_fail(EXIT_USAGE, "no destination named %s in %s", from, cli->config_path);
    }
    /* Blocking operations only: no secret key is needed, none is read. */
    if (dests_open(cli->cfg, NULL, &dests, &n, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        if (from && strcmp(dests[i]->name, from) != 0)
            continue;
        if (verify_on(dests[i], date, attempt, pk) < 0)
            failed++;
    }
    dests_free(dests, n);
    {
        struct cst_err aerr;
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "manifest");
        json_str(&j, date);
        json_key(&j, "from");
        json_str(&j, from);
        json_key(&j, "failed_destinations");
        json_int(&j, failed);
        json_key(&j, "outcome");
        json_str(&j, failed ? "failed" : "ok");
        json_obj_end(&j);
        if (catalog_audit(cli->cat, "operator", "verify_manifest", j.buf, &aerr) < 0)
            fprintf(stderr, "custodian: %s\n", aerr.msg);
        json_free(&j);
    }
    if (failed)
        return cli_fail(EXIT_FAILED, "the %s manifest did not verify on %d destination(s)", date,
                        failed);
    printf("the %s manifest and every copy it lists verified\n", date);
    return EXIT_OK;
}

const struct cmd_entry cmd_verify_entry = {
    .name = "verify",
    .usage = "[--manifest DATE [--attempt N] | --snapshot LABEL [--date YYYYMMDD] | --report FILE] "
             "[--sample N] [--deep] [--from DEST]",
    .help = "check that copies exist (--deep: restore and hash), a daily manifest, a "
            "snapshot, or a report's signature",
    .exec = cmd_verify_exec,
};
