/*
 * fuzz_manifest.c - libFuzzer harness: a manifest trio from a destination is
 * read by agent/manifest.c (the JSON through libbson, the .sha256 lines, the
 * binding to a day and attempt). The input is the .sha256 text, a NUL, then
 * the JSON; the harness signs them with its own key, so that every input
 * gets past the signature and reaches the parsers and checks behind it.
 */
#include <openssl/evp.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/manifest.h"
#include "common/util.h"

static unsigned char pk[32], sk[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sodium_init() < 0)
        abort();
    crypto_sign_keypair(pk, sk);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    unsigned char msg[64], sig[64];
    unsigned int n32 = 32;
    char *sums, *json, *sig_text, hex[129];
    size_t sums_len, json_len;
    struct manifest m;
    struct cst_err err;

    if (nul == NULL)
        return 0;
    sums_len = (size_t)(nul - data);
    json_len = size - sums_len - 1;
    sums = util_printf("%.*s", (int)sums_len, (const char *)data);
    json = util_xmalloc(json_len + 1);
    memcpy(json, nul + 1, json_len);
    json[json_len] = '\0';
    /* Texts with a NUL inside are cut there, as a C reader of the files would. */
    sums_len = strlen(sums);
    EVP_Digest(sums, sums_len, msg, &n32, EVP_sha256(), NULL);
    EVP_Digest(json, json_len, msg + 32, &n32, EVP_sha256(), NULL);
    crypto_sign_detached(sig, NULL, msg, 64, sk);
    util_hex(sig, 64, hex);
    sig_text = util_printf("custodian manifest-signature v1\nsignature: %s\n", hex);
    manifest_check(sums, sums_len, json, json_len, sig_text, pk, "2026-11-20", 1, &m, &err);
    manifest_check(sums, sums_len, json, json_len, sig_text, pk, "2026-11-20", 2, &m, &err);
    free(sig_text);
    free(json);
    free(sums);
    return 0;
}
