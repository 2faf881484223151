/*
 * nokillpriv.c — LD_PRELOAD shim for the killpriv fallback test
 * (test_core_setattr_audit.py): the daemon reads its INIT request with the
 * FUSE_HANDLE_KILLPRIV offer taken out, as from a kernel that does not
 * make it.  The daemon then leaves clearing setuid/setgid to the kernel
 * (fs/chan.h), which is the path this shim exists to test.  Every other
 * read passes through untouched.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* /dev/fuse is character device 10:229. */
static int is_dev_fuse(int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 &&
	       minor(st.st_rdev) == 229;
}

ssize_t read(int fd, void *buf, size_t len)
{
	static ssize_t (*real_read)(int, void *, size_t);
	struct fuse_in_header *in = buf;
	ssize_t n;

	if (!real_read)
		real_read = (ssize_t(*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
	n = real_read(fd, buf, len);
	if (n >= (ssize_t)(sizeof(*in) + offsetof(struct fuse_init_in, flags) +
			   sizeof(uint32_t)) &&
	    in->opcode == FUSE_INIT && in->len == (uint32_t)n && is_dev_fuse(fd)) {
		struct fuse_init_in *arg = (struct fuse_init_in *)(in + 1);

		arg->flags &= ~(uint32_t)FUSE_HANDLE_KILLPRIV;
	}
	return n;
}
