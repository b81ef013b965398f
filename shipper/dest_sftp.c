/*
 * dest_sftp.c - the `sftp` destination: an SSH server, through libssh2
 * directly (libcurl cannot send fsync@openssh.com). It supplies store.h's
 * primitives; store.c runs the sequence.
 *
 * Connections: blocking libssh2 sessions, one per destination thread at
 * most (max_inflight), kept in a small pool and reused; the blocking
 * operations (get, exists, list, remove, probe) take one from the same
 * pool, from any thread. A session that fails at the connection level is
 * dropped, and an operation that failed on a reused (possibly stale)
 * session is tried once more on a fresh one.
 *
 * Trust: the server's host key is always checked against the configured
 * known_hosts file (an unknown or changed key is refused, never learned),
 * and only key authentication is offered.
 *
 * write   into ".tmp.<pid>-<start>.<n>.<name>" next to the final name
 *         (opened O_EXCL, 0600), hashed as it is read from the spool
 *         (store_source), then fsync@openssh.com, close, and a rename that
 *         never replaces: OpenSSH's SFTPv3 rename is link(2)+unlink(2), and
 *         libssh2 1.10 (Debian 12) has no posix-rename@openssh.com. When the
 *         final name is taken (content-addressed: an earlier attempt's copy),
 *         the temporary file is kept and store.c verifies the existing one.
 * settle  keep: the temporary file is removed. Replace (the existing copy is
 *         damaged): the damaged one is moved aside first, the new one renamed
 *         in, the damaged one removed; the name is never emptied by an rm
 *         before a rename, and never holds anything but a verified object or
 *         the damaged one.
 * sync    each folder an object was renamed into: opened as a file and
 *         fsync@openssh.com'd (sftp-server opens a folder like a file, and
 *         fsync(2) of a folder makes its entries durable), once per batch.
 * verify  store.c reads every copy back and hashes it, whole up to the
 *         destination's read-back limit and by sampled ranges above it.
 *
 * The base folder is never created: a missing one is unreachable (copies
 * wait); folders below it are created as needed. Start-up cleanup removes
 * temporary files whose owning process has exited, and only those.
 */
#include "dest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libssh2.h>
#include <libssh2_sftp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "shipper/store.h"

#define SFTP_DEFAULT_PORT 22
#define SFTP_DEFAULT_INFLIGHT 4
#define SFTP_CONNECT_TIMEOUT_MS 10000
#define SFTP_IO_TIMEOUT_MS 60000 /* no answer for this long: the session is given up */
#define SFTP_BUF (256u * 1024)   /* large writes and reads let libssh2 pipeline */
#define SFTP_DEFAULT_READBACK (256ull << 20)

/* What the url says: sftp://user@host:port/base. */
struct sftp_target {
    char *user;
    char *host; /* an IPv6 literal without its brackets */
    long port;
    char *base; /* absolute, without a trailing slash: "" is the root */
};

/* One SSH session with its SFTP channel. */
struct conn {
    int fd;
    LIBSSH2_SESSION *ssh;
    LIBSSH2_SFTP *sftp;
    int reused;                       /* taken from the pool: it may have gone stale while idle */
    int broken;                       /* failed at the connection level: never reused */
    struct conn *next;                /* idle list */
    struct conn *all_prev, *all_next; /* every open session, for stop() */
};

struct sftp {
    struct dest *d;
    struct sftp_target t;
    char *display; /* sftp://user@host:port/base, for messages */
    char *identity, *identity_pub, *known_hosts;
    char *hostkey_pref; /* host key algorithms, those known_hosts holds for the host first */
    int max_idle;
    pthread_mutex_t lock;
    struct conn *idle;
    int n_idle;
    struct conn *all;
    int stopping;
    char **known_dirs; /* folders (paths) known to exist */
    size_t n_known_dirs;
};

/* How far a connection attempt got (for doctor). */
enum conn_stage { STAGE_NONE = 0, STAGE_REACHED, STAGE_HOSTKEY, STAGE_AUTH, STAGE_SFTP };

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

/* ---- errors ---- */

static const char *fx_name(unsigned long fx)
{
    switch (fx) {
    case LIBSSH2_FX_OK:
        return "ok";
    case LIBSSH2_FX_EOF:
        return "end of file";
    case LIBSSH2_FX_NO_SUCH_FILE:
        return "no such file";
    case LIBSSH2_FX_PERMISSION_DENIED:
        return "permission denied";
    case LIBSSH2_FX_FAILURE:
        return "failure";
    case LIBSSH2_FX_BAD_MESSAGE:
        return "bad message";
    case LIBSSH2_FX_NO_CONNECTION:
        return "no connection";
    case LIBSSH2_FX_CONNECTION_LOST:
        return "connection lost";
    case LIBSSH2_FX_OP_UNSUPPORTED:
        return "operation not supported by the server";
    case LIBSSH2_FX_NO_SUCH_PATH:
        return "no such path";
    case LIBSSH2_FX_FILE_ALREADY_EXISTS:
        return "file already exists";
    case LIBSSH2_FX_WRITE_PROTECT:
        return "write protected";
    case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
        return "no space left on the server's disk";
    case LIBSSH2_FX_QUOTA_EXCEEDED:
        return "quota exceeded";
    case LIBSSH2_FX_DIR_NOT_EMPTY:
        return "folder not empty";
    case LIBSSH2_FX_NOT_A_DIRECTORY:
        return "not a folder";
    }
    return "error";
}

/* The SFTP status of the last failed call on c, or -1 when the failure was not one. */
static long last_fx(struct conn *c)
{
    if (libssh2_session_last_errno(c->ssh) != LIBSSH2_ERROR_SFTP_PROTOCOL)
        return -1;
    return (long)libssh2_sftp_last_error(c->sftp);
}

/*
 * What a failure means: the kind, and "destination NAME (URL): WHAT: why; what to do" into
 * e. fx is the SFTP status, or -1 when the failure was below SFTP (then code and msg are
 * libssh2's), which breaks the session.
 */
static int sftp_explain(const struct sftp *s, long fx, int code, const char *msg, const char *what,
                        struct store_err *e)
{
    enum dest_error kind = DEST_ERR_TRANSIENT;
    char reason[768];

    if (fx < 0) {
        snprintf(reason, sizeof(reason),
                 "the SSH connection failed or the server closed it (%s, libssh2 error %d); will "
                 "retry",
                 msg && msg[0] ? msg : "no detail", code);
    } else if (fx == LIBSSH2_FX_PERMISSION_DENIED || fx == LIBSSH2_FX_WRITE_PROTECT) {
        kind = DEST_ERR_CONFIG;
        snprintf(reason, sizeof(reason),
                 "%s: let user %s create, rename and delete files under %s on %s, or change the "
                 "url",
                 fx_name((unsigned long)fx), s->t.user, s->t.base[0] ? s->t.base : "/", s->t.host);
    } else if (fx == LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM || fx == LIBSSH2_FX_QUOTA_EXCEEDED) {
        kind = DEST_ERR_CONFIG;
        snprintf(reason, sizeof(reason), "%s: free space on %s", fx_name((unsigned long)fx),
                 s->t.host);
    } else if (fx == LIBSSH2_FX_OP_UNSUPPORTED) {
        kind = DEST_ERR_CONFIG;
        snprintf(reason, sizeof(reason),
                 "%s: custodian needs an OpenSSH sftp-server (fsync@openssh.com) to make copies "
                 "durable",
                 fx_name((unsigned long)fx));
    } else {
        snprintf(reason, sizeof(reason), "%s; will retry", fx_name((unsigned long)fx));
    }
    return store_fail(e, kind, "destination %s (%s): %s: %s", s->d->name, s->display, what, reason);
}

/* sftp_explain for the last failed call on c. */
static int sftp_fail(struct sftp *s, struct conn *c, const char *what, struct store_err *e)
{
    long fx = last_fx(c);
    char *msg = NULL;
    int code = 0;

    if (fx < 0) {
        code = libssh2_session_last_error(c->ssh, &msg, NULL, 0);
        c->broken = 1;
    }
    return sftp_explain(s, fx, code, msg, what, e);
}

/* ---- sessions ---- */

static pthread_once_t ssh_once = PTHREAD_ONCE_INIT;
static int ssh_init_rc;

static void ssh_init(void)
{
    /* libssh2_init is not thread-safe: once, before any session. */
    ssh_init_rc = libssh2_init(0);
}

/* Host key algorithms: those known_hosts holds for this host first (as OpenSSH orders
 * them), so that the server offers the key the file can check. */
static char *hostkey_pref(const struct sftp_target *t, const char *known_hosts)
{
    static const struct {
        int type;
        const char *names;
    } kinds[] = {
        {LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519"},
        {LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256"},
        {LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384"},
        {LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521"},
        {LIBSSH2_KNOWNHOST_KEY_SSHRSA, "rsa-sha2-512,rsa-sha2-256,ssh-rsa"},
    };
    int have[sizeof(kinds) / sizeof(kinds[0])] = {0};
    LIBSSH2_SESSION *ssh = libssh2_session_init();
    LIBSSH2_KNOWNHOSTS *kh = ssh ? libssh2_knownhost_init(ssh) : NULL;
    struct libssh2_knownhost *e = NULL;
    char *bracketed = util_printf("[%s]:%ld", t->host, t->port), *out = util_xstrdup("");

    if (kh && libssh2_knownhost_readfile(kh, known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) >= 0) {
        while (libssh2_knownhost_get(kh, &e, e) == 0) {
            if (e->name == NULL || (strcmp(e->name, bracketed) != 0 &&
                                    !(t->port == 22 && strcmp(e->name, t->host) == 0)))
                continue;
            for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
                if ((e->typemask & LIBSSH2_KNOWNHOST_KEY_MASK) == kinds[i].type)
                    have[i] = 1;
        }
    }
    /* Only names this libssh2 knows: 1.10's method_pref mangles a list it must trim. */
    const char **algs = NULL;
    int n_algs = ssh ? libssh2_session_supported_algs(ssh, LIBSSH2_METHOD_HOSTKEY, &algs) : 0;

    for (int pass = 1; pass >= 0; pass--)
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
            if (have[i] != pass)
                continue;
            char *names = util_xstrdup(kinds[i].names), *save = NULL;

            for (char *name = strtok_r(names, ",", &save); name;
                 name = strtok_r(NULL, ",", &save)) {
                int known = 0;

                for (int k = 0; k < n_algs && !known; k++)
                    known = strcmp(algs[k], name) == 0;
                if (!known)
                    continue;
                char *more = util_printf("%s%s%s", out, out[0] ? "," : "", name);

                free(out);
                out = more;
            }
            free(names);
        }
    if (algs)
        libssh2_free(ssh, algs);
    if (kh)
        libssh2_knownhost_free(kh);
    if (ssh)
        libssh2_session_free(ssh);
    free(bracketed);
    return out;
}

static int tcp_connect(struct sftp *s, struct store_err *e)
{
    struct addrinfo hints, *res = NULL, *ai;
    char port[16];
    int fd = -1, rc, saved = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(port, sizeof(port), "%ld", s->t.port);
    rc = getaddrinfo(s->t.host, port, &hints, &res);
    if (rc != 0)
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s (%s): cannot resolve %s: %s; will retry", s->d->name,
                          s->display, s->t.host, gai_strerror(rc));
    for (ai = res; ai; ai = ai->ai_next) {
        struct pollfd pfd;
        socklen_t len = sizeof(saved);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            saved = errno;
            close(fd);
            fd = -1;
            continue;
        }
        pfd = (struct pollfd){.fd = fd, .events = POLLOUT};
        rc = poll(&pfd, 1, SFTP_CONNECT_TIMEOUT_MS);
        if (rc <= 0) {
            saved = rc == 0 ? ETIMEDOUT : errno;
        } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &saved, &len) == 0 && saved == 0) {
            int one = 1;

            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s (%s): cannot connect to %s:%ld: %s: is the SSH server "
                          "running and reachable? will retry",
                          s->d->name, s->display, s->t.host, s->t.port, strerror(saved));
    return fd;
}

static void conn_close(struct sftp *s, struct conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else if (s->all == c)
        s->all = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    pthread_mutex_unlock(&s->lock);
    /* A broken session: its socket is shut first, so that what follows fails at once
     * rather than wait for a dead peer. libssh2_sftp_shutdown still runs: it frees what
     * the SFTP layer queued (packets, abandoned requests), which freeing the session
     * alone would leak. */
    if (c->broken && c->fd >= 0)
        shutdown(c->fd, SHUT_RDWR);
    if (c->sftp)
        libssh2_sftp_shutdown(c->sftp);
    if (c->ssh) {
        if (!c->broken)
            libssh2_session_disconnect(c->ssh, "custodian is done");
        libssh2_session_free(c->ssh);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

/* What libssh2_knownhost_checkp's answer means: 0 for a match, else -1 (CONFIG). Never
 * learn or replace a key: only an exact match in the file is good enough. */
static int hostkey_verdict(const struct sftp *s, int check, struct store_err *e)
{
    if (check == LIBSSH2_KNOWNHOST_CHECK_MATCH)
        return 0;
    if (check == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
        return store_fail(e, DEST_ERR_CONFIG,
                          "destination %s (%s): host key of %s:%ld is not in %s (changed: the "
                          "file holds another key for this host): refusing to connect; if the "
                          "server's key was replaced on purpose, remove its old line "
                          "(ssh-keygen -R '[%s]:%ld' -f %s) and add the new one after checking "
                          "its fingerprint",
                          s->d->name, s->display, s->t.host, s->t.port, s->known_hosts, s->t.host,
                          s->t.port, s->known_hosts);
    return store_fail(e, DEST_ERR_CONFIG,
                      "destination %s (%s): host key of %s:%ld is not in %s (unknown or "
                      "changed): refusing to connect; add it (ssh-keyscan -p %ld %s >> %s) after "
                      "checking its fingerprint (ssh-keygen -lf) against the server's",
                      s->d->name, s->display, s->t.host, s->t.port, s->known_hosts, s->t.port,
                      s->t.host, s->known_hosts);
}

/* The host key against known_hosts: 0 matches, -1 (CONFIG) with what to do. */
static int check_hostkey(struct sftp *s, struct conn *c, struct store_err *e)
{
    LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(c->ssh);
    size_t len = 0;
    int type = 0, mask, rc;
    const char *key = libssh2_session_hostkey(c->ssh, &len, &type);

    if (kh == NULL || key == NULL) {
        if (kh)
            libssh2_knownhost_free(kh);
        return store_fail(e, DEST_ERR_TRANSIENT,
                          "destination %s (%s): the server sent no host key; will retry",
                          s->d->name, s->display);
    }
    if (libssh2_knownhost_readfile(kh, s->known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
        libssh2_knownhost_free(kh);
        return store_fail(e, DEST_ERR_CONFIG,
                          "destination %s (%s): cannot read known_hosts %s (not in OpenSSH "
                          "format?)",
                          s->d->name, s->display, s->known_hosts);
    }
    switch (type) {
    case LIBSSH2_HOSTKEY_TYPE_RSA:
        mask = LIBSSH2_KNOWNHOST_KEY_SSHRSA;
        break;
    case LIBSSH2_HOSTKEY_TYPE_DSS:
        mask = LIBSSH2_KNOWNHOST_KEY_SSHDSS;
        break;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
        mask = LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
        break;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
        mask = LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
        break;
    case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
        mask = LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
        break;
    case LIBSSH2_HOSTKEY_TYPE_ED25519:
        mask = LIBSSH2_KNOWNHOST_KEY_ED25519;
        break;
    default:
        mask = LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
        break;
    }
    rc = libssh2_knownhost_checkp(
        kh, s->t.host, (int)s->t.port, key, len,
        LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | mask, NULL);
    libssh2_knownhost_free(kh);
    return hostkey_verdict(s, rc, e);
}

/* A new session: connect, handshake, host key, key authentication, SFTP. */
static struct conn *conn_open(struct sftp *s, enum conn_stage *stage, struct store_err *e)
{
    struct conn *c = util_xcalloc(1, sizeof(*c));
    char *msg = NULL;

    *stage = STAGE_NONE;
    pthread_once(&ssh_once, ssh_init);
    if (ssh_init_rc != 0) {
        free(c);
        store_fail(e, DEST_ERR_CONFIG, "destination %s: libssh2 failed to initialise", s->d->name);
        return NULL;
    }
    c->fd = tcp_connect(s, e);
    if (c->fd < 0) {
        free(c);
        return NULL;
    }
    c->ssh = libssh2_session_init();
    if (c->ssh == NULL) {
        store_fail(e, DEST_ERR_TRANSIENT, "destination %s: out of memory", s->d->name);
        goto fail;
    }
    pthread_mutex_lock(&s->lock);
    c->all_next = s->all;
    if (c->all_next)
        c->all_next->all_prev = c;
    s->all = c;
    if (s->stopping)
        shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->lock);
    libssh2_session_set_blocking(c->ssh, 1);
    libssh2_session_set_timeout(c->ssh, SFTP_IO_TIMEOUT_MS);
    if (s->hostkey_pref[0])
        libssh2_session_method_pref(c->ssh, LIBSSH2_METHOD_HOSTKEY, s->hostkey_pref);
    if (libssh2_session_handshake(c->ssh, c->fd) != 0) {
        libssh2_session_last_error(c->ssh, &msg, NULL, 0);
        store_fail(e, DEST_ERR_TRANSIENT,
                   "destination %s (%s): the SSH handshake with %s:%ld failed (%s): is it an "
                   "SSH server? will retry",
                   s->d->name, s->display, s->t.host, s->t.port, msg ? msg : "no detail");
        c->broken = 1;
        goto fail;
    }
    *stage = STAGE_REACHED;
    if (check_hostkey(s, c, e) < 0)
        goto fail;
    *stage = STAGE_HOSTKEY;
    if (libssh2_userauth_publickey_fromfile_ex(c->ssh, s->t.user, (unsigned)strlen(s->t.user),
                                               s->identity_pub, s->identity, NULL) != 0) {
        int code = libssh2_session_last_error(c->ssh, &msg, NULL, 0);

        if (code == LIBSSH2_ERROR_TIMEOUT || code == LIBSSH2_ERROR_SOCKET_RECV ||
            code == LIBSSH2_ERROR_SOCKET_SEND || code == LIBSSH2_ERROR_SOCKET_DISCONNECT) {
            c->broken = 1;
            store_fail(e, DEST_ERR_TRANSIENT,
                       "destination %s (%s): the connection failed during authentication (%s); "
                       "will retry",
                       s->d->name, s->display, msg ? msg : "no detail");
        } else {
            store_fail(e, DEST_ERR_CONFIG,
                       "destination %s (%s): user %s was refused with the key %s (%s): add its "
                       "public key to that user's authorized_keys on %s; the key must have no "
                       "passphrase and be ed25519 or ECDSA (with an RSA key, libssh2 1.10 signs "
                       "ssh-rsa, SHA-1, which OpenSSH 8.8 and later refuse)",
                       s->d->name, s->display, s->t.user, s->identity, msg ? msg : "no detail",
                       s->t.host);
        }
        goto fail;
    }
    *stage = STAGE_AUTH;
    c->sftp = libssh2_sftp_init(c->ssh);
    if (c->sftp == NULL) {
        libssh2_session_last_error(c->ssh, &msg, NULL, 0);
        store_fail(e, DEST_ERR_CONFIG,
                   "destination %s (%s): the server offers no SFTP subsystem (%s): enable "
                   "Subsystem sftp in its sshd_config",
                   s->d->name, s->display, msg ? msg : "no detail");
        goto fail;
    }
    *stage = STAGE_SFTP;
    return c;
fail:
    conn_close(s, c);
    return NULL;
}

static struct conn *conn_get(struct sftp *s, int fresh, struct store_err *e)
{
    struct conn *c = NULL;
    enum conn_stage stage;
    int stop;

    pthread_mutex_lock(&s->lock);
    stop = s->stopping;
    if (!fresh && s->idle) {
        c = s->idle;
        s->idle = c->next;
        s->n_idle--;
    }
    pthread_mutex_unlock(&s->lock);
    if (stop) {
        conn_close(s, c);
        store_fail(e, DEST_ERR_TRANSIENT, "destination %s: shutting down", s->d->name);
        return NULL;
    }
    if (c) {
        c->reused = 1;
        c->broken = 0;
        return c;
    }
    return conn_open(s, &stage, e);
}

static void conn_put(struct sftp *s, struct conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    if (!c->broken && !s->stopping && s->n_idle < s->max_idle) {
        c->next = s->idle;
        s->idle = c;
        s->n_idle++;
        c = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    conn_close(s, c);
}

/* ---- small operations on one session ---- */

/* 1 with attrs, 0 absent, -1 with e. */
static int path_stat(struct sftp *s, struct conn *c, const char *path,
                     LIBSSH2_SFTP_ATTRIBUTES *attrs, struct store_err *e)
{
    char what[512];

    if (libssh2_sftp_stat_ex(c->sftp, path, (unsigned)strlen(path), LIBSSH2_SFTP_STAT, attrs) == 0)
        return 1;
    long fx = last_fx(c);

    if (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH)
        return 0;
    snprintf(what, sizeof(what), "cannot look up %s", path);
    return sftp_fail(s, c, what, e);
}

static int dir_known(struct sftp *s, const char *path)
{
    int found = 0;

    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_known_dirs && !found; i++)
        found = strcmp(s->known_dirs[i], path) == 0;
    pthread_mutex_unlock(&s->lock);
    return found;
}

static void dir_remember(struct sftp *s, const char *path)
{
    pthread_mutex_lock(&s->lock);
    s->known_dirs = util_xrealloc(s->known_dirs, (s->n_known_dirs + 1) * sizeof(char *));
    s->known_dirs[s->n_known_dirs++] = util_xstrdup(path);
    pthread_mutex_unlock(&s->lock);
}

/* The folders of dir (a key) below the base exist; the base itself is never created. */
static int ensure_dirs(struct sftp *s, struct conn *c, const char *dir, struct store_write *w,
                       struct store_err *e)
{
    char *prefix = util_xstrdup(dir);
    int rc = 0;

    for (char *p = prefix; *prefix && rc == 0; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        char *path;

        *p = '\0';
        path = sftp_remote_path(s->t.base, prefix);
        if (!dir_known(s, path)) {
            if (libssh2_sftp_mkdir_ex(c->sftp, path, (unsigned)strlen(path), 0700) == 0) {
                char *parent = store_key_dir(prefix);

                store_write_touch(w, parent);
                free(parent);
                dir_remember(s, path);
            } else {
                /* OpenSSH answers "failure" for a folder that exists: look. */
                LIBSSH2_SFTP_ATTRIBUTES a;
                struct store_err e2 = {DEST_ERR_TRANSIENT, {{0}}};
                char what[512];
                long fx = last_fx(c);

                snprintf(what, sizeof(what), "cannot create folder %s", path);
                sftp_fail(s, c, what, e);
                if (fx >= 0 && path_stat(s, c, path, &a, &e2) == 1 &&
                    LIBSSH2_SFTP_S_ISDIR(a.permissions))
                    dir_remember(s, path);
                else
                    rc = -1;
            }
        }
        free(path);
        *p = saved;
        if (saved == '\0')
            break;
    }
    free(prefix);
    return rc;
}

/* Write the whole source into an open handle. */
static int send_source(struct sftp *s, struct conn *c, LIBSSH2_SFTP_HANDLE *h,
                       struct store_source *src, const char *what, struct store_err *e)
{
    char *buf = util_xmalloc(SFTP_BUF);
    int rc = 0;

    for (;;) {
        ssize_t n = store_source_read(src, buf, SFTP_BUF), off = 0;

        if (n < 0) {
            rc = store_fail(e, DEST_ERR_SOURCE, "the spool file is not what was sealed");
            break;
        }
        if (n == 0)
            break;
        while (off < n) {
            ssize_t w = libssh2_sftp_write(h, buf + off, (size_t)(n - off));

            if (w < 0) {
                rc = sftp_fail(s, c, what, e);
                break;
            }
            off += w;
        }
        if (rc < 0)
            break;
    }
    free(buf);
    return rc;
}

static LIBSSH2_SFTP_HANDLE *open_file(struct conn *c, const char *path, unsigned long flags,
                                      long mode)
{
    return libssh2_sftp_open_ex(c->sftp, path, (unsigned)strlen(path), flags, mode,
                                LIBSSH2_SFTP_OPENFILE);
}

/* ---- the primitives ---- */

/* One attempt of write on c. */
static int write_on(struct sftp *s, struct conn *c, struct store_write *w, struct store_err *e)
{
    struct dest_put *p = w->put;
    const char *slash = strrchr(p->remote_key, '/');
    char *dir = store_key_dir(p->remote_key);
    char *temp_name = store_temp_name(slash ? slash + 1 : p->remote_key);
    char *temp_key = dir[0] ? util_printf("%s/%s", dir, temp_name) : util_xstrdup(temp_name);
    char *temp = sftp_remote_path(s->t.base, temp_key);
    char *final = sftp_remote_path(s->t.base, p->remote_key);
    char what[768];
    LIBSSH2_SFTP_HANDLE *h;
    LIBSSH2_SFTP_ATTRIBUTES a;
    int rc = -1, there;

    snprintf(what, sizeof(what), "cannot upload %s", p->remote_key);
    h = open_file(c, temp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL, 0600);
    if (h == NULL &&
        (last_fx(c) == LIBSSH2_FX_NO_SUCH_FILE || last_fx(c) == LIBSSH2_FX_NO_SUCH_PATH)) {
        if (ensure_dirs(s, c, dir, w, e) < 0)
            goto out;
        h = open_file(c, temp, LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL, 0600);
    }
    if (h == NULL) {
        sftp_fail(s, c, what, e);
        goto out;
    }
    if (send_source(s, c, h, w->src, what, e) < 0) {
        libssh2_sftp_close_handle(h);
        goto fail_remove;
    }
    /* Data first, then the name: a crash leaves a temporary file, never a torn object. */
    if (libssh2_sftp_fsync(h) != 0) {
        snprintf(what, sizeof(what), "cannot make %s durable (fsync@openssh.com)", p->remote_key);
        sftp_fail(s, c, what, e);
        libssh2_sftp_close_handle(h);
        goto fail_remove;
    }
    if (libssh2_sftp_close_handle(h) != 0) {
        sftp_fail(s, c, what, e);
        goto fail_remove;
    }
    /* An SFTPv3 rename never replaces (OpenSSH links, then unlinks). */
    if (libssh2_sftp_rename_ex(c->sftp, temp, (unsigned)strlen(temp), final,
                               (unsigned)strlen(final), 0) == 0) {
        store_write_touch(w, dir);
        rc = 0;
        goto out;
    }
    snprintf(what, sizeof(what), "cannot rename %s into place", p->remote_key);
    sftp_fail(s, c, what, e);
    if (c->broken)
        goto out;
    there = path_stat(s, c, final, &a, e);
    if (there == 1) {
        w->exists = 1;
        w->temp = temp;
        temp = NULL;
        store_write_touch(w, dir);
        rc = 0;
        goto out;
    }
    if (there == 0)
        sftp_fail(s, c, what, e); /* the rename's own reason */
fail_remove:
    if (!c->broken)
        libssh2_sftp_unlink_ex(c->sftp, temp, (unsigned)strlen(temp));
out:
    free(dir);
    free(temp_name);
    free(temp_key);
    free(temp);
    free(final);
    return rc;
}

static int sftp_write(struct dest *d, struct store_write *w)
{
    struct sftp *s = d->impl;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    int rc = -1;

    if (!sftp_key_valid(w->put->remote_key)) {
        w->put->kind = DEST_ERR_CONFIG;
        snprintf(w->put->error, sizeof(w->put->error),
                 "destination %s: remote key '%s' is not a relative path", d->name,
                 w->put->remote_key);
        return -1;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        struct conn *c = conn_get(s, attempt > 0, &e);
        int again;

        if (c == NULL)
            break;
        if (attempt > 0 && store_source_rewind(w->src) < 0) {
            conn_put(s, c);
            break;
        }
        rc = write_on(s, c, w, &e);
        again = rc < 0 && c->broken && c->reused && e.kind != DEST_ERR_SOURCE;
        conn_put(s, c);
        if (!again)
            break;
    }
    if (rc < 0 && e.kind != DEST_ERR_SOURCE) {
        w->put->kind = e.kind;
        snprintf(w->put->error, sizeof(w->put->error), "%s", e.err.msg);
    }
    return rc;
}

static int settle_on(struct sftp *s, struct conn *c, struct store_write *w, int replace,
                     struct store_err *e)
{
    char *final = sftp_remote_path(s->t.base, w->put->remote_key);
    char *aside = NULL, what[768];
    int rc = -1;

    if (!replace) {
        if (libssh2_sftp_unlink_ex(c->sftp, w->temp, (unsigned)strlen(w->temp)) == 0 ||
            last_fx(c) == LIBSSH2_FX_NO_SUCH_FILE)
            rc = 0;
        else
            sftp_fail(s, c, "cannot remove a temporary copy", e);
        goto out;
    }
    /* Aside first (a name of ours: if we die now, start-up removes it), then the new one in:
     * the name never goes through an rm before a rename. */
    const char *slash = strrchr(w->put->remote_key, '/');
    char *dir = store_key_dir(w->put->remote_key);
    char *aside_name = store_temp_name(slash ? slash + 1 : w->put->remote_key);
    char *aside_key = dir[0] ? util_printf("%s/%s", dir, aside_name) : util_xstrdup(aside_name);

    aside = sftp_remote_path(s->t.base, aside_key);
    free(dir);
    free(aside_name);
    free(aside_key);
    snprintf(what, sizeof(what), "cannot move the damaged copy of %s aside", w->put->remote_key);
    if (libssh2_sftp_rename_ex(c->sftp, final, (unsigned)strlen(final), aside,
                               (unsigned)strlen(aside), 0) != 0) {
        sftp_fail(s, c, what, e);
        goto out;
    }
    if (libssh2_sftp_rename_ex(c->sftp, w->temp, (unsigned)strlen(w->temp), final,
                               (unsigned)strlen(final), 0) != 0) {
        snprintf(what, sizeof(what), "cannot rename the new copy of %s into place",
                 w->put->remote_key);
        sftp_fail(s, c, what, e);
        /* Put the old one back rather than leave the name empty. */
        libssh2_sftp_rename_ex(c->sftp, aside, (unsigned)strlen(aside), final,
                               (unsigned)strlen(final), 0);
        goto out;
    }
    libssh2_sftp_unlink_ex(c->sftp, aside, (unsigned)strlen(aside));
    rc = 0;
out:
    free(aside);
    free(final);
    return rc;
}

static int sftp_settle(struct dest *d, struct store_write *w, int replace, struct store_err *e)
{
    struct sftp *s = d->impl;
    struct conn *c = conn_get(s, 0, e);
    int rc;

    if (c == NULL)
        return -1;
    rc = settle_on(s, c, w, replace, e);
    conn_put(s, c);
    return rc;
}

static int sync_on(struct sftp *s, struct conn *c, const char *dir, struct store_err *e)
{
    char *path = sftp_remote_path(s->t.base, dir);
    char what[600];
    LIBSSH2_SFTP_HANDLE *h = open_file(c, path, LIBSSH2_FXF_READ, 0);
    int rc = 0;

    snprintf(what, sizeof(what), "cannot fsync folder %s", path);
    if (h == NULL) {
        rc = sftp_fail(s, c, what, e);
    } else {
        if (libssh2_sftp_fsync(h) != 0)
            rc = sftp_fail(s, c, what, e);
        libssh2_sftp_close_handle(h);
    }
    free(path);
    return rc;
}

static int sftp_sync_dir(struct dest *d, const char *dir, struct store_err *e)
{
    struct sftp *s = d->impl;

    for (int attempt = 0; attempt < 2; attempt++) {
        struct conn *c = conn_get(s, attempt > 0, e);
        int rc, again;

        if (c == NULL)
            return -1;
        rc = sync_on(s, c, dir, e);
        again = rc < 0 && c->broken && c->reused;
        conn_put(s, c);
        if (!again)
            return rc;
    }
    return -1;
}

static int read_on(struct sftp *s, struct conn *c, const char *key, uint64_t off, uint64_t len,
                   store_sink_fn sink, void *arg, struct store_err *e)
{
    char *path = sftp_remote_path(s->t.base, key), *buf = NULL, what[600];
    LIBSSH2_SFTP_HANDLE *h = open_file(c, path, LIBSSH2_FXF_READ, 0);
    int rc = 0;

    snprintf(what, sizeof(what), "cannot read %s", key);
    if (h == NULL) {
        rc = sftp_fail(s, c, what, e);
        goto out;
    }
    libssh2_sftp_seek64(h, off);
    buf = util_xmalloc(SFTP_BUF);
    while (len > 0) {
        size_t want = len > SFTP_BUF ? SFTP_BUF : (size_t)len;
        ssize_t n = libssh2_sftp_read(h, buf, want);

        if (n < 0) {
            rc = sftp_fail(s, c, what, e);
            break;
        }
        if (n == 0)
            break; /* the file is shorter: the caller sees what it got */
        if (sink(arg, buf, (size_t)n) < 0) {
            rc = store_fail(e, DEST_ERR_TRANSIENT, "destination %s: reading %s stopped", s->d->name,
                            key);
            break;
        }
        len -= (uint64_t)n;
    }
    libssh2_sftp_close_handle(h);
out:
    free(buf);
    free(path);
    return rc;
}

static int sftp_read(struct dest *d, const char *key, uint64_t off, uint64_t len,
                     store_sink_fn sink, void *arg, struct store_err *e)
{
    struct sftp *s = d->impl;
    struct conn *c;
    int rc;

    if (!sftp_key_valid(key))
        return store_fail(e, DEST_ERR_CONFIG, "destination %s: key '%s' is not a relative path",
                          d->name, key);
    /* Not retried: the sink may have had bytes already. A fresh session for a reused one
     * that is stale costs a failed first call at most. */
    c = conn_get(s, 0, e);
    if (c == NULL)
        return -1;
    rc = read_on(s, c, key, off, len, sink, arg, e);
    conn_put(s, c);
    return rc;
}

static int sftp_stat(struct dest *d, const char *key, uint64_t *size, struct store_err *e)
{
    struct sftp *s = d->impl;
    char *path;
    int rc = -1;

    if (!sftp_key_valid(key))
        return store_fail(e, DEST_ERR_CONFIG, "destination %s: key '%s' is not a relative path",
                          d->name, key);
    path = sftp_remote_path(s->t.base, key);
    for (int attempt = 0; attempt < 2; attempt++) {
        struct conn *c = conn_get(s, attempt > 0, e);
        LIBSSH2_SFTP_ATTRIBUTES a;
        int again;

        if (c == NULL)
            break;
        rc = path_stat(s, c, path, &a, e);
        if (rc == 1) {
            if (!LIBSSH2_SFTP_S_ISREG(a.permissions))
                rc = 0;
            else
                *size = a.filesize;
        }
        again = rc < 0 && c->broken && c->reused;
        conn_put(s, c);
        if (!again)
            break;
    }
    free(path);
    return rc;
}

static int root_on(struct sftp *s, struct conn *c, struct store_err *e)
{
    const char *base = s->t.base[0] ? s->t.base : "/";
    LIBSSH2_SFTP_ATTRIBUTES a;
    LIBSSH2_SFTP_HANDLE *h;
    char name[512];
    int rc = path_stat(s, c, base, &a, e), state = STORE_ROOT_EMPTY;

    if (rc < 0)
        return -1;
    if (rc == 0)
        return STORE_ROOT_MISSING;
    if (!LIBSSH2_SFTP_S_ISDIR(a.permissions))
        return store_fail(e, DEST_ERR_CONFIG, "destination %s (%s): %s is not a folder", s->d->name,
                          s->display, base);
    h = libssh2_sftp_open_ex(c->sftp, base, (unsigned)strlen(base), 0, 0, LIBSSH2_SFTP_OPENDIR);
    if (h == NULL)
        return sftp_fail(s, c, "cannot list the base folder", e);
    for (;;) {
        int n = libssh2_sftp_readdir_ex(h, name, sizeof(name), NULL, 0, &a);

        if (n < 0) {
            state = sftp_fail(s, c, "cannot list the base folder", e);
            break;
        }
        if (n == 0)
            break;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        state = STORE_ROOT_USED;
        break;
    }
    libssh2_sftp_close_handle(h);
    return state;
}

static int sftp_root(struct dest *d, struct store_err *e)
{
    struct sftp *s = d->impl;

    for (int attempt = 0; attempt < 2; attempt++) {
        struct conn *c = conn_get(s, attempt > 0, e);
        int rc, again;

        if (c == NULL)
            return -1;
        rc = root_on(s, c, e);
        if (rc == STORE_ROOT_MISSING) {
            /* Folders we knew may be gone with it. */
            pthread_mutex_lock(&s->lock);
            for (size_t i = 0; i < s->n_known_dirs; i++)
                free(s->known_dirs[i]);
            s->n_known_dirs = 0;
            pthread_mutex_unlock(&s->lock);
        }
        again = rc < 0 && c->broken && c->reused;
        conn_put(s, c);
        if (!again)
            return rc;
    }
    return -1;
}

/* Visit every file under dir (a key) depth first; dot names (temporary files) are skipped
 * unless want_temps, when only they are visited. */
struct walker {
    struct sftp *s;
    struct conn *c;
    const char *prefix;
    int want_temps;
    int (*cb)(void *arg, const char *key, uint64_t size);
    void *arg;
    struct store_err *e;
};

static int walk(struct walker *wk, const char *dir)
{
    struct sftp *s = wk->s;
    char *path = sftp_remote_path(s->t.base, dir), name[1024];
    LIBSSH2_SFTP_HANDLE *h;
    LIBSSH2_SFTP_ATTRIBUTES a;
    char **subdirs = NULL;
    size_t n_sub = 0;
    int rc = 0;

    h = libssh2_sftp_open_ex(wk->c->sftp, path, (unsigned)strlen(path), 0, 0, LIBSSH2_SFTP_OPENDIR);
    if (h == NULL) {
        long fx = last_fx(wk->c);
        char what[1200];

        free(path);
        if (fx == LIBSSH2_FX_NO_SUCH_FILE || fx == LIBSSH2_FX_NO_SUCH_PATH)
            return 0;
        snprintf(what, sizeof(what), "cannot list %s", dir[0] ? dir : "the base folder");
        return sftp_fail(s, wk->c, what, wk->e);
    }
    for (;;) {
        int n = libssh2_sftp_readdir_ex(h, name, sizeof(name), NULL, 0, &a);
        char *key;

        if (n < 0) {
            rc = sftp_fail(s, wk->c, "cannot list a folder", wk->e);
            break;
        }
        if (n == 0)
            break;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        key = dir[0] ? util_printf("%s/%s", dir, name) : util_xstrdup(name);
        size_t plen = strlen(wk->prefix), klen = strlen(key);

        if (strncmp(key, wk->prefix, klen < plen ? klen : plen) != 0) {
            free(key);
            continue;
        }
        if (LIBSSH2_SFTP_S_ISDIR(a.permissions) && name[0] != '.') {
            subdirs = util_xrealloc(subdirs, (n_sub + 1) * sizeof(char *));
            subdirs[n_sub++] = key;
            continue;
        }
        if (LIBSSH2_SFTP_S_ISREG(a.permissions) && klen >= plen &&
            (name[0] == '.') == (wk->want_temps != 0) && wk->cb(wk->arg, key, a.filesize)) {
            free(key);
            rc = 1;
            break;
        }
        free(key);
    }
    libssh2_sftp_close_handle(h);
    free(path);
    for (size_t i = 0; i < n_sub; i++) {
        if (rc == 0)
            rc = walk(wk, subdirs[i]);
        free(subdirs[i]);
    }
    free(subdirs);
    return rc;
}

static int sftp_list(struct dest *d, const char *prefix,
                     int (*cb)(void *arg, const char *key, uint64_t size), void *arg,
                     struct cst_err *err)
{
    struct sftp *s = d->impl;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    struct walker wk = {s, NULL, prefix ? prefix : "", 0, cb, arg, &e};
    const char *slash = strrchr(wk.prefix, '/');
    char *top = util_printf("%.*s", slash ? (int)(slash - wk.prefix) : 0, wk.prefix);
    int rc;

    if (top[0] && !sftp_key_valid(top)) {
        free(top);
        return cst_err_set(err, "destination %s: list prefix '%s' is not a relative path", d->name,
                           wk.prefix);
    }
    wk.c = conn_get(s, 0, &e);
    if (wk.c == NULL) {
        free(top);
        *err = e.err;
        return -1;
    }
    rc = walk(&wk, top);
    conn_put(s, wk.c);
    free(top);
    if (rc < 0)
        *err = e.err;
    return rc < 0 ? -1 : 0;
}

static int unlink_key(struct dest *d, const char *key, int dir, struct cst_err *err)
{
    struct sftp *s = d->impl;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    char *path, what[600];
    struct conn *c;
    int rc = 0;

    if (!sftp_key_valid(key))
        return cst_err_set(err, "destination %s: key '%s' is not a relative path", d->name, key);
    c = conn_get(s, 0, &e);
    if (c == NULL) {
        *err = e.err;
        return -1;
    }
    path = sftp_remote_path(s->t.base, key);
    if ((dir ? libssh2_sftp_rmdir_ex(c->sftp, path, (unsigned)strlen(path))
             : libssh2_sftp_unlink_ex(c->sftp, path, (unsigned)strlen(path))) != 0 &&
        last_fx(c) != LIBSSH2_FX_NO_SUCH_FILE) {
        snprintf(what, sizeof(what), "cannot remove %s", key);
        sftp_fail(s, c, what, &e);
        *err = e.err;
        rc = -1;
    }
    conn_put(s, c);
    free(path);
    return rc;
}

static int sftp_remove(struct dest *d, const char *key, struct cst_err *err)
{
    return unlink_key(d, key, 0, err);
}

static int sftp_remove_dir(struct dest *d, const char *dir, struct cst_err *err)
{
    return unlink_key(d, dir, 1, err);
}

struct sweep {
    struct sftp *s;
    struct conn *c;
    size_t removed;
};

static int sweep_temp(void *arg, const char *key, uint64_t size)
{
    struct sweep *sw = arg;
    const char *slash = strrchr(key, '/');

    (void)size;
    if (store_temp_is_stale(slash ? slash + 1 : key)) {
        char *path = sftp_remote_path(sw->s->t.base, key);

        if (libssh2_sftp_unlink_ex(sw->c->sftp, path, (unsigned)strlen(path)) == 0)
            sw->removed++;
        free(path);
    }
    return 0;
}

static int sftp_cleanup(struct dest *d, struct cst_err *err)
{
    struct sftp *s = d->impl;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    struct sweep sw = {s, NULL, 0};
    struct walker wk = {s, NULL, "", 1, sweep_temp, &sw, &e};
    int rc;

    sw.c = wk.c = conn_get(s, 0, &e);
    if (wk.c == NULL) {
        *err = e.err;
        return -1;
    }
    rc = walk(&wk, "");
    conn_put(s, wk.c);
    if (rc < 0)
        *err = e.err;
    if (sw.removed)
        log_info("removed %zu temporary files that stopped processes left dest=%s", sw.removed,
                 d->name);
    return rc < 0 ? -1 : 0;
}

/* doctor: a fresh session, so that the host key really is checked now. */
static int sftp_probe_connect(struct dest *d, struct dest_probe *out)
{
    static const char *const names[] = {"reachable", "host key verified", "authenticated"};
    struct sftp *s = d->impl;
    struct store_err e = {DEST_ERR_TRANSIENT, {{0}}};
    enum conn_stage stage;
    int64_t t0 = util_mono_ms();
    struct conn *c = conn_open(s, &stage, &e);

    if (stage < STAGE_REACHED) {
        dest_check_add(out, names[0], 0, "%s", e.err.msg);
        for (int i = 1; i < 3; i++)
            dest_check_add(out, names[i], 0, "not checked: the server was not reached");
        return -1;
    }
    dest_check_add(out, names[0], 1,
                   "%s:%ld answered and completed the SSH handshake in %" PRId64 " ms", s->t.host,
                   s->t.port, util_mono_ms() - t0);
    if (stage < STAGE_HOSTKEY) {
        dest_check_add(out, names[1], 0, "%s", e.err.msg);
        dest_check_add(out, names[2], 0, "not checked: the host key was refused");
        return -1;
    }
    dest_check_add(out, names[1], 1, "the server's key matches %s", s->known_hosts);
    if (c == NULL) {
        dest_check_add(out, names[2], 0, "%s", e.err.msg);
        return -1;
    }
    dest_check_add(out, names[2], 1, "as user %s with key %s", s->t.user, s->identity);
    conn_put(s, c);
    return 0;
}

static void sftp_stop(struct dest *d)
{
    struct sftp *s = d->impl;

    /* Blocked calls return at once; queued work then finds the destination stopping. */
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    for (struct conn *c = s->all; c; c = c->all_next)
        shutdown(c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&s->lock);
}

static void sftp_release(struct sftp *s)
{
    sftp_target_clear(&s->t);
    free(s->display);
    free(s->identity);
    free(s->identity_pub);
    free(s->known_hosts);
    free(s->hostkey_pref);
    for (size_t i = 0; i < s->n_known_dirs; i++)
        free(s->known_dirs[i]);
    free(s->known_dirs);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static void sftp_free(struct dest *d)
{
    struct sftp *s = d->impl;

    if (s == NULL)
        return;
    while (s->idle) {
        struct conn *c = s->idle;

        s->idle = c->next;
        conn_close(s, c);
    }
    sftp_release(s);
    d->impl = NULL;
}

static const struct store_driver sftp_driver = {
    .type = "sftp",
    .features = STORE_FEAT_DURABLE_COMMIT | STORE_FEAT_MARKER,
    .write = sftp_write,
    .settle = sftp_settle,
    .sync_dir = sftp_sync_dir,
    .read = sftp_read,
    .stat = sftp_stat,
    .root = sftp_root,
    .list = sftp_list,
    .remove = sftp_remove,
    .remove_dir = sftp_remove_dir,
    .cleanup = sftp_cleanup,
    .probe_connect = sftp_probe_connect,
    .stop = sftp_stop,
    .free = sftp_free,
};

static const struct dest_ops dest_sftp_ops = STORE_DEST_OPS("sftp");

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

    s = util_xcalloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    if (sftp_parse_url(c->url, &s->t, err) < 0 || s->t.host == NULL) {
        cst_err_wrap(err, "destination %s", name);
        sftp_release(s);
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
    pthread_once(&ssh_once, ssh_init);
    s->hostkey_pref = hostkey_pref(&s->t, s->known_hosts);
    int inflight = c->max_inflight > 0 ? c->max_inflight : SFTP_DEFAULT_INFLIGHT;
    s->max_idle = inflight;
    struct store_params p = {
        .name = name,
        .where = s->display,
        .ops = &dest_sftp_ops,
        .driver = &sftp_driver,
        .impl = s,
        /* Batches share their folder fsyncs; two at once keep the sessions busy. */
        .max_batch = 32,
        .max_concurrent = 2,
        .threads = inflight, /* one session each */
        .readback_full = c->readback_full ? c->readback_full : SFTP_DEFAULT_READBACK,
        .bandwidth_kbps = c->bandwidth_kbps,
    };
    struct dest *d = store_dest_new(&p, env);

    s->d = d;
    return d;
fail:
    sftp_release(s);
    return NULL;
}
