/*
 * curl_ev.h - libcurl's multi interface driven by the libev loop.
 *
 * Backends start easy transfers here and get a callback on the loop thread
 * when each ends; sockets and timers are libev watchers, so a transfer never
 * blocks the loop. The shape is curl's evhiperfifo.c, with the timer rules
 * of multi-uv.c (-1 stops the timer; 0 means "soon", never from inside the
 * callback).
 */
#ifndef CST_CURL_EV_H
#define CST_CURL_EV_H

#include <curl/curl.h>
#include <ev.h>

struct curl_ev;

typedef void (*curl_ev_done_fn)(void *arg, CURL *easy, CURLcode result);

struct curl_ev *curl_ev_new(struct ev_loop *loop);
/* Run easy until it ends; done() then gets it back (to inspect, reuse or clean up).
 * Returns -1 if curl refused to add it (done is not called). */
int curl_ev_add(struct curl_ev *c, CURL *easy, curl_ev_done_fn done, void *arg);
/* Transfers running. */
int curl_ev_running(const struct curl_ev *c);
/* Abort every running transfer (their done() is not called) and free. NULL ok. */
void curl_ev_free(struct curl_ev *c);

#endif
