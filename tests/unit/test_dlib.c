/*
 * test_dlib.c - common/dlib.c and the two libraries loaded with it
 * (agent/mongoc_lib.c, agent/archive_lib.c): a library that is not there
 * fails with an error naming its soname, its Debian package and dlerror()'s
 * text, and fails again the same way without another attempt; a missing
 * symbol is named and leaves no pointer set (all or none); a good library
 * resolves typed pointers that work, once, from many threads at a time;
 * libmongoc and libarchive load under the sonames the build links against,
 * and their pointers are the libraries' functions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "agent/archive_lib.h"
#include "agent/mongoc_lib.h"
#include "common/dlib.h"

/* Functions of libc (always there), resolved as a library module would. */
static __typeof__(strlen) *sym_strlen;
static __typeof__(strnlen) *sym_strnlen;

/* A name no library defines, declared only to be listed. */
int custodian_no_such_function(int);

static __typeof__(custodian_no_such_function) *sym_custodian_no_such_function;

static void test_missing_library(void **state)
{
    static const struct dlib_sym syms[] = {DLIB_ARG(strlen)};
    struct dlib lib = {
        .soname = "libcustodian-test-absent.so.0",
        .package = "custodian-test-absent0",
        .syms = syms,
        .n_syms = 1,
        DLIB_STATE_INIT,
    };
    struct cst_err err = {""}, again = {""};

    (void)state;
    sym_strlen = NULL;
    assert_int_equal(dlib_load(&lib, &err), -1);
    /* what failed, what to install, and the loader's own words */
    assert_non_null(strstr(err.msg, "cannot load libcustodian-test-absent.so.0"));
    assert_non_null(strstr(err.msg, "(Debian package custodian-test-absent0)"));
    assert_non_null(strstr(err.msg, "cannot open shared object file"));
    assert_null(sym_strlen);
    /* kept: the same error, no second attempt */
    assert_int_equal(dlib_load(&lib, &again), -1);
    assert_string_equal(again.msg, err.msg);
    assert_null(lib.handle);
}

static void test_missing_symbol_sets_none(void **state)
{
    /* strlen resolves first, then the absent one fails: strlen must not stay set */
    static const struct dlib_sym syms[] = {DLIB_ARG(strlen) DLIB_ARG(custodian_no_such_function)
                                               DLIB_ARG(strnlen)};
    struct dlib lib = {
        .soname = "libc.so.6",
        .package = "libc6",
        .syms = syms,
        .n_syms = 3,
        DLIB_STATE_INIT,
    };
    struct cst_err err = {""};

    (void)state;
    sym_strlen = NULL;
    sym_strnlen = NULL;
    assert_int_equal(dlib_load(&lib, &err), -1);
    assert_non_null(strstr(err.msg, "cannot load libc.so.6 (Debian package libc6)"));
    assert_non_null(strstr(err.msg, "symbol custodian_no_such_function"));
    assert_non_null(strstr(err.msg, "undefined symbol"));
    assert_null(sym_strlen);
    assert_null(sym_custodian_no_such_function);
    assert_null(sym_strnlen);
    assert_null(lib.handle);
}

static const struct dlib_sym libc_syms[] = {DLIB_ARG(strlen) DLIB_ARG(strnlen)};
static struct dlib libc_lib = {
    .soname = "libc.so.6",
    .package = "libc6",
    .syms = libc_syms,
    .n_syms = 2,
    DLIB_STATE_INIT,
};

static void *load_libc(void *arg)
{
    struct cst_err err;

    (void)arg;
    return (void *)(intptr_t)dlib_load(&libc_lib, &err);
}

static void test_resolves_once_from_threads(void **state)
{
    pthread_t th[8];
    void *handle;

    (void)state;
    sym_strlen = NULL;
    sym_strnlen = NULL;
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, load_libc, NULL), 0);
    for (size_t i = 0; i < 8; i++) {
        void *rc;

        assert_int_equal(pthread_join(th[i], &rc), 0);
        assert_int_equal((int)(intptr_t)rc, 0);
    }
    assert_non_null(sym_strlen);
    assert_int_equal(sym_strlen("custodian"), 9);
    assert_int_equal(sym_strnlen("custodian", 4), 4);
    /* a later call neither reopens nor moves anything */
    handle = libc_lib.handle;
    assert_null(load_libc(NULL));
    assert_ptr_equal(libc_lib.handle, handle);
}

static void test_mongoc_loads(void **state)
{
    struct cst_err err = {""};
    bson_error_t error;
    mongoc_uri_t *uri;

    (void)state;
    if (mongoc_lib_load(&err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(mongoc_lib_load(&err), 0);
    /* every pointer of the list is set, and they are libmongoc's */
    assert_non_null(sym_mongoc_init);
    assert_non_null(sym_mongoc_uri_set_appname);
    sym_mongoc_init();
    uri = sym_mongoc_uri_new_with_error("mongodb://db.example:27018/billing", &error);
    assert_non_null(uri);
    assert_string_equal(sym_mongoc_uri_get_database(uri), "billing");
    sym_mongoc_uri_destroy(uri);
    assert_null(sym_mongoc_uri_new_with_error("http://not-mongodb", &error));
    sym_mongoc_cleanup();
}

static void test_archive_loads(void **state)
{
    struct cst_err err = {""};
    struct archive *a;
    struct archive_entry *e;

    (void)state;
    if (archive_lib_load(&err) != 0)
        fail_msg("%s", err.msg);
    a = sym_archive_write_new();
    assert_non_null(a);
    assert_int_equal(sym_archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    sym_archive_write_free(a);
    e = sym_archive_entry_new();
    sym_archive_entry_set_size(e, 4096);
    assert_int_equal(sym_archive_entry_size(e), 4096);
    sym_archive_entry_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_missing_symbol_sets_none),
        cmocka_unit_test(test_resolves_once_from_threads),
        cmocka_unit_test(test_mongoc_loads),
        cmocka_unit_test(test_archive_loads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
