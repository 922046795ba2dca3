/* cli.h — the `wan` command: one function per subcommand, built on wan.h only. */
#ifndef WAN_CLI_H
#define WAN_CLI_H

#include "wan.h"

/* Each subcommand gets argv after its own name (argv[0] is the subcommand) and returns the process
 * exit code: 0 ok, 1 runtime failure, 2 bad usage. */
int cmd_info(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* Shared helpers (cli_util.c). */
void cli_log_to_stderr(wan_log_level level, const char *msg, void *user);
/* Exit code for a status: 2 for invalid arguments, 1 otherwise. */
int cli_exit_code(wan_status rc);
/* Formats bytes as "1.23 GiB" into buf. */
const char *cli_bytes(int64_t n, char *buf, size_t len);

#endif
