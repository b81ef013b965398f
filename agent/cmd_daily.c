/*
 * cmd_daily.c - `custodian daily [--date YYYY-MM-DD]`: the daily protection
 * run, now (the agent runs it at daily_at; this is the by-hand way). The
 * date names the run; it defaults to today in the configured time zone.
 */
#include <stdio.h>
#include <string.h>

#include "agent/daily.h"
#include "agent/mongo_dump.h"
#include "agent/sched.h"
#include "common/util.h"

static int cmd_daily_exec(struct cli *cli, int argc, char **argv)
{
    char date[SCHED_DATE_SIZE] = "";
    struct cst_err err;
    int y, m, d, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--date") == 0 && i + 1 < argc) {
            if (sched_parse_date(argv[++i], &y, &m, &d) < 0)
                return cli_fail(EXIT_USAGE, "--date %s: not a date (YYYY-MM-DD)", argv[i]);
            snprintf(date, sizeof(date), "%04d-%02d-%02d", y, m, d);
        } else {
            return cli_fail(EXIT_USAGE, "usage: custodian daily [--date YYYY-MM-DD]");
        }
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    if (date[0] == '\0') {
        struct sched_zone *z = sched_zone_load(cli->cfg->timezone, &err);

        if (z == NULL)
            return cli_fail(EXIT_USAGE, "%s", err.msg);
        sched_local_date(z, util_now_ms() / 1000, date);
        sched_zone_free(z);
    }
    rc = daily_run(cli, date);
    mongo_dump_cleanup();
    return rc;
}

const struct cmd_entry cmd_daily_entry = {
    .name = "daily",
    .usage = "[--date YYYY-MM-DD]",
    .help = "run the daily protection run now",
    .exec = cmd_daily_exec,
};
