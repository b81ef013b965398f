/*
 * cmd_catalog_stats.c - `custodian catalog stats`: counts and sizes.
 */
#include <stdio.h>

#include "agent/cli.h"
#include "common/json.h"

static int cmd_catalog_stats_exec(struct cli *cli, int argc, char **argv)
{
    struct catalog_stats s;
    struct cst_err err;
    int rc;

    (void)argv;
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian catalog stats");
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (catalog_stats(cli->cat, &s, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (cli->json) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "paths");
        json_int(&j, s.paths);
        json_key(&j, "live_files");
        json_int(&j, s.live_files);
        json_key(&j, "versions");
        json_int(&j, s.versions);
        json_key(&j, "objects");
        json_int(&j, s.objects);
        json_key(&j, "plain_bytes");
        json_int(&j, s.plain_bytes);
        json_key(&j, "stored_bytes");
        json_int(&j, s.stored_bytes);
        json_key(&j, "copies");
        json_int(&j, s.copies);
        json_obj_end(&j);
        json_print(&j, stdout);
        json_free(&j);
    } else {
        printf("paths %lld, live files %lld, versions %lld\n", (long long)s.paths,
               (long long)s.live_files, (long long)s.versions);
        printf("objects %lld: %lld bytes of content stored as %lld bytes, %lld copies\n",
               (long long)s.objects, (long long)s.plain_bytes, (long long)s.stored_bytes,
               (long long)s.copies);
    }
    return EXIT_OK;
}

const struct cmd_entry cmd_catalog_stats_entry = {
    .name = "catalog stats",
    .usage = "",
    .help = "counts and sizes",
    .exec = cmd_catalog_stats_exec,
};
