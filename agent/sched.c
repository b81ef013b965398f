/*
 * sched.c - time zones from TZif files and the calendar of daily runs.
 *
 * Owns two things: a TZif reader (RFC 8536; v1 data for version-1 files,
 * the 64-bit v2+ data and the POSIX TZ footer otherwise) with the offset
 * lookup it enables, and the run calendar built on it (run instant of a
 * date, next run, catch-up after downtime). The process TZ and the libc
 * time zone functions are never used, so a zone is an immutable value any
 * thread may query.
 *
 * How a local wall time becomes an instant (local_to_instant): within two
 * days either side of the wall time, the zone's offset is piecewise
 * constant; a segment with offset o holds the wall time iff L - o falls in
 * it. The earliest such instant wins (fall back: first occurrence). If no
 * segment holds it, the wall time lies in a forward jump, and the run goes
 * where the clock shows it plus the jump: L - (offset before the jump).
 */
#include "sched.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* TZif files are a few KiB; the cap bounds memory for hostile input. */
#define TZIF_MAX_BYTES (1024 * 1024)
#define TZIF_HEADER_BYTES 44
/* Type indices are one byte; more types could never be referenced. */
#define TZIF_MAX_TYPES 256
/* RFC 8536 3.2: utoff SHOULD be in [-89999, 93599], more than -25 h, less than 26 h. */
#define UTOFF_MIN (-89999)
#define UTOFF_MAX 93599
/* Longest footer accepted; real ones are under 64 bytes. */
#define FOOTER_MAX 255
/*
 * Instants are clamped to +-2^52 s (about 142 million years) before any
 * arithmetic, so adding offsets or converting to days cannot overflow and
 * years fit an int.
 */
#define T_LIMIT ((int64_t)1 << 52)
#define YEAR_MIN 1
#define YEAR_MAX 9999
#define DAY_SECS 86400

struct tz_type {
    int32_t utoff; /* local = UTC + utoff */
    int is_dst;
};

/* One end of daylight time in a POSIX TZ rule: a day of the year and a
 * local time of day (RFC 8536 allows -167..167 hours). */
struct tz_rule_date {
    char kind; /* 'J': Jn, 1..365 without Feb 29; 'N': n, 0..365; 'M': Mm.w.d */
    int n, month, week, wday;
    int32_t secs;
};

struct tz_rule {
    int present; /* a non-empty footer was given */
    int has_dst;
    struct tz_type std, dst;
    struct tz_rule_date start, end; /* start in std local time, end in dst local time */
};

struct sched_zone {
    size_t ntrans;
    int64_t *trans;       /* strictly ascending */
    uint8_t *trans_types; /* index into types[] for each transition */
    size_t ntypes;
    struct tz_type types[TZIF_MAX_TYPES];
    struct tz_rule rule;
};

/* ---- calendar arithmetic (proleptic Gregorian, days since 1970-01-01) ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    if (a % b != 0 && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_len(int64_t y, int m)
{
    static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/* H. Hinnant's days_from_civil / civil_from_days. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    int64_t era, doe, yoe, doy, mp;

    days += 719468;
    era = floor_div(days, 146097);
    doe = days - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* 0 = Sunday; 1970-01-01 was a Thursday. */
static int weekday(int64_t days)
{
    return (int)(days + 4 - floor_div(days + 4, 7) * 7);
}

static int64_t clamp_t(int64_t t)
{
    return t < -T_LIMIT ? -T_LIMIT : t > T_LIMIT ? T_LIMIT : t;
}

static void format_date(int64_t days, char date[SCHED_DATE_SIZE])
{
    int64_t y;
    int m, d;

    civil_from_days(days, &y, &m, &d);
    snprintf(date, SCHED_DATE_SIZE, "%04d-%02d-%02d", (int)y, m, d);
}

/* ---- POSIX TZ rules (the TZif footer) ---- */

/* Local seconds (as if the local clock were UTC) of a rule date in year y. */
static int64_t rule_local_secs(const struct tz_rule_date *r, int64_t y)
{
    int64_t jan1 = days_from_civil(y, 1, 1), day;

    if (r->kind == 'J') {
        day = jan1 + r->n - 1 + (is_leap(y) && r->n >= 60);
    } else if (r->kind == 'N') {
        day = jan1 + r->n;
    } else {
        int64_t first = days_from_civil(y, r->month, 1);
        int dom = 1 + (r->wday - weekday(first) + 7) % 7 + 7 * (r->week - 1);

        while (dom > month_len(y, r->month))
            dom -= 7;
        day = first + dom - 1;
    }
    return day * DAY_SECS + r->secs;
}

struct rule_event {
    int64_t at;
    int to_dst;
};

/*
 * The rule's type at t, and the next instant after t where it may change
 * (INT64_MAX if never). Events of the years around t are sorted; the last
 * one at or before t decides. A year's events stay within about a week of
 * that year, so years y-2..y+2 always bracket t. On a tie (permanent DST
 * written as "0/0,J365/25"), the stable sort keeps one year's end before
 * the next year's start, so DST continues.
 */
static struct tz_type rule_at(const struct tz_rule *r, int64_t t, int64_t *next)
{
    struct rule_event ev[10], tmp;
    int64_t y, yy;
    struct tz_type cur = r->std;
    size_t n = 0, i, j;
    int m, d;

    *next = INT64_MAX;
    if (!r->has_dst)
        return r->std;
    civil_from_days(floor_div(t + r->std.utoff, DAY_SECS), &y, &m, &d);
    for (yy = y - 2; yy <= y + 2; yy++) {
        int64_t start = rule_local_secs(&r->start, yy) - r->std.utoff;
        int64_t end = rule_local_secs(&r->end, yy) - r->dst.utoff;

        if (start == end)
            continue; /* no daylight time that year */
        ev[n].at = start;
        ev[n++].to_dst = 1;
        ev[n].at = end;
        ev[n++].to_dst = 0;
    }
    /* Stable insertion sort of events generated in year order. */
    for (i = 1; i < n; i++) {
        for (j = i; j > 0 && ev[j - 1].at > ev[j].at; j--) {
            tmp = ev[j];
            ev[j] = ev[j - 1];
            ev[j - 1] = tmp;
        }
    }
    for (i = 0; i < n; i++) {
        if (ev[i].at > t) {
            *next = ev[i].at;
            break;
        }
        cur = ev[i].to_dst ? r->dst : r->std;
    }
    return cur;
}

/* [+-]hh[:mm[:ss]] with hh <= max_hours; sign only if allow_sign. */
static int parse_hms(const char **sp, int max_hours, int allow_sign, int32_t *out)
{
    const char *s = *sp;
    int sign = 1, h = 0, mm = 0, ss = 0, digits = 0;

    if (*s == '+' || *s == '-') {
        if (!allow_sign)
            return -1;
        sign = *s == '-' ? -1 : 1;
        s++;
    }
    while (*s >= '0' && *s <= '9' && digits < 3) {
        h = h * 10 + (*s++ - '0');
        digits++;
    }
    if (digits == 0 || h > max_hours)
        return -1;
    for (int part = 0; part < 2 && *s == ':'; part++) {
        int v;

        if (s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
            return -1;
        v = (s[1] - '0') * 10 + (s[2] - '0');
        if (v > 59)
            return -1;
        if (part == 0)
            mm = v;
        else
            ss = v;
        s += 3;
    }
    *out = sign * (h * 3600 + mm * 60 + ss);
    *sp = s;
    return 0;
}

/* A zone abbreviation: three or more letters, or <...> of [A-Za-z0-9+-]. */
static int parse_abbr(const char **sp)
{
    const char *s = *sp, *start;

    if (*s == '<') {
        start = ++s;
        while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
               *s == '+' || *s == '-')
            s++;
        if (*s != '>' || s - start < 3)
            return -1;
        s++;
    } else {
        start = s;
        while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
            s++;
        if (s - start < 3)
            return -1;
    }
    *sp = s;
    return 0;
}

static int parse_number(const char **sp, int lo, int hi, int *out)
{
    const char *s = *sp;
    int v = 0, digits = 0;

    while (*s >= '0' && *s <= '9' && digits < 4) {
        v = v * 10 + (*s++ - '0');
        digits++;
    }
    if (digits == 0 || v < lo || v > hi)
        return -1;
    *out = v;
    *sp = s;
    return 0;
}

static int parse_rule_date(const char **sp, struct tz_rule_date *r)
{
    const char *s = *sp;

    if (*s == 'J') {
        s++;
        r->kind = 'J';
        if (parse_number(&s, 1, 365, &r->n) < 0)
            return -1;
    } else if (*s == 'M') {
        s++;
        r->kind = 'M';
        if (parse_number(&s, 1, 12, &r->month) < 0 || *s++ != '.' ||
            parse_number(&s, 1, 5, &r->week) < 0 || *s++ != '.' ||
            parse_number(&s, 0, 6, &r->wday) < 0)
            return -1;
    } else {
        r->kind = 'N';
        if (parse_number(&s, 0, 365, &r->n) < 0)
            return -1;
    }
    r->secs = 2 * 3600;
    if (*s == '/') {
        s++;
        if (parse_hms(&s, 167, 1, &r->secs) < 0)
            return -1;
    }
    *sp = s;
    return 0;
}

/* Parse a POSIX TZ string as RFC 8536 section 3.3 extends it. */
static int parse_tz_string(const char *s, struct tz_rule *r)
{
    int32_t off;

    memset(r, 0, sizeof(*r));
    if (*s == '\0')
        return 0;
    r->present = 1;
    if (parse_abbr(&s) < 0 || parse_hms(&s, 24, 1, &off) < 0)
        return -1;
    r->std.utoff = -off; /* POSIX offsets are west-positive */
    if (*s == '\0')
        return 0;
    if (parse_abbr(&s) < 0)
        return -1;
    r->has_dst = 1;
    r->dst.is_dst = 1;
    r->dst.utoff = r->std.utoff + 3600;
    if (*s != ',' && *s != '\0') {
        if (parse_hms(&s, 24, 1, &off) < 0)
            return -1;
        r->dst.utoff = -off;
    }
    if (*s == '\0') {
        /* No rule: the US rule, as tzcode and glibc assume. */
        const char *dflt = "M3.2.0,M11.1.0";

        if (parse_rule_date(&dflt, &r->start) < 0 || *dflt++ != ',' ||
            parse_rule_date(&dflt, &r->end) < 0)
            return -1;
        return 0;
    }
    if (*s++ != ',' || parse_rule_date(&s, &r->start) < 0 || *s++ != ',' ||
        parse_rule_date(&s, &r->end) < 0 || *s != '\0')
        return -1;
    return 0;
}

/* ---- TZif reading ---- */

struct tzif_header {
    int version; /* 1..4 */
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int32_t be32s(const unsigned char *p)
{
    uint32_t u = be32(p);

    return u > INT32_MAX ? -(int32_t)(~u) - 1 : (int32_t)u;
}

static int64_t be64s(const unsigned char *p)
{
    uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);

    return u > INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u;
}

static int read_header(const unsigned char *buf, size_t len, size_t off, struct tzif_header *h,
                       const char *path, struct cst_err *err)
{
    const unsigned char *p = buf + off;
    unsigned v;

    memset(h, 0, sizeof(*h));
    if (len - off < TZIF_HEADER_BYTES)
        return cst_err_set(err, "time zone file %s is truncated: %zu bytes, header needs %d", path,
                           len, (int)(off + TZIF_HEADER_BYTES));
    if (memcmp(p, "TZif", 4) != 0)
        return cst_err_set(err, "time zone file %s is not a TZif file (bad magic at byte %zu)",
                           path, off);
    v = p[4];
    if (v == 0)
        h->version = 1;
    else if (v >= '2' && v <= '4')
        h->version = (int)(v - '0');
    else
        return cst_err_set(err, "time zone file %s has unsupported TZif version byte 0x%02x", path,
                           v);
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return 0;
}

/* Bytes of the data block a header announces (cannot overflow: 6 counts < 2^32, x12 at most). */
static uint64_t block_bytes(const struct tzif_header *h, unsigned timesize)
{
    return (uint64_t)h->timecnt * timesize + h->timecnt + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (timesize + 4) + h->isstdcnt + h->isutcnt;
}

static int check_counts(const struct tzif_header *h, unsigned timesize, size_t len, size_t off,
                        const char *path, struct cst_err *err)
{
    uint64_t need = block_bytes(h, timesize);

    if (h->typecnt == 0 || h->typecnt > TZIF_MAX_TYPES)
        return cst_err_set(err, "time zone file %s is corrupt: %u local time types (1..%d)", path,
                           h->typecnt, TZIF_MAX_TYPES);
    if (h->charcnt == 0)
        return cst_err_set(err, "time zone file %s is corrupt: no zone abbreviations", path);
    if ((h->isutcnt != 0 && h->isutcnt != h->typecnt) ||
        (h->isstdcnt != 0 && h->isstdcnt != h->typecnt))
        return cst_err_set(err,
                           "time zone file %s is corrupt: %u UT and %u standard indicators "
                           "for %u types",
                           path, h->isutcnt, h->isstdcnt, h->typecnt);
    if (need > len - off)
        return cst_err_set(err,
                           "time zone file %s is truncated or corrupt: its header announces "
                           "%llu bytes of data (%u transitions, %u types), %zu remain",
                           path, (unsigned long long)need, h->timecnt, h->typecnt, len - off);
    return 0;
}

/* Decode one data block (v1 with timesize 4, v2+ with 8) into z. */
static int read_block(struct sched_zone *z, const struct tzif_header *h, unsigned timesize,
                      const unsigned char *p, const char *path, struct cst_err *err)
{
    const unsigned char *idx = p + (size_t)h->timecnt * timesize;
    const unsigned char *types = idx + h->timecnt;
    const unsigned char *indicators =
        types + (size_t)h->typecnt * 6 + h->charcnt + (size_t)h->leapcnt * (timesize + 4);
    size_t i;

    if (h->leapcnt != 0)
        return cst_err_set(err,
                           "time zone file %s has leap-second records (a right/ zone); use "
                           "the plain zone of the same name",
                           path);
    z->ntrans = h->timecnt;
    z->ntypes = h->typecnt;
    if (z->ntrans > 0) {
        z->trans = malloc(z->ntrans * sizeof(*z->trans));
        z->trans_types = malloc(z->ntrans);
        if (z->trans == NULL || z->trans_types == NULL)
            return cst_err_set(err, "out of memory loading time zone file %s", path);
    }
    for (i = 0; i < z->ntrans; i++) {
        z->trans[i] = timesize == 8 ? be64s(p + i * 8) : be32s(p + i * 4);
        if (i > 0 && z->trans[i] <= z->trans[i - 1])
            return cst_err_set(err,
                               "time zone file %s is corrupt: transition %zu is not after "
                               "transition %zu",
                               path, i, i - 1);
        z->trans_types[i] = idx[i];
        if (idx[i] >= h->typecnt)
            return cst_err_set(err,
                               "time zone file %s is corrupt: transition %zu uses type %u of %u",
                               path, i, idx[i], h->typecnt);
    }
    for (i = 0; i < z->ntypes; i++) {
        const unsigned char *t = types + i * 6;
        int32_t utoff = be32s(t);

        if (utoff < UTOFF_MIN || utoff > UTOFF_MAX || t[4] > 1 || t[5] >= h->charcnt)
            return cst_err_set(err,
                               "time zone file %s is corrupt: local time type %zu (offset %ld s, "
                               "dst %u, abbreviation %u)",
                               path, i, (long)utoff, t[4], t[5]);
        z->types[i].utoff = utoff;
        z->types[i].is_dst = t[4];
    }
    for (i = 0; i < (size_t)h->isstdcnt + h->isutcnt; i++) {
        if (indicators[i] > 1)
            return cst_err_set(err, "time zone file %s is corrupt: indicator byte %u", path,
                               indicators[i]);
    }
    return 0;
}

static int read_footer(struct sched_zone *z, const unsigned char *buf, size_t len, size_t off,
                       const char *path, struct cst_err *err)
{
    char footer[FOOTER_MAX + 1];
    size_t n = 0;

    if (off >= len || buf[off] != '\n')
        return cst_err_set(err, "time zone file %s is truncated: the TZ string footer is missing",
                           path);
    off++;
    while (off < len && buf[off] != '\n') {
        if (buf[off] < 0x20 || buf[off] > 0x7e || n == FOOTER_MAX)
            return cst_err_set(err, "time zone file %s is corrupt: bad TZ string footer", path);
        footer[n++] = (char)buf[off++];
    }
    if (off >= len)
        return cst_err_set(err, "time zone file %s is truncated inside its TZ string footer", path);
    footer[n] = '\0';
    if (parse_tz_string(footer, &z->rule) < 0)
        return cst_err_set(err, "time zone file %s has a TZ string footer I cannot parse: \"%s\"",
                           path, footer);
    return 0;
}

static int parse_tzif(struct sched_zone *z, const unsigned char *buf, size_t len, const char *path,
                      struct cst_err *err)
{
    struct tzif_header h1, h2;
    size_t off;

    if (read_header(buf, len, 0, &h1, path, err) < 0)
        return -1;
    if (h1.version == 1) {
        if (check_counts(&h1, 4, len, TZIF_HEADER_BYTES, path, err) < 0)
            return -1;
        return read_block(z, &h1, 4, buf + TZIF_HEADER_BYTES, path, err);
    }
    /* Version 2+: skip the v1 block (only its size matters), use the 64-bit one. */
    if (block_bytes(&h1, 4) > len - TZIF_HEADER_BYTES)
        return cst_err_set(err,
                           "time zone file %s is truncated or corrupt: its version 1 header "
                           "announces %llu bytes of data, %zu remain",
                           path, (unsigned long long)block_bytes(&h1, 4), len - TZIF_HEADER_BYTES);
    off = TZIF_HEADER_BYTES + (size_t)block_bytes(&h1, 4);
    if (read_header(buf, len, off, &h2, path, err) < 0)
        return -1;
    if (h2.version < 2)
        return cst_err_set(err, "time zone file %s is corrupt: second header is version 1", path);
    off += TZIF_HEADER_BYTES;
    if (check_counts(&h2, 8, len, off, path, err) < 0 ||
        read_block(z, &h2, 8, buf + off, path, err) < 0)
        return -1;
    off += (size_t)block_bytes(&h2, 8);
    return read_footer(z, buf, len, off, path, err);
}

/* Read at most TZIF_MAX_BYTES of path; *buf is malloc'ed. */
static int read_small_file(const char *path, unsigned char **buf, size_t *len, struct cst_err *err)
{
    struct stat st;
    unsigned char *b = NULL;
    size_t got = 0;
    int fd, rc = -1;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cst_err_sys(err, "cannot open time zone file %s", path);
        return -1;
    }
    if (fstat(fd, &st) < 0) {
        cst_err_sys(err, "cannot stat time zone file %s", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        cst_err_set(err, "time zone file %s is not a regular file", path);
        goto out;
    }
    b = malloc(TZIF_MAX_BYTES + 1);
    if (b == NULL) {
        cst_err_set(err, "out of memory reading time zone file %s", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, b + got, TZIF_MAX_BYTES + 1 - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cst_err_sys(err, "cannot read time zone file %s", path);
            goto out;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got > TZIF_MAX_BYTES) {
            cst_err_set(err, "time zone file %s is larger than %d bytes; not a TZif file", path,
                        TZIF_MAX_BYTES);
            goto out;
        }
    }
    *buf = b;
    *len = got;
    b = NULL;
    rc = 0;
out:
    free(b);
    if (close(fd) < 0 && rc == 0) {
        cst_err_sys(err, "cannot close time zone file %s", path);
        free(*buf);
        *buf = NULL;
        rc = -1;
    }
    return rc;
}

struct sched_zone *sched_zone_load_file(const char *path, struct cst_err *err)
{
    struct sched_zone *z;
    unsigned char *buf = NULL;
    size_t len = 0;

    if (read_small_file(path, &buf, &len, err) < 0)
        return NULL;
    z = calloc(1, sizeof(*z));
    if (z == NULL) {
        cst_err_set(err, "out of memory loading time zone file %s", path);
    } else if (parse_tzif(z, buf, len, path, err) < 0) {
        sched_zone_free(z);
        z = NULL;
    }
    free(buf);
    return z;
}

/* Zone names are relative paths of [A-Za-z0-9_+-/], without "..". */
static int check_zone_name(const char *name, struct cst_err *err)
{
    size_t n = name == NULL ? 0 : strlen(name);

    if (n == 0)
        return cst_err_set(err, "empty time zone name (expected e.g. America/New_York)");
    if (n > 200 || name[0] == '/' || strstr(name, "..") != NULL)
        return cst_err_set(err,
                           "invalid time zone name \"%.200s\": expected a name under %s such as "
                           "America/New_York, without \"..\" or a leading /",
                           name, SCHED_ZONEINFO_DIR);
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-' || *c == '+' || *c == '/'))
            return cst_err_set(err,
                               "invalid time zone name \"%s\": only letters, digits, _ - + and / "
                               "may appear",
                               name);
    }
    return 0;
}

struct sched_zone *sched_zone_load(const char *name, struct cst_err *err)
{
    char path[sizeof(SCHED_ZONEINFO_DIR) + 256];

    if (check_zone_name(name, err) < 0)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", SCHED_ZONEINFO_DIR, name);
    if (access(path, F_OK) < 0 && errno == ENOENT) {
        cst_err_set(err,
                    "unknown time zone \"%s\": %s does not exist (is package tzdata installed?)",
                    name, path);
        return NULL;
    }
    return sched_zone_load_file(path, err);
}

void sched_zone_free(struct sched_zone *z)
{
    if (z == NULL)
        return;
    free(z->trans);
    free(z->trans_types);
    free(z);
}

/* ---- offset lookup ---- */

/* The type in effect at t, and the next instant after t where it may change. */
static struct tz_type zone_at(const struct sched_zone *z, int64_t t, int64_t *next)
{
    size_t lo, hi;

    t = clamp_t(t);
    *next = INT64_MAX;
    if (z->ntrans == 0 || t >= z->trans[z->ntrans - 1]) {
        if (z->rule.present)
            return rule_at(&z->rule, t, next);
        return z->types[z->ntrans == 0 ? 0 : z->trans_types[z->ntrans - 1]];
    }
    if (t < z->trans[0]) {
        *next = z->trans[0];
        return z->types[0];
    }
    /* Invariant: trans[lo] <= t < trans[hi]. */
    lo = 0;
    hi = z->ntrans - 1;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (z->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    *next = z->trans[hi];
    return z->types[z->trans_types[lo]];
}

int sched_utc_offset(const struct sched_zone *z, int64_t t, int *is_dst)
{
    int64_t next;
    struct tz_type ty = zone_at(z, t, &next);

    if (is_dst != NULL)
        *is_dst = ty.is_dst;
    return ty.utoff;
}

/* Local seconds (wall clock read as if it were UTC) of instant t. */
static int64_t local_secs(const struct sched_zone *z, int64_t t)
{
    return clamp_t(t) + sched_utc_offset(z, t, NULL);
}

void sched_localtime(const struct sched_zone *z, int64_t t, int *year, int *mon, int *day,
                     int *hour, int *min, int *sec)
{
    int64_t l = local_secs(z, t), days = floor_div(l, DAY_SECS), s = l - days * DAY_SECS, y;
    int m, d;

    civil_from_days(days, &y, &m, &d);
    if (year != NULL)
        *year = (int)y;
    if (mon != NULL)
        *mon = m;
    if (day != NULL)
        *day = d;
    if (hour != NULL)
        *hour = (int)(s / 3600);
    if (min != NULL)
        *min = (int)(s / 60 % 60);
    if (sec != NULL)
        *sec = (int)(s % 60);
}

void sched_local_date(const struct sched_zone *z, int64_t t, char date[SCHED_DATE_SIZE])
{
    format_date(floor_div(local_secs(z, t), DAY_SECS), date);
}

/* ---- wall time to instant ---- */

/* See the top of the file. l: local seconds of a wall time within years 1..9999. */
static int64_t local_to_instant(const struct sched_zone *z, int64_t l)
{
    const int64_t window_end = l + 2 * DAY_SECS;
    int64_t seg_start = l - 2 * DAY_SECS, next, gap_instant = 0;
    struct tz_type cur = zone_at(z, seg_start, &next);
    int32_t prev_off = 0;
    int have_prev = 0, have_gap = 0;

    for (;;) {
        int64_t cand = l - cur.utoff;

        if (cand >= seg_start && cand < next)
            return cand;
        if (have_prev && !have_gap && seg_start + prev_off <= l && l < seg_start + cur.utoff) {
            gap_instant = l - prev_off;
            have_gap = 1;
        }
        if (next > window_end || next <= seg_start)
            break;
        prev_off = cur.utoff;
        have_prev = 1;
        seg_start = next;
        cur = zone_at(z, seg_start, &next);
    }
    if (have_gap)
        return gap_instant;
    /* Unreachable for offsets within +-26 h; keep a defined answer anyway. */
    return l - sched_utc_offset(z, l, NULL);
}

static int valid_time(int hour, int min, int sec)
{
    return hour >= 0 && hour <= 23 && min >= 0 && min <= 59 && sec >= 0 && sec <= 59;
}

int sched_local_instant(const struct sched_zone *z, int year, int mon, int day, int hour, int min,
                        int sec, int64_t *instant)
{
    if (year < YEAR_MIN || year > YEAR_MAX || mon < 1 || mon > 12 || day < 1 ||
        day > month_len(year, mon) || !valid_time(hour, min, sec))
        return -1;
    *instant = local_to_instant(z, days_from_civil(year, mon, day) * DAY_SECS + hour * 3600 +
                                       min * 60 + sec);
    return 0;
}

int sched_run_instant(const struct sched_zone *z, int year, int mon, int day, int hour, int min,
                      int64_t *instant)
{
    return sched_local_instant(z, year, mon, day, hour, min, 0, instant);
}

/* ---- the run calendar ---- */

/*
 * Run instant for the date `days` at hh:mm, or -1 if that date has no run:
 * outside years 1..9999, or skipped by the zone so completely that its run
 * would not come before the next date's (Pacific/Apia, 2011-12-30).
 */
static int run_of_day(const struct sched_zone *z, int64_t days, int hour, int min, int64_t *instant)
{
    int64_t t, t_next;

    if (days < days_from_civil(YEAR_MIN, 1, 1) || days > days_from_civil(YEAR_MAX, 12, 31))
        return -1;
    t = local_to_instant(z, days * DAY_SECS + hour * 3600 + min * 60);
    t_next = local_to_instant(z, (days + 1) * DAY_SECS + hour * 3600 + min * 60);
    if (t_next <= t)
        return -1;
    *instant = t;
    return 0;
}

int sched_next_run(const struct sched_zone *z, int hour, int min, int64_t after, int64_t *instant,
                   char date[SCHED_DATE_SIZE])
{
    int64_t d0, dd, t;

    if (!valid_time(hour, min, 0))
        return -1;
    d0 = floor_div(local_secs(z, after), DAY_SECS);
    /* A run for the day before can still be ahead when its time was pushed by a gap. */
    for (dd = d0 - 1; dd <= d0 + 3; dd++) {
        if (run_of_day(z, dd, hour, min, &t) == 0 && t > after) {
            *instant = t;
            format_date(dd, date);
            return 0;
        }
    }
    return -1;
}

int sched_due(const struct sched_zone *z, int hour, int min, const char *last_success_date,
              int64_t now, char due_date[SCHED_DATE_SIZE], int *missed)
{
    int64_t d0, dd, t, last_days = 0;
    int never = last_success_date == NULL || last_success_date[0] == '\0';

    if (missed != NULL)
        *missed = 0;
    if (!valid_time(hour, min, 0))
        return -1;
    if (!never) {
        int y, m, d;

        if (sched_parse_date(last_success_date, &y, &m, &d) < 0)
            return -1;
        last_days = days_from_civil(y, m, d);
    }
    d0 = floor_div(local_secs(z, now), DAY_SECS);
    for (dd = d0 + 1; dd >= d0 - 3; dd--) {
        if (run_of_day(z, dd, hour, min, &t) < 0 || t > now)
            continue;
        /* dd is the latest run at or before now. */
        if (!never && dd <= last_days)
            return 0;
        format_date(dd, due_date);
        if (missed != NULL && !never)
            *missed = (int)(dd - last_days - 1);
        return 1;
    }
    return 0;
}

int sched_parse_date(const char *s, int *year, int *mon, int *day)
{
    int y = 0, m, d;

    if (s == NULL || strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    for (int i = 0; i < 10; i++) {
        if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
            return -1;
    }
    for (int i = 0; i < 4; i++)
        y = y * 10 + (s[i] - '0');
    m = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    if (y < YEAR_MIN || m < 1 || m > 12 || d < 1 || d > month_len(y, m))
        return -1;
    *year = y;
    *mon = m;
    *day = d;
    return 0;
}
