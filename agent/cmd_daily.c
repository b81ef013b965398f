/*
 * cmd_daily.c - `custodian daily [--date YYYY-MM-DD [--backfill]]`: the daily
 * protection run, now (the agent runs it at daily_at; this is the by-hand
 * way). The date names the run; it defaults to today in the configured time
 * zone.
 *
 * A run records the files and the database as they are now. Naming it after
 * another day would put today's files in that day's restore point, so a
 * past date needs --backfill, and the point then says it was made on
 * today's date for that day. A future date is refused: its point would
 * claim a day that has not come, and hold off that day's real run.
 */
#include <stdio.h>
#include <string.h>

#include "agent/daily.h"
#include "agent/mongo_dump.h"
#include "agent/sched.h"
#include "common/util.h"

static const char usage[] = "usage: custodian daily [--date YYYY-MM-DD [--backfill]]";

static int cmd_daily_exec(struct cli *cli, int argc, char **argv)
{
    char date[SCHED_DATE_SIZE] = "", today[SCHED_DATE_SIZE];
    struct sched_zone *z;
    struct cst_err err;
    int y, m, d, rc, backfill = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--date") == 0 && i + 1 < argc) {
            if (sched_parse_date(argv[++i], &y, &m, &d) < 0)
                return cli_fail(EXIT_USAGE, "--date %s: not a date (YYYY-MM-DD)", argv[i]);
            snprintf(date, sizeof(date), "%04d-%02d-%02d", y, m, d);
        } else if (strcmp(argv[i], "--backfill") == 0) {
            backfill = 1;
        } else {
            return cli_fail(EXIT_USAGE, "%s", usage);
        }
    }
    if (backfill && date[0] == '\0')
        return cli_fail(EXIT_USAGE, "--backfill needs --date: %s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK)
        return rc;
    z = sched_zone_load(cli->cfg->timezone, &err);
    if (z == NULL)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    sched_local_date(z, util_now_ms() / 1000, today);
    sched_zone_free(z);
    if (date[0] == '\0')
        snprintf(date, sizeof(date), "%s", today);
    /* YYYY-MM-DD compares as text in calendar order. */
    if (strcmp(date, today) > 0)
        return cli_fail(EXIT_USAGE,
                        "--date %s is in the future (today is %s in %s): a daily run records "
                        "the files and database as they are now",
                        date, today, cli->cfg->timezone);
    if (strcmp(date, today) < 0 && !backfill)
        return cli_fail(EXIT_USAGE,
                        "--date %s is not today (%s in %s): the run would record today's files "
                        "and database as the restore point of %s. Add --backfill to make that "
                        "point anyway, labelled as made on %s for %s",
                        date, today, cli->cfg->timezone, date, today, date);
    rc = daily_run(cli, date, today);
    mongo_dump_cleanup();
    return rc;
}

const struct cmd_entry cmd_daily_entry = {
    .name = "daily",
    .usage = "[--date YYYY-MM-DD [--backfill]]",
    .help = "run the daily protection run now (--backfill: for a past day, labelled so)",
    .exec = cmd_daily_exec,
};
