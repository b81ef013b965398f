/*
 * dlib.c - opening a library on first use and resolving its functions
 * (see dlib.h).
 */
#include "dlib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* dlsym gives a function's address as a void *: POSIX guarantees it fits a function pointer. */
_Static_assert(sizeof(void *) == sizeof(void (*)(void)),
               "a function pointer must be the size of a data pointer (POSIX dlsym)");

static void set_all(const struct dlib *lib, void *value)
{
    /* memcpy, not a store through a (void **) cast: the slots are function pointers */
    for (size_t i = 0; i < lib->n_syms; i++)
        memcpy(lib->syms[i].slot, &value, sizeof(value));
}

static void open_once(struct dlib *lib)
{
    const char *why;

    /* RTLD_NOW: every undefined symbol of the library (and its dependencies) is bound here,
     * so a broken installation fails now, with an error, not later at some first call. */
    lib->handle = dlopen(lib->soname, RTLD_NOW | RTLD_LOCAL);
    if (lib->handle == NULL) {
        why = dlerror();
        snprintf(lib->why, sizeof(lib->why), "cannot load %s (Debian package %s): %s", lib->soname,
                 lib->package, why ? why : "dlopen failed");
        return;
    }
    for (size_t i = 0; i < lib->n_syms; i++) {
        void *fn;

        dlerror(); /* forget an older error: dlsym's NULL alone is not one */
        fn = dlsym(lib->handle, lib->syms[i].name);
        if (fn == NULL) {
            why = dlerror();
            snprintf(lib->why, sizeof(lib->why),
                     "cannot load %s (Debian package %s): symbol %s: %s", lib->soname, lib->package,
                     lib->syms[i].name, why ? why : "resolved to NULL");
            /* all or none: no caller may see half a library */
            set_all(lib, NULL);
            dlclose(lib->handle);
            lib->handle = NULL;
            return;
        }
        memcpy(lib->syms[i].slot, &fn, sizeof(fn));
    }
}

int dlib_load(struct dlib *lib, struct cst_err *err)
{
    int rc;

    pthread_mutex_lock(&lib->mu);
    if (!lib->tried) {
        open_once(lib);
        lib->tried = 1;
    }
    rc = lib->handle != NULL ? 0 : cst_err_set(err, "%s", lib->why);
    pthread_mutex_unlock(&lib->mu);
    return rc;
}
