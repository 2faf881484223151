/*
 * fuzz_names.c — libFuzzer target for name encryption (fs/names.c).
 *
 * The first input byte picks a mode:
 *   0  the rest is a plaintext name: if names_encrypt accepts it, it must
 *      decrypt back to itself (long names through a real sidecar).
 *   1  the rest is a backing entry name: names_decrypt must not crash, and
 *      any name it accepts must re-encrypt to exactly that entry (one
 *      plaintext per backing name, so listings never show duplicates).
 *   2  the rest is the content of a sidecar: it is stored under its own
 *      hash and the matching long entry is decrypted; same rules as 1.
 * The keyring is bytes 0..127 and the directory IV bytes 64..79, so valid
 * seeds can be made outside the fuzzer.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypt.h"
#include "names.h"

static struct keyring *ring;
static uint8_t diriv[CRYPT_DIRIV_BYTES];
static int dirfd = -1;
static char tmpl[] = "/tmp/fuzz_names.XXXXXX";

static void cleanup(void)
{
	rmdir(tmpl);
}

static void init(void)
{
	if (ring)
		return;
	if (crypt_init() != 0)
		abort();
	ring = crypt_secure_alloc(sizeof(*ring));
	if (!ring || !mkdtemp(tmpl))
		abort();
	for (size_t i = 0; i < sizeof(*ring); i++)
		((uint8_t *)ring)[i] = (uint8_t)i;
	for (size_t i = 0; i < sizeof(diriv); i++)
		diriv[i] = (uint8_t)(64 + i);
	dirfd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		abort();
	atexit(cleanup);
}

static void check(int cond)
{
	if (!cond)
		abort();
}

/* Anything names_decrypt accepts must be exactly what names_encrypt makes
 * of the result. */
static void check_canonical(const char *backing, int r, const char *plain)
{
	struct names_enc e;

	check(r == 0 || r == -EIO || r == -ENOENT);
	check(names_reserved(backing) == (r == -ENOENT));
	if (r != 0)
		return;
	check(names_encrypt(ring, diriv, plain, &e) == 0);
	check(strcmp(e.backing, backing) == 0);
}

static void fuzz_plain(const uint8_t *d, size_t n)
{
	char plain[300], out[NAMES_PLAIN_MAX + 1];
	struct names_enc e;
	int r;

	if (n >= sizeof(plain))
		n = sizeof(plain) - 1;
	memcpy(plain, d, n);
	plain[n] = '\0';
	r = names_encrypt(ring, diriv, plain, &e);
	check(r == 0 || r == -EINVAL || r == -ENAMETOOLONG);
	if (r != 0)
		return;
	check(!names_reserved(e.backing));
	check(strlen(e.backing) <= NAMES_BACKING_MAX);
	check(names_long_store(dirfd, &e) == 0);
	check(names_decrypt(ring, diriv, dirfd, e.backing, out) == 0);
	check(strcmp(out, plain) == 0);
	check(names_long_remove(dirfd, &e) == 0);
}

static void fuzz_backing(const uint8_t *d, size_t n)
{
	char backing[NAMES_FULL_MAX + 1], out[NAMES_PLAIN_MAX + 1];

	if (n >= sizeof(backing))
		n = sizeof(backing) - 1;
	memcpy(backing, d, n);
	backing[n] = '\0';
	check_canonical(backing, names_decrypt(ring, diriv, dirfd, backing, out), out);
}

static void fuzz_sidecar(const uint8_t *d, size_t n)
{
	char entry[64], side[64], out[NAMES_PLAIN_MAX + 1];
	uint8_t h[CRYPT_HASH_BYTES];
	int fd, r;

	if (n > 1000)
		n = 1000;
	/* The entry that this content would belong to (hash of the bytes up
	 * to the first NUL, as the sidecar reader sees a string). */
	crypt_hash(h, sizeof(h), NULL, d, strnlen((const char *)d, n));
	strcpy(entry, NAMES_LONG_PREFIX);
	check(crypt_b64_encode(entry + 2, sizeof(entry) - 2, h, sizeof(h)) == 43);
	snprintf(side, sizeof(side), "%s%s", NAMES_SIDECAR_PREFIX, entry + 2);
	fd = openat(dirfd, side, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	check(fd >= 0);
	check(write(fd, d, n) == (ssize_t)n);
	close(fd);
	r = names_decrypt(ring, diriv, dirfd, entry, out);
	check_canonical(entry, r, out);
	unlinkat(dirfd, side, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init();
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_plain(data + 1, size - 1);
		break;
	case 1:
		fuzz_backing(data + 1, size - 1);
		break;
	default:
		fuzz_sidecar(data + 1, size - 1);
		break;
	}
	return 0;
}
