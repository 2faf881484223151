/*
 * clock.c — the system clock and the store's compliance clock (see
 * clock.h).  Owns meta CLOCK_META_KEY: nothing else writes it.
 */
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"

int64_t clock_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void clock_deadline_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Reads a decimal meta value; -ENOENT if absent, -EIO if not a number. */
static int meta_i64(struct catalog *cat, const char *key, int64_t *out)
{
	char buf[32], *end;
	size_t len = 0;
	long long v;
	int ret;

	ret = catalog_meta_get(cat, key, buf, sizeof(buf) - 1, &len);
	if (ret == -ENOSPC)
		return -EIO;
	if (ret < 0)
		return ret;
	buf[len] = '\0';
	if (len == 0 || buf[0] < '0' || buf[0] > '9')
		return -EIO;
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EIO;
	*out = v;
	return 0;
}

static int meta_put_i64(struct catalog *cat, const char *key, int64_t v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	return catalog_meta_put(cat, key, buf, (size_t)n);
}

int clock_compliance_at(struct catalog *cat, int64_t system_us, int64_t threshold_us,
			unsigned flags, int64_t *now_us, struct clock_event *ev)
{
	struct clock_event e;
	int64_t stored = 0, now;
	bool have = false, persist = false;
	int ret;

	memset(&e, 0, sizeof(e));
	e.system_us = system_us;
	if (system_us < 0 || threshold_us < 0)
		return -EINVAL;
	if (threshold_us == 0) {
		ret = meta_i64(cat, CLOCK_META_JUMP, &threshold_us);
		if (ret == -ENOENT || (ret == 0 && threshold_us <= 0))
			threshold_us = CLOCK_JUMP_DEFAULT_US;
		else if (ret < 0)
			return ret;
	}
	e.threshold_us = threshold_us;
	ret = meta_i64(cat, CLOCK_META_KEY, &stored);
	if (ret == 0)
		have = true;
	else if (ret != -ENOENT)
		return ret;
	e.stored_us = have ? stored : 0;

	if (!have) {
		e.kind = CLOCK_EV_FIRST;
		now = system_us;
		persist = true;
	} else if (system_us < stored) {
		/* Never backwards: a clock set back makes nothing younger. */
		if (stored - system_us > CLOCK_BACK_TOLERANCE_US)
			e.kind = CLOCK_EV_SET_BACK;
		now = stored;
	} else if (system_us - stored > threshold_us) {
		e.kind = CLOCK_EV_JUMP_AHEAD;
		if (flags & CLOCK_ACCEPT_JUMP) {
			now = system_us;
			persist = true;
			e.accepted = !(flags & CLOCK_NO_PERSIST);
		} else {
			/* Not believed until an administrator says so. */
			now = stored;
		}
	} else {
		now = system_us;
		persist = system_us - stored >= CLOCK_PERSIST_STEP_US;
	}
	if (persist && !(flags & CLOCK_NO_PERSIST)) {
		ret = meta_put_i64(cat, CLOCK_META_KEY, now);
		if (ret < 0)
			return ret;
		e.persisted = true;
	}
	*now_us = now;
	if (ev)
		*ev = e;
	return 0;
}

int clock_compliance_now(struct catalog *cat, int64_t *now_us, struct clock_event *ev)
{
	return clock_compliance_at(cat, clock_now_us(), 0, 0, now_us, ev);
}

/* "3d 4h 5m" for a positive duration in microseconds. */
static void span(int64_t us, char *out, size_t cap)
{
	int64_t s = us / 1000000;

	if (s >= 86400)
		snprintf(out, cap, "%" PRId64 "d %" PRId64 "h", s / 86400,
			 s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(out, cap, "%" PRId64 "h %" PRId64 "m", s / 3600, s % 3600 / 60);
	else
		snprintf(out, cap, "%" PRId64 "m %" PRId64 "s", s / 60, s % 60);
}

static void iso(int64_t us, char out[32])
{
	time_t t = (time_t)(us / 1000000);
	struct tm tm;

	if (us < 0 || !gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "unknown");
}

void clock_event_describe(const struct clock_event *ev, char *out, size_t cap)
{
	char d[48], a[32], b[32];

	iso(ev->system_us, a);
	iso(ev->stored_us, b);
	switch (ev->kind) {
	case CLOCK_EV_FIRST:
		snprintf(out, cap, "compliance clock started at %s", a);
		break;
	case CLOCK_EV_SET_BACK:
		span(ev->stored_us - ev->system_us, d, sizeof(d));
		snprintf(out, cap,
			 "system clock set back by %s (system %s, compliance clock %s); "
			 "the compliance clock keeps its time",
			 d, a, b);
		break;
	case CLOCK_EV_JUMP_AHEAD:
		span(ev->system_us - ev->stored_us, d, sizeof(d));
		snprintf(out, cap,
			 "system clock jumped ahead by %s (system %s, compliance clock "
			 "%s)%s",
			 d, a, b,
			 ev->accepted ? "; accepted by the operator" : "; not accepted");
		break;
	default:
		snprintf(out, cap, "compliance clock %s", a);
		break;
	}
}

int clock_parse_iso(const char *s, int64_t *us)
{
	struct tm tm;
	const char *p;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	p = strptime(s, "%Y-%m-%d", &tm);
	if (!p)
		return -EINVAL;
	if (*p == 'T' || *p == ' ') {
		const char *q = strptime(p + 1, "%H:%M:%S", &tm);

		if (!q)
			q = strptime(p + 1, "%H:%M", &tm);
		if (!q)
			return -EINVAL;
		p = q;
	}
	if (*p == 'Z')
		p++;
	if (*p != '\0' || tm.tm_year < 70)
		return -EINVAL;
	t = timegm(&tm);
	if (t == (time_t)-1)
		return -EINVAL;
	*us = (int64_t)t * 1000000;
	return 0;
}
