/*
 * mongo_dump.c - the built-in MongoDB dump, what `mongodump --archive` does,
 * through libmongoc.
 *
 * Steps: connect; hello (is this a replica set member?) and buildInfo (the
 * version for the archive header); the databases (given, the URI's, or
 * listDatabases minus admin/local/config); per database listCollections and
 * per collection listIndexes, turned into mongodump's metadata.json; the
 * archive prelude; then each collection's documents through one cursor
 * (batchSize MONGO_DUMP_BATCH_SIZE, hint $natural like mongodump), straight
 * into the archive writer, which holds at most one block buffer.
 *
 * Consistency: on a replica set member the finds share one snapshot session,
 * so every collection is read at the same cluster time (the first find
 * fixes atClusterTime, libmongoc sends it with the rest). The server keeps
 * that history for minSnapshotHistoryWindowInSeconds (300 s by default); a
 * longer dump fails with SnapshotTooOld rather than silently mixing times.
 * A standalone has no snapshots: its collections are read one after the
 * other and the stats say point_in_time = 0.
 *
 * Metadata and index lists are read outside the snapshot (servers refuse
 * snapshot reads for listCollections/listIndexes), as mongodump does.
 *
 * Connecting, and keeping the password out of every message, is
 * mongo_conn.c's.
 */
#include "mongo_dump.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mongoc/mongoc.h>

#include "agent/mongo_conn.h"
#include "agent/mongoc_lib.h"
#include "common/log.h"
#include "common/util.h"

/* ------------------------------------------------------------ the dump */

/* maxWireVersion of MongoDB 5.0, the first with snapshot reads outside transactions */
#define SNAPSHOT_WIRE_VERSION 13

struct coll_info {
    char *db, *name, *type;
    bson_t *options; /* listCollections options, {} when none */
    char uuid[33];   /* "" when listCollections gave none (views) */
    char *metadata_json;
};

struct dump {
    struct mongo_conn *conn;
    mongoc_client_t *client;
    mongoc_client_session_t *snapshot; /* replica set: the session every find shares */
    struct coll_info *colls;
    size_t n_colls, cap_colls;
    struct mongo_dump_stats *stats;
    struct marchive *archive;
    struct cst_err *err;
};

/* Fill err from a libmongoc error, safely: "what: message". Returns -1. */
static int mongo_fail(struct dump *d, const bson_error_t *error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int mongo_fail(struct dump *d, const bson_error_t *error, const char *fmt, ...)
{
    char what[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return mongo_conn_fail(d->conn, error, d->err, "%s", what);
}

static void coll_info_free(struct coll_info *c)
{
    free(c->db);
    free(c->name);
    free(c->type);
    bson_destroy(c->options);
    bson_free(c->metadata_json);
}

static int read_server_version(struct dump *d)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it;
    uint32_t len;
    bool ok;

    BSON_APPEND_INT32(&cmd, "buildInfo", 1);
    ok = sym_mongoc_client_command_simple(d->client, "admin", &cmd, NULL, &reply, &error);
    bson_destroy(&cmd);
    if (!ok) {
        bson_destroy(&reply);
        return mongo_fail(d, &error, "MongoDB buildInfo failed");
    }
    if (!bson_iter_init_find(&it, &reply, "version") || !BSON_ITER_HOLDS_UTF8(&it)) {
        bson_destroy(&reply);
        return cst_err_set(d->err, "MongoDB buildInfo: the reply has no version");
    }
    snprintf(d->stats->server_version, sizeof(d->stats->server_version), "%s",
             bson_iter_utf8(&it, &len));
    bson_destroy(&reply);
    return 0;
}

/* NULL-terminated malloc'd list of the databases to dump. */
static char **databases_to_dump(struct dump *d, const mongoc_uri_t *uri,
                                const char *const *databases)
{
    char **names, **all;
    bson_error_t error;
    size_t n = 0;

    if (databases != NULL) {
        while (databases[n])
            n++;
        names = util_xcalloc(n + 1, sizeof(*names));
        for (size_t i = 0; i < n; i++)
            names[i] = bson_strdup(databases[i]);
        return names;
    }
    if (sym_mongoc_uri_get_database(uri) != NULL) {
        names = util_xcalloc(2, sizeof(*names));
        names[0] = bson_strdup(sym_mongoc_uri_get_database(uri));
        return names;
    }
    all = sym_mongoc_client_get_database_names_with_opts(d->client, NULL, &error);
    if (all == NULL) {
        mongo_fail(d, &error, "MongoDB listDatabases failed");
        return NULL;
    }
    for (size_t i = 0; all[i]; i++) {
        if (strcmp(all[i], "admin") == 0 || strcmp(all[i], "local") == 0 ||
            strcmp(all[i], "config") == 0) {
            bson_free(all[i]);
            continue;
        }
        all[n++] = all[i];
    }
    all[n] = NULL;
    return all;
}

/* mongodump skips <db>.system.* but system.js (stored functions). */
static int skip_collection(const char *name)
{
    return strncmp(name, "system.", 7) == 0 && strcmp(name, "system.js") != 0;
}

static struct coll_info *add_coll(struct dump *d)
{
    struct coll_info *c;

    if (d->n_colls == d->cap_colls) {
        d->cap_colls = d->cap_colls ? 2 * d->cap_colls : 16;
        d->colls = util_xrealloc(d->colls, d->cap_colls * sizeof(*d->colls));
    }
    c = &d->colls[d->n_colls++];
    memset(c, 0, sizeof(*c));
    return c;
}

static int list_collections(struct dump *d, const char *dbname)
{
    mongoc_database_t *db = sym_mongoc_client_get_database(d->client, dbname);
    mongoc_cursor_t *cursor = sym_mongoc_database_find_collections_with_opts(db, NULL);
    const bson_t *info;
    bson_error_t error;
    size_t before = d->n_colls;
    int rc = 0;

    while (rc == 0 && sym_mongoc_cursor_next(cursor, &info)) {
        const char *name = NULL, *type = "collection";
        struct coll_info *c;
        bson_iter_t it, sub;
        uint32_t len;

        if (bson_iter_init_find(&it, info, "name") && BSON_ITER_HOLDS_UTF8(&it))
            name = bson_iter_utf8(&it, &len);
        if (name == NULL) {
            rc = cst_err_set(d->err, "MongoDB listCollections on %s: an entry without a name",
                             dbname);
            break;
        }
        if (skip_collection(name))
            continue;
        if (bson_iter_init_find(&it, info, "type") && BSON_ITER_HOLDS_UTF8(&it))
            type = bson_iter_utf8(&it, &len);
        if (strcmp(type, "collection") != 0 && strcmp(type, "view") != 0) {
            rc = cst_err_set(d->err,
                             "MongoDB collection %s.%s is a %s collection, which the "
                             "built-in dump cannot read; set [mongodb] dump_command to "
                             "run mongodump instead",
                             dbname, name, type);
            break;
        }
        c = add_coll(d);
        c->db = util_xstrdup(dbname);
        c->name = util_xstrdup(name);
        c->type = util_xstrdup(type);
        if (bson_iter_init_find(&it, info, "options") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            const uint8_t *data;

            bson_iter_document(&it, &len, &data);
            c->options = bson_new_from_data(data, len);
        }
        if (c->options == NULL)
            c->options = bson_new();
        if (bson_iter_init_find(&it, info, "info") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
            bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, "uuid") &&
            BSON_ITER_HOLDS_BINARY(&sub)) {
            bson_subtype_t subtype;
            const uint8_t *bin;

            bson_iter_binary(&sub, &subtype, &len, &bin);
            if (len == 16)
                util_hex(bin, 16, c->uuid);
        }
    }
    if (rc == 0 && sym_mongoc_cursor_error(cursor, &error))
        rc = mongo_fail(d, &error, "MongoDB listCollections on %s failed", dbname);
    if (rc == 0 && d->n_colls == before)
        log_warn("MongoDB database has no collections to dump db=%s", dbname);
    sym_mongoc_cursor_destroy(cursor);
    sym_mongoc_database_destroy(db);
    return rc;
}

/* mongodump's metadata.json: {options (if any), indexes, uuid (if any), collectionName, type}. */
static int build_metadata(struct dump *d, struct coll_info *c)
{
    bson_t meta = BSON_INITIALIZER, indexes;
    bson_error_t error;
    int rc = 0;

    if (!bson_empty(c->options))
        BSON_APPEND_DOCUMENT(&meta, "options", c->options);
    BSON_APPEND_ARRAY_BEGIN(&meta, "indexes", &indexes);
    if (strcmp(c->type, "view") != 0) {
        mongoc_collection_t *coll = sym_mongoc_client_get_collection(d->client, c->db, c->name);
        mongoc_cursor_t *cursor = sym_mongoc_collection_find_indexes_with_opts(coll, NULL);
        const bson_t *index;
        uint32_t i = 0;

        while (sym_mongoc_cursor_next(cursor, &index)) {
            char key[16];
            const char *k;

            bson_uint32_to_string(i++, &k, key, sizeof(key));
            bson_append_document(&indexes, k, -1, index);
        }
        if (sym_mongoc_cursor_error(cursor, &error))
            rc = mongo_fail(d, &error, "MongoDB listIndexes on %s.%s failed", c->db, c->name);
        sym_mongoc_cursor_destroy(cursor);
        sym_mongoc_collection_destroy(coll);
    }
    bson_append_array_end(&meta, &indexes);
    if (c->uuid[0])
        BSON_APPEND_UTF8(&meta, "uuid", c->uuid);
    BSON_APPEND_UTF8(&meta, "collectionName", c->name);
    BSON_APPEND_UTF8(&meta, "type", c->type);
    if (rc == 0) {
        c->metadata_json = bson_as_canonical_extended_json(&meta, NULL);
        if (c->metadata_json == NULL)
            rc = cst_err_set(d->err, "MongoDB %s.%s: its metadata cannot be written as JSON", c->db,
                             c->name);
        else
            mongo_compact_json(c->metadata_json);
    }
    bson_destroy(&meta);
    return rc;
}

static int start_snapshot(struct dump *d)
{
    mongoc_session_opt_t *opts = sym_mongoc_session_opts_new();
    bson_error_t error;

    sym_mongoc_session_opts_set_causal_consistency(opts, false);
    sym_mongoc_session_opts_set_snapshot(opts, true);
    d->snapshot = sym_mongoc_client_start_session(d->client, opts, &error);
    sym_mongoc_session_opts_destroy(opts);
    if (d->snapshot == NULL)
        return mongo_fail(d, &error, "MongoDB snapshot session");
    return 0;
}

/*
 * The first find of the snapshot session fixed its time; its reply (the
 * first batch, before any getMore moves the session's operationTime on)
 * reports it as operationTime, which mongod sets to the snapshot's
 * atClusterTime. Recorded for the manifest.
 */
static void note_snapshot_time(struct dump *d)
{
    sym_mongoc_client_session_get_operation_time(d->snapshot, &d->stats->cluster_time_t,
                                                 &d->stats->cluster_time_i);
}

static int dump_documents(struct dump *d, const struct coll_info *c,
                          struct mongo_dump_collection *out)
{
    mongoc_collection_t *coll = sym_mongoc_client_get_collection(d->client, c->db, c->name);
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, hint;
    mongoc_cursor_t *cursor;
    const bson_t *doc;
    bson_error_t error;
    int rc = 0;

    BSON_APPEND_INT32(&opts, "batchSize", MONGO_DUMP_BATCH_SIZE);
    /* mongodump's full scan: natural order, no index, exempt from scan limits */
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "hint", &hint);
    BSON_APPEND_INT32(&hint, "$natural", 1);
    bson_append_document_end(&opts, &hint);
    if (d->snapshot && !sym_mongoc_client_session_append(d->snapshot, &opts, &error)) {
        rc = mongo_fail(d, &error, "MongoDB find on %s.%s", c->db, c->name);
        goto out;
    }
    cursor = sym_mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    for (;;) {
        bool more = sym_mongoc_cursor_next(cursor, &doc);

        if (d->snapshot && !d->stats->cluster_time_t && !sym_mongoc_cursor_error(cursor, &error))
            note_snapshot_time(d);
        if (!more)
            break;
        if (marchive_write_doc(d->archive, c->db, c->name, doc, d->err) != 0) {
            rc = -1;
            break;
        }
        out->docs++;
        out->bytes += doc->len;
    }
    if (rc == 0 && sym_mongoc_cursor_error(cursor, &error))
        rc = mongo_fail(d, &error, "MongoDB dump of %s.%s failed after %llu documents", c->db,
                        c->name, (unsigned long long)out->docs);
    sym_mongoc_cursor_destroy(cursor);
out:
    bson_destroy(&filter);
    bson_destroy(&opts);
    sym_mongoc_collection_destroy(coll);
    return rc;
}

static int write_archive(struct dump *d, marchive_write_fn *sink, void *arg)
{
    struct mongo_dump_stats *st = d->stats;

    d->archive = marchive_new(sink, arg, st->server_version, MONGO_DUMP_TOOL_VERSION);
    for (size_t i = 0; i < d->n_colls; i++) {
        struct coll_info *c = &d->colls[i];

        if (marchive_add_collection(d->archive, c->db, c->name, c->type, c->metadata_json,
                                    d->err) != 0)
            return -1;
    }
    if (marchive_begin_data(d->archive, d->err) != 0)
        return -1;
    st->collections = util_xcalloc(d->n_colls ? d->n_colls : 1, sizeof(*st->collections));
    for (size_t i = 0; i < d->n_colls; i++) {
        struct coll_info *c = &d->colls[i];
        struct mongo_dump_collection *out = &st->collections[st->n_collections++];

        out->db = util_xstrdup(c->db);
        out->name = util_xstrdup(c->name);
        out->type = util_xstrdup(c->type);
        if (strcmp(c->type, "view") != 0 && dump_documents(d, c, out) != 0)
            return -1;
        if (marchive_end_collection(d->archive, c->db, c->name, d->err) != 0)
            return -1;
        if (marchive_collection_crc(d->archive, c->db, c->name, &out->crc) != 0)
            return cst_err_set(d->err, "MongoDB dump: %s.%s is missing from its own archive", c->db,
                               c->name);
        st->total_docs += out->docs;
        st->total_bytes += out->bytes;
        st->archive_bytes = marchive_bytes_written(d->archive);
        log_info("dumped MongoDB collection ns=%s.%s type=%s docs=%llu bytes=%llu", c->db, c->name,
                 c->type, (unsigned long long)out->docs, (unsigned long long)out->bytes);
    }
    if (marchive_finish(d->archive, d->err) != 0)
        return -1;
    st->archive_bytes = marchive_bytes_written(d->archive);
    return 0;
}

void mongo_dump_cleanup(void)
{
    mongo_cleanup();
}

int mongo_dump(const char *uri_string, const char *const *databases, marchive_write_fn *sink,
               void *arg, struct mongo_dump_stats *stats, struct cst_err *err)
{
    struct dump d = {.stats = stats, .err = err};
    char **names = NULL;
    int64_t start = util_mono_ms();
    int replica_set, rc = -1;

    memset(stats, 0, sizeof(*stats));
    d.conn = mongo_connect(uri_string, err);
    if (d.conn == NULL)
        goto out;
    d.client = mongo_conn_client(d.conn);
    replica_set = mongo_conn_replica_set(d.conn);
    if (read_server_version(&d) != 0)
        goto out;
    if (replica_set && mongo_conn_wire_version(d.conn) < SNAPSHOT_WIRE_VERSION) {
        log_warn("MongoDB server older than 5.0 has no snapshot reads; the dump is not one "
                 "point in time version=%s",
                 stats->server_version);
        replica_set = 0;
    } else if (!replica_set) {
        log_info("MongoDB server is not a replica set member; the dump is not one point in "
                 "time version=%s",
                 stats->server_version);
    }
    names = databases_to_dump(&d, mongo_conn_uri(d.conn), databases);
    if (names == NULL)
        goto out;
    for (size_t i = 0; names[i]; i++) {
        if (list_collections(&d, names[i]) != 0)
            goto out;
    }
    for (size_t i = 0; i < d.n_colls; i++) {
        if (build_metadata(&d, &d.colls[i]) != 0)
            goto out;
    }
    if (replica_set) {
        if (start_snapshot(&d) != 0)
            goto out;
        stats->point_in_time = 1;
    }
    if (write_archive(&d, sink, arg) != 0)
        goto out;
    rc = 0;
out:
    stats->ms = util_mono_ms() - start;
    if (rc != 0)
        stats->point_in_time = 0;
    marchive_free(d.archive);
    for (size_t i = 0; i < d.n_colls; i++)
        coll_info_free(&d.colls[i]);
    free(d.colls);
    bson_strfreev(names);
    if (d.snapshot)
        sym_mongoc_client_session_destroy(d.snapshot);
    mongo_conn_close(d.conn);
    return rc;
}

void mongo_dump_stats_free(struct mongo_dump_stats *stats)
{
    if (stats == NULL)
        return;
    for (size_t i = 0; i < stats->n_collections; i++) {
        free(stats->collections[i].db);
        free(stats->collections[i].name);
        free(stats->collections[i].type);
    }
    free(stats->collections);
    memset(stats, 0, sizeof(*stats));
}
