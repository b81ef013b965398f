/*
 * cmd_prune.c - `custodian prune [--confirm] [--as-of DATE] [--json]` and
 * `custodian prune --check [--as-of DATE]`: the retention plan, shown, done, or
 * compared with what the destinations hold (agent/prune.c).
 */
#include <string.h>

#include "agent/cli.h"
#include "agent/prune.h"

static const char usage[] = "usage: custodian prune [--confirm] [--as-of TIME] [--json] | "
                            "custodian prune --check [--as-of TIME]";

static int cmd_prune_exec(struct cli *cli, int argc, char **argv)
{
    struct prune_options o = {0, 0, cli_user()};
    const char *as_of = NULL;
    int check = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--confirm") == 0)
            o.confirm = 1;
        else if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--as-of") == 0 && i + 1 < argc)
            as_of = argv[++i];
        else if (strcmp(argv[i], "--agent") == 0)
            o.actor = "agent"; /* the agent's daily prune (not for operators) */
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (check && o.confirm)
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (as_of && cli_parse_time(as_of, cli->cfg->timezone, &o.as_of) < 0)
        return cli_fail(EXIT_USAGE, "--as-of %s: not a time (RFC 3339 or YYYY-MM-DD)", as_of);
    return check ? prune_check(cli, o.as_of) : prune_run(cli, &o);
}

const struct cmd_entry cmd_prune_entry = {
    .name = "prune",
    .usage = "[--confirm] [--as-of TIME] [--json] | --check [--as-of TIME]",
    .help = "the retention plan: a dry run, --confirm to act, --check against the destinations",
    .exec = cmd_prune_exec,
};
