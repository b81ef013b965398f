/*
 * pathenc.c - the reversible escape of raw path bytes (see pathenc.h).
 */
#include "pathenc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Length of a valid UTF-8 sequence starting at p (max n bytes), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    size_t need;
    unsigned cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        need = 2;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        need = 3;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        need = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    /* Reject overlong forms, surrogates and values past U+10FFFF. */
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

char *pathenc_escape(const char *raw, size_t len)
{
    const unsigned char *p = (const unsigned char *)raw;
    char *out = util_xmalloc(len * 4 + 1);
    size_t o = 0;

    for (size_t i = 0; i < len;) {
        size_t seq = utf8_seq_len(p + i, len - i);
        /* C0 controls, DEL, C1 controls (U+0080..U+009F) and invalid UTF-8: raw bytes. */
        int as_bytes = seq == 0 || p[i] < 0x20 || p[i] == 0x7f ||
                       (seq == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0);

        if (p[i] == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
            i++;
        } else if (as_bytes) {
            size_t n = seq ? seq : 1;

            for (size_t k = 0; k < n; k++)
                o += (size_t)sprintf(out + o, "\\x%02x", p[i + k]);
            i += n;
        } else {
            memcpy(out + o, p + i, seq);
            o += seq;
            i += seq;
        }
    }
    out[o] = '\0';
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *pathenc_unescape(const char *s, size_t *len)
{
    size_t n = strlen(s), o = 0;
    char *out = util_xmalloc(n + 1);

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        if (s[i + 1] == '\\') {
            out[o++] = '\\';
            i++;
        } else if (s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 && hexval(s[i + 3]) >= 0) {
            int v = hexval(s[i + 2]) << 4 | hexval(s[i + 3]);

            if (v == 0)
                goto bad;
            out[o++] = (char)v;
            i += 3;
        } else {
            goto bad;
        }
    }
    out[o] = '\0';
    if (len)
        *len = o;
    return out;
bad:
    free(out);
    return NULL;
}

void pathenc_json(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = strlen(s) * 6 + 3;

    if (*len + need + 1 > *cap) {
        *cap = (*len + need + 1) * 2;
        *buf = util_xrealloc(*buf, *cap);
    }
    char *o = *buf + *len;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *o++ = '\\';
            *o++ = (char)*p;
        } else if (*p < 0x20) {
            o += sprintf(o, "\\u%04x", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o++ = '"';
    *o = '\0';
    *len = (size_t)(o - *buf);
}
