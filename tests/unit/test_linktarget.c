/*
 * test_linktarget.c — unit tests for fs/linktarget.c: round trip, limits,
 * tampering, wrong keyring, small output buffers.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "crypt.h"
#include "keys.h"
#include "linktarget.h"

static struct keyring *ring;
static struct keyring *ring2;

static int setup(void **state)
{
	(void)state;
	if (crypt_init() != 0)
		return -1;
	ring = crypt_secure_alloc(sizeof(*ring));
	ring2 = crypt_secure_alloc(sizeof(*ring2));
	if (!ring || !ring2)
		return -1;
	crypt_random(ring, sizeof(*ring));
	crypt_random(ring2, sizeof(*ring2));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	crypt_secure_free(ring);
	crypt_secure_free(ring2);
	return 0;
}

static void test_roundtrip(void **state)
{
	static const char *targets[] = {"a", "../x/y", "/etc/passwd", "name with spaces",
					"\xc3\xa9t\xc3\xa9/\xe2\x82\xac"};
	char stored[LINKTARGET_STORED_MAX], stored2[LINKTARGET_STORED_MAX];
	char back[LINKTARGET_PLAIN_MAX + 1];

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(targets); i++) {
		assert_int_equal(
			linktarget_encrypt(ring, targets[i], stored, sizeof(stored)), 0);
		/* The stored form is printable base64url and hides the target. */
		assert_int_equal(strspn(stored,
					"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
					"rstuvwxyz0123456789-_"),
				 strlen(stored));
		if (strlen(targets[i]) > 4)
			assert_null(strstr(stored, targets[i]));
		assert_int_equal(linktarget_decrypt(ring, stored, back, sizeof(back)), 0);
		assert_string_equal(back, targets[i]);
		/* Random nonce: the same target stores differently each time. */
		assert_int_equal(
			linktarget_encrypt(ring, targets[i], stored2, sizeof(stored2)),
			0);
		assert_string_not_equal(stored, stored2);
		assert_int_equal(linktarget_decrypt(ring, stored2, back, sizeof(back)),
				 0);
		assert_string_equal(back, targets[i]);
	}
}

static void test_limits(void **state)
{
	static char plain[LINKTARGET_PLAIN_MAX + 2];
	static char stored[LINKTARGET_STORED_MAX];
	static char back[LINKTARGET_PLAIN_MAX + 1];

	(void)state;
	/* Exactly the maximum fits and fits under PATH_MAX in the backing fs. */
	memset(plain, 'p', LINKTARGET_PLAIN_MAX);
	plain[LINKTARGET_PLAIN_MAX] = '\0';
	assert_int_equal(linktarget_encrypt(ring, plain, stored, sizeof(stored)), 0);
	assert_true(strlen(stored) < 4096);
	assert_int_equal(linktarget_decrypt(ring, stored, back, sizeof(back)), 0);
	assert_string_equal(back, plain);
	/* One more byte is refused. */
	plain[LINKTARGET_PLAIN_MAX] = 'p';
	plain[LINKTARGET_PLAIN_MAX + 1] = '\0';
	assert_int_equal(linktarget_encrypt(ring, plain, stored, sizeof(stored)),
			 -ENAMETOOLONG);
	/* Empty target. */
	assert_int_equal(linktarget_encrypt(ring, "", stored, sizeof(stored)), -EINVAL);
	/* Output buffer too small for the encoding. */
	assert_int_equal(linktarget_encrypt(ring, "abc", stored, 10), -ENAMETOOLONG);
	/* Decrypt into a buffer too small for the target (needs 4 with NUL). */
	assert_int_equal(linktarget_encrypt(ring, "abc", stored, sizeof(stored)), 0);
	assert_int_equal(linktarget_decrypt(ring, stored, back, 3), -ENAMETOOLONG);
	assert_int_equal(linktarget_decrypt(ring, stored, back, 4), 0);
	assert_string_equal(back, "abc");
}

static void test_tamper(void **state)
{
	char stored[LINKTARGET_STORED_MAX], bad[LINKTARGET_STORED_MAX];
	char back[LINKTARGET_PLAIN_MAX + 1];
	size_t len;

	(void)state;
	assert_int_equal(linktarget_encrypt(ring, "target/path", stored, sizeof(stored)),
			 0);
	len = strlen(stored);
	/* Flip one character at every position: never decrypts. */
	for (size_t i = 0; i < len; i++) {
		memcpy(bad, stored, len + 1);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_int_equal(linktarget_decrypt(ring, bad, back, sizeof(back)), -EIO);
	}
	/* Truncated, extended, empty, not base64, only a nonce. */
	memcpy(bad, stored, len + 1);
	bad[len - 1] = '\0';
	assert_int_equal(linktarget_decrypt(ring, bad, back, sizeof(back)), -EIO);
	memcpy(bad, stored, len);
	memcpy(bad + len, "AAAA", 5);
	assert_int_equal(linktarget_decrypt(ring, bad, back, sizeof(back)), -EIO);
	assert_int_equal(linktarget_decrypt(ring, "", back, sizeof(back)), -EIO);
	assert_int_equal(linktarget_decrypt(ring, "../etc/passwd", back, sizeof(back)),
			 -EIO);
	assert_int_equal(linktarget_decrypt(ring, "/plain/target", back, sizeof(back)),
			 -EIO);
	memcpy(bad, stored, 54); /* 40 bytes of overhead, no ciphertext */
	bad[54] = '\0';
	assert_int_equal(linktarget_decrypt(ring, bad, back, sizeof(back)), -EIO);
	/* A stored form longer than any we write. */
	memset(bad, 'A', sizeof(bad) - 1);
	bad[sizeof(bad) - 1] = '\0';
	assert_int_equal(linktarget_decrypt(ring, bad, back, sizeof(back)), -EIO);
}

static void test_wrong_keyring(void **state)
{
	char stored[LINKTARGET_STORED_MAX];
	char back[LINKTARGET_PLAIN_MAX + 1];

	(void)state;
	assert_int_equal(
		linktarget_encrypt(ring, "secret/customer", stored, sizeof(stored)), 0);
	assert_int_equal(linktarget_decrypt(ring2, stored, back, sizeof(back)), -EIO);
	/* Only the content key matters: names keys differing changes nothing. */
	{
		struct keyring *r3 = crypt_secure_alloc(sizeof(*r3));

		assert_non_null(r3);
		memcpy(r3, ring2, sizeof(*r3));
		memcpy(r3->content, ring->content, sizeof(r3->content));
		assert_int_equal(linktarget_decrypt(r3, stored, back, sizeof(back)), 0);
		assert_string_equal(back, "secret/customer");
		r3->content[0] ^= 1;
		assert_int_equal(linktarget_decrypt(r3, stored, back, sizeof(back)),
				 -EIO);
		crypt_secure_free(r3);
	}
}

static void test_null_args(void **state)
{
	char stored[LINKTARGET_STORED_MAX];
	char back[16];

	(void)state;
	assert_int_equal(linktarget_encrypt(ring, NULL, stored, sizeof(stored)), -EINVAL);
	assert_int_equal(linktarget_encrypt(ring, "x", NULL, 0), -EINVAL);
	assert_int_equal(linktarget_decrypt(ring, NULL, back, sizeof(back)), -EINVAL);
	assert_int_equal(linktarget_decrypt(ring, "abc", NULL, 0), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_limits),
		cmocka_unit_test(test_tamper),    cmocka_unit_test(test_wrong_keyring),
		cmocka_unit_test(test_null_args),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
