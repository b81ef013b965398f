/*
 * beneath.c - resolving and creating beneath a folder (see beneath.h).
 */
#include "beneath.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#define RESOLVE_FLAGS (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

/* 1 until openat2 turns out to be missing (an older kernel, or a seccomp filter that denies
 * it); the CLI that restores is single-threaded. */
int beneath_use_openat2 = 1;

/* The folder at path below dir_fd through openat2, never through a symlink or "..";
 * -1 with errno ENOSYS once openat2 is known to be missing. */
static int openat2_dir(int dir_fd, const char *path)
{
    struct open_how how;
    int fd;

    if (!beneath_use_openat2) {
        errno = ENOSYS;
        return -1;
    }
    memset(&how, 0, sizeof(how));
    how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_FLAGS;
    fd = (int)syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
    /* EPERM: a container's seccomp filter that predates openat2. */
    if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
        beneath_use_openat2 = 0;
        errno = ENOSYS;
    }
    return fd;
}

/* One folder (a single name) below dir_fd, never through a symlink. */
static int open_component(int dir_fd, const char *name)
{
    int fd = openat2_dir(dir_fd, name);

    if (fd >= 0 || errno != ENOSYS)
        return fd;
    /* The O_NOFOLLOW walk: safe because name is one component, and never "..". */
    return openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Components of rel are plain names: nothing empty at the end, no "." or "..". */
static int check_rel(const char *root_name, const char *rel, struct cst_err *err)
{
    const char *p = rel;

    if (rel[0] == '/' || rel[0] == '\0')
        return cst_err_set(err, "%s: not a relative path below %s", rel, root_name);
    while (*p) {
        size_t n = strcspn(p, "/");

        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return cst_err_set(err, "%s/%s: a '.' or '..' in the path is refused", root_name, rel);
        p += n;
        while (*p == '/')
            p++;
    }
    if (rel[strlen(rel) - 1] == '/')
        return cst_err_set(err, "%s/%s: names a folder, not a file", root_name, rel);
    return 0;
}

static int refuse_component(const char *root_name, const char *rel, size_t upto,
                            struct cst_err *err)
{
    int saved = errno;

    if (saved == ELOOP || saved == ENOTDIR || saved == EXDEV)
        return cst_err_set(err,
                           "%s/%.*s is a symlink or not a folder; restore never follows a "
                           "symlink below %s",
                           root_name, (int)upto, rel, root_name);
    errno = saved;
    return cst_err_sys(err, "cannot open folder %s/%.*s", root_name, (int)upto, rel);
}

/* Open each component of parent below dir_fd in turn, creating what is missing. */
static int walk(int root_fd, const char *root_name, const char *parent, int create, mode_t mode,
                struct cst_err *err)
{
    int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);

    if (fd < 0)
        return cst_err_sys(err, "cannot use folder %s", root_name);
    for (const char *p = parent; *p;) {
        size_t n = strcspn(p, "/");
        char *name = util_xmalloc(n + 1);
        int next, reported = 0;

        memcpy(name, p, n);
        name[n] = '\0';
        next = open_component(fd, name);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, name, mode) == 0 || errno == EEXIST)
                next = open_component(fd, name);
            else
                reported = cst_err_sys(err, "cannot create folder %s/%.*s", root_name,
                                       (int)(p + n - parent), parent);
        }
        if (next < 0 && reported == 0)
            refuse_component(root_name, parent, (size_t)(p + n - parent), err);
        free(name);
        close(fd);
        if (next < 0)
            return -1;
        fd = next;
        p += n;
        while (*p == '/')
            p++;
    }
    return fd;
}

int beneath_open_parent(int root_fd, const char *root_name, const char *rel, int create,
                        mode_t mode, const char **leaf, struct cst_err *err)
{
    const char *last;
    char *parent;
    int fd;

    if (check_rel(root_name, rel, err) < 0)
        return -1;
    last = strrchr(rel, '/');
    *leaf = last ? last + 1 : rel;
    parent = util_xmalloc(last ? (size_t)(last - rel) + 1 : 1);
    if (last)
        memcpy(parent, rel, (size_t)(last - rel));
    parent[last ? last - rel : 0] = '\0';
    /* Usually the folders exist and one openat2 resolves them all; otherwise the walk
     * creates what is missing, or names the component that is refused. */
    if (parent[0] != '\0' && (fd = openat2_dir(root_fd, parent)) >= 0) {
        free(parent);
        return fd;
    }
    fd = walk(root_fd, root_name, parent, create, mode, err);
    free(parent);
    return fd;
}

/* ".cst-" and 12 random hex digits: short (a 255-byte leaf still fits) and unguessable. */
static void random_name(char out[32])
{
    unsigned char r[6];
    size_t got = 0;

    while (got < sizeof(r)) {
        ssize_t n = getrandom(r + got, sizeof(r) - got, 0);

        if (n > 0)
            got += (size_t)n;
        else if (errno != EINTR)
            abort(); /* the kernel's random source cannot fail after boot */
    }
    snprintf(out, 32, ".cst-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
}

int beneath_tmpfile(int dir_fd, int *named, char *tmp_name, struct cst_err *err)
{
    int fd = openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

    *named = 0;
    tmp_name[0] = '\0';
    if (fd >= 0)
        return fd;
    if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
        return cst_err_sys(err, "cannot create a file");
    /* No O_TMPFILE here (some network filesystems): a fresh name only we can know. */
    for (int tries = 0; tries < 16; tries++) {
        random_name(tmp_name);
        fd = openat(dir_fd, tmp_name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            *named = 1;
            return fd;
        }
        if (errno != EEXIST)
            break;
    }
    return cst_err_sys(err, "cannot create a temporary file");
}

/* Name the anonymous file fd as name in dir_fd (EEXIST if taken). */
static int link_anonymous(int fd, int dir_fd, const char *name)
{
    char proc[64];

    if (linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) == 0)
        return 0;
    if (errno != ENOENT && errno != EPERM)
        return -1;
    /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc gives the same without it. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    return linkat(AT_FDCWD, proc, dir_fd, name, AT_SYMLINK_FOLLOW);
}

/* Put the fresh name tmp over leaf, or next to nothing (no replace): the last step. */
static int rename_into_place(int dir_fd, const char *tmp, const char *leaf, int replace)
{
    if (replace)
        return renameat(dir_fd, tmp, dir_fd, leaf);
    if (renameat2(dir_fd, tmp, dir_fd, leaf, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno != EINVAL && errno != ENOSYS)
        return -1;
    /* No RENAME_NOREPLACE on this filesystem: link fails on an existing name too. */
    if (linkat(dir_fd, tmp, dir_fd, leaf, 0) < 0)
        return -1;
    unlinkat(dir_fd, tmp, 0);
    return 0;
}

int beneath_link(int fd, int named, const char *tmp_name, int dir_fd, const char *leaf, int replace,
                 struct cst_err *err)
{
    char tmp[32];

    if (named) {
        if (rename_into_place(dir_fd, tmp_name, leaf, replace) == 0)
            return 0;
        cst_err_sys(err, "cannot move the file into place as %s", leaf);
        unlinkat(dir_fd, tmp_name, 0);
        return -1;
    }
    if (!replace) {
        if (link_anonymous(fd, dir_fd, leaf) == 0)
            return 0;
        return cst_err_sys(err, "cannot link the file into place as %s", leaf);
    }
    /* Replacing: link under a fresh name, then rename over the old one atomically. */
    for (int tries = 0;; tries++) {
        random_name(tmp);
        if (link_anonymous(fd, dir_fd, tmp) == 0)
            break;
        if (errno != EEXIST || tries == 15)
            return cst_err_sys(err, "cannot link the file into place as %s", leaf);
    }
    if (renameat(dir_fd, tmp, dir_fd, leaf) == 0)
        return 0;
    cst_err_sys(err, "cannot move the file into place as %s", leaf);
    unlinkat(dir_fd, tmp, 0);
    return -1;
}

int beneath_symlink(const char *target, int dir_fd, const char *leaf, int replace,
                    struct cst_err *err)
{
    char tmp[32];

    if (!replace) {
        if (symlinkat(target, dir_fd, leaf) == 0)
            return 0;
        return cst_err_sys(err, "cannot create symlink %s", leaf);
    }
    for (int tries = 0;; tries++) {
        random_name(tmp);
        if (symlinkat(target, dir_fd, tmp) == 0)
            break;
        if (errno != EEXIST || tries == 15)
            return cst_err_sys(err, "cannot create symlink %s", leaf);
    }
    if (renameat(dir_fd, tmp, dir_fd, leaf) == 0)
        return 0;
    cst_err_sys(err, "cannot move symlink into place as %s", leaf);
    unlinkat(dir_fd, tmp, 0);
    return -1;
}

int beneath_scratch_file(const char *dir, struct cst_err *err)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    char *path;

    if (fd >= 0)
        return fd;
    path = util_join(dir, "scratch.XXXXXX");
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        cst_err_sys(err, "cannot create a temporary file in %s", dir);
    else
        unlink(path);
    free(path);
    return fd;
}
