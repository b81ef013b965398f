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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_lines),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
