/*
 * catalog.h — the store's database (STORE/custodian.db).
 *
 * The only module that calls SQLite (house rule).  It owns the schema, its
 * migrations, WAL mode and secure_delete, and maps every SQLite result code
 * to -errno in one function.  Rows are plain data: authentication of rows
 * (MACs) is computed by the callers with keys they hold, and stored here as
 * opaque blobs.
 *
 * A struct catalog is one connection.  It is safe to use from several
 * threads (the connection is opened in serialized mode), but a transaction
 * begun with catalog_begin belongs to the calling thread until it ends.
 */
#ifndef CUSTODIAN_CATALOG_H
#define CUSTODIAN_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "errs.h"
#include "keys.h"

struct catalog;

/* catalog_open flags */
#define CATALOG_CREATE 0x1 /* create the file and schema; -EEXIST if present */
#define CATALOG_RDONLY 0x2 /* open read-only */

/* Opens (or creates) the database at path.  -ENOENT if missing (without
 * CATALOG_CREATE), -EEXIST if present (with it), -EIO if the file is not a
 * custodian catalogue or is damaged, -EPROTO if its schema is newer than
 * this build understands. */
int catalog_open(const char *path, int flags, struct catalog **out) MUST_CHECK;
void catalog_close(struct catalog *cat);

/* Checkpoints the WAL into the main file and truncates the WAL
 * (wal_checkpoint(TRUNCATE)), so pages freed by a delete (zeroed by
 * secure_delete) replace the old ones everywhere on disk: call after
 * shredding.  -EBUSY if a reader or writer kept it from completing,
 * -EROFS on a read-only catalogue. */
int catalog_checkpoint(struct catalog *cat) MUST_CHECK;

/* Transactions (BEGIN IMMEDIATE / COMMIT / ROLLBACK). */
int catalog_begin(struct catalog *cat) MUST_CHECK;
int catalog_commit(struct catalog *cat) MUST_CHECK;
void catalog_rollback(struct catalog *cat);

/* Small named values: store id, format version, creation time...
 * get: -ENOENT if absent, -ENOSPC if cap is too small (len still set). */
int catalog_meta_get(struct catalog *cat, const char *key, void *buf, size_t cap,
		     size_t *len) MUST_CHECK;
int catalog_meta_put(struct catalog *cat, const char *key, const void *val,
		     size_t len) MUST_CHECK;

/* One key slot. */
struct catalog_slot {
	int64_t id;                          /* rowid, assigned on add */
	char kind[16];                       /* KEYS_SLOT_* */
	char label[64];                      /* free text, may be empty */
	uint8_t salt[CRYPT_SALT_BYTES];      /* Argon2id salt (passphrase) */
	uint64_t opslimit;                   /* Argon2id passes (passphrase) */
	uint64_t memlimit;                   /* Argon2id bytes (passphrase) */
	uint8_t wrapped[KEYS_WRAPPED_BYTES]; /* master key wrapped by the KEK */
	int64_t created_us;                  /* UTC microseconds */
};

int catalog_slot_add(struct catalog *cat, struct catalog_slot *slot) MUST_CHECK;
/* *out is malloc'd (free with free()); *n may be 0. */
int catalog_slot_list(struct catalog *cat, struct catalog_slot **out,
		      size_t *n) MUST_CHECK;
/* -ENOENT if no such slot. */
int catalog_slot_remove(struct catalog *cat, int64_t id) MUST_CHECK;

/* One stored policy version. */
struct catalog_policy {
	int64_t version;              /* 1, 2, ... assigned on add */
	char *text;                   /* the policy source, NUL-terminated (malloc'd) */
	char applied_by[64];          /* user name of the administrator */
	int64_t applied_us;           /* UTC microseconds */
	uint8_t mac[CRYPT_MAC_BYTES]; /* caller's MAC over version|text|by|time */
};

/* Appends a version (policy->version is set).  The caller computes the MAC
 * after learning the version: use catalog_policy_next_version inside a
 * transaction. */
int catalog_policy_next_version(struct catalog *cat, int64_t *version) MUST_CHECK;
int catalog_policy_add(struct catalog *cat, const struct catalog_policy *p) MUST_CHECK;
/* version 0 means the newest.  -ENOENT if none.  Free text with
 * catalog_policy_clear. */
int catalog_policy_get(struct catalog *cat, int64_t version,
		       struct catalog_policy *out) MUST_CHECK;
void catalog_policy_clear(struct catalog_policy *p);

/* Path of the database file inside a store directory. */
#define CATALOG_FILE "custodian.db"

/* --- audit rows (catalog_audit.c; added by the audit engineer) ------------ */

/* Field sizes of an audit row (with the NUL for text). */
#define CATALOG_AUDIT_OP_MAX 16
#define CATALOG_AUDIT_GROUPS_MAX 512
#define CATALOG_AUDIT_COMM_MAX 32
#define CATALOG_AUDIT_EXE_MAX 1024
#define CATALOG_AUDIT_DETAIL_MAX 256
#define CATALOG_AUDIT_SEALED_MAX (4095 + CRYPT_AEAD_OVERHEAD) /* sealed path */

/* Meta key of the chain head committed with each batch: 8-byte big-endian
 * seq followed by the 32-byte MAC of that record. */
#define CATALOG_AUDIT_HEAD_KEY "audit_head"

/* One audit record as stored (see fs/audit.h for the meaning). */
struct catalog_audit_row {
	int64_t seq;                             /* 1, 2, ... */
	int64_t ts_us;                           /* UTC microseconds */
	char op[CATALOG_AUDIT_OP_MAX];           /* operation name */
	int64_t outcome;                         /* 0 or positive errno */
	int64_t uid;                             /* caller uid */
	int64_t gid;                             /* caller gid */
	char groups[CATALOG_AUDIT_GROUPS_MAX];   /* supplementary gids text */
	int64_t auid;                            /* login uid */
	int64_t ses;                             /* session id */
	int64_t pid;                             /* caller pid */
	char comm[CATALOG_AUDIT_COMM_MAX];       /* process name */
	char exe[CATALOG_AUDIT_EXE_MAX];         /* executable path */
	int has_subject;                         /* subject is set */
	uint8_t subject[CRYPT_HASH_BYTES];       /* subject hash */
	size_t path_len;                         /* 0: no path */
	uint8_t path[CATALOG_AUDIT_SEALED_MAX];  /* sealed path */
	size_t path2_len;                        /* 0: no second path */
	uint8_t path2[CATALOG_AUDIT_SEALED_MAX]; /* sealed second path */
	int64_t flags;                           /* open flags */
	int64_t bytes;                           /* bytes read/written */
	int64_t count;                           /* read/write calls */
	int64_t ref;                             /* seq of the matching open */
	char detail[CATALOG_AUDIT_DETAIL_MAX];   /* short text, no names */
	uint8_t prev[CRYPT_MAC_BYTES];           /* MAC of record seq-1 */
	uint8_t mac[CRYPT_MAC_BYTES];            /* this record's MAC */
};

/* Inserts one row (inside the caller's transaction, if any).  -EEXIST if
 * the seq is taken, -EINVAL if a field is out of range. */
int catalog_audit_insert(struct catalog *cat,
			 const struct catalog_audit_row *r) MUST_CHECK;

/* Highest seq in the table and its MAC; *seq = 0 (mac zeroed) if empty. */
int catalog_audit_last(struct catalog *cat, int64_t *seq,
		       uint8_t mac[CRYPT_MAC_BYTES]) MUST_CHECK;

/* Which rows a query returns (all conditions must hold), by seq. */
struct catalog_audit_filter {
	int64_t after_seq;      /* seq > after_seq */
	const uint8_t *subject; /* CRYPT_HASH_BYTES, or NULL for any */
	int64_t uid;            /* -1 for any */
	int64_t since_us;       /* ts_us >= since_us (INT64_MIN: any) */
	int64_t until_us;       /* ts_us <= until_us (INT64_MAX: any) */
	const char *op;         /* NULL for any */
	int denied;             /* only outcome != 0 */
};

/* Initialises a filter that matches every row. */
void catalog_audit_filter_all(struct catalog_audit_filter *f);

/* A running query (opaque); rows come in seq order. */
struct catalog_audit_iter;

int catalog_audit_query(struct catalog *cat, const struct catalog_audit_filter *f,
			struct catalog_audit_iter **out) MUST_CHECK;
/* 1 and *r filled, 0 at the end, -EIO if a row is damaged. */
int catalog_audit_next(struct catalog_audit_iter *it,
		       struct catalog_audit_row *r) MUST_CHECK;
void catalog_audit_iter_free(struct catalog_audit_iter *it);

/* How the audit writer's own connection commits: full = fsync each commit
 * (PRAGMA synchronous = FULL, the catalogue's default), otherwise only at
 * WAL checkpoints (NORMAL: a commit survives a crash of the process, a
 * power loss may roll the last ones back).  For audit_sync=normal, whose
 * records are not on stable storage before the commit either. */
int catalog_audit_set_durable(struct catalog *cat, int full) MUST_CHECK;

/* --- subjects (catalog_subjects.c; added by the subjects module) --------- */

/* Largest sealed fields of a subject row (plaintext + AEAD overhead). */
#define CATALOG_SUBJECT_ID_CT_MAX (255 + CRYPT_AEAD_OVERHEAD)
#define CATALOG_SUBJECT_PARENT_CT_MAX (4096 + CRYPT_AEAD_OVERHEAD)
#define CATALOG_SUBJECT_REASON_CT_MAX (1024 + CRYPT_AEAD_OVERHEAD)

/* One data subject.  Nothing here is readable without keys: the id, the
 * reasons and the parent path are sealed by the caller (subjects.c). */
struct catalog_subject {
	uint8_t hash[CRYPT_HASH_BYTES];                   /* keyed hash of the id (key) */
	int restricted;                                   /* processing restricted */
	int held;                                         /* legal hold */
	int shredded;                                     /* key destroyed */
	int has_key;                                      /* wrapped is valid */
	uint8_t wrapped[KEYS_WRAPPED_BYTES];              /* subject key, wrapped */
	size_t id_ct_len;                                 /* 0 = none (shredded) */
	uint8_t id_ct[CATALOG_SUBJECT_ID_CT_MAX];         /* id, sealed by the subject */
	size_t parent_ct_len;                             /* 0 = none */
	uint8_t parent_ct[CATALOG_SUBJECT_PARENT_CT_MAX]; /* parent path, sealed by
							   the volume */
	size_t restrict_ct_len;                           /* 0 = none */
	uint8_t restrict_ct[CATALOG_SUBJECT_REASON_CT_MAX]; /* restriction reason */
	size_t hold_ct_len;                                 /* 0 = none */
	uint8_t hold_ct[CATALOG_SUBJECT_REASON_CT_MAX];     /* hold reason */
	int64_t created_us;                                 /* UTC microseconds */
	int64_t last_write_us;                              /* UTC microseconds */
	uint8_t mac[CRYPT_MAC_BYTES];                       /* caller's MAC over the row
							       (all but last_write_us) */
};

/* -ENOENT if no row has that hash. */
int catalog_subject_get(struct catalog *cat, const uint8_t hash[CRYPT_HASH_BYTES],
			struct catalog_subject *out) MUST_CHECK;
/* Inserts or replaces the whole row (secure_delete zeroes what it
 * replaces). */
int catalog_subject_put(struct catalog *cat, const struct catalog_subject *s) MUST_CHECK;
/* last_write_us = max(last_write_us, us).  -ENOENT if no such row. */
int catalog_subject_touch(struct catalog *cat, const uint8_t hash[CRYPT_HASH_BYTES],
			  int64_t us) MUST_CHECK;
/* Every subject hash, in hash order; *out malloc'd (free()), *n may be 0. */
int catalog_subject_hashes(struct catalog *cat, uint8_t (**out)[CRYPT_HASH_BYTES],
			   size_t *n) MUST_CHECK;

/* One erasure ledger entry (append-only). */
struct catalog_erasure {
	int64_t seq;                      /* 1, 2, ... assigned on add */
	uint8_t hash[CRYPT_HASH_BYTES];   /* subject hash */
	uint8_t key_fp[CRYPT_HASH_BYTES]; /* fingerprint of the destroyed wrapped key */
	int64_t shredded_us;              /* UTC microseconds */
	char reason[1024];                /* why (never names the subject) */
	char operator_[64];               /* who ran it */
	int64_t files;                    /* files destroyed */
	int64_t bytes;                    /* plaintext bytes destroyed */
	int64_t audit_seq;                /* audit chain position, 0 = none */
	uint8_t mac[CRYPT_MAC_BYTES];     /* caller's MAC (the certificate MAC) */
};

/* Appends (e->seq is set; e->mac as given).  Use inside a transaction with
 * catalog_erasure_set_mac when the MAC covers the seq. */
int catalog_erasure_add(struct catalog *cat, struct catalog_erasure *e) MUST_CHECK;
int catalog_erasure_set_mac(struct catalog *cat, int64_t seq,
			    const uint8_t mac[CRYPT_MAC_BYTES]) MUST_CHECK;
/* -ENOENT if no such entry. */
int catalog_erasure_get(struct catalog *cat, int64_t seq,
			struct catalog_erasure *out) MUST_CHECK;
/* Every entry in seq order; *out malloc'd (free()), *n may be 0. */
int catalog_erasure_list(struct catalog *cat, struct catalog_erasure **out,
			 size_t *n) MUST_CHECK;
/* 0 if an entry with this key fingerprint exists, -ENOENT if not. */
int catalog_erasure_find_key(struct catalog *cat,
			     const uint8_t key_fp[CRYPT_HASH_BYTES]) MUST_CHECK;

/* --- retention (catalog_retention.c; added by the retention module) ------ */

/* Largest sealed fields of a directory hold (plaintext + AEAD overhead). */
#define CATALOG_HOLD_PATH_CT_MAX (4096 + CRYPT_AEAD_OVERHEAD)
#define CATALOG_HOLD_REASON_CT_MAX (1024 + CRYPT_AEAD_OVERHEAD)

/* One directory-level legal hold.  The path and reason are sealed by the
 * caller (fs/retention.c) under the volume keyring; the row is found by a
 * keyed hash of the normalised path. */
struct catalog_hold {
	uint8_t hash[CRYPT_HASH_BYTES];                /* keyed hash of the path */
	size_t path_ct_len;                            /* > 0 */
	uint8_t path_ct[CATALOG_HOLD_PATH_CT_MAX];     /* sealed path */
	size_t reason_ct_len;                          /* 0 = none */
	uint8_t reason_ct[CATALOG_HOLD_REASON_CT_MAX]; /* sealed reason */
	int64_t created_us;                            /* UTC microseconds */
	uint8_t mac[CRYPT_MAC_BYTES];                  /* caller's MAC over the row */
};

/* -ENOENT if no hold has that hash (or the store has no holds table). */
int catalog_hold_get(struct catalog *cat, const uint8_t hash[CRYPT_HASH_BYTES],
		     struct catalog_hold *out) MUST_CHECK;
/* Inserts or replaces.  -EINVAL if a length is out of range. */
int catalog_hold_put(struct catalog *cat, const struct catalog_hold *h) MUST_CHECK;
/* -ENOENT if there was no such hold. */
int catalog_hold_delete(struct catalog *cat,
			const uint8_t hash[CRYPT_HASH_BYTES]) MUST_CHECK;
/* Every hold in hash order; *out malloc'd (free()), *n may be 0. */
int catalog_hold_list(struct catalog *cat, struct catalog_hold **out,
		      size_t *n) MUST_CHECK;

/* One file erased (or being erased) by a retention sweep. */
struct catalog_erased {
	uint8_t file_id[CRYPT_FILE_ID_BYTES]; /* the file's random header id */
	int64_t erased_us;                    /* compliance time of the erasure */
	int64_t audit_seq;                    /* audit record of it, 0 = none */
	int done;                             /* 0: started, 1: ciphertext gone */
};

/* -ENOENT if that file id was never swept. */
int catalog_erased_get(struct catalog *cat, const uint8_t file_id[CRYPT_FILE_ID_BYTES],
		       struct catalog_erased *out) MUST_CHECK;
/* Inserts or replaces. */
int catalog_erased_put(struct catalog *cat, const struct catalog_erased *e) MUST_CHECK;
/* Rows finished (done) and started but not finished (pending). */
int catalog_erased_count(struct catalog *cat, int64_t *done, int64_t *pending) MUST_CHECK;

/* --- backups (catalog_backup.c; added for `custodian backup|restore`) ------ */

/* Writes a consistent copy of the open catalogue to dst, a new file (0600;
 * -EEXIST if dst exists, which is left alone): one snapshot read in a single
 * read transaction (VACUUM INTO), so a mounted store's writers are not
 * blocked and commits still in the WAL are included; only live pages are
 * written (no remnants from free pages); the copy is one file in
 * rollback-journal mode (no -wal/-shm).  fsyncs the copy and its directory.
 * On failure dst is removed.  -EINVAL if dst is empty or starts "file:". */
int catalog_backup(struct catalog *cat, const char *dst) MUST_CHECK;

/* Checks a catalogue's structure (PRAGMA quick_check): 0 if sound, -EIO if
 * the file is damaged (truncated, overwritten pages, broken indexes).  Rows
 * edited with valid SQL are not found here: that is what the callers' row
 * MACs and the audit chain are for. */
int catalog_check(struct catalog *cat) MUST_CHECK;

#endif
