/*
 * test_store.c - the storage core (shipper/store.c) through the local
 * backend, on a temporary folder, without an event loop (every phase runs
 * in the caller): temporary names and whose they are, the destination
 * marker rules, the source check, an object already at its final name
 * (kept when it verifies, replaced when damaged), a copy that does not
 * verify, and that nothing temporary is left behind. And the checks of a
 * copy's plan (storage class, Object Lock retention) after the commit,
 * through the local primitives plus a describe and a set_retention that
 * play a store with classes and locks (tests/e2e/test_snapshots.py does the
 * same against Ceph RGW).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "shipper/dest.h"
#include "shipper/store.h"

struct fx {
    char dir[64];
    char root[128], spool[128];
};

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    snprintf(f->dir, sizeof(f->dir), "/tmp/test_store.XXXXXX");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    snprintf(f->root, sizeof(f->root), "%s/nas", f->dir);
    snprintf(f->spool, sizeof(f->spool), "%s/spool.obj", f->dir);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    char cmd[160];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static size_t read_bytes(const char *path, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    ssize_t n;

    if (fd < 0)
        return 0;
    n = read(fd, buf, len);
    close(fd);
    return n < 0 ? 0 : (size_t)n;
}

/* Files under dir whose name starts with ".tmp.", recursively. */
static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        char *p;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        p = util_join(dir, de->d_name);
        if (strncmp(de->d_name, STORE_TEMP_PREFIX, strlen(STORE_TEMP_PREFIX)) == 0)
            n++;
        else if (de->d_type == DT_DIR)
            n += count_temps(p);
        free(p);
    }
    closedir(d);
    return n;
}

static struct dest *open_local(const struct fx *f, const char *name)
{
    struct cst_err err;
    struct dest_local_config c = {.name = name, .path = f->root, .max_inflight = 2};
    struct dest *d = dest_local_new(&c, NULL, &err);

    assert_non_null(d);
    dest_set_install(d, "00112233445566778899aabbccddeeff");
    return d;
}

static void usage(struct dest *d, int in_use, const char *key, int may_mark)
{
    struct dest_usage u = {in_use, key, may_mark};

    dest_set_usage(d, &u);
}

struct result {
    int called;
};

static void done(void *arg, struct dest_put *puts, size_t n)
{
    (void)puts;
    (void)n;
    ((struct result *)arg)->called++;
}

/* Put the spool file (content given) under key; returns the put's outcome. */
static struct dest_put put_one(struct dest *d, const struct fx *f, const char *key,
                               const void *sealed, size_t len, const void *spool_now)
{
    struct dest_put p;
    struct result r = {0};
    unsigned int mdlen = 32;

    memset(&p, 0, sizeof(p));
    write_bytes(f->spool, spool_now ? spool_now : sealed, len);
    p.spool_path = f->spool;
    p.remote_key = key;
    p.stored_size = len;
    EVP_Digest(sealed, len, p.stored_sha256, &mdlen, EVP_sha256(), NULL);
    d->ops->put_batch(d, &p, 1, done, &r);
    assert_int_equal(r.called, 1); /* without a loop, done() before put_batch returns */
    return p;
}

/* ---- temporary names ---- */

static void test_temp_names(void **state)
{
    char *t = store_temp_name("abcd"), owner[64], name[128];
    pid_t child;
    int status;

    (void)state;
    snprintf(owner, sizeof(owner), "%s", store_owner());
    assert_non_null(strchr(owner, '-'));
    assert_true(strncmp(t, ".tmp.", 5) == 0);
    assert_true(strncmp(t + 5, owner, strlen(owner)) == 0);
    assert_string_equal(t + strlen(t) - 5, ".abcd");
    assert_int_equal(store_temp_is_stale(t), 0); /* ours, and we run */
    assert_int_equal(store_owner_alive(owner), 1);
    free(t);

    /* a process that has exited: its names are stale */
    child = fork();
    if (child == 0) {
        char *ct = store_temp_name("x");
        int fd = open("/tmp/test_store_child_name", O_WRONLY | O_CREAT | O_TRUNC, 0600);

        (void)!write(fd, ct, strlen(ct));
        close(fd);
        _exit(0);
    }
    assert_true(child > 0);
    waitpid(child, &status, 0);
    memset(name, 0, sizeof(name));
    assert_true(read_bytes("/tmp/test_store_child_name", name, sizeof(name) - 1) > 0);
    unlink("/tmp/test_store_child_name");
    assert_int_equal(store_temp_is_stale(name), 1);
    /* the same pid with another start time is another process */
    snprintf(name, sizeof(name), ".tmp.%d-1.1.abcd", (int)getpid());
    assert_int_equal(store_temp_is_stale(name), 1);

    /* names older versions used, owned by a pid alone */
    snprintf(name, sizeof(name), "abcd.tmp.%d.3", (int)getpid());
    assert_int_equal(store_temp_is_stale(name), 0);
    snprintf(name, sizeof(name), ".tmp.abcd.%d.3", (int)child);
    assert_int_equal(store_temp_is_stale(name), 1);
    assert_int_equal(store_temp_is_stale("abcd"), 0);
    assert_int_equal(store_temp_is_stale("custodian-destination.txt"), 0);
    assert_int_equal(store_temp_is_stale(".tmp.garbage"), 0);

    t = store_key_dir("objects/ab/abcd");
    assert_string_equal(t, "objects/ab");
    free(t);
    t = store_key_dir("top");
    assert_string_equal(t, "");
    free(t);
}

/* ---- the marker ---- */

static void test_missing_root_is_not_created(void **state)
{
    struct fx *f = *state;
    struct dest *d = open_local(f, "nas");
    struct dest_put p;
    struct stat sb;

    usage(d, 0, NULL, 1);
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL);
    assert_false(p.ok);
    assert_int_equal(p.kind, DEST_ERR_TRANSIENT);
    assert_non_null(strstr(p.error, "does not exist (not mounted?)"));
    assert_int_equal(stat(f->root, &sb), -1); /* nothing created */
    dest_free(d);
}

static void test_first_use_marks_an_empty_folder(void **state)
{
    struct fx *f = *state;
    struct dest *d;
    struct dest_put p;
    char path[256], buf[512] = {0};

    mkdir(f->root, 0700);
    snprintf(path, sizeof(path), "%s/lost+found", f->root);
    mkdir(path, 0700); /* a freshly formatted disk is empty */
    d = open_local(f, "nas");
    /* a process without the catalog's word (doctor, a daily run) never marks */
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL);
    assert_false(p.ok);
    assert_non_null(strstr(p.error, "not marked"));
    usage(d, 0, NULL, 1);
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL);
    assert_true(p.ok);
    snprintf(path, sizeof(path), "%s/" STORE_MARKER_KEY, f->root);
    assert_true(read_bytes(path, buf, sizeof(buf) - 1) > 0);
    assert_non_null(strstr(buf, "\ninstall 00112233445566778899aabbccddeeff\n"));
    assert_non_null(strstr(buf, "\ndestination nas\n"));
    snprintf(path, sizeof(path), "%s/objects/ab/ab01", f->root);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(read_bytes(path, buf, sizeof(buf)), 6);
    assert_string_equal(buf, "sealed");
    assert_int_equal(count_temps(f->root), 0);
    dest_free(d);

    /* marked: any process may write now, whatever it knows */
    d = open_local(f, "nas");
    p = put_one(d, f, "objects/cd/cd01", "second", 6, NULL);
    assert_true(p.ok);
    dest_free(d);

    /* the same folder as another destination, or another install's: refused */
    d = open_local(f, "offsite");
    p = put_one(d, f, "objects/cd/cd02", "third!", 6, NULL);
    assert_false(p.ok);
    assert_int_equal(p.kind, DEST_ERR_CONFIG);
    assert_non_null(strstr(p.error, "marked as destination 'nas'"));
    dest_free(d);
    d = open_local(f, "nas");
    dest_set_install(d, "ffffffffffffffffffffffffffffffff");
    p = put_one(d, f, "objects/cd/cd02", "third!", 6, NULL);
    assert_false(p.ok);
    assert_non_null(strstr(p.error, "another install"));
    dest_free(d);
}

static void test_unmarked_folder_with_copies_waits(void **state)
{
    struct fx *f = *state;
    struct dest *d;
    struct dest_put p;
    char path[256];
    struct stat sb;

    /* the mount point of an unmounted NAS: there, empty, but copies were recorded on it */
    mkdir(f->root, 0700);
    d = open_local(f, "nas");
    usage(d, 1, "objects/ab/ab01", 1);
    p = put_one(d, f, "objects/ab/ab02", "sealed", 6, NULL);
    assert_false(p.ok);
    assert_int_equal(p.kind, DEST_ERR_TRANSIENT);
    assert_non_null(strstr(p.error, "carries no custodian marker"));
    snprintf(path, sizeof(path), "%s/objects", f->root);
    assert_int_equal(stat(path, &sb), -1); /* nothing written */

    /* a folder an older version used (it holds a recorded copy, no marker): marked */
    snprintf(path, sizeof(path), "%s/objects", f->root);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/objects/ab", f->root);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/objects/ab/ab01", f->root);
    write_bytes(path, "old", 3);
    p = put_one(d, f, "objects/ab/ab02", "sealed", 6, NULL);
    assert_true(p.ok);
    dest_free(d);

    /* not empty, no marker, nothing recorded: somebody else's folder */
    snprintf(path, sizeof(path), "%s/" STORE_MARKER_KEY, f->root);
    unlink(path);
    d = open_local(f, "nas");
    usage(d, 0, NULL, 1);
    p = put_one(d, f, "objects/ab/ab03", "sealed", 6, NULL);
    assert_false(p.ok);
    assert_int_equal(p.kind, DEST_ERR_CONFIG);
    assert_non_null(strstr(p.error, "is not empty and carries no custodian marker"));
    dest_free(d);
}

/* ---- the sequence ---- */

static struct dest *ready(struct fx *f)
{
    struct dest *d;

    mkdir(f->root, 0700);
    d = open_local(f, "nas");
    usage(d, 0, NULL, 1);
    return d;
}

static void test_changed_spool_is_a_source_error(void **state)
{
    struct fx *f = *state;
    struct dest *d = ready(f);
    struct dest_put p;
    char path[256];
    struct stat sb;

    /* Another destination holds the spool's inode, so this one copies (and hashes) it. */
    assert_true(put_one(d, f, "objects/00/0000", "sealed", 6, NULL).ok);
    snprintf(path, sizeof(path), "%s/other", f->dir);
    link(f->spool, path);
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, "SEALED");
    unlink(path);
    assert_false(p.ok);
    assert_int_equal(p.kind, DEST_ERR_SOURCE);
    snprintf(path, sizeof(path), "%s/objects/ab/ab01", f->root);
    assert_int_equal(stat(path, &sb), -1);
    assert_int_equal(count_temps(f->root), 0);
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL);
    assert_true(p.ok);
    dest_free(d);
}

static void test_existing_object(void **state)
{
    struct fx *f = *state;
    struct dest *d = ready(f);
    struct dest_put p;
    char path[256], buf[16] = {0};
    struct stat before, after;

    assert_true(put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL).ok);
    snprintf(path, sizeof(path), "%s/objects/ab/ab01", f->root);
    /* the same object again: the copy there verifies and stays (same inode) */
    stat(path, &before);
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL);
    assert_true(p.ok);
    stat(path, &after);
    assert_int_equal(before.st_ino, after.st_ino);
    /* damaged (same size, other bytes): found by read-back and replaced */
    unlink(path);
    write_bytes(path, "xxxxxx", 6);
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL);
    assert_true(p.ok);
    assert_int_equal(read_bytes(path, buf, sizeof(buf)), 6);
    assert_string_equal(buf, "sealed");
    /* truncated: replaced too */
    unlink(path);
    write_bytes(path, "sea", 3);
    p = put_one(d, f, "objects/ab/ab01", "sealed", 6, NULL);
    assert_true(p.ok);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(read_bytes(path, buf, sizeof(buf)), 6);
    assert_int_equal(count_temps(f->root), 0);
    dest_free(d);
}

static void test_spool_hard_linked_and_verified(void **state)
{
    struct fx *f = *state;
    struct dest *d = ready(f);
    char path[256];
    struct stat sp, cp;

    assert_true(put_one(d, f, "objects/ef/ef01", "linked", 6, NULL).ok);
    snprintf(path, sizeof(path), "%s/objects/ef/ef01", f->root);
    assert_int_equal(stat(f->spool, &sp), 0);
    assert_int_equal(stat(path, &cp), 0);
    assert_int_equal(sp.st_ino, cp.st_ino); /* the sealed file itself, no second write */
    dest_free(d);
}

/* The read-back of an object larger than one read (several chunks through read_whole): a
 * byte changed past the first chunk is found and the copy replaced; a symlink in the object's
 * place is no copy, even to the right bytes. */
static void test_readback_whole_object(void **state)
{
    struct fx *f = *state;
    struct dest *d = ready(f);
    size_t len = 600000;
    unsigned char *sealed = malloc(len), *got = malloc(len + 1);
    char path[256], elsewhere[256];
    struct stat sb;

    for (size_t i = 0; i < len; i++)
        sealed[i] = (unsigned char)(i * 31 + 7);
    assert_true(put_one(d, f, "objects/cd/cd01", sealed, len, NULL).ok);
    snprintf(path, sizeof(path), "%s/objects/cd/cd01", f->root);
    /* one byte in the third chunk differs: damaged, replaced by the sealed bytes */
    unlink(path);
    sealed[len - 2] ^= 0x5a;
    write_bytes(path, sealed, len);
    sealed[len - 2] ^= 0x5a;
    assert_true(put_one(d, f, "objects/cd/cd01", sealed, len, NULL).ok);
    assert_int_equal(read_bytes(path, got, len + 1), len);
    assert_memory_equal(got, sealed, len);
    /* a symlink to the right bytes in its place: not a copy, replaced by a file */
    snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", f->dir);
    write_bytes(elsewhere, sealed, len);
    unlink(path);
    assert_int_equal(symlink(elsewhere, path), 0);
    assert_true(put_one(d, f, "objects/cd/cd01", sealed, len, NULL).ok);
    assert_int_equal(lstat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(count_temps(f->root), 0);
    free(sealed);
    free(got);
    dest_free(d);
}

static void test_blocking_operations(void **state)
{
    struct fx *f = *state;
    struct dest *d = ready(f);
    struct cst_err err;
    uint64_t size = 0;
    char out[64], buf[16] = {0};
    int fd;

    assert_true(put_one(d, f, "backups/daily/db/2026/11/20/dump", "dumped", 6, NULL).ok);
    assert_int_equal(d->ops->exists(d, "backups/daily/db/2026/11/20/dump", &size, &err), 1);
    assert_int_equal(size, 6);
    assert_int_equal(d->ops->exists(d, "backups/nothing", &size, &err), 0);
    snprintf(out, sizeof(out), "%s/out", f->dir);
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_int_equal(d->ops->get(d, "backups/daily/db/2026/11/20/dump", fd, &err), 0);
    close(fd);
    assert_int_equal(read_bytes(out, buf, sizeof(buf)), 6);
    assert_int_equal(d->ops->remove(d, "backups/daily/db/2026/11/20/dump", &err), 0);
    assert_int_equal(d->ops->exists(d, "backups/daily/db/2026/11/20/dump", &size, &err), 0);
    dest_free(d);
}

/* ---- a copy's plan: storage class and retention, checked after the commit ---- */

/* What the played store does and shows. */
struct described {
    const char *stored_class; /* the class every object lands in */
    int upload_keeps_lock;    /* the lock asked for shows at once (a single PUT) */
    int retention_ignored;    /* set_retention answers 200 and changes nothing */
    char mode[16];
    int64_t until;
    int describes, sets;
    char set_version[32];
};

static struct described *played;

static int played_describe(struct dest *d, const char *key, const char *version,
                           struct dest_stat *st, struct store_err *e)
{
    int rc;

    memset(st, 0, sizeof(*st));
    played->describes++;
    rc = d->driver->stat(d, key, &st->size, e);
    if (rc != 1)
        return rc;
    /* a version asked for must be the one stored */
    if (version && version[0] && strcmp(version, "v1") != 0)
        return 0;
    snprintf(st->storage_class, sizeof(st->storage_class), "%s", played->stored_class);
    snprintf(st->version_id, sizeof(st->version_id), "v1");
    snprintf(st->lock_mode, sizeof(st->lock_mode), "%s", played->mode);
    st->retain_until = played->until;
    return 1;
}

static int played_set_retention(struct dest *d, const char *key, const char *version,
                                int64_t until_ms, struct store_err *e)
{
    (void)d;
    (void)key;
    (void)e;
    played->sets++;
    snprintf(played->set_version, sizeof(played->set_version), "%s", version ? version : "");
    if (!played->retention_ignored) {
        snprintf(played->mode, sizeof(played->mode), "COMPLIANCE");
        played->until = until_ms - until_ms % 1000; /* kept in whole seconds */
    }
    return 0;
}

static void played_free(struct dest *d)
{
    (void)d; /* the local destination underneath owns the state */
}

struct played_dest {
    struct dest *local, *d;
    struct store_driver drv;
    struct dest_ops ops;
};

/* The local destination's primitives, plus describe and set_retention; lock_mode may be
 * NULL (a destination without Object Lock). */
static void played_open(struct played_dest *pd, struct fx *f, const char *lock_mode)
{
    struct store_params sp;

    pd->local = ready(f);
    pd->drv = *pd->local->driver;
    pd->drv.describe = played_describe;
    pd->drv.set_retention = played_set_retention;
    pd->drv.free = played_free;
    pd->ops = *pd->local->ops;
    pd->ops.stat = store_stat;
    memset(&sp, 0, sizeof(sp));
    sp.name = "played";
    sp.ops = &pd->ops;
    sp.driver = &pd->drv;
    sp.impl = pd->local->impl;
    sp.lock_mode = lock_mode;
    pd->d = store_dest_new(&sp, NULL);
    dest_set_install(pd->d, "00112233445566778899aabbccddeeff");
    usage(pd->d, 0, NULL, 1);
}

static void played_close(struct played_dest *pd)
{
    dest_free(pd->d);
    dest_free(pd->local);
}

/* put_one with a class and a retention asked for. */
static struct dest_put put_planned(struct dest *d, const struct fx *f, const char *key,
                                   const char *cls, int64_t until)
{
    struct dest_put p;
    struct result r = {0};
    unsigned int mdlen = 32;

    memset(&p, 0, sizeof(p));
    write_bytes(f->spool, "sealed", 6);
    p.spool_path = f->spool;
    p.remote_key = key;
    p.stored_size = 6;
    EVP_Digest("sealed", 6, p.stored_sha256, &mdlen, EVP_sha256(), NULL);
    p.storage_class = cls;
    p.retain_until = until;
    d->ops->put_batch(d, &p, 1, done, &r);
    assert_int_equal(r.called, 1);
    return p;
}

#define UNTIL_2033 2016403200500LL /* 2033-11-24T00:00:00.500Z: S3 keeps whole seconds */

static void test_plan_class(void **state)
{
    struct fx *f = *state;
    struct described store = {.stored_class = "DEEP_ARCHIVE"};
    struct played_dest pd;
    struct dest_stat st;
    struct cst_err err;
    struct dest_put p;

    played = &store;
    played_open(&pd, f, NULL);
    /* an ordinary copy: the commit's proof alone, nothing described */
    assert_true(put_planned(pd.d, f, "objects/ab/ab01", NULL, 0).ok);
    assert_true(put_planned(pd.d, f, "objects/ab/ab02", "", 0).ok);
    assert_int_equal(store.describes, 0);
    /* the class asked for shows */
    p = put_planned(pd.d, f, "objects/ab/ab03", "DEEP_ARCHIVE", 0);
    assert_true(p.ok);
    assert_int_equal(store.describes, 1);
    assert_string_equal(p.version_id, "v1");
    assert_int_equal(p.retained_until, 0);
    /* another class: stored, but not a verified copy */
    p = put_planned(pd.d, f, "objects/ab/ab04", "STANDARD_IA", 0);
    assert_false(p.ok);
    assert_int_equal(p.kind, DEST_ERR_CONFIG);
    assert_non_null(strstr(p.error, "landed in storage class DEEP_ARCHIVE, not STANDARD_IA"));
    /* a retention asked of a destination without Object Lock is not its business */
    p = put_planned(pd.d, f, "objects/ab/ab05", NULL, UNTIL_2033);
    assert_true(p.ok);
    assert_int_equal(store.describes, 2);
    assert_int_equal(store.sets, 0);
    assert_int_equal(p.retained_until, 0);
    /* stat: what describe says about the latest version; local has none */
    assert_int_equal(pd.d->ops->stat(pd.d, "objects/ab/ab03", &st, &err), 1);
    assert_int_equal(st.size, 6);
    assert_string_equal(st.storage_class, "DEEP_ARCHIVE");
    assert_int_equal(pd.d->ops->stat(pd.d, "objects/ab/none", &st, &err), 0);
    assert_null(pd.local->ops->stat);
    played_close(&pd);
}

static void test_plan_lock(void **state)
{
    struct fx *f = *state;
    struct described store = {.stored_class = "STANDARD"};
    struct played_dest pd;
    struct dest_put p;

    played = &store;
    played_open(&pd, f, "COMPLIANCE");
    /* the upload kept the lock (a single PUT): read back, nothing set */
    snprintf(store.mode, sizeof(store.mode), "COMPLIANCE");
    store.until = UNTIL_2033 - 500;
    p = put_planned(pd.d, f, "objects/cd/cd01", NULL, UNTIL_2033);
    assert_true(p.ok);
    assert_int_equal(store.sets, 0);
    assert_int_equal(p.retained_until, UNTIL_2033 - 500);
    /* an ordinary copy on the same destination: nothing described */
    store.describes = 0;
    assert_true(put_planned(pd.d, f, "objects/cd/cd02", NULL, 0).ok);
    assert_int_equal(store.describes, 0);
    /* the upload lost it (RGW multipart): set on the stored version, read back */
    store.mode[0] = '\0';
    store.until = 0;
    p = put_planned(pd.d, f, "objects/cd/cd03", "STANDARD", UNTIL_2033);
    assert_true(p.ok);
    assert_int_equal(store.sets, 1);
    assert_int_equal(store.describes, 2);
    assert_string_equal(store.set_version, "v1");
    assert_int_equal(p.retained_until, UNTIL_2033 - 500);
    /* a shorter retention than asked, or another mode, is not the lock asked for */
    store.until = UNTIL_2033 - 500 - 86400000;
    store.retention_ignored = 1;
    p = put_planned(pd.d, f, "objects/cd/cd04", NULL, UNTIL_2033);
    assert_false(p.ok);
    assert_int_equal(store.sets, 2); /* once, then a failure: never a loop */
    assert_int_equal(p.kind, DEST_ERR_CONFIG);
    assert_non_null(strstr(p.error, "is not locked after setting its retention"));
    assert_int_equal(p.retained_until, 0);
    snprintf(store.mode, sizeof(store.mode), "GOVERNANCE");
    store.until = UNTIL_2033;
    assert_false(put_planned(pd.d, f, "objects/cd/cd05", NULL, UNTIL_2033).ok);
    assert_int_equal(count_temps(f->root), 0);
    played_close(&pd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_temp_names),
        cmocka_unit_test_setup_teardown(test_missing_root_is_not_created, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_first_use_marks_an_empty_folder, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_unmarked_folder_with_copies_waits, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_changed_spool_is_a_source_error, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_existing_object, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_spool_hard_linked_and_verified, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_readback_whole_object, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_blocking_operations, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_plan_class, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_plan_lock, fx_setup, fx_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
