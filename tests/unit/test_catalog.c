/*
 * test_catalog.c — unit tests for fs/catalog.c.
 *
 * Each test gets a fresh temporary directory.  Damage is done to the files
 * with sqlite3 directly (or raw writes), as an attacker or a bad disk would;
 * disk-full and I/O errors are injected through a SQLite VFS shim that
 * wraps the default "unix" VFS, the way SQLite's own tests do.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "catalog.h"
#include "sys.h"

#define UNIT_VFS_SHIM
#include "unit_util.h"

/* Per-test fixture. */
struct fx {
	char dir[64];   /* temporary directory */
	char path[128]; /* dir/custodian.db */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/test_catalog.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, CATALOG_FILE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char cmd[256];

	sys_reset();
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s'; rm -rf '%s'", f->dir, f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static struct catalog *create(struct fx *f)
{
	struct catalog *cat = NULL;

	assert_int_equal(catalog_open(f->path, CATALOG_CREATE, &cat), 0);
	assert_non_null(cat);
	return cat;
}

static struct catalog *reopen(struct fx *f, int flags)
{
	struct catalog *cat = NULL;

	assert_int_equal(catalog_open(f->path, flags, &cat), 0);
	assert_non_null(cat);
	return cat;
}

/* Runs SQL on the file with a plain sqlite3 connection. */
static void raw_sql(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	char *err = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db,
					 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
					 NULL),
			 SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("raw_sql: %s", err ? err : "?");
	sqlite3_close(db);
}

static int exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0;
}

static int exists_side(const char *path, const char *sfx)
{
	char p[160];

	snprintf(p, sizeof(p), "%s%s", path, sfx);
	return exists(p);
}

/* Whole file contents (NULL, 0 if missing). */
static uint8_t *slurp(const char *path, size_t *n)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	long sz;

	*n = 0;
	if (!fp)
		return NULL;
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	sz = ftell(fp);
	assert_true(sz >= 0);
	rewind(fp);
	buf = malloc((size_t)sz + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)sz, fp), (size_t)sz);
	fclose(fp);
	*n = (size_t)sz;
	return buf;
}

static void fill_slot(struct catalog_slot *s, uint8_t seed)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	strcpy(s->kind, KEYS_SLOT_PASSPHRASE);
	snprintf(s->label, sizeof(s->label), "label-%u", seed);
	for (i = 0; i < sizeof(s->salt); i++)
		s->salt[i] = (uint8_t)(seed + i);
	for (i = 0; i < sizeof(s->wrapped); i++)
		s->wrapped[i] = (uint8_t)(seed * 7 + i * 13 + 1);
	s->opslimit = 3;
	s->memlimit = 64ULL << 20;
	s->created_us = 1700000000000000LL + seed;
}

/* --- open / create ----------------------------------------------------------- */

static void test_create_open_close(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct stat sb;
	char buf[8];
	size_t len = 0;

	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	/* The schema version is visible as meta and is 2. */
	assert_int_equal(catalog_meta_get(cat, "schema", buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 1);
	assert_memory_equal(buf, "2", 1);
	assert_int_equal(catalog_meta_put(cat, "k", "v", 1), 0);
	/* WAL mode: the -wal file exists while open, with the db's mode. */
	assert_true(exists_side(f->path, "-wal"));
	{
		char w[160];

		snprintf(w, sizeof(w), "%s-wal", f->path);
		assert_int_equal(stat(w, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
	}
	catalog_close(cat);
	catalog_close(NULL);

	cat = reopen(f, 0);
	assert_int_equal(catalog_meta_get(cat, "k", buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 1);
	assert_int_equal(buf[0], 'v');
	catalog_close(cat);
}

static void test_create_mode_ignores_umask(void **state)
{
	struct fx *f = *state;
	mode_t old = umask(0);
	struct catalog *cat = create(f);
	struct stat sb;

	umask(old);
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	catalog_close(cat);
}

static void test_create_existing(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f), *c2 = (void *)1;

	catalog_close(cat);
	assert_int_equal(catalog_open(f->path, CATALOG_CREATE, &c2), -EEXIST);
	assert_null(c2);
	/* The existing catalogue is untouched by the refused create. */
	cat = reopen(f, 0);
	catalog_close(cat);
}

static void test_create_refuses_stray_wal(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = (void *)1;
	char w[160];
	int fd;

	snprintf(w, sizeof(w), "%s-wal", f->path);
	fd = open(w, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(catalog_open(f->path, CATALOG_CREATE, &cat), -EEXIST);
	assert_null(cat);
	assert_false(exists(f->path));
}

static void test_open_missing(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = (void *)1;

	assert_int_equal(catalog_open(f->path, 0, &cat), -ENOENT);
	assert_null(cat);
	assert_int_equal(catalog_open(f->path, CATALOG_RDONLY, &cat), -ENOENT);
	assert_null(cat);
	/* SQLite was not allowed to create it. */
	assert_false(exists(f->path));
	assert_false(exists_side(f->path, "-wal"));
	assert_false(exists_side(f->path, "-shm"));
}

static void test_open_bad_args(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = (void *)1;

	assert_int_equal(catalog_open(f->path, CATALOG_CREATE | CATALOG_RDONLY, &cat),
			 -EINVAL);
	assert_null(cat);
	assert_int_equal(catalog_open(f->path, 0x100, &cat), -EINVAL);
	assert_int_equal(catalog_open("", 0, &cat), -EINVAL);
	assert_false(exists(f->path));
}

static void test_open_symlink_refused(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	char link[160];

	catalog_close(cat);
	snprintf(link, sizeof(link), "%s/link.db", f->dir);
	assert_int_equal(symlink(CATALOG_FILE, link), 0);
	assert_int_equal(catalog_open(link, 0, &cat), -ELOOP);
	assert_null(cat);
	assert_int_equal(catalog_open(link, CATALOG_CREATE, &cat), -EEXIST);
}

static void test_open_random_file(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = (void *)1;
	uint8_t junk[8192], *after;
	size_t i, n;
	FILE *fp;

	srand(12345);
	for (i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rand();
	fp = fopen(f->path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(junk, 1, sizeof(junk), fp), sizeof(junk));
	fclose(fp);
	assert_int_equal(catalog_open(f->path, 0, &cat), -EIO);
	assert_null(cat);
	assert_int_equal(catalog_open(f->path, CATALOG_RDONLY, &cat), -EIO);
	/* Not modified. */
	after = slurp(f->path, &n);
	assert_int_equal(n, sizeof(junk));
	assert_memory_equal(after, junk, n);
	free(after);
}

static void test_open_foreign_sqlite(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = (void *)1;
	uint8_t *b;
	size_t n;

	raw_sql(f->path, "CREATE TABLE customers(id INTEGER, name TEXT);"
			 "INSERT INTO customers VALUES(1, 'x');");
	assert_int_equal(catalog_open(f->path, 0, &cat), -EIO);
	assert_null(cat);
	assert_int_equal(catalog_open(f->path, CATALOG_RDONLY, &cat), -EIO);
	/* A foreign database is not switched to WAL behind its owner's back
	 * (header bytes 18/19 are 1 for rollback journal, 2 for WAL). */
	b = slurp(f->path, &n);
	assert_true(n >= 100);
	assert_int_equal(b[18], 1);
	assert_int_equal(b[19], 1);
	free(b);

	/* A meta table without the schema row is not ours either. */
	raw_sql(f->path, "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB);"
			 "INSERT INTO meta VALUES('other', 1);");
	assert_int_equal(catalog_open(f->path, 0, &cat), -EIO);
}

static void test_open_schema_versions(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);

	catalog_close(cat);
	raw_sql(f->path, "UPDATE meta SET value = 999 WHERE key = 'schema'");
	assert_int_equal(catalog_open(f->path, 0, &cat), -EPROTO);
	assert_null(cat);
	assert_int_equal(catalog_open(f->path, CATALOG_RDONLY, &cat), -EPROTO);

	/* Decimal text is accepted (hand-edited), garbage is damage. */
	raw_sql(f->path, "UPDATE meta SET value = '1' WHERE key = 'schema'");
	cat = reopen(f, 0);
	catalog_close(cat);
	raw_sql(f->path, "UPDATE meta SET value = x'01' WHERE key = 'schema'");
	assert_int_equal(catalog_open(f->path, 0, &cat), -EIO);
	raw_sql(f->path, "UPDATE meta SET value = 0 WHERE key = 'schema'");
	assert_int_equal(catalog_open(f->path, 0, &cat), -EIO);
	raw_sql(f->path, "UPDATE meta SET value = 1.5 WHERE key = 'schema'");
	assert_int_equal(catalog_open(f->path, 0, &cat), -EIO);
	raw_sql(f->path, "DELETE FROM meta WHERE key = 'schema'");
	assert_int_equal(catalog_open(f->path, 0, &cat), -EIO);
	assert_null(cat);
}

/* First column of the first row of sql on the file, as text ("" if none). */
static void raw_text(const char *path, const char *sql, char *out, size_t cap)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	out[0] = 0;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

/* A schema 1 store (full audit_subject index) is migrated on the first
 * writable open; a read-only open refuses it rather than use it half-way.
 * After it, a subject query is answered from the partial index. */
static void test_migrate_v1_subject_index(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	char sql[256], plan[256];

	catalog_close(cat);
	raw_sql(f->path, "DROP INDEX audit_subject;"
			 "CREATE INDEX audit_subject ON audit(subject);"
			 "UPDATE meta SET value = 1 WHERE key = 'schema'");
	raw_text(f->path, "SELECT sql FROM sqlite_schema WHERE name = 'audit_subject'",
		 sql, sizeof(sql));
	assert_null(strstr(sql, "WHERE"));
	assert_int_equal(catalog_open(f->path, CATALOG_RDONLY, &cat), -EROFS);
	assert_null(cat);

	cat = reopen(f, 0);
	catalog_close(cat);
	raw_text(f->path, "SELECT value FROM meta WHERE key = 'schema'", sql,
		 sizeof(sql));
	assert_string_equal(sql, "2");
	raw_text(f->path, "SELECT sql FROM sqlite_schema WHERE name = 'audit_subject'",
		 sql, sizeof(sql));
	assert_non_null(strstr(sql, "WHERE subject IS NOT NULL"));
	{
		sqlite3 *db = NULL;
		sqlite3_stmt *st = NULL;
		size_t n = 0;

		assert_int_equal(
			sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL),
			SQLITE_OK);
		assert_int_equal(
			sqlite3_prepare_v2(db,
					   "EXPLAIN QUERY PLAN SELECT seq FROM audit"
					   " WHERE seq > 0 AND subject = x'00'"
					   " ORDER BY seq",
					   -1, &st, NULL),
			SQLITE_OK);
		plan[0] = 0;
		while (sqlite3_step(st) == SQLITE_ROW && n < sizeof(plan))
			n += (size_t)snprintf(plan + n, sizeof(plan) - n, "%s | ",
					      (const char *)sqlite3_column_text(st, 3));
		sqlite3_finalize(st);
		sqlite3_close(db);
		assert_non_null(strstr(plan, "INDEX audit_subject (subject=?"));
	}
	/* And the migrated file opens read-only again. */
	cat = reopen(f, CATALOG_RDONLY);
	catalog_close(cat);
}

/* --- meta ------------------------------------------------------------------- */

static void test_meta(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	uint8_t buf[64], big[3000];
	size_t len = 0, i;

	assert_int_equal(catalog_meta_get(cat, "store_id", buf, sizeof(buf), &len),
			 -ENOENT);
	assert_int_equal(catalog_meta_put(cat, "store_id", "abcdef", 6), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(catalog_meta_get(cat, "store_id", buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(buf, "abcdef", 6);

	/* Overwrite with a different length. */
	assert_int_equal(catalog_meta_put(cat, "store_id", "xy", 2), 0);
	assert_int_equal(catalog_meta_get(cat, "store_id", buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 2);
	assert_memory_equal(buf, "xy", 2);

	/* Binary with NULs survives. */
	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31);
	big[5] = 0;
	assert_int_equal(catalog_meta_put(cat, "bin", big, sizeof(big)), 0);
	/* Too small a buffer: -ENOSPC, length still reported, buffer untouched. */
	memset(buf, 0xAA, sizeof(buf));
	len = 0;
	assert_int_equal(catalog_meta_get(cat, "bin", buf, sizeof(buf), &len), -ENOSPC);
	assert_int_equal(len, sizeof(big));
	for (i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0xAA);
	assert_int_equal(catalog_meta_get(cat, "bin", NULL, 0, &len), -ENOSPC);
	assert_int_equal(len, sizeof(big));
	{
		uint8_t *out = malloc(len);

		assert_non_null(out);
		assert_int_equal(catalog_meta_get(cat, "bin", out, len, &len), 0);
		assert_memory_equal(out, big, sizeof(big));
		free(out);
	}

	/* Empty value is a value, not absence. */
	assert_int_equal(catalog_meta_put(cat, "empty", NULL, 0), 0);
	len = 99;
	assert_int_equal(catalog_meta_get(cat, "empty", NULL, 0, &len), 0);
	assert_int_equal(len, 0);

	/* Bad input. */
	assert_int_equal(catalog_meta_put(cat, NULL, "x", 1), -EINVAL);
	assert_int_equal(catalog_meta_put(cat, "", "x", 1), -EINVAL);
	assert_int_equal(catalog_meta_put(cat, "k", NULL, 1), -EINVAL);
	assert_int_equal(catalog_meta_get(cat, "", buf, sizeof(buf), &len), -EINVAL);
	assert_int_equal(catalog_meta_get(cat, "k", NULL, 4, &len), -EINVAL);
	/* The schema version is not the callers' to change. */
	assert_int_equal(catalog_meta_put(cat, "schema", "9", 1), -EINVAL);
	catalog_close(cat);

	cat = reopen(f, 0);
	assert_int_equal(catalog_meta_get(cat, "store_id", buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 2);
	catalog_close(cat);
}

/* --- slots ------------------------------------------------------------------- */

static void test_slots(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct catalog_slot a, b, c, *list = (void *)1;
	size_t n = 99;

	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);

	fill_slot(&a, 1);
	fill_slot(&b, 2);
	memset(b.kind, 0, sizeof(b.kind));
	strcpy(b.kind, KEYS_SLOT_RECOVERY);
	memset(b.label, 0, sizeof(b.label));
	b.opslimit = 0;
	b.memlimit = 0;
	fill_slot(&c, 3);
	memset(c.kind, 0, sizeof(c.kind));
	strcpy(c.kind, KEYS_SLOT_KEYFILE);
	memset(c.label, 'L', sizeof(c.label) - 1);
	c.label[sizeof(c.label) - 1] = 0;
	c.created_us = -5;
	assert_int_equal(catalog_slot_add(cat, &a), 0);
	assert_int_equal(catalog_slot_add(cat, &b), 0);
	assert_int_equal(catalog_slot_add(cat, &c), 0);
	assert_true(a.id > 0);
	assert_true(b.id > a.id);
	assert_true(c.id > b.id);

	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(&list[0], &a, sizeof(a));
	assert_memory_equal(&list[1], &b, sizeof(b));
	assert_memory_equal(&list[2], &c, sizeof(c));
	free(list);

	assert_int_equal(catalog_slot_remove(cat, b.id), 0);
	assert_int_equal(catalog_slot_remove(cat, b.id), -ENOENT);
	assert_int_equal(catalog_slot_remove(cat, 12345), -ENOENT);
	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(list[0].id, a.id);
	assert_int_equal(list[1].id, c.id);
	free(list);
	catalog_close(cat);

	/* Persisted. */
	cat = reopen(f, 0);
	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(&list[1], &c, sizeof(c));
	free(list);
	catalog_close(cat);
}

static void test_slot_bad_input(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct catalog_slot s, *list = NULL;
	size_t n = 0;

	fill_slot(&s, 4);
	s.kind[0] = 0;
	assert_int_equal(catalog_slot_add(cat, &s), -EINVAL);
	fill_slot(&s, 4);
	memset(s.kind, 'k', sizeof(s.kind)); /* no NUL */
	assert_int_equal(catalog_slot_add(cat, &s), -EINVAL);
	fill_slot(&s, 4);
	memset(s.label, 'l', sizeof(s.label));
	assert_int_equal(catalog_slot_add(cat, &s), -EINVAL);
	fill_slot(&s, 4);
	s.opslimit = UINT64_MAX;
	assert_int_equal(catalog_slot_add(cat, &s), -EINVAL);
	fill_slot(&s, 4);
	s.memlimit = (uint64_t)INT64_MAX + 1;
	assert_int_equal(catalog_slot_add(cat, &s), -EINVAL);
	/* Nothing was written by the refusals. */
	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);
	catalog_close(cat);
}

/* Writes one damaging UPDATE to slot id 1 and checks the listing says -EIO. */
static void damaged_slot(struct fx *f, const char *update)
{
	struct catalog *cat;
	struct catalog_slot s, *list = (void *)1;
	size_t n = 99;

	remove(f->path);
	cat = create(f);
	fill_slot(&s, 9);
	assert_int_equal(catalog_slot_add(cat, &s), 0);
	fill_slot(&s, 10);
	assert_int_equal(catalog_slot_add(cat, &s), 0);
	catalog_close(cat);
	raw_sql(f->path, update);
	cat = reopen(f, 0);
	assert_int_equal(catalog_slot_list(cat, &list, &n), -EIO);
	assert_null(list);
	assert_int_equal(n, 0);
	catalog_close(cat);
}

static void test_slot_damaged_rows(void **state)
{
	struct fx *f = *state;

	damaged_slot(f, "UPDATE slots SET wrapped = zeroblob(71) WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET wrapped = randomblob(4096) WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET wrapped = x'' WHERE id = 2");
	damaged_slot(f, "UPDATE slots SET wrapped = 'text not blob' WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET salt = zeroblob(15) WHERE id = 2");
	damaged_slot(f, "UPDATE slots SET salt = 5 WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET kind = 'a-kind-far-too-long' WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET kind = x'70617373' WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET kind = 'pa' || char(0) || 'ss' WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET label = printf('%.64c', 'x') WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET opslimit = -1 WHERE id = 1");
	damaged_slot(f, "UPDATE slots SET memlimit = 'lots' WHERE id = 2");
	damaged_slot(f, "UPDATE slots SET created_us = 1.5 WHERE id = 2");
}

static void test_slot_null_kdf_fields(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct catalog_slot s, *list = NULL;
	size_t n = 0;
	uint8_t zero[CRYPT_SALT_BYTES] = {0};

	fill_slot(&s, 11);
	strcpy(s.kind, KEYS_SLOT_KEYFILE);
	assert_int_equal(catalog_slot_add(cat, &s), 0);
	catalog_close(cat);
	/* A row written by a tool that leaves unused KDF fields NULL. */
	raw_sql(f->path,
		"UPDATE slots SET salt = NULL, opslimit = NULL, memlimit = NULL");
	cat = reopen(f, 0);
	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_memory_equal(list[0].salt, zero, sizeof(zero));
	assert_int_equal(list[0].opslimit, 0);
	assert_int_equal(list[0].memlimit, 0);
	assert_memory_equal(list[0].wrapped, s.wrapped, sizeof(s.wrapped));
	free(list);
	catalog_close(cat);
}

/* --- policies ------------------------------------------------------------------ */

static void make_policy(struct catalog_policy *p, int64_t v, const char *text)
{
	memset(p, 0, sizeof(*p));
	p->version = v;
	p->text = (char *)text;
	snprintf(p->applied_by, sizeof(p->applied_by), "admin%d", (int)v);
	p->applied_us = 1700000000000000LL + v;
	memset(p->mac, (int)v, sizeof(p->mac));
}

static void test_policies(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct catalog_policy p, got;
	int64_t v = 0;

	assert_int_equal(catalog_policy_get(cat, 0, &got), -ENOENT);
	assert_null(got.text);
	assert_int_equal(catalog_policy_next_version(cat, &v), 0);
	assert_int_equal(v, 1);

	assert_int_equal(catalog_begin(cat), 0);
	assert_int_equal(catalog_policy_next_version(cat, &v), 0);
	make_policy(&p, v, "default deny\n");
	assert_int_equal(catalog_policy_add(cat, &p), 0);
	assert_int_equal(catalog_commit(cat), 0);

	assert_int_equal(catalog_policy_next_version(cat, &v), 0);
	assert_int_equal(v, 2);
	make_policy(&p, v, "allow group staff read /\n");
	assert_int_equal(catalog_policy_add(cat, &p), 0);

	/* Newest. */
	assert_int_equal(catalog_policy_get(cat, 0, &got), 0);
	assert_int_equal(got.version, 2);
	assert_string_equal(got.text, "allow group staff read /\n");
	assert_string_equal(got.applied_by, "admin2");
	assert_int_equal(got.applied_us, 1700000000000002LL);
	assert_memory_equal(got.mac, p.mac, sizeof(p.mac));
	catalog_policy_clear(&got);
	assert_null(got.text);
	/* By version. */
	assert_int_equal(catalog_policy_get(cat, 1, &got), 0);
	assert_int_equal(got.version, 1);
	assert_string_equal(got.text, "default deny\n");
	assert_string_equal(got.applied_by, "admin1");
	catalog_policy_clear(&got);
	assert_int_equal(catalog_policy_get(cat, 3, &got), -ENOENT);
	assert_int_equal(catalog_policy_get(cat, -1, &got), -EINVAL);
	catalog_policy_clear(NULL);

	/* Append-only: a stale version, a gap, bad fields. */
	make_policy(&p, 2, "late");
	assert_int_equal(catalog_policy_add(cat, &p), -EEXIST);
	make_policy(&p, 1, "late");
	assert_int_equal(catalog_policy_add(cat, &p), -EEXIST);
	make_policy(&p, 5, "gap");
	assert_int_equal(catalog_policy_add(cat, &p), -EINVAL);
	make_policy(&p, 0, "zero");
	assert_int_equal(catalog_policy_add(cat, &p), -EINVAL);
	make_policy(&p, 3, NULL);
	assert_int_equal(catalog_policy_add(cat, &p), -EINVAL);
	make_policy(&p, 3, "x");
	memset(p.applied_by, 'a', sizeof(p.applied_by));
	assert_int_equal(catalog_policy_add(cat, &p), -EINVAL);
	/* Empty text is a valid (empty) policy. */
	make_policy(&p, 3, "");
	assert_int_equal(catalog_policy_add(cat, &p), 0);
	assert_int_equal(catalog_policy_get(cat, 0, &got), 0);
	assert_int_equal(got.version, 3);
	assert_string_equal(got.text, "");
	catalog_policy_clear(&got);
	catalog_close(cat);
}

static void damaged_policy(struct fx *f, const char *update)
{
	struct catalog *cat;
	struct catalog_policy p, got;

	remove(f->path);
	cat = create(f);
	make_policy(&p, 1, "one");
	assert_int_equal(catalog_policy_add(cat, &p), 0);
	catalog_close(cat);
	raw_sql(f->path, update);
	cat = reopen(f, 0);
	assert_int_equal(catalog_policy_get(cat, 0, &got), -EIO);
	assert_null(got.text);
	assert_int_equal(catalog_policy_get(cat, 1, &got), -EIO);
	assert_null(got.text);
	catalog_close(cat);
}

static void test_policy_damaged_rows(void **state)
{
	struct fx *f = *state;

	damaged_policy(f, "UPDATE policies SET mac = zeroblob(31)");
	damaged_policy(f, "UPDATE policies SET mac = zeroblob(33)");
	damaged_policy(f, "UPDATE policies SET mac = 'm'");
	damaged_policy(f, "UPDATE policies SET text = x'6f6e65'");
	damaged_policy(f, "UPDATE policies SET text = 'a' || char(0) || 'b'");
	damaged_policy(f, "UPDATE policies SET applied_by = printf('%.64c', 'u')");
	damaged_policy(f, "UPDATE policies SET applied_us = 'yesterday'");
}

/* --- transactions ------------------------------------------------------------ */

static void test_transactions(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct catalog_slot s, *list = NULL;
	char buf[8];
	size_t len, n;

	assert_int_equal(catalog_begin(cat), 0);
	assert_int_equal(catalog_begin(cat), -EBUSY); /* no nesting */
	assert_int_equal(catalog_meta_put(cat, "a", "1", 1), 0);
	fill_slot(&s, 1);
	assert_int_equal(catalog_slot_add(cat, &s), 0);
	assert_int_equal(catalog_commit(cat), 0);

	assert_int_equal(catalog_begin(cat), 0);
	assert_int_equal(catalog_meta_put(cat, "b", "2", 1), 0);
	assert_int_equal(catalog_meta_put(cat, "a", "X", 1), 0);
	assert_int_equal(catalog_slot_remove(cat, s.id), 0);
	/* Visible inside the transaction... */
	assert_int_equal(catalog_meta_get(cat, "b", buf, sizeof(buf), &len), 0);
	catalog_rollback(cat);
	/* ...and gone after rollback. */
	assert_int_equal(catalog_meta_get(cat, "b", buf, sizeof(buf), &len), -ENOENT);
	assert_int_equal(catalog_meta_get(cat, "a", buf, sizeof(buf), &len), 0);
	assert_int_equal(buf[0], '1');
	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 1);
	free(list);
	/* Rollback with nothing open, commit with nothing open. */
	catalog_rollback(cat);
	assert_int_not_equal(catalog_commit(cat), 0);
	catalog_close(cat);

	/* Commit is durable across reopen; an uncommitted transaction at close
	 * is discarded. */
	cat = reopen(f, 0);
	assert_int_equal(catalog_meta_get(cat, "a", buf, sizeof(buf), &len), 0);
	assert_int_equal(catalog_begin(cat), 0);
	assert_int_equal(catalog_meta_put(cat, "c", "3", 1), 0);
	catalog_close(cat);
	cat = reopen(f, 0);
	assert_int_equal(catalog_meta_get(cat, "c", buf, sizeof(buf), &len), -ENOENT);
	catalog_close(cat);
}

static void test_busy(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct timespec t0, t1;
	sqlite3 *db = NULL;
	double secs;

	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
			 SQLITE_OK);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(catalog_begin(cat), -EBUSY);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* It waited out the busy timeout (5 s) rather than failing at once. */
	assert_true(secs > 4.0);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(db);
	assert_int_equal(catalog_begin(cat), 0);
	assert_int_equal(catalog_meta_put(cat, "k", "v", 1), 0);
	assert_int_equal(catalog_commit(cat), 0);
	catalog_close(cat);
}

/* --- read-only ------------------------------------------------------------------ */

static void check_rdonly(struct catalog *cat)
{
	struct catalog_slot s, *list = NULL;
	struct catalog_policy p, got;
	char buf[8];
	size_t len = 0, n = 0;

	assert_int_equal(catalog_meta_get(cat, "k", buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 1);
	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 1);
	free(list);
	assert_int_equal(catalog_policy_get(cat, 0, &got), 0);
	catalog_policy_clear(&got);

	assert_int_equal(catalog_meta_put(cat, "k", "w", 1), -EROFS);
	fill_slot(&s, 5);
	assert_int_equal(catalog_slot_add(cat, &s), -EROFS);
	assert_int_equal(catalog_slot_remove(cat, 1), -EROFS);
	make_policy(&p, 2, "x");
	assert_int_equal(catalog_policy_add(cat, &p), -EROFS);
	assert_int_equal(catalog_begin(cat), -EROFS);
	assert_int_equal(catalog_checkpoint(cat), -EROFS);
	catalog_rollback(cat);
}

static void populate(struct fx *f)
{
	struct catalog *cat = create(f);
	struct catalog_slot s;
	struct catalog_policy p;

	assert_int_equal(catalog_meta_put(cat, "k", "v", 1), 0);
	fill_slot(&s, 1);
	assert_int_equal(catalog_slot_add(cat, &s), 0);
	make_policy(&p, 1, "policy");
	assert_int_equal(catalog_policy_add(cat, &p), 0);
	catalog_close(cat);
}

static void test_rdonly(void **state)
{
	struct fx *f = *state;
	struct catalog *cat, *rw;
	char buf[8];
	size_t len;

	populate(f);
	cat = reopen(f, CATALOG_RDONLY);
	check_rdonly(cat);
	/* A read-only reader sees what a writer commits meanwhile. */
	rw = reopen(f, 0);
	assert_int_equal(catalog_meta_put(rw, "new", "n", 1), 0);
	assert_int_equal(catalog_meta_get(cat, "new", buf, sizeof(buf), &len), 0);
	catalog_close(rw);
	catalog_close(cat);
	/* Nothing changed. */
	cat = reopen(f, 0);
	assert_int_equal(catalog_meta_get(cat, "k", buf, sizeof(buf), &len), 0);
	assert_int_equal(buf[0], 'v');
	catalog_close(cat);
}

/*
 * A store on read-only media or in a directory we may not write: the -shm
 * and -wal files cannot be created.  Root ignores permission bits, so when
 * run as root the check runs in a child that drops to nobody.
 */
static void test_rdonly_store(void **state)
{
	struct fx *f = *state;
	char store[96], path[160];
	int status;
	pid_t pid;
	FILE *fp;

	snprintf(store, sizeof(store), "%s/store", f->dir);
	assert_int_equal(mkdir(store, 0755), 0);
	snprintf(f->path, sizeof(f->path), "%s/%s", store, CATALOG_FILE);
	populate(f);
	assert_false(exists_side(f->path, "-wal"));
	assert_int_equal(chmod(f->dir, 0755), 0);
	assert_int_equal(chmod(f->path, 0444), 0);
	assert_int_equal(chmod(store, 0555), 0);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct catalog *cat = NULL;
		int rc;

		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(90);
		/* Sanity: the directory really is unwritable for us now. */
		snprintf(path, sizeof(path), "%s/probe", store);
		fp = fopen(path, "w");
		if (fp)
			_exit(91);
		rc = catalog_open(f->path, CATALOG_RDONLY, &cat);
		if (rc)
			_exit(100 + (-rc & 0x7f));
		check_rdonly(cat);
		catalog_close(cat);
		/* A read-write open of an unwritable file refuses writes too. */
		rc = catalog_open(f->path, 0, &cat);
		if (rc == 0) {
			rc = catalog_meta_put(cat, "k", "w", 1) == -EROFS ? 0 : 93;
			catalog_close(cat);
			if (rc)
				_exit(rc);
		} else if (rc != -EROFS && rc != -EACCES) {
			_exit(94);
		}
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* No side files were left behind. */
	assert_false(exists_side(f->path, "-wal"));
	assert_false(exists_side(f->path, "-shm"));
	assert_int_equal(chmod(store, 0755), 0);
}

/* --- secure delete ------------------------------------------------------------- */

static void test_secure_delete(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = create(f);
	struct catalog_slot keep, gone;
	char wal[160];
	uint8_t *b;
	size_t n, i;

	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	fill_slot(&keep, 1);
	assert_int_equal(catalog_slot_add(cat, &keep), 0);
	fill_slot(&gone, 2);
	for (i = 0; i < sizeof(gone.wrapped); i++)
		gone.wrapped[i] = (uint8_t)(0xC3 ^ (i * 29));
	assert_int_equal(catalog_slot_add(cat, &gone), 0);

	/* Before: the wrapped key is on disk (WAL, or the main file after a
	 * checkpoint), so the search below is able to find it. */
	b = slurp(wal, &n);
	assert_non_null(memmem(b, n, gone.wrapped, sizeof(gone.wrapped)));
	free(b);
	assert_int_equal(catalog_checkpoint(cat), 0);
	b = slurp(f->path, &n);
	assert_non_null(memmem(b, n, gone.wrapped, sizeof(gone.wrapped)));
	free(b);

	assert_int_equal(catalog_slot_remove(cat, gone.id), 0);
	assert_int_equal(catalog_checkpoint(cat), 0);

	b = slurp(f->path, &n);
	assert_true(n > 0);
	assert_null(memmem(b, n, gone.wrapped, sizeof(gone.wrapped)));
	/* The kept slot is still there, proving we searched real contents. */
	assert_non_null(memmem(b, n, keep.wrapped, sizeof(keep.wrapped)));
	free(b);
	b = slurp(wal, &n);
	assert_true(!b || !memmem(b, n, gone.wrapped, sizeof(gone.wrapped)));
	free(b);
	catalog_close(cat);

	b = slurp(f->path, &n);
	assert_null(memmem(b, n, gone.wrapped, sizeof(gone.wrapped)));
	free(b);
}

/* --- injected faults ------------------------------------------------------------ */

static int fail_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	(void)dirfd;
	(void)path;
	(void)flags;
	(void)mode;
	errno = ENOSPC;
	return -1;
}

static void test_create_fault(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = (void *)1;

	sys.openat = fail_openat;
	assert_int_equal(catalog_open(f->path, CATALOG_CREATE, &cat), -ENOSPC);
	assert_null(cat);
	sys_reset();
	assert_false(exists(f->path));
	cat = create(f);
	catalog_close(cat);
}

static void test_write_faults(void **state)
{
	struct fx *f = *state;
	struct catalog *cat;
	struct catalog_slot s, *list = NULL;
	struct catalog_policy p;
	char buf[8];
	size_t len, n;

	unit_shim_install("custodian-test-shim");
	cat = create(f);
	assert_int_equal(catalog_meta_put(cat, "k", "v", 1), 0);

	unit_fault_rc = SQLITE_FULL;
	unit_fault_after = 0;
	assert_int_equal(catalog_meta_put(cat, "k", "X", 1), -ENOSPC);
	fill_slot(&s, 1);
	assert_int_equal(catalog_slot_add(cat, &s), -ENOSPC);
	make_policy(&p, 1, "p");
	assert_int_equal(catalog_policy_add(cat, &p), -ENOSPC);

	unit_fault_rc = SQLITE_IOERR_WRITE;
	assert_int_equal(catalog_meta_put(cat, "k", "Y", 1), -EIO);
	unit_fault_rc = 0;

	/* The failed writes left nothing behind and the catalogue still works. */
	assert_int_equal(catalog_meta_get(cat, "k", buf, sizeof(buf), &len), 0);
	assert_int_equal(buf[0], 'v');
	assert_int_equal(catalog_slot_list(cat, &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);
	assert_int_equal(catalog_policy_get(cat, 0, &p), -ENOENT);

	/* A commit whose write fails leaves the transaction to roll back. */
	assert_int_equal(catalog_begin(cat), 0);
	assert_int_equal(catalog_meta_put(cat, "t", "1", 1), 0);
	unit_fault_rc = SQLITE_FULL;
	assert_int_equal(catalog_commit(cat), -ENOSPC);
	unit_fault_rc = 0;
	catalog_rollback(cat);
	assert_int_equal(catalog_meta_get(cat, "t", buf, sizeof(buf), &len), -ENOENT);
	assert_int_equal(catalog_meta_put(cat, "k", "Z", 1), 0);
	catalog_close(cat);

	/* Disk full while creating: the half-made catalogue is removed. */
	remove(f->path);
	unit_fault_rc = SQLITE_FULL;
	unit_fault_after = 0;
	cat = (void *)1;
	assert_int_equal(catalog_open(f->path, CATALOG_CREATE, &cat), -ENOSPC);
	assert_null(cat);
	unit_fault_rc = 0;
	assert_false(exists(f->path));
	assert_false(exists_side(f->path, "-wal"));
	assert_false(exists_side(f->path, "-shm"));
	unit_shim_remove();
}

/* Garbage over the slots table's page: SQLite reports corruption, we -EIO. */
static void test_corrupt_page(void **state)
{
	struct fx *f = *state;
	struct catalog *cat;
	struct catalog_slot *list = NULL;
	uint8_t junk[4096];
	size_t n = 0;
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int root, pgsz, fd;

	populate(f);
	assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT rootpage, (SELECT page_size FROM"
					    " pragma_page_size) FROM sqlite_schema"
					    " WHERE name = 'slots'",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	root = sqlite3_column_int(st, 0);
	pgsz = sqlite3_column_int(st, 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	assert_true(root > 1);
	assert_int_equal(pgsz, (int)sizeof(junk));

	memset(junk, 0xFF, sizeof(junk));
	fd = open(f->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)(root - 1) * pgsz),
			 (ssize_t)sizeof(junk));
	close(fd);

	cat = reopen(f, 0);
	assert_int_equal(catalog_slot_list(cat, &list, &n), -EIO);
	assert_null(list);
	catalog_close(cat);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_create_open_close),
		T(test_create_mode_ignores_umask),
		T(test_create_existing),
		T(test_create_refuses_stray_wal),
		T(test_open_missing),
		T(test_open_bad_args),
		T(test_open_symlink_refused),
		T(test_open_random_file),
		T(test_open_foreign_sqlite),
		T(test_open_schema_versions),
		T(test_migrate_v1_subject_index),
		T(test_meta),
		T(test_slots),
		T(test_slot_bad_input),
		T(test_slot_damaged_rows),
		T(test_slot_null_kdf_fields),
		T(test_policies),
		T(test_policy_damaged_rows),
		T(test_transactions),
		T(test_busy),
		T(test_rdonly),
		T(test_rdonly_store),
		T(test_secure_delete),
		T(test_create_fault),
		T(test_write_faults),
		T(test_corrupt_page),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
