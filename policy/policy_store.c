/*
 * policy_store.c — stores and loads authenticated policy versions (see
 * policy_store.h).  The MAC's explicit length framing keeps two different
 * (author, text) pairs from ever hashing the same bytes.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "policy_store.h"

#define MAC_DOMAIN "custodian-policy-v1" /* hashed with its NUL */

static size_t put_u64(uint8_t *out, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(v >> (8 * i));
	return 8;
}

int policy_store_mac(const struct keys_master *mk, const struct catalog_policy *p,
		     uint8_t mac[CRYPT_MAC_BYTES])
{
	uint8_t hdr[sizeof(MAC_DOMAIN) + 4 * 8 + sizeof(p->applied_by)];
	size_t n = 0, bylen, tlen;
	const uint8_t *key;

	if (!mk || !p || !p->text)
		return -EINVAL;
	key = keys_master_key(mk, KEYS_POLICY_MAC);
	if (!key)
		return -EINVAL;
	bylen = strnlen(p->applied_by, sizeof(p->applied_by));
	tlen = strlen(p->text);
	memcpy(hdr, MAC_DOMAIN, sizeof(MAC_DOMAIN));
	n += sizeof(MAC_DOMAIN);
	n += put_u64(hdr + n, (uint64_t)p->version);
	n += put_u64(hdr + n, (uint64_t)p->applied_us);
	n += put_u64(hdr + n, bylen);
	memcpy(hdr + n, p->applied_by, bylen);
	n += bylen;
	n += put_u64(hdr + n, tlen);
	crypt_hash2(mac, CRYPT_MAC_BYTES, key, hdr, n, p->text, tlen);
	return 0;
}

int policy_store_verify(const struct keys_master *mk, const struct catalog_policy *p)
{
	uint8_t mac[CRYPT_MAC_BYTES];
	int rc;

	rc = policy_store_mac(mk, p, mac);
	if (rc)
		return rc;
	return crypt_equal(mac, p->mac, sizeof(mac)) ? 0 : -EBADMSG;
}

int policy_store_load(struct catalog *cat, const struct keys_master *mk, int64_t version,
		      struct catalog_policy *out)
{
	int rc;

	rc = catalog_policy_get(cat, version, out);
	if (rc)
		goto out;
	rc = policy_store_verify(mk, out);
out:
	if (rc)
		catalog_policy_clear(out);
	return rc;
}

int policy_store_save(struct catalog *cat, const struct keys_master *mk, const char *text,
		      const char *applied_by, int64_t applied_us, int64_t *version)
{
	struct catalog_policy p;
	bool in_tx = false;
	int rc;

	memset(&p, 0, sizeof(p));
	if (!text || !applied_by || strlen(applied_by) >= sizeof(p.applied_by))
		return -EINVAL;
	rc = catalog_begin(cat);
	if (rc)
		goto out;
	in_tx = true;
	rc = catalog_policy_next_version(cat, &p.version);
	if (rc)
		goto out;
	p.text = (char *)text; /* not freed: borrowed for the insert */
	strcpy(p.applied_by, applied_by);
	p.applied_us = applied_us;
	rc = policy_store_mac(mk, &p, p.mac);
	if (rc)
		goto out;
	rc = catalog_policy_add(cat, &p);
	if (rc)
		goto out;
	/* A failed COMMIT can leave the transaction open: roll it back. */
	rc = catalog_commit(cat);
	if (rc)
		goto out;
	in_tx = false;
	if (version)
		*version = p.version;
out:
	if (in_tx)
		catalog_rollback(cat);
	return rc;
}
