/*
 * cmd_restore_snapshot.c - `custodian restore snapshot LABEL [--date
 * YYYYMMDD] --to DIR [--from DEST] [--extract] [--wait]`: a billing-cycle snapshot
 * back from a destination, its signature and ciphertext checked, decrypted
 * and checked again (agent/snapshot_check.c).
 *
 * Without --extract, DIR receives the plain package and its signature,
 * snapshot_<label>_<date>.tar.zst and .tar.zst.sig, as an auditor would
 * want them (`tar --zstd -xf`). With --extract the package is unpacked into
 * DIR, each refs.tsv entry is fetched from its stored object into
 * DIR/files/<path> (its SHA-256 checked), and every member is checked
 * against SHA256SUMS and snapshot.json. Nothing in DIR is ever replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/archive_lib.h"
#include "agent/keys.h"
#include "agent/restore.h"
#include "agent/snapshot.h"
#include "agent/snapshot_check.h"
#include "common/json.h"
#include "common/pathenc.h"
#include "common/util.h"

static const char usage[] = "usage: custodian restore snapshot LABEL [--date YYYYMMDD] --to DIR "
                            "[--from DEST] [--extract] [--wait]";

/* A hidden temporary file in dir, put in place as name by keep(). */
struct out_file {
    char *tmp, *final;
    int fd;
};

static int out_open(struct out_file *o, const char *dir, const char *name, struct cst_err *err)
{
    o->final = util_join(dir, name);
    o->tmp = util_printf("%s/.%s.custodian-restore.XXXXXX", dir, name);
    o->fd = -1;
    if (access(o->final, F_OK) == 0)
        return cst_err_set(err, "%s exists; restore elsewhere with --to", o->final);
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0)
        return cst_err_sys(err, "cannot create a file in %s", dir);
    return 0;
}

static int out_keep(struct out_file *o, struct cst_err *err)
{
    if (fsync(o->fd) < 0)
        return cst_err_sys(err, "cannot write %s", o->tmp);
    if (renameat2(AT_FDCWD, o->tmp, AT_FDCWD, o->final, RENAME_NOREPLACE) < 0)
        return cst_err_sys(err, "cannot put %s in place", o->final);
    free(o->tmp);
    o->tmp = NULL;
    return 0;
}

static void out_close(struct out_file *o)
{
    if (o->fd >= 0)
        close(o->fd);
    if (o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    free(o->final);
    memset(o, 0, sizeof(*o));
    o->fd = -1;
}

/* The refs.tsv entries, each from its stored object (checked against its SHA-256). */
static int resolve_refs(struct restorer *r, const struct snapshot_report *rep, const char *dir,
                        struct cst_err *err)
{
    struct restore_root root;
    int failed = 0;

    /* Everything is placed beneath the extraction folder, never through a symlink. */
    if (restore_root_open(&root, dir, 0, err) < 0)
        return -1;
    for (size_t i = 0; i < rep->n_refs; i++) {
        const struct snapshot_ref *ref = &rep->ref_list[i];
        struct catalog_version v;
        char *rel = util_printf("files/%s", ref->path);
        char *shown = pathenc_escape(ref->path, strlen(ref->path));

        memset(&v, 0, sizeof(v));
        v.id = ref->version;
        v.path = ref->path;
        v.kind = CATALOG_FILE;
        v.size = ref->size;
        memcpy(v.sha256, ref->sha256, 32);
        snprintf(v.object_id, sizeof(v.object_id), "%s", ref->object_id);
        if (restorer_to_path(r, &v, &root, rel, 0, err) < 0) {
            fprintf(stderr, "custodian: refs.tsv %s: %s\n", shown, err->msg);
            failed++;
        }
        free(shown);
        free(rel);
    }
    restore_root_close(&root);
    if (failed)
        return cst_err_set(err, "%d of the %zu refs.tsv entries could not be restored", failed,
                           rep->n_refs);
    return 0;
}

static int cmd_restore_snapshot_exec(struct cli *cli, int argc, char **argv)
{
    const char *label = NULL, *date = NULL, *to = NULL, *from = NULL;
    struct catalog_snapshot s;
    struct snapshot_report rep;
    struct out_file pkg = {NULL, NULL, -1}, sig = {NULL, NULL, -1};
    unsigned char sign_pk[32], pk[32];
    struct restorer *r = NULL;
    struct dest **dests;
    struct cst_err err;
    char *name = NULL, *sig_text = NULL;
    size_t nd;
    int rc, extract = 0, sealed = -1, done = 0, wait = 0, thaw_wanted = 0, thaw_failed = 0;

    memset(&s, 0, sizeof(s));
    memset(&rep, 0, sizeof(rep));
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--date") == 0 && i + 1 < argc)
            date = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc)
            from = argv[++i];
        else if (strcmp(argv[i], "--extract") == 0)
            extract = 1;
        else if (strcmp(argv[i], "--wait") == 0)
            wait = 1;
        else if (label == NULL && argv[i][0] != '-')
            label = argv[i];
        else
            return cli_fail(EXIT_USAGE, "%s", usage);
    }
    if (label == NULL || to == NULL)
        return cli_fail(EXIT_USAGE, "%s", usage);
    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    /* The package is read with libarchive: a missing library fails here, before anything is
     * fetched, written or recorded. */
    if (archive_lib_load(&err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (catalog_snapshot_by_label(cli->cat, label, date, &s) != 1)
        return cli_fail(EXIT_FAILED,
                        "no snapshot of %s%s%s is recorded (see custodian snapshot "
                        "list)",
                        label, date ? " made on " : "", date ? date : "");
    r = restorer_new(cli, from, 1, &rc);
    if (r == NULL)
        goto out;
    restorer_set_wait(r, wait);
    if (keys_load_signing_pk(cli->cfg->signing_key, sign_pk, &err) < 0 ||
        keys_load_public(cli->cfg->public_key, pk, &err) < 0) {
        rc = cli_fail(EXIT_USAGE, "%s", err.msg);
        goto out;
    }
    if (util_mkdir_p(to, 0700, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    name = snapshot_package_name(s.label, s.close_date);
    if (out_open(&pkg, to, name, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    {
        char *tmp = util_printf("%s/.sealed.custodian-restore.XXXXXX", to);

        sealed = mkostemp(tmp, O_CLOEXEC);
        if (sealed >= 0)
            unlink(tmp);
        free(tmp);
        if (sealed < 0) {
            rc = cli_fail(EXIT_FAILED, "cannot create a temporary file in %s: %s", to,
                          strerror(errno));
            goto out;
        }
    }
    dests = restorer_dests(r, &nd);
    /* A copy that needs no thaw first; an archived one (thawed, waited for with --wait)
     * only when none reads. */
    for (int pass = 0; pass < 2 && !done; pass++) {
        for (size_t d = 0; d < nd && !done; d++) {
            struct dest_stat st;
            int needs;

            if ((from && strcmp(from, dests[d]->name) != 0) ||
                catalog_snapshot_has_copy(cli->cat, s.id, dests[d]->name) != 1)
                continue;
            needs = dest_needs_thaw(dests[d], s.remote_key, &st, &err);
            if (pass == 0 && needs == 1) {
                fprintf(stderr,
                        "custodian: the package on %s is in the archive class %s; a copy that "
                        "needs no thaw is looked for first\n",
                        dests[d]->name, st.storage_class);
                thaw_wanted = 1;
                continue;
            }
            if (pass == 1 && needs != 1)
                continue;
            if (pass == 1 && restorer_thaw(r, dests[d], s.remote_key, s.remote_key, &err) < 0) {
                thaw_failed = 1;
                break;
            }
            free(sig_text);
            sig_text = NULL;
            if (snapshot_fetch(dests[d], &s, sign_pk, sealed, &sig_text, &err) == 0 &&
                snapshot_decrypt(sealed, pkg.fd, pk, restorer_secret_key(r), &s, &err) == 0)
                done = restorer_thaw_done(r, dests[d], s.remote_key, &err) == 0;
            else
                fprintf(stderr, "custodian: destination %s: %s%s\n", dests[d]->name, err.msg,
                        from ? "" : "; trying the next destination");
        }
        if (!thaw_wanted)
            break;
    }
    close(sealed);
    if (!done && thaw_failed) {
        rc = cli_fail(EXIT_FAILED, "snapshot %s of %s: %s", s.label, s.close_date, err.msg);
        goto out;
    }
    if (!done) {
        rc = cli_fail(EXIT_FAILED, "snapshot %s of %s could not be restored from any destination",
                      s.label, s.close_date);
        goto out;
    }
    if (extract) {
        if (snapshot_check_members(pkg.fd, to, &rep, &err) < 0 ||
            resolve_refs(r, &rep, to, &err) < 0) {
            rc = cli_fail(EXIT_FAILED, "%s", err.msg);
            goto out;
        }
        printf("unpacked %s into %s: %lld members checked against SHA256SUMS and snapshot.json, "
               "%zu refs.tsv files restored from their stored objects, %lld missing%s\n",
               name, to, (long long)rep.members, rep.n_refs, (long long)rep.missing,
               rep.complete ? "" : " (INCOMPLETE: see missing.txt)");
    } else {
        char *sig_name = util_printf("%s.sig", name);

        if (out_keep(&pkg, &err) < 0 || out_open(&sig, to, sig_name, &err) < 0 ||
            util_write_all(sig.fd, sig_text, strlen(sig_text)) < 0 || out_keep(&sig, &err) < 0) {
            free(sig_name);
            rc = cli_fail(EXIT_FAILED, "%s", err.msg);
            goto out;
        }
        printf("restored %s/%s (%lld bytes, signature checked) and %s\n", to, name,
               (long long)s.plain_size, sig_name);
        free(sig_name);
    }
    {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "label");
        json_str(&j, s.label);
        json_key(&j, "close_date");
        json_str(&j, s.close_date);
        json_key(&j, "to");
        json_str(&j, to);
        json_key(&j, "extract");
        json_bool(&j, extract);
        json_key(&j, "outcome");
        json_str(&j, "ok");
        json_obj_end(&j);
        catalog_audit(cli->cat, "operator", "restore_snapshot", j.buf, &err);
        json_free(&j);
    }
    rc = EXIT_OK;
out:
    out_close(&pkg);
    out_close(&sig);
    snapshot_report_free(&rep);
    restorer_free(r);
    catalog_snapshot_clear(&s);
    free(sig_text);
    free(name);
    return rc;
}

const struct cmd_entry cmd_restore_snapshot_entry = {
    .name = "restore snapshot",
    .usage = "LABEL [--date YYYYMMDD] --to DIR [--from DEST] [--extract] [--wait]",
    .help = "a billing-cycle snapshot, as its .tar.zst or unpacked",
    .exec = cmd_restore_snapshot_exec,
};
