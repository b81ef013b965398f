/*
 * dest_sftp.c - the `sftp` destination: an SSH server, through libcurl and
 * libssh2.
 *
 * The server's host key is always checked against the configured
 * known_hosts file (an unknown or changed key is refused, never learned),
 * and only key authentication is offered. Nothing is written in place: an
 * object is uploaded to ".tmp.<name>.<pid>.<counter>" next to its final
 * name (hashed as it is read, so a spool file that changed since sealing is
 * never renamed in), renamed into place by post-quote commands of the same
 * transfer ("*rm FINAL", since an SFTPv3 rename does not overwrite, then
 * "rename TMP FINAL"), and then verified by a second transfer that stats
 * the final name and compares its size. A failed upload removes its
 * temporary file when it can; list() never reports dot files.
 *
 * Uploads run on the agent's loop through curl_ev (or block, without one);
 * get, exists, remove, list and probe block, for the command-line tools.
 * Every transfer of a destination uses that destination's own connection
 * cache, so SSH sessions are reused between transfers but never across
 * destinations. Free the destination after curl_ev_free(), or when no
 * upload is outstanding: curl_ev cannot drop one transfer on its own.
 */
#include "dest.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "shipper/curl_ev.h"

#define SFTP_DEFAULT_PORT 22
#define SFTP_DEFAULT_INFLIGHT 4
#define SFTP_CONNECT_TIMEOUT_S 10L
#define SFTP_LOW_SPEED_TIME_S 60L
#define SFTP_UPLOAD_BUFFER (1L << 20)
#define SFTP_DOWNLOAD_BUFFER (512L << 10)
#define SFTP_PROBE_BYTES (64u << 10)
#define SFTP_TEMP_PREFIX ".tmp."
#define SFTP_PROBE_FOLDER "custodian-probe"

/* What the url says: sftp://user@host:port/base. */
struct sftp_target {
    char *user;
    char *host; /* an IPv6 literal without its brackets */
    long port;
    char *base; /* absolute, without a trailing slash: "" is the root */
};

struct sftp_batch;

struct sftp {
    struct dest *d;
    struct sftp_target t;
    char *display; /* sftp://user@host:port/base, for messages */
    char *identity, *identity_pub, *known_hosts;
    curl_off_t send_speed; /* bytes/s per transfer, 0: unlimited */
    struct ev_loop *loop;
    struct curl_ev *curl; /* NULL: uploads block too */
    CURLSH *share;        /* this destination's connection cache (and DNS) */
    unsigned long temp_counter;
    struct sftp_batch *batches; /* uploads in progress */
};

/* One transfer's outcome beyond its CURLcode. */
struct sftp_call {
    char errbuf[CURL_ERROR_SIZE];
    int hostkey_seen; /* the key callback ran: TCP and SSH handshake worked */
    enum curl_khmatch hostkey_match;
};

enum source_problem { SOURCE_FINE = 0, SOURCE_READ, SOURCE_SHORT, SOURCE_CHANGED };

/* What an upload reads: a spool file (hashed as it is sent) or probe bytes. */
struct sftp_source {
    int fd;
    const unsigned char *mem; /* when fd < 0 */
    uint64_t size, sent;
    EVP_MD_CTX *sha;
    const unsigned char *want_sha; /* NULL: not checked */
    int hash_checked;
    enum source_problem problem;
    int read_errno;
};

/* Where a download goes: a file descriptor, or a comparison with known bytes. */
struct sftp_sink {
    int fd;
    const unsigned char *expect; /* when fd < 0 */
    size_t expect_len;
    uint64_t received;
    int write_errno;
    int differs;
};

enum put_stage { STAGE_UPLOAD, STAGE_VERIFY, STAGE_CLEANUP };

struct sftp_job {
    struct sftp_batch *batch;
    struct dest_put *put;
    CURL *easy;
    enum put_stage stage;
    struct sftp_call call;
    struct sftp_source src;
    char *final_path, *temp_path;
    struct curl_slist *quote;
    int64_t started_ms;
};

struct sftp_batch {
    struct sftp *s;
    struct dest_put *puts;
    size_t n, pending;
    dest_done_fn done;
    void *arg;
    ev_timer soon;
    struct sftp_batch *prev, *next;
    struct sftp_job jobs[];
};

/* ---- pure helpers: url, paths, quoting, listings ---- */

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode [s, s+len) into a new string; NULL on a bad escape or a control byte. */
static char *percent_decode(const char *s, size_t len)
{
    char *out = util_xmalloc(len + 1);
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;

            if (hi < 0 || lo < 0) {
                free(out);
                return NULL;
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            free(out);
            return NULL;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

static void sftp_target_clear(struct sftp_target *t)
{
    free(t->user);
    free(t->host);
    free(t->base);
    t->user = t->host = t->base = NULL;
    t->port = 0;
}

/*
 * Parse sftp://user@host[:port]/base. The user and the path may be
 * percent-encoded (a space may also be written as it is); the base must be
 * absolute and is kept without its trailing slash.
 */
static int sftp_parse_url(const char *url, struct sftp_target *t, struct cst_err *err)
{
    static const char scheme[] = "sftp://";
    const char *p, *at, *host, *host_end, *slash;

    memset(t, 0, sizeof(*t));
    if (url == NULL || strncasecmp(url, scheme, sizeof(scheme) - 1) != 0)
        return cst_err_set(err, "url '%s' must start with sftp://", url ? url : "");
    p = url + sizeof(scheme) - 1;
    slash = strchr(p, '/');
    if (slash == NULL)
        return cst_err_set(err,
                           "url '%s' has no path: write sftp://user@host:port/base with an "
                           "absolute base folder",
                           url);
    at = memchr(p, '@', (size_t)(slash - p));
    if (at == NULL || at == p)
        return cst_err_set(err, "url '%s' must name the user: sftp://user@host:port/base", url);
    t->user = percent_decode(p, (size_t)(at - p));
    if (t->user == NULL || strchr(t->user, ':') != NULL) {
        sftp_target_clear(t);
        return cst_err_set(err,
                           "url '%s': bad user name (no password may be given: key "
                           "authentication only)",
                           url);
    }
    host = at + 1;
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t)(slash - host));
        if (host_end == NULL || host_end == host + 1) {
            sftp_target_clear(t);
            return cst_err_set(err, "url '%s': unterminated IPv6 address", url);
        }
        t->host = util_printf("%.*s", (int)(host_end - host - 1), host + 1);
        p = host_end + 1;
    } else {
        host_end = host;
        while (host_end < slash && *host_end != ':')
            host_end++;
        t->host = util_printf("%.*s", (int)(host_end - host), host);
        p = host_end;
    }
    if (t->host[0] == '\0' || strpbrk(t->host, " \t@?#%\\[]") != NULL) {
        sftp_target_clear(t);
        return cst_err_set(err, "url '%s': bad host name", url);
    }
    t->port = SFTP_DEFAULT_PORT;
    if (p < slash) {
        char *end;

        if (*p != ':' || p + 1 == slash) {
            sftp_target_clear(t);
            return cst_err_set(err, "url '%s': expected :port after the host", url);
        }
        errno = 0;
        t->port = strtol(p + 1, &end, 10);
        if (end != slash || errno != 0 || t->port < 1 || t->port > 65535) {
            sftp_target_clear(t);
            return cst_err_set(err, "url '%s': the port must be a number from 1 to 65535", url);
        }
    }
    t->base = percent_decode(slash, strlen(slash));
    if (t->base == NULL) {
        sftp_target_clear(t);
        return cst_err_set(err,
                           "url '%s': bad base path (a %% must start a %%XX escape; control "
                           "characters are refused)",
                           url);
    }
    if (t->base[1] == '~') {
        sftp_target_clear(t);
        return cst_err_set(err,
                           "url '%s': the base must be an absolute path (~ is not expanded): "
                           "write sftp://user@host:port/home/user/backups",
                           url);
    }
    size_t len = strlen(t->base);
    while (len > 0 && t->base[len - 1] == '/')
        t->base[--len] = '\0';
    if (strstr(t->base, "//") != NULL || strstr(t->base, "/../") != NULL ||
        strstr(t->base, "/./") != NULL || (len >= 3 && strcmp(t->base + len - 3, "/..") == 0) ||
        (len >= 2 && strcmp(t->base + len - 2, "/.") == 0)) {
        sftp_target_clear(t);
        return cst_err_set(err, "url '%s': the base path must be plain (no //, . or ..)", url);
    }
    return 0;
}

/* A remote key is relative, made of non-empty segments other than . and .., no control bytes. */
static int sftp_key_valid(const char *key)
{
    const char *seg = key;

    if (key == NULL || *key == '\0')
        return 0;
    for (const char *p = key;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);

            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return 0;
            if (*p == '\0')
                return 1;
            seg = p + 1;
        } else if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            return 0;
        }
    }
}

/* "BASE/key" (malloc'd); key "" gives BASE itself ("/" for the root). */
static char *sftp_remote_path(const char *base, const char *key)
{
    if (key[0] == '\0')
        return util_xstrdup(base[0] ? base : "/");
    return util_printf("%s/%s", base, key);
}

/* "dir/.tmp.<name>.<pid>.<counter>" next to key (malloc'd). */
static char *sftp_temp_key(const char *key, long pid, unsigned long counter)
{
    const char *slash = strrchr(key, '/');
    const char *name = slash ? slash + 1 : key;
    int dirlen = slash ? (int)(slash - key + 1) : 0;

    return util_printf("%.*s" SFTP_TEMP_PREFIX "%s.%ld.%lu", dirlen, key, name, pid, counter);
}

/*
 * sftp://host:port/escaped/path (malloc'd): each segment percent-encoded
 * (curl decodes the path before using it). dir adds the trailing slash that
 * makes curl list a folder, or do nothing but its quote commands with NOBODY.
 */
static char *sftp_url(const struct sftp_target *t, const char *path, int dir)
{
    size_t cap = strlen(t->host) + 32 + 3 * strlen(path) + 2;
    char *url = util_xmalloc(cap);
    size_t len;
    const char *seg = path;
    int segments = 0;

    len = (size_t)snprintf(url, cap, strchr(t->host, ':') ? "sftp://[%s]:%ld" : "sftp://%s:%ld",
                           t->host, t->port);
    while (*seg == '/')
        seg++;
    while (*seg) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        char *esc = curl_easy_escape(NULL, seg, (int)n);

        if (esc == NULL)
            abort(); /* out of memory: nothing sane to do, as util_xmalloc */
        len += (size_t)snprintf(url + len, cap - len, "/%s", esc);
        curl_free(esc);
        segments++;
        seg += n;
        while (*seg == '/')
            seg++;
    }
    if (dir || segments == 0)
        snprintf(url + len, cap - len, "/");
    return url;
}

/* A path as a quote-command argument: in double quotes, \ and " escaped (malloc'd). */
static char *sftp_quote_path(const char *path)
{
    char *out = util_xmalloc(2 * strlen(path) + 3);
    size_t o = 0;

    out[o++] = '"';
    for (const char *p = path; *p; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

/*
 * One line of a long listing as OpenSSH's sftp-server writes it (ls -l):
 * "-rw------- 1 user group 1234 Nov 20 14:00 name". Sets the type ('-', 'd',
 * 'l', ...), the size and the name (which may hold spaces); -1 if the line
 * does not have that shape.
 */
static int sftp_parse_long_entry(const char *line, char *type, uint64_t *size, const char **name)
{
    const char *p = line;
    const char *field[8];
    size_t flen[8];

    for (int f = 0; f < 8; f++) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return -1;
        field[f] = p;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        flen[f] = (size_t)(p - field[f]);
    }
    if (*p != ' ' || p[1] == '\0' || flen[0] < 10)
        return -1;
    for (size_t i = 0; i < flen[4]; i++)
        if (field[4][i] < '0' || field[4][i] > '9')
            return -1;
    if (flen[4] == 0 || flen[4] > 19)
        return -1;
    *type = field[0][0];
    *size = strtoull(field[4], NULL, 10);
    *name = p + 1;
    return 0;
}

/* ---- transfers: options, callbacks, what an error means ---- */

static int sftp_hostkey_cb(CURL *easy, const struct curl_khkey *known,
                           const struct curl_khkey *found, enum curl_khmatch match, void *clientp)
{
    struct sftp_call *call = clientp;

    (void)easy;
    (void)known;
    (void)found;
    call->hostkey_seen = 1;
    call->hostkey_match = match;
    /* Never learn or replace a key: only an exact match in the file is good enough. */
    return match == CURLKHMATCH_OK ? CURLKHSTAT_FINE : CURLKHSTAT_REJECT;
}

/* Reset easy and set what every transfer to this destination needs. */
static void sftp_easy_setup(const struct sftp *s, CURL *easy, struct sftp_call *call,
                            const char *url)
{
    memset(call, 0, sizeof(*call));
    curl_easy_reset(easy);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "sftp");
    curl_easy_setopt(easy, CURLOPT_USERNAME, s->t.user);
    curl_easy_setopt(easy, CURLOPT_SSH_AUTH_TYPES, (long)CURLSSH_AUTH_PUBLICKEY);
    curl_easy_setopt(easy, CURLOPT_SSH_PRIVATE_KEYFILE, s->identity);
    /* "" lets libssh2 derive the public key from the private one. */
    curl_easy_setopt(easy, CURLOPT_SSH_PUBLIC_KEYFILE, s->identity_pub ? s->identity_pub : "");
    curl_easy_setopt(easy, CURLOPT_SSH_KNOWNHOSTS, s->known_hosts);
    curl_easy_setopt(easy, CURLOPT_SSH_KEYFUNCTION, sftp_hostkey_cb);
    curl_easy_setopt(easy, CURLOPT_SSH_KEYDATA, call);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, SFTP_CONNECT_TIMEOUT_S);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, SFTP_LOW_SPEED_TIME_S);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_NEW_FILE_PERMS, 0600L);
    curl_easy_setopt(easy, CURLOPT_NEW_DIRECTORY_PERMS, 0700L);
    if (s->send_speed > 0)
        curl_easy_setopt(easy, CURLOPT_MAX_SEND_SPEED_LARGE, s->send_speed);
    /*
     * This destination's own connection cache, also for uploads on the shared
     * multi handle: curl would otherwise reuse another destination's
     * connection to the same user@host:port, checked against that one's
     * known_hosts and authenticated with its key.
     */
    curl_easy_setopt(easy, CURLOPT_SHARE, s->share);
}

/* A blocking operation's easy handle (NULL when out of memory). */
static CURL *sftp_blocking_easy(const struct sftp *s, struct sftp_call *call, const char *url)
{
    CURL *easy = curl_easy_init();

    if (easy == NULL)
        return NULL;
    sftp_easy_setup(s, easy, call, url);
    return easy;
}

/* Once the whole source was read: does it differ from what was sealed? */
static int sftp_source_changed(struct sftp_source *src)
{
    unsigned char got[32];
    unsigned int len = sizeof(got);

    if (src->sha == NULL || src->want_sha == NULL || src->hash_checked)
        return 0;
    src->hash_checked = 1;
    if (EVP_DigestFinal_ex(src->sha, got, &len) != 1 || memcmp(got, src->want_sha, 32) != 0) {
        src->problem = SOURCE_CHANGED;
        return 1;
    }
    return 0;
}

static size_t sftp_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
    struct sftp_source *src = arg;
    size_t want = size * nitems;
    uint64_t left = src->size - src->sent;

    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return src->size == 0 && sftp_source_changed(src) ? CURL_READFUNC_ABORT : 0;
    if (src->fd < 0) {
        memcpy(buf, src->mem + src->sent, want);
        src->sent += want;
        return want;
    }
    ssize_t n;
    do
        n = read(src->fd, buf, want);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        src->problem = SOURCE_READ;
        src->read_errno = errno;
        return CURL_READFUNC_ABORT;
    }
    if (n == 0) {
        src->problem = SOURCE_SHORT;
        return CURL_READFUNC_ABORT;
    }
    src->sent += (uint64_t)n;
    if (src->sha)
        EVP_DigestUpdate(src->sha, buf, (size_t)n);
    /* Check before curl has the last bytes: a changed spool file is never renamed in. */
    if (src->sent == src->size && sftp_source_changed(src))
        return CURL_READFUNC_ABORT;
    return (size_t)n;
}

/* curl rewinds an upload it must send again on a fresh connection. */
static int sftp_seek_cb(void *arg, curl_off_t offset, int origin)
{
    struct sftp_source *src = arg;

    if (origin != SEEK_SET || offset != 0)
        return CURL_SEEKFUNC_CANTSEEK; /* only a restart from the beginning keeps the hash right */
    if (src->fd >= 0) {
        if (lseek(src->fd, 0, SEEK_SET) < 0)
            return CURL_SEEKFUNC_FAIL;
        if (src->sha && EVP_DigestInit_ex(src->sha, EVP_sha256(), NULL) != 1)
            return CURL_SEEKFUNC_FAIL;
    }
    src->sent = 0;
    src->hash_checked = 0;
    src->problem = SOURCE_FINE;
    return CURL_SEEKFUNC_OK;
}

static size_t sftp_write_cb(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct sftp_sink *sink = arg;
    size_t n = size * nmemb;

    if (sink->fd >= 0) {
        if (util_write_all(sink->fd, buf, n) < 0) {
            sink->write_errno = errno;
            return 0;
        }
    } else if (sink->received + n > sink->expect_len ||
               memcmp(sink->expect + sink->received, buf, n) != 0) {
        sink->differs = 1;
        return 0;
    }
    sink->received += n;
    return n;
}

/* Set the upload of src to temp_path, renamed to final_path once complete. */
static void sftp_setup_upload(const struct sftp *s, CURL *easy, struct sftp_call *call,
                              struct sftp_source *src, const char *temp_path,
                              const char *final_path, struct curl_slist **quote)
{
    char *url = sftp_url(&s->t, temp_path, 0);
    char *qt = sftp_quote_path(temp_path), *qf = sftp_quote_path(final_path);
    char *rm = util_printf("*rm %s", qf), *mv = util_printf("rename %s %s", qt, qf);

    sftp_easy_setup(s, easy, call, url);
    curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, sftp_read_cb);
    curl_easy_setopt(easy, CURLOPT_READDATA, src);
    curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, sftp_seek_cb);
    curl_easy_setopt(easy, CURLOPT_SEEKDATA, src);
    curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)src->size);
    curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, SFTP_UPLOAD_BUFFER);
    curl_easy_setopt(easy, CURLOPT_FTP_CREATE_MISSING_DIRS, (long)CURLFTP_CREATE_DIR);
    /* An SFTPv3 rename never replaces: remove what an earlier run may have left first. */
    *quote = curl_slist_append(*quote, rm);
    *quote = curl_slist_append(*quote, mv);
    curl_easy_setopt(easy, CURLOPT_POSTQUOTE, *quote);
    free(url);
    free(qt);
    free(qf);
    free(rm);
    free(mv);
}

/* Set a quote-only transfer: the commands run, nothing is listed or moved. */
static void sftp_setup_quote(const struct sftp *s, CURL *easy, struct sftp_call *call,
                             struct curl_slist *quote)
{
    char *url = sftp_url(&s->t, s->t.base, 1);

    sftp_easy_setup(s, easy, call, url);
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(easy, CURLOPT_QUOTE, quote);
    free(url);
}

/* The size curl saw for a NOBODY transfer (-1, "unknown", is what an empty file gives). */
static uint64_t sftp_stat_size(CURL *easy)
{
    curl_off_t cl = -1;

    curl_easy_getinfo(easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    return cl < 0 ? 0 : (uint64_t)cl;
}

/*
 * Did a failed upload get far enough to create its temporary file? The file
 * is opened at the end of curl's DO phase, and the pre-transfer time is only
 * taken once that phase is over.
 */
static int sftp_may_have_written(CURL *easy)
{
    curl_off_t pretransfer = 0;

    curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
    return pretransfer > 0;
}

/*
 * What a failed transfer means and what to do: "destination NAME
 * (sftp://…): WHAT: why; what to do" into out, and the kind of error.
 */
static enum dest_error sftp_explain(const struct sftp *s, const struct sftp_call *call, CURLcode rc,
                                    const char *what, char *out, size_t outlen)
{
    const char *why = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);
    enum dest_error kind = DEST_ERR_TRANSIENT;
    char reason[768];

    if (call->hostkey_seen && call->hostkey_match != CURLKHMATCH_OK) {
        kind = DEST_ERR_CONFIG;
        if (call->hostkey_match == CURLKHMATCH_MISMATCH)
            snprintf(reason, sizeof(reason),
                     "host key of %s:%ld is not in %s (changed: the file holds another key for "
                     "this host): refusing to connect; if the server's key was replaced on "
                     "purpose, remove its old line (ssh-keygen -R '[%s]:%ld' -f %s) and add the "
                     "new one after checking its fingerprint",
                     s->t.host, s->t.port, s->known_hosts, s->t.host, s->t.port, s->known_hosts);
        else
            snprintf(reason, sizeof(reason),
                     "host key of %s:%ld is not in %s (unknown or changed): refusing to connect; "
                     "add it (ssh-keyscan -p %ld %s >> %s) after checking its fingerprint "
                     "(ssh-keygen -lf) against the server's",
                     s->t.host, s->t.port, s->known_hosts, s->t.port, s->t.host, s->known_hosts);
    } else {
        switch (rc) {
        case CURLE_PEER_FAILED_VERIFICATION:
            kind = DEST_ERR_CONFIG;
            snprintf(reason, sizeof(reason),
                     "the host key of %s:%ld could not be verified against %s (%s): refusing to "
                     "connect",
                     s->t.host, s->t.port, s->known_hosts, why);
            break;
        case CURLE_LOGIN_DENIED:
            kind = DEST_ERR_CONFIG;
            snprintf(reason, sizeof(reason),
                     "user %s was refused with the key %s (%s): add its public key to that "
                     "user's authorized_keys on %s; the key must have no passphrase and be "
                     "ed25519 or ECDSA (with an RSA key, libssh2 1.10 signs ssh-rsa, SHA-1, "
                     "which OpenSSH 8.8 and later refuse)",
                     s->t.user, s->identity, why, s->t.host);
            break;
        case CURLE_REMOTE_ACCESS_DENIED:
            kind = DEST_ERR_CONFIG;
            snprintf(reason, sizeof(reason),
                     "permission denied (%s): let user %s create, rename and delete files under "
                     "%s on %s, or change the url",
                     why, s->t.user, s->t.base[0] ? s->t.base : "/", s->t.host);
            break;
        case CURLE_REMOTE_DISK_FULL:
            kind = DEST_ERR_CONFIG;
            snprintf(reason, sizeof(reason),
                     "the server's disk is full or the user's quota is used up (%s): free space "
                     "on %s",
                     why, s->t.host);
            break;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_NOT_BUILT_IN:
        case CURLE_URL_MALFORMAT:
        case CURLE_FAILED_INIT:
            kind = DEST_ERR_CONFIG;
            snprintf(reason, sizeof(reason),
                     "%s: this libcurl cannot do SFTP (it needs libssh2) or the url is wrong", why);
            break;
        case CURLE_QUOTE_ERROR:
            if (strstr(why, "Permission denied") != NULL) {
                kind = DEST_ERR_CONFIG;
                snprintf(reason, sizeof(reason),
                         "%s: let user %s rename and delete files under %s on %s", why, s->t.user,
                         s->t.base[0] ? s->t.base : "/", s->t.host);
            } else {
                snprintf(reason, sizeof(reason), "%s; will retry", why);
            }
            break;
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
            snprintf(reason, sizeof(reason),
                     "%s: is the SSH server on %s:%ld running and reachable? will retry", why,
                     s->t.host, s->t.port);
            break;
        case CURLE_OPERATION_TIMEDOUT:
            snprintf(reason, sizeof(reason),
                     "%s (no progress for %lds, or no connection in "
                     "%lds); will retry",
                     why, SFTP_LOW_SPEED_TIME_S, SFTP_CONNECT_TIMEOUT_S);
            break;
        case CURLE_SSH:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
            snprintf(reason, sizeof(reason),
                     "the SSH connection failed or the server closed it (%s); will retry", why);
            break;
        default:
            snprintf(reason, sizeof(reason), "%s; will retry", why);
            break;
        }
    }
    snprintf(out, outlen, "destination %s (%s): %s: %s", s->d->name, s->display, what, reason);
    return kind;
}

/* ---- put_batch: upload, rename, verify; asynchronous on curl_ev ---- */

static void job_run(struct sftp_job *job);

static void batch_complete(struct sftp_batch *b)
{
    struct sftp *s = b->s;

    if (b->prev)
        b->prev->next = b->next;
    else
        s->batches = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->done(b->arg, b->puts, b->n);
    free(b);
}

static void on_batch_soon(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sftp_batch *b = w->data;

    (void)loop;
    (void)revents;
    batch_complete(b);
}

static void job_finish(struct sftp_job *job)
{
    struct sftp_batch *b = job->batch;
    struct dest_put *put = job->put;

    if (job->src.fd >= 0)
        close(job->src.fd);
    job->src.fd = -1;
    EVP_MD_CTX_free(job->src.sha);
    job->src.sha = NULL;
    curl_slist_free_all(job->quote);
    job->quote = NULL;
    if (job->easy)
        curl_easy_cleanup(job->easy);
    job->easy = NULL;
    if (put->ok)
        log_debug("sftp object stored key=%s bytes=%" PRIu64 " dest=%s ms=%" PRId64,
                  put->remote_key, put->stored_size, b->s->d->name,
                  util_mono_ms() - job->started_ms);
    free(job->final_path);
    free(job->temp_path);
    job->final_path = job->temp_path = NULL;
    /* put_batch holds one count until every job started, so this is never inside it. */
    if (--b->pending == 0)
        batch_complete(b);
}

static void job_fail(struct sftp_job *job, enum dest_error kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void job_fail(struct sftp_job *job, enum dest_error kind, const char *fmt, ...)
{
    va_list ap;

    job->put->ok = 0;
    job->put->kind = kind;
    va_start(ap, fmt);
    vsnprintf(job->put->error, sizeof(job->put->error), fmt, ap);
    va_end(ap);
}

static void on_job_done(void *arg, CURL *easy, CURLcode rc)
{
    struct sftp_job *job = arg;
    struct sftp *s = job->batch->s;
    struct dest_put *put = job->put;
    char what[512];

    switch (job->stage) {
    case STAGE_UPLOAD:
        if (rc == CURLE_OK) {
            curl_slist_free_all(job->quote);
            job->quote = NULL;
            job->stage = STAGE_VERIFY;
            job_run(job);
            return;
        }
        if (job->src.problem != SOURCE_FINE) {
            if (job->src.problem == SOURCE_READ)
                job_fail(job, DEST_ERR_SOURCE, "destination %s: cannot read spool file %s: %s",
                         s->d->name, put->spool_path, strerror(job->src.read_errno));
            else if (job->src.problem == SOURCE_SHORT)
                job_fail(job, DEST_ERR_SOURCE,
                         "destination %s: spool file %s ended after %" PRIu64 " of %" PRIu64
                         " bytes: it changed after sealing; seal it again",
                         s->d->name, put->spool_path, job->src.sent, put->stored_size);
            else
                job_fail(job, DEST_ERR_SOURCE,
                         "destination %s: spool file %s is not what was sealed (SHA-256 "
                         "differs); seal it again",
                         s->d->name, put->spool_path);
        } else {
            snprintf(what, sizeof(what), "cannot upload %s", put->remote_key);
            put->ok = 0;
            put->kind = sftp_explain(s, &job->call, rc, what, put->error, sizeof(put->error));
        }
        if (sftp_may_have_written(easy)) {
            char *q = sftp_quote_path(job->temp_path);
            char *rm = util_printf("*rm %s", q);

            curl_slist_free_all(job->quote);
            job->quote = curl_slist_append(NULL, rm);
            free(q);
            free(rm);
            job->stage = STAGE_CLEANUP;
            job_run(job);
            return;
        }
        break;
    case STAGE_VERIFY:
        if (rc != CURLE_OK) {
            snprintf(what, sizeof(what), "cannot verify %s after upload", put->remote_key);
            put->ok = 0;
            put->kind = sftp_explain(s, &job->call, rc, what, put->error, sizeof(put->error));
        } else {
            uint64_t size = sftp_stat_size(easy);

            if (size == put->stored_size) {
                put->ok = 1;
                put->kind = DEST_OK;
                put->error[0] = '\0';
            } else {
                job_fail(job, DEST_ERR_TRANSIENT,
                         "destination %s (%s): verification of %s failed: the server holds %" PRIu64
                         " bytes, %" PRIu64 " were sent; will upload again",
                         s->d->name, s->display, put->remote_key, size, put->stored_size);
            }
        }
        break;
    case STAGE_CLEANUP:
        if (rc != CURLE_OK)
            log_debug("sftp temporary file not removed path=%s dest=%s error=%s", job->temp_path,
                      s->d->name, job->call.errbuf);
        break;
    }
    job_finish(job);
}

/* Set the job's easy handle for its stage and start it (or run it, without a loop). */
static void job_run(struct sftp_job *job)
{
    struct sftp *s = job->batch->s;

    switch (job->stage) {
    case STAGE_UPLOAD:
        sftp_setup_upload(s, job->easy, &job->call, &job->src, job->temp_path, job->final_path,
                          &job->quote);
        break;
    case STAGE_VERIFY: {
        char *url = sftp_url(&s->t, job->final_path, 0);

        sftp_easy_setup(s, job->easy, &job->call, url);
        curl_easy_setopt(job->easy, CURLOPT_NOBODY, 1L);
        free(url);
        break;
    }
    case STAGE_CLEANUP:
        sftp_setup_quote(s, job->easy, &job->call, job->quote);
        break;
    }
    if (s->curl == NULL) {
        on_job_done(job, job->easy, curl_easy_perform(job->easy));
        return;
    }
    if (curl_ev_add(s->curl, job->easy, on_job_done, job) < 0) {
        if (job->stage != STAGE_CLEANUP)
            job_fail(job, DEST_ERR_TRANSIENT, "destination %s: libcurl refused a transfer of %s",
                     s->d->name, job->put->remote_key);
        job_finish(job);
    }
}

static void job_start(struct sftp *s, struct sftp_job *job)
{
    struct dest_put *put = job->put;
    struct stat sb;

    put->ok = 0;
    put->kind = DEST_OK;
    put->error[0] = '\0';
    job->src.fd = -1;
    job->started_ms = util_mono_ms();
    if (!sftp_key_valid(put->remote_key)) {
        job_fail(job, DEST_ERR_CONFIG, "destination %s: remote key '%s' is not a relative path",
                 s->d->name, put->remote_key ? put->remote_key : "");
        job_finish(job);
        return;
    }
    job->src.fd = open(put->spool_path, O_RDONLY | O_CLOEXEC);
    if (job->src.fd < 0) {
        job_fail(job, DEST_ERR_SOURCE, "destination %s: cannot open spool file %s: %s", s->d->name,
                 put->spool_path, strerror(errno));
        job_finish(job);
        return;
    }
    if (fstat(job->src.fd, &sb) < 0) {
        job_fail(job, DEST_ERR_SOURCE, "destination %s: cannot stat spool file %s: %s", s->d->name,
                 put->spool_path, strerror(errno));
        job_finish(job);
        return;
    }
    if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != put->stored_size) {
        job_fail(job, DEST_ERR_SOURCE,
                 "destination %s: spool file %s has %jd bytes, %" PRIu64
                 " were sealed; seal it again",
                 s->d->name, put->spool_path, (intmax_t)sb.st_size, put->stored_size);
        job_finish(job);
        return;
    }
    job->src.size = put->stored_size;
    job->src.sha = EVP_MD_CTX_new();
    job->easy = curl_easy_init();
    if (job->src.sha == NULL || job->easy == NULL ||
        EVP_DigestInit_ex(job->src.sha, EVP_sha256(), NULL) != 1) {
        job_fail(job, DEST_ERR_TRANSIENT, "destination %s: out of memory starting upload of %s",
                 s->d->name, put->remote_key);
        job_finish(job);
        return;
    }
    job->src.want_sha = put->stored_sha256;
    char *temp_key = sftp_temp_key(put->remote_key, (long)getpid(), ++s->temp_counter);
    job->final_path = sftp_remote_path(s->t.base, put->remote_key);
    job->temp_path = sftp_remote_path(s->t.base, temp_key);
    free(temp_key);
    job->stage = STAGE_UPLOAD;
    job_run(job);
}

static void sftp_put_batch(struct dest *d, struct dest_put *puts, size_t n, dest_done_fn done,
                           void *arg)
{
    struct sftp *s = d->impl;
    struct sftp_batch *b = util_xcalloc(1, sizeof(*b) + n * sizeof(b->jobs[0]));

    b->s = s;
    b->puts = puts;
    b->n = n;
    b->pending = n + 1; /* one for put_batch itself, so done() waits until every job started */
    b->done = done;
    b->arg = arg;
    b->next = s->batches;
    if (b->next)
        b->next->prev = b;
    s->batches = b;
    for (size_t i = 0; i < n; i++) {
        b->jobs[i].batch = b;
        b->jobs[i].put = &puts[i];
        b->jobs[i].src.fd = -1;
    }
    for (size_t i = 0; i < n; i++)
        job_start(s, &b->jobs[i]);
    if (--b->pending > 0)
        return;
    /* Everything finished already: without a loop, report now; with one, on its next turn. */
    if (s->loop) {
        ev_timer_init(&b->soon, on_batch_soon, 0.0, 0.0);
        b->soon.data = b;
        ev_timer_start(s->loop, &b->soon);
    } else {
        batch_complete(b);
    }
}

/* ---- blocking operations ---- */

static int sftp_get(struct dest *d, const char *remote_key, int out_fd, struct cst_err *err)
{
    struct sftp *s = d->impl;
    struct sftp_call call;
    struct sftp_sink sink = {.fd = out_fd};
    char *path, *url, what[512];
    CURL *easy;
    CURLcode rc;

    if (!sftp_key_valid(remote_key))
        return cst_err_set(err, "destination %s: remote key '%s' is not a relative path", d->name,
                           remote_key ? remote_key : "");
    path = sftp_remote_path(s->t.base, remote_key);
    url = sftp_url(&s->t, path, 0);
    easy = sftp_blocking_easy(s, &call, url);
    free(url);
    if (easy == NULL) {
        free(path);
        return cst_err_set(err, "destination %s: out of memory", d->name);
    }
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sftp_write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, SFTP_DOWNLOAD_BUFFER);
    rc = curl_easy_perform(easy);
    curl_easy_cleanup(easy);
    if (rc == CURLE_OK) {
        free(path);
        return 0;
    }
    if (sink.write_errno != 0) {
        errno = sink.write_errno;
        cst_err_sys(err, "destination %s: cannot write %s to the output", d->name, remote_key);
    } else if (rc == CURLE_REMOTE_FILE_NOT_FOUND) {
        cst_err_set(err, "destination %s (%s): %s is not there (no file %s)", d->name, s->display,
                    remote_key, path);
    } else {
        snprintf(what, sizeof(what), "cannot download %s", remote_key);
        sftp_explain(s, &call, rc, what, err->msg, sizeof(err->msg));
    }
    free(path);
    return -1;
}

/* Stat path: 1 and its size, 0 when missing, -1 on error; what names the caller's doing. */
static int sftp_stat(struct sftp *s, const char *path, uint64_t *size, const char *what,
                     struct cst_err *err)
{
    struct sftp_call call;
    char *url = sftp_url(&s->t, path, 0);
    CURL *easy = sftp_blocking_easy(s, &call, url);
    CURLcode rc;
    int result;

    free(url);
    if (easy == NULL)
        return cst_err_set(err, "destination %s: out of memory", s->d->name);
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    rc = curl_easy_perform(easy);
    if (rc == CURLE_OK) {
        *size = sftp_stat_size(easy);
        result = 1;
    } else if (rc == CURLE_REMOTE_FILE_NOT_FOUND) {
        result = 0;
    } else {
        sftp_explain(s, &call, rc, what, err->msg, sizeof(err->msg));
        result = -1;
    }
    curl_easy_cleanup(easy);
    return result;
}

static int sftp_exists(struct dest *d, const char *remote_key, uint64_t *size, struct cst_err *err)
{
    struct sftp *s = d->impl;
    char what[512];
    int rc;

    if (!sftp_key_valid(remote_key))
        return cst_err_set(err, "destination %s: remote key '%s' is not a relative path", d->name,
                           remote_key ? remote_key : "");
    char *path = sftp_remote_path(s->t.base, remote_key);

    snprintf(what, sizeof(what), "cannot look up %s", remote_key);
    rc = sftp_stat(s, path, size, what, err);
    free(path);
    return rc;
}

/* Run one quote command ("rm", "rmdir", ...) on path, blocking. */
static CURLcode sftp_run_quote(struct sftp *s, const char *cmd, const char *path,
                               struct sftp_call *call)
{
    char *q = sftp_quote_path(path);
    char *line = util_printf("%s %s", cmd, q);
    struct curl_slist *quote = curl_slist_append(NULL, line);
    CURL *easy = curl_easy_init();
    CURLcode rc = CURLE_OUT_OF_MEMORY;

    free(q);
    free(line);
    if (easy && quote) {
        sftp_setup_quote(s, easy, call, quote);
        rc = curl_easy_perform(easy);
    }
    if (easy)
        curl_easy_cleanup(easy);
    curl_slist_free_all(quote);
    return rc;
}

static int sftp_remove(struct dest *d, const char *remote_key, struct cst_err *err)
{
    struct sftp *s = d->impl;
    struct sftp_call call;
    char what[512];
    uint64_t size;
    int rc = -1;

    if (!sftp_key_valid(remote_key))
        return cst_err_set(err, "destination %s: remote key '%s' is not a relative path", d->name,
                           remote_key ? remote_key : "");
    char *path = sftp_remote_path(s->t.base, remote_key);
    CURLcode cc = sftp_run_quote(s, "rm", path, &call);

    snprintf(what, sizeof(what), "cannot remove %s", remote_key);
    if (cc == CURLE_OK) {
        rc = 0;
    } else if (cc == CURLE_QUOTE_ERROR) {
        /* Already gone is as good as removed (a retried prune, say). */
        struct cst_err serr;
        int there = sftp_stat(s, path, &size, what, &serr);

        if (there == 0)
            rc = 0;
        else
            sftp_explain(s, &call, cc, what, err->msg, sizeof(err->msg));
    } else {
        sftp_explain(s, &call, cc, what, err->msg, sizeof(err->msg));
    }
    free(path);
    return rc;
}

/* A folder still to list, depth first. */
struct sftp_pending_dir {
    char *key; /* relative, with its trailing slash; "" for the base */
    struct sftp_pending_dir *next;
};

struct sftp_lister {
    const char *dir_key;
    const char *filter; /* name prefix, at the top folder only */
    char line[8192];
    size_t len;
    int overlong;
    int (*cb)(void *arg, const char *key, uint64_t size);
    void *arg;
    int stopped;
    struct sftp_pending_dir **stack;
};

static int lister_line(struct sftp_lister *l)
{
    const char *name;
    char type;
    uint64_t size;

    l->line[l->len] = '\0';
    if (l->len > 0 && l->line[l->len - 1] == '\r')
        l->line[l->len - 1] = '\0';
    if (sftp_parse_long_entry(l->line, &type, &size, &name) < 0)
        return 0;
    /* Dot names: ".", "..", and the temporary files of uploads. */
    if (name[0] == '.' || strncmp(name, l->filter, strlen(l->filter)) != 0)
        return 0;
    if (type == 'd') {
        struct sftp_pending_dir *pd = util_xmalloc(sizeof(*pd));

        pd->key = util_printf("%s%s/", l->dir_key, name);
        pd->next = *l->stack;
        *l->stack = pd;
        return 0;
    }
    if (type != '-')
        return 0;
    char *key = util_printf("%s%s", l->dir_key, name);
    int stop = l->cb(l->arg, key, size);

    free(key);
    return stop;
}

static size_t sftp_list_cb(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct sftp_lister *l = arg;
    size_t n = size * nmemb;

    for (size_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            if (!l->overlong && lister_line(l) != 0) {
                l->stopped = 1;
                return 0;
            }
            l->len = 0;
            l->overlong = 0;
        } else if (l->len + 1 < sizeof(l->line)) {
            l->line[l->len++] = buf[i];
        } else {
            l->overlong = 1;
        }
    }
    return n;
}

/* List one folder, pushing its subfolders; 1 when the callback stopped, -1 on error. */
static int sftp_list_dir(struct sftp *s, const char *dir_key, const char *filter,
                         struct sftp_pending_dir **stack,
                         int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                         struct cst_err *err)
{
    struct sftp_call call;
    struct sftp_lister *l = util_xcalloc(1, sizeof(*l));
    char *path = sftp_remote_path(s->t.base, dir_key);
    char *url = sftp_url(&s->t, path, 1);
    CURL *easy = sftp_blocking_easy(s, &call, url);
    char what[512];
    int rc = 0;

    free(url);
    if (easy == NULL) {
        free(l);
        free(path);
        return cst_err_set(err, "destination %s: out of memory", s->d->name);
    }
    l->dir_key = dir_key;
    l->filter = filter;
    l->cb = cb;
    l->arg = arg;
    l->stack = stack;
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sftp_list_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, l);
    CURLcode cc = curl_easy_perform(easy);

    if (cc == CURLE_OK && l->len > 0 && !l->overlong && lister_line(l) != 0)
        l->stopped = 1;
    if (l->stopped) {
        rc = 1;
    } else if (cc == CURLE_REMOTE_FILE_NOT_FOUND) {
        rc = 0; /* nothing there (yet) */
    } else if (cc != CURLE_OK) {
        snprintf(what, sizeof(what), "cannot list %s", path);
        sftp_explain(s, &call, cc, what, err->msg, sizeof(err->msg));
        rc = -1;
    }
    curl_easy_cleanup(easy);
    free(path);
    free(l);
    return rc;
}

static int sftp_list(struct dest *d, const char *prefix,
                     int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                     struct cst_err *err)
{
    struct sftp *s = d->impl;
    struct sftp_pending_dir *stack = NULL;
    const char *slash;
    char *top;
    int rc;

    if (prefix == NULL)
        prefix = "";
    slash = strrchr(prefix, '/');
    top = util_printf("%.*s", slash ? (int)(slash - prefix + 1) : 0, prefix);
    if (top[0] != '\0') {
        char *dir = util_printf("%.*s", (int)strlen(top) - 1, top);

        if (!sftp_key_valid(dir)) {
            free(dir);
            free(top);
            return cst_err_set(err, "destination %s: list prefix '%s' is not a relative path",
                               d->name, prefix);
        }
        free(dir);
    }
    rc = sftp_list_dir(s, top, slash ? slash + 1 : prefix, &stack, cb, arg, err);
    free(top);
    while (rc == 0 && stack) {
        struct sftp_pending_dir *pd = stack;

        stack = pd->next;
        rc = sftp_list_dir(s, pd->key, "", &stack, cb, arg, err);
        free(pd->key);
        free(pd);
    }
    while (stack) {
        struct sftp_pending_dir *pd = stack;

        stack = pd->next;
        free(pd->key);
        free(pd);
    }
    return rc < 0 ? -1 : 0;
}

/* ---- probe: what `custodian doctor` shows for this destination ---- */

static struct dest_check *probe_add(struct dest_probe *out, const char *name, int ok,
                                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static struct dest_check *probe_add(struct dest_probe *out, const char *name, int ok,
                                    const char *fmt, ...)
{
    va_list ap;

    if (out->n >= sizeof(out->checks) / sizeof(out->checks[0]))
        return NULL;
    struct dest_check *c = &out->checks[out->n++];

    snprintf(c->name, sizeof(c->name), "%s", name);
    c->ok = ok;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    return c;
}

static void probe_skip(struct dest_probe *out, const char *const *names, size_t n, const char *why)
{
    for (size_t i = 0; i < n; i++)
        probe_add(out, names[i], 0, "not checked: %s", why);
}

static int sftp_probe(struct dest *d, struct dest_probe *out)
{
    static const char *const names[] = {"reachable",   "host key verified", "authenticated",
                                        "write probe", "read probe",        "delete probe"};
    struct sftp *s = d->impl;
    struct sftp_call call;
    struct cst_err err;
    char what[256], msg[CST_ERR_SIZE];
    unsigned char rnd[8];
    char rnd_hex[17];
    unsigned char *payload = NULL;
    char *key = NULL, *temp_key = NULL, *final_path = NULL, *temp_path = NULL;
    CURL *easy = NULL;
    CURLcode rc;
    uint64_t size = 0;
    int64_t t0;

    memset(out, 0, sizeof(*out));
    /* 1-3: a fresh connection, so that the host key really is checked now. */
    char *url = sftp_url(&s->t, s->t.base, 1);
    easy = sftp_blocking_easy(s, &call, url);
    free(url);
    if (easy == NULL) {
        probe_add(out, names[0], 0, "out of memory");
        probe_skip(out, names + 1, 5, "out of memory");
        return -1;
    }
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
    t0 = util_mono_ms();
    rc = curl_easy_perform(easy);
    curl_easy_cleanup(easy);
    easy = NULL;
    snprintf(what, sizeof(what), "cannot connect");
    sftp_explain(s, &call, rc, what, msg, sizeof(msg));
    if (!call.hostkey_seen) {
        probe_add(out, names[0], 0, "%s", msg);
        probe_skip(out, names + 1, 5, "the server was not reached");
        return -1;
    }
    probe_add(out, names[0], 1, "%s:%ld answered and completed the SSH handshake in %" PRId64 " ms",
              s->t.host, s->t.port, util_mono_ms() - t0);
    if (call.hostkey_match != CURLKHMATCH_OK) {
        probe_add(out, names[1], 0, "%s", msg);
        probe_skip(out, names + 2, 4, "the host key was refused");
        return -1;
    }
    probe_add(out, names[1], 1, "the server's key matches %s", s->known_hosts);
    if (rc != CURLE_OK) {
        probe_add(out, names[2], 0, "%s", msg);
        probe_skip(out, names + 3, 3, "not authenticated");
        return -1;
    }
    probe_add(out, names[2], 1, "as user %s with key %s", s->t.user, s->identity);

    /* 4: write a probe object through temporary name and rename, as objects are. */
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        probe_add(out, names[3], 0, "getrandom failed: %s", strerror(errno));
        probe_skip(out, names + 4, 2, "nothing was written");
        return -1;
    }
    util_hex(rnd, sizeof(rnd), rnd_hex);
    payload = util_xmalloc(SFTP_PROBE_BYTES);
    for (size_t i = 0; i < SFTP_PROBE_BYTES; i++)
        payload[i] = (unsigned char)(rnd[i % sizeof(rnd)] ^ (i * 131u >> 3));
    key = util_printf(SFTP_PROBE_FOLDER "/%s", rnd_hex);
    temp_key = sftp_temp_key(key, (long)getpid(), ++s->temp_counter);
    final_path = sftp_remote_path(s->t.base, key);
    temp_path = sftp_remote_path(s->t.base, temp_key);
    struct sftp_source src = {.fd = -1, .mem = payload, .size = SFTP_PROBE_BYTES};
    struct curl_slist *quote = NULL;
    int failed = 1;

    easy = curl_easy_init();
    if (easy == NULL) {
        probe_add(out, names[3], 0, "out of memory");
        probe_skip(out, names + 4, 2, "nothing was written");
        goto out;
    }
    sftp_setup_upload(s, easy, &call, &src, temp_path, final_path, &quote);
    rc = curl_easy_perform(easy);
    int written = sftp_may_have_written(easy);
    curl_easy_cleanup(easy);
    curl_slist_free_all(quote);
    if (rc != CURLE_OK) {
        snprintf(what, sizeof(what), "cannot write %s", key);
        sftp_explain(s, &call, rc, what, msg, sizeof(msg));
        probe_add(out, names[3], 0, "%s", msg);
        probe_skip(out, names + 4, 2, "nothing was written");
        if (written)
            sftp_run_quote(s, "*rm", temp_path, &call);
        goto out;
    }
    snprintf(what, sizeof(what), "cannot look up %s after writing it", key);
    int there = sftp_stat(s, final_path, &size, what, &err);
    if (there != 1 || size != SFTP_PROBE_BYTES) {
        if (there == 1)
            snprintf(err.msg, sizeof(err.msg), "%s holds %" PRIu64 " bytes, %u were written",
                     final_path, size, SFTP_PROBE_BYTES);
        else if (there == 0)
            snprintf(err.msg, sizeof(err.msg), "%s is missing after its rename", final_path);
        probe_add(out, names[3], 0, "%s", err.msg);
        probe_skip(out, names + 4, 1, "the write failed");
    } else {
        probe_add(out, names[3], 1, "wrote %u bytes to %s (temporary file, then rename)",
                  SFTP_PROBE_BYTES, final_path);
        /* 5: read it back. */
        struct sftp_sink sink = {.fd = -1, .expect = payload, .expect_len = SFTP_PROBE_BYTES};
        char *get_url = sftp_url(&s->t, final_path, 0);

        easy = sftp_blocking_easy(s, &call, get_url);
        free(get_url);
        rc = CURLE_OUT_OF_MEMORY;
        if (easy) {
            curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, sftp_write_cb);
            curl_easy_setopt(easy, CURLOPT_WRITEDATA, &sink);
            rc = curl_easy_perform(easy);
            curl_easy_cleanup(easy);
        }
        if (sink.differs || (rc == CURLE_OK && sink.received != SFTP_PROBE_BYTES)) {
            probe_add(out, names[4], 0,
                      "%s read back differs from what was written (%" PRIu64
                      " bytes matched): the server or the path does not store data faithfully",
                      final_path, sink.received);
        } else if (rc != CURLE_OK) {
            snprintf(what, sizeof(what), "cannot read %s back", key);
            sftp_explain(s, &call, rc, what, msg, sizeof(msg));
            probe_add(out, names[4], 0, "%s", msg);
        } else {
            probe_add(out, names[4], 1, "read %u bytes back, equal to what was written",
                      SFTP_PROBE_BYTES);
            failed = 0;
        }
    }
    /* 6: delete it, and check it is gone. */
    if (sftp_remove(d, key, &err) < 0) {
        probe_add(out, names[5], 0, "%s", err.msg);
        failed = 1;
    } else if ((there = sftp_stat(s, final_path, &size, "cannot look up the probe", &err)) != 0) {
        probe_add(out, names[5], 0, "%s",
                  there < 0 ? err.msg : "the probe object is still there after its removal");
        failed = 1;
    } else {
        probe_add(out, names[5], 1, "removed %s", final_path);
    }
    char *probe_dir = sftp_remote_path(s->t.base, SFTP_PROBE_FOLDER);
    sftp_run_quote(s, "*rmdir", probe_dir, &call);
    free(probe_dir);
out:
    free(payload);
    free(key);
    free(temp_key);
    free(final_path);
    free(temp_path);
    return failed ? -1 : 0;
}

/* ---- construction ---- */

static void sftp_free(struct dest *d)
{
    struct sftp *s = d->impl;

    if (s == NULL)
        return;
    /* Uploads still in flight: curl_ev_free() has already dropped their transfers. */
    while (s->batches) {
        struct sftp_batch *b = s->batches;

        s->batches = b->next;
        if (s->loop)
            ev_timer_stop(s->loop, &b->soon);
        for (size_t i = 0; i < b->n; i++) {
            struct sftp_job *job = &b->jobs[i];

            if (job->src.fd >= 0)
                close(job->src.fd);
            EVP_MD_CTX_free(job->src.sha);
            curl_slist_free_all(job->quote);
            if (job->easy)
                curl_easy_cleanup(job->easy);
            free(job->final_path);
            free(job->temp_path);
        }
        free(b);
    }
    if (s->share)
        curl_share_cleanup(s->share);
    sftp_target_clear(&s->t);
    free(s->display);
    free(s->identity);
    free(s->identity_pub);
    free(s->known_hosts);
    free(s);
}

static const struct dest_ops dest_sftp_ops = {
    .type = "sftp",
    .put_batch = sftp_put_batch,
    .get = sftp_get,
    .free = sftp_free,
    .exists = sftp_exists,
    .remove = sftp_remove,
    .list = sftp_list,
    .probe = sftp_probe,
};

/* The private key: a readable regular file nobody else may read, as ssh insists. */
static int check_identity(const char *name, const char *path, struct cst_err *err)
{
    struct stat sb;

    if (path == NULL || path[0] == '\0')
        return cst_err_set(err,
                           "destination %s: identity is required (key authentication only): set "
                           "identity = /path/to/private_key (ssh-keygen -t ed25519 -N '' -f "
                           "FILE makes one)",
                           name);
    if (stat(path, &sb) < 0)
        return cst_err_sys(err, "destination %s: identity %s", name, path);
    if (!S_ISREG(sb.st_mode))
        return cst_err_set(err, "destination %s: identity %s is not a regular file", name, path);
    if (sb.st_mode & 077)
        return cst_err_set(err,
                           "destination %s: permissions %04o for identity %s are too open: a "
                           "private key must not be accessible by others; run chmod 600 %s",
                           name, (unsigned)(sb.st_mode & 07777), path, path);
    if (access(path, R_OK) < 0)
        return cst_err_sys(err, "destination %s: identity %s is not readable", name, path);
    return 0;
}

struct dest *dest_sftp_new(const struct dest_sftp_config *c, const struct dest_env *env,
                           struct cst_err *err)
{
    const char *name = c->name ? c->name : "sftp";
    struct sftp *s;
    struct dest *d;

    s = util_xcalloc(1, sizeof(*s));
    if (sftp_parse_url(c->url, &s->t, err) < 0 || s->t.host == NULL) {
        cst_err_wrap(err, "destination %s", name);
        free(s);
        return NULL;
    }
    if (check_identity(name, c->identity, err) < 0)
        goto fail;
    if (c->known_hosts == NULL || c->known_hosts[0] == '\0') {
        cst_err_set(err,
                    "destination %s: known_hosts is required: the server's host key is always "
                    "checked. Make the file with ssh-keyscan -p %ld %s > FILE, compare its "
                    "fingerprint (ssh-keygen -lf FILE) with the server's, then set "
                    "known_hosts = FILE",
                    name, s->t.port, s->t.host);
        goto fail;
    }
    if (access(c->known_hosts, R_OK) < 0) {
        cst_err_sys(err, "destination %s: known_hosts %s cannot be read", name, c->known_hosts);
        goto fail;
    }
    s->identity = util_xstrdup(c->identity);
    s->known_hosts = util_xstrdup(c->known_hosts);
    char *pub = util_printf("%s.pub", c->identity);
    if (access(pub, R_OK) == 0)
        s->identity_pub = pub;
    else
        free(pub);
    s->display = util_printf(strchr(s->t.host, ':') ? "sftp://%s@[%s]:%ld%s" : "sftp://%s@%s:%ld%s",
                             s->t.user, s->t.host, s->t.port, s->t.base[0] ? s->t.base : "/");
    int inflight = c->max_inflight > 0 ? c->max_inflight : SFTP_DEFAULT_INFLIGHT;
    if (c->bandwidth_kbps > 0) {
        /* kilobits per second, shared by the uploads that may run at once */
        s->send_speed = (curl_off_t)c->bandwidth_kbps * 125 / inflight;
        if (s->send_speed < 1)
            s->send_speed = 1;
    }
    if (env) {
        s->loop = env->loop;
        s->curl = env->loop ? env->curl : NULL;
    }
    s->share = curl_share_init();
    if (s->share == NULL ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK ||
        curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK) {
        cst_err_set(err, "destination %s: libcurl cannot share connections", name);
        goto fail;
    }
    d = util_xcalloc(1, sizeof(*d));
    d->ops = &dest_sftp_ops;
    d->name = util_xstrdup(name);
    d->max_batch = 1;
    d->max_concurrent = (size_t)inflight;
    d->impl = s;
    s->d = d;
    return d;
fail:
    if (s->share)
        curl_share_cleanup(s->share);
    sftp_target_clear(&s->t);
    free(s->display);
    free(s->identity);
    free(s->identity_pub);
    free(s->known_hosts);
    free(s);
    return NULL;
}
