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
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM |              \
     IN_MOVED_TO | IN_DELETE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
#define PAIR_WAIT 0.05      /* seconds to wait for the MOVED_TO of a MOVED_FROM */
#define UNWATCHED_RESCAN 10 /* seconds between rescans of folders without a watch */

struct watcher {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    ev_timer pair_timer;
    ev_timer unwatched_timer;
    char **roots;
    size_t n_roots;
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
static int watch_tree(struct watcher *w, const char *dir)
{
    int wd = inotify_add_watch(w->fd, dir, WATCH_MASK);
    int rc = 0;
    DIR *d;
    struct dirent *de;

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
        if (errno != ENOENT && errno != ENOTDIR)
            log_warn("cannot watch folder %s: %s", dir, strerror(errno));
        return 0;
    }
    set_wd(w, wd, dir);
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
        watch_tree(w, w->roots[i]);
        w->cb->rescan(w->arg, w->roots[i]);
    }
}

static void handle_event(struct watcher *w, const struct inotify_event *ev)
{
    const char *dir;
    char *path;
    int is_dir = (ev->mask & IN_ISDIR) != 0;

    if (ev->mask & IN_Q_OVERFLOW) {
        handle_overflow(w);
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
    for (size_t i = 0; i < w->n_roots; i++)
        watch_tree(w, w->roots[i]);
    for (size_t i = 0; i < w->n_roots; i++)
        w->cb->rescan(w->arg, w->roots[i]);
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
    w->roots = util_xcalloc(n_roots, sizeof(char *));
    w->n_roots = n_roots;
    for (size_t i = 0; i < n_roots; i++) {
        w->roots[i] = util_xstrdup(roots[i]);
        watch_tree(w, roots[i]);
    }
    ev_io_init(&w->io, on_readable, w->fd, EV_READ);
    w->io.data = w;
    ev_io_start(loop, &w->io);
    return w;
}

void watcher_free(struct watcher *w)
{
    if (w == NULL)
        return;
    ev_io_stop(w->loop, &w->io);
    ev_timer_stop(w->loop, &w->pair_timer);
    ev_timer_stop(w->loop, &w->unwatched_timer);
    close(w->fd);
    for (int i = 0; i < w->wd_cap; i++)
        free(w->wd_paths[i]);
    free(w->wd_paths);
    for (size_t i = 0; i < w->n_roots; i++)
        free(w->roots[i]);
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
