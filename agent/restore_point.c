/*
 * restore_point.c - parsing the restore-point file (see restore_point.h).
 */
#include "restore_point.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pathenc.h"
#include "common/util.h"

/* v2 (the daily run's attempts) adds header fields only; the file lines are v1's. */
#define MAGIC "custodian restore-point v"
#define MAX_FIELDS 7

/* A decimal integer filling the whole field, optionally negative. */
static int parse_int(const char *s, size_t len, int negative_ok, int64_t *out)
{
    char buf[24];
    char *end;
    long long v;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (!(buf[0] >= '0' && buf[0] <= '9') && !(negative_ok && buf[0] == '-' && len > 1))
        return -1;
    errno = 0;
    v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static int is_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* YYYY-MM-DD in exactly len bytes (not NUL-terminated). */
static int is_date(const char *s, size_t len)
{
    if (len != 10)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((i == 4 || i == 7) ? s[i] != '-' : !(s[i] >= '0' && s[i] <= '9'))
            return 0;
    return 1;
}

/* A field's escaped text back to raw bytes (malloc'd), or NULL if malformed or empty. */
static char *unescape_field(const char *s, size_t len)
{
    char *copy, *raw;
    size_t raw_len;

    if (len == 0 || memchr(s, '\0', len) != NULL)
        return NULL;
    copy = util_xmalloc(len + 1);
    memcpy(copy, s, len);
    copy[len] = '\0';
    raw = pathenc_unescape(copy, &raw_len);
    free(copy);
    return raw;
}

int restore_point_header(const char *line, size_t len, char date[11], int64_t *at,
                         struct cst_err *err)
{
    size_t magic = strlen(MAGIC);
    const char *p = line + magic, *end = line + len;

    date[0] = '\0';
    *at = 0;
    if (len < magic + 1 || memcmp(line, MAGIC, magic) != 0 ||
        (line[magic] != '1' && line[magic] != '2'))
        return cst_err_set(err,
                           "not a restore point in a known format (expected '%s1' or "
                           "'%s2')",
                           MAGIC, MAGIC);
    p++;
    if (p < end && *p != '\t')
        return cst_err_set(err,
                           "not a restore point in a known format (expected '%s1' or "
                           "'%s2')",
                           MAGIC, MAGIC);
    while (p < end) {
        const char *field = ++p, *stop = memchr(p, '\t', (size_t)(end - p));
        size_t n = stop ? (size_t)(stop - field) : (size_t)(end - field);

        if (n > 5 && memcmp(field, "date=", 5) == 0) {
            if (!is_date(field + 5, n - 5))
                return cst_err_set(err, "restore point header: malformed date= field");
            memcpy(date, field + 5, 10);
            date[10] = '\0';
        } else if (n > 3 && memcmp(field, "at=", 3) == 0 &&
                   parse_int(field + 3, n - 3, 0, at) < 0) {
            return cst_err_set(err, "restore point header: malformed at= field");
        }
        p = field + n;
    }
    return 0;
}

int restore_point_line(const char *line, size_t len, struct catalog_version *v, struct cst_err *err)
{
    const char *field[MAX_FIELDS];
    size_t flen[MAX_FIELDS];
    size_t n = 0;
    const char *p = line, *end = line + len;

    memset(v, 0, sizeof(*v));
    for (;;) {
        const char *tab = memchr(p, '\t', (size_t)(end - p));

        if (n == MAX_FIELDS)
            return cst_err_set(err, "malformed restore point line: too many fields");
        field[n] = p;
        flen[n] = tab ? (size_t)(tab - p) : (size_t)(end - p);
        n++;
        if (tab == NULL)
            break;
        p = tab + 1;
    }
    if (n == 6 && flen[0] == 4 && memcmp(field[0], "file", 4) == 0) {
        v->kind = CATALOG_FILE;
        if (flen[1] != 64 || !is_lower_hex(field[1], 64) || flen[4] != 64 ||
            !is_lower_hex(field[4], 64))
            return cst_err_set(err, "malformed restore point line: bad SHA-256 or object id");
        for (int i = 0; i < 32; i++) {
            char pair[3] = {field[1][2 * i], field[1][2 * i + 1], '\0'};

            v->sha256[i] = (unsigned char)strtoul(pair, NULL, 16);
        }
        memcpy(v->object_id, field[4], 64);
        v->object_id[64] = '\0';
    } else if (n == 7 && flen[0] == 7 && memcmp(field[0], "symlink", 7) == 0) {
        v->kind = CATALOG_SYMLINK;
        if (flen[1] != 1 || field[1][0] != '-' || flen[4] != 1 || field[4][0] != '-')
            return cst_err_set(err, "malformed restore point line: symlink with content fields");
        v->link_target = unescape_field(field[6], flen[6]);
        if (v->link_target == NULL)
            return cst_err_set(err, "malformed restore point line: bad symlink target");
    } else {
        return cst_err_set(err, "malformed restore point line: not a file or symlink entry");
    }
    if (parse_int(field[2], flen[2], 0, &v->size) < 0 ||
        parse_int(field[3], flen[3], 1, &v->mtime_ns) < 0)
        return cst_err_set(err, "malformed restore point line: bad size or mtime");
    if (v->kind == CATALOG_SYMLINK && v->size != 0)
        return cst_err_set(err, "malformed restore point line: symlink with a size");
    v->path = unescape_field(field[5], flen[5]);
    if (v->path == NULL || v->path[0] != '/') {
        /* Shown escaped: the line came from elsewhere and goes to a terminal. */
        char *shown = pathenc_escape(field[5], flen[5] > 200 ? 200 : flen[5]);

        cst_err_set(err, "malformed restore point line: bad path %s", shown);
        free(shown);
        return -1;
    }
    return 0;
}
