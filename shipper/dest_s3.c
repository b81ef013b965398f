/*
 * dest_s3.c - the `s3` destination: any S3-compatible store (AWS, Ceph RGW,
 * MinIO), signed by libcurl's own SigV4, in the manner of pgBackRest's
 * src/storage/s3/storage.c.
 *
 * It supplies store.h's primitives; store.c runs the sequence. Uploads
 * (write_async) run on the agent's loop through curl_ev. Each request
 * carries x-amz-content-sha256 with the real SHA-256 of its body, so the
 * server itself checks every byte: for a single PUT that is the sealed
 * object's stored_sha256; for a multipart upload each part is hashed (on
 * the workpool when there is one) in order, which also rebuilds the whole
 * object's hash to compare with stored_sha256 before Complete. A server
 * that accepted the body therefore holds exactly the sealed bytes: that is
 * STORE_FEAT_SERVER_CHECKS_HASH, and the hot path makes no HEAD (rolling
 * verification and `verify` read copies later). Only a put that asks for a
 * storage class or an Object Lock retention (snapshots) is described
 * afterwards: store.c HEADs the stored version (describe) and, where the
 * lock headers were dropped (RGW on multipart uploads), sets the retention
 * on that version (set_retention) and HEADs it again. A multipart upload that
 * fails is aborted so that no parts are left behind; one that a crash left
 * is found at the next start (cleanup, below).
 *
 * Objects carry only what is derived from the ciphertext: stored size,
 * stored SHA-256, key id and container version. Nothing in the bucket says
 * what the plaintext is (doctor scrubs what older versions wrote).
 *
 * At most max_inflight requests run at once per destination (parts of one
 * big object or whole small objects alike); the rest wait in a FIFO. The
 * bandwidth limit is shared out over those slots.
 *
 * The blocking operations (get, exists, remove, list, probe, cleanup) take
 * an easy handle from a small pool, so that several threads may use them at
 * once and connections and TLS sessions are kept.
 */
#include "dest.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <dirent.h>
#include <pthread.h>
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
#include "shipper/container.h"
#include "shipper/s3_xml.h"
#include "shipper/store.h"
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
#define S3_IDLE_HANDLES 8 /* blocking handles kept between calls */
/* An upload nobody recorded is aborted at start-up once it is this old. */
#define S3_UNKNOWN_UPLOAD_AGE_MS (24LL * 3600 * 1000)
/* A dead process's recorded start matches uploads initiated this close to it. */
#define S3_RECORD_SLACK_MS (5LL * 60 * 1000)

struct s3_upload;

enum call_kind { CALL_SYNC, CALL_PUT, CALL_CREATE, CALL_PART, CALL_COMPLETE, CALL_ABORT };

/* One HTTP request and what came back. */
struct s3_call {
    /* request */
    const char *method; /* GET HEAD PUT POST DELETE */
    char *url;
    struct curl_slist *headers;
    int unsigned_req;              /* no signature: the anonymous-access probe */
    long timeout_s;                /* overall limit; 0: none (only the stall detection) */
    int body_fd;                   /* body from this file (pread; the call's own dup), or -1 */
    const char *body_mem;          /* or from memory */
    struct store_source *body_src; /* or from the storage core's source */
    char *body_owned;              /* freed with the call */
    uint64_t body_off, body_len, body_pos;
    int read_errno, read_short;
    store_sink_fn out_sink; /* GET: the wanted bytes go here; NULL: into reply */
    void *out_arg;
    uint64_t out_off;       /* the byte offset expected at the start of a 206 */
    uint64_t out_max;       /* bytes expected into out_sink */
    int out_accept_200;     /* a 200 (the whole object) is fine too */
    uint64_t out_written;   /* bytes that went to out_sink */
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
    char etag[256], stored_sha[80], storage_class[64], version_id[256];
    char lock_mode[32], retain_until[64]; /* x-amz-object-lock-mode, -retain-until-date */
    char legal_hold[8];                   /* x-amz-object-lock-legal-hold */
    char restore[160];                    /* x-amz-restore */
    int legacy_meta; /* x-amz-meta-custodian-sha256 or -plain-size: plaintext hints */
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

struct s3_hash_job {
    struct work work;
    struct s3_upload *up;
    size_t part;
    int err; /* errno, or -1 when the file ended early */
};

struct s3_upload {
    struct s3 *s3;
    struct store_write *w;
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
    int complete_sent, completed, abort_sent;
    int committed; /* the PUT or Complete was accepted: the server checked every byte */
    int failed;    /* put->kind and put->error hold the first failure */
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
    char *lock_mode;       /* object_lock: GOVERNANCE or COMPLIANCE; NULL: no Object Lock */
    char *archive_class;   /* with transition_days: the class of the lifecycle rule */
    int transition_days;   /* 0: custodian installs no lifecycle rule */
    curl_off_t send_speed; /* bytes/s per request, 0 unlimited */
    uint64_t part_size;
    struct ev_loop *loop;
    struct curl_ev *curl;
    struct workpool *pool;
    pthread_mutex_t easy_lock; /* the blocking operations' handles */
    CURL *idle[S3_IDLE_HANDLES];
    int n_idle;
    char *uploads_dir; /* records of multipart uploads in progress, per process; NULL: none */
    int active;        /* requests running in curl_ev */
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
    if (want == 0 && c->body_src == NULL)
        return 0;
    if (c->body_src) {
        ssize_t n = store_source_read(c->body_src, buf, want);

        if (n < 0) {
            c->read_short = 1;
            return CURL_READFUNC_ABORT;
        }
        c->body_pos += (uint64_t)n;
        return (size_t)n;
    }
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
    if (c->body_src) {
        /* the source hashes what it hands over: only a restart from the start keeps that */
        if (offset != 0 || store_source_rewind(c->body_src) < 0)
            return CURL_SEEKFUNC_CANTSEEK;
    }
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

    if (c->out_sink && (st == 206 || (st == 200 && c->out_accept_200))) {
        /* Only the bytes asked for, where they belong: a restore is streamed, not redone. */
        if (st == 206 && (!c->has_range || c->range_start != c->out_off)) {
            c->out_bad = 1;
            return 0;
        }
        if (c->out_written + n > c->out_max) {
            c->out_bad = 1;
            return 0;
        }
        if (c->out_sink(c->out_arg, p, n) < 0) {
            c->out_errno = errno ? errno : EIO;
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
        c->etag[0] = c->stored_sha[0] = c->storage_class[0] = c->version_id[0] = '\0';
        c->lock_mode[0] = c->retain_until[0] = c->legal_hold[0] = c->restore[0] = '\0';
        c->legacy_meta = 0;
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
    } else if (klen == 28 && strncasecmp(p, "x-amz-object-lock-legal-hold", 28) == 0) {
        snprintf(c->legal_hold, sizeof(c->legal_hold), "%s", val);
    } else if (klen == 13 && strncasecmp(p, "x-amz-restore", 13) == 0) {
        snprintf(c->restore, sizeof(c->restore), "%s", val);
    } else if ((klen == 27 && strncasecmp(p, "x-amz-meta-custodian-sha256", 27) == 0) ||
               (klen == 31 && strncasecmp(p, "x-amz-meta-custodian-plain-size", 31) == 0)) {
        c->legacy_meta = 1; /* what versions before 2 wrote: plaintext hints */
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

/* A blocking handle: an idle one (its connections kept), or a new one. */
static CURL *easy_take(struct s3 *s3)
{
    CURL *h = NULL;

    pthread_mutex_lock(&s3->easy_lock);
    if (s3->n_idle > 0)
        h = s3->idle[--s3->n_idle];
    pthread_mutex_unlock(&s3->easy_lock);
    if (h == NULL)
        h = curl_easy_init();
    else
        curl_easy_reset(h);
    return h;
}

static void easy_give(struct s3 *s3, CURL *h)
{
    pthread_mutex_lock(&s3->easy_lock);
    if (s3->n_idle < S3_IDLE_HANDLES) {
        s3->idle[s3->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s3->easy_lock);
    if (h)
        curl_easy_cleanup(h);
}

static int call_run(struct s3 *s3, struct s3_call *c)
{
    CURL *h = easy_take(s3);
    CURLcode rc;

    if (h == NULL) {
        c->rc = CURLE_FAILED_INIT;
        snprintf(c->detail, sizeof(c->detail), "cannot initialise libcurl");
        return -1;
    }
    call_setup(s3, h, c);
    c->started_ms = util_mono_ms();
    rc = curl_easy_perform(h);
    call_finish(c, rc);
    c->easy = NULL; /* the handle goes back to the pool */
    easy_give(s3, h);
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

/* The URL of one version of key (version NULL or "": the latest), malloc'd. */
static char *version_url(struct s3 *s3, const char *key, const char *version, const char *sub)
{
    struct s3_qparam q[2];
    size_t nq = 0;
    char *query, *url;

    if (sub)
        q[nq++] = (struct s3_qparam){sub, NULL};
    if (version && version[0])
        q[nq++] = (struct s3_qparam){"versionId", version};
    if (nq == 0)
        return object_url(s3, key, NULL);
    query = s3_query(q, nq);
    url = object_url(s3, key, query);
    free(query);
    return url;
}

/* HEAD of a version of key (NULL: the latest): 1 with *out (its reply; call_free it), 0 when
 * absent, -1 with err. */
static int head_call(struct s3 *s3, const char *key, const char *version, struct s3_call **out,
                     struct cst_err *err)
{
    struct s3_call *c = call_new("HEAD", version_url(s3, key, version, NULL));
    char doing[CST_ERR_SIZE / 2];
    int rc = -1;

    *out = NULL;
    if (version && version[0])
        snprintf(doing, sizeof(doing), "cannot look up version %s of %s", version, key);
    else
        snprintf(doing, sizeof(doing), "cannot look up %s", key);
    call_sign_empty(c);
    if (call_run(s3, c) == 0) {
        if (!c->has_length) {
            cst_err_set(err, "destination %s: %s: the reply has no Content-Length", s3->d->name,
                        doing);
            goto out;
        }
        *out = c;
        return 1;
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

/* HEAD of key: 1 with *size (and etag), 0 when absent, -1 with err. */
static int head_object(struct s3 *s3, const char *key, uint64_t *size, char *etag, size_t etaglen,
                       struct cst_err *err)
{
    struct s3_call *c;
    int rc = head_call(s3, key, NULL, &c, err);

    if (rc == 1) {
        *size = c->content_length;
        if (etag)
            snprintf(etag, etaglen, "%s", c->etag);
        call_free(c);
    }
    return rc;
}

/* Bytes [off, off+len) of key into sink, range by range, each resumed where it broke off:
 * a large restore survives hiccups. etag (may be "") pins the version being read. */
static int get_range(struct s3 *s3, const char *remote_key, uint64_t off, uint64_t len,
                     const char *etag, uint64_t size, store_sink_fn sink, void *arg,
                     enum dest_error *kind_out, struct cst_err *err)
{
    const char *name = s3->d->name;
    char doing[CST_ERR_SIZE / 2];
    uint64_t stop = off + len;

    *kind_out = DEST_ERR_TRANSIENT;
    snprintf(doing, sizeof(doing), "cannot download %s", remote_key);
    while (off < stop) {
        uint64_t end = (stop - off > S3_GET_RANGE ? off + S3_GET_RANGE : stop) - 1;
        int tries = 0;

        while (off <= end) {
            struct s3_call *c = call_new("GET", object_url(s3, remote_key, NULL));
            enum dest_error kind;

            call_sign_empty(c);
            call_header(c, "Range: bytes=%llu-%llu", (unsigned long long)off,
                        (unsigned long long)end);
            if (etag && etag[0])
                call_header(c, "If-Match: %s", etag);
            c->out_sink = sink;
            c->out_arg = arg;
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
                cst_err_set(err, "destination %s: %s: %s", name, doing, c->detail);
                call_free(c);
                return -1;
            }
            if (call_ok(c) && c->out_written == 0 && c->status == 200)
                snprintf(c->detail, sizeof(c->detail), "the server ignored the Range header");
            if (call_ok(c)) {
                snprintf(err->msg, sizeof(err->msg),
                         "destination %s: %s: the reply ended at byte %llu of %llu", name, doing,
                         (unsigned long long)off, (unsigned long long)stop);
                kind = c->detail[0] ? DEST_ERR_CONFIG : DEST_ERR_TRANSIENT;
                if (c->detail[0])
                    snprintf(err->msg, sizeof(err->msg), "destination %s: %s: %s", name, doing,
                             c->detail);
            } else if (c->status == 412) {
                snprintf(err->msg, sizeof(err->msg),
                         "destination %s: %s: the object changed during the download "
                         "(412 PreconditionFailed)",
                         name, doing);
                kind = DEST_ERR_CONFIG;
            } else {
                kind = call_explain(s3, c, doing, err->msg, sizeof(err->msg));
            }
            /* A try that moved on by a MiB or more is progress, not a failure in a row. */
            if (c->out_written >= (1u << 20))
                tries = 0;
            call_free(c);
            *kind_out = kind;
            if (kind != DEST_ERR_TRANSIENT || ++tries >= S3_GET_TRIES)
                return -1;
            log_warn("download interrupted, resuming dest=%s key=%s at=%llu try=%d: %s", name,
                     remote_key, (unsigned long long)off, tries, err->msg);
            sleep(1u << (tries - 1));
        }
    }
    return 0;
}

static int fd_sink(void *arg, const void *buf, size_t len)
{
    return util_write_all(*(int *)arg, buf, len);
}

static int s3_get(struct dest *d, const char *remote_key, int out_fd, struct cst_err *err)
{
    struct s3 *s3 = d->impl;
    char etag[256];
    uint64_t size = 0;
    enum dest_error kind;
    int found = head_object(s3, remote_key, &size, etag, sizeof(etag), err);

    if (found < 0)
        return -1;
    if (found == 0)
        return cst_err_set(err, "destination %s: cannot download %s: no such object", d->name,
                           remote_key);
    return get_range(s3, remote_key, 0, size, etag, size, fd_sink, &out_fd, &kind, err);
}

static int s3_read(struct dest *d, const char *key, uint64_t off, uint64_t len, store_sink_fn sink,
                   void *arg, struct store_err *e)
{
    struct s3 *s3 = d->impl;
    char etag[256];
    uint64_t size = 0;
    int found = head_object(s3, key, &size, etag, sizeof(etag), &e->err);

    e->kind = DEST_ERR_TRANSIENT;
    if (found < 0)
        return -1;
    if (found == 0)
        return store_fail(e, DEST_ERR_TRANSIENT, "destination %s: cannot read %s: no such object",
                          d->name, key);
    if (off >= size)
        return 0;
    if (len > size - off)
        len = size - off;
    return get_range(s3, key, off, len, etag, size, sink, arg, &e->kind, &e->err);
}

static int s3_stat(struct dest *d, const char *key, uint64_t *size, struct store_err *e)
{
    e->kind = DEST_ERR_TRANSIENT;
    return head_object(d->impl, key, size, NULL, 0, &e->err);
}

/* store.h describe: one HEAD, of the version when it is known. */
static int s3_describe(struct dest *d, const char *key, const char *version, struct dest_stat *st,
                       struct store_err *e)
{
    struct s3_call *c;
    int rc;

    e->kind = DEST_ERR_TRANSIENT;
    memset(st, 0, sizeof(*st));
    rc = head_call(d->impl, key, version, &c, &e->err);
    if (rc != 1)
        return rc;
    st->size = c->content_length;
    /* No header means STANDARD (RGW and AWS both leave it out). */
    snprintf(st->storage_class, sizeof(st->storage_class), "%s",
             c->storage_class[0] ? c->storage_class : "STANDARD");
    snprintf(st->version_id, sizeof(st->version_id), "%s", c->version_id);
    snprintf(st->lock_mode, sizeof(st->lock_mode), "%s", c->lock_mode);
    st->retain_until = c->retain_until[0] ? s3_xml_time_ms(c->retain_until) : 0;
    if (st->retain_until < 0)
        st->retain_until = 0; /* a date we cannot read is no retention we can count on */
    st->legal_hold = strcasecmp(c->legal_hold, "ON") == 0;
    /* ongoing-request="true": thawing; "false" (with an expiry-date): a copy is readable */
    if (strstr(c->restore, "ongoing-request=\"true\""))
        st->thaw = DEST_THAW_ONGOING;
    else if (strstr(c->restore, "ongoing-request=\"false\""))
        st->thaw = DEST_THAW_READY;
    call_free(c);
    return 1;
}

/* Content-MD5 of a small body: AWS requires it on PUT ?retention. */
static void md5_base64(const void *body, size_t len, char out[32])
{
    unsigned char md[16];
    unsigned int n = sizeof(md);

    EVP_Digest(body, len, md, &n, EVP_md5(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)sizeof(md));
}

/* PUT an XML body (owned: freed here) on a subresource of key's version (latest when
 * version is NULL or ""); `doing` names the operation in the error. */
static int put_version_xml(struct s3 *s3, const char *key, const char *version, const char *sub,
                           char *body, const char *doing, struct store_err *e)
{
    struct s3_call *c = call_new("PUT", version_url(s3, key, version, sub));
    char hex[65], md5[32];
    int rc = 0;

    c->body_owned = body;
    c->body_mem = c->body_owned;
    c->body_len = strlen(c->body_owned);
    sha256_hex(c->body_mem, c->body_len, hex);
    md5_base64(c->body_mem, c->body_len, md5);
    call_header(c, "x-amz-content-sha256: %s", hex);
    call_header(c, "Content-MD5: %s", md5);
    call_header(c, "Content-Type: application/xml");
    if (call_run(s3, c) < 0) {
        char what[CST_ERR_SIZE / 2];

        snprintf(what, sizeof(what), "%s of %s (version %s)", doing, key,
                 version && version[0] ? version : "latest");
        e->kind = call_explain(s3, c, what, e->err.msg, sizeof(e->err.msg));
        rc = -1;
    }
    call_free(c);
    return rc;
}

/* store.h set_retention: PUT ?retention on the version, in the destination's lock mode. */
static int s3_set_retention(struct dest *d, const char *key, const char *version, int64_t until_ms,
                            struct store_err *e)
{
    struct s3 *s3 = d->impl;

    e->kind = DEST_ERR_CONFIG;
    if (s3->lock_mode == NULL)
        return store_fail(e, DEST_ERR_CONFIG,
                          "destination %s: cannot lock %s: object_lock is not set", d->name, key);
    return put_version_xml(s3, key, version, "retention",
                           s3_xml_retention_body(s3->lock_mode, until_ms),
                           "cannot set the Object Lock retention", e);
}

/* store.h set_legal_hold: PUT ?legal-hold on the version. */
static int s3_set_legal_hold(struct dest *d, const char *key, const char *version, int on,
                             struct store_err *e)
{
    return put_version_xml(d->impl, key, version, "legal-hold",
                           util_printf("<LegalHold xmlns=\"http://s3.amazonaws.com/doc/"
                                       "2006-03-01/\"><Status>%s</Status></LegalHold>",
                                       on ? "ON" : "OFF"),
                           on ? "cannot set the legal hold" : "cannot clear the legal hold", e);
}

/* store.h thaw: POST ?restore (RestoreObject). 202: started; 200: a thawed copy is there
 * already; 409 RestoreAlreadyInProgress: under way. */
static int s3_thaw(struct dest *d, const char *key, const char *tier, int days, struct store_err *e)
{
    struct s3 *s3 = d->impl;
    struct s3_call *c;
    char hex[65], md5[32];
    int rc = 0;

    c = call_new("POST", version_url(s3, key, NULL, "restore"));
    /* tier is one of two fixed words (config checks it): nothing to escape */
    c->body_owned = util_printf("<RestoreRequest xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                                "<Days>%d</Days><GlacierJobParameters><Tier>%s</Tier>"
                                "</GlacierJobParameters></RestoreRequest>",
                                days, tier);
    c->body_mem = c->body_owned;
    c->body_len = strlen(c->body_owned);
    sha256_hex(c->body_mem, c->body_len, hex);
    md5_base64(c->body_mem, c->body_len, md5);
    call_header(c, "x-amz-content-sha256: %s", hex);
    call_header(c, "Content-MD5: %s", md5);
    call_header(c, "Content-Type: application/xml");
    if (call_run(s3, c) < 0 && !(c->rc == CURLE_OK && c->status == 409 &&
                                 strcmp(c->xerr.code, "RestoreAlreadyInProgress") == 0)) {
        char doing[CST_ERR_SIZE / 2];

        snprintf(doing, sizeof(doing), "cannot ask for a thaw of %s", key);
        e->kind = call_explain(s3, c, doing, e->err.msg, sizeof(e->err.msg));
        rc = -1;
    }
    call_free(c);
    return rc;
}

/* DELETE each version and delete marker of exactly key (?versions&prefix=key). A version
 * still under Object Lock (or a legal hold) is refused by the store: an error naming it. */
static int remove_versions(struct s3 *s3, const char *key, struct cst_err *err)
{
    static const char *const kinds[] = {"Version", "DeleteMarker"};
    struct s3_qparam q[3] = {{"max-keys", "1000"}, {"prefix", key}, {"versions", NULL}};
    char *query = s3_query(q, 3), doing[CST_ERR_SIZE / 2], flag[16];
    struct s3_call *c = call_new("GET", bucket_url(s3, query));
    size_t pos, blen, ilen;
    const char *body, *inner;
    int rc = 0;

    free(query);
    call_sign_empty(c);
    snprintf(doing, sizeof(doing), "cannot list the versions of %s", key);
    if (call_run(s3, c) < 0) {
        call_explain(s3, c, doing, err->msg, sizeof(err->msg));
        call_free(c);
        return -1;
    }
    pos = 0;
    if (c->reply == NULL ||
        !s3_xml_next(c->reply, c->reply_len, &pos, "ListVersionsResult", &body, &blen)) {
        call_free(c);
        return cst_err_set(err, "%s: not a version listing", doing);
    }
    if (s3_xml_text(body, blen, "IsTruncated", flag, sizeof(flag)) == 0 &&
        strcmp(flag, "true") == 0) {
        call_free(c);
        return cst_err_set(err, "%s: more than 1000 versions under that name", doing);
    }
    for (int k = 0; k < 2 && rc == 0; k++) {
        pos = 0;
        while (rc == 0 && s3_xml_next(body, blen, &pos, kinds[k], &inner, &ilen)) {
            char *name = util_xmalloc(ilen + 1), version[256];
            struct s3_call *del;

            if (s3_xml_text(inner, ilen, "Key", name, ilen + 1) < 0 ||
                s3_xml_text(inner, ilen, "VersionId", version, sizeof(version)) < 0 ||
                strcmp(name, key) != 0) {
                free(name);
                continue;
            }
            free(name);
            del = call_new("DELETE", version_url(s3, key, version, NULL));
            call_sign_empty(del);
            if (call_run(s3, del) < 0 && !(del->rc == CURLE_OK && del->status == 404)) {
                snprintf(doing, sizeof(doing), "cannot delete version %s of %s", version, key);
                call_explain(s3, del, doing, err->msg, sizeof(err->msg));
                rc = -1;
            }
            call_free(del);
        }
    }
    call_free(c);
    return rc;
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
    /* On a versioned bucket (an Object Lock bucket is one) that DELETE only added a delete
     * marker: the versions, and their bytes, are still there. Removing means every version. */
    if (rc == 0 && c->version_id[0])
        rc = remove_versions(s3, remote_key, err);
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

/* object_lock = yes is only true of a bucket made with Object Lock: ask the bucket. */
static void probe_object_lock(struct s3 *s3, struct dest_probe *out)
{
    char *query = s3_query(&(struct s3_qparam){"object-lock", NULL}, 1);
    struct s3_call *c = call_new("GET", bucket_url(s3, query));
    char state[32] = "", msg[CST_ERR_SIZE];
    int answered;

    free(query);
    call_sign_empty(c);
    call_run(s3, c);
    answered = call_ok(c) &&
               s3_xml_text(c->reply, c->reply_len, "ObjectLockEnabled", state, sizeof(state)) == 0;
    if (answered && strcmp(state, "Enabled") == 0) {
        check_add(out, "object lock", 1, "bucket %s has Object Lock; retention in %s mode",
                  s3->bucket, s3->lock_mode);
    } else if (call_ok(c) || (c->rc == CURLE_OK && (c->status == 404 || c->status == 400))) {
        /* AWS: 404 ObjectLockConfigurationNotFoundError; RGW: 404 or 400 InvalidRequest */
        check_add(out, "object lock", 0,
                  "object_lock = yes, but bucket %s has no Object Lock (%s): make a bucket with "
                  "Object Lock enabled (most stores cannot turn it on later), or set "
                  "object_lock = no",
                  s3->bucket, c->xerr.code[0] ? c->xerr.code : "not enabled");
    } else {
        call_explain(s3, c, NULL, msg, sizeof(msg));
        check_add(out, "object lock", 0, "cannot tell: %s", msg);
    }
    call_free(c);
}

/* --- the tier transition: a bucket lifecycle rule --- */

#define S3_LC_RULE_ID "custodian-archive"

enum lc_state { LC_OURS, LC_NONE, LC_OURS_STALE, LC_FOREIGN };

static char *lc_body(const struct s3 *s3)
{
    /* archive_class comes from the config as a storage class name: no XML in it */
    return util_printf("<LifecycleConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                       "<Rule><ID>" S3_LC_RULE_ID "</ID><Filter><Prefix>objects/</Prefix></Filter>"
                       "<Status>Enabled</Status><Transition><Days>%d</Days><StorageClass>%s"
                       "</StorageClass></Transition></Rule></LifecycleConfiguration>",
                       s3->transition_days, s3->archive_class);
}

static size_t count_of(const char *hay, size_t len, const char *needle)
{
    size_t n = 0, nl = strlen(needle);

    for (size_t i = 0; i + nl <= len; i++)
        if (memcmp(hay + i, needle, nl) == 0)
            n++;
    return n;
}

/* What the bucket's lifecycle configuration is to custodian: GET ?lifecycle. */
static int lc_state(struct s3 *s3, char *msg, size_t msglen)
{
    char *query = s3_query(&(struct s3_qparam){"lifecycle", NULL}, 1);
    struct s3_call *c = call_new("GET", bucket_url(s3, query));
    char days[32], cls[96];
    int rc;

    free(query);
    call_sign_empty(c);
    call_run(s3, c);
    if (c->rc == CURLE_OK && c->status == 404) {
        rc = LC_NONE;
    } else if (!call_ok(c)) {
        call_explain(s3, c, "cannot read the bucket's lifecycle configuration", msg, msglen);
        rc = -1;
    } else if (count_of(c->reply, c->reply_len, "<ID>" S3_LC_RULE_ID "</ID>") == 0) {
        rc = LC_FOREIGN;
    } else {
        snprintf(days, sizeof(days), "<Days>%d</Days>", s3->transition_days);
        snprintf(cls, sizeof(cls), "<StorageClass>%s</StorageClass>", s3->archive_class);
        rc = count_of(c->reply, c->reply_len, "<Rule>") == 1 &&
                     count_of(c->reply, c->reply_len, days) == 1 &&
                     count_of(c->reply, c->reply_len, cls) == 1 &&
                     count_of(c->reply, c->reply_len, "<Prefix>objects/</Prefix>") == 1 &&
                     count_of(c->reply, c->reply_len, "<Status>Enabled</Status>") == 1
                 ? LC_OURS
             : count_of(c->reply, c->reply_len, "<Rule>") == 1 ? LC_OURS_STALE
                                                               : LC_FOREIGN;
    }
    call_free(c);
    return rc;
}

int dest_s3_lifecycle_ensure(struct dest *d, struct cst_err *err)
{
    struct s3 *s3 = d->impl;
    struct s3_call *c;
    char *query, hex[65], md5[32];
    int state;

    if (s3->transition_days <= 0)
        return 0;
    state = lc_state(s3, err->msg, sizeof(err->msg));
    if (state == LC_OURS)
        return 0;
    if (state < 0)
        return -1;
    if (state == LC_FOREIGN)
        return cst_err_set(err,
                           "destination %s: bucket %s has a lifecycle configuration without "
                           "custodian's rule; custodian does not replace it: add a rule with ID "
                           "%s, prefix objects/, a transition to %s after %d days",
                           d->name, s3->bucket, S3_LC_RULE_ID, s3->archive_class,
                           s3->transition_days);
    query = s3_query(&(struct s3_qparam){"lifecycle", NULL}, 1);
    c = call_new("PUT", bucket_url(s3, query));
    free(query);
    c->body_owned = lc_body(s3);
    c->body_mem = c->body_owned;
    c->body_len = strlen(c->body_owned);
    sha256_hex(c->body_mem, c->body_len, hex);
    md5_base64(c->body_mem, c->body_len, md5);
    call_header(c, "x-amz-content-sha256: %s", hex);
    call_header(c, "Content-MD5: %s", md5);
    call_header(c, "Content-Type: application/xml");
    if (call_run(s3, c) < 0) {
        call_explain(s3, c, "cannot install the lifecycle rule of the tier transition", err->msg,
                     sizeof(err->msg));
        call_free(c);
        return -1;
    }
    call_free(c);
    log_info("lifecycle rule installed dest=%s bucket=%s class=%s days=%d", d->name, s3->bucket,
             s3->archive_class, s3->transition_days);
    state = lc_state(s3, err->msg, sizeof(err->msg));
    if (state == LC_OURS)
        return 0;
    return state < 0
               ? -1
               : cst_err_set(err, "destination %s: the lifecycle rule does not read back", d->name);
}

/* doctor: the rule that moves objects to archive_class at hot_months is there. */
static void probe_lifecycle(struct s3 *s3, struct dest_probe *out)
{
    char msg[CST_ERR_SIZE];
    int state = lc_state(s3, msg, sizeof(msg));

    if (state == LC_OURS)
        check_add(out, "lifecycle rule", 1,
                  "rule %s moves objects/ to %s %d days after upload (hot_months)", S3_LC_RULE_ID,
                  s3->archive_class, s3->transition_days);
    else if (state == LC_NONE || state == LC_OURS_STALE)
        check_add(out, "lifecycle rule", 0,
                  "bucket %s has %s: `custodian prune --confirm` installs it (the agent's daily "
                  "prune does); until then nothing moves to %s",
                  s3->bucket, state == LC_NONE ? "no lifecycle rule" : "an outdated custodian rule",
                  s3->archive_class);
    else if (state == LC_FOREIGN)
        check_add(out, "lifecycle rule", 0,
                  "bucket %s has a lifecycle configuration without rule %s: add it by hand "
                  "(prefix objects/, transition to %s after %d days)",
                  s3->bucket, S3_LC_RULE_ID, s3->archive_class, s3->transition_days);
    else
        check_add(out, "lifecycle rule", 0, "cannot tell: %s", msg);
}

static int s3_probe_connect(struct dest *d, struct dest_probe *out)
{
    struct s3 *s3 = d->impl;
    char msg[CST_ERR_SIZE];
    struct s3_call *c = NULL;
    int all_ok = 1, usable = 0;

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
    usable = 1; /* plain http on loopback is reported above, and the probe goes on */
    if (s3->lock_mode)
        probe_object_lock(s3, out);
    if (s3->transition_days > 0)
        probe_lifecycle(s3, out);
out:
    call_free(c);
    (void)all_ok;
    return usable ? 0 : -1;
}

/* While the probe object exists: its storage class, and that nobody may read it unsigned. */
static int s3_probe_object(struct dest *d, const char *key, struct dest_probe *out)
{
    struct s3 *s3 = d->impl;
    char msg[CST_ERR_SIZE];
    struct s3_call *c;
    int all_ok = 1;

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

/*
 * Metadata of a stored object: only what the stored bytes themselves show (their size and
 * SHA-256, and for a container its version and key id, which are in its header). Nothing
 * derived from the plaintext: a HEAD must not let anyone test for a known file.
 */
static void meta_headers(struct s3_call *c, uint64_t stored_size, const unsigned char sha[32],
                         const unsigned char *head, size_t head_len)
{
    char hex[65];

    util_hex(sha, 32, hex);
    call_header(c, "x-amz-meta-custodian-stored-sha256: %s", hex);
    call_header(c, "x-amz-meta-custodian-stored-size: %llu", (unsigned long long)stored_size);
    if (head && head_len >= 18 && memcmp(head, "CSTDOBJ\n", 8) == 0) {
        call_header(c, "x-amz-meta-custodian-format: %u", (unsigned)head[8]);
        util_hex(head + 10, CRYPT_KEY_ID_SIZE, hex);
        call_header(c, "x-amz-meta-custodian-key-id: %s", hex);
    }
}

/* The storage class an object is put in: its own, else hot_class (NULL: the bucket's). */
static const char *class_of(const struct s3 *s3, const struct dest_put *p)
{
    return p->storage_class && p->storage_class[0] ? p->storage_class : s3->hot_class;
}

/* The put asks for a retention this destination can give. */
static int wants_lock(const struct s3 *s3, const struct dest_put *p)
{
    return s3->lock_mode && p->retain_until > 0;
}

/* Headers every new object carries: class, lock and metadata (on PUT, or on Create). fd: the
 * spool file (its header gives version and key id), or -1. */
static void object_headers(struct s3 *s3, struct s3_call *c, const struct dest_put *p, int fd,
                           const unsigned char *mem)
{
    unsigned char head[18];
    size_t n = 0;

    call_header(c, "Content-Type: application/octet-stream");
    if (class_of(s3, p))
        call_header(c, "x-amz-storage-class: %s", class_of(s3, p));
    if (wants_lock(s3, p)) {
        char until[32];

        /* Honoured on PUT; RGW drops them on multipart Create: store.c then sets the
         * retention on the stored version. */
        s3_xml_time_iso(p->retain_until, until, sizeof(until));
        call_header(c, "x-amz-object-lock-mode: %s", s3->lock_mode);
        call_header(c, "x-amz-object-lock-retain-until-date: %s", until);
    }
    if (mem && p->stored_size >= sizeof(head)) {
        memcpy(head, mem, sizeof(head));
        n = sizeof(head);
    } else if (fd >= 0 && pread(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head)) {
        n = sizeof(head);
    }
    meta_headers(c, p->stored_size, p->stored_sha256, head, n);
}

/* A single PUT that carries a lock also carries the body's SHA-256 as a checksum: AWS refuses
 * lock headers without one (and checks it; the payload hash is checked anyway). */
static void lock_checksum_header(struct s3 *s3, struct s3_call *c, const struct dest_put *p)
{
    char b64[48];

    if (!wants_lock(s3, p))
        return;
    EVP_EncodeBlock((unsigned char *)b64, p->stored_sha256, 32);
    call_header(c, "x-amz-checksum-sha256: %s", b64);
}

/* ---- records of multipart uploads in progress (start-up cleanup reads them) ---- */

static char *record_path(const struct s3 *s3, const char *owner)
{
    char safe[CST_ERR_SIZE / 4];
    size_t i = 0;

    for (const char *p = s3->d->name; *p && i + 1 < sizeof(safe); p++)
        safe[i++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
                               ? *p
                               : '_');
    safe[i] = '\0';
    return util_printf("%s/%s.%s", s3->uploads_dir, safe, owner);
}

/* One line per event, "begin MS KEY", "id UPLOADID KEY", "end UPLOADID": a process that dies
 * leaves the ids (and the keys it was about to start) for the next start to abort. */
static void record_upload(struct s3 *s3, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void record_upload(struct s3 *s3, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    char *path;
    int fd, n;

    if (s3->uploads_dir == NULL)
        return;
    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(line) - 1)
        return;
    line[n++] = '\n';
    if (mkdir(s3->uploads_dir, 0700) < 0 && errno != EEXIST) {
        log_warn("cannot record a multipart upload in %s: %s", s3->uploads_dir, strerror(errno));
        return;
    }
    path = record_path(s3, store_owner());
    /* One write with O_APPEND: a line is never torn by a concurrent writer or a kill. */
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0 || util_write_all(fd, line, (size_t)n) < 0)
        log_warn("cannot record a multipart upload in %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(path);
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
    struct store_write *w = up->w;

    if (up->committed && !up->failed) {
        up->put->kind = DEST_OK;
        up->put->error[0] = '\0';
    } else if (!up->failed) {
        /* Cannot happen: every path that leaves nothing outstanding committed or failed. */
        up->put->kind = DEST_ERR_TRANSIENT;
        snprintf(up->put->error, sizeof(up->put->error),
                 "destination %s: upload of %s ended without being committed", s3->d->name,
                 up->put->remote_key);
    }
    if (up->prev)
        up->prev->next = up->next;
    else
        s3->uploads = up->next;
    if (up->next)
        up->next->prev = up->prev;
    upload_free(up);
    store_write_done(w);
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
            up->committed = 1; /* accepted only with the signed SHA-256 of the body */
            snprintf(up->put->version_id, sizeof(up->put->version_id), "%s", c->version_id);
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
            record_upload(s3, "id %s %s", id, key);
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
            /* Every part was accepted only with its signed SHA-256, and the parts hash to
             * the sealed object's SHA-256 (checked before Complete). */
            up->completed = 1;
            up->committed = 1;
            snprintf(up->put->version_id, sizeof(up->put->version_id), "%s", c->version_id);
            record_upload(s3, "end %s", up->upload_id);
        } else {
            if (call_ok(c))
                c->status = 500; /* an error document in a 200: classify as a server failure */
            snprintf(doing, sizeof(doing), "cannot complete the multipart upload of %s", key);
            upload_fail_call(up, c, doing);
        }
        break;
    case CALL_ABORT:
        if (call_ok(c) || (c->rc == CURLE_OK && c->status == 404))
            record_upload(s3, "end %s", up->upload_id);
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
        object_headers(s3, c, p, up->fd, NULL);
        lock_checksum_header(s3, c, p);
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
    object_headers(s3, c, p, up->fd, NULL);
    /* Before Create: killed before its id is recorded, the upload is still known. */
    record_upload(s3, "begin %lld %s", (long long)util_now_ms(), p->remote_key);
    call_submit(s3, c);
}

/* store.h write_async: one object, on the loop; store_write_done() when it is committed or
 * has failed (never from inside this call). */
static void s3_write_async(struct dest *d, struct store_write *w)
{
    struct s3 *s3 = d->impl;
    struct s3_upload *up = util_xcalloc(1, sizeof(*up));
    struct dest_put *p = w->put;
    struct stat sb;
    char msg[CST_ERR_SIZE];

    up->s3 = s3;
    up->w = w;
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
                 "destination %s: spool file %s has %llu bytes, not the %llu that were sealed",
                 d->name, p->spool_path, (unsigned long long)sb.st_size,
                 (unsigned long long)p->stored_size);
        upload_fail(up, DEST_ERR_SOURCE, msg);
    }
    if (up->failed) {
        up->ready_next = s3->ready;
        s3->ready = up;
        kick_soon(s3);
        return;
    }
    upload_start(s3, up);
}

/* store.h write, without a loop (doctor's probe): one PUT, its body from the store_source. */
static int s3_write(struct dest *d, struct store_write *w)
{
    struct s3 *s3 = d->impl;
    struct dest_put *p = w->put;
    struct s3_call *c;
    char hex[65], doing[CST_ERR_SIZE / 2];
    const char *path = store_source_path(w->src);
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1, rc = 0;

    if (p->stored_size > s3->part_size) {
        if (fd >= 0)
            close(fd);
        p->kind = DEST_ERR_CONFIG;
        snprintf(p->error, sizeof(p->error),
                 "destination %s: objects larger than part_size_mb need the agent's loop", d->name);
        return -1;
    }
    c = call_new("PUT", object_url(s3, p->remote_key, NULL));
    util_hex(p->stored_sha256, 32, hex);
    call_header(c, "x-amz-content-sha256: %s", hex);
    object_headers(s3, c, p, fd, NULL);
    lock_checksum_header(s3, c, p);
    if (fd >= 0)
        close(fd);
    c->body_src = w->src;
    c->body_len = p->stored_size;
    if (call_run(s3, c) < 0) {
        snprintf(doing, sizeof(doing), "cannot upload %s", p->remote_key);
        p->kind = call_explain(s3, c, doing, p->error, sizeof(p->error));
        rc = -1;
    } else {
        snprintf(p->version_id, sizeof(p->version_id), "%s", c->version_id);
    }
    call_free(c);
    return rc;
}

/* ---- life cycle ---- */

/* Stopping mid-upload: abort it now (briefly, best effort) so that no parts are left.
 * -1 when it may still be there (the next start finds it through the record). */
static int abort_now(struct s3 *s3, struct s3_upload *up)
{
    int rc = 0;

    struct s3_qparam q = {"uploadId", up->upload_id};
    struct s3_call *c = call_new("DELETE", upload_query_url(up, &q, 1));

    call_sign_empty(c);
    c->timeout_s = 5;
    if (call_run(s3, c) < 0 && !(c->rc == CURLE_OK && c->status == 404)) {
        rc = -1;
        log_warn("cannot abort the multipart upload of %s on destination %s (HTTP %ld, %s); its "
                 "parts stay until a lifecycle rule removes them",
                 up->put->remote_key, s3->d->name, c->status,
                 c->errbuf[0] ? c->errbuf : curl_easy_strerror(c->rc));
    } else {
        record_upload(s3, "end %s", up->upload_id);
        log_info("stopped an upload in progress dest=%s key=%s", s3->d->name, up->put->remote_key);
    }
    call_free(c);
    return rc;
}

static void s3_destroy(struct s3 *s3)
{
    for (int i = 0; i < s3->n_idle; i++)
        curl_easy_cleanup(s3->idle[i]);
    pthread_mutex_destroy(&s3->easy_lock);
    free(s3->uploads_dir);
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
    free(s3->archive_class);
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
    int kept = 0;

    while (s3->uploads) {
        struct s3_upload *up = s3->uploads;

        s3->uploads = up->next;
        if (up->upload_id && !up->completed)
            kept |= abort_now(s3, up) < 0;
        upload_free(up); /* store.c frees what waited for it */
    }
    if (s3->uploads_dir && !kept) {
        /* Every upload of this process ended: its record says nothing any more. */
        char *path = record_path(s3, store_owner());

        unlink(path);
        free(path);
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

/* ---- start-up: multipart uploads that a crash left ---- */

struct rec_id {
    char *id, *key;
    int dead;
};

struct rec_begin {
    char *key;
    int64_t at;
};

struct records {
    struct rec_id *ids; /* uploads started and not ended */
    size_t n_ids;
    struct rec_begin *dead_begins; /* keys a dead process was starting, and when */
    size_t n_dead_begins;
    struct rec_begin *live_begins; /* keys a live process (this one too) is starting */
    size_t n_live_begins;
    char **dead_files;
    size_t n_dead_files;
};

static void records_read(struct records *r, const char *path, int dead)
{
    FILE *f = fopen(path, "re");
    char line[2048];

    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f)) {
        char *nl = strchr(line, '\n'), *sp;

        if (nl == NULL)
            continue; /* a torn last line: nothing to learn */
        *nl = '\0';
        if (strncmp(line, "begin ", 6) == 0 && (sp = strchr(line + 6, ' ')) != NULL) {
            struct rec_begin **list = dead ? &r->dead_begins : &r->live_begins;
            size_t *n = dead ? &r->n_dead_begins : &r->n_live_begins;

            *list = util_xrealloc(*list, (*n + 1) * sizeof(**list));
            (*list)[*n].at = strtoll(line + 6, NULL, 10);
            (*list)[(*n)++].key = util_xstrdup(sp + 1);
        } else if (strncmp(line, "id ", 3) == 0 && (sp = strchr(line + 3, ' ')) != NULL) {
            *sp = '\0';
            r->ids = util_xrealloc(r->ids, (r->n_ids + 1) * sizeof(*r->ids));
            r->ids[r->n_ids].id = util_xstrdup(line + 3);
            r->ids[r->n_ids].key = util_xstrdup(sp + 1);
            r->ids[r->n_ids++].dead = dead;
        } else if (strncmp(line, "end ", 4) == 0) {
            for (size_t i = 0; i < r->n_ids; i++)
                if (strcmp(r->ids[i].id, line + 4) == 0) {
                    free(r->ids[i].id);
                    free(r->ids[i].key);
                    r->ids[i] = r->ids[--r->n_ids];
                    break;
                }
        }
    }
    fclose(f);
}

static void records_load(struct s3 *s3, struct records *r)
{
    char *mine = record_path(s3, "");
    const char *base = strrchr(mine, '/') + 1;
    size_t blen = strlen(base);
    DIR *dir = opendir(s3->uploads_dir);
    struct dirent *de;

    memset(r, 0, sizeof(*r));
    while (dir && (de = readdir(dir)) != NULL) {
        if (strncmp(de->d_name, base, blen) != 0 || de->d_name[blen] == '\0')
            continue;
        const char *owner = de->d_name + blen;
        int dead = strcmp(owner, store_owner()) != 0 && !store_owner_alive(owner);
        char *path = util_join(s3->uploads_dir, de->d_name);

        records_read(r, path, dead);
        if (dead) {
            r->dead_files = util_xrealloc(r->dead_files, (r->n_dead_files + 1) * sizeof(char *));
            r->dead_files[r->n_dead_files++] = path;
        } else {
            free(path);
        }
    }
    if (dir)
        closedir(dir);
    free(mine);
}

static void records_free(struct records *r)
{
    for (size_t i = 0; i < r->n_ids; i++) {
        free(r->ids[i].id);
        free(r->ids[i].key);
    }
    for (size_t i = 0; i < r->n_dead_begins; i++)
        free(r->dead_begins[i].key);
    for (size_t i = 0; i < r->n_live_begins; i++)
        free(r->live_begins[i].key);
    free(r->live_begins);
    for (size_t i = 0; i < r->n_dead_files; i++)
        free(r->dead_files[i]);
    free(r->ids);
    free(r->dead_begins);
    free(r->dead_files);
}

struct listed_upload {
    char *key, *id;
    int64_t at;
};

struct sweep {
    struct s3 *s3;
    struct records *r;
    int64_t now;
    size_t aborted, kept, failed;
    struct listed_upload *found;
    size_t n_found;
};

/* Listed first, decided after the records are read: a live process writes "begin" before
 * it starts an upload, so every live upload the listing shows is known by then. */
static int collect_upload(void *arg, const char *key, const char *upload_id, const char *initiated)
{
    struct sweep *sw = arg;

    sw->found = util_xrealloc(sw->found, (sw->n_found + 1) * sizeof(*sw->found));
    sw->found[sw->n_found].key = util_xstrdup(key);
    sw->found[sw->n_found].id = util_xstrdup(upload_id);
    sw->found[sw->n_found++].at = s3_xml_time_ms(initiated);
    return 0;
}

/* How close (ms) the nearest recorded start of key is to an upload initiated at `at`, or -1
 * when none is within the slack. */
static int64_t begun_near(const struct rec_begin *list, size_t n, const char *key, int64_t at)
{
    int64_t best = -1;

    for (size_t k = 0; k < n; k++) {
        int64_t gap = at >= list[k].at ? at - list[k].at : list[k].at - at;

        if (strcmp(list[k].key, key) == 0 && at >= 0 && gap <= S3_RECORD_SLACK_MS &&
            (best < 0 || gap < best))
            best = gap;
    }
    return best;
}

/*
 * Whose is this upload? Recorded by a live process: leave it; by a dead one: abort. Not
 * recorded (its process was killed, or is live, between its "begin" and the reply that
 * names the id): the process whose start of that key is nearest its initiation time owns
 * it. A live process begins a key only after a dead one died, so a live upload is always
 * nearer its own start; a dead upload's Create was sent before the kill. Nobody's and older
 * than a day (a record lost with a power cut, another tool): abort. Else leave it.
 */
static int sweep_upload(struct sweep *sw, const char *key, const char *upload_id, int64_t at)
{
    struct records *r = sw->r;
    int abort_it = 0;
    size_t i;

    for (i = 0; i < r->n_ids; i++)
        if (strcmp(r->ids[i].id, upload_id) == 0)
            break;
    if (i < r->n_ids) {
        abort_it = r->ids[i].dead;
    } else {
        int64_t live = begun_near(r->live_begins, r->n_live_begins, key, at);
        int64_t dead = begun_near(r->dead_begins, r->n_dead_begins, key, at);

        if (dead >= 0 && (live < 0 || dead < live))
            abort_it = 1;
        else if (live >= 0)
            abort_it = 0;
        else
            abort_it = at >= 0 && sw->now - at > S3_UNKNOWN_UPLOAD_AGE_MS;
    }
    if (!abort_it) {
        sw->kept++;
        return 0;
    }
    struct s3_qparam q = {"uploadId", upload_id};
    char *query = s3_query(&q, 1);
    struct s3_call *c = call_new("DELETE", object_url(sw->s3, key, query));

    free(query);
    call_sign_empty(c);
    if (call_run(sw->s3, c) == 0 || (c->rc == CURLE_OK && c->status == 404)) {
        sw->aborted++;
        log_info("aborted a multipart upload a stopped process left dest=%s key=%s",
                 sw->s3->d->name, key);
    } else {
        char msg[CST_ERR_SIZE];

        call_explain(sw->s3, c, "cannot abort a multipart upload a stopped process left", msg,
                     sizeof(msg));
        log_warn("%s", msg);
        sw->failed++;
    }
    call_free(c);
    return 0;
}

/* List the uploads under both prefixes into sw->found. */
static int list_uploads(struct s3 *s3, struct sweep *sw, struct cst_err *err)
{
    static const char *const prefixes[] = {"objects/", "backups/"};
    int rc = 0;

    for (size_t p = 0; p < 2 && rc == 0; p++) {
        char *key_marker = NULL, *id_marker = NULL;

        for (;;) {
            struct s3_qparam q[4];
            size_t nq = 0;
            struct s3_uploads_page page;

            q[nq++] = (struct s3_qparam){"uploads", NULL};
            q[nq++] = (struct s3_qparam){"prefix", prefixes[p]};
            if (key_marker) {
                q[nq++] = (struct s3_qparam){"key-marker", key_marker};
                q[nq++] = (struct s3_qparam){"upload-id-marker", id_marker};
            }
            char *query = s3_query(q, nq);
            struct s3_call *c = call_new("GET", bucket_url(s3, query));

            free(query);
            call_sign_empty(c);
            if (call_run(s3, c) < 0) {
                call_explain(s3, c, "cannot list multipart uploads", err->msg, sizeof(err->msg));
                call_free(c);
                rc = -1;
                break;
            }
            int pr = s3_xml_uploads(c->reply, c->reply_len, collect_upload, sw, &page);

            call_free(c);
            if (pr < 0) {
                rc =
                    cst_err_set(err, "destination %s: the reply to ListMultipartUploads is not one",
                                s3->d->name);
                break;
            }
            if (!page.truncated)
                break;
            free(key_marker);
            free(id_marker);
            key_marker = util_xstrdup(page.next_key);
            id_marker = util_xstrdup(page.next_upload_id);
        }
        free(key_marker);
        free(id_marker);
    }
    return rc;
}

/* A dead process that began a key this recently may have sent its CreateMultipartUpload
 * just before it was killed; the server can list that upload only after this start-up
 * listed, so the listing is taken again (bounded: S3_SWEEP_ROUNDS). */
#define S3_SWEEP_RECENT_MS (30LL * 1000)
#define S3_SWEEP_ROUNDS 3
#define S3_SWEEP_PAUSE_MS 2500

static int recent_dead_unlisted(const struct sweep *sw)
{
    const struct records *r = sw->r;

    for (size_t i = 0; i < r->n_dead_begins; i++) {
        int listed = 0;

        if (sw->now - r->dead_begins[i].at > S3_SWEEP_RECENT_MS)
            continue;
        for (size_t k = 0; k < sw->n_found && !listed; k++)
            listed = strcmp(sw->found[k].key, r->dead_begins[i].key) == 0;
        if (!listed)
            return 1;
    }
    return 0;
}

static int s3_cleanup(struct dest *d, struct cst_err *err)
{
    struct s3 *s3 = d->impl;
    struct records r;
    struct sweep sw = {s3, &r, 0, 0, 0, 0, NULL, 0};
    int rc = 0, again = 1;

    memset(&r, 0, sizeof(r));
    for (int round = 0; rc == 0 && again && round < S3_SWEEP_ROUNDS; round++) {
        if (round > 0) {
            struct timespec pause = {0, S3_SWEEP_PAUSE_MS * 1000000L};

            while (pause.tv_nsec >= 1000000000L) {
                pause.tv_sec++;
                pause.tv_nsec -= 1000000000L;
            }
            nanosleep(&pause, NULL);
        }
        records_free(&r);
        memset(&r, 0, sizeof(r));
        sw.now = util_now_ms();
        /* Listed first, the records read after: see collect_upload. */
        rc = list_uploads(s3, &sw, err);
        if (rc == 0) {
            records_load(s3, &r);
            for (size_t i = 0; i < sw.n_found; i++)
                sweep_upload(&sw, sw.found[i].key, sw.found[i].id, sw.found[i].at);
            again = recent_dead_unlisted(&sw);
        }
        for (size_t i = 0; i < sw.n_found; i++) {
            free(sw.found[i].key);
            free(sw.found[i].id);
        }
        free(sw.found);
        sw.found = NULL;
        sw.n_found = 0;
    }
    /* A dead process's record goes once nothing it names can still be there. */
    if (rc == 0 && sw.failed == 0)
        for (size_t i = 0; i < r.n_dead_files; i++)
            unlink(r.dead_files[i]);
    records_free(&r);
    if (sw.aborted)
        log_info("aborted %zu multipart uploads that stopped processes left dest=%s", sw.aborted,
                 d->name);
    return rc;
}

/* ---- doctor: objects whose metadata older versions wrote ---- */

struct scrub {
    struct s3 *s3;
    int fix, locked;
    struct dest_scrub *out;
};

/* Replace the metadata of key by a self-copy that carries only stored-object facts. */
static int scrub_fix(struct s3 *s3, const char *key, const struct s3_call *head,
                     struct cst_err *err)
{
    unsigned char sha[32], first[18];
    struct s3_call *c;
    char *src, *enc;
    int rc = -1;
    struct {
        unsigned char buf[18];
        size_t len;
    } h = {{0}, 0};

    if (util_unhex(head->stored_sha, sha, 32) < 0)
        return cst_err_set(err, "%s has no custodian-stored-sha256 to carry over", key);
    if (head->content_length > S3_MAX_PART)
        return cst_err_set(err, "%s is larger than 5 GiB: a single copy cannot rewrite it", key);
    /* The container's version and key id come from its first bytes. */
    c = call_new("GET", object_url(s3, key, NULL));
    call_sign_empty(c);
    call_header(c, "Range: bytes=0-17");
    if (call_run(s3, c) == 0 && c->reply_len >= sizeof(first)) {
        memcpy(h.buf, c->reply, sizeof(first));
        h.len = sizeof(first);
    }
    call_free(c);
    enc = s3_uri_encode(key, 1);
    src = util_printf("/%s/%s", s3->bucket, enc);
    free(enc);
    c = call_new("PUT", object_url(s3, key, NULL));
    call_sign_empty(c);
    call_header(c, "x-amz-copy-source: %s", src);
    call_header(c, "x-amz-metadata-directive: REPLACE");
    call_header(c, "Content-Type: application/octet-stream");
    /* Without it the copy would land in STANDARD while HEAD still shows the old class. */
    call_header(c, "x-amz-storage-class: %s",
                head->storage_class[0] ? head->storage_class : "STANDARD");
    meta_headers(c, head->content_length, sha, h.len ? h.buf : NULL, h.len);
    free(src);
    if (call_run(s3, c) == 0 && s3_xml_error(c->reply, c->reply_len, &c->xerr) < 0)
        rc = 0;
    else
        call_explain(s3, c, "cannot rewrite the metadata", err->msg, sizeof(err->msg));
    call_free(c);
    return rc;
}

static int scrub_one(void *arg, const char *key, uint64_t size)
{
    struct scrub *sc = arg;
    struct s3 *s3 = sc->s3;
    struct s3_call *c = call_new("HEAD", object_url(s3, key, NULL));
    struct cst_err err;

    (void)size;
    call_sign_empty(c);
    sc->out->objects++;
    if (call_run(s3, c) < 0 || !c->legacy_meta) {
        call_free(c);
        return 0;
    }
    sc->out->legacy++;
    if (sc->out->example[0] == '\0')
        snprintf(sc->out->example, sizeof(sc->out->example), "%s", key);
    if (sc->fix && !sc->locked) {
        if (scrub_fix(s3, key, c, &err) == 0) {
            struct s3_call *again = call_new("HEAD", object_url(s3, key, NULL));

            call_sign_empty(again);
            if (call_run(s3, again) == 0 && !again->legacy_meta)
                sc->out->fixed++;
            call_free(again);
        } else if (sc->out->error[0] == '\0') {
            snprintf(sc->out->error, sizeof(sc->out->error), "%s: %s", key, err.msg);
        }
    }
    call_free(c);
    return 0;
}

int dest_s3_scrub(struct dest *d, int fix, struct dest_scrub *out, struct cst_err *err)
{
    struct s3 *s3;
    struct scrub sc;
    static const char *const prefixes[] = {"objects/", "backups/"};

    memset(out, 0, sizeof(*out));
    if (strcmp(d->ops->type, "s3") != 0)
        return cst_err_set(err, "destination %s is not an s3 destination", d->name);
    s3 = d->impl;
    sc = (struct scrub){s3, fix, 0, out};
    /* A bucket with Object Lock keeps every version as written: nothing can be rewritten. */
    char *query = s3_query(&(struct s3_qparam){"object-lock", NULL}, 1);
    struct s3_call *c = call_new("GET", bucket_url(s3, query));

    free(query);
    call_sign_empty(c);
    if (call_run(s3, c) == 0) {
        char state[32];

        sc.locked =
            s3_xml_text(c->reply, c->reply_len, "ObjectLockEnabled", state, sizeof(state)) == 0 &&
            strcmp(state, "Enabled") == 0;
    }
    call_free(c);
    out->locked = sc.locked;
    for (size_t p = 0; p < 2; p++)
        if (s3_list(d, prefixes[p], scrub_one, &sc, err) < 0)
            return -1;
    return 0;
}

static const struct store_driver s3_driver = {
    .type = "s3",
    /* The PUT (each part) is signed with its body's SHA-256; S3 stores an object durably
     * before it answers. */
    .features = STORE_FEAT_SERVER_CHECKS_HASH | STORE_FEAT_DURABLE_COMMIT,
    .write = s3_write,
    .write_async = s3_write_async,
    .read = s3_read,
    .stat = s3_stat,
    .describe = s3_describe,
    .set_retention = s3_set_retention,
    .set_legal_hold = s3_set_legal_hold,
    .thaw = s3_thaw,
    .get = s3_get,
    .list = s3_list,
    .remove = s3_remove,
    .cleanup = s3_cleanup,
    .probe_connect = s3_probe_connect,
    .probe_object = s3_probe_object,
    .free = s3_free,
};

static const struct dest_ops dest_s3_ops = {STORE_DEST_OPS_FIELDS("s3"), .stat = store_stat};

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
    pthread_mutex_init(&s3->easy_lock, NULL);
    if (s3->secret_key == NULL) {
        cst_err_wrap(err, "destination %s", name);
        s3_destroy(s3);
        return NULL;
    }
    if (cfg->state_dir)
        s3->uploads_dir = util_join(cfg->state_dir, "uploads");
    s3->bucket = util_xstrdup(cfg->bucket);
    s3->region = util_xstrdup(cfg->region && cfg->region[0] ? cfg->region : "us-east-1");
    s3->sigv4 = util_printf("aws:amz:%s:s3", s3->region);
    s3->ca_file = cfg->ca_file ? util_xstrdup(cfg->ca_file) : NULL;
    s3->hot_class = cfg->hot_class && cfg->hot_class[0] ? util_xstrdup(cfg->hot_class) : NULL;
    if (cfg->object_lock && cfg->lock_mode)
        s3->lock_mode = util_xstrdup(cfg->lock_mode);
    if (cfg->archive_class && cfg->archive_class[0] && cfg->transition_days > 0) {
        s3->archive_class = util_xstrdup(cfg->archive_class);
        s3->transition_days = cfg->transition_days;
    }
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

    char *where = util_printf("%s bucket %s", cfg->endpoint, cfg->bucket);
    struct store_params sp = {
        .name = name,
        .where = where,
        .ops = &dest_s3_ops,
        .driver = &s3_driver,
        .impl = s3,
        .max_batch = 1,
        .max_concurrent = (size_t)s3->max_inflight,
        .threads = 1, /* start-up cleanup and the checks of class and lock, off the loop */
        .lock_mode = s3->lock_mode,
    };

    d = store_dest_new(&sp, env);
    free(where);
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
