/*
 * test_clock.c — unit tests for fs/clock.c: the compliance clock (first
 * reading, never backwards, set back, forward jump refused until
 * accepted, persistence across reopen and its once-a-minute rate,
 * threshold override, read-only use, damaged stored values) and the ISO
 * 8601 parser the tools' --now uses.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"
#include "clock.h"

#include "unit_util.h"

#define S 1000000LL
#define T0 (1767225600LL * S) /* 2026-01-01T00:00:00Z */

struct fx {
	char dir[64];        /* temporary directory */
	char path[96];       /* the catalogue */
	struct catalog *cat; /* open read-write */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_clock") != 0)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/c.db", f->dir);
	if (catalog_open(f->path, CATALOG_CREATE, &f->cat) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	catalog_close(f->cat);
	if (unit_rm_rf(f->dir) != 0)
		return -1;
	free(f);
	return 0;
}

static int64_t stored(struct catalog *cat)
{
	char buf[32];
	size_t len = 0;

	if (catalog_meta_get(cat, CLOCK_META_KEY, buf, sizeof(buf) - 1, &len) != 0)
		return -1;
	buf[len] = 0;
	return strtoll(buf, NULL, 10);
}

static void read_at(struct catalog *cat, int64_t sys_us, unsigned flags, int64_t want,
		    enum clock_event_kind kind)
{
	struct clock_event ev;
	int64_t now = -1;

	assert_int_equal(clock_compliance_at(cat, sys_us, 0, flags, &now, &ev), 0);
	assert_int_equal(now, want);
	assert_int_equal(ev.kind, kind);
	assert_int_equal(ev.system_us, sys_us);
}

static void test_first_and_monotonic(void **state)
{
	struct fx *f = *state;
	struct clock_event ev;
	int64_t now;

	assert_int_equal(stored(f->cat), -1);
	read_at(f->cat, T0, 0, T0, CLOCK_EV_FIRST);
	assert_int_equal(stored(f->cat), T0);

	/* a little behind (NTP step): the stored time, no event */
	read_at(f->cat, T0 - 4 * 60 * S, 0, T0, CLOCK_EV_NONE);
	assert_int_equal(stored(f->cat), T0);

	/* ahead by less than a minute: believed, not written */
	assert_int_equal(clock_compliance_at(f->cat, T0 + 30 * S, 0, 0, &now, &ev), 0);
	assert_int_equal(now, T0 + 30 * S);
	assert_false(ev.persisted);
	assert_int_equal(stored(f->cat), T0);
	/* a minute or more: written */
	assert_int_equal(clock_compliance_at(f->cat, T0 + 60 * S, 0, 0, &now, &ev), 0);
	assert_true(ev.persisted);
	assert_int_equal(ev.stored_us, T0);
	assert_int_equal(stored(f->cat), T0 + 60 * S);

	/* never backwards: every reading after is >= what was returned */
	for (int64_t s = T0 + 50 * S; s < T0 + 70 * S; s += 5 * S) {
		assert_int_equal(clock_compliance_at(f->cat, s, 0, 0, &now, NULL), 0);
		assert_true(now >= T0 + 60 * S);
	}
}

static void test_set_back(void **state)
{
	struct fx *f = *state;
	struct clock_event ev;
	char msg[200];
	int64_t now;

	read_at(f->cat, T0, 0, T0, CLOCK_EV_FIRST);
	assert_int_equal(clock_compliance_at(f->cat, T0 - 2 * 3600 * S, 0, 0, &now, &ev),
			 0);
	assert_int_equal(ev.kind, CLOCK_EV_SET_BACK);
	assert_int_equal(now, T0);
	assert_int_equal(ev.stored_us, T0);
	assert_false(ev.persisted);
	assert_int_equal(stored(f->cat), T0);
	clock_event_describe(&ev, msg, sizeof(msg));
	assert_non_null(strstr(msg, "set back by 2h 0m"));
	assert_non_null(strstr(msg, "2026-01-01T00:00:00Z"));
}

static void test_jump_ahead(void **state)
{
	struct fx *f = *state;
	struct clock_event ev;
	char msg[200];
	int64_t now, far = T0 + 3 * 86400 * S;

	read_at(f->cat, T0, 0, T0, CLOCK_EV_FIRST);
	/* just under the default threshold: believed */
	read_at(f->cat, T0 + CLOCK_JUMP_DEFAULT_US, 0, T0 + CLOCK_JUMP_DEFAULT_US,
		CLOCK_EV_NONE);
	assert_int_equal(stored(f->cat), T0 + CLOCK_JUMP_DEFAULT_US);
	/* beyond it: not believed, not stored, every time it is asked */
	for (int i = 0; i < 2; i++) {
		assert_int_equal(clock_compliance_at(f->cat, far + CLOCK_JUMP_DEFAULT_US,
						     0, 0, &now, &ev),
				 0);
		assert_int_equal(ev.kind, CLOCK_EV_JUMP_AHEAD);
		assert_false(ev.accepted);
		assert_false(ev.persisted);
		assert_int_equal(now, T0 + CLOCK_JUMP_DEFAULT_US);
		assert_int_equal(stored(f->cat), T0 + CLOCK_JUMP_DEFAULT_US);
	}
	clock_event_describe(&ev, msg, sizeof(msg));
	assert_non_null(strstr(msg, "jumped ahead by 3d 0h"));
	assert_non_null(strstr(msg, "not accepted"));
	/* a dry run that accepts still writes nothing */
	assert_int_equal(clock_compliance_at(f->cat, far + CLOCK_JUMP_DEFAULT_US, 0,
					     CLOCK_ACCEPT_JUMP | CLOCK_NO_PERSIST, &now,
					     &ev),
			 0);
	assert_int_equal(now, far + CLOCK_JUMP_DEFAULT_US);
	assert_false(ev.accepted);
	assert_int_equal(stored(f->cat), T0 + CLOCK_JUMP_DEFAULT_US);
	/* accepted: believed and stored; the next reading is quiet */
	assert_int_equal(clock_compliance_at(f->cat, far + CLOCK_JUMP_DEFAULT_US, 0,
					     CLOCK_ACCEPT_JUMP, &now, &ev),
			 0);
	assert_int_equal(ev.kind, CLOCK_EV_JUMP_AHEAD);
	assert_true(ev.accepted);
	assert_true(ev.persisted);
	clock_event_describe(&ev, msg, sizeof(msg));
	assert_non_null(strstr(msg, "accepted by the operator"));
	assert_int_equal(stored(f->cat), far + CLOCK_JUMP_DEFAULT_US);
	read_at(f->cat, far + CLOCK_JUMP_DEFAULT_US + 10 * S, 0,
		far + CLOCK_JUMP_DEFAULT_US + 10 * S, CLOCK_EV_NONE);
}

static void test_threshold(void **state)
{
	struct fx *f = *state;
	struct clock_event ev;
	int64_t now;

	read_at(f->cat, T0, 0, T0, CLOCK_EV_FIRST);
	/* explicit threshold */
	assert_int_equal(
		clock_compliance_at(f->cat, T0 + 3 * 3600 * S, 3600 * S, 0, &now, &ev),
		0);
	assert_int_equal(ev.kind, CLOCK_EV_JUMP_AHEAD);
	assert_int_equal(ev.threshold_us, 3600 * S);
	assert_int_equal(now, T0);
	/* meta override */
	assert_int_equal(catalog_meta_put(f->cat, CLOCK_META_JUMP, "7200000000", 10), 0);
	assert_int_equal(clock_compliance_at(f->cat, T0 + 3 * 3600 * S, 0, 0, &now, &ev),
			 0);
	assert_int_equal(ev.kind, CLOCK_EV_JUMP_AHEAD);
	assert_int_equal(ev.threshold_us, 7200 * S);
	assert_int_equal(clock_compliance_at(f->cat, T0 + 3600 * S, 0, 0, &now, &ev), 0);
	assert_int_equal(ev.kind, CLOCK_EV_NONE);
	assert_int_equal(catalog_meta_put(f->cat, CLOCK_META_JUMP, "x", 1), 0);
	assert_int_equal(clock_compliance_at(f->cat, T0, 0, 0, &now, &ev), -EIO);
	/* bad arguments */
	assert_int_equal(clock_compliance_at(f->cat, -1, 0, 0, &now, &ev), -EINVAL);
	assert_int_equal(clock_compliance_at(f->cat, T0, -5, 0, &now, &ev), -EINVAL);
}

static void test_persist_and_damage(void **state)
{
	struct fx *f = *state;
	struct catalog *ro = NULL;
	struct clock_event ev;
	int64_t now;

	read_at(f->cat, T0, 0, T0, CLOCK_EV_FIRST);
	read_at(f->cat, T0 + 3600 * S, 0, T0 + 3600 * S, CLOCK_EV_NONE);
	catalog_close(f->cat);
	assert_int_equal(catalog_open(f->path, 0, &f->cat), 0);
	/* the time survived the reopen: a clock set back is still seen */
	read_at(f->cat, T0, 0, T0 + 3600 * S, CLOCK_EV_SET_BACK);

	/* read-only catalogue: NO_PERSIST works, a write is refused */
	assert_int_equal(catalog_open(f->path, CATALOG_RDONLY, &ro), 0);
	assert_int_equal(
		clock_compliance_at(ro, T0 + 7200 * S, 0, CLOCK_NO_PERSIST, &now, &ev),
		0);
	assert_int_equal(now, T0 + 7200 * S);
	assert_false(ev.persisted);
	assert_int_equal(clock_compliance_at(ro, T0 + 7200 * S, 0, 0, &now, &ev), -EROFS);
	catalog_close(ro);

	/* damaged stored values */
	assert_int_equal(catalog_meta_put(f->cat, CLOCK_META_KEY, "12x", 3), 0);
	assert_int_equal(clock_compliance_at(f->cat, T0, 0, 0, &now, &ev), -EIO);
	assert_int_equal(catalog_meta_put(f->cat, CLOCK_META_KEY, "-5", 2), 0);
	assert_int_equal(clock_compliance_at(f->cat, T0, 0, 0, &now, &ev), -EIO);
	assert_int_equal(catalog_meta_put(f->cat, CLOCK_META_KEY,
					  "123456789012345678901234567890123", 33),
			 0);
	assert_int_equal(clock_compliance_at(f->cat, T0, 0, 0, &now, &ev), -EIO);
	assert_int_equal(
		catalog_meta_put(f->cat, CLOCK_META_KEY, "99999999999999999999", 20), 0);
	assert_int_equal(clock_compliance_at(f->cat, T0, 0, 0, &now, &ev), -EIO);
}

static void test_now(void **state)
{
	struct fx *f = *state;
	int64_t before = clock_now_us(), now;
	struct clock_event ev;

	assert_int_equal(clock_compliance_now(f->cat, &now, &ev), 0);
	assert_true(now >= before && now <= clock_now_us());
	assert_int_equal(ev.kind, CLOCK_EV_FIRST);
	assert_int_equal(clock_compliance_now(f->cat, &now, NULL), 0);
}

static void test_parse_iso(void **state)
{
	int64_t us = 0;

	(void)state;
	assert_int_equal(clock_parse_iso("2026-01-01", &us), 0);
	assert_int_equal(us, T0);
	assert_int_equal(clock_parse_iso("2026-01-01T00:00:10Z", &us), 0);
	assert_int_equal(us, T0 + 10 * S);
	assert_int_equal(clock_parse_iso("2026-01-01T01:02:03", &us), 0);
	assert_int_equal(us, T0 + 3723 * S);
	assert_int_equal(clock_parse_iso("2026-01-01 01:02", &us), 0);
	assert_int_equal(us, T0 + 3720 * S);
	assert_int_equal(clock_parse_iso("2026-01-01T", &us), -EINVAL);
	assert_int_equal(clock_parse_iso("2026-01-01X", &us), -EINVAL);
	assert_int_equal(clock_parse_iso("2026-01-01T00:00:00+02:00", &us), -EINVAL);
	assert_int_equal(clock_parse_iso("yesterday", &us), -EINVAL);
	assert_int_equal(clock_parse_iso("1960-01-01", &us), -EINVAL);
	assert_int_equal(clock_parse_iso("", &us), -EINVAL);
}

/* A deadline lies ms ahead on the monotonic clock, normalised. */
static void test_deadline_ms(void **state)
{
	const unsigned cases[] = {0, 1, 999, 1000, 1500, 2999};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct timespec before, dl, after;
		int64_t b, d, a;

		clock_gettime(CLOCK_MONOTONIC, &before);
		clock_deadline_ms(&dl, cases[i]);
		clock_gettime(CLOCK_MONOTONIC, &after);
		assert_true(dl.tv_nsec >= 0 && dl.tv_nsec < 1000000000L);
		b = (int64_t)before.tv_sec * 1000000000 + before.tv_nsec;
		d = (int64_t)dl.tv_sec * 1000000000 + dl.tv_nsec;
		a = (int64_t)after.tv_sec * 1000000000 + after.tv_nsec;
		assert_true(d >= b + (int64_t)cases[i] * 1000000);
		assert_true(d <= a + (int64_t)cases[i] * 1000000);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_and_monotonic, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_set_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jump_ahead, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threshold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist_and_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_now, setup, teardown),
		cmocka_unit_test(test_parse_iso),
		cmocka_unit_test(test_deadline_ms),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
