/*
 * test_subjects.c — unit tests for fs/subjects.c and fs/catalog_subjects.c:
 * subject creation, keys and names, flags, the shred (key, id and
 * ciphertext gone; secure_delete leaves the old wrapped key in neither the
 * database nor its WAL), certificates, restored ciphertext and restored
 * catalogues (the ledger), and injected failures.  Stores are real
 * (store_create with tiny KDF limits); subject files are written with the
 * format and names APIs, so no daemon is needed.
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
#include "format.h"
#include "names.h"
#include "secret.h"
#include "store.h"
#include "subjects.h"
#include "sys.h"

#include "unit_util.h"

#define ID "C-10042-ZQXJ"             /* distinctive: grepped for in the store */
#define CONTENT "MARKER-CONTENT-7731" /* plaintext of a subject file */

static struct keys_kdf fast_kdf;

struct fixture {
	char dir[64];     /* temporary directory holding everything */
	char store[96];   /* the store */
	struct store *st; /* open and unlocked */
};

/* --- helpers ------------------------------------------------------------- */

static void open_store(struct fixture *f)
{
	struct secret *s = unit_secret(f->dir, "pass");

	assert_int_equal(store_open(f->store, false, &f->st), 0);
	assert_int_equal(store_unlock_passphrase(f->st, s), 0);
	secret_free(s);
}

/* A plain (volume) directory `name` in the backing directory dirfd. */
static void mk_voldir(struct fixture *f, int dirfd, const char *name)
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
	close(fd);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct secret *s;

	if (f == NULL || crypt_init() != 0)
		return -1;
	unit_fast_kdf(&fast_kdf);
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_subjects") != 0)
		return -1;
	snprintf(f->store, sizeof(f->store), "%s/st", f->dir);
	s = unit_secret(f->dir, "pass");
	if (store_create(f->store, s, &fast_kdf, NULL) != 0)
		return -1;
	secret_free(s);
	open_store(f);
	mk_voldir(f, f->st->tree_fd, "customers");
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

static void run(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_int_equal(system(cmd), 0);
}

/* Writes a record `name` with `text` into the backing directory dirfd
 * (keyring ring, IV iv). */
static void write_file(int dirfd, const struct keyring *ring,
		       const uint8_t iv[CRYPT_DIRIV_BYTES], const char *name,
		       const char *text)
{
	struct format_file ff;
	struct names_enc enc;
	int fd;

	assert_int_equal(names_encrypt(ring, iv, name, &enc), 0);
	assert_int_equal(names_long_store(dirfd, &enc), 0);
	fd = openat(dirfd, enc.backing, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(format_file_create(&ff, fd, ring, 1000), 0);
	assert_int_equal(format_file_write(&ff, text, strlen(text), 0),
			 (ssize_t)strlen(text));
	close(fd);
}

/* Opens the backing root of subject id (O_DIRECTORY), -errno if absent. */
static int open_subject_dir(struct fixture *f, const char *id)
{
	char name[SUBJECTS_BACKING_LEN + 1];
	uint8_t hash[CRYPT_HASH_BYTES];
	int pfd, fd;

	subjects_hash(f->st->mk, id, hash);
	subjects_backing_name(hash, name);
	assert_int_equal(subjects_resolve_dir(f->st, "/customers", &pfd), 0);
	fd = openat(pfd, name, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		fd = -errno;
	close(pfd);
	return fd;
}

/* Creates subject id with two files and a subdirectory holding a long
 * name; returns its ring (caller frees). */
static struct keyring *make_subject(struct fixture *f, const char *id)
{
	struct keyring *ring = NULL;
	uint8_t iv[CRYPT_DIRIV_BYTES], siv[CRYPT_DIRIV_BYTES];
	struct names_enc enc;
	char longname[201];
	int dfd, sfd;

	assert_int_equal(subjects_create(f->st, "/customers", -1, id, 0700, &ring, iv),
			 0);
	assert_non_null(ring);
	dfd = open_subject_dir(f, id);
	assert_true(dfd >= 0);
	write_file(dfd, ring, iv, "invoice-2024.pdf", CONTENT);
	write_file(dfd, ring, iv, "notes.txt", "hello");
	assert_int_equal(names_encrypt(ring, iv, "letters", &enc), 0);
	assert_int_equal(mkdirat(dfd, enc.backing, 0700), 0);
	sfd = openat(dfd, enc.backing, O_RDONLY | O_DIRECTORY);
	assert_true(sfd >= 0);
	assert_int_equal(names_diriv_create(sfd, siv), 0);
	memset(longname, 'x', 200);
	longname[200] = 0;
	write_file(sfd, ring, siv, longname, "long");
	close(sfd);
	close(dfd);
	return ring;
}

/* Reads a whole file into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *buf = NULL;
	struct stat sb;
	int fd = open(path, O_RDONLY);

	*len = 0;
	if (fd < 0)
		return calloc(1, 1);
	assert_int_equal(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*len = (size_t)sb.st_size;
	return buf;
}

/* Does any file of the store's catalogue (db, -wal) contain needle? */
static bool db_contains(struct fixture *f, const void *needle, size_t n)
{
	static const char *const sfx[] = {"", "-wal"};
	char path[160];
	bool found = false;

	for (size_t i = 0; i < ARRAY_LEN(sfx); i++) {
		size_t len;
		uint8_t *buf;

		snprintf(path, sizeof(path), "%s/%s%s", f->store, CATALOG_FILE, sfx[i]);
		buf = slurp(path, &len);
		if (memmem(buf, len, needle, n))
			found = true;
		free(buf);
	}
	return found;
}

/* Does grep find text anywhere in the store directory (names or bytes)? */
static bool store_contains(struct fixture *f, const char *text)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "grep -rqaF '%s' '%s' || find '%s' | grep -qF '%s'",
		 text, f->store, f->store, text);
	return system(cmd) == 0;
}

/* --- names and hashes ------------------------------------------------------ */

static void test_names(void **state)
{
	struct fixture *f = *state;
	uint8_t h[CRYPT_HASH_BYTES], h2[CRYPT_HASH_BYTES], back[CRYPT_HASH_BYTES];
	char name[SUBJECTS_BACKING_LEN + 1], bad[SUBJECTS_BACKING_LEN + 2];
	char longid[SUBJECTS_ID_MAX + 2];

	subjects_hash(f->st->mk, "C-1", h);
	subjects_hash(f->st->mk, "C-2", h2);
	assert_memory_not_equal(h, h2, sizeof(h));
	/* The audit engineer's definition is the same. */
	audit_subject_hash(f->st->mk, "C-1", h2);
	assert_memory_equal(h, h2, sizeof(h));

	subjects_backing_name(h, name);
	assert_int_equal(strlen(name), SUBJECTS_BACKING_LEN);
	assert_int_equal(strncmp(name, ".S", 2), 0);
	assert_true(names_reserved(name)); /* never listed as a user name */
	assert_int_equal(subjects_parse_backing_name(name, back), 0);
	assert_memory_equal(h, back, sizeof(h));

	assert_int_equal(subjects_parse_backing_name(".L" + 0, back), -EINVAL);
	strcpy(bad, name);
	bad[0] = 'S';
	assert_int_equal(subjects_parse_backing_name(bad, back), -EINVAL);
	strcpy(bad, name);
	bad[10] = '+';
	assert_int_equal(subjects_parse_backing_name(bad, back), -EINVAL);
	strcpy(bad, name);
	strcat(bad, "A");
	assert_int_equal(subjects_parse_backing_name(bad, back), -EINVAL);
	assert_int_equal(subjects_parse_backing_name(".S", back), -EINVAL);
	assert_int_equal(subjects_parse_backing_name(NULL, back), -EINVAL);

	assert_int_equal(subjects_id_check("C-1"), 0);
	assert_int_equal(subjects_id_check(""), -EINVAL);
	assert_int_equal(subjects_id_check("."), -EINVAL);
	assert_int_equal(subjects_id_check(".."), -EINVAL);
	assert_int_equal(subjects_id_check("a/b"), -EINVAL);
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = 0;
	assert_int_equal(subjects_id_check(longid), -ENAMETOOLONG);
	longid[SUBJECTS_ID_MAX] = 0;
	assert_int_equal(subjects_id_check(longid), 0);
}

/* --- create / open / get / list -------------------------------------------- */

struct listed {
	int n;                       /* subjects seen */
	int shredded;                /* of which shredded */
	struct subjects_info last;   /* the last one */
	struct subjects_usage usage; /* its usage */
	bool have_usage;             /* usage was given */
};

static int list_cb(const struct subjects_info *info, const struct subjects_usage *u,
		   void *arg)
{
	struct listed *l = arg;

	l->n++;
	if (info->flags & SUBJECTS_SHREDDED)
		l->shredded++;
	l->last = *info;
	l->have_usage = u != NULL;
	if (u)
		l->usage = *u;
	return 0;
}

static int stop_cb(const struct subjects_info *info, const struct subjects_usage *u,
		   void *arg)
{
	(void)info;
	(void)u;
	(void)arg;
	return 42;
}

static void test_create_open_list(void **state)
{
	struct fixture *f = *state;
	struct keyring *ring, *again = NULL, *r2 = NULL;
	uint8_t hash[CRYPT_HASH_BYTES], iv[CRYPT_DIRIV_BYTES];
	struct subjects_info info;
	struct listed l;
	struct stat sb;
	int dfd;

	ring = make_subject(f, ID);
	subjects_hash(f->st->mk, ID, hash);
	assert_int_equal(subjects_open(f->st, hash, &again), 0);
	assert_memory_equal(ring, again, sizeof(*ring));
	assert_memory_not_equal(ring->content, keys_volume(f->st->mk)->content,
				CRYPT_KEY_BYTES);
	keys_ring_free(again);

	/* The backing root: ".S" name, mode as asked, an IV inside. */
	dfd = open_subject_dir(f, ID);
	assert_true(dfd >= 0);
	assert_int_equal(fstat(dfd, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0700);
	assert_int_equal(names_diriv_load(dfd, iv), 0);
	close(dfd);

	assert_int_equal(subjects_create(f->st, "/customers", -1, ID, 0700, &r2, NULL),
			 -EEXIST);
	assert_null(r2);

	assert_int_equal(subjects_get(f->st, hash, &info), 0);
	assert_string_equal(info.id, ID);
	assert_string_equal(info.parent, "/customers");
	assert_int_equal(info.flags, 0);
	assert_true(info.created_us > 0);
	assert_true(info.last_write_us >= info.created_us);

	/* A second subject, created through a parent fd and a sloppy path. */
	{
		int pfd;

		assert_int_equal(subjects_resolve_dir(f->st, "//customers/", &pfd), 0);
		assert_int_equal(subjects_create(f->st, "//customers/", pfd, "C-2", 0750,
						 &r2, NULL),
				 0);
		close(pfd);
		keys_ring_free(r2);
	}

	memset(&l, 0, sizeof(l));
	assert_int_equal(subjects_list(f->st, true, list_cb, &l), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.shredded, 0);
	{
		struct subjects_usage u;

		assert_int_equal(subjects_usage(f->st, hash, &u), 0);
		assert_int_equal(u.files, 3);
		assert_int_equal(u.dirs, 1);
		assert_int_equal(u.bytes, strlen(CONTENT) + 5 + 4);
		assert_true(u.cipher_bytes > u.bytes);
	}
	assert_int_equal(subjects_list(f->st, false, stop_cb, NULL), 42);

	/* Touch: only forward. */
	assert_int_equal(subjects_touch(f->st, hash, info.created_us + 1000), 0);
	assert_int_equal(subjects_touch(f->st, hash, 5), 0);
	{
		struct subjects_info i2;

		assert_int_equal(subjects_get(f->st, hash, &i2), 0);
		assert_int_equal(i2.last_write_us, info.created_us + 1000);
	}

	/* Bad input. */
	assert_int_equal(subjects_create(f->st, "/customers", -1, "", 0700, &r2, NULL),
			 -EINVAL);
	assert_int_equal(subjects_create(f->st, "/customers", -1, "a/b", 0700, &r2, NULL),
			 -EINVAL);
	assert_int_equal(subjects_create(f->st, "customers", -1, "C-3", 0700, &r2, NULL),
			 -EINVAL);
	assert_int_equal(
		subjects_create(f->st, "/customers/../x", -1, "C-3", 0700, &r2, NULL),
		-EINVAL);
	assert_int_equal(subjects_create(f->st, "/nope", -1, "C-3", 0700, &r2, NULL),
			 -ENOENT);
	hash[0] ^= 1;
	assert_int_equal(subjects_open(f->st, hash, &r2), -ENOENT);
	assert_int_equal(subjects_get(f->st, hash, &info), -ENOENT);
	assert_int_equal(subjects_touch(f->st, hash, 1), -ENOENT);
	assert_int_equal(subjects_set_held(f->st, hash, true, "x", NULL), -ENOENT);
	keys_ring_free(ring);
}

/* The id is stored nowhere in plaintext: not in the db, its WAL, the tree. */
static void test_id_never_plain(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[CRYPT_HASH_BYTES];
	struct keyring *ring = make_subject(f, ID);

	subjects_hash(f->st->mk, ID, hash);
	assert_int_equal(subjects_set_restricted(f->st, hash, true, "complaint", NULL),
			 0);
	assert_false(db_contains(f, ID, strlen(ID)));
	assert_false(store_contains(f, ID));
	assert_false(store_contains(f, "invoice"));
	assert_false(store_contains(f, CONTENT));
	assert_false(store_contains(f, "complaint"));
	/* ...and the scan itself works. */
	assert_true(db_contains(f, hash, sizeof(hash)));
	keys_ring_free(ring);
}

/* --- flags -------------------------------------------------------------------- */

static void test_flags(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[CRYPT_HASH_BYTES];
	struct subjects_certificate cert;
	struct subjects_info info;
	struct catalog_subject *row = malloc(sizeof(*row));
	struct keyring *ring = make_subject(f, ID);
	bool changed;

	assert_non_null(row);
	subjects_hash(f->st->mk, ID, hash);
	assert_int_equal(subjects_set_restricted(f->st, hash, true, "", NULL), -EINVAL);
	assert_int_equal(subjects_set_restricted(f->st, hash, true, NULL, NULL), -EINVAL);
	assert_int_equal(
		subjects_set_restricted(f->st, hash, true, "art. 18 request", &changed),
		0);
	assert_true(changed);
	assert_int_equal(subjects_set_restricted(f->st, hash, true, "again", &changed),
			 0);
	assert_false(changed);
	assert_int_equal(subjects_set_held(f->st, hash, true, "case 2024-17", &changed),
			 0);
	assert_true(changed);
	assert_int_equal(subjects_get(f->st, hash, &info), 0);
	assert_int_equal(info.flags, SUBJECTS_RESTRICTED | SUBJECTS_HELD);
	assert_string_equal(info.restrict_reason, "again");
	assert_string_equal(info.hold_reason, "case 2024-17");

	/* Held: no shred, not even a dry run. */
	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure request", "tester",
					false, &cert),
			 -EPERM);
	assert_int_equal(
		subjects_shred(f->st, NULL, ID, "erasure request", "tester", true, &cert),
		-EPERM);

	/* Someone clears the hold in the database directly: the row MAC
	 * no longer matches, and custodian refuses the row. */
	assert_int_equal(catalog_subject_get(f->st->cat, hash, row), 0);
	row->held = 0;
	assert_int_equal(catalog_subject_put(f->st->cat, row), 0);
	assert_int_equal(subjects_get(f->st, hash, &info), -EBADMSG);
	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure request", "tester",
					false, &cert),
			 -EBADMSG);
	row->held = 1;
	assert_int_equal(catalog_subject_put(f->st->cat, row), 0);
	assert_int_equal(subjects_get(f->st, hash, &info), 0);

	/* Lifted: the lift's reason is kept; shred now allowed. */
	assert_int_equal(subjects_set_held(f->st, hash, false, "case closed", &changed),
			 0);
	assert_true(changed);
	assert_int_equal(
		subjects_set_restricted(f->st, hash, false, "resolved", &changed), 0);
	assert_int_equal(subjects_get(f->st, hash, &info), 0);
	assert_int_equal(info.flags, 0);
	assert_string_equal(info.hold_reason, "case closed");
	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure request", "tester",
					false, &cert),
			 0);
	assert_int_equal(subjects_set_held(f->st, hash, true, "late", NULL), -ENOKEY);
	assert_int_equal(subjects_set_restricted(f->st, hash, true, "late", NULL),
			 -ENOKEY);
	keys_ring_free(ring);
	free(row);
}

/* --- shred ---------------------------------------------------------------------------
 */

static void test_shred(void **state)
{
	struct fixture *f = *state;
	struct catalog_subject *row = malloc(sizeof(*row));
	uint8_t hash[CRYPT_HASH_BYTES], wrapped[KEYS_WRAPPED_BYTES];
	uint8_t id_ct[CATALOG_SUBJECT_ID_CT_MAX];
	size_t id_ct_len;
	struct subjects_certificate cert, bad;
	struct subjects_info info;
	struct catalog_erasure e;
	struct keyring *ring, *r2 = NULL;
	struct listed l;

	assert_non_null(row);
	ring = make_subject(f, ID);
	keys_ring_free(make_subject(f, "C-other"));
	subjects_hash(f->st->mk, ID, hash);
	assert_int_equal(catalog_subject_get(f->st->cat, hash, row), 0);
	memcpy(wrapped, row->wrapped, sizeof(wrapped));
	memcpy(id_ct, row->id_ct, row->id_ct_len);
	id_ct_len = row->id_ct_len;
	assert_true(db_contains(f, wrapped, sizeof(wrapped)));

	/* Bad arguments change nothing. */
	assert_int_equal(subjects_shred(f->st, NULL, ID, "", "op", false, &cert),
			 -EINVAL);
	assert_int_equal(
		subjects_shred(f->st, NULL, ID, "asked by " ID, "op", false, &cert),
		-EINVAL);
	assert_int_equal(subjects_shred(f->st, NULL, ID, "customer c-10042-zqxj left",
					"op", false, &cert),
			 -EINVAL);
	assert_int_equal(subjects_shred(f->st, NULL, "C-none", "x", "op", false, &cert),
			 -ENOENT);

	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure request #77", "alice",
					false, &cert),
			 0);
	assert_false(cert.dry_run);
	assert_true(cert.tree_removed);
	assert_true(cert.wal_clean);
	assert_string_equal(cert.id, ID);
	assert_memory_equal(cert.hash, hash, sizeof(hash));
	assert_int_equal(cert.files, 3);
	assert_int_equal(cert.bytes, strlen(CONTENT) + 5 + 4);
	assert_int_equal(cert.ledger_seq, 1);
	assert_int_equal(cert.audit_seq, 0);
	assert_string_equal(cert.reason, "erasure request #77");
	assert_string_equal(cert.operator_, "alice");

	/* Key, id, ciphertext: gone. */
	assert_int_equal(subjects_open(f->st, hash, &r2), -ENOKEY);
	assert_int_equal(subjects_get(f->st, hash, &info), 0);
	assert_int_equal(info.flags, SUBJECTS_SHREDDED);
	assert_string_equal(info.id, "");
	assert_int_equal(open_subject_dir(f, ID), -ENOENT);
	assert_false(db_contains(f, wrapped, sizeof(wrapped)));
	assert_false(db_contains(f, wrapped + CRYPT_NONCE_BYTES, 16));
	assert_false(db_contains(f, id_ct, id_ct_len));
	assert_false(store_contains(f, ID));
	assert_int_equal(catalog_subject_get(f->st->cat, hash, row), 0);
	assert_false(row->has_key);
	assert_int_equal(row->id_ct_len, 0);
	assert_int_equal(subjects_shred(f->st, NULL, ID, "again", "alice", false, &bad),
			 -ENOKEY);
	assert_int_equal(subjects_usage(f->st, hash, &(struct subjects_usage){0}),
			 -ENOENT);

	/* The other subject is untouched. */
	{
		uint8_t h2[CRYPT_HASH_BYTES];

		subjects_hash(f->st->mk, "C-other", h2);
		assert_int_equal(subjects_open(f->st, h2, &r2), 0);
		keys_ring_free(r2);
		assert_true(open_subject_dir(f, "C-other") >= 0);
	}
	memset(&l, 0, sizeof(l));
	assert_int_equal(subjects_list(f->st, true, list_cb, &l), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.shredded, 1);

	/* Ledger and certificate. */
	assert_int_equal(catalog_erasure_get(f->st->cat, 1, &e), 0);
	assert_memory_equal(e.hash, hash, sizeof(hash));
	assert_memory_equal(e.mac, cert.mac, sizeof(e.mac));
	assert_int_equal(subjects_certificate_verify(f->st, &cert), 0);
	bad = cert;
	strcpy(bad.reason, "something else");
	assert_int_equal(subjects_certificate_verify(f->st, &bad), -EBADMSG);
	bad = cert;
	bad.files++;
	assert_int_equal(subjects_certificate_verify(f->st, &bad), -EBADMSG);
	bad = cert;
	strcpy(bad.id, "C-other");
	assert_int_equal(subjects_certificate_verify(f->st, &bad), -EBADMSG);
	bad = cert;
	bad.mac[0] ^= 1;
	assert_int_equal(subjects_certificate_verify(f->st, &bad), -EBADMSG);
	bad = cert;
	bad.ledger_seq = 99;
	assert_int_equal(subjects_certificate_verify(f->st, &bad), -ENOENT);
	bad = cert;
	bad.ledger_seq = 0;
	assert_int_equal(subjects_certificate_verify(f->st, &bad), -EBADMSG);

	/* Re-created: a new key and an empty directory. */
	assert_int_equal(subjects_create(f->st, "/customers", -1, ID, 0700, &r2, NULL),
			 0);
	assert_memory_not_equal(r2->content, ring->content, CRYPT_KEY_BYTES);
	assert_memory_not_equal(r2->name_enc, ring->name_enc, CRYPT_KEY_BYTES);
	{
		struct subjects_usage u;

		assert_int_equal(subjects_usage(f->st, hash, &u), 0);
		assert_int_equal(u.files, 0);
	}
	assert_int_equal(subjects_get(f->st, hash, &info), 0);
	assert_string_equal(info.id, ID);
	assert_int_equal(info.flags, 0);
	keys_ring_free(r2);
	keys_ring_free(ring);
	free(row);
}

/* Ciphertext copied before the shred and put back afterwards stays dead. */
static void test_restored_ciphertext(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[CRYPT_HASH_BYTES], iv[CRYPT_DIRIV_BYTES];
	char name[SUBJECTS_BACKING_LEN + 1], plain[NAMES_PLAIN_MAX + 1], copy[160];
	struct subjects_certificate cert;
	struct keyring *old, *fresh = NULL, *r2 = NULL;
	struct format_file ff;
	struct dirent *de;
	DIR *d;
	int dfd, n = 0;

	old = make_subject(f, ID);
	subjects_hash(f->st->mk, ID, hash);
	subjects_backing_name(hash, name);
	snprintf(copy, sizeof(copy), "%s/tree-copy", f->dir);
	run("cp -a '%s/tree' '%s'", f->store, copy);

	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure", "op", false, &cert),
			 0);
	run("rm -rf '%s/tree' && cp -a '%s' '%s/tree'", f->store, copy, f->store);
	/* store->tree_fd still names the old, deleted tree: reopen. */
	store_close(f->st);
	open_store(f);

	assert_int_equal(subjects_open(f->st, hash, &r2), -ENOKEY);
	dfd = open_subject_dir(f, ID);
	assert_true(dfd >= 0); /* the ciphertext is back... */
	assert_int_equal(names_diriv_load(dfd, iv), 0);
	d = fdopendir(dfd);
	assert_non_null(d);
	/* ...but no key available names or opens any of it. */
	while ((de = readdir(d)) != NULL) {
		int fd;

		if (names_reserved(de->d_name))
			continue;
		n++;
		assert_int_not_equal(
			names_decrypt(keys_volume(f->st->mk), iv, dfd, de->d_name, plain),
			0);
		fd = openat(dfd, de->d_name, O_RDONLY);
		assert_true(fd >= 0);
		if (fd >= 0) {
			struct stat sb;

			assert_int_equal(fstat(fd, &sb), 0);
			if (S_ISREG(sb.st_mode))
				assert_int_equal(
					format_file_load(&ff, fd, keys_volume(f->st->mk)),
					-EIO);
			close(fd);
		}
	}
	assert_int_equal(n, 3);
	closedir(d);

	/* A new subject of the same id: new key, the old ciphertext is
	 * removed, and the old files (from the copy) do not open with it. */
	assert_int_equal(subjects_create(f->st, "/customers", -1, ID, 0700, &fresh, iv),
			 0);
	{
		struct subjects_usage u;

		assert_int_equal(subjects_usage(f->st, hash, &u), 0);
		assert_int_equal(u.files, 0);
	}
	{
		uint8_t oiv[CRYPT_DIRIV_BYTES];
		char cmd[300], sub[300];
		FILE *p;
		int cfd;

		/* The old subject root in the copy: tree-copy/<customers>/.S... */
		snprintf(cmd, sizeof(cmd), "find '%s' -maxdepth 2 -name '%s'", copy,
			 name);
		p = popen(cmd, "r");
		assert_non_null(p);
		assert_non_null(fgets(sub, sizeof(sub), p));
		pclose(p);
		sub[strcspn(sub, "\n")] = 0;
		cfd = open(sub, O_RDONLY | O_DIRECTORY);
		assert_true(cfd >= 0);
		assert_int_equal(names_diriv_load(cfd, oiv), 0);
		d = fdopendir(cfd);
		assert_non_null(d);
		while ((de = readdir(d)) != NULL) {
			int fd;

			if (names_reserved(de->d_name))
				continue;
			assert_int_not_equal(
				names_decrypt(fresh, oiv, cfd, de->d_name, plain), 0);
			/* Control: the destroyed key did name it. */
			assert_int_equal(names_decrypt(old, oiv, cfd, de->d_name, plain),
					 0);
			fd = openat(cfd, de->d_name, O_RDONLY);
			if (fd >= 0) {
				struct stat sb;

				assert_int_equal(fstat(fd, &sb), 0);
				if (S_ISREG(sb.st_mode)) {
					assert_int_equal(format_file_load(&ff, fd, fresh),
							 -EIO);
					assert_int_equal(format_file_load(&ff, fd, old),
							 0);
				}
				close(fd);
			}
		}
		closedir(d);
	}
	keys_ring_free(fresh);
	keys_ring_free(old);
}

static void test_dry_run(void **state)
{
	struct fixture *f = *state;
	struct catalog_subject *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	uint8_t hash[CRYPT_HASH_BYTES];
	struct subjects_certificate cert;
	struct catalog_erasure *list;
	struct keyring *ring = make_subject(f, ID), *r2 = NULL;
	size_t n;

	assert_non_null(a);
	assert_non_null(b);
	subjects_hash(f->st->mk, ID, hash);
	assert_int_equal(catalog_subject_get(f->st->cat, hash, a), 0);
	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure", "op", true, &cert),
			 0);
	assert_true(cert.dry_run);
	assert_int_equal(cert.files, 3);
	assert_int_equal(cert.ledger_seq, 0);
	assert_int_equal(catalog_subject_get(f->st->cat, hash, b), 0);
	assert_memory_equal(a, b, sizeof(*a));
	assert_int_equal(subjects_open(f->st, hash, &r2), 0);
	keys_ring_free(r2);
	assert_int_equal(catalog_erasure_list(f->st->cat, &list, &n), 0);
	assert_int_equal(n, 0);
	free(list);
	{
		struct subjects_usage u;

		assert_int_equal(subjects_usage(f->st, hash, &u), 0);
		assert_int_equal(u.files, 3);
	}
	/* A short id is not looked for in the reason (it would match words). */
	keys_ring_free(make_subject(f, "ab"));
	assert_int_equal(
		subjects_shred(f->st, NULL, "ab", "lab results", "op", true, &cert), 0);
	/* A dry-run certificate proves nothing. */
	assert_int_equal(subjects_certificate_verify(f->st, &cert), -EBADMSG);
	keys_ring_free(ring);
	free(a);
	free(b);
}

/* --- injected failures ------------------------------------------------------------ */

static int unlink_calls, unlink_fail_at;

static int failing_unlinkat(int dirfd, const char *path, int flags)
{
	if (++unlink_calls == unlink_fail_at) {
		errno = EIO;
		return -1;
	}
	return unlinkat(dirfd, path, flags);
}

static int openat_fail_iv(int dirfd, const char *path, int flags, mode_t mode)
{
	if (strcmp(path, NAMES_DIRIV_FILE) == 0 && (flags & O_CREAT)) {
		errno = ENOSPC;
		return -1;
	}
	return openat(dirfd, path, flags, mode);
}

static void test_failures(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[CRYPT_HASH_BYTES];
	struct subjects_certificate cert;
	struct keyring *ring = make_subject(f, ID), *r2 = NULL;

	subjects_hash(f->st->mk, ID, hash);
	/* A live subject's tree is never removed by remove_tree. */
	assert_int_equal(subjects_remove_tree(f->st, hash, -1), -EBUSY);

	/* Removal fails half way: the key is gone anyway, the certificate
	 * says what is left, and a retry finishes the job. */
	unlink_calls = 0;
	unlink_fail_at = 2;
	sys.unlinkat = failing_unlinkat;
	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure", "op", false, &cert),
			 -EIO);
	sys_reset();
	assert_int_equal(cert.ledger_seq, 1);
	assert_false(cert.tree_removed);
	assert_int_equal(subjects_open(f->st, hash, &r2), -ENOKEY);
	assert_true(open_subject_dir(f, ID) >= 0);
	assert_int_equal(subjects_certificate_verify(f->st, &cert), 0);
	assert_int_equal(subjects_remove_tree(f->st, hash, -1), 0);
	assert_int_equal(open_subject_dir(f, ID), -ENOENT);
	assert_int_equal(subjects_remove_tree(f->st, hash, -1), -ENOENT);

	/* Creation fails (no space for the IV): no row, no directory. */
	sys.openat = openat_fail_iv;
	assert_int_equal(
		subjects_create(f->st, "/customers", -1, "C-new", 0700, &r2, NULL),
		-ENOSPC);
	sys_reset();
	assert_null(r2);
	subjects_hash(f->st->mk, "C-new", hash);
	assert_int_equal(subjects_open(f->st, hash, &r2), -ENOENT);
	assert_int_equal(open_subject_dir(f, "C-new"), -ENOENT);
	assert_int_equal(
		subjects_create(f->st, "/customers", -1, "C-new", 0700, &r2, NULL), 0);
	keys_ring_free(r2);

	/* A wrapped key edited in the database: the row MAC catches it. */
	{
		struct catalog_subject *row = malloc(sizeof(*row));

		assert_non_null(row);
		assert_int_equal(catalog_subject_get(f->st->cat, hash, row), 0);
		row->wrapped[30] ^= 1;
		assert_int_equal(catalog_subject_put(f->st->cat, row), 0);
		assert_int_equal(subjects_open(f->st, hash, &r2), -EBADMSG);
		free(row);
	}
	/* Read-only store: nothing can be changed. */
	store_close(f->st);
	{
		struct secret *s = unit_secret(f->dir, "pass");

		assert_int_equal(store_open(f->store, true, &f->st), 0);
		assert_int_equal(store_unlock_passphrase(f->st, s), 0);
		secret_free(s);
	}
	assert_int_equal(
		subjects_create(f->st, "/customers", -1, "C-ro", 0700, &r2, NULL),
		-EROFS);
	keys_ring_free(ring);
}

/* --- the ledger and restored catalogues ----------------------------------------------
 */

static void test_ledger_restore(void **state)
{
	struct fixture *f = *state;
	uint8_t hash[CRYPT_HASH_BYTES], h2[CRYPT_HASH_BYTES], wrapped[KEYS_WRAPPED_BYTES];
	char line[SUBJECTS_LEDGER_LINE_MAX], bad[SUBJECTS_LEDGER_LINE_MAX];
	struct subjects_certificate cert;
	struct catalog_erasure *list = NULL, e;
	struct catalog_subject *row = malloc(sizeof(*row));
	struct keyring *r = NULL;
	size_t n;
	bool applied;

	assert_non_null(row);
	keys_ring_free(make_subject(f, ID));
	keys_ring_free(make_subject(f, "C-keep"));
	subjects_hash(f->st->mk, ID, hash);
	subjects_hash(f->st->mk, "C-keep", h2);
	assert_int_equal(catalog_subject_get(f->st->cat, hash, row), 0);
	memcpy(wrapped, row->wrapped, sizeof(wrapped));

	/* Backup: catalogue (closed cleanly: no WAL) and tree. */
	store_close(f->st);
	f->st = NULL;
	run("cd '%s' && cp -a st backup", f->dir);
	open_store(f);

	assert_int_equal(subjects_shred(f->st, NULL, ID, "erasure", "op", false, &cert),
			 0);
	assert_int_equal(catalog_erasure_list(f->st->cat, &list, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(subjects_ledger_format(&list[0], line, sizeof(line)), 0);
	assert_int_equal(subjects_ledger_format(&list[0], bad, 20), -ENAMETOOLONG);
	assert_int_equal(subjects_ledger_parse(line, &e), 0);
	assert_memory_equal(&e, &list[0], sizeof(e));
	free(list);
	assert_null(strstr(line, ID));

	/* Malformed lines. */
	assert_int_equal(subjects_ledger_parse("", &e), -EINVAL);
	assert_int_equal(subjects_ledger_parse("custodian-erasure-v1 1 2 3", &e),
			 -EINVAL);
	strcpy(bad, line);
	bad[0] = 'X';
	assert_int_equal(subjects_ledger_parse(bad, &e), -EINVAL);
	strcpy(bad, line);
	bad[strlen(bad) - 1] = ' ';
	strcat(bad, "extra\n");
	assert_int_equal(subjects_ledger_parse(bad, &e), -EINVAL);

	/* Restore the whole older store (catalogue + tree). */
	store_close(f->st);
	f->st = NULL;
	run("cd '%s' && rm -rf st && cp -a backup st", f->dir);
	open_store(f);
	/* The old catalogue brings the key back... */
	assert_int_equal(subjects_open(f->st, hash, &r), 0);
	keys_ring_free(r);
	assert_true(db_contains(f, wrapped, sizeof(wrapped)));

	/* ...a forged entry is refused... */
	assert_int_equal(subjects_ledger_parse(line, &e), 0);
	e.files++;
	assert_int_equal(subjects_ledger_apply(f->st, &e, &applied), -EBADMSG);
	assert_false(applied);

	/* ...and re-applying the ledger erases it again. */
	assert_int_equal(subjects_ledger_parse(line, &e), 0);
	assert_int_equal(subjects_ledger_apply(f->st, &e, &applied), 0);
	assert_true(applied);
	assert_int_equal(subjects_open(f->st, hash, &r), -ENOKEY);
	assert_int_equal(open_subject_dir(f, ID), -ENOENT);
	assert_false(db_contains(f, wrapped, sizeof(wrapped)));
	assert_false(store_contains(f, ID));
	assert_int_equal(subjects_open(f->st, h2, &r), 0);
	keys_ring_free(r);
	assert_int_equal(catalog_erasure_get(f->st->cat, 1, &e), 0);
	/* The re-applied entry still verifies the certificate. */
	assert_int_equal(subjects_certificate_verify(f->st, &cert), 0);

	/* Idempotent. */
	assert_int_equal(subjects_ledger_parse(line, &e), 0);
	assert_int_equal(subjects_ledger_apply(f->st, &e, &applied), 0);
	assert_false(applied);

	/* A subject re-created after the erasure keeps its new key. */
	assert_int_equal(subjects_create(f->st, "/customers", -1, ID, 0700, &r, NULL), 0);
	keys_ring_free(r);
	assert_int_equal(subjects_ledger_apply(f->st, &e, &applied), 0);
	assert_false(applied);
	assert_int_equal(subjects_open(f->st, hash, &r), 0);
	keys_ring_free(r);
	assert_true(open_subject_dir(f, ID) >= 0);
	free(row);
}

/* An entry whose number is taken in the restored ledger is renumbered. */
static void test_ledger_renumber(void **state)
{
	struct fixture *f = *state;
	char line[SUBJECTS_LEDGER_LINE_MAX];
	struct subjects_certificate cert;
	struct catalog_erasure *list = NULL, e;
	uint8_t hash[CRYPT_HASH_BYTES];
	struct keyring *r = NULL;
	size_t n;
	bool applied;

	keys_ring_free(make_subject(f, "C-a"));
	keys_ring_free(make_subject(f, "C-b"));
	store_close(f->st);
	f->st = NULL;
	run("cd '%s' && cp -a st backup", f->dir);
	open_store(f);
	assert_int_equal(
		subjects_shred(f->st, NULL, "C-a", "erasure", "op", false, &cert), 0);
	assert_int_equal(catalog_erasure_list(f->st->cat, &list, &n), 0);
	assert_int_equal(subjects_ledger_format(&list[0], line, sizeof(line)), 0);
	free(list);
	store_close(f->st);
	f->st = NULL;
	run("cd '%s' && rm -rf st && cp -a backup st", f->dir);
	open_store(f);
	/* After the restore someone shreds C-b first: seq 1 is taken. */
	assert_int_equal(
		subjects_shred(f->st, NULL, "C-b", "erasure", "op", false, &cert), 0);
	assert_int_equal(subjects_ledger_parse(line, &e), 0);
	assert_int_equal(subjects_ledger_apply(f->st, &e, &applied), 0);
	assert_true(applied);
	subjects_hash(f->st->mk, "C-a", hash);
	assert_int_equal(subjects_open(f->st, hash, &r), -ENOKEY);
	assert_int_equal(catalog_erasure_get(f->st->cat, 2, &e), 0);
	assert_memory_equal(e.hash, hash, sizeof(hash));
	{
		uint8_t mac[CRYPT_MAC_BYTES];

		subjects_erasure_mac(f->st->mk, &e, mac);
		assert_memory_equal(mac, e.mac, sizeof(mac));
	}
}

/* The shred is recorded in the audit chain, and the chain verifies. */
static void test_audit(void **state)
{
	struct fixture *f = *state;
	struct subjects_certificate cert;
	struct audit_report rep;
	struct audit *a = NULL;

	keys_ring_free(make_subject(f, ID));
	assert_int_equal(audit_open(f->st, NULL, &a), 0);
	assert_int_equal(subjects_shred(f->st, a, ID, "erasure", "op", false, &cert), 0);
	assert_true(cert.audit_seq >= 1);
	assert_int_equal(subjects_certificate_verify(f->st, &cert), 0);
	/* Held: refused before anything is recorded as done. */
	assert_int_equal(audit_flush(a), 0);
	audit_close(a);
	assert_int_equal(audit_verify(f->st->cat, f->st->mk, NULL, &rep), 0);
	assert_int_equal(rep.verdict, AUDIT_OK);
	assert_true(rep.head_seq >= cert.audit_seq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_open_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_id_never_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shred, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restored_ciphertext, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ledger_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ledger_renumber, setup, teardown),
		cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
