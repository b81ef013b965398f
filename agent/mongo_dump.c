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
 * Secrets: libmongoc's error messages and log lines pass through
 * redact_secret()/mongo_redact_uri() before they reach an error or a log.
 */
#include "mongo_dump.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <mongoc/mongoc.h>

#include "common/log.h"
#include "common/util.h"

/* ------------------------------------------------------------- redaction */

static int uri_token_end(int c)
{
    return c == '\0' || isspace((unsigned char)c) || c == '"' || c == '\'' || c == '>';
}

/*
 * Where the credentials of the URI starting at p (just after "://") are:
 * *at is the '@' that ends them, *colon the ':' before the password (NULL
 * when none), *end the end of the URI. libmongoc takes the authority up to
 * the first '/'; when no '@' is there but one follows in the path, the
 * password probably holds a raw '/', so that '@' counts too (showing less
 * of an odd URI is the price). Returns 0 when there are no credentials.
 */
static int userinfo_span(const char *p, const char **colon, const char **at, const char **end)
{
    const char *slash = NULL, *query = NULL, *at_authority = NULL, *at_path = NULL;

    for (*end = p; !uri_token_end(**end); (*end)++) {
        char c = **end;

        if (slash == NULL) {
            if (c == '/')
                slash = *end;
            else if (c == '@')
                at_authority = *end;
        } else if (query == NULL) {
            if (c == '?')
                query = *end;
            else if (c == '@')
                at_path = *end;
        }
    }
    *at = at_authority ? at_authority : at_path;
    *colon = *at ? memchr(p, ':', (size_t)(*at - p)) : NULL;
    return *at != NULL;
}

char *mongo_redact_uri(const char *text)
{
    static const char *const schemes[] = {"mongodb://", "mongodb+srv://"};
    size_t cap = strlen(text) + 64, len = 0;
    char *out = util_xmalloc(cap);
    const char *p = text;

    while (*p) {
        const char *colon, *at, *end;
        size_t n = 0;

        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && n == 0; i++) {
            if (strncasecmp(p, schemes[i], strlen(schemes[i])) == 0)
                n = strlen(schemes[i]);
        }
        if (n > 0 && userinfo_span(p + n, &colon, &at, &end) && colon != NULL) {
            size_t head = (size_t)(colon + 1 - p), tail = (size_t)(end - at);

            if (len + head + 4 + tail + 1 > cap) {
                cap = 2 * (len + head + 4 + tail + 1);
                out = util_xrealloc(out, cap);
            }
            memcpy(out + len, p, head);
            memcpy(out + len + head, "****", 4);
            memcpy(out + len + head + 4, at, tail);
            len += head + 4 + tail;
            p = end;
            continue;
        }
        if (len + 2 > cap) {
            cap *= 2;
            out = util_xrealloc(out, cap);
        }
        out[len++] = *p++;
    }
    out[len] = '\0';
    return out;
}

/* Replace every occurrence of secret in s (malloc'd) by "****"; returns the new string. */
static char *redact_secret(char *s, const char *secret)
{
    size_t slen;
    char *hit;

    if (secret == NULL || secret[0] == '\0')
        return s;
    slen = strlen(secret);
    while ((hit = strstr(s, secret)) != NULL) {
        char *next = util_printf("%.*s****%s", (int)(hit - s), s, hit + slen);

        free(s);
        s = next;
    }
    return s;
}

/* What a dump must not reveal: the password as written in the URI and as decoded. */
struct secrets {
    char *raw, *decoded;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void secrets_from_uri(struct secrets *s, const char *uri)
{
    const char *start = strstr(uri, "://"), *colon, *at, *end;
    size_t n = 0;

    memset(s, 0, sizeof(*s));
    if (start == NULL || !userinfo_span(start + 3, &colon, &at, &end) || colon == NULL ||
        colon + 1 == at)
        return;
    s->raw = util_printf("%.*s", (int)(at - colon - 1), colon + 1);
    s->decoded = util_xmalloc(strlen(s->raw) + 1);
    for (const char *q = s->raw; *q; q++) {
        if (q[0] == '%' && hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
            s->decoded[n++] = (char)(hexval(q[1]) * 16 + hexval(q[2]));
            q += 2;
        } else {
            s->decoded[n++] = *q;
        }
    }
    s->decoded[n] = '\0';
}

/*
 * The connection string spec wants ':', '/', '@' and '%' percent-encoded in
 * the user name and password; libmongoc misreads them otherwise and may put
 * a piece of the password into a host name in its error. Refuse first.
 */
static int check_userinfo(const char *uri)
{
    const char *start = strstr(uri, "://"), *colon, *at, *end;
    int colons = 0;

    if (start == NULL || !userinfo_span(start + 3, &colon, &at, &end))
        return 0;
    for (const char *q = start + 3; q < at; q++) {
        if (*q == '@' || *q == '/' || (*q == ':' && ++colons > 1))
            return -1;
        if (*q == '%' && (hexval(q[1]) < 0 || hexval(q[2]) < 0))
            return -1;
    }
    return 0;
}

static void secrets_free(struct secrets *s)
{
    if (s->raw)
        explicit_bzero(s->raw, strlen(s->raw));
    if (s->decoded)
        explicit_bzero(s->decoded, strlen(s->decoded));
    free(s->raw);
    free(s->decoded);
    memset(s, 0, sizeof(*s));
}

/* A libmongoc message made safe to show: URIs redacted, the password gone. */
static char *safe_text(const char *msg, const struct secrets *s)
{
    char *out = mongo_redact_uri(msg);

    out = redact_secret(out, s ? s->raw : NULL);
    return redact_secret(out, s ? s->decoded : NULL);
}

/* The dump running now, for the libmongoc log handler (one dump at a time). */
static const struct secrets *current_secrets;

static void mongoc_log_to_ours(mongoc_log_level_t level, const char *domain, const char *message,
                               void *user_data)
{
    char *msg;

    (void)user_data;
    if (level == MONGOC_LOG_LEVEL_TRACE)
        return;
    msg = safe_text(message, current_secrets);
    if (level <= MONGOC_LOG_LEVEL_ERROR)
        log_error("libmongoc: %s domain=%s", msg, domain);
    else if (level == MONGOC_LOG_LEVEL_WARNING)
        log_warn("libmongoc: %s domain=%s", msg, domain);
    else
        log_debug("libmongoc: %s domain=%s", msg, domain);
    free(msg);
}

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
    const struct secrets *secrets;
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
    char *msg;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    msg = safe_text(error->message, d->secrets);
    cst_err_set(d->err, "%s: %s (libmongoc domain %u code %u)", what, msg, error->domain,
                error->code);
    free(msg);
    return -1;
}

static void coll_info_free(struct coll_info *c)
{
    free(c->db);
    free(c->name);
    free(c->type);
    bson_destroy(c->options);
    bson_free(c->metadata_json);
}

/* hello (or the legacy isMaster): the first contact, so its error names the
 * server; and is this a replica set member? */
static int probe_topology(struct dump *d, const char *shown_uri, int *replica_set,
                          int32_t *max_wire_version)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it;
    bool ok;

    BSON_APPEND_INT32(&cmd, "hello", 1);
    ok = mongoc_client_command_simple(d->client, "admin", &cmd, NULL, &reply, &error);
    bson_destroy(&cmd);
    if (!ok && error.domain == MONGOC_ERROR_SERVER && error.code == 59) {
        /* a server older than 4.4.2 answered: it knows only isMaster */
        bson_destroy(&reply);
        bson_init(&cmd);
        BSON_APPEND_INT32(&cmd, "isMaster", 1);
        ok = mongoc_client_command_simple(d->client, "admin", &cmd, NULL, &reply, &error);
        bson_destroy(&cmd);
    }
    if (!ok) {
        bson_destroy(&reply);
        return mongo_fail(d, &error, "connecting to MongoDB %s", shown_uri);
    }
    *replica_set = bson_iter_init_find(&it, &reply, "setName") && BSON_ITER_HOLDS_UTF8(&it);
    *max_wire_version = 0;
    if (bson_iter_init_find(&it, &reply, "maxWireVersion") && BSON_ITER_HOLDS_INT32(&it))
        *max_wire_version = bson_iter_int32(&it);
    bson_destroy(&reply);
    return 0;
}

static int read_server_version(struct dump *d)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it;
    uint32_t len;
    bool ok;

    BSON_APPEND_INT32(&cmd, "buildInfo", 1);
    ok = mongoc_client_command_simple(d->client, "admin", &cmd, NULL, &reply, &error);
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
    if (mongoc_uri_get_database(uri) != NULL) {
        names = util_xcalloc(2, sizeof(*names));
        names[0] = bson_strdup(mongoc_uri_get_database(uri));
        return names;
    }
    all = mongoc_client_get_database_names_with_opts(d->client, NULL, &error);
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
    mongoc_database_t *db = mongoc_client_get_database(d->client, dbname);
    mongoc_cursor_t *cursor = mongoc_database_find_collections_with_opts(db, NULL);
    const bson_t *info;
    bson_error_t error;
    size_t before = d->n_colls;
    int rc = 0;

    while (rc == 0 && mongoc_cursor_next(cursor, &info)) {
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
    if (rc == 0 && mongoc_cursor_error(cursor, &error))
        rc = mongo_fail(d, &error, "MongoDB listCollections on %s failed", dbname);
    if (rc == 0 && d->n_colls == before)
        log_warn("MongoDB database has no collections to dump db=%s", dbname);
    mongoc_cursor_destroy(cursor);
    mongoc_database_destroy(db);
    return rc;
}

/* Canonical extended JSON without the spaces libbson puts around ':' and ','
 * (mongodump's Go writer has none); whitespace inside strings is kept. */
static char *compact_json(char *json)
{
    size_t r = 0, w = 0;
    int in_string = 0;

    for (; json[r]; r++) {
        char c = json[r];

        if (in_string) {
            json[w++] = c;
            if (c == '\\' && json[r + 1]) {
                json[w++] = json[++r];
            } else if (c == '"') {
                in_string = 0;
            }
        } else if (c == '"') {
            in_string = 1;
            json[w++] = c;
        } else if (!isspace((unsigned char)c)) {
            json[w++] = c;
        }
    }
    json[w] = '\0';
    return json;
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
        mongoc_collection_t *coll = mongoc_client_get_collection(d->client, c->db, c->name);
        mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(coll, NULL);
        const bson_t *index;
        uint32_t i = 0;

        while (mongoc_cursor_next(cursor, &index)) {
            char key[16];
            const char *k;

            bson_uint32_to_string(i++, &k, key, sizeof(key));
            bson_append_document(&indexes, k, -1, index);
        }
        if (mongoc_cursor_error(cursor, &error))
            rc = mongo_fail(d, &error, "MongoDB listIndexes on %s.%s failed", c->db, c->name);
        mongoc_cursor_destroy(cursor);
        mongoc_collection_destroy(coll);
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
            compact_json(c->metadata_json);
    }
    bson_destroy(&meta);
    return rc;
}

static int start_snapshot(struct dump *d)
{
    mongoc_session_opt_t *opts = mongoc_session_opts_new();
    bson_error_t error;

    mongoc_session_opts_set_causal_consistency(opts, false);
    mongoc_session_opts_set_snapshot(opts, true);
    d->snapshot = mongoc_client_start_session(d->client, opts, &error);
    mongoc_session_opts_destroy(opts);
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
    mongoc_client_session_get_operation_time(d->snapshot, &d->stats->cluster_time_t,
                                             &d->stats->cluster_time_i);
}

static int dump_documents(struct dump *d, const struct coll_info *c,
                          struct mongo_dump_collection *out)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(d->client, c->db, c->name);
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
    if (d->snapshot && !mongoc_client_session_append(d->snapshot, &opts, &error)) {
        rc = mongo_fail(d, &error, "MongoDB find on %s.%s", c->db, c->name);
        goto out;
    }
    cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    for (;;) {
        bool more = mongoc_cursor_next(cursor, &doc);

        if (d->snapshot && !d->stats->cluster_time_t && !mongoc_cursor_error(cursor, &error))
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
    if (rc == 0 && mongoc_cursor_error(cursor, &error))
        rc = mongo_fail(d, &error, "MongoDB dump of %s.%s failed after %llu documents", c->db,
                        c->name, (unsigned long long)out->docs);
    mongoc_cursor_destroy(cursor);
out:
    bson_destroy(&filter);
    bson_destroy(&opts);
    mongoc_collection_destroy(coll);
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

static int mongo_inited;

void mongo_dump_cleanup(void)
{
    if (mongo_inited) {
        mongoc_cleanup();
        mongo_inited = 0;
    }
}

int mongo_dump(const char *uri_string, const char *const *databases, marchive_write_fn *sink,
               void *arg, struct mongo_dump_stats *stats, struct cst_err *err)
{
    struct dump d = {.stats = stats, .err = err};
    struct secrets secrets;
    mongoc_uri_t *uri = NULL;
    bson_error_t error;
    char **names = NULL, *shown_uri = NULL;
    int64_t start = util_mono_ms();
    int replica_set = 0, rc = -1;
    int32_t wire = 0;

    memset(stats, 0, sizeof(*stats));
    secrets_from_uri(&secrets, uri_string);
    d.secrets = &secrets;
    if (!mongo_inited) {
        mongoc_init();
        mongoc_log_set_handler(mongoc_log_to_ours, NULL);
        mongo_inited = 1;
    }
    current_secrets = &secrets;

    if (strncasecmp(uri_string, "mongodb://", 10) != 0 &&
        strncasecmp(uri_string, "mongodb+srv://", 14) != 0) {
        /* not shown: without the scheme the password cannot be told apart */
        cst_err_set(err, "MongoDB URI: must start with mongodb:// or mongodb+srv://");
        goto out;
    }
    shown_uri = safe_text(uri_string, &secrets);
    if (check_userinfo(uri_string) != 0) {
        cst_err_set(err,
                    "MongoDB URI %s: the user name or password holds a raw ':', '/', '@' "
                    "or '%%'; percent-encode it (@ as %%40, / as %%2F, : as %%3A, %% as %%25)",
                    shown_uri);
        goto out;
    }
    uri = mongoc_uri_new_with_error(uri_string, &error);
    if (uri == NULL) {
        mongo_fail(&d, &error, "MongoDB URI %s", shown_uri);
        goto out;
    }
    mongoc_uri_set_appname(uri, "custodian");
    d.client = mongoc_client_new_from_uri_with_error(uri, &error);
    if (d.client == NULL) {
        mongo_fail(&d, &error, "MongoDB client");
        goto out;
    }
    mongoc_client_set_error_api(d.client, MONGOC_ERROR_API_VERSION_2);

    if (probe_topology(&d, shown_uri, &replica_set, &wire) != 0 || read_server_version(&d) != 0)
        goto out;
    if (replica_set && wire < SNAPSHOT_WIRE_VERSION) {
        log_warn("MongoDB server older than 5.0 has no snapshot reads; the dump is not one "
                 "point in time version=%s",
                 stats->server_version);
        replica_set = 0;
    } else if (!replica_set) {
        log_info("MongoDB server is not a replica set member; the dump is not one point in "
                 "time version=%s",
                 stats->server_version);
    }
    names = databases_to_dump(&d, uri, databases);
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
        mongoc_client_session_destroy(d.snapshot);
    mongoc_client_destroy(d.client);
    mongoc_uri_destroy(uri);
    current_secrets = NULL;
    free(shown_uri);
    secrets_free(&secrets);
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
