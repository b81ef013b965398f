/*
 * cmd_ship.c - `custodian ship [--wait] [--timeout SECONDS]`: drain the queue
 * once and exit. Without --wait, what is ready now is shipped; with --wait,
 * also what is settling or waiting for a retry, until nothing is left (or
 * the timeout passes: exit 1). With the agent running, --wait waits for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/json.h"
#include "common/util.h"

static int report(struct cli *cli, int wait)
{
    struct catalog_backlog b;
    struct cst_err err;
    int left;

    if (catalog_backlog(cli->cat, &b, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    left = b.queued + b.waiting + b.copies > 0;
    if (cli->json) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "queued");
        json_int(&j, b.queued);
        json_key(&j, "waiting_for_first_copy");
        json_int(&j, b.waiting);
        json_key(&j, "copies_queued");
        json_int(&j, b.copies);
        json_obj_end(&j);
        json_print(&j, stdout);
        json_free(&j);
    }
    if (left && wait)
        return cli_fail(EXIT_FAILED,
                        "not everything could be shipped: %lld files queued, %lld waiting for "
                        "a first copy, %lld copies queued; see `custodian status`",
                        (long long)b.queued, (long long)b.waiting, (long long)b.copies);
    return EXIT_OK;
}

static int wait_for_agent(struct cli *cli, int64_t timeout_ms)
{
    int64_t start = util_mono_ms();
    int rc;

    if ((rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    for (;;) {
        struct catalog_backlog b;
        struct cst_err err;

        if (catalog_backlog(cli->cat, &b, &err) < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
        if (b.queued + b.waiting + b.copies == 0)
            return report(cli, 1);
        if (!cli_agent_running(cli) || (timeout_ms > 0 && util_mono_ms() - start > timeout_ms))
            return report(cli, 1);
        usleep(100 * 1000);
    }
}

static int cmd_ship_exec(struct cli *cli, int argc, char **argv)
{
    struct agent_options o = {.until_idle = 1};
    int wait = 0, rc;

    o.timeout_ms = 600 * 1000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            o.timeout_ms = atoll(argv[++i]) * 1000;
        else
            return cli_fail(EXIT_USAGE, "usage: custodian ship [--wait] [--timeout SECONDS]");
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (cli_agent_running(cli)) {
        if (!wait) {
            fprintf(stderr, "custodian: the agent is running and ships continuously\n");
            return EXIT_OK;
        }
        return wait_for_agent(cli, o.timeout_ms);
    }
    o.until_empty = wait;
    rc = agent_run(cli, &o);
    if (rc != EXIT_OK || cli->cat == NULL)
        return rc;
    return report(cli, wait);
}

const struct cmd_entry cmd_ship_entry = {
    .name = "ship",
    .usage = "[--wait] [--timeout SECONDS]",
    .help = "drain the queue once and exit",
    .exec = cmd_ship_exec,
};
