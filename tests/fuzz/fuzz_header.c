/*
 * fuzz_header.c — libFuzzer target for the file format (fs/format.c).
 *
 * The first input byte picks a mode:
 *   0  the rest is a header: decode must not crash; whatever decodes must
 *      re-encode to the same bytes.
 *   1  the rest is a whole ciphertext file: load, size, verify and read it;
 *      a file that verifies must read in full, one that does not must never
 *      hand back data for the damaged blocks.
 *   2  the rest is a program of writes, truncates, reads and one-byte
 *      corruptions run against an in-memory model (an fsx): reads must match
 *      the model exactly, or fail with EIO once the file has been damaged.
 * The keyring is fixed (bytes 0..127), so seeds with valid MACs can be made
 * outside the fuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "crypt.h"
#include "format.h"

#define FUZZ_MAX_FILE (64 * 1024) /* model size bound for mode 2 */

static struct keyring *ring;
static uint8_t *model, *got;

static void init(void)
{
	if (ring)
		return;
	if (crypt_init() != 0)
		abort();
	ring = crypt_secure_alloc(sizeof(*ring));
	model = malloc(FUZZ_MAX_FILE);
	got = malloc(FUZZ_MAX_FILE + CRYPT_BLOCK_PLAIN);
	if (!ring || !model || !got)
		abort();
	for (size_t i = 0; i < sizeof(*ring); i++)
		((uint8_t *)ring)[i] = (uint8_t)i;
}

static void check(int cond)
{
	if (!cond)
		abort();
}

static void fuzz_decode(const uint8_t *d, size_t n)
{
	uint8_t in[FORMAT_HEADER_BYTES] = {0}, out[FORMAT_HEADER_BYTES];
	struct format_header h;
	int r;

	memcpy(in, d, n < sizeof(in) ? n : sizeof(in));
	r = format_header_decode(in, &h, ring);
	check(r == 0 || r == -EIO);
	if (r == 0) {
		check(format_header_encode(out, &h, ring) == 0);
		check(memcmp(in, out, sizeof(in)) == 0);
	}
	/* The size rule is a bijection on valid sizes. */
	if (n >= 8) {
		off_t c;
		memcpy(&c, d, sizeof(c));
		c &= ((off_t)1 << 50) - 1;
		off_t p = format_plain_size(c);
		check(p == -EIO || (p >= 0 && (c == 0 || format_cipher_size(p) == c)));
	}
}

static void fuzz_file(const uint8_t *d, size_t n)
{
	struct format_file f;
	off_t size = -1;
	int fd = memfd_create("fuzz", MFD_CLOEXEC), vr, lr;

	check(fd >= 0);
	check(write(fd, d, n) == (ssize_t)n);
	vr = format_file_verify(fd, ring, NULL, NULL);
	check(vr == 0 || vr == -EIO);
	lr = format_file_load(&f, fd, ring);
	check(lr == 0 || lr == -EIO);
	if (lr == 0 && format_file_size(&f, &size) == 0 && size <= FUZZ_MAX_FILE) {
		ssize_t r = format_file_read(&f, got, (size_t)size + 10, 0);

		/* Read and verify look at the same blocks: they agree. */
		check(vr == 0 ? r == size : r == -EIO);
		/* Small reads at every block. */
		for (off_t o = 0; o < size; o += CRYPT_BLOCK_PLAIN) {
			r = format_file_read(&f, got, 7, o);
			check(r == -EIO || (r > 0 && r <= 7));
		}
		if (lr == 0 && vr == 0) {
			/* A valid file stays valid through a write and a truncate. */
			check(format_file_write(&f, "fuzz", 4, size / 2) == 4);
			check(format_file_truncate(&f, size / 3) == 0);
			check(format_file_verify(fd, ring, NULL, NULL) == 0);
		}
	}
	close(fd);
}

static uint32_t take(const uint8_t **d, size_t *n, int bytes)
{
	uint32_t v = 0;

	for (int i = 0; i < bytes; i++) {
		v <<= 8;
		if (*n) {
			v |= **d;
			(*d)++;
			(*n)--;
		}
	}
	return v;
}

static void fuzz_ops(const uint8_t *d, size_t n)
{
	struct format_file f;
	off_t size = 0;
	int damaged = 0;
	int fd = memfd_create("fuzz", MFD_CLOEXEC);

	check(fd >= 0);
	check(format_file_load(&f, fd, ring) == 0);
	for (int ops = 0; n > 0 && ops < 64; ops++) {
		uint32_t op = take(&d, &n, 1) % 4;
		off_t off = (off_t)(take(&d, &n, 2) % FUZZ_MAX_FILE);
		size_t len = take(&d, &n, 2) % (3 * CRYPT_BLOCK_PLAIN) + 1;

		if (op == 0) { /* write */
			if ((size_t)off + len > FUZZ_MAX_FILE)
				len = FUZZ_MAX_FILE - (size_t)off;
			for (size_t i = 0; i < len; i++)
				got[i] = (uint8_t)(off + (off_t)i * 13 + ops);
			ssize_t r = format_file_write(&f, got, len, off);
			if (damaged) {
				check(r == (ssize_t)len || r == -EIO);
				if (r < 0)
					continue;
			}
			check(r == (ssize_t)len);
			if (off > size)
				memset(model + size, 0, (size_t)(off - size));
			memcpy(model + off, got, len);
			if (off + (off_t)len > size)
				size = off + (off_t)len;
		} else if (op == 1) { /* truncate */
			int r = format_file_truncate(&f, off);
			if (damaged && r == -EIO)
				continue;
			check(r == 0);
			if (off > size)
				memset(model + size, 0, (size_t)(off - size));
			size = off;
		} else if (op == 2) { /* read */
			ssize_t r = format_file_read(&f, got, len, off);
			ssize_t want = off >= size
					       ? 0
					       : (off + (off_t)len > size ? size - off
									  : (ssize_t)len);
			if (damaged && r == -EIO)
				continue;
			check(r == want);
			if (want > 0)
				check(memcmp(got, model + off, (size_t)want) == 0);
		} else if (size > 0) { /* corrupt one stored byte */
			off_t cs = format_cipher_size(size);
			off_t pos = (off_t)(take(&d, &n, 3) % (uint32_t)cs);
			uint8_t c;

			check(pread(fd, &c, 1, pos) == 1);
			c ^= (uint8_t)(len | 1);
			check(pwrite(fd, &c, 1, pos) == 1);
			damaged = 1;
			if (pos < FORMAT_HEADER_BYTES)
				break; /* the open handle's header is stale now */
		}
	}
	if (!damaged)
		check(format_file_verify(fd, ring, NULL, NULL) == 0);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_decode(data + 1, size - 1);
		break;
	case 1:
		fuzz_file(data + 1, size - 1);
		break;
	default:
		fuzz_ops(data + 1, size - 1);
		break;
	}
	return 0;
}
