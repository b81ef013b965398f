/*
 * reconcile.c - a walk of a folder tree against the catalog (see reconcile.h).
 */
#include "reconcile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"
#include "watcher/watcher.h"

#define TX_CHANGES 256
/* Names of one folder held at once by a walker (about 100 bytes each with the catalog's
 * rows; a parallel walk has two walkers, so twice that at most): a larger folder is
 * walked streaming, at the old per-file pace. The e2e tests
 * lower it with CUSTODIAN_TEST_MAX_LISTED to walk both ways over a few files. */
#define MAX_LISTED 65536

struct walk {
    struct catalog *cat;
    char *const *excludes;
    size_t n_excludes;
    struct reconcile_counts *counts;
    reconcile_emit_fn emit;
    void *arg;
    const atomic_int *stop;
    struct cst_err *err;
    /* The path being looked at: the folder, then "/name" while an entry is handled. */
    char *path;
    size_t path_len, path_cap;
    size_t max_listed;
    struct walkers *sh; /* NULL: walking alone */
    int rc;             /* a walker's result (parallel walks) */
};

/* What the two walkers of one parallel walk share. The helper starts when the first
 * walker first has a subfolder to give (a walk of a folder with no subfolder, the common
 * new-folder rescan, starts no thread); after that, a walker that finds a subfolder while
 * the other waits hands it over (its open descriptor and path) instead of walking it
 * itself. The walk ends when neither is walking and nothing waits to be taken. Changes
 * are handed out under the lock, one at a time, as a single walker does. */
struct walkers {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int slot_fd; /* a folder waiting for a walker, or -1 */
    char *slot_path;
    int idle, busy, finished;
    atomic_int abort; /* a walker failed or was told to stop: the other ends too */
    const char *helper_catalog;
    int helper; /* 0 not started, 1 running, -1 cannot be had (one walker) */
    pthread_t thread;
    struct walk h; /* the helper's walk, its counts and error */
    struct reconcile_counts hc;
    struct cst_err herr;
};

/* One name of a folder's listing, in names (a buffer per folder). */
struct disk_entry {
    size_t name; /* offset into names */
    size_t len;
    int is_dir;
};

struct listing {
    struct disk_entry *e;
    size_t n, cap;
    char *names;
    size_t names_len, names_cap;
};

static int stopped(const struct walk *w)
{
    return (w->stop && atomic_load(w->stop)) || (w->sh && atomic_load(&w->sh->abort));
}

static int emit(struct walk *w, enum reconcile_kind kind, const char *path, const char *why)
{
    struct reconcile_change c = {kind, (char *)path, (char *)why};
    int rc;

    if (kind == RECONCILE_QUEUE)
        w->counts->queued++;
    else if (kind == RECONCILE_GONE || kind == RECONCILE_GONE_FILE)
        w->counts->tombstoned++;
    else
        w->counts->unprotected++;
    if (w->sh == NULL)
        return w->emit(w->arg, &c);
    pthread_mutex_lock(&w->sh->mu);
    rc = w->emit(w->arg, &c);
    pthread_mutex_unlock(&w->sh->mu);
    return rc;
}

static int64_t mtime_ns(const struct stat *sb)
{
    return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec;
}

/* Append "/name" to w->path; returns the length to go back to. */
static size_t path_push(struct walk *w, const char *name, size_t len)
{
    size_t old = w->path_len;
    int slash = old == 0 || w->path[old - 1] != '/';

    if (old + len + 2 > w->path_cap) {
        w->path_cap = (old + len + 2) * 2;
        w->path = util_xrealloc(w->path, w->path_cap);
    }
    if (slash)
        w->path[w->path_len++] = '/';
    memcpy(w->path + w->path_len, name, len);
    w->path_len += len;
    w->path[w->path_len] = '\0';
    return old;
}

static void path_pop(struct walk *w, size_t old)
{
    w->path_len = old;
    w->path[old] = '\0';
}

/* Longer than lstat/open accept: the shipper could not read it by its path either. */
static int too_long(const struct walk *w)
{
    return w->path_len >= PATH_MAX;
}

/* A file on disk at w->path (sb from fstatat), and its live version when the catalog has
 * one (NULL if not): same size, inode, mtime and kind is unchanged, else it is queued. */
static int check_file(struct walk *w, const struct stat *sb, const struct catalog_dir_entry *v)
{
    int rc;

    w->counts->seen++;
    if (v && v->size == (int64_t)sb->st_size && v->inode == (int64_t)sb->st_ino &&
        v->mtime_ns == mtime_ns(sb) && (v->kind == CATALOG_SYMLINK) == (S_ISLNK(sb->st_mode) != 0))
        return 0;
    /* Sealed already, waiting for its first copy: nothing to read again. */
    rc = catalog_pending_match(w->cat, w->path, (int64_t)sb->st_size, mtime_ns(sb),
                               (int64_t)sb->st_ino, NULL, w->err);
    if (rc != 0)
        return rc == 1 ? 0 : -1;
    return emit(w, RECONCILE_QUEUE, w->path, NULL);
}

/* How a path the catalog holds as a file or symlink stands on disk: RECONCILE_GONE when
 * not there, RECONCILE_GONE_FILE when a folder took its name, -1 when it is there. */
static int file_gone(const char *path)
{
    struct stat sb;

    if (lstat(path, &sb) < 0)
        return errno == ENOENT || errno == ENOTDIR ? RECONCILE_GONE : -1;
    return S_ISDIR(sb.st_mode) ? RECONCILE_GONE_FILE : -1;
}

struct gone {
    char **paths;
    int *kinds;
    size_t n;
};

static int collect_gone(void *arg, const struct catalog_version *v)
{
    struct gone *g = arg;
    int kind = file_gone(v->path);

    if (kind >= 0) {
        g->paths = util_xrealloc(g->paths, (g->n + 1) * sizeof(char *));
        g->kinds = util_xrealloc(g->kinds, (g->n + 1) * sizeof(int));
        g->kinds[g->n] = kind;
        g->paths[g->n++] = util_xstrdup(v->path);
    }
    return 0;
}

/* Live in the catalog at or below w->path, and not seen by the walk (gone, excluded, in a
 * folder that cannot be read, or replaced by a folder): what lstat cannot find is gone,
 * and a file whose name a folder has taken is gone as a file (what the folder holds is
 * the walk's). Collected first, so that no statement is open while they are handed out. */
static int check_unseen(struct walk *w, int subtree)
{
    struct gone g = {NULL, NULL, 0};
    int rc = 0;

    if (!subtree) {
        int kind = file_gone(w->path);

        return kind >= 0 ? emit(w, (enum reconcile_kind)kind, w->path, NULL) : 0;
    }
    rc = catalog_each_version_at(w->cat, w->path, INT64_MAX, collect_gone, &g, w->err);
    for (size_t i = 0; i < g.n; i++) {
        if (rc == 0 && stopped(w))
            rc = 1;
        if (rc == 0)
            rc = emit(w, (enum reconcile_kind)g.kinds[i], g.paths[i], NULL);
        free(g.paths[i]);
    }
    free(g.paths);
    free(g.kinds);
    return rc;
}

static int pending_gone(void *arg, const char *path)
{
    struct walk *w = arg;
    int kind;

    if (stopped(w))
        return 1;
    kind = file_gone(path);
    return kind >= 0 ? emit(w, (enum reconcile_kind)kind, path, NULL) : 0;
}

/* Versions sealed but still waiting for their first copy below w->path, whose file is
 * gone: the merge sees live versions only, and such a version, promoted once its copy
 * is made, would show as live a file deleted (or its folder renamed) while the agent
 * was stopped. A file still there was checked by the walk (queued again if changed). */
static int check_pending(struct walk *w)
{
    return catalog_each_pending_below(w->cat, w->path, pending_gone, w, w->err);
}

/* The walk's order: bytes of the name, a folder's as if it ended in '/', which is the
 * order of the full paths and so of the catalog's paths index. */
static int key_cmp(const char *a, size_t alen, int adir, const char *b, size_t blen, int bdir)
{
    for (size_t i = 0;; i++) {
        int x = i < alen ? (unsigned char)a[i] : i == alen && adir ? '/' : -1;
        int y = i < blen ? (unsigned char)b[i] : i == blen && bdir ? '/' : -1;

        if (x != y || x < 0)
            return x < y ? -1 : x > y;
    }
}

static int entry_cmp(const void *pa, const void *pb, void *names)
{
    const struct disk_entry *a = pa, *b = pb;
    const char *n = names;

    return key_cmp(n + a->name, a->len, a->is_dir, n + b->name, b->len, b->is_dir);
}

/* Every name in the folder, but "." "..", and what is excluded, sorted: 0, or 1 when
 * there are more than MAX_LISTED (the listing is then incomplete). */
static int list_folder(struct walk *w, DIR *d, struct listing *l)
{
    struct dirent *de;

    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name), old;
        int is_dir = de->d_type == DT_DIR, excluded;
        struct stat sb;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        old = path_push(w, de->d_name, len);
        excluded = watcher_excluded(w->excludes, w->n_excludes, w->path, de->d_name);
        path_pop(w, old);
        if (excluded)
            continue;
        if (de->d_type == DT_UNKNOWN)
            is_dir =
                fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
        if (l->n == w->max_listed)
            return 1;
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 64;
            l->e = util_xrealloc(l->e, l->cap * sizeof(*l->e));
        }
        if (l->names_len + len + 1 > l->names_cap) {
            l->names_cap = (l->names_len + len + 1) * 2;
            l->names = util_xrealloc(l->names, l->names_cap);
        }
        memcpy(l->names + l->names_len, de->d_name, len + 1);
        l->e[l->n++] = (struct disk_entry){l->names_len, len, is_dir};
        l->names_len += len + 1;
    }
    if (l->n > 1)
        qsort_r(l->e, l->n, sizeof(*l->e), entry_cmp, l->names);
    return 0;
}

static int walk_dir(struct walk *w, int dfd);

static void *helper_main(void *arg);

/* Start the helper with the folder w->path (open as fd) as its first: 1 if running (fd is
 * its now), 0 if it cannot be had (the caller walks on alone, and does from now on). With
 * sh->mu held; only the first walker gets here. */
static int helper_start(struct walk *w, int fd)
{
    struct walkers *sh = w->sh;

    sh->helper = -1;
    sh->h = *w;
    sh->h.cat = catalog_open_readonly(sh->helper_catalog, &sh->herr);
    if (sh->h.cat == NULL) {
        log_warn("rescan: one walker only (%s)", sh->herr.msg);
        return 0;
    }
    catalog_set_cache_kib(sh->h.cat, RECONCILE_CACHE_KIB);
    sh->h.counts = &sh->hc;
    sh->h.err = &sh->herr;
    sh->h.path = NULL;
    sh->h.path_len = sh->h.path_cap = 0;
    sh->h.rc = 0;
    sh->slot_fd = fd;
    sh->slot_path = util_xstrdup(w->path);
    if (pthread_create(&sh->thread, NULL, helper_main, &sh->h) != 0) {
        log_warn("rescan: one walker only (cannot start a thread)");
        sh->slot_fd = -1;
        free(sh->slot_path);
        sh->slot_path = NULL;
        catalog_close(sh->h.cat);
        sh->h.cat = NULL;
        return 0;
    }
    sh->helper = 1;
    return 1;
}

/* Hand the folder w->path (open as fd) to the other walker if it waits for work, or to a
 * new helper: 1 if taken (fd is the other's now), 0 if this walker goes on with it. */
static int hand_over(struct walk *w, int fd)
{
    struct walkers *sh = w->sh;
    int given = 0;

    if (sh == NULL)
        return 0;
    pthread_mutex_lock(&sh->mu);
    if (sh->helper == 0) {
        given = helper_start(w, fd);
    } else if (sh->helper > 0 && sh->idle > 0 && sh->slot_fd < 0) {
        sh->slot_fd = fd;
        sh->slot_path = util_xstrdup(w->path);
        pthread_cond_broadcast(&sh->cond);
        given = 1;
    }
    pthread_mutex_unlock(&sh->mu);
    return given;
}

/* The subfolder w->path (name in dfd), which the catalog has live versions below when
 * subtree is set. */
static int walk_subdir(struct walk *w, int dfd, const char *name, int subtree)
{
    int fd;

    if (too_long(w))
        return emit(w, RECONCILE_UNPROTECTED, w->path, "path longer than the system allows");
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
            log_warn("cannot read folder %s: %s", w->path, strerror(errno));
        return subtree ? check_unseen(w, 1) : 0;
    }
    if (hand_over(w, fd))
        return 0;
    return walk_dir(w, fd);
}

/* A name the folder and the catalog both may have: disk (NULL if only the catalog has it)
 * and live (NULL if only the folder has it). */
static int check_entry(struct walk *w, int dfd, const char *name, const struct disk_entry *disk,
                       const struct catalog_dir_entry *live)
{
    struct stat sb;

    if (disk && disk->is_dir)
        return walk_subdir(w, dfd, name, live != NULL);
    if (disk == NULL)
        return check_unseen(w, live->subtree);
    if (too_long(w))
        return emit(w, RECONCILE_UNPROTECTED, w->path, "path longer than the system allows");
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return live ? check_unseen(w, 0) : 0; /* gone since the listing */
    if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode))
        return check_file(w, &sb, live);
    return 0; /* neither a file nor a symlink: not ours to ship, nor gone */
}

/* A file at w->path looked up in the catalog by itself (the streaming walk). */
static int check_file_alone(struct walk *w, const struct stat *sb)
{
    struct catalog_version v;
    struct catalog_dir_entry live = {0};
    int rc = catalog_live_version(w->cat, w->path, &v, w->err);

    if (rc < 0)
        return -1;
    if (rc == 1) {
        live.kind = v.kind;
        live.size = v.size;
        live.mtime_ns = v.mtime_ns;
        live.inode = v.inode;
        catalog_version_clear(&v);
    }
    return check_file(w, sb, rc == 1 ? &live : NULL);
}

/* A folder with more names than a listing may hold (MAX_LISTED), and everything below
 * it: each name looked up by itself, as the walk did before the merge, so that memory
 * stays flat whatever the folder's size. What is gone is found afterwards (check_unseen
 * over the folder). Takes d (the caller closes it). */
static int walk_streaming(struct walk *w, DIR *d)
{
    struct dirent *de;
    int rc = 0;

    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat sb;
        size_t old;

        if (stopped(w))
            return 1;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        old = path_push(w, de->d_name, strlen(de->d_name));
        if (watcher_excluded(w->excludes, w->n_excludes, w->path, de->d_name)) {
            path_pop(w, old);
            continue;
        }
        if (too_long(w)) {
            rc = emit(w, RECONCILE_UNPROTECTED, w->path, "path longer than the system allows");
        } else if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0) {
            if (S_ISDIR(sb.st_mode)) {
                int fd =
                    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                DIR *sub = fd < 0 ? NULL : fdopendir(fd);

                if (sub) {
                    w->counts->folders++;
                    rc = walk_streaming(w, sub);
                    closedir(sub);
                } else {
                    if (fd >= 0)
                        close(fd);
                    else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
                        log_warn("cannot read folder %s: %s", w->path, strerror(errno));
                }
            } else if (S_ISREG(sb.st_mode) || S_ISLNK(sb.st_mode)) {
                rc = check_file_alone(w, &sb);
            }
        }
        path_pop(w, old);
    }
    return rc;
}

/* Merge the folder's sorted listing with what the catalog holds live in it: one ordered
 * query per folder instead of one lookup per file, and a file's stat taken relative to
 * its folder (fstatat), as find does. Memory: one folder's names at a time (up to
 * MAX_LISTED; a larger folder is walked streaming). Takes dfd (closed here). */
static int walk_dir(struct walk *w, int dfd)
{
    struct listing l = {0};
    struct catalog_dir_entry *live = NULL;
    size_t n_live = 0, i = 0, j = 0;
    DIR *d = fdopendir(dfd);
    int rc;

    if (d == NULL) {
        close(dfd);
        return cst_err_sys(w->err, "cannot read folder %s", w->path);
    }
    w->counts->folders++;
    /* The names, then the catalog, then each file's stat: a file that changes after its
     * version was read is queued, never missed; one made after the listing is the
     * watcher's (its watch is in place before the walk). */
    rc = list_folder(w, d, &l);
    if (rc == 0)
        rc = catalog_live_in_dir(w->cat, w->path, w->max_listed, &live, &n_live, w->err);
    if (rc != 0) {
        free(l.e);
        free(l.names);
        if (rc > 0) {
            rewinddir(d);
            rc = walk_streaming(w, d);
            if (rc == 0)
                rc = check_unseen(w, 1);
        }
        closedir(d);
        return rc;
    }
    while (rc == 0 && (i < l.n || j < n_live)) {
        const struct disk_entry *de = i < l.n ? &l.e[i] : NULL;
        const struct catalog_dir_entry *ce = j < n_live ? &live[j] : NULL;
        const char *name;
        int c;
        size_t old;

        if (stopped(w)) {
            rc = 1;
            break;
        }
        if (de && ce)
            c = key_cmp(l.names + de->name, de->len, de->is_dir, ce->name, strlen(ce->name),
                        ce->subtree);
        else
            c = de ? -1 : 1;
        if (c > 0)
            de = NULL;
        else if (c < 0)
            ce = NULL;
        name = de ? l.names + de->name : ce->name;
        old = path_push(w, name, strlen(name));
        rc = check_entry(w, dirfd(d), name, de, ce);
        path_pop(w, old);
        i += de != NULL;
        j += ce != NULL;
    }
    closedir(d);
    free(l.e);
    free(l.names);
    catalog_dir_entries_free(live, n_live);
    return rc;
}

/* Point w->path at path (a folder handed over by the other walker). */
static void path_set(struct walk *w, const char *path)
{
    size_t len = strlen(path);

    if (len + 256 > w->path_cap) {
        w->path_cap = len + 256;
        w->path = util_xrealloc(w->path, w->path_cap);
    }
    memcpy(w->path, path, len + 1);
    w->path_len = len;
}

/* Walk the folder w->path open as fd, for a walker of a parallel walk: a failure or a stop
 * ends the other walker's walk too, and the walker's result keeps the first failure (-1)
 * over a stop (1). */
static void walk_taken(struct walk *w, int fd)
{
    int rc;

    if (stopped(w)) {
        close(fd);
        rc = 1;
    } else {
        rc = walk_dir(w, fd);
    }
    if (rc != 0) {
        if (w->rc >= 0 && (rc < 0 || w->rc == 0))
            w->rc = rc;
        atomic_store(&w->sh->abort, 1);
    }
}

/* One walker of a parallel walk: walks what waits in the slot until neither walker is
 * walking and nothing waits. */
static void walker_run(struct walk *w)
{
    struct walkers *sh = w->sh;

    pthread_mutex_lock(&sh->mu);
    for (;;) {
        if (sh->slot_fd >= 0) {
            int fd = sh->slot_fd;
            char *path = sh->slot_path;

            sh->slot_fd = -1;
            sh->slot_path = NULL;
            sh->busy++;
            pthread_mutex_unlock(&sh->mu);
            path_set(w, path);
            free(path);
            walk_taken(w, fd);
            pthread_mutex_lock(&sh->mu);
            sh->busy--;
            continue;
        }
        if (sh->finished || sh->busy == 0) {
            sh->finished = 1;
            pthread_cond_broadcast(&sh->cond);
            break;
        }
        sh->idle++;
        pthread_cond_wait(&sh->cond, &sh->mu);
        sh->idle--;
    }
    pthread_mutex_unlock(&sh->mu);
}

static void *helper_main(void *arg)
{
    /* Runs at its creator's priority: a new thread inherits its nice value and I/O
     * class, so the rescan thread's background priority holds for both walkers. */
    (void)pthread_setname_np(pthread_self(), "cst-scan");
    walker_run(arg);
    return NULL;
}

/* The walk of the folder open as fd (w->path), with a helper that has its own read-only
 * connection to helper_catalog once there is a subfolder to give it. A start-up scan is
 * CPU-bound (a stat and a catalog row per file), so the second core halves it. */
static int walk_parallel(struct walk *w, int fd, const char *helper_catalog)
{
    struct walkers *sh = util_xcalloc(1, sizeof(*sh));
    int rc;

    sh->slot_fd = -1;
    sh->helper_catalog = helper_catalog;
    sh->busy = 1; /* this walker, on the first folder */
    atomic_init(&sh->abort, 0);
    pthread_mutex_init(&sh->mu, NULL);
    pthread_cond_init(&sh->cond, NULL);
    w->sh = sh;
    w->rc = 0;
    walk_taken(w, fd);
    pthread_mutex_lock(&sh->mu);
    sh->busy--;
    pthread_mutex_unlock(&sh->mu);
    rc = w->rc;
    if (sh->helper > 0) {
        walker_run(w);
        pthread_join(sh->thread, NULL);
        w->counts->seen += sh->hc.seen;
        w->counts->queued += sh->hc.queued;
        w->counts->tombstoned += sh->hc.tombstoned;
        w->counts->unprotected += sh->hc.unprotected;
        w->counts->folders += sh->hc.folders;
        w->counts->helper_folders += sh->hc.folders;
        rc = w->rc;
        if (rc >= 0 && sh->h.rc < 0)
            *w->err = sh->herr;
        if (rc >= 0 && (sh->h.rc < 0 || rc == 0))
            rc = sh->h.rc;
        free(sh->h.path);
        catalog_close(sh->h.cat);
    }
    pthread_mutex_destroy(&sh->mu);
    pthread_cond_destroy(&sh->cond);
    free(sh);
    w->sh = NULL;
    return rc;
}

int reconcile_walk(struct catalog *cat, const char *helper_catalog, const char *root,
                   char *const *excludes, size_t n_excludes, reconcile_emit_fn emit_fn, void *arg,
                   const atomic_int *stop, struct reconcile_counts *counts, struct cst_err *err)
{
    struct walk w = {cat, excludes, n_excludes, counts, emit_fn,    arg,  stop,
                     err, NULL,     0,          0,      MAX_LISTED, NULL, 0};
    const char *test_max = getenv("CUSTODIAN_TEST_MAX_LISTED");
    struct stat sb;
    size_t root_len;
    int rc, fd;

    if (test_max && atoll(test_max) >= 0)
        w.max_listed = (size_t)atoll(test_max);

    /* A root that is not there is not a reason to tombstone everything under it:
     * the watcher says it is gone, and status fails until it is back. */
    if (stat(root, &sb) < 0 || !S_ISDIR(sb.st_mode))
        return cst_err_set(err, "watched folder %s is not there", root);
    root_len = strlen(root);
    while (root_len > 1 && root[root_len - 1] == '/')
        root_len--;
    w.path_len = root_len;
    w.path_cap = w.path_len + 256;
    w.path = util_xmalloc(w.path_cap);
    memcpy(w.path, root, w.path_len);
    w.path[w.path_len] = '\0';
    fd = open(w.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENAMETOOLONG) {
            rc = emit(&w, RECONCILE_UNPROTECTED, w.path, "path longer than the system allows");
        } else {
            log_warn("cannot read folder %s: %s", w.path, strerror(errno));
            rc = check_unseen(&w, 1);
        }
    } else if (helper_catalog) {
        rc = walk_parallel(&w, fd, helper_catalog);
    } else {
        rc = walk_dir(&w, fd);
    }
    if (rc == 0) {
        /* Back to the root: a walker of a parallel walk ends on a folder it was given. */
        memcpy(w.path, root, root_len);
        w.path[root_len] = '\0';
        w.path_len = root_len;
        rc = check_pending(&w);
    }
    free(w.path);
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
    case RECONCILE_GONE_FILE:
        /* What the folder holds stays (its files may be queued already); a file there
         * again is its own event's. */
        if (lstat(c->path, &sb) == 0 && !S_ISDIR(sb.st_mode))
            return 0;
        return catalog_record_delete_file(cat, c->path, now, err) < 0 ? -1 : 0;
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
    rc = reconcile_walk(cat, NULL, root, excludes, n_excludes, batch_add, b, NULL, counts, err);
    if (rc == 0 && b->n > 0)
        rc = write_batch(b);
    for (size_t i = 0; i < b->n; i++)
        reconcile_change_clear(&b->c[i]);
    free(b);
    return rc;
}
