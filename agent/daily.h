/*
 * daily.h - the daily protection run (retention plan section 2): a full
 * logical MongoDB dump, a restore point of every live file, a copy of the
 * catalog, and signed manifests, each shipped to every destination in the
 * plan's layout and verified there, with the plan's checklist recorded in
 * the catalog.
 *
 * Remote layout (paths under each destination's root):
 *   backups/daily/db/YYYY/MM/DD/mongodb-YYYY-MM-DD.archive.cst
 *   backups/daily/files/YYYY/MM/DD/restore-point-YYYY-MM-DD.tsv.cst
 *   backups/daily/catalog/YYYY/MM/DD/catalog-YYYY-MM-DD.db.cst
 *   backups/manifests/YYYY-MM-DD.sha256   (sha256sum -c, of the stored files)
 *   backups/manifests/YYYY-MM-DD.json     (plaintext hashes, sizes, counts, timings)
 *   backups/manifests/YYYY-MM-DD.sig      (Ed25519 over both)
 * .cst files are containers (docs/FORMAT.md); the manifests are plain text.
 */
#ifndef CST_DAILY_H
#define CST_DAILY_H

#include "agent/cli.h"

/* Run the daily protection run for local date (YYYY-MM-DD). Returns an exit status:
 * 0 when every step succeeded and every artifact is verified on every destination. */
int daily_run(struct cli *cli, const char *date);

/* Remote key of an artifact kind for date (malloc'd). kinds: db, files, catalog,
 * manifest-sha256, manifest-json, manifest-sig. */
char *daily_artifact_key(const char *kind, const char *date);

/* Verify the signature of a manifest: sha256 text, json text, sig text against the
 * Ed25519 public key. 0 if valid, -1 with err. */
int daily_manifest_verify(const char *sha256_text, size_t sha256_len, const char *json_text,
                          size_t json_len, const char *sig_text, const unsigned char pk[32],
                          struct cst_err *err);

#endif
