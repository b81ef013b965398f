/*
 * test_report.c - the report model (agent/report.c): the verdict rule
 * (a failure wins, then "not done", and a check that does not count never
 * decides), what the HTML may hold (escaped text, no script, no external
 * resource, a unit on every figure), the JSON as libbson reads it, tables
 * cut at their row limit, and the signatures (a changed byte, another key,
 * another use of the key all fail). Also the monthly restore test's
 * schedule rule (agent/rt_schedule.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <bson/bson.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/keys.h"
#include "agent/report.h"
#include "agent/rt_schedule.h"
#include "agent/sched.h"

static struct report *sample(void)
{
    struct report *r =
        report_new("restore-test", "Monthly restore test", "2026-11", "America/New_York");
    struct report_section *a = report_section_add(r, "db", "Database <main>");
    struct report_section *b = report_section_add(r, "files", "Files");

    report_fact_int(r, NULL, "total_ms", "Time", 1234, "ms");
    report_set(a, REPORT_PASSED, "restored & compared: <script>alert(1)</script> \"quoted\"");
    report_columns(a, "ns", "Collection", NULL, "docs", "Documents", "documents", "bytes", "Size",
                   "bytes", (char *)NULL);
    report_row(a, 10);
    report_cell_text(a, 0, "billing.<invoices>");
    report_cell_int(a, 1, 1500);
    report_cell_int(a, 2, 3 << 20);
    report_set(b, REPORT_PASSED, "ok");
    return r;
}

static void test_verdict_rule(void **state)
{
    struct report *r = sample();
    struct report_section *p = report_section_add(r, "pruning", "Pruning");

    (void)state;
    p->counts = 0;
    report_set(p, REPORT_NOT_DONE, "not built");
    report_decide(r, NULL);
    assert_int_equal(r->verdict, REPORT_PASSED); /* a check that does not count never decides */
    report_set(r->sections[1], REPORT_NOT_APPLICABLE, "nothing");
    report_decide(r, NULL);
    assert_int_equal(r->verdict, REPORT_PASSED);
    report_set(r->sections[1], REPORT_NOT_DONE, "no key");
    report_decide(r, NULL);
    assert_int_equal(r->verdict, REPORT_NOT_DONE); /* never passed when skipped */
    report_set(r->sections[0], REPORT_FAILED, "bad");
    report_decide(r, "%s", "why");
    assert_int_equal(r->verdict, REPORT_FAILED);
    assert_string_equal(r->verdict_text, "why");
    report_free(r);
}

static void test_html_is_escaped_self_contained_with_units(void **state)
{
    struct report *r = sample();
    char *html;

    (void)state;
    report_decide(r, "all <good>");
    html = report_html(r);
    assert_non_null(strstr(html, "<!DOCTYPE html>"));
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot;"));
    assert_non_null(strstr(html, "billing.&lt;invoices&gt;"));
    assert_non_null(strstr(html, "Database &lt;main&gt;"));
    assert_null(strstr(html, "src="));
    assert_null(strstr(html, "http://"));
    assert_null(strstr(html, "https://"));
    assert_null(strstr(html, "@import"));
    assert_non_null(strstr(html, "1,500&nbsp;documents"));
    assert_non_null(strstr(html, "3,145,728&nbsp;bytes (3.0&nbsp;MiB)"));
    assert_non_null(strstr(html, "1,234&nbsp;ms"));
    assert_non_null(strstr(html, "class=\"verdict passed\""));
    assert_non_null(strstr(html, "all &lt;good&gt;"));
    free(html);
    report_free(r);
}

static void test_json_reads_back(void **state)
{
    struct report *r = sample();
    char *json;
    bson_t *doc;
    bson_error_t err;
    bson_iter_t it;

    (void)state;
    report_decide(r, NULL);
    json = report_json(r);
    doc = bson_new_from_json((const uint8_t *)json, -1, &err);
    assert_non_null(doc);
    assert_true(bson_iter_init(&it, doc) &&
                bson_iter_find_descendant(&it, "sections.0.rows.0.docs", &it));
    assert_int_equal(bson_iter_as_int64(&it), 1500);
    assert_true(bson_iter_init(&it, doc) &&
                bson_iter_find_descendant(&it, "sections.0.columns.2.unit", &it));
    assert_string_equal(bson_iter_utf8(&it, NULL), "bytes");
    assert_true(bson_iter_init_find(&it, doc, "verdict"));
    assert_string_equal(bson_iter_utf8(&it, NULL), "passed");
    bson_destroy(doc);
    free(json);
    report_free(r);
}

static void test_rows_past_the_limit_are_counted_not_kept(void **state)
{
    struct report *r = report_new("x", "X", "s", NULL);
    struct report_section *s = report_section_add(r, "t", "T");

    (void)state;
    report_columns(s, "n", "N", "files", (char *)NULL);
    for (int i = 0; i < 5; i++) {
        report_row(s, 3);
        report_cell_int(s, 0, i);
    }
    assert_int_equal(s->n_rows, 3);
    assert_int_equal(s->rows_total, 5);
    assert_int_equal(s->cells[2].i, 2);
    report_free(r);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void test_signatures(void **state)
{
    char dir[] = "/tmp/test_report.XXXXXX", other_dir[300], key[300], other[300];
    const char text[] = "{\"report\":\"restore-test\"}\n";
    unsigned char pk[32], other_pk[32];
    struct cst_err err;
    char *sig, *bad;

    (void)state;
    assert_int_equal(sodium_init() >= 0, 1);
    assert_non_null(mkdtemp(dir));
    snprintf(key, sizeof(key), "%s/a", dir);
    snprintf(other_dir, sizeof(other_dir), "%s/b", dir);
    assert_int_equal(keys_generate(key, &err), 0);
    assert_int_equal(keys_generate(other_dir, &err), 0);
    snprintf(key, sizeof(key), "%s/a/signing.key", dir);
    snprintf(other, sizeof(other), "%s/b/signing.key", dir);
    assert_int_equal(keys_load_signing_pk(key, pk, &err), 0);
    assert_int_equal(keys_load_signing_pk(other, other_pk, &err), 0);
    sig = report_sign(text, strlen(text), "r.json", key, &err);
    assert_non_null(sig);
    assert_non_null(strstr(sig, "file: r.json\n"));
    assert_int_equal(report_signature_check(text, strlen(text), sig, pk, &err), 0);
    /* one byte changed */
    {
        char changed[sizeof(text)];

        memcpy(changed, text, sizeof(text));
        changed[3] ^= 1;
        assert_int_equal(report_signature_check(changed, strlen(changed), sig, pk, &err), -1);
        assert_non_null(strstr(err.msg, "not the one that was signed"));
    }
    /* another installation's key */
    assert_int_equal(report_signature_check(text, strlen(text), sig, other_pk, &err), -1);
    assert_non_null(strstr(err.msg, "BAD SIGNATURE"));
    /* a signature file of another kind (a manifest's) is not a report's */
    bad = strdup(sig);
    memcpy(bad, "custodian manifest", 18);
    assert_int_equal(report_signature_check(text, strlen(text), bad, pk, &err), -1);
    free(bad);
    free(sig);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- the monthly schedule --- */

static int64_t at(const struct sched_zone *z, int y, int m, int d, int hh, int mm)
{
    int64_t t;

    assert_int_equal(sched_local_instant(z, y, m, d, hh, mm, 0, &t), 0);
    return t;
}

static void test_monthly_schedule(void **state)
{
    struct cst_err err;
    struct sched_zone *z = sched_zone_load("America/New_York", &err);
    char due[8];
    int64_t next = 0, now = at(z, 2026, 11, 15, 12, 0);

    (void)state;
    assert_non_null(z);
    /* last month done: this month's (Nov 1 03:00) is owed */
    assert_int_equal(rt_schedule_due(z, 1, 3, 0, "2026-10", 0, now, due, &next), 1);
    assert_string_equal(due, "2026-11");
    /* done: the next is Dec 1 03:00 local */
    assert_int_equal(rt_schedule_due(z, 1, 3, 0, "2026-11", 0, now, due, &next), 0);
    assert_int_equal(next, at(z, 2026, 12, 1, 3, 0));
    /* never tested: owed only when its instant is not before the install */
    assert_int_equal(
        rt_schedule_due(z, 1, 3, 0, NULL, at(z, 2026, 11, 10, 9, 0) * 1000, now, due, &next), 0);
    assert_int_equal(
        rt_schedule_due(z, 1, 3, 0, "", at(z, 2026, 10, 20, 9, 0) * 1000, now, due, &next), 1);
    assert_string_equal(due, "2026-11");
    /* before this month's instant: last month's is the latest */
    now = at(z, 2026, 11, 1, 2, 59);
    assert_int_equal(rt_schedule_due(z, 1, 3, 0, "2026-10", 0, now, due, &next), 0);
    assert_int_equal(next, at(z, 2026, 11, 1, 3, 0));
    assert_int_equal(rt_schedule_due(z, 1, 3, 0, "2026-09", 0, now, due, &next), 1);
    assert_string_equal(due, "2026-10");
    /* across the year */
    now = at(z, 2027, 1, 1, 1, 0);
    assert_int_equal(rt_schedule_due(z, 1, 3, 0, "2026-11", 0, now, due, &next), 1);
    assert_string_equal(due, "2026-12");
    /* a day some months do not have is refused */
    assert_int_equal(rt_schedule_due(z, 29, 3, 0, NULL, 0, now, due, &next), -1);
    sched_zone_free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdict_rule),
        cmocka_unit_test(test_html_is_escaped_self_contained_with_units),
        cmocka_unit_test(test_json_reads_back),
        cmocka_unit_test(test_rows_past_the_limit_are_counted_not_kept),
        cmocka_unit_test(test_signatures),
        cmocka_unit_test(test_monthly_schedule),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
