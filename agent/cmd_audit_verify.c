/*
 * cmd_audit_verify.c - `custodian audit verify`: recompute the audit log's
 * hash chain and name the first row that was altered or removed.
 */
#include <stdio.h>

#include "agent/cli.h"

static int cmd_audit_verify_exec(struct cli *cli, int argc, char **argv)
{
    struct cst_err err;
    int64_t rows = 0;
    int rc;

    (void)argv;
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian audit verify");
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (catalog_audit_verify(cli->cat, &rows, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    printf("audit log intact: %lld rows, hash chain verified\n", (long long)rows);
    return EXIT_OK;
}

const struct cmd_entry cmd_audit_verify_entry = {
    .name = "audit verify",
    .usage = "",
    .help = "check the audit log's hash chain",
    .exec = cmd_audit_verify_exec,
};
