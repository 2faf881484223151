/*
 * cmd_hold.c — the two flags an operator sets on one data subject:
 * `custodian hold|release STORE SUBJECT --reason` (legal hold) and
 * `custodian restrict|unrestrict STORE SUBJECT --reason` (restriction of
 * processing, GDPR art. 18).  Both verbs pairs share one implementation,
 * described by a table of struct flag_verb.
 *
 * While a hold is set nothing in the subject may be deleted, truncated,
 * swept or shredded (EPERM; the daemon enforces the file operations,
 * subjects_shred the shred).  While a restriction is set only principals
 * the policy grants `admin` may read the subject's files.  The reason of the
 * latest change is kept sealed under the subject's key; the change is
 * recorded in the audit chain.  Needs an unmounted store for now (live
 * changes come with the daemon's control channel).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "cli.h"
#include "subjects.h"

enum {
	OPT_REASON = CLI_OPT_FIRST_FREE,
	OPT_HELP,
};

static const struct option longopts[] = {
	{"reason", required_argument, NULL, OPT_REASON},
	{"help", no_argument, NULL, OPT_HELP},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

/* One verb: which flag it sets or clears, and what it tells the user. */
struct flag_verb {
	const char *verb; /* the command word */
	bool on;          /* sets (true) or clears the flag */
	int (*set)(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES], bool on,
		   const char *reason, bool *changed); /* subjects_set_* */
	const char *help;                              /* usage paragraph */
	const char *done;                              /* printed after a change */
	const char *same;                              /* printed when nothing changed */
};

static const struct flag_verb verbs[] = {
	{"hold", true, subjects_set_held,
	 "Places a legal hold on data subject SUBJECT: while held, nothing\n"
	 "in it may be deleted, truncated, swept or shredded.\n",
	 "on legal hold", "on legal hold (already)"},
	{"release", false, subjects_set_held,
	 "Releases a legal hold on data subject SUBJECT: while held, nothing\n"
	 "in it may be deleted, truncated, swept or shredded.\n",
	 "legal hold released", "legal hold released (was not held)"},
	{"restrict", true, subjects_set_restricted,
	 "Restricts processing of data subject SUBJECT: while restricted, only\n"
	 "principals the policy grants `admin` may read its files.\n",
	 "processing restricted", "processing restricted (already)"},
	{"unrestrict", false, subjects_set_restricted,
	 "Lifts the restriction of processing of data subject SUBJECT: while\n"
	 "restricted, only principals the policy grants `admin` may read its files.\n",
	 "restriction lifted", "restriction lifted (was not restricted)"},
};

static void usage(FILE *f, const struct flag_verb *fv)
{
	fprintf(f,
		"usage: custodian %s STORE SUBJECT --reason TEXT [unlock options]\n"
		"\n"
		"%s"
		"\n"
		"  --reason TEXT  why (kept, encrypted with the "
		"subject)\n" CLI_UNLOCK_HELP "  -h, --help     show this help\n",
		fv->verb, fv->help);
}

static int run(int argc, char **argv, const struct flag_verb *fv)
{
	const char *verb = fv->verb;
	struct cli_unlock how = {0};
	uint8_t hash[CRYPT_HASH_BYTES];
	const char *reason = NULL, *path, *id;
	struct audit *a = NULL;
	struct store *st = NULL;
	bool changed = false;
	int c, err, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_REASON:
			reason = optarg;
			break;
		case 'h':
		case OPT_HELP:
			usage(stdout, fv);
			return CLI_OK;
		case ':':
			cli_err(verb, "%s needs an argument", argv[optind - 1]);
			usage(stderr, fv);
			return CLI_USAGE;
		default:
			cli_err(verb, "unknown option %s", argv[optind - 1]);
			usage(stderr, fv);
			return CLI_USAGE;
		}
	}
	if (argc - optind != 2) {
		cli_err(verb, argc - optind < 2 ? "STORE and SUBJECT are required"
						: "too many arguments");
		usage(stderr, fv);
		return CLI_USAGE;
	}
	path = argv[optind];
	id = argv[optind + 1];
	if (reason == NULL || reason[0] == '\0') {
		cli_err(verb, "--reason is required");
		return CLI_USAGE;
	}
	if (strlen(reason) >= SUBJECTS_REASON_MAX) {
		cli_err(verb, "--reason is longer than %d bytes",
			SUBJECTS_REASON_MAX - 1);
		return CLI_USAGE;
	}
	if (subjects_id_check(id) < 0) {
		cli_err(verb, "'%s' is not a subject id (a directory name)", id);
		return CLI_USAGE;
	}
	if (cli_store_mounted(path)) {
		cli_err(verb,
			"%s is mounted; unmount it first (live changes come with the "
			"daemon's control channel)",
			path);
		return CLI_FAIL;
	}
	if (cli_open_unlocked(verb, path, false, &how, &st) < 0)
		return CLI_FAIL;
	err = audit_open(st, NULL, &a);
	if (err < 0) {
		cli_err(verb, "%s: %s", path,
			err == -EBUSY ? "the store is in use (mounted?)"
				      : store_strerror(err));
		goto out;
	}
	subjects_hash(st->mk, id, hash);
	err = fv->set(st, hash, fv->on, reason, &changed);
	{
		struct audit_event ev = {0};
		struct audit_who who;
		uint64_t seq;

		audit_who_self(&who);
		ev.op = verb;
		ev.outcome = err < 0 ? -err : 0;
		ev.who = &who;
		ev.subject = hash;
		if (audit_append(a, &ev, &seq) < 0 && err == 0)
			cli_err(verb, "warning: the change could not be audited");
	}
	if (err < 0) {
		cli_err(verb, "%s: %s", id,
			err == -ENOENT    ? "no such subject"
			: err == -ENOKEY  ? "the subject is shredded"
			: err == -EBADMSG ? "the subject's catalogue row was changed "
					    "outside custodian"
					  : store_strerror(err));
		goto out;
	}
	printf("%s: %s\n", id, changed ? fv->done : fv->same);
	ret = CLI_OK;
out:
	audit_close(a);
	store_close(st);
	return ret;
}

int cmd_hold(int argc, char **argv)
{
	return run(argc, argv, &verbs[0]);
}

int cmd_release(int argc, char **argv)
{
	return run(argc, argv, &verbs[1]);
}

int cmd_restrict(int argc, char **argv)
{
	return run(argc, argv, &verbs[2]);
}

int cmd_unrestrict(int argc, char **argv)
{
	return run(argc, argv, &verbs[3]);
}
