/*
 * metrics.h - Prometheus text exposition for node_exporter's textfile
 * collector ([metrics] textfile): queue depth and the live RPO, each
 * destination's backlog, failures, gaps and last success, the jobs' last
 * successes, and the agent's own health. Written atomically (temp file,
 * fsync, rename, folder fsync) every 15 s, so the collector never reads half
 * a file.
 */
#ifndef CST_METRICS_H
#define CST_METRICS_H

#include <stdint.h>

#include "agent/config.h"
#include "catalog/catalog.h"
#include "common/err.h"

/* What only the running agent knows. */
struct metrics_agent {
    int64_t started_at; /* ms */
    int roots, roots_unwatched;
    int catalog_writable;
    int64_t unprotected_paths;
    int64_t inotify_overflows;
};

/* Write the metrics document to path (atomically). */
int metrics_write(const char *path, struct catalog *cat, const struct cfg *cfg,
                  const struct metrics_agent *agent, struct cst_err *err);

#endif
