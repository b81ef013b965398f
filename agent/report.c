/*
 * report.c - the report model, its three renderings, signatures and storage
 * (see report.h).
 *
 * The HTML is one page with an inline style sheet and nothing else: no
 * script, no image, no link to anything, so it reads the same in 2033 from a
 * USB stick as today, and prints (each section stays on its page where it
 * can). Every text that reaches it is escaped; figures carry their unit in
 * the cell itself, not only in the header, so a printed page cut mid-table
 * still says what a number means.
 */
#include "report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/dests.h"
#include "agent/keys.h"
#include "agent/manifest.h"
#include "common/json.h"
#include "common/util.h"

#ifndef CUSTODIAN_VERSION
#error "CUSTODIAN_VERSION is set by the Makefile from packaging/debian/changelog"
#endif

#define SIG_HEADER "custodian report-signature v1"
#define REPORTS_PREFIX "backups/reports/"
#define REPORT_MAX_BYTES (64u << 20) /* a report to verify; a real one is well under 1 MiB */

const char *report_status_name(enum report_status s)
{
    switch (s) {
    case REPORT_PASSED:
        return "passed";
    case REPORT_FAILED:
        return "failed";
    case REPORT_NOT_DONE:
        return "not done";
    case REPORT_NOT_APPLICABLE:
        return "not applicable";
    }
    return "?";
}

/* --- the model --- */

struct report *report_new(const char *kind, const char *title, const char *subject,
                          const char *timezone)
{
    struct report *r = util_xcalloc(1, sizeof(*r));
    char host[256] = "";

    r->kind = util_xstrdup(kind);
    r->title = util_xstrdup(title);
    r->subject = util_xstrdup(subject);
    r->timezone = util_xstrdup(timezone ? timezone : "UTC");
    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "unknown");
    r->host = util_xstrdup(host);
    r->generated_at = util_now_ms();
    r->verdict = REPORT_NOT_DONE;
    return r;
}

static void value_clear(struct report_value *v)
{
    free(v->text);
    memset(v, 0, sizeof(*v));
}

static void facts_free(struct report_fact *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(f[i].key);
        free(f[i].label);
        free(f[i].unit);
        value_clear(&f[i].v);
    }
    free(f);
}

void report_free(struct report *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_sections; i++) {
        struct report_section *s = r->sections[i];

        if (s == NULL)
            continue;

        free(s->id);
        free(s->title);
        free(s->summary);
        free(s->table_note);
        facts_free(s->facts, s->n_facts);
        for (size_t c = 0; c < s->n_cols; c++) {
            free(s->cols[c].key);
            free(s->cols[c].title);
            free(s->cols[c].unit);
        }
        free(s->cols);
        for (size_t c = 0; c < s->n_rows * s->n_cols; c++)
            value_clear(&s->cells[c]);
        free(s->cells);
        free(s);
    }
    free(r->sections);
    facts_free(r->facts, r->n_facts);
    free(r->kind);
    free(r->title);
    free(r->subject);
    free(r->timezone);
    free(r->host);
    free(r->verdict_text);
    free(r);
}

struct report_section *report_section_add(struct report *r, const char *id, const char *title)
{
    struct report_section *s;

    /* Each section is its own allocation: a pointer to one stays good as more are added. */
    r->sections = util_xrealloc(r->sections, (r->n_sections + 1) * sizeof(*r->sections));
    s = util_xcalloc(1, sizeof(*s));
    r->sections[r->n_sections++] = s;
    s->id = util_xstrdup(id);
    s->title = util_xstrdup(title);
    s->status = REPORT_NOT_DONE;
    s->counts = 1;
    return s;
}

void report_set(struct report_section *s, enum report_status status, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    s->status = status;
    free(s->summary);
    s->summary = util_xstrdup(buf);
}

static struct report_fact *fact_add(struct report *r, struct report_section *s, const char *key,
                                    const char *label, const char *unit)
{
    struct report_fact **list = s ? &s->facts : &r->facts;
    size_t *n = s ? &s->n_facts : &r->n_facts;
    struct report_fact *f;

    *list = util_xrealloc(*list, (*n + 1) * sizeof(**list));
    f = &(*list)[(*n)++];
    memset(f, 0, sizeof(*f));
    f->key = util_xstrdup(key);
    f->label = util_xstrdup(label);
    f->unit = unit ? util_xstrdup(unit) : NULL;
    return f;
}

void report_fact_text(struct report *r, struct report_section *s, const char *key,
                      const char *label, const char *text)
{
    struct report_fact *f = fact_add(r, s, key, label, NULL);

    f->v.type = RV_TEXT;
    f->v.text = util_xstrdup(text ? text : "");
}

void report_fact_int(struct report *r, struct report_section *s, const char *key, const char *label,
                     int64_t v, const char *unit)
{
    struct report_fact *f = fact_add(r, s, key, label, unit);

    f->v.type = RV_INT;
    f->v.i = v;
}

void report_fact_time(struct report *r, struct report_section *s, const char *key,
                      const char *label, int64_t ms)
{
    struct report_fact *f = fact_add(r, s, key, label, NULL);

    f->v.type = ms > 0 ? RV_TIME : RV_NONE;
    f->v.i = ms;
}

void report_fact_bool(struct report *r, struct report_section *s, const char *key,
                      const char *label, int v)
{
    struct report_fact *f = fact_add(r, s, key, label, NULL);

    f->v.type = RV_BOOL;
    f->v.i = v != 0;
}

void report_columns(struct report_section *s, ...)
{
    va_list ap;
    const char *key;

    va_start(ap, s);
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *title = va_arg(ap, const char *), *unit = va_arg(ap, const char *);

        s->cols = util_xrealloc(s->cols, (s->n_cols + 1) * sizeof(*s->cols));
        s->cols[s->n_cols].key = util_xstrdup(key);
        s->cols[s->n_cols].title = util_xstrdup(title);
        s->cols[s->n_cols].unit = unit ? util_xstrdup(unit) : NULL;
        s->n_cols++;
    }
    va_end(ap);
}

void report_row(struct report_section *s, size_t max_rows)
{
    s->rows_total++;
    if (s->n_rows >= max_rows)
        return;
    s->cells = util_xrealloc(s->cells, (s->n_rows + 1) * s->n_cols * sizeof(*s->cells));
    memset(&s->cells[s->n_rows * s->n_cols], 0, s->n_cols * sizeof(*s->cells));
    s->n_rows++;
}

/* The cell of the last row, or NULL when that row was not kept. */
static struct report_value *cell(struct report_section *s, size_t col)
{
    if (col >= s->n_cols || s->n_rows == 0 || s->rows_total != (int64_t)s->n_rows)
        return NULL;
    value_clear(&s->cells[(s->n_rows - 1) * s->n_cols + col]);
    return &s->cells[(s->n_rows - 1) * s->n_cols + col];
}

void report_cell_text(struct report_section *s, size_t col, const char *text)
{
    struct report_value *v = cell(s, col);

    if (v) {
        v->type = RV_TEXT;
        v->text = util_xstrdup(text ? text : "");
    }
}

void report_cell_int(struct report_section *s, size_t col, int64_t i)
{
    struct report_value *v = cell(s, col);

    if (v) {
        v->type = RV_INT;
        v->i = i;
    }
}

void report_cell_time(struct report_section *s, size_t col, int64_t ms)
{
    struct report_value *v = cell(s, col);

    if (v) {
        v->type = ms > 0 ? RV_TIME : RV_NONE;
        v->i = ms;
    }
}

void report_cell_status(struct report_section *s, size_t col, enum report_status st)
{
    struct report_value *v = cell(s, col);

    if (v) {
        v->type = RV_STATUS;
        v->i = st;
    }
}

void report_cell_bool(struct report_section *s, size_t col, int b)
{
    struct report_value *v = cell(s, col);

    if (v) {
        v->type = RV_BOOL;
        v->i = b != 0;
    }
}

void report_decide(struct report *r, const char *fmt, ...)
{
    int failed = 0, not_done = 0;

    for (size_t i = 0; i < r->n_sections; i++) {
        if (!r->sections[i]->counts)
            continue;
        failed += r->sections[i]->status == REPORT_FAILED;
        not_done += r->sections[i]->status == REPORT_NOT_DONE;
    }
    r->verdict = failed ? REPORT_FAILED : not_done ? REPORT_NOT_DONE : REPORT_PASSED;
    free(r->verdict_text);
    r->verdict_text = NULL;
    if (fmt) {
        char buf[4096];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        r->verdict_text = util_xstrdup(buf);
    }
}

/* --- JSON --- */

static void json_value(struct json *j, const struct report_value *v)
{
    switch (v->type) {
    case RV_NONE:
        json_null(j);
        break;
    case RV_TEXT:
        json_str(j, v->text);
        break;
    case RV_INT:
        json_int(j, v->i);
        break;
    case RV_TIME:
        json_time(j, v->i);
        break;
    case RV_STATUS:
        json_str(j, report_status_name((enum report_status)v->i));
        break;
    case RV_BOOL:
        json_bool(j, (int)v->i);
        break;
    }
}

static void json_facts(struct json *j, const struct report_fact *f, size_t n)
{
    json_arr_begin(j);
    for (size_t i = 0; i < n; i++) {
        json_obj_begin(j);
        json_key(j, "key");
        json_str(j, f[i].key);
        json_key(j, "label");
        json_str(j, f[i].label);
        json_key(j, "value");
        json_value(j, &f[i].v);
        json_key(j, "unit");
        json_str(j, f[i].unit);
        json_obj_end(j);
    }
    json_arr_end(j);
}

char *report_json(const struct report *r)
{
    struct json j;
    char *out;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "report");
    json_str(&j, r->kind);
    json_key(&j, "format");
    json_int(&j, 1);
    json_key(&j, "title");
    json_str(&j, r->title);
    json_key(&j, "subject");
    json_str(&j, r->subject);
    json_key(&j, "verdict");
    json_str(&j, report_status_name(r->verdict));
    json_key(&j, "verdict_text");
    json_str(&j, r->verdict_text);
    json_key(&j, "generated_at");
    json_time(&j, r->generated_at);
    json_key(&j, "timezone");
    json_str(&j, r->timezone);
    json_key(&j, "host");
    json_str(&j, r->host);
    json_key(&j, "custodian_version");
    json_str(&j, CUSTODIAN_VERSION);
    json_key(&j, "facts");
    json_facts(&j, r->facts, r->n_facts);
    json_key(&j, "sections");
    json_arr_begin(&j);
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];

        json_obj_begin(&j);
        json_key(&j, "id");
        json_str(&j, s->id);
        json_key(&j, "title");
        json_str(&j, s->title);
        json_key(&j, "status");
        json_str(&j, report_status_name(s->status));
        json_key(&j, "counts_for_verdict");
        json_bool(&j, s->counts);
        json_key(&j, "summary");
        json_str(&j, s->summary);
        json_key(&j, "facts");
        json_facts(&j, s->facts, s->n_facts);
        json_key(&j, "columns");
        json_arr_begin(&j);
        for (size_t c = 0; c < s->n_cols; c++) {
            json_obj_begin(&j);
            json_key(&j, "key");
            json_str(&j, s->cols[c].key);
            json_key(&j, "title");
            json_str(&j, s->cols[c].title);
            json_key(&j, "unit");
            json_str(&j, s->cols[c].unit);
            json_obj_end(&j);
        }
        json_arr_end(&j);
        json_key(&j, "rows");
        json_arr_begin(&j);
        for (size_t row = 0; row < s->n_rows; row++) {
            json_obj_begin(&j);
            for (size_t c = 0; c < s->n_cols; c++) {
                json_key(&j, s->cols[c].key);
                json_value(&j, &s->cells[row * s->n_cols + c]);
            }
            json_obj_end(&j);
        }
        json_arr_end(&j);
        json_key(&j, "rows_total");
        json_int(&j, s->rows_total);
        json_key(&j, "table_note");
        json_str(&j, s->table_note);
        json_obj_end(&j);
    }
    json_arr_end(&j);
    json_obj_end(&j);
    out = util_printf("%s\n", j.buf);
    json_free(&j);
    return out;
}

/* --- HTML --- */

struct buf {
    char *s;
    size_t len, cap;
};

static void put_n(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = util_xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void put(struct buf *b, const char *s)
{
    put_n(b, s, strlen(s));
}

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        put_n(b, tmp, (size_t)n);
        return;
    }
    {
        char *big = util_xmalloc((size_t)n + 1);

        va_start(ap, fmt);
        vsnprintf(big, (size_t)n + 1, fmt, ap);
        va_end(ap);
        put_n(b, big, (size_t)n);
        free(big);
    }
}

/* Text as HTML: the five characters that could be markup become entities. */
static void esc(struct buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            put(b, "&amp;");
            break;
        case '<':
            put(b, "&lt;");
            break;
        case '>':
            put(b, "&gt;");
            break;
        case '"':
            put(b, "&quot;");
            break;
        case '\'':
            put(b, "&#39;");
            break;
        default:
            put_n(b, s, 1);
        }
    }
}

/* A CSS class name for a status. */
static const char *status_class(enum report_status s)
{
    switch (s) {
    case REPORT_PASSED:
        return "passed";
    case REPORT_FAILED:
        return "failed";
    case REPORT_NOT_DONE:
        return "not-done";
    case REPORT_NOT_APPLICABLE:
        return "na";
    }
    return "na";
}

/* 1234567 -> "1,234,567" */
static void group_digits(int64_t v, char *out, size_t outlen)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%" PRId64, v < 0 ? -v : v), o = 0;

    if (v < 0 && o < (int)outlen - 1)
        out[o++] = '-';
    for (int i = 0; i < n && o < (int)outlen - 1; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o < (int)outlen - 1)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

/* A figure with its unit, and a readable form beside it for bytes and durations. */
static void html_figure(struct buf *b, int64_t v, const char *unit)
{
    char num[40];

    group_digits(v, num, sizeof(num));
    put(b, num);
    if (unit) {
        put(b, "&nbsp;");
        esc(b, unit);
    }
    if (unit && strcmp(unit, "bytes") == 0 && v >= 1024) {
        static const char *const names[] = {"KiB", "MiB", "GiB", "TiB"};
        double x = (double)v / 1024.0;
        int k = 0;

        while (x >= 1024.0 && k < 3) {
            x /= 1024.0;
            k++;
        }
        putf(b, " (%.1f&nbsp;%s)", x, names[k]);
    } else if (unit && (strcmp(unit, "ms") == 0 && v >= 10000)) {
        putf(b, " (%.1f&nbsp;min)", (double)v / 60000.0);
    } else if (unit && strcmp(unit, "s") == 0 && v >= 600) {
        putf(b, " (%.1f&nbsp;h)", (double)v / 3600.0);
    } else if (unit && strcmp(unit, "bytes/s") == 0 && v >= 1000000) {
        putf(b, " (%.1f&nbsp;MB/s)", (double)v / 1e6);
    }
}

/* A number with a unit is a figure (right-aligned, its unit beside it); one without is an
 * identifier (a catalog version), shown as text. */
static void html_value(struct buf *b, const struct report_value *v, const char *unit)
{
    char when[40];

    switch (v->type) {
    case RV_NONE:
        put(b, "&mdash;");
        break;
    case RV_TEXT:
        esc(b, v->text);
        break;
    case RV_INT:
        html_figure(b, v->i, unit);
        break;
    case RV_TIME:
        util_format_ms(v->i, when, sizeof(when));
        esc(b, when);
        put(b, " UTC");
        break;
    case RV_STATUS:
        putf(b, "<span class=\"st %s\">", status_class((enum report_status)v->i));
        esc(b, report_status_name((enum report_status)v->i));
        put(b, "</span>");
        break;
    case RV_BOOL:
        put(b, v->i ? "yes" : "<strong>no</strong>");
        break;
    }
}

static void html_facts(struct buf *b, const struct report_fact *f, size_t n)
{
    if (n == 0)
        return;
    put(b, "<table class=\"facts\">\n<tbody>\n");
    for (size_t i = 0; i < n; i++) {
        put(b, "<tr><th scope=\"row\">");
        esc(b, f[i].label);
        put(b, "</th><td");
        if (f[i].v.type == RV_INT && f[i].unit)
            put(b, " class=\"num\"");
        put(b, ">");
        html_value(b, &f[i].v, f[i].unit);
        put(b, "</td></tr>\n");
    }
    put(b, "</tbody>\n</table>\n");
}

static const char html_style[] =
    "body{font-family:\"DejaVu Sans\",Arial,sans-serif;font-size:11pt;color:#111;"
    "max-width:64em;margin:1.5em auto;padding:0 1em;line-height:1.35}"
    "h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.15em;margin:1.4em 0 .4em;"
    "border-bottom:1px solid #888}"
    ".verdict{font-size:1.2em;padding:.6em .8em;border:3px solid #555;margin:.8em 0}"
    ".verdict.passed{border-color:#1b6e2c;background:#e7f4ea}"
    ".verdict.failed{border-color:#a4001d;background:#fbe9ec}"
    ".verdict.not-done{border-color:#8a6500;background:#fdf5e0}"
    ".st{font-weight:bold;padding:0 .3em;border:1px solid #777;white-space:nowrap}"
    ".st.passed{color:#1b6e2c;border-color:#1b6e2c}.st.failed{color:#a4001d;"
    "border-color:#a4001d}.st.not-done{color:#8a6500;border-color:#8a6500}"
    ".st.na{color:#555}"
    "table{border-collapse:collapse;width:100%;margin:.4em 0 1em}"
    "th,td{border:1px solid #999;padding:.2em .45em;text-align:left;vertical-align:top}"
    "thead th{background:#eee}td.num{text-align:right;white-space:nowrap}"
    "table.facts{width:auto}table.facts th{font-weight:normal;background:#f6f6f6}"
    ".note{font-size:.9em;color:#333}footer{margin-top:2em;font-size:.85em;color:#333;"
    "border-top:1px solid #888;padding-top:.5em}"
    "@media print{body{max-width:none;margin:0}section{break-inside:avoid-page}"
    "thead{display:table-header-group}tr{break-inside:avoid}}";

char *report_html(const struct report *r)
{
    struct buf b = {NULL, 0, 0};
    char when[40];

    util_format_ms(r->generated_at, when, sizeof(when));
    put(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>");
    esc(&b, r->title);
    put(&b, " ");
    esc(&b, r->subject);
    put(&b, "</title>\n<style>");
    put(&b, html_style);
    put(&b, "</style>\n</head>\n<body>\n<header>\n<h1>");
    esc(&b, r->title);
    put(&b, ": ");
    esc(&b, r->subject);
    putf(&b, "</h1>\n<p class=\"verdict %s\" id=\"verdict\"><strong>Verdict: ",
         status_class(r->verdict));
    esc(&b, report_status_name(r->verdict));
    put(&b, "</strong>");
    if (r->verdict_text) {
        put(&b, " &mdash; ");
        esc(&b, r->verdict_text);
    }
    put(&b, "</p>\n");
    html_facts(&b, r->facts, r->n_facts);
    put(&b, "</header>\n");
    if (r->n_sections) {
        put(&b, "<h2>Summary</h2>\n<table class=\"summary\">\n<thead><tr><th scope=\"col\">Check"
                "</th><th scope=\"col\">Result</th><th scope=\"col\">Why</th></tr></thead>\n"
                "<tbody>\n");
        for (size_t i = 0; i < r->n_sections; i++) {
            const struct report_section *s = r->sections[i];

            putf(&b, "<tr><td><a href=\"#%s\">", s->id);
            esc(&b, s->title);
            putf(&b, "</a></td><td><span class=\"st %s\">", status_class(s->status));
            esc(&b, report_status_name(s->status));
            put(&b, "</span>");
            if (!s->counts)
                put(&b, " (does not decide the verdict)");
            put(&b, "</td><td>");
            esc(&b, s->summary);
            put(&b, "</td></tr>\n");
        }
        put(&b, "</tbody>\n</table>\n");
    }
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];

        putf(&b, "<section id=\"%s\">\n<h2>%zu. ", s->id, i + 1);
        esc(&b, s->title);
        putf(&b, " <span class=\"st %s\">", status_class(s->status));
        esc(&b, report_status_name(s->status));
        put(&b, "</span></h2>\n<p>");
        esc(&b, s->summary ? s->summary : "");
        put(&b, "</p>\n");
        html_facts(&b, s->facts, s->n_facts);
        if (s->n_cols && s->n_rows) {
            put(&b, "<table>\n<thead><tr>");
            for (size_t c = 0; c < s->n_cols; c++) {
                put(&b, "<th scope=\"col\">");
                esc(&b, s->cols[c].title);
                if (s->cols[c].unit) {
                    put(&b, " (");
                    esc(&b, s->cols[c].unit);
                    put(&b, ")");
                }
                put(&b, "</th>");
            }
            put(&b, "</tr></thead>\n<tbody>\n");
            for (size_t row = 0; row < s->n_rows; row++) {
                put(&b, "<tr>");
                for (size_t c = 0; c < s->n_cols; c++) {
                    const struct report_value *v = &s->cells[row * s->n_cols + c];

                    put(&b, v->type == RV_INT && s->cols[c].unit ? "<td class=\"num\">" : "<td>");
                    html_value(&b, v, s->cols[c].unit);
                    put(&b, "</td>");
                }
                put(&b, "</tr>\n");
            }
            put(&b, "</tbody>\n</table>\n");
        }
        if (s->rows_total > (int64_t)s->n_rows)
            putf(&b,
                 "<p class=\"note\">The table shows %zu of %" PRId64
                 " rows; the JSON report has the same rows and the totals above count all.</p>\n",
                 s->n_rows, s->rows_total);
        if (s->table_note) {
            put(&b, "<p class=\"note\">");
            esc(&b, s->table_note);
            put(&b, "</p>\n");
        }
        put(&b, "</section>\n");
    }
    put(&b, "<footer>\n<p>Made by custodian ");
    esc(&b, CUSTODIAN_VERSION);
    put(&b, " on ");
    esc(&b, r->host);
    put(&b, " at ");
    esc(&b, when);
    put(&b, " UTC (dates in the checks are in ");
    esc(&b, r->timezone);
    put(&b, "). This page and its JSON twin are each signed with the installation's Ed25519 "
            "signing key (the .sig file beside each): <code>custodian verify --report "
            "FILE</code> checks one. A check marked &ldquo;not done&rdquo; was not performed "
            "and proves nothing.</p>\n</footer>\n</body>\n</html>\n");
    return b.s;
}

/* --- text --- */

static void text_value(FILE *out, const struct report_value *v, const char *unit)
{
    char when[40];

    switch (v->type) {
    case RV_NONE:
        fputs("-", out);
        break;
    case RV_TEXT:
        fputs(v->text, out);
        break;
    case RV_INT:
        fprintf(out, "%" PRId64 "%s%s", v->i, unit ? " " : "", unit ? unit : "");
        break;
    case RV_TIME:
        util_format_ms(v->i, when, sizeof(when));
        fputs(when, out);
        break;
    case RV_STATUS:
        fputs(report_status_name((enum report_status)v->i), out);
        break;
    case RV_BOOL:
        fputs(v->i ? "yes" : "NO", out);
        break;
    }
}

void report_print_text(const struct report *r, FILE *out)
{
    char upper[32];
    size_t k;

    for (k = 0; report_status_name(r->verdict)[k] && k < sizeof(upper) - 1; k++)
        upper[k] = (char)(report_status_name(r->verdict)[k] & ~0x20);
    upper[k] = '\0';
    fprintf(out, "%s %s: %s", r->title, r->subject, upper);
    if (r->verdict_text)
        fprintf(out, " - %s", r->verdict_text);
    fputc('\n', out);
    for (size_t i = 0; i < r->n_facts; i++) {
        fprintf(out, "  %-34s ", r->facts[i].label);
        text_value(out, &r->facts[i].v, r->facts[i].unit);
        fputc('\n', out);
    }
    for (size_t i = 0; i < r->n_sections; i++) {
        const struct report_section *s = r->sections[i];

        fprintf(out, "\n%-14s %s%s\n  %s\n", report_status_name(s->status), s->title,
                s->counts ? "" : " (does not decide the verdict)", s->summary ? s->summary : "");
        for (size_t f = 0; f < s->n_facts; f++) {
            fprintf(out, "  %-34s ", s->facts[f].label);
            text_value(out, &s->facts[f].v, s->facts[f].unit);
            fputc('\n', out);
        }
    }
}

/* --- signatures --- */

static void sha256(const void *buf, size_t len, unsigned char out[32])
{
    unsigned int n = 32;

    EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

static void signed_message(const unsigned char sha[32], unsigned char msg[sizeof(SIG_HEADER) + 32])
{
    /* The header line (with its newline in place of the NUL) binds the signature to
     * this use of the key: a manifest's signature can never pass for a report's. */
    memcpy(msg, SIG_HEADER "\n", sizeof(SIG_HEADER));
    memcpy(msg + sizeof(SIG_HEADER), sha, 32);
}

char *report_sign(const char *text, size_t len, const char *name, const char *signing_key_path,
                  struct cst_err *err)
{
    unsigned char *sk = sodium_malloc(64), sha[32], msg[sizeof(SIG_HEADER) + 32], sig[64];
    char sha_hex[65], sig_hex[129];

    if (sk == NULL) {
        cst_err_set(err, "out of memory");
        return NULL;
    }
    if (keys_load_secret(signing_key_path, "signing-secret-key", sk, 64, err) < 0) {
        sodium_free(sk);
        return NULL;
    }
    sha256(text, len, sha);
    signed_message(sha, msg);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
    sodium_free(sk);
    util_hex(sha, 32, sha_hex);
    util_hex(sig, 64, sig_hex);
    return util_printf(SIG_HEADER
                       "\nfile: %s\nsha256: %s\nsize: %zu\nsigns: Ed25519 over \"" SIG_HEADER
                       "\\n\" || SHA-256(file)\nsignature: %s\n",
                       name, sha_hex, len, sig_hex);
}

/* The value of "field: " in sig_text (into out), or -1. */
static int sig_field(const char *sig_text, const char *field, char *out, size_t outlen)
{
    size_t n = strlen(field);

    for (const char *line = sig_text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);

        if (len > n + 2 && strncmp(line, field, n) == 0 && line[n] == ':' && line[n + 1] == ' ') {
            if (len - n - 2 >= outlen)
                return -1;
            memcpy(out, line + n + 2, len - n - 2);
            out[len - n - 2] = '\0';
            return 0;
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

int report_signature_check(const char *text, size_t len, const char *sig_text,
                           const unsigned char pk[32], struct cst_err *err)
{
    unsigned char sha[32], want[32], sig[64], msg[sizeof(SIG_HEADER) + 32];
    char field[256];

    if (strncmp(sig_text, SIG_HEADER "\n", sizeof(SIG_HEADER)) != 0)
        return cst_err_set(err, "not a custodian report signature (no \"%s\" line)", SIG_HEADER);
    if (sig_field(sig_text, "signature", field, sizeof(field)) < 0 ||
        util_unhex(field, sig, 64) < 0)
        return cst_err_set(err, "the signature file has no valid signature line");
    sha256(text, len, sha);
    if (sig_field(sig_text, "sha256", field, sizeof(field)) == 0 &&
        util_unhex(field, want, 32) == 0 && memcmp(want, sha, 32) != 0)
        return cst_err_set(err, "the file is not the one that was signed: its SHA-256 differs "
                                "from the one the signature file names (changed after signing)");
    signed_message(sha, msg);
    if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0)
        return cst_err_set(err, "BAD SIGNATURE: the file was changed, or it was not signed by "
                                "this installation's signing key");
    return 0;
}

/* --- storage --- */

/* Write text to path durably (temp, fsync, link: an existing name is never replaced,
 * fsync of the folder). */
static int write_new_file(const char *dir, const char *name, const char *text, size_t len,
                          struct cst_err *err)
{
    char *final = util_join(dir, name), *tmp = util_printf("%s/.%s.XXXXXX", dir, name);
    int fd, rc = -1;

    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        cst_err_sys(err, "cannot create %s", tmp);
        goto out;
    }
    if (fchmod(fd, 0640) < 0 || util_write_all(fd, text, len) < 0 || fsync(fd) < 0) {
        cst_err_sys(err, "cannot write %s", tmp);
        goto out;
    }
    if (link(tmp, final) < 0) {
        cst_err_sys(err, "cannot keep the report as %s", final);
        goto out;
    }
    rc = util_fsync_dir(dir, err);
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(final);
    return rc;
}

int report_store(struct cli *cli, const struct report *r, const char *month, const char *base,
                 struct report_stored *out, struct cst_err *err)
{
    const struct cfg *cfg = cli->cfg;
    char *json = report_json(r), *html = report_html(r);
    char *names[4], *texts[4], *dir = NULL, *sub;
    struct dests_item items[4];
    unsigned char *ok = NULL;
    char *dest_errors = NULL;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    memset(items, 0, sizeof(items));
    names[0] = util_printf("%s.json", base);
    names[1] = util_printf("%s.json.sig", base);
    names[2] = util_printf("%s.html", base);
    names[3] = util_printf("%s.html.sig", base);
    texts[0] = json;
    texts[2] = html;
    texts[1] = report_sign(json, strlen(json), names[0], cfg->signing_key, err);
    texts[3] = texts[1] ? report_sign(html, strlen(html), names[2], cfg->signing_key, err) : NULL;
    if (texts[1] == NULL || texts[3] == NULL)
        goto out;
    sub = util_printf("reports/%.4s/%.2s", month, month + 5);
    dir = cli_state_path(cli, sub);
    free(sub);
    if (util_mkdir_p(dir, 0700, err) < 0)
        goto out;
    for (int i = 0; i < 4; i++)
        if (write_new_file(dir, names[i], texts[i], strlen(texts[i]), err) < 0)
            goto out;
    out->json_path = util_join(dir, names[0]);
    out->html_path = util_join(dir, names[2]);
    out->json_key = util_printf(REPORTS_PREFIX "%.4s/%.2s/%s", month, month + 5, names[0]);
    out->html_key = util_printf(REPORTS_PREFIX "%.4s/%.2s/%s", month, month + 5, names[2]);
    /* Plain files (they hold no patient data): the local copies are what is sent. */
    for (int i = 0; i < 4; i++) {
        unsigned char sha[32];

        sha256(texts[i], strlen(texts[i]), sha);
        items[i].spool_path = util_join(dir, names[i]);
        items[i].remote_key =
            util_printf(REPORTS_PREFIX "%.4s/%.2s/%s", month, month + 5, names[i]);
        items[i].stored_size = items[i].plain_size = strlen(texts[i]);
        memcpy(items[i].stored_sha256, sha, 32);
        memcpy(items[i].plain_sha256, sha, 32);
        items[i].no_overwrite = 1;
    }
    ok = util_xcalloc(cfg->n_dests * 4 + 1, 1);
    dests_put_blocking(cfg, items, 4, ~0u, NULL, ok, &dest_errors);
    out->stored_on = util_xstrdup("");
    for (size_t d = 0; d < cfg->n_dests; d++) {
        char *more;

        if (!(ok[d * 4] && ok[d * 4 + 1] && ok[d * 4 + 2] && ok[d * 4 + 3]))
            continue;
        more = util_printf("%s%s%s", out->stored_on, out->stored_on[0] ? ", " : "",
                           cfg->dests[d].name);
        free(out->stored_on);
        out->stored_on = more;
    }
    out->errors = dest_errors;
    dest_errors = NULL;
    rc = 0;
out:
    for (int i = 0; i < 4; i++) {
        free(names[i]);
        free((char *)items[i].spool_path);
        free((char *)items[i].remote_key);
    }
    free(texts[1]);
    free(texts[3]);
    free(json);
    free(html);
    free(dir);
    free(ok);
    free(dest_errors);
    if (rc < 0)
        report_stored_free(out);
    return rc;
}

void report_stored_free(struct report_stored *s)
{
    free(s->json_path);
    free(s->html_path);
    free(s->json_key);
    free(s->html_key);
    free(s->stored_on);
    free(s->errors);
    memset(s, 0, sizeof(*s));
}

/* The whole of a small file, NUL-terminated; NULL with err. */
static char *read_small(const char *path, size_t max, size_t *len, struct cst_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    char *text;
    ssize_t n;

    if (fd < 0) {
        cst_err_sys(err, "cannot read %s", path);
        return NULL;
    }
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > max) {
        cst_err_set(err, "%s is not a report (%s)", path,
                    S_ISREG(sb.st_mode) ? "too large" : "not a regular file");
        close(fd);
        return NULL;
    }
    text = util_xmalloc((size_t)sb.st_size + 1);
    n = util_read_full(fd, text, (size_t)sb.st_size);
    close(fd);
    if (n != (ssize_t)sb.st_size) {
        cst_err_sys(err, "cannot read %s", path);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    *len = (size_t)n;
    return text;
}

int report_verify_file(struct cli *cli, const char *path)
{
    unsigned char pk[32];
    struct cst_err err;
    char *text = NULL, *sig = NULL, *sig_path = util_printf("%s.sig", path);
    char signed_name[256], *copy = util_xstrdup(path), *catalog_path = NULL;
    size_t len = 0, sig_len = 0;
    int rc;

    if ((rc = cli_load_config(cli)) != EXIT_OK)
        goto out;
    if (sodium_init() < 0) {
        rc = cli_fail(EXIT_FAILED, "libsodium failed to initialise");
        goto out;
    }
    if (manifest_signing_public(cli->cfg, pk, &err) < 0) {
        rc = cli_fail(EXIT_USAGE, "%s", err.msg);
        goto out;
    }
    if ((text = read_small(path, REPORT_MAX_BYTES, &len, &err)) == NULL ||
        (sig = read_small(sig_path, 64 * 1024, &sig_len, &err)) == NULL) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    if (report_signature_check(text, len, sig, pk, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s: %s", path, err.msg);
        goto out;
    }
    if (sig_field(sig, "file", signed_name, sizeof(signed_name)) == 0 &&
        strcmp(signed_name, basename(copy)) != 0)
        printf("note: signed under the name %s\n", signed_name);
    printf("%s: signature good (Ed25519, this installation's signing key)\n", path);
    rc = EXIT_OK;
out:
    /* An auditor may check a report on a host without a catalog: none is made for it. */
    if (cli->cfg && (catalog_path = cli_state_path(cli, "catalog.db")) != NULL &&
        access(catalog_path, F_OK) == 0 && cli_open_catalog(cli, 0) == EXIT_OK) {
        struct json j;
        struct cst_err aerr;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "report");
        json_str(&j, path);
        json_key(&j, "outcome");
        json_str(&j, rc == EXIT_OK ? "ok" : "failed");
        json_obj_end(&j);
        if (catalog_audit(cli->cat, "operator", "verify_report", j.buf, &aerr) < 0)
            fprintf(stderr, "custodian: the audit row was not written: %s\n", aerr.msg);
        json_free(&j);
    }
    free(text);
    free(sig);
    free(sig_path);
    free(copy);
    free(catalog_path);
    return rc;
}
