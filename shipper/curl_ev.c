/*
 * curl_ev.c - libcurl multi on libev (see curl_ev.h).
 */
#include "curl_ev.h"

#include <stdlib.h>

#include "common/log.h"
#include "common/util.h"

struct transfer {
    curl_ev_done_fn done;
    void *arg;
    CURL *easy;
    struct transfer *prev, *next;
};

struct curl_ev {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    int running;
    struct transfer *transfers; /* running, so that free can remove them */
};

struct sock {
    ev_io io;
    struct curl_ev *c;
    curl_socket_t fd;
};

/* Hand finished transfers back to their owners. */
static void drain_done(struct curl_ev *c)
{
    CURLMsg *msg;
    int left;

    while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        struct transfer *t = NULL;

        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        curl_multi_remove_handle(c->multi, easy);
        c->running--;
        if (t) {
            curl_ev_done_fn done = t->done;

            if (t->prev)
                t->prev->next = t->next;
            else
                c->transfers = t->next;
            if (t->next)
                t->next->prev = t->prev;
            void *arg = t->arg;

            free(t);
            curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
            done(arg, easy, result);
        }
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct curl_ev *c = w->data;
    int still;

    (void)loop;
    (void)revents;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &still);
    drain_done(c);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct sock *s = (struct sock *)w;
    struct curl_ev *c = s->c;
    int action =
        (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int still;

    (void)loop;
    curl_multi_socket_action(c->multi, s->fd, action, &still);
    drain_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curl_ev *c = userp;
    struct sock *s = socketp;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(c->loop, &s->io);
            curl_multi_assign(c->multi, fd, NULL);
            free(s);
        }
        return 0;
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    if (s == NULL) {
        s = util_xcalloc(1, sizeof(*s));
        s->c = c;
        s->fd = fd;
        curl_multi_assign(c->multi, fd, s);
    } else {
        ev_io_stop(c->loop, &s->io);
    }
    ev_io_init(&s->io, on_io, fd, events);
    ev_io_start(c->loop, &s->io);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct curl_ev *c = userp;

    (void)multi;
    ev_timer_stop(c->loop, &c->timer);
    if (timeout_ms >= 0) {
        /* 0 means "as soon as possible", but never from inside this callback. */
        ev_timer_set(&c->timer, (double)timeout_ms / 1000.0, 0.0);
        ev_timer_start(c->loop, &c->timer);
    }
    return 0;
}

struct curl_ev *curl_ev_new(struct ev_loop *loop)
{
    struct curl_ev *c = util_xcalloc(1, sizeof(*c));

    c->loop = loop;
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        free(c);
        return NULL;
    }
    ev_timer_init(&c->timer, on_timer, 0.0, 0.0);
    c->timer.data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

int curl_ev_add(struct curl_ev *c, CURL *easy, curl_ev_done_fn done, void *arg)
{
    struct transfer *t = util_xmalloc(sizeof(*t));

    t->done = done;
    t->arg = arg;
    t->easy = easy;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    if (curl_multi_add_handle(c->multi, easy) != CURLM_OK) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(t);
        return -1;
    }
    t->prev = NULL;
    t->next = c->transfers;
    if (t->next)
        t->next->prev = t;
    c->transfers = t;
    c->running++;
    return 0;
}

int curl_ev_running(const struct curl_ev *c)
{
    return c->running;
}

void curl_ev_free(struct curl_ev *c)
{
    if (c == NULL)
        return;
    ev_timer_stop(c->loop, &c->timer);
    /* Remove what still runs; the easy handles stay their owners' to clean up. */
    while (c->transfers) {
        struct transfer *t = c->transfers;

        c->transfers = t->next;
        curl_multi_remove_handle(c->multi, t->easy);
        curl_easy_setopt(t->easy, CURLOPT_PRIVATE, NULL);
        free(t);
    }
    curl_multi_cleanup(c->multi);
    free(c);
}
