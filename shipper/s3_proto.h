/*
 * s3_proto.h - the parts of the S3 backend that are plain logic: endpoint
 * and URL building in the exact form curl's SigV4 signs, what a failed
 * request means (enum dest_error) and the sentence an operator reads, and
 * the credentials files.
 *
 * libcurl 7.88 signs the path and query *as typed* (CURLOPT_AWS_SIGV4),
 * while the server canonicalises what it receives; the two only agree when
 * the URL is already canonical: unreserved bytes as they are, every other
 * byte %XX (uppercase), query keys sorted, '/' in values as %2F, bare keys
 * written "key=". Everything here produces that form.
 */
#ifndef CST_S3_PROTO_H
#define CST_S3_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "shipper/dest.h"

struct s3_endpoint {
    int https;
    char host[256];     /* "host[:port]" as in the URL ("[::1]:7480" for IPv6) */
    char hostname[256]; /* without port or brackets: "127.0.0.1" */
};

/* "https://host[:port]" (one trailing '/' allowed). http:// only for a loopback host. */
int s3_endpoint_parse(const char *endpoint, struct s3_endpoint *ep, struct cst_err *err);
/* 127.0.0.0/8, ::1, localhost. */
int s3_is_loopback(const char *hostname);

/* SigV4 URI encoding (malloc'd): A-Z a-z 0-9 - . _ ~ kept, '/' kept if keep_slash. */
char *s3_uri_encode(const char *s, int keep_slash);

struct s3_qparam {
    const char *key;
    const char *value; /* NULL: a bare key, written "key=" */
};

/* Canonical query string (malloc'd, without '?'): sorted by key, values encoded. */
char *s3_query(const struct s3_qparam *params, size_t n);

/* URL of key (NULL: the bucket itself) with an optional canonical query (malloc'd).
 * path style: scheme://host/bucket/key; virtual host: scheme://bucket.host/key. */
char *s3_url(const struct s3_endpoint *ep, const char *bucket, int path_style, const char *key,
             const char *query);

/* What the error sentences name. */
struct s3_names {
    const char *dest;
    const char *host;
    const char *bucket;
    const char *region;
    const char *access_key_file, *secret_key_file;
    const char *ca_file;   /* NULL: the system's CAs */
    const char *hot_class; /* NULL: none */
};

/* How a request ended. */
struct s3_outcome {
    int curl_code;           /* CURLcode; 0 when an HTTP reply came */
    const char *curl_detail; /* curl's error buffer ("" or NULL when none) */
    long status;             /* HTTP status; 0 without a reply */
    const char *code;        /* S3's <Code> ("" or NULL when none, e.g. HEAD) */
    const char *message;     /* S3's <Message> ("" or NULL) */
};

/* Classify a failed request and write "destination NAME: DOING: cause: what to do" into out.
 * doing is what was attempted, e.g. "cannot upload objects/ab/abcd"; NULL: the cause alone
 * (doctor's checks, which are already labelled). */
enum dest_error s3_explain(const struct s3_names *n, const char *doing, const struct s3_outcome *o,
                           char *out, size_t outlen);

/* First line of a credentials file, blanks trimmed, in sodium_malloc'd memory (sodium_free it).
 * A file group or others may read or write is refused; key_name ("secret_key_file") is for
 * the message. NULL and err on any problem. */
char *s3_cred_read(const char *path, const char *key_name, struct cst_err *err);

#endif
