/*
 * cmd_snapshot.c - `custodian snapshot --pending` and `custodian snapshot
 * LABEL [--force]`: billing-cycle snapshots made now (agent/snapshot.c).
 *
 * --pending is what the agent runs every poll_minutes (and what cron or the
 * app's close hook may run): every closed period without a package for its
 * close date gets one, and copies still owed are made. LABEL packages one
 * period; an open one only with --force.
 */
#include <stdio.h>
#include <string.h>

#include "agent/snapshot.h"

static const char usage[] = "usage: custodian snapshot --pending | snapshot LABEL [--force] | "
                            "snapshot list [--json]";

static int cmd_snapshot_exec(struct cli *cli, int argc, char **argv)
{
    const char *label = NULL;
    int pending = 0, force = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--pending") == 0)
            pending = 1;
        else if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (strcmp(argv[i], "--") == 0 && i + 1 < argc && label == NULL)
            label = argv[++i]; /* a label that looks like an option */
        else if (argv[i][0] != '-' && label == NULL)
            label = argv[i];
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (pending == (label != NULL) || (pending && force))
        return cli_fail(EXIT_USAGE, "%s", usage);
    return pending ? snapshot_pending(cli) : snapshot_label(cli, label, force);
}

const struct cmd_entry cmd_snapshot_entry = {
    .name = "snapshot",
    .usage = "--pending | LABEL [--force]",
    .help = "make the billing-cycle snapshots owed now, or one period's",
    .exec = cmd_snapshot_exec,
};
