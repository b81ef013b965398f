/*
 * cmd_audit_log.c - `custodian audit log [--since TIME]`: the audit trail.
 */
#include <stdio.h>
#include <string.h>

#include "agent/cli.h"
#include "common/json.h"
#include "common/util.h"

struct audit_out {
    struct cli *cli;
    struct json j;
};

static int each(void *arg, int64_t id, int64_t at, const char *actor, const char *action,
                const char *detail)
{
    struct audit_out *o = arg;

    if (o->cli->json) {
        json_obj_begin(&o->j);
        json_key(&o->j, "id");
        json_int(&o->j, id);
        json_key(&o->j, "at");
        json_time(&o->j, at);
        json_key(&o->j, "actor");
        json_str(&o->j, actor);
        json_key(&o->j, "action");
        json_str(&o->j, action);
        json_key(&o->j, "detail");
        json_str(&o->j, detail);
        json_obj_end(&o->j);
    } else {
        char when[40];

        util_format_ms(at, when, sizeof(when));
        printf("%6lld %s %-8s %-14s %s\n", (long long)id, when, actor, action, detail);
    }
    return 0;
}

static int cmd_audit_log_exec(struct cli *cli, int argc, char **argv)
{
    struct audit_out o = {cli, {0}};
    struct cst_err err;
    int64_t since = 0;
    int rc;

    if (argc == 3 && strcmp(argv[1], "--since") == 0) {
        if ((rc = cli_load_config(cli)) != EXIT_OK)
            return rc;
        if (cli_parse_time(argv[2], cli->cfg->timezone, &since) < 0)
            return cli_fail(EXIT_USAGE, "--since %s: not a time", argv[2]);
    } else if (argc != 1) {
        return cli_fail(EXIT_USAGE, "usage: custodian audit log [--since TIME]");
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (cli->json) {
        json_init(&o.j);
        json_arr_begin(&o.j);
    }
    rc = catalog_each_audit(cli->cat, since, each, &o, &err);
    if (cli->json) {
        json_arr_end(&o.j);
        if (rc == 0)
            json_print(&o.j, stdout);
        json_free(&o.j);
    }
    return rc < 0 ? cli_fail(EXIT_FAILED, "%s", err.msg) : EXIT_OK;
}

const struct cmd_entry cmd_audit_log_entry = {
    .name = "audit log",
    .usage = "[--since TIME]",
    .help = "the audit trail",
    .exec = cmd_audit_log_exec,
};
