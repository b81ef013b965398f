/*
 * manifest.c - parsing the daily manifests (see manifest.h).
 */
#include "manifest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define JSON_MAX_DEPTH 32

/* ---- small checks ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Exactly 2 * n lowercase hex digits at s into out. */
static int lower_hex(const char *s, size_t len, unsigned char *out, size_t n)
{
    if (len != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* A remote key: relative, no empty, "." or ".." component, no control bytes. */
static int good_key(const char *s, size_t len)
{
    size_t start = 0;

    if (len == 0 || s[0] == '/' || s[len - 1] == '/')
        return 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f))
            return 0;
        if (i == len || s[i] == '/') {
            size_t n = i - start;

            if (n == 0 || (n == 1 && s[start] == '.') ||
                (n == 2 && s[start] == '.' && s[start + 1] == '.'))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

static int is_date(const char *s)
{
    if (strlen(s) != 10)
        return 0;
    for (int i = 0; i < 10; i++)
        if ((i == 4 || i == 7) ? s[i] != '-' : !(s[i] >= '0' && s[i] <= '9'))
            return 0;
    return 1;
}

/* ---- the .sha256 text ---- */

int manifest_parse_sums(const char *text, size_t len, struct manifest *m, struct cst_err *err)
{
    size_t pos = 0, line = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        const char *l = text + pos;
        struct manifest_sum sum;

        line++;
        if (nl == NULL)
            return cst_err_set(err, "manifest sha256 list: line %zu does not end in a newline",
                               line);
        if (n < 64 + 2 + 1 || lower_hex(l, 64, sum.sha256, 32) < 0 || l[64] != ' ' ||
            l[65] != ' ' || !good_key(l + 66, n - 66))
            return cst_err_set(err, "manifest sha256 list: line %zu is not '<sha256>  <key>'",
                               line);
        sum.key = util_xmalloc(n - 66 + 1);
        memcpy(sum.key, l + 66, n - 66);
        sum.key[n - 66] = '\0';
        m->sums = util_xrealloc(m->sums, (m->n_sums + 1) * sizeof(*m->sums));
        m->sums[m->n_sums++] = sum;
        pos += n + 1;
    }
    if (m->n_sums == 0)
        return cst_err_set(err, "manifest sha256 list is empty");
    return 0;
}

/* ---- the .sig text ---- */

int manifest_parse_signature(const char *text, size_t len, unsigned char sig[64],
                             struct cst_err *err)
{
    static const char label[] = "signature: ";
    size_t pos = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

        if (n == strlen(label) + 128 && memcmp(text + pos, label, strlen(label)) == 0 &&
            lower_hex(text + pos + strlen(label), 128, sig, 64) == 0)
            return 0;
        pos += n + 1;
    }
    return cst_err_set(err, "the signature file is malformed (no 'signature: <128 hex>' line)");
}

/* ---- the .json text: RFC 8259, strictly ---- */

struct json_in {
    const char *s;
    size_t len, pos;
    int depth;
    struct cst_err *err;
};

static int fail(struct json_in *p, const char *what)
{
    return cst_err_set(p->err, "manifest JSON: %s at byte %zu", what, p->pos);
}

static void skip_ws(struct json_in *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(struct json_in *p)
{
    skip_ws(p);
    return p->pos < p->len ? (unsigned char)p->s[p->pos] : -1;
}

static int expect(struct json_in *p, char c)
{
    if (peek(p) != (unsigned char)c) {
        char what[32];

        snprintf(what, sizeof(what), "expected '%c'", c);
        return fail(p, what);
    }
    p->pos++;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t need;
    unsigned long cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        need = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        need = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        need = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n < need)
        return 0;
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

static size_t put_utf8(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int hex4(struct json_in *p, unsigned long *v)
{
    *v = 0;
    if (p->len - p->pos < 4)
        return fail(p, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        int d = hex_digit(c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c);

        if (d < 0)
            return fail(p, "bad \\u escape");
        *v = *v << 4 | (unsigned long)d;
    }
    return 0;
}

/* A string; its decoded bytes (malloc'd, NUL-terminated) in *out unless out is NULL. A
 * decoded NUL is refused: every string here becomes a C string. */
static int parse_string(struct json_in *p, char **out)
{
    char *buf;
    size_t o = 0;

    if (expect(p, '"') < 0)
        return -1;
    /* Decoded text is never longer than its source. */
    buf = util_xmalloc(p->len - p->pos + 1);
    for (;;) {
        unsigned char c;

        if (p->pos >= p->len) {
            fail(p, "unterminated string");
            goto bad;
        }
        c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            fail(p, "control character in a string");
            goto bad;
        }
        if (c == '\\') {
            unsigned long cp;

            if (++p->pos >= p->len) {
                fail(p, "unterminated string");
                goto bad;
            }
            c = (unsigned char)p->s[p->pos++];
            switch (c) {
            case '"':
            case '\\':
            case '/':
                buf[o++] = (char)c;
                continue;
            case 'b':
                buf[o++] = '\b';
                continue;
            case 'f':
                buf[o++] = '\f';
                continue;
            case 'n':
                buf[o++] = '\n';
                continue;
            case 'r':
                buf[o++] = '\r';
                continue;
            case 't':
                buf[o++] = '\t';
                continue;
            case 'u':
                break;
            default:
                fail(p, "bad escape in a string");
                goto bad;
            }
            if (hex4(p, &cp) < 0)
                goto bad;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned long lo;

                if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                    fail(p, "lone surrogate in a string");
                    goto bad;
                }
                p->pos += 2;
                if (hex4(p, &lo) < 0)
                    goto bad;
                if (lo < 0xdc00 || lo > 0xdfff) {
                    fail(p, "lone surrogate in a string");
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
                fail(p, cp ? "lone surrogate in a string" : "NUL in a string");
                goto bad;
            }
            o += put_utf8(cp, buf + o);
            continue;
        }
        {
            size_t n = utf8_len((const unsigned char *)p->s + p->pos, p->len - p->pos);

            if (n == 0) {
                fail(p, "invalid UTF-8 in a string");
                goto bad;
            }
            memcpy(buf + o, p->s + p->pos, n);
            o += n;
            p->pos += n;
        }
    }
    buf[o] = '\0';
    if (out)
        *out = buf;
    else
        free(buf);
    return 0;
bad:
    free(buf);
    return -1;
}

/* A number; *out when it is an integer that fits int64 (is_int says so). */
static int parse_number(struct json_in *p, int64_t *out, int *is_int)
{
    size_t start;
    int integral = 1;
    char buf[32];

    skip_ws(p);
    start = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '-')
        p->pos++;
    if (p->pos >= p->len || !(p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
        return fail(p, "bad number");
    if (p->s[p->pos] == '0')
        p->pos++;
    else
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        integral = 0;
        if (++p->pos >= p->len || !(p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
            return fail(p, "bad number");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        integral = 0;
        if (++p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (p->pos >= p->len || !(p->s[p->pos] >= '0' && p->s[p->pos] <= '9'))
            return fail(p, "bad number");
        while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
            p->pos++;
    }
    *is_int = 0;
    if (integral && p->pos - start < sizeof(buf)) {
        char *end;
        long long v;

        memcpy(buf, p->s + start, p->pos - start);
        buf[p->pos - start] = '\0';
        errno = 0;
        v = strtoll(buf, &end, 10);
        if (errno == 0 && *end == '\0') {
            *out = v;
            *is_int = 1;
        }
    }
    return 0;
}

static int skip_value(struct json_in *p);

static int skip_word(struct json_in *p, const char *word)
{
    size_t n = strlen(word);

    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail(p, "unexpected text");
    p->pos += n;
    return 0;
}

/* Members of an object, each handed to member() (which must consume the value). */
static int parse_object(struct json_in *p,
                        int (*member)(struct json_in *p, const char *key, void *arg), void *arg)
{
    if (expect(p, '{') < 0)
        return -1;
    if (++p->depth > JSON_MAX_DEPTH)
        return fail(p, "nested too deeply");
    if (peek(p) == '}') {
        p->pos++;
        p->depth--;
        return 0;
    }
    for (;;) {
        char *key;
        int rc;

        if (parse_string(p, &key) < 0)
            return -1;
        rc = expect(p, ':') < 0 ? -1 : member(p, key, arg);
        free(key);
        if (rc < 0)
            return -1;
        if (peek(p) == ',') {
            p->pos++;
            continue;
        }
        if (expect(p, '}') < 0)
            return -1;
        p->depth--;
        return 0;
    }
}

static int skip_member(struct json_in *p, const char *key, void *arg)
{
    (void)key;
    (void)arg;
    return skip_value(p);
}

/* Elements of an array, each handed to element(). */
static int parse_array(struct json_in *p, int (*element)(struct json_in *p, void *arg), void *arg)
{
    if (expect(p, '[') < 0)
        return -1;
    if (++p->depth > JSON_MAX_DEPTH)
        return fail(p, "nested too deeply");
    if (peek(p) == ']') {
        p->pos++;
        p->depth--;
        return 0;
    }
    for (;;) {
        if (element(p, arg) < 0)
            return -1;
        if (peek(p) == ',') {
            p->pos++;
            continue;
        }
        if (expect(p, ']') < 0)
            return -1;
        p->depth--;
        return 0;
    }
}

static int skip_element(struct json_in *p, void *arg)
{
    (void)arg;
    return skip_value(p);
}

static int skip_value(struct json_in *p)
{
    int64_t n;
    int is_int;

    switch (peek(p)) {
    case '{':
        return parse_object(p, skip_member, NULL);
    case '[':
        return parse_array(p, skip_element, NULL);
    case '"':
        return parse_string(p, NULL);
    case 't':
        return skip_word(p, "true");
    case 'f':
        return skip_word(p, "false");
    case 'n':
        return skip_word(p, "null");
    case -1:
        return fail(p, "truncated");
    default:
        return parse_number(p, &n, &is_int);
    }
}

/* ---- the manifest's own members ---- */

enum {
    HAVE_KIND = 1,
    HAVE_KEY = 2,
    HAVE_PSHA = 4,
    HAVE_PSIZE = 8,
    HAVE_SSHA = 16,
    HAVE_SSIZE = 32
};

struct artifact_in {
    struct manifest_artifact a;
    unsigned have;
};

static int string_member(struct json_in *p, char **out, unsigned *have, unsigned bit)
{
    if (*have & bit)
        return fail(p, "a member is given twice");
    if (peek(p) != '"')
        return fail(p, "expected a string");
    if (parse_string(p, out) < 0)
        return -1;
    *have |= bit;
    return 0;
}

static int size_member(struct json_in *p, int64_t *out, unsigned *have, unsigned bit)
{
    int is_int;

    if (*have & bit)
        return fail(p, "a member is given twice");
    if (parse_number(p, out, &is_int) < 0)
        return -1;
    if (!is_int || *out < 0)
        return fail(p, "a size is not a non-negative integer");
    *have |= bit;
    return 0;
}

static int artifact_member(struct json_in *p, const char *key, void *arg)
{
    struct artifact_in *in = arg;
    char *text = NULL;
    int rc;

    if (strcmp(key, "kind") == 0 || strcmp(key, "key") == 0 || strcmp(key, "plain_sha256") == 0 ||
        strcmp(key, "stored_sha256") == 0) {
        unsigned bit = key[1] == 'i'   ? HAVE_KIND
                       : key[1] == 'e' ? HAVE_KEY
                       : key[0] == 'p' ? HAVE_PSHA
                                       : HAVE_SSHA;

        if (string_member(p, &text, &in->have, bit) < 0)
            return -1;
        rc = 0;
        if (bit == HAVE_KIND) {
            if (strlen(text) >= sizeof(in->a.kind) || text[0] == '\0')
                rc = fail(p, "bad artifact kind");
            else
                memcpy(in->a.kind, text, strlen(text) + 1);
        } else if (bit == HAVE_KEY) {
            if (!good_key(text, strlen(text)))
                rc = fail(p, "bad artifact key");
            in->a.key = text;
            text = NULL;
        } else if (lower_hex(text, strlen(text),
                             bit == HAVE_PSHA ? in->a.plain_sha256 : in->a.stored_sha256, 32) < 0) {
            rc = fail(p, "bad SHA-256");
        }
        free(text);
        return rc;
    }
    if (strcmp(key, "plain_size") == 0)
        return size_member(p, &in->a.plain_size, &in->have, HAVE_PSIZE);
    if (strcmp(key, "stored_size") == 0)
        return size_member(p, &in->a.stored_size, &in->have, HAVE_SSIZE);
    return skip_value(p);
}

static int artifact_element(struct json_in *p, void *arg)
{
    struct manifest *m = arg;
    struct artifact_in in;

    memset(&in, 0, sizeof(in));
    if (peek(p) != '{')
        return fail(p, "an artifact is not an object");
    if (parse_object(p, artifact_member, &in) < 0) {
        free(in.a.key);
        return -1;
    }
    if (in.have != (HAVE_KIND | HAVE_KEY | HAVE_PSHA | HAVE_PSIZE | HAVE_SSHA | HAVE_SSIZE)) {
        free(in.a.key);
        return fail(p, "an artifact lacks kind, key, a SHA-256 or a size");
    }
    m->artifacts = util_xrealloc(m->artifacts, (m->n_artifacts + 1) * sizeof(*m->artifacts));
    m->artifacts[m->n_artifacts++] = in.a;
    return 0;
}

struct top_in {
    struct manifest *m;
    int have_date, have_artifacts;
};

static int top_member(struct json_in *p, const char *key, void *arg)
{
    struct top_in *t = arg;

    if (strcmp(key, "date") == 0) {
        char *date;
        unsigned have = (unsigned)t->have_date;

        if (string_member(p, &date, &have, 1) < 0)
            return -1;
        t->have_date = 1;
        if (!is_date(date)) {
            free(date);
            return fail(p, "\"date\" is not YYYY-MM-DD");
        }
        memcpy(t->m->date, date, 11);
        free(date);
        return 0;
    }
    if (strcmp(key, "artifacts") == 0) {
        if (t->have_artifacts)
            return fail(p, "a member is given twice");
        t->have_artifacts = 1;
        if (peek(p) != '[')
            return fail(p, "\"artifacts\" is not an array");
        return parse_array(p, artifact_element, t->m);
    }
    return skip_value(p);
}

int manifest_parse_json(const char *text, size_t len, struct manifest *m, struct cst_err *err)
{
    struct json_in p = {text, len, 0, 0, err};
    struct top_in t = {m, 0, 0};

    if (peek(&p) != '{')
        return fail(&p, "not a JSON object");
    if (parse_object(&p, top_member, &t) < 0)
        return -1;
    if (peek(&p) != -1)
        return fail(&p, "text after the object");
    if (!t.have_date || !t.have_artifacts)
        return cst_err_set(err, "manifest JSON: no \"date\" or no \"artifacts\"");
    return 0;
}

int manifest_check_consistent(const struct manifest *m, struct cst_err *err)
{
    if (m->n_sums != m->n_artifacts)
        return cst_err_set(err,
                           "the manifest lists %zu artifacts in its sha256 file and %zu in its "
                           "JSON",
                           m->n_sums, m->n_artifacts);
    for (size_t i = 0; i < m->n_sums; i++) {
        size_t k;

        for (k = 0; k < m->n_artifacts; k++)
            if (strcmp(m->sums[i].key, m->artifacts[k].key) == 0)
                break;
        if (k == m->n_artifacts)
            return cst_err_set(err, "%s is in the manifest's sha256 file but not in its JSON",
                               m->sums[i].key);
        if (memcmp(m->sums[i].sha256, m->artifacts[k].stored_sha256, 32) != 0)
            return cst_err_set(err,
                               "%s has one SHA-256 in the manifest's sha256 file and another in "
                               "its JSON",
                               m->sums[i].key);
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->sums[i].key, m->sums[j].key) == 0)
                return cst_err_set(err, "%s is listed twice in the manifest", m->sums[i].key);
    }
    return 0;
}

void manifest_free(struct manifest *m)
{
    for (size_t i = 0; i < m->n_sums; i++)
        free(m->sums[i].key);
    free(m->sums);
    for (size_t i = 0; i < m->n_artifacts; i++)
        free(m->artifacts[i].key);
    free(m->artifacts);
    memset(m, 0, sizeof(*m));
}
