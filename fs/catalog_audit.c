/*
 * catalog_audit.c — the audit chain's rows (part of the catalogue module;
 * see catalog_int.h).
 *
 * Owns the `audit` table, its indexes (subject, time, uid: the questions a
 * data-protection officer asks) and the decoding of its rows.  Rows are
 * opaque to this file: the chain MACs are computed and checked by
 * fs/audit.c, so a row that decodes here may still be forged; a row that
 * does not decode (wrong type or size) is damage and reported as -EIO.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_int.h"

const char catalog_audit_ddl[] =
	"CREATE TABLE audit(seq INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL,"
	" op TEXT NOT NULL, outcome INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" gid INTEGER NOT NULL, groups TEXT NOT NULL, auid INTEGER NOT NULL,"
	" ses INTEGER NOT NULL, pid INTEGER NOT NULL, comm TEXT NOT NULL,"
	" exe TEXT NOT NULL, subject BLOB, path BLOB, path2 BLOB,"
	" flags INTEGER NOT NULL, bytes INTEGER NOT NULL, count INTEGER NOT NULL,"
	" ref INTEGER NOT NULL, detail TEXT NOT NULL, prev BLOB NOT NULL,"
	" mac BLOB NOT NULL);"
	"CREATE INDEX audit_subject ON audit(subject);"
	"CREATE INDEX audit_ts ON audit(ts_us);"
	"CREATE INDEX audit_uid ON audit(uid);";

/* Schema 2: most records name no subject (every change outside a subject
 * directory, every mount and key event), and a full index kept a NULL
 * entry for each, one b-tree insert per record for nothing.  A query
 * "subject = ?" implies "subject IS NOT NULL", so SQLite still picks this
 * index for it.  Measured: 5.8 -> 4.9 us per inserted record. */
const char catalog_audit_ddl_v2[] =
	"DROP INDEX IF EXISTS audit_subject;"
	"CREATE INDEX audit_subject ON audit(subject) WHERE subject IS NOT NULL;";

#define AUDIT_COLS                                                                       \
	"seq, ts_us, op, outcome, uid, gid, groups, auid, ses, pid, comm, exe,"          \
	" subject, path, path2, flags, bytes, count, ref, detail, prev, mac"

/* A running query. */
struct catalog_audit_iter {
	struct catalog *cat; /* connection the statement belongs to */
	sqlite3_stmt *st;    /* the SELECT, stepped by catalog_audit_next */
};

static int row_ok(const struct catalog_audit_row *r)
{
	return r->seq >= 1 && r->outcome >= 0 && r->uid >= 0 && r->gid >= 0 &&
	       r->auid >= 0 && r->ses >= 0 && r->pid >= 0 && r->flags >= 0 &&
	       r->bytes >= 0 && r->count >= 0 && r->ref >= 0 && r->op[0] &&
	       catalog_field_ok(r->op, sizeof(r->op)) &&
	       catalog_field_ok(r->groups, sizeof(r->groups)) &&
	       catalog_field_ok(r->comm, sizeof(r->comm)) &&
	       catalog_field_ok(r->exe, sizeof(r->exe)) &&
	       catalog_field_ok(r->detail, sizeof(r->detail)) &&
	       r->path_len <= sizeof(r->path) && r->path2_len <= sizeof(r->path2);
}

int catalog_audit_insert(struct catalog *cat, const struct catalog_audit_row *r)
{
	sqlite3_stmt *st;
	int rc = 0;

	if (!row_ok(r))
		return -EINVAL;
	if (cat->rdonly)
		return -EROFS;
	pthread_mutex_lock(&cat->stmt_lock);
	if (!cat->audit_insert) {
		int prc = sqlite3_prepare_v3(
			cat->db,
			"INSERT INTO audit(" AUDIT_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6,"
			" ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
			" ?18, ?19, ?20, ?21, ?22)",
			-1, SQLITE_PREPARE_PERSISTENT, &cat->audit_insert, NULL);

		if (prc != SQLITE_OK) {
			sqlite3_finalize(cat->audit_insert);
			cat->audit_insert = NULL;
			rc = catalog_errno(cat->db, prc);
			goto out;
		}
	}
	st = cat->audit_insert;
	sqlite3_bind_int64(st, 1, r->seq);
	sqlite3_bind_int64(st, 2, r->ts_us);
	sqlite3_bind_text(st, 3, r->op, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, r->outcome);
	sqlite3_bind_int64(st, 5, r->uid);
	sqlite3_bind_int64(st, 6, r->gid);
	sqlite3_bind_text(st, 7, r->groups, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 8, r->auid);
	sqlite3_bind_int64(st, 9, r->ses);
	sqlite3_bind_int64(st, 10, r->pid);
	sqlite3_bind_text(st, 11, r->comm, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 12, r->exe, -1, SQLITE_STATIC);
	if (r->has_subject)
		sqlite3_bind_blob(st, 13, r->subject, sizeof(r->subject), SQLITE_STATIC);
	if (r->path_len)
		sqlite3_bind_blob(st, 14, r->path, (int)r->path_len, SQLITE_STATIC);
	if (r->path2_len)
		sqlite3_bind_blob(st, 15, r->path2, (int)r->path2_len, SQLITE_STATIC);
	sqlite3_bind_int64(st, 16, r->flags);
	sqlite3_bind_int64(st, 17, r->bytes);
	sqlite3_bind_int64(st, 18, r->count);
	sqlite3_bind_int64(st, 19, r->ref);
	sqlite3_bind_text(st, 20, r->detail, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 21, r->prev, sizeof(r->prev), SQLITE_STATIC);
	sqlite3_bind_blob(st, 22, r->mac, sizeof(r->mac), SQLITE_STATIC);
	rc = catalog_step_done(cat, st);
	/* Unbound columns must read NULL next time, and SQLITE_STATIC
	 * bindings must not outlive the caller's row. */
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
out:
	pthread_mutex_unlock(&cat->stmt_lock);
	return rc;
}

int catalog_audit_last(struct catalog *cat, int64_t *seq, uint8_t mac[CRYPT_MAC_BYTES])
{
	sqlite3_stmt *st = NULL;
	int rc;

	*seq = 0;
	memset(mac, 0, CRYPT_MAC_BYTES);
	rc = catalog_prep(cat, "SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1",
			  &st);
	if (rc)
		goto out;
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		rc = 0;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		rc = catalog_errno(cat->db, rc);
		goto out;
	}
	rc = catalog_col_int(st, 0, seq, 0, 0);
	if (!rc)
		rc = catalog_col_blob(st, 1, mac, CRYPT_MAC_BYTES, 0);
out:
	sqlite3_finalize(st);
	return rc;
}

void catalog_audit_filter_all(struct catalog_audit_filter *f)
{
	memset(f, 0, sizeof(*f));
	f->uid = -1;
	f->since_us = INT64_MIN;
	f->until_us = INT64_MAX;
}

int catalog_audit_query(struct catalog *cat, const struct catalog_audit_filter *f,
			struct catalog_audit_iter **out)
{
	struct catalog_audit_iter *it = NULL;
	char sql[512];
	int rc, n;

	*out = NULL;
	/* Fixed parameter numbers; only the conditions that apply are in the
	 * text, so SQLite picks the index of the most selective one. */
	n = snprintf(sql, sizeof(sql),
		     "SELECT " AUDIT_COLS " FROM audit WHERE seq > ?1%s%s%s%s%s%s"
		     " ORDER BY seq",
		     f->subject ? " AND subject = ?2" : "",
		     f->uid >= 0 ? " AND uid = ?3" : "",
		     f->since_us != INT64_MIN ? " AND ts_us >= ?4" : "",
		     f->until_us != INT64_MAX ? " AND ts_us <= ?5" : "",
		     f->op ? " AND op = ?6" : "", f->denied ? " AND outcome != 0" : "");
	if (n < 0 || (size_t)n >= sizeof(sql))
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	it->cat = cat;
	rc = catalog_prep(cat, sql, &it->st);
	if (rc)
		goto out;
	sqlite3_bind_int64(it->st, 1, f->after_seq);
	if (f->subject)
		sqlite3_bind_blob(it->st, 2, f->subject, CRYPT_HASH_BYTES,
				  SQLITE_TRANSIENT);
	if (f->uid >= 0)
		sqlite3_bind_int64(it->st, 3, f->uid);
	if (f->since_us != INT64_MIN)
		sqlite3_bind_int64(it->st, 4, f->since_us);
	if (f->until_us != INT64_MAX)
		sqlite3_bind_int64(it->st, 5, f->until_us);
	if (f->op)
		sqlite3_bind_text(it->st, 6, f->op, -1, SQLITE_TRANSIENT);
out:
	if (rc) {
		catalog_audit_iter_free(it);
		return rc;
	}
	*out = it;
	return 0;
}

/* A BLOB column of at most cap bytes (NULL gives length 0). */
static int col_var_blob(sqlite3_stmt *st, int i, uint8_t *out, size_t cap, size_t *len)
{
	const void *b;
	int type = sqlite3_column_type(st, i), n;

	*len = 0;
	if (type == SQLITE_NULL)
		return 0;
	if (type != SQLITE_BLOB)
		return -EIO;
	b = sqlite3_column_blob(st, i);
	n = sqlite3_column_bytes(st, i);
	/* An empty sealed path cannot exist: it would read as "no path". */
	if (!b || n <= 0 || (size_t)n > cap)
		return -EIO;
	memcpy(out, b, (size_t)n);
	*len = (size_t)n;
	return 0;
}

static int decode_row(sqlite3_stmt *st, struct catalog_audit_row *r)
{
	int rc;

	memset(r, 0, sizeof(*r));
	rc = catalog_col_int(st, 0, &r->seq, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 1, &r->ts_us, 0, 1);
	if (!rc)
		rc = catalog_col_text(st, 2, r->op, sizeof(r->op));
	if (!rc)
		rc = catalog_col_int(st, 3, &r->outcome, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 4, &r->uid, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 5, &r->gid, 0, 0);
	if (!rc)
		rc = catalog_col_text(st, 6, r->groups, sizeof(r->groups));
	if (!rc)
		rc = catalog_col_int(st, 7, &r->auid, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 8, &r->ses, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 9, &r->pid, 0, 0);
	if (!rc)
		rc = catalog_col_text(st, 10, r->comm, sizeof(r->comm));
	if (!rc)
		rc = catalog_col_text(st, 11, r->exe, sizeof(r->exe));
	if (!rc) {
		r->has_subject = sqlite3_column_type(st, 12) != SQLITE_NULL;
		rc = catalog_col_blob(st, 12, r->subject, sizeof(r->subject), 1);
	}
	if (!rc)
		rc = col_var_blob(st, 13, r->path, sizeof(r->path), &r->path_len);
	if (!rc)
		rc = col_var_blob(st, 14, r->path2, sizeof(r->path2), &r->path2_len);
	if (!rc)
		rc = catalog_col_int(st, 15, &r->flags, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 16, &r->bytes, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 17, &r->count, 0, 0);
	if (!rc)
		rc = catalog_col_int(st, 18, &r->ref, 0, 0);
	if (!rc)
		rc = catalog_col_text(st, 19, r->detail, sizeof(r->detail));
	if (!rc)
		rc = catalog_col_blob(st, 20, r->prev, sizeof(r->prev), 0);
	if (!rc)
		rc = catalog_col_blob(st, 21, r->mac, sizeof(r->mac), 0);
	return rc;
}

int catalog_audit_next(struct catalog_audit_iter *it, struct catalog_audit_row *r)
{
	int rc = sqlite3_step(it->st);

	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return catalog_errno(it->cat->db, rc);
	rc = decode_row(it->st, r);
	return rc ? rc : 1;
}

int catalog_audit_set_durable(struct catalog *cat, int full)
{
	return catalog_exec(cat, full ? "PRAGMA synchronous = FULL"
				      : "PRAGMA synchronous = NORMAL");
}

void catalog_audit_iter_free(struct catalog_audit_iter *it)
{
	if (!it)
		return;
	sqlite3_finalize(it->st);
	free(it);
}
