/*
 * policy.h — the policy language: parse, validate, resolve principals and
 * answer "may uid/gids do OP in directory PATH, which rule said so, and which
 * subject/retention/audit/rate settings apply there".
 *
 * Pure C: no FUSE, no I/O, no NSS.  The text is parsed once (policy_parse),
 * user and group names are turned into ids once by the caller's lookup
 * functions (policy_resolve), and after that every question is answered
 * with integer and memcmp compares over patterns precompiled into component
 * arrays, without allocating: cheap enough for the daemon's hot path.  A
 * parsed policy is immutable, so any number of threads may query it.
 *
 * The language is documented in docs/policy.md.
 */
#ifndef CUSTODIAN_POLICY_H
#define CUSTODIAN_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errs.h"

#define POLICY_MAX_DEPTH 64  /* components in a pattern */
#define POLICY_MAX_LINE 4096 /* characters in one line of policy text */
#define POLICY_MAX_MSGS 500  /* diagnostics kept; more are only counted */
#define POLICY_MSG_MAX 240   /* bytes of one diagnostic's text */
#define POLICY_MAX_RETAIN_S (1000LL * 31557600LL) /* 1000y */

/* Permissions.  The values index policy_rule.acl and policy_rule.key_line. */
enum policy_op {
	POLICY_LIST,   /* see the names in the directory (readdir, lookup) */
	POLICY_READ,   /* open the directory's files for reading */
	POLICY_WRITE,  /* modify the directory's files (write, truncate, setattr) */
	POLICY_CREATE, /* make new entries in the directory */
	POLICY_DELETE, /* remove (or rename away) entries of the directory */
	POLICY_ADMIN,  /* policy/subject operations (restrict, hold, shred) */
	POLICY_NOPS
};

/* Every key a section may set, in the order docs/policy.md lists them;
 * the first POLICY_NOPS are the permissions. */
enum policy_key {
	POLICY_K_SUBJECT = POLICY_NOPS, /* subject = yes|no */
	POLICY_K_RETAIN_MIN,            /* retain_min = DURATION|none */
	POLICY_K_RETAIN_MAX,            /* retain_max = DURATION|none */
	POLICY_K_WORM,                  /* worm = yes|no */
	POLICY_K_AUDIT,                 /* audit = none|opens|reads */
	POLICY_K_READ_RATE,             /* read_rate = N/UNIT|none */
	POLICY_K_PURPOSE,               /* purpose = free text */
	POLICY_K_CATEGORIES,            /* categories = free text */
	POLICY_K_RETAIN_FROM, /* retain_from = created|modified|subject-inactive */
	POLICY_K_AUTOCOMMIT,  /* autocommit = DURATION|none (worm idle commit) */
	POLICY_NKEYS
};

/* What retain_max counts from (retention issue; docs/retention.md). */
enum policy_retain_from {
	POLICY_FROM_CREATED,          /* the record's birth in its header (default) */
	POLICY_FROM_MODIFIED,         /* the backing file's mtime (weaker: see docs) */
	POLICY_FROM_SUBJECT_INACTIVE, /* the subject's last write */
};

enum policy_audit {
	POLICY_AUDIT_NONE,  /* only changes, denials and admin events */
	POLICY_AUDIT_OPENS, /* plus every open for reading (the default) */
	POLICY_AUDIT_READS, /* plus bytes read per open */
};

/* One `user`, `@group`, `#uid` or `@#gid` in a permission list. */
struct policy_principal {
	char *name;    /* as written, e.g. "@agents", "#1000" */
	unsigned line; /* line of the key it appears in */
	bool group;    /* @group or @#gid */
	bool numeric;  /* #N / @#N: id known without lookup */
	bool resolved; /* id is valid (numeric, or found by policy_resolve) */
	uint32_t id;   /* uid or gid when resolved */
};

/* The principals of one permission key, and their resolved ids for the
 * hot path (unresolved names are left out of uids/gids: they match no
 * one). */
struct policy_acl {
	size_t n;                     /* principals as written */
	struct policy_principal *who; /* n principals */
	size_t nuids, ngids;          /* resolved ids */
	uint32_t *uids, *gids;        /* capacity n each */
};

/* One component of a compiled pattern. */
struct policy_comp {
	const char *s; /* points into policy_rule.pattern; not NUL-terminated */
	uint32_t len;  /* bytes */
	bool wild;     /* '*': matches any one name */
};

/* One section.  A key is set on the rule iff key_line[key] != 0. */
struct policy_rule {
	char *pattern;                       /* normalised, e.g. "/customers/ *" */
	unsigned line;                       /* line of the [section] header */
	unsigned key_line[POLICY_NKEYS];     /* line that set each key, 0 = unset */
	size_t ncomp;                        /* components ("/" has none) */
	struct policy_comp *comp;            /* ncomp components */
	unsigned nlit;                       /* literal (non-'*') components */
	uint64_t litmask;                    /* bit 63-i set iff component i literal */
	struct policy_acl acl[POLICY_NOPS];  /* permission lists */
	bool subject;                        /* subject = yes */
	bool worm;                           /* worm = yes */
	int64_t retain_min_s;                /* seconds; 0 = none */
	int64_t retain_max_s;                /* seconds; 0 = none */
	enum policy_audit audit;             /* audit level */
	uint32_t rate_count;                 /* reads allowed per window; 0 = unlimited */
	uint32_t rate_window_s;              /* window length in seconds */
	char *purpose;                       /* free text or NULL */
	char *categories;                    /* free text or NULL */
	enum policy_retain_from retain_from; /* retain_from (added: retention) */
	int64_t autocommit_s;                /* worm idle commit, seconds; 0 = none */
};

/* A parsed policy (opaque).  Rules are kept most specific first. */
struct policy;

/* One diagnostic: the caller prints "FILE:LINE: text" or
 * "FILE:LINE: warning: text" (line 0: no line, print "FILE: ..."). */
struct policy_msg {
	unsigned line;             /* 1-based, 0 = whole file */
	bool warning;              /* false = error */
	char text[POLICY_MSG_MAX]; /* reason, no file name, no newline */
};

/* Diagnostics collected by policy_parse and policy_resolve, sorted by
 * line.  Zero-initialise before first use; free with policy_diag_free. */
struct policy_diag {
	struct policy_msg *msgs; /* n messages (malloc'd) */
	size_t n, cap;           /* used / allocated */
	size_t nerrors;          /* errors seen (including dropped ones) */
	size_t nwarnings;        /* warnings seen (including dropped ones) */
	size_t dropped;          /* not kept: beyond POLICY_MAX_MSGS or no memory */
};
void policy_diag_free(struct policy_diag *diag);

/* Parses len bytes of policy text (need not be NUL-terminated; a NUL byte
 * is an error).  Collects every error and warning into diag (may be NULL).
 * 0 and *out set on success (warnings possible); -EINVAL if there was any
 * error (*out NULL); -ENOMEM. */
int policy_parse(const char *text, size_t len, struct policy **out,
		 struct policy_diag *diag) MUST_CHECK;

void policy_free(struct policy *p);

/* Looks up one user or group name: 0 and *id set, -ENOENT if there is no
 * such name, any other -errno if the lookup itself failed. */
typedef int (*policy_lookup_fn)(void *ctx, const char *name, uint32_t *id);

/* Turns the policy's user and group names into ids, once, at load time.
 * Unknown names are warnings in diag ("unknown user 'x'" at the key's line)
 * and match no one.  Numeric principals need no lookup.  Returns 0, or the
 * first lookup error other than -ENOENT (the policy must then not be
 * used).  May be called again (e.g. after the user database changed). */
int policy_resolve(struct policy *p, policy_lookup_fn user, policy_lookup_fn group,
		   void *ctx, struct policy_diag *diag) MUST_CHECK;

/* Why a check came out as it did. */
struct policy_decision {
	const struct policy_rule *rule;    /* deciding rule; NULL: no rule
					      sets this permission (default deny) */
	unsigned line;                     /* line of the deciding key, 0 if none */
	const struct policy_principal *by; /* principal that granted; NULL if denied */
};

/* May uid (with all its groups: primary and supplementary, in gids) do op
 * in directory `dir`?  `dir` is the absolute path, inside the mount, of the
 * directory the operation acts in: the directory listed (LIST), the
 * directory holding the file read/written/created/deleted (READ, WRITE,
 * CREATE, DELETE), the subject root (ADMIN).  Repeated and trailing slashes
 * are ignored.  0 = allowed, -EACCES = denied, -EINVAL = dir not absolute
 * (deny too).  why may be NULL.  Does not allocate. */
int policy_check(const struct policy *p, const char *dir, uid_t uid, const gid_t *gids,
		 size_t ngids, enum policy_op op, struct policy_decision *why);

/* May uid reach names in `dir` at all (lookup, getattr: the directory's
 * "search" right)?  True iff it holds at least one permission there; see
 * docs/policy.md, "Listings and lookups".  0 or -EACCES/-EINVAL. */
int policy_check_traverse(const struct policy *p, const char *dir, uid_t uid,
			  const gid_t *gids, size_t ngids);

/* Everything that applies in one directory, with inheritance resolved. */
struct policy_effective {
	const struct policy_rule *from[POLICY_NKEYS]; /* rule that supplied each key,
							 NULL = default */
	bool subject_root;                   /* this directory is a data-subject root */
	bool worm;                           /* default no */
	int64_t retain_min_s;                /* default 0 = none */
	int64_t retain_max_s;                /* default 0 = none */
	enum policy_audit audit;             /* default POLICY_AUDIT_OPENS */
	uint32_t rate_count;                 /* default 0 = unlimited */
	uint32_t rate_window_s;              /* seconds */
	const char *purpose;                 /* NULL if none */
	const char *categories;              /* NULL if none */
	enum policy_retain_from retain_from; /* default POLICY_FROM_CREATED */
	int64_t autocommit_s;                /* default 0 = none */
};

/* Fills *out for directory `dir` (as for policy_check).  0 or -EINVAL.
 * Does not allocate; pointers in *out live as long as the policy. */
int policy_effective(const struct policy *p, const char *dir,
		     struct policy_effective *out);

/* The permission decision for op given an effective view (saves a second
 * walk when the daemon already needs the audit level or rate). */
int policy_check_effective(const struct policy_effective *e, uid_t uid, const gid_t *gids,
			   size_t ngids, enum policy_op op, struct policy_decision *why);

/* The most specific rule matching dir or one of its ancestors (NULL if
 * none).  Its own fields only: use policy_effective for inherited values. */
const struct policy_rule *policy_rule_for(const struct policy *p, const char *dir);

/* Is dir itself a data-subject root (matched by a `subject = yes`
 * pattern)?  The mark does not inherit to descendants. */
bool policy_is_subject_root(const struct policy *p, const char *dir);

/* The subject root that dir is in or is (normalised, e.g. "/customers/C-1"),
 * written to root: its length, -ENOENT if dir is in no subject,
 * -ENAMETOOLONG if cap is too small, -EINVAL if dir is not absolute. */
int policy_subject_of(const struct policy *p, const char *dir, char *root, size_t cap);

/* Read access for tools (show, explain, the processing register). */
size_t policy_nrules(const struct policy *p);
const struct policy_rule *policy_rule_at(const struct policy *p, size_t i);

/* Names for messages: "list", "read", ..., "categories"; "none", "opens",
 * "reads". */
const char *policy_key_name(int key);
const char *policy_audit_name(enum policy_audit a);
/* "created", "modified", "subject-inactive" (added: retention). */
const char *policy_retain_from_name(enum policy_retain_from f);

/* Value parsers, exposed for tools and tests.  Durations: one or more
 * NUMBER UNIT terms, units h, d, w, mo, y (1y = 365.25d, 1mo = 1y/12),
 * e.g. "90d", "6y", "1y6mo"; result in seconds, > 0, <= 1000y.  Rates:
 * COUNT/[N]UNIT with UNIT s, m or min, h, d, e.g. "300/h", "1000/8h".
 * 0 or -EINVAL; msg (may be NULL) gets the reason. */
int policy_parse_duration(const char *s, int64_t *secs, char *msg, size_t cap);
int policy_parse_rate(const char *s, uint32_t *count, uint32_t *window_s, char *msg,
		      size_t cap);

/* Formats seconds as the largest exact unit ("6y", "90d", "36h", "100s"). */
void policy_format_duration(int64_t secs, char *out, size_t cap);

#endif
