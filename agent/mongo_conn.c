/*
 * mongo_conn.c - connecting to MongoDB with the password kept out of every
 * message (see mongo_conn.h).
 *
 * Redaction: libmongoc's error messages and log lines pass through
 * safe_text(), which replaces URIs' passwords and the password itself (as
 * written in the URI and percent-decoded) by "****".
 */
#include "mongo_conn.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/log.h"
#include "common/util.h"

static int uri_token_end(int c)
{
    return c == '\0' || isspace((unsigned char)c) || c == '"' || c == '\'' || c == '>';
}

/*
 * Where the credentials of the URI starting at p (just after "://") are:
 * *at is the '@' that ends them, *colon the ':' before the password (NULL
 * when none), *end the end of the URI. libmongoc takes the authority up to
 * the first '/'; when no '@' is there but one follows in the path, the
 * password probably holds a raw '/', so that '@' counts too (showing less
 * of an odd URI is the price). Returns 0 when there are no credentials.
 */
static int userinfo_span(const char *p, const char **colon, const char **at, const char **end)
{
    const char *slash = NULL, *query = NULL, *at_authority = NULL, *at_path = NULL;

    for (*end = p; !uri_token_end(**end); (*end)++) {
        char c = **end;

        if (slash == NULL) {
            if (c == '/')
                slash = *end;
            else if (c == '@')
                at_authority = *end;
        } else if (query == NULL) {
            if (c == '?')
                query = *end;
            else if (c == '@')
                at_path = *end;
        }
    }
    *at = at_authority ? at_authority : at_path;
    *colon = *at ? memchr(p, ':', (size_t)(*at - p)) : NULL;
    return *at != NULL;
}

char *mongo_redact_uri(const char *text)
{
    static const char *const schemes[] = {"mongodb://", "mongodb+srv://"};
    size_t cap = strlen(text) + 64, len = 0;
    char *out = util_xmalloc(cap);
    const char *p = text;

    while (*p) {
        const char *colon, *at, *end;
        size_t n = 0;

        for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && n == 0; i++) {
            if (strncasecmp(p, schemes[i], strlen(schemes[i])) == 0)
                n = strlen(schemes[i]);
        }
        if (n > 0 && userinfo_span(p + n, &colon, &at, &end) && colon != NULL) {
            size_t head = (size_t)(colon + 1 - p), tail = (size_t)(end - at);

            if (len + head + 4 + tail + 1 > cap) {
                cap = 2 * (len + head + 4 + tail + 1);
                out = util_xrealloc(out, cap);
            }
            memcpy(out + len, p, head);
            memcpy(out + len + head, "****", 4);
            memcpy(out + len + head + 4, at, tail);
            len += head + 4 + tail;
            p = end;
            continue;
        }
        if (len + 2 > cap) {
            cap *= 2;
            out = util_xrealloc(out, cap);
        }
        out[len++] = *p++;
    }
    out[len] = '\0';
    return out;
}

/* Replace every occurrence of secret in s (malloc'd) by "****"; returns the new string. */
static char *redact_secret(char *s, const char *secret)
{
    size_t slen;
    char *hit;

    if (secret == NULL || secret[0] == '\0')
        return s;
    slen = strlen(secret);
    while ((hit = strstr(s, secret)) != NULL) {
        char *next = util_printf("%.*s****%s", (int)(hit - s), s, hit + slen);

        free(s);
        s = next;
    }
    return s;
}

/* What a dump must not reveal: the password as written in the URI and as decoded. */
struct secrets {
    char *raw, *decoded;
};

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void secrets_from_uri(struct secrets *s, const char *uri)
{
    const char *start = strstr(uri, "://"), *colon, *at, *end;
    size_t n = 0;

    memset(s, 0, sizeof(*s));
    if (start == NULL || !userinfo_span(start + 3, &colon, &at, &end) || colon == NULL ||
        colon + 1 == at)
        return;
    s->raw = util_printf("%.*s", (int)(at - colon - 1), colon + 1);
    s->decoded = util_xmalloc(strlen(s->raw) + 1);
    for (const char *q = s->raw; *q; q++) {
        if (q[0] == '%' && hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
            s->decoded[n++] = (char)(hexval(q[1]) * 16 + hexval(q[2]));
            q += 2;
        } else {
            s->decoded[n++] = *q;
        }
    }
    s->decoded[n] = '\0';
}

/*
 * The connection string spec wants ':', '/', '@' and '%' percent-encoded in
 * the user name and password; libmongoc misreads them otherwise and may put
 * a piece of the password into a host name in its error. Refuse first.
 */
static int check_userinfo(const char *uri)
{
    const char *start = strstr(uri, "://"), *colon, *at, *end;
    int colons = 0;

    if (start == NULL || !userinfo_span(start + 3, &colon, &at, &end))
        return 0;
    for (const char *q = start + 3; q < at; q++) {
        if (*q == '@' || *q == '/' || (*q == ':' && ++colons > 1))
            return -1;
        if (*q == '%' && (hexval(q[1]) < 0 || hexval(q[2]) < 0))
            return -1;
    }
    return 0;
}

static void secrets_free(struct secrets *s)
{
    if (s->raw)
        explicit_bzero(s->raw, strlen(s->raw));
    if (s->decoded)
        explicit_bzero(s->decoded, strlen(s->decoded));
    free(s->raw);
    free(s->decoded);
    memset(s, 0, sizeof(*s));
}

/* A libmongoc message made safe to show: URIs redacted, the password gone. */
static char *safe_text(const char *msg, const struct secrets *s)
{
    char *out = mongo_redact_uri(msg);

    out = redact_secret(out, s ? s->raw : NULL);
    return redact_secret(out, s ? s->decoded : NULL);
}

/* The dump running now, for the libmongoc log handler (one dump at a time). */
static const struct secrets *current_secrets;

static void mongoc_log_to_ours(mongoc_log_level_t level, const char *domain, const char *message,
                               void *user_data)
{
    char *msg;

    (void)user_data;
    if (level == MONGOC_LOG_LEVEL_TRACE)
        return;
    msg = safe_text(message, current_secrets);
    if (level <= MONGOC_LOG_LEVEL_ERROR)
        log_error("libmongoc: %s domain=%s", msg, domain);
    else if (level == MONGOC_LOG_LEVEL_WARNING)
        log_warn("libmongoc: %s domain=%s", msg, domain);
    else
        log_debug("libmongoc: %s domain=%s", msg, domain);
    free(msg);
}

struct mongo_conn {
    struct secrets secrets;
    mongoc_uri_t *uri;
    mongoc_client_t *client;
    char *shown_uri;
    int replica_set;
    int32_t wire_version;
};

int mongo_conn_fail(struct mongo_conn *c, const bson_error_t *error, struct cst_err *err,
                    const char *fmt, ...)
{
    char what[512];
    char *msg;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    msg = safe_text(error->message, c ? &c->secrets : NULL);
    cst_err_set(err, "%s: %s (libmongoc domain %u code %u)", what, msg, error->domain, error->code);
    free(msg);
    return -1;
}

/* hello (or the legacy isMaster): the first contact, so its error names the
 * server; and is this a replica set member? */
static int probe_topology(struct mongo_conn *c, struct cst_err *err)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it;
    bool ok;

    BSON_APPEND_INT32(&cmd, "hello", 1);
    ok = sym_mongoc_client_command_simple(c->client, "admin", &cmd, NULL, &reply, &error);
    bson_destroy(&cmd);
    if (!ok && error.domain == MONGOC_ERROR_SERVER && error.code == 59) {
        /* a server older than 4.4.2 answered: it knows only isMaster */
        bson_destroy(&reply);
        bson_init(&cmd);
        BSON_APPEND_INT32(&cmd, "isMaster", 1);
        ok = sym_mongoc_client_command_simple(c->client, "admin", &cmd, NULL, &reply, &error);
        bson_destroy(&cmd);
    }
    if (!ok) {
        bson_destroy(&reply);
        return mongo_conn_fail(c, &error, err, "connecting to MongoDB %s", c->shown_uri);
    }
    c->replica_set = bson_iter_init_find(&it, &reply, "setName") && BSON_ITER_HOLDS_UTF8(&it);
    c->wire_version = 0;
    if (bson_iter_init_find(&it, &reply, "maxWireVersion") && BSON_ITER_HOLDS_INT32(&it))
        c->wire_version = bson_iter_int32(&it);
    bson_destroy(&reply);
    return 0;
}

char *mongo_compact_json(char *json)
{
    size_t r = 0, w = 0;
    int in_string = 0;

    for (; json[r]; r++) {
        char c = json[r];

        if (in_string) {
            json[w++] = c;
            if (c == '\\' && json[r + 1]) {
                json[w++] = json[++r];
            } else if (c == '"') {
                in_string = 0;
            }
        } else if (c == '"') {
            in_string = 1;
            json[w++] = c;
        } else if (!isspace((unsigned char)c)) {
            json[w++] = c;
        }
    }
    json[w] = '\0';
    return json;
}

static int mongo_inited;

void mongo_cleanup(void)
{
    if (mongo_inited) {
        sym_mongoc_cleanup();
        mongo_inited = 0;
    }
}

struct mongo_conn *mongo_connect(const char *uri_string, struct cst_err *err)
{
    struct mongo_conn *c;
    bson_error_t error;

    /* Every libmongoc call goes through a connection: loading here covers them all. */
    if (mongoc_lib_load(err) < 0)
        return NULL;
    c = util_xcalloc(1, sizeof(*c));
    secrets_from_uri(&c->secrets, uri_string);
    if (!mongo_inited) {
        sym_mongoc_init();
        sym_mongoc_log_set_handler(mongoc_log_to_ours, NULL);
        mongo_inited = 1;
    }
    current_secrets = &c->secrets;
    if (strncasecmp(uri_string, "mongodb://", 10) != 0 &&
        strncasecmp(uri_string, "mongodb+srv://", 14) != 0) {
        /* not shown: without the scheme the password cannot be told apart */
        cst_err_set(err, "MongoDB URI: must start with mongodb:// or mongodb+srv://");
        goto fail;
    }
    c->shown_uri = safe_text(uri_string, &c->secrets);
    if (check_userinfo(uri_string) != 0) {
        cst_err_set(err,
                    "MongoDB URI %s: the user name or password holds a raw ':', '/', '@' "
                    "or '%%'; percent-encode it (@ as %%40, / as %%2F, : as %%3A, %% as %%25)",
                    c->shown_uri);
        goto fail;
    }
    c->uri = sym_mongoc_uri_new_with_error(uri_string, &error);
    if (c->uri == NULL) {
        mongo_conn_fail(c, &error, err, "MongoDB URI %s", c->shown_uri);
        goto fail;
    }
    sym_mongoc_uri_set_appname(c->uri, "custodian");
    c->client = sym_mongoc_client_new_from_uri_with_error(c->uri, &error);
    if (c->client == NULL) {
        mongo_conn_fail(c, &error, err, "MongoDB client");
        goto fail;
    }
    sym_mongoc_client_set_error_api(c->client, MONGOC_ERROR_API_VERSION_2);
    if (probe_topology(c, err) != 0)
        goto fail;
    return c;
fail:
    mongo_conn_close(c);
    return NULL;
}

void mongo_conn_close(struct mongo_conn *c)
{
    if (c == NULL)
        return;
    sym_mongoc_client_destroy(c->client);
    sym_mongoc_uri_destroy(c->uri);
    if (current_secrets == &c->secrets)
        current_secrets = NULL;
    free(c->shown_uri);
    secrets_free(&c->secrets);
    free(c);
}

mongoc_client_t *mongo_conn_client(struct mongo_conn *c)
{
    return c->client;
}

const mongoc_uri_t *mongo_conn_uri(struct mongo_conn *c)
{
    return c->uri;
}

const char *mongo_conn_shown_uri(struct mongo_conn *c)
{
    return c->shown_uri;
}

int mongo_conn_replica_set(struct mongo_conn *c)
{
    return c->replica_set;
}

int32_t mongo_conn_wire_version(struct mongo_conn *c)
{
    return c->wire_version;
}
