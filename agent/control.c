/*
 * control.c - the agent's status socket (see control.h).
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

struct control {
    struct ev_loop *loop;
    int fd;
    char *path;
    ev_io io;
    void (*describe)(void *arg, struct json *j);
    void *arg;
};

static int socket_address(const char *path, struct sockaddr_un *sa, struct cst_err *err)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path))
        return cst_err_set(err, "socket path %s is too long (state_dir must be shorter)", path);
    memcpy(sa->sun_path, path, strlen(path) + 1);
    return 0;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct control *c = w->data;
    struct json j;
    int fd;

    (void)loop;
    (void)revents;
    fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    json_init(&j);
    c->describe(c->arg, &j);
    /* One small document into a fresh socket's buffer: it fits, or the client
     * gets a truncated document and says the agent did not answer. */
    (void)util_write_all(fd, j.buf, j.len);
    json_free(&j);
    close(fd);
}

struct control *control_new(struct ev_loop *loop, const char *path,
                            void (*describe)(void *arg, struct json *j), void *arg,
                            struct cst_err *err)
{
    struct control *c;
    struct sockaddr_un sa;
    int fd;

    if (socket_address(path, &sa, err) < 0)
        return NULL;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cst_err_sys(err, "cannot create the status socket"), NULL;
    /* The caller holds the agent lock: a socket file left here is a dead agent's. */
    unlink(path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
        listen(fd, 16) < 0) {
        cst_err_sys(err, "cannot listen on %s", path);
        close(fd);
        return NULL;
    }
    c = util_xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->fd = fd;
    c->path = util_xstrdup(path);
    c->describe = describe;
    c->arg = arg;
    ev_io_init(&c->io, on_accept, fd, EV_READ);
    c->io.data = c;
    ev_io_start(loop, &c->io);
    return c;
}

void control_free(struct control *c)
{
    if (c == NULL)
        return;
    ev_io_stop(c->loop, &c->io);
    close(c->fd);
    unlink(c->path);
    free(c->path);
    free(c);
}

char *control_query(const char *path, int timeout_ms, struct cst_err *err)
{
    struct sockaddr_un sa;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int64_t deadline = util_mono_ms() + timeout_ms;
    int fd;

    if (socket_address(path, &sa, err) < 0)
        return NULL;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cst_err_sys(err, "cannot create a socket"), NULL;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        cst_err_sys(err, "no agent answers on %s", path);
        close(fd);
        return NULL;
    }
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = deadline - util_mono_ms();
        ssize_t n;

        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            cst_err_set(err, "the agent did not answer on %s within %d ms (is its loop stuck?)",
                        path, timeout_ms);
            goto fail;
        }
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 16384;
            buf = util_xrealloc(buf, cap);
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            cst_err_sys(err, "cannot read from %s", path);
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len == 0) {
        free(buf);
        return cst_err_set(err, "the agent closed %s without answering", path), NULL;
    }
    buf[len] = '\0';
    return buf;
fail:
    close(fd);
    free(buf);
    return NULL;
}
