/*
 * cmd_restore_point.c - `custodian restore point DATE --to DIR [--from DEST]`:
 * every file of that day's restore point, rebuilt under DIR with its
 * original path (DIR/app/data/invoices/INV-1.pdf), each verified against
 * its recorded SHA-256. Nothing in DIR is replaced.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/restore.h"
#include "agent/sched.h"
#include "common/pathenc.h"
#include "common/util.h"

static const char usage[] = "usage: custodian restore point DATE --to DIR [--from DEST]";

/* One line of the restore point: file/symlink, sha256, size, mtime_ns, object, path[, target]. */
static int parse_line(char *line, struct catalog_version *v, struct cst_err *err)
{
    char *field[7];
    int n = 0;
    size_t len;

    for (char *p = line; n < 7; n++) {
        field[n] = p;
        p = strchr(p, '\t');
        if (p == NULL) {
            n++;
            break;
        }
        *p++ = '\0';
    }
    memset(v, 0, sizeof(*v));
    if (n < 6)
        return cst_err_set(err, "malformed restore point line");
    v->kind = strcmp(field[0], "symlink") == 0 ? CATALOG_SYMLINK : CATALOG_FILE;
    v->size = atoll(field[2]);
    v->mtime_ns = atoll(field[3]);
    v->path = pathenc_unescape(field[5], &len);
    if (v->path == NULL)
        return cst_err_set(err, "malformed path in restore point: %s", field[5]);
    if (v->kind == CATALOG_FILE) {
        if (util_unhex(field[1], v->sha256, 32) < 0 || strlen(field[4]) != 64)
            return cst_err_set(err, "malformed restore point line for %s", field[5]);
        snprintf(v->object_id, sizeof(v->object_id), "%s", field[4]);
    } else if (n >= 7) {
        v->link_target = pathenc_unescape(field[6], &len);
    }
    return 0;
}

static int cmd_restore_point_exec(struct cli *cli, int argc, char **argv)
{
    const char *date = NULL, *to = NULL, *from = NULL;
    int rc, y, m, d, fd;
    int64_t restored = 0, failed = 0;
    struct catalog_artifact a;
    struct restorer *r;
    struct cst_err err;
    char *tmp, *line = NULL;
    size_t cap = 0;
    FILE *f;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
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
    if (catalog_artifact_get(cli->cat, date, "files", &a) != 1) {
        restorer_free(r);
        return cli_fail(EXIT_FAILED, "no restore point is recorded for %s", date);
    }
    tmp = cli_state_path(cli, "spool/restore-point.XXXXXX");
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd >= 0)
        unlink(tmp);
    free(tmp);
    if (fd < 0 || restorer_artifact_to_fd(r, &a, fd, &err) < 0 || lseek(fd, 0, SEEK_SET) != 0 ||
        (f = fdopen(fd, "r")) == NULL) {
        if (fd >= 0)
            close(fd);
        free(a.remote_key);
        restorer_free(r);
        return cli_fail(EXIT_FAILED, "cannot read the restore point of %s: %s", date,
                        fd < 0 ? "cannot create a temporary file" : err.msg);
    }
    /* v2 adds fields to the header line only; the file lines are v1's. */
    if (getline(&line, &cap, f) < 0 || (strncmp(line, "custodian restore-point v1\t", 27) != 0 &&
                                        strncmp(line, "custodian restore-point v2\t", 27) != 0)) {
        rc = cli_fail(EXIT_FAILED, "the restore point of %s is not in a known format", date);
        goto out;
    }
    while (getline(&line, &cap, f) > 0) {
        struct catalog_version v;
        char *out;

        line[strcspn(line, "\n")] = '\0';
        if (parse_line(line, &v, &err) < 0) {
            failed++;
            fprintf(stderr, "custodian: %s\n", err.msg);
            catalog_version_clear(&v);
            continue;
        }
        out = util_join(to, v.path[0] == '/' ? v.path + 1 : v.path);
        if (restorer_to_path(r, &v, out, 0, &err) < 0) {
            failed++;
            fprintf(stderr, "custodian: %s: %s\n", out, err.msg);
        } else {
            restored++;
        }
        free(out);
        catalog_version_clear(&v);
    }
    {
        struct cst_err aerr;
        char *detail = util_printf("{\"date\":\"%s\",\"files\":%lld,\"failed\":%lld}", date,
                                   (long long)restored, (long long)failed);

        catalog_audit(cli->cat, "operator", "restore_point", detail, &aerr);
        free(detail);
    }
    printf("restored %lld files of the %s restore point under %s", (long long)restored, date, to);
    printf(failed ? "; %lld FAILED (see above)\n" : "\n", (long long)failed);
    rc = failed ? EXIT_FAILED : EXIT_OK;
out:
    free(line);
    fclose(f);
    free(a.remote_key);
    restorer_free(r);
    return rc;
}

const struct cmd_entry cmd_restore_point_entry = {
    .name = "restore point",
    .usage = "DATE --to DIR [--from DEST]",
    .help = "every file of a daily restore point",
    .exec = cmd_restore_point_exec,
};
