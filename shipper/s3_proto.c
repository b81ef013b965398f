/*
 * s3_proto.c - URLs as curl signs them, failure classification and
 * wording, credentials files (see s3_proto.h).
 */
#include "s3_proto.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"

/* ---- endpoint and URLs ---- */

int s3_is_loopback(const char *hostname)
{
    return strncmp(hostname, "127.", 4) == 0 || strcmp(hostname, "::1") == 0 ||
           strcasecmp(hostname, "localhost") == 0;
}

int s3_endpoint_parse(const char *endpoint, struct s3_endpoint *ep, struct cst_err *err)
{
    const char *p, *end, *port = NULL;
    size_t hlen;

    memset(ep, 0, sizeof(*ep));
    if (strncmp(endpoint, "https://", 8) == 0) {
        ep->https = 1;
        p = endpoint + 8;
    } else if (strncmp(endpoint, "http://", 7) == 0) {
        p = endpoint + 7;
    } else {
        return cst_err_set(err, "endpoint %s must start with https://", endpoint);
    }
    end = p + strcspn(p, "/?#");
    if (*end != '\0' && strcmp(end, "/") != 0)
        return cst_err_set(err, "endpoint %s must be scheme://host[:port], without a path",
                           endpoint);
    hlen = (size_t)(end - p);
    if (hlen == 0 || hlen >= sizeof(ep->host))
        return cst_err_set(err, "endpoint %s has no usable host", endpoint);
    if (memchr(p, '@', hlen) != NULL)
        return cst_err_set(err, "endpoint %s must not hold a user name or password", endpoint);
    if (p[0] == '[') {
        const char *rb = memchr(p, ']', hlen);

        if (rb == NULL || rb == p + 1)
            return cst_err_set(err, "endpoint %s: bad IPv6 address", endpoint);
        memcpy(ep->hostname, p + 1, (size_t)(rb - p - 1));
        ep->hostname[rb - p - 1] = '\0';
        if (rb + 1 < end) {
            if (rb[1] != ':')
                return cst_err_set(err, "endpoint %s: bad IPv6 address", endpoint);
            port = rb + 2;
        }
        for (const char *c = ep->hostname; *c; c++)
            if (!strchr("0123456789abcdefABCDEF:.", *c))
                return cst_err_set(err, "endpoint %s: bad IPv6 address", endpoint);
    } else {
        const char *colon = memchr(p, ':', hlen);
        size_t nlen = colon ? (size_t)(colon - p) : hlen;

        if (nlen == 0)
            return cst_err_set(err, "endpoint %s has no usable host", endpoint);
        memcpy(ep->hostname, p, nlen);
        ep->hostname[nlen] = '\0';
        if (colon)
            port = colon + 1;
        for (const char *c = ep->hostname; *c; c++)
            if (!(*c == '-' || *c == '.' || (*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
                  (*c >= 'A' && *c <= 'Z')))
                return cst_err_set(err, "endpoint %s: '%c' cannot be in a host name", endpoint, *c);
    }
    if (port != NULL) {
        long v = 0;
        const char *c = port;

        for (; c < end && *c >= '0' && *c <= '9' && v <= 65535; c++)
            v = v * 10 + (*c - '0');
        if (c == port || c != end || v < 1 || v > 65535)
            return cst_err_set(err, "endpoint %s: bad port", endpoint);
    }
    memcpy(ep->host, p, hlen);
    ep->host[hlen] = '\0';
    if (!ep->https && !s3_is_loopback(ep->hostname))
        return cst_err_set(err,
                           "endpoint %s: plain http:// is allowed only for a loopback address; "
                           "use https://",
                           endpoint);
    return 0;
}

char *s3_uri_encode(const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = util_xmalloc(strlen(s) * 3 + 1), *o = out;

    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '.' || *c == '_' || *c == '~' || (keep_slash && *c == '/')) {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    *o = '\0';
    return out;
}

struct qpair {
    char *key, *value;
};

static int qpair_cmp(const void *a, const void *b)
{
    const struct qpair *x = a, *y = b;
    int c = strcmp(x->key, y->key);

    return c != 0 ? c : strcmp(x->value, y->value);
}

char *s3_query(const struct s3_qparam *params, size_t n)
{
    struct qpair *q = util_xcalloc(n ? n : 1, sizeof(*q));
    size_t len = 1;
    char *out, *o;

    for (size_t i = 0; i < n; i++) {
        q[i].key = s3_uri_encode(params[i].key, 0);
        q[i].value = s3_uri_encode(params[i].value ? params[i].value : "", 0);
        len += strlen(q[i].key) + strlen(q[i].value) + 2;
    }
    /* Sorted by encoded key, as SigV4's canonical query string is. */
    qsort(q, n, sizeof(*q), qpair_cmp);
    o = out = util_xmalloc(len);
    *o = '\0';
    for (size_t i = 0; i < n; i++) {
        o += sprintf(o, "%s%s=%s", i ? "&" : "", q[i].key, q[i].value);
        free(q[i].key);
        free(q[i].value);
    }
    free(q);
    return out;
}

char *s3_url(const struct s3_endpoint *ep, const char *bucket, int path_style, const char *key,
             const char *query)
{
    const char *scheme = ep->https ? "https" : "http";
    char *ekey = s3_uri_encode(key ? key : "", 1);
    char *url;
    int q = query != NULL && query[0] != '\0';

    if (path_style)
        url = util_printf("%s://%s/%s%s%s%s%s", scheme, ep->host, bucket, key ? "/" : "", ekey,
                          q ? "?" : "", q ? query : "");
    else
        url = util_printf("%s://%s.%s/%s%s%s", scheme, bucket, ep->host, ekey, q ? "?" : "",
                          q ? query : "");
    free(ekey);
    return url;
}

/* ---- failures ---- */

static const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

static int has(const char *hay, const char *needle)
{
    return hay != NULL && strcasestr(hay, needle) != NULL;
}

/* "403 SignatureDoesNotMatch" or "400 InvalidArgument: Invalid storage class" or "503". */
static void reply_words(const struct s3_outcome *o, int with_message, char *out, size_t outlen)
{
    const char *code = nz(o->code), *msg = nz(o->message);

    if (code[0] == '\0')
        snprintf(out, outlen, "%ld", o->status);
    else if (with_message && msg[0] != '\0')
        snprintf(out, outlen, "%ld %s: %.200s", o->status, code, msg);
    else
        snprintf(out, outlen, "%ld %s", o->status, code);
}

static enum dest_error explain_tls(const struct s3_names *n, const struct s3_outcome *o,
                                   char *cause, size_t len)
{
    const char *d = nz(o->curl_detail);

    if (o->curl_code == CURLE_SSL_CACERT_BADFILE) {
        snprintf(cause, len,
                 "cannot load ca_file %s (%s): it must be a readable PEM file of CA "
                 "certificates",
                 nz(n->ca_file), d);
    } else if (has(d, "subject name") || has(d, "does not match")) {
        snprintf(cause, len,
                 "TLS certificate of %s does not match that name (%s): the certificate must be "
                 "issued for it; check endpoint and path_style",
                 n->host, d);
    } else if (has(d, "expired") || has(d, "not yet valid")) {
        snprintf(cause, len,
                 "TLS certificate of %s is outside its validity period (%s): renew the server's "
                 "certificate or fix this host's clock",
                 n->host, d);
    } else if (n->ca_file != NULL) {
        snprintf(cause, len,
                 "TLS certificate of %s not trusted (%s): ca_file %s does not hold the CA that "
                 "signed it",
                 n->host, d, n->ca_file);
    } else {
        snprintf(cause, len,
                 "TLS certificate of %s not trusted (%s): set ca_file to the CA certificate "
                 "that signed it",
                 n->host, d);
    }
    return DEST_ERR_CONFIG;
}

static enum dest_error explain_transport(const struct s3_names *n, const struct s3_outcome *o,
                                         char *cause, size_t len)
{
    const char *d = nz(o->curl_detail);

    if (d[0] == '\0')
        d = curl_easy_strerror((CURLcode)o->curl_code);
    switch (o->curl_code) {
    case CURLE_COULDNT_CONNECT:
        snprintf(cause, len, "cannot connect to %s (%s)", n->host, d);
        return DEST_ERR_TRANSIENT;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(cause, len, "%s did not answer in time (%s)", n->host, d);
        return DEST_ERR_TRANSIENT;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(cause, len, "cannot resolve %s (%s): check endpoint if this persists", n->host, d);
        return DEST_ERR_TRANSIENT;
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        snprintf(cause, len, "the connection to %s broke (%s)", n->host, d);
        return DEST_ERR_TRANSIENT;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
        return explain_tls(n, o, cause, len);
    case CURLE_SSL_CONNECT_ERROR:
        if (has(d, "certificate") || has(d, "verify"))
            return explain_tls(n, o, cause, len);
        if (has(d, "wrong version number") || has(d, "unknown protocol") ||
            has(d, "packet length too long")) {
            snprintf(cause, len,
                     "TLS handshake with %s failed (%s): does it speak plain http? check "
                     "endpoint",
                     n->host, d);
            return DEST_ERR_CONFIG;
        }
        snprintf(cause, len, "TLS handshake with %s failed (%s)", n->host, d);
        return DEST_ERR_TRANSIENT;
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
        snprintf(cause, len, "TLS with %s failed (%s): check ca_file and the server's certificate",
                 n->host, d);
        return DEST_ERR_CONFIG;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(cause, len, "the request URL is not usable (%s): check endpoint and bucket", d);
        return DEST_ERR_CONFIG;
    case CURLE_READ_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
        snprintf(cause, len, "cannot read the local file being sent (%s)", d);
        return DEST_ERR_SOURCE;
    case CURLE_WRITE_ERROR:
        snprintf(cause, len, "cannot store what %s sent (%s)", n->host, d);
        return DEST_ERR_TRANSIENT;
    default:
        snprintf(cause, len, "the request to %s failed (curl error %d: %s)", n->host, o->curl_code,
                 d);
        return DEST_ERR_TRANSIENT;
    }
}

static int code_is(const struct s3_outcome *o, const char *code)
{
    return o->code != NULL && strcmp(o->code, code) == 0;
}

static enum dest_error explain_http(const struct s3_names *n, const struct s3_outcome *o,
                                    char *cause, size_t len)
{
    char words[320], full[320];
    long st = o->status;

    reply_words(o, 0, words, sizeof(words));
    reply_words(o, 1, full, sizeof(full));
    if (st == 401 || st == 403) {
        if (code_is(o, "SignatureDoesNotMatch")) {
            snprintf(cause, len, "S3 refused the credentials (%s): check secret_key_file %s", words,
                     nz(n->secret_key_file));
        } else if (code_is(o, "InvalidAccessKeyId")) {
            snprintf(cause, len, "S3 does not know the access key (%s): check access_key_file %s",
                     words, nz(n->access_key_file));
        } else if (code_is(o, "RequestTimeTooSkewed")) {
            snprintf(cause, len,
                     "S3 refused the request because this host's clock is off (%s): fix the "
                     "clock (NTP)",
                     words);
        } else if (code_is(o, "AccessDenied")) {
            snprintf(cause, len,
                     "S3 denied access to bucket %s (%s): give the access key in %s read and "
                     "write access to the bucket",
                     n->bucket, full, nz(n->access_key_file));
        } else {
            snprintf(cause, len,
                     "S3 refused the request (%s%s): check access_key_file %s, secret_key_file "
                     "%s and the key's access to bucket %s",
                     full, nz(o->code)[0] ? "" : ", no detail in the reply", nz(n->access_key_file),
                     nz(n->secret_key_file), n->bucket);
        }
        return DEST_ERR_CONFIG;
    }
    if (st == 404) {
        if (code_is(o, "NoSuchBucket")) {
            snprintf(cause, len, "bucket %s does not exist at %s (%s): create it or fix bucket",
                     n->bucket, n->host, words);
            return DEST_ERR_CONFIG;
        }
        if (code_is(o, "NoSuchUpload"))
            snprintf(cause, len, "the multipart upload is gone (%s)", words);
        else
            snprintf(cause, len, "not found (%s)", words);
        return DEST_ERR_TRANSIENT;
    }
    if (st == 400) {
        if (code_is(o, "XAmzContentSHA256Mismatch") || code_is(o, "BadDigest") ||
            code_is(o, "InvalidDigest")) {
            snprintf(cause, len,
                     "S3 received data that differs from its SHA-256 (%s): the local file "
                     "changed since it was sealed",
                     words);
            return DEST_ERR_SOURCE;
        }
        if (code_is(o, "RequestTimeout") || code_is(o, "IncompleteBody")) {
            snprintf(cause, len, "S3 gave up on a slow request (%s)", words);
            return DEST_ERR_TRANSIENT;
        }
        if (code_is(o, "InvalidStorageClass") ||
            (code_is(o, "InvalidArgument") && n->hot_class != NULL)) {
            snprintf(cause, len, "S3 rejected the request (%s): check hot_class %s", full,
                     nz(n->hot_class));
            return DEST_ERR_CONFIG;
        }
        if (code_is(o, "AuthorizationHeaderMalformed") || code_is(o, "InvalidRegion") ||
            code_is(o, "IllegalLocationConstraintException")) {
            snprintf(cause, len, "S3 rejected the signature's region (%s): check region (now %s)",
                     full, nz(n->region));
            return DEST_ERR_CONFIG;
        }
        if (code_is(o, "InvalidBucketName")) {
            snprintf(cause, len, "S3 rejected the bucket name %s (%s): check bucket", n->bucket,
                     full);
            return DEST_ERR_CONFIG;
        }
        snprintf(cause, len, "S3 rejected the request (%s)", full);
        return DEST_ERR_CONFIG;
    }
    if (st == 301 || st == 308) {
        snprintf(cause, len,
                 "bucket %s is served at another endpoint or region (%s): check endpoint, "
                 "region and path_style",
                 n->bucket, full);
        return DEST_ERR_CONFIG;
    }
    if (st == 408 || st == 429 || st >= 500) {
        snprintf(cause, len, "S3 is busy or failing (%s)", full);
        return DEST_ERR_TRANSIENT;
    }
    if (st == 409 || st == 412 || st == 416 || st == 307) {
        snprintf(cause, len, "S3 answered %s", full);
        return DEST_ERR_TRANSIENT;
    }
    if (st >= 400) {
        snprintf(cause, len, "S3 rejected the request (%s)", full);
        return DEST_ERR_CONFIG;
    }
    snprintf(cause, len, "unexpected reply from %s (%s)", n->host, full);
    return DEST_ERR_TRANSIENT;
}

enum dest_error s3_explain(const struct s3_names *n, const char *doing, const struct s3_outcome *o,
                           char *out, size_t outlen)
{
    char cause[CST_ERR_SIZE];
    enum dest_error kind;

    if (o->curl_code != CURLE_OK)
        kind = explain_transport(n, o, cause, sizeof(cause));
    else
        kind = explain_http(n, o, cause, sizeof(cause));
    if (doing == NULL)
        snprintf(out, outlen, "%s", cause);
    else
        snprintf(out, outlen, "destination %s: %s: %s", n->dest, doing, cause);
    return kind;
}

/* ---- credentials ---- */

#define S3_CRED_MAX 4096

char *s3_cred_read(const char *path, const char *key_name, struct cst_err *err)
{
    struct stat sb;
    char *buf = NULL, *out = NULL;
    ssize_t got;
    int fd;

    if (path == NULL) {
        cst_err_set(err, "%s is not set: S3 credentials are read only from files", key_name);
        return NULL;
    }
    if (sodium_init() < 0) {
        cst_err_set(err, "cannot initialise libsodium");
        return NULL;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        cst_err_sys(err, "cannot open %s %s", key_name, path);
        return NULL;
    }
    if (fstat(fd, &sb) < 0) {
        cst_err_sys(err, "cannot stat %s %s", key_name, path);
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        cst_err_set(err, "%s %s is not a regular file", key_name, path);
        goto out;
    }
    if (sb.st_mode & 077) {
        cst_err_set(err, "%s %s is %s by other users (mode %04o); run chmod 600 %s", key_name, path,
                    (sb.st_mode & 044) ? "readable" : "writable", (unsigned)(sb.st_mode & 07777),
                    path);
        goto out;
    }
    buf = sodium_malloc(S3_CRED_MAX + 1);
    if (buf == NULL) {
        cst_err_set(err, "cannot allocate protected memory for %s", key_name);
        goto out;
    }
    got = util_read_full(fd, buf, S3_CRED_MAX);
    if (got < 0) {
        cst_err_sys(err, "cannot read %s %s", key_name, path);
        goto out;
    }
    buf[got] = '\0';
    char *nl = memchr(buf, '\n', (size_t)got);

    if (nl == NULL && got == S3_CRED_MAX) {
        cst_err_set(err, "%s %s: the first line is longer than %d bytes", key_name, path,
                    S3_CRED_MAX);
        goto out;
    }
    if (nl != NULL)
        *nl = '\0';
    char *start = buf, *end;

    while (*start == ' ' || *start == '\t' || *start == '\r')
        start++;
    end = start + strlen(start);
    while (end > start && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    if (end == start) {
        cst_err_set(err, "%s %s is empty: put the key on its first line", key_name, path);
        goto out;
    }
    out = sodium_malloc((size_t)(end - start) + 1);
    if (out == NULL) {
        cst_err_set(err, "cannot allocate protected memory for %s", key_name);
        goto out;
    }
    memcpy(out, start, (size_t)(end - start));
    out[end - start] = '\0';
out:
    if (buf != NULL)
        sodium_free(buf); /* sodium_free wipes */
    close(fd);
    return out;
}
