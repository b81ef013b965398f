/*
 * watcher.c - recursive inotify (see watcher.h).
 *
 * Every folder gets its own watch; wd_paths maps a watch descriptor to its
 * folder's path and is rewritten when a folder is renamed. A folder that
 * appears is watched first and scanned second, so a file created in it in
 * between is seen by one or the other. Renames are paired by cookie; a
 * MOVED_FROM whose MOVED_TO does not follow within a short time was a move
 * out of the trees (lsyncd's rule), i.e. a removal.
 */
#include "watcher.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/inotify.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM |              \
     IN_MOVED_TO | IN_DELETE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
/* A root follows a symlink (the configured path may be one) and reports its own move. */
#define ROOT_MASK ((WATCH_MASK & ~(uint32_t)IN_DONT_FOLLOW) | IN_MOVE_SELF)
/* The parent of a lost root: tells when a folder of that name appears again. */
#define PARENT_MASK (IN_CREATE | IN_MOVED_TO | IN_ONLYDIR | IN_MASK_ADD)
#define PAIR_WAIT 0.05      /* seconds to wait for the MOVED_TO of a MOVED_FROM */
#define UNWATCHED_RESCAN 10 /* seconds between rescans of folders without a watch */
#define ROOT_CHECK 2.0      /* seconds between checks that every root is watched */

struct root {
    char *path; /* as configured (may be a symlink) */
    int wd;     /* -1 while not watched */
    dev_t dev;  /* of the folder watched, to tell a replaced or remounted one */
    ino_t ino;
    int mountpoint; /* it was a mount point when first watched: not mounted = not there */
    int parent_wd;  /* watching its parent for its return, or -1 */
    int no_watches; /* not watched for want of inotify watches: rescanned periodically */
    char why[160];  /* why it is not watched */
};

struct watcher {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer pair_timer;
    ev_timer unwatched_timer;
    struct root *roots;
    size_t n_roots;
    ev_timer root_timer;
    char *const *excludes;
    size_t n_excludes;
    const struct watcher_callbacks *cb;
    void *arg;
    char **wd_paths; /* indexed by wd */
    int wd_cap;
    size_t watch_count;
    int64_t overflows;
    int unwatched;
    int warned_watches;
    /* A MOVED_FROM waiting for its MOVED_TO. */
    uint32_t from_cookie;
    char *from_path;
    int from_is_dir;
};

int watcher_excluded(char *const *excludes, size_t n_excludes, const char *path, const char *name)
{
    for (size_t i = 0; i < n_excludes; i++) {
        /* A glob with a slash matches the whole path, else the name alone. */
        const char *subject = strchr(excludes[i], '/') ? path : name;

        if (fnmatch(excludes[i], subject, 0) == 0)
            return 1;
    }
    return 0;
}

static void set_wd(struct watcher *w, int wd, const char *path)
{
    if (wd >= w->wd_cap) {
        int cap = w->wd_cap ? w->wd_cap : 64;

        while (cap <= wd)
            cap *= 2;
        w->wd_paths = util_xrealloc(w->wd_paths, (size_t)cap * sizeof(char *));
        memset(w->wd_paths + w->wd_cap, 0, (size_t)(cap - w->wd_cap) * sizeof(char *));
        w->wd_cap = cap;
    }
    if (w->wd_paths[wd] == NULL)
        w->watch_count++;
    free(w->wd_paths[wd]);
    w->wd_paths[wd] = util_xstrdup(path);
}

static void drop_wd(struct watcher *w, int wd)
{
    if (wd >= 0 && wd < w->wd_cap && w->wd_paths[wd]) {
        free(w->wd_paths[wd]);
        w->wd_paths[wd] = NULL;
        w->watch_count--;
    }
}

/* Watch dir and every folder below it. Returns 0, or -1 if some folder could
 * not be watched (reported, and covered by periodic rescans). */
static int watch_children(struct watcher *w, const char *dir);

static int watch_tree(struct watcher *w, const char *dir)
{
    int wd = inotify_add_watch(w->fd, dir, WATCH_MASK);

    if (wd < 0) {
        if (errno == ENOSPC) {
            if (!w->warned_watches) {
                log_warn("out of inotify watches: cannot watch %s; raise "
                         "fs.inotify.max_user_watches (sysctl). Folders without a watch are "
                         "rescanned every %d s until then",
                         dir, UNWATCHED_RESCAN);
                w->warned_watches = 1;
            }
            w->unwatched++;
            if (!ev_is_active(&w->unwatched_timer))
                ev_timer_start(w->loop, &w->unwatched_timer);
            return -1;
        }
        if (errno == ENAMETOOLONG && w->cb->unprotected)
            w->cb->unprotected(w->arg, dir, "path longer than the system allows; cannot watch it");
        else if (errno != ENOENT && errno != ENOTDIR)
            log_warn("cannot watch folder %s: %s", dir, strerror(errno));
        return 0;
    }
    set_wd(w, wd, dir);
    return watch_children(w, dir);
}

/* dir (watched already) has no subfolder for certain: its link count is 2 ("." and its
 * entry in the parent) on a filesystem whose folder link counts are known to count the
 * subfolders (GNU find's leaf optimization, with fts's list of such filesystems). A
 * subfolder made after the watch was placed is an IN_CREATE event; one made before it
 * shows in the count, which is read after the watch. Saves reading every leaf folder's
 * listing (100,000 names in 100 folders: 70 ms of the loop at start-up). */
static int is_leaf(const char *dir)
{
    struct stat sb;
    struct statfs sf;

    if (stat(dir, &sb) < 0 || sb.st_nlink != 2 || statfs(dir, &sf) < 0)
        return 0;
    switch ((unsigned long)sf.f_type) {
    case EXT4_SUPER_MAGIC: /* ext2, ext3 and ext4 alike */
    case XFS_SUPER_MAGIC:
    case TMPFS_MAGIC:
        return 1;
    default:
        return 0;
    }
}

/* Watch every folder below dir (dir itself has its watch). */
static int watch_children(struct watcher *w, const char *dir)
{
    int rc = 0;
    DIR *d;
    struct dirent *de;

    if (is_leaf(dir))
        return 0;
    d = opendir(dir);
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        struct stat sb;
        char *child;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        child = util_join(dir, de->d_name);
        if (de->d_type == DT_UNKNOWN && (lstat(child, &sb) < 0 || !S_ISDIR(sb.st_mode))) {
            free(child);
            continue;
        }
        if (!watcher_excluded(w->excludes, w->n_excludes, child, de->d_name) &&
            watch_tree(w, child) < 0)
            rc = -1;
        free(child);
    }
    closedir(d);
    return rc;
}

/* Rewrite the paths of every watch at or below from to live below to. */
static void rename_watches(struct watcher *w, const char *from, const char *to)
{
    size_t n = strlen(from);

    for (int i = 0; i < w->wd_cap; i++) {
        char *p = w->wd_paths[i];

        if (p && strncmp(p, from, n) == 0 && (p[n] == '/' || p[n] == '\0')) {
            w->wd_paths[i] = util_printf("%s%s", to, p + n);
            free(p);
        }
    }
}

static void unwatch_below(struct watcher *w, const char *dir)
{
    size_t n = strlen(dir);

    for (int i = 0; i < w->wd_cap; i++) {
        char *p = w->wd_paths[i];

        if (p && strncmp(p, dir, n) == 0 && (p[n] == '/' || p[n] == '\0')) {
            inotify_rm_watch(w->fd, i);
            drop_wd(w, i);
        }
    }
}

/* --- roots that go away and come back --- */

/* Is path (after symlinks) the root of a mount? A bind mount of a folder on the same
 * filesystem has the same st_dev as its parent, so ask statx, which knows. */
static int is_mountpoint(const char *path, const struct stat *sb)
{
    struct statx stx;

    (void)sb;
    if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx) < 0)
        return 0;
    return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
           (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

static struct root *root_of_wd(struct watcher *w, int wd)
{
    for (size_t i = 0; i < w->n_roots; i++)
        if (w->roots[i].wd == wd)
            return &w->roots[i];
    return NULL;
}

/* Watch the nearest folder above r that exists, to hear of r's return at once. */
static void watch_parent(struct watcher *w, struct root *r)
{
    char *dir = util_xstrdup(r->path);

    while (r->parent_wd < 0) {
        char *slash = strrchr(dir, '/');

        if (slash == NULL)
            break;
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        r->parent_wd = inotify_add_watch(w->fd, dir, PARENT_MASK);
        if (slash == dir)
            break;
    }
    free(dir);
}

static void unwatch_parent(struct watcher *w, struct root *r)
{
    int wd = r->parent_wd;

    r->parent_wd = -1;
    if (wd < 0)
        return;
    for (size_t i = 0; i < w->n_roots; i++)
        if (w->roots[i].parent_wd == wd)
            return; /* another lost root still listens there */
    if (wd < w->wd_cap && w->wd_paths[wd])
        return; /* the parent is a watched folder itself */
    inotify_rm_watch(w->fd, wd);
}

static void root_lost(struct watcher *w, struct root *r, const char *why)
{
    if (r->wd < 0)
        return;
    /* Watches below it follow the old folder wherever it went: drop them all. */
    unwatch_below(w, r->path);
    r->wd = -1;
    snprintf(r->why, sizeof(r->why), "%s", why);
    log_error("watched folder %s is NOT watched: %s; it is watched again and rescanned as soon "
              "as it is back",
              r->path, why);
    watch_parent(w, r);
    if (w->cb->root_state)
        w->cb->root_state(w->arg, r->path, 0, why);
}

/* Watch r and everything below it. 0, or -1 with r->why set. */
static int root_watch(struct watcher *w, struct root *r)
{
    struct stat sb;
    int wd;

    if (stat(r->path, &sb) < 0) {
        snprintf(r->why, sizeof(r->why), "%s", strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(r->why, sizeof(r->why), "not a folder");
        return -1;
    }
    if (r->mountpoint && !is_mountpoint(r->path, &sb)) {
        snprintf(r->why, sizeof(r->why), "not mounted (it was a mount point)");
        return -1;
    }
    wd = inotify_add_watch(w->fd, r->path, ROOT_MASK);
    if (wd < 0 && errno == ENOSPC) {
        snprintf(r->why, sizeof(r->why),
                 "out of inotify watches (raise fs.inotify.max_user_watches); rescanned every "
                 "%d s meanwhile",
                 UNWATCHED_RESCAN);
        if (!w->warned_watches) {
            log_warn("out of inotify watches: cannot watch %s; raise fs.inotify.max_user_watches "
                     "(sysctl). Folders without a watch are rescanned every %d s until then",
                     r->path, UNWATCHED_RESCAN);
            w->warned_watches = 1;
        }
        r->no_watches = 1;
        w->unwatched++;
        if (!ev_is_active(&w->unwatched_timer))
            ev_timer_start(w->loop, &w->unwatched_timer);
        return -2;
    }
    if (wd < 0) {
        snprintf(r->why, sizeof(r->why), "cannot watch it: %s", strerror(errno));
        return -1;
    }
    r->no_watches = 0;
    /* The folder is watched already under another name (a symlink root pointing
     * into another root): refuse loudly rather than ship it twice. */
    if (wd < w->wd_cap && w->wd_paths[wd] && strcmp(w->wd_paths[wd], r->path) != 0) {
        snprintf(r->why, sizeof(r->why), "it is the same folder as %s, watched already",
                 w->wd_paths[wd]);
        return -1;
    }
    r->wd = wd;
    r->dev = sb.st_dev;
    r->ino = sb.st_ino;
    r->why[0] = '\0';
    set_wd(w, wd, r->path);
    watch_children(w, r->path);
    unwatch_parent(w, r);
    return 0;
}

void watcher_check_roots(struct watcher *w)
{
    for (size_t i = 0; i < w->n_roots; i++) {
        struct root *r = &w->roots[i];
        struct stat sb;

        if (r->no_watches)
            continue; /* the out-of-watches timer retries it, and rescans it meanwhile */
        if (r->wd >= 0) {
            if (stat(r->path, &sb) < 0)
                root_lost(w, r, errno == ENOENT ? "deleted or moved away" : strerror(errno));
            else if (sb.st_dev != r->dev || sb.st_ino != r->ino)
                root_lost(w, r,
                          "replaced by another folder (renamed over, remounted, or a "
                          "symlink pointed elsewhere)");
            else if (r->mountpoint && !is_mountpoint(r->path, &sb))
                root_lost(w, r, "unmounted");
            if (r->wd >= 0)
                continue;
        }
        char before[sizeof(r->why)];

        snprintf(before, sizeof(before), "%s", r->why);
        if (root_watch(w, r) < 0) {
            if (strcmp(before, r->why) != 0 && w->cb->root_state) {
                log_error("watched folder %s is NOT watched: %s", r->path, r->why);
                w->cb->root_state(w->arg, r->path, 0, r->why);
            }
            if (r->parent_wd < 0)
                watch_parent(w, r);
            continue;
        }
        log_info("watched folder %s is back: watching it again and rescanning it", r->path);
        if (w->cb->root_state)
            w->cb->root_state(w->arg, r->path, 1, NULL);
        w->cb->rescan(w->arg, r->path);
    }
}

static void on_root_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct watcher *w = t->data;

    (void)loop;
    (void)revents;
    watcher_check_roots(w);
    w->cb->batch_end(w->arg);
}

static void flush_pending_from(struct watcher *w)
{
    char *path = w->from_path;

    if (path == NULL)
        return;
    w->from_path = NULL;
    ev_timer_stop(w->loop, &w->pair_timer);
    if (w->from_is_dir)
        unwatch_below(w, path);
    w->cb->removed(w->arg, path);
    free(path);
}

static void handle_overflow(struct watcher *w)
{
    w->overflows++;
    log_warn("inotify queue overflowed (events were dropped; raise "
             "fs.inotify.max_queued_events); rescanning all folders, rescan=%lld",
             (long long)w->overflows);
    flush_pending_from(w);
    for (size_t i = 0; i < w->n_roots; i++) {
        if (w->roots[i].wd < 0)
            continue; /* lost: rescanned when it is back */
        watch_children(w, w->roots[i].path);
        w->cb->rescan(w->arg, w->roots[i].path);
    }
}

static void handle_event(struct watcher *w, const struct inotify_event *ev)
{
    const char *dir;
    char *path;
    int is_dir = (ev->mask & IN_ISDIR) != 0;

    struct root *r;

    if (ev->mask & IN_Q_OVERFLOW) {
        handle_overflow(w);
        return;
    }
    for (size_t i = 0; i < w->n_roots; i++)
        if (w->roots[i].parent_wd == ev->wd && ev->len > 0 && (ev->mask & IN_ISDIR)) {
            /* Something appeared beside a lost root: is it back? */
            watcher_check_roots(w);
            break;
        }
    r = root_of_wd(w, ev->wd);
    if (r && (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED))) {
        root_lost(w, r,
                  ev->mask & IN_DELETE_SELF ? "deleted"
                  : ev->mask & IN_MOVE_SELF ? "moved away (renamed)"
                  : ev->mask & IN_UNMOUNT   ? "unmounted"
                                            : "its watch was removed");
        if (ev->mask & IN_IGNORED)
            drop_wd(w, ev->wd);
        return;
    }
    if (ev->mask & IN_IGNORED) {
        drop_wd(w, ev->wd);
        return;
    }
    if (ev->wd < 0 || ev->wd >= w->wd_cap || (dir = w->wd_paths[ev->wd]) == NULL)
        return;
    if (ev->len == 0)
        return; /* events about the folder itself (DELETE_SELF): its parent reports them */
    path = util_join(dir, ev->name);
    if (watcher_excluded(w->excludes, w->n_excludes, path, ev->name)) {
        free(path);
        return;
    }
    /* Anything but the MOVED_TO of the pending MOVED_FROM ends the wait for it. */
    if (w->from_path && !((ev->mask & IN_MOVED_TO) && ev->cookie == w->from_cookie))
        flush_pending_from(w);

    if (ev->mask & IN_MOVED_FROM) {
        w->from_path = path;
        w->from_cookie = ev->cookie;
        w->from_is_dir = is_dir;
        return;
    }
    if (ev->mask & IN_MOVED_TO) {
        if (w->from_path && ev->cookie == w->from_cookie) {
            char *from = w->from_path;

            w->from_path = NULL;
            ev_timer_stop(w->loop, &w->pair_timer);
            if (is_dir)
                rename_watches(w, from, path);
            w->cb->moved(w->arg, from, path);
            free(from);
        } else if (is_dir) {
            watch_tree(w, path);
            w->cb->rescan(w->arg, path);
        } else {
            w->cb->changed(w->arg, path, 1);
        }
    } else if (ev->mask & IN_CREATE) {
        if (is_dir) {
            /* Watch first, then scan: files made in between are seen by one or both. */
            watch_tree(w, path);
            w->cb->rescan(w->arg, path);
        } else {
            w->cb->changed(w->arg, path, 0);
        }
    } else if (ev->mask & IN_DELETE) {
        w->cb->removed(w->arg, path);
    } else if (ev->mask & IN_CLOSE_WRITE) {
        w->cb->changed(w->arg, path, 1);
    } else if ((ev->mask & (IN_MODIFY | IN_ATTRIB)) && !is_dir) {
        w->cb->changed(w->arg, path, 0);
    }
    free(path);
}

static void on_readable(struct ev_loop *loop, ev_io *io, int revents)
{
    struct watcher *w = io->data;
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));

    (void)loop;
    (void)revents;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof(buf));

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                log_error("reading inotify events failed: %s", strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;

            handle_event(w, ev);
            p += sizeof(struct inotify_event) + ev->len;
        }
    }
    if (w->from_path && !ev_is_active(&w->pair_timer)) {
        ev_timer_set(&w->pair_timer, PAIR_WAIT, 0.0);
        ev_timer_start(w->loop, &w->pair_timer);
    }
    w->cb->batch_end(w->arg);
}

static void on_pair_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct watcher *w = t->data;

    flush_pending_from(w);
    w->cb->batch_end(w->arg);
}

static void on_unwatched_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct watcher *w = t->data;

    (void)loop;
    (void)revents;
    /* Try again to watch everything; whatever still has no watch is covered by the rescan. */
    w->unwatched = 0;
    for (size_t i = 0; i < w->n_roots; i++) {
        struct root *r = &w->roots[i];

        if (r->wd >= 0) {
            watch_children(w, r->path);
        } else if (r->no_watches && root_watch(w, r) == 0) {
            log_info("watched folder %s has its watch now", r->path);
            if (w->cb->root_state)
                w->cb->root_state(w->arg, r->path, 1, NULL);
        }
    }
    for (size_t i = 0; i < w->n_roots; i++)
        if (w->roots[i].wd >= 0 || w->roots[i].no_watches)
            w->cb->rescan(w->arg, w->roots[i].path);
    w->cb->batch_end(w->arg);
    if (w->unwatched == 0) {
        log_info("every folder is watched again");
        w->warned_watches = 0;
        ev_timer_stop(w->loop, &w->unwatched_timer);
    }
}

struct watcher *watcher_new(struct ev_loop *loop, char *const *roots, size_t n_roots,
                            char *const *excludes, size_t n_excludes,
                            const struct watcher_callbacks *cb, void *arg, struct cst_err *err)
{
    struct watcher *w = util_xcalloc(1, sizeof(*w));

    w->loop = loop;
    w->cb = cb;
    w->arg = arg;
    w->excludes = excludes;
    w->n_excludes = n_excludes;
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        cst_err_sys(err, "cannot start inotify (see fs.inotify.max_user_instances)");
        free(w);
        return NULL;
    }
    ev_timer_init(&w->pair_timer, on_pair_timeout, PAIR_WAIT, 0.0);
    w->pair_timer.data = w;
    ev_timer_init(&w->unwatched_timer, on_unwatched_timer, UNWATCHED_RESCAN, UNWATCHED_RESCAN);
    w->unwatched_timer.data = w;
    ev_timer_init(&w->root_timer, on_root_timer, ROOT_CHECK, ROOT_CHECK);
    w->root_timer.data = w;
    w->roots = util_xcalloc(n_roots, sizeof(*w->roots));
    w->n_roots = n_roots;
    for (size_t i = 0; i < n_roots; i++) {
        struct root *r = &w->roots[i];
        struct stat sb;

        r->path = util_xstrdup(roots[i]);
        r->wd = r->parent_wd = -1;
        /* A root mounted now is expected to stay mounted: an empty folder under it
         * after an unmount is "not there", not "everything was deleted". */
        if (stat(r->path, &sb) == 0)
            r->mountpoint = is_mountpoint(r->path, &sb);
    }
    for (size_t i = 0; i < n_roots; i++)
        if (root_watch(w, &w->roots[i]) == -1) {
            /* A root that cannot be watched at start is a configuration problem. */
            cst_err_set(err, "cannot watch folder %s: %s", w->roots[i].path, w->roots[i].why);
            watcher_free(w);
            return NULL;
        }
    ev_io_init(&w->io, on_readable, w->fd, EV_READ);
    w->io.data = w;
    ev_io_start(loop, &w->io);
    ev_timer_start(loop, &w->root_timer);
    return w;
}

void watcher_free(struct watcher *w)
{
    if (w == NULL)
        return;
    ev_io_stop(w->loop, &w->io);
    ev_timer_stop(w->loop, &w->pair_timer);
    ev_timer_stop(w->loop, &w->unwatched_timer);
    ev_timer_stop(w->loop, &w->root_timer);
    close(w->fd);
    for (int i = 0; i < w->wd_cap; i++)
        free(w->wd_paths[i]);
    free(w->wd_paths);
    for (size_t i = 0; i < w->n_roots; i++)
        free(w->roots[i].path);
    free(w->roots);
    free(w->from_path);
    free(w);
}

size_t watcher_watch_count(const struct watcher *w)
{
    return w->watch_count;
}

int64_t watcher_overflow_count(const struct watcher *w)
{
    return w->overflows;
}

int watcher_unwatched_count(const struct watcher *w)
{
    return w->unwatched;
}

size_t watcher_root_count(const struct watcher *w)
{
    return w->n_roots;
}

void watcher_root_info(const struct watcher *w, size_t i, const char **path, int *watched,
                       const char **why)
{
    *path = w->roots[i].path;
    *watched = w->roots[i].wd >= 0;
    *why = w->roots[i].wd >= 0 ? NULL : w->roots[i].why;
}
