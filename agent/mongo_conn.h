/*
 * mongo_conn.h - one connection to the app's MongoDB through libmongoc,
 * shared by the daily dump (mongo_dump.c) and the billing periods
 * (periods.c): the URI checked and parsed, the client made, the server
 * greeted (hello), and every libmongoc message passed through redaction
 * so that the URI's password never reaches an error or a log line.
 *
 * One connection at a time per process: libmongoc's log handler is global.
 */
#ifndef CST_MONGO_CONN_H
#define CST_MONGO_CONN_H

#include <stdint.h>

#include <mongoc/mongoc.h>

#include "agent/mongoc_lib.h"
#include "common/err.h"

struct mongo_conn;

/* Connect to uri and greet the server; NULL and err (naming the server) on failure. */
struct mongo_conn *mongo_connect(const char *uri, struct cst_err *err);
/* mongo_conn_close(NULL) does nothing. */
void mongo_conn_close(struct mongo_conn *c);

mongoc_client_t *mongo_conn_client(struct mongo_conn *c);
const mongoc_uri_t *mongo_conn_uri(struct mongo_conn *c);
/* The URI as it may be shown (password replaced by ****). */
const char *mongo_conn_shown_uri(struct mongo_conn *c);
/* The server is a replica set member, and its maxWireVersion. */
int mongo_conn_replica_set(struct mongo_conn *c);
int32_t mongo_conn_wire_version(struct mongo_conn *c);

/* err = "<what>: <libmongoc's message, redacted> (libmongoc domain D code C)"; returns -1. */
int mongo_conn_fail(struct mongo_conn *c, const bson_error_t *error, struct cst_err *err,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The process-wide libmongoc teardown; call once at exit if a connection was made. */
void mongo_cleanup(void);

/*
 * text with every mongodb:// or mongodb+srv:// credential's password
 * replaced by "****" (mongodb://user:****@host); malloc'd, never NULL.
 */
char *mongo_redact_uri(const char *text);

/* Canonical Extended JSON as libbson writes it, without the blanks it puts around ':' and
 * ',' (whitespace inside strings is kept); in place, returns json. */
char *mongo_compact_json(char *json);

#endif
