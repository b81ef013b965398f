/*
 * config.h - the agent's INI configuration, loaded once into a struct cfg.
 *
 * Every key the agent understands is described in one table in config.c
 * (section, key, type, bounds, default, help); loading, validation and the
 * operator reference (cfg_print_reference) are all driven by it. Errors name
 * the file, the line and the key, so `custodian doctor` and start-up can say
 * exactly what to fix. Relative paths are resolved against the directory
 * holding the config file and stored absolute.
 */
#ifndef CST_CONFIG_H
#define CST_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "../common/err.h"

enum cfg_dest_type { CFG_DEST_LOCAL, CFG_DEST_S3, CFG_DEST_SFTP };
enum cfg_dest_role { CFG_ROLE_PRIMARY, CFG_ROLE_REPLICA, CFG_ROLE_ARCHIVE };
enum cfg_lock_mode { CFG_LOCK_NONE = -1, CFG_LOCK_GOVERNANCE, CFG_LOCK_COMPLIANCE };

struct cfg_dest {
    char *name; /* from [destination NAME] */
    enum cfg_dest_type type;
    enum cfg_dest_role role; /* default primary */
    char *path;              /* local */
    char *endpoint, *bucket, *region, *access_key_file, *secret_key_file, *ca_file, *hot_class,
        *archive_class;  /* s3; region defaults to us-east-1, the rest may be NULL */
    int path_style;      /* s3 boolean (0/1), default 0 */
    int object_lock;     /* s3 boolean (0/1), default 0 */
    int lock_mode;       /* s3: enum cfg_lock_mode; required with object_lock, else NONE */
    char *url;           /* sftp: sftp://user@host:port/base */
    char *identity;      /* sftp, may be NULL */
    char *known_hosts;   /* sftp, may be NULL */
    int max_inflight;    /* 1..64, default 4 */
    long bandwidth_kbps; /* 0 = unlimited (default) */
    int part_size_mb;    /* s3: multipart above this, 5..5120, default 64 */
    int readback_mb;     /* sftp: copies up to this size are read back whole, default 256 */
};

/* [snapshots]: where the billing app keeps its periods, invoices and timesheets
 * (collection and field names; fields may be dotted paths into sub-documents). */
struct cfg_snapshots {
    int enabled; /* default yes; effective only with [mongodb] uri */
    char *periods_collection, *period_label_field, *period_start_field, *period_end_field,
        *period_closed_field, *period_key_field;
    char *invoices_collection, *invoice_period_field, *invoice_file_field,
        *invoice_timesheets_field; /* the last may be NULL */
    char *timesheets_collection, *timesheet_period_field, *timesheet_file_field;
    char *files_root;       /* default: the common parent of the [watch] paths */
    long poll_ms;           /* poll_minutes, in milliseconds */
    long wait_for_files_ms; /* wait_for_files_minutes, in milliseconds */
};

struct cfg {
    char *file;                   /* the config file's path as given */
    char *state_dir;              /* default /var/lib/custodian */
    char *timezone;               /* default America/New_York; exists as /usr/share/zoneinfo/<tz> */
    int daily_hour, daily_minute; /* from daily_at "HH:MM", default 02:00 */
    int settle_ms;                /* 0..600000, default 1500 */
    int max_delay_ms;             /* 1000..86400000, default 60000, >= settle_ms */
    int log_level;                /* enum log_level from common/log.h; default info */
    int workers;                  /* 1..64, default 2: hashing/compression threads */
    char **watch_paths;           /* [watch] path: absolute, no trailing slash; at least one */
    size_t n_watch_paths;
    int *watch_path_lines; /* config line of each watch path (for messages); may be NULL */
    char **excludes;       /* [watch] exclude: fnmatch(3) globs */
    size_t n_excludes;
    char *public_key, *naming_key, *signing_key; /* [keys], required */
    char *secret_key;                            /* [keys], optional (only where restores run) */
    struct cfg_dest *dests;                      /* at least one */
    size_t n_dests;
    char *mongodb_uri, *dump_command; /* [mongodb], both optional (NULL) */
    int hot_months;                   /* 1..1200, default 24 */
    int delete_after_months;          /* 1..1200 and > hot_months, default 84 */
    int keep_daily;                   /* 1..10000, default 35 */
    int keep_monthly_months;          /* 1..1200, default delete_after_months */
    int min_copies;                   /* 1..32, default 2 */
    int prune;                        /* boolean, default yes */
    int verify_per_day;               /* [verify] per_day: 0..100000000, default 3000 */
    char *metrics_textfile;           /* [metrics] textfile, NULL: none */
    struct cfg_snapshots snap;        /* [snapshots] */
};

/* Billing-cycle snapshots run: enabled and a MongoDB to read the periods from. */
int cfg_snapshots_on(const struct cfg *cfg);

/* Read and validate the config file at path. NULL and err filled on any problem. */
struct cfg *cfg_load(const char *path, struct cst_err *err);

/* cfg_free(NULL) does nothing. */
void cfg_free(struct cfg *cfg);

/*
 * Each watch path must exist and be a directory. A separate step from
 * cfg_load so that commands that never watch (restore on another host,
 * keygen) work without the data folders. -1 and err naming the config line.
 */
int cfg_check_watch_paths(const struct cfg *cfg, struct cst_err *err);

/*
 * Every key of the table as tab-separated lines "section key type default help",
 * after one header line: the source for docs/configuration.md and the man page.
 */
void cfg_print_reference(FILE *out);

#endif
