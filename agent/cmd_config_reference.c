/*
 * cmd_config_reference.c - `custodian config reference`: every config key
 * from the key table (section, key, type, default, help) as tab-separated
 * lines. docs/configuration.md is generated from it
 * (scripts/gen-config-doc.py), and a test keeps the two in step.
 */
#include <stdio.h>

#include "agent/cli.h"

static int cmd_config_reference_exec(struct cli *cli, int argc, char **argv)
{
    (void)cli;
    (void)argv;
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian config reference");
    cfg_print_reference(stdout);
    return EXIT_OK;
}

const struct cmd_entry cmd_config_reference_entry = {
    .name = "config reference",
    .usage = "",
    .help = "every configuration key, with type, default and meaning",
    .exec = cmd_config_reference_exec,
};
