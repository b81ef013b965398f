/*
 * dest_s3.c - the `s3` destination: any S3-compatible store (AWS, Ceph RGW,
 * MinIO), signed by libcurl's own SigV4, in the manner of pgBackRest's
 * src/storage/s3/storage.c.
 *
 * Uploads run on the agent's loop through curl_ev. Each request carries
 * x-amz-content-sha256 with the real SHA-256 of its body, so the server
 * itself checks every byte: for a single PUT that is the sealed object's
 * stored_sha256; for a multipart upload each part is hashed (on the
 * workpool when there is one) in order, which also rebuilds the whole
 * object's hash to compare with stored_sha256 before Complete. Every upload
 * ends with a HEAD that must show the expected size and our
 * x-amz-meta-custodian-stored-sha256; only then is the item ok. A multipart
 * upload that fails is aborted so that no parts are left behind.
 *
 * At most max_inflight requests run at once per destination (parts of one
 * big object or whole small objects alike); the rest wait in a FIFO. The
 * bandwidth limit is shared out over those slots.
 *
 * The blocking operations (get, exists, remove, list, probe) use one easy
 * handle, reused so that connections and TLS sessions are kept.
 */
#include "dest.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "shipper/curl_ev.h"
#include "shipper/s3_proto.h"
#include "shipper/s3_xml.h"
#include "shipper/workpool.h"

#define S3_MIN_PART (5ull << 20)
#define S3_MAX_PART (5ull << 30)
#define S3_DEFAULT_PART (64ull << 20)
#define S3_MAX_PARTS 10000
#define S3_GET_RANGE (64ull << 20)
#define S3_REPLY_MAX (8u << 20) /* reply bodies kept in memory: errors, listings */
#define S3_PART_TRIES 3         /* a part failing transiently is sent again after a pause */
#define S3_GET_TRIES 4 /* failures in a row (no MiB of progress) before a download gives up */
#define S3_HASH_CHUNK (1u << 20)
#ifndef S3_LIST_MAX_KEYS
#define S3_LIST_MAX_KEYS "1000" /* keys per ListObjectsV2 page (tests build with fewer) */
#endif
/* SHA-256 of the empty string: the payload hash of bodyless requests. */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3_upload;

enum call_kind {
    CALL_SYNC,
    CALL_PUT,
    CALL_CREATE,
    CALL_PART,
    CALL_COMPLETE,
    CALL_HEAD,
    CALL_ABORT,
    CALL_RETENTION
};

/* One HTTP request and what came back. */
struct s3_call {
    /* request */
    const char *method; /* GET HEAD PUT POST DELETE */
    char *url;
    struct curl_slist *headers;
    int unsigned_req;     /* no signature: the anonymous-access probe */
    long timeout_s;       /* overall limit; 0: none (only the stall detection) */
    int body_fd;          /* body from this file (pread; the call's own dup), or -1 */
    const char *body_mem; /* or from memory */
    char *body_owned;     /* freed with the call */
    uint64_t body_off, body_len, body_pos;
    int read_errno, read_short;
    int out_fd;             /* GET: the wanted bytes go here; -1: into reply */
    uint64_t out_off;       /* the byte offset expected at the start of a 206 */
    uint64_t out_max;       /* bytes expected into out_fd */
    int out_accept_200;     /* a 200 (the whole object) is fine too */
    uint64_t out_written;   /* bytes that landed in out_fd */
    int out_errno, out_bad; /* write failed; the server sent what we did not ask */
    /* reply */
    CURL *easy;
    char errbuf[CURL_ERROR_SIZE];
    CURLcode rc;
    long status, hdr_status;
    char *reply;
    size_t reply_len, reply_cap;
    int reply_overflow;
    int has_length, has_range;
    uint64_t content_length, range_start;
    char etag[256], stored_sha[80], storage_class[64];
    char version_id[128], lock_mode[32], retain_until[64]; /* x-amz-version-id, lock headers */
    struct s3_xml_error xerr;
    char detail[CST_ERR_SIZE]; /* our own cause when curl's is not the right one */
    /* async */
    enum call_kind kind;
    struct s3_upload *up;
    size_t part;
    int64_t started_ms;
    struct s3_call *next, *prev; /* wait queue, or running list */
};

struct s3_part {
    uint64_t off, len;
    unsigned char sha[32];
    char *etag;
    int tries;
};

struct s3_batch {
    struct dest_put *puts;
    size_t n, left;
    dest_done_fn done;
    void *arg;
};

struct s3_hash_job {
    struct work work;
    struct s3_upload *up;
    size_t part;
    int err; /* errno, or -1 when the file ended early */
};

struct s3_upload {
    struct s3 *s3;
    struct s3_batch *batch;
    struct dest_put *put;
    int fd;
    char *url;
    int multipart;
    char *upload_id;
    struct s3_part *parts;
    size_t n_parts;
    size_t hashed; /* parts 0..hashed-1 hashed (always in order) */
    size_t sent;   /* parts 0..sent-1 handed to the request queue */
    size_t parts_done;
    int sending;    /* part requests queued or running */
    ev_timer retry; /* parts to send again after a transient failure */
    size_t *retry_parts;
    size_t n_retry;
    int calls; /* requests queued or running */
    EVP_MD_CTX *whole;
    struct s3_hash_job job;
    int hashing;
    int complete_sent, completed, abort_sent, verified;
    int retention_sent; /* PUT ?retention sent on the stored version (its lock was lost) */
    char version_id[128];
    int failed;                    /* put->kind and put->error hold the first failure */
    struct s3_upload *prev, *next; /* s3->uploads */
    struct s3_upload *ready_next;  /* s3->ready: to settle from the timer */
};

struct s3 {
    struct dest *d;
    struct s3_endpoint ep;
    char *host; /* what requests connect to: host[:port], or bucket.host[:port] */
    struct s3_names names;
    char *bucket, *region, *sigv4, *ca_file, *hot_class, *akf, *skf;
    char *access_key, *secret_key; /* sodium_malloc'd */
    int path_style, max_inflight;
    int object_lock;
    char *lock_mode;       /* with object_lock: GOVERNANCE or COMPLIANCE */
    curl_off_t send_speed; /* bytes/s per request, 0 unlimited */
    uint64_t part_size;
    struct ev_loop *loop;
    struct curl_ev *curl;
    struct workpool *pool;
    CURL *easy; /* the blocking operations' handle */
    int active; /* requests running in curl_ev */
    struct s3_call *wait_head, *wait_tail;
    struct s3_call *running;
    struct s3_call *failed_starts; /* could not be added: completed from the timer */
    struct s3_upload *uploads;
    struct s3_upload *ready;
    ev_timer kick;
};

static void call_complete(struct s3 *s3, struct s3_call *c);
static void pump_wait(struct s3 *s3);
static void upload_step(struct s3_upload *up);

/* ---- small helpers ---- */

static void sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 32;

    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    util_hex(md, 32, hex);
}

/* --- Object Lock --- */

/* The put asks for a retention this destination can give. */
static int wants_lock(const struct s3 *s3, const struct dest_put *p)
{
    return s3->object_lock && p->retain_until > 0;
}

/* ms -> "2033-11-20T00:00:00Z", the form S3 takes. */
static void iso_date(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "2033-11-20T00:00:00.000000000Z" (RGW), "2033-11-20T00:00:00.000Z" (AWS) -> ms; 0 if not a
 * date. Fractions of a second are dropped: retention is kept in whole seconds. */
static int64_t parse_iso_date(const char *s)
{
    struct tm tm;
    const char *rest;

    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL)
        return 0;
    return (int64_t)timegm(&tm) * 1000;
}

static const char *call_key_of(const struct s3_upload *up)
{
    return up->put->remote_key;
}

/* ---- one request: building, callbacks, outcome ---- */

static struct s3_call *call_new(const char *method, char *url)
{
    struct s3_call *c = util_xcalloc(1, sizeof(*c));

    c->method = method;
    c->url = url;
    c->body_fd = -1;
    c->out_fd = -1;
    return c;
}

static void call_header(struct s3_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void call_header(struct s3_call *c, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    struct curl_slist *l = curl_slist_append(c->headers, line);

    if (l == NULL) {
        log_error("out of memory building an S3 request");
        abort();
    }
    c->headers = l;
}

static void call_free(struct s3_call *c)
{
    if (c == NULL)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    if (c->body_fd >= 0)
        close(c->body_fd);
    curl_slist_free_all(c->headers);
    free(c->url);
    free(c->reply);
    free(c->body_owned);
    free(c);
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct s3_call *c = arg;
    size_t want = size * nitems;
    uint64_t left = c->body_len - c->body_pos;

    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (c->body_fd >= 0) {
        ssize_t n;

        do
            n = pread(c->body_fd, buf, want, (off_t)(c->body_off + c->body_pos));
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            c->read_errno = errno;
            return CURL_READFUNC_ABORT;
        }
        if (n == 0) {
            c->read_short = 1;
            return CURL_READFUNC_ABORT;
        }
        want = (size_t)n;
    } else {
        memcpy(buf, c->body_mem + c->body_pos, want);
    }
    c->body_pos += want;
    return want;
}

static int on_seek(void *arg, curl_off_t offset, int origin)
{
    struct s3_call *c = arg;

    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > c->body_len)
        return CURL_SEEKFUNC_FAIL;
    c->body_pos = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static int reply_append(struct s3_call *c, const char *p, size_t n)
{
    if (c->reply_len + n > S3_REPLY_MAX) {
        c->reply_overflow = 1;
        return -1;
    }
    if (c->reply_len + n + 1 > c->reply_cap) {
        c->reply_cap = (c->reply_len + n + 1) * 2;
        if (c->reply_cap > S3_REPLY_MAX + 1)
            c->reply_cap = S3_REPLY_MAX + 1;
        c->reply = util_xrealloc(c->reply, c->reply_cap);
    }
    memcpy(c->reply + c->reply_len, p, n);
    c->reply_len += n;
    c->reply[c->reply_len] = '\0';
    return 0;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *arg)
{
    struct s3_call *c = arg;
    size_t n = size * nmemb;
    long st = c->hdr_status;

    if (c->out_fd >= 0 && (st == 206 || (st == 200 && c->out_accept_200))) {
        /* Only the bytes asked for, where they belong: a restore is streamed, not redone. */
        if (st == 206 && (!c->has_range || c->range_start != c->out_off)) {
            c->out_bad = 1;
            return 0;
        }
        if (c->out_written + n > c->out_max) {
            c->out_bad = 1;
            return 0;
        }
        if (util_write_all(c->out_fd, p, n) < 0) {
            c->out_errno = errno;
            return 0;
        }
        c->out_written += n;
        return n;
    }
    if (reply_append(c, p, n) < 0)
        return 0;
    return n;
}

static void copy_trimmed(char *out, size_t outlen, const char *v, size_t vlen)
{
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (vlen >= outlen)
        vlen = outlen - 1;
    memcpy(out, v, vlen);
    out[vlen] = '\0';
}

static size_t on_header(char *p, size_t size, size_t nitems, void *arg)
{
    struct s3_call *c = arg;
    size_t n = size * nitems;
    const char *colon;

    if (n > 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue): forget the previous one's headers. */
        const char *sp = memchr(p, ' ', n);

        c->hdr_status = sp ? strtol(sp + 1, NULL, 10) : 0;
        c->has_length = c->has_range = 0;
        c->etag[0] = c->stored_sha[0] = c->storage_class[0] = '\0';
        c->version_id[0] = c->lock_mode[0] = c->retain_until[0] = '\0';
        return n;
    }
    colon = memchr(p, ':', n);
    if (colon == NULL)
        return n;
    size_t klen = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vlen = n - klen - 1;

    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    char val[256];

    copy_trimmed(val, sizeof(val), v, vlen);
    if (klen == 14 && strncasecmp(p, "content-length", 14) == 0) {
        char *end;
        unsigned long long len = strtoull(val, &end, 10);

        if (end != val && *end == '\0') {
            c->content_length = len;
            c->has_length = 1;
        }
    } else if (klen == 13 && strncasecmp(p, "content-range", 13) == 0) {
        unsigned long long a;

        if (sscanf(val, "bytes %llu-", &a) == 1) {
            c->range_start = a;
            c->has_range = 1;
        }
    } else if (klen == 4 && strncasecmp(p, "etag", 4) == 0) {
        snprintf(c->etag, sizeof(c->etag), "%s", val);
    } else if (klen == 34 && strncasecmp(p, "x-amz-meta-custodian-stored-sha256", 34) == 0) {
        snprintf(c->stored_sha, sizeof(c->stored_sha), "%s", val);
    } else if (klen == 19 && strncasecmp(p, "x-amz-storage-class", 19) == 0) {
        snprintf(c->storage_class, sizeof(c->storage_class), "%s", val);
    } else if (klen == 16 && strncasecmp(p, "x-amz-version-id", 16) == 0) {
        snprintf(c->version_id, sizeof(c->version_id), "%s", val);
    } else if (klen == 22 && strncasecmp(p, "x-amz-object-lock-mode", 22) == 0) {
        snprintf(c->lock_mode, sizeof(c->lock_mode), "%s", val);
    } else if (klen == 35 && strncasecmp(p, "x-amz-object-lock-retain-until-date", 35) == 0) {
        snprintf(c->retain_until, sizeof(c->retain_until), "%s", val);
    }
    return n;
}

/* Every option of a request, on a fresh or reset handle. */
static void call_setup(struct s3 *s3, CURL *h, struct s3_call *c)
{
    c->easy = h;
    c->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A stalled transfer: less than 1 byte/s for a minute. No overall limit for big objects. */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    if (c->timeout_s > 0)
        curl_easy_setopt(h, CURLOPT_TIMEOUT, c->timeout_s);
    /* Verification is always on; there is deliberately no way to turn it off. */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (s3->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, s3->ca_file);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    if (!c->unsigned_req) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s3->sigv4);
        curl_easy_setopt(h, CURLOPT_USERNAME, s3->access_key);
        curl_easy_setopt(h, CURLOPT_PASSWORD, s3->secret_key);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    if (strcmp(c->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body_len);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, c);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, c);
        if (s3->send_speed > 0)
            curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE, s3->send_speed);
    } else if (strcmp(c->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body_mem ? c->body_mem : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
    } else if (strcmp(c->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(c->method, "DELETE") == 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
}

/* After the transfer: status, S3's error document, our own cause for callback aborts. */
static void call_finish(struct s3_call *c, CURLcode rc)
{
    c->rc = rc;
    c->status = 0;
    if (c->easy)
        curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
    if (c->status >= 300 && c->reply)
        s3_xml_error(c->reply, c->reply_len, &c->xerr);
    if (c->read_errno)
        snprintf(c->detail, sizeof(c->detail), "reading the spool file: %s",
                 strerror(c->read_errno));
    else if (c->read_short)
        snprintf(c->detail, sizeof(c->detail), "the spool file got shorter while being sent");
    else if (c->out_errno)
        snprintf(c->detail, sizeof(c->detail), "writing the download: %s", strerror(c->out_errno));
    else if (c->out_bad)
        snprintf(c->detail, sizeof(c->detail),
                 "the server sent bytes that were not asked for (status %ld)", c->hdr_status);
    else if (c->reply_overflow)
        snprintf(c->detail, sizeof(c->detail), "a reply larger than %u bytes", S3_REPLY_MAX);
}

static int call_ok(const struct s3_call *c)
{
    return c->rc == CURLE_OK && c->status >= 200 && c->status < 300;
}

/* Classify and word a failed request. */
static enum dest_error call_explain(struct s3 *s3, const struct s3_call *c, const char *doing,
                                    char *out, size_t outlen)
{
    struct s3_outcome o = {
        .curl_code = (int)c->rc,
        .curl_detail = c->detail[0] ? c->detail : c->errbuf,
        .status = c->status,
        .code = c->xerr.code,
        .message = c->xerr.message,
    };

    return s3_explain(&s3->names, doing, &o, out, outlen);
}

static int is_tls_failure(CURLcode rc, const char *detail)
{
    return rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
           rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_SSL_ISSUER_ERROR ||
           (rc == CURLE_SSL_CONNECT_ERROR && detail && strcasestr(detail, "certificate"));
}

static void call_log(struct s3 *s3, const struct s3_call *c)
{
    log_debug("s3 request dest=%s method=%s url=%s status=%ld curl=%d ms=%lld", s3->d->name,
              c->method, c->url, c->status, (int)c->rc,
              (long long)(util_mono_ms() - c->started_ms));
}

/* ---- blocking requests ---- */

static int call_run(struct s3 *s3, struct s3_call *c)
{
    CURLcode rc;

    curl_easy_reset(s3->easy);
    call_setup(s3, s3->easy, c);
    c->started_ms = util_mono_ms();
    rc = curl_easy_perform(s3->easy);
    call_finish(c, rc);
    c->easy = NULL; /* the handle stays s3's */
    call_log(s3, c);
    return call_ok(c) ? 0 : -1;
}

static void call_sign_empty(struct s3_call *c)
{
    call_header(c, "x-amz-content-sha256: %s", S3_EMPTY_SHA256);
}

static char *object_url(struct s3 *s3, const char *key, const char *query)
{
    return s3_url(&s3->ep, s3->bucket, s3->path_style, key, query);
}

static char *bucket_url(struct s3 *s3, const char *query)
{
    return s3_url(&s3->ep, s3->bucket, s3->path_style, NULL, query);
}

/*
 * A HEAD reply has no body, so a 4xx says nothing about why. Ask again with a one-byte GET,
 * whose error document names the cause, and word that one.
 */
static enum dest_error explain_head(struct s3 *s3, const struct s3_call *head, const char *key,
                                    const char *doing, char *out, size_t outlen)
{
    if (head->rc == CURLE_OK && head->status >= 400 && head->status < 500) {
        struct s3_call *g = call_new("GET", key ? object_url(s3, key, NULL) : bucket_url(s3, NULL));
        enum dest_error kind;

        call_sign_empty(g);
        call_header(g, "Range: bytes=0-0");
        call_run(s3, g);
        if (g->status == head->status && g->xerr.code[0]) {
            kind = call_explain(s3, g, doing, out, outlen);
            call_free(g);
            return kind;
        }
        call_free(g);
    }
    return call_explain(s3, head, doing, out, outlen);
}

/* HEAD of key: 1 with *size (and etag), 0 when absent, -1 with err. */
static int head_object(struct s3 *s3, const char *key, uint64_t *size, char *etag, size_t etaglen,
                       struct cst_err *err)
{
    struct s3_call *c = call_new("HEAD", object_url(s3, key, NULL));
    char doing[CST_ERR_SIZE / 2];
    int rc = -1;

    snprintf(doing, sizeof(doing), "cannot look up %s", key);
    call_sign_empty(c);
    if (call_run(s3, c) == 0) {
        if (!c->has_length) {
            cst_err_set(err, "destination %s: %s: the reply has no Content-Length", s3->d->name,
                        doing);
            goto out;
        }
        *size = c->content_length;
        if (etag)
            snprintf(etag, etaglen, "%s", c->etag);
        rc = 1;
    } else if (c->rc == CURLE_OK && c->status == 404) {
        /* Absent object, or absent bucket? Only the first is an answer. */
        struct s3_call *b = call_new("HEAD", bucket_url(s3, NULL));

        call_sign_empty(b);
        if (call_run(s3, b) < 0 && b->rc == CURLE_OK && b->status == 404) {
            struct s3_outcome o = {.status = 404, .code = "NoSuchBucket"};

            s3_explain(&s3->names, doing, &o, err->msg, sizeof(err->msg));
        } else {
            rc = 0;
        }
        call_free(b);
    } else {
        explain_head(s3, c, key, doing, err->msg, sizeof(err->msg));
    }
out:
    call_free(c);
    return rc;
}

static int s3_stat(struct dest *d, const char *remote_key, struct dest_stat *st,
                   struct cst_err *err)
{
    struct s3 *s3 = d->impl;
    struct s3_call *c = call_new("HEAD", object_url(s3, remote_key, NULL));
    char doing[CST_ERR_SIZE / 2];
    int rc = -1;

    memset(st, 0, sizeof(*st));
    snprintf(doing, sizeof(doing), "cannot look up %s", remote_key);
    call_sign_empty(c);
    if (call_run(s3, c) == 0) {
        st->size = c->content_length;
        snprintf(st->storage_class, sizeof(st->storage_class), "%s", c->storage_class);
        snprintf(st->version_id, sizeof(st->version_id), "%s", c->version_id);
        snprintf(st->lock_mode, sizeof(st->lock_mode), "%s", c->lock_mode);
        st->retain_until = c->retain_until[0] ? parse_iso_date(c->retain_until) : 0;
        rc = 1;
    } else if (c->rc == CURLE_OK && c->status == 404) {
        rc = 0;
    } else {
        explain_head(s3, c, remote_key, doing, err->msg, sizeof(err->msg));
    }
    call_free(c);
    return rc;
}

static int s3_exists(struct dest *d, const char *remote_key, uint64_t *size, struct cst_err *err)
{
    uint64_t sz = 0;
    int rc = head_object(d->impl, remote_key, &sz, NULL, 0, err);

    if (rc == 1 && size)
        *size = sz;
    return rc;
}

static int s3_get(struct dest *d, const char *remote_key, int out_fd, struct cst_err *err)
{
    struct s3 *s3 = d->impl;
    char etag[256], doing[CST_ERR_SIZE / 2];
    uint64_t size = 0, off = 0;
    int found = head_object(s3, remote_key, &size, etag, sizeof(etag), err);

    if (found < 0)
        return -1;
    if (found == 0)
        return cst_err_set(err, "destination %s: cannot download %s: no such object", d->name,
                           remote_key);
    snprintf(doing, sizeof(doing), "cannot download %s", remote_key);
    /* Range by range, each resumed where it broke off: a large restore survives hiccups. */
    while (off < size) {
        uint64_t end = (size - off > S3_GET_RANGE ? off + S3_GET_RANGE : size) - 1;
        int tries = 0;

        while (off <= end) {
            struct s3_call *c = call_new("GET", object_url(s3, remote_key, NULL));
            enum dest_error kind;

            call_sign_empty(c);
            call_header(c, "Range: bytes=%llu-%llu", (unsigned long long)off,
                        (unsigned long long)end);
            if (etag[0])
                call_header(c, "If-Match: %s", etag);
            c->out_fd = out_fd;
            c->out_off = off;
            c->out_max = end - off + 1;
            c->out_accept_200 = off == 0 && end + 1 == size;
            call_run(s3, c);
            off += c->out_written;
            if (call_ok(c) && off > end) {
                call_free(c);
                break;
            }
            if (c->out_errno) {
                cst_err_set(err, "destination %s: %s: %s", d->name, doing, c->detail);
                call_free(c);
                return -1;
            }
            if (call_ok(c) && c->out_written == 0 && c->status == 200)
                snprintf(c->detail, sizeof(c->detail), "the server ignored the Range header");
            if (call_ok(c)) {
                snprintf(err->msg, sizeof(err->msg),
                         "destination %s: %s: the reply ended at byte %llu of %llu", d->name, doing,
                         (unsigned long long)off, (unsigned long long)size);
                kind = c->detail[0] ? DEST_ERR_CONFIG : DEST_ERR_TRANSIENT;
                if (c->detail[0])
                    snprintf(err->msg, sizeof(err->msg), "destination %s: %s: %s", d->name, doing,
                             c->detail);
            } else if (c->status == 412) {
                snprintf(err->msg, sizeof(err->msg),
                         "destination %s: %s: the object changed during the download "
                         "(412 PreconditionFailed)",
                         d->name, doing);
                kind = DEST_ERR_CONFIG;
            } else {
                kind = call_explain(s3, c, doing, err->msg, sizeof(err->msg));
            }
            /* A try that moved on by a MiB or more is progress, not a failure in a row. */
            if (c->out_written >= (1u << 20))
                tries = 0;
            call_free(c);
            if (kind != DEST_ERR_TRANSIENT || ++tries >= S3_GET_TRIES)
                return -1;
            log_warn("download interrupted, resuming dest=%s key=%s at=%llu try=%d: %s", d->name,
                     remote_key, (unsigned long long)off, tries, err->msg);
            sleep(1u << (tries - 1));
        }
    }
    return 0;
}

static int s3_remove(struct dest *d, const char *remote_key, struct cst_err *err)
{
    struct s3 *s3 = d->impl;
    struct s3_call *c = call_new("DELETE", object_url(s3, remote_key, NULL));
    char doing[CST_ERR_SIZE / 2];
    int rc = 0;

    call_sign_empty(c);
    if (call_run(s3, c) < 0 &&
        !(c->rc == CURLE_OK && c->status == 404 && strcmp(c->xerr.code, "NoSuchBucket") != 0)) {
        snprintf(doing, sizeof(doing), "cannot delete %s", remote_key);
        call_explain(s3, c, doing, err->msg, sizeof(err->msg));
        rc = -1;
    }
    call_free(c);
    return rc;
}

static int s3_list(struct dest *d, const char *prefix,
                   int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                   struct cst_err *err)
{
    struct s3 *s3 = d->impl;
    char doing[CST_ERR_SIZE / 2];
    char *token = NULL;
    int rc = 0;

    snprintf(doing, sizeof(doing), "cannot list %s", prefix && prefix[0] ? prefix : "the bucket");
    for (;;) {
        struct s3_qparam q[4];
        size_t nq = 0;
        struct s3_list_page page;

        q[nq++] = (struct s3_qparam){"list-type", "2"};
        q[nq++] = (struct s3_qparam){"max-keys", S3_LIST_MAX_KEYS};
        if (prefix && prefix[0])
            q[nq++] = (struct s3_qparam){"prefix", prefix};
        if (token)
            q[nq++] = (struct s3_qparam){"continuation-token", token};
        char *query = s3_query(q, nq);
        struct s3_call *c = call_new("GET", bucket_url(s3, query));

        free(query);
        call_sign_empty(c);
        if (call_run(s3, c) < 0) {
            call_explain(s3, c, doing, err->msg, sizeof(err->msg));
            call_free(c);
            rc = -1;
            break;
        }
        int r = s3_xml_list(c->reply, c->reply_len, cb, arg, &page);

        call_free(c);
        if (r < 0) {
            rc = cst_err_set(err, "destination %s: %s: the reply is not a ListObjectsV2 result",
                             d->name, doing);
            break;
        }
        if (r > 0 || !page.truncated)
            break;
        free(token);
        token = util_xstrdup(page.next_token);
    }
    free(token);
    return rc;
}

/* ---- probe (doctor) ---- */

static struct dest_check *check_add(struct dest_probe *out, const char *name, int ok,
                                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static struct dest_check *check_add(struct dest_probe *out, const char *name, int ok,
                                    const char *fmt, ...)
{
    struct dest_check *ch;
    va_list ap;

    if (out->n >= sizeof(out->checks) / sizeof(out->checks[0]))
        return NULL;
    ch = &out->checks[out->n++];
    snprintf(ch->name, sizeof(ch->name), "%s", name);
    ch->ok = ok;
    va_start(ap, fmt);
    vsnprintf(ch->detail, sizeof(ch->detail), fmt, ap);
    va_end(ap);
    return ch;
}

static int s3_probe(struct dest *d, struct dest_probe *out)
{
    struct s3 *s3 = d->impl;
    char msg[CST_ERR_SIZE], key[64], body[160], hex[65], rnd[8];
    struct s3_call *c = NULL;
    int all_ok = 1;

    memset(out, 0, sizeof(*out));
    /* reachable, TLS verified, authenticated, bucket: one signed GET ?location= tells all. */
    char *query = s3_query(&(struct s3_qparam){"location", NULL}, 1);

    c = call_new("GET", bucket_url(s3, query));
    free(query);
    call_sign_empty(c);
    call_run(s3, c);
    int tls_failed = is_tls_failure(c->rc, c->errbuf);

    if (c->rc != CURLE_OK && !tls_failed) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "reachable", 0, "%s", msg);
        all_ok = 0;
        goto out;
    }
    if (tls_failed)
        check_add(out, "reachable", 1, "%s answered (the TLS handshake failed: see below)",
                  s3->host);
    else
        check_add(out, "reachable", 1, "%s answered HTTP %ld", s3->host, c->status);
    if (!s3->ep.https) {
        check_add(out, "TLS verified", 0,
                  "the endpoint is plain http:// (accepted for loopback only): traffic is neither "
                  "encrypted nor authenticated; use https://");
        all_ok = 0;
    } else if (tls_failed) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "TLS verified", 0, "%s", msg);
        all_ok = 0;
        goto out;
    } else {
        check_add(out, "TLS verified", 1, "certificate of %s verified against %s", s3->host,
                  s3->ca_file ? s3->ca_file : "the system's CAs");
    }
    if (c->status == 401 || c->status == 403) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "authenticated", 0, "%s", msg);
        all_ok = 0;
        goto out;
    }
    if (c->rc != CURLE_OK || c->status >= 500) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "authenticated", 0, "cannot tell: %s", msg);
        all_ok = 0;
        goto out;
    }
    check_add(out, "authenticated", 1, "a signed request got HTTP %ld", c->status);
    if (!call_ok(c)) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "bucket exists", 0, "%s", msg);
        all_ok = 0;
        goto out;
    }
    check_add(out, "bucket exists", 1, "bucket %s answers", s3->bucket);
    call_free(c);
    c = NULL;

    /* object_lock = yes is only true of a bucket made with Object Lock. */
    if (s3->object_lock) {
        char enabled[32] = "";

        query = s3_query(&(struct s3_qparam){"object-lock", NULL}, 1);
        c = call_new("GET", bucket_url(s3, query));
        free(query);
        call_sign_empty(c);
        if (call_run(s3, c) == 0 &&
            s3_xml_text(c->reply, c->reply_len, "ObjectLockEnabled", enabled, sizeof(enabled)) ==
                0 &&
            strcmp(enabled, "Enabled") == 0) {
            check_add(out, "object lock", 1, "bucket %s has Object Lock; retention in %s mode",
                      s3->bucket, s3->lock_mode);
        } else if (c->rc == CURLE_OK && (c->status == 404 || c->status == 400 ||
                                         (call_ok(c) && strcmp(enabled, "Enabled") != 0))) {
            check_add(out, "object lock", 0,
                      "object_lock = yes, but bucket %s has no Object Lock (%s): make a bucket "
                      "with Object Lock enabled (most stores cannot turn it on later), or set "
                      "object_lock = no",
                      s3->bucket, c->xerr.code[0] ? c->xerr.code : "not enabled");
            all_ok = 0;
        } else {
            call_explain(s3, c, NULL, msg, sizeof(msg));
            check_add(out, "object lock", 0, "cannot tell: %s", msg);
            all_ok = 0;
        }
        call_free(c);
        c = NULL;
    }

    /* write probe */
    randombytes_buf(rnd, sizeof(rnd));
    util_hex((unsigned char *)rnd, sizeof(rnd), hex);
    snprintf(key, sizeof(key), "custodian-probe/%s", hex);
    snprintf(body, sizeof(body), "custodian probe of destination %s, %lld\n", d->name,
             (long long)util_now_ms());
    c = call_new("PUT", object_url(s3, key, NULL));
    sha256_hex(body, strlen(body), hex);
    call_header(c, "x-amz-content-sha256: %s", hex);
    call_header(c, "Content-Type: text/plain");
    if (s3->hot_class)
        call_header(c, "x-amz-storage-class: %s", s3->hot_class);
    c->body_mem = body;
    c->body_len = strlen(body);
    if (call_run(s3, c) < 0) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "write probe", 0, "%s", msg);
        all_ok = 0;
        goto out;
    }
    check_add(out, "write probe", 1, "wrote %s (%zu bytes)", key, strlen(body));
    call_free(c);

    /* read probe */
    c = call_new("GET", object_url(s3, key, NULL));
    call_sign_empty(c);
    if (call_run(s3, c) < 0) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "read probe", 0, "%s", msg);
        all_ok = 0;
    } else if (c->reply_len != strlen(body) || memcmp(c->reply, body, c->reply_len) != 0) {
        check_add(out, "read probe", 0, "%s came back different (%zu bytes instead of %zu)", key,
                  c->reply_len, strlen(body));
        all_ok = 0;
    } else {
        check_add(out, "read probe", 1, "read %s back, same bytes", key);
    }
    call_free(c);

    /* storage class */
    if (s3->hot_class) {
        c = call_new("HEAD", object_url(s3, key, NULL));
        call_sign_empty(c);
        if (call_run(s3, c) < 0) {
            explain_head(s3, c, key, NULL, msg, sizeof(msg));
            check_add(out, "storage class", 0, "%s", msg);
            all_ok = 0;
        } else {
            /* No header means STANDARD (RGW and AWS both leave it out). */
            const char *got = c->storage_class[0] ? c->storage_class : "STANDARD";

            if (strcmp(got, s3->hot_class) == 0) {
                check_add(out, "storage class", 1, "objects land in %s", got);
            } else {
                check_add(out, "storage class", 0,
                          "objects land in %s, not in hot_class %s: check that the store "
                          "offers that class for this bucket",
                          got, s3->hot_class);
                all_ok = 0;
            }
        }
        call_free(c);
    }

    /* no anonymous access */
    c = call_new("GET", object_url(s3, key, NULL));
    c->unsigned_req = 1;
    call_run(s3, c);
    if (c->rc == CURLE_OK && (c->status == 401 || c->status == 403)) {
        check_add(out, "no anonymous access", 1, "an unsigned GET was refused (%ld%s%s)", c->status,
                  c->xerr.code[0] ? " " : "", c->xerr.code);
    } else if (call_ok(c)) {
        check_add(out, "no anonymous access", 0,
                  "the bucket allows public access: an unsigned GET of %s returned it (HTTP "
                  "%ld); remove the public bucket policy or ACL",
                  key, c->status);
        all_ok = 0;
    } else {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "no anonymous access", 0, "cannot tell: %s", msg);
        all_ok = 0;
    }
    call_free(c);

    /* delete probe */
    c = call_new("DELETE", object_url(s3, key, NULL));
    call_sign_empty(c);
    if (call_run(s3, c) < 0) {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "delete probe", 0, "%s", msg);
        all_ok = 0;
    } else {
        check_add(out, "delete probe", 1, "deleted %s", key);
    }
out:
    call_free(c);
    return all_ok ? 0 : -1;
}

/* ---- asynchronous requests ---- */

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents);

static void kick_soon(struct s3 *s3)
{
    if (!ev_is_active(&s3->kick)) {
        ev_timer_set(&s3->kick, 0.0, 0.0);
        ev_timer_start(s3->loop, &s3->kick);
    }
}

static void running_add(struct s3 *s3, struct s3_call *c)
{
    c->prev = NULL;
    c->next = s3->running;
    if (c->next)
        c->next->prev = c;
    s3->running = c;
}

static void running_remove(struct s3 *s3, struct s3_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s3->running = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void on_call_done(void *arg, CURL *easy, CURLcode result)
{
    struct s3_call *c = arg;
    struct s3 *s3 = c->up ? c->up->s3 : NULL;

    (void)easy;
    call_finish(c, result);
    if (s3 == NULL) {
        /* The destination was freed while this ran: nothing waits for it. */
        call_free(c);
        return;
    }
    running_remove(s3, c);
    s3->active--;
    call_complete(s3, c);
    pump_wait(s3);
}

/* Start a request now; one that curl refuses is completed from the timer. */
static void call_start(struct s3 *s3, struct s3_call *c)
{
    c->started_ms = util_mono_ms();
    c->easy = curl_easy_init();
    if (c->easy != NULL) {
        call_setup(s3, c->easy, c);
        s3->active++;
        running_add(s3, c);
        if (curl_ev_add(s3->curl, c->easy, on_call_done, c) == 0)
            return;
        running_remove(s3, c);
        s3->active--;
    }
    snprintf(c->detail, sizeof(c->detail), "curl could not start the request");
    c->rc = CURLE_FAILED_INIT;
    c->next = s3->failed_starts;
    s3->failed_starts = c;
    kick_soon(s3);
}

static void call_submit(struct s3 *s3, struct s3_call *c)
{
    c->up->calls++;
    if (s3->active < s3->max_inflight && s3->wait_head == NULL) {
        call_start(s3, c);
        return;
    }
    c->next = NULL;
    if (s3->wait_tail)
        s3->wait_tail->next = c;
    else
        s3->wait_head = c;
    s3->wait_tail = c;
}

static void pump_wait(struct s3 *s3)
{
    while (s3->active < s3->max_inflight && s3->wait_head) {
        struct s3_call *c = s3->wait_head;

        s3->wait_head = c->next;
        if (s3->wait_head == NULL)
            s3->wait_tail = NULL;
        c->next = NULL;
        call_start(s3, c);
    }
}

/* Record the first failure of an upload; the rest are consequences. */
static void upload_fail(struct s3_upload *up, enum dest_error kind, const char *msg)
{
    if (up->failed)
        return;
    up->failed = 1;
    up->put->kind = kind;
    snprintf(up->put->error, sizeof(up->put->error), "%s", msg);
}

static void upload_fail_call(struct s3_upload *up, const struct s3_call *c, const char *doing)
{
    char msg[CST_ERR_SIZE];
    enum dest_error kind = call_explain(up->s3, c, doing, msg, sizeof(msg));

    upload_fail(up, kind, msg);
}

/* The storage class an object is put in: its own, else hot_class (NULL: the bucket's). */
static const char *class_of(const struct s3 *s3, const struct dest_put *p)
{
    return p->storage_class && p->storage_class[0] ? p->storage_class : s3->hot_class;
}

/* Headers every new object carries: class and our metadata (on PUT, or on Create). */
static void object_headers(struct s3 *s3, struct s3_call *c, const struct dest_put *p)
{
    char hex[65];

    call_header(c, "Content-Type: application/octet-stream");
    if (class_of(s3, p))
        call_header(c, "x-amz-storage-class: %s", class_of(s3, p));
    util_hex(p->plain_sha256, 32, hex);
    call_header(c, "x-amz-meta-custodian-sha256: %s", hex);
    util_hex(p->stored_sha256, 32, hex);
    call_header(c, "x-amz-meta-custodian-stored-sha256: %s", hex);
    call_header(c, "x-amz-meta-custodian-plain-size: %llu", (unsigned long long)p->plain_size);
    call_header(c, "x-amz-meta-custodian-stored-size: %llu", (unsigned long long)p->stored_size);
    if (wants_lock(s3, p)) {
        char date[32];

        /* Honoured on PUT; RGW drops them on multipart Create: the HEAD after the upload
         * tells, and the retention is then set on the stored version (PUT ?retention). */
        iso_date(p->retain_until, date);
        call_header(c, "x-amz-object-lock-mode: %s", s3->lock_mode);
        call_header(c, "x-amz-object-lock-retain-until-date: %s", date);
    }
}

/* Requests read the spool file through their own descriptor, so that one still running when
 * the destination is freed never reads a number that was reused. */
static int call_body_file(struct s3_call *c, struct s3_upload *up)
{
    char msg[CST_ERR_SIZE];

    c->body_fd = fcntl(up->fd, F_DUPFD_CLOEXEC, 0);
    if (c->body_fd >= 0)
        return 0;
    snprintf(msg, sizeof(msg), "destination %s: cannot upload %s: duplicating a descriptor: %s",
             up->s3->d->name, up->put->remote_key, strerror(errno));
    upload_fail(up, DEST_ERR_TRANSIENT, msg);
    return -1;
}

static struct s3_call *upload_call(struct s3_upload *up, enum call_kind kind, const char *method,
                                   char *url)
{
    struct s3_call *c = call_new(method, url);

    c->kind = kind;
    c->up = up;
    return c;
}

static char *upload_query_url(struct s3_upload *up, const struct s3_qparam *q, size_t n)
{
    char *query = s3_query(q, n);
    char *url = object_url(up->s3, call_key_of(up), query);

    free(query);
    return url;
}

static void submit_head(struct s3_upload *up)
{
    struct s3_call *c = upload_call(up, CALL_HEAD, "HEAD", util_xstrdup(up->url));

    call_sign_empty(c);
    call_submit(up->s3, c);
}

static void submit_part(struct s3_upload *up, size_t i)
{
    char num[24], hex[65];
    struct s3_qparam q[2] = {{"partNumber", num}, {"uploadId", up->upload_id}};
    struct s3_part *p = &up->parts[i];
    struct s3_call *c;

    snprintf(num, sizeof(num), "%zu", i + 1);
    c = upload_call(up, CALL_PART, "PUT", upload_query_url(up, q, 2));
    c->part = i;
    if (call_body_file(c, up) < 0) {
        call_free(c);
        return;
    }
    util_hex(p->sha, 32, hex);
    call_header(c, "x-amz-content-sha256: %s", hex);
    c->body_off = p->off;
    c->body_len = p->len;
    p->tries++;
    up->sending++;
    call_submit(up->s3, c);
}

static void submit_complete(struct s3_upload *up)
{
    char **etags = util_xcalloc(up->n_parts, sizeof(char *));
    struct s3_qparam q = {"uploadId", up->upload_id};
    struct s3_call *c = upload_call(up, CALL_COMPLETE, "POST", upload_query_url(up, &q, 1));
    char hex[65];

    for (size_t i = 0; i < up->n_parts; i++)
        etags[i] = up->parts[i].etag;
    c->body_owned = s3_xml_complete_body(etags, up->n_parts);
    free(etags);
    c->body_mem = c->body_owned;
    c->body_len = strlen(c->body_owned);
    sha256_hex(c->body_mem, c->body_len, hex);
    call_header(c, "x-amz-content-sha256: %s", hex);
    call_header(c, "Content-Type: application/xml");
    up->complete_sent = 1;
    call_submit(up->s3, c);
}

static void submit_abort(struct s3_upload *up)
{
    struct s3_qparam q = {"uploadId", up->upload_id};
    struct s3_call *c = upload_call(up, CALL_ABORT, "DELETE", upload_query_url(up, &q, 1));

    call_sign_empty(c);
    up->abort_sent = 1;
    call_submit(up->s3, c);
}

/* Content-MD5 of a small body (AWS wants it on ?retention). */
static void md5_base64(const void *body, size_t len, char out[32])
{
    unsigned char md[16];
    unsigned int n = 16;

    EVP_Digest(body, len, md, &n, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, 16);
}

/* The lock did not come with the upload (multipart, copy): set it on the stored version. */
static void submit_retention(struct s3_upload *up)
{
    struct s3 *s3 = up->s3;
    struct s3_qparam q[2] = {{"retention", NULL}, {"versionId", up->version_id}};
    struct s3_call *c =
        upload_call(up, CALL_RETENTION, "PUT", upload_query_url(up, q, up->version_id[0] ? 2 : 1));
    char date[32], hex[65], md5[32];

    iso_date(up->put->retain_until, date);
    c->body_owned = util_printf("<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                                "<Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
                                s3->lock_mode, date);
    c->body_mem = c->body_owned;
    c->body_len = strlen(c->body_owned);
    sha256_hex(c->body_mem, c->body_len, hex);
    md5_base64(c->body_mem, c->body_len, md5);
    call_header(c, "x-amz-content-sha256: %s", hex);
    call_header(c, "Content-MD5: %s", md5);
    call_header(c, "Content-Type: application/xml");
    up->retention_sent = 1;
    call_submit(s3, c);
}

/* SHA-256 of one part, feeding the whole object's hash on the way (parts go in order). */
static int hash_part(int fd, const struct s3_part *p, EVP_MD_CTX *whole, unsigned char out[32])
{
    unsigned char *buf = util_xmalloc(S3_HASH_CHUNK);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 32;
    uint64_t done = 0;
    int rc = 0;

    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while (done < p->len) {
        size_t want = p->len - done > S3_HASH_CHUNK ? S3_HASH_CHUNK : (size_t)(p->len - done);
        ssize_t n = pread(fd, buf, want, (off_t)(p->off + done));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? errno : -1;
            break;
        }
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        EVP_DigestUpdate(whole, buf, (size_t)n);
        done += (uint64_t)n;
    }
    if (rc == 0)
        EVP_DigestFinal_ex(ctx, out, &len);
    EVP_MD_CTX_free(ctx);
    free(buf);
    return rc;
}

static void upload_free(struct s3_upload *up)
{
    if (up->s3->loop)
        ev_timer_stop(up->s3->loop, &up->retry);
    free(up->retry_parts);
    if (up->fd >= 0)
        close(up->fd);
    for (size_t i = 0; i < up->n_parts; i++)
        free(up->parts[i].etag);
    free(up->parts);
    free(up->upload_id);
    free(up->url);
    EVP_MD_CTX_free(up->whole);
    free(up);
}

/* A part hashed (inline or on the pool): record it, and once all are, check the whole. */
static void part_hashed(struct s3_upload *up, int rc)
{
    char msg[CST_ERR_SIZE];

    if (rc != 0) {
        snprintf(msg, sizeof(msg), "destination %s: cannot read spool file %s: %s", up->s3->d->name,
                 up->put->spool_path, rc > 0 ? strerror(rc) : "it got shorter since it was sealed");
        upload_fail(up, DEST_ERR_SOURCE, msg);
        return;
    }
    up->hashed++;
    if (up->hashed == up->n_parts) {
        unsigned char md[32];
        unsigned int len = 32;

        EVP_DigestFinal_ex(up->whole, md, &len);
        if (memcmp(md, up->put->stored_sha256, 32) != 0) {
            snprintf(msg, sizeof(msg),
                     "destination %s: spool file %s is not what was sealed (its SHA-256 "
                     "differs): seal it again",
                     up->s3->d->name, up->put->spool_path);
            upload_fail(up, DEST_ERR_SOURCE, msg);
        }
    }
}

static void hash_job_run(struct work *w)
{
    struct s3_hash_job *j = (struct s3_hash_job *)w;
    struct s3_upload *up = j->up;

    j->err = hash_part(up->fd, &up->parts[j->part], up->whole, up->parts[j->part].sha);
}

static void hash_job_done(struct work *w)
{
    struct s3_hash_job *j = (struct s3_hash_job *)w;
    struct s3_upload *up = j->up;
    struct s3 *s3 = up->s3;

    ev_unref(s3->loop);
    up->hashing = 0;
    part_hashed(up, j->err);
    upload_step(up);
    pump_wait(s3);
}

static void on_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct s3_upload *up = w->data;
    struct s3 *s3 = up->s3;
    size_t n = up->n_retry;

    (void)loop;
    (void)revents;
    up->n_retry = 0;
    for (size_t i = 0; i < n && !up->failed; i++)
        submit_part(up, up->retry_parts[i]);
    upload_step(up);
    pump_wait(s3);
}

/* Keep up to max_inflight parts queued; hash ahead on the pool, or inline without one. */
static void pump_parts(struct s3_upload *up)
{
    struct s3 *s3 = up->s3;

    while (!up->failed) {
        if (up->sent < up->hashed && up->sending + (int)up->n_retry < s3->max_inflight) {
            submit_part(up, up->sent++);
            continue;
        }
        if (up->hashed < up->n_parts && !up->hashing &&
            up->sending + (int)up->n_retry < s3->max_inflight && s3->pool == NULL) {
            part_hashed(up, hash_part(up->fd, &up->parts[up->hashed], up->whole,
                                      up->parts[up->hashed].sha));
            continue;
        }
        break;
    }
    /* On the pool, hash ahead while parts are sent, but not further than one round of slots. */
    if (!up->failed && s3->pool && !up->hashing && up->hashed < up->n_parts &&
        up->hashed - up->sent < (size_t)s3->max_inflight) {
        up->hashing = 1;
        up->job.up = up;
        up->job.part = up->hashed;
        up->job.work.run = hash_job_run;
        up->job.work.done = hash_job_done;
        /* The pool's wake-up does not keep ev_run going; this upload must. */
        ev_ref(s3->loop);
        workpool_submit(s3->pool, &up->job.work);
    }
}

static void upload_finish(struct s3_upload *up)
{
    struct s3 *s3 = up->s3;
    struct s3_batch *b = up->batch;

    up->put->ok = up->verified && !up->failed;
    snprintf(up->put->version_id, sizeof(up->put->version_id), "%s", up->version_id);
    if (up->put->ok) {
        up->put->kind = DEST_OK;
        up->put->error[0] = '\0';
    } else if (!up->failed) {
        /* Cannot happen: every path that leaves nothing outstanding verified or failed. */
        up->put->kind = DEST_ERR_TRANSIENT;
        snprintf(up->put->error, sizeof(up->put->error),
                 "destination %s: upload of %s ended without verification", s3->d->name,
                 up->put->remote_key);
    }
    if (up->prev)
        up->prev->next = up->next;
    else
        s3->uploads = up->next;
    if (up->next)
        up->next->prev = up->prev;
    upload_free(up);
    if (--b->left == 0) {
        b->done(b->arg, b->puts, b->n);
        free(b);
    }
}

/* Decide what an upload does next, once something it waited for has happened. */
static void upload_step(struct s3_upload *up)
{
    if (up->multipart && up->upload_id && !up->failed && !up->complete_sent) {
        pump_parts(up);
        if (!up->failed && up->parts_done == up->n_parts && up->hashed == up->n_parts)
            submit_complete(up);
    }
    if (up->calls > 0 || up->hashing || up->n_retry > 0)
        return;
    if (up->failed && up->upload_id && !up->completed && !up->abort_sent) {
        submit_abort(up);
        return;
    }
    upload_finish(up);
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct s3 *s3 = w->data;

    (void)loop;
    (void)revents;
    while (s3->failed_starts) {
        struct s3_call *c = s3->failed_starts;

        s3->failed_starts = c->next;
        c->next = NULL;
        call_complete(s3, c);
    }
    while (s3->ready) {
        struct s3_upload *up = s3->ready;

        s3->ready = up->ready_next;
        upload_step(up);
    }
    pump_wait(s3);
}

/* A request of an upload ended: move the upload on. */
static void call_complete(struct s3 *s3, struct s3_call *c)
{
    struct s3_upload *up = c->up;
    const char *key = call_key_of(up);
    char doing[CST_ERR_SIZE / 2];

    call_log(s3, c);
    up->calls--;
    switch (c->kind) {
    case CALL_PUT:
        if (call_ok(c)) {
            snprintf(up->version_id, sizeof(up->version_id), "%s", c->version_id);
            submit_head(up);
        } else {
            snprintf(doing, sizeof(doing), "cannot upload %s", key);
            upload_fail_call(up, c, doing);
        }
        break;
    case CALL_CREATE: {
        char id[1024];

        if (!call_ok(c)) {
            snprintf(doing, sizeof(doing), "cannot start the multipart upload of %s", key);
            upload_fail_call(up, c, doing);
        } else if (s3_xml_text(c->reply, c->reply_len, "UploadId", id, sizeof(id)) < 0 ||
                   id[0] == '\0') {
            char msg[CST_ERR_SIZE];

            snprintf(msg, sizeof(msg),
                     "destination %s: cannot start the multipart upload of %s: the reply has "
                     "no UploadId",
                     s3->d->name, key);
            upload_fail(up, DEST_ERR_TRANSIENT, msg);
        } else {
            up->upload_id = util_xstrdup(id);
        }
        break;
    }
    case CALL_PART: {
        struct s3_part *p = &up->parts[c->part];

        up->sending--;
        if (call_ok(c) && c->etag[0]) {
            p->etag = util_xstrdup(c->etag);
            up->parts_done++;
            break;
        }
        snprintf(doing, sizeof(doing), "cannot upload part %zu of %zu of %s", c->part + 1,
                 up->n_parts, key);
        char msg[CST_ERR_SIZE];
        enum dest_error kind;

        if (call_ok(c)) {
            snprintf(msg, sizeof(msg), "destination %s: %s: the reply has no ETag", s3->d->name,
                     doing);
            kind = DEST_ERR_TRANSIENT;
        } else {
            kind = call_explain(s3, c, doing, msg, sizeof(msg));
        }
        /* A refused connection is no glitch of one request: fail now, the shipper backs off. */
        if (kind == DEST_ERR_TRANSIENT && c->rc != CURLE_COULDNT_CONNECT &&
            p->tries < S3_PART_TRIES && !up->failed) {
            double delay = 0.5 * (double)(1 << (p->tries - 1));

            log_warn("part upload failed, sending it again in %.1f s dest=%s key=%s part=%zu "
                     "try=%d: %s",
                     delay, s3->d->name, key, c->part + 1, p->tries, msg);
            up->retry_parts[up->n_retry++] = c->part;
            if (!ev_is_active(&up->retry)) {
                ev_timer_set(&up->retry, delay, 0.0);
                ev_timer_start(s3->loop, &up->retry);
            }
        } else {
            upload_fail(up, kind, msg);
        }
        break;
    }
    case CALL_COMPLETE:
        /* 200 may still carry an <Error>: S3 reports late failures that way. */
        if (call_ok(c) && s3_xml_error(c->reply, c->reply_len, &c->xerr) < 0) {
            up->completed = 1;
            snprintf(up->version_id, sizeof(up->version_id), "%s", c->version_id);
            submit_head(up);
        } else {
            if (call_ok(c))
                c->status = 500; /* an error document in a 200: classify as a server failure */
            snprintf(doing, sizeof(doing), "cannot complete the multipart upload of %s", key);
            upload_fail_call(up, c, doing);
        }
        break;
    case CALL_HEAD: {
        char hex[65], msg[CST_ERR_SIZE];

        util_hex(up->put->stored_sha256, 32, hex);
        if (!call_ok(c)) {
            snprintf(doing, sizeof(doing), "cannot verify %s after the upload", key);
            upload_fail_call(up, c, doing);
        } else if (!c->has_length || c->content_length != up->put->stored_size ||
                   strcasecmp(c->stored_sha, hex) != 0) {
            snprintf(msg, sizeof(msg),
                     "destination %s: verification of %s failed: S3 holds %llu bytes with "
                     "stored SHA-256 '%s', expected %llu bytes with %s",
                     s3->d->name, key, c->has_length ? (unsigned long long)c->content_length : 0,
                     c->stored_sha, (unsigned long long)up->put->stored_size, hex);
            upload_fail(up, DEST_ERR_TRANSIENT, msg);
        } else if (up->put->storage_class && up->put->storage_class[0] &&
                   strcmp(c->storage_class[0] ? c->storage_class : "STANDARD",
                          up->put->storage_class) != 0) {
            /* No header means STANDARD (RGW and AWS both leave it out). */
            snprintf(msg, sizeof(msg),
                     "destination %s: %s landed in storage class %s, not %s: check that the "
                     "store offers that class for this bucket",
                     s3->d->name, key, c->storage_class[0] ? c->storage_class : "STANDARD",
                     up->put->storage_class);
            upload_fail(up, DEST_ERR_CONFIG, msg);
        } else if (!wants_lock(s3, up->put)) {
            up->verified = 1;
        } else {
            int64_t until = parse_iso_date(c->retain_until);

            if (up->version_id[0] == '\0')
                snprintf(up->version_id, sizeof(up->version_id), "%s", c->version_id);
            if (strcasecmp(c->lock_mode, s3->lock_mode) == 0 &&
                until >= up->put->retain_until - up->put->retain_until % 1000) {
                up->put->retained_until = until;
                up->verified = 1;
            } else if (!up->retention_sent) {
                /* Lost on the way (RGW drops lock headers on multipart uploads). */
                log_info("setting the retention on the stored version dest=%s key=%s "
                         "version=%s",
                         s3->d->name, key, up->version_id[0] ? up->version_id : "-");
                submit_retention(up);
            } else {
                snprintf(msg, sizeof(msg),
                         "destination %s: %s is not locked after setting its retention: HEAD "
                         "shows mode '%s' until '%s', expected %s until the retain-until asked",
                         s3->d->name, key, c->lock_mode, c->retain_until, s3->lock_mode);
                upload_fail(up, DEST_ERR_CONFIG, msg);
            }
        }
        break;
    }
    case CALL_RETENTION:
        if (call_ok(c)) {
            submit_head(up);
        } else {
            snprintf(doing, sizeof(doing), "cannot set the Object Lock retention of %s", key);
            upload_fail_call(up, c, doing);
        }
        break;
    case CALL_ABORT:
        if (!call_ok(c) && !(c->rc == CURLE_OK && c->status == 404)) {
            char msg[CST_ERR_SIZE];
            size_t len = strlen(up->put->error);

            snprintf(doing, sizeof(doing), "cannot abort the multipart upload of %s", key);
            call_explain(s3, c, doing, msg, sizeof(msg));
            log_warn("%s; its parts stay until a lifecycle rule removes them", msg);
            snprintf(up->put->error + len, sizeof(up->put->error) - len,
                     "; aborting the multipart upload failed too, its parts stay until a "
                     "lifecycle rule removes them");
        }
        break;
    case CALL_SYNC:
        break;
    }
    call_free(c);
    upload_step(up);
}

static void upload_start(struct s3 *s3, struct s3_upload *up)
{
    struct dest_put *p = up->put;
    struct s3_call *c;
    char hex[65];

    if (p->stored_size <= s3->part_size) {
        c = upload_call(up, CALL_PUT, "PUT", util_xstrdup(up->url));
        util_hex(p->stored_sha256, 32, hex);
        /* The sealed object's own hash: S3 checks every byte it receives against it. */
        call_header(c, "x-amz-content-sha256: %s", hex);
        object_headers(s3, c, p);
        if (wants_lock(s3, p)) {
            char b64[48];

            /* AWS wants a checksum header on a PUT that carries a lock. */
            EVP_EncodeBlock((unsigned char *)b64, p->stored_sha256, 32);
            call_header(c, "x-amz-checksum-sha256: %s", b64);
        }
        if (call_body_file(c, up) < 0) {
            call_free(c);
            up->ready_next = s3->ready;
            s3->ready = up;
            kick_soon(s3);
            return;
        }
        c->body_len = p->stored_size;
        call_submit(s3, c);
        return;
    }
    uint64_t part = s3->part_size;

    /* S3 allows 10000 parts: grow them (whole MiB) for very large objects. */
    if ((p->stored_size + part - 1) / part > S3_MAX_PARTS)
        part = ((p->stored_size + S3_MAX_PARTS - 1) / S3_MAX_PARTS + (1u << 20) - 1) &
               ~(uint64_t)((1u << 20) - 1);
    up->multipart = 1;
    up->n_parts = (size_t)((p->stored_size + part - 1) / part);
    up->parts = util_xcalloc(up->n_parts, sizeof(*up->parts));
    up->retry_parts = util_xcalloc(up->n_parts, sizeof(*up->retry_parts));
    for (size_t i = 0; i < up->n_parts; i++) {
        up->parts[i].off = (uint64_t)i * part;
        up->parts[i].len = i + 1 < up->n_parts ? part : p->stored_size - up->parts[i].off;
    }
    up->whole = EVP_MD_CTX_new();
    EVP_DigestInit_ex(up->whole, EVP_sha256(), NULL);
    struct s3_qparam q = {"uploads", NULL};

    c = upload_call(up, CALL_CREATE, "POST", upload_query_url(up, &q, 1));
    call_sign_empty(c);
    /* Metadata and storage class go on Create; Complete carries none. */
    object_headers(s3, c, p);
    call_submit(s3, c);
}

static void s3_put_batch(struct dest *d, struct dest_put *puts, size_t n, dest_done_fn done,
                         void *arg)
{
    struct s3 *s3 = d->impl;
    struct s3_batch *b;

    for (size_t i = 0; i < n; i++) {
        puts[i].ok = 0;
        puts[i].kind = DEST_OK;
        puts[i].error[0] = '\0';
        puts[i].version_id[0] = '\0';
        puts[i].retained_until = 0;
    }
    if (n == 0) {
        done(arg, puts, n);
        return;
    }
    if (s3->loop == NULL || s3->curl == NULL) {
        for (size_t i = 0; i < n; i++) {
            puts[i].kind = DEST_ERR_CONFIG;
            snprintf(puts[i].error, sizeof(puts[i].error),
                     "destination %s: uploads need the agent's event loop", d->name);
        }
        done(arg, puts, n);
        return;
    }
    b = util_xcalloc(1, sizeof(*b));
    b->puts = puts;
    b->n = b->left = n;
    b->done = done;
    b->arg = arg;
    for (size_t i = 0; i < n; i++) {
        struct s3_upload *up = util_xcalloc(1, sizeof(*up));
        struct dest_put *p = &puts[i];
        struct stat sb;
        char msg[CST_ERR_SIZE];

        up->s3 = s3;
        up->batch = b;
        ev_timer_init(&up->retry, on_retry, 0.0, 0.0);
        up->retry.data = up;
        up->put = p;
        up->url = object_url(s3, p->remote_key, NULL);
        up->next = s3->uploads;
        if (up->next)
            up->next->prev = up;
        s3->uploads = up;
        up->fd = open(p->spool_path, O_RDONLY | O_CLOEXEC);
        if (up->fd < 0 || fstat(up->fd, &sb) < 0) {
            snprintf(msg, sizeof(msg), "destination %s: cannot open spool file %s: %s", d->name,
                     p->spool_path, strerror(errno));
            upload_fail(up, DEST_ERR_SOURCE, msg);
        } else if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != p->stored_size) {
            snprintf(msg, sizeof(msg),
                     "destination %s: spool file %s has %llu bytes, not the %llu that were "
                     "sealed",
                     d->name, p->spool_path, (unsigned long long)sb.st_size,
                     (unsigned long long)p->stored_size);
            upload_fail(up, DEST_ERR_SOURCE, msg);
        }
        if (up->failed) {
            /* done() comes later, from the loop, never from inside put_batch. */
            up->ready_next = s3->ready;
            s3->ready = up;
            kick_soon(s3);
            continue;
        }
        upload_start(s3, up);
    }
}

/* ---- life cycle ---- */

/* Stopping mid-upload: abort it now (briefly, best effort) so that no parts are left. */
static void abort_now(struct s3 *s3, struct s3_upload *up)
{
    struct s3_qparam q = {"uploadId", up->upload_id};
    struct s3_call *c = call_new("DELETE", upload_query_url(up, &q, 1));

    call_sign_empty(c);
    c->timeout_s = 5;
    if (call_run(s3, c) < 0 && !(c->rc == CURLE_OK && c->status == 404))
        log_warn("cannot abort the multipart upload of %s on destination %s (HTTP %ld, %s); its "
                 "parts stay until a lifecycle rule removes them",
                 up->put->remote_key, s3->d->name, c->status,
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(c->rc));
    else
        log_info("stopped an upload in progress dest=%s key=%s", s3->d->name, up->put->remote_key);
    call_free(c);
}

static void s3_destroy(struct s3 *s3)
{
    if (s3->easy)
        curl_easy_cleanup(s3->easy);
    if (s3->access_key)
        sodium_free(s3->access_key);
    if (s3->secret_key)
        sodium_free(s3->secret_key);
    free(s3->host);
    free(s3->bucket);
    free(s3->region);
    free(s3->sigv4);
    free(s3->ca_file);
    free(s3->hot_class);
    free(s3->lock_mode);
    free(s3->akf);
    free(s3->skf);
    free(s3);
    curl_global_cleanup();
}

/*
 * Free with uploads in flight: their done() is not called. Call it after workpool_free, as
 * agent.c does. Requests still inside a live curl_ev are left to it, self-contained (their own
 * descriptor, no pointer back here); curl_ev_free first lets them be freed here too.
 */
static void s3_free(struct dest *d)
{
    struct s3 *s3 = d->impl;

    if (s3->loop)
        ev_timer_stop(s3->loop, &s3->kick);
    while (s3->wait_head) {
        struct s3_call *c = s3->wait_head;

        s3->wait_head = c->next;
        call_free(c);
    }
    while (s3->failed_starts) {
        struct s3_call *c = s3->failed_starts;

        s3->failed_starts = c->next;
        call_free(c);
    }
    for (struct s3_call *c = s3->running, *next; c; c = next) {
        char *priv = NULL;

        next = c->next;
        c->up = NULL;
        /* curl_ev clears PRIVATE when it lets go of a handle (done or curl_ev_free). */
        curl_easy_getinfo(c->easy, CURLINFO_PRIVATE, &priv);
        if (priv == NULL) {
            running_remove(s3, c);
            s3->active--;
            call_free(c);
        }
    }
    /* The pool is freed first (agent.c): a hash job has run, its done() will not come. */
    while (s3->uploads) {
        struct s3_upload *up = s3->uploads;

        s3->uploads = up->next;
        if (up->upload_id && !up->completed)
            abort_now(s3, up);
        if (--up->batch->left == 0)
            free(up->batch); /* its done() is not called */
        upload_free(up);
    }
    s3->d = NULL;
    if (s3->running) {
        /* Still in curl_ev: on_call_done frees each (c->up is NULL) and we leak the rest. */
        for (struct s3_call *c = s3->running; c; c = c->next)
            c->up = NULL;
        s3->running = NULL;
    }
    s3_destroy(s3);
    d->impl = NULL;
}

static const struct dest_ops dest_s3_ops = {
    .type = "s3",
    .put_batch = s3_put_batch,
    .get = s3_get,
    .free = s3_free,
    .exists = s3_exists,
    .remove = s3_remove,
    .stat = s3_stat,
    .list = s3_list,
    .probe = s3_probe,
};

struct dest *dest_s3_new(const struct dest_s3_config *cfg, const struct dest_env *env,
                         struct cst_err *err)
{
    struct s3 *s3;
    struct dest *d;
    const char *name = cfg->name ? cfg->name : "s3";

    if (cfg->endpoint == NULL || cfg->bucket == NULL || cfg->bucket[0] == '\0') {
        cst_err_set(err, "destination %s: endpoint and bucket are required", name);
        return NULL;
    }
    if (cfg->part_size != 0 && (cfg->part_size < S3_MIN_PART || cfg->part_size > S3_MAX_PART)) {
        cst_err_set(err, "destination %s: part size %llu is outside 5 MiB..5 GiB", name,
                    (unsigned long long)cfg->part_size);
        return NULL;
    }
    if (cfg->ca_file && access(cfg->ca_file, R_OK) < 0) {
        cst_err_sys(err, "destination %s: cannot read ca_file %s", name, cfg->ca_file);
        return NULL;
    }
    s3 = util_xcalloc(1, sizeof(*s3));
    if (s3_endpoint_parse(cfg->endpoint, &s3->ep, err) < 0) {
        cst_err_wrap(err, "destination %s", name);
        free(s3);
        return NULL;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s3->access_key = s3_cred_read(cfg->access_key_file, "access_key_file", err);
    if (s3->access_key)
        s3->secret_key = s3_cred_read(cfg->secret_key_file, "secret_key_file", err);
    s3->easy = curl_easy_init();
    if (s3->secret_key == NULL || s3->easy == NULL) {
        if (s3->easy == NULL && s3->secret_key != NULL)
            cst_err_set(err, "cannot initialise libcurl");
        cst_err_wrap(err, "destination %s", name);
        s3_destroy(s3);
        return NULL;
    }
    s3->bucket = util_xstrdup(cfg->bucket);
    s3->region = util_xstrdup(cfg->region && cfg->region[0] ? cfg->region : "us-east-1");
    s3->sigv4 = util_printf("aws:amz:%s:s3", s3->region);
    s3->ca_file = cfg->ca_file ? util_xstrdup(cfg->ca_file) : NULL;
    s3->hot_class = cfg->hot_class && cfg->hot_class[0] ? util_xstrdup(cfg->hot_class) : NULL;
    s3->object_lock = cfg->object_lock && cfg->lock_mode != NULL;
    s3->lock_mode = cfg->lock_mode ? util_xstrdup(cfg->lock_mode) : NULL;
    s3->akf = util_xstrdup(cfg->access_key_file);
    s3->skf = util_xstrdup(cfg->secret_key_file);
    s3->path_style = cfg->path_style;
    s3->host =
        s3->path_style ? util_xstrdup(s3->ep.host) : util_printf("%s.%s", s3->bucket, s3->ep.host);
    s3->max_inflight = cfg->max_inflight > 0 ? cfg->max_inflight : 4;
    s3->part_size = cfg->part_size ? cfg->part_size : S3_DEFAULT_PART;
    if (cfg->bandwidth_kbps > 0) {
        curl_off_t total = (curl_off_t)cfg->bandwidth_kbps * 1000 / 8;

        s3->send_speed = total / s3->max_inflight;
        if (s3->send_speed < 1)
            s3->send_speed = 1;
    }
    if (env) {
        s3->loop = env->loop;
        s3->curl = env->curl;
        s3->pool = env->pool;
    }
    ev_timer_init(&s3->kick, on_kick, 0.0, 0.0);
    s3->kick.data = s3;

    d = util_xcalloc(1, sizeof(*d));
    d->ops = &dest_s3_ops;
    d->name = util_xstrdup(name);
    d->max_batch = 1;
    d->max_concurrent = (size_t)s3->max_inflight;
    d->impl = s3;
    s3->d = d;
    s3->names = (struct s3_names){
        .dest = d->name,
        .host = s3->host,
        .bucket = s3->bucket,
        .region = s3->region,
        .access_key_file = s3->akf,
        .secret_key_file = s3->skf,
        .ca_file = s3->ca_file,
        .hot_class = s3->hot_class,
    };
    return d;
}
