/*
 * drain.c - every live file shipped, for jobs that need the catalog to be
 * current (the daily run's restore point, a snapshot waiting for files):
 * scan the watched folders for what changed, then let the running agent
 * drain the queue, or drain it here when no agent runs.
 */
#include "drain.h"

#include <stdlib.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/reconcile.h"
#include "common/util.h"

#define DRAIN_TIMEOUT_MS (10 * 60 * 1000)

/* Files not yet on any destination (copies to the others may still be on their way). */
static int backlog(struct cli *cli)
{
    struct catalog_backlog b;

    /* Unknown counts as not drained: the run then says its files are incomplete. */
    if (catalog_backlog(cli->cat, &b, NULL) < 0)
        return 1;
    return (int)(b.queued + b.waiting);
}

int files_drain(struct cli *cli, char **status)
{
    struct reconcile_counts c = {0};
    struct cst_err err;
    int64_t start = util_mono_ms();

    /* Short transactions: the walk never holds the write lock the agent needs. */
    for (size_t i = 0; i < cli->cfg->n_watch_paths; i++)
        if (reconcile_tree(cli->cat, cli->cfg->watch_paths[i], cli->cfg->excludes,
                           cli->cfg->n_excludes, &c, &err) < 0)
            goto fail;
    if (!cli_agent_running(cli)) {
        struct agent_options o = {.until_idle = 1, .until_empty = 1};

        o.timeout_ms = DRAIN_TIMEOUT_MS;
        agent_run(cli, &o);
    }
    while (backlog(cli) > 0 && util_mono_ms() - start < DRAIN_TIMEOUT_MS)
        usleep(200 * 1000);
    if (backlog(cli) > 0) {
        *status = util_printf("incomplete: %d files were not shipped yet", backlog(cli));
        return 0;
    }
    return 1;
fail:
    *status = util_printf("failed: %s", err.msg);
    return -1;
}
