/*
 * gen_container_vector.c - generates tests/vectors/container-v1/ (kept for
 * the record; not built by default).
 *
 * The released vector is never regenerated: sealing is randomised (the
 * object key, the crypto_box_seal ephemeral key and the secretstream header
 * are fresh each run), so a new run gives a different but equally valid
 * object.bin. Only the key files, naming.key and the plaintexts are
 * deterministic. Build from the repo root:
 *
 *   gcc -std=c17 -Wall -Wextra -Wpedantic -Werror -D_GNU_SOURCE -I. \
 *       common/err.c shipper/container.c tests/vectors/gen_container_vector.c \
 *       $(pkg-config --cflags --libs libsodium libzstd libcrypto) -o /tmp/gen_vector
 *   /tmp/gen_vector NEW_EMPTY_DIR
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "common/err.h"
#include "shipper/container.h"

static void die(const char *what, const struct cst_err *err)
{
    fprintf(stderr, "gen_container_vector: %s%s%s\n", what, err ? ": " : "", err ? err->msg : "");
    exit(1);
}

static void hex(const unsigned char *bin, size_t len, char *out)
{
    size_t i;

    for (i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", bin[i]);
}

static int open_new(const char *dir, const char *name)
{
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    return fd;
}

static void write_file(const char *dir, const char *name, const void *buf, size_t len)
{
    int fd = open_new(dir, name);

    if (write(fd, buf, len) != (ssize_t)len || close(fd) != 0)
        die(name, NULL);
}

static void write_key_file(const char *dir, const char *name, const char *kind,
                           const unsigned char *key, size_t len)
{
    char text[256];
    char key_hex[2 * 64 + 1];

    hex(key, len, key_hex);
    snprintf(text, sizeof(text), "custodian %s v1\n%s\n", kind, key_hex);
    write_file(dir, name, text, strlen(text));
}

/* Text that compresses well but is not trivially periodic. */
static size_t append_text(unsigned char *buf, size_t at, size_t len, unsigned *line)
{
    size_t end = at + len;

    while (at < end) {
        char text[160];
        int n = snprintf(text, sizeof(text),
                         "2026-11-20T02:%02u:%02uZ shipped path=/app/data/invoices/INV-%05u.pdf "
                         "bytes=%u dest=offsite ms=%u\n",
                         (*line / 60) % 60, *line % 60, *line, 40000 + (*line * 7919) % 9000,
                         100 + (*line * 31) % 400);
        size_t take = (size_t)n < end - at ? (size_t)n : end - at;

        memcpy(buf + at, text, take);
        at += take;
        (*line)++;
    }
    return at;
}

static size_t append_random(unsigned char *buf, size_t at, size_t len, unsigned char tweak)
{
    unsigned char seed[randombytes_SEEDBYTES];

    memset(seed, tweak, sizeof(seed));
    randombytes_buf_deterministic(buf + at, len, seed);
    return at + len;
}

static void seal_file(const char *dir, const char *name, const unsigned char *pk,
                      const unsigned char *plain, size_t len, struct crypt_sealed_info *info)
{
    struct cst_err err = {{0}};
    int fd = open_new(dir, name);
    struct crypt_sealer *s = crypt_sealer_new(pk, CRYPT_LEVEL_AUTO, fd, &err);
    size_t at = 0;

    if (s == NULL)
        die("crypt_sealer_new", &err);
    /* Uneven writes, as the pipeline's reads would be. */
    while (at < len) {
        size_t n = len - at < 10007 ? len - at : 10007;

        if (crypt_sealer_write(s, plain + at, n, &err) != 0)
            die("crypt_sealer_write", &err);
        at += n;
    }
    if (crypt_sealer_finish(s, info, &err) != 0)
        die("crypt_sealer_finish", &err);
    crypt_sealer_free(s);
    if (close(fd) != 0)
        die(name, NULL);
}

static void check_opens(const char *dir, const char *name, const unsigned char *pk,
                        const unsigned char *sk, const unsigned char *want_sha)
{
    struct cst_err err = {{0}};
    char path[4096];
    unsigned char sha[32];
    uint64_t size;
    int in, out;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    in = open(path, O_RDONLY | O_CLOEXEC);
    out = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (in < 0 || out < 0)
        die("open for check", NULL);
    if (crypt_open_fd(in, out, pk, sk, sha, &size, &err) != 0)
        die(name, &err);
    if (memcmp(sha, want_sha, 32) != 0)
        die("round trip SHA-256 differs", NULL);
    close(in);
    close(out);
}

static void report(const char *name, const struct crypt_sealed_info *info)
{
    char plain_hex[65], stored_hex[65];

    hex(info->plain_sha256, 32, plain_hex);
    hex(info->stored_sha256, 32, stored_hex);
    printf("%s: plain_size=%llu plain_sha256=%s stored_size=%llu stored_sha256=%s compressed=%d\n",
           name, (unsigned long long)info->plain_size, plain_hex,
           (unsigned long long)info->stored_size, stored_hex, info->compressed);
}

int main(int argc, char **argv)
{
    static const char key_seed_text[] = "custodian container-v1 test vector backup key";
    static const char naming_seed_text[] = "custodian container-v1 test vector naming key";
    unsigned char seed[crypto_box_SEEDBYTES];
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    unsigned char naming_key[32], object_id[32], key_id[8];
    char id_hex[65], key_id_hex[17];
    struct crypt_sealed_info info;
    const size_t plain_len = 100000 + 70000 + 90000 + 120000 + 33333;
    unsigned char *plain;
    unsigned line = 0;
    size_t at = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: gen_container_vector NEW_EMPTY_DIR\n");
        return 2;
    }
    if (sodium_init() < 0)
        die("sodium_init", NULL);

    crypto_generichash(seed, sizeof(seed), (const unsigned char *)key_seed_text,
                       strlen(key_seed_text), NULL, 0);
    if (crypto_box_seed_keypair(pk, sk, seed) != 0)
        die("crypto_box_seed_keypair", NULL);
    crypto_generichash(naming_key, sizeof(naming_key), (const unsigned char *)naming_seed_text,
                       strlen(naming_seed_text), NULL, 0);
    write_key_file(argv[1], "backup.pub", "backup-public-key", pk, sizeof(pk));
    write_key_file(argv[1], "backup.key", "backup-secret-key", sk, sizeof(sk));
    write_key_file(argv[1], "naming.key", "naming-key", naming_key, sizeof(naming_key));

    /* Text first so the AUTO trial (first 128 KiB) sees a compressible start. */
    plain = malloc(plain_len);
    if (plain == NULL)
        die("out of memory", NULL);
    at = append_text(plain, at, 100000, &line);
    at = append_random(plain, at, 70000, 0x11);
    at = append_text(plain, at, 90000, &line);
    at = append_random(plain, at, 120000, 0x22);
    at = append_text(plain, at, 33333, &line);
    if (at != plain_len)
        die("plaintext length", NULL);
    write_file(argv[1], "plain.bin", plain, plain_len);
    write_file(argv[1], "empty.bin", "", 0);

    seal_file(argv[1], "object.bin", pk, plain, plain_len, &info);
    report("object.bin", &info);
    if (!info.compressed)
        die("object.bin should be compressed", NULL);
    check_opens(argv[1], "object.bin", pk, sk, info.plain_sha256);
    crypto_generichash(object_id, sizeof(object_id), info.plain_sha256, 32, naming_key,
                       sizeof(naming_key));
    hex(object_id, 32, id_hex);
    printf("object id of plain.bin under naming.key: %s\n", id_hex);

    seal_file(argv[1], "object-empty.bin", pk, plain, 0, &info);
    report("object-empty.bin", &info);
    if (info.compressed)
        die("object-empty.bin should be stored raw", NULL);
    check_opens(argv[1], "object-empty.bin", pk, sk, info.plain_sha256);

    crypt_key_id(pk, key_id);
    hex(key_id, sizeof(key_id), key_id_hex);
    printf("key id of backup.pub: %s\n", key_id_hex);
    free(plain);
    return 0;
}
