/*
 * periods.h - the billing app's periods, invoices and timesheets, read from
 * its MongoDB (the [mongodb] uri's database) through the [snapshots]
 * mapping: collection names and field paths (dotted into sub-documents).
 *
 * Every document is handed over as it comes off a cursor, never collected,
 * so memory does not grow with a period's size. A mapping that cannot be
 * the app's (no such collection, a field no document has, a period key and
 * an invoice's period field of types that never compare equal) is an error
 * naming the [snapshots] key, never an empty result.
 */
#ifndef CST_PERIODS_H
#define CST_PERIODS_H

#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "agent/config.h"
#include "common/err.h"

struct periods;

struct period {
    bson_t *doc;        /* the whole period document */
    char *label;        /* period_label_field, as text */
    bson_value_t key;   /* period_key_field */
    char *key_json;     /* the key as canonical Extended JSON ({"$oid":"..."}, "2026-11", 3) */
    int64_t start, end; /* ms when period_start_field / period_end_field hold dates, else 0 */
    int closed;         /* period_closed_field holds a date */
    int64_t closed_at;  /* that date, ms */
};

void period_clear(struct period *p);

/* Connect to cfg's MongoDB; NULL and err. */
struct periods *periods_open(const struct cfg *cfg, struct cst_err *err);
void periods_close(struct periods *p);

/* The mapping against the data: each check reported to cb (may be NULL) as it is made,
 * key naming the [snapshots] key. Returns how many failed; *first (may be NULL) gets the
 * first failure's message. */
int periods_check(struct periods *p,
                  void (*cb)(void *arg, const char *key, int ok, const char *detail), void *arg,
                  struct cst_err *first);

/* Every period, in _id order; cb returning non-zero stops (and is returned). */
int periods_each(struct periods *p, int (*cb)(void *arg, struct period *per), void *arg,
                 struct cst_err *err);
/* The period whose label is `label`: 1 and *out filled, 0 if none, -1 (two or more have
 * that label, or an error). */
int periods_find_label(struct periods *p, const char *label, struct period *out,
                       struct cst_err *err);

/* A period's invoices / timesheets, in _id order. cb returning non-zero stops. */
int periods_each_invoice(struct periods *p, const struct period *per,
                         int (*cb)(void *arg, const bson_t *doc), void *arg, struct cst_err *err);
int periods_each_timesheet(struct periods *p, const struct period *per,
                           int (*cb)(void *arg, const bson_t *doc), void *arg, struct cst_err *err);
/* The timesheets whose _id is one of ids[0..n). */
int periods_each_timesheet_by_id(struct periods *p, const bson_value_t *ids, size_t n,
                                 int (*cb)(void *arg, const bson_t *doc), void *arg,
                                 struct cst_err *err);

/* 1 and *it at the value of the dotted path in doc, 0 if doc has no such field. */
int periods_field(const bson_t *doc, const char *path, bson_iter_t *it);
/* A value as canonical Extended JSON, compact (malloc'd). */
char *periods_value_json(const bson_value_t *v);
/* A document as canonical Extended JSON v2 on one line, compact (bson_free it). */
char *periods_doc_json(const bson_t *doc, size_t *len);
/* "string", "objectId", "date", ... for messages. */
const char *periods_type_name(bson_type_t t);

#endif
