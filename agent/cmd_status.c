/*
 * cmd_status.c - `custodian status`: is the agent running, how far behind
 * is it (queue depth and the oldest unshipped change: the live RPO), and
 * where does each destination stand.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "common/json.h"
#include "common/util.h"

static void print_time(const char *label, int64_t ms)
{
    char buf[40];

    if (ms <= 0) {
        printf("%-22s never\n", label);
        return;
    }
    util_format_ms(ms, buf, sizeof(buf));
    printf("%-22s %s\n", label, buf);
}

static int cmd_status_exec(struct cli *cli, int argc, char **argv)
{
    struct catalog_stats st;
    struct cst_err err;
    int64_t depth, oldest, failing, now = util_now_ms(), overflows, pending, pending_oldest;
    char *last_error = NULL;
    struct catalog_daily daily;
    int rc, running, have_daily;

    (void)argv;
    if (argc > 1)
        return cli_fail(EXIT_USAGE, "usage: custodian status [--json]");
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    running = cli_agent_running(cli);
    if (catalog_stats(cli->cat, &st, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    catalog_queue_stats(cli->cat, &depth, &oldest);
    catalog_queue_failing(cli->cat, &failing, &last_error);
    /* Versions sealed but not yet on any destination are unshipped changes too. */
    catalog_pending_stats(cli->cat, &pending, &pending_oldest);
    if (pending && (depth == 0 || pending_oldest < oldest))
        oldest = pending_oldest;
    depth += pending;
    overflows = catalog_state_get_int(cli->cat, "inotify_overflows", 0);
    have_daily = catalog_daily_get(cli->cat, NULL, &daily) == 1;
    /* A run whose process died stays "running" in the catalog until the next run
     * marks it interrupted; say what it is now. */
    if (have_daily && strcmp(daily.status, "running") == 0 &&
        (daily.pid <= 0 || (kill((pid_t)daily.pid, 0) < 0 && errno == ESRCH)))
        snprintf(daily.status, sizeof(daily.status), "interrupted");

    if (cli->json) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "agent_running");
        json_bool(&j, running);
        json_key(&j, "queue_depth");
        json_int(&j, depth);
        json_key(&j, "oldest_queued_at");
        json_time(&j, depth ? oldest : 0);
        json_key(&j, "oldest_queued_age_s");
        json_int(&j, depth ? (now - oldest) / 1000 : 0);
        json_key(&j, "failing");
        json_int(&j, failing);
        json_key(&j, "last_error");
        json_str(&j, last_error);
        json_key(&j, "live_files");
        json_int(&j, st.live_files);
        json_key(&j, "versions");
        json_int(&j, st.versions);
        json_key(&j, "objects");
        json_int(&j, st.objects);
        json_key(&j, "stored_bytes");
        json_int(&j, st.stored_bytes);
        json_key(&j, "last_shipped_at");
        json_time(&j, st.last_shipped_at);
        json_key(&j, "inotify_overflows");
        json_int(&j, overflows);
        json_key(&j, "destinations");
        json_arr_begin(&j);
        for (size_t i = 0; i < cli->cfg->n_dests; i++) {
            int64_t copies, missing, verified, backlog, backlog_oldest;
            char *dest_error = NULL;

            catalog_dest_stats(cli->cat, cli->cfg->dests[i].name, &copies, &missing, &verified);
            catalog_copy_queue_stats(cli->cat, cli->cfg->dests[i].name, &backlog, &backlog_oldest,
                                     &dest_error);
            json_obj_begin(&j);
            json_key(&j, "name");
            json_str(&j, cli->cfg->dests[i].name);
            json_key(&j, "copies");
            json_int(&j, copies);
            json_key(&j, "backlog");
            json_int(&j, backlog);
            json_key(&j, "oldest_pending_age_s");
            json_int(&j, backlog ? (now - backlog_oldest) / 1000 : 0);
            json_key(&j, "objects_missing");
            json_int(&j, missing);
            json_key(&j, "last_verified_at");
            json_time(&j, verified);
            json_key(&j, "last_error");
            json_str(&j, backlog ? dest_error : NULL);
            json_obj_end(&j);
            free(dest_error);
        }
        json_arr_end(&j);
        json_key(&j, "last_daily_run");
        if (have_daily) {
            json_obj_begin(&j);
            json_key(&j, "date");
            json_str(&j, daily.date);
            json_key(&j, "status");
            json_str(&j, daily.status);
            json_key(&j, "attempt");
            json_int(&j, daily.attempt);
            json_key(&j, "attempts");
            json_int(&j, daily.attempts);
            json_key(&j, "ok_attempt");
            if (daily.ok_attempt)
                json_int(&j, daily.ok_attempt);
            else
                json_null(&j);
            json_key(&j, "made_on");
            json_str(&j, daily.made_on[0] ? daily.made_on : NULL);
            json_key(&j, "backfill");
            json_bool(&j, daily.backfill);
            json_key(&j, "ran");
            json_bool(&j, daily.ran);
            json_key(&j, "manifest_written");
            json_bool(&j, daily.manifest_written);
            json_key(&j, "offsite_verified");
            json_bool(&j, daily.offsite_verified);
            json_key(&j, "db");
            json_str(&j, daily.db_status);
            json_key(&j, "files");
            json_str(&j, daily.files_status);
            json_key(&j, "catalog");
            json_str(&j, daily.catalog_status);
            json_key(&j, "error");
            json_str(&j, daily.error);
            json_key(&j, "finished_at");
            json_time(&j, daily.finished_at);
            json_obj_end(&j);
        } else {
            json_null(&j);
        }
        json_key(&j, "last_snapshot");
        json_null(&j);
        json_key(&j, "last_restore_test");
        json_null(&j);
        json_obj_end(&j);
        json_print(&j, stdout);
        json_free(&j);
    } else {
        printf("%-22s %s\n", "agent", running ? "running" : "not running");
        printf("%-22s %lld\n", "queued", (long long)depth);
        if (depth)
            printf("%-22s %lld s (live RPO)\n", "oldest unshipped",
                   (long long)(now - oldest) / 1000);
        if (failing)
            printf("%-22s %lld, last error: %s\n", "failing", (long long)failing,
                   last_error ? last_error : "?");
        printf("%-22s %lld (%lld versions, %lld objects, %lld bytes stored)\n", "live files",
               (long long)st.live_files, (long long)st.versions, (long long)st.objects,
               (long long)st.stored_bytes);
        print_time("last shipped", st.last_shipped_at);
        if (overflows)
            printf("%-22s %lld (each followed by a full rescan)\n", "inotify overflows",
                   (long long)overflows);
        for (size_t i = 0; i < cli->cfg->n_dests; i++) {
            int64_t copies, missing, verified, backlog, backlog_oldest;
            char label[64], *dest_error = NULL;

            catalog_dest_stats(cli->cat, cli->cfg->dests[i].name, &copies, &missing, &verified);
            catalog_copy_queue_stats(cli->cat, cli->cfg->dests[i].name, &backlog, &backlog_oldest,
                                     &dest_error);
            snprintf(label, sizeof(label), "destination %s", cli->cfg->dests[i].name);
            printf("%-22s %lld copies, backlog %lld", label, (long long)copies, (long long)backlog);
            if (backlog)
                printf(" (oldest %lld s)", (long long)(now - backlog_oldest) / 1000);
            printf("\n");
            if (backlog && dest_error)
                printf("%-22s %s\n", "", dest_error);
            free(dest_error);
        }
        if (!have_daily) {
            printf("%-22s never\n", "last daily run");
        } else {
            printf("%-22s %s: %s (attempt %d)", "last daily run", daily.date, daily.status,
                   daily.attempt);
            if (daily.backfill)
                printf(", a backfill made on %s", daily.made_on);
            if (strcmp(daily.status, "ok") != 0 && daily.ok_attempt)
                printf("; attempt %d of that day succeeded", daily.ok_attempt);
            printf("\n");
            printf("%-22s ran %s, manifest %s, verified off-server %s\n", "",
                   daily.ran ? "yes" : "NO", daily.manifest_written ? "yes" : "NO",
                   daily.offsite_verified ? "yes" : "NO");
            printf("%-22s db: %s; files: %s; catalog: %s\n", "",
                   daily.db_status ? daily.db_status : "-",
                   daily.files_status ? daily.files_status : "-",
                   daily.catalog_status ? daily.catalog_status : "-");
            if (daily.error)
                printf("%-22s error: %s\n", "", daily.error);
        }
    }
    free(last_error);
    if (have_daily)
        catalog_daily_clear(&daily);
    return EXIT_OK;
}

const struct cmd_entry cmd_status_entry = {
    .name = "status",
    .usage = "",
    .help = "queue depth, live RPO, destinations",
    .exec = cmd_status_exec,
};
