/*
 * prio.c - background threads give way to the host's own work (see prio.h).
 */
#include "common/prio.h"

#include <errno.h>
#include <linux/ioprio.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"

static atomic_int refusal_logged;

static void refused(const char *what, int e)
{
    if (atomic_exchange(&refusal_logged, 1) == 0)
        log_info("background threads keep their priority: %s: %s", what, strerror(e));
}

void prio_background_thread(void)
{
    /* Linux keeps a niceness per thread: PRIO_PROCESS with a thread id sets this one only. */
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int nice_now;

    errno = 0;
    nice_now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (nice_now == -1 && errno != 0) {
        refused("getpriority", errno);
    } else if (nice_now < PRIO_BACKGROUND_NICE &&
               setpriority(PRIO_PROCESS, (id_t)tid, PRIO_BACKGROUND_NICE) < 0) {
        refused("setpriority", errno);
    }
    /* The lowest best-effort level, not the idle class: idle I/O can wait for ever on a
     * disk that the app keeps busy, and a backup that never lands is a gap. */
    if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, (int)tid,
                IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 7)) < 0)
        refused("ioprio_set", errno);
}
