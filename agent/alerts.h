/*
 * alerts.h - telling the operator's own system ([alerts] command: mail, a
 * webhook through curl, a pager) about each failure an operator must act
 * on, once when it begins and once when it ends.
 *
 * Events (kind, and the subject that makes one event distinct):
 *   daily_run_failed       the newest daily run failed           (its date)
 *   daily_run_missed       the daily run is overdue              (the date owed)
 *   destination_failing    copies to it fail, for after_minutes  (destination)
 *   rpo_exceeded           the oldest unshipped change is older than rpo_minutes
 *   restore_test_failed    the newest restore test failed        (its month)
 *   snapshot_incomplete    a period's newest package is incomplete (label and date)
 *   audit_chain_broken     the audit log's hash chain does not verify (recomputed
 *                          at start and every 6 hours)
 *   root_not_watched       a watched folder has no watch         (the folder)
 *   catalog_not_writable   the catalog cannot be written
 *
 * The command runs without a shell (agent/cmdline.h), one at a time, with
 * stdin a JSON document and the same fields in CUSTODIAN_ALERT_* variables;
 * exit status 0 means told. It is stopped after timeout_seconds and tried
 * again a minute later. Active events are kept in the catalog (alerts), so
 * a restart neither repeats nor forgets them; every notification is an
 * audit row ("alert") with the command's outcome.
 */
#ifndef CST_ALERTS_H
#define CST_ALERTS_H

#include <ev.h>

#include "agent/cli.h"

#define ALERTS_MAX_ROOTS 64

/* What only the running agent knows, asked before each evaluation. */
struct alerts_agent {
    const char *catalog_error; /* NULL: writable */
    size_t n_roots;
    struct {
        const char *path, *why;
        int watched;
    } roots[ALERTS_MAX_ROOTS];
};

struct alerts;

/* Evaluate every 15 s on loop; NULL when [alerts] command is not set. */
struct alerts *alerts_start(struct ev_loop *loop, struct cli *cli,
                            void (*agent_state)(void *arg, struct alerts_agent *out), void *arg);
/* Evaluate now (e.g. right after start-up). */
void alerts_kick(struct alerts *a);
/* Stop evaluating; a command still running is given its timeout to finish. */
void alerts_stop(struct alerts *a);
void alerts_free(struct alerts *a);

#endif
