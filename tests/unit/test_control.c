/*
 * test_control.c — unit tests for fs/control.c: verb registration errors,
 * a request answered OK and with an errno, unknown verbs, the socket's
 * mode and removal, a second listener refused while one answers, a stale
 * socket file replaced, a non-socket in the way, client errors (no store,
 * no daemon, stale socket, request too long) and malformed replies from a
 * fake server; the client's pid seen by a handler (control_peer_pid) and
 * the per-request timeout (control_request_timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "control.h"

static char dir[64];
static char sockpath[96];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_control.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sockpath, sizeof(sockpath), "%s/%s", dir, CONTROL_SOCKET);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(sockpath);
	rmdir(dir);
	return 0;
}

static int calls;

static int echo(void *ctx, const char *args, char *reply, size_t cap)
{
	(void)ctx;
	calls++;
	snprintf(reply, cap, "echo [%s]", args);
	return 0;
}

static int refuse(void *ctx, const char *args, char *reply, size_t cap)
{
	(void)args;
	snprintf(reply, cap, "refused: %s", (const char *)ctx);
	return -EBADMSG;
}

static void test_register_errors(void **state)
{
	struct control *c;
	char longverb[CONTROL_VERB_MAX + 1];

	(void)state;
	assert_int_equal(control_new(&c), 0);
	assert_int_equal(control_register(c, "", echo, NULL), -EINVAL);
	assert_int_equal(control_register(c, "a b", echo, NULL), -EINVAL);
	assert_int_equal(control_register(c, "x", NULL, NULL), -EINVAL);
	memset(longverb, 'v', sizeof(longverb) - 1);
	longverb[sizeof(longverb) - 1] = '\0';
	assert_int_equal(control_register(c, longverb, echo, NULL), -EINVAL);
	assert_int_equal(control_register(c, "echo", echo, NULL), 0);
	assert_int_equal(control_register(c, "echo", echo, NULL), -EEXIST);
	for (int i = 1; i < CONTROL_MAX_VERBS; i++) {
		char v[16];

		snprintf(v, sizeof(v), "v%d", i);
		assert_int_equal(control_register(c, v, echo, NULL), 0);
	}
	assert_int_equal(control_register(c, "more", echo, NULL), -ENOSPC);
	control_close(c);
	control_close(NULL);
}

static void test_request_reply(void **state)
{
	struct control *c, *c2;
	char reply[CONTROL_MSG_MAX];
	struct stat st;

	(void)state;
	assert_int_equal(control_new(&c), 0);
	assert_int_equal(control_register(c, "echo", echo, NULL), 0);
	assert_int_equal(control_register(c, "refuse", refuse, "because"), 0);
	assert_int_equal(control_listen(c, dir), 0);
	assert_int_equal(control_listen(c, dir), -EALREADY);
	assert_int_equal(lstat(sockpath, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0600);

	calls = 0;
	assert_int_equal(control_request(dir, "echo hello world", reply, sizeof(reply)),
			 0);
	assert_string_equal(reply, "echo [hello world]");
	assert_int_equal(control_request(dir, "echo", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "echo []");
	assert_int_equal(calls, 2);
	assert_int_equal(control_request(dir, "refuse x", reply, sizeof(reply)),
			 -EBADMSG);
	assert_string_equal(reply, "refused: because");
	assert_int_equal(control_request(dir, "nope", reply, sizeof(reply)), -ENOSYS);
	assert_string_equal(reply, "unknown request");
	assert_int_equal(control_request(dir, "echoes", reply, sizeof(reply)), -ENOSYS);
	/* a small reply buffer truncates, still NUL-terminated */
	assert_int_equal(control_request(dir, "echo abc", reply, 5), 0);
	assert_string_equal(reply, "echo");

	/* the store is served: a second daemon is refused */
	assert_int_equal(control_new(&c2), 0);
	assert_int_equal(control_listen(c2, dir), -EADDRINUSE);
	control_close(c2);
	assert_int_equal(control_request(dir, "echo still", reply, sizeof(reply)), 0);

	control_close(c);
	assert_int_equal(lstat(sockpath, &st), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(control_request(dir, "echo", reply, sizeof(reply)), -ENOENT);
}

static void make_stale_socket(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET, 0);

	assert_true(fd >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sockpath);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* bound, never listened, file left behind */
}

static void test_stale_socket_and_obstacles(void **state)
{
	char reply[64];
	struct control *c;
	int fd;

	(void)state;
	make_stale_socket();
	assert_int_equal(control_request(dir, "echo", reply, sizeof(reply)),
			 -ECONNREFUSED);
	assert_int_equal(control_new(&c), 0);
	assert_int_equal(control_register(c, "echo", echo, NULL), 0);
	assert_int_equal(control_listen(c, dir), 0);
	assert_int_equal(control_request(dir, "echo x", reply, sizeof(reply)), 0);
	control_close(c);

	/* something that is not a socket is not ours to remove */
	fd = open(sockpath, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(control_new(&c), 0);
	assert_int_equal(control_listen(c, dir), -EEXIST);
	control_close(c);
	unlink(sockpath);

	assert_int_equal(control_new(&c), 0);
	assert_int_equal(control_listen(c, "/nonexistent/store"), -ENOENT);
	control_close(c);
	assert_int_equal(control_request("/nonexistent/store", "x", reply, sizeof(reply)),
			 -ENOENT);
	char big[CONTROL_MSG_MAX + 1];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(control_request(dir, big, reply, sizeof(reply)), -EMSGSIZE);
}

/* A fake daemon that answers one request with a fixed reply. */
struct fake_server {
	int sock;          /* listening */
	const char *reply; /* what to send back */
};

static void *fake_serve(void *arg)
{
	struct fake_server *f = arg;
	char buf[256];
	int fd = accept(f->sock, NULL, NULL);

	if (fd >= 0) {
		if (recv(fd, buf, sizeof(buf), 0) > 0)
			(void)send(fd, f->reply, strlen(f->reply), MSG_NOSIGNAL);
		close(fd);
	}
	return NULL;
}

static int fake_request(const char *server_reply, char *reply, size_t cap)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct fake_server f = {.reply = server_reply};
	pthread_t t;
	int ret;

	f.sock = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	assert_true(f.sock >= 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sockpath);
	assert_int_equal(bind(f.sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(f.sock, 1), 0);
	assert_int_equal(pthread_create(&t, NULL, fake_serve, &f), 0);
	ret = control_request(dir, "policy-reload", reply, cap);
	pthread_join(t, NULL);
	close(f.sock);
	unlink(sockpath);
	return ret;
}

static void test_malformed_replies(void **state)
{
	char reply[64];

	(void)state;
	assert_int_equal(fake_request("OK", reply, sizeof(reply)), 0);
	assert_string_equal(reply, "");
	assert_int_equal(fake_request("ERR 5", reply, sizeof(reply)), -EIO);
	assert_int_equal(fake_request("garbage", reply, sizeof(reply)), -EPROTO);
	assert_int_equal(fake_request("OKAY then", reply, sizeof(reply)), -EPROTO);
	assert_int_equal(fake_request("ERR x y", reply, sizeof(reply)), -EPROTO);
	assert_int_equal(fake_request("ERR 0 zero", reply, sizeof(reply)), -EPROTO);
	assert_int_equal(fake_request("ERR 99999 big", reply, sizeof(reply)), -EPROTO);
	assert_int_equal(fake_request("ERR 5x", reply, sizeof(reply)), -EPROTO);
	assert_int_equal(fake_request("", reply, sizeof(reply)), -EPROTO);
}

static int whois(void *ctx, const char *args, char *reply, size_t cap)
{
	(void)ctx;
	(void)args;
	snprintf(reply, cap, "%d", control_peer_pid());
	return 0;
}

static int slow(void *ctx, const char *args, char *reply, size_t cap)
{
	struct timespec ts = {0, 400 * 1000 * 1000};

	(void)ctx;
	(void)args;
	nanosleep(&ts, NULL);
	snprintf(reply, cap, "late");
	return 0;
}

static void test_peer_pid_and_timeout(void **state)
{
	char reply[64], want[32];
	struct control *c;

	(void)state;
	assert_int_equal(control_peer_pid(), 0); /* outside a handler */
	assert_int_equal(control_new(&c), 0);
	assert_int_equal(control_register(c, "whois", whois, NULL), 0);
	assert_int_equal(control_register(c, "slow", slow, NULL), 0);
	assert_int_equal(control_listen(c, dir), 0);
	assert_int_equal(control_request(dir, "whois", reply, sizeof(reply)), 0);
	snprintf(want, sizeof(want), "%d", (int)getpid());
	assert_string_equal(reply, want);
	/* too short a wait: the client gives up; long enough: the reply */
	assert_int_equal(control_request_timeout(dir, "slow", reply, sizeof(reply), 100),
			 -ETIMEDOUT);
	assert_int_equal(control_request_timeout(dir, "slow", reply, sizeof(reply), 5000),
			 0);
	assert_string_equal(reply, "late");
	assert_int_equal(control_peer_pid(), 0);
	control_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_errors),
		cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_socket_and_obstacles, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_malformed_replies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_pid_and_timeout, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
