/*
 * fuzz_manifest.c - libFuzzer harness: any manifest text given to the
 * parsers `verify --manifest` uses (agent/manifest.c) ends in a manifest or
 * an error, never a crash or a leak. The input is tried as the JSON, as the
 * sha256 list and as the signature file; what parses must hold what the
 * parser promises (a date, well-formed relative keys).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/manifest.h"

static void check_key(const char *key)
{
    if (key == NULL || key[0] == '\0' || key[0] == '/' || strstr(key, "/../") ||
        strncmp(key, "../", 3) == 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* An exact-size copy: the parsers get a length and must not read past it. */
    char *text = malloc(size ? size : 1);
    struct manifest m;
    struct cst_err err;
    unsigned char sig[64];

    if (text == NULL)
        abort();
    memcpy(text, data, size);
    memset(&m, 0, sizeof(m));
    if (manifest_parse_json(text, size, &m, &err) == 0) {
        if (strlen(m.date) != 10)
            abort();
        for (size_t i = 0; i < m.n_artifacts; i++)
            check_key(m.artifacts[i].key);
    }
    if (manifest_parse_sums(text, size, &m, &err) == 0)
        for (size_t i = 0; i < m.n_sums; i++)
            check_key(m.sums[i].key);
    manifest_check_consistent(&m, &err);
    manifest_free(&m);
    manifest_parse_signature(text, size, sig, &err);
    free(text);
    return 0;
}
