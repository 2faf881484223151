/*
 * test_durable.c — unit tests for fs/durable.c: open and close with
 * nothing queued (and close of NULL), drain syncing and closing every
 * queued descriptor exactly once, the background thread syncing without a
 * drain, an injected fdatasync failure reported by every later drain (sticky; the
 * descriptor closed all the same), a full queue while the thread is held
 * in a batch (the adds beyond DURABLE_QUEUE_MAX sync inline and return
 * the sync's result), close syncing what is still queued, and concurrent
 * drains while other threads add.
 *
 * fdatasync is replaced through the sys.h seam by a wrapper that counts
 * and logs its calls, can fail for one descriptor, and can hold its first
 * call at a gate the test opens.  Nothing here asserts on timing: waiting
 * for the thread polls durable_pending() with a generous bound.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "durable.h"
#include "sys.h"
#include "unit_util.h"

#define WAIT_MS 5000  /* bound on any wait for the thread */
#define GATE_MS 10000 /* a gated call goes on by itself after this */
#define LOG_MAX 1024  /* fdatasync calls logged per test */
#define FULL_N (1 + DURABLE_QUEUE_MAX + 5)
#define CONC_ADDERS 2
#define CONC_DRAINERS 2
#define CONC_PER_ADDER 100
#define CONC_N (CONC_ADDERS * CONC_PER_ADDER)

/* --- the fdatasync wrapper ------------------------------------------------------ */

static struct fake {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned calls;   /* fdatasync calls seen */
	int log[LOG_MAX]; /* their descriptors, in order */
	int fail_fd;      /* >= 0: this descriptor fails with EIO */
	bool gate_armed;  /* the first call waits for gate_open */
	bool gate_hit;    /* the first call has reached the gate */
	bool gate_open;   /* the gate is open */
} fake = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.fail_fd = -1,
};

static char tmpdir[256];

static void deadline_ms(struct timespec *t, long ms)
{
	clock_gettime(CLOCK_REALTIME, t);
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

/* With fake.lock held: waits until *flag is set, at most ms. */
static void wait_flag_locked(const bool *flag, long ms)
{
	struct timespec dl;

	deadline_ms(&dl, ms);
	while (!*flag) {
		if (pthread_cond_timedwait(&fake.cond, &fake.lock, &dl) == ETIMEDOUT)
			return;
	}
}

static int fake_fdatasync(int fd)
{
	bool fail;

	pthread_mutex_lock(&fake.lock);
	if (fake.calls < LOG_MAX)
		fake.log[fake.calls] = fd;
	fake.calls++;
	fail = fd == fake.fail_fd;
	if (fake.gate_armed && !fake.gate_hit) {
		fake.gate_hit = true;
		pthread_cond_broadcast(&fake.cond);
		wait_flag_locked(&fake.gate_open, GATE_MS);
	}
	pthread_mutex_unlock(&fake.lock);
	if (fail) {
		errno = EIO;
		return -1;
	}
	return fdatasync(fd);
}

static unsigned fake_calls(void)
{
	unsigned n;

	pthread_mutex_lock(&fake.lock);
	n = fake.calls;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

/* Times fd appears in the log. */
static unsigned fake_calls_for(int fd)
{
	unsigned n = 0;

	pthread_mutex_lock(&fake.lock);
	for (unsigned i = 0; i < fake.calls && i < LOG_MAX; i++)
		if (fake.log[i] == fd)
			n++;
	pthread_mutex_unlock(&fake.lock);
	return n;
}

static void fake_set_fail(int fd)
{
	pthread_mutex_lock(&fake.lock);
	fake.fail_fd = fd;
	pthread_mutex_unlock(&fake.lock);
}

static void gate_arm(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.gate_armed = true;
	fake.gate_hit = false;
	fake.gate_open = false;
	pthread_mutex_unlock(&fake.lock);
}

/* Waits (bounded) until the first call reached the gate; true if it did. */
static bool gate_wait_hit(void)
{
	bool hit;

	pthread_mutex_lock(&fake.lock);
	wait_flag_locked(&fake.gate_hit, WAIT_MS);
	hit = fake.gate_hit;
	pthread_mutex_unlock(&fake.lock);
	return hit;
}

static void gate_release(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.gate_open = true;
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

static void fake_reset(void)
{
	pthread_mutex_lock(&fake.lock);
	fake.calls = 0;
	fake.fail_fd = -1;
	fake.gate_armed = false;
	fake.gate_hit = false;
	fake.gate_open = true; /* never leave a caller stuck */
	pthread_cond_broadcast(&fake.cond);
	pthread_mutex_unlock(&fake.lock);
}

/* --- fixtures ------------------------------------------------------------------- */

static int setup(void **state)
{
	(void)state;
	fake_reset();
	sys.fdatasync = fake_fdatasync;
	return unit_mkdtemp(tmpdir, sizeof(tmpdir), "custodian-durable");
}

static int teardown(void **state)
{
	(void)state;
	fake_reset();
	sys_reset();
	return unit_rm_rf(tmpdir);
}

/* A descriptor of a new temporary file with a byte written, open for
 * writing; the name is removed at once (the descriptor keeps the file). */
static int tmp_fd(void)
{
	char path[sizeof(tmpdir) + 16];
	int fd;

	snprintf(path, sizeof(path), "%s/f.XXXXXX", tmpdir);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(write(fd, "x", 1), 1);
	return fd;
}

static void tmp_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		fds[i] = tmp_fd();
}

static bool fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

/* Each of fds[0..n) closed and synced exactly once. */
static void assert_synced_closed(const int *fds, int n)
{
	for (int i = 0; i < n; i++) {
		assert_true(fd_closed(fds[i]));
		assert_int_equal(fake_calls_for(fds[i]), 1);
	}
}

/* Polls durable_pending() until 0, at most WAIT_MS; true if it got there. */
static bool wait_idle(struct durable *d)
{
	struct timespec ms = {0, 1000000L};

	for (int i = 0; i < WAIT_MS; i++) {
		if (durable_pending(d) == 0)
			return true;
		nanosleep(&ms, NULL);
	}
	return durable_pending(d) == 0;
}

/* --- tests ---------------------------------------------------------------------- */

static void test_open_close_empty(void **state)
{
	struct durable *d = (struct durable *)1;

	(void)state;
	assert_int_equal(durable_open(&d), 0);
	assert_non_null(d);
	assert_int_equal(durable_pending(d), 0);
	assert_int_equal(durable_drain(d), 0);
	assert_int_equal(durable_drain(d), 0);
	durable_close(d);
	assert_int_equal(fake_calls(), 0);
	durable_close(NULL);
}

static void test_drain_syncs_and_closes(void **state)
{
	struct durable *d;
	int fds[8];

	(void)state;
	tmp_fds(fds, 8);
	assert_int_equal(durable_open(&d), 0);
	for (int i = 0; i < 8; i++)
		assert_int_equal(durable_add(d, fds[i]), 0);
	assert_int_equal(durable_drain(d), 0);
	assert_int_equal(fake_calls(), 8);
	assert_synced_closed(fds, 8);
	assert_int_equal(durable_pending(d), 0);
	/* nothing new queued: no further syncs */
	assert_int_equal(durable_drain(d), 0);
	assert_int_equal(fake_calls(), 8);
	durable_close(d);
	assert_int_equal(fake_calls(), 8);
}

static void test_thread_syncs_without_drain(void **state)
{
	struct durable *d;
	int fds[4];

	(void)state;
	tmp_fds(fds, 4);
	assert_int_equal(durable_open(&d), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(durable_add(d, fds[i]), 0);
	assert_true(wait_idle(d));
	assert_int_equal(fake_calls(), 4);
	assert_synced_closed(fds, 4);
	/* a second burst, after the thread went back to waiting */
	tmp_fds(fds, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(durable_add(d, fds[i]), 0);
	assert_true(wait_idle(d));
	assert_int_equal(fake_calls(), 8);
	for (int i = 0; i < 4; i++)
		assert_true(fd_closed(fds[i]));
	assert_int_equal(durable_drain(d), 0);
	durable_close(d);
	assert_int_equal(fake_calls(), 8);
}

static void test_sync_error_is_sticky(void **state)
{
	struct durable *d;
	int fds[3];

	(void)state;
	tmp_fds(fds, 3);
	fake_set_fail(fds[1]);
	assert_int_equal(durable_open(&d), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(durable_add(d, fds[i]), 0);
	/* whoever synced the batch (this drain or the thread), the drain
	 * reports the error */
	assert_int_equal(durable_drain(d), -EIO);
	assert_int_equal(fake_calls(), 3);
	assert_synced_closed(fds, 3); /* the failed one is closed too */
	/* sticky: an IV may be lost, so no later drain may claim durability,
	 * also after later batches synced cleanly */
	assert_int_equal(durable_drain(d), -EIO);
	fake_set_fail(-1);
	tmp_fds(fds, 2);
	assert_int_equal(durable_add(d, fds[0]), 0);
	assert_int_equal(durable_add(d, fds[1]), 0);
	assert_int_equal(durable_drain(d), -EIO);
	assert_int_equal(fake_calls(), 5);
	assert_true(fd_closed(fds[0])); /* numbers reused: not in the log check */
	assert_true(fd_closed(fds[1]));
	durable_close(d);
}

static void test_error_seen_by_thread_then_drain(void **state)
{
	struct durable *d;
	int fd;

	(void)state;
	fd = tmp_fd();
	fake_set_fail(fd);
	assert_int_equal(durable_open(&d), 0);
	assert_int_equal(durable_add(d, fd), 0);
	assert_true(wait_idle(d)); /* the thread met the error */
	assert_true(fd_closed(fd));
	assert_int_equal(fake_calls(), 1);
	/* every drain after it hears of it */
	assert_int_equal(durable_drain(d), -EIO);
	assert_int_equal(durable_drain(d), -EIO);
	durable_close(d);
}

static void test_full_queue_syncs_inline(void **state)
{
	static int fds[FULL_N];
	int rc[5], closed[5], queued_bad = 0;
	unsigned calls_queued, calls_inline[5], pending_full;
	struct durable *d;
	bool hit;

	(void)state;
	/* all open at once, so every number is distinct in the log */
	tmp_fds(fds, FULL_N);
	fake_set_fail(fds[FULL_N - 2]);
	gate_arm();
	assert_int_equal(durable_open(&d), 0);
	/* the thread takes fds[0] as a batch and is held in its fdatasync */
	rc[0] = durable_add(d, fds[0]);
	hit = gate_wait_hit();
	if (!hit || rc[0] != 0) {
		gate_release();
		durable_close(d);
		fail_msg("the thread never reached the gated fdatasync (add: %d)", rc[0]);
	}
	for (int i = 1; i <= DURABLE_QUEUE_MAX; i++)
		if (durable_add(d, fds[i]) != 0)
			queued_bad++;
	calls_queued = fake_calls();
	pending_full = durable_pending(d);
	/* the queue is full: these sync inline, on the caller's thread */
	for (int i = 0; i < 5; i++) {
		int fd = fds[1 + DURABLE_QUEUE_MAX + i];

		rc[i] = durable_add(d, fd);
		calls_inline[i] = fake_calls();
		closed[i] = fd_closed(fd);
	}
	gate_release();
	/* nothing asserted before the gate is open */
	assert_int_equal(queued_bad, 0);
	assert_int_equal(calls_queued, 1); /* only the gated one so far */
	assert_true(pending_full >= DURABLE_QUEUE_MAX);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(calls_inline[i], 2 + (unsigned)i);
		assert_true(closed[i]);
		assert_int_equal(rc[i], i == 3 ? -EIO : 0);
	}
	/* the inline error went to its adder; the queued batches are clean */
	assert_int_equal(durable_drain(d), 0);
	assert_int_equal(fake_calls(), FULL_N);
	assert_synced_closed(fds, FULL_N);
	assert_int_equal(durable_pending(d), 0);
	durable_close(d);
	assert_int_equal(fake_calls(), FULL_N);
}

/* Under a descriptor limit of 80 the queue holds at most 10 (an eighth):
 * the 11th add syncs inline, so the daemon keeps descriptors for callers
 * (found as EMFILE on mkdir under prlimit --nofile=128). */
#define CAP_LIMIT 80
#define CAP_N (CAP_LIMIT / 8)

static void test_queue_keeps_to_descriptor_budget(void **state)
{
	int fds[1 + CAP_N + 2];
	struct rlimit old, low;
	unsigned calls_queued, calls_after[2], pending_full;
	int rc_queued = 0, rc_after[2], closed[2];
	struct durable *d;
	int opened;
	bool hit;

	(void)state;
	tmp_fds(fds, 1 + CAP_N + 2);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = CAP_LIMIT;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	gate_arm();
	opened = durable_open(&d);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(opened, 0);
	/* the thread takes fds[0] as a batch and is held in its fdatasync */
	rc_queued = durable_add(d, fds[0]);
	hit = gate_wait_hit();
	if (!hit || rc_queued != 0) {
		gate_release();
		durable_close(d);
		fail_msg("the thread never reached the gated fdatasync (add: %d)", rc_queued);
	}
	for (int i = 1; i <= CAP_N; i++)
		rc_queued |= durable_add(d, fds[i]);
	calls_queued = fake_calls();
	pending_full = durable_pending(d);
	for (int i = 0; i < 2; i++) {
		rc_after[i] = durable_add(d, fds[1 + CAP_N + i]);
		calls_after[i] = fake_calls();
		closed[i] = fd_closed(fds[1 + CAP_N + i]);
	}
	gate_release();
	assert_int_equal(rc_queued, 0);
	assert_int_equal(calls_queued, 1);
	assert_int_equal(pending_full, 1 + CAP_N);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(rc_after[i], 0);
		assert_int_equal(calls_after[i], 2 + (unsigned)i);
		assert_true(closed[i]);
	}
	assert_int_equal(durable_drain(d), 0);
	assert_synced_closed(fds, 1 + CAP_N + 2);
	durable_close(d);
}

static void test_close_syncs_queued(void **state)
{
	struct durable *d;
	int fds[6];

	(void)state;
	tmp_fds(fds, 6);
	assert_int_equal(durable_open(&d), 0);
	for (int i = 0; i < 6; i++)
		assert_int_equal(durable_add(d, fds[i]), 0);
	durable_close(d); /* most likely while the thread lets the batch gather */
	assert_int_equal(fake_calls(), 6);
	assert_synced_closed(fds, 6);
}

static void test_close_while_thread_busy(void **state)
{
	struct durable *d;
	int fds[5];
	bool hit;

	(void)state;
	tmp_fds(fds, 5);
	gate_arm();
	assert_int_equal(durable_open(&d), 0);
	assert_int_equal(durable_add(d, fds[0]), 0);
	hit = gate_wait_hit();
	/* queued behind the held batch */
	for (int i = 1; i < 5; i++)
		if (durable_add(d, fds[i]) != 0)
			hit = false;
	gate_release();
	durable_close(d);
	assert_true(hit);
	assert_int_equal(fake_calls(), 5);
	assert_synced_closed(fds, 5);
}

/* --- concurrency ---------------------------------------------------------------- */

static atomic_int adders_left;

struct worker {
	pthread_t t;
	struct durable *d;
	const int *fds; /* adders: the descriptors to add */
	int n;
	int bad;    /* adds or drains that did not return 0 */
	int drains; /* drains done */
};

static void *adder_main(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < w->n; i++) {
		if (durable_add(w->d, w->fds[i]) != 0)
			w->bad++;
		if (i % 16 == 0)
			sched_yield();
	}
	atomic_fetch_sub(&adders_left, 1);
	return NULL;
}

static void *drainer_main(void *arg)
{
	struct worker *w = arg;
	bool last = false;

	while (!last) {
		last = atomic_load(&adders_left) == 0;
		if (durable_drain(w->d) != 0)
			w->bad++;
		w->drains++;
		sched_yield();
	}
	return NULL;
}

static void test_concurrent_add_drain(void **state)
{
	static int fds[CONC_N];
	struct worker w[CONC_ADDERS + CONC_DRAINERS];
	void *(*fn)(void *);
	struct durable *d;

	(void)state;
	tmp_fds(fds, CONC_N);
	assert_int_equal(durable_open(&d), 0);
	atomic_store(&adders_left, CONC_ADDERS);
	memset(w, 0, sizeof(w));
	for (int i = 0; i < CONC_ADDERS + CONC_DRAINERS; i++) {
		w[i].d = d;
		if (i < CONC_ADDERS) {
			w[i].fds = fds + i * CONC_PER_ADDER;
			w[i].n = CONC_PER_ADDER;
		}
		fn = i < CONC_ADDERS ? adder_main : drainer_main;
		assert_int_equal(pthread_create(&w[i].t, NULL, fn, &w[i]), 0);
	}
	for (int i = 0; i < CONC_ADDERS + CONC_DRAINERS; i++)
		assert_int_equal(pthread_join(w[i].t, NULL), 0);
	for (int i = 0; i < CONC_ADDERS + CONC_DRAINERS; i++)
		assert_int_equal(w[i].bad, 0);
	for (int i = CONC_ADDERS; i < CONC_ADDERS + CONC_DRAINERS; i++)
		assert_true(w[i].drains >= 1);
	/* each drainer's last drain began after every add: all synced */
	assert_int_equal(durable_pending(d), 0);
	assert_int_equal(fake_calls(), CONC_N);
	assert_synced_closed(fds, CONC_N);
	assert_int_equal(durable_drain(d), 0);
	durable_close(d);
	assert_int_equal(fake_calls(), CONC_N);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_close_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_syncs_and_closes, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_thread_syncs_without_drain, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sync_error_is_sticky, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_error_seen_by_thread_then_drain,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_queue_syncs_inline, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_queue_keeps_to_descriptor_budget, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_close_syncs_queued, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_while_thread_busy, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_add_drain, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
