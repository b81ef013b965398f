/*
 * archive_lib.h - libarchive, loaded when a command first writes or reads a
 * billing-cycle snapshot package (agent/snapshot_tar.c), never in the
 * agent's own process: with its dependency tree (libxml2, libicu, nettle,
 * lz4, ...) it maps memory the agent has no use for. See common/dlib.h for
 * the pattern.
 *
 * Call archive_lib_load() before any sym_archive_* pointer below;
 * tar_writer_new() and tar_each(), which every call passes through, do.
 * The commands that need it (snapshot, restore snapshot, verify snapshot
 * with the secret key) load it before they record anything; the restore
 * test's snapshot check reports the load error as its own failure.
 */
#ifndef CST_ARCHIVE_LIB_H
#define CST_ARCHIVE_LIB_H

#include <archive.h>
#include <archive_entry.h>

#include "common/dlib.h"
#include "common/err.h"

/* The soname the build links against; its major version is checked against the headers in
 * archive_lib.c. */
#define ARCHIVE_LIB_SONAME "libarchive.so.13"
#define ARCHIVE_LIB_PACKAGE "libarchive13"

/* Every libarchive function custodian calls; a call to one not listed does not link. */
/* clang-format off */
#define ARCHIVE_LIB_SYMBOLS(X)                                                                     \
    X(archive_entry_filetype)                                                                      \
    X(archive_entry_free)                                                                          \
    X(archive_entry_new)                                                                           \
    X(archive_entry_pathname)                                                                      \
    X(archive_entry_pathname_utf8)                                                                 \
    X(archive_entry_set_filetype)                                                                  \
    X(archive_entry_set_mtime)                                                                     \
    X(archive_entry_set_pathname_utf8)                                                             \
    X(archive_entry_set_perm)                                                                      \
    X(archive_entry_set_size)                                                                      \
    X(archive_entry_size)                                                                          \
    X(archive_error_string)                                                                        \
    X(archive_read_data)                                                                           \
    X(archive_read_free)                                                                           \
    X(archive_read_new)                                                                            \
    X(archive_read_next_header)                                                                    \
    X(archive_read_open_fd)                                                                        \
    X(archive_read_support_filter_zstd)                                                            \
    X(archive_read_support_format_tar)                                                             \
    X(archive_set_error)                                                                           \
    X(archive_write_add_filter_zstd)                                                               \
    X(archive_write_close)                                                                         \
    X(archive_write_data)                                                                          \
    X(archive_write_finish_entry)                                                                  \
    X(archive_write_free)                                                                          \
    X(archive_write_header)                                                                        \
    X(archive_write_new)                                                                           \
    X(archive_write_open)                                                                          \
    X(archive_write_set_bytes_in_last_block)                                                       \
    X(archive_write_set_bytes_per_block)                                                           \
    X(archive_write_set_filter_option)                                                             \
    X(archive_write_set_format_pax_restricted)                                                     \
    X(archive_write_set_options)
/* clang-format on */

ARCHIVE_LIB_SYMBOLS(DLIB_DECLARE)

/* Load libarchive and resolve every pointer, once per process (any thread); -1 with err
 * naming the soname, the package and dlerror()'s text. */
int archive_lib_load(struct cst_err *err);

#endif
