/*
 * daily.h - the daily protection run (retention plan section 2): a full
 * logical MongoDB dump, a restore point of every live file, a copy of the
 * catalog, and signed manifests, each shipped to every destination in the
 * plan's layout (agent/manifest.h) and verified there, with the plan's
 * checklist recorded in the catalog.
 *
 * Each run is an attempt for its date: a retry keeps every earlier
 * attempt's records and remote files as they were, and writes its own under
 * names of its own. .cst files are containers (docs/FORMAT.md); the
 * manifests are plain text (docs/restore.md).
 */
#ifndef CST_DAILY_H
#define CST_DAILY_H

#include "agent/cli.h"

/* Run the daily protection run for local date (YYYY-MM-DD), today being made_on (the
 * local date now; date differs from it only for a backfill, which is labelled so in
 * the catalog, the restore point and the manifest). Returns an exit status: 0 when
 * every step succeeded and every artifact is verified on every destination. */
int daily_run(struct cli *cli, const char *date, const char *made_on);

#endif
