/*
 * subjects.h — data subjects (one customer each) and crypto-shredding.
 *
 * A subject is a directory that the policy marks as a subject root (e.g.
 * every child of /customers).  Its id is that directory's plaintext name.
 * Each subject has its own random key (wrapped by the master key in the
 * catalogue, associated data = the subject's hash), and everything beneath
 * its root — content and names — is encrypted under a keyring derived from
 * it.  Shredding destroys the wrapped key (secure_delete + WAL checkpoint),
 * removes the ciphertext, and records the erasure in an authenticated
 * ledger (and the audit chain), which yields a verifiable certificate.
 *
 * Where a subject lives in the backing tree: its root directory is not
 * named with names_encrypt (that would keep the id decryptable with the
 * volume key from any old copy of the ciphertext), but
 * SUBJECTS_BACKING_PREFIX + base64url(hash), inside the backing directory
 * of its parent.  Such names start with '.', so names_decrypt skips them;
 * the daemon lists subject roots by enumerating these entries and looking
 * their ids up here.  Nothing in the catalogue holds a plaintext id: the
 * row is found by hash and the id is sealed under the subject's own key,
 * so it is destroyed with it.
 *
 * The whole model (state machine, certificates, backups) is described in
 * docs/subjects.md, including the calls the daemon makes ("For the
 * daemon").  Every function returns 0 or -errno.
 */
#ifndef CUSTODIAN_SUBJECTS_H
#define CUSTODIAN_SUBJECTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "catalog.h"
#include "crypt.h"
#include "errs.h"
#include "keys.h"

struct store;
struct audit;

#define SUBJECTS_ID_MAX 255          /* longest id (a file name) */
#define SUBJECTS_PARENT_MAX 4096     /* longest parent path, with NUL */
#define SUBJECTS_REASON_MAX 1024     /* longest reason, with NUL */
#define SUBJECTS_OPERATOR_MAX 64     /* longest operator name, with NUL */
#define SUBJECTS_BACKING_PREFIX ".S" /* backing name = prefix + b64url(hash) */
#define SUBJECTS_BACKING_LEN 45      /* strlen of a backing name */
#define SUBJECTS_ID_CHECK_MIN 4      /* ids this long must not appear in a reason */

/* Error for a subject whose key was destroyed (subjects_open, _get...). */
#define SUBJECTS_ESHREDDED ENOKEY

/* State of a subject (flags; restricted and held combine). */
#define SUBJECTS_RESTRICTED 0x1 /* only `admin` principals may read */
#define SUBJECTS_HELD 0x2       /* legal hold: nothing deleted or shredded */
#define SUBJECTS_SHREDDED 0x4   /* key destroyed; nothing else applies */

/* What the catalogue knows about one subject, opened with the keys. */
struct subjects_info {
	uint8_t hash[CRYPT_HASH_BYTES];            /* keyed hash of the id */
	char id[SUBJECTS_ID_MAX + 1];              /* readable id; "" once shredded */
	unsigned flags;                            /* SUBJECTS_* */
	char parent[SUBJECTS_PARENT_MAX];          /* plaintext parent path, "/x" */
	char restrict_reason[SUBJECTS_REASON_MAX]; /* "" if not restricted */
	char hold_reason[SUBJECTS_REASON_MAX];     /* "" if not held */
	int64_t created_us;                        /* UTC microseconds */
	int64_t last_write_us;                     /* UTC microseconds */
};

/* What a walk of a subject's backing directory counted. */
struct subjects_usage {
	uint64_t files;        /* regular files (records) */
	uint64_t dirs;         /* directories below the root */
	uint64_t bytes;        /* plaintext bytes of the files */
	uint64_t cipher_bytes; /* their ciphertext bytes on disk */
};

/* An erasure certificate: what was destroyed, provable against the
 * ledger with subjects_certificate_verify. */
struct subjects_certificate {
	char id[SUBJECTS_ID_MAX + 1];          /* the subject as named by the operator */
	uint8_t hash[CRYPT_HASH_BYTES];        /* its keyed hash (ledger key) */
	int64_t shredded_us;                   /* UTC microseconds */
	char reason[SUBJECTS_REASON_MAX];      /* why */
	char operator_[SUBJECTS_OPERATOR_MAX]; /* who */
	uint64_t files;                        /* files destroyed */
	uint64_t bytes;                        /* plaintext bytes destroyed */
	uint64_t cipher_bytes;                 /* ciphertext bytes removed */
	int64_t ledger_seq;                    /* erasure ledger entry, 0 = dry run */
	uint64_t audit_seq;                    /* audit chain position, 0 = none */
	uint8_t mac[CRYPT_MAC_BYTES];          /* MAC of the ledger entry */
	bool dry_run;                          /* nothing was changed */
	bool tree_removed;                     /* every ciphertext file is gone */
	bool wal_clean;                        /* the WAL checkpoint completed */
};

/* hash = BLAKE2b-256 keyed by keys_master_key(mk, KEYS_SUBJECT_HASH) over
 * the id's bytes (the same definition as audit_subject_hash). */
void subjects_hash(const struct keys_master *mk, const char *id,
		   uint8_t out[CRYPT_HASH_BYTES]);

/* 0 if id can name a subject (a valid file name: not "", ".", "..", no
 * '/', at most SUBJECTS_ID_MAX bytes); -EINVAL / -ENAMETOOLONG. */
int subjects_id_check(const char *id) MUST_CHECK;

/* The backing directory name of a subject root (SUBJECTS_BACKING_LEN
 * characters + NUL), and its inverse: -EINVAL if name is not one. */
void subjects_backing_name(const uint8_t hash[CRYPT_HASH_BYTES],
			   char out[SUBJECTS_BACKING_LEN + 1]);
int subjects_parse_backing_name(const char *name,
				uint8_t hash[CRYPT_HASH_BYTES]) MUST_CHECK;

/* Opens (O_DIRECTORY) the backing directory of a plaintext path outside
 * any subject, e.g. "/customers", from the store's tree root, decrypting
 * nothing: each component is encrypted with the volume keyring.  -ENOENT
 * if a component is missing, -EINVAL if path is not absolute or has "."
 * or ".." components. */
int subjects_resolve_dir(struct store *st, const char *path, int *fd) MUST_CHECK;

/* Creates a subject: a fresh random key, its catalogue row, and its
 * backing root (mode & 07777) with a new name IV inside the parent's
 * backing directory (parent_fd, or resolved from `parent` if parent_fd
 * < 0).  `parent` is the plaintext parent path (e.g. "/customers"), kept
 * sealed so tools can find the subject on an unmounted store.  A stale
 * backing directory of a shredded or unknown subject with the same hash
 * (ciphertext restored from an old copy) is removed first, so a re-created
 * subject starts empty and under a new key.  -EEXIST if a live subject has
 * this id.  *ring (secure memory; keys_ring_free) and iv (may be NULL) get
 * the new subject's keyring and root IV. */
int subjects_create(struct store *st, const char *parent, int parent_fd, const char *id,
		    mode_t mode, struct keyring **ring,
		    uint8_t iv[CRYPT_DIRIV_BYTES]) MUST_CHECK;

/* The keyring of a live subject.  -ENOENT if unknown, -ENOKEY
 * (SUBJECTS_ESHREDDED) if shredded, -EBADMSG if its row was edited
 * outside custodian, -EIO if the key does not unwrap. */
int subjects_open(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		  struct keyring **ring) MUST_CHECK;

/* State of one subject (id and reasons decrypted if it is live).  Errors
 * as subjects_open, except that a shredded subject is returned (0) with
 * SUBJECTS_SHREDDED set and an empty id. */
int subjects_get(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		 struct subjects_info *out) MUST_CHECK;

/* Calls fn for every subject, in hash order; usage is counted by walking
 * its backing directory when count_usage is set (NULL otherwise, or if
 * the directory cannot be found).  A non-zero return from fn stops the
 * walk and is returned. */
int subjects_list(struct store *st, bool count_usage,
		  int (*fn)(const struct subjects_info *info,
			    const struct subjects_usage *usage, void *arg),
		  void *arg) MUST_CHECK;

/* Counts what lies below a subject's backing root. */
int subjects_usage(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		   struct subjects_usage *out) MUST_CHECK;

/* Sets or clears processing restriction / legal hold.  reason is required
 * (non-empty, < SUBJECTS_REASON_MAX) when setting and kept sealed under
 * the subject's key; clearing forgets it.  -ENOKEY if shredded.
 * *changed (may be NULL) tells whether the flag was different. */
int subjects_set_restricted(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
			    bool on, const char *reason, bool *changed) MUST_CHECK;
int subjects_set_held(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES], bool on,
		      const char *reason, bool *changed) MUST_CHECK;

/* Records a write inside the subject (last-write time, for retention by
 * inactivity).  Never moves the time backwards. */
int subjects_touch(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		   int64_t now_us) MUST_CHECK;

/* Shreds subject `id` of an UNMOUNTED store (the caller made sure: e.g.
 * audit_open succeeded).  Order: refuse -EPERM if held, -ENOKEY if already
 * shredded, -ENOENT if unknown, -EINVAL if reason is empty or contains the
 * id (case-insensitive, ids of SUBJECTS_ID_CHECK_MIN bytes or more: it
 * would outlive the shred in the ledger); count the files; record
 * the shred in the audit chain (if a is not NULL); in one transaction
 * destroy the wrapped key and the sealed id and reasons and append the
 * ledger entry; checkpoint the WAL; remove the backing tree.  With
 * dry_run only the checks and the count happen.  cert is filled whenever
 * the key was destroyed, even if a later step failed (then the return is
 * that step's -errno and cert->tree_removed / wal_clean say which). */
int subjects_shred(struct store *st, struct audit *a, const char *id, const char *reason,
		   const char *operator_, bool dry_run,
		   struct subjects_certificate *cert) MUST_CHECK;

/* The two halves of subjects_shred, for the daemon (which must first make
 * the subject unreachable; see docs/subjects.md).  destroy_key: checks,
 * audit, key + id destruction, ledger, checkpoint (usage supplies the
 * counts); remove_tree: deletes the backing root of a shredded subject
 * (found through its sealed parent path, or below parent_fd if >= 0).
 * -ENOENT if there is nothing to remove. */
int subjects_destroy_key(struct store *st, struct audit *a, const char *id,
			 const char *reason, const char *operator_,
			 const struct subjects_usage *usage,
			 struct subjects_certificate *cert) MUST_CHECK;
int subjects_remove_tree(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
			 int parent_fd) MUST_CHECK;

/* Checks a certificate against the ledger: the id hashes to the entry's
 * subject, and every field and the MAC match.  0 if genuine, -ENOENT if
 * the ledger has no such entry, -EBADMSG if anything differs or the entry
 * itself was edited. */
int subjects_certificate_verify(struct store *st,
				const struct subjects_certificate *cert) MUST_CHECK;

/* The ledger MAC of an entry (KEYS_CATALOG_MAC over a fixed encoding of
 * every field but the MAC itself). */
void subjects_erasure_mac(const struct keys_master *mk, const struct catalog_erasure *e,
			  uint8_t mac[CRYPT_MAC_BYTES]);

/*
 * Backups (docs/subjects.md, "Backups"): the ledger is what lets a shred
 * reach an older copy of the catalogue.  Export it (one line per entry,
 * keyed hashes only, no personal data) and keep it where backups of the
 * catalogue are not; after restoring an older catalogue, apply it.
 */

/* One ledger entry as a line of text (with '\n'); -ENAMETOOLONG if cap is
 * too small.  SUBJECTS_LEDGER_LINE_MAX always suffices. */
#define SUBJECTS_LEDGER_LINE_MAX 4096
int subjects_ledger_format(const struct catalog_erasure *e, char *out,
			   size_t cap) MUST_CHECK;
/* Parses one line (trailing newline optional).  -EINVAL if malformed. */
int subjects_ledger_parse(const char *line, struct catalog_erasure *e) MUST_CHECK;

/* Re-applies one entry (from another catalogue or an exported ledger) to
 * this store: checks its MAC (-EBADMSG), destroys the subject's key if it
 * is the key the entry destroyed (a subject re-created since keeps its new
 * key), removes that subject's backing tree, and appends the entry to
 * this ledger if missing.  *applied (may be NULL) tells whether anything
 * changed. */
int subjects_ledger_apply(struct store *st, const struct catalog_erasure *e,
			  bool *applied) MUST_CHECK;

#endif
