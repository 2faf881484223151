/*
 * cmd_policy.c — `custodian policy check|apply|show|explain`.
 *
 * Owns the administrator's side of the policy: reading a policy file,
 * printing every problem as FILE:LINE, checking user and group names
 * against this machine's user database (the only place NSS is used for
 * policy, so the engine stays pure), showing what an apply would change,
 * storing a version through policy_store, and explaining one user's rights
 * in one directory.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "clock.h"
#include "control.h"
#include "policy.h"
#include "policy_store.h"

#define VERB "policy"
#define MAX_POLICY_BYTES (4u << 20) /* a policy file is small text */
#define MAX_GROUPS 1024             /* groups of one user for explain */
#define DIFF_MAX_CELLS (16u << 20)  /* LCS table limit; bigger: whole replace */
#define DIFF_CONTEXT 2              /* lines of context around a change */

enum {
	OPT_YES = CLI_OPT_FIRST_FREE,
	OPT_DRY_RUN,
	OPT_VERSION,
	OPT_JSON,
	OPT_FILE,
};

static const struct option longopts[] = {
	{"yes", no_argument, NULL, OPT_YES},
	{"dry-run", no_argument, NULL, OPT_DRY_RUN},
	{"version", required_argument, NULL, OPT_VERSION},
	{"json", no_argument, NULL, OPT_JSON},
	{"file", required_argument, NULL, OPT_FILE},
	{"help", no_argument, NULL, 'h'},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("usage: custodian policy check FILE\n"
	      "       custodian policy apply STORE FILE [--yes] [--dry-run] [unlock]\n"
	      "       custodian policy show STORE [--version N] [--json] [unlock]\n"
	      "       custodian policy explain STORE DIR USER [unlock]\n"
	      "       custodian policy explain --file FILE DIR USER\n"
	      "\n"
	      "check    validate FILE: every error as FILE:LINE: reason, users and\n"
	      "         groups unknown on this machine as warnings; exit 1 on errors\n"
	      "apply    validate FILE, show the difference from the policy in force,\n"
	      "         ask, and store it as a new authenticated version; a running\n"
	      "         daemon is told at once (STORE/control.sock) and uses it for\n"
	      "         the next operation; exit 1 if it refuses it (it then keeps\n"
	      "         the policy it had)\n"
	      "show     print the policy in force (or version N) and who applied it\n"
	      "explain  what USER (name or number) may do in directory DIR (a path\n"
	      "         inside the mount) and which rule decided it\n"
	      "\n"
	      "  --yes          apply without asking\n"
	      "  --dry-run      show the difference only; store nothing\n"
	      "  --version N    show version N instead of the newest\n"
	      "  --json         show: print one JSON object\n"
	      "  --file FILE    explain: use a policy file instead of a store\n"
	      "  -h, --help     show this help\n"
	      "unlock options (apply, show, explain):\n" CLI_UNLOCK_HELP
	      "\nThe language is described in docs/policy.md.\n",
	      f);
}

/* --- files and diagnostics ------------------------------------------------- */

/* Reads a whole policy file, NUL-terminated; *len excludes the NUL. */
static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t n = 0;
	int rc = 0;

	*out = NULL;
	if (!f)
		return -errno;
	buf = malloc(MAX_POLICY_BYTES + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	n = fread(buf, 1, MAX_POLICY_BYTES + 1, f);
	if (ferror(f)) {
		rc = -EIO;
		goto out;
	}
	if (n > MAX_POLICY_BYTES) {
		rc = -EFBIG;
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return rc;
}

static void print_diag(const char *file, const struct policy_diag *d)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct policy_msg *m = &d->msgs[i];

		if (m->line)
			fprintf(stderr, "%s:%u: %s%s\n", file, m->line,
				m->warning ? "warning: " : "", m->text);
		else
			fprintf(stderr, "%s: %s%s\n", file, m->warning ? "warning: " : "",
				m->text);
	}
	if (d->dropped)
		fprintf(stderr, "%s: %zu more problems not shown\n", file, d->dropped);
}

static int nss_user(void *ctx, const char *name, uint32_t *id)
{
	struct passwd *pw;

	(void)ctx;
	errno = 0;
	pw = getpwnam(name);
	if (!pw)
		return errno == EIO || errno == ENOMEM || errno == EMFILE ? -errno
									  : -ENOENT;
	*id = pw->pw_uid;
	return 0;
}

static int nss_group(void *ctx, const char *name, uint32_t *id)
{
	struct group *gr;

	(void)ctx;
	errno = 0;
	gr = getgrnam(name);
	if (!gr)
		return errno == EIO || errno == ENOMEM || errno == EMFILE ? -errno
									  : -ENOENT;
	*id = gr->gr_gid;
	return 0;
}

/* Parses and resolves text, printing every message as FILE:LINE.  Returns
 * 0 with *out set, or -EINVAL (errors printed) / other -errno. */
static int load_text(const char *file, const char *text, size_t len, struct policy **out)
{
	struct policy_diag d = {0};
	int rc;

	*out = NULL;
	rc = policy_parse(text, len, out, &d);
	if (rc == 0) {
		rc = policy_resolve(*out, nss_user, nss_group, NULL, &d);
		if (rc) {
			cli_err(VERB, "%s: looking up users and groups: %s", file,
				strerror(-rc));
			policy_free(*out);
			*out = NULL;
		}
	}
	print_diag(file, &d);
	if (rc == -ENOMEM)
		cli_err(VERB, "%s: out of memory", file);
	policy_diag_free(&d);
	return rc;
}

/* --- check ------------------------------------------------------------------ */

static int do_check(const char *file)
{
	struct policy *p = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = read_file(file, &text, &len);
	if (rc) {
		cli_err(VERB, "%s: %s", file, strerror(-rc));
		return CLI_FAIL;
	}
	rc = load_text(file, text, len, &p);
	if (rc == 0)
		printf("%s: OK, %zu section%s\n", file, policy_nrules(p),
		       policy_nrules(p) == 1 ? "" : "s");
	policy_free(p);
	free(text);
	return rc ? CLI_FAIL : CLI_OK;
}

/* --- diff -------------------------------------------------------------------- */

/* Line spans of a text (lines without their '\n'). */
struct lines {
	size_t n;
	const char **s;
	size_t *len;
};

static int split_lines(const char *t, struct lines *l)
{
	size_t n = 0, cap = 0;

	memset(l, 0, sizeof(*l));
	for (const char *p = t; *p;) {
		const char *e = strchr(p, '\n');
		size_t ln = e ? (size_t)(e - p) : strlen(p);

		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			const char **ns = realloc(l->s, nc * sizeof(*ns));
			size_t *nl;

			if (!ns)
				return -ENOMEM;
			l->s = ns;
			nl = realloc(l->len, nc * sizeof(*nl));
			if (!nl)
				return -ENOMEM;
			l->len = nl;
			cap = nc;
		}
		l->s[n] = p;
		l->len[n] = ln;
		n++;
		p += ln + (e ? 1 : 0);
	}
	l->n = n;
	return 0;
}

static void lines_free(struct lines *l)
{
	free(l->s);
	free(l->len);
}

static bool line_eq(const struct lines *a, size_t i, const struct lines *b, size_t j)
{
	return a->len[i] == b->len[j] && memcmp(a->s[i], b->s[j], a->len[i]) == 0;
}

/* One line of the edit script. */
struct edit {
	char op;  /* ' ', '-', '+' */
	size_t a; /* line index in old (' ', '-') */
	size_t b; /* line index in new (' ', '+') */
};

/* Prints a unified-style line diff of old -> new with a little context.
 * Uses an LCS table; texts too large for it are shown as a whole
 * replacement. */
static int print_diff(const char *oldt, const char *newt)
{
	struct lines a, b;
	uint32_t *t = NULL;
	struct edit *ed = NULL;
	size_t ne = 0, i, j;
	int rc;

	rc = split_lines(oldt, &a);
	if (rc == 0)
		rc = split_lines(newt, &b);
	if (rc)
		goto out;
	ed = malloc((a.n + b.n + 1) * sizeof(*ed));
	if (!ed) {
		rc = -ENOMEM;
		goto out;
	}
	if ((a.n + 1) * (b.n + 1) <= DIFF_MAX_CELLS)
		t = calloc((a.n + 1) * (b.n + 1), sizeof(*t));
	if (t) {
		/* t[i][j] = LCS length of a[i..] and b[j..] */
		for (i = a.n; i-- > 0;)
			for (j = b.n; j-- > 0;)
				t[i * (b.n + 1) + j] =
					line_eq(&a, i, &b, j)
						? t[(i + 1) * (b.n + 1) + j + 1] + 1
					: t[(i + 1) * (b.n + 1) + j] >
							t[i * (b.n + 1) + j + 1]
						? t[(i + 1) * (b.n + 1) + j]
						: t[i * (b.n + 1) + j + 1];
		i = j = 0;
		while (i < a.n || j < b.n) {
			if (i < a.n && j < b.n && line_eq(&a, i, &b, j)) {
				ed[ne++] = (struct edit){' ', i++, j++};
			} else if (i < a.n &&
				   (j == b.n || t[(i + 1) * (b.n + 1) + j] >=
							t[i * (b.n + 1) + j + 1])) {
				ed[ne++] = (struct edit){'-', i++, j};
			} else {
				ed[ne++] = (struct edit){'+', i, j++};
			}
		}
	} else {
		for (i = 0; i < a.n; i++)
			ed[ne++] = (struct edit){'-', i, 0};
		for (j = 0; j < b.n; j++)
			ed[ne++] = (struct edit){'+', a.n, j};
	}
	/* Print changes with DIFF_CONTEXT lines around them. */
	for (size_t k = 0, last = SIZE_MAX; k < ne; k++) {
		bool near = false;

		for (size_t m = k >= DIFF_CONTEXT ? k - DIFF_CONTEXT : 0;
		     m < ne && m <= k + DIFF_CONTEXT; m++)
			near |= ed[m].op != ' ';
		if (!near)
			continue;
		if (last == SIZE_MAX || k != last + 1)
			printf("@@ old line %zu, new line %zu @@\n", ed[k].a + 1,
			       ed[k].b + 1);
		last = k;
		if (ed[k].op == '+')
			printf("+%.*s\n", (int)b.len[ed[k].b], b.s[ed[k].b]);
		else
			printf("%c%.*s\n", ed[k].op, (int)a.len[ed[k].a], a.s[ed[k].a]);
	}
out:
	free(t);
	free(ed);
	lines_free(&a);
	lines_free(&b);
	return rc;
}

/* --- apply ------------------------------------------------------------------- */

/* Who is applying: the login behind sudo if there is one. */
static void applied_by(char out[64])
{
	struct passwd *pw = getpwuid(getuid());
	const char *sudo = getenv("SUDO_USER");

	if (getuid() == 0 && sudo && *sudo)
		snprintf(out, 64, "%.40s (sudo)", sudo);
	else if (pw)
		snprintf(out, 64, "%.63s", pw->pw_name);
	else
		snprintf(out, 64, "#%u", (unsigned)getuid());
}

/* Tells a daemon serving the store to load the newest version now, so it
 * is in force for the next operation once apply returns.  No daemon: the
 * next mount loads it.  CLI_OK or CLI_FAIL (the daemon refused it and
 * keeps its old policy). */
static int notify_daemon(const char *storepath)
{
	char reply[CONTROL_MSG_MAX];
	int rc = control_request(storepath, "policy-reload", reply, sizeof(reply));

	if (rc == -ENOENT || rc == -ECONNREFUSED)
		return CLI_OK;
	if (rc == 0) {
		printf("running daemon: %s\n", reply);
		return CLI_OK;
	}
	cli_err(VERB, "%s: the running daemon did not take the new policy: %s", storepath,
		reply[0] ? reply : strerror(-rc));
	return CLI_FAIL;
}

static int do_apply(const char *storepath, const char *file, bool yes, bool dry_run,
		    const struct cli_unlock *how)
{
	struct policy *p = NULL;
	struct store *st = NULL;
	struct catalog_policy cur;
	char *text = NULL, who[64], when[CLI_TIME_MAX];
	size_t len = 0;
	int64_t version = 0;
	int rc, ret = CLI_FAIL;

	memset(&cur, 0, sizeof(cur));
	rc = read_file(file, &text, &len);
	if (rc) {
		cli_err(VERB, "%s: %s", file, strerror(-rc));
		goto out;
	}
	if (load_text(file, text, len, &p)) {
		cli_err(VERB, "%s: not applied: the policy does not validate", file);
		goto out;
	}
	if (cli_open_unlocked(VERB, storepath, dry_run, how, &st))
		goto out;
	rc = policy_store_load(st->cat, st->mk, 0, &cur);
	if (rc == -EBADMSG) {
		fprintf(stderr,
			"custodian: policy: warning: the stored policy in force fails "
			"authentication (changed outside custodian); it is replaced\n");
	} else if (rc && rc != -ENOENT) {
		cli_err(VERB, "%s: reading the policy in force: %s", storepath,
			strerror(-rc));
		goto out;
	}
	if (cur.text && strcmp(cur.text, text) == 0) {
		printf("policy unchanged: version %" PRId64 " is already this text\n",
		       cur.version);
		/* A daemon that missed the last notice catches up. */
		ret = dry_run ? CLI_OK : notify_daemon(storepath);
		goto out;
	}
	if (cur.text) {
		cli_time_iso(cur.applied_us, when);
		printf("--- version %" PRId64 " (applied by %s at %s)\n+++ %s\n",
		       cur.version, cur.applied_by, when, file);
	} else {
		printf("--- (%s)\n+++ %s\n",
		       rc == -EBADMSG ? "stored policy fails authentication"
				      : "no policy: mode bits alone",
		       file);
	}
	if (print_diff(cur.text ? cur.text : "", text)) {
		cli_err(VERB, "out of memory");
		goto out;
	}
	if (dry_run) {
		printf("dry run: nothing stored\n");
		ret = CLI_OK;
		goto out;
	}
	if (!yes && !isatty(STDIN_FILENO)) {
		cli_err(VERB, "not applied: not a terminal, use --yes to apply");
		goto out;
	}
	if (!yes && !cli_confirm("Apply this policy?")) {
		printf("not applied\n");
		goto out;
	}
	applied_by(who);
	rc = policy_store_save(st->cat, st->mk, text, who, clock_now_us(), &version);
	if (rc == -EEXIST) {
		cli_err(VERB,
			"%s: another policy was applied meanwhile; nothing stored, "
			"run apply again",
			storepath);
		goto out;
	}
	if (rc) {
		cli_err(VERB, "%s: storing the policy: %s", storepath, strerror(-rc));
		goto out;
	}
	printf("applied policy version %" PRId64 " (%zu sections)\n", version,
	       policy_nrules(p));
	/* Recorded before the daemon is told (it records its reload too). */
	{
		char detail[96];

		snprintf(detail, sizeof(detail),
			 "apply: version %" PRId64 " (%zu sections)", version,
			 policy_nrules(p));
		if (cli_audit_admin(VERB, st, AUDIT_OP_POLICY, 0, detail, NULL) < 0)
			goto out;
	}
	ret = notify_daemon(storepath);
out:
	catalog_policy_clear(&cur);
	store_close(st);
	policy_free(p);
	free(text);
	return ret;
}

/* --- show -------------------------------------------------------------------- */

static int load_stored(const char *storepath, int64_t version,
		       const struct cli_unlock *how, struct catalog_policy *cp)
{
	struct store *st = NULL;
	int rc;

	if (cli_open_unlocked(VERB, storepath, true, how, &st))
		return -EACCES;
	rc = policy_store_load(st->cat, st->mk, version, cp);
	if (rc == -ENOENT && version)
		cli_err(VERB, "%s: no policy version %" PRId64, storepath, version);
	else if (rc == -ENOENT)
		cli_err(VERB, "%s: no policy applied (the store runs on mode bits alone)",
			storepath);
	else if (rc == -EBADMSG)
		cli_err(VERB,
			"%s: policy version %s fails authentication: it was changed "
			"outside custodian",
			storepath, version ? "requested" : "in force");
	else if (rc)
		cli_err(VERB, "%s: %s", storepath, strerror(-rc));
	store_close(st);
	return rc;
}

static int do_show(const char *storepath, int64_t version, bool json,
		   const struct cli_unlock *how)
{
	struct catalog_policy cp;
	char when[CLI_TIME_MAX];

	memset(&cp, 0, sizeof(cp));
	if (load_stored(storepath, version, how, &cp))
		return CLI_FAIL;
	cli_time_iso(cp.applied_us, when);
	if (json) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "version", json_object_new_int64(cp.version));
		json_object_object_add(o, "applied_by",
				       json_object_new_string(cp.applied_by));
		json_object_object_add(o, "applied_us",
				       json_object_new_int64(cp.applied_us));
		json_object_object_add(o, "applied_at", json_object_new_string(when));
		json_object_object_add(o, "text", json_object_new_string(cp.text));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
	} else {
		printf("# policy version %" PRId64 ", applied by %s at %s\n", cp.version,
		       cp.applied_by, when);
		fputs(cp.text, stdout);
		if (*cp.text && cp.text[strlen(cp.text) - 1] != '\n')
			putchar('\n');
	}
	catalog_policy_clear(&cp);
	return CLI_OK;
}

/* --- explain ------------------------------------------------------------------ */

static const char *op_verbs[POLICY_NOPS] = {
	"list names",     "read files",     "write files",
	"create entries", "delete entries", "administer",
};

/* A rate as the language writes it: 300/h, 1000/8h, 10/m. */
static void format_rate(uint32_t count, uint32_t window, char *out, size_t cap)
{
	static const struct {
		const char *name;
		uint32_t secs;
	} u[] = {{"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}};

	for (size_t i = 0; i < ARRAY_LEN(u); i++) {
		if (window % u[i].secs)
			continue;
		if (window == u[i].secs)
			snprintf(out, cap, "%u/%s", count, u[i].name);
		else
			snprintf(out, cap, "%u/%u%s", count, window / u[i].secs,
				 u[i].name);
		return;
	}
}

static void print_setting(const struct policy_effective *e, int k, const char *value)
{
	const struct policy_rule *r = e->from[k];

	if (r)
		printf("  %-11s %s  ([%s] line %u)\n", policy_key_name(k), value,
		       r->pattern, r->key_line[k]);
	else
		printf("  %-11s %s  (default)\n", policy_key_name(k), value);
}

static int do_explain(const char *storepath, const char *file, const char *dir,
		      const char *user, const struct cli_unlock *how)
{
	struct catalog_policy cp;
	struct policy *p = NULL;
	struct passwd *pw;
	struct policy_effective e;
	gid_t groups[MAX_GROUPS];
	int ngroups = MAX_GROUPS, ret = CLI_FAIL;
	char *text = NULL, root[4096], buf[64], uname[256];
	size_t len = 0;
	uid_t uid;
	char *end;

	memset(&cp, 0, sizeof(cp));
	errno = 0;
	pw = getpwnam(user);
	if (!pw) {
		unsigned long v = strtoul(user, &end, 10);

		if (*user && !*end && v < UINT32_MAX)
			pw = getpwuid((uid_t)v);
	}
	if (!pw) {
		cli_err(VERB, "no such user '%s' on this machine", user);
		goto out;
	}
	/* Later NSS calls reuse getpwnam's buffer: keep what we need. */
	uid = pw->pw_uid;
	snprintf(uname, sizeof(uname), "%s", pw->pw_name);
	if (getgrouplist(uname, pw->pw_gid, groups, &ngroups) < 0) {
		cli_err(VERB, "%s is in more than %d groups", uname, MAX_GROUPS);
		goto out;
	}
	if (dir[0] != '/') {
		cli_err(VERB, "DIR must be an absolute path inside the mount, e.g. "
			      "/customers/C-1");
		goto out;
	}
	if (file) {
		int rc = read_file(file, &text, &len);

		if (rc) {
			cli_err(VERB, "%s: %s", file, strerror(-rc));
			goto out;
		}
		if (load_text(file, text, len, &p))
			goto out;
		printf("policy file %s\n", file);
	} else {
		char when[CLI_TIME_MAX];

		if (load_stored(storepath, 0, how, &cp))
			goto out;
		if (load_text("stored policy", cp.text, strlen(cp.text), &p))
			goto out;
		cli_time_iso(cp.applied_us, when);
		printf("policy version %" PRId64 " (applied by %s at %s)\n", cp.version,
		       cp.applied_by, when);
	}
	printf("user %s (uid %u), groups:", uname, (unsigned)uid);
	for (int i = 0; i < ngroups; i++) {
		struct group *gr = getgrgid(groups[i]);

		printf(" %s(%u)", gr ? gr->gr_name : "?", (unsigned)groups[i]);
	}
	printf("\ndirectory %s\n", dir);
	if (policy_subject_of(p, dir, root, sizeof(root)) >= 0)
		printf("  in subject %s%s\n", root,
		       policy_is_subject_root(p, dir) ? " (this is the subject root)"
						      : "");
	for (int op = 0; op < POLICY_NOPS; op++) {
		struct policy_decision why;
		int rc = policy_check(p, dir, uid, groups, (size_t)ngroups, op, &why);

		printf("  %-7s %-8s ", policy_key_name(op), rc ? "DENIED" : "allowed");
		if (!why.rule)
			printf("no rule sets '%s' here (default deny)\n",
			       policy_key_name(op));
		else if (rc)
			printf("[%s] line %u does not let this user %s\n",
			       why.rule->pattern, why.line, op_verbs[op]);
		else
			printf("[%s] line %u grants it to %s\n", why.rule->pattern,
			       why.line, why.by ? why.by->name : "?");
	}
	if (policy_effective(p, dir, &e) == 0) {
		printf("settings:\n");
		if (e.retain_min_s)
			policy_format_duration(e.retain_min_s, buf, sizeof(buf));
		print_setting(&e, POLICY_K_RETAIN_MIN, e.retain_min_s ? buf : "none");
		if (e.retain_max_s)
			policy_format_duration(e.retain_max_s, buf, sizeof(buf));
		print_setting(&e, POLICY_K_RETAIN_MAX, e.retain_max_s ? buf : "none");
		print_setting(&e, POLICY_K_WORM, e.worm ? "yes" : "no");
		print_setting(&e, POLICY_K_AUDIT, policy_audit_name(e.audit));
		if (e.rate_count)
			format_rate(e.rate_count, e.rate_window_s, buf, sizeof(buf));
		print_setting(&e, POLICY_K_READ_RATE, e.rate_count ? buf : "unlimited");
		if (e.purpose)
			print_setting(&e, POLICY_K_PURPOSE, e.purpose);
		if (e.categories)
			print_setting(&e, POLICY_K_CATEGORIES, e.categories);
	}
	ret = CLI_OK;
out:
	catalog_policy_clear(&cp);
	policy_free(p);
	free(text);
	return ret;
}

/* --- dispatch ----------------------------------------------------------------- */

int cmd_policy(int argc, char **argv)
{
	struct cli_unlock how = {0};
	bool yes = false, dry_run = false, json = false;
	const char *file = NULL, *sub;
	uint64_t version = 0;
	char **pos;
	int npos, opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, opt, optarg))
			continue;
		switch (opt) {
		case OPT_YES:
			yes = true;
			break;
		case OPT_DRY_RUN:
			dry_run = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_FILE:
			file = optarg;
			break;
		case OPT_VERSION:
			if (cli_parse_u64(VERB, "version", optarg, 1, INT64_MAX,
					  &version))
				return CLI_USAGE;
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
	if (npos < 1) {
		usage(stderr);
		return CLI_USAGE;
	}
	sub = pos[0];
	if (strcmp(sub, "check") == 0 && npos == 2)
		return do_check(pos[1]);
	if (strcmp(sub, "apply") == 0 && npos == 3)
		return do_apply(pos[1], pos[2], yes, dry_run, &how);
	if (strcmp(sub, "show") == 0 && npos == 2)
		return do_show(pos[1], (int64_t)version, json, &how);
	if (strcmp(sub, "explain") == 0 && file && npos == 3)
		return do_explain(NULL, file, pos[1], pos[2], &how);
	if (strcmp(sub, "explain") == 0 && !file && npos == 4)
		return do_explain(pos[1], NULL, pos[2], pos[3], &how);
	cli_err(VERB, "unknown subcommand or wrong arguments: %s", sub);
	usage(stderr);
	return CLI_USAGE;
}
