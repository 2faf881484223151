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
 * recorded in the audit chain.  On a mounted store the running daemon
 * makes the change (control verb subject-flag), so it takes effect at the
 * next operation and the daemon, which holds the audit log, records it.
 *
 * hold|release also take `--path /dir` instead of SUBJECT: a legal hold on
 * a directory and everything beneath it (retention_hold_set, fs/retention.h;
 * the path and reason are kept sealed under the volume keys; on a mounted
 * store this tool writes the catalogue, the daemon records the change with
 * the path (audit-admin) and reloads its holds (holds-reload)), and
 * `custodian hold STORE --list [--json]` lists every hold, subject and
 * directory, with its reason.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "clock.h"
#include "control.h"
#include "names.h"
#include "retention.h"
#include "subjects.h"

enum {
	OPT_REASON = CLI_OPT_FIRST_FREE,
	OPT_PATH,
	OPT_LIST,
	OPT_JSON,
};

static const struct option longopts[] = {
	{"reason", required_argument, NULL, OPT_REASON},
	{"path", required_argument, NULL, OPT_PATH},
	{"list", no_argument, NULL, OPT_LIST},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
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
	bool paths;                                    /* also --path DIR (holds) */
};

static const struct flag_verb verbs[] = {
	{"hold", true, subjects_set_held,
	 "Places a legal hold on data subject SUBJECT: while held, nothing\n"
	 "in it may be deleted, truncated, swept or shredded.\n",
	 "on legal hold", "on legal hold (already)", true},
	{"release", false, subjects_set_held,
	 "Releases a legal hold on data subject SUBJECT: while held, nothing\n"
	 "in it may be deleted, truncated, swept or shredded.\n",
	 "legal hold released", "legal hold released (was not held)", true},
	{"restrict", true, subjects_set_restricted,
	 "Restricts processing of data subject SUBJECT: while restricted, only\n"
	 "principals the policy grants `admin` may read its files.\n",
	 "processing restricted", "processing restricted (already)", false},
	{"unrestrict", false, subjects_set_restricted,
	 "Lifts the restriction of processing of data subject SUBJECT: while\n"
	 "restricted, only principals the policy grants `admin` may read its files.\n",
	 "restriction lifted", "restriction lifted (was not restricted)", false},
};

static void usage(FILE *f, const struct flag_verb *fv)
{
	fprintf(f, "usage: custodian %s STORE SUBJECT --reason TEXT [unlock options]\n",
		fv->verb);
	if (fv->paths)
		fprintf(f,
			"       custodian %s STORE --path /DIR --reason TEXT [unlock "
			"options]\n%s",
			fv->verb,
			fv->on ? "       custodian hold STORE --list [--json] [unlock "
				 "options]\n"
			       : "");
	fprintf(f, "\n%s", fv->help);
	if (fv->paths)
		fprintf(f,
			"With --path, the hold is on the directory DIR (a path in the\n"
			"mount) and everything beneath it.%s\n",
			fv->on ? "  --list shows every hold,\nsubject and directory, "
				 "with its reason."
			       : "");
	fprintf(f,
		"\n"
		"  --reason TEXT  why (kept encrypted: with the subject, or under the\n"
		"                 store's volume keys for a directory)\n"
		"%s" CLI_UNLOCK_HELP "  -h, --help     show this help\n",
		!fv->paths ? ""
		: fv->on   ? "  --path /DIR    hold a directory instead of a subject\n"
			     "  --list         list the holds (--json: as JSON)\n"
			   : "  --path /DIR    release a directory hold\n");
}

/* 0 if path names a directory of the store: resolved with the volume
 * keys, or, below a subject root, with that subject's keys. */
static int dir_exists(struct store *st, const char *path)
{
	struct subjects_info *info = NULL;
	struct keyring *ring = NULL;
	char *copy = strdup(path), *p;
	int fd = -1, next, rc;

	if (copy == NULL)
		return -ENOMEM;
	rc = subjects_resolve_dir(st, path, &fd);
	if (rc != -ENOENT)
		goto out;
	info = malloc(sizeof(*info));
	if (info == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	/* Find a component that is a live subject whose parent is the path
	 * before it: /customers/C-1/calls -> parent /customers, id C-1. */
	for (p = copy + 1; *p; p++) {
		char *end = strchr(p, '/'), *id = p, *rest = NULL,
		     parent[SUBJECTS_PARENT_MAX];
		char bname[SUBJECTS_BACKING_LEN + 1];
		uint8_t hash[CRYPT_HASH_BYTES], iv[CRYPT_DIRIV_BYTES];
		struct names_enc enc;
		int pfd = -1;

		if (end) {
			*end = 0;
			rest = end + 1;
		}
		snprintf(parent, sizeof(parent), "%.*s", (int)(p - 1 - copy), copy);
		if (!parent[0])
			strcpy(parent, "/");
		subjects_hash(st->mk, id, hash);
		if (subjects_get(st, hash, info) != 0 ||
		    (info->flags & SUBJECTS_SHREDDED) ||
		    strcmp(info->parent, parent) != 0) {
			if (!end)
				break;
			*end = '/';
			p = end;
			continue;
		}
		rc = subjects_open(st, hash, &ring);
		if (rc == 0)
			rc = subjects_resolve_dir(st, parent, &pfd);
		if (rc < 0)
			goto out;
		subjects_backing_name(hash, bname);
		fd = openat(pfd, bname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(pfd);
		if (fd < 0) {
			rc = -errno;
			goto out;
		}
		for (char *c = rest ? strtok(rest, "/") : NULL; c;
		     c = strtok(NULL, "/")) {
			rc = names_diriv_load(fd, iv);
			if (rc == 0)
				rc = names_encrypt(ring, iv, c, &enc);
			if (rc < 0)
				goto out;
			next = openat(fd, enc.backing,
				      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (next < 0) {
				rc = -errno;
				goto out;
			}
			close(fd);
			fd = next;
		}
		rc = 0;
		goto out;
	}
	rc = -ENOENT;
out:
	if (fd >= 0)
		close(fd);
	keys_ring_free(ring);
	if (info)
		crypt_wipe(info, sizeof(*info));
	free(info);
	free(copy);
	return rc;
}

/* --- hold --list ---------------------------------------------------------- */

/* Collects the holds into a JSON array (kind, what, reason, since). */
static int list_dir(const char *path, const char *reason, int64_t created_us, void *arg)
{
	json_object *o = json_object_new_object();
	char since[CLI_TIME_MAX];

	cli_time_iso(created_us, since);
	json_object_object_add(o, "kind", json_object_new_string("directory"));
	json_object_object_add(o, "what", json_object_new_string(path));
	json_object_object_add(o, "reason", json_object_new_string(reason));
	json_object_object_add(o, "since", json_object_new_string(since));
	json_object_array_add(arg, o);
	return 0;
}

static int list_subject(const struct subjects_info *info,
			const struct subjects_usage *usage, void *arg)
{
	json_object *o;
	char what[SUBJECTS_PARENT_MAX + SUBJECTS_ID_MAX + 2];

	(void)usage;
	if (!(info->flags & SUBJECTS_HELD) || (info->flags & SUBJECTS_SHREDDED))
		return 0;
	snprintf(what, sizeof(what), "%s%s%s", info->parent,
		 strcmp(info->parent, "/") ? "/" : "", info->id);
	o = json_object_new_object();
	json_object_object_add(o, "kind", json_object_new_string("subject"));
	json_object_object_add(o, "what", json_object_new_string(what));
	json_object_object_add(o, "subject", json_object_new_string(info->id));
	json_object_object_add(o, "reason", json_object_new_string(info->hold_reason));
	json_object_array_add(arg, o);
	return 0;
}

static int do_list(const char *verb, const char *path, const struct cli_unlock *how,
		   bool json)
{
	json_object *arr = json_object_new_array();
	struct store *st = NULL;
	int err, ret = CLI_FAIL;

	/* Reading only: a mounted store can be listed. */
	if (cli_open_unlocked(verb, path, true, how, &st) < 0)
		goto out;
	err = subjects_list(st, false, list_subject, arr);
	if (err == 0)
		err = retention_hold_list(st, list_dir, arr);
	if (err < 0) {
		cli_err(verb, "%s: listing holds: %s", path,
			err == -EBADMSG ? "a hold was changed outside custodian"
					: store_strerror(err));
		goto out;
	}
	if (json) {
		puts(json_object_to_json_string_ext(
			arr, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	} else if (json_object_array_length(arr) == 0) {
		printf("no legal holds\n");
	} else {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *o = json_object_array_get_idx(arr, i), *k, *w, *r,
				    *s;

			json_object_object_get_ex(o, "kind", &k);
			json_object_object_get_ex(o, "what", &w);
			json_object_object_get_ex(o, "reason", &r);
			printf("%-9s %s: %s", json_object_get_string(k),
			       json_object_get_string(w), json_object_get_string(r));
			if (json_object_object_get_ex(o, "since", &s))
				printf(" (since %s)", json_object_get_string(s));
			printf("\n");
		}
	}
	ret = CLI_OK;
out:
	json_object_put(arr);
	store_close(st);
	return ret;
}

/* --- hold|release --path -------------------------------------------------- */

/* The path as retention_hold_set keys it: one '/' between components, none
 * at the end, so "/records/" is audited and reported as "/records".  "."
 * and ".." are left for retention_hold_set to refuse. */
static void norm_dir(const char *in, char *out, size_t cap)
{
	size_t o = 0;

	for (const char *p = in; *p && o + 2 < cap; p++) {
		if (*p == '/' && (o > 0 && out[o - 1] == '/'))
			continue;
		out[o++] = *p;
	}
	if (o > 1 && out[o - 1] == '/')
		o--;
	out[o] = 0;
}

/* Records a change (or its refusal, err < 0) of an unmounted store in the
 * log this process holds: of a subject (subject) or a directory (dir).  A
 * change that could not be audited is only warned about: it is made. */
static void audit_change(struct audit *a, const char *verb, int err,
			 const uint8_t *subject, const char *dir)
{
	struct audit_event ev = {0};
	struct audit_who who;
	uint64_t seq;

	audit_who_self(&who);
	ev.op = verb;
	ev.outcome = err < 0 ? -err : 0;
	ev.who = &who;
	ev.subject = subject;
	ev.path = dir;
	ev.detail = dir ? "directory hold" : NULL;
	if (audit_append(a, &ev, &seq) < 0 && err == 0)
		cli_err(verb, "warning: the change could not be audited");
}

/* Tells the daemon of a mounted store that the directory holds changed in
 * the catalogue, so its next operation obeys; prints the error. */
static int reload_holds(const char *verb, const char *path)
{
	char reply[CONTROL_MSG_MAX];
	int err = control_request(path, "holds-reload", reply, sizeof(reply));

	if (err < 0)
		cli_err(verb,
			"%s: the hold is stored but the running daemon did not reload "
			"it (it applies from the next mount): %s",
			path,
			err == -ENOENT || err == -ECONNREFUSED
				? "the daemon does not answer"
			: reply[0] ? reply
				   : strerror(-err));
	return err;
}

static int do_path(const struct flag_verb *fv, const char *path, const char *given,
		   const char *reason, const struct cli_unlock *how)
{
	const char *verb = fv->verb;
	char dir[RETENTION_PATH_MAX];
	struct audit *a = NULL;
	struct store *st = NULL;
	bool changed = false, mounted;
	int err, ret = CLI_FAIL;

	if (given[0] != '/') {
		cli_err(verb, "--path must be an absolute path in the mount, e.g. "
			      "/records/2026");
		return CLI_USAGE;
	}
	if (strlen(given) >= sizeof(dir)) {
		cli_err(verb, "--path is longer than %d bytes", RETENTION_PATH_MAX - 1);
		return CLI_USAGE;
	}
	norm_dir(given, dir, sizeof(dir));
	/* Mounted: the catalogue is SQLite in WAL mode with a busy timeout,
	 * so this process may change the hold while the daemon runs; the
	 * daemon, which holds the audit log, records the change and is then
	 * told to reload its holds. */
	mounted = cli_store_mounted(path);
	if (cli_open_unlocked(verb, path, false, how, &st) < 0)
		return CLI_FAIL;
	if (!mounted) {
		err = audit_open(st, NULL, &a);
		if (err < 0) {
			cli_err(verb, "%s: %s", path,
				err == -EBUSY ? "the store is in use (mounted?)"
					      : store_strerror(err));
			goto out;
		}
	}
	/* A hold is placed on what exists; a release must find the hold (a
	 * mistyped path must not look like a lifted hold). */
	if (fv->on) {
		err = dir_exists(st, dir);
	} else {
		err = retention_held(st, dir);
		if (err == 0)
			err = -ESRCH;
		else if (err == 1)
			err = 0;
	}
	if (err == 0)
		err = retention_hold_set(st, dir, fv->on, reason, clock_now_us(),
					 &changed);
	if (err == 0 && !fv->on && !changed)
		err = -ESRCH; /* held only through an ancestor's hold */
	if (mounted) {
		if (cli_audit_admin_ex(verb, st, verb, err, dir, NULL, "directory hold",
				       NULL) < 0 &&
		    err == 0)
			cli_err(verb, "warning: the change could not be audited");
		if (err == 0 && reload_holds(verb, path) < 0)
			goto out;
	} else {
		audit_change(a, verb, err, NULL, dir);
	}
	if (err < 0) {
		cli_err(verb, "%s: %s", dir,
			err == -ENOENT    ? "no such directory in the store"
			: err == -ENOTDIR ? "not a directory"
			: err == -ESRCH   ? "no hold on this directory (see "
					    "`custodian hold STORE --list`)"
			: err == -EINVAL  ? "not a valid path"
			: err == -EBADMSG ? "a hold was changed outside custodian"
					  : store_strerror(err));
		goto out;
	}
	printf("%s: %s\n", dir, changed ? fv->done : fv->same);
	ret = CLI_OK;
out:
	audit_close(a);
	store_close(st);
	return ret;
}

/* The store is mounted: the daemon changes the flag, drops its cached
 * flags (the next operation obeys) and writes the audit record. */
static int flag_live(const struct flag_verb *fv, const char *path, const char *id,
		     const char *reason)
{
	char fid[2 * SUBJECTS_ID_MAX + 8], reply[CONTROL_MSG_MAX];
	char *req = NULL;
	int err;

	cli_hex_field(id, fid, sizeof(fid));
	if (asprintf(&req, "subject-flag %s %s %s", fid, fv->verb, reason) < 0) {
		cli_err(fv->verb, "%s", strerror(ENOMEM));
		return CLI_FAIL;
	}
	if (strlen(req) >= CONTROL_MSG_MAX) {
		free(req);
		cli_err(fv->verb, "--reason is too long for a mounted store");
		return CLI_USAGE;
	}
	err = control_request(path, req, reply, sizeof(reply));
	free(req);
	if (err < 0) {
		cli_err(fv->verb, "%s: %s", id,
			err == -ESRCH     ? "no such subject"
			: err == -ENOKEY  ? "the subject is shredded"
			: err == -EBADMSG ? "the subject's catalogue row was changed "
					    "outside custodian"
			: err == -ENOENT || err == -ECONNREFUSED
				? "the store is mounted but its daemon does not answer"
				: (reply[0] ? reply : strerror(-err)));
		return CLI_FAIL;
	}
	printf("%s: %s\n", id, strcmp(reply, "changed") == 0 ? fv->done : fv->same);
	return CLI_OK;
}

static int run(int argc, char **argv, const struct flag_verb *fv)
{
	const char *verb = fv->verb;
	struct cli_unlock how = {0};
	uint8_t hash[CRYPT_HASH_BYTES];
	const char *reason = NULL, *path, *id, *dir = NULL;
	struct audit *a = NULL;
	struct store *st = NULL;
	bool changed = false, list = false, json = false;
	int c, err, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_REASON:
			reason = optarg;
			break;
		case OPT_PATH:
		case OPT_LIST:
		case OPT_JSON:
			if (!fv->paths || (c != OPT_PATH && !fv->on)) {
				ret = cli_getopt_fail(verb, '?', argv, NULL);
				usage(stderr, fv);
				return ret;
			}
			if (c == OPT_PATH)
				dir = optarg;
			else if (c == OPT_LIST)
				list = true;
			else
				json = true;
			break;
		default:
			ret = cli_getopt_fail(verb, c, argv, NULL);
			usage(ret == CLI_OK ? stdout : stderr, fv);
			return ret;
		}
	}
	if (list || dir || json) {
		if (argc - optind != 1 || (list && (dir || reason)) || (json && !list) ||
		    (!list && !dir)) {
			cli_err(verb, argc - optind < 1 ? "STORE is required"
				      : argc - optind > 1
					      ? "give either SUBJECT or --path"
				      : json && !list ? "--json goes with --list"
						      : "--list takes no --path or "
							"--reason");
			usage(stderr, fv);
			return CLI_USAGE;
		}
		if (list)
			return do_list(verb, argv[optind], &how, json);
		if (cli_check_reason(verb, reason, RETENTION_REASON_MAX))
			return CLI_USAGE;
		return do_path(fv, argv[optind], dir, reason, &how);
	}
	if (cli_operands(verb, argc, 2, "STORE and SUBJECT are required", NULL)) {
		usage(stderr, fv);
		return CLI_USAGE;
	}
	path = argv[optind];
	id = argv[optind + 1];
	if (cli_check_reason(verb, reason, SUBJECTS_REASON_MAX) ||
	    cli_check_subject_id(verb, id))
		return CLI_USAGE;
	if (cli_store_mounted(path))
		return flag_live(fv, path, id, reason);
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
	audit_change(a, verb, err, hash, NULL);
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
