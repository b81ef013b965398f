/*
 * beneath.h - writing only beneath a folder: resolve a relative path under
 * an open folder without ever following a symlink or stepping out with "..",
 * and create a file there that nobody else can see or steer before it is
 * complete.
 *
 * Restores run as root into folders (a --to target, the app's own folders)
 * that other users may be able to write. Everything below the root folder
 * is resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) where the
 * kernel has it (Linux 5.6+), else one component at a time with
 * openat(O_NOFOLLOW); a symlink on the way is an error, never followed.
 * New files are made with O_TMPFILE and linked into place only when
 * complete (or, where the filesystem has no O_TMPFILE, created with O_EXCL
 * under an unpredictable short name), so a planted link receives nothing
 * and a crash leaves nothing in the target folder.
 */
#ifndef CST_BENEATH_H
#define CST_BENEATH_H

#include <sys/types.h>

#include "err.h"

/* 1 while openat2 is used; 0 after the kernel refused it, or when a test sets it to exercise
 * the O_NOFOLLOW walk. */
extern int beneath_use_openat2;

/*
 * Open the folder that holds the last component of rel, beneath root_fd.
 * rel is relative ("app/data/x.pdf"); "//" is read as "/", and an empty,
 * "." or ".." component is refused. Missing folders are created with mode
 * when create is set. On success returns the folder's fd (O_DIRECTORY) and
 * points *leaf at the last component inside rel. root_name is for messages.
 */
int beneath_open_parent(int root_fd, const char *root_name, const char *rel, int create,
                        mode_t mode, const char **leaf, struct cst_err *err);

/*
 * An anonymous file (mode 0600) in dir_fd to be linked in later with
 * beneath_link; *named is then 0. Where the filesystem has no O_TMPFILE it is
 * a new file under an unpredictable name (O_CREAT | O_EXCL | O_NOFOLLOW),
 * returned in tmp_name (at least 32 bytes), and *named is 1.
 */
int beneath_tmpfile(int dir_fd, int *named, char *tmp_name, struct cst_err *err);

/*
 * Give the complete file fd (from beneath_tmpfile) the name leaf in dir_fd.
 * Without replace an existing leaf is never touched (-1, errno EEXIST);
 * with replace it is replaced atomically (a file or symlink; never followed).
 * On failure no name of the file is left in dir_fd.
 */
int beneath_link(int fd, int named, const char *tmp_name, int dir_fd, const char *leaf, int replace,
                 struct cst_err *err);

/* Create the symlink leaf -> target in dir_fd, never replacing unless replace. */
int beneath_symlink(const char *target, int dir_fd, const char *leaf, int replace,
                    struct cst_err *err);

/* A file for scratch data in dir (O_TMPFILE, or mkostemp and unlink), 0600. */
int beneath_scratch_file(const char *dir, struct cst_err *err);

#endif
