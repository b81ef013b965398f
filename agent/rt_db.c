/*
 * rt_db.c - the restore test's database check (§6 "perform test restore
 * (DB ...)").
 *
 * The newest daily dump with a verified copy is fetched from a destination
 * holding it and its ciphertext checked against the catalog. With the
 * secret key it is then decrypted and its plaintext checked, and read once,
 * as mongorestore reads it (every block, every collection's CRC-64), while
 * each document is loaded into a scratch database <db>_restore_test on the
 * [restore_test] mongodb_uri server. Then, per collection: the documents
 * and CRC-64 the archive holds against what was recorded when it was dumped
 * (dump_collections; the signed manifest's counts for dumps older than that
 * record), the documents the scratch database holds against the archive,
 * and a few documents picked at random read back and compared byte for byte
 * with the dump. The scratch databases are dropped at the end, whatever
 * happened; a live database is never written (a scratch name that is also a
 * dumped database's is refused).
 */
#include <bson/bson.h>
#include <errno.h>
#include <mongoc/mongoc.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/manifest.h"
#include "agent/mongo_archive.h"
#include "agent/mongo_conn.h"
#include "agent/mongoc_lib.h"
#include "agent/restore_test_int.h"
#include "common/util.h"

#define SCRATCH_SUFFIX "_restore_test"
#define SAMPLE_PER_COLLECTION 3
#define INSERT_BATCH 1000

struct ns_check {
    char *db, *coll, *type;
    int recorded; /* the dump-time record has this namespace */
    int64_t recorded_docs;
    int recorded_has_crc;
    uint64_t recorded_crc;
    int in_archive;
    int64_t archive_docs;
    uint64_t archive_crc;
    int64_t loaded; /* counted in the scratch database; -1 not counted */
    uint64_t seen;  /* documents read, for the reservoir */
    bson_t *samples[SAMPLE_PER_COLLECTION];
    int64_t sampled, identical;
    char *problem; /* the first thing wrong with it */
};

struct loader {
    struct rt *t;
    struct marchive_stats *st; /* being filled by the validator: the prelude is there */
    struct mongo_conn *conn;   /* NULL: no loading */
    char *load_error;          /* loading stopped: why */
    mongoc_collection_t *coll; /* the scratch collection the bulk writes to */
    char *bulk_db, *bulk_coll; /* and the dumped namespace it is for */
    mongoc_bulk_operation_t *bulk;
    size_t in_bulk;
    char **scratch_dbs; /* dropped before the first write and at the end */
    size_t n_scratch;
    struct ns_check *ns;
    size_t n_ns;
    int64_t inserted;
};

static void problem(struct ns_check *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct ns_check *n, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (n->problem)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    n->problem = util_xstrdup(buf);
}

static struct ns_check *ns_find(struct loader *l, const char *db, const char *coll, int create)
{
    for (size_t i = 0; i < l->n_ns; i++)
        if (strcmp(l->ns[i].db, db) == 0 && strcmp(l->ns[i].coll, coll) == 0)
            return &l->ns[i];
    if (!create)
        return NULL;
    l->ns = util_xrealloc(l->ns, (l->n_ns + 1) * sizeof(*l->ns));
    memset(&l->ns[l->n_ns], 0, sizeof(*l->ns));
    l->ns[l->n_ns].db = util_xstrdup(db);
    l->ns[l->n_ns].coll = util_xstrdup(coll);
    l->ns[l->n_ns].type = util_xstrdup("collection");
    l->ns[l->n_ns].loaded = -1;
    return &l->ns[l->n_ns++];
}

static void load_failed(struct loader *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void load_failed(struct loader *l, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    if (l->load_error)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    l->load_error = util_xstrdup(buf);
}

/* Send what the bulk holds. */
static void flush_bulk(struct loader *l)
{
    bson_error_t error;
    bson_t reply;

    if (l->bulk && l->in_bulk) {
        if (!sym_mongoc_bulk_operation_execute(l->bulk, &reply, &error)) {
            struct cst_err err;

            mongo_conn_fail(l->conn, &error, &err, "loading into the scratch database");
            load_failed(l, "%s", err.msg);
        }
        bson_destroy(&reply);
    }
    if (l->bulk)
        sym_mongoc_bulk_operation_destroy(l->bulk);
    if (l->coll)
        sym_mongoc_collection_destroy(l->coll);
    free(l->bulk_db);
    free(l->bulk_coll);
    l->bulk_db = l->bulk_coll = NULL;
    l->bulk = NULL;
    l->coll = NULL;
    l->in_bulk = 0;
}

static int drop_db(struct loader *l, const char *name, struct cst_err *err)
{
    mongoc_database_t *db = sym_mongoc_client_get_database(mongo_conn_client(l->conn), name);
    bson_error_t error;
    int ok = sym_mongoc_database_drop_with_opts(db, NULL, &error);

    sym_mongoc_database_destroy(db);
    /* Dropping a database that does not exist is no error (MongoDB says ok). */
    if (!ok)
        return mongo_conn_fail(l->conn, &error, err, "dropping the scratch database %s", name);
    return 0;
}

/* The scratch database of db (the name, malloc'd), dropped once before its first write; NULL
 * with the reason when it cannot be used. */
static char *scratch_of(struct loader *l, const char *db)
{
    char *name = util_printf("%s" SCRATCH_SUFFIX, db);
    struct cst_err err;

    for (size_t i = 0; i < l->n_scratch; i++)
        if (strcmp(l->scratch_dbs[i], name) == 0)
            return name;
    if (strlen(name) > 63) {
        load_failed(l, "scratch database name %s is longer than MongoDB allows", name);
        free(name);
        return NULL;
    }
    for (size_t i = 0; i < l->st->n_namespaces; i++)
        if (strcmp(l->st->namespaces[i].db, name) == 0) {
            /* Never write, let alone drop, a database that was dumped. */
            load_failed(l,
                        "the scratch database %s is also a database of the dump; nothing was "
                        "loaded",
                        name);
            free(name);
            return NULL;
        }
    if (drop_db(l, name, &err) < 0) {
        load_failed(l, "%s", err.msg);
        free(name);
        return NULL;
    }
    l->scratch_dbs = util_xrealloc(l->scratch_dbs, (l->n_scratch + 1) * sizeof(char *));
    l->scratch_dbs[l->n_scratch++] = util_xstrdup(name);
    return name;
}

static void load_doc(struct loader *l, const char *db, const char *coll, const bson_t *doc)
{
    bson_error_t error;
    char *scratch;

    /* system.* (a time series' buckets) is the server's to make, not a restore's. */
    if (l->conn == NULL || l->load_error || strncmp(coll, "system.", 7) == 0)
        return;
    if (l->bulk && (strcmp(l->bulk_db, db) != 0 || strcmp(l->bulk_coll, coll) != 0 ||
                    l->in_bulk >= INSERT_BATCH))
        flush_bulk(l);
    if (l->load_error)
        return;
    if (l->bulk == NULL) {
        bson_t opts = BSON_INITIALIZER;

        if ((scratch = scratch_of(l, db)) == NULL)
            return;
        BSON_APPEND_BOOL(&opts, "ordered", true);
        l->coll = sym_mongoc_client_get_collection(mongo_conn_client(l->conn), scratch, coll);
        l->bulk = sym_mongoc_collection_create_bulk_operation_with_opts(l->coll, &opts);
        l->bulk_db = util_xstrdup(db);
        l->bulk_coll = util_xstrdup(coll);
        bson_destroy(&opts);
        free(scratch);
    }
    if (!sym_mongoc_bulk_operation_insert_with_opts(l->bulk, doc, NULL, &error)) {
        struct cst_err err;

        mongo_conn_fail(l->conn, &error, &err, "loading %s.%s", db, coll);
        load_failed(l, "%s", err.msg);
        return;
    }
    l->in_bulk++;
    l->inserted++;
}

/* marchive_doc_fn: sample, then load. */
static int on_doc(void *arg, const char *db, const char *coll, const bson_t *doc,
                  struct cst_err *err)
{
    struct loader *l = arg;
    struct ns_check *n = ns_find(l, db, coll, 1);

    (void)err;
    /* Reservoir sampling: every document has the same chance to be compared. */
    n->seen++;
    if (n->seen <= SAMPLE_PER_COLLECTION) {
        n->samples[n->seen - 1] = bson_copy(doc);
    } else {
        uint64_t j =
            (uint64_t)randombytes_uniform(n->seen > UINT32_MAX ? UINT32_MAX : (uint32_t)n->seen);

        if (j < SAMPLE_PER_COLLECTION) {
            bson_destroy(n->samples[j]);
            n->samples[j] = bson_copy(doc);
        }
    }
    load_doc(l, db, coll, doc);
    return 0;
}

struct fd_source {
    int fd;
};

static ssize_t fd_read(void *arg, void *buf, size_t len)
{
    struct fd_source *s = arg;
    ssize_t n;

    do
        n = read(s->fd, buf, len);
    while (n < 0 && errno == EINTR);
    return n;
}

static int64_t count_in(struct loader *l, const char *db, const char *coll, struct cst_err *err)
{
    char *scratch = util_printf("%s" SCRATCH_SUFFIX, db);
    mongoc_database_t *sdb = sym_mongoc_client_get_database(mongo_conn_client(l->conn), scratch);
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it;
    int64_t n = -1;

    BSON_APPEND_UTF8(&cmd, "count", coll);
    if (!sym_mongoc_database_command_simple(sdb, &cmd, NULL, &reply, &error))
        mongo_conn_fail(l->conn, &error, err, "counting %s.%s", scratch, coll);
    else if (bson_iter_init_find(&it, &reply, "n") && BSON_ITER_HOLDS_NUMBER(&it))
        n = bson_iter_as_int64(&it);
    else
        cst_err_set(err, "counting %s.%s: the server's answer has no count", scratch, coll);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    sym_mongoc_database_destroy(sdb);
    free(scratch);
    return n;
}

/* Read sample back from the scratch database by its _id: 1 identical, 0 different or
 * missing (why in err), -1 the server failed (err). */
static int compare_sample(struct loader *l, const struct ns_check *n, const bson_t *sample,
                          struct cst_err *err)
{
    char *scratch = util_printf("%s" SCRATCH_SUFFIX, n->db);
    mongoc_collection_t *coll =
        sym_mongoc_client_get_collection(mongo_conn_client(l->conn), scratch, n->coll);
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *got;
    mongoc_cursor_t *cursor;
    bson_error_t error;
    bson_iter_t id;
    int rc;

    if (!bson_iter_init_find(&id, sample, "_id")) {
        cst_err_set(err, "a sampled document of %s.%s has no _id to find it by", n->db, n->coll);
        rc = 0;
        goto out;
    }
    bson_append_iter(&filter, "_id", -1, &id);
    BSON_APPEND_INT64(&opts, "limit", 1);
    cursor = sym_mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    if (sym_mongoc_cursor_next(cursor, &got)) {
        rc = got->len == sample->len &&
             memcmp(bson_get_data(got), bson_get_data(sample), sample->len) == 0;
        if (!rc) {
            const uint8_t *g = bson_get_data(got), *w = bson_get_data(sample);
            uint32_t at = 0;

            while (at < got->len && at < sample->len && g[at] == w[at])
                at++;
            cst_err_set(err,
                        "a document of %s.%s read back from the scratch database is not byte "
                        "for byte the dump's (%u bytes, the dump's %u; they differ from byte %u)",
                        n->db, n->coll, got->len, sample->len, at);
        }
    } else if (sym_mongoc_cursor_error(cursor, &error)) {
        rc = mongo_conn_fail(l->conn, &error, err, "reading %s.%s back", scratch, n->coll);
    } else {
        rc = 0;
        cst_err_set(err, "a document of %s.%s is missing from the scratch database", n->db,
                    n->coll);
    }
    sym_mongoc_cursor_destroy(cursor);
out:
    bson_destroy(&filter);
    bson_destroy(&opts);
    sym_mongoc_collection_destroy(coll);
    free(scratch);
    return rc;
}

/* The dump-time record: dump_collections, or for dumps made before it was kept, the
 * signed manifest's per-collection counts (state_dir/manifests). */
struct recorded {
    struct loader *l;
    int n;
};

static int on_recorded(void *arg, const struct catalog_dump_ns *rec)
{
    struct recorded *r = arg;
    struct ns_check *n = ns_find(r->l, rec->db, rec->coll, 1);

    n->recorded = 1;
    n->recorded_docs = rec->docs;
    n->recorded_has_crc = rec->has_crc;
    n->recorded_crc = rec->crc64;
    free(n->type);
    n->type = util_xstrdup(rec->type);
    r->n++;
    return 0;
}

static int manifest_counts(struct rt *t, struct loader *l, const struct catalog_artifact *a)
{
    char *key = manifest_artifact_key("manifest-json", a->date, a->attempt);
    char *path = util_printf("%s/manifests/%s", t->cli->cfg->state_dir, strrchr(key, '/') + 1);
    bson_error_t berr;
    bson_t *doc = NULL;
    bson_iter_t it, coll;
    FILE *f = fopen(path, "re");
    char *text = NULL;
    size_t cap = 0;
    ssize_t len;
    int n = 0;

    if (f && (len = getdelim(&text, &cap, '\0', f)) > 0)
        doc = bson_new_from_json((const uint8_t *)text, len, &berr);
    if (f)
        fclose(f);
    if (doc && bson_iter_init(&it, doc) &&
        bson_iter_find_descendant(&it, "db.collections", &coll) &&
        BSON_ITER_HOLDS_DOCUMENT(&coll) && bson_iter_recurse(&coll, &it)) {
        while (bson_iter_next(&it)) {
            const char *ns = bson_iter_key(&it), *dot = strchr(ns, '.');
            struct ns_check *c;
            char *db;

            if (dot == NULL || !BSON_ITER_HOLDS_NUMBER(&it))
                continue;
            db = util_printf("%.*s", (int)(dot - ns), ns);
            c = ns_find(l, db, dot + 1, 1);
            c->recorded = 1;
            c->recorded_docs = bson_iter_as_int64(&it);
            free(db);
            n++;
        }
    }
    if (doc)
        bson_destroy(doc);
    free(text);
    free(path);
    free(key);
    return n;
}

/* One destination holding the dump, in config order, after `after` (NULL: the first). */
struct holder {
    struct rt *t;
    const char *after;
    int passed;
    struct dest *d;
};

static int on_holder(void *arg, const char *dest, int64_t verified_at)
{
    struct holder *h = arg;

    (void)verified_at;
    if (h->d)
        return 0;
    for (size_t i = 0; i < h->t->n_dests; i++)
        if (strcmp(h->t->dests[i]->name, dest) == 0) {
            if (h->after && !h->passed) {
                if (strcmp(dest, h->after) == 0)
                    h->passed = 1;
                return 0;
            }
            h->d = h->t->dests[i];
        }
    return 0;
}

void rt_check_db(struct rt *t, struct report_section *s)
{
    const struct cfg *cfg = t->cli->cfg;
    struct catalog_artifact a;
    struct loader l;
    struct marchive_stats st;
    struct cst_err err;
    struct fd_source src;
    const char *uri = cfg->rt.mongodb_uri ? cfg->rt.mongodb_uri : cfg->mongodb_uri;
    int sealed = -1, plain = -1, found, bad = 0, records = 0, valid = 0;
    int64_t t0 = util_mono_ms(), t_fetch = 0, t_open = 0, t_load = 0, t_verify = 0, t_drop = 0;
    unsigned char sha[32];
    uint64_t size;
    struct dest *from = NULL;
    char *fetch_errors = util_xstrdup("");

    memset(&l, 0, sizeof(l));
    memset(&st, 0, sizeof(st));
    l.t = t;
    l.st = &st;
    report_columns(s, "collection", "Collection", NULL, "type", "Type", NULL, "docs_dumped",
                   "Documents when dumped", "documents", "docs_in_dump", "Documents in the dump",
                   "documents", "docs_loaded", "Documents after loading", "documents", "crc_dumped",
                   "CRC-64 when dumped", NULL, "crc_in_dump", "CRC-64 in the dump", NULL, "sampled",
                   "Sampled", "documents", "identical", "Identical byte for byte", "documents",
                   "result", "Result", NULL, "why", "Why", NULL, (char *)NULL);
    found = catalog_latest_artifact(t->cli->cat, "db", &a, &err);
    if (found < 0) {
        report_set(s, REPORT_FAILED, "the catalog cannot say which dump is the newest: %s",
                   err.msg);
        free(fetch_errors);
        return;
    }
    if (found == 0) {
        if (cfg->mongodb_uri == NULL && cfg->dump_command == NULL)
            report_set(s, REPORT_NOT_APPLICABLE,
                       "no database is configured ([mongodb] uri or dump_command): there is no "
                       "dump to restore");
        else
            report_set(s, REPORT_FAILED,
                       "no daily dump has a verified copy on any destination: nothing to "
                       "restore (see `custodian status`)");
        free(fetch_errors);
        return;
    }
    report_fact_text(NULL, s, "dump_date", "Dump (daily run of)", a.date);
    report_fact_int(NULL, s, "dump_attempt", "Attempt of that day", a.attempt, NULL);
    report_fact_int(NULL, s, "dump_bytes", "Dump size (plaintext)", a.plain_size, "bytes");
    report_fact_int(NULL, s, "dump_stored_bytes", "Dump size (stored, encrypted)", a.stored_size,
                    "bytes");
    t->db_plain_bytes = a.plain_size;

    /* The ciphertext, from the first destination that gives it back intact. */
    if ((sealed = rt_scratch(t, &err)) < 0) {
        report_set(s, REPORT_FAILED, "%s", err.msg);
        goto out;
    }
    for (const char *after = NULL;;) {
        struct holder h = {t, after, 0, NULL};
        int64_t f0 = util_mono_ms();
        char *more;

        if (catalog_each_artifact_copy(t->cli->cat, a.date, a.attempt, "db", on_holder, &h, &err) <
            0) {
            report_set(s, REPORT_FAILED, "%s", err.msg);
            goto out;
        }
        if (h.d == NULL)
            break;
        after = h.d->name;
        if (rt_fetch(t, h.d, a.remote_key, sealed, sha, &size, &err) == 0 &&
            memcmp(sha, a.stored_sha256, 32) == 0 && (int64_t)size == a.stored_size) {
            from = h.d;
            t_fetch = util_mono_ms() - f0;
            break;
        }
        if (memcmp(sha, a.stored_sha256, 32) != 0 && err.msg[0] == '\0')
            cst_err_set(&err, "its SHA-256 is not the one the catalog recorded");
        more = util_printf("%s%sdestination %s: %s", fetch_errors, fetch_errors[0] ? "; " : "",
                           h.d->name, err.msg);
        free(fetch_errors);
        fetch_errors = more;
        err.msg[0] = '\0';
    }
    if (from == NULL) {
        report_set(s, REPORT_FAILED,
                   "the dump %s could not be fetched intact from any destination: %s", a.remote_key,
                   fetch_errors[0] ? fetch_errors : "none holds a copy");
        goto out;
    }
    report_fact_text(NULL, s, "dump_from", "Fetched from destination", from->name);
    report_fact_int(NULL, s, "fetch_ms", "Time to fetch", t_fetch, "ms");
    if (fetch_errors[0])
        report_fact_text(NULL, s, "fetch_errors", "Copies that failed first", fetch_errors);
    if (t->sk == NULL) {
        report_set(s, REPORT_NOT_DONE,
                   "not done: the dump's ciphertext on %s is intact (%lld bytes, SHA-256 as "
                   "cataloged), but it was not decrypted, checked or loaded: %s",
                   from->name, (long long)a.stored_size, t->no_key_why);
        goto out;
    }
    {
        int64_t o0 = util_mono_ms();

        if ((plain = rt_scratch(t, &err)) < 0 ||
            rt_open(t, sealed, plain, a.plain_size, a.plain_sha256, &err) < 0) {
            report_set(s, REPORT_FAILED, "the dump from %s does not decrypt to what was dumped: %s",
                       from->name, err.msg);
            goto out;
        }
        t_open = util_mono_ms() - o0;
    }
    report_fact_int(NULL, s, "decrypt_ms", "Time to decrypt and check", t_open, "ms");
    close(sealed);
    sealed = -1;

    /* The dump-time record. */
    {
        struct recorded r = {&l, 0};

        if (catalog_each_dump_ns(t->cli->cat, a.date, a.attempt, on_recorded, &r, &err) < 0) {
            report_set(s, REPORT_FAILED, "%s", err.msg);
            goto out;
        }
        records = r.n;
        if (records == 0)
            records = manifest_counts(t, &l, &a);
        report_fact_text(NULL, s, "record", "Checked against",
                         r.n       ? "the per-collection documents and CRC-64 recorded when it was "
                                     "dumped"
                         : records ? "the per-collection documents its signed manifest lists "
                                     "(made before CRCs were recorded)"
                                   : "nothing recorded at dump time (made by an older version): "
                                     "the archive's own CRCs only");
    }

    /* One pass: read as mongorestore would, and load. */
    if (uri == NULL) {
        load_failed(&l, "no server to load into: set [restore_test] mongodb_uri (the dump comes "
                        "from dump_command)");
    } else if ((l.conn = mongo_connect(uri, &err)) == NULL) {
        load_failed(&l, "%s", err.msg);
    } else {
        report_fact_text(NULL, s, "scratch_server", "Loaded into (server)",
                         mongo_conn_shown_uri(l.conn));
    }
    {
        int64_t l0 = util_mono_ms();

        src.fd = plain;
        if (lseek(plain, 0, SEEK_SET) != 0) {
            report_set(s, REPORT_FAILED, "cannot read the decrypted dump back: %s",
                       strerror(errno));
            goto out;
        }
        valid = marchive_validate_docs(fd_read, &src, &st, on_doc, &l, &err) == 0;
        flush_bulk(&l);
        t_load = util_mono_ms() - l0;
    }
    if (!valid) {
        report_set(s, REPORT_FAILED, "the dump from %s is not a sound mongodump archive: %s",
                   from->name, err.msg);
        bad = 1;
    }
    if (l.conn)
        report_fact_int(NULL, s, "load_ms", "Time to read and load", t_load, "ms");
    report_fact_int(NULL, s, "documents_loaded", "Documents loaded", l.inserted, "documents");

    /* Per collection: the archive, the record, the scratch database, the samples. */
    for (size_t i = 0; valid && i < st.n_namespaces; i++) {
        struct marchive_ns_stats *ns = &st.namespaces[i];
        struct ns_check *n = ns_find(&l, ns->db, ns->coll, 1);

        n->in_archive = 1;
        n->archive_docs = (int64_t)ns->docs;
        n->archive_crc = ns->crc;
        free(n->type);
        n->type = util_xstrdup(ns->type);
    }
    {
        int64_t v0 = util_mono_ms();

        for (size_t i = 0; valid && i < l.n_ns; i++) {
            struct ns_check *n = &l.ns[i];
            int is_data = strcmp(n->type, "collection") == 0;

            if (!n->in_archive) {
                problem(n, "recorded when it was dumped, but not in the dump");
                continue;
            }
            if (records && !n->recorded)
                problem(n, "in the dump, but not recorded when it was dumped");
            else if (n->recorded && n->recorded_docs != n->archive_docs)
                problem(n, "the dump holds %lld documents, %lld were dumped",
                        (long long)n->archive_docs, (long long)n->recorded_docs);
            else if (n->recorded && n->recorded_has_crc && is_data &&
                     n->recorded_crc != n->archive_crc)
                problem(n,
                        "its documents changed since they were dumped: CRC-64 %016llx, %016llx "
                        "when dumped",
                        (unsigned long long)n->archive_crc, (unsigned long long)n->recorded_crc);
            if (l.conn == NULL || l.load_error || !is_data)
                continue;
            n->loaded = count_in(&l, n->db, n->coll, &err);
            if (n->loaded < 0) {
                load_failed(&l, "%s", err.msg);
                continue;
            }
            if (n->loaded != n->archive_docs)
                problem(n, "the scratch database holds %lld documents after loading, the dump %lld",
                        (long long)n->loaded, (long long)n->archive_docs);
            for (int k = 0; k < SAMPLE_PER_COLLECTION && n->samples[k]; k++) {
                int same = compare_sample(&l, n, n->samples[k], &err);

                if (same < 0) {
                    load_failed(&l, "%s", err.msg);
                    break;
                }
                n->sampled++;
                n->identical += same;
                if (!same)
                    problem(n, "%s", err.msg);
            }
        }
        t_verify = util_mono_ms() - v0;
    }
    /* Dropped whatever happened, so that no copy of patient data stays behind. */
    if (l.conn) {
        int64_t d0 = util_mono_ms();

        flush_bulk(&l);
        for (size_t i = 0; i < l.n_scratch; i++)
            if (drop_db(&l, l.scratch_dbs[i], &err) < 0)
                load_failed(&l, "%s (drop it by hand)", err.msg);
        t_drop = util_mono_ms() - d0;
        report_fact_int(NULL, s, "verify_ms", "Time to count and compare", t_verify, "ms");
        report_fact_int(NULL, s, "drop_ms", "Time to drop the scratch databases", t_drop, "ms");
    }
    t->db_ms = t_fetch + t_open + t_load;
    report_fact_int(NULL, s, "total_ms", "Total time", util_mono_ms() - t0, "ms");

    /* The table, failures first. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < l.n_ns; i++) {
            struct ns_check *n = &l.ns[i];
            char crc_r[17] = "", crc_d[17] = "", *name;

            if ((n->problem != NULL) != (pass == 0))
                continue;
            bad += n->problem != NULL;
            report_row(s, RT_MAX_ROWS);
            name = util_printf("%s.%s", n->db, n->coll);
            report_cell_text(s, 0, name);
            free(name);
            report_cell_text(s, 1, n->type);
            if (n->recorded)
                report_cell_int(s, 2, n->recorded_docs);
            if (n->in_archive)
                report_cell_int(s, 3, n->archive_docs);
            if (n->loaded >= 0)
                report_cell_int(s, 4, n->loaded);
            if (n->recorded && n->recorded_has_crc) {
                snprintf(crc_r, sizeof(crc_r), "%016llx", (unsigned long long)n->recorded_crc);
                report_cell_text(s, 5, crc_r);
            }
            if (n->in_archive && strcmp(n->type, "collection") == 0) {
                snprintf(crc_d, sizeof(crc_d), "%016llx", (unsigned long long)n->archive_crc);
                report_cell_text(s, 6, crc_d);
            }
            report_cell_int(s, 7, n->sampled);
            report_cell_int(s, 8, n->identical);
            report_cell_status(s, 9,
                               n->problem ? REPORT_FAILED
                               : n->loaded >= 0 || strcmp(n->type, "collection") != 0
                                   ? REPORT_PASSED
                                   : REPORT_NOT_DONE);
            report_cell_text(s, 10,
                             n->problem                           ? n->problem
                             : strcmp(n->type, "collection") != 0 ? "carries no documents"
                                                                  : "");
        }
    if (!valid)
        goto out;
    if (bad) {
        const struct ns_check *first = NULL;

        for (size_t i = 0; i < l.n_ns && first == NULL; i++)
            if (l.ns[i].problem)
                first = &l.ns[i];
        report_set(s, REPORT_FAILED,
                   "%d collection(s) of the dump of %s are not what was dumped or did not load as "
                   "dumped; %s.%s: %s",
                   bad, a.date, first->db, first->coll, first->problem);
    } else if (l.load_error) {
        /* No server named at all is a restore not attempted; any other failure is one. */
        enum report_status how = uri == NULL ? REPORT_NOT_DONE : REPORT_FAILED;

        report_set(s, how,
                   "%s: the dump of %s is intact and matches what was dumped (%zu collections, "
                   "%llu documents), but it was not restored into a database: %s",
                   report_status_name(how), a.date, st.n_namespaces,
                   (unsigned long long)st.total_docs, l.load_error);
    } else {
        int64_t same = 0;

        for (size_t i = 0; i < l.n_ns; i++)
            same += l.ns[i].identical;
        report_set(s, REPORT_PASSED,
                   "the dump of %s (attempt %d, from %s) decrypted, read as mongorestore reads "
                   "it, matched what was dumped, loaded into %zu scratch database(s) with every "
                   "collection's count right, and %lld sampled documents came back byte for "
                   "byte; the scratch databases were dropped",
                   a.date, a.attempt, from->name, l.n_scratch, (long long)same);
    }
out:
    if (l.conn) {
        flush_bulk(&l);
        mongo_conn_close(l.conn);
    }
    for (size_t i = 0; i < l.n_ns; i++) {
        for (int k = 0; k < SAMPLE_PER_COLLECTION; k++)
            if (l.ns[i].samples[k])
                bson_destroy(l.ns[i].samples[k]);
        free(l.ns[i].db);
        free(l.ns[i].coll);
        free(l.ns[i].type);
        free(l.ns[i].problem);
    }
    free(l.ns);
    for (size_t i = 0; i < l.n_scratch; i++)
        free(l.scratch_dbs[i]);
    free(l.scratch_dbs);
    free(l.load_error);
    marchive_stats_free(&st);
    if (sealed >= 0)
        close(sealed);
    if (plain >= 0)
        close(plain);
    free(fetch_errors);
    free(a.remote_key);
}
