/*
 * cmd_catalog_migrate.c - `custodian catalog migrate`: bring the catalog to
 * this build's schema now, with the agent stopped, instead of at the agent's
 * next start. The Debian package runs it after an upgrade (as the custodian
 * user), so that a migration that fails says so during the upgrade, not in a
 * restart loop. Creates nothing when there is no catalog yet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/cli.h"
#include "common/util.h"

static int cmd_catalog_migrate_exec(struct cli *cli, int argc, char **argv)
{
    struct cst_err err;
    struct catalog *before;
    char *path = NULL;
    int rc, lock_fd = -1, from = 0, to; /* 0: not readable as a catalog yet */

    (void)argv;
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian catalog migrate");
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    path = cli_state_path(cli, "catalog.db");
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        printf("no catalog at %s yet: the agent creates it when it first starts\n", path);
        rc = EXIT_OK;
        goto out;
    }
    /* A running agent has its own view of the schema: never change it underneath. */
    lock_fd = cli_lock_agent(cli, &err);
    if (lock_fd < 0) {
        rc = cli_fail(EXIT_FAILED, "%s; stop it first (systemctl stop custodian)", err.msg);
        goto out;
    }
    before = catalog_open_readonly(path, &err);
    if (before != NULL) {
        from = catalog_user_version(before);
        catalog_close(before);
    }
    if ((rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        goto out;
    to = catalog_user_version(cli->cat);
    if (from == to) {
        printf("catalog %s: schema version %d, current\n", path, to);
        goto out;
    }
    {
        char *detail = util_printf("{\"from\":%d,\"to\":%d}", from, to);
        int audited = catalog_audit(cli->cat, "operator", "catalog_migrate", detail, &err);

        free(detail);
        if (audited < 0) {
            rc = cli_fail(EXIT_FAILED, "%s", err.msg);
            goto out;
        }
    }
    printf("catalog %s: migrated from schema version %d to %d\n", path, from, to);
out:
    if (lock_fd >= 0)
        close(lock_fd);
    free(path);
    return rc;
}

const struct cmd_entry cmd_catalog_migrate_entry = {
    .name = "catalog migrate",
    .usage = "",
    .help = "bring the catalog to this version's schema now (the agent does it at start)",
    .exec = cmd_catalog_migrate_exec,
};
