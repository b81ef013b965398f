/*
 * cmd_catalog_ls.c - `custodian catalog ls [PREFIX] [--at TIME]`: the files
 * as they stood at TIME (default now), one per line or as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

struct ls {
    struct cli *cli;
    struct json j;
    int64_t count;
};

void cmd_version_json(struct json *j, const struct catalog_version *v)
{
    char *shown = pathenc_escape(v->path, strlen(v->path));
    char sha[65];

    json_obj_begin(j);
    json_key(j, "path");
    json_str(j, shown);
    json_key(j, "version");
    json_int(j, v->id);
    json_key(j, "kind");
    json_str(j, v->kind == CATALOG_SYMLINK ? "symlink" : "file");
    json_key(j, "size");
    json_int(j, v->size);
    json_key(j, "mtime_ns");
    json_int(j, v->mtime_ns);
    if (v->kind == CATALOG_FILE) {
        util_hex(v->sha256, 32, sha);
        json_key(j, "sha256");
        json_str(j, sha);
        json_key(j, "object");
        json_str(j, v->object_id);
    } else {
        char *target = pathenc_escape(v->link_target, strlen(v->link_target));
        json_key(j, "link_target");
        json_str(j, target);
        free(target);
    }
    json_key(j, "first_seen");
    json_time(j, v->first_seen);
    json_key(j, "shipped_at");
    json_time(j, v->shipped_at);
    json_key(j, "deleted_at");
    json_time(j, v->deleted_at);
    json_obj_end(j);
    free(shown);
}

static int each(void *arg, const struct catalog_version *v)
{
    struct ls *ls = arg;

    ls->count++;
    if (ls->cli->json) {
        cmd_version_json(&ls->j, v);
    } else {
        char *shown = pathenc_escape(v->path, strlen(v->path)), when[40], sha[65];

        util_format_ms(v->shipped_at, when, sizeof(when));
        util_hex(v->sha256, 32, sha);
        printf("%s %12lld %.16s %s\n", when, (long long)v->size,
               v->kind == CATALOG_SYMLINK ? "symlink         " : sha, shown);
        free(shown);
    }
    return 0;
}

static int cmd_catalog_ls_exec(struct cli *cli, int argc, char **argv)
{
    const char *prefix = "", *at_arg = NULL;
    int64_t at = INT64_MAX;
    struct ls ls = {cli, {0}, 0};
    struct cst_err err;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--at") == 0 && i + 1 < argc)
            at_arg = argv[++i];
        else if (prefix[0] == '\0' && argv[i][0] != '-')
            prefix = argv[i];
        else
            return cli_fail(EXIT_USAGE, "usage: custodian catalog ls [PREFIX] [--at TIME]");
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (at_arg && cli_parse_time(at_arg, cli->cfg->timezone, &at) < 0)
        return cli_fail(EXIT_USAGE, "--at %s: not a time (RFC 3339 or YYYY-MM-DD)", at_arg);
    if ((rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (cli->json) {
        json_init(&ls.j);
        json_arr_begin(&ls.j);
    }
    rc = catalog_each_version_at(cli->cat, prefix, at == INT64_MAX ? util_now_ms() + 1 : at, each,
                                 &ls, &err);
    if (cli->json) {
        json_arr_end(&ls.j);
        if (rc == 0)
            json_print(&ls.j, stdout);
        json_free(&ls.j);
    }
    if (rc < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    return EXIT_OK;
}

const struct cmd_entry cmd_catalog_ls_entry = {
    .name = "catalog ls",
    .usage = "[PREFIX] [--at TIME]",
    .help = "files and versions as they stood at TIME",
    .exec = cmd_catalog_ls_exec,
};
