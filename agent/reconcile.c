/*
 * reconcile.c - a walk of a folder tree against the catalog (see reconcile.h).
 */
#include "reconcile.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"
#include "watcher/watcher.h"

#define TX_CHANGES 256

struct walk {
    struct catalog *cat;
    char *const *excludes;
    size_t n_excludes;
    struct reconcile_counts *counts;
    reconcile_emit_fn emit;
    void *arg;
    const volatile int *stop;
    struct cst_err *err;
};

static int emit(struct walk *w, enum reconcile_kind kind, const char *path, const char *why)
{
    struct reconcile_change c = {kind, (char *)path, (char *)why};

    if (kind == RECONCILE_QUEUE)
        w->counts->queued++;
    else if (kind == RECONCILE_GONE)
        w->counts->tombstoned++;
    else
        w->counts->unprotected++;
    return w->emit(w->arg, &c);
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

static int check_file(struct walk *w, const char *path, const struct stat *sb)
{
    struct catalog_version v;
    int rc = catalog_live_version(w->cat, path, &v, w->err);
    int same = 0;

    if (rc < 0)
        return -1;
    w->counts->seen++;
    if (rc == 1) {
        same = v.size == (int64_t)sb->st_size && v.inode == (int64_t)sb->st_ino &&
               v.mtime_ns == mtime_ns(sb) &&
               (v.kind == CATALOG_SYMLINK) == (S_ISLNK(sb->st_mode) != 0);
        catalog_version_clear(&v);
    }
    if (same)
        return 0;
    /* Sealed already, waiting for its first copy: nothing to read again. */
    rc = catalog_pending_match(w->cat, path, (int64_t)sb->st_size, mtime_ns(sb),
                               (int64_t)sb->st_ino, NULL, w->err);
    if (rc != 0)
        return rc == 1 ? 0 : -1;
    return emit(w, RECONCILE_QUEUE, path, NULL);
}

static int walk_dir(struct walk *w, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        if (errno == ENAMETOOLONG)
            return emit(w, RECONCILE_UNPROTECTED, dir, "path longer than the system allows");
        if (errno != ENOENT && errno != ENOTDIR)
            log_warn("cannot read folder %s: %s", dir, strerror(errno));
        return 0;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat sb;
        char *path;

        if (w->stop && *w->stop) {
            rc = 1;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        path = util_join(dir, de->d_name);
        if (watcher_excluded(w->excludes, w->n_excludes, path, de->d_name)) {
            free(path);
            continue;
        }
        if (lstat(path, &sb) < 0) {
            if (errno == ENAMETOOLONG)
                rc = emit(w, RECONCILE_UNPROTECTED, path, "path longer than the system allows");
            free(path);
            continue;
        }
        if (S_ISDIR(sb.st_mode))
            rc = walk_dir(w, path);
        else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode))
            rc = check_file(w, path, &sb);
        free(path);
    }
    closedir(d);
    return rc;
}

struct gone {
    char **paths;
    size_t n;
};

static int collect_gone(void *arg, const struct catalog_version *v)
{
    struct gone *g = arg;
    struct stat sb;

    if (lstat(v->path, &sb) < 0 && (errno == ENOENT || errno == ENOTDIR)) {
        g->paths = util_xrealloc(g->paths, (g->n + 1) * sizeof(char *));
        g->paths[g->n++] = util_xstrdup(v->path);
    }
    return 0;
}

int reconcile_walk(struct catalog *cat, const char *root, char *const *excludes, size_t n_excludes,
                   reconcile_emit_fn emit_fn, void *arg, const volatile int *stop,
                   struct reconcile_counts *counts, struct cst_err *err)
{
    struct walk w = {cat, excludes, n_excludes, counts, emit_fn, arg, stop, err};
    struct gone g = {NULL, 0};
    struct stat sb;
    int rc;

    /* A root that is not there is not a reason to tombstone everything under it:
     * the watcher says it is gone, and status fails until it is back. */
    if (stat(root, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return cst_err_set(err, "watched folder %s is not there", root);
    rc = walk_dir(&w, root);
    /* Files the catalog has as live that are no longer there: tombstones. Collected
     * first, so that no statement is open while they are handed out. */
    if (rc == 0)
        rc = catalog_each_version_at(cat, root, INT64_MAX, collect_gone, &g, err);
    for (size_t i = 0; i < g.n; i++) {
        if (rc == 0 && w.stop && *w.stop)
            rc = 1;
        if (rc == 0)
            rc = emit(&w, RECONCILE_GONE, g.paths[i], NULL);
        free(g.paths[i]);
    }
    free(g.paths);
    return rc;
}

int reconcile_apply(struct catalog *cat, const struct reconcile_change *c, int64_t now,
                    struct cst_err *err)
{
    struct stat sb;

    switch (c->kind) {
    case RECONCILE_QUEUE:
        return catalog_queue_path(cat, c->path, "scan", now, err);
    case RECONCILE_GONE:
        /* Written again since the walk saw it gone: its own event ships it. */
        if (lstat(c->path, &sb) == 0)
            return 0;
        return catalog_record_delete(cat, c->path, now, err) < 0 ? -1 : 0;
    case RECONCILE_UNPROTECTED:
        return 0;
    }
    return 0;
}

void reconcile_change_clear(struct reconcile_change *c)
{
    free(c->path);
    free(c->why);
    c->path = c->why = NULL;
}

struct batch {
    struct catalog *cat;
    struct reconcile_change c[TX_CHANGES];
    size_t n;
    struct cst_err *err;
};

static int write_batch(struct batch *b)
{
    int64_t now = util_now_ms();
    int rc = catalog_begin(b->cat, b->err);

    for (size_t i = 0; rc == 0 && i < b->n; i++)
        rc = reconcile_apply(b->cat, &b->c[i], now, b->err);
    if (rc == 0)
        rc = catalog_commit(b->cat, b->err);
    else
        catalog_rollback(b->cat);
    for (size_t i = 0; i < b->n; i++)
        reconcile_change_clear(&b->c[i]);
    b->n = 0;
    return rc;
}

static int batch_add(void *arg, const struct reconcile_change *c)
{
    struct batch *b = arg;

    if (c->kind == RECONCILE_UNPROTECTED) {
        char *shown = pathenc_escape(c->path, strlen(c->path));

        log_error("NOT PROTECTED path=%s reason=\"%s\"", shown, c->why);
        free(shown);
        return 0;
    }
    b->c[b->n].kind = c->kind;
    b->c[b->n].path = util_xstrdup(c->path);
    b->c[b->n].why = NULL;
    if (++b->n == TX_CHANGES)
        return write_batch(b);
    return 0;
}

int reconcile_tree(struct catalog *cat, const char *root, char *const *excludes, size_t n_excludes,
                   struct reconcile_counts *counts, struct cst_err *err)
{
    struct batch *b = util_xcalloc(1, sizeof(*b));
    int rc;

    b->cat = cat;
    b->err = err;
    rc = reconcile_walk(cat, root, excludes, n_excludes, batch_add, b, NULL, counts, err);
    if (rc == 0 && b->n > 0)
        rc = write_batch(b);
    for (size_t i = 0; i < b->n; i++)
        reconcile_change_clear(&b->c[i]);
    free(b);
    return rc;
}
