/*
 * snapshot.h - billing-cycle snapshots (retention plan section 3): when a
 * billing period closes, one immutable package of that period, made from
 * the app's MongoDB (periods.h) and the catalog, sealed like every other
 * object and stored on every destination:
 *
 *   backups/snapshots/billing-cycles/YYYY/snapshot_<label>_<YYYYMMDD>.tar.zst.cst
 *   backups/snapshots/billing-cycles/YYYY/snapshot_<label>_<YYYYMMDD>.tar.zst.sig
 *
 * The package (tar + zstd, snapshot_tar.h) holds period.json,
 * invoices.jsonl, timesheets.jsonl (canonical Extended JSON v2, one
 * document a line), timesheet-ids.txt, files/<path under files_root> (each
 * invoice PDF and timesheet image, the version the catalog holds, taken
 * from the live file only when its SHA-256 is the catalog's), refs.tsv
 * (files whose live bytes changed since: the stored object is the
 * content), missing.txt, snapshot.json and SHA256SUMS. docs/operations.md
 * describes each member for auditors.
 *
 * The .sig is text: the package's and the sealed object's SHA-256 and
 * sizes, and an Ed25519 signature (the [keys] signing_key) over
 * SHA-256(package) || SHA-256(sealed object).
 *
 * A label that cannot be a file name as it is, is escaped
 * (snapshot_escape_label). A period is packaged once per close date; a
 * period closed again on another date gets a second package. An open
 * period packaged with --force is named ..._<YYYYMMDD>-open, the date it
 * was made.
 */
#ifndef CST_SNAPSHOT_H
#define CST_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "agent/cli.h"

#define SNAPSHOT_KEY_PREFIX "backups/snapshots/billing-cycles/"
#define SNAPSHOT_DATE_SIZE 16 /* "YYYYMMDD" or "YYYYMMDD-open", and the NUL */

/*
 * The label as it appears in file names, malloc'd. Kept as it is except: '/', '\',
 * '%', '~', control bytes (0x00-0x1F, 0x7F) and bytes that are not valid UTF-8 become
 * %XX (two uppercase hex digits); a leading '.' becomes %2E. When the result is longer
 * than 200 bytes it is cut at 180 (never inside a %XX or a UTF-8 character) and
 * "~" + the first 16 hex digits of the label's SHA-256 are appended.
 */
char *snapshot_escape_label(const char *label);
/* "snapshot_<escaped label>_<close_date>.tar.zst" (malloc'd). */
char *snapshot_package_name(const char *label, const char *close_date);
/* The remote keys of the sealed package and of its signature (malloc'd). */
char *snapshot_remote_key(const char *label, const char *close_date);
char *snapshot_sig_key(const char *label, const char *close_date);
/* Close date (YYYYMMDD...) + months, at 00:00 UTC, in ms: the snapshot's retain-until. */
int64_t snapshot_retain_until(const char *close_date, int months);

/* The storage class a snapshot is put in on destination d (NULL: the bucket's default, or
 * a destination without classes); *archive says whether that copy is archive storage. */
const char *snapshot_class_on(const struct cfg_dest *d, int *archive);

struct snapshot_sig {
    char package[512];
    unsigned char package_sha256[32], sealed_sha256[32];
    uint64_t package_size, sealed_size;
};
/* Parse a .sig and check its signature with the signing public key. */
int snapshot_sig_check(const char *text, const unsigned char pk[32], struct snapshot_sig *out,
                       struct cst_err *err);

/* `custodian snapshot --pending`: finish copies still owed, then package every closed
 * period that has no package for its close date. Exit status: 0 unless something
 * failed (an incomplete package is made, and said loudly, but is no failure). */
int snapshot_pending(struct cli *cli);
/* `custodian snapshot LABEL [--force]`: package that period now. --force packages an
 * open period, and does not wait for files not yet in the catalog. Exit status 0 only
 * for a complete package stored on every destination. */
int snapshot_label(struct cli *cli, const char *label, int force);

#endif
