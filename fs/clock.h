/*
 * clock.h — time for records (UTC microseconds) and the compliance clock
 * that retention decisions use.
 *
 * clock_now_us() is the system clock, unchanged: audit timestamps, slot
 * and subject creation times.  Retention never trusts it directly: it asks
 * clock_compliance_now(), which keeps the last time the store saw in the
 * catalogue (meta CLOCK_META_KEY) and so never runs backwards, and which
 * reports a system clock set back or jumped far ahead as an event for the
 * caller to audit.  An unaccepted forward jump is not believed (the stored
 * time is returned), so moving the clock forward cannot expire records
 * early; the administrator accepts it explicitly (CLOCK_ACCEPT_JUMP), and
 * the caller audits that.  Rationale and the full table of cases:
 * docs/retention.md, "The compliance clock".
 */
#ifndef CUSTODIAN_CLOCK_H
#define CUSTODIAN_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errs.h"

struct catalog;

/* UTC microseconds since the epoch. */
int64_t clock_now_us(void);

struct timespec;
/* *ts = CLOCK_MONOTONIC now + ms: a deadline for a wait on a condition
 * variable that uses the monotonic clock (pthread_cond_clockwait, or a
 * cond set up with pthread_condattr_setclock). */
void clock_deadline_ms(struct timespec *ts, unsigned ms);

#define CLOCK_META_KEY "clock_us"       /* last trusted time, decimal text */
#define CLOCK_META_JUMP "clock_jump_us" /* optional threshold override, decimal */
#define CLOCK_BACK_TOLERANCE_US (5LL * 60 * 1000000)  /* set back: beyond 5 min */
#define CLOCK_JUMP_DEFAULT_US (24LL * 3600 * 1000000) /* jumped ahead: beyond 24 h */
#define CLOCK_PERSIST_STEP_US (60LL * 1000000)        /* write at most once a minute */

/* clock_compliance_at flags */
#define CLOCK_NO_PERSIST 0x1  /* read-only: never write the catalogue */
#define CLOCK_ACCEPT_JUMP 0x2 /* the administrator confirmed a forward jump */

/* What a reading of the compliance clock noticed. */
enum clock_event_kind {
	CLOCK_EV_NONE,       /* system time consistent with the stored time */
	CLOCK_EV_FIRST,      /* no stored time yet: started from the system time */
	CLOCK_EV_SET_BACK,   /* system time more than 5 min behind the stored time */
	CLOCK_EV_JUMP_AHEAD, /* system time more than the threshold ahead */
};

/* One reading, for the caller to audit and report. */
struct clock_event {
	enum clock_event_kind kind; /* what was noticed */
	int64_t system_us;          /* the system (or --now) reading */
	int64_t stored_us;          /* the stored time before this reading, 0 if none */
	int64_t threshold_us;       /* forward-jump threshold in force */
	bool accepted;              /* JUMP_AHEAD only: CLOCK_ACCEPT_JUMP was given
				       and the new time was stored */
	bool persisted;             /* the stored time was advanced by this call */
};

/* The compliance time for a system reading `system_us` (the tools' --now
 * is such a reading).  *now_us = max(system, stored), except on a
 * forward jump beyond the threshold without CLOCK_ACCEPT_JUMP, where it is
 * the stored time (the jump is not believed).  The stored time advances
 * when the system time is ahead by CLOCK_PERSIST_STEP_US or more (unless
 * CLOCK_NO_PERSIST), and on an accepted jump.  threshold_us 0 means meta
 * CLOCK_META_JUMP if set, else CLOCK_JUMP_DEFAULT_US.  ev (may be NULL)
 * says what happened.  -EIO if the stored value is not a number; catalogue
 * errors as -errno. */
int clock_compliance_at(struct catalog *cat, int64_t system_us, int64_t threshold_us,
			unsigned flags, int64_t *now_us,
			struct clock_event *ev) MUST_CHECK;

/* clock_compliance_at(cat, clock_now_us(), 0, 0, ...): the daemon's call. */
int clock_compliance_now(struct catalog *cat, int64_t *now_us,
			 struct clock_event *ev) MUST_CHECK;

/* A one-line description of an event ("system clock set back by 2h 0m
 * (stored 2026-...)"), for messages and audit details (no names). */
void clock_event_describe(const struct clock_event *ev, char *out, size_t cap);

/* Parses an ISO 8601 UTC time: "2026-01-31", "2026-01-31T12:00:00Z",
 * "2026-01-31T12:00:00" (UTC), "2026-01-31 12:00".  0 or -EINVAL. */
int clock_parse_iso(const char *s, int64_t *us) MUST_CHECK;

#endif
