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
#include "common/util.h"
#include "watcher/watcher.h"

struct walk {
    struct catalog *cat;
    char *const *excludes;
    size_t n_excludes;
    struct reconcile_counts *counts;
    int64_t now;
    struct cst_err *err;
};

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
               v.mtime_ns == (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec &&
               (v.kind == CATALOG_SYMLINK) == (S_ISLNK(sb->st_mode) != 0);
        catalog_version_clear(&v);
    }
    if (same)
        return 0;
    /* Sealed already, waiting for its first copy: nothing to read again. */
    switch (catalog_pending_match(w->cat, path, (int64_t)sb->st_size,
                                  (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec,
                                  (int64_t)sb->st_ino, NULL, w->err)) {
    case 1:
        return 0;
    case -1:
        return -1;
    }
    w->counts->queued++;
    return catalog_queue_path(w->cat, path, "scan", w->now, w->err);
}

static int walk_dir(struct walk *w, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = 0;

    if (d == NULL) {
        if (errno != ENOENT && errno != ENOTDIR)
            log_warn("cannot read folder %s: %s", dir, strerror(errno));
        return 0;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat sb;
        char *path;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        path = util_join(dir, de->d_name);
        if (watcher_excluded(w->excludes, w->n_excludes, path, de->d_name) ||
            lstat(path, &sb) < 0) {
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

int reconcile_tree(struct catalog *cat, const char *root, char *const *excludes, size_t n_excludes,
                   struct reconcile_counts *counts, struct cst_err *err)
{
    struct walk w = {cat, excludes, n_excludes, counts, util_now_ms(), err};
    struct gone g = {NULL, 0};
    int rc = walk_dir(&w, root);

    /* Files the catalog has as live that are no longer there: tombstones. */
    if (rc == 0)
        rc = catalog_each_version_at(cat, root, INT64_MAX, collect_gone, &g, err);
    for (size_t i = 0; i < g.n; i++) {
        if (rc == 0 && catalog_record_delete(cat, g.paths[i], w.now, err) < 0)
            rc = -1;
        else if (rc == 0)
            counts->tombstoned++;
        free(g.paths[i]);
    }
    free(g.paths);
    return rc;
}
