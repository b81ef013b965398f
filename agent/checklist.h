/*
 * checklist.h - the retention plan's §6 operational checklist, answered
 * from the catalog alone (no destination is asked, nothing is assumed):
 *
 *   daily      the backup job ran successfully (on its day, not a later
 *              backfill), its manifest was created, it was copied off-server
 *              (verified on every destination), with the time and the
 *              destinations;
 *   per cycle  each billing period closed in the range: its snapshot made
 *              (complete), uploaded to archive storage, its contents verified
 *              (`verify --snapshot` or a restore test);
 *   monthly    the restore test (database and sample files) passed, retention
 *              pruning verified (the test's prune --check), archive
 *              accessibility verified.
 *
 * A box is ticked only from a recorded fact; anything else is a gap and
 * says why (no run recorded, the error the run recorded, not yet due). The result is a report
 * (agent/report.h): --json, --html, text.
 */
#ifndef CST_CHECKLIST_H
#define CST_CHECKLIST_H

#include "agent/report.h"

/* The checklist for local dates from..to (YYYY-MM-DD, inclusive; days after today are
 * left out). subject names the range in the report ("2026-11"). NULL with err when the
 * catalog cannot be read. */
struct report *checklist_build(struct cli *cli, const char *from, const char *to,
                               const char *subject, struct cst_err *err);

#endif
