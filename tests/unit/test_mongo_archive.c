/*
 * test_mongo_archive.c - agent/mongo_archive.c: CRC-64/XZ against its check
 * value and a bitwise implementation; the writer lays out mongodump's
 * archive (magic, header, prelude, data blocks, EOF headers with CRCs; an
 * empty block before the EOF of an empty collection or a view), splits a
 * collection over several blocks when its buffer fills, interleaves
 * collections, never hands the sink more than a block (or one document
 * larger than a block); the validator
 * counts documents and checks CRCs, and refuses what mongorestore refuses:
 * a flipped document byte, every truncation, bad magic, a document after an
 * EOF header, consecutive terminators, unknown or reopened namespaces,
 * malformed headers. Writer misuse is refused too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/mongo_archive.h"

/* ------------------------------------------------------------- helpers */

/* A growable byte buffer: the sink of the writer, the source of the validator. */
struct mem {
    unsigned char *p;
    size_t len, cap;
    size_t off;        /* read position */
    size_t chunk;      /* largest read answered (exercise short reads) */
    size_t max_write;  /* largest single write seen */
    size_t fail_after; /* sink refuses once len would pass this (0: never) */
};

static int mem_sink(void *arg, const void *buf, size_t len)
{
    struct mem *m = arg;

    if (m->fail_after && m->len + len > m->fail_after)
        return -1;
    if (m->len + len > m->cap) {
        m->cap = 2 * (m->len + len) + 64;
        m->p = realloc(m->p, m->cap);
        assert_non_null(m->p);
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    if (len > m->max_write)
        m->max_write = len;
    return 0;
}

static ssize_t mem_source(void *arg, void *buf, size_t len)
{
    struct mem *m = arg;
    size_t n = m->len - m->off;

    if (n > len)
        n = len;
    if (m->chunk && n > m->chunk)
        n = m->chunk;
    memcpy(buf, m->p + m->off, n);
    m->off += n;
    return (ssize_t)n;
}

static void mem_free(struct mem *m)
{
    free(m->p);
    memset(m, 0, sizeof(*m));
}

static void put_raw(struct mem *m, const void *p, size_t n)
{
    assert_int_equal(mem_sink(m, p, n), 0);
}

static void put_bson(struct mem *m, const bson_t *b)
{
    put_raw(m, bson_get_data(b), b->len);
}

static void put_term(struct mem *m)
{
    put_raw(m, "\xff\xff\xff\xff", 4);
}

static void put_magic(struct mem *m)
{
    put_raw(m, "\x6d\xe2\x99\x81", 4);
}

static void put_header(struct mem *m, const char *server_version)
{
    bson_t *h =
        BCON_NEW("concurrent_collections", BCON_INT32(4), "version", BCON_UTF8("0.1"),
                 "server_version", BCON_UTF8(server_version), "tool_version", BCON_UTF8("100.8.0"));

    put_bson(m, h);
    bson_destroy(h);
}

static void put_meta(struct mem *m, const char *db, const char *coll, const char *type)
{
    bson_t *h =
        BCON_NEW("db", BCON_UTF8(db), "collection", BCON_UTF8(coll), "metadata",
                 BCON_UTF8("{\"indexes\":[]}"), "size", BCON_INT32(0), "type", BCON_UTF8(type));

    put_bson(m, h);
    bson_destroy(h);
}

static void put_ns(struct mem *m, const char *db, const char *coll, int eof, uint64_t crc)
{
    bson_t *h = BCON_NEW("db", BCON_UTF8(db), "collection", BCON_UTF8(coll), "EOF", BCON_BOOL(eof),
                         "CRC", BCON_INT64((int64_t)crc));

    put_bson(m, h);
    bson_destroy(h);
}

/* A test document: {_id: i, coll: name, payload: "payload-<i>-xxxx..."} of about size bytes. */
static bson_t *make_doc(const char *coll, int i, size_t size)
{
    char payload[4096];
    size_t n = snprintf(payload, sizeof(payload), "payload-%s-%06d-", coll, i);

    while (n + 1 < size && n + 1 < sizeof(payload)) {
        payload[n] = (char)('a' + (i + n) % 26);
        n++;
    }
    payload[n] = '\0';
    return BCON_NEW("_id", BCON_INT32(i), "coll", BCON_UTF8(coll), "payload", BCON_UTF8(payload),
                    "amount", BCON_DOUBLE(i * 1.25));
}

/* CRC-64/XZ bit by bit, independent of the table in mongo_archive.c. */
static uint64_t crc64_bitwise(uint64_t crc, const unsigned char *p, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ ((crc & 1) ? 0xc96c5795d7870f42ULL : 0);
    }
    return ~crc;
}

static int validate(struct mem *m, struct marchive_stats *st, struct cst_err *err)
{
    m->off = 0;
    return marchive_validate(mem_source, m, st, err);
}

/* Validation must fail with a message containing want. */
static void assert_refused(struct mem *m, const char *want)
{
    struct marchive_stats st;
    struct cst_err err = {{0}};

    if (validate(m, &st, &err) == 0)
        fail_msg("archive accepted, expected an error containing \"%s\"", want);
    if (strstr(err.msg, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
    assert_int_equal(st.n_namespaces, 0); /* zeroed on failure */
}

#define N_INVOICES 40
#define N_TIMESHEETS 25

struct expected {
    uint64_t crc_invoices, crc_timesheets;
    uint64_t bytes_invoices, bytes_timesheets;
};

/*
 * billing.invoices and billing.timesheets (interleaved, several blocks each
 * with a 600-byte bound), an empty billing.adjustments and a view
 * billing.unpaid.
 */
static void write_sample(struct mem *out, struct expected *exp, size_t bound)
{
    struct cst_err err = {{0}};
    struct marchive *ma = marchive_new(mem_sink, out, "6.0.14", "custodian-test");

    memset(exp, 0, sizeof(*exp));
    marchive_set_block_bound(ma, bound);
    assert_int_equal(marchive_add_collection(ma, "billing", "invoices", "collection",
                                             "{\"indexes\":[{\"v\":{\"$numberInt\":\"2\"},"
                                             "\"key\":{\"_id\":{\"$numberInt\":\"1\"}},"
                                             "\"name\":\"_id_\"}],\"collectionName\":"
                                             "\"invoices\",\"type\":\"collection\"}",
                                             &err),
                     0);
    assert_int_equal(marchive_add_collection(ma, "billing", "timesheets", "collection",
                                             "{\"indexes\":[]}", &err),
                     0);
    assert_int_equal(marchive_add_collection(ma, "billing", "adjustments", "collection",
                                             "{\"indexes\":[]}", &err),
                     0);
    assert_int_equal(marchive_add_collection(ma, "billing", "unpaid", "view",
                                             "{\"options\":{\"viewOn\":\"invoices\"},"
                                             "\"indexes\":[]}",
                                             &err),
                     0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    for (int i = 0; i < N_INVOICES; i++) {
        bson_t *d = make_doc("invoices", i, 90 + (size_t)i * 3);

        assert_int_equal(marchive_write_doc(ma, "billing", "invoices", d, &err), 0);
        exp->crc_invoices = crc64_bitwise(exp->crc_invoices, bson_get_data(d), d->len);
        exp->bytes_invoices += d->len;
        bson_destroy(d);
        if (i < N_TIMESHEETS) {
            d = make_doc("timesheets", i, 150);
            assert_int_equal(marchive_write_doc(ma, "billing", "timesheets", d, &err), 0);
            exp->crc_timesheets = crc64_bitwise(exp->crc_timesheets, bson_get_data(d), d->len);
            exp->bytes_timesheets += d->len;
            bson_destroy(d);
        }
    }
    assert_int_equal(marchive_end_collection(ma, "billing", "timesheets", &err), 0);
    assert_int_equal(marchive_end_collection(ma, "billing", "adjustments", &err), 0);
    assert_int_equal(marchive_end_collection(ma, "billing", "invoices", &err), 0);
    assert_int_equal(marchive_end_collection(ma, "billing", "unpaid", &err), 0);
    assert_int_equal(marchive_finish(ma, &err), 0);
    assert_int_equal(marchive_bytes_written(ma), out->len);
    marchive_free(ma);
}

/* --------------------------------------------------------------- tests */

static void test_crc64(void **state)
{
    const char *check = "123456789";
    unsigned char buf[1000];
    uint64_t whole, parts = 0;

    (void)state;
    assert_true(marchive_crc64(0, check, 9) == 0x995dc9bbdf1939faULL);
    assert_true(marchive_crc64(0, "", 0) == 0);
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    whole = marchive_crc64(0, buf, sizeof(buf));
    assert_true(whole == crc64_bitwise(0, buf, sizeof(buf)));
    for (size_t at = 0; at < sizeof(buf); at += 37)
        parts = marchive_crc64(parts, buf + at, at + 37 > sizeof(buf) ? sizeof(buf) - at : 37);
    assert_true(parts == whole);
}

static void test_write_and_validate(void **state)
{
    struct mem out = {0};
    struct expected exp;
    struct marchive_stats st;
    struct cst_err err = {{0}};

    (void)state;
    write_sample(&out, &exp, 600);
    assert_true(out.max_write <= 600); /* bounded: never more than a block at once */

    out.chunk = 7; /* the source answers in short reads */
    if (validate(&out, &st, &err) != 0)
        fail_msg("validate: %s", err.msg);
    assert_string_equal(st.server_version, "6.0.14");
    assert_string_equal(st.tool_version, "custodian-test");
    assert_string_equal(st.format_version, "0.1");
    assert_int_equal(st.concurrent_collections, MARCHIVE_CONCURRENT_COLLECTIONS);
    assert_int_equal(st.n_namespaces, 4);
    assert_string_equal(st.namespaces[0].coll, "invoices");
    assert_string_equal(st.namespaces[1].coll, "timesheets");
    assert_string_equal(st.namespaces[2].coll, "adjustments");
    assert_string_equal(st.namespaces[3].coll, "unpaid");
    assert_string_equal(st.namespaces[3].type, "view");
    assert_int_equal(st.namespaces[0].docs, N_INVOICES);
    assert_int_equal(st.namespaces[1].docs, N_TIMESHEETS);
    assert_int_equal(st.namespaces[2].docs, 0);
    assert_int_equal(st.namespaces[3].docs, 0);
    assert_true(st.namespaces[0].crc == exp.crc_invoices);
    assert_true(st.namespaces[1].crc == exp.crc_timesheets);
    assert_true(st.namespaces[2].crc == 0);
    assert_int_equal(st.namespaces[0].doc_bytes, exp.bytes_invoices);
    assert_int_equal(st.namespaces[1].doc_bytes, exp.bytes_timesheets);
    /* split over several blocks, interleaved; empty ones get one (empty) block */
    assert_true(st.namespaces[0].blocks >= 5);
    assert_true(st.namespaces[1].blocks >= 3);
    assert_int_equal(st.namespaces[2].blocks, 1);
    assert_int_equal(st.namespaces[3].blocks, 1);
    for (size_t i = 0; i < st.n_namespaces; i++)
        assert_true(st.namespaces[i].closed);
    assert_int_equal(st.total_docs, N_INVOICES + N_TIMESHEETS);
    assert_int_equal(st.archive_bytes, out.len);
    marchive_stats_free(&st);
    mem_free(&out);
}

/* Byte for byte what mongodump writes for one empty collection. */
static void test_exact_layout(void **state)
{
    struct mem got = {0}, want = {0};
    struct cst_err err = {{0}};
    struct marchive *ma = marchive_new(mem_sink, &got, "7.0.2", "t");
    bson_t *h;

    (void)state;
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{\"indexes\":[]}", &err),
                     0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    assert_int_equal(marchive_end_collection(ma, "db", "c", &err), 0);
    assert_int_equal(marchive_finish(ma, &err), 0);
    marchive_free(ma);

    put_magic(&want);
    h = BCON_NEW("concurrent_collections", BCON_INT32(4), "version", BCON_UTF8("0.1"),
                 "server_version", BCON_UTF8("7.0.2"), "tool_version", BCON_UTF8("t"));
    put_bson(&want, h);
    bson_destroy(h);
    put_meta(&want, "db", "c", "collection");
    put_term(&want);
    put_ns(&want, "db", "c", 0, 0);
    put_term(&want);
    put_ns(&want, "db", "c", 1, 0);
    put_term(&want);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.p, want.p, want.len);
    mem_free(&got);
    mem_free(&want);
}

/* Locate needle in the archive; the test documents carry unique payload strings. */
static size_t find_bytes(const struct mem *m, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = 0; i + n <= m->len; i++) {
        if (memcmp(m->p + i, needle, n) == 0)
            return i;
    }
    fail_msg("\"%s\" not in the archive", needle);
    return 0;
}

static void test_flipped_byte_is_a_crc_mismatch(void **state)
{
    struct mem out = {0};
    struct expected exp;
    size_t at;

    (void)state;
    write_sample(&out, &exp, 600);
    at = find_bytes(&out, "payload-timesheets-000007-");
    out.p[at + 3] ^= 0x01; /* "payload" -> "pazload": still valid BSON */
    assert_refused(&out, "CRC mismatch for billing.timesheets");
    out.p[at + 3] ^= 0x01;
    at = find_bytes(&out, "payload-invoices-000039-");
    out.p[at + 30] ^= 0x20;
    assert_refused(&out, "CRC mismatch for billing.invoices");
    mem_free(&out);
}

static void test_every_truncation_refused(void **state)
{
    struct mem out = {0};
    struct expected exp;
    size_t full;

    (void)state;
    write_sample(&out, &exp, 600);
    full = out.len;
    for (size_t len = 0; len < full; len++) {
        struct marchive_stats st;
        struct cst_err err = {{0}};

        out.len = len;
        if (validate(&out, &st, &err) == 0)
            fail_msg("archive truncated to %zu of %zu bytes was accepted", len, full);
        if (len >= 4 && strstr(err.msg, "truncated") == NULL)
            fail_msg("truncated to %zu: \"%s\" does not say truncated", len, err.msg);
    }
    out.len = full;
    mem_free(&out);
}

static void test_bad_magic(void **state)
{
    struct mem out = {0};
    struct expected exp;

    (void)state;
    write_sample(&out, &exp, 600);
    out.p[0] = 0x6e;
    assert_refused(&out, "bad magic");
    out.len = 0;
    assert_refused(&out, "bad magic");
    mem_free(&out);
}

/* A prelude listing billing.c, then whatever the test appends. */
static void start_archive(struct mem *m)
{
    memset(m, 0, sizeof(*m));
    put_magic(m);
    put_header(m, "6.0.14");
    put_meta(m, "billing", "c", "collection");
    put_term(m);
}

static void test_doc_after_eof(void **state)
{
    struct mem m;
    bson_t *d = make_doc("c", 1, 50);

    (void)state;
    start_archive(&m);
    put_ns(&m, "billing", "c", 0, 0);
    put_bson(&m, d);
    put_term(&m);
    put_ns(&m, "billing", "c", 1, crc64_bitwise(0, bson_get_data(d), d->len));
    put_bson(&m, d);
    put_term(&m);
    assert_refused(&m, "a document of billing.c after its EOF header");
    mem_free(&m);

    /* the same archive without the stray document is fine */
    start_archive(&m);
    put_ns(&m, "billing", "c", 0, 0);
    put_bson(&m, d);
    put_term(&m);
    put_ns(&m, "billing", "c", 1, crc64_bitwise(0, bson_get_data(d), d->len));
    put_term(&m);
    {
        struct marchive_stats st;
        struct cst_err err = {{0}};

        if (validate(&m, &st, &err) != 0)
            fail_msg("validate: %s", err.msg);
        assert_int_equal(st.namespaces[0].docs, 1);
        marchive_stats_free(&st);
    }
    mem_free(&m);

    /* a block for it after the EOF */
    start_archive(&m);
    put_ns(&m, "billing", "c", 1, 0);
    put_term(&m);
    put_ns(&m, "billing", "c", 0, 0);
    put_bson(&m, d);
    put_term(&m);
    assert_refused(&m, "a block for billing.c after its EOF");
    mem_free(&m);
    bson_destroy(d);
}

static void test_structure_refused(void **state)
{
    struct mem m;
    bson_t *h;

    (void)state;
    /* consecutive terminators */
    start_archive(&m);
    put_term(&m);
    assert_refused(&m, "consecutive terminators");
    mem_free(&m);

    /* a namespace the prelude does not list */
    start_archive(&m);
    put_ns(&m, "billing", "other", 1, 0);
    put_term(&m);
    assert_refused(&m, "data for billing.other, which the prelude does not list");
    mem_free(&m);

    /* never closed, never seen */
    start_archive(&m);
    assert_refused(&m, "ends before billing.c was seen");
    mem_free(&m);
    start_archive(&m);
    put_ns(&m, "billing", "c", 0, 0);
    put_term(&m);
    assert_refused(&m, "billing.c still open");
    mem_free(&m);

    /* a wrong CRC on an empty collection */
    start_archive(&m);
    put_ns(&m, "billing", "c", 1, 12345);
    put_term(&m);
    assert_refused(&m, "CRC mismatch");
    mem_free(&m);

    /* block header: unknown field, CRC as int32, no collection */
    start_archive(&m);
    h = BCON_NEW("db", BCON_UTF8("billing"), "collection", BCON_UTF8("c"), "EOF", BCON_BOOL(true),
                 "CRC", BCON_INT64(0), "extra", BCON_INT32(1));
    put_bson(&m, h);
    bson_destroy(h);
    put_term(&m);
    assert_refused(&m, "an unknown field \"extra\"");
    mem_free(&m);
    start_archive(&m);
    h = BCON_NEW("db", BCON_UTF8("billing"), "collection", BCON_UTF8("c"), "EOF", BCON_BOOL(true),
                 "CRC", BCON_INT32(0));
    put_bson(&m, h);
    bson_destroy(h);
    put_term(&m);
    assert_refused(&m, "a mistyped field \"CRC\"");
    mem_free(&m);
    start_archive(&m);
    put_ns(&m, "billing", "", 1, 0);
    put_term(&m);
    assert_refused(&m, "without a collection");
    mem_free(&m);

    /* lengths: too small, too large, no trailing zero */
    start_archive(&m);
    put_raw(&m, "\x03\x00\x00\x00", 4);
    assert_refused(&m, "neither a BSON length nor a terminator");
    mem_free(&m);
    start_archive(&m);
    put_raw(&m, "\x01\x00\x00\x01", 4);
    assert_refused(&m, "neither a BSON length nor a terminator");
    mem_free(&m);
    start_archive(&m);
    put_raw(&m, "\x06\x00\x00\x00\x00\x01", 6);
    assert_refused(&m, "not a BSON document");
    mem_free(&m);

    /* prelude: duplicate entry, bad server_version, metadata not JSON */
    memset(&m, 0, sizeof(m));
    put_magic(&m);
    put_header(&m, "6.0.14");
    put_meta(&m, "billing", "c", "collection");
    put_meta(&m, "billing", "c", "collection");
    put_term(&m);
    assert_refused(&m, "lists billing.c twice");
    mem_free(&m);
    memset(&m, 0, sizeof(m));
    put_magic(&m);
    put_header(&m, "6.0");
    put_term(&m);
    assert_refused(&m, "server_version \"6.0\" is not X.Y.Z");
    mem_free(&m);
    memset(&m, 0, sizeof(m));
    put_magic(&m);
    put_header(&m, "6.0.14");
    h = BCON_NEW("db", BCON_UTF8("billing"), "collection", BCON_UTF8("c"), "metadata",
                 BCON_UTF8("{\"indexes\":[}"), "size", BCON_INT32(0), "type",
                 BCON_UTF8("collection"));
    put_bson(&m, h);
    bson_destroy(h);
    put_term(&m);
    assert_refused(&m, "is not extended JSON");
    mem_free(&m);
}

/* An archive with nothing in it, and a timeseries collection (data under system.buckets). */
static void test_empty_and_timeseries(void **state)
{
    struct mem m = {0};
    struct marchive_stats st;
    struct cst_err err = {{0}};
    struct marchive *ma = marchive_new(mem_sink, &m, "5.0.3", "t");
    bson_t *d = make_doc("buckets", 1, 60);

    (void)state;
    assert_int_equal(marchive_finish(ma, &err), 0);
    marchive_free(ma);
    if (validate(&m, &st, &err) != 0)
        fail_msg("validate: %s", err.msg);
    assert_int_equal(st.n_namespaces, 0);
    marchive_stats_free(&st);
    mem_free(&m);

    memset(&m, 0, sizeof(m));
    put_magic(&m);
    put_header(&m, "6.0.14");
    put_meta(&m, "iot", "readings", "timeseries");
    put_term(&m);
    put_ns(&m, "iot", "system.buckets.readings", 0, 0);
    put_bson(&m, d);
    put_term(&m);
    put_ns(&m, "iot", "system.buckets.readings", 1, crc64_bitwise(0, bson_get_data(d), d->len));
    put_term(&m);
    if (validate(&m, &st, &err) != 0)
        fail_msg("validate: %s", err.msg);
    assert_int_equal(st.namespaces[0].docs, 1);
    assert_string_equal(st.namespaces[0].type, "timeseries");
    marchive_stats_free(&st);
    mem_free(&m);
    bson_destroy(d);
}

/* A document larger than the block bound goes out as one block of its own. */
static void test_document_larger_than_bound(void **state)
{
    struct mem m = {0};
    struct marchive_stats st;
    struct cst_err err = {{0}};
    struct marchive *ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    size_t big_len = 3 * 1024 * 1024;
    char *big = malloc(big_len + 1);
    bson_t *small = make_doc("c", 1, 100), *doc;

    (void)state;
    assert_non_null(big);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    doc = BCON_NEW("_id", BCON_INT32(2), "blob", BCON_UTF8(big));
    marchive_set_block_bound(ma, 4096);
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "c", small, &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "c", doc, &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "c", small, &err), 0);
    assert_int_equal(marchive_end_collection(ma, "db", "c", &err), 0);
    assert_int_equal(marchive_finish(ma, &err), 0);
    marchive_free(ma);
    assert_int_equal(m.max_write, doc->len);
    if (validate(&m, &st, &err) != 0)
        fail_msg("validate: %s", err.msg);
    assert_int_equal(st.namespaces[0].docs, 3);
    assert_int_equal(st.namespaces[0].doc_bytes, doc->len + 2 * small->len);
    marchive_stats_free(&st);
    mem_free(&m);
    bson_destroy(doc);
    bson_destroy(small);
    free(big);
}

static void test_writer_misuse(void **state)
{
    struct mem m = {0};
    struct cst_err err = {{0}};
    struct marchive *ma;
    bson_t *d = make_doc("c", 1, 40);
    char name[8];

    (void)state;
    /* data before begin_data; unknown collection; after end; add after begin */
    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), -1);
    assert_non_null(strstr(err.msg, "already added"));
    marchive_free(ma);

    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "c", d, &err), -1);
    assert_non_null(strstr(err.msg, "marchive_begin_data was not called"));
    /* a failed writer refuses everything after */
    assert_int_equal(marchive_begin_data(ma, &err), -1);
    assert_non_null(strstr(err.msg, "already failed"));
    marchive_free(ma);

    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    assert_int_equal(marchive_add_collection(ma, "db", "d", "collection", "{}", &err), -1);
    assert_non_null(strstr(err.msg, "prelude is already written"));
    marchive_free(ma);

    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "x", d, &err), -1);
    assert_non_null(strstr(err.msg, "db.x is not in the MongoDB archive's prelude"));
    marchive_free(ma);

    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "c", d, &err), 0);
    assert_int_equal(marchive_end_collection(ma, "db", "c", &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "c", d, &err), -1);
    assert_non_null(strstr(err.msg, "already closed"));
    marchive_free(ma);

    /* finishing with a collection open */
    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    assert_int_equal(marchive_write_doc(ma, "db", "c", d, &err), 0);
    assert_int_equal(marchive_finish(ma, &err), -1);
    assert_non_null(strstr(err.msg, "db.c was never closed"));
    marchive_free(ma);

    /* more collections open at once than the header declares */
    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    for (int i = 0; i <= MARCHIVE_CONCURRENT_COLLECTIONS; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        assert_int_equal(marchive_add_collection(ma, "db", name, "collection", "{}", &err), 0);
    }
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    for (int i = 0; i < MARCHIVE_CONCURRENT_COLLECTIONS; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        assert_int_equal(marchive_write_doc(ma, "db", name, d, &err), 0);
    }
    snprintf(name, sizeof(name), "c%d", MARCHIVE_CONCURRENT_COLLECTIONS);
    assert_int_equal(marchive_write_doc(ma, "db", name, d, &err), -1);
    assert_non_null(strstr(err.msg, "more collections open at once"));
    marchive_free(ma);

    /* the sink fails: the error says so, the writer stops */
    mem_free(&m);
    m.fail_after = 200;
    ma = marchive_new(mem_sink, &m, "6.0.14", "t");
    marchive_set_block_bound(ma, 100);
    assert_int_equal(marchive_add_collection(ma, "db", "c", "collection", "{}", &err), 0);
    assert_int_equal(marchive_begin_data(ma, &err), 0);
    {
        int rc = 0;

        for (int i = 0; i < 20 && rc == 0; i++)
            rc = marchive_write_doc(ma, "db", "c", d, &err);
        assert_int_equal(rc, -1);
    }
    assert_non_null(strstr(err.msg, "the output refused"));
    assert_int_equal(marchive_end_collection(ma, "db", "c", &err), -1);
    assert_non_null(strstr(err.msg, "already failed"));
    marchive_free(ma);
    marchive_free(NULL);
    mem_free(&m);
    bson_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc64),
        cmocka_unit_test(test_write_and_validate),
        cmocka_unit_test(test_exact_layout),
        cmocka_unit_test(test_flipped_byte_is_a_crc_mismatch),
        cmocka_unit_test(test_every_truncation_refused),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_doc_after_eof),
        cmocka_unit_test(test_structure_refused),
        cmocka_unit_test(test_empty_and_timeseries),
        cmocka_unit_test(test_document_larger_than_bound),
        cmocka_unit_test(test_writer_misuse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
