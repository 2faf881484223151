/*
 * retention.h — how long records are kept: keep-until, write-once (WORM),
 * legal holds on directories, and the sweep that erases what is due.
 *
 * Retention works like a compliance-mode WORM store.  A record's keep-until
 * is fixed when it is created (birth + retain_min of the rule in force) and
 * written into its authenticated header, so touch/utimens cannot shorten
 * it; a later policy may extend it (the effective keep-until is the later
 * of the header's and birth + the current retain_min), never shorten it.
 * Time comes from the compliance clock (clock.h), never straight from the
 * system clock.  A legal hold (a subject's, fs/subjects.h, or a directory's,
 * kept here) beats everything.
 *
 * The daemon calls retention_keep_until at create, retention_check before
 * every destructive operation and retention_worm_commit on release; the
 * exact places are in docs/retention.md, "For the daemon".  The sweep
 * (retention_sweep) works on an unmounted store for now.  Every function
 * returns 0 or -errno unless it says otherwise.
 */
#ifndef CUSTODIAN_RETENTION_H
#define CUSTODIAN_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypt.h"
#include "errs.h"
#include "format.h"
#include "policy.h"

struct store;
struct audit;

#define RETENTION_REASON_MAX 1024     /* longest hold reason, with NUL */
#define RETENTION_PATH_MAX 4096       /* longest held path, with NUL */
#define RETENTION_ERASING_PREFIX ".E" /* backing name of a file being erased */

/* What an operation would do to an existing record. */
enum retention_op {
	RETENTION_UNLINK,      /* unlink; also a file replaced by rename-over */
	RETENTION_RENAME_AWAY, /* rename of the record itself (the source side) */
	RETENTION_TRUNCATE,    /* shrink: truncate/setattr size < size, O_TRUNC */
	RETENTION_OVERWRITE,   /* write into existing data (offset < size) */
	RETENTION_APPEND,      /* write at or past the end; grow by truncate */
	RETENTION_SETATTR,     /* chmod/chown/utimens: never changes keep-until */
};

/* birth_us + retain_min of e: the keep-until to write into a new record's
 * header (0 = none: no retain_min, or e NULL). */
int64_t retention_keep_until(const struct policy_effective *e, int64_t birth_us);

/* The keep-until in force for an existing record: the later of its
 * header's and birth + the current retain_min (never shorter). */
int64_t retention_effective_keep_until(const struct policy_effective *e,
				       const struct format_header *h);

/* May op happen to the record with header h at compliance time now_us?
 * 0, or -EPERM: destructive ops (UNLINK, RENAME_AWAY, TRUNCATE, OVERWRITE)
 * before the effective keep-until; any change to the data of a
 * WORM-committed file (TRUNCATE, OVERWRITE, APPEND) at any time.  A WORM
 * file may be deleted or renamed once keep-until has passed.  e may be
 * NULL (no policy).  -EINVAL for an unknown op. */
int retention_check(const struct policy_effective *e, const struct format_header *h,
		    int64_t now_us, enum retention_op op) MUST_CHECK;

/* What a legal hold forbids: 0, or -EPERM for UNLINK, RENAME_AWAY,
 * TRUNCATE and OVERWRITE when held. */
int retention_check_held(bool held, enum retention_op op) MUST_CHECK;

/* Should a file become write-once now?  True when e says worm and the
 * header is not yet committed, and either it was written since it was
 * opened and is being released (written = true), or e->autocommit_s is
 * set and the file has been idle (mtime_us) for that long. */
bool retention_worm_due(const struct policy_effective *e, const struct format_header *h,
			bool written, int64_t mtime_us, int64_t now_us);

/* Commits f: sets FORMAT_FLAG_WORM, keep_until = the effective keep-until
 * (never shorter), rewrites the header.  -EINVAL if f has no header. */
int retention_worm_commit(struct format_file *f,
			  const struct policy_effective *e) MUST_CHECK;

/* --- directory holds (catalogue table retention_holds) ------------------- */

/* Places (on) or lifts a hold on the directory `path` (absolute plaintext
 * path in the mount; normalised).  reason is required when placing (<
 * RETENTION_REASON_MAX).  Path and reason are sealed under a key derived
 * from the volume keyring; the row is found by a keyed hash of the path.
 * *changed (may be NULL) says whether anything changed. */
int retention_hold_set(struct store *st, const char *path, bool on, const char *reason,
		       int64_t now_us, bool *changed) MUST_CHECK;

/* Every hold: fn(path, reason, created_us, arg); non-zero from fn stops
 * and is returned.  -EBADMSG if a row was edited outside custodian. */
int retention_hold_list(struct store *st,
			int (*fn)(const char *path, const char *reason,
				  int64_t created_us, void *arg),
			void *arg) MUST_CHECK;

/* The holds, loaded once (for the daemon and the sweep; reload after a
 * change).  Free with retention_holds_free (NULL accepted). */
struct retention_holds;
int retention_holds_load(struct store *st, struct retention_holds **out) MUST_CHECK;
void retention_holds_free(struct retention_holds *h);
/* Is path or one of its ancestors held?  No allocation, no I/O. */
bool retention_holds_match(const struct retention_holds *h, const char *path);

/* 1 if path or an ancestor is under a directory hold, 0 if not. */
int retention_held(struct store *st, const char *path) MUST_CHECK;

/* --- scan and sweep -------------------------------------------------------- */

enum retention_kind {
	RETENTION_FILE,    /* one record */
	RETENTION_SUBJECT, /* a whole data subject */
};

enum retention_state {
	RETENTION_KEPT,       /* not due (no retain_max, or not yet) */
	RETENTION_DUE,        /* due now: erased by a sweep */
	RETENTION_HELD,       /* under a legal hold (subject or directory) */
	RETENTION_UNREADABLE, /* header or name does not authenticate: skipped */
	RETENTION_PENDING,    /* an erasure an earlier sweep began */
};

/* One file or subject as the scan sees it. */
struct retention_item {
	enum retention_kind kind;           /* file or subject */
	enum retention_state state;         /* see above */
	const char *path;                   /* plaintext path in the mount ("" unknown) */
	const struct policy_rule *rule;     /* most specific rule there, NULL = none */
	const struct policy_effective *eff; /* settings there */
	int64_t due_us;                     /* when it is (was) due, 0 = never */
	int64_t keep_until_us;              /* effective keep-until, 0 = none */
	int64_t birth_us;                   /* file: header birth; subject: created */
	uint64_t files;                     /* subject: records inside */
	uint64_t bytes;                     /* plaintext bytes (subject: all files) */
	bool in_subject;                    /* file inside a subject */
	bool with_subject;                  /* file erased by shredding its subject */
	bool held_by_subject;               /* HELD because of the subject's hold */
	int err;      /* UNREADABLE: why; after an erasure: result */
	bool erased;  /* the sweep erased it (or finished it) */
	bool resumed; /* finished an earlier sweep's erasure */
};

/* Totals of a scan or sweep. */
struct retention_stats {
	uint64_t files, files_due, files_held, files_unreadable;
	uint64_t subjects, subjects_due, subjects_held;
	uint64_t files_erased, subjects_shredded, resumed, bytes_erased;
	uint64_t errors;     /* erasures that failed (see the items) */
	int64_t next_due_us; /* earliest future due time, 0 = none */
};

/* Where a sweep is inside one file erasure (for the interruption tests). */
enum retention_stage {
	RETENTION_STAGE_RECORDED, /* audited and noted in retention_erased */
	RETENTION_STAGE_RENAMED,  /* renamed to .E<id>, name sidecar gone */
	RETENTION_STAGE_DONE,     /* overwritten and unlinked */
};

/* How to sweep. */
struct retention_sweep_opts {
	int64_t now_us;         /* compliance time (clock_compliance_at) */
	bool dry_run;           /* scan only: change nothing (the report) */
	struct audit *audit;    /* records every erasure; NULL: none (dry run) */
	const char *operator_;  /* who runs it (subject shreds' ledger) */
	const char *clock_note; /* audited with the start record, or NULL */
	/* Called for every item after it was handled; non-zero stops the
	 * sweep and is returned. */
	int (*item)(const struct retention_item *it, void *arg);
	void *arg;
	/* Tests only: called at each stage of each file erasure. */
	void (*stage)(enum retention_stage s, void *arg);
};

/* Walks the whole store with the volume keyring (st unlocked), subjects
 * with their own keyrings, and decides for every file and subject whether
 * it is due under policy p (NULL: no policy, nothing is due).  Unless
 * dry_run: erases every due file (audit record, note in retention_erased,
 * rename to .E<file id>, overwrite with random bytes, fsync, unlink) and
 * crypto-shreds every due subject (subjects_shred); finishes erasures an
 * interrupted sweep left.  Safe to interrupt at any point and run again.
 * Returns 0 (per-item failures are counted in stats->errors), or the
 * first error that stops the walk. */
int retention_sweep(struct store *st, const struct policy *p,
		    const struct retention_sweep_opts *o,
		    struct retention_stats *stats) MUST_CHECK;

#endif
