/*
 * recovery_sheet.c - the printable recovery sheet (see recovery_sheet.h).
 *
 * The sheet is built from the key files as loaded (with their usual checks),
 * not copied from them: what it prints is the canonical file text that the
 * rebuild commands write, and the SHA-256 printed beside each key is that of
 * this text, so `sha256sum -c` on the rebuilt files catches a digit typed
 * wrong. The text holds secret keys: it is assembled in sodium_malloc'd
 * memory and written with write(2), never through stdio buffers.
 */
#include "recovery_sheet.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "agent/keys.h"
#include "common/util.h"
#include "shipper/container.h"

#define SHEET_MAX (32 * 1024)
#define GROUP 8          /* hex digits per group */
#define GROUPS_PER_ROW 8 /* so a row is 71 columns */

enum { BACKUP_KEY, SIGNING_PUB, NAMING_KEY, SIGNING_KEY, BACKUP_PUB, N_KEYS };

static const struct sheet_key {
    const char *file;
    const char *kind;
    size_t len;
    const char *role;
} sheet_keys[N_KEYS] = {
    {"backup.key", "backup-secret-key", KEYS_BACKUP_SECRET_BYTES,
     "decrypts every backup; kept off the app host"},
    {"signing.pub", "signing-public-key", KEYS_PUBLIC_BYTES,
     "tells genuine manifests (and the files they lead to) from\n"
     "               forged ones; take it from here, not from the backup store"},
    {"naming.key", "naming-key", KEYS_NAMING_BYTES,
     "names the objects: lets a reader recompute an object's name,\n"
     "               and a new host keep the names the destinations use"},
    {"signing.key", "signing-secret-key", KEYS_SIGNING_SECRET_BYTES,
     "signs the daily manifests on the app host"},
    {"backup.pub", "backup-public-key", KEYS_PUBLIC_BYTES,
     "what the app host encrypts to (it follows from backup.key)"},
};

struct sheet {
    char *text; /* sodium_malloc'd, SHEET_MAX bytes */
    size_t len;
    int overflow;
};

static void put(struct sheet *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct sheet *s, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (s->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(s->text + s->len, SHEET_MAX - s->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= SHEET_MAX - s->len)
        s->overflow = 1;
    else
        s->len += (size_t)n;
}

/* The key's hex in groups of 8, GROUPS_PER_ROW to a row, each row after `indent`. */
static void put_grouped(struct sheet *s, const char *hex, const char *indent)
{
    size_t n = strlen(hex);

    for (size_t at = 0; at < n; at += GROUP) {
        if (at % (GROUP * GROUPS_PER_ROW) == 0)
            put(s, "%s%s", at ? "\n" : "", indent);
        else
            put(s, " ");
        put(s, "%.*s", GROUP, hex + at);
    }
}

struct loaded {
    int present;
    unsigned char *key; /* sodium_malloc'd, sheet_keys[i].len bytes */
    char *hex;          /* sodium_malloc'd, 2 * len + 1 */
    char sha256[65];    /* of the canonical file text */
};

static int load_one(const char *dir, size_t i, struct loaded *l, struct cst_err *err)
{
    const struct sheet_key *k = &sheet_keys[i];
    char *path = util_join(dir, k->file);
    size_t text_len = strlen("custodian  v1\n\n") + strlen(k->kind) + 2 * k->len;
    unsigned char digest[32];
    char *text = NULL;
    struct stat st;
    int rc = -1;

    if (lstat(path, &st) < 0 && errno == ENOENT) {
        free(path);
        return 0;
    }
    l->key = sodium_malloc(k->len);
    l->hex = sodium_malloc(2 * k->len + 1);
    text = sodium_malloc(text_len + 1);
    if (l->key == NULL || l->hex == NULL || text == NULL) {
        cst_err_set(err, "cannot read key file %s: out of memory", path);
        goto out;
    }
    if (i == BACKUP_PUB    ? keys_load_public(path, l->key, err)
        : i == SIGNING_PUB ? keys_load_signing_public(path, l->key, err)
                           : keys_load_secret(path, k->kind, l->key, k->len, err))
        goto out;
    sodium_bin2hex(l->hex, 2 * k->len + 1, l->key, k->len);
    snprintf(text, text_len + 1, "custodian %s v1\n%s\n", k->kind, l->hex);
    crypto_hash_sha256(digest, (const unsigned char *)text, text_len);
    util_hex(digest, 32, l->sha256);
    l->present = 1;
    rc = 0;
out:
    if (text)
        sodium_free(text);
    free(path);
    return rc;
}

/* Keys present together must be one set: a sheet of a mixed set would restore nothing. */
static int check_pairs(const char *dir, struct loaded *l, struct cst_err *err)
{
    unsigned char derived[32];

    if (l[BACKUP_KEY].present && l[BACKUP_PUB].present &&
        (crypto_scalarmult_base(derived, l[BACKUP_KEY].key) != 0 ||
         sodium_memcmp(derived, l[BACKUP_PUB].key, 32) != 0))
        return cst_err_set(err,
                           "%s/backup.key does not belong to %s/backup.pub: they come from "
                           "different key sets; no sheet written",
                           dir, dir);
    if (l[SIGNING_KEY].present && l[SIGNING_PUB].present &&
        sodium_memcmp(l[SIGNING_KEY].key + 32, l[SIGNING_PUB].key, 32) != 0)
        return cst_err_set(err,
                           "%s/signing.key does not belong to %s/signing.pub: they come from "
                           "different key sets; no sheet written",
                           dir, dir);
    if (!l[BACKUP_KEY].present && !l[SIGNING_PUB].present)
        return cst_err_set(err,
                           "%s holds neither backup.key nor signing.pub: a sheet without them "
                           "restores nothing",
                           dir);
    return 0;
}

static void put_sheet(struct sheet *s, const char *dir, const struct loaded *l)
{
    unsigned char pk[32], id[CRYPT_KEY_ID_SIZE];
    char id_hex[2 * CRYPT_KEY_ID_SIZE + 1] = "unknown", now[40];

    if (l[BACKUP_PUB].present) {
        crypt_key_id(l[BACKUP_PUB].key, id);
        util_hex(id, sizeof(id), id_hex);
    } else if (l[BACKUP_KEY].present && crypto_scalarmult_base(pk, l[BACKUP_KEY].key) == 0) {
        crypt_key_id(pk, id);
        util_hex(id, sizeof(id), id_hex);
    }
    util_format_ms(util_now_ms(), now, sizeof(now));
    put(s,
        "custodian recovery sheet v1\n"
        "\n"
        "Key set with backup key id %s, printed %s\n"
        "from the key folder %s.\n"
        "\n"
        "Keep this sheet in a safe, and a second copy in another place. It holds\n"
        "secret keys: whoever reads it can decrypt every backup. Once it is\n"
        "printed, delete the file it was printed from (shred -u %s).\n"
        "\n"
        "What the keys are for\n",
        id_hex, now, dir, RECOVERY_SHEET_NAME);
    for (size_t i = 0; i < N_KEYS; i++)
        put(s, "  %-12s %s\n", sheet_keys[i].file, sheet_keys[i].role);
    put(s, "\n"
           "To restore and verify without custodian you need backup.key and\n"
           "signing.pub (docs/ARCHIVE.md, \"Verifying a restore without custodian\");\n"
           "keep naming.key with them. To run custodian on a new host against the\n"
           "same destinations, rebuild all five.\n"
           "\n"
           "The key files\n"
           "  A key file is two lines: \"custodian <kind> v1\", then the key in\n"
           "  lowercase hex. The hex is printed in groups of 8 digits; the spaces are\n"
           "  not part of it. sha256 is that of the whole file as the commands below\n"
           "  rebuild it.\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        if (!l[i].present) {
            put(s,
                "\n  %s: not in %s when this sheet was printed; keep its\n"
                "  offline copy with this sheet\n",
                sheet_keys[i].file, dir);
            continue;
        }
        put(s, "\n  %s (%s, %zu bytes)\n", sheet_keys[i].file, sheet_keys[i].kind,
            sheet_keys[i].len);
        put_grouped(s, l[i].hex, "    ");
        put(s, "\n    sha256 %s\n", l[i].sha256);
    }
    put(s,
        "\n"
        "Rebuilding the key files\n"
        "  In an empty folder, type the lines below into sh or bash, each key's\n"
        "  hex as printed above (the line breaks and spaces inside the quotes do\n"
        "  not matter); sha256sum must then say OK for every file.\n"
        "\n"
        "#--- rebuild commands (begin) ---\n"
        "umask 077\n"
        "k() { printf 'custodian %%s v1\\n%%s\\n' \"$2\" \"$(echo $3 | tr -d ' ')\" >\"$1\"; }\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        if (!l[i].present)
            continue;
        put(s, "k %s %s '\n", sheet_keys[i].file, sheet_keys[i].kind);
        put_grouped(s, l[i].hex, "  ");
        put(s, "'\n");
    }
    if (l[SIGNING_PUB].present || l[BACKUP_PUB].present)
        put(s, "chmod 644%s%s\n", l[SIGNING_PUB].present ? " signing.pub" : "",
            l[BACKUP_PUB].present ? " backup.pub" : "");
    put(s, "sha256sum -c <<'EOF'\n");
    for (size_t i = 0; i < N_KEYS; i++)
        if (l[i].present)
            put(s, "%s  %s\n", l[i].sha256, sheet_keys[i].file);
    put(s, "EOF\n"
           "#--- rebuild commands (end) ---\n");
}

int recovery_sheet_write(const char *dir, int out_fd, struct cst_err *err)
{
    struct loaded l[N_KEYS];
    struct sheet s = {NULL, 0, 0};
    int rc = -1;

    memset(l, 0, sizeof(l));
    if (sodium_init() < 0)
        return cst_err_set(err, "cannot write the recovery sheet: libsodium failed to initialise");
    for (size_t i = 0; i < N_KEYS; i++)
        if (load_one(dir, i, &l[i], err) < 0)
            goto out;
    if (check_pairs(dir, l, err) < 0)
        goto out;
    if ((s.text = sodium_malloc(SHEET_MAX)) == NULL) {
        cst_err_set(err, "cannot write the recovery sheet: out of memory");
        goto out;
    }
    put_sheet(&s, dir, l);
    if (s.overflow) {
        cst_err_set(err, "cannot write the recovery sheet: the key folder's name is too long");
        goto out;
    }
    if (util_write_all(out_fd, s.text, s.len) < 0) {
        cst_err_sys(err, "cannot write the recovery sheet");
        goto out;
    }
    rc = 0;
out:
    for (size_t i = 0; i < N_KEYS; i++) {
        if (l[i].key)
            sodium_free(l[i].key);
        if (l[i].hex)
            sodium_free(l[i].hex);
    }
    if (s.text)
        sodium_free(s.text);
    return rc;
}

int recovery_sheet_create(const char *dir, struct cst_err *err)
{
    char *path = util_join(dir, RECOVERY_SHEET_NAME);
    int fd, rc = -1;

    /* O_EXCL: an earlier set's sheet is the operator's to destroy, not ours. */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        cst_err_sys(err, "cannot create %s", path);
        free(path);
        return -1;
    }
    if (fchmod(fd, 0600) < 0) {
        cst_err_sys(err, "cannot write %s", path);
        goto out;
    }
    if (recovery_sheet_write(dir, fd, err) < 0)
        goto out;
    if (fsync(fd) < 0) {
        cst_err_sys(err, "cannot write %s", path);
        goto out;
    }
    rc = util_fsync_dir(dir, err);
out:
    if (close(fd) < 0 && rc == 0)
        rc = cst_err_sys(err, "cannot write %s", path);
    if (rc < 0)
        unlink(path);
    free(path);
    return rc;
}
