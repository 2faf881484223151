/*
 * test_creds.c — unit tests for fs/creds.c: the caller-group cache (hits,
 * TTL, keying by pid/uid/gid, fetch failures, callers with more groups
 * than an entry holds, truncation to the caller's buffer) and the
 * read-rate counters (limit, per uid, per key, denials not counted,
 * sliding window, window change, bounded table with eviction).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "creds.h"

#define S 1000000LL /* one second in microseconds */

/* A fake fuse_req_getgroups: returns n groups 100, 101, ... */
struct fake {
	int calls;      /* times called */
	int n;          /* groups to report; < 0: fail with that errno */
	gid_t first;    /* first group reported */
	int fail_after; /* > 0: calls after this many fail with -EIO */
};

static int fake_fetch(void *ctx, gid_t *gids, size_t cap)
{
	struct fake *f = ctx;

	f->calls++;
	if (f->fail_after > 0 && f->calls > f->fail_after)
		return -EIO;
	if (f->n < 0)
		return f->n;
	for (int i = 0; i < f->n && (size_t)i < cap; i++)
		gids[i] = f->first + (gid_t)i;
	return f->n;
}

static void test_cache_args(void **state)
{
	struct creds_cache *c = (struct creds_cache *)1;
	gid_t g[4];

	(void)state;
	assert_int_equal(creds_cache_new(0, CREDS_TTL_US, &c), -EINVAL);
	assert_null(c);
	assert_int_equal(creds_cache_new(4, -1, &c), -EINVAL);
	assert_int_equal(creds_cache_new(3, CREDS_TTL_US, &c), 0);
	assert_int_equal(creds_groups(c, 1, 2, 3, 0, fake_fetch, NULL, g, 0), -EINVAL);
	creds_cache_free(c);
	creds_cache_free(NULL);
}

static void test_cache_hits_within_ttl(void **state)
{
	struct fake f = {.n = 3, .first = 100};
	struct creds_cache *c;
	gid_t g[16];

	(void)state;
	assert_int_equal(creds_cache_new(16, CREDS_TTL_US, &c), 0);
	assert_int_equal(creds_groups(c, 42, 1000, 50, 10 * S, fake_fetch, &f, g, 16), 4);
	assert_int_equal(g[0], 50); /* primary first */
	assert_int_equal(g[1], 100);
	assert_int_equal(g[3], 102);
	assert_int_equal(f.calls, 1);
	/* cached: same answer, no fetch, even if the groups changed */
	f.first = 200;
	memset(g, 0, sizeof(g));
	assert_int_equal(
		creds_groups(c, 42, 1000, 50, 10 * S + S - 1, fake_fetch, &f, g, 16), 4);
	assert_int_equal(g[1], 100);
	assert_int_equal(f.calls, 1);
	/* the TTL is the staleness bound */
	assert_int_equal(creds_groups(c, 42, 1000, 50, 11 * S, fake_fetch, &f, g, 16), 4);
	assert_int_equal(g[1], 200);
	assert_int_equal(f.calls, 2);
	/* a clock that went backwards is not trusted */
	assert_int_equal(creds_groups(c, 42, 1000, 50, 5 * S, fake_fetch, &f, g, 16), 4);
	assert_int_equal(f.calls, 3);
	creds_cache_free(c);
}

static void test_cache_keyed_by_pid_uid_gid(void **state)
{
	struct fake f = {.n = 1, .first = 7};
	struct creds_cache *c;
	gid_t g[4];

	(void)state;
	assert_int_equal(creds_cache_new(1, CREDS_TTL_US, &c), 0); /* one slot */
	assert_int_equal(creds_groups(c, 1, 10, 20, 0, fake_fetch, &f, g, 4), 2);
	assert_int_equal(creds_groups(c, 2, 10, 20, 1, fake_fetch, &f, g, 4), 2);
	assert_int_equal(f.calls, 2);
	assert_int_equal(creds_groups(c, 2, 11, 20, 2, fake_fetch, &f, g, 4), 2);
	assert_int_equal(f.calls, 3);
	assert_int_equal(creds_groups(c, 2, 11, 21, 3, fake_fetch, &f, g, 4), 2);
	assert_int_equal(g[0], 21);
	assert_int_equal(f.calls, 4);
	assert_int_equal(creds_groups(c, 2, 11, 21, 4, fake_fetch, &f, g, 4), 2);
	assert_int_equal(f.calls, 4);
	creds_cache_free(c);
}

static void test_cache_fetch_failure_primary_only(void **state)
{
	struct fake f = {.n = -ESRCH};
	struct creds_cache *c;
	gid_t g[4] = {0};

	(void)state;
	assert_int_equal(creds_cache_new(8, CREDS_TTL_US, &c), 0);
	assert_int_equal(creds_groups(c, 1, 2, 3, 0, fake_fetch, &f, g, 4), 1);
	assert_int_equal(g[0], 3);
	/* failures are not cached: the next call asks again */
	f.n = 1;
	f.first = 9;
	assert_int_equal(creds_groups(c, 1, 2, 3, 1, fake_fetch, &f, g, 4), 2);
	assert_int_equal(f.calls, 2);
	assert_int_equal(creds_groups(c, 1, 2, 3, 2, NULL, NULL, g, 4), 2); /* cached */
	creds_cache_free(c);
}

static void test_cache_dedup_and_truncation(void **state)
{
	struct fake f = {.n = 5, .first = 30};
	struct creds_cache *c;
	gid_t g[3];

	(void)state;
	assert_int_equal(creds_cache_new(8, CREDS_TTL_US, &c), 0);
	/* primary 31 is also listed as supplementary: once only */
	assert_int_equal(creds_groups(c, 1, 2, 31, 0, fake_fetch, &f, g, 3), 3);
	assert_int_equal(g[0], 31);
	assert_int_equal(g[1], 30);
	assert_int_equal(g[2], 32);
	/* from the cache, truncated the same way; the entry holds all 5 */
	gid_t big[8];
	assert_int_equal(creds_groups(c, 1, 2, 31, 1, fake_fetch, &f, big, 8), 5);
	assert_int_equal(big[4], 34);
	assert_int_equal(f.calls, 1);
	creds_cache_free(c);
}

static void test_cache_many_groups_uncached(void **state)
{
	struct fake f = {.n = 300, .first = 1000};
	struct creds_cache *c;
	gid_t g[512];

	(void)state;
	assert_int_equal(creds_cache_new(8, CREDS_TTL_US, &c), 0);
	assert_int_equal(creds_groups(c, 1, 2, 3, 0, fake_fetch, &f, g, 512), 301);
	assert_int_equal(g[0], 3);
	assert_int_equal(g[300], 1299);
	assert_int_equal(f.calls, 2); /* the short try, then all of them */
	assert_int_equal(creds_groups(c, 1, 2, 3, 1, fake_fetch, &f, g, 512), 301);
	assert_int_equal(f.calls, 4); /* never cached */
	/* the second fetch failing: the first 64 are used */
	struct fake once = {.n = 300, .first = 1000, .fail_after = 1};
	assert_int_equal(creds_groups(c, 9, 9, 9, 0, fake_fetch, &once, g, 512), 65);
	creds_cache_free(c);
}

/* ---- rate --------------------------------------------------------------- */

static void test_rate_args(void **state)
{
	struct creds_rate *r = (struct creds_rate *)1;

	(void)state;
	assert_int_equal(creds_rate_new(CREDS_RATE_PROBE - 1, &r), -EINVAL);
	assert_null(r);
	assert_int_equal(creds_rate_new(CREDS_RATE_PROBE, &r), 0);
	assert_int_equal(creds_rate_take(r, 1, 1, 0, 60, 0), -EINVAL);
	assert_int_equal(creds_rate_take(r, 1, 1, 5, 0, 0), -EINVAL);
	creds_rate_free(r);
	creds_rate_free(NULL);
	assert_true(creds_rate_key("/a") == creds_rate_key("/a"));
	assert_true(creds_rate_key("/a") != creds_rate_key("/b"));
}

static void test_rate_limit_per_uid_and_key(void **state)
{
	struct creds_rate *r;
	int64_t t = 7200 * S; /* the start of an hour window */

	(void)state;
	assert_int_equal(creds_rate_new(64, &r), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(creds_rate_take(r, 1000, 77, 5, 3600, t + i), 0);
	assert_int_equal(creds_rate_take(r, 1000, 77, 5, 3600, t + 10), -EACCES);
	/* denials are not counted: still just over, not further */
	for (int i = 0; i < 10; i++)
		assert_int_equal(creds_rate_take(r, 1000, 77, 5, 3600, t + 20), -EACCES);
	/* another user, another rule: their own budgets */
	assert_int_equal(creds_rate_take(r, 1001, 77, 5, 3600, t + 30), 0);
	assert_int_equal(creds_rate_take(r, 1000, 78, 5, 3600, t + 30), 0);
	/* two windows later everything has drained */
	assert_int_equal(creds_rate_take(r, 1000, 77, 5, 3600, t + 7200 * S), 0);
	creds_rate_free(r);
}

static void test_rate_sliding_window(void **state)
{
	struct creds_rate *r;
	int64_t w = 100 * S, t = 10 * w;

	(void)state;
	assert_int_equal(creds_rate_new(64, &r), 0);
	/* 10 reads late in one window */
	for (int i = 0; i < 10; i++)
		assert_int_equal(creds_rate_take(r, 5, 1, 10, 100, t + 90 * S), 0);
	/* just after the boundary the previous window still weighs ~all: a
	 * fixed window would allow a burst of 10 more here */
	assert_int_equal(creds_rate_take(r, 5, 1, 10, 100, t + w + 1 * S), -EACCES);
	/* half-way through the next window half the budget is back */
	int ok = 0;
	for (int i = 0; i < 10; i++)
		ok += creds_rate_take(r, 5, 1, 10, 100, t + w + 50 * S) == 0;
	assert_int_equal(ok, 5);
	/* the rule's window changes: counts restart */
	for (int i = 0; i < 3; i++)
		assert_int_equal(creds_rate_take(r, 5, 1, 3, 3600, t + w + 60 * S), 0);
	assert_int_equal(creds_rate_take(r, 5, 1, 3, 3600, t + w + 61 * S), -EACCES);
	creds_rate_free(r);
}

static void test_rate_table_bounded(void **state)
{
	struct creds_rate *r;

	(void)state;
	/* one probe run: at most 8 counters live at once */
	assert_int_equal(creds_rate_new(CREDS_RATE_PROBE, &r), 0);
	for (uid_t u = 0; u < 8; u++)
		assert_int_equal(creds_rate_take(r, u, 1, 1, 3600, 0), 0);
	for (uid_t u = 0; u < 8; u++)
		assert_int_equal(creds_rate_take(r, u, 1, 1, 3600, 1), -EACCES);
	/* a ninth caller evicts one live counter (the table does not grow) */
	assert_int_equal(creds_rate_take(r, 100, 1, 1, 3600, 2), 0);
	int fresh = 0;
	for (uid_t u = 0; u < 8; u++)
		fresh += creds_rate_take(r, u, 1, 1, 3600, 3) == 0;
	assert_true(fresh >= 1);
	/* expired counters are reused before live ones */
	assert_int_equal(creds_rate_take(r, 200, 2, 1, 1, 10 * S), 0);
	assert_int_equal(creds_rate_take(r, 201, 2, 1, 1, 20 * S), 0);
	creds_rate_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_args),
		cmocka_unit_test(test_cache_hits_within_ttl),
		cmocka_unit_test(test_cache_keyed_by_pid_uid_gid),
		cmocka_unit_test(test_cache_fetch_failure_primary_only),
		cmocka_unit_test(test_cache_dedup_and_truncation),
		cmocka_unit_test(test_cache_many_groups_uncached),
		cmocka_unit_test(test_rate_args),
		cmocka_unit_test(test_rate_limit_per_uid_and_key),
		cmocka_unit_test(test_rate_sliding_window),
		cmocka_unit_test(test_rate_table_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
