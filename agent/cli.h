/*
 * cli.h - what every command shares: the command table entry, loading the
 * config and the catalog with the right exit status, parsing TIME.
 */
#ifndef CST_CLI_H
#define CST_CLI_H

#include <stdint.h>

#include "agent/config.h"
#include "catalog/catalog.h"

/* Exit status, INTERFACE.md. */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

struct cli {
    const char *config_path;
    int json;
    struct cfg *cfg;
    struct catalog *cat;
};

struct cmd_entry {
    const char *name;  /* "status", or two words: "restore file" */
    const char *usage; /* arguments after the name */
    const char *help;
    int (*exec)(struct cli *cli, int argc, char **argv); /* argv[0] is the last name word */
};

/* The table (commands.c). */
extern const struct cmd_entry *const cmd_table[];

/* Load the config; on error print it and return EXIT_USAGE. */
int cli_load_config(struct cli *cli);
/* Open the catalog under state_dir (creating state_dir); EXIT_FAILED on error. */
int cli_open_catalog(struct cli *cli, int readonly);
/* state_dir/<name>, malloc'd. */
char *cli_state_path(const struct cli *cli, const char *name);
/* RFC 3339, or a date meaning the end of that day in tz. -1 if malformed. */
int cli_parse_time(const char *s, const char *tz, int64_t *ms);
/*
 * The cataloged path a PATH argument names (restore file, catalog history).
 * Paths are shown escaped (common/pathenc.h), and both the raw bytes and
 * that form are accepted back; a relative PATH is taken from the current
 * folder. A file literally named like another's escape ("a\x0ab" next to
 * "a<newline>b") makes an argument ambiguous: then, unless form says which
 * reading is meant, nothing is guessed.
 */
enum cli_path_form {
    CLI_PATH_EITHER,  /* as typed, or as the escaped form: whichever is cataloged */
    CLI_PATH_LITERAL, /* --literal: byte for byte as typed */
    CLI_PATH_ESCAPED, /* --escaped: \xNN and \\ decoded */
};
/* 1 and *path (absolute, raw, malloc'd) when one reading names a path with versions; 0
 * (*path: the literal reading) when none does; -1 with err on a catalog error; -2 with
 * err naming both candidates when both readings do (form CLI_PATH_EITHER only). */
int cli_catalog_path(struct cli *cli, const char *arg, enum cli_path_form form, char **path,
                     struct cst_err *err);
/* Print to stderr "custodian: <msg>" and return status. */
int cli_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 1 if the agent holds the state lock (is running). */
int cli_agent_running(const struct cli *cli);
/* Take the agent lock (state_dir/agent.lock), or -1 if another process holds it. */
int cli_lock_agent(const struct cli *cli, struct cst_err *err);
void cli_close(struct cli *cli);
/* The Unix user running this command, for audit rows ("root", "uid 1001"). */
const char *cli_user(void);

#endif
