/*
 * prio.h - background threads give way to the host's own work.
 *
 * The clinic's app comes first: a thread that seals, stores, syncs or walks
 * folders for a backlog lowers its own CPU priority (nice) and I/O priority
 * (best-effort, lowest level), so that an app writing and fsyncing on the
 * same disk is barely slowed, while an otherwise idle host still lends the
 * agent every core. The event loop keeps its priority: status answers and
 * new files are dispatched at once.
 */
#ifndef CST_PRIO_H
#define CST_PRIO_H

/* A background thread's niceness (one already nicer keeps its own). */
#define PRIO_BACKGROUND_NICE 10

/* Lower the calling thread's CPU and I/O priority. Best effort: where it is
 * not allowed (a service unit's system call filter says EPERM; the unit sets
 * the whole service's priority instead), the thread runs as it was, and the
 * first refusal is logged once. */
void prio_background_thread(void);

#endif
