/*
 * test_cmdline.c - agent/cmdline.c: dump_command's words as its quoting
 * rules say (each compared with what /bin/sh makes of the same line where
 * both accept it), the refusals with a position and never the text, and
 * the masking of passwords in what the command prints.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cmdline.h"

static void expect_words(const char *text, int n, ...)
{
    struct cst_err err = {{0}};
    char **argv = NULL;
    va_list ap;
    int got = cmdline_split(text, &argv, &err);

    if (got != n)
        fail_msg("split of <%s>: %d words (%s), want %d", text, got, err.msg, n);
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(argv[i], va_arg(ap, const char *));
    va_end(ap);
    assert_null(argv[n]);
    cmdline_free(argv);
}

/* What /bin/sh makes of the same line (`set -- LINE`, one word per output line). The
 * lines are this file's literals. */
static void same_as_shell(const char *text)
{
    struct cst_err err = {{0}};
    char **argv = NULL, path[] = "/tmp/test_cmdline.XXXXXX", run[64], line[512];
    int n = cmdline_split(text, &argv, &err), i = 0, fd = mkstemp(path);
    FILE *f, *p;

    assert_true(n > 0);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fprintf(f, "set -- %s\nfor a in \"$@\"; do printf '%%s\\n' \"$a\"; done\n", text);
    fclose(f);
    snprintf(run, sizeof(run), "/bin/sh %s", path);
    p = popen(run, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p)) {
        line[strcspn(line, "\n")] = '\0';
        assert_true(i < n);
        if (strcmp(line, argv[i]) != 0)
            fail_msg("<%s>: word %d is <%s>, the shell says <%s>", text, i, argv[i], line);
        i++;
    }
    assert_int_equal(pclose(p), 0);
    unlink(path);
    assert_int_equal(i, n);
    cmdline_free(argv);
}

static void expect_refused(const char *text, const char *why)
{
    struct cst_err err = {{0}};
    char **argv = NULL;

    if (cmdline_split(text, &argv, &err) != -1)
        fail_msg("<%s> was accepted", text);
    if (strstr(err.msg, why) == NULL)
        fail_msg("<%s>: message <%s> does not say <%s>", text, err.msg, why);
    if (strstr(err.msg, "S3cr3t") != NULL)
        fail_msg("<%s>: the message repeats the text: <%s>", text, err.msg);
}

static void test_words(void **state)
{
    (void)state;
    expect_words("mongodump --archive", 2, "mongodump", "--archive");
    expect_words("  docker\texec  mongo   mongodump --archive  ", 5, "docker", "exec", "mongo",
                 "mongodump", "--archive");
    expect_words("cat '/srv/a b/x.archive'", 2, "cat", "/srv/a b/x.archive");
    expect_words("a 'it''s' b", 3, "a", "its", "b");
    expect_words("a '' b", 3, "a", "", "b");
    expect_words("a \"say \\\"hi\\\" \\\\ \\n\" b", 3, "a", "say \"hi\" \\ \\n", "b");
    expect_words("a \\| b\\ c", 3, "a", "|", "b c");
    expect_words("--query='{\"paid\": false}'", 1, "--query={\"paid\": false}");
    expect_words("'$HOME' '*.x' '~/a' 'a|b'", 4, "$HOME", "*.x", "~/a", "a|b");
    expect_words("a~b c#d", 2, "a~b", "c#d");
}

static void test_words_as_the_shell_splits_them(void **state)
{
    (void)state;
    same_as_shell("mongodump --archive");
    same_as_shell("cat '/srv/a b/x.archive' x");
    same_as_shell("a 'it''s' \"q \\\" \\\\ \\n\" b\\ c");
    same_as_shell("x --query='{\"paid\": false}' 'a|b' '$HOME'");
    same_as_shell("a~b c#d");
}

static void test_refused(void **state)
{
    (void)state;
    expect_refused("mongodump --password=S3cr3t | gzip", "an unquoted '|' at character 29");
    expect_refused("a && b", "an unquoted '&' at character 3");
    expect_refused("a; b", "unquoted ';'");
    expect_refused("mongodump > out", "unquoted '>'");
    expect_refused("a < in", "unquoted '<'");
    expect_refused("a $(b)", "unquoted '$'");
    expect_refused("a `b`", "unquoted '`'");
    expect_refused("mongodump --uri=$URI", "unquoted '$'");
    expect_refused("ls *.archive", "unquoted '*'");
    expect_refused("ls x?", "unquoted '?'");
    expect_refused("ls [ab]", "unquoted '['");
    expect_refused("echo {a,b}", "unquoted '{'");
    expect_refused("~/dump.sh", "unquoted '~' at character 1");
    expect_refused("a #comment", "unquoted '#'");
    expect_refused("a (b)", "unquoted '('");
    expect_refused("a 'S3cr3t", "the '...' quote at character 3 is not closed");
    expect_refused("a \"S3cr3t", "the \"...\" quote at character 3 is not closed");
    expect_refused("a \"$S3cr3t\"", "'$' inside \"...\" at character 4");
    expect_refused("a \"`S3cr3t`\"", "'`' inside \"...\"");
    expect_refused("a S3cr3t\\", "ends in a backslash");
    expect_refused("", "no command");
    expect_refused("   \t ", "no command");
    expect_refused("a \x01S3cr3t", "a control character at character 3");
}

static void expect_redacted(const char *text, char *const *argv, const char *want)
{
    char *got = cmdline_redact(text, argv);

    if (strcmp(got, want) != 0)
        fail_msg("redact <%s>: <%s>, want <%s>", text, got, want);
    free(got);
}

static void test_redact(void **state)
{
    char *argv[] = {"mongodump",
                    "--password",
                    "pw one",
                    "--uri=mongodb://backup:p%40ss@db:27017/billing",
                    "MONGO_PASSWORD=envpw",
                    "API_TOKEN=tok123",
                    "-p",
                    "short",
                    "--archive",
                    NULL};

    (void)state;
    /* What the command echoes of its own arguments. */
    expect_redacted("auth failed for 'pw one' and p@ss and p%40ss, envpw, tok123, short", argv,
                    "auth failed for '****' and **** and ****, ****, ****, ****");
    /* Patterns, whatever the arguments: URI passwords of any scheme, --password. */
    expect_redacted("error connecting to mongodb://u:hunter2@h:1/db (timeout)", NULL,
                    "error connecting to mongodb://u:****@h:1/db (timeout)");
    expect_redacted("https://a:b@c/ and sftp://user:x@y@host/p", NULL,
                    "https://a:****@c/ and sftp://user:****@host/p");
    expect_redacted("ran mongodump --password hunter2 --password=zz password=yy", NULL,
                    "ran mongodump --password **** --password=**** password=****");
    expect_redacted("mongodb://host:27017/db, user@host, password: wrong", NULL,
                    "mongodb://host:27017/db, user@host, password: wrong");
    expect_redacted("nothing secret here", argv, "nothing secret here");
    /* A secret containing another is masked whole. */
    {
        char *nested[] = {"x", "--password", "abcabc", "TOKEN=abc", NULL};

        expect_redacted("got abcabc and abc", nested, "got **** and ****");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_words_as_the_shell_splits_them),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_redact),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
