/*
 * manifest.h - the daily run's remote layout and its signed manifests:
 * where each attempt's artifacts go, reading a manifest trio back, checking
 * its signature and that it is the manifest of the date and attempt it is
 * stored as, and hashing what it lists without holding it in memory.
 *
 * Layout under each destination's root (attempt 1 is the plan's layout;
 * a retry of the same date never reuses an earlier attempt's names):
 *   backups/daily/db/YYYY/MM/DD/mongodb-D[.attempt-N].archive.cst
 *   backups/daily/files/YYYY/MM/DD/restore-point-D[.attempt-N].tsv.cst
 *   backups/daily/catalog/YYYY/MM/DD/catalog-D[.attempt-N].db.cst
 *   backups/manifests/D[.attempt-N].sha256   sha256sum list of the three above
 *   backups/manifests/D[.attempt-N].json     what the attempt did
 *   backups/manifests/D[.attempt-N].sig      Ed25519 over both
 * D is YYYY-MM-DD; ".attempt-N" appears for N >= 2 only.
 */
#ifndef CST_MANIFEST_H
#define CST_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "agent/config.h"
#include "common/err.h"
#include "shipper/dest.h"

/* A manifest file larger than this is refused unread (a real one is a few KiB). */
#define MANIFEST_MAX_BYTES (1u << 20)
#define MANIFEST_MAX_ARTIFACTS 8

/* Remote key of an artifact kind (db, files, catalog, manifest-sha256, manifest-json,
 * manifest-sig) of attempt `attempt` for date (malloc'd). */
char *manifest_artifact_key(const char *kind, const char *date, int attempt);

/* "D.json", "D.attempt-3.sig", ...: 0 and date, attempt (1 when absent) and the
 * extension ("sha256", "json" or "sig") filled, or -1 for any other name. */
int manifest_parse_name(const char *name, char date[11], int *attempt, char ext[8]);

/* What a verified manifest says. */
struct manifest {
    char date[11];
    int attempt;      /* 1 for manifests written before attempts were numbered */
    char made_on[11]; /* "" when the manifest does not say (before backfills were labelled) */
    int backfill;
    int has_audit; /* the audit chain head it published, if it did */
    int64_t audit_rows;
    unsigned char audit_head[32];
    size_t n_artifacts; /* the stored artifacts listed in .sha256 and .json, checked to agree */
    struct {
        char kind[24];
        char key[256];
        unsigned char stored_sha256[32];
        int64_t stored_size;
    } artifacts[MANIFEST_MAX_ARTIFACTS];
};

/* The Ed25519 signature over SHA-256(sha256 text) || SHA-256(json text), as the sig
 * file's text names it. */
int manifest_signature_verify(const char *sha256_text, size_t sha256_len, const char *json_text,
                              size_t json_len, const char *sig_text, const unsigned char pk[32],
                              struct cst_err *err);

/* Parse the manifest JSON into *m (no checks beyond its shape). 0 or -1 with err. */
int manifest_parse_json(const char *json_text, size_t json_len, struct manifest *m,
                        struct cst_err *err);

/*
 * The whole check of a trio stored as the manifest of (date, attempt): the signature,
 * then that the signed JSON names that date and attempt, and that .sha256 lists
 * exactly the artifacts the JSON lists, under that date and attempt's keys. A trio of
 * another day (or attempt) put in this one's place fails. texts are NUL-terminated.
 */
int manifest_check(const char *sha256_text, size_t sha256_len, const char *json_text,
                   size_t json_len, const char *sig_text, const unsigned char pk[32],
                   const char *date, int attempt, struct manifest *m, struct cst_err *err);

/* The Ed25519 public key that verifies manifests: from [keys] signing_key (libsodium
 * keeps it in the secret key), or signing.pub beside it where only that is at hand. */
int manifest_signing_public(const struct cfg *cfg, unsigned char pk[32], struct cst_err *err);

/* Fetch remote_key from d into memory (at most MANIFEST_MAX_BYTES, NUL-terminated;
 * free it). NULL with err when missing, unreadable or too large. */
char *manifest_fetch_small(struct dest *d, const char *remote_key, size_t *len,
                           struct cst_err *err);

/* Fetch remote_key from d and hash it as it streams by: memory does not grow with
 * its size and nothing is written to disk. */
int manifest_hash_remote(struct dest *d, const char *remote_key, unsigned char sha256[32],
                         uint64_t *size, struct cst_err *err);

/* Every (date, attempt) with a .json manifest on d (date NULL: every date), through
 * cb; cb returning non-zero stops. -1 with err when d cannot be listed. */
int manifest_list(struct dest *d, const char *date,
                  int (*cb)(void *arg, const char *date, int attempt), void *arg,
                  struct cst_err *err);

#endif
