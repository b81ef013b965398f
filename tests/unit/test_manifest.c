/*
 * test_manifest.c - agent/manifest.c: the manifests `daily` writes parse back
 * (tests/fuzz/seeds/manifest holds a real trio), JSON is read strictly as RFC
 * 8259 says (escapes, surrogates, numbers, nesting, duplicates), and a
 * sha256 list and JSON that disagree are caught.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/manifest.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = malloc(1 << 16);

    if (f == NULL)
        fail_msg("cannot open %s (run from the repository root)", path);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static void test_real_trio(void **state)
{
    struct manifest m;
    struct cst_err err;
    unsigned char sig[64];
    size_t n;
    char *json = slurp("tests/fuzz/seeds/manifest/manifest.json", &n);

    (void)state;
    memset(&m, 0, sizeof(m));
    assert_int_equal(manifest_parse_json(json, n, &m, &err), 0);
    assert_string_equal(m.date, "2026-11-20");
    assert_int_equal(m.n_artifacts, 2);
    assert_string_equal(m.artifacts[0].kind, "files");
    assert_int_equal(m.artifacts[1].plain_size, 90112);
    free(json);
    json = slurp("tests/fuzz/seeds/manifest/manifest.sha256", &n);
    assert_int_equal(manifest_parse_sums(json, n, &m, &err), 0);
    assert_int_equal(m.n_sums, 2);
    assert_int_equal(manifest_check_consistent(&m, &err), 0);
    /* The same key with another hash in the list is caught. */
    m.sums[1].sha256[0] ^= 1;
    assert_int_equal(manifest_check_consistent(&m, &err), -1);
    assert_non_null(strstr(err.msg, "one SHA-256 in the manifest's sha256 file and another"));
    manifest_free(&m);
    free(json);
    json = slurp("tests/fuzz/seeds/manifest/manifest.sig", &n);
    assert_int_equal(manifest_parse_signature(json, n, sig, &err), 0);
    assert_int_equal(sig[0], 0x77);
    assert_int_equal(manifest_parse_signature(json, n - 2, sig, &err), -1);
    free(json);
}

static int json_ok(const char *text)
{
    struct manifest m;
    struct cst_err err;
    int rc;

    memset(&m, 0, sizeof(m));
    rc = manifest_parse_json(text, strlen(text), &m, &err);
    manifest_free(&m);
    return rc;
}

#define ART                                                                                        \
    "{\"kind\":\"db\",\"key\":\"backups/x\",\"plain_sha256\":\"" H "\",\"plain_size\":1,"          \
    "\"stored_sha256\":\"" H "\",\"stored_size\":2}"
#define H "0000000000000000000000000000000000000000000000000000000000000000"

static void test_json_strictly(void **state)
{
    (void)state;
    assert_int_equal(json_ok("{\"date\":\"2026-11-20\",\"artifacts\":[]}"), 0);
    assert_int_equal(
        json_ok(" {\"x\":[1,-0.5e+3,true,false,null,{\"y\":\"\\u00e9\\ud83d\\ude00\"}],"
                "\"date\":\"2026-11-20\",\"artifacts\":[" ART "," ART "]}\n"),
        0);
    static const char *const bad[] = {
        "",
        "[]",
        "{\"date\":\"2026-11-20\"}",
        "{\"artifacts\":[]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[]} x",
        "{\"date\":\"2026-11-20\",\"date\":\"2026-11-21\",\"artifacts\":[]}",
        "{\"date\":\"20261120\",\"artifacts\":[]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[{}]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[1]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[" ART "],}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":01}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":1.}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":\"\\ud83d\"}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":\"\\u0000\"}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":\"\\q\"}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":\"a\tb\"}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":\"\xc3\"}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":tru}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[],\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]"
        "]"
        "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[{\"kind\":\"db\",\"key\":\"../x\","
        "\"plain_sha256\":\"" H "\",\"plain_size\":1,\"stored_sha256\":\"" H "\","
        "\"stored_size\":2}]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[{\"kind\":\"db\",\"key\":\"x\","
        "\"plain_sha256\":\"" H "\",\"plain_size\":-1,\"stored_sha256\":\"" H "\","
        "\"stored_size\":2}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (json_ok(bad[i]) != -1)
            fail_msg("accepted: %s", bad[i]);
}

static void test_sums(void **state)
{
    struct manifest m;
    struct cst_err err;
    static const char *const bad[] = {
        "",
        H "  backups/x",
        H " backups/x\n",
        H "  /etc/passwd\n",
        H "  backups/../../x\n",
        H "  backups//x\n",
        "0" H "  x\n",
        "ABCD  x\n",
    };

    (void)state;
    memset(&m, 0, sizeof(m));
    assert_int_equal(manifest_parse_sums(H "  backups/a b\n" H "  c\n", 2 * 67 + 12, &m, &err), 0);
    assert_int_equal(m.n_sums, 2);
    assert_string_equal(m.sums[0].key, "backups/a b");
    manifest_free(&m);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = manifest_parse_sums(bad[i], strlen(bad[i]), &m, &err);

        manifest_free(&m);
        if (rc != -1)
            fail_msg("accepted: %s", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_trio),
        cmocka_unit_test(test_json_strictly),
        cmocka_unit_test(test_sums),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
