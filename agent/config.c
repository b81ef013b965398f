/*
 * config.c - loading custodian.conf: the key tables, the line reader that
 * feeds libinih, value parsing by type, and the checks that span keys.
 *
 * The tables below are the only description of the configuration: parsing,
 * defaults, bounds, error messages and the operator reference
 * (cfg_print_reference) are all derived from them, in the manner of tmux's
 * options-table.c. Adding a key means adding a struct field and a table row.
 *
 * libinih does the key = value splitting. We read the lines for it (our
 * reader is fgets-like, called once per line) because Debian builds libinih
 * without INI_HANDLER_LINENO and we need line numbers in every message;
 * the reader also sees section headers, which libinih does not report.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <ini.h>

#include "../common/log.h"
#include "cmdline.h"

#define CFG_ZONEINFO_DIR "/usr/share/zoneinfo"
#define CFG_DEST_NAME_MAX 64

enum cfg_key_type {
    KT_STRING,
    KT_COMMAND, /* a command line, split into words by agent/cmdline.c and run without a shell */
    KT_PATH,
    KT_URL,
    KT_INT,
    KT_BOOL,
    KT_ENUM,
    KT_TIME_OF_DAY,
    KT_TIMEZONE,
    KT_PATH_LIST,
    KT_GLOB_LIST,
    KT_MINUTES, /* a decimal number of minutes ("15", "0.5"), stored as long milliseconds;
                 * min and max are in milliseconds */
};

struct cfg_key {
    const char *section; /* "agent", ...; "destination" for the destination table */
    const char *name;
    enum cfg_key_type type;
    int required;               /* main table: the key must appear */
    unsigned dest_types;        /* destination table: types the key belongs to */
    unsigned dest_required;     /* destination table: types that need it */
    const char *const *choices; /* KT_ENUM: names, index = value; KT_URL: schemes */
    long min, max;              /* KT_INT */
    const char *default_value;  /* parsed exactly like a value from the file */
    size_t off, width;          /* the field, in struct cfg or struct cfg_dest */
    size_t minute_off;          /* KT_TIME_OF_DAY: the minute field (off is the hour) */
    size_t count_off;           /* lists: the size_t count */
    size_t lines_off;           /* lists: int array of config lines; 0 = not kept */
    const char *help;
};

#define CFG_FIELD(f) .off = offsetof(struct cfg, f), .width = sizeof(((struct cfg *)0)->f)
#define DEST_FIELD(f)                                                                              \
    .off = offsetof(struct cfg_dest, f), .width = sizeof(((struct cfg_dest *)0)->f)

#define DT_LOCAL (1u << CFG_DEST_LOCAL)
#define DT_S3 (1u << CFG_DEST_S3)
#define DT_SFTP (1u << CFG_DEST_SFTP)
#define DT_ALL (DT_LOCAL | DT_S3 | DT_SFTP)

/* The enum value stored for log_level is the index in this list. */
_Static_assert(LOG_ERROR == 0 && LOG_WARN == 1 && LOG_INFO == 2 && LOG_DEBUG == 3,
               "cfg_log_levels must follow enum log_level");
static const char *const cfg_log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const cfg_dest_types[] = {"local", "s3", "sftp", NULL};
static const char *const cfg_dest_roles[] = {"primary", "replica", "archive", NULL};
/* The index is enum cfg_lock_mode. */
static const char *const cfg_lock_modes[] = {"GOVERNANCE", "COMPLIANCE", NULL};
static const char *const cfg_s3_schemes[] = {"https://", "http://", NULL};
static const char *const cfg_sftp_schemes[] = {"sftp://", NULL};
static const char *const cfg_mongodb_schemes[] = {"mongodb://", "mongodb+srv://", NULL};

static const struct cfg_key cfg_main_keys[] = {
    {.section = "agent",
     .name = "state_dir",
     .type = KT_PATH,
     .default_value = "/var/lib/custodian",
     CFG_FIELD(state_dir),
     .help = "Directory for catalog.db, the spool of encrypted objects awaiting upload, and "
             "locks."},
    {.section = "agent",
     .name = "timezone",
     .type = KT_TIMEZONE,
     .default_value = "America/New_York",
     CFG_FIELD(timezone),
     .help = "Time zone of daily_at, of dates given on the command line and of reports; a "
             "name under " CFG_ZONEINFO_DIR "."},
    {.section = "agent",
     .name = "daily_at",
     .type = KT_TIME_OF_DAY,
     .default_value = "02:00",
     CFG_FIELD(daily_hour),
     .minute_off = offsetof(struct cfg, daily_minute),
     .help = "Local time of the daily protection run (DB dump, restore point, manifests, "
             "catalog copy). A run missed while the host was down runs at start-up."},
    {.section = "agent",
     .name = "settle_ms",
     .type = KT_INT,
     .min = 0,
     .max = 600000,
     .default_value = "1500",
     CFG_FIELD(settle_ms),
     .help = "A file changed but not closed ships after this many milliseconds without "
             "change; a file closed after writing ships at once."},
    {.section = "agent",
     .name = "max_delay_ms",
     .type = KT_INT,
     .min = 1000,
     .max = 86400000,
     .default_value = "60000",
     CFG_FIELD(max_delay_ms),
     .help = "A file that keeps changing (a log written every second) is shipped anyway once it "
             "has waited this many milliseconds, from a consistent read, and again when it "
             "settles; at least settle_ms."},
    {.section = "agent",
     .name = "log_level",
     .type = KT_ENUM,
     .choices = cfg_log_levels,
     .default_value = "info",
     CFG_FIELD(log_level),
     .help = "Least important messages that are logged."},
    {.section = "agent",
     .name = "workers",
     .type = KT_INT,
     .min = 1,
     .max = 64,
     .default_value = "2",
     CFG_FIELD(workers),
     .help = "Threads that hash and compress files."},
    {.section = "watch",
     .name = "path",
     .type = KT_PATH_LIST,
     .required = 1,
     CFG_FIELD(watch_paths),
     .count_off = offsetof(struct cfg, n_watch_paths),
     .lines_off = offsetof(struct cfg, watch_path_lines),
     .help = "A folder to protect, with everything below it. Repeat the key for each folder."},
    {.section = "watch",
     .name = "exclude",
     .type = KT_GLOB_LIST,
     CFG_FIELD(excludes),
     .count_off = offsetof(struct cfg, n_excludes),
     .help = "Files matching this glob are not backed up, e.g. *.tmp. Repeatable."},
    {.section = "keys",
     .name = "public_key",
     .type = KT_PATH,
     .required = 1,
     CFG_FIELD(public_key),
     .help = "The operator's X25519 public key (backup.pub); every object is encrypted to it."},
    {.section = "keys",
     .name = "naming_key",
     .type = KT_PATH,
     .required = 1,
     CFG_FIELD(naming_key),
     .help = "Secret key that names objects (keyed BLAKE2b), so that names reveal nothing "
             "about contents. Mode 0600."},
    {.section = "keys",
     .name = "signing_key",
     .type = KT_PATH,
     .required = 1,
     CFG_FIELD(signing_key),
     .help = "Ed25519 secret key that signs manifests. Mode 0600."},
    {.section = "keys",
     .name = "secret_key",
     .type = KT_PATH,
     CFG_FIELD(secret_key),
     .help = "The X25519 secret key (backup.key) that decrypts backups. Only on hosts that "
             "restore; keep it off the app host. Mode 0600."},
    {.section = "mongodb",
     .name = "uri",
     .type = KT_URL,
     .choices = cfg_mongodb_schemes,
     CFG_FIELD(mongodb_uri),
     .help = "The database dumped by the daily run; no dump when unset."},
    {.section = "mongodb",
     .name = "dump_command",
     .type = KT_COMMAND,
     CFG_FIELD(dump_command),
     .help = "A command that writes a mongodump --archive to stdout, used instead of the "
             "built-in dump, e.g. docker exec NAME mongodump --archive. It is run directly, "
             "without a shell. Words are split at blanks; single quotes keep what they hold "
             "as it is; double quotes too, except that a backslash in them keeps a following "
             "double quote or backslash; outside quotes a backslash keeps the next character. "
             "The characters a shell gives a meaning to (the pipe, & ; < > ( ) $ * ? [ ] { }, "
             "the backquote, and ~ or # starting a word) are refused unless quoted: for pipes, "
             "redirections or variables, write a script and name it. Logs, errors and status "
             "name only the command (its first word) and mask passwords in what it prints; "
             "ps shows its arguments, so keep passwords out of them (mongodump --config FILE)."},
    {.section = "verify",
     .name = "per_day",
     .type = KT_INT,
     .min = 0,
     .max = 100000000,
     .default_value = "3000",
     CFG_FIELD(verify_per_day),
     .help = "Rolling verification: copies read back and hashed per destination per day, least "
             "recently checked first, so every copy is re-read within copies/per_day days. A "
             "copy found missing or different is marked damaged and copied again. 0 turns it "
             "off (status then says so)."},
    {.section = "metrics",
     .name = "textfile",
     .type = KT_PATH,
     CFG_FIELD(metrics_textfile),
     .help = "Prometheus text file the agent rewrites every 15 s (atomically) for "
             "node_exporter's textfile collector, e.g. "
             "/var/lib/node_exporter/textfile_collector/custodian.prom. Unset: no metrics."},
    {.section = "retention",
     .name = "hot_months",
     .type = KT_INT,
     .min = 1,
     .max = 1200,
     .default_value = "24",
     CFG_FIELD(hot_months),
     .help = "Months an object stays in the hot tier before it moves to the archive tier."},
    {.section = "retention",
     .name = "delete_after_months",
     .type = KT_INT,
     .min = 1,
     .max = 1200,
     .default_value = "84",
     CFG_FIELD(delete_after_months),
     .help = "Months after which an object is deleted unless a legal hold covers it; must be "
             "greater than hot_months."},
    {.section = "retention",
     .name = "keep_daily",
     .type = KT_INT,
     .min = 1,
     .max = 10000,
     .default_value = "35",
     CFG_FIELD(keep_daily),
     .help = "Daily restore points kept whole: the last keep_daily days (every point of the "
             "first of each month is kept longer, see keep_monthly_months)."},
    {.section = "retention",
     .name = "keep_monthly_months",
     .type = KT_INT,
     .min = 1,
     .max = 1200,
     CFG_FIELD(keep_monthly_months),
     .help = "The first daily restore point of each month is kept this many months (the "
             "database holds records the plan keeps seven years). Default: "
             "delete_after_months; at most delete_after_months."},
    {.section = "retention",
     .name = "min_copies",
     .type = KT_INT,
     .min = 1,
     .max = 32,
     .default_value = "2",
     CFG_FIELD(min_copies),
     .help = "Verified copies on distinct destinations in the archive tier that an object needs "
             "before its hot copies are deleted at hot_months; fewer: the hot copies stay, "
             "with a warning."},
    {.section = "retention",
     .name = "prune",
     .type = KT_BOOL,
     .default_value = "yes",
     CFG_FIELD(prune),
     .help = "The agent carries the retention plan out once a day, after the daily run "
             "(`custodian prune --confirm`); no: only when an operator runs it."},
    {.section = "snapshots",
     .name = "enabled",
     .type = KT_BOOL,
     .default_value = "yes",
     CFG_FIELD(snap.enabled),
     .help = "Make billing-cycle snapshots (docs/operations.md). They need [mongodb] uri; set no "
             "where the billing periods are not in that database."},
    {.section = "snapshots",
     .name = "periods_collection",
     .type = KT_STRING,
     .default_value = "billingPeriods",
     CFG_FIELD(snap.periods_collection),
     .help = "Collection holding one document per billing period."},
    {.section = "snapshots",
     .name = "period_label_field",
     .type = KT_STRING,
     .default_value = "label",
     CFG_FIELD(snap.period_label_field),
     .help = "Field of a period holding its label, the name in snapshot_<label>_<YYYYMMDD>. "
             "Fields may be dotted paths into sub-documents (a.b.c)."},
    {.section = "snapshots",
     .name = "period_start_field",
     .type = KT_STRING,
     .default_value = "start",
     CFG_FIELD(snap.period_start_field),
     .help = "Field of a period holding its first day."},
    {.section = "snapshots",
     .name = "period_end_field",
     .type = KT_STRING,
     .default_value = "end",
     CFG_FIELD(snap.period_end_field),
     .help = "Field of a period holding its last day."},
    {.section = "snapshots",
     .name = "period_closed_field",
     .type = KT_STRING,
     .default_value = "closedAt",
     CFG_FIELD(snap.period_closed_field),
     .help = "Field of a period holding the date it closed; the period is closed when it holds a "
             "date, and that date in [agent] timezone is the snapshot's YYYYMMDD."},
    {.section = "snapshots",
     .name = "period_key_field",
     .type = KT_STRING,
     .default_value = "_id",
     CFG_FIELD(snap.period_key_field),
     .help = "Field of a period that invoices and timesheets refer to (_id, or e.g. label)."},
    {.section = "snapshots",
     .name = "invoices_collection",
     .type = KT_STRING,
     .default_value = "invoices",
     CFG_FIELD(snap.invoices_collection),
     .help = "Collection holding the invoices."},
    {.section = "snapshots",
     .name = "invoice_period_field",
     .type = KT_STRING,
     .default_value = "periodId",
     CFG_FIELD(snap.invoice_period_field),
     .help = "Field of an invoice equal to its period's period_key_field."},
    {.section = "snapshots",
     .name = "invoice_file_field",
     .type = KT_STRING,
     .default_value = "pdf.file",
     CFG_FIELD(snap.invoice_file_field),
     .help = "Field of an invoice holding its PDF's path, relative to files_root."},
    {.section = "snapshots",
     .name = "invoice_timesheets_field",
     .type = KT_STRING,
     CFG_FIELD(snap.invoice_timesheets_field),
     .help = "Optional field of an invoice holding an array of the ids of the timesheets it "
             "bills; they are part of the period's snapshot too."},
    {.section = "snapshots",
     .name = "timesheets_collection",
     .type = KT_STRING,
     .default_value = "timesheets",
     CFG_FIELD(snap.timesheets_collection),
     .help = "Collection holding the timesheets."},
    {.section = "snapshots",
     .name = "timesheet_period_field",
     .type = KT_STRING,
     .default_value = "billingPeriodId",
     CFG_FIELD(snap.timesheet_period_field),
     .help = "Field of a timesheet equal to its period's period_key_field."},
    {.section = "snapshots",
     .name = "timesheet_file_field",
     .type = KT_STRING,
     .default_value = "image.path",
     CFG_FIELD(snap.timesheet_file_field),
     .help = "Field of a timesheet holding its image's path, relative to files_root."},
    {.section = "snapshots",
     .name = "files_root",
     .type = KT_PATH,
     CFG_FIELD(snap.files_root),
     .help = "Folder that invoice_file_field and timesheet_file_field paths are relative to; "
             "default: the common parent folder of the [watch] paths."},
    {.section = "snapshots",
     .name = "poll_minutes",
     .type = KT_MINUTES,
     .min = 3000,
     .max = 1440L * 60000,
     .default_value = "15",
     CFG_FIELD(snap.poll_ms),
     .help = "How often the agent looks for newly closed periods; decimals allowed (0.5 is 30 "
             "seconds)."},
    {.section = "snapshots",
     .name = "wait_for_files_minutes",
     .type = KT_MINUTES,
     .min = 0,
     .max = 10080L * 60000,
     .default_value = "60",
     CFG_FIELD(snap.wait_for_files_ms),
     .help = "How long after a period closed its snapshot waits for a referenced file that is "
             "not yet in the catalog; after that the file is listed in missing.txt and the "
             "snapshot is marked incomplete. Decimals allowed."},
};

static const struct cfg_key cfg_dest_keys[] = {
    {.section = "destination",
     .name = "type",
     .type = KT_ENUM,
     .choices = cfg_dest_types,
     .dest_types = DT_ALL,
     .dest_required = DT_ALL,
     DEST_FIELD(type),
     .help = "local: a mounted directory; s3: any S3-compatible store; sftp: an SSH server."},
    {.section = "destination",
     .name = "role",
     .type = KT_ENUM,
     .choices = cfg_dest_roles,
     .default_value = "primary",
     .dest_types = DT_ALL,
     DEST_FIELD(role),
     .help = "What the destination is for: the main copy, a replica, or the archive tier."},
    {.section = "destination",
     .name = "path",
     .type = KT_PATH,
     .dest_types = DT_LOCAL,
     .dest_required = DT_LOCAL,
     DEST_FIELD(path),
     .help = "Directory on a mounted disk or NAS that receives the objects."},
    {.section = "destination",
     .name = "endpoint",
     .type = KT_URL,
     .choices = cfg_s3_schemes,
     .dest_types = DT_S3,
     .dest_required = DT_S3,
     DEST_FIELD(endpoint),
     .help = "S3 endpoint URL. http:// is accepted only for a loopback address."},
    {.section = "destination",
     .name = "bucket",
     .type = KT_STRING,
     .dest_types = DT_S3,
     .dest_required = DT_S3,
     DEST_FIELD(bucket),
     .help = "Bucket name."},
    {.section = "destination",
     .name = "region",
     .type = KT_STRING,
     .default_value = "us-east-1",
     .dest_types = DT_S3,
     DEST_FIELD(region),
     .help = "Region used in request signatures."},
    {.section = "destination",
     .name = "access_key_file",
     .type = KT_PATH,
     .dest_types = DT_S3,
     DEST_FIELD(access_key_file),
     .help = "File holding the access key id. Mode 0600."},
    {.section = "destination",
     .name = "secret_key_file",
     .type = KT_PATH,
     .dest_types = DT_S3,
     DEST_FIELD(secret_key_file),
     .help = "File holding the secret access key. Mode 0600."},
    {.section = "destination",
     .name = "path_style",
     .type = KT_BOOL,
     .default_value = "no",
     .dest_types = DT_S3,
     DEST_FIELD(path_style),
     .help = "Address the bucket as endpoint/bucket instead of bucket.endpoint."},
    {.section = "destination",
     .name = "ca_file",
     .type = KT_PATH,
     .dest_types = DT_S3,
     DEST_FIELD(ca_file),
     .help = "PEM file of CA certificates to verify the endpoint with, instead of the "
             "system's. Owned by root (or custodian's user) and writable by no one else."},
    {.section = "destination",
     .name = "hot_class",
     .type = KT_STRING,
     .dest_types = DT_S3,
     DEST_FIELD(hot_class),
     .help = "Storage class of hot-tier objects; the bucket's default when unset."},
    {.section = "destination",
     .name = "archive_class",
     .type = KT_STRING,
     .dest_types = DT_S3,
     DEST_FIELD(archive_class),
     .help = "Storage class of archive-tier objects, e.g. GLACIER or DEEP_ARCHIVE."},
    {.section = "destination",
     .name = "object_lock",
     .type = KT_BOOL,
     .default_value = "no",
     .dest_types = DT_S3,
     DEST_FIELD(object_lock),
     .help = "The bucket has Object Lock (doctor checks it): billing-cycle snapshots are "
             "stored locked until their close date + delete_after_months, in lock_mode."},
    {.section = "destination",
     .name = "lock_mode",
     .type = KT_ENUM,
     .choices = cfg_lock_modes,
     .dest_types = DT_S3,
     DEST_FIELD(lock_mode),
     .help = "With object_lock: GOVERNANCE (a user with s3:BypassGovernanceRetention may still "
             "delete) or COMPLIANCE (nobody can delete before the date, not even the root "
             "account). No default: the operator chooses."},
    {.section = "destination",
     .name = "url",
     .type = KT_URL,
     .choices = cfg_sftp_schemes,
     .dest_types = DT_SFTP,
     .dest_required = DT_SFTP,
     DEST_FIELD(url),
     .help = "sftp://user@host:port/base"},
    {.section = "destination",
     .name = "identity",
     .type = KT_PATH,
     .dest_types = DT_SFTP,
     DEST_FIELD(identity),
     .help = "SSH private key file. Mode 0600."},
    {.section = "destination",
     .name = "known_hosts",
     .type = KT_PATH,
     .dest_types = DT_SFTP,
     DEST_FIELD(known_hosts),
     .help = "known_hosts file holding the server's host key, which is always checked. Owned "
             "by root (or custodian's user) and writable by no one else."},
    {.section = "destination",
     .name = "max_inflight",
     .type = KT_INT,
     .min = 1,
     .max = 64,
     .default_value = "4",
     .dest_types = DT_ALL,
     DEST_FIELD(max_inflight),
     .help = "Copies in progress at once to this destination: threads writing and fsyncing "
             "(local), SSH sessions (sftp), requests (s3)."},
    {.section = "destination",
     .name = "bandwidth_kbps",
     .type = KT_INT,
     .min = 0,
     .max = 100000000,
     .default_value = "0",
     .dest_types = DT_ALL,
     DEST_FIELD(bandwidth_kbps),
     .help = "Limit on the bytes sent to this destination, in kilobits per second (a local "
             "destination: copied bytes; a hard-linked copy sends none); 0 means unlimited."},
    {.section = "destination",
     .name = "readback_mb",
     .type = KT_INT,
     .min = 1,
     .max = 1048576,
     .default_value = "256",
     .dest_types = DT_SFTP,
     DEST_FIELD(readback_mb),
     .help = "After each upload the copy is read back from the server: whole, and its "
             "SHA-256 compared, up to this many MiB; a larger copy by its size and sampled "
             "ranges (the first and last MiB and 8 random ones) compared byte for byte."},
    {.section = "destination",
     .name = "part_size_mb",
     .type = KT_INT,
     .min = 5,
     .max = 5120,
     .default_value = "64",
     .dest_types = DT_S3,
     DEST_FIELD(part_size_mb),
     .help = "Objects larger than this many MiB are uploaded in parts of this size (multipart "
             "upload), several at once."},
};

#define CFG_N_MAIN_KEYS (sizeof(cfg_main_keys) / sizeof(cfg_main_keys[0]))
#define CFG_N_DEST_KEYS (sizeof(cfg_dest_keys) / sizeof(cfg_dest_keys[0]))

/* Where each key of one destination was set (0 = not set), and its header line. */
struct cfg_dest_lines {
    int section_line;
    int key_lines[CFG_N_DEST_KEYS];
};

struct cfg_parser {
    struct cfg *cfg;
    struct cst_err *err;
    int failed; /* the first error is kept; later ones would only confuse */
    FILE *fp;
    char *base_dir; /* absolute directory of the config file */
    char *line;     /* getline buffer */
    size_t line_cap;
    int lineno;
    const char *section; /* current section (a table string), NULL before the first */
    long dest_index;     /* current destination, or -1 */
    struct cfg_dest_lines *dest_lines;
    int key_lines[CFG_N_MAIN_KEYS];
};

/*
 * Record the first error as "<file>:<line>: [<section>] <key>: <problem>".
 * line 0 (a default or a missing key) leaves out the line; key NULL leaves out the key.
 */
__attribute__((format(printf, 5, 6))) static int
cfg_fail(struct cfg_parser *p, int line, const char *section, const char *key, const char *fmt, ...)
{
    char problem[CST_ERR_SIZE];
    char where[CST_ERR_SIZE / 2];
    size_t len;
    va_list ap;

    if (p->failed)
        return -1;
    p->failed = 1;
    va_start(ap, fmt);
    vsnprintf(problem, sizeof(problem), fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(where, sizeof(where), "%s:%d:", p->cfg->file, line);
    else
        snprintf(where, sizeof(where), "%s:", p->cfg->file);
    len = strlen(where);
    if (section != NULL && key != NULL)
        snprintf(where + len, sizeof(where) - len, " [%s] %s:", section, key);
    else if (section != NULL)
        snprintf(where + len, sizeof(where) - len, " [%s]:", section);
    else if (key != NULL)
        snprintf(where + len, sizeof(where) - len, " %s:", key);
    return cst_err_set(p->err, "%s %s", where, problem);
}

static int cfg_oom(struct cfg_parser *p)
{
    return cfg_fail(p, 0, NULL, NULL, "out of memory");
}

/* "destination NAME" for messages about destination i. */
static const char *cfg_dest_section(const struct cfg *cfg, size_t i, char *buf, size_t size)
{
    snprintf(buf, size, "destination %s", cfg->dests[i].name);
    return buf;
}

static const struct cfg_key *cfg_find_key(const struct cfg_key *table, size_t n,
                                          const char *section, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(table[i].section, section) == 0 && strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}

/* The main table's own string for a known section name, so that p->section can point at it. */
static const char *cfg_known_section(const char *name)
{
    for (size_t i = 0; i < CFG_N_MAIN_KEYS; i++)
        if (strcmp(cfg_main_keys[i].section, name) == 0)
            return cfg_main_keys[i].section;
    return NULL;
}

static char *cfg_trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    *end = '\0';
    return s;
}

/* An absolute path with "//", "." and ".." folded away and no trailing slash. */
static char *cfg_clean_path(const char *abs)
{
    char *out = malloc(strlen(abs) + 2);
    const char *s = abs;
    size_t len = 0;

    if (out == NULL)
        return NULL;
    while (*s != '\0') {
        const char *end;
        size_t n;

        while (*s == '/')
            s++;
        end = s;
        while (*end != '\0' && *end != '/')
            end++;
        n = (size_t)(end - s);
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            while (len > 0 && out[len - 1] != '/')
                len--;
            if (len > 0)
                len--;
        } else if (n > 0 && !(n == 1 && s[0] == '.')) {
            out[len++] = '/';
            memcpy(out + len, s, n);
            len += n;
        }
        s = end;
    }
    if (len == 0)
        out[len++] = '/';
    out[len] = '\0';
    return out;
}

/* inner is outer or lies below it. */
static int cfg_path_within(const char *inner, const char *outer)
{
    size_t n = strlen(outer);

    if (strcmp(outer, "/") == 0)
        return 1;
    return strncmp(inner, outer, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

/* Store *value into a field of the given width (int or long) inside base. */
static void cfg_store_number(void *base, const struct cfg_key *k, long value)
{
    char *field = (char *)base + k->off;

    if (k->width == sizeof(long)) {
        memcpy(field, &value, sizeof(long));
    } else {
        int v = (int)value;
        memcpy(field, &v, sizeof(int));
    }
}

static int cfg_parse_path(struct cfg_parser *p, const char *value, char **out)
{
    char *joined;

    if (value[0] == '/') {
        *out = cfg_clean_path(value);
        return *out == NULL ? -1 : 0;
    }
    /* Relative to the config file, so that a demo config can be moved as a whole. */
    if (asprintf(&joined, "%s/%s", p->base_dir, value) < 0)
        return -1;
    *out = cfg_clean_path(joined);
    free(joined);
    return *out == NULL ? -1 : 0;
}

static int cfg_is_loopback_host(const char *host)
{
    size_t n = strcspn(host, ":/");

    if (host[0] == '[')
        return strncmp(host, "[::1]", 5) == 0 &&
               (host[5] == '\0' || host[5] == ':' || host[5] == '/');
    if (n == 9 && strncasecmp(host, "localhost", 9) == 0)
        return 1;
    return n > 4 && strncmp(host, "127.", 4) == 0;
}

static int cfg_check_url(struct cfg_parser *p, int line, const char *section,
                         const struct cfg_key *k, const char *value)
{
    for (const char *const *s = k->choices; *s != NULL; s++) {
        size_t n = strlen(*s);

        if (strncasecmp(value, *s, n) != 0)
            continue;
        if (value[n] == '\0' || value[n] == '/')
            return cfg_fail(p, line, section, k->name, "URL '%s' has no host", value);
        /* Transport is encrypted except to this machine, where tests run servers. */
        if (strcmp(*s, "http://") == 0 && !cfg_is_loopback_host(value + n))
            return cfg_fail(p, line, section, k->name,
                            "plain http is allowed only to a loopback address; use https:// "
                            "in '%s'",
                            value);
        return 0;
    }
    {
        char schemes[128] = "";

        for (const char *const *s = k->choices; *s != NULL; s++) {
            size_t len = strlen(schemes);
            snprintf(schemes + len, sizeof(schemes) - len, "%s%s", len ? " or " : "", *s);
        }
        return cfg_fail(p, line, section, k->name, "value '%s' does not start with %s", value,
                        schemes);
    }
}

static int cfg_check_timezone(struct cfg_parser *p, int line, const char *section,
                              const struct cfg_key *k, const char *value)
{
    char path[PATH_MAX];
    struct stat st;

    /* A name, not a path: refuse anything that could step out of the zoneinfo tree. */
    if (value[0] == '/' || strstr(value, "..") != NULL ||
        strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_+-") !=
            strlen(value))
        return cfg_fail(p, line, section, k->name,
                        "value '%s' is not a time zone name such as America/New_York", value);
    snprintf(path, sizeof(path), "%s/%s", CFG_ZONEINFO_DIR, value);
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        return cfg_fail(p, line, section, k->name,
                        "unknown time zone '%s' (no file %s; is tzdata installed?)", value, path);
    return 0;
}

static int cfg_append(struct cfg_parser *p, void *base, const struct cfg_key *k, char *item,
                      int line)
{
    char ***list = (char ***)((char *)base + k->off);
    size_t *count = (size_t *)((char *)base + k->count_off);
    char **grown = realloc(*list, (*count + 1) * sizeof(**list));

    if (grown == NULL) {
        free(item);
        return cfg_oom(p);
    }
    *list = grown;
    if (k->lines_off != 0) {
        int **lines = (int **)((char *)base + k->lines_off);
        int *more = realloc(*lines, (*count + 1) * sizeof(**lines));

        if (more == NULL) {
            free(item);
            return cfg_oom(p);
        }
        *lines = more;
        (*lines)[*count] = line;
    }
    (*list)[(*count)++] = item;
    return 0;
}

/*
 * Parse value for key k and store it in base (a struct cfg or struct cfg_dest).
 * line is 0 for a default value.
 */
static int cfg_set(struct cfg_parser *p, const struct cfg_key *k, void *base, const char *section,
                   int line, const char *value)
{
    char **str_field = (char **)((char *)base + k->off);
    char *copy;

    if (value[0] == '\0')
        return cfg_fail(p, line, section, k->name, "value is empty");
    switch (k->type) {
    case KT_STRING:
    case KT_COMMAND:
    case KT_URL:
    case KT_TIMEZONE:
        if (k->type == KT_URL && cfg_check_url(p, line, section, k, value) < 0)
            return -1;
        if (k->type == KT_COMMAND) {
            struct cst_err why;
            char **argv;

            /* The message names a position, never the value: it may hold a password. */
            if (cmdline_split(value, &argv, &why) < 0)
                return cfg_fail(p, line, section, k->name, "%s", why.msg);
            cmdline_free(argv);
        }
        if (k->type == KT_TIMEZONE && cfg_check_timezone(p, line, section, k, value) < 0)
            return -1;
        if ((copy = strdup(value)) == NULL)
            return cfg_oom(p);
        free(*str_field);
        *str_field = copy;
        return 0;
    case KT_PATH:
    case KT_PATH_LIST:
        if (value[0] == '~')
            return cfg_fail(p, line, section, k->name,
                            "'~' is not expanded in '%s'; write the full path", value);
        if (cfg_parse_path(p, value, &copy) < 0)
            return cfg_oom(p);
        if (k->type == KT_PATH_LIST)
            return cfg_append(p, base, k, copy, line);
        free(*str_field);
        *str_field = copy;
        return 0;
    case KT_GLOB_LIST:
        if ((copy = strdup(value)) == NULL)
            return cfg_oom(p);
        return cfg_append(p, base, k, copy, line);
    case KT_INT: {
        char *end;
        long v;

        errno = 0;
        v = strtol(value, &end, 10);
        if (end == value || *end != '\0')
            return cfg_fail(p, line, section, k->name, "value '%s' is not a number", value);
        if (errno == ERANGE || v < k->min || v > k->max)
            return cfg_fail(p, line, section, k->name, "value %s is out of range (%ld to %ld)",
                            value, k->min, k->max);
        cfg_store_number(base, k, v);
        return 0;
    }
    case KT_BOOL: {
        static const char *const yes[] = {"yes", "true", "on", "1"};
        static const char *const no[] = {"no", "false", "off", "0"};

        for (size_t i = 0; i < 4; i++) {
            if (strcasecmp(value, yes[i]) == 0) {
                cfg_store_number(base, k, 1);
                return 0;
            }
            if (strcasecmp(value, no[i]) == 0) {
                cfg_store_number(base, k, 0);
                return 0;
            }
        }
        return cfg_fail(p, line, section, k->name,
                        "value '%s' is not a boolean (yes/no, true/false, on/off, 1/0)", value);
    }
    case KT_ENUM: {
        char names[256] = "";

        for (long i = 0; k->choices[i] != NULL; i++) {
            size_t len = strlen(names);

            if (strcasecmp(value, k->choices[i]) == 0) {
                cfg_store_number(base, k, i);
                return 0;
            }
            snprintf(names + len, sizeof(names) - len, "%s%s", len ? ", " : "", k->choices[i]);
        }
        return cfg_fail(p, line, section, k->name, "value '%s' is not one of: %s", value, names);
    }
    case KT_MINUTES: {
        /* Digits with at most one '.', so "0.5" but never "1e3", " 5" or "-1". */
        size_t digits = strspn(value, "0123456789."), dots = 0;
        double minutes;
        long ms;

        for (const char *c = value; *c; c++)
            dots += *c == '.';
        if (digits != strlen(value) || dots > 1 || strcmp(value, ".") == 0)
            return cfg_fail(p, line, section, k->name,
                            "value '%s' is not a number of minutes (e.g. 15 or 0.5)", value);
        minutes = strtod(value, NULL);
        if (minutes * 60000.0 > (double)k->max + 0.5 || minutes * 60000.0 < (double)k->min - 0.5)
            return cfg_fail(p, line, section, k->name,
                            "value %s is out of range (%g to %g minutes)", value,
                            (double)k->min / 60000.0, (double)k->max / 60000.0);
        ms = (long)(minutes * 60000.0 + 0.5);
        cfg_store_number(base, k, ms);
        return 0;
    }
    case KT_TIME_OF_DAY: {
        int hour, minute;

        /* Strictly H:MM or HH:MM; sscanf alone would take " 2: 5" or "02:00x". */
        if (strlen(value) < 4 || strlen(value) > 5 ||
            strspn(value, "0123456789:") != strlen(value) ||
            strchr(value, ':') != value + strlen(value) - 3 ||
            sscanf(value, "%d:%d", &hour, &minute) != 2 || hour > 23 || minute > 59)
            return cfg_fail(p, line, section, k->name,
                            "value '%s' is not a time of day (HH:MM, 00:00 to 23:59)", value);
        cfg_store_number(base, k, hour);
        memcpy((char *)base + k->minute_off, &minute, sizeof(int));
        return 0;
    }
    }
    return cfg_fail(p, line, section, k->name, "internal error: unhandled key type");
}

/* The reader saw "[...]": switch the current section, or fail. */
static int cfg_enter_section(struct cfg_parser *p, char *line)
{
    char *close = strchr(line, ']');
    char *name;

    if (close == NULL)
        return cfg_fail(p, p->lineno, NULL, NULL, "section header '%s' has no closing ']'", line);
    if (close[1] != '\0')
        return cfg_fail(p, p->lineno, NULL, NULL, "unexpected text after ']' in '%s'", line);
    *close = '\0';
    name = cfg_trim(line + 1);

    if (strncmp(name, "destination", 11) == 0 &&
        (name[11] == '\0' || isspace((unsigned char)name[11]))) {
        char *dest = cfg_trim(name + 11);
        struct cfg *cfg = p->cfg;
        struct cfg_dest *dests;
        struct cfg_dest_lines *lines;

        if (dest[0] == '\0')
            return cfg_fail(p, p->lineno, "destination", NULL,
                            "a destination needs a name, e.g. [destination offsite]");
        if (strlen(dest) > CFG_DEST_NAME_MAX ||
            strspn(dest, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") !=
                strlen(dest))
            return cfg_fail(p, p->lineno, NULL, NULL,
                            "[destination %s]: a destination name is 1 to %d letters, digits, "
                            "'-', '_' or '.'",
                            dest, CFG_DEST_NAME_MAX);
        for (size_t i = 0; i < cfg->n_dests; i++)
            if (strcmp(cfg->dests[i].name, dest) == 0)
                return cfg_fail(p, p->lineno, NULL, NULL,
                                "[destination %s]: destination defined twice (first on line %d)",
                                dest, p->dest_lines[i].section_line);

        dests = realloc(cfg->dests, (cfg->n_dests + 1) * sizeof(*dests));
        if (dests == NULL)
            return cfg_oom(p);
        cfg->dests = dests;
        lines = realloc(p->dest_lines, (cfg->n_dests + 1) * sizeof(*lines));
        if (lines == NULL)
            return cfg_oom(p);
        p->dest_lines = lines;
        memset(&dests[cfg->n_dests], 0, sizeof(*dests));
        memset(&lines[cfg->n_dests], 0, sizeof(*lines));
        if ((dests[cfg->n_dests].name = strdup(dest)) == NULL)
            return cfg_oom(p);
        lines[cfg->n_dests].section_line = p->lineno;
        p->dest_index = (long)cfg->n_dests++;
        p->section = cfg_dest_keys[0].section;
        return 0;
    }
    p->section = cfg_known_section(name);
    p->dest_index = -1;
    if (p->section == NULL)
        return cfg_fail(p, p->lineno, name, NULL, "unknown section");
    return 0;
}

/*
 * The ini_reader: one line per call, like fgets. Besides counting lines it
 * hands libinih a normalised line: leading blanks and comments removed. That
 * keeps libinih's compiled-in 200-byte line limit for the content only, and
 * stops an indented line from being taken as a continuation of the previous
 * value (libinih's Python-style multi-line values), which would silently
 * turn "  path = /a" into part of another key.
 */
static char *cfg_reader(char *str, int num, void *stream)
{
    struct cfg_parser *p = stream;
    ssize_t n;
    size_t len;
    char *s;

    if (p->failed)
        return NULL;
    n = getline(&p->line, &p->line_cap, p->fp);
    if (n < 0) {
        if (ferror(p->fp)) {
            cst_err_sys(p->err, "cannot read config %s", p->cfg->file);
            p->failed = 1;
        }
        return NULL;
    }
    p->lineno++;
    if ((size_t)n != strlen(p->line)) {
        cfg_fail(p, p->lineno, NULL, NULL, "line contains a NUL byte");
        return NULL;
    }
    s = p->line;
    if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3; /* UTF-8 byte order mark, as some editors write */
    s = cfg_trim(s);
    if (s[0] == ';' || s[0] == '#')
        s[0] = '\0';
    /* An inline comment is ';' after a blank, as in libinih: "a;b" stays a value. */
    for (char *c = s; *c != '\0'; c++) {
        if (*c == ';' && c > s && isspace((unsigned char)c[-1])) {
            *c = '\0';
            s = cfg_trim(s);
            break;
        }
    }
    len = strlen(s);
    if (len + 1 > (size_t)num) {
        cfg_fail(p, p->lineno, NULL, NULL,
                 "line is too long (%zu characters without comments; the limit is %d)", len,
                 num - 1);
        return NULL;
    }
    memcpy(str, s, len + 1);
    if (s[0] == '[') {
        if (cfg_enter_section(p, s) < 0)
            return NULL;
    } else if (s[0] != '\0' && strpbrk(s, "=:") == NULL) {
        cfg_fail(p, p->lineno, NULL, NULL, "expected 'key = value' or '[section]', found '%s'", s);
        return NULL;
    }
    return str;
}

/* The ini_handler: called for each key = value of the line the reader just returned. */
static int cfg_on_key(void *user, const char *ini_section, const char *name, const char *value)
{
    struct cfg_parser *p = user;
    const struct cfg_key *table = cfg_main_keys, *k;
    size_t n = CFG_N_MAIN_KEYS;
    int *lines = p->key_lines;
    void *base = p->cfg;
    char section[CFG_DEST_NAME_MAX + 32];

    (void)ini_section; /* the reader tracks sections itself */
    if (p->failed)
        return 0;
    if (p->section == NULL) {
        cfg_fail(p, p->lineno, NULL, name, "key appears before any [section]");
        return 0;
    }
    snprintf(section, sizeof(section), "%s", p->section);
    if (p->dest_index >= 0) {
        table = cfg_dest_keys;
        n = CFG_N_DEST_KEYS;
        lines = p->dest_lines[p->dest_index].key_lines;
        base = &p->cfg->dests[p->dest_index];
        cfg_dest_section(p->cfg, (size_t)p->dest_index, section, sizeof(section));
    }
    k = cfg_find_key(table, n, p->section, name);
    if (k == NULL) {
        cfg_fail(p, p->lineno, section, name, "unknown key");
        return 0;
    }
    if (lines[k - table] != 0 && k->type != KT_PATH_LIST && k->type != KT_GLOB_LIST) {
        cfg_fail(p, p->lineno, section, name, "key set twice (first on line %d)", lines[k - table]);
        return 0;
    }
    if (cfg_set(p, k, base, section, p->lineno, value) < 0)
        return 0;
    lines[k - table] = p->lineno;
    return 1;
}

/* "local" or "s3, sftp": the destination types in mask, for messages. */
static void cfg_type_names(unsigned mask, char *buf, size_t size)
{
    size_t len = 0;

    buf[0] = '\0';
    for (int t = 0; cfg_dest_types[t] != NULL; t++) {
        if (!(mask & (1u << t)))
            continue;
        len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s", len ? ", " : "", cfg_dest_types[t]);
    }
}

static size_t cfg_dest_key_index(const char *name)
{
    const struct cfg_key *k = cfg_find_key(cfg_dest_keys, CFG_N_DEST_KEYS, "destination", name);

    return (size_t)(k - cfg_dest_keys); /* only called with names from the table */
}

static int cfg_finish_dest(struct cfg_parser *p, size_t i)
{
    struct cfg_dest *d = &p->cfg->dests[i];
    struct cfg_dest_lines *dl = &p->dest_lines[i];
    char section[CFG_DEST_NAME_MAX + 32];
    unsigned type;

    cfg_dest_section(p->cfg, i, section, sizeof(section));
    if (dl->key_lines[cfg_dest_key_index("type")] == 0)
        return cfg_fail(p, dl->section_line, section, "type",
                        "required key missing (local, s3 or sftp)");
    type = 1u << d->type;
    /* Keys may come in any order, so their type can only be checked once the section is read. */
    for (size_t k = 0; k < CFG_N_DEST_KEYS; k++) {
        char owners[64];

        if (dl->key_lines[k] == 0 || (cfg_dest_keys[k].dest_types & type))
            continue;
        cfg_type_names(cfg_dest_keys[k].dest_types, owners, sizeof(owners));
        return cfg_fail(p, dl->key_lines[k], section, cfg_dest_keys[k].name,
                        "not a key for a destination of type %s (it belongs to %s)",
                        cfg_dest_types[d->type], owners);
    }
    for (size_t k = 0; k < CFG_N_DEST_KEYS; k++) {
        const struct cfg_key *key = &cfg_dest_keys[k];

        if (dl->key_lines[k] != 0 || !(key->dest_types & type))
            continue;
        if (key->dest_required & type)
            return cfg_fail(p, dl->section_line, section, key->name,
                            "required key missing for a destination of type %s",
                            cfg_dest_types[d->type]);
        if (key->default_value != NULL && cfg_set(p, key, d, section, 0, key->default_value) < 0)
            return -1;
    }
    if (dl->key_lines[cfg_dest_key_index("lock_mode")] == 0)
        d->lock_mode = CFG_LOCK_NONE;
    if (d->object_lock && d->lock_mode == CFG_LOCK_NONE)
        return cfg_fail(p, dl->key_lines[cfg_dest_key_index("object_lock")], section, "lock_mode",
                        "required with object_lock = yes: GOVERNANCE or COMPLIANCE (there is no "
                        "default; see docs/configuration.md)");
    if (!d->object_lock && d->lock_mode != CFG_LOCK_NONE)
        return cfg_fail(p, dl->key_lines[cfg_dest_key_index("lock_mode")], section, "lock_mode",
                        "does nothing without object_lock = yes");
    return 0;
}

/* Line where a main-table key was set, 0 if it was not. */
static int cfg_main_line(const struct cfg_parser *p, const char *section, const char *name)
{
    const struct cfg_key *k = cfg_find_key(cfg_main_keys, CFG_N_MAIN_KEYS, section, name);

    return k != NULL ? p->key_lines[k - cfg_main_keys] : 0;
}

/* The folder that is a parent of every [watch] path (the deepest such). */
static char *cfg_common_parent(const struct cfg *cfg)
{
    size_t len;
    char *common;

    if (cfg->n_watch_paths == 0)
        return strdup("/");
    common = strdup(cfg->watch_paths[0]);
    if (common == NULL)
        return NULL;
    /* The parent of the first path, then shortened until every path lies below it. */
    for (;;) {
        char *slash = strrchr(common, '/');
        int all = 1;

        if (slash == NULL || slash == common) {
            strcpy(common, "/");
            return common;
        }
        *slash = '\0';
        len = strlen(common);
        for (size_t i = 0; i < cfg->n_watch_paths && all; i++)
            all = strncmp(cfg->watch_paths[i], common, len) == 0 && cfg->watch_paths[i][len] == '/';
        if (all)
            return common;
    }
}

/* A MongoDB field path: dotted names, none empty, none starting with '$'. */
static int cfg_field_path_ok(const char *v)
{
    if (v[0] == '\0' || v[0] == '.' || v[strlen(v) - 1] == '.' || strstr(v, "..") != NULL)
        return 0;
    for (const char *c = v; *c; c++)
        if ((*c == '$' && (c == v || c[-1] == '.')) || (unsigned char)*c < 0x20)
            return 0;
    return 1;
}

static int cfg_finish_snapshots(struct cfg_parser *p)
{
    struct cfg_snapshots *s = &p->cfg->snap;
    const struct {
        const char *key;
        const char *value;
        int collection;
    } names[] = {
        {"periods_collection", s->periods_collection, 1},
        {"invoices_collection", s->invoices_collection, 1},
        {"timesheets_collection", s->timesheets_collection, 1},
        {"period_label_field", s->period_label_field, 0},
        {"period_start_field", s->period_start_field, 0},
        {"period_end_field", s->period_end_field, 0},
        {"period_closed_field", s->period_closed_field, 0},
        {"period_key_field", s->period_key_field, 0},
        {"invoice_period_field", s->invoice_period_field, 0},
        {"invoice_file_field", s->invoice_file_field, 0},
        {"invoice_timesheets_field", s->invoice_timesheets_field, 0},
        {"timesheet_period_field", s->timesheet_period_field, 0},
        {"timesheet_file_field", s->timesheet_file_field, 0},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *v = names[i].value;

        if (v == NULL)
            continue;
        if (names[i].collection &&
            (strchr(v, '$') != NULL || v[0] == '.' || strncmp(v, "system.", 7) == 0))
            return cfg_fail(p, cfg_main_line(p, "snapshots", names[i].key), "snapshots",
                            names[i].key, "'%s' is not a MongoDB collection name", v);
        if (!names[i].collection && !cfg_field_path_ok(v))
            return cfg_fail(p, cfg_main_line(p, "snapshots", names[i].key), "snapshots",
                            names[i].key,
                            "'%s' is not a field path (names separated by '.', none empty or "
                            "starting with '$')",
                            v);
    }
    /* Keys that would do nothing are refused: the periods are read from [mongodb] uri. */
    if (s->enabled && p->cfg->mongodb_uri == NULL) {
        for (size_t i = 0; i < CFG_N_MAIN_KEYS; i++)
            if (strcmp(cfg_main_keys[i].section, "snapshots") == 0 && p->key_lines[i] != 0 &&
                strcmp(cfg_main_keys[i].name, "enabled") != 0)
                return cfg_fail(p, p->key_lines[i], "snapshots", cfg_main_keys[i].name,
                                "snapshots read the billing periods from MongoDB: set [mongodb] "
                                "uri (or [snapshots] enabled = no)");
    }
    if (s->files_root == NULL && (s->files_root = cfg_common_parent(p->cfg)) == NULL)
        return cfg_oom(p);
    return 0;
}

int cfg_snapshots_on(const struct cfg *cfg)
{
    return cfg->snap.enabled && cfg->mongodb_uri != NULL;
}

/* Checks across keys, once the whole file is read and defaults applied. */
static int cfg_finish(struct cfg_parser *p)
{
    struct cfg *cfg = p->cfg;
    const int *wl = cfg->watch_path_lines;

    for (size_t i = 0; i < CFG_N_MAIN_KEYS; i++) {
        const struct cfg_key *k = &cfg_main_keys[i];

        if (p->key_lines[i] != 0)
            continue;
        if (k->required)
            return cfg_fail(p, 0, k->section, k->name, "required key missing");
        if (k->default_value != NULL && cfg_set(p, k, cfg, k->section, 0, k->default_value) < 0)
            return -1;
    }

    if (cfg->delete_after_months <= cfg->hot_months) {
        int del_line = cfg_main_line(p, "retention", "delete_after_months");
        int hot_line = cfg_main_line(p, "retention", "hot_months");

        /* Blame the key the operator wrote; a default is not their doing. */
        if (del_line == 0 && hot_line != 0)
            return cfg_fail(p, hot_line, "retention", "hot_months",
                            "value %d must be less than delete_after_months (%d)", cfg->hot_months,
                            cfg->delete_after_months);
        return cfg_fail(p, del_line, "retention", "delete_after_months",
                        "value %d must be greater than hot_months (%d)", cfg->delete_after_months,
                        cfg->hot_months);
    }

    if (cfg_main_line(p, "retention", "keep_monthly_months") == 0)
        cfg->keep_monthly_months = cfg->delete_after_months;
    else if (cfg->keep_monthly_months > cfg->delete_after_months)
        return cfg_fail(p, cfg_main_line(p, "retention", "keep_monthly_months"), "retention",
                        "keep_monthly_months",
                        "value %d is more than delete_after_months (%d): nothing is kept longer "
                        "than that",
                        cfg->keep_monthly_months, cfg->delete_after_months);

    if (cfg->max_delay_ms < cfg->settle_ms) {
        int line = cfg_main_line(p, "agent", "max_delay_ms");

        /* Blame the key the operator wrote; a default is not their doing. */
        if (line == 0)
            return cfg_fail(p, cfg_main_line(p, "agent", "settle_ms"), "agent", "settle_ms",
                            "value %d must not be more than max_delay_ms (%d)", cfg->settle_ms,
                            cfg->max_delay_ms);
        return cfg_fail(p, line, "agent", "max_delay_ms",
                        "value %d must not be less than settle_ms (%d)", cfg->max_delay_ms,
                        cfg->settle_ms);
    }

    /* Watching a folder twice would ship every change twice. */
    for (size_t i = 0; i < cfg->n_watch_paths; i++) {
        for (size_t j = 0; j < cfg->n_watch_paths; j++) {
            if (i == j)
                continue;
            if (j < i && strcmp(cfg->watch_paths[i], cfg->watch_paths[j]) == 0)
                return cfg_fail(p, wl[i], "watch", "path",
                                "folder %s is listed twice (also on line %d)", cfg->watch_paths[i],
                                wl[j]);
            if (strcmp(cfg->watch_paths[i], cfg->watch_paths[j]) != 0 &&
                cfg_path_within(cfg->watch_paths[i], cfg->watch_paths[j]))
                return cfg_fail(p, wl[i], "watch", "path",
                                "folder %s is inside %s (line %d), which is already watched "
                                "with everything below it",
                                cfg->watch_paths[i], cfg->watch_paths[j], wl[j]);
        }
    }

    if (cfg_finish_snapshots(p) < 0)
        return -1;

    if (cfg->n_dests == 0)
        return cfg_fail(p, 0, "destination NAME", NULL,
                        "required section missing: configure at least one destination");
    for (size_t i = 0; i < cfg->n_dests; i++)
        if (cfg_finish_dest(p, i) < 0)
            return -1;

    /* Backing up our own spool or destination would feed on itself without end. */
    for (size_t w = 0; w < cfg->n_watch_paths; w++) {
        const char *watched = cfg->watch_paths[w];

        if (cfg_path_within(cfg->state_dir, watched))
            return cfg_fail(p, cfg_main_line(p, "agent", "state_dir"), "agent", "state_dir",
                            "%s is inside the watched folder %s (line %d); the agent would back "
                            "up its own spool",
                            cfg->state_dir, watched, wl[w]);
        for (size_t i = 0; i < cfg->n_dests; i++) {
            const struct cfg_dest *d = &cfg->dests[i];
            char section[CFG_DEST_NAME_MAX + 32];

            if (d->type != CFG_DEST_LOCAL || !cfg_path_within(d->path, watched))
                continue;
            cfg_dest_section(cfg, i, section, sizeof(section));
            return cfg_fail(p, p->dest_lines[i].key_lines[cfg_dest_key_index("path")], section,
                            "path",
                            "%s is inside the watched folder %s (line %d); the agent would back "
                            "up its own backups",
                            d->path, watched, wl[w]);
        }
    }
    return 0;
}

/* Absolute directory holding the config file: the base of relative paths. */
static char *cfg_base_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir, *abs;

    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return NULL;
    abs = realpath(dir, NULL);
    free(dir);
    return abs;
}

struct cfg *cfg_load(const char *path, struct cst_err *err)
{
    struct cfg_parser p;
    int rc;

    memset(&p, 0, sizeof(p));
    p.err = err;
    p.dest_index = -1;
    if ((p.cfg = calloc(1, sizeof(*p.cfg))) == NULL || (p.cfg->file = strdup(path)) == NULL) {
        free(p.cfg);
        cst_err_set(err, "cannot load config %s: out of memory", path);
        return NULL;
    }
    if ((p.fp = fopen(path, "re")) == NULL) {
        cst_err_sys(err, "cannot read config %s", path);
        p.failed = 1;
        goto out;
    }
    if ((p.base_dir = cfg_base_dir(path)) == NULL) {
        cst_err_sys(err, "cannot resolve the directory of config %s", path);
        p.failed = 1;
        goto out;
    }
    rc = ini_parse_stream(cfg_reader, &p, cfg_on_key, &p);
    if (!p.failed && rc > 0)
        cfg_fail(&p, rc, NULL, NULL, "cannot parse this line");
    else if (!p.failed && rc < 0)
        cfg_oom(&p);
    if (!p.failed)
        cfg_finish(&p);
out:
    if (p.fp != NULL)
        fclose(p.fp);
    free(p.line);
    free(p.base_dir);
    free(p.dest_lines);
    if (p.failed) {
        cfg_free(p.cfg);
        return NULL;
    }
    return p.cfg;
}

static void cfg_free_strings(const struct cfg_key *table, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        const struct cfg_key *k = &table[i];

        if (k->type == KT_STRING || k->type == KT_COMMAND || k->type == KT_PATH ||
            k->type == KT_URL || k->type == KT_TIMEZONE) {
            free(*(char **)((char *)base + k->off));
        } else if (k->type == KT_PATH_LIST || k->type == KT_GLOB_LIST) {
            char **list = *(char ***)((char *)base + k->off);
            size_t count = *(size_t *)((char *)base + k->count_off);

            for (size_t j = 0; j < count; j++)
                free(list[j]);
            free(list);
            if (k->lines_off != 0)
                free(*(int **)((char *)base + k->lines_off));
        }
    }
}

void cfg_free(struct cfg *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n_dests; i++) {
        cfg_free_strings(cfg_dest_keys, CFG_N_DEST_KEYS, &cfg->dests[i]);
        free(cfg->dests[i].name);
    }
    free(cfg->dests);
    cfg_free_strings(cfg_main_keys, CFG_N_MAIN_KEYS, cfg);
    free(cfg->file);
    free(cfg);
}

int cfg_check_watch_paths(const struct cfg *cfg, struct cst_err *err)
{
    const char *file = cfg->file != NULL ? cfg->file : "config";

    for (size_t i = 0; i < cfg->n_watch_paths; i++) {
        const char *path = cfg->watch_paths[i];
        char where[CST_ERR_SIZE / 2];
        struct stat st;

        if (cfg->watch_path_lines != NULL && cfg->watch_path_lines[i] > 0)
            snprintf(where, sizeof(where), "%s:%d: [watch] path", file, cfg->watch_path_lines[i]);
        else
            snprintf(where, sizeof(where), "%s: [watch] path", file);
        if (stat(path, &st) < 0) {
            if (errno == ENOENT)
                return cst_err_set(err, "%s: folder %s does not exist", where, path);
            return cst_err_sys(err, "%s: cannot access folder %s", where, path);
        }
        if (!S_ISDIR(st.st_mode))
            return cst_err_set(err, "%s: %s is not a folder", where, path);
    }
    return 0;
}

static void cfg_describe_type(const struct cfg_key *k, char *buf, size_t size)
{
    size_t len;

    switch (k->type) {
    case KT_STRING:
        snprintf(buf, size, "string");
        break;
    case KT_COMMAND:
        snprintf(buf, size, "command line");
        break;
    case KT_PATH:
        snprintf(buf, size, "path");
        break;
    case KT_URL:
    case KT_ENUM:
        snprintf(buf, size, "%s", k->type == KT_URL ? "URL starting " : "one of ");
        for (const char *const *c = k->choices; *c != NULL; c++) {
            len = strlen(buf);
            snprintf(buf + len, size - len, "%s%s", c == k->choices ? "" : "|", *c);
        }
        break;
    case KT_INT:
        snprintf(buf, size, "integer %ld..%ld", k->min, k->max);
        break;
    case KT_BOOL:
        snprintf(buf, size, "boolean");
        break;
    case KT_TIME_OF_DAY:
        snprintf(buf, size, "time of day HH:MM");
        break;
    case KT_TIMEZONE:
        snprintf(buf, size, "time zone name");
        break;
    case KT_PATH_LIST:
        snprintf(buf, size, "path, repeatable");
        break;
    case KT_GLOB_LIST:
        snprintf(buf, size, "glob, repeatable");
        break;
    case KT_MINUTES:
        snprintf(buf, size, "minutes %g..%g", (double)k->min / 60000.0, (double)k->max / 60000.0);
        break;
    }
    if (k->dest_types != 0 && k->dest_types != DT_ALL) {
        len = strlen(buf);
        snprintf(buf + len, size - len, " (");
        cfg_type_names(k->dest_types, buf + len + 2, size - len - 2);
        len = strlen(buf);
        snprintf(buf + len, size - len, " only)");
    }
}

void cfg_print_reference(FILE *out)
{
    char type[256];

    fprintf(out, "section\tkey\ttype\tdefault\thelp\n");
    for (size_t i = 0; i < CFG_N_MAIN_KEYS; i++) {
        const struct cfg_key *k = &cfg_main_keys[i];

        cfg_describe_type(k, type, sizeof(type));
        fprintf(out, "%s\t%s\t%s\t%s\t%s\n", k->section, k->name, type,
                k->required        ? "(required)"
                : k->default_value ? k->default_value
                                   : "(none)",
                k->help);
    }
    for (size_t i = 0; i < CFG_N_DEST_KEYS; i++) {
        const struct cfg_key *k = &cfg_dest_keys[i];

        cfg_describe_type(k, type, sizeof(type));
        fprintf(out, "destination NAME\t%s\t%s\t%s\t%s\n", k->name, type,
                k->dest_required   ? "(required)"
                : k->default_value ? k->default_value
                                   : "(none)",
                k->help);
    }
}
