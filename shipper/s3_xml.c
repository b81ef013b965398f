/*
 * s3_xml.c - scanning S3 reply bodies, writing CompleteMultipartUpload and
 * PutObjectRetention (see s3_xml.h).
 */
#include "s3_xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

/* UTF-8 of code point cp into out (4 bytes room); its length, 0 if invalid. */
static size_t utf8_put(unsigned long cp, char *out)
{
    if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* One entity at in[0] == '&': its decoded bytes into rep, the input length consumed;
 * 0 when it is no entity we know (the '&' is then kept as it is). */
static size_t entity(const char *in, size_t inlen, char rep[4], size_t *replen)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}};

    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        size_t n = strlen(named[i].name);

        if (inlen >= 1 + n && memcmp(in + 1, named[i].name, n) == 0) {
            rep[0] = named[i].c;
            *replen = 1;
            return 1 + n;
        }
    }
    if (inlen >= 4 && in[1] == '#') {
        int hex = in[2] == 'x' || in[2] == 'X';
        size_t k = hex ? 3 : 2;
        unsigned long cp = 0;
        size_t digits = 0;

        for (; k < inlen && digits < 8; k++, digits++) {
            char c = in[k];
            int v;

            if (c >= '0' && c <= '9')
                v = c - '0';
            else if (hex && c >= 'a' && c <= 'f')
                v = c - 'a' + 10;
            else if (hex && c >= 'A' && c <= 'F')
                v = c - 'A' + 10;
            else
                break;
            cp = cp * (hex ? 16 : 10) + (unsigned long)v;
        }
        if (digits == 0 || k >= inlen || in[k] != ';')
            return 0;
        *replen = utf8_put(cp, rep);
        if (*replen == 0)
            return 0;
        return k + 1;
    }
    return 0;
}

long s3_xml_decode(const char *in, size_t inlen, char *out, size_t outlen)
{
    size_t o = 0;

    if (outlen == 0)
        return -1;
    for (size_t i = 0; i < inlen;) {
        char rep[4];
        size_t replen = 1, used = 0;

        if (in[i] == '&')
            used = entity(in + i, inlen - i, rep, &replen);
        if (used == 0) {
            rep[0] = in[i];
            replen = 1;
            used = 1;
        }
        if (o + replen >= outlen) {
            out[o] = '\0';
            return -1;
        }
        memcpy(out + o, rep, replen);
        o += replen;
        i += used;
    }
    out[o] = '\0';
    return (long)o;
}

/* First occurrence of needle (nlen bytes) in [hay, hay+len), or NULL. */
static const char *find(const char *hay, size_t len, const char *needle, size_t nlen)
{
    if (nlen == 0 || len < nlen)
        return NULL;
    for (const char *p = hay; (p = memchr(p, needle[0], (size_t)(hay + len - p))) != NULL; p++) {
        if ((size_t)(hay + len - p) < nlen)
            return NULL;
        if (memcmp(p, needle, nlen) == 0)
            return p;
    }
    return NULL;
}

int s3_xml_next(const char *xml, size_t len, size_t *pos, const char *tag, const char **inner,
                size_t *inner_len)
{
    size_t tlen = strlen(tag);

    while (*pos < len) {
        const char *lt = memchr(xml + *pos, '<', len - *pos);

        if (lt == NULL)
            break;
        size_t at = (size_t)(lt - xml);
        /* "<tag" followed by '>', '/' or a blank: the exact name, not a longer one. */
        if (len - at < tlen + 2 || memcmp(lt + 1, tag, tlen) != 0 ||
            (lt[1 + tlen] != '>' && lt[1 + tlen] != '/' && lt[1 + tlen] != ' ' &&
             lt[1 + tlen] != '\t' && lt[1 + tlen] != '\r' && lt[1 + tlen] != '\n')) {
            *pos = at + 1;
            continue;
        }
        const char *gt = memchr(lt, '>', len - at);

        if (gt == NULL)
            break;
        if (gt[-1] == '/') { /* <tag/> */
            *inner = gt + 1;
            *inner_len = 0;
            *pos = (size_t)(gt + 1 - xml);
            return 1;
        }
        const char *body = gt + 1;
        size_t rest = len - (size_t)(body - xml);
        char close[80];

        if (tlen + 4 > sizeof(close))
            return 0;
        close[0] = '<';
        close[1] = '/';
        memcpy(close + 2, tag, tlen);
        close[2 + tlen] = '>';
        const char *end = find(body, rest, close, tlen + 3);

        if (end == NULL)
            break;
        *inner = body;
        *inner_len = (size_t)(end - body);
        *pos = (size_t)(end - xml) + tlen + 3;
        return 1;
    }
    *pos = len;
    return 0;
}

int s3_xml_text(const char *xml, size_t len, const char *tag, char *out, size_t outlen)
{
    size_t pos = 0, ilen;
    const char *inner;

    if (outlen > 0)
        out[0] = '\0';
    if (!s3_xml_next(xml, len, &pos, tag, &inner, &ilen))
        return -1;
    s3_xml_decode(inner, ilen, out, outlen); /* a truncated text is still useful */
    return 0;
}

int s3_xml_error(const char *xml, size_t len, struct s3_xml_error *e)
{
    size_t pos = 0, ilen;
    const char *inner;

    e->code[0] = e->message[0] = '\0';
    if (xml == NULL || !s3_xml_next(xml, len, &pos, "Error", &inner, &ilen))
        return -1;
    s3_xml_text(inner, ilen, "Code", e->code, sizeof(e->code));
    s3_xml_text(inner, ilen, "Message", e->message, sizeof(e->message));
    return 0;
}

/* A decimal size; -1 when it is none. */
static int parse_u64(const char *s, uint64_t *v)
{
    uint64_t n = 0;

    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > (UINT64_MAX - 9) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    if (*s != '\0')
        return -1;
    *v = n;
    return 0;
}

int s3_xml_list(const char *xml, size_t len, int (*cb)(void *arg, const char *key, uint64_t size),
                void *arg, struct s3_list_page *page)
{
    size_t pos = 0, blen, ilen;
    const char *body, *inner;
    char flag[16];
    int rc = 0;

    memset(page, 0, sizeof(*page));
    if (xml == NULL || !s3_xml_next(xml, len, &pos, "ListBucketResult", &body, &blen))
        return -1;
    if (s3_xml_text(body, blen, "IsTruncated", flag, sizeof(flag)) == 0)
        page->truncated = strcmp(flag, "true") == 0;
    s3_xml_text(body, blen, "NextContinuationToken", page->next_token, sizeof(page->next_token));
    pos = 0;
    while (rc == 0 && s3_xml_next(body, blen, &pos, "Contents", &inner, &ilen)) {
        size_t kpos = 0, klen;
        const char *kraw;
        char sizebuf[32];
        uint64_t size = 0;

        if (!s3_xml_next(inner, ilen, &kpos, "Key", &kraw, &klen))
            return -1;
        if (s3_xml_text(inner, ilen, "Size", sizebuf, sizeof(sizebuf)) < 0 ||
            parse_u64(sizebuf, &size) < 0)
            return -1;
        char *key = util_xmalloc(klen + 1);

        s3_xml_decode(kraw, klen, key, klen + 1); /* decoding never grows */
        page->keys++;
        if (cb(arg, key, size) != 0)
            rc = 1;
        free(key);
    }
    /* A truncated page must say where to go on, or the listing would silently end. */
    if (rc == 0 && page->truncated && page->next_token[0] == '\0')
        return -1;
    return rc;
}

int s3_xml_uploads(const char *xml, size_t len,
                   int (*cb)(void *arg, const char *key, const char *upload_id,
                             const char *initiated),
                   void *arg, struct s3_uploads_page *page)
{
    size_t pos = 0, blen, ilen;
    const char *body, *inner;
    char flag[16];
    int rc = 0;

    memset(page, 0, sizeof(*page));
    if (xml == NULL || !s3_xml_next(xml, len, &pos, "ListMultipartUploadsResult", &body, &blen))
        return -1;
    if (s3_xml_text(body, blen, "IsTruncated", flag, sizeof(flag)) == 0)
        page->truncated = strcmp(flag, "true") == 0;
    s3_xml_text(body, blen, "NextKeyMarker", page->next_key, sizeof(page->next_key));
    s3_xml_text(body, blen, "NextUploadIdMarker", page->next_upload_id,
                sizeof(page->next_upload_id));
    pos = 0;
    while (rc == 0 && s3_xml_next(body, blen, &pos, "Upload", &inner, &ilen)) {
        char *key = util_xmalloc(ilen + 1), *id = util_xmalloc(ilen + 1), when[64];

        if (s3_xml_text(inner, ilen, "Key", key, ilen + 1) < 0 ||
            s3_xml_text(inner, ilen, "UploadId", id, ilen + 1) < 0 || id[0] == '\0') {
            free(key);
            free(id);
            return -1;
        }
        s3_xml_text(inner, ilen, "Initiated", when, sizeof(when));
        if (cb(arg, key, id, when) != 0)
            rc = 1;
        free(key);
        free(id);
    }
    /* A truncated page must say where to go on, or the listing would silently end. */
    if (rc == 0 && page->truncated && page->next_key[0] == '\0')
        return -1;
    return rc;
}

int64_t s3_xml_time_ms(const char *iso)
{
    struct tm tm;
    int ms = 0, n = 0;
    char frac[16] = "";

    memset(&tm, 0, sizeof(tm));
    if (iso == NULL || sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
                              &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
        return -1;
    if (iso[n] == '.') {
        size_t k = 0;

        for (n++; iso[n] >= '0' && iso[n] <= '9'; n++)
            if (k < 3)
                frac[k++] = iso[n];
        while (k < 3)
            frac[k++] = '0';
        frac[k] = '\0';
        ms = atoi(frac);
    }
    if (iso[n] != 'Z' || iso[n + 1] != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

void s3_xml_time_iso(int64_t ms, char *out, size_t outlen)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL || strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, outlen, "%s", "");
}

char *s3_xml_retention_body(const char *mode, int64_t until_ms)
{
    char until[32];

    s3_xml_time_iso(until_ms, until, sizeof(until));
    /* mode is one of two fixed words (config checks it): nothing to escape */
    return util_printf("<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                       "<Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
                       mode, until);
}

/* Append s to a growing buffer, escaping the characters XML text cannot hold. */
static void append_escaped(char **buf, size_t *len, size_t *cap, const char *s, int escape)
{
    for (; *s; s++) {
        const char *rep = NULL;
        char one[2] = {*s, '\0'};

        if (escape && *s == '&')
            rep = "&amp;";
        else if (escape && *s == '<')
            rep = "&lt;";
        else if (escape && *s == '>')
            rep = "&gt;";
        else
            rep = one;
        size_t n = strlen(rep);

        if (*len + n + 1 > *cap) {
            *cap = (*cap + n + 1) * 2;
            *buf = util_xrealloc(*buf, *cap);
        }
        memcpy(*buf + *len, rep, n);
        *len += n;
        (*buf)[*len] = '\0';
    }
}

char *s3_xml_complete_body(char *const *etags, size_t n)
{
    size_t len = 0, cap = 128 + n * 96;
    char *buf = util_xmalloc(cap);
    char num[32];

    buf[0] = '\0';
    append_escaped(&buf, &len, &cap, "<CompleteMultipartUpload>", 0);
    for (size_t i = 0; i < n; i++) {
        snprintf(num, sizeof(num), "%zu", i + 1);
        append_escaped(&buf, &len, &cap, "<Part><PartNumber>", 0);
        append_escaped(&buf, &len, &cap, num, 0);
        append_escaped(&buf, &len, &cap, "</PartNumber><ETag>", 0);
        append_escaped(&buf, &len, &cap, etags[i], 1);
        append_escaped(&buf, &len, &cap, "</ETag></Part>", 0);
    }
    append_escaped(&buf, &len, &cap, "</CompleteMultipartUpload>", 0);
    return buf;
}
