/*
 * cmdline.h - an operator's command line (`[mongodb] dump_command`) split
 * into words and run without a shell, and what of it may be shown.
 *
 * Quoting (what docs/configuration.md says for the key):
 *   - words are separated by blanks (spaces, tabs);
 *   - '...' keeps everything inside literally, blanks included;
 *   - "..." keeps everything literally except \" and \\ (a quote, a
 *     backslash); $ and ` inside are refused, as a shell would expand them;
 *   - outside quotes, a backslash takes the next character literally;
 *   - outside quotes | & ; < > ( ) $ ` * ? [ ] { } and a word's leading ~ or #
 *     are refused: there is no shell to give them a meaning (pipes,
 *     redirection, variables, globs, comments), so put such a command in a
 *     script and name the script; quote them to pass them on as they are.
 *
 * Shown form: only the command's name (argv[0]). Any other text that may
 * echo the command (its stderr) goes through cmdline_redact() first.
 */
#ifndef CST_CMDLINE_H
#define CST_CMDLINE_H

#include <stddef.h>

#include "common/err.h"

/* Split text into a NULL-terminated argv (free with cmdline_free). Returns the word
 * count (>= 1), or -1 with err saying what is wrong and where (by character
 * position: the text itself may hold a password, so it is never quoted back). */
int cmdline_split(const char *text, char ***argv, struct cst_err *err);
void cmdline_free(char **argv);

/*
 * text (malloc'd copy) with the secrets of argv masked as "****": the value after
 * --password/--pass/--passwd/-p, the value of any NAME=VALUE word whose NAME speaks
 * of a password, secret or token, and the password of any scheme://user:password@
 * URI; plus, anywhere in text, URI passwords and --password/password= values.
 * argv may be NULL (only the patterns in text).
 */
char *cmdline_redact(const char *text, char *const *argv);

#endif
