/*
 * keys.c — the key hierarchy: master key, key slots, derived keys, subject
 * keys.
 *
 * Owns how the master key is wrapped in each slot kind (which KEK, which
 * associated data), how every working key is derived from it, and which
 * slot may be removed.  The catalogue only stores the slots; all crypto goes
 * through crypt.c.  Everything secret lives in crypt_secure_alloc memory.
 *
 * Derivation (crypt_kdf):
 *   master --"cstdnkey"/1--> volume root --keys_ring_derive--> volume ring
 *   master --"cstdnkey"/2..6--> audit, catalogue MAC, policy MAC,
 *                               subject hash, subject wrap
 *   root   --"cstdring"/1..4--> content, name_enc, name_mac, path
 * The ids are part of the on-disk format: never renumber them.
 */
#include "keys.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "clock.h"

#define KEYS_MASTER_CTX "cstdnkey"
#define KEYS_RING_CTX "cstdring"
#define KEYS_RECOVERY_DOMAIN "custodian-recovery-v1"
#define KEYS_KEYFILE_DOMAIN "custodian-keyfile-v1"

/* crypt_kdf ids under KEYS_MASTER_CTX. */
#define KEYS_ID_VOLUME 1

#define KEYS_PURPOSES (KEYS_SUBJECT_WRAP + 1)

/* crypt_kdf id of each enum keys_purpose (after the volume root). */
static const uint64_t purpose_ids[KEYS_PURPOSES] = {
	[KEYS_AUDIT] = 2,        [KEYS_CATALOG_MAC] = 3,  [KEYS_POLICY_MAC] = 4,
	[KEYS_SUBJECT_HASH] = 5, [KEYS_SUBJECT_WRAP] = 6,
};

struct keys_master {
	uint8_t master[CRYPT_KEY_BYTES];                 /* the master key itself */
	uint8_t derived[KEYS_PURPOSES][CRYPT_KEY_BYTES]; /* by enum keys_purpose */
	struct keyring volume;                           /* keys outside subjects */
	int64_t slot; /* passphrase slot that unlocked it, or -1 */
};

/* Fills ring from a namespace root key. */
static int ring_fill(struct keyring *ring, const uint8_t root[CRYPT_KEY_BYTES])
{
	int ret;

	ret = crypt_kdf(ring->content, root, 1, KEYS_RING_CTX);
	if (ret == 0)
		ret = crypt_kdf(ring->name_enc, root, 2, KEYS_RING_CTX);
	if (ret == 0)
		ret = crypt_kdf(ring->name_mac, root, 3, KEYS_RING_CTX);
	if (ret == 0)
		ret = crypt_kdf(ring->path, root, 4, KEYS_RING_CTX);
	if (ret < 0)
		crypt_wipe(ring, sizeof(*ring));
	return ret;
}

int keys_ring_derive(const uint8_t root[CRYPT_KEY_BYTES], struct keyring **out)
{
	struct keyring *ring;
	int ret;

	*out = NULL;
	ring = crypt_secure_alloc(sizeof(*ring));
	if (ring == NULL)
		return -ENOMEM;
	ret = ring_fill(ring, root);
	if (ret < 0) {
		crypt_secure_free(ring);
		return ret;
	}
	*out = ring;
	return 0;
}

void keys_ring_free(struct keyring *ring)
{
	crypt_secure_free(ring);
}

/* Derives everything in mk from mk->master. */
static int master_derive(struct keys_master *mk)
{
	uint8_t *root = NULL;
	int ret;

	root = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (root == NULL)
		return -ENOMEM;
	ret = crypt_kdf(root, mk->master, KEYS_ID_VOLUME, KEYS_MASTER_CTX);
	if (ret < 0)
		goto out;
	ret = ring_fill(&mk->volume, root);
	if (ret < 0)
		goto out;
	for (size_t i = 0; i < KEYS_PURPOSES; i++) {
		ret = crypt_kdf(mk->derived[i], mk->master, purpose_ids[i],
				KEYS_MASTER_CTX);
		if (ret < 0)
			goto out;
	}
out:
	crypt_secure_free(root);
	return ret;
}

static struct keys_master *master_alloc(void)
{
	struct keys_master *mk = crypt_secure_alloc(sizeof(*mk));

	if (mk != NULL) {
		crypt_wipe(mk, sizeof(*mk));
		mk->slot = -1;
	}
	return mk;
}

int keys_master_generate(struct keys_master **out)
{
	struct keys_master *mk;
	int ret;

	*out = NULL;
	mk = master_alloc();
	if (mk == NULL)
		return -ENOMEM;
	crypt_random(mk->master, sizeof(mk->master));
	ret = master_derive(mk);
	if (ret < 0) {
		keys_master_free(mk);
		return ret;
	}
	*out = mk;
	return 0;
}

void keys_master_free(struct keys_master *mk)
{
	crypt_secure_free(mk);
}

int64_t keys_master_slot(const struct keys_master *mk)
{
	return mk ? mk->slot : -1;
}

const struct keyring *keys_volume(const struct keys_master *mk)
{
	return &mk->volume;
}

const uint8_t *keys_master_key(const struct keys_master *mk, enum keys_purpose purpose)
{
	if ((unsigned)purpose >= KEYS_PURPOSES)
		return NULL;
	return mk->derived[purpose];
}

/* ---- slots ------------------------------------------------------------ */

/* The KEK of a passphrase slot. */
static int kek_passphrase(uint8_t kek[CRYPT_KEY_BYTES], const struct catalog_slot *s,
			  const char *pass, size_t len)
{
	return crypt_pwhash(kek, pass, len, s->salt, s->opslimit, s->memlimit);
}

/* The KEK of a recovery or keyfile slot: an unkeyed hash with a domain
 * label, so the same bytes used as both give unrelated KEKs. */
static void kek_hashed(uint8_t kek[CRYPT_KEY_BYTES], const char *domain,
		       const uint8_t *data, size_t len)
{
	crypt_hash2(kek, CRYPT_KEY_BYTES, NULL, domain, strlen(domain), data, len);
}

/* Seals mk's master key under kek into slot (kind already set) and stores
 * the slot. */
static int slot_store(struct catalog *cat, const struct keys_master *mk,
		      const uint8_t kek[CRYPT_KEY_BYTES], struct catalog_slot *slot,
		      int64_t *slot_id)
{
	int ret;

	slot->created_us = clock_now_us();
	ret = crypt_block_seal(slot->wrapped, mk->master, CRYPT_KEY_BYTES, kek,
			       (const uint8_t *)slot->kind, strlen(slot->kind));
	if (ret < 0)
		return ret;
	ret = catalog_slot_add(cat, slot);
	if (ret < 0)
		return ret;
	if (slot_id != NULL)
		*slot_id = slot->id;
	return 0;
}

/* Tries to open one slot with kek; on success *out is a fresh master. */
static int slot_open(const struct catalog_slot *s, const uint8_t kek[CRYPT_KEY_BYTES],
		     struct keys_master **out)
{
	struct keys_master *mk;
	int ret;

	mk = master_alloc();
	if (mk == NULL)
		return -ENOMEM;
	ret = crypt_block_open(mk->master, s->wrapped, KEYS_WRAPPED_BYTES, kek,
			       (const uint8_t *)s->kind, strlen(s->kind));
	if (ret < 0) {
		ret = -EACCES;
		goto out;
	}
	ret = master_derive(mk);
out:
	if (ret < 0)
		keys_master_free(mk);
	else
		*out = mk;
	return ret;
}

/* Slot kinds are compared within the catalogue's fixed-size field. */
static bool slot_kind_is(const struct catalog_slot *s, const char *kind)
{
	return strncmp(s->kind, kind, sizeof(s->kind)) == 0;
}

int keys_unlock_passphrase(struct catalog *cat, const char *pass, size_t len,
			   struct keys_master **out)
{
	struct catalog_slot *slots = NULL;
	uint8_t *kek = NULL;
	size_t n = 0, tried = 0;
	int ret, hard = 0;

	*out = NULL;
	if (pass == NULL && len > 0)
		return -EINVAL;
	ret = catalog_slot_list(cat, &slots, &n);
	if (ret < 0)
		return ret;
	kek = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (kek == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	ret = -ENOENT;
	for (size_t i = 0; i < n; i++) {
		int r;

		if (!slot_kind_is(&slots[i], KEYS_SLOT_PASSPHRASE))
			continue;
		tried++;
		r = kek_passphrase(kek, &slots[i], pass, len);
		if (r < 0) {
			/* A slot with unusable parameters must not hide the
			 * others; remember why in case none opens. */
			if (hard == 0)
				hard = r;
			continue;
		}
		r = slot_open(&slots[i], kek, out);
		if (r == 0) {
			(*out)->slot = slots[i].id;
			ret = 0;
			goto out;
		}
		if (r != -EACCES && hard == 0)
			hard = r;
	}
	if (tried > 0)
		ret = hard == -ENOMEM ? -ENOMEM : -EACCES;
out:
	crypt_secure_free(kek);
	free(slots);
	return ret;
}

/* Shared by recovery and keyfile unlocking: tries every slot of kind. */
static int unlock_hashed(struct catalog *cat, const char *kind, const char *domain,
			 const uint8_t *data, size_t len, struct keys_master **out)
{
	struct catalog_slot *slots = NULL;
	uint8_t *kek = NULL;
	size_t n = 0;
	int ret;

	ret = catalog_slot_list(cat, &slots, &n);
	if (ret < 0)
		return ret;
	kek = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (kek == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	kek_hashed(kek, domain, data, len);
	ret = -EACCES;
	for (size_t i = 0; i < n; i++) {
		if (!slot_kind_is(&slots[i], kind))
			continue;
		ret = slot_open(&slots[i], kek, out);
		if (ret != -EACCES)
			goto out;
	}
out:
	crypt_secure_free(kek);
	free(slots);
	return ret;
}

/* Parses a printed recovery key into raw (32 bytes).  Only hex digits,
 * dashes and whitespace are accepted. */
static int recovery_parse(uint8_t raw[CRYPT_KEY_BYTES], const char *text)
{
	int n;

	if (text == NULL)
		return -EINVAL;
	n = crypt_unhex(raw, CRYPT_KEY_BYTES, text);
	if (n != CRYPT_KEY_BYTES) {
		crypt_wipe(raw, CRYPT_KEY_BYTES);
		return -EINVAL;
	}
	return 0;
}

int keys_unlock_recovery(struct catalog *cat, const char *text, struct keys_master **out)
{
	uint8_t *raw;
	int ret;

	*out = NULL;
	raw = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (raw == NULL)
		return -ENOMEM;
	ret = recovery_parse(raw, text);
	if (ret < 0)
		goto out;
	ret = unlock_hashed(cat, KEYS_SLOT_RECOVERY, KEYS_RECOVERY_DOMAIN, raw,
			    CRYPT_KEY_BYTES, out);
out:
	crypt_secure_free(raw);
	return ret;
}

int keys_unlock_keyfile(struct catalog *cat, const uint8_t *data, size_t len,
			struct keys_master **out)
{
	*out = NULL;
	if (data == NULL || len == 0)
		return -EINVAL;
	return unlock_hashed(cat, KEYS_SLOT_KEYFILE, KEYS_KEYFILE_DOMAIN, data, len, out);
}

int keys_slot_add_passphrase(struct catalog *cat, const struct keys_master *mk,
			     const char *pass, size_t len, const struct keys_kdf *kdf,
			     int64_t *slot_id)
{
	struct catalog_slot slot;
	uint8_t *kek;
	int ret;

	/* An empty passphrase is no protection at all. */
	if (pass == NULL || len == 0)
		return -EINVAL;
	kek = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (kek == NULL)
		return -ENOMEM;
	memset(&slot, 0, sizeof(slot));
	strcpy(slot.kind, KEYS_SLOT_PASSPHRASE);
	crypt_random(slot.salt, sizeof(slot.salt));
	slot.opslimit = kdf ? kdf->opslimit : CRYPT_PWHASH_OPS_DEFAULT;
	slot.memlimit = kdf ? kdf->memlimit : CRYPT_PWHASH_MEM_DEFAULT;
	ret = kek_passphrase(kek, &slot, pass, len);
	if (ret < 0)
		goto out;
	ret = slot_store(cat, mk, kek, &slot, slot_id);
out:
	crypt_secure_free(kek);
	return ret;
}

int keys_slot_add_recovery(struct catalog *cat, const struct keys_master *mk,
			   char text[KEYS_RECOVERY_TEXT_MAX], int64_t *slot_id)
{
	struct catalog_slot slot;
	uint8_t *buf;
	uint8_t *raw, *kek;
	char *hex;
	size_t o = 0;
	int ret;

	/* raw | kek | hex in one secure allocation. */
	buf = crypt_secure_alloc(2 * CRYPT_KEY_BYTES + 2 * CRYPT_KEY_BYTES + 1);
	if (buf == NULL)
		return -ENOMEM;
	raw = buf;
	kek = buf + CRYPT_KEY_BYTES;
	hex = (char *)(buf + 2 * CRYPT_KEY_BYTES);
	crypt_random(raw, CRYPT_KEY_BYTES);
	kek_hashed(kek, KEYS_RECOVERY_DOMAIN, raw, CRYPT_KEY_BYTES);
	memset(&slot, 0, sizeof(slot));
	strcpy(slot.kind, KEYS_SLOT_RECOVERY);
	ret = slot_store(cat, mk, kek, &slot, slot_id);
	if (ret < 0)
		goto out;
	crypt_hex(hex, raw, CRYPT_KEY_BYTES);
	for (size_t i = 0; i < 2 * CRYPT_KEY_BYTES; i++) {
		if (i > 0 && i % 8 == 0)
			text[o++] = '-';
		text[o++] = hex[i];
	}
	text[o] = '\0';
out:
	crypt_secure_free(buf);
	return ret;
}

int keys_slot_add_keyfile(struct catalog *cat, const struct keys_master *mk,
			  const uint8_t *data, size_t len, int64_t *slot_id)
{
	struct catalog_slot slot;
	uint8_t *kek;
	int ret;

	if (data == NULL || len == 0)
		return -EINVAL;
	kek = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (kek == NULL)
		return -ENOMEM;
	kek_hashed(kek, KEYS_KEYFILE_DOMAIN, data, len);
	memset(&slot, 0, sizeof(slot));
	strcpy(slot.kind, KEYS_SLOT_KEYFILE);
	ret = slot_store(cat, mk, kek, &slot, slot_id);
	crypt_secure_free(kek);
	return ret;
}

int keys_slot_remove(struct catalog *cat, int64_t slot_id)
{
	struct catalog_slot *slots = NULL;
	size_t n = 0;
	bool found = false;
	int ret;

	ret = catalog_slot_list(cat, &slots, &n);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		if (slots[i].id == slot_id)
			found = true;
	if (!found)
		ret = -ENOENT;
	else if (n == 1)
		ret = -EBUSY; /* the store would become unopenable */
	else
		ret = catalog_slot_remove(cat, slot_id);
	free(slots);
	return ret;
}

/* ---- subject keys ----------------------------------------------------- */

int keys_subject_new(const struct keys_master *mk, const uint8_t *ad, size_t adlen,
		     uint8_t wrapped[KEYS_WRAPPED_BYTES], struct keyring **ring)
{
	uint8_t *key;
	int ret;

	*ring = NULL;
	key = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (key == NULL)
		return -ENOMEM;
	crypt_random(key, CRYPT_KEY_BYTES);
	ret = crypt_block_seal(wrapped, key, CRYPT_KEY_BYTES,
			       mk->derived[KEYS_SUBJECT_WRAP], ad, adlen);
	if (ret < 0)
		goto out;
	ret = keys_ring_derive(key, ring);
out:
	crypt_secure_free(key);
	return ret;
}

int keys_subject_open(const struct keys_master *mk, const uint8_t *ad, size_t adlen,
		      const uint8_t wrapped[KEYS_WRAPPED_BYTES], struct keyring **ring)
{
	uint8_t *key;
	int ret;

	*ring = NULL;
	key = crypt_secure_alloc(CRYPT_KEY_BYTES);
	if (key == NULL)
		return -ENOMEM;
	ret = crypt_block_open(key, wrapped, KEYS_WRAPPED_BYTES,
			       mk->derived[KEYS_SUBJECT_WRAP], ad, adlen);
	if (ret < 0) {
		ret = -EIO;
		goto out;
	}
	ret = keys_ring_derive(key, ring);
out:
	crypt_secure_free(key);
	return ret;
}
