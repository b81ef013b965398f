/*
 * fuzz_restore_point.c - libFuzzer harness: any decrypted restore-point file
 * given to the parser that `restore point` uses (agent/restore_point.c), line
 * by line as the command reads it, ends in entries or errors, never a crash
 * or a leak; what parses is an absolute path with the fields of its kind.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/restore_point.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data, *end = text + size;
    char date[11];
    int64_t at;
    struct cst_err err;
    int first = 1;

    while (text < end) {
        const char *nl = memchr(text, '\n', (size_t)(end - text));
        size_t len = nl ? (size_t)(nl - text) : (size_t)(end - text);
        /* A copy of exactly the line: the parser must not read past it. */
        char *line = malloc(len ? len : 1);

        if (line == NULL)
            abort();
        memcpy(line, text, len);
        if (first) {
            if (restore_point_header(line, len, date, &at, &err) == 0 && date[0] != '\0' &&
                strlen(date) != 10)
                abort();
            first = 0;
        } else {
            struct catalog_version v;

            if (restore_point_line(line, len, &v, &err) == 0) {
                if (v.path == NULL || v.path[0] != '/' ||
                    (v.kind == CATALOG_SYMLINK) != (v.link_target != NULL) ||
                    (v.kind == CATALOG_FILE && strlen(v.object_id) != 64) || v.size < 0)
                    abort();
            }
            free(v.path);
            free(v.link_target);
        }
        free(line);
        text += len + (nl ? 1 : 0);
    }
    return 0;
}
