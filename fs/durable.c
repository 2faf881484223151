/*
 * durable.c — the queue of descriptors to sync soon (see durable.h).
 *
 * Sections: the queue; syncing a batch; the thread; drain.
 *
 * Locking: d->lock guards every field.  One batch is synced at a time
 * (busy), by the thread or by a drainer, and batches leave the queue in
 * the order they entered it, so `synced` counts a prefix of `added`: a
 * drainer waits until synced reaches what was added before it came.
 */
#include "durable.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "sys.h"

struct durable {
	pthread_mutex_t lock;     /* guards the fields below */
	pthread_cond_t work;      /* queue non-empty, or stop */
	pthread_cond_t done;      /* a batch finished */
	int q[DURABLE_QUEUE_MAX]; /* descriptors waiting, oldest first */
	unsigned n;               /* entries used in q */
	unsigned cap;             /* most entries q may hold: DURABLE_QUEUE_MAX,
				     or an eighth of RLIMIT_NOFILE at open if
				     less (set once, before the thread) */
	uint64_t added;           /* descriptors ever queued */
	uint64_t synced;          /* descriptors ever synced (a prefix) */
	unsigned inflight;        /* descriptors in the batch being synced */
	int err;                  /* first sync error: sticky (see durable_drain) */
	bool busy;                /* a batch is being synced */
	bool stop;                /* durable_close: the thread ends */
	pthread_t thread;         /* durable-sync */
};

/* --- syncing a batch ---------------------------------------------------------- */

static int sync_close(int fd)
{
	int ret = sys.fdatasync(fd) != 0 ? -errno : 0;

	close(fd);
	return ret;
}

/* Called with the lock held and !busy, n > 0: syncs the whole queue as one
 * batch (the lock is dropped meanwhile) and wakes the waiters. */
static void sync_batch_locked(struct durable *d)
{
	int batch[DURABLE_QUEUE_MAX];
	unsigned k = d->n;
	int err = 0;

	for (unsigned i = 0; i < k; i++)
		batch[i] = d->q[i];
	d->n = 0;
	d->busy = true;
	d->inflight = k;
	pthread_mutex_unlock(&d->lock);
	/* Start every file's write-back first.  On a journalled file system
	 * (ext4, XFS) writing a new file's data allocates its blocks, and an
	 * fdatasync commits the journal: one fdatasync after another would
	 * commit once per file, each stalling the request threads' own
	 * metadata updates behind it (tar x onto a fresh ext4: 16 % slower).
	 * Started together, the first fdatasync commits all the allocations
	 * and the rest find theirs on disk.  A hint only: its errors are
	 * fdatasync's to report. */
	for (unsigned i = 0; i < k; i++)
		(void)sync_file_range(batch[i], 0, 0, SYNC_FILE_RANGE_WRITE);
	for (unsigned i = 0; i < k; i++) {
		int r = sync_close(batch[i]);

		if (r < 0 && err == 0)
			err = r;
	}
	pthread_mutex_lock(&d->lock);
	d->synced += k;
	if (err < 0 && d->err == 0)
		d->err = err;
	d->busy = false;
	d->inflight = 0;
	pthread_cond_broadcast(&d->done);
}

/* --- the thread --------------------------------------------------------------- */

static void *sync_main(void *arg)
{
	struct durable *d = arg;
	struct timespec dl;

	sys_background_thread();
	pthread_mutex_lock(&d->lock);
	for (;;) {
		while (!d->n && !d->stop)
			pthread_cond_wait(&d->work, &d->lock);
		if (!d->n && d->stop)
			break;
		/* Let a batch gather (tar makes directories in bursts), unless
		 * the queue fills up first. */
		clock_deadline_ms(&dl, DURABLE_GATHER_MS);
		while (!d->stop && d->n < d->cap &&
		       pthread_cond_timedwait(&d->work, &d->lock, &dl) == 0)
			;
		if (d->n && !d->busy)
			sync_batch_locked(d);
		else if (d->busy)
			pthread_cond_wait(&d->done, &d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* --- the queue ------------------------------------------------------------------ */

/* Queued descriptors are the daemon's, not the caller's: under a low
 * descriptor limit a full-size queue (plus a batch in flight) would leave
 * none for the files callers open, and mkdir would fail with EMFILE for a
 * queue that only saves time.  An eighth of the limit, at least one. */
static unsigned durable_cap(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur / 8 >= DURABLE_QUEUE_MAX)
		return DURABLE_QUEUE_MAX;
	return rl.rlim_cur / 8 ? (unsigned)(rl.rlim_cur / 8) : 1;
}

int durable_open(struct durable **out)
{
	struct durable *d = calloc(1, sizeof(*d));
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->work, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&d->done, NULL);
	d->cap = durable_cap();
	rc = pthread_create(&d->thread, NULL, sync_main, d);
	if (rc != 0) {
		pthread_cond_destroy(&d->done);
		pthread_cond_destroy(&d->work);
		pthread_mutex_destroy(&d->lock);
		free(d);
		return -rc;
	}
	pthread_setname_np(d->thread, "durable-sync");
	*out = d;
	return 0;
}

void durable_close(struct durable *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop = true;
	pthread_cond_broadcast(&d->work);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	/* The thread syncs the rest before it ends. */
	pthread_cond_destroy(&d->done);
	pthread_cond_destroy(&d->work);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

int durable_add(struct durable *d, int fd)
{
	pthread_mutex_lock(&d->lock);
	if (d->n >= d->cap || d->stop) {
		pthread_mutex_unlock(&d->lock);
		return sync_close(fd);
	}
	d->q[d->n++] = fd;
	d->added++;
	if (d->n == 1 || d->n == d->cap)
		pthread_cond_signal(&d->work);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* --- drain ---------------------------------------------------------------------- */

int durable_drain(struct durable *d)
{
	uint64_t target;
	int err;

	pthread_mutex_lock(&d->lock);
	target = d->added;
	while (d->synced < target) {
		if (!d->busy && d->n)
			sync_batch_locked(d);
		else
			pthread_cond_wait(&d->done, &d->lock);
	}
	/* Sticky: once a sync failed, an IV may be lost at the next power
	 * loss, and no later fsync may claim otherwise (until remount). */
	err = d->err;
	pthread_mutex_unlock(&d->lock);
	return err;
}

unsigned durable_pending(struct durable *d)
{
	unsigned n;

	pthread_mutex_lock(&d->lock);
	n = d->n + d->inflight;
	pthread_mutex_unlock(&d->lock);
	return n;
}
