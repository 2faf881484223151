/*
 * unit_util.h — fixtures the cmocka unit tests share.
 *
 * Header-only on purpose: the Makefile builds each tests/unit/test_*.c
 * alone against libcustodian.a, so shared test code cannot be a .c of its
 * own.  Everything here is static inline (a test that does not use a
 * helper does not warn).  Include it after <cmocka.h> (the helpers
 * assert).
 *
 * Owns: a temporary directory per test and its removal, a passphrase
 * secret made the way the CLI reads one (from a file), the fast KDF
 * parameters unit tests create stores with, and, with UNIT_VFS_SHIM
 * defined before inclusion, a SQLite VFS shim whose xWrite fails on
 * demand (disk full, I/O error) for the catalogue tests.
 */
#ifndef CUSTODIAN_UNIT_UTIL_H
#define CUSTODIAN_UNIT_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypt.h"
#include "keys.h"
#include "secret.h"

/* The cheapest KDF libsodium accepts: store creation in milliseconds. */
static inline void unit_fast_kdf(struct keys_kdf *kdf)
{
	kdf->opslimit = crypt_pwhash_ops_min();
	kdf->memlimit = 8ULL << 20;
}

/* Creates /tmp/NAME.XXXXXX into dir (cap bytes); 0 or -1. */
static inline int unit_mkdtemp(char *dir, size_t cap, const char *name)
{
	if ((size_t)snprintf(dir, cap, "/tmp/%s.XXXXXX", name) >= cap)
		return -1;
	return mkdtemp(dir) ? 0 : -1;
}

/* Removes dir and everything below it; 0 or -1. */
static inline int unit_rm_rf(const char *dir)
{
	char cmd[4200];

	if ((size_t)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) >= sizeof(cmd))
		return -1;
	return system(cmd) == 0 ? 0 : -1;
}

/* A secret built from text, read back from a file in dir (what the CLI
 * would have read); the file is removed again. */
static inline struct secret *unit_secret(const char *dir, const char *text)
{
	char path[4200];
	struct secret *s = NULL;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/secret.tmp", dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	assert_int_equal(secret_from_file(path, &s), 0);
	unlink(path);
	return s;
}

#ifdef UNIT_VFS_SHIM
#include <sqlite3.h>

/*
 * VFS shim: forwards everything to the default VFS, but xWrite fails with
 * unit_fault_rc (a SQLite code; 0: no fault armed) once unit_fault_after
 * more calls have passed.
 */
static sqlite3_vfs *unit_real_vfs;
static sqlite3_vfs unit_shim_vfs;
static int unit_fault_rc;    /* 0: no fault armed */
static int unit_fault_after; /* calls to let through before failing */

struct unit_shim_file {
	sqlite3_file base;  /* must be first */
	sqlite3_file *real; /* the wrapped file, allocated right after */
};

#define UNIT_REAL(f) (((struct unit_shim_file *)(f))->real)

static inline int unit_fault_now(void)
{
	if (!unit_fault_rc)
		return 0;
	if (unit_fault_after > 0) {
		unit_fault_after--;
		return 0;
	}
	return unit_fault_rc;
}

static inline int unit_shim_close(sqlite3_file *f)
{
	return UNIT_REAL(f)->pMethods->xClose(UNIT_REAL(f));
}
static inline int unit_shim_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o)
{
	return UNIT_REAL(f)->pMethods->xRead(UNIT_REAL(f), b, n, o);
}
static inline int unit_shim_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o)
{
	int rc = unit_fault_now();

	return rc ? rc : UNIT_REAL(f)->pMethods->xWrite(UNIT_REAL(f), b, n, o);
}
static inline int unit_shim_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	return UNIT_REAL(f)->pMethods->xTruncate(UNIT_REAL(f), size);
}
static inline int unit_shim_sync(sqlite3_file *f, int flags)
{
	return UNIT_REAL(f)->pMethods->xSync(UNIT_REAL(f), flags);
}
static inline int unit_shim_size(sqlite3_file *f, sqlite3_int64 *size)
{
	return UNIT_REAL(f)->pMethods->xFileSize(UNIT_REAL(f), size);
}
static inline int unit_shim_lock(sqlite3_file *f, int l)
{
	return UNIT_REAL(f)->pMethods->xLock(UNIT_REAL(f), l);
}
static inline int unit_shim_unlock(sqlite3_file *f, int l)
{
	return UNIT_REAL(f)->pMethods->xUnlock(UNIT_REAL(f), l);
}
static inline int unit_shim_check(sqlite3_file *f, int *out)
{
	return UNIT_REAL(f)->pMethods->xCheckReservedLock(UNIT_REAL(f), out);
}
static inline int unit_shim_fcntl(sqlite3_file *f, int op, void *arg)
{
	return UNIT_REAL(f)->pMethods->xFileControl(UNIT_REAL(f), op, arg);
}
static inline int unit_shim_sector(sqlite3_file *f)
{
	return UNIT_REAL(f)->pMethods->xSectorSize(UNIT_REAL(f));
}
static inline int unit_shim_devchar(sqlite3_file *f)
{
	return UNIT_REAL(f)->pMethods->xDeviceCharacteristics(UNIT_REAL(f));
}
static inline int unit_shim_shmmap(sqlite3_file *f, int pg, int sz, int ext,
				   void volatile **pp)
{
	return UNIT_REAL(f)->pMethods->xShmMap(UNIT_REAL(f), pg, sz, ext, pp);
}
static inline int unit_shim_shmlock(sqlite3_file *f, int off, int n, int fl)
{
	return UNIT_REAL(f)->pMethods->xShmLock(UNIT_REAL(f), off, n, fl);
}
static inline void unit_shim_shmbarrier(sqlite3_file *f)
{
	UNIT_REAL(f)->pMethods->xShmBarrier(UNIT_REAL(f));
}
static inline int unit_shim_shmunmap(sqlite3_file *f, int del)
{
	return UNIT_REAL(f)->pMethods->xShmUnmap(UNIT_REAL(f), del);
}
static inline int unit_shim_fetch(sqlite3_file *f, sqlite3_int64 o, int n, void **pp)
{
	return UNIT_REAL(f)->pMethods->xFetch(UNIT_REAL(f), o, n, pp);
}
static inline int unit_shim_unfetch(sqlite3_file *f, sqlite3_int64 o, void *p)
{
	return UNIT_REAL(f)->pMethods->xUnfetch(UNIT_REAL(f), o, p);
}

static const sqlite3_io_methods unit_shim_methods = {
	.iVersion = 3,
	.xClose = unit_shim_close,
	.xRead = unit_shim_read,
	.xWrite = unit_shim_write,
	.xTruncate = unit_shim_truncate,
	.xSync = unit_shim_sync,
	.xFileSize = unit_shim_size,
	.xLock = unit_shim_lock,
	.xUnlock = unit_shim_unlock,
	.xCheckReservedLock = unit_shim_check,
	.xFileControl = unit_shim_fcntl,
	.xSectorSize = unit_shim_sector,
	.xDeviceCharacteristics = unit_shim_devchar,
	.xShmMap = unit_shim_shmmap,
	.xShmLock = unit_shim_shmlock,
	.xShmBarrier = unit_shim_shmbarrier,
	.xShmUnmap = unit_shim_shmunmap,
	.xFetch = unit_shim_fetch,
	.xUnfetch = unit_shim_unfetch,
};

static inline int unit_shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f,
				 int flags, int *outflags)
{
	struct unit_shim_file *sf = (struct unit_shim_file *)f;
	int rc;

	(void)vfs;
	sf->real = (sqlite3_file *)(sf + 1);
	rc = unit_real_vfs->xOpen(unit_real_vfs, name, sf->real, flags, outflags);
	sf->base.pMethods = rc == SQLITE_OK ? &unit_shim_methods : NULL;
	return rc;
}

/* Makes the shim, named name, the default VFS (no fault armed). */
static inline void unit_shim_install(const char *name)
{
	unit_fault_rc = 0;
	unit_fault_after = 0;
	unit_real_vfs = sqlite3_vfs_find(NULL);
	assert_non_null(unit_real_vfs);
	assert_true(unit_real_vfs->iVersion >= 3);
	unit_shim_vfs = *unit_real_vfs;
	unit_shim_vfs.zName = name;
	unit_shim_vfs.szOsFile =
		(int)sizeof(struct unit_shim_file) + unit_real_vfs->szOsFile;
	unit_shim_vfs.xOpen = unit_shim_open;
	assert_int_equal(sqlite3_vfs_register(&unit_shim_vfs, 1), SQLITE_OK);
}

/* Puts the real VFS back as the default. */
static inline void unit_shim_remove(void)
{
	unit_fault_rc = 0;
	sqlite3_vfs_unregister(&unit_shim_vfs);
	sqlite3_vfs_register(unit_real_vfs, 1);
}
#endif /* UNIT_VFS_SHIM */

#endif
