/*
 * fuzz_container.c - libFuzzer harness: any bytes given to crypt_open_fd as an
 * object must end in 0 or a clean error, never a crash or a leak. The key is
 * the released test vector's, so inputs derived from tests/vectors decrypt.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/util.h"
#include "shipper/container.h"

static unsigned char pk[32], sk[32];

static int load_hex(const char *path, unsigned char *out)
{
    char kind[64], hex[80];
    FILE *f = fopen(path, "r");
    int ok;

    if (f == NULL)
        return -1;
    ok = fscanf(f, "custodian %63s v1 %79s", kind, hex) == 2 && util_unhex(hex, out, 32) == 0;
    fclose(f);
    return ok ? 0 : -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (load_hex("tests/vectors/container-v1/backup.pub", pk) < 0 ||
        load_hex("tests/vectors/container-v1/backup.key", sk) < 0) {
        fprintf(stderr, "run from the repository root (needs tests/vectors)\n");
        _exit(2);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int in = memfd_create("object", 0), out = open("/dev/null", O_WRONLY);
    struct cst_err err;

    if (in < 0 || out < 0 || util_write_all(in, data, size) < 0 || lseek(in, 0, SEEK_SET) != 0)
        _exit(3);
    crypt_open_fd(in, out, pk, sk, NULL, NULL, &err);
    close(in);
    close(out);
    return 0;
}
