/*
 * chan.h — the daemon's side of /dev/fuse, between libfuse and the kernel.
 *
 * libfuse 3.14 reads requests and writes replies itself; chan_attach gives
 * it read and writev functions of ours (fuse_session_custom_io) that do
 * the same system calls, so that the INIT reply can carry a flag libfuse
 * 3.14 cannot express: FUSE_HANDLE_KILLPRIV.  libfuse accepts
 * FUSE_CAP_HANDLE_KILLPRIV in `want` but never sets the protocol bit in
 * its reply, so the kernel refreshed a file's mode with a GETATTR round
 * trip before every chown (tar x, cp -a and rsync -a pay one per file) to
 * clear setuid/setgid itself.  With the flag the daemon clears them (ops.c,
 * "Killing privileges"), and the kernel sends no GETATTR.
 *
 * The flag is added only if the kernel offered it in its INIT request, and
 * *killpriv (the daemon's switch) is set before the reply leaves, so no
 * request can arrive under the new contract before the daemon knows.
 * Every other message passes through unchanged.
 *
 * One session per process: the state is file-static (libfuse passes the
 * session's userdata to these functions, which is ops' filesystem).
 */
#ifndef CUSTODIAN_CHAN_H
#define CUSTODIAN_CHAN_H

#include <stdatomic.h>
#include <stdbool.h>

#include "errs.h"

struct fuse_session;

/* Routes se's reads and writes of its mounted /dev/fuse descriptor through
 * chan (call after fuse_session_mount, before the loop).  *killpriv is
 * set to true just before an INIT reply that carries
 * FUSE_HANDLE_KILLPRIV leaves, and must outlive the session.  0 or
 * -errno; on failure libfuse does its own I/O and *killpriv stays false
 * (the kernel then clears the bits, as before). */
int chan_attach(struct fuse_session *se, atomic_bool *killpriv) MUST_CHECK;

#endif
