/*
 * cmd_catalog_history.c - `custodian catalog history PATH [--literal |
 * --escaped]`: every version of one path, oldest first, with the copies that
 * hold it and the billing-cycle snapshots that contain it. PATH is read as
 * restore file reads it (agent/cli.h): raw or escaped, and refused when both
 * readings are cataloged paths.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cli.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

void cmd_version_json(struct json *j, const struct catalog_version *v);

struct history {
    struct cli *cli;
    struct json j;
    int64_t count;
    struct cst_err *err; /* a copy listing that fails fails the command */
};

static int print_copy(void *arg, const char *dest, const char *key, int64_t verified_at)
{
    struct history *h = arg;
    char when[40];

    if (h->cli->json) {
        json_obj_begin(&h->j);
        json_key(&h->j, "dest");
        json_str(&h->j, dest);
        json_key(&h->j, "key");
        json_str(&h->j, key);
        json_key(&h->j, "verified_at");
        json_time(&h->j, verified_at);
        json_obj_end(&h->j);
    } else {
        util_format_ms(verified_at, when, sizeof(when));
        printf("    copy on %s: %s (verified %s)\n", dest, key, when);
    }
    return 0;
}

/* A copy retention removed: the catalog keeps saying it was there, and why it is not. */
static int print_pruned(void *arg, const char *dest, const char *key, int64_t pruned_at,
                        const char *rule, int64_t audit_id)
{
    struct history *h = arg;
    char when[40];

    if (h->cli->json) {
        json_obj_begin(&h->j);
        json_key(&h->j, "dest");
        json_str(&h->j, dest);
        json_key(&h->j, "key");
        json_str(&h->j, key);
        json_key(&h->j, "removed_at");
        json_time(&h->j, pruned_at);
        json_key(&h->j, "rule");
        json_str(&h->j, rule);
        json_key(&h->j, "audit_row");
        json_int(&h->j, audit_id);
        json_obj_end(&h->j);
    } else {
        util_format_ms(pruned_at, when, sizeof(when));
        printf("    removed from %s %s by retention (%s; audit row %lld)\n", dest, when, rule,
               (long long)audit_id);
    }
    return 0;
}

static int print_snapshot(void *arg, const char *label, const char *close_date, int held)
{
    struct history *h = arg;

    if (h->cli->json) {
        json_obj_begin(&h->j);
        json_key(&h->j, "label");
        json_str(&h->j, label);
        json_key(&h->j, "date");
        json_str(&h->j, close_date);
        json_key(&h->j, "held");
        json_bool(&h->j, held);
        json_obj_end(&h->j);
    } else {
        printf("    in snapshot %s of %s (%s)\n", label, close_date,
               held ? "its bytes in the package" : "by reference, refs.tsv");
    }
    return 0;
}

static int each(void *arg, const struct catalog_version *v)
{
    struct history *h = arg;
    int rc = 0;

    h->count++;
    if (h->cli->json) {
        /* The version object, then its copies as a sibling array entry. */
        json_obj_begin(&h->j);
        json_key(&h->j, "version");
        cmd_version_json(&h->j, v);
        json_key(&h->j, "copies");
        json_arr_begin(&h->j);
        if (v->kind == CATALOG_FILE)
            rc = catalog_each_copy(h->cli->cat, v->object_id, print_copy, h, h->err);
        json_arr_end(&h->j);
        json_key(&h->j, "removed_copies");
        json_arr_begin(&h->j);
        if (rc == 0 && v->kind == CATALOG_FILE)
            rc = catalog_each_pruned_copy(h->cli->cat, v->object_id, print_pruned, h, h->err);
        json_arr_end(&h->j);
        json_key(&h->j, "snapshots");
        json_arr_begin(&h->j);
        if (rc == 0)
            rc = catalog_each_snapshot_of_version(h->cli->cat, v->id, print_snapshot, h, h->err);
        json_arr_end(&h->j);
        json_obj_end(&h->j);
    } else {
        char seen[40], shipped[40], deleted[40], sha[65];

        util_format_ms(v->first_seen, seen, sizeof(seen));
        util_format_ms(v->shipped_at, shipped, sizeof(shipped));
        util_hex(v->sha256, 32, sha);
        printf("version %lld: seen %s, shipped %s, %lld bytes, sha256 %s\n", (long long)v->id, seen,
               shipped, (long long)v->size, v->kind == CATALOG_SYMLINK ? "(symlink)" : sha);
        if (v->deleted_at) {
            util_format_ms(v->deleted_at, deleted, sizeof(deleted));
            printf("    deleted %s\n", deleted);
        }
        if (v->kind == CATALOG_FILE)
            rc = catalog_each_copy(h->cli->cat, v->object_id, print_copy, h, h->err);
        if (rc == 0 && v->kind == CATALOG_FILE)
            rc = catalog_each_pruned_copy(h->cli->cat, v->object_id, print_pruned, h, h->err);
        if (rc == 0)
            rc = catalog_each_snapshot_of_version(h->cli->cat, v->id, print_snapshot, h, h->err);
    }
    return rc;
}

static int cmd_catalog_history_exec(struct cli *cli, int argc, char **argv)
{
    struct cst_err err;
    struct history h = {cli, {0}, 0, &err};
    enum cli_path_form form = CLI_PATH_EITHER;
    const char *arg = NULL;
    char *path;
    int rc, bad = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--literal") == 0 && form == CLI_PATH_EITHER)
            form = CLI_PATH_LITERAL;
        else if (strcmp(argv[i], "--escaped") == 0 && form == CLI_PATH_EITHER)
            form = CLI_PATH_ESCAPED;
        else if (arg == NULL && (argv[i][0] != '-' || argv[i][1] == '\0'))
            arg = argv[i];
        else
            bad = 1;
    }
    if (arg == NULL || bad)
        return cli_fail(EXIT_USAGE,
                        "usage: custodian catalog history PATH [--literal | --escaped]");
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    rc = cli_catalog_path(cli, arg, form, &path, &err);
    if (rc < 0)
        return cli_fail(rc == -2 ? EXIT_USAGE : EXIT_FAILED, "%s", err.msg);
    if (cli->json) {
        json_init(&h.j);
        json_arr_begin(&h.j);
    }
    rc = catalog_each_version_of(cli->cat, path, each, &h, &err);
    free(path);
    if (cli->json) {
        json_arr_end(&h.j);
        if (rc == 0)
            json_print(&h.j, stdout);
        json_free(&h.j);
    }
    if (rc < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (h.count == 0 && !cli->json)
        return cli_fail(EXIT_FAILED, "no versions of %s are recorded", arg);
    return EXIT_OK;
}

const struct cmd_entry cmd_catalog_history_entry = {
    .name = "catalog history",
    .usage = "PATH [--literal|--escaped]",
    .help = "every version of one path, with its copies and snapshots",
    .exec = cmd_catalog_history_exec,
};
