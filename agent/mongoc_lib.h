/*
 * mongoc_lib.h - libmongoc, loaded when a command first talks to MongoDB
 * (the daily dump, billing-cycle snapshots, the restore test's scratch
 * load, doctor's mapping check), never in the agent's own process: its
 * dependency tree (libmongocrypt, libicu, libstdc++, libsasl2, libsnappy,
 * ...) is most of the memory a process linked with it maps. See
 * common/dlib.h for the pattern.
 *
 * Call mongoc_lib_load() before any sym_mongoc_* pointer below;
 * mongo_connect(), which every call passes through, does. A command whose
 * whole work needs MongoDB (snapshot) loads it before it records anything;
 * in the step-by-step jobs (the daily run, the restore test) the load error
 * is the failure of the step that needs it, recorded with the other steps'
 * outcomes (which still run), and the command exits non-zero. libbson stays
 * linked normally: it is small, has no heavy dependencies, and is used
 * everywhere.
 */
#ifndef CST_MONGOC_LIB_H
#define CST_MONGOC_LIB_H

#include <mongoc/mongoc.h>

#include "common/dlib.h"
#include "common/err.h"

/* The soname the build links against; its major version is checked against the headers in
 * mongoc_lib.c. */
#define MONGOC_LIB_SONAME "libmongoc-1.0.so.0"
#define MONGOC_LIB_PACKAGE "libmongoc-1.0-0"

/* Every libmongoc function custodian calls; a call to one not listed does not link. */
/* clang-format off */
#define MONGOC_LIB_SYMBOLS(X)                                                                      \
    X(mongoc_bulk_operation_destroy)                                                               \
    X(mongoc_bulk_operation_execute)                                                               \
    X(mongoc_bulk_operation_insert_with_opts)                                                      \
    X(mongoc_cleanup)                                                                              \
    X(mongoc_client_command_simple)                                                                \
    X(mongoc_client_destroy)                                                                       \
    X(mongoc_client_get_collection)                                                                \
    X(mongoc_client_get_database)                                                                  \
    X(mongoc_client_get_database_names_with_opts)                                                  \
    X(mongoc_client_new_from_uri_with_error)                                                       \
    X(mongoc_client_session_append)                                                                \
    X(mongoc_client_session_destroy)                                                               \
    X(mongoc_client_session_get_operation_time)                                                    \
    X(mongoc_client_set_error_api)                                                                 \
    X(mongoc_client_start_session)                                                                 \
    X(mongoc_collection_create_bulk_operation_with_opts)                                           \
    X(mongoc_collection_destroy)                                                                   \
    X(mongoc_collection_find_indexes_with_opts)                                                    \
    X(mongoc_collection_find_with_opts)                                                            \
    X(mongoc_cursor_destroy)                                                                       \
    X(mongoc_cursor_error)                                                                         \
    X(mongoc_cursor_next)                                                                          \
    X(mongoc_database_command_simple)                                                              \
    X(mongoc_database_destroy)                                                                     \
    X(mongoc_database_drop_with_opts)                                                              \
    X(mongoc_database_find_collections_with_opts)                                                  \
    X(mongoc_database_get_collection_names_with_opts)                                              \
    X(mongoc_init)                                                                                 \
    X(mongoc_log_set_handler)                                                                      \
    X(mongoc_session_opts_destroy)                                                                 \
    X(mongoc_session_opts_new)                                                                     \
    X(mongoc_session_opts_set_causal_consistency)                                                  \
    X(mongoc_session_opts_set_snapshot)                                                            \
    X(mongoc_uri_destroy)                                                                          \
    X(mongoc_uri_get_database)                                                                     \
    X(mongoc_uri_new_with_error)                                                                   \
    X(mongoc_uri_set_appname)
/* clang-format on */

MONGOC_LIB_SYMBOLS(DLIB_DECLARE)

/* Load libmongoc and resolve every pointer, once per process (any thread); -1 with err
 * naming the soname, the package and dlerror()'s text. */
int mongoc_lib_load(struct cst_err *err);

#endif
