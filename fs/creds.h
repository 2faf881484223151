/*
 * creds.h — per-caller state the daemon keeps for policy checks: a short-
 * lived cache of each caller's groups, and the read-rate counters.
 *
 * Pure C (no FUSE, no /proc): the daemon passes a function that fetches a
 * caller's supplementary groups (fuse_req_getgroups, which reads
 * /proc/PID/status, too slow to call per request) and the current
 * monotonic time.  Both tables have a fixed size chosen at creation, so
 * memory stays bounded whatever the callers do, and every operation is
 * O(1) under a short per-slot lock.
 */
#ifndef CUSTODIAN_CREDS_H
#define CUSTODIAN_CREDS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "errs.h"

#define CREDS_GROUPS_MAX 64   /* groups one cache entry holds (primary included) */
#define CREDS_TTL_US 1000000  /* default staleness bound of a cached entry: 1 s */
#define CREDS_CACHE_SLOTS 256 /* default entries in the group cache */
#define CREDS_RATE_SLOTS 4096 /* default (uid, rule) counters */
#define CREDS_RATE_PROBE 8    /* slots searched per counter lookup */

/* Fetches the supplementary groups of the calling process into gids (at
 * most cap); returns how many it has in total (may exceed cap) or -errno. */
typedef int (*creds_fetch_fn)(void *ctx, gid_t *gids, size_t cap);

struct creds_cache;

/* A cache of `slots` entries (rounded up to a power of two), each valid
 * for ttl_us microseconds.  -EINVAL for zero slots, -ENOMEM. */
int creds_cache_new(size_t slots, int64_t ttl_us, struct creds_cache **out) MUST_CHECK;
void creds_cache_free(struct creds_cache *c);

/*
 * The groups of the caller (pid, uid, gid) at time now_us (monotonic):
 * gid first, then its supplementary groups, at most cap (>= 1) of them.
 * Served from the cache if an entry for exactly (pid, uid, gid) is younger
 * than the TTL, else fetched (and cached if it fits CREDS_GROUPS_MAX).  If
 * fetch fails, only gid is returned (fewer groups can only deny more).
 * Returns the number of gids written (>= 1), or -EINVAL if cap is 0.
 */
int creds_groups(struct creds_cache *c, pid_t pid, uid_t uid, gid_t gid, int64_t now_us,
		 creds_fetch_fn fetch, void *ctx, gid_t *gids, size_t cap);

struct creds_rate;

/* A table of `slots` counters (rounded up to a power of two).  -EINVAL for
 * fewer than CREDS_RATE_PROBE slots, -ENOMEM. */
int creds_rate_new(size_t slots, struct creds_rate **out) MUST_CHECK;
void creds_rate_free(struct creds_rate *r);

/*
 * Counts one read by uid under the limit identified by key (the rule that
 * sets read_rate): at most count reads per window_s seconds, measured as a
 * sliding window (the previous fixed window's count weighted by how much of
 * it still overlaps, plus the current one's).  Returns 0 and counts the
 * read if it is within the limit, -EACCES (not counted) if it is over.
 * -EINVAL if count or window_s is 0.  If every slot a key may use is busy
 * with live counters, the one whose window is oldest is reused (its caller
 * starts afresh): the table never grows.
 */
int creds_rate_take(struct creds_rate *r, uid_t uid, uint64_t key, uint32_t count,
		    uint32_t window_s, int64_t now_us);

/* A stable 64-bit key for a string (e.g. the rule's pattern), so counters
 * survive a policy reload that keeps the rule. */
uint64_t creds_rate_key(const char *s);

#endif
