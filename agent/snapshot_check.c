/*
 * snapshot_check.c - fetch, prove, open and unpack billing-cycle snapshots
 * (see snapshot_check.h).
 *
 * Trust runs from the signing key: the .sig is checked first, then the
 * ciphertext against the hash it signs (no secret key needed), then the
 * plaintext package against the other hash it signs, then each member
 * against SHA256SUMS (the package's last member) and snapshot.json. The
 * catalog's own record must agree at every step too.
 */
#include "snapshot_check.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bson/bson.h>

#include "agent/archive_lib.h"
#include "agent/dests.h"
#include "agent/keys.h"
#include "agent/snapshot.h"
#include "agent/snapshot_tar.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"
#include "shipper/container.h"

#define SIG_MAX (64 * 1024)
#define TEXT_MAX (256u << 20) /* members read into memory: snapshot.json, refs.tsv, sums */

/* --- fetching --- */

static int hash_fd(int fd, unsigned char sha[32], uint64_t *size, struct cst_err *err)
{
    char buf[1 << 16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n32 = 32;
    ssize_t n;

    *size = 0;
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    if (lseek(fd, 0, SEEK_SET) != 0) {
        EVP_MD_CTX_free(ctx);
        return cst_err_sys(err, "cannot read the fetched package back");
    }
    while ((n = util_read_full(fd, buf, sizeof(buf))) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        *size += (uint64_t)n;
    }
    EVP_DigestFinal_ex(ctx, sha, &n32);
    EVP_MD_CTX_free(ctx);
    if (n < 0)
        return cst_err_sys(err, "cannot read the fetched package back");
    return 0;
}

/* An unlinked temporary file in dir. */
static int temp_in(const char *dir, struct cst_err *err)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    if (fd < 0) {
        char *tmp = util_join(dir, ".custodian.XXXXXX");

        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd >= 0)
            unlink(tmp);
        free(tmp);
    }
    if (fd < 0)
        cst_err_sys(err, "cannot create a temporary file in %s", dir);
    return fd;
}

int snapshot_fetch(struct dest *d, const struct catalog_snapshot *s,
                   const unsigned char sign_pk[32], int sealed_fd, char **sig, struct cst_err *err)
{
    struct snapshot_sig parsed;
    unsigned char sha[32];
    uint64_t size;
    char *text = NULL;
    int rc = -1, fd = -1;
    off_t len;

    /* The signature first: small, and everything else is checked against it. */
    fd = memfd_create("custodian-sig", MFD_CLOEXEC);
    if (fd < 0)
        return cst_err_sys(err, "cannot create a file in memory for %s", s->sig_key);
    if (d->ops->get(d, s->sig_key, fd, err) < 0) {
        cst_err_wrap(err, "%s", s->sig_key);
        goto out;
    }
    len = lseek(fd, 0, SEEK_END);
    if (len <= 0 || len > SIG_MAX || lseek(fd, 0, SEEK_SET) != 0) {
        cst_err_set(err, "%s: not a signature file (%lld bytes)", s->sig_key, (long long)len);
        goto out;
    }
    text = util_xmalloc((size_t)len + 1);
    if (util_read_full(fd, text, (size_t)len) != (ssize_t)len) {
        cst_err_sys(err, "cannot read %s", s->sig_key);
        goto out;
    }
    text[len] = '\0';
    if (snapshot_sig_check(text, sign_pk, &parsed, err) < 0) {
        cst_err_wrap(err, "%s", s->sig_key);
        goto out;
    }
    if (memcmp(parsed.package_sha256, s->plain_sha256, 32) != 0 ||
        memcmp(parsed.sealed_sha256, s->stored_sha256, 32) != 0) {
        cst_err_set(err,
                    "%s is a valid signature, but of another package than the catalog "
                    "recorded",
                    s->sig_key);
        goto out;
    }
    if (ftruncate(sealed_fd, 0) < 0 || lseek(sealed_fd, 0, SEEK_SET) != 0) {
        cst_err_sys(err, "cannot prepare a temporary file");
        goto out;
    }
    if (d->ops->get(d, s->remote_key, sealed_fd, err) < 0) {
        cst_err_wrap(err, "%s", s->remote_key);
        goto out;
    }
    if (hash_fd(sealed_fd, sha, &size, err) < 0)
        goto out;
    if (memcmp(sha, parsed.sealed_sha256, 32) != 0 || (int64_t)size != s->stored_size) {
        cst_err_set(err,
                    "integrity error: %s (%llu bytes) is not the sealed package its signature "
                    "names (%lld bytes)",
                    s->remote_key, (unsigned long long)size, (long long)s->stored_size);
        goto out;
    }
    if (sig) {
        *sig = text;
        text = NULL;
    }
    rc = 0;
out:
    free(text);
    if (fd >= 0)
        close(fd);
    return rc;
}

int snapshot_decrypt(int sealed_fd, int out_fd, const unsigned char pk[32],
                     const unsigned char sk[32], const struct catalog_snapshot *s,
                     struct cst_err *err)
{
    unsigned char sha[32];
    uint64_t size;

    if (lseek(sealed_fd, 0, SEEK_SET) != 0 || ftruncate(out_fd, 0) < 0 ||
        lseek(out_fd, 0, SEEK_SET) != 0)
        return cst_err_sys(err, "cannot prepare the package's temporary files");
    if (crypt_open_fd(sealed_fd, out_fd, pk, sk, sha, &size, err) < 0)
        return cst_err_wrap(err, "%s", s->remote_key);
    if (memcmp(sha, s->plain_sha256, 32) != 0 || (int64_t)size != s->plain_size)
        return cst_err_set(err,
                           "integrity error: %s decrypts, but not to the package the "
                           "catalog and its signature recorded",
                           s->remote_key);
    return 0;
}

/* --- members --- */

struct member {
    char *name;
    unsigned char sha[32];
    uint64_t size, lines;
};

struct reading {
    const char *dir;
    struct member *members;
    size_t n;
    char *manifest, *sums, *refs, *missing; /* members kept in memory */
    size_t manifest_len, sums_len, refs_len, missing_len;
    struct cst_err *err;
};

static void reading_free(struct reading *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->members[i].name);
    free(r->members);
    free(r->manifest);
    free(r->sums);
    free(r->refs);
    free(r->missing);
}

/* A new file at dir/name, written by the caller, put in place by finish_file. */
static int open_out(const char *dir, const char *name, char **tmp, char **final,
                    struct cst_err *err)
{
    char *path = util_join(dir, name), *copy = util_xstrdup(path), *parent = dirname(copy);
    char *base_copy = util_xstrdup(path), *base = basename(base_copy);
    int fd = -1;

    if (access(path, F_OK) == 0) {
        cst_err_set(err, "%s exists; unpack into an empty folder", path);
        goto out;
    }
    if (util_mkdir_p(parent, 0700, err) < 0)
        goto out;
    *tmp = util_printf("%s/.%s.custodian-restore.%d", parent, base, (int)getpid());
    fd = open(*tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        cst_err_sys(err, "cannot create %s", *tmp);
        free(*tmp);
        *tmp = NULL;
        goto out;
    }
    *final = path;
    path = NULL;
out:
    free(path);
    free(copy);
    free(base_copy);
    return fd;
}

static int finish_file(int fd, char *tmp, char *final, int ok, struct cst_err *err)
{
    int rc = ok ? 0 : -1;

    if (rc == 0 && fdatasync(fd) < 0)
        rc = cst_err_sys(err, "cannot write %s", tmp);
    if (close(fd) < 0 && rc == 0)
        rc = cst_err_sys(err, "cannot write %s", tmp);
    if (rc == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) < 0)
        rc = cst_err_sys(err, "cannot put %s in place", final);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    free(final);
    return rc;
}

static int on_member(void *arg, const char *name, uint64_t size, struct tar_member *m)
{
    struct reading *r = arg;
    char buf[1 << 16];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int n32 = 32;
    struct member *mem;
    char **keep = NULL, *tmp = NULL, *final = NULL;
    size_t *keep_len = NULL;
    int out = -1, rc = 0;
    ssize_t n;

    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->members[i].name, name) == 0) {
            EVP_MD_CTX_free(ctx);
            return cst_err_set(r->err, "the package holds %s twice", name);
        }
    r->members = util_xrealloc(r->members, (r->n + 1) * sizeof(*r->members));
    mem = &r->members[r->n++];
    memset(mem, 0, sizeof(*mem));
    mem->name = util_xstrdup(name);
    if (strcmp(name, "snapshot.json") == 0)
        keep = &r->manifest, keep_len = &r->manifest_len;
    else if (strcmp(name, "SHA256SUMS") == 0)
        keep = &r->sums, keep_len = &r->sums_len;
    else if (strcmp(name, "refs.tsv") == 0)
        keep = &r->refs, keep_len = &r->refs_len;
    else if (strcmp(name, "missing.txt") == 0)
        keep = &r->missing, keep_len = &r->missing_len;
    if (keep) {
        if (size > TEXT_MAX) {
            EVP_MD_CTX_free(ctx);
            return cst_err_set(r->err,
                               "%s in the package is %llu bytes: not what custodian "
                               "writes",
                               name, (unsigned long long)size);
        }
        *keep = util_xmalloc((size_t)size + 1);
        *keep_len = 0;
    }
    if (r->dir && (out = open_out(r->dir, name, &tmp, &final, r->err)) < 0) {
        EVP_MD_CTX_free(ctx);
        return -1;
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = tar_member_read(m, buf, sizeof(buf), r->err)) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        mem->size += (uint64_t)n;
        for (ssize_t i = 0; i < n; i++)
            mem->lines += buf[i] == '\n';
        if (keep && *keep_len + (size_t)n <= size) {
            memcpy(*keep + *keep_len, buf, (size_t)n);
            *keep_len += (size_t)n;
        }
        if (out >= 0 && util_write_all(out, buf, (size_t)n) < 0) {
            rc = cst_err_sys(r->err, "cannot write %s", tmp);
            break;
        }
    }
    if (n < 0)
        rc = -1;
    EVP_DigestFinal_ex(ctx, mem->sha, &n32);
    EVP_MD_CTX_free(ctx);
    if (keep)
        (*keep)[*keep_len] = '\0';
    if (rc == 0 && mem->size != size)
        rc = cst_err_set(r->err, "%s in the package is shorter than its header says", name);
    if (out >= 0 && finish_file(out, tmp, final, rc == 0, r->err) < 0)
        rc = -1;
    return rc;
}

static const struct member *find_member(const struct reading *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->members[i].name, name) == 0)
            return &r->members[i];
    return NULL;
}

/* SHA256SUMS: every member but itself, each line matching. */
static int check_sums(struct reading *r, struct cst_err *err)
{
    size_t listed = 0;
    char *save = NULL;

    if (r->sums == NULL)
        return cst_err_set(err, "the package has no SHA256SUMS");
    if (r->n == 0 || strcmp(r->members[r->n - 1].name, "SHA256SUMS") != 0)
        return cst_err_set(err, "SHA256SUMS is not the package's last member");
    for (char *line = strtok_r(r->sums, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        int escaped = line[0] == '\\';
        unsigned char sha[32];
        const struct member *m;
        char *name;

        if (escaped)
            line++;
        if (strlen(line) < 67 || line[64] != ' ' || line[65] != ' ')
            return cst_err_set(err, "SHA256SUMS has a malformed line");
        line[64] = '\0';
        if (util_unhex(line, sha, 32) < 0)
            return cst_err_set(err, "SHA256SUMS has a malformed line");
        name = util_xstrdup(line + 66);
        if (escaped) {
            size_t w = 0;

            for (size_t i = 0; name[i]; i++) {
                if (name[i] == '\\' && name[i + 1] == 'n')
                    name[w++] = '\n', i++;
                else if (name[i] == '\\' && name[i + 1] == '\\')
                    name[w++] = '\\', i++;
                else
                    name[w++] = name[i];
            }
            name[w] = '\0';
        }
        m = find_member(r, name);
        if (m == NULL) {
            cst_err_set(err, "SHA256SUMS lists %s, which the package does not hold", name);
            free(name);
            return -1;
        }
        if (memcmp(m->sha, sha, 32) != 0) {
            cst_err_set(err,
                        "integrity error: %s in the package does not have the SHA-256 "
                        "SHA256SUMS lists",
                        name);
            free(name);
            return -1;
        }
        free(name);
        listed++;
    }
    if (listed != r->n - 1)
        return cst_err_set(err, "SHA256SUMS lists %zu members, the package holds %zu besides it",
                           listed, r->n - 1);
    return 0;
}

static int64_t doc_int(const bson_t *doc, const char *path)
{
    bson_iter_t it, top;

    if (bson_iter_init(&top, doc) && bson_iter_find_descendant(&top, path, &it) &&
        (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)))
        return bson_iter_as_int64(&it);
    return -1;
}

static int parse_refs(struct reading *r, struct snapshot_report *rep, struct cst_err *err)
{
    char *save = NULL;
    int first = 1;

    if (r->refs == NULL)
        return cst_err_set(err, "the package has no refs.tsv");
    for (char *line = strtok_r(r->refs, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *f[5];
        size_t len;
        struct snapshot_ref *ref;

        if (first) {
            first = 0;
            if (strncmp(line, "path\t", 5) == 0)
                continue;
        }
        f[0] = line;
        for (int i = 1; i < 5; i++) {
            f[i] = f[i - 1] ? strchr(f[i - 1], '\t') : NULL;
            if (f[i])
                *f[i]++ = '\0';
        }
        rep->ref_list = util_xrealloc(rep->ref_list, (rep->n_refs + 1) * sizeof(*rep->ref_list));
        ref = &rep->ref_list[rep->n_refs];
        memset(ref, 0, sizeof(*ref));
        if (f[4] == NULL || strlen(f[2]) != 64 || util_unhex(f[3], ref->sha256, 32) < 0 ||
            (ref->path = pathenc_unescape(f[0], &len)) == NULL)
            return cst_err_set(err, "refs.tsv has a malformed line");
        rep->n_refs++;
        ref->version = atoll(f[1]);
        snprintf(ref->object_id, sizeof(ref->object_id), "%s", f[2]);
        ref->size = atoll(f[4]);
    }
    return 0;
}

/* snapshot.json against the members: counts, and each file's SHA-256 where it is. */
static int check_manifest(struct reading *r, struct snapshot_report *rep, struct cst_err *err)
{
    bson_error_t berr;
    bson_t *doc;
    bson_iter_t it, arr, top;
    const struct member *m;
    int64_t files = 0, refs = 0;
    int rc = 0;

    if (r->manifest == NULL)
        return cst_err_set(err, "the package has no snapshot.json");
    doc = bson_new_from_json((const uint8_t *)r->manifest, (ssize_t)r->manifest_len, &berr);
    if (doc == NULL)
        return cst_err_set(err, "snapshot.json is not JSON: %s", berr.message);
    rep->invoices = (m = find_member(r, "invoices.jsonl")) ? (int64_t)m->lines : -1;
    rep->timesheets = (m = find_member(r, "timesheets.jsonl")) ? (int64_t)m->lines : -1;
    rep->missing = (m = find_member(r, "missing.txt")) ? (int64_t)m->lines - 1 : -1;
    for (size_t i = 0; i < r->n; i++)
        rep->files += strncmp(r->members[i].name, "files/", 6) == 0;
    if (doc_int(doc, "counts.invoices") != rep->invoices ||
        doc_int(doc, "counts.timesheets") != rep->timesheets ||
        doc_int(doc, "counts.files") != rep->files ||
        doc_int(doc, "counts.refs") != (int64_t)rep->n_refs ||
        doc_int(doc, "counts.missing") != rep->missing) {
        rc = cst_err_set(err,
                         "snapshot.json's counts do not match the package: %lld invoices, "
                         "%lld timesheets, %lld files, %zu references, %lld missing",
                         (long long)rep->invoices, (long long)rep->timesheets,
                         (long long)rep->files, rep->n_refs, (long long)rep->missing);
        goto out;
    }
    if (bson_iter_init(&top, doc) && bson_iter_find_descendant(&top, "complete", &it) &&
        BSON_ITER_HOLDS_BOOL(&it))
        rep->complete = bson_iter_bool(&it);
    if (rep->complete != (rep->missing == 0)) {
        rc = cst_err_set(err, "snapshot.json says complete = %s, missing.txt lists %lld",
                         rep->complete ? "true" : "false", (long long)rep->missing);
        goto out;
    }
    if (!bson_iter_init_find(&it, doc, "files") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr)) {
        rc = cst_err_set(err, "snapshot.json has no files list");
        goto out;
    }
    while (rc == 0 && bson_iter_next(&arr)) {
        bson_t entry;
        const uint8_t *data;
        uint32_t len;
        bson_iter_t e;
        const char *path = NULL, *in = NULL, *sha = NULL;
        unsigned char want[32];

        if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
            continue;
        bson_iter_document(&arr, &len, &data);
        if (!bson_init_static(&entry, data, len) || !bson_iter_init(&e, &entry))
            continue;
        while (bson_iter_next(&e)) {
            if (strcmp(bson_iter_key(&e), "path") == 0 && BSON_ITER_HOLDS_UTF8(&e))
                path = bson_iter_utf8(&e, NULL);
            else if (strcmp(bson_iter_key(&e), "in") == 0 && BSON_ITER_HOLDS_UTF8(&e))
                in = bson_iter_utf8(&e, NULL);
            else if (strcmp(bson_iter_key(&e), "sha256") == 0 && BSON_ITER_HOLDS_UTF8(&e))
                sha = bson_iter_utf8(&e, NULL);
        }
        if (path == NULL || in == NULL || sha == NULL || util_unhex(sha, want, 32) < 0) {
            rc = cst_err_set(err, "snapshot.json has a malformed files entry");
            break;
        }
        if (strcmp(in, "package") == 0) {
            char *name = util_printf("files/%s", path);

            m = find_member(r, name);
            free(name);
            if (m == NULL || memcmp(m->sha, want, 32) != 0)
                rc = cst_err_set(err, "snapshot.json lists files/%s %s", path,
                                 m ? "with another SHA-256 than the package holds"
                                   : "but the package does not hold it");
            files++;
        } else {
            int found = 0;

            for (size_t i = 0; i < rep->n_refs && !found; i++)
                found = strcmp(rep->ref_list[i].path, path) == 0 &&
                        memcmp(rep->ref_list[i].sha256, want, 32) == 0;
            if (!found)
                rc = cst_err_set(err, "snapshot.json lists %s by reference, refs.tsv does not",
                                 path);
            refs++;
        }
    }
    if (rc == 0 && (files != rep->files || refs != (int64_t)rep->n_refs))
        rc = cst_err_set(err,
                         "snapshot.json lists %lld files and %lld references, the package "
                         "holds %lld and refs.tsv %zu",
                         (long long)files, (long long)refs, (long long)rep->files, rep->n_refs);
out:
    bson_destroy(doc);
    return rc;
}

void snapshot_report_free(struct snapshot_report *r)
{
    for (size_t i = 0; i < r->n_refs; i++)
        free(r->ref_list[i].path);
    free(r->ref_list);
    memset(r, 0, sizeof(*r));
}

int snapshot_check_members(int pkg_fd, const char *dir, struct snapshot_report *rep,
                           struct cst_err *err)
{
    struct reading r;
    int rc;

    memset(&r, 0, sizeof(r));
    memset(rep, 0, sizeof(*rep));
    r.dir = dir;
    r.err = err;
    if (lseek(pkg_fd, 0, SEEK_SET) != 0)
        return cst_err_sys(err, "cannot read the package");
    rc = tar_each(pkg_fd, on_member, &r, err);
    if (rc == 0)
        rc = check_sums(&r, err);
    if (rc == 0)
        rc = parse_refs(&r, rep, err);
    if (rc == 0)
        rc = check_manifest(&r, rep, err);
    rep->members = (int64_t)r.n;
    reading_free(&r);
    return rc == 0 ? 0 : -1;
}

/* --- verify --snapshot --- */

struct verifying {
    struct cli *cli;
    struct catalog_snapshot s;
    unsigned char sign_pk[32], pk[32];
    unsigned char *sk; /* NULL: no secret key on this host */
    char *tmpdir;
};

/* One destination: 0 passed, -1 failed (printed). */
static int verify_on(struct verifying *v, struct dest *d, const struct cfg_dest *cd)
{
    struct cst_err err;
    struct snapshot_report rep;
    int sealed = temp_in(v->tmpdir, &err), plain = -1, rc = -1;

    memset(&rep, 0, sizeof(rep));
    if (sealed < 0)
        goto out;
    if (snapshot_fetch(d, &v->s, v->sign_pk, sealed, NULL, &err) < 0)
        goto out;
    if (v->sk) {
        plain = temp_in(v->tmpdir, &err);
        if (plain < 0 || snapshot_decrypt(sealed, plain, v->pk, v->sk, &v->s, &err) < 0 ||
            snapshot_check_members(plain, NULL, &rep, &err) < 0)
            goto out;
        if (rep.n_refs != (size_t)v->s.refs || rep.files != v->s.files ||
            rep.missing != v->s.missing) {
            cst_err_set(&err, "the package and the catalog disagree on what it holds");
            goto out;
        }
        printf("ok    %s: signature, ciphertext, package SHA-256, %lld members against "
               "SHA256SUMS and snapshot.json (%lld files, %zu references, %lld missing)\n",
               d->name, (long long)rep.members, (long long)rep.files, rep.n_refs,
               (long long)rep.missing);
    } else {
        int archive;
        const char *want = snapshot_class_on(cd, &archive);
        char cls[160];

        snprintf(cls, sizeof(cls), "%s", "storage class not checked (this destination has none)");
        if (want && d->ops->stat) {
            struct dest_stat st;
            int found = d->ops->stat(d, v->s.remote_key, &st, &err);

            if (found < 0)
                goto out;
            if (found == 0) {
                cst_err_set(&err, "%s is not there", v->s.remote_key);
                goto out;
            }
            if (strcmp(st.storage_class[0] ? st.storage_class : "STANDARD", want) != 0) {
                cst_err_set(&err, "the package is in storage class %s, not %s",
                            st.storage_class[0] ? st.storage_class : "STANDARD", want);
                goto out;
            }
            snprintf(cls, sizeof(cls), "storage class %s%s", want, archive ? " (archive)" : "");
        } else if (want) {
            snprintf(cls, sizeof(cls),
                     "storage class %s not checked (the destination cannot "
                     "report it)",
                     want);
        } else if (archive) {
            snprintf(cls, sizeof(cls), "archive destination (role archive)");
        }
        printf("ok    %s: signature, ciphertext SHA-256 and size, %s; the members were NOT "
               "checked: no secret key on this host\n",
               d->name, cls);
    }
    rc = 0;
out:
    if (rc < 0)
        printf("FAIL  %s: %s\n", d->name, err.msg);
    snapshot_report_free(&rep);
    if (sealed >= 0)
        close(sealed);
    if (plain >= 0)
        close(plain);
    return rc;
}

int snapshot_verify(struct cli *cli, const char *label, const char *date, const char *from)
{
    struct verifying v;
    struct dest **dests = NULL;
    size_t nd = 0;
    struct cst_err err;
    int rc, found, checked = 0, failed = 0;

    memset(&v, 0, sizeof(v));
    v.cli = cli;
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    found = catalog_snapshot_by_label(cli->cat, label, date, &v.s);
    if (found != 1)
        return cli_fail(EXIT_FAILED, "no snapshot of %s%s%s is recorded", label,
                        date ? " made on " : "", date ? date : "");
    if (keys_load_signing_pk(cli->cfg->signing_key, v.sign_pk, &err) < 0 ||
        keys_load_public(cli->cfg->public_key, v.pk, &err) < 0) {
        rc = cli_fail(EXIT_USAGE, "%s", err.msg);
        goto out;
    }
    if (cli->cfg->secret_key) {
        v.sk = sodium_malloc(32);
        if (v.sk == NULL ||
            keys_load_secret(cli->cfg->secret_key, "backup-secret-key", v.sk, 32, &err) < 0) {
            rc = cli_fail(EXIT_USAGE, "%s", v.sk ? err.msg : "out of memory");
            goto out;
        }
        /* The members are read with libarchive: a missing library fails here, not as a
         * failed copy in the audit log. */
        if (archive_lib_load(&err) < 0) {
            rc = cli_fail(EXIT_FAILED, "%s", err.msg);
            goto out;
        }
    }
    v.tmpdir = cli_state_path(cli, "spool");
    if (util_mkdir_p(v.tmpdir, 0700, &err) < 0 ||
        dests_open(cli->cfg, NULL, &dests, &nd, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    printf("snapshot %s of %s: %s\n", v.s.label, v.s.close_date, v.s.remote_key);
    for (size_t i = 0; i < nd; i++) {
        if (from && strcmp(from, dests[i]->name) != 0)
            continue;
        if (catalog_snapshot_has_copy(cli->cat, v.s.id, dests[i]->name) != 1) {
            printf("FAIL  %s: holds no recorded copy\n", dests[i]->name);
            failed++;
            continue;
        }
        checked++;
        if (verify_on(&v, dests[i], &cli->cfg->dests[i]) < 0)
            failed++;
    }
    if (from && checked + failed == 0) {
        rc = cli_fail(EXIT_USAGE, "no destination named %s in %s", from, cli->config_path);
        goto out;
    }
    {
        const char *how = v.sk ? "full: decrypted, every member against SHA256SUMS and "
                                 "snapshot.json, on each destination"
                               : "ciphertext, signature and storage class on each destination "
                                 "(no secret key: members not checked)";
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "label");
        json_str(&j, v.s.label);
        json_key(&j, "close_date");
        json_str(&j, v.s.close_date);
        json_key(&j, "checked");
        json_int(&j, checked);
        json_key(&j, "failed");
        json_int(&j, failed);
        json_key(&j, "how");
        json_str(&j, how);
        json_key(&j, "outcome");
        json_str(&j, failed ? "failed" : "ok");
        json_obj_end(&j);
        if (catalog_audit(cli->cat, "operator", "verify_snapshot", j.buf, &err) < 0)
            fprintf(stderr, "custodian: cannot record the audit row: %s\n", err.msg);
        json_free(&j);
        /* The plan's checklist item, only when every copy passed and none is missing. */
        if (!failed && checked && !from &&
            catalog_snapshot_verified(cli->cat, v.s.id, util_now_ms(), how, &err) < 0)
            fprintf(stderr, "custodian: cannot record the checklist: %s\n", err.msg);
        if (failed)
            rc = cli_fail(EXIT_FAILED, "snapshot %s of %s did not verify on %d destination(s)",
                          v.s.label, v.s.close_date, failed);
        else {
            printf("snapshot %s of %s verified on %d destination(s): %s\n", v.s.label,
                   v.s.close_date, checked, how);
            rc = EXIT_OK;
        }
    }
out:
    dests_free(dests, nd);
    free(v.tmpdir);
    if (v.sk)
        sodium_free(v.sk);
    catalog_snapshot_clear(&v.s);
    return rc;
}
