/*
 * cmd_hold.c - legal holds: `custodian hold add (--path PREFIX | --period
 * LABEL | --before DATE | --all) --reason TEXT`, `hold release ID --reason
 * TEXT`, `hold list [--all]`. A hold freezes every deletion (and every
 * deletion of a hot copy) of what it covers; releasing it lets the retention
 * plan go on. Each change is an audit row naming the Unix user and the reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "agent/sched.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

static int audit_hold(struct cli *cli, const char *action, int64_t id, const char *kind,
                      const char *value, const char *reason, struct cst_err *err)
{
    struct json j;
    int rc;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "hold");
    json_int(&j, id);
    if (kind) {
        json_key(&j, "kind");
        json_str(&j, kind);
        json_key(&j, "value");
        json_str(&j, value);
    }
    json_key(&j, "reason");
    json_str(&j, reason);
    json_obj_end(&j);
    rc = catalog_audit(cli->cat, cli_user(), action, j.buf, err);
    json_free(&j);
    return rc;
}

static int cmd_hold_add_exec(struct cli *cli, int argc, char **argv)
{
    static const char usage[] = "usage: custodian hold add (--path PREFIX | --period LABEL | "
                                "--before YYYY-MM-DD | --all) --reason TEXT";
    struct catalog_hold h = {0};
    struct cst_err err;
    char *path = NULL;
    int64_t id;
    int rc, y, m, d;

    for (int i = 1; i < argc; i++) {
        const char *k = NULL;

        if (strcmp(argv[i], "--path") == 0)
            k = "path";
        else if (strcmp(argv[i], "--period") == 0)
            k = "period";
        else if (strcmp(argv[i], "--before") == 0)
            k = "before";
        if (k && i + 1 < argc && h.kind == NULL) {
            h.kind = (char *)k;
            h.value = argv[++i];
        } else if (strcmp(argv[i], "--all") == 0 && h.kind == NULL) {
            h.kind = "all";
        } else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
            h.reason = argv[++i];
        } else {
            return cli_fail(EXIT_USAGE, "%s", usage);
        }
    }
    if (h.kind == NULL || h.reason == NULL || h.reason[0] == '\0')
        return cli_fail(EXIT_USAGE, "%s (a hold needs what it covers and a reason)", usage);
    if (strcmp(h.kind, "before") == 0 && sched_parse_date(h.value, &y, &m, &d) < 0)
        return cli_fail(EXIT_USAGE, "--before %s: not a date (YYYY-MM-DD)", h.value);
    if (strcmp(h.kind, "path") == 0) {
        /* Paths are held as the catalog stores them: raw bytes (the escaped form is
         * accepted, as restore accepts it). */
        size_t n;

        path = pathenc_unescape(h.value, &n);
        if (path == NULL || h.value[0] != '/')
            return free(path), cli_fail(EXIT_USAGE, "--path %s: an absolute path", h.value);
        while (n > 1 && path[n - 1] == '/')
            path[--n] = '\0';
        h.value = path;
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK) {
        free(path);
        return rc;
    }
    h.created_at = util_now_ms();
    h.created_by = (char *)cli_user();
    rc = catalog_begin(cli->cat, &err);
    if (rc == 0)
        rc = catalog_hold_add(cli->cat, &h, &id, &err);
    if (rc == 0)
        rc = audit_hold(cli, "hold_add", id, h.kind, h.value, h.reason, &err);
    rc = rc == 0 ? catalog_commit(cli->cat, &err) : (catalog_rollback(cli->cat), -1);
    free(path);
    if (rc < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    printf("hold %lld placed: nothing it covers is deleted until it is released\n", (long long)id);
    return EXIT_OK;
}

static int cmd_hold_release_exec(struct cli *cli, int argc, char **argv)
{
    static const char usage[] = "usage: custodian hold release ID --reason TEXT";
    const char *reason = NULL;
    struct cst_err err;
    int64_t id = 0;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            reason = argv[++i];
        else if (id == 0 && atoll(argv[i]) > 0)
            id = atoll(argv[i]);
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (id == 0 || reason == NULL || reason[0] == '\0')
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    rc = catalog_begin(cli->cat, &err);
    if (rc == 0)
        rc = catalog_hold_release(cli->cat, id, cli_user(), reason, util_now_ms(), &err);
    if (rc == 1)
        rc = audit_hold(cli, "hold_release", id, NULL, NULL, reason, &err) == 0 ? 1 : -1;
    if (rc == 1 && catalog_commit(cli->cat, &err) == 0) {
        printf("hold %lld released\n", (long long)id);
        return EXIT_OK;
    }
    catalog_rollback(cli->cat);
    if (rc == 0)
        return cli_fail(EXIT_FAILED, "there is no active hold %lld (see `custodian hold list`)",
                        (long long)id);
    return cli_fail(EXIT_FAILED, "%s", err.msg);
}

struct list_ctx {
    struct cli *cli;
    struct json j;
    int n;
};

static int print_hold(void *arg, const struct catalog_hold *h)
{
    struct list_ctx *c = arg;
    char *value = h->value ? pathenc_escape(h->value, strlen(h->value)) : NULL;
    char placed[40], released[40];

    c->n++;
    util_format_ms(h->created_at, placed, sizeof(placed));
    if (c->cli->json) {
        json_obj_begin(&c->j);
        json_key(&c->j, "id");
        json_int(&c->j, h->id);
        json_key(&c->j, "kind");
        json_str(&c->j, h->kind);
        json_key(&c->j, "value");
        json_str(&c->j, value);
        json_key(&c->j, "reason");
        json_str(&c->j, h->reason);
        json_key(&c->j, "placed_at");
        json_time(&c->j, h->created_at);
        json_key(&c->j, "placed_by");
        json_str(&c->j, h->created_by);
        json_key(&c->j, "released_at");
        json_time(&c->j, h->released_at);
        json_key(&c->j, "released_by");
        json_str(&c->j, h->released_by);
        json_key(&c->j, "release_reason");
        json_str(&c->j, h->release_reason);
        json_obj_end(&c->j);
    } else {
        printf("%-4lld %-7s %-30s placed %s by %s: %s\n", (long long)h->id, h->kind,
               value ? value : "(everything)", placed, h->created_by, h->reason);
        if (h->released_at) {
            util_format_ms(h->released_at, released, sizeof(released));
            printf("     released %s by %s: %s\n", released, h->released_by, h->release_reason);
        }
    }
    free(value);
    return 0;
}

static int cmd_hold_list_exec(struct cli *cli, int argc, char **argv)
{
    struct list_ctx c = {cli, {0}, 0};
    struct cst_err err;
    int all = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else
            return cli_fail(EXIT_USAGE, "usage: custodian hold list [--all]");
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (cli->json) {
        json_init(&c.j);
        json_arr_begin(&c.j);
    }
    rc = catalog_each_hold(cli->cat, !all, print_hold, &c, &err);
    if (cli->json) {
        json_arr_end(&c.j);
        if (rc == 0)
            json_print(&c.j, stdout);
        json_free(&c.j);
    } else if (rc == 0 && c.n == 0) {
        printf("no %slegal holds\n", all ? "" : "active ");
    }
    return rc < 0 ? cli_fail(EXIT_FAILED, "%s", err.msg) : EXIT_OK;
}

const struct cmd_entry cmd_hold_add_entry = {
    .name = "hold add",
    .usage = "(--path PREFIX | --period LABEL | --before DATE | --all) --reason TEXT",
    .help = "a legal hold: nothing it covers is deleted until it is released",
    .exec = cmd_hold_add_exec,
};

const struct cmd_entry cmd_hold_release_entry = {
    .name = "hold release",
    .usage = "ID --reason TEXT",
    .help = "release a legal hold",
    .exec = cmd_hold_release_exec,
};

const struct cmd_entry cmd_hold_list_entry = {
    .name = "hold list",
    .usage = "[--all]",
    .help = "the legal holds (--all: released ones too)",
    .exec = cmd_hold_list_exec,
};
