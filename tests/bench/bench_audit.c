/*
 * bench_audit.c — what auditing costs, and how a large log answers.
 *
 *   cc -O2 -D_GNU_SOURCE -Ifs -Ipolicy -pthread -o /tmp/bench_audit \
 *      tests/bench/bench_audit.c BUILD/libcustodian.a \
 *      $(pkg-config --libs fuse3 libsodium sqlite3 inih json-c)
 *   /tmp/bench_audit STORE PASSFILE [RECORDS]
 *
 * On an existing store (created with `custodian init`; it gets RECORDS
 * audit records, default 1000000, so use a scratch store) it prints the
 * cost of audit_who (the /proc reads done per audited open), of
 * audit_append with audit_sync=normal and =full from 1 and 4 threads, then
 * fills the log to RECORDS records spread over 1000 subjects and times a
 * --subject query.  Numbers go to docs/audit.md; nothing here asserts
 * speed.  It is also the tool the CLI integration test uses to create a
 * known history (RECORDS small, "--quick": no timing runs).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "secret.h"
#include "store.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Shared by the appender threads. */
struct job {
	struct audit *a;           /* log */
	const struct audit_who *w; /* caller */
	int n;                     /* records */
};

static void *run(void *p)
{
	struct job *j = p;
	char path[64];

	for (int i = 0; i < j->n; i++) {
		struct audit_event ev = {.op = AUDIT_OP_OPEN, .who = j->w, .path = path};

		snprintf(path, sizeof(path), "/customers/C-%d/call-%d.wav", i % 1000, i);
		if (audit_append(j->a, &ev, NULL) != 0) {
			fprintf(stderr, "append failed\n");
			exit(1);
		}
	}
	return NULL;
}

static void timed(struct store *st, enum audit_sync sync, int threads, int n,
		  const struct audit_who *w, unsigned batch_ms)
{
	struct audit_options o = {.sync = sync, .batch_ms = batch_ms};
	struct audit *a = NULL;
	pthread_t th[8];
	struct job j;
	double t0, t1;

	if (audit_open(st, &o, &a) != 0) {
		fprintf(stderr, "audit_open failed\n");
		exit(1);
	}
	j = (struct job){a, w, n / threads};
	t0 = now();
	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, run, &j);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	t1 = now();
	if (audit_flush(a) != 0)
		exit(1);
	audit_close(a);
	printf("append sync=%-6s threads=%d%s: %8.2f us/record (%d records)\n",
	       sync == AUDIT_SYNC_FULL ? "full" : "normal", threads,
	       batch_ms ? " burst" : "", (t1 - t0) * 1e6 / n, n);
}

int main(int argc, char **argv)
{
	struct store *st = NULL;
	struct secret *pass = NULL;
	struct audit *a = NULL;
	struct audit_who w;
	bool quick = argc > 4 && strcmp(argv[4], "--quick") == 0;
	long total = argc > 3 ? atol(argv[3]) : 1000000;
	uint8_t subj[CRYPT_HASH_BYTES];
	struct catalog_audit_filter flt;
	struct catalog_audit_iter *it = NULL;
	struct catalog_audit_row *r = malloc(sizeof(*r));
	double t0, t1;
	int64_t have;
	uint8_t mac[CRYPT_MAC_BYTES];
	long hits = 0;
	int ret = 1;

	if (argc < 3 || crypt_init() != 0 || secret_from_file(argv[2], &pass) != 0 ||
	    store_open(argv[1], false, &st) != 0 ||
	    store_unlock_passphrase(st, pass) != 0) {
		fprintf(stderr,
			"usage: bench_audit STORE PASSFILE [RECORDS [--quick]]\n");
		ret = 2;
		goto out;
	}
	audit_who_self(&w);
	if (!quick) {
		t0 = now();
		for (int i = 0; i < 20000; i++)
			audit_who(getpid(), 0, 0, &w);
		printf("audit_who (/proc reads): %8.2f us/call\n",
		       (now() - t0) * 1e6 / 20000);
		if (audit_open(st, NULL, &a) != 0)
			goto out;
		t0 = now();
		for (int i = 0; i < 20000; i++)
			audit_who_cached(a, getpid(), 0, 0, &w);
		printf("audit_who_cached (hit):  %8.2f us/call\n",
		       (now() - t0) * 1e6 / 20000);
		audit_close(a);
		a = NULL;
		/* A burst the journal absorbs before the writer commits. */
		timed(st, AUDIT_SYNC_NORMAL, 1, 5000, &w, 10000);
		timed(st, AUDIT_SYNC_NORMAL, 4, 5000, &w, 10000);
		/* Sustained: bounded by the writer's SQLite inserts. */
		timed(st, AUDIT_SYNC_NORMAL, 1, 100000, &w, 0);
		timed(st, AUDIT_SYNC_NORMAL, 4, 100000, &w, 0);
		timed(st, AUDIT_SYNC_FULL, 1, 2000, &w, 0);
		timed(st, AUDIT_SYNC_FULL, 4, 8000, &w, 0);
	}
	if (catalog_audit_last(st->cat, &have, mac) != 0 || audit_open(st, NULL, &a) != 0)
		goto out;
	t0 = now();
	for (long i = have; i < total; i++) {
		char path[64];
		struct audit_who u = w;
		struct audit_event ev = {.op = i % 5 ? AUDIT_OP_OPEN : AUDIT_OP_CLOSE,
					 .who = &u,
					 .path = path,
					 .subject = subj,
					 .outcome = i % 50 == 0 ? 13 : 0,
					 .bytes = (uint64_t)i};
		char id[16];

		u.uid = 1000 + (uint32_t)(i % 7);
		snprintf(id, sizeof(id), "C-%ld", i % 1000);
		audit_subject_hash(st->mk, id, subj);
		snprintf(path, sizeof(path), "/customers/%s/call-%ld.wav", id, i);
		if (audit_append(a, &ev, NULL) != 0)
			goto out;
	}
	if (audit_flush(a) != 0)
		goto out;
	t1 = now();
	audit_close(a);
	if (total > have)
		printf("filled %ld records in %.1f s\n", total - have, t1 - t0);
	a = NULL;
	if (quick) {
		ret = 0;
		goto out;
	}

	audit_subject_hash(st->mk, "C-7", subj);
	catalog_audit_filter_all(&flt);
	flt.subject = subj;
	t0 = now();
	if (catalog_audit_query(st->cat, &flt, &it) != 0)
		goto out;
	while (catalog_audit_next(it, r) == 1)
		hits++;
	catalog_audit_iter_free(it);
	t1 = now();
	printf("--subject query over %ld records: %ld hits in %.3f s\n", total, hits,
	       t1 - t0);
	t0 = now();
	{
		struct audit_report rep;

		if (audit_verify(st->cat, st->mk, NULL, &rep) != 0 ||
		    rep.verdict != AUDIT_OK)
			goto out;
		printf("verify %llu records: %.1f s\n", (unsigned long long)rep.records,
		       now() - t0);
	}
	ret = 0;
out:
	/* One exit, so the sanitizer build of the CLI test sees no leaks. */
	if (a)
		audit_close(a);
	store_close(st);
	secret_free(pass);
	free(r);
	return ret;
}
