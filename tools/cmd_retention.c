/*
 * cmd_retention.c — `custodian retention report|sweep STORE`: what
 * retention keeps and what is due, and the sweep that erases it.
 *
 * Owns the operator's side of retention: the compliance clock as the tools
 * see it (--now is a system clock reading, never a bypass: a --now far
 * ahead is a forward jump that needs --accept-clock and is audited), the
 * refusals (clock jump, no terminal without --yes), the confirmation, the
 * progress bar, the per-rule report and the summary.  The work itself is
 * retention_sweep (fs/retention.c); on a mounted store the daemon runs it
 * (control verb retention-sweep) with its own store and audit log and this
 * prints the same summary.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "clock.h"
#include "control.h"
#include "policy.h"
#include "policy_store.h"
#include "retention.h"
#include "subjects.h"

#include "cli.h"

#define VERB "retention"

enum {
	OPT_DRY_RUN = CLI_OPT_FIRST_FREE,
	OPT_YES,
	OPT_JSON,
	OPT_NOW,
	OPT_ACCEPT_CLOCK,
	OPT_MAX_JUMP,
	OPT_TEST_STOP,
};

static const struct option longopts[] = {
	{"dry-run", no_argument, NULL, OPT_DRY_RUN},
	{"yes", no_argument, NULL, OPT_YES},
	{"json", no_argument, NULL, OPT_JSON},
	{"now", required_argument, NULL, OPT_NOW},
	{"accept-clock", no_argument, NULL, OPT_ACCEPT_CLOCK},
	{"max-clock-jump", required_argument, NULL, OPT_MAX_JUMP},
	{"test-stop-after", required_argument, NULL, OPT_TEST_STOP}, /* hidden */
	{"help", no_argument, NULL, 'h'},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("usage: custodian retention report STORE [--json] [--now TIME] "
	      "[--accept-clock]\n"
	      "                                  [unlock options]\n"
	      "       custodian retention sweep STORE [--dry-run] [--yes] [--json]\n"
	      "                                 [--now TIME] [--accept-clock]\n"
	      "                                 [--max-clock-jump DURATION] [unlock "
	      "options]\n"
	      "\n"
	      "report: per policy rule, how many subjects and files there are, how\n"
	      "many are due for erasure now, the next due date, and what is held\n"
	      "(legal holds on subjects and directories) and why.\n"
	      "\n"
	      "sweep: erases what is due: files past retain_max (and past their\n"
	      "keep-until) are overwritten and removed, inactive subjects are\n"
	      "crypto-shredded; holds are respected; every erasure is audited.\n"
	      "Resumable: an interrupted sweep is finished by the next one.  On a\n"
	      "mounted store the running daemon sweeps, and what it erases\n"
	      "vanishes from the mount at once.\n"
	      "\n"
	      "  --dry-run             show what would be erased; change nothing\n"
	      "  --yes                 do not ask (needed without a terminal)\n"
	      "  --json                print data as JSON\n"
	      "  --now TIME            take TIME (ISO 8601 UTC, e.g. "
	      "2031-05-01T00:00:00Z)\n"
	      "                        as the system clock reading (for tests; a TIME\n"
	      "                        far ahead is a clock jump like any other)\n"
	      "  --accept-clock        confirm a system clock that jumped ahead of the\n"
	      "                        store's compliance clock (recorded in the audit "
	      "log)\n"
	      "  --max-clock-jump DUR  forward jump that needs confirmation (default "
	      "24h)\n" CLI_UNLOCK_HELP "  -h, --help            show this help\n",
	      f);
}

/* Parsed command line. */
struct args {
	const char *sub;       /* "report" or "sweep" */
	const char *path;      /* STORE */
	struct cli_unlock how; /* unlock options */
	bool dry_run, yes, json, accept;
	bool have_now;       /* --now given */
	int64_t now_sys;     /* --now, else the system clock */
	int64_t max_jump_us; /* 0 = default / meta */
	uint64_t stop_after; /* --test-stop-after, 0 = off */
};

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

/* Loads and parses the policy in force: 0 with *p (NULL if the store has
 * none), or -errno after printing why. */
static int load_policy(struct store *st, struct policy **p)
{
	struct catalog_policy cp;
	struct policy_diag d = {0};
	int rc;

	*p = NULL;
	rc = policy_store_load(st->cat, st->mk, 0, &cp);
	if (rc == -ENOENT)
		return 0;
	if (rc == -EBADMSG) {
		cli_err(VERB, "the stored policy fails authentication (edited outside "
			      "custodian); refusing");
		return rc;
	}
	if (rc < 0) {
		cli_err(VERB, "reading the policy: %s", store_strerror(rc));
		return rc;
	}
	rc = policy_parse(cp.text, strlen(cp.text), p, &d);
	if (rc < 0)
		cli_err(VERB, "the stored policy (version %" PRId64 ") does not parse",
			cp.version);
	policy_diag_free(&d);
	catalog_policy_clear(&cp);
	return rc;
}

static void iso(int64_t us, char out[CLI_TIME_MAX])
{
	if (us <= 0)
		snprintf(out, CLI_TIME_MAX, "-");
	else
		cli_time_iso(us, out);
}

static void human_bytes(uint64_t b, char out[32])
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int i = 0;

	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, 32, "%" PRIu64 " B", b);
	else
		snprintf(out, 32, "%.1f %s", v, u[i]);
}

/* Reads the compliance clock for this run.  Prints and (with a) audits
 * what it noticed.  0 with *now, or CLI_FAIL after printing why. */
static int read_clock(struct store *st, const struct args *ar, struct audit *a,
		      bool persist, bool refuse_jump, int64_t *now, char note[160])
{
	struct clock_event ev;
	unsigned flags = 0;
	char msg[256];
	int rc;

	note[0] = '\0';
	if (!persist)
		flags |= CLOCK_NO_PERSIST;
	if (ar->accept)
		flags |= CLOCK_ACCEPT_JUMP;
	rc = clock_compliance_at(st->cat, ar->now_sys, ar->max_jump_us, flags, now, &ev);
	if (rc < 0) {
		cli_err(VERB, "reading the compliance clock: %s", store_strerror(rc));
		return CLI_FAIL;
	}
	if (ev.kind == CLOCK_EV_JUMP_AHEAD && ar->accept)
		ev.accepted = true; /* as far as this run is concerned */
	clock_event_describe(&ev, msg, sizeof(msg));
	if (ev.kind == CLOCK_EV_SET_BACK || ev.kind == CLOCK_EV_JUMP_AHEAD) {
		if (a) {
			struct audit_event ae;
			struct audit_who who;

			audit_who_self(&who);
			memset(&ae, 0, sizeof(ae));
			ae.op = AUDIT_OP_ALERT;
			ae.outcome =
				ev.kind == CLOCK_EV_JUMP_AHEAD && !ar->accept ? EPERM : 0;
			ae.who = &who;
			ae.detail = msg;
			if (audit_append(a, &ae, NULL) < 0) {
				cli_err(VERB,
					"cannot record the clock event in the audit "
					"log; nothing erased");
				return CLI_FAIL;
			}
		}
		snprintf(note, 160, "%.159s", msg);
	}
	if (ev.kind == CLOCK_EV_JUMP_AHEAD && !ar->accept && !refuse_jump) {
		fprintf(stderr,
			"custodian: %s: warning: %s; reporting as of the compliance "
			"clock "
			"(--accept-clock to report as of the system clock)\n",
			VERB, msg);
		return 0;
	}
	if (ev.kind == CLOCK_EV_JUMP_AHEAD && !ar->accept) {
		cli_err(VERB, "%s", msg);
		cli_err(VERB,
			"refusing: a clock moved forward could erase records early. "
			"If the time is right, run again with --accept-clock "
			"(recorded in the audit log)");
		return CLI_FAIL;
	}
	if (ev.kind == CLOCK_EV_SET_BACK || ev.kind == CLOCK_EV_JUMP_AHEAD)
		fprintf(stderr, "custodian: %s: warning: %s\n", VERB, msg);
	return 0;
}

/* --- report ------------------------------------------------------------------ */

/* Totals of one rule (or of "no rule"). */
struct rule_row {
	const struct policy_rule *rule; /* NULL = no rule applies */
	uint64_t subjects, subjects_due, subjects_held;
	uint64_t files, files_due, files_held, unreadable;
	int64_t next_due_us; /* earliest future due time, 0 = none */
};

/* What the report collects. */
struct report {
	int64_t now;           /* compliance time */
	struct rule_row *rows; /* one per rule seen */
	size_t n, cap;         /* used / allocated */
	uint64_t pending;      /* erasures an interrupted sweep left */
	int err;               /* -ENOMEM while collecting */
};

static struct rule_row *row_for(struct report *r, const struct policy_rule *rule)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->rows[i].rule == rule)
			return &r->rows[i];
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 16;
		struct rule_row *nv = realloc(r->rows, cap * sizeof(*nv));

		if (!nv)
			return NULL;
		r->rows = nv;
		r->cap = cap;
	}
	memset(&r->rows[r->n], 0, sizeof(r->rows[0]));
	r->rows[r->n].rule = rule;
	return &r->rows[r->n++];
}

static int report_item(const struct retention_item *it, void *arg)
{
	struct report *r = arg;
	struct rule_row *row;

	if (it->state == RETENTION_PENDING) {
		r->pending++;
		return 0;
	}
	row = row_for(r, it->rule);
	if (!row) {
		r->err = -ENOMEM;
		return -ENOMEM;
	}
	if (it->kind == RETENTION_SUBJECT) {
		row->subjects++;
		row->subjects_due += it->state == RETENTION_DUE;
		row->subjects_held += it->state == RETENTION_HELD;
	} else {
		row->files++;
		row->files_due += it->state == RETENTION_DUE;
		row->files_held += it->state == RETENTION_HELD;
		row->unreadable += it->state == RETENTION_UNREADABLE;
	}
	if (it->state == RETENTION_KEPT && it->due_us > r->now &&
	    (row->next_due_us == 0 || it->due_us < row->next_due_us))
		row->next_due_us = it->due_us;
	return 0;
}

static int cmp_rows(const void *a, const void *b)
{
	const struct rule_row *x = a, *y = b;

	if (!x->rule || !y->rule)
		return !x->rule - !y->rule;
	return (x->rule->line > y->rule->line) - (x->rule->line < y->rule->line);
}

/* One legal hold, for the report. */
struct hold_row {
	char kind[12];                    /* "subject" or "directory" */
	char what[4096];                  /* subject id or directory path */
	char reason[SUBJECTS_REASON_MAX]; /* why */
};

/* The holds. */
struct holds {
	struct hold_row *v; /* n rows */
	size_t n;           /* used */
};

static int add_hold(struct holds *h, const char *kind, const char *what, const char *why)
{
	struct hold_row *nv = realloc(h->v, (h->n + 1) * sizeof(*nv));

	if (!nv)
		return -ENOMEM;
	h->v = nv;
	snprintf(nv[h->n].kind, sizeof(nv[h->n].kind), "%s", kind);
	snprintf(nv[h->n].what, sizeof(nv[h->n].what), "%s", what);
	snprintf(nv[h->n].reason, sizeof(nv[h->n].reason), "%s", why);
	h->n++;
	return 0;
}

static int on_subject_hold(const struct subjects_info *info,
			   const struct subjects_usage *usage, void *arg)
{
	char what[SUBJECTS_PARENT_MAX + SUBJECTS_ID_MAX + 2];

	(void)usage;
	if (!(info->flags & SUBJECTS_HELD) || (info->flags & SUBJECTS_SHREDDED))
		return 0;
	snprintf(what, sizeof(what), "%s%s%s", info->parent,
		 strcmp(info->parent, "/") == 0 ? "" : "/", info->id);
	return add_hold(arg, "subject", what, info->hold_reason);
}

static int on_dir_hold(const char *path, const char *reason, int64_t created, void *arg)
{
	(void)created;
	return add_hold(arg, "directory", path, reason);
}

static void rule_retention(const struct policy_rule *rule, char min[24], char max[48])
{
	snprintf(min, 24, "-");
	snprintf(max, 48, "-");
	if (!rule)
		return;
	if (rule->retain_min_s)
		policy_format_duration(rule->retain_min_s, min, 24);
	if (rule->retain_max_s) {
		char d[24];

		policy_format_duration(rule->retain_max_s, d, sizeof(d));
		snprintf(max, 48, "%s (%s)", d,
			 policy_retain_from_name(rule->retain_from));
	}
}

/* The effective retention of a rule's own pattern (inherited values). */
static void effective_of(const struct policy *p, const struct policy_rule *rule,
			 struct policy_rule *out)
{
	struct policy_effective e;

	memset(out, 0, sizeof(*out));
	if (!rule || policy_effective(p, rule->pattern, &e) < 0)
		return;
	out->retain_min_s = e.retain_min_s;
	out->retain_max_s = e.retain_max_s;
	out->retain_from = e.retain_from;
	out->worm = e.worm;
}

static void print_report_text(const struct policy *p, struct report *r,
			      const struct holds *h, int64_t now)
{
	char t[CLI_TIME_MAX], min[24], max[48], nd[CLI_TIME_MAX];
	size_t wr = 4;

	iso(now, t);
	printf("retention report (compliance time %s)\n\n", t);
	for (size_t i = 0; i < r->n; i++) {
		size_t l = r->rows[i].rule ? strlen(r->rows[i].rule->pattern) : 9;

		if (l > wr)
			wr = l;
	}
	if (wr > 40)
		wr = 40;
	printf("%-*s  %-8s  %-22s  %8s  %8s  %6s  %6s  %s\n", (int)wr, "RULE", "MIN",
	       "MAX (FROM)", "SUBJECTS", "FILES", "DUE", "HELD", "NEXT DUE");
	for (size_t i = 0; i < r->n; i++) {
		struct rule_row *row = &r->rows[i];
		struct policy_rule eff;

		effective_of(p, row->rule, &eff);
		rule_retention(row->rule ? &eff : NULL, min, max);
		iso(row->next_due_us, nd);
		printf("%-*.*s  %-8s  %-22s  %8" PRIu64 "  %8" PRIu64 "  %6" PRIu64
		       "  %6" PRIu64 "  %s\n",
		       (int)wr, (int)wr, row->rule ? row->rule->pattern : "(no rule)",
		       min, max, row->subjects, row->files,
		       row->subjects_due + row->files_due,
		       row->subjects_held + row->files_held, nd);
		if (row->unreadable)
			printf("%-*s  (%" PRIu64
			       " unreadable files skipped: see custodian "
			       "fsck)\n",
			       (int)wr, "", row->unreadable);
	}
	if (r->n == 0)
		printf("(the store holds no records)\n");
	if (r->pending)
		printf("\n%" PRIu64
		       " erasures an interrupted sweep began are pending; the "
		       "next sweep finishes them.\n",
		       r->pending);
	printf("\nlegal holds: %zu\n", h->n);
	for (size_t i = 0; i < h->n; i++)
		printf("  %-9s %s: %s\n", h->v[i].kind, h->v[i].what, h->v[i].reason);
}

static void print_report_json(const struct policy *p, struct report *r,
			      const struct holds *h, int64_t now)
{
	json_object *o = json_object_new_object(), *rules = json_object_new_array(),
		    *hl = json_object_new_array();
	char t[CLI_TIME_MAX], d[24];

	iso(now, t);
	json_object_object_add(o, "compliance_time", json_object_new_string(t));
	for (size_t i = 0; i < r->n; i++) {
		struct rule_row *row = &r->rows[i];
		json_object *x = json_object_new_object();
		struct policy_rule eff;

		effective_of(p, row->rule, &eff);
		json_object_object_add(
			x, "rule",
			row->rule ? json_object_new_string(row->rule->pattern) : NULL);
		json_object_object_add(
			x, "line",
			json_object_new_int(row->rule ? (int)row->rule->line : 0));
		policy_format_duration(eff.retain_min_s, d, sizeof(d));
		json_object_object_add(x, "retain_min",
				       eff.retain_min_s ? json_object_new_string(d)
							: NULL);
		policy_format_duration(eff.retain_max_s, d, sizeof(d));
		json_object_object_add(x, "retain_max",
				       eff.retain_max_s ? json_object_new_string(d)
							: NULL);
		json_object_object_add(
			x, "retain_from",
			json_object_new_string(policy_retain_from_name(eff.retain_from)));
		json_object_object_add(x, "worm", json_object_new_boolean(eff.worm));
		json_object_object_add(x, "subjects",
				       json_object_new_uint64(row->subjects));
		json_object_object_add(x, "subjects_due",
				       json_object_new_uint64(row->subjects_due));
		json_object_object_add(x, "subjects_held",
				       json_object_new_uint64(row->subjects_held));
		json_object_object_add(x, "files", json_object_new_uint64(row->files));
		json_object_object_add(x, "files_due",
				       json_object_new_uint64(row->files_due));
		json_object_object_add(x, "files_held",
				       json_object_new_uint64(row->files_held));
		json_object_object_add(x, "unreadable",
				       json_object_new_uint64(row->unreadable));
		iso(row->next_due_us, t);
		json_object_object_add(x, "next_due",
				       row->next_due_us ? json_object_new_string(t)
							: NULL);
		json_object_array_add(rules, x);
	}
	json_object_object_add(o, "rules", rules);
	for (size_t i = 0; i < h->n; i++) {
		json_object *x = json_object_new_object();

		json_object_object_add(x, "kind", json_object_new_string(h->v[i].kind));
		json_object_object_add(x, "what", json_object_new_string(h->v[i].what));
		json_object_object_add(x, "reason",
				       json_object_new_string(h->v[i].reason));
		json_object_array_add(hl, x);
	}
	json_object_object_add(o, "holds", hl);
	json_object_object_add(o, "pending_erasures", json_object_new_uint64(r->pending));
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE |
						       JSON_C_TO_STRING_PRETTY));
	json_object_put(o);
}

static int do_report(const struct args *ar)
{
	struct retention_sweep_opts o;
	struct retention_stats stats;
	struct report r;
	struct holds h = {0};
	struct policy *p = NULL;
	struct store *st = NULL;
	char note[160];
	int64_t now;
	int rc, ret = CLI_FAIL;

	memset(&r, 0, sizeof(r));
	if (cli_open_unlocked(VERB, ar->path, true, &ar->how, &st) < 0)
		goto out;
	if (load_policy(st, &p) < 0)
		goto out;
	if (read_clock(st, ar, NULL, false, false, &now, note) != 0)
		goto out;
	r.now = now;
	memset(&o, 0, sizeof(o));
	o.now_us = now;
	o.dry_run = true;
	o.item = report_item;
	o.arg = &r;
	rc = retention_sweep(st, p, &o, &stats);
	if (rc == 0)
		rc = subjects_list(st, false, on_subject_hold, &h);
	if (rc == 0)
		rc = retention_hold_list(st, on_dir_hold, &h);
	if (rc < 0) {
		cli_err(VERB, "%s: %s", ar->path,
			rc == -EBADMSG ? "a hold was edited outside custodian; refusing"
				       : store_strerror(rc));
		goto out;
	}
	qsort(r.rows, r.n, sizeof(r.rows[0]), cmp_rows);
	if (ar->json)
		print_report_json(p, &r, &h, now);
	else
		print_report_text(p, &r, &h, now);
	ret = CLI_OK;
out:
	free(r.rows);
	if (h.v)
		crypt_wipe(h.v, h.n * sizeof(*h.v));
	free(h.v);
	policy_free(p);
	store_close(st);
	return ret;
}

/* --- sweep -------------------------------------------------------------------- */

/* State of a running sweep, for the item callback. */
struct run {
	bool tty;            /* progress bar on stderr */
	bool json;           /* collect items instead of printing them */
	uint64_t total;      /* erasures planned (from the dry run) */
	uint64_t done;       /* erasures handled */
	uint64_t stop_after; /* --test-stop-after */
	uint64_t finished;   /* file erasures completed (stage DONE) */
	json_object *items;  /* --json: erased items */
};

static void progress(struct run *r)
{
	int width = 30, fill;

	if (!r->tty || r->total == 0)
		return;
	fill = (int)(r->done * (uint64_t)width / r->total);
	if (fill > width)
		fill = width;
	fprintf(stderr, "\r[%.*s%*s] %" PRIu64 "/%" PRIu64, fill,
		"##############################", width - fill, "", r->done, r->total);
	if (r->done >= r->total)
		fputc('\n', stderr);
	fflush(stderr);
}

static const char *kind_name(const struct retention_item *it)
{
	return it->kind == RETENTION_SUBJECT ? "subject" : "file";
}

static int sweep_item(const struct retention_item *it, void *arg)
{
	struct run *r = arg;
	bool acted = it->erased || (it->err && it->state != RETENTION_UNREADABLE);

	if (!acted || it->with_subject)
		return 0;
	r->done++;
	if (r->json) {
		json_object *x = json_object_new_object();

		json_object_object_add(x, "kind", json_object_new_string(kind_name(it)));
		json_object_object_add(x, "path", json_object_new_string(it->path));
		json_object_object_add(x, "erased", json_object_new_boolean(it->erased));
		json_object_object_add(x, "resumed",
				       json_object_new_boolean(it->resumed));
		json_object_object_add(
			x, "error",
			it->err ? json_object_new_string(strerror(-it->err)) : NULL);
		json_object_array_add(r->items, x);
	} else {
		if (r->tty)
			fputs("\r\033[K", stderr);
		if (it->erased)
			printf("%s %s%s%s\n",
			       it->kind == RETENTION_SUBJECT ? "shredded subject"
							     : "erased",
			       it->path[0] ? it->path : "(an earlier sweep's file)",
			       it->state == RETENTION_PENDING ? " (finished)" : "",
			       it->resumed && it->state != RETENTION_PENDING
				       ? " (resumed)"
				       : "");
		else
			printf("FAILED %s %s: %s\n", kind_name(it), it->path,
			       strerror(-it->err));
		fflush(stdout);
	}
	progress(r);
	return 0;
}

static void sweep_stage(enum retention_stage s, void *arg)
{
	struct run *r = arg;

	if (s == RETENTION_STAGE_DONE)
		r->finished++;
	/* Tests: die like a killed process in the middle of an erasure. */
	if (r->stop_after && s == RETENTION_STAGE_RENAMED &&
	    r->finished >= r->stop_after) {
		fflush(stdout);
		raise(SIGKILL);
	}
}

static void print_summary(const struct retention_stats *s, int64_t now, bool dry,
			  json_object *items, bool json)
{
	char t[CLI_TIME_MAX], nd[CLI_TIME_MAX], b[32];

	iso(now, t);
	iso(s->next_due_us, nd);
	human_bytes(s->bytes_erased, b);
	if (json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "dry_run", json_object_new_boolean(dry));
		json_object_object_add(o, "compliance_time", json_object_new_string(t));
		json_object_object_add(o, "files", json_object_new_uint64(s->files));
		json_object_object_add(o, "files_due",
				       json_object_new_uint64(s->files_due));
		json_object_object_add(o, "files_erased",
				       json_object_new_uint64(s->files_erased));
		json_object_object_add(o, "files_held",
				       json_object_new_uint64(s->files_held));
		json_object_object_add(o, "files_unreadable",
				       json_object_new_uint64(s->files_unreadable));
		json_object_object_add(o, "subjects",
				       json_object_new_uint64(s->subjects));
		json_object_object_add(o, "subjects_due",
				       json_object_new_uint64(s->subjects_due));
		json_object_object_add(o, "subjects_shredded",
				       json_object_new_uint64(s->subjects_shredded));
		json_object_object_add(o, "subjects_held",
				       json_object_new_uint64(s->subjects_held));
		json_object_object_add(o, "resumed", json_object_new_uint64(s->resumed));
		json_object_object_add(o, "bytes_erased",
				       json_object_new_uint64(s->bytes_erased));
		json_object_object_add(o, "errors", json_object_new_uint64(s->errors));
		json_object_object_add(o, "next_due",
				       s->next_due_us ? json_object_new_string(nd)
						      : NULL);
		json_object_object_add(o, "items", items ? json_object_get(items) : NULL);
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE |
							       JSON_C_TO_STRING_PRETTY));
		json_object_put(o);
		return;
	}
	if (dry) {
		printf("dry run at %s (compliance clock): %" PRIu64 " of %" PRIu64
		       " files and %" PRIu64 " of %" PRIu64 " subjects are due; %" PRIu64
		       " files and %" PRIu64 " subjects held; %" PRIu64
		       " unreadable; next due %s; nothing "
		       "changed\n",
		       t, s->files_due, s->files, s->subjects_due, s->subjects,
		       s->files_held, s->subjects_held, s->files_unreadable, nd);
		return;
	}
	printf("sweep done at %s (compliance clock): %" PRIu64
	       " files erased (%s), %" PRIu64 " subjects shredded, %" PRIu64
	       " interrupted erasures finished; %" PRIu64 " files and %" PRIu64
	       " subjects held; %" PRIu64 " unreadable; %" PRIu64
	       " errors; next due %s\n",
	       t, s->files_erased, b, s->subjects_shredded, s->resumed, s->files_held,
	       s->subjects_held, s->files_unreadable, s->errors, nd);
}

static bool confirm(const struct retention_stats *plan)
{
	char line[16];

	printf("Erase %" PRIu64 " files and shred %" PRIu64 " subjects for good? [y/N] ",
	       plan->files_due, plan->subjects_due);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

/* Counts pending erasures seen by a dry run. */
static int count_pending(const struct retention_item *it, void *arg)
{
	if (it->state == RETENTION_PENDING)
		(*(uint64_t *)arg)++;
	return 0;
}

/*
 * The sweep of a mounted store: the daemon runs it (control verb
 * retention-sweep) with its own store, policy and audit log, and makes
 * what it erased vanish from the mount.  CLI_OK with the totals, or
 * CLI_FAIL after printing why.
 */
static int sweep_live(const struct args *ar, const char *real, const char *who,
		      struct retention_stats *s, int64_t *now)
{
	char req[CONTROL_MSG_MAX], reply[CONTROL_MSG_MAX];
	size_t o;
	long long n = 0, nd = 0;
	unsigned long long v[12];
	int rc;

	memset(s, 0, sizeof(*s));
	o = (size_t)snprintf(req, sizeof(req),
			     "retention-sweep %lld %lld %d hex:", (long long)ar->now_sys,
			     (long long)ar->max_jump_us, ar->accept ? 1 : 0);
	for (size_t i = 0; who[i] && o + 3 < sizeof(req); i++)
		o += (size_t)snprintf(req + o, sizeof(req) - o, "%02x",
				      (unsigned char)who[i]);
	if (!who[0])
		snprintf(req + o, sizeof(req) - o, "2d");
	rc = control_request_timeout(real, req, reply, sizeof(reply), 3600 * 1000);
	if (rc == -ETIME) {
		cli_err(VERB, "%s", reply);
		cli_err(VERB,
			"refusing: a clock moved forward could erase records early. "
			"If the time is right, run again with --accept-clock "
			"(recorded in the audit log)");
		return CLI_FAIL;
	}
	if (rc < 0) {
		cli_err(VERB, "%s: the running daemon could not sweep: %s", ar->path,
			reply[0] ? reply : strerror(-rc));
		return CLI_FAIL;
	}
	if (sscanf(reply,
		   "now=%lld files=%llu files_due=%llu files_erased=%llu files_held=%llu "
		   "files_unreadable=%llu subjects=%llu subjects_due=%llu "
		   "subjects_shredded=%llu subjects_held=%llu resumed=%llu "
		   "bytes_erased=%llu errors=%llu next_due=%lld",
		   &n, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8],
		   &v[9], &v[10], &v[11], &nd) != 14) {
		cli_err(VERB, "%s: unexpected reply from the daemon", ar->path);
		return CLI_FAIL;
	}
	*now = n;
	s->files = v[0];
	s->files_due = v[1];
	s->files_erased = v[2];
	s->files_held = v[3];
	s->files_unreadable = v[4];
	s->subjects = v[5];
	s->subjects_due = v[6];
	s->subjects_shredded = v[7];
	s->subjects_held = v[8];
	s->resumed = v[9];
	s->bytes_erased = v[10];
	s->errors = v[11];
	s->next_due_us = nd;
	return CLI_OK;
}

static int do_sweep(const struct args *ar)
{
	struct retention_sweep_opts o;
	struct retention_stats plan, stats;
	char who[SUBJECTS_OPERATOR_MAX], note[160];
	struct run run;
	struct audit *a = NULL;
	struct policy *p = NULL;
	struct store *st = NULL;
	uint64_t pending = 0;
	char *real = NULL;
	bool mounted;
	int64_t now;
	int rc, ret = CLI_FAIL;

	memset(&run, 0, sizeof(run));
	real = realpath(ar->path, NULL);
	if (!real) {
		cli_err(VERB, "%s: %s", ar->path, strerror(errno));
		goto out;
	}
	mounted = cli_store_mounted(real);
	if (!ar->dry_run && !ar->yes && !isatty(STDIN_FILENO)) {
		cli_err(VERB, "not a terminal: nothing erased (use --yes to sweep "
			      "without confirmation)");
		goto out;
	}
	if (cli_open_unlocked(VERB, ar->path, ar->dry_run || mounted, &ar->how, &st) < 0)
		goto out;
	if (load_policy(st, &p) < 0)
		goto out;
	if (!ar->dry_run && !mounted) {
		rc = audit_open(st, NULL, &a);
		if (rc == -EBUSY) {
			cli_err(VERB,
				"%s is mounted; the live sweep goes through the "
				"daemon (control channel: coming)",
				ar->path);
			goto out;
		}
		if (rc < 0) {
			cli_err(VERB, "%s: opening the audit log: %s", ar->path,
				store_strerror(rc));
			goto out;
		}
	}
	/* Mounted: the daemon reads (and persists, and audits) the clock and
	 * refuses a jump itself; the plan here uses the stored time. */
	if (read_clock(st, ar, a, !ar->dry_run && !mounted, !mounted || ar->dry_run, &now,
		       note) != 0)
		goto out;
	operator_name(who);

	/* The plan: a dry run counts what is due (and the bar's total). */
	memset(&o, 0, sizeof(o));
	o.now_us = now;
	o.dry_run = true;
	o.item = count_pending;
	o.arg = &pending;
	rc = retention_sweep(st, p, &o, &plan);
	if (rc < 0) {
		cli_err(VERB, "%s: %s", ar->path,
			rc == -EBADMSG ? "a hold was edited outside custodian; refusing"
				       : store_strerror(rc));
		goto out;
	}
	if (ar->dry_run) {
		print_summary(&plan, now, true, NULL, ar->json);
		ret = CLI_OK;
		goto out;
	}
	if (!p)
		fprintf(stderr,
			"custodian: %s: the store has no policy: nothing is due\n", VERB);
	if (!ar->yes && (plan.files_due || plan.subjects_due) && !confirm(&plan)) {
		cli_err(VERB, "not confirmed: nothing erased");
		goto out;
	}
	if (mounted) {
		ret = sweep_live(ar, real, who, &stats, &now);
		if (ret == CLI_OK) {
			print_summary(&stats, now, false, NULL, ar->json);
			ret = stats.errors ? CLI_FAIL : CLI_OK;
		}
		goto out;
	}
	run.tty = isatty(STDERR_FILENO) && !ar->json;
	run.json = ar->json;
	run.total = plan.files_due + plan.subjects_due + pending;
	run.stop_after = ar->stop_after;
	if (ar->json)
		run.items = json_object_new_array();
	o.dry_run = false;
	o.audit = a;
	o.operator_ = who;
	o.clock_note = note[0] ? note : NULL;
	o.item = sweep_item;
	o.arg = &run;
	o.stage = sweep_stage;
	rc = retention_sweep(st, p, &o, &stats);
	if (audit_flush(a) < 0)
		cli_err(VERB, "warning: audit records are still in the journal; they are "
			      "committed at the next open");
	if (rc < 0) {
		cli_err(VERB, "%s: sweep stopped: %s (run it again to finish)", ar->path,
			store_strerror(rc));
		goto out;
	}
	print_summary(&stats, now, false, run.items, ar->json);
	ret = stats.errors ? CLI_FAIL : CLI_OK;
out:
	json_object_put(run.items);
	audit_close(a);
	policy_free(p);
	store_close(st);
	free(real);
	return ret;
}

int cmd_retention(int argc, char **argv)
{
	struct args ar;
	int c;

	memset(&ar, 0, sizeof(ar));
	ar.now_sys = clock_now_us();
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&ar.how, c, optarg))
			continue;
		switch (c) {
		case OPT_DRY_RUN:
			ar.dry_run = true;
			break;
		case OPT_YES:
			ar.yes = true;
			break;
		case OPT_JSON:
			ar.json = true;
			break;
		case OPT_ACCEPT_CLOCK:
			ar.accept = true;
			break;
		case OPT_NOW:
			if (clock_parse_iso(optarg, &ar.now_sys) < 0) {
				cli_err(VERB,
					"--now: '%s' is not an ISO 8601 UTC time "
					"(e.g. 2031-05-01T00:00:00Z)",
					optarg);
				return CLI_USAGE;
			}
			ar.have_now = true;
			break;
		case OPT_MAX_JUMP: {
			int64_t s;
			char msg[POLICY_MSG_MAX];

			if (policy_parse_duration(optarg, &s, msg, sizeof(msg)) < 0) {
				cli_err(VERB, "--max-clock-jump: %s", msg);
				return CLI_USAGE;
			}
			ar.max_jump_us = s * 1000000;
			break;
		}
		case OPT_TEST_STOP:
			if (cli_parse_u64(VERB, "test-stop-after", optarg, 1, UINT32_MAX,
					  &ar.stop_after) < 0)
				return CLI_USAGE;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 2, "report|sweep and STORE are required", usage))
		return CLI_USAGE;
	ar.sub = argv[optind];
	ar.path = argv[optind + 1];
	if (strcmp(ar.sub, "report") == 0) {
		if (ar.dry_run || ar.yes || ar.stop_after) {
			cli_err(VERB, "report takes no --dry-run, --yes");
			return CLI_USAGE;
		}
		return do_report(&ar);
	}
	if (strcmp(ar.sub, "sweep") == 0)
		return do_sweep(&ar);
	cli_err(VERB, "unknown subcommand '%s' (report or sweep)", ar.sub);
	usage(stderr);
	return CLI_USAGE;
}
