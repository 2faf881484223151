/*
 * duration.c — the policy language's value syntax for time: retention
 * durations ("90d", "6y", "1y6mo") and read rates ("300/h", "1000/8h").
 *
 * Kept apart from the parser so tools and tests can use the same rules.
 * Years are Julian years (365.25 days, as systemd counts them) so that a
 * retention of N years never falls short of N calendar years by more than
 * a quarter day; a month is a twelfth of that.  A bare `m` is refused in
 * durations because an administrator may mean minutes or months.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"

#define YEAR_S 31557600LL /* 365.25 days */

/* Units of a retention duration. */
static const struct unit {
	const char *name; /* as written */
	int64_t secs;     /* length */
} dur_units[] = {
	{"y", YEAR_S},  {"mo", YEAR_S / 12}, {"w", 7 * 86400LL},
	{"d", 86400LL}, {"h", 3600LL},
};

/* Units of a rate window. */
static const struct unit rate_units[] = {
	{"s", 1}, {"m", 60}, {"min", 60}, {"h", 3600}, {"d", 86400},
};

#define MAX_RATE_COUNT 1000000000U
#define MAX_RATE_WINDOW (366LL * 86400LL)

static int __attribute__((format(printf, 3, 4)))
fail(char *msg, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (msg && cap) {
		va_start(ap, fmt);
		vsnprintf(msg, cap, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Reads a decimal number; saturates at limit+1 so callers see "too big"
 * without overflowing.  Returns characters consumed (0 = no digits). */
static size_t read_number(const char *s, int64_t limit, int64_t *out)
{
	size_t i = 0;
	int64_t v = 0;

	while (is_digit(s[i])) {
		if (v <= limit)
			v = v * 10 + (s[i] - '0');
		i++;
	}
	*out = v > limit ? limit + 1 : v;
	return i;
}

static const struct unit *find_unit(const struct unit *u, size_t n, const char *s,
				    size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(u[i].name) == len && memcmp(u[i].name, s, len) == 0)
			return &u[i];
	return NULL;
}

int policy_parse_duration(const char *s, int64_t *secs, char *msg, size_t cap)
{
	const char *p = s;
	int64_t total = 0;

	if (!*s)
		return fail(msg, cap, "empty duration");
	while (*p) {
		int64_t n;
		size_t nd = read_number(p, POLICY_MAX_RETAIN_S, &n), nu = 0;
		const struct unit *u;
		char ubuf[16];

		if (nd == 0)
			return fail(msg, cap,
				    "bad duration '%s': expected a number followed by "
				    "h, d, w, mo or y (e.g. 90d, 6y)",
				    s);
		p += nd;
		while (is_alpha(p[nu]))
			nu++;
		if (nu == 0)
			return fail(msg, cap,
				    "missing unit in duration '%s' (use h, d, w, mo or "
				    "y)",
				    s);
		snprintf(ubuf, sizeof(ubuf), "%.*s", (int)(nu < 15 ? nu : 15), p);
		if (nu == 1 && (*p == 'm' || *p == 'M'))
			return fail(msg, cap,
				    "ambiguous unit 'm' in duration '%s': write 'mo' for "
				    "months",
				    s);
		u = find_unit(dur_units, ARRAY_LEN(dur_units), p, nu);
		if (!u)
			return fail(msg, cap,
				    "unknown unit '%s' in duration '%s' (use h, d, w, mo "
				    "or y)",
				    ubuf, s);
		p += nu;
		if (n > POLICY_MAX_RETAIN_S / u->secs ||
		    total + n * u->secs > POLICY_MAX_RETAIN_S)
			return fail(msg, cap, "duration '%s' is too long (at most 1000y)",
				    s);
		total += n * u->secs;
		while (*p == ' ' || *p == '\t')
			p++;
	}
	if (total == 0)
		return fail(msg, cap,
			    "duration '%s' must be greater than zero (write 'none' for "
			    "no limit)",
			    s);
	*secs = total;
	return 0;
}

int policy_parse_rate(const char *s, uint32_t *count, uint32_t *window_s, char *msg,
		      size_t cap)
{
	const char *p = s;
	int64_t n, mult = 1;
	size_t nd, nu = 0;
	const struct unit *u;
	char ubuf[16];

	nd = read_number(p, MAX_RATE_COUNT, &n);
	if (nd == 0 || p[nd] != '/')
		return fail(msg, cap,
			    "bad read_rate '%s': expected COUNT/UNIT such as 300/h "
			    "(units s, m, h, d)",
			    s);
	if (n == 0)
		return fail(msg, cap,
			    "read_rate '%s' must allow at least one read (write 'read =' "
			    "to forbid reading)",
			    s);
	if (n > MAX_RATE_COUNT)
		return fail(msg, cap,
			    "read_rate '%s' is too large (at most %s per window)", s,
			    "1000000000");
	p += nd + 1;
	nd = read_number(p, MAX_RATE_WINDOW, &mult);
	if (nd > 0 && mult == 0)
		return fail(msg, cap, "read_rate '%s' has a zero-length window", s);
	if (nd == 0)
		mult = 1;
	p += nd;
	while (is_alpha(p[nu]))
		nu++;
	snprintf(ubuf, sizeof(ubuf), "%.*s", (int)(nu < 15 ? nu : 15), p);
	u = find_unit(rate_units, ARRAY_LEN(rate_units), p, nu);
	if (!u || p[nu] != '\0') {
		if (nu == 0 || p[nu] != '\0')
			return fail(msg, cap,
				    "bad read_rate '%s': expected COUNT/UNIT such as "
				    "300/h (units s, m, h, d)",
				    s);
		return fail(msg, cap,
			    "unknown unit '%s' in read_rate '%s' (use s, m, h or d)",
			    ubuf, s);
	}
	if (mult > MAX_RATE_WINDOW / u->secs)
		return fail(msg, cap, "read_rate '%s' has a window longer than %s", s,
			    "366 days");
	*count = (uint32_t)n;
	*window_s = (uint32_t)(mult * u->secs);
	return 0;
}

void policy_format_duration(int64_t secs, char *out, size_t cap)
{
	for (size_t i = 0; i < ARRAY_LEN(dur_units); i++) {
		if (secs > 0 && secs % dur_units[i].secs == 0) {
			snprintf(out, cap, "%" PRId64 "%s", secs / dur_units[i].secs,
				 dur_units[i].name);
			return;
		}
	}
	snprintf(out, cap, "%" PRId64 "s", secs);
}
