/*
 * notify.h - telling systemd how the service is doing, through libsystemd's
 * sd_notify (the unit is Type=notify with WatchdogSec=):
 *
 *   READY=1      once the start-up reconciliation has queued what changed
 *                while the agent was down (notify_start);
 *   STATUS=      the queue depth and the oldest unshipped change's age, the
 *                same measure as `custodian status` (every tick);
 *   WATCHDOG=1   from a timer on the agent's own loop, every WatchdogSec/4:
 *                a loop that is stuck stops the pings and systemd restarts it;
 *   STOPPING=1   on SIGTERM (notify_stopping).
 *
 * Outside systemd (NOTIFY_SOCKET unset: `make run`, the tests, a shell) every
 * call does nothing and no timer is started.
 *
 * Test hook, never set in the unit: CUSTODIAN_TEST_STALL_MS=N makes the
 * fourth tick after READY sleep N ms inside the loop, so that a test can see
 * the watchdog pings stop while the loop is blocked and resume after it.
 */
#ifndef CST_NOTIFY_H
#define CST_NOTIFY_H

#include <stddef.h>

struct ev_loop;
struct catalog;

/* Send READY=1 with a first STATUS= and start the tick on loop. Returns NULL
 * when not run by systemd (then the other calls do nothing). */
struct notify *notify_start(struct ev_loop *loop, struct catalog *cat);
/* STOPPING=1, with what is still in flight. */
void notify_stopping(const struct notify *n, size_t in_flight);
/* Stop the tick. NULL does nothing. */
void notify_free(struct notify *n);

#endif
