/*
 * restore_test.h - the monthly restore test (retention plan §6 monthly,
 * §8.4): it restores the newest database dump into a scratch database, a
 * sample of files from every destination, the newest and the oldest hot
 * billing-cycle snapshots; checks archive-tier copies; and projects the
 * restore times against the plan's RTO. Its result is a signed report (JSON
 * and HTML, agent/report.h) kept in the state folder and on every
 * destination, a row in the catalog's restore_tests, and an audit row.
 *
 * Where the backup secret key is not (the app host), every check that needs
 * it says "not done", and the test's verdict is "not done", never "passed".
 */
#ifndef CST_RESTORE_TEST_H
#define CST_RESTORE_TEST_H

#include "agent/cli.h"

/* Run the test for month ("YYYY-MM"; NULL: this month in the configured zone).
 * scheduled: the agent started it. Exit status: 0 when the verdict is passed, 1 when it
 * failed or checks were not done, 2 for usage or configuration errors. */
int restore_test_run(struct cli *cli, const char *month, int scheduled);

#endif
