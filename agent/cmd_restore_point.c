/*
 * cmd_restore_point.c - `custodian restore point DATE --to DIR [--from DEST] [--wait]`:
 * every file of that day's restore point, rebuilt under DIR with its
 * original path (DIR/app/data/invoices/INV-1.pdf), each verified against
 * its recorded SHA-256. Nothing in DIR is replaced, and nothing is written
 * outside it: a symlink or ".." on the way to a file (one planted in DIR, or
 * one this restore has just made) fails that file, it is never followed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/restore.h"
#include "agent/restore_point.h"
#include "agent/sched.h"
#include "common/beneath.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

static const char usage[] = "usage: custodian restore point DATE --to DIR [--from DEST] [--wait]";

static int cmd_restore_point_exec(struct cli *cli, int argc, char **argv)
{
    const char *date = NULL, *to = NULL, *from = NULL;
    int rc, y, m, d, fd;
    int64_t restored = 0, failed = 0;
    struct catalog_artifact a;
    struct restore_root root = {-1, NULL};
    struct restorer *r;
    struct cst_err err;
    char *line = NULL, point_date[11];
    int64_t point_at;
    ssize_t len;
    size_t cap = 0, n_left = 0;
    int64_t *left = NULL; /* --wait: lines that failed in the first pass */
    off_t body;
    FILE *f;

    int wait = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else if (date == NULL && sched_parse_date(argv[i], &y, &m, &d) == 0)
            date = argv[i];
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (date == NULL || to == NULL)
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    r = restorer_new(cli, from, 1, &rc);
    if (r == NULL)
        return rc;
    restorer_set_wait(r, wait);
    rc = catalog_artifact_get(cli->cat, date, "files", &a, &err);
    if (rc != 1) {
        restorer_free(r);
        if (rc < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
        return cli_fail(EXIT_FAILED, "no restore point is recorded for %s", date);
    }
    fd = restorer_scratch_file(r, &err);
    f = NULL;
    if (fd >= 0 && restorer_artifact_to_fd(r, &a, fd, &err) == 0 &&
        (lseek(fd, 0, SEEK_SET) != 0 || (f = fdopen(fd, "r")) == NULL))
        cst_err_sys(&err, "cannot read the decrypted restore point");
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        free(a.remote_key);
        restorer_free(r);
        return cli_fail(EXIT_FAILED, "cannot read the restore point of %s: %s", date, err.msg);
    }
    len = getline(&line, &cap, f);
    if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len < 0 || restore_point_header(line, (size_t)len, point_date, &point_at, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "the restore point of %s: %s", date,
                      len < 0 ? "is empty" : err.msg);
        goto out;
    }
    if (restore_root_open(&root, to, 1, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    /* With --wait, a first pass asks for every thaw the point needs at once (and restores
     * what reads now); the second waits for the files left, so that the thaws run side by
     * side at the store instead of one after another. */
    body = ftello(f);
    for (int pass = 0; pass < (wait ? 2 : 1) && body >= 0; pass++) {
        int64_t line_no = 0;
        size_t k = 0;

        restorer_set_wait(r, wait && pass == 1);
        if (fseeko(f, body, SEEK_SET) != 0)
            break;
        failed = 0;
        while ((len = getline(&line, &cap, f)) > 0) {
            struct catalog_version v;

            line_no++;
            if (pass == 1 && (k >= n_left || left[k] != line_no))
                continue;
            if (pass == 1)
                k++;
            if (line[len - 1] == '\n')
                line[--len] = '\0';
            if (restore_point_line(line, (size_t)len, &v, &err) < 0 ||
                restorer_to_path(r, &v, &root, v.path + 1, 0, &err) < 0) {
                char *shown = v.path ? pathenc_escape(v.path, strlen(v.path)) : NULL;

                failed++;
                fprintf(stderr, "custodian: %s%s%s%s\n", shown ? shown : "", shown ? ": " : "",
                        err.msg, wait && pass == 0 ? " (tried again, waiting for thaws)" : "");
                free(shown);
                if (wait && pass == 0) {
                    left = util_xrealloc(left, (n_left + 1) * sizeof(*left));
                    left[n_left++] = line_no;
                }
            } else {
                restored++;
            }
            catalog_version_clear(&v);
        }
        if (n_left == 0)
            break;
    }
    {
        struct cst_err aerr;
        struct json j;
        char *shown_to = pathenc_escape(to, strlen(to));

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "date");
        json_str(&j, date);
        json_key(&j, "to");
        json_str(&j, shown_to);
        json_key(&j, "files");
        json_int(&j, restored);
        json_key(&j, "failed");
        json_int(&j, failed);
        json_key(&j, "outcome");
        json_str(&j, failed ? "failed" : "ok");
        json_obj_end(&j);
        if (catalog_audit(cli->cat, "operator", "restore_point", j.buf, &aerr) < 0)
            fprintf(stderr, "custodian: warning: restore not written to the audit log: %s\n",
                    aerr.msg);
        json_free(&j);
        free(shown_to);
    }
    printf("restored %lld files of the %s restore point under %s", (long long)restored, date, to);
    printf(failed ? "; %lld FAILED (see above)\n" : "\n", (long long)failed);
    rc = failed ? EXIT_FAILED : EXIT_OK;
out:
    restore_root_close(&root);
    free(left);
    free(line);
    fclose(f);
    free(a.remote_key);
    restorer_free(r);
    return rc;
}

const struct cmd_entry cmd_restore_point_entry = {
    .name = "restore point",
    .usage = "DATE --to DIR [--from DEST] [--wait]",
    .help = "every file of a daily restore point",
    .exec = cmd_restore_point_exec,
};
