/*
 * store.h — a custodian store on disk: STORE/custodian.db + STORE/tree/.
 *
 * Creating, opening and unlocking a store, shared by the daemon and the
 * admin tool so there is one implementation of the layout.
 */
#ifndef CUSTODIAN_STORE_H
#define CUSTODIAN_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "catalog.h"
#include "errs.h"
#include "keys.h"
#include "secret.h"

#define STORE_TREE_DIR "tree"
#define STORE_ID_BYTES 16
#define STORE_FORMAT 1 /* meta "format" */

struct store {
	char *path;                 /* STORE directory (malloc'd) */
	int tree_fd;                /* O_DIRECTORY fd of STORE/tree */
	struct catalog *cat;        /* open catalogue */
	struct keys_master *mk;     /* NULL until unlocked */
	uint8_t id[STORE_ID_BYTES]; /* random store id (meta "store_id") */
	bool readonly;              /* opened read-only */
};

/* Creates a store at path (the directory may exist but must be empty):
 * catalogue with meta store_id/format/created, a passphrase slot, a
 * recovery slot (its text returned in `recovery`), tree/ with a root IV.
 * -EEXIST if path holds a store, -ENOTEMPTY if it holds anything else. */
int store_create(const char *path, const struct secret *pass, const struct keys_kdf *kdf,
		 char recovery[KEYS_RECOVERY_TEXT_MAX]) MUST_CHECK;

/* Opens without unlocking.  -ENOENT if path is not a store, -EIO if
 * damaged. */
int store_open(const char *path, bool readonly, struct store **out) MUST_CHECK;

/* Unlocks with a passphrase (-EACCES wrong), recovery text, or keyfile. */
int store_unlock_passphrase(struct store *st, const struct secret *pass) MUST_CHECK;
int store_unlock_recovery(struct store *st, const struct secret *text) MUST_CHECK;
int store_unlock_keyfile(struct store *st, const struct secret *data) MUST_CHECK;

/* Wipes keys, closes everything; NULL accepted. */
void store_close(struct store *st);

/* A one-line human reason for an -errno from this module's callers, e.g.
 * -EACCES -> "wrong passphrase". */
const char *store_strerror(int err);

#endif
