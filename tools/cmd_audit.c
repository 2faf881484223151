/*
 * cmd_audit.c — `custodian audit log|verify|head`: reading the audit log.
 *
 * Owns the auditor's side of fs/audit.c: turning filters given on the
 * command line (subject id, user, times in ISO 8601 or relative) into a
 * catalogue query, decrypting paths for display, the table and JSON-lines
 * formats (field names are a documented, stable interface: docs/audit.md),
 * live tailing, and the wording of verification findings.  Before reading,
 * records a crash left in the journal are replayed when no daemon holds the
 * log, so a query or a verify sees every record that was ever returned.
 */
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "clock.h"
#include "subjects.h"

#define VERB "audit"
#define PATH_TEXT_MAX (AUDIT_PATH_MAX + 1)

enum {
	OPT_SUBJECT = CLI_OPT_FIRST_FREE,
	OPT_USER,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_OP,
	OPT_DENIED,
	OPT_PATH,
	OPT_JSON,
	OPT_FOLLOW,
	OPT_HEAD,
};

static const struct option longopts[] = {
	{"subject", required_argument, NULL, OPT_SUBJECT},
	{"user", required_argument, NULL, OPT_USER},
	{"since", required_argument, NULL, OPT_SINCE},
	{"until", required_argument, NULL, OPT_UNTIL},
	{"op", required_argument, NULL, OPT_OP},
	{"denied", no_argument, NULL, OPT_DENIED},
	{"path", required_argument, NULL, OPT_PATH},
	{"json", no_argument, NULL, OPT_JSON},
	{"follow", no_argument, NULL, OPT_FOLLOW},
	{"head", required_argument, NULL, OPT_HEAD},
	{"help", no_argument, NULL, 'h'},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

/* Everything the command line asked for. */
struct args {
	const char *subject;   /* --subject ID */
	const char *user;      /* --user NAME|UID */
	const char *since;     /* --since T */
	const char *until;     /* --until T */
	const char *op;        /* --op OP */
	const char *prefix;    /* --path PREFIX */
	const char *head;      /* --head HEX */
	bool denied;           /* --denied */
	bool json;             /* --json */
	bool follow;           /* --follow */
	struct cli_unlock how; /* unlock options */
};

static void usage(FILE *f)
{
	fputs("usage: custodian audit log STORE [filters] [--json] [--follow] [unlock]\n"
	      "       custodian audit verify STORE [--head HEX] [unlock]\n"
	      "       custodian audit head STORE\n"
	      "\n"
	      "log      print audit records, oldest first, with paths decrypted\n"
	      "verify   recompute the whole MAC chain; exit 1 naming the first bad\n"
	      "         record, or if --head is given and no record has that MAC\n"
	      "head     print the newest record's position and MAC (SEQ MAC-HEX), to\n"
	      "         keep elsewhere and give to verify --head later\n"
	      "\n"
	      "filters (all must match):\n"
	      "  --subject ID     records of one data subject (its id, e.g. C-10042)\n"
	      "  --user NAME|UID  records of one caller (uid)\n"
	      "  --since T        at or after T: 2026-03-01, 2026-03-01T10:00:00Z,\n"
	      "                   or relative: 30s, 15m, 12h, 7d, 2w (ago)\n"
	      "  --until T        at or before T (a date alone means its end)\n"
	      "  --op OP          one operation: open, close, create, unlink, deny...\n"
	      "  --denied         refused operations only (outcome not 0)\n"
	      "  --path PREFIX    path equal to PREFIX or below it\n"
	      "output:\n"
	      "  --json           one JSON object per line (fields in docs/audit.md)\n"
	      "  --follow         keep printing new records as they arrive\n"
	      "\n" CLI_UNLOCK_HELP "  -h, --help       show this help\n",
	      f);
}

/* --- time ------------------------------------------------------------------ */

/* T as UTC microseconds; until: a date alone means the end of that day. */
static int parse_time(const char *s, bool until, int64_t *out)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0, k;
	char unit, tail[16] = "";
	long long v;
	struct tm tm = {0};
	int64_t us = 0;

	if (sscanf(s, "%lld%c%n", &v, &unit, &n) == 2 && s[n] == 0 && v >= 0 &&
	    v < 1000000000LL && strchr("smhdw", unit) && s[0] >= '0' && s[0] <= '9' &&
	    !strchr(s, '-')) {
		static const int64_t mul[] = {1, 60, 3600, 86400, 604800};

		*out = clock_now_us() -
		       v * mul[strchr("smhdw", unit) - "smhdw"] * 1000000;
		return 0;
	}
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
		return -EINVAL;
	if (s[10] == 0) {
		if (until)
			us = 86400LL * 1000000 - 1;
	} else {
		if (s[10] != 'T' && s[10] != ' ')
			return -EINVAL;
		k = 0;
		if (sscanf(s + 11, "%2d:%2d%n", &h, &mi, &k) != 2 || k != 5)
			return -EINVAL;
		s += 16;
		if (*s == ':') {
			if (sscanf(s + 1, "%2d%n", &sec, &k) != 1 || k != 2)
				return -EINVAL;
			s += 3;
			if (*s == '.') {
				int digits = 0;

				for (s++; *s >= '0' && *s <= '9'; s++, digits++)
					if (digits < 6)
						us = us * 10 + (*s - '0');
				if (digits == 0)
					return -EINVAL;
				for (; digits < 6; digits++)
					us *= 10;
			}
		}
		snprintf(tail, sizeof(tail), "%s", s);
		if (strcmp(tail, "Z") != 0 && strcmp(tail, "") != 0 &&
		    strcmp(tail, "+00:00") != 0)
			return -EINVAL;
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*out = (int64_t)timegm(&tm) * 1000000 + us;
	return 0;
}

/* --- opening -------------------------------------------------------------------- */

/* Before reading: replays a journal a crash left behind if no daemon holds
 * it, or has the daemon that holds it commit its queue.  Prints a warning
 * and returns -errno if the replay failed. */
static int replay_if_needed(const char *path, const struct cli_unlock *how)
{
	struct store *st = NULL;
	struct audit *a = NULL;
	uint64_t recs = 0;
	bool locked = false;
	int rc;

	rc = audit_journal_peek(path, &recs, &locked);
	if (rc == 0 && locked) {
		cli_audit_flush(VERB, path, "the output");
		return 0;
	}
	if (rc == -ENOENT || (rc == 0 && recs == 0))
		return 0;
	if (rc == 0)
		rc = cli_open_unlocked(VERB, path, false, how, &st);
	if (rc == 0)
		rc = audit_open(st, NULL, &a);
	audit_close(a);
	store_close(st);
	if (rc == -EBADMSG)
		cli_err(VERB,
			"%s/%s: damaged: records in it cannot be trusted or replayed",
			path, AUDIT_JOURNAL_FILE);
	else if (rc == -EBUSY)
		rc = 0; /* mounted meanwhile: the daemon replays it */
	else if (rc)
		cli_err(VERB, "%s: replaying the journal: %s", path, store_strerror(rc));
	return rc;
}

/* --- log ---------------------------------------------------------------------- */

/* A short name for an outcome. */
static const char *outcome_text(int64_t e, char buf[16])
{
	const char *n;

	if (e == 0)
		return "ok";
	n = e < 4096 ? strerrorname_np((int)e) : NULL;
	if (n)
		return n;
	snprintf(buf, 16, "E%" PRId64, e);
	return buf;
}

/* User name of uid (one-entry cache: logs come in runs). */
static const char *user_name(int64_t uid)
{
	static int64_t last = -1;
	static char name[64];
	struct passwd *pw;

	if (uid == last)
		return name[0] ? name : NULL;
	last = uid;
	name[0] = 0;
	pw = getpwuid((uid_t)uid);
	if (pw && strlen(pw->pw_name) < sizeof(name))
		strcpy(name, pw->pw_name);
	return name[0] ? name : NULL;
}

/* Subject keyrings opened for the paths of a listing, by subject hash. */
#define RING_SLOTS 16

/* One subject seen in the listing. */
struct ring_slot {
	bool used;                      /* slot filled */
	uint8_t hash[CRYPT_HASH_BYTES]; /* the record's subject hash */
	struct keyring *ring;           /* its keyring, NULL if not opened */
	int err;                        /* subjects_open's error if NULL */
};

/* Small cache: a log is mostly runs of records of the same few subjects. */
struct rings {
	struct store *st;                  /* the store */
	struct ring_slot slot[RING_SLOTS]; /* subjects looked up */
	unsigned next;                     /* slot replaced next */
};

static void rings_free(struct rings *rs)
{
	for (unsigned i = 0; i < RING_SLOTS; i++)
		keys_ring_free(rs->slot[i].ring);
	memset(rs->slot, 0, sizeof(rs->slot));
}

/* The subject's keyring (NULL and *err if it cannot be opened:
 * SUBJECTS_ESHREDDED for a shredded subject). */
static const struct keyring *subject_ring(struct rings *rs, const uint8_t *hash, int *err)
{
	struct ring_slot *s;

	for (unsigned i = 0; i < RING_SLOTS; i++) {
		s = &rs->slot[i];
		if (s->used && memcmp(s->hash, hash, CRYPT_HASH_BYTES) == 0) {
			*err = s->err;
			return s->ring;
		}
	}
	s = &rs->slot[rs->next++ % RING_SLOTS];
	keys_ring_free(s->ring);
	s->ring = NULL;
	s->used = true;
	memcpy(s->hash, hash, CRYPT_HASH_BYTES);
	s->err = subjects_open(rs->st, hash, &s->ring);
	if (s->err)
		s->ring = NULL;
	*err = s->err;
	return s->ring;
}

/* A sealed path as text, "" if none.  Inside a subject the path is sealed
 * under the subject's keyring; records the daemon made at a subject's
 * edge (creating its root, a denial before it exists) use the volume's,
 * so that is tried next.  "(shredded)" if the subject's key is destroyed,
 * "(unreadable)" if no key opens it (damaged or forged). */
static void path_text(struct rings *rs, const struct catalog_audit_row *r,
		      const uint8_t *sealed, size_t len, char *out, size_t cap)
{
	const struct keyring *ring = NULL;
	int err = 0;

	out[0] = 0;
	if (len == 0)
		return;
	if (r->has_subject) {
		ring = subject_ring(rs, r->subject, &err);
		if (ring && audit_path_open(ring, sealed, len, out, cap) == 0)
			return;
	}
	if (audit_path_open(keys_volume(rs->st->mk), sealed, len, out, cap) == 0)
		return;
	snprintf(out, cap, "%s",
		 r->has_subject && err == -SUBJECTS_ESHREDDED ? "(shredded)"
							      : "(unreadable)");
}

/* Path equal to prefix or below it. */
static bool under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	while (n > 1 && prefix[n - 1] == '/')
		n--;
	if (strncmp(path, prefix, n) != 0)
		return false;
	return path[n] == 0 || path[n] == '/' || (n == 1 && prefix[0] == '/');
}

/* Terminal-safe copy: control characters become '?'. */
static void safe(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void print_json(const struct catalog_audit_row *r, const char *path,
		       const char *path2)
{
	json_object *o = cli_audit_json(r, user_name(r->uid), path, path2);

	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
						       JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

#define TABLE_FMT "%-27s %7s %-10s %-8s %-7s %7s %-15s %10s %-12s %s\n"

static void print_row(const struct catalog_audit_row *r, const char *path,
		      const char *path2)
{
	char ts[40], ubuf[24], obuf[16], pid[24], bytes[24], subj[13] = "-", comm[32];
	const char *user = user_name(r->uid);

	cli_time_iso_us(r->ts_us, ts);
	if (!user) {
		snprintf(ubuf, sizeof(ubuf), "%" PRId64, r->uid);
		user = ubuf;
	}
	snprintf(pid, sizeof(pid), "%" PRId64, r->pid);
	snprintf(bytes, sizeof(bytes), "%" PRId64, r->bytes);
	if (r->has_subject)
		crypt_hex(subj, r->subject, 6);
	snprintf(comm, sizeof(comm), "%s", r->comm[0] ? r->comm : "-");
	safe(comm);
	printf("%-27s %7" PRId64 " %-10s %-8s %-7s %7s %-15s %10s %-12s %s%s%s%s%s\n", ts,
	       r->seq, user, r->op, outcome_text(r->outcome, obuf), pid, comm, bytes,
	       subj, r->path_len ? path : "-", r->path2_len ? " -> " : "",
	       r->path2_len ? path2 : "", r->detail[0] ? "  " : "", r->detail);
}

/* Prints the rows matching flt after flt->after_seq; advances it. */
static int print_rows(struct store *st, struct rings *rs,
		      struct catalog_audit_filter *flt, const struct args *ar)
{
	struct catalog_audit_row *r = malloc(sizeof(*r));
	struct catalog_audit_iter *it = NULL;
	char *path = malloc(PATH_TEXT_MAX), *path2 = malloc(PATH_TEXT_MAX);
	int rc;

	if (!r || !path || !path2) {
		rc = -ENOMEM;
		goto out;
	}
	rc = catalog_audit_query(st->cat, flt, &it);
	if (rc)
		goto out;
	while ((rc = catalog_audit_next(it, r)) == 1) {
		flt->after_seq = r->seq;
		path_text(rs, r, r->path, r->path_len, path, PATH_TEXT_MAX);
		path_text(rs, r, r->path2, r->path2_len, path2, PATH_TEXT_MAX);
		if (ar->prefix && !(r->path_len && under(path, ar->prefix)) &&
		    !(r->path2_len && under(path2, ar->prefix)))
			continue;
		if (ar->json) {
			print_json(r, path, path2);
		} else {
			safe(path);
			safe(path2);
			safe(r->detail);
			print_row(r, path, path2);
		}
	}
	fflush(stdout);
out:
	catalog_audit_iter_free(it);
	if (path)
		crypt_wipe(path, PATH_TEXT_MAX);
	if (path2)
		crypt_wipe(path2, PATH_TEXT_MAX);
	free(path);
	free(path2);
	free(r);
	return rc;
}

static volatile sig_atomic_t stop_follow;

static void on_signal(int sig)
{
	(void)sig;
	stop_follow = 1;
}

static int do_log(const char *path, const struct args *ar)
{
	uint8_t subj[CRYPT_HASH_BYTES];
	struct catalog_audit_filter flt;
	struct store *st = NULL;
	struct rings rings = {0};
	int rc;

	catalog_audit_filter_all(&flt);
	if (ar->since && parse_time(ar->since, false, &flt.since_us)) {
		cli_err(VERB,
			"--since: '%s' is not a time (2026-03-01, 2026-03-01T10:00:00Z, "
			"7d)",
			ar->since);
		return CLI_USAGE;
	}
	if (ar->until && parse_time(ar->until, true, &flt.until_us)) {
		cli_err(VERB,
			"--until: '%s' is not a time (2026-03-01, 2026-03-01T10:00:00Z, "
			"7d)",
			ar->until);
		return CLI_USAGE;
	}
	if (ar->user) {
		struct passwd *pw = getpwnam(ar->user);
		uint64_t uid;

		if (pw) {
			flt.uid = pw->pw_uid;
		} else if (ar->user[0] >= '0' && ar->user[0] <= '9') {
			if (cli_parse_u64(VERB, "user", ar->user, 0, UINT32_MAX, &uid))
				return CLI_USAGE;
			flt.uid = (int64_t)uid;
		} else {
			cli_err(VERB, "--user: no such user '%s'", ar->user);
			return CLI_USAGE;
		}
	}
	if (ar->op && (strlen(ar->op) >= CATALOG_AUDIT_OP_MAX || !ar->op[0])) {
		cli_err(VERB, "--op: '%s' is not an operation", ar->op);
		return CLI_USAGE;
	}
	flt.op = ar->op;
	flt.denied = ar->denied;
	if (replay_if_needed(path, &ar->how) == -EBADMSG)
		return CLI_FAIL;
	if (cli_open_unlocked(VERB, path, true, &ar->how, &st) < 0)
		return CLI_FAIL;
	rings.st = st;
	if (ar->subject) {
		audit_subject_hash(st->mk, ar->subject, subj);
		flt.subject = subj;
	}
	if (!ar->json && isatty(STDOUT_FILENO))
		printf(TABLE_FMT, "TIME (UTC)", "SEQ", "USER", "OP", "RESULT", "PID",
		       "COMM", "BYTES", "SUBJECT", "PATH");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	for (;;) {
		rc = print_rows(st, &rings, &flt, ar);
		/* Looked up afresh each round: a subject may be shredded or
		 * created while --follow runs. */
		rings_free(&rings);
		if (rc || !ar->follow || stop_follow)
			break;
		sleep(1);
		if (stop_follow)
			break;
	}
	store_close(st);
	if (rc) {
		cli_err(VERB, "%s: reading the log: %s", path, store_strerror(rc));
		return CLI_FAIL;
	}
	return CLI_OK;
}

/* --- verify / head ------------------------------------------------------------------ */

static int do_verify(const char *path, const struct args *ar)
{
	uint8_t head[CRYPT_MAC_BYTES];
	struct audit_report rep;
	struct store *st = NULL;
	char hex[2 * CRYPT_MAC_BYTES + 1];
	const char *h = ar->head;
	int rc, journal;

	if (h && strchr(h, ' '))
		h = strrchr(h, ' ') + 1; /* "SEQ HEX" as `audit head` prints it */
	if (h && crypt_unhex(head, sizeof(head), h) != CRYPT_MAC_BYTES) {
		cli_err(VERB, "--head: expected %d hex digits", 2 * CRYPT_MAC_BYTES);
		return CLI_USAGE;
	}
	journal = replay_if_needed(path, &ar->how);
	if (cli_open_unlocked(VERB, path, true, &ar->how, &st) < 0)
		return CLI_FAIL;
	rc = audit_verify(st->cat, st->mk, h ? head : NULL, &rep);
	store_close(st);
	if (rc) {
		cli_err(VERB, "%s: reading the log: %s", path, store_strerror(rc));
		return CLI_FAIL;
	}
	switch (rep.verdict) {
	case AUDIT_OK:
		break;
	case AUDIT_BAD_MAC:
		cli_err(VERB,
			"record %" PRIu64
			": MAC mismatch (edited, reordered or inserted)",
			rep.seq);
		return CLI_FAIL;
	case AUDIT_BAD_PREV:
		cli_err(VERB,
			"record %" PRIu64 ": link to record %" PRIu64
			" edited (prev mismatch)",
			rep.seq, rep.seq - 1);
		return CLI_FAIL;
	case AUDIT_GAP:
		cli_err(VERB, "record %" PRIu64 " missing (gap after %" PRIu64 ")",
			rep.seq, rep.seq - 1);
		return CLI_FAIL;
	case AUDIT_TRUNCATED:
		cli_err(VERB,
			"record %" PRIu64 " missing (the log ends at %" PRIu64
			" but its committed head is %" PRIu64 ": tail removed)",
			rep.seq, rep.head_seq, rep.meta_seq);
		return CLI_FAIL;
	case AUDIT_HEAD_MISSING:
		cli_err(VERB,
			"no record has the MAC given with --head: records up to it were "
			"removed (or it belongs to another store)");
		return CLI_FAIL;
	}
	crypt_hex(hex, rep.head_mac, sizeof(rep.head_mac));
	printf("audit chain OK: %" PRIu64 " records, head %" PRIu64 " %s\n", rep.records,
	       rep.head_seq, hex);
	if (journal == -EBADMSG)
		return CLI_FAIL;
	return CLI_OK;
}

static int do_head(const char *path)
{
	uint8_t mac[CRYPT_MAC_BYTES];
	char hex[2 * CRYPT_MAC_BYTES + 1];
	struct store *st = NULL;
	uint64_t recs = 0;
	bool locked = false;
	int64_t seq;
	int rc;

	rc = store_open(path, true, &st);
	if (rc) {
		cli_err(VERB, "%s: %s", path, store_strerror(rc));
		return CLI_FAIL;
	}
	rc = catalog_audit_last(st->cat, &seq, mac);
	store_close(st);
	if (rc) {
		cli_err(VERB, "%s: reading the log: %s", path, store_strerror(rc));
		return CLI_FAIL;
	}
	if (audit_journal_peek(path, &recs, &locked) == 0 && recs && !locked)
		fprintf(stderr,
			"custodian: audit: note: %" PRIu64
			" records from a crash are still in "
			"the journal; `audit verify` replays them\n",
			recs);
	crypt_hex(hex, mac, sizeof(mac));
	printf("%" PRId64 " %s\n", seq, hex);
	return CLI_OK;
}

int cmd_audit(int argc, char **argv)
{
	struct args ar = {0};
	const char *sub;
	char **pos;
	int npos, opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&ar.how, opt, optarg))
			continue;
		switch (opt) {
		case OPT_SUBJECT:
			ar.subject = optarg;
			break;
		case OPT_USER:
			ar.user = optarg;
			break;
		case OPT_SINCE:
			ar.since = optarg;
			break;
		case OPT_UNTIL:
			ar.until = optarg;
			break;
		case OPT_OP:
			ar.op = optarg;
			break;
		case OPT_DENIED:
			ar.denied = true;
			break;
		case OPT_PATH:
			ar.prefix = optarg;
			break;
		case OPT_JSON:
			ar.json = true;
			break;
		case OPT_FOLLOW:
			ar.follow = true;
			break;
		case OPT_HEAD:
			ar.head = optarg;
			break;
		case 'h':
			usage(stdout);
			return CLI_OK;
		default:
			usage(stderr);
			return CLI_USAGE;
		}
	}
	pos = argv + optind;
	npos = argc - optind;
	if (npos != 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	sub = pos[0];
	if (strcmp(sub, "log") == 0 && !ar.head)
		return do_log(pos[1], &ar);
	if (strcmp(sub, "verify") == 0 && !ar.subject && !ar.user && !ar.since &&
	    !ar.until && !ar.op && !ar.denied && !ar.prefix && !ar.json && !ar.follow)
		return do_verify(pos[1], &ar);
	if (strcmp(sub, "head") == 0 && !ar.head)
		return do_head(pos[1]);
	cli_err(VERB, "unknown subcommand or options that do not apply to it: %s", sub);
	usage(stderr);
	return CLI_USAGE;
}
