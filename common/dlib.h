/*
 * dlib.h - a shared library opened only when a command first needs it
 * (dlopen), so that processes which never need it, the agent above all,
 * never map it nor the libraries it pulls in.
 *
 * The shape is systemd's (src/shared/dlfcn-util.h): each function used is
 * called through a pointer named sym_<function>, typed from the library's
 * own header with __typeof__, so a call through it is checked exactly like
 * a direct call; the pointers are resolved together, once, and either all
 * are set or none is. A library module (agent/mongoc_lib.h,
 * agent/archive_lib.h) lists its functions once, as an X-macro, and expands
 * the list with DLIB_DECLARE in its header, DLIB_DEFINE and DLIB_ARG in its
 * .c; its _load() is called by every entry point before the first call.
 *
 * The library is left out of the link line, so a direct call to one of its
 * functions does not link: nothing can bypass the pointers by accident.
 */
#ifndef CST_DLIB_H
#define CST_DLIB_H

#include <pthread.h>
#include <stddef.h>

#include "common/err.h"

/* One function to resolve: where its pointer lives, and its name in the library. */
struct dlib_sym {
    void *slot; /* the address of a sym_<name> pointer */
    const char *name;
};

/* In the library module's header: extern pointer for function f. */
#define DLIB_DECLARE(f) extern __typeof__(f) *sym_##f;
/* In its .c: the pointer, NULL until the library is loaded. */
#define DLIB_DEFINE(f) __typeof__(f) *sym_##f;
/* In its .c: f's entry in the table given to struct dlib. */
#define DLIB_ARG(f) {&sym_##f, #f},

struct dlib {
    const char *soname;  /* what dlopen gets: the soname the build links against */
    const char *package; /* the Debian package that ships it, named in errors */
    const struct dlib_sym *syms;
    size_t n_syms;
    /* Kept by dlib_load; zero-initialised (with DLIB_STATE_INIT for mu). */
    pthread_mutex_t mu;
    int tried;    /* loaded once: handle set, or why says why not */
    void *handle; /* never closed once every symbol resolved */
    char why[CST_ERR_SIZE];
};

#define DLIB_STATE_INIT .mu = PTHREAD_MUTEX_INITIALIZER

/*
 * Open lib and resolve every symbol, the first time only; any thread. 0 when
 * every sym_ pointer is set; -1 with err = "cannot load <soname> (Debian
 * package <package>): <dlerror()>" (the symbol named too when one is
 * missing) and every pointer NULL. A failure is kept: later calls return it
 * again without another attempt.
 */
int dlib_load(struct dlib *lib, struct cst_err *err);

#endif
