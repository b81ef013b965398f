/*
 * verifier.c - rolling verification (see verifier.h).
 *
 * A timer earns each destination per_day / 86400 checks a second; every
 * round, what has been earned is taken from the catalog (least recently
 * checked first) and read back on the pool's thread. Results come back to
 * the loop, which records them in one transaction.
 */
#include "verifier.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

#define ROUND_S 10.0
#define MAX_PER_ROUND 64

enum check_result { CHECK_INTACT, CHECK_DAMAGED, CHECK_UNKNOWN };

struct check_job {
    struct work work;
    struct verifier *v;
    size_t dest;
    struct catalog_copy *copies;
    size_t n;
    enum check_result *results;
    char (*why)[CST_ERR_SIZE];
};

struct verifier {
    struct verifier_params p;
    ev_timer round;
    double *credit;   /* checks earned and not yet taken, per destination */
    int busy;         /* a job is out */
    size_t next_dest; /* where the next round starts looking, so that each gets its turn */
    int stopping;
};

int verifier_check_copy(struct dest *d, const struct catalog_copy *c, const char *scratch_dir,
                        char *why, size_t why_len, struct cst_err *err)
{
    unsigned char buf[1 << 16], sha[32];
    EVP_MD_CTX *ctx;
    unsigned int len = 32;
    uint64_t size = 0;
    int64_t got = 0;
    off_t off = 0;
    int fd, rc = -1, present;

    present = d->ops->exists ? d->ops->exists(d, c->remote_key, &size, err) : 1;
    if (present < 0)
        return -1;
    if (present == 0) {
        snprintf(why, why_len, "missing: %s is not on destination %s", c->remote_key, d->name);
        return 0;
    }
    fd = open(scratch_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return cst_err_sys(err, "cannot create a scratch file in %s", scratch_dir);
    if (d->ops->get(d, c->remote_key, fd, err) < 0)
        goto out;
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof(buf), off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cst_err_sys(err, "cannot read back the copy of %s", c->object_id);
            EVP_MD_CTX_free(ctx);
            goto out;
        }
        if (n == 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        off += n;
        got += n;
    }
    EVP_DigestFinal_ex(ctx, sha, &len);
    EVP_MD_CTX_free(ctx);
    if (got != c->stored_size || memcmp(sha, c->stored_sha256, 32) != 0) {
        snprintf(why, why_len,
                 "different: %s on destination %s reads back as %lld bytes that "
                 "are not what was stored (%lld bytes)",
                 c->remote_key, d->name, (long long)got, (long long)c->stored_size);
        rc = 0;
    } else {
        rc = 1;
    }
out:
    close(fd);
    return rc;
}

static void check_run(struct work *w)
{
    struct check_job *j = (struct check_job *)w;
    struct dest *d = j->v->p.dests[j->dest];

    for (size_t i = 0; i < j->n; i++) {
        struct cst_err err = {{0}};
        int rc = verifier_check_copy(d, &j->copies[i], j->v->p.scratch_dir, j->why[i],
                                     sizeof(j->why[i]), &err);

        j->results[i] = rc == 1 ? CHECK_INTACT : rc == 0 ? CHECK_DAMAGED : CHECK_UNKNOWN;
        if (rc < 0) {
            snprintf(j->why[i], sizeof(j->why[i]), "%s", err.msg);
            break; /* the destination is not answering: the rest wait for a later round */
        }
    }
}

static int record(struct verifier *v, struct check_job *j, int *damaged, struct cst_err *err)
{
    int64_t now = util_now_ms();

    for (size_t i = 0; i < j->n; i++) {
        const struct catalog_copy *c = &j->copies[i];
        struct json doc;
        int rc;

        if (j->results[i] == CHECK_INTACT) {
            if (catalog_copy_checked(v->p.catalog, c->object_id, c->dest, now, err) < 0)
                return -1;
            continue;
        }
        if (j->results[i] != CHECK_DAMAGED)
            continue;
        log_error("copy DAMAGED: object %.16s on destination %s is %s; it is not used any more "
                  "and is copied again",
                  c->object_id, c->dest, j->why[i]);
        if (catalog_copy_damaged(v->p.catalog, c->object_id, c->dest, j->why[i], now, err) < 0)
            return -1;
        json_init(&doc);
        json_obj_begin(&doc);
        json_key(&doc, "object");
        json_str(&doc, c->object_id);
        json_key(&doc, "dest");
        json_str(&doc, c->dest);
        json_key(&doc, "why");
        json_str(&doc, j->why[i]);
        json_obj_end(&doc);
        rc = catalog_audit(v->p.catalog, "agent", "copy_damaged", doc.buf, err);
        json_free(&doc);
        if (rc < 0)
            return -1;
        (*damaged)++;
    }
    return 0;
}

static void job_free(struct check_job *j)
{
    catalog_copies_free(j->copies, j->n);
    free(j->results);
    free(j->why);
    free(j);
}

static void check_done(struct work *w)
{
    struct check_job *j = (struct check_job *)w;
    struct verifier *v = j->v;
    struct cst_err err;
    int damaged = 0;

    v->busy = 0;
    if (catalog_begin(v->p.catalog, &err) < 0 || record(v, j, &damaged, &err) < 0 ||
        catalog_commit(v->p.catalog, &err) < 0) {
        catalog_rollback(v->p.catalog);
        /* Nothing recorded: the same copies come first again next round. */
        log_warn("cannot record copy checks: %s", err.msg);
        damaged = 0;
    }
    for (size_t i = 0; i < j->n; i++)
        if (j->results[i] == CHECK_UNKNOWN && j->why[i][0]) {
            log_info("rolling verification of destination %s paused: %s", v->p.dests[j->dest]->name,
                     j->why[i]);
            break;
        }
    job_free(j);
    if (damaged && v->p.on_damaged)
        v->p.on_damaged(v->p.arg);
}

static void on_round(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct verifier *v = t->data;

    (void)loop;
    (void)revents;
    if (v->stopping)
        return;
    for (size_t d = 0; d < v->p.n_dests; d++) {
        v->credit[d] += (double)v->p.per_day * ROUND_S / 86400.0;
        if (v->credit[d] > MAX_PER_ROUND)
            v->credit[d] = MAX_PER_ROUND;
    }
    if (v->busy)
        return;
    for (size_t k = 0; k < v->p.n_dests; k++) {
        size_t d = (v->next_dest + k) % v->p.n_dests, want = (size_t)v->credit[d];
        struct check_job *j;
        struct cst_err err;

        if (want == 0)
            continue;
        j = util_xcalloc(1, sizeof(*j));
        if (catalog_copies_to_check(v->p.catalog, v->p.dests[d]->name, want, &j->copies, &j->n,
                                    &err) < 0) {
            log_warn("rolling verification: %s", err.msg);
            free(j);
            continue;
        }
        if (j->n == 0) {
            free(j);
            v->credit[d] = 0;
            continue;
        }
        v->credit[d] -= (double)j->n;
        j->v = v;
        j->dest = d;
        j->results = util_xcalloc(j->n, sizeof(*j->results));
        j->why = util_xcalloc(j->n, sizeof(*j->why));
        j->work.run = check_run;
        j->work.done = check_done;
        v->busy = 1;
        v->next_dest = d + 1;
        workpool_submit(v->p.pool, &j->work);
        return; /* one job at a time; the next round takes the next destination */
    }
}

struct verifier *verifier_new(const struct verifier_params *p)
{
    struct verifier *v = util_xcalloc(1, sizeof(*v));

    v->p = *p;
    v->credit = util_xcalloc(p->n_dests ? p->n_dests : 1, sizeof(double));
    ev_timer_init(&v->round, on_round, ROUND_S, ROUND_S);
    v->round.data = v;
    if (p->per_day > 0 && p->n_dests > 0)
        ev_timer_start(p->loop, &v->round);
    return v;
}

void verifier_stop(struct verifier *v)
{
    if (v == NULL)
        return;
    v->stopping = 1;
    ev_timer_stop(v->p.loop, &v->round);
}

void verifier_free(struct verifier *v)
{
    if (v == NULL)
        return;
    verifier_stop(v);
    free(v->credit);
    free(v);
}
