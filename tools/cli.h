/*
 * cli.h — the admin command's verbs and the helpers they share.
 *
 * `custodian VERB ARGS...`: custodian.c dispatches to one cmd_VERB per
 * verb; each lives in tools/cmd_VERB.c, prints its own usage on --help,
 * reports failure as one line "custodian: VERB: reason" on stderr and
 * returns the exit status (0 ok, 1 failure or findings, 2 usage error).
 */
#ifndef CUSTODIAN_CLI_H
#define CUSTODIAN_CLI_H

#include "store.h"

/* Exit statuses shared by every verb. */
#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2

int cmd_init(int argc, char **argv);
int cmd_passwd(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_policy(int argc, char **argv);

/* How a verb unlocks the store: exactly one source may be set; with none,
 * the passphrase is read from the terminal. */
struct cli_unlock {
	const char *passfile;      /* --passfile FILE */
	const char *extpass;       /* --extpass CMD */
	const char *recovery_file; /* --recovery-file FILE (recovery key text) */
	const char *keyfile;       /* --keyfile FILE */
};

/* Opens and unlocks STORE; on failure prints "custodian: VERB: STORE:
 * reason" and returns -errno. */
int cli_open_unlocked(const char *verb, const char *path, bool readonly,
		      const struct cli_unlock *how, struct store **out);

/* Prints "custodian: VERB: msg" to stderr (printf-style). */
void cli_err(const char *verb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
