/*
 * restore.h - turning a catalog version back into a file: fetch the object
 * from a destination that holds it, open the container with the secret key,
 * check the SHA-256 the catalog recorded, then put it in place atomically.
 */
#ifndef CST_RESTORE_H
#define CST_RESTORE_H

#include "agent/cli.h"
#include "catalog/catalog.h"

struct restorer;
struct dest;

/* Loads the public and secret keys and opens the destinations (only from_dest if
 * set). NULL with *status EXIT_USAGE (config/keys) or EXIT_FAILED, message printed. */
struct restorer *restorer_new(struct cli *cli, const char *from_dest, int need_secret, int *status);
void restorer_free(struct restorer *r);

/* Restore v to out_path (temporary name, fsync, rename, fsync folder). Without
 * force an existing out_path is never replaced. -1 and err on failure, and then
 * nothing is left at out_path or beside it. */
int restorer_to_path(struct restorer *r, const struct catalog_version *v, const char *out_path,
                     int force, struct cst_err *err);
/* Restore v's content to out_fd, only after it verified in full. */
int restorer_to_fd(struct restorer *r, const struct catalog_version *v, int out_fd,
                   struct cst_err *err);

/* Fetch a daily-run artifact from a destination holding it (the restorer's --from
 * one if set), decrypt it if sealed, check its plaintext SHA-256, write it to out_fd
 * (truncated first). */
int restorer_artifact_to_fd(struct restorer *r, const struct catalog_artifact *a, int out_fd,
                            struct cst_err *err);
/* The same for a file the caller names (temporary + rename, never replacing without force). */
int restorer_artifact_to_path(struct restorer *r, const struct catalog_artifact *a,
                              const char *out_path, int force, struct cst_err *err);
/* Deep check of one copy: fetch key from d, decrypt, compare with the plaintext's
 * SHA-256 and size. 0 if it restores, -1 with err. */
int restorer_check_copy(struct restorer *r, struct dest *d, const char *key,
                        const unsigned char plain_sha256[32], int64_t plain_size,
                        struct cst_err *err);
/* The backup secret key the restorer loaded (32 bytes, sodium_malloc'd). */
const unsigned char *restorer_secret_key(struct restorer *r);
/* Open the destinations only (for verify); no secret key needed. */
struct dest **restorer_dests(struct restorer *r, size_t *n);

#endif
