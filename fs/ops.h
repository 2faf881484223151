/*
 * ops.h — internals of the FUSE glue, shared by ops.c (the low-level
 * operations and the node table) and custodianfs.c (the daemon's main).
 *
 * Not an engine contract: nothing outside the daemon includes this file,
 * and it is the only engine-adjacent header that includes fuse_lowlevel.h.
 */
#ifndef CUSTODIAN_OPS_H
#define CUSTODIAN_OPS_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypt.h"
#include "errs.h"
#include "format.h"
#include "keys.h"
#include "store.h"

/* Mount-time settings the operations consult (read-only once mounted). */
struct ops_config {
	double attr_timeout;  /* seconds the kernel may cache attributes */
	double entry_timeout; /* seconds the kernel may cache names */
	bool writeback;       /* -o writeback: kernel writeback cache */
	bool debug;           /* -d: libfuse logs every request */
};

/*
 * One backing object the kernel knows about (FUSE nodeid = its address).
 * Fields marked "immutable" are set before the node is published in the
 * table and never change; the others name the lock that guards them.
 */
struct ops_node {
	struct ops_node *hnext;        /* hash chain; fs->table_lock */
	uint64_t refs;                 /* kernel lookups + children whose parent
					  this is; fs->table_lock */
	struct ops_node *parent;       /* last directory it was named in (NULL for
					  the root); fs->table_lock */
	char *name;                    /* plaintext name in parent (malloc'd;
					  NULL for the root); fs->table_lock */
	dev_t dev;                     /* backing st_dev; immutable */
	ino_t ino;                     /* backing st_ino; immutable */
	int fd;                        /* O_PATH fd of the backing object; immutable */
	mode_t type;                   /* S_IFMT bits; immutable */
	uint64_t generation;           /* FUSE generation; immutable */
	const struct keyring *ring;    /* keyring for names below and content;
					  immutable (inherited from the parent) */
	bool iv_ok;                    /* directories: iv was loaded; immutable */
	uint8_t iv[CRYPT_DIRIV_BYTES]; /* directories: name IV; immutable */
	atomic_bool warned;            /* a listing already logged hidden names */
	pthread_rwlock_t lock;         /* content: shared to read, exclusive to
					  write/truncate/load the header */
	bool hdr_loaded;               /* regular files: ff holds the header
					  state; lock */
	struct format_file ff;         /* regular files: header state shared by
					  every handle (ff.fd unused); lock */
};

/* The mounted file system. */
struct ops_fs {
	struct store *store;        /* unlocked store; owned by main */
	struct ops_config cfg;      /* immutable once mounted */
	pthread_mutex_t table_lock; /* guards the node table and the fields
				       of nodes marked fs->table_lock */
	struct ops_node **buckets;  /* hash table by (dev, ino); table_lock */
	size_t nbuckets;            /* power of two; table_lock */
	size_t count;               /* nodes in the table; table_lock */
	uint64_t next_generation;   /* table_lock */
	struct ops_node root;       /* FUSE_ROOT_ID; never in the table */
};

/* The operations table passed to fuse_session_new. */
extern const struct fuse_lowlevel_ops ops_lowlevel;

/* Sets up the root node (tree directory of the store, volume keyring) and
 * an empty node table.  The store must be unlocked. */
int ops_fs_init(struct ops_fs *fs, struct store *store,
		const struct ops_config *cfg) MUST_CHECK;

/* Frees every node (after the session loop has ended). */
void ops_fs_destroy(struct ops_fs *fs);

/* The plaintext path of a node from the mount root ("/" for the root),
 * built from the parent/name links (for a hard link: the last name used).
 * Returns the length or -ENAMETOOLONG if cap is too small. */
int ops_node_path(struct ops_fs *fs, const struct ops_node *n, char *buf,
		  size_t cap) MUST_CHECK;

#endif
