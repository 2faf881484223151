/*
 * keys.h — the key hierarchy: master key, key slots, derived keys, subject
 * keys.
 *
 * The master key (32 random bytes) is never stored in clear; it is wrapped
 * once per key slot (passphrase via Argon2id, recovery key, keyfile).  All
 * working keys are derived from it with crypt_kdf and live in secure memory
 * until keys_master_free() wipes them.  A keyring is the set of keys that
 * encrypts one namespace: the volume (everything outside subjects) or one
 * data subject.
 *
 * Slots are persisted through the catalogue (catalog_slot_*); this module
 * does the crypto and the policy of which slot may be removed.
 */
#ifndef CUSTODIAN_KEYS_H
#define CUSTODIAN_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "crypt.h"
#include "errs.h"

struct catalog;

/* A set of keys for one namespace; always allocated in secure memory. */
struct keyring {
	uint8_t content[CRYPT_KEY_BYTES];  /* per-file keys derive from this */
	uint8_t name_enc[CRYPT_KEY_BYTES]; /* SIV encryption key for names */
	uint8_t name_mac[CRYPT_KEY_BYTES]; /* SIV MAC key for names */
	uint8_t path[CRYPT_KEY_BYTES];     /* encrypts paths in audit records */
};

/* Wrapped key as stored: nonce | ciphertext(32) | tag. */
#define KEYS_WRAPPED_BYTES (CRYPT_KEY_BYTES + CRYPT_AEAD_OVERHEAD)

/* Recovery key as printed: 64 hex digits in groups of 8 with dashes. */
#define KEYS_RECOVERY_TEXT_MAX 80

/* Slot kinds, as stored in the catalogue. */
#define KEYS_SLOT_PASSPHRASE "passphrase"
#define KEYS_SLOT_RECOVERY "recovery"
#define KEYS_SLOT_KEYFILE "keyfile"

/* Argon2id cost of a new passphrase slot. */
struct keys_kdf {
	uint64_t opslimit; /* Argon2id passes */
	uint64_t memlimit; /* bytes */
};

/* The unlocked master key and everything derived from it (opaque). */
struct keys_master;

/* Derived-key selectors for keys_master_key(). */
enum keys_purpose {
	KEYS_AUDIT,        /* MACs the audit chain */
	KEYS_CATALOG_MAC,  /* authenticates catalogue rows */
	KEYS_POLICY_MAC,   /* authenticates stored policy versions */
	KEYS_SUBJECT_HASH, /* keyed hash that finds a subject by id */
	KEYS_SUBJECT_WRAP, /* wraps subject keys */
};

/* Generates a fresh master key (store init). */
int keys_master_generate(struct keys_master **out) MUST_CHECK;

/* Tries every passphrase slot in the catalogue.  -EACCES if none opens
 * (wrong passphrase), -ENOENT if the store has no passphrase slot. */
int keys_unlock_passphrase(struct catalog *cat, const char *pass, size_t len,
			   struct keys_master **out) MUST_CHECK;

/* Unlocks with the printed recovery key (dashes/spaces ignored).
 * -EACCES if wrong, -EINVAL if malformed. */
int keys_unlock_recovery(struct catalog *cat, const char *text,
			 struct keys_master **out) MUST_CHECK;

/* Unlocks with the contents of a keyfile.  -EACCES if no keyfile slot
 * opens. */
int keys_unlock_keyfile(struct catalog *cat, const uint8_t *data, size_t len,
			struct keys_master **out) MUST_CHECK;

/* Adds slots.  *slot_id (may be NULL) gets the new slot's id. */
int keys_slot_add_passphrase(struct catalog *cat, const struct keys_master *mk,
			     const char *pass, size_t len, const struct keys_kdf *kdf,
			     int64_t *slot_id) MUST_CHECK;
int keys_slot_add_recovery(struct catalog *cat, const struct keys_master *mk,
			   char text[KEYS_RECOVERY_TEXT_MAX],
			   int64_t *slot_id) MUST_CHECK;
int keys_slot_add_keyfile(struct catalog *cat, const struct keys_master *mk,
			  const uint8_t *data, size_t len, int64_t *slot_id) MUST_CHECK;

/* Removes a slot.  -EBUSY if it is the last slot that can unlock the store,
 * -ENOENT if there is no such slot. */
int keys_slot_remove(struct catalog *cat, int64_t slot_id) MUST_CHECK;

/* Which passphrase slot opened the store last (for `passwd` to replace
 * it); -1 if it was not a passphrase. */
int64_t keys_master_slot(const struct keys_master *mk);

/* The volume keyring (names and content outside subjects). */
const struct keyring *keys_volume(const struct keys_master *mk);

/* A derived 32-byte key for one purpose. */
const uint8_t *keys_master_key(const struct keys_master *mk, enum keys_purpose purpose);

/* Wipes and frees; NULL accepted. */
void keys_master_free(struct keys_master *mk);

/* Derives a keyring from a 32-byte namespace root key (used for the volume
 * and for each subject key).  Result in secure memory. */
int keys_ring_derive(const uint8_t root[CRYPT_KEY_BYTES],
		     struct keyring **out) MUST_CHECK;
void keys_ring_free(struct keyring *ring);

/* Subject keys: a fresh random subject key, wrapped under KEYS_SUBJECT_WRAP
 * with `ad` (the subject's hash) as associated data; and the inverse.
 * -EIO if the wrapped key does not authenticate. */
int keys_subject_new(const struct keys_master *mk, const uint8_t *ad, size_t adlen,
		     uint8_t wrapped[KEYS_WRAPPED_BYTES],
		     struct keyring **ring) MUST_CHECK;
int keys_subject_open(const struct keys_master *mk, const uint8_t *ad, size_t adlen,
		      const uint8_t wrapped[KEYS_WRAPPED_BYTES],
		      struct keyring **ring) MUST_CHECK;

#endif
