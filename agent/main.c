/*
 * main.c - custodian's entry point: global options, then the command table.
 *
 *   custodian [-c CONFIG] [--json] COMMAND [ARGS]
 *   custodian --version | --help
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cli.h"
#include "common/pathenc.h"
#include "common/util.h"

/* One place for the version: the top entry of packaging/debian/changelog, which
 * the Makefile passes in and the Debian package is built from. */
#ifndef CUSTODIAN_VERSION
#error "CUSTODIAN_VERSION is set by the Makefile from packaging/debian/changelog"
#endif

static void usage(FILE *out)
{
    fputs("usage: custodian [-c CONFIG] [--json] COMMAND [ARGS]\n"
          "       custodian --version | --help\n\ncommands:\n",
          out);
    for (const struct cmd_entry *const *e = cmd_table; *e; e++)
        fprintf(out, "  %-16s %-40s %s\n", (*e)->name, (*e)->usage, (*e)->help);
    fputs("\nconfig: -c CONFIG, else $CUSTODIAN_CONFIG, else /etc/custodian/custodian.conf\n", out);
}

/* The command line as the audit log names it: each word escaped (common/pathenc.h), and
 * quoted as a shell would need it when it holds anything but plain characters. */
static char *command_line(int argc, char **argv)
{
    char *line = util_xstrdup("custodian");

    for (int i = 1; i < argc; i++) {
        char *word = pathenc_escape(argv[i], strlen(argv[i])), *more;
        int plain =
            word[0] != '\0' && strspn(word, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                            "qrstuvwxyz0123456789_./:=@%+,-") == strlen(word);

        if (plain) {
            more = util_printf("%s %s", line, word);
        } else {
            char *quoted = util_xstrdup("'");

            for (const char *c = word; *c; c++) {
                char *q =
                    *c == '\'' ? util_printf("%s'\\''", quoted) : util_printf("%s%c", quoted, *c);

                free(quoted);
                quoted = q;
            }
            more = util_printf("%s %s'", line, quoted);
            free(quoted);
        }
        free(line);
        free(word);
        line = more;
    }
    return line;
}

/* Match argv against a one- or two-word command name. */
static int matches(const char *name, int argc, char **argv, int *words)
{
    const char *space = strchr(name, ' ');

    if (space == NULL) {
        *words = 1;
        return strcmp(name, argv[0]) == 0;
    }
    *words = 2;
    return argc >= 2 && strncmp(name, argv[0], (size_t)(space - name)) == 0 &&
           argv[0][space - name] == '\0' && strcmp(space + 1, argv[1]) == 0;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    int i = 1, status;

    cli.config_path = getenv("CUSTODIAN_CONFIG");
    if (cli.config_path == NULL || cli.config_path[0] == '\0')
        cli.config_path = "/etc/custodian/custodian.conf";
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            cli.config_path = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            cli.json = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("custodian %s\ncatalog schema %d\n", CUSTODIAN_VERSION, catalog_schema_latest());
            return EXIT_OK;
        } else {
            fprintf(stderr, "custodian: unknown option %s\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    {
        char *line = command_line(argc, argv);

        catalog_audit_set_command(line);
        free(line);
    }
    for (const struct cmd_entry *const *e = cmd_table; *e; e++) {
        int words;

        if (!matches((*e)->name, argc - i, argv + i, &words))
            continue;
        /* Commands also accept --json after their name. */
        int n = 0;
        char **args = calloc((size_t)(argc - i + 1), sizeof(char *));
        if (args == NULL)
            return EXIT_FAILED;
        for (int k = i + words - 1; k < argc; k++) {
            if (k > i + words - 1 && strcmp(argv[k], "--json") == 0)
                cli.json = 1;
            else
                args[n++] = argv[k];
        }
        status = (*e)->exec(&cli, n, args);
        cli_audit_failure(&cli, (*e)->name, status);
        free(args);
        cli_close(&cli);
        catalog_audit_set_command(NULL);
        return status;
    }
    fprintf(stderr, "custodian: unknown command '%s'\n", argv[i]);
    usage(stderr);
    return EXIT_USAGE;
}
