/*
 * catalog_backup.c — consistent copies of the catalogue, and a structural
 * check of one (part of the catalogue module, see catalog.h).
 *
 * Owns `custodian backup`'s and `restore`'s use of SQLite: a copy is made
 * with VACUUM INTO from an open connection, which reads one snapshot in a
 * single read transaction.  On a WAL database that never blocks the
 * daemon's writers (readers and writers do not wait for each other in WAL
 * mode; at most a checkpoint cannot finish until the copy is done), it
 * includes commits still in the WAL, and it writes only live pages, so
 * nothing from free pages (remnants of deleted rows) reaches the copy.  The
 * result is a single file in rollback-journal mode: no -wal or -shm belongs
 * to it, so it can be moved, hashed and archived as it is.
 */
#include "catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "catalog_int.h"
#include "sys.h"

/* fsyncs the file at path (O_RDONLY is enough for fsync on Linux). */
static int sync_path(const char *path, int dir)
{
	int fd, rc = 0;

	fd = sys.openat(AT_FDCWD, path,
			O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (dir ? O_DIRECTORY : 0), 0);
	if (fd < 0)
		return -errno;
	if (sys.fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* fsyncs the directory that holds path, so the new name is durable. */
static int sync_parent(const char *path)
{
	char *copy = strdup(path);
	int rc;

	if (!copy)
		return -ENOMEM;
	rc = sync_path(dirname(copy), 1);
	free(copy);
	return rc;
}

int catalog_backup(struct catalog *cat, const char *dst)
{
	sqlite3_stmt *st = NULL;
	int fd, rc, made = 0;

	/* SQLite would read "file:..." as a URI with options. */
	if (!cat || !dst || !*dst || strncmp(dst, "file:", 5) == 0)
		return -EINVAL;
	/* Created here (O_EXCL, 0600) so an existing file is never replaced and
	 * the copy, which holds wrapped keys, is private whatever the umask.
	 * VACUUM INTO accepts an empty file. */
	fd = sys.openat(AT_FDCWD, dst,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	made = 1;
	rc = fchmod(fd, 0600) != 0 ? -errno : 0;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc)
		goto out;
	rc = catalog_prep(cat, "VACUUM INTO ?1", &st);
	if (rc)
		goto out;
	sqlite3_bind_text(st, 1, dst, -1, SQLITE_STATIC);
	rc = catalog_step_done(cat, st);
	if (rc)
		goto out;
	/* VACUUM INTO does not sync what it wrote. */
	rc = sync_path(dst, 0);
	if (rc == 0)
		rc = sync_parent(dst);
out:
	sqlite3_finalize(st);
	if (rc && made)
		sys.unlinkat(AT_FDCWD, dst, 0);
	return rc;
}

int catalog_check(struct catalog *cat)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *s;
	int rc;

	if (!cat)
		return -EINVAL;
	rc = catalog_prep(cat, "PRAGMA quick_check", &st);
	if (rc)
		goto out;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		rc = rc == SQLITE_DONE ? -EIO : catalog_errno(cat->db, rc);
		goto out;
	}
	s = sqlite3_column_text(st, 0);
	/* One row "ok" means sound; anything else lists problems. */
	if (!s || strcmp((const char *)s, "ok") != 0) {
		rc = -EIO;
		goto out;
	}
	rc = sqlite3_step(st);
	rc = rc == SQLITE_DONE ? 0 : rc == SQLITE_ROW ? -EIO : catalog_errno(cat->db, rc);
out:
	sqlite3_finalize(st);
	/* A damaged file often fails before a row: that is damage too. */
	return rc == -EBUSY || rc == -ENOMEM ? rc : rc ? -EIO : 0;
}
