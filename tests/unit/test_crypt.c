/*
 * test_crypt.c — unit tests for fs/crypt.c: AEAD blocks, SIV names, KDF,
 * hashes, Argon2id, base64url and hex.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "crypt.h"

/* libsodium's one-call XChaCha20-Poly1305 is the reference the bulk path
 * (OpenSSL) must match byte for byte. */
#include <sodium.h>

static uint8_t key[CRYPT_KEY_BYTES];
static uint8_t key2[CRYPT_KEY_BYTES];

static int setup(void **state)
{
	(void)state;
	if (crypt_init() != 0)
		return -1;
	crypt_random(key, sizeof(key));
	crypt_random(key2, sizeof(key2));
	return 0;
}

static void test_block_roundtrip(void **state)
{
	static uint8_t plain[CRYPT_BLOCK_PLAIN], back[CRYPT_BLOCK_PLAIN];
	static uint8_t ct[CRYPT_BLOCK_CIPHER], ct2[CRYPT_BLOCK_CIPHER];
	const uint8_t ad[] = "file-id|block-7";

	(void)state;
	crypt_random(plain, sizeof(plain));
	assert_int_equal(crypt_block_seal(ct, plain, sizeof(plain), key, ad, sizeof(ad)),
			 0);
	assert_int_equal(crypt_block_open(back, ct, sizeof(ct), key, ad, sizeof(ad)), 0);
	assert_memory_equal(back, plain, sizeof(plain));
	/* The ciphertext does not contain the plaintext. */
	assert_memory_not_equal(ct + CRYPT_NONCE_BYTES, plain, sizeof(plain));
	/* Fresh random nonce each time. */
	assert_int_equal(crypt_block_seal(ct2, plain, sizeof(plain), key, ad, sizeof(ad)),
			 0);
	assert_memory_not_equal(ct, ct2, CRYPT_NONCE_BYTES);
	assert_memory_not_equal(ct, ct2, sizeof(ct));
	/* Empty plaintext and no AD also work. */
	assert_int_equal(crypt_block_seal(ct, NULL, 0, key, NULL, 0), 0);
	assert_int_equal(crypt_block_open(back, ct, CRYPT_AEAD_OVERHEAD, key, NULL, 0),
			 0);
}

static void test_block_wrong_key_ad_and_short(void **state)
{
	uint8_t plain[100], back[100], ct[100 + CRYPT_AEAD_OVERHEAD];

	(void)state;
	memset(plain, 'x', sizeof(plain));
	assert_int_equal(
		crypt_block_seal(ct, plain, sizeof(plain), key, (const uint8_t *)"a", 1),
		0);
	memset(back, 0xaa, sizeof(back));
	assert_int_equal(
		crypt_block_open(back, ct, sizeof(ct), key2, (const uint8_t *)"a", 1),
		-EIO);
	/* The output is zeroed on failure. */
	for (size_t i = 0; i < sizeof(back); i++)
		assert_int_equal(back[i], 0);
	assert_int_equal(
		crypt_block_open(back, ct, sizeof(ct), key, (const uint8_t *)"b", 1),
		-EIO);
	assert_int_equal(crypt_block_open(back, ct, sizeof(ct), key, NULL, 0), -EIO);
	/* Truncated ciphertext fails authentication; too short is EINVAL. */
	assert_int_equal(
		crypt_block_open(back, ct, sizeof(ct) - 1, key, (const uint8_t *)"a", 1),
		-EIO);
	assert_int_equal(crypt_block_open(back, ct, CRYPT_AEAD_OVERHEAD - 1, key,
					  (const uint8_t *)"a", 1),
			 -EINVAL);
	assert_int_equal(
		crypt_block_open(back, ct, sizeof(ct), key, (const uint8_t *)"a", 1), 0);
	assert_memory_equal(back, plain, sizeof(plain));
}

/* Seals n bytes and checks that single-bit flips of nonce, ciphertext
 * and tag (every bit of nonce and tag, every stride-th bit between) and of
 * the AD, a wrong key and a cut are all refused with the output zeroed.
 * plain and back hold n bytes, ct n + CRYPT_AEAD_OVERHEAD. */
static void check_forgeries(uint8_t *plain, uint8_t *back, uint8_t *ct, size_t n,
			    size_t stride)
{
	static const uint8_t zero[CRYPT_BLOCK_PLAIN];
	size_t len = n + CRYPT_AEAD_OVERHEAD, bits = len * 8;
	uint8_t ad[24];

	assert_true(n <= sizeof(zero));
	crypt_random(plain, n);
	crypt_random(ad, sizeof(ad));
	assert_int_equal(crypt_block_seal(ct, plain, n, key, ad, sizeof(ad)), 0);
	for (size_t bit = 0; bit < bits; bit++) {
		bool edge =
			bit < CRYPT_NONCE_BYTES * 8 || bit >= bits - CRYPT_TAG_BYTES * 8;

		if (!edge && bit % stride != 0)
			continue;
		ct[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		memset(back, 0xaa, n);
		assert_int_equal(crypt_block_open(back, ct, len, key, ad, sizeof(ad)),
				 -EIO);
		assert_memory_equal(back, zero, n);
		ct[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	for (size_t bit = 0; bit < sizeof(ad) * 8; bit++) {
		ad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(crypt_block_open(back, ct, len, key, ad, sizeof(ad)),
				 -EIO);
		ad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(crypt_block_open(back, ct, len, key2, ad, sizeof(ad)), -EIO);
	assert_int_equal(crypt_block_open(back, ct, len - 1, key, ad, sizeof(ad)), -EIO);
	assert_int_equal(crypt_block_open(back, ct, len, key, ad, sizeof(ad)), 0);
	assert_memory_equal(back, plain, n);
}

/* A short block (libsodium): every single bit. */
static void test_block_bitflips(void **state)
{
	uint8_t plain[64], back[64], ct[64 + CRYPT_AEAD_OVERHEAD];

	(void)state;
	check_forgeries(plain, back, ct, sizeof(plain), 1);
}

/* Sealing and opening n bytes in place (or with overlapping buffers)
 * works, and a forged block opened in place leaves no plaintext behind.
 * buf holds n + CRYPT_AEAD_OVERHEAD bytes. */
static void check_in_place(uint8_t *buf, uint8_t *plain, size_t n)
{
	size_t len = n + CRYPT_AEAD_OVERHEAD;

	crypt_random(plain, n);
	memcpy(buf, plain, n);
	assert_int_equal(crypt_block_seal(buf, buf, n, key, NULL, 0), 0);
	assert_int_equal(crypt_block_open(buf, buf, len, key, NULL, 0), 0);
	assert_memory_equal(buf, plain, n);
	/* Plaintext already at the ciphertext's offset. */
	memcpy(buf + CRYPT_NONCE_BYTES, plain, n);
	assert_int_equal(crypt_block_seal(buf, buf + CRYPT_NONCE_BYTES, n, key, NULL, 0),
			 0);
	assert_int_equal(
		crypt_block_open(buf + CRYPT_NONCE_BYTES, buf, len, key, NULL, 0), 0);
	assert_memory_equal(buf + CRYPT_NONCE_BYTES, plain, n);
	assert_int_equal(crypt_block_seal(buf, plain, n, key, NULL, 0), 0);
	buf[len - 1] ^= 1; /* the tag */
	assert_int_equal(crypt_block_open(buf, buf, len, key, NULL, 0), -EIO);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(buf[i], 0);
}

/* Short blocks (libsodium) and whole content blocks (the bulk path, as
 * format uses it). */
static void test_block_in_place(void **state)
{
	static uint8_t buf[CRYPT_BLOCK_CIPHER], plain[CRYPT_BLOCK_PLAIN];

	(void)state;
	check_in_place(buf, plain, 200);
	check_in_place(buf, plain, CRYPT_BLOCK_PLAIN);
}

/* Lengths on both sides of the bulk threshold (1 KiB) and a whole block. */
static const size_t bulk_lens[] = {1, 1023, 1024, 1025, 4000, CRYPT_BLOCK_PLAIN};

/* What crypt seals, libsodium opens, and the other way round, with and
 * without associated data: the bulk path is the same construction. */
static void test_block_matches_reference(void **state)
{
	static uint8_t plain[CRYPT_BLOCK_PLAIN], back[CRYPT_BLOCK_PLAIN];
	static uint8_t ct[CRYPT_BLOCK_CIPHER];
	uint8_t ad[40];

	(void)state;
	/* The platform the Makefile installs has the cipher: without it the
	 * bulk path would go untested. */
	assert_true(crypt_bulk_active());
	crypt_random(ad, sizeof(ad));
	for (size_t k = 0; k < 2 * sizeof(bulk_lens) / sizeof(bulk_lens[0]); k++) {
		size_t i = k % (sizeof(bulk_lens) / sizeof(bulk_lens[0]));

		/* Second pass: libsodium alone, as without OpenSSL. */
		crypt_bulk_set(k < sizeof(bulk_lens) / sizeof(bulk_lens[0]));
		size_t n = bulk_lens[i];

		for (size_t adlen = 0; adlen <= sizeof(ad); adlen += sizeof(ad)) {
			crypt_random(plain, n);
			assert_int_equal(crypt_block_seal(ct, plain, n, key, ad, adlen),
					 0);
			memset(back, 0, n);
			assert_int_equal(crypto_aead_xchacha20poly1305_ietf_decrypt(
						 back, NULL, NULL, ct + CRYPT_NONCE_BYTES,
						 n + CRYPT_TAG_BYTES, ad, adlen, ct, key),
					 0);
			assert_memory_equal(back, plain, n);

			crypt_random(ct, CRYPT_NONCE_BYTES);
			assert_int_equal(crypto_aead_xchacha20poly1305_ietf_encrypt(
						 ct + CRYPT_NONCE_BYTES, NULL, plain, n,
						 ad, adlen, NULL, ct, key),
					 0);
			memset(back, 0, n);
			assert_int_equal(crypt_block_open(back, ct,
							  n + CRYPT_AEAD_OVERHEAD, key,
							  ad, adlen),
					 0);
			assert_memory_equal(back, plain, n);
		}
	}
	crypt_bulk_set(true);
}

/* A whole content block (the bulk path): every bit of nonce and tag,
 * every 61st bit of the ciphertext. */
static void test_block_bulk_forgeries(void **state)
{
	static uint8_t plain[CRYPT_BLOCK_PLAIN], back[CRYPT_BLOCK_PLAIN];
	static uint8_t ct[CRYPT_BLOCK_CIPHER];

	(void)state;
	check_forgeries(plain, back, ct, sizeof(plain), 61);
}

static void *bulk_thread(void *arg)
{
	static const uint8_t ad[] = "thread";
	uint8_t plain[CRYPT_BLOCK_PLAIN], back[CRYPT_BLOCK_PLAIN];
	uint8_t ct[CRYPT_BLOCK_CIPHER];
	intptr_t bad = 0;

	(void)arg;
	for (int i = 0; i < 200 && !bad; i++) {
		crypt_random_public(plain, sizeof(plain));
		if (crypt_block_seal(ct, plain, sizeof(plain), key, ad, sizeof(ad)) !=
			    0 ||
		    crypt_block_open(back, ct, sizeof(ct), key, ad, sizeof(ad)) != 0 ||
		    memcmp(back, plain, sizeof(plain)) != 0)
			bad = 1;
	}
	return (void *)bad;
}

/* Threads each get their own cipher context and give it back when they
 * end (the sanitizer build's leak check sees a context left behind). */
static void test_block_bulk_threads(void **state)
{
	pthread_t t[8];
	void *r;

	(void)state;
	for (int round = 0; round < 3; round++) {
		for (size_t i = 0; i < 8; i++)
			assert_int_equal(pthread_create(&t[i], NULL, bulk_thread, NULL),
					 0);
		for (size_t i = 0; i < 8; i++) {
			assert_int_equal(pthread_join(t[i], &r), 0);
			assert_null(r);
		}
	}
}

static void test_siv(void **state)
{
	const char *name = "invoice-2024-001.pdf";
	size_t n = strlen(name);
	uint8_t a[CRYPT_SIV_BYTES + 64], b[CRYPT_SIV_BYTES + 64];
	uint8_t ad1[CRYPT_DIRIV_BYTES], ad2[CRYPT_DIRIV_BYTES];
	char back[64];

	(void)state;
	crypt_random(ad1, sizeof(ad1));
	memcpy(ad2, ad1, sizeof(ad2));
	ad2[0] ^= 1;
	crypt_siv_seal(a, (const uint8_t *)name, n, key, key2, ad1, sizeof(ad1));
	crypt_siv_seal(b, (const uint8_t *)name, n, key, key2, ad1, sizeof(ad1));
	/* Deterministic. */
	assert_memory_equal(a, b, CRYPT_SIV_BYTES + n);
	assert_memory_not_equal(a + CRYPT_SIV_BYTES, name, n);
	/* Separated by AD. */
	crypt_siv_seal(b, (const uint8_t *)name, n, key, key2, ad2, sizeof(ad2));
	assert_memory_not_equal(a, b, CRYPT_SIV_BYTES);
	/* Different names differ. */
	crypt_siv_seal(b, (const uint8_t *)"invoice-2024-002.pdf", n, key, key2, ad1,
		       sizeof(ad1));
	assert_memory_not_equal(a, b, CRYPT_SIV_BYTES);

	memset(back, 0, sizeof(back));
	assert_int_equal(crypt_siv_open((uint8_t *)back, a, CRYPT_SIV_BYTES + n, key,
					key2, ad1, sizeof(ad1)),
			 0);
	assert_memory_equal(back, name, n);
	/* Wrong AD, wrong keys, each bit flipped: -EIO and output zeroed. */
	assert_int_equal(crypt_siv_open((uint8_t *)back, a, CRYPT_SIV_BYTES + n, key,
					key2, ad2, sizeof(ad2)),
			 -EIO);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(back[i], 0);
	assert_int_equal(crypt_siv_open((uint8_t *)back, a, CRYPT_SIV_BYTES + n, key2,
					key2, ad1, sizeof(ad1)),
			 -EIO);
	assert_int_equal(crypt_siv_open((uint8_t *)back, a, CRYPT_SIV_BYTES + n, key, key,
					ad1, sizeof(ad1)),
			 -EIO);
	for (size_t bit = 0; bit < (CRYPT_SIV_BYTES + n) * 8; bit++) {
		a[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(crypt_siv_open((uint8_t *)back, a, CRYPT_SIV_BYTES + n,
						key, key2, ad1, sizeof(ad1)),
				 -EIO);
		a[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	assert_int_equal(crypt_siv_open((uint8_t *)back, a, CRYPT_SIV_BYTES - 1, key,
					key2, ad1, sizeof(ad1)),
			 -EINVAL);
	/* In place. */
	memcpy(b, a, sizeof(b));
	assert_int_equal(
		crypt_siv_open(b, b, CRYPT_SIV_BYTES + n, key, key2, ad1, sizeof(ad1)),
		0);
	assert_memory_equal(b, name, n);
	crypt_siv_seal(b, b, n, key, key2, ad1, sizeof(ad1));
	assert_memory_equal(a, b, CRYPT_SIV_BYTES + n);
}

static void test_kdf(void **state)
{
	uint8_t a[CRYPT_KEY_BYTES], b[CRYPT_KEY_BYTES], c[CRYPT_KEY_BYTES];
	uint8_t d[CRYPT_KEY_BYTES];

	(void)state;
	assert_int_equal(crypt_kdf(a, key, 1, "cstdtest"), 0);
	assert_int_equal(crypt_kdf(b, key, 1, "cstdtesu"), 0);
	assert_int_equal(crypt_kdf(c, key, 2, "cstdtest"), 0);
	assert_int_equal(crypt_kdf(d, key, 1, "cstdtest"), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	assert_memory_equal(a, d, sizeof(a));
	assert_int_equal(crypt_kdf(d, key2, 1, "cstdtest"), 0);
	assert_memory_not_equal(a, d, sizeof(a));
}

static void test_hash(void **state)
{
	uint8_t a[32], b[32], c[32], d[16];

	(void)state;
	crypt_hash(a, sizeof(a), key, "hello world", 11);
	crypt_hash2(b, sizeof(b), key, "hello ", 6, "world", 5);
	assert_memory_equal(a, b, sizeof(a));
	crypt_hash(c, sizeof(c), NULL, "hello world", 11);
	assert_memory_not_equal(a, c, sizeof(a));
	crypt_hash(c, sizeof(c), key2, "hello world", 11);
	assert_memory_not_equal(a, c, sizeof(a));
	crypt_hash(d, sizeof(d), key, "hello world", 11);
	assert_memory_not_equal(a, d, sizeof(d));
	/* Known answer: unkeyed BLAKE2b-256("abc"). */
	{
		static const char want[] = "bddd813c634239723171ef3fee98579b"
					   "94964e3bb1cb3e427262c8c068d52319";
		char hex[65];

		crypt_hash(a, sizeof(a), NULL, "abc", 3);
		crypt_hex(hex, a, sizeof(a));
		assert_string_equal(hex, want);
	}
}

static void test_equal_wipe_random(void **state)
{
	uint8_t a[32], b[32];

	(void)state;
	crypt_random(a, sizeof(a));
	memcpy(b, a, sizeof(b));
	assert_true(crypt_equal(a, b, sizeof(a)));
	b[31] ^= 0x80;
	assert_false(crypt_equal(a, b, sizeof(a)));
	crypt_wipe(a, sizeof(a));
	memset(b, 0, sizeof(b));
	assert_memory_equal(a, b, sizeof(a));
	crypt_random(a, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
}

static void test_secure_alloc(void **state)
{
	uint8_t *p;

	(void)state;
	p = crypt_secure_alloc(100);
	assert_non_null(p);
	memset(p, 0x5a, 100);
	crypt_secure_free(p);
	crypt_secure_free(NULL);
}

static void test_pwhash(void **state)
{
	uint8_t salt[CRYPT_SALT_BYTES], salt2[CRYPT_SALT_BYTES];
	uint8_t a[CRYPT_KEY_BYTES], b[CRYPT_KEY_BYTES];
	const uint64_t ops = crypt_pwhash_ops_min(), mem = 8ULL << 20;

	(void)state;
	crypt_random(salt, sizeof(salt));
	memcpy(salt2, salt, sizeof(salt2));
	salt2[0] ^= 1;
	assert_int_equal(crypt_pwhash(a, "secret", 6, salt, ops, mem), 0);
	assert_int_equal(crypt_pwhash(b, "secret", 6, salt, ops, mem), 0);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(crypt_pwhash(b, "secreT", 6, salt, ops, mem), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypt_pwhash(b, "secret", 6, salt2, ops, mem), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypt_pwhash(b, "secret", 6, salt, ops + 1, mem), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	/* Minimum memory limit is accepted. */
	assert_int_equal(crypt_pwhash(b, "secret", 6, salt, ops, crypt_pwhash_mem_min()),
			 0);
	/* Out of range limits. */
	assert_int_equal(
		crypt_pwhash(b, "secret", 6, salt, ops, crypt_pwhash_mem_min() - 1),
		-EINVAL);
	if (crypt_pwhash_ops_min() > 0)
		assert_int_equal(crypt_pwhash(b, "secret", 6, salt,
					      crypt_pwhash_ops_min() - 1, mem),
				 -EINVAL);
	assert_int_equal(crypt_pwhash(b, "secret", 6, salt, ops, UINT64_MAX), -EINVAL);
	assert_int_equal(crypt_pwhash(b, "secret", 6, salt, UINT64_MAX, mem), -EINVAL);
}

static void test_b64(void **state)
{
	uint8_t in[64], out[64];
	char enc[100];
	int n;

	(void)state;
	crypt_random(in, sizeof(in));
	for (size_t len = 0; len <= sizeof(in); len++) {
		n = crypt_b64_encode(enc, sizeof(enc), in, len);
		assert_int_equal(n, (int)((len * 4 + 2) / 3));
		assert_int_equal(strlen(enc), (size_t)n);
		assert_null(strchr(enc, '='));
		assert_null(strchr(enc, '+'));
		assert_null(strchr(enc, '/'));
		assert_int_equal(crypt_b64_decode(out, sizeof(out), enc, (size_t)n),
				 (int)len);
		assert_memory_equal(out, in, len);
	}
	/* Known answer. */
	assert_int_equal(
		crypt_b64_encode(enc, sizeof(enc), (const uint8_t *)"\xfb\xff", 2), 3);
	assert_string_equal(enc, "-_8");
	/* Exactly enough room (with the NUL), and one byte too little. */
	assert_int_equal(crypt_b64_encode(enc, 5, (const uint8_t *)"abc", 3), 4);
	assert_string_equal(enc, "YWJj");
	assert_int_equal(crypt_b64_encode(enc, 4, (const uint8_t *)"abc", 3),
			 -ENAMETOOLONG);
	assert_int_equal(crypt_b64_encode(enc, 4, (const uint8_t *)"abcd", 4),
			 -ENAMETOOLONG);

	/* Bad input. */
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "YW=j", 4), -EINVAL);
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "YWJj=", 5), -EINVAL);
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "YW+j", 4), -EINVAL);
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "YW/j", 4), -EINVAL);
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "YW.j", 4), -EINVAL);
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "Y", 1), -EINVAL);
	/* Non-canonical trailing bits ("YR" would decode to 'a' too). */
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "YQ", 2), 1);
	assert_int_equal(crypt_b64_decode(out, sizeof(out), "YR", 2), -EINVAL);
	/* Output too small. */
	assert_int_equal(crypt_b64_decode(out, 2, "YWJj", 4), -EINVAL);
	assert_int_equal(crypt_b64_decode(out, 3, "YWJj", 4), 3);
	assert_memory_equal(out, "abc", 3);
}

static void test_hex(void **state)
{
	uint8_t in[4] = {0x00, 0xab, 0x7f, 0xff}, out[8];
	char hex[9];

	(void)state;
	crypt_hex(hex, in, sizeof(in));
	assert_string_equal(hex, "00ab7fff");
	assert_int_equal(crypt_unhex(out, sizeof(out), "00ab7fff"), 4);
	assert_memory_equal(out, in, 4);
	assert_int_equal(crypt_unhex(out, sizeof(out), "00AB-7F ff\n"), 4);
	assert_memory_equal(out, in, 4);
	assert_int_equal(crypt_unhex(out, sizeof(out), ""), 0);
	assert_int_equal(crypt_unhex(out, sizeof(out), "0"), -EINVAL);
	assert_int_equal(crypt_unhex(out, sizeof(out), "0g"), -EINVAL);
	assert_int_equal(crypt_unhex(out, sizeof(out), "00ab7fff!"), -EINVAL);
	assert_int_equal(crypt_unhex(out, 3, "00ab7fff"), -EINVAL);
}

/* FIPS 180-4 test vectors, whole and fed in pieces across block edges. */
static void test_sha256(void **state)
{
	static const char *abc = "abc";
	static const char *two =
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	struct crypt_sha256 s;
	uint8_t dig[CRYPT_SHA256_BYTES];
	char hex[2 * CRYPT_SHA256_BYTES + 1];
	(void)state;

	crypt_sha256_init(&s);
	crypt_sha256_final(&s, dig);
	crypt_hex(hex, dig, sizeof(dig));
	assert_string_equal(
		hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

	crypt_sha256_init(&s);
	crypt_sha256_update(&s, abc, strlen(abc));
	crypt_sha256_final(&s, dig);
	crypt_hex(hex, dig, sizeof(dig));
	assert_string_equal(
		hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

	crypt_sha256_init(&s);
	for (size_t i = 0; i < strlen(two); i += 7)
		crypt_sha256_update(&s, two + i,
				    strlen(two) - i < 7 ? strlen(two) - i : 7);
	crypt_sha256_final(&s, dig);
	crypt_hex(hex, dig, sizeof(dig));
	assert_string_equal(
		hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	/* final wipes the state */
	for (size_t i = 0; i < sizeof(s.opaque); i++)
		assert_int_equal(s.opaque[i], 0);
}

/* Nonces are fresh on every seal, across a pool refill, and a forked
 * child does not repeat the nonces its parent goes on to use. */
static void test_nonce_unique_and_fork(void **state)
{
	static uint8_t out[200][64 + CRYPT_AEAD_OVERHEAD];
	uint8_t child_nonce[CRYPT_NONCE_BYTES], mine[64 + CRYPT_AEAD_OVERHEAD];
	const uint8_t msg[64] = {0};
	int fds[2], status;
	pid_t pid;
	(void)state;

	for (size_t i = 0; i < 200; i++) {
		assert_int_equal(crypt_block_seal(out[i], msg, sizeof(msg), key, NULL, 0),
				 0);
		for (size_t j = 0; j < i; j++)
			assert_memory_not_equal(out[i], out[j], CRYPT_NONCE_BYTES);
	}
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint8_t c[64 + CRYPT_AEAD_OVERHEAD];

		if (crypt_block_seal(c, msg, sizeof(msg), key, NULL, 0) != 0 ||
		    write(fds[1], c, CRYPT_NONCE_BYTES) != CRYPT_NONCE_BYTES)
			_exit(1);
		_exit(0);
	}
	assert_int_equal(crypt_block_seal(mine, msg, sizeof(msg), key, NULL, 0), 0);
	assert_int_equal(read(fds[0], child_nonce, sizeof(child_nonce)),
			 (ssize_t)sizeof(child_nonce));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_memory_not_equal(child_nonce, mine, CRYPT_NONCE_BYTES);
	close(fds[0]);
	close(fds[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_block_roundtrip),
		cmocka_unit_test(test_block_wrong_key_ad_and_short),
		cmocka_unit_test(test_block_bitflips),
		cmocka_unit_test(test_block_in_place),
		cmocka_unit_test(test_block_matches_reference),
		cmocka_unit_test(test_block_bulk_forgeries),
		cmocka_unit_test(test_block_bulk_threads),
		cmocka_unit_test(test_siv),
		cmocka_unit_test(test_kdf),
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_equal_wipe_random),
		cmocka_unit_test(test_secure_alloc),
		cmocka_unit_test(test_pwhash),
		cmocka_unit_test(test_b64),
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_nonce_unique_and_fork),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
