/*
 * dests.c - one struct dest per [destination NAME] section.
 */
#include "dests.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "shipper/curl_ev.h"
#include "shipper/workpool.h"

static struct dest *open_one(const struct cfg_dest *c, const struct dest_env *env,
                             struct cst_err *err)
{
    switch (c->type) {
    case CFG_DEST_LOCAL:
        return dest_local_new(c->name, c->path, env, err);
    case CFG_DEST_S3: {
        struct dest_s3_config s3 = {
            .name = c->name,
            .endpoint = c->endpoint,
            .bucket = c->bucket,
            .region = c->region,
            .access_key_file = c->access_key_file,
            .secret_key_file = c->secret_key_file,
            .ca_file = c->ca_file,
            .hot_class = c->hot_class,
            .object_lock = c->object_lock,
            .lock_mode = c->lock_mode == CFG_LOCK_COMPLIANCE   ? "COMPLIANCE"
                         : c->lock_mode == CFG_LOCK_GOVERNANCE ? "GOVERNANCE"
                                                               : NULL,
            .path_style = c->path_style,
            .max_inflight = c->max_inflight,
            .bandwidth_kbps = c->bandwidth_kbps,
            .part_size = (uint64_t)c->part_size_mb << 20,
        };
        return dest_s3_new(&s3, env, err);
    }
    case CFG_DEST_SFTP: {
        struct dest_sftp_config sftp = {
            .name = c->name,
            .url = c->url,
            .identity = c->identity,
            .known_hosts = c->known_hosts,
            .max_inflight = c->max_inflight,
            .bandwidth_kbps = c->bandwidth_kbps,
        };
        return dest_sftp_new(&sftp, env, err);
    }
    }
    cst_err_set(err, "destination %s: unknown type", c->name);
    return NULL;
}

int dests_open(const struct cfg *cfg, const struct dest_env *env, struct dest ***out, size_t *n,
               struct cst_err *err)
{
    struct dest **d = util_xcalloc(cfg->n_dests, sizeof(*d));

    for (size_t i = 0; i < cfg->n_dests; i++) {
        d[i] = open_one(&cfg->dests[i], env, err);
        if (d[i] == NULL) {
            dests_free(d, i);
            return -1;
        }
        d[i]->role = (int)cfg->dests[i].role;
    }
    *out = d;
    *n = cfg->n_dests;
    return 0;
}

void dests_free(struct dest **dests, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dest_free(dests[i]);
    free(dests);
}

static void put_done(void *arg, struct dest_put *puts, size_t n)
{
    (void)puts;
    (void)n;
    *(int *)arg = 1;
}

static void add_error(char **errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_error(char **errors, const char *fmt, ...)
{
    char buf[CST_ERR_SIZE + 256], *more;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    more = util_printf("%s%s%s", *errors ? *errors : "", *errors ? "; " : "", buf);
    free(*errors);
    *errors = more;
}

int dests_put_blocking(const struct cfg *cfg, const struct dests_item *items, size_t n,
                       unsigned mask, const struct dests_put_hooks *hooks, unsigned char *ok,
                       char **errors)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct workpool *pool = workpool_new(loop, 1);
    struct curl_ev *curl = curl_ev_new(loop);
    struct dest_env env = {loop, pool, curl};
    struct dest **dests = NULL;
    size_t nd = 0;
    struct cst_err err;
    int failed = 0;

    if (dests_open(cfg, &env, &dests, &nd, &err) < 0) {
        add_error(errors, "%s", err.msg);
        failed = (int)n;
        goto out;
    }
    for (size_t d = 0; d < nd; d++) {
        if (d < 32 && !(mask & (1u << d)))
            continue;
        for (size_t i = 0; i < n; i++) {
            struct dest_put put;
            int done = 0;

            memset(&put, 0, sizeof(put));
            put.spool_path = items[i].spool_path;
            put.remote_key = items[i].remote_key;
            put.stored_size = items[i].stored_size;
            memcpy(put.stored_sha256, items[i].stored_sha256, 32);
            put.plain_size = items[i].plain_size;
            memcpy(put.plain_sha256, items[i].plain_sha256, 32);
            if (hooks && hooks->prepare)
                hooks->prepare(hooks->arg, dests[d], d, i, &put);
            dests[d]->ops->put_batch(dests[d], &put, 1, put_done, &done);
            while (!done)
                ev_run(loop, EVRUN_ONCE);
            if (hooks && hooks->finished)
                hooks->finished(hooks->arg, dests[d], d, i, &put);
            if (put.ok) {
                ok[d * n + i] = 1;
                continue;
            }
            failed++;
            add_error(errors, "destination %s: %s: %s", dests[d]->name, items[i].remote_key,
                      put.error);
        }
    }
out:
    workpool_free(pool);
    curl_ev_free(curl);
    dests_free(dests, nd);
    ev_loop_destroy(loop);
    return failed;
}
