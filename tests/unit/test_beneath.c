/*
 * test_beneath.c - common/beneath.c, with openat2 and with the O_NOFOLLOW
 * walk: paths resolve only beneath the root, a symlink or ".." anywhere is
 * refused and nothing is created past it, missing folders are created, a
 * file made with beneath_tmpfile has no name until it is linked, a link
 * never replaces without being asked to and then replaces a symlink rather
 * than following it, and a 255-byte name works.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/beneath.h"

struct fixture {
    char root[64], outside[64];
    int root_fd;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    snprintf(f->root, sizeof(f->root), "/tmp/cst-beneath-XXXXXX");
    snprintf(f->outside, sizeof(f->outside), "/tmp/cst-outside-XXXXXX");
    if (mkdtemp(f->root) == NULL || mkdtemp(f->outside) == NULL)
        return -1;
    f->root_fd = open(f->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    *state = f;
    return f->root_fd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[256];

    close(f->root_fd);
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s", f->root, f->outside);
    if (system(cmd) != 0)
        return -1;
    free(f);
    beneath_use_openat2 = 1;
    return 0;
}

static int count_entries(const char *dir)
{
    char cmd[256];
    FILE *p;
    int n = -1;

    snprintf(cmd, sizeof(cmd), "find %s -mindepth 1 | wc -l", dir);
    p = popen(cmd, "r");
    if (p == NULL || fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p)
        pclose(p);
    return n;
}

static void put(struct fixture *f, const char *rel, const char *text, int replace, int expect)
{
    struct cst_err err = {{0}};
    const char *leaf;
    char tmp[32];
    int dir = beneath_open_parent(f->root_fd, f->root, rel, 1, 0700, &leaf, &err), fd, named;

    assert_true(dir >= 0);
    fd = beneath_tmpfile(dir, &named, tmp, &err);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(beneath_link(fd, named, tmp, dir, leaf, replace, &err), expect);
    close(fd);
    close(dir);
}

static char *slurp(const char *path)
{
    static char buf[256];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

    if (fd >= 0)
        close(fd);
    buf[n < 0 ? 0 : n] = '\0';
    return buf;
}

static void refused(struct fixture *f, const char *rel, const char *needle)
{
    struct cst_err err = {{0}};
    const char *leaf;
    int dir = beneath_open_parent(f->root_fd, f->root, rel, 1, 0700, &leaf, &err);

    if (dir >= 0)
        fail_msg("%s was resolved", rel);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("%s: %s (expected %s)", rel, err.msg, needle);
}

static void run_resolution(void **state)
{
    struct fixture *f = *state;
    char path[512], link[512];

    /* Missing folders are created; "//" is read as "/". */
    put(f, "a/b//c/file", "one", 0, 0);
    snprintf(path, sizeof(path), "%s/a/b/c/file", f->root);
    assert_string_equal(slurp(path), "one");

    /* A symlink below the root, to a folder outside: refused, nothing made there. */
    snprintf(link, sizeof(link), "%s/a/b/evil", f->root);
    assert_int_equal(symlink(f->outside, link), 0);
    refused(f, "a/b/evil/file", "is a symlink or not a folder");
    refused(f, "a/b/evil/x/y/file", "a/b/evil is a symlink");
    assert_int_equal(count_entries(f->outside), 0);
    /* A symlink to a folder inside the root is refused too: nothing is followed. */
    snprintf(link, sizeof(link), "%s/inner", f->root);
    assert_int_equal(symlink("a/b", link), 0);
    refused(f, "inner/c/file", "inner is a symlink");

    /* ".." and "." never; nor an absolute path or a folder name. */
    refused(f, "a/../../etc/passwd", "'..'");
    refused(f, "../x", "'..'");
    refused(f, "a/./x", "'.'");
    refused(f, "/etc/passwd", "not a relative path");
    refused(f, "a/b/", "names a folder");
    refused(f, "", "not a relative path");
    assert_int_equal(count_entries(f->outside), 0);
}

static void test_resolution_openat2(void **state)
{
    beneath_use_openat2 = 1;
    run_resolution(state);
}

static void test_resolution_walk(void **state)
{
    beneath_use_openat2 = 0;
    run_resolution(state);
}

static void test_link_never_replaces_unless_asked(void **state)
{
    struct fixture *f = *state;
    char path[512], target[512];
    struct stat st;

    put(f, "doc", "first", 0, 0);
    put(f, "doc", "second", 0, -1);
    snprintf(path, sizeof(path), "%s/doc", f->root);
    assert_string_equal(slurp(path), "first");
    /* A symlink at the name: not replaced without asking, never written through. */
    snprintf(target, sizeof(target), "%s/stolen", f->outside);
    snprintf(path, sizeof(path), "%s/planted", f->root);
    assert_int_equal(symlink(target, path), 0);
    put(f, "planted", "secret", 0, -1);
    assert_int_equal(access(target, F_OK), -1);
    put(f, "planted", "secret", 1, 0);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_string_equal(slurp(path), "secret");
    assert_int_equal(access(target, F_OK), -1);
    /* Only the two names: no temporary name left beside them. */
    assert_int_equal(count_entries(f->root), 2);
}

static void test_tmpfile_has_no_name_until_linked(void **state)
{
    struct fixture *f = *state;
    struct cst_err err = {{0}};
    char tmp[32], name[256];
    const char *leaf;
    int dir, fd, named;

    memset(name, 'n', 255);
    name[255] = '\0';
    dir = beneath_open_parent(f->root_fd, f->root, name, 1, 0700, &leaf, &err);
    assert_true(dir >= 0);
    fd = beneath_tmpfile(dir, &named, tmp, &err);
    assert_true(fd >= 0);
    assert_int_equal(named, 0); /* tmpfs and ext4 have O_TMPFILE */
    assert_int_equal(count_entries(f->root), 0);
    assert_int_equal(beneath_link(fd, named, tmp, dir, leaf, 0, &err), 0);
    assert_int_equal(count_entries(f->root), 1);
    close(fd);
    close(dir);
    /* A symlink is created, not followed, and not over an existing name. */
    dir = beneath_open_parent(f->root_fd, f->root, "ln", 1, 0700, &leaf, &err);
    assert_int_equal(beneath_symlink("../../etc", dir, leaf, 0, &err), 0);
    assert_int_equal(beneath_symlink("other", dir, leaf, 0, &err), -1);
    assert_int_equal(beneath_symlink("other", dir, leaf, 1, &err), 0);
    close(dir);
    assert_int_equal(count_entries(f->root), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_resolution_openat2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resolution_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_never_replaces_unless_asked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmpfile_has_no_name_until_linked, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
