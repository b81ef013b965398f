/*
 * json.c - the streaming JSON writer (see json.h).
 */
#include "json.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pathenc.h"
#include "util.h"

void json_init(struct json *j)
{
    memset(j, 0, sizeof(*j));
    j->cap = 256;
    j->buf = util_xmalloc(j->cap);
    j->buf[0] = '\0';
    j->first[0] = 1;
}

void json_free(struct json *j)
{
    free(j->buf);
    j->buf = NULL;
}

static void put(struct json *j, const char *s, size_t n)
{
    if (j->len + n + 1 > j->cap) {
        j->cap = (j->len + n + 1) * 2;
        j->buf = util_xrealloc(j->buf, j->cap);
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

/* Emit the comma before a value or key unless it follows a key or opens a level. */
static void sep(struct json *j)
{
    if (j->after_key) {
        j->after_key = 0;
        return;
    }
    if (!j->first[j->depth])
        put(j, ",", 1);
    j->first[j->depth] = 0;
}

static void open_level(struct json *j, const char *c)
{
    sep(j);
    put(j, c, 1);
    if (j->depth < (int)sizeof(j->first) - 1)
        j->depth++;
    j->first[j->depth] = 1;
}

static void close_level(struct json *j, const char *c)
{
    if (j->depth > 0)
        j->depth--;
    put(j, c, 1);
}

void json_obj_begin(struct json *j)
{
    open_level(j, "{");
}
void json_obj_end(struct json *j)
{
    close_level(j, "}");
}
void json_arr_begin(struct json *j)
{
    open_level(j, "[");
}
void json_arr_end(struct json *j)
{
    close_level(j, "]");
}

void json_key(struct json *j, const char *key)
{
    sep(j);
    pathenc_json(&j->buf, &j->len, &j->cap, key);
    put(j, ":", 1);
    j->after_key = 1;
}

void json_str(struct json *j, const char *s)
{
    if (s == NULL) {
        json_null(j);
        return;
    }
    sep(j);
    pathenc_json(&j->buf, &j->len, &j->cap, s);
}

void json_int(struct json *j, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%" PRId64, v);

    sep(j);
    put(j, tmp, (size_t)n);
}

void json_bool(struct json *j, int v)
{
    sep(j);
    put(j, v ? "true" : "false", v ? 4 : 5);
}

void json_raw(struct json *j, const char *value)
{
    if (value == NULL) {
        json_null(j);
        return;
    }
    sep(j);
    put(j, value, strlen(value));
}

void json_null(struct json *j)
{
    sep(j);
    put(j, "null", 4);
}

void json_time(struct json *j, int64_t ms)
{
    char tmp[40];

    if (ms <= 0) {
        json_null(j);
        return;
    }
    util_format_ms(ms, tmp, sizeof(tmp));
    json_str(j, tmp);
}

void json_print(struct json *j, FILE *out)
{
    fputs(j->buf, out);
    fputc('\n', out);
}
