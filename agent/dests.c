/*
 * dests.c - one struct dest per [destination NAME] section.
 */
#include "dests.h"

#include <stdlib.h>

#include "common/util.h"

int dests_open(const struct cfg *cfg, struct dest ***out, size_t *n, struct cst_err *err)
{
    struct dest **d = util_xcalloc(cfg->n_dests, sizeof(*d));

    for (size_t i = 0; i < cfg->n_dests; i++) {
        const struct cfg_dest *c = &cfg->dests[i];

        switch (c->type) {
        case CFG_DEST_LOCAL:
            d[i] = dest_local_new(c->name, c->path, err);
            break;
        case CFG_DEST_S3:
        case CFG_DEST_SFTP:
            cst_err_set(err, "destination %s: type %s is not supported by this version yet",
                        c->name, c->type == CFG_DEST_S3 ? "s3" : "sftp");
            break;
        }
        if (d[i] == NULL) {
            dests_free(d, i);
            return -1;
        }
        d[i]->role = (int)c->role;
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
