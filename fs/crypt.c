/*
 * crypt.c — custodian's only door to libsodium.
 *
 * Owns every algorithm choice (XChaCha20-Poly1305 for blocks and wrapped
 * keys, a BLAKE2b/XChaCha20 synthetic-IV construction for names, BLAKE2b
 * for keyed hashes, crypto_kdf for subkeys, Argon2id for passphrases) and
 * the mapping of libsodium's -1 results to -errno.  Callers never see a
 * libsodium type or constant.
 *
 * Seal and open accept overlapping input and output buffers (in-place use
 * by the file format saves a copy per block); overlap is resolved with one
 * memmove so libsodium always sees either disjoint or identical buffers,
 * which is what it supports.
 *
 * Nonces come from a small per-thread pool refilled from the kernel's
 * CSPRNG (libsodium's randombytes_buf, one getrandom(2) per call): one
 * system call per CRYPT_NONCE_POOL / CRYPT_NONCE_BYTES seals instead of
 * one per 4 KiB block.  They are still uniformly random 192-bit values;
 * only their retrieval is batched.  A fork empties every pool (the child
 * must not reuse nonces its parent may also use).
 *
 * Bulk blocks (content blocks, CRYPT_BULK_MIN bytes and more) are sealed
 * and opened with OpenSSL's ChaCha20-Poly1305, the same construction byte
 * for byte (see "bulk AEAD" below): libsodium 1.0.18 has no AVX-512 code
 * for ChaCha20 or Poly1305: a 4 KiB block costs 4.0 us there against
 * 2.2 us here, key set-up included, on the servers we measured.  libcrypto is called
 * from this file only, like libsodium.
 */
#include "crypt.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sodium.h>

_Static_assert(CRYPT_KEY_BYTES == crypto_aead_xchacha20poly1305_ietf_KEYBYTES,
	       "AEAD key size");
_Static_assert(CRYPT_NONCE_BYTES == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
	       "AEAD nonce size");
_Static_assert(CRYPT_TAG_BYTES == crypto_aead_xchacha20poly1305_ietf_ABYTES,
	       "AEAD tag size");
_Static_assert(CRYPT_KEY_BYTES == crypto_kdf_KEYBYTES, "kdf key size");
_Static_assert(CRYPT_KDF_CONTEXT_BYTES == crypto_kdf_CONTEXTBYTES, "kdf context size");
_Static_assert(CRYPT_SIV_BYTES + 8 == crypto_stream_xchacha20_NONCEBYTES,
	       "SIV nonce size");
_Static_assert(CRYPT_SALT_BYTES == crypto_pwhash_SALTBYTES, "pwhash salt size");

/* True if [a, a+alen) and [b, b+blen) share a byte. */
static int overlaps(const void *a, size_t alen, const void *b, size_t blen)
{
	const uint8_t *pa = a, *pb = b;

	if (alen == 0 || blen == 0)
		return 0;
	return pa < pb + blen && pb < pa + alen;
}

/* --- nonces ------------------------------------------------------------------ */

#define CRYPT_NONCE_POOL (64 * CRYPT_NONCE_BYTES) /* bytes fetched per refill */

/* Bumped in a forked child: pools filled before the fork are stale. */
static atomic_uint nonce_generation = 1;

/* One thread's unused random bytes. */
static _Thread_local struct {
	uint8_t buf[CRYPT_NONCE_POOL]; /* random bytes; [used, end) unused */
	size_t used;                   /* bytes handed out */
	unsigned generation;           /* nonce_generation when filled; 0 = never */
} nonce_pool;

static void nonce_after_fork(void)
{
	atomic_fetch_add(&nonce_generation, 1);
}

static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

static void nonce_init(void)
{
	/* Without the handler a fork could repeat nonces: refuse to batch. */
	if (pthread_atfork(NULL, NULL, nonce_after_fork) != 0)
		atomic_store(&nonce_generation, 0);
}

/* out = n (at most CRYPT_NONCE_BYTES) fresh random bytes from this
 * thread's pool: one getrandom per pool, not per call. */
static void pool_take(uint8_t *out, size_t n)
{
	unsigned gen = atomic_load(&nonce_generation);

	if (gen == 0) {
		randombytes_buf(out, n);
		return;
	}
	if (nonce_pool.generation != gen ||
	    sizeof(nonce_pool.buf) - nonce_pool.used < n) {
		randombytes_buf(nonce_pool.buf, sizeof(nonce_pool.buf));
		nonce_pool.used = 0;
		nonce_pool.generation = gen;
	}
	memcpy(out, nonce_pool.buf + nonce_pool.used, n);
	/* Handed out once: wipe it from the pool. */
	sodium_memzero(nonce_pool.buf + nonce_pool.used, n);
	nonce_pool.used += n;
}

/* out = CRYPT_NONCE_BYTES fresh random bytes. */
static void nonce_next(uint8_t out[CRYPT_NONCE_BYTES])
{
	pool_take(out, CRYPT_NONCE_BYTES);
}

/* --- bulk AEAD ----------------------------------------------------------------
 *
 * XChaCha20-Poly1305 (IETF) is HChaCha20(key, npub[0..16]) as a one-block
 * subkey, then RFC 8439 ChaCha20-Poly1305 under that subkey with the
 * nonce 0^4 | npub[16..24] (libsodium's own definition).  The subkey comes
 * from libsodium's crypto_core_hchacha20; the RFC 8439 part from OpenSSL.
 * test_crypt checks both directions against libsodium's one-call
 * functions.  Below CRYPT_BULK_MIN bytes the EVP set-up per call costs
 * more than the faster cipher saves (0.9 us against 0.5 us for 64 bytes),
 * so keys and short blocks stay with libsodium.
 *
 * Each thread keeps one EVP context.  It holds the last block's subkey
 * until the next call: that key opens that one block only (every block
 * has its own random nonce, so its own subkey), whose plaintext was in
 * the daemon's memory anyway; the context is freed (and cleansed by
 * OpenSSL) when the thread ends.  If OpenSSL cannot provide the cipher,
 * everything stays with libsodium. */

#define CRYPT_BULK_MIN 1024
#define HCHACHA_INPUT_BYTES 16
#define IETF_NONCE_BYTES 12

static EVP_CIPHER *bulk_cipher; /* fetched once, at the first block; NULL: off */
static pthread_key_t bulk_key;  /* frees a thread's context at its exit */
static _Thread_local EVP_CIPHER_CTX *bulk_ctx; /* this thread's context */
static pthread_once_t bulk_once = PTHREAD_ONCE_INIT;
static atomic_bool bulk_off; /* tests: libsodium for every length */

static void bulk_ctx_free(void *ctx)
{
	EVP_CIPHER_CTX_free(ctx);
}

static void bulk_init(void)
{
	EVP_CIPHER *c;

	/* No openssl.cnf: a site's OpenSSL configuration is not ours to
	 * load, and without it the default provider serves the fetch. */
	if (OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL) != 1)
		return;
	c = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
	if (!c)
		return;
	if (pthread_key_create(&bulk_key, bulk_ctx_free) != 0) {
		EVP_CIPHER_free(c);
		return;
	}
	bulk_cipher = c;
}

bool crypt_bulk_active(void)
{
	/* Set up at the first block, not in crypt_init: admin verbs that
	 * never touch content skip OpenSSL's start-up (about 1 ms). */
	(void)pthread_once(&bulk_once, bulk_init);
	return bulk_cipher && !atomic_load_explicit(&bulk_off, memory_order_relaxed);
}

void crypt_bulk_set(bool on)
{
	atomic_store(&bulk_off, !on);
}

/* This thread's context, set to the cipher; NULL if there is none (or
 * the bulk path is off). */
static EVP_CIPHER_CTX *bulk_ctx_get(void)
{
	EVP_CIPHER_CTX *ctx = bulk_ctx;

	if (!crypt_bulk_active())
		return NULL;
	if (ctx)
		return ctx;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return NULL;
	if (EVP_CipherInit_ex2(ctx, bulk_cipher, NULL, NULL, 1, NULL) != 1 ||
	    pthread_setspecific(bulk_key, ctx) != 0) {
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	bulk_ctx = ctx;
	return ctx;
}

/* Keys ctx for one block: subkey and IETF nonce from key and npub. */
static int bulk_key_block(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *npub,
			  const uint8_t key[CRYPT_KEY_BYTES])
{
	uint8_t subkey[CRYPT_KEY_BYTES];
	uint8_t n2[IETF_NONCE_BYTES] = {0};
	int ok;

	crypto_core_hchacha20(subkey, npub, key, NULL);
	memcpy(n2 + 4, npub + HCHACHA_INPUT_BYTES,
	       CRYPT_NONCE_BYTES - HCHACHA_INPUT_BYTES);
	ok = EVP_CipherInit_ex2(ctx, NULL, subkey, n2, enc, NULL) == 1;
	sodium_memzero(subkey, sizeof(subkey));
	return ok;
}

/* ct (may equal src) | tag = seal(src): 1 done, 0 not done and nothing
 * written (use libsodium), -1 failed after writing ct (src may be gone). */
static int bulk_seal(uint8_t *ct, uint8_t tag[CRYPT_TAG_BYTES], const uint8_t *src,
		     size_t len, const uint8_t *npub, const uint8_t key[CRYPT_KEY_BYTES],
		     const uint8_t *ad, size_t adlen)
{
	EVP_CIPHER_CTX *ctx;
	int l;

	if (len < CRYPT_BULK_MIN || len > INT_MAX || adlen > INT_MAX)
		return 0;
	ctx = bulk_ctx_get();
	if (!ctx || !bulk_key_block(ctx, 1, npub, key) ||
	    (adlen > 0 && EVP_EncryptUpdate(ctx, NULL, &l, ad, (int)adlen) != 1))
		return 0;
	if (EVP_EncryptUpdate(ctx, ct, &l, src, (int)len) != 1 || l != (int)len ||
	    EVP_EncryptFinal_ex(ctx, ct + len, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, CRYPT_TAG_BYTES, tag) != 1)
		return -1;
	return 1;
}

/* plain (may equal ct) = open(ct, tag): 1 authentic, -1 forged or failed
 * after writing plain (which may then hold unauthenticated bytes: the
 * caller wipes it), 0 not done and nothing written (use libsodium). */
static int bulk_open(uint8_t *plain, const uint8_t *ct, size_t len,
		     const uint8_t tag[CRYPT_TAG_BYTES], const uint8_t *npub,
		     const uint8_t key[CRYPT_KEY_BYTES], const uint8_t *ad, size_t adlen)
{
	uint8_t t[CRYPT_TAG_BYTES];
	EVP_CIPHER_CTX *ctx;
	int l;

	if (len < CRYPT_BULK_MIN || len > INT_MAX || adlen > INT_MAX)
		return 0;
	ctx = bulk_ctx_get();
	memcpy(t, tag, sizeof(t)); /* the ctrl takes a non-const pointer */
	if (!ctx || !bulk_key_block(ctx, 0, npub, key) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, CRYPT_TAG_BYTES, t) != 1)
		return 0;
	if (adlen > 0 && EVP_DecryptUpdate(ctx, NULL, &l, ad, (int)adlen) != 1)
		return 0;
	/* From here plain (perhaps the ciphertext itself) is written: any
	 * failure is final. */
	if (EVP_DecryptUpdate(ctx, plain, &l, ct, (int)len) != 1 || l != (int)len)
		return -1;
	return EVP_DecryptFinal_ex(ctx, plain + len, &l) == 1 ? 1 : -1;
}

int crypt_init(void)
{
	if (sodium_init() < 0)
		return -EIO;
	(void)pthread_once(&nonce_once, nonce_init);
	return 0;
}

void *crypt_secure_alloc(size_t n)
{
	return sodium_malloc(n);
}

void crypt_secure_free(void *p)
{
	/* sodium_free wipes the region before unmapping it. */
	sodium_free(p);
}

void crypt_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		sodium_memzero(p, n);
}

void crypt_random(void *buf, size_t n)
{
	randombytes_buf(buf, n);
}

void crypt_random_public(void *buf, size_t n)
{
	/* Values that are stored in the clear share the nonce pool: the
	 * same generator, a fraction of a syscall each.  Never keys: the
	 * pool's bytes wait in ordinary memory. */
	while (n > 0) {
		size_t k = n < CRYPT_NONCE_BYTES ? n : CRYPT_NONCE_BYTES;

		pool_take(buf, k);
		buf = (uint8_t *)buf + k;
		n -= k;
	}
}

int crypt_equal(const void *a, const void *b, size_t n)
{
	return sodium_memcmp(a, b, n) == 0;
}

int crypt_kdf(uint8_t out[CRYPT_KEY_BYTES], const uint8_t key[CRYPT_KEY_BYTES],
	      uint64_t id, const char ctx[CRYPT_KDF_CONTEXT_BYTES])
{
	if (crypto_kdf_derive_from_key(out, CRYPT_KEY_BYTES, id, ctx, key) != 0)
		return -EINVAL;
	return 0;
}

void crypt_hash(uint8_t *out, size_t outlen, const uint8_t key[CRYPT_KEY_BYTES],
		const void *msg, size_t n)
{
	/* Only a caller's outlen outside 16..64 can fail: a programming error,
	 * and continuing would hand back uninitialised bytes as a key. */
	if (outlen < 16 ||
	    crypto_generichash(out, outlen, msg, n, key, key ? CRYPT_KEY_BYTES : 0) != 0)
		abort();
}

void crypt_hash2(uint8_t *out, size_t outlen, const uint8_t key[CRYPT_KEY_BYTES],
		 const void *a, size_t alen, const void *b, size_t blen)
{
	crypto_generichash_state st;

	if (outlen < 16 ||
	    crypto_generichash_init(&st, key, key ? CRYPT_KEY_BYTES : 0, outlen) != 0)
		abort(); /* as in crypt_hash */
	crypto_generichash_update(&st, a, alen);
	crypto_generichash_update(&st, b, blen);
	crypto_generichash_final(&st, out, outlen);
	sodium_memzero(&st, sizeof(st));
}

_Static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(struct crypt_sha256),
	       "struct crypt_sha256 too small for libsodium's state");
_Static_assert(crypto_hash_sha256_BYTES == CRYPT_SHA256_BYTES, "SHA-256 size");

void crypt_sha256_init(struct crypt_sha256 *s)
{
	crypto_hash_sha256_init((crypto_hash_sha256_state *)s->opaque);
}

void crypt_sha256_update(struct crypt_sha256 *s, const void *p, size_t n)
{
	crypto_hash_sha256_update((crypto_hash_sha256_state *)s->opaque, p, n);
}

void crypt_sha256_final(struct crypt_sha256 *s, uint8_t out[CRYPT_SHA256_BYTES])
{
	crypto_hash_sha256_final((crypto_hash_sha256_state *)s->opaque, out);
	sodium_memzero(s, sizeof(*s));
}

int crypt_block_seal(uint8_t *out, const uint8_t *plain, size_t len,
		     const uint8_t key[CRYPT_KEY_BYTES], const uint8_t *ad, size_t adlen)
{
	uint8_t *ct = out + CRYPT_NONCE_BYTES;
	const uint8_t *src = plain;
	int bulk;

	/* Move overlapping plaintext to where the ciphertext goes first, so
	 * the nonce cannot clobber it and either library encrypts in place. */
	if (src != ct && overlaps(src, len, out, len + CRYPT_AEAD_OVERHEAD)) {
		memmove(ct, src, len);
		src = ct;
	}
	nonce_next(out);
	bulk = bulk_seal(ct, ct + len, src, len, out, key, ad, adlen);
	if (bulk != 0)
		return bulk > 0 ? 0 : -EIO;
	if (crypto_aead_xchacha20poly1305_ietf_encrypt(ct, NULL, src, len, ad, adlen,
						       NULL, out, key) != 0)
		return -EINVAL;
	return 0;
}

int crypt_block_open(uint8_t *plain, const uint8_t *in, size_t inlen,
		     const uint8_t key[CRYPT_KEY_BYTES], const uint8_t *ad, size_t adlen)
{
	uint8_t nonce[CRYPT_NONCE_BYTES];
	const uint8_t *ct = in + CRYPT_NONCE_BYTES;
	uint8_t *dst = plain;
	size_t len;
	int ret = 0, bulk;

	if (inlen < CRYPT_AEAD_OVERHEAD)
		return -EINVAL;
	len = inlen - CRYPT_AEAD_OVERHEAD;
	memcpy(nonce, in, sizeof(nonce));
	/* Overlapping buffers: decrypt in place (both libraries allow
	 * m == c), then slide the result to where the caller wants it. */
	if (plain != ct && overlaps(plain, len, in, inlen))
		dst = (uint8_t *)ct;
	bulk = bulk_open(dst, ct, len, ct + len, nonce, key, ad, adlen);
	if (bulk < 0) {
		crypt_wipe(dst, len);
		ret = -EIO;
		goto out;
	}
	if (bulk == 0 && crypto_aead_xchacha20poly1305_ietf_decrypt(
				 dst, NULL, NULL, ct, len + CRYPT_TAG_BYTES, ad, adlen,
				 nonce, key) != 0) {
		ret = -EIO;
		goto out;
	}
	if (dst != plain)
		memmove(plain, dst, len);
out:
	if (ret < 0)
		crypt_wipe(plain, len);
	return ret;
}

/* siv = BLAKE2b-128_mac_key(ad | plain). */
static void siv_compute(uint8_t siv[CRYPT_SIV_BYTES], const uint8_t *plain, size_t len,
			const uint8_t mac_key[CRYPT_KEY_BYTES], const uint8_t *ad,
			size_t adlen)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, mac_key, CRYPT_KEY_BYTES, CRYPT_SIV_BYTES);
	crypto_generichash_update(&st, ad, adlen);
	crypto_generichash_update(&st, plain, len);
	crypto_generichash_final(&st, siv, CRYPT_SIV_BYTES);
	sodium_memzero(&st, sizeof(st));
}

void crypt_siv_seal(uint8_t *out, const uint8_t *plain, size_t len,
		    const uint8_t enc_key[CRYPT_KEY_BYTES],
		    const uint8_t mac_key[CRYPT_KEY_BYTES], const uint8_t *ad,
		    size_t adlen)
{
	uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {0};
	uint8_t *ct = out + CRYPT_SIV_BYTES;
	const uint8_t *src = plain;

	siv_compute(nonce, plain, len, mac_key, ad, adlen);
	if (src != ct && overlaps(src, len, out, len + CRYPT_SIV_BYTES)) {
		memmove(ct, src, len);
		src = ct;
	}
	crypto_stream_xchacha20_xor(ct, src, len, nonce, enc_key);
	memcpy(out, nonce, CRYPT_SIV_BYTES);
}

int crypt_siv_open(uint8_t *plain, const uint8_t *in, size_t inlen,
		   const uint8_t enc_key[CRYPT_KEY_BYTES],
		   const uint8_t mac_key[CRYPT_KEY_BYTES], const uint8_t *ad,
		   size_t adlen)
{
	uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {0};
	uint8_t siv[CRYPT_SIV_BYTES];
	const uint8_t *src = in + CRYPT_SIV_BYTES;
	size_t len;
	int ret = 0;

	if (inlen < CRYPT_SIV_BYTES)
		return -EINVAL;
	len = inlen - CRYPT_SIV_BYTES;
	memcpy(nonce, in, CRYPT_SIV_BYTES);
	if (plain != src && overlaps(plain, len, in, inlen)) {
		memmove(plain, src, len);
		src = plain;
	}
	crypto_stream_xchacha20_xor(plain, src, len, nonce, enc_key);
	siv_compute(siv, plain, len, mac_key, ad, adlen);
	if (sodium_memcmp(siv, nonce, CRYPT_SIV_BYTES) != 0) {
		crypt_wipe(plain, len);
		ret = -EIO;
	}
	return ret;
}

int crypt_pwhash(uint8_t out[CRYPT_KEY_BYTES], const char *pass, size_t passlen,
		 const uint8_t salt[CRYPT_SALT_BYTES], uint64_t opslimit,
		 uint64_t memlimit)
{
	if (opslimit < crypto_pwhash_argon2id_opslimit_min() ||
	    opslimit > crypto_pwhash_argon2id_opslimit_max() ||
	    memlimit < crypto_pwhash_argon2id_memlimit_min() ||
	    memlimit > crypto_pwhash_argon2id_memlimit_max() ||
	    passlen > crypto_pwhash_argon2id_passwd_max())
		return -EINVAL;
	if (pass == NULL && passlen > 0)
		return -EINVAL;
	if (crypto_pwhash(out, CRYPT_KEY_BYTES, pass ? pass : "", passlen, salt,
			  (unsigned long long)opslimit, (size_t)memlimit,
			  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		/* Limits were checked above; what is left is allocation. */
		crypt_wipe(out, CRYPT_KEY_BYTES);
		return -ENOMEM;
	}
	return 0;
}

uint64_t crypt_pwhash_ops_min(void)
{
	return crypto_pwhash_argon2id_opslimit_min();
}

uint64_t crypt_pwhash_mem_min(void)
{
	return crypto_pwhash_argon2id_memlimit_min();
}

int crypt_b64_encode(char *out, size_t cap, const uint8_t *in, size_t len)
{
	const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
	size_t need = sodium_base64_encoded_len(len, variant); /* includes NUL */

	if (cap < need || need - 1 > (size_t)INT32_MAX)
		return -ENAMETOOLONG;
	sodium_bin2base64(out, cap, in, len, variant);
	return (int)(need - 1);
}

int crypt_b64_decode(uint8_t *out, size_t cap, const char *in, size_t len)
{
	size_t bin_len = 0;

	/* No end pointer: libsodium then refuses trailing garbage, and it
	 * always refuses non-zero padding bits, so each byte string has
	 * exactly one accepted encoding (names rely on this). */
	if (sodium_base642bin(out, cap, in, len, NULL, &bin_len, NULL,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
		return -EINVAL;
	if (bin_len > (size_t)INT32_MAX)
		return -EINVAL;
	return (int)bin_len;
}

void crypt_hex(char *out, const uint8_t *in, size_t len)
{
	sodium_bin2hex(out, 2 * len + 1, in, len);
}

int crypt_unhex(uint8_t *out, size_t cap, const char *in)
{
	size_t bin_len = 0;

	if (sodium_hex2bin(out, cap, in, strlen(in), " \t\r\n-", &bin_len, NULL) != 0)
		return -EINVAL;
	if (bin_len > (size_t)INT32_MAX)
		return -EINVAL;
	return (int)bin_len;
}
