/*
 * catalog_int.h - shared between the catalog's own files only.
 */
#ifndef CST_CATALOG_INT_H
#define CST_CATALOG_INT_H

#include <sqlite3.h>

#include "catalog.h"

#define CATALOG_STMT_CACHE 128

struct catalog {
    sqlite3 *db;
    char *path;
    int in_tx;
    int64_t max_delay_ms; /* queue: the longest a changing file waits (catalog_set_max_delay) */
    struct {
        const char *sql; /* compared by address: callers pass string literals */
        sqlite3_stmt *stmt;
    } cache[CATALOG_STMT_CACHE];
};

/* SQL of migration `version` (1-based), or NULL. */
const char *catalog_migration_sql(int version);
/* A prepared, reset statement for a string literal, cached for the connection's life. */
sqlite3_stmt *catalog_stmt(struct catalog *cat, const char *sql, struct cst_err *err);
/* Fill err with what failed and SQLite's message; returns -1. */
int catalog_sql_err(struct catalog *cat, struct cst_err *err, const char *what);
/* Bind a raw path (C string) as a BLOB. */
int catalog_bind_path(sqlite3_stmt *st, int idx, const char *path);
/* Copy a BLOB/TEXT column into a malloc'd NUL-terminated string (NULL if NULL). */
char *catalog_column_dup(sqlite3_stmt *st, int col);
/* 1 if the query (two text parameters) returns a row, 0 if not, -1 on error. */
int catalog_row_exists(struct catalog *cat, const char *sql, const char *a, const char *b);
/* Id of path in the paths table, creating the row when create is set; 0 if absent. */
int64_t catalog_path_id(struct catalog *cat, const char *path, int create, struct cst_err *err);

#endif
