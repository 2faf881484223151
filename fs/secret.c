/*
 * secret.c — getting a passphrase or key into secure memory.
 *
 * Owns the three ways a secret arrives (file, terminal, command output) and
 * the rule that its bytes go straight into crypt_secure_alloc memory: each
 * reader fills the secret's own buffer, never a stack or heap copy.  A
 * struct secret and its buffer are one secure allocation.
 *
 * The terminal reader turns echo off; the previous terminal settings are
 * restored on every return path and also if a signal (Ctrl-C, SIGTERM)
 * kills the process while echo is off.
 */
#include "secret.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "crypt.h"

/* Room for SECRET_MAX bytes, a "\r\n" that will be dropped, one byte more
 * to notice overlong input, and the NUL. */
#define SECRET_CAP (SECRET_MAX + 4)

/* Secure allocation sized to a multiple of 16 so the struct (at the start
 * of a region that ends on a page boundary) is aligned. */
#define SECRET_ALLOC (((sizeof(struct secret) + SECRET_CAP) + 15) & ~(size_t)15)

static struct secret *secret_alloc(void)
{
	struct secret *s = crypt_secure_alloc(SECRET_ALLOC);

	if (s == NULL)
		return NULL;
	crypt_wipe(s, SECRET_ALLOC);
	s->buf = (char *)(s + 1);
	s->len = 0;
	return s;
}

void secret_free(struct secret *s)
{
	crypt_secure_free(s);
}

/* Drops one trailing "\n" or "\r\n" and checks the length rule. */
static int secret_finish(struct secret *s)
{
	if (s->len > 0 && s->buf[s->len - 1] == '\n') {
		s->buf[--s->len] = '\0';
		if (s->len > 0 && s->buf[s->len - 1] == '\r')
			s->buf[--s->len] = '\0';
	}
	if (s->len == 0 || s->len > SECRET_MAX)
		return -EINVAL;
	s->buf[s->len] = '\0';
	return 0;
}

/* Reads fd to end of file into s (up to SECRET_CAP - 1 bytes; more is
 * -EINVAL, but the input is drained so a writer is not left blocked). */
static int secret_read_fd(int fd, struct secret *s)
{
	bool too_long = false;

	for (;;) {
		ssize_t r;

		if (s->len < SECRET_CAP - 1) {
			r = read(fd, s->buf + s->len, SECRET_CAP - 1 - s->len);
		} else {
			char sink[256];

			r = read(fd, sink, sizeof(sink));
			crypt_wipe(sink, sizeof(sink));
			if (r > 0)
				too_long = true;
		}
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		if (s->len < SECRET_CAP - 1)
			s->len += (size_t)r;
	}
	return too_long ? -EINVAL : 0;
}

int secret_from_file(const char *path, struct secret **out)
{
	struct secret *s = NULL;
	int fd, ret;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -errno;
	s = secret_alloc();
	if (s == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	ret = secret_read_fd(fd, s);
	if (ret == 0)
		ret = secret_finish(s);
out:
	close(fd);
	if (ret < 0)
		secret_free(s);
	else
		*out = s;
	return ret;
}

/* ---- terminal --------------------------------------------------------- */

/* State the signal handler needs to put the terminal back. */
static volatile sig_atomic_t tty_active;
static int tty_fd = -1;
static struct termios tty_saved;

static const int tty_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP};
static struct sigaction tty_old_actions[ARRAY_LEN(tty_signals)];

static void tty_on_signal(int sig)
{
	int saved_errno = errno;

	if (tty_active)
		tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
	for (size_t i = 0; i < ARRAY_LEN(tty_signals); i++)
		if (tty_signals[i] == sig)
			sigaction(sig, &tty_old_actions[i], NULL);
	raise(sig);
	errno = saved_errno;
}

/* Reads one line from the terminal into s (without the newline). */
static int tty_read_line(int fd, struct secret *s)
{
	bool too_long = false;

	s->len = 0;
	for (;;) {
		char c;
		ssize_t r = read(fd, &c, 1);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0 || c == '\n')
			break;
		if (s->len < SECRET_MAX)
			s->buf[s->len++] = c;
		else
			too_long = true;
		c = 0;
	}
	if (s->len > 0 && s->buf[s->len - 1] == '\r')
		s->len--;
	s->buf[s->len] = '\0';
	if (too_long || s->len == 0)
		return -EINVAL;
	return 0;
}

static int tty_prompt(int fd, const char *prompt)
{
	size_t n = strlen(prompt);

	while (n > 0) {
		ssize_t w = write(fd, prompt, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		prompt += w;
		n -= (size_t)w;
	}
	return 0;
}

int secret_from_tty(const char *prompt, bool confirm, struct secret **out)
{
	struct secret *s = NULL, *again = NULL;
	struct termios quiet;
	struct sigaction sa;
	bool installed = false;
	int fd, ret;

	*out = NULL;
	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -ENOTTY;
	if (tcgetattr(fd, &tty_saved) != 0) {
		ret = -ENOTTY;
		goto out;
	}
	s = secret_alloc();
	if (confirm)
		again = secret_alloc();
	if (s == NULL || (confirm && again == NULL)) {
		ret = -ENOMEM;
		goto out;
	}

	tty_fd = fd;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = tty_on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < ARRAY_LEN(tty_signals); i++)
		sigaction(tty_signals[i], &sa, &tty_old_actions[i]);
	installed = true;

	quiet = tty_saved;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL; /* the user still sees Enter taken */
	tty_active = 1;
	if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
		ret = -errno;
		goto out;
	}
	ret = tty_prompt(fd, prompt ? prompt : "Passphrase: ");
	if (ret == 0)
		ret = tty_read_line(fd, s);
	if (ret == 0 && confirm) {
		ret = tty_prompt(fd, "Repeat: ");
		if (ret == 0)
			ret = tty_read_line(fd, again);
		if (ret == 0 &&
		    (again->len != s->len || !crypt_equal(again->buf, s->buf, s->len)))
			ret = -EINVAL;
	}
out:
	if (tty_active) {
		tcsetattr(fd, TCSAFLUSH, &tty_saved);
		tty_active = 0;
	}
	if (installed)
		for (size_t i = 0; i < ARRAY_LEN(tty_signals); i++)
			sigaction(tty_signals[i], &tty_old_actions[i], NULL);
	tty_fd = -1;
	crypt_wipe(&tty_saved, sizeof(tty_saved));
	close(fd);
	secret_free(again);
	if (ret < 0)
		secret_free(s);
	else
		*out = s;
	return ret;
}

/* ---- command ---------------------------------------------------------- */

int secret_from_cmd(const char *cmd, struct secret **out)
{
	struct secret *s = NULL;
	int pfd[2] = {-1, -1};
	pid_t pid = -1;
	int status, ret;

	*out = NULL;
	if (cmd == NULL || *cmd == '\0')
		return -EINVAL;
	s = secret_alloc();
	if (s == NULL)
		return -ENOMEM;
	if (pipe2(pfd, O_CLOEXEC) != 0) {
		ret = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		goto out;
	}
	if (pid == 0) {
		/* Child: only async-signal-safe calls until exec. */
		if (dup2(pfd[1], STDOUT_FILENO) < 0)
			_exit(127);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	pfd[1] = -1;
	ret = secret_read_fd(pfd[0], s);
	close(pfd[0]);
	pfd[0] = -1;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			ret = -errno;
			goto out;
		}
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		ret = -EIO;
		goto out;
	}
	if (ret < 0)
		goto out;
	if (s->len == 0 || (s->len == 1 && s->buf[0] == '\n')) {
		ret = -EIO; /* printed nothing */
		goto out;
	}
	ret = secret_finish(s);
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (ret < 0)
		secret_free(s);
	else
		*out = s;
	return ret;
}
