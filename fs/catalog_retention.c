/*
 * catalog_retention.c — retention's tables (part of the catalogue module;
 * see catalog_int.h).
 *
 * Owns `retention_holds` (directory-level legal holds: a keyed hash of the
 * held path as the key, the path and reason sealed by fs/retention.c, a
 * row MAC) and `retention_erased` (one row per file the sweep erased,
 * keyed by the file's random id: what makes an interrupted sweep
 * resumable without recording an erasure twice).  Rows are opaque here.
 *
 * Stores created before these tables existed get them on first write
 * (CREATE TABLE IF NOT EXISTS); reads of a store without them see no
 * rows, so a read-only tool never needs to write.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_int.h"

const char catalog_retention_ddl[] =
	"CREATE TABLE IF NOT EXISTS retention_holds(hash BLOB PRIMARY KEY NOT NULL,"
	" path_ct BLOB NOT NULL, reason_ct BLOB, created_us INTEGER NOT NULL,"
	" mac BLOB NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE IF NOT EXISTS retention_erased(file_id BLOB PRIMARY KEY NOT NULL,"
	" erased_us INTEGER NOT NULL, audit_seq INTEGER NOT NULL,"
	" done INTEGER NOT NULL) WITHOUT ROWID;";

#define HOLD_COLS "hash, path_ct, reason_ct, created_us, mac"

/* Prepares sql; if a table is missing (a store older than these tables)
 * creates them first when writing, or reports -ENOENT ("no rows") when
 * only reading. */
static int prep(struct catalog *cat, const char *sql, sqlite3_stmt **st, int write)
{
	int rc = sqlite3_prepare_v2(cat->db, sql, -1, st, NULL);

	if (rc == SQLITE_OK)
		return 0;
	sqlite3_finalize(*st);
	*st = NULL;
	if (rc != SQLITE_ERROR || !strstr(sqlite3_errmsg(cat->db), "no such table"))
		return catalog_errno(cat->db, rc);
	if (!write)
		return -ENOENT;
	if (cat->rdonly)
		return -EROFS;
	rc = catalog_exec(cat, catalog_retention_ddl);
	if (rc)
		return rc;
	return catalog_prep(cat, sql, st);
}

/* A BLOB of 1..cap bytes, or NULL (length 0) when null_ok. */
static int col_var(sqlite3_stmt *st, int i, uint8_t *out, size_t cap, size_t *len,
		   int null_ok)
{
	const void *b;
	int n, type = sqlite3_column_type(st, i);

	*len = 0;
	if (type == SQLITE_NULL && null_ok)
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

static int hold_row(sqlite3_stmt *st, void *elem)
{
	struct catalog_hold *h = elem;
	int rc;

	memset(h, 0, sizeof(*h));
	rc = catalog_col_blob(st, 0, h->hash, sizeof(h->hash), 0);
	if (!rc)
		rc = col_var(st, 1, h->path_ct, sizeof(h->path_ct), &h->path_ct_len, 0);
	if (!rc)
		rc = col_var(st, 2, h->reason_ct, sizeof(h->reason_ct), &h->reason_ct_len,
			     1);
	if (!rc)
		rc = catalog_col_int(st, 3, &h->created_us, 0, 1);
	if (!rc)
		rc = catalog_col_blob(st, 4, h->mac, sizeof(h->mac), 0);
	return rc;
}

int catalog_hold_get(struct catalog *cat, const uint8_t hash[CRYPT_HASH_BYTES],
		     struct catalog_hold *out)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prep(cat, "SELECT " HOLD_COLS " FROM retention_holds WHERE hash = ?1", &st,
		  0);
	if (rc)
		goto out;
	sqlite3_bind_blob(st, 1, hash, CRYPT_HASH_BYTES, SQLITE_STATIC);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	rc = hold_row(st, out);
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_hold_put(struct catalog *cat, const struct catalog_hold *h)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (h->path_ct_len == 0 || h->path_ct_len > sizeof(h->path_ct) ||
	    h->reason_ct_len > sizeof(h->reason_ct))
		return -EINVAL;
	rc = prep(cat,
		  "INSERT OR REPLACE INTO retention_holds(" HOLD_COLS
		  ") VALUES(?1, ?2, ?3, ?4, ?5)",
		  &st, 1);
	if (rc)
		return rc;
	sqlite3_bind_blob(st, 1, h->hash, CRYPT_HASH_BYTES, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, h->path_ct, (int)h->path_ct_len, SQLITE_STATIC);
	if (h->reason_ct_len)
		sqlite3_bind_blob(st, 3, h->reason_ct, (int)h->reason_ct_len,
				  SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 3);
	sqlite3_bind_int64(st, 4, h->created_us);
	sqlite3_bind_blob(st, 5, h->mac, CRYPT_MAC_BYTES, SQLITE_STATIC);
	rc = catalog_step_done(cat, st);
	sqlite3_finalize(st);
	return rc;
}

int catalog_hold_delete(struct catalog *cat, const uint8_t hash[CRYPT_HASH_BYTES])
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = prep(cat, "DELETE FROM retention_holds WHERE hash = ?1", &st, 1);
	if (rc)
		return rc;
	sqlite3_bind_blob(st, 1, hash, CRYPT_HASH_BYTES, SQLITE_STATIC);
	rc = catalog_step_done(cat, st);
	if (rc == 0 && sqlite3_changes(cat->db) == 0)
		rc = -ENOENT;
	sqlite3_finalize(st);
	return rc;
}

int catalog_hold_list(struct catalog *cat, struct catalog_hold **out, size_t *n)
{
	sqlite3_stmt *st = NULL;
	void *v;
	int rc;

	*out = NULL;
	*n = 0;
	rc = prep(cat, "SELECT " HOLD_COLS " FROM retention_holds ORDER BY hash", &st, 0);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	rc = catalog_collect(cat, st, sizeof(**out), hold_row, &v, n);
	if (rc == 0)
		*out = v;
	return rc;
}

int catalog_erased_get(struct catalog *cat, const uint8_t file_id[CRYPT_FILE_ID_BYTES],
		       struct catalog_erased *out)
{
	sqlite3_stmt *st = NULL;
	int64_t done = 0;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = prep(cat,
		  "SELECT erased_us, audit_seq, done FROM retention_erased"
		  " WHERE file_id = ?1",
		  &st, 0);
	if (rc)
		goto out;
	sqlite3_bind_blob(st, 1, file_id, CRYPT_FILE_ID_BYTES, SQLITE_STATIC);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	memcpy(out->file_id, file_id, CRYPT_FILE_ID_BYTES);
	rc = catalog_col_int(st, 0, &out->erased_us, 0, 1);
	if (!rc)
		rc = catalog_col_int(st, 1, &out->audit_seq, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 2, &done, 0, 0);
	if (!rc && done > 1)
		rc = -EIO;
	out->done = done == 1;
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_erased_put(struct catalog *cat, const struct catalog_erased *e)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (e->audit_seq < 0)
		return -EINVAL;
	rc = prep(cat,
		  "INSERT OR REPLACE INTO retention_erased(file_id, erased_us,"
		  " audit_seq, done) VALUES(?1, ?2, ?3, ?4)",
		  &st, 1);
	if (rc)
		return rc;
	sqlite3_bind_blob(st, 1, e->file_id, CRYPT_FILE_ID_BYTES, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, e->erased_us);
	sqlite3_bind_int64(st, 3, e->audit_seq);
	sqlite3_bind_int64(st, 4, e->done ? 1 : 0);
	rc = catalog_step_done(cat, st);
	sqlite3_finalize(st);
	return rc;
}

int catalog_erased_count(struct catalog *cat, int64_t *done, int64_t *pending)
{
	sqlite3_stmt *st = NULL;
	int rc;

	*done = *pending = 0;
	rc = prep(cat,
		  "SELECT coalesce(sum(done = 1), 0), coalesce(sum(done = 0), 0)"
		  " FROM retention_erased",
		  &st, 0);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		rc = catalog_col_int(st, 0, done, 0, 0);
		if (!rc)
			rc = catalog_col_int(st, 1, pending, 0, 0);
	} else {
		rc = catalog_errno(cat->db, rc);
	}
	sqlite3_finalize(st);
	return rc;
}
