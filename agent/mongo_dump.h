/*
 * mongo_dump.h - the built-in MongoDB dump: reads databases through
 * libmongoc and streams them, as mongodump's --archive format
 * (mongo_archive.h), into a sink callback.
 *
 * On a replica set member every collection is read in one snapshot
 * (a snapshot session: readConcern "snapshot" with one atClusterTime), so
 * the dump is one point in time; on a standalone it is read as mongodump
 * reads it, collection after collection, and stats->point_in_time is 0.
 * The URI's password never appears in an error or a log line.
 *
 * One dump at a time per process: libmongoc's log handler is global.
 */
#ifndef CST_MONGO_DUMP_H
#define CST_MONGO_DUMP_H

#include <stddef.h>
#include <stdint.h>

#include "agent/mongo_archive.h"
#include "common/err.h"

/* Written into the archive header's tool_version. */
#define MONGO_DUMP_TOOL_VERSION "custodian-mongo-dump-1"
/* Documents asked for per find/getMore round trip. */
#define MONGO_DUMP_BATCH_SIZE 1000

struct mongo_dump_collection {
    char *db, *name, *type; /* type: "collection" or "view" (views carry no documents) */
    uint64_t docs, bytes;
    uint64_t crc; /* CRC-64/XZ of its documents, as the archive's EOF header has it */
};

struct mongo_dump_stats {
    char server_version[64];
    int point_in_time;       /* 1: one snapshot across all collections */
    uint32_t cluster_time_t; /* that snapshot's cluster time (seconds), when point_in_time */
    uint32_t cluster_time_i; /* and its increment */
    size_t n_collections;    /* archive order */
    struct mongo_dump_collection *collections;
    uint64_t total_docs;
    uint64_t total_bytes;   /* document bytes */
    uint64_t archive_bytes; /* bytes handed to the sink */
    int64_t ms;             /* wall time of the dump */
};

/*
 * Dump databases (a NULL-terminated list; NULL means the URI's database, or
 * every database but admin, local and config when the URI names none) from
 * the server at uri into sink(arg, ...). Fills *stats (free with
 * mongo_dump_stats_free) on success and on failure, as far as it got.
 */
int mongo_dump(const char *uri, const char *const *databases, marchive_write_fn *sink, void *arg,
               struct mongo_dump_stats *stats, struct cst_err *err);
void mongo_dump_stats_free(struct mongo_dump_stats *stats);

/* The process-wide libmongoc teardown; call once at exit if mongo_dump ran. */
void mongo_dump_cleanup(void);

#endif
