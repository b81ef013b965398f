/*
 * cmd_report_restore_test.c - `custodian report restore-test --month
 * YYYY-MM [--json | --html]`: the newest stored report of that month's
 * restore test, its signature checked first (a report that does not verify
 * is not shown as one).
 */
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bson/bson.h>

#include "agent/manifest.h"
#include "agent/report.h"
#include "common/util.h"

static const char usage[] =
    "usage: custodian report restore-test --month YYYY-MM [--json | --html]";

static char *slurp(const char *path, size_t *len, struct cst_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    char *text;

    if (fd < 0 || fstat(fd, &sb) < 0 || sb.st_size > (64 << 20)) {
        cst_err_sys(err, "cannot read the stored report %s", path);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    text = util_xmalloc((size_t)sb.st_size + 1);
    if (util_read_full(fd, text, (size_t)sb.st_size) != sb.st_size) {
        cst_err_sys(err, "cannot read the stored report %s", path);
        free(text);
        close(fd);
        return NULL;
    }
    close(fd);
    text[sb.st_size] = '\0';
    *len = (size_t)sb.st_size;
    return text;
}

/* The stored JSON as the terminal shows a report: verdict, then each check. */
static void print_summary(const char *json, size_t len)
{
    bson_error_t berr;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &berr);
    bson_iter_t it, secs, sec;

    if (doc == NULL) {
        fputs(json, stdout);
        return;
    }
    if (bson_iter_init_find(&it, doc, "verdict") && BSON_ITER_HOLDS_UTF8(&it))
        printf("Monthly restore test: %s", bson_iter_utf8(&it, NULL));
    if (bson_iter_init_find(&it, doc, "verdict_text") && BSON_ITER_HOLDS_UTF8(&it))
        printf(" - %s", bson_iter_utf8(&it, NULL));
    printf("\n");
    if (bson_iter_init_find(&secs, doc, "sections") && BSON_ITER_HOLDS_ARRAY(&secs) &&
        bson_iter_recurse(&secs, &sec)) {
        while (bson_iter_next(&sec)) {
            bson_iter_t f;
            const char *title = "", *status = "", *summary = "";

            if (!BSON_ITER_HOLDS_DOCUMENT(&sec) || !bson_iter_recurse(&sec, &f))
                continue;
            while (bson_iter_next(&f)) {
                if (!BSON_ITER_HOLDS_UTF8(&f))
                    continue;
                if (strcmp(bson_iter_key(&f), "title") == 0)
                    title = bson_iter_utf8(&f, NULL);
                else if (strcmp(bson_iter_key(&f), "status") == 0)
                    status = bson_iter_utf8(&f, NULL);
                else if (strcmp(bson_iter_key(&f), "summary") == 0)
                    summary = bson_iter_utf8(&f, NULL);
            }
            printf("\n%-14s %s\n  %s\n", status, title, summary);
        }
    }
    bson_destroy(doc);
}

static int cmd_report_restore_test_exec(struct cli *cli, int argc, char **argv)
{
    const char *month = NULL;
    struct catalog_restore_test t;
    struct cst_err err;
    unsigned char pk[32];
    char *text = NULL, *sig = NULL, *path, *sig_path;
    size_t len = 0, sig_len = 0;
    int html = 0, rc, found;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--month") == 0 && i + 1 < argc)
            month = argv[++i];
        else if (strcmp(argv[i], "--html") == 0)
            html = 1;
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (month == NULL || (html && cli->json))
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    found = catalog_restore_test_get(cli->cat, month, &t, &err);
    if (found < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (found == 0 || t.report_json == NULL) {
        if (found)
            catalog_restore_test_clear(&t);
        return cli_fail(EXIT_FAILED, "no restore test report of %s is recorded%s", month,
                        found ? " (the newest test stored none)" : "");
    }
    path = util_xstrdup(html ? t.report_html : t.report_json);
    sig_path = util_printf("%s.sig", path);
    if (manifest_signing_public(cli->cfg, pk, &err) < 0) {
        rc = cli_fail(EXIT_USAGE, "%s", err.msg);
        goto out;
    }
    if ((text = slurp(path, &len, &err)) == NULL ||
        (sig = slurp(sig_path, &sig_len, &err)) == NULL ||
        report_signature_check(text, len, sig, pk, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s: %s", path, err.msg);
        goto out;
    }
    if (cli->json || html)
        fputs(text, stdout);
    else {
        print_summary(text, len);
        printf("\nreport: %s (signature good)\n", path);
    }
    rc = EXIT_OK;
out:
    free(text);
    free(sig);
    free(path);
    free(sig_path);
    catalog_restore_test_clear(&t);
    return rc;
}

const struct cmd_entry cmd_report_restore_test_entry = {
    .name = "report restore-test",
    .usage = "--month YYYY-MM [--json | --html]",
    .help = "a stored restore test report (its signature checked first)",
    .exec = cmd_report_restore_test_exec,
};
