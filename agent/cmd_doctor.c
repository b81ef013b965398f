/*
 * cmd_doctor.c - `custodian doctor`: check what the agent depends on and
 * say, for each problem, what to do. Exit 0 when nothing failed (warnings
 * allowed), 1 when a check failed, 2 when the config itself is broken.
 *
 * Checks: config, key files (present, right kind, private), data folders,
 * state folder and catalog, inotify limits, clock, and every destination's
 * own probe (reach, TLS, authentication, write/read/delete, no anonymous
 * access where that applies), and the billing-cycle snapshots' [snapshots]
 * mapping against the app's MongoDB.
 */
#include <dirent.h>
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/timex.h>
#include <unistd.h>

#include "agent/cli.h"
#include "agent/dests.h"
#include "agent/keys.h"
#include "agent/mongo_conn.h"
#include "agent/periods.h"
#include "agent/sched.h"
#include "common/json.h"
#include "common/util.h"
#include "shipper/container.h"

enum { CHECK_OK, CHECK_WARN, CHECK_FAIL };

struct doctor {
    struct cli *cli;
    struct json j;
    int failed, warned;
};

static void report(struct doctor *doc, const char *area, const char *name, int level,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void report(struct doctor *doc, const char *area, const char *name, int level,
                   const char *fmt, ...)
{
    static const char *const tags[] = {"ok", "warn", "FAIL"};
    char detail[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (level == CHECK_FAIL)
        doc->failed++;
    if (level == CHECK_WARN)
        doc->warned++;
    if (doc->cli->json) {
        json_obj_begin(&doc->j);
        json_key(&doc->j, "area");
        json_str(&doc->j, area);
        json_key(&doc->j, "check");
        json_str(&doc->j, name);
        json_key(&doc->j, "result");
        json_str(&doc->j, tags[level]);
        json_key(&doc->j, "detail");
        json_str(&doc->j, detail);
        json_obj_end(&doc->j);
    } else {
        printf("%-4s  %-22s %-22s %s\n", tags[level], area, name, detail);
    }
}

static void check_keys(struct doctor *doc)
{
    const struct cfg *cfg = doc->cli->cfg;
    unsigned char pk[32], *secret = sodium_malloc(64);
    struct cst_err err;
    struct {
        const char *path, *kind;
        size_t len;
    } secrets[] = {
        {cfg->naming_key, "naming-key", 32},
        {cfg->signing_key, "signing-secret-key", 64},
        {cfg->secret_key, "backup-secret-key", 32},
    };

    if (keys_load_public(cfg->public_key, pk, &err) < 0)
        report(doc, "keys", "public_key", CHECK_FAIL, "%s", err.msg);
    else
        report(doc, "keys", "public_key", CHECK_OK, "%s", cfg->public_key);
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        if (secrets[i].path == NULL)
            continue;
        if (secret == NULL ||
            keys_load_secret(secrets[i].path, secrets[i].kind, secret, secrets[i].len, &err) < 0)
            report(doc, "keys", secrets[i].kind, CHECK_FAIL, "%s",
                   secret ? err.msg : "out of memory");
        else
            report(doc, "keys", secrets[i].kind, CHECK_OK, "%s (private)", secrets[i].path);
    }
    if (cfg->secret_key) {
        char id_hex[17];
        unsigned char id[8];

        if (keys_check_backup_pair(cfg->public_key, cfg->secret_key, &err) < 0) {
            report(doc, "keys", "key pair", CHECK_FAIL, "%s", err.msg);
        } else {
            crypt_key_id(pk, id);
            util_hex(id, sizeof(id), id_hex);
            report(doc, "keys", "key pair", CHECK_OK, "%s is the secret key of %s (key id %s)",
                   cfg->secret_key, cfg->public_key, id_hex);
        }
    }
    for (size_t i = 0; i < cfg->n_dests; i++) {
        const struct cfg_dest *d = &cfg->dests[i];
        const char *files[][2] = {{"ca_file", d->ca_file}, {"known_hosts", d->known_hosts}};

        for (size_t k = 0; k < 2; k++) {
            char what[128];

            if (files[k][1] == NULL)
                continue;
            snprintf(what, sizeof(what), "destination %s: %s", d->name, files[k][0]);
            if (keys_check_trust_file(files[k][1], what, &err) < 0)
                report(doc, "keys", files[k][0], CHECK_FAIL, "%s", err.msg);
            else
                report(doc, "keys", files[k][0], CHECK_OK, "%s (%s; no other user can write it)",
                       files[k][1], d->name);
        }
    }
    if (cfg->secret_key)
        report(doc, "keys", "secret key on host", CHECK_WARN,
               "[keys] secret_key is set: fine where restores run, but keep it off the app "
               "host (the agent needs only the public key)");
    if (secret)
        sodium_free(secret);
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;

    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static long count_folders(const char *dir, long limit)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    long n = 1;

    if (d == NULL)
        return 0;
    while (n < limit && (de = readdir(d)) != NULL) {
        if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char *child = util_join(dir, de->d_name);
        n += count_folders(child, limit - n);
        free(child);
    }
    closedir(d);
    return n;
}

static void check_folders_and_inotify(struct doctor *doc)
{
    const struct cfg *cfg = doc->cli->cfg;
    long folders = 0, watches = read_long("/proc/sys/fs/inotify/max_user_watches");
    long queued = read_long("/proc/sys/fs/inotify/max_queued_events");
    struct cst_err err;

    if (cfg_check_watch_paths(cfg, &err) < 0) {
        report(doc, "watch", "folders", CHECK_FAIL, "%s", err.msg);
    } else {
        for (size_t i = 0; i < cfg->n_watch_paths; i++)
            folders += count_folders(cfg->watch_paths[i], 10000000);
        report(doc, "watch", "folders", CHECK_OK, "%zu paths, %ld folders to watch",
               cfg->n_watch_paths, folders);
    }
    if (watches < 0)
        report(doc, "inotify", "max_user_watches", CHECK_WARN, "cannot read the limit");
    else
        report(doc, "inotify", "max_user_watches",
               watches < 2 * folders + 1024 ? CHECK_WARN : CHECK_OK,
               "%ld (need one per folder: %ld)%s", watches, folders,
               watches < 2 * folders + 1024
                   ? "; raise it: sysctl fs.inotify.max_user_watches=524288 (folders without a "
                     "watch are only rescanned every 10 s)"
                   : "");
    if (queued >= 0)
        report(doc, "inotify", "max_queued_events", queued < 16384 ? CHECK_WARN : CHECK_OK, "%ld%s",
               queued,
               queued < 16384 ? "; overflows cost a full rescan: sysctl "
                                "fs.inotify.max_queued_events=65536"
                              : "");
}

static void check_state(struct doctor *doc)
{
    struct cst_err err;
    char *path = cli_state_path(doc->cli, "catalog.db");

    if (access(doc->cli->cfg->state_dir, W_OK) < 0) {
        report(doc, "state", "state_dir", CHECK_FAIL, "%s is not writable: %s (run custodian init)",
               doc->cli->cfg->state_dir, strerror(errno));
    } else if (access(path, F_OK) < 0) {
        report(doc, "state", "catalog", CHECK_FAIL, "no catalog at %s: run custodian init", path);
    } else {
        struct catalog *cat = catalog_open_readonly(path, &err);

        if (cat == NULL) {
            report(doc, "state", "catalog", CHECK_FAIL, "%s", err.msg);
        } else {
            if (catalog_integrity_check(cat, &err) < 0)
                report(doc, "state", "catalog", CHECK_FAIL, "%s", err.msg);
            else
                report(doc, "state", "catalog", CHECK_OK, "%s: schema %d, integrity ok", path,
                       catalog_user_version(cat));
            catalog_close(cat);
        }
    }
    free(path);
}

static void check_clock(struct doctor *doc)
{
    struct timex tx;
    char zone[512], now[40];
    int state;

    memset(&tx, 0, sizeof(tx));
    state = adjtimex(&tx);
    util_format_ms(util_now_ms(), now, sizeof(now));
    if (state == TIME_ERROR || (tx.status & STA_UNSYNC))
        report(doc, "clock", "synchronized", CHECK_WARN,
               "%s UTC, but the kernel says the clock is not synchronized (NTP); daily runs and "
               "audit times depend on it",
               now);
    else
        report(doc, "clock", "synchronized", CHECK_OK, "%s UTC", now);
    {
        struct cst_err err;
        struct sched_zone *z = sched_zone_load(doc->cli->cfg->timezone, &err);
        char date[SCHED_DATE_SIZE];
        int64_t next;

        if (z == NULL) {
            report(doc, "clock", "timezone", CHECK_FAIL, "%s", err.msg);
        } else {
            sched_next_run(z, doc->cli->cfg->daily_hour, doc->cli->cfg->daily_minute,
                           util_now_ms() / 1000, &next, date);
            util_format_ms(next * 1000, zone, sizeof(zone));
            report(doc, "clock", "timezone", CHECK_OK, "%s; next daily run %s at %s UTC",
                   doc->cli->cfg->timezone, date, zone);
            sched_zone_free(z);
        }
    }
}

/* S3: objects whose metadata older versions wrote (the plaintext's SHA-256 and size) are
 * reported, and rewritten by a self-copy where the bucket has no Object Lock. */
static void check_s3_metadata(struct doctor *doc, const char *area, struct dest *d)
{
    struct dest_scrub sc;
    struct cst_err err;

    if (dest_s3_scrub(d, 1, &sc, &err) < 0) {
        report(doc, area, "no plaintext metadata", CHECK_FAIL, "cannot check: %s", err.msg);
        return;
    }
    if (sc.legacy == 0)
        report(doc, area, "no plaintext metadata", CHECK_OK,
               "%lld objects: none carries metadata derived from the plaintext",
               (long long)sc.objects);
    else if (sc.fixed == sc.legacy)
        report(doc, area, "no plaintext metadata", CHECK_WARN,
               "%lld of %lld objects carried the plaintext's SHA-256 and size (written by an "
               "older version, e.g. %s): their metadata was rewritten by a self-copy and now "
               "holds only the stored object's size, SHA-256, key id and format%s",
               (long long)sc.legacy, (long long)sc.objects, sc.example,
               " (on a versioned bucket the older versions keep theirs until they expire)");
    else if (sc.locked)
        report(doc, area, "no plaintext metadata", CHECK_FAIL,
               "%lld of %lld objects carry the plaintext's SHA-256 and size (written by an older "
               "version, e.g. %s), and the bucket has Object Lock: they cannot be rewritten and "
               "keep it until their retention ends",
               (long long)sc.legacy, (long long)sc.objects, sc.example);
    else
        report(doc, area, "no plaintext metadata", CHECK_FAIL,
               "%lld of %lld objects carry the plaintext's SHA-256 and size (e.g. %s); %lld "
               "were rewritten; the first failure: %s",
               (long long)sc.legacy, (long long)sc.objects, sc.example, (long long)sc.fixed,
               sc.error);
}

static void check_destinations(struct doctor *doc)
{
    struct dest **dests = NULL;
    size_t n = 0;
    struct cst_err err;
    char *path;
    struct catalog *cat;

    if (dests_open(doc->cli->cfg, NULL, &dests, &n, &err) < 0) {
        report(doc, "destination", "open", CHECK_FAIL, "%s", err.msg);
        return;
    }
    /* What the catalog knows decides whether an unmarked folder is one at first use;
     * doctor never marks (nor creates) anything itself. */
    path = cli_state_path(doc->cli, "catalog.db");
    cat = access(path, F_OK) == 0 ? catalog_open_readonly(path, &err) : NULL;
    if (cat && dests_usage(dests, n, cat, 0, &err) < 0)
        report(doc, "destination", "catalog", CHECK_FAIL, "%s", err.msg);
    catalog_close(cat);
    free(path);
    for (size_t i = 0; i < n; i++) {
        struct dest_probe probe;
        char area[128];
        int usable = 1;

        snprintf(area, sizeof(area), "destination %s", dests[i]->name);
        memset(&probe, 0, sizeof(probe));
        dests[i]->ops->probe(dests[i], &probe);
        for (size_t k = 0; k < probe.n; k++) {
            report(doc, area, probe.checks[k].name, probe.checks[k].ok ? CHECK_OK : CHECK_FAIL,
                   "%s", probe.checks[k].detail);
            usable &= probe.checks[k].ok;
        }
        if (usable && strcmp(dests[i]->ops->type, "s3") == 0)
            check_s3_metadata(doc, area, dests[i]);
    }
    dests_free(dests, n);
}

static void report_mapping(void *arg, const char *key, int ok, const char *detail)
{
    report(arg, "snapshots", key, ok ? CHECK_OK : CHECK_FAIL, "%s", detail);
}

/* The [snapshots] mapping against the app's data: every collection there, every field
 * present in its documents, period keys and the fields that refer to them comparable. */
static void check_snapshots(struct doctor *doc)
{
    const struct cfg *cfg = doc->cli->cfg;
    struct periods *p;
    struct cst_err err;
    struct stat st;

    if (!cfg_snapshots_on(cfg)) {
        report(doc, "snapshots", "enabled", CHECK_WARN, "billing-cycle snapshots are off: %s",
               cfg->mongodb_uri ? "[snapshots] enabled = no" : "[mongodb] uri is not set");
        return;
    }
    if (stat(cfg->snap.files_root, &st) < 0 || !S_ISDIR(st.st_mode))
        report(doc, "snapshots", "files_root", CHECK_FAIL, "%s is not a folder: %s",
               cfg->snap.files_root, strerror(errno));
    else
        report(doc, "snapshots", "files_root", CHECK_OK, "%s", cfg->snap.files_root);
    p = periods_open(cfg, &err);
    if (p == NULL) {
        report(doc, "snapshots", "mongodb", CHECK_FAIL, "%s", err.msg);
    } else {
        report(doc, "snapshots", "mongodb", CHECK_OK, "connected");
        periods_check(p, report_mapping, doc, NULL);
        periods_close(p);
    }
    mongo_cleanup();
}

static int cmd_doctor_exec(struct cli *cli, int argc, char **argv)
{
    struct doctor doc = {cli, {0}, 0, 0};
    int rc;

    (void)argv;
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian doctor [--json]");
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    if (cli->json) {
        json_init(&doc.j);
        json_obj_begin(&doc.j);
        json_key(&doc.j, "checks");
        json_arr_begin(&doc.j);
    }
    report(&doc, "config", "file", CHECK_OK, "%s parses", cli->config_path);
    check_keys(&doc);
    check_folders_and_inotify(&doc);
    check_state(&doc);
    check_clock(&doc);
    check_destinations(&doc);
    check_snapshots(&doc);
    if (cli->json) {
        json_arr_end(&doc.j);
        json_key(&doc.j, "failed");
        json_int(&doc.j, doc.failed);
        json_key(&doc.j, "warnings");
        json_int(&doc.j, doc.warned);
        json_obj_end(&doc.j);
        json_print(&doc.j, stdout);
        json_free(&doc.j);
    } else {
        printf("%d failed, %d warnings\n", doc.failed, doc.warned);
    }
    return doc.failed ? EXIT_FAILED : EXIT_OK;
}

const struct cmd_entry cmd_doctor_entry = {
    .name = "doctor",
    .usage = "",
    .help = "check config, keys, folders, inotify limits, clock and destinations",
    .exec = cmd_doctor_exec,
};
