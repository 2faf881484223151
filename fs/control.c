/*
 * control.c — the daemon's control channel (control.h): the listening
 * socket in the store directory, the thread that serves it, and the
 * client function the admin tool calls.
 *
 * The socket is addressed as /proc/self/fd/DIRFD/control.sock, through an
 * O_PATH descriptor of the store directory, so a store path of any length
 * fits the 108 bytes of sun_path.  Requests are served one at a time on
 * one thread with send/receive timeouts, so a client that connects and
 * says nothing delays the next request by at most CONTROL_IO_TIMEOUT_MS
 * and never blocks the file system.
 */
#include "control.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_IO_TIMEOUT_MS 2000 /* server: longest wait for a request */
#define CONTROL_BACKLOG 8

/* One registered verb. */
struct control_verb {
	char name[CONTROL_VERB_MAX]; /* e.g. "policy-reload" */
	control_fn fn;               /* its handler */
	void *ctx;                   /* handler's argument */
};

struct control {
	struct control_verb verbs[CONTROL_MAX_VERBS]; /* registered verbs */
	size_t nverbs;                                /* used entries of verbs */
	int dirfd;                                    /* O_PATH fd of the store dir */
	int sock;                                     /* listening socket, -1 */
	int wake[2];                                  /* pipe: a byte stops the thread */
	dev_t sock_dev;                               /* the socket file we made */
	ino_t sock_ino;
	bool running;     /* thread started */
	pthread_t thread; /* serving thread */
};

int control_new(struct control **out)
{
	struct control *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (!c)
		return -ENOMEM;
	c->dirfd = -1;
	c->sock = -1;
	c->wake[0] = c->wake[1] = -1;
	*out = c;
	return 0;
}

int control_register(struct control *c, const char *verb, control_fn fn, void *ctx)
{
	size_t len = strlen(verb);

	if (len == 0 || len >= CONTROL_VERB_MAX || strchr(verb, ' ') || !fn)
		return -EINVAL;
	for (size_t i = 0; i < c->nverbs; i++)
		if (strcmp(c->verbs[i].name, verb) == 0)
			return -EEXIST;
	if (c->nverbs == CONTROL_MAX_VERBS)
		return -ENOSPC;
	memcpy(c->verbs[c->nverbs].name, verb, len + 1);
	c->verbs[c->nverbs].fn = fn;
	c->verbs[c->nverbs].ctx = ctx;
	c->nverbs++;
	return 0;
}

/* The socket's address through dirfd. */
static int control_addr(int dirfd, struct sockaddr_un *sa)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "/proc/self/fd/%d/%s", dirfd,
		     CONTROL_SOCKET);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

static void set_timeouts(int fd, int ms)
{
	struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Does a daemon answer on the socket file?  0 = nobody (stale or absent),
 * -EADDRINUSE = somebody does, other -errno. */
static int control_probe(int dirfd, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret;

	if (fstatat(dirfd, CONTROL_SOCKET, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0 || errno == EAGAIN)
		ret = -EADDRINUSE;
	else if (errno == ECONNREFUSED || errno == ENOENT)
		ret = 0;
	else
		ret = -errno;
	close(fd);
	if (ret == 0 && unlinkat(dirfd, CONTROL_SOCKET, 0) != 0 && errno != ENOENT)
		ret = -errno;
	return ret;
}

/* The client of the request this thread is serving. */
static _Thread_local int peer_pid;

int control_peer_pid(void)
{
	return peer_pid;
}

/* Serves one accepted connection: one request, one reply. */
static void control_serve(struct control *c, int fd)
{
	char req[CONTROL_MSG_MAX], text[CONTROL_MSG_MAX - 32], reply[CONTROL_MSG_MAX];
	struct ucred cred;
	socklen_t len = sizeof(cred);
	const char *args;
	size_t vlen;
	ssize_t n;
	int ret = -ENOSYS;

	text[0] = '\0';
	set_timeouts(fd, CONTROL_IO_TIMEOUT_MS);
	/* The request is read first, so that a refused client still gets
	 * its reply instead of a broken pipe. */
	n = recv(fd, req, sizeof(req) - 1, 0);
	if (n <= 0)
		return; /* the client left or said nothing: no one to answer */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
		ret = -EPERM;
		snprintf(text, sizeof(text), "only root may control the daemon");
		goto reply;
	}
	req[n] = '\0';
	while (n > 0 && (req[n - 1] == '\n' || req[n - 1] == '\r'))
		req[--n] = '\0';
	vlen = strcspn(req, " ");
	args = req[vlen] ? req + vlen + 1 : "";
	snprintf(text, sizeof(text), "unknown request");
	peer_pid = (int)cred.pid;
	for (size_t i = 0; i < c->nverbs; i++) {
		if (strlen(c->verbs[i].name) == vlen &&
		    memcmp(c->verbs[i].name, req, vlen) == 0) {
			text[0] = '\0';
			ret = c->verbs[i].fn(c->verbs[i].ctx, args, text, sizeof(text));
			break;
		}
	}
	peer_pid = 0;
reply:
	text[strcspn(text, "\n")] = '\0';
	if (ret == 0)
		snprintf(reply, sizeof(reply), "OK %s", text);
	else
		snprintf(reply, sizeof(reply), "ERR %d %s", -ret, text);
	(void)send(fd, reply, strlen(reply), MSG_NOSIGNAL);
}

static void *control_thread(void *arg)
{
	struct control *c = arg;

	for (;;) {
		struct pollfd pf[2] = {
			{.fd = c->sock, .events = POLLIN},
			{.fd = c->wake[0], .events = POLLIN},
		};
		int fd;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (!(pf[0].revents & POLLIN))
			continue;
		fd = accept4(c->sock, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			/* Out of descriptors or memory: the connection waits
			 * in the backlog; back off instead of spinning. */
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				struct timespec ts = {0, 100 * 1000 * 1000};

				nanosleep(&ts, NULL);
			}
			continue;
		}
		control_serve(c, fd);
		close(fd);
	}
	return NULL;
}

int control_listen(struct control *c, const char *store_path)
{
	struct sockaddr_un sa;
	struct stat st;
	mode_t old;
	int ret;

	if (c->sock >= 0)
		return -EALREADY;
	c->dirfd = open(store_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (c->dirfd < 0)
		return -errno;
	ret = control_addr(c->dirfd, &sa);
	if (ret < 0)
		goto fail;
	ret = control_probe(c->dirfd, &sa);
	if (ret < 0)
		goto fail;
	c->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->sock < 0) {
		ret = -errno;
		goto fail;
	}
	/* Born 0600: no window in which others could connect (they would be
	 * refused by the uid check anyway).  umask is per process: this runs
	 * before the daemon starts any thread. */
	old = umask(0177);
	ret = bind(c->sock, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? 0 : -errno;
	umask(old);
	if (ret < 0)
		goto fail;
	if (fstatat(c->dirfd, CONTROL_SOCKET, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		ret = -errno;
		goto fail_unlink;
	}
	c->sock_dev = st.st_dev;
	c->sock_ino = st.st_ino;
	if (listen(c->sock, CONTROL_BACKLOG) != 0 || pipe2(c->wake, O_CLOEXEC) != 0) {
		ret = -errno;
		goto fail_unlink;
	}
	ret = -pthread_create(&c->thread, NULL, control_thread, c);
	if (ret < 0)
		goto fail_unlink;
	c->running = true;
	return 0;

fail_unlink:
	(void)unlinkat(c->dirfd, CONTROL_SOCKET, 0);
fail:
	if (c->wake[0] >= 0) {
		close(c->wake[0]);
		close(c->wake[1]);
		c->wake[0] = c->wake[1] = -1;
	}
	if (c->sock >= 0)
		close(c->sock);
	c->sock = -1;
	close(c->dirfd);
	c->dirfd = -1;
	return ret;
}

void control_close(struct control *c)
{
	struct stat st;

	if (!c)
		return;
	if (c->running) {
		char b = 1;

		while (write(c->wake[1], &b, 1) < 0 && errno == EINTR)
			;
		pthread_join(c->thread, NULL);
	}
	if (c->sock >= 0) {
		close(c->sock);
		/* Only our own socket: a later daemon may have replaced it. */
		if (fstatat(c->dirfd, CONTROL_SOCKET, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_dev == c->sock_dev && st.st_ino == c->sock_ino)
			(void)unlinkat(c->dirfd, CONTROL_SOCKET, 0);
	}
	if (c->wake[0] >= 0) {
		close(c->wake[0]);
		close(c->wake[1]);
	}
	if (c->dirfd >= 0)
		close(c->dirfd);
	free(c);
}

int control_request(const char *store_path, const char *request, char *reply, size_t cap)
{
	return control_request_timeout(store_path, request, reply, cap,
				       CONTROL_TIMEOUT_MS);
}

int control_request_timeout(const char *store_path, const char *request, char *reply,
			    size_t cap, int timeout_ms)
{
	struct sockaddr_un sa;
	char buf[CONTROL_MSG_MAX];
	const char *text;
	int dirfd, fd = -1, ret;
	ssize_t n;
	long code;
	char *end;

	if (cap > 0)
		reply[0] = '\0';
	if (strlen(request) >= CONTROL_MSG_MAX)
		return -EMSGSIZE;
	dirfd = open(store_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return -errno;
	ret = control_addr(dirfd, &sa);
	if (ret < 0)
		goto out;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	set_timeouts(fd, timeout_ms > 0 ? timeout_ms : CONTROL_TIMEOUT_MS);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		ret = -errno;
		goto out;
	}
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0) {
		ret = -errno;
		goto out;
	}
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0) {
		ret = errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
		goto out;
	}
	buf[n] = '\0';
	if (strncmp(buf, "OK", 2) == 0 && (buf[2] == ' ' || buf[2] == '\0')) {
		text = buf[2] ? buf + 3 : "";
		ret = 0;
	} else if (strncmp(buf, "ERR ", 4) == 0) {
		errno = 0;
		code = strtol(buf + 4, &end, 10);
		if (errno || end == buf + 4 || code <= 0 || code > 4095 ||
		    (*end != ' ' && *end != '\0')) {
			ret = -EPROTO;
			goto out;
		}
		text = *end ? end + 1 : "";
		ret = -(int)code;
	} else {
		ret = -EPROTO;
		goto out;
	}
	if (cap > 0)
		snprintf(reply, cap, "%s", text);
out:
	if (fd >= 0)
		close(fd);
	close(dirfd);
	return ret;
}
