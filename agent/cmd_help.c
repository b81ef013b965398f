/*
 * cmd_help.c - `custodian help [COMMAND]`: the command table, for people
 * (aligned) and, with --reference, for the generators: custodian(8)
 * (scripts/gen-man.py) and the bash completion (scripts/gen-completion.py)
 * are written from its tab-separated lines, and tests keep them in step.
 */
#include <stdio.h>
#include <string.h>

#include "agent/cli.h"

/* Does the command name start with the words argv[1..argc-1]? */
static int named(const char *name, int argc, char **argv)
{
    const char *p = name;

    for (int i = 1; i < argc; i++) {
        size_t n = strlen(argv[i]);

        if (strncmp(p, argv[i], n) != 0 || (p[n] != ' ' && p[n] != '\0'))
            return 0;
        p += n + (p[n] == ' ');
    }
    return 1;
}

static int cmd_help_exec(struct cli *cli, int argc, char **argv)
{
    int shown = 0;

    (void)cli;
    if (argc == 2 && strcmp(argv[1], "--reference") == 0) {
        printf("command\tusage\thelp\n");
        for (const struct cmd_entry *const *e = cmd_table; *e; e++)
            printf("%s\t%s\t%s\n", (*e)->name, (*e)->usage, (*e)->help);
        return EXIT_OK;
    }
    for (const struct cmd_entry *const *e = cmd_table; *e; e++) {
        if (!named((*e)->name, argc, argv))
            continue;
        printf("custodian %s%s%s\n    %s\n", (*e)->name, (*e)->usage[0] ? " " : "", (*e)->usage,
               (*e)->help);
        shown++;
    }
    if (shown == 0)
        return cli_fail(EXIT_USAGE, "no command '%s': see custodian help", argv[1]);
    if (argc == 1)
        printf("\nconfig: -c CONFIG, else $CUSTODIAN_CONFIG, else /etc/custodian/custodian.conf\n"
               "manual: man custodian, man custodian.conf\n");
    return EXIT_OK;
}

const struct cmd_entry cmd_help_entry = {
    .name = "help",
    .usage = "[COMMAND | --reference]",
    .help = "the commands, or one of them; --reference: tab-separated, for generators",
    .exec = cmd_help_exec,
};
