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

#include "audit.h"
#include "crypt.h"
#include "errs.h"
#include "format.h"
#include "keys.h"
#include "store.h"
#include "retention.h"
#include "perm.h"
#include "subjects.h"

/* Mount-time settings the operations consult (read-only once mounted). */
struct ops_config {
	double attr_timeout;           /* seconds the kernel may cache attributes */
	double entry_timeout;          /* seconds the kernel may cache names */
	bool writeback;                /* -o writeback: kernel writeback cache */
	bool strict_walks;             /* -o strict_walks: no name cached in a
					  directory not everybody may search
					  (ops.c, "Path walks") */
	bool debug;                    /* -d: libfuse logs every request */
	void (*after_init)(void *arg); /* run once, by the first request after
					  INIT was answered (the kernel has
					  applied it then); NULL: none */
	void *after_init_arg;          /* its argument */
};

/* One name of a node: a directory entry that reaches it.  A hard-linked
 * file has several; a file unlinked while open has none. */
struct ops_name {
	struct ops_name *next;   /* the node's other names; fs->table_lock */
	struct ops_node *parent; /* directory holding the entry; the name holds
				    one reference on it */
	char *name;              /* plaintext name (inside this allocation) */
	char backing[];          /* encrypted entry name in parent */
};

/* An open regular file (fi->fh). */
struct ops_handle {
	int fd;                      /* backing fd: O_RDWR if the caller may write,
					else O_RDONLY */
	bool may_write;              /* opened for writing: the policy said so
					at open (or create) */
	bool len_ok;                 /* the backing length was possible at open
					(format_file.len_ok) */
	struct ops_node *node;       /* the file */
	struct ops_handle *next;     /* node's other handles; fs->table_lock */
	struct ops_handle **pprev;   /* link that points here; fs->table_lock */
	unsigned borrowed;           /* requests using fd through the node
					(handle_borrow); fs->table_lock */
	bool released;               /* released while borrowed: the last
					borrower closes and frees it;
					fs->table_lock */
	uint64_t audit_seq;          /* seq of the open/create record, 0 = the
					open was not recorded (audit = none) */
	bool audit_release;          /* record the release (close or write) */
	uid_t uid;                   /* opener (the kernel sends a release
					without the caller's identity) */
	gid_t gid;                   /* opener's gid */
	pid_t pid;                   /* opener's pid */
	atomic_uint_fast64_t rbytes; /* bytes read through this handle */
	atomic_uint_fast64_t rcalls; /* read requests that returned data */
	atomic_uint_fast64_t wbytes; /* bytes written through this handle */
	atomic_uint_fast64_t wcalls; /* write requests that succeeded */
	atomic_bool written;         /* a write succeeded (WORM commit at
					release) */
	bool guard;                  /* writes must be checked: inside a
					subject, under a hold or retention
					(decided at open) */
	bool dir_held;               /* under a directory hold at open, or
					at the first write after a holds
					reload (node lock) */
	_Atomic uint64_t holds_gen;  /* fs->holds_gen when dir_held was
					decided */
	int64_t retain_min_s;        /* retention at open (policy_effective) */
	int64_t autocommit_s;        /* worm autocommit at open, 0 = none */
	bool worm;                   /* worm = yes at open */
};

/*
 * One backing object the kernel knows about (FUSE nodeid = its address).
 * Fields marked "immutable" are set before the node is published in the
 * table and never change; the others name the lock that guards them.
 *
 * Only directories keep a descriptor (they anchor every *at call and are
 * few); every other node is reached again through one of its names
 * (parent's fd + backing name), checked against (dev, ino), so a
 * directory of 100k files costs no descriptors.
 */
struct ops_node {
	struct ops_node *hnext;        /* hash chain; fs->table_lock */
	uint64_t refs;                 /* kernel lookups + names of other nodes
					  whose parent this is; fs->table_lock */
	struct ops_name *names;        /* names the kernel reached it by, most
					  recently used first (paths use the
					  first); NULL for the root and for files
					  unlinked while open; fs->table_lock */
	struct ops_handle *open;       /* regular files: open handles (reach a
					  file that has lost every name);
					  fs->table_lock */
	bool in_table;                 /* findable by (dev, ino); cleared when a
					  file has neither names nor handles
					  left, since its inode number may then
					  be reused by a new file;
					  fs->table_lock */
	struct ops_node *dnext;        /* detached (not in_table) nodes still
					  referenced by the kernel, freed at
					  unmount; fs->table_lock */
	struct ops_node **dpprev;      /* link that points here on that list,
					  NULL if not on it; fs->table_lock */
	dev_t dev;                     /* backing st_dev; immutable */
	ino_t ino;                     /* backing st_ino; immutable */
	int fd;                        /* directories: O_PATH fd of the backing
					  directory; -1 for anything else;
					  immutable */
	mode_t type;                   /* S_IFMT bits; immutable */
	struct perm_obj perm;          /* mode and owner as last seen on the
					  backing object (the checks of perm.h
					  use it for directories; every change
					  goes through this mount, so it stays
					  current); fs->table_lock */
	uint64_t generation;           /* FUSE generation; immutable */
	const struct keyring *ring;    /* keyring for names below and content;
					  immutable (inherited from the parent,
					  or the subject's for a subject root) */
	struct ops_subject *subj;      /* data subject the node lies in (its
					  root included), NULL outside any;
					  holds a reference; immutable */
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

/* A loaded policy version (opaque; ops.c). */
struct ops_policy;
/* A data subject the daemon has open: its keyring, cached flags (opaque;
 * ops.c). */
struct ops_subject;
/* Retention state of the mount: directory holds, compliance clock (ops.c). */
struct ops_retention;
/* The background remover of shredded subjects' ciphertext (ops.c). */
struct ops_reaper;
/* Writes synced in the background (durable.h). */
struct durable;
/* An open directory (ops.c). */
struct ops_dir;
struct creds_cache;
struct creds_rate;

/* Counters of removals whose inode is freed after the reply, by parent
 * directory (see unpin_wait in ops.c). */
#define OPS_UNPIN_SLOTS 64

/* The mounted file system. */
struct ops_fs {
	struct store *store;          /* unlocked store; owned by main */
	struct ops_config cfg;        /* immutable once mounted */
	pthread_mutex_t table_lock;   /* guards the node table and the fields
					 of nodes marked fs->table_lock */
	struct ops_node **buckets;    /* hash table by (dev, ino); table_lock */
	size_t nbuckets;              /* power of two; table_lock */
	size_t count;                 /* nodes in the table; table_lock */
	uint64_t next_generation;     /* table_lock */
	struct ops_node root;         /* FUSE_ROOT_ID; never in the table */
	struct ops_node *detached;    /* nodes taken out of the table while the
					 kernel still references them;
					 table_lock */
	_Atomic uint64_t holds_gen;   /* bumped by every reload of the
					 directory holds: open handles
					 re-check theirs at their next write
					 (one atomic load per write) */
	atomic_bool pol_on;           /* a policy has been in force: checks run
					 (never cleared: a store cannot go back
					 to mode bits alone while mounted) */
	pthread_mutex_t pol_lock;     /* guards pol: the swap and taking a
					 reference; held for a few instructions */
	struct ops_policy *pol;       /* policy in force, NULL = mode bits alone;
					 pol_lock */
	pthread_mutex_t reload_lock;  /* one reload at a time */
	struct creds_cache *creds;    /* callers' groups (CREDS_TTL_US old at most) */
	struct creds_rate *rate;      /* read_rate counters per (uid, rule) */
	struct audit *audit;          /* the store's audit log, opened by main
					 before the mount and closed after the
					 session loop; NULL records nothing
					 (never in the daemon, which refuses to
					 mount without it) */
	atomic_bool init_done;        /* after_init has run (or is running) */
	atomic_bool killpriv;         /* the kernel leaves setuid/setgid to us
					 (FUSE_HANDLE_KILLPRIV, chan.h): set
					 once, before the first request that
					 relies on it */
	struct durable *durable;      /* new directories' IV files, synced soon
					 and before any fsync returns */
	int reserve_fd;               /* STORE/audit.reserve: disk space held
					 back for audit records, -1 if none */
	atomic_bool disk_full;        /* the reserve was given to the audit log:
					 new data is refused (ENOSPC) until
					 space is freed and the reserve is back */
	pthread_mutex_t reserve_lock; /* guards reserve_fd's size changes */
	struct fuse_session *se;      /* the session, for kernel cache
					 invalidation from the control thread;
					 set by main before the control channel
					 starts, NULL before the mount */
	pthread_mutex_t subj_lock;    /* guards subjects and every subject's
					 reference count */
	struct ops_subject *subjects; /* live subjects some node references
					 (one entry per subject); subj_lock */
	struct ops_retention *ret;    /* holds and clock (never NULL once
					 initialised) */
	struct ops_reaper *reaper;    /* removes trash/ in the background */
	struct ops_dir *dirs;         /* open directories (freed at unmount if
					 the kernel never released them);
					 table_lock */
	/* Removals from the tree that no request makes (retention sweep,
	 * shred) and so no directory lock of the kernel excludes: a listing
	 * that may have overlapped one looks at its entry twice (node_get_as,
	 * removal_begin in ops.c). */
	atomic_uint removals_active;   /* running now */
	_Atomic uint64_t removals_gen; /* bumped as each one ends */
	pthread_mutex_t unpin_lock;    /* guards unpins (statically initialised:
					  never held with another lock) */
	pthread_cond_t unpin_done;     /* a count in unpins fell to zero */
	/* Entries removed from a backing directory (slot: its inode number
	 * modulo OPS_UNPIN_SLOTS) whose pin is still to be closed after the
	 * reply; unpin_lock. */
	unsigned unpins[OPS_UNPIN_SLOTS];
};

/* Where a shredded subject's ciphertext waits for the background remover
 * (inside the store directory, so a rename gets it there). */
#define OPS_TRASH_DIR "trash"

/* Space held back so that reads stay audited on a full disk. */
#define OPS_AUDIT_RESERVE_FILE "audit.reserve"
#define OPS_AUDIT_RESERVE_BYTES (4u << 20)

/* The operations table passed to fuse_session_new. */
extern const struct fuse_lowlevel_ops ops_lowlevel;

/* Sets up the root node (tree directory of the store, volume keyring) and
 * an empty node table.  The store must be unlocked. */
int ops_fs_init(struct ops_fs *fs, struct store *store,
		const struct ops_config *cfg) MUST_CHECK;

/* Creates STORE/audit.reserve (OPS_AUDIT_RESERVE_BYTES allocated).  When
 * an audit record meets a full disk, the reserve is freed for the journal
 * and new data is refused with ENOSPC (reads, which need only records,
 * go on) until a removal frees twice the reserve and it is taken back.
 * -errno if it cannot be made (the daemon then runs without it). */
int ops_reserve_open(struct ops_fs *fs) MUST_CHECK;

/* Records the end of every recorded open whose handle is still open when
 * the session ends (the kernel sends no release once the connection is
 * gone, e.g. after SIGTERM): a close/write record with the bytes counted so
 * far and detail "still open at unmount".  After the session loop, before
 * the unmount record; single-threaded. */
void ops_audit_open_handles(struct ops_fs *fs);

/* Frees every node and the policy (after the session loop has ended). */
void ops_fs_destroy(struct ops_fs *fs);

/* The plaintext path of a node from the mount root ("/" for the root),
 * built from the parent/name links (for a hard link: the last name used).
 * Returns the length or -ENAMETOOLONG if cap is too small. */
int ops_node_path(struct ops_fs *fs, const struct ops_node *n, char *buf,
		  size_t cap) MUST_CHECK;

/*
 * Loads the newest stored policy version, checks its MAC, parses it and
 * resolves its user and group names (NSS), then puts it in force for the
 * next operation; readers still using the old version keep it until they
 * finish.  0 (msg: which version is in force), -ENOENT: no policy stored
 * (mode bits alone; nothing changes), -EBADMSG: the stored policy fails
 * authentication, -EINVAL: it does not parse, other -errno.  On any error
 * the policy in force stays; msg says why in one line.
 */
int ops_policy_reload(struct ops_fs *fs, char *msg, size_t cap) MUST_CHECK;

/*
 * Live subject operations for the control channel (docs/subjects.md,
 * "For the daemon").  ops_subject_shred: refuses like subjects_shred
 * (-EPERM held, -ENOKEY shredded, -ENOENT unknown, -EINVAL reason), then
 * makes the subject unreachable at once (its directory goes to trash/,
 * the kernel drops its entries and pages, open handles get EIO), destroys
 * the key (ledger, audit record) and queues the ciphertext for removal in
 * the background.  cert as subjects_destroy_key; cert->tree_removed means
 * "queued".  ops_subject_flag: sets or clears restriction (hold false) or
 * legal hold (hold true), records it (op = verb) and drops the cached
 * flags so the next operation sees the change; pid (0 = the daemon) is
 * who asked, for the record.
 */
int ops_subject_shred(struct ops_fs *fs, const char *id, const char *reason,
		      const char *operator_,
		      struct subjects_certificate *cert) MUST_CHECK;
int ops_subject_flag(struct ops_fs *fs, pid_t pid, const char *id, const char *verb,
		     bool hold, bool on, const char *reason, bool *changed) MUST_CHECK;

/* Loads the directory holds (retention_holds_load) again: at mount and
 * after `holds-reload`. */
int ops_holds_reload(struct ops_fs *fs) MUST_CHECK;

/*
 * The live `custodian retention sweep`: reads the compliance clock for the
 * tool's system reading (system_us; max_jump_us 0 = default; accept =
 * --accept-clock), audits a clock event, refuses an unaccepted forward
 * jump (-ETIME, msg says why), runs retention_sweep with the daemon's
 * store, policy and audit log, and makes what it erased vanish from the
 * kernel's caches.  *now_out gets the compliance time used; msg a reason
 * on failure.  pid: who asked (for the clock records).
 */
int ops_retention_sweep(struct ops_fs *fs, pid_t pid, int64_t system_us,
			int64_t max_jump_us, bool accept, const char *operator_,
			struct retention_stats *stats, int64_t *now_out, char *msg,
			size_t cap) MUST_CHECK;

/* Starts the background remover and queues what a previous run left in
 * trash/ (after ops_fs_init; -errno if the thread cannot start). */
int ops_reaper_start(struct ops_fs *fs) MUST_CHECK;
/* Stops it (what is left in trash/ is removed at the next mount). */
void ops_reaper_stop(struct ops_fs *fs);

#endif
