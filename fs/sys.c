/*
 * sys.c — default system-call table and full-transfer helpers.
 * See sys.h for why the seam exists.
 */
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_openat_default(int dirfd, const char *path, int flags, mode_t mode)
{
	return openat(dirfd, path, flags, mode);
}

static int sys_fsize_default(int fd, off_t *size)
{
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_SIZE, &stx) != 0)
		return -errno;
	*size = (off_t)stx.stx_size;
	return 0;
}

static const struct sys_ops sys_defaults = {
	.pread = pread,
	.pwrite = pwrite,
	.ftruncate = ftruncate,
	.fsync = fsync,
	.fdatasync = fdatasync,
	.openat = sys_openat_default,
	.unlinkat = unlinkat,
	.renameat = renameat,
	.mmap = mmap,
	.fsize = sys_fsize_default,
};

struct sys_ops sys = {
	.pread = pread,
	.pwrite = pwrite,
	.ftruncate = ftruncate,
	.fsync = fsync,
	.fdatasync = fdatasync,
	.openat = sys_openat_default,
	.unlinkat = unlinkat,
	.renameat = renameat,
	.mmap = mmap,
	.fsize = sys_fsize_default,
};

void sys_reset(void)
{
	sys = sys_defaults;
}

ssize_t sys_pread_full(int fd, void *buf, size_t n, off_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r =
			sys.pread(fd, (char *)buf + done, n - done, off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

ssize_t sys_pwrite_full(int fd, const void *buf, size_t n, off_t off)
{
	size_t done = 0;

	while (done < n) {
		ssize_t r = sys.pwrite(fd, (const char *)buf + done, n - done,
				       off + (off_t)done);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return (ssize_t)done;
}

void sys_background_thread(void)
{
	/* Linux: a thread's nice value is per thread (its tid). */
	(void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), SYS_NICE_BACKGROUND);
}
