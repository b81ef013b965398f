/*
 * control.h - the running agent answers `custodian status` over a Unix
 * socket in its state folder (agent.sock).
 *
 * Some of what status must tell is known only to the running agent and
 * cannot wait for the catalog (whose writes may be what is failing): which
 * roots are watched, whether the catalog can be written, paths that cannot be
 * protected. On each connection the agent writes one JSON document and
 * closes. An agent that does not answer within the timeout counts as wedged.
 */
#ifndef CST_CONTROL_H
#define CST_CONTROL_H

#include <ev.h>

#include "common/err.h"
#include "common/json.h"

struct control;

/* Listen on path; describe() fills the document for each client. */
struct control *control_new(struct ev_loop *loop, const char *path,
                            void (*describe)(void *arg, struct json *j), void *arg,
                            struct cst_err *err);
/* Stops listening and removes the socket; control_free(NULL) does nothing. */
void control_free(struct control *c);

/* Ask the agent at path: its document (malloc'd) or NULL with err (not running,
 * not answering within timeout_ms). */
char *control_query(const char *path, int timeout_ms, struct cst_err *err);

#endif
