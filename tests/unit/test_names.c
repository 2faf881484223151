/*
 * test_names.c — unit tests for fs/names.c: name encryption round trips,
 * determinism and per-directory separation, long names and sidecars,
 * tampering, reserved entries, invalid names, directory IV files, and
 * failure injection through the sys seam.
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

#include "crypt.h"
#include "names.h"
#include "sys.h"

static char tmpdir[64];
static struct keyring *ring;
static struct keyring *ring2;
static uint8_t iv1[CRYPT_DIRIV_BYTES], iv2[CRYPT_DIRIV_BYTES];
static int dir_seq;

static struct keyring *random_ring(void)
{
	struct keyring *r = crypt_secure_alloc(sizeof(*r));

	assert_non_null(r);
	crypt_random(r, sizeof(*r));
	return r;
}

static int setup(void **state)
{
	(void)state;
	if (crypt_init() != 0)
		return -1;
	strcpy(tmpdir, "/tmp/test_names.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	ring = random_ring();
	ring2 = random_ring();
	crypt_random(iv1, sizeof(iv1));
	crypt_random(iv2, sizeof(iv2));
	return 0;
}

static int teardown(void **state)
{
	char cmd[256];

	(void)state;
	crypt_secure_free(ring);
	crypt_secure_free(ring2);
	snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s'; rm -rf '%s'", tmpdir, tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static int new_dir(void)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/d%d", tmpdir, dir_seq++);
	assert_int_equal(mkdir(path, 0700), 0);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static int count_entries(int dirfd)
{
	int fd = dup(dirfd), n = 0;
	DIR *d;
	struct dirent *e;

	assert_true(fd >= 0);
	d = fdopendir(fd);
	assert_non_null(d);
	rewinddir(d);
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* Encrypts, checks the encoding's shape, stores a sidecar if long, and
 * decrypts back through a real directory. */
static void round_trip(int dirfd, const char *plain)
{
	struct names_enc e;
	char out[NAMES_PLAIN_MAX + 1];

	assert_int_equal(names_encrypt(ring, iv1, plain, &e), 0);
	assert_true(strlen(e.backing) <= NAMES_BACKING_MAX);
	assert_false(names_reserved(e.backing));
	if (e.is_long) {
		assert_int_equal(strncmp(e.backing, ".L", 2), 0);
		assert_int_equal(strlen(e.backing), 45);
		assert_true(strlen(e.full) > NAMES_BACKING_MAX);
		assert_int_equal(names_long_store(dirfd, &e), 0);
	} else {
		assert_string_equal(e.backing, e.full);
		assert_true(e.backing[0] != '.');
		for (const char *c = e.backing; *c; c++)
			assert_non_null(strchr(
				"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				"0123456789-_",
				*c));
	}
	assert_int_equal(names_decrypt(ring, iv1, dirfd, e.backing, out), 0);
	assert_string_equal(out, plain);
	/* Another key or another directory's IV does not open it. */
	assert_int_equal(names_decrypt(ring2, iv1, dirfd, e.backing, out), -EIO);
	assert_int_equal(names_decrypt(ring, iv2, dirfd, e.backing, out), -EIO);
	assert_int_equal(names_long_remove(dirfd, &e), 0);
}

static void test_round_trip(void **state)
{
	int dfd = new_dir();
	char name[NAMES_PLAIN_MAX + 1];
	size_t n = 0;

	(void)state;
	round_trip(dfd, "a");
	round_trip(dfd, "hello world.txt");
	round_trip(dfd, " leading and trailing ");
	round_trip(dfd, "Zażółć gęślą jaźń — 日本語 🙂.odt");
	round_trip(dfd, "...");
	round_trip(dfd, ".hidden");
	round_trip(dfd, ".L");
	round_trip(dfd, ".iv");
	round_trip(dfd, "-");

	/* Every byte value 1..255 except '/', in one name... */
	for (int c = 1; c < 256; c++)
		if (c != '/')
			name[n++] = (char)c;
	name[n] = '\0';
	assert_int_equal(n, 254);
	round_trip(dfd, name);
	/* ...and alone (except "." which is not a name). */
	for (int c = 1; c < 256; c++) {
		if (c == '/' || c == '.')
			continue;
		name[0] = (char)c;
		name[1] = '\0';
		round_trip(dfd, name);
	}

	/* 255 bytes: ASCII, and UTF-8 (2-byte characters plus one byte). */
	memset(name, 'x', 255);
	name[255] = '\0';
	round_trip(dfd, name);
	for (n = 0; n + 2 <= 254; n += 2)
		memcpy(name + n, "\xc3\xa9", 2);
	name[n++] = 'e';
	name[n] = '\0';
	assert_int_equal(strlen(name), 255);
	round_trip(dfd, name);

	/* The long/short boundary: 175 bytes encode to 255 characters. */
	struct names_enc e;
	memset(name, 'q', 175);
	name[175] = '\0';
	assert_int_equal(names_encrypt(ring, iv1, name, &e), 0);
	assert_false(e.is_long);
	assert_int_equal(strlen(e.backing), 255);
	round_trip(dfd, name);
	name[175] = 'q';
	name[176] = '\0';
	assert_int_equal(names_encrypt(ring, iv1, name, &e), 0);
	assert_true(e.is_long);
	round_trip(dfd, name);
	/* Nothing is left behind by the round trips (sidecars removed). */
	assert_int_equal(count_entries(dfd), 0);
	close(dfd);
}

static void test_determinism(void **state)
{
	struct names_enc a, b, c, d, e;

	(void)state;
	assert_int_equal(names_encrypt(ring, iv1, "report.pdf", &a), 0);
	assert_int_equal(names_encrypt(ring, iv1, "report.pdf", &b), 0);
	assert_string_equal(a.backing, b.backing);
	assert_int_equal(names_encrypt(ring, iv2, "report.pdf", &c), 0);
	assert_string_not_equal(a.backing, c.backing);
	assert_int_equal(names_encrypt(ring2, iv1, "report.pdf", &d), 0);
	assert_string_not_equal(a.backing, d.backing);
	assert_int_equal(names_encrypt(ring, iv1, "report.pdg", &e), 0);
	assert_string_not_equal(a.backing, e.backing);
	/* Length is visible (documented): SIV + name, base64url. */
	assert_int_equal(strlen(a.backing), (16 + 10) * 4 / 3 + 1);
}

static void test_invalid_names(void **state)
{
	struct names_enc e;
	char name[300];

	(void)state;
	assert_int_equal(names_encrypt(ring, iv1, "", &e), -EINVAL);
	assert_int_equal(names_encrypt(ring, iv1, ".", &e), -EINVAL);
	assert_int_equal(names_encrypt(ring, iv1, "..", &e), -EINVAL);
	assert_int_equal(names_encrypt(ring, iv1, "a/b", &e), -EINVAL);
	assert_int_equal(names_encrypt(ring, iv1, "/", &e), -EINVAL);
	assert_int_equal(names_encrypt(ring, iv1, "ab/", &e), -EINVAL);
	memset(name, 'a', 256);
	name[256] = '\0';
	assert_int_equal(names_encrypt(ring, iv1, name, &e), -ENAMETOOLONG);
	memset(name, 'a', 299);
	name[299] = '\0';
	assert_int_equal(names_encrypt(ring, iv1, name, &e), -ENAMETOOLONG);
}

static void test_reserved(void **state)
{
	char out[NAMES_PLAIN_MAX + 1];
	int dfd = new_dir();
	char l43[64], l44[64], l42[64], lbad1[64], lbad2[64], n43[64], ok2[64];
	const char *reserved[] = {".",  "..",      ".iv", ".N", ".Nabc", n43,  ".x",
				  ".L", ".Lshort", l44,   l42,  lbad1,   lbad2};

	(void)state;
	snprintf(l43, sizeof(l43), ".L%.43s",
		 "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
	assert_int_equal(strlen(l43), 45);
	snprintf(l44, sizeof(l44), "%.45sA", l43);
	snprintf(l42, sizeof(l42), "%.44s", l43);
	snprintf(lbad1, sizeof(lbad1), "%.44s.", l43);
	snprintf(lbad2, sizeof(lbad2), "%.10s=%s", l43, l43 + 11);
	snprintf(n43, sizeof(n43), ".N%s", l43 + 2);
	snprintf(ok2, sizeof(ok2), ".L-_%s", l43 + 4);
	assert_int_equal(strlen(lbad2), 45);
	assert_int_equal(strlen(ok2), 45);
	for (size_t i = 0; i < ARRAY_LEN(reserved); i++) {
		assert_true(names_reserved(reserved[i]));
		assert_int_equal(names_decrypt(ring, iv1, dfd, reserved[i], out),
				 -ENOENT);
	}
	assert_false(names_reserved(l43));
	assert_false(names_reserved(ok2));
	/* A well-formed long entry without a sidecar is not reserved: it is a
	 * name that does not decrypt. */
	assert_int_equal(names_decrypt(ring, iv1, dfd, l43, out), -EIO);
	assert_false(names_reserved("abc"));
	assert_false(names_reserved("N"));
	close(dfd);
}

static void test_tampered_names(void **state)
{
	const char *b64 =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char out[NAMES_PLAIN_MAX + 1], t[NAMES_BACKING_MAX + 2];
	struct names_enc e;
	int dfd = new_dir();

	(void)state;
	assert_int_equal(names_encrypt(ring, iv1, "invoice-2024.pdf", &e), 0);
	size_t n = strlen(e.backing);
	/* Every character replaced by every other base64url character. */
	for (size_t i = 0; i < n; i++) {
		for (const char *c = b64; *c; c++) {
			if (*c == e.backing[i])
				continue;
			strcpy(t, e.backing);
			t[i] = *c;
			assert_int_equal(names_decrypt(ring, iv1, dfd, t, out), -EIO);
			assert_string_equal(out, "");
		}
	}
	/* Cut, extended, non-base64, too short to hold a SIV. */
	strcpy(t, e.backing);
	t[n - 1] = '\0';
	assert_int_equal(names_decrypt(ring, iv1, dfd, t, out), -EIO);
	strcpy(t, e.backing);
	strcat(t, "A");
	assert_int_equal(names_decrypt(ring, iv1, dfd, t, out), -EIO);
	strcpy(t, e.backing);
	t[3] = '+';
	assert_int_equal(names_decrypt(ring, iv1, dfd, t, out), -EIO);
	assert_int_equal(names_decrypt(ring, iv1, dfd, "AAAAAAAAAAAAAAAAAAAAAA", out),
			 -EIO);
	assert_int_equal(names_decrypt(ring, iv1, dfd, "", out), -EIO);
	assert_int_equal(names_decrypt(ring, iv1, dfd, "x", out), -EIO);
	/* An over-long direct name is never valid. */
	memset(t, 'A', 256);
	t[256] = '\0';
	assert_int_equal(names_decrypt(ring, iv1, dfd, t, out), -EIO);
	/* The untouched name still works. */
	assert_int_equal(names_decrypt(ring, iv1, dfd, e.backing, out), 0);
	assert_string_equal(out, "invoice-2024.pdf");
	close(dfd);
}

static void write_file(int dfd, const char *name, const void *data, size_t n)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	close(fd);
}

static void test_long_names_sidecar(void **state)
{
	char out[NAMES_PLAIN_MAX + 1];
	char a[201], b[201], side[NAMES_BACKING_MAX + 1];
	struct names_enc ea, eb;
	int dfd = new_dir();

	(void)state;
	memset(a, 'a', 200);
	a[200] = '\0';
	memset(b, 'b', 200);
	b[200] = '\0';
	assert_int_equal(names_encrypt(ring, iv1, a, &ea), 0);
	assert_int_equal(names_encrypt(ring, iv1, b, &eb), 0);
	assert_true(ea.is_long && eb.is_long);
	snprintf(side, sizeof(side), ".N%.43s", ea.backing + 2);

	/* Missing sidecar. */
	assert_int_equal(names_decrypt(ring, iv1, dfd, ea.backing, out), -EIO);
	/* Stored: a reserved sidecar file holding the full encoding, mode
	 * 0444, and nothing else (no temp file left). */
	assert_int_equal(names_long_store(dfd, &ea), 0);
	assert_true(names_reserved(side));
	struct stat st;
	assert_int_equal(fstatat(dfd, side, &st, 0), 0);
	assert_int_equal(st.st_size, (off_t)strlen(ea.full));
	assert_int_equal(st.st_mode & 07777, 0444);
	assert_int_equal(count_entries(dfd), 1);
	assert_int_equal(names_decrypt(ring, iv1, dfd, ea.backing, out), 0);
	assert_string_equal(out, a);
	/* Storing again replaces it atomically. */
	assert_int_equal(names_long_store(dfd, &ea), 0);
	assert_int_equal(count_entries(dfd), 1);

	/* A sidecar whose content belongs to another name: hash mismatch. */
	assert_int_equal(unlinkat(dfd, side, 0), 0);
	write_file(dfd, side, eb.full, strlen(eb.full));
	assert_int_equal(names_decrypt(ring, iv1, dfd, ea.backing, out), -EIO);
	/* Garbled, empty, oversized, NUL inside. */
	char junk[NAMES_FULL_MAX + 10];
	memset(junk, 'A', sizeof(junk));
	write_file(dfd, side, junk, sizeof(junk));
	assert_int_equal(names_decrypt(ring, iv1, dfd, ea.backing, out), -EIO);
	write_file(dfd, side, "", 0);
	assert_int_equal(names_decrypt(ring, iv1, dfd, ea.backing, out), -EIO);
	strcpy(junk, ea.full);
	junk[10] = '\0';
	write_file(dfd, side, junk, strlen(ea.full));
	assert_int_equal(names_decrypt(ring, iv1, dfd, ea.backing, out), -EIO);
	/* A sidecar that matches its entry's hash but whose encoding was
	 * tampered with cannot exist without a hash collision; a matching but
	 * unauthentic one (we compute the hash ourselves) fails the SIV. */
	char forged[NAMES_FULL_MAX];
	uint8_t h[32];
	char fe[64], fs[64];
	strcpy(forged, ea.full);
	forged[20] = forged[20] == 'A' ? 'B' : 'A';
	crypt_hash(h, sizeof(h), NULL, forged, strlen(forged));
	strcpy(fe, ".L");
	assert_int_equal(crypt_b64_encode(fe + 2, sizeof(fe) - 2, h, sizeof(h)), 43);
	snprintf(fs, sizeof(fs), ".N%s", fe + 2);
	write_file(dfd, fs, forged, strlen(forged));
	assert_int_equal(names_decrypt(ring, iv1, dfd, fe, out), -EIO);
	/* A short (directly storable) encoding stored as a long name is not
	 * canonical and is refused, so no name can be listed twice. */
	struct names_enc es;
	assert_int_equal(names_encrypt(ring, iv1, "short", &es), 0);
	crypt_hash(h, sizeof(h), NULL, es.full, strlen(es.full));
	assert_int_equal(crypt_b64_encode(fe + 2, sizeof(fe) - 2, h, sizeof(h)), 43);
	snprintf(fs, sizeof(fs), ".N%s", fe + 2);
	write_file(dfd, fs, es.full, strlen(es.full));
	assert_int_equal(names_decrypt(ring, iv1, dfd, fe, out), -EIO);
	/* A sidecar that is a symlink is not followed. */
	assert_int_equal(unlinkat(dfd, side, 0), 0);
	write_file(dfd, "target", ea.full, strlen(ea.full));
	assert_int_equal(symlinkat("target", dfd, side), 0);
	assert_int_equal(names_decrypt(ring, iv1, dfd, ea.backing, out), -EIO);
	assert_int_equal(unlinkat(dfd, side, 0), 0);

	/* Remove: gone, and removing again is fine; short names are no-ops. */
	assert_int_equal(names_long_store(dfd, &ea), 0);
	assert_int_equal(names_long_remove(dfd, &ea), 0);
	assert_int_equal(faccessat(dfd, side, F_OK, 0), -1);
	assert_int_equal(names_long_remove(dfd, &ea), 0);
	assert_int_equal(names_long_store(dfd, &es), 0);
	assert_int_equal(names_long_remove(dfd, &es), 0);
	close(dfd);
}

/* ---- failure injection ---------------------------------------------------- */

static int calls, fail_at, fail_errno;

static ssize_t fail_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (++calls == fail_at) {
		errno = fail_errno;
		return -1;
	}
	return pwrite(fd, buf, n, off);
}

static int fail_fsync(int fd)
{
	if (++calls == fail_at) {
		errno = fail_errno;
		return -1;
	}
	return fsync(fd);
}

static int fail_renameat(int a, const char *b, int c, const char *d)
{
	if (++calls == fail_at) {
		errno = fail_errno;
		return -1;
	}
	return renameat(a, b, c, d);
}

static int fail_unlinkat(int dfd, const char *p, int flags)
{
	(void)dfd;
	(void)p;
	(void)flags;
	errno = EACCES;
	return -1;
}

static void test_long_store_failures(void **state)
{
	char name[201];
	struct names_enc e;
	int dfd = new_dir();

	(void)state;
	memset(name, 'z', 200);
	name[200] = '\0';
	assert_int_equal(names_encrypt(ring, iv1, name, &e), 0);

	calls = 0, fail_at = 1, fail_errno = ENOSPC;
	sys.pwrite = fail_pwrite;
	assert_int_equal(names_long_store(dfd, &e), -ENOSPC);
	sys_reset();
	assert_int_equal(count_entries(dfd), 0); /* temp file cleaned up */

	calls = 0, fail_at = 1, fail_errno = EIO;
	sys.fsync = fail_fsync;
	assert_int_equal(names_long_store(dfd, &e), -EIO);
	sys_reset();
	assert_int_equal(count_entries(dfd), 0);

	calls = 0, fail_at = 1, fail_errno = EXDEV;
	sys.renameat = fail_renameat;
	assert_int_equal(names_long_store(dfd, &e), -EXDEV);
	sys_reset();
	assert_int_equal(count_entries(dfd), 0);

	assert_int_equal(names_long_store(dfd, &e), 0);
	sys.unlinkat = fail_unlinkat;
	assert_int_equal(names_long_remove(dfd, &e), -EACCES);
	sys_reset();
	assert_int_equal(names_long_remove(dfd, &e), 0);
	assert_int_equal(count_entries(dfd), 0);

	/* A read-only directory: the error comes back as is. */
	assert_int_equal(fchmod(dfd, 0500), 0);
	if (geteuid() != 0)
		assert_int_equal(names_long_store(dfd, &e), -EACCES);
	assert_int_equal(fchmod(dfd, 0700), 0);
	close(dfd);
}

static void test_diriv(void **state)
{
	uint8_t iv[CRYPT_DIRIV_BYTES], iv_b[CRYPT_DIRIV_BYTES], back[CRYPT_DIRIV_BYTES];
	int dfd = new_dir(), dfd2 = new_dir();
	struct stat st;

	(void)state;
	/* Missing. */
	assert_int_equal(names_diriv_load(dfd, back), -EIO);
	assert_int_equal(names_diriv_create(dfd, iv), 0);
	assert_int_equal(fstatat(dfd, ".iv", &st, 0), 0);
	assert_int_equal(st.st_size, CRYPT_DIRIV_BYTES);
	assert_int_equal(st.st_mode & 07777, 0444);
	assert_int_equal(names_diriv_load(dfd, back), 0);
	assert_memory_equal(iv, back, sizeof(iv));
	/* Never replaced. */
	assert_int_equal(names_diriv_create(dfd, iv_b), -EEXIST);
	assert_int_equal(names_diriv_load(dfd, back), 0);
	assert_memory_equal(iv, back, sizeof(iv));
	/* Random per directory. */
	assert_int_equal(names_diriv_create(dfd2, iv_b), 0);
	assert_memory_not_equal(iv, iv_b, sizeof(iv));

	/* Short and long IV files are damage. */
	assert_int_equal(unlinkat(dfd2, ".iv", 0), 0);
	write_file(dfd2, ".iv", "0123456789abcde", 15);
	assert_int_equal(names_diriv_load(dfd2, back), -EIO);
	write_file(dfd2, ".iv", "0123456789abcdef0", 17);
	assert_int_equal(names_diriv_load(dfd2, back), -EIO);
	write_file(dfd2, ".iv", "", 0);
	assert_int_equal(names_diriv_load(dfd2, back), -EIO);
	/* A symlinked IV is not followed. */
	assert_int_equal(unlinkat(dfd2, ".iv", 0), 0);
	write_file(dfd2, "real", "0123456789abcdef", 16);
	assert_int_equal(symlinkat("real", dfd2, ".iv"), 0);
	assert_int_equal(names_diriv_load(dfd2, back), -EIO);
	close(dfd2);

	/* A failed create leaves no IV file behind. */
	int dfd3 = new_dir();
	calls = 0, fail_at = 1, fail_errno = ENOSPC;
	sys.pwrite = fail_pwrite;
	assert_int_equal(names_diriv_create(dfd3, iv), -ENOSPC);
	sys_reset();
	assert_int_equal(count_entries(dfd3), 0);
	calls = 0, fail_at = 1, fail_errno = EIO;
	sys.fsync = fail_fsync;
	assert_int_equal(names_diriv_create(dfd3, iv), -EIO);
	sys_reset();
	assert_int_equal(count_entries(dfd3), 0);
	assert_int_equal(names_diriv_create(dfd3, iv), 0);
	close(dfd3);
	close(dfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_invalid_names),
		cmocka_unit_test(test_reserved),
		cmocka_unit_test(test_tampered_names),
		cmocka_unit_test(test_long_names_sidecar),
		cmocka_unit_test(test_long_store_failures),
		cmocka_unit_test(test_diriv),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
