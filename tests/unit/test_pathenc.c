/*
 * test_pathenc.c - common/pathenc.c: the escape of raw path bytes round-trips
 * for every byte and for random byte strings, keeps valid UTF-8 as it is,
 * escapes everything else as \xNN, always yields valid UTF-8 without control
 * bytes, refuses malformed escapes, and pathenc_json writes valid JSON.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pathenc.h"

/* Strict RFC 3629 UTF-8 check, written independently of pathenc.c. */
static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp, min;

        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            need = 1;
            cp = c & 0x1fu;
            min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2;
            cp = c & 0x0fu;
            min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return 0;
        }
        if (i + need >= n)
            return 0;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

/* No C0 control byte, no DEL, no NUL. */
static void assert_no_control_bytes(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        assert_true(*p >= 0x20);
        assert_true(*p != 0x7f);
    }
}

/* Escape raw, check the escaped form's properties, unescape and compare bytes. */
static char *round_trip(const char *raw, size_t len)
{
    char *esc = pathenc_escape(raw, len);
    size_t back_len = (size_t)-1;
    char *back;

    assert_non_null(esc);
    assert_no_control_bytes(esc);
    assert_true(valid_utf8((const unsigned char *)esc, strlen(esc)));
    back = pathenc_unescape(esc, &back_len);
    assert_non_null(back);
    assert_int_equal(back_len, len);
    assert_memory_equal(back, raw, len);
    assert_int_equal(back[len], '\0');
    free(back);
    return esc;
}

static void expect_escape(const char *raw, const char *escaped)
{
    char *esc = round_trip(raw, strlen(raw));

    assert_string_equal(esc, escaped);
    free(esc);
}

static void test_every_single_byte(void **state)
{
    (void)state;
    for (int b = 1; b < 256; b++) {
        char raw[2] = {(char)b, '\0'}, want[8];
        char *esc = round_trip(raw, 1);

        if (b == '\\')
            snprintf(want, sizeof(want), "\\\\");
        else if (b < 0x20 || b >= 0x7f) /* controls, DEL, and no lone byte >= 0x80 is UTF-8 */
            snprintf(want, sizeof(want), "\\x%02x", b);
        else
            snprintf(want, sizeof(want), "%c", b);
        assert_string_equal(esc, want);
        free(esc);
    }
}

/* A deterministic generator so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

static void test_random_strings(void **state)
{
    /* Pieces that make near-valid UTF-8 likely, so both branches get exercised. */
    static const char *const pieces[] = {
        "\xc3\xa9",
        "\xe6\x97\xa5",
        "\xf0\x9f\x98\x80",
        "\xed\xa0\x80",
        "\xc0\xaf",
        "\xe0\x80\xaf",
        "\xf4\x90\x80\x80",
        "\xf0\x8f\xbf\xbf",
        "\xef\xbf\xbf",
        "\xf4\x8f\xbf\xbf",
        "\xc2\x80",
        "\\x41",
        "\\",
        "\\\\x",
        "\xe2\x82",
        "\xf0\x9f\x98",
    };
    char buf[600];

    (void)state;
    rng_state = 0x9e3779b97f4a7c15ull;
    for (int iter = 0; iter < 3000; iter++) {
        size_t want = rng() % 300, len = 0;

        while (len < want) {
            uint32_t r = rng();

            if (r % 4 == 0) {
                const char *p = pieces[(r >> 8) % (sizeof(pieces) / sizeof(pieces[0]))];

                memcpy(buf + len, p, strlen(p));
                len += strlen(p);
            } else {
                unsigned char c = (unsigned char)(r >> 8);

                buf[len++] = (char)(c ? c : 'z');
            }
        }
        buf[len] = '\0';
        free(round_trip(buf, len));
    }
}

static void test_specials(void **state)
{
    (void)state;
    expect_escape("", "");
    expect_escape("plain.txt", "plain.txt");
    expect_escape("with space", "with space");
    expect_escape("new\nline", "new\\x0aline");
    expect_escape("tab\there", "tab\\x09here");
    expect_escape("cr\r", "cr\\x0d");
    expect_escape("esc\x1b[31m", "esc\\x1b[31m");
    expect_escape("del\x7f", "del\\x7f");
    expect_escape("back\\slash", "back\\\\slash");
    expect_escape("\\x41", "\\\\x41"); /* a literal "\x41" is not the escape of "A" */
    expect_escape("\\\\", "\\\\\\\\");
    expect_escape("/srv/data/r\xc3\xa9sum\xc3\xa9.pdf", "/srv/data/r\xc3\xa9sum\xc3\xa9.pdf");
}

static void test_valid_utf8_kept(void **state)
{
    (void)state;
    expect_escape("\xc3\xa9", "\xc3\xa9");                                 /* é, 2 bytes */
    expect_escape("\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac"); /* 日本 */
    expect_escape("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");                 /* emoji, 4 bytes */
    expect_escape("\xc2\xa0", "\xc2\xa0");                 /* U+00A0, first after C1 */
    expect_escape("\xe0\xa0\x80", "\xe0\xa0\x80");         /* U+0800, lowest 3-byte */
    expect_escape("\xed\x9f\xbf", "\xed\x9f\xbf");         /* U+D7FF, below surrogates */
    expect_escape("\xee\x80\x80", "\xee\x80\x80");         /* U+E000, above surrogates */
    expect_escape("\xef\xbf\xbf", "\xef\xbf\xbf");         /* U+FFFF */
    expect_escape("\xf0\x90\x80\x80", "\xf0\x90\x80\x80"); /* U+10000 */
    expect_escape("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    expect_escape("a\xc3\xa9\n\xf0\x9f\x98\x80", "a\xc3\xa9\\x0a\xf0\x9f\x98\x80");
    /* The C1 controls U+0080..U+009F are valid UTF-8 but controls: escaped byte by byte. */
    expect_escape("\xc2\x80", "\\xc2\\x80");
    expect_escape("\xc2\x9b", "\\xc2\\x9b");
}

static void test_invalid_utf8_escaped(void **state)
{
    (void)state;
    /* The oracle itself tells valid from invalid. */
    assert_true(valid_utf8((const unsigned char *)"\xf0\x9f\x98\x80\xc3\xa9", 6));
    assert_false(valid_utf8((const unsigned char *)"\xc3", 1));
    assert_false(valid_utf8((const unsigned char *)"\xf0\x9f\x98", 3));
    assert_false(valid_utf8((const unsigned char *)"\xc0\xaf", 2));
    assert_false(valid_utf8((const unsigned char *)"\xed\xa0\x80", 3));
    assert_false(valid_utf8((const unsigned char *)"\xf4\x90\x80\x80", 4));
    assert_false(valid_utf8((const unsigned char *)"\x80", 1));
    expect_escape("\x80", "\\x80"); /* lone continuation */
    expect_escape("\xff", "\\xff");
    expect_escape("\xfe", "\\xfe");
    expect_escape("a\x80z", "a\\x80z");
    expect_escape("\xc3", "\\xc3");          /* truncated 2-byte */
    expect_escape("\xc3z", "\\xc3z");        /* bad continuation */
    expect_escape("\xe6\x97", "\\xe6\\x97"); /* truncated 3-byte */
    expect_escape("\xe6\x97z", "\\xe6\\x97z");
    expect_escape("\xf0\x9f\x98", "\\xf0\\x9f\\x98");                   /* truncated 4-byte */
    expect_escape("\xc0\xaf", "\\xc0\\xaf");                            /* overlong '/' */
    expect_escape("\xc1\xbf", "\\xc1\\xbf");                            /* overlong */
    expect_escape("\xe0\x80\xaf", "\\xe0\\x80\\xaf");                   /* overlong 3-byte */
    expect_escape("\xf0\x80\x80\xaf", "\\xf0\\x80\\x80\\xaf");          /* overlong 4-byte */
    expect_escape("\xf0\x8f\xbf\xbf", "\\xf0\\x8f\\xbf\\xbf");          /* overlong U+FFFF */
    expect_escape("\xed\xa0\x80", "\\xed\\xa0\\x80");                   /* surrogate D800 */
    expect_escape("\xed\xbf\xbf", "\\xed\\xbf\\xbf");                   /* surrogate DFFF */
    expect_escape("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");          /* > U+10FFFF */
    expect_escape("\xf5\x80\x80\x80", "\\xf5\\x80\\x80\\x80");          /* never-valid lead */
    expect_escape("\xf8\x88\x80\x80\x80", "\\xf8\\x88\\x80\\x80\\x80"); /* 5-byte form */
    /* An invalid lead followed by a valid character: only the bad byte is escaped. */
    expect_escape("\xc3\xc3\xa9", "\\xc3\xc3\xa9");
    expect_escape("\xe6\xc3\xa9", "\\xe6\xc3\xa9");
}

static void expect_unescape(const char *escaped, const char *raw, size_t raw_len)
{
    size_t len = 0;
    char *out = pathenc_unescape(escaped, &len);

    assert_non_null(out);
    assert_int_equal(len, raw_len);
    assert_memory_equal(out, raw, raw_len);
    free(out);
}

static void expect_malformed(const char *escaped)
{
    size_t len = 12345;

    assert_null(pathenc_unescape(escaped, &len));
}

static void test_unescape(void **state)
{
    char *out;

    (void)state;
    expect_unescape("", "", 0);
    expect_unescape("abc", "abc", 3);
    expect_unescape("\\x41", "A", 1);
    expect_unescape("\\xFf\\xfF", "\xff\xff", 2); /* either case of hex digit */
    expect_unescape("a\\\\b", "a\\b", 3);
    expect_unescape("\\x0a\\x09", "\n\t", 2);
    expect_unescape("\xc3\xa9", "\xc3\xa9", 2);
    /* len may be NULL. */
    out = pathenc_unescape("x\\x2fy", NULL);
    assert_non_null(out);
    assert_string_equal(out, "x/y");
    free(out);

    expect_malformed("\\x4");
    expect_malformed("ab\\x4");
    expect_malformed("\\x");
    expect_malformed("\\q");
    expect_malformed("\\n");
    expect_malformed("\\X41");
    expect_malformed("\\xg1");
    expect_malformed("\\x1g");
    expect_malformed("\\");
    expect_malformed("abc\\");
    expect_malformed("\\\\\\");
    expect_malformed("\\x00");
    expect_malformed("a\\x00b");
}

/* Parse one JSON string literal (RFC 8259) and return its decoded value; fails the test if
 * the literal is not valid JSON. */
static char *json_decode_string(const char *lit, size_t lit_len)
{
    char *out = malloc(lit_len + 1);
    size_t o = 0, i = 1;

    assert_non_null(out);
    assert_true(lit_len >= 2);
    assert_int_equal(lit[0], '"');
    assert_int_equal(lit[lit_len - 1], '"');
    assert_true(valid_utf8((const unsigned char *)lit, lit_len));
    while (i < lit_len - 1) {
        unsigned char c = (unsigned char)lit[i];

        assert_true(c >= 0x20);
        assert_true(c != '"');
        if (c != '\\') {
            out[o++] = (char)c;
            i++;
            continue;
        }
        assert_true(i + 1 < lit_len - 1);
        switch (lit[i + 1]) {
        case '"':
        case '\\':
        case '/':
            out[o++] = lit[i + 1];
            i += 2;
            break;
        case 'b':
            out[o++] = '\b';
            i += 2;
            break;
        case 'f':
            out[o++] = '\f';
            i += 2;
            break;
        case 'n':
            out[o++] = '\n';
            i += 2;
            break;
        case 'r':
            out[o++] = '\r';
            i += 2;
            break;
        case 't':
            out[o++] = '\t';
            i += 2;
            break;
        case 'u': {
            unsigned v = 0;

            assert_true(i + 5 < lit_len - 1);
            for (int k = 2; k < 6; k++) {
                char h = lit[i + (size_t)k];

                assert_true(h != '\0');
                assert_non_null(strchr("0123456789abcdefABCDEF", h));
                v = v << 4 | (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
            }
            /* Only what pathenc_json emits: control characters. */
            assert_true(v < 0x20);
            out[o++] = (char)v;
            i += 6;
            break;
        }
        default:
            fail_msg("bad JSON escape \\%c", lit[i + 1]);
        }
    }
    out[o] = '\0';
    return out;
}

static void test_json(void **state)
{
    static const char *const inputs[] = {
        "",
        "plain",
        "quote\"inside",
        "back\\slash",
        "\\\"\\\"",
        "new\nline\ttab\rcr\bbs\fff",
        "\x01\x02\x1f",
        "del\x7f",
        "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
        "/path/with \\x0a escape",
    };
    char *buf = NULL;
    size_t len = 0, cap = 0;

    (void)state;
    for (size_t k = 0; k < sizeof(inputs) / sizeof(inputs[0]); k++) {
        size_t start = len;
        char *decoded;

        pathenc_json(&buf, &len, &cap, inputs[k]);
        assert_non_null(buf);
        assert_true(len < cap);
        assert_int_equal(buf[len], '\0');
        assert_int_equal(strlen(buf), len);
        decoded = json_decode_string(buf + start, len - start);
        assert_string_equal(decoded, inputs[k]);
        free(decoded);
    }
    /* The literals were appended one after the other, nothing overwritten. */
    {
        static const char head[] = "\"\"\"plain\"\"quote\\\"inside\"";

        assert_memory_equal(buf, head, sizeof(head) - 1);
    }
    free(buf);

    /* Control characters are written as \u00XX exactly. */
    buf = NULL;
    len = cap = 0;
    pathenc_json(&buf, &len, &cap, "a\nb\x01");
    assert_string_equal(buf, "\"a\\u000ab\\u0001\"");
    free(buf);

    /* A worst case that needs the buffer to grow from a small start. */
    {
        char many[200];

        memset(many, '\x01', sizeof(many) - 1);
        many[sizeof(many) - 1] = '\0';
        cap = 4;
        len = 0;
        buf = malloc(cap);
        assert_non_null(buf);
        pathenc_json(&buf, &len, &cap, many);
        assert_int_equal(len, 2 + 6 * (sizeof(many) - 1));
        assert_int_equal(strlen(buf), len);
        free(buf);
    }
}

/* Escaped paths (what callers hand to JSON) of arbitrary raw bytes give valid JSON. */
static void test_json_of_escaped_random(void **state)
{
    char raw[128];

    (void)state;
    rng_state = 0x243f6a8885a308d3ull;
    for (int iter = 0; iter < 500; iter++) {
        size_t n = rng() % sizeof(raw);
        char *esc, *buf = NULL, *decoded;
        size_t len = 0, cap = 0;

        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)rng();

            raw[i] = (char)(c ? c : 0x80);
        }
        esc = pathenc_escape(raw, n);
        pathenc_json(&buf, &len, &cap, esc);
        decoded = json_decode_string(buf, len);
        assert_string_equal(decoded, esc);
        free(decoded);
        free(buf);
        free(esc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_single_byte),
        cmocka_unit_test(test_random_strings),
        cmocka_unit_test(test_specials),
        cmocka_unit_test(test_valid_utf8_kept),
        cmocka_unit_test(test_invalid_utf8_escaped),
        cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_of_escaped_random),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
