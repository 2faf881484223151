/*
 * test_store.c — unit tests for fs/store.c (create, open, unlock, damage,
 * injected fsync failures) and fs/secret.c (file, command and terminal
 * sources; the terminal is a pseudo-terminal made the controlling tty of a
 * child process).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"
#include "names.h"
#include "secret.h"
#include "store.h"
#include "sys.h"

#include "unit_util.h"

static struct keys_kdf fast_kdf;

struct fixture {
	char dir[64];   /* temporary directory holding everything */
	char store[96]; /* a store path inside it (not yet created) */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL || crypt_init() != 0)
		return -1;
	unit_fast_kdf(&fast_kdf);
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_store") != 0)
		return -1;
	snprintf(f->store, sizeof(f->store), "%s/st", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	sys_reset();
	if (unit_rm_rf(f->dir) != 0)
		return -1;
	free(f);
	return 0;
}

static int count_entries(const char *dir)
{
	char cmd[160];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

static void create_store(struct fixture *f, const char *pass, char *recovery)
{
	struct secret *s = unit_secret(f->dir, pass);

	assert_int_equal(store_create(f->store, s, &fast_kdf, recovery), 0);
	secret_free(s);
}

static void test_create_open_unlock(void **state)
{
	struct fixture *f = *state;
	char recovery[KEYS_RECOVERY_TEXT_MAX], path[160];
	struct secret *pw, *bad, *rec;
	struct store *st = NULL;
	uint8_t zero[STORE_ID_BYTES] = {0}, iv[CRYPT_DIRIV_BYTES];
	struct stat sb;

	create_store(f, "s3cret passphrase\n", recovery);
	assert_int_equal(strlen(recovery), 71);

	/* Layout: a private store directory, the tree (the mount's root,
	 * 0755 like a new file system's), catalogue, root IV. */
	assert_int_equal(stat(f->store, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/%s", f->store, STORE_TREE_DIR);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 07777, 0755);
	snprintf(path, sizeof(path), "%s/%s", f->store, CATALOG_FILE);
	assert_int_equal(stat(path, &sb), 0);

	assert_int_equal(store_open(f->store, false, &st), 0);
	assert_non_null(st);
	assert_string_equal(st->path, f->store);
	assert_null(st->mk);
	assert_false(st->readonly);
	assert_memory_not_equal(st->id, zero, sizeof(zero));
	assert_true(st->tree_fd >= 0);
	assert_int_equal(names_diriv_load(st->tree_fd, iv), 0);

	/* Meta as documented. */
	{
		char buf[32];
		size_t len = 0;

		assert_int_equal(
			catalog_meta_get(st->cat, "format", buf, sizeof(buf), &len), 0);
		assert_int_equal(len, 1);
		assert_memory_equal(buf, "1", 1);
		assert_int_equal(catalog_meta_get(st->cat, "created_us", buf,
						  sizeof(buf) - 1, &len),
				 0);
		buf[len] = '\0';
		assert_true(strtoll(buf, NULL, 10) > 1600000000000000LL);
	}

	bad = unit_secret(f->dir, "s3cret passphrasE\n");
	assert_int_equal(store_unlock_passphrase(st, bad), -EACCES);
	assert_null(st->mk);
	pw = unit_secret(f->dir, "s3cret passphrase\n");
	assert_int_equal(store_unlock_passphrase(st, pw), 0);
	assert_non_null(st->mk);
	assert_true(keys_master_slot(st->mk) > 0);
	/* A failed unlock keeps the key already held. */
	assert_int_equal(store_unlock_passphrase(st, bad), -EACCES);
	assert_non_null(st->mk);

	/* Recovery opens the same master key. */
	{
		struct store *st2 = NULL;

		rec = unit_secret(f->dir, recovery);
		assert_int_equal(store_open(f->store, true, &st2), 0);
		assert_true(st2->readonly);
		assert_memory_equal(st2->id, st->id, STORE_ID_BYTES);
		assert_int_equal(store_unlock_recovery(st2, rec), 0);
		assert_memory_equal(keys_volume(st2->mk), keys_volume(st->mk),
				    sizeof(struct keyring));
		assert_int_equal(keys_master_slot(st2->mk), -1);
		/* No keyfile slot was made. */
		assert_int_equal(store_unlock_keyfile(st2, pw), -EACCES);
		/* The passphrase is not a recovery key. */
		assert_int_equal(store_unlock_recovery(st2, pw), -EINVAL);
		store_close(st2);
		secret_free(rec);
	}
	assert_int_equal(store_unlock_passphrase(st, NULL), -EINVAL);
	assert_int_equal(store_unlock_passphrase(NULL, pw), -EINVAL);
	secret_free(pw);
	secret_free(bad);
	store_close(st);
	store_close(NULL);
}

static void test_store_ids_differ(void **state)
{
	struct fixture *f = *state;
	struct store *a = NULL, *b = NULL;

	create_store(f, "one", NULL);
	strcat(f->store, "2");
	create_store(f, "two", NULL);
	assert_int_equal(store_open(f->store, false, &b), 0);
	f->store[strlen(f->store) - 1] = '\0';
	assert_int_equal(store_open(f->store, false, &a), 0);
	assert_memory_not_equal(a->id, b->id, STORE_ID_BYTES);
	store_close(a);
	store_close(b);
}

static void test_create_refusals(void **state)
{
	struct fixture *f = *state;
	struct secret *pw = unit_secret(f->dir, "pw");
	struct secret empty = {.buf = (char *)"", .len = 0};
	char recovery[KEYS_RECOVERY_TEXT_MAX], path[160];
	int fd;

	/* An existing empty directory is fine, and is made private. */
	assert_int_equal(mkdir(f->store, 0755), 0);
	assert_int_equal(store_create(f->store, pw, &fast_kdf, recovery), 0);
	{
		struct stat sb;

		assert_int_equal(stat(f->store, &sb), 0);
		assert_int_equal(sb.st_mode & 07777, 0700);
	}
	/* A store is already there. */
	assert_int_equal(store_create(f->store, pw, &fast_kdf, recovery), -EEXIST);

	/* Anything else there. */
	snprintf(path, sizeof(path), "%s/other", f->dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/other/notes.txt", f->dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/other", f->dir);
	assert_int_equal(store_create(path, pw, &fast_kdf, recovery), -ENOTEMPTY);
	assert_int_equal(count_entries(path), 1);
	/* Even a hidden file. */
	snprintf(path, sizeof(path), "%s/other/notes.txt", f->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/other/.hidden", f->dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	snprintf(path, sizeof(path), "%s/other", f->dir);
	assert_int_equal(store_create(path, pw, &fast_kdf, recovery), -ENOTEMPTY);

	/* A file, a missing parent, bad arguments. */
	snprintf(path, sizeof(path), "%s/other/.hidden", f->dir);
	assert_int_equal(store_create(path, pw, &fast_kdf, recovery), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/missing/st", f->dir);
	assert_int_equal(store_create(path, pw, &fast_kdf, recovery), -ENOENT);
	snprintf(path, sizeof(path), "%s/new", f->dir);
	assert_int_equal(store_create(path, &empty, &fast_kdf, recovery), -EINVAL);
	assert_int_equal(store_create(path, NULL, &fast_kdf, recovery), -EINVAL);
	assert_int_equal(access(path, F_OK), -1);
	secret_free(pw);
}

static void test_open_refusals(void **state)
{
	struct fixture *f = *state;
	struct store *st = NULL;
	char path[160];

	assert_int_equal(store_open(f->store, false, &st), -ENOENT);
	assert_int_equal(store_open(f->dir, false, &st), -ENOENT);
	snprintf(path, sizeof(path), "%s/file", f->dir);
	close(open(path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(store_open(path, false, &st), -ENOENT);
	assert_null(st);
}

/* Damage to the layout or the meta rows is reported, not crashed on. */
static void test_open_damaged(void **state)
{
	struct fixture *f = *state;
	struct catalog *cat = NULL;
	struct store *st = NULL;
	char path[160], tree[160];

	create_store(f, "pw", NULL);
	snprintf(path, sizeof(path), "%s/%s", f->store, CATALOG_FILE);
	snprintf(tree, sizeof(tree), "%s/%s", f->store, STORE_TREE_DIR);

	/* Missing tree. */
	{
		char moved[170];

		snprintf(moved, sizeof(moved), "%s.away", tree);
		assert_int_equal(rename(tree, moved), 0);
		assert_int_equal(store_open(f->store, false, &st), -EIO);
		assert_null(st);
		assert_int_equal(rename(moved, tree), 0);
	}
	assert_int_equal(store_open(f->store, false, &st), 0);
	store_close(st);
	st = NULL;

	/* A newer format. */
	assert_int_equal(catalog_open(path, 0, &cat), 0);
	assert_int_equal(catalog_meta_put(cat, "format", "2", 1), 0);
	catalog_close(cat);
	assert_int_equal(store_open(f->store, false, &st), -EPROTO);
	/* A garbled format. */
	assert_int_equal(catalog_open(path, 0, &cat), 0);
	assert_int_equal(catalog_meta_put(cat, "format", "x1", 2), 0);
	catalog_close(cat);
	assert_int_equal(store_open(f->store, false, &st), -EIO);
	/* A store id of the wrong length. */
	assert_int_equal(catalog_open(path, 0, &cat), 0);
	assert_int_equal(catalog_meta_put(cat, "format", "1", 1), 0);
	assert_int_equal(catalog_meta_put(cat, "store_id", "short", 5), 0);
	catalog_close(cat);
	assert_int_equal(store_open(f->store, false, &st), -EIO);

	/* A catalogue file that is not a database. */
	assert_int_equal(unlink(path), 0);
	{
		FILE *fp = fopen(path, "w");

		fputs("this is not sqlite, just some text long enough to matter\n", fp);
		fclose(fp);
	}
	assert_int_equal(store_open(f->store, false, &st), -EIO);
	assert_null(st);
}

/* sys.fsync that fails on call number fsync_fail_at (1-based). */
static int fsync_calls, fsync_fail_at;

static int fsync_failing(int fd)
{
	(void)fd;
	if (++fsync_calls == fsync_fail_at) {
		errno = EIO;
		return -1;
	}
	return 0;
}

static void test_create_injected_failures(void **state)
{
	struct fixture *f = *state;
	struct secret *pw = unit_secret(f->dir, "pw");
	char recovery[KEYS_RECOVERY_TEXT_MAX];
	struct store *st = NULL;
	int total;

	/* Count the fsyncs a successful create makes. */
	fsync_calls = 0;
	fsync_fail_at = -1;
	sys.fsync = fsync_failing;
	assert_int_equal(store_create(f->store, pw, &fast_kdf, recovery), 0);
	total = fsync_calls;
	assert_true(total >= 3); /* IV file, tree/, STORE/ */
	sys_reset();
	{
		char cmd[160];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->store);
		assert_int_equal(system(cmd), 0);
	}

	/* Each failure: -EIO, a new directory is removed again. */
	for (int i = 1; i <= total; i++) {
		fsync_calls = 0;
		fsync_fail_at = i;
		sys.fsync = fsync_failing;
		memset(recovery, 'x', sizeof(recovery));
		assert_int_equal(store_create(f->store, pw, &fast_kdf, recovery), -EIO);
		sys_reset();
		assert_int_equal(access(f->store, F_OK), -1);
		/* No recovery key is handed out for a store that is not there. */
		assert_int_equal(recovery[0], 0);
	}

	/* In an existing empty directory: it is left empty. */
	assert_int_equal(mkdir(f->store, 0700), 0);
	fsync_calls = 0;
	fsync_fail_at = total;
	sys.fsync = fsync_failing;
	assert_int_equal(store_create(f->store, pw, &fast_kdf, recovery), -EIO);
	sys_reset();
	assert_int_equal(count_entries(f->store), 0);
	assert_int_equal(store_open(f->store, false, &st), -ENOENT);
	/* And a later create there works. */
	assert_int_equal(store_create(f->store, pw, &fast_kdf, recovery), 0);
	assert_int_equal(store_open(f->store, false, &st), 0);
	assert_int_equal(store_unlock_passphrase(st, pw), 0);
	store_close(st);
	secret_free(pw);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(store_strerror(-EACCES), "wrong passphrase or key");
	assert_string_equal(store_strerror(-ENOENT), "not a custodian store");
	assert_string_equal(store_strerror(-EEXIST), "a store already exists there");
	assert_string_equal(store_strerror(-ENOTEMPTY), "directory is not empty");
	assert_string_equal(store_strerror(-EIO), "store is damaged");
	assert_string_equal(store_strerror(-EPROTO),
			    "store was made by a newer custodian");
	assert_string_equal(store_strerror(-ENOSPC), strerror(ENOSPC));
}

/* ---- secret ----------------------------------------------------------- */

static int write_file(struct fixture *f, const void *data, size_t n, char *path,
		      size_t cap)
{
	int fd;

	snprintf(path, cap, "%s/pass", f->dir);
	fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	close(fd);
	return 0;
}

static void expect_file(struct fixture *f, const char *data, size_t n, int want_ret,
			const char *want, size_t want_len)
{
	char path[160];
	struct secret *s = NULL;

	write_file(f, data, n, path, sizeof(path));
	assert_int_equal(secret_from_file(path, &s), want_ret);
	if (want_ret == 0) {
		assert_non_null(s);
		assert_int_equal(s->len, want_len);
		assert_memory_equal(s->buf, want, want_len);
		assert_int_equal(s->buf[s->len], '\0');
		secret_free(s);
	} else {
		assert_null(s);
	}
}

static void test_secret_file(void **state)
{
	struct fixture *f = *state;
	static char big[SECRET_MAX + 3];
	struct secret *s = NULL;

	expect_file(f, "abc", 3, 0, "abc", 3);
	expect_file(f, "abc\n", 4, 0, "abc", 3);
	expect_file(f, "abc\r\n", 5, 0, "abc", 3);
	expect_file(f, "abc\n\n", 5, 0, "abc\n", 4); /* only one newline goes */
	expect_file(f, "a b\tc ", 6, 0, "a b\tc ", 6);
	expect_file(f, "k\0y\n", 4, 0, "k\0y", 3); /* binary keyfiles keep NULs */
	expect_file(f, "", 0, -EINVAL, NULL, 0);
	expect_file(f, "\n", 1, -EINVAL, NULL, 0);
	expect_file(f, "\r\n", 2, -EINVAL, NULL, 0);

	memset(big, 'p', sizeof(big));
	expect_file(f, big, SECRET_MAX, 0, big, SECRET_MAX);
	big[SECRET_MAX] = '\n';
	expect_file(f, big, SECRET_MAX + 1, 0, big, SECRET_MAX);
	big[SECRET_MAX] = '\r';
	big[SECRET_MAX + 1] = '\n';
	expect_file(f, big, SECRET_MAX + 2, 0, big, SECRET_MAX);
	memset(big, 'p', sizeof(big));
	expect_file(f, big, SECRET_MAX + 1, -EINVAL, NULL, 0);
	expect_file(f, big, SECRET_MAX + 3, -EINVAL, NULL, 0);

	assert_int_equal(secret_from_file("/nonexistent/pass", &s), -ENOENT);
	assert_null(s);
	secret_free(NULL);
}

static void expect_cmd(const char *cmd, int want_ret, const char *want)
{
	struct secret *s = NULL;

	assert_int_equal(secret_from_cmd(cmd, &s), want_ret);
	if (want_ret == 0) {
		assert_non_null(s);
		assert_int_equal(s->len, strlen(want));
		assert_string_equal(s->buf, want);
		secret_free(s);
	} else {
		assert_null(s);
	}
}

static void test_secret_cmd(void **state)
{
	(void)state;
	expect_cmd("echo hunter2", 0, "hunter2");
	expect_cmd("printf 'no newline'", 0, "no newline");
	expect_cmd("printf 'two\\nlines\\n'", 0, "two\nlines");
	expect_cmd("printf 'crlf\\r\\n'", 0, "crlf");
	expect_cmd("echo pw; echo stderr-is-not-the-secret >&2", 0, "pw");
	expect_cmd("exit 3", -EIO, NULL);
	expect_cmd("echo leaked; exit 1", -EIO, NULL);
	expect_cmd("true", -EIO, NULL);
	expect_cmd("echo", -EIO, NULL);
	expect_cmd("kill -9 $$", -EIO, NULL);
	expect_cmd("/nonexistent/askpass 2>/dev/null", -EIO, NULL);
	expect_cmd("head -c 100000 /dev/zero | tr '\\0' x", -EINVAL, NULL);
	expect_cmd("", -EINVAL, NULL);
}

/* Runs secret_from_tty in a child whose controlling terminal is a pty;
 * feeds `lines` after each prompt and returns what the child reports. */
struct tty_result {
	int ret;          /* secret_from_tty's result */
	int echo_after;   /* ECHO set again afterwards */
	size_t len;       /* secret length */
	char buf[64];     /* secret */
	char screen[512]; /* what the terminal showed */
};

static void run_tty(bool confirm, const char *first, const char *second,
		    struct tty_result *res)
{
	int master, slave, pfd[2];
	size_t shown = 0;
	pid_t pid;
	int status;

	memset(res, 0, sizeof(*res));
	assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct tty_result r;
		struct secret *s = NULL;
		struct termios t;

		memset(&r, 0, sizeof(r));
		close(master);
		close(pfd[0]);
		if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) != 0)
			_exit(2);
		r.ret = secret_from_tty("PW: ", confirm, &s);
		if (tcgetattr(slave, &t) == 0)
			r.echo_after = (t.c_lflag & ECHO) != 0;
		if (s != NULL) {
			r.len = s->len;
			memcpy(r.buf, s->buf, s->len < sizeof(r.buf) ? s->len : 0);
			secret_free(s);
		}
		if (write(pfd[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(3);
		_exit(0);
	}
	close(slave);
	close(pfd[1]);

	/* Answer each prompt only once it is shown: the reader flushes input
	 * typed before echo was turned off. */
	for (int answered = 0; answered < (confirm ? 2 : 1);) {
		const char *prompt = answered == 0 ? "PW: " : "Repeat: ";
		ssize_t n;

		n = read(master, res->screen + shown, sizeof(res->screen) - 1 - shown);
		assert_true(n > 0);
		shown += (size_t)n;
		res->screen[shown] = '\0';
		if (strstr(res->screen, prompt) != NULL) {
			const char *line = answered == 0 ? first : second;

			assert_int_equal(write(master, line, strlen(line)),
					 (ssize_t)strlen(line));
			answered++;
		}
	}
	assert_int_equal(read(pfd[0], res, offsetof(struct tty_result, screen)),
			 (ssize_t)offsetof(struct tty_result, screen));
	/* Whatever the terminal echoed is in the master's buffer by now. */
	for (;;) {
		struct pollfd p = {.fd = master, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 100) <= 0 || shown >= sizeof(res->screen) - 1)
			break;
		n = read(master, res->screen + shown, sizeof(res->screen) - 1 - shown);
		if (n <= 0)
			break;
		shown += (size_t)n;
	}
	res->screen[shown] = '\0';
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(master);
	close(pfd[0]);
}

static void test_secret_tty(void **state)
{
	struct tty_result r;

	(void)state;
	run_tty(false, "hunter2\n", NULL, &r);
	assert_int_equal(r.ret, 0);
	assert_int_equal(r.len, 7);
	assert_memory_equal(r.buf, "hunter2", 7);
	assert_true(r.echo_after);
	assert_null(strstr(r.screen, "hunter2")); /* not echoed */

	run_tty(true, "same pw\n", "same pw\n", &r);
	assert_int_equal(r.ret, 0);
	assert_memory_equal(r.buf, "same pw", 7);
	assert_null(strstr(r.screen, "same pw"));

	run_tty(true, "first\n", "other\n", &r);
	assert_int_equal(r.ret, -EINVAL);
	assert_true(r.echo_after);

	run_tty(false, "\n", NULL, &r);
	assert_int_equal(r.ret, -EINVAL);
	assert_true(r.echo_after);
}

/* Without a controlling terminal: -ENOTTY. */
static void test_secret_no_tty(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct secret *s = NULL;

		if (setsid() < 0)
			_exit(2);
		_exit(secret_from_tty("PW: ", false, &s) == -ENOTTY && s == NULL ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_open_unlock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_store_ids_differ, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_injected_failures, setup,
						teardown),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test_setup_teardown(test_secret_file, setup, teardown),
		cmocka_unit_test(test_secret_cmd),
		cmocka_unit_test(test_secret_tty),
		cmocka_unit_test(test_secret_no_tty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
