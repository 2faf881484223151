/*
 * test_audit.c — unit tests for fs/audit.c and fs/catalog_audit.c: the
 * chain builds and verifies; every kind of tampering (done with sqlite3
 * directly on the database, as an attacker would) is named by
 * audit_verify; a crash (SIGKILL of a child holding the log) loses nothing
 * that was appended, and a torn last journal entry is dropped; queries by
 * subject, user, time, operation and outcome; paths never in clear on disk;
 * error paths through the sys table.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "audit.h"
#include "catalog.h"
#include "secret.h"
#include "store.h"
#include "sys.h"

#include "unit_util.h"

static struct keys_kdf fast_kdf;

struct fixture {
	char dir[64];         /* temporary directory holding everything */
	char store[96];       /* the store */
	char db[128];         /* its catalogue */
	char journal[128];    /* its journal */
	struct secret *pass;  /* its passphrase */
	struct store *st;     /* open and unlocked */
	struct audit_who who; /* this process */
};

static struct store *open_store(struct fixture *f)
{
	struct store *st = NULL;

	assert_int_equal(store_open(f->store, false, &st), 0);
	assert_int_equal(store_unlock_passphrase(st, f->pass), 0);
	return st;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char rec[KEYS_RECOVERY_TEXT_MAX];

	if (f == NULL || crypt_init() != 0)
		return -1;
	unit_fast_kdf(&fast_kdf);
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_audit") != 0)
		return -1;
	snprintf(f->store, sizeof(f->store), "%s/st", f->dir);
	snprintf(f->db, sizeof(f->db), "%s/%s", f->store, CATALOG_FILE);
	snprintf(f->journal, sizeof(f->journal), "%s/%s", f->store, AUDIT_JOURNAL_FILE);
	f->pass = unit_secret(f->dir, "correct horse");
	if (store_create(f->store, f->pass, &fast_kdf, rec) != 0)
		return -1;
	f->st = open_store(f);
	audit_who_self(&f->who);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	sys_reset();
	store_close(f->st);
	secret_free(f->pass);
	if (unit_rm_rf(f->dir) != 0)
		return -1;
	free(f);
	return 0;
}

/* An event from this process. */
static struct audit_event ev_of(struct fixture *f, const char *op, const char *path)
{
	struct audit_event ev = {0};

	ev.op = op;
	ev.who = &f->who;
	ev.path = path;
	return ev;
}

static uint64_t append(struct audit *a, const struct audit_event *ev)
{
	uint64_t seq = 0;

	assert_int_equal(audit_append(a, ev, &seq), 0);
	return seq;
}

/* A closed log of n records with varied fields. */
static void build(struct fixture *f, int n)
{
	struct audit *a = NULL;
	uint8_t subj[CRYPT_HASH_BYTES];
	char path[64];

	audit_subject_hash(f->st->mk, "C-10042", subj);
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	for (int i = 1; i <= n; i++) {
		struct audit_event ev;

		snprintf(path, sizeof(path), "/customers/C-10042/file-%d.txt", i);
		ev = ev_of(f, i % 3 ? AUDIT_OP_OPEN : AUDIT_OP_RENAME, path);
		if (i % 3 == 0)
			ev.path2 = "/customers/C-10042/renamed.txt";
		ev.subject = i % 2 ? subj : NULL;
		ev.flags = (uint64_t)i;
		ev.bytes = (uint64_t)i * 100;
		ev.detail = i == 2 ? "rule /customers/*" : NULL;
		assert_int_equal(append(a, &ev), (uint64_t)i);
	}
	audit_close(a);
}

static struct audit_report verify(struct fixture *f, const uint8_t *head)
{
	struct audit_report rep;

	assert_int_equal(audit_verify(f->st->cat, f->st->mk, head, &rep), 0);
	return rep;
}

/* Runs SQL on the catalogue behind custodian's back. */
static void sql(struct fixture *f, const char *fmt, ...)
{
	char q[512];
	sqlite3 *db = NULL;
	char *err = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	/* A running writer may hold the database for a moment. */
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK)
		fail_msg("%s: %s", q, err);
	sqlite3_close(db);
}

/* --- the chain ------------------------------------------------------------------ */

static void test_chain_verifies(void **state)
{
	struct fixture *f = *state;
	struct audit_report rep;
	struct audit *a = NULL;
	uint8_t mac[CRYPT_MAC_BYTES], zero[CRYPT_MAC_BYTES] = {0};
	uint64_t seq;

	/* Empty log. */
	rep = verify(f, NULL);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 0);

	build(f, 30);
	rep = verify(f, NULL);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 30);
	assert_int_equal(rep.head_seq, 30);
	assert_int_equal(rep.meta_seq, 30);

	/* Reopening continues the same chain. */
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	audit_head(a, &seq, mac);
	assert_int_equal(seq, 30);
	assert_memory_equal(mac, rep.head_mac, sizeof(mac));
	{
		struct audit_event ev = ev_of(f, AUDIT_OP_MOUNT, NULL);

		assert_int_equal(append(a, &ev), 31);
	}
	assert_int_equal(audit_flush(a), 0);
	audit_head(a, &seq, mac);
	audit_close(a);
	rep = verify(f, mac);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 31);
	assert_memory_equal(rep.head_mac, mac, sizeof(mac));

	/* The first record links to 32 zero bytes. */
	{
		struct catalog_audit_filter flt;
		struct catalog_audit_iter *it = NULL;
		struct catalog_audit_row *r = malloc(sizeof(*r));

		catalog_audit_filter_all(&flt);
		assert_int_equal(catalog_audit_query(f->st->cat, &flt, &it), 0);
		assert_int_equal(catalog_audit_next(it, r), 1);
		assert_int_equal(r->seq, 1);
		assert_memory_equal(r->prev, zero, sizeof(zero));
		assert_int_equal(audit_row_mac(keys_master_key(f->st->mk, KEYS_AUDIT),
					       zero, r, mac),
				 0);
		assert_memory_equal(mac, r->mac, sizeof(mac));
		/* A different key gives a different MAC. */
		assert_int_equal(
			audit_row_mac(keys_master_key(f->st->mk, KEYS_CATALOG_MAC), zero,
				      r, mac),
			0);
		assert_memory_not_equal(mac, r->mac, sizeof(mac));
		/* Out-of-range rows are refused. */
		r->uid = -1;
		assert_int_equal(audit_row_mac(zero, zero, r, mac), -EINVAL);
		catalog_audit_iter_free(it);
		free(r);
	}
}

static void expect_verdict(struct fixture *f, enum audit_verdict v, uint64_t seq)
{
	struct audit_report rep = verify(f, NULL);

	assert_int_equal(rep.verdict, v);
	assert_int_equal(rep.seq, seq);
}

static void test_tamper_edit_field(void **state)
{
	struct fixture *f = *state;

	build(f, 10);
	sql(f, "UPDATE audit SET uid = uid + 1 WHERE seq = 4");
	expect_verdict(f, AUDIT_BAD_MAC, 4);
}

static void test_tamper_edit_each_column(void **state)
{
	static const char *const edits[] = {
		"ts_us = ts_us + 1",
		"op = 'close'",
		"outcome = 13",
		"gid = gid + 1",
		"groups = '0'",
		"auid = 7",
		"ses = 7",
		"pid = pid + 1",
		"comm = 'evil'",
		"exe = '/bin/evil'",
		"subject = zeroblob(32)",
		"subject = NULL",
		"path = NULL",
		"path2 = x'00'",
		"flags = 99",
		"bytes = 1",
		"count = 5",
		"ref = 2",
		"detail = 'x'",
		"mac = zeroblob(32)",
		"uid = 'text'",
		"path = substr(path, 1, 20)",
	};
	struct fixture *f = *state;

	build(f, 6);
	sql(f, "CREATE TABLE saved AS SELECT * FROM audit WHERE seq = 3");
	for (size_t i = 0; i < ARRAY_LEN(edits); i++) {
		sql(f, "UPDATE audit SET %s WHERE seq = 3", edits[i]);
		expect_verdict(f, AUDIT_BAD_MAC, 3);
		sql(f, "DELETE FROM audit WHERE seq = 3; INSERT INTO audit SELECT * FROM "
		       "saved");
		expect_verdict(f, AUDIT_OK, 0);
	}
}

static void test_tamper_delete_middle(void **state)
{
	struct fixture *f = *state;

	build(f, 10);
	sql(f, "DELETE FROM audit WHERE seq = 5");
	expect_verdict(f, AUDIT_GAP, 5);
	sql(f, "DELETE FROM audit WHERE seq <= 2");
	expect_verdict(f, AUDIT_GAP, 1);
}

static void test_tamper_delete_tail(void **state)
{
	struct fixture *f = *state;
	struct audit_report rep;
	struct audit *a = NULL;

	build(f, 10);
	sql(f, "DELETE FROM audit WHERE seq >= 9");
	expect_verdict(f, AUDIT_TRUNCATED, 9);
	/* Everything removed. */
	sql(f, "DELETE FROM audit");
	rep = verify(f, NULL);
	assert_int_equal(rep.verdict, AUDIT_TRUNCATED);
	assert_int_equal(rep.seq, 1);
	assert_int_equal(rep.meta_seq, 10);

	/* A writer continues after the committed head, so the removal stays
	 * visible instead of being papered over. */
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	{
		struct audit_event ev = ev_of(f, AUDIT_OP_MOUNT, NULL);

		assert_int_equal(append(a, &ev), 11);
	}
	audit_close(a);
	expect_verdict(f, AUDIT_GAP, 1);
}

static void test_tamper_reorder(void **state)
{
	struct fixture *f = *state;

	build(f, 10);
	sql(f, "UPDATE audit SET seq = -3 WHERE seq = 3;"
	       "UPDATE audit SET seq = 3 WHERE seq = 4;"
	       "UPDATE audit SET seq = 4 WHERE seq = -3");
	expect_verdict(f, AUDIT_BAD_MAC, 3);
}

static void test_tamper_insert(void **state)
{
	struct fixture *f = *state;

	build(f, 10);
	/* A forged record at the end (copied, with a made-up MAC). */
	sql(f, "INSERT INTO audit SELECT seq + 1, ts_us, op, outcome, uid, gid, groups, "
	       "auid,"
	       " ses, pid, comm, exe, subject, path, path2, flags, bytes, count, ref,"
	       " detail, mac, randomblob(32) FROM audit WHERE seq = 10");
	expect_verdict(f, AUDIT_BAD_MAC, 11);
	sql(f, "DELETE FROM audit WHERE seq = 11");
	expect_verdict(f, AUDIT_OK, 0);
	/* One inserted in the middle, later records renumbered. */
	sql(f, "UPDATE audit SET seq = seq + 100 WHERE seq >= 5;"
	       "UPDATE audit SET seq = seq - 99 WHERE seq >= 100;"
	       "INSERT INTO audit SELECT 5, ts_us, op, outcome, uid, gid, groups, auid,"
	       " ses, pid, comm, exe, subject, path, path2, flags, bytes, count, ref,"
	       " detail, prev, mac FROM audit WHERE seq = 4");
	expect_verdict(f, AUDIT_BAD_MAC, 5);
}

static void test_tamper_prev(void **state)
{
	struct fixture *f = *state;

	build(f, 10);
	sql(f, "UPDATE audit SET prev = zeroblob(32) WHERE seq = 6");
	expect_verdict(f, AUDIT_BAD_PREV, 6);
}

static void test_verify_head(void **state)
{
	struct fixture *f = *state;
	struct audit_report rep;
	uint8_t mac7[CRYPT_MAC_BYTES], mac10[CRYPT_MAC_BYTES], junk[CRYPT_MAC_BYTES];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	build(f, 10);
	rep = verify(f, NULL);
	memcpy(mac10, rep.head_mac, sizeof(mac10));
	crypt_random(junk, sizeof(junk));
	rep = verify(f, junk);
	assert_int_equal(rep.verdict, AUDIT_HEAD_MISSING);
	rep = verify(f, mac10);
	assert_int_equal(rep.verdict, AUDIT_OK);

	/* Remove the tail and rewrite the meta head to match: undetectable
	 * by the chain alone, detected against a head kept elsewhere. */
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT mac FROM audit WHERE seq = 7", -1,
					    &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	memcpy(mac7, sqlite3_column_blob(st, 0), sizeof(mac7));
	sqlite3_finalize(st);
	sqlite3_close(db);
	sql(f, "DELETE FROM audit WHERE seq > 7;"
	       "UPDATE meta SET value = x'0000000000000007' || (SELECT mac FROM audit"
	       " WHERE seq = 7) WHERE key = 'audit_head'");
	rep = verify(f, NULL);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 7);
	assert_memory_equal(rep.head_mac, mac7, sizeof(mac7));
	rep = verify(f, mac10);
	assert_int_equal(rep.verdict, AUDIT_HEAD_MISSING);
	rep = verify(f, mac7);
	assert_int_equal(rep.verdict, AUDIT_OK);

	/* A malformed meta head is damage. */
	sql(f, "UPDATE meta SET value = x'01' WHERE key = 'audit_head'");
	assert_int_equal(audit_verify(f->st->cat, f->st->mk, NULL, &rep), -EIO);
}

static void test_verify_wrong_key(void **state)
{
	struct fixture *f = *state;
	struct keys_master *other = NULL;
	struct audit_report rep;

	build(f, 3);
	assert_int_equal(keys_master_generate(&other), 0);
	assert_int_equal(audit_verify(f->st->cat, other, NULL, &rep), 0);
	assert_int_equal(rep.verdict, AUDIT_BAD_MAC);
	assert_int_equal(rep.seq, 1);
	keys_master_free(other);
}

/* --- durability ----------------------------------------------------------------- */

/* In a child: opens the log (no commit for 10 s), appends n records,
 * sends its head through the pipe and dies by SIGKILL. */
static void crash_child(struct fixture *f, int n, uint8_t head[CRYPT_MAC_BYTES])
{
	int p[2], status;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct audit_options o = {.batch_ms = 10000};
		struct store *st = open_store(f);
		struct audit *a = NULL;
		uint8_t mac[CRYPT_MAC_BYTES];
		uint64_t seq;

		if (audit_open(st, &o, &a) != 0)
			_exit(3);
		for (int i = 0; i < n; i++) {
			struct audit_event ev = ev_of(f, AUDIT_OP_OPEN, "/a/b");

			if (audit_append(a, &ev, &seq) != 0)
				_exit(4);
		}
		audit_head(a, &seq, mac);
		if (write(p[1], mac, sizeof(mac)) != (ssize_t)sizeof(mac))
			_exit(5);
		raise(SIGKILL);
		_exit(6);
	}
	close(p[1]);
	assert_int_equal(read(p[0], head, CRYPT_MAC_BYTES), CRYPT_MAC_BYTES);
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

static int64_t count_rows(struct fixture *f)
{
	int64_t last;
	uint8_t mac[CRYPT_MAC_BYTES];

	assert_int_equal(catalog_audit_last(f->st->cat, &last, mac), 0);
	return last;
}

static off_t file_size(const char *path)
{
	struct stat sb;

	assert_int_equal(stat(path, &sb), 0);
	return sb.st_size;
}

/* Where the journal's entries end: one past its last non-zero byte (the
 * open log keeps the file preallocated with zeros after them). */
static off_t data_end(const char *path)
{
	uint8_t buf[4096];
	off_t end = 0, off = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i])
				end = off + i + 1;
		off += n;
	}
	close(fd);
	return end;
}

/* Zeroes n bytes of path at off (what a torn mapped write leaves). */
static void zero_at(const char *path, off_t off, size_t n)
{
	uint8_t z[64] = {0};
	int fd = open(path, O_WRONLY);

	assert_true(fd >= 0 && n <= sizeof(z));
	assert_int_equal(pwrite(fd, z, n, off), (ssize_t)n);
	close(fd);
}

static void test_crash_replay(void **state)
{
	struct fixture *f = *state;
	uint8_t head[CRYPT_MAC_BYTES];
	struct audit_report rep;
	struct audit *a = NULL;
	uint64_t recs;
	bool locked;

	build(f, 3);
	crash_child(f, 5, head);
	/* Nothing committed: the records are only in the journal. */
	assert_int_equal(count_rows(f), 3);
	assert_true(file_size(f->journal) > 0);
	assert_int_equal(audit_journal_peek(f->store, &recs, &locked), 0);
	assert_int_equal(recs, 5);
	assert_false(locked);

	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	/* While open, the journal is locked. */
	assert_int_equal(audit_journal_peek(f->store, &recs, &locked), 0);
	assert_true(locked);
	assert_int_equal(count_rows(f), 8);
	/* Replayed: the journal holds no record (zeros, kept allocated). */
	assert_int_equal(data_end(f->journal), 0);
	{
		struct audit_event ev = ev_of(f, AUDIT_OP_MOUNT, NULL);

		assert_int_equal(append(a, &ev), 9);
	}
	audit_close(a);
	rep = verify(f, head);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 9);
}

static void test_crash_torn_tail(void **state)
{
	struct fixture *f = *state;
	uint8_t head[CRYPT_MAC_BYTES];
	struct audit_report rep;
	struct audit *a = NULL;
	off_t sz;

	crash_child(f, 5, head);
	/* The last write was torn by the crash: the end of the last entry
	 * never made it (a mapped append stopped part way). */
	sz = data_end(f->journal);
	assert_true(sz > 10);
	zero_at(f->journal, sz - 10, 10);
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	audit_close(a);
	assert_int_equal(count_rows(f), 4);
	rep = verify(f, head);
	assert_int_equal(rep.verdict, AUDIT_HEAD_MISSING);
	assert_int_equal(rep.records, 4);
}

static void test_crash_zero_tail(void **state)
{
	struct fixture *f = *state;
	uint8_t head[CRYPT_MAC_BYTES], zeros[100] = {0};
	struct audit_report rep;
	struct audit *a = NULL;
	int fd;

	crash_child(f, 5, head);
	/* A file system may leave zeros after a power loss. */
	fd = open(f->journal, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, zeros, sizeof(zeros)), sizeof(zeros));
	close(fd);
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	audit_close(a);
	rep = verify(f, head);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 5);
}

/* Flips one byte of the journal at off. */
static void flip(const char *path, off_t off)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void test_journal_damaged(void **state)
{
	struct fixture *f = *state;
	uint8_t head[CRYPT_MAC_BYTES];
	struct audit *a = NULL;
	off_t sz;

	crash_child(f, 4, head);
	sz = data_end(f->journal);
	/* A byte inside the second record: its MAC fails. */
	flip(f->journal, sz / 4 + sz / 8);
	assert_int_equal(audit_open(f->st, NULL, &a), -EBADMSG);
	assert_null(a);
	flip(f->journal, sz / 4 + sz / 8);
	/* Bad magic in the middle. */
	flip(f->journal, 0);
	assert_int_equal(audit_open(f->st, NULL, &a), -EBADMSG);
	flip(f->journal, 0);
	/* A journal that does not continue the chain in the catalogue. */
	sql(f, "INSERT INTO meta(key, value) VALUES('audit_head',"
	       " x'0000000000000000' || zeroblob(32))"
	       " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
	sql(f, "INSERT INTO audit VALUES(1, 0, 'mount', 0, 0, 0, '', 0, 0, 0, '', '',"
	       " NULL, NULL, NULL, 0, 0, 0, 0, '', zeroblob(32), zeroblob(32))");
	assert_int_equal(audit_open(f->st, NULL, &a), -EBADMSG);
	sql(f, "DELETE FROM audit");
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	audit_close(a);
	assert_int_equal(count_rows(f), 4);
}

/* --- queries ---------------------------------------------------------------------- */

/* seqs returned by a query, as a string "1,2,3". */
static char *query(struct fixture *f, const struct catalog_audit_filter *flt)
{
	static char out[1024];
	struct catalog_audit_iter *it = NULL;
	struct catalog_audit_row *r = malloc(sizeof(*r));
	size_t o = 0;
	int rc;

	out[0] = 0;
	assert_int_equal(catalog_audit_query(f->st->cat, flt, &it), 0);
	while ((rc = catalog_audit_next(it, r)) == 1)
		o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%lld", o ? "," : "",
				      (long long)r->seq);
	assert_int_equal(rc, 0);
	catalog_audit_iter_free(it);
	free(r);
	return out;
}

static void test_queries(void **state)
{
	struct fixture *f = *state;
	struct catalog_audit_filter flt;
	struct audit *a = NULL;
	uint8_t sa[CRYPT_HASH_BYTES], sb[CRYPT_HASH_BYTES];
	int64_t ts[13] = {0};
	struct audit_who other = f->who;

	other.uid = 2001;
	audit_subject_hash(f->st->mk, "C-1", sa);
	audit_subject_hash(f->st->mk, "C-2", sb);
	assert_memory_not_equal(sa, sb, sizeof(sa));
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	/* 12 records: subject A on 1-4, B on 5-8, none after; uid 2001 on
	 * even seqs; denials on 3, 6, 9, 12; ops by seq % 3: 0 open, 1 close, 2 deny. */
	for (int i = 1; i <= 12; i++) {
		static const char *const ops[] = {AUDIT_OP_OPEN, AUDIT_OP_CLOSE,
						  AUDIT_OP_DENY};
		struct audit_event ev = ev_of(f, ops[i % 3], "/x");

		ev.subject = i <= 4 ? sa : i <= 8 ? sb : NULL;
		ev.who = i % 2 ? &f->who : &other;
		ev.outcome = i % 3 == 0 ? EACCES : 0;
		assert_int_equal(append(a, &ev), (uint64_t)i);
		ts[i] = 0;
		usleep(1500);
	}
	assert_int_equal(audit_flush(a), 0);
	audit_close(a);
	{
		/* The time of each record, to query by. */
		struct catalog_audit_iter *it = NULL;
		struct catalog_audit_row *r = malloc(sizeof(*r));

		catalog_audit_filter_all(&flt);
		assert_int_equal(catalog_audit_query(f->st->cat, &flt, &it), 0);
		while (catalog_audit_next(it, r) == 1)
			ts[r->seq] = r->ts_us;
		catalog_audit_iter_free(it);
		free(r);
		for (int i = 2; i <= 12; i++)
			assert_true(ts[i] > ts[i - 1]);
	}

	catalog_audit_filter_all(&flt);
	assert_string_equal(query(f, &flt), "1,2,3,4,5,6,7,8,9,10,11,12");
	flt.subject = sa;
	assert_string_equal(query(f, &flt), "1,2,3,4");
	flt.subject = sb;
	assert_string_equal(query(f, &flt), "5,6,7,8");
	flt.uid = 2001;
	assert_string_equal(query(f, &flt), "6,8");
	catalog_audit_filter_all(&flt);
	flt.uid = f->who.uid;
	assert_string_equal(query(f, &flt), "1,3,5,7,9,11");
	catalog_audit_filter_all(&flt);
	flt.denied = 1;
	assert_string_equal(query(f, &flt), "3,6,9,12");
	catalog_audit_filter_all(&flt);
	flt.op = AUDIT_OP_CLOSE;
	assert_string_equal(query(f, &flt), "1,4,7,10");
	flt.op = "nosuch";
	assert_string_equal(query(f, &flt), "");
	catalog_audit_filter_all(&flt);
	flt.since_us = ts[3];
	flt.until_us = ts[6];
	assert_string_equal(query(f, &flt), "3,4,5,6");
	flt.until_us = ts[6] - 1;
	flt.denied = 1;
	assert_string_equal(query(f, &flt), "3");
	catalog_audit_filter_all(&flt);
	flt.after_seq = 10;
	assert_string_equal(query(f, &flt), "11,12");
	flt.subject = sa;
	assert_string_equal(query(f, &flt), "");
}

/* --- secrecy ------------------------------------------------------------------------ */

/* 1 if needle occurs in the file. */
static int file_has(const char *path, const char *needle)
{
	FILE *fp = fopen(path, "rb");
	size_t n = strlen(needle), got;
	char *buf;
	int found = 0;

	if (!fp)
		return 0;
	buf = malloc(64 << 20);
	assert_non_null(buf);
	got = fread(buf, 1, 64 << 20, fp);
	fclose(fp);
	for (size_t i = 0; i + n <= got && !found; i++)
		found = memcmp(buf + i, needle, n) == 0;
	free(buf);
	return found;
}

static void test_paths_sealed(void **state)
{
	struct fixture *f = *state;
	const char *secret = "/customers/C-77123/Jan-Kowalski-medical.pdf";
	struct audit_options o = {.batch_ms = 10000};
	struct catalog_audit_filter flt;
	struct catalog_audit_iter *it = NULL;
	struct catalog_audit_row *r = malloc(sizeof(*r));
	struct keyring *ring = NULL;
	uint8_t root[CRYPT_KEY_BYTES];
	struct audit *a = NULL;
	char buf[256], wal[160];
	struct audit_event ev = ev_of(f, AUDIT_OP_RENAME, secret);

	ev.path2 = "/customers/C-77123/Jan-Kowalski-2.pdf";
	ev.detail = "no names here";
	assert_int_equal(audit_open(f->st, &o, &a), 0);
	assert_int_equal(append(a, &ev), 1);
	/* In the journal before the commit... */
	assert_true(file_size(f->journal) > 0);
	assert_false(file_has(f->journal, "Kowalski"));
	assert_false(file_has(f->journal, "C-77123"));
	assert_true(file_has(f->journal, "no names here"));
	audit_close(a);
	/* ...and in the catalogue after it. */
	snprintf(wal, sizeof(wal), "%s-wal", f->db);
	assert_false(file_has(f->db, "Kowalski"));
	assert_false(file_has(wal, "Kowalski"));
	assert_false(file_has(f->db, "C-77123"));
	assert_true(file_has(f->db, "no names here") || file_has(wal, "no names here"));

	catalog_audit_filter_all(&flt);
	assert_int_equal(catalog_audit_query(f->st->cat, &flt, &it), 0);
	assert_int_equal(catalog_audit_next(it, r), 1);
	catalog_audit_iter_free(it);
	assert_int_equal(audit_path_open(keys_volume(f->st->mk), r->path, r->path_len,
					 buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, secret);
	assert_int_equal(audit_path_open(keys_volume(f->st->mk), r->path2, r->path2_len,
					 buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, "/customers/C-77123/Jan-Kowalski-2.pdf");
	assert_int_equal(
		audit_path_open(keys_volume(f->st->mk), r->path, r->path_len, buf, 10),
		-ENAMETOOLONG);
	assert_int_equal(
		audit_path_open(keys_volume(f->st->mk), r->path, 3, buf, sizeof(buf)),
		-EIO);
	/* Another keyring (a shredded subject's, say) cannot open it. */
	crypt_random(root, sizeof(root));
	assert_int_equal(keys_ring_derive(root, &ring), 0);
	assert_int_equal(audit_path_open(ring, r->path, r->path_len, buf, sizeof(buf)),
			 -EIO);

	/* A path sealed under a subject ring opens only with it. */
	ev.ring = ring;
	ev.path2 = NULL;
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	assert_int_equal(append(a, &ev), 2);
	audit_close(a);
	flt.after_seq = 1;
	assert_int_equal(catalog_audit_query(f->st->cat, &flt, &it), 0);
	assert_int_equal(catalog_audit_next(it, r), 1);
	catalog_audit_iter_free(it);
	assert_int_equal(r->path2_len, 0);
	assert_int_equal(audit_path_open(keys_volume(f->st->mk), r->path, r->path_len,
					 buf, sizeof(buf)),
			 -EIO);
	assert_int_equal(audit_path_open(ring, r->path, r->path_len, buf, sizeof(buf)),
			 0);
	assert_string_equal(buf, secret);
	keys_ring_free(ring);
	free(r);
	assert_int_equal(verify(f, NULL).verdict, AUDIT_OK);
}

/* --- refusals and injected failures --------------------------------------------------
 */

static void test_bad_events(void **state)
{
	struct fixture *f = *state;
	struct audit *a = NULL;
	struct audit_event ev;
	char *longpath = malloc(AUDIT_PATH_MAX + 2);
	char longdetail[CATALOG_AUDIT_DETAIL_MAX + 1];

	memset(longpath, 'a', AUDIT_PATH_MAX + 1);
	longpath[0] = '/';
	longpath[AUDIT_PATH_MAX + 1] = 0;
	memset(longdetail, 'd', sizeof(longdetail) - 1);
	longdetail[sizeof(longdetail) - 1] = 0;
	assert_int_equal(audit_open(f->st, NULL, &a), 0);

	ev = ev_of(f, "an-operation-too-long", NULL);
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, "", NULL);
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, NULL, NULL);
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, AUDIT_OP_OPEN, longpath);
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, AUDIT_OP_OPEN, "/ok");
	ev.path2 = longpath;
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, AUDIT_OP_OPEN, NULL);
	ev.detail = longdetail;
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, AUDIT_OP_OPEN, NULL);
	ev.outcome = -1;
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, AUDIT_OP_OPEN, NULL);
	ev.who = NULL;
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	ev = ev_of(f, AUDIT_OP_OPEN, NULL);
	ev.bytes = UINT64_MAX;
	assert_int_equal(audit_append(a, &ev, NULL), -EINVAL);
	/* Longest path accepted. */
	longpath[AUDIT_PATH_MAX] = 0;
	ev = ev_of(f, AUDIT_OP_OPEN, longpath);
	assert_int_equal(append(a, &ev), 1);
	audit_close(a);
	free(longpath);
	assert_int_equal(verify(f, NULL).records, 1);
}

static void test_open_refusals(void **state)
{
	struct fixture *f = *state;
	struct store *locked = NULL, *ro = NULL;
	struct audit *a = NULL, *b = NULL;

	assert_int_equal(audit_open(NULL, NULL, &a), -EINVAL);
	assert_int_equal(store_open(f->store, false, &locked), 0);
	assert_int_equal(audit_open(locked, NULL, &a), -EINVAL);
	store_close(locked);
	assert_int_equal(store_open(f->store, true, &ro), 0);
	assert_int_equal(store_unlock_passphrase(ro, f->pass), 0);
	assert_int_equal(audit_open(ro, NULL, &a), -EROFS);
	store_close(ro);

	/* One writer per store: a second opener is told it is busy. */
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	assert_int_equal(audit_open(f->st, NULL, &b), -EBUSY);
	assert_null(b);
	audit_close(a);
	assert_int_equal(audit_open(f->st, NULL, &b), 0);
	audit_close(b);
	audit_close(NULL);

	/* The journal cannot be created. */
	unlink(f->journal);
	assert_int_equal(mkdir(f->journal, 0700), 0);
	assert_int_equal(audit_open(f->st, NULL, &a), -EISDIR);
	assert_null(a);
	assert_int_equal(rmdir(f->journal), 0);
}

static int fail_after;
static int fail_errno;

static ssize_t pwrite_fail(int fd, const void *buf, size_t n, off_t off)
{
	if (fail_after-- <= 0) {
		errno = fail_errno;
		return -1;
	}
	return pwrite(fd, buf, n, off);
}

/* Writes half and then fails, as a full disk does. */
static ssize_t pwrite_short(int fd, const void *buf, size_t n, off_t off)
{
	static int calls;

	if (calls++ % 2 == 0)
		return pwrite(fd, buf, n / 2, off);
	errno = ENOSPC;
	return -1;
}

static int ftruncate_fail(int fd, off_t len)
{
	(void)fd;
	(void)len;
	errno = EIO;
	return -1;
}

static int fdatasync_fail(int fd)
{
	(void)fd;
	errno = EIO;
	return -1;
}

static void *mmap_fail(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	(void)addr;
	(void)len;
	(void)prot;
	(void)flags;
	(void)fd;
	(void)off;
	errno = ENOMEM;
	return MAP_FAILED;
}

/* Appends that go through pwrite (the journal could not be mapped, or a
 * burst ran past the mapped part). */
static void test_journal_write_fails(void **state)
{
	struct fixture *f = *state;
	struct audit *a = NULL;
	struct audit_event ev = ev_of(f, AUDIT_OP_OPEN, "/p");

	sys.mmap = mmap_fail;
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	/* Not mapped: nothing preallocated is left behind. */
	assert_int_equal(file_size(f->journal), 0);
	assert_int_equal(append(a, &ev), 1);
	/* A full disk: the operation is refused, the chain is untouched. */
	fail_after = 0;
	fail_errno = ENOSPC;
	sys.pwrite = pwrite_fail;
	assert_int_equal(audit_append(a, &ev, NULL), -ENOSPC);
	fail_errno = EIO;
	assert_int_equal(audit_append(a, &ev, NULL), -EIO);
	/* Half an entry written: it is cut off again. */
	sys.pwrite = pwrite_short;
	assert_int_equal(audit_append(a, &ev, NULL), -ENOSPC);
	sys_reset();
	assert_int_equal(append(a, &ev), 2);
	/* If the cut fails too, the log refuses everything after. */
	sys.pwrite = pwrite_short;
	sys.ftruncate = ftruncate_fail;
	assert_int_equal(audit_append(a, &ev, NULL), -ENOSPC);
	sys_reset();
	assert_int_equal(audit_append(a, &ev, NULL), -EIO);
	audit_close(a);
	/* Reopening recovers (the torn entry is the last one). */
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	assert_int_equal(append(a, &ev), 3);
	audit_close(a);
	assert_int_equal(verify(f, NULL).verdict, AUDIT_OK);
	assert_int_equal(verify(f, NULL).records, 3);
}

/* The mapped journal: appends need no system call (a failing pwrite does
 * not touch them), committed entries are zeroed, a clean close empties
 * the file.  If the preallocation fails (a full disk), the log still
 * opens and each append reports the error itself. */
static void test_journal_mapped(void **state)
{
	struct fixture *f = *state;
	struct audit *a = NULL;
	struct audit_event ev = ev_of(f, AUDIT_OP_OPEN, "/p");
	struct audit_options o = {.batch_ms = 10000};

	assert_int_equal(audit_open(f->st, &o, &a), 0);
	assert_true(file_size(f->journal) > 0);
	fail_after = 0;
	fail_errno = ENOSPC;
	sys.pwrite = pwrite_fail;
	for (int i = 1; i <= 3; i++)
		assert_int_equal(append(a, &ev), (uint64_t)i);
	sys_reset();
	assert_true(data_end(f->journal) > 0);
	assert_int_equal(audit_flush(a), 0);
	assert_int_equal(data_end(f->journal), 0);
	assert_true(file_size(f->journal) > 0);
	audit_close(a);
	assert_int_equal(file_size(f->journal), 0);

	/* No room for the preallocation. */
	fail_after = 0;
	sys.pwrite = pwrite_fail;
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	assert_int_equal(file_size(f->journal), 0);
	assert_int_equal(audit_append(a, &ev, NULL), -ENOSPC);
	sys_reset();
	assert_int_equal(append(a, &ev), 4);
	audit_close(a);
	assert_int_equal(verify(f, NULL).verdict, AUDIT_OK);
	assert_int_equal(verify(f, NULL).records, 4);
}

/* After a power loss the disk may hold, past the last live entry, older
 * entries the log had wiped only in memory, whole or in part.  They are
 * committed already: replay skips them and mounts. */
static void test_journal_stale_tail(void **state)
{
	struct fixture *f = *state;
	uint8_t head[CRYPT_MAC_BYTES], *old;
	struct audit *a = NULL;
	struct audit_report rep;
	off_t n1, n2;
	int fd;

	crash_child(f, 3, head);
	n1 = data_end(f->journal);
	assert_true(n1 > 20);
	old = malloc((size_t)n1);
	assert_non_null(old);
	fd = open(f->journal, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, old, (size_t)n1, 0), (ssize_t)n1);
	close(fd);
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	audit_close(a);
	assert_int_equal(count_rows(f), 3);

	crash_child(f, 2, head);
	n2 = data_end(f->journal);
	fd = open(f->journal, O_WRONLY);
	assert_true(fd >= 0);
	/* Whole stale entries 1-3, then a remnant cut into the first one. */
	assert_int_equal(pwrite(fd, old, (size_t)n1, n2), (ssize_t)n1);
	assert_int_equal(pwrite(fd, old + 10, (size_t)n1 - 10, n2 + n1),
			 (ssize_t)n1 - 10);
	close(fd);
	free(old);
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	audit_close(a);
	assert_int_equal(count_rows(f), 5);
	rep = verify(f, head);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 5);
}

/* The writer cannot commit (a row with the seq it needs is in the way):
 * the records stay journaled and queued, audit_flush reports the error,
 * appends go on, and once the obstacle is gone the retry commits the
 * failed batch and everything queued after it, in order. */
static void test_writer_retry(void **state)
{
	struct fixture *f = *state;
	struct audit_options o = {.batch_ms = 1};
	struct audit *a = NULL;
	struct audit_event ev = ev_of(f, AUDIT_OP_OPEN, "/p");
	struct audit_report rep;
	int rc = -1;

	assert_int_equal(audit_open(f->st, &o, &a), 0);
	assert_int_equal(append(a, &ev), 1);
	assert_int_equal(audit_flush(a), 0);
	sql(f,
	    "INSERT INTO audit(seq, ts_us, op, outcome, uid, gid, groups, auid, ses,"
	    " pid, comm, exe, flags, bytes, count, ref, detail, prev, mac) VALUES(3, 0,"
	    " 'open', 0, 0, 0, '', 0, 0, 0, '', '', 0, 0, 0, 0, '', x'00', x'00')");
	assert_int_equal(append(a, &ev), 2);
	assert_int_equal(append(a, &ev), 3);
	assert_int_equal(audit_flush(a), -EEXIST);
	/* Queued behind the failed batch while it waits for its retry. */
	for (int i = 4; i <= 40; i++)
		assert_int_equal(append(a, &ev), (uint64_t)i);
	assert_int_equal(audit_flush(a), -EEXIST);
	sql(f, "DELETE FROM audit WHERE seq = 3");
	for (int i = 0; i < 100 && rc != 0; i++) {
		rc = audit_flush(a);
		if (rc)
			usleep(50 * 1000);
	}
	assert_int_equal(rc, 0);
	assert_int_equal(append(a, &ev), 41);
	audit_close(a);
	assert_int_equal(audit_verify(f->st->cat, f->st->mk, NULL, &rep), 0);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 41);
	assert_int_equal(rep.meta_seq, 41);
}

static void test_sync_full(void **state)
{
	struct fixture *f = *state;
	struct audit_options o = {0};
	struct audit *a = NULL;
	struct audit_event ev = ev_of(f, AUDIT_OP_OPEN, "/p");

	assert_int_equal(audit_option(&o, "audit_sync", "full"), 0);
	assert_int_equal(o.sync, AUDIT_SYNC_FULL);
	assert_int_equal(audit_open(f->st, &o, &a), 0);
	for (int i = 1; i <= 20; i++)
		assert_int_equal(append(a, &ev), (uint64_t)i);
	sys.fdatasync = fdatasync_fail;
	assert_int_equal(audit_append(a, &ev, NULL), -EIO);
	sys_reset();
	audit_close(a);
	/* The record whose sync failed was still written: it is kept. */
	assert_int_equal(verify(f, NULL).records, 21);
}

static void test_options(void **state)
{
	struct audit_options o = {0};

	(void)state;
	assert_int_equal(audit_option(&o, "audit_sync", "normal"), 0);
	assert_int_equal(o.sync, AUDIT_SYNC_NORMAL);
	assert_int_equal(audit_option(&o, "audit_sync", "fast"), -EINVAL);
	assert_int_equal(audit_option(&o, "audit_sync", NULL), -EINVAL);
	assert_int_equal(audit_option(&o, "audit_syslog", "yes"), 0);
	assert_true(o.syslog);
	assert_int_equal(audit_option(&o, "audit_syslog", "no"), 0);
	assert_false(o.syslog);
	assert_int_equal(audit_option(&o, "audit_syslog", NULL), 0);
	assert_true(o.syslog);
	assert_int_equal(audit_option(&o, "audit_syslog", "maybe"), -EINVAL);
	assert_int_equal(audit_option(&o, "audit_batch_ms", "5"), 0);
	assert_int_equal(o.batch_ms, 5);
	assert_int_equal(audit_option(&o, "audit_batch_ms", "0"), -EINVAL);
	assert_int_equal(audit_option(&o, "audit_batch_ms", "x"), -EINVAL);
	assert_int_equal(audit_option(&o, "audit_batch_ms", "99999"), -EINVAL);
	assert_int_equal(audit_option(&o, "allow_other", NULL), -ENOENT);
}

static void test_syslog(void **state)
{
	struct fixture *f = *state;
	struct audit_options o = {.syslog = true};
	struct audit *a = NULL;
	struct audit_event ev = ev_of(f, AUDIT_OP_OPEN, "/p");
	uint8_t subj[CRYPT_HASH_BYTES] = {1};

	/* Forwarding must not disturb the chain (the line itself goes to
	 * the system log; its format is documented). */
	ev.subject = subj;
	assert_int_equal(audit_open(f->st, &o, &a), 0);
	assert_int_equal(append(a, &ev), 1);
	audit_close(a);
	assert_int_equal(verify(f, NULL).verdict, AUDIT_OK);
}

static void test_who(void **state)
{
	struct fixture *f = *state;
	struct audit_who w;
	pid_t pid;

	assert_int_equal(f->who.pid, getpid());
	assert_int_equal(f->who.uid, geteuid());
	assert_string_equal(f->who.comm, "test_audit");
	assert_non_null(strstr(f->who.exe, "test_audit"));
	assert_true(f->who.groups[0] == 0 ||
		    (f->who.groups[0] >= '0' && f->who.groups[0] <= '9'));
	assert_null(strchr(f->who.groups, ' '));

	/* A process that has exited. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	audit_who(pid, 1000, 1001, &w);
	assert_int_equal(w.uid, 1000);
	assert_int_equal(w.gid, 1001);
	assert_int_equal(w.pid, pid);
	assert_int_equal(w.auid, AUDIT_UNSET);
	assert_int_equal(w.ses, AUDIT_UNSET);
	assert_string_equal(w.comm, "");
	assert_string_equal(w.exe, "");
	assert_string_equal(w.groups, "");

	/* The cached variant: same answer, uid/gid from the arguments. */
	{
		struct audit *a = NULL;
		struct audit_who c;

		assert_int_equal(audit_open(f->st, NULL, &a), 0);
		for (int i = 0; i < 3; i++) {
			audit_who_cached(a, getpid(), 42 + (uid_t)i, 43, &c);
			assert_int_equal(c.uid, 42 + i);
			assert_int_equal(c.gid, 43);
			assert_int_equal(c.pid, getpid());
			assert_string_equal(c.comm, f->who.comm);
			assert_string_equal(c.exe, f->who.exe);
			assert_string_equal(c.groups, f->who.groups);
			assert_int_equal(c.auid, f->who.auid);
		}
		/* A pid in the same slot that has exited is not served from
		 * the cache. */
		audit_who_cached(a, pid, 1, 1, &c);
		assert_int_equal(c.pid, pid);
		assert_string_equal(c.comm, "");
		audit_who_cached(a, getpid() + 256, 1, 1, &c);
		assert_int_equal(c.pid, getpid() + 256);
		audit_close(a);
	}
}

/* The who cache sees an exec (same pid, new program) once its short
 * recheck window has passed, and a process that exited. */
static void test_who_exec(void **state)
{
	struct fixture *f = *state;
	struct audit *a = NULL;
	struct audit_who c;
	char path[64], exe[256];
	int go[2];
	pid_t pid;
	ssize_t n = 0;

	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char b;

		close(go[1]);
		if (read(go[0], &b, 1) == 1)
			execl("/bin/sleep", "sleep", "30", (char *)NULL);
		_exit(1);
	}
	close(go[0]);
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	audit_who_cached(a, pid, 7, 8, &c);
	assert_string_equal(c.exe, f->who.exe);
	assert_string_equal(c.comm, f->who.comm);
	assert_int_equal(write(go[1], "x", 1), 1);
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	for (int i = 0; i < 500; i++) {
		n = readlink(path, exe, sizeof(exe) - 1);
		if (n > 0 && (exe[n] = 0, strstr(exe, "sleep")))
			break;
		usleep(10 * 1000);
	}
	assert_non_null(strstr(exe, "sleep"));
	usleep(5 * 1000); /* past the recheck window */
	audit_who_cached(a, pid, 7, 8, &c);
	assert_string_equal(c.exe, exe);
	assert_string_equal(c.comm, "sleep");
	assert_int_equal(c.uid, 7);
	/* Gone: nothing cached is served for it. */
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	usleep(5 * 1000);
	audit_who_cached(a, pid, 7, 8, &c);
	assert_string_equal(c.exe, "");
	assert_string_equal(c.comm, "");
	close(go[1]);
	audit_close(a);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The who cache keeps a /proc/PID descriptor per caller, but never more
 * than a quarter of RLIMIT_NOFILE: under a low limit the daemon's files
 * must not run out because of it.  Callers past that are still answered
 * (uncached). */
static void test_who_fd_budget(void **state)
{
	struct fixture *f = *state;
	enum { KIDS = 48, LIMIT = 64 };
	struct rlimit old, low;
	struct audit *a = NULL;
	struct audit_who c;
	pid_t kids[KIDS];
	int go[2], before;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = LIMIT;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < KIDS; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0) {
			char b;

			close(go[1]);
			_exit(read(go[0], &b, 1) < 0);
		}
	}
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	before = count_fds();
	for (int i = 0; i < KIDS; i++) {
		audit_who_cached(a, kids[i], 5, 6, &c);
		assert_int_equal(c.pid, kids[i]);
		assert_string_equal(c.exe, f->who.exe);
		assert_int_equal(c.uid, 5);
	}
	assert_true(count_fds() - before <= LIMIT / 4);
	assert_true(count_fds() - before >= 1); /* it does cache */
	/* Served again, from the cache or not, with the same answer. */
	for (int i = 0; i < KIDS; i++) {
		audit_who_cached(a, kids[i], 9, 6, &c);
		assert_string_equal(c.exe, f->who.exe);
		assert_int_equal(c.uid, 9);
	}
	assert_true(count_fds() - before <= LIMIT / 4);
	audit_close(a);
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < KIDS; i++)
		assert_int_equal(waitpid(kids[i], NULL, 0), kids[i]);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/* Appends from several threads: one linear chain, no seq lost. */
struct thr {
	struct fixture *f; /* fixture */
	struct audit *a;   /* log */
	int n, err;        /* records to append, first error */
};

static void *appender(void *p)
{
	struct thr *t = p;

	for (int i = 0; i < t->n; i++) {
		struct audit_event ev = ev_of(t->f, AUDIT_OP_OPEN, "/t");

		if (audit_append(t->a, &ev, NULL) != 0)
			t->err = 1;
	}
	return NULL;
}

static void test_threads(void **state)
{
	struct fixture *f = *state;
	struct audit_options o = {.sync = AUDIT_SYNC_FULL, .batch_ms = 1};
	pthread_t th[4];
	struct thr t[4];
	struct audit *a = NULL;
	struct audit_report rep;

	for (int mode = 0; mode < 2; mode++) {
		o.sync = mode ? AUDIT_SYNC_FULL : AUDIT_SYNC_NORMAL;
		assert_int_equal(audit_open(f->st, &o, &a), 0);
		for (int i = 0; i < 4; i++) {
			t[i] = (struct thr){f, a, 300, 0};
			assert_int_equal(pthread_create(&th[i], NULL, appender, &t[i]),
					 0);
		}
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			assert_int_equal(t[i].err, 0);
		}
		assert_int_equal(audit_flush(a), 0);
		audit_close(a);
	}
	rep = verify(f, NULL);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_int_equal(rep.records, 2400);
	assert_int_equal(file_size(f->journal), 0);
}

static void test_catalog_rows(void **state)
{
	struct fixture *f = *state;
	struct catalog_audit_row *r = calloc(1, sizeof(*r));
	struct catalog *ro = NULL;
	int64_t last;
	uint8_t mac[CRYPT_MAC_BYTES];

	assert_int_equal(catalog_audit_last(f->st->cat, &last, mac), 0);
	assert_int_equal(last, 0);
	r->seq = 1;
	strcpy(r->op, "open");
	assert_int_equal(catalog_audit_insert(f->st->cat, r), 0);
	assert_int_equal(catalog_audit_insert(f->st->cat, r), -EEXIST);
	r->seq = 0;
	assert_int_equal(catalog_audit_insert(f->st->cat, r), -EINVAL);
	r->seq = 2;
	r->op[0] = 0;
	assert_int_equal(catalog_audit_insert(f->st->cat, r), -EINVAL);
	strcpy(r->op, "open");
	r->bytes = -1;
	assert_int_equal(catalog_audit_insert(f->st->cat, r), -EINVAL);
	r->bytes = 0;
	memset(r->comm, 'c', sizeof(r->comm));
	assert_int_equal(catalog_audit_insert(f->st->cat, r), -EINVAL);
	r->comm[0] = 0;
	r->path_len = sizeof(r->path) + 1;
	assert_int_equal(catalog_audit_insert(f->st->cat, r), -EINVAL);
	assert_int_equal(catalog_open(f->db, CATALOG_RDONLY, &ro), 0);
	r->path_len = 0;
	assert_int_equal(catalog_audit_insert(ro, r), -EROFS);
	catalog_close(ro);
	assert_int_equal(catalog_audit_last(f->st->cat, &last, mac), 0);
	assert_int_equal(last, 1);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chain_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_edit_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_edit_each_column, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tamper_delete_middle, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_tamper_delete_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_reorder, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_insert, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tamper_prev, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_head, setup, teardown),
		cmocka_unit_test_setup_teardown(test_verify_wrong_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_zero_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_damaged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_paths_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_mapped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_stale_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_write_fails, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_sync_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_retry, setup, teardown),
		cmocka_unit_test(test_options),
		cmocka_unit_test_setup_teardown(test_syslog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_who, setup, teardown),
		cmocka_unit_test_setup_teardown(test_who_exec, setup, teardown),
		cmocka_unit_test_setup_teardown(test_who_fd_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_catalog_rows, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
