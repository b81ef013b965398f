/*
 * dest.c - what all destination backends share.
 */
#include "dest.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"

char *dest_object_key(const char *object_id)
{
    return util_printf("objects/%.2s/%s", object_id, object_id);
}

const char *dest_error_name(enum dest_error kind)
{
    switch (kind) {
    case DEST_OK:
        return "ok";
    case DEST_ERR_TRANSIENT:
        return "transient";
    case DEST_ERR_CONFIG:
        return "config";
    case DEST_ERR_SOURCE:
        return "source";
    }
    return "?";
}

void dest_check_add(struct dest_probe *out, const char *name, int ok, const char *fmt, ...)
{
    struct dest_check *c;
    va_list ap;

    if (out->n >= sizeof(out->checks) / sizeof(out->checks[0]))
        return;
    c = &out->checks[out->n++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->ok = ok;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
}

void dest_free(struct dest *d)
{
    if (d == NULL)
        return;
    d->ops->free(d);
    free(d->name);
    free(d);
}
