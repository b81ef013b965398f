/*
 * cmd_report_checklist.c - `custodian report checklist [--month YYYY-MM |
 * --from DATE --to DATE] [--json | --html]`: the plan's §6 checklist from the
 * catalog alone (agent/checklist.h). Exit status 0 when every due box is
 * ticked, 1 when a gap needs an operator.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/checklist.h"
#include "agent/sched.h"
#include "common/util.h"

static const char usage[] = "usage: custodian report checklist [--month YYYY-MM | --from DATE "
                            "--to DATE] [--json | --html]";

static int month_days(int y, int m)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 29 : days[m - 1];
}

static int cmd_report_checklist_exec(struct cli *cli, int argc, char **argv)
{
    const char *month = NULL, *from = NULL, *to = NULL;
    char f[11], t[11], subject[32];
    int html = 0, rc, y, m, d;
    struct report *r;
    struct cst_err err;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--month") == 0 && i + 1 < argc)
            month = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--html") == 0)
            html = 1;
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if ((month && (from || to)) || (!from != !to) || (html && cli->json))
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (from) {
        if (sched_parse_date(from, &y, &m, &d) < 0 || sched_parse_date(to, &y, &m, &d) < 0 ||
            strcmp(from, to) > 0)
            return cli_fail(EXIT_USAGE, "--from %s --to %s: two dates (YYYY-MM-DD), in order", from,
                            to);
        snprintf(f, sizeof(f), "%s", from);
        snprintf(t, sizeof(t), "%s", to);
        snprintf(subject, sizeof(subject), "%s to %s", from, to);
    } else {
        char today[11];
        struct sched_zone *z = sched_zone_load(cli->cfg->timezone, &err);
        char tail;

        if (z == NULL)
            return cli_fail(EXIT_USAGE, "%s", err.msg);
        sched_local_date(z, util_now_ms() / 1000, today);
        sched_zone_free(z);
        if (month == NULL) {
            y = atoi(today);
            m = atoi(today + 5);
        } else if (strlen(month) != 7 || month[4] != '-' ||
                   sscanf(month, "%4d-%2d%c", &y, &m, &tail) != 2 || y < 1 || m < 1 || m > 12) {
            return cli_fail(EXIT_USAGE, "--month %s: not a month (YYYY-MM)", month);
        }
        snprintf(f, sizeof(f), "%04d-%02d-01", y, m);
        snprintf(t, sizeof(t), "%04d-%02d-%02d", y, m, month_days(y, m));
        snprintf(subject, sizeof(subject), "%04d-%02d", y, m);
    }
    r = checklist_build(cli, f, t, subject, &err);
    if (r == NULL)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (cli->json || html) {
        char *text = cli->json ? report_json(r) : report_html(r);

        fputs(text, stdout);
        free(text);
    } else {
        report_print_text(r, stdout);
    }
    rc = r->verdict == REPORT_FAILED ? EXIT_FAILED : EXIT_OK;
    report_free(r);
    return rc;
}

const struct cmd_entry cmd_report_checklist_entry = {
    .name = "report checklist",
    .usage = "[--month YYYY-MM | --from DATE --to DATE] [--json | --html]",
    .help = "the plan's section 6 checklist from the catalog: each box from a recorded fact, "
            "each gap with its reason",
    .exec = cmd_report_checklist_exec,
};
