/*
 * snapshot_tar.h - the billing-cycle snapshot's package format: a tar
 * archive (POSIX pax, UTF-8 names) compressed with zstd, written and read
 * with libarchive, streamed through fixed buffers both ways.
 *
 * Writing: members go to a sink callback as compressed bytes, so the
 * package can be sealed (container.h) as it is produced; each member's
 * SHA-256 is computed on the way, for SHA256SUMS. Reading: each member is
 * handed to a callback that reads its bytes; names are checked, so that
 * nothing outside the folder an auditor extracts into can be named
 * (no absolute paths, no "..", regular files only).
 */
#ifndef CST_SNAPSHOT_TAR_H
#define CST_SNAPSHOT_TAR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

#define SNAPSHOT_TAR_ZSTD_LEVEL 3 /* what `tar --zstd` (zstd's default) uses */

struct tar_writer;

/* sink gets the compressed stream; returns 0, or -1 with its own error kept by the caller. */
typedef int (*tar_sink_fn)(void *arg, const void *buf, size_t len);

struct tar_writer *tar_writer_new(tar_sink_fn sink, void *arg, struct cst_err *err);
/* A member from memory; sha (may be NULL) receives its SHA-256. mtime in unix seconds. */
int tar_add_mem(struct tar_writer *t, const char *name, const void *buf, size_t len, int64_t mtime,
                unsigned char sha[32], struct cst_err *err);
/* A member of exactly size bytes read from fd at its current offset; the file ending
 * early is an error. sha (may be NULL) receives its SHA-256. Only when every member added
 * with tar_add_fd_hashed was taken with tar_hashed. */
int tar_add_fd(struct tar_writer *t, const char *name, int fd, uint64_t size, int64_t mtime,
               unsigned char sha[32], struct cst_err *err);

/* Member SHA-256s not yet taken with tar_hashed that a writer keeps. */
#define TAR_HASHED_MAX 64

/*
 * As tar_add_fd, but the member's SHA-256 is computed on the writer's hasher thread while
 * the next members are added: tar_hashed gives it later, with tag. At most TAR_HASHED_MAX
 * results may be outstanding: one more is refused (an error, no result). Every other call,
 * failed or not, makes one result (after a failure, the hash of what was read: meaningless).
 */
int tar_add_fd_hashed(struct tar_writer *t, const char *name, int fd, uint64_t size, int64_t mtime,
                      size_t tag, struct cst_err *err);

/* The oldest member hash not yet taken, in member order: 1 with *tag and sha, or 0 when it
 * is not known yet (wait 0) or none is outstanding (wait 1 waits for it otherwise); -1 with
 * *tag when OpenSSL failed to hash that member (it is taken all the same). */
int tar_hashed(struct tar_writer *t, int wait, size_t *tag, unsigned char sha[32]);
/* End the archive (flushes the compressor into the sink). */
int tar_writer_finish(struct tar_writer *t, struct cst_err *err);
/* tar_writer_free(NULL) does nothing; a writer not finished is abandoned. */
void tar_writer_free(struct tar_writer *t);

struct tar_member;
/* Read up to len bytes of the member; 0 at its end, -1 with err. */
ssize_t tar_member_read(struct tar_member *m, void *buf, size_t len, struct cst_err *err);

/*
 * Every member of the .tar.zst read from fd, in order: cb(arg, name, size, m), which may
 * read the member's bytes (what it leaves unread is skipped). cb returning non-zero stops
 * with that value. A member that is not a regular file, or whose name is absolute, holds
 * "..", or is empty, is an error. Returns 0, the callback's value, or -1 with err.
 */
int tar_each(int fd, int (*cb)(void *arg, const char *name, uint64_t size, struct tar_member *m),
             void *arg, struct cst_err *err);

#endif
