/*
 * snapshot_check.h - getting a billing-cycle snapshot back and proving it:
 * fetch its signature and sealed package from a destination, check the
 * Ed25519 signature and the ciphertext's SHA-256, decrypt (secret key),
 * check the package's SHA-256, then every member against SHA256SUMS and
 * snapshot.json, optionally unpacking it. Used by `restore snapshot` and
 * `verify --snapshot`.
 */
#ifndef CST_SNAPSHOT_CHECK_H
#define CST_SNAPSHOT_CHECK_H

#include <stdint.h>

#include "agent/cli.h"
#include "shipper/dest.h"

/* Fetch s's .sig and .cst from d (the .cst into sealed_fd, from offset 0, truncated
 * first), check the signature with sign_pk and that the ciphertext is what the signature
 * and the catalog say. *sig (may be NULL) gets the signature text (malloc'd). */
int snapshot_fetch(struct dest *d, const struct catalog_snapshot *s,
                   const unsigned char sign_pk[32], int sealed_fd, char **sig, struct cst_err *err);

/* Decrypt sealed_fd (from its start) into out_fd (truncated first) and check that the
 * plaintext is the package the catalog recorded. */
int snapshot_decrypt(int sealed_fd, int out_fd, const unsigned char pk[32],
                     const unsigned char sk[32], const struct catalog_snapshot *s,
                     struct cst_err *err);

struct snapshot_ref {
    char *path; /* under files_root, raw bytes */
    int64_t version, size;
    char object_id[65];
    unsigned char sha256[32];
};

struct snapshot_report {
    int64_t members, files, refs, missing, invoices, timesheets;
    int complete;
    struct snapshot_ref *ref_list; /* refs.tsv, parsed */
    size_t n_refs;
};
void snapshot_report_free(struct snapshot_report *r);

/* Read the package (.tar.zst) from pkg_fd: every member's SHA-256 against SHA256SUMS,
 * the counts and files of snapshot.json against the members, refs.tsv and missing.txt.
 * With dir, every member is also written under it (never replacing a file). */
int snapshot_check_members(int pkg_fd, const char *dir, struct snapshot_report *rep,
                           struct cst_err *err);

/* `verify --snapshot LABEL [--date D] [--from DEST]`: exit status. */
int snapshot_verify(struct cli *cli, const char *label, const char *date, const char *from);

#endif
