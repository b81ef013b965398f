/*
 * cmd_restore_test.c - `custodian restore-test [--month YYYY-MM] [--json]`:
 * the monthly restore test now (the agent runs it on [restore_test]
 * day_of_month at `at`); see agent/restore_test.h.
 */
#include <string.h>

#include "agent/mongo_conn.h"
#include "agent/restore_test.h"

static const char usage[] = "usage: custodian restore-test [--month YYYY-MM] [--json]";

static int cmd_restore_test_exec(struct cli *cli, int argc, char **argv)
{
    const char *month = NULL;
    int scheduled = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--month") == 0 && i + 1 < argc)
            month = argv[++i];
        else if (strcmp(argv[i], "--scheduled") == 0)
            scheduled = 1; /* the agent's: the report and the catalog say who started it */
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    rc = restore_test_run(cli, month, scheduled);
    mongo_cleanup();
    return rc;
}

const struct cmd_entry cmd_restore_test_entry = {
    .name = "restore-test",
    .usage = "[--month YYYY-MM]",
    .help = "the monthly restore test now: DB, sample files, snapshots, archive, RTO; a signed "
            "report",
    .exec = cmd_restore_test_exec,
};
