/*
 * fuzz_catalog.c — libFuzzer target for the catalogue readers (fs/catalog*.c).
 *
 * The input (after its first byte) is written as a whole custodian.db into
 * a private temporary directory and opened the way the daemon and the tool
 * open it; then every reader runs over it: meta values, key slots (and a
 * keyfile unlock attempt, which unwraps each slot), policy versions, the
 * audit chain (last row and a bounded query), subjects and the erasure
 * ledger.  A damaged or hostile database must give 0 or a negative errno
 * from every call, never a crash, a leak or an out-of-bounds read
 * (ASan/UBSan).  First byte: bit 0 = open read-only (else read-write,
 * which may migrate or switch to WAL), bit 1 = the next three bytes are a
 * big-endian length L and the input's last L bytes are planted beside the
 * file as its -wal (a WAL from elsewhere, or a torn one).
 *
 * Kept fast: at most 16 rows of each kind are decoded, and the input is
 * capped at 256 KiB (64 pages).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.h"
#include "crypt.h"
#include "keys.h"

#define FUZZ_MAX_DB (256 * 1024) /* larger inputs are cut (speed) */
#define FUZZ_ROWS 16             /* rows of each kind decoded per input */

static char dir[64], db[96], wal[100], shm[100];

static void check(int cond)
{
	if (!cond)
		abort();
}

/* 0 or a negative errno: anything else is a contract violation. */
static void errno_ok(int r)
{
	check(r <= 0 && r > -4096);
}

static void cleanup(void)
{
	unlink(db);
	unlink(wal);
	unlink(shm);
	rmdir(dir);
}

static void init(void)
{
	if (dir[0])
		return;
	if (crypt_init() != 0)
		abort();
	snprintf(dir, sizeof(dir), "/tmp/fuzz-catalog-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(db, sizeof(db), "%s/%s", dir, CATALOG_FILE);
	snprintf(wal, sizeof(wal), "%s-wal", db);
	snprintf(shm, sizeof(shm), "%s-shm", db);
	atexit(cleanup);
}

static void put(const char *path, const uint8_t *d, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	check(fd >= 0);
	check(write(fd, d, n) == (ssize_t)n);
	close(fd);
}

static void read_meta(struct catalog *cat)
{
	static const char *const keys[] = {
		"schema", "store_id", "format", "created", CATALOG_AUDIT_HEAD_KEY,
		"clock"};
	uint8_t buf[64];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		size_t len = 0;
		int r = catalog_meta_get(cat, keys[i], buf, sizeof(buf), &len);

		errno_ok(r);
		check(r != 0 || len <= sizeof(buf));
	}
}

static void read_slots(struct catalog *cat)
{
	static const uint8_t keyfile[32] = {1, 2, 3};
	struct catalog_slot *slots = NULL;
	struct keys_master *mk = NULL;
	size_t n = 0;
	int r = catalog_slot_list(cat, &slots, &n);

	errno_ok(r);
	if (r == 0) {
		for (size_t i = 0; i < n; i++) {
			check(memchr(slots[i].kind, 0, sizeof(slots[i].kind)) != NULL);
			check(memchr(slots[i].label, 0, sizeof(slots[i].label)) != NULL);
		}
	}
	free(slots);
	/* A keyfile unlock reads and unwraps slots without Argon2 (fast):
	 * nothing in a hostile row may open it. */
	r = keys_unlock_keyfile(cat, keyfile, sizeof(keyfile), &mk);
	errno_ok(r);
	check(r != 0 || mk != NULL);
	keys_master_free(mk);
}

static void read_policies(struct catalog *cat)
{
	for (int64_t v = 0; v <= 2; v++) {
		struct catalog_policy p;
		int r;

		memset(&p, 0, sizeof(p));
		r = catalog_policy_get(cat, v, &p);
		errno_ok(r);
		if (r == 0)
			check(p.text != NULL &&
			      memchr(p.applied_by, 0, sizeof(p.applied_by)));
		catalog_policy_clear(&p);
	}
}

static void read_audit(struct catalog *cat)
{
	static struct catalog_audit_row row; /* large: keep it off the stack */
	struct catalog_audit_filter f;
	struct catalog_audit_iter *it = NULL;
	uint8_t mac[CRYPT_MAC_BYTES];
	int64_t seq = 0;
	int r;

	errno_ok(catalog_audit_last(cat, &seq, mac));
	catalog_audit_filter_all(&f);
	r = catalog_audit_query(cat, &f, &it);
	errno_ok(r);
	if (r == 0) {
		for (int i = 0; i < FUZZ_ROWS; i++) {
			r = catalog_audit_next(it, &row);
			check(r == 0 || r == 1 || (r < 0 && r > -4096));
			if (r != 1)
				break;
			check(row.path_len <= sizeof(row.path));
			check(row.path2_len <= sizeof(row.path2));
			check(memchr(row.op, 0, sizeof(row.op)) != NULL);
			check(memchr(row.detail, 0, sizeof(row.detail)) != NULL);
		}
		catalog_audit_iter_free(it);
	}
}

static void read_subjects(struct catalog *cat)
{
	static struct catalog_subject s;
	uint8_t(*hashes)[CRYPT_HASH_BYTES] = NULL;
	struct catalog_erasure *e = NULL;
	size_t n = 0;
	int r = catalog_subject_hashes(cat, &hashes, &n);

	errno_ok(r);
	if (r == 0) {
		for (size_t i = 0; i < n && i < FUZZ_ROWS; i++) {
			r = catalog_subject_get(cat, hashes[i], &s);
			errno_ok(r);
			if (r == 0) {
				check(s.id_ct_len <= sizeof(s.id_ct));
				check(s.parent_ct_len <= sizeof(s.parent_ct));
				check(s.restrict_ct_len <= sizeof(s.restrict_ct));
				check(s.hold_ct_len <= sizeof(s.hold_ct));
			}
		}
	}
	free(hashes);
	n = 0;
	r = catalog_erasure_list(cat, &e, &n);
	errno_ok(r);
	if (r == 0 && n > 0) {
		struct catalog_erasure one;

		check(memchr(e[0].reason, 0, sizeof(e[0].reason)) != NULL);
		errno_ok(catalog_erasure_get(cat, e[0].seq, &one));
		errno_ok(catalog_erasure_find_key(cat, e[0].key_fp));
	}
	free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct catalog *cat = NULL;
	int mode, r;

	init();
	if (size < 1)
		return 0;
	mode = data[0];
	data++;
	size--;
	if (size > FUZZ_MAX_DB)
		size = FUZZ_MAX_DB;
	unlink(wal);
	unlink(shm);
	if ((mode & 2) && size >= 3) {
		/* Three bytes give the length of a WAL, taken from the tail and
		 * planted beside the file. */
		size_t w = (size_t)data[0] << 16 | (size_t)data[1] << 8 | data[2];

		data += 3;
		size -= 3;
		if (w > size)
			w = size;
		put(wal, data + size - w, w);
		size -= w;
	}
	put(db, data, size);
	r = catalog_open(db, (mode & 1) ? CATALOG_RDONLY : 0, &cat);
	errno_ok(r);
	check((r == 0) == (cat != NULL));
	if (r == 0) {
		read_meta(cat);
		read_slots(cat);
		read_policies(cat);
		read_audit(cat);
		read_subjects(cat);
		catalog_close(cat);
	}
	unlink(db);
	unlink(wal);
	unlink(shm);
	return 0;
}
