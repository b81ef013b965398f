/*
 * cmd_init.c - `custodian init [--demo DIR]`: create the state folder, the
 * catalog and (if missing) the keys of a config; or write a complete,
 * self-contained demo that `make run` starts.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/cli.h"
#include "agent/keys.h"
#include "agent/recovery_sheet.h"
#include "common/util.h"

static const char demo_config[] =
    "; custodian demo configuration, written by `custodian init --demo`.\n"
    "; Relative paths are relative to this file's folder.\n"
    "[agent]\n"
    "state_dir = state               ; catalog.db, spool/, locks\n"
    "timezone  = America/New_York\n"
    "daily_at  = 02:00\n"
    "settle_ms = 1500\n"
    "log_level = info\n"
    "\n"
    "[watch]\n"
    "path    = app/data/images\n"
    "path    = app/data/invoices\n"
    "path    = app/data/bug-reports\n"
    "exclude = *.tmp\n"
    "\n"
    "[keys]\n"
    "public_key  = keys/backup.pub\n"
    "naming_key  = keys/naming.key\n"
    "signing_key = keys/signing.key\n"
    "; In production the secret key stays off this host (only where restores run).\n"
    "; The demo keeps it here so that `custodian restore` works out of the box.\n"
    "secret_key  = keys/backup.key\n"
    "\n"
    "[destination local]\n"
    "type = local\n"
    "role = primary\n"
    "path = destination\n"
    "\n"
    "[retention]\n"
    "hot_months          = 24\n"
    "delete_after_months = 84\n"
    "keep_daily          = 35\n";

static int write_new_file(const char *path, const char *text, struct cst_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

    if (fd < 0)
        return cst_err_sys(err, "cannot create %s", path);
    if (util_write_all(fd, text, strlen(text)) < 0 || fsync(fd) < 0) {
        cst_err_sys(err, "cannot write %s", path);
        close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return cst_err_sys(err, "cannot write %s", path);
    return 0;
}

static int init_state(struct cli *cli)
{
    struct cst_err err;
    int rc = cli_open_catalog(cli, 0);

    if (rc != EXIT_OK)
        return rc;
    if (catalog_audit(cli->cat, "operator", "init", "{}", &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    return EXIT_OK;
}

static int init_demo(struct cli *cli, const char *dir)
{
    static const char *const folders[] = {"app/data/images", "app/data/invoices",
                                          "app/data/bug-reports", "destination", "state"};
    struct cst_err err;
    char *conf = util_join(dir, "custodian.conf"), *keys = util_join(dir, "keys");
    int rc = EXIT_FAILED;

    if (access(conf, F_OK) == 0) {
        rc = cli_fail(EXIT_FAILED, "%s already exists; remove %s for a fresh demo", conf, dir);
        goto out;
    }
    for (size_t i = 0; i < sizeof(folders) / sizeof(folders[0]); i++) {
        char *p = util_join(dir, folders[i]);
        int r = util_mkdir_p(p, 0700, &err);

        free(p);
        if (r < 0) {
            rc = cli_fail(EXIT_FAILED, "%s", err.msg);
            goto out;
        }
    }
    if (keys_generate(keys, &err) < 0 || recovery_sheet_create(keys, &err) < 0 ||
        write_new_file(conf, demo_config, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    cli->config_path = conf;
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = init_state(cli)) != EXIT_OK)
        goto out;
    printf("demo written to %s:\n"
           "  config       %s\n"
           "  data folders %s/app/data/{images,invoices,bug-reports}\n"
           "  destination  %s/destination\n"
           "  keys         %s (the secret key is here only for the demo)\n"
           "start it with: custodian -c %s agent\n",
           dir, conf, dir, dir, keys, conf);
    rc = EXIT_OK;
out:
    /* cli->config_path points into conf: drop the config before freeing it. */
    cli_close(cli);
    free(conf);
    free(keys);
    return rc;
}

static int cmd_init_exec(struct cli *cli, int argc, char **argv)
{
    struct cst_err err;
    int rc;

    if (argc == 3 && strcmp(argv[1], "--demo") == 0)
        return init_demo(cli, argv[2]);
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian init [--demo DIR]");
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (access(cli->cfg->public_key, F_OK) < 0 && errno == ENOENT) {
        char *copy = util_xstrdup(cli->cfg->public_key);
        char *dir = dirname(copy);

        rc = keys_generate(dir, &err);
        if (rc == 0)
            rc = recovery_sheet_create(dir, &err);
        if (rc == 0)
            printf("new keys written to %s; print %s/%s for a safe, then delete it, and move "
                   "backup.key off this host\n",
                   dir, dir, RECOVERY_SHEET_NAME);
        free(copy);
        if (rc < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
    }
    if ((rc = init_state(cli)) != EXIT_OK)
        return rc;
    printf("catalog ready in %s\n", cli->cfg->state_dir);
    return EXIT_OK;
}

const struct cmd_entry cmd_init_entry = {
    .name = "init",
    .usage = "[--demo DIR]",
    .help = "create state folder, catalog and keys; or a demo",
    .exec = cmd_init_exec,
};
