/*
 * durable.h — writes that must reach the disk soon, and before the next
 * promise of durability, but need not hold up the request that made them.
 *
 * A new directory's IV file is the case: names inside the directory are
 * encrypted under it, so it must be on disk before anything in that
 * directory is promised durable (an fsync of a file or of the directory),
 * but an fsync at every mkdir cost ~0.9 ms of device flush on the request
 * path (tar x of /usr/include: 839 of them).  Its descriptor is queued
 * here instead; a background thread (durable-sync) fdatasyncs and closes
 * queued descriptors a few milliseconds later, and durable_drain() does
 * it at once for a caller about to promise durability.
 *
 * Pure engine code (no FUSE); fdatasync goes through the sys.h seam.
 */
#ifndef CUSTODIAN_DURABLE_H
#define CUSTODIAN_DURABLE_H

#include "errs.h"

/* Descriptors waiting; a full queue syncs inline.  Fewer under a low
 * RLIMIT_NOFILE: an eighth of it, read at durable_open. */
#define DURABLE_QUEUE_MAX 256
#define DURABLE_GATHER_MS 50 /* how long the thread lets a batch gather */

struct durable;

/* Starts the queue and its thread.  0, -ENOMEM or -errno. */
int durable_open(struct durable **out) MUST_CHECK;

/* Syncs what is queued, stops the thread, frees.  NULL is a no-op. */
void durable_close(struct durable *d);

/* Takes fd (open for writing, its data written): it is fdatasynced and
 * closed later, or now if the queue is full (then its error is returned
 * and fd is closed all the same).  0 or -errno. */
int durable_add(struct durable *d, int fd) MUST_CHECK;

/* Returns once everything queued before the call is on disk (synced by
 * this caller or by the thread).  0, or the -errno of the first sync that
 * ever failed here: sticky, since that data may be lost at the next power
 * loss, every later drain (and so every fsync of the mount) fails too. */
int durable_drain(struct durable *d) MUST_CHECK;

/* Descriptors queued and not yet synced (for tests). */
unsigned durable_pending(struct durable *d);

#endif
