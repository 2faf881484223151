/*
 * crypt.h — every cryptographic primitive custodian uses.
 *
 * This is the only module that calls libsodium (house rule), or OpenSSL's
 * libcrypto (the fast path for content blocks), so algorithm choices live in
 * one place: XChaCha20-Poly1305 (IETF) for blocks and key wrapping, a
 * synthetic-IV construction for names, BLAKE2b for keyed hashes, crypto_kdf
 * for subkeys, Argon2id for passphrases.  Library failures are mapped to
 * -errno here and nowhere else.
 *
 * Secure memory (crypt_secure_alloc) is sodium_malloc: guard pages, mlock,
 * MADV_DONTDUMP; crypt_secure_free wipes before freeing.
 */
#ifndef CUSTODIAN_CRYPT_H
#define CUSTODIAN_CRYPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "errs.h"

#define CRYPT_KEY_BYTES 32     /* every symmetric key */
#define CRYPT_FILE_ID_BYTES 32 /* random id in each file header */
#define CRYPT_NONCE_BYTES 24   /* XChaCha20-Poly1305 nonce */
#define CRYPT_TAG_BYTES 16     /* Poly1305 tag */
#define CRYPT_AEAD_OVERHEAD (CRYPT_NONCE_BYTES + CRYPT_TAG_BYTES)
#define CRYPT_BLOCK_PLAIN 4096 /* plaintext bytes per content block */
#define CRYPT_BLOCK_CIPHER (CRYPT_BLOCK_PLAIN + CRYPT_AEAD_OVERHEAD)
#define CRYPT_SIV_BYTES 16   /* synthetic IV prepended to a name */
#define CRYPT_DIRIV_BYTES 16 /* per-directory name IV */
#define CRYPT_HASH_BYTES 32  /* keyed BLAKE2b output used as an id */
#define CRYPT_MAC_BYTES 32   /* keyed BLAKE2b output used as a MAC */
#define CRYPT_SALT_BYTES 16  /* Argon2id salt */
#define CRYPT_KDF_CONTEXT_BYTES 8

/* Must run once before anything else; 0 or -EIO. */
int crypt_init(void) MUST_CHECK;

/* Guarded, locked, never-dumped memory.  NULL on failure.  Free with
 * crypt_secure_free (which wipes); NULL is accepted. */
void *crypt_secure_alloc(size_t n);
void crypt_secure_free(void *p);

/* Wipes memory in a way the compiler cannot elide. */
void crypt_wipe(void *p, size_t n);

/* Cryptographically random bytes (one getrandom each: use for keys). */
void crypt_random(void *buf, size_t n);

/* The same, for values stored in the clear (file ids, directory IVs,
 * salts, temporary names): taken from a per-thread pool. */
void crypt_random_public(void *buf, size_t n);

/* Constant-time equality: 1 if equal, 0 if not. */
int crypt_equal(const void *a, const void *b, size_t n);

/* out = subkey number `id` of `key` under an 8-character context. */
int crypt_kdf(uint8_t out[CRYPT_KEY_BYTES], const uint8_t key[CRYPT_KEY_BYTES],
	      uint64_t id, const char ctx[CRYPT_KDF_CONTEXT_BYTES]) MUST_CHECK;

/* Keyed BLAKE2b: out (outlen 16..64) = H_key(msg).  key may be NULL
 * (unkeyed).  Two-part variant hashes a || b without copying. */
void crypt_hash(uint8_t *out, size_t outlen, const uint8_t key[CRYPT_KEY_BYTES],
		const void *msg, size_t n);
void crypt_hash2(uint8_t *out, size_t outlen, const uint8_t key[CRYPT_KEY_BYTES],
		 const void *a, size_t alen, const void *b, size_t blen);

/* A running SHA-256 (FIPS 180-4), for digests others check with
 * sha256sum (the export manifest).  Opaque: only crypt.c sees inside. */
#define CRYPT_SHA256_BYTES 32
struct crypt_sha256 {
	_Alignas(16) uint8_t opaque[128]; /* libsodium's state */
};
void crypt_sha256_init(struct crypt_sha256 *s);
void crypt_sha256_update(struct crypt_sha256 *s, const void *p, size_t n);
/* Writes the digest and wipes the state. */
void crypt_sha256_final(struct crypt_sha256 *s, uint8_t out[CRYPT_SHA256_BYTES]);

/* AEAD with a fresh random nonce.  out must hold len + CRYPT_AEAD_OVERHEAD
 * bytes laid out as nonce | ciphertext | tag.  Used for content blocks and
 * for wrapping keys. */
int crypt_block_seal(uint8_t *out, const uint8_t *plain, size_t len,
		     const uint8_t key[CRYPT_KEY_BYTES], const uint8_t *ad,
		     size_t adlen) MUST_CHECK;

/* Whether blocks of CRYPT_BULK_MIN bytes and more go through OpenSSL's
 * ChaCha20-Poly1305 (same construction and bytes; see crypt.c).  Tests
 * may turn it off and on; nothing else does. */
bool crypt_bulk_active(void);
void crypt_bulk_set(bool on);

/* Inverse of crypt_block_seal.  inlen includes the overhead; plain gets
 * inlen - CRYPT_AEAD_OVERHEAD bytes.  -EIO if authentication fails (plain
 * is then zeroed), -EINVAL if inlen < overhead. */
int crypt_block_open(uint8_t *plain, const uint8_t *in, size_t inlen,
		     const uint8_t key[CRYPT_KEY_BYTES], const uint8_t *ad,
		     size_t adlen) MUST_CHECK;

/* Deterministic authenticated encryption of a short string (names).
 * siv = BLAKE2b-128 keyed by mac_key over (ad | plain); ciphertext =
 * XChaCha20(enc_key, nonce = siv | 8 zero bytes) XOR plain.
 * out gets CRYPT_SIV_BYTES + len bytes. */
void crypt_siv_seal(uint8_t *out, const uint8_t *plain, size_t len,
		    const uint8_t enc_key[CRYPT_KEY_BYTES],
		    const uint8_t mac_key[CRYPT_KEY_BYTES], const uint8_t *ad,
		    size_t adlen);

/* Inverse; plain gets inlen - CRYPT_SIV_BYTES bytes.  -EIO on a bad SIV
 * (plain zeroed), -EINVAL if inlen < CRYPT_SIV_BYTES. */
int crypt_siv_open(uint8_t *plain, const uint8_t *in, size_t inlen,
		   const uint8_t enc_key[CRYPT_KEY_BYTES],
		   const uint8_t mac_key[CRYPT_KEY_BYTES], const uint8_t *ad,
		   size_t adlen) MUST_CHECK;

/* Argon2id.  -EINVAL on out-of-range limits, -ENOMEM if the memory limit
 * cannot be met. */
int crypt_pwhash(uint8_t out[CRYPT_KEY_BYTES], const char *pass, size_t passlen,
		 const uint8_t salt[CRYPT_SALT_BYTES], uint64_t opslimit,
		 uint64_t memlimit) MUST_CHECK;

/* Limits accepted by crypt_pwhash and the defaults custodian uses. */
uint64_t crypt_pwhash_ops_min(void);
uint64_t crypt_pwhash_mem_min(void);
#define CRYPT_PWHASH_OPS_DEFAULT 3ULL
#define CRYPT_PWHASH_MEM_DEFAULT (64ULL << 20)

/* Base64url without padding (names and printable ids).  Encode writes a
 * NUL-terminated string and returns its length, or -ENAMETOOLONG if cap is
 * too small.  Decode returns the byte count or -EINVAL. */
int crypt_b64_encode(char *out, size_t cap, const uint8_t *in, size_t len);
int crypt_b64_decode(uint8_t *out, size_t cap, const char *in, size_t len);

/* Lower-case hex, NUL-terminated; cap must be >= 2*len+1. */
void crypt_hex(char *out, const uint8_t *in, size_t len);

/* Parses hex (whitespace and dashes ignored); returns bytes or -EINVAL. */
int crypt_unhex(uint8_t *out, size_t cap, const char *in);

#endif
