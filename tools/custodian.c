/*
 * custodian.c — the admin command: `custodian VERB STORE [options]`.
 *
 * Owns main(): process-wide setup (libsodium, a private umask), the
 * top-level usage, --help/--version, and the table that sends each verb
 * to its cmd_VERB.  Verbs parse their own options (getopt_long), so this
 * file never looks past argv[1].
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "crypt.h"

#define CUSTODIAN_VERSION "0.1.0"

/* One verb of the admin command. */
struct verb {
	const char *name;                  /* as typed after `custodian` */
	int (*run)(int argc, char **argv); /* argv[0] is the verb name */
	const char *summary;               /* one line for the top-level usage */
};

static const struct verb verbs[] = {
	{"init", cmd_init, "create a new store and print its recovery key"},
	{"passwd", cmd_passwd, "change, add, remove or list key slots"},
	{"keys", cmd_passwd, "the same as passwd"},
	{"status", cmd_status, "show a store's id, slots, mount and size"},
	{"fsck", cmd_fsck, "check every name and block of a store (read-only)"},
	{"policy", cmd_policy, "apply, show or check the access policy"},
	{"subjects", cmd_subjects, "list data subjects; export/apply the erasure ledger"},
	{"shred", cmd_shred, "erase one data subject for good (erasure certificate)"},
	{"restrict", cmd_restrict, "restrict processing of a data subject"},
	{"unrestrict", cmd_unrestrict, "lift a restriction of processing"},
	{"hold", cmd_hold, "place a data subject on legal hold"},
	{"release", cmd_release, "release a legal hold"},
	{"audit", cmd_audit, "show, verify or print the head of the audit log"},
	{"retention", cmd_retention, "report what is kept and due; sweep what is due"},
	{"report", cmd_report, "register of processing for the DPO (Markdown/HTML)"},
	{"export", cmd_export, "data-subject access package: files, manifest, audit"},
	{"backup", cmd_backup, "back up the catalogue and its erasure ledger"},
	{"restore", cmd_restore, "restore a catalogue backup; re-apply later erasures"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: custodian VERB STORE [options]\n"
		   "       custodian help [VERB]\n"
		   "       custodian --help | --version\n"
		   "\n"
		   "verbs:\n");
	for (size_t i = 0; i < ARRAY_LEN(verbs); i++)
		fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(f, "\nRun 'custodian VERB --help' for the options of a verb.\n");
}

static const struct verb *find_verb(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(verbs); i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

int main(int argc, char **argv)
{
	const struct verb *v;

	/* Everything this command creates (catalogue, tree) is private. */
	umask(077);
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    (strcmp(argv[1], "help") == 0 && argc == 2)) {
		usage(stdout);
		return CLI_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("custodian %s\n", CUSTODIAN_VERSION);
		return CLI_OK;
	}
	if (crypt_init() != 0) {
		fprintf(stderr, "custodian: cannot initialise the crypto library\n");
		return CLI_FAIL;
	}
	if (strcmp(argv[1], "help") == 0) {
		/* `custodian help VERB` is `custodian VERB --help`. */
		char *hargv[] = {argv[2], "--help", NULL};

		v = find_verb(argv[2]);
		if (v == NULL || argc > 3) {
			fprintf(stderr, "custodian: help: unknown verb '%s'\n", argv[2]);
			usage(stderr);
			return CLI_USAGE;
		}
		return v->run(2, hargv);
	}
	v = find_verb(argv[1]);
	if (v == NULL) {
		fprintf(stderr, "custodian: unknown verb '%s'\n", argv[1]);
		usage(stderr);
		return CLI_USAGE;
	}
	return v->run(argc - 1, argv + 1);
}
