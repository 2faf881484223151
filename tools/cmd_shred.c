/*
 * cmd_shred.c — `custodian shred STORE SUBJECT --reason TEXT`: erase one
 * data subject for good, and print the erasure certificate.
 *
 * Owns the operator's side of crypto-shredding: the refusals (mounted
 * store, legal hold, no terminal without --yes, a reason that names the
 * subject), the confirmation (the operator types the subject id), the dry
 * run, and the certificate as text or JSON.  The work itself is
 * subjects_shred (fs/subjects.c), recorded in the audit chain.  On a
 * mounted store the daemon owns the keys, the tree and the audit log, so
 * the shred itself is sent to it (control verb "shred"): it makes the
 * subject vanish from the mount at once, destroys the key and replies
 * with the ledger entry, from which the certificate is read back here and
 * printed exactly as for an unmounted store.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "control.h"
#include "subjects.h"

#define VERB "shred"

enum {
	OPT_REASON = CLI_OPT_FIRST_FREE,
	OPT_DRY_RUN,
	OPT_YES,
	OPT_JSON,
};

static const struct option longopts[] = {
	{"reason", required_argument, NULL, OPT_REASON},
	{"dry-run", no_argument, NULL, OPT_DRY_RUN},
	{"yes", no_argument, NULL, OPT_YES},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("usage: custodian shred STORE SUBJECT --reason TEXT [--dry-run] [--yes]\n"
	      "                       [--json] [unlock options]\n"
	      "\n"
	      "Erases data subject SUBJECT (the name of its directory, e.g. C-10042)\n"
	      "for good: destroys its key (so no copy of its ciphertext, backups\n"
	      "included, can be read with this store's keys), removes its files,\n"
	      "records the erasure in the audit chain and the erasure ledger, and\n"
	      "prints an erasure certificate.  Refused while the subject is on\n"
	      "legal hold.  On a mounted store the running daemon does it: the\n"
	      "subject's directory vanishes at once and open files give EIO.\n"
	      "\n"
	      "  --reason TEXT  why (kept in the ledger forever: must not name the\n"
	      "                 subject)\n"
	      "  --dry-run      show what would be destroyed; change nothing\n"
	      "  --yes          do not ask (needed without a terminal)\n"
	      "  --json         print the certificate as one JSON "
	      "object\n" CLI_UNLOCK_HELP "  -h, --help     show this help\n",
	      f);
}

/* Who is shredding: the login behind sudo if there is one. */
static void operator_name(char out[SUBJECTS_OPERATOR_MAX])
{
	struct passwd *pw = getpwuid(getuid());
	const char *sudo = getenv("SUDO_USER");

	if (getuid() == 0 && sudo && *sudo)
		snprintf(out, SUBJECTS_OPERATOR_MAX, "%.40s (sudo)", sudo);
	else if (pw)
		snprintf(out, SUBJECTS_OPERATOR_MAX, "%.63s", pw->pw_name);
	else
		snprintf(out, SUBJECTS_OPERATOR_MAX, "#%u", (unsigned)getuid());
}

/* The operator types the subject id; true if it matches exactly. */
static bool confirm(const char *id, const struct subjects_certificate *c)
{
	char line[SUBJECTS_ID_MAX + 3];

	printf("This destroys subject %s for good: its key, %" PRIu64 " files (%" PRIu64
	       " bytes) and every copy of them.\n"
	       "Type the subject id to confirm: ",
	       id, c->files, c->bytes);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	line[strcspn(line, "\r\n")] = 0;
	return strcmp(line, id) == 0;
}

static const char *shred_reason(int err)
{
	switch (err) {
	case -ENOENT:
		return "no such subject";
	case -EPERM:
		return "the subject is on legal hold (custodian release first)";
	case -ENOKEY:
		return "the subject is already shredded";
	case -EBADMSG:
		return "the subject's catalogue row was changed outside custodian; "
		       "refusing (see custodian fsck)";
	case -EIO:
		return "the subject's key or files are damaged";
	default:
		return store_strerror(err);
	}
}

static void print_text(const struct subjects_certificate *c, const char *real,
		       const struct store *st)
{
	char when[CLI_TIME_MAX], hash[2 * CRYPT_HASH_BYTES + 1],
		mac[2 * CRYPT_MAC_BYTES + 1];
	char sid[2 * STORE_ID_BYTES + 1];

	cli_time_iso(c->shredded_us, when);
	crypt_hex(hash, c->hash, sizeof(c->hash));
	crypt_hex(mac, c->mac, sizeof(c->mac));
	crypt_hex(sid, st->id, STORE_ID_BYTES);
	if (c->dry_run) {
		printf("dry run: would shred subject %s: %" PRIu64 " files, %" PRIu64
		       " bytes (%" PRIu64 " bytes of ciphertext); nothing changed\n",
		       c->id, c->files, c->bytes, c->cipher_bytes);
		return;
	}
	printf("ERASURE CERTIFICATE (custodian)\n"
	       "subject:        %s\n"
	       "subject hash:   %s\n"
	       "store:          %s (id %s)\n"
	       "erased at:      %s\n"
	       "reason:         %s\n"
	       "operator:       %s\n"
	       "destroyed:      subject key; %" PRIu64 " files, %" PRIu64
	       " bytes (%" PRIu64 " bytes of ciphertext)\n"
	       "ledger entry:   %" PRId64 "\n",
	       c->id, hash, real, sid, when, c->reason, c->operator_, c->files, c->bytes,
	       c->cipher_bytes, c->ledger_seq);
	if (c->audit_seq)
		printf("audit chain:    record %" PRIu64 "\n", c->audit_seq);
	else
		printf("audit chain:    not recorded\n");
	printf("certificate MAC: %s\n", mac);
	if (!c->tree_removed)
		printf("WARNING: some ciphertext could not be removed (unreadable; "
		       "custodian fsck lists it)\n");
	if (!c->wal_clean)
		printf("WARNING: the catalogue's WAL was not checkpointed; the destroyed "
		       "key stays in custodian.db-wal until the next checkpoint\n");
}

static void print_json(const struct subjects_certificate *c, const char *real,
		       const struct store *st)
{
	char when[CLI_TIME_MAX], hash[2 * CRYPT_HASH_BYTES + 1],
		mac[2 * CRYPT_MAC_BYTES + 1];
	char sid[2 * STORE_ID_BYTES + 1];
	json_object *o = json_object_new_object();

	cli_time_iso(c->shredded_us, when);
	crypt_hex(hash, c->hash, sizeof(c->hash));
	crypt_hex(mac, c->mac, sizeof(c->mac));
	crypt_hex(sid, st->id, STORE_ID_BYTES);
	json_object_object_add(o, "dry_run", json_object_new_boolean(c->dry_run));
	json_object_object_add(o, "subject", json_object_new_string(c->id));
	json_object_object_add(o, "subject_hash", json_object_new_string(hash));
	json_object_object_add(o, "store", json_object_new_string(real));
	json_object_object_add(o, "store_id", json_object_new_string(sid));
	json_object_object_add(o, "erased_at", json_object_new_string(when));
	json_object_object_add(o, "erased_us", json_object_new_int64(c->shredded_us));
	json_object_object_add(o, "reason", json_object_new_string(c->reason));
	json_object_object_add(o, "operator", json_object_new_string(c->operator_));
	json_object_object_add(o, "files", json_object_new_uint64(c->files));
	json_object_object_add(o, "bytes", json_object_new_uint64(c->bytes));
	json_object_object_add(o, "ciphertext_bytes",
			       json_object_new_uint64(c->cipher_bytes));
	if (!c->dry_run) {
		json_object_object_add(o, "ledger_seq",
				       json_object_new_int64(c->ledger_seq));
		json_object_object_add(o, "audit_seq",
				       c->audit_seq ? json_object_new_uint64(c->audit_seq)
						    : NULL);
		json_object_object_add(o, "certificate_mac", json_object_new_string(mac));
		json_object_object_add(o, "ciphertext_removed",
				       json_object_new_boolean(c->tree_removed));
		json_object_object_add(o, "wal_clean",
				       json_object_new_boolean(c->wal_clean));
	}
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE |
						       JSON_C_TO_STRING_PRETTY));
	json_object_put(o);
}

/* Shreds through the running daemon; fills cert from its reply and the
 * ledger entry it names.  0 or -errno (the daemon's). */
static int shred_live(struct store *st, const char *real, const char *id,
		      const char *reason, const char *who,
		      struct subjects_certificate *cert)
{
	char *req = NULL, reply[CONTROL_MSG_MAX];
	char fid[2 * SUBJECTS_ID_MAX + 8], fop[2 * SUBJECTS_OPERATOR_MAX + 8];
	char *freason = NULL;
	struct catalog_erasure e;
	long long ledger = 0;
	unsigned long long aseq = 0, files = 0, bytes = 0, cipher = 0;
	int tree = 0, wal = 0, ret;

	memset(cert, 0, sizeof(*cert));
	freason = malloc(2 * SUBJECTS_REASON_MAX + 8);
	req = malloc(CONTROL_MSG_MAX);
	if (!freason || !req) {
		ret = -ENOMEM;
		goto out;
	}
	cli_hex_field(id, fid, sizeof(fid));
	cli_hex_field(who, fop, sizeof(fop));
	cli_hex_field(reason, freason, 2 * SUBJECTS_REASON_MAX + 8);
	if (snprintf(req, CONTROL_MSG_MAX, "shred %s %s %s", fid, fop, freason) >=
	    CONTROL_MSG_MAX) {
		ret = -EMSGSIZE;
		goto out;
	}
	ret = control_request(real, req, reply, sizeof(reply));
	if (ret == -ESRCH)
		ret = -ENOENT;
	if (ret < 0) {
		if (ret == -ENOENT || ret == -ECONNREFUSED)
			cli_err(VERB,
				"%s: the daemon does not answer on its control "
				"socket",
				real);
		goto out;
	}
	if (sscanf(reply,
		   "ledger=%lld audit=%llu files=%llu bytes=%llu cipher=%llu tree=%d "
		   "wal=%d",
		   &ledger, &aseq, &files, &bytes, &cipher, &tree, &wal) != 7 ||
	    ledger <= 0) {
		ret = -EPROTO;
		goto out;
	}
	ret = catalog_erasure_get(st->cat, ledger, &e);
	if (ret < 0)
		goto out;
	snprintf(cert->id, sizeof(cert->id), "%s", id);
	memcpy(cert->hash, e.hash, CRYPT_HASH_BYTES);
	cert->shredded_us = e.shredded_us;
	snprintf(cert->reason, sizeof(cert->reason), "%s", e.reason);
	snprintf(cert->operator_, sizeof(cert->operator_), "%s", e.operator_);
	cert->files = (uint64_t)e.files;
	cert->bytes = (uint64_t)e.bytes;
	cert->cipher_bytes = cipher;
	cert->ledger_seq = e.seq;
	cert->audit_seq = (uint64_t)e.audit_seq;
	memcpy(cert->mac, e.mac, CRYPT_MAC_BYTES);
	cert->tree_removed = tree != 0;
	cert->wal_clean = wal != 0;
	/* The entry must be the one the daemon just wrote for this id. */
	ret = subjects_certificate_verify(st, cert);
out:
	free(req);
	free(freason);
	return ret;
}

int cmd_shred(int argc, char **argv)
{
	struct cli_unlock how = {0};
	struct subjects_certificate cert;
	char who[SUBJECTS_OPERATOR_MAX];
	const char *reason = NULL, *path, *id;
	bool dry_run = false, yes = false, json = false, mounted;
	struct audit *a = NULL;
	struct store *st = NULL;
	char *real = NULL;
	int c, err, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_REASON:
			reason = optarg;
			break;
		case OPT_DRY_RUN:
			dry_run = true;
			break;
		case OPT_YES:
			yes = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 2, "STORE and SUBJECT are required", usage))
		return CLI_USAGE;
	path = argv[optind];
	id = argv[optind + 1];
	if (cli_check_reason(VERB, reason, SUBJECTS_REASON_MAX) ||
	    cli_check_subject_id(VERB, id))
		return CLI_USAGE;
	if (strlen(id) >= SUBJECTS_ID_CHECK_MIN && strcasestr(reason, id)) {
		cli_err(VERB, "--reason must not name the subject (the ledger keeps it "
			      "after the shred)");
		return CLI_USAGE;
	}
	real = realpath(path, NULL);
	if (real == NULL) {
		cli_err(VERB, "%s: %s", path, strerror(errno));
		goto out;
	}
	mounted = cli_store_mounted(real);
	if (!dry_run && !yes && !isatty(STDIN_FILENO)) {
		cli_err(VERB, "not a terminal: nothing shredded (use --yes to shred "
			      "without confirmation)");
		goto out;
	}
	if (cli_open_unlocked(VERB, path, dry_run || mounted, &how, &st) < 0)
		goto out;
	operator_name(who);

	/* A dry run first: it checks the hold and counts what goes. */
	err = subjects_shred(st, NULL, id, reason, who, true, &cert);
	if (err < 0) {
		cli_err(VERB, "%s: %s", id, shred_reason(err));
		goto out;
	}
	if (dry_run) {
		if (json)
			print_json(&cert, real, st);
		else
			print_text(&cert, real, st);
		ret = CLI_OK;
		goto out;
	}
	if (!yes && !confirm(id, &cert)) {
		cli_err(VERB, "not confirmed: nothing shredded");
		goto out;
	}
	if (mounted) {
		err = shred_live(st, real, id, reason, who, &cert);
		if (cert.ledger_seq > 0) {
			if (json)
				print_json(&cert, real, st);
			else
				print_text(&cert, real, st);
		}
		if (err < 0) {
			cli_err(VERB, "%s: %s%s", id,
				cert.ledger_seq > 0 ? "key destroyed, but: " : "",
				err == -EPROTO ? "unexpected reply from the daemon"
					       : shred_reason(err));
			goto out;
		}
		ret = CLI_OK;
		goto out;
	}
	err = audit_open(st, NULL, &a);
	if (err == -EBUSY) {
		cli_err(VERB,
			"%s is mounted; unmount it first (live shred comes with the "
			"daemon's control channel)",
			path);
		goto out;
	}
	if (err < 0) {
		cli_err(VERB, "%s: opening the audit log: %s", path, store_strerror(err));
		goto out;
	}
	err = subjects_shred(st, a, id, reason, who, false, &cert);
	if (audit_flush(a) < 0)
		cli_err(VERB, "warning: the audit record is still in the journal; it is "
			      "committed at the next open");
	audit_close(a);
	a = NULL;
	if (cert.ledger_seq > 0) {
		/* The key is gone: the certificate stands, whatever else failed. */
		if (json)
			print_json(&cert, real, st);
		else
			print_text(&cert, real, st);
	}
	if (err < 0) {
		cli_err(VERB, "%s: %s%s", id,
			cert.ledger_seq > 0 ? "key destroyed, but: " : "",
			shred_reason(err));
		goto out;
	}
	ret = CLI_OK;
out:
	audit_close(a);
	store_close(st);
	free(real);
	return ret;
}
