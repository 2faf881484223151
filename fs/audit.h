/*
 * audit.h — the tamper-evident audit log: recording, chaining, verifying.
 *
 * Every record is chained to the one before it by a keyed BLAKE2b MAC
 * (key: keys_master_key(mk, KEYS_AUDIT)), so an edit, deletion, reordering
 * or insertion anywhere is found by audit_verify.  Paths are never stored in
 * clear: they are sealed under the `path` key of a keyring (a subject's
 * inside a subject, so a shred also erases them from the log, while the
 * chain, which covers the ciphertext, still verifies).
 *
 * Durability without a database commit per operation: audit_append writes
 * the encoded record to STORE/audit.journal with one write before it returns
 * (safe against a kill -9 of the daemon; with audit_sync=full also
 * fdatasync'd, with group commit, for power loss), and a writer thread moves
 * records into the catalogue in batches.  audit_open replays whatever a
 * crash left in the journal.  The writer holds flock(LOCK_EX) on the journal
 * for as long as the log is open, so only one process extends a chain.
 *
 * The byte-exact record encoding and journal format are in docs/audit.md.
 */
#ifndef CUSTODIAN_AUDIT_H
#define CUSTODIAN_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "catalog.h"
#include "crypt.h"
#include "errs.h"
#include "keys.h"

struct store;

struct audit;

/* The journal inside the store directory. */
#define AUDIT_JOURNAL_FILE "audit.journal"

/* Login uid / session id of a process that has none (as the kernel says). */
#define AUDIT_UNSET 4294967295u

/* Longest plaintext path audit_append accepts (bytes, without NUL). */
#define AUDIT_PATH_MAX 4095

/* Operation names (short, stable: they are in every JSON line). */
#define AUDIT_OP_OPEN "open"
#define AUDIT_OP_CLOSE "close"
#define AUDIT_OP_CREATE "create"
#define AUDIT_OP_WRITE "write"
#define AUDIT_OP_UNLINK "unlink"
#define AUDIT_OP_RENAME "rename"
#define AUDIT_OP_MKDIR "mkdir"
#define AUDIT_OP_RMDIR "rmdir"
#define AUDIT_OP_SETATTR "setattr"
#define AUDIT_OP_LINK "link"
#define AUDIT_OP_SYMLINK "symlink"
#define AUDIT_OP_DENY "deny"
#define AUDIT_OP_POLICY "policy"
#define AUDIT_OP_KEYS "keys"
#define AUDIT_OP_MOUNT "mount"
#define AUDIT_OP_UNMOUNT "unmount"
#define AUDIT_OP_SHRED "shred"
#define AUDIT_OP_SWEEP "sweep"
#define AUDIT_OP_EXPORT "export"
#define AUDIT_OP_ALERT "alert"
#define AUDIT_OP_REPAIR "repair" /* fsck --repair quarantined a damaged entry */

/* When an appended record is durable. */
enum audit_sync {
	AUDIT_SYNC_NORMAL, /* in the kernel's page cache: survives kill -9 */
	AUDIT_SYNC_FULL,   /* fdatasync'd (group commit): survives power loss */
};

/* How the log is kept (zero-initialised = the defaults). */
struct audit_options {
	enum audit_sync sync; /* -o audit_sync=normal|full */
	bool syslog;          /* -o audit_syslog=yes: forward each record */
	unsigned batch_ms;    /* longest wait before the writer commits a
				 batch; 0 = AUDIT_BATCH_MS_DEFAULT */
};

#define AUDIT_BATCH_MS_DEFAULT 20

/* Parses one mount option.  0 if key is an audit option and val is valid,
 * -EINVAL if val is not, -ENOENT if key is not an audit option. */
int audit_option(struct audit_options *o, const char *key, const char *val) MUST_CHECK;

/* Who asked: identity and process of the caller. */
struct audit_who {
	uint32_t uid;                          /* fsuid of the request */
	uint32_t gid;                          /* fsgid of the request */
	char groups[CATALOG_AUDIT_GROUPS_MAX]; /* supplementary gids "1,2" */
	uint32_t auid;                         /* login uid, AUDIT_UNSET if none */
	uint32_t ses;                          /* session id, AUDIT_UNSET if none */
	int32_t pid;                           /* process (thread group) id */
	char comm[CATALOG_AUDIT_COMM_MAX];     /* /proc/PID/comm, "" if gone */
	char exe[CATALOG_AUDIT_EXE_MAX];       /* /proc/PID/exe, "" if gone */
};

/* Fills w for a caller: uid/gid as given (the request's), the rest from
 * /proc/PID.  A process that already exited leaves "" and AUDIT_UNSET
 * (never an error).  Supplementary groups longer than the field are cut at
 * a comma and end with ",...". */
void audit_who(pid_t pid, uid_t uid, gid_t gid, struct audit_who *w);

/* audit_who through a per-log cache, for the daemon's hot path (an untar
 * opens thousands of files from one process; /proc/PID/status alone costs
 * ~12 us).  An entry is reused for up to AUDIT_WHO_TTL_MS and only while
 * /proc/PID/exe (read through the /proc/PID directory kept open with the
 * entry, so a reused pid is a miss) still names the same file, checked at
 * most every 2 ms per process: an exec is seen within 2 ms of the
 * process's previous record; a change of groups or login uid without exec
 * may show up to the TTL late (documented).  uid/gid always come from the
 * arguments. */
#define AUDIT_WHO_TTL_MS 1000
void audit_who_cached(struct audit *a, pid_t pid, uid_t uid, gid_t gid,
		      struct audit_who *w);

/* audit_who for this process (admin tools: the administrator). */
void audit_who_self(struct audit_who *w);

/* One thing that happened. */
struct audit_event {
	const char *op;              /* AUDIT_OP_*; at most 15 bytes */
	int outcome;                 /* 0 or a positive errno */
	const struct audit_who *who; /* the caller */
	const uint8_t *subject;      /* CRYPT_HASH_BYTES subject hash or NULL */
	const struct keyring *ring;  /* seals path/path2; NULL = volume */
	const char *path;            /* plaintext path or NULL */
	const char *path2;           /* rename/link target or NULL */
	uint64_t flags;              /* open flags */
	uint64_t bytes;              /* bytes read or written */
	uint64_t count;              /* read or write calls */
	uint64_t ref;                /* seq of the matching open (close) */
	const char *detail;          /* short text WITHOUT names, or NULL */
};

/* The open log of one store (opaque). */

/* Opens the log for writing: takes the journal lock (-EBUSY if another
 * process holds it, i.e. the store is mounted), replays records a crash
 * left in the journal (-EBADMSG if the journal is damaged anywhere but a
 * torn last record, or does not continue the chain), starts the writer.  The store must
 * be unlocked (-EINVAL) and writable (-EROFS).  st must outlive the log. */
int audit_open(struct store *st, const struct audit_options *o,
	       struct audit **out) MUST_CHECK;

/* Records ev; returns once it is durable as the options say.  *seq (may
 * be NULL) gets its position in the chain.  Thread-safe.  -EINVAL on a bad
 * event (path too long, op too long...), -errno if the journal cannot be
 * written (the operation should then fail). */
int audit_append(struct audit *a, const struct audit_event *ev, uint64_t *seq) MUST_CHECK;

/* Waits until every record appended so far is in the catalogue.  Returns
 * the writer's last error (-errno) if it cannot commit. */
int audit_flush(struct audit *a) MUST_CHECK;

/* The newest record appended (0 and zeros if none). */
void audit_head(struct audit *a, uint64_t *seq, uint8_t mac[CRYPT_MAC_BYTES]);

/* Flushes, stops the writer, releases the lock; NULL accepted.  Records
 * that could not be committed stay in the journal for the next open. */
void audit_close(struct audit *a);

/* Subject hash used in records: BLAKE2b-256 keyed with
 * keys_master_key(mk, KEYS_SUBJECT_HASH) over the subject id's bytes. */
void audit_subject_hash(const struct keys_master *mk, const char *id,
			uint8_t out[CRYPT_HASH_BYTES]);

/* Opens a sealed path from a record into buf (NUL-terminated).  -EIO if
 * ring is not its key (e.g. the subject was shredded), -ENAMETOOLONG if
 * cap is too small. */
int audit_path_open(const struct keyring *ring, const uint8_t *sealed, size_t len,
		    char *buf, size_t cap) MUST_CHECK;

/* The chain MAC of a record: BLAKE2b-256 keyed with the audit key over
 * prev || encoding(row).  -EINVAL if the row has fields out of range. */
int audit_row_mac(const uint8_t key[CRYPT_KEY_BYTES], const uint8_t prev[CRYPT_MAC_BYTES],
		  const struct catalog_audit_row *r,
		  uint8_t mac[CRYPT_MAC_BYTES]) MUST_CHECK;

/* What audit_verify found. */
enum audit_verdict {
	AUDIT_OK,          /* the chain is complete and unedited */
	AUDIT_BAD_MAC,     /* record `seq` does not match its MAC */
	AUDIT_BAD_PREV,    /* record `seq` does not link to the one before */
	AUDIT_GAP,         /* record `seq` is missing (gap after seq-1) */
	AUDIT_TRUNCATED,   /* records after `seq` were removed (meta head) */
	AUDIT_HEAD_MISSING /* no record carries the --head MAC */
};

/* Result of a verification. */
struct audit_report {
	enum audit_verdict verdict;        /* first problem found, or AUDIT_OK */
	uint64_t seq;                      /* record the verdict is about */
	uint64_t records;                  /* records checked */
	uint64_t head_seq;                 /* last record of the log (0 if empty) */
	uint8_t head_mac[CRYPT_MAC_BYTES]; /* its MAC */
	uint64_t meta_seq;                 /* meta audit_head seq (0 if none) */
};

/* Recomputes the whole chain in cat, streaming.  If head is not NULL a
 * record with that MAC must exist.  0 with the verdict in *rep, -errno if
 * the catalogue cannot be read.  Records still in a journal are not seen. */
int audit_verify(struct catalog *cat, const struct keys_master *mk, const uint8_t *head,
		 struct audit_report *rep) MUST_CHECK;

/* Journal statistics for tools: complete records in STORE's journal
 * (whatever their seq) and whether another process holds its lock.
 * -ENOENT if there is no journal. */
int audit_journal_peek(const char *store_path, uint64_t *records,
		       bool *locked) MUST_CHECK;

#endif
