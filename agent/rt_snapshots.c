/*
 * rt_snapshots.c - the restore test's billing-cycle snapshot check and its
 * archive accessibility check (§6 "verify archive accessibility").
 *
 * Snapshots: the newest package and the oldest one still in the hot tier
 * (closed less than hot_months ago) are fetched from a destination holding
 * them (one whose copy is not in an archive class where there is a choice),
 * their signature and ciphertext checked, and with the secret key decrypted,
 * unpacked into a scratch folder, every member checked against SHA256SUMS
 * and snapshot.json, and every refs.tsv entry restored from the stored
 * object it names and checked against its SHA-256.
 *
 * Archive: a random sample of archive-tier copies ([restore_test]
 * archive_sample) is asked for its storage class, Object Lock and size
 * (HEAD); with archive_probe one of them is fetched whole. None of this
 * needs the secret key.
 */
#include <errno.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "agent/keys.h"
#include "agent/prune_plan.h"
#include "agent/restore.h"
#include "agent/restore_test_int.h"
#include "agent/sched.h"
#include "agent/snapshot.h"
#include "agent/snapshot_check.h"
#include "common/log.h"
#include "common/util.h"

struct snaps {
    struct catalog_snapshot *s;
    size_t n;
};

static char *dup_or_null(const char *s)
{
    return s ? util_xstrdup(s) : NULL;
}

static int on_snapshot(void *arg, const struct catalog_snapshot *s)
{
    struct snaps *ss = arg;
    struct catalog_snapshot *c;

    ss->s = util_xrealloc(ss->s, (ss->n + 1) * sizeof(*ss->s));
    c = &ss->s[ss->n++];
    *c = *s;
    c->label = dup_or_null(s->label);
    c->period_key = dup_or_null(s->period_key);
    c->remote_key = dup_or_null(s->remote_key);
    c->sig_key = dup_or_null(s->sig_key);
    c->sig = dup_or_null(s->sig);
    c->spool = dup_or_null(s->spool);
    c->verify_detail = dup_or_null(s->verify_detail);
    c->last_error = dup_or_null(s->last_error);
    return 0;
}

static void snaps_free(struct snaps *ss)
{
    for (size_t i = 0; i < ss->n; i++)
        catalog_snapshot_clear(&ss->s[i]);
    free(ss->s);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        fprintf(stderr, "custodian: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static const struct cfg_dest *cfg_dest_of(const struct rt *t, const char *name)
{
    for (size_t i = 0; i < t->cli->cfg->n_dests; i++)
        if (strcmp(t->cli->cfg->dests[i].name, name) == 0)
            return &t->cli->cfg->dests[i];
    return NULL;
}

static struct dest *dest_of(const struct rt *t, const char *name)
{
    for (size_t i = 0; i < t->n_dests; i++)
        if (strcmp(t->dests[i]->name, name) == 0)
            return t->dests[i];
    return NULL;
}

/* Every refs.tsv entry restored from its stored object. 0, or -1 with err naming the
 * first that does not. */
static int check_refs(struct rt *t, const struct snapshot_report *rep, int64_t *restored,
                      struct cst_err *err)
{
    int fd = rt_scratch(t, err), rc = 0;

    *restored = 0;
    if (fd < 0)
        return -1;
    for (size_t i = 0; rc == 0 && i < rep->n_refs; i++) {
        const struct snapshot_ref *ref = &rep->ref_list[i];
        struct catalog_object o;
        struct catalog_copy *copies = NULL;
        size_t n = 0;
        int found = catalog_object_get(t->cli->cat, ref->object_id, &o, err);

        if (found < 0) {
            rc = -1;
            break;
        }
        if (found == 0 || memcmp(o.sha256, ref->sha256, 32) != 0) {
            rc = cst_err_set(err, "refs.tsv names object %s (version %lld), which the catalog %s",
                             ref->object_id, (long long)ref->version,
                             found ? "holds with another SHA-256" : "does not hold");
            break;
        }
        if (catalog_good_copies(t->cli->cat, ref->object_id, &copies, &n, err) < 0) {
            rc = -1;
            break;
        }
        rc = cst_err_set(err,
                         "refs.tsv names object %s (version %lld): no destination holds a "
                         "good copy of it",
                         ref->object_id, (long long)ref->version);
        for (size_t c = 0; c < n; c++) {
            struct dest *d = dest_of(t, copies[c].dest);
            unsigned char sha[32];
            uint64_t size;

            if (d == NULL)
                continue;
            if (rt_fetch(t, d, copies[c].remote_key, fd, sha, &size, err) == 0 &&
                memcmp(sha, copies[c].stored_sha256, 32) == 0 &&
                rt_open(t, fd, -1, ref->size, ref->sha256, err) == 0) {
                rc = 0;
                (*restored)++;
                break;
            }
            cst_err_wrap(err, "refs.tsv entry version %lld from %s", (long long)ref->version,
                         d->name);
        }
        catalog_copies_free(copies, n);
    }
    close(fd);
    return rc;
}

/* One snapshot: fetched, proven and (with the key) unpacked; a row of the table. */
static enum report_status check_one(struct rt *t, struct report_section *s,
                                    const struct catalog_snapshot *snap, const char *why_chosen,
                                    const unsigned char sign_pk[32], char *fail, size_t faillen)
{
    struct dest *d = NULL;
    int archive_only = 1, sealed = -1, plain = -1;
    struct snapshot_report rep;
    struct cst_err err;
    enum report_status st = REPORT_FAILED;
    int64_t t0 = util_mono_ms(), restored = 0;
    char *dir = NULL, why[1200] = "";

    memset(&rep, 0, sizeof(rep));
    for (size_t i = 0; i < t->n_dests; i++) {
        const struct cfg_dest *cd = cfg_dest_of(t, t->dests[i]->name);
        int archive = 0;

        if (cd == NULL || catalog_snapshot_has_copy(t->cli->cat, snap->id, t->dests[i]->name) != 1)
            continue;
        snapshot_class_on(cd, &archive);
        if (d == NULL || (archive_only && !archive)) {
            d = t->dests[i];
            archive_only = archive;
        }
    }
    if (d == NULL) {
        snprintf(why, sizeof(why), "no destination holds a recorded copy");
        goto out;
    }
    if ((sealed = rt_scratch(t, &err)) < 0 ||
        snapshot_fetch(d, snap, sign_pk, sealed, NULL, &err) < 0) {
        snprintf(why, sizeof(why), "%s", err.msg);
        goto out;
    }
    if (t->sk == NULL) {
        st = REPORT_NOT_DONE;
        snprintf(why, sizeof(why),
                 "signature and ciphertext intact; not decrypted or unpacked: no secret key");
        goto out;
    }
    dir = util_printf("%s/restore-test-snapshot.XXXXXX", t->spool);
    if ((plain = rt_scratch(t, &err)) < 0 ||
        snapshot_decrypt(sealed, plain, t->pk, t->sk, snap, &err) < 0) {
        snprintf(why, sizeof(why), "%s", err.msg);
        goto out;
    }
    if (mkdtemp(dir) == NULL) {
        snprintf(why, sizeof(why), "cannot make a scratch folder in %s: %s", t->spool,
                 strerror(errno));
        free(dir);
        dir = NULL;
        goto out;
    }
    if (snapshot_check_members(plain, dir, &rep, &err) < 0) {
        snprintf(why, sizeof(why), "%s", err.msg);
        goto out;
    }
    if ((int64_t)rep.n_refs != snap->refs || rep.files != snap->files ||
        rep.missing != snap->missing) {
        snprintf(why, sizeof(why),
                 "the package holds %lld files, %zu references and %lld missing; the catalog "
                 "recorded %lld, %lld and %lld",
                 (long long)rep.files, rep.n_refs, (long long)rep.missing, (long long)snap->files,
                 (long long)snap->refs, (long long)snap->missing);
        goto out;
    }
    if (check_refs(t, &rep, &restored, &err) < 0) {
        snprintf(why, sizeof(why), "%s", err.msg);
        goto out;
    }
    st = REPORT_PASSED;
    /* The plan's per-cycle box "snapshot restore test metadata verified": this was one. */
    {
        char *detail = util_printf("restore test of %s: restored from %s, unpacked, every member "
                                   "against SHA256SUMS and snapshot.json, every reference "
                                   "restored",
                                   t->month, d->name);

        if (catalog_snapshot_verified(t->cli->cat, snap->id, util_now_ms(), detail, &err) < 0)
            fprintf(stderr, "custodian: cannot record the checklist: %s\n", err.msg);
        free(detail);
    }
    if (!rep.complete)
        snprintf(why, sizeof(why),
                 "restores as it was made; it was made INCOMPLETE (%lld referenced files "
                 "missing, missing.txt)",
                 (long long)rep.missing);
out : {
    int64_t ms = util_mono_ms() - t0;

    if (st == REPORT_PASSED && snap->plain_size > t->snapshot_bytes) {
        t->snapshot_bytes = snap->plain_size;
        t->snapshot_ms = ms;
    }
    report_row(s, RT_MAX_ROWS);
    report_cell_text(s, 0, snap->label);
    report_cell_text(s, 1, snap->close_date);
    report_cell_text(s, 2, why_chosen);
    report_cell_text(s, 3, d ? d->name : "");
    report_cell_int(s, 4, snap->plain_size);
    if (st == REPORT_PASSED) {
        report_cell_int(s, 5, rep.members);
        report_cell_int(s, 6, rep.files);
        report_cell_int(s, 7, (int64_t)rep.n_refs);
        report_cell_int(s, 8, restored);
    }
    report_cell_int(s, 9, ms);
    report_cell_status(s, 10, st);
    report_cell_text(s, 11, why);
}
    if (st == REPORT_FAILED)
        snprintf(fail, faillen, "snapshot %s of %s%s%s: %s", snap->label, snap->close_date,
                 d ? " from " : "", d ? d->name : "", why);
    if (dir) {
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(dir);
    }
    snapshot_report_free(&rep);
    if (sealed >= 0)
        close(sealed);
    if (plain >= 0)
        close(plain);
    return st;
}

void rt_check_snapshots(struct rt *t, struct report_section *s)
{
    struct snaps ss = {NULL, 0};
    struct cst_err err;
    struct sched_zone *zone = NULL;
    unsigned char sign_pk[32];
    size_t newest = 0, oldest_hot = (size_t)-1;
    enum report_status a, b = REPORT_NOT_APPLICABLE;
    char fail[1400] = "";

    report_columns(s, "label", "Billing period", NULL, "close_date", "Closed", NULL, "chosen",
                   "Chosen as", NULL, "destination", "Restored from", NULL, "bytes", "Package size",
                   "bytes", "members", "Members", "files", "files", "Files in the package", "files",
                   "refs", "refs.tsv entries", "files", "refs_restored",
                   "refs.tsv entries restored", "files", "ms", "Time", "ms", "result", "Result",
                   NULL, "why", "Why", NULL, (char *)NULL);
    if (catalog_each_snapshot(t->cli->cat, on_snapshot, &ss, &err) < 0) {
        report_set(s, REPORT_FAILED, "the catalog cannot list the snapshots: %s", err.msg);
        goto out;
    }
    if (ss.n == 0) {
        report_set(s, REPORT_NOT_APPLICABLE, "no billing-cycle snapshot has been made yet");
        goto out;
    }
    if (keys_load_signing_pk(t->cli->cfg->signing_key, sign_pk, &err) < 0 ||
        (zone = sched_zone_load(t->cli->cfg->timezone, &err)) == NULL) {
        report_set(s, REPORT_FAILED, "%s", err.msg);
        goto out;
    }
    /* Oldest close date first: the newest made is the one created last. */
    for (size_t i = 0; i < ss.n; i++) {
        int64_t closed = ss.s[i].closed_at ? ss.s[i].closed_at : ss.s[i].created_at;

        if (ss.s[i].created_at >= ss.s[newest].created_at)
            newest = i;
        if (oldest_hot == (size_t)-1 &&
            plan_add_months(zone, closed, t->cli->cfg->hot_months) > t->now)
            oldest_hot = i;
    }
    a = check_one(t, s, &ss.s[newest], "the newest", sign_pk, fail, sizeof(fail));
    if (oldest_hot != (size_t)-1 && oldest_hot != newest)
        b = check_one(t, s, &ss.s[oldest_hot], "the oldest still in the hot tier", sign_pk,
                      fail[0] ? fail + strlen(fail) : fail,
                      fail[0] ? sizeof(fail) - strlen(fail) : sizeof(fail));
    if (a == REPORT_FAILED || b == REPORT_FAILED)
        report_set(s, REPORT_FAILED, "%s", fail);
    else if (a == REPORT_NOT_DONE || b == REPORT_NOT_DONE)
        report_set(s, REPORT_NOT_DONE,
                   "not done: signatures and ciphertext are intact, but no package was "
                   "decrypted or unpacked: %s",
                   t->no_key_why);
    else
        report_set(s, REPORT_PASSED,
                   "%s restored, unpacked, every member checked against SHA256SUMS and "
                   "snapshot.json, every refs.tsv entry restored from its stored object",
                   b == REPORT_PASSED ? "the newest snapshot and the oldest one in the hot tier"
                                      : "the newest snapshot (the only one in the hot tier)");
out:
    sched_zone_free(zone);
    snaps_free(&ss);
}

/* --- archive accessibility --- */

struct archived {
    const struct catalog_snapshot *snap;
    const struct cfg_dest *cd;
    char *dest;
    char *recorded_class;
    int64_t retain_until;
};

struct archived_list {
    struct rt *t;
    const struct catalog_snapshot *snap;
    struct archived *a;
    size_t n;
};

static int on_copy(void *arg, const char *dest, const char *storage_class, int64_t retain_until,
                   int64_t verified_at)
{
    struct archived_list *l = arg;
    const struct cfg_dest *cd = cfg_dest_of(l->t, dest);
    int archive = 0;

    (void)verified_at;
    if (cd == NULL)
        return 0;
    snapshot_class_on(cd, &archive);
    if (!archive)
        return 0;
    l->a = util_xrealloc(l->a, (l->n + 1) * sizeof(*l->a));
    l->a[l->n].snap = l->snap;
    l->a[l->n].cd = cd;
    l->a[l->n].dest = util_xstrdup(dest);
    l->a[l->n].recorded_class = dup_or_null(storage_class);
    l->a[l->n].retain_until = retain_until;
    l->n++;
    return 0;
}

/* A class that must be thawed before a GET (S3's Glacier Flexible and Deep Archive). */
static int needs_thaw(const char *cls)
{
    return cls && (strcasecmp(cls, "GLACIER") == 0 || strcasecmp(cls, "DEEP_ARCHIVE") == 0);
}

/* The probe read a copy whose thaw an earlier test asked for: that restore job is done. */
static void thaw_job_done(struct rt *t, const struct archived *a)
{
    int status = 0;
    struct restorer *r = restorer_new(t->cli, a->dest, 0, &status);
    struct dest **ds = NULL;
    size_t n = 0;
    struct cst_err err;

    if (r)
        ds = restorer_dests(r, &n);
    if (n > 0 && restorer_thaw_done(r, ds[0], a->snap->remote_key, &err) < 0)
        log_warn("restore test: %s", err.msg);
    restorer_free(r);
}

/*
 * archive_probe on a copy in a class that must be thawed first: the thaw is asked for as a
 * restore would ask (a restore job, at the destination's restore_tier) and the test does not
 * wait hours for it: the probe is "in progress", and the next test (or `restore jobs`) finds
 * the job. Once the provider has thawed the copy, the probe fetches it whole and the job is
 * done. A probe is never "passed" before the bytes came back.
 */
static void probe_thawed(struct rt *t, struct report_section *s, const struct archived *a, int fd,
                         int64_t *failed, char *first, size_t first_len)
{
    int status = 0;
    struct restorer *r = restorer_new(t->cli, a->dest, 0, &status);
    struct dest **ds = NULL;
    size_t n = 0;
    char *what = util_printf("snapshot %s", a->snap->label);
    unsigned char sha[32];
    uint64_t size;
    struct cst_err err;
    int64_t p0 = util_mono_ms();

    if (r)
        ds = restorer_dests(r, &n);
    if (n == 0 || fd < 0) {
        report_fact_text(NULL, s, "probe", "Archive probe (one object fetched whole)",
                         "not done: the destination could not be opened for a thaw");
    } else if (restorer_thaw(r, ds[0], a->snap->remote_key, what, &err) < 0) {
        char *text = util_printf("in progress: %s", err.msg);

        report_fact_text(NULL, s, "probe", "Archive probe (one object fetched whole)", text);
        free(text);
    } else if (rt_fetch(t, ds[0], a->snap->remote_key, fd, sha, &size, &err) < 0) {
        (*failed)++;
        snprintf(first, first_len, "archive probe: snapshot %s on %s (thawed): %s", a->snap->label,
                 a->dest, err.msg);
    } else if (memcmp(sha, a->snap->stored_sha256, 32) != 0 ||
               (int64_t)size != a->snap->stored_size) {
        (*failed)++;
        snprintf(first, first_len,
                 "archive probe: snapshot %s on %s came back with another SHA-256 (thawed)",
                 a->snap->label, a->dest);
    } else {
        if (restorer_thaw_done(r, ds[0], a->snap->remote_key, &err) < 0)
            log_warn("restore test: %s", err.msg);
        report_fact_text(NULL, s, "probe", "Archive probe (one object fetched whole)",
                         "passed: thawed by the provider, and its SHA-256 is the stored one");
        report_fact_int(NULL, s, "probe_ms", "Archive probe time (after the thaw)",
                        util_mono_ms() - p0, "ms");
    }
    free(what);
    restorer_free(r);
}

void rt_check_archive(struct rt *t, struct report_section *s)
{
    const struct cfg *cfg = t->cli->cfg;
    struct snaps ss = {NULL, 0};
    struct archived_list l = {t, NULL, NULL, 0};
    struct cst_err err;
    int64_t failed = 0, checked = 0, not_done = 0;
    char first[1200] = "";
    size_t n_sample;

    report_columns(s, "snapshot", "Archived object (snapshot)", NULL, "destination", "Destination",
                   NULL, "class", "Storage class", NULL, "expected_class", "Expected class", NULL,
                   "lock", "Object Lock", NULL, "retain_until", "Locked until", NULL, "size",
                   "Size", "bytes", "result", "Result", NULL, "why", "Why", NULL, (char *)NULL);
    report_fact_int(NULL, s, "thaw_hours", "Provider's thaw time ([restore_test] thaw_hours)",
                    cfg->rt.thaw_hours, "h");
    if (catalog_each_snapshot(t->cli->cat, on_snapshot, &ss, &err) < 0) {
        report_set(s, REPORT_FAILED, "the catalog cannot list the snapshots: %s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < ss.n; i++) {
        l.snap = &ss.s[i];
        if (catalog_each_snapshot_copy(t->cli->cat, ss.s[i].id, on_copy, &l, &err) < 0) {
            report_set(s, REPORT_FAILED, "%s", err.msg);
            goto out;
        }
    }
    if (l.n == 0) {
        report_set(s, REPORT_NOT_APPLICABLE,
                   "no copy is in archive storage yet (no destination has role archive or an "
                   "archive_class, or no snapshot was made)");
        goto out;
    }
    /* A random sample: shuffle, then take the first archive_sample. */
    for (size_t i = l.n - 1; i > 0; i--) {
        size_t j = randombytes_uniform((uint32_t)(i + 1));
        struct archived tmp = l.a[i];

        l.a[i] = l.a[j];
        l.a[j] = tmp;
    }
    n_sample = l.n < (size_t)cfg->rt.archive_sample ? l.n : (size_t)cfg->rt.archive_sample;
    report_fact_int(NULL, s, "archived", "Archive-tier copies recorded", (int64_t)l.n, "copies");
    report_fact_int(NULL, s, "sampled", "Checked ([restore_test] archive_sample)",
                    (int64_t)n_sample, "copies");
    for (size_t i = 0; i < n_sample; i++) {
        const struct archived *a = &l.a[i];
        struct dest *d = dest_of(t, a->dest);
        int archive = 0, found;
        const char *want = snapshot_class_on(a->cd, &archive);
        struct dest_stat st;
        char why[1024] = "", lock[64] = "";
        enum report_status res = REPORT_FAILED;

        memset(&st, 0, sizeof(st));
        checked++;
        if (d == NULL) {
            snprintf(why, sizeof(why), "destination not open");
        } else if (d->ops->stat) {
            found = d->ops->stat(d, a->snap->remote_key, &st, &err);
            if (found < 0)
                snprintf(why, sizeof(why), "%s", err.msg);
            else if (found == 0)
                snprintf(why, sizeof(why), "%s is not there", a->snap->remote_key);
            else if ((int64_t)st.size != a->snap->stored_size)
                snprintf(why, sizeof(why), "%llu bytes, %lld were stored",
                         (unsigned long long)st.size, (long long)a->snap->stored_size);
            else if (want && strcmp(st.storage_class[0] ? st.storage_class : "STANDARD", want) != 0)
                snprintf(why, sizeof(why), "in storage class %s, not %s",
                         st.storage_class[0] ? st.storage_class : "STANDARD", want);
            else if (a->cd->object_lock &&
                     (st.lock_mode[0] == '\0' || st.retain_until + 1000 < a->retain_until))
                snprintf(why, sizeof(why),
                         "Object Lock %s until %lld ms, the copy was locked "
                         "until %lld ms",
                         st.lock_mode[0] ? st.lock_mode : "missing", (long long)st.retain_until,
                         (long long)a->retain_until);
            else
                res = REPORT_PASSED;
        } else if (want) {
            /* A class is expected, and this destination cannot say which it has. */
            res = REPORT_NOT_DONE;
            snprintf(why, sizeof(why), "the destination cannot report storage classes");
        } else {
            uint64_t size = 0;

            found = d->ops->exists(d, a->snap->remote_key, &size, &err);
            if (found < 0)
                snprintf(why, sizeof(why), "%s", err.msg);
            else if (found == 0)
                snprintf(why, sizeof(why), "%s is not there", a->snap->remote_key);
            else if ((int64_t)size != a->snap->stored_size)
                snprintf(why, sizeof(why), "%llu bytes, %lld were stored", (unsigned long long)size,
                         (long long)a->snap->stored_size);
            else
                res = REPORT_PASSED;
            st.size = size;
        }
        not_done += res == REPORT_NOT_DONE;
        if (res == REPORT_FAILED) {
            failed++;
            if (first[0] == '\0')
                snprintf(first, sizeof(first), "snapshot %s of %s on %s: %s", a->snap->label,
                         a->snap->close_date, a->dest, why);
        }
        if (st.lock_mode[0])
            snprintf(lock, sizeof(lock), "%s", st.lock_mode);
        report_row(s, RT_MAX_ROWS);
        report_cell_text(s, 0, a->snap->label);
        report_cell_text(s, 1, a->dest);
        report_cell_text(s, 2,
                         d && d->ops->stat ? (st.storage_class[0] ? st.storage_class : "STANDARD")
                                           : "(the destination has no classes)");
        report_cell_text(s, 3, want ? want : "");
        report_cell_text(s, 4, a->cd->object_lock ? (lock[0] ? lock : "none") : "not configured");
        report_cell_time(s, 5, st.retain_until);
        report_cell_int(s, 6, (int64_t)st.size);
        report_cell_status(s, 7, res);
        report_cell_text(s, 8, why);
    }
    /* archive_probe: one archived object fetched whole (a thaw first, where the class
     * needs one). */
    if (cfg->rt.archive_probe && failed == 0) {
        const struct archived *a = &l.a[0];
        struct dest *d = dest_of(t, a->dest);
        int archive = 0, fd = rt_scratch(t, &err);
        const char *cls = snapshot_class_on(a->cd, &archive);
        unsigned char sha[32];
        uint64_t size;
        int64_t p0 = util_mono_ms();

        if (fd >= 0 && d && rt_fetch(t, d, a->snap->remote_key, fd, sha, &size, &err) == 0) {
            if (memcmp(sha, a->snap->stored_sha256, 32) == 0 &&
                (int64_t)size == a->snap->stored_size) {
                if (needs_thaw(cls))
                    thaw_job_done(t, a); /* an earlier test's thaw, now readable */
                report_fact_text(NULL, s, "probe", "Archive probe (one object fetched whole)",
                                 "passed: its SHA-256 is the stored one");
                report_fact_int(NULL, s, "probe_ms", "Archive probe time", util_mono_ms() - p0,
                                "ms");
            } else {
                failed++;
                snprintf(first, sizeof(first),
                         "archive probe: snapshot %s on %s came back with another SHA-256",
                         a->snap->label, a->dest);
            }
        } else if (needs_thaw(cls)) {
            probe_thawed(t, s, a, fd, &failed, first, sizeof(first));
        } else {
            failed++;
            snprintf(first, sizeof(first), "archive probe: snapshot %s on %s: %s", a->snap->label,
                     a->dest, err.msg);
        }
        if (fd >= 0)
            close(fd);
    }
    if (failed)
        report_set(s, REPORT_FAILED,
                   "%lld of %lld archive-tier copies checked are not as stored; %s",
                   (long long)failed, (long long)checked, first);
    else if (not_done)
        report_set(s, REPORT_NOT_DONE,
                   "not done: %lld of %lld archive-tier copies are on destinations that cannot "
                   "report their storage class",
                   (long long)not_done, (long long)checked);
    else
        report_set(s, REPORT_PASSED,
                   "%lld archive-tier copies found as stored: size, storage class and Object "
                   "Lock as recorded",
                   (long long)checked);
out:
    for (size_t i = 0; i < l.n; i++) {
        free(l.a[i].dest);
        free(l.a[i].recorded_class);
    }
    free(l.a);
    snaps_free(&ss);
}
