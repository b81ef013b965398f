/*
 * mongoc_lib.c - libmongoc's function pointers and their loading (see
 * mongoc_lib.h).
 */
#include "mongoc_lib.h"

/* libmongoc 1.x is libmongoc-1.0.so.0; a 2.x header would name another library. */
_Static_assert(MONGOC_MAJOR_VERSION == 1,
               "MONGOC_LIB_SONAME is libmongoc 1.x's; update it for these headers");

MONGOC_LIB_SYMBOLS(DLIB_DEFINE)

static const struct dlib_sym mongoc_syms[] = {MONGOC_LIB_SYMBOLS(DLIB_ARG)};

static struct dlib mongoc = {
    .soname = MONGOC_LIB_SONAME,
    .package = MONGOC_LIB_PACKAGE,
    .syms = mongoc_syms,
    .n_syms = sizeof(mongoc_syms) / sizeof(mongoc_syms[0]),
    DLIB_STATE_INIT,
};

int mongoc_lib_load(struct cst_err *err)
{
    return dlib_load(&mongoc, err);
}
