/*
 * test_sched.c - agent/sched.c: the daily run lands once per local date at
 * daily_at across DST (New York, London, Sydney, a fixed-offset zone), at
 * the time plus the gap when daily_at does not exist and at the first
 * occurrence when it happens twice; catch-up after downtime picks only the
 * latest missed run; offsets agree with glibc for every zone installed;
 * slim (footer-only) files and POSIX TZ footers agree with glibc; malformed
 * TZif files and bad zone names are refused with a message, never a crash.
 *
 * Expected DST dates are derived here from the published rules (US: second
 * Sunday of March, first Sunday of November; EU: last Sundays of March and
 * October; Australia: first Sundays of October and April), not from sched.c.
 * glibc (setenv TZ in this test only) is the independent oracle elsewhere.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/sched.h"

#define HOUR 3600
#define DAY 86400

static char tmpdir[64];

/* ---- independent calendar helpers (glibc's timegm/gmtime_r) ---- */

static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm);
}

static int wday_of(int y, int mo, int d)
{
    time_t t = (time_t)utc(y, mo, d, 12, 0);
    struct tm tm;

    gmtime_r(&t, &tm);
    return tm.tm_wday;
}

static int days_in_month(int y, int mo)
{
    time_t t = (time_t)(utc(mo == 12 ? y + 1 : y, mo == 12 ? 1 : mo + 1, 1, 12, 0) - DAY);
    struct tm tm;

    gmtime_r(&t, &tm);
    return tm.tm_mday;
}

static int nth_sunday(int y, int mo, int n)
{
    return 1 + (7 - wday_of(y, mo, 1)) % 7 + 7 * (n - 1);
}

static int last_sunday(int y, int mo)
{
    int last = days_in_month(y, mo);

    return last - wday_of(y, mo, last);
}

static void next_date(int *y, int *mo, int *d)
{
    if (++*d > days_in_month(*y, *mo)) {
        *d = 1;
        if (++*mo > 12) {
            *mo = 1;
            ++*y;
        }
    }
}

static struct sched_zone *load(const char *name)
{
    struct cst_err err;
    struct sched_zone *z;

    err.msg[0] = '\0';
    z = sched_zone_load(name, &err);
    if (z == NULL)
        fail_msg("loading %s: %s", name, err.msg);
    return z;
}

/* Y-M-D normalized as timegm does (Nov 0 is Oct 31), so tests can say "fall - 1". */
static void normalize(int *y, int *mo, int *d)
{
    time_t t = (time_t)utc(*y, *mo, *d, 12, 0);
    struct tm tm;

    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *mo = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

static int64_t run_at(const struct sched_zone *z, int y, int mo, int d, int h, int mi)
{
    int64_t t = 0;

    normalize(&y, &mo, &d);
    assert_int_equal(sched_run_instant(z, y, mo, d, h, mi, &t), 0);
    return t;
}

static void assert_local(const struct sched_zone *z, int64_t t, int y, int mo, int d, int h, int mi)
{
    int ly, lmo, ld, lh, lmi, ls;

    sched_localtime(z, t, &ly, &lmo, &ld, &lh, &lmi, &ls);
    if (ly != y || lmo != mo || ld != d || lh != h || lmi != mi || ls != 0)
        fail_msg("instant %lld is %04d-%02d-%02d %02d:%02d:%02d local, expected "
                 "%04d-%02d-%02d %02d:%02d",
                 (long long)t, ly, lmo, ld, lh, lmi, ls, y, mo, d, h, mi);
}

/* ---- walking the run calendar ---- */

struct run {
    char date[SCHED_DATE_SIZE];
    int64_t at;
    int hour, min;
    int64_t since_prev; /* seconds since the previous run, 0 for the first */
};

/*
 * Every run from the first one on Jan 1 of y0 through Dec 31 of y1, checking
 * what holds for any zone: one run per local date, consecutive dates, each
 * instant on its own date. Returns the count; runs[] gets the details.
 */
static size_t walk(const struct sched_zone *z, int hour, int min, int y0, int y1, struct run *runs,
                   size_t max)
{
    int y = y0, mo = 1, d = 1;
    int64_t after = run_at(z, y0, 1, 1, 0, 0) - 1;
    size_t n = 0;

    for (;;) {
        char expect[SCHED_DATE_SIZE];
        struct run *r = &runs[n];
        int ly, lmo, ld;

        assert_true(n < max);
        assert_int_equal(sched_next_run(z, hour, min, after, &r->at, r->date), 0);
        if (atoi(r->date) > y1)
            break;
        snprintf(expect, sizeof(expect), "%04d-%02d-%02d", y, mo, d);
        assert_string_equal(r->date, expect);
        assert_true(r->at > after);
        sched_localtime(z, r->at, &ly, &lmo, &ld, &r->hour, &r->min, NULL);
        snprintf(expect, sizeof(expect), "%04d-%02d-%02d", ly, lmo, ld);
        assert_string_equal(r->date, expect);
        r->since_prev = n > 0 ? r->at - runs[n - 1].at : 0;
        after = r->at;
        n++;
        next_date(&y, &mo, &d);
    }
    return n;
}

static int is_date(const char *date, int y, int mo, int d)
{
    char s[SCHED_DATE_SIZE];

    normalize(&y, &mo, &d);
    snprintf(s, sizeof(s), "%04d-%02d-%02d", y, mo, d);
    return strcmp(date, s) == 0;
}

/* ---- America/New_York ---- */

static void test_new_york_transition_days(void **state)
{
    struct sched_zone *z = load("America/New_York");
    int dst;

    (void)state;
    for (int y = 2026; y <= 2033; y++) {
        int spring = nth_sunday(y, 3, 2), fall = nth_sunday(y, 11, 1);
        int64_t t;

        /* 02:00 does not exist: 03:00 EDT, 07:00 UTC. */
        t = run_at(z, y, 3, spring, 2, 0);
        assert_int_equal(t, utc(y, 3, spring, 7, 0));
        assert_local(z, t, y, 3, spring, 3, 0);
        assert_int_equal(sched_utc_offset(z, t, &dst), -4 * HOUR);
        assert_int_equal(dst, 1);
        assert_int_equal(run_at(z, y, 3, spring, 2, 30), utc(y, 3, spring, 7, 30));
        assert_local(z, run_at(z, y, 3, spring, 2, 30), y, 3, spring, 3, 30);
        assert_int_equal(run_at(z, y, 3, spring, 2, 59), utc(y, 3, spring, 7, 59));
        /* The edges of the gap exist. */
        assert_int_equal(run_at(z, y, 3, spring, 1, 59), utc(y, 3, spring, 6, 59));
        assert_int_equal(run_at(z, y, 3, spring, 3, 0), utc(y, 3, spring, 7, 0));
        /* Day before: EST; day after: EDT. */
        assert_int_equal(run_at(z, y, 3, spring - 1, 2, 0), utc(y, 3, spring - 1, 7, 0));
        assert_int_equal(run_at(z, y, 3, spring + 1, 2, 0), utc(y, 3, spring + 1, 6, 0));

        /* 01:30 happens twice: the first, EDT. */
        t = run_at(z, y, 11, fall, 1, 30);
        assert_int_equal(t, utc(y, 11, fall, 5, 30));
        assert_int_equal(sched_utc_offset(z, t, &dst), -4 * HOUR);
        assert_int_equal(dst, 1);
        assert_int_equal(run_at(z, y, 11, fall, 1, 0), utc(y, 11, fall, 5, 0));
        assert_int_equal(run_at(z, y, 11, fall, 1, 59), utc(y, 11, fall, 5, 59));
        /* 02:00 once, EST. */
        t = run_at(z, y, 11, fall, 2, 0);
        assert_int_equal(t, utc(y, 11, fall, 7, 0));
        assert_int_equal(sched_utc_offset(z, t, &dst), -5 * HOUR);
        assert_int_equal(dst, 0);
        assert_int_equal(run_at(z, y, 11, fall - 1, 2, 0), utc(y, 11, fall - 1, 6, 0));
        assert_int_equal(run_at(z, y, 11, fall + 1, 2, 0), utc(y, 11, fall + 1, 7, 0));
    }
    sched_zone_free(z);
}

static void test_new_york_every_run_2026_2033(void **state)
{
    static struct run runs[3000];
    struct sched_zone *z = load("America/New_York");
    size_t n = walk(z, 2, 0, 2026, 2033, runs, 3000);
    int odd = 0;

    (void)state;
    assert_int_equal(n, utc(2034, 1, 1, 0, 0) / DAY - utc(2026, 1, 1, 0, 0) / DAY);
    for (size_t i = 0; i < n; i++) {
        const struct run *r = &runs[i];
        int y = atoi(r->date), spring = nth_sunday(y, 3, 2), fall = nth_sunday(y, 11, 1);

        if (is_date(r->date, y, 3, spring)) {
            assert_int_equal(r->hour, 3);
        } else {
            assert_int_equal(r->hour, 2);
        }
        assert_int_equal(r->min, 0);
        if (i == 0)
            continue;
        /* 02:00 EST -> 03:00 EDT is 24 h; 03:00 EDT -> 02:00 EDT is 23 h; 02:00 EDT -> 02:00
         * EST over the fall-back night is 25 h. */
        if (is_date(r->date, y, 3, spring + 1)) {
            assert_int_equal(r->since_prev, 23 * HOUR);
            odd++;
        } else if (is_date(r->date, y, 11, fall)) {
            assert_int_equal(r->since_prev, 25 * HOUR);
            odd++;
        } else {
            assert_int_equal(r->since_prev, 24 * HOUR);
        }
    }
    assert_int_equal(odd, 16);
    sched_zone_free(z);
}

/* ---- Europe/London: 01:30 is in the gap in March, repeated in October ---- */

static void test_london(void **state)
{
    static struct run runs[3000];
    struct sched_zone *z = load("Europe/London");
    size_t n;

    (void)state;
    for (int y = 2026; y <= 2033; y++) {
        int spring = last_sunday(y, 3), fall = last_sunday(y, 10);
        int64_t t;

        /* 01:00 GMT -> 02:00 BST: 01:30 runs at 02:30 BST = 01:30 UTC. */
        t = run_at(z, y, 3, spring, 1, 30);
        assert_int_equal(t, utc(y, 3, spring, 1, 30));
        assert_local(z, t, y, 3, spring, 2, 30);
        assert_int_equal(run_at(z, y, 3, spring - 1, 1, 30), utc(y, 3, spring - 1, 1, 30));
        assert_int_equal(run_at(z, y, 3, spring + 1, 1, 30), utc(y, 3, spring + 1, 0, 30));
        /* 02:00 BST -> 01:00 GMT: 01:30 twice, the first is BST = 00:30 UTC. */
        t = run_at(z, y, 10, fall, 1, 30);
        assert_int_equal(t, utc(y, 10, fall, 0, 30));
        assert_int_equal(sched_utc_offset(z, t, NULL), HOUR);
        assert_int_equal(run_at(z, y, 10, fall + 1, 1, 30), utc(y, 10, fall + 1, 1, 30));
    }
    n = walk(z, 1, 30, 2026, 2033, runs, 3000);
    assert_int_equal(n, 2922);
    for (size_t i = 1; i < n; i++) {
        const struct run *r = &runs[i];
        int y = atoi(r->date);

        if (is_date(r->date, y, 3, last_sunday(y, 3))) {
            assert_int_equal(r->hour, 2);
            assert_int_equal(r->since_prev, 24 * HOUR);
        } else if (is_date(r->date, y, 3, last_sunday(y, 3) + 1)) {
            assert_int_equal(r->since_prev, 23 * HOUR);
        } else if (is_date(r->date, y, 10, last_sunday(y, 10) + 1)) {
            /* 01:30 BST (first occurrence) -> 01:30 GMT next day. */
            assert_int_equal(r->since_prev, 25 * HOUR);
        } else {
            assert_int_equal(r->hour, 1);
            assert_int_equal(r->since_prev, 24 * HOUR);
        }
    }
    sched_zone_free(z);
}

/* ---- Australia/Sydney: DST over the new year, from October to April ---- */

static void test_sydney(void **state)
{
    static struct run runs[3000];
    struct sched_zone *z = load("Australia/Sydney");
    int dst;
    size_t n;

    (void)state;
    for (int y = 2026; y <= 2033; y++) {
        int spring = nth_sunday(y, 10, 1), autumn = nth_sunday(y, 4, 1);
        int64_t t;

        /* 02:00 AEST -> 03:00 AEDT: 02:30 runs at 03:30 AEDT = 16:30 UTC the day before. */
        t = run_at(z, y, 10, spring, 2, 30);
        assert_int_equal(t, utc(y, 10, spring, 2, 30) - 10 * HOUR);
        assert_local(z, t, y, 10, spring, 3, 30);
        /* 03:00 AEDT -> 02:00 AEST: 02:30 first as AEDT (+11). */
        t = run_at(z, y, 4, autumn, 2, 30);
        assert_int_equal(t, utc(y, 4, autumn, 2, 30) - 11 * HOUR);
        assert_int_equal(sched_utc_offset(z, t, &dst), 11 * HOUR);
        assert_int_equal(dst, 1);
        /* Summer is January. */
        assert_int_equal(sched_utc_offset(z, utc(y, 1, 15, 0, 0), &dst), 11 * HOUR);
        assert_int_equal(dst, 1);
        assert_int_equal(sched_utc_offset(z, utc(y, 7, 15, 0, 0), &dst), 10 * HOUR);
        assert_int_equal(dst, 0);
    }
    n = walk(z, 2, 30, 2026, 2033, runs, 3000);
    assert_int_equal(n, 2922);
    for (size_t i = 0; i < n; i++) {
        int y = atoi(runs[i].date);

        assert_int_equal(runs[i].hour, is_date(runs[i].date, y, 10, nth_sunday(y, 10, 1)) ? 3 : 2);
        assert_int_equal(runs[i].min, 30);
    }
    sched_zone_free(z);
}

/* ---- Asia/Kolkata: +05:30, no DST ---- */

static void test_kolkata_fixed_offset(void **state)
{
    static struct run runs[3000];
    struct sched_zone *z = load("Asia/Kolkata");
    int dst = -1;
    size_t n;

    (void)state;
    for (int64_t t = utc(2026, 1, 1, 0, 0); t < utc(2034, 1, 1, 0, 0); t += 7 * HOUR + 13) {
        assert_int_equal(sched_utc_offset(z, t, &dst), 5 * HOUR + 1800);
        assert_int_equal(dst, 0);
    }
    assert_int_equal(run_at(z, 2026, 3, 8, 2, 0), utc(2026, 3, 7, 20, 30));
    n = walk(z, 2, 0, 2026, 2033, runs, 3000);
    assert_int_equal(n, 2922);
    for (size_t i = 1; i < n; i++) {
        assert_int_equal(runs[i].since_prev, DAY);
        assert_int_equal(runs[i].hour, 2);
    }
    sched_zone_free(z);
}

/* ---- catch-up after downtime ---- */

static void test_due(void **state)
{
    struct sched_zone *z = load("America/New_York");
    char due[SCHED_DATE_SIZE];
    int missed = -1;

    (void)state;
    /* Down on the 19th: only the 20th runs, and says one was missed. */
    assert_int_equal(sched_due(z, 2, 0, "2026-11-18", utc(2026, 11, 20, 15, 0), due, &missed), 1);
    assert_string_equal(due, "2026-11-20");
    assert_int_equal(missed, 1);
    /* Already done today. */
    assert_int_equal(sched_due(z, 2, 0, "2026-11-20", utc(2026, 11, 20, 15, 0), due, &missed), 0);
    assert_int_equal(missed, 0);
    /* 01:59 EST the next day: not yet; 02:00:00 EST: due. */
    assert_int_equal(sched_due(z, 2, 0, "2026-11-20", utc(2026, 11, 21, 6, 59), due, &missed), 0);
    assert_int_equal(sched_due(z, 2, 0, "2026-11-20", utc(2026, 11, 21, 7, 0) - 1, due, NULL), 0);
    assert_int_equal(sched_due(z, 2, 0, "2026-11-20", utc(2026, 11, 21, 7, 0), due, &missed), 1);
    assert_string_equal(due, "2026-11-21");
    assert_int_equal(missed, 0);
    /* Never run: the latest scheduled run, today's after 02:00, yesterday's before. */
    assert_int_equal(sched_due(z, 2, 0, NULL, utc(2026, 11, 20, 15, 0), due, &missed), 1);
    assert_string_equal(due, "2026-11-20");
    assert_int_equal(missed, 0);
    assert_int_equal(sched_due(z, 2, 0, "", utc(2026, 11, 20, 6, 0), due, &missed), 1);
    assert_string_equal(due, "2026-11-19");
    /* Long downtime: one run, the count of the rest. */
    assert_int_equal(sched_due(z, 2, 0, "2026-01-01", utc(2026, 11, 20, 15, 0), due, &missed), 1);
    assert_string_equal(due, "2026-11-20");
    assert_int_equal(missed, 322);
    /* A last success in the future (clock set back) is not a reason to run. */
    assert_int_equal(sched_due(z, 2, 0, "2026-12-01", utc(2026, 11, 20, 15, 0), due, &missed), 0);
    /* Spring forward: the run for the 8th is at 03:00 EDT = 07:00 UTC. */
    assert_int_equal(sched_due(z, 2, 0, "2026-03-06", utc(2026, 3, 8, 6, 59), due, &missed), 1);
    assert_string_equal(due, "2026-03-07");
    assert_int_equal(sched_due(z, 2, 0, "2026-03-06", utc(2026, 3, 8, 7, 0), due, &missed), 1);
    assert_string_equal(due, "2026-03-08");
    assert_int_equal(missed, 1);
    /* Fall back, daily_at 01:30: due at the first 01:30 (EDT), not again at the second. */
    assert_int_equal(sched_due(z, 1, 30, "2026-10-31", utc(2026, 11, 1, 5, 29), due, NULL), 0);
    assert_int_equal(sched_due(z, 1, 30, "2026-10-31", utc(2026, 11, 1, 5, 30), due, NULL), 1);
    assert_string_equal(due, "2026-11-01");
    assert_int_equal(sched_due(z, 1, 30, "2026-11-01", utc(2026, 11, 1, 6, 30), due, NULL), 0);
    /* Malformed input. */
    assert_int_equal(sched_due(z, 2, 0, "2026-11-31", utc(2026, 11, 20, 15, 0), due, NULL), -1);
    assert_int_equal(sched_due(z, 2, 0, "20261120", utc(2026, 11, 20, 15, 0), due, NULL), -1);
    assert_int_equal(sched_due(z, 24, 0, NULL, utc(2026, 11, 20, 15, 0), due, NULL), -1);
    assert_int_equal(sched_due(z, 2, 60, NULL, utc(2026, 11, 20, 15, 0), due, NULL), -1);
    sched_zone_free(z);
}

static void test_next_run_edges(void **state)
{
    struct sched_zone *z = load("America/New_York");
    char date[SCHED_DATE_SIZE];
    int64_t t;

    (void)state;
    /* Exactly at a run: the next one is tomorrow's. */
    assert_int_equal(sched_next_run(z, 2, 0, utc(2026, 11, 20, 7, 0), &t, date), 0);
    assert_string_equal(date, "2026-11-21");
    assert_int_equal(t, utc(2026, 11, 21, 7, 0));
    assert_int_equal(sched_next_run(z, 2, 0, utc(2026, 11, 20, 7, 0) - 1, &t, date), 0);
    assert_string_equal(date, "2026-11-20");
    /* Between the two 01:30s of fall-back night: the next 01:30 run is the next day's. */
    assert_int_equal(sched_next_run(z, 1, 30, utc(2026, 11, 1, 6, 0), &t, date), 0);
    assert_string_equal(date, "2026-11-02");
    assert_int_equal(t, utc(2026, 11, 2, 6, 30));
    /* In the spring-forward gap the pushed run is still ahead. */
    assert_int_equal(sched_next_run(z, 2, 30, utc(2026, 3, 8, 7, 0), &t, date), 0);
    assert_string_equal(date, "2026-03-08");
    assert_int_equal(t, utc(2026, 3, 8, 7, 30));
    assert_int_equal(sched_next_run(z, 24, 0, 0, &t, date), -1);
    assert_int_equal(sched_next_run(z, 0, -1, 0, &t, date), -1);
    assert_int_equal(sched_run_instant(z, 2026, 2, 29, 2, 0, &t), -1);
    assert_int_equal(sched_run_instant(z, 2028, 2, 29, 2, 0, &t), 0);
    assert_int_equal(sched_run_instant(z, 0, 1, 1, 2, 0, &t), -1);
    assert_int_equal(sched_run_instant(z, 2026, 13, 1, 2, 0, &t), -1);
    assert_int_equal(sched_local_instant(z, 2026, 1, 1, 2, 0, 60, &t), -1);
    sched_local_date(z, utc(2026, 11, 21, 4, 59), date);
    assert_string_equal(date, "2026-11-20");
    sched_local_date(z, utc(2026, 11, 21, 5, 0), date);
    assert_string_equal(date, "2026-11-21");
    sched_zone_free(z);
}

/*
 * America/Nuuk springs forward at Saturday 23:00 (-02) -> Sunday 00:00 (-01):
 * daily_at 23:30 on that Saturday runs at Sunday 00:30, still labelled
 * Saturday, and is still ahead when it is already Sunday.
 */
static void test_gap_across_midnight(void **state)
{
    struct sched_zone *z = load("America/Nuuk");
    char date[SCHED_DATE_SIZE];
    int64_t t;

    (void)state;
    assert_int_equal(run_at(z, 2026, 3, 28, 23, 30), utc(2026, 3, 29, 1, 30));
    assert_local(z, utc(2026, 3, 29, 1, 30), 2026, 3, 29, 0, 30);
    assert_int_equal(sched_next_run(z, 23, 30, utc(2026, 3, 29, 1, 10), &t, date), 0);
    assert_string_equal(date, "2026-03-28");
    assert_int_equal(t, utc(2026, 3, 29, 1, 30));
    assert_int_equal(sched_next_run(z, 23, 30, t, &t, date), 0);
    assert_string_equal(date, "2026-03-29");
    assert_local(z, t, 2026, 3, 29, 23, 30);
    assert_int_equal(sched_due(z, 23, 30, "2026-03-27", utc(2026, 3, 29, 1, 29), date, NULL), 0);
    assert_int_equal(sched_due(z, 23, 30, "2026-03-27", utc(2026, 3, 29, 1, 30), date, NULL), 1);
    assert_string_equal(date, "2026-03-28");
    sched_zone_free(z);
}

/* Pacific/Apia skipped 2011-12-30 entirely: no run for that date, none lost around it. */
static void test_skipped_day(void **state)
{
    struct sched_zone *z = load("Pacific/Apia");
    char date[SCHED_DATE_SIZE];
    int64_t t;

    (void)state;
    assert_int_equal(sched_next_run(z, 2, 0, utc(2011, 12, 29, 0, 0), &t, date), 0);
    assert_string_equal(date, "2011-12-29");
    assert_int_equal(sched_next_run(z, 2, 0, t, &t, date), 0);
    assert_string_equal(date, "2011-12-31");
    assert_local(z, t, 2011, 12, 31, 2, 0);
    sched_zone_free(z);
}

/* ---- glibc as the oracle ---- */

static void glibc_zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int64_t random_between(int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rng() % (uint64_t)(hi - lo));
}

/* n random instants in [lo, hi) plus instants one second around quarter hours. */
static int compare_with_glibc(const struct sched_zone *z, const char *label, int64_t lo, int64_t hi,
                              int n)
{
    int bad = 0;

    for (int i = 0; i < n; i++) {
        int64_t t = random_between(lo, hi);
        time_t tt;
        struct tm tm;
        int dst, off, y, mo, d, h, mi, s;

        if (i % 4 == 0)
            t = t / 900 * 900 - (i / 4 % 2);
        tt = (time_t)t;
        localtime_r(&tt, &tm);
        off = sched_utc_offset(z, t, &dst);
        sched_localtime(z, t, &y, &mo, &d, &h, &mi, &s);
        if (off != tm.tm_gmtoff || dst != (tm.tm_isdst > 0) || y != tm.tm_year + 1900 ||
            mo != tm.tm_mon + 1 || d != tm.tm_mday || h != tm.tm_hour || mi != tm.tm_min ||
            s != tm.tm_sec) {
            if (bad++ < 3)
                print_error("%s at %lld: sched %d s dst %d, glibc %ld s dst %d\n", label,
                            (long long)t, off, dst, (long)tm.tm_gmtoff, tm.tm_isdst);
        }
    }
    return bad;
}

static void test_new_york_matches_glibc(void **state)
{
    struct sched_zone *z = load("America/New_York");

    (void)state;
    glibc_zone("America/New_York");
    assert_int_equal(compare_with_glibc(z, "America/New_York", utc(2026, 1, 1, 0, 0),
                                        utc(2034, 1, 1, 0, 0), 200000),
                     0);
    /* Beyond 2037 the file has no transitions left: the footer rules. */
    assert_int_equal(compare_with_glibc(z, "America/New_York", utc(2034, 1, 1, 0, 0),
                                        utc(2200, 1, 1, 0, 0), 50000),
                     0);
    sched_zone_free(z);
}

/* Every zone tzdata installs, 1901..2200 (LMT eras, old rules, the footer). */
static void test_all_zones_match_glibc(void **state)
{
    FILE *f = fopen("/usr/share/zoneinfo/tzdata.zi", "r");
    char line[512];
    int zones = 0, bad = 0;

    (void)state;
    if (f == NULL)
        skip();
    while (fgets(line, sizeof(line), f) != NULL) {
        char name[256];
        struct sched_zone *z;

        if (sscanf(line, "Z %255s", name) != 1 && sscanf(line, "L %*s %255s", name) != 1)
            continue;
        z = load(name);
        glibc_zone(name);
        bad += compare_with_glibc(z, name, utc(1901, 1, 1, 0, 0), utc(2200, 1, 1, 0, 0), 400) != 0;
        sched_zone_free(z);
        zones++;
    }
    fclose(f);
    assert_true(zones > 300);
    assert_int_equal(bad, 0);
}

/*
 * glibc's offset at t, and the instant the wall clock shows `l` (local
 * seconds) by the rules, found by brute force from glibc's offsets: the
 * earliest t with t + off(t) == l, else (in a gap) the exact transition
 * located by bisection and l - offset before it.
 */
static long glibc_off(int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    localtime_r(&tt, &tm);
    return tm.tm_gmtoff;
}

static int64_t glibc_wall_to_instant(int64_t l)
{
    int64_t best = INT64_MAX;

    for (int64_t s = l - 16 * HOUR; s <= l + 16 * HOUR; s += HOUR) {
        long o = glibc_off(s);

        if (glibc_off(l - o) == o && l - o < best)
            best = l - o;
    }
    if (best != INT64_MAX)
        return best;
    for (int64_t s = l - 16 * HOUR; s < l + 16 * HOUR; s += HOUR) {
        int64_t lo = s, hi = s + HOUR;
        long before = glibc_off(lo), after = glibc_off(hi);

        if (before == after)
            continue;
        while (hi - lo > 1) { /* off(lo) == before, off(hi) != before */
            int64_t mid = lo + (hi - lo) / 2;

            if (glibc_off(mid) == before)
                lo = mid;
            else
                hi = mid;
        }
        if (hi + before <= l && l < hi + glibc_off(hi))
            return l - before;
    }
    return INT64_MIN;
}

static void test_run_instants_match_glibc(void **state)
{
    static const char *const zones[] = {
        "America/New_York", "Europe/London",       "Australia/Sydney", "America/Santiago",
        "America/Nuuk",     "Australia/Lord_Howe", "Europe/Dublin",    "America/Havana",
    };
    static const int times[][2] = {{0, 0}, {0, 30}, {1, 30}, {2, 0}, {2, 30}, {23, 59}};

    (void)state;
    for (size_t zi = 0; zi < sizeof(zones) / sizeof(zones[0]); zi++) {
        struct sched_zone *z = load(zones[zi]);
        int bad = 0;

        glibc_zone(zones[zi]);
        for (int y = 2026; y <= 2033; y++) {
            for (int mo = 1; mo <= 12; mo++) {
                for (int d = 1; d <= days_in_month(y, mo); d++) {
                    for (size_t k = 0; k < sizeof(times) / sizeof(times[0]); k++) {
                        int64_t l = utc(y, mo, d, times[k][0], times[k][1]);
                        int64_t mine = run_at(z, y, mo, d, times[k][0], times[k][1]);
                        int64_t want;

                        /* Only where something happens, to keep it quick. */
                        if (glibc_off(l - 16 * HOUR) == glibc_off(l + 16 * HOUR) &&
                            mine == l - glibc_off(l))
                            continue;
                        want = glibc_wall_to_instant(l);
                        if (mine != want && bad++ < 3)
                            print_error("%s %04d-%02d-%02d %02d:%02d: sched %lld, glibc %lld\n",
                                        zones[zi], y, mo, d, times[k][0], times[k][1],
                                        (long long)mine, (long long)want);
                    }
                }
            }
        }
        assert_int_equal(bad, 0);
        sched_zone_free(z);
    }
}

/* ---- hand-built TZif files ---- */

struct tzif_spec {
    int version; /* 1, 2 or 3 */
    size_t ntrans;
    const int64_t *trans;
    const uint8_t *idx;
    size_t ntypes;
    const int32_t *utoff;
    const uint8_t *isdst;
    const char *footer; /* v2+ */
};

static unsigned char *put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return p + 4;
}

static unsigned char *put_header(unsigned char *p, int version, uint32_t timecnt, uint32_t typecnt,
                                 uint32_t charcnt)
{
    memcpy(p, "TZif", 4);
    p[4] = version == 1 ? 0 : (unsigned char)('0' + version);
    memset(p + 5, 0, 15);
    p = put32(p + 20, 0); /* isutcnt */
    p = put32(p, 0);      /* isstdcnt */
    p = put32(p, 0);      /* leapcnt */
    p = put32(p, timecnt);
    p = put32(p, typecnt);
    return put32(p, charcnt);
}

static unsigned char *put_block(unsigned char *p, const struct tzif_spec *s, int timesize)
{
    for (size_t i = 0; i < s->ntrans; i++) {
        if (timesize == 8) {
            p = put32(p, (uint32_t)((uint64_t)s->trans[i] >> 32));
            p = put32(p, (uint32_t)s->trans[i]);
        } else {
            p = put32(p, (uint32_t)s->trans[i]);
        }
    }
    for (size_t i = 0; i < s->ntrans; i++)
        *p++ = s->idx[i];
    for (size_t i = 0; i < s->ntypes; i++) {
        p = put32(p, (uint32_t)s->utoff[i]);
        *p++ = s->isdst[i];
        *p++ = 0;
    }
    memcpy(p, "ABC", 4);
    return p + 4;
}

/* Serialize spec into buf (at least 4096 bytes); returns the length. */
static size_t build_tzif(unsigned char *buf, const struct tzif_spec *s)
{
    unsigned char *p = buf;

    if (s->version == 1) {
        p = put_header(p, 1, (uint32_t)s->ntrans, (uint32_t)s->ntypes, 4);
        p = put_block(p, s, 4);
        return (size_t)(p - buf);
    }
    /* A slim-style v1 block: one type, nothing else. */
    p = put_header(p, s->version, 0, 1, 4);
    p = put32(p, 0);
    *p++ = 0;
    *p++ = 0;
    memcpy(p, "ABC", 4);
    p += 4;
    p = put_header(p, s->version, (uint32_t)s->ntrans, (uint32_t)s->ntypes, 4);
    p = put_block(p, s, 8);
    p += sprintf((char *)p, "\n%s\n", s->footer);
    return (size_t)(p - buf);
}

static const char *write_file(const char *name, const void *data, size_t len)
{
    static char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return path;
}

static struct sched_zone *load_bytes(const void *data, size_t len, struct cst_err *err)
{
    err->msg[0] = '\0';
    return sched_zone_load_file(write_file("zone.tzif", data, len), err);
}

static struct sched_zone *load_footer_only(const char *footer, struct cst_err *err)
{
    static const int32_t utoff[] = {-5 * HOUR};
    static const uint8_t isdst[] = {0};
    struct tzif_spec s = {.version = 3, .ntypes = 1, .utoff = utoff, .isdst = isdst};
    unsigned char buf[4096];

    s.footer = footer;
    return load_bytes(buf, build_tzif(buf, &s), err);
}

/* A slim New York: no transitions, everything from "EST5EDT,M3.2.0,M11.1.0". */
static void test_slim_file(void **state)
{
    struct sched_zone *slim, *fat = load("America/New_York");
    struct cst_err err;

    (void)state;
    slim = load_footer_only("EST5EDT,M3.2.0,M11.1.0", &err);
    if (slim == NULL)
        fail_msg("%s", err.msg);
    for (int i = 0; i < 100000; i++) {
        int64_t t = random_between(utc(2007, 6, 1, 0, 0), utc(2200, 1, 1, 0, 0));
        int d1, d2;

        if (i % 2)
            t = t / 1800 * 1800 - (i % 4 == 1);
        assert_int_equal(sched_utc_offset(slim, t, &d1), sched_utc_offset(fat, t, &d2));
        assert_int_equal(d1, d2);
    }
    for (int y = 2026; y <= 2033; y++) {
        int spring = nth_sunday(y, 3, 2), fall = nth_sunday(y, 11, 1);

        assert_int_equal(run_at(slim, y, 3, spring, 2, 0), utc(y, 3, spring, 7, 0));
        assert_int_equal(run_at(slim, y, 11, fall, 1, 30), utc(y, 11, fall, 5, 30));
        assert_int_equal(run_at(slim, y, 11, fall, 2, 0), utc(y, 11, fall, 7, 0));
    }
    sched_zone_free(slim);
    sched_zone_free(fat);
}

/* POSIX TZ footers of every shape, against glibc parsing the same string from TZ. */
static void test_footers_match_glibc(void **state)
{
    static const char *const footers[] = {
        "EST5EDT,M3.2.0,M11.1.0",
        "GMT0BST,M3.5.0/1,M10.5.0",
        "AEST-10AEDT,M10.1.0,M4.1.0/3",
        "IST-5:30",
        "<+0530>-5:30",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "IST-1GMT0,M10.5.0,M3.5.0/1",      /* negative DST (Dublin) */
        "<-04>4<-03>,M9.1.6/24,M4.1.6/24", /* 24:00 (Santiago) */
        "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", /* negative time (Nuuk) */
        "XXX3YYY,J60/2,J300/2",            /* Jn skips Feb 29 */
        "XXX3YYY,59/2,299/2",              /* n counts it */
        "AAA-10BBB,M10.1.0/50,M4.1.0/-3",  /* beyond 24 h */
        "CET-1CEST-2:00:00,M3.5.0/02:00:00,M10.5.0/03:00:00",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(footers) / sizeof(footers[0]); i++) {
        struct cst_err err;
        struct sched_zone *z = load_footer_only(footers[i], &err);

        if (z == NULL)
            fail_msg("footer %s: %s", footers[i], err.msg);
        glibc_zone(footers[i]);
        assert_int_equal(
            compare_with_glibc(z, footers[i], utc(2008, 1, 1, 0, 0), utc(2100, 1, 1, 0, 0), 20000),
            0);
        sched_zone_free(z);
    }
    /* No rule: the US one, as tzcode assumes (glibc would read posixrules instead). */
    {
        struct cst_err err;
        struct sched_zone *bare = load_footer_only("AAA+3BBB", &err);
        struct sched_zone *us = load_footer_only("AAA+3BBB,M3.2.0,M11.1.0", &err);

        assert_non_null(bare);
        assert_non_null(us);
        for (int i = 0; i < 20000; i++) {
            int64_t t = random_between(utc(2000, 1, 1, 0, 0), utc(2100, 1, 1, 0, 0));
            int d1, d2;

            assert_int_equal(sched_utc_offset(bare, t, &d1), sched_utc_offset(us, t, &d2));
            assert_int_equal(d1, d2);
        }
        assert_int_equal(sched_utc_offset(us, utc(2026, 7, 1, 0, 0), NULL), -2 * HOUR);
        sched_zone_free(bare);
        sched_zone_free(us);
    }
}

/*
 * RFC 8536 3.3.1: "EST5EDT,0/0,J365/25" is daylight time all year. glibc
 * gets the hours after local midnight of New Year wrong (it evaluates the
 * UTC year's rule only), so this one is checked against the RFC.
 */
static void test_permanent_dst_footer(void **state)
{
    struct cst_err err;
    struct sched_zone *z = load_footer_only("EST5EDT,0/0,J365/25", &err);
    int dst;

    (void)state;
    if (z == NULL)
        fail_msg("%s", err.msg);
    for (int i = 0; i < 20000; i++) {
        int64_t t = random_between(utc(2000, 1, 1, 0, 0), utc(2100, 1, 1, 0, 0));

        if (i % 2)
            t = utc(2000 + i % 100, 1, 1, 0, 0) + (i % 24 - 12) * HOUR;
        assert_int_equal(sched_utc_offset(z, t, &dst), -4 * HOUR);
        assert_int_equal(dst, 1);
    }
    sched_zone_free(z);
}

static void test_bad_footers(void **state)
{
    static const char *const footers[] = {
        "EST",
        "E5",
        "EST5EDT,M3.2.0",
        "EST5EDT,M13.2.0,M11.1.0",
        "EST5EDT,M3.6.0,M11.1.0",
        "EST5EDT,M3.2.7,M11.1.0",
        "EST5EDT,J0,J365",
        "EST5EDT,366,1",
        "EST25",
        "EST5EDT,M3.2.0/168,M11.1.0",
        "EST5:60",
        "<E>5",
        "EST5EDT,M3.2.0,M11.1.0x",
        "EST5 EDT",
    };
    struct cst_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(footers) / sizeof(footers[0]); i++) {
        struct sched_zone *z = load_footer_only(footers[i], &err);

        if (z != NULL)
            fail_msg("footer \"%s\" accepted", footers[i]);
        assert_non_null(strstr(err.msg, "TZ string"));
    }
}

static void test_version1_file(void **state)
{
    static const int64_t trans[] = {1000000, 2000000};
    static const uint8_t idx[] = {1, 0};
    static const int32_t utoff[] = {-5 * HOUR, -4 * HOUR};
    static const uint8_t isdst[] = {0, 1};
    struct tzif_spec s = {.version = 1,
                          .ntrans = 2,
                          .trans = trans,
                          .idx = idx,
                          .ntypes = 2,
                          .utoff = utoff,
                          .isdst = isdst};
    unsigned char buf[4096];
    struct cst_err err;
    struct sched_zone *z = load_bytes(buf, build_tzif(buf, &s), &err);
    int dst;

    (void)state;
    if (z == NULL)
        fail_msg("%s", err.msg);
    assert_int_equal(sched_utc_offset(z, 999999, &dst), -5 * HOUR);
    assert_int_equal(sched_utc_offset(z, 1000000, &dst), -4 * HOUR);
    assert_int_equal(dst, 1);
    assert_int_equal(sched_utc_offset(z, 1999999, NULL), -4 * HOUR);
    assert_int_equal(sched_utc_offset(z, 2000000, &dst), -5 * HOUR);
    assert_int_equal(dst, 0);
    assert_int_equal(sched_utc_offset(z, INT64_MAX, NULL), -5 * HOUR);
    assert_int_equal(sched_utc_offset(z, INT64_MIN, NULL), -5 * HOUR);
    sched_zone_free(z);
}

static void expect_refused(const void *data, size_t len, const char *what)
{
    struct cst_err err;
    struct sched_zone *z = load_bytes(data, len, &err);

    if (z != NULL)
        fail_msg("%s: accepted", what);
    if (strstr(err.msg, tmpdir) == NULL)
        fail_msg("%s: message does not name the file: %s", what, err.msg);
}

static void test_malformed_files(void **state)
{
    static const int64_t trans[] = {1000000, 2000000};
    static const uint8_t idx[] = {1, 0};
    static const int32_t utoff[] = {-5 * HOUR, -4 * HOUR};
    static const uint8_t isdst[] = {0, 1};
    struct tzif_spec good = {.version = 2,
                             .ntrans = 2,
                             .trans = trans,
                             .idx = idx,
                             .ntypes = 2,
                             .utoff = utoff,
                             .isdst = isdst,
                             .footer = "EST5EDT,M3.2.0,M11.1.0"};
    /* Offsets of the second header and its fields in build_tzif's layout. */
    const size_t h2 = 44 + 6 + 4;
    unsigned char buf[4096], bad[4096];
    size_t len = build_tzif(buf, &good);
    struct cst_err err;
    struct sched_zone *z;

    (void)state;
    z = load_bytes(buf, len, &err);
    if (z == NULL)
        fail_msg("the good file: %s", err.msg);
    sched_zone_free(z);

#define MUTATE(off, byte, what)                                                                    \
    do {                                                                                           \
        memcpy(bad, buf, len);                                                                     \
        bad[(off)] = (byte);                                                                       \
        expect_refused(bad, len, what);                                                            \
    } while (0)

    MUTATE(0, 'X', "bad magic");
    MUTATE(4, '9', "unknown version");
    MUTATE(h2 + 1, 'x', "bad second magic");
    MUTATE(h2 + 32, 0xff, "absurd timecnt");
    MUTATE(h2 + 36, 0xff, "absurd typecnt");
    MUTATE(h2 + 43, 0, "charcnt 0");
    MUTATE(h2 + 39, 0, "typecnt 0");
    MUTATE(h2 + 31, 1, "leap seconds");
    MUTATE(h2 + 23, 1, "isutcnt mismatch");
    MUTATE(32, 0xff, "absurd v1 timecnt");
    MUTATE(h2 + 44 + 16, 3, "transition type out of range");
    MUTATE(h2 + 44 + 4, 0x7f, "transitions not ascending"); /* first time > second */
    MUTATE(h2 + 44 + 18, 0x7f, "absurd utoff");             /* type 0 offset byte 0 */
    MUTATE(h2 + 44 + 18 + 4, 2, "isdst 2");
    MUTATE(h2 + 44 + 18 + 5, 9, "abbreviation index out of range");
    MUTATE(len - 1, 'x', "footer not terminated");
    MUTATE(h2 + 44 + 18 + 12 + 4, 'x', "no newline before the footer");
#undef MUTATE

    /* Every truncation of a real file, and of the hand-built one. */
    {
        FILE *f = fopen("/usr/share/zoneinfo/America/New_York", "rb");
        static unsigned char real[1 << 16];
        size_t real_len;

        assert_non_null(f);
        real_len = fread(real, 1, sizeof(real), f);
        fclose(f);
        assert_true(real_len > 44 && real_len < sizeof(real));
        for (size_t n = 0; n < real_len; n++)
            expect_refused(real, n, "truncated New_York");
        z = load_bytes(real, real_len, &err);
        assert_non_null(z);
        sched_zone_free(z);
    }
    for (size_t n = 0; n < len; n++)
        expect_refused(buf, n, "truncated hand-built file");

    /* Random garbage after a valid header: refused or accepted, never a crash. */
    for (int i = 0; i < 2000; i++) {
        memcpy(bad, buf, len);
        for (int k = 0; k < 4; k++)
            bad[rng() % len] = (unsigned char)rng();
        z = load_bytes(bad, len, &err);
        sched_zone_free(z);
    }

    /* Not a regular file; too large. */
    z = sched_zone_load_file(tmpdir, &err);
    assert_null(z);
    assert_non_null(strstr(err.msg, "not a regular file"));
    {
        unsigned char *big = calloc(1, 2 * 1024 * 1024);

        assert_non_null(big);
        memcpy(big, buf, len);
        expect_refused(big, 2 * 1024 * 1024, "2 MiB file");
        free(big);
    }
}

static void test_zone_names(void **state)
{
    static const char *const refused[] = {
        "../../etc/passwd", "America/../../../etc/passwd", "..", "/etc/localtime",
        "America/New York", "America/New_York\n",          "",
    };
    struct cst_err err;

    (void)state;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        err.msg[0] = '\0';
        if (sched_zone_load(refused[i], &err) != NULL)
            fail_msg("zone name \"%s\" accepted", refused[i]);
        assert_true(strlen(err.msg) > 0);
    }
    assert_null(sched_zone_load(NULL, &err));
    assert_null(sched_zone_load("Foo/Bar", &err));
    assert_non_null(strstr(err.msg, "/usr/share/zoneinfo/Foo/Bar"));
    assert_non_null(strstr(err.msg, "unknown time zone"));
    /* A directory is not a zone. */
    assert_null(sched_zone_load("America", &err));
    /* Names with + and - and links load. */
    sched_zone_free(load("Etc/GMT+5"));
    sched_zone_free(load("America/Port-au-Prince"));
    sched_zone_free(load("UTC"));
    sched_zone_free(NULL);
}

static void test_parse_date(void **state)
{
    static const char *const bad[] = {
        "2023-02-29", "2026-13-01", "2026-00-10",  "2026-01-00",  "2026-04-31",
        "2026-1-01",  "2026-01-1",  "2026-01-01x", " 2026-01-01", "2026/01/01",
        "0000-01-01", "",           "20260101",    "2026-01-0a",  "+026-01-01",
    };
    int y = 0, m = 0, d = 0;

    (void)state;
    assert_int_equal(sched_parse_date("2024-02-29", &y, &m, &d), 0);
    assert_int_equal(y, 2024);
    assert_int_equal(m, 2);
    assert_int_equal(d, 29);
    assert_int_equal(sched_parse_date("2000-02-29", &y, &m, &d), 0);
    assert_int_equal(sched_parse_date("9999-12-31", &y, &m, &d), 0);
    assert_int_equal(sched_parse_date("0001-01-01", &y, &m, &d), 0);
    assert_int_equal(sched_parse_date("1900-02-29", &y, &m, &d), -1);
    assert_int_equal(sched_parse_date(NULL, &y, &m, &d), -1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sched_parse_date(bad[i], &y, &m, &d) == 0)
            fail_msg("\"%s\" parsed", bad[i]);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_sched.XXXXXX");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
    char path[128];

    (void)state;
    snprintf(path, sizeof(path), "%s/zone.tzif", tmpdir);
    unlink(path);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_york_transition_days),
        cmocka_unit_test(test_new_york_every_run_2026_2033),
        cmocka_unit_test(test_london),
        cmocka_unit_test(test_sydney),
        cmocka_unit_test(test_kolkata_fixed_offset),
        cmocka_unit_test(test_due),
        cmocka_unit_test(test_next_run_edges),
        cmocka_unit_test(test_gap_across_midnight),
        cmocka_unit_test(test_skipped_day),
        cmocka_unit_test(test_new_york_matches_glibc),
        cmocka_unit_test(test_all_zones_match_glibc),
        cmocka_unit_test(test_run_instants_match_glibc),
        cmocka_unit_test(test_slim_file),
        cmocka_unit_test(test_footers_match_glibc),
        cmocka_unit_test(test_permanent_dst_footer),
        cmocka_unit_test(test_bad_footers),
        cmocka_unit_test(test_version1_file),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_zone_names),
        cmocka_unit_test(test_parse_date),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
