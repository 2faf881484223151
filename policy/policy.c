/*
 * policy.c — parses policy text into compiled rules and answers questions
 * about directories.
 *
 * Parsing: inih splits `key = value` lines and strips comments; our own
 * line reader feeds it one whole line at a time, so we always know the
 * line number (the Debian build has no INI_HANDLER_LINENO), keep the full
 * section name (inih truncates it at 50 bytes), and see the lines inih
 * would only report as "first error at line N" (bad headers, lines without
 * '='), so every error is reported, not just the first.
 *
 * Matching: each pattern is compiled into components at parse time and the
 * rules are sorted most specific first, so a question is answered by the
 * first rule (in that order) that matches and sets the key asked about.
 */
#include <errno.h>
#include <ini.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

struct policy {
	size_t nrules;             /* rules in use */
	size_t cap;                /* allocated */
	struct policy_rule *rules; /* most specific first once parsed */
};

static const char *const key_names[POLICY_NKEYS] = {
	"list",    "read",       "write",       "create",     "delete", "admin",
	"subject", "retain_min", "retain_max",  "worm",       "audit",  "read_rate",
	"purpose", "categories", "retain_from", "autocommit",
};

static const char *const retain_from_names[] = {"created", "modified",
						"subject-inactive"};

static const char *const audit_names[] = {"none", "opens", "reads"};

const char *policy_key_name(int key)
{
	return key >= 0 && key < POLICY_NKEYS ? key_names[key] : "?";
}

const char *policy_audit_name(enum policy_audit a)
{
	return (unsigned)a < ARRAY_LEN(audit_names) ? audit_names[a] : "?";
}

const char *policy_retain_from_name(enum policy_retain_from f)
{
	return (unsigned)f < ARRAY_LEN(retain_from_names) ? retain_from_names[f] : "?";
}

/* --- diagnostics --------------------------------------------------------- */

void policy_diag_free(struct policy_diag *diag)
{
	if (!diag)
		return;
	free(diag->msgs);
	memset(diag, 0, sizeof(*diag));
}

static void __attribute__((format(printf, 4, 5)))
diag_add(struct policy_diag *diag, unsigned line, bool warning, const char *fmt, ...)
{
	va_list ap;
	struct policy_msg *m;

	if (!diag)
		return;
	if (warning)
		diag->nwarnings++;
	else
		diag->nerrors++;
	if (diag->n >= POLICY_MAX_MSGS) {
		diag->dropped++;
		return;
	}
	if (diag->n == diag->cap) {
		size_t ncap = diag->cap ? diag->cap * 2 : 16;
		struct policy_msg *nm = realloc(diag->msgs, ncap * sizeof(*nm));

		if (!nm) {
			diag->dropped++;
			return;
		}
		diag->msgs = nm;
		diag->cap = ncap;
	}
	m = &diag->msgs[diag->n++];
	m->line = line;
	m->warning = warning;
	va_start(ap, fmt);
	vsnprintf(m->text, sizeof(m->text), fmt, ap);
	va_end(ap);
}

/* Stable sort by line (insertion sort: lists are short and mostly sorted). */
static void diag_sort(struct policy_diag *diag)
{
	if (!diag)
		return;
	for (size_t i = 1; i < diag->n; i++) {
		struct policy_msg m = diag->msgs[i];
		size_t j = i;

		while (j > 0 && diag->msgs[j - 1].line > m.line) {
			diag->msgs[j] = diag->msgs[j - 1];
			j--;
		}
		diag->msgs[j] = m;
	}
}

/* --- freeing ------------------------------------------------------------- */

static void acl_clear(struct policy_acl *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->who[i].name);
	free(a->who);
	free(a->uids);
	free(a->gids);
	memset(a, 0, sizeof(*a));
}

static void rule_clear(struct policy_rule *r)
{
	for (int k = 0; k < POLICY_NOPS; k++)
		acl_clear(&r->acl[k]);
	free(r->pattern);
	free(r->comp);
	free(r->purpose);
	free(r->categories);
}

void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nrules; i++)
		rule_clear(&p->rules[i]);
	free(p->rules);
	free(p);
}

size_t policy_nrules(const struct policy *p)
{
	return p ? p->nrules : 0;
}

const struct policy_rule *policy_rule_at(const struct policy *p, size_t i)
{
	return p && i < p->nrules ? &p->rules[i] : NULL;
}

/* --- parser state -------------------------------------------------------- */

struct parse {
	const char *text;         /* whole input */
	size_t len, pos;          /* input length, next unread byte */
	unsigned lineno;          /* line last handed to inih */
	bool key_line;            /* that line is `key = value` for inih */
	bool in_section;          /* a [section] header has been seen */
	long cur;                 /* index of the current rule, -1 if the
				     header was invalid (its keys are skipped) */
	struct policy *p;         /* being built */
	struct policy_diag *diag; /* may be NULL */
	size_t nerrors;           /* errors found (diag may be NULL) */
	int err;                  /* -ENOMEM */
};

static void __attribute__((format(printf, 3, 4)))
perr(struct parse *ps, unsigned line, const char *fmt, ...)
{
	char buf[POLICY_MSG_MAX];
	va_list ap;

	ps->nerrors++;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	diag_add(ps->diag, line, false, "%s", buf);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Compiles a pattern into *r (pattern, comp, ncomp, nlit, litmask).
 * Returns false after reporting an error. */
static bool compile_pattern(struct parse *ps, const char *s, size_t len,
			    struct policy_rule *r)
{
	char *norm;
	size_t n = 0, ncomp = 0;

	if (len == 0) {
		perr(ps, ps->lineno, "empty directory pattern '[]'");
		return false;
	}
	if (s[0] != '/') {
		perr(ps, ps->lineno,
		     "directory pattern '%.*s' must be absolute (start with '/')",
		     (int)(len > 100 ? 100 : len), s);
		return false;
	}
	norm = malloc(len + 1);
	if (!norm) {
		ps->err = -ENOMEM;
		return false;
	}
	/* Collapse repeated slashes and drop a trailing one: "/a//b/" = "/a/b". */
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '/' && n > 0 && norm[n - 1] == '/')
			continue;
		norm[n++] = s[i];
	}
	if (n > 1 && norm[n - 1] == '/')
		n--;
	norm[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if (norm[i] == '/' && i + 1 < n)
			ncomp++;
	if (ncomp > POLICY_MAX_DEPTH) {
		perr(ps, ps->lineno,
		     "directory pattern is too deep (more than %d components)",
		     POLICY_MAX_DEPTH);
		free(norm);
		return false;
	}
	r->comp = calloc(ncomp ? ncomp : 1, sizeof(*r->comp));
	if (!r->comp) {
		free(norm);
		ps->err = -ENOMEM;
		return false;
	}
	r->pattern = norm;
	r->ncomp = ncomp;
	for (size_t i = 0, c = 0; c < ncomp; c++) {
		struct policy_comp *pc = &r->comp[c];
		size_t start = i + 1, end = start;

		while (end < n && norm[end] != '/')
			end++;
		pc->s = norm + start;
		pc->len = (uint32_t)(end - start);
		i = end;
		if (pc->len == 1 && pc->s[0] == '*') {
			pc->wild = true;
			continue;
		}
		if (memchr(pc->s, '*', pc->len)) {
			perr(ps, ps->lineno,
			     "'*' must be a whole path component in '%.*s' (it matches "
			     "exactly one name)",
			     (int)(n > 100 ? 100 : n), norm);
			return false;
		}
		if ((pc->len == 1 && pc->s[0] == '.') ||
		    (pc->len == 2 && pc->s[0] == '.' && pc->s[1] == '.')) {
			perr(ps, ps->lineno,
			     "'%.*s' is not allowed in a directory pattern", (int)pc->len,
			     pc->s);
			return false;
		}
		r->nlit++;
		r->litmask |= 1ULL << (63 - c);
	}
	return true;
}

/* Starts a section: the text between the brackets, trimmed. */
static void begin_section(struct parse *ps, const char *s, size_t len)
{
	struct policy *p = ps->p;
	struct policy_rule r;

	ps->in_section = true;
	ps->cur = -1;
	memset(&r, 0, sizeof(r));
	r.line = ps->lineno;
	if (!compile_pattern(ps, s, len, &r)) {
		rule_clear(&r);
		return;
	}
	for (size_t i = 0; i < p->nrules; i++) {
		if (strcmp(p->rules[i].pattern, r.pattern) == 0) {
			perr(ps, ps->lineno,
			     "duplicate section [%.100s] (first at line %u)", r.pattern,
			     p->rules[i].line);
			rule_clear(&r);
			return;
		}
	}
	if (p->nrules == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 8;
		struct policy_rule *nr = realloc(p->rules, ncap * sizeof(*nr));

		if (!nr) {
			rule_clear(&r);
			ps->err = -ENOMEM;
			return;
		}
		p->rules = nr;
		p->cap = ncap;
	}
	p->rules[p->nrules] = r;
	ps->cur = (long)p->nrules++;
}

/* Looks at a line before inih does, mirroring inih's own rules (comment
 * prefixes ';' '#', inline ';' after whitespace, '=' or ':' separators) so
 * that both agree on what the line is. */
static void classify_line(struct parse *ps, const char *l, size_t len)
{
	size_t a = 0, b = len;

	ps->key_line = false;
	if (ps->lineno == 1 && len >= 3 && memcmp(l, "\xEF\xBB\xBF", 3) == 0)
		a = 3;
	while (a < b && is_space(l[a]))
		a++;
	while (b > a && is_space(l[b - 1]))
		b--;
	if (a == b || l[a] == ';' || l[a] == '#')
		return;
	if (l[a] == '[') {
		size_t e = a + 1, s0, s1;

		while (e < b && l[e] != ']' && !(l[e] == ';' && is_space(l[e - 1])))
			e++;
		if (e >= b || l[e] != ']') {
			perr(ps, ps->lineno, "section header without closing ']'");
			ps->in_section = true;
			ps->cur = -1;
			return;
		}
		s0 = a + 1;
		s1 = e;
		while (s0 < s1 && is_space(l[s0]))
			s0++;
		while (s1 > s0 && is_space(l[s1 - 1]))
			s1--;
		for (size_t t = e + 1; t < b; t++) {
			if (is_space(l[t]))
				continue;
			if (l[t] == ';' || l[t] == '#')
				break;
			perr(ps, ps->lineno, "unexpected text after ']'");
			ps->in_section = true;
			ps->cur = -1;
			return;
		}
		begin_section(ps, l + s0, s1 - s0);
		return;
	}
	for (size_t t = a; t < b; t++) {
		if (l[t] == '=' || l[t] == ':') {
			ps->key_line = true;
			return;
		}
		if (l[t] == ';' && t > a && is_space(l[t - 1]))
			break;
	}
	perr(ps, ps->lineno,
	     "expected 'key = value', '[/directory/pattern]' or a comment");
}

/* inih's fgets: hands over exactly one line of our text. */
static char *read_line(char *str, int num, void *stream)
{
	struct parse *ps = stream;
	const char *l, *nl;
	size_t len;

	if (ps->pos >= ps->len || ps->err)
		return NULL;
	l = ps->text + ps->pos;
	nl = memchr(l, '\n', ps->len - ps->pos);
	len = nl ? (size_t)(nl - l) + 1 : ps->len - ps->pos;
	ps->pos += len;
	ps->lineno++;
	ps->key_line = false;
	if (memchr(l, '\0', len)) {
		perr(ps, ps->lineno, "NUL byte in policy text");
		str[0] = '\0';
		return str;
	}
	if (len > POLICY_MAX_LINE + 1 || num < 2 || len > (size_t)num - 1) {
		perr(ps, ps->lineno, "line too long (more than %d characters)",
		     POLICY_MAX_LINE);
		str[0] = '\0';
		return str;
	}
	memcpy(str, l, len);
	str[len] = '\0';
	classify_line(ps, l, len);
	return str;
}

/* --- values -------------------------------------------------------------- */

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* Parses "#N" digits into an id; false if not a valid id. */
static bool parse_id(const char *s, uint32_t *id)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
		if (v >= UINT32_MAX) /* (uid_t)-1 means "no id" */
			return false;
	}
	*id = (uint32_t)v;
	return true;
}

/* Checks a user or group name: letters, digits, '_', '.', '-', not
 * starting with '-', an optional final '$' (Samba machine accounts), at
 * most 32 characters (the Linux limit useradd enforces). */
static bool valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 32 || s[0] == '-')
		return false;
	if (s[n - 1] == '$')
		n--;
	for (size_t i = 0; i < n; i++)
		if (!name_char(s[i]))
			return false;
	return n > 0;
}

static int parse_acl(struct parse *ps, struct policy_acl *acl, const char *key,
		     const char *value)
{
	size_t ntok = 0;
	const char *s = value;
	bool ok = true;

	while (*s) {
		while (is_space(*s))
			s++;
		if (!*s)
			break;
		ntok++;
		while (*s && !is_space(*s))
			s++;
	}
	if (ntok == 0)
		return 0; /* "read =": nobody, and stops inheritance */
	acl->who = calloc(ntok, sizeof(*acl->who));
	acl->uids = calloc(ntok, sizeof(*acl->uids));
	acl->gids = calloc(ntok, sizeof(*acl->gids));
	if (!acl->who || !acl->uids || !acl->gids)
		return -ENOMEM;
	s = value;
	while (*s) {
		const char *t;
		size_t tl;
		char tok[80];
		struct policy_principal pr;
		const char *body;

		while (is_space(*s))
			s++;
		if (!*s)
			break;
		t = s;
		while (*s && !is_space(*s))
			s++;
		tl = (size_t)(s - t);
		if (tl >= sizeof(tok)) {
			perr(ps, ps->lineno, "principal '%.40s...' in '%s' is too long",
			     t, key);
			ok = false;
			continue;
		}
		memcpy(tok, t, tl);
		tok[tl] = '\0';
		memset(&pr, 0, sizeof(pr));
		pr.line = ps->lineno;
		body = tok;
		if (*body == '@') {
			pr.group = true;
			body++;
		}
		if (*body == '#') {
			pr.numeric = true;
			if (!parse_id(body + 1, &pr.id)) {
				perr(ps, ps->lineno,
				     "bad numeric %s id '%s' in '%s' (expected %s#NUMBER "
				     "below 4294967295)",
				     pr.group ? "group" : "user", tok, key,
				     pr.group ? "@" : "");
				ok = false;
				continue;
			}
			pr.resolved = true;
		} else if (!valid_name(body)) {
			perr(ps, ps->lineno,
			     "bad %s name '%s' in '%s' (principals are user, @group, "
			     "#uid "
			     "or @#gid)",
			     pr.group ? "group" : "user", tok, key);
			ok = false;
			continue;
		}
		{
			bool dup = false;

			for (size_t i = 0; i < acl->n; i++)
				if (strcmp(acl->who[i].name, tok) == 0)
					dup = true;
			if (dup) {
				diag_add(ps->diag, ps->lineno, true,
					 "'%s' is listed twice in '%s'", tok, key);
				continue;
			}
		}
		pr.name = strdup(tok);
		if (!pr.name)
			return -ENOMEM;
		acl->who[acl->n++] = pr;
		if (pr.resolved) {
			if (pr.group)
				acl->gids[acl->ngids++] = pr.id;
			else
				acl->uids[acl->nuids++] = pr.id;
		}
	}
	return ok ? 0 : -EINVAL;
}

static int parse_yesno(struct parse *ps, const char *key, const char *v, bool *out)
{
	if (strcmp(v, "yes") == 0) {
		*out = true;
		return 0;
	}
	if (strcmp(v, "no") == 0) {
		*out = false;
		return 0;
	}
	perr(ps, ps->lineno, "%s must be 'yes' or 'no', not '%.80s'", key, v);
	return -EINVAL;
}

static int key_lookup(const char *name)
{
	for (int k = 0; k < POLICY_NKEYS; k++)
		if (strcmp(key_names[k], name) == 0)
			return k;
	return -1;
}

/* inih's callback for every `key = value`. */
static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse *ps = user;
	struct policy_rule *r;
	char msg[POLICY_MSG_MAX];
	int k, rc = 0;

	(void)section; /* inih truncates it; we track our own */
	if (ps->err)
		return 1;
	if (!ps->key_line) {
		/* inih saw a key where we did not: never expected, but do not
		 * let a disagreement pass silently. */
		perr(ps, ps->lineno, "cannot parse this line");
		return 1;
	}
	ps->key_line = false;
	if (!ps->in_section) {
		perr(ps, ps->lineno,
		     "key '%.60s' before any [/directory/pattern] section", name);
		return 1;
	}
	if (ps->cur < 0)
		return 1; /* the header was bad and reported */
	r = &ps->p->rules[ps->cur];
	if (!*name) {
		perr(ps, ps->lineno, "missing key name before '='");
		return 1;
	}
	k = key_lookup(name);
	if (k < 0) {
		perr(ps, ps->lineno, "unknown key '%.60s'", name);
		return 1;
	}
	if (r->key_line[k]) {
		perr(ps, ps->lineno, "duplicate key '%s' in [%.100s] (first at line %u)",
		     name, r->pattern, r->key_line[k]);
		return 1;
	}
	if (k >= POLICY_NOPS && !*value) {
		perr(ps, ps->lineno, "empty value for '%s'", name);
		return 1;
	}
	switch (k) {
	case POLICY_K_SUBJECT:
		rc = parse_yesno(ps, name, value, &r->subject);
		if (rc == 0 && r->subject && r->ncomp == 0) {
			perr(ps, ps->lineno,
			     "the root directory cannot be a subject root");
			rc = -EINVAL;
		}
		break;
	case POLICY_K_WORM:
		rc = parse_yesno(ps, name, value, &r->worm);
		break;
	case POLICY_K_RETAIN_FROM:
		rc = -EINVAL;
		for (size_t i = 0; i < ARRAY_LEN(retain_from_names); i++) {
			if (strcmp(value, retain_from_names[i]) == 0) {
				r->retain_from = (enum policy_retain_from)i;
				rc = 0;
			}
		}
		if (rc)
			perr(ps, ps->lineno,
			     "retain_from must be 'created', 'modified' or "
			     "'subject-inactive', not '%.80s'",
			     value);
		break;
	case POLICY_K_RETAIN_MIN:
	case POLICY_K_RETAIN_MAX:
	case POLICY_K_AUTOCOMMIT: {
		int64_t *dst = k == POLICY_K_RETAIN_MIN   ? &r->retain_min_s
			       : k == POLICY_K_RETAIN_MAX ? &r->retain_max_s
							  : &r->autocommit_s;

		if (strcmp(value, "none") == 0) {
			*dst = 0;
			break;
		}
		rc = policy_parse_duration(value, dst, msg, sizeof(msg));
		if (rc)
			perr(ps, ps->lineno, "%s: %s", name, msg);
		break;
	}
	case POLICY_K_AUDIT: {
		rc = -EINVAL;
		for (size_t i = 0; i < ARRAY_LEN(audit_names); i++) {
			if (strcmp(value, audit_names[i]) == 0) {
				r->audit = (enum policy_audit)i;
				rc = 0;
			}
		}
		if (rc)
			perr(ps, ps->lineno,
			     "audit must be 'none', 'opens' or 'reads', not '%.80s'",
			     value);
		break;
	}
	case POLICY_K_READ_RATE:
		if (strcmp(value, "none") == 0) {
			r->rate_count = 0;
			r->rate_window_s = 0;
			break;
		}
		rc = policy_parse_rate(value, &r->rate_count, &r->rate_window_s, msg,
				       sizeof(msg));
		if (rc)
			perr(ps, ps->lineno, "%s", msg);
		break;
	case POLICY_K_PURPOSE:
	case POLICY_K_CATEGORIES: {
		char **dst = k == POLICY_K_PURPOSE ? &r->purpose : &r->categories;

		*dst = strdup(value);
		if (!*dst)
			rc = -ENOMEM;
		break;
	}
	default:
		rc = parse_acl(ps, &r->acl[k], name, value);
		break;
	}
	if (rc == -ENOMEM) {
		ps->err = -ENOMEM;
		return 0;
	}
	r->key_line[k] = ps->lineno;
	if (rc == 0 && k == POLICY_K_RETAIN_MAX && r->key_line[POLICY_K_RETAIN_MIN] &&
	    r->retain_min_s && r->retain_max_s && r->retain_min_s > r->retain_max_s)
		perr(ps, ps->lineno, "retain_max is shorter than retain_min (line %u)",
		     r->key_line[POLICY_K_RETAIN_MIN]);
	if (rc == 0 && k == POLICY_K_RETAIN_MIN && r->key_line[POLICY_K_RETAIN_MAX] &&
	    r->retain_min_s && r->retain_max_s && r->retain_min_s > r->retain_max_s)
		perr(ps, ps->lineno, "retain_min is longer than retain_max (line %u)",
		     r->key_line[POLICY_K_RETAIN_MAX]);
	return 1;
}

/* --- whole-policy checks -------------------------------------------------- */

/* Could some directory at depth a->ncomp match both a and the first
 * a->ncomp components of b? */
static bool overlap_prefix(const struct policy_rule *a, const struct policy_rule *b)
{
	if (a->ncomp > b->ncomp)
		return false;
	for (size_t i = 0; i < a->ncomp; i++) {
		const struct policy_comp *x = &a->comp[i], *y = &b->comp[i];

		if (x->wild || y->wild)
			continue;
		if (x->len != y->len || memcmp(x->s, y->s, x->len) != 0)
			return false;
	}
	return true;
}

/* Subject marks must agree wherever patterns overlap, and subject roots
 * may not nest (a subject's files are under one subject key). */
static void check_subjects(struct parse *ps)
{
	struct policy *p = ps->p;

	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *a = &p->rules[i];

		if (!a->key_line[POLICY_K_SUBJECT])
			continue;
		for (size_t j = 0; j < p->nrules; j++) {
			const struct policy_rule *b = &p->rules[j];

			if (i == j || !b->key_line[POLICY_K_SUBJECT] ||
			    !overlap_prefix(a, b))
				continue;
			if (a->ncomp == b->ncomp && a->subject && !b->subject)
				perr(ps, a->key_line[POLICY_K_SUBJECT],
				     "subject = yes on [%.80s] conflicts with subject = "
				     "no on "
				     "overlapping [%.80s] (line %u)",
				     a->pattern, b->pattern,
				     b->key_line[POLICY_K_SUBJECT]);
			else if (a->ncomp < b->ncomp && a->subject && b->subject)
				perr(ps, b->key_line[POLICY_K_SUBJECT],
				     "subject root [%.80s] would lie inside subject root "
				     "[%.80s] (line %u); subject roots cannot nest",
				     b->pattern, a->pattern,
				     a->key_line[POLICY_K_SUBJECT]);
		}
	}
}

/* Most specific first: deeper, then more literal components, then the
 * one whose literals come first.  Two distinct rules can only tie if they
 * can never match the same directory. */
static int rule_cmp(const void *x, const void *y)
{
	const struct policy_rule *a = x, *b = y;

	if (a->ncomp != b->ncomp)
		return a->ncomp > b->ncomp ? -1 : 1;
	if (a->nlit != b->nlit)
		return a->nlit > b->nlit ? -1 : 1;
	if (a->litmask != b->litmask)
		return a->litmask > b->litmask ? -1 : 1;
	return a->line < b->line ? -1 : a->line > b->line;
}

static pthread_once_t ini_once = PTHREAD_ONCE_INIT;

/* The Debian inih exposes its options as globals: one key per line
 * (indentation never continues a value), and room for our longest line. */
static void ini_setup(void)
{
	ini_allow_multiline = false;
	ini_max_line = POLICY_MAX_LINE + 3;
}

int policy_parse(const char *text, size_t len, struct policy **out,
		 struct policy_diag *diag)
{
	struct parse ps;
	int rc;

	*out = NULL;
	pthread_once(&ini_once, ini_setup);
	memset(&ps, 0, sizeof(ps));
	ps.text = text;
	ps.len = len;
	ps.cur = -1;
	ps.diag = diag;
	ps.p = calloc(1, sizeof(*ps.p));
	if (!ps.p)
		return -ENOMEM;
	rc = ini_parse_stream(read_line, &ps, on_key, &ps);
	if (ps.err) {
		rc = ps.err;
		goto out;
	}
	if (rc == -2) {
		rc = -ENOMEM;
		goto out;
	}
	if (rc > 0 && ps.nerrors == 0)
		perr(&ps, (unsigned)rc, "cannot parse this line");
	check_subjects(&ps);
	/* Only on a policy without errors: a section whose keys were all
	 * bad is not worth a second message. */
	for (size_t i = 0; ps.nerrors == 0 && i < ps.p->nrules; i++) {
		const struct policy_rule *r = &ps.p->rules[i];
		bool any = false;

		for (int k = 0; k < POLICY_NKEYS; k++)
			any |= r->key_line[k] != 0;
		if (!any)
			diag_add(diag, r->line, true, "section [%.100s] sets nothing",
				 r->pattern);
	}
	if (ps.nerrors == 0 && ps.p->nrules == 0)
		diag_add(diag, 0, true,
			 "the policy has no sections: everything is denied");
	if (ps.nerrors) {
		rc = -EINVAL;
		goto out;
	}
	if (ps.p->nrules > 1)
		qsort(ps.p->rules, ps.p->nrules, sizeof(*ps.p->rules), rule_cmp);
	*out = ps.p;
	ps.p = NULL;
	rc = 0;
out:
	diag_sort(diag);
	policy_free(ps.p);
	return rc;
}

/* --- resolving names ------------------------------------------------------ */

/* One distinct name met while resolving: looked up once, warned once. */
struct seen {
	const char *name; /* principal as written ("@agents", "bob") */
	int rc;           /* lookup result */
	uint32_t id;      /* when rc == 0 */
	unsigned first;   /* lowest line naming it */
	size_t uses;      /* how many keys name it */
};

int policy_resolve(struct policy *p, policy_lookup_fn user, policy_lookup_fn group,
		   void *ctx, struct policy_diag *diag)
{
	struct seen *seen = NULL;
	size_t nseen = 0, cap = 0;
	int rc = 0;

	for (size_t i = 0; i < p->nrules; i++) {
		for (int k = 0; k < POLICY_NOPS; k++) {
			struct policy_acl *a = &p->rules[i].acl[k];

			a->nuids = a->ngids = 0;
			for (size_t j = 0; j < a->n; j++) {
				struct policy_principal *pr = &a->who[j];
				struct seen *sn = NULL;

				for (size_t m = 0; !pr->numeric && m < nseen; m++)
					if (strcmp(seen[m].name, pr->name) == 0)
						sn = &seen[m];
				if (!pr->numeric && !sn) {
					policy_lookup_fn fn = pr->group ? group : user;

					if (nseen == cap) {
						size_t nc = cap ? cap * 2 : 32;
						struct seen *ns =
							realloc(seen, nc * sizeof(*ns));

						if (!ns) {
							rc = -ENOMEM;
							goto out;
						}
						seen = ns;
						cap = nc;
					}
					sn = &seen[nseen++];
					memset(sn, 0, sizeof(*sn));
					sn->name = pr->name;
					sn->first = pr->line;
					sn->rc = fn ? fn(ctx,
							 pr->name + (pr->group ? 1 : 0),
							 &sn->id)
						    : -ENOENT;
					if (sn->rc && sn->rc != -ENOENT) {
						rc = sn->rc;
						goto out;
					}
				}
				if (sn) {
					sn->uses++;
					if (pr->line < sn->first)
						sn->first = pr->line;
					pr->resolved = sn->rc == 0;
					pr->id = sn->id;
				}
				if (!pr->resolved)
					continue;
				if (pr->group)
					a->gids[a->ngids++] = pr->id;
				else
					a->uids[a->nuids++] = pr->id;
			}
		}
	}
	for (size_t m = 0; m < nseen; m++) {
		const struct seen *sn = &seen[m];
		bool g = sn->name[0] == '@';

		if (sn->rc == 0)
			continue;
		if (sn->uses > 1)
			diag_add(diag, sn->first, true,
				 "unknown %s '%s' (and %zu more lines)",
				 g ? "group" : "user", sn->name + g, sn->uses - 1);
		else
			diag_add(diag, sn->first, true, "unknown %s '%s'",
				 g ? "group" : "user", sn->name + g);
	}
out:
	free(seen);
	diag_sort(diag);
	return rc;
}

/* --- matching ------------------------------------------------------------- */

/* A directory path split into components, without copying. */
struct split {
	size_t n;                        /* components (capped) */
	const char *s[POLICY_MAX_DEPTH]; /* component starts */
	uint32_t len[POLICY_MAX_DEPTH];  /* component lengths */
};

/* Only the first POLICY_MAX_DEPTH components can matter: no pattern is
 * deeper, and deeper directories inherit from their ancestors. */
static int split_path(const char *path, struct split *sp)
{
	const char *s = path;

	if (!path || *path != '/')
		return -EINVAL;
	sp->n = 0;
	while (*s && sp->n < POLICY_MAX_DEPTH) {
		const char *e;

		while (*s == '/')
			s++;
		if (!*s)
			break;
		e = s;
		while (*e && *e != '/')
			e++;
		sp->s[sp->n] = s;
		sp->len[sp->n] = (uint32_t)(e - s);
		sp->n++;
		s = e;
	}
	return 0;
}

/* Does r match the first r->ncomp components of sp? */
static bool match_prefix(const struct policy_rule *r, const struct split *sp)
{
	if (r->ncomp > sp->n)
		return false;
	for (size_t i = 0; i < r->ncomp; i++) {
		const struct policy_comp *c = &r->comp[i];

		if (c->wild)
			continue;
		if (c->len != sp->len[i] || memcmp(c->s, sp->s[i], c->len) != 0)
			return false;
	}
	return true;
}

static int decide(const struct policy_rule *r, uid_t uid, const gid_t *gids, size_t ngids,
		  enum policy_op op, struct policy_decision *why)
{
	const struct policy_acl *a;

	if (why) {
		why->rule = r;
		why->line = r ? r->key_line[op] : 0;
		why->by = NULL;
	}
	if (!r)
		return -EACCES;
	a = &r->acl[op];
	for (size_t i = 0; i < a->nuids; i++) {
		if (a->uids[i] == (uint32_t)uid)
			goto allowed;
	}
	for (size_t i = 0; i < a->ngids; i++) {
		for (size_t j = 0; j < ngids; j++) {
			if (a->gids[i] == (uint32_t)gids[j])
				goto allowed;
		}
	}
	return -EACCES;
allowed:
	if (why) {
		/* Name the principal for `explain`; off the hot path (why set). */
		for (size_t i = 0; i < a->n && !why->by; i++) {
			const struct policy_principal *pr = &a->who[i];

			if (!pr->resolved)
				continue;
			if (!pr->group && pr->id == (uint32_t)uid)
				why->by = pr;
			for (size_t j = 0; pr->group && j < ngids; j++)
				if (pr->id == (uint32_t)gids[j])
					why->by = pr;
		}
	}
	return 0;
}

int policy_check(const struct policy *p, const char *dir, uid_t uid, const gid_t *gids,
		 size_t ngids, enum policy_op op, struct policy_decision *why)
{
	struct split sp;
	const struct policy_rule *found = NULL;

	if (why)
		memset(why, 0, sizeof(*why));
	if ((unsigned)op >= POLICY_NOPS || split_path(dir, &sp))
		return -EINVAL;
	for (size_t i = 0; p && i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		if (r->key_line[op] && match_prefix(r, &sp)) {
			found = r;
			break;
		}
	}
	return decide(found, uid, gids, ngids, op, why);
}

int policy_check_effective(const struct policy_effective *e, uid_t uid, const gid_t *gids,
			   size_t ngids, enum policy_op op, struct policy_decision *why)
{
	if (why)
		memset(why, 0, sizeof(*why));
	if ((unsigned)op >= POLICY_NOPS)
		return -EINVAL;
	return decide(e->from[op], uid, gids, ngids, op, why);
}

int policy_effective(const struct policy *p, const char *dir,
		     struct policy_effective *out)
{
	struct split sp;
	const struct policy_rule *r;
	size_t missing = POLICY_NKEYS;

	memset(out, 0, sizeof(*out));
	out->audit = POLICY_AUDIT_OPENS;
	if (split_path(dir, &sp))
		return -EINVAL;
	for (size_t i = 0; p && i < p->nrules && missing; i++) {
		r = &p->rules[i];
		if (!match_prefix(r, &sp))
			continue;
		for (int k = 0; k < POLICY_NKEYS; k++) {
			if (out->from[k] || !r->key_line[k])
				continue;
			/* The subject mark names the matching directories
			 * themselves, not their descendants. */
			if (k == POLICY_K_SUBJECT && r->ncomp != sp.n)
				continue;
			out->from[k] = r;
			missing--;
		}
	}
	if ((r = out->from[POLICY_K_SUBJECT]))
		out->subject_root = r->subject;
	if ((r = out->from[POLICY_K_WORM]))
		out->worm = r->worm;
	if ((r = out->from[POLICY_K_RETAIN_MIN]))
		out->retain_min_s = r->retain_min_s;
	if ((r = out->from[POLICY_K_RETAIN_MAX]))
		out->retain_max_s = r->retain_max_s;
	if ((r = out->from[POLICY_K_AUDIT]))
		out->audit = r->audit;
	if ((r = out->from[POLICY_K_READ_RATE])) {
		out->rate_count = r->rate_count;
		out->rate_window_s = r->rate_window_s;
	}
	if ((r = out->from[POLICY_K_PURPOSE]))
		out->purpose = r->purpose;
	if ((r = out->from[POLICY_K_CATEGORIES]))
		out->categories = r->categories;
	if ((r = out->from[POLICY_K_RETAIN_FROM]))
		out->retain_from = r->retain_from;
	if ((r = out->from[POLICY_K_AUTOCOMMIT]))
		out->autocommit_s = r->autocommit_s;
	return 0;
}

int policy_check_traverse(const struct policy *p, const char *dir, uid_t uid,
			  const gid_t *gids, size_t ngids)
{
	struct policy_effective e;
	int rc = policy_effective(p, dir, &e);

	if (rc)
		return rc;
	for (int op = 0; op < POLICY_NOPS; op++)
		if (decide(e.from[op], uid, gids, ngids, op, NULL) == 0)
			return 0;
	return -EACCES;
}

const struct policy_rule *policy_rule_for(const struct policy *p, const char *dir)
{
	struct split sp;

	if (!p || split_path(dir, &sp))
		return NULL;
	for (size_t i = 0; i < p->nrules; i++)
		if (match_prefix(&p->rules[i], &sp))
			return &p->rules[i];
	return NULL;
}

/* Is the prefix of sp with depth components a subject root? */
static bool subject_at(const struct policy *p, const struct split *sp, size_t depth)
{
	struct split pre = *sp;

	pre.n = depth;
	for (size_t i = 0; i < p->nrules; i++) {
		const struct policy_rule *r = &p->rules[i];

		if (r->ncomp == depth && r->key_line[POLICY_K_SUBJECT] &&
		    match_prefix(r, &pre))
			return r->subject;
	}
	return false;
}

bool policy_is_subject_root(const struct policy *p, const char *dir)
{
	struct split sp;

	if (!p || split_path(dir, &sp))
		return false;
	return subject_at(p, &sp, sp.n);
}

int policy_subject_of(const struct policy *p, const char *dir, char *root, size_t cap)
{
	struct split sp;

	if (split_path(dir, &sp))
		return -EINVAL;
	for (size_t d = 1; p && d <= sp.n; d++) {
		size_t need = 0, o = 0;

		if (!subject_at(p, &sp, d))
			continue;
		for (size_t i = 0; i < d; i++)
			need += 1 + sp.len[i];
		if (need + 1 > cap || need > INT32_MAX)
			return -ENAMETOOLONG;
		for (size_t i = 0; i < d; i++) {
			root[o++] = '/';
			memcpy(root + o, sp.s[i], sp.len[i]);
			o += sp.len[i];
		}
		root[o] = '\0';
		return (int)o;
	}
	return -ENOENT;
}
