/*
 * test_restore_point.c - agent/restore_point.c: the lines `daily` writes parse
 * back to what was written (escaped paths, symlinks, negative mtimes), and
 * every malformed line is an error rather than a guess.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/restore_point.h"

#define SHA "8c16a257207bf5e10d2ff5e3d92549caa524a738d6f138ec58cef7b87cd5824d"
#define OBJ "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int parse(const char *line, struct catalog_version *v, struct cst_err *err)
{
    return restore_point_line(line, strlen(line), v, err);
}

static void test_header(void **state)
{
    char date[11];
    int64_t at;
    struct cst_err err;
    const char *good = "custodian restore-point v1\tdate=2026-11-20\tat=1795000000000\tmade=x";

    (void)state;
    assert_int_equal(restore_point_header(good, strlen(good), date, &at, &err), 0);
    assert_string_equal(date, "2026-11-20");
    assert_int_equal(at, 1795000000000);
    assert_int_equal(restore_point_header("custodian restore-point v1", 26, date, &at, &err), 0);
    assert_string_equal(date, "");
    /* v2 (daily attempts) adds header fields; the file lines are v1's */
    assert_int_equal(restore_point_header("custodian restore-point v2\tdate=2026-11-21\tattempt=2",
                                          52, date, &at, &err),
                     0);
    assert_string_equal(date, "2026-11-21");
    assert_int_equal(restore_point_header("custodian restore-point v3", 26, date, &at, &err), -1);
    assert_int_equal(restore_point_header("custodian restore-point v10", 27, date, &at, &err), -1);
    assert_int_equal(
        restore_point_header("custodian restore-point v1\tdate=2026-1-20", 41, date, &at, &err),
        -1);
    assert_int_equal(restore_point_header("custodian restore-point v1\tat=x", 31, date, &at, &err),
                     -1);
}

static void test_lines(void **state)
{
    struct catalog_version v;
    struct cst_err err;

    (void)state;
    assert_int_equal(parse("file\t" SHA "\t413333\t-5\t" OBJ "\t/app/a\\x0ab\\\\c", &v, &err), 0);
    assert_int_equal(v.kind, CATALOG_FILE);
    assert_int_equal(v.size, 413333);
    assert_int_equal(v.mtime_ns, -5);
    assert_string_equal(v.path, "/app/a\nb\\c");
    assert_string_equal(v.object_id, OBJ);
    assert_int_equal(v.sha256[0], 0x8c);
    assert_int_equal(v.sha256[31], 0x4d);
    catalog_version_clear(&v);

    assert_int_equal(parse("symlink\t-\t0\t12\t-\t/app/l\t../x y", &v, &err), 0);
    assert_int_equal(v.kind, CATALOG_SYMLINK);
    assert_string_equal(v.link_target, "../x y");
    catalog_version_clear(&v);

    static const char *const bad[] = {
        "",
        "file",
        "dir\t" SHA "\t1\t1\t" OBJ "\t/a",
        "file\t" SHA "\t1\t1\t" OBJ "\t/a\textra",
        "file\t" SHA "\t-1\t1\t" OBJ "\t/a",
        "file\t" SHA "\t1x\t1\t" OBJ "\t/a",
        "file\t" SHA "\t99999999999999999999\t1\t" OBJ "\t/a",
        "file\t" SHA "\t1\t\t" OBJ "\t/a",
        "file\t" SHA "\t1\t1\t" OBJ "\trelative",
        "file\t" SHA "\t1\t1\t" OBJ "\t",
        "file\t" SHA "\t1\t1\t" OBJ "\t/bad\\q",
        "file\t" SHA "\t1\t1\t" OBJ "\t/nul\\x00",
        "file\tABCD\t1\t1\t" OBJ "\t/a",
        "file\t" SHA "\t1\t1\t" SHA "0\t/a",
        "symlink\t-\t0\t1\t-\t/a",
        "symlink\t-\t5\t1\t-\t/a\tt",
        "symlink\t" SHA "\t0\t1\t-\t/a\tt",
        "symlink\t-\t0\t1\t-\t/a\t",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &v, &err);

        catalog_version_clear(&v);
        if (rc != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(err.msg, "malformed restore point line"));
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;

    if (f == NULL)
        fail_msg("cannot open %s (run the test from the repo root)", path);
    buf = malloc(1 << 20);
    assert_non_null(buf);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[*len] = '\0';
    return buf;
}

/* The released restore points (tests/vectors/daily-v1, daily-v2), as custodian wrote them,
 * read back by custodian's own parser: every line, every escape. */
static void check_vector(const char *path, const char *want_date, size_t want_entries)
{
    size_t len, entries = 0, files = 0;
    char *text = slurp(path, &len), *line = text, *nl, date[11];
    int64_t at;
    struct cst_err err;
    int saw_newline = 0, saw_latin1 = 0, saw_backslash = 0;

    nl = strchr(line, '\n');
    assert_non_null(nl);
    if (restore_point_header(line, (size_t)(nl - line), date, &at, &err) < 0)
        fail_msg("%s header: %s", path, err.msg);
    assert_string_equal(date, want_date);
    assert_true(at > 0);
    for (line = nl + 1; *line; line = nl + 1) {
        struct catalog_version v;

        nl = strchr(line, '\n');
        assert_non_null(nl); /* every line ends with LF, the last one too */
        if (restore_point_line(line, (size_t)(nl - line), &v, &err) < 0)
            fail_msg("%s line %zu: %s", path, entries + 2, err.msg);
        entries++;
        files += v.kind == CATALOG_FILE;
        saw_newline |= strstr(v.path, "/new\nline.txt") != NULL;
        saw_latin1 |= strstr(v.path, "/latin1-\xe9t\xe9.txt") != NULL;
        saw_backslash |= strstr(v.path, "/back\\slash.txt") != NULL;
        if (v.kind == CATALOG_SYMLINK && strstr(v.path, "/dangling"))
            assert_string_equal(v.link_target, "../gone/\xff\\x");
        catalog_version_clear(&v);
    }
    assert_int_equal(entries, want_entries);
    assert_int_equal(files, want_entries - 2);
    assert_true(saw_newline && saw_latin1 && saw_backslash);
    free(text);
}

static void test_released_vectors(void **state)
{
    (void)state;
    check_vector("tests/vectors/daily-v1/expected/restore-point-2026-11-20.tsv", "2026-11-20", 12);
    check_vector("tests/vectors/daily-v2/expected/restore-point-2026-11-20.tsv", "2026-11-20", 12);
    check_vector("tests/vectors/daily-v2/expected/restore-point-2026-11-20.attempt-2.tsv",
                 "2026-11-20", 13);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_released_vectors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
