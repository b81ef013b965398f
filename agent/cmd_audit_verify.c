/*
 * cmd_audit_verify.c - `custodian audit verify`: recompute the audit log's
 * hash chain and name the first row that was altered or removed, then hold
 * the chain against the heads the signed daily manifests published.
 *
 * The chain alone cannot show that rows were cut off its end, or that
 * someone who can write the catalog rewrote it and recomputed every hash.
 * Each daily manifest records the chain's head at that time (row count and
 * the hash of the last row) under the signing key, and leaves the host. The
 * heads are read from state_dir/manifests/ first, then from every
 * destination (any manifest there that is not kept locally); each is
 * checked against signing.pub and against the day and attempt it is stored
 * as. The log must be at least as long as every head, and its row at each
 * head must have that head's hash.
 */
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "agent/dests.h"
#include "agent/manifest.h"
#include "common/util.h"

struct head {
    char date[11];
    int attempt;
    int64_t rows;
    unsigned char hash[32];
    char where[72];
};

struct heads {
    struct head *list;
    size_t n, cap;
    int problems; /* manifests that did not verify, destinations not reached */
};

static int have_head(const struct heads *h, const char *date, int attempt)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->list[i].attempt == attempt && strcmp(h->list[i].date, date) == 0)
            return 1;
    return 0;
}

static void add_head(struct heads *h, const struct manifest *m, const char *where)
{
    struct head *e;

    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->list = util_xrealloc(h->list, h->cap * sizeof(*h->list));
    }
    e = &h->list[h->n++];
    memset(e, 0, sizeof(*e));
    snprintf(e->date, sizeof(e->date), "%s", m->date);
    e->attempt = m->attempt;
    e->rows = m->has_audit ? m->audit_rows : -1; /* -1: a manifest from before heads */
    memcpy(e->hash, m->audit_head, 32);
    snprintf(e->where, sizeof(e->where), "%s", where);
}

/* A trio's texts (NULL where missing), checked and its head taken. */
static void take_trio(struct heads *h, char *text[3], size_t len[3], const char *date, int attempt,
                      const unsigned char pk[32], const char *where)
{
    struct manifest m;
    struct cst_err err;

    if (text[0] == NULL || text[1] == NULL || text[2] == NULL) {
        printf("FAIL  %s: the manifest of %s attempt %d is incomplete\n", where, date, attempt);
        h->problems++;
        return;
    }
    if (manifest_check(text[0], len[0], text[1], len[1], text[2], pk, date, attempt, &m, &err) <
        0) {
        printf("FAIL  %s: the manifest of %s attempt %d: %s\n", where, date, attempt, err.msg);
        h->problems++;
        return;
    }
    add_head(h, &m, where);
}

static char *read_local(const char *dir, const char *name, size_t *len)
{
    char *path = util_join(dir, name), *buf = util_xmalloc(MANIFEST_MAX_BYTES + 1);
    FILE *f = fopen(path, "rb");
    size_t n = 0;

    free(path);
    if (f != NULL) {
        n = fread(buf, 1, MANIFEST_MAX_BYTES + 1, f);
        fclose(f);
    }
    if (f == NULL || n > MANIFEST_MAX_BYTES) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void local_heads(struct cli *cli, struct heads *h, const unsigned char pk[32])
{
    static const char *const kinds[] = {"manifest-sha256", "manifest-json", "manifest-sig"};
    char *dir = cli_state_path(cli, "manifests");
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d)) != NULL) {
        char date[11], ext[8], *text[3];
        size_t len[3] = {0, 0, 0};
        int attempt;

        if (manifest_parse_name(de->d_name, date, &attempt, ext) < 0 || strcmp(ext, "json") != 0)
            continue;
        for (int i = 0; i < 3; i++) {
            char *key = manifest_artifact_key(kinds[i], date, attempt);

            text[i] = read_local(dir, strrchr(key, '/') + 1, &len[i]);
            free(key);
        }
        take_trio(h, text, len, date, attempt, pk, "the state folder");
        for (int i = 0; i < 3; i++)
            free(text[i]);
    }
    if (d)
        closedir(d);
    free(dir);
}

struct found {
    char (*dates)[11];
    int *attempts;
    size_t n, cap;
};

static int add_found(void *arg, const char *date, int attempt)
{
    struct found *f = arg;

    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->dates = util_xrealloc(f->dates, f->cap * sizeof(*f->dates));
        f->attempts = util_xrealloc(f->attempts, f->cap * sizeof(*f->attempts));
    }
    snprintf(f->dates[f->n], 11, "%s", date);
    f->attempts[f->n++] = attempt;
    return 0;
}

/* Manifests on the destinations that are not kept locally (deleted here, or
 * newer than what this host kept). */
static void remote_heads(struct cli *cli, struct heads *h, const unsigned char pk[32])
{
    static const char *const kinds[] = {"manifest-sha256", "manifest-json", "manifest-sig"};
    struct dest **dests;
    struct cst_err err;
    size_t nd;

    if (dests_open(cli->cfg, NULL, &dests, &nd, &err) < 0) {
        printf("FAIL  %s\n", err.msg);
        h->problems++;
        return;
    }
    for (size_t d = 0; d < nd; d++) {
        struct found f = {NULL, NULL, 0, 0};

        if (manifest_list(dests[d], NULL, add_found, &f, &err) < 0) {
            printf("FAIL  %s: %s\n", dests[d]->name, err.msg);
            h->problems++;
        }
        for (size_t i = 0; i < f.n; i++) {
            char *text[3];
            size_t len[3] = {0, 0, 0};

            if (have_head(h, f.dates[i], f.attempts[i]))
                continue;
            for (int k = 0; k < 3; k++) {
                char *key = manifest_artifact_key(kinds[k], f.dates[i], f.attempts[i]);

                text[k] = manifest_fetch_small(dests[d], key, &len[k], &err);
                free(key);
            }
            take_trio(h, text, len, f.dates[i], f.attempts[i], pk, dests[d]->name);
            for (int k = 0; k < 3; k++)
                free(text[k]);
        }
        free(f.dates);
        free(f.attempts);
    }
    dests_free(dests, nd);
}

static int cmd_audit_verify_exec(struct cli *cli, int argc, char **argv)
{
    struct heads h = {NULL, 0, 0, 0};
    struct head newest = {"", 0, 0, {0}, ""};
    unsigned char pk[32];
    struct cst_err err;
    int64_t rows = 0, checked = 0;
    int rc, bad = 0;

    (void)argv;
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian audit verify");
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    if (manifest_signing_public(cli->cfg, pk, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if (catalog_audit_verify(cli->cat, &rows, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    local_heads(cli, &h, pk);
    remote_heads(cli, &h, pk);
    for (size_t i = 0; i < h.n; i++) {
        const struct head *e = &h.list[i];
        unsigned char hash[32];
        int found;

        if (e->rows <= 0)
            continue; /* an empty log then, or a manifest older than published heads */
        checked++;
        if (e->rows > newest.rows)
            newest = *e;
        if (e->rows > rows) {
            printf("FAIL  the signed manifest of %s attempt %d (%s) recorded %lld audit rows; "
                   "the log has %lld: rows were removed from its end\n",
                   e->date, e->attempt, e->where, (long long)e->rows, (long long)rows);
            bad = 1;
            continue;
        }
        found = catalog_audit_row_hash(cli->cat, e->rows, hash, &err);
        if (found < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
        if (found == 0 || memcmp(hash, e->hash, 32) != 0) {
            printf("FAIL  audit row %lld is not the one the signed manifest of %s attempt %d "
                   "(%s) recorded: the log was rewritten\n",
                   (long long)e->rows, e->date, e->attempt, e->where);
            bad = 1;
        }
    }
    free(h.list);
    if (bad)
        return cli_fail(EXIT_FAILED,
                        "the audit log (%lld rows, its own hash chain intact) does "
                        "not match the chain heads signed in the daily manifests",
                        (long long)rows);
    if (h.problems)
        return cli_fail(EXIT_FAILED,
                        "audit log: %lld rows, hash chain intact, but %d manifest(s) or "
                        "destination(s) could not be checked (see above)",
                        (long long)rows, h.problems);
    printf("audit log intact: %lld rows, hash chain verified\n", (long long)rows);
    if (checked)
        printf("matches %lld signed chain heads; the newest: %s attempt %d (%lld rows, from "
               "%s)\n",
               (long long)checked, newest.date, newest.attempt, (long long)newest.rows,
               newest.where);
    else
        printf("no signed chain head to hold it against yet (no daily manifest records one)\n");
    return EXIT_OK;
}

const struct cmd_entry cmd_audit_verify_entry = {
    .name = "audit verify",
    .usage = "",
    .help = "check the audit log's hash chain, and against the heads signed in daily manifests",
    .exec = cmd_audit_verify_exec,
};
