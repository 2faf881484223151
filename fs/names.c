/*
 * names.c — encrypted file names in the backing tree: per-directory name
 * IVs, SIV encryption and base64url encoding of names, hashed long names
 * with their sidecar files, and which backing entries belong to the store.
 *
 * Every accepted backing name has exactly one plaintext and every plaintext
 * exactly one backing name (base64url is decoded strictly and long names
 * must really be long), so a listing can never show one name twice.
 */
#include "names.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "sys.h"

/* base64url length of a BLAKE2b-256 hash (32 bytes, no padding). */
#define HASH_B64_LEN 43
/* Longest sealed name: SIV + NAMES_PLAIN_MAX.  Sidecars may hold up to
 * NAMES_FULL_MAX - 1 characters, which decode to at most this many. */
#define SEALED_MAX ((NAMES_FULL_MAX / 4) * 3 + 3)

static bool is_b64url(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* ".L" followed by exactly 43 base64url characters. */
static bool is_long_entry(const char *backing)
{
	size_t plen = strlen(NAMES_LONG_PREFIX);

	if (strncmp(backing, NAMES_LONG_PREFIX, plen) != 0)
		return false;
	for (size_t i = 0; i < HASH_B64_LEN; i++)
		if (!is_b64url(backing[plen + i]))
			return false;
	return backing[plen + HASH_B64_LEN] == '\0';
}

bool names_reserved(const char *backing)
{
	/* base64url never starts with '.', so every dot name is ours: the IV
	 * file, sidecars and their temp files, and anything unknown that a
	 * listing must not show.  Only long-name entries are user names. */
	if (backing[0] != '.')
		return false;
	return !is_long_entry(backing);
}

/* -EINVAL for names the kernel would never pass and we must never store. */
static int check_plain(const char *plain, size_t *len)
{
	size_t n = strnlen(plain, NAMES_PLAIN_MAX + 1);

	if (n > NAMES_PLAIN_MAX)
		return -ENAMETOOLONG;
	if (n == 0 || strcmp(plain, ".") == 0 || strcmp(plain, "..") == 0 ||
	    memchr(plain, '/', n) != NULL)
		return -EINVAL;
	*len = n;
	return 0;
}

/* dst gets prefix + base64url(hash of the full encoding). */
static int long_name(char *dst, size_t cap, const char *prefix, const char *full)
{
	uint8_t h[CRYPT_HASH_BYTES];
	size_t plen = strlen(prefix);
	int n;

	crypt_hash(h, sizeof(h), NULL, full, strlen(full));
	if (cap < plen + 1)
		return -ENAMETOOLONG;
	memcpy(dst, prefix, plen);
	n = crypt_b64_encode(dst + plen, cap - plen, h, sizeof(h));
	return n < 0 ? n : 0;
}

int names_encrypt(const struct keyring *ring, const uint8_t diriv[CRYPT_DIRIV_BYTES],
		  const char *plain, struct names_enc *out)
{
	uint8_t sealed[CRYPT_SIV_BYTES + NAMES_PLAIN_MAX];
	size_t len;
	int n, ret;

	memset(out, 0, sizeof(*out));
	ret = check_plain(plain, &len);
	if (ret < 0)
		return ret;
	crypt_siv_seal(sealed, (const uint8_t *)plain, len, ring->name_enc,
		       ring->name_mac, diriv, CRYPT_DIRIV_BYTES);
	n = crypt_b64_encode(out->full, sizeof(out->full), sealed, CRYPT_SIV_BYTES + len);
	if (n < 0)
		return n;
	if (n <= NAMES_BACKING_MAX) {
		memcpy(out->backing, out->full, (size_t)n + 1);
		return 0;
	}
	out->is_long = true;
	return long_name(out->backing, sizeof(out->backing), NAMES_LONG_PREFIX,
			 out->full);
}

/* Reads a long entry's sidecar into full and checks it belongs to it. */
static int read_sidecar(int dirfd, const char *backing, char full[NAMES_FULL_MAX])
{
	char side[NAMES_BACKING_MAX + 1];
	char expect[NAMES_BACKING_MAX + 1];
	ssize_t n;
	int fd, ret;

	memcpy(side, NAMES_SIDECAR_PREFIX, strlen(NAMES_SIDECAR_PREFIX));
	strcpy(side + strlen(NAMES_SIDECAR_PREFIX), backing + strlen(NAMES_LONG_PREFIX));
	fd = sys.openat(dirfd, side, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return -EIO;
	/* One byte more than fits, so an oversized sidecar is noticed. */
	n = sys_pread_full(fd, full, NAMES_FULL_MAX, 0);
	close(fd);
	if (n <= 0 || n >= NAMES_FULL_MAX)
		return -EIO;
	full[n] = '\0';
	if (strlen(full) != (size_t)n)
		return -EIO; /* embedded NUL */
	ret = long_name(expect, sizeof(expect), NAMES_LONG_PREFIX, full);
	if (ret < 0)
		return -EIO;
	if (strcmp(expect, backing) != 0)
		return -EIO;
	/* A name short enough to be stored directly is never stored long. */
	if ((size_t)n <= NAMES_BACKING_MAX)
		return -EIO;
	return 0;
}

int names_decrypt(const struct keyring *ring, const uint8_t diriv[CRYPT_DIRIV_BYTES],
		  int dirfd, const char *backing, char out[NAMES_PLAIN_MAX + 1])
{
	char full[NAMES_FULL_MAX];
	char canon[NAMES_FULL_MAX];
	uint8_t sealed[SEALED_MAX];
	uint8_t plain[SEALED_MAX];
	const char *enc = backing;
	size_t plen;
	int n, ret;

	out[0] = '\0';
	if (names_reserved(backing))
		return -ENOENT;
	if (backing[0] == '.') {
		ret = read_sidecar(dirfd, backing, full);
		if (ret < 0)
			return ret;
		enc = full;
	} else if (strlen(backing) > NAMES_BACKING_MAX) {
		return -EIO; /* would have been stored long */
	}
	n = crypt_b64_decode(sealed, sizeof(sealed), enc, strlen(enc));
	if (n <= CRYPT_SIV_BYTES || n - CRYPT_SIV_BYTES > NAMES_PLAIN_MAX)
		return -EIO;
	/* Belt and braces: only the canonical encoding of these bytes is a
	 * name, whatever the decoder tolerates. */
	if (crypt_b64_encode(canon, sizeof(canon), sealed, (size_t)n) < 0 ||
	    strcmp(canon, enc) != 0)
		return -EIO;
	plen = (size_t)n - CRYPT_SIV_BYTES;
	ret = crypt_siv_open(plain, sealed, (size_t)n, ring->name_enc, ring->name_mac,
			     diriv, CRYPT_DIRIV_BYTES);
	if (ret < 0) {
		ret = -EIO;
		goto out;
	}
	/* Authentic but not a name (only a key holder could make one). */
	if (memchr(plain, '\0', plen) || memchr(plain, '/', plen) ||
	    (plen == 1 && plain[0] == '.') ||
	    (plen == 2 && plain[0] == '.' && plain[1] == '.')) {
		ret = -EIO;
		goto out;
	}
	memcpy(out, plain, plen);
	out[plen] = '\0';
out:
	crypt_wipe(plain, sizeof(plain));
	return ret;
}

int names_long_store(int dirfd, const struct names_enc *enc)
{
	char side[NAMES_BACKING_MAX + 1];
	char tmp[NAMES_BACKING_MAX + 1];
	char rnd[17];
	uint8_t r[8];
	size_t len;
	ssize_t n;
	int fd = -1, ret;

	if (!enc->is_long)
		return 0;
	len = strlen(enc->full);
	if (len == 0 || len >= NAMES_FULL_MAX)
		return -EINVAL;
	ret = long_name(side, sizeof(side), NAMES_SIDECAR_PREFIX, enc->full);
	if (ret < 0)
		return ret;
	/* The temp name starts with ".N" too, so a leftover one is hidden. */
	crypt_random_public(r, sizeof(r));
	crypt_hex(rnd, r, sizeof(r));
	if (strlen(side) + 1 + strlen(rnd) >= sizeof(tmp))
		return -ENAMETOOLONG;
	strcpy(tmp, side);
	strcat(tmp, ".");
	strcat(tmp, rnd);
	fd = sys.openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			0444);
	if (fd < 0)
		return -errno;
	n = sys_pwrite_full(fd, enc->full, len, 0);
	if (n < 0) {
		ret = (int)n;
		goto fail;
	}
	/* The entry is useless without its sidecar after a crash. */
	if (sys.fsync(fd) != 0) {
		ret = -errno;
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		ret = -errno;
		goto fail;
	}
	fd = -1;
	if (sys.renameat(dirfd, tmp, dirfd, side) != 0) {
		ret = -errno;
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	(void)sys.unlinkat(dirfd, tmp, 0);
	return ret;
}

int names_long_remove(int dirfd, const struct names_enc *enc)
{
	char side[NAMES_BACKING_MAX + 1];
	int ret;

	if (!enc->is_long)
		return 0;
	ret = long_name(side, sizeof(side), NAMES_SIDECAR_PREFIX, enc->full);
	if (ret < 0)
		return ret;
	if (sys.unlinkat(dirfd, side, 0) != 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int names_diriv_create(int dirfd, uint8_t iv[CRYPT_DIRIV_BYTES])
{
	return names_diriv_create_unsynced(dirfd, iv, NULL);
}

int names_diriv_create_unsynced(int dirfd, uint8_t iv[CRYPT_DIRIV_BYTES], int *unsynced)
{
	ssize_t n;
	int fd, ret = 0;

	if (unsynced)
		*unsynced = -1;
	fd = sys.openat(dirfd, NAMES_DIRIV_FILE,
			O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
	if (fd < 0)
		return -errno;
	crypt_random_public(iv, CRYPT_DIRIV_BYTES);
	n = sys_pwrite_full(fd, iv, CRYPT_DIRIV_BYTES, 0);
	if (n < 0) {
		ret = (int)n;
	} else if (unsynced) {
		*unsynced = fd; /* the caller syncs and closes it */
		return 0;
	} else if (sys.fsync(fd) != 0) {
		ret = -errno;
	}
	if (close(fd) != 0 && ret == 0)
		ret = -errno;
	if (ret < 0) {
		/* A directory with a short IV file would be unreadable. */
		(void)sys.unlinkat(dirfd, NAMES_DIRIV_FILE, 0);
		memset(iv, 0, CRYPT_DIRIV_BYTES);
	}
	return ret;
}

int names_diriv_load(int dirfd, uint8_t iv[CRYPT_DIRIV_BYTES])
{
	uint8_t buf[CRYPT_DIRIV_BYTES + 1];
	ssize_t n;
	int fd;

	fd = sys.openat(dirfd, NAMES_DIRIV_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? -EIO : -errno;
	n = sys_pread_full(fd, buf, sizeof(buf), 0);
	close(fd);
	if (n < 0)
		return (int)n;
	if (n != CRYPT_DIRIV_BYTES)
		return -EIO;
	memcpy(iv, buf, CRYPT_DIRIV_BYTES);
	return 0;
}
