/*
 * cmd_restore_db.c - `custodian restore db DATE [--to FILE | --stdout]
 * [--from DEST] [--wait] [--force]`: the MongoDB dump of that day's run as a plain
 * mongodump archive, verified against the SHA-256 the run recorded:
 *
 *     custodian restore db 2026-11-20 --stdout | mongorestore --archive --drop
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/restore.h"
#include "agent/sched.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

static const char usage[] =
    "usage: custodian restore db DATE [--to FILE | --stdout] [--from DEST] [--wait] [--force]";

static int copy_out(int fd, struct cst_err *err)
{
    char buf[1 << 16];

    if (lseek(fd, 0, SEEK_SET) != 0)
        return cst_err_sys(err, "cannot read the restored archive");
    for (;;) {
        ssize_t n = util_read_full(fd, buf, sizeof(buf));

        if (n < 0)
            return cst_err_sys(err, "cannot read the restored archive");
        if (n == 0)
            return 0;
        if (util_write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
            return cst_err_sys(err, "cannot write to standard output");
    }
}

static int cmd_restore_db_exec(struct cli *cli, int argc, char **argv)
{
    const char *date = NULL, *to = NULL, *from = NULL;
    int to_stdout = 0, force = 0, rc, y, m, d;
    struct catalog_artifact a;
    struct restorer *r;
    struct cst_err err;
    char *out = NULL;

    int wait = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else if (strcmp(argv[i], "--stdout") == 0)
            to_stdout = 1;
        else if (strcmp(argv[i], "--force") == 0)
            force = 1;
        else if (date == NULL && sched_parse_date(argv[i], &y, &m, &d) == 0)
            date = argv[i];
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (date == NULL || (to && to_stdout))
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    r = restorer_new(cli, from, 1, &rc);
    if (r == NULL)
        return rc;
    restorer_set_wait(r, wait);
    rc = catalog_artifact_get(cli->cat, date, "db", &a, &err);
    if (rc != 1) {
        restorer_free(r);
        if (rc < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
        return cli_fail(EXIT_FAILED,
                        "no database dump is recorded for %s (see `custodian status` and the "
                        "daily run's manifest)",
                        date);
    }
    if (to_stdout) {
        int fd = restorer_scratch_file(r, &err);

        rc = -1;
        if (fd >= 0) {
            /* Nothing reaches mongorestore before the whole archive verified. */
            rc = restorer_artifact_to_fd(r, &a, fd, &err);
            if (rc == 0)
                rc = copy_out(fd, &err);
            close(fd);
        }
    } else {
        struct restore_root root;
        char *slash;

        out = to ? util_xstrdup(to) : util_printf("mongodb-%s.archive", date);
        /* The folder named is the operator's; the file itself is never reached through a
         * symlink, nor written before it verified. */
        slash = strrchr(out, '/');
        if (slash == out) {
            rc = restore_root_open(&root, "/", 0, &err);
        } else if (slash) {
            *slash = '\0';
            rc = restore_root_open(&root, out, 1, &err);
            *slash = '/';
        } else {
            rc = restore_root_open(&root, ".", 0, &err);
        }
        if (rc == 0) {
            rc = restorer_artifact_to_path(r, &a, &root, slash ? slash + 1 : out, force, &err);
            restore_root_close(&root);
        }
        if (rc == 0)
            printf("restored the database dump of %s to %s (%lld bytes); load it with: "
                   "mongorestore --archive=%s --drop\n",
                   date, out, (long long)a.plain_size, out);
    }
    if (rc == 0) {
        struct cst_err aerr;
        struct json j;
        char *shown = out ? pathenc_escape(out, strlen(out)) : NULL;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "date");
        json_str(&j, date);
        json_key(&j, "to");
        json_str(&j, shown ? shown : "-");
        json_key(&j, "outcome");
        json_str(&j, "ok");
        json_obj_end(&j);
        if (catalog_audit(cli->cat, "operator", "restore_db", j.buf, &aerr) < 0)
            fprintf(stderr, "custodian: warning: restore not written to the audit log: %s\n",
                    aerr.msg);
        json_free(&j);
        free(shown);
    }
    free(out);
    free(a.remote_key);
    restorer_free(r);
    return rc == 0 ? EXIT_OK
                   : cli_fail(EXIT_FAILED, "restore of the %s dump failed: %s", date, err.msg);
}

const struct cmd_entry cmd_restore_db_entry = {
    .name = "restore db",
    .usage = "DATE [--to FILE|--stdout] [--from DEST] [--wait] [--force]",
    .help = "that day's MongoDB dump, as a mongodump archive",
    .exec = cmd_restore_db_exec,
};
