/*
 * mongo_archive.c - writes and validates mongodump's --archive format.
 *
 * An archive is a magic number, a prelude block (a header document, one
 * metadata document per collection, a terminator) and then namespace blocks:
 * a {db, collection, EOF, CRC} header, documents, a terminator. The writer
 * keeps one block buffer per collection and writes it as a block when it
 * fills, like mongodump's multiplexer; consecutive flushes of the same
 * collection continue the block that is open in the stream, so an archive of
 * collections dumped one after another has one data block per collection of
 * at most a few MiB of headers. Closing a collection always writes its data
 * block first, empty or not, then its EOF header: mongorestore needs the
 * empty block to create a view or an empty collection.
 *
 * The validator follows mongo-tools' parser.go, prelude.go and
 * demultiplexer.go: what mongorestore refuses is refused here, with the byte
 * offset and the namespace in the message.
 */
#include "mongo_archive.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define TERMINATOR 0xffffffffu
#define MIN_BSON 5

static const uint64_t crc64_table[256] = {
    0x0000000000000000ULL, 0xb32e4cbe03a75f6fULL, 0xf4843657a840a05bULL, 0x47aa7ae9abe7ff34ULL,
    0x7bd0c384ff8f5e33ULL, 0xc8fe8f3afc28015cULL, 0x8f54f5d357cffe68ULL, 0x3c7ab96d5468a107ULL,
    0xf7a18709ff1ebc66ULL, 0x448fcbb7fcb9e309ULL, 0x0325b15e575e1c3dULL, 0xb00bfde054f94352ULL,
    0x8c71448d0091e255ULL, 0x3f5f08330336bd3aULL, 0x78f572daa8d1420eULL, 0xcbdb3e64ab761d61ULL,
    0x7d9ba13851336649ULL, 0xceb5ed8652943926ULL, 0x891f976ff973c612ULL, 0x3a31dbd1fad4997dULL,
    0x064b62bcaebc387aULL, 0xb5652e02ad1b6715ULL, 0xf2cf54eb06fc9821ULL, 0x41e11855055bc74eULL,
    0x8a3a2631ae2dda2fULL, 0x39146a8fad8a8540ULL, 0x7ebe1066066d7a74ULL, 0xcd905cd805ca251bULL,
    0xf1eae5b551a2841cULL, 0x42c4a90b5205db73ULL, 0x056ed3e2f9e22447ULL, 0xb6409f5cfa457b28ULL,
    0xfb374270a266cc92ULL, 0x48190ecea1c193fdULL, 0x0fb374270a266cc9ULL, 0xbc9d3899098133a6ULL,
    0x80e781f45de992a1ULL, 0x33c9cd4a5e4ecdceULL, 0x7463b7a3f5a932faULL, 0xc74dfb1df60e6d95ULL,
    0x0c96c5795d7870f4ULL, 0xbfb889c75edf2f9bULL, 0xf812f32ef538d0afULL, 0x4b3cbf90f69f8fc0ULL,
    0x774606fda2f72ec7ULL, 0xc4684a43a15071a8ULL, 0x83c230aa0ab78e9cULL, 0x30ec7c140910d1f3ULL,
    0x86ace348f355aadbULL, 0x3582aff6f0f2f5b4ULL, 0x7228d51f5b150a80ULL, 0xc10699a158b255efULL,
    0xfd7c20cc0cdaf4e8ULL, 0x4e526c720f7dab87ULL, 0x09f8169ba49a54b3ULL, 0xbad65a25a73d0bdcULL,
    0x710d64410c4b16bdULL, 0xc22328ff0fec49d2ULL, 0x85895216a40bb6e6ULL, 0x36a71ea8a7ace989ULL,
    0x0adda7c5f3c4488eULL, 0xb9f3eb7bf06317e1ULL, 0xfe5991925b84e8d5ULL, 0x4d77dd2c5823b7baULL,
    0x64b62bcaebc387a1ULL, 0xd7986774e864d8ceULL, 0x90321d9d438327faULL, 0x231c512340247895ULL,
    0x1f66e84e144cd992ULL, 0xac48a4f017eb86fdULL, 0xebe2de19bc0c79c9ULL, 0x58cc92a7bfab26a6ULL,
    0x9317acc314dd3bc7ULL, 0x2039e07d177a64a8ULL, 0x67939a94bc9d9b9cULL, 0xd4bdd62abf3ac4f3ULL,
    0xe8c76f47eb5265f4ULL, 0x5be923f9e8f53a9bULL, 0x1c4359104312c5afULL, 0xaf6d15ae40b59ac0ULL,
    0x192d8af2baf0e1e8ULL, 0xaa03c64cb957be87ULL, 0xeda9bca512b041b3ULL, 0x5e87f01b11171edcULL,
    0x62fd4976457fbfdbULL, 0xd1d305c846d8e0b4ULL, 0x96797f21ed3f1f80ULL, 0x2557339fee9840efULL,
    0xee8c0dfb45ee5d8eULL, 0x5da24145464902e1ULL, 0x1a083bacedaefdd5ULL, 0xa9267712ee09a2baULL,
    0x955cce7fba6103bdULL, 0x267282c1b9c65cd2ULL, 0x61d8f8281221a3e6ULL, 0xd2f6b4961186fc89ULL,
    0x9f8169ba49a54b33ULL, 0x2caf25044a02145cULL, 0x6b055fede1e5eb68ULL, 0xd82b1353e242b407ULL,
    0xe451aa3eb62a1500ULL, 0x577fe680b58d4a6fULL, 0x10d59c691e6ab55bULL, 0xa3fbd0d71dcdea34ULL,
    0x6820eeb3b6bbf755ULL, 0xdb0ea20db51ca83aULL, 0x9ca4d8e41efb570eULL, 0x2f8a945a1d5c0861ULL,
    0x13f02d374934a966ULL, 0xa0de61894a93f609ULL, 0xe7741b60e174093dULL, 0x545a57dee2d35652ULL,
    0xe21ac88218962d7aULL, 0x5134843c1b317215ULL, 0x169efed5b0d68d21ULL, 0xa5b0b26bb371d24eULL,
    0x99ca0b06e7197349ULL, 0x2ae447b8e4be2c26ULL, 0x6d4e3d514f59d312ULL, 0xde6071ef4cfe8c7dULL,
    0x15bb4f8be788911cULL, 0xa6950335e42fce73ULL, 0xe13f79dc4fc83147ULL, 0x521135624c6f6e28ULL,
    0x6e6b8c0f1807cf2fULL, 0xdd45c0b11ba09040ULL, 0x9aefba58b0476f74ULL, 0x29c1f6e6b3e0301bULL,
    0xc96c5795d7870f42ULL, 0x7a421b2bd420502dULL, 0x3de861c27fc7af19ULL, 0x8ec62d7c7c60f076ULL,
    0xb2bc941128085171ULL, 0x0192d8af2baf0e1eULL, 0x4638a2468048f12aULL, 0xf516eef883efae45ULL,
    0x3ecdd09c2899b324ULL, 0x8de39c222b3eec4bULL, 0xca49e6cb80d9137fULL, 0x7967aa75837e4c10ULL,
    0x451d1318d716ed17ULL, 0xf6335fa6d4b1b278ULL, 0xb199254f7f564d4cULL, 0x02b769f17cf11223ULL,
    0xb4f7f6ad86b4690bULL, 0x07d9ba1385133664ULL, 0x4073c0fa2ef4c950ULL, 0xf35d8c442d53963fULL,
    0xcf273529793b3738ULL, 0x7c0979977a9c6857ULL, 0x3ba3037ed17b9763ULL, 0x888d4fc0d2dcc80cULL,
    0x435671a479aad56dULL, 0xf0783d1a7a0d8a02ULL, 0xb7d247f3d1ea7536ULL, 0x04fc0b4dd24d2a59ULL,
    0x3886b22086258b5eULL, 0x8ba8fe9e8582d431ULL, 0xcc0284772e652b05ULL, 0x7f2cc8c92dc2746aULL,
    0x325b15e575e1c3d0ULL, 0x8175595b76469cbfULL, 0xc6df23b2dda1638bULL, 0x75f16f0cde063ce4ULL,
    0x498bd6618a6e9de3ULL, 0xfaa59adf89c9c28cULL, 0xbd0fe036222e3db8ULL, 0x0e21ac88218962d7ULL,
    0xc5fa92ec8aff7fb6ULL, 0x76d4de52895820d9ULL, 0x317ea4bb22bfdfedULL, 0x8250e80521188082ULL,
    0xbe2a516875702185ULL, 0x0d041dd676d77eeaULL, 0x4aae673fdd3081deULL, 0xf9802b81de97deb1ULL,
    0x4fc0b4dd24d2a599ULL, 0xfceef8632775faf6ULL, 0xbb44828a8c9205c2ULL, 0x086ace348f355aadULL,
    0x34107759db5dfbaaULL, 0x873e3be7d8faa4c5ULL, 0xc094410e731d5bf1ULL, 0x73ba0db070ba049eULL,
    0xb86133d4dbcc19ffULL, 0x0b4f7f6ad86b4690ULL, 0x4ce50583738cb9a4ULL, 0xffcb493d702be6cbULL,
    0xc3b1f050244347ccULL, 0x709fbcee27e418a3ULL, 0x3735c6078c03e797ULL, 0x841b8ab98fa4b8f8ULL,
    0xadda7c5f3c4488e3ULL, 0x1ef430e13fe3d78cULL, 0x595e4a08940428b8ULL, 0xea7006b697a377d7ULL,
    0xd60abfdbc3cbd6d0ULL, 0x6524f365c06c89bfULL, 0x228e898c6b8b768bULL, 0x91a0c532682c29e4ULL,
    0x5a7bfb56c35a3485ULL, 0xe955b7e8c0fd6beaULL, 0xaeffcd016b1a94deULL, 0x1dd181bf68bdcbb1ULL,
    0x21ab38d23cd56ab6ULL, 0x9285746c3f7235d9ULL, 0xd52f0e859495caedULL, 0x6601423b97329582ULL,
    0xd041dd676d77eeaaULL, 0x636f91d96ed0b1c5ULL, 0x24c5eb30c5374ef1ULL, 0x97eba78ec690119eULL,
    0xab911ee392f8b099ULL, 0x18bf525d915feff6ULL, 0x5f1528b43ab810c2ULL, 0xec3b640a391f4fadULL,
    0x27e05a6e926952ccULL, 0x94ce16d091ce0da3ULL, 0xd3646c393a29f297ULL, 0x604a2087398eadf8ULL,
    0x5c3099ea6de60cffULL, 0xef1ed5546e415390ULL, 0xa8b4afbdc5a6aca4ULL, 0x1b9ae303c601f3cbULL,
    0x56ed3e2f9e224471ULL, 0xe5c372919d851b1eULL, 0xa26908783662e42aULL, 0x114744c635c5bb45ULL,
    0x2d3dfdab61ad1a42ULL, 0x9e13b115620a452dULL, 0xd9b9cbfcc9edba19ULL, 0x6a978742ca4ae576ULL,
    0xa14cb926613cf817ULL, 0x1262f598629ba778ULL, 0x55c88f71c97c584cULL, 0xe6e6c3cfcadb0723ULL,
    0xda9c7aa29eb3a624ULL, 0x69b2361c9d14f94bULL, 0x2e184cf536f3067fULL, 0x9d36004b35545910ULL,
    0x2b769f17cf112238ULL, 0x9858d3a9ccb67d57ULL, 0xdff2a94067518263ULL, 0x6cdce5fe64f6dd0cULL,
    0x50a65c93309e7c0bULL, 0xe388102d33392364ULL, 0xa4226ac498dedc50ULL, 0x170c267a9b79833fULL,
    0xdcd7181e300f9e5eULL, 0x6ff954a033a8c131ULL, 0x28532e49984f3e05ULL, 0x9b7d62f79be8616aULL,
    0xa707db9acf80c06dULL, 0x14299724cc279f02ULL, 0x5383edcd67c06036ULL, 0xe0ada17364673f59ULL,
};

uint64_t marchive_crc64(uint64_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;

    crc = ~crc;
    while (len--)
        crc = crc64_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* ---------------------------------------------------------------- writer */

struct marchive_coll {
    char *db, *coll, *type;
    int started; /* has had a document: counts against concurrent_collections */
    int closed;
    uint64_t crc, docs, bytes;
    unsigned char *buf; /* documents not yet written, at most block_bound (or one document) */
    size_t len, cap;
};

enum marchive_state { MA_NEW, MA_PRELUDE, MA_DATA, MA_FINISHED, MA_FAILED };

struct marchive {
    marchive_write_fn *sink;
    void *arg;
    char *server_version, *tool_version;
    size_t block_bound;
    enum marchive_state state;
    struct marchive_coll **colls;
    size_t n_colls, cap_colls;
    struct marchive_coll *in_block; /* whose block is open in the stream (no terminator yet) */
    struct marchive_coll *last;     /* lookup cache: documents come in runs */
    size_t n_started;               /* started and not closed */
    uint64_t bytes_written;
};

struct marchive *marchive_new(marchive_write_fn *sink, void *arg, const char *server_version,
                              const char *tool_version)
{
    struct marchive *ma = util_xcalloc(1, sizeof(*ma));

    ma->sink = sink;
    ma->arg = arg;
    ma->server_version = util_xstrdup(server_version ? server_version : "");
    ma->tool_version = util_xstrdup(tool_version ? tool_version : "");
    ma->block_bound = MARCHIVE_BLOCK_BOUND;
    ma->state = MA_NEW;
    return ma;
}

void marchive_set_block_bound(struct marchive *ma, size_t bound)
{
    ma->block_bound = bound ? bound : 1;
}

uint64_t marchive_bytes_written(const struct marchive *ma)
{
    return ma ? ma->bytes_written : 0;
}

static void coll_free(struct marchive_coll *c)
{
    if (c == NULL)
        return;
    free(c->db);
    free(c->coll);
    free(c->type);
    free(c->buf);
    free(c);
}

void marchive_free(struct marchive *ma)
{
    if (ma == NULL)
        return;
    for (size_t i = 0; i < ma->n_colls; i++)
        coll_free(ma->colls[i]);
    free(ma->colls);
    free(ma->server_version);
    free(ma->tool_version);
    free(ma);
}

static int emit(struct marchive *ma, const void *buf, size_t len, struct cst_err *err)
{
    if (len == 0)
        return 0;
    if (ma->sink(ma->arg, buf, len) != 0) {
        ma->state = MA_FAILED;
        return cst_err_set(err,
                           "writing the MongoDB archive: the output refused %zu bytes at "
                           "byte %llu",
                           len, (unsigned long long)ma->bytes_written);
    }
    ma->bytes_written += len;
    return 0;
}

static int emit_bson(struct marchive *ma, const bson_t *doc, struct cst_err *err)
{
    return emit(ma, bson_get_data(doc), doc->len, err);
}

static int emit_terminator(struct marchive *ma, struct cst_err *err)
{
    unsigned char term[4];

    put_le32(term, TERMINATOR);
    return emit(ma, term, sizeof(term), err);
}

/* The state check every call starts with; names the call that came too early or late. */
static int check_state(struct marchive *ma, const char *call, struct cst_err *err)
{
    if (ma->state == MA_FAILED)
        return cst_err_set(err, "%s: the MongoDB archive writer already failed", call);
    if (ma->state == MA_FINISHED)
        return cst_err_set(err, "%s: the MongoDB archive is already finished", call);
    return 0;
}

/* Misuse or an impossible request: the writer stops, err says why. Returns -1. */
static int refuse(struct marchive *ma, struct cst_err *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct marchive *ma, struct cst_err *err, const char *fmt, ...)
{
    va_list ap;

    ma->state = MA_FAILED;
    if (err != NULL) {
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int write_magic_and_header(struct marchive *ma, struct cst_err *err)
{
    unsigned char magic[4];
    bson_t header = BSON_INITIALIZER;
    int rc;

    put_le32(magic, MARCHIVE_MAGIC);
    if (emit(ma, magic, sizeof(magic), err) != 0)
        return -1;
    /* field order and types as mongo-tools' archive.Header */
    BSON_APPEND_INT32(&header, "concurrent_collections", MARCHIVE_CONCURRENT_COLLECTIONS);
    BSON_APPEND_UTF8(&header, "version", "0.1");
    BSON_APPEND_UTF8(&header, "server_version", ma->server_version);
    BSON_APPEND_UTF8(&header, "tool_version", ma->tool_version);
    rc = emit_bson(ma, &header, err);
    bson_destroy(&header);
    if (rc == 0)
        ma->state = MA_PRELUDE;
    return rc;
}

static struct marchive_coll *find_coll(struct marchive *ma, const char *db, const char *coll)
{
    if (ma->last && strcmp(ma->last->coll, coll) == 0 && strcmp(ma->last->db, db) == 0)
        return ma->last;
    for (size_t i = 0; i < ma->n_colls; i++) {
        struct marchive_coll *c = ma->colls[i];

        if (strcmp(c->coll, coll) == 0 && strcmp(c->db, db) == 0)
            return ma->last = c;
    }
    return NULL;
}

int marchive_collection_crc(struct marchive *ma, const char *db, const char *coll, uint64_t *crc)
{
    struct marchive_coll *c = find_coll(ma, db, coll);

    if (c == NULL)
        return -1;
    *crc = c->crc;
    return 0;
}

int marchive_add_collection(struct marchive *ma, const char *db, const char *coll, const char *type,
                            const char *metadata_json, struct cst_err *err)
{
    struct marchive_coll *c;
    bson_t meta = BSON_INITIALIZER;
    int rc;

    if (check_state(ma, "marchive_add_collection", err) != 0)
        return -1;
    if (ma->state == MA_DATA)
        return refuse(ma, err,
                      "adding %s.%s to the MongoDB archive: the prelude is already "
                      "written (add every collection before the data)",
                      db, coll);
    if (db == NULL || coll == NULL || coll[0] == '\0' || strchr(db, '.') != NULL)
        return refuse(ma, err, "adding \"%s.%s\" to the MongoDB archive: not a namespace",
                      db ? db : "", coll ? coll : "");
    if (find_coll(ma, db, coll) != NULL)
        return refuse(ma, err, "adding %s.%s to the MongoDB archive: already added", db, coll);
    if (ma->state == MA_NEW && write_magic_and_header(ma, err) != 0)
        return -1;

    /* field order and types as mongo-tools' archive.CollectionMetadata */
    BSON_APPEND_UTF8(&meta, "db", db);
    BSON_APPEND_UTF8(&meta, "collection", coll);
    BSON_APPEND_UTF8(&meta, "metadata", metadata_json ? metadata_json : "");
    BSON_APPEND_INT32(&meta, "size", 0);
    BSON_APPEND_UTF8(&meta, "type", type ? type : "collection");
    rc = emit_bson(ma, &meta, err);
    bson_destroy(&meta);
    if (rc != 0)
        return -1;

    c = util_xcalloc(1, sizeof(*c));
    c->db = util_xstrdup(db);
    c->coll = util_xstrdup(coll);
    c->type = util_xstrdup(type ? type : "collection");
    if (ma->n_colls == ma->cap_colls) {
        ma->cap_colls = ma->cap_colls ? 2 * ma->cap_colls : 16;
        ma->colls = util_xrealloc(ma->colls, ma->cap_colls * sizeof(*ma->colls));
    }
    ma->colls[ma->n_colls++] = c;
    return 0;
}

int marchive_begin_data(struct marchive *ma, struct cst_err *err)
{
    if (check_state(ma, "marchive_begin_data", err) != 0)
        return -1;
    if (ma->state == MA_DATA)
        return 0;
    if (ma->state == MA_NEW && write_magic_and_header(ma, err) != 0)
        return -1;
    if (emit_terminator(ma, err) != 0)
        return -1;
    ma->state = MA_DATA;
    return 0;
}

static int emit_ns_header(struct marchive *ma, const struct marchive_coll *c, int eof, uint64_t crc,
                          struct cst_err *err)
{
    bson_t h = BSON_INITIALIZER;
    int rc;

    /* field order and types as mongo-tools' archive.NamespaceHeader */
    BSON_APPEND_UTF8(&h, "db", c->db);
    BSON_APPEND_UTF8(&h, "collection", c->coll);
    BSON_APPEND_BOOL(&h, "EOF", eof);
    BSON_APPEND_INT64(&h, "CRC", (int64_t)crc);
    rc = emit_bson(ma, &h, err);
    bson_destroy(&h);
    return rc;
}

/* Write c's buffered documents, opening (or continuing) its block in the stream. */
static int flush_coll(struct marchive *ma, struct marchive_coll *c, int even_if_empty,
                      struct cst_err *err)
{
    if (c->len == 0 && !even_if_empty)
        return 0;
    if (ma->in_block != c) {
        if (ma->in_block != NULL && emit_terminator(ma, err) != 0)
            return -1;
        ma->in_block = NULL;
        if (emit_ns_header(ma, c, 0, 0, err) != 0)
            return -1;
        ma->in_block = c;
    }
    if (emit(ma, c->buf, c->len, err) != 0)
        return -1;
    c->len = 0;
    return 0;
}

static struct marchive_coll *data_coll(struct marchive *ma, const char *call, const char *db,
                                       const char *coll, struct cst_err *err)
{
    struct marchive_coll *c;

    if (check_state(ma, call, err) != 0)
        return NULL;
    if (ma->state != MA_DATA) {
        refuse(ma, err, "%s: %s: marchive_begin_data was not called", call, db);
        return NULL;
    }
    c = find_coll(ma, db, coll);
    if (c == NULL) {
        refuse(ma, err,
               "%s.%s is not in the MongoDB archive's prelude "
               "(marchive_add_collection)",
               db, coll);
        return NULL;
    }
    if (c->closed) {
        refuse(ma, err, "%s.%s is already closed in the MongoDB archive", db, coll);
        return NULL;
    }
    return c;
}

int marchive_write_doc(struct marchive *ma, const char *db, const char *coll, const bson_t *doc,
                       struct cst_err *err)
{
    struct marchive_coll *c = data_coll(ma, "marchive_write_doc", db, coll, err);
    const uint8_t *data;
    size_t len;

    if (c == NULL)
        return -1;
    data = bson_get_data(doc);
    len = doc->len;
    if (len < MIN_BSON || len > MARCHIVE_MAX_BSON) {
        ma->state = MA_FAILED;
        return cst_err_set(err,
                           "a document of %s.%s is %zu bytes, more than mongorestore "
                           "reads (%d)",
                           db, coll, len, MARCHIVE_MAX_BSON);
    }
    if (!c->started) {
        if (ma->n_started >= MARCHIVE_CONCURRENT_COLLECTIONS)
            return refuse(ma, err,
                          "writing %s.%s: more collections open at once than the "
                          "archive header declares; close one first",
                          db, coll);
        c->started = 1;
        ma->n_started++;
    }
    if (c->len > 0 && c->len + len > ma->block_bound && flush_coll(ma, c, 0, err) != 0)
        return -1;
    if (c->len + len > c->cap) {
        size_t want = c->len + len > ma->block_bound ? c->len + len : ma->block_bound;

        c->buf = util_xrealloc(c->buf, want);
        c->cap = want;
    }
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    c->crc = marchive_crc64(c->crc, data, len);
    c->docs++;
    c->bytes += len;
    return 0;
}

int marchive_end_collection(struct marchive *ma, const char *db, const char *coll,
                            struct cst_err *err)
{
    struct marchive_coll *c = data_coll(ma, "marchive_end_collection", db, coll, err);

    if (c == NULL)
        return -1;
    if (flush_coll(ma, c, 1, err) != 0)
        return -1;
    if (emit_terminator(ma, err) != 0)
        return -1;
    ma->in_block = NULL;
    if (emit_ns_header(ma, c, 1, c->crc, err) != 0 || emit_terminator(ma, err) != 0)
        return -1;
    c->closed = 1;
    if (c->started)
        ma->n_started--;
    free(c->buf);
    c->buf = NULL;
    c->cap = 0;
    return 0;
}

int marchive_finish(struct marchive *ma, struct cst_err *err)
{
    if (check_state(ma, "marchive_finish", err) != 0)
        return -1;
    if (ma->state != MA_DATA && marchive_begin_data(ma, err) != 0)
        return -1;
    for (size_t i = 0; i < ma->n_colls; i++) {
        if (!ma->colls[i]->closed)
            return refuse(ma, err,
                          "finishing the MongoDB archive: %s.%s was never closed "
                          "(mongorestore would refuse the archive)",
                          ma->colls[i]->db, ma->colls[i]->coll);
    }
    ma->state = MA_FINISHED;
    return 0;
}

/* ------------------------------------------------------------- validator */

enum ns_status { NS_UNOPENED, NS_OPENED, NS_CLOSED };

struct vns {
    char *data_coll; /* the collection its blocks name (timeseries: system.buckets.X) */
    enum ns_status status;
    int must_close; /* mongorestore waits for its EOF (all but timeseries) */
};

struct validator {
    marchive_read_fn *read_fn;
    void *arg;
    uint64_t off;      /* bytes consumed */
    uint64_t item_off; /* where the item in buf started */
    unsigned char *buf;
    size_t cap;
    struct marchive_stats *st;
    struct vns *ns;
    size_t cap_ns;
    size_t last;
    marchive_doc_fn *on_doc; /* each document as it is read (marchive_validate_docs) */
    void *doc_arg;
};

/* Most namespaces an archive may list; more is not a dump but an attack on memory. */
#define MAX_NAMESPACES 1000000

enum item { ITEM_END, ITEM_TERM, ITEM_BSON };

/* Read exactly len bytes. Returns len, or the smaller count at the end of the input; -1 on error.
 */
static ssize_t read_full(struct validator *v, void *buf, size_t len, struct cst_err *err)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = v->read_fn(v->arg, (char *)buf + got, len - got);

        if (n < 0)
            return cst_err_set(err, "reading the MongoDB archive at byte %llu failed",
                               (unsigned long long)(v->off + got));
        if (n == 0)
            break;
        got += (size_t)n;
    }
    v->off += got;
    return (ssize_t)got;
}

/*
 * The next item: a terminator, a BSON document (into v->buf, validated), or
 * the end of the input exactly here. A partial item is truncation.
 */
static int read_item(struct validator *v, enum item *what, bson_t *doc, struct cst_err *err)
{
    unsigned char len_bytes[4];
    ssize_t n;
    uint32_t len;

    *what = ITEM_END;
    v->item_off = v->off;
    n = read_full(v, len_bytes, 4, err);
    if (n < 0)
        return -1;
    if (n == 0) {
        *what = ITEM_END;
        return 0;
    }
    if (n < 4)
        return cst_err_set(err, "MongoDB archive truncated at byte %llu (in a length)",
                           (unsigned long long)v->off);
    len = get_le32(len_bytes);
    if (len == TERMINATOR) {
        *what = ITEM_TERM;
        return 0;
    }
    if (len < MIN_BSON || len > MARCHIVE_MAX_BSON)
        return cst_err_set(err,
                           "MongoDB archive corrupt at byte %llu: %u is neither a BSON "
                           "length nor a terminator",
                           (unsigned long long)v->item_off, len);
    if (v->cap < len) {
        v->buf = util_xrealloc(v->buf, len);
        v->cap = len;
    }
    memcpy(v->buf, len_bytes, 4);
    n = read_full(v, v->buf + 4, len - 4, err);
    if (n < 0)
        return -1;
    if ((size_t)n < len - 4)
        return cst_err_set(err,
                           "MongoDB archive truncated at byte %llu (in a %u-byte document "
                           "starting at byte %llu)",
                           (unsigned long long)v->off, len, (unsigned long long)v->item_off);
    if (v->buf[len - 1] != 0 || !bson_init_static(doc, v->buf, len) ||
        !bson_validate(doc, BSON_VALIDATE_NONE, NULL))
        return cst_err_set(err, "MongoDB archive corrupt at byte %llu: not a BSON document",
                           (unsigned long long)v->item_off);
    *what = ITEM_BSON;
    return 0;
}

static int copy_string(const bson_iter_t *it, char *out, size_t outlen)
{
    uint32_t len;
    const char *s;

    if (!BSON_ITER_HOLDS_UTF8(it))
        return -1;
    s = bson_iter_utf8(it, &len);
    snprintf(out, outlen, "%s", s);
    return 0;
}

/* mongorestore >= 100.16 reads server_version as X.Y.Z with an optional -... or +... suffix. */
static int version_ok(const char *s)
{
    int parts = 0;

    for (;;) {
        if (!isdigit((unsigned char)*s))
            return 0;
        while (isdigit((unsigned char)*s))
            s++;
        parts++;
        if (parts == 3)
            return *s == '\0' || *s == '-' || *s == '+';
        if (*s != '.')
            return 0;
        s++;
    }
}

static int parse_archive_header(struct validator *v, const bson_t *doc, struct cst_err *err)
{
    struct marchive_stats *st = v->st;
    bson_iter_t it;
    int have_version = 0;

    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        int bad = 0;

        if (strcmp(key, "concurrent_collections") == 0) {
            if (BSON_ITER_HOLDS_INT32(&it))
                st->concurrent_collections = bson_iter_int32(&it);
            else if (BSON_ITER_HOLDS_INT64(&it) && bson_iter_int64(&it) >= INT32_MIN &&
                     bson_iter_int64(&it) <= INT32_MAX)
                st->concurrent_collections = (int32_t)bson_iter_int64(&it);
            else
                bad = 1;
        } else if (strcmp(key, "version") == 0) {
            bad = copy_string(&it, st->format_version, sizeof(st->format_version));
        } else if (strcmp(key, "server_version") == 0) {
            bad = copy_string(&it, st->server_version, sizeof(st->server_version));
            have_version = !bad;
        } else if (strcmp(key, "tool_version") == 0) {
            bad = copy_string(&it, st->tool_version, sizeof(st->tool_version));
        }
        if (bad)
            return cst_err_set(err, "MongoDB archive header: field \"%s\" has the wrong type", key);
    }
    if (!have_version || !version_ok(st->server_version))
        return cst_err_set(err,
                           "MongoDB archive header: server_version \"%s\" is not X.Y.Z "
                           "(mongorestore refuses it)",
                           st->server_version);
    return 0;
}

static struct vns *find_ns(struct validator *v, const char *db, const char *coll)
{
    struct marchive_stats *st = v->st;

    if (v->last < st->n_namespaces && strcmp(v->ns[v->last].data_coll, coll) == 0 &&
        strcmp(st->namespaces[v->last].db, db) == 0)
        return &v->ns[v->last];
    for (size_t i = 0; i < st->n_namespaces; i++) {
        if (strcmp(v->ns[i].data_coll, coll) == 0 && strcmp(st->namespaces[i].db, db) == 0) {
            v->last = i;
            return &v->ns[i];
        }
    }
    return NULL;
}

/* Before 8.3 a timeseries collection's data lives in system.buckets.<name>. */
static int buckets_apart(const char *server_version)
{
    unsigned major = 0, minor = 0;

    sscanf(server_version, "%u.%u", &major, &minor);
    return major < 8 || (major == 8 && minor < 3);
}

static int parse_metadata_entry(struct validator *v, const bson_t *doc, struct cst_err *err)
{
    struct marchive_stats *st = v->st;
    const char *db = NULL, *coll = NULL, *type = "", *meta = NULL;
    struct marchive_ns_stats *ns;
    bson_iter_t it;
    uint32_t len;

    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const char **slot = NULL;

        if (strcmp(key, "db") == 0)
            slot = &db;
        else if (strcmp(key, "collection") == 0)
            slot = &coll;
        else if (strcmp(key, "metadata") == 0)
            slot = &meta;
        else if (strcmp(key, "type") == 0)
            slot = &type;
        else if (strcmp(key, "size") == 0) {
            if (!BSON_ITER_HOLDS_INT32(&it) && !BSON_ITER_HOLDS_INT64(&it))
                return cst_err_set(err,
                                   "MongoDB archive prelude at byte %llu: size is not an "
                                   "integer",
                                   (unsigned long long)v->item_off);
            continue;
        }
        if (slot == NULL)
            continue;
        if (!BSON_ITER_HOLDS_UTF8(&it))
            return cst_err_set(err,
                               "MongoDB archive prelude at byte %llu: field \"%s\" is not "
                               "a string",
                               (unsigned long long)v->item_off, key);
        *slot = bson_iter_utf8(&it, &len);
    }
    if (db == NULL || coll == NULL || coll[0] == '\0')
        return cst_err_set(err,
                           "MongoDB archive prelude at byte %llu: an entry without db or "
                           "collection",
                           (unsigned long long)v->item_off);
    if (meta != NULL && meta[0] != '\0') {
        bson_t parsed;
        bson_error_t jerr;
        bson_iter_t ix;

        if (!bson_init_from_json(&parsed, meta, -1, &jerr))
            return cst_err_set(err,
                               "MongoDB archive prelude: the metadata of %s.%s is not "
                               "extended JSON: %s",
                               db, coll, jerr.message);
        if (bson_iter_init_find(&ix, &parsed, "indexes") && !BSON_ITER_HOLDS_ARRAY(&ix)) {
            bson_destroy(&parsed);
            return cst_err_set(err,
                               "MongoDB archive prelude: the metadata of %s.%s has "
                               "\"indexes\" that is not an array",
                               db, coll);
        }
        bson_destroy(&parsed);
    }
    if (st->n_namespaces >= MAX_NAMESPACES)
        return cst_err_set(err, "MongoDB archive prelude lists more than %d collections",
                           MAX_NAMESPACES);
    {
        const char *data_name = coll;
        char *buckets = NULL;
        struct vns *dup;

        if (strcmp(type, "timeseries") == 0 && buckets_apart(st->server_version))
            data_name = buckets = util_printf("system.buckets.%s", coll);
        dup = find_ns(v, db, data_name);
        if (dup != NULL) {
            free(buckets);
            return cst_err_set(err, "MongoDB archive prelude lists %s.%s twice", db, coll);
        }
        if (st->n_namespaces == v->cap_ns) {
            v->cap_ns = v->cap_ns ? 2 * v->cap_ns : 16;
            st->namespaces = util_xrealloc(st->namespaces, v->cap_ns * sizeof(*st->namespaces));
            v->ns = util_xrealloc(v->ns, v->cap_ns * sizeof(*v->ns));
        }
        ns = &st->namespaces[st->n_namespaces];
        memset(ns, 0, sizeof(*ns));
        ns->db = util_xstrdup(db);
        ns->coll = util_xstrdup(coll);
        ns->type = util_xstrdup(type);
        v->ns[st->n_namespaces].data_coll = buckets ? buckets : util_xstrdup(coll);
        v->ns[st->n_namespaces].status = NS_UNOPENED;
        v->ns[st->n_namespaces].must_close = strcmp(type, "timeseries") != 0;
        st->n_namespaces++;
    }
    return 0;
}

static int read_prelude(struct validator *v, struct cst_err *err)
{
    unsigned char magic[4];
    enum item what;
    bson_t doc;
    ssize_t n = read_full(v, magic, 4, err);

    if (n < 0)
        return -1;
    if (n < 4 || get_le32(magic) != MARCHIVE_MAGIC)
        return cst_err_set(err, "not a mongodump archive: bad magic number (want 6d e2 99 81)");
    if (read_item(v, &what, &doc, err) != 0)
        return -1;
    if (what != ITEM_BSON)
        return cst_err_set(err, "MongoDB archive %s at byte %llu: no header after the magic",
                           what == ITEM_END ? "truncated" : "corrupt",
                           (unsigned long long)v->item_off);
    if (parse_archive_header(v, &doc, err) != 0)
        return -1;
    for (;;) {
        if (read_item(v, &what, &doc, err) != 0)
            return -1;
        if (what == ITEM_END)
            return cst_err_set(err, "MongoDB archive truncated at byte %llu (in the prelude)",
                               (unsigned long long)v->off);
        if (what == ITEM_TERM)
            return 0;
        if (parse_metadata_entry(v, &doc, err) != 0)
            return -1;
    }
}

/* A block header: exactly {db: string, collection: string, EOF: bool, CRC: int64}. */
static int parse_ns_header(struct validator *v, const bson_t *doc, const char **db,
                           const char **coll, int *eof, uint64_t *crc, struct cst_err *err)
{
    bson_iter_t it;
    uint32_t len;

    *db = "";
    *coll = "";
    *eof = 0;
    *crc = 0;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);

        if (strcmp(key, "db") == 0 && BSON_ITER_HOLDS_UTF8(&it))
            *db = bson_iter_utf8(&it, &len);
        else if (strcmp(key, "collection") == 0 && BSON_ITER_HOLDS_UTF8(&it))
            *coll = bson_iter_utf8(&it, &len);
        else if (strcmp(key, "EOF") == 0 && BSON_ITER_HOLDS_BOOL(&it))
            *eof = bson_iter_bool(&it);
        else if (strcmp(key, "CRC") == 0 && BSON_ITER_HOLDS_INT64(&it))
            *crc = (uint64_t)bson_iter_int64(&it);
        else
            return cst_err_set(err,
                               "MongoDB archive corrupt at byte %llu: a block header with "
                               "%s field \"%s\"",
                               (unsigned long long)v->item_off,
                               (strcmp(key, "db") == 0 || strcmp(key, "collection") == 0 ||
                                strcmp(key, "EOF") == 0 || strcmp(key, "CRC") == 0)
                                   ? "a mistyped"
                                   : "an unknown",
                               key);
    }
    if ((*coll)[0] == '\0')
        return cst_err_set(err,
                           "MongoDB archive corrupt at byte %llu: a block header without "
                           "a collection",
                           (unsigned long long)v->item_off);
    return 0;
}

static int read_blocks(struct validator *v, struct cst_err *err)
{
    struct marchive_stats *st = v->st;

    for (;;) {
        struct marchive_ns_stats *ns;
        struct vns *vn;
        const char *db, *coll;
        enum item what;
        uint64_t crc;
        bson_t doc;
        int eof;
        size_t idx;

        if (read_item(v, &what, &doc, err) != 0)
            return -1;
        if (what == ITEM_END)
            return 0;
        if (what == ITEM_TERM)
            return cst_err_set(err,
                               "MongoDB archive corrupt at byte %llu: consecutive "
                               "terminators (a block without a header)",
                               (unsigned long long)v->item_off);
        if (parse_ns_header(v, &doc, &db, &coll, &eof, &crc, err) != 0)
            return -1;
        vn = find_ns(v, db, coll);
        if (vn == NULL)
            return cst_err_set(err,
                               "MongoDB archive corrupt at byte %llu: data for %s.%s, "
                               "which the prelude does not list",
                               (unsigned long long)v->item_off, db, coll);
        idx = (size_t)(vn - v->ns);
        ns = &st->namespaces[idx];
        if (vn->status == NS_CLOSED)
            return cst_err_set(err,
                               "MongoDB archive corrupt at byte %llu: a block for %s.%s "
                               "after its EOF",
                               (unsigned long long)v->item_off, ns->db, vn->data_coll);
        vn->status = NS_OPENED;
        if (eof) {
            if (crc != ns->crc)
                return cst_err_set(err,
                                   "MongoDB archive corrupt: CRC mismatch for %s.%s at "
                                   "byte %llu (computed %016llx, archive says %016llx)",
                                   ns->db, vn->data_coll, (unsigned long long)v->item_off,
                                   (unsigned long long)ns->crc, (unsigned long long)crc);
            vn->status = NS_CLOSED;
            ns->closed = 1;
        } else {
            ns->blocks++;
        }
        for (;;) {
            if (read_item(v, &what, &doc, err) != 0)
                return -1;
            if (what == ITEM_END)
                return cst_err_set(err,
                                   "MongoDB archive truncated at byte %llu (in a block of "
                                   "%s.%s)",
                                   (unsigned long long)v->off, ns->db, vn->data_coll);
            if (what == ITEM_TERM)
                break;
            if (eof)
                return cst_err_set(err,
                                   "MongoDB archive corrupt at byte %llu: a document of "
                                   "%s.%s after its EOF header",
                                   (unsigned long long)v->item_off, ns->db, vn->data_coll);
            ns->crc = marchive_crc64(ns->crc, bson_get_data(&doc), doc.len);
            ns->docs++;
            ns->doc_bytes += doc.len;
            st->total_docs++;
            st->total_doc_bytes += doc.len;
            if (v->on_doc && v->on_doc(v->doc_arg, ns->db, vn->data_coll, &doc, err) != 0)
                return -1;
        }
    }
}

static int check_all_closed(struct validator *v, struct cst_err *err)
{
    struct marchive_stats *st = v->st;

    for (size_t i = 0; i < st->n_namespaces; i++) {
        if (v->ns[i].status == NS_OPENED)
            return cst_err_set(err,
                               "MongoDB archive ends with %s.%s still open (no EOF header; "
                               "truncated?)",
                               st->namespaces[i].db, v->ns[i].data_coll);
    }
    for (size_t i = 0; i < st->n_namespaces; i++) {
        if (v->ns[i].status == NS_UNOPENED && v->ns[i].must_close)
            return cst_err_set(err,
                               "MongoDB archive ends before %s.%s was seen (listed in the "
                               "prelude, never closed; truncated?)",
                               st->namespaces[i].db, v->ns[i].data_coll);
    }
    return 0;
}

void marchive_stats_free(struct marchive_stats *stats)
{
    if (stats == NULL)
        return;
    for (size_t i = 0; i < stats->n_namespaces; i++) {
        free(stats->namespaces[i].db);
        free(stats->namespaces[i].coll);
        free(stats->namespaces[i].type);
    }
    free(stats->namespaces);
    memset(stats, 0, sizeof(*stats));
}

int marchive_validate(marchive_read_fn *read_fn, void *arg, struct marchive_stats *out,
                      struct cst_err *err)
{
    return marchive_validate_docs(read_fn, arg, out, NULL, NULL, err);
}

int marchive_validate_docs(marchive_read_fn *read_fn, void *arg, struct marchive_stats *out,
                           marchive_doc_fn *on_doc, void *doc_arg, struct cst_err *err)
{
    struct validator v = {
        .read_fn = read_fn, .arg = arg, .st = out, .on_doc = on_doc, .doc_arg = doc_arg};
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (read_prelude(&v, err) != 0 || read_blocks(&v, err) != 0 || check_all_closed(&v, err) != 0)
        goto out;
    out->archive_bytes = v.off;
    rc = 0;
out:
    for (size_t i = 0; i < out->n_namespaces; i++)
        free(v.ns[i].data_coll);
    free(v.ns);
    free(v.buf);
    if (rc != 0)
        marchive_stats_free(out);
    return rc;
}
