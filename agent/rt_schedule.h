/*
 * rt_schedule.h - when the agent runs the monthly restore test: on
 * [restore_test] day_of_month at `at` (local, [agent] timezone), as
 * `custodian restore-test --scheduled` in a child process, like the daily
 * run. A test missed while the host was down runs soon after start-up; one
 * whose process died is run again a quarter of an hour later; a test that
 * finished (whatever its verdict) is not repeated: a failed test is an
 * alert and a finding, which an operator reruns by hand once it is fixed.
 */
#ifndef CST_RT_SCHEDULE_H
#define CST_RT_SCHEDULE_H

#include <ev.h>
#include <stdint.h>

#include "agent/cli.h"
#include "agent/sched.h"

/*
 * The pure rule. The latest scheduled instant at or before now (day_of_month at hh:mm of
 * this month, else of the previous one) is due when its month is after last_month (the
 * newest month whose test finished, "YYYY-MM"), or, when no test ever finished
 * (last_month NULL or ""), when it is not before installed_at (ms): a fresh install does
 * not test backups it has not made yet. Returns 1 with due_month (YYYY-MM) filled when a
 * test is due; 0 when none is, with *next (seconds) the next scheduled instant after now;
 * -1 when the fields are out of range.
 */
int rt_schedule_due(const struct sched_zone *z, int day, int hour, int min, const char *last_month,
                    int64_t installed_at_ms, int64_t now, char due_month[8], int64_t *next);

struct rt_schedule;

/* Plan (and keep planning) the test on loop; NULL when [restore_test] enabled = no. */
struct rt_schedule *rt_schedule_start(struct ev_loop *loop, struct cli *cli,
                                      const struct sched_zone *zone);
/* Stop the timers, and a test in progress (SIGTERM: it is run again at the next start). */
void rt_schedule_stop(struct rt_schedule *s);
void rt_schedule_free(struct rt_schedule *s);

#endif
