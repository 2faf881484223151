/*
 * catalog_subjects.c — data subjects and the erasure ledger (part of the
 * catalogue module; see catalog_int.h).
 *
 * Owns the `subjects` table (one row per subject hash: flags, the wrapped
 * key, sealed id/parent/reasons, times, the row MAC) and the append-only
 * `erasures` ledger.  Rows are opaque here: sealing and MACs belong to
 * fs/subjects.c.  Both tables are WITHOUT ROWID / keyed so that replacing a
 * subject row rewrites its b-tree cell in place, and secure_delete (set by
 * catalog.c on every connection) zeroes the cell it replaces — the property
 * crypto-shredding relies on.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_int.h"

const char catalog_subjects_ddl[] =
	"CREATE TABLE subjects(hash BLOB PRIMARY KEY NOT NULL,"
	" restricted INTEGER NOT NULL DEFAULT 0, held INTEGER NOT NULL DEFAULT 0,"
	" shredded INTEGER NOT NULL DEFAULT 0, wrapped BLOB, id_ct BLOB,"
	" parent_ct BLOB, restrict_ct BLOB, hold_ct BLOB,"
	" created_us INTEGER NOT NULL, last_write_us INTEGER NOT NULL,"
	" mac BLOB NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE erasures(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" hash BLOB NOT NULL, key_fp BLOB NOT NULL, shredded_us INTEGER NOT NULL,"
	" reason TEXT NOT NULL, operator TEXT NOT NULL, files INTEGER NOT NULL,"
	" bytes INTEGER NOT NULL, audit_seq INTEGER NOT NULL DEFAULT 0,"
	" cert_mac BLOB NOT NULL);"
	"CREATE INDEX erasures_hash ON erasures(hash);"
	"CREATE UNIQUE INDEX erasures_key ON erasures(key_fp);";

#define SUBJECT_COLS                                                                     \
	"hash, restricted, held, shredded, wrapped, id_ct, parent_ct, restrict_ct,"      \
	" hold_ct, created_us, last_write_us, mac"

#define ERASURE_COLS                                                                     \
	"seq, hash, key_fp, shredded_us, reason, operator, files, bytes, audit_seq,"     \
	" cert_mac"

/* A BLOB of 1..cap bytes, or NULL (length 0). */
static int col_varblob(sqlite3_stmt *st, int i, uint8_t *out, size_t cap, size_t *len)
{
	const void *b;
	int n, type = sqlite3_column_type(st, i);

	*len = 0;
	if (type == SQLITE_NULL)
		return 0;
	if (type != SQLITE_BLOB)
		return -EIO;
	b = sqlite3_column_blob(st, i);
	n = sqlite3_column_bytes(st, i);
	if (!b || n <= 0 || (size_t)n > cap)
		return -EIO;
	memcpy(out, b, (size_t)n);
	*len = (size_t)n;
	return 0;
}

/* A 0/1 INTEGER column. */
static int col_flag(sqlite3_stmt *st, int i, int *out)
{
	int64_t v;
	int rc = catalog_col_int(st, i, &v, 0, 0);

	if (rc == 0 && v > 1)
		rc = -EIO;
	*out = rc == 0 && v == 1;
	return rc;
}

/* Binds a sealed field: NULL when empty. */
static void bind_varblob(sqlite3_stmt *st, int i, const uint8_t *b, size_t len)
{
	if (len == 0)
		sqlite3_bind_null(st, i);
	else
		sqlite3_bind_blob(st, i, b, (int)len, SQLITE_STATIC);
}

static int subject_row(sqlite3_stmt *st, struct catalog_subject *s)
{
	int rc;

	memset(s, 0, sizeof(*s));
	rc = catalog_col_blob(st, 0, s->hash, sizeof(s->hash), 0);
	if (!rc)
		rc = col_flag(st, 1, &s->restricted);
	if (!rc)
		rc = col_flag(st, 2, &s->held);
	if (!rc)
		rc = col_flag(st, 3, &s->shredded);
	if (!rc) {
		s->has_key = sqlite3_column_type(st, 4) != SQLITE_NULL;
		rc = catalog_col_blob(st, 4, s->wrapped, sizeof(s->wrapped), 1);
	}
	if (!rc)
		rc = col_varblob(st, 5, s->id_ct, sizeof(s->id_ct), &s->id_ct_len);
	if (!rc)
		rc = col_varblob(st, 6, s->parent_ct, sizeof(s->parent_ct),
				 &s->parent_ct_len);
	if (!rc)
		rc = col_varblob(st, 7, s->restrict_ct, sizeof(s->restrict_ct),
				 &s->restrict_ct_len);
	if (!rc)
		rc = col_varblob(st, 8, s->hold_ct, sizeof(s->hold_ct), &s->hold_ct_len);
	if (!rc)
		rc = catalog_col_int(st, 9, &s->created_us, 0, 1);
	if (!rc)
		rc = catalog_col_int(st, 10, &s->last_write_us, 0, 1);
	if (!rc)
		rc = catalog_col_blob(st, 11, s->mac, sizeof(s->mac), 0);
	/* A shredded row never keeps a key; a live one always has one. */
	if (!rc && s->shredded == s->has_key)
		rc = -EIO;
	return rc;
}

int catalog_subject_get(struct catalog *cat, const uint8_t hash[CRYPT_HASH_BYTES],
			struct catalog_subject *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = catalog_prep(cat, "SELECT " SUBJECT_COLS " FROM subjects WHERE hash = ?1",
			  &st);
	if (rc)
		goto out;
	sqlite3_bind_blob(st, 1, hash, CRYPT_HASH_BYTES, SQLITE_STATIC);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	rc = subject_row(st, out);
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_subject_put(struct catalog *cat, const struct catalog_subject *s)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (s->id_ct_len > sizeof(s->id_ct) || s->parent_ct_len > sizeof(s->parent_ct) ||
	    s->restrict_ct_len > sizeof(s->restrict_ct) ||
	    s->hold_ct_len > sizeof(s->hold_ct) || s->shredded == s->has_key)
		return -EINVAL;
	if (cat->rdonly)
		return -EROFS;
	rc = catalog_prep(cat,
			  "INSERT OR REPLACE INTO subjects(" SUBJECT_COLS
			  ") VALUES(?1, ?2,"
			  " ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
			  &st);
	if (rc)
		goto out;
	sqlite3_bind_blob(st, 1, s->hash, sizeof(s->hash), SQLITE_STATIC);
	sqlite3_bind_int(st, 2, s->restricted ? 1 : 0);
	sqlite3_bind_int(st, 3, s->held ? 1 : 0);
	sqlite3_bind_int(st, 4, s->shredded ? 1 : 0);
	if (s->has_key)
		sqlite3_bind_blob(st, 5, s->wrapped, sizeof(s->wrapped), SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 5);
	bind_varblob(st, 6, s->id_ct, s->id_ct_len);
	bind_varblob(st, 7, s->parent_ct, s->parent_ct_len);
	bind_varblob(st, 8, s->restrict_ct, s->restrict_ct_len);
	bind_varblob(st, 9, s->hold_ct, s->hold_ct_len);
	sqlite3_bind_int64(st, 10, s->created_us);
	sqlite3_bind_int64(st, 11, s->last_write_us);
	sqlite3_bind_blob(st, 12, s->mac, sizeof(s->mac), SQLITE_STATIC);
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_subject_touch(struct catalog *cat, const uint8_t hash[CRYPT_HASH_BYTES],
			  int64_t us)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (cat->rdonly)
		return -EROFS;
	/* RETURNING tells a missing row from an unchanged one. */
	rc = catalog_prep(cat,
			  "UPDATE subjects SET last_write_us = MAX(last_write_us, ?2)"
			  " WHERE hash = ?1 RETURNING 1",
			  &st);
	if (rc)
		goto out;
	sqlite3_bind_blob(st, 1, hash, CRYPT_HASH_BYTES, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, us);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}

/* One subject hash (catalog_collect decoder). */
static int hash_row(sqlite3_stmt *st, void *elem)
{
	return catalog_col_blob(st, 0, elem, CRYPT_HASH_BYTES, 0);
}

int catalog_subject_hashes(struct catalog *cat, uint8_t (**out)[CRYPT_HASH_BYTES],
			   size_t *n)
{
	sqlite3_stmt *st = NULL;
	void *v;
	int rc;

	*out = NULL;
	*n = 0;
	rc = catalog_prep(cat, "SELECT hash FROM subjects ORDER BY hash", &st);
	if (rc)
		return rc;
	rc = catalog_collect(cat, st, sizeof(**out), hash_row, &v, n);
	if (rc == 0)
		*out = v;
	return rc;
}

/* --- erasure ledger -------------------------------------------------------- */

static int erasure_ok(const struct catalog_erasure *e)
{
	return e->shredded_us >= 0 && e->files >= 0 && e->bytes >= 0 &&
	       e->audit_seq >= 0 && e->reason[0] &&
	       catalog_field_ok(e->reason, sizeof(e->reason)) &&
	       catalog_field_ok(e->operator_, sizeof(e->operator_));
}

static int erasure_row(sqlite3_stmt *st, void *elem)
{
	struct catalog_erasure *e = elem;
	int rc;

	memset(e, 0, sizeof(*e));
	rc = catalog_col_int(st, 0, &e->seq, 0, 0);
	if (!rc)
		rc = catalog_col_blob(st, 1, e->hash, sizeof(e->hash), 0);
	if (!rc)
		rc = catalog_col_blob(st, 2, e->key_fp, sizeof(e->key_fp), 0);
	if (!rc)
		rc = catalog_col_int(st, 3, &e->shredded_us, 0, 0);
	if (!rc)
		rc = catalog_col_text(st, 4, e->reason, sizeof(e->reason));
	if (!rc)
		rc = catalog_col_text(st, 5, e->operator_, sizeof(e->operator_));
	if (!rc)
		rc = catalog_col_int(st, 6, &e->files, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 7, &e->bytes, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 8, &e->audit_seq, 0, 0);
	if (!rc)
		rc = catalog_col_blob(st, 9, e->mac, sizeof(e->mac), 0);
	return rc;
}

int catalog_erasure_add(struct catalog *cat, struct catalog_erasure *e)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (!erasure_ok(e))
		return -EINVAL;
	if (cat->rdonly)
		return -EROFS;
	/* seq 0 asks for the next number; a given seq (an entry re-applied
	 * from another catalogue) is kept if free. */
	rc = catalog_prep(
		cat,
		"INSERT INTO erasures(seq, hash, key_fp, shredded_us, reason,"
		" operator, files, bytes, audit_seq, cert_mac) VALUES(NULLIF(?1, 0),"
		" ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING seq",
		&st);
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, e->seq);
	sqlite3_bind_blob(st, 2, e->hash, sizeof(e->hash), SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, e->key_fp, sizeof(e->key_fp), SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, e->shredded_us);
	sqlite3_bind_text(st, 5, e->reason, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, e->operator_, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, e->files);
	sqlite3_bind_int64(st, 8, e->bytes);
	sqlite3_bind_int64(st, 9, e->audit_seq);
	sqlite3_bind_blob(st, 10, e->mac, sizeof(e->mac), SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -EIO : catalog_errno(cat->db, rc);
		goto out;
	}
	e->seq = sqlite3_column_int64(st, 0);
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_erasure_set_mac(struct catalog *cat, int64_t seq,
			    const uint8_t mac[CRYPT_MAC_BYTES])
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (cat->rdonly)
		return -EROFS;
	rc = catalog_prep(
		cat, "UPDATE erasures SET cert_mac = ?2 WHERE seq = ?1 RETURNING 1", &st);
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, seq);
	sqlite3_bind_blob(st, 2, mac, CRYPT_MAC_BYTES, SQLITE_STATIC);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_erasure_get(struct catalog *cat, int64_t seq, struct catalog_erasure *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = catalog_prep(cat, "SELECT " ERASURE_COLS " FROM erasures WHERE seq = ?1",
			  &st);
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, seq);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	rc = erasure_row(st, out);
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_erasure_list(struct catalog *cat, struct catalog_erasure **out, size_t *n)
{
	sqlite3_stmt *st = NULL;
	void *v;
	int rc;

	*out = NULL;
	*n = 0;
	rc = catalog_prep(cat, "SELECT " ERASURE_COLS " FROM erasures ORDER BY seq", &st);
	if (rc)
		return rc;
	rc = catalog_collect(cat, st, sizeof(**out), erasure_row, &v, n);
	if (rc == 0)
		*out = v;
	return rc;
}

int catalog_erasure_find_key(struct catalog *cat, const uint8_t key_fp[CRYPT_HASH_BYTES])
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = catalog_prep(cat, "SELECT 1 FROM erasures WHERE key_fp = ?1", &st);
	if (rc)
		goto out;
	sqlite3_bind_blob(st, 1, key_fp, CRYPT_HASH_BYTES, SQLITE_STATIC);
	rc = catalog_step_row(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}
