/*
 * rt_files.c - the restore test's file check (§6 "perform test restore
 * (... sample files)").
 *
 * The sample is [restore_test] sample_files live files chosen at random,
 * plus every file version first seen on the test's day. Each is restored
 * from every destination in turn: the stored copy fetched, its ciphertext
 * checked against the seal the catalog recorded for that copy, decrypted
 * (never past the recorded size) and its plaintext checked against the
 * cataloged SHA-256 and size. Where the live file is still the version
 * cataloged (same size, mtime and inode), it is hashed too and must have
 * the same SHA-256: the backup is then proven byte-identical to the file
 * the app has. The time per destination gives its restore rate, which the
 * RTO projection uses.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/restore_test_int.h"
#include "common/util.h"

enum live { LIVE_UNKNOWN = 0, LIVE_SAME, LIVE_CHANGED, LIVE_DIFFERENT, LIVE_GONE };

struct sample {
    struct catalog_version v;
    enum live live;
};

struct samples {
    struct sample *s;
    size_t n;
};

static int on_version(void *arg, const struct catalog_version *v)
{
    struct samples *ss = arg;
    struct sample *s;

    ss->s = util_xrealloc(ss->s, (ss->n + 1) * sizeof(*ss->s));
    s = &ss->s[ss->n++];
    memset(s, 0, sizeof(*s));
    s->v = *v;
    s->v.path = util_xstrdup(v->path);
    s->v.link_target = NULL;
    return 0;
}

/* The live file against the version: hashed only when its stat still says it is that
 * version, so that a file changed since is not taken for damage. */
static enum live check_live(const struct catalog_version *v)
{
    unsigned char buf[1 << 16], sha[32];
    unsigned int n32 = 32;
    struct stat sb;
    EVP_MD_CTX *ctx;
    ssize_t n;
    int fd;

    if (v->deleted_at)
        return LIVE_GONE;
    fd = open(v->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return errno == ENOENT ? LIVE_GONE : LIVE_UNKNOWN;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size != v->size ||
        (int64_t)sb.st_ino != v->inode ||
        (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec != v->mtime_ns) {
        close(fd);
        return LIVE_CHANGED;
    }
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while ((n = util_read_full(fd, buf, sizeof(buf))) > 0)
        EVP_DigestUpdate(ctx, buf, (size_t)n);
    EVP_DigestFinal_ex(ctx, sha, &n32);
    EVP_MD_CTX_free(ctx);
    close(fd);
    if (n < 0)
        return LIVE_UNKNOWN;
    return memcmp(sha, v->sha256, 32) == 0 ? LIVE_SAME : LIVE_DIFFERENT;
}

static const char *live_words(enum live l)
{
    switch (l) {
    case LIVE_SAME:
        return "yes";
    case LIVE_CHANGED:
        return "changed since (not compared)";
    case LIVE_GONE:
        return "deleted since (not compared)";
    case LIVE_DIFFERENT:
        return "NO: same size, mtime and inode, other content";
    case LIVE_UNKNOWN:
        break;
    }
    return "unreadable (not compared)";
}

struct dest_result {
    int64_t files, bytes, ms, failed;
};

struct result {
    enum report_status st;
    int64_t ms;
    char *why;
};

/* One sample from one destination: REPORT_PASSED, REPORT_NOT_DONE (ciphertext only, no
 * key) or REPORT_FAILED with why. */
static enum report_status restore_one(struct rt *t, struct dest *d, const struct sample *s, int fd,
                                      int64_t *ms, char *why, size_t whylen)
{
    struct catalog_copy *copies = NULL;
    size_t n = 0;
    const struct catalog_copy *c = NULL;
    struct cst_err err;
    unsigned char sha[32];
    uint64_t size;
    enum report_status rc = REPORT_FAILED;
    int64_t t0 = util_mono_ms();

    why[0] = '\0';
    if (catalog_good_copies(t->cli->cat, s->v.object_id, &copies, &n, &err) < 0) {
        snprintf(why, whylen, "%s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < n && c == NULL; i++)
        if (strcmp(copies[i].dest, d->name) == 0)
            c = &copies[i];
    if (c == NULL) {
        snprintf(why, whylen, "no good copy is recorded on this destination");
        goto out;
    }
    if (rt_fetch(t, d, c->remote_key, fd, sha, &size, &err) < 0) {
        snprintf(why, whylen, "%s", err.msg);
        goto out;
    }
    if (memcmp(sha, c->stored_sha256, 32) != 0 || (int64_t)size != c->stored_size) {
        snprintf(why, whylen,
                 "the stored copy is not the object that was stored there (%llu bytes, "
                 "SHA-256 differs from the one recorded)",
                 (unsigned long long)size);
        goto out;
    }
    if (t->sk == NULL) {
        rc = REPORT_NOT_DONE;
        snprintf(why, whylen, "ciphertext intact; not decrypted: no secret key");
        goto out;
    }
    if (rt_open(t, fd, -1, s->v.size, s->v.sha256, &err) < 0) {
        snprintf(why, whylen, "%s", err.msg);
        goto out;
    }
    rc = REPORT_PASSED;
out:
    *ms = util_mono_ms() - t0;
    catalog_copies_free(copies, n);
    return rc;
}

void rt_check_files(struct rt *t, struct report_section *s)
{
    const struct cfg *cfg = t->cli->cfg;
    struct samples ss = {NULL, 0};
    struct dest_result *per = util_xcalloc(t->n_dests + 1, sizeof(*per));
    struct cst_err err;
    int64_t failed = 0, not_done = 0, live_same = 0, live_bad = 0, today = 0;
    char first_failure[1024] = "";
    struct result *res = NULL;
    int fd = -1;

    report_columns(s, "destination", "Destination", NULL, "version", "Catalog version", NULL,
                   "folder", "Watched folder", NULL, "size", "Size", "bytes", "sha256",
                   "Content SHA-256 (first 16 hex)", NULL, "ms", "Time to fetch and restore", "ms",
                   "matches_live", "Identical to the live file", NULL, "result", "Result", NULL,
                   "why", "Why", NULL, (char *)NULL);
    if (catalog_sample_versions(t->cli->cat, cfg->rt.sample_files, t->day_start, on_version, &ss,
                                &err) < 0) {
        report_set(s, REPORT_FAILED, "the catalog cannot give the sample: %s", err.msg);
        goto out;
    }
    if (ss.n == 0) {
        report_set(s, REPORT_NOT_APPLICABLE, "no file has been backed up yet: nothing to restore");
        goto out;
    }
    for (size_t i = 0; i < ss.n; i++) {
        ss.s[i].live = check_live(&ss.s[i].v);
        live_same += ss.s[i].live == LIVE_SAME;
        live_bad += ss.s[i].live == LIVE_DIFFERENT;
        today += ss.s[i].v.first_seen >= t->day_start;
    }
    report_fact_int(NULL, s, "sampled", "Files in the sample", (int64_t)ss.n, "files");
    report_fact_int(NULL, s, "random", "Chosen at random ([restore_test] sample_files)",
                    cfg->rt.sample_files, "files");
    report_fact_int(NULL, s, "today", "Written on the test's day", today, "files");
    report_fact_int(NULL, s, "live_same", "Compared with the live file", live_same, "files");
    if ((fd = rt_scratch(t, &err)) < 0) {
        report_set(s, REPORT_FAILED, "%s", err.msg);
        goto out;
    }
    /* Each destination in turn, every sample from it; the table lists failures first. */
    res = util_xcalloc(ss.n * t->n_dests + 1, sizeof(*res));
    for (size_t d = 0; d < t->n_dests; d++) {
        for (size_t i = 0; i < ss.n; i++) {
            struct result *r = &res[d * ss.n + i];
            const struct sample *sm = &ss.s[i];
            char why[1024];

            r->st = restore_one(t, t->dests[d], sm, fd, &r->ms, why, sizeof(why));
            if (r->st == REPORT_PASSED && sm->live == LIVE_DIFFERENT) {
                r->st = REPORT_FAILED;
                snprintf(why, sizeof(why),
                         "the backup is the cataloged content, but the live file with the "
                         "same size, mtime and inode is not");
            }
            r->why = util_xstrdup(why);
            per[d].files++;
            per[d].ms += r->ms;
            if (r->st == REPORT_PASSED)
                per[d].bytes += sm->v.size;
            per[d].failed += r->st == REPORT_FAILED;
            failed += r->st == REPORT_FAILED;
            not_done += r->st == REPORT_NOT_DONE;
            if (r->st == REPORT_FAILED && first_failure[0] == '\0')
                snprintf(first_failure, sizeof(first_failure), "version %lld on destination %s: %s",
                         (long long)sm->v.id, t->dests[d]->name, why);
        }
    }
    for (int want_failed = 1; want_failed >= 0; want_failed--) {
        for (size_t k = 0; k < ss.n * t->n_dests; k++) {
            const struct result *r = &res[k];
            const struct sample *sm = &ss.s[k % ss.n];
            char sha[17];

            if ((r->st == REPORT_FAILED) != want_failed)
                continue;
            report_row(s, RT_MAX_ROWS);
            report_cell_text(s, 0, t->dests[k / ss.n]->name);
            report_cell_int(s, 1, sm->v.id);
            report_cell_text(s, 2, rt_root_of(t, sm->v.path));
            report_cell_int(s, 3, sm->v.size);
            rt_short_hash(sm->v.sha256, sha);
            report_cell_text(s, 4, sha);
            report_cell_int(s, 5, r->ms);
            report_cell_text(s, 6, r->st == REPORT_PASSED ? live_words(sm->live) : "");
            report_cell_status(s, 7, r->st);
            report_cell_text(s, 8, r->why);
        }
    }
    for (size_t d = 0; d < t->n_dests; d++) {
        char key[96], label[160];
        int64_t rate = per[d].ms > 0 ? per[d].bytes * 1000 / per[d].ms : per[d].bytes * 1000;

        snprintf(key, sizeof(key), "%s.ms", t->dests[d]->name);
        snprintf(label, sizeof(label), "%s: time to restore the sample", t->dests[d]->name);
        report_fact_int(NULL, s, key, label, per[d].ms, "ms");
        snprintf(key, sizeof(key), "%s.bytes", t->dests[d]->name);
        snprintf(label, sizeof(label), "%s: bytes restored and verified", t->dests[d]->name);
        report_fact_int(NULL, s, key, label, per[d].bytes, "bytes");
        if (t->sk && per[d].failed == 0) {
            snprintf(key, sizeof(key), "%s.rate", t->dests[d]->name);
            snprintf(label, sizeof(label), "%s: restore rate", t->dests[d]->name);
            report_fact_int(NULL, s, key, label, rate, "bytes/s");
            if (rate > t->files_best_rate) {
                t->files_best_rate = rate;
                snprintf(t->files_best_dest, sizeof(t->files_best_dest), "%s", t->dests[d]->name);
            }
        }
    }
    if (failed)
        report_set(s, REPORT_FAILED,
                   "%lld of %zu restores failed (%zu files from each of %zu destinations); %s",
                   (long long)failed, ss.n * t->n_dests, ss.n, t->n_dests, first_failure);
    else if (not_done)
        report_set(s, REPORT_NOT_DONE,
                   "not done: every stored copy of the %zu sampled files is intact on each of %zu "
                   "destinations (ciphertext as recorded), but none was decrypted: %s",
                   ss.n, t->n_dests, t->no_key_why);
    else
        report_set(s, REPORT_PASSED,
                   "%zu files restored from each of %zu destinations, each byte-identical to its "
                   "cataloged SHA-256; %lld also identical to the live file",
                   ss.n, t->n_dests, (long long)live_same);
    (void)live_bad;
out:
    for (size_t k = 0; res && k < ss.n * t->n_dests; k++)
        free(res[k].why);
    free(res);
    if (fd >= 0)
        close(fd);
    for (size_t i = 0; i < ss.n; i++)
        free(ss.s[i].v.path);
    free(ss.s);
    free(per);
}
