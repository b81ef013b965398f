/*
 * pathenc.h - showing raw path bytes to people and JSON, and back.
 *
 * Linux paths are bytes: a name may hold a newline or invalid UTF-8. The
 * catalog stores them raw; anything printed uses this reversible escape:
 * backslash becomes "\\", control bytes (C0, DEL, C1) and bytes that are
 * not part of valid UTF-8 become "\xNN". The result is valid UTF-8 with no control characters,
 * and an operator can paste it back into `custodian restore file`.
 */
#ifndef CST_PATHENC_H
#define CST_PATHENC_H

#include <stddef.h>

/* malloc'd escaped form of len raw bytes; never NULL. */
char *pathenc_escape(const char *raw, size_t len);
/* malloc'd raw bytes of an escaped string (NUL-terminated, *len set); NULL if malformed
 * (a "\x" without two hex digits, a lone backslash, or an escape producing NUL). */
char *pathenc_unescape(const char *escaped, size_t *len);
/* Append s as a JSON string literal (quotes included) to a growing buffer. */
void pathenc_json(char **buf, size_t *len, size_t *cap, const char *s);

#endif
