/*
 * cmd_hold.c - legal holds: `custodian hold add (--path PREFIX | --period
 * LABEL | --before DATE | --all) --reason TEXT`, `hold release ID --reason
 * TEXT`, `hold list [--all]`. A hold freezes every deletion (and every
 * deletion of a hot copy) of what it covers; releasing it lets the retention
 * plan go on. Each change is an audit row naming the Unix user and the reason.
 *
 * On destinations with Object Lock the bucket enforces it too: placing a hold
 * sets the S3 legal-hold flag on the copy of every object it covers, releasing
 * one clears the flag on those no other active hold still covers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "agent/dests.h"
#include "agent/hold.h"
#include "agent/sched.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

static int audit_hold(struct cli *cli, const char *action, int64_t id, const char *kind,
                      const char *value, const char *reason, struct cst_err *err)
{
    struct json j;
    int rc;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "hold");
    json_int(&j, id);
    if (kind) {
        json_key(&j, "kind");
        json_str(&j, kind);
        json_key(&j, "value");
        json_str(&j, value);
    }
    json_key(&j, "reason");
    json_str(&j, reason);
    json_key(&j, "outcome");
    json_str(&j, "done"); /* written with the hold's own change, in one transaction */
    json_obj_end(&j);
    rc = catalog_audit(cli->cat, cli_user(), action, j.buf, err);
    json_free(&j);
    return rc;
}

/* --- the legal-hold flags of copies on destinations with Object Lock --- */

struct flags {
    struct cli *cli;
    struct dest **dests;
    size_t n_dests;
    int on;
    int64_t since; /* > 0: only copies made (or verified) since then (catching up) */
    char **keep;   /* release: objects another active hold covers (sorted) */
    size_t n_keep, cap_keep;
    int64_t set, failed;
    char error[CST_ERR_SIZE];
};

static int by_string(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int keep_object(void *arg, const char *object_id)
{
    struct flags *f = arg;

    if (f->n_keep == f->cap_keep) {
        f->cap_keep = f->cap_keep ? f->cap_keep * 2 : 64;
        f->keep = util_xrealloc(f->keep, f->cap_keep * sizeof(char *));
    }
    f->keep[f->n_keep++] = util_xstrdup(object_id);
    return 0;
}

static int flag_object(void *arg, const char *object_id)
{
    struct flags *f = arg;
    struct cst_err err;

    if (!f->on && f->n_keep && bsearch(&object_id, f->keep, f->n_keep, sizeof(char *), by_string))
        return 0;
    for (size_t d = 0; d < f->n_dests; d++) {
        int64_t until;
        char *key;
        int good;

        if (!dest_locks(f->dests[d]))
            continue;
        good = catalog_copy_locked_until(f->cli->cat, object_id, f->dests[d]->name, &until, &err);
        if (good == 0)
            continue; /* no copy there (yet): prune flags it once it is (hold_flags_catch_up) */
        if (good > 0 && f->since > 0) {
            int64_t at;

            good = catalog_copy_verified_at(f->cli->cat, object_id, f->dests[d]->name, &at, &err);
            if (good == 0 || (good > 0 && at < f->since))
                continue; /* flagged by the hold itself, or by an earlier catch-up */
        }
        key = dest_object_key(object_id);
        if (good < 0 || dest_set_legal_hold(f->dests[d], key, f->on, &err) < 0) {
            if (f->failed++ == 0)
                snprintf(f->error, sizeof(f->error), "%s", err.msg);
        } else {
            f->set++;
        }
        free(key);
    }
    return 0;
}

/* The instant a "before" hold's date stands for, as prune reads it. */
static int64_t hold_before(struct cli *cli, const char *value)
{
    struct sched_zone *zone;
    struct cst_err err;
    int64_t at = 0;
    int y, m, d;

    if (value == NULL || sched_parse_date(value, &y, &m, &d) < 0)
        return INT64_MAX; /* unreadable: everything, rather than guess */
    zone = sched_zone_load(cli->cfg->timezone, &err);
    if (zone == NULL || sched_local_instant(zone, y, m, d, 0, 0, 0, &at) < 0)
        at = INT64_MAX / 1000;
    sched_zone_free(zone);
    return at * 1000;
}

static int keep_hold(void *arg, const struct catalog_hold *h)
{
    struct flags *f = arg;
    struct cst_err err;

    return catalog_hold_each_object(f->cli->cat, h->kind, h->value, hold_before(f->cli, h->value),
                                    keep_object, f, &err);
}

/* Set (on) or clear the flags of what hold id (kind, value) covers. Returns an exit status:
 * the catalog's hold is in force either way (prune obeys it); a flag the bucket did not
 * take is reported. */
static int sync_flags(struct cli *cli, int64_t id, const char *kind, const char *value, int on)
{
    struct flags f;
    struct cst_err err;
    int locks = 0, rc;

    for (size_t d = 0; d < cli->cfg->n_dests; d++)
        locks |= cli->cfg->dests[d].type == CFG_DEST_S3 && cli->cfg->dests[d].object_lock;
    if (!locks)
        return EXIT_OK;
    memset(&f, 0, sizeof(f));
    f.cli = cli;
    f.on = on;
    if (dests_open(cli->cfg, NULL, &f.dests, &f.n_dests, &err) < 0) {
        fprintf(stderr,
                "custodian: hold %lld is in force, but the legal-hold flags were not %s: "
                "%s\n",
                (long long)id, on ? "set" : "cleared", err.msg);
        return EXIT_FAILED;
    }
    rc = on ? 0 : catalog_each_hold(cli->cat, 1, keep_hold, &f, &err);
    if (rc == 0) {
        if (f.n_keep > 1)
            qsort(f.keep, f.n_keep, sizeof(char *), by_string);
        rc = catalog_hold_each_object(cli->cat, kind, value, hold_before(cli, value), flag_object,
                                      &f, &err);
    }
    for (size_t i = 0; i < f.n_keep; i++)
        free(f.keep[i]);
    free(f.keep);
    dests_free(f.dests, f.n_dests);
    if (rc == 0) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "hold");
        json_int(&j, id);
        json_key(&j, "legal_hold");
        json_str(&j, on ? "ON" : "OFF");
        json_key(&j, "copies");
        json_int(&j, f.set);
        json_key(&j, "failed");
        json_int(&j, f.failed);
        json_obj_end(&j);
        rc = catalog_audit(cli->cat, cli_user(), "hold_flags", j.buf, &err);
        json_free(&j);
    }
    if (rc < 0) {
        fprintf(stderr, "custodian: hold %lld: %s\n", (long long)id, err.msg);
        return EXIT_FAILED;
    }
    printf("legal-hold flag %s on %lld copies on Object Lock destinations\n",
           on ? "set" : "cleared", (long long)f.set);
    if (f.failed) {
        fprintf(stderr,
                "custodian: hold %lld is in force (prune obeys it), but the legal-hold flag "
                "could not be %s on %lld copies: %s\n",
                (long long)id, on ? "set" : "cleared", (long long)f.failed, f.error);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

static int catch_up_hold(void *arg, const struct catalog_hold *h)
{
    struct flags *f = arg;
    struct cst_err err;

    if (catalog_hold_each_object(f->cli->cat, h->kind, h->value, hold_before(f->cli, h->value),
                                 flag_object, f, &err) < 0) {
        if (f->failed++ == 0)
            snprintf(f->error, sizeof(f->error), "%s", err.msg);
    }
    return 0;
}

int hold_flags_catch_up(struct cli *cli, struct dest **dests, size_t n_dests, int64_t since,
                        int64_t *set, int64_t *failed, struct cst_err *err)
{
    struct flags f;
    int locks = 0;

    *set = *failed = 0;
    for (size_t d = 0; d < n_dests; d++)
        locks |= dest_locks(dests[d]);
    if (!locks)
        return 0;
    memset(&f, 0, sizeof(f));
    f.cli = cli;
    f.on = 1;
    f.since = since;
    f.dests = dests;
    f.n_dests = n_dests;
    if (catalog_each_hold(cli->cat, 1, catch_up_hold, &f, err) < 0)
        return -1;
    *set = f.set;
    *failed = f.failed;
    if (f.failed)
        cst_err_set(err, "%s", f.error);
    return 0;
}

struct find_hold {
    int64_t id;
    char *kind, *value;
};

static int find_hold(void *arg, const struct catalog_hold *h)
{
    struct find_hold *f = arg;

    if (h->id != f->id)
        return 0;
    f->kind = util_xstrdup(h->kind);
    f->value = h->value ? util_xstrdup(h->value) : NULL;
    return 1;
}

static int cmd_hold_add_exec(struct cli *cli, int argc, char **argv)
{
    static const char usage[] = "usage: custodian hold add (--path PREFIX | --period LABEL | "
                                "--before YYYY-MM-DD | --all) --reason TEXT";
    struct catalog_hold h = {0};
    struct cst_err err;
    char *path = NULL;
    int64_t id;
    int rc, y, m, d;

    for (int i = 1; i < argc; i++) {
        const char *k = NULL;

        if (strcmp(argv[i], "--path") == 0)
            k = "path";
        else if (strcmp(argv[i], "--period") == 0)
            k = "period";
        else if (strcmp(argv[i], "--before") == 0)
            k = "before";
        if (k && i + 1 < argc && h.kind == NULL) {
            h.kind = (char *)k;
            h.value = argv[++i];
        } else if (strcmp(argv[i], "--all") == 0 && h.kind == NULL) {
            h.kind = "all";
        } else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
            h.reason = argv[++i];
        } else {
            return cli_fail(EXIT_USAGE, "%s", usage);
        }
    }
    if (h.kind == NULL || h.reason == NULL || h.reason[0] == '\0')
        return cli_fail(EXIT_USAGE, "%s (a hold needs what it covers and a reason)", usage);
    if (strcmp(h.kind, "before") == 0 && sched_parse_date(h.value, &y, &m, &d) < 0)
        return cli_fail(EXIT_USAGE, "--before %s: not a date (YYYY-MM-DD)", h.value);
    if (strcmp(h.kind, "path") == 0) {
        /* Paths are held as the catalog stores them: raw bytes (the escaped form is
         * accepted, as restore accepts it). */
        size_t n;

        path = pathenc_unescape(h.value, &n);
        if (path == NULL || h.value[0] != '/')
            return free(path), cli_fail(EXIT_USAGE, "--path %s: an absolute path", h.value);
        while (n > 1 && path[n - 1] == '/')
            path[--n] = '\0';
        h.value = path;
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK) {
        free(path);
        return rc;
    }
    h.created_at = util_now_ms();
    h.created_by = (char *)cli_user();
    rc = catalog_begin(cli->cat, &err);
    if (rc == 0)
        rc = catalog_hold_add(cli->cat, &h, &id, &err);
    if (rc == 0)
        rc = audit_hold(cli, "hold_add", id, h.kind, h.value, h.reason, &err);
    rc = rc == 0 ? catalog_commit(cli->cat, &err) : (catalog_rollback(cli->cat), -1);
    if (rc < 0) {
        free(path);
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    }
    printf("hold %lld placed: nothing it covers is deleted until it is released\n", (long long)id);
    rc = sync_flags(cli, id, h.kind, h.value, 1);
    free(path);
    return rc;
}

static int cmd_hold_release_exec(struct cli *cli, int argc, char **argv)
{
    static const char usage[] = "usage: custodian hold release ID --reason TEXT";
    const char *reason = NULL;
    struct cst_err err;
    int64_t id = 0;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            reason = argv[++i];
        else if (id == 0 && atoll(argv[i]) > 0)
            id = atoll(argv[i]);
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (id == 0 || reason == NULL || reason[0] == '\0')
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    rc = catalog_begin(cli->cat, &err);
    if (rc == 0)
        rc = catalog_hold_release(cli->cat, id, cli_user(), reason, util_now_ms(), &err);
    if (rc == 1)
        rc = audit_hold(cli, "hold_release", id, NULL, NULL, reason, &err) == 0 ? 1 : -1;
    if (rc == 1 && catalog_commit(cli->cat, &err) == 0) {
        struct find_hold fh = {id, NULL, NULL};

        printf("hold %lld released\n", (long long)id);
        if (catalog_each_hold(cli->cat, 0, find_hold, &fh, &err) < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
        rc = fh.kind ? sync_flags(cli, id, fh.kind, fh.value, 0) : EXIT_OK;
        free(fh.kind);
        free(fh.value);
        return rc;
    }
    catalog_rollback(cli->cat);
    if (rc == 0)
        return cli_fail(EXIT_FAILED, "there is no active hold %lld (see `custodian hold list`)",
                        (long long)id);
    return cli_fail(EXIT_FAILED, "%s", err.msg);
}

struct list_ctx {
    struct cli *cli;
    struct json j;
    int n;
};

static int print_hold(void *arg, const struct catalog_hold *h)
{
    struct list_ctx *c = arg;
    char *value = h->value ? pathenc_escape(h->value, strlen(h->value)) : NULL;
    char placed[40], released[40];

    c->n++;
    util_format_ms(h->created_at, placed, sizeof(placed));
    if (c->cli->json) {
        json_obj_begin(&c->j);
        json_key(&c->j, "id");
        json_int(&c->j, h->id);
        json_key(&c->j, "kind");
        json_str(&c->j, h->kind);
        json_key(&c->j, "value");
        json_str(&c->j, value);
        json_key(&c->j, "reason");
        json_str(&c->j, h->reason);
        json_key(&c->j, "placed_at");
        json_time(&c->j, h->created_at);
        json_key(&c->j, "placed_by");
        json_str(&c->j, h->created_by);
        json_key(&c->j, "released_at");
        json_time(&c->j, h->released_at);
        json_key(&c->j, "released_by");
        json_str(&c->j, h->released_by);
        json_key(&c->j, "release_reason");
        json_str(&c->j, h->release_reason);
        json_obj_end(&c->j);
    } else {
        printf("%-4lld %-7s %-30s placed %s by %s: %s\n", (long long)h->id, h->kind,
               value ? value : "(everything)", placed, h->created_by, h->reason);
        if (h->released_at) {
            util_format_ms(h->released_at, released, sizeof(released));
            printf("     released %s by %s: %s\n", released, h->released_by, h->release_reason);
        }
    }
    free(value);
    return 0;
}

static int cmd_hold_list_exec(struct cli *cli, int argc, char **argv)
{
    struct list_ctx c = {cli, {0}, 0};
    struct cst_err err;
    int all = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else
            return cli_fail(EXIT_USAGE, "usage: custodian hold list [--all]");
    }
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (cli->json) {
        json_init(&c.j);
        json_arr_begin(&c.j);
    }
    rc = catalog_each_hold(cli->cat, !all, print_hold, &c, &err);
    if (cli->json) {
        json_arr_end(&c.j);
        if (rc == 0)
            json_print(&c.j, stdout);
        json_free(&c.j);
    } else if (rc == 0 && c.n == 0) {
        printf("no %slegal holds\n", all ? "" : "active ");
    }
    return rc < 0 ? cli_fail(EXIT_FAILED, "%s", err.msg) : EXIT_OK;
}

const struct cmd_entry cmd_hold_add_entry = {
    .name = "hold add",
    .usage = "(--path PREFIX | --period LABEL | --before DATE | --all) --reason TEXT",
    .help = "a legal hold: nothing it covers is deleted until it is released",
    .exec = cmd_hold_add_exec,
};

const struct cmd_entry cmd_hold_release_entry = {
    .name = "hold release",
    .usage = "ID --reason TEXT",
    .help = "release a legal hold",
    .exec = cmd_hold_release_exec,
};

const struct cmd_entry cmd_hold_list_entry = {
    .name = "hold list",
    .usage = "[--all]",
    .help = "the legal holds (--all: released ones too)",
    .exec = cmd_hold_list_exec,
};
