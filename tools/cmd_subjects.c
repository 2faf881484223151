/*
 * cmd_subjects.c — `custodian subjects STORE`: the data subjects of a store
 * and the erasure ledger.
 *
 * Owns the listing (id, state, files, bytes, created, last write; ids are
 * decrypted with each subject's key, shredded subjects appear by hash
 * only), the export of the erasure ledger for safekeeping beside backups
 * (--ledger) and its re-application after a restore (--apply-ledger); see
 * docs/subjects.md, "Backups".
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "subjects.h"

#define VERB "subjects"

enum {
	OPT_JSON = CLI_OPT_FIRST_FREE,
	OPT_LEDGER,
	OPT_APPLY,
};

static const struct option longopts[] = {
	{"json", no_argument, NULL, OPT_JSON},
	{"ledger", no_argument, NULL, OPT_LEDGER},
	{"apply-ledger", required_argument, NULL, OPT_APPLY},
	{"help", no_argument, NULL, 'h'},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("usage: custodian subjects STORE [--json] [unlock options]\n"
	      "       custodian subjects STORE --ledger [unlock options]\n"
	      "       custodian subjects STORE --apply-ledger FILE [unlock options]\n"
	      "\n"
	      "Lists the data subjects of a store: id, state (active, restricted,\n"
	      "held, shredded), files, bytes, created, last write.  Shredded\n"
	      "subjects have no readable id any more and are shown by hash.\n"
	      "\n"
	      "  --json               one JSON object per subject, in an array\n"
	      "  --ledger             print the erasure ledger, one line per erasure,\n"
	      "                       to keep with (but apart from) backups\n"
	      "  --apply-ledger FILE  after restoring an older catalogue: re-apply\n"
	      "                       every erasure in FILE ('-' = standard "
	      "input)\n" CLI_UNLOCK_HELP "  -h, --help           show this help\n",
	      f);
}

static const char *state_name(unsigned flags)
{
	if (flags & SUBJECTS_SHREDDED)
		return "shredded";
	switch (flags & (SUBJECTS_RESTRICTED | SUBJECTS_HELD)) {
	case SUBJECTS_RESTRICTED:
		return "restricted";
	case SUBJECTS_HELD:
		return "held";
	case SUBJECTS_RESTRICTED | SUBJECTS_HELD:
		return "restricted,held";
	default:
		return "active";
	}
}

/* One subject as listed (the fields printed; reasons malloc'd). */
struct row {
	char id[SUBJECTS_ID_MAX + 1];        /* "" if shredded */
	char hash[2 * CRYPT_HASH_BYTES + 1]; /* hex */
	char *parent;                        /* plaintext parent path */
	char *restrict_reason;               /* NULL if none */
	char *hold_reason;                   /* NULL if none */
	unsigned flags;                      /* SUBJECTS_* */
	int64_t created_us, last_write_us;   /* UTC microseconds */
	bool have_usage;                     /* usage is valid */
	struct subjects_usage usage;         /* counted from the tree */
};

/* Everything listed so far. */
struct rows {
	struct row *v; /* array */
	size_t n, cap; /* used, allocated */
};

static int collect(const struct subjects_info *info, const struct subjects_usage *u,
		   void *arg)
{
	struct rows *rs = arg;
	struct row *r;

	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? 2 * rs->cap : 32;
		struct row *v = realloc(rs->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		rs->v = v;
		rs->cap = cap;
	}
	r = &rs->v[rs->n];
	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", info->id);
	crypt_hex(r->hash, info->hash, sizeof(info->hash));
	r->flags = info->flags;
	r->created_us = info->created_us;
	r->last_write_us = info->last_write_us;
	r->have_usage = u != NULL;
	if (u)
		r->usage = *u;
	r->parent = strdup(info->parent);
	r->restrict_reason =
		info->restrict_reason[0] ? strdup(info->restrict_reason) : NULL;
	r->hold_reason = info->hold_reason[0] ? strdup(info->hold_reason) : NULL;
	rs->n++;
	if (r->parent == NULL || (info->restrict_reason[0] && !r->restrict_reason) ||
	    (info->hold_reason[0] && !r->hold_reason))
		return -ENOMEM;
	return 0;
}

/* Live subjects by id, then shredded ones by hash. */
static int row_cmp(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	bool xs = x->flags & SUBJECTS_SHREDDED, ys = y->flags & SUBJECTS_SHREDDED;

	if (xs != ys)
		return xs ? 1 : -1;
	return xs ? strcmp(x->hash, y->hash) : strcmp(x->id, y->id);
}

static json_object *row_json(const struct row *r)
{
	char created[CLI_TIME_MAX], written[CLI_TIME_MAX];
	bool shredded = r->flags & SUBJECTS_SHREDDED;
	json_object *o = json_object_new_object();

	cli_time_iso(r->created_us, created);
	cli_time_iso(r->last_write_us, written);
	json_object_object_add(o, "id", shredded ? NULL : json_object_new_string(r->id));
	json_object_object_add(o, "hash", json_object_new_string(r->hash));
	json_object_object_add(o, "state", json_object_new_string(state_name(r->flags)));
	json_object_object_add(o, "restricted",
			       json_object_new_boolean(r->flags & SUBJECTS_RESTRICTED));
	json_object_object_add(o, "held",
			       json_object_new_boolean(r->flags & SUBJECTS_HELD));
	json_object_object_add(o, "parent", json_object_new_string(r->parent));
	json_object_object_add(o, "files",
			       r->have_usage ? json_object_new_uint64(r->usage.files)
					     : NULL);
	json_object_object_add(o, "bytes",
			       r->have_usage ? json_object_new_uint64(r->usage.bytes)
					     : NULL);
	json_object_object_add(o, "created",
			       shredded ? NULL : json_object_new_string(created));
	json_object_object_add(o, "last_write",
			       shredded ? NULL : json_object_new_string(written));
	if (r->restrict_reason)
		json_object_object_add(o, "restrict_reason",
				       json_object_new_string(r->restrict_reason));
	if (r->hold_reason)
		json_object_object_add(o, "hold_reason",
				       json_object_new_string(r->hold_reason));
	return o;
}

static void row_text(const struct row *r, bool first)
{
	char created[CLI_TIME_MAX], written[CLI_TIME_MAX];
	char files[24] = "-", bytes[24] = "-", name[SUBJECTS_ID_MAX + 16];
	bool shredded = r->flags & SUBJECTS_SHREDDED;

	cli_time_iso(r->created_us, created);
	cli_time_iso(r->last_write_us, written);
	if (r->have_usage) {
		snprintf(files, sizeof(files), "%" PRIu64, r->usage.files);
		snprintf(bytes, sizeof(bytes), "%" PRIu64, r->usage.bytes);
	}
	if (shredded)
		snprintf(name, sizeof(name), "(%.12s...)", r->hash);
	else
		snprintf(name, sizeof(name), "%s", r->id);
	if (first)
		printf("%-20s %-16s %8s %12s %-20s %s\n", "SUBJECT", "STATE", "FILES",
		       "BYTES", "CREATED", "LAST WRITE");
	printf("%-20s %-16s %8s %12s %-20s %s\n", name, state_name(r->flags), files,
	       bytes, shredded ? "-" : created, shredded ? "-" : written);
}

static int do_list(struct store *st, bool json)
{
	struct rows rs = {0};
	int err, ret = CLI_FAIL;

	err = subjects_list(st, true, collect, &rs);
	if (err < 0) {
		cli_err(VERB, "listing subjects: %s",
			err == -EBADMSG ? "a subject row was changed outside custodian"
					: store_strerror(err));
		goto out;
	}
	if (rs.n)
		qsort(rs.v, rs.n, sizeof(*rs.v), row_cmp);
	if (json) {
		json_object *arr = json_object_new_array();

		for (size_t i = 0; i < rs.n; i++)
			json_object_array_add(arr, row_json(&rs.v[i]));
		puts(json_object_to_json_string_ext(
			arr, JSON_C_TO_STRING_NOSLASHESCAPE | JSON_C_TO_STRING_PRETTY));
		json_object_put(arr);
	} else if (rs.n == 0) {
		printf("no subjects\n");
	} else {
		for (size_t i = 0; i < rs.n; i++)
			row_text(&rs.v[i], i == 0);
	}
	ret = CLI_OK;
out:
	for (size_t i = 0; i < rs.n; i++) {
		free(rs.v[i].parent);
		free(rs.v[i].restrict_reason);
		free(rs.v[i].hold_reason);
	}
	free(rs.v);
	return ret;
}

static int do_ledger(struct store *st)
{
	struct catalog_erasure *list = NULL;
	char line[SUBJECTS_LEDGER_LINE_MAX];
	size_t n = 0;
	int err;

	err = catalog_erasure_list(st->cat, &list, &n);
	if (err < 0) {
		cli_err(VERB, "reading the ledger: %s", store_strerror(err));
		return CLI_FAIL;
	}
	for (size_t i = 0; i < n; i++) {
		err = subjects_ledger_format(&list[i], line, sizeof(line));
		if (err < 0) {
			cli_err(VERB, "ledger entry %" PRId64 ": %s", list[i].seq,
				strerror(-err));
			free(list);
			return CLI_FAIL;
		}
		fputs(line, stdout);
	}
	free(list);
	return CLI_OK;
}

static int do_apply(struct store *st, const char *file)
{
	char line[SUBJECTS_LEDGER_LINE_MAX + 2];
	struct catalog_erasure e;
	unsigned lineno = 0, applied_n = 0, total = 0;
	bool applied;
	struct audit_who who;
	struct audit *a = NULL;
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "re");
	int err, ret = CLI_FAIL;

	if (f == NULL) {
		cli_err(VERB, "%s: %s", file, strerror(errno));
		return CLI_FAIL;
	}
	audit_who_self(&who);
	err = audit_open(st, NULL, &a);
	if (err < 0) {
		cli_err(VERB, "%s",
			err == -EBUSY ? "the store is in use (mounted?)"
				      : store_strerror(err));
		goto out;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (line[0] == '\n' || line[0] == '#')
			continue;
		err = subjects_ledger_parse(line, &e);
		if (err < 0) {
			cli_err(VERB, "%s:%u: not a ledger line", file, lineno);
			goto out;
		}
		err = subjects_ledger_apply(st, &e, &applied);
		if (err == 0 && applied) {
			/* The restored chain learns of the erasure again. */
			struct audit_event ev = {0};
			uint64_t seq;

			ev.op = AUDIT_OP_SHRED;
			ev.who = &who;
			ev.subject = e.hash;
			ev.detail = "re-applied from the erasure ledger";
			ev.count = (uint64_t)e.files;
			ev.bytes = (uint64_t)e.bytes;
			if (audit_append(a, &ev, &seq) < 0)
				cli_err(VERB, "warning: %s:%u: not audited", file,
					lineno);
		}
		if (err < 0) {
			cli_err(VERB, "%s:%u: %s", file, lineno,
				err == -EBADMSG
					? "entry does not authenticate (edited, or "
					  "from another store)"
					: store_strerror(err));
			goto out;
		}
		total++;
		applied_n += applied;
	}
	if (ferror(f)) {
		cli_err(VERB, "%s: %s", file, strerror(EIO));
		goto out;
	}
	printf("%u erasures read, %u re-applied\n", total, applied_n);
	ret = CLI_OK;
out:
	audit_close(a);
	if (f != stdin)
		fclose(f);
	return ret;
}

int cmd_subjects(int argc, char **argv)
{
	struct cli_unlock how = {0};
	const char *apply = NULL;
	bool json = false, ledger = false;
	struct store *st = NULL;
	int c, ret;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		case OPT_LEDGER:
			ledger = true;
			break;
		case OPT_APPLY:
			apply = optarg;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 1, "no STORE given", usage))
		return CLI_USAGE;
	if ((ledger || apply) && json) {
		cli_err(VERB,
			"--json lists subjects; it does not combine with --ledger or "
			"--apply-ledger");
		return CLI_USAGE;
	}
	if (ledger && apply) {
		cli_err(VERB, "use one of --ledger and --apply-ledger");
		return CLI_USAGE;
	}
	if (apply && cli_store_mounted(argv[optind])) {
		cli_err(VERB,
			"%s is mounted; unmount it first (the ledger is re-applied to a "
			"restored, unmounted store)",
			argv[optind]);
		return CLI_FAIL;
	}
	if (cli_open_unlocked(VERB, argv[optind], apply == NULL, &how, &st) < 0)
		return CLI_FAIL;
	if (apply)
		ret = do_apply(st, apply);
	else if (ledger)
		ret = do_ledger(st);
	else
		ret = do_list(st, json);
	store_close(st);
	return ret;
}
