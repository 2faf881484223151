/*
 * chan.c — /dev/fuse reads and writes for libfuse, with the INIT reply's
 * FUSE_HANDLE_KILLPRIV added (why: chan.h).
 *
 * Sections: state; reading (spots the INIT request); writing (amends the
 * INIT reply); attaching.
 *
 * The kernel sends nothing before the INIT reply, so the INIT request is
 * the first message read and its reply the first written; the state below
 * is still atomic because libfuse's worker threads read concurrently once
 * the loop runs.
 */
#include <errno.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "chan.h"

/* ---- state ----------------------------------------------------------------- */

enum chan_init {
	CHAN_INIT_WAIT,    /* no INIT request read yet */
	CHAN_INIT_OFFERED, /* read; the kernel offered FUSE_HANDLE_KILLPRIV */
	CHAN_INIT_PLAIN,   /* read without the offer, or the reply has left */
};

static _Atomic int chan_init = CHAN_INIT_WAIT; /* enum chan_init */
static _Atomic uint64_t chan_init_unique;      /* the INIT request's id */
static atomic_bool *chan_killpriv;             /* the daemon's switch; set
						  once by chan_attach */

/* ---- reading ---------------------------------------------------------------- */

static ssize_t chan_read(int fd, void *buf, size_t len, void *userdata)
{
	const struct fuse_in_header *in = buf;
	ssize_t n;

	(void)userdata;
	n = read(fd, buf, len);
	if (n >= (ssize_t)(sizeof(*in) + offsetof(struct fuse_init_in, flags) +
			   sizeof(uint32_t)) &&
	    atomic_load(&chan_init) == CHAN_INIT_WAIT && in->opcode == FUSE_INIT) {
		const struct fuse_init_in *arg = (const void *)(in + 1);

		atomic_store(&chan_init_unique, in->unique);
		atomic_store(&chan_init, (arg->flags & FUSE_HANDLE_KILLPRIV)
						 ? CHAN_INIT_OFFERED
						 : CHAN_INIT_PLAIN);
	}
	return n;
}

/* ---- writing ----------------------------------------------------------------- */

static ssize_t chan_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	const struct fuse_out_header *out = count > 0 ? iov[0].iov_base : NULL;
	struct fuse_init_out amended;
	struct iovec v[2];
	int expect = CHAN_INIT_OFFERED;

	(void)userdata;
	/* The INIT reply: a header and one argument, the init_out (whose
	 * size depends on the kernel's protocol version; flags is in every
	 * version's). */
	if (count != 2 || iov[0].iov_len != sizeof(*out) || out->error != 0 ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, flags) + sizeof(uint32_t) ||
	    iov[1].iov_len > sizeof(amended) ||
	    atomic_load(&chan_init) != CHAN_INIT_OFFERED ||
	    out->unique != atomic_load(&chan_init_unique) ||
	    !atomic_compare_exchange_strong(&chan_init, &expect, CHAN_INIT_PLAIN))
		return writev(fd, iov, count);
	/* Amend a copy: the reply is libfuse's memory. */
	memcpy(&amended, iov[1].iov_base, iov[1].iov_len);
	amended.flags |= FUSE_HANDLE_KILLPRIV;
	v[0] = iov[0];
	v[1].iov_base = &amended;
	v[1].iov_len = iov[1].iov_len;
	/* Before the reply leaves: the kernel may send a chown right after. */
	atomic_store(chan_killpriv, true);
	return writev(fd, v, 2);
}

/* ---- attaching ----------------------------------------------------------------- */

int chan_attach(struct fuse_session *se, atomic_bool *killpriv)
{
	static const struct fuse_custom_io io = {
		.read = chan_read,
		.writev = chan_writev,
	};

	atomic_store(killpriv, false);
	chan_killpriv = killpriv;
	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}
