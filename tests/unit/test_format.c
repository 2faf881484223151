/*
 * test_format.c — unit tests for fs/format.c: header encoding and
 * authentication, the size rule, read/write/truncate against an in-memory
 * model (an fsx in miniature), holes and sparseness, tamper detection, and
 * failure injection through the sys seam.
 */
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

#include "clock.h"
#include "crypt.h"
#include "format.h"
#include "sys.h"

#define BP CRYPT_BLOCK_PLAIN
#define BC CRYPT_BLOCK_CIPHER
#define HDR FORMAT_HEADER_BYTES

static char tmpdir[64];
static struct keyring *ring;
static struct keyring *ring2;
static int file_seq;

/* ---- fixtures ------------------------------------------------------------ */

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
	strcpy(tmpdir, "/tmp/test_format.XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	ring = random_ring();
	ring2 = random_ring();
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	crypt_secure_free(ring);
	crypt_secure_free(ring2);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static int new_fd(void)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/f%d", tmpdir, file_seq++);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	return fd;
}

static off_t cipher_size(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return st.st_size;
}

static void fill_pattern(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
}

/* Writes n pattern bytes to a fresh file and returns it loaded. */
static void make_file(struct format_file *f, size_t n, unsigned seed, uint8_t **content)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	fill_pattern(p, n, seed);
	assert_int_equal(format_file_create(f, new_fd(), ring, 1234), 0);
	if (n)
		assert_int_equal(format_file_write(f, p, n, 0), (ssize_t)n);
	*content = p;
}

static void expect_content(struct format_file *f, const uint8_t *want, size_t n)
{
	uint8_t *got = malloc(n + 10);
	off_t size;

	assert_non_null(got);
	assert_int_equal(format_file_size(f, &size), 0);
	assert_int_equal(size, (off_t)n);
	assert_int_equal(format_file_read(f, got, n + 10, 0), (ssize_t)n);
	if (n)
		assert_memory_equal(got, want, n);
	free(got);
}

/* ---- failure injection through the sys seam ----------------------------- */

static int pwrite_calls, pwrite_fail_at, pwrite_errno;
static int pread_fail, ftruncate_fail;

static ssize_t fail_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (++pwrite_calls == pwrite_fail_at) {
		errno = pwrite_errno;
		return -1;
	}
	return pwrite(fd, buf, n, off);
}

static ssize_t fail_pread(int fd, void *buf, size_t n, off_t off)
{
	if (pread_fail) {
		errno = EIO;
		return -1;
	}
	return pread(fd, buf, n, off);
}

static int fail_ftruncate(int fd, off_t len)
{
	if (ftruncate_fail) {
		errno = EIO;
		return -1;
	}
	return ftruncate(fd, len);
}

static void inject_pwrite(int at, int err)
{
	pwrite_calls = 0;
	pwrite_fail_at = at;
	pwrite_errno = err;
	sys.pwrite = fail_pwrite;
}

/* ---- header --------------------------------------------------------------- */

static void sample_header(struct format_header *h)
{
	memset(h, 0, sizeof(*h));
	h->version = FORMAT_VERSION;
	h->flags = FORMAT_FLAG_WORM;
	crypt_random(h->file_id, sizeof(h->file_id));
	h->birth_us = -1234567; /* signed: before the epoch survives */
	h->keep_until_us = 1700000000000000LL;
}

static void test_header_round_trip(void **state)
{
	uint8_t buf[HDR];
	struct format_header h, d;

	(void)state;
	sample_header(&h);
	assert_int_equal(format_header_encode(buf, &h, ring), 0);
	assert_memory_equal(buf, "CSTD", 4);
	assert_int_equal(buf[4], 1);
	assert_int_equal(buf[5], 0);
	assert_int_equal(buf[6], 1);
	assert_memory_equal(buf + 8, h.file_id, 32);
	for (int i = 56; i < 64; i++)
		assert_int_equal(buf[i], 0);
	assert_int_equal(format_header_decode(buf, &d, ring), 0);
	assert_int_equal(d.version, FORMAT_VERSION);
	assert_int_equal(d.flags, FORMAT_FLAG_WORM);
	assert_memory_equal(d.file_id, h.file_id, 32);
	assert_int_equal(d.birth_us, -1234567);
	assert_int_equal(d.keep_until_us, 1700000000000000LL);
}

static void test_header_bad_magic(void **state)
{
	uint8_t buf[HDR];
	struct format_header h, d;

	(void)state;
	sample_header(&h);
	assert_int_equal(format_header_encode(buf, &h, ring), 0);
	buf[0] = 'X';
	assert_int_equal(format_header_decode(buf, &d, ring), -EIO);
}

static void test_header_unknown_version(void **state)
{
	uint8_t buf[HDR];
	struct format_header h, d;

	(void)state;
	sample_header(&h);
	h.version = 2; /* correctly MACed, but a version we do not know */
	assert_int_equal(format_header_encode(buf, &h, ring), 0);
	assert_int_equal(format_header_decode(buf, &d, ring), -EIO);
	h.version = 0;
	assert_int_equal(format_header_encode(buf, &h, ring), 0);
	assert_int_equal(format_header_decode(buf, &d, ring), -EIO);
}

static void test_header_every_bit_flip(void **state)
{
	uint8_t buf[HDR];
	struct format_header h, d;

	(void)state;
	sample_header(&h);
	assert_int_equal(format_header_encode(buf, &h, ring), 0);
	for (int bit = 0; bit < HDR * 8; bit++) {
		buf[bit / 8] ^= (uint8_t)(1 << (bit % 8));
		assert_int_equal(format_header_decode(buf, &d, ring), -EIO);
		buf[bit / 8] ^= (uint8_t)(1 << (bit % 8));
	}
	assert_int_equal(format_header_decode(buf, &d, ring), 0);
}

static void test_header_wrong_ring(void **state)
{
	uint8_t buf[HDR];
	struct format_header h, d;

	(void)state;
	sample_header(&h);
	assert_int_equal(format_header_encode(buf, &h, ring), 0);
	assert_int_equal(format_header_decode(buf, &d, ring2), -EIO);
}

static void test_header_reserved_nonzero(void **state)
{
	uint8_t buf[HDR], key[CRYPT_KEY_BYTES];
	struct format_header h, d;

	(void)state;
	sample_header(&h);
	assert_int_equal(format_header_encode(buf, &h, ring), 0);
	/* Forge a valid MAC (we hold the key) over non-zero reserved bytes. */
	buf[60] = 1;
	crypt_hash(key, sizeof(key), ring->content, h.file_id, 32);
	crypt_hash(buf + 64, 16, key, buf, 64);
	assert_int_equal(format_header_decode(buf, &d, ring), -EIO);
}

/* ---- size rule ------------------------------------------------------------ */

static void test_size_rule(void **state)
{
	(void)state;
	assert_int_equal(format_plain_size(0), 0);
	assert_int_equal(format_plain_size(HDR), 0);
	assert_int_equal(format_cipher_size(0), HDR);
	assert_int_equal(format_cipher_size(1), HDR + 41);
	assert_int_equal(format_cipher_size(BP), HDR + BC);
	assert_int_equal(format_cipher_size(BP + 1), HDR + BC + 41);
	assert_int_equal(format_cipher_size(10 * BP + 100), HDR + 10 * BC + 140);
	for (off_t p = 0; p < 5 * BP; p += 37)
		assert_int_equal(format_plain_size(format_cipher_size(p)), p);
	for (off_t p = (off_t)1 << 40; p < ((off_t)1 << 40) + 3 * BP; p += 1001)
		assert_int_equal(format_plain_size(format_cipher_size(p)), p);
	/* Impossible sizes: a partial header, or a tail too short to hold a
	 * nonce, a tag and at least one byte. */
	for (off_t c = 1; c < HDR; c++)
		assert_int_equal(format_plain_size(c), -EIO);
	for (off_t k = 0; k < 3; k++)
		for (off_t r = 1; r <= 40; r++)
			assert_int_equal(format_plain_size(HDR + k * BC + r), -EIO);
	assert_int_equal(format_plain_size(HDR + 41), 1);
	assert_int_equal(format_plain_size(HDR + BC - 1), BP - 1);
}

/* ---- create/load/header persistence -------------------------------------- */

static void test_create_load(void **state)
{
	struct format_file f, g;
	int fd = new_fd();
	off_t size;

	(void)state;
	/* A 0-byte file loads header-less and reads as empty. */
	assert_int_equal(format_file_load(&f, fd, ring), 0);
	assert_false(f.have_header);
	assert_int_equal(format_file_size(&f, &size), 0);
	assert_int_equal(size, 0);
	uint8_t b[8];
	assert_int_equal(format_file_read(&f, b, sizeof(b), 0), 0);
	/* A truncate to 0 of a header-less file stays header-less. */
	assert_int_equal(format_file_truncate(&f, 0), 0);
	assert_int_equal(cipher_size(fd), 0);

	assert_int_equal(format_file_create(&f, fd, ring, 42), 0);
	assert_true(f.have_header);
	assert_int_equal(cipher_size(fd), HDR);
	assert_int_equal(format_file_create(&g, fd, ring, 42), -EEXIST);
	assert_int_equal(format_file_load(&g, fd, ring), 0);
	assert_true(g.have_header);
	assert_int_equal(g.hdr.birth_us, 42);
	assert_memory_equal(g.hdr.file_id, f.hdr.file_id, 32);
	assert_int_equal(format_file_load(&g, fd, ring2), -EIO);

	/* Header updates (retention) persist and stay authenticated. */
	f.hdr.flags = FORMAT_FLAG_WORM;
	f.hdr.keep_until_us = 99;
	assert_int_equal(format_file_write_header(&f), 0);
	assert_int_equal(format_file_load(&g, fd, ring), 0);
	assert_int_equal(g.hdr.flags, FORMAT_FLAG_WORM);
	assert_int_equal(g.hdr.keep_until_us, 99);
	g.have_header = false;
	assert_int_equal(format_file_write_header(&g), -EINVAL);

	/* A partial header is damage. */
	assert_int_equal(ftruncate(fd, 50), 0);
	assert_int_equal(format_file_load(&g, fd, ring), -EIO);
	close(fd);
}

static void test_first_write_creates_header(void **state)
{
	struct format_file f, g;
	int fd = new_fd();
	int64_t before = clock_now_us();

	(void)state;
	assert_int_equal(format_file_load(&f, fd, ring), 0);
	assert_int_equal(format_file_write(&f, "", 0, 0), 0);
	assert_int_equal(cipher_size(fd), 0); /* empty write: no header yet */
	assert_int_equal(format_file_write(&f, "hello", 5, 0), 5);
	assert_true(f.have_header);
	assert_true(f.hdr.birth_us >= before && f.hdr.birth_us <= clock_now_us());
	assert_int_equal(cipher_size(fd), HDR + 45);
	assert_int_equal(format_file_load(&g, fd, ring), 0);
	expect_content(&g, (const uint8_t *)"hello", 5);

	/* A truncate-grow also creates the header. */
	int fd2 = new_fd();
	assert_int_equal(format_file_load(&f, fd2, ring), 0);
	assert_int_equal(format_file_truncate(&f, 10000), 0);
	assert_true(f.have_header);
	uint8_t zero[10000] = {0};
	expect_content(&f, zero, sizeof(zero));
	close(fd);
	close(fd2);
}

static void test_truncate_to_zero_keeps_header(void **state)
{
	struct format_file f, g;
	uint8_t *p;

	(void)state;
	make_file(&f, 9000, 1, &p);
	assert_int_equal(format_file_truncate(&f, 0), 0);
	assert_int_equal(cipher_size(f.fd), HDR);
	assert_int_equal(format_file_load(&g, f.fd, ring), 0);
	assert_int_equal(g.hdr.birth_us, 1234);
	assert_memory_equal(g.hdr.file_id, f.hdr.file_id, 32);
	assert_int_equal(format_file_write(&g, "x", 1, 0), 1);
	assert_int_equal(g.hdr.birth_us, 1234);
	expect_content(&g, (const uint8_t *)"x", 1);
	close(f.fd);
	free(p);
}

static void test_bad_args(void **state)
{
	struct format_file f;
	uint8_t b[4] = {0};
	uint8_t *p;

	(void)state;
	make_file(&f, 100, 2, &p);
	assert_int_equal(format_file_read(&f, b, 4, -1), -EINVAL);
	assert_int_equal(format_file_write(&f, b, 4, -1), -EINVAL);
	assert_int_equal(format_file_truncate(&f, -1), -EINVAL);
	assert_int_equal(format_file_write(&f, b, 4, (off_t)1 << 62), -EFBIG);
	assert_int_equal(format_file_truncate(&f, (off_t)1 << 62), -EFBIG);
	/* Reads at and past EOF, and short reads at EOF. */
	assert_int_equal(format_file_read(&f, b, 4, 100), 0);
	assert_int_equal(format_file_read(&f, b, 4, 5000), 0);
	assert_int_equal(format_file_read(&f, b, 4, 98), 2);
	assert_memory_equal(b, p + 98, 2);
	close(f.fd);
	free(p);
}

/* ---- fsx in miniature ----------------------------------------------------- */

#define MODEL_MAX (80 * BP)
#ifndef FSX_OPS
#define FSX_OPS 4000 /* override with -DFSX_OPS=... for a long run */
#endif

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	/* xorshift64*: a fixed seed keeps failures reproducible. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

/* Offsets near block boundaries are where the bugs are. */
static off_t rnd_off(off_t max)
{
	if (rnd() % 3 == 0) {
		off_t b = (off_t)(rnd() % (uint64_t)(max / BP + 1)) * BP;
		off_t d = (off_t)(rnd() % 5) - 2;

		return b + d < 0 ? 0 : (b + d > max ? max : b + d);
	}
	return (off_t)(rnd() % (uint64_t)(max + 1));
}

static void test_fsx(void **state)
{
	uint8_t *model = calloc(1, MODEL_MAX);
	uint8_t *buf = malloc(MODEL_MAX);
	uint8_t *got = malloc(MODEL_MAX);
	struct format_file f;
	off_t size = 0;
	int fd = new_fd();

	(void)state;
	assert_non_null(model);
	assert_non_null(buf);
	assert_non_null(got);
	assert_int_equal(format_file_load(&f, fd, ring), 0);
	for (int op = 0; op < FSX_OPS; op++) {
		unsigned kind = (unsigned)(rnd() % 10);

		if (kind < 4) { /* write */
			off_t off = rnd_off(MODEL_MAX - 1);
			size_t len = (size_t)(rnd() % (rnd() % 2 ? 300 : 3 * BP)) + 1;

			if (off + (off_t)len > MODEL_MAX)
				len = (size_t)(MODEL_MAX - off);
			for (size_t i = 0; i < len; i++)
				buf[i] = (uint8_t)rnd();
#ifdef FSX_TRACE
			fprintf(stderr, "%d write off=%ld len=%zu size=%ld\n", op,
				(long)off, len, (long)size);
#endif
			assert_int_equal(format_file_write(&f, buf, len, off),
					 (ssize_t)len);
			if (off > size)
				memset(model + size, 0, (size_t)(off - size));
			memcpy(model + off, buf, len);
			if (off + (off_t)len > size)
				size = off + (off_t)len;
		} else if (kind < 6) { /* truncate */
			off_t ns = rnd_off(MODEL_MAX);

#ifdef FSX_TRACE
			fprintf(stderr, "%d trunc %ld size=%ld\n", op, (long)ns,
				(long)size);
#endif
			assert_int_equal(format_file_truncate(&f, ns), 0);
			if (ns > size)
				memset(model + size, 0, (size_t)(ns - size));
			size = ns;
		} else { /* read */
			off_t off = rnd_off(MODEL_MAX - 1);
			size_t len = (size_t)(rnd() % (3 * BP)) + 1;
			ssize_t want = off >= size
					       ? 0
					       : (off + (off_t)len > size ? size - off
									  : (ssize_t)len);

			struct format_file g = f;

			assert_int_equal(format_file_read(&f, got, len, off), want);
			if (want > 0)
				assert_memory_equal(got, model + off, (size_t)want);
			/* The same read without asking the length first (a
			 * daemon handle opened on a file of possible length). */
			g.len_ok = true;
			memset(got, 0xa5, len);
			assert_int_equal(format_file_read(&g, got, len, off), want);
			if (want > 0)
				assert_memory_equal(got, model + off, (size_t)want);
		}
		if (op % 500 == 499 || op == FSX_OPS - 1) {
			off_t s;
			struct format_file g;

			assert_int_equal(format_file_size(&f, &s), 0);
			assert_int_equal(s, size);
			assert_int_equal(cipher_size(fd),
					 size || f.have_header ? format_cipher_size(size)
							       : 0);
			assert_int_equal(format_file_verify(fd, ring, NULL, NULL), 0);
			/* Reload from disk: a fresh handle sees the same file. */
			assert_int_equal(format_file_load(&g, fd, ring), 0);
			if (size)
				assert_int_equal(format_file_read(&g, got, MODEL_MAX, 0),
						 (ssize_t)size);
			if (size)
				assert_memory_equal(got, model, (size_t)size);
		}
	}
	free(model);
	free(buf);
	free(got);
	close(fd);
}

/* Large requests: several chunks per call, at odd alignments. */
static void test_large_io(void **state)
{
	size_t n = 3 * 1024 * 1024 + 777;
	uint8_t *p = malloc(n), *q = malloc(n);
	struct format_file f;

	(void)state;
	assert_non_null(p);
	assert_non_null(q);
	fill_pattern(p, n, 9);
	assert_int_equal(format_file_create(&f, new_fd(), ring, 1), 0);
	assert_int_equal(format_file_write(&f, p, n, 1234), (ssize_t)n);
	assert_int_equal(format_file_read(&f, q, n, 1234), (ssize_t)n);
	assert_memory_equal(p, q, n);
	assert_int_equal(format_file_read(&f, q, 1234, 0), 1234);
	for (int i = 0; i < 1234; i++)
		assert_int_equal(q[i], 0);
	assert_int_equal(format_file_verify(f.fd, ring, NULL, NULL), 0);
	close(f.fd);
	free(p);
	free(q);
}

/* ---- holes ---------------------------------------------------------------- */

static void test_holes_sparse(void **state)
{
	const off_t big = 100LL * 1024 * 1024;
	struct format_file f;
	struct stat st;
	uint8_t buf[3 * BP];
	uint8_t zero[3 * BP] = {0};

	(void)state;
	/* Write far past EOF: the gap is not written. */
	assert_int_equal(format_file_create(&f, new_fd(), ring, 1), 0);
	assert_int_equal(format_file_write(&f, "head", 4, 0), 4);
	assert_int_equal(format_file_write(&f, "tail", 4, big), 4);
	assert_int_equal(fstat(f.fd, &st), 0);
	assert_int_equal(st.st_size, format_cipher_size(big + 4));
	assert_true(st.st_blocks * 512 < 1024 * 1024);
	assert_int_equal(format_file_read(&f, buf, sizeof(buf), big / 2 + 5),
			 sizeof(buf));
	assert_memory_equal(buf, zero, sizeof(buf));
	assert_int_equal(format_file_read(&f, buf, 10, 0), 10);
	assert_memory_equal(buf, "head\0\0\0\0\0\0", 10);
	assert_int_equal(format_file_read(&f, buf, 10, big - 2), 6);
	assert_memory_equal(buf, "\0\0tail", 6);
	assert_int_equal(format_file_verify(f.fd, ring, NULL, NULL), 0);
	close(f.fd);

	/* Truncate-grow from a short last block: it is padded, the rest is a
	 * hole. */
	assert_int_equal(format_file_create(&f, new_fd(), ring, 1), 0);
	assert_int_equal(format_file_write(&f, "abc", 3, 0), 3);
	assert_int_equal(format_file_truncate(&f, big), 0);
	assert_int_equal(fstat(f.fd, &st), 0);
	assert_int_equal(st.st_size, format_cipher_size(big));
	assert_true(st.st_blocks * 512 < 1024 * 1024);
	assert_int_equal(format_file_read(&f, buf, sizeof(buf), 0), sizeof(buf));
	assert_memory_equal(buf, "abc", 3);
	assert_memory_equal(buf + 3, zero, sizeof(buf) - 3);
	assert_int_equal(format_file_read(&f, buf, sizeof(buf), big - sizeof(buf)),
			 sizeof(buf));
	assert_memory_equal(buf, zero, sizeof(buf));
	/* Writing into the middle of the hole fills one block only. */
	assert_int_equal(format_file_write(&f, "mid", 3, big / 2), 3);
	assert_int_equal(format_file_read(&f, buf, 5, big / 2 - 1), 5);
	assert_memory_equal(buf, "\0mid\0", 5);
	assert_int_equal(format_file_verify(f.fd, ring, NULL, NULL), 0);
	close(f.fd);
}

/* A zeroed block is indistinguishable from a hole (documented). */
static void test_zeroed_block_is_hole(void **state)
{
	struct format_file f;
	uint8_t zero[BC] = {0}, buf[BP];
	uint8_t *p;

	(void)state;
	make_file(&f, 3 * BP, 3, &p);
	assert_int_equal(pwrite(f.fd, zero, BC, HDR + BC), BC);
	assert_int_equal(format_file_read(&f, buf, BP, BP), BP);
	assert_memory_equal(buf, zero, BP);
	assert_int_equal(format_file_verify(f.fd, ring, NULL, NULL), 0);
	close(f.fd);
	free(p);
}

/* ---- tamper detection ----------------------------------------------------- */

struct bad_list {
	int n;           /* entries used */
	int64_t blk[16]; /* reported blocks */
};

static void record_bad(int64_t block, int err, void *arg)
{
	struct bad_list *l = arg;

	assert_int_equal(err, -EIO);
	if (l->n < 16)
		l->blk[l->n] = block;
	l->n++;
}

static void expect_bad(int fd, const struct keyring *r, int n, const int64_t *blocks)
{
	struct bad_list l = {0};

	assert_int_equal(format_file_verify(fd, r, record_bad, &l), n ? -EIO : 0);
	assert_int_equal(l.n, n);
	for (int i = 0; i < n; i++)
		assert_int_equal(l.blk[i], blocks[i]);
}

/* Reading the damaged block fails and returns nothing: the buffer holds no
 * plaintext afterwards, not even of the good blocks. */
static void expect_read_eio(struct format_file *f, off_t off, size_t len)
{
	uint8_t *buf = malloc(len);

	assert_non_null(buf);
	memset(buf, 0xA5, len);
	assert_int_equal(format_file_read(f, buf, len, off), -EIO);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
}

static void test_tamper_bit_flips(void **state)
{
	struct format_file f;
	uint8_t *p;
	const int64_t one[] = {1}, last[] = {3};

	(void)state;
	make_file(&f, 3 * BP + 100, 4, &p);
	expect_bad(f.fd, ring, 0, NULL);
	/* Every bit of a full block (nonce, ciphertext and tag). */
	for (int bit = 0; bit < BC * 8; bit++) {
		off_t pos = HDR + BC + bit / 8;
		uint8_t c;

		assert_int_equal(pread(f.fd, &c, 1, pos), 1);
		c ^= (uint8_t)(1 << (bit % 8));
		assert_int_equal(pwrite(f.fd, &c, 1, pos), 1);
		uint8_t b[16];
		assert_int_equal(format_file_read(&f, b, 16, BP + 2000), -EIO);
		if (bit % 101 == 0) {
			expect_read_eio(&f, 0, 3 * BP + 100);
			expect_bad(f.fd, ring, 1, one);
		}
		c ^= (uint8_t)(1 << (bit % 8));
		assert_int_equal(pwrite(f.fd, &c, 1, pos), 1);
	}
	/* Every bit of the short last block. */
	for (int bit = 0; bit < 140 * 8; bit++) {
		off_t pos = HDR + 3 * BC + bit / 8;
		uint8_t c;

		assert_int_equal(pread(f.fd, &c, 1, pos), 1);
		c ^= (uint8_t)(1 << (bit % 8));
		assert_int_equal(pwrite(f.fd, &c, 1, pos), 1);
		expect_read_eio(&f, 3 * BP, 100);
		expect_bad(f.fd, ring, 1, last);
		c ^= (uint8_t)(1 << (bit % 8));
		assert_int_equal(pwrite(f.fd, &c, 1, pos), 1);
	}
	expect_content(&f, p, 3 * BP + 100);
	expect_bad(f.fd, ring, 0, NULL);
	/* The whole file under another keyring: the header fails. */
	const int64_t hdr[] = {-1};
	expect_bad(f.fd, ring2, 1, hdr);
	close(f.fd);
	free(p);
}

static void test_tamper_swap_blocks(void **state)
{
	struct format_file f;
	uint8_t a[BC], b[BC];
	uint8_t *p;
	const int64_t both[] = {1, 2};

	(void)state;
	make_file(&f, 4 * BP, 5, &p);
	assert_int_equal(pread(f.fd, a, BC, HDR + BC), BC);
	assert_int_equal(pread(f.fd, b, BC, HDR + 2 * BC), BC);
	assert_int_equal(pwrite(f.fd, b, BC, HDR + BC), BC);
	assert_int_equal(pwrite(f.fd, a, BC, HDR + 2 * BC), BC);
	expect_read_eio(&f, BP, 10);
	expect_read_eio(&f, 2 * BP, BP);
	expect_read_eio(&f, 0, 4 * BP);
	uint8_t ok[BP];
	assert_int_equal(format_file_read(&f, ok, BP, 3 * BP), BP);
	assert_memory_equal(ok, p + 3 * BP, BP);
	expect_bad(f.fd, ring, 2, both);
	/* Writes that need the damaged block (read-modify-write) fail too and
	 * change nothing. */
	assert_int_equal(format_file_write(&f, "zz", 2, BP + 5), -EIO);
	assert_int_equal(format_file_truncate(&f, BP + 5), -EIO);
	expect_bad(f.fd, ring, 2, both);
	close(f.fd);
	free(p);
}

static void test_tamper_block_from_other_file(void **state)
{
	struct format_file f, g;
	uint8_t blk[BC];
	uint8_t *p, *q;
	const int64_t one[] = {1};

	(void)state;
	make_file(&f, 3 * BP, 6, &p);
	make_file(&g, 3 * BP, 6, &q); /* same plaintext, same keyring */
	assert_int_equal(pread(g.fd, blk, BC, HDR + BC), BC);
	assert_int_equal(pwrite(f.fd, blk, BC, HDR + BC), BC);
	expect_read_eio(&f, BP, BP);
	expect_bad(f.fd, ring, 1, one);
	/* The whole other file's header too: f's blocks no longer belong. */
	uint8_t hdr[HDR];
	assert_int_equal(pread(g.fd, hdr, HDR, 0), HDR);
	assert_int_equal(pwrite(f.fd, hdr, HDR, 0), HDR);
	const int64_t others[] = {0, 2};
	expect_bad(f.fd, ring, 2, others);
	close(f.fd);
	close(g.fd);
	free(p);
	free(q);
}

static unsigned fsize_calls;

static int counting_fsize(int fd, off_t *size)
{
	struct stat st;

	fsize_calls++;
	if (fstat(fd, &st) != 0)
		return -errno;
	*size = st.st_size;
	return 0;
}

/* With len_ok, a read of blocks that all exist asks no length; only a
 * read that runs into the end does (the daemon's read of a page). */
static void test_read_asks_length_only_at_end(void **state)
{
	struct format_file f;
	uint8_t got[3 * BP];
	uint8_t *p;

	(void)state;
	make_file(&f, 2 * BP + 100, 3, &p);
	sys.fsize = counting_fsize;
	fsize_calls = 0;
	f.len_ok = true;
	assert_int_equal(format_file_read(&f, got, BP, 0), BP);
	assert_int_equal(format_file_read(&f, got, 2 * BP, 0), 2 * BP);
	assert_int_equal(format_file_read(&f, got, 100, BP + 7), 100);
	assert_int_equal(fsize_calls, 0);
	assert_memory_equal(got, p + BP + 7, 100);
	assert_int_equal(format_file_read(&f, got, 3 * BP, 0), 2 * BP + 100);
	assert_int_equal(fsize_calls, 1);
	assert_memory_equal(got, p, 2 * BP + 100);
	f.len_ok = false; /* a caller that did not check the length at open */
	assert_int_equal(format_file_read(&f, got, BP, 0), BP);
	assert_int_equal(fsize_calls, 2);
	sys_reset();
	close(f.fd);
	free(p);
}

static void test_tamper_truncated_ciphertext(void **state)
{
	struct format_file f;
	uint8_t *p;
	off_t size;

	(void)state;
	make_file(&f, 3 * BP, 7, &p);
	/* Mid-block, leaving a plausible size: the short block fails. */
	assert_int_equal(ftruncate(f.fd, HDR + 2 * BC + 1000), 0);
	assert_int_equal(format_file_size(&f, &size), 0);
	assert_int_equal(size, 2 * BP + 960);
	expect_read_eio(&f, 2 * BP, 10);
	const int64_t b2[] = {2};
	expect_bad(f.fd, ring, 1, b2);
	uint8_t ok[BP];
	assert_int_equal(format_file_read(&f, ok, BP, BP), BP);
	assert_memory_equal(ok, p + BP, BP);
	{
		/* Reading without the length first: whole blocks before the
		 * damage read, the short block still fails, nothing of it is
		 * handed back. */
		struct format_file g = f;
		uint8_t two[2 * BP];

		g.len_ok = true;
		assert_int_equal(format_file_read(&g, ok, BP, BP), BP);
		assert_memory_equal(ok, p + BP, BP);
		assert_int_equal(format_file_read(&g, ok, 10, 2 * BP), -EIO);
		memset(two, 0xa5, sizeof(two));
		assert_int_equal(format_file_read(&g, two, sizeof(two), BP), -EIO);
		for (size_t i = 0; i < BP + 960; i++) /* up to the end */
			assert_int_equal(two[i], 0);
		/* past the end: nothing, not an error */
		assert_int_equal(format_file_read(&g, ok, 10, 3 * BP), 0);
	}

	/* Leaving an impossible size (tail shorter than the overhead). */
	assert_int_equal(ftruncate(f.fd, HDR + 2 * BC + 20), 0);
	assert_int_equal(format_file_size(&f, &size), -EIO);
	assert_int_equal(format_file_read(&f, ok, 10, 0), -EIO);
	assert_int_equal(format_file_write(&f, "a", 1, 0), -EIO);
	assert_int_equal(format_file_truncate(&f, 3 * BP), -EIO);
	assert_int_equal(format_file_truncate(&f, 2 * BP + 1), -EIO);
	expect_bad(f.fd, ring, 1, b2);
	/* Cutting the file back to a block boundary below the damage needs no
	 * damaged data (O_TRUNC of a damaged file works). */
	assert_int_equal(format_file_truncate(&f, BP), 0);
	expect_content(&f, p, BP);
	expect_bad(f.fd, ring, 0, NULL);

	/* A cut header. */
	assert_int_equal(ftruncate(f.fd, 40), 0);
	const int64_t h[] = {-1};
	expect_bad(f.fd, ring, 1, h);
	close(f.fd);
	free(p);
}

/* ---- failure injection ---------------------------------------------------- */

static void test_enospc_write(void **state)
{
	struct format_file f;
	uint8_t *p;
	uint8_t *big = malloc(2 * BP);

	(void)state;
	assert_non_null(big);
	fill_pattern(big, 2 * BP, 77);
	/* Cases: overwrite inside (RMW), append across the old end (two
	 * pwrites), a gap write that re-seals the old short last block (two
	 * pwrites), a write right after the short last block. */
	const struct {
		off_t off;    /* write offset */
		size_t len;   /* write length */
		int max_call; /* pwrite calls the write makes */
	} cases[] = {
		{1000, 5000, 1},        {2 * BP + 50, 2 * BP, 2},  {10 * BP + 7, 100, 2},
		{3 * BP + 100, 300, 2}, {3 * BP + 500, 2 * BP, 2},
	};
	for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
		for (int at = 1; at <= cases[c].max_call; at++) {
			make_file(&f, 3 * BP + 100, 8, &p);
			inject_pwrite(at, ENOSPC);
			assert_int_equal(
				format_file_write(&f, big, cases[c].len, cases[c].off),
				-ENOSPC);
			sys_reset();
			expect_content(&f, p, 3 * BP + 100);
			expect_bad(f.fd, ring, 0, NULL);
			/* And the same write works once there is space. */
			assert_int_equal(
				format_file_write(&f, big, cases[c].len, cases[c].off),
				(ssize_t)cases[c].len);
			close(f.fd);
			free(p);
		}
	}
	free(big);
}

static void test_enospc_header_and_truncate(void **state)
{
	struct format_file f;
	uint8_t *p;

	(void)state;
	/* First write of a header-less file: the header write fails. */
	assert_int_equal(format_file_load(&f, new_fd(), ring), 0);
	inject_pwrite(1, ENOSPC);
	assert_int_equal(format_file_write(&f, "abc", 3, 0), -ENOSPC);
	sys_reset();
	assert_false(f.have_header);
	assert_int_equal(cipher_size(f.fd), 0);
	/* Header written, data write fails: an empty file with a header. */
	inject_pwrite(2, ENOSPC);
	assert_int_equal(format_file_write(&f, "abc", 3, 0), -ENOSPC);
	sys_reset();
	expect_content(&f, NULL, 0);
	assert_int_equal(format_file_write(&f, "abc", 3, 0), 3);
	expect_content(&f, (const uint8_t *)"abc", 3);
	close(f.fd);

	/* Truncate-grow and shrink that must re-seal a block. */
	make_file(&f, 2 * BP + 100, 10, &p);
	inject_pwrite(1, ENOSPC);
	assert_int_equal(format_file_truncate(&f, 5 * BP), -ENOSPC);
	sys_reset();
	expect_content(&f, p, 2 * BP + 100);
	inject_pwrite(1, EIO);
	assert_int_equal(format_file_truncate(&f, BP + 10), -EIO);
	sys_reset();
	expect_content(&f, p, 2 * BP + 100);
	/* ftruncate failure. */
	ftruncate_fail = 1;
	sys.ftruncate = fail_ftruncate;
	assert_int_equal(format_file_truncate(&f, 4 * BP), -EIO);
	ftruncate_fail = 0;
	sys_reset();
	/* The real thing still works, and shrinking re-seals. */
	assert_int_equal(format_file_truncate(&f, BP + 10), 0);
	expect_content(&f, p, BP + 10);
	assert_int_equal(format_file_truncate(&f, BP + 5000), 0);
	uint8_t *want = calloc(1, BP + 5000);
	assert_non_null(want);
	memcpy(want, p, BP + 10);
	expect_content(&f, want, BP + 5000);
	expect_bad(f.fd, ring, 0, NULL);
	free(want);
	close(f.fd);
	free(p);
}

static void test_eio_pread(void **state)
{
	struct format_file f;
	uint8_t *p, b[10];

	(void)state;
	make_file(&f, 3 * BP, 11, &p);
	pread_fail = 1;
	sys.pread = fail_pread;
	assert_int_equal(format_file_read(&f, b, sizeof(b), 5), -EIO);
	assert_int_equal(format_file_write(&f, b, sizeof(b), 5), -EIO); /* RMW */
	assert_int_equal(format_file_verify(f.fd, ring, NULL, NULL), -EIO);
	struct format_file g;
	assert_int_equal(format_file_load(&g, f.fd, ring), -EIO);
	pread_fail = 0;
	sys_reset();
	expect_content(&f, p, 3 * BP);
	close(f.fd);
	free(p);
}

static void test_short_write_second_chunk(void **state)
{
	size_t n = 2 * 1024 * 1024;
	uint8_t *p = malloc(n);
	struct format_file f;
	off_t size;

	(void)state;
	assert_non_null(p);
	fill_pattern(p, n, 12);
	assert_int_equal(format_file_create(&f, new_fd(), ring, 1), 0);
	inject_pwrite(2, ENOSPC);
	ssize_t r = format_file_write(&f, p, n, 0);
	sys_reset();
	/* The first chunk landed whole: a short write, as a full disk gives. */
	assert_true(r > 0 && (size_t)r < n && r % BP == 0);
	assert_int_equal(format_file_size(&f, &size), 0);
	assert_int_equal(size, r);
	expect_content(&f, p, (size_t)r);
	close(f.fd);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_header_bad_magic),
		cmocka_unit_test(test_header_unknown_version),
		cmocka_unit_test(test_header_every_bit_flip),
		cmocka_unit_test(test_header_wrong_ring),
		cmocka_unit_test(test_header_reserved_nonzero),
		cmocka_unit_test(test_size_rule),
		cmocka_unit_test(test_create_load),
		cmocka_unit_test(test_first_write_creates_header),
		cmocka_unit_test(test_truncate_to_zero_keeps_header),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_fsx),
		cmocka_unit_test(test_large_io),
		cmocka_unit_test(test_holes_sparse),
		cmocka_unit_test(test_zeroed_block_is_hole),
		cmocka_unit_test(test_tamper_bit_flips),
		cmocka_unit_test(test_tamper_swap_blocks),
		cmocka_unit_test(test_tamper_block_from_other_file),
		cmocka_unit_test(test_tamper_truncated_ciphertext),
		cmocka_unit_test(test_read_asks_length_only_at_end),
		cmocka_unit_test(test_enospc_write),
		cmocka_unit_test(test_enospc_header_and_truncate),
		cmocka_unit_test(test_eio_pread),
		cmocka_unit_test(test_short_write_second_chunk),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
