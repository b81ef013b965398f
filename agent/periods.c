/*
 * periods.c - reading the billing app's periods, invoices and timesheets
 * (see periods.h).
 *
 * Queries: periods find({}) sorted by _id; invoices and timesheets
 * find({<period field>: <period key>}) sorted by _id in batches of
 * PERIODS_BATCH; timesheets listed on invoices find({_id: {$in: [...]}})
 * PERIODS_IN_CHUNK ids at a time. The mapping checks use listCollections
 * and find({<field>: {$exists: true}}, limit 1), so they cost a handful of
 * round trips whatever the collections' sizes.
 */
#include "periods.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "agent/mongo_conn.h"
#include "agent/mongoc_lib.h"
#include "common/util.h"

#define PERIODS_BATCH 1000
#define PERIODS_IN_CHUNK 500

struct periods {
    const struct cfg_snapshots *map;
    struct mongo_conn *conn;
    mongoc_client_t *client;
    char *db;
};

void period_clear(struct period *p)
{
    if (p->doc)
        bson_destroy(p->doc);
    free(p->label);
    free(p->key_json);
    if (p->key.value_type != BSON_TYPE_EOD)
        bson_value_destroy(&p->key);
    memset(p, 0, sizeof(*p));
}

struct periods *periods_open(const struct cfg *cfg, struct cst_err *err)
{
    struct periods *p;
    struct mongo_conn *conn;
    const char *db;

    if (cfg->mongodb_uri == NULL) {
        cst_err_set(err,
                    "%s: [mongodb] uri is not set; snapshots read the billing periods "
                    "from the app's MongoDB",
                    cfg->file);
        return NULL;
    }
    conn = mongo_connect(cfg->mongodb_uri, err);
    if (conn == NULL)
        return NULL;
    db = sym_mongoc_uri_get_database(mongo_conn_uri(conn));
    if (db == NULL || db[0] == '\0') {
        cst_err_set(err,
                    "%s: [mongodb] uri %s names no database (mongodb://host/DATABASE); the "
                    "billing periods are read from it",
                    cfg->file, mongo_conn_shown_uri(conn));
        mongo_conn_close(conn);
        return NULL;
    }
    p = util_xcalloc(1, sizeof(*p));
    p->map = &cfg->snap;
    p->conn = conn;
    p->client = mongo_conn_client(conn);
    p->db = util_xstrdup(db);
    return p;
}

void periods_close(struct periods *p)
{
    if (p == NULL)
        return;
    mongo_conn_close(p->conn);
    free(p->db);
    free(p);
}

/* --- values --- */

int periods_field(const bson_t *doc, const char *path, bson_iter_t *it)
{
    bson_iter_t top;

    return bson_iter_init(&top, doc) && bson_iter_find_descendant(&top, path, it);
}

const char *periods_type_name(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_DOUBLE:
        return "double";
    case BSON_TYPE_UTF8:
        return "string";
    case BSON_TYPE_DOCUMENT:
        return "document";
    case BSON_TYPE_ARRAY:
        return "array";
    case BSON_TYPE_BINARY:
        return "binary";
    case BSON_TYPE_OID:
        return "objectId";
    case BSON_TYPE_BOOL:
        return "bool";
    case BSON_TYPE_DATE_TIME:
        return "date";
    case BSON_TYPE_NULL:
        return "null";
    case BSON_TYPE_INT32:
        return "int";
    case BSON_TYPE_INT64:
        return "long";
    case BSON_TYPE_DECIMAL128:
        return "decimal";
    case BSON_TYPE_TIMESTAMP:
        return "timestamp";
    default:
        return "other";
    }
}

char *periods_doc_json(const bson_t *doc, size_t *len)
{
    char *json = bson_as_canonical_extended_json(doc, NULL);

    if (json == NULL)
        return NULL;
    mongo_compact_json(json);
    if (len)
        *len = strlen(json);
    return json;
}

char *periods_value_json(const bson_value_t *v)
{
    bson_t wrap = BSON_INITIALIZER;
    char *json, *out;
    size_t n;

    bson_append_value(&wrap, "v", 1, v);
    json = periods_doc_json(&wrap, &n);
    bson_destroy(&wrap);
    /* {"v":<value>} */
    if (json == NULL || n < 6)
        out = util_xstrdup("null");
    else
        out = util_printf("%.*s", (int)(n - 6), json + 5);
    bson_free(json);
    return out;
}

/* Values of these types can be equal in a query: numbers compare across types. */
static int type_class(bson_type_t t)
{
    if (t == BSON_TYPE_INT32 || t == BSON_TYPE_INT64 || t == BSON_TYPE_DOUBLE ||
        t == BSON_TYPE_DECIMAL128)
        return BSON_TYPE_DOUBLE;
    return (int)t;
}

/* --- queries --- */

static int fail(struct periods *p, const bson_error_t *e, struct cst_err *err, const char *what,
                const char *coll)
{
    return mongo_conn_fail(p->conn, e, err, "MongoDB %s on %s.%s", what, p->db, coll);
}

/* find(filter) on coll with opts; each document to cb. */
static int each_doc(struct periods *p, const char *coll, const bson_t *filter, const bson_t *opts,
                    int (*cb)(void *arg, const bson_t *doc), void *arg, struct cst_err *err)
{
    mongoc_collection_t *c = sym_mongoc_client_get_collection(p->client, p->db, coll);
    mongoc_cursor_t *cur = sym_mongoc_collection_find_with_opts(c, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    int rc = 0;

    while (rc == 0 && sym_mongoc_cursor_next(cur, &doc))
        rc = cb(arg, doc);
    if (rc == 0 && sym_mongoc_cursor_error(cur, &e))
        rc = fail(p, &e, err, "find", coll);
    sym_mongoc_cursor_destroy(cur);
    sym_mongoc_collection_destroy(c);
    return rc;
}

static void sorted_opts(bson_t *opts, int64_t limit)
{
    bson_t sort;

    bson_init(opts);
    BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(opts, &sort);
    if (limit > 0)
        BSON_APPEND_INT64(opts, "limit", limit);
    else
        BSON_APPEND_INT32(opts, "batchSize", PERIODS_BATCH);
}

struct first {
    bson_t *doc;
};

static int keep_first(void *arg, const bson_t *doc)
{
    struct first *f = arg;

    f->doc = bson_copy(doc);
    return 1;
}

/* The first document of coll (in _id order) matching filter, or NULL; -1 in *rc on error. */
static bson_t *find_one(struct periods *p, const char *coll, const bson_t *filter, int *rc,
                        struct cst_err *err)
{
    struct first f = {NULL};
    bson_t opts;

    sorted_opts(&opts, 1);
    *rc = each_doc(p, coll, filter, &opts, keep_first, &f, err) < 0 ? -1 : 0;
    bson_destroy(&opts);
    return f.doc;
}

/* One document of coll that has field (its value's type in *type), 1; 0 if none; -1. */
static int sample_field(struct periods *p, const char *coll, const char *field, bson_type_t *type,
                        char **shown, struct cst_err *err)
{
    bson_t filter = BSON_INITIALIZER, exists;
    bson_t *doc;
    bson_iter_t it;
    int rc;

    BSON_APPEND_DOCUMENT_BEGIN(&filter, field, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", true);
    bson_append_document_end(&filter, &exists);
    doc = find_one(p, coll, &filter, &rc, err);
    bson_destroy(&filter);
    if (doc == NULL)
        return rc;
    if (periods_field(doc, field, &it)) {
        if (type)
            *type = bson_iter_type(&it);
        if (shown)
            *shown = periods_value_json(bson_iter_value(&it));
    } else if (type) {
        *type = BSON_TYPE_EOD; /* the server matched a path libbson reads otherwise */
    }
    bson_destroy(doc);
    return 1;
}

/* --- the mapping --- */

struct checker {
    struct periods *p;
    void (*cb)(void *arg, const char *key, int ok, const char *detail);
    void *arg;
    struct cst_err *first;
    int failed;
};

static void report(struct checker *c, const char *key, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void report(struct checker *c, const char *key, int ok, const char *fmt, ...)
{
    char detail[CST_ERR_SIZE - 64];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (!ok && c->failed++ == 0 && c->first)
        cst_err_set(c->first, "[snapshots] %s: %s", key, detail);
    if (c->cb)
        c->cb(c->arg, key, ok, detail);
}

/* 1 if coll exists, 0 (reported) if not, -1 (reported) if it could not be asked. */
static int check_collection(struct checker *c, const char *key, const char *coll, char **names)
{
    char list[512] = "";

    for (size_t i = 0; names && names[i]; i++) {
        size_t len = strlen(list);

        if (strcmp(names[i], coll) == 0) {
            report(c, key, 1, "collection %s.%s exists", c->p->db, coll);
            return 1;
        }
        if (strncmp(names[i], "system.", 7) != 0 && len + strlen(names[i]) + 4 < sizeof(list))
            snprintf(list + len, sizeof(list) - len, "%s%s", len ? ", " : "", names[i]);
    }
    report(c, key, 0, "no collection %s in database %s (it has: %s)", coll, c->p->db,
           list[0] ? list : "no collections");
    return 0;
}

/* A field that documents of coll must have (when coll has any document). */
static void check_field(struct checker *c, const char *key, const char *coll, const char *field,
                        int coll_has_docs, bson_type_t *type, char **shown)
{
    struct cst_err err;
    int rc;

    if (!coll_has_docs) {
        report(c, key, 1, "%s.%s is empty: field %s cannot be checked yet", c->p->db, coll, field);
        return;
    }
    rc = sample_field(c->p, coll, field, type, shown, &err);
    if (rc < 0)
        report(c, key, 0, "%s", err.msg);
    else if (rc == 0)
        report(c, key, 0,
               "no document of %s.%s has a field %s; is it named differently in the app?", c->p->db,
               coll, field);
    else
        report(c, key, 1, "%s.%s documents have %s", c->p->db, coll, field);
}

static int has_docs(struct periods *p, const char *coll, int *rc, struct cst_err *err)
{
    bson_t filter = BSON_INITIALIZER;
    bson_t *doc = find_one(p, coll, &filter, rc, err);

    bson_destroy(&filter);
    if (doc)
        bson_destroy(doc);
    return doc != NULL;
}

/* An invoice's/timesheet's period field must hold what a period key can equal. */
static void check_types(struct checker *c, const char *key, const char *field, bson_type_t got,
                        const char *got_shown, bson_type_t want, const char *want_shown)
{
    const struct cfg_snapshots *m = c->p->map;

    if (got == BSON_TYPE_EOD || want == BSON_TYPE_EOD)
        return;
    if (type_class(got) != type_class(want))
        report(c, key, 0,
               "%s holds %s values (e.g. %s) but the periods' period_key_field %s holds %s "
               "values (e.g. %s): they never match",
               field, periods_type_name(got), got_shown ? got_shown : "?", m->period_key_field,
               periods_type_name(want), want_shown ? want_shown : "?");
    else
        report(c, key, 1, "%s holds %s values, as period_key_field %s does", field,
               periods_type_name(got), m->period_key_field);
}

int periods_check(struct periods *p,
                  void (*cb)(void *arg, const char *key, int ok, const char *detail), void *arg,
                  struct cst_err *first)
{
    const struct cfg_snapshots *m = p->map;
    struct checker c = {p, cb, arg, first, 0};
    mongoc_database_t *db = sym_mongoc_client_get_database(p->client, p->db);
    bson_type_t key_type = BSON_TYPE_EOD, inv_type = BSON_TYPE_EOD, ts_type = BSON_TYPE_EOD;
    char *key_shown = NULL, *inv_shown = NULL, *ts_shown = NULL;
    char **names;
    bson_error_t e;
    struct cst_err err;
    int rc, have[3];

    names = sym_mongoc_database_get_collection_names_with_opts(db, NULL, &e);
    sym_mongoc_database_destroy(db);
    if (names == NULL) {
        mongo_conn_fail(p->conn, &e, &err, "MongoDB listCollections on %s", p->db);
        report(&c, "periods_collection", 0, "%s", err.msg);
        return c.failed;
    }
    const char *colls[3] = {m->periods_collection, m->invoices_collection,
                            m->timesheets_collection};
    const char *keys[3] = {"periods_collection", "invoices_collection", "timesheets_collection"};
    for (int i = 0; i < 3; i++) {
        rc = 0;
        have[i] =
            check_collection(&c, keys[i], colls[i], names) == 1 && has_docs(p, colls[i], &rc, &err);
        if (rc < 0)
            report(&c, keys[i], 0, "%s", err.msg);
    }
    bson_strfreev(names);
    if (c.failed)
        return c.failed;

    check_field(&c, "period_label_field", m->periods_collection, m->period_label_field, have[0],
                NULL, NULL);
    check_field(&c, "period_start_field", m->periods_collection, m->period_start_field, have[0],
                NULL, NULL);
    check_field(&c, "period_end_field", m->periods_collection, m->period_end_field, have[0], NULL,
                NULL);
    check_field(&c, "period_closed_field", m->periods_collection, m->period_closed_field, have[0],
                NULL, NULL);
    check_field(&c, "period_key_field", m->periods_collection, m->period_key_field, have[0],
                &key_type, &key_shown);
    check_field(&c, "invoice_period_field", m->invoices_collection, m->invoice_period_field,
                have[1], &inv_type, &inv_shown);
    check_field(&c, "invoice_file_field", m->invoices_collection, m->invoice_file_field, have[1],
                NULL, NULL);
    if (m->invoice_timesheets_field)
        check_field(&c, "invoice_timesheets_field", m->invoices_collection,
                    m->invoice_timesheets_field, have[1], NULL, NULL);
    check_field(&c, "timesheet_period_field", m->timesheets_collection, m->timesheet_period_field,
                have[2], &ts_type, &ts_shown);
    check_field(&c, "timesheet_file_field", m->timesheets_collection, m->timesheet_file_field,
                have[2], NULL, NULL);
    check_types(&c, "invoice_period_field", m->invoice_period_field, inv_type, inv_shown, key_type,
                key_shown);
    check_types(&c, "timesheet_period_field", m->timesheet_period_field, ts_type, ts_shown,
                key_type, key_shown);
    free(key_shown);
    free(inv_shown);
    free(ts_shown);
    return c.failed;
}

/* --- periods --- */

/* Fill per from doc; -1 with err naming the key when the document cannot be one. */
static int read_period(struct periods *p, const bson_t *doc, struct period *per,
                       struct cst_err *err)
{
    const struct cfg_snapshots *m = p->map;
    bson_iter_t it;
    char *id = NULL;

    memset(per, 0, sizeof(*per));
    if (periods_field(doc, "_id", &it))
        id = periods_value_json(bson_iter_value(&it));
    if (!periods_field(doc, m->period_key_field, &it)) {
        cst_err_set(err, "[snapshots] period_key_field: period %s in %s.%s has no field %s",
                    id ? id : "?", p->db, m->periods_collection, m->period_key_field);
        goto fail;
    }
    bson_value_copy(bson_iter_value(&it), &per->key);
    per->key_json = periods_value_json(&per->key);
    if (!periods_field(doc, m->period_label_field, &it)) {
        cst_err_set(err, "[snapshots] period_label_field: period %s in %s.%s has no field %s",
                    id ? id : "?", p->db, m->periods_collection, m->period_label_field);
        goto fail;
    }
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        per->label = util_xstrdup(bson_iter_utf8(&it, NULL));
    } else if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) {
        per->label = util_printf("%lld", (long long)bson_iter_as_int64(&it));
    } else {
        cst_err_set(err, "[snapshots] period_label_field: %s of period %s is a %s, not a string",
                    m->period_label_field, id ? id : "?", periods_type_name(bson_iter_type(&it)));
        goto fail;
    }
    if (periods_field(doc, m->period_start_field, &it) && BSON_ITER_HOLDS_DATE_TIME(&it))
        per->start = bson_iter_date_time(&it);
    if (periods_field(doc, m->period_end_field, &it) && BSON_ITER_HOLDS_DATE_TIME(&it))
        per->end = bson_iter_date_time(&it);
    if (periods_field(doc, m->period_closed_field, &it) && !BSON_ITER_HOLDS_NULL(&it)) {
        if (!BSON_ITER_HOLDS_DATE_TIME(&it)) {
            cst_err_set(err,
                        "[snapshots] period_closed_field: %s of period %s (%s) is a %s, not a "
                        "date",
                        m->period_closed_field, per->label, id ? id : "?",
                        periods_type_name(bson_iter_type(&it)));
            goto fail;
        }
        per->closed = 1;
        per->closed_at = bson_iter_date_time(&it);
    }
    per->doc = bson_copy(doc);
    free(id);
    return 0;
fail:
    free(id);
    period_clear(per);
    return -1;
}

struct each_period {
    struct periods *p;
    int (*cb)(void *arg, struct period *per);
    void *arg;
    struct cst_err *err;
};

static int on_period(void *arg, const bson_t *doc)
{
    struct each_period *e = arg;
    struct period per;
    int rc;

    if (read_period(e->p, doc, &per, e->err) < 0)
        return -1;
    rc = e->cb(e->arg, &per);
    period_clear(&per);
    return rc;
}

int periods_each(struct periods *p, int (*cb)(void *arg, struct period *per), void *arg,
                 struct cst_err *err)
{
    struct each_period e = {p, cb, arg, err};
    bson_t filter = BSON_INITIALIZER, opts;
    int rc;

    sorted_opts(&opts, 0);
    rc = each_doc(p, p->map->periods_collection, &filter, &opts, on_period, &e, err);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}

struct by_label {
    struct periods *p;
    struct period *out;
    int found;
    struct cst_err *err;
};

static int on_labelled(void *arg, const bson_t *doc)
{
    struct by_label *b = arg;
    struct period per;

    if (read_period(b->p, doc, &per, b->err) < 0)
        return -1;
    if (b->found++ == 0) {
        *b->out = per;
        return 0;
    }
    cst_err_set(b->err,
                "two periods in %s.%s have the label %s (%s and %s); snapshot them by a "
                "label that is unique",
                b->p->db, b->p->map->periods_collection, per.label, b->out->key_json, per.key_json);
    period_clear(&per);
    return -1;
}

int periods_find_label(struct periods *p, const char *label, struct period *out,
                       struct cst_err *err)
{
    struct by_label b = {p, out, 0, err};
    bson_t filter = BSON_INITIALIZER, opts;
    int rc;

    memset(out, 0, sizeof(*out));
    BSON_APPEND_UTF8(&filter, p->map->period_label_field, label);
    sorted_opts(&opts, 0);
    rc = each_doc(p, p->map->periods_collection, &filter, &opts, on_labelled, &b, err);
    bson_destroy(&opts);
    bson_destroy(&filter);
    if (rc < 0) {
        if (b.found)
            period_clear(out);
        return -1;
    }
    return b.found ? 1 : 0;
}

/* --- invoices and timesheets --- */

static int each_of_period(struct periods *p, const char *coll, const char *field,
                          const struct period *per, int (*cb)(void *arg, const bson_t *doc),
                          void *arg, struct cst_err *err)
{
    bson_t filter = BSON_INITIALIZER, opts;
    int rc;

    bson_append_value(&filter, field, -1, &per->key);
    sorted_opts(&opts, 0);
    rc = each_doc(p, coll, &filter, &opts, cb, arg, err);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}

int periods_each_invoice(struct periods *p, const struct period *per,
                         int (*cb)(void *arg, const bson_t *doc), void *arg, struct cst_err *err)
{
    return each_of_period(p, p->map->invoices_collection, p->map->invoice_period_field, per, cb,
                          arg, err);
}

int periods_each_timesheet(struct periods *p, const struct period *per,
                           int (*cb)(void *arg, const bson_t *doc), void *arg, struct cst_err *err)
{
    return each_of_period(p, p->map->timesheets_collection, p->map->timesheet_period_field, per, cb,
                          arg, err);
}

int periods_each_timesheet_by_id(struct periods *p, const bson_value_t *ids, size_t n,
                                 int (*cb)(void *arg, const bson_t *doc), void *arg,
                                 struct cst_err *err)
{
    for (size_t at = 0; at < n; at += PERIODS_IN_CHUNK) {
        bson_t filter = BSON_INITIALIZER, id, in, opts;
        size_t end = at + PERIODS_IN_CHUNK < n ? at + PERIODS_IN_CHUNK : n;
        int rc;

        BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &id);
        BSON_APPEND_ARRAY_BEGIN(&id, "$in", &in);
        for (size_t i = at; i < end; i++) {
            char k[16];
            const char *key;

            bson_uint32_to_string((uint32_t)(i - at), &key, k, sizeof(k));
            bson_append_value(&in, key, -1, &ids[i]);
        }
        bson_append_array_end(&id, &in);
        bson_append_document_end(&filter, &id);
        sorted_opts(&opts, 0);
        rc = each_doc(p, p->map->timesheets_collection, &filter, &opts, cb, arg, err);
        bson_destroy(&opts);
        bson_destroy(&filter);
        if (rc != 0)
            return rc;
    }
    return 0;
}
