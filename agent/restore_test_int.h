/*
 * restore_test_int.h - shared by the monthly restore test's own files only
 * (restore_test.c and its checks rt_db.c, rt_files.c, rt_snapshots.c).
 */
#ifndef CST_RESTORE_TEST_INT_H
#define CST_RESTORE_TEST_INT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/cli.h"
#include "agent/report.h"
#include "shipper/dest.h"

/* Rows a section's table lists; every failure is listed first, totals count all. */
#define RT_MAX_ROWS 200

struct rt {
    struct cli *cli;
    struct report *rep;
    char month[8];     /* YYYY-MM */
    char today[11];    /* the test's day, local */
    int64_t day_start; /* ms: the start of that day */
    int64_t now;       /* ms: when the test began */
    unsigned char pk[32];
    unsigned char *sk;   /* the backup secret key (sodium_malloc'd); NULL: not on this host */
    char *no_key_why;    /* why there is no secret key here */
    struct dest **dests; /* every configured destination, blocking operations only */
    size_t n_dests;
    char *spool; /* state_dir/spool: scratch files, removed as soon as closed */

    /* measured, for the RTO projections */
    int64_t db_plain_bytes, db_ms; /* the dump: its size, fetch to dropped scratch database */
    int64_t files_best_rate;       /* bytes/s of the fastest destination that passed */
    char files_best_dest[64];
    int64_t snapshot_bytes, snapshot_ms; /* the largest package checked, and its time */
};

/* An anonymous scratch file in the spool (gone when closed). -1 with err. */
int rt_scratch(struct rt *t, struct cst_err *err);
/* Fetch key from d into fd (truncated first), hashing what arrives: *sha, *size. */
int rt_fetch(struct rt *t, struct dest *d, const char *key, int fd, unsigned char sha[32],
             uint64_t *size, struct cst_err *err);
/* Decrypt sealed_fd (from its start) into out_fd (truncated; -1: discard), at most
 * plain_size bytes, and check the plaintext's SHA-256 and size. Needs t->sk. */
int rt_open(struct rt *t, int sealed_fd, int out_fd, int64_t plain_size,
            const unsigned char plain_sha256[32], struct cst_err *err);
/* The first 16 hex digits of a SHA-256, for tables. */
void rt_short_hash(const unsigned char sha[32], char out[17]);
/* The watched folder a path lies in ("" when none): reports name no files. */
const char *rt_root_of(struct rt *t, const char *path);

/* The checks; each fills its section of t->rep. */
void rt_check_db(struct rt *t, struct report_section *s);
void rt_check_files(struct rt *t, struct report_section *s);
void rt_check_snapshots(struct rt *t, struct report_section *s);
void rt_check_archive(struct rt *t, struct report_section *s);

#endif
