/*
 * daily.c - the daily protection run (see daily.h).
 *
 * Steps, each recorded, none skipping the others when it fails:
 *   1. files   make sure every live file has a shipped copy (scan, then let
 *              the agent drain, or drain here when no agent runs), then
 *              write the restore point: every live file and its object
 *   2. db      mongo_dump() (or the operator's dump_command, whose output is
 *              checked as mongorestore would) streamed into a container
 *   3. catalog SQLite's online backup of the catalog, sealed
 *   4. ship    every artifact to every destination, verified there
 *   5. sign    the manifests (sha256sum text, JSON), signed with Ed25519,
 *              shipped and verified too
 * The run is ok only if all of it is; a failed run is retried by the agent.
 */
#include "daily.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/dests.h"
#include "agent/drain.h"
#include "agent/keys.h"
#include "agent/mongo_archive.h"
#include "agent/mongo_dump.h"
#include "agent/reconcile.h"
#include "common/json.h"
#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"
#include "shipper/container.h"
#include "shipper/curl_ev.h"
#include "shipper/workpool.h"

#define MAX_ARTIFACTS 6

struct artifact {
    char kind[24];
    char *remote_key;
    char *spool_path;
    int sealed;
    unsigned char plain_sha256[32], stored_sha256[32];
    uint64_t plain_size, stored_size;
    unsigned ok_mask; /* destinations holding a verified copy */
};

struct run {
    struct cli *cli;
    const char *date;
    unsigned char public_key[32];
    char *spool;
    struct artifact arts[MAX_ARTIFACTS];
    size_t n_arts;
    struct json manifest;
    int64_t started;
};

char *daily_artifact_key(const char *kind, const char *date)
{
    char y[5], m[3], d[3];

    snprintf(y, sizeof(y), "%.4s", date);
    snprintf(m, sizeof(m), "%.2s", date + 5);
    snprintf(d, sizeof(d), "%.2s", date + 8);
    if (strcmp(kind, "db") == 0)
        return util_printf("backups/daily/db/%s/%s/%s/mongodb-%s.archive.cst", y, m, d, date);
    if (strcmp(kind, "files") == 0)
        return util_printf("backups/daily/files/%s/%s/%s/restore-point-%s.tsv.cst", y, m, d, date);
    if (strcmp(kind, "catalog") == 0)
        return util_printf("backups/daily/catalog/%s/%s/%s/catalog-%s.db.cst", y, m, d, date);
    if (strcmp(kind, "manifest-sha256") == 0)
        return util_printf("backups/manifests/%s.sha256", date);
    if (strcmp(kind, "manifest-json") == 0)
        return util_printf("backups/manifests/%s.json", date);
    return util_printf("backups/manifests/%s.sig", date);
}

/* --- producing artifacts into the spool --- */

struct sealing {
    struct crypt_sealer *sealer;
    int fd;
    struct artifact *a;
    struct cst_err *err;
    int failed;
};

static struct artifact *new_artifact(struct run *r, const char *kind, int sealed)
{
    struct artifact *a = &r->arts[r->n_arts++];

    memset(a, 0, sizeof(*a));
    snprintf(a->kind, sizeof(a->kind), "%s", kind);
    a->remote_key = daily_artifact_key(kind, r->date);
    a->sealed = sealed;
    a->spool_path = util_printf("%s/daily-%s-%s", r->spool, r->date, kind);
    return a;
}

static void drop_artifact(struct run *r)
{
    struct artifact *a = &r->arts[--r->n_arts];

    unlink(a->spool_path);
    free(a->spool_path);
    free(a->remote_key);
}

static int sealing_begin(struct run *r, struct sealing *s, struct artifact *a, struct cst_err *err)
{
    memset(s, 0, sizeof(*s));
    s->a = a;
    s->err = err;
    s->fd = open(a->spool_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0)
        return cst_err_sys(err, "cannot create %s", a->spool_path);
    s->sealer = crypt_sealer_new(r->public_key, CRYPT_LEVEL_AUTO, s->fd, err);
    if (s->sealer == NULL) {
        close(s->fd);
        return -1;
    }
    return 0;
}

/* marchive_write_fn and general sink: into the sealer. */
static int sealing_write(void *arg, const void *buf, size_t len)
{
    struct sealing *s = arg;

    if (s->failed)
        return -1;
    if (crypt_sealer_write(s->sealer, buf, len, s->err) < 0) {
        s->failed = 1;
        return -1;
    }
    return 0;
}

static int sealing_end(struct sealing *s, int ok)
{
    struct crypt_sealed_info info;
    int rc = -1;

    if (ok && !s->failed && crypt_sealer_finish(s->sealer, &info, s->err) == 0) {
        s->a->plain_size = info.plain_size;
        s->a->stored_size = info.stored_size;
        memcpy(s->a->plain_sha256, info.plain_sha256, 32);
        memcpy(s->a->stored_sha256, info.stored_sha256, 32);
        rc = 0;
    }
    crypt_sealer_free(s->sealer);
    if (close(s->fd) < 0 && rc == 0)
        rc = cst_err_sys(s->err, "cannot write %s", s->a->spool_path);
    return rc;
}

static void sha256(const void *buf, size_t len, unsigned char out[32])
{
    unsigned int n = 32;

    EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

/* A plain (unsealed) artifact: the manifests. */
static int write_plain(struct artifact *a, const char *text, size_t len, struct cst_err *err)
{
    int fd = open(a->spool_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0 || util_write_all(fd, text, len) < 0) {
        cst_err_sys(err, "cannot write %s", a->spool_path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (close(fd) < 0)
        return cst_err_sys(err, "cannot write %s", a->spool_path);
    sha256(text, len, a->plain_sha256);
    memcpy(a->stored_sha256, a->plain_sha256, 32);
    a->plain_size = a->stored_size = len;
    return 0;
}

/* --- step 1: files --- */

struct point {
    struct sealing *s;
    int64_t files, bytes;
};

static int point_line(void *arg, const struct catalog_version *v)
{
    struct point *p = arg;
    char sha[65], *shown = pathenc_escape(v->path, strlen(v->path)), *line;
    int rc;

    if (v->kind == CATALOG_FILE) {
        util_hex(v->sha256, 32, sha);
        line = util_printf("file\t%s\t%lld\t%lld\t%s\t%s\n", sha, (long long)v->size,
                           (long long)v->mtime_ns, v->object_id, shown);
    } else {
        char *target = pathenc_escape(v->link_target, strlen(v->link_target));
        line =
            util_printf("symlink\t-\t0\t%lld\t-\t%s\t%s\n", (long long)v->mtime_ns, shown, target);
        free(target);
    }
    rc = sealing_write(p->s, line, strlen(line));
    p->files++;
    p->bytes += v->size;
    free(line);
    free(shown);
    return rc;
}

static void step_files(struct run *r, char **status)
{
    struct artifact *a = new_artifact(r, "files", 1);
    struct sealing s;
    struct point p = {&s, 0, 0};
    struct cst_err err;
    char *drained = NULL;
    char *header;
    int complete = files_drain(r->cli, &drained);
    int64_t at = util_now_ms();

    if (complete < 0 || sealing_begin(r, &s, a, &err) < 0) {
        *status = drained ? drained : util_printf("failed: %s", err.msg);
        if (drained && complete >= 0)
            free(drained);
        drop_artifact(r);
        return;
    }
    header = util_printf("custodian restore-point v1\tdate=%s\tat=%lld\n", r->date, (long long)at);
    sealing_write(&s, header, strlen(header));
    free(header);
    if (catalog_each_version_at(r->cli->cat, "", at, point_line, &p, &err) < 0 ||
        sealing_end(&s, 1) < 0) {
        *status = util_printf("failed: %s", err.msg);
        free(drained);
        drop_artifact(r);
        return;
    }
    *status = complete ? util_printf("ok: %lld files", (long long)p.files) : drained;
    if (complete)
        free(drained);
    json_key(&r->manifest, "files");
    json_obj_begin(&r->manifest);
    json_key(&r->manifest, "complete");
    json_bool(&r->manifest, complete == 1);
    json_key(&r->manifest, "status");
    json_str(&r->manifest, *status);
    json_key(&r->manifest, "files");
    json_int(&r->manifest, p.files);
    json_key(&r->manifest, "bytes");
    json_int(&r->manifest, p.bytes);
    json_obj_end(&r->manifest);
}

/* --- step 2: db --- */

struct command_source {
    int fd;
    struct sealing *s;
};

static ssize_t command_read(void *arg, void *buf, size_t len)
{
    struct command_source *c = arg;
    ssize_t n;

    do
        n = read(c->fd, buf, len);
    while (n < 0 && errno == EINTR);
    /* What mongorestore would accept is exactly what is sealed. */
    if (n > 0 && sealing_write(c->s, buf, (size_t)n) < 0)
        return -1;
    return n;
}

static void tail_of(const char *path, char *out, size_t outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t size;
    ssize_t n = 0;

    out[0] = '\0';
    if (fd < 0)
        return;
    size = lseek(fd, 0, SEEK_END);
    if (size > (off_t)outlen - 1)
        lseek(fd, size - (off_t)outlen + 1, SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    n = util_read_full(fd, out, outlen - 1);
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
}

/* The operator's command writes the archive to stdout: seal it and check it parses. */
static int run_dump_command(struct run *r, struct sealing *s, struct marchive_stats *st,
                            struct cst_err *err)
{
    const char *cmd = r->cli->cfg->dump_command;
    char *errfile = util_printf("%s/daily-%s-dump.stderr", r->spool, r->date);
    int pipefd[2], errfd, status, rc;
    char invalid[CST_ERR_SIZE] = "";
    struct command_source src;
    pid_t pid;

    errfd = open(errfile, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (errfd < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
        cst_err_sys(err, "cannot start dump_command");
        free(errfile);
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], STDOUT_FILENO);
        dup2(errfd, STDERR_FILENO);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    close(pipefd[1]);
    close(errfd);
    if (pid < 0) {
        close(pipefd[0]);
        free(errfile);
        return cst_err_sys(err, "cannot start dump_command");
    }
    src.fd = pipefd[0];
    src.s = s;
    rc = marchive_validate(command_read, &src, st, err);
    if (rc < 0)
        snprintf(invalid, sizeof(invalid), "%s", err->msg);
    close(pipefd[0]);
    if (rc < 0) {
        /* A command that failed on its own explains more than the broken stream it
         * left: give it a moment to exit; one still writing is stopped. */
        int64_t until = util_mono_ms() + 2000;
        pid_t done;

        while ((done = waitpid(pid, &status, WNOHANG)) == 0 && util_mono_ms() < until)
            usleep(20 * 1000);
        if (done == 0) {
            kill(pid, SIGTERM);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            cst_err_wrap(err, "the output of dump_command is not a mongodump archive");
            unlink(errfile);
            free(errfile);
            return -1;
        }
    } else {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char tail[512];

        tail_of(errfile, tail, sizeof(tail));
        cst_err_set(err, "dump_command `%s` %s %d: %s%s%s", cmd,
                    WIFEXITED(status) ? "exited with status" : "was killed by signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                    tail[0] ? tail : "(nothing on stderr)",
                    rc < 0 ? "; and its output is not a mongodump archive: " : "",
                    rc < 0 ? invalid : "");
        rc = -1;
    } else if (rc < 0) {
        cst_err_wrap(err, "the output of dump_command is not a mongodump archive");
    }
    unlink(errfile);
    free(errfile);
    return rc;
}

static void step_db(struct run *r, char **status)
{
    const struct cfg *cfg = r->cli->cfg;
    struct artifact *a;
    struct sealing s;
    struct cst_err err;
    int64_t t0 = util_mono_ms();
    int rc;

    json_key(&r->manifest, "db");
    json_obj_begin(&r->manifest);
    if (cfg->mongodb_uri == NULL && cfg->dump_command == NULL) {
        *status = util_xstrdup("not configured");
        json_key(&r->manifest, "status");
        json_str(&r->manifest, *status);
        json_obj_end(&r->manifest);
        return;
    }
    a = new_artifact(r, "db", 1);
    if (sealing_begin(r, &s, a, &err) < 0) {
        rc = -1;
    } else if (cfg->dump_command) {
        struct marchive_stats st;

        memset(&st, 0, sizeof(st));
        rc = run_dump_command(r, &s, &st, &err);
        rc = sealing_end(&s, rc == 0) < 0 ? -1 : rc;
        if (rc == 0) {
            json_key(&r->manifest, "source");
            json_str(&r->manifest, "dump_command");
            json_key(&r->manifest, "server_version");
            json_str(&r->manifest, st.server_version);
            json_key(&r->manifest, "point_in_time");
            json_str(&r->manifest, "as the command made it");
            json_key(&r->manifest, "collections");
            json_obj_begin(&r->manifest);
            for (size_t i = 0; i < st.n_namespaces; i++) {
                char *ns = util_printf("%s.%s", st.namespaces[i].db, st.namespaces[i].coll);
                json_key(&r->manifest, ns);
                json_int(&r->manifest, (int64_t)st.namespaces[i].docs);
                free(ns);
            }
            json_obj_end(&r->manifest);
            json_key(&r->manifest, "documents");
            json_int(&r->manifest, (int64_t)st.total_docs);
        }
        marchive_stats_free(&st);
    } else {
        struct mongo_dump_stats st;

        memset(&st, 0, sizeof(st));
        rc = mongo_dump(cfg->mongodb_uri, NULL, sealing_write, &s, &st, &err);
        rc = sealing_end(&s, rc == 0) < 0 ? -1 : rc;
        if (rc == 0) {
            json_key(&r->manifest, "source");
            json_str(&r->manifest, "native");
            json_key(&r->manifest, "server_version");
            json_str(&r->manifest, st.server_version);
            json_key(&r->manifest, "point_in_time");
            json_str(&r->manifest, st.point_in_time ? "snapshot (replica set)"
                                                    : "no: standalone server, dumped as "
                                                      "mongodump does, collection by collection");
            json_key(&r->manifest, "collections");
            json_obj_begin(&r->manifest);
            for (size_t i = 0; i < st.n_collections; i++) {
                char *ns = util_printf("%s.%s", st.collections[i].db, st.collections[i].name);
                json_key(&r->manifest, ns);
                json_int(&r->manifest, (int64_t)st.collections[i].docs);
                free(ns);
            }
            json_obj_end(&r->manifest);
            json_key(&r->manifest, "documents");
            json_int(&r->manifest, (int64_t)st.total_docs);
        }
        mongo_dump_stats_free(&st);
    }
    if (rc < 0) {
        *status = util_printf("failed: %s", err.msg);
        drop_artifact(r);
    } else {
        *status = util_xstrdup("ok");
    }
    json_key(&r->manifest, "status");
    json_str(&r->manifest, *status);
    json_key(&r->manifest, "ms");
    json_int(&r->manifest, util_mono_ms() - t0);
    json_obj_end(&r->manifest);
}

/* --- step 3: catalog --- */

static int copy_file_into(struct sealing *s, const char *path, struct cst_err *err)
{
    char buf[1 << 16];
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return cst_err_sys(err, "cannot read %s", path);
    for (;;) {
        ssize_t n = util_read_full(fd, buf, sizeof(buf));

        if (n < 0) {
            close(fd);
            return cst_err_sys(err, "cannot read %s", path);
        }
        if (n == 0)
            break;
        if (sealing_write(s, buf, (size_t)n) < 0) {
            close(fd);
            return -1;
        }
    }
    close(fd);
    return 0;
}

static void step_catalog(struct run *r, char **status)
{
    struct artifact *a = new_artifact(r, "catalog", 1);
    char *copy = util_printf("%s/daily-%s-catalog.db", r->spool, r->date);
    struct sealing s;
    struct cst_err err;
    int rc;

    unlink(copy);
    rc = catalog_backup_to(r->cli->cat, copy, &err);
    if (rc == 0 && sealing_begin(r, &s, a, &err) == 0) {
        rc = copy_file_into(&s, copy, &err);
        rc = sealing_end(&s, rc == 0) < 0 ? -1 : rc;
    } else {
        rc = -1;
    }
    unlink(copy);
    free(copy);
    if (rc < 0) {
        *status = util_printf("failed: %s", err.msg);
        drop_artifact(r);
    } else {
        *status = util_xstrdup("ok");
    }
}

/* --- step 4: ship to every destination --- */

/* Put arts[first..n) on every destination; record verified copies. Returns how many
 * (artifact, destination) pairs failed. */
static int ship(struct run *r, size_t first, char **errors)
{
    size_t n = r->n_arts - first, nd = r->cli->cfg->n_dests;
    struct dests_item *items = util_xcalloc(n + 1, sizeof(*items));
    unsigned char *ok = util_xcalloc(n * nd + 1, 1);
    int failed;

    for (size_t i = 0; i < n; i++) {
        struct artifact *a = &r->arts[first + i];

        items[i].spool_path = a->spool_path;
        items[i].remote_key = a->remote_key;
        items[i].stored_size = a->stored_size;
        memcpy(items[i].stored_sha256, a->stored_sha256, 32);
        items[i].plain_size = a->plain_size;
        memcpy(items[i].plain_sha256, a->plain_sha256, 32);
    }
    failed = dests_put_blocking(r->cli->cfg, items, n, ~0u, NULL, ok, errors);
    for (size_t d = 0; d < nd; d++)
        for (size_t i = 0; i < n; i++)
            if (ok[d * n + i])
                r->arts[first + i].ok_mask |= 1u << d;
    free(items);
    free(ok);
    return failed;
}

/* --- step 5: manifests --- */

static char *sha256sum_text(struct run *r, size_t n)
{
    char *text = util_xstrdup(""), hex[65];

    for (size_t i = 0; i < n; i++) {
        char *more;

        util_hex(r->arts[i].stored_sha256, 32, hex);
        more = util_printf("%s%s  %s\n", text, hex, r->arts[i].remote_key);
        free(text);
        text = more;
    }
    return text;
}

/* The signed message: SHA-256 of the .sha256 text, then of the .json text. */
static void signed_message(const char *a, size_t alen, const char *b, size_t blen,
                           unsigned char msg[64])
{
    sha256(a, alen, msg);
    sha256(b, blen, msg + 32);
}

int daily_manifest_verify(const char *sha256_text, size_t sha256_len, const char *json_text,
                          size_t json_len, const char *sig_text, const unsigned char pk[32],
                          struct cst_err *err)
{
    unsigned char msg[64], sig[64];
    const char *line = strstr(sig_text, "\nsignature: ");

    if (line == NULL || strlen(line + 12) < 128)
        return cst_err_set(err, "the signature file is malformed");
    char hex[129];
    memcpy(hex, line + 12, 128);
    hex[128] = '\0';
    if (util_unhex(hex, sig, 64) < 0)
        return cst_err_set(err, "the signature file is malformed");
    signed_message(sha256_text, sha256_len, json_text, json_len, msg);
    if (crypto_sign_verify_detached(sig, msg, sizeof(msg), pk) != 0)
        return cst_err_set(err, "manifest signature does not verify: the manifest or its "
                                "signature was altered, or signed with another key");
    return 0;
}

static int step_manifests(struct run *r, size_t n_data, struct cst_err *err)
{
    unsigned char *sk = sodium_malloc(64), msg[64], sig[64];
    char *sums = sha256sum_text(r, n_data), sig_hex[129], *sig_text;
    struct artifact *a;
    int rc = -1;

    json_key(&r->manifest, "artifacts");
    json_arr_begin(&r->manifest);
    for (size_t i = 0; i < n_data; i++) {
        char hex[65];

        json_obj_begin(&r->manifest);
        json_key(&r->manifest, "kind");
        json_str(&r->manifest, r->arts[i].kind);
        json_key(&r->manifest, "key");
        json_str(&r->manifest, r->arts[i].remote_key);
        util_hex(r->arts[i].plain_sha256, 32, hex);
        json_key(&r->manifest, "plain_sha256");
        json_str(&r->manifest, hex);
        json_key(&r->manifest, "plain_size");
        json_int(&r->manifest, (int64_t)r->arts[i].plain_size);
        util_hex(r->arts[i].stored_sha256, 32, hex);
        json_key(&r->manifest, "stored_sha256");
        json_str(&r->manifest, hex);
        json_key(&r->manifest, "stored_size");
        json_int(&r->manifest, (int64_t)r->arts[i].stored_size);
        json_obj_end(&r->manifest);
    }
    json_arr_end(&r->manifest);
    json_key(&r->manifest, "finished_at");
    json_time(&r->manifest, util_now_ms());
    json_obj_end(&r->manifest);

    if (sk == NULL ||
        keys_load_secret(r->cli->cfg->signing_key, "signing-secret-key", sk, 64, err) < 0)
        goto out;
    signed_message(sums, strlen(sums), r->manifest.buf, r->manifest.len, msg);
    crypto_sign_detached(sig, NULL, msg, sizeof(msg), sk);
    util_hex(sig, 64, sig_hex);
    sig_text = util_printf("custodian manifest-signature v1\n"
                           "signs: Ed25519 over SHA-256(%s.sha256) || SHA-256(%s.json)\n"
                           "signature: %s\n",
                           r->date, r->date, sig_hex);
    a = new_artifact(r, "manifest-sha256", 0);
    rc = write_plain(a, sums, strlen(sums), err);
    a = new_artifact(r, "manifest-json", 0);
    if (rc == 0)
        rc = write_plain(a, r->manifest.buf, r->manifest.len, err);
    a = new_artifact(r, "manifest-sig", 0);
    if (rc == 0)
        rc = write_plain(a, sig_text, strlen(sig_text), err);
    free(sig_text);
out:
    if (sk)
        sodium_free(sk);
    free(sums);
    return rc;
}

/* --- the run --- */

static int record_artifacts(struct run *r, size_t n_dests, struct cst_err *err)
{
    int64_t now = util_now_ms();

    for (size_t i = 0; i < r->n_arts; i++) {
        struct artifact *a = &r->arts[i];
        struct catalog_artifact ca;

        memset(&ca, 0, sizeof(ca));
        snprintf(ca.date, sizeof(ca.date), "%s", r->date);
        snprintf(ca.kind, sizeof(ca.kind), "%s", a->kind);
        ca.remote_key = a->remote_key;
        ca.sealed = a->sealed;
        memcpy(ca.plain_sha256, a->plain_sha256, 32);
        memcpy(ca.stored_sha256, a->stored_sha256, 32);
        ca.plain_size = (int64_t)a->plain_size;
        ca.stored_size = (int64_t)a->stored_size;
        if (catalog_artifact_record(r->cli->cat, &ca, now, err) < 0)
            return -1;
        for (size_t d = 0; d < n_dests; d++)
            if ((a->ok_mask & (1u << d)) &&
                catalog_artifact_copy(r->cli->cat, r->date, a->kind, r->cli->cfg->dests[d].name,
                                      now, err) < 0)
                return -1;
    }
    return 0;
}

int daily_run(struct cli *cli, const char *date)
{
    struct run r;
    struct catalog_daily d;
    struct cst_err err;
    char *db = NULL, *files = NULL, *catalog = NULL, *ship_errors = NULL, *lock_path;
    int lock_fd, rc, failed, manifest_ok = 0;
    size_t n_data;

    memset(&r, 0, sizeof(r));
    r.cli = cli;
    r.date = date;
    r.started = util_now_ms();
    if (sodium_init() < 0)
        return cli_fail(EXIT_FAILED, "libsodium failed to initialise");
    if (keys_load_public(cli->cfg->public_key, r.public_key, &err) < 0)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    if ((rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    /* Two runs never overlap. */
    lock_path = cli_state_path(cli, "daily.lock");
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock_path);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (lock_fd >= 0)
            close(lock_fd);
        return cli_fail(EXIT_FAILED, "another daily run is in progress");
    }
    r.spool = cli_state_path(cli, "spool");
    if (util_mkdir_p(r.spool, 0700, &err) < 0 ||
        catalog_daily_begin(cli->cat, date, r.started, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    log_info("daily run started date=%s", date);
    json_init(&r.manifest);
    json_obj_begin(&r.manifest);
    json_key(&r.manifest, "date");
    json_str(&r.manifest, date);
    json_key(&r.manifest, "timezone");
    json_str(&r.manifest, cli->cfg->timezone);
    json_key(&r.manifest, "started_at");
    json_time(&r.manifest, r.started);

    step_files(&r, &files);
    log_info("daily run files: %s", files);
    step_db(&r, &db);
    (strncmp(db, "ok", 2) == 0 || strcmp(db, "not configured") == 0 ? log_info : log_error)(
        "daily run database dump: %s", db);
    failed = ship(&r, 0, &ship_errors);
    /* Recorded before the catalog is copied, so that the copy alone can restore
     * this day's restore point and dump on a new host. */
    n_data = r.n_arts;
    if (catalog_begin(cli->cat, &err) < 0 || record_artifacts(&r, cli->cfg->n_dests, &err) < 0 ||
        catalog_commit(cli->cat, &err) < 0) {
        catalog_rollback(cli->cat);
        log_error("cannot record the daily run's artifacts: %s", err.msg);
    }
    step_catalog(&r, &catalog);
    if (strcmp(catalog, "ok") != 0)
        log_error("daily run catalog copy: %s", catalog);
    failed += ship(&r, n_data, &ship_errors);
    n_data = r.n_arts;
    if (step_manifests(&r, n_data, &err) == 0) {
        failed += ship(&r, n_data, &ship_errors);
        manifest_ok = 1;
        for (size_t i = n_data; i < r.n_arts; i++)
            manifest_ok &= r.arts[i].ok_mask != 0;
    } else {
        log_error("daily run manifest: %s", err.msg);
    }

    memset(&d, 0, sizeof(d));
    snprintf(d.date, sizeof(d.date), "%s", date);
    d.ran = 1;
    d.manifest_written = manifest_ok;
    d.offsite_verified = failed == 0 && manifest_ok;
    d.db_status = db;
    d.files_status = files;
    d.catalog_status = catalog;
    d.finished_at = util_now_ms();
    int ok = d.offsite_verified && (strcmp(db, "ok") == 0 || strcmp(db, "not configured") == 0) &&
             strncmp(files, "ok", 2) == 0 && strcmp(catalog, "ok") == 0;
    snprintf(d.status, sizeof(d.status), "%s", ok ? "ok" : "failed");
    if (!ok) {
        /* Every failed step, in order, separated by "; ". */
        const char *parts[][2] = {
            {"files", strncmp(files, "ok", 2) ? files : NULL},
            {"db", strcmp(db, "ok") && strcmp(db, "not configured") ? db : NULL},
            {"catalog", strcmp(catalog, "ok") ? catalog : NULL},
            {"manifest", manifest_ok ? NULL : "not written or not shipped"},
            {"shipping", ship_errors},
        };
        d.error = util_xstrdup("");
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            char *more;

            if (parts[i][1] == NULL)
                continue;
            more = util_printf("%s%s%s: %s", d.error, d.error[0] ? "; " : "", parts[i][0],
                               parts[i][1]);
            free(d.error);
            d.error = more;
        }
    }
    if (catalog_begin(cli->cat, &err) < 0 || record_artifacts(&r, cli->cfg->n_dests, &err) < 0 ||
        catalog_daily_finish(cli->cat, &d, &err) < 0) {
        catalog_rollback(cli->cat);
        rc = cli_fail(EXIT_FAILED, "cannot record the daily run: %s", err.msg);
    } else {
        char *detail = util_printf("{\"date\":\"%s\",\"status\":\"%s\"}", date, d.status);

        catalog_audit(cli->cat, "agent", "daily_run", detail, &err);
        free(detail);
        catalog_commit(cli->cat, &err);
        if (ok) {
            log_info("daily run ok date=%s artifacts=%zu destinations=%zu", date, r.n_arts,
                     cli->cfg->n_dests);
            rc = EXIT_OK;
        } else {
            rc = cli_fail(EXIT_FAILED, "daily run for %s failed: %s", date, d.error);
        }
    }
    free(d.error);
    json_free(&r.manifest);
out:
    for (size_t i = 0; i < r.n_arts; i++) {
        unlink(r.arts[i].spool_path);
        free(r.arts[i].spool_path);
        free(r.arts[i].remote_key);
    }
    free(db);
    free(files);
    free(catalog);
    free(ship_errors);
    free(r.spool);
    close(lock_fd);
    return rc;
}
