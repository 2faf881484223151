/*
 * linktarget.c — encrypted symlink targets (see linktarget.h).
 *
 * Owns the stored form of a symlink target: base64url(nonce | AEAD(target)
 * | tag) under a key derived from the owning keyring.  The target is sealed
 * with a random nonce (not deterministically like names) because nothing
 * ever has to find a symlink by its target.  The derived key lives on the
 * stack for the duration of one call and is wiped, as format.c does with
 * file keys.
 */
#include "linktarget.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "crypt.h"

/* Key-derivation label; changing it makes every existing symlink unreadable. */
static const char linktarget_label[] = "custodian-symlink-v1";

/* Largest sealed form we ever produce or accept. */
#define LINKTARGET_SEALED_MAX (LINKTARGET_PLAIN_MAX + CRYPT_AEAD_OVERHEAD)

static void linktarget_key(uint8_t key[CRYPT_KEY_BYTES], const struct keyring *ring)
{
	crypt_hash(key, CRYPT_KEY_BYTES, ring->content, linktarget_label,
		   sizeof(linktarget_label) - 1);
}

int linktarget_encrypt(const struct keyring *ring, const char *plain, char *out,
		       size_t cap)
{
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t sealed[LINKTARGET_SEALED_MAX];
	size_t len;
	int ret;

	if (!plain || !out)
		return -EINVAL;
	len = strnlen(plain, LINKTARGET_PLAIN_MAX + 1);
	if (len == 0)
		return -EINVAL;
	if (len > LINKTARGET_PLAIN_MAX)
		return -ENAMETOOLONG;
	linktarget_key(key, ring);
	ret = crypt_block_seal(sealed, (const uint8_t *)plain, len, key, NULL, 0);
	if (ret < 0)
		goto out;
	ret = crypt_b64_encode(out, cap, sealed, len + CRYPT_AEAD_OVERHEAD);
	if (ret > 0)
		ret = 0;
out:
	crypt_wipe(key, sizeof(key));
	crypt_wipe(sealed, sizeof(sealed));
	return ret;
}

int linktarget_decrypt(const struct keyring *ring, const char *stored, char *out,
		       size_t cap)
{
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t sealed[LINKTARGET_SEALED_MAX];
	size_t slen, plen;
	int n, ret;

	if (!stored || !out)
		return -EINVAL;
	/* Anything that is not exactly what linktarget_encrypt writes was not
	 * written by us: the backing store has been tampered with. */
	slen = strnlen(stored, LINKTARGET_STORED_MAX);
	if (slen == 0 || slen >= LINKTARGET_STORED_MAX)
		return -EIO;
	n = crypt_b64_decode(sealed, sizeof(sealed), stored, slen);
	if (n < 0 || (size_t)n <= CRYPT_AEAD_OVERHEAD) {
		ret = -EIO;
		goto out;
	}
	plen = (size_t)n - CRYPT_AEAD_OVERHEAD;
	if (plen + 1 > cap) {
		ret = -ENAMETOOLONG;
		goto out;
	}
	linktarget_key(key, ring);
	ret = crypt_block_open((uint8_t *)out, sealed, (size_t)n, key, NULL, 0);
	if (ret < 0) {
		ret = -EIO;
		goto out;
	}
	/* A target with an embedded NUL cannot have come from encrypt. */
	if (memchr(out, '\0', plen)) {
		crypt_wipe(out, plen);
		ret = -EIO;
		goto out;
	}
	out[plen] = '\0';
out:
	crypt_wipe(key, sizeof(key));
	crypt_wipe(sealed, sizeof(sealed));
	return ret;
}
