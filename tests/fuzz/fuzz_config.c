/*
 * fuzz_config.c - libFuzzer harness: cfg_load on any file content must end in a
 * config or an error naming the problem, never a crash or a leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "agent/config.h"
#include "common/util.h"

/* Under build/ (run from the repository root), so nothing is left elsewhere. */
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof(path), "build/fuzz/config-input-%d.conf", (int)getpid());
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cst_err err;
    struct cfg *cfg;
    FILE *f;

    f = fopen(path, "w");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    cfg = cfg_load(path, &err);
    cfg_free(cfg);
    return 0;
}
