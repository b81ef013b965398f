/*
 * agent.h - the event loop that wires watcher, catalog and shipper.
 *
 * `custodian agent` runs it with the watcher until SIGTERM; `custodian ship`
 * runs it without the watcher until the queue is drained.
 */
#ifndef CST_AGENT_H
#define CST_AGENT_H

#include <stdint.h>

#include "agent/cli.h"

struct agent_options {
    int watch;          /* watch folders (the service) */
    int until_idle;     /* exit when nothing ready is left */
    int until_empty;    /* with until_idle: also wait for settling and retried entries */
    int64_t timeout_ms; /* with until_idle: give up after this long (0: never) */
};

/* Returns an exit status. */
int agent_run(struct cli *cli, const struct agent_options *opts);

#endif
