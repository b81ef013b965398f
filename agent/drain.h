/*
 * drain.h - make every live file shipped before a job reads the catalog.
 */
#ifndef CST_DRAIN_H
#define CST_DRAIN_H

#include "agent/cli.h"

/* Scan the watched folders (short transactions), then wait for the running agent to ship
 * what is queued, or ship it here. 1: nothing left unshipped; 0: some files were not
 * shipped within 10 minutes (*status says how many); -1: the scan failed (*status says
 * why). *status is malloc'd when set. */
int files_drain(struct cli *cli, char **status);

#endif
