/*
 * fuzz_archive.c - libFuzzer harness: marchive_validate (how custodian checks a
 * dump_command's output, as mongorestore would) on any bytes.
 */
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "agent/mongo_archive.h"

struct source {
    const uint8_t *data;
    size_t size, pos;
};

static ssize_t read_fn(void *arg, void *buf, size_t len)
{
    struct source *s = arg;
    size_t n = s->size - s->pos < len ? s->size - s->pos : len;

    memcpy(buf, s->data + s->pos, n);
    s->pos += n;
    return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct source s = {data, size, 0};
    struct marchive_stats st;
    struct cst_err err;

    if (marchive_validate(read_fn, &s, &st, &err) == 0)
        marchive_stats_free(&st);
    return 0;
}
