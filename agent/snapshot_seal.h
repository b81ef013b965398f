/*
 * snapshot_seal.h - the package's sealing (container.h) on a thread of its
 * own, so that it overlaps the tar + zstd work that produces the package.
 *
 * The producer hands the compressed stream over in fixed buffers through a
 * small bounded queue (memory does not grow with the package; a fast
 * producer waits for the sealer). The sealing thread does what
 * crypt_sealer_write does on one thread (the plaintext SHA-256, encryption,
 * the stored SHA-256, write(2)) and starts write-back of the output file as
 * it grows, so that the caller's fdatasync at the end is short. A failure
 * on that thread (a write error, a full disk) is kept with its message; the
 * next seal_pipe_write, or seal_pipe_finish, returns it.
 */
#ifndef CST_SNAPSHOT_SEAL_H
#define CST_SNAPSHOT_SEAL_H

#include <stddef.h>

#include "common/err.h"
#include "shipper/container.h"

struct seal_pipe;

/* Seal to public_key at container level 0 (the stream is zstd already) onto out_fd, which
 * the caller owns (and fsyncs). */
struct seal_pipe *seal_pipe_new(const unsigned char public_key[32], int out_fd,
                                struct cst_err *err);

/* Queue len bytes (a tar_sink_fn). 0, or -1 once the sealing thread has failed: then
 * seal_pipe_error says why. */
int seal_pipe_write(void *arg, const void *buf, size_t len);

/* The sealing thread's error message once it failed, else NULL. */
const char *seal_pipe_error(struct seal_pipe *p);

/* Seal what is queued, wait for the thread, and finish the object (*info filled). 0, or -1
 * with err (the sealing thread's own message when it failed). */
int seal_pipe_finish(struct seal_pipe *p, struct crypt_sealed_info *info, struct cst_err *err);

/* Stops the thread (what is still queued is dropped) and frees; NULL is fine. */
void seal_pipe_free(struct seal_pipe *p);

#endif
