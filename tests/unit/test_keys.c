/*
 * test_keys.c - agent/keys.c: a generated key set loads back and belongs
 * together, files get the right modes, and loose, foreign, malformed or
 * damaged key files are refused with a message that says what to do.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "agent/keys.h"
#include "agent/recovery_sheet.h"

struct fixture {
    char dir[256];  /* a fresh temporary directory */
    char keys[300]; /* dir/keys: where the key set goes */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    strcpy(f->dir, "/tmp/test_keys.XXXXXX");
    if (sodium_init() < 0 || mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    snprintf(f->keys, sizeof(f->keys), "%s/keys", f->dir);
    *state = f;
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static const char *key_path(const struct fixture *f, const char *name)
{
    static char path[2][400];
    static int which;

    which = !which; /* two live results, for calls that need a pair */
    snprintf(path[which], sizeof(path[which]), "%s/%s", f->keys, name);
    return path[which];
}

static void write_key_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(close(fd), 0);
}

static mode_t file_mode(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", haystack, needle);
}

static void generate(struct fixture *f)
{
    struct cst_err err = {{0}};

    if (keys_generate(f->keys, &err) < 0)
        fail_msg("%s", err.msg);
}

static void test_generate_and_load(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char box_pk[32], derived_pk[32], sign_pk[32];
    unsigned char *box_sk = sodium_malloc(KEYS_BACKUP_SECRET_BYTES);
    unsigned char *naming = sodium_malloc(KEYS_NAMING_BYTES);
    unsigned char *sign_sk = sodium_malloc(KEYS_SIGNING_SECRET_BYTES);
    unsigned char msg[] = "manifest", sig[crypto_sign_BYTES];

    assert_non_null(box_sk);
    assert_non_null(naming);
    assert_non_null(sign_sk);
    generate(f);

    assert_int_equal(file_mode(f->keys), 0700);
    assert_int_equal(file_mode(key_path(f, "backup.pub")), 0644);
    assert_int_equal(file_mode(key_path(f, "signing.pub")), 0644);
    assert_int_equal(file_mode(key_path(f, "backup.key")), 0600);
    assert_int_equal(file_mode(key_path(f, "naming.key")), 0600);
    assert_int_equal(file_mode(key_path(f, "signing.key")), 0600);

    assert_int_equal(keys_load_public(key_path(f, "backup.pub"), box_pk, &err), 0);
    assert_int_equal(
        keys_load_secret(key_path(f, "backup.key"), "backup-secret-key", box_sk, 32, &err), 0);
    assert_int_equal(keys_load_secret(key_path(f, "naming.key"), "naming-key", naming, 32, &err),
                     0);
    assert_int_equal(
        keys_load_secret(key_path(f, "signing.key"), "signing-secret-key", sign_sk, 64, &err), 0);
    assert_int_equal(keys_load_signing_public(key_path(f, "signing.pub"), sign_pk, &err), 0);

    /* The files belong together: the public keys are those of the secret keys. */
    assert_int_equal(crypto_scalarmult_base(derived_pk, box_sk), 0);
    assert_memory_equal(derived_pk, box_pk, 32);
    assert_int_equal(crypto_sign_detached(sig, NULL, msg, sizeof(msg), sign_sk), 0);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg), sign_pk), 0);
    assert_memory_not_equal(naming, box_sk, 32);

    sodium_free(box_sk);
    sodium_free(naming);
    sodium_free(sign_sk);
}

/* The format is the contract with an operator reading the file years from now. */
static void test_file_format(void **state)
{
    struct fixture *f = *state;
    char text[512];
    FILE *fp;
    size_t n;

    generate(f);
    fp = fopen(key_path(f, "signing.key"), "r");
    assert_non_null(fp);
    n = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[n] = '\0';
    assert_int_equal(n, strlen("custodian signing-secret-key v1\n") + 128 + 1);
    assert_int_equal(strncmp(text, "custodian signing-secret-key v1\n", 32), 0);
    assert_int_equal(strspn(text + 32, "0123456789abcdef"), 128);
    assert_int_equal(text[n - 1], '\n');

    fp = fopen(key_path(f, "backup.pub"), "r");
    assert_non_null(fp);
    n = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[n] = '\0';
    assert_int_equal(n, strlen("custodian backup-public-key v1\n") + 64 + 1);
    assert_int_equal(strncmp(text, "custodian backup-public-key v1\n", 31), 0);
}

static void test_refuses_overwrite(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char before[32], after[32];

    generate(f);
    assert_int_equal(keys_load_public(key_path(f, "backup.pub"), before, &err), 0);
    assert_int_equal(keys_generate(f->keys, &err), -1);
    assert_contains(err.msg, key_path(f, "backup.pub"));
    assert_contains(err.msg, "already exists; refusing to overwrite it");
    assert_int_equal(keys_load_public(key_path(f, "backup.pub"), after, &err), 0);
    assert_memory_equal(before, after, 32);

    /* One existing file stops the whole set: nothing new appears beside it. */
    assert_int_equal(unlink(key_path(f, "backup.pub")), 0);
    assert_int_equal(unlink(key_path(f, "backup.key")), 0);
    assert_int_equal(unlink(key_path(f, "signing.key")), 0);
    assert_int_equal(unlink(key_path(f, "signing.pub")), 0);
    assert_int_equal(keys_generate(f->keys, &err), -1);
    assert_contains(err.msg, "naming.key already exists");
    assert_int_equal(access(key_path(f, "backup.pub"), F_OK), -1);
    assert_int_equal(access(key_path(f, "backup.key"), F_OK), -1);
}

static void test_refuses_loose_mode(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char *sk = sodium_malloc(32);
    char expect[1024];
    const char *path;

    generate(f);
    path = key_path(f, "backup.key");
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(keys_load_secret(path, "backup-secret-key", sk, 32, &err), -1);
    snprintf(expect, sizeof(expect),
             "key file %s is readable by other users (mode 0644); run chmod 600 %s", path, path);
    assert_string_equal(err.msg, expect);

    assert_int_equal(chmod(path, 0620), 0);
    assert_int_equal(keys_load_secret(path, "backup-secret-key", sk, 32, &err), -1);
    assert_contains(err.msg, "is writable by other users (mode 0620); run chmod 600");

    assert_int_equal(chmod(path, 0400), 0);
    assert_int_equal(keys_load_secret(path, "backup-secret-key", sk, 32, &err), 0);

    /* A public key others may replace would let them receive the backups. */
    path = key_path(f, "backup.pub");
    assert_int_equal(chmod(path, 0666), 0);
    assert_int_equal(keys_load_public(path, sk, &err), -1);
    assert_contains(err.msg, "is writable by other users (mode 0666); run chmod 644");
    sodium_free(sk);
}

static void test_unreadable(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char *sk = sodium_malloc(32);
    char expect[1024];
    const char *path;

    generate(f);
    path = key_path(f, "missing.key");
    assert_int_equal(keys_load_secret(path, "naming-key", sk, 32, &err), -1);
    snprintf(expect, sizeof(expect), "cannot read key file %s: No such file or directory", path);
    assert_string_equal(err.msg, expect);

    path = key_path(f, "naming.key");
    assert_int_equal(chmod(path, 0000), 0);
    snprintf(expect, sizeof(expect), "cannot read key file %s: Permission denied", path);
    if (geteuid() != 0) {
        assert_int_equal(keys_load_secret(path, "naming-key", sk, 32, &err), -1);
        assert_string_equal(err.msg, expect);
    } else {
        /* root reads any file: check as user nobody in a child process */
        int status;
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
            int ok = setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0 &&
                     keys_load_secret(path, "naming-key", sk, 32, &err) == -1 &&
                     strcmp(err.msg, expect) == 0;
            _exit(ok ? 0 : 1);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    sodium_free(sk);
}

static void test_refuses_wrong_kind(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char *sk = sodium_malloc(64);
    unsigned char pk[32];

    generate(f);
    assert_int_equal(keys_load_secret(key_path(f, "naming.key"), "backup-secret-key", sk, 32, &err),
                     -1);
    assert_contains(err.msg, "naming.key holds a naming-key, not a backup-secret-key");

    assert_int_equal(keys_load_public(key_path(f, "signing.pub"), pk, &err), -1);
    assert_contains(err.msg, "signing.pub holds a signing-public-key, not a backup-public-key");

    assert_int_equal(keys_load_secret(key_path(f, "backup.pub"), "backup-public-key", sk, 32, &err),
                     -1);
    assert_contains(err.msg, "'backup-public-key' is not a kind of secret key");

    assert_int_equal(
        keys_load_secret(key_path(f, "signing.key"), "signing-secret-key", sk, 32, &err), -1);
    assert_contains(err.msg, "a signing-secret-key is 64 bytes, not 32");
    sodium_free(sk);
}

static void expect_malformed(const struct fixture *f, const char *text, const char *needle)
{
    struct cst_err err = {{0}};
    unsigned char *sk = sodium_malloc(32);
    const char *path = key_path(f, "bad.key");

    write_key_file(path, text, 0600);
    assert_int_equal(keys_load_secret(path, "naming-key", sk, 32, &err), -1);
    assert_contains(err.msg, path);
    assert_contains(err.msg, needle);
    sodium_free(sk);
}

static void test_refuses_malformed(void **state)
{
    struct fixture *f = *state;
    char text[512];

    assert_int_equal(mkdir(f->keys, 0700), 0);
    snprintf(text, sizeof(text), "custodian naming-key v1\n%064d\n", 0);
    text[24] = 'z';
    text[25] = 'z';
    expect_malformed(f, text, "not a lowercase hex digit");
    snprintf(text, sizeof(text), "custodian naming-key v1\n%064d\n", 0);
    text[30] = 'A';
    expect_malformed(f, text, "not a lowercase hex digit");
    expect_malformed(f, "custodian naming-key v1\n0123456789\n",
                     "line 2 should be 64 lowercase hex digits, found 10 characters");
    expect_malformed(f, "custodian naming-key v1\n", "line 2 should be 64 lowercase hex digits");
    expect_malformed(f, "", "is not a custodian key file");
    expect_malformed(f, "-----BEGIN OPENSSH PRIVATE KEY-----\n", "is not a custodian key file");
    snprintf(text, sizeof(text), "custodian naming-key v2\n%064d\n", 0);
    expect_malformed(f, text, "format version");
    snprintf(text, sizeof(text), "custodian naming-key v1\n%064d\nmore\n", 0);
    expect_malformed(f, text, "unexpected text after the key");
    snprintf(text, sizeof(text), "custodian shopping-list v1\n%064d\n", 0);
    expect_malformed(f, text, "unknown key kind");

    /* Without the final newline the key is still whole: accept it. */
    {
        struct cst_err err = {{0}};
        unsigned char *sk = sodium_malloc(32);

        snprintf(text, sizeof(text), "custodian naming-key v1\n%064d", 7);
        write_key_file(key_path(f, "ok.key"), text, 0600);
        assert_int_equal(keys_load_secret(key_path(f, "ok.key"), "naming-key", sk, 32, &err), 0);
        assert_int_equal(sk[31], 0x07);
        sodium_free(sk);
    }
}

static void test_refuses_damaged_signing_key(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    unsigned char *sk = sodium_malloc(64);
    char text[512];
    FILE *fp;
    size_t n;

    generate(f);
    fp = fopen(key_path(f, "signing.key"), "r");
    assert_non_null(fp);
    n = fread(text, 1, sizeof(text) - 1, fp);
    fclose(fp);
    text[n] = '\0';
    /* The last hex digit lies in the public half; change it. */
    text[n - 2] = text[n - 2] == '0' ? '1' : '0';
    assert_int_equal(unlink(key_path(f, "signing.key")), 0);
    write_key_file(key_path(f, "signing.key"), text, 0600);
    assert_int_equal(
        keys_load_secret(key_path(f, "signing.key"), "signing-secret-key", sk, 64, &err), -1);
    assert_contains(err.msg, "is damaged");
    sodium_free(sk);
}

/* Run `sh -c script` in dir; its exit status. */
static int run_sh(const char *dir, const char *script)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        int null_fd = open("/dev/null", O_WRONLY);

        if (chdir(dir) < 0 || null_fd < 0 || dup2(null_fd, 1) < 0 || dup2(null_fd, 2) < 0)
            _exit(126);
        execl("/bin/sh", "sh", "-c", script, (char *)NULL);
        _exit(127);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static char *read_text(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *text = calloc(1, 65536);
    size_t n;

    assert_non_null(fp);
    assert_non_null(text);
    n = fread(text, 1, 65535, fp);
    fclose(fp);
    text[n] = '\0';
    return text;
}

/*
 * The recovery sheet round-trips: its own rebuild commands, run by sh in an empty
 * folder, write the five key files byte for byte with their modes, and sha256sum
 * passes; one digit typed wrong makes it fail. A sheet of a folder whose backup.key
 * was moved off says so; a mixed set is refused.
 */
static void test_recovery_sheet_round_trips(void **state)
{
    static const char *const names[] = {"backup.key", "backup.pub", "naming.key", "signing.key",
                                        "signing.pub"};
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char rebuilt[300], path[400], *sheet, *begin, *end, *typo;
    int fd;

    generate(f);
    if (recovery_sheet_create(f->keys, &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(file_mode(key_path(f, RECOVERY_SHEET_NAME)), 0600);
    assert_int_equal(recovery_sheet_create(f->keys, &err), -1); /* never replaced */
    sheet = read_text(key_path(f, RECOVERY_SHEET_NAME));
    begin = strstr(sheet, "#--- rebuild commands (begin) ---\n");
    end = strstr(sheet, "#--- rebuild commands (end) ---\n");
    assert_non_null(begin);
    assert_non_null(end);
    end[0] = '\0';

    snprintf(rebuilt, sizeof(rebuilt), "%s/rebuilt", f->dir);
    assert_int_equal(mkdir(rebuilt, 0700), 0);
    assert_int_equal(run_sh(rebuilt, begin), 0);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *want = read_text(key_path(f, names[i])), *got;

        snprintf(path, sizeof(path), "%s/%s", rebuilt, names[i]);
        got = read_text(path);
        assert_string_equal(got, want);
        assert_int_equal(file_mode(path), file_mode(key_path(f, names[i])));
        free(want);
        free(got);
    }

    /* A digit typed wrong: sha256sum -c fails. */
    typo = strstr(begin, "k naming.key naming-key '\n  ");
    assert_non_null(typo);
    typo += strlen("k naming.key naming-key '\n  ");
    *typo = *typo == 'a' ? 'b' : 'a';
    snprintf(rebuilt, sizeof(rebuilt), "%s/typo", f->dir);
    assert_int_equal(mkdir(rebuilt, 0700), 0);
    assert_int_not_equal(run_sh(rebuilt, begin), 0);
    free(sheet);

    /* backup.key moved off the host: the sheet names it, and rebuilds the rest. */
    snprintf(path, sizeof(path), "%s/backup.key.offline", f->dir);
    assert_int_equal(rename(key_path(f, "backup.key"), path), 0);
    snprintf(path, sizeof(path), "%s/sheet2", f->dir);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(recovery_sheet_write(f->keys, fd, &err), 0);
    close(fd);
    sheet = read_text(path);
    assert_non_null(strstr(sheet, "backup.key: not in "));
    assert_null(strstr(sheet, "k backup.key"));
    assert_non_null(strstr(sheet, "k signing.pub signing-public-key"));
    free(sheet);

    /* A public key of another set beside the secret one: no sheet. */
    snprintf(path, sizeof(path), "%s/backup.key.offline", f->dir);
    assert_int_equal(rename(path, key_path(f, "backup.key")), 0);
    write_key_file(key_path(f, "backup.pub"),
                   "custodian backup-public-key v1\n"
                   "0f75684684e83448ee636bafd4fb7e2efe189110be5601226b35a8f78f2e207d\n",
                   0644);
    assert_int_equal(recovery_sheet_write(f->keys, 1, &err), -1);
    assert_contains(err.msg, "does not belong to");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_generate_and_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_overwrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_loose_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_wrong_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_damaged_signing_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_sheet_round_trips, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
