/*
 * keys.c - generating custodian's key set and reading key files.
 *
 * Secret bytes only ever live in sodium_malloc'd memory (guard pages, no
 * swap, wiped by sodium_free), including the hex text they are written as
 * and read from. Files are written durably (temp + fsync + rename + fsync of
 * the directory) because a key set lost to a power cut after the first
 * backups were encrypted to it would make those backups unreadable.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <sodium.h>

#include "shipper/container.h"
#include "common/util.h"

/* The longest file we write is 32 + 128 + 1 bytes; anything much bigger is not a key. */
#define KEYS_FILE_MAX 512

struct keys_kind {
    const char *name;
    size_t len;
    int secret;
};

static const struct keys_kind keys_kinds[] = {
    {"backup-public-key", KEYS_PUBLIC_BYTES, 0},
    {"backup-secret-key", KEYS_BACKUP_SECRET_BYTES, 1},
    {"naming-key", KEYS_NAMING_BYTES, 1},
    {"signing-secret-key", KEYS_SIGNING_SECRET_BYTES, 1},
    {"signing-public-key", KEYS_PUBLIC_BYTES, 0},
};

_Static_assert(KEYS_PUBLIC_BYTES == crypto_box_PUBLICKEYBYTES &&
                   KEYS_PUBLIC_BYTES == crypto_sign_PUBLICKEYBYTES &&
                   KEYS_BACKUP_SECRET_BYTES == crypto_box_SECRETKEYBYTES &&
                   KEYS_NAMING_BYTES == crypto_generichash_KEYBYTES &&
                   KEYS_SIGNING_SECRET_BYTES == crypto_sign_SECRETKEYBYTES,
               "key sizes must match libsodium's");

static const struct keys_kind *keys_find_kind(const char *name)
{
    for (size_t i = 0; i < sizeof(keys_kinds) / sizeof(keys_kinds[0]); i++)
        if (strcmp(keys_kinds[i].name, name) == 0)
            return &keys_kinds[i];
    return NULL;
}

static int keys_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Move tmp to name in dirfd without replacing an existing file, so that two
 * keygen runs racing cannot overwrite each other's keys. Filesystems without
 * RENAME_NOREPLACE fall back to rename; keys_generate has already checked
 * that name does not exist.
 */
static int keys_rename_noreplace(int dirfd, const char *tmp, const char *name)
{
    if (renameat2(dirfd, tmp, dirfd, name, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    return renameat(dirfd, tmp, dirfd, name);
}

/* Write one key file into dirfd durably, except for the directory fsync the caller does once. */
static int keys_write_file(int dirfd, const char *dir, const char *name, const char *kind,
                           const unsigned char *key, size_t len, mode_t mode, struct cst_err *err)
{
    size_t text_size = strlen("custodian  v1\n") + strlen(kind) + 2 * len + 2;
    char *text = sodium_malloc(text_size);
    unsigned char nonce[4];
    char tmp[256];
    int fd = -1, rc = -1, made_tmp = 0;
    size_t n;

    if (text == NULL)
        return cst_err_set(err, "cannot write key file %s/%s: out of memory", dir, name);
    randombytes_buf(nonce, sizeof(nonce));
    snprintf(tmp, sizeof(tmp), ".%s.tmp.%02x%02x%02x%02x", name, nonce[0], nonce[1], nonce[2],
             nonce[3]);
    n = (size_t)snprintf(text, text_size, "custodian %s v1\n", kind);
    sodium_bin2hex(text + n, text_size - n, key, len);
    n += 2 * len;
    text[n++] = '\n';

    fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        cst_err_sys(err, "cannot create key file %s/%s", dir, tmp);
        goto out;
    }
    made_tmp = 1;
    /* The umask may have taken bits away or (with a loose umask) the mode must be exact. */
    if (fchmod(fd, mode) < 0 || keys_write_all(fd, text, n) < 0 || fsync(fd) < 0) {
        cst_err_sys(err, "cannot write key file %s/%s", dir, tmp);
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        cst_err_sys(err, "cannot write key file %s/%s", dir, tmp);
        goto out;
    }
    fd = -1;
    if (keys_rename_noreplace(dirfd, tmp, name) < 0) {
        cst_err_sys(err, "cannot rename %s/%s to %s", dir, tmp, name);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0 && made_tmp)
        unlinkat(dirfd, tmp, 0);
    sodium_free(text);
    return rc;
}

/* fsync the directory that holds dir, so that a directory we just created survives a crash. */
static int keys_sync_parent(const char *dir, struct cst_err *err)
{
    char *parent = strdup(dir);
    char *slash;
    int fd, rc = 0;

    if (parent == NULL)
        return cst_err_set(err, "cannot create key directory %s: out of memory", dir);
    /* Trailing slashes do not name another directory. */
    for (slash = parent + strlen(parent); slash > parent + 1 && slash[-1] == '/'; slash--)
        slash[-1] = '\0';
    slash = strrchr(parent, '/');
    if (slash == NULL)
        strcpy(parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        rc = cst_err_sys(err, "cannot sync directory %s", parent);
    if (fd >= 0)
        close(fd);
    free(parent);
    return rc;
}

int keys_generate(const char *out_dir, struct cst_err *err)
{
    static const char *const names[] = {"backup.pub", "backup.key", "naming.key", "signing.key",
                                        "signing.pub"};
    enum { N_FILES = sizeof(names) / sizeof(names[0]) };
    unsigned char box_pk[crypto_box_PUBLICKEYBYTES], sign_pk[crypto_sign_PUBLICKEYBYTES];
    unsigned char *secrets = NULL, *box_sk, *naming, *sign_sk;
    int written[N_FILES] = {0};
    int dirfd = -1, created = 0, rc = -1;

    if (sodium_init() < 0)
        return cst_err_set(err, "cannot generate keys: libsodium failed to initialise");
    if (mkdir(out_dir, 0700) == 0)
        created = 1;
    else if (errno != EEXIST)
        return cst_err_sys(err, "cannot create key directory %s", out_dir);
    dirfd = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return cst_err_sys(err, "cannot open key directory %s", out_dir);

    /* Check the whole set first: a half-replaced set would be worse than none. */
    for (size_t i = 0; i < N_FILES; i++) {
        struct stat st;

        if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
            cst_err_set(err, "key file %s/%s already exists; refusing to overwrite it", out_dir,
                        names[i]);
            goto out;
        }
        if (errno != ENOENT) {
            cst_err_sys(err, "cannot check key file %s/%s", out_dir, names[i]);
            goto out;
        }
    }

    secrets = sodium_malloc(crypto_box_SECRETKEYBYTES + crypto_generichash_KEYBYTES +
                            crypto_sign_SECRETKEYBYTES);
    if (secrets == NULL) {
        cst_err_set(err, "cannot generate keys: out of memory");
        goto out;
    }
    box_sk = secrets;
    naming = box_sk + crypto_box_SECRETKEYBYTES;
    sign_sk = naming + crypto_generichash_KEYBYTES;
    crypto_box_keypair(box_pk, box_sk);
    crypto_generichash_keygen(naming);
    crypto_sign_keypair(sign_pk, sign_sk);

    {
        const struct {
            const char *kind;
            const unsigned char *key;
            size_t len;
            mode_t mode;
        } files[N_FILES] = {
            {"backup-public-key", box_pk, sizeof(box_pk), 0644},
            {"backup-secret-key", box_sk, crypto_box_SECRETKEYBYTES, 0600},
            {"naming-key", naming, crypto_generichash_KEYBYTES, 0600},
            {"signing-secret-key", sign_sk, crypto_sign_SECRETKEYBYTES, 0600},
            {"signing-public-key", sign_pk, sizeof(sign_pk), 0644},
        };

        for (size_t i = 0; i < N_FILES; i++) {
            if (keys_write_file(dirfd, out_dir, names[i], files[i].kind, files[i].key, files[i].len,
                                files[i].mode, err) < 0)
                goto out;
            written[i] = 1;
        }
    }
    if (fsync(dirfd) < 0) {
        cst_err_sys(err, "cannot sync key directory %s", out_dir);
        goto out;
    }
    if (created && keys_sync_parent(out_dir, err) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0 && dirfd >= 0) {
        /* Leave no partial set behind, so that the operator can simply run keygen again. */
        for (size_t i = 0; i < N_FILES; i++)
            if (written[i])
                unlinkat(dirfd, names[i], 0);
    }
    if (dirfd >= 0)
        close(dirfd);
    sodium_free(secrets);
    return rc;
}

/* Parse the text of a key file of the given kind into out. */
static int keys_parse(const char *path, const struct keys_kind *kind, const char *text,
                      size_t text_len, unsigned char *out, struct cst_err *err)
{
    const char *nl = memchr(text, '\n', text_len);
    const char *hex, *hex_end, *found, *version;
    size_t bin_len, found_len;

    if (strlen(text) != text_len)
        return cst_err_set(err, "key file %s is not a custodian key file: it contains a NUL byte",
                           path);
    if (nl == NULL || strncmp(text, "custodian ", 10) != 0)
        return cst_err_set(err,
                           "key file %s is not a custodian key file: its first line should be "
                           "'custodian %s v1'",
                           path, kind->name);
    found = text + 10;
    version = memchr(found, ' ', (size_t)(nl - found));
    if (version == NULL)
        return cst_err_set(err, "key file %s: first line should be 'custodian %s v1'", path,
                           kind->name);
    found_len = (size_t)(version - found);
    version++;
    if ((size_t)(nl - version) != 2 || strncmp(version, "v1", 2) != 0)
        return cst_err_set(err,
                           "key file %s has a format version this custodian does not know (it "
                           "reads v1)",
                           path);
    if (found_len != strlen(kind->name) || strncmp(found, kind->name, found_len) != 0) {
        const struct keys_kind *other = NULL;

        for (size_t i = 0; i < sizeof(keys_kinds) / sizeof(keys_kinds[0]); i++)
            if (found_len == strlen(keys_kinds[i].name) &&
                strncmp(found, keys_kinds[i].name, found_len) == 0)
                other = &keys_kinds[i];
        if (other != NULL)
            return cst_err_set(err, "key file %s holds a %s, not a %s", path, other->name,
                               kind->name);
        return cst_err_set(err, "key file %s: unknown key kind on line 1 (expected %s)", path,
                           kind->name);
    }

    hex = nl + 1;
    hex_end = memchr(hex, '\n', text_len - (size_t)(hex - text));
    if (hex_end == NULL)
        hex_end = text + text_len;
    else if (hex_end + 1 != text + text_len)
        return cst_err_set(err, "key file %s: unexpected text after the key on line 2", path);
    if ((size_t)(hex_end - hex) != 2 * kind->len)
        return cst_err_set(err,
                           "key file %s: line 2 should be %zu lowercase hex digits, found %zu "
                           "characters",
                           path, 2 * kind->len, (size_t)(hex_end - hex));
    if (strspn(hex, "0123456789abcdef") < 2 * kind->len)
        return cst_err_set(err,
                           "key file %s: line 2 holds a character that is not a lowercase hex "
                           "digit",
                           path);
    if (sodium_hex2bin(out, kind->len, hex, 2 * kind->len, NULL, &bin_len, NULL) != 0 ||
        bin_len != kind->len)
        return cst_err_set(err, "key file %s: line 2 is not valid hex", path);
    return 0;
}

/* An Ed25519 secret key holds its public half; a mismatch means the file was damaged. */
static int keys_check_signing(const char *path, const unsigned char *sk, struct cst_err *err)
{
    unsigned char *seed = sodium_malloc(crypto_sign_SEEDBYTES + crypto_sign_SECRETKEYBYTES);
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    int rc = 0;

    if (seed == NULL)
        return cst_err_set(err, "cannot check key file %s: out of memory", path);
    crypto_sign_ed25519_sk_to_seed(seed, sk);
    crypto_sign_seed_keypair(pk, seed + crypto_sign_SEEDBYTES, seed);
    if (sodium_memcmp(seed + crypto_sign_SEEDBYTES, sk, crypto_sign_SECRETKEYBYTES) != 0)
        rc = cst_err_set(err,
                         "key file %s is damaged: its public half does not match its secret "
                         "half",
                         path);
    sodium_free(seed);
    return rc;
}

static int keys_read(const char *path, const struct keys_kind *kind, unsigned char *out,
                     struct cst_err *err)
{
    char *text = NULL;
    struct stat st;
    size_t len = 0;
    int fd, rc = -1;

    if (sodium_init() < 0)
        return cst_err_set(err, "cannot read key file %s: libsodium failed to initialise", path);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return cst_err_sys(err, "cannot read key file %s", path);
    if (fstat(fd, &st) < 0) {
        cst_err_sys(err, "cannot read key file %s", path);
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        cst_err_set(err, "key file %s is not a regular file", path);
        goto out;
    }
    /* As ssh does with a private key: a secret others can read is no longer a secret. */
    if (kind->secret && (st.st_mode & 0077) != 0) {
        cst_err_set(err, "key file %s is %s by other users (mode %04o); run chmod 600 %s", path,
                    (st.st_mode & 0044) ? "readable" : "writable", (unsigned)(st.st_mode & 07777),
                    path);
        goto out;
    }
    /* Whoever can replace the public key can have backups encrypted to their own key. */
    if (!kind->secret && (st.st_mode & 0022) != 0) {
        cst_err_set(err, "key file %s is writable by other users (mode %04o); run chmod 644 %s",
                    path, (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_size > KEYS_FILE_MAX) {
        cst_err_set(err, "key file %s is too large to be a key (%lld bytes)", path,
                    (long long)st.st_size);
        goto out;
    }
    if ((text = sodium_malloc(KEYS_FILE_MAX + 1)) == NULL) {
        cst_err_set(err, "cannot read key file %s: out of memory", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, text + len, KEYS_FILE_MAX + 1 - len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cst_err_sys(err, "cannot read key file %s", path);
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > KEYS_FILE_MAX) {
            cst_err_set(err, "key file %s is too large to be a key", path);
            goto out;
        }
    }
    text[len] = '\0';
    if (keys_parse(path, kind, text, len, out, err) < 0)
        goto out;
    if (strcmp(kind->name, "signing-secret-key") == 0 && keys_check_signing(path, out, err) < 0)
        goto out;
    rc = 0;
out:
    if (rc < 0)
        sodium_memzero(out, kind->len);
    close(fd);
    sodium_free(text);
    return rc;
}

int keys_load_public(const char *path, unsigned char pk[32], struct cst_err *err)
{
    return keys_read(path, keys_find_kind("backup-public-key"), pk, err);
}

int keys_load_signing_public(const char *path, unsigned char pk[32], struct cst_err *err)
{
    return keys_read(path, keys_find_kind("signing-public-key"), pk, err);
}

int keys_load_secret(const char *path, const char *kind, unsigned char *out, size_t len,
                     struct cst_err *err)
{
    const struct keys_kind *k = keys_find_kind(kind);

    if (k == NULL || !k->secret)
        return cst_err_set(err, "cannot load key file %s: '%s' is not a kind of secret key", path,
                           kind);
    if (len != k->len)
        return cst_err_set(err, "cannot load key file %s: a %s is %zu bytes, not %zu", path, kind,
                           k->len, len);
    return keys_read(path, k, out, err);
}

int keys_check_signing_key(const char *path, struct cst_err *err)
{
    unsigned char *sk = sodium_malloc(KEYS_SIGNING_SECRET_BYTES);
    int rc;

    if (sk == NULL)
        return cst_err_set(err, "cannot check key file %s: out of memory", path);
    rc = keys_load_secret(path, "signing-secret-key", sk, KEYS_SIGNING_SECRET_BYTES, err);
    sodium_free(sk);
    return rc;
}

int keys_check_backup_pair(const char *public_path, const char *secret_path, struct cst_err *err)
{
    unsigned char pk[KEYS_PUBLIC_BYTES], derived[KEYS_PUBLIC_BYTES], id[CRYPT_KEY_ID_SIZE];
    unsigned char *sk = sodium_malloc(KEYS_BACKUP_SECRET_BYTES);
    char id_hex[2 * CRYPT_KEY_ID_SIZE + 1];
    int rc = -1;

    if (sk == NULL)
        return cst_err_set(err, "cannot check key file %s: out of memory", secret_path);
    if (keys_load_public(public_path, pk, err) < 0 ||
        keys_load_secret(secret_path, "backup-secret-key", sk, KEYS_BACKUP_SECRET_BYTES, err) < 0)
        goto out;
    if (crypto_scalarmult_base(derived, sk) != 0 || sodium_memcmp(derived, pk, sizeof(pk)) != 0) {
        crypt_key_id(pk, id);
        sodium_bin2hex(id_hex, sizeof(id_hex), id, sizeof(id));
        cst_err_set(err,
                    "key file %s does not belong to the public key %s (key id %s): what is "
                    "encrypted to that public key could not be restored with it; configure the "
                    "backup.key of the same key set",
                    secret_path, public_path, id_hex);
        goto out;
    }
    rc = 0;
out:
    sodium_free(sk);
    return rc;
}

int keys_check_trust_file(const char *path, const char *what, struct cst_err *err)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return cst_err_sys(err, "%s %s cannot be read", what, path);
    if (!S_ISREG(st.st_mode))
        return cst_err_set(err, "%s %s is not a regular file", what, path);
    if ((st.st_mode & 0022) != 0)
        return cst_err_set(err,
                           "%s %s is writable by other users (mode %04o), who could add a CA or "
                           "a host key to it; run chmod go-w %s",
                           what, path, (unsigned)(st.st_mode & 07777), path);
    if (st.st_uid != 0 && st.st_uid != geteuid())
        return cst_err_set(err,
                           "%s %s belongs to uid %u, who could add a CA or a host key to it; it "
                           "must belong to root or to the user custodian runs as (uid %u): run "
                           "chown root %s",
                           what, path, (unsigned)st.st_uid, (unsigned)geteuid(), path);
    if (access(path, R_OK) < 0)
        return cst_err_sys(err, "%s %s cannot be read", what, path);
    return 0;
}

int keys_load_signing_pk(const char *signing_key, unsigned char pk[32], struct cst_err *err)
{
    unsigned char *sk = sodium_malloc(64);
    size_t n = strlen(signing_key);
    struct cst_err perr;
    char *pub;
    int rc;

    if (sk == NULL)
        return cst_err_set(err, "out of memory");
    rc = keys_load_secret(signing_key, "signing-secret-key", sk, 64, err);
    if (rc == 0)
        crypto_sign_ed25519_sk_to_pk(pk, sk);
    sodium_free(sk);
    if (rc == 0)
        return 0;
    pub = util_printf("%.*s.pub",
                      (int)(n > 4 && strcmp(signing_key + n - 4, ".key") == 0 ? n - 4 : n),
                      signing_key);
    rc = keys_load_signing_public(pub, pk, &perr);
    free(pub);
    return rc; /* on failure err still says why the secret key could not be read */
}
