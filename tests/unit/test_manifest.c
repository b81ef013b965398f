/*
 * test_manifest.c - agent/manifest.c: the per-attempt layout and its file
 * names, and the check of a manifest trio: a genuine one passes; the same
 * trio stored as another day or attempt, a .sha256 that disagrees with the
 * signed JSON, an altered JSON or a malformed one fail, each saying why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/manifest.h"
#include "common/util.h"

static unsigned char pk[32], sk[64];

static void test_layout_and_names(void **state)
{
    char *k, date[11], ext[8];
    int attempt;

    (void)state;
    k = manifest_artifact_key("db", "2026-11-20", 1);
    assert_string_equal(k, "backups/daily/db/2026/11/20/mongodb-2026-11-20.archive.cst");
    free(k);
    k = manifest_artifact_key("files", "2026-11-20", 12);
    assert_string_equal(
        k, "backups/daily/files/2026/11/20/restore-point-2026-11-20.attempt-12.tsv.cst");
    free(k);
    k = manifest_artifact_key("manifest-sig", "2026-11-20", 2);
    assert_string_equal(k, "backups/manifests/2026-11-20.attempt-2.sig");
    free(k);

    assert_int_equal(manifest_parse_name("2026-11-20.json", date, &attempt, ext), 0);
    assert_string_equal(date, "2026-11-20");
    assert_int_equal(attempt, 1);
    assert_string_equal(ext, "json");
    assert_int_equal(manifest_parse_name("2026-11-20.attempt-37.sha256", date, &attempt, ext), 0);
    assert_int_equal(attempt, 37);
    assert_string_equal(ext, "sha256");
    static const char *const bad[] = {"2026-11-20.txt",
                                      "2026-11-20.attempt-1.json",
                                      "2026-11-20.attempt-02.json",
                                      "2026-11-20.attempt-.sig",
                                      "2026-1-20.json",
                                      "2026-11-20json",
                                      "x026-11-20.json",
                                      "2026-11-20.attempt-2",
                                      ".2026-11-20.json.XXXXXX",
                                      "2026-11-20.json.tmp",
                                      "",
                                      "2026-11-20.attempt-99999999.json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (manifest_parse_name(bad[i], date, &attempt, ext) == 0)
            fail_msg("%s was taken for a manifest name", bad[i]);
}

struct trio {
    char *sums, *json, *sig;
};

static void sha256(const char *s, unsigned char out[32])
{
    unsigned int n = 32;

    EVP_Digest(s, strlen(s), out, &n, EVP_sha256(), NULL);
}

/* A trio as the daily run writes it, for (date, attempt). */
static struct trio make_trio(const char *date, int attempt, const char *json_extra)
{
    static const char *const kinds[] = {"files", "catalog"};
    unsigned char msg[64], sig[64];
    char sig_hex[129], *sums = util_xstrdup(""), *arts = util_xstrdup("");
    struct trio t;

    for (int i = 0; i < 2; i++) {
        char *key = manifest_artifact_key(kinds[i], date, attempt), hex[65], *more;
        unsigned char h[32];

        memset(h, 0x11 * (i + 1), 32);
        util_hex(h, 32, hex);
        more = util_printf("%s%s  %s\n", sums, hex, key);
        free(sums);
        sums = more;
        more = util_printf("%s%s{\"kind\":\"%s\",\"key\":\"%s\",\"plain_sha256\":\"%s\","
                           "\"plain_size\":5,\"stored_sha256\":\"%s\",\"stored_size\":%d}",
                           arts, i ? "," : "", kinds[i], key, hex, hex, 100 + i);
        free(arts);
        arts = more;
        free(key);
    }
    t.sums = sums;
    t.json = util_printf("{\"version\":2,\"date\":\"%s\",\"attempt\":%d,\"made_on\":\"%s\","
                         "\"backfill\":false%s,\"audit\":{\"rows\":42,\"head\":\"%s\"},"
                         "\"artifacts\":[%s],\"finished_at\":\"2026-11-20T07:00:05.109Z\"}",
                         date, attempt, date, json_extra,
                         "abababababababababababababababababababababababababababababababab", arts);
    free(arts);
    sha256(t.sums, msg);
    sha256(t.json, msg + 32);
    crypto_sign_detached(sig, NULL, msg, 64, sk);
    util_hex(sig, 64, sig_hex);
    t.sig =
        util_printf("custodian manifest-signature v1\nsigns: whatever\nsignature: %s\n", sig_hex);
    return t;
}

static void trio_free(struct trio *t)
{
    free(t->sums);
    free(t->json);
    free(t->sig);
}

static int check(const struct trio *t, const char *date, int attempt, struct manifest *m,
                 struct cst_err *err)
{
    return manifest_check(t->sums, strlen(t->sums), t->json, strlen(t->json), t->sig, pk, date,
                          attempt, m, err);
}

static void expect_fail(const struct trio *t, const char *date, int attempt, const char *why)
{
    struct manifest m;
    struct cst_err err = {{0}};

    if (check(t, date, attempt, &m, &err) == 0)
        fail_msg("a trio was accepted as %s attempt %d", date, attempt);
    if (strstr(err.msg, why) == NULL)
        fail_msg("message <%s> does not say <%s>", err.msg, why);
}

static void test_a_genuine_trio_passes(void **state)
{
    struct trio t = make_trio("2026-11-20", 2, "");
    struct manifest m;
    struct cst_err err = {{0}};

    (void)state;
    if (check(&t, "2026-11-20", 2, &m, &err) < 0)
        fail_msg("%s", err.msg);
    assert_string_equal(m.date, "2026-11-20");
    assert_int_equal(m.attempt, 2);
    assert_int_equal(m.has_audit, 1);
    assert_int_equal(m.audit_rows, 42);
    assert_int_equal(m.audit_head[0], 0xab);
    assert_int_equal(m.n_artifacts, 2);
    assert_string_equal(m.artifacts[1].kind, "catalog");
    assert_int_equal(m.artifacts[1].stored_size, 101);
    trio_free(&t);
}

static void test_another_days_trio_fails(void **state)
{
    struct trio t = make_trio("2026-11-19", 1, "");

    (void)state;
    expect_fail(&t, "2026-11-20", 1,
                "is the signed manifest of 2026-11-19 attempt 1: it was put in another day's "
                "place");
    expect_fail(&t, "2026-11-19", 2, "is the signed manifest of 2026-11-19 attempt 1");
    trio_free(&t);
}

static void test_altered_trios_fail(void **state)
{
    struct trio t = make_trio("2026-11-20", 1, "");
    char *saved;

    (void)state;
    saved = t.json;
    t.json = util_printf("%s ", saved);
    expect_fail(&t, "2026-11-20", 1, "manifest signature does not verify");
    free(t.json);
    t.json = saved;
    saved = t.sig;
    t.sig = util_xstrdup("custodian manifest-signature v1\nsignature: 00\n");
    expect_fail(&t, "2026-11-20", 1, "the signature file is malformed");
    free(t.sig);
    t.sig = saved;
    trio_free(&t);

    /* Signed, but the .sha256 and the JSON disagree, or keys are not the day's own. */
    {
        struct trio u = make_trio("2026-11-20", 1, "");
        char *line2 = strchr(u.sums, '\n') + 1, *more;
        unsigned char msg[64], sig[64];
        char hex[129];

        /* Drop the second line and sign again. */
        *line2 = '\0';
        sha256(u.sums, msg);
        sha256(u.json, msg + 32);
        crypto_sign_detached(sig, NULL, msg, 64, sk);
        util_hex(sig, 64, hex);
        free(u.sig);
        u.sig = util_printf("x\nsignature: %s\n", hex);
        expect_fail(&u, "2026-11-20", 1, "its JSON 2");
        /* A line naming another key. */
        more = util_printf("%.*s  backups/daily/db/elsewhere\n", 64, u.sums);
        free(u.sums);
        u.sums = more;
        sha256(u.sums, msg);
        crypto_sign_detached(sig, NULL, msg, 64, sk);
        util_hex(sig, 64, hex);
        free(u.sig);
        u.sig = util_printf("x\nsignature: %s\n", hex);
        expect_fail(&u, "2026-11-20", 1, "does not match the signed JSON");
        trio_free(&u);
    }
}

static void test_json_shapes(void **state)
{
    struct manifest m;
    struct cst_err err = {{0}};
    static const char *const bad[] = {
        "",
        "[]",
        "{\"date\":\"2026-11-20\"}",
        "{\"artifacts\":[]}",
        "{\"date\":\"20261120\",\"artifacts\":[]}",
        "{\"date\":\"2026-11-20\",\"attempt\":0,\"artifacts\":[]}",
        "{\"date\":\"2026-11-20\",\"attempt\":\"2\",\"artifacts\":[]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[1]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[{\"kind\":\"db\"}]}",
        "{\"date\":\"2026-11-20\",\"audit\":{\"rows\":1},\"artifacts\":[]}",
        "{\"date\":\"2026-11-20\",\"artifacts\":[]",
        "{\"date\":{\"$date\":1},\"artifacts\":[]}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (manifest_parse_json(bad[i], strlen(bad[i]), &m, &err) == 0)
            fail_msg("<%s> was accepted", bad[i]);
    /* A manifest from before attempts and heads: attempt 1, no head. */
    assert_int_equal(
        manifest_parse_json("{\"date\":\"2026-11-20\",\"artifacts\":[]}", 36, &m, &err), 0);
    assert_int_equal(m.attempt, 1);
    assert_int_equal(m.has_audit, 0);
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

/* One released trio (tests/vectors/daily-v*): checked as the manifest of (date, attempt),
 * and refused as any other. */
static void check_vector_trio(const char *dir, const char *name, const char *date, int attempt,
                              int version)
{
    char path[512], *sums, *json, *sig, *pub;
    size_t sums_len, json_len, sig_len, pub_len;
    unsigned char vector_pk[32];
    struct manifest m;
    struct cst_err err;

    snprintf(path, sizeof(path), "tests/vectors/%s/keys/signing.pub", dir);
    pub = slurp(path, &pub_len);
    assert_int_equal(pub_len, 32 + 64 + 1);
    pub[pub_len - 1] = '\0';
    assert_int_equal(util_unhex(strchr(pub, '\n') + 1, vector_pk, 32), 0);
    snprintf(path, sizeof(path), "tests/vectors/%s/destination/backups/manifests/%s.sha256", dir,
             name);
    sums = slurp(path, &sums_len);
    snprintf(path, sizeof(path), "tests/vectors/%s/destination/backups/manifests/%s.json", dir,
             name);
    json = slurp(path, &json_len);
    snprintf(path, sizeof(path), "tests/vectors/%s/destination/backups/manifests/%s.sig", dir,
             name);
    sig = slurp(path, &sig_len);
    if (manifest_check(sums, sums_len, json, json_len, sig, vector_pk, date, attempt, &m, &err) < 0)
        fail_msg("%s/%s: %s", dir, name, err.msg);
    assert_int_equal(m.n_artifacts, 3);
    assert_int_equal(m.has_audit, version >= 2);
    assert_int_equal(manifest_check(sums, sums_len, json, json_len, sig, vector_pk, "2026-11-21",
                                    attempt, &m, &err),
                     -1);
    assert_int_equal(
        manifest_check(sums, sums_len, json, json_len, sig, pk, date, attempt, &m, &err),
        -1); /* another signing key */
    free(sums);
    free(json);
    free(sig);
    free(pub);
}

static void test_released_vectors(void **state)
{
    (void)state;
    check_vector_trio("daily-v1", "2026-11-20", "2026-11-20", 1, 1);
    check_vector_trio("daily-v2", "2026-11-20", "2026-11-20", 1, 2);
    check_vector_trio("daily-v2", "2026-11-20.attempt-2", "2026-11-20", 2, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_names),
        cmocka_unit_test(test_a_genuine_trio_passes),
        cmocka_unit_test(test_another_days_trio_fails),
        cmocka_unit_test(test_altered_trios_fail),
        cmocka_unit_test(test_json_shapes),
        cmocka_unit_test(test_released_vectors),
    };

    if (sodium_init() < 0)
        return 1;
    crypto_sign_keypair(pk, sk);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
