/*
 * restore.h - turning a catalog version back into a file: fetch the object
 * from a destination that holds it, open the container with the secret key
 * (never past the recorded size), check the SHA-256 the catalog recorded,
 * then put it in place atomically, beneath the folder the operator named
 * and never through a symlink.
 */
#ifndef CST_RESTORE_H
#define CST_RESTORE_H

#include "agent/cli.h"
#include "catalog/catalog.h"

struct restorer;
struct dest;

/* The folder a restore writes beneath: --to DIR, a watched folder (in place), or "/". */
struct restore_root {
    int fd;
    char *path; /* for messages, without trailing slashes */
};

/* Open path (created like mkdir -p, mode 0700, when create is set). Symlinks on the way to
 * it are followed: it is the operator's choice. Nothing below it ever follows one. */
int restore_root_open(struct restore_root *root, const char *path, int create, struct cst_err *err);
void restore_root_close(struct restore_root *root);

/* Loads the public and secret keys and opens the destinations (only from_dest if
 * set). NULL with *status EXIT_USAGE (config/keys) or EXIT_FAILED, message printed. */
struct restorer *restorer_new(struct cli *cli, const char *from_dest, int need_secret, int *status);
void restorer_free(struct restorer *r);
/* --wait: a copy in an archive class is thawed and waited for (progress on stderr); without
 * it the thaw is asked for, recorded as a restore job, and the restore fails saying when
 * to come back. */
void restorer_set_wait(struct restorer *r, int wait);

/* Restore v to rel (a relative path) beneath root: an anonymous file in the target's
 * folder, fsync, link into place, fsync folder. Missing folders are created (0700); a
 * symlink, "." or ".." on the way is refused. Without force an existing file is never
 * replaced. -1 and err on failure, and then nothing is left at rel or beside it. */
int restorer_to_path(struct restorer *r, const struct catalog_version *v,
                     const struct restore_root *root, const char *rel, int force,
                     struct cst_err *err);
/* Restore v's content to out_fd, only after it verified in full. */
int restorer_to_fd(struct restorer *r, const struct catalog_version *v, int out_fd,
                   struct cst_err *err);

/* Fetch a daily-run artifact from a destination holding it (the restorer's --from
 * one if set), decrypt it if sealed, check its plaintext SHA-256, write it to out_fd
 * (truncated first). */
int restorer_artifact_to_fd(struct restorer *r, const struct catalog_artifact *a, int out_fd,
                            struct cst_err *err);
/* The same into rel beneath root, as restorer_to_path places a file. */
int restorer_artifact_to_path(struct restorer *r, const struct catalog_artifact *a,
                              const struct restore_root *root, const char *rel, int force,
                              struct cst_err *err);
/* Deep check of one copy: fetch key from d, decrypt, compare with the plaintext's
 * SHA-256 and size. 0 if it restores, -1 with err. */
int restorer_check_copy(struct restorer *r, struct dest *d, const char *key,
                        const unsigned char plain_sha256[32], int64_t plain_size,
                        struct cst_err *err);
/* A scratch file in the state folder's spool (anonymous where the filesystem allows). */
int restorer_scratch_file(struct restorer *r, struct cst_err *err);
/* The backup secret key the restorer loaded (32 bytes, sodium_malloc'd). */
const unsigned char *restorer_secret_key(struct restorer *r);
/* For fetches of their own (snapshots): key on d made readable when it is in an archive
 * class, as restores do (a thaw job; waited for with --wait, else err says when to come
 * back). 0 when it can be read now, -1. */
int restorer_thaw(struct restorer *r, struct dest *d, const char *key, const char *what,
                  struct cst_err *err);
/* key on d was read: its thaw job, if any, is done. */
int restorer_thaw_done(struct restorer *r, struct dest *d, const char *key, struct cst_err *err);
/* Open the destinations only (for verify); no secret key needed. */
struct dest **restorer_dests(struct restorer *r, size_t *n);

#endif
