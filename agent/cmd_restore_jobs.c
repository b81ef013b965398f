/*
 * cmd_restore_jobs.c - `custodian restore jobs [--all]`: the thaws of archived
 * copies that restores asked for (RestoreObject), each looked at again now
 * (a HEAD of the copy: x-amz-restore), with the provider's expected time.
 * A job turns ready when its copy is readable; the restore run again (or
 * with --wait) then fetches it and marks the job done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "agent/dests.h"
#include "common/json.h"
#include "common/util.h"

struct jobs_ctx {
    struct cli *cli;
    struct dest **dests;
    size_t n_dests;
    struct json j;
    int n;
};

/* pending, ready or done, as the destination says now ("unknown" when it cannot say). */
static const char *job_state(struct jobs_ctx *c, const struct catalog_restore_job *job)
{
    struct dest_stat st;
    struct cst_err err;

    if (strcmp(job->status, "done") == 0)
        return "done";
    for (size_t d = 0; d < c->n_dests; d++) {
        if (strcmp(c->dests[d]->name, job->dest) != 0)
            continue;
        switch (dest_needs_thaw(c->dests[d], job->remote_key, &st, &err)) {
        case 0:
            if (strcmp(job->status, "ready") != 0 &&
                catalog_restore_job_set(c->cli->cat, job->id, "ready", util_now_ms(), &err) < 0)
                fprintf(stderr, "custodian: %s\n", err.msg);
            return "ready";
        case 1:
            return st.thaw == DEST_THAW_ONGOING ? "pending"
                                                : "not thawing (the restore asks again)";
        default:
            fprintf(stderr, "custodian: restore job %lld: %s\n", (long long)job->id, err.msg);
            return "unknown";
        }
    }
    return "unknown (destination no longer configured)";
}

static int show_job(void *arg, const struct catalog_restore_job *job)
{
    struct jobs_ctx *c = arg;
    const char *state = job_state(c, job);
    char requested[40], expected[40];

    c->n++;
    if (c->cli->json) {
        json_obj_begin(&c->j);
        json_key(&c->j, "id");
        json_int(&c->j, job->id);
        json_key(&c->j, "dest");
        json_str(&c->j, job->dest);
        json_key(&c->j, "key");
        json_str(&c->j, job->remote_key);
        json_key(&c->j, "what");
        json_str(&c->j, job->what);
        json_key(&c->j, "tier");
        json_str(&c->j, job->tier);
        json_key(&c->j, "storage_class");
        json_str(&c->j, job->storage_class);
        json_key(&c->j, "requested_at");
        json_time(&c->j, job->requested_at);
        json_key(&c->j, "requested_by");
        json_str(&c->j, job->requested_by);
        json_key(&c->j, "expected_by");
        json_time(&c->j, job->expected_by);
        json_key(&c->j, "state");
        json_str(&c->j, state);
        json_obj_end(&c->j);
        return 0;
    }
    util_format_ms(job->requested_at, requested, sizeof(requested));
    util_format_ms(job->expected_by, expected, sizeof(expected));
    printf("%-4lld %-8s %s on %s (%s, tier %s), requested %s by %s, expected by %s\n",
           (long long)job->id, state, job->what, job->dest,
           job->storage_class ? job->storage_class : "-", job->tier, requested, job->requested_by,
           expected);
    return 0;
}

static int cmd_restore_jobs_exec(struct cli *cli, int argc, char **argv)
{
    struct jobs_ctx c = {cli, NULL, 0, {0}, 0};
    struct cst_err err;
    int all = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else
            return cli_fail(EXIT_USAGE, "usage: custodian restore jobs [--all]");
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    if (dests_open(cli->cfg, NULL, &c.dests, &c.n_dests, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (cli->json) {
        json_init(&c.j);
        json_arr_begin(&c.j);
    }
    rc = catalog_each_restore_job(cli->cat, all, show_job, &c, &err);
    if (cli->json) {
        json_arr_end(&c.j);
        if (rc == 0)
            json_print(&c.j, stdout);
        json_free(&c.j);
    } else if (rc == 0 && c.n == 0) {
        printf("no %srestore jobs\n", all ? "" : "pending ");
    }
    dests_free(c.dests, c.n_dests);
    return rc < 0 ? cli_fail(EXIT_FAILED, "%s", err.msg) : EXIT_OK;
}

const struct cmd_entry cmd_restore_jobs_entry = {
    .name = "restore jobs",
    .usage = "[--all]",
    .help = "thaws of archived copies that restores asked for, and their state now",
    .exec = cmd_restore_jobs_exec,
};
