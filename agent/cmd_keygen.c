/*
 * cmd_keygen.c - `custodian keygen --out DIR`: a new key set and its
 * recovery sheet; `custodian keygen --sheet DIR`: the sheet of an existing
 * key folder, on stdout (for key sets made before sheets existed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cli.h"
#include "agent/keys.h"
#include "agent/recovery_sheet.h"
#include "common/util.h"

static int cmd_keygen_exec(struct cli *cli, int argc, char **argv)
{
    struct cst_err err;
    char *sheet;
    int exists;

    (void)cli;
    if (argc == 3 && strcmp(argv[1], "--sheet") == 0) {
        if (recovery_sheet_write(argv[2], STDOUT_FILENO, &err) < 0)
            return cli_fail(EXIT_FAILED, "%s", err.msg);
        return EXIT_OK;
    }
    if (argc != 3 || strcmp(argv[1], "--out") != 0)
        return cli_fail(EXIT_USAGE, "usage: custodian keygen --out DIR | --sheet DIR");
    /* Checked first, so that a key set is never left without its sheet by our doing. */
    sheet = util_join(argv[2], RECOVERY_SHEET_NAME);
    exists = access(sheet, F_OK) == 0 || errno != ENOENT;
    free(sheet);
    if (exists)
        return cli_fail(EXIT_FAILED,
                        "%s/%s already exists (an earlier key set's?); destroy it or choose "
                        "another folder",
                        argv[2], RECOVERY_SHEET_NAME);
    if (keys_generate(argv[2], &err) < 0)
        return cli_fail(EXIT_FAILED, "%s", err.msg);
    if (recovery_sheet_create(argv[2], &err) < 0)
        return cli_fail(EXIT_FAILED,
                        "key set written to %s, but its recovery sheet was not: %s; run "
                        "custodian keygen --sheet %s",
                        argv[2], err.msg, argv[2]);
    printf("key set written to %s:\n"
           "  backup.pub          the agent needs only this to write backups\n"
           "  backup.key          decrypts backups: keep it off the app host, offline\n"
           "  naming.key          names objects (the agent needs it)\n"
           "  signing.key         signs manifests (the agent needs it)\n"
           "  signing.pub         verifies manifests\n"
           "  %s  every key, to print and keep in a safe; then\n"
           "                      delete it here (shred -u)\n"
           "To restore without custodian: backup.key and signing.pub, with naming.key\n"
           "kept beside them (docs/ARCHIVE.md).\n",
           argv[2], RECOVERY_SHEET_NAME);
    return EXIT_OK;
}

const struct cmd_entry cmd_keygen_entry = {
    .name = "keygen",
    .usage = "--out DIR | --sheet DIR",
    .help = "new key set and its printable recovery sheet; or the sheet of a key folder",
    .exec = cmd_keygen_exec,
};
