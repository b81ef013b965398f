/*
 * cmd_snapshot_list.c - `custodian snapshot list [--json]`: every
 * billing-cycle snapshot in the catalog: label, close date, what it holds,
 * complete or not, its copies per destination (storage class, retain-until)
 * and the plan's per-cycle checklist.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "common/json.h"
#include "common/util.h"

struct listing {
    struct cli *cli;
    struct json j;
    int64_t n;
};

static int copy_json(void *arg, const char *dest, const char *cls, int64_t retain_until,
                     int64_t verified_at)
{
    struct json *j = arg;

    json_obj_begin(j);
    json_key(j, "dest");
    json_str(j, dest);
    json_key(j, "storage_class");
    json_str(j, cls);
    json_key(j, "retain_until");
    json_time(j, retain_until);
    json_key(j, "verified_at");
    json_time(j, verified_at);
    json_obj_end(j);
    return 0;
}

static int copy_text(void *arg, const char *dest, const char *cls, int64_t retain_until,
                     int64_t verified_at)
{
    char when[40];

    (void)arg;
    (void)verified_at;
    printf("    copy on %s%s%s", dest, cls ? ", class " : "", cls ? cls : "");
    if (retain_until > 0) {
        util_format_ms(retain_until, when, sizeof(when));
        printf(", locked until %s", when);
    }
    printf("\n");
    return 0;
}

static void checklist_json(struct json *j, const struct catalog_snapshot *s)
{
    json_key(j, "checklist");
    json_obj_begin(j);
    json_key(j, "created");
    json_time(j, s->created_at);
    json_key(j, "uploaded_to_archive");
    json_time(j, s->archived_at);
    json_key(j, "metadata_verified");
    json_time(j, s->verified_at);
    json_key(j, "verified_how");
    json_str(j, s->verify_detail);
    json_obj_end(j);
}

void cmd_snapshot_json(struct json *j, struct catalog *cat, const struct catalog_snapshot *s);
void cmd_snapshot_json(struct json *j, struct catalog *cat, const struct catalog_snapshot *s)
{
    struct cst_err err;
    char hex[65];

    json_obj_begin(j);
    json_key(j, "label");
    json_str(j, s->label);
    json_key(j, "date");
    json_str(j, s->close_date);
    json_key(j, "period_key");
    json_raw(j, s->period_key);
    json_key(j, "closed_at");
    json_time(j, s->closed_at);
    json_key(j, "key");
    json_str(j, s->remote_key);
    json_key(j, "complete");
    json_bool(j, s->complete);
    json_key(j, "invoices");
    json_int(j, s->invoices);
    json_key(j, "timesheets");
    json_int(j, s->timesheets);
    json_key(j, "files");
    json_int(j, s->files);
    json_key(j, "refs");
    json_int(j, s->refs);
    json_key(j, "missing");
    json_int(j, s->missing);
    json_key(j, "file_bytes");
    json_int(j, s->file_bytes);
    json_key(j, "bytes");
    json_int(j, s->plain_size);
    util_hex(s->plain_sha256, 32, hex);
    json_key(j, "package_sha256");
    json_str(j, hex);
    json_key(j, "retain_until");
    json_time(j, s->retain_until);
    json_key(j, "copies");
    json_arr_begin(j);
    catalog_each_snapshot_copy(cat, s->id, copy_json, j, &err);
    json_arr_end(j);
    json_key(j, "copy_error");
    json_str(j, s->last_error);
    checklist_json(j, s);
    json_obj_end(j);
}

static void mark(const char *what, int64_t at, const char *how)
{
    char when[40];

    if (at <= 0) {
        printf("  [ ] %s\n", what);
        return;
    }
    util_format_ms(at, when, sizeof(when));
    printf("  [x] %s %s%s%s%s\n", what, when, how ? " (" : "", how ? how : "", how ? ")" : "");
}

static int each(void *arg, const struct catalog_snapshot *s)
{
    struct listing *l = arg;
    struct cst_err err;
    char retain[40];

    l->n++;
    if (l->cli->json) {
        cmd_snapshot_json(&l->j, l->cli->cat, s);
        return 0;
    }
    util_format_ms(s->retain_until, retain, sizeof(retain));
    printf("%s %s: %s, %lld invoices, %lld timesheets, %lld files (%lld bytes) in the package, "
           "%lld by reference, %lld missing; %lld bytes; keep until %s\n",
           s->label, s->close_date, s->complete ? "complete" : "INCOMPLETE", (long long)s->invoices,
           (long long)s->timesheets, (long long)s->files, (long long)s->file_bytes,
           (long long)s->refs, (long long)s->missing, (long long)s->plain_size, retain);
    printf("    %s\n", s->remote_key);
    catalog_each_snapshot_copy(l->cli->cat, s->id, copy_text, l, &err);
    for (size_t d = 0; d < l->cli->cfg->n_dests; d++)
        if (catalog_snapshot_has_copy(l->cli->cat, s->id, l->cli->cfg->dests[d].name) != 1)
            printf("    NOT on %s yet%s%s\n", l->cli->cfg->dests[d].name, s->last_error ? ": " : "",
                   s->last_error ? s->last_error : "");
    mark("snapshot package created", s->created_at, NULL);
    mark("uploaded to archive storage", s->archived_at, NULL);
    mark("restore test metadata verified", s->verified_at, s->verify_detail);
    return 0;
}

static int cmd_snapshot_list_exec(struct cli *cli, int argc, char **argv)
{
    struct listing l = {cli, {0}, 0};
    struct cst_err err;
    int rc;

    (void)argv;
    if (argc != 1)
        return cli_fail(EXIT_USAGE, "usage: custodian snapshot list [--json]");
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 1)) != EXIT_OK)
        return rc;
    if (cli->json) {
        json_init(&l.j);
        json_arr_begin(&l.j);
    }
    rc = catalog_each_snapshot(cli->cat, each, &l, &err);
    if (cli->json) {
        json_arr_end(&l.j);
        if (rc == 0)
            json_print(&l.j, stdout);
        json_free(&l.j);
    } else if (rc == 0 && l.n == 0) {
        printf("no billing-cycle snapshots yet\n");
    }
    return rc < 0 ? cli_fail(EXIT_FAILED, "%s", err.msg) : EXIT_OK;
}

const struct cmd_entry cmd_snapshot_list_entry = {
    .name = "snapshot list",
    .usage = "",
    .help = "the billing-cycle snapshots, their copies and checklist",
    .exec = cmd_snapshot_list_exec,
};
