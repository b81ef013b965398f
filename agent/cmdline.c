/*
 * cmdline.c - splitting an operator's command line into words, and masking
 * what it holds that must not reach a log, an error or the catalog (see
 * cmdline.h for the quoting rules).
 *
 * Why no shell: `sh -c` put the whole line in ps, made every message about
 * the command quote it (passwords included), and gave the line a second
 * meaning (expansions, globs) that an operator rarely means in a config
 * file. The rules are a small, strict subset of the shell's, and what the
 * shell would treat specially is refused rather than taken literally, so a
 * line never silently means something else than it would in a shell.
 */
#include "cmdline.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

static const char shell_specials[] = "|&;<>()$`*?[]{}";

static void push(char ***argv, size_t *n, size_t *cap, const char *word, size_t len)
{
    if (*n + 2 > *cap) {
        *cap *= 2;
        *argv = util_xrealloc(*argv, *cap * sizeof(**argv));
    }
    (*argv)[*n] = util_xmalloc(len + 1);
    memcpy((*argv)[*n], word, len);
    (*argv)[*n][len] = '\0';
    (*n)++;
    (*argv)[*n] = NULL;
}

int cmdline_split(const char *text, char ***out, struct cst_err *err)
{
    size_t cap = 4, n = 0, wl = 0;
    char **argv = util_xcalloc(cap, sizeof(*argv));
    char *word = util_xmalloc(strlen(text) + 1);
    const char *p = text;
    int in_word = 0;

    for (;;) {
        unsigned char c = (unsigned char)*p;
        size_t at = (size_t)(p - text) + 1;

        if (c == '\0' || c == ' ' || c == '\t') {
            if (in_word)
                push(&argv, &n, &cap, word, wl);
            wl = 0;
            in_word = 0;
            if (c == '\0')
                break;
            p++;
        } else if (c == '\'') {
            const char *q = strchr(p + 1, '\'');

            if (q == NULL) {
                cst_err_set(err, "the '...' quote at character %zu is not closed", at);
                goto fail;
            }
            memcpy(word + wl, p + 1, (size_t)(q - p - 1));
            wl += (size_t)(q - p - 1);
            p = q + 1;
            in_word = 1;
        } else if (c == '"') {
            for (p++;; p++) {
                if (*p == '\0') {
                    cst_err_set(err, "the \"...\" quote at character %zu is not closed", at);
                    goto fail;
                }
                if (*p == '"')
                    break;
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) {
                    word[wl++] = *++p;
                } else if (*p == '$' || *p == '`') {
                    cst_err_set(err,
                                "'%c' inside \"...\" at character %zu: a shell would expand it, "
                                "and there is no shell; put it in '...' to pass it as it is",
                                *p, (size_t)(p - text) + 1);
                    goto fail;
                } else {
                    word[wl++] = *p;
                }
            }
            p++;
            in_word = 1;
        } else if (c == '\\') {
            if (p[1] == '\0') {
                cst_err_set(err, "the command ends in a backslash");
                goto fail;
            }
            word[wl++] = p[1];
            p += 2;
            in_word = 1;
        } else if (strchr(shell_specials, c) != NULL || (!in_word && (c == '~' || c == '#'))) {
            cst_err_set(err,
                        "an unquoted '%c' at character %zu: the command is run without a shell, "
                        "so pipes, redirections, variables and globs mean nothing; write a "
                        "script and name it, or quote the character to pass it as it is",
                        c, at);
            goto fail;
        } else if (c < 0x20 || c == 0x7f) {
            cst_err_set(err, "a control character at character %zu", at);
            goto fail;
        } else {
            word[wl++] = (char)c;
            p++;
            in_word = 1;
        }
    }
    free(word);
    if (n == 0) {
        cmdline_free(argv);
        return cst_err_set(err, "no command");
    }
    *out = argv;
    return (int)n;
fail:
    free(word);
    cmdline_free(argv);
    return -1;
}

void cmdline_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **a = argv; *a; a++) {
        explicit_bzero(*a, strlen(*a));
        free(*a);
    }
    free(argv);
}

/* --- redaction --- */

struct secrets {
    char **list;
    size_t n, cap;
};

static void secret_add(struct secrets *s, const char *v, size_t len)
{
    if (len == 0)
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 8;
        s->list = util_xrealloc(s->list, s->cap * sizeof(*s->list));
    }
    s->list[s->n] = util_xmalloc(len + 1);
    memcpy(s->list[s->n], v, len);
    s->list[s->n][len] = '\0';
    s->n++;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int uri_end(int c)
{
    return c == '\0' || isspace(c) || c == '"' || c == '\'' || c == '>' || c == '<' || c == ',';
}

/*
 * A scheme://user:password@ at p (p points at "://"): the password's span
 * [*pw, *pw_end), 0 if there is none. The userinfo ends at the last '@'
 * before the end of the URI, so that a password holding a raw '@' or '/' is
 * still covered (showing less of an odd URI is the price).
 */
static int uri_password(const char *p, const char **pw, const char **pw_end)
{
    const char *start = p + 3, *at = NULL, *colon;

    for (const char *q = start; !uri_end((unsigned char)*q); q++)
        if (*q == '@')
            at = q;
    if (at == NULL)
        return 0;
    colon = memchr(start, ':', (size_t)(at - start));
    if (colon == NULL || colon + 1 == at)
        return 0;
    *pw = colon + 1;
    *pw_end = at;
    return 1;
}

static int name_is_secret(const char *name, size_t len)
{
    static const char *const words[] = {"pass", "secret", "token", "pwd"};
    char *lower = util_xmalloc(len + 1);
    int hit = 0;

    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    lower[len] = '\0';
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]) && !hit; i++)
        hit = strstr(lower, words[i]) != NULL;
    free(lower);
    return hit;
}

static int is_password_flag(const char *a)
{
    return strcmp(a, "-p") == 0 || strcmp(a, "--password") == 0 || strcmp(a, "--pass") == 0 ||
           strcmp(a, "--passwd") == 0;
}

static void secrets_of(struct secrets *s, char *const *argv)
{
    for (size_t i = 1; argv && argv[i]; i++) {
        const char *a = argv[i], *eq = strchr(a, '='), *uri = strstr(a, "://"), *pw, *end;

        if (is_password_flag(a) && argv[i + 1])
            secret_add(s, argv[i + 1], strlen(argv[i + 1]));
        if (eq && name_is_secret(a, (size_t)(eq - a)))
            secret_add(s, eq + 1, strlen(eq + 1));
        if (uri && uri_password(uri, &pw, &end)) {
            char *decoded = util_xmalloc((size_t)(end - pw) + 1);
            size_t n = 0;

            secret_add(s, pw, (size_t)(end - pw));
            for (const char *q = pw; q < end; q++) {
                if (q[0] == '%' && q + 2 < end && hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
                    decoded[n++] = (char)(hexval(q[1]) * 16 + hexval(q[2]));
                    q += 2;
                } else {
                    decoded[n++] = *q;
                }
            }
            secret_add(s, decoded, n);
            explicit_bzero(decoded, n);
            free(decoded);
        }
    }
}

struct out {
    char *buf;
    size_t len, cap;
};

static void out_add(struct out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        o->cap = 2 * (o->len + n + 1);
        o->buf = util_xrealloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* The patterns, anywhere in text: URI passwords, --password VALUE, password=VALUE. */
static char *mask_patterns(const char *text)
{
    struct out o = {NULL, 0, 0};
    const char *p = text;

    out_add(&o, "", 0);
    while (*p) {
        const char *pw, *end;
        size_t skip = 0;

        if (strncmp(p, "://", 3) == 0 && uri_password(p, &pw, &end)) {
            out_add(&o, p, (size_t)(pw - p));
            out_add(&o, "****", 4);
            p = end;
            continue;
        }
        if (strncasecmp(p, "password", 8) == 0)
            skip = 8;
        else if (strncasecmp(p, "passwd", 6) == 0)
            skip = 6;
        if (skip &&
            (p[skip] == '=' || (p[skip] == ' ' && p > text + 1 && p[-1] == '-' && p[-2] == '-'))) {
            const char *v = p + skip + 1, *e = v;

            while (*e && !isspace((unsigned char)*e) && *e != '"' && *e != '\'' && *e != ',')
                e++;
            out_add(&o, p, skip + 1);
            if (e > v)
                out_add(&o, "****", 4);
            p = e;
            continue;
        }
        out_add(&o, p, 1);
        p++;
    }
    return o.buf;
}

static char *mask_secret(char *text, const char *secret)
{
    size_t slen = strlen(secret);
    struct out o = {NULL, 0, 0};
    const char *p = text, *hit;

    if (slen == 0 || strstr(text, secret) == NULL)
        return text;
    out_add(&o, "", 0);
    while ((hit = strstr(p, secret)) != NULL) {
        out_add(&o, p, (size_t)(hit - p));
        out_add(&o, "****", 4);
        p = hit + slen;
    }
    out_add(&o, p, strlen(p));
    explicit_bzero(text, strlen(text));
    free(text);
    return o.buf;
}

static int longer_first(const void *a, const void *b)
{
    size_t la = strlen(*(char *const *)a), lb = strlen(*(char *const *)b);

    return la < lb ? 1 : la > lb ? -1 : 0;
}

char *cmdline_redact(const char *text, char *const *argv)
{
    struct secrets s = {NULL, 0, 0};
    char *out = mask_patterns(text);

    secrets_of(&s, argv);
    /* Longest first: a secret that contains another is masked whole. */
    if (s.n > 1)
        qsort(s.list, s.n, sizeof(*s.list), longer_first);
    for (size_t i = 0; i < s.n; i++) {
        out = mask_secret(out, s.list[i]);
        explicit_bzero(s.list[i], strlen(s.list[i]));
        free(s.list[i]);
    }
    free(s.list);
    return out;
}
