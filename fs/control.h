/*
 * control.h — the daemon's control channel: a local socket through which
 * the admin tool tells a running custodianfs to act now (reload the
 * policy; later: drop a shredded subject's key, run a sweep).
 *
 * Engine side, no FUSE: the daemon creates a struct control, registers one
 * callback per verb, and listens on STORE/control.sock (AF_UNIX,
 * SOCK_SEQPACKET, mode 0600).  A thread accepts one connection at a time,
 * checks the peer with SO_PEERCRED (uid 0 only), reads one request
 * "VERB[ ARGS]" and sends one reply: "OK TEXT" or "ERR ERRNO TEXT".  Verbs
 * therefore run one at a time, in the order they arrive.  Tools call
 * control_request().
 */
#ifndef CUSTODIAN_CONTROL_H
#define CUSTODIAN_CONTROL_H

#include <stddef.h>

#include "errs.h"

#define CONTROL_SOCKET "control.sock" /* inside the store directory */
#define CONTROL_MSG_MAX                                                                  \
	8192                     /* bytes of a request or reply (a                       \
				    shred carries a 1 KiB reason, hex) */
#define CONTROL_VERB_MAX 32      /* bytes of a verb */
#define CONTROL_MAX_VERBS 16     /* verbs one channel can serve */
#define CONTROL_TIMEOUT_MS 30000 /* client: longest wait for the reply */

/* Handles one request: args is the text after "VERB " ("" if none).  Writes
 * a one-line human reply (no newline) to reply (cap bytes) and returns 0
 * or -errno; the errno travels to the client. */
typedef int (*control_fn)(void *ctx, const char *args, char *reply, size_t cap);

struct control;

int control_new(struct control **out) MUST_CHECK;

/* Adds a verb (before control_listen).  -EEXIST, -ENOSPC (too many),
 * -EINVAL (empty, too long, or with a space). */
int control_register(struct control *c, const char *verb, control_fn fn,
		     void *ctx) MUST_CHECK;

/*
 * Creates STORE/control.sock (mode 0600) and starts the serving thread.
 * A socket file nobody answers on (left by a killed daemon) is replaced;
 * -EADDRINUSE if a daemon answers there (the store is mounted already);
 * -ENAMETOOLONG, -errno of socket/bind/listen/thread creation.
 */
int control_listen(struct control *c, const char *store_path) MUST_CHECK;

/* Inside a verb handler: the pid of the client being served (from
 * SO_PEERCRED), so the handler can record who asked; 0 elsewhere.
 * (Added with the live subject verbs.) */
int control_peer_pid(void);

/* Stops the thread, removes the socket file (if it is still the one this
 * channel created) and frees everything.  NULL accepted. */
void control_close(struct control *c);

/*
 * Client: sends request ("VERB[ ARGS]") to the daemon serving store_path
 * and waits for its reply.  0 if the daemon replied OK, its -errno if it
 * replied ERR; reply gets the reply text either way.  -ENOENT or
 * -ECONNREFUSED if no daemon serves the store (nothing to tell),
 * -ETIMEDOUT, -EPROTO for a malformed reply, other -errno.
 */
int control_request(const char *store_path, const char *request, char *reply,
		    size_t cap) MUST_CHECK;

/* control_request waiting up to timeout_ms for the reply (verbs that do
 * long work: a live sweep).  (Added with the live retention verbs.) */
int control_request_timeout(const char *store_path, const char *request, char *reply,
			    size_t cap, int timeout_ms) MUST_CHECK;

#endif
