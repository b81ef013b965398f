/*
 * recovery_sheet.h - the printable recovery sheet of a key set.
 *
 * The keys are what makes seven years of backups readable: a sheet on
 * paper in a safe survives the disks, the host and this program. It holds
 * each key file's key line, grouped for reading, with the SHA-256 of the
 * file, and the shell commands that rebuild the files from it and check
 * them with sha256sum (docs/ARCHIVE.md, "Keys to keep offline").
 */
#ifndef CST_RECOVERY_SHEET_H
#define CST_RECOVERY_SHEET_H

#include "common/err.h"

#define RECOVERY_SHEET_NAME "recovery-sheet.txt"

/*
 * Write the sheet of the key files in dir (backup.key, signing.pub, naming.key,
 * signing.key, backup.pub) to out_fd. A file missing from dir (backup.key moved off
 * the host) is named as missing; a file present is loaded with its usual checks, and
 * pairs present together must belong together. -1 with err when a file is unreadable
 * or foreign, or when dir holds neither backup.key nor signing.pub.
 */
int recovery_sheet_write(const char *dir, int out_fd, struct cst_err *err);

/*
 * Create dir/recovery-sheet.txt (mode 0600, never replacing a file of that name) holding
 * the sheet, durably. For keygen, right after the key set was written.
 */
int recovery_sheet_create(const char *dir, struct cst_err *err);

#endif
