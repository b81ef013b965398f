/*
 * catalog_int.h - shared between the catalog's own files only.
 */
#ifndef CST_CATALOG_INT_H
#define CST_CATALOG_INT_H

#include <sqlite3.h>

#include "catalog.h"

/* One prepared statement per SQL string literal, kept for the connection's life. */
struct catalog_stmt_slot {
    const char *sql; /* compared by address: callers pass string literals */
    sqlite3_stmt *stmt;
};

#define CST_STR_(x) #x
#define CST_STR(x) CST_STR_(x)

/* The one rule for "the newest version of a path": latest first_seen, then latest id (a
 * version sealed earlier can be recorded later, when its first copy is made later). */
#define NEWEST_OF(path_id)                                                                         \
    "(SELECT nv.id FROM versions nv WHERE nv.path_id = " path_id                                   \
    " ORDER BY nv.first_seen DESC, nv.id DESC LIMIT 1)"

struct catalog_ckpt;

struct catalog {
    sqlite3 *db;
    char *path;
    int in_tx;
    int64_t max_delay_ms; /* queue: the longest a changing file waits (catalog_set_max_delay) */
    /* Grows as new literals are seen and never evicts: a caller may be holding (stepping)
     * any statement it got, so none is finalized before catalog_close. */
    struct catalog_stmt_slot *cache;
    size_t n_cache, cap_cache;
    struct catalog_ckpt *ckpt; /* the checkpoint thread, if started (checkpoint.c) */
};

/* Stop and join the checkpoint thread, if any (catalog_close). */
void catalog_checkpointer_stop(struct catalog *cat);
/* SQL of migration `version` (1-based), or NULL. */
const char *catalog_migration_sql(int version);
/* A prepared, reset statement for a string literal, cached for the connection's life: the
 * same literal always gives the same statement, and no statement is ever finalized while
 * the catalog is open. NULL and err if it cannot be prepared. */
sqlite3_stmt *catalog_stmt(struct catalog *cat, const char *sql, struct cst_err *err);
/* Fill err with what failed and SQLite's message; returns -1. */
int catalog_sql_err(struct catalog *cat, struct cst_err *err, const char *what);
/* Bind a raw path (C string) as a BLOB. */
int catalog_bind_path(sqlite3_stmt *st, int idx, const char *path);
/* Bind idx and idx + 1 to the [lo, hi) range of paths strictly below folder prefix. */
void catalog_bind_below(sqlite3_stmt *st, int lo_idx, const char *prefix);
/* Copy a BLOB/TEXT column into a malloc'd NUL-terminated string (NULL if NULL). */
char *catalog_column_dup(sqlite3_stmt *st, int col);
/* 1 if the query (two text parameters) returns a row, 0 if not, -1 and err on error. */
int catalog_row_exists(struct catalog *cat, const char *sql, const char *a, const char *b,
                       struct cst_err *err);
/* sqlite3_step, and an error (not "no row") unless it gave SQLITE_ROW or SQLITE_DONE:
 * 1 for a row, 0 for done, -1 with err naming what. The statement is reset on -1. */
int catalog_step(struct catalog *cat, sqlite3_stmt *st, const char *what, struct cst_err *err);
/* Id of path in the paths table, creating the row when create is set; 0 if absent, -1 and
 * err on error. */
int64_t catalog_path_id(struct catalog *cat, const char *path, int create, struct cst_err *err);

#endif
