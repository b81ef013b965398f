/*
 * manifest.h - reading a day's signed manifests back (`verify --manifest`):
 *
 *   YYYY-MM-DD.sha256  sha256sum lines "<64 hex>  <key>" of the stored artifacts
 *   YYYY-MM-DD.json    what the run did: {"date": ..., "artifacts": [{"kind",
 *                      "key", "plain_sha256", "plain_size", "stored_sha256",
 *                      "stored_size"}, ...], ...}
 *   YYYY-MM-DD.sig     "signature: <128 hex>" (Ed25519; agent/daily.c)
 *
 * They come from a destination, so each is parsed strictly and completely
 * (the JSON by a small RFC 8259 parser with a nesting limit) before
 * anything in them is used. Pure functions (no I/O), fuzzed by
 * tests/fuzz/fuzz_manifest.c.
 */
#ifndef CST_MANIFEST_H
#define CST_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct manifest_sum {
    unsigned char sha256[32];
    char *key; /* malloc'd */
};

struct manifest_artifact {
    char kind[24];
    char *key; /* malloc'd */
    unsigned char plain_sha256[32], stored_sha256[32];
    int64_t plain_size, stored_size;
};

struct manifest {
    char date[11]; /* from the JSON's "date" */
    struct manifest_sum *sums;
    size_t n_sums;
    struct manifest_artifact *artifacts;
    size_t n_artifacts;
};

/* The .sha256 text: one "<64 lowercase hex>  <key>" per line, each line ending in "\n";
 * a key is a relative path without "." or ".." components. Appends to m->sums. */
int manifest_parse_sums(const char *text, size_t len, struct manifest *m, struct cst_err *err);

/* The .json text: a JSON object with a "date" (YYYY-MM-DD) and an "artifacts" array (every
 * member of each entry present and of its type); other members are ignored. */
int manifest_parse_json(const char *text, size_t len, struct manifest *m, struct cst_err *err);

/* The .sig text: the 64-byte signature from its "signature: " line. */
int manifest_parse_signature(const char *text, size_t len, unsigned char sig[64],
                             struct cst_err *err);

/* The three agree: every sha256 line is an artifact of the JSON with that stored SHA-256,
 * and every artifact has its line. */
int manifest_check_consistent(const struct manifest *m, struct cst_err *err);

void manifest_free(struct manifest *m);

#endif
