/*
 * cmd_restore_file.c - `custodian restore file PATH [--at TIME]
 * [--to DIR | --stdout] [--from DEST] [--wait] [--force]`.
 *
 * PATH is the file's original absolute path (a relative one is taken from
 * the current folder), raw or in the escaped form that `catalog ls` prints;
 * when both readings name cataloged paths the command refuses and shows both
 * (--literal or --escaped says which). Without --to or --stdout the file
 * goes back to its original place, which must not exist unless --force is
 * given, and never through a folder below the watched one that has become a
 * symlink.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/restore.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

static const char usage[] =
    "usage: custodian restore file PATH [--at TIME] [--to DIR | --stdout] [--from DEST] [--wait] "
    "[--force] [--literal | --escaped]";

/* In place, the file goes back beneath the watched folder that holds it (or "/"): the
 * folders up to the watched one are the operator's, anything below may have been replaced
 * by a symlink since, and is never followed. *rel points into path. */
static const char *in_place_root(const struct cfg *cfg, const char *path, const char **rel)
{
    const char *best = NULL;
    size_t best_len = 0;

    for (size_t i = 0; i < cfg->n_watch_paths; i++) {
        const char *w = cfg->watch_paths[i];
        size_t n = strlen(w);

        if (n > best_len && strncmp(path, w, n) == 0 && path[n] == '/') {
            best = w;
            best_len = n;
        }
    }
    *rel = path + (best ? best_len : 0);
    while (**rel == '/')
        (*rel)++;
    return best ? best : "/";
}

static int cmd_restore_file_exec(struct cli *cli, int argc, char **argv)
{
    const char *path = NULL, *at_arg = NULL, *to = NULL, *from = NULL;
    int to_stdout = 0, force = 0, rc, found;
    enum cli_path_form form = CLI_PATH_EITHER;
    int64_t at = INT64_MAX;
    struct catalog_version v;
    struct restore_root root = {-1, NULL};
    struct restorer *r;
    struct cst_err err;
    char *out_path = NULL, *shown, *cataloged;

    int wait = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--at") == 0 && i + 1 < argc)
            at_arg = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else if (strcmp(argv[i], "--stdout") == 0)
            to_stdout = 1;
        else if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (strcmp(argv[i], "--literal") == 0 && form == CLI_PATH_EITHER)
            form = CLI_PATH_LITERAL;
        else if (strcmp(argv[i], "--escaped") == 0 && form == CLI_PATH_EITHER)
            form = CLI_PATH_ESCAPED;
        else if (path == NULL && (argv[i][0] != '-' || argv[i][1] == '\0'))
            path = argv[i];
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (path == NULL || (to && to_stdout))
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (at_arg && cli_parse_time(at_arg, cli->cfg->timezone, &at) < 0)
        return cli_fail(EXIT_USAGE,
                        "--at %s: not a time; use RFC 3339 (2026-11-20T14:00:00-05:00) or a "
                        "date (2026-11-20)",
                        at_arg);
    if ((rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    /* Key and destination problems first: they are what the operator must fix. */
    r = restorer_new(cli, from, 1, &rc);
    if (r == NULL)
        return rc;
    restorer_set_wait(r, wait);
    found = cli_catalog_path(cli, path, form, &cataloged, &err);
    if (found == 1)
        found = catalog_version_at(cli->cat, cataloged, at, &v, &err);
    free(cataloged);
    if (found <= 0) {
        restorer_free(r);
        if (found < 0)
            return cli_fail(found == -2 ? EXIT_USAGE : EXIT_FAILED, "%s", err.msg);
        return cli_fail(EXIT_FAILED, "no version of %s is recorded%s%s", path, at_arg ? " at " : "",
                        at_arg ? at_arg : "");
    }
    if (to_stdout) {
        rc = restorer_to_fd(r, &v, STDOUT_FILENO, &err);
    } else {
        const char *slash = strrchr(v.path, '/'), *rel = slash ? slash + 1 : v.path;
        const char *root_path = to ? to : in_place_root(cli->cfg, v.path, &rel);

        out_path = to ? util_join(to, rel) : util_xstrdup(v.path);
        rc = restore_root_open(&root, root_path, 1, &err);
        if (rc == 0)
            rc = restorer_to_path(r, &v, &root, rel, force, &err);
        restore_root_close(&root);
    }
    shown = pathenc_escape(v.path, strlen(v.path));
    if (rc == 0) {
        struct json j;
        struct cst_err aerr;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "path");
        json_str(&j, shown);
        json_key(&j, "version");
        json_int(&j, v.id);
        json_key(&j, "object");
        json_str(&j, v.object_id);
        json_key(&j, "outcome");
        json_str(&j, "ok");
        json_key(&j, "to");
        if (out_path) {
            char *shown_out = pathenc_escape(out_path, strlen(out_path));
            json_str(&j, shown_out);
            free(shown_out);
        } else {
            json_str(&j, "-");
        }
        json_obj_end(&j);
        if (catalog_audit(cli->cat, "operator", "restore_file", j.buf, &aerr) < 0)
            fprintf(stderr, "custodian: warning: restore not written to the audit log: %s\n",
                    aerr.msg);
        if (cli->json && !to_stdout)
            json_print(&j, stdout);
        else if (!to_stdout) {
            char *shown_out = pathenc_escape(out_path, strlen(out_path));

            printf("restored %s (version %lld, seen %s) to %s\n", shown, (long long)v.id,
                   at_arg ? at_arg : "latest", shown_out);
            free(shown_out);
        }
        json_free(&j);
    } else {
        cli_fail(EXIT_FAILED, "restore of %s failed: %s", shown, err.msg);
    }
    free(shown);
    free(out_path);
    catalog_version_clear(&v);
    restorer_free(r);
    return rc == 0 ? EXIT_OK : EXIT_FAILED;
}

const struct cmd_entry cmd_restore_file_entry = {
    .name = "restore file",
    .usage = "PATH [--at TIME] [--to DIR|--stdout] [--from DEST] [--wait] [--force] "
             "[--literal|--escaped]",
    .help = "one file as it was at TIME (default: latest)",
    .exec = cmd_restore_file_exec,
};
