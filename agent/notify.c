/*
 * notify.c - sd_notify for the service (see notify.h): READY=1, STATUS=,
 * WATCHDOG=1 from the loop, STOPPING=1.
 *
 * The watchdog ping is an ev_timer on the agent's loop, never a thread of its
 * own: a thread would keep pinging while the loop that does the work is
 * wedged, which is exactly what the watchdog is there to catch.
 */
#include "notify.h"

#include <errno.h>
#include <ev.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "catalog/catalog.h"
#include "common/log.h"
#include "common/util.h"

/* Without a watchdog, STATUS= is refreshed this often. */
#define NOTIFY_STATUS_S 5.0
/* The tick that stalls under CUSTODIAN_TEST_STALL_MS. */
#define NOTIFY_STALL_TICK 4

struct notify {
    struct ev_loop *loop;
    struct catalog *cat;
    ev_timer tick;
    int watchdog;     /* WatchdogSec= is set: ping on every tick */
    int64_t stall_ms; /* test hook, 0 in production */
    unsigned ticks;
};

/* "3 files unshipped, oldest 12 s; 5 copies waiting": what `custodian status`
 * calls the queue depth and the live RPO, plus the replication backlog. */
static void describe(struct notify *n, char *buf, size_t size)
{
    struct catalog_backlog b;
    struct cst_err err;
    int64_t depth, oldest, pending, pending_oldest;

    if (catalog_queue_stats(n->cat, &depth, &oldest, &err) < 0 ||
        catalog_pending_stats(n->cat, &pending, &pending_oldest, &err) < 0 ||
        catalog_backlog(n->cat, &b, &err) < 0) {
        snprintf(buf, size, "catalog unreadable: see the journal");
        return;
    }
    /* Versions sealed but on no destination yet are unshipped changes too. */
    if (pending && (depth == 0 || pending_oldest < oldest))
        oldest = pending_oldest;
    depth += pending;
    if (depth == 0)
        snprintf(buf, size, "0 files unshipped; %lld copies waiting", (long long)b.copies);
    else
        snprintf(buf, size, "%lld files unshipped, oldest %lld s; %lld copies waiting",
                 (long long)depth, (long long)((util_now_ms() - oldest) / 1000),
                 (long long)b.copies);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct notify *n = t->data;
    char status[160];

    (void)loop;
    (void)revents;
    if (n->stall_ms > 0 && ++n->ticks == NOTIFY_STALL_TICK) {
        struct timespec ts = {(time_t)(n->stall_ms / 1000), (long)(n->stall_ms % 1000) * 1000000};
        int slept;

        log_warn("test hook: blocking the loop for %lld ms (CUSTODIAN_TEST_STALL_MS)",
                 (long long)n->stall_ms);
        do
            slept = nanosleep(&ts, &ts);
        while (slept < 0 && errno == EINTR);
    }
    describe(n, status, sizeof(status));
    sd_notifyf(0, "%sSTATUS=%s", n->watchdog ? "WATCHDOG=1\n" : "", status);
}

struct notify *notify_start(struct ev_loop *loop, struct catalog *cat)
{
    struct notify *n;
    const char *socket = getenv("NOTIFY_SOCKET"), *stall;
    char status[160];
    uint64_t usec = 0;
    double every = NOTIFY_STATUS_S;

    if (socket == NULL || socket[0] == '\0')
        return NULL;
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        log_error("out of memory: systemd will not hear that the agent is ready");
        return NULL;
    }
    n->loop = loop;
    n->cat = cat;
    if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        /* systemd asks for a ping at least every WatchdogSec/2; a quarter
         * leaves room for a busy host. */
        n->watchdog = 1;
        every = (double)usec / 4e6;
    }
    stall = getenv("CUSTODIAN_TEST_STALL_MS");
    if (stall != NULL)
        n->stall_ms = atoll(stall);
    describe(n, status, sizeof(status));
    if (sd_notifyf(0, "READY=1\n%sSTATUS=%s", n->watchdog ? "WATCHDOG=1\n" : "", status) <= 0)
        log_warn("cannot tell systemd that the agent is ready (NOTIFY_SOCKET=%s)", socket);
    ev_timer_init(&n->tick, on_tick, every, every);
    n->tick.data = n;
    ev_timer_start(loop, &n->tick);
    log_info("told systemd: ready watchdog_ms=%lld", (long long)(n->watchdog ? usec / 1000 : 0));
    return n;
}

void notify_stopping(const struct notify *n, size_t in_flight)
{
    if (n == NULL)
        return;
    sd_notifyf(0, "STOPPING=1\nSTATUS=stopping: finishing %zu file(s) in flight", in_flight);
}

void notify_free(struct notify *n)
{
    if (n == NULL)
        return;
    ev_timer_stop(n->loop, &n->tick);
    free(n);
}
