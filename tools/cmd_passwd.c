/*
 * cmd_passwd.c — `custodian passwd STORE`: the store's key slots.
 *
 * Owns the order of slot changes, which is what keeps a store openable:
 * a new slot is always written before an old one is removed, so a failure
 * (or a kill) midway leaves one slot too many, never one too few.  Slots
 * wrap the master key, so nothing here re-encrypts data.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"

#define VERB "passwd"

enum {
	OPT_NEW_PASSFILE = CLI_OPT_FIRST_FREE,
	OPT_ADD,
	OPT_REMOVE,
	OPT_LIST,
	OPT_ADD_KEYFILE,
	OPT_KDF_OPS,
	OPT_KDF_MEM,
	OPT_JSON,
};

static const struct option longopts[] = {
	CLI_UNLOCK_LONGOPTS,
	{"new-passfile", required_argument, NULL, OPT_NEW_PASSFILE},
	{"add", no_argument, NULL, OPT_ADD},
	{"remove", required_argument, NULL, OPT_REMOVE},
	{"list", no_argument, NULL, OPT_LIST},
	{"add-keyfile", required_argument, NULL, OPT_ADD_KEYFILE},
	{"kdf-ops", required_argument, NULL, OPT_KDF_OPS},
	{"kdf-mem", required_argument, NULL, OPT_KDF_MEM},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* What this run does; exactly one. */
enum mode {
	MODE_CHANGE, /* replace the passphrase that unlocked */
	MODE_ADD,    /* add a passphrase slot */
	MODE_REMOVE, /* remove one slot */
	MODE_LIST,   /* list slots (no unlock) */
	MODE_KEYFILE /* add a keyfile slot */
};

static void usage(FILE *f)
{
	fputs("usage: custodian passwd STORE [unlock options] [--new-passfile FILE]\n"
	      "           [--kdf-ops N] [--kdf-mem MIB] [--json]\n"
	      "       custodian passwd STORE [unlock options] --add\n"
	      "           [--new-passfile FILE]\n"
	      "       custodian passwd STORE [unlock options] --add-keyfile FILE\n"
	      "       custodian passwd STORE [unlock options] --remove SLOT\n"
	      "       custodian passwd STORE --list [--json]\n"
	      "\n"
	      "Without a mode option, changes the passphrase: adds a slot with\n"
	      "the new passphrase, then removes the passphrase slot that\n"
	      "unlocked.  Unlock with --recovery-file to replace a forgotten\n"
	      "passphrase.  No data is re-encrypted.\n"
	      "\n",
	      f);
	fputs(CLI_UNLOCK_HELP, f);
	fprintf(f,
		"  --new-passfile FILE   read the new passphrase from FILE\n"
		"                        (default: ask twice on the terminal)\n"
		"  --add                 add a passphrase slot, keep the old ones\n"
		"  --add-keyfile FILE    add a slot opened by the contents of FILE\n"
		"  --remove SLOT         remove slot SLOT (never the last one)\n"
		"  --list                list the slots: id, kind, label, created\n"
		"  --kdf-ops N           Argon2id passes for the new slot\n"
		"                        (default %llu)\n"
		"  --kdf-mem MIB         Argon2id memory in MiB (default %llu)\n"
		"  --json                print JSON (one object per line)\n"
		"  -h, --help            show this help\n",
		(unsigned long long)CRYPT_PWHASH_OPS_DEFAULT,
		(unsigned long long)(CRYPT_PWHASH_MEM_DEFAULT >> 20));
}

static void print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static int list_slots(const char *path, bool json)
{
	struct catalog_slot *slots = NULL;
	struct store *st = NULL;
	char when[CLI_TIME_MAX];
	size_t n = 0;
	int ret = CLI_FAIL, err;

	err = store_open(path, true, &st);
	if (err < 0) {
		cli_err(VERB, "%s: %s", path, store_strerror(err));
		goto out;
	}
	err = catalog_slot_list(st->cat, &slots, &n);
	if (err < 0) {
		cli_err(VERB, "%s: listing slots: %s", path, store_strerror(err));
		goto out;
	}
	if (!json)
		printf("%-4s  %-10s  %-16s  %s\n", "ID", "KIND", "LABEL", "CREATED");
	for (size_t i = 0; i < n; i++) {
		cli_time_iso(slots[i].created_us, when);
		if (json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "id",
					       json_object_new_int64(slots[i].id));
			json_object_object_add(o, "kind",
					       json_object_new_string(slots[i].kind));
			json_object_object_add(o, "label",
					       json_object_new_string(slots[i].label));
			json_object_object_add(o, "created",
					       json_object_new_string(when));
			print_json(o);
		} else {
			/* "-" keeps the columns splittable when there is no label. */
			printf("%-4" PRId64 "  %-10s  %-16s  %s\n", slots[i].id,
			       slots[i].kind, slots[i].label[0] ? slots[i].label : "-",
			       when);
		}
	}
	ret = CLI_OK;
out:
	free(slots);
	store_close(st);
	return ret;
}

/* Kind of slot `id`, or NULL if there is none (kind copied to buf). */
static const char *slot_kind(struct store *st, int64_t id, char *buf, size_t cap)
{
	struct catalog_slot *slots = NULL;
	const char *kind = NULL;
	size_t n = 0;

	if (catalog_slot_list(st->cat, &slots, &n) < 0)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (slots[i].id == id) {
			snprintf(buf, cap, "%s", slots[i].kind);
			kind = buf;
		}
	}
	free(slots);
	return kind;
}

/* Ids of passphrase slots other than `except`, as "1, 4" (for a hint). */
static void other_passphrase_slots(struct store *st, int64_t except, char *buf,
				   size_t cap)
{
	struct catalog_slot *slots = NULL;
	size_t n = 0, used = 0;

	buf[0] = '\0';
	if (catalog_slot_list(st->cat, &slots, &n) < 0)
		return;
	for (size_t i = 0; i < n && used < cap; i++) {
		if (slots[i].id == except ||
		    strcmp(slots[i].kind, KEYS_SLOT_PASSPHRASE) != 0)
			continue;
		int w = snprintf(buf + used, cap - used, "%s%" PRId64, used ? ", " : "",
				 slots[i].id);
		if (w < 0)
			break;
		used += (size_t)w;
	}
	free(slots);
}

/* Removes one slot; prints the error. */
static int remove_slot(struct store *st, const char *path, int64_t id)
{
	int err = keys_slot_remove(st->cat, id);

	if (err == -EBUSY)
		cli_err(VERB,
			"%s: slot %" PRId64
			" is the last slot that can unlock the store; "
			"add another slot first",
			path, id);
	else if (err == -ENOENT)
		cli_err(VERB, "%s: no slot %" PRId64, path, id);
	else if (err < 0)
		cli_err(VERB, "%s: removing slot %" PRId64 ": %s", path, id,
			store_strerror(err));
	return err;
}

int cmd_passwd(int argc, char **argv)
{
	struct keys_kdf kdf = {
		.opslimit = CRYPT_PWHASH_OPS_DEFAULT,
		.memlimit = CRYPT_PWHASH_MEM_DEFAULT,
	};
	struct cli_unlock how = {0};
	const char *new_passfile = NULL, *keyfile = NULL, *path;
	struct secret *sec = NULL;
	struct store *st = NULL;
	enum mode mode = MODE_CHANGE;
	int modes = 0, c, ret = CLI_FAIL, err;
	int64_t added = -1, removed = -1, old;
	uint64_t remove_id = 0;
	char kind[16], others[256];
	bool json = false;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_NEW_PASSFILE:
			new_passfile = optarg;
			break;
		case OPT_ADD:
			mode = MODE_ADD;
			modes++;
			break;
		case OPT_REMOVE:
			if (cli_parse_u64(VERB, "remove", optarg, 1, INT64_MAX,
					  &remove_id) < 0)
				return CLI_USAGE;
			mode = MODE_REMOVE;
			modes++;
			break;
		case OPT_LIST:
			mode = MODE_LIST;
			modes++;
			break;
		case OPT_ADD_KEYFILE:
			keyfile = optarg;
			mode = MODE_KEYFILE;
			modes++;
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
	if (modes > 1) {
		cli_err(VERB, "use only one of --add, --add-keyfile, --remove, --list");
		usage(stderr);
		return CLI_USAGE;
	}
	if (new_passfile != NULL && mode != MODE_CHANGE && mode != MODE_ADD) {
		cli_err(VERB, "--new-passfile goes with a passphrase change or --add");
		return CLI_USAGE;
	}
	path = argv[optind];
	if (mode == MODE_LIST)
		return list_slots(path, json);

	if (cli_open_unlocked(VERB, path, false, &how, &st) < 0)
		goto out;

	switch (mode) {
	case MODE_CHANGE:
	case MODE_ADD:
		if (cli_new_passphrase(VERB, new_passfile, &sec) < 0)
			goto out;
		err = keys_slot_add_passphrase(st->cat, st->mk, sec->buf, sec->len, &kdf,
					       &added);
		if (err < 0) {
			cli_err(VERB, "%s: adding a passphrase slot: %s", path,
				store_strerror(err));
			goto out;
		}
		if (!json)
			printf("added passphrase slot %" PRId64 "\n", added);
		if (mode == MODE_ADD)
			break;
		/* Only now that the new slot is stored may the old one go. */
		old = keys_master_slot(st->mk);
		if (old >= 0 && old != added &&
		    slot_kind(st, old, kind, sizeof(kind)) != NULL &&
		    strcmp(kind, KEYS_SLOT_PASSPHRASE) == 0) {
			if (remove_slot(st, path, old) < 0)
				goto out;
			removed = old;
			if (!json)
				printf("removed passphrase slot %" PRId64 "\n", removed);
		} else if (!json) {
			other_passphrase_slots(st, added, others, sizeof(others));
			if (others[0] != '\0')
				printf("passphrase slot(s) %s still open the store; "
				       "remove them "
				       "with 'custodian passwd %s --remove SLOT'\n",
				       others, path);
		}
		break;
	case MODE_KEYFILE:
		secret_free(sec);
		sec = NULL;
		err = secret_from_file(keyfile, &sec);
		if (err < 0) {
			cli_err(VERB, "%s: %s", keyfile,
				err == -EINVAL ? "empty or longer than 4096 bytes"
					       : strerror(-err));
			goto out;
		}
		err = keys_slot_add_keyfile(st->cat, st->mk, (const uint8_t *)sec->buf,
					    sec->len, &added);
		if (err < 0) {
			cli_err(VERB, "%s: adding a key file slot: %s", path,
				store_strerror(err));
			goto out;
		}
		if (!json)
			printf("added keyfile slot %" PRId64 "\n", added);
		break;
	case MODE_REMOVE:
		if (remove_slot(st, path, (int64_t)remove_id) < 0)
			goto out;
		removed = (int64_t)remove_id;
		if (!json)
			printf("removed slot %" PRId64 "\n", removed);
		break;
	case MODE_LIST:
		break;
	}
	{
		char detail[96] = "";

		if (added >= 0 && removed >= 0)
			snprintf(detail, sizeof(detail),
				 "%s slot %" PRId64 " added, slot %" PRId64 " removed",
				 mode == MODE_KEYFILE ? "keyfile" : "passphrase", added,
				 removed);
		else if (added >= 0)
			snprintf(detail, sizeof(detail), "%s slot %" PRId64 " added",
				 mode == MODE_KEYFILE ? "keyfile" : "passphrase", added);
		else if (removed >= 0)
			snprintf(detail, sizeof(detail), "slot %" PRId64 " removed",
				 removed);
		if (detail[0] &&
		    cli_audit_admin(VERB, st, AUDIT_OP_KEYS, 0, detail, NULL) < 0)
			goto out;
	}
	if (json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "store", json_object_new_string(path));
		json_object_object_add(o, "added_slot",
				       added >= 0 ? json_object_new_int64(added) : NULL);
		json_object_object_add(o, "removed_slot",
				       removed >= 0 ? json_object_new_int64(removed)
						    : NULL);
		print_json(o);
	}
	ret = CLI_OK;
out:
	secret_free(sec);
	store_close(st);
	return ret;
}
