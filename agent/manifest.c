/*
 * manifest.c - the daily run's layout and manifests (see manifest.h).
 *
 * A manifest is trusted only as far as the signing key goes: the signature
 * covers the .sha256 and .json texts, and the signed JSON names its date
 * and attempt, so a genuine manifest of another day copied over this day's
 * names is caught here, not taken for this day's. The JSON is read with
 * libbson's parser (linked already for the MongoDB dump).
 *
 * Remote files are read through a pipe from a thread running the
 * destination's blocking get(): what is hashed streams by in 64 KiB pieces,
 * so checking a multi-gigabyte dump needs neither its size in memory nor in
 * the spool.
 */
#include "manifest.h"

#include <bson/bson.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/keys.h"
#include "common/util.h"

/* --- layout --- */

char *manifest_artifact_key(const char *kind, const char *date, int attempt)
{
    char y[5], m[3], d[3], tag[32] = "";

    snprintf(y, sizeof(y), "%.4s", date);
    snprintf(m, sizeof(m), "%.2s", date + 5);
    snprintf(d, sizeof(d), "%.2s", date + 8);
    if (attempt > 1)
        snprintf(tag, sizeof(tag), ".attempt-%d", attempt);
    if (strcmp(kind, "db") == 0)
        return util_printf("backups/daily/db/%s/%s/%s/mongodb-%s%s.archive.cst", y, m, d, date,
                           tag);
    if (strcmp(kind, "files") == 0)
        return util_printf("backups/daily/files/%s/%s/%s/restore-point-%s%s.tsv.cst", y, m, d, date,
                           tag);
    if (strcmp(kind, "catalog") == 0)
        return util_printf("backups/daily/catalog/%s/%s/%s/catalog-%s%s.db.cst", y, m, d, date,
                           tag);
    if (strcmp(kind, "manifest-sha256") == 0)
        return util_printf("backups/manifests/%s%s.sha256", date, tag);
    if (strcmp(kind, "manifest-json") == 0)
        return util_printf("backups/manifests/%s%s.json", date, tag);
    return util_printf("backups/manifests/%s%s.sig", date, tag);
}

static int is_date(const char *s)
{
    for (int i = 0; i < 10; i++) {
        if (i == 4 || i == 7) {
            if (s[i] != '-')
                return 0;
        } else if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return 1;
}

int manifest_parse_name(const char *name, char date[11], int *attempt, char ext[8])
{
    const char *p = name + 10;

    if (strlen(name) < 11 || !is_date(name) || *p != '.')
        return -1;
    *attempt = 1;
    if (strncmp(p, ".attempt-", 9) == 0) {
        long n = 0;

        p += 9;
        if (*p < '1' || *p > '9')
            return -1;
        while (*p >= '0' && *p <= '9' && n < 1000000)
            n = n * 10 + (*p++ - '0');
        if (n < 2 || n >= 1000000 || *p != '.')
            return -1;
        *attempt = (int)n;
    }
    p++;
    if (strcmp(p, "sha256") != 0 && strcmp(p, "json") != 0 && strcmp(p, "sig") != 0)
        return -1;
    memcpy(date, name, 10);
    date[10] = '\0';
    snprintf(ext, 8, "%s", p);
    return 0;
}

/* --- signature --- */

static void sha256(const void *buf, size_t len, unsigned char out[32])
{
    unsigned int n = 32;

    EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

int manifest_signature_verify(const char *sha256_text, size_t sha256_len, const char *json_text,
                              size_t json_len, const char *sig_text, const unsigned char pk[32],
                              struct cst_err *err)
{
    unsigned char msg[64], sig[64];
    const char *line = strstr(sig_text, "\nsignature: ");
    char hex[129];

    if (line == NULL || strlen(line + 12) < 128)
        return cst_err_set(err, "the signature file is malformed");
    memcpy(hex, line + 12, 128);
    hex[128] = '\0';
    if (util_unhex(hex, sig, 64) < 0)
        return cst_err_set(err, "the signature file is malformed");
    sha256(sha256_text, sha256_len, msg);
    sha256(json_text, json_len, msg + 32);
    if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0)
        return cst_err_set(err, "manifest signature does not verify: the manifest or its "
                                "signature was altered, or signed with another key");
    return 0;
}

/* --- the JSON --- */

static int iter_int(const bson_iter_t *it, int64_t *out)
{
    if (BSON_ITER_HOLDS_INT32(it))
        *out = bson_iter_int32(it);
    else if (BSON_ITER_HOLDS_INT64(it))
        *out = bson_iter_int64(it);
    else
        return -1;
    return 0;
}

static int iter_text(const bson_iter_t *it, char *out, size_t size)
{
    uint32_t len;
    const char *s;

    if (!BSON_ITER_HOLDS_UTF8(it))
        return -1;
    s = bson_iter_utf8(it, &len);
    if (len >= size || strlen(s) != len)
        return -1;
    memcpy(out, s, len + 1);
    return 0;
}

static int parse_artifact(bson_iter_t *doc, struct manifest *m, struct cst_err *err)
{
    bson_iter_t it;
    char hex[65];
    int have = 0;

    if (m->n_artifacts == MANIFEST_MAX_ARTIFACTS)
        return cst_err_set(err, "the manifest lists more artifacts than a daily run makes");
    while (bson_iter_next(doc)) {
        const char *k = bson_iter_key(doc);
        size_t i = m->n_artifacts;

        it = *doc;
        if (strcmp(k, "kind") == 0 &&
            iter_text(&it, m->artifacts[i].kind, sizeof(m->artifacts[i].kind)) == 0)
            have |= 1;
        else if (strcmp(k, "key") == 0 &&
                 iter_text(&it, m->artifacts[i].key, sizeof(m->artifacts[i].key)) == 0)
            have |= 2;
        else if (strcmp(k, "stored_sha256") == 0 && iter_text(&it, hex, sizeof(hex)) == 0 &&
                 util_unhex(hex, m->artifacts[i].stored_sha256, 32) == 0)
            have |= 4;
        else if (strcmp(k, "stored_size") == 0 && iter_int(&it, &m->artifacts[i].stored_size) == 0)
            have |= 8;
    }
    if (have != 15)
        return cst_err_set(err, "the manifest JSON has an artifact without a valid kind, key, "
                                "stored_sha256 or stored_size");
    m->n_artifacts++;
    return 0;
}

int manifest_parse_json(const char *json_text, size_t json_len, struct manifest *m,
                        struct cst_err *err)
{
    bson_error_t error;
    bson_t *doc;
    bson_iter_t it, sub;
    int64_t n;
    int rc = -1, have_date = 0, have_artifacts = 0;

    memset(m, 0, sizeof(*m));
    m->attempt = 1;
    if (json_len > MANIFEST_MAX_BYTES || (json_len > 0 && json_text[0] != '{'))
        return cst_err_set(err, "the manifest JSON is not a JSON object");
    doc = bson_new_from_json((const uint8_t *)json_text, (ssize_t)json_len, &error);
    if (doc == NULL)
        return cst_err_set(err, "the manifest JSON does not parse: %s", error.message);
    if (!bson_iter_init(&it, doc)) {
        cst_err_set(err, "the manifest JSON does not parse");
        goto out;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);

        if (strcmp(k, "date") == 0) {
            if (iter_text(&it, m->date, sizeof(m->date)) < 0 || strlen(m->date) != 10 ||
                !is_date(m->date)) {
                cst_err_set(err, "the manifest JSON's date is not a YYYY-MM-DD date");
                goto out;
            }
            have_date = 1;
        } else if (strcmp(k, "attempt") == 0) {
            if (iter_int(&it, &n) < 0 || n < 1 || n > 1000000) {
                cst_err_set(err, "the manifest JSON's attempt is not a positive number");
                goto out;
            }
            m->attempt = (int)n;
        } else if (strcmp(k, "made_on") == 0) {
            if (iter_text(&it, m->made_on, sizeof(m->made_on)) < 0) {
                cst_err_set(err, "the manifest JSON's made_on is not a date");
                goto out;
            }
        } else if (strcmp(k, "backfill") == 0) {
            if (!BSON_ITER_HOLDS_BOOL(&it)) {
                cst_err_set(err, "the manifest JSON's backfill is not true or false");
                goto out;
            }
            m->backfill = bson_iter_bool(&it);
        } else if (strcmp(k, "audit") == 0) {
            int have = 0;
            char hex[65];

            if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &sub)) {
                cst_err_set(err, "the manifest JSON's audit is not an object");
                goto out;
            }
            while (bson_iter_next(&sub)) {
                if (strcmp(bson_iter_key(&sub), "rows") == 0 &&
                    iter_int(&sub, &m->audit_rows) == 0 && m->audit_rows >= 0)
                    have |= 1;
                else if (strcmp(bson_iter_key(&sub), "head") == 0 &&
                         iter_text(&sub, hex, sizeof(hex)) == 0 &&
                         util_unhex(hex, m->audit_head, 32) == 0)
                    have |= 2;
            }
            if (have != 3) {
                cst_err_set(err, "the manifest JSON's audit has no valid rows and head");
                goto out;
            }
            m->has_audit = 1;
        } else if (strcmp(k, "artifacts") == 0) {
            if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &sub)) {
                cst_err_set(err, "the manifest JSON's artifacts is not a list");
                goto out;
            }
            while (bson_iter_next(&sub)) {
                bson_iter_t art;

                if (!BSON_ITER_HOLDS_DOCUMENT(&sub) || !bson_iter_recurse(&sub, &art)) {
                    cst_err_set(err, "the manifest JSON's artifacts holds a non-object");
                    goto out;
                }
                if (parse_artifact(&art, m, err) < 0)
                    goto out;
            }
            have_artifacts = 1;
        }
    }
    if (!have_date || !have_artifacts) {
        cst_err_set(err, "the manifest JSON has no %s", have_date ? "artifacts" : "date");
        goto out;
    }
    rc = 0;
out:
    bson_destroy(doc);
    return rc;
}

/* One line of .sha256: 64 hex digits, two spaces, the key. */
static int sums_line(const char *line, size_t len, unsigned char sha[32], char *key,
                     size_t key_size)
{
    char hex[65];

    if (len < 67 || line[64] != ' ' || line[65] != ' ' || len - 66 >= key_size)
        return -1;
    memcpy(hex, line, 64);
    hex[64] = '\0';
    if (util_unhex(hex, sha, 32) < 0)
        return -1;
    memcpy(key, line + 66, len - 66);
    key[len - 66] = '\0';
    return 0;
}

int manifest_check(const char *sha256_text, size_t sha256_len, const char *json_text,
                   size_t json_len, const char *sig_text, const unsigned char pk[32],
                   const char *date, int attempt, struct manifest *m, struct cst_err *err)
{
    static const char *const kinds[] = {"db", "files", "catalog"};
    const char *p = sha256_text, *end = sha256_text + sha256_len;
    size_t lines = 0;
    unsigned seen = 0;

    if (manifest_signature_verify(sha256_text, sha256_len, json_text, json_len, sig_text, pk, err) <
        0)
        return -1;
    if (manifest_parse_json(json_text, json_len, m, err) < 0)
        return -1;
    /* What the signature covers must be this day's, this attempt's manifest. */
    if (strcmp(m->date, date) != 0 || m->attempt != attempt)
        return cst_err_set(err,
                           "the manifest stored as %s attempt %d is the signed manifest of %s "
                           "attempt %d: it was put in another day's place",
                           date, attempt, m->date, m->attempt);
    for (size_t i = 0; i < m->n_artifacts; i++) {
        size_t k;
        char *want = NULL;

        for (k = 0; k < 3 && strcmp(kinds[k], m->artifacts[i].kind) != 0; k++)
            ;
        if (k < 3)
            want = manifest_artifact_key(kinds[k], date, attempt);
        if (k == 3 || (seen & (1u << k)) || strcmp(want, m->artifacts[i].key) != 0) {
            cst_err_set(err, "the manifest's %s artifact is not stored as %s attempt %d's",
                        m->artifacts[i].kind, date, attempt);
            free(want);
            return -1;
        }
        seen |= 1u << k;
        free(want);
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        unsigned char sha[32];
        char key[256];
        size_t i;

        if (sums_line(p, len, sha, key, sizeof(key)) < 0)
            return cst_err_set(err, "malformed manifest line %zu", lines + 1);
        for (i = 0; i < m->n_artifacts && strcmp(m->artifacts[i].key, key) != 0; i++)
            ;
        if (i == m->n_artifacts || memcmp(m->artifacts[i].stored_sha256, sha, 32) != 0)
            return cst_err_set(err, "manifest line %zu (%s) does not match the signed JSON",
                               lines + 1, key);
        lines++;
        p += len + (nl ? 1 : 0);
    }
    if (lines != m->n_artifacts)
        return cst_err_set(err, "the manifest's .sha256 lists %zu artifacts, its JSON %zu", lines,
                           m->n_artifacts);
    return 0;
}

int manifest_signing_public(const struct cfg *cfg, unsigned char pk[32], struct cst_err *err)
{
    unsigned char *sk = sodium_malloc(64);
    int rc;

    if (sk == NULL)
        return cst_err_set(err, "out of memory");
    rc = keys_load_secret(cfg->signing_key, "signing-secret-key", sk, 64, err);
    if (rc == 0) {
        crypto_sign_ed25519_sk_to_pk(pk, sk);
    } else {
        size_t n = strlen(cfg->signing_key);
        char *pub = util_printf(
            "%.*s.pub", (int)(n > 4 && strcmp(cfg->signing_key + n - 4, ".key") == 0 ? n - 4 : n),
            cfg->signing_key);
        struct cst_err perr;

        if (keys_load_signing_public(pub, pk, &perr) == 0)
            rc = 0;
        free(pub);
    }
    sodium_free(sk);
    return rc;
}

/* --- reading remote files as they stream by --- */

struct getter {
    struct dest *d;
    const char *key;
    int fd;
    int rc;
    struct cst_err err;
};

static void *getter_main(void *arg)
{
    struct getter *g = arg;
    sigset_t pipe_only;

    /* The reader always drains the pipe; should it fail, this write fails with EPIPE
     * instead of killing the process. */
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, NULL);
    g->rc = g->d->ops->get(g->d, g->key, g->fd, &g->err);
    close(g->fd);
    return NULL;
}

/* Feed remote_key through sink in pieces; sink returning -1 stops it (the rest is
 * drained unread). */
static int stream_get(struct dest *d, const char *key, int (*sink)(void *, const void *, size_t),
                      void *arg, struct cst_err *err)
{
    struct getter g = {d, key, -1, 0, {{0}}};
    char *buf = util_xmalloc(1 << 16);
    int fds[2], stopped = 0, read_errno = 0;
    pthread_t thread;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        free(buf);
        return cst_err_sys(err, "cannot fetch %s from %s", key, d->name);
    }
    g.fd = fds[1];
    if ((errno = pthread_create(&thread, NULL, getter_main, &g)) != 0) {
        cst_err_sys(err, "cannot fetch %s from %s", key, d->name);
        close(fds[0]);
        close(fds[1]);
        free(buf);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fds[0], buf, 1 << 16);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            read_errno = errno;
            break;
        }
        if (n == 0)
            break;
        if (!stopped && sink(arg, buf, (size_t)n) < 0)
            stopped = 1;
    }
    close(fds[0]);
    pthread_join(thread, NULL);
    free(buf);
    if (g.rc < 0) {
        *err = g.err;
        return -1;
    }
    if (read_errno) {
        errno = read_errno;
        return cst_err_sys(err, "cannot fetch %s from %s", key, d->name);
    }
    return stopped ? -1 : 0;
}

struct small {
    char *buf;
    size_t len;
    int too_large;
};

static int small_sink(void *arg, const void *data, size_t n)
{
    struct small *s = arg;

    if (s->len + n > MANIFEST_MAX_BYTES) {
        s->too_large = 1;
        return -1;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return 0;
}

char *manifest_fetch_small(struct dest *d, const char *remote_key, size_t *len, struct cst_err *err)
{
    struct small s = {util_xmalloc(MANIFEST_MAX_BYTES + 1), 0, 0};

    if (stream_get(d, remote_key, small_sink, &s, err) < 0) {
        if (s.too_large)
            cst_err_set(err, "destination %s: %s is larger than %u bytes: not a manifest", d->name,
                        remote_key, MANIFEST_MAX_BYTES);
        free(s.buf);
        return NULL;
    }
    s.buf[s.len] = '\0';
    *len = s.len;
    return util_xrealloc(s.buf, s.len + 1);
}

struct hashing {
    EVP_MD_CTX *ctx;
    uint64_t size;
};

static int hash_sink(void *arg, const void *data, size_t n)
{
    struct hashing *h = arg;

    h->size += n;
    return EVP_DigestUpdate(h->ctx, data, n) == 1 ? 0 : -1;
}

int manifest_hash_remote(struct dest *d, const char *remote_key, unsigned char sha256[32],
                         uint64_t *size, struct cst_err *err)
{
    struct hashing h = {EVP_MD_CTX_new(), 0};
    unsigned int n32 = 32;
    int rc;

    if (h.ctx == NULL || EVP_DigestInit_ex(h.ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h.ctx);
        return cst_err_set(err, "cannot hash %s: out of memory", remote_key);
    }
    rc = stream_get(d, remote_key, hash_sink, &h, err);
    if (rc == 0 && EVP_DigestFinal_ex(h.ctx, sha256, &n32) != 1)
        rc = cst_err_set(err, "cannot hash %s", remote_key);
    EVP_MD_CTX_free(h.ctx);
    *size = h.size;
    return rc;
}

/* --- listing --- */

struct listing {
    const char *date;
    int (*cb)(void *arg, const char *date, int attempt);
    void *arg;
};

static int list_one(void *arg, const char *key, uint64_t size)
{
    struct listing *l = arg;
    const char *name = strrchr(key, '/');
    char date[11], ext[8];
    int attempt;

    (void)size;
    name = name ? name + 1 : key;
    if (manifest_parse_name(name, date, &attempt, ext) < 0 || strcmp(ext, "json") != 0 ||
        (l->date && strcmp(l->date, date) != 0))
        return 0;
    return l->cb(l->arg, date, attempt);
}

int manifest_list(struct dest *d, const char *date,
                  int (*cb)(void *arg, const char *date, int attempt), void *arg,
                  struct cst_err *err)
{
    struct listing l = {date, cb, arg};
    char *prefix = util_printf("backups/manifests/%s", date ? date : "");
    int rc;

    if (d->ops->list == NULL) {
        free(prefix);
        return cst_err_set(err, "destination %s (%s) cannot list its files", d->name, d->ops->type);
    }
    rc = d->ops->list(d, prefix, list_one, &l, err);
    free(prefix);
    return rc < 0 ? -1 : 0;
}
