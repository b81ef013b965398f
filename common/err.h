/*
 * err.h - the caller-supplied error buffer every fallible function fills.
 *
 * A function that can fail returns -1 (or NULL) and writes one sentence a
 * human can act on into a struct cst_err: what failed, on which object, and
 * why. Only the top level prints it, once.
 */
#ifndef CST_ERR_H
#define CST_ERR_H

#define CST_ERR_SIZE 1024

struct cst_err {
    char msg[CST_ERR_SIZE];
};

/* Format a message into err; always returns -1 so callers can `return cst_err_set(...)`. */
int cst_err_set(struct cst_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* As cst_err_set, with ": strerror(errno)" appended (errno read on entry). */
int cst_err_sys(struct cst_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefix an existing message with context: "context: old message". Returns -1. */
int cst_err_wrap(struct cst_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
