/*
 * names.h — encrypted file names in the backing tree.
 *
 * Every backing directory holds NAMES_DIRIV_FILE, 16 random bytes (the
 * directory's name IV).  A plaintext name is sealed with crypt_siv_seal
 * (keys from the directory's keyring, associated data = the directory IV),
 * so equal names in different directories differ, and encoded base64url.
 * If the encoding is longer than NAMES_BACKING_MAX, the backing entry is
 * named NAMES_LONG_PREFIX + base64url(BLAKE2b-256(encoding)) and a sidecar
 * file NAMES_SIDECAR_PREFIX + the same hash holds the full encoding.
 *
 * Backing names that start with '.' are never base64url output, so all of
 * the store's own entries (IV file, sidecars) start with '.'.  Listings
 * hide reserved entries and any name that does not decrypt.
 */
#ifndef CUSTODIAN_NAMES_H
#define CUSTODIAN_NAMES_H

#include <stdbool.h>
#include <stdint.h>

#include "crypt.h"
#include "errs.h"
#include "keys.h"

#define NAMES_DIRIV_FILE ".iv"
#define NAMES_LONG_PREFIX ".L"
#define NAMES_SIDECAR_PREFIX ".N"
#define NAMES_PLAIN_MAX 255   /* longest plaintext name (NAME_MAX) */
#define NAMES_BACKING_MAX 255 /* longest backing name we create */
#define NAMES_FULL_MAX 400    /* buffer for a full encoding, with NUL */

/* One encrypted name. */
struct names_enc {
	char backing[NAMES_BACKING_MAX + 1]; /* entry name in the backing dir */
	char full[NAMES_FULL_MAX];           /* full encoding (== backing unless long) */
	bool is_long;                        /* a sidecar must hold `full` */
};

/* Encrypts one name.  -EINVAL for "", ".", "..", or a name containing '/';
 * -ENAMETOOLONG above NAMES_PLAIN_MAX bytes. */
int names_encrypt(const struct keyring *ring, const uint8_t diriv[CRYPT_DIRIV_BYTES],
		  const char *plain, struct names_enc *out) MUST_CHECK;

/* Decrypts a backing entry of directory dirfd (a long name's sidecar is
 * read from dirfd).  -ENOENT for reserved entries (skip silently), -EIO
 * for a name that does not decrypt or a missing/garbled sidecar. */
int names_decrypt(const struct keyring *ring, const uint8_t diriv[CRYPT_DIRIV_BYTES],
		  int dirfd, const char *backing,
		  char out[NAMES_PLAIN_MAX + 1]) MUST_CHECK;

/* True for entries that belong to the store, not the user: ".", "..",
 * the IV file and sidecars.  Long-name entries are not reserved. */
bool names_reserved(const char *backing);

/* Writes the sidecar for a long name (no-op if not long; replaces an
 * existing sidecar atomically).  Removes it (ENOENT ignored). */
int names_long_store(int dirfd, const struct names_enc *enc) MUST_CHECK;
int names_long_remove(int dirfd, const struct names_enc *enc) MUST_CHECK;

/* Creates a directory IV file in a new, empty backing directory (random,
 * mode 0444, fsynced) and returns the IV.  Loads an existing one: -EIO if
 * missing or short. */
int names_diriv_create(int dirfd, uint8_t iv[CRYPT_DIRIV_BYTES]) MUST_CHECK;

/* The same without the fsync: *unsynced is the IV file's descriptor
 * (written, not yet synced), which the caller must sync and close
 * (durable.h).  On failure nothing is left behind and *unsynced is -1. */
int names_diriv_create_unsynced(int dirfd, uint8_t iv[CRYPT_DIRIV_BYTES],
				int *unsynced) MUST_CHECK;
int names_diriv_load(int dirfd, uint8_t iv[CRYPT_DIRIV_BYTES]) MUST_CHECK;

#endif
