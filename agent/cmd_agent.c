/*
 * cmd_agent.c - `custodian agent`: the service, in the foreground.
 */
#include "agent/agent.h"

static int cmd_agent_exec(struct cli *cli, int argc, char **argv)
{
    struct agent_options o = {.watch = 1};

    (void)argv;
    if (argc > 1)
        return cli_fail(EXIT_USAGE, "usage: custodian agent");
    return agent_run(cli, &o);
}

const struct cmd_entry cmd_agent_entry = {
    .name = "agent",
    .usage = "",
    .help = "run the service in the foreground",
    .exec = cmd_agent_exec,
};
