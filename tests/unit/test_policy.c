/*
 * test_policy.c — unit tests for policy/policy.c, policy/duration.c and
 * policy/policy_store.c.
 *
 * Every parser error has one input with its expected line and exact text;
 * the matcher is tested for precedence, inheritance, '*', groups, default
 * deny and root; the store part for MAC framing, tampering and a wrong key.
 * A timing loop prints ns per check for a 50-rule policy (printed only).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"
#include "crypt.h"
#include "keys.h"
#include "policy.h"
#include "policy_store.h"

#include "unit_util.h"

/* --- helpers -------------------------------------------------------------- */

static void dump(const struct policy_diag *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "  %u: %s%s\n", d->msgs[i].line,
			d->msgs[i].warning ? "warning: " : "", d->msgs[i].text);
}

/* Parses text expecting failure with (at least) the error line: text. */
static void expect_error_len(const char *text, size_t len, unsigned line, const char *msg)
{
	struct policy *p = (struct policy *)1;
	struct policy_diag d = {0};
	bool found = false;

	assert_int_equal(policy_parse(text, len, &p, &d), -EINVAL);
	assert_null(p);
	assert_true(d.nerrors >= 1);
	for (size_t i = 0; i < d.n; i++)
		if (!d.msgs[i].warning && d.msgs[i].line == line &&
		    strcmp(d.msgs[i].text, msg) == 0)
			found = true;
	if (!found) {
		fprintf(stderr, "wanted %u: %s\ngot:\n", line, msg);
		dump(&d);
	}
	assert_true(found);
	policy_diag_free(&d);
}

static void expect_error(const char *text, unsigned line, const char *msg)
{
	expect_error_len(text, strlen(text), line, msg);
}

static struct policy *parse_ok(const char *text, struct policy_diag *d)
{
	struct policy *p = NULL;
	struct policy_diag local = {0};
	int rc = policy_parse(text, strlen(text), &p, d ? d : &local);

	if (rc)
		dump(d ? d : &local);
	assert_int_equal(rc, 0);
	assert_non_null(p);
	policy_diag_free(&local);
	return p;
}

/* A fake user database. */
static const struct {
	const char *name;
	uint32_t id;
} users[] = {{"alice", 1001},
	     {"bob", 1002},
	     {"carol", 1003},
	     {"root", 0},
	     {"dave", 1004}},
  groups[] = {{"staff", 100},
	      {"agents", 101},
	      {"supervisors", 102},
	      {"qa", 103},
	      {"records", 104}};

static int lookup_user(void *ctx, const char *name, uint32_t *id)
{
	int *calls = ctx;

	if (calls)
		(*calls)++;
	for (size_t i = 0; i < ARRAY_LEN(users); i++) {
		if (strcmp(users[i].name, name) == 0) {
			*id = users[i].id;
			return 0;
		}
	}
	return -ENOENT;
}

static int lookup_group(void *ctx, const char *name, uint32_t *id)
{
	(void)ctx;
	for (size_t i = 0; i < ARRAY_LEN(groups); i++) {
		if (strcmp(groups[i].name, name) == 0) {
			*id = groups[i].id;
			return 0;
		}
	}
	return -ENOENT;
}

static int lookup_fails(void *ctx, const char *name, uint32_t *id)
{
	(void)ctx;
	(void)name;
	(void)id;
	return -EIO;
}

static struct policy *load(const char *text)
{
	struct policy *p = parse_ok(text, NULL);
	struct policy_diag d = {0};

	assert_int_equal(policy_resolve(p, lookup_user, lookup_group, NULL, &d), 0);
	policy_diag_free(&d);
	return p;
}

/* --- parser errors --------------------------------------------------------- */

static void test_err_syntax(void **state)
{
	char buf[5100];

	(void)state;
	expect_error_len("[/a]\nlist = x\n\0\n", 15, 3, "NUL byte in policy text");
	memcpy(buf, "[/a]\npurpose = ", 15);
	memset(buf + 15, 'x', 5000);
	memcpy(buf + 5015, "\n", 2);
	expect_error(buf, 2, "line too long (more than 4096 characters)");
	expect_error("[/a\nlist = x\n", 1, "section header without closing ']'");
	expect_error("[/a ; c]\n", 1, "section header without closing ']'");
	expect_error("[/a] x\n", 1, "unexpected text after ']'");
	expect_error("[/a]\njunk\n", 2,
		     "expected 'key = value', '[/directory/pattern]' or a comment");
	expect_error("list = x\n", 1,
		     "key 'list' before any [/directory/pattern] section");
	expect_error("[/a]\n= x\n", 2, "missing key name before '='");
	expect_error("[/a]\nlst = x\n", 2, "unknown key 'lst'");
	expect_error("[/a]\nList = x\n", 2, "unknown key 'List'");
	expect_error("[/a]\nread = x\nread = y\n", 3,
		     "duplicate key 'read' in [/a] (first at line 2)");
	expect_error("[/a]\nretain_min =\n", 2, "empty value for 'retain_min'");
	expect_error("[/a]\npurpose = \n", 2, "empty value for 'purpose'");
}

static void test_err_patterns(void **state)
{
	char deep[400] = "[";

	(void)state;
	expect_error("[]\n", 1, "empty directory pattern '[]'");
	expect_error("[   ]\n", 1, "empty directory pattern '[]'");
	expect_error("[customers/*]\n", 1,
		     "directory pattern 'customers/*' must be absolute (start with '/')");
	expect_error("[/cust*]\n", 1,
		     "'*' must be a whole path component in '/cust*' (it matches exactly "
		     "one name)");
	expect_error("[/a/**]\n", 1,
		     "'*' must be a whole path component in '/a/**' (it matches exactly "
		     "one name)");
	expect_error("[/a/../b]\n", 1, "'..' is not allowed in a directory pattern");
	expect_error("[/a/./b]\n", 1, "'.' is not allowed in a directory pattern");
	expect_error("[/a]\nlist = x\n\n[/a/]\nlist = y\n", 4,
		     "duplicate section [/a] (first at line 1)");
	expect_error("[/a/*]\n[//a//*]\n", 2,
		     "duplicate section [/a/*] (first at line 1)");
	for (int i = 0; i < 65; i++)
		strcat(deep, "/d");
	strcat(deep, "]\n");
	expect_error(deep, 1, "directory pattern is too deep (more than 64 components)");
}

static void test_err_principals(void **state)
{
	char buf[200], want[200];

	(void)state;
	expect_error("[/a]\nread = ok bad!name\n", 2,
		     "bad user name 'bad!name' in 'read' (principals are user, @group, "
		     "#uid or @#gid)");
	expect_error("[/a]\nlist = @\n", 2,
		     "bad group name '@' in 'list' (principals are user, @group, #uid or "
		     "@#gid)");
	expect_error("[/a]\nwrite = -rf\n", 2,
		     "bad user name '-rf' in 'write' (principals are user, @group, #uid "
		     "or @#gid)");
	expect_error("[/a]\nwrite = abcdefghijabcdefghijabcdefghijabc\n", 2,
		     "bad user name 'abcdefghijabcdefghijabcdefghijabc' in 'write' "
		     "(principals are user, @group, #uid or @#gid)");
	expect_error("[/a]\ncreate = #x\n", 2,
		     "bad numeric user id '#x' in 'create' (expected #NUMBER below "
		     "4294967295)");
	expect_error("[/a]\ndelete = @#4294967295\n", 2,
		     "bad numeric group id '@#4294967295' in 'delete' (expected @#NUMBER "
		     "below 4294967295)");
	expect_error("[/a]\nadmin = #\n", 2,
		     "bad numeric user id '#' in 'admin' (expected #NUMBER below "
		     "4294967295)");
	memcpy(buf, "[/a]\nread = ", 12);
	memset(buf + 12, 'u', 100);
	strcpy(buf + 112, "\n");
	snprintf(want, sizeof(want), "principal '%.40s...' in 'read' is too long",
		 buf + 12);
	expect_error(buf, 2, want);
}

static void test_err_values(void **state)
{
	(void)state;
	expect_error("[/a]\nsubject = maybe\n", 2,
		     "subject must be 'yes' or 'no', not 'maybe'");
	expect_error("[/a]\nworm = 1\n", 2, "worm must be 'yes' or 'no', not '1'");
	expect_error("[/]\nsubject = yes\n", 2,
		     "the root directory cannot be a subject root");
	expect_error("[/a]\naudit = all\n", 2,
		     "audit must be 'none', 'opens' or 'reads', not 'all'");
	expect_error(
		"[/a]\nretain_min = 6x\n", 2,
		"retain_min: unknown unit 'x' in duration '6x' (use h, d, w, mo or y)");
	expect_error("[/a]\nretain_max = 6m\n", 2,
		     "retain_max: ambiguous unit 'm' in duration '6m': write 'mo' for "
		     "months");
	expect_error("[/a]\nretain_min = 0d\n", 2,
		     "retain_min: duration '0d' must be greater than zero (write 'none' "
		     "for no limit)");
	expect_error("[/a]\nretain_min = 1001y\n", 2,
		     "retain_min: duration '1001y' is too long (at most 1000y)");
	expect_error("[/a]\nretain_min = 90\n", 2,
		     "retain_min: missing unit in duration '90' (use h, d, w, mo or y)");
	expect_error(
		"[/a]\nretain_min = -5d\n", 2,
		"retain_min: bad duration '-5d': expected a number followed by h, d, "
		"w, mo or y (e.g. 90d, 6y)");
	expect_error("[/a]\nretain_min = 10y\nretain_max = 6y\n", 3,
		     "retain_max is shorter than retain_min (line 2)");
	expect_error("[/a]\nretain_max = 6y\nretain_min = 10y\n", 3,
		     "retain_min is longer than retain_max (line 2)");
	expect_error(
		"[/a]\nread_rate = 300\n", 2,
		"bad read_rate '300': expected COUNT/UNIT such as 300/h (units s, m, "
		"h, d)");
	expect_error("[/a]\nread_rate = 0/h\n", 2,
		     "read_rate '0/h' must allow at least one read (write 'read =' to "
		     "forbid reading)");
	expect_error("[/a]\nread_rate = 300/x\n", 2,
		     "unknown unit 'x' in read_rate '300/x' (use s, m, h or d)");
	expect_error("[/a]\nread_rate = 300/0h\n", 2,
		     "read_rate '300/0h' has a zero-length window");
	expect_error(
		"[/a]\nread_rate = 99999999999999999999/h\n", 2,
		"read_rate '99999999999999999999/h' is too large (at most 1000000000 "
		"per window)");
	expect_error("[/a]\nread_rate = 1/400d\n", 2,
		     "read_rate '1/400d' has a window longer than 366 days");
}

static void test_err_subjects(void **state)
{
	(void)state;
	expect_error("[/c/*]\nsubject = yes\n[/c/vip]\nsubject = no\n", 2,
		     "subject = yes on [/c/*] conflicts with subject = no on overlapping "
		     "[/c/vip] (line 4)");
	expect_error("[/*/x]\nsubject = no\n[/c/*]\nsubject = yes\n", 4,
		     "subject = yes on [/c/*] conflicts with subject = no on overlapping "
		     "[/*/x] (line 2)");
	expect_error("[/c/*]\nsubject = yes\n[/c/*/x/*]\nsubject = yes\n", 4,
		     "subject root [/c/*/x/*] would lie inside subject root [/c/*] (line "
		     "2); subject roots cannot nest");
}

static void test_all_errors_collected(void **state)
{
	struct policy *p = NULL;
	struct policy_diag d = {0};
	const char *text = "[/a]\n"
			   "lst = x\n"    /* 2 */
			   "[relative]\n" /* 3 */
			   "read = y\n"   /* 4: skipped, header bad */
			   "[/b]\n"
			   "audit = loud\n"     /* 6 */
			   "garbage line\n"     /* 7 */
			   "retain_min = 5q\n"; /* 8 */

	(void)state;
	assert_int_equal(policy_parse(text, strlen(text), &p, &d), -EINVAL);
	assert_null(p);
	assert_int_equal(d.nerrors, 5);
	assert_int_equal(d.n, 5);
	assert_int_equal(d.msgs[0].line, 2);
	assert_int_equal(d.msgs[1].line, 3);
	assert_int_equal(d.msgs[2].line, 6);
	assert_int_equal(d.msgs[3].line, 7);
	assert_int_equal(d.msgs[4].line, 8);
	policy_diag_free(&d);
	/* diag may be NULL. */
	assert_int_equal(policy_parse(text, strlen(text), &p, NULL), -EINVAL);
}

static void test_too_many_messages(void **state)
{
	size_t n = POLICY_MAX_MSGS + 50, len = 0;
	char *text = malloc(n * 8 + 8);
	struct policy *p;
	struct policy_diag d = {0};

	(void)state;
	assert_non_null(text);
	len += (size_t)sprintf(text, "[/a]\nlist = x\n");
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(text + len, "bad\n");
	assert_int_equal(policy_parse(text, len, &p, &d), -EINVAL);
	assert_int_equal(d.nerrors, n);
	assert_int_equal(d.n, POLICY_MAX_MSGS);
	assert_int_equal(d.dropped, 50);
	policy_diag_free(&d);
	free(text);
}

static void test_warnings(void **state)
{
	struct policy_diag d = {0};
	struct policy *p;

	(void)state;
	p = parse_ok("[/a]\nread = bob bob\n[/b]\n", &d);
	assert_int_equal(d.nerrors, 0);
	assert_int_equal(d.nwarnings, 2);
	assert_int_equal(d.msgs[0].line, 2);
	assert_true(d.msgs[0].warning);
	assert_string_equal(d.msgs[0].text, "'bob' is listed twice in 'read'");
	assert_int_equal(d.msgs[1].line, 3);
	assert_string_equal(d.msgs[1].text, "section [/b] sets nothing");
	assert_int_equal(policy_rule_at(p, 0)->acl[POLICY_READ].n, 1);
	policy_free(p);
	policy_diag_free(&d);

	p = parse_ok("# nothing but a comment\n", &d);
	assert_int_equal(d.n, 1);
	assert_int_equal(d.msgs[0].line, 0);
	assert_string_equal(d.msgs[0].text,
			    "the policy has no sections: everything is denied");
	assert_int_equal(policy_nrules(p), 0);
	assert_int_equal(policy_check(p, "/", 0, NULL, 0, POLICY_LIST, NULL), -EACCES);
	policy_free(p);
	policy_diag_free(&d);
}

static void test_syntax_accepted(void **state)
{
	struct policy *p;
	const struct policy_rule *r;

	(void)state;
	/* BOM, CRLF, ':' separator, inline ';' comment, '#' comment lines,
	 * indentation, spaces inside brackets, numeric principals. */
	p = parse_ok("\xEF\xBB\xBF# head\r\n"
		     "[ /customers/* ]   ; the customers\r\n"
		     "  read: @agents #1001 ; inline\r\n"
		     "purpose = calls;complaints\r\n"
		     "categories = contact details, recordings\r\n"
		     "list = @#104\r\n"
		     "write =\r\n",
		     NULL);
	assert_int_equal(policy_nrules(p), 1);
	r = policy_rule_at(p, 0);
	assert_string_equal(r->pattern, "/customers/*");
	assert_int_equal(r->line, 2);
	assert_int_equal(r->ncomp, 2);
	assert_false(r->comp[0].wild);
	assert_true(r->comp[1].wild);
	assert_int_equal(r->acl[POLICY_READ].n, 2);
	assert_string_equal(r->acl[POLICY_READ].who[0].name, "@agents");
	assert_string_equal(r->acl[POLICY_READ].who[1].name, "#1001");
	assert_int_equal(r->acl[POLICY_READ].who[1].line, 3);
	assert_true(r->acl[POLICY_READ].who[1].numeric);
	assert_int_equal(r->key_line[POLICY_READ], 3);
	assert_string_equal(r->purpose, "calls;complaints");
	assert_string_equal(r->categories, "contact details, recordings");
	assert_int_equal(r->key_line[POLICY_WRITE], 7);
	assert_int_equal(r->acl[POLICY_WRITE].n, 0);
	/* Numeric principals work before policy_resolve; names do not. */
	{
		gid_t g104 = 104, g101 = 101;

		assert_int_equal(
			policy_check(p, "/customers/x", 1001, NULL, 0, POLICY_READ, NULL),
			0);
		assert_int_equal(
			policy_check(p, "/customers/x", 1, &g104, 1, POLICY_LIST, NULL),
			0);
		assert_int_equal(
			policy_check(p, "/customers/x", 1, &g101, 1, POLICY_READ, NULL),
			-EACCES);
	}
	policy_free(p);
}

/* --- durations and rates -------------------------------------------------- */

static void test_durations(void **state)
{
	int64_t s = -1;
	char msg[POLICY_MSG_MAX], out[32];

	(void)state;
	assert_int_equal(policy_parse_duration("90d", &s, msg, sizeof(msg)), 0);
	assert_int_equal(s, 90 * 86400LL);
	assert_int_equal(policy_parse_duration("36h", &s, NULL, 0), 0);
	assert_int_equal(s, 36 * 3600LL);
	assert_int_equal(policy_parse_duration("2w", &s, NULL, 0), 0);
	assert_int_equal(s, 14 * 86400LL);
	assert_int_equal(policy_parse_duration("6y", &s, NULL, 0), 0);
	assert_int_equal(s, 6 * 31557600LL);
	assert_int_equal(policy_parse_duration("1y6mo", &s, NULL, 0), 0);
	assert_int_equal(s, 31557600LL + 6 * 2629800LL);
	assert_int_equal(policy_parse_duration("1y 6mo", &s, NULL, 0), 0);
	assert_int_equal(s, 31557600LL + 6 * 2629800LL);
	assert_int_equal(policy_parse_duration("1000y", &s, NULL, 0), 0);
	assert_int_equal(s, POLICY_MAX_RETAIN_S);
	/* edges */
	s = 7;
	assert_int_equal(policy_parse_duration("", &s, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "empty duration");
	assert_int_equal(s, 7);
	assert_int_equal(policy_parse_duration("999y2y", &s, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "duration '999y2y' is too long (at most 1000y)");
	assert_int_equal(
		policy_parse_duration("99999999999999999999999d", &s, msg, sizeof(msg)),
		-EINVAL);
	assert_string_equal(
		msg, "duration '99999999999999999999999d' is too long (at most 1000y)");
	assert_int_equal(policy_parse_duration("0y0d", &s, NULL, 0), -EINVAL);
	assert_int_equal(policy_parse_duration("6 y", &s, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "missing unit in duration '6 y' (use h, d, w, mo or y)");
	assert_int_equal(policy_parse_duration("1.5y", &s, NULL, 0), -EINVAL);
	assert_int_equal(policy_parse_duration("6M", &s, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg,
			    "ambiguous unit 'm' in duration '6M': write 'mo' for months");
	assert_int_equal(policy_parse_duration("6years", &s, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(
		msg, "unknown unit 'years' in duration '6years' (use h, d, w, mo or y)");
	/* formatting picks the largest exact unit */
	policy_format_duration(6 * 31557600LL, out, sizeof(out));
	assert_string_equal(out, "6y");
	policy_format_duration(90 * 86400LL, out, sizeof(out));
	assert_string_equal(out, "90d");
	policy_format_duration(14 * 86400LL, out, sizeof(out));
	assert_string_equal(out, "2w");
	policy_format_duration(36 * 3600LL, out, sizeof(out));
	assert_string_equal(out, "36h");
	policy_format_duration(100, out, sizeof(out));
	assert_string_equal(out, "100s");
}

static void test_rates(void **state)
{
	uint32_t c = 0, w = 0;
	char msg[POLICY_MSG_MAX];

	(void)state;
	assert_int_equal(policy_parse_rate("300/h", &c, &w, msg, sizeof(msg)), 0);
	assert_int_equal(c, 300);
	assert_int_equal(w, 3600);
	assert_int_equal(policy_parse_rate("10/m", &c, &w, NULL, 0), 0);
	assert_int_equal(w, 60);
	assert_int_equal(policy_parse_rate("10/min", &c, &w, NULL, 0), 0);
	assert_int_equal(w, 60);
	assert_int_equal(policy_parse_rate("5/s", &c, &w, NULL, 0), 0);
	assert_int_equal(w, 1);
	assert_int_equal(policy_parse_rate("1000/8h", &c, &w, NULL, 0), 0);
	assert_int_equal(c, 1000);
	assert_int_equal(w, 8 * 3600);
	assert_int_equal(policy_parse_rate("1000000000/366d", &c, &w, NULL, 0), 0);
	assert_int_equal(c, 1000000000U);
	assert_int_equal(w, 366 * 86400U);
	c = w = 9;
	assert_int_equal(policy_parse_rate("1000000001/h", &c, &w, NULL, 0), -EINVAL);
	assert_int_equal(policy_parse_rate("/h", &c, &w, NULL, 0), -EINVAL);
	assert_int_equal(policy_parse_rate("5/", &c, &w, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg, "bad read_rate '5/': expected COUNT/UNIT such as 300/h "
				 "(units s, m, h, d)");
	assert_int_equal(policy_parse_rate("5/h/", &c, &w, NULL, 0), -EINVAL);
	assert_int_equal(policy_parse_rate("5/hx", &c, &w, msg, sizeof(msg)), -EINVAL);
	assert_string_equal(msg,
			    "unknown unit 'hx' in read_rate '5/hx' (use s, m, h or d)");
	assert_int_equal(policy_parse_rate("5 / h", &c, &w, NULL, 0), -EINVAL);
	assert_int_equal(policy_parse_rate("5/99999999999999999999h", &c, &w, NULL, 0),
			 -EINVAL);
	assert_int_equal(c, 9);
	assert_int_equal(w, 9);
}

/* --- matching -------------------------------------------------------------- */

static const char *cc_policy = "[/]\n"                         /* 1 */
			       "list = @staff\n"               /* 2 */
			       "\n"                            /* 3 */
			       "[/customers]\n"                /* 4 */
			       "list = @agents\n"              /* 5 */
			       "create = @agents\n"            /* 6 */
			       "\n"                            /* 7 */
			       "[/customers/*]\n"              /* 8 */
			       "subject = yes\n"               /* 9 */
			       "list = @agents @supervisors\n" /* 10 */
			       "read = @agents\n"              /* 11 */
			       "write = @agents\n"             /* 12 */
			       "audit = reads\n"               /* 13 */
			       "read_rate = 300/h\n"           /* 14 */
			       "retain_min = 6y\n"             /* 15 */
			       "admin = @records\n"            /* 16 */
			       "\n"                            /* 17 */
			       "[/customers/vip]\n"            /* 18 */
			       "read = @supervisors\n"         /* 19 */
			       "\n"                            /* 20 */
			       "[/*/vip]\n"                    /* 21 */
			       "read = @qa\n"                  /* 22 */
			       "\n"                            /* 23 */
			       "[/customers/*/recordings]\n"   /* 24 */
			       "read = @qa\n"                  /* 25 */
			       "audit = none\n"                /* 26 */
			       "read_rate = none\n"            /* 27 */
			       "\n"                            /* 28 */
			       "[/customers/*/private]\n"      /* 29 */
			       "read =\n"                      /* 30 */
			       "[/a/*/*]\n"                    /* 31 */
			       "read = alice\n"                /* 32 */
			       "[/*/b/c]\n"                    /* 33 */
			       "read = bob\n"                  /* 34 */
			       "[/x/*]\n"                      /* 35 */
			       "read = alice\n"                /* 36 */
			       "[/*/y]\n"                      /* 37 */
			       "read = bob\n"                  /* 38 */
			       "[/a/*/c]\n"                    /* 39 */
			       "write = carol\n";              /* 40 */

static const gid_t alice_g[] = {100, 101}; /* staff, agents */
static const gid_t carol_g[] = {100, 103}; /* staff, qa */
static const gid_t super_g[] = {102};      /* supervisors */

static void test_precedence(void **state)
{
	struct policy *p = load(cc_policy);
	struct policy_decision why;

	(void)state;
	/* the customer rule */
	assert_int_equal(
		policy_check(p, "/customers/C1", 1001, alice_g, 2, POLICY_READ, &why), 0);
	assert_string_equal(why.rule->pattern, "/customers/*");
	assert_int_equal(why.line, 11);
	assert_string_equal(why.by->name, "@agents");
	/* a literal beats '*' at the same depth */
	assert_int_equal(
		policy_check(p, "/customers/vip", 1001, alice_g, 2, POLICY_READ, &why),
		-EACCES);
	assert_string_equal(why.rule->pattern, "/customers/vip");
	assert_int_equal(why.line, 19);
	assert_null(why.by);
	assert_int_equal(
		policy_check(p, "/customers/vip", 1002, super_g, 1, POLICY_READ, NULL),
		0);
	/* the all-literal pattern beats the one starting with '*';
	 * elsewhere the latter applies */
	assert_int_equal(
		policy_check(p, "/customers/vip", 1003, carol_g, 2, POLICY_READ, NULL),
		-EACCES);
	assert_int_equal(
		policy_check(p, "/other/vip", 1003, carol_g, 2, POLICY_READ, &why), 0);
	assert_string_equal(why.rule->pattern, "/*/vip");
	/* keys the winning rule does not set come from less specific rules:
	 * /customers/vip lists by the customers' wildcard rule */
	assert_int_equal(
		policy_check(p, "/customers/vip", 1001, alice_g, 2, POLICY_LIST, &why),
		0);
	assert_string_equal(why.rule->pattern, "/customers/*");
	/* a deeper rule beats its ancestor */
	assert_int_equal(policy_check(p, "/customers/C1/recordings", 1003, carol_g, 2,
				      POLICY_READ, &why),
			 0);
	assert_int_equal(why.line, 25);
	assert_int_equal(policy_check(p, "/customers/C1/recordings", 1001, alice_g, 2,
				      POLICY_READ, NULL),
			 -EACCES);
	/* more literal components beat a leftmost literal at equal depth */
	assert_int_equal(policy_check(p, "/a/b/c", 1002, NULL, 0, POLICY_READ, &why), 0);
	assert_string_equal(why.rule->pattern, "/*/b/c");
	assert_int_equal(policy_check(p, "/a/b/c", 1001, NULL, 0, POLICY_READ, NULL),
			 -EACCES);
	/* equal literal counts: the earlier literal wins */
	assert_int_equal(policy_check(p, "/x/y", 1001, NULL, 0, POLICY_READ, &why), 0);
	assert_string_equal(why.rule->pattern, "/x/*");
	assert_int_equal(policy_check(p, "/x/y", 1002, NULL, 0, POLICY_READ, NULL),
			 -EACCES);
	assert_int_equal(policy_check(p, "/q/y", 1002, NULL, 0, POLICY_READ, NULL), 0);
	/* an empty list is "nobody" and stops inheritance */
	assert_int_equal(policy_check(p, "/customers/C1/private", 1001, alice_g, 2,
				      POLICY_READ, &why),
			 -EACCES);
	assert_string_equal(why.rule->pattern, "/customers/*/private");
	assert_int_equal(why.line, 30);
	/* ...but other keys still inherit there */
	assert_int_equal(policy_check(p, "/customers/C1/private", 1001, alice_g, 2,
				      POLICY_WRITE, NULL),
			 0);
	policy_free(p);
}

static void test_inheritance_and_star(void **state)
{
	struct policy *p = load(cc_policy);
	struct policy_decision why;

	(void)state;
	/* inherited downward, any depth */
	assert_int_equal(policy_check(p, "/customers/C1/recordings/2024/05", 1003,
				      carol_g, 2, POLICY_READ, &why),
			 0);
	assert_string_equal(why.rule->pattern, "/customers/*/recordings");
	assert_int_equal(policy_check(p, "/customers/C1/notes/old", 1001, alice_g, 2,
				      POLICY_WRITE, &why),
			 0);
	assert_string_equal(why.rule->pattern, "/customers/*");
	/* '*' does not match the parent itself: /customers is governed by
	 * [/customers] (create) and [/] (no read) */
	assert_int_equal(
		policy_check(p, "/customers", 1001, alice_g, 2, POLICY_CREATE, &why), 0);
	assert_string_equal(why.rule->pattern, "/customers");
	assert_int_equal(
		policy_check(p, "/customers", 1001, alice_g, 2, POLICY_READ, &why),
		-EACCES);
	assert_null(why.rule);
	/* '*' matches exactly one component: the rule for /a/STAR/c does
	 * not cover /a/b1/b2/c, but does cover /a/b1/c */
	assert_int_equal(policy_check(p, "/a/b1/c", 1003, NULL, 0, POLICY_WRITE, NULL),
			 0);
	assert_int_equal(policy_check(p, "/a/b1/b2/c", 1003, NULL, 0, POLICY_WRITE, &why),
			 -EACCES);
	assert_null(why.rule);
	/* paths: repeated and trailing slashes, relative paths */
	assert_int_equal(
		policy_check(p, "//customers///C1/", 1001, alice_g, 2, POLICY_READ, NULL),
		0);
	assert_int_equal(
		policy_check(p, "customers/C1", 1001, alice_g, 2, POLICY_READ, NULL),
		-EINVAL);
	assert_int_equal(policy_check(p, "", 1001, alice_g, 2, POLICY_READ, NULL),
			 -EINVAL);
	assert_int_equal(policy_check(p, NULL, 1001, alice_g, 2, POLICY_READ, NULL),
			 -EINVAL);
	assert_int_equal(policy_check(p, "/", 1001, alice_g, 2, POLICY_NOPS, NULL),
			 -EINVAL);
	/* names are whole components */
	assert_int_equal(
		policy_check(p, "/customersX/C1", 1001, alice_g, 2, POLICY_READ, NULL),
		-EACCES);
	policy_free(p);
}

static void test_groups_default_root(void **state)
{
	struct policy *p = load(cc_policy);
	struct policy_decision why;
	const gid_t only_supp[] = {5000, 6000, 101}; /* agents as supplementary */
	const gid_t root_g[] = {0};

	(void)state;
	assert_int_equal(
		policy_check(p, "/customers/C9", 4242, only_supp, 3, POLICY_WRITE, &why),
		0);
	assert_string_equal(why.by->name, "@agents");
	/* no groups at all */
	assert_int_equal(
		policy_check(p, "/customers/C9", 1001, NULL, 0, POLICY_WRITE, NULL),
		-EACCES);
	/* default deny: nothing sets delete anywhere */
	assert_int_equal(
		policy_check(p, "/customers/C9", 1001, alice_g, 2, POLICY_DELETE, &why),
		-EACCES);
	assert_null(why.rule);
	assert_int_equal(why.line, 0);
	/* root is nobody special */
	for (int op = 0; op < POLICY_NOPS; op++) {
		assert_int_equal(policy_check(p, "/", 0, root_g, 1, op, NULL), -EACCES);
		assert_int_equal(policy_check(p, "/customers/C1", 0, root_g, 1, op, NULL),
				 -EACCES);
	}
	/* ...unless named */
	policy_free(p);
	p = load("[/]\nlist = root\n");
	assert_int_equal(policy_check(p, "/", 0, root_g, 1, POLICY_LIST, NULL), 0);
	assert_int_equal(policy_check(p, "/", 0, root_g, 1, POLICY_READ, NULL), -EACCES);
	/* a user and a group with the same number are different principals */
	policy_free(p);
	p = load("[/]\nread = #100\nlist = @#1001\n");
	assert_int_equal(policy_check(p, "/", 1001, alice_g, 2, POLICY_READ, NULL),
			 -EACCES);
	assert_int_equal(policy_check(p, "/", 100, NULL, 0, POLICY_READ, NULL), 0);
	assert_int_equal(policy_check(p, "/", 1001, NULL, 0, POLICY_LIST, NULL), -EACCES);
	/* traversal: any permission in the directory */
	policy_free(p);
	p = load(cc_policy);
	assert_int_equal(policy_check_traverse(p, "/customers", 1003, carol_g, 2),
			 -EACCES);
	assert_int_equal(policy_check_traverse(p, "/customers", 1001, alice_g, 2), 0);
	/* carol may only read in recordings; reading alone lets her reach names */
	assert_int_equal(
		policy_check_traverse(p, "/customers/C1/recordings", 1003, carol_g, 2),
		0);
	assert_int_equal(policy_check_traverse(p, "/customers/C1", 1003, carol_g, 2),
			 -EACCES);
	assert_int_equal(policy_check_traverse(p, "/customers/C1", 1002, super_g, 1), 0);
	assert_int_equal(policy_check_traverse(p, "/", 0, root_g, 1), -EACCES);
	assert_int_equal(policy_check_traverse(p, "rel", 1001, alice_g, 2), -EINVAL);
	/* no policy at all: deny */
	assert_int_equal(policy_check(NULL, "/", 1001, NULL, 0, POLICY_LIST, NULL),
			 -EACCES);
	policy_free(p);
}

static void test_effective_and_subjects(void **state)
{
	struct policy *p = load(cc_policy);
	struct policy_effective e;
	char root[64];

	(void)state;
	assert_int_equal(policy_effective(p, "/customers/C1", &e), 0);
	assert_true(e.subject_root);
	assert_int_equal(e.audit, POLICY_AUDIT_READS);
	assert_int_equal(e.rate_count, 300);
	assert_int_equal(e.rate_window_s, 3600);
	assert_int_equal(e.retain_min_s, 6 * 31557600LL);
	assert_int_equal(e.retain_max_s, 0);
	assert_false(e.worm);
	assert_string_equal(e.from[POLICY_K_AUDIT]->pattern, "/customers/*");
	assert_int_equal(policy_check_effective(&e, 1001, alice_g, 2, POLICY_READ, NULL),
			 0);
	assert_int_equal(policy_check_effective(&e, 1003, carol_g, 2, POLICY_READ, NULL),
			 -EACCES);
	assert_int_equal(policy_check_effective(&e, 1003, carol_g, 2, POLICY_NOPS, NULL),
			 -EINVAL);

	/* below a subject root: not a root; retention inherits; audit and
	 * rate overridden by the deeper rule */
	assert_int_equal(policy_effective(p, "/customers/C1/recordings/x", &e), 0);
	assert_false(e.subject_root);
	assert_null(e.from[POLICY_K_SUBJECT]);
	assert_int_equal(e.audit, POLICY_AUDIT_NONE);
	assert_int_equal(e.rate_count, 0);
	assert_int_equal(e.retain_min_s, 6 * 31557600LL);
	assert_string_equal(e.from[POLICY_READ]->pattern, "/customers/*/recordings");

	/* /customers/vip does not set subject; the wildcard rule marks it */
	assert_true(policy_is_subject_root(p, "/customers/vip"));
	assert_true(policy_is_subject_root(p, "/customers/C1/"));
	assert_false(policy_is_subject_root(p, "/customers"));
	assert_false(policy_is_subject_root(p, "/customers/C1/recordings"));
	assert_false(policy_is_subject_root(p, "relative"));

	/* defaults where nothing applies */
	assert_int_equal(policy_effective(p, "/elsewhere", &e), 0);
	assert_int_equal(e.audit, POLICY_AUDIT_OPENS);
	assert_int_equal(e.rate_count, 0);
	assert_false(e.subject_root);
	assert_int_equal(policy_effective(p, "nope", &e), -EINVAL);

	assert_int_equal(policy_subject_of(p, "//customers/C1//recordings/2024", root,
					   sizeof(root)),
			 13);
	assert_string_equal(root, "/customers/C1");
	assert_int_equal(policy_subject_of(p, "/customers/C1", root, sizeof(root)), 13);
	assert_int_equal(policy_subject_of(p, "/customers", root, sizeof(root)), -ENOENT);
	assert_int_equal(policy_subject_of(p, "/", root, sizeof(root)), -ENOENT);
	assert_int_equal(policy_subject_of(p, "/customers/C1", root, 13), -ENAMETOOLONG);
	assert_int_equal(policy_subject_of(p, "/customers/C1", root, 14), 13);
	assert_int_equal(policy_subject_of(p, "x", root, sizeof(root)), -EINVAL);

	assert_string_equal(policy_rule_for(p, "/customers/C1/recordings/a")->pattern,
			    "/customers/*/recordings");
	assert_string_equal(policy_rule_for(p, "/customers/C1/other")->pattern,
			    "/customers/*");
	assert_string_equal(policy_rule_for(p, "/zzz")->pattern, "/");
	assert_null(policy_rule_for(p, "zzz"));
	policy_free(p);

	/* subject = no on a pattern that overlaps no yes: fine, not a root */
	p = load("[/c/*]\nsubject = yes\n[/d/*]\nsubject = no\n[/c/*/x]\nsubject = no\n");
	assert_false(policy_is_subject_root(p, "/d/1"));
	assert_true(policy_is_subject_root(p, "/c/1"));
	assert_false(policy_is_subject_root(p, "/c/1/x"));
	assert_int_equal(policy_subject_of(p, "/c/1/x", root, sizeof(root)), 4);
	assert_string_equal(root, "/c/1");
	assert_int_equal(policy_subject_of(p, "/d/1/x", root, sizeof(root)), -ENOENT);
	policy_free(p);
}

/* retain_from and autocommit (added by the retention module): values,
 * errors, inheritance and defaults. */
static void test_retention_keys(void **state)
{
	struct policy *p;
	struct policy_effective e;

	(void)state;
	expect_error("[/a]\nretain_from = birth\n", 2,
		     "retain_from must be 'created', 'modified' or 'subject-inactive', "
		     "not 'birth'");
	expect_error("[/a]\nretain_from =\n", 2, "empty value for 'retain_from'");
	expect_error("[/a]\nautocommit = 5m\n", 2,
		     "autocommit: ambiguous unit 'm' in duration '5m': write 'mo' for "
		     "months");
	expect_error("[/a]\nautocommit = 0h\n", 2,
		     "autocommit: duration '0h' must be greater than zero (write 'none' "
		     "for no limit)");
	expect_error("[/a]\nretain_from = created\nretain_from = modified\n", 3,
		     "duplicate key 'retain_from' in [/a] (first at line 2)");

	p = load("[/a]\nretain_max = 1y\nretain_from = subject-inactive\n"
		 "worm = yes\nautocommit = 2h\n"
		 "[/a/b]\nretain_from = modified\nautocommit = none\n"
		 "[/c]\nretain_from = created\n");
	assert_int_equal(policy_effective(p, "/a/x", &e), 0);
	assert_int_equal(e.retain_from, POLICY_FROM_SUBJECT_INACTIVE);
	assert_int_equal(e.autocommit_s, 7200);
	assert_string_equal(e.from[POLICY_K_RETAIN_FROM]->pattern, "/a");
	assert_int_equal(policy_effective(p, "/a/b/c", &e), 0);
	assert_int_equal(e.retain_from, POLICY_FROM_MODIFIED);
	assert_int_equal(e.autocommit_s, 0);
	assert_non_null(e.from[POLICY_K_AUTOCOMMIT]);
	assert_int_equal(e.retain_max_s, 31557600LL);
	assert_int_equal(policy_effective(p, "/c", &e), 0);
	assert_int_equal(e.retain_from, POLICY_FROM_CREATED);
	assert_non_null(e.from[POLICY_K_RETAIN_FROM]);
	assert_int_equal(policy_effective(p, "/elsewhere", &e), 0);
	assert_int_equal(e.retain_from, POLICY_FROM_CREATED);
	assert_null(e.from[POLICY_K_RETAIN_FROM]);
	assert_int_equal(e.autocommit_s, 0);
	policy_free(p);

	assert_string_equal(policy_key_name(POLICY_K_RETAIN_FROM), "retain_from");
	assert_string_equal(policy_key_name(POLICY_K_AUTOCOMMIT), "autocommit");
	assert_string_equal(policy_key_name(POLICY_NKEYS), "?");
	assert_string_equal(policy_retain_from_name(POLICY_FROM_SUBJECT_INACTIVE),
			    "subject-inactive");
	assert_string_equal(policy_retain_from_name(POLICY_FROM_CREATED), "created");
	assert_string_equal(policy_retain_from_name((enum policy_retain_from)9), "?");
}

static void test_resolve(void **state)
{
	struct policy *p;
	struct policy_diag d = {0};
	int calls = 0;

	(void)state;
	p = parse_ok("[/]\nlist = alice @agents ghost @phantoms #7\n[/a]\nread = ghost\n",
		     NULL);
	/* before resolving, names match no one */
	assert_int_equal(policy_check(p, "/", 1001, NULL, 0, POLICY_LIST, NULL), -EACCES);
	assert_int_equal(policy_check(p, "/", 7, NULL, 0, POLICY_LIST, NULL), 0);
	assert_int_equal(policy_resolve(p, lookup_user, lookup_group, &calls, &d), 0);
	/* each distinct name is looked up once and warned about once, at its
	 * first line; #7 needs no lookup */
	assert_int_equal(calls, 2);
	assert_int_equal(d.nwarnings, 2);
	assert_int_equal(d.nerrors, 0);
	assert_int_equal(d.msgs[0].line, 2);
	assert_int_equal(d.msgs[1].line, 2);
	assert_true(
		(strcmp(d.msgs[0].text, "unknown user 'ghost' (and 1 more lines)") == 0 &&
		 strcmp(d.msgs[1].text, "unknown group 'phantoms'") == 0) ||
		(strcmp(d.msgs[1].text, "unknown user 'ghost' (and 1 more lines)") == 0 &&
		 strcmp(d.msgs[0].text, "unknown group 'phantoms'") == 0));
	assert_int_equal(policy_check(p, "/", 1001, NULL, 0, POLICY_LIST, NULL), 0);
	assert_int_equal(policy_check(p, "/", 9, alice_g, 2, POLICY_LIST, NULL), 0);
	assert_int_equal(policy_check(p, "/", 7, NULL, 0, POLICY_LIST, NULL), 0);
	assert_int_equal(policy_check(p, "/a", 1001, NULL, 0, POLICY_READ, NULL),
			 -EACCES);
	policy_diag_free(&d);
	/* resolving again does not duplicate ids */
	assert_int_equal(policy_resolve(p, lookup_user, lookup_group, NULL, NULL), 0);
	assert_int_equal(policy_rule_at(p, 1)->acl[POLICY_LIST].nuids, 2);
	assert_int_equal(policy_rule_at(p, 1)->acl[POLICY_LIST].ngids, 1);
	/* a failing lookup is an error, not a warning */
	assert_int_equal(policy_resolve(p, lookup_fails, lookup_group, NULL, &d), -EIO);
	assert_int_equal(d.nwarnings, 0);
	/* no callbacks: every name unknown */
	assert_int_equal(policy_resolve(p, NULL, NULL, NULL, &d), 0);
	assert_int_equal(d.nwarnings, 4); /* ghost, alice, @agents, @phantoms */
	assert_int_equal(policy_check(p, "/", 1001, NULL, 0, POLICY_LIST, NULL), -EACCES);
	assert_int_equal(policy_check(p, "/", 7, NULL, 0, POLICY_LIST, NULL), 0);
	policy_diag_free(&d);
	policy_free(p);
}

static void test_example_policy(void **state)
{
	FILE *f = fopen("policy/examples/contact-centre.ini", "r");
	char *buf = malloc(1 << 20);
	size_t n;
	struct policy *p = NULL;
	struct policy_diag d = {0};

	(void)state;
	if (!f) {
		free(buf);
		skip();
	}
	assert_non_null(buf);
	n = fread(buf, 1, (1 << 20) - 1, f);
	fclose(f);
	assert_int_equal(policy_parse(buf, n, &p, &d), 0);
	if (d.n)
		dump(&d);
	assert_int_equal(d.n, 0);
	assert_true(policy_nrules(p) > 3);
	policy_free(p);
	policy_diag_free(&d);
	free(buf);
}

/* 50 rules, resolved; prints the cost of one check. */
static void test_timing(void **state)
{
	char *text = malloc(64 * 1024);
	size_t len = 0;
	struct policy *p;
	struct timespec a, b;
	const int iters = 1000000;
	int allowed = 0;
	const gid_t g[] = {100, 5000, 5001, 5002, 5003, 103};

	(void)state;
	assert_non_null(text);
	len += (size_t)sprintf(text + len, "[/]\nlist = @staff\n");
	for (int i = 0; i < 24; i++)
		len += (size_t)sprintf(text + len,
				       "[/dept%d/*]\nread = @agents @qa bob\nwrite = "
				       "@agents\naudit = reads\n"
				       "[/dept%d/*/calls/*]\nread = @qa @supervisors "
				       "carol\n",
				       i, i);
	len += (size_t)sprintf(text + len,
			       "[/customers/*]\nread = @agents @supervisors\n");
	p = load(text);
	assert_int_equal(policy_nrules(p), 50);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < iters; i++)
		allowed += policy_check(p, "/dept23/C-10042/calls/2024/rec.wav", 1003, g,
					ARRAY_LEN(g), POLICY_READ, NULL) == 0;
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_int_equal(allowed, iters);
	printf("policy_check, 50 rules: %.1f ns/check\n",
	       ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / iters);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < iters; i++) {
		struct policy_effective e;

		allowed += policy_effective(p, "/customers/C-10042/x", &e) == 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("policy_effective, 50 rules: %.1f ns/call\n",
	       ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / iters);
	policy_free(p);
	free(text);
}

/* --- stored versions ------------------------------------------------------- */

struct sfx {
	char dir[64];
	char path[128];
	struct catalog *cat;
	struct keys_master *mk;
};

static int store_setup(void **state)
{
	struct sfx *f = calloc(1, sizeof(*f));

	if (!f || crypt_init() != 0)
		return -1;
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_policy") != 0)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, CATALOG_FILE);
	if (catalog_open(f->path, CATALOG_CREATE, &f->cat) != 0)
		return -1;
	if (keys_master_generate(&f->mk) != 0)
		return -1;
	*state = f;
	return 0;
}

static int store_teardown(void **state)
{
	struct sfx *f = *state;

	catalog_close(f->cat);
	keys_master_free(f->mk);
	if (unit_rm_rf(f->dir) != 0)
		return -1;
	free(f);
	return 0;
}

static void test_store_roundtrip(void **state)
{
	struct sfx *f = *state;
	struct catalog_policy cp;
	int64_t v = 0;

	assert_int_equal(policy_store_load(f->cat, f->mk, 0, &cp), -ENOENT);
	assert_int_equal(policy_store_save(f->cat, f->mk, "[/]\nlist = @staff\n", "alice",
					   1700000000000000LL, &v),
			 0);
	assert_int_equal(v, 1);
	assert_int_equal(policy_store_save(f->cat, f->mk, "[/]\nlist = @all\n", "bob",
					   1700000000000001LL, &v),
			 0);
	assert_int_equal(v, 2);
	assert_int_equal(policy_store_load(f->cat, f->mk, 0, &cp), 0);
	assert_int_equal(cp.version, 2);
	assert_string_equal(cp.text, "[/]\nlist = @all\n");
	assert_string_equal(cp.applied_by, "bob");
	assert_int_equal(cp.applied_us, 1700000000000001LL);
	catalog_policy_clear(&cp);
	assert_int_equal(policy_store_load(f->cat, f->mk, 1, &cp), 0);
	assert_string_equal(cp.applied_by, "alice");
	catalog_policy_clear(&cp);
	assert_int_equal(policy_store_load(f->cat, f->mk, 3, &cp), -ENOENT);
	/* bad arguments */
	assert_int_equal(policy_store_save(f->cat, f->mk, NULL, "x", 0, NULL), -EINVAL);
	assert_int_equal(policy_store_save(f->cat, f->mk, "x",
					   "a-name-far-too-long-for-the-applied-by-field-"
					   "of-sixty-four-bytes",
					   0, NULL),
			 -EINVAL);
}

static void test_store_tamper(void **state)
{
	struct sfx *f = *state;
	struct catalog_policy cp, forged;
	struct keys_master *other;
	uint8_t m1[CRYPT_MAC_BYTES], m2[CRYPT_MAC_BYTES];

	assert_int_equal(policy_store_save(f->cat, f->mk, "[/]\nlist = @staff\n", "alice",
					   1700000000000000LL, NULL),
			 0);
	assert_int_equal(policy_store_load(f->cat, f->mk, 1, &cp), 0);
	assert_int_equal(policy_store_verify(f->mk, &cp), 0);
	/* any field changed: refused */
	cp.text[3] = 'X';
	assert_int_equal(policy_store_verify(f->mk, &cp), -EBADMSG);
	cp.text[3] = '\n';
	cp.version = 2;
	assert_int_equal(policy_store_verify(f->mk, &cp), -EBADMSG);
	cp.version = 1;
	cp.applied_us++;
	assert_int_equal(policy_store_verify(f->mk, &cp), -EBADMSG);
	cp.applied_us--;
	strcpy(cp.applied_by, "mallory");
	assert_int_equal(policy_store_verify(f->mk, &cp), -EBADMSG);
	strcpy(cp.applied_by, "alice");
	assert_int_equal(policy_store_verify(f->mk, &cp), 0);
	/* another store's key: refused */
	assert_int_equal(keys_master_generate(&other), 0);
	assert_int_equal(policy_store_verify(other, &cp), -EBADMSG);
	assert_int_equal(policy_store_load(f->cat, other, 1, &forged), -EBADMSG);
	assert_null(forged.text);
	keys_master_free(other);
	/* length framing: ("ab", "c") and ("a", "bc") differ */
	{
		struct catalog_policy x, y;

		memset(&x, 0, sizeof(x));
		memset(&y, 0, sizeof(y));
		strcpy(x.applied_by, "ab");
		x.text = "c";
		strcpy(y.applied_by, "a");
		y.text = "bc";
		assert_int_equal(policy_store_mac(f->mk, &x, m1), 0);
		assert_int_equal(policy_store_mac(f->mk, &y, m2), 0);
		assert_memory_not_equal(m1, m2, sizeof(m1));
		x.text = NULL;
		assert_int_equal(policy_store_mac(f->mk, &x, m1), -EINVAL);
	}
	/* a row written into the database without the key (as someone
	 * editing custodian.db would): refused on load */
	memset(&forged, 0, sizeof(forged));
	forged.version = 2;
	forged.text = "[/]\nread = mallory\n";
	strcpy(forged.applied_by, "alice");
	forged.applied_us = 1700000000000001LL;
	memcpy(forged.mac, cp.mac, sizeof(forged.mac));
	assert_int_equal(catalog_policy_add(f->cat, &forged), 0);
	catalog_policy_clear(&cp);
	assert_int_equal(policy_store_load(f->cat, f->mk, 0, &cp), -EBADMSG);
	assert_null(cp.text);
	/* the older, genuine version still loads */
	assert_int_equal(policy_store_load(f->cat, f->mk, 1, &cp), 0);
	catalog_policy_clear(&cp);
	/* a new save after the forged one gets the next version, authentic */
	assert_int_equal(policy_store_save(f->cat, f->mk, "[/]\nlist = @staff\n", "alice",
					   1700000000000002LL, NULL),
			 0);
	assert_int_equal(policy_store_load(f->cat, f->mk, 0, &cp), 0);
	assert_int_equal(cp.version, 3);
	catalog_policy_clear(&cp);
}

static void test_store_readonly(void **state)
{
	struct sfx *f = *state;
	struct catalog *ro;

	assert_int_equal(catalog_open(f->path, CATALOG_RDONLY, &ro), 0);
	assert_int_not_equal(policy_store_save(ro, f->mk, "[/]\n", "alice", 1, NULL), 0);
	catalog_close(ro);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_err_syntax),
		cmocka_unit_test(test_err_patterns),
		cmocka_unit_test(test_err_principals),
		cmocka_unit_test(test_err_values),
		cmocka_unit_test(test_err_subjects),
		cmocka_unit_test(test_all_errors_collected),
		cmocka_unit_test(test_too_many_messages),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_syntax_accepted),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_rates),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_inheritance_and_star),
		cmocka_unit_test(test_groups_default_root),
		cmocka_unit_test(test_effective_and_subjects),
		cmocka_unit_test(test_retention_keys),
		cmocka_unit_test(test_resolve),
		cmocka_unit_test(test_example_policy),
		cmocka_unit_test(test_timing),
		cmocka_unit_test_setup_teardown(test_store_roundtrip, store_setup,
						store_teardown),
		cmocka_unit_test_setup_teardown(test_store_tamper, store_setup,
						store_teardown),
		cmocka_unit_test_setup_teardown(test_store_readonly, store_setup,
						store_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
