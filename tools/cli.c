/*
 * cli.c — helpers every verb of the admin command shares.
 *
 * Owns the one way a verb turns its unlock options into an unlocked store
 * (exactly one source, else the terminal), the wording of the errors that
 * come out of that, and small parsing and formatting helpers, so that every
 * verb says "wrong passphrase or key" the same way.
 */
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "catalog.h"
#include "control.h"
#include "subjects.h"

void cli_err(const char *verb, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fprintf(stderr, "custodian: %s: ", verb);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_getopt_fail(const char *verb, int c, char **argv, cli_usage_fn usage)
{
	if (c == 'h') {
		if (usage)
			usage(stdout);
		return CLI_OK;
	}
	if (c == ':')
		cli_err(verb, "%s needs an argument", argv[optind - 1]);
	else
		cli_err(verb, "unknown option %s", argv[optind - 1]);
	if (usage)
		usage(stderr);
	return CLI_USAGE;
}

int cli_operands(const char *verb, int argc, int want, const char *missing,
		 cli_usage_fn usage)
{
	if (argc - optind == want)
		return 0;
	cli_err(verb, "%s", argc - optind < want ? missing : "too many arguments");
	if (usage)
		usage(stderr);
	return CLI_USAGE;
}

int cli_check_reason(const char *verb, const char *reason, size_t max)
{
	if (reason == NULL || reason[0] == '\0') {
		cli_err(verb, "--reason is required");
		return CLI_USAGE;
	}
	if (strlen(reason) >= max) {
		cli_err(verb, "--reason is longer than %zu bytes", max - 1);
		return CLI_USAGE;
	}
	return 0;
}

int cli_check_subject_id(const char *verb, const char *id)
{
	if (subjects_id_check(id) < 0) {
		cli_err(verb, "'%s' is not a subject id (a directory name)", id);
		return CLI_USAGE;
	}
	return 0;
}

/* auid/ses: null when the kernel has none. */
static json_object *id_or_null(int64_t v)
{
	return v == AUDIT_UNSET ? NULL : json_object_new_int64(v);
}

json_object *cli_audit_json(const struct catalog_audit_row *r, const char *user,
			    const char *path, const char *path2)
{
	json_object *o = json_object_new_object();
	char ts[CLI_TIME_MAX], hex[2 * CRYPT_HASH_BYTES + 1];

	if (!o)
		return NULL;
	cli_time_iso_us(r->ts_us, ts);
	if (r->has_subject)
		crypt_hex(hex, r->subject, CRYPT_HASH_BYTES);
	json_object_object_add(o, "ts", json_object_new_string(ts));
	json_object_object_add(o, "seq", json_object_new_int64(r->seq));
	json_object_object_add(o, "op", json_object_new_string(r->op));
	json_object_object_add(o, "outcome", json_object_new_int64(r->outcome));
	json_object_object_add(o, "uid", json_object_new_int64(r->uid));
	json_object_object_add(o, "user", user ? json_object_new_string(user) : NULL);
	json_object_object_add(o, "gid", json_object_new_int64(r->gid));
	json_object_object_add(o, "groups", json_object_new_string(r->groups));
	json_object_object_add(o, "auid", id_or_null(r->auid));
	json_object_object_add(o, "ses", id_or_null(r->ses));
	json_object_object_add(o, "pid", json_object_new_int64(r->pid));
	json_object_object_add(o, "comm", json_object_new_string(r->comm));
	json_object_object_add(o, "exe", json_object_new_string(r->exe));
	json_object_object_add(o, "subject",
			       r->has_subject ? json_object_new_string(hex) : NULL);
	json_object_object_add(o, "path",
			       r->path_len ? json_object_new_string(path) : NULL);
	json_object_object_add(o, "path2",
			       r->path2_len ? json_object_new_string(path2) : NULL);
	json_object_object_add(o, "flags", json_object_new_int64(r->flags));
	json_object_object_add(o, "bytes", json_object_new_int64(r->bytes));
	json_object_object_add(o, "count", json_object_new_int64(r->count));
	json_object_object_add(o, "ref", json_object_new_int64(r->ref));
	json_object_object_add(o, "detail", json_object_new_string(r->detail));
	return o;
}

bool cli_unlock_option(struct cli_unlock *how, int opt, const char *arg)
{
	switch (opt) {
	case CLI_OPT_PASSFILE:
		how->passfile = arg;
		return true;
	case CLI_OPT_EXTPASS:
		how->extpass = arg;
		return true;
	case CLI_OPT_RECOVERY_FILE:
		how->recovery_file = arg;
		return true;
	case CLI_OPT_KEYFILE:
		how->keyfile = arg;
		return true;
	default:
		return false;
	}
}

int cli_parse_u64(const char *verb, const char *name, const char *arg, uint64_t min,
		  uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	errno = 0;
	if (arg[0] < '0' || arg[0] > '9')
		goto bad;
	v = strtoull(arg, &end, 10);
	if (errno != 0 || *end != '\0')
		goto bad;
	if (v < min || v > max) {
		cli_err(verb, "--%s: %s is out of range (%" PRIu64 "..%" PRIu64 ")", name,
			arg, min, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
bad:
	cli_err(verb, "--%s: '%s' is not a number", name, arg);
	return -EINVAL;
}

/* Reason for a failure to read a secret from a file or command. */
static const char *secret_reason(int err, bool from_cmd)
{
	if (from_cmd && err == -EIO)
		return "command failed or printed nothing";
	if (err == -EINVAL)
		return "empty or longer than 4096 bytes";
	return strerror(-err);
}

/* Reads a secret from a file; prints the error. */
static int read_file_secret(const char *verb, const char *file, struct secret **out)
{
	int ret = secret_from_file(file, out);

	if (ret < 0)
		cli_err(verb, "%s: %s", file, secret_reason(ret, false));
	return ret;
}

int cli_new_passphrase(const char *verb, const char *passfile, struct secret **out)
{
	int ret;

	*out = NULL;
	if (passfile != NULL)
		return read_file_secret(verb, passfile, out);
	ret = secret_from_tty("New passphrase: ", true, out);
	if (ret == -ENOTTY)
		cli_err(verb, "no passphrase source (use --passfile)");
	else if (ret == -EINVAL)
		cli_err(verb, "the passphrases do not match (or are empty)");
	else if (ret < 0)
		cli_err(verb, "reading the passphrase: %s", strerror(-ret));
	return ret;
}

/* Why an unlock failed, in words. */
static const char *unlock_reason(int err, const struct cli_unlock *how)
{
	switch (err) {
	case -EACCES:
		return "wrong passphrase or key";
	case -EINVAL:
		if (how->recovery_file != NULL)
			return "malformed recovery key";
		return "invalid key";
	case -ENOENT:
		if (how->keyfile != NULL)
			return "the store has no key file slot";
		return "the store has no passphrase slot (use --recovery-file or "
		       "--keyfile)";
	default:
		return store_strerror(err);
	}
}

int cli_open_unlocked(const char *verb, const char *path, bool readonly,
		      const struct cli_unlock *how, struct store **out)
{
	struct secret *sec = NULL;
	struct store *st = NULL;
	char *prompt = NULL;
	int sources, ret;

	*out = NULL;
	sources = (how->passfile != NULL) + (how->extpass != NULL) +
		  (how->recovery_file != NULL) + (how->keyfile != NULL);
	if (sources > 1) {
		cli_err(verb, "use only one of --passfile, --extpass, --recovery-file, "
			      "--keyfile");
		ret = -EINVAL;
		goto out;
	}
	ret = store_open(path, readonly, &st);
	if (ret < 0) {
		cli_err(verb, "%s: %s", path, store_strerror(ret));
		goto out;
	}

	if (how->passfile != NULL) {
		ret = read_file_secret(verb, how->passfile, &sec);
	} else if (how->recovery_file != NULL) {
		ret = read_file_secret(verb, how->recovery_file, &sec);
	} else if (how->keyfile != NULL) {
		ret = read_file_secret(verb, how->keyfile, &sec);
	} else if (how->extpass != NULL) {
		ret = secret_from_cmd(how->extpass, &sec);
		if (ret < 0)
			cli_err(verb, "--extpass: %s", secret_reason(ret, true));
	} else {
		if (asprintf(&prompt, "Passphrase for %s: ", path) < 0) {
			prompt = NULL;
			ret = -ENOMEM;
			cli_err(verb, "%s", strerror(ENOMEM));
			goto out;
		}
		ret = secret_from_tty(prompt, false, &sec);
		if (ret == -ENOTTY)
			cli_err(verb, "no passphrase source (use --passfile)");
		else if (ret < 0)
			cli_err(verb, "reading the passphrase: %s", strerror(-ret));
	}
	if (ret < 0)
		goto out;

	if (how->recovery_file != NULL)
		ret = store_unlock_recovery(st, sec);
	else if (how->keyfile != NULL)
		ret = store_unlock_keyfile(st, sec);
	else
		ret = store_unlock_passphrase(st, sec);
	if (ret < 0)
		cli_err(verb, "%s: %s", path, unlock_reason(ret, how));
out:
	secret_free(sec);
	free(prompt);
	if (ret < 0)
		store_close(st);
	else
		*out = st;
	return ret;
}

bool cli_confirm(const char *question)
{
	char line[16];

	printf("%s [y/N] ", question);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

void cli_hex_field(const char *s, char *out, size_t cap)
{
	size_t n = strlen(s), o = 0;

	o += (size_t)snprintf(out, cap, "hex:");
	for (size_t i = 0; i < n && o + 3 <= cap; i++)
		o += (size_t)snprintf(out + o, cap - o, "%02x", (unsigned char)s[i]);
}

void cli_time_iso_us(int64_t us, char out[CLI_TIME_MAX])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	char base[24];

	if (us < 0 || !gmtime_r(&t, &tm) ||
	    !strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm)) {
		snprintf(out, CLI_TIME_MAX, "unknown");
		return;
	}
	snprintf(out, CLI_TIME_MAX, "%s.%06dZ", base, (int)(us % 1000000));
}

void cli_time_iso(int64_t us, char out[CLI_TIME_MAX])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	if (us < 0 || gmtime_r(&t, &tm) == NULL ||
	    strftime(out, CLI_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, CLI_TIME_MAX, "unknown");
}

/* --- Added by the daemon engineer: admin events into the audit log. --- */

int cli_audit_admin(const char *verb, struct store *st, const char *op, int outcome,
		    const char *detail, uint64_t *seq)
{
	return cli_audit_admin_ex(verb, st, op, outcome, NULL, NULL, detail, seq);
}

int cli_audit_admin_ex(const char *verb, struct store *st, const char *op, int outcome,
		       const char *path, const uint8_t *subject, const char *detail,
		       uint64_t *seq)
{
	char req[CONTROL_MSG_MAX], reply[CONTROL_MSG_MAX];
	char pfield[2 * AUDIT_PATH_MAX + 16], sfield[2 * CRYPT_HASH_BYTES + 16];
	struct audit_event ev = {0};
	struct audit_who who;
	struct audit *a = NULL;
	uint64_t s = 0;
	int ret;

	if (seq)
		*seq = 0;
	/* Mounted: the daemon holds the journal lock, so it writes the record
	 * (who = this process, looked up by pid while we wait).  The path
	 * travels hex-encoded: it may hold spaces. */
	pfield[0] = '\0';
	if (path) {
		if (strlen(path) > AUDIT_PATH_MAX) {
			cli_err(verb, "audit path too long");
			return -EINVAL;
		}
		snprintf(pfield, sizeof(pfield), "path=");
		cli_hex_field(path, pfield + 5, sizeof(pfield) - 6);
		strcat(pfield, " ");
	}
	sfield[0] = '\0';
	if (subject) {
		size_t o = (size_t)snprintf(sfield, sizeof(sfield), "subject=");

		for (size_t i = 0; i < CRYPT_HASH_BYTES; i++)
			o += (size_t)snprintf(sfield + o, sizeof(sfield) - o, "%02x",
					      subject[i]);
		snprintf(sfield + o, sizeof(sfield) - o, " ");
	}
	if (snprintf(req, sizeof(req), "audit-admin %ld %s %d %s%s%s", (long)getpid(), op,
		     outcome < 0 ? -outcome : outcome, pfield, sfield,
		     detail ? detail : "") >= (int)sizeof(req)) {
		cli_err(verb, "audit detail too long");
		return -EINVAL;
	}
	ret = control_request(st->path, req, reply, sizeof(reply));
	if (ret == 0) {
		if (seq && sscanf(reply, "seq %" SCNu64, &s) == 1)
			*seq = s;
		return 0;
	}
	if (ret != -ENOENT && ret != -ECONNREFUSED) {
		cli_err(verb, "%s: the running daemon could not record the event: %s",
			st->path, reply[0] ? reply : strerror(-ret));
		return ret;
	}
	/* Not mounted: write the log ourselves. */
	ret = audit_open(st, NULL, &a);
	if (ret < 0) {
		cli_err(verb, "%s: cannot open the audit log: %s", st->path,
			ret == -EBUSY ? "it is in use by another process"
				      : strerror(-ret));
		return ret;
	}
	audit_who_self(&who);
	ev.op = op;
	ev.outcome = outcome < 0 ? -outcome : outcome;
	ev.who = &who;
	ev.path = path;
	ev.subject = subject;
	ev.detail = detail;
	ret = audit_append(a, &ev, seq);
	if (ret == 0)
		ret = audit_flush(a);
	audit_close(a);
	if (ret < 0)
		cli_err(verb, "%s: cannot write the audit log: %s", st->path,
			strerror(-ret));
	return ret;
}

void cli_mounts_unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r != '\0'; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 +
				      (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

void cli_audit_flush(const char *verb, const char *path, const char *what)
{
	char reply[CONTROL_MSG_MAX];
	char *real = realpath(path, NULL);

	if (!real || control_request(real, "audit-flush", reply, sizeof(reply)) < 0)
		cli_err(verb,
			"warning: the running daemon did not commit its latest audit "
			"records; %s may miss the last moments",
			what);
	free(real);
}

bool cli_store_mounted(const char *path)
{
	char *line = NULL, *save, *src, *type, *real = realpath(path, NULL);
	size_t cap = 0;
	bool found = false;
	FILE *f = real ? fopen("/proc/self/mounts", "re") : NULL;

	while (f && !found && getline(&line, &cap, f) > 0) {
		src = strtok_r(line, " \t\n", &save);
		(void)strtok_r(NULL, " \t\n", &save);
		type = strtok_r(NULL, " \t\n", &save);
		if (src == NULL || type == NULL ||
		    strncmp(type, "fuse.custodian", 14) != 0)
			continue;
		cli_mounts_unescape(src);
		found = strcmp(src, real) == 0;
	}
	free(line);
	free(real);
	if (f)
		fclose(f);
	return found;
}

int cli_kdf_option(const char *verb, bool mem, const char *arg, struct keys_kdf *kdf)
{
	uint64_t v;

	if (!mem)
		return cli_parse_u64(verb, "kdf-ops", arg, crypt_pwhash_ops_min(),
				     UINT32_MAX, &kdf->opslimit);
	if (cli_parse_u64(verb, "kdf-mem", arg, 1, 1 << 20, &v) < 0)
		return -EINVAL;
	kdf->memlimit = v << 20;
	return 0;
}
