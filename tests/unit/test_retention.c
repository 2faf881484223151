/*
 * test_retention.c — unit tests for fs/retention.c and
 * fs/catalog_retention.c: keep-until and every check (each op, WORM,
 * extension by a newer policy that never shortens), WORM commit, directory
 * holds (sealed, MAC'd, edited rows refused), and the sweep on real stores
 * (store_create with tiny KDF limits; files written with the format and
 * names APIs): files and long names erased, keep-until and holds respected,
 * whole subjects shredded when inactive, interrupted erasures finished
 * without being audited twice, injected I/O errors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "catalog.h"
#include "clock.h"
#include "format.h"
#include "names.h"
#include "policy.h"
#include "retention.h"
#include "secret.h"
#include "store.h"
#include "subjects.h"
#include "sys.h"

#include "unit_util.h"

#define S 1000000LL
#define DAY (86400LL * S)
#define YEAR (31557600LL * S)

static struct keys_kdf fast_kdf;

struct fixture {
	char dir[64];     /* temporary directory */
	char store[96];   /* the store */
	struct store *st; /* open, unlocked */
	int64_t now;      /* "now" for the test: real time */
};

/* --- helpers ------------------------------------------------------------- */

/* A volume directory `name` inside backing dirfd; returns its fd. */
static int mk_voldir(struct fixture *f, int dirfd, const char *name)
{
	uint8_t iv[CRYPT_DIRIV_BYTES], civ[CRYPT_DIRIV_BYTES];
	struct names_enc enc;
	int fd;

	assert_int_equal(names_diriv_load(dirfd, iv), 0);
	assert_int_equal(names_encrypt(keys_volume(f->st->mk), iv, name, &enc), 0);
	assert_int_equal(mkdirat(dirfd, enc.backing, 0700), 0);
	fd = openat(dirfd, enc.backing, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(names_diriv_create(fd, civ), 0);
	return fd;
}

/* Writes record `name` (born at birth, keep-until keep) into dirfd. */
static void write_file(int dirfd, const struct keyring *ring, const char *name,
		       int64_t birth, int64_t keep, const char *text)
{
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct format_file ff;
	struct names_enc enc;
	int fd;

	assert_int_equal(names_diriv_load(dirfd, iv), 0);
	assert_int_equal(names_encrypt(ring, iv, name, &enc), 0);
	assert_int_equal(names_long_store(dirfd, &enc), 0);
	fd = openat(dirfd, enc.backing, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(format_file_create(&ff, fd, ring, birth), 0);
	assert_int_equal(format_file_write(&ff, text, strlen(text), 0),
			 (ssize_t)strlen(text));
	if (keep) {
		ff.hdr.keep_until_us = keep;
		assert_int_equal(format_file_write_header(&ff), 0);
	}
	close(fd);
}

/* Does dirfd hold an entry for plaintext `name`? */
static bool has_file(int dirfd, const struct keyring *ring, const char *name)
{
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct names_enc enc;
	struct stat sb;

	assert_int_equal(names_diriv_load(dirfd, iv), 0);
	assert_int_equal(names_encrypt(ring, iv, name, &enc), 0);
	return fstatat(dirfd, enc.backing, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Entries of dirfd whose name starts with prefix. */
static int count_prefix(int dirfd, const char *prefix)
{
	int fd = dup(dirfd), n = 0;
	DIR *d = fdopendir(fd);
	struct dirent *de;

	assert_non_null(d);
	rewinddir(d);
	while ((de = readdir(d)))
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

static struct policy *load(const char *text)
{
	struct policy *p = NULL;

	assert_int_equal(policy_parse(text, strlen(text), &p, NULL), 0);
	return p;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct secret *s;

	if (!f || crypt_init() != 0)
		return -1;
	unit_fast_kdf(&fast_kdf);
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_retention") != 0)
		return -1;
	snprintf(f->store, sizeof(f->store), "%s/st", f->dir);
	s = unit_secret(f->dir, "pass");
	if (store_create(f->store, s, &fast_kdf, NULL) != 0)
		return -1;
	if (store_open(f->store, false, &f->st) != 0 ||
	    store_unlock_passphrase(f->st, s) != 0)
		return -1;
	secret_free(s);
	f->now = clock_now_us();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	sys_reset();
	store_close(f->st);
	if (unit_rm_rf(f->dir) != 0)
		return -1;
	free(f);
	return 0;
}

/* Records what the sweep reported, by path. */
struct seen {
	int n;              /* items */
	char path[32][128]; /* their paths */
	enum retention_state state[32];
	bool erased[32], resumed[32], with_subject[32];
	int err[32];
	enum retention_kind kind[32];
};

static int on_item(const struct retention_item *it, void *arg)
{
	struct seen *s = arg;

	if (s->n < 32) {
		snprintf(s->path[s->n], 128, "%s", it->path);
		s->state[s->n] = it->state;
		s->erased[s->n] = it->erased;
		s->resumed[s->n] = it->resumed;
		s->err[s->n] = it->err;
		s->kind[s->n] = it->kind;
		s->with_subject[s->n] = it->with_subject;
	}
	s->n++;
	return 0;
}

static int find(const struct seen *s, const char *path)
{
	for (int i = 0; i < s->n && i < 32; i++)
		if (strcmp(s->path[i], path) == 0)
			return i;
	return -1;
}

static int sweep(struct fixture *f, const struct policy *p, int64_t now, bool dry,
		 struct audit *a, struct seen *seen, struct retention_stats *stats)
{
	struct retention_sweep_opts o;

	memset(&o, 0, sizeof(o));
	memset(seen, 0, sizeof(*seen));
	o.now_us = now;
	o.dry_run = dry;
	o.audit = a;
	o.operator_ = "tester";
	o.item = on_item;
	o.arg = seen;
	return retention_sweep(f->st, p, &o, stats);
}

/* Audit records with op "sweep" and a path (the per-file erasures). */
static int count_erasure_records(struct fixture *f)
{
	struct catalog_audit_filter flt;
	struct catalog_audit_iter *it = NULL;
	struct catalog_audit_row *r = malloc(sizeof(*r));
	int n = 0, rc;

	assert_non_null(r);
	catalog_audit_filter_all(&flt);
	flt.op = AUDIT_OP_SWEEP;
	assert_int_equal(catalog_audit_query(f->st->cat, &flt, &it), 0);
	while ((rc = catalog_audit_next(it, r)) == 1)
		n += r->path_len > 0;
	assert_int_equal(rc, 0);
	catalog_audit_iter_free(it);
	free(r);
	return n;
}

/* --- keep-until and checks -------------------------------------------------- */

static void test_keep_until_and_check(void **state)
{
	struct policy_effective e;
	struct format_header h;
	const int64_t birth = 1000 * DAY;
	const enum retention_op destructive[] = {RETENTION_UNLINK, RETENTION_RENAME_AWAY,
						 RETENTION_TRUNCATE, RETENTION_OVERWRITE};

	(void)state;
	memset(&e, 0, sizeof(e));
	memset(&h, 0, sizeof(h));
	assert_int_equal(retention_keep_until(NULL, birth), 0);
	assert_int_equal(retention_keep_until(&e, birth), 0);
	e.retain_min_s = 30 * 86400;
	assert_int_equal(retention_keep_until(&e, birth), birth + 30 * DAY);
	/* saturates instead of wrapping */
	e.retain_min_s = POLICY_MAX_RETAIN_S;
	assert_int_equal(retention_keep_until(&e, INT64_MAX - 10), INT64_MAX);
	e.retain_min_s = 30 * 86400;

	/* a record created under the rule: keep-until in its header */
	h.birth_us = birth;
	h.keep_until_us = retention_keep_until(&e, birth);
	for (size_t i = 0; i < ARRAY_LEN(destructive); i++) {
		assert_int_equal(
			retention_check(&e, &h, birth + 29 * DAY, destructive[i]),
			-EPERM);
		assert_int_equal(
			retention_check(&e, &h, birth + 30 * DAY - 1, destructive[i]),
			-EPERM);
		assert_int_equal(
			retention_check(&e, &h, birth + 30 * DAY, destructive[i]), 0);
		/* the header alone locks it, even with no policy at all */
		assert_int_equal(retention_check(NULL, &h, birth + DAY, destructive[i]),
				 -EPERM);
	}
	assert_int_equal(retention_check(&e, &h, birth + DAY, RETENTION_APPEND), 0);
	assert_int_equal(retention_check(&e, &h, birth + DAY, RETENTION_SETATTR), 0);
	assert_int_equal(retention_check(&e, &h, birth + DAY, (enum retention_op)42),
			 -EINVAL);

	/* a newer policy lowering retain_min shortens nothing */
	e.retain_min_s = 86400;
	assert_int_equal(retention_effective_keep_until(&e, &h), birth + 30 * DAY);
	assert_int_equal(retention_check(&e, &h, birth + 2 * DAY, RETENTION_UNLINK),
			 -EPERM);
	/* ... removing it altogether neither */
	assert_int_equal(retention_check(NULL, &h, birth + 2 * DAY, RETENTION_UNLINK),
			 -EPERM);
	/* a newer policy raising it extends the lock */
	e.retain_min_s = 90 * 86400;
	assert_int_equal(retention_effective_keep_until(&e, &h), birth + 90 * DAY);
	assert_int_equal(retention_check(&e, &h, birth + 60 * DAY, RETENTION_TRUNCATE),
			 -EPERM);
	assert_int_equal(retention_check(&e, &h, birth + 90 * DAY, RETENTION_TRUNCATE),
			 0);
	/* a record from before any rule (keep-until 0) is locked by the rule */
	h.keep_until_us = 0;
	assert_int_equal(retention_check(&e, &h, birth + DAY, RETENTION_RENAME_AWAY),
			 -EPERM);
	assert_int_equal(retention_check(NULL, &h, birth + DAY, RETENTION_RENAME_AWAY),
			 0);

	/* WORM: data never changes; delete and rename once keep-until passed */
	h.keep_until_us = birth + 30 * DAY;
	h.flags = FORMAT_FLAG_WORM;
	e.retain_min_s = 0;
	assert_int_equal(retention_check(&e, &h, birth + DAY, RETENTION_APPEND), -EPERM);
	assert_int_equal(retention_check(&e, &h, birth + DAY, RETENTION_UNLINK), -EPERM);
	assert_int_equal(retention_check(&e, &h, birth + DAY, RETENTION_SETATTR), 0);
	for (int64_t t = birth + 30 * DAY; t < birth + 40 * YEAR; t += 10 * YEAR) {
		assert_int_equal(retention_check(&e, &h, t, RETENTION_APPEND), -EPERM);
		assert_int_equal(retention_check(&e, &h, t, RETENTION_OVERWRITE), -EPERM);
		assert_int_equal(retention_check(&e, &h, t, RETENTION_TRUNCATE), -EPERM);
		assert_int_equal(retention_check(&e, &h, t, RETENTION_UNLINK), 0);
		assert_int_equal(retention_check(&e, &h, t, RETENTION_RENAME_AWAY), 0);
	}

	/* holds */
	for (size_t i = 0; i < ARRAY_LEN(destructive); i++) {
		assert_int_equal(retention_check_held(true, destructive[i]), -EPERM);
		assert_int_equal(retention_check_held(false, destructive[i]), 0);
	}
	assert_int_equal(retention_check_held(true, RETENTION_APPEND), 0);
	assert_int_equal(retention_check_held(true, RETENTION_SETATTR), 0);
	assert_int_equal(retention_check_held(true, (enum retention_op)42), -EINVAL);
}

static void test_worm_commit(void **state)
{
	struct fixture *f = *state;
	const struct keyring *ring = keys_volume(f->st->mk);
	struct policy_effective e;
	struct format_file ff, g;
	struct format_header h;
	int dfd, fd;

	memset(&e, 0, sizeof(e));
	memset(&h, 0, sizeof(h));
	/* when a commit is due */
	assert_false(retention_worm_due(NULL, &h, true, 0, 0));
	assert_false(retention_worm_due(&e, &h, true, 0, 0));
	e.worm = true;
	assert_true(retention_worm_due(&e, &h, true, 0, 0));
	assert_false(retention_worm_due(&e, &h, false, 0, 100 * DAY));
	e.autocommit_s = 3600;
	assert_false(retention_worm_due(&e, &h, false, 10 * DAY, 10 * DAY + 3599 * S));
	assert_true(retention_worm_due(&e, &h, false, 10 * DAY, 10 * DAY + 3600 * S));
	h.flags = FORMAT_FLAG_WORM;
	assert_false(retention_worm_due(&e, &h, true, 0, 100 * DAY));

	/* the commit itself, persisted in the authenticated header */
	dfd = mk_voldir(f, f->st->tree_fd, "worm");
	write_file(dfd, ring, "a.txt", f->now, 0, "data");
	{
		uint8_t iv[CRYPT_DIRIV_BYTES];
		struct names_enc enc;

		assert_int_equal(names_diriv_load(dfd, iv), 0);
		assert_int_equal(names_encrypt(ring, iv, "a.txt", &enc), 0);
		fd = openat(dfd, enc.backing, O_RDWR);
	}
	assert_true(fd >= 0);
	assert_int_equal(format_file_load(&ff, fd, ring), 0);
	e.retain_min_s = 7 * 86400;
	assert_int_equal(retention_worm_commit(&ff, &e), 0);
	assert_int_equal(format_file_load(&g, fd, ring), 0);
	assert_true(g.hdr.flags & FORMAT_FLAG_WORM);
	assert_int_equal(g.hdr.keep_until_us, f->now + 7 * DAY);
	/* a second commit under a shorter rule keeps the longer date */
	e.retain_min_s = 86400;
	assert_int_equal(retention_worm_commit(&g, &e), 0);
	assert_int_equal(format_file_load(&g, fd, ring), 0);
	assert_int_equal(g.hdr.keep_until_us, f->now + 7 * DAY);
	assert_int_equal(
		retention_check(&e, &g.hdr, f->now + 8 * DAY, RETENTION_OVERWRITE),
		-EPERM);
	close(fd);
	/* an empty file has no header to commit */
	fd = openat(dfd, "empty", O_RDWR | O_CREAT, 0600);
	assert_int_equal(format_file_load(&ff, fd, ring), 0);
	assert_int_equal(retention_worm_commit(&ff, &e), -EINVAL);
	close(fd);
	close(dfd);
}

/* --- holds ------------------------------------------------------------------------ */

struct hold_seen {
	int n;              /* holds listed */
	char path[4][64];   /* their paths */
	char reason[4][64]; /* their reasons */
};

static int on_hold(const char *path, const char *reason, int64_t created, void *arg)
{
	struct hold_seen *h = arg;

	(void)created;
	if (h->n < 4) {
		snprintf(h->path[h->n], 64, "%s", path);
		snprintf(h->reason[h->n], 64, "%s", reason);
	}
	h->n++;
	return 0;
}

static void test_holds(void **state)
{
	struct fixture *f = *state;
	struct retention_holds *h = NULL;
	struct hold_seen hs;
	bool changed = false;
	char cmd[256];

	assert_int_equal(retention_held(f->st, "/a/b"), 0);
	assert_int_equal(retention_hold_set(f->st, "//legal//case-7/", true,
					    "litigation 7", f->now, &changed),
			 0);
	assert_true(changed);
	assert_int_equal(retention_hold_set(f->st, "/legal/case-7", true, "again", f->now,
					    &changed),
			 0);
	assert_false(changed);
	assert_int_equal(retention_held(f->st, "/legal/case-7"), 1);
	assert_int_equal(retention_held(f->st, "/legal/case-7/x/y.pdf"), 1);
	assert_int_equal(retention_held(f->st, "/legal/case-77"), 0);
	assert_int_equal(retention_held(f->st, "/legal"), 0);

	/* bad input */
	assert_int_equal(retention_hold_set(f->st, "relative", true, "r", f->now, NULL),
			 -EINVAL);
	assert_int_equal(retention_hold_set(f->st, "/a/../b", true, "r", f->now, NULL),
			 -EINVAL);
	assert_int_equal(retention_hold_set(f->st, "/a", true, "", f->now, NULL),
			 -EINVAL);
	assert_int_equal(retention_hold_set(f->st, "/a", true, NULL, f->now, NULL),
			 -EINVAL);

	/* listed, decrypted */
	memset(&hs, 0, sizeof(hs));
	assert_int_equal(retention_hold_list(f->st, on_hold, &hs), 0);
	assert_int_equal(hs.n, 1);
	assert_string_equal(hs.path[0], "/legal/case-7");
	assert_string_equal(hs.reason[0], "again");

	/* the path is not in the database in clear */
	snprintf(cmd, sizeof(cmd),
		 "grep -q 'case-7' '%s/custodian.db' '%s/custodian.db-wal'", f->store,
		 f->store);
	assert_int_not_equal(system(cmd), 0);

	/* a hold on / covers everything */
	assert_int_equal(retention_hold_set(f->st, "/", true, "all", f->now, NULL), 0);
	assert_int_equal(retention_holds_load(f->st, &h), 0);
	assert_true(retention_holds_match(h, "/anything/at/all"));
	assert_true(retention_holds_match(h, "/"));
	assert_false(retention_holds_match(h, "not absolute"));
	retention_holds_free(h);
	assert_int_equal(retention_hold_set(f->st, "/", false, NULL, f->now, &changed),
			 0);
	assert_true(changed);
	assert_int_equal(retention_hold_set(f->st, "/", false, NULL, f->now, &changed),
			 0);
	assert_false(changed);
	assert_int_equal(retention_held(f->st, "/anything"), 0);
	assert_false(retention_holds_match(NULL, "/x"));

	/* an edited row is refused, not silently dropped */
	store_close(f->st);
	f->st = NULL;
	snprintf(
		cmd, sizeof(cmd),
		"sqlite3 '%s/custodian.db' \"UPDATE retention_holds SET created_us = 5\"",
		f->store);
	assert_int_equal(system(cmd), 0);
	{
		struct secret *s = unit_secret(f->dir, "pass");

		assert_int_equal(store_open(f->store, false, &f->st), 0);
		assert_int_equal(store_unlock_passphrase(f->st, s), 0);
		secret_free(s);
	}
	assert_int_equal(retention_held(f->st, "/legal/case-7"), -EBADMSG);
	assert_int_equal(retention_hold_list(f->st, on_hold, &hs), -EBADMSG);
	/* lifting it still works (by path hash) */
	assert_int_equal(
		retention_hold_set(f->st, "/legal/case-7", false, NULL, f->now, &changed),
		0);
	assert_true(changed);
	assert_int_equal(retention_held(f->st, "/legal/case-7"), 0);
	/* without keys */
	{
		struct store st2 = *f->st;

		st2.mk = NULL;
		assert_int_equal(retention_held(&st2, "/x"), -EINVAL);
		assert_int_equal(retention_hold_set(&st2, "/x", true, "r", 1, NULL),
				 -EINVAL);
	}
}

/* --- the sweep ------------------------------------------------------------------- */

static const char *files_policy = "[/records]\nretain_min = 30d\nretain_max = 1y\n"
				  "[/records/mod]\nretain_from = modified\n"
				  "[/keep]\nretain_min = 1y\n";

static void test_sweep_files(void **state)
{
	struct fixture *f = *state;
	const struct keyring *ring = keys_volume(f->st->mk);
	struct policy *p = load(files_policy);
	struct retention_stats st;
	struct seen seen;
	char longname[201];
	int rfd, mfd, kfd, i;
	int64_t done = -1, pending = -1;

	rfd = mk_voldir(f, f->st->tree_fd, "records");
	mfd = mk_voldir(f, rfd, "mod");
	kfd = mk_voldir(f, f->st->tree_fd, "keep");
	memset(longname, 'q', 200);
	longname[200] = 0;
	write_file(rfd, ring, "old.txt", f->now - 2 * YEAR, 0, "old");
	write_file(rfd, ring, longname, f->now - 2 * YEAR, 0, "old long");
	write_file(rfd, ring, "new.txt", f->now - 100 * DAY, 0, "new");
	/* retain_max passed, but its header keeps it 5 more years */
	write_file(rfd, ring, "locked.txt", f->now - 2 * YEAR, f->now + 5 * YEAR,
		   "locked");
	/* born long ago, modified recently (mtime now): kept under 'modified' */
	write_file(mfd, ring, "touched.txt", f->now - 2 * YEAR, 0, "t");
	write_file(kfd, ring, "forever.txt", f->now - 20 * YEAR, 0, "f");
	/* garbage: skipped and counted, never erased */
	{
		int fd = openat(rfd, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", O_RDWR | O_CREAT,
				0600);

		assert_int_equal(write(fd, "garbage", 7), 7);
		close(fd);
	}
	assert_int_equal(count_prefix(rfd, ".N"), 1);

	/* dry run: counts, changes nothing */
	assert_int_equal(sweep(f, p, f->now, true, NULL, &seen, &st), 0);
	assert_int_equal(st.files, 7); /* the unreadable one counts */
	assert_int_equal(st.files_due, 2);
	assert_int_equal(st.files_erased, 0);
	assert_int_equal(st.files_unreadable, 1);
	assert_int_equal(st.next_due_us, f->now - 100 * DAY + YEAR);
	i = find(&seen, "/records/old.txt");
	assert_true(i >= 0);
	assert_int_equal(seen.state[i], RETENTION_DUE);
	assert_false(seen.erased[i]);
	i = find(&seen, "/records/locked.txt");
	assert_int_equal(seen.state[i], RETENTION_KEPT);
	i = find(&seen, "/records/mod/touched.txt");
	assert_int_equal(seen.state[i], RETENTION_KEPT);
	assert_true(has_file(rfd, ring, "old.txt"));

	/* the sweep */
	assert_int_equal(sweep(f, p, f->now, false, NULL, &seen, &st), 0);
	assert_int_equal(st.files_erased, 2);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.resumed, 0);
	assert_int_equal(st.bytes_erased, 3 + 8);
	assert_false(has_file(rfd, ring, "old.txt"));
	assert_false(has_file(rfd, ring, longname));
	assert_true(has_file(rfd, ring, "new.txt"));
	assert_true(has_file(rfd, ring, "locked.txt"));
	assert_true(has_file(mfd, ring, "touched.txt"));
	assert_true(has_file(kfd, ring, "forever.txt"));
	assert_int_equal(count_prefix(rfd, ".N"), 0); /* sidecar gone too */
	assert_int_equal(count_prefix(rfd, ".E"), 0);
	assert_int_equal(catalog_erased_count(f->st->cat, &done, &pending), 0);
	assert_int_equal(done, 2);
	assert_int_equal(pending, 0);

	/* again: nothing left to do */
	assert_int_equal(sweep(f, p, f->now, false, NULL, &seen, &st), 0);
	assert_int_equal(st.files_erased, 0);
	assert_int_equal(st.files_due, 0);

	/* years later everything under retain_max goes, /keep stays */
	assert_int_equal(sweep(f, p, f->now + 6 * YEAR, false, NULL, &seen, &st), 0);
	assert_int_equal(st.files_erased, 3);
	assert_true(has_file(kfd, ring, "forever.txt"));
	assert_int_equal(st.next_due_us, 0);

	/* no policy: nothing is ever due */
	assert_int_equal(sweep(f, NULL, f->now + 100 * YEAR, false, NULL, &seen, &st), 0);
	assert_int_equal(st.files_erased, 0);
	assert_true(has_file(kfd, ring, "forever.txt"));

	/* bad arguments */
	{
		struct retention_sweep_opts o;

		memset(&o, 0, sizeof(o));
		assert_int_equal(retention_sweep(f->st, p, &o, &st), -EINVAL);
		assert_int_equal(retention_sweep(f->st, p, NULL, &st), -EINVAL);
	}
	close(rfd);
	close(mfd);
	close(kfd);
	policy_free(p);
}

static const char *subj_policy = "[/customers/*]\nsubject = yes\nretain_max = 2y\n"
				 "retain_from = subject-inactive\n"
				 "[/legal]\nretain_max = 1d\n";

static void test_sweep_subjects_and_holds(void **state)
{
	struct fixture *f = *state;
	struct policy *p = load(subj_policy);
	const char *ids[] = {"C-old", "C-held", "C-active", "C-dirheld", "C-locked"};
	uint8_t hash[CRYPT_HASH_BYTES];
	struct subjects_info info;
	struct retention_stats st;
	struct seen seen;
	struct audit *a = NULL;
	int cfd, lfd, i;
	const int64_t later = f->now + 3 * YEAR;

	cfd = mk_voldir(f, f->st->tree_fd, "customers");
	close(cfd);
	for (size_t k = 0; k < ARRAY_LEN(ids); k++) {
		struct keyring *ring = NULL;
		int sfd, pfd;
		char name[SUBJECTS_BACKING_LEN + 1];

		assert_int_equal(subjects_create(f->st, "/customers", -1, ids[k], 0700,
						 &ring, NULL),
				 0);
		subjects_hash(f->st->mk, ids[k], hash);
		subjects_backing_name(hash, name);
		assert_int_equal(subjects_resolve_dir(f->st, "/customers", &pfd), 0);
		sfd = openat(pfd, name, O_RDONLY | O_DIRECTORY);
		assert_true(sfd >= 0);
		write_file(sfd, ring, "call.wav", f->now, k == 4 ? f->now + 10 * YEAR : 0,
			   "audio");
		close(sfd);
		close(pfd);
		keys_ring_free(ring);
	}
	subjects_hash(f->st->mk, "C-held", hash);
	assert_int_equal(subjects_set_held(f->st, hash, true, "court order", NULL), 0);
	subjects_hash(f->st->mk, "C-active", hash);
	assert_int_equal(subjects_touch(f->st, hash, f->now + 2 * YEAR), 0);
	assert_int_equal(retention_hold_set(f->st, "/customers/C-dirheld", true, "audit",
					    f->now, NULL),
			 0);
	/* a held volume directory */
	lfd = mk_voldir(f, f->st->tree_fd, "legal");
	write_file(lfd, keys_volume(f->st->mk), "memo.txt", f->now - 10 * DAY, 0, "m");
	assert_int_equal(retention_hold_set(f->st, "/legal", true, "case", f->now, NULL),
			 0);

	assert_int_equal(sweep(f, p, later, true, NULL, &seen, &st), 0);
	assert_int_equal(st.subjects, 5);
	assert_int_equal(st.subjects_due, 1);
	assert_int_equal(st.subjects_held, 2);
	assert_int_equal(st.files_held, 3);
	i = find(&seen, "/customers/C-old");
	assert_true(i >= 0);
	assert_int_equal(seen.kind[i], RETENTION_SUBJECT);
	assert_int_equal(seen.state[i], RETENTION_DUE);
	i = find(&seen, "/customers/C-old/call.wav");
	assert_true(seen.with_subject[i]);
	assert_int_equal(seen.state[i], RETENTION_DUE);
	i = find(&seen, "/customers/C-locked");
	assert_int_equal(seen.state[i], RETENTION_KEPT);
	i = find(&seen, "/legal/memo.txt");
	assert_int_equal(seen.state[i], RETENTION_HELD);

	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	assert_int_equal(sweep(f, p, later, false, a, &seen, &st), 0);
	assert_int_equal(audit_flush(a), 0);
	assert_int_equal(st.subjects_shredded, 1);
	assert_int_equal(st.files_erased, 0);
	subjects_hash(f->st->mk, "C-old", hash);
	assert_int_equal(subjects_get(f->st, hash, &info), 0);
	assert_true(info.flags & SUBJECTS_SHREDDED);
	for (size_t k = 1; k < ARRAY_LEN(ids); k++) {
		subjects_hash(f->st->mk, ids[k], hash);
		assert_int_equal(subjects_get(f->st, hash, &info), 0);
		assert_false(info.flags & SUBJECTS_SHREDDED);
	}
	assert_true(has_file(lfd, keys_volume(f->st->mk), "memo.txt"));
	/* lift the directory holds: the memo goes, C-dirheld goes */
	assert_int_equal(retention_hold_set(f->st, "/legal", false, NULL, f->now, NULL),
			 0);
	assert_int_equal(retention_hold_set(f->st, "/customers/C-dirheld", false, NULL,
					    f->now, NULL),
			 0);
	assert_int_equal(sweep(f, p, later, false, a, &seen, &st), 0);
	assert_int_equal(st.files_erased, 1);
	assert_int_equal(st.subjects_shredded, 1);
	assert_false(has_file(lfd, keys_volume(f->st->mk), "memo.txt"));
	assert_int_equal(audit_flush(a), 0);
	assert_int_equal(count_erasure_records(f), 1);
	audit_close(a);
	close(lfd);
	policy_free(p);
}

/* Fails the next pwrite (once armed). */
static int fail_stage = -1;
static ssize_t eio_pwrite(int fd, const void *b, size_t n, off_t off)
{
	(void)fd, (void)b, (void)n, (void)off;
	sys_reset(); /* once: the audit journal must still be writable */
	errno = ENOSPC;
	return -1;
}
static int eio_renameat(int a, const char *b, int c, const char *d)
{
	(void)a, (void)b, (void)c, (void)d;
	sys_reset();
	errno = EIO;
	return -1;
}

static void on_stage(enum retention_stage s, void *arg)
{
	(void)arg;
	if ((int)s == fail_stage && s == RETENTION_STAGE_RECORDED)
		sys.renameat = eio_renameat;
	if ((int)s == fail_stage && s == RETENTION_STAGE_RENAMED)
		sys.pwrite = eio_pwrite;
}

static void test_sweep_interrupted(void **state)
{
	struct fixture *f = *state;
	const struct keyring *ring = keys_volume(f->st->mk);
	struct policy *p = load(files_policy);
	struct retention_sweep_opts o;
	struct retention_stats st;
	struct audit *a = NULL;
	struct seen seen;
	int64_t done, pending;
	int rfd;

	rfd = mk_voldir(f, f->st->tree_fd, "records");
	write_file(rfd, ring, "a.txt", f->now - 2 * YEAR, 0, "aaaa");
	assert_int_equal(audit_open(f->st, NULL, &a), 0);

	/* killed after recording, before the rename (rename fails) */
	memset(&o, 0, sizeof(o));
	memset(&seen, 0, sizeof(seen));
	o.now_us = f->now;
	o.audit = a;
	o.item = on_item;
	o.arg = &seen;
	o.stage = on_stage;
	fail_stage = RETENTION_STAGE_RECORDED;
	assert_int_equal(retention_sweep(f->st, p, &o, &st), 0);
	sys_reset();
	assert_int_equal(st.files_erased, 0);
	assert_int_equal(st.errors, 1);
	assert_int_equal(seen.err[find(&seen, "/records/a.txt")], -EIO);
	assert_true(has_file(rfd, ring, "a.txt"));
	assert_int_equal(catalog_erased_count(f->st->cat, &done, &pending), 0);
	assert_int_equal(pending, 1);

	/* rerun, now killed after the rename, before the overwrite */
	fail_stage = RETENTION_STAGE_RENAMED;
	memset(&seen, 0, sizeof(seen));
	assert_int_equal(retention_sweep(f->st, p, &o, &st), 0);
	sys_reset();
	assert_int_equal(st.errors, 1);
	assert_int_equal(seen.err[find(&seen, "/records/a.txt")], -ENOSPC);
	assert_false(has_file(rfd, ring, "a.txt"));
	assert_int_equal(count_prefix(rfd, ".E"), 1);

	/* dry run reports the pending erasure, touches nothing */
	assert_int_equal(sweep(f, p, f->now, true, NULL, &seen, &st), 0);
	assert_int_equal(seen.n, 1);
	assert_int_equal(seen.state[0], RETENTION_PENDING);
	assert_int_equal(count_prefix(rfd, ".E"), 1);

	/* rerun: finished, counted as resumed */
	fail_stage = -1;
	assert_int_equal(sweep(f, p, f->now, false, a, &seen, &st), 0);
	assert_int_equal(st.resumed, 1);
	assert_int_equal(st.errors, 0);
	assert_int_equal(count_prefix(rfd, ".E"), 0);
	assert_int_equal(catalog_erased_count(f->st->cat, &done, &pending), 0);
	assert_int_equal(done, 1);
	assert_int_equal(pending, 0);
	/* three runs, one erasure, one audit record of it */
	assert_int_equal(audit_flush(a), 0);
	assert_int_equal(count_erasure_records(f), 1);

	/* read-only store: only a dry run */
	{
		struct store st2 = *f->st;

		st2.readonly = true;
		memset(&o, 0, sizeof(o));
		o.now_us = f->now;
		assert_int_equal(retention_sweep(&st2, p, &o, &st), -EROFS);
	}
	audit_close(a);
	close(rfd);
	policy_free(p);
}

/* Stopping from the item callback stops the walk with its value. */
static int stop_item(const struct retention_item *it, void *arg)
{
	(void)it;
	(void)arg;
	return 7;
}

static void test_sweep_stop_and_catalog(void **state)
{
	struct fixture *f = *state;
	struct policy *p = load(files_policy);
	struct retention_sweep_opts o;
	struct retention_stats st;
	struct catalog_erased e, g;
	int rfd = mk_voldir(f, f->st->tree_fd, "records");

	write_file(rfd, keys_volume(f->st->mk), "a.txt", f->now, 0, "a");
	memset(&o, 0, sizeof(o));
	o.now_us = f->now;
	o.dry_run = true;
	o.item = stop_item;
	assert_int_equal(retention_sweep(f->st, p, &o, &st), 7);

	/* catalogue rows */
	memset(&e, 0, sizeof(e));
	memset(e.file_id, 7, sizeof(e.file_id));
	assert_int_equal(catalog_erased_get(f->st->cat, e.file_id, &g), -ENOENT);
	e.erased_us = 5;
	e.audit_seq = 9;
	assert_int_equal(catalog_erased_put(f->st->cat, &e), 0);
	assert_int_equal(catalog_erased_get(f->st->cat, e.file_id, &g), 0);
	assert_int_equal(g.audit_seq, 9);
	assert_false(g.done);
	e.audit_seq = -1;
	assert_int_equal(catalog_erased_put(f->st->cat, &e), -EINVAL);
	{
		struct catalog_hold *h = calloc(1, sizeof(*h));

		assert_int_equal(catalog_hold_put(f->st->cat, h), -EINVAL);
		assert_int_equal(catalog_hold_delete(f->st->cat, h->hash), -ENOENT);
		free(h);
	}
	close(rfd);
	policy_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keep_until_and_check),
		cmocka_unit_test_setup_teardown(test_worm_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_holds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_subjects_and_holds, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sweep_interrupted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep_stop_and_catalog, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
