/*
 * cli.c - shared plumbing for commands (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pwd.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pathenc.h"
#include "common/util.h"

int cli_fail(int status, const char *fmt, ...)
{
    va_list ap;

    fputs("custodian: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

int cli_load_config(struct cli *cli)
{
    struct cst_err err;

    if (cli->cfg)
        return EXIT_OK;
    cli->cfg = cfg_load(cli->config_path, &err);
    if (cli->cfg == NULL)
        return cli_fail(EXIT_USAGE, "%s", err.msg);
    log_set_level((enum log_level)cli->cfg->log_level);
    return EXIT_OK;
}

char *cli_state_path(const struct cli *cli, const char *name)
{
    return util_join(cli->cfg->state_dir, name);
}

int cli_open_catalog(struct cli *cli, int readonly)
{
    struct cst_err err;
    char *path;

    if (cli->cat)
        return EXIT_OK;
    if (!readonly && util_mkdir_p(cli->cfg->state_dir, 0700, &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    path = cli_state_path(cli, "catalog.db");
    if (readonly && access(path, F_OK) < 0) {
        cli_fail(EXIT_FAILED, "no catalog at %s: run `custodian init` first", path);
        free(path);
        return EXIT_FAILED;
    }
    cli->cat = readonly ? catalog_open_readonly(path, &err) : catalog_open(path, &err);
    free(path);
    if (cli->cat == NULL)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    return EXIT_OK;
}

void cli_close(struct cli *cli)
{
    catalog_close(cli->cat);
    cli->cat = NULL;
    cfg_free(cli->cfg);
    cli->cfg = NULL;
}

int cli_lock_agent(const struct cli *cli, struct cst_err *err)
{
    char *path = cli_state_path(cli, "agent.lock");
    int fd;

    if (util_mkdir_p(cli->cfg->state_dir, 0700, err) < 0) {
        free(path);
        return -1;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        cst_err_sys(err, "cannot open lock file %s", path);
        free(path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        cst_err_set(err, "another custodian agent or ship is running on %s (lock %s is held)",
                    cli->cfg->state_dir, path);
        close(fd);
        free(path);
        return -1;
    }
    free(path);
    return fd; /* held until exit */
}

int cli_agent_running(const struct cli *cli)
{
    char *path = cli_state_path(cli, "agent.lock");
    int fd = open(path, O_RDONLY | O_CLOEXEC), running = 0;

    free(path);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK)
        running = 1;
    close(fd);
    return running;
}

/* Seconds since the epoch of a broken-down local time in zone tz. */
static time_t mktime_in(struct tm *tm, const char *tz)
{
    char *old = getenv("TZ") ? util_xstrdup(getenv("TZ")) : NULL;
    time_t t;

    setenv("TZ", tz, 1);
    tzset();
    tm->tm_isdst = -1;
    t = mktime(tm);
    if (old) {
        setenv("TZ", old, 1);
        free(old);
    } else {
        unsetenv("TZ");
    }
    tzset();
    return t;
}

static char *absolute(const char *path)
{
    char cwd[4096];

    if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
        return util_xstrdup(path);
    return util_join(cwd, path);
}

/* 1 if path has at least one version, 0 if not, -1 on error. */
static int has_versions(struct cli *cli, const char *path, struct cst_err *err)
{
    struct catalog_version v;
    int rc = catalog_version_at(cli->cat, path, INT64_MAX, &v, err);

    if (rc == 1)
        catalog_version_clear(&v);
    return rc;
}

int cli_catalog_path(struct cli *cli, const char *arg, enum cli_path_form form, char **path,
                     struct cst_err *err)
{
    char *reading[2] = {NULL, NULL}, *raw;
    int found[2] = {0, 0}, rc = -1;

    *path = NULL;
    /* reading[0]: as typed; reading[1]: the escaped form decoded, when it differs. */
    if (form != CLI_PATH_ESCAPED)
        reading[0] = absolute(arg);
    if (form != CLI_PATH_LITERAL) {
        raw = strchr(arg, '\\') ? pathenc_unescape(arg, NULL) : util_xstrdup(arg);
        if (raw == NULL && form == CLI_PATH_ESCAPED)
            return cst_err_set(err, "%s is not a valid escaped path (only \\xNN and \\\\ escapes)",
                               arg);
        if (raw != NULL) {
            reading[1] = absolute(raw);
            free(raw);
        }
        if (reading[0] && reading[1] && strcmp(reading[0], reading[1]) == 0) {
            free(reading[1]);
            reading[1] = NULL;
        }
    }
    for (int i = 0; i < 2; i++)
        if (reading[i] && (found[i] = has_versions(cli, reading[i], err)) < 0)
            goto out;
    if (found[0] && found[1]) {
        char *a = pathenc_escape(reading[0], strlen(reading[0]));
        char *b = pathenc_escape(reading[1], strlen(reading[1]));

        cst_err_set(err,
                    "%s is ambiguous: read as typed it is the cataloged path %s, read as an "
                    "escaped path it is the cataloged path %s; repeat with --literal or "
                    "--escaped to say which",
                    arg, a, b);
        free(a);
        free(b);
        rc = -2;
        goto out;
    }
    /* The reading that is cataloged, else the first one there is (for the message). */
    rc = found[0] || found[1];
    if (found[1] || reading[0] == NULL) {
        *path = reading[1];
        reading[1] = NULL;
    } else {
        *path = reading[0];
        reading[0] = NULL;
    }
out:
    free(reading[0]);
    free(reading[1]);
    return rc;
}

int cli_parse_time(const char *s, const char *tz, int64_t *ms)
{
    struct tm tm;
    const char *rest;
    int64_t frac_ms = 0;

    memset(&tm, 0, sizeof(tm));
    rest = strptime(s, "%Y-%m-%d", &tm);
    if (rest == NULL)
        return -1;
    if (*rest == '\0') {
        /* A date: the end of that day where the clinic is. */
        tm.tm_hour = 23;
        tm.tm_min = 59;
        tm.tm_sec = 59;
        *ms = (int64_t)mktime_in(&tm, tz) * 1000 + 999;
        return 0;
    }
    if (*rest != 'T' && *rest != 't' && *rest != ' ')
        return -1;
    rest = strptime(rest + 1, "%H:%M:%S", &tm);
    if (rest == NULL)
        return -1;
    if (*rest == '.') {
        int digits = 0;

        rest++;
        while (*rest >= '0' && *rest <= '9') {
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*rest - '0');
            digits++;
            rest++;
        }
        while (digits > 0 && digits < 3) {
            frac_ms *= 10;
            digits++;
        }
    }
    int64_t secs;
    if (*rest == 'Z' || *rest == 'z') {
        secs = (int64_t)timegm(&tm);
        rest++;
    } else if ((*rest == '+' || *rest == '-') && strlen(rest) == 6 && rest[3] == ':') {
        int sign = *rest == '-' ? -1 : 1;
        int hh = atoi(rest + 1), mm = atoi(rest + 4);

        secs = (int64_t)timegm(&tm) - sign * (hh * 3600 + mm * 60);
        rest += 6;
    } else if (*rest == '\0') {
        secs = (int64_t)mktime_in(&tm, tz);
    } else {
        return -1;
    }
    if (*rest != '\0')
        return -1;
    *ms = secs * 1000 + frac_ms;
    return 0;
}

const char *cli_user(void)
{
    static char name[64];
    struct passwd *pw;

    if (name[0] == '\0') {
        pw = getpwuid(geteuid());
        if (pw && pw->pw_name)
            snprintf(name, sizeof(name), "%s", pw->pw_name);
        else
            snprintf(name, sizeof(name), "uid %u", (unsigned)geteuid());
    }
    return name;
}
