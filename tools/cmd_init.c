/*
 * cmd_init.c — `custodian init STORE`: creates a store.
 *
 * Owns the administrator's side of store creation: where the first
 * passphrase comes from, the Argon2id cost of its slot, and showing the
 * recovery key exactly once (text or JSON).  The layout itself is
 * store_create's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

#define VERB "init"

enum {
	OPT_KDF_OPS = CLI_OPT_FIRST_FREE,
	OPT_KDF_MEM,
	OPT_JSON,
};

static const struct option longopts[] = {
	{"passfile", required_argument, NULL, CLI_OPT_PASSFILE},
	{"kdf-ops", required_argument, NULL, OPT_KDF_OPS},
	{"kdf-mem", required_argument, NULL, OPT_KDF_MEM},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: custodian init STORE [--passfile FILE] [--kdf-ops N]\n"
		"           [--kdf-mem MIB] [--json]\n"
		"\n"
		"Creates a new store in STORE (a new or empty directory) and\n"
		"prints its recovery key once.\n"
		"\n"
		"  --passfile FILE  read the first passphrase from FILE\n"
		"                   (default: ask twice on the terminal)\n"
		"  --kdf-ops N      Argon2id passes for the passphrase slot\n"
		"                   (default %llu)\n"
		"  --kdf-mem MIB    Argon2id memory in MiB (default %llu)\n"
		"  --json           print {\"store\": ..., \"recovery_key\": ...}\n"
		"  -h, --help       show this help\n",
		(unsigned long long)CRYPT_PWHASH_OPS_DEFAULT,
		(unsigned long long)(CRYPT_PWHASH_MEM_DEFAULT >> 20));
}

/* Refuses an existing store or a non-empty directory before asking for a
 * passphrase, so the administrator does not type it twice for nothing. */
static int precheck(const char *path)
{
	char db[4096];
	int n;

	n = snprintf(db, sizeof(db), "%s/%s", path, CATALOG_FILE);
	if (n < 0 || (size_t)n >= sizeof(db)) {
		cli_err(VERB, "%s: %s", path, strerror(ENAMETOOLONG));
		return -ENAMETOOLONG;
	}
	if (access(db, F_OK) == 0) {
		cli_err(VERB, "%s: %s", path, store_strerror(-EEXIST));
		return -EEXIST;
	}
	return 0;
}

static int print_json(const char *path, const char *recovery)
{
	json_object *o = json_object_new_object();
	int ret = 0;

	if (o == NULL)
		return -ENOMEM;
	json_object_object_add(o, "store", json_object_new_string(path));
	json_object_object_add(o, "recovery_key", json_object_new_string(recovery));
	if (puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE)) < 0)
		ret = -EIO;
	/* The recovery key is inside o's buffers; json-c frees without wiping,
	 * which is as much as the printed copy on the terminal gives anyway. */
	json_object_put(o);
	return ret;
}

int cmd_init(int argc, char **argv)
{
	char recovery[KEYS_RECOVERY_TEXT_MAX];
	struct keys_kdf kdf = {
		.opslimit = CRYPT_PWHASH_OPS_DEFAULT,
		.memlimit = CRYPT_PWHASH_MEM_DEFAULT,
	};
	const char *passfile = NULL, *path;
	struct secret *pass = NULL;
	bool json = false;
	int c, ret = CLI_FAIL, err;

	memset(recovery, 0, sizeof(recovery));
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case CLI_OPT_PASSFILE:
			passfile = optarg;
			break;
		case OPT_KDF_OPS:
		case OPT_KDF_MEM:
			if (cli_kdf_option(VERB, c == OPT_KDF_MEM, optarg, &kdf) < 0)
				return CLI_USAGE;
			break;
		case OPT_JSON:
			json = true;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 1, "no STORE given", usage))
		return CLI_USAGE;
	path = argv[optind];

	if (precheck(path) < 0)
		goto out;
	if (cli_new_passphrase(VERB, passfile, &pass) < 0)
		goto out;
	err = store_create(path, pass, &kdf, recovery);
	if (err < 0) {
		/* store_strerror words -ENOENT as "not a store", which is not
		 * what a missing parent directory means here. */
		cli_err(VERB, "%s: %s", path,
			err == -ENOENT ? strerror(ENOENT) : store_strerror(err));
		goto out;
	}
	if (json) {
		if (print_json(path, recovery) < 0)
			goto out;
	} else {
		printf("created store %s\n", path);
		printf("recovery key: %s\n", recovery);
		printf("Write the recovery key down and keep it somewhere safe: it is "
		       "shown "
		       "only once, and it is the only way in if every passphrase is "
		       "lost.\n");
	}
	if (fflush(stdout) != 0) {
		cli_err(VERB, "writing the recovery key: %s", strerror(errno));
		goto out;
	}
	ret = CLI_OK;
out:
	crypt_wipe(recovery, sizeof(recovery));
	secret_free(pass);
	return ret;
}
