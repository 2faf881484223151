/*
 * creds.c — the caller-group cache and the read-rate counters (creds.h).
 *
 * Both are fixed-size open tables guarded by one mutex per slot (the
 * group cache: direct-mapped) or per stripe (the rate table: a key probes
 * CREDS_RATE_PROBE consecutive slots, all under the stripe lock of the
 * first), so concurrent FUSE threads rarely meet and nothing allocates
 * after creation.
 */
#include "creds.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One cached caller. */
struct creds_entry {
	pthread_mutex_t lock;         /* guards the fields below */
	bool valid;                   /* holds a fetched caller */
	pid_t pid;                    /* key: calling thread */
	uid_t uid;                    /* key: its fsuid */
	gid_t gid;                    /* key: its fsgid */
	int64_t at_us;                /* when fetched (monotonic) */
	size_t n;                     /* gids used (primary first) */
	gid_t gids[CREDS_GROUPS_MAX]; /* the groups */
};

struct creds_cache {
	size_t mask;               /* slots - 1 */
	int64_t ttl_us;            /* staleness bound */
	struct creds_entry *slots; /* mask + 1 entries */
};

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;

	while (p < n && p < ((size_t)1 << 30))
		p <<= 1;
	return p;
}

static uint64_t mix64(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

int creds_cache_new(size_t slots, int64_t ttl_us, struct creds_cache **out)
{
	struct creds_cache *c;
	size_t n;

	*out = NULL;
	if (slots == 0 || ttl_us < 0)
		return -EINVAL;
	n = pow2_at_least(slots);
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->slots = calloc(n, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		pthread_mutex_init(&c->slots[i].lock, NULL);
	c->mask = n - 1;
	c->ttl_us = ttl_us;
	*out = c;
	return 0;
}

void creds_cache_free(struct creds_cache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i <= c->mask; i++)
		pthread_mutex_destroy(&c->slots[i].lock);
	free(c->slots);
	free(c);
}

/* Primary gid first, then the supplementary ones without repeating it. */
static size_t merge_groups(gid_t gid, const gid_t *sup, size_t nsup, gid_t *out,
			   size_t cap)
{
	size_t n = 0;

	out[n++] = gid;
	for (size_t i = 0; i < nsup && n < cap; i++)
		if (sup[i] != gid)
			out[n++] = sup[i];
	return n;
}

int creds_groups(struct creds_cache *c, pid_t pid, uid_t uid, gid_t gid, int64_t now_us,
		 creds_fetch_fn fetch, void *ctx, gid_t *gids, size_t cap)
{
	gid_t sup[CREDS_GROUPS_MAX], merged[CREDS_GROUPS_MAX];
	struct creds_entry *e;
	size_t n, m;
	int total;

	if (cap == 0)
		return -EINVAL;
	e = &c->slots[mix64(((uint64_t)(uint32_t)pid << 32) ^ uid ^
			    ((uint64_t)gid << 17)) &
		      c->mask];
	pthread_mutex_lock(&e->lock);
	if (e->valid && e->pid == pid && e->uid == uid && e->gid == gid &&
	    now_us >= e->at_us && now_us - e->at_us < c->ttl_us) {
		n = e->n < cap ? e->n : cap;
		memcpy(gids, e->gids, n * sizeof(*gids));
		pthread_mutex_unlock(&e->lock);
		return (int)n;
	}
	pthread_mutex_unlock(&e->lock);

	/* Fetch outside the lock: it reads /proc. */
	total = fetch ? fetch(ctx, sup, ARRAY_LEN(sup)) : -ENOSYS;
	if (total < 0) {
		gids[0] = gid;
		return 1;
	}
	if ((size_t)total >= ARRAY_LEN(sup)) {
		/* Too many to cache: fetch them all for this call only. */
		size_t want = (size_t)total + 16;
		gid_t *big = malloc(want * sizeof(*big));
		int again = big ? fetch(ctx, big, want) : -ENOMEM;

		if (again < 0) {
			n = merge_groups(gid, sup, ARRAY_LEN(sup), gids, cap);
		} else {
			if ((size_t)again > want)
				again = (int)want;
			n = merge_groups(gid, big, (size_t)again, gids, cap);
		}
		free(big);
		return (int)n;
	}
	m = merge_groups(gid, sup, (size_t)total, merged, ARRAY_LEN(merged));
	pthread_mutex_lock(&e->lock);
	e->valid = true;
	e->pid = pid;
	e->uid = uid;
	e->gid = gid;
	e->at_us = now_us;
	e->n = m;
	memcpy(e->gids, merged, m * sizeof(*merged));
	pthread_mutex_unlock(&e->lock);
	n = m < cap ? m : cap;
	memcpy(gids, merged, n * sizeof(*gids));
	return (int)n;
}

/* ---- read rate ------------------------------------------------------------ */

/* One (uid, rule) counter over aligned windows of window_s seconds. */
struct rate_slot {
	bool used;         /* holds a counter */
	uid_t uid;         /* whose reads */
	uint64_t key;      /* which rule */
	uint32_t window_s; /* window length the counts refer to */
	int64_t win;       /* index of the current window (now / window) */
	uint32_t cur;      /* reads counted in window win */
	uint32_t prev;     /* reads counted in window win - 1 */
};

#define RATE_STRIPES 64

struct creds_rate {
	size_t mask;                          /* slots - 1 */
	struct rate_slot *slots;              /* mask + 1 counters */
	pthread_mutex_t stripe[RATE_STRIPES]; /* lock of a probe run's first slot */
};

int creds_rate_new(size_t slots, struct creds_rate **out)
{
	struct creds_rate *r;
	size_t n;

	*out = NULL;
	if (slots < CREDS_RATE_PROBE)
		return -EINVAL;
	n = pow2_at_least(slots);
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->slots = calloc(n, sizeof(*r->slots));
	if (!r->slots) {
		free(r);
		return -ENOMEM;
	}
	r->mask = n - 1;
	for (size_t i = 0; i < RATE_STRIPES; i++)
		pthread_mutex_init(&r->stripe[i], NULL);
	*out = r;
	return 0;
}

void creds_rate_free(struct creds_rate *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < RATE_STRIPES; i++)
		pthread_mutex_destroy(&r->stripe[i]);
	free(r->slots);
	free(r);
}

uint64_t creds_rate_key(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Moves a counter's windows forward to window idx. */
static void rate_advance(struct rate_slot *s, int64_t idx)
{
	if (s->win == idx)
		return;
	s->prev = s->win == idx - 1 ? s->cur : 0;
	s->cur = 0;
	s->win = idx;
}

/* When a counter stops mattering: the end of its current window plus one
 * more (the sliding estimate still weighs the previous window); 0 for a
 * free slot. */
static int64_t rate_expiry_us(const struct rate_slot *s)
{
	if (!s->used)
		return 0;
	return (s->win + 2) * (int64_t)s->window_s * 1000000;
}

/* Is slot a a better one to reuse than slot b?  Free or expired slots
 * first; among live ones, the one that expires soonest (it has the least
 * left to count). */
static bool rate_evict_before(const struct rate_slot *a, const struct rate_slot *b,
			      int64_t now_us)
{
	int64_t ea = rate_expiry_us(a), eb = rate_expiry_us(b);
	bool deada = ea <= now_us, deadb = eb <= now_us;

	if (deada != deadb)
		return deada;
	return !deada && ea < eb;
}

int creds_rate_take(struct creds_rate *r, uid_t uid, uint64_t key, uint32_t count,
		    uint32_t window_s, int64_t now_us)
{
	int64_t w_us, idx, into;
	struct rate_slot *s = NULL, *victim = NULL;
	size_t h, i;
	double est;
	int ret;

	if (count == 0 || window_s == 0)
		return -EINVAL;
	if (now_us < 0)
		now_us = 0;
	w_us = (int64_t)window_s * 1000000;
	idx = now_us / w_us;
	into = now_us % w_us;
	/* A probe run may wrap past the end of the table into slots of
	 * another stripe; the lock of the run's first slot guards the whole
	 * run only if runs never straddle stripes, so align them. */
	h = (size_t)mix64(key ^ ((uint64_t)uid * 0x9e3779b97f4a7c15ULL)) & r->mask;
	h &= ~(size_t)(CREDS_RATE_PROBE - 1);
	pthread_mutex_lock(&r->stripe[(h / CREDS_RATE_PROBE) % RATE_STRIPES]);
	for (i = 0; i < CREDS_RATE_PROBE; i++) {
		struct rate_slot *c = &r->slots[h + i];

		if (c->used && c->uid == uid && c->key == key) {
			s = c;
			break;
		}
		if (!victim || rate_evict_before(c, victim, now_us))
			victim = c;
	}
	if (!s) {
		s = victim;
		memset(s, 0, sizeof(*s));
		s->used = true;
		s->uid = uid;
		s->key = key;
		s->window_s = window_s;
		s->win = idx;
	}
	if (s->window_s != window_s) {
		/* The rule's window changed: old counts mean nothing now. */
		s->window_s = window_s;
		s->win = idx;
		s->cur = s->prev = 0;
	}
	rate_advance(s, idx);
	est = (double)s->prev * (double)(w_us - into) / (double)w_us + (double)s->cur;
	if (est + 1.0 > (double)count + 1e-9) {
		ret = -EACCES;
	} else {
		if (s->cur < UINT32_MAX)
			s->cur++;
		ret = 0;
	}
	pthread_mutex_unlock(&r->stripe[(h / CREDS_RATE_PROBE) % RATE_STRIPES]);
	return ret;
}
