/*
 * linktarget.h — encrypted symlink targets.
 *
 * A symlink's target is a path the user typed, so it is as sensitive as a
 * name.  The backing symlink holds base64url(crypt_block_seal(target)) under
 * a key derived from the owning keyring's content key
 * (crypt_hash(32, ring->content, "custodian-symlink-v1")).  Backing symlink
 * targets are limited to PATH_MAX-1 bytes, which bounds the plaintext.
 */
#ifndef CUSTODIAN_LINKTARGET_H
#define CUSTODIAN_LINKTARGET_H

#include <stddef.h>

#include "errs.h"
#include "keys.h"

#define LINKTARGET_PLAIN_MAX 3000  /* longest symlink target accepted */
#define LINKTARGET_STORED_MAX 4096 /* buffer for the stored form, with NUL */

/* -ENAMETOOLONG above LINKTARGET_PLAIN_MAX, -EINVAL if empty. */
int linktarget_encrypt(const struct keyring *ring, const char *plain, char *out,
		       size_t cap) MUST_CHECK;

/* out gets the NUL-terminated target.  -EIO if it does not decrypt,
 * -ENAMETOOLONG if cap is too small. */
int linktarget_decrypt(const struct keyring *ring, const char *stored, char *out,
		       size_t cap) MUST_CHECK;

#endif
