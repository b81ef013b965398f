/*
 * json.h - a tiny streaming JSON writer for `--json` output.
 *
 * Commas are placed automatically; strings are escaped. Paths must be
 * passed through pathenc_escape() first so the output stays valid UTF-8.
 */
#ifndef CST_JSON_H
#define CST_JSON_H

#include <stdint.h>
#include <stdio.h>

struct json {
    char *buf;
    size_t len, cap;
    int depth;
    unsigned char first[64]; /* per nesting level: no comma needed yet */
    int after_key;
};

void json_init(struct json *j);
void json_free(struct json *j);
void json_obj_begin(struct json *j);
void json_obj_end(struct json *j);
void json_arr_begin(struct json *j);
void json_arr_end(struct json *j);
void json_key(struct json *j, const char *key);
void json_str(struct json *j, const char *s); /* NULL writes null */
void json_int(struct json *j, int64_t v);
void json_bool(struct json *j, int v);
void json_null(struct json *j);
/* A value that is JSON already (another program's document), as is; NULL writes null. */
void json_raw(struct json *j, const char *value);
/* Timestamp in unix ms as an RFC 3339 string, or null when ms <= 0. */
void json_time(struct json *j, int64_t ms);
/* Print the document and a newline. */
void json_print(struct json *j, FILE *out);

#endif
