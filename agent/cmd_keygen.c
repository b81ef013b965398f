/*
 * cmd_keygen.c - `custodian keygen --out DIR`: a new key set.
 */
#include <stdio.h>
#include <string.h>

#include "agent/cli.h"
#include "agent/keys.h"

static int cmd_keygen_exec(struct cli *cli, int argc, char **argv)
{
    struct cst_err err;

    (void)cli;
    if (argc != 3 || strcmp(argv[1], "--out") != 0)
        return cli_fail(EXIT_USAGE, "usage: custodian keygen --out DIR");
    if (keys_generate(argv[2], &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    printf("key set written to %s:\n"
           "  backup.pub   the agent needs only this to write backups\n"
           "  backup.key   decrypts backups: keep it off the app host, offline\n"
           "  naming.key   names objects (the agent needs it)\n"
           "  signing.key  signs manifests (the agent needs it)\n"
           "  signing.pub  verifies manifests\n",
           argv[2]);
    return EXIT_OK;
}

const struct cmd_entry cmd_keygen_entry = {
    .name = "keygen",
    .usage = "--out DIR",
    .help = "new key set (backup, naming, signing keys)",
    .exec = cmd_keygen_exec,
};
