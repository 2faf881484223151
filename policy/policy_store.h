/*
 * policy_store.h — policy versions in the store's catalogue, authenticated.
 *
 * Each stored version carries a MAC under a key derived from the master key
 * (KEYS_POLICY_MAC) over its version, time, author and text, so a policy
 * edited directly in the database is refused by the daemon and by the
 * tools.  Engine code (catalogue + crypto), kept apart from the pure
 * policy language in policy.h.
 */
#ifndef CUSTODIAN_POLICY_STORE_H
#define CUSTODIAN_POLICY_STORE_H

#include <stdint.h>

#include "catalog.h"
#include "crypt.h"
#include "errs.h"
#include "keys.h"

/* mac = BLAKE2b keyed by KEYS_POLICY_MAC over
 * "custodian-policy-v1\0" | u64le version | u64le applied_us |
 * u64le len(applied_by) | applied_by | u64le len(text) | text.
 * -EINVAL if p->text is NULL. */
int policy_store_mac(const struct keys_master *mk, const struct catalog_policy *p,
		     uint8_t mac[CRYPT_MAC_BYTES]) MUST_CHECK;

/* 0 if p->mac is right, -EBADMSG if not. */
int policy_store_verify(const struct keys_master *mk,
			const struct catalog_policy *p) MUST_CHECK;

/* Reads version (0 = the newest) and checks its MAC.  -ENOENT if there is
 * no such version (no policy at all: the store runs on mode bits alone),
 * -EBADMSG if the MAC is wrong (*out is then cleared), other -errno from
 * the catalogue.  Free with catalog_policy_clear. */
int policy_store_load(struct catalog *cat, const struct keys_master *mk, int64_t version,
		      struct catalog_policy *out) MUST_CHECK;

/* Appends text as the next version in one transaction: version number,
 * MAC, insert.  The caller has validated the text (policy_parse).
 * *version (may be NULL) gets the new number.  -EEXIST if another writer
 * added a version meanwhile (nothing stored: retry). */
int policy_store_save(struct catalog *cat, const struct keys_master *mk, const char *text,
		      const char *applied_by, int64_t applied_us,
		      int64_t *version) MUST_CHECK;

#endif
