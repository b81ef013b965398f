/*
 * dests.c - one struct dest per [destination NAME] section.
 */
#include "dests.h"

#include <stdio.h>
#include <stdlib.h>

#include "agent/keys.h"
#include "common/util.h"

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

static struct dest *open_one(const struct cfg_dest *c, const struct dest_env *env,
                             struct cst_err *err)
{
    if (check_trust_files(c, err) < 0)
        return NULL;
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
