/*
 * cmd_report.c — `custodian report STORE [--format md|html] [--out FILE]`:
 * the register of processing (GDPR art. 30 style) for the data-protection
 * officer, drawn from the stored policy and the store itself.
 *
 * Owns the register's content and its two renderings.  Per policy rule
 * (directory): purpose and categories (policy keys `purpose`,
 * `categories`), who has access per permission, retention (min, max, from,
 * write-once), audit level and read rate, and how many files and subjects
 * lie beneath it; once for the store: the security measures (algorithms,
 * key slots, audit chain).  Read-only; needs the keys only to count.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "clock.h"
#include "policy.h"
#include "policy_store.h"
#include "retention.h"

#include "cli.h"

#define VERB "report"

enum {
	OPT_FORMAT = CLI_OPT_FIRST_FREE,
	OPT_OUT,
};

static const struct option longopts[] = {
	{"format", required_argument, NULL, OPT_FORMAT},
	{"out", required_argument, NULL, OPT_OUT},
	{"help", no_argument, NULL, 'h'},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("usage: custodian report STORE [--format md|html] [--out FILE] [unlock "
	      "options]\n"
	      "\n"
	      "Prints the register of processing for the data-protection officer:\n"
	      "per directory rule of the policy, the purpose and categories of data,\n"
	      "who has access, retention periods, audit level and how many files and\n"
	      "subjects it holds; and the store's security measures.\n"
	      "\n"
	      "  --format md|html  Markdown (default) or a standalone HTML page\n"
	      "  --out FILE        write to FILE instead of standard "
	      "output\n" CLI_UNLOCK_HELP "  -h, --help        show this help\n",
	      f);
}

/* Counts per rule. */
struct count {
	const struct policy_rule *rule; /* NULL = no rule */
	uint64_t files, subjects;       /* beneath it */
};

/* All counts. */
struct counts {
	struct count *v;          /* n entries */
	size_t n;                 /* used */
	uint64_t files, subjects; /* in the whole store */
};

static int count_item(const struct retention_item *it, void *arg)
{
	struct counts *c = arg;
	struct count *e = NULL, *nv;

	if (it->state == RETENTION_PENDING)
		return 0;
	for (size_t i = 0; i < c->n && !e; i++)
		if (c->v[i].rule == it->rule)
			e = &c->v[i];
	if (!e) {
		nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		c->v = nv;
		e = &c->v[c->n++];
		memset(e, 0, sizeof(*e));
		e->rule = it->rule;
	}
	if (it->kind == RETENTION_SUBJECT) {
		e->subjects++;
		c->subjects++;
	} else {
		e->files++;
		c->files++;
	}
	return 0;
}

/* --- rendering ------------------------------------------------------------------ */

/* Output state: where and how. */
struct out {
	FILE *f;   /* destination */
	bool html; /* HTML, else Markdown */
};

/* Writes s escaped for the format (HTML entities; Markdown table pipes
 * and newlines). */
static void esc(struct out *o, const char *s)
{
	for (; s && *s; s++) {
		if (o->html) {
			switch (*s) {
			case '<':
				fputs("&lt;", o->f);
				continue;
			case '>':
				fputs("&gt;", o->f);
				continue;
			case '&':
				fputs("&amp;", o->f);
				continue;
			case '"':
				fputs("&quot;", o->f);
				continue;
			default:
				break;
			}
		} else if (*s == '|' || *s == '\\' || *s == '*' || *s == '_' ||
			   *s == '`') {
			fputc('\\', o->f);
		} else if (*s == '\n' || *s == '\r') {
			fputc(' ', o->f);
			continue;
		}
		fputc(*s, o->f);
	}
}

static void __attribute__((format(printf, 2, 3)))
escf(struct out *o, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	esc(o, buf);
}

static void heading(struct out *o, int level, const char *text)
{
	if (o->html) {
		fprintf(o->f, "<h%d>", level);
		esc(o, text);
		fprintf(o->f, "</h%d>\n", level);
	} else {
		fprintf(o->f, "\n%.*s ", level, "####");
		esc(o, text);
		fputs("\n\n", o->f);
	}
}

static void table_start(struct out *o)
{
	if (o->html)
		fputs("<table>\n", o->f);
	else
		fputs("| | |\n|---|---|\n", o->f);
}

static void table_end(struct out *o)
{
	fputs(o->html ? "</table>\n" : "\n", o->f);
}

/* One row: key and a value (already formatted text). */
static void row(struct out *o, const char *key, const char *val)
{
	if (o->html) {
		fputs("<tr><th>", o->f);
		esc(o, key);
		fputs("</th><td>", o->f);
		esc(o, val);
		fputs("</td></tr>\n", o->f);
	} else {
		fputs("| ", o->f);
		esc(o, key);
		fputs(" | ", o->f);
		esc(o, val);
		fputs(" |\n", o->f);
	}
}

/* The principals of one permission as written, or who has it by default. */
static void acl_text(const struct policy_effective *e, int op, char *out, size_t cap)
{
	const struct policy_rule *r = e->from[op];
	size_t used = 0;

	out[0] = '\0';
	if (!r) {
		snprintf(out, cap, "nobody (default deny)");
		return;
	}
	if (r->acl[op].n == 0) {
		snprintf(out, cap, "nobody");
		return;
	}
	for (size_t i = 0; i < r->acl[op].n && used + 2 < cap; i++) {
		int n = snprintf(out + used, cap - used, "%s%s", i ? " " : "",
				 r->acl[op].who[i].name);

		if (n < 0)
			break;
		used += (size_t)n < cap - used ? (size_t)n : cap - used - 1;
	}
}

static int cmp_line(const void *a, const void *b)
{
	const struct policy_rule *x = *(const struct policy_rule *const *)a;
	const struct policy_rule *y = *(const struct policy_rule *const *)b;

	return (x->line > y->line) - (x->line < y->line);
}

/* Security measures: the same for every directory of the store. */
static void security(struct out *o, struct store *st)
{
	struct catalog_slot *slots = NULL;
	size_t nslots = 0;
	unsigned npass = 0, nrec = 0, nkey = 0;
	uint64_t ops = 0, mem = 0;
	uint8_t mac[CRYPT_MAC_BYTES];
	int64_t seq = 0;
	char buf[512];

	if (catalog_slot_list(st->cat, &slots, &nslots) == 0) {
		for (size_t i = 0; i < nslots; i++) {
			if (strcmp(slots[i].kind, KEYS_SLOT_PASSPHRASE) == 0) {
				npass++;
				ops = slots[i].opslimit;
				mem = slots[i].memlimit;
			} else if (strcmp(slots[i].kind, KEYS_SLOT_RECOVERY) == 0) {
				nrec++;
			} else {
				nkey++;
			}
		}
		free(slots);
	}
	heading(o, 2, "Security measures (whole store)");
	table_start(o);
	row(o, "Encryption of content",
	    "XChaCha20-Poly1305 (AEAD) per 4 KiB block, random nonce; per-file key "
	    "(BLAKE2b) bound to a random file id; blocks bound to their position");
	row(o, "Encryption of names",
	    "deterministic authenticated encryption (synthetic IV: keyed BLAKE2b + "
	    "XChaCha20), per-directory IV");
	row(o, "Data subjects",
	    "one random 256-bit key per subject (content and names), wrapped by the "
	    "master key; erasure by destroying the key (crypto-shredding) with an "
	    "erasure ledger and certificate");
	snprintf(buf, sizeof(buf),
		 "master key wrapped in %u passphrase slot(s) (Argon2id, %" PRIu64
		 " passes, %" PRIu64 " MiB), %u recovery slot(s), %u key-file slot(s); "
		 "keys held in locked, non-dumpable memory",
		 npass, ops, mem >> 20, nrec, nkey);
	row(o, "Key management", buf);
	if (catalog_audit_last(st->cat, &seq, mac) < 0)
		seq = 0;
	snprintf(buf, sizeof(buf),
		 "tamper-evident log (keyed BLAKE2b hash chain, verifiable with "
		 "`custodian "
		 "audit verify`); %" PRId64
		 " records; paths inside subjects sealed under "
		 "the subject key",
		 seq);
	row(o, "Audit", buf);
	row(o, "Retention",
	    "keep-until fixed at creation in the authenticated header; compliance clock "
	    "that never runs backwards; legal holds; daily sweep (custodian retention "
	    "sweep)");
	row(o, "Access control",
	    "per-directory policy, default deny; root has no special rights inside the "
	    "mount; per-user read rate limits");
	table_end(o);
}

static void directory(struct out *o, const struct policy *p, const struct policy_rule *r,
		      const struct counts *c)
{
	struct policy_effective e;
	char buf[2048], d1[24], d2[24];
	uint64_t files = 0, subjects = 0;
	static const char *const perm_names[POLICY_NOPS] = {
		"Access: list",   "Access: read",   "Access: write",
		"Access: create", "Access: delete", "Access: admin"};

	if (policy_effective(p, r->pattern, &e) < 0)
		return;
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].rule == r) {
			files = c->v[i].files;
			subjects = c->v[i].subjects;
		}
	snprintf(buf, sizeof(buf), "%s (policy line %u)", r->pattern, r->line);
	heading(o, 3, buf);
	table_start(o);
	row(o, "Purpose", e.purpose ? e.purpose : "(not stated in the policy)");
	row(o, "Categories of data",
	    e.categories ? e.categories : "(not stated in the policy)");
	row(o, "Data subjects",
	    e.subject_root ? "each directory matched is one data subject (own key)"
			   : "no (directories here are not subject roots)");
	for (int op = 0; op < POLICY_NOPS; op++) {
		acl_text(&e, op, buf, sizeof(buf));
		row(o, perm_names[op], buf);
	}
	if (e.retain_min_s) {
		policy_format_duration(e.retain_min_s, d1, sizeof(d1));
		snprintf(buf, sizeof(buf), "%s from creation%s", d1,
			 e.worm ? "; write-once after the first close" : "");
	} else {
		snprintf(buf, sizeof(buf), "none%s", e.worm ? " (write-once)" : "");
	}
	row(o, "Minimum retention", buf);
	if (e.retain_max_s) {
		policy_format_duration(e.retain_max_s, d2, sizeof(d2));
		snprintf(buf, sizeof(buf), "%s from %s, then erased by the sweep", d2,
			 e.retain_from == POLICY_FROM_CREATED ? "creation"
			 : e.retain_from == POLICY_FROM_MODIFIED
				 ? "last modification"
				 : "the subject's last write");
	} else {
		snprintf(buf, sizeof(buf), "none (kept until deleted)");
	}
	row(o, "Maximum retention", buf);
	row(o, "Audit level", policy_audit_name(e.audit));
	if (e.rate_count)
		snprintf(buf, sizeof(buf), "%" PRIu32 " opens per %" PRIu32 " s per user",
			 e.rate_count, e.rate_window_s);
	else
		snprintf(buf, sizeof(buf), "unlimited");
	row(o, "Read rate limit", buf);
	snprintf(buf, sizeof(buf), "%" PRIu64 " files, %" PRIu64 " subjects", files,
		 subjects);
	row(o, "Records (most specific rule)", buf);
	table_end(o);
}

static void render(struct out *o, struct store *st, const char *path,
		   const struct policy *p, const struct catalog_policy *cp,
		   const struct counts *c)
{
	char t[CLI_TIME_MAX], sid[2 * STORE_ID_BYTES + 1], buf[1024];
	const struct policy_rule **rules = NULL;
	size_t n = p ? policy_nrules(p) : 0;

	cli_time_iso(clock_now_us(), t);
	crypt_hex(sid, st->id, STORE_ID_BYTES);
	if (o->html)
		fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
		      "<title>Register of processing</title>\n<style>body{font-family:"
		      "sans-serif;max-width:60em;margin:auto}table{border-collapse:"
		      "collapse;width:100%}th,td{border:1px solid #999;padding:4px;"
		      "text-align:left;vertical-align:top}th{width:14em;background:"
		      "#eee}</style></head><body>\n",
		      o->f);
	heading(o, 1, "Register of processing activities");
	if (o->html)
		fputs("<p>", o->f);
	escf(o, "Store %s (id %s). Generated %s by custodian report.", path, sid, t);
	if (o->html)
		fputs("</p>\n<p>", o->f);
	else
		fputs("\n\n", o->f);
	if (cp) {
		char at[CLI_TIME_MAX];

		cli_time_iso(cp->applied_us, at);
		snprintf(buf, sizeof(buf),
			 "Policy version %" PRId64
			 ", applied by %s at %s. Records: %" PRIu64 " files, %" PRIu64
			 " data subjects.",
			 cp->version, cp->applied_by, at, c->files, c->subjects);
	} else {
		snprintf(buf, sizeof(buf),
			 "No policy is stored: access follows the mode bits and nothing "
			 "is "
			 "retained or swept. Records: %" PRIu64 " files, %" PRIu64
			 " data subjects.",
			 c->files, c->subjects);
	}
	esc(o, buf);
	fputs(o->html ? "</p>\n" : "\n", o->f);
	security(o, st);
	heading(o, 2, "Processing by directory");
	if (n) {
		rules = malloc(n * sizeof(*rules));
		if (rules) {
			for (size_t i = 0; i < n; i++)
				rules[i] = policy_rule_at(p, i);
			qsort(rules, n, sizeof(*rules), cmp_line);
			for (size_t i = 0; i < n; i++)
				directory(o, p, rules[i], c);
		}
		free(rules);
	} else if (o->html) {
		fputs("<p>No rules.</p>\n", o->f);
	} else {
		fputs("No rules.\n", o->f);
	}
	if (o->html)
		fputs("</body></html>\n", o->f);
}

int cmd_report(int argc, char **argv)
{
	struct cli_unlock how = {0};
	struct retention_sweep_opts so;
	struct retention_stats stats;
	struct catalog_policy cp;
	struct counts counts = {0};
	struct policy_diag d = {0};
	struct out o = {stdout, false};
	const char *outfile = NULL, *path;
	struct policy *p = NULL;
	struct store *st = NULL;
	bool have_cp = false;
	int c, rc, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_FORMAT:
			if (strcmp(optarg, "html") == 0) {
				o.html = true;
			} else if (strcmp(optarg, "md") == 0 ||
				   strcmp(optarg, "markdown") == 0) {
				o.html = false;
			} else {
				cli_err(VERB, "--format must be md or html, not '%s'",
					optarg);
				return CLI_USAGE;
			}
			break;
		case OPT_OUT:
			outfile = optarg;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 1, "STORE is required", usage))
		return CLI_USAGE;
	path = argv[optind];
	if (cli_open_unlocked(VERB, path, true, &how, &st) < 0)
		goto out;
	rc = policy_store_load(st->cat, st->mk, 0, &cp);
	if (rc == 0) {
		have_cp = true;
		rc = policy_parse(cp.text, strlen(cp.text), &p, &d);
		if (rc < 0)
			cli_err(VERB, "the stored policy does not parse");
	} else if (rc == -ENOENT) {
		rc = 0;
	} else if (rc == -EBADMSG) {
		cli_err(VERB, "the stored policy fails authentication (edited outside "
			      "custodian); refusing");
	} else {
		cli_err(VERB, "reading the policy: %s", store_strerror(rc));
	}
	if (rc < 0)
		goto out;
	memset(&so, 0, sizeof(so));
	so.now_us = clock_now_us();
	so.dry_run = true;
	so.item = count_item;
	so.arg = &counts;
	rc = retention_sweep(st, p, &so, &stats);
	if (rc < 0) {
		cli_err(VERB, "%s: counting records: %s", path, store_strerror(rc));
		goto out;
	}
	if (outfile) {
		o.f = fopen(outfile, "we");
		if (!o.f) {
			cli_err(VERB, "%s: %s", outfile, strerror(errno));
			goto out;
		}
	}
	render(&o, st, path, p, have_cp ? &cp : NULL, &counts);
	if (outfile) {
		if (fclose(o.f) != 0) {
			cli_err(VERB, "%s: %s", outfile, strerror(errno));
			goto out;
		}
	} else if (fflush(stdout) != 0) {
		goto out;
	}
	ret = CLI_OK;
out:
	if (have_cp)
		catalog_policy_clear(&cp);
	policy_diag_free(&d);
	free(counts.v);
	policy_free(p);
	store_close(st);
	return ret;
}
