/*
 * archive_lib.c - libarchive's function pointers and their loading (see
 * archive_lib.h).
 */
#include "archive_lib.h"

/* libarchive 3.x is libarchive.so.13; another major version would name another library. */
_Static_assert(ARCHIVE_VERSION_NUMBER >= 3000000 && ARCHIVE_VERSION_NUMBER < 4000000,
               "ARCHIVE_LIB_SONAME is libarchive 3.x's; update it for these headers");

ARCHIVE_LIB_SYMBOLS(DLIB_DEFINE)

static const struct dlib_sym archive_syms[] = {ARCHIVE_LIB_SYMBOLS(DLIB_ARG)};

static struct dlib archive = {
    .soname = ARCHIVE_LIB_SONAME,
    .package = ARCHIVE_LIB_PACKAGE,
    .syms = archive_syms,
    .n_syms = sizeof(archive_syms) / sizeof(archive_syms[0]),
    DLIB_STATE_INIT,
};

int archive_lib_load(struct cst_err *err)
{
    return dlib_load(&archive, err);
}
