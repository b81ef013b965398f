/*
 * restore_test.c - the monthly restore test (see restore_test.h): the keys
 * and destinations, the checks in order (rt_db.c, rt_files.c,
 * rt_snapshots.c, pruning and the RTO projections here), the verdict, the
 * signed report, and the records of it (catalog, audit log).
 *
 * Two tests never overlap (state_dir/restore_test.lock); one interrupted is
 * marked so by the next, and the agent runs it again.
 */
#include "restore_test.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "agent/dests.h"
#include "agent/keys.h"
#include "agent/mongo_conn.h"
#include "agent/prune.h"
#include "agent/restore_test_int.h"
#include "agent/sched.h"
#include "common/beneath.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "shipper/container.h"

#define RTO_RECENT_S (2 * 3600)    /* the plan §5: recent restore < 2 h */
#define RTO_ARCHIVED_S (24 * 3600) /* archived snapshot restore < 24 h */

/* --- helpers the checks share --- */

int rt_scratch(struct rt *t, struct cst_err *err)
{
    return beneath_scratch_file(t->spool, err);
}

int rt_fetch(struct rt *t, struct dest *d, const char *key, int fd, unsigned char sha[32],
             uint64_t *size, struct cst_err *err)
{
    char buf[1 << 16];
    unsigned int n32 = 32;
    EVP_MD_CTX *ctx;
    ssize_t n;

    (void)t;
    memset(sha, 0, 32);
    *size = 0;
    err->msg[0] = '\0';
    if (ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) != 0)
        return cst_err_sys(err, "cannot prepare a scratch file");
    if (d->ops->get(d, key, fd, err) < 0)
        return cst_err_wrap(err, "%s on destination %s", key, d->name);
    if (lseek(fd, 0, SEEK_SET) != 0)
        return cst_err_sys(err, "cannot read a scratch file back");
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = util_read_full(fd, buf, sizeof(buf))) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    EVP_DigestFinal_ex(ctx, sha, &n32);
    EVP_MD_CTX_free(ctx);
    if (n < 0)
        return cst_err_sys(err, "cannot read a scratch file back");
    return 0;
}

int rt_open(struct rt *t, int sealed_fd, int out_fd, int64_t plain_size,
            const unsigned char plain_sha256[32], struct cst_err *err)
{
    unsigned char sha[32];
    uint64_t size;
    int null_fd = -1, rc;

    if (t->sk == NULL)
        return cst_err_set(err, "no secret key on this host");
    if (out_fd < 0) {
        out_fd = null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (out_fd < 0)
            return cst_err_sys(err, "cannot open /dev/null");
    } else if (ftruncate(out_fd, 0) < 0 || lseek(out_fd, 0, SEEK_SET) != 0) {
        return cst_err_sys(err, "cannot prepare a scratch file");
    }
    if (lseek(sealed_fd, 0, SEEK_SET) != 0) {
        rc = cst_err_sys(err, "cannot read a scratch file back");
    } else if (crypt_open_fd_limit(sealed_fd, out_fd, t->pk, t->sk, (uint64_t)plain_size, sha,
                                   &size, err) < 0) {
        rc = -1;
    } else if (memcmp(sha, plain_sha256, 32) != 0 || (int64_t)size != plain_size) {
        rc = cst_err_set(err, "integrity error: it decrypts, but not to the content the catalog "
                              "recorded (SHA-256 or size differs)");
    } else {
        rc = 0;
    }
    if (null_fd >= 0)
        close(null_fd);
    return rc;
}

void rt_short_hash(const unsigned char sha[32], char out[17])
{
    char hex[65];

    util_hex(sha, 32, hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

const char *rt_root_of(struct rt *t, const char *path)
{
    const struct cfg *cfg = t->cli->cfg;

    for (size_t i = 0; i < cfg->n_watch_paths; i++) {
        size_t n = strlen(cfg->watch_paths[i]);

        if (strncmp(path, cfg->watch_paths[i], n) == 0 && (path[n] == '/' || path[n] == '\0'))
            return cfg->watch_paths[i];
    }
    return "";
}

/* --- pruning --------------------------------------------------------------
 *
 * §6 "verify retention pruning works": what `custodian prune --check` finds
 * (every destination listed and compared with the retention plan: recorded
 * copies there, nothing past retention or already pruned left, nothing
 * unknown), and the last confirmed prune run, which must not have failed.
 * Needs no secret key: it compares names and the catalog.
 * ------------------------------------------------------------------------- */
static void rt_check_pruning(struct rt *t, struct report_section *s)
{
    struct prune_check_result r;
    struct catalog_prune_run run;
    struct cst_err err;
    int have_run;

    if (prune_check_dests(t->cli, t->now, t->dests, t->n_dests, 0, &r, &err) < 0) {
        report_set(s, REPORT_FAILED, "prune --check could not run: %s", err.msg);
        return;
    }
    report_fact_int(NULL, s, "dests", "Destinations compared with the retention plan", r.dests,
                    "destinations");
    report_fact_int(NULL, s, "listed", "Objects listed on them", r.listed, "objects");
    report_fact_int(NULL, s, "missing", "Recorded copies not there", r.missing, "objects");
    report_fact_int(NULL, s, "past_retention", "Past retention and still there", r.left, "objects");
    report_fact_int(NULL, s, "pruned_present", "Pruned and still there", r.stale, "objects");
    report_fact_int(NULL, s, "unknown", "Not in the catalog", r.unknown, "objects");
    have_run = catalog_prune_run_last(t->cli->cat, &run, &err);
    if (have_run < 0) {
        report_set(s, REPORT_FAILED, "the catalog cannot give the last prune: %s", err.msg);
        return;
    }
    if (have_run) {
        report_fact_time(NULL, s, "last_prune", "Last prune (confirmed) started", run.started_at);
        report_fact_text(NULL, s, "last_prune_status", "Its outcome", run.status);
        report_fact_int(NULL, s, "last_prune_deleted", "Deleted by it", run.deleted, "objects");
    } else {
        report_fact_text(NULL, s, "last_prune_status", "Last prune (confirmed)",
                         "none yet: nothing has been past retention, or pruning is off");
    }
    if (r.problems)
        report_set(s, REPORT_FAILED,
                   "prune --check found %lld problems on %lld destinations; the first: %s",
                   (long long)r.problems, (long long)r.dests, r.first);
    else if (have_run && strcmp(run.status, "failed") == 0)
        report_set(s, REPORT_FAILED, "the last prune failed: %s",
                   run.error ? run.error : "(no cause recorded)");
    else
        report_set(s, REPORT_PASSED,
                   "every destination holds what the retention plan says, and nothing else "
                   "(%lld objects on %lld destinations)",
                   (long long)r.listed, (long long)r.dests);
    if (have_run)
        free(run.error);
}

/* --- RTO ------------------------------------------------------------------ */

static void rt_check_rto(struct rt *t, struct report_section *s)
{
    const struct cfg *cfg = t->cli->cfg;
    int64_t files = 0, bytes = 0, recent_s = -1, archived_s = -1;
    struct cst_err err;
    int failed = 0;

    report_columns(s, "objective", "Objective (plan §5)", NULL, "target", "Target", "s",
                   "projected", "Projected", "s", "basis", "Based on", NULL, "result", "Result",
                   NULL, (char *)NULL);
    if (catalog_live_bytes(t->cli->cat, &files, &bytes, &err) < 0) {
        report_set(s, REPORT_FAILED, "%s", err.msg);
        return;
    }
    report_fact_int(NULL, s, "live_files", "Live files (a whole restore point)", files, "files");
    report_fact_int(NULL, s, "live_bytes", "Their size", bytes, "bytes");
    report_fact_int(NULL, s, "db_bytes", "Newest dump (plaintext)", t->db_plain_bytes, "bytes");
    report_fact_int(NULL, s, "db_ms", "Measured: fetch, decrypt and load of the whole dump",
                    t->db_ms, "ms");
    if (t->files_best_rate > 0) {
        char label[160];

        snprintf(label, sizeof(label), "Measured: file restore rate (fastest: %s)",
                 t->files_best_dest);
        report_fact_int(NULL, s, "file_rate", label, t->files_best_rate, "bytes/s");
        recent_s = (t->db_ms + 999) / 1000 + (bytes + t->files_best_rate - 1) / t->files_best_rate;
    }
    report_row(s, RT_MAX_ROWS);
    report_cell_text(s, 0, "recent restore: every live file and the newest dump");
    report_cell_int(s, 1, RTO_RECENT_S);
    if (recent_s >= 0) {
        report_cell_int(s, 2, recent_s);
        report_cell_text(s, 3,
                         "the measured dump restore plus the live files' size at the "
                         "measured file restore rate");
        report_cell_status(s, 4, recent_s < RTO_RECENT_S ? REPORT_PASSED : REPORT_FAILED);
        failed += recent_s >= RTO_RECENT_S;
    } else {
        report_cell_text(s, 3, "no restore rate was measured");
        report_cell_status(s, 4, REPORT_NOT_DONE);
    }
    /* An archived snapshot: the provider's thaw, then the package at the rate measured
     * restoring one (or files). */
    {
        int64_t rate = t->snapshot_ms > 0 && t->snapshot_bytes > 0
                           ? t->snapshot_bytes * 1000 / t->snapshot_ms
                           : t->files_best_rate;
        int64_t largest = t->snapshot_bytes;

        report_fact_int(NULL, s, "thaw_s", "Provider's thaw time ([restore_test] thaw_hours)",
                        (int64_t)cfg->rt.thaw_hours * 3600, "s");
        report_row(s, RT_MAX_ROWS);
        report_cell_text(s, 0, "archived billing-cycle snapshot");
        report_cell_int(s, 1, RTO_ARCHIVED_S);
        if (rate > 0 && largest > 0) {
            archived_s = (int64_t)cfg->rt.thaw_hours * 3600 + (largest + rate - 1) / rate;
            report_fact_int(NULL, s, "snapshot_bytes", "Largest snapshot restored", largest,
                            "bytes");
            report_cell_int(s, 2, archived_s);
            report_cell_text(s, 3,
                             "thaw_hours plus the package at the measured snapshot "
                             "restore rate");
            report_cell_status(s, 4, archived_s < RTO_ARCHIVED_S ? REPORT_PASSED : REPORT_FAILED);
            failed += archived_s >= RTO_ARCHIVED_S;
        } else {
            report_cell_text(s, 3, "no snapshot was restored");
            report_cell_status(s, 4, REPORT_NOT_APPLICABLE);
        }
    }
    if (failed)
        report_set(s, REPORT_FAILED,
                   "a projected restore time is past the plan's objective (recent < 2 h, archived "
                   "snapshot < 24 h)");
    else if (recent_s < 0)
        report_set(s, REPORT_NOT_DONE,
                   "not done: nothing was restored, so no time was measured%s%s", t->sk ? "" : ": ",
                   t->sk ? "" : t->no_key_why);
    else
        report_set(s, REPORT_PASSED,
                   "projected from the measured restores: recent restore %lld s (plan: < 7200 "
                   "s)%s",
                   (long long)recent_s, archived_s >= 0 ? ", archived snapshot within 24 h" : "");
}

/* --- the test ------------------------------------------------------------- */

static const char *check_column(const char *id)
{
    static const char *const ids[] = {"db", "files", "snapshots", "archive", "pruning", "rto"};

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        if (strcmp(ids[i], id) == 0)
            return ids[i];
    return NULL;
}

static int valid_month(const char *m)
{
    int y, mo;
    char tail;

    return strlen(m) == 7 && m[4] == '-' && sscanf(m, "%4d-%2d%c", &y, &mo, &tail) == 2 && y >= 1 &&
           mo >= 1 && mo <= 12;
}

/* The secret key, or why there is none (then t->sk stays NULL). A key that is configured
 * but cannot be used is said so: 1 then, 0 otherwise. */
static int load_secret(struct rt *t)
{
    const struct cfg *cfg = t->cli->cfg;
    struct cst_err err;

    if (cfg->secret_key == NULL) {
        t->no_key_why = util_xstrdup("no secret key on this host ([keys] secret_key is not "
                                     "set; restores and this test's decrypting checks run "
                                     "where it is)");
        return 0;
    }
    t->sk = sodium_malloc(32);
    if (t->sk == NULL || keys_check_backup_pair(cfg->public_key, cfg->secret_key, &err) < 0 ||
        keys_load_secret(cfg->secret_key, "backup-secret-key", t->sk, 32, &err) < 0) {
        t->no_key_why =
            util_printf("the secret key cannot be used: %s", t->sk ? err.msg : "out of memory");
        if (t->sk)
            sodium_free(t->sk);
        t->sk = NULL;
        return 1;
    }
    return 0;
}

static void record(struct rt *t, struct catalog_restore_test *row, const struct report_stored *st,
                   int scheduled)
{
    struct json j;
    struct cst_err err;
    char *checks[] = {row->db, row->files, row->snapshot, row->archive, row->pruning, row->rto};

    for (size_t i = 0; i < t->rep->n_sections; i++) {
        const struct report_section *s = t->rep->sections[i];
        const char *col = check_column(s->id);

        if (col == NULL)
            continue;
        for (size_t k = 0; k < 6; k++) {
            static const char *const order[] = {"db",      "files",   "snapshots",
                                                "archive", "pruning", "rto"};

            if (strcmp(order[k], col) == 0)
                snprintf(checks[k], 16, "%s", report_status_name(s->status));
        }
    }
    snprintf(row->status, sizeof(row->status), "%s",
             t->rep->verdict == REPORT_PASSED   ? "passed"
             : t->rep->verdict == REPORT_FAILED ? "failed"
                                                : "incomplete");
    row->finished_at = util_now_ms();
    row->summary = util_xstrdup(t->rep->verdict_text ? t->rep->verdict_text : "");
    row->report_json = st->json_path ? util_xstrdup(st->json_path) : NULL;
    row->report_html = st->html_path ? util_xstrdup(st->html_path) : NULL;
    row->stored_on = st->stored_on ? util_xstrdup(st->stored_on) : NULL;
    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "month");
    json_str(&j, t->month);
    json_key(&j, "trigger");
    json_str(&j, row->trigger);
    json_key(&j, "outcome");
    json_str(&j, row->status);
    json_key(&j, "with_secret_key");
    json_bool(&j, t->sk != NULL);
    json_key(&j, "checks");
    json_obj_begin(&j);
    for (size_t i = 0; i < t->rep->n_sections; i++) {
        json_key(&j, t->rep->sections[i]->id);
        json_str(&j, report_status_name(t->rep->sections[i]->status));
    }
    json_obj_end(&j);
    json_key(&j, "summary");
    json_str(&j, row->summary);
    json_key(&j, "report");
    json_str(&j, st->json_key);
    json_key(&j, "stored_on");
    json_str(&j, st->stored_on);
    json_obj_end(&j);
    if (catalog_begin(t->cli->cat, &err) < 0 ||
        catalog_restore_test_finish(t->cli->cat, row, &err) < 0 ||
        catalog_audit(t->cli->cat, scheduled ? "agent" : "operator", "restore_test", j.buf, &err) <
            0 ||
        catalog_commit(t->cli->cat, &err) < 0) {
        catalog_rollback(t->cli->cat);
        log_error("cannot record the restore test: %s", err.msg);
    }
    json_free(&j);
}

int restore_test_run(struct cli *cli, const char *month, int scheduled)
{
    struct rt t;
    struct catalog_restore_test row;
    struct report_stored stored;
    struct sched_zone *zone = NULL;
    struct cst_err err;
    char *lock_path, stamp[32], *base = NULL, *dest_names = NULL, causes[2048] = "";
    int lock_fd = -1, rc, key_broken, y, m, d, failed = 0, not_done = 0;
    int64_t day_start_s, t0 = util_mono_ms();

    memset(&t, 0, sizeof(t));
    memset(&row, 0, sizeof(row));
    memset(&stored, 0, sizeof(stored));
    t.cli = cli;
    if (month && !valid_month(month))
        return cli_fail(EXIT_USAGE, "--month %s: not a month (YYYY-MM)", month);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    if ((zone = sched_zone_load(cli->cfg->timezone, &err)) == NULL)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if (keys_load_public(cli->cfg->public_key, t.pk, &err) < 0) {
        rc = cli_fail(EXIT_USAGE, "%s", err.msg);
        goto out;
    }
    lock_path = cli_state_path(cli, "restore_test.lock");
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock_path);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = cli_fail(EXIT_FAILED, "another restore test is in progress");
        goto out;
    }
    t.now = util_now_ms();
    sched_local_date(zone, t.now / 1000, t.today);
    sched_parse_date(t.today, &y, &m, &d);
    sched_local_instant(zone, y, m, d, 0, 0, 0, &day_start_s);
    t.day_start = day_start_s * 1000;
    snprintf(t.month, sizeof(t.month), "%s", month ? month : t.today);
    t.month[7] = '\0';
    key_broken = load_secret(&t);
    t.spool = cli_state_path(cli, "spool");
    if (util_mkdir_p(t.spool, 0700, &err) < 0 ||
        dests_open(cli->cfg, NULL, &t.dests, &t.n_dests, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    snprintf(row.month, sizeof(row.month), "%s", t.month);
    snprintf(row.trigger, sizeof(row.trigger), "%s", scheduled ? "schedule" : "operator");
    row.pid = (int64_t)getpid();
    row.started_at = t.now;
    row.with_secret_key = t.sk != NULL;
    if (catalog_begin(cli->cat, &err) < 0 || catalog_restore_test_begin(cli->cat, &row, &err) < 0 ||
        catalog_commit(cli->cat, &err) < 0) {
        catalog_rollback(cli->cat);
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    log_info("restore test started month=%s%s", t.month, t.sk ? "" : " (no secret key here)");

    t.rep = report_new("restore-test", "Monthly restore test", t.month, cli->cfg->timezone);
    report_fact_text(t.rep, NULL, "month", "Month", t.month);
    report_fact_text(t.rep, NULL, "trigger", "Started by",
                     scheduled ? "the agent's schedule ([restore_test] day_of_month, at)"
                               : "an operator (custodian restore-test)");
    report_fact_time(t.rep, NULL, "started_at", "Started", t.now);
    report_fact_text(t.rep, NULL, "test_day", "Test day (files written on it are all restored)",
                     t.today);
    report_fact_bool(t.rep, NULL, "secret_key", "Backup secret key on this host", t.sk != NULL);
    dest_names = util_xstrdup("");
    for (size_t i = 0; i < t.n_dests; i++) {
        char *more = util_printf("%s%s%s", dest_names, i ? ", " : "", t.dests[i]->name);

        free(dest_names);
        dest_names = more;
    }
    report_fact_text(t.rep, NULL, "destinations", "Destinations", dest_names);
    if (key_broken) {
        struct report_section *k = report_section_add(t.rep, "keys", "Backup secret key");

        report_set(k, REPORT_FAILED, "%s", t.no_key_why);
    }
    rt_check_db(&t, report_section_add(t.rep, "db", "Database: the newest dump restored"));
    rt_check_files(&t,
                   report_section_add(t.rep, "files", "Files: a sample from every destination"));
    rt_check_snapshots(&t, report_section_add(t.rep, "snapshots", "Billing-cycle snapshots"));
    rt_check_archive(&t, report_section_add(t.rep, "archive", "Archive accessibility"));
    rt_check_pruning(&t, report_section_add(t.rep, "pruning", "Retention pruning"));
    rt_check_rto(&t, report_section_add(t.rep, "rto", "Recovery time (RTO)"));
    /* The causes the verdict names: the failures, or else what was not done. */
    for (size_t i = 0; i < t.rep->n_sections; i++) {
        const struct report_section *s = t.rep->sections[i];

        failed += s->counts && s->status == REPORT_FAILED;
        not_done += s->counts && s->status == REPORT_NOT_DONE;
    }
    for (size_t i = 0; i < t.rep->n_sections; i++) {
        const struct report_section *s = t.rep->sections[i];
        size_t len = strlen(causes);

        if (s->counts && s->status == (failed ? REPORT_FAILED : REPORT_NOT_DONE))
            snprintf(causes + len, sizeof(causes) - len, "%s%s: %s", len ? "; " : "", s->id,
                     s->summary ? s->summary : "");
    }
    report_fact_int(t.rep, NULL, "total_ms", "Time the test took", util_mono_ms() - t0, "ms");
    if (failed)
        report_decide(t.rep, "%d check(s) failed. %s", failed, causes);
    else if (not_done)
        report_decide(t.rep, "%d check(s) not done, so the backups were not proven to restore. %s",
                      not_done, causes);
    else {
        char passed[256] = "", na[256] = "";

        for (size_t i = 0; i < t.rep->n_sections; i++) {
            const struct report_section *s = t.rep->sections[i];
            char *list = s->status == REPORT_PASSED           ? passed
                         : s->status == REPORT_NOT_APPLICABLE ? na
                                                              : NULL;
            size_t len = list ? strlen(list) : 0;

            if (list)
                snprintf(list + len, sizeof(passed) - len, "%s%s", len ? ", " : "", s->id);
        }
        report_decide(t.rep, "the backups restore: passed: %s%s%s", passed,
                      na[0] ? "; not applicable (nothing to check yet): " : "", na);
    }

    util_format_ms(t.now, stamp, sizeof(stamp));
    /* 2026-11-01T08:00:00.123Z -> 20261101T080000Z: a name no other test has */
    base = util_printf("restore-test-%s_%.4s%.2s%.2sT%.2s%.2s%.2sZ", t.month, stamp, stamp + 5,
                       stamp + 8, stamp + 11, stamp + 14, stamp + 17);
    if (report_store(cli, t.rep, t.month, base, &stored, &err) < 0)
        log_error("the restore test's report could not be stored: %s", err.msg);
    else if (stored.errors)
        log_error("the restore test's report is not on every destination: %s", stored.errors);
    record(&t, &row, &stored, scheduled);

    if (cli->json) {
        char *json = report_json(t.rep);

        fputs(json, stdout);
        free(json);
    } else {
        report_print_text(t.rep, stdout);
        if (stored.json_path)
            printf("\nreport: %s\n        %s\n        (signed; on: %s)\n", stored.json_path,
                   stored.html_path, stored.stored_on[0] ? stored.stored_on : "no destination");
    }
    log_info("restore test finished month=%s verdict=%s", t.month,
             report_status_name(t.rep->verdict));
    rc = t.rep->verdict == REPORT_PASSED && stored.json_path ? EXIT_OK : EXIT_FAILED;
    if (rc != EXIT_OK)
        fprintf(stderr, "custodian: restore test of %s: %s%s%s\n", t.month,
                report_status_name(t.rep->verdict), t.rep->verdict_text ? ": " : "",
                t.rep->verdict_text ? t.rep->verdict_text : "");
out:
    report_free(t.rep);
    report_stored_free(&stored);
    catalog_restore_test_clear(&row);
    dests_free(t.dests, t.n_dests);
    if (t.sk)
        sodium_free(t.sk);
    free(t.no_key_why);
    free(t.spool);
    free(base);
    free(dest_names);
    sched_zone_free(zone);
    if (lock_fd >= 0)
        close(lock_fd);
    return rc;
}
