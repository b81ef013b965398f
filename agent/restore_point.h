/*
 * restore_point.h - reading the daily restore-point file (format v1), the
 * list of every live file that `custodian restore point` rebuilds:
 *
 *     custodian restore-point v1<TAB>date=YYYY-MM-DD<TAB>at=UNIX_MS
 *     file<TAB>SHA256<TAB>SIZE<TAB>MTIME_NS<TAB>OBJECT_ID<TAB>PATH
 *     symlink<TAB>-<TAB>0<TAB>MTIME_NS<TAB>-<TAB>PATH<TAB>TARGET
 *
 * PATH and TARGET are in the escaped form of common/pathenc.h. The file is
 * decrypted from a destination, so every line is checked field by field
 * before anything is written: a malformed line is an error naming it, never
 * a guess. Pure functions (no I/O), fuzzed by tests/fuzz/fuzz_restore_point.c.
 */
#ifndef CST_RESTORE_POINT_H
#define CST_RESTORE_POINT_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "common/err.h"

/* The first line (without its newline). 0 and date (YYYY-MM-DD or "" when the line has
 * none) and *at (0 when none) filled; -1 when this is not a v1 restore point. Unknown
 * key=value fields after the version are ignored (later writers may add some). */
int restore_point_header(const char *line, size_t len, char date[11], int64_t *at,
                         struct cst_err *err);

/* One entry line (without its newline) into *v: kind, sha256, size, mtime_ns, object_id,
 * path (raw bytes, absolute) and, for a symlink, link_target; free with
 * catalog_version_clear (also after -1). -1 with err for anything malformed. */
int restore_point_line(const char *line, size_t len, struct catalog_version *v,
                       struct cst_err *err);

#endif
