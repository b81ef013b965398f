/*
 * sched.h - when the daily protection run happens: time zones and run dates.
 *
 * The daily run happens at `daily_at` (HH:MM) local time in the configured
 * IANA zone. This module owns the arithmetic: it reads the zone's TZif file
 * itself (RFC 8536, version 1 to 4, plus the POSIX TZ footer that "slim"
 * files rely on for every year after their last explicit transition), so
 * it never touches the process-wide TZ/setenv/mktime state and every function
 * here is thread-safe on a loaded zone.
 *
 * Run rules (the plan in docs/retention-plan.md, section 2):
 *   - each run is identified by its local calendar date, "the run for
 *     2026-11-20";
 *   - a wall time that does not exist (spring forward) runs at the instant
 *     the clock shows that time plus the gap: 02:00 -> 03:00, 02:30 -> 03:30
 *     in New York;
 *   - a wall time that happens twice (fall back) runs once, at its first
 *     occurrence (daylight time);
 *   - a date the zone skipped entirely (Pacific/Apia, 2011-12-30) has no run.
 *
 * Instants are Unix seconds (int64_t, UTC). Dates are "YYYY-MM-DD", years
 * 1..9999.
 */
#ifndef CST_SCHED_H
#define CST_SCHED_H

#include <stdint.h>

#include "../common/err.h"

#define SCHED_ZONEINFO_DIR "/usr/share/zoneinfo"
#define SCHED_DATE_SIZE 11 /* "YYYY-MM-DD" and its NUL */

struct sched_zone; /* a loaded time zone, immutable after load */

/*
 * Load zone `name` ("America/New_York") from SCHED_ZONEINFO_DIR/<name>.
 * Names must be relative, made of [A-Za-z0-9_+-/] and contain no "." path
 * component or ".."; anything else is refused without touching the disk.
 * An unknown zone fails with a message naming the file that was looked for.
 */
struct sched_zone *sched_zone_load(const char *name, struct cst_err *err);

/* Load a TZif file by path. Malformed, truncated or leap-second ("right/")
 * files are refused with a message saying what is wrong. */
struct sched_zone *sched_zone_load_file(const char *path, struct cst_err *err);

/* sched_zone_free(NULL) does nothing. */
void sched_zone_free(struct sched_zone *z);

/* UTC offset in seconds (local = UTC + offset) at instant t; *is_dst (may
 * be NULL) is set to the zone's daylight-saving flag at t. */
int sched_utc_offset(const struct sched_zone *z, int64_t t, int *is_dst);

/* Local broken-down time of instant t (mon 1..12, day 1..31). Any output
 * pointer may be NULL. */
void sched_localtime(const struct sched_zone *z, int64_t t, int *year, int *mon, int *day,
                     int *hour, int *min, int *sec);

/* Local calendar date of instant t as "YYYY-MM-DD". */
void sched_local_date(const struct sched_zone *z, int64_t t, char date[SCHED_DATE_SIZE]);

/*
 * The instant the local wall clock shows Y-M-D hh:mm:ss, with the run rules
 * above: first occurrence of a repeated time, time plus gap for a skipped
 * one. Returns 0, or -1 if the fields are not a real date/time (years
 * 1..9999, hour 0..23, min 0..59, sec 0..59).
 */
int sched_local_instant(const struct sched_zone *z, int year, int mon, int day, int hour, int min,
                        int sec, int64_t *instant);

/* The instant of the run for local date Y-M-D at hh:mm (sched_local_instant
 * with sec 0). Returns 0, or -1 on fields out of range. A date the zone
 * skipped entirely still yields an instant (on a later date); use
 * sched_next_run to walk runs. */
int sched_run_instant(const struct sched_zone *z, int year, int mon, int day, int hour, int min,
                      int64_t *instant);

/*
 * The first run at hh:mm strictly after `after`: its instant in *instant and
 * its run date into `date`. Successive calls with after = previous instant
 * give exactly one run per local date, in date order. Returns 0, or -1 if
 * hour/min are out of range or the result would leave years 1..9999.
 */
int sched_next_run(const struct sched_zone *z, int hour, int min, int64_t after, int64_t *instant,
                   char date[SCHED_DATE_SIZE]);

/*
 * Catch-up after downtime (systemd Persistent=true semantics). The latest
 * run is the most recent scheduled run instant <= now. It is due if its date
 * is after `last_success_date` ("YYYY-MM-DD"), or always if the agent never
 * succeeded (last_success_date NULL or ""): a fresh install at 01:00 runs
 * yesterday's run at once rather than leaving the data unprotected until
 * 02:00. Only the latest run is due; missed days are not replayed one by
 * one, *missed (may be NULL) counts the dates strictly between the last
 * success and the due date (0 if never run).
 * Returns 1 and fills due_date if a run is due, 0 if not (*missed = 0),
 * -1 if hour/min or last_success_date are malformed.
 */
int sched_due(const struct sched_zone *z, int hour, int min, const char *last_success_date,
              int64_t now, char due_date[SCHED_DATE_SIZE], int *missed);

/* Parse "YYYY-MM-DD" strictly: exactly that shape, a real calendar date,
 * year 1..9999. Returns 0 or -1 (outputs untouched on -1). */
int sched_parse_date(const char *s, int *year, int *mon, int *day);

#endif
