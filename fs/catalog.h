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
#define CATALOG_CREATE 0x1   /* create the file and schema; -EEXIST if present */
#define CATALOG_RDONLY 0x2   /* open read-only */

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
	int64_t id;                           /* rowid, assigned on add */
	char kind[16];                        /* KEYS_SLOT_* */
	char label[64];                       /* free text, may be empty */
	uint8_t salt[CRYPT_SALT_BYTES];       /* Argon2id salt (passphrase) */
	uint64_t opslimit;                    /* Argon2id passes (passphrase) */
	uint64_t memlimit;                    /* Argon2id bytes (passphrase) */
	uint8_t wrapped[KEYS_WRAPPED_BYTES];  /* master key wrapped by the KEK */
	int64_t created_us;                   /* UTC microseconds */
};

int catalog_slot_add(struct catalog *cat, struct catalog_slot *slot) MUST_CHECK;
/* *out is malloc'd (free with free()); *n may be 0. */
int catalog_slot_list(struct catalog *cat, struct catalog_slot **out,
		      size_t *n) MUST_CHECK;
/* -ENOENT if no such slot. */
int catalog_slot_remove(struct catalog *cat, int64_t id) MUST_CHECK;

/* One stored policy version. */
struct catalog_policy {
	int64_t version;        /* 1, 2, ... assigned on add */
	char *text;             /* the policy source, NUL-terminated (malloc'd) */
	char applied_by[64];    /* user name of the administrator */
	int64_t applied_us;     /* UTC microseconds */
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

#endif
