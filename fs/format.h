/*
 * format.h — the encrypted file format (one ciphertext file per plaintext
 * file).  Byte-for-byte description: docs/format.md.
 *
 *   header (FORMAT_HEADER_BYTES = 80)
 *     0   4  magic "CSTD"
 *     4   2  format version, little-endian (FORMAT_VERSION)
 *     6   2  flags, little-endian (FORMAT_FLAG_*)
 *     8  32  file id (random)
 *    40   8  birth time, UTC microseconds, little-endian signed
 *    48   8  keep-until, UTC microseconds, little-endian (0 = none)
 *    56   8  reserved, zero
 *    64  16  MAC: BLAKE2b-128 keyed by the file key over bytes 0..63
 *   then block i (i = 0, 1, ...) at 80 + i * CRYPT_BLOCK_CIPHER:
 *     nonce(24) | XChaCha20-Poly1305(plaintext, up to 4096 bytes) | tag(16)
 *     associated data: file id (32) | i as little-endian uint64 (8)
 *   Only the last block may be short.  A block whose stored bytes are all
 *   zero is a hole and reads as zeros (how sparse files stay sparse).
 *
 * file key = BLAKE2b-256 keyed by keyring->content over the file id.
 * The file key is derived per request on the stack and wiped, so no
 * per-file secret outlives the call.
 *
 * Plaintext size is derived from the ciphertext size alone:
 *   0 bytes       -> empty file whose header is not yet written
 *   < 80 bytes    -> damaged (-EIO)
 *   80 + k*4136 + r, r == 0 -> k*4096; r in 1..40 -> damaged; else k*4096+r-40
 *
 * Locking: a struct format_file is not locked here.  The caller holds its
 * node's lock: shared for read, exclusive for write/truncate.
 */
#ifndef CUSTODIAN_FORMAT_H
#define CUSTODIAN_FORMAT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypt.h"
#include "errs.h"
#include "keys.h"

#define FORMAT_MAGIC "CSTD"
#define FORMAT_MAGIC_BYTES 4
#define FORMAT_VERSION 1
#define FORMAT_HEADER_BYTES 80
#define FORMAT_HEADER_MAC_BYTES 16
#define FORMAT_FLAG_WORM 0x0001 /* committed write-once (retention) */

struct format_header {
	uint16_t version;                     /* FORMAT_VERSION */
	uint16_t flags;                       /* FORMAT_FLAG_* */
	uint8_t file_id[CRYPT_FILE_ID_BYTES]; /* random, binds blocks */
	int64_t birth_us;                     /* record creation, UTC us */
	int64_t keep_until_us;                /* retention lock, 0 = none */
};

/* Serialises and MACs a header.  Returns 0. */
int format_header_encode(uint8_t out[FORMAT_HEADER_BYTES], const struct format_header *h,
			 const struct keyring *ring) MUST_CHECK;

/* Parses and authenticates.  -EIO on bad magic, unknown version or bad
 * MAC. */
int format_header_decode(const uint8_t in[FORMAT_HEADER_BYTES], struct format_header *h,
			 const struct keyring *ring) MUST_CHECK;

/* Size conversions; format_plain_size returns -EIO for impossible sizes. */
off_t format_plain_size(off_t cipher_size);
off_t format_cipher_size(off_t plain_size);

/* An open ciphertext file. */
struct format_file {
	int fd;                     /* backing fd, O_RDWR or O_RDONLY */
	const struct keyring *ring; /* owning keyring (volume or subject) */
	bool have_header;           /* false while the file is 0 bytes */
	struct format_header hdr;   /* valid when have_header */
	bool len_ok;                /* the caller saw a possible ciphertext
				       length when it opened fd: a read of
				       blocks that all exist skips the fstat
				       for the length (format_file_read) */
};

/* Writes a fresh header to an empty backing file (new record). */
int format_file_create(struct format_file *f, int fd, const struct keyring *ring,
		       int64_t birth_us) MUST_CHECK;

/* Reads and authenticates the header of an existing backing file.  A
 * 0-byte file loads as empty (have_header false; the first write creates
 * the header with birth = now). */
int format_file_load(struct format_file *f, int fd,
		     const struct keyring *ring) MUST_CHECK;

/* Re-encodes and rewrites f->hdr (e.g. after changing flags or
 * keep_until_us; never change file_id).  -EINVAL without a header.
 * (Added by the format module.) */
int format_file_write_header(struct format_file *f) MUST_CHECK;

/* Plaintext I/O at a plaintext offset.  read returns bytes read (short only
 * at EOF) or -errno (-EIO for any block that fails authentication).  write
 * returns len or -errno; it never leaves a partially updated block. */
ssize_t format_file_read(struct format_file *f, void *buf, size_t len,
			 off_t off) MUST_CHECK;
ssize_t format_file_write(struct format_file *f, const void *buf, size_t len,
			  off_t off) MUST_CHECK;

/* Sets the plaintext size (grow leaves a hole, shrink re-seals the new last
 * block). */
int format_file_truncate(struct format_file *f, off_t size) MUST_CHECK;

/* Plaintext size from fstat of the backing fd. */
int format_file_size(struct format_file *f, off_t *size) MUST_CHECK;

/* Checks the header and every block; calls bad(block, err, arg) for each
 * failing block (block -1 = header).  Returns 0 if all good, -EIO if any
 * failed, other -errno on I/O errors. */
int format_file_verify(int fd, const struct keyring *ring,
		       void (*bad)(int64_t block, int err, void *arg),
		       void *arg) MUST_CHECK;

#endif
