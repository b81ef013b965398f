/*
 * util.h - small helpers every module uses: hex, clocks, file I/O that
 * checks every return, durable directory operations.
 */
#ifndef CST_UTIL_H
#define CST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void util_hex(const unsigned char *bytes, size_t len, char *out);
/* Parse exactly 2*len hex digits; -1 on anything else. */
int util_unhex(const char *hex, unsigned char *bytes, size_t len);

/* Wall clock, UTC, milliseconds since the epoch (what the catalog stores). */
int64_t util_now_ms(void);
/* Wall clock in microseconds (queue generations: distinct, and growing). */
int64_t util_now_us(void);
/* Monotonic clock in milliseconds, for timeouts and latencies. */
int64_t util_mono_ms(void);
/* Format unix milliseconds as RFC 3339 UTC "2026-11-20T19:00:00.123Z" into out[32]. */
void util_format_ms(int64_t ms, char *out, size_t outlen);

/* write()/read() loops that retry on EINTR and short counts. */
int util_write_all(int fd, const void *buf, size_t len);
ssize_t util_read_full(int fd, void *buf, size_t len);

/* mkdir -p with mode for created folders. */
int util_mkdir_p(const char *path, mode_t mode, struct cst_err *err);
/* fsync a folder so that a rename or create in it survives power loss. */
int util_fsync_dir(const char *dir, struct cst_err *err);
/* malloc'd "a/b"; never NULL (aborts on out-of-memory: nothing sane to do). */
char *util_join(const char *a, const char *b);
/* malloc'd printf; never NULL. */
char *util_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* malloc/strdup that never return NULL. */
void *util_xmalloc(size_t n);
void *util_xcalloc(size_t n, size_t size);
void *util_xrealloc(void *p, size_t n);
char *util_xstrdup(const char *s);

#endif
