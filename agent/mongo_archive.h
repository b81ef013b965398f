/*
 * mongo_archive.h - mongodump's --archive format: a streaming writer and a
 * validator (/work/shared/docs/mongodump-archive-format.md has the format).
 *
 * The writer hands every byte to a sink callback, so the daily dump can be
 * piped into compression and encryption without touching disk. Memory stays
 * bounded: one block buffer per collection that has unflushed documents
 * (block_bound bytes, 1 MiB unless changed), never a whole collection.
 *
 * Order of calls:
 *   marchive_new
 *   marchive_add_collection   once per collection (the prelude)
 *   marchive_begin_data
 *   marchive_write_doc ... / marchive_end_collection, per collection,
 *                             interleaving allowed
 *   marchive_finish           refuses if a collection was left open
 *   marchive_free
 * After any failure the writer refuses every further call: what reached
 * the sink is not a usable archive.
 *
 * marchive_validate reads an archive back the way mongorestore does (magic,
 * prelude, blocks, terminators, CRCs, every collection closed) and counts the
 * documents of each namespace; it checks an operator's dump_command output.
 */
#ifndef CST_MONGO_ARCHIVE_H
#define CST_MONGO_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <bson/bson.h>

#include "common/err.h"

/* Little-endian 0x8199e26d, the first four bytes of every archive. */
#define MARCHIVE_MAGIC 0x8199e26du
/* Largest BSON document (and block header) mongorestore's parser accepts. */
#define MARCHIVE_MAX_BSON (16 * 1024 * 1024)
/* Documents buffered per collection before a namespace block is written. */
#define MARCHIVE_BLOCK_BOUND (1024 * 1024)
/* What mongodump writes as concurrent_collections (its default -j). */
#define MARCHIVE_CONCURRENT_COLLECTIONS 4

/* The sink: consume all len bytes; 0 on success, -1 on failure. */
typedef int marchive_write_fn(void *arg, const void *buf, size_t len);
/* The source: up to len bytes into buf; the count, 0 at the end, -1 on failure. */
typedef ssize_t marchive_read_fn(void *arg, void *buf, size_t len);

struct marchive;

/*
 * CRC-64/XZ (ECMA-182 polynomial, reflected, init and final xor all ones),
 * what Go's crc64.ECMA computes. Chain it: crc = marchive_crc64(crc, ...),
 * starting from 0. The CRC of "123456789" is 0x995dc9bbdf1939fa.
 */
uint64_t marchive_crc64(uint64_t crc, const void *buf, size_t len);

/* A writer to sink(arg, ...); nothing is written until the first call below. */
struct marchive *marchive_new(marchive_write_fn *sink, void *arg, const char *server_version,
                              const char *tool_version);
/* Test hook: flush a collection's buffer once it would pass bound bytes. */
void marchive_set_block_bound(struct marchive *ma, size_t bound);

/*
 * Add a collection to the prelude. type is listCollections' type
 * ("collection", "view", "timeseries"); metadata_json is the collection's
 * metadata.json (canonical extended JSON, see mongo_dump.c).
 */
int marchive_add_collection(struct marchive *ma, const char *db, const char *coll, const char *type,
                            const char *metadata_json, struct cst_err *err);
/* End the prelude; no collection can be added after this. */
int marchive_begin_data(struct marchive *ma, struct cst_err *err);
/* Append one document (its full bytes) to the collection's data. */
int marchive_write_doc(struct marchive *ma, const char *db, const char *coll, const bson_t *doc,
                       struct cst_err *err);
/* Flush the collection's data and close it with its CRC (views: no data). */
int marchive_end_collection(struct marchive *ma, const char *db, const char *coll,
                            struct cst_err *err);
/* Check that every collection was closed; the archive is complete. */
int marchive_finish(struct marchive *ma, struct cst_err *err);
/* The CRC-64/XZ of the documents written for db.coll so far (its EOF header's CRC once it
 * is closed); -1 if the archive has no such collection. */
int marchive_collection_crc(struct marchive *ma, const char *db, const char *coll, uint64_t *crc);
/* Bytes handed to the sink so far. */
uint64_t marchive_bytes_written(const struct marchive *ma);
void marchive_free(struct marchive *ma);

struct marchive_ns_stats {
    char *db, *coll, *type;
    uint64_t blocks;    /* data blocks (EOF false headers) */
    uint64_t docs;      /* documents in the data blocks */
    uint64_t doc_bytes; /* their bytes, length prefixes included */
    uint64_t crc;       /* CRC-64/XZ of those bytes, as checked */
    int closed;         /* an EOF header was seen */
};

struct marchive_stats {
    char server_version[64], tool_version[64], format_version[16];
    int32_t concurrent_collections;
    size_t n_namespaces; /* prelude order */
    struct marchive_ns_stats *namespaces;
    uint64_t total_docs, total_doc_bytes;
    uint64_t archive_bytes; /* bytes read, magic to the end */
};

/*
 * Read a whole archive from read_fn(arg, ...) and check it as mongorestore
 * would. On success fill *out (free with marchive_stats_free) and return 0;
 * otherwise -1 with err naming what is wrong and where (byte offset,
 * namespace). out is zeroed on failure too.
 */
int marchive_validate(marchive_read_fn *read_fn, void *arg, struct marchive_stats *out,
                      struct cst_err *err);
void marchive_stats_free(struct marchive_stats *stats);

/* A document of db.coll as it is read (before its collection's CRC is checked, which
 * happens at the collection's EOF header); non-zero (with err) stops the read. */
typedef int marchive_doc_fn(void *arg, const char *db, const char *coll, const bson_t *doc,
                            struct cst_err *err);
/* marchive_validate, handing every document to on_doc on the way (the restore test
 * loads a dump into a scratch database in the same single pass that checks it). */
int marchive_validate_docs(marchive_read_fn *read_fn, void *arg, struct marchive_stats *out,
                           marchive_doc_fn *on_doc, void *doc_arg, struct cst_err *err);

#endif
