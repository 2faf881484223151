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

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

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
int cmd_subjects(int argc, char **argv);
int cmd_shred(int argc, char **argv);
int cmd_restrict(int argc, char **argv);
int cmd_unrestrict(int argc, char **argv);
int cmd_hold(int argc, char **argv);
int cmd_release(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_retention(int argc, char **argv); /* cmd_retention.c: report|sweep */
int cmd_report(int argc, char **argv);    /* cmd_report.c: register of processing */
int cmd_export(int argc, char **argv);

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

/* Is the store at `path` mounted by a custodian daemon?  (The daemon mounts
 * with fsname = realpath of the store and type fuse.custodian.) */
bool cli_store_mounted(const char *path);

/* Asks the daemon serving the store at path to commit its queued audit
 * records (control verb audit-flush; it commits in batches ~20 ms apart),
 * so what is read next holds every operation that returned before.  Best
 * effort: without an answer a one-line warning says `what` may miss the
 * last moments, and the caller goes on. */
void cli_audit_flush(const char *verb, const char *path, const char *what);

/* Prints "custodian: VERB: msg" to stderr (printf-style). */
void cli_err(const char *verb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* --- Added by the admin-tool engineer (additive; shared by the verbs). --- */

/* getopt_long values of the unlock options, above any short option. */
enum cli_opt {
	CLI_OPT_PASSFILE = 0x100,
	CLI_OPT_EXTPASS,
	CLI_OPT_RECOVERY_FILE,
	CLI_OPT_KEYFILE,
	CLI_OPT_FIRST_FREE = 0x200, /* verbs number their own long options from here */
};

/* The four unlock options, for a verb's struct option table. */
/* clang-format off */
#define CLI_UNLOCK_LONGOPTS \
	{"passfile", required_argument, NULL, CLI_OPT_PASSFILE}, \
	{"extpass", required_argument, NULL, CLI_OPT_EXTPASS}, \
	{"recovery-file", required_argument, NULL, CLI_OPT_RECOVERY_FILE}, \
	{"keyfile", required_argument, NULL, CLI_OPT_KEYFILE}
/* clang-format on */

/* Usage text for the unlock options (one line per option). */
#define CLI_UNLOCK_HELP                                                                  \
	"  --passfile FILE       read the passphrase from FILE\n"                        \
	"  --extpass CMD         run CMD (sh -c) and read the passphrase from it\n"      \
	"  --recovery-file FILE  unlock with the recovery key written in FILE\n"         \
	"  --keyfile FILE        unlock with the key file FILE\n"                        \
	"  (none of these: ask for the passphrase on the terminal)\n"

/* Records opt in how if it is an unlock option; true if it was one. */
bool cli_unlock_option(struct cli_unlock *how, int opt, const char *arg);

/* Parses a decimal number in [min, max] given for option `name`; on error
 * prints "custodian: VERB: --name: reason" and returns -EINVAL. */
int cli_parse_u64(const char *verb, const char *name, const char *arg, uint64_t min,
		  uint64_t max, uint64_t *out);

/* --kdf-ops N (mem false) or --kdf-mem MIB (mem true) into kdf; prints
 * the one-line error itself and returns -EINVAL on a bad value. */
int cli_kdf_option(const char *verb, bool mem, const char *arg, struct keys_kdf *kdf);

/* A new passphrase: from passfile if set, else asked twice on the
 * terminal.  Prints the one-line error itself; returns -errno. */
int cli_new_passphrase(const char *verb, const char *passfile, struct secret **out);

/* UTC microseconds as ISO 8601, e.g. "2026-11-24T05:10:36Z". */
#define CLI_TIME_MAX 32
void cli_time_iso(int64_t us, char out[CLI_TIME_MAX]);

/* UTC microseconds as ISO 8601 with microseconds, e.g.
 * "2026-11-24T05:10:36.123456Z" (audit --json's "ts").  (Additive.) */
void cli_time_iso_us(int64_t us, char out[CLI_TIME_MAX]);

/* Undoes, in place, the octal escapes (\040 etc.) of a /proc/self/mounts
 * field.  (Additive.) */
void cli_mounts_unescape(char *s);

/* Asks question + " [y/N] " on stdout and reads a line from stdin: true
 * only for an answer starting with y or Y (EOF is no). */
bool cli_confirm(const char *question);

/* out = "hex:" + the hex of s: a control request field that may hold
 * spaces or any other byte (the daemon decodes it). */
void cli_hex_field(const char *s, char *out, size_t cap);

/* --- Added by the daemon engineer (additive). --- */

/* Records an administrative event (op AUDIT_OP_POLICY, _KEYS, ...;
 * outcome 0 or an errno; detail without names) in st's audit log: through
 * the running daemon (control verb audit-admin) if the store is mounted,
 * else by opening the log itself (the store must be open read-write).
 * *seq (may be NULL) gets the record's position.  Prints the one-line
 * error itself; 0 or -errno. */
int cli_audit_admin(const char *verb, struct store *st, const char *op, int outcome,
		    const char *detail, uint64_t *seq);

/* cli_audit_admin with a plaintext path (sealed under the volume keys)
 * and/or a subject hash (CRYPT_HASH_BYTES) in the record; either may be
 * NULL.  Mounted, they travel as audit-admin's path=hex:... and
 * subject=HEX fields.  (Added with the live directory holds and export.) */
int cli_audit_admin_ex(const char *verb, struct store *st, const char *op, int outcome,
		       const char *path, const uint8_t *subject, const char *detail,
		       uint64_t *seq);

/* --- Option parsing shared by every verb (additive). --- */

/* A verb's usage printer (stdout for --help, stderr after an error). */
typedef void (*cli_usage_fn)(FILE *f);

/* The end of a verb's getopt_long loop (optstring ":h", "help" mapped to
 * 'h'), for c the verb does not handle: 'h' prints usage(stdout) and
 * returns CLI_OK; ':' prints "OPTION needs an argument", anything else
 * "unknown option OPTION", then usage(stderr), and returns CLI_USAGE.
 * usage NULL: the caller prints its usage itself. */
int cli_getopt_fail(const char *verb, int c, char **argv, cli_usage_fn usage);

/* After the options: 0 if exactly want operands remain (argc - optind),
 * else prints missing (too few) or "too many arguments", then
 * usage(stderr) unless NULL, and returns CLI_USAGE. */
int cli_operands(const char *verb, int argc, int want, const char *missing,
		 cli_usage_fn usage);

/* --reason given, not empty, shorter than max bytes; else prints
 * "--reason is required" or "--reason is longer than MAX-1 bytes" and
 * returns CLI_USAGE.  0 if fine. */
int cli_check_reason(const char *verb, const char *reason, size_t max);

/* SUBJECT is a valid subject id (subjects_id_check); else prints "'ID' is
 * not a subject id (a directory name)" and returns CLI_USAGE.  0 if fine. */
int cli_check_subject_id(const char *verb, const char *id);

struct json_object;
struct catalog_audit_row;

/* One audit record as the JSON object of `custodian audit log --json`
 * (also the lines of an export's audit.json): user is the uid's name or
 * NULL, path/path2 the opened paths (used only if the record has them).
 * NULL only if out of memory. */
struct json_object *cli_audit_json(const struct catalog_audit_row *r, const char *user,
				   const char *path, const char *path2);

/* --- Added for backups (additive): cmd_backup.c. --- */
int cmd_backup(int argc, char **argv);  /* copy of the catalogue + ledger */
int cmd_restore(int argc, char **argv); /* restore it; re-apply erasures */

#endif
