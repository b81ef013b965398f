/*
 * bench_plan.c - the retention planner over a catalog of a busy clinic's seven
 * years (issue #9's figure): 1,000,000 versions of 100,000 files, three
 * copies of each object, a daily restore point every day, a snapshot every 14
 * days holding 2,000 objects, and a few holds. Prints one JSON line: versions,
 * seconds to plan, actions, and the process's peak RSS. Run by `make bench`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "agent/prune_plan.h"

#define FILES 100000
#define VERSIONS 1000000
#define DAY 86400000LL

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(void)
{
    struct cst_err err;
    struct sched_zone *ny = sched_zone_load("America/New_York", &err);
    int64_t start = 1767225600000LL; /* 2026-01-01 */
    int64_t years7 = 7LL * 365 * DAY;
    size_t n_objects = VERSIONS * 9 / 10; /* a tenth dedup against older content */
    struct plan_object *objects = calloc(n_objects, sizeof(*objects));
    struct plan_version *versions = calloc(VERSIONS, sizeof(*versions));
    struct plan_copy *copies = calloc(n_objects * 3, sizeof(*copies));
    size_t n_points = 7 * 365, n_snaps = n_points / 14;
    struct plan_point *points = calloc(n_points, sizeof(*points));
    struct plan_snapshot *snaps = calloc(n_snaps, sizeof(*snaps));
    size_t *refs = calloc(n_snaps * 2000, sizeof(size_t));
    char(*ids)[12] = calloc(n_objects, 12);
    char(*paths)[40] = calloc(FILES, 40);
    int64_t *last = calloc(FILES, sizeof(int64_t));
    struct plan_dest dests[3] = {{"nas", 0, 0}, {"s3", 0, 1}, {"glacier", 1, 0}};
    struct plan_hold holds[2] = {{PLAN_HOLD_PATH, "/app/data/invoices/f000042", NULL, 0},
                                 {PLAN_HOLD_PERIOD, NULL, "P010", 0}};
    struct plan_output out;
    struct rusage ru;
    double t0, t1;

    if (ny == NULL) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    srand(3);
    for (size_t o = 0; o < n_objects; o++) {
        snprintf(ids[o], 12, "o%09zu", o);
        objects[o].id = ids[o];
        for (size_t d = 0; d < 3; d++)
            copies[o * 3 + d] = (struct plan_copy){o, d, d == 2 ? PLAN_ARCHIVE : PLAN_HOT, 1, 0};
    }
    for (size_t f = 0; f < FILES; f++)
        snprintf(paths[f], 40, "/app/data/invoices/f%06zu", f);
    for (size_t v = 0; v < VERSIONS; v++) {
        size_t f = (size_t)rand() % FILES;
        int64_t at = start + (int64_t)((double)v / VERSIONS * (double)years7);
        size_t o = v < n_objects ? v : (size_t)rand() % n_objects;

        if (last[f])
            versions[last[f] - 1].deleted_at = at;
        versions[v] = (struct plan_version){o, paths[f], at, 0};
        last[f] = (int64_t)v + 1;
    }
    for (size_t p = 0; p < n_points; p++) {
        int y, m, d;

        sched_localtime(ny, (start + (int64_t)p * DAY) / 1000 + 7 * 3600, &y, &m, &d, NULL, NULL,
                        NULL);
        points[p] = (struct plan_point){y, m, d, start + (int64_t)p * DAY + 7 * 3600000};
    }
    static char labels[400][8];
    for (size_t s = 0; s < n_snaps; s++) {
        int64_t closed = start + (int64_t)(s + 1) * 14 * DAY;

        snprintf(labels[s], 8, "P%03zu", s);
        for (size_t k = 0; k < 2000; k++)
            refs[s * 2000 + k] = (size_t)rand() % n_objects;
        snaps[s] = (struct plan_snapshot){labels[s], closed,          closed - 14 * DAY,
                                          closed,    refs + s * 2000, 2000};
    }
    struct plan_input in = {.rules = {24, 84, 35, 84, 2},
                            .zone = ny,
                            .now = start + years7 + 30 * DAY,
                            .dests = dests,
                            .n_dests = 3,
                            .objects = objects,
                            .n_objects = n_objects,
                            .versions = versions,
                            .n_versions = VERSIONS,
                            .copies = copies,
                            .n_copies = n_objects * 3,
                            .points = points,
                            .n_points = n_points,
                            .snapshots = snaps,
                            .n_snapshots = n_snaps,
                            .holds = holds,
                            .n_holds = 2};
    t0 = now_s();
    plan_compute(&in, &out);
    t1 = now_s();
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"versions\": %d, \"objects\": %zu, \"plan_seconds\": %.2f, \"actions\": %zu, "
           "\"kept\": %zu, \"max_rss_mb\": %.1f}\n",
           VERSIONS, n_objects, t1 - t0, out.n_actions, out.n_keeps, ru.ru_maxrss / 1024.0);
    plan_output_free(&out);
    return 0;
}
