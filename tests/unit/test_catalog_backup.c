/*
 * test_catalog_backup.c — unit tests for fs/catalog_backup.c: consistent
 * copies of the catalogue (catalog_backup) and the structural check
 * (catalog_check).
 *
 * Each test gets a fresh temporary directory.  Faults are injected through
 * the sys table (the copy's own open and fsyncs) and through a SQLite VFS
 * shim whose xWrite fails with SQLITE_FULL (the disk filling up while
 * SQLite writes the copy), as in test_catalog.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
	char path[128]; /* dir/custodian.db (the source) */
	char copy[128]; /* dir/backup.db (the destination) */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/test_catalog_backup.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/%s", f->dir, CATALOG_FILE);
	snprintf(f->copy, sizeof(f->copy), "%s/backup.db", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	sys_reset();
	if (unit_rm_rf(f->dir) != 0)
		return -1;
	free(f);
	return 0;
}

static struct catalog *open_cat(const char *path, int flags)
{
	struct catalog *cat = NULL;

	assert_int_equal(catalog_open(path, flags, &cat), 0);
	assert_non_null(cat);
	return cat;
}

static bool exists(const char *path)
{
	struct stat sb;

	return lstat(path, &sb) == 0;
}

static off_t file_size(const char *path)
{
	struct stat sb;

	if (lstat(path, &sb) != 0)
		return -1;
	return sb.st_size;
}

/* Is needle anywhere in the file at path? */
static bool file_has(const char *path, const void *needle, size_t n)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf;
	size_t len;
	bool found;

	if (!fp)
		return false;
	buf = malloc(64 << 20);
	assert_non_null(buf);
	len = fread(buf, 1, 64 << 20, fp);
	fclose(fp);
	found = n <= len && memmem(buf, len, needle, n) != NULL;
	free(buf);
	return found;
}

static void put(struct catalog *cat, const char *key, const char *val)
{
	assert_int_equal(catalog_meta_put(cat, key, val, strlen(val)), 0);
}

static void expect(struct catalog *cat, const char *key, const char *val)
{
	char buf[256];
	size_t len = 0;

	assert_int_equal(catalog_meta_get(cat, key, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, strlen(val));
	assert_memory_equal(buf, val, len);
}

/* A slot and a ledger entry, so the copy carries more than meta. */
static void fill(struct catalog *cat)
{
	struct catalog_slot s;
	struct catalog_erasure e;

	memset(&s, 0, sizeof(s));
	strcpy(s.kind, "passphrase");
	strcpy(s.label, "ops");
	memset(s.wrapped, 0xA5, sizeof(s.wrapped));
	s.created_us = 42;
	assert_int_equal(catalog_slot_add(cat, &s), 0);
	memset(&e, 0, sizeof(e));
	memset(e.hash, 0x11, sizeof(e.hash));
	memset(e.key_fp, 0x22, sizeof(e.key_fp));
	strcpy(e.reason, "erasure request 7");
	strcpy(e.operator_, "root");
	e.files = 3;
	assert_int_equal(catalog_erasure_add(cat, &e), 0);
	assert_int_equal(e.seq, 1);
}

static void check_filled(struct catalog *cat)
{
	struct catalog_slot *slots = NULL;
	struct catalog_erasure *list = NULL;
	uint8_t w[KEYS_WRAPPED_BYTES];
	size_t n = 0;

	assert_int_equal(catalog_slot_list(cat, &slots, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(slots[0].label, "ops");
	memset(w, 0xA5, sizeof(w));
	assert_memory_equal(slots[0].wrapped, w, sizeof(w));
	free(slots);
	assert_int_equal(catalog_erasure_list(cat, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(list[0].reason, "erasure request 7");
	assert_int_equal(list[0].files, 3);
	free(list);
}

/* Byte 18 of a SQLite header: 1 = rollback journal, 2 = WAL. */
static int header_mode(const char *path)
{
	unsigned char b[20];
	FILE *fp = fopen(path, "rb");

	assert_non_null(fp);
	assert_int_equal(fread(b, 1, sizeof(b), fp), sizeof(b));
	fclose(fp);
	return b[18];
}

static void test_good_copy(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = open_cat(f->path, CATALOG_CREATE), *c2;
	struct stat sb;
	char wal[160];

	put(cat, "store_id", "0123456789abcdef");
	fill(cat);
	assert_int_equal(catalog_backup(cat, f->copy), 0);
	catalog_close(cat);

	/* private, one self-contained file */
	assert_int_equal(lstat(f->copy, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	snprintf(wal, sizeof(wal), "%s-wal", f->copy);
	assert_false(exists(wal));
	assert_int_equal(header_mode(f->copy), 1);
	assert_int_equal(header_mode(f->path), 2);

	c2 = open_cat(f->copy, CATALOG_RDONLY);
	assert_int_equal(catalog_check(c2), 0);
	expect(c2, "store_id", "0123456789abcdef");
	check_filled(c2);
	/* a copy can be copied again, from a read-only connection */
	snprintf(wal, sizeof(wal), "%s/again.db", f->dir);
	assert_int_equal(catalog_backup(c2, wal), 0);
	catalog_close(c2);
	c2 = open_cat(wal, CATALOG_RDONLY);
	check_filled(c2);
	catalog_close(c2);
}

/*
 * Commits still in the WAL (not checkpointed into the main file), some of
 * them by another connection, are in the copy; and the copy is taken while
 * that other connection keeps writing.
 */
static void test_wal_uncheckpointed(void **state)
{
	struct fx *f = *state;
	struct catalog *a = open_cat(f->path, CATALOG_CREATE), *b, *c;
	static const char marker[] = "uncheckpointed-marker-6f1c";
	char wal[160];

	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	fill(a);
	b = open_cat(f->path, 0);
	put(b, "late", marker);
	/* the row is only in the WAL so far */
	assert_true(file_size(wal) > 0);
	assert_true(file_has(wal, marker, strlen(marker)));
	assert_false(file_has(f->path, marker, strlen(marker)));

	/* b holds a write transaction open while a copies: not blocked */
	assert_int_equal(catalog_begin(b), 0);
	put(b, "pending", "not committed");
	assert_int_equal(catalog_backup(a, f->copy), 0);
	assert_int_equal(catalog_commit(b), 0);
	catalog_close(b);
	catalog_close(a);

	c = open_cat(f->copy, CATALOG_RDONLY);
	assert_int_equal(catalog_check(c), 0);
	expect(c, "late", marker);
	check_filled(c);
	/* the snapshot: what was not committed when the copy began is not in it */
	{
		char buf[32];
		size_t len;

		assert_int_equal(catalog_meta_get(c, "pending", buf, sizeof(buf), &len),
				 -ENOENT);
	}
	catalog_close(c);
}

/* Only live pages are copied: a deleted value is not in the copy, even
 * where the source file still has it (here: secure_delete off, as an old
 * file or another tool may have left it). */
static void test_no_free_pages(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = open_cat(f->path, CATALOG_CREATE);
	static const char marker[] = "deleted-row-marker-99ab";
	sqlite3 *db = NULL;
	char sql[256];

	put(cat, "x", "y");
	catalog_close(cat);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	snprintf(sql, sizeof(sql),
		 "PRAGMA secure_delete = OFF; INSERT INTO meta VALUES('gone', "
		 "'%s'); DELETE FROM meta WHERE key = 'gone';"
		 "PRAGMA wal_checkpoint(TRUNCATE);",
		 marker);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_true(file_has(f->path, marker, strlen(marker)));

	cat = open_cat(f->path, 0);
	assert_int_equal(catalog_backup(cat, f->copy), 0);
	catalog_close(cat);
	assert_false(file_has(f->copy, marker, strlen(marker)));
}

static void test_destination_exists(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = open_cat(f->path, CATALOG_CREATE);
	char missing[160];
	FILE *fp;

	fp = fopen(f->copy, "w");
	assert_non_null(fp);
	fputs("precious", fp);
	fclose(fp);
	assert_int_equal(catalog_backup(cat, f->copy), -EEXIST);
	assert_true(file_has(f->copy, "precious", 8));
	assert_int_equal(file_size(f->copy), 8);
	/* an empty existing file is not taken over either */
	assert_int_equal(truncate(f->copy, 0), 0);
	assert_int_equal(catalog_backup(cat, f->copy), -EEXIST);
	/* a symlink is not followed */
	assert_int_equal(unlink(f->copy), 0);
	assert_int_equal(symlink("/tmp/nowhere-custodian-test", f->copy), 0);
	assert_int_equal(catalog_backup(cat, f->copy), -EEXIST);
	assert_false(exists("/tmp/nowhere-custodian-test"));

	snprintf(missing, sizeof(missing), "%s/no/such/dir.db", f->dir);
	assert_int_equal(catalog_backup(cat, missing), -ENOENT);
	catalog_close(cat);
}

static void test_bad_args(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = open_cat(f->path, CATALOG_CREATE);

	assert_int_equal(catalog_backup(cat, NULL), -EINVAL);
	assert_int_equal(catalog_backup(cat, ""), -EINVAL);
	assert_int_equal(catalog_backup(cat, "file:x.db?mode=memory"), -EINVAL);
	assert_int_equal(catalog_backup(NULL, f->copy), -EINVAL);
	assert_int_equal(catalog_check(NULL), -EINVAL);
	assert_false(exists(f->copy));
	catalog_close(cat);
}

/* --- injected faults ------------------------------------------------------ */

static int fsync_calls, fsync_fail_at;

static int fail_fsync(int fd)
{
	(void)fd;
	if (++fsync_calls >= fsync_fail_at) {
		errno = ENOSPC;
		return -1;
	}
	return 0;
}

static int fail_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	(void)dirfd;
	(void)path;
	(void)flags;
	(void)mode;
	errno = ENOSPC;
	return -1;
}

static void test_sys_faults(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = open_cat(f->path, CATALOG_CREATE);

	fill(cat);
	sys.openat = fail_openat;
	assert_int_equal(catalog_backup(cat, f->copy), -ENOSPC);
	assert_false(exists(f->copy));
	sys_reset();

	/* the copy's fsync (1st) and its directory's (2nd) */
	for (fsync_fail_at = 1; fsync_fail_at <= 2; fsync_fail_at++) {
		fsync_calls = 0;
		sys.fsync = fail_fsync;
		assert_int_equal(catalog_backup(cat, f->copy), -ENOSPC);
		assert_int_equal(fsync_calls, fsync_fail_at);
		assert_false(exists(f->copy));
		sys_reset();
	}
	assert_int_equal(catalog_backup(cat, f->copy), 0);
	catalog_close(cat);
}

static void test_disk_full_while_copying(void **state)
{
	struct fx *f = *state;
	struct catalog *cat;

	unit_shim_install("custodian-backup-shim");

	cat = open_cat(f->path, CATALOG_CREATE);
	fill(cat);
	unit_fault_rc = SQLITE_FULL;
	assert_int_equal(catalog_backup(cat, f->copy), -ENOSPC);
	assert_false(exists(f->copy));
	unit_fault_rc = SQLITE_IOERR_WRITE;
	assert_int_equal(catalog_backup(cat, f->copy), -EIO);
	assert_false(exists(f->copy));
	unit_fault_rc = 0;
	/* the source is unharmed and the next copy works */
	check_filled(cat);
	assert_int_equal(catalog_backup(cat, f->copy), 0);
	catalog_close(cat);

	unit_shim_remove();
}

/* --- catalog_check -------------------------------------------------------- */

/* A copy big enough to have several pages, closed. */
static void make_copy(struct fx *f)
{
	struct catalog *cat;
	char key[32], val[200];

	unlink(f->copy);
	unlink(f->path);
	cat = open_cat(f->path, CATALOG_CREATE);

	assert_int_equal(catalog_begin(cat), 0);
	for (int i = 0; i < 300; i++) {
		snprintf(key, sizeof(key), "key-%04d", i);
		memset(val, 'a' + i % 26, sizeof(val) - 1);
		val[sizeof(val) - 1] = 0;
		put(cat, key, val);
	}
	assert_int_equal(catalog_commit(cat), 0);
	assert_int_equal(catalog_backup(cat, f->copy), 0);
	catalog_close(cat);
}

static void scribble(const char *path, off_t off, size_t n)
{
	unsigned char junk[512];
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0);
	assert_true(n <= sizeof(junk));
	memset(junk, 0x5a, n);
	assert_int_equal(pwrite(fd, junk, n, off), (ssize_t)n);
	close(fd);
}

/* Damage is reported either when opening or by the check. */
static void check_fails(const char *path)
{
	struct catalog *cat = NULL;
	int rc = catalog_open(path, CATALOG_RDONLY, &cat);

	if (rc == 0) {
		assert_int_equal(catalog_check(cat), -EIO);
		catalog_close(cat);
	} else {
		assert_int_equal(rc, -EIO);
	}
}

static void test_check_damaged(void **state)
{
	struct fx *f = *state;
	struct catalog *cat = NULL;
	off_t size;

	make_copy(f);
	cat = open_cat(f->copy, CATALOG_RDONLY);
	assert_int_equal(catalog_check(cat), 0);
	catalog_close(cat);

	/* overwritten b-tree page headers in the middle of the file */
	size = file_size(f->copy);
	assert_true(size > 8 * 4096);
	scribble(f->copy, 3 * 4096, 64);
	scribble(f->copy, 5 * 4096, 64);
	check_fails(f->copy);

	/* truncated to half */
	make_copy(f);
	assert_int_equal(truncate(f->copy, size / 2), 0);
	check_fails(f->copy);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_good_copy),
		T(test_wal_uncheckpointed),
		T(test_no_free_pages),
		T(test_destination_exists),
		T(test_bad_args),
		T(test_sys_faults),
		T(test_disk_full_while_copying),
		T(test_check_damaged),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
