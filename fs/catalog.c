/*
 * catalog.c — the store's database (STORE/custodian.db), see catalog.h.
 *
 * This file owns every SQLite call in custodian: opening the connection with
 * the settings the rest of the design relies on (WAL, synchronous=FULL,
 * secure_delete so that crypto-shredding really destroys wrapped keys,
 * foreign keys, a busy timeout), the schema and its migrations, and the one
 * mapping from SQLite result codes to -errno (catalog_errno).  Rows are
 * decoded defensively: a column of the wrong type or a blob of the wrong
 * length is reported as damage (-EIO), never copied blindly.  Nothing here
 * logs: SQLite messages may quote statement text, and rows hold key material.
 */
#include "catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "catalog_int.h"
#include "sys.h"

/*
 * Schema migrations: entry N turns schema N into schema N+1.  A later issue
 * adds a table by appending an entry; CATALOG_SCHEMA follows automatically.
 */
static const char catalog_core_ddl[] =
	"CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);"
	"CREATE TABLE slots(id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
	" label TEXT NOT NULL DEFAULT '', salt BLOB, opslimit INTEGER,"
	" memlimit INTEGER, wrapped BLOB NOT NULL, created_us INTEGER NOT NULL);"
	"CREATE TABLE policies(version INTEGER PRIMARY KEY, text TEXT NOT NULL,"
	" applied_by TEXT NOT NULL, applied_us INTEGER NOT NULL, mac BLOB NOT NULL);";

/* Each entry is one migration step, run in order inside one transaction.
 * Version 1 is the first released schema: the core tables plus the tables
 * of each concern file (catalog_audit.c, catalog_subjects.c, ...). */
static const char *const *const migrations[] = {
	(const char *const[]){catalog_core_ddl, catalog_audit_ddl, catalog_subjects_ddl,
			      catalog_retention_ddl, NULL},
	/* 1 -> 2: the audit subject index covers subject records only. */
	(const char *const[]){catalog_audit_ddl_v2, NULL},
};

#define CATALOG_SCHEMA ((int64_t)ARRAY_LEN(migrations))
#define SCHEMA_KEY "schema"

/*
 * The one place SQLite result codes become -errno.  CANTOPEN is refined with
 * the errno SQLite saw, so callers can tell a missing file from a forbidden
 * one.
 */
int catalog_errno(sqlite3 *db, int rc)
{
	int e;

	if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE)
		return 0;
	if (rc == SQLITE_CANTOPEN_SYMLINK)
		return -ELOOP;
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_CANTOPEN:
		e = db ? sqlite3_system_errno(db) : 0;
		if (e == ENOENT || e == ENOTDIR)
			return -ENOENT;
		if (e == ELOOP || e == EROFS || e == EMFILE || e == ENFILE || e == ENOMEM)
			return -e;
		return -EACCES;
	case SQLITE_IOERR:
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
	default:
		return -EIO;
	}
}

/* Prepares one statement; *st is NULL on failure. */
int catalog_prep(struct catalog *cat, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v2(cat->db, sql, -1, st, NULL);

	if (rc != SQLITE_OK) {
		sqlite3_finalize(*st);
		*st = NULL;
		return catalog_errno(cat->db, rc);
	}
	return 0;
}

/* Runs SQL that returns no rows we need (pragmas, DDL, transaction control). */
int catalog_exec(struct catalog *cat, const char *sql)
{
	return catalog_errno(cat->db, sqlite3_exec(cat->db, sql, NULL, NULL, NULL));
}

/* Steps a statement to completion, ignoring rows (INSERT/UPDATE). */
int catalog_step_done(struct catalog *cat, sqlite3_stmt *st)
{
	int rc;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	return catalog_errno(cat->db, rc);
}

int catalog_step_row(struct catalog *cat, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_DONE ? -ENOENT : catalog_errno(cat->db, rc);
}

/* --- column decoding: wrong type or size means the row is damaged --------- */

/* TEXT column into a fixed buffer; must fit with its NUL and hold no NUL. */
int catalog_col_text(sqlite3_stmt *st, int i, char *out, size_t cap)
{
	const unsigned char *s;
	int n;

	if (sqlite3_column_type(st, i) != SQLITE_TEXT)
		return -EIO;
	s = sqlite3_column_text(st, i);
	n = sqlite3_column_bytes(st, i);
	if (!s || n < 0 || (size_t)n >= cap || memchr(s, 0, (size_t)n))
		return -EIO;
	memcpy(out, s, (size_t)n);
	out[n] = 0;
	return 0;
}

/* BLOB column of exactly n bytes; NULL gives zeros when null_ok. */
int catalog_col_blob(sqlite3_stmt *st, int i, void *out, size_t n, int null_ok)
{
	const void *b;
	int type = sqlite3_column_type(st, i);

	if (type == SQLITE_NULL && null_ok) {
		memset(out, 0, n);
		return 0;
	}
	if (type != SQLITE_BLOB)
		return -EIO;
	b = sqlite3_column_blob(st, i);
	if ((size_t)sqlite3_column_bytes(st, i) != n || !b)
		return -EIO;
	memcpy(out, b, n);
	return 0;
}

/* INTEGER column; NULL gives 0 when null_ok; negative only if signed_ok. */
int catalog_col_int(sqlite3_stmt *st, int i, int64_t *out, int null_ok, int signed_ok)
{
	int type = sqlite3_column_type(st, i);

	if (type == SQLITE_NULL && null_ok) {
		*out = 0;
		return 0;
	}
	if (type != SQLITE_INTEGER)
		return -EIO;
	*out = sqlite3_column_int64(st, i);
	if (*out < 0 && !signed_ok)
		return -EIO;
	return 0;
}

/* A C string that fits (with its NUL) in a field of cap bytes. */
int catalog_field_ok(const char *s, size_t cap)
{
	return memchr(s, 0, cap) != NULL;
}

int catalog_collect(struct catalog *cat, sqlite3_stmt *st, size_t size,
		    int (*decode)(sqlite3_stmt *st, void *elem), void **out, size_t *n)
{
	char *v = NULL, *nv;
	size_t cnt = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (cnt == cap) {
			cap = cap ? 2 * cap : 8;
			nv = realloc(v, cap * size);
			if (!nv) {
				rc = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		rc = decode(st, v + cnt * size);
		if (rc)
			goto out;
		cnt++;
	}
	rc = catalog_errno(cat->db, rc);
out:
	sqlite3_finalize(st);
	if (rc) {
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

/* --- schema ---------------------------------------------------------------- */

/* Reads meta 'schema'.  Accepts an integer or decimal text (as a person or an
 * older tool may have written it); anything else is not our catalogue. */
static int read_schema(struct catalog *cat, int64_t *version)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *s;
	int64_t v = 0;
	int rc, n, i;

	rc = catalog_prep(cat, "SELECT value FROM meta WHERE key = '" SCHEMA_KEY "'",
			  &st);
	if (rc)
		goto out; /* no meta table: not a custodian catalogue */
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -EIO : catalog_errno(cat->db, rc);
		goto out;
	}
	switch (sqlite3_column_type(st, 0)) {
	case SQLITE_INTEGER:
		v = sqlite3_column_int64(st, 0);
		break;
	case SQLITE_TEXT:
	case SQLITE_BLOB:
		s = sqlite3_column_blob(st, 0);
		n = sqlite3_column_bytes(st, 0);
		if (!s || n < 1 || n > 18) {
			rc = -EIO;
			goto out;
		}
		for (i = 0; i < n; i++) {
			if (s[i] < '0' || s[i] > '9') {
				rc = -EIO;
				goto out;
			}
			v = v * 10 + (s[i] - '0');
		}
		break;
	default:
		rc = -EIO;
		goto out;
	}
	if (v < 1) {
		rc = -EIO;
		goto out;
	}
	*version = v;
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

/* Brings the schema from `from` to CATALOG_SCHEMA in one write transaction.
 * from == 0 means a fresh, empty file.  Another opener may have migrated
 * meanwhile, so the version is read again under the write lock. */
static int migrate(struct catalog *cat, int64_t from)
{
	sqlite3_stmt *st = NULL;
	int64_t v = from;
	int rc;

	rc = catalog_exec(cat, "BEGIN IMMEDIATE");
	if (rc)
		return rc;
	if (from > 0) {
		rc = read_schema(cat, &v);
		if (rc)
			goto out;
	}
	if (v >= CATALOG_SCHEMA)
		goto out;
	for (; v < CATALOG_SCHEMA; v++) {
		for (const char *const *ddl = migrations[v]; *ddl; ddl++) {
			rc = catalog_exec(cat, *ddl);
			if (rc)
				goto out;
		}
	}
	rc = catalog_prep(cat,
			  "INSERT INTO meta(key, value) VALUES('" SCHEMA_KEY "', ?1)"
			  " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
			  &st);
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, CATALOG_SCHEMA);
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	if (rc == 0)
		rc = catalog_exec(cat, "COMMIT");
	if (rc)
		(void)catalog_exec(cat, "ROLLBACK");
	return rc;
}

/* --- open / close ------------------------------------------------------------ */

/* "file:" URI for path with every byte outside the unreserved set escaped. */
static char *path_uri(const char *path, const char *query)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(path), i, o = 0;
	char *u = malloc(5 + 3 * n + strlen(query) + 1);

	if (!u)
		return NULL;
	memcpy(u, "file:", 5);
	o = 5;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)path[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr("/._-~", c)) {
			u[o++] = (char)c;
		} else {
			u[o++] = '%';
			u[o++] = hex[c >> 4];
			u[o++] = hex[c & 15];
		}
	}
	strcpy(u + o, query);
	return u;
}

/* path + suffix ("-wal", "-shm"), malloc'd. */
static char *side_path(const char *path, const char *suffix)
{
	char *p = malloc(strlen(path) + strlen(suffix) + 1);

	if (p) {
		strcpy(p, path);
		strcat(p, suffix);
	}
	return p;
}

/* 1 if path+suffix exists (or cannot be checked), 0 if it does not. */
static int side_exists(const char *path, const char *suffix)
{
	struct stat sb;
	char *p = side_path(path, suffix);
	int r = 1;

	if (p && lstat(p, &sb) < 0 && errno == ENOENT)
		r = 0;
	free(p);
	return r;
}

/* Opens the SQLite connection and applies per-connection settings that do
 * not write to the file. */
static int db_connect(struct catalog *cat, const char *name, int oflags)
{
	int rc;

	oflags |= SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_EXRESCODE;
	rc = sqlite3_open_v2(name, &cat->db, oflags, NULL);
	if (rc != SQLITE_OK) {
		rc = catalog_errno(cat->db, rc);
		goto out;
	}
	sqlite3_extended_result_codes(cat->db, 1);
	rc = catalog_errno(cat->db, sqlite3_busy_timeout(cat->db, 5000));
	if (rc)
		goto out;
	/* The file may have been tampered with: no schema tricks, no SQL
	 * functions run from views or triggers someone planted. */
	sqlite3_db_config(cat->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
	sqlite3_db_config(cat->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
	rc = catalog_exec(cat, "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON");
out:
	if (rc) {
		sqlite3_close_v2(cat->db);
		cat->db = NULL;
	}
	return rc;
}

/* Settings that read the file (and, read-write, may switch it to WAL). */
static int configure(struct catalog *cat)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *mode;
	int rc;

	rc = catalog_exec(cat, "PRAGMA synchronous = FULL");
	if (rc || cat->rdonly)
		return rc;
	rc = catalog_prep(cat, "PRAGMA journal_mode = WAL", &st);
	if (rc)
		goto out;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -EIO : catalog_errno(cat->db, rc);
		goto out;
	}
	mode = sqlite3_column_text(st, 0);
	rc = mode && strcmp((const char *)mode, "wal") == 0 ? 0 : -EIO;
out:
	sqlite3_finalize(st);
	return rc;
}

/* Creates the file ourselves (O_EXCL, 0600) so SQLite never creates one and
 * an existing file is never taken over. */
static int create_file(const char *path)
{
	int fd, rc = 0;

	/* A stray WAL beside a new database would be replayed into it. */
	if (side_exists(path, "-wal") || side_exists(path, "-shm"))
		return -EEXIST;
	fd = sys.openat(AT_FDCWD, path,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* The umask may have been looser or tighter than we want. */
	if (fchmod(fd, 0600) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* Removes a half-created catalogue and its side files. */
static void remove_files(const char *path)
{
	static const char *const sfx[] = {"-wal", "-shm", "-journal"};
	size_t i;

	sys.unlinkat(AT_FDCWD, path, 0);
	for (i = 0; i < ARRAY_LEN(sfx); i++) {
		char *p = side_path(path, sfx[i]);

		if (p)
			sys.unlinkat(AT_FDCWD, p, 0);
		free(p);
	}
}

/*
 * Read-only connection.  A WAL database normally needs its -shm file; on a
 * read-only directory or medium it cannot be created.  When no -wal file
 * exists every committed page is in the main file and no writer is active
 * (a writer always has the -wal open), so the file can safely be read as
 * immutable, which needs neither side file.
 */
static int open_rdonly(struct catalog *cat, const char *path, int64_t *version)
{
	char *uri = NULL;
	int rc;

	rc = db_connect(cat, path, SQLITE_OPEN_READONLY);
	if (rc)
		return rc;
	rc = read_schema(cat, version);
	if (rc != -EACCES && rc != -EROFS && rc != -ENOENT)
		return rc;
	if (side_exists(path, "-wal"))
		return rc;
	sqlite3_close_v2(cat->db);
	cat->db = NULL;
	uri = path_uri(path, "?immutable=1");
	if (!uri)
		return -ENOMEM;
	rc = db_connect(cat, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
	free(uri);
	if (rc)
		return rc;
	return read_schema(cat, version);
}

int catalog_open(const char *path, int flags, struct catalog **out)
{
	struct catalog *cat = NULL;
	int64_t version = 0;
	int created = 0, rc;

	*out = NULL;
	if (!path || !*path || (flags & ~(CATALOG_CREATE | CATALOG_RDONLY)) ||
	    ((flags & CATALOG_CREATE) && (flags & CATALOG_RDONLY)))
		return -EINVAL;
	cat = calloc(1, sizeof(*cat));
	if (cat)
		pthread_mutex_init(&cat->stmt_lock, NULL);
	if (!cat)
		return -ENOMEM;
	if (flags & CATALOG_RDONLY) {
		cat->rdonly = 1;
		rc = open_rdonly(cat, path, &version);
		if (rc)
			goto out;
		if (version > CATALOG_SCHEMA) {
			rc = -EPROTO;
			goto out;
		}
		/* An older schema would need a migration we may not write. */
		rc = version < CATALOG_SCHEMA ? -EROFS : configure(cat);
		goto out;
	}
	if (flags & CATALOG_CREATE) {
		rc = create_file(path);
		if (rc)
			goto out;
		created = 1;
	}
	/* No SQLITE_OPEN_CREATE: a missing file stays missing. */
	rc = db_connect(cat, path, SQLITE_OPEN_READWRITE);
	if (rc)
		goto out;
	/* SQLite silently falls back to read-only if the file is not writable. */
	cat->rdonly = sqlite3_db_readonly(cat->db, "main") == 1;
	if (!created) {
		rc = read_schema(cat, &version);
		if (rc)
			goto out;
		if (version > CATALOG_SCHEMA) {
			rc = -EPROTO;
			goto out;
		}
	}
	/* Only now that the file is known to be ours may it be switched to WAL. */
	rc = configure(cat);
	if (rc)
		goto out;
	if (version < CATALOG_SCHEMA)
		rc = cat->rdonly ? -EROFS : migrate(cat, version);
out:
	if (rc) {
		catalog_close(cat);
		if (created)
			remove_files(path);
		return rc;
	}
	*out = cat;
	return 0;
}

void catalog_close(struct catalog *cat)
{
	if (!cat)
		return;
	/* Other statements are always finalized before returning, so this
	 * closes. */
	sqlite3_finalize(cat->audit_insert);
	sqlite3_close_v2(cat->db);
	pthread_mutex_destroy(&cat->stmt_lock);
	free(cat);
}

int catalog_checkpoint(struct catalog *cat)
{
	if (cat->rdonly)
		return -EROFS;
	return catalog_errno(
		cat->db, sqlite3_wal_checkpoint_v2(
				 cat->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL));
}

/* --- transactions -------------------------------------------------------------- */

int catalog_begin(struct catalog *cat)
{
	if (cat->rdonly)
		return -EROFS;
	/* One transaction per connection: another is already open (perhaps by
	 * another thread), so this caller has to wait its turn. */
	if (!sqlite3_get_autocommit(cat->db))
		return -EBUSY;
	return catalog_exec(cat, "BEGIN IMMEDIATE");
}

int catalog_commit(struct catalog *cat)
{
	return catalog_exec(cat, "COMMIT");
}

void catalog_rollback(struct catalog *cat)
{
	if (!sqlite3_get_autocommit(cat->db))
		(void)catalog_exec(cat, "ROLLBACK");
}

/* --- meta ---------------------------------------------------------------------- */

int catalog_meta_get(struct catalog *cat, const char *key, void *buf, size_t cap,
		     size_t *len)
{
	sqlite3_stmt *st = NULL;
	const void *v;
	int rc, n;

	if (!key || !*key || (cap && !buf))
		return -EINVAL;
	rc = catalog_prep(cat, "SELECT value FROM meta WHERE key = ?1", &st);
	if (rc)
		goto out;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	v = sqlite3_column_blob(st, 0);
	n = sqlite3_column_bytes(st, 0);
	if (n < 0 || (n > 0 && !v)) {
		rc = n > 0 ? -ENOMEM : -EIO;
		goto out;
	}
	if (len)
		*len = (size_t)n;
	if ((size_t)n > cap) {
		rc = -ENOSPC;
		goto out;
	}
	if (n)
		memcpy(buf, v, (size_t)n);
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_meta_put(struct catalog *cat, const char *key, const void *val, size_t len)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (!key || !*key || (len && !val))
		return -EINVAL;
	/* The schema version belongs to the migrations alone. */
	if (strcmp(key, SCHEMA_KEY) == 0)
		return -EINVAL;
	if (cat->rdonly)
		return -EROFS;
	rc = catalog_prep(cat,
			  "INSERT INTO meta(key, value) VALUES(?1, ?2)"
			  " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
			  &st);
	if (rc)
		goto out;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	/* A non-NULL pointer, so an empty value is an empty blob, not NULL. */
	rc = sqlite3_bind_blob64(st, 2, len ? val : (const void *)"", len, SQLITE_STATIC);
	if (rc != SQLITE_OK) {
		rc = rc == SQLITE_TOOBIG ? -EFBIG : catalog_errno(cat->db, rc);
		goto out;
	}
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}

/* --- key slots ----------------------------------------------------------------- */

int catalog_slot_add(struct catalog *cat, struct catalog_slot *slot)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (!catalog_field_ok(slot->kind, sizeof(slot->kind)) || !slot->kind[0] ||
	    !catalog_field_ok(slot->label, sizeof(slot->label)) ||
	    slot->opslimit > INT64_MAX || slot->memlimit > INT64_MAX)
		return -EINVAL;
	if (cat->rdonly)
		return -EROFS;
	rc = catalog_prep(
		cat,
		"INSERT INTO slots(kind, label, salt, opslimit, memlimit, wrapped,"
		" created_us) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
		&st);
	if (rc)
		goto out;
	sqlite3_bind_text(st, 1, slot->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, slot->label, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, slot->salt, sizeof(slot->salt), SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, (int64_t)slot->opslimit);
	sqlite3_bind_int64(st, 5, (int64_t)slot->memlimit);
	sqlite3_bind_blob(st, 6, slot->wrapped, sizeof(slot->wrapped), SQLITE_STATIC);
	sqlite3_bind_int64(st, 7, slot->created_us);
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -EIO : catalog_errno(cat->db, rc);
		goto out;
	}
	slot->id = sqlite3_column_int64(st, 0);
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}

/* Decodes one row of the slot query below. */
static int slot_row(sqlite3_stmt *st, void *elem)
{
	struct catalog_slot *s = elem;
	int64_t ops, mem;
	int rc;

	memset(s, 0, sizeof(*s));
	rc = catalog_col_int(st, 0, &s->id, 0, 0);
	if (!rc)
		rc = catalog_col_text(st, 1, s->kind, sizeof(s->kind));
	if (!rc)
		rc = catalog_col_text(st, 2, s->label, sizeof(s->label));
	if (!rc)
		rc = catalog_col_blob(st, 3, s->salt, sizeof(s->salt), 1);
	if (!rc)
		rc = catalog_col_int(st, 4, &ops, 1, 0);
	if (!rc)
		rc = catalog_col_int(st, 5, &mem, 1, 0);
	if (!rc)
		rc = catalog_col_blob(st, 6, s->wrapped, sizeof(s->wrapped), 0);
	if (!rc)
		rc = catalog_col_int(st, 7, &s->created_us, 0, 1);
	if (!rc) {
		s->opslimit = (uint64_t)ops;
		s->memlimit = (uint64_t)mem;
	}
	return rc;
}

int catalog_slot_list(struct catalog *cat, struct catalog_slot **out, size_t *n)
{
	sqlite3_stmt *st = NULL;
	void *v;
	int rc;

	*out = NULL;
	*n = 0;
	rc = catalog_prep(cat,
			  "SELECT id, kind, label, salt, opslimit, memlimit, wrapped,"
			  " created_us FROM slots ORDER BY id",
			  &st);
	if (rc)
		return rc;
	rc = catalog_collect(cat, st, sizeof(**out), slot_row, &v, n);
	if (rc == 0)
		*out = v;
	return rc;
}

int catalog_slot_remove(struct catalog *cat, int64_t id)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (cat->rdonly)
		return -EROFS;
	/* RETURNING rather than sqlite3_changes(): another thread may run a
	 * statement on this connection between the two calls. */
	rc = catalog_prep(cat, "DELETE FROM slots WHERE id = ?1 RETURNING id", &st);
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, id);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	rc = catalog_step_done(cat, st);
out:
	sqlite3_finalize(st);
	return rc;
}

/* --- policy versions ------------------------------------------------------------- */

int catalog_policy_next_version(struct catalog *cat, int64_t *version)
{
	sqlite3_stmt *st = NULL;
	int rc;

	rc = catalog_prep(cat, "SELECT COALESCE(MAX(version), 0) + 1 FROM policies", &st);
	if (rc)
		goto out;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -EIO : catalog_errno(cat->db, rc);
		goto out;
	}
	rc = catalog_col_int(st, 0, version, 0, 0);
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_policy_add(struct catalog *cat, const struct catalog_policy *p)
{
	sqlite3_stmt *st = NULL;
	int64_t next;
	int rc;

	if (p->version < 1 || !p->text ||
	    !catalog_field_ok(p->applied_by, sizeof(p->applied_by)))
		return -EINVAL;
	if (cat->rdonly)
		return -EROFS;
	/* Versions are append-only: the insert happens only if p->version is
	 * the next one, atomically with the check. */
	rc = catalog_prep(
		cat,
		"INSERT INTO policies(version, text, applied_by, applied_us, mac)"
		" SELECT ?1, ?2, ?3, ?4, ?5 WHERE ?1 ="
		" (SELECT COALESCE(MAX(version), 0) + 1 FROM policies)"
		" RETURNING version",
		&st);
	if (rc)
		goto out;
	sqlite3_bind_int64(st, 1, p->version);
	rc = sqlite3_bind_text64(st, 2, p->text, strlen(p->text), SQLITE_STATIC,
				 SQLITE_UTF8);
	if (rc != SQLITE_OK) {
		rc = rc == SQLITE_TOOBIG ? -EFBIG : catalog_errno(cat->db, rc);
		goto out;
	}
	sqlite3_bind_text(st, 3, p->applied_by, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, p->applied_us);
	sqlite3_bind_blob(st, 5, p->mac, sizeof(p->mac), SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		rc = catalog_step_done(cat, st);
		goto out;
	}
	if (rc != SQLITE_DONE) {
		rc = catalog_errno(cat->db, rc);
		goto out;
	}
	/* Not inserted: a stale version (someone applied first) or a gap. */
	rc = catalog_policy_next_version(cat, &next);
	if (rc == 0)
		rc = p->version < next ? -EEXIST : -EINVAL;
out:
	sqlite3_finalize(st);
	return rc;
}

int catalog_policy_get(struct catalog *cat, int64_t version, struct catalog_policy *out)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *s;
	int rc, n;

	memset(out, 0, sizeof(*out));
	if (version < 0)
		return -EINVAL;
	rc = catalog_prep(cat,
			  version ? "SELECT version, text, applied_by, applied_us, mac"
				    " FROM policies WHERE version = ?1"
				  : "SELECT version, text, applied_by, applied_us, mac"
				    " FROM policies ORDER BY version DESC LIMIT 1",
			  &st);
	if (rc)
		goto out;
	if (version)
		sqlite3_bind_int64(st, 1, version);
	rc = catalog_step_row(cat, st);
	if (rc)
		goto out;
	rc = catalog_col_int(st, 0, &out->version, 0, 0);
	if (!rc)
		rc = catalog_col_text(st, 2, out->applied_by, sizeof(out->applied_by));
	if (!rc)
		rc = catalog_col_int(st, 3, &out->applied_us, 0, 1);
	if (!rc)
		rc = catalog_col_blob(st, 4, out->mac, sizeof(out->mac), 0);
	if (rc)
		goto out;
	if (sqlite3_column_type(st, 1) != SQLITE_TEXT) {
		rc = -EIO;
		goto out;
	}
	s = sqlite3_column_text(st, 1);
	n = sqlite3_column_bytes(st, 1);
	/* An embedded NUL would silently shorten the policy. */
	if (!s || n < 0 || memchr(s, 0, (size_t)n)) {
		rc = -EIO;
		goto out;
	}
	out->text = malloc((size_t)n + 1);
	if (!out->text) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(out->text, s, (size_t)n);
	out->text[n] = 0;
	rc = 0;
out:
	sqlite3_finalize(st);
	if (rc)
		catalog_policy_clear(out);
	return rc;
}

void catalog_policy_clear(struct catalog_policy *p)
{
	if (!p)
		return;
	free(p->text);
	memset(p, 0, sizeof(*p));
}
