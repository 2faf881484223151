/*
 * sys.h — the system-call seam.
 *
 * Every engine call that touches the backing store's file contents goes
 * through the table `sys`, so unit tests can swap in a function that fails
 * with ENOSPC or EIO at the Nth call (the SQLite os_unix.c habit).  The
 * defaults are the libc functions.  Production code never changes the table.
 */
#ifndef CUSTODIAN_SYS_H
#define CUSTODIAN_SYS_H

#include <sys/stat.h>
#include <sys/types.h>

struct sys_ops {
	ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
	int (*ftruncate)(int fd, off_t len);
	int (*fsync)(int fd);
	int (*fdatasync)(int fd);
	int (*openat)(int dirfd, const char *path, int flags, mode_t mode);
	int (*unlinkat)(int dirfd, const char *path, int flags);
	int (*renameat)(int olddirfd, const char *oldpath, int newdirfd,
			const char *newpath);
	void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd, off_t off);
	/* The length of fd's file: 0 (and *size) or -errno.  Not fstat:
	 * asking for the times marks a file's ctime as seen, and since
	 * Linux 6.13 (multigrain timestamps) the next pwrite must then
	 * stamp a fresh fine-grained time and dirty the inode: one more
	 * inode update per WRITE request.  statx(STATX_SIZE) asks for
	 * the length alone and leaves the times coarse. */
	int (*fsize)(int fd, off_t *size);
};

/* The live table.  Tests may overwrite entries and must restore them
 * with sys_reset(). */
extern struct sys_ops sys;

/* Restores the libc defaults. */
void sys_reset(void);

/* Lowers the calling thread's scheduling priority (nice + SYS_NICE_BACKGROUND)
 * for work nobody waits for (the audit writer, durable-sync): on a 2-core
 * server the request threads and their callers go first.  Best effort. */
#define SYS_NICE_BACKGROUND 10
void sys_background_thread(void);

/* pread/pwrite that loop over short transfers and EINTR.  Return bytes
 * transferred (less than n only at end of file for reads) or -errno. */
ssize_t sys_pread_full(int fd, void *buf, size_t n, off_t off);
ssize_t sys_pwrite_full(int fd, const void *buf, size_t n, off_t off);

#endif
