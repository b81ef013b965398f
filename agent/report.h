/*
 * report.h - the reports an auditor keeps (the monthly restore test, the
 * plan's checklist): one document model, rendered three ways from the same
 * data so that they can never disagree:
 *
 *   JSON  for machines: every figure a number, its unit named beside it;
 *   HTML  for people: one self-contained page (no scripts, no external
 *         resources, printable), the verdict on top, a table per section,
 *         every figure with its unit;
 *   text  for the terminal.
 *
 * A stored report is signed: REPORT.json.sig and REPORT.html.sig hold an
 * Ed25519 signature by [keys] signing_key over "custodian report-signature
 * v1\n" followed by the 32 bytes of the file's SHA-256 (docs/operations.md
 * shows how to check one without custodian). Reports hold no file names and
 * no document contents: they are stored unencrypted on every destination
 * (backups/reports/YYYY/MM/) so that an auditor can read them without the
 * backup secret key; files are named by catalog version and content hash.
 */
#ifndef CST_REPORT_H
#define CST_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/cli.h"
#include "common/err.h"

enum report_status {
    REPORT_PASSED = 0,
    REPORT_FAILED,
    REPORT_NOT_DONE,       /* skipped or impossible here: never counted as passed */
    REPORT_NOT_APPLICABLE, /* nothing to check (no snapshot exists yet, no archive tier) */
};
/* "passed", "failed", "not done", "not applicable". */
const char *report_status_name(enum report_status s);

enum report_value_type { RV_NONE = 0, RV_TEXT, RV_INT, RV_TIME, RV_STATUS, RV_BOOL };

struct report_value {
    enum report_value_type type;
    char *text; /* RV_TEXT */
    int64_t i;  /* RV_INT (in the column's or fact's unit), RV_TIME (ms), RV_STATUS, RV_BOOL */
};

/* A named figure: "total time: 1234 ms". unit NULL: text, times, yes/no. */
struct report_fact {
    char *key, *label, *unit;
    struct report_value v;
};

struct report_column {
    char *key, *title, *unit;
};

struct report_section {
    char *id, *title;
    enum report_status status;
    int counts;    /* its status decides the verdict (1 unless said otherwise) */
    char *summary; /* one sentence: what was checked and what came of it, or why not */
    struct report_fact *facts;
    size_t n_facts;
    struct report_column *cols;
    size_t n_cols;
    struct report_value *cells; /* n_rows * n_cols, row-major */
    size_t n_rows;
    int64_t rows_total; /* rows there were; more than n_rows when the table was cut */
    char *table_note;   /* under the table, or NULL */
};

struct report {
    char *kind, *title, *subject; /* "restore-test", "Monthly restore test", "2026-11" */
    int64_t generated_at;         /* ms */
    char *timezone, *host;
    enum report_status verdict;
    char *verdict_text;
    struct report_fact *facts;
    size_t n_facts;
    struct report_section **sections;
    size_t n_sections;
};

struct report *report_new(const char *kind, const char *title, const char *subject,
                          const char *timezone);
void report_free(struct report *r);

/* A new section at the end (status not done until set); the pointer stays valid until
 * report_free. */
struct report_section *report_section_add(struct report *r, const char *id, const char *title);
/* Set a section's status and summary. */
void report_set(struct report_section *s, enum report_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Facts of the report (s NULL) or of a section. */
void report_fact_text(struct report *r, struct report_section *s, const char *key,
                      const char *label, const char *text);
void report_fact_int(struct report *r, struct report_section *s, const char *key, const char *label,
                     int64_t v, const char *unit);
void report_fact_time(struct report *r, struct report_section *s, const char *key,
                      const char *label, int64_t ms);
void report_fact_bool(struct report *r, struct report_section *s, const char *key,
                      const char *label, int v);

/* The section's table: columns as "key", "title", "unit" triples (unit NULL for text),
 * ending with a NULL key. */
void report_columns(struct report_section *s, ...);
/* Append a row (n_cols cells, then fill them with report_cell_*). Rows past max_rows
 * are counted, not kept: cells written to them are dropped. */
void report_row(struct report_section *s, size_t max_rows);
void report_cell_text(struct report_section *s, size_t col, const char *text);
void report_cell_int(struct report_section *s, size_t col, int64_t v);
void report_cell_time(struct report_section *s, size_t col, int64_t ms);
void report_cell_status(struct report_section *s, size_t col, enum report_status st);
void report_cell_bool(struct report_section *s, size_t col, int v);

/* The verdict from the sections that count: failed if one failed; else not done if one
 * was not done; else passed. text (may be NULL) is said after it. */
void report_decide(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

char *report_json(const struct report *r); /* malloc'd, ends with a newline */
char *report_html(const struct report *r); /* malloc'd */
void report_print_text(const struct report *r, FILE *out);

/* The .sig text for a file's bytes (signing key at signing_key_path); malloc'd, or NULL
 * with err. name is recorded for people; the signature covers the bytes only. */
char *report_sign(const char *text, size_t len, const char *name, const char *signing_key_path,
                  struct cst_err *err);
/* Check sig_text against the bytes with the signing public key pk. 0, or -1 with err. */
int report_signature_check(const char *text, size_t len, const char *sig_text,
                           const unsigned char pk[32], struct cst_err *err);

/* Where a report was stored. */
struct report_stored {
    char *json_path, *html_path; /* local, under state_dir/reports/YYYY/MM/ */
    char *json_key, *html_key;   /* on the destinations */
    char *stored_on;             /* destinations holding every file, ", " between ("" none) */
    char *errors;                /* what failed on the others, or NULL */
};
/*
 * Sign r's JSON and HTML and store the four files under state_dir/reports/YYYY/MM/ and on
 * every destination under backups/reports/YYYY/MM/, as <base>.json, <base>.json.sig,
 * <base>.html, <base>.html.sig (never replacing a name already there). month is
 * YYYY-MM. 0 when the local copy is made (destinations that failed are named in
 * out->errors), -1 with err otherwise.
 */
int report_store(struct cli *cli, const struct report *r, const char *month, const char *base,
                 struct report_stored *out, struct cst_err *err);
void report_stored_free(struct report_stored *s);

/* `custodian verify --report FILE`: FILE.sig against FILE with the signing public key
 * of the config. Exit status. */
int report_verify_file(struct cli *cli, const char *path);

#endif
