/*
 * cmd_ship.c - `custodian ship [--wait] [--timeout SECONDS]`: drain the queue
 * once and exit. With the agent running, --wait waits for it to drain.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "common/util.h"

static int wait_for_agent(struct cli *cli, int64_t timeout_ms)
{
    int64_t start = util_mono_ms(), depth, oldest;
    int rc;

    if ((rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    for (;;) {
        int64_t pending, copies = 0;

        catalog_queue_stats(cli->cat, &depth, &oldest);
        catalog_pending_stats(cli->cat, &pending, &oldest);
        for (size_t d = 0; d < cli->cfg->n_dests; d++) {
            int64_t n;
            char *last_error = NULL;

            catalog_copy_queue_stats(cli->cat, cli->cfg->dests[d].name, &n, &oldest, &last_error);
            free(last_error);
            copies += n;
        }
        depth += pending + copies;
        if (depth == 0)
            return EXIT_OK;
        if (!cli_agent_running(cli))
            return cli_fail(EXIT_FAILED, "the agent stopped with %lld entries queued",
                            (long long)depth);
        if (timeout_ms > 0 && util_mono_ms() - start > timeout_ms)
            return cli_fail(EXIT_FAILED, "gave up waiting: %lld entries still queued",
                            (long long)depth);
        usleep(100 * 1000);
    }
}

static int cmd_ship_exec(struct cli *cli, int argc, char **argv)
{
    struct agent_options o = {.until_idle = 1};
    int wait = 0, rc;
    int64_t depth, oldest;

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
    catalog_queue_stats(cli->cat, &depth, &oldest);
    if (depth > 0 && wait)
        return cli_fail(EXIT_FAILED, "%lld files could not be shipped; see `custodian status`",
                        (long long)depth);
    return EXIT_OK;
}

const struct cmd_entry cmd_ship_entry = {
    .name = "ship",
    .usage = "[--wait] [--timeout SECONDS]",
    .help = "drain the queue once and exit",
    .exec = cmd_ship_exec,
};
