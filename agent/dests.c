/*
 * dests.c - one struct dest per [destination NAME] section, and what the
 * catalog tells each about itself (for the destination marker).
 */
#include "dests.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/keys.h"
#include "common/log.h"
#include "common/util.h"
#include "shipper/curl_ev.h"
#include "shipper/workpool.h"

/* ca_file and known_hosts decide whom the agent trusts: checked like key files, here, so
 * that start-up, doctor and every command refuse a loose one the same way. */
static int check_trust_files(const struct cfg_dest *c, struct cst_err *err)
{
    const char *files[][2] = {{"ca_file", c->ca_file}, {"known_hosts", c->known_hosts}};

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char what[128];

        if (files[i][1] == NULL)
            continue;
        snprintf(what, sizeof(what), "destination %s: %s", c->name, files[i][0]);
        if (keys_check_trust_file(files[i][1], what, err) < 0)
            return -1;
    }
    return 0;
}

static struct dest *open_one(const struct cfg *cfg, const struct cfg_dest *c,
                             const struct dest_env *env, struct cst_err *err)
{
    if (check_trust_files(c, err) < 0)
        return NULL;
    switch (c->type) {
    case CFG_DEST_LOCAL: {
        struct dest_local_config local = {
            .name = c->name,
            .path = c->path,
            .max_inflight = c->max_inflight,
            .bandwidth_kbps = c->bandwidth_kbps,
        };
        return dest_local_new(&local, env, err);
    }
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
            /* The tier transition at hot_months, by the bucket's lifecycle rule: days since
             * upload, never fewer than hot_months calendar months hold (365.25 / 12 a
             * month, rounded up). An archive-role bucket holds its class from the start. */
            .archive_class = c->role != CFG_ROLE_ARCHIVE ? c->archive_class : NULL,
            .transition_days = c->role != CFG_ROLE_ARCHIVE && c->archive_class
                                   ? (cfg->hot_months * 1461 + 47) / 48
                                   : 0,
            .object_lock = c->object_lock,
            .lock_mode = c->lock_mode == CFG_LOCK_COMPLIANCE   ? "COMPLIANCE"
                         : c->lock_mode == CFG_LOCK_GOVERNANCE ? "GOVERNANCE"
                                                               : NULL,
            .path_style = c->path_style,
            .max_inflight = c->max_inflight,
            .bandwidth_kbps = c->bandwidth_kbps,
            .part_size = (uint64_t)c->part_size_mb << 20,
            .state_dir = cfg->state_dir,
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
            .readback_full = (uint64_t)c->readback_mb << 20,
        };
        return dest_sftp_new(&sftp, env, err);
    }
    }
    cst_err_set(err, "destination %s: unknown type", c->name);
    return NULL;
}

/*
 * The install a destination marker names: keyed BLAKE2b of a fixed text under the naming
 * key, the per-install secret (it says nothing about the key). NULL when the key cannot be
 * read here (then markers are compared by destination name only).
 */
static char *install_id(const struct cfg *cfg)
{
    unsigned char *key = sodium_malloc(KEYS_NAMING_BYTES), id[16];
    static const char what[] = "custodian install id v1";
    struct cst_err err;
    char hex[33];

    if (key == NULL)
        return NULL;
    if (keys_load_secret(cfg->naming_key, "naming-key", key, KEYS_NAMING_BYTES, &err) < 0) {
        log_debug("destination markers without the install: %s", err.msg);
        sodium_free(key);
        return NULL;
    }
    crypto_generichash(id, sizeof(id), (const unsigned char *)what, sizeof(what) - 1, key,
                       KEYS_NAMING_BYTES);
    sodium_free(key);
    util_hex(id, sizeof(id), hex);
    return util_xstrdup(hex);
}

int dests_open(const struct cfg *cfg, const struct dest_env *env, struct dest ***out, size_t *n,
               struct cst_err *err)
{
    struct dest **d = util_xcalloc(cfg->n_dests, sizeof(*d));
    char *install = NULL;

    if (sodium_init() >= 0)
        install = install_id(cfg);
    for (size_t i = 0; i < cfg->n_dests; i++) {
        d[i] = open_one(cfg, &cfg->dests[i], env, err);
        if (d[i] == NULL) {
            dests_free(d, i);
            free(install);
            return -1;
        }
        d[i]->role = (int)cfg->dests[i].role;
        dest_set_install(d[i], install);
    }
    free(install);
    *out = d;
    *n = cfg->n_dests;
    return 0;
}

int dests_usage(struct dest **dests, size_t n, struct catalog *cat, int may_mark,
                struct cst_err *err)
{
    for (size_t i = 0; i < n; i++) {
        struct dest_usage u = {0, NULL, may_mark};
        char *key = NULL;
        int rc = catalog_dest_in_use(cat, dests[i]->name, &key, err);

        if (rc < 0)
            return -1;
        u.in_use = rc;
        u.recorded_key = key;
        dest_set_usage(dests[i], &u);
        free(key);
    }
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
            int done = 0, there;
            uint64_t size;

            if (items[i].no_overwrite && dests[d]->ops->exists &&
                (there = dests[d]->ops->exists(dests[d], items[i].remote_key, &size, &err)) != 0) {
                failed++;
                if (there < 0)
                    add_error(errors, "destination %s: %s", dests[d]->name, err.msg);
                else
                    add_error(errors,
                              "destination %s already holds %s, which this run did not make; "
                              "it was not overwritten",
                              dests[d]->name, items[i].remote_key);
                continue;
            }
            memset(&put, 0, sizeof(put));
            put.spool_path = items[i].spool_path;
            put.remote_key = items[i].remote_key;
            put.stored_size = items[i].stored_size;
            memcpy(put.stored_sha256, items[i].stored_sha256, 32);
            put.plain_size = items[i].plain_size;
            memcpy(put.plain_sha256, items[i].plain_sha256, 32);
            put.retain_until = items[i].retain_until; /* ignored where nothing locks */
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
