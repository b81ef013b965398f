/*
 * prune.c - the retention plan carried out (see prune.h).
 */
#include "prune.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/dests.h"
#include "agent/hold.h"
#include "agent/prune_plan.h"
#include "agent/sched.h"
#include "common/json.h"
#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"

struct plan_rules prune_rules(const struct cfg *cfg)
{
    return (struct plan_rules){cfg->hot_months, cfg->delete_after_months, cfg->keep_daily,
                               cfg->keep_monthly_months, cfg->min_copies};
}

/* --- object ids to indexes: open addressing on the (hex) id's first 16 digits --- */

struct idmap {
    const char **keys;
    size_t *vals;
    size_t cap;
};

static uint64_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;

    for (int i = 0; i < 16 && id[i]; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    return h;
}

static void idmap_init(struct idmap *m, size_t n)
{
    m->cap = 16;
    while (m->cap < 2 * n + 16)
        m->cap *= 2;
    m->keys = util_xcalloc(m->cap, sizeof(char *));
    m->vals = util_xcalloc(m->cap, sizeof(size_t));
}

static void idmap_put(struct idmap *m, const char *key, size_t val)
{
    size_t i = id_hash(key) & (m->cap - 1);

    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = key;
    m->vals[i] = val;
}

static size_t idmap_get(const struct idmap *m, const char *key)
{
    size_t i = id_hash(key) & (m->cap - 1);

    while (m->keys[i]) {
        if (strcmp(m->keys[i], key) == 0)
            return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return SIZE_MAX;
}

/* --- the planner's input, from the catalog --- */

struct input {
    struct cli *cli;
    struct sched_zone *zone;
    struct plan_input in;
    struct plan_dest *dests;
    char **ids; /* objects */
    size_t n_ids, cap_ids;
    struct plan_object *objects;
    struct idmap map;
    struct plan_version *versions;
    char **version_paths;
    size_t n_versions, cap_versions;
    struct plan_copy *copies;
    char **copy_keys;
    size_t n_copies, cap_copies;
    struct plan_point *points;
    char (*point_dates)[11];
    size_t n_points, cap_points;
    struct plan_snapshot *snaps;
    int64_t *snap_ids;
    char **snap_labels;
    size_t **snap_objects, *snap_counts;
    size_t n_snaps, cap_snaps;
    struct plan_hold *holds;
    char **hold_values;
    size_t n_holds, cap_holds;
};

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            (cap) = (cap) ? (cap)*2 : 64;                                                          \
            (arr) = util_xrealloc((arr), (cap) * sizeof(*(arr)));                                  \
        }                                                                                          \
    } while (0)

static int add_object(void *arg, const char *id)
{
    struct input *x = arg;

    GROW(x->ids, x->n_ids, x->cap_ids);
    x->ids[x->n_ids++] = util_xstrdup(id);
    return 0;
}

static int add_version(void *arg, const char *object_id, const char *path, int64_t captured_at,
                       int64_t deleted_at)
{
    struct input *x = arg;
    size_t o = idmap_get(&x->map, object_id);

    if (o == SIZE_MAX)
        return 0;
    if (x->n_versions == x->cap_versions) {
        x->cap_versions = x->cap_versions ? x->cap_versions * 2 : 256;
        x->versions = util_xrealloc(x->versions, x->cap_versions * sizeof(*x->versions));
        x->version_paths = util_xrealloc(x->version_paths, x->cap_versions * sizeof(char *));
    }
    x->version_paths[x->n_versions] = util_xstrdup(path);
    x->versions[x->n_versions] = (struct plan_version){o, NULL, captured_at, deleted_at};
    x->n_versions++;
    return 0;
}

static size_t dest_index(const struct input *x, const char *name)
{
    for (size_t d = 0; d < x->cli->cfg->n_dests; d++)
        if (strcmp(x->cli->cfg->dests[d].name, name) == 0)
            return d;
    return SIZE_MAX;
}

static int add_copy(void *arg, const char *object_id, const char *dest, const char *remote_key,
                    const char *tier, int good, int64_t locked_until)
{
    struct input *x = arg;
    size_t o = idmap_get(&x->map, object_id), d = dest_index(x, dest);
    enum plan_tier t;

    if (o == SIZE_MAX || d == SIZE_MAX)
        return 0; /* a destination no longer configured cannot be pruned */
    t = tier ? (strcmp(tier, "archive") == 0 ? PLAN_ARCHIVE : PLAN_HOT)
             : (x->dests[d].archive_role ? PLAN_ARCHIVE : PLAN_HOT);
    if (x->n_copies == x->cap_copies) {
        x->cap_copies = x->cap_copies ? x->cap_copies * 2 : 256;
        x->copies = util_xrealloc(x->copies, x->cap_copies * sizeof(*x->copies));
        x->copy_keys = util_xrealloc(x->copy_keys, x->cap_copies * sizeof(char *));
    }
    x->copy_keys[x->n_copies] = util_xstrdup(remote_key);
    x->copies[x->n_copies++] = (struct plan_copy){o, d, t, good, locked_until};
    return 0;
}

static int add_point(void *arg, const char *date, int64_t at)
{
    struct input *x = arg;
    int y, m, d;

    if (sched_parse_date(date, &y, &m, &d) < 0)
        return 0;
    if (x->n_points == x->cap_points) {
        x->cap_points = x->cap_points ? x->cap_points * 2 : 64;
        x->points = util_xrealloc(x->points, x->cap_points * sizeof(*x->points));
        x->point_dates = util_xrealloc(x->point_dates, x->cap_points * sizeof(*x->point_dates));
    }
    snprintf(x->point_dates[x->n_points], 11, "%s", date);
    x->points[x->n_points++] = (struct plan_point){y, m, d, at};
    return 0;
}

static int add_snapshot(void *arg, int64_t id, const char *label, int64_t closed_at, int64_t start,
                        int64_t end)
{
    struct input *x = arg;

    if (x->n_snaps == x->cap_snaps) {
        x->cap_snaps = x->cap_snaps ? x->cap_snaps * 2 : 32;
        x->snaps = util_xrealloc(x->snaps, x->cap_snaps * sizeof(*x->snaps));
        x->snap_ids = util_xrealloc(x->snap_ids, x->cap_snaps * sizeof(int64_t));
        x->snap_labels = util_xrealloc(x->snap_labels, x->cap_snaps * sizeof(char *));
        x->snap_objects = util_xrealloc(x->snap_objects, x->cap_snaps * sizeof(size_t *));
        x->snap_counts = util_xrealloc(x->snap_counts, x->cap_snaps * sizeof(size_t));
    }
    x->snap_ids[x->n_snaps] = id;
    x->snap_labels[x->n_snaps] = util_xstrdup(label);
    x->snap_objects[x->n_snaps] = NULL;
    x->snap_counts[x->n_snaps] = 0;
    x->snaps[x->n_snaps++] =
        (struct plan_snapshot){NULL, closed_at, start, end > 0 ? end : closed_at, NULL, 0};
    return 0;
}

static int add_snapshot_object(void *arg, int64_t snapshot_id, const char *object_id)
{
    struct input *x = arg;
    size_t o = idmap_get(&x->map, object_id);

    if (o == SIZE_MAX)
        return 0;
    for (size_t s = 0; s < x->n_snaps; s++)
        if (x->snap_ids[s] == snapshot_id) {
            x->snap_objects[s] =
                util_xrealloc(x->snap_objects[s], (x->snap_counts[s] + 1) * sizeof(size_t));
            x->snap_objects[s][x->snap_counts[s]++] = o;
            break;
        }
    return 0;
}

static int add_hold(void *arg, const struct catalog_hold *h)
{
    struct input *x = arg;
    struct plan_hold ph = {PLAN_HOLD_ALL, NULL, NULL, 0};
    char *value = h->value ? util_xstrdup(h->value) : NULL;

    if (strcmp(h->kind, "path") == 0) {
        ph.kind = PLAN_HOLD_PATH;
        ph.path = value;
    } else if (strcmp(h->kind, "period") == 0) {
        ph.kind = PLAN_HOLD_PERIOD;
        ph.period = value;
    } else if (strcmp(h->kind, "before") == 0) {
        int y, m, d;
        int64_t at;

        ph.kind = PLAN_HOLD_BEFORE;
        /* Before the first instant of that day where the clinic is. */
        if (value && sched_parse_date(value, &y, &m, &d) == 0 &&
            sched_local_instant(x->zone, y, m, d, 0, 0, 0, &at) == 0)
            ph.before = at * 1000;
        else
            ph.kind = PLAN_HOLD_ALL; /* unreadable: hold everything rather than guess */
    }
    if (x->n_holds == x->cap_holds) {
        x->cap_holds = x->cap_holds ? x->cap_holds * 2 : 8;
        x->holds = util_xrealloc(x->holds, x->cap_holds * sizeof(*x->holds));
        x->hold_values = util_xrealloc(x->hold_values, x->cap_holds * sizeof(char *));
    }
    x->hold_values[x->n_holds] = value;
    x->holds[x->n_holds++] = ph;
    return 0;
}

static void input_free(struct input *x)
{
    for (size_t i = 0; i < x->n_ids; i++)
        free(x->ids[i]);
    for (size_t i = 0; i < x->n_versions; i++)
        free(x->version_paths[i]);
    for (size_t i = 0; i < x->n_copies; i++)
        free(x->copy_keys[i]);
    for (size_t i = 0; i < x->n_snaps; i++) {
        free(x->snap_labels[i]);
        free(x->snap_objects[i]);
    }
    for (size_t i = 0; i < x->n_holds; i++)
        free(x->hold_values[i]);
    free(x->ids);
    free(x->objects);
    free(x->map.keys);
    free(x->map.vals);
    free(x->versions);
    free(x->version_paths);
    free(x->copies);
    free(x->copy_keys);
    free(x->points);
    free(x->point_dates);
    free(x->snaps);
    free(x->snap_ids);
    free(x->snap_labels);
    free(x->snap_objects);
    free(x->snap_counts);
    free(x->holds);
    free(x->hold_values);
    free(x->dests);
    sched_zone_free(x->zone);
}

static int input_load(struct input *x, struct cli *cli, int64_t now, struct cst_err *err)
{
    const struct cfg *cfg = cli->cfg;
    struct catalog *cat = cli->cat;

    memset(x, 0, sizeof(*x));
    x->cli = cli;
    x->zone = sched_zone_load(cfg->timezone, err);
    if (x->zone == NULL)
        return -1;
    x->dests = util_xcalloc(cfg->n_dests + 1, sizeof(*x->dests));
    for (size_t d = 0; d < cfg->n_dests; d++) {
        x->dests[d].name = cfg->dests[d].name;
        x->dests[d].archive_role = cfg->dests[d].role == CFG_ROLE_ARCHIVE;
        x->dests[d].archive_class =
            cfg->dests[d].type == CFG_DEST_S3 && cfg->dests[d].archive_class != NULL;
    }
    if (catalog_plan_objects(cat, add_object, x, err) < 0)
        return -1;
    x->objects = util_xcalloc(x->n_ids + 1, sizeof(*x->objects));
    idmap_init(&x->map, x->n_ids);
    for (size_t i = 0; i < x->n_ids; i++) {
        x->objects[i].id = x->ids[i];
        idmap_put(&x->map, x->ids[i], i);
    }
    if (catalog_plan_versions(cat, add_version, x, err) < 0 ||
        catalog_plan_copies(cat, add_copy, x, err) < 0 ||
        catalog_plan_points(cat, add_point, x, err) < 0 ||
        catalog_plan_snapshots(cat, add_snapshot, x, err) < 0 ||
        catalog_plan_snapshot_objects(cat, add_snapshot_object, x, err) < 0 ||
        catalog_each_hold(cat, 1, add_hold, x, err) < 0)
        return -1;
    for (size_t i = 0; i < x->n_versions; i++)
        x->versions[i].path = x->version_paths[i];
    for (size_t s = 0; s < x->n_snaps; s++) {
        x->snaps[s].label = x->snap_labels[s];
        x->snaps[s].objects = x->snap_objects[s];
        x->snaps[s].n_objects = x->snap_counts[s];
    }
    x->in = (struct plan_input){
        .rules = prune_rules(cfg),
        .zone = x->zone,
        .now = now,
        .dests = x->dests,
        .n_dests = cfg->n_dests,
        .objects = x->objects,
        .n_objects = x->n_ids,
        .versions = x->versions,
        .n_versions = x->n_versions,
        .copies = x->copies,
        .n_copies = x->n_copies,
        .points = x->points,
        .n_points = x->n_points,
        .snapshots = x->snaps,
        .n_snapshots = x->n_snaps,
        .holds = x->holds,
        .n_holds = x->n_holds,
    };
    return 0;
}

/* --- carrying it out --- */

struct run {
    struct cli *cli;
    const struct prune_options *o;
    struct input *x;
    struct dest **dests; /* blocking handles */
    size_t n_dests;
    int64_t now;
    int64_t deleted, failed;
    int64_t transitioned, waiting; /* tier transitions seen done; not yet done */
    char *first_error;
};

static void failed(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void failed(struct run *r, const char *fmt, ...)
{
    char msg[CST_ERR_SIZE];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_error("prune: %s", msg);
    r->failed++;
    if (r->first_error == NULL)
        r->first_error = util_xstrdup(msg);
}

static struct dest *dest_named(struct run *r, const char *name)
{
    for (size_t d = 0; d < r->n_dests; d++)
        if (strcmp(r->dests[d]->name, name) == 0)
            return r->dests[d];
    return NULL;
}

/* Paths of an object's versions (for the audit row and the report), at most 3. */
static void paths_json(struct json *j, const struct input *x, size_t object)
{
    size_t shown = 0;

    json_arr_begin(j);
    for (size_t i = 0; i < x->n_versions && shown < 3; i++)
        if (x->versions[i].object == object) {
            char *p = pathenc_escape(x->versions[i].path, strlen(x->versions[i].path));
            int dup = 0;

            for (size_t k = 0; k < i && !dup; k++)
                dup = x->versions[k].object == object &&
                      strcmp(x->versions[k].path, x->versions[i].path) == 0;
            if (!dup) {
                json_str(j, p);
                shown++;
            }
            free(p);
        }
    json_arr_end(j);
}

/*
 * One remote deletion, resumable: the audit row (and a prune_pending row naming it)
 * first, then the remote delete, then the catalog's record. A pending deletion found
 * from an earlier, interrupted run keeps its audit row. Returns 0, or -1 (counted).
 */
static int delete_remote(struct run *r, const char *what, const char *id, const char *dest_name,
                         const char *key, const char *rule, int64_t object, int64_t *audit_id)
{
    struct catalog *cat = r->cli->cat;
    struct dest *d = dest_named(r, dest_name);
    struct cst_err err;
    int64_t audit;
    int rc;

    if (d == NULL) {
        failed(r, "destination %s is not configured: %s %s stays there", dest_name, what, key);
        return -1;
    }
    audit = catalog_prune_pending_get(cat, what, id, dest_name, key, &err);
    if (audit < 0) {
        failed(r, "%s", err.msg);
        return -1;
    }
    if (audit == 0) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, what);
        json_str(&j, id);
        json_key(&j, "dest");
        json_str(&j, dest_name);
        json_key(&j, "key");
        json_str(&j, key);
        json_key(&j, "rule");
        json_str(&j, rule);
        if (object >= 0) {
            json_key(&j, "paths");
            paths_json(&j, r->x, (size_t)object);
        }
        json_key(&j, "as_of");
        json_time(&j, r->x->in.now);
        json_obj_end(&j);
        rc = catalog_begin(cat, &err);
        if (rc == 0)
            rc = catalog_audit(cat, r->o->actor, "prune_delete", j.buf, &err);
        if (rc == 0) {
            audit = catalog_last_rowid(cat);
            rc = catalog_prune_pending_add(cat, what, id, dest_name, key, audit, &err);
        }
        rc = rc == 0 ? catalog_commit(cat, &err) : (catalog_rollback(cat), -1);
        json_free(&j);
        if (rc < 0) {
            failed(r, "%s", err.msg);
            return -1;
        }
    }
    if (d->ops->remove == NULL || d->ops->remove(d, key, &err) < 0) {
        failed(r, "destination %s: %s: %s", dest_name, key,
               d->ops->remove ? err.msg : "removing is not supported");
        return -1; /* pending: the next run tries again under the same audit row */
    }
    *audit_id = audit;
    return 0;
}

static int finish(struct run *r, const char *what, const char *id, const char *dest,
                  const char *key, int (*record)(struct run *, void *, int64_t), void *arg,
                  int64_t audit)
{
    struct catalog *cat = r->cli->cat;
    struct cst_err err;
    int rc = catalog_begin(cat, &err);

    if (rc == 0 && record)
        rc = record(r, arg, audit);
    if (rc == 0)
        rc = catalog_prune_pending_done(cat, what, id, dest, key, &err);
    rc = rc == 0 ? catalog_commit(cat, &err) : (catalog_rollback(cat), -1);
    if (rc < 0) {
        failed(r, "cannot record the deletion of %s on %s: %s", key, dest, err.msg);
        return -1;
    }
    r->deleted++;
    return 0;
}

struct copy_rec {
    const char *object, *dest, *rule;
    int exempt;
};

static int record_copy(struct run *r, void *arg, int64_t audit)
{
    struct copy_rec *c = arg;
    struct cst_err err;

    if (catalog_copy_pruned(r->cli->cat, c->object, c->dest, c->rule, audit, r->now, &err) < 0 ||
        (c->exempt && catalog_dest_exempt_add(r->cli->cat, c->object, c->dest, r->now, &err) < 0)) {
        log_error("prune: %s", err.msg);
        return -1;
    }
    return 0;
}

/* Every copy of object o (exempt: only on dest, the hot copy the archive tier replaces). */
static int delete_object_copies(struct run *r, size_t o, size_t only_dest, const char *rule)
{
    const struct input *x = r->x;
    int bad = 0;

    for (size_t c = 0; c < x->n_copies; c++) {
        const struct plan_copy *cp = &x->copies[c];
        struct copy_rec rec = {x->ids[o], x->dests[cp->dest].name, rule, only_dest != SIZE_MAX};
        int64_t audit;

        if (cp->object != o || (only_dest != SIZE_MAX && cp->dest != only_dest))
            continue;
        if (delete_remote(r, "object", rec.object, rec.dest, x->copy_keys[c], rule, (int64_t)o,
                          &audit) < 0 ||
            finish(r, "object", rec.object, rec.dest, x->copy_keys[c], record_copy, &rec, audit) <
                0)
            bad = 1;
    }
    return bad ? -1 : 0;
}

struct key_list {
    char **keys, **dests;
    size_t n;
};

static int collect_key(void *arg, const char *key, const char *dest)
{
    struct key_list *l = arg;

    l->keys = util_xrealloc(l->keys, (l->n + 1) * sizeof(char *));
    l->dests = util_xrealloc(l->dests, (l->n + 1) * sizeof(char *));
    l->keys[l->n] = util_xstrdup(key);
    l->dests[l->n++] = util_xstrdup(dest);
    return 0;
}

static void key_list_free(struct key_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->keys[i]);
        free(l->dests[i]);
    }
    free(l->keys);
    free(l->dests);
}

static int delete_point(struct run *r, const char *date, const char *rule)
{
    struct key_list l = {NULL, NULL, 0};
    struct cst_err err;
    int bad = 0;

    if (catalog_each_point_key(r->cli->cat, date, collect_key, &l, &err) < 0) {
        failed(r, "%s", err.msg);
        return -1;
    }
    for (size_t i = 0; i < l.n; i++) {
        int64_t audit;

        if (delete_remote(r, "point", date, l.dests[i], l.keys[i], rule, -1, &audit) < 0 ||
            finish(r, "point", date, l.dests[i], l.keys[i], NULL, NULL, audit) < 0)
            bad = 1;
    }
    key_list_free(&l);
    if (!bad && (catalog_point_pruned(r->cli->cat, date, r->now, &err) < 0)) {
        failed(r, "%s", err.msg);
        bad = 1;
    }
    return bad ? -1 : 0;
}

struct snap_keys {
    struct key_list *l;
    const char *remote_key, *sig_key;
};

static int snapshot_dest(void *arg, const char *dest, const char *storage_class,
                         int64_t retain_until, int64_t verified_at)
{
    struct snap_keys *k = arg;

    (void)storage_class;
    (void)retain_until;
    (void)verified_at;
    collect_key(k->l, k->remote_key, dest);
    collect_key(k->l, k->sig_key, dest);
    return 0;
}

static int delete_snapshot(struct run *r, int64_t id, const char *rule)
{
    struct catalog_snapshot s;
    struct key_list l = {NULL, NULL, 0};
    struct cst_err err;
    char idtext[24];
    int bad = 0;

    snprintf(idtext, sizeof(idtext), "%lld", (long long)id);
    memset(&s, 0, sizeof(s));
    {
        /* Its keys and its destinations: from the catalog row. */
        struct catalog *cat = r->cli->cat;
        int found = 0;

        for (size_t i = 0; i < r->x->n_snaps && !found; i++)
            found = r->x->snap_ids[i] == id;
        if (!found)
            return 0;
        if (catalog_snapshot_by_id(cat, id, &s, &err) != 1) {
            failed(r, "snapshot %s: %s", idtext, err.msg);
            return -1;
        }
    }
    struct snap_keys k = {&l, s.remote_key, s.sig_key};
    if (catalog_each_snapshot_copy(r->cli->cat, id, snapshot_dest, &k, &err) < 0) {
        failed(r, "%s", err.msg);
        catalog_snapshot_clear(&s);
        return -1;
    }
    for (size_t i = 0; i < l.n; i++) {
        int64_t audit;

        if (delete_remote(r, "snapshot", idtext, l.dests[i], l.keys[i], rule, -1, &audit) < 0 ||
            finish(r, "snapshot", idtext, l.dests[i], l.keys[i], NULL, NULL, audit) < 0)
            bad = 1;
    }
    key_list_free(&l);
    catalog_snapshot_clear(&s);
    if (!bad && catalog_snapshot_pruned(r->cli->cat, id, r->now, &err) < 0) {
        failed(r, "%s", err.msg);
        bad = 1;
    }
    return bad ? -1 : 0;
}

/* --- reporting --- */

static const char *reason_names(unsigned reasons, char *buf, size_t size)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{PLAN_KEEP_LIVE, "past retention, still live"},
                 {PLAN_KEEP_HOLD, "legal hold"},
                 {PLAN_KEEP_SNAPSHOT, "snapshot"},
                 {PLAN_KEEP_POINT, "restore point"},
                 {PLAN_KEEP_LOCK, "object lock"},
                 {PLAN_KEEP_COPIES, "fewer than min_copies archive copies: hot copies stay"}};

    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (reasons & names[i].bit) {
            size_t len = strlen(buf);

            snprintf(buf + len, size - len, "%s%s", len ? ", " : "", names[i].name);
        }
    return buf;
}

static const char *action_name(enum plan_action_kind k)
{
    switch (k) {
    case PLAN_TRANSITION:
        return "transition";
    case PLAN_DELETE_COPY:
        return "delete hot copy";
    case PLAN_DELETE_OBJECT:
        return "delete object";
    case PLAN_DELETE_POINT:
        return "delete restore point";
    case PLAN_DELETE_SNAPSHOT:
        return "delete snapshot";
    }
    return "?";
}

/* --- the tier transition on S3: the bucket's lifecycle rule moves a copy, in place --- */

/* Each S3 destination with an archive_class has custodian's lifecycle rule (installed when
 * the bucket has none): under Object Lock a self-copy would make a second locked version
 * and double the storage until the lock ends. */
static void ensure_lifecycle_rules(struct run *r)
{
    const struct cfg *cfg = r->cli->cfg;
    struct cst_err err;

    for (size_t d = 0; d < r->n_dests && d < cfg->n_dests; d++)
        if (cfg->dests[d].type == CFG_DEST_S3 && cfg->dests[d].archive_class &&
            cfg->dests[d].role != CFG_ROLE_ARCHIVE &&
            dest_s3_lifecycle_ensure(r->dests[d], &err) < 0)
            failed(r, "%s", err.msg);
}

/* A copy the plan wants in the archive class: once HEAD shows it there (the rule has
 * acted), the catalog records it in the archive tier, where it counts for min_copies. */
static void transition_copy(struct run *r, size_t o, size_t d)
{
    const struct cfg_dest *cd = &r->cli->cfg->dests[d];
    struct dest *dest = r->dests[d];
    struct dest_stat st;
    struct cst_err err;
    char *key = dest_object_key(r->x->ids[o]);
    int rc = dest->ops->stat ? dest->ops->stat(dest, key, &st, &err) : 0;

    if (rc < 0) {
        failed(r, "cannot check the class of %s on %s: %s", key, cd->name, err.msg);
    } else if (rc == 1 && cd->archive_class && strcmp(st.storage_class, cd->archive_class) == 0) {
        if (catalog_copy_set_tier(r->cli->cat, r->x->ids[o], cd->name, "archive", &err) < 0) {
            failed(r, "%s", err.msg);
        } else {
            r->transitioned++;
            log_info("transitioned object=%.16s dest=%s class=%s", r->x->ids[o], cd->name,
                     st.storage_class);
        }
    } else {
        r->waiting++; /* the rule acts days after hot_months' calendar date, at most */
        log_info("waiting for the lifecycle rule object=%.16s dest=%s class=%s", r->x->ids[o],
                 cd->name, rc == 1 ? st.storage_class : "(missing)");
    }
    free(key);
}

static int64_t newest_capture(const struct input *x, size_t o)
{
    int64_t t = 0;

    for (size_t i = 0; i < x->n_versions; i++)
        if (x->versions[i].object == o && x->versions[i].captured_at > t)
            t = x->versions[i].captured_at;
    return t;
}

static void report(struct cli *cli, const struct input *x, const struct plan_output *out,
                   const struct run *r)
{
    char reasons[256];

    if (cli->json) {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "as_of");
        json_time(&j, x->in.now);
        json_key(&j, "confirmed");
        json_bool(&j, r != NULL);
        json_key(&j, "actions");
        json_arr_begin(&j);
        for (size_t i = 0; i < out->n_actions; i++) {
            const struct plan_action *a = &out->actions[i];

            json_obj_begin(&j);
            json_key(&j, "action");
            json_str(&j, action_name(a->kind));
            json_key(&j, "rule");
            json_str(&j, a->rule);
            if (a->kind == PLAN_DELETE_POINT) {
                json_key(&j, "date");
                json_str(&j, x->point_dates[a->index]);
            } else if (a->kind == PLAN_DELETE_SNAPSHOT) {
                json_key(&j, "snapshot");
                json_str(&j, x->snap_labels[a->index]);
                json_key(&j, "closed_at");
                json_time(&j, x->snaps[a->index].closed_at);
            } else {
                json_key(&j, "object");
                json_str(&j, x->ids[a->index]);
                json_key(&j, "paths");
                paths_json(&j, x, a->index);
                json_key(&j, "captured_at");
                json_time(&j, newest_capture(x, a->index));
                json_key(&j, "destinations");
                json_arr_begin(&j);
                for (size_t c = 0; c < x->n_copies; c++)
                    if (x->copies[c].object == a->index &&
                        (a->kind == PLAN_DELETE_OBJECT || x->copies[c].dest == a->dest))
                        json_str(&j, x->dests[x->copies[c].dest].name);
                json_arr_end(&j);
            }
            json_obj_end(&j);
        }
        json_arr_end(&j);
        json_key(&j, "kept");
        json_arr_begin(&j);
        for (size_t i = 0; i < out->n_keeps; i++) {
            json_obj_begin(&j);
            json_key(&j, "object");
            json_str(&j, x->ids[out->keeps[i].object]);
            json_key(&j, "paths");
            paths_json(&j, x, out->keeps[i].object);
            json_key(&j, "reasons");
            json_str(&j, reason_names(out->keeps[i].reasons, reasons, sizeof(reasons)));
            json_obj_end(&j);
        }
        json_arr_end(&j);
        json_key(&j, "deleted");
        json_int(&j, r ? r->deleted : 0);
        json_key(&j, "failed");
        json_int(&j, r ? r->failed : 0);
        json_key(&j, "transitioned");
        json_int(&j, r ? r->transitioned : 0);
        json_key(&j, "waiting_transition");
        json_int(&j, r ? r->waiting : 0);
        json_key(&j, "error");
        json_str(&j, r ? r->first_error : NULL);
        json_obj_end(&j);
        json_print(&j, stdout);
        json_free(&j);
        return;
    }
    for (size_t i = 0; i < out->n_actions; i++) {
        const struct plan_action *a = &out->actions[i];
        char when[40];

        if (a->kind == PLAN_DELETE_POINT) {
            printf("%-22s %s (%s)\n", action_name(a->kind), x->point_dates[a->index], a->rule);
        } else if (a->kind == PLAN_DELETE_SNAPSHOT) {
            printf("%-22s %s (%s)\n", action_name(a->kind), x->snap_labels[a->index], a->rule);
        } else {
            util_format_ms(newest_capture(x, a->index), when, sizeof(when));
            printf("%-22s %.16s on %s, captured %s (%s)\n", action_name(a->kind), x->ids[a->index],
                   a->kind == PLAN_DELETE_OBJECT ? "every destination" : x->dests[a->dest].name,
                   when, a->rule);
        }
    }
    for (size_t i = 0; i < out->n_keeps; i++)
        printf("%-22s %.16s: %s\n", "kept", x->ids[out->keeps[i].object],
               reason_names(out->keeps[i].reasons, reasons, sizeof(reasons)));
    printf("%zu actions, %zu objects kept past a date%s", out->n_actions, out->n_keeps,
           r ? "" : " (a dry run: nothing was changed; --confirm acts)");
    if (r)
        printf(": %lld deletions done, %lld failed", (long long)r->deleted, (long long)r->failed);
    if (r && (r->transitioned || r->waiting))
        printf("; %lld copies in the archive class now, %lld waiting for the bucket's lifecycle "
               "rule",
               (long long)r->transitioned, (long long)r->waiting);
    printf("\n");
}

int prune_run(struct cli *cli, const struct prune_options *o)
{
    struct input x;
    struct plan_output out;
    struct run r;
    struct cst_err err;
    int64_t now = util_now_ms(), as_of = o->as_of ? o->as_of : now, run_id = 0;
    int rc;

    if ((rc = cli_load_config(cli)) != EXIT_OK ||
        (rc = cli_open_catalog(cli, !o->confirm)) != EXIT_OK)
        return rc;
    if (input_load(&x, cli, as_of, &err) < 0) {
        input_free(&x);
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    }
    plan_compute(&x.in, &out);
    if (!o->confirm) {
        report(cli, &x, &out, NULL);
        plan_output_free(&out);
        input_free(&x);
        return EXIT_OK;
    }
    memset(&r, 0, sizeof(r));
    r.cli = cli;
    r.o = o;
    r.x = &x;
    r.now = now;
    if (catalog_prune_run_begin(cli->cat, now, as_of, 1, &run_id, &err) < 0 ||
        dests_open(cli->cfg, NULL, &r.dests, &r.n_dests, &err) < 0) {
        plan_output_free(&out);
        input_free(&x);
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    }
    /* Transitions first: a copy now in the archive class counts for min_copies, so the
     * plan is made again before the hot copies it frees are deleted. */
    ensure_lifecycle_rules(&r);
    for (size_t i = 0; i < out.n_actions; i++)
        if (out.actions[i].kind == PLAN_TRANSITION)
            transition_copy(&r, out.actions[i].index, out.actions[i].dest);
    if (r.transitioned > 0) {
        plan_output_free(&out);
        input_free(&x);
        if (input_load(&x, cli, as_of, &err) < 0) {
            failed(&r, "%s", err.msg);
            input_free(&x);
            dests_free(r.dests, r.n_dests);
            free(r.first_error);
            return cli_fail(EXIT_FAILED, "%s", err.msg);
        }
        plan_compute(&x.in, &out);
    }
    /* A deletion an interrupted run audited is reached again by the same plan:
     * delete_remote finds its pending row and reuses its audit row. */
    for (size_t i = 0; i < out.n_actions; i++) {
        const struct plan_action *a = &out.actions[i];

        switch (a->kind) {
        case PLAN_DELETE_OBJECT:
            if (delete_object_copies(&r, a->index, SIZE_MAX, a->rule) == 0 &&
                catalog_object_pruned(cli->cat, x.ids[a->index], now, &err) < 0)
                failed(&r, "%s", err.msg);
            break;
        case PLAN_DELETE_COPY:
            delete_object_copies(&r, a->index, a->dest, a->rule);
            break;
        case PLAN_DELETE_POINT:
            delete_point(&r, x.point_dates[a->index], a->rule);
            break;
        case PLAN_DELETE_SNAPSHOT:
            delete_snapshot(&r, x.snap_ids[a->index], a->rule);
            break;
        case PLAN_TRANSITION:
            break; /* done above, or waiting for the bucket's rule */
        }
    }
    {
        /* Copies shipped since the last prune of objects a hold covers: the bucket holds
         * them too (a day's overlap, so a copy made during the last run is not missed). */
        int64_t since = catalog_prune_last_ok_at(cli->cat), set = 0, nf = 0;

        since = since > 0 ? since - 24LL * 3600 * 1000 : 0;
        if (hold_flags_catch_up(cli, r.dests, r.n_dests, since, &set, &nf, &err) < 0)
            failed(&r, "legal-hold flags: %s", err.msg);
        else if (nf > 0)
            failed(&r, "the legal-hold flag could not be set on %lld copies: %s", (long long)nf,
                   err.msg);
        if (set > 0 && !cli->json)
            printf("legal-hold flag set on %lld copies shipped since the last prune\n",
                   (long long)set);
    }
    report(cli, &x, &out, &r);
    {
        struct json j;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "as_of");
        json_time(&j, as_of);
        json_key(&j, "deleted");
        json_int(&j, r.deleted);
        json_key(&j, "failed");
        json_int(&j, r.failed);
        json_key(&j, "kept");
        json_int(&j, (int64_t)out.n_keeps);
        json_key(&j, "outcome");
        json_str(&j, r.failed ? "failed" : "ok");
        json_obj_end(&j);
        if (catalog_prune_run_end(cli->cat, run_id, r.failed ? "failed" : "ok", r.deleted,
                                  (int64_t)out.n_keeps, r.first_error, util_now_ms(), &err) < 0 ||
            catalog_audit(cli->cat, o->actor, "prune", j.buf, &err) < 0)
            failed(&r, "%s", err.msg);
        json_free(&j);
    }
    rc = r.failed ? cli_fail(EXIT_FAILED, "prune: %lld deletions failed, first: %s",
                             (long long)r.failed, r.first_error)
                  : EXIT_OK;
    dests_free(r.dests, r.n_dests);
    free(r.first_error);
    plan_output_free(&out);
    input_free(&x);
    return rc;
}

/* --- prune --check: what each destination holds against the catalog and the plan --- */

struct listing {
    char **ids;
    size_t n, cap;
};

static int list_object(void *arg, const char *key, uint64_t size)
{
    struct listing *l = arg;
    const char *slash = strrchr(key, '/');

    (void)size;
    GROW(l->ids, l->n, l->cap);
    l->ids[l->n++] = util_xstrdup(slash ? slash + 1 : key);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int listed(const struct listing *l, const char *id)
{
    return l->n > 0 && bsearch(&id, l->ids, l->n, sizeof(char *), cmp_str) != NULL;
}

/* One problem prune --check found: printed (a FAIL line) and the first kept for a report. */
static void check_problem(struct prune_check_result *r, int print, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check_problem(struct prune_check_result *r, int print, const char *fmt, ...)
{
    char line[sizeof(r->first)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (print)
        printf("FAIL  %s\n", line);
    if (r->first[0] == '\0')
        snprintf(r->first, sizeof(r->first), "%s", line);
}

int prune_check_dests(struct cli *cli, int64_t as_of, struct dest **dests, size_t nd, int print,
                      struct prune_check_result *r, struct cst_err *err)
{
    struct input x;
    struct plan_output out;

    memset(r, 0, sizeof(*r));
    if (input_load(&x, cli, as_of ? as_of : util_now_ms(), err) < 0) {
        input_free(&x);
        return -1;
    }
    plan_compute(&x.in, &out);
    for (size_t d = 0; d < nd; d++) {
        struct listing l = {NULL, 0, 0};
        int64_t unknown = 0, missing = 0, stale = 0, left = 0;
        struct cst_err lerr;

        r->dests++;
        if (dests[d]->ops->list == NULL ||
            dests[d]->ops->list(dests[d], "objects/", list_object, &l, &lerr) < 0) {
            check_problem(r, print, "%s: cannot list it: %s", dests[d]->name,
                          dests[d]->ops->list ? lerr.msg : "listing is not supported");
            r->unlistable++;
            continue;
        }
        if (l.n > 1) /* an empty listing has no array (qsort wants one) */
            qsort(l.ids, l.n, sizeof(char *), cmp_str);
        r->listed += (int64_t)l.n;
        /* Recorded good copies must be there; copies the plan removes must not be. */
        for (size_t c = 0; c < x.n_copies; c++) {
            const struct plan_copy *cp = &x.copies[c];

            if (cp->dest != d || !cp->verified)
                continue;
            if (!listed(&l, x.ids[cp->object])) {
                check_problem(r, print, "%s: %s is recorded but not there", dests[d]->name,
                              x.ids[cp->object]);
                missing++;
            }
        }
        for (size_t i = 0; i < out.n_actions; i++) {
            const struct plan_action *a = &out.actions[i];

            if ((a->kind == PLAN_DELETE_OBJECT || (a->kind == PLAN_DELETE_COPY && a->dest == d)) &&
                listed(&l, x.ids[a->index])) {
                check_problem(r, print, "%s: %s is past retention and still there (%s)",
                              dests[d]->name, x.ids[a->index], a->rule);
                left++;
            }
        }
        /* Everything there must be known. */
        for (size_t i = 0; i < l.n; i++) {
            size_t o = idmap_get(&x.map, l.ids[i]);
            int has = 0;

            for (size_t c = 0; o != SIZE_MAX && c < x.n_copies && !has; c++)
                has = x.copies[c].object == o && x.copies[c].dest == d;
            if (has)
                continue;
            if (catalog_pruned_copy_has(cli->cat, l.ids[i], dests[d]->name, &lerr) == 1) {
                check_problem(r, print, "%s: %s was pruned and is still there", dests[d]->name,
                              l.ids[i]);
                stale++;
            } else if (o == SIZE_MAX) {
                struct catalog_object obj;

                /* Shipped by a running agent since the plan was read (the listing of a
                 * large destination takes a while): recorded now, so not a stranger. */
                if (catalog_object_get(cli->cat, l.ids[i], &obj, &lerr) == 1)
                    continue;
                check_problem(r, print, "%s: %s is not in the catalog (reported, never deleted)",
                              dests[d]->name, l.ids[i]);
                unknown++;
            }
        }
        if (print)
            printf("%s  %s: %zu objects listed; %lld recorded but missing, %lld past retention "
                   "still there, %lld pruned but still there, %lld unknown\n",
                   missing + left + stale + unknown ? "FAIL" : "ok  ", dests[d]->name, l.n,
                   (long long)missing, (long long)left, (long long)stale, (long long)unknown);
        r->missing += missing;
        r->left += left;
        r->stale += stale;
        r->unknown += unknown;
        for (size_t i = 0; i < l.n; i++)
            free(l.ids[i]);
        free(l.ids);
    }
    r->problems = r->unlistable + r->missing + r->left + r->stale + r->unknown;
    {
        struct json j;
        struct cst_err aerr;

        json_init(&j);
        json_obj_begin(&j);
        json_key(&j, "problems");
        json_int(&j, r->problems);
        json_key(&j, "outcome");
        json_str(&j, r->problems ? "failed" : "passed");
        json_obj_end(&j);
        if (catalog_audit(cli->cat, cli_user(), "prune_check", j.buf, &aerr) < 0)
            log_warn("%s", aerr.msg);
        json_free(&j);
    }
    plan_output_free(&out);
    input_free(&x);
    return 0;
}

int prune_check(struct cli *cli, int64_t as_of)
{
    struct prune_check_result r;
    struct dest **dests;
    struct cst_err err;
    size_t nd;
    int rc;

    if ((rc = cli_load_config(cli)) != EXIT_OK || (rc = cli_open_catalog(cli, 0)) != EXIT_OK)
        return rc;
    if (dests_open(cli->cfg, NULL, &dests, &nd, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    rc = prune_check_dests(cli, as_of, dests, nd, 1, &r, &err);
    dests_free(dests, nd);
    if (rc < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (r.problems)
        return cli_fail(EXIT_FAILED, "prune --check: %lld problems (above)", (long long)r.problems);
    printf("every destination holds what the retention plan says, and nothing else\n");
    return EXIT_OK;
}
