/*
 * test_keys.c — unit tests for fs/keys.c: slots of every kind against a real
 * catalogue in a temporary directory, slot removal policy, tampered slots,
 * derived keys and subject key wrapping.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "catalog.h"
#include "keys.h"

#include "unit_util.h"

/* Tiny Argon2id cost so the tests are fast. */
static struct keys_kdf fast_kdf;

struct fixture {
	char dir[64];           /* temporary directory */
	char db[96];            /* catalogue path inside it */
	struct catalog *cat;    /* open catalogue */
	struct keys_master *mk; /* a generated master key */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL || crypt_init() != 0)
		return -1;
	unit_fast_kdf(&fast_kdf);
	if (unit_mkdtemp(f->dir, sizeof(f->dir), "test_keys") != 0)
		return -1;
	snprintf(f->db, sizeof(f->db), "%s/%s", f->dir, CATALOG_FILE);
	if (catalog_open(f->db, CATALOG_CREATE, &f->cat) != 0)
		return -1;
	if (keys_master_generate(&f->mk) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	keys_master_free(f->mk);
	catalog_close(f->cat);
	if (unit_rm_rf(f->dir) != 0)
		return -1;
	free(f);
	return 0;
}

/* Two masters are the same key if every derived key agrees. */
static void assert_same_master(const struct keys_master *a, const struct keys_master *b)
{
	assert_memory_equal(keys_volume(a), keys_volume(b), sizeof(struct keyring));
	for (int p = KEYS_AUDIT; p <= KEYS_SUBJECT_WRAP; p++)
		assert_memory_equal(keys_master_key(a, p), keys_master_key(b, p),
				    CRYPT_KEY_BYTES);
}

static size_t count_slots(struct catalog *cat)
{
	struct catalog_slot *s = NULL;
	size_t n = 0;

	assert_int_equal(catalog_slot_list(cat, &s, &n), 0);
	free(s);
	return n;
}

static void test_passphrase(void **state)
{
	struct fixture *f = *state;
	struct keys_master *mk = NULL;
	int64_t id1 = -1, id2 = -1;

	/* No passphrase slot yet. */
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw", 2, &mk), -ENOENT);
	assert_null(mk);

	assert_int_equal(keys_slot_add_passphrase(f->cat, f->mk, "correct horse", 13,
						  &fast_kdf, &id1),
			 0);
	assert_true(id1 > 0);
	assert_int_equal(keys_unlock_passphrase(f->cat, "correct horse", 13, &mk), 0);
	assert_non_null(mk);
	assert_same_master(mk, f->mk);
	assert_int_equal(keys_master_slot(mk), id1);
	keys_master_free(mk);
	mk = NULL;

	/* Wrong passphrase, prefix, longer. */
	assert_int_equal(keys_unlock_passphrase(f->cat, "correct horsE", 13, &mk),
			 -EACCES);
	assert_null(mk);
	assert_int_equal(keys_unlock_passphrase(f->cat, "correct horse", 12, &mk),
			 -EACCES);
	assert_int_equal(keys_unlock_passphrase(f->cat, "", 0, &mk), -EACCES);

	/* A second passphrase slot: each opens, and says which one did. */
	assert_int_equal(keys_slot_add_passphrase(f->cat, f->mk, "battery staple", 14,
						  &fast_kdf, &id2),
			 0);
	assert_true(id2 != id1);
	assert_int_equal(keys_unlock_passphrase(f->cat, "battery staple", 14, &mk), 0);
	assert_int_equal(keys_master_slot(mk), id2);
	assert_same_master(mk, f->mk);
	keys_master_free(mk);
	assert_int_equal(keys_unlock_passphrase(f->cat, "correct horse", 13, &mk), 0);
	assert_int_equal(keys_master_slot(mk), id1);
	keys_master_free(mk);

	/* A generated master was not opened by a slot. */
	assert_int_equal(keys_master_slot(f->mk), -1);
	assert_int_equal(keys_master_slot(NULL), -1);
}

static void test_passphrase_bad_args(void **state)
{
	struct fixture *f = *state;
	struct keys_kdf bad = {.opslimit = crypt_pwhash_ops_min(), .memlimit = 1024};

	assert_int_equal(keys_slot_add_passphrase(f->cat, f->mk, "", 0, &fast_kdf, NULL),
			 -EINVAL);
	assert_int_equal(
		keys_slot_add_passphrase(f->cat, f->mk, NULL, 3, &fast_kdf, NULL),
		-EINVAL);
	assert_int_equal(keys_slot_add_passphrase(f->cat, f->mk, "pw", 2, &bad, NULL),
			 -EINVAL);
	assert_int_equal(count_slots(f->cat), 0);
}

static void test_recovery(void **state)
{
	struct fixture *f = *state;
	char text[KEYS_RECOVERY_TEXT_MAX], alt[KEYS_RECOVERY_TEXT_MAX];
	struct keys_master *mk = NULL;
	int64_t id = -1;

	assert_int_equal(keys_slot_add_recovery(f->cat, f->mk, text, &id), 0);
	assert_true(id > 0);
	/* 8 groups of 8 lower-case hex digits joined by dashes. */
	assert_int_equal(strlen(text), 71);
	for (size_t i = 0; i < 71; i++) {
		if (i % 9 == 8)
			assert_int_equal(text[i], '-');
		else
			assert_non_null(strchr("0123456789abcdef", text[i]));
	}
	assert_int_equal(keys_unlock_recovery(f->cat, text, &mk), 0);
	assert_same_master(mk, f->mk);
	/* Recovery is not a passphrase slot. */
	assert_int_equal(keys_master_slot(mk), -1);
	keys_master_free(mk);
	mk = NULL;

	/* Upper case, no dashes, spaces: same key. */
	{
		size_t o = 0;

		for (size_t i = 0; text[i]; i++) {
			if (text[i] == '-')
				alt[o++] = ' ';
			else
				alt[o++] =
					(char)(text[i] >= 'a' ? text[i] - 32 : text[i]);
		}
		alt[o] = '\0';
	}
	assert_int_equal(keys_unlock_recovery(f->cat, alt, &mk), 0);
	keys_master_free(mk);
	mk = NULL;

	/* Malformed: short, long, not hex, odd digit count. */
	assert_int_equal(keys_unlock_recovery(f->cat, "0011-2233", &mk), -EINVAL);
	memcpy(alt, text, sizeof(alt));
	alt[5] = 'g';
	assert_int_equal(keys_unlock_recovery(f->cat, alt, &mk), -EINVAL);
	memcpy(alt, text, 71);
	memcpy(alt + 71, "00", 3);
	assert_int_equal(keys_unlock_recovery(f->cat, alt, &mk), -EINVAL);
	memcpy(alt, text, sizeof(alt));
	alt[70] = '\0';
	assert_int_equal(keys_unlock_recovery(f->cat, alt, &mk), -EINVAL);
	assert_int_equal(keys_unlock_recovery(f->cat, "", &mk), -EINVAL);
	assert_int_equal(keys_unlock_recovery(f->cat, NULL, &mk), -EINVAL);
	assert_null(mk);

	/* Well-formed but wrong. */
	memcpy(alt, text, sizeof(alt));
	alt[0] = alt[0] == '0' ? '1' : '0';
	assert_int_equal(keys_unlock_recovery(f->cat, alt, &mk), -EACCES);
	assert_null(mk);

	/* A recovery key is not a passphrase. */
	assert_int_equal(keys_unlock_passphrase(f->cat, text, strlen(text), &mk),
			 -ENOENT);
}

static void test_keyfile(void **state)
{
	struct fixture *f = *state;
	uint8_t data[300], other[300];
	struct keys_master *mk = NULL;
	int64_t id = -1;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	memcpy(other, data, sizeof(other));
	other[299] ^= 1;

	assert_int_equal(keys_unlock_keyfile(f->cat, data, sizeof(data), &mk), -EACCES);
	assert_int_equal(keys_slot_add_keyfile(f->cat, f->mk, data, 0, NULL), -EINVAL);
	assert_int_equal(keys_slot_add_keyfile(f->cat, f->mk, data, sizeof(data), &id),
			 0);
	assert_true(id > 0);
	assert_int_equal(keys_unlock_keyfile(f->cat, data, sizeof(data), &mk), 0);
	assert_same_master(mk, f->mk);
	keys_master_free(mk);
	mk = NULL;
	assert_int_equal(keys_unlock_keyfile(f->cat, other, sizeof(other), &mk), -EACCES);
	assert_int_equal(keys_unlock_keyfile(f->cat, data, sizeof(data) - 1, &mk),
			 -EACCES);
	assert_int_equal(keys_unlock_keyfile(f->cat, data, 0, &mk), -EINVAL);
	assert_null(mk);
	/* The keyfile bytes used as a passphrase do not open it. */
	assert_int_equal(
		keys_unlock_passphrase(f->cat, (const char *)data, sizeof(data), &mk),
		-ENOENT);
}

static void test_slot_remove(void **state)
{
	struct fixture *f = *state;
	char text[KEYS_RECOVERY_TEXT_MAX];
	struct keys_master *mk = NULL;
	int64_t pid = -1, rid = -1, kid = -1;

	assert_int_equal(keys_slot_remove(f->cat, 12345), -ENOENT);
	assert_int_equal(
		keys_slot_add_passphrase(f->cat, f->mk, "pw-one", 6, &fast_kdf, &pid), 0);
	/* The only slot cannot go. */
	assert_int_equal(keys_slot_remove(f->cat, pid), -EBUSY);
	assert_int_equal(keys_slot_add_recovery(f->cat, f->mk, text, &rid), 0);
	assert_int_equal(
		keys_slot_add_keyfile(f->cat, f->mk, (const uint8_t *)"kf", 2, &kid), 0);
	assert_int_equal(count_slots(f->cat), 3);
	assert_int_equal(keys_slot_remove(f->cat, 12345), -ENOENT);

	/* The last passphrase slot may go while other slots remain. */
	assert_int_equal(keys_slot_remove(f->cat, pid), 0);
	assert_int_equal(keys_slot_remove(f->cat, pid), -ENOENT);
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw-one", 6, &mk), -ENOENT);
	assert_int_equal(keys_slot_remove(f->cat, kid), 0);
	assert_int_equal(keys_unlock_keyfile(f->cat, (const uint8_t *)"kf", 2, &mk),
			 -EACCES);
	/* The recovery slot is now the last one. */
	assert_int_equal(keys_slot_remove(f->cat, rid), -EBUSY);
	assert_int_equal(count_slots(f->cat), 1);
	assert_int_equal(keys_unlock_recovery(f->cat, text, &mk), 0);
	keys_master_free(mk);
}

/* Replaces slot `id` by a copy changed by `edit` (the catalogue API has no
 * update, and a thief with the file can do the same). */
static int64_t tamper_slot(struct catalog *cat, int64_t id,
			   void (*edit)(struct catalog_slot *s))
{
	struct catalog_slot *s = NULL, copy;
	size_t n = 0;
	int found = 0;

	assert_int_equal(catalog_slot_list(cat, &s, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (s[i].id == id) {
			copy = s[i];
			found = 1;
		}
	}
	free(s);
	assert_true(found);
	edit(&copy);
	assert_int_equal(catalog_slot_remove(cat, id), 0);
	assert_int_equal(catalog_slot_add(cat, &copy), 0);
	return copy.id;
}

static void flip_wrapped(struct catalog_slot *s)
{
	s->wrapped[CRYPT_NONCE_BYTES + 3] ^= 0x01;
}

static void flip_tag(struct catalog_slot *s)
{
	s->wrapped[KEYS_WRAPPED_BYTES - 1] ^= 0x80;
}

static void flip_salt(struct catalog_slot *s)
{
	s->salt[0] ^= 0x01;
}

static void bad_limits(struct catalog_slot *s)
{
	s->memlimit = 1;
}

static void restore_limits(struct catalog_slot *s)
{
	s->memlimit = 8ULL << 20;
}

/* A recovery slot relabelled as a keyfile slot. */
static void make_keyfile(struct catalog_slot *s)
{
	strcpy(s->kind, KEYS_SLOT_KEYFILE);
}

static void test_tampered_slots(void **state)
{
	struct fixture *f = *state;
	char text[KEYS_RECOVERY_TEXT_MAX];
	struct keys_master *mk = NULL;
	int64_t id = -1, rid = -1;

	assert_int_equal(keys_slot_add_passphrase(f->cat, f->mk, "pw", 2, &fast_kdf, &id),
			 0);
	id = tamper_slot(f->cat, id, flip_wrapped);
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw", 2, &mk), -EACCES);
	id = tamper_slot(f->cat, id, flip_wrapped); /* undo */
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw", 2, &mk), 0);
	keys_master_free(mk);
	mk = NULL;
	id = tamper_slot(f->cat, id, flip_tag);
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw", 2, &mk), -EACCES);
	id = tamper_slot(f->cat, id, flip_tag);
	id = tamper_slot(f->cat, id, flip_salt);
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw", 2, &mk), -EACCES);
	id = tamper_slot(f->cat, id, flip_salt);
	/* Unusable Argon2 parameters read as a slot that does not open. */
	id = tamper_slot(f->cat, id, bad_limits);
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw", 2, &mk), -EACCES);
	id = tamper_slot(f->cat, id, restore_limits);
	assert_int_equal(keys_unlock_passphrase(f->cat, "pw", 2, &mk), 0);
	keys_master_free(mk);
	mk = NULL;

	/* Slots are matched by kind: a relabelled recovery slot is no longer
	 * tried by recovery unlocking. */
	assert_int_equal(keys_slot_add_recovery(f->cat, f->mk, text, &rid), 0);
	rid = tamper_slot(f->cat, rid, make_keyfile);
	assert_int_equal(keys_unlock_recovery(f->cat, text, &mk), -EACCES);
	assert_null(mk);
}

static void test_derived_keys(void **state)
{
	struct fixture *f = *state;
	const uint8_t *k[KEYS_SUBJECT_WRAP + 1 + 4];
	const struct keyring *v = keys_volume(f->mk);
	struct keys_master *other = NULL;
	size_t n = 0;

	for (int p = KEYS_AUDIT; p <= KEYS_SUBJECT_WRAP; p++) {
		k[n] = keys_master_key(f->mk, p);
		assert_non_null(k[n]);
		n++;
	}
	k[n++] = v->content;
	k[n++] = v->name_enc;
	k[n++] = v->name_mac;
	k[n++] = v->path;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			assert_memory_not_equal(k[i], k[j], CRYPT_KEY_BYTES);
	assert_null(keys_master_key(f->mk, (enum keys_purpose)99));

	/* Another master gives other keys. */
	assert_int_equal(keys_master_generate(&other), 0);
	assert_memory_not_equal(keys_master_key(other, KEYS_AUDIT),
				keys_master_key(f->mk, KEYS_AUDIT), CRYPT_KEY_BYTES);
	assert_memory_not_equal(keys_volume(other), v, sizeof(*v));
	keys_master_free(other);
	keys_master_free(NULL);
}

static void test_ring_derive(void **state)
{
	uint8_t root[CRYPT_KEY_BYTES], root2[CRYPT_KEY_BYTES];
	struct keyring *a = NULL, *b = NULL, *c = NULL;

	(void)state;
	crypt_random(root, sizeof(root));
	memcpy(root2, root, sizeof(root2));
	root2[0] ^= 1;
	assert_int_equal(keys_ring_derive(root, &a), 0);
	assert_int_equal(keys_ring_derive(root, &b), 0);
	assert_int_equal(keys_ring_derive(root2, &c), 0);
	assert_memory_equal(a, b, sizeof(*a));
	assert_memory_not_equal(a->content, c->content, CRYPT_KEY_BYTES);
	assert_memory_not_equal(a->content, a->name_enc, CRYPT_KEY_BYTES);
	assert_memory_not_equal(a->name_enc, a->name_mac, CRYPT_KEY_BYTES);
	assert_memory_not_equal(a->name_mac, a->path, CRYPT_KEY_BYTES);
	assert_memory_not_equal(a->content, root, CRYPT_KEY_BYTES);
	keys_ring_free(a);
	keys_ring_free(b);
	keys_ring_free(c);
	keys_ring_free(NULL);
}

static void test_subject(void **state)
{
	struct fixture *f = *state;
	uint8_t wrapped[KEYS_WRAPPED_BYTES], w2[KEYS_WRAPPED_BYTES];
	const uint8_t ad[] = "subject-hash-of-C-10042";
	const uint8_t ad2[] = "subject-hash-of-C-10043";
	struct keyring *r = NULL, *r2 = NULL, *r3 = NULL;
	struct keys_master *other = NULL;

	assert_int_equal(keys_subject_new(f->mk, ad, sizeof(ad), wrapped, &r), 0);
	assert_non_null(r);
	assert_int_equal(keys_subject_open(f->mk, ad, sizeof(ad), wrapped, &r2), 0);
	assert_memory_equal(r, r2, sizeof(*r));
	keys_ring_free(r2);
	r2 = NULL;
	/* Subject rings are not the volume ring, and each subject differs. */
	assert_memory_not_equal(r, keys_volume(f->mk), sizeof(*r));
	assert_int_equal(keys_subject_new(f->mk, ad, sizeof(ad), w2, &r3), 0);
	assert_memory_not_equal(r->content, r3->content, CRYPT_KEY_BYTES);
	keys_ring_free(r3);

	/* Wrong AD (another subject's hash). */
	assert_int_equal(keys_subject_open(f->mk, ad2, sizeof(ad2), wrapped, &r2), -EIO);
	assert_null(r2);
	/* Every byte of the wrapped key is authenticated. */
	for (size_t i = 0; i < KEYS_WRAPPED_BYTES; i++) {
		memcpy(w2, wrapped, sizeof(w2));
		w2[i] ^= 0x10;
		assert_int_equal(keys_subject_open(f->mk, ad, sizeof(ad), w2, &r2), -EIO);
		assert_null(r2);
	}
	/* Another master key cannot open it. */
	assert_int_equal(keys_master_generate(&other), 0);
	assert_int_equal(keys_subject_open(other, ad, sizeof(ad), wrapped, &r2), -EIO);
	keys_master_free(other);
	keys_ring_free(r);
}

/* A catalogue that refuses writes: adding a slot fails and adds nothing. */
static void test_readonly_catalog(void **state)
{
	struct fixture *f = *state;
	struct catalog *ro = NULL;
	char text[KEYS_RECOVERY_TEXT_MAX];

	assert_int_equal(catalog_open(f->db, CATALOG_RDONLY, &ro), 0);
	assert_int_equal(keys_slot_add_passphrase(ro, f->mk, "pw", 2, &fast_kdf, NULL),
			 -EROFS);
	assert_int_equal(keys_slot_add_recovery(ro, f->mk, text, NULL), -EROFS);
	assert_int_equal(keys_slot_add_keyfile(ro, f->mk, (const uint8_t *)"k", 1, NULL),
			 -EROFS);
	catalog_close(ro);
	assert_int_equal(count_slots(f->cat), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_passphrase, setup, teardown),
		cmocka_unit_test_setup_teardown(test_passphrase_bad_args, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_recovery, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyfile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tampered_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_derived_keys, setup, teardown),
		cmocka_unit_test(test_ring_derive),
		cmocka_unit_test_setup_teardown(test_subject, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_catalog, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
