/*
 * cmd_scan.c - `custodian scan`: reconcile the watched folders with the
 * catalog once and queue what is new or changed.
 */
#include "agent/reconcile.h"
#include "agent/cli.h"
#include "common/json.h"

static int cmd_scan_exec(struct cli *cli, int argc, char **argv)
{
    struct reconcile_counts c = {0};
    struct cst_err err;
    int rc;

    (void)argv;
    if (argc > 1)
        return cli_fail(EXIT_USAGE, "usage: custodian scan");
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (cfg_check_watch_paths(cli->cfg, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if ((rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    /* Short transactions of its own: the agent's events get in between. */
    for (size_t i = 0; i < cli->cfg->n_watch_paths; i++)
        if (reconcile_tree(cli->cat, cli->cfg->watch_paths[i], cli->cfg->excludes,
                           cli->cfg->n_excludes, &c, &err) < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (cli->json) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "files");
        json_int(&j, c.seen);
        json_key(&j, "queued");
        json_int(&j, c.queued);
        json_key(&j, "deleted");
        json_int(&j, c.tombstoned);
        json_key(&j, "not_protected");
        json_int(&j, c.unprotected);
        json_obj_end(&j);
        json_print(&j, stdout);
        json_free(&j);
    } else {
        printf("scanned %lld files: %lld queued, %lld deleted since last seen\n", (long long)c.seen,
               (long long)c.queued, (long long)c.tombstoned);
        if (c.unprotected)
            printf("%lld paths CANNOT be protected (see the messages above)\n",
                   (long long)c.unprotected);
    }
    return c.unprotected ? EXIT_FAILED : EXIT_OK;
}

const struct cmd_entry cmd_scan_entry = {
    .name = "scan",
    .usage = "",
    .help = "reconcile the watched folders with the catalog once",
    .exec = cmd_scan_exec,
};
