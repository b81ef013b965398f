/*
 * daily.c - the daily protection run (see daily.h).
 *
 * Steps, each recorded, none skipping the others when it fails:
 *   1. files   make sure every live file has a shipped copy (scan, then let
 *              the agent drain, or drain here when no agent runs), then
 *              write the restore point: every live file and its object
 *   2. db      mongo_dump() (or the operator's dump_command, whose output is
 *              checked as mongorestore would) streamed into a container
 *   3. catalog a copy of the catalog (VACUUM INTO, one read transaction), sealed
 *   4. ship    every artifact to every destination, verified there
 *   5. sign    the manifests (sha256sum text, JSON), signed with Ed25519,
 *              shipped and verified too, and kept in state_dir/manifests/
 * The run is ok only if all of it is; a failed run is retried by the agent.
 *
 * Evidence is never rewritten: each run is a new attempt for its date
 * (catalog/daily.c), with remote names of its own (agent/manifest.h), and a
 * name already present on a destination is never overwritten. The restore
 * point and the manifest publish the audit chain's head, so that cutting
 * rows off the audit log is caught (`audit verify`). A run for another day
 * than today (a backfill) says so: made on X, for D.
 *
 * Spool: each run writes into a folder of its own, spool/daily-PID-START
 * (START: the process's start time, so a reused pid is not taken for it),
 * with O_EXCL names. A local destination may hard-link a spool file, so a
 * spool file is only ever unlinked, never truncated or rewritten; folders
 * left by a run whose process died are removed by the next run.
 */
#include "daily.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/cmdline.h"
#include "agent/dests.h"
#include "agent/drain.h"
#include "agent/keys.h"
#include "agent/manifest.h"
#include "agent/mongo_archive.h"
#include "agent/mongo_dump.h"
#include "agent/prune.h"
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
    const char *made_on;
    int backfill, attempt;
    unsigned char public_key[32];
    char *spool; /* this process's own folder under state_dir/spool */
    struct artifact arts[MAX_ARTIFACTS];
    size_t n_arts;
    struct json manifest;
    int64_t started;
    int64_t audit_rows; /* the audit chain head the manifest published */
    unsigned char audit_head[32];
    /* what the dump held per namespace, as written: the restore test checks against it */
    struct catalog_dump_ns *dump_ns;
    size_t n_dump_ns;
};

static void keep_dump_ns(struct run *r, const char *db, const char *coll, const char *type,
                         uint64_t docs, uint64_t bytes, uint64_t crc)
{
    struct catalog_dump_ns *ns;

    r->dump_ns = util_xrealloc(r->dump_ns, (r->n_dump_ns + 1) * sizeof(*r->dump_ns));
    ns = &r->dump_ns[r->n_dump_ns++];
    ns->db = util_xstrdup(db);
    ns->coll = util_xstrdup(coll);
    ns->type = util_xstrdup(type ? type : "collection");
    ns->docs = (int64_t)docs;
    ns->doc_bytes = (int64_t)bytes;
    /* A view carries no documents: nothing to check a CRC of. */
    ns->has_crc = strcmp(ns->type, "view") != 0;
    ns->crc64 = crc;
}

/* --- the spool: a folder per process --- */

/* Start time of process pid (clock ticks since boot, /proc/PID/stat field 22), or 0. */
static unsigned long long process_start(pid_t pid)
{
    char path[64], buf[1024];
    unsigned long long start = 0;
    const char *p;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = util_read_full(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* Fields after the command name, which may itself hold spaces and ')'. */
    p = strrchr(buf, ')');
    for (int field = 2; p && field < 22; field++)
        p = strchr(p + 1, ' ');
    if (p == NULL || sscanf(p + 1, "%llu", &start) != 1)
        return 0;
    return start;
}

/* Remove a dead run's spool folder: unlink its files (never open them: one may be
 * hard-linked to a destination's copy), then the folder. */
static void remove_spool_folder(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) < 0)
            log_warn("cannot remove a stale daily spool file path=%s/%s: %s", dir, de->d_name,
                     strerror(errno));
    }
    closedir(d);
    if (rmdir(dir) < 0)
        log_warn("cannot remove a stale daily spool folder path=%s: %s", dir, strerror(errno));
    else
        log_info("removed the spool of an interrupted daily run path=%s", dir);
}

/* Left by runs whose process is gone (the caller holds the daily lock, so no other
 * run is in progress): this version's daily-PID-START folders, and the fixed-name
 * files (daily-YYYY-MM-DD-KIND) of earlier versions. */
static void remove_stale_spool(const char *spool)
{
    DIR *d = opendir(spool);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        char *path;
        int pid = 0;
        unsigned long long start = 0;
        struct stat sb;
        char tail;

        if (strncmp(de->d_name, "daily-", 6) != 0)
            continue;
        path = util_join(spool, de->d_name);
        if (lstat(path, &sb) < 0) {
            free(path);
            continue;
        }
        if (S_ISDIR(sb.st_mode) &&
            sscanf(de->d_name, "daily-%d-%llu%c", &pid, &start, &tail) == 2) {
            if (pid > 0 && process_start((pid_t)pid) != start)
                remove_spool_folder(path);
        } else if (S_ISREG(sb.st_mode) && strlen(de->d_name) > 17 && de->d_name[10] == '-' &&
                   de->d_name[13] == '-' && de->d_name[16] == '-') {
            if (unlink(path) == 0)
                log_info("removed an earlier version's daily spool file path=%s", path);
        }
        free(path);
    }
    closedir(d);
}

static int make_spool(struct run *r, struct cst_err *err)
{
    char *top = cli_state_path(r->cli, "spool");
    char name[64];
    int rc = 0;

    snprintf(name, sizeof(name), "daily-%d-%llu", (int)getpid(), process_start(getpid()));
    if (util_mkdir_p(top, 0700, err) < 0) {
        free(top);
        return -1;
    }
    remove_stale_spool(top);
    r->spool = util_join(top, name);
    if (mkdir(r->spool, 0700) < 0)
        rc = cst_err_sys(err, "cannot create the daily run's spool folder %s", r->spool);
    free(top);
    return rc;
}

/* A new file in the run's spool, created (O_EXCL) under a name nothing else has. */
static int spool_create(struct run *r, const char *what, char **path, struct cst_err *err)
{
    char *tmpl = util_printf("%s/%s.XXXXXX", r->spool, what);
    int fd = mkostemp(tmpl, O_CLOEXEC);

    if (fd < 0) {
        cst_err_sys(err, "cannot create a file in %s", r->spool);
        free(tmpl);
        return -1;
    }
    *path = tmpl;
    return fd;
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
    a->remote_key = manifest_artifact_key(kind, r->date, r->attempt);
    a->sealed = sealed;
    a->spool_path = NULL; /* created when it is written */
    return a;
}

static void drop_artifact(struct run *r)
{
    struct artifact *a = &r->arts[--r->n_arts];

    if (a->spool_path)
        unlink(a->spool_path);
    free(a->spool_path);
    free(a->remote_key);
}

static int sealing_begin(struct run *r, struct sealing *s, struct artifact *a, struct cst_err *err)
{
    memset(s, 0, sizeof(*s));
    s->a = a;
    s->err = err;
    s->fd = spool_create(r, a->kind, &a->spool_path, err);
    if (s->fd < 0)
        return -1;
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
static int write_plain(struct run *r, struct artifact *a, const char *text, size_t len,
                       struct cst_err *err)
{
    int fd = spool_create(r, a->kind, &a->spool_path, err);

    if (fd < 0)
        return -1;
    if (util_write_all(fd, text, len) < 0) {
        cst_err_sys(err, "cannot write %s", a->spool_path);
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
    char *header, head_hex[65];
    unsigned char audit_head[32];
    int64_t audit_rows;
    int complete = files_drain(r->cli, &drained);
    int64_t at = util_now_ms();

    if (complete < 0 || sealing_begin(r, &s, a, &err) < 0) {
        *status = drained ? drained : util_printf("failed: %s", err.msg);
        if (drained && complete >= 0)
            free(drained);
        drop_artifact(r);
        return;
    }
    if (catalog_audit_head(r->cli->cat, &audit_rows, audit_head, &err) < 0) {
        sealing_end(&s, 0);
        *status = util_printf("failed: %s", err.msg);
        free(drained);
        drop_artifact(r);
        return;
    }
    util_hex(audit_head, 32, head_hex);
    /* v2: v1's date and at, plus which attempt made it, when (a backfill is a point
     * for `date` made on `made_on`), and the audit chain's head at that time. */
    header = util_printf("custodian restore-point v2\tdate=%s\tattempt=%d\tmade_on=%s\t"
                         "backfill=%d\tat=%lld\taudit_rows=%lld\taudit_head=%s\n",
                         r->date, r->attempt, r->made_on, r->backfill, (long long)at,
                         (long long)audit_rows, head_hex);
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

/* The last outlen-1 bytes of what fd holds, without trailing newlines. */
static void tail_of(int fd, char *out, size_t outlen)
{
    off_t size;
    ssize_t n = 0;

    out[0] = '\0';
    size = lseek(fd, 0, SEEK_END);
    if (size < 0)
        return;
    if (size > (off_t)outlen - 1)
        lseek(fd, size - (off_t)outlen + 1, SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    n = util_read_full(fd, out, outlen - 1);
    out[n > 0 ? n : 0] = '\0';
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
}

/*
 * The operator's command writes the archive to stdout: seal it and check it parses.
 * It runs without a shell, on the words of dump_command (agent/cmdline.h), with
 * stdin from /dev/null (a command that asks for a password fails instead of waiting
 * for ever). What is said about it names only argv[0]; its stderr is redacted.
 */
static int run_dump_command(struct run *r, struct sealing *s, struct marchive_stats *st,
                            struct cst_err *err)
{
    char **argv = NULL, *errfile = NULL;
    int pipefd[2] = {-1, -1}, errfd, nullfd, status, rc;
    char invalid[CST_ERR_SIZE] = "";
    struct command_source src;
    pid_t pid;

    if (cmdline_split(r->cli->cfg->dump_command, &argv, err) < 0)
        return cst_err_wrap(err, "dump_command");
    errfd = spool_create(r, "dump-stderr", &errfile, err);
    if (errfd < 0) {
        cmdline_free(argv);
        return -1;
    }
    /* Its stderr is read back through errfd, not by name. */
    unlink(errfile);
    free(errfile);
    nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nullfd < 0 || pipe2(pipefd, O_CLOEXEC) < 0) {
        rc = cst_err_sys(err, "cannot start dump_command %s", argv[0]);
        goto out;
    }
    pid = fork();
    if (pid == 0) {
        char msg[512];

        if (dup2(nullfd, STDIN_FILENO) < 0 || dup2(pipefd[1], STDOUT_FILENO) < 0 ||
            dup2(errfd, STDERR_FILENO) < 0)
            _exit(126);
        execvp(argv[0], argv);
        snprintf(msg, sizeof(msg), "cannot run %s: %s\n", argv[0], strerror(errno));
        if (write(STDERR_FILENO, msg, strlen(msg)) < 0)
            _exit(127);
        _exit(127);
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    if (pid < 0) {
        rc = cst_err_sys(err, "cannot start dump_command %s", argv[0]);
        goto out;
    }
    src.fd = pipefd[0];
    src.s = s;
    rc = marchive_validate(command_read, &src, st, err);
    if (rc < 0)
        snprintf(invalid, sizeof(invalid), "%s", err->msg);
    close(pipefd[0]);
    pipefd[0] = -1;
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
            cst_err_wrap(err, "the output of dump_command %s is not a mongodump archive", argv[0]);
            goto out;
        }
    } else {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char tail[512], *shown;

        tail_of(errfd, tail, sizeof(tail));
        shown = cmdline_redact(tail[0] ? tail : "(nothing on stderr)", argv);
        cst_err_set(err, "dump_command %s %s %d: %s%s%s", argv[0],
                    WIFEXITED(status) ? "exited with status" : "was killed by signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), shown,
                    rc < 0 ? "; and its output is not a mongodump archive: " : "",
                    rc < 0 ? invalid : "");
        explicit_bzero(tail, sizeof(tail));
        free(shown);
        rc = -1;
    } else if (rc < 0) {
        cst_err_wrap(err, "the output of dump_command %s is not a mongodump archive", argv[0]);
    }
out:
    if (pipefd[0] >= 0)
        close(pipefd[0]);
    if (pipefd[1] >= 0)
        close(pipefd[1]);
    if (nullfd >= 0)
        close(nullfd);
    close(errfd);
    cmdline_free(argv);
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
                keep_dump_ns(r, st.namespaces[i].db, st.namespaces[i].coll, st.namespaces[i].type,
                             st.namespaces[i].docs, st.namespaces[i].doc_bytes,
                             st.namespaces[i].crc);
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
                keep_dump_ns(r, st.collections[i].db, st.collections[i].name,
                             st.collections[i].type, st.collections[i].docs,
                             st.collections[i].bytes, st.collections[i].crc);
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
    char *copy = NULL;
    struct sealing s;
    struct cst_err err;
    int64_t t0 = util_mono_ms();
    int fd, rc = -1;

    /* An empty file of our own, which VACUUM INTO fills. */
    fd = spool_create(r, "catalog-copy", &copy, &err);
    if (fd >= 0) {
        close(fd);
        rc = catalog_backup_to(r->cli->cat, copy, &err);
    }
    if (rc == 0) {
        log_info("catalog copied ms=%lld", (long long)(util_mono_ms() - t0));
        if (sealing_begin(r, &s, a, &err) == 0) {
            rc = copy_file_into(&s, copy, &err);
            rc = sealing_end(&s, rc == 0) < 0 ? -1 : rc;
        } else {
            rc = -1;
        }
    }
    if (copy)
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

/* Object Lock of a daily point's artifacts on the destinations that lock: until the
 * retention planner lets the point go (keep_daily, or keep_monthly_months for the first
 * point of its month), so that prune and the lock agree. 0 when nothing locks. */
static int64_t point_retain_until(struct cli *cli, const char *date, int64_t fallback)
{
    const struct cfg *cfg = cli->cfg;
    struct plan_rules rules = prune_rules(cfg);
    struct sched_zone *zone;
    struct cst_err err;
    int64_t at, until;
    int locks = 0, first, y, m, dd;

    for (size_t d = 0; d < cfg->n_dests; d++)
        locks |= cfg->dests[d].type == CFG_DEST_S3 && cfg->dests[d].object_lock;
    if (!locks)
        return 0;
    if (catalog_point_lock_basis(cli->cat, date, fallback, &at, &first, &err) < 0) {
        /* The shorter date: a lock never outlives what prune would keep. */
        log_warn("daily run: %s; its artifacts are locked for keep_daily only", err.msg);
        at = fallback;
        first = 0;
    }
    zone = sched_zone_load(cfg->timezone, &err);
    if (zone == NULL) {
        log_warn("daily run: %s; its artifacts are locked for keep_daily only", err.msg);
        return at + (int64_t)rules.keep_daily * 86400000;
    }
    if (sched_parse_date(date, &y, &m, &dd) < 0)
        until = at + (int64_t)rules.keep_daily * 86400000;
    else
        until = plan_point_until(zone, &rules, y, m, dd, at, first);
    sched_zone_free(zone);
    return until;
}

/* Put arts[first..n) on every destination; record verified copies. Returns how many
 * (artifact, destination) pairs failed. */
static int ship(struct run *r, size_t first, char **errors)
{
    size_t n = r->n_arts - first, nd = r->cli->cfg->n_dests;
    struct dests_item *items = util_xcalloc(n + 1, sizeof(*items));
    unsigned char *ok = util_xcalloc(n * nd + 1, 1);
    int failed;
    int64_t retain = point_retain_until(r->cli, r->date, r->started);

    for (size_t i = 0; i < n; i++) {
        struct artifact *a = &r->arts[first + i];

        items[i].retain_until = retain;

        items[i].spool_path = a->spool_path;
        items[i].remote_key = a->remote_key;
        items[i].stored_size = a->stored_size;
        memcpy(items[i].stored_sha256, a->stored_sha256, 32);
        items[i].plain_size = a->plain_size;
        memcpy(items[i].plain_sha256, a->plain_sha256, 32);
        /* Names are this attempt's own; one already there is another run's evidence (a
         * catalog that forgot its attempts): never overwritten. */
        items[i].no_overwrite = 1;
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

/* Keep a signed manifest file in state_dir/manifests/ too (temp, fsync, rename,
 * fsync): `audit verify` finds the chain heads there before it asks the
 * destinations. An existing file of that name is never replaced. */
static int keep_locally(struct run *r, const struct artifact *a, const char *text, size_t len,
                        struct cst_err *err)
{
    char *dir = cli_state_path(r->cli, "manifests");
    const char *base = strrchr(a->remote_key, '/') + 1;
    char *final = util_join(dir, base), *tmp = util_printf("%s/.%s.XXXXXX", dir, base);
    int fd = -1, rc = -1;

    if (util_mkdir_p(dir, 0700, err) < 0)
        goto out;
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        cst_err_sys(err, "cannot create %s", tmp);
        goto out;
    }
    if (util_write_all(fd, text, len) < 0 || fsync(fd) < 0) {
        cst_err_sys(err, "cannot write %s", tmp);
        goto out;
    }
    /* link() fails on an existing name, where rename() would replace it. */
    if (link(tmp, final) < 0) {
        cst_err_sys(err, "cannot keep %s", final);
        goto out;
    }
    rc = util_fsync_dir(dir, err);
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    }
    free(tmp);
    free(final);
    free(dir);
    return rc;
}

static int step_manifests(struct run *r, size_t n_data, struct cst_err *err)
{
    unsigned char *sk = sodium_malloc(64), msg[64], sig[64];
    char *sums = sha256sum_text(r, n_data), sig_hex[129], head_hex[65], *sig_text, *name;
    struct artifact *a;
    int rc = -1;

    /* The audit chain as it stands now: trimming or rewriting it later is caught
     * against this signed head (`audit verify`). */
    if (catalog_audit_head(r->cli->cat, &r->audit_rows, r->audit_head, err) < 0) {
        free(sums);
        if (sk)
            sodium_free(sk);
        return -1;
    }
    util_hex(r->audit_head, 32, head_hex);
    json_key(&r->manifest, "audit");
    json_obj_begin(&r->manifest);
    json_key(&r->manifest, "rows");
    json_int(&r->manifest, r->audit_rows);
    json_key(&r->manifest, "head");
    json_str(&r->manifest, head_hex);
    json_obj_end(&r->manifest);
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
    /* The file names the signature covers: the attempt's own. */
    name = manifest_artifact_key("manifest-json", r->date, r->attempt);
    name[strlen(name) - 5] = '\0';
    sig_text = util_printf("custodian manifest-signature v1\n"
                           "signs: Ed25519 over SHA-256(%s.sha256) || SHA-256(%s.json)\n"
                           "signature: %s\n",
                           strrchr(name, '/') + 1, strrchr(name, '/') + 1, sig_hex);
    free(name);
    a = new_artifact(r, "manifest-sha256", 0);
    rc = write_plain(r, a, sums, strlen(sums), err);
    if (rc == 0)
        rc = keep_locally(r, a, sums, strlen(sums), err);
    a = new_artifact(r, "manifest-json", 0);
    if (rc == 0)
        rc = write_plain(r, a, r->manifest.buf, r->manifest.len, err);
    if (rc == 0)
        rc = keep_locally(r, a, r->manifest.buf, r->manifest.len, err);
    a = new_artifact(r, "manifest-sig", 0);
    if (rc == 0)
        rc = write_plain(r, a, sig_text, strlen(sig_text), err);
    if (rc == 0)
        rc = keep_locally(r, a, sig_text, strlen(sig_text), err);
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
        ca.attempt = r->attempt;
        snprintf(ca.kind, sizeof(ca.kind), "%s", a->kind);
        ca.remote_key = a->remote_key;
        ca.sealed = a->sealed;
        memcpy(ca.plain_sha256, a->plain_sha256, 32);
        memcpy(ca.stored_sha256, a->stored_sha256, 32);
        ca.plain_size = (int64_t)a->plain_size;
        ca.stored_size = (int64_t)a->stored_size;
        if (catalog_artifact_record(r->cli->cat, &ca, now, err) < 0)
            return -1;
        for (size_t k = 0; strcmp(a->kind, "db") == 0 && k < r->n_dump_ns; k++)
            if (catalog_dump_ns_record(r->cli->cat, r->date, r->attempt, &r->dump_ns[k], err) < 0)
                return -1;
        for (size_t d = 0; d < n_dests; d++)
            if ((a->ok_mask & (1u << d)) &&
                catalog_artifact_copy(r->cli->cat, &ca, r->cli->cfg->dests[d].name, now, err) < 0)
                return -1;
    }
    return 0;
}

/* --- step 6: the points a destination lacks (added later, or down then) --- */

struct lacking {
    struct run *r;
    struct catalog_artifact *arts;
    char **from, **paths;
    size_t n;
};

static int add_lacking(void *arg, const struct catalog_artifact *a, const char *from)
{
    struct lacking *l = arg;

    l->arts = util_xrealloc(l->arts, (l->n + 1) * sizeof(*l->arts));
    l->from = util_xrealloc(l->from, (l->n + 1) * sizeof(char *));
    l->paths = util_xrealloc(l->paths, (l->n + 1) * sizeof(char *));
    l->arts[l->n] = *a;
    l->arts[l->n].remote_key = util_xstrdup(a->remote_key);
    l->from[l->n] = util_xstrdup(from);
    l->paths[l->n] = NULL;
    l->n++;
    return 0;
}

/* Fetch the ciphertext a destination holds into the spool and check it is what was
 * stored. Returns the spool path (malloc'd) or NULL with err. */
static char *fetch_artifact(struct run *r, struct dest **dests, size_t nd, const char *from,
                            const struct catalog_artifact *a, struct cst_err *err)
{
    struct dest *src = NULL;
    unsigned char sha[32];
    EVP_MD_CTX *ctx;
    char *path = NULL;
    unsigned char buf[1 << 16];
    unsigned int len = 32;
    uint64_t size = 0;
    int fd;

    for (size_t d = 0; d < nd; d++)
        if (strcmp(dests[d]->name, from) == 0)
            src = dests[d];
    if (src == NULL)
        return cst_err_set(err, "destination %s is not configured", from), NULL;
    fd = spool_create(r, "cover", &path, err);
    if (fd < 0)
        return NULL;
    if (src->ops->get(src, a->remote_key, fd, err) < 0)
        goto fail;
    ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (off_t off = 0;;) {
        ssize_t n = pread(fd, buf, sizeof(buf), off);

        if (n <= 0)
            break;
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        off += n;
        size += (uint64_t)n;
    }
    EVP_DigestFinal_ex(ctx, sha, &len);
    EVP_MD_CTX_free(ctx);
    if (fdatasync(fd) < 0 || (int64_t)size != a->stored_size ||
        memcmp(sha, a->stored_sha256, 32) != 0) {
        cst_err_set(err, "the copy of %s on %s is not what was stored", a->remote_key, from);
        goto fail;
    }
    close(fd);
    return path;
fail:
    close(fd);
    unlink(path);
    free(path);
    return NULL;
}

/* Coverage of the daily points: what was shipped on earlier days reaches every
 * destination, also one added since (copied from another destination's bytes, which
 * need no secret key). Returns how many copies could not be made. */
static int step_cover(struct run *r, char **errors)
{
    const struct cfg *cfg = r->cli->cfg;
    struct dest **dests = NULL;
    size_t nd = 0;
    struct cst_err err;
    int failed = 0;

    if (dests_open(cfg, NULL, &dests, &nd, &err) < 0)
        return 0; /* reported by the ship step already */
    for (size_t d = 0; d < cfg->n_dests && d < 32; d++) {
        struct lacking l = {r, NULL, NULL, NULL, 0};
        struct dests_item *items;
        unsigned char *ok;
        size_t got = 0;

        if (catalog_artifacts_lacking(r->cli->cat, cfg->dests[d].name, add_lacking, &l, &err) < 0) {
            log_error("daily run: %s", err.msg);
            continue;
        }
        if (l.n == 0)
            continue;
        log_warn("destination %s lacks %zu artifacts of earlier daily points; copying them",
                 cfg->dests[d].name, l.n);
        items = util_xcalloc(l.n, sizeof(*items));
        ok = util_xcalloc(l.n * cfg->n_dests + 1, 1);
        for (size_t i = 0; i < l.n; i++) {
            l.paths[i] = fetch_artifact(r, dests, nd, l.from[i], &l.arts[i], &err);
            if (l.paths[i] == NULL) {
                failed++;
                log_error("daily run: cannot copy %s to %s: %s", l.arts[i].remote_key,
                          cfg->dests[d].name, err.msg);
                continue;
            }
            items[got].spool_path = l.paths[i];
            items[got].remote_key = l.arts[i].remote_key;
            items[got].stored_size = (uint64_t)l.arts[i].stored_size;
            memcpy(items[got].stored_sha256, l.arts[i].stored_sha256, 32);
            items[got].retain_until = point_retain_until(r->cli, l.arts[i].date, r->started);
            got++;
        }
        if (got)
            failed += dests_put_blocking(cfg, items, got, 1u << d, NULL, ok, errors);
        for (size_t i = 0, k = 0; i < l.n; i++) {
            if (l.paths[i] == NULL)
                continue;
            if (ok[d * got + k] &&
                catalog_artifact_copy(r->cli->cat, &l.arts[i], cfg->dests[d].name, util_now_ms(),
                                      &err) < 0)
                log_error("daily run: %s", err.msg);
            k++;
            unlink(l.paths[i]);
            free(l.paths[i]);
        }
        for (size_t i = 0; i < l.n; i++) {
            free(l.arts[i].remote_key);
            free(l.from[i]);
        }
        free(l.arts);
        free(l.from);
        free(l.paths);
        free(items);
        free(ok);
    }
    dests_free(dests, nd);
    return failed;
}

static char *audit_detail(const struct run *r, const char *status)
{
    struct json j;
    char *out;

    json_init(&j);
    json_obj_begin(&j);
    json_key(&j, "date");
    json_str(&j, r->date);
    json_key(&j, "attempt");
    json_int(&j, r->attempt);
    json_key(&j, "made_on");
    json_str(&j, r->made_on);
    json_key(&j, "backfill");
    json_bool(&j, r->backfill);
    json_key(&j, "status");
    json_str(&j, status);
    json_key(&j, "outcome");
    json_str(&j, status);
    json_obj_end(&j);
    out = util_printf("%.*s", (int)j.len, j.buf);
    json_free(&j);
    return out;
}

int daily_run(struct cli *cli, const char *date, const char *made_on)
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
    r.made_on = made_on;
    r.backfill = strcmp(date, made_on) != 0;
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
    if (make_spool(&r, &err) < 0 || catalog_begin(cli->cat, &err) < 0) {
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    if (catalog_daily_begin(cli->cat, date, made_on, r.backfill, (int64_t)getpid(), r.started,
                            &r.attempt, &err) < 0 ||
        catalog_commit(cli->cat, &err) < 0) {
        catalog_rollback(cli->cat);
        rc = cli_fail(EXIT_FAILED, "%s", err.msg);
        goto out;
    }
    if (r.backfill)
        log_warn("daily run started date=%s attempt=%d: a backfill, made on %s with the files "
                 "and database as they are now",
                 date, r.attempt, made_on);
    else
        log_info("daily run started date=%s attempt=%d", date, r.attempt);
    json_init(&r.manifest);
    json_obj_begin(&r.manifest);
    json_key(&r.manifest, "version");
    json_int(&r.manifest, 2);
    json_key(&r.manifest, "date");
    json_str(&r.manifest, date);
    json_key(&r.manifest, "attempt");
    json_int(&r.manifest, r.attempt);
    json_key(&r.manifest, "made_on");
    json_str(&r.manifest, made_on);
    json_key(&r.manifest, "backfill");
    json_bool(&r.manifest, r.backfill);
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

    /* Earlier points a destination lacks: a gap status shows until it is closed, not a
     * failure of today's point. */
    {
        char *cover_errors = NULL;

        if (step_cover(&r, &cover_errors) > 0)
            log_error("daily run: earlier points still lack copies: %s",
                      cover_errors ? cover_errors : "see above");
        free(cover_errors);
    }

    memset(&d, 0, sizeof(d));
    snprintf(d.date, sizeof(d.date), "%s", date);
    d.attempt = r.attempt;
    d.ran = 1;
    d.manifest_written = manifest_ok;
    d.offsite_verified = failed == 0 && manifest_ok;
    d.db_status = db;
    d.files_status = files;
    d.catalog_status = catalog;
    d.finished_at = util_now_ms();
    d.audit_rows = r.audit_rows;
    memcpy(d.audit_head, r.audit_head, 32);
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
    char *detail = audit_detail(&r, d.status);
    if (catalog_begin(cli->cat, &err) < 0 || record_artifacts(&r, cli->cfg->n_dests, &err) < 0 ||
        catalog_daily_finish(cli->cat, &d, &err) < 0 ||
        catalog_audit(cli->cat, "agent", "daily_run", detail, &err) < 0 ||
        catalog_commit(cli->cat, &err) < 0) {
        catalog_rollback(cli->cat);
        rc = cli_fail(EXIT_FAILED, "cannot record the daily run: %s", err.msg);
    } else if (ok) {
        log_info("daily run ok date=%s attempt=%d artifacts=%zu destinations=%zu", date, r.attempt,
                 r.n_arts, cli->cfg->n_dests);
        rc = EXIT_OK;
    } else {
        rc = cli_fail(EXIT_FAILED, "daily run for %s (attempt %d) failed: %s", date, r.attempt,
                      d.error);
    }
    free(detail);
    free(d.error);
    json_free(&r.manifest);
out:
    for (size_t i = 0; i < r.n_arts; i++) {
        if (r.arts[i].spool_path)
            unlink(r.arts[i].spool_path);
        free(r.arts[i].spool_path);
        free(r.arts[i].remote_key);
    }
    if (r.spool && rmdir(r.spool) < 0 && errno != ENOENT)
        log_warn("cannot remove the daily run's spool folder path=%s: %s", r.spool,
                 strerror(errno));
    free(db);
    free(files);
    free(catalog);
    free(ship_errors);
    free(r.spool);
    for (size_t i = 0; i < r.n_dump_ns; i++) {
        free(r.dump_ns[i].db);
        free(r.dump_ns[i].coll);
        free(r.dump_ns[i].type);
    }
    free(r.dump_ns);
    close(lock_fd);
    return rc;
}
