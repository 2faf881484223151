/*
 * ops.c — the FUSE low-level operations of custodianfs, the node table
 * they share, and the policy checks they make.
 *
 * Each kernel inode is a struct ops_node (its address is the FUSE nodeid),
 * found again by backing (st_dev, st_ino) in a hash table, so inode
 * numbers are the backing ones and stable across remounts.  Directories
 * hold an O_PATH fd; every other node is reached through one of its
 * names (parent fd + backing name, verified by inode number), so the
 * daemon needs no descriptor per file.  Names are encrypted with names.h,
 * contents with format.h, symlink targets with linktarget.h.  Mode bits
 * are checked here too (perm.h; "mode bits" below), not by the kernel; on
 * top of them, when a policy is in force, every operation is checked
 * against it (see "policy" below and docs/daemon.md).  Modelled on
 * libfuse's passthrough_ll.c.
 *
 * Locking:
 *   - fs->table_lock (mutex) guards the hash table and each node's refs,
 *     names and open handles.  It is held only for table operations, never
 *     across I/O or crypto.  To use a name's parent directory outside the
 *     lock, take a temporary reference on it.
 *   - node->lock (rwlock) guards a regular file's content and its shared
 *     header state: shared for read, exclusive for write, truncate and
 *     header load (format.h's rule).
 *   - fs->pol_lock (mutex) guards only the pointer to the policy in force
 *     and taking a reference on it; checks run on the reference, unlocked.
 *   - Lock order: table_lock, then a node's lock; never the reverse.  (No
 *     code path currently holds both.)  pol_lock nests inside nothing.
 *   - Namespace races (two creates of one name, rmdir against create
 *     inside) are excluded by the kernel's directory locks: every change
 *     goes through this one mount.
 *
 * Every handler saves errno right after the failing call and replies
 * exactly once.
 */
#include "ops.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "creds.h"
#include "durable.h"
#include "linktarget.h"
#include "names.h"
#include "policy.h"
#include "policy_store.h"
#include "retention.h"
#include "subjects.h"
#include "sys.h"

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t), "fuse_ino_t must hold a pointer");

#define OPS_MAX_WRITE (1U << 20)
#define OPS_INITIAL_BUCKETS 4096
#define OPS_MAX_GROUPS 256 /* groups of one caller considered by a check */

/* An open directory. */
struct ops_dir {
	pthread_mutex_t lock;   /* guards the fields below between requests */
	DIR *dp;                /* backing directory stream */
	off_t offset;           /* offset of the next entry to return */
	struct dirent *entry;   /* read but not yet returned (did not fit) */
	unsigned hidden;        /* names that failed to decrypt, this listing */
	struct ops_dir *next;   /* fs->dirs; fs->table_lock */
	struct ops_dir **pprev; /* link that points here; fs->table_lock */
};

/* Open directories are listed so that the ones the kernel never released
 * (the session ended first) are freed at unmount. */
static void dir_track(struct ops_fs *fs, struct ops_dir *d, bool on)
{
	pthread_mutex_lock(&fs->table_lock);
	if (on) {
		d->next = fs->dirs;
		if (fs->dirs)
			fs->dirs->pprev = &d->next;
		fs->dirs = d;
		d->pprev = &fs->dirs;
	} else if (d->pprev) {
		*d->pprev = d->next;
		if (d->next)
			d->next->pprev = d->pprev;
		d->pprev = NULL;
	}
	pthread_mutex_unlock(&fs->table_lock);
}

/* A policy version in force (or on its way out). */
struct ops_policy {
	struct policy *p; /* parsed and resolved; immutable */
	int64_t version;  /* stored version number */
	atomic_uint refs; /* 1 while in force + readers using it */
};

/* ---- helpers ------------------------------------------------------------ */

static struct ops_fs *ops_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct ops_node *ops_node(fuse_req_t req, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &ops_fs(req)->root;
	return (struct ops_node *)(uintptr_t)ino;
}

static fuse_ino_t node_ino(struct ops_fs *fs, struct ops_node *n)
{
	return n == &fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}

static struct ops_handle *ops_handle(struct fuse_file_info *fi)
{
	return (struct ops_handle *)(uintptr_t)fi->fh;
}

static void proc_path(char buf[64], int fd)
{
	snprintf(buf, 64, "/proc/self/fd/%d", fd);
}

static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Converts a backing stat to what the kernel sees: plaintext sizes.  For
 * a symlink, (dirfd, path) names it (path "" for an fd of the link). */
static void stat_convert(const struct ops_node *n, int dirfd, const char *path,
			 struct stat *st)
{
	if (S_ISREG(st->st_mode)) {
		off_t ps = format_plain_size(st->st_size);

		/* An impossible size is a damaged file: it lists and stats
		 * (so ls, fsck and rm can act on it), opens give EIO. */
		st->st_size = ps < 0 ? 0 : ps;
	} else if (S_ISLNK(st->st_mode) && n) {
		char stored[LINKTARGET_STORED_MAX];
		char plain[LINKTARGET_PLAIN_MAX + 1];
		ssize_t len = readlinkat(dirfd, path, stored, sizeof(stored) - 1);

		/* POSIX: a symlink's size is the length of its target. */
		if (len > 0) {
			stored[len] = '\0';
			if (linktarget_decrypt(n->ring, stored, plain, sizeof(plain)) ==
			    0)
				st->st_size = (off_t)strlen(plain);
			crypt_wipe(plain, sizeof(plain));
		}
	}
}

/* Per-thread plaintext buffer for reads: no allocation per request. */
struct read_buf {
	size_t cap;    /* bytes in data */
	uint8_t *data; /* malloc'd; wiped after each use and on free */
};

static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

static void read_buf_free(void *p)
{
	struct read_buf *rb = p;

	if (rb) {
		crypt_wipe(rb->data, rb->cap);
		free(rb->data);
		free(rb);
	}
}

static void read_buf_init(void)
{
	(void)pthread_key_create(&read_buf_key, read_buf_free);
}

static uint8_t *read_buf_get(size_t n)
{
	struct read_buf *rb;

	pthread_once(&read_buf_once, read_buf_init);
	rb = pthread_getspecific(read_buf_key);
	if (!rb) {
		rb = calloc(1, sizeof(*rb));
		if (!rb)
			return NULL;
		if (pthread_setspecific(read_buf_key, rb) != 0) {
			free(rb);
			return NULL;
		}
	}
	if (rb->cap < n) {
		size_t want = n < OPS_MAX_WRITE ? OPS_MAX_WRITE : n;
		uint8_t *d = malloc(want);

		if (!d)
			return NULL;
		crypt_wipe(rb->data, rb->cap);
		free(rb->data);
		rb->data = d;
		rb->cap = want;
	}
	return rb->data;
}

/* ---- node table ----------------------------------------------------------- */

static size_t node_hash(dev_t dev, ino_t ino, size_t nbuckets)
{
	uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ULL;

	h ^= (uint64_t)dev * 0xc2b2ae3d27d4eb4fULL;
	h ^= h >> 29;
	return (size_t)h & (nbuckets - 1);
}

/* Caller holds table_lock. */
static struct ops_node *table_find(struct ops_fs *fs, dev_t dev, ino_t ino)
{
	struct ops_node *n = fs->buckets[node_hash(dev, ino, fs->nbuckets)];

	while (n && !(n->ino == ino && n->dev == dev))
		n = n->hnext;
	return n;
}

/* Caller holds table_lock.  Doubling keeps chains short at 100k+ nodes;
 * if memory is short the table just stays denser. */
static void table_grow(struct ops_fs *fs)
{
	size_t nb = fs->nbuckets * 2;
	struct ops_node **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct ops_node *n = fs->buckets[i], *next;

		for (; n; n = next) {
			size_t h = node_hash(n->dev, n->ino, nb);

			next = n->hnext;
			n->hnext = b[h];
			b[h] = n;
		}
	}
	free(fs->buckets);
	fs->buckets = b;
	fs->nbuckets = nb;
}

/* Caller holds table_lock. */
static void table_insert(struct ops_fs *fs, struct ops_node *n)
{
	size_t h;

	if (fs->count >= fs->nbuckets)
		table_grow(fs);
	h = node_hash(n->dev, n->ino, fs->nbuckets);
	n->hnext = fs->buckets[h];
	fs->buckets[h] = n;
	fs->count++;
	n->in_table = true;
}

/* Caller holds table_lock. */
static void table_remove(struct ops_fs *fs, struct ops_node *n)
{
	struct ops_node **pp;

	if (!n->in_table)
		return;
	n->in_table = false;
	pp = &fs->buckets[node_hash(n->dev, n->ino, fs->nbuckets)];
	while (*pp && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = n->hnext;
		fs->count--;
	}
}

static struct ops_name *name_new(struct ops_node *parent, const char *name,
				 const char *backing)
{
	size_t nl = strlen(name), bl = strlen(backing);
	struct ops_name *nm = malloc(sizeof(*nm) + bl + 1 + nl + 1);

	if (!nm)
		return NULL;
	nm->next = NULL;
	nm->parent = parent;
	memcpy(nm->backing, backing, bl + 1);
	nm->name = nm->backing + bl + 1;
	memcpy(nm->name, name, nl + 1);
	return nm;
}

static void name_free(struct ops_name *nm)
{
	if (nm)
		crypt_wipe(nm->name, strlen(nm->name));
	free(nm);
}

static void subj_unref(struct ops_subject *s);

static void node_free(struct ops_node *n)
{
	struct ops_name *nm, *next;

	subj_unref(n->subj);
	if (n->fd >= 0)
		close(n->fd);
	pthread_rwlock_destroy(&n->lock);
	for (nm = n->names; nm; nm = next) {
		next = nm->next;
		name_free(nm);
	}
	free(n);
}

/* Drops `count` references on n; true if it reached zero (n left the
 * table).  Caller holds table_lock. */
static bool node_drop_locked(struct ops_fs *fs, struct ops_node *n, uint64_t count)
{
	if (n->refs < count) {
		fuse_log(FUSE_LOG_ERR, "custodianfs: node refcount underflow\n");
		n->refs = count;
	}
	n->refs -= count;
	if (n->refs > 0)
		return false;
	table_remove(fs, n);
	if (n->dpprev) {
		*n->dpprev = n->dnext;
		if (n->dnext)
			n->dnext->dpprev = n->dpprev;
		n->dpprev = NULL;
	}
	return true;
}

/* Drops `count` references; nodes that reach zero leave the table and are
 * chained on *dead (via hnext) for the caller to free after unlocking,
 * and their names' references on their parents go with them.  Caller
 * holds table_lock. */
static void node_unref_locked(struct ops_fs *fs, struct ops_node *n, uint64_t count,
			      struct ops_node **dead)
{
	struct ops_node *todo = NULL;

	if (!n || n == &fs->root || count == 0 || !node_drop_locked(fs, n, count))
		return;
	n->hnext = NULL;
	todo = n;
	while (todo) {
		struct ops_node *x = todo;

		todo = x->hnext;
		x->hnext = *dead;
		*dead = x;
		for (struct ops_name *nm = x->names; nm; nm = nm->next) {
			struct ops_node *p = nm->parent;

			nm->parent = NULL;
			if (p && p != &fs->root && node_drop_locked(fs, p, 1)) {
				p->hnext = todo;
				todo = p;
			}
		}
	}
}

/* A file with no name and no open handle left has no inode any more (no
 * descriptor pins it), so its number may come back as a new file: take it
 * out of the table so that file gets a node (and header state) of its
 * own.  The kernel's references keep the detached node alive until it
 * forgets it.  Caller holds table_lock. */
static void node_detach_if_gone_locked(struct ops_fs *fs, struct ops_node *n)
{
	if (n == &fs->root || n->fd >= 0 || n->names || n->open || !n->in_table)
		return;
	table_remove(fs, n);
	n->dnext = fs->detached;
	if (fs->detached)
		fs->detached->dpprev = &n->dnext;
	fs->detached = n;
	n->dpprev = &fs->detached;
}

static void free_dead(struct ops_node *dead)
{
	while (dead) {
		struct ops_node *next = dead->hnext;

		node_free(dead);
		dead = next;
	}
}

static void node_unref(struct ops_fs *fs, struct ops_node *n, uint64_t count)
{
	struct ops_node *dead = NULL;

	if (!n || n == &fs->root || count == 0)
		return;
	pthread_mutex_lock(&fs->table_lock);
	node_unref_locked(fs, n, count, &dead);
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
}

/* Removes n's name (parent, backing) if it has it.  Caller holds
 * table_lock; a parent that loses its last reference goes on *dead. */
static void node_name_drop_locked(struct ops_fs *fs, struct ops_node *n,
				  struct ops_node *parent, const char *backing,
				  struct ops_node **dead)
{
	struct ops_name **pp = &n->names;

	while (*pp && !((*pp)->parent == parent && strcmp((*pp)->backing, backing) == 0))
		pp = &(*pp)->next;
	if (*pp) {
		struct ops_name *nm = *pp;

		*pp = nm->next;
		name_free(nm);
		node_detach_if_gone_locked(fs, n);
		node_unref_locked(fs, parent, 1, dead);
	}
}

/* Makes (parent, name, backing) n's most recent name.  (A directory has
 * one real name, but a lookup racing a rename may add a stale one for a
 * moment: node_get takes it away again, so directories keep a list too.)
 * Caller holds table_lock. */
static void node_name_add_locked(struct ops_fs *fs, struct ops_node *n,
				 struct ops_node *parent, const char *name,
				 const char *backing, struct ops_node **dead)
{
	struct ops_name **pp = &n->names, *nm;

	if (n == &fs->root)
		return;
	while (*pp && !((*pp)->parent == parent && strcmp((*pp)->backing, backing) == 0))
		pp = &(*pp)->next;
	if (*pp) {
		nm = *pp;
		*pp = nm->next;
		nm->next = n->names;
		n->names = nm;
		return;
	}
	nm = name_new(parent, name, backing);
	if (!nm)
		return; /* keep the old names: they still reach the node */
	(void)dead;
	if (parent != &fs->root)
		parent->refs++;
	nm->next = n->names;
	n->names = nm;
}

/* Path of n (skip = false) or of the directory holding n's most recent
 * name (skip = true; the root's is "/").  Caller holds table_lock.
 * -ENOENT if some node on the way has no name (unlinked while open). */
static int node_path_locked(struct ops_fs *fs, const struct ops_node *n, bool skip,
			    char *buf, size_t cap)
{
	size_t pos = cap;

	if (cap < 2)
		return -ENAMETOOLONG;
	buf[--pos] = '\0';
	if (skip && n != &fs->root) {
		if (!n->names)
			return -ENOENT;
		n = n->names->parent;
	}
	for (; n && n != &fs->root; n = n->names->parent) {
		size_t len;

		if (!n->names || !n->names->parent)
			return -ENOENT;
		len = strlen(n->names->name);
		if (pos < len + 1)
			return -ENAMETOOLONG;
		pos -= len;
		memcpy(buf + pos, n->names->name, len);
		buf[--pos] = '/';
	}
	if (!n)
		return -ENOENT;
	if (pos == cap - 1)
		buf[--pos] = '/';
	memmove(buf, buf + pos, cap - pos);
	return (int)(cap - pos - 1);
}

int ops_node_path(struct ops_fs *fs, const struct ops_node *n, char *buf, size_t cap)
{
	int ret;

	pthread_mutex_lock(&fs->table_lock);
	ret = node_path_locked(fs, n, false, buf, cap);
	pthread_mutex_unlock(&fs->table_lock);
	return ret;
}

/* The directory holding n's i-th name, with a temporary reference (drop
 * it with node_unref(fs, *dir, 1)), and that name's backing entry.
 * -ENOENT if n has no i-th name. */
static int node_name_at(struct ops_fs *fs, struct ops_node *n, size_t i,
			struct ops_node **dir, char backing[NAMES_BACKING_MAX + 1])
{
	struct ops_name *nm;
	int ret = -ENOENT;

	pthread_mutex_lock(&fs->table_lock);
	for (nm = n->names; nm && i > 0; nm = nm->next)
		i--;
	if (nm && nm->parent) {
		size_t len = strlen(nm->backing);

		if (len > NAMES_BACKING_MAX)
			len = NAMES_BACKING_MAX;
		memcpy(backing, nm->backing, len);
		backing[len] = '\0';
		*dir = nm->parent;
		if (*dir != &fs->root)
			(*dir)->refs++;
		ret = 0;
	}
	pthread_mutex_unlock(&fs->table_lock);
	return ret;
}

static bool same_inode(const struct ops_node *n, const struct stat *st)
{
	return st->st_ino == n->ino && st->st_dev == n->dev;
}

static bool same_inode_st(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev;
}

/* Finds a non-directory node again through one of its names, checking the
 * entry is still the same inode.  On success *dir holds a temporary
 * reference, backing the entry, st its backing stat.  -ENOENT (a stale
 * node: its names lead elsewhere or nowhere) or another -errno. */
static int node_find(struct ops_fs *fs, struct ops_node *n, struct ops_node **dir,
		     char backing[NAMES_BACKING_MAX + 1], struct stat *st)
{
	for (size_t i = 0;; i++) {
		int err;

		if (node_name_at(fs, n, i, dir, backing) < 0)
			return -ENOENT;
		if (fstatat((*dir)->fd, backing, st, AT_SYMLINK_NOFOLLOW) == 0) {
			if (same_inode(n, st))
				return 0;
			err = ENOENT;
		} else {
			err = errno;
		}
		node_unref(fs, *dir, 1);
		if (err != ENOENT && err != ENOTDIR)
			return -err;
	}
}

/* A duplicate descriptor of one of n's open handles (the handle may be
 * released meanwhile), for a file that has lost its names.  -ENOENT if it
 * has no open handle. */
static int node_handle_dup(struct ops_fs *fs, struct ops_node *n)
{
	int fd = -ENOENT;

	pthread_mutex_lock(&fs->table_lock);
	if (n->open) {
		fd = fcntl(n->open->fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			fd = -errno;
	}
	pthread_mutex_unlock(&fs->table_lock);
	return fd;
}

/*
 * Opens the backing object of n with flags (O_PATH or an access mode):
 * directories through their fd, others through one of their names
 * (verified by inode), or if every name is gone through an open handle.
 * Returns the fd (the caller closes it) with *st its stat, or -errno:
 * -ENOENT for a node whose object cannot be reached any more.
 */
static int node_open(struct ops_fs *fs, struct ops_node *n, int flags, struct stat *st)
{
	char backing[NAMES_BACKING_MAX + 1], proc[64];
	struct ops_node *dir;
	int fd, dup;

	flags |= O_CLOEXEC | O_NOFOLLOW;
	if (n->fd >= 0) {
		fd = openat(n->fd, ".", flags & ~O_NOFOLLOW);
		if (fd < 0)
			return -errno;
		if (fstat(fd, st) != 0) {
			int err = errno;

			close(fd);
			return -err;
		}
		return fd;
	}
	/* Not O_PATH: O_NONBLOCK so that an object swapped in under the name
	 * (a FIFO) cannot block the open; the inode check then refuses it. */
	if (!(flags & O_PATH))
		flags |= O_NONBLOCK;
	for (size_t i = 0; node_name_at(fs, n, i, &dir, backing) == 0; i++) {
		int err;

		fd = openat(dir->fd, backing, flags);
		err = errno;
		node_unref(fs, dir, 1);
		if (fd < 0) {
			if (err == ENOENT || err == ENOTDIR || err == ELOOP)
				continue;
			return -err;
		}
		if (fstat(fd, st) == 0 && same_inode(n, st))
			return fd;
		close(fd);
	}
	dup = node_handle_dup(fs, n);
	if (dup < 0 || (flags & O_PATH)) {
		if (dup >= 0 && fstat(dup, st) != 0) {
			int err = errno;

			close(dup);
			return -err;
		}
		return dup;
	}
	proc_path(proc, dup);
	fd = open(proc, flags & ~O_NOFOLLOW);
	if (fd < 0 || fstat(fd, st) != 0) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		close(dup);
		return -err;
	}
	close(dup);
	return fd;
}

/* Stat of a node, converted. */
static int node_stat(struct ops_fs *fs, struct ops_node *n, struct stat *st)
{
	char backing[NAMES_BACKING_MAX + 1];
	struct ops_node *dir;
	int ret, fd;

	if (n->fd >= 0) {
		if (fstatat(n->fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
			return -errno;
		stat_convert(n, n->fd, "", st);
		return 0;
	}
	ret = node_find(fs, n, &dir, backing, st);
	if (ret == 0) {
		stat_convert(n, dir->fd, backing, st);
		node_unref(fs, dir, 1);
		return 0;
	}
	if (ret != -ENOENT)
		return ret;
	fd = node_handle_dup(fs, n);
	if (fd < 0)
		return fd;
	ret = fstat(fd, st) == 0 ? 0 : -errno;
	if (ret == 0)
		stat_convert(n, fd, "", st);
	close(fd);
	return ret;
}

/* Counts one read or write through h for its release record (two relaxed
 * atomic adds: no lock, no syscall on the data path). */
static void handle_count(struct ops_handle *h, bool write, uint64_t bytes)
{
	if (!h->audit_release)
		return;
	if (write) {
		atomic_fetch_add_explicit(&h->wbytes, bytes, memory_order_relaxed);
		atomic_fetch_add_explicit(&h->wcalls, 1, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&h->rbytes, bytes, memory_order_relaxed);
		atomic_fetch_add_explicit(&h->rcalls, 1, memory_order_relaxed);
	}
}

static void handle_opener(fuse_req_t req, struct ops_handle *h)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	h->uid = c->uid;
	h->gid = c->gid;
	h->pid = c->pid;
}

/* Links an open handle into its node's list. */
static void handle_attach(struct ops_fs *fs, struct ops_node *n, struct ops_handle *h)
{
	h->node = n;
	pthread_mutex_lock(&fs->table_lock);
	h->next = n->open;
	if (n->open)
		n->open->pprev = &h->next;
	n->open = h;
	h->pprev = &n->open;
	pthread_mutex_unlock(&fs->table_lock);
}

/* Unlinks, closes and frees a handle (once no request borrows it). */
static void handle_free(struct ops_fs *fs, struct ops_handle *h)
{
	bool later;

	pthread_mutex_lock(&fs->table_lock);
	if (h->pprev) {
		*h->pprev = h->next;
		if (h->next)
			h->next->pprev = h->pprev;
		h->pprev = NULL;
		node_detach_if_gone_locked(fs, h->node);
	}
	later = h->borrowed > 0;
	h->released = later;
	pthread_mutex_unlock(&fs->table_lock);
	if (later)
		return;
	close(h->fd);
	free(h);
}

/* One of n's open handles, whose descriptor the caller may use until
 * handle_return (a release meanwhile waits for it), or NULL.  Saves a
 * setattr from opening the file again by name: tar's chown, chmod and
 * utimens come while its descriptor is open. */
static struct ops_handle *handle_borrow(struct ops_fs *fs, struct ops_node *n)
{
	struct ops_handle *h;

	pthread_mutex_lock(&fs->table_lock);
	h = n->open;
	if (h)
		h->borrowed++;
	pthread_mutex_unlock(&fs->table_lock);
	return h;
}

static void handle_return(struct ops_fs *fs, struct ops_handle *h)
{
	bool last;

	pthread_mutex_lock(&fs->table_lock);
	last = --h->borrowed == 0 && h->released;
	pthread_mutex_unlock(&fs->table_lock);
	if (last) {
		close(h->fd);
		free(h);
	}
}

/* ---- subjects ------------------------------------------------------------- */

/*
 * A data subject the daemon has open (docs/subjects.md, "For the daemon").
 * Nodes inside it, its root included, hold a reference; while it is live
 * the entry is on fs->subjects, so there is one per subject and a lookup
 * finds its keyring without the catalogue.  Every use of the keyring
 * happens between subj_enter and subj_leave (shared lock).  A shred marks
 * the subject dead, waits for those users with the exclusive lock and
 * wipes the keys, so open handles get EIO from then on and no request
 * ever works with half-wiped keys; the (wiped) memory stays until the last
 * node lets go of it.
 */
struct ops_subject {
	struct ops_subject *next;       /* fs->subjects; fs->subj_lock */
	struct ops_fs *fs;              /* owner; immutable */
	uint8_t hash[CRYPT_HASH_BYTES]; /* keyed hash of the id; immutable */
	struct keyring *ring;           /* its keys (secure memory); wiped once
					   dead, freed with the last reference */
	unsigned refs;                  /* nodes + temporary users; subj_lock */
	bool listed;                    /* on fs->subjects; subj_lock */
	atomic_bool dead;               /* shredded or removed: keys gone */
	pthread_rwlock_t use;           /* shared around every use of ring,
					   exclusive to wipe it */
	atomic_uint flags;              /* SUBJECTS_* as last read */
	atomic_int_fast64_t flags_us;   /* monotonic time flags were read (0:
					   read them again) */
	atomic_int_fast64_t touch_us;   /* monotonic time of the last
					   subjects_touch */
};

#define SUBJ_FLAGS_TTL_US 1000000 /* flags are at most this old */
#define SUBJ_TOUCH_US 1000000     /* subjects_touch at most this often */

/* The subject the current request entered: audit records sealed with its
 * ring carry its hash. */
static _Thread_local struct ops_subject *tl_subj;

static void subj_free(struct ops_subject *s)
{
	/* A request that entered through a node freed meanwhile may still hold
	 * the shared lock: wait for it (glibc allows destroying a lock right
	 * after acquiring it). */
	pthread_rwlock_wrlock(&s->use);
	pthread_rwlock_unlock(&s->use);
	keys_ring_free(s->ring);
	pthread_rwlock_destroy(&s->use);
	free(s);
}

static void subj_unlist_locked(struct ops_fs *fs, struct ops_subject *s)
{
	struct ops_subject **pp = &fs->subjects;

	if (!s->listed)
		return;
	while (*pp && *pp != s)
		pp = &(*pp)->next;
	if (*pp)
		*pp = s->next;
	s->listed = false;
}

static void subj_unref(struct ops_subject *s)
{
	struct ops_fs *fs;
	bool last;

	if (!s)
		return;
	fs = s->fs;
	pthread_mutex_lock(&fs->subj_lock);
	last = --s->refs == 0;
	if (last)
		subj_unlist_locked(fs, s);
	pthread_mutex_unlock(&fs->subj_lock);
	if (last)
		subj_free(s);
}

static void subj_ref(struct ops_subject *s)
{
	pthread_mutex_lock(&s->fs->subj_lock);
	s->refs++;
	pthread_mutex_unlock(&s->fs->subj_lock);
}

/* Caller holds subj_lock. */
static struct ops_subject *subj_find_locked(struct ops_fs *fs,
					    const uint8_t hash[CRYPT_HASH_BYTES])
{
	struct ops_subject *s = fs->subjects;

	while (s && memcmp(s->hash, hash, CRYPT_HASH_BYTES) != 0)
		s = s->next;
	return s;
}

/* The live entry for hash with a reference, or NULL. */
static struct ops_subject *subj_find(struct ops_fs *fs,
				     const uint8_t hash[CRYPT_HASH_BYTES])
{
	struct ops_subject *s;

	pthread_mutex_lock(&fs->subj_lock);
	s = subj_find_locked(fs, hash);
	if (s)
		s->refs++;
	pthread_mutex_unlock(&fs->subj_lock);
	return s;
}

/* Lists a new entry owning ring (one reference for the caller).  An entry
 * already listed for the hash wins if keep_old, else it is replaced (a
 * subject created anew: the old entry's key was destroyed). */
static int subj_insert(struct ops_fs *fs, const uint8_t hash[CRYPT_HASH_BYTES],
		       struct keyring *ring, bool keep_old, struct ops_subject **out)
{
	struct ops_subject *s = calloc(1, sizeof(*s)), *old;

	*out = NULL;
	if (!s || pthread_rwlock_init(&s->use, NULL) != 0) {
		free(s);
		keys_ring_free(ring);
		return -ENOMEM;
	}
	s->fs = fs;
	memcpy(s->hash, hash, CRYPT_HASH_BYTES);
	s->ring = ring;
	s->refs = 1;
	atomic_init(&s->dead, false);
	atomic_init(&s->flags, 0);
	atomic_init(&s->flags_us, 0);
	atomic_init(&s->touch_us, 0);
	pthread_mutex_lock(&fs->subj_lock);
	old = subj_find_locked(fs, hash);
	if (old && keep_old) {
		old->refs++;
		pthread_mutex_unlock(&fs->subj_lock);
		subj_free(s);
		*out = old;
		return 0;
	}
	if (old) {
		subj_unlist_locked(fs, old);
		atomic_store(&old->dead, true);
	}
	s->listed = true;
	s->next = fs->subjects;
	fs->subjects = s;
	pthread_mutex_unlock(&fs->subj_lock);
	*out = s;
	return 0;
}

/* The entry of subject hash (opened from the catalogue if no node uses it
 * yet), with a reference.  -ENOENT unknown, -ENOKEY shredded, -EBADMSG,
 * -EIO as subjects_open. */
static int subj_open(struct ops_fs *fs, const uint8_t hash[CRYPT_HASH_BYTES],
		     struct ops_subject **out)
{
	struct keyring *ring = NULL;
	int ret;

	*out = subj_find(fs, hash);
	if (*out)
		return 0;
	ret = subjects_open(fs->store, hash, &ring);
	if (ret < 0)
		return ret;
	return subj_insert(fs, hash, ring, true, out);
}

/*
 * Ends a subject in this daemon: no longer found, every user gone, keys
 * wiped.  Requests already inside finish first (the exclusive lock); the
 * ones that come later see `dead`.
 */
static void subj_kill(struct ops_subject *s)
{
	pthread_mutex_lock(&s->fs->subj_lock);
	subj_unlist_locked(s->fs, s);
	pthread_mutex_unlock(&s->fs->subj_lock);
	atomic_store_explicit(&s->dead, true, memory_order_release);
	pthread_rwlock_wrlock(&s->use);
	crypt_wipe(s->ring, sizeof(*s->ring));
	pthread_rwlock_unlock(&s->use);
}

/* Enters the subject of node n for one request (nothing outside
 * subjects).  -ENOENT if it was shredded. */
static int subj_enter(struct ops_node *n)
{
	struct ops_subject *s = n->subj;

	if (!s)
		return 0;
	pthread_rwlock_rdlock(&s->use);
	if (atomic_load_explicit(&s->dead, memory_order_acquire)) {
		pthread_rwlock_unlock(&s->use);
		return -ENOENT;
	}
	tl_subj = s;
	return 0;
}

/* Leaves subject s (n->subj, read before the request replied: once it has,
 * the kernel may forget n and another thread free it). */
static void subj_leave(struct ops_subject *s)
{
	if (s) {
		tl_subj = NULL;
		pthread_rwlock_unlock(&s->use);
	}
}

/* SUBJECTS_* flags of s, at most SUBJ_FLAGS_TTL_US old.  A row that
 * cannot be read counts as restricted and held: fail closed. */
static unsigned subj_flags(struct ops_subject *s)
{
	int64_t now = mono_us(), at = atomic_load(&s->flags_us);
	struct subjects_info *info;
	unsigned f;
	int ret;

	if (at && now - at < SUBJ_FLAGS_TTL_US)
		return atomic_load(&s->flags);
	info = malloc(sizeof(*info));
	ret = info ? subjects_get(s->fs->store, s->hash, info) : -ENOMEM;
	if (ret == 0) {
		f = info->flags;
		atomic_store(&s->flags, f);
		atomic_store(&s->flags_us, now);
	} else {
		fuse_log(FUSE_LOG_ERR,
			 "custodianfs: reading a subject's flags: %s; treating it as "
			 "restricted and held\n",
			 strerror(-ret));
		f = SUBJECTS_RESTRICTED | SUBJECTS_HELD;
	}
	if (info) {
		crypt_wipe(info, sizeof(*info));
		free(info);
	}
	return f;
}

static bool subj_held(struct ops_node *n)
{
	return n && n->subj && (subj_flags(n->subj) & SUBJECTS_HELD);
}

/* A write inside s: its last-write time (retain_from = subject-inactive),
 * written at most once a second. */
static void subj_touch(struct ops_subject *s)
{
	int64_t now, last;

	if (!s)
		return;
	now = mono_us();
	last = atomic_load_explicit(&s->touch_us, memory_order_relaxed);
	if (last && now - last < SUBJ_TOUCH_US)
		return;
	if (!atomic_compare_exchange_strong(&s->touch_us, &last, now))
		return;
	if (subjects_touch(s->fs->store, s->hash, clock_now_us()) < 0)
		atomic_store(&s->touch_us, 0);
}

/* Takes every node of s out of the table (an inode number freed with the
 * subject's files may come back as a new file, which must get a node of
 * its own).  If out is given, the nodes come back in *out with a reference
 * each, for invalidation, and *parent / name (malloc'd) the entry of the
 * subject root in a directory outside it (with a reference), if the kernel
 * knows it. */
static int subj_detach_nodes(struct ops_fs *fs, struct ops_subject *s,
			     struct ops_node ***out, size_t *nout,
			     struct ops_node **parent, char **name)
{
	bool collect = out && nout && parent && name;
	struct ops_node **v = NULL;
	size_t n = 0, cap = 0;
	int ret = 0;

	if (collect) {
		*out = NULL;
		*nout = 0;
		*parent = NULL;
		*name = NULL;
	}
	pthread_mutex_lock(&fs->table_lock);
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct ops_node *x = fs->buckets[i], *next;

		for (; x; x = next) {
			next = x->hnext;
			if (x->subj != s)
				continue;
			if (collect && n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct ops_node **nv = realloc(v, nc * sizeof(*nv));

				if (!nv) {
					ret = -ENOMEM;
					collect = false; /* still detach the rest */
				} else {
					v = nv;
					cap = nc;
				}
			}
			if (collect) {
				x->refs++;
				v[n++] = x;
				for (struct ops_name *nm = x->names; nm; nm = nm->next) {
					if (*name || !nm->parent || nm->parent->subj == s)
						continue;
					*name = strdup(nm->name);
					if (*name) {
						*parent = nm->parent;
						if (*parent != &fs->root)
							(*parent)->refs++;
					}
				}
			}
			table_remove(fs, x);
			x->dnext = fs->detached;
			if (fs->detached)
				fs->detached->dpprev = &x->dnext;
			fs->detached = x;
			x->dpprev = &fs->detached;
		}
	}
	pthread_mutex_unlock(&fs->table_lock);
	if (out) {
		*out = v;
		*nout = n;
	} else {
		free(v);
	}
	return ret;
}

/* ---- mode bits: what the daemon knows of them ------------------------- */

/*
 * Mode bits are checked here (perm.h), not by the kernel: the mount has
 * no default_permissions, which made the kernel fetch a directory's
 * attributes again after every create or unlink in it.  A node keeps the
 * mode and owner last seen on its backing object (every change goes
 * through this mount).
 *
 * Path walks: the kernel checks nothing when it walks through a name it
 * has cached, so the daemon keeps what a cached name lets anyone reach
 * harmless.  A directory whose ancestors (parent upwards) are not all
 * searchable by everybody (owner, group and other each with x) is "under
 * a closed chain":
 *   - names of directories are cached everywhere, and every request on a
 *     directory (lookup in it, create, remove, rename, opendir, getattr,
 *     setattr, access) checks search permission on all its ancestors for
 *     the caller (perm_reach), so a walk through cached names into a
 *     closed chain is refused at its first request;
 *   - names of anything else (files, symlinks, negative entries) in a
 *     directory under or at a closed chain are given entry_timeout 0:
 *     each walk to them comes back as a LOOKUP, checked as above;
 *   - attributes of a directory under a closed chain are given
 *     attr_timeout 0, so stat reaches the daemon too.
 * A chmod that closes a directory, and a rename into a closed chain,
 * invalidate what the kernel cached below it under the old rules
 * (perm_inval_below).  -o strict_walks keeps the older rule instead:
 * no name at all is cached in a directory not everybody may search.
 * See docs/daemon.md, "Path walks".
 */

static void node_perm_set_locked(struct ops_node *n, const struct stat *st)
{
	n->perm.mode = st->st_mode;
	n->perm.uid = st->st_uid;
	n->perm.gid = st->st_gid;
}

static void node_perm_set(struct ops_fs *fs, struct ops_node *n, const struct stat *st)
{
	pthread_mutex_lock(&fs->table_lock);
	node_perm_set_locked(n, st);
	pthread_mutex_unlock(&fs->table_lock);
}

static struct perm_obj node_perm(struct ops_fs *fs, struct ops_node *n)
{
	struct perm_obj o;

	pthread_mutex_lock(&fs->table_lock);
	o = n->perm;
	pthread_mutex_unlock(&fs->table_lock);
	return o;
}

/* May every caller search a directory with this mode? */
static bool perm_open_dir(mode_t mode)
{
	return (mode & 0111) == 0111;
}

/* The directory holding node n (its first name), NULL for the root and
 * for nodes without a name.  Directories have one name. */
static struct ops_node *node_parent_locked(struct ops_fs *fs, const struct ops_node *n)
{
	if (n == &fs->root || !n->names)
		return NULL;
	return n->names->parent;
}

/* May everybody search directory d and every directory above it?  A
 * walk longer than PATH_MAX allows counts as closed. */
static bool node_chain_open_locked(struct ops_fs *fs, const struct ops_node *d)
{
	for (int depth = 0; d && depth < PATH_MAX / 2; depth++) {
		if (!perm_open_dir(d->perm.mode))
			return false;
		if (d == &fs->root)
			return true;
		d = node_parent_locked(fs, d);
	}
	return d == NULL;
}

/* How long the kernel may keep a name in directory dir, of an object of
 * type `type` (S_IFMT bits; 0 for a negative entry); chain_open: dir and
 * its ancestors are open (see above). */
static double entry_ttl(const struct ops_fs *fs, bool chain_open, bool dir_open,
			mode_t type)
{
	if (fs->cfg.strict_walks)
		return dir_open ? fs->cfg.entry_timeout : 0;
	return S_ISDIR(type) || chain_open ? fs->cfg.entry_timeout : 0;
}

/* How long the kernel may keep the attributes of node n (type `type`)
 * whose parent chain (parent upwards) is open or not. */
static double attr_ttl(const struct ops_fs *fs, bool parent_chain_open, mode_t type)
{
	if (fs->cfg.strict_walks || !S_ISDIR(type) || parent_chain_open)
		return fs->cfg.attr_timeout;
	return 0;
}

/* May everybody search every directory above node n? */
static bool node_above_open(struct ops_fs *fs, struct ops_node *n)
{
	bool open;

	pthread_mutex_lock(&fs->table_lock);
	open = node_chain_open_locked(fs, node_parent_locked(fs, n));
	pthread_mutex_unlock(&fs->table_lock);
	return open;
}

/* attr_ttl for a node the table knows. */
static double node_attr_ttl(struct ops_fs *fs, struct ops_node *n)
{
	bool open = !S_ISDIR(n->type) || n == &fs->root || node_above_open(fs, n);

	return attr_ttl(fs, open, n->type);
}

/* Is `name` in directory dir a subject root by the policy in force?  Then
 * 1, with its hash and backing name; 0 if not (no policy, dir inside a
 * subject, not a possible id). */
static int subj_root_name(struct ops_fs *fs, struct ops_policy *pol, struct ops_node *dir,
			  const char *name, uint8_t hash[CRYPT_HASH_BYTES],
			  char backing[SUBJECTS_BACKING_LEN + 1]);

/*
 * Finds or creates the node for backing entry `backing` of directory
 * `parent` (plaintext `name`), takes one kernel reference on it, and fills
 * the entry reply.  iv, if not NULL, is a freshly created directory's IV
 * (saves re-reading it).  subj, if not NULL, is the subject whose root
 * this entry is (else the node lies where its parent does).  Only a
 * directory keeps a descriptor.
 *
 * The kernel revalidates cached names without its directory lock, so a
 * lookup may race an unlink or rename of the same name.  The inode is
 * therefore pinned (O_PATH) while the table is updated, and the entry is
 * checked again afterwards: if it no longer leads to this inode, the name
 * just added is taken away again (the unlink or rename may have dropped
 * it before we added it).  Otherwise a stale name could keep a node in
 * the table after its inode is freed, and a new file given the same inode
 * number would inherit the node and its header state.
 */
static int node_get_as(struct ops_fs *fs, struct ops_node *parent, const char *backing,
		       const char *name, const uint8_t *iv, struct ops_subject *subj,
		       struct fuse_entry_param *e, bool listed, int held)
{
	struct ops_node *n = NULL, *found, *dead = NULL;
	struct stat st, now;
	bool chain_open; /* parent and its ancestors open (table lock held) */
	bool dir_open;   /* parent open */
	uint64_t gen0 = 0;
	bool quiet = false; /* listed, and no daemon-side removal was running */
	int pin, ret;

	memset(e, 0, sizeof(*e));
	if (held >= 0) {
		/* A file the caller just made and holds open (held): that
		 * descriptor pins the inode. */
		if (fstat(held, &st) != 0)
			return -errno;
		if (S_ISDIR(st.st_mode))
			return -EINVAL;
		pin = -1;
		goto table;
	}
	if (listed) {
		/* READDIRPLUS: the kernel holds the directory's lock for the
		 * whole listing, so no request can unlink or rename this entry
		 * meanwhile: no pin (a new directory still opens its
		 * descriptor, below).  Only the daemon's own removals (retention
		 * sweep, shred) can race it: the second look is needed only if
		 * one ran meanwhile (removal_begin). */
		quiet = atomic_load(&fs->removals_active) == 0;
		gen0 = atomic_load(&fs->removals_gen);
		if (fstatat(parent->fd, backing, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return -errno;
		pin = -1;
		goto table;
	}
	pin = openat(parent->fd, backing, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (pin < 0 && (errno == EMFILE || errno == ENFILE)) {
		/* Out of descriptors: a directory the table already has is
		 * pinned by its own descriptor, so it needs no new one. */
		int err = errno;

		if (fstatat(parent->fd, backing, &st, AT_SYMLINK_NOFOLLOW) != 0)
			return -errno;
		pthread_mutex_lock(&fs->table_lock);
		chain_open = node_chain_open_locked(fs, parent);
		dir_open = perm_open_dir(parent->perm.mode);
		found = S_ISDIR(st.st_mode) ? table_find(fs, st.st_dev, st.st_ino) : NULL;
		if (found && found->fd >= 0) {
			found->refs++;
			node_perm_set_locked(found, &st);
			node_name_add_locked(fs, found, parent, name, backing, &dead);
		} else {
			found = NULL;
		}
		pthread_mutex_unlock(&fs->table_lock);
		if (!found)
			return -err;
		goto recheck;
	}
	if (pin < 0)
		return -errno;
	if (fstat(pin, &st) != 0) {
		ret = -errno;
		goto out;
	}

table:
	pthread_mutex_lock(&fs->table_lock);
	chain_open = node_chain_open_locked(fs, parent);
	dir_open = perm_open_dir(parent->perm.mode);
	found = table_find(fs, st.st_dev, st.st_ino);
	if (found) {
		found->refs++;
		node_perm_set_locked(found, &st);
		node_name_add_locked(fs, found, parent, name, backing, &dead);
	}
	pthread_mutex_unlock(&fs->table_lock);

	if (!found && pin < 0 && S_ISDIR(st.st_mode)) {
		struct stat pst;

		pin = openat(parent->fd, backing, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (pin < 0) {
			ret = -errno;
			goto out;
		}
		if (fstat(pin, &pst) != 0 || !same_inode_st(&pst, &st)) {
			ret = -ENOENT;
			goto out;
		}
	}
	if (!found) {
		/* Built outside the lock: loading a directory IV is I/O. */
		n = calloc(1, sizeof(*n));
		if (!n) {
			ret = -ENOMEM;
			goto out;
		}
		n->fd = -1;
		if (pthread_rwlock_init(&n->lock, NULL) != 0) {
			free(n);
			n = NULL;
			ret = -ENOMEM;
			goto out;
		}
		n->names = name_new(parent, name, backing);
		if (!n->names) {
			ret = -ENOMEM;
			goto out;
		}
		n->dev = st.st_dev;
		n->ino = st.st_ino;
		n->type = st.st_mode & S_IFMT;
		n->subj = subj ? subj : parent->subj;
		if (n->subj)
			subj_ref(n->subj);
		n->ring = n->subj ? n->subj->ring : parent->ring;
		n->ff.fd = -1;
		n->ff.ring = n->ring;
		if (S_ISDIR(st.st_mode)) {
			if (iv) {
				memcpy(n->iv, iv, sizeof(n->iv));
				n->iv_ok = true;
			} else {
				/* A directory without its IV still stats and can
				 * be removed; naming inside it fails with EIO. */
				n->iv_ok = names_diriv_load(pin, n->iv) == 0;
			}
		}

		pthread_mutex_lock(&fs->table_lock);
		found = table_find(fs, st.st_dev, st.st_ino);
		if (found) {
			/* Another thread won the race; use its node. */
			found->refs++;
			node_perm_set_locked(found, &st);
			node_name_add_locked(fs, found, parent, name, backing, &dead);
		} else {
			node_perm_set_locked(n, &st);
			if (S_ISDIR(st.st_mode)) {
				/* The pin becomes the directory's descriptor. */
				n->fd = pin;
				pin = -1;
			}
			n->refs = 1;
			if (parent != &fs->root)
				parent->refs++;
			n->generation = ++fs->next_generation;
			table_insert(fs, n);
			found = n;
			n = NULL;
		}
		pthread_mutex_unlock(&fs->table_lock);
	}

recheck:
	if (quiet && atomic_load(&fs->removals_active) == 0 &&
	    atomic_load(&fs->removals_gen) == gen0) {
		/* Listed, and no daemon-side removal overlapped: the entry
		 * is still there (the kernel's directory lock keeps requests
		 * out). */
	} else if (fstatat(parent->fd, backing, &now, AT_SYMLINK_NOFOLLOW) != 0 ||
		   now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
		pthread_mutex_lock(&fs->table_lock);
		node_name_drop_locked(fs, found, parent, backing, &dead);
		pthread_mutex_unlock(&fs->table_lock);
	}

	if (found->fd >= 0 || pin >= 0)
		stat_convert(found, found->fd >= 0 ? found->fd : pin, "", &st);
	else
		stat_convert(found, parent->fd, backing, &st);
	e->ino = node_ino(fs, found);
	e->generation = found->generation;
	e->attr = st;
	e->attr_timeout = attr_ttl(fs, chain_open, st.st_mode & S_IFMT);
	e->entry_timeout = entry_ttl(fs, chain_open, dir_open, st.st_mode & S_IFMT);
	ret = 0;
out:
	free_dead(dead);
	if (n)
		node_free(n);
	if (pin >= 0)
		close(pin);
	return ret;
}

static int node_get(struct ops_fs *fs, struct ops_node *parent, const char *backing,
		    const char *name, const uint8_t *iv, struct ops_subject *subj,
		    struct fuse_entry_param *e)
{
	return node_get_as(fs, parent, backing, name, iv, subj, e, false, -1);
}

/* The inode behind backing entry `backing` of dir, if the kernel knows
 * it (no reference taken; use under table_lock only). */
static struct ops_node *entry_node_locked(struct ops_fs *fs, const struct stat *st)
{
	return table_find(fs, st->st_dev, st->st_ino);
}

/* ---- policy ----------------------------------------------------------------- */

/*
 * Checks happen on top of the mode bits (perm_*).  A request that needs a
 * check takes a reference on the policy in force (pol_begin), so every
 * check of one request sees one version and a reload never frees a policy
 * under a reader; with no policy in force pol_begin is one atomic load.
 * The caller's groups (primary and supplementary) come from
 * fuse_req_getgroups through fs->creds, at most CREDS_TTL_US old.
 */

/* Pseudo-operations beside enum policy_op. */
#define POL_TRAVERSE (-1)  /* reach names in the directory (lookup, getattr) */
#define POL_OPEN_READ (-2) /* open for reading: read, plus the read rate */

/* One request's view of the policy. */
struct pol_req {
	fuse_req_t req;             /* the request being checked */
	struct ops_fs *fs;          /* its file system */
	struct ops_policy *pol;     /* referenced policy; NULL = none: allow */
	size_t ngids;               /* gids filled (0 = not fetched yet) */
	gid_t gids[OPS_MAX_GROUPS]; /* the caller's groups, primary first */
	enum policy_audit level;    /* audit level where an open for reading
				       was checked (POL_OPEN_READ); with no
				       policy the policy's default, opens */
	uint64_t flags;             /* open flags, for a denied open's record */
	const struct keyring *ring; /* seals the path of a denial's record */
};

static void pol_put(struct ops_policy *op)
{
	if (op && atomic_fetch_sub(&op->refs, 1) == 1) {
		policy_free(op->p);
		free(op);
	}
}

/* Takes a reference on the policy in force; false (and nothing to end)
 * if there is none. */
static bool pol_begin(fuse_req_t req, struct pol_req *pr)
{
	struct ops_fs *fs = ops_fs(req);

	pr->req = req;
	pr->fs = fs;
	pr->pol = NULL;
	pr->ngids = 0;
	pr->level = POLICY_AUDIT_OPENS;
	pr->flags = 0;
	pr->ring = NULL;
	if (!atomic_load_explicit(&fs->pol_on, memory_order_acquire))
		return false;
	pthread_mutex_lock(&fs->pol_lock);
	pr->pol = fs->pol;
	if (pr->pol)
		atomic_fetch_add(&pr->pol->refs, 1);
	pthread_mutex_unlock(&fs->pol_lock);
	return pr->pol != NULL;
}

static void pol_end(struct pol_req *pr)
{
	pol_put(pr->pol);
	pr->pol = NULL;
}

static int fetch_groups(void *ctx, gid_t *gids, size_t cap)
{
	return fuse_req_getgroups(ctx, (int)cap, gids);
}

/* The caller's groups (primary first) into gids, at most CREDS_TTL_US
 * old; at least the primary group.  Returns how many. */
static size_t req_groups(fuse_req_t req, struct ops_fs *fs, gid_t *gids, size_t cap)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int n = creds_groups(fs->creds, ctx->pid, ctx->uid, ctx->gid, mono_us(),
			     fetch_groups, req, gids, cap);

	if (n < 1) {
		gids[0] = ctx->gid;
		n = 1;
	}
	return (size_t)n;
}

static void pol_groups(struct pol_req *pr)
{
	if (!pr->ngids)
		pr->ngids = req_groups(pr->req, pr->fs, pr->gids, ARRAY_LEN(pr->gids));
}

static const char *pol_op_name(int op)
{
	if (op == POL_TRAVERSE)
		return "traverse";
	if (op == POL_OPEN_READ)
		return "read";
	return policy_key_name(op);
}

/* ---- audit ------------------------------------------------------------------ */

/*
 * Every record of a request goes through audit_req: who (the request's
 * uid/gid/pid, the rest from the per-log who cache), what, the outcome.
 * Paths are plaintext here; audit_append seals them under ring.  A record
 * that cannot be written fails the request with EIO (ENOSPC on a full
 * disk; the daemon logs why, without the path): nothing is done for a
 * caller unrecorded.  No lock of
 * ours is held across it (with audit_sync=full it waits for a flush).
 */
/* The disk is full: give the reserve to the audit journal and refuse new
 * data from now on.  True if space was freed (worth a retry). */
static bool reserve_release(struct ops_fs *fs)
{
	bool freed = false;
	struct stat st;

	atomic_store(&fs->disk_full, true);
	pthread_mutex_lock(&fs->reserve_lock);
	if (fs->reserve_fd >= 0 && fstat(fs->reserve_fd, &st) == 0 && st.st_blocks > 0 &&
	    ftruncate(fs->reserve_fd, 0) == 0) {
		freed = true;
		fuse_log(FUSE_LOG_WARNING,
			 "custodianfs: disk full: the audit reserve is in use; new data "
			 "is refused (ENOSPC) until space is freed\n");
	}
	pthread_mutex_unlock(&fs->reserve_lock);
	return freed;
}

/* After a removal on a full disk: if twice the reserve is free again,
 * take the reserve back and accept new data. */
static void reserve_check(struct ops_fs *fs)
{
	struct statvfs sv;

	if (!atomic_load_explicit(&fs->disk_full, memory_order_relaxed))
		return;
	pthread_mutex_lock(&fs->reserve_lock);
	if (atomic_load(&fs->disk_full) && fstatvfs(fs->store->tree_fd, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize >= 2ull * OPS_AUDIT_RESERVE_BYTES &&
	    (fs->reserve_fd < 0 ||
	     fallocate(fs->reserve_fd, 0, 0, OPS_AUDIT_RESERVE_BYTES) == 0)) {
		atomic_store(&fs->disk_full, false);
		fuse_log(FUSE_LOG_WARNING,
			 "custodianfs: space freed: the audit reserve is back, new data "
			 "accepted\n");
	}
	pthread_mutex_unlock(&fs->reserve_lock);
}

/* New data (a create, a write) while the reserve is given away. */
static bool disk_full(struct ops_fs *fs)
{
	return atomic_load_explicit(&fs->disk_full, memory_order_relaxed);
}

int ops_reserve_open(struct ops_fs *fs)
{
	char *path = NULL;
	int fd, ret;

	if (asprintf(&path, "%s/%s", fs->store->path, OPS_AUDIT_RESERVE_FILE) < 0)
		return -ENOMEM;
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	free(path);
	if (fd < 0)
		return -errno;
	if (fallocate(fd, 0, 0, OPS_AUDIT_RESERVE_BYTES) != 0) {
		ret = -errno;
		/* Without it a full disk refuses reads too (they cannot be
		 * recorded), but the daemon still works. */
		close(fd);
		return ret;
	}
	fs->reserve_fd = fd;
	return 0;
}

static int audit_as(struct ops_fs *fs, pid_t pid, uid_t uid, gid_t gid,
		    const struct audit_event *tmpl, uint64_t *seq)
{
	struct audit_event ev = *tmpl;
	struct audit_who who;
	int ret;

	if (seq)
		*seq = 0;
	if (!fs->audit)
		return 0;
	audit_who_cached(fs->audit, pid, uid, gid, &who);
	ev.who = &who;
	/* Inside a subject: the record belongs to it (export, shred). */
	if (!ev.subject && tl_subj && ev.ring == tl_subj->ring)
		ev.subject = tl_subj->hash;
	if (ev.path && strlen(ev.path) > AUDIT_PATH_MAX)
		ev.path = NULL;
	if (ev.path2 && strlen(ev.path2) > AUDIT_PATH_MAX)
		ev.path2 = NULL;
	ret = audit_append(fs->audit, &ev, seq);
	if ((ret == -ENOSPC || ret == -EDQUOT) && reserve_release(fs))
		ret = audit_append(fs->audit, &ev, seq);
	if (ret < 0) {
		fuse_log(FUSE_LOG_ERR,
			 "custodianfs: audit record (%s) could not be written: %s; "
			 "the operation is refused\n",
			 ev.op, strerror(-ret));
		/* A full disk is what the caller should hear about (ENOSPC, as
		 * for the data); anything else is an I/O error. */
		return ret == -ENOSPC || ret == -EDQUOT ? ret : -EIO;
	}
	return 0;
}

static int audit_req(fuse_req_t req, const struct audit_event *tmpl, uint64_t *seq)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	return audit_as(ops_fs(req), c->pid, c->uid, c->gid, tmpl, seq);
}

/* Path of node n into buf, or NULL (unlinked while open, too long). */
static const char *audit_node_path(struct ops_fs *fs, const struct ops_node *n, char *buf,
				   size_t cap)
{
	if (!fs->audit || ops_node_path(fs, n, buf, cap) < 0)
		return NULL;
	return buf;
}

/* Path of entry `name` in directory node dir into buf, or NULL. */
static const char *audit_child_path(struct ops_fs *fs, const struct ops_node *dir,
				    const char *name, char *buf, size_t cap)
{
	int len;

	if (!fs->audit || !name)
		return NULL;
	len = ops_node_path(fs, dir, buf, cap);
	if (len < 0)
		return NULL;
	if (snprintf(buf + len, cap - (size_t)len, "%s%s", len == 1 ? "" : "/", name) >=
	    (int)(cap - (size_t)len))
		return NULL;
	return buf;
}

/* A change (or a failed attempt at one) in the tree.  0 or -EIO. */
static int audit_change(fuse_req_t req, const char *op, int err,
			const struct keyring *ring, const char *path, const char *path2,
			uint64_t flags, const char *detail, uint64_t *seq)
{
	struct audit_event ev = {
		.op = op,
		.outcome = err < 0 ? -err : err,
		.ring = ring,
		.path = path,
		.path2 = path2,
		.flags = flags,
		.detail = detail,
	};

	return audit_req(req, &ev, seq);
}

/*
 * A change that cannot be taken back (unlink, rmdir, rename, setattr) is
 * recorded before it is made, so that it never happens unrecorded; if it
 * then fails, this second record says so: same op, outcome = the errno,
 * ref = the first record's seq, detail "not done".
 */
static void audit_not_done(fuse_req_t req, const char *op, int err,
			   const struct keyring *ring, const char *path,
			   const char *path2, uint64_t seq)
{
	struct audit_event ev = {
		.op = op,
		.outcome = -err,
		.ring = ring,
		.path = path,
		.path2 = path2,
		.ref = seq,
		.detail = "not done",
	};

	(void)audit_req(req, &ev, NULL);
}

/* Ends a change recorded by audit_change before it was made (recorded,
 * seq) or not yet recorded (it failed first: recorded now with err). */
static void audit_change_end(fuse_req_t req, const char *op, int err, bool recorded,
			     uint64_t seq, const struct keyring *ring, const char *path,
			     const char *path2, uint64_t flags, const char *detail)
{
	if (!recorded)
		(void)audit_change(req, op, err, ring, path, path2, flags, detail, NULL);
	else if (err < 0 && seq)
		audit_not_done(req, op, err, ring, path, path2, seq);
}

/*
 * The single point where policy denials go: recorded in the audit log
 * (path = what was asked for, or its directory), and logged at debug level
 * only (the path is plaintext; it may not reach logs at info or above).
 * The record's op is the operation's own where there is one (a denied
 * open is op=open outcome=13), "alert" for the read rate, else "deny".
 * Returns -err for the reply, or -EIO if the denial could not be recorded.
 */
static int deny_why(struct pol_req *pr, const char *op, const char *path, int err,
		    const char *why)
{
	static const char *const own[] = {
		AUDIT_OP_OPEN,    AUDIT_OP_CREATE, AUDIT_OP_MKDIR, AUDIT_OP_RMDIR,
		AUDIT_OP_UNLINK,  AUDIT_OP_RENAME, AUDIT_OP_LINK,  AUDIT_OP_SYMLINK,
		AUDIT_OP_SETATTR, AUDIT_OP_WRITE,
	};
	const struct fuse_ctx *ctx = fuse_req_ctx(pr->req);
	const char *aop = AUDIT_OP_DENY;
	char detail[64];

	fuse_log(FUSE_LOG_DEBUG, "custodianfs: denied: %s in %s for uid %u pid %d: %s\n",
		 op, path ? path : "(unreachable)", (unsigned)ctx->uid, (int)ctx->pid,
		 strerror(err));
	for (size_t i = 0; i < ARRAY_LEN(own); i++)
		if (strcmp(op, own[i]) == 0)
			aop = own[i];
	if (strcmp(op, "truncate") == 0)
		aop = AUDIT_OP_SETATTR;
	else if (strcmp(op, "mknod") == 0)
		aop = AUDIT_OP_CREATE;
	else if (strcmp(op, "read-rate") == 0)
		aop = AUDIT_OP_ALERT;
	snprintf(detail, sizeof(detail), "%s: %s",
		 why                            ? why
		 : strcmp(op, "read-rate") == 0 ? "read rate exceeded"
						: "denied by policy",
		 op);
	if (audit_change(pr->req, aop, err, pr->ring, path, NULL,
			 strcmp(aop, AUDIT_OP_OPEN) == 0 ? pr->flags : 0, detail,
			 NULL) < 0)
		return -EIO; /* not -ENOSPC: the refusal is the news */
	return -err;
}

static int deny(struct pol_req *pr, const char *op, const char *path, int err)
{
	return deny_why(pr, op, path, err, NULL);
}

/* A refusal that is not the policy's permissions (legal hold, retention,
 * restriction): recorded through deny_why with why, for node n (its path
 * sealed with its ring) or entry `name` of directory dir. */
static int refuse(fuse_req_t req, struct ops_node *n, struct ops_node *dir,
		  const char *name, const char *op, int err, const char *why)
{
	char path[PATH_MAX];
	const char *p = NULL;
	struct pol_req pr;
	int ret;

	pol_begin(req, &pr);
	if (n) {
		pr.ring = n->ring;
		p = audit_node_path(pr.fs, n, path, sizeof(path));
	} else if (dir) {
		pr.ring = dir->ring;
		p = audit_child_path(pr.fs, dir, name, path, sizeof(path));
	}
	ret = deny_why(&pr, op, p, err, why);
	pol_end(&pr);
	return ret;
}

/* Checks op in directory `dir` (an absolute path inside the mount); a
 * denial is recorded with path `target` (NULL: dir itself). */
static int pol_path(struct pol_req *pr, const char *dir, int op, const char *opname,
		    const char *target)
{
	const struct fuse_ctx *ctx;
	struct policy_effective eff;
	int ret;

	if (!pr->pol)
		return 0;
	if (!target)
		target = dir;
	ctx = fuse_req_ctx(pr->req);
	pol_groups(pr);
	if (op == POL_TRAVERSE) {
		ret = policy_check_traverse(pr->pol->p, dir, ctx->uid, pr->gids,
					    pr->ngids);
	} else if (op == POL_OPEN_READ) {
		ret = policy_effective(pr->pol->p, dir, &eff);
		if (ret == 0) {
			pr->level = eff.audit;
			ret = policy_check_effective(&eff, ctx->uid, pr->gids, pr->ngids,
						     POLICY_READ, NULL);
		}
		if (ret == 0 && eff.rate_count > 0) {
			const struct policy_rule *r = eff.from[POLICY_K_READ_RATE];

			ret = creds_rate_take(pr->fs->rate, ctx->uid,
					      creds_rate_key(r ? r->pattern : "/"),
					      eff.rate_count, eff.rate_window_s,
					      mono_us());
			if (ret < 0)
				return deny(pr, "read-rate", target, EACCES);
		}
	} else {
		ret = policy_check(pr->pol->p, dir, ctx->uid, pr->gids, pr->ngids,
				   (enum policy_op)op, NULL);
	}
	if (ret < 0)
		return deny(pr, opname ? opname : pol_op_name(op), target, EACCES);
	return 0;
}

/* Checks op in directory node dir; name (may be NULL) is the entry the
 * request is about, for the record of a denial. */
static int pol_dir(struct pol_req *pr, struct ops_node *dir, int op, const char *opname,
		   const char *name)
{
	char path[PATH_MAX], target[PATH_MAX];
	const char *t = NULL;
	int ret;

	if (!pr->pol)
		return 0;
	pr->ring = dir->ring;
	ret = ops_node_path(pr->fs, dir, path, sizeof(path));
	if (ret < 0)
		return deny(pr, opname ? opname : pol_op_name(op), NULL, EACCES);
	if (name && snprintf(target, sizeof(target), "%s%s%s", path, ret == 1 ? "" : "/",
			     name) < (int)sizeof(target))
		t = target;
	return pol_path(pr, path, op, opname, t);
}

/* Checks op in the directory holding node n (its most recently used
 * name; for the root, "/" itself); a denial names n. */
static int pol_node(struct pol_req *pr, struct ops_node *n, int op, const char *opname)
{
	char path[PATH_MAX], dir[PATH_MAX];
	char *slash;
	int ret;

	if (!pr->pol)
		return 0;
	pr->ring = n->ring;
	pthread_mutex_lock(&pr->fs->table_lock);
	ret = node_path_locked(pr->fs, n, false, path, sizeof(path));
	pthread_mutex_unlock(&pr->fs->table_lock);
	if (ret < 0)
		return deny(pr, opname ? opname : pol_op_name(op), NULL, EACCES);
	memcpy(dir, path, (size_t)ret + 1);
	slash = strrchr(dir, '/');
	if (slash == dir)
		dir[1] = '\0';
	else if (slash)
		*slash = '\0';
	return pol_path(pr, dir, op, opname, path);
}

/* ---- mode bits: the checks ------------------------------------------------ */

/* One request's caller, for perm.h; its groups are fetched (through
 * fs->creds, like the policy's) only if a decision needs them. */
struct perm_req {
	struct perm_caller c;       /* the caller (fsuid, fsgid, groups) */
	fuse_req_t req;             /* the request being checked */
	struct ops_fs *fs;          /* its file system */
	int ngids;                  /* gids fetched (0 = not yet) */
	gid_t gids[OPS_MAX_GROUPS]; /* the caller's groups, primary first */
};

static int perm_fetch(void *ctx, const gid_t **gids)
{
	struct perm_req *p = ctx;

	if (!p->ngids)
		p->ngids = (int)req_groups(p->req, p->fs, p->gids, ARRAY_LEN(p->gids));
	*gids = p->gids;
	return p->ngids;
}

static void perm_begin(fuse_req_t req, struct perm_req *p)
{
	const struct fuse_ctx *fc = fuse_req_ctx(req);

	p->req = req;
	p->fs = ops_fs(req);
	p->ngids = 0;
	p->c.uid = fc->uid;
	p->c.gid = fc->gid;
	p->c.groups = perm_fetch;
	p->c.ctx = p;
}

/* A refusal by the mode bits, recorded as the policy's are (refuse). */
static int perm_refuse(fuse_req_t req, struct ops_node *n, struct ops_node *dir,
		       const char *name, const char *op, int err)
{
	return refuse(req, n, dir, name, op, err, "mode bits");
}

/* Search permission on every directory above n (its parent upwards) for
 * the caller of p (not root): 0 or -EACCES.  The kernel walks cached
 * names without asking, so this is where a walk through a directory the
 * caller may not search is refused (see "Path walks").  A chain longer
 * than PATH_MAX allows counts as refused. */
static int perm_reach_check(struct perm_req *p, struct ops_node *n)
{
	struct ops_fs *fs = p->fs;
	struct ops_node *d;
	int ret = 0, depth = 0;
	bool open;

	pthread_mutex_lock(&fs->table_lock);
	open = node_chain_open_locked(fs, node_parent_locked(fs, n));
	pthread_mutex_unlock(&fs->table_lock);
	if (open)
		return 0;
	/* The groups now, outside the table lock (they may come from /proc);
	 * perm_check below then finds them fetched. */
	if (!p->ngids) {
		const gid_t *g;

		(void)perm_fetch(p, &g);
	}
	pthread_mutex_lock(&fs->table_lock);
	for (d = node_parent_locked(fs, n); d; d = node_parent_locked(fs, d)) {
		if (++depth > PATH_MAX / 2 ||
		    (!perm_open_dir(d->perm.mode) &&
		     perm_check(&p->c, &d->perm, PERM_EXEC) < 0)) {
			ret = -EACCES;
			break;
		}
	}
	pthread_mutex_unlock(&fs->table_lock);
	return ret;
}

/* perm_reach_check for request req on node n; a refusal is recorded as
 * op on n, or on entry `name` of directory n. */
static int perm_reach(fuse_req_t req, struct ops_node *n, const char *op,
		      const char *name)
{
	struct perm_req p;

	perm_begin(req, &p);
	if (perm_root(&p.c) || p.fs->cfg.strict_walks)
		return 0;
	if (perm_reach_check(&p, n) == 0)
		return 0;
	return perm_refuse(req, name ? NULL : n, name ? n : NULL, name, op, EACCES);
}

/* mask (PERM_*) on directory dir for an operation on its entry `name`
 * (NULL: dir itself): PERM_EXEC to look a name up, PERM_WRITE|PERM_EXEC
 * to make or remove one, PERM_READ to list.  Search on every directory
 * above dir too (perm_reach). */
static int perm_dir(fuse_req_t req, struct ops_node *dir, int mask, const char *op,
		    const char *name)
{
	struct perm_req p;
	struct perm_obj o;

	perm_begin(req, &p);
	if (perm_root(&p.c))
		return 0;
	o = node_perm(p.fs, dir);
	if (perm_check(&p.c, &o, mask) < 0)
		return perm_refuse(req, name ? NULL : dir, dir, name, op, EACCES);
	return perm_reach(req, dir, op, name);
}

/* mask on node n, whose backing stat st was just taken. */
static int perm_node(fuse_req_t req, struct ops_node *n, const struct stat *st, int mask,
		     const char *op)
{
	struct perm_obj o = {st->st_mode, st->st_uid, st->st_gid};
	struct perm_req p;

	perm_begin(req, &p);
	if (perm_root(&p.c) || perm_check(&p.c, &o, mask) == 0)
		return 0;
	return perm_refuse(req, n, NULL, NULL, op, EACCES);
}

/* May the caller remove (or rename away) entry `name` of dir, whose
 * backing stat is victim?  Write and search on dir, and the sticky bit. */
static int perm_remove(fuse_req_t req, struct ops_node *dir, const char *name,
		       const struct stat *victim, const char *op)
{
	struct perm_obj v = {victim->st_mode, victim->st_uid, victim->st_gid};
	struct perm_req p;
	struct perm_obj o;
	int ret = perm_dir(req, dir, PERM_WRITE | PERM_EXEC, op, name);

	if (ret < 0)
		return ret;
	perm_begin(req, &p);
	if (perm_root(&p.c))
		return 0;
	o = node_perm(p.fs, dir);
	if (perm_sticky(&p.c, &o, &v) < 0)
		return perm_refuse(req, NULL, dir, name, op, EPERM);
	return 0;
}

/* The mode bits of a rename (vfs_rename): the source is removed from its
 * directory, the target removed (if it exists, or with exchange) or made;
 * a directory that changes parent needs write on itself (its ".."). */
static int perm_rename(fuse_req_t req, struct ops_node *dir, const char *name,
		       const struct stat *src, struct ops_node *ndir, const char *newname,
		       const struct stat *dst)
{
	struct perm_req p;
	int ret;

	perm_begin(req, &p);
	if (perm_root(&p.c))
		return 0;
	ret = perm_remove(req, dir, name, src, "rename");
	if (ret == 0)
		ret = dst ? perm_remove(req, ndir, newname, dst, "rename")
			  : perm_dir(req, ndir, PERM_WRITE | PERM_EXEC, "rename",
				     newname);
	for (int i = 0; ret == 0 && i < 2 && dir != ndir; i++) {
		const struct stat *st = i == 0 ? src : dst;
		struct perm_obj o;

		if (!st || !S_ISDIR(st->st_mode))
			continue;
		o = (struct perm_obj){st->st_mode, st->st_uid, st->st_gid};
		if (perm_check(&p.c, &o, PERM_WRITE) < 0)
			ret = perm_refuse(req, NULL, i == 0 ? dir : ndir,
					  i == 0 ? name : newname, "rename", EACCES);
	}
	return ret;
}

/* fs.protected_hardlinks as the kernel's may_linkat() applies it: with
 * the sysctl on (Debian's default), a caller who does not own the file
 * may link only a regular file it may read and write that is neither
 * setuid nor setgid-executable.  0 or -EPERM (recorded). */
static int perm_link(fuse_req_t req, struct ops_node *n, const struct stat *st)
{
	struct perm_obj o = {st->st_mode, st->st_uid, st->st_gid};
	struct perm_req p;
	char v = '1';
	int fd;

	perm_begin(req, &p);
	if (perm_root(&p.c) || p.c.uid == st->st_uid)
		return 0;
	fd = open("/proc/sys/fs/protected_hardlinks", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, &v, 1) != 1)
			v = '1';
		close(fd);
	}
	if (v == '0')
		return 0;
	if (S_ISREG(st->st_mode) && !(st->st_mode & S_ISUID) &&
	    (st->st_mode & (S_ISGID | S_IXGRP)) != (S_ISGID | S_IXGRP) &&
	    perm_check(&p.c, &o, PERM_READ | PERM_WRITE) == 0)
		return 0;
	return perm_refuse(req, n, NULL, NULL, "link", EPERM);
}

/* The access an open with these flags asks for: read and/or write by the
 * access mode (O_TRUNC writes), execute instead of read for execve's open
 * (__FMODE_EXEC, which the kernel passes in the flags). */
#define OPS_FMODE_EXEC 040
static int open_mask(int flags)
{
	int acc = flags & O_ACCMODE, mask = 0;

	if (acc != O_WRONLY)
		mask |= (flags & OPS_FMODE_EXEC) ? PERM_EXEC : PERM_READ;
	if (acc != O_RDONLY || (flags & O_TRUNC))
		mask |= PERM_WRITE;
	return mask;
}

/* The mode bits of a setattr (setattr_prepare, notify_change), made on
 * what was asked (a chmod to the same mode by a stranger is still EPERM):
 * chmod needs the owner (and drops setgid from attr when it must), chown
 * root or the owner within its groups, truncate write permission (not
 * through a handle: its open was checked), times the owner, or write
 * permission to set them to now.  0 or the recorded refusal. */
static int perm_setattr(fuse_req_t req, struct ops_node *n, const struct stat *st,
			struct stat *attr, int valid, bool via_handle)
{
	struct perm_obj o = {st->st_mode, st->st_uid, st->st_gid};
	struct perm_req p;
	int ret = 0;

	perm_begin(req, &p);
	if (perm_root(&p.c))
		return 0;
	/* Size first: a truncate comes with the kernel's setuid-clearing
	 * chmod, and a caller who may not write must hear EACCES. */
	if ((valid & FUSE_SET_ATTR_SIZE) && !via_handle)
		ret = perm_check(&p.c, &o, PERM_WRITE);
	if (ret == 0 && (valid & FUSE_SET_ATTR_MODE)) {
		mode_t m = attr->st_mode & 07777;

		/* The kernel clears setuid/setgid before a write or truncate
		 * by sending this chmod as the writer: on a regular file, a
		 * change that only drops some of those bits is allowed to
		 * whoever may write the file (writing would clear them
		 * anyway).  Not on a directory: a setgid directory's group
		 * inheritance is its owner's to change. */
		if (S_ISREG(st->st_mode) && (st->st_mode & PERM_KILLPRIV_MASK & ~m) &&
		    (st->st_mode & 07777 & ~PERM_KILLPRIV_MASK) ==
			    (m & ~PERM_KILLPRIV_MASK) &&
		    !(m & ~st->st_mode & PERM_KILLPRIV_MASK) &&
		    perm_check(&p.c, &o, PERM_WRITE) == 0)
			ret = 0;
		else
			ret = perm_chmod(&p.c, &o, &m);
		attr->st_mode = (attr->st_mode & S_IFMT) | m;
	}
	if (ret == 0 && (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		ret = perm_chown(&p.c, &o,
				 (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
				 (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1);
	/* A truncate's own "mtime = now" comes with the size. */
	if (ret == 0 && (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) &&
	    !(valid & FUSE_SET_ATTR_SIZE)) {
		/* Only utimes(NULL) (or both UTIME_NOW) is a "touch". */
		bool touch = (valid & FUSE_SET_ATTR_ATIME_NOW) &&
			     (valid & FUSE_SET_ATTR_MTIME_NOW);

		ret = perm_utimes(&p.c, &o, touch);
	}
	if (ret < 0)
		return perm_refuse(req, n, NULL, NULL,
				   (valid & FUSE_SET_ATTR_SIZE) ? "truncate" : "setattr",
				   -ret);
	return 0;
}

/* Is directory d the node top or below it (table lock held)? */
static bool node_below_locked(struct ops_fs *fs, const struct ops_node *d,
			      const struct ops_node *top)
{
	for (int depth = 0; d && depth < PATH_MAX / 2; depth++) {
		if (d == top)
			return true;
		d = node_parent_locked(fs, d);
	}
	return false;
}

/* One cached name to invalidate: entry `name` of directory parent (a
 * reference held on it). */
struct inval_name {
	struct ops_node *parent;
	char *name;
};

/* After directory top came under a closed chain (a chmod took search
 * permission on it away from some callers, or a rename moved it there):
 * what the kernel cached under the open chain's rules would still let
 * anyone walk in, so it is invalidated.  top's own name (which drops
 * every cached name below it, negative ones too) and every name the node
 * table holds below it (names in use survive the first).  Called after
 * the reply: the kernel holds top's lock until the request returns.
 * Negative entries right in the root, which has no name, stay for up to
 * entry_timeout (docs/daemon.md, "Path walks"). */
static void perm_inval_below(struct ops_fs *fs, struct ops_node *top)
{
	struct inval_name *v = NULL;
	size_t n = 0, cap = 0;

	if (!fs->se)
		return;
	pthread_mutex_lock(&fs->table_lock);
	for (size_t b = 0; b < fs->nbuckets; b++)
		for (struct ops_node *x = fs->buckets[b]; x; x = x->hnext)
			for (struct ops_name *nm = x->names; nm; nm = nm->next) {
				char *dup;

				if (!nm->parent ||
				    (x != top && !node_below_locked(fs, nm->parent, top)))
					continue;
				if (n == cap) {
					size_t nc = cap ? cap * 2 : 16;
					struct inval_name *nv =
						realloc(v, nc * sizeof(*nv));

					if (!nv)
						continue;
					v = nv;
					cap = nc;
				}
				dup = strdup(nm->name);
				if (!dup)
					continue;
				if (nm->parent != &fs->root)
					nm->parent->refs++;
				v[n].parent = nm->parent;
				v[n++].name = dup;
			}
	pthread_mutex_unlock(&fs->table_lock);
	for (size_t i = 0; i < n; i++) {
		(void)fuse_lowlevel_notify_inval_entry(fs->se, node_ino(fs, v[i].parent),
						       v[i].name, strlen(v[i].name));
		crypt_wipe(v[i].name, strlen(v[i].name));
		free(v[i].name);
		node_unref(fs, v[i].parent, 1);
	}
	free(v);
}

/* After a rename moved entry `name` from directory `from` into `to`: if
 * it left an open chain for a closed one, what the kernel cached of it
 * and below it goes (perm_inval_below; the kernel moves cached names
 * with their timeouts).  Called after the reply. */
static void perm_inval_moved(struct ops_fs *fs, struct ops_node *from,
			     struct ops_node *to, const char *name)
{
	struct ops_node *top = NULL;
	bool was, now;

	pthread_mutex_lock(&fs->table_lock);
	if (fs->cfg.strict_walks) {
		was = perm_open_dir(from->perm.mode);
		now = perm_open_dir(to->perm.mode);
	} else {
		was = node_chain_open_locked(fs, from);
		now = node_chain_open_locked(fs, to);
	}
	for (size_t b = 0; was && !now && !top && b < fs->nbuckets; b++)
		for (struct ops_node *x = fs->buckets[b]; x && !top; x = x->hnext)
			for (struct ops_name *nm = x->names; nm; nm = nm->next)
				if (nm->parent == to && strcmp(nm->name, name) == 0) {
					top = x;
					top->refs++;
					break;
				}
	pthread_mutex_unlock(&fs->table_lock);
	if (top) {
		perm_inval_below(fs, top);
		node_unref(fs, top, 1);
	}
}

/* Does node n have a name (is it reachable by path)?  Nodes unlinked
 * while open are reached only through a descriptor that was checked when
 * it was opened. */
static bool node_named(struct ops_fs *fs, struct ops_node *n)
{
	bool named;

	if (n == &fs->root)
		return true;
	pthread_mutex_lock(&fs->table_lock);
	named = n->names != NULL;
	pthread_mutex_unlock(&fs->table_lock);
	return named;
}

static int subj_root_name(struct ops_fs *fs, struct ops_policy *pol, struct ops_node *dir,
			  const char *name, uint8_t hash[CRYPT_HASH_BYTES],
			  char backing[SUBJECTS_BACKING_LEN + 1])
{
	char path[PATH_MAX];
	int len;

	if (!pol || dir->subj || !name || subjects_id_check(name) < 0)
		return 0;
	len = ops_node_path(fs, dir, path, sizeof(path));
	if (len < 0 || snprintf(path + len, sizeof(path) - (size_t)len, "%s%s",
				len == 1 ? "" : "/", name) >= (int)sizeof(path) - len)
		return 0;
	if (!policy_is_subject_root(pol->p, path))
		return 0;
	subjects_hash(fs->store->mk, name, hash);
	subjects_backing_name(hash, backing);
	return 1;
}

/* subj_root_name for a request, and whether that subject root exists:
 * 1 (hash, backing and, if st is not NULL, its stat set), 0 if name is
 * not an existing subject root there. */
static int subj_root_entry(fuse_req_t req, struct ops_node *dir, const char *name,
			   uint8_t hash[CRYPT_HASH_BYTES],
			   char backing[SUBJECTS_BACKING_LEN + 1], struct stat *st)
{
	struct stat tmp;
	struct pol_req pr;
	int r;

	if (dir->subj)
		return 0;
	if (!pol_begin(req, &pr)) {
		pol_end(&pr);
		return 0;
	}
	r = subj_root_name(pr.fs, pr.pol, dir, name, hash, backing);
	pol_end(&pr);
	if (r == 1 && fstatat(dir->fd, backing, st ? st : &tmp, AT_SYMLINK_NOFOLLOW) != 0)
		r = 0;
	return r;
}

/* The plaintext path of the root of n's subject. */
static int subj_root_path(struct ops_fs *fs, struct ops_node *n, char *buf, size_t cap)
{
	const struct ops_node *r = n;
	int ret;

	pthread_mutex_lock(&fs->table_lock);
	while (r->names && r->names->parent && r->names->parent->subj == n->subj)
		r = r->names->parent;
	ret = node_path_locked(fs, r, false, buf, cap);
	pthread_mutex_unlock(&fs->table_lock);
	return ret;
}

/* Reading (or opening at all) inside a restricted subject needs `admin`
 * on its root; 0, or the refusal (EACCES, recorded). */
static int pol_restricted(struct pol_req *pr, struct ops_node *n, const char *opname)
{
	char root[PATH_MAX];
	const struct fuse_ctx *ctx = fuse_req_ctx(pr->req);
	char path[PATH_MAX];
	const char *p;

	if (!n->subj || !(subj_flags(n->subj) & SUBJECTS_RESTRICTED))
		return 0;
	if (pr->pol && subj_root_path(pr->fs, n, root, sizeof(root)) >= 0) {
		pol_groups(pr);
		if (policy_check(pr->pol->p, root, ctx->uid, pr->gids, pr->ngids,
				 POLICY_ADMIN, NULL) == 0)
			return 0;
	}
	pr->ring = n->ring;
	p = audit_node_path(pr->fs, n, path, sizeof(path));
	return deny_why(pr, opname, p, EACCES, "processing restricted");
}

/* ---- retention ------------------------------------------------------------ */

/*
 * Retention in the daemon (docs/retention.md, "For the daemon"): directory
 * holds loaded at mount and on `holds-reload`, and the compliance clock,
 * read from the catalogue at most once a minute and advanced by the
 * monotonic clock in between.  Every refusal is EPERM, recorded through
 * deny_why.
 */
struct ops_retention {
	pthread_rwlock_t lock;             /* guards holds */
	struct retention_holds *holds;     /* directory holds; lock */
	pthread_mutex_t clock_lock;        /* guards the fields below */
	int64_t clock_us;                  /* compliance time at clock_mono */
	int64_t clock_mono;                /* monotonic time of that reading, 0 =
					      none yet */
	enum clock_event_kind clock_event; /* last event audited (once per
					      transition) */
};

#define RET_CLOCK_REFRESH_US (60LL * 1000000)

/* Records an event of the daemon itself (clock alerts, live verbs). */
static int audit_self(struct ops_fs *fs, pid_t pid, const char *op, int outcome,
		      const uint8_t *subject, const char *detail, uint64_t *seq)
{
	struct audit_who who;
	struct audit_event ev = {
		.op = op,
		.outcome = outcome < 0 ? -outcome : outcome,
		.subject = subject,
		.detail = detail,
	};

	if (seq)
		*seq = 0;
	if (!fs->audit)
		return 0;
	/* An administrator's request (the tool runs as root), or the daemon. */
	if (pid > 0)
		audit_who(pid, 0, 0, &who);
	else
		audit_who_self(&who);
	ev.who = &who;
	return audit_append(fs->audit, &ev, seq);
}

/* Adopts a compliance reading (and audits a clock event once).  Caller
 * holds clock_lock. */
static void ret_clock_set_locked(struct ops_fs *fs, int64_t now,
				 const struct clock_event *ev)
{
	struct ops_retention *r = fs->ret;

	r->clock_us = now;
	r->clock_mono = mono_us();
	if (ev && ev->kind != r->clock_event &&
	    (ev->kind == CLOCK_EV_SET_BACK || ev->kind == CLOCK_EV_JUMP_AHEAD)) {
		char d[160];

		clock_event_describe(ev, d, sizeof(d));
		if (audit_self(fs, 0, AUDIT_OP_ALERT, 0, NULL, d, NULL) < 0)
			fuse_log(FUSE_LOG_ERR, "custodianfs: clock alert not recorded\n");
		fuse_log(FUSE_LOG_WARNING, "custodianfs: %s\n", d);
	}
	if (ev)
		r->clock_event = ev->kind;
}

/* The compliance time for retention decisions (UTC us). */
static int64_t ret_now(struct ops_fs *fs)
{
	struct ops_retention *r = fs->ret;
	int64_t now, mono = mono_us();
	struct clock_event ev;

	pthread_mutex_lock(&r->clock_lock);
	if (r->clock_mono && mono - r->clock_mono < RET_CLOCK_REFRESH_US) {
		now = r->clock_us + (mono - r->clock_mono);
	} else if (clock_compliance_now(fs->store->cat, &now, &ev) == 0) {
		ret_clock_set_locked(fs, now, &ev);
	} else {
		/* The catalogue cannot be read: the last reading, advanced. */
		now = r->clock_mono ? r->clock_us + (mono - r->clock_mono)
				    : clock_now_us();
	}
	pthread_mutex_unlock(&r->clock_lock);
	return now;
}

/* Is plaintext path under a directory hold? */
static bool ret_dir_held(struct ops_fs *fs, const char *path)
{
	bool held;

	if (!path)
		return false;
	pthread_rwlock_rdlock(&fs->ret->lock);
	held = fs->ret->holds && retention_holds_match(fs->ret->holds, path);
	pthread_rwlock_unlock(&fs->ret->lock);
	return held;
}

/* Loads the directory holds again (mount, holds-reload). */
static int ret_holds_reload(struct ops_fs *fs)
{
	struct retention_holds *h = NULL, *old;
	int ret = retention_holds_load(fs->store, &h);

	if (ret < 0)
		return ret;
	pthread_rwlock_wrlock(&fs->ret->lock);
	old = fs->ret->holds;
	fs->ret->holds = h;
	pthread_rwlock_unlock(&fs->ret->lock);
	retention_holds_free(old);
	/* Open handles decided their directory hold at open: make them
	 * decide again at their next write. */
	atomic_fetch_add_explicit(&fs->holds_gen, 1, memory_order_release);
	return 0;
}

/* Effective policy of the directory holding node n (or of dir), false if
 * no policy is in force.  pr must be begun. */
static bool ret_effective(struct pol_req *pr, const char *dirpath,
			  struct policy_effective *e)
{
	return pr->pol && policy_effective(pr->pol->p, dirpath, e) == 0;
}

static bool ret_active(const struct policy_effective *e)
{
	return e->retain_min_s > 0 || e->worm;
}

/* The header of a regular file: n's loaded state if it has one, else read
 * from fd (any descriptor of the file; O_PATH is reopened).  0 with
 * *have = false for an empty file that has none yet. */
static int ret_header(struct ops_node *n, const struct ops_node *dir, int fd,
		      struct format_header *h, bool *have)
{
	struct format_file f;
	char proc[64];
	int rfd, ret;

	*have = false;
	if (n) {
		pthread_rwlock_rdlock(&n->lock);
		if (n->hdr_loaded) {
			*have = n->ff.have_header;
			*h = n->ff.hdr;
			pthread_rwlock_unlock(&n->lock);
			return 0;
		}
		pthread_rwlock_unlock(&n->lock);
	}
	proc_path(proc, fd);
	rfd = open(proc, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (rfd < 0)
		return -errno;
	ret = format_file_load(&f, rfd, n ? n->ring : dir->ring);
	close(rfd);
	if (ret == 0) {
		*have = f.have_header;
		*h = f.hdr;
	}
	return ret;
}

/*
 * May the record reached by fd (entry `name` of dir, node n if the kernel
 * knows it; type its S_IFMT) undergo op now?  A legal hold (subject or
 * directory) refuses UNLINK, RENAME_AWAY, TRUNCATE, OVERWRITE; retention
 * (retain_min, worm) refuses as retention_check says.  0, or the refusal
 * (-EPERM, recorded with opname), or -EIO if the record cannot be judged.
 */
static int check_record(fuse_req_t req, struct ops_node *dir, const char *name,
			struct ops_node *n, int fd, mode_t type, enum retention_op op,
			const char *opname)
{
	struct ops_fs *fs = ops_fs(req);
	char dpath[PATH_MAX], path[PATH_MAX];
	struct policy_effective e;
	struct format_header h;
	struct pol_req pr;
	bool held, have = false;
	int len, ret = 0;

	if (n && !dir) {
		pthread_mutex_lock(&fs->table_lock);
		len = node_path_locked(fs, n, true, dpath, sizeof(dpath));
		pthread_mutex_unlock(&fs->table_lock);
		if (len >= 0)
			len = ops_node_path(fs, n, path, sizeof(path));
	} else {
		len = ops_node_path(fs, dir, dpath, sizeof(dpath));
		if (len >= 0 && snprintf(path, sizeof(path), "%s%s%s", dpath,
					 len == 1 ? "" : "/", name) >= (int)sizeof(path))
			len = -ENAMETOOLONG;
	}
	held = subj_held(n ? n : dir) || (len >= 0 && ret_dir_held(fs, path));
	if (retention_check_held(held, op) < 0)
		return n ? refuse(req, n, NULL, NULL, opname, EPERM, "legal hold")
			 : refuse(req, NULL, dir, name, opname, EPERM, "legal hold");
	if (!S_ISREG(type) || len < 0)
		return 0;
	pol_begin(req, &pr);
	if (ret_effective(&pr, dpath, &e)) {
		ret = ret_header(n, dir, fd, &h, &have);
		if (ret < 0 && ret_active(&e))
			ret = -EIO; /* a header that does not authenticate */
		else if (ret < 0 || !have)
			ret = 0; /* nothing to keep (no retention, or empty) */
		else if (ret_active(&e) || (h.flags & FORMAT_FLAG_WORM) ||
			 h.keep_until_us) {
			int64_t now = ret_now(fs);
			struct stat sb;

			/* Idle past autocommit: write-once already. */
			if (e.worm && e.autocommit_s > 0 &&
			    !(h.flags & FORMAT_FLAG_WORM) && fstat(fd, &sb) == 0 &&
			    retention_worm_due(&e, &h, false,
					       (int64_t)sb.st_mtim.tv_sec * 1000000 +
						       sb.st_mtim.tv_nsec / 1000,
					       now))
				h.flags |= FORMAT_FLAG_WORM;
			ret = retention_check(&e, &h, now, op);
		}
	}
	pol_end(&pr);
	if (ret == -EPERM)
		return n ? refuse(req, n, NULL, NULL, opname, EPERM, "retention")
			 : refuse(req, NULL, dir, name, opname, EPERM, "retention");
	return ret;
}

static int node_load_header(struct ops_node *n, int fd);

/* Makes n write-once (header flag and keep-until), through any descriptor
 * of it (reopened for writing). */
static int ret_worm_commit(struct ops_fs *fs, struct ops_node *n, int fd,
			   const struct policy_effective *e)
{
	struct format_file f;
	char proc[64];
	int wfd, ret;

	(void)fs;
	proc_path(proc, fd);
	wfd = open(proc, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (wfd < 0)
		return -errno;
	pthread_rwlock_wrlock(&n->lock);
	ret = node_load_header(n, wfd);
	if (ret == 0 && n->ff.have_header && !(n->ff.hdr.flags & FORMAT_FLAG_WORM)) {
		f = n->ff;
		f.fd = wfd;
		ret = retention_worm_commit(&f, e);
		if (ret == 0)
			n->ff.hdr = f.hdr;
	}
	pthread_rwlock_unlock(&n->lock);
	close(wfd);
	if (ret < 0)
		fuse_log(FUSE_LOG_ERR, "custodianfs: WORM commit failed: %s\n",
			 strerror(-ret));
	return ret;
}

static int nss_user(void *ctx, const char *name, uint32_t *id)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int r;

	(void)ctx;
	r = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
	if (r != 0)
		return r == ENOENT || r == ESRCH || r == EBADF || r == EPERM ? -ENOENT
									     : -r;
	if (!res)
		return -ENOENT;
	*id = pw.pw_uid;
	return 0;
}

static int nss_group(void *ctx, const char *name, uint32_t *id)
{
	struct group gr, *res = NULL;
	size_t cap = 16384;
	char *buf = NULL;
	int r;

	(void)ctx;
	/* Groups with many members need a large buffer. */
	for (;;) {
		char *nb = realloc(buf, cap);

		if (!nb) {
			free(buf);
			return -ENOMEM;
		}
		buf = nb;
		r = getgrnam_r(name, &gr, buf, cap, &res);
		if (r != ERANGE || cap >= (16u << 20))
			break;
		cap *= 4;
	}
	free(buf);
	if (r != 0)
		return r == ENOENT || r == ESRCH || r == EBADF || r == EPERM ? -ENOENT
									     : -r;
	if (!res)
		return -ENOENT;
	*id = gr.gr_gid;
	return 0;
}

int ops_policy_reload(struct ops_fs *fs, char *msg, size_t cap)
{
	struct catalog_policy cp;
	struct policy_diag diag = {0};
	struct ops_policy *np = NULL, *old;
	struct policy *p = NULL;
	int64_t cur = 0;
	int ret;

	memset(&cp, 0, sizeof(cp));
	pthread_mutex_lock(&fs->reload_lock);
	pthread_mutex_lock(&fs->pol_lock);
	if (fs->pol)
		cur = fs->pol->version;
	pthread_mutex_unlock(&fs->pol_lock);

	ret = policy_store_load(fs->store->cat, fs->store->mk, 0, &cp);
	if (ret == -ENOENT) {
		snprintf(msg, cap,
			 cur ? "no policy stored; version %" PRId64 " stays in force"
			     : "no policy stored: mode bits alone",
			 cur);
		goto out;
	}
	if (ret == -EBADMSG) {
		snprintf(msg, cap, "stored policy failed authentication");
		goto out;
	}
	if (ret < 0) {
		snprintf(msg, cap, "cannot read the stored policy: %s", strerror(-ret));
		goto out;
	}
	if (cur && cp.version == cur) {
		snprintf(msg, cap, "policy version %" PRId64 " already in force", cur);
		goto out;
	}
	ret = policy_parse(cp.text, strlen(cp.text), &p, &diag);
	if (ret < 0) {
		if (ret == -EINVAL && diag.n > 0 && !diag.msgs[0].warning)
			snprintf(msg, cap,
				 "stored policy version %" PRId64
				 " does not parse: line %u: %s",
				 cp.version, diag.msgs[0].line, diag.msgs[0].text);
		else
			snprintf(msg, cap,
				 "stored policy version %" PRId64 " does not parse: %s",
				 cp.version, strerror(-ret));
		goto out;
	}
	ret = policy_resolve(p, nss_user, nss_group, NULL, &diag);
	if (ret < 0) {
		snprintf(msg, cap,
			 "looking up the users and groups of policy version %" PRId64
			 ": %s",
			 cp.version, strerror(-ret));
		goto out;
	}
	np = calloc(1, sizeof(*np));
	if (!np) {
		ret = -ENOMEM;
		snprintf(msg, cap, "out of memory");
		goto out;
	}
	np->p = p;
	p = NULL;
	np->version = cp.version;
	atomic_init(&np->refs, 1);
	pthread_mutex_lock(&fs->pol_lock);
	old = fs->pol;
	fs->pol = np;
	pthread_mutex_unlock(&fs->pol_lock);
	atomic_store_explicit(&fs->pol_on, true, memory_order_release);
	pol_put(old);
	snprintf(msg, cap, "policy version %" PRId64 " in force (%zu sections)",
		 np->version, policy_nrules(np->p));
	ret = 0;
out:
	if (ret < 0 && ret != -ENOENT && cur) {
		size_t len = strlen(msg);

		if (len < cap)
			snprintf(msg + len, cap - len,
				 "; version %" PRId64 " stays in force", cur);
	}
	pthread_mutex_unlock(&fs->reload_lock);
	policy_free(p);
	policy_diag_free(&diag);
	if (cp.text)
		crypt_wipe(cp.text, strlen(cp.text));
	catalog_policy_clear(&cp);
	return ret;
}

/* Encrypts a name in directory dir; -EIO if the directory has no IV. */
static int dir_encrypt(const struct ops_node *dir, const char *name,
		       struct names_enc *enc)
{
	if (!S_ISDIR(dir->type))
		return -ENOTDIR;
	if (!dir->iv_ok)
		return -EIO;
	return names_encrypt(dir->ring, dir->iv, name, enc);
}

/* Owner of a new object: the caller, group from a setgid parent. */
static int new_owner(fuse_req_t req, const struct ops_node *parent, uid_t *uid,
		     gid_t *gid)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;

	if (fstatat(parent->fd, "", &st, AT_EMPTY_PATH) != 0)
		return -errno;
	*uid = ctx->uid;
	*gid = (st.st_mode & S_ISGID) ? st.st_gid : ctx->gid;
	return 0;
}

/* Removes a long name's sidecar where nothing can be done about a failure
 * but say so: a stale sidecar is hidden and harmless. */
static void sidecar_drop(int dirfd, const struct names_enc *enc)
{
	int ret = names_long_remove(dirfd, enc);

	if (ret < 0)
		fuse_log(FUSE_LOG_WARNING, "custodianfs: stale name sidecar left: %s\n",
			 strerror(-ret));
}

/* Removes a backing entry made by a failed create and its sidecar. */
static void undo_entry(const struct ops_node *dir, const struct names_enc *enc, int flags)
{
	if (unlinkat(dir->fd, enc->backing, flags) != 0 && errno != ENOENT)
		fuse_log(FUSE_LOG_WARNING,
			 "custodianfs: could not undo a failed create: %s\n",
			 strerror(errno));
	sidecar_drop(dir->fd, enc);
}

/* Loads a regular file's header state into its node once.  Caller holds
 * n->lock exclusively; fd is any readable fd of the file. */
static int node_load_header(struct ops_node *n, int fd)
{
	struct format_file f;
	int ret;

	if (n->hdr_loaded)
		return 0;
	ret = format_file_load(&f, fd, n->ring);
	if (ret < 0)
		return ret;
	n->ff = f;
	n->ff.fd = -1;
	n->hdr_loaded = true;
	return 0;
}

/* Truncates under the exclusive lock, keeping the shared header state. */
static int node_truncate(struct ops_node *n, int fd, off_t size)
{
	struct format_file f;
	int ret;

	pthread_rwlock_wrlock(&n->lock);
	ret = node_load_header(n, fd);
	if (ret < 0)
		goto out;
	f = n->ff;
	f.fd = fd;
	ret = format_file_truncate(&f, size);
	n->ff.have_header = f.have_header;
	n->ff.hdr = f.hdr;
out:
	pthread_rwlock_unlock(&n->lock);
	return ret;
}

/* ---- init / destroy ----------------------------------------------------- */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct ops_fs *fs = userdata;

	/* Large requests: libfuse 3.14 negotiates max_pages from this. */
	conn->max_write = OPS_MAX_WRITE;
	/* The kernel offers its maximum readahead and clamps whatever we ask
	 * to it, so keep the offered (largest) value. */
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* Every byte passes through the cipher: splice buys nothing. */
	conn->want &=
		~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	/* libfuse 3.14 never passes FUSE_HANDLE_KILLPRIV on to the kernel,
	 * whatever `want` says: chan.c adds it to the reply (then
	 * setattr_kill clears the bits; without it the kernel does, with a
	 * chmod sent as the writer, which perm_setattr allows). */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	if (fs->cfg.writeback && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
	/* O_TRUNC arrives with open, which keeps the header (see op_open). */
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
}

static void op_destroy(void *userdata)
{
	(void)userdata;
	/* Nodes are freed by ops_fs_destroy once the loop has ended. */
}

/* ---- names ---------------------------------------------------------------- */

/* Lookup of a subject root (backing entry sback of dir): its node, with
 * the subject's keyring.  -ENOENT if there is no such live subject (a
 * shredded one's leftovers are not shown). */
static int lookup_subject(struct ops_fs *fs, struct ops_node *dir, const char *name,
			  const uint8_t hash[CRYPT_HASH_BYTES], const char *sback,
			  struct fuse_entry_param *e)
{
	struct ops_subject *s = NULL;
	struct stat st;
	int ret;

	if (fstatat(dir->fd, sback, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOENT;
	ret = subj_open(fs, hash, &s);
	if (ret == -SUBJECTS_ESHREDDED)
		return -ENOENT;
	if (ret == -EBADMSG) {
		fuse_log(FUSE_LOG_ERR, "custodianfs: a subject's catalogue row was "
				       "changed outside custodian; refusing it\n");
		return -EIO;
	}
	if (ret < 0)
		return ret == -ENOENT ? -ENOENT : -EIO;
	ret = node_get(fs, dir, sback, name, NULL, s, e);
	subj_unref(s);
	return ret;
}

/* Lookup of a WORM candidate idle past autocommit commits it, so it is
 * write-once before anyone opens it.  Costs nothing where the policy sets
 * no autocommit (one policy walk), and reads the header only for a file
 * that has been idle that long. */
static void ret_autocommit_lookup(fuse_req_t req, struct ops_node *dir,
				  struct ops_node *n, const struct stat *st)
{
	struct ops_fs *fs = ops_fs(req);
	char dpath[PATH_MAX];
	struct policy_effective e;
	struct format_header h;
	struct pol_req pr;
	struct stat pst;
	int64_t now, mtime;
	bool have = false, on;
	int fd;

	if (!pol_begin(req, &pr)) {
		pol_end(&pr);
		return;
	}
	on = ops_node_path(fs, dir, dpath, sizeof(dpath)) >= 0 &&
	     ret_effective(&pr, dpath, &e) && e.worm && e.autocommit_s > 0;
	pol_end(&pr);
	if (!on)
		return;
	mtime = (int64_t)st->st_mtim.tv_sec * 1000000 + st->st_mtim.tv_nsec / 1000;
	now = ret_now(fs);
	if (now - mtime < e.autocommit_s * 1000000)
		return;
	fd = node_open(fs, n, O_PATH, &pst);
	if (fd < 0)
		return;
	if (ret_header(n, dir, fd, &h, &have) == 0 && have &&
	    retention_worm_due(&e, &h, false, mtime, now))
		(void)ret_worm_commit(fs, n, fd, &e);
	close(fd);
}

/* cfg.after_init, once, from the first requests after INIT (see ops.h):
 * one atomic load per request afterwards. */
static void after_init(fuse_req_t req)
{
	struct ops_fs *fs = ops_fs(req);

	if (atomic_load_explicit(&fs->init_done, memory_order_relaxed) ||
	    atomic_exchange(&fs->init_done, true))
		return;
	if (fs->cfg.after_init)
		fs->cfg.after_init(fs->cfg.after_init_arg);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct fuse_entry_param e;
	struct names_enc enc;
	struct pol_req pr;
	int ret;

	uint8_t hash[CRYPT_HASH_BYTES];
	char sback[SUBJECTS_BACKING_LEN + 1];
	int sr = 0;

	after_init(req);
	ret = subj_enter(dir);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	pol_begin(req, &pr);
	ret = pol_dir(&pr, dir, POL_TRAVERSE, "lookup", name);
	if (ret == 0)
		sr = subj_root_name(fs, pr.pol, dir, name, hash, sback);
	pol_end(&pr);
	if (ret == 0)
		ret = perm_dir(req, dir, PERM_EXEC, "lookup", name);
	if (ret < 0) {
		subj_leave(dir->subj);
		fuse_reply_err(req, -ret);
		return;
	}
	ret = -ENOENT;
	if (sr == 1)
		ret = lookup_subject(fs, dir, name, hash, sback, &e);
	if (ret == -ENOENT) {
		/* Not a subject (or none there): an ordinary entry. */
		ret = dir_encrypt(dir, name, &enc);
		if (ret == 0)
			ret = node_get(fs, dir, enc.backing, name, NULL, NULL, &e);
		if (ret == 0 && S_ISREG(e.attr.st_mode))
			ret_autocommit_lookup(req, dir, ops_node(req, e.ino), &e.attr);
	}
	subj_leave(dir->subj);
	if (ret == -ENOENT) {
		/* Negative entry: cached like a positive one, since every
		 * create goes through this mount and invalidates it. */
		memset(&e, 0, sizeof(e));
		pthread_mutex_lock(&fs->table_lock);
		e.entry_timeout = entry_ttl(fs, node_chain_open_locked(fs, dir),
					    perm_open_dir(dir->perm.mode), 0);
		pthread_mutex_unlock(&fs->table_lock);
		fuse_reply_entry(req, &e);
		return;
	}
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	if (fuse_reply_entry(req, &e) != 0)
		node_unref(fs, ops_node(req, e.ino), 1);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	node_unref(ops_fs(req), ops_node(req, ino), nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dead = NULL;

	pthread_mutex_lock(&fs->table_lock);
	for (size_t i = 0; i < count; i++) {
		struct ops_node *n = ops_node(req, forgets[i].ino);

		if (n != &fs->root && forgets[i].nlookup)
			node_unref_locked(fs, n, forgets[i].nlookup, &dead);
	}
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
	fuse_reply_none(req);
}

/* Replies with the new entry, or undoes the lookup reference. */
static void reply_entry(fuse_req_t req, struct fuse_entry_param *e)
{
	if (fuse_reply_entry(req, e) != 0)
		node_unref(ops_fs(req), ops_node(req, e->ino), 1);
}

/* The policy check of one operation (POLICY_*) in directory dir on entry
 * name (NULL: dir itself), as its own request scope; a denial is recorded. */
static int check_dir_op(fuse_req_t req, struct ops_node *dir, int op, const char *opname,
			const char *name)
{
	struct pol_req pr;
	int ret;

	pol_begin(req, &pr);
	ret = pol_dir(&pr, dir, op, opname, name);
	pol_end(&pr);
	return ret;
}

/* Is `name` in dir an existing subject root (so no ordinary entry may
 * take the name)? */
static bool subj_root_taken(fuse_req_t req, struct ops_node *dir, const char *name)
{
	uint8_t hash[CRYPT_HASH_BYTES];
	char sback[SUBJECTS_BACKING_LEN + 1];

	return subj_root_entry(req, dir, name, hash, sback, NULL) == 1;
}

/* May an operation make entry `name` in dir?  The policy (a denial is
 * recorded), then -ENOSPC while the disk is full (the audit reserve is in
 * use), then, for an ordinary entry (not mkdir, which makes subjects
 * itself), -EEXIST if a subject root has the name. */
static int check_create(fuse_req_t req, struct ops_node *dir, const char *opname,
			const char *name, bool ordinary)
{
	int ret = check_dir_op(req, dir, POLICY_CREATE, opname, name);

	if (ret == 0)
		ret = perm_dir(req, dir, PERM_WRITE | PERM_EXEC, opname, name);
	if (ret < 0)
		return ret;
	if (disk_full(ops_fs(req)))
		return -ENOSPC;
	if (ordinary && subj_root_taken(req, dir, name))
		return -EEXIST;
	return 0;
}

/* A new record in dir: its keep-until (birth + retain_min of the rule in
 * force) goes into its authenticated header. */
static int ret_new_record(fuse_req_t req, struct ops_node *dir, struct format_file *f)
{
	char dpath[PATH_MAX];
	struct policy_effective e;
	struct pol_req pr;
	int64_t ku;
	int ret = 0;

	subj_touch(dir->subj);
	if (!pol_begin(req, &pr) || ops_node_path(pr.fs, dir, dpath, sizeof(dpath)) < 0 ||
	    !ret_effective(&pr, dpath, &e)) {
		pol_end(&pr);
		return 0;
	}
	pol_end(&pr);
	ku = retention_keep_until(&e, f->hdr.birth_us);
	if (ku > 0) {
		f->hdr.keep_until_us = ku;
		ret = format_file_write_header(f);
	}
	return ret;
}

static void do_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	char apath[PATH_MAX], detail[64];
	struct fuse_entry_param e;
	struct names_enc enc;
	bool made = false, recorded = false;
	const char *ap;
	uid_t uid;
	gid_t gid;
	int fd = -1, ret;

	ret = check_create(req, dir, "mknod", name, true);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	snprintf(detail, sizeof(detail), "mknod mode=%04o type=%s",
		 (unsigned)(mode & 07777),
		 S_ISREG(mode)    ? "file"
		 : S_ISFIFO(mode) ? "fifo"
		 : S_ISSOCK(mode) ? "socket"
				  : "device");
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = new_owner(req, dir, &uid, &gid);
	if (ret < 0)
		goto out;
	ret = names_long_store(dir->fd, &enc);
	if (ret < 0)
		goto out;
	if (S_ISREG(mode)) {
		struct format_file f;

		fd = openat(dir->fd, enc.backing,
			    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    mode & 07777);
		if (fd < 0) {
			ret = -errno;
			goto out;
		}
		made = true;
		if (fchown(fd, uid, gid) != 0 ||
		    ((mode & (S_ISUID | S_ISGID)) && fchmod(fd, mode & 07777) != 0)) {
			ret = -errno;
			goto out;
		}
		ret = format_file_create(&f, fd, dir->ring, clock_now_us());
		if (ret == 0)
			ret = ret_new_record(req, dir, &f);
		if (ret < 0)
			goto out;
	} else {
		if (mknodat(dir->fd, enc.backing, mode, rdev) != 0) {
			ret = -errno;
			goto out;
		}
		made = true;
		if (fchownat(dir->fd, enc.backing, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
			ret = -errno;
			goto out;
		}
	}
	recorded = true;
	ret = audit_change(req, AUDIT_OP_CREATE, 0, dir->ring, ap, NULL, 0, detail, NULL);
	if (ret < 0)
		goto out;
	ret = node_get(fs, dir, enc.backing, name, NULL, NULL, &e);
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0) {
		if (!recorded)
			(void)audit_change(req, AUDIT_OP_CREATE, ret, dir->ring, ap, NULL,
					   0, detail, NULL);
		if (made)
			undo_entry(dir, &enc, 0);
		else if (ret != -EEXIST)
			sidecar_drop(dir->fd, &enc);
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &e);
}

/* The daemon's name as an operator in the erasure ledger, or a fallback
 * when the id appears in it (the ledger must not name the subject). */
static int destroy_key_as(struct ops_fs *fs, const char *id, const char *reason,
			  const char *operator_, struct subjects_certificate *cert)
{
	static const char *const reasons[] = {"subject removed", "removed", "R"};
	int ret = subjects_destroy_key(fs->store, fs->audit, id, reason, operator_, NULL,
				       cert);

	for (size_t i = 0; i < ARRAY_LEN(reasons) * 2 && ret == -EINVAL; i++)
		ret = subjects_destroy_key(fs->store, fs->audit, id, reasons[i / 2],
					   i % 2 ? "-" : operator_, NULL, cert);
	return ret;
}

/* Who a request's caller is, for the erasure ledger. */
static void caller_name(fuse_req_t req, char out[SUBJECTS_OPERATOR_MAX])
{
	uid_t uid = fuse_req_ctx(req)->uid;
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res)
		snprintf(out, SUBJECTS_OPERATOR_MAX, "%.40s (uid %u)", pw.pw_name,
			 (unsigned)uid);
	else
		snprintf(out, SUBJECTS_OPERATOR_MAX, "uid %u", (unsigned)uid);
}

/*
 * mkdir of a directory the policy marks as a subject root: a new subject
 * (its key, its catalogue row, its .S directory with a fresh IV), owned by
 * the caller.  Recorded with the subject's hash, the path sealed with the
 * subject's own keys (the path holds the id).
 */
static int mkdir_subject(fuse_req_t req, struct ops_node *dir, const char *name,
			 mode_t mode, const uint8_t hash[CRYPT_HASH_BYTES],
			 const char *sback, const char *detail,
			 struct fuse_entry_param *e)
{
	struct ops_fs *fs = ops_fs(req);
	char parent[PATH_MAX], apath[PATH_MAX];
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct keyring *ring = NULL;
	struct ops_subject *s = NULL;
	struct names_enc enc;
	bool made = false;
	const char *ap;
	uid_t uid;
	gid_t gid;
	int ret;

	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	/* An ordinary entry of that name (made before the policy said so). */
	ret = dir_encrypt(dir, name, &enc);
	if (ret == 0 && faccessat(dir->fd, enc.backing, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		ret = -EEXIST;
	if (ret == 0)
		ret = new_owner(req, dir, &uid, &gid);
	if (ret == 0 && ops_node_path(fs, dir, parent, sizeof(parent)) < 0)
		ret = -ENAMETOOLONG;
	if (ret == 0)
		ret = subjects_create(fs->store, parent, dir->fd, name, mode, &ring, iv);
	if (ret < 0) {
		/* No subject key to seal the path with: the hash says which. */
		struct audit_event ev = {
			.op = AUDIT_OP_MKDIR,
			.outcome = -ret,
			.subject = hash,
			.detail = detail,
		};

		(void)audit_req(req, &ev, NULL);
		goto out;
	}
	made = true;
	if (fchownat(dir->fd, sback, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
		ret = -errno;
		goto out;
	}
	ret = subj_insert(fs, hash, ring, false, &s);
	ring = NULL;
	if (ret < 0)
		goto out;
	pthread_rwlock_rdlock(&s->use);
	tl_subj = s;
	ret = audit_change(req, AUDIT_OP_MKDIR, 0, s->ring, ap, NULL, 0, detail, NULL);
	if (ret == 0)
		ret = node_get(fs, dir, sback, name, iv, s, e);
	tl_subj = NULL;
	pthread_rwlock_unlock(&s->use);
out:
	if (ret < 0 && made) {
		struct subjects_certificate cert;

		if (destroy_key_as(fs, name, "mkdir failed", "custodianfs", &cert) < 0 ||
		    subjects_remove_tree(fs->store, hash, dir->fd) < 0)
			fuse_log(FUSE_LOG_ERR,
				 "custodianfs: a subject whose mkdir failed "
				 "could not be removed again\n");
		if (s)
			subj_kill(s);
	}
	subj_unref(s);
	keys_ring_free(ring);
	crypt_wipe(iv, sizeof(iv));
	crypt_wipe(parent, sizeof(parent));
	return ret;
}

static void do_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	uint8_t iv[CRYPT_DIRIV_BYTES];
	char apath[PATH_MAX], detail[32];
	struct fuse_entry_param e;
	struct names_enc enc;
	bool made = false, recorded = false;
	const char *ap;
	uid_t uid;
	gid_t gid;
	int dfd = -1, ivfd, ret;

	ret = check_create(req, dir, "mkdir", name, false);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	snprintf(detail, sizeof(detail), "mode=%04o", (unsigned)(mode & 07777));
	{
		uint8_t hash[CRYPT_HASH_BYTES];
		char sback[SUBJECTS_BACKING_LEN + 1];
		struct pol_req pr;
		int sr;

		pol_begin(req, &pr);
		sr = subj_root_name(fs, pr.pol, dir, name, hash, sback);
		pol_end(&pr);
		if (sr == 1) {
			ret = mkdir_subject(req, dir, name, mode, hash, sback, detail,
					    &e);
			if (ret < 0)
				fuse_reply_err(req, -ret);
			else
				reply_entry(req, &e);
			return;
		}
	}
	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = new_owner(req, dir, &uid, &gid);
	if (ret < 0)
		goto out;
	ret = names_long_store(dir->fd, &enc);
	if (ret < 0)
		goto out;
	if (mkdirat(dir->fd, enc.backing, mode & 07777) != 0) {
		ret = -errno;
		goto out;
	}
	made = true;
	dfd = openat(dir->fd, enc.backing, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		ret = -errno;
		goto out;
	}
	/* The IV reaches the disk a few ms later, and before any fsync in
	 * this mount returns (durable.h): not a device flush per mkdir. */
	ret = names_diriv_create_unsynced(dfd, iv, &ivfd);
	if (ret == 0)
		ret = durable_add(fs->durable, ivfd);
	if (ret < 0)
		goto out;
	if (fchownat(dfd, "", uid, gid, AT_EMPTY_PATH) != 0) {
		ret = -errno;
		goto out;
	}
	recorded = true;
	ret = audit_change(req, AUDIT_OP_MKDIR, 0, dir->ring, ap, NULL, 0, detail, NULL);
	if (ret < 0)
		goto out;
	ret = node_get(fs, dir, enc.backing, name, iv, NULL, &e);
out:
	crypt_wipe(iv, sizeof(iv));
	if (ret < 0 && !recorded)
		(void)audit_change(req, AUDIT_OP_MKDIR, ret, dir->ring, ap, NULL, 0,
				   detail, NULL);
	if (dfd >= 0) {
		if (ret < 0)
			(void)unlinkat(dfd, NAMES_DIRIV_FILE, 0);
		close(dfd);
	}
	if (ret < 0) {
		if (made)
			undo_entry(dir, &enc, AT_REMOVEDIR);
		else if (ret != -EEXIST)
			sidecar_drop(dir->fd, &enc);
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &e);
}

static void do_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	char stored[LINKTARGET_STORED_MAX];
	char apath[PATH_MAX];
	struct fuse_entry_param e;
	struct names_enc enc;
	bool made = false, recorded = false;
	const char *ap;
	uid_t uid;
	gid_t gid;
	int ret;

	ret = check_create(req, dir, "symlink", name, true);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	/* The target is text the caller chose, possibly a name: it is sealed
	 * like a path (path2). */
	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = new_owner(req, dir, &uid, &gid);
	if (ret < 0)
		goto out;
	ret = linktarget_encrypt(dir->ring, link, stored, sizeof(stored));
	if (ret < 0)
		goto out;
	ret = names_long_store(dir->fd, &enc);
	if (ret < 0)
		goto out;
	if (symlinkat(stored, dir->fd, enc.backing) != 0) {
		ret = -errno;
		goto out;
	}
	made = true;
	if (fchownat(dir->fd, enc.backing, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
		ret = -errno;
		goto out;
	}
	recorded = true;
	ret = audit_change(req, AUDIT_OP_SYMLINK, 0, dir->ring, ap, link, 0, NULL, NULL);
	if (ret < 0)
		goto out;
	ret = node_get(fs, dir, enc.backing, name, NULL, NULL, &e);
out:
	if (ret < 0) {
		if (!recorded)
			(void)audit_change(req, AUDIT_OP_SYMLINK, ret, dir->ring, ap,
					   link, 0, NULL, NULL);
		if (made)
			undo_entry(dir, &enc, 0);
		else if (ret != -EEXIST)
			sidecar_drop(dir->fd, &enc);
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &e);
}

/* A hard link must not let a record escape its retention rule: refused
 * (EPERM, recorded) between directories whose retention differs. */
static int check_link_rules(fuse_req_t req, struct ops_node *n, struct ops_node *dir,
			    const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	char a[PATH_MAX], b[PATH_MAX];
	struct policy_effective ea, eb;
	struct pol_req pr;
	bool differ = false;
	int len;

	if (!pol_begin(req, &pr)) {
		pol_end(&pr);
		return 0;
	}
	pthread_mutex_lock(&fs->table_lock);
	len = node_path_locked(fs, n, true, a, sizeof(a));
	pthread_mutex_unlock(&fs->table_lock);
	if (len >= 0 && ops_node_path(fs, dir, b, sizeof(b)) >= 0 &&
	    ret_effective(&pr, a, &ea) && ret_effective(&pr, b, &eb))
		differ = ea.retain_min_s != eb.retain_min_s ||
			 ea.retain_max_s != eb.retain_max_s || ea.worm != eb.worm ||
			 ea.retain_from != eb.retain_from ||
			 ea.autocommit_s != eb.autocommit_s;
	pol_end(&pr);
	if (!differ)
		return 0;
	return refuse(req, NULL, dir, name, "link", EPERM, "retention rules differ");
}

static void do_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *n = ops_node(req, ino);
	struct ops_node *dir = ops_node(req, parent);
	char backing[NAMES_BACKING_MAX + 1];
	struct ops_node *srcdir = NULL;
	char apath[PATH_MAX], apath2[PATH_MAX];
	struct fuse_entry_param e;
	struct names_enc enc;
	struct pol_req pr;
	struct stat st;
	bool made = false, named = false, recorded = false;
	const char *ap, *ap2;
	int ret;

	/* A second name must not widen access: the file's own directory has
	 * to let the caller read and write it, and the new one create. */
	pol_begin(req, &pr);
	ret = pol_dir(&pr, dir, POLICY_CREATE, "link", name);
	if (ret == 0)
		ret = pol_node(&pr, n, POLICY_READ, "link");
	if (ret == 0)
		ret = pol_node(&pr, n, POLICY_WRITE, "link");
	pol_end(&pr);
	if (ret == 0)
		ret = perm_dir(req, dir, PERM_WRITE | PERM_EXEC, "link", name);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	ret = check_link_rules(req, n, dir, name);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	if (subj_root_taken(req, dir, name)) {
		fuse_reply_err(req, EEXIST);
		return;
	}
	ap = audit_node_path(fs, n, apath, sizeof(apath));
	ap2 = audit_child_path(fs, dir, name, apath2, sizeof(apath2));
	/* Different keyrings (subjects) cannot share an inode's content. */
	if (n->ring != dir->ring) {
		ret = -EXDEV;
		goto out;
	}
	if (S_ISDIR(n->type)) {
		ret = -EPERM;
		goto out;
	}
	ret = node_find(fs, n, &srcdir, backing, &st);
	if (ret < 0)
		goto out;
	ret = perm_link(req, n, &st);
	if (ret < 0) {
		recorded = true; /* by perm_link */
		goto out;
	}
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	named = true;
	ret = names_long_store(dir->fd, &enc);
	if (ret < 0)
		goto out;
	if (linkat(srcdir->fd, backing, dir->fd, enc.backing, 0) != 0) {
		ret = -errno;
		goto out;
	}
	made = true;
	recorded = true;
	ret = audit_change(req, AUDIT_OP_LINK, 0, dir->ring, ap, ap2, 0, NULL, NULL);
	if (ret < 0)
		goto out;
	ret = node_get(fs, dir, enc.backing, name, NULL, NULL, &e);
out:
	if (srcdir)
		node_unref(fs, srcdir, 1);
	if (ret < 0) {
		if (!recorded)
			(void)audit_change(req, AUDIT_OP_LINK, ret, dir->ring, ap, ap2, 0,
					   NULL, NULL);
		if (made)
			undo_entry(dir, &enc, 0);
		else if (named && ret != -EEXIST)
			sidecar_drop(dir->fd, &enc);
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &e);
}

/* Forgets the name (dir, backing) of whatever node the backing object st
 * is, once that entry is gone. */
static void forget_name(struct ops_fs *fs, struct ops_node *dir, const char *backing,
			const struct stat *st)
{
	struct ops_node *n, *dead = NULL;

	pthread_mutex_lock(&fs->table_lock);
	n = entry_node_locked(fs, st);
	if (n)
		node_name_drop_locked(fs, n, dir, backing, &dead);
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
}

/*
 * Pins the inode of entry `backing` of dir with an O_PATH descriptor while
 * it is removed or replaced: a file's node holds no descriptor, so without
 * the pin its inode could be freed and its number given to a file another
 * thread creates before the node has let go of the old name, which would
 * then find the stale node (and its header state).  -errno (-ENOENT if
 * there is no such entry, -EMFILE if the daemon is out of descriptors).
 */
static int pin_entry(struct ops_node *dir, const char *backing, int *pin, struct stat *st)
{
	*pin = openat(dir->fd, backing, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (*pin < 0)
		return -errno;
	if (fstat(*pin, st) != 0) {
		int err = errno;

		close(*pin);
		*pin = -1;
		return -err;
	}
	return 0;
}

/*
 * Pins closed after the reply.  Closing a removed entry's pin frees its
 * inode, and on a disk mounted with discard that includes a synchronous
 * discard: done after the reply, the caller's next request runs meanwhile
 * (see do_unlink).  But while a dentry of the backing directory is being
 * freed, the kernel's rmdir of that directory spins in
 * shrink_dcache_parent until it is gone: perf of rm -rf of the bench tree
 * showed d_walk at 30 % of the daemon's samples and the daemon's CPU time
 * doubled (0.7 -> 1.5 s).  So the closes still to come are counted per
 * backing directory and rmdir (or a rename over a directory) sleeps until
 * the directory's count is zero, UNPIN_WAIT_MS at most (slots are shared
 * by inode number modulo OPS_UNPIN_SLOTS, so an unrelated directory's
 * removals could keep one busy; after the bound the kernel spins as
 * before).
 */
#define UNPIN_WAIT_MS 1000

static unsigned unpin_slot(ino_t dir_ino)
{
	return (unsigned)(dir_ino % OPS_UNPIN_SLOTS);
}

/* Before the reply: pin (>= 0) of an entry removed from backing directory
 * dir_ino will be closed by unpin_close after it. */
static void unpin_defer(struct ops_fs *fs, ino_t dir_ino, int pin)
{
	if (pin < 0)
		return;
	pthread_mutex_lock(&fs->unpin_lock);
	fs->unpins[unpin_slot(dir_ino)]++;
	pthread_mutex_unlock(&fs->unpin_lock);
}

/* After the reply: closes a pin passed to unpin_defer. */
static void unpin_close(struct ops_fs *fs, ino_t dir_ino, int pin)
{
	unsigned *n;

	if (pin < 0)
		return;
	close(pin);
	pthread_mutex_lock(&fs->unpin_lock);
	n = &fs->unpins[unpin_slot(dir_ino)];
	assert(*n > 0);
	if (--*n == 0)
		pthread_cond_broadcast(&fs->unpin_done);
	pthread_mutex_unlock(&fs->unpin_lock);
}

/* Before the backing directory dir_ino is removed: waits for the pins of
 * entries removed from it (bounded, see above). */
static void unpin_wait(struct ops_fs *fs, ino_t dir_ino)
{
	unsigned *n = &fs->unpins[unpin_slot(dir_ino)];
	struct timespec dl;

	clock_deadline_ms(&dl, UNPIN_WAIT_MS);
	pthread_mutex_lock(&fs->unpin_lock);
	while (*n > 0 && pthread_cond_clockwait(&fs->unpin_done, &fs->unpin_lock,
						CLOCK_MONOTONIC, &dl) == 0)
		;
	pthread_mutex_unlock(&fs->unpin_lock);
}

static void do_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	char apath[PATH_MAX];
	struct names_enc enc;
	struct stat st;
	const char *ap;
	bool recorded = false;
	uint64_t seq = 0;
	int pin = -1, ret;

	ret = check_dir_op(req, dir, POLICY_DELETE, "unlink", name);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	{
		uint8_t hash[CRYPT_HASH_BYTES];
		char sback[SUBJECTS_BACKING_LEN + 1];

		if (subj_root_entry(req, dir, name, hash, sback, NULL) == 1) {
			fuse_reply_err(req, EISDIR);
			return;
		}
	}
	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = pin_entry(dir, enc.backing, &pin, &st);
	if (ret < 0)
		goto out;
	recorded = true; /* a refusal is recorded by check_record, perm_remove */
	ret = perm_remove(req, dir, name, &st, "unlink");
	if (ret == 0)
		ret = check_record(req, dir, name, NULL, pin, st.st_mode & S_IFMT,
				   RETENTION_UNLINK, "unlink");
	if (ret < 0)
		goto out;
	ret = audit_change(req, AUDIT_OP_UNLINK, 0, dir->ring, ap, NULL, 0, NULL, &seq);
	if (ret < 0)
		goto out;
	if (unlinkat(dir->fd, enc.backing, 0) != 0) {
		ret = -errno;
		goto out;
	}
	sidecar_drop(dir->fd, &enc);
	forget_name(fs, dir, enc.backing, &st);
out:
	audit_change_end(req, AUDIT_OP_UNLINK, ret, recorded, seq, dir->ring, ap, NULL, 0,
			 NULL);
	/* The pin is often the inode's last reference: closing it frees the
	 * file's blocks (and, on a disk mounted with discard, discards them,
	 * synchronously).  After the reply, so the caller's next request runs
	 * meanwhile on another thread: rm -rf no longer waits for it. */
	unpin_defer(fs, dir->ino, pin);
	fuse_reply_err(req, -ret);
	unpin_close(fs, dir->ino, pin);
	if (ret == 0)
		reserve_check(fs);
}

/* Writes back a directory IV removed by an rmdir that then failed. */
static void restore_diriv(int dfd, const uint8_t iv[CRYPT_DIRIV_BYTES])
{
	int fd = openat(dfd, NAMES_DIRIV_FILE, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			0444);

	if (fd < 0 ||
	    sys_pwrite_full(fd, iv, CRYPT_DIRIV_BYTES, 0) != CRYPT_DIRIV_BYTES ||
	    sys.fsync(fd) != 0)
		fuse_log(FUSE_LOG_ERR,
			 "custodianfs: could not restore a directory IV after a failed "
			 "rmdir; its names are now unreadable\n");
	if (fd >= 0)
		close(fd);
}

/* A backing directory about to be removed or replaced: visibly empty,
 * its store entries stripped, its IV kept to put back if the removal
 * then fails. */
struct dying_dir {
	DIR *dp;                       /* open backing directory */
	uint8_t iv[CRYPT_DIRIV_BYTES]; /* its name IV (valid if have_iv) */
	bool have_iv;                  /* iv was read */
	bool iv_gone;                  /* the IV file has been unlinked */
	int iv_pin;                    /* O_PATH descriptor of the unlinked IV
					  file, -1 if none: its block is freed
					  (and discarded) when this closes, after
					  the reply (dying_dir_unpin) */
};

#define DYING_DIR_INIT                                                                   \
	{                                                                                \
		.dp = NULL, .iv_pin = -1                                                 \
	}

/* Opens backing entry `backing` of dirfd; -ENOTEMPTY unless it holds
 * nothing but the store's own entries (an entry whose name does not
 * decrypt still holds data, so it counts).  Then strips those entries,
 * the IV last, so the directory stays readable as long as possible. */
static int dying_dir_strip(int dirfd, const char *backing, struct dying_dir *dd)
{
	struct dirent *de;
	int dfd;

	memset(dd, 0, sizeof(*dd));
	dd->iv_pin = -1;
	dfd = openat(dirfd, backing, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	dd->dp = fdopendir(dfd);
	if (!dd->dp) {
		int err = errno;

		close(dfd);
		return -err;
	}
	errno = 0;
	while ((de = readdir(dd->dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (!names_reserved(de->d_name))
			return -ENOTEMPTY;
	}
	if (errno != 0)
		return -errno;
	dd->have_iv = names_diriv_load(dfd, dd->iv) == 0;
	rewinddir(dd->dp);
	while ((de = readdir(dd->dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, NAMES_DIRIV_FILE) == 0)
			continue;
		(void)unlinkat(dfd, de->d_name, 0);
	}
	dd->iv_pin = openat(dfd, NAMES_DIRIV_FILE, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (unlinkat(dfd, NAMES_DIRIV_FILE, 0) == 0)
		dd->iv_gone = true;
	return 0;
}

/* Lets the removed IV file's inode go: called after the reply, so freeing
 * its block does not hold up the caller (see do_unlink). */
static void dying_dir_unpin(struct dying_dir *dd)
{
	if (dd->iv_pin >= 0)
		close(dd->iv_pin);
	dd->iv_pin = -1;
}

/* Ends a dying_dir: if the directory survived (failed is true), its IV
 * goes back so its (empty) listing still works. */
static void dying_dir_end(struct dying_dir *dd, bool failed)
{
	if (failed && dd->iv_gone && dd->have_iv && dd->dp)
		restore_diriv(dirfd(dd->dp), dd->iv);
	crypt_wipe(dd->iv, sizeof(dd->iv));
	if (dd->dp)
		closedir(dd->dp);
	dd->dp = NULL;
}

/*
 * rmdir of a subject root: allowed when it is empty and not on legal hold
 * (EPERM, recorded); the subject is erased like a shred (key destroyed,
 * ledger entry, audit record) and its directory removed.
 */
static int rmdir_subject(fuse_req_t req, struct ops_node *dir, const char *name,
			 const uint8_t hash[CRYPT_HASH_BYTES], const char *sback)
{
	struct ops_fs *fs = ops_fs(req);
	struct subjects_certificate cert;
	struct dying_dir dd = DYING_DIR_INIT;
	char who[SUBJECTS_OPERATOR_MAX], reason[64], apath[PATH_MAX];
	struct ops_subject *s = NULL;
	struct pol_req pr;
	struct stat st;
	bool have_st = false, destroyed = false;
	const char *ap;
	uint64_t seq = 0;
	int ret;

	ret = subj_open(fs, hash, &s);
	if (ret < 0)
		return ret == -ENOENT || ret == -SUBJECTS_ESHREDDED ? -ENOENT : -EIO;
	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	pthread_rwlock_rdlock(&s->use);
	if (atomic_load(&s->dead)) {
		ret = -ENOENT;
		goto unlock;
	}
	tl_subj = s;
	atomic_store(&s->flags_us, 0); /* a hold must be seen now */
	if (subj_flags(s) & SUBJECTS_HELD) {
		pol_begin(req, &pr);
		pr.ring = s->ring;
		ret = deny_why(&pr, "rmdir", ap, EPERM, "legal hold");
		pol_end(&pr);
		goto unlock;
	}
	ret = dying_dir_strip(dir->fd, sback, &dd);
	if (ret < 0)
		goto unlock;
	have_st = fstat(dirfd(dd.dp), &st) == 0;
	ret = audit_change(req, AUDIT_OP_RMDIR, 0, s->ring, ap, NULL, 0,
			   "empty subject: erased", &seq);
	if (ret < 0)
		goto unlock;
	caller_name(req, who);
	snprintf(reason, sizeof(reason), "rmdir by uid %u",
		 (unsigned)fuse_req_ctx(req)->uid);
	ret = destroy_key_as(fs, name, reason, who, &cert);
	if (ret < 0)
		audit_not_done(req, AUDIT_OP_RMDIR, ret, s->ring, ap, NULL, seq);
	else
		destroyed = true;
unlock:
	tl_subj = NULL;
	pthread_rwlock_unlock(&s->use);
	if (destroyed) {
		subj_kill(s);
		/* The key is gone whatever happens now: an entry left over is
		 * unreadable and never listed.  Removals inside it may still
		 * be closing their pins, as in do_rmdir. */
		if (have_st)
			unpin_wait(fs, st.st_ino);
		if (unlinkat(dir->fd, sback, AT_REMOVEDIR) != 0)
			fuse_log(FUSE_LOG_WARNING,
				 "custodianfs: an erased subject's empty directory "
				 "could not be removed: %s\n",
				 strerror(errno));
		else if (have_st)
			forget_name(fs, dir, sback, &st);
		(void)subj_detach_nodes(fs, s, NULL, NULL, NULL, NULL);
		reserve_check(fs);
	}
	dying_dir_end(&dd, !destroyed);
	dying_dir_unpin(&dd);
	subj_unref(s);
	return destroyed ? 0 : ret;
}

static void do_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct dying_dir dd = DYING_DIR_INIT;
	char apath[PATH_MAX];
	struct names_enc enc;
	struct stat st;
	bool have_st = false, recorded = false;
	const char *ap;
	uint64_t seq = 0;
	int ret;

	ret = check_dir_op(req, dir, POLICY_DELETE, "rmdir", name);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	{
		uint8_t hash[CRYPT_HASH_BYTES];
		char sback[SUBJECTS_BACKING_LEN + 1];

		if (subj_root_entry(req, dir, name, hash, sback, NULL) == 1) {
			fuse_reply_err(req, -rmdir_subject(req, dir, name, hash, sback));
			return;
		}
	}
	/* A held directory stays (subject or directory hold); an empty one
	 * holds no record, so retention has nothing more to say. */
	ret = check_record(req, dir, name, NULL, -1, S_IFDIR, RETENTION_UNLINK, "rmdir");
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	recorded = true; /* a refusal is recorded by perm_remove */
	if (fuse_req_ctx(req)->uid != 0) {
		struct stat vst;

		if (fstatat(dir->fd, enc.backing, &vst, AT_SYMLINK_NOFOLLOW) != 0) {
			ret = -errno;
			recorded = false;
			goto out;
		}
		ret = perm_remove(req, dir, name, &vst, "rmdir");
		if (ret < 0)
			goto out;
	}
	ret = audit_change(req, AUDIT_OP_RMDIR, 0, dir->ring, ap, NULL, 0, NULL, &seq);
	if (ret < 0)
		goto out;
	ret = dying_dir_strip(dir->fd, enc.backing, &dd);
	if (ret < 0)
		goto out;
	have_st = fstat(dirfd(dd.dp), &st) == 0;
	if (have_st)
		unpin_wait(fs, st.st_ino);
	if (unlinkat(dir->fd, enc.backing, AT_REMOVEDIR) != 0) {
		ret = -errno;
		goto out;
	}
	sidecar_drop(dir->fd, &enc);
	if (have_st)
		forget_name(fs, dir, enc.backing, &st);
out:
	dying_dir_end(&dd, ret < 0);
	audit_change_end(req, AUDIT_OP_RMDIR, ret, recorded, seq, dir->ring, ap, NULL, 0,
			 NULL);
	if (ret == 0)
		reserve_check(fs);
	fuse_reply_err(req, -ret);
	dying_dir_unpin(&dd);
}

/* After a rename of (dir, oldb) to (ndir, newb): the moved node takes the
 * new name, a replaced one loses it; with exchange, each takes the
 * other's. */
static void rename_nodes(struct ops_fs *fs, struct ops_node *dir, const char *oldb,
			 const char *name, struct ops_node *ndir, const char *newb,
			 const char *newname, const struct stat *src,
			 const struct stat *dst, bool exchange)
{
	struct ops_node *s = NULL, *d = NULL, *dead = NULL;

	pthread_mutex_lock(&fs->table_lock);
	if (src)
		s = entry_node_locked(fs, src);
	if (dst)
		d = entry_node_locked(fs, dst);
	if (d && d != s) {
		node_name_drop_locked(fs, d, ndir, newb, &dead);
		if (exchange)
			node_name_add_locked(fs, d, dir, name, oldb, &dead);
	}
	if (s && s != d) {
		node_name_add_locked(fs, s, ndir, newname, newb, &dead);
		if (!(dir == ndir && strcmp(oldb, newb) == 0))
			node_name_drop_locked(fs, s, dir, oldb, &dead);
	}
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
}

static void do_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct ops_node *ndir = ops_node(req, newparent);
	struct names_enc oldenc, newenc;
	struct dying_dir dd = DYING_DIR_INIT;
	bool exchange = flags & RENAME_EXCHANGE;
	struct stat st, srcst;
	bool have_src, have_dst, denied = false, recorded = false;
	uint64_t seq = 0;
	char apath[PATH_MAX], apath2[PATH_MAX], detail[32];
	const char *ap, *ap2;
	struct pol_req pr;
	int pin = -1, spin = -1, ret;

	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	ap2 = audit_child_path(fs, ndir, newname, apath2, sizeof(apath2));
	snprintf(detail, sizeof(detail), "%s",
		 exchange                     ? "exchange"
		 : (flags & RENAME_NOREPLACE) ? "noreplace"
					      : "");
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		ret = -EINVAL;
		goto out;
	}
	if (dir->ring != ndir->ring || dir->subj != ndir->subj) {
		ret = -EXDEV;
		goto out;
	}
	{
		/* A subject root keeps its id (its key is bound to the id's
		 * hash): moving one, or over one, is EXDEV, so mv copies into
		 * a new subject and removes the old one. */
		uint8_t hash[CRYPT_HASH_BYTES];
		char sback[SUBJECTS_BACKING_LEN + 1];

		if (subj_root_entry(req, dir, name, hash, sback, NULL) == 1 ||
		    subj_root_entry(req, ndir, newname, hash, sback, NULL) == 1) {
			/* Its path holds the id: not sealed with the volume
			 * keys, which outlive the subject. */
			ap = ap2 = NULL;
			ret = -EXDEV;
			goto out;
		}
	}
	ret = dir_encrypt(dir, name, &oldenc);
	if (ret == 0)
		ret = dir_encrypt(ndir, newname, &newenc);
	if (ret < 0)
		goto out;
	have_src = pin_entry(dir, oldenc.backing, &spin, &srcst) == 0;
	/* A replaced entry is pinned until its node lets go of the name (see
	 * pin_entry). */
	ret = pin_entry(ndir, newenc.backing, &pin, &st);
	if (ret < 0 && ret != -ENOENT)
		goto out;
	have_dst = ret == 0;
	/* Leaving needs delete, arriving create; replacing an entry is a
	 * write of it; an exchange leaves and arrives on both sides. */
	pol_begin(req, &pr);
	ret = pol_dir(&pr, dir, POLICY_DELETE, "rename", name);
	if (ret == 0)
		ret = pol_dir(&pr, ndir, POLICY_CREATE, "rename", newname);
	if (ret == 0 && have_dst && !exchange)
		ret = pol_dir(&pr, ndir, POLICY_WRITE, "rename", newname);
	if (ret == 0 && exchange)
		ret = pol_dir(&pr, ndir, POLICY_DELETE, "rename", newname);
	if (ret == 0 && exchange)
		ret = pol_dir(&pr, dir, POLICY_CREATE, "rename", name);
	pol_end(&pr);
	if (ret == 0 && have_src)
		ret = perm_rename(req, dir, name, &srcst, ndir, newname,
				  have_dst ? &st : NULL);
	/* Legal holds and retention: the source goes away from its name (also
	 * within one directory), a replaced target is destroyed. */
	if (ret == 0 && have_src)
		ret = check_record(req, dir, name, NULL, spin, srcst.st_mode & S_IFMT,
				   RETENTION_RENAME_AWAY, "rename");
	if (ret == 0 && have_dst && !(have_src && same_inode_st(&srcst, &st)))
		ret = check_record(req, ndir, newname, NULL, pin, st.st_mode & S_IFMT,
				   exchange ? RETENTION_RENAME_AWAY : RETENTION_UNLINK,
				   "rename");
	denied = ret < 0;
	if (ret < 0)
		goto out;
	recorded = true;
	ret = audit_change(req, AUDIT_OP_RENAME, 0, dir->ring, ap, ap2, flags,
			   detail[0] ? detail : NULL, &seq);
	if (ret < 0)
		goto out;
	/* Exchange swaps objects and keeps both names, so sidecars stay.  A
	 * plain rename needs the new name's sidecar before the entry. */
	if (!exchange) {
		ret = names_long_store(ndir->fd, &newenc);
		if (ret < 0)
			goto out;
	}
	/* Replacing a directory: the backing one holds its IV, so the
	 * backing rename would see it non-empty.  Strip it like rmdir. */
	if (!(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) && have_dst &&
	    S_ISDIR(st.st_mode) &&
	    !(have_src && srcst.st_ino == st.st_ino && srcst.st_dev == st.st_dev)) {
		ret = dying_dir_strip(ndir->fd, newenc.backing, &dd);
		if (ret < 0)
			goto out;
		unpin_wait(fs, st.st_ino);
	}
	if (renameat2(dir->fd, oldenc.backing, ndir->fd, newenc.backing, flags) != 0) {
		ret = -errno;
		/* Keep the sidecar if an entry of that name exists: it is the
		 * same name, so the sidecar is its own. */
		if (!exchange &&
		    faccessat(ndir->fd, newenc.backing, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
			sidecar_drop(ndir->fd, &newenc);
		goto out;
	}
	if (!exchange &&
	    faccessat(dir->fd, oldenc.backing, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
	    errno == ENOENT)
		sidecar_drop(dir->fd, &oldenc);
	rename_nodes(fs, dir, oldenc.backing, name, ndir, newenc.backing, newname,
		     have_src ? &srcst : NULL, have_dst ? &st : NULL, exchange);
out:
	dying_dir_end(&dd, ret < 0);
	if (!denied)
		audit_change_end(req, AUDIT_OP_RENAME, ret, recorded, seq, dir->ring, ap,
				 ap2, flags, detail[0] ? detail : NULL);
	/* A replaced file's pin may be its last reference: freed after the
	 * reply (see do_unlink). */
	unpin_defer(fs, ndir->ino, pin);
	fuse_reply_err(req, -ret);
	unpin_close(fs, ndir->ino, pin);
	if (spin >= 0)
		close(spin);
	dying_dir_unpin(&dd);
	if (ret == 0) {
		perm_inval_moved(fs, dir, ndir, newname);
		if (exchange)
			perm_inval_moved(fs, ndir, dir, name);
	}
}

/* ---- attributes ----------------------------------------------------------- */

static void do_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *n = ops_node(req, ino);
	struct pol_req pr;
	struct stat st;
	int ret;

	if (fi && S_ISREG(n->type)) {
		/* Through the caller's open file: works after unlink, and the
		 * open was checked. */
		if (fstat(ops_handle(fi)->fd, &st) != 0) {
			fuse_reply_err(req, errno);
			return;
		}
		stat_convert(n, ops_handle(fi)->fd, "", &st);
		fuse_reply_attr(req, &st, fs->cfg.attr_timeout);
		return;
	}
	/* The root is always visible (it is the mount point); a file with no
	 * name left is reached only through a checked open. */
	if (pol_begin(req, &pr) && n != &fs->root && node_named(fs, n))
		ret = pol_node(&pr, n, POL_TRAVERSE, "getattr");
	else
		ret = 0;
	pol_end(&pr);
	/* A directory's name may be cached under a directory the caller
	 * may not search (see "Path walks"). */
	if (ret == 0 && S_ISDIR(n->type))
		ret = perm_reach(req, n, "getattr", NULL);
	if (ret == 0)
		ret = node_stat(fs, n, &st);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, node_attr_ttl(fs, n));
}

/* What a setattr changes, without names: "mode=0640 uid=1001 size=0
 * mtime" (times as "now" when the kernel asks for the current time). */
static void setattr_detail(const struct stat *a, int valid, char *buf, size_t cap)
{
	size_t len = 0;

	buf[0] = '\0';
#define SA_ADD(...)                                                                      \
	do {                                                                             \
		if (len < cap)                                                           \
			len += (size_t)snprintf(buf + len, cap - len, __VA_ARGS__);      \
	} while (0)
	if (valid & FUSE_SET_ATTR_MODE)
		SA_ADD("%smode=%04o", len ? " " : "", (unsigned)(a->st_mode & 07777));
	if (valid & FUSE_SET_ATTR_UID)
		SA_ADD("%suid=%u", len ? " " : "", (unsigned)a->st_uid);
	if (valid & FUSE_SET_ATTR_GID)
		SA_ADD("%sgid=%u", len ? " " : "", (unsigned)a->st_gid);
	if (valid & FUSE_SET_ATTR_SIZE)
		SA_ADD("%ssize=%jd", len ? " " : "", (intmax_t)a->st_size);
	if (valid & FUSE_SET_ATTR_ATIME_NOW)
		SA_ADD("%satime=now", len ? " " : "");
	else if (valid & FUSE_SET_ATTR_ATIME)
		SA_ADD("%satime=%jd", len ? " " : "", (intmax_t)a->st_atim.tv_sec);
	if (valid & FUSE_SET_ATTR_MTIME_NOW)
		SA_ADD("%smtime=now", len ? " " : "");
	else if (valid & FUSE_SET_ATTR_MTIME)
		SA_ADD("%smtime=%jd", len ? " " : "", (intmax_t)a->st_mtim.tv_sec);
#undef SA_ADD
}

/* A size change of regular file n (through handle h if given): shrinking
 * is TRUNCATE, growing APPEND, for holds and retention. */
static int check_truncate(fuse_req_t req, struct ops_node *n, struct ops_handle *h,
			  off_t size)
{
	struct stat st;
	off_t cur;
	int fd, ret;

	fd = h ? h->fd : node_open(ops_fs(req), n, O_PATH, &st);
	if (fd < 0)
		return fd;
	if (h && fstat(fd, &st) != 0) {
		ret = -errno;
		goto out;
	}
	cur = format_plain_size(st.st_size);
	ret = 0;
	if (cur < 0 || size != cur)
		ret = check_record(req, NULL, NULL, n, fd, S_IFREG,
				   cur >= 0 && size > cur ? RETENTION_APPEND
							  : RETENTION_TRUNCATE,
				   "truncate");
out:
	if (!h)
		close(fd);
	return ret;
}

/* The attributes in valid that would change the object whose current
 * state is cur: a chmod to the mode it has, a chown to the owner it has
 * (unless it carries setuid/setgid bits, which a chown clears) and times
 * set to what they are change nothing, so they are neither made nor
 * recorded.  Sizes always count: a truncate to the same size still sets
 * mtime. */
static int setattr_effective(const struct stat *cur, const struct stat *attr, int valid)
{
	bool kills = !S_ISDIR(cur->st_mode) && (cur->st_mode & (S_ISUID | S_ISGID));

	if ((valid & FUSE_SET_ATTR_MODE) &&
	    (S_ISLNK(cur->st_mode) || (cur->st_mode & 07777) == (attr->st_mode & 07777)))
		valid &= ~FUSE_SET_ATTR_MODE;
	if (!kills && (valid & FUSE_SET_ATTR_UID) && cur->st_uid == attr->st_uid)
		valid &= ~FUSE_SET_ATTR_UID;
	if (!kills && (valid & FUSE_SET_ATTR_GID) && cur->st_gid == attr->st_gid)
		valid &= ~FUSE_SET_ATTR_GID;
	if ((valid & FUSE_SET_ATTR_ATIME) && !(valid & FUSE_SET_ATTR_ATIME_NOW) &&
	    cur->st_atim.tv_sec == attr->st_atim.tv_sec &&
	    cur->st_atim.tv_nsec == attr->st_atim.tv_nsec)
		valid &= ~FUSE_SET_ATTR_ATIME;
	if ((valid & FUSE_SET_ATTR_MTIME) && !(valid & FUSE_SET_ATTR_MTIME_NOW) &&
	    cur->st_mtim.tv_sec == attr->st_mtim.tv_sec &&
	    cur->st_mtim.tv_nsec == attr->st_mtim.tv_nsec)
		valid &= ~FUSE_SET_ATTR_MTIME;
	if (!(valid & FUSE_SET_ATTR_ATIME))
		valid &= ~FUSE_SET_ATTR_ATIME_NOW;
	if (!(valid & FUSE_SET_ATTR_MTIME))
		valid &= ~FUSE_SET_ATTR_MTIME_NOW;
	return valid;
}

#define SETATTR_CHANGES                                                                  \
	(FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |                    \
	 FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)

/*
 * Killing privileges.  Under FUSE_HANDLE_KILLPRIV (chan.h) the kernel no
 * longer clears setuid/setgid with a chmod of its own: a chown or a
 * truncate arrives without one, and before a write by a caller without
 * CAP_FSETID (the kernel's file_remove_privs) a setattr that sets nothing
 * arrives instead.  The bits Linux would clear are added here as a mode
 * change, after the permission checks (locally the kernel forces it:
 * ATTR_FORCE), so it is made and recorded like any chmod.  Returns the
 * new valid; st is the current state.
 */
static int setattr_kill(fuse_req_t req, const struct stat *st, struct stat *attr,
			int valid)
{
	mode_t base = (valid & FUSE_SET_ATTR_MODE) ? attr->st_mode : st->st_mode;
	struct perm_obj o = {st->st_mode, st->st_uid, st->st_gid};
	struct perm_req p;
	mode_t kill = 0;

	if (!(st->st_mode & PERM_KILLPRIV_MASK))
		return valid; /* the common case: nothing to clear */
	perm_begin(req, &p);
	if (!(valid & SETATTR_CHANGES))
		kill |= perm_kill_write(st->st_mode);
	if (valid & FUSE_SET_ATTR_SIZE)
		kill |= perm_kill_truncate(&p.c, st->st_mode);
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
		kill |= perm_kill_chown(&p.c, &o);
	kill &= base;
	if (!kill)
		return valid;
	attr->st_mode = (st->st_mode & S_IFMT) | (base & 07777 & ~kill);
	return valid | FUSE_SET_ATTR_MODE;
}

static void do_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *n = ops_node(req, ino);
	struct ops_handle *h = fi && S_ISREG(n->type) ? ops_handle(fi) : NULL;
	struct pol_req pr;
	char proc[64], apath[PATH_MAX], detail[160] = "";
	struct stat st;
	int pfd = -1, tfd = -1, ret = 0;
	bool own_pfd = false, denied, recorded = false, was_open = false, real_fd = false;
	struct ops_handle *lent = NULL;
	const char *ap = NULL;
	uint64_t seq = 0;

	/* chmod, chown, utimes and truncate change the file: write in its
	 * directory (for the root: in "/").  A file that has lost every name
	 * has no directory: only a handle opened for writing (checked then)
	 * may change it. */
	if (pol_begin(req, &pr) && !(h && h->may_write && !node_named(fs, n)))
		ret = pol_node(&pr, n, POLICY_WRITE,
			       (valid & FUSE_SET_ATTR_SIZE) ? "truncate" : "setattr");
	pol_end(&pr);
	if (ret == 0 && (valid & FUSE_SET_ATTR_SIZE) && S_ISREG(n->type))
		ret = check_truncate(req, n, h, attr->st_size);
	denied = ret < 0;
	if (ret < 0)
		goto out;
	ap = audit_node_path(fs, n, apath, sizeof(apath));
	setattr_detail(attr, valid, detail, sizeof(detail));
	if (n->fd >= 0) {
		pfd = n->fd;
	} else if (h) {
		pfd = h->fd;
		real_fd = true;
	} else if (S_ISREG(n->type) && (lent = handle_borrow(fs, n)) != NULL) {
		pfd = lent->fd;
		real_fd = true;
	} else {
		pfd = node_open(fs, n, O_PATH, &st);
		if (pfd < 0) {
			ret = pfd;
			goto out;
		}
		own_pfd = true;
	}
	if (!own_pfd && fstatat(pfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
		ret = -errno;
		goto out;
	}
	was_open = perm_open_dir(st.st_mode);
	ret = S_ISDIR(n->type) ? perm_reach(req, n, "setattr", NULL) : 0;
	if (ret == 0)
		ret = perm_setattr(req, n, &st, attr, valid, h != NULL);
	if (ret < 0) {
		denied = true; /* recorded */
		goto out;
	}
	if (atomic_load_explicit(&fs->killpriv, memory_order_relaxed))
		valid = setattr_kill(req, &st, attr, valid);
	/* Only what changes is made and recorded: tar's chown of a file it
	 * has just created as that owner costs no record. */
	valid = setattr_effective(&st, attr, valid);
	if (!(valid & SETATTR_CHANGES)) {
		recorded = true;
		goto done;
	}
	setattr_detail(attr, valid, detail, sizeof(detail));
	recorded = true;
	ret = audit_change(req, AUDIT_OP_SETATTR, 0, n->ring, ap, NULL, 0, detail, &seq);
	if (ret < 0)
		goto out;
	proc_path(proc, pfd);
	if ((valid & FUSE_SET_ATTR_MODE) && !S_ISLNK(n->type)) {
		/* An O_PATH descriptor cannot fchmod: through /proc then. */
		if ((real_fd ? fchmod(pfd, attr->st_mode & 07777)
			     : chmod(proc, attr->st_mode & 07777)) != 0) {
			ret = -errno;
			goto out;
		}
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(pfd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) !=
		    0) {
			ret = -errno;
			goto out;
		}
	}
	if (valid & FUSE_SET_ATTR_SIZE) {
		int fd;

		if (!S_ISREG(n->type)) {
			ret = S_ISDIR(n->type) ? -EISDIR : -EINVAL;
			goto out;
		}
		if (h) {
			fd = h->fd;
		} else {
			tfd = open(proc, O_RDWR | O_CLOEXEC);
			if (tfd < 0) {
				ret = -errno;
				goto out;
			}
			fd = tfd;
		}
		ret = node_truncate(n, fd, attr->st_size);
		if (ret < 0)
			goto out;
	}
	if (valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
		struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT},
					 {.tv_nsec = UTIME_OMIT}};

		if (valid & FUSE_SET_ATTR_ATIME_NOW)
			tv[0].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_ATIME)
			tv[0] = attr->st_atim;
		if (valid & FUSE_SET_ATTR_MTIME_NOW)
			tv[1].tv_nsec = UTIME_NOW;
		else if (valid & FUSE_SET_ATTR_MTIME)
			tv[1] = attr->st_mtim;
		if (utimensat(pfd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
			ret = -errno;
			goto out;
		}
	}
	if (fstatat(pfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		ret = -errno;
done:
	if (ret == 0) {
		node_perm_set(fs, n, &st);
		stat_convert(n, pfd, "", &st);
	}
out:
	if (tfd >= 0)
		close(tfd);
	if (own_pfd)
		close(pfd);
	if (lent)
		handle_return(fs, lent);
	if (!denied)
		audit_change_end(req, AUDIT_OP_SETATTR, ret, recorded, seq, n->ring, ap,
				 NULL, 0, detail);
	if (ret == 0 && (valid & FUSE_SET_ATTR_SIZE))
		reserve_check(fs);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	fuse_reply_attr(req, &st, node_attr_ttl(fs, n));
	/* Below a chain that was closed already, nothing was cached under
	 * the open rules (chmod -R 700 pays once, at its top). */
	if (S_ISDIR(st.st_mode) && was_open && !perm_open_dir(st.st_mode) &&
	    (fs->cfg.strict_walks || node_above_open(fs, n)))
		perm_inval_below(fs, n);
}

static void do_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *n = ops_node(req, ino);
	char stored[LINKTARGET_STORED_MAX];
	char plain[LINKTARGET_PLAIN_MAX + 1];
	char backing[NAMES_BACKING_MAX + 1];
	struct ops_node *dir;
	struct pol_req pr;
	struct stat st;
	ssize_t len;
	int ret;

	pol_begin(req, &pr);
	ret = pol_node(&pr, n, POL_TRAVERSE, "readlink");
	pol_end(&pr);
	if (ret == 0)
		ret = S_ISLNK(n->type) ? node_find(fs, n, &dir, backing, &st) : -EINVAL;
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	len = readlinkat(dir->fd, backing, stored, sizeof(stored));
	ret = len < 0 ? -errno : 0;
	node_unref(fs, dir, 1);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	if ((size_t)len >= sizeof(stored)) {
		fuse_reply_err(req, EIO);
		return;
	}
	stored[len] = '\0';
	ret = linktarget_decrypt(n->ring, stored, plain, sizeof(plain));
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_readlink(req, plain);
	crypt_wipe(plain, sizeof(plain));
}

static void do_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct ops_node *n = ops_node(req, ino);
	struct perm_req p;
	struct perm_obj o;
	struct stat st;
	int ret;

	/* access(2) and chdir(2) ask; the answer is not a refused operation,
	 * so nothing is recorded. */
	ret = node_stat(ops_fs(req), n, &st);
	perm_begin(req, &p);
	if (ret == 0 && S_ISDIR(n->type) && !perm_root(&p.c) && !p.fs->cfg.strict_walks)
		ret = perm_reach_check(&p, n);
	if (ret == 0 && (mask & (R_OK | W_OK | X_OK))) {
		o = (struct perm_obj){st.st_mode, st.st_uid, st.st_gid};
		ret = perm_check(&p.c, &o, mask);
	}
	fuse_reply_err(req, -ret);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	after_init(req);
	struct statvfs sv;

	(void)ino;
	if (fstatvfs(ops_fs(req)->store->tree_fd, &sv) != 0) {
		fuse_reply_err(req, errno);
		return;
	}
	sv.f_namemax = NAMES_PLAIN_MAX;
	fuse_reply_statfs(req, &sv);
}

/* Backing xattrs would hold plaintext in the clear, so there are none.
 * ENOSYS makes the kernel answer EOPNOTSUPP itself from then on, which
 * spares a round trip per write (security.capability checks). */
static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	(void)ino;
	(void)name;
	(void)size;
	fuse_reply_err(req, ENOSYS);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	(void)ino;
	(void)size;
	fuse_reply_err(req, ENOSYS);
}

/* Changing xattrs is a write: a denial is reported as such before the
 * (global) "not supported". */
static void do_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct pol_req pr;
	int ret;

	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	pol_begin(req, &pr);
	ret = pol_node(&pr, ops_node(req, ino), POLICY_WRITE, "setxattr");
	pol_end(&pr);
	fuse_reply_err(req, ret < 0 ? -ret : ENOSYS);
}

static void do_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct pol_req pr;
	int ret;

	(void)name;
	pol_begin(req, &pr);
	ret = pol_node(&pr, ops_node(req, ino), POLICY_WRITE, "removexattr");
	pol_end(&pr);
	fuse_reply_err(req, ret < 0 ? -ret : ENOSYS);
}

/* ---- files ---------------------------------------------------------------- */

/* Backing open flags: writable whenever the caller may write (partial
 * blocks are read-modify-write), no O_APPEND (the kernel supplies
 * offsets; backing offsets are ciphertext anyway), no O_TRUNC (it would
 * destroy the header). */
static int backing_flags(const struct ops_fs *fs, int flags)
{
	int acc = flags & O_ACCMODE;
	bool wr = acc != O_RDONLY || (flags & O_TRUNC) || fs->cfg.writeback;

	return (wr ? O_RDWR : O_RDONLY) | (flags & (O_SYNC | O_DSYNC)) | O_CLOEXEC;
}

/*
 * Retention state of a new handle of n: what the policy said at open
 * (writes are checked against it), whether a directory hold covers the
 * file, and whether writes need checking at all (guard; none outside
 * subjects, holds and retention, so ordinary writes pay nothing).  A WORM
 * candidate idle past autocommit is committed now.
 */
static void ret_open(fuse_req_t req, struct ops_node *n, struct ops_handle *h, int fd,
		     const struct stat *st)
{
	struct ops_fs *fs = ops_fs(req);
	char dpath[PATH_MAX], path[PATH_MAX];
	struct policy_effective e;
	struct format_header hdr;
	struct pol_req pr;
	bool have, active = false;
	int len;

	pthread_mutex_lock(&fs->table_lock);
	len = node_path_locked(fs, n, true, dpath, sizeof(dpath));
	pthread_mutex_unlock(&fs->table_lock);
	if (len >= 0)
		len = ops_node_path(fs, n, path, sizeof(path));
	pthread_rwlock_rdlock(&n->lock);
	have = n->ff.have_header;
	hdr = n->ff.hdr;
	pthread_rwlock_unlock(&n->lock);
	pol_begin(req, &pr);
	if (len >= 0 && ret_effective(&pr, dpath, &e)) {
		h->retain_min_s = e.retain_min_s;
		h->worm = e.worm;
		h->autocommit_s = e.worm ? e.autocommit_s : 0;
		active = ret_active(&e);
		if (have && retention_worm_due(&e, &hdr, false,
					       (int64_t)st->st_mtim.tv_sec * 1000000 +
						       st->st_mtim.tv_nsec / 1000,
					       ret_now(fs)))
			(void)ret_worm_commit(fs, n, fd, &e);
	}
	pol_end(&pr);
	/* Read before the holds are: a reload after this is seen at the
	 * next write (handle_holds_refresh). */
	atomic_store_explicit(&h->holds_gen,
			      atomic_load_explicit(&fs->holds_gen, memory_order_acquire),
			      memory_order_relaxed);
	h->dir_held = len >= 0 && ret_dir_held(fs, path);
	h->guard = n->subj || active || h->dir_held ||
		   (have && ((hdr.flags & FORMAT_FLAG_WORM) || hdr.keep_until_us));
}

/* An open with O_TRUNC truncates as a truncate does, and clears what a
 * truncate by the caller clears (the kernel sends no setattr for it: the
 * open truncated already).  st is the file's state, updated.  1 if bits
 * were cleared (the kernel's cached mode is then stale), 0, or -errno. */
static int open_trunc_kill(fuse_req_t req, struct ops_node *n, int fd, struct stat *st)
{
	struct perm_req p;
	mode_t kill;

	if (!(st->st_mode & PERM_KILLPRIV_MASK))
		return 0;
	perm_begin(req, &p);
	kill = perm_kill_truncate(&p.c, st->st_mode);
	if (!kill)
		return 0;
	if (fchmod(fd, st->st_mode & 07777 & ~kill) != 0)
		return -errno;
	st->st_mode &= ~kill;
	node_perm_set(ops_fs(req), n, st);
	return 1;
}

static void do_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *n = ops_node(req, ino);
	int acc = fi->flags & O_ACCMODE;
	bool wr = acc != O_RDONLY || (fi->flags & O_TRUNC);
	struct ops_handle *h = NULL;
	char apath[PATH_MAX];
	const char *ap = NULL;
	bool record = true, recorded = false;
	uint64_t seq = 0;
	struct pol_req pr;
	struct stat st;
	bool damaged, killed = false;
	int fd = -1, ret;

	/* Write first: a refused open must not use up the read rate. */
	pol_begin(req, &pr);
	pr.flags = (uint64_t)fi->flags;
	ret = 0;
	if (wr)
		ret = pol_node(&pr, n, POLICY_WRITE, "open");
	if (ret == 0 && acc != O_WRONLY)
		ret = pol_node(&pr, n, POL_OPEN_READ, "open");
	if (ret == 0)
		ret = pol_restricted(&pr, n, "open");
	pol_end(&pr);
	if (ret < 0) {
		/* The denial is recorded already. */
		fuse_reply_err(req, -ret);
		return;
	}
	/* audit = none spares opens for reading only: a write is a change. */
	record = wr || pr.level != POLICY_AUDIT_NONE;
	if (record)
		ap = audit_node_path(fs, n, apath, sizeof(apath));
	if (!S_ISREG(n->type)) {
		ret = S_ISDIR(n->type) ? -EISDIR : -EINVAL;
		goto out;
	}
	/* Synchronous writes promise durability: of the names above too. */
	if ((fi->flags & (O_SYNC | O_DSYNC)) && (ret = durable_drain(fs->durable)) < 0)
		goto out;
	fd = node_open(fs, n, backing_flags(fs, fi->flags), &st);
	if (fd < 0) {
		ret = fd;
		goto out;
	}
	ret = perm_node(req, n, &st, open_mask(fi->flags), "open");
	if (ret < 0) {
		recorded = true; /* the refusal is */
		goto out;
	}
	/* A ciphertext of impossible length is damaged.  It stats as empty
	 * (so ls, fsck and rm work), but must not read as empty: direct I/O
	 * sends every read here despite the size 0, and format_file_read
	 * answers EIO.  The open itself succeeds, so tools can still fstat,
	 * truncate (O_TRUNC cuts it back) or read it block by block. */
	damaged = format_plain_size(st.st_size) < 0;
	h = calloc(1, sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto out;
	}
	h->fd = fd;
	h->may_write = wr;
	h->len_ok = !damaged;
	if ((fi->flags & O_TRUNC) && st.st_size > 0) {
		ret = check_record(req, NULL, NULL, n, fd, S_IFREG, RETENTION_TRUNCATE,
				   "open");
		if (ret < 0) {
			recorded = true; /* the refusal is */
			goto out;
		}
	}
	if (fi->flags & O_TRUNC) {
		ret = node_truncate(n, fd, 0);
		if (ret == 0)
			ret = open_trunc_kill(req, n, fd, &st);
		killed = ret > 0;
		ret = ret > 0 ? 0 : ret;
	} else {
		pthread_rwlock_wrlock(&n->lock);
		ret = node_load_header(n, fd);
		pthread_rwlock_unlock(&n->lock);
	}
	if (ret < 0)
		goto out;
	ret_open(req, n, h, fd, &st);
	/* Recorded before open() returns: the unit that is guaranteed.  (An
	 * O_TRUNC already happened; a failed record still refuses the open.) */
	if (record) {
		recorded = true;
		ret = audit_change(req, AUDIT_OP_OPEN, 0, n->ring, ap, NULL,
				   (uint64_t)fi->flags, NULL, &seq);
		if (ret < 0)
			goto out;
		h->audit_seq = seq;
		h->audit_release = wr || pr.level == POLICY_AUDIT_READS;
		handle_opener(req, h);
	}
	handle_attach(fs, n, h);
	fi->fh = (uintptr_t)h;
	/* Every change passes through this mount: the page cache stays
	 * valid from one open to the next. */
	fi->keep_cache = !damaged;
	fi->direct_io = damaged && !(fi->flags & O_TRUNC);
	/* Writes are not buffered here and locks are the kernel's: a FLUSH
	 * at every close would be a round trip for nothing (with -o
	 * writeback the kernel sends it anyway, to push its cache). */
	fi->noflush = 1;
	if (fuse_reply_open(req, fi) != 0) {
		/* Interrupted: no release will come for this handle. */
		handle_free(fs, h);
	}
	/* After the reply: the kernel finishes the open first. */
	if (killed && fs->se)
		(void)fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
	return;
out:
	if (record && !recorded)
		(void)audit_change(req, AUDIT_OP_OPEN, ret, n->ring, ap, NULL,
				   (uint64_t)fi->flags, NULL, NULL);
	if (fd >= 0)
		close(fd);
	free(h);
	fuse_reply_err(req, -ret);
}

/* Gives an O_TMPFILE file its name; -EEXIST if the name is taken.  The
 * AT_EMPTY_PATH form needs CAP_DAC_READ_SEARCH; without it (a daemon not
 * run as root) /proc/self/fd works for a file opened without O_EXCL. */
static int link_tmpfile(int fd, int dirfd, const char *name)
{
	char proc[64];

	if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno != ENOENT && errno != EPERM)
		return -errno;
	proc_path(proc, fd);
	if (linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	return -errno;
}

static void do_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct fuse_entry_param e;
	struct ops_handle *h = NULL;
	struct format_file f;
	struct names_enc enc;
	struct ops_node *n;
	bool made = false, have_entry = false, recorded = false, tmpfile;
	char apath[PATH_MAX], detail[24];
	const char *ap;
	uint64_t seq = 0;
	uid_t uid;
	gid_t gid;
	int fd = -1, ret;

	/* Creating grants the new file's handle: a drop box (create only)
	 * can write what it creates. */
	ret = check_create(req, dir, "create", name, true);
	if (ret < 0) {
		fuse_reply_err(req, -ret);
		return;
	}
	ap = audit_child_path(fs, dir, name, apath, sizeof(apath));
	snprintf(detail, sizeof(detail), "mode=%04o", (unsigned)(mode & 07777));
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = new_owner(req, dir, &uid, &gid);
	if (ret == 0 && (fi->flags & (O_SYNC | O_DSYNC)))
		ret = durable_drain(fs->durable); /* as in do_open */
	if (ret < 0)
		goto out;
	h = calloc(1, sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto out;
	}
	ret = names_long_store(dir->fd, &enc);
	if (ret < 0)
		goto out;
	/* The file is made nameless (O_TMPFILE), given its owner and its
	 * header, and only then linked under its name: a daemon killed half
	 * way leaves no file owned by root, or without a header, for a user
	 * to trip over after the remount. */
	fd = openat(dir->fd, ".",
		    (backing_flags(fs, fi->flags) & ~(O_ACCMODE | O_CREAT | O_EXCL)) |
			    O_RDWR | O_TMPFILE,
		    mode & 07777);
	tmpfile = fd >= 0;
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* No O_TMPFILE here (NFS, some FUSE backings): create in
		 * place, with the crash window docs/daemon.md describes. */
		fd = openat(dir->fd, enc.backing,
			    (backing_flags(fs, fi->flags) & ~O_ACCMODE) | O_RDWR |
				    O_CREAT | O_EXCL | O_NOFOLLOW,
			    mode & 07777);
		made = fd >= 0;
	}
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	if (fchown(fd, uid, gid) != 0 ||
	    ((mode & (S_ISUID | S_ISGID)) && fchmod(fd, mode & 07777) != 0)) {
		ret = -errno;
		goto out;
	}
	ret = format_file_create(&f, fd, dir->ring, clock_now_us());
	if (ret == 0)
		ret = ret_new_record(req, dir, &f);
	if (ret < 0)
		goto out;
	if (tmpfile) {
		ret = link_tmpfile(fd, dir->fd, enc.backing);
		if (ret < 0)
			goto out;
		made = true;
	}
	/* The create is the open of a write session: its seq is the ref of
	 * the session's write/close record. */
	recorded = true;
	ret = audit_change(req, AUDIT_OP_CREATE, 0, dir->ring, ap, NULL,
			   (uint64_t)fi->flags, detail, &seq);
	if (ret < 0)
		goto out;
	ret = node_get_as(fs, dir, enc.backing, name, NULL, NULL, &e, false, fd);
	if (ret < 0)
		goto out;
	have_entry = true;
	n = ops_node(req, e.ino);
	pthread_rwlock_wrlock(&n->lock);
	if (!n->hdr_loaded) {
		n->ff = f;
		n->ff.fd = -1;
		n->ff.ring = n->ring;
		n->hdr_loaded = true;
	}
	pthread_rwlock_unlock(&n->lock);
	h->fd = fd;
	h->may_write = true;
	h->len_ok = true;
	h->audit_seq = seq;
	h->audit_release = seq != 0;
	handle_opener(req, h);
	{
		struct stat cst;

		if (fstat(fd, &cst) == 0)
			ret_open(req, n, h, fd, &cst);
	}
	handle_attach(fs, n, h);
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;
	fi->noflush = 1; /* as in do_open */
	if (fuse_reply_create(req, &e, fi) != 0) {
		handle_free(fs, h);
		node_unref(fs, n, 1);
	}
	return;
out:
	if (!recorded)
		(void)audit_change(req, AUDIT_OP_CREATE, ret, dir->ring, ap, NULL,
				   (uint64_t)fi->flags, detail, NULL);
	if (fd >= 0)
		close(fd);
	free(h);
	if (have_entry)
		node_unref(fs, ops_node(req, e.ino), 1);
	if (made)
		undo_entry(dir, &enc, 0);
	else if (ret != -EEXIST)
		sidecar_drop(dir->fd, &enc);
	fuse_reply_err(req, -ret);
}

static void do_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	struct format_file f;
	uint8_t *buf;
	ssize_t r;

	buf = read_buf_get(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_rwlock_rdlock(&n->lock);
	f = n->ff;
	f.fd = ops_handle(fi)->fd;
	f.len_ok = ops_handle(fi)->len_ok;
	r = format_file_read(&f, buf, size, off);
	pthread_rwlock_unlock(&n->lock);
	if (r < 0) {
		fuse_reply_err(req, (int)-r);
		return;
	}
	handle_count(ops_handle(fi), false, (uint64_t)r);
	fuse_reply_buf(req, (const char *)buf, (size_t)r);
	crypt_wipe(buf, (size_t)r);
}

/*
 * May handle h write at plaintext offset off of n?  Only asked when
 * h->guard.  A WORM-committed file takes no write; a hold (subject or
 * directory) and retain_min refuse overwriting existing data, not
 * appending.  Caller holds n->lock exclusively.  0, or -EPERM with *why
 * for the record, or another -errno.
 */
static int write_verdict(struct ops_fs *fs, struct ops_handle *h, struct ops_node *n,
			 off_t off, const char **why)
{
	struct policy_effective e;
	bool have = n->ff.have_header, held;
	enum retention_op op;
	struct stat st;
	off_t cur;

	if (have && (n->ff.hdr.flags & FORMAT_FLAG_WORM)) {
		*why = "retention (write-once)";
		return -EPERM;
	}
	held = h->dir_held || subj_held(n);
	if (!held && !(have && (h->retain_min_s > 0 || n->ff.hdr.keep_until_us)))
		return 0;
	if (fstat(h->fd, &st) != 0)
		return -errno;
	cur = format_plain_size(st.st_size);
	op = cur >= 0 && off >= cur ? RETENTION_APPEND : RETENTION_OVERWRITE;
	if (retention_check_held(held, op) < 0) {
		*why = "legal hold";
		return -EPERM;
	}
	memset(&e, 0, sizeof(e));
	e.retain_min_s = h->retain_min_s;
	e.worm = h->worm;
	e.autocommit_s = h->autocommit_s;
	if (have && retention_check(&e, &n->ff.hdr, ret_now(fs), op) < 0) {
		*why = "retention";
		return -EPERM;
	}
	return 0;
}

/* The directory holds were reloaded since h decided whether it is under
 * one (generation gen): decide again, so that a hold placed while a file
 * is open stops its next write.  The path is built before the node lock
 * is taken (lock order: table_lock, then the node's). */
static void handle_holds_refresh(struct ops_fs *fs, struct ops_node *n,
				 struct ops_handle *h, uint64_t gen)
{
	char path[PATH_MAX];
	bool held;

	if (ops_node_path(fs, n, path, sizeof(path)) < 0)
		return; /* no name left: keep what was decided at open */
	held = ret_dir_held(fs, path);
	pthread_rwlock_wrlock(&n->lock);
	h->dir_held = held;
	if (held)
		h->guard = true;
	atomic_store_explicit(&h->holds_gen, gen, memory_order_relaxed);
	pthread_rwlock_unlock(&n->lock);
}

static void do_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	struct ops_handle *h = ops_handle(fi);
	struct format_file f;
	ssize_t r;
	uint64_t gen;

	if (disk_full(ops_fs(req))) {
		fuse_reply_err(req, ENOSPC);
		return;
	}
	gen = atomic_load_explicit(&ops_fs(req)->holds_gen, memory_order_acquire);
	if (gen != atomic_load_explicit(&h->holds_gen, memory_order_relaxed))
		handle_holds_refresh(ops_fs(req), n, h, gen);
	pthread_rwlock_wrlock(&n->lock);
	if (h->guard) {
		const char *why = NULL;
		int v = write_verdict(ops_fs(req), h, n, off, &why);

		if (v < 0) {
			pthread_rwlock_unlock(&n->lock);
			if (why)
				v = refuse(req, n, NULL, NULL, AUDIT_OP_WRITE, EPERM,
					   why);
			fuse_reply_err(req, -v);
			return;
		}
	}
	f = n->ff;
	f.fd = h->fd;
	r = format_file_write(&f, buf, size, off);
	n->ff.have_header = f.have_header;
	n->ff.hdr = f.hdr;
	pthread_rwlock_unlock(&n->lock);
	if (r < 0) {
		fuse_reply_err(req, (int)-r);
	} else {
		handle_count(h, true, (uint64_t)r);
		if (!atomic_load_explicit(&h->written, memory_order_relaxed))
			atomic_store(&h->written, true);
		subj_touch(n->subj);
		fuse_reply_write(req, (size_t)r);
	}
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* Writes are not buffered here: nothing to push. */
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/*
 * The end of a recorded open: "write" (bytes/count written; what was read
 * through the same handle in detail) if anything was written, else
 * "close" (bytes/count read), ref = the open's seq.  Recorded for every
 * write session, and for reads where the level is `reads`.
 * Counted: what the daemon's read/write handlers served; not what the
 * kernel served from its page cache (docs/audit.md).
 */
static int audit_release(struct ops_fs *fs, struct ops_handle *h, const char *why)
{
	uint64_t rb = atomic_load_explicit(&h->rbytes, memory_order_relaxed);
	uint64_t rc = atomic_load_explicit(&h->rcalls, memory_order_relaxed);
	uint64_t wb = atomic_load_explicit(&h->wbytes, memory_order_relaxed);
	uint64_t wc = atomic_load_explicit(&h->wcalls, memory_order_relaxed);
	char apath[PATH_MAX], detail[96] = "";
	struct audit_event ev = {.ring = h->node->ring, .ref = h->audit_seq};

	if (!h->audit_seq || !h->audit_release || !fs->audit)
		return 0;
	/* The current name (the open record has the name it was opened by);
	 * none if the file was unlinked meanwhile. */
	ev.path = audit_node_path(fs, h->node, apath, sizeof(apath));
	if (wc) {
		ev.op = AUDIT_OP_WRITE;
		ev.bytes = wb;
		ev.count = wc;
		if (rc)
			snprintf(detail, sizeof(detail),
				 "read=%" PRIu64 " reads=%" PRIu64 "%s%s", rb, rc,
				 why ? ", " : "", why ? why : "");
		else if (why)
			snprintf(detail, sizeof(detail), "%s", why);
	} else {
		ev.op = AUDIT_OP_CLOSE;
		ev.bytes = rb;
		ev.count = rc;
		if (why)
			snprintf(detail, sizeof(detail), "%s", why);
	}
	ev.detail = detail[0] ? detail : NULL;
	/* The kernel sends a release without the caller: it is the opener's
	 * session (comm/exe are empty if that process has exited). */
	return audit_as(fs, h->pid, h->uid, h->gid, &ev, NULL);
}

static void do_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_handle *h = ops_handle(fi);
	int ret;

	(void)ino;
	/* worm = yes: the first release after writing commits the file. */
	if (h->worm && atomic_load(&h->written)) {
		struct policy_effective e;

		memset(&e, 0, sizeof(e));
		e.worm = true;
		e.retain_min_s = h->retain_min_s;
		e.autocommit_s = h->autocommit_s;
		(void)ret_worm_commit(ops_fs(req), h->node, h->fd, &e);
	}
	ret = audit_release(ops_fs(req), h, NULL);
	handle_free(ops_fs(req), h);
	fuse_reply_err(req, -ret);
}

/* fsync or fdatasync of a file or directory: first the new directories'
 * IVs (its name may lie in one whose IV is not on disk yet), then fd. */
static void sync_reply(fuse_req_t req, int fd, int datasync)
{
	int r = durable_drain(ops_fs(req)->durable);

	if (r == 0 && (datasync ? sys.fdatasync(fd) : sys.fsync(fd)) != 0)
		r = -errno;
	fuse_reply_err(req, -r);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	(void)ino;
	sync_reply(req, ops_handle(fi)->fd, datasync);
}

/* ---- directories ---------------------------------------------------------- */

static struct ops_dir *ops_dir(struct fuse_file_info *fi)
{
	return (struct ops_dir *)(uintptr_t)fi->fh;
}

static void do_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	struct ops_dir *d;
	int fd, err;

	if (!n->iv_ok) {
		fuse_reply_err(req, EIO);
		return;
	}
	err = -check_dir_op(req, n, POLICY_LIST, "opendir", NULL);
	if (!err)
		err = -perm_dir(req, n, open_mask(fi->flags), "opendir", NULL);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fd = openat(n->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	d->dp = fdopendir(fd);
	if (!d->dp) {
		err = errno;
		close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	pthread_mutex_init(&d->lock, NULL);
	fi->fh = (uintptr_t)d;
	dir_track(ops_fs(req), d, true);
	if (fuse_reply_open(req, fi) != 0) {
		dir_track(ops_fs(req), d, false);
		closedir(d->dp);
		pthread_mutex_destroy(&d->lock);
		free(d);
	}
}

/* A listing's entry `backing` that may be a subject root (".S..."): 0
 * with its id in plain (and, if sp is not NULL, its subject referenced in
 * *sp) if it is a live subject that the policy declares at dpath/id, else
 * -ENOENT (not listed: shredded leftovers, or not a subject there). */
static int subj_list_name(struct ops_fs *fs, struct ops_policy *pol, const char *dpath,
			  const char *backing, char plain[NAMES_PLAIN_MAX + 1],
			  struct ops_subject **sp)
{
	uint8_t hash[CRYPT_HASH_BYTES];
	struct subjects_info *info = NULL;
	char path[PATH_MAX];
	int ret = -ENOENT;

	if (sp)
		*sp = NULL;
	if (!pol || subjects_parse_backing_name(backing, hash) < 0)
		return -ENOENT;
	info = malloc(sizeof(*info));
	if (!info)
		return -ENOENT;
	if (subjects_get(fs->store, hash, info) < 0 || (info->flags & SUBJECTS_SHREDDED))
		goto out;
	if (snprintf(path, sizeof(path), "%s%s%s", dpath, strcmp(dpath, "/") ? "/" : "",
		     info->id) >= (int)sizeof(path) ||
	    !policy_is_subject_root(pol->p, path))
		goto out;
	if (sp && subj_open(fs, hash, sp) < 0)
		goto out;
	snprintf(plain, NAMES_PLAIN_MAX + 1, "%s", info->id);
	ret = 0;
out:
	crypt_wipe(path, sizeof(path));
	crypt_wipe(info, sizeof(*info));
	free(info);
	return ret;
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static void readdir_in(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi, bool plus)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, ino);
	struct ops_dir *d = ops_dir(fi);
	char plain[NAMES_PLAIN_MAX + 1];
	char dpath[PATH_MAX];
	struct pol_req lpr = {.pol = NULL};
	bool subjects_here = false;
	size_t rem = size;
	char *buf, *p;
	int err = 0;

	/* Checked on every call too: a policy applied while the directory is
	 * open governs the rest of the listing. */
	err = -check_dir_op(req, dir, POLICY_LIST, "readdir", NULL);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Subject roots are listed where the policy declares them. */
	if (!dir->subj && pol_begin(req, &lpr))
		subjects_here = ops_node_path(fs, dir, dpath, sizeof(dpath)) > 0;
	p = buf;
	pthread_mutex_lock(&d->lock);
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
		if (offset == 0)
			d->hidden = 0;
	}
	for (;;) {
		struct fuse_entry_param e;
		struct ops_subject *esubj = NULL;
		const char *name;
		size_t entsize;
		off_t nextoff;
		bool looked_up = false;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		nextoff = d->entry->d_off;
		if (is_dot(d->entry->d_name)) {
			name = d->entry->d_name;
		} else {
			int r = names_decrypt(dir->ring, dir->iv, dirfd(d->dp),
					      d->entry->d_name, plain);

			if (r == -ENOENT && subjects_here)
				r = subj_list_name(fs, lpr.pol, dpath, d->entry->d_name,
						   plain, plus ? &esubj : NULL);
			if (r < 0) {
				/* Reserved entries are silent; names that do
				 * not decrypt are hidden and counted. */
				if (r != -ENOENT)
					d->hidden++;
				d->entry = NULL;
				d->offset = nextoff;
				continue;
			}
			name = plain;
		}
		if (plus) {
			if (name != plain) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = d->entry->d_ino;
				e.attr.st_mode = (mode_t)d->entry->d_type << 12;
			} else {
				int r = node_get_as(fs, dir, d->entry->d_name, plain,
						    NULL, esubj, &e, true, -1);

				subj_unref(esubj);
				esubj = NULL;

				if (r == -ENOENT) {
					/* Removed since it was listed. */
					d->entry = NULL;
					d->offset = nextoff;
					continue;
				}
				if (r == -EMFILE || r == -ENFILE || r == -ENOMEM) {
					/* Out of descriptors (a directory) or memory:
					 * send the name alone (nodeid 0), as plain
					 * readdir would; a later lookup may succeed. */
					memset(&e, 0, sizeof(e));
					e.attr.st_ino = d->entry->d_ino;
					e.attr.st_mode = (mode_t)d->entry->d_type << 12;
				} else if (r < 0) {
					err = -r;
					break;
				} else {
					looked_up = true;
				}
			}
			entsize = fuse_add_direntry_plus(req, p, rem, name, &e, nextoff);
		} else {
			struct stat st = {
				.st_ino = d->entry->d_ino,
				.st_mode = (mode_t)d->entry->d_type << 12,
			};

			entsize = fuse_add_direntry(req, p, rem, name, &st, nextoff);
		}
		if (entsize > rem) {
			if (looked_up)
				node_unref(fs, ops_node(req, e.ino), 1);
			break;
		}
		p += entsize;
		rem -= entsize;
		d->entry = NULL;
		d->offset = nextoff;
	}
	if (!d->entry && err == 0 && d->hidden && !atomic_exchange(&dir->warned, true)) {
		/* Once per directory per mount, and never a name: the
		 * backing inode lets an administrator find it. */
		fuse_log(FUSE_LOG_WARNING,
			 "custodianfs: directory with backing inode %ju: %u entries "
			 "hidden (names do not decrypt)\n",
			 (uintmax_t)dir->ino, d->hidden);
	}
	pthread_mutex_unlock(&d->lock);
	pol_end(&lpr);
	crypt_wipe(plain, sizeof(plain));
	crypt_wipe(dpath, sizeof(dpath));
	/* Entries already in the buffer carry lookup references: send them
	 * and report the error only if there are none. */
	if (err && rem == size)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	crypt_wipe(buf, size - rem);
	free(buf);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi, bool plus);

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, offset, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, offset, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_dir *d = ops_dir(fi);

	(void)ino;
	dir_track(ops_fs(req), d, false);
	closedir(d->dp);
	pthread_mutex_destroy(&d->lock);
	free(d);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)ino;
	sync_reply(req, dirfd(ops_dir(fi)->dp), datasync);
}

/* ---- entering subjects -------------------------------------------------- */

/*
 * Each operation runs inside the subject of the node it acts on
 * (subj_enter/subj_leave), so a shred waits for it and everything after
 * the shred is refused: namespace operations answer ENOENT (the subject
 * is gone), data operations EIO (an open handle of a shredded file).
 */
#define SUBJ_WRAP(n, dead_err, call)                                                     \
	do {                                                                             \
		struct ops_node *n_ = (n);                                               \
		struct ops_subject *s_ = n_->subj;                                       \
		if (subj_enter(n_) < 0) {                                                \
			fuse_reply_err(req, dead_err);                                   \
			return;                                                          \
		}                                                                        \
		call;                                                                    \
		subj_leave(s_);                                                          \
	} while (0)

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	SUBJ_WRAP(ops_node(req, parent), ENOENT, do_mknod(req, parent, name, mode, rdev));
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	SUBJ_WRAP(ops_node(req, parent), ENOENT, do_mkdir(req, parent, name, mode));
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	SUBJ_WRAP(ops_node(req, parent), ENOENT, do_symlink(req, link, parent, name));
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	/* Different subjects never share an inode (different keys). */
	if (ops_node(req, ino)->subj != ops_node(req, parent)->subj) {
		fuse_reply_err(req, EXDEV);
		return;
	}
	SUBJ_WRAP(ops_node(req, parent), ENOENT, do_link(req, ino, parent, name));
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	SUBJ_WRAP(ops_node(req, parent), ENOENT, do_unlink(req, parent, name));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	SUBJ_WRAP(ops_node(req, parent), ENOENT, do_rmdir(req, parent, name));
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	/* A different subject on the other side is EXDEV (do_rename). */
	SUBJ_WRAP(ops_node(req, parent), ENOENT,
		  do_rename(req, parent, name, newparent, newname, flags));
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	after_init(req);
	/* fstat of an open handle of a shredded file: the handle fails. */
	SUBJ_WRAP(ops_node(req, ino), fi ? EIO : ENOENT, do_getattr(req, ino, fi));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	SUBJ_WRAP(ops_node(req, ino), EIO, do_setattr(req, ino, attr, valid, fi));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	SUBJ_WRAP(ops_node(req, ino), ENOENT, do_readlink(req, ino));
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	SUBJ_WRAP(ops_node(req, ino), ENOENT, do_access(req, ino, mask));
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	SUBJ_WRAP(ops_node(req, ino), ENOENT,
		  do_setxattr(req, ino, name, value, size, flags));
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	SUBJ_WRAP(ops_node(req, ino), ENOENT, do_removexattr(req, ino, name));
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	after_init(req);
	SUBJ_WRAP(ops_node(req, ino), ENOENT, do_open(req, ino, fi));
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	SUBJ_WRAP(ops_node(req, parent), ENOENT, do_create(req, parent, name, mode, fi));
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	SUBJ_WRAP(ops_node(req, ino), EIO, do_read(req, ino, size, off, fi));
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	SUBJ_WRAP(ops_node(req, ino), EIO, do_write(req, ino, buf, size, off, fi));
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	struct ops_subject *s = n->subj;

	if (subj_enter(n) < 0) {
		/* Shredded while open: nothing to record a path with. */
		handle_free(ops_fs(req), ops_handle(fi));
		fuse_reply_err(req, 0);
		return;
	}
	do_release(req, ino, fi);
	subj_leave(s);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	after_init(req);
	SUBJ_WRAP(ops_node(req, ino), ENOENT, do_opendir(req, ino, fi));
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi, bool plus)
{
	SUBJ_WRAP(ops_node(req, ino), ENOENT,
		  readdir_in(req, ino, size, offset, fi, plus));
}

/* ---- setup ------------------------------------------------------------------ */

const struct fuse_lowlevel_ops ops_lowlevel = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.link = op_link,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.access = op_access,
	.getxattr = op_getxattr,
	.setxattr = op_setxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	/* No getlk/setlk/flock: the kernel keeps locks locally, which is
	 * right for a single mount. */
};

static void ret_destroy(struct ops_fs *fs)
{
	if (!fs->ret)
		return;
	retention_holds_free(fs->ret->holds);
	pthread_rwlock_destroy(&fs->ret->lock);
	pthread_mutex_destroy(&fs->ret->clock_lock);
	free(fs->ret);
	fs->ret = NULL;
}

int ops_fs_init(struct ops_fs *fs, struct store *store, const struct ops_config *cfg)
{
	struct ops_node *root = &fs->root;
	struct stat st;
	int ret;

	memset(fs, 0, sizeof(*fs));
	fs->unpin_lock = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
	fs->unpin_done = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
	root->fd = -1;
	fs->reserve_fd = -1;
	atomic_init(&fs->disk_full, false);
	atomic_init(&fs->removals_active, 0);
	atomic_init(&fs->removals_gen, 0);
	if (!store || !store->mk)
		return -EINVAL;
	fs->store = store;
	fs->cfg = *cfg;
	atomic_init(&fs->pol_on, false);
	if (pthread_mutex_init(&fs->reserve_lock, NULL) != 0)
		return -ENOMEM;
	if (pthread_mutex_init(&fs->table_lock, NULL) != 0) {
		pthread_mutex_destroy(&fs->reserve_lock);
		return -ENOMEM;
	}
	if (pthread_mutex_init(&fs->pol_lock, NULL) != 0) {
		ret = -ENOMEM;
		goto fail_mutex;
	}
	if (pthread_mutex_init(&fs->reload_lock, NULL) != 0) {
		ret = -ENOMEM;
		goto fail_pol_lock;
	}
	if (pthread_mutex_init(&fs->subj_lock, NULL) != 0) {
		ret = -ENOMEM;
		goto fail_reload_lock;
	}
	fs->ret = calloc(1, sizeof(*fs->ret));
	if (!fs->ret || pthread_rwlock_init(&fs->ret->lock, NULL) != 0 ||
	    pthread_mutex_init(&fs->ret->clock_lock, NULL) != 0) {
		/* (A failed init leaves nothing to destroy on Linux.) */
		free(fs->ret);
		fs->ret = NULL;
		pthread_mutex_destroy(&fs->subj_lock);
		ret = -ENOMEM;
		goto fail_reload_lock;
	}
	if (pthread_rwlock_init(&root->lock, NULL) != 0) {
		ret = -ENOMEM;
		goto fail_reload_lock;
	}
	ret = creds_cache_new(CREDS_CACHE_SLOTS, CREDS_TTL_US, &fs->creds);
	if (ret < 0)
		goto fail_rwlock;
	ret = creds_rate_new(CREDS_RATE_SLOTS, &fs->rate);
	if (ret < 0)
		goto fail_creds;
	fs->nbuckets = OPS_INITIAL_BUCKETS;
	fs->buckets = calloc(fs->nbuckets, sizeof(*fs->buckets));
	if (!fs->buckets) {
		ret = -ENOMEM;
		goto fail_rate;
	}
	root->fd = openat(store->tree_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root->fd < 0) {
		ret = -errno;
		goto fail_buckets;
	}
	if (fstatat(root->fd, "", &st, AT_EMPTY_PATH) != 0) {
		ret = -errno;
		goto fail_fd;
	}
	root->dev = st.st_dev;
	root->ino = st.st_ino;
	root->type = S_IFDIR;
	node_perm_set_locked(root, &st); /* not yet shared */
	root->refs = 1;
	root->ring = keys_volume(store->mk);
	ret = names_diriv_load(root->fd, root->iv);
	if (ret < 0)
		goto fail_fd;
	root->iv_ok = true;
	ret = durable_open(&fs->durable);
	if (ret < 0)
		goto fail_fd;
	return 0;

fail_fd:
	close(root->fd);
	root->fd = -1;
fail_buckets:
	free(fs->buckets);
	fs->buckets = NULL;
fail_rate:
	creds_rate_free(fs->rate);
	fs->rate = NULL;
fail_creds:
	creds_cache_free(fs->creds);
	fs->creds = NULL;
fail_rwlock:
	pthread_rwlock_destroy(&root->lock);
	ret_destroy(fs);
	pthread_mutex_destroy(&fs->subj_lock);
fail_reload_lock:
	pthread_mutex_destroy(&fs->reload_lock);
fail_pol_lock:
	pthread_mutex_destroy(&fs->pol_lock);
fail_mutex:
	pthread_mutex_destroy(&fs->table_lock);
	pthread_mutex_destroy(&fs->reserve_lock);
	return ret;
}

/* Handles the kernel never released (the session ended with files still
 * open: no release comes any more, and no close record is written). */
static void node_free_handles(struct ops_node *n)
{
	while (n->open) {
		struct ops_handle *h = n->open;

		n->open = h->next;
		close(h->fd);
		free(h);
	}
}

/* The close records of n's handles still open (see ops.h). */
static void audit_unmount_handles(struct ops_fs *fs, struct ops_node *n)
{
	for (struct ops_handle *h = n->open; h; h = h->next) {
		/* A shredded subject's keys are wiped: its shred was recorded. */
		if (n->subj && atomic_load(&n->subj->dead))
			continue;
		tl_subj = n->subj;
		if (audit_release(fs, h, "still open at unmount") == 0)
			h->audit_seq = 0;
		tl_subj = NULL;
	}
}

void ops_audit_open_handles(struct ops_fs *fs)
{
	if (!fs->buckets || !fs->audit)
		return;
	for (size_t i = 0; i < fs->nbuckets; i++)
		for (struct ops_node *n = fs->buckets[i]; n; n = n->hnext)
			audit_unmount_handles(fs, n);
	for (struct ops_node *n = fs->detached; n; n = n->dnext)
		audit_unmount_handles(fs, n);
}

void ops_fs_destroy(struct ops_fs *fs)
{
	if (!fs->buckets)
		return;
	/* New directories' IVs reach the disk before the store is let go. */
	durable_close(fs->durable);
	fs->durable = NULL;
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct ops_node *n = fs->buckets[i], *next;

		for (; n; n = next) {
			next = n->hnext;
			node_free_handles(n);
			node_free(n);
		}
	}
	while (fs->dirs) {
		struct ops_dir *d = fs->dirs;

		fs->dirs = d->next;
		closedir(d->dp);
		pthread_mutex_destroy(&d->lock);
		free(d);
	}
	while (fs->detached) {
		struct ops_node *n = fs->detached;

		fs->detached = n->dnext;
		node_free_handles(n);
		node_free(n);
	}
	free(fs->buckets);
	fs->buckets = NULL;
	fs->count = 0;
	if (fs->root.fd >= 0)
		close(fs->root.fd);
	fs->root.fd = -1;
	crypt_wipe(fs->root.iv, sizeof(fs->root.iv));
	pthread_rwlock_destroy(&fs->root.lock);
	pol_put(fs->pol);
	fs->pol = NULL;
	/* Every node is gone, so every subject with it. */
	pthread_mutex_destroy(&fs->subj_lock);
	ret_destroy(fs);
	creds_rate_free(fs->rate);
	creds_cache_free(fs->creds);
	pthread_mutex_destroy(&fs->reload_lock);
	pthread_mutex_destroy(&fs->pol_lock);
	pthread_mutex_destroy(&fs->table_lock);
	if (fs->reserve_fd >= 0) {
		char *path = NULL;

		/* Nothing to keep: the next mount makes it again. */
		if (asprintf(&path, "%s/%s", fs->store->path, OPS_AUDIT_RESERVE_FILE) >=
		    0)
			(void)unlink(path);
		free(path);
		close(fs->reserve_fd);
		fs->reserve_fd = -1;
	}
	pthread_mutex_destroy(&fs->reserve_lock);
}

/* ---- live subject operations (control channel) ----------------------------- */

/* The background remover: what a shred moved to STORE/trash is deleted on
 * this thread at idle I/O priority, so a shred returns in milliseconds and
 * other users of the mount are not stalled by the filesystem freeing a
 * gigabyte. */
struct ops_reaper {
	pthread_t thread;     /* the remover */
	bool running;         /* thread started */
	pthread_mutex_t lock; /* guards stop and pending */
	pthread_cond_t cond;  /* signalled when work arrives or stop */
	bool stop;            /* unmounting: leave the rest for next time */
	bool pending;         /* trash/ may hold something */
	int trash_fd;         /* O_RDONLY fd of STORE/trash */
};

/* Removes everything below dirfd (closed on return), never following
 * symlinks; stops early (-EINTR) when the reaper is told to stop. */
static int reap_below(struct ops_reaper *r, int fd0)
{
	struct dirent *de;
	DIR *d = fdopendir(fd0);
	int ret = 0;

	if (!d) {
		ret = -errno;
		close(fd0);
		return ret;
	}
	while ((de = readdir(d)) != NULL) {
		bool stop;

		if (is_dot(de->d_name))
			continue;
		pthread_mutex_lock(&r->lock);
		stop = r->stop;
		pthread_mutex_unlock(&r->lock);
		if (stop) {
			ret = -EINTR;
			break;
		}
		if (unlinkat(dirfd(d), de->d_name, 0) == 0 || errno == ENOENT)
			continue;
		if (errno == EISDIR || errno == EPERM) {
			int fd = openat(dirfd(d), de->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (fd >= 0) {
				ret = reap_below(r, fd);
				if (ret < 0)
					break;
			}
			if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) != 0 &&
			    errno != ENOENT)
				ret = -errno;
		} else {
			ret = -errno;
		}
		if (ret == -EINTR)
			break;
		/* Directory offsets stay valid across our own removals. */
	}
	closedir(d);
	return ret;
}

static void *reaper_main(void *arg)
{
	struct ops_reaper *r = arg;

	/* Best effort: the remover yields the disk and the CPU to users. */
	(void)syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0,
		      3 << 13 /* IOPRIO_CLASS_IDLE */);
	sys_background_thread();
	for (;;) {
		int fd;

		pthread_mutex_lock(&r->lock);
		while (!r->stop && !r->pending)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stop) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		r->pending = false;
		pthread_mutex_unlock(&r->lock);
		fd = openat(r->trash_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0 && reap_below(r, fd) < 0)
			fuse_log(FUSE_LOG_WARNING,
				 "custodianfs: trash not fully removed (retried at "
				 "the next shred or mount)\n");
	}
	return NULL;
}

static void reaper_kick(struct ops_fs *fs)
{
	struct ops_reaper *r = fs->reaper;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->pending = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

int ops_reaper_start(struct ops_fs *fs)
{
	struct ops_reaper *r;
	int sfd, ret;

	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->trash_fd = -1;
	sfd = open(fs->store->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0) {
		ret = -errno;
		free(r);
		return ret;
	}
	if (mkdirat(sfd, OPS_TRASH_DIR, 0700) != 0 && errno != EEXIST) {
		ret = -errno;
		close(sfd);
		free(r);
		return ret;
	}
	r->trash_fd = openat(sfd, OPS_TRASH_DIR,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ret = r->trash_fd < 0 ? -errno : 0;
	close(sfd);
	if (ret < 0) {
		free(r);
		return ret;
	}
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->pending = true; /* what a previous run left */
	ret = -pthread_create(&r->thread, NULL, reaper_main, r);
	if (ret < 0) {
		pthread_mutex_destroy(&r->lock);
		pthread_cond_destroy(&r->cond);
		close(r->trash_fd);
		free(r);
		return ret;
	}
	r->running = true;
	fs->reaper = r;
	return 0;
}

void ops_reaper_stop(struct ops_fs *fs)
{
	struct ops_reaper *r = fs->reaper;

	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (r->running)
		pthread_join(r->thread, NULL);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	close(r->trash_fd);
	free(r);
	fs->reaper = NULL;
}

/* Tells the kernel to forget a killed subject: its root's entry, and the
 * pages and attributes of every node of it it knows (the nodes leave the
 * table).  Called with no lock held (the kernel may wait for requests). */
static void subj_forget_kernel(struct ops_fs *fs, struct ops_subject *s)
{
	struct ops_node **v = NULL, *parent = NULL;
	char *name = NULL;
	size_t n = 0;

	(void)subj_detach_nodes(fs, s, &v, &n, &parent, &name);
	if (fs->se && parent && name)
		(void)fuse_lowlevel_notify_inval_entry(fs->se, node_ino(fs, parent), name,
						       strlen(name));
	for (size_t i = 0; i < n; i++) {
		if (fs->se)
			(void)fuse_lowlevel_notify_inval_inode(fs->se, node_ino(fs, v[i]),
							       0, 0);
		node_unref(fs, v[i], 1);
	}
	if (parent)
		node_unref(fs, parent, 1);
	if (name) {
		crypt_wipe(name, strlen(name));
		free(name);
	}
	free(v);
}

/* A removal from the tree that the daemon makes itself, outside any
 * request: from removal_begin until removal_end, listings look at each
 * entry twice (node_get_as).  It ends after the removed entries' names
 * have left the node table. */
static void removal_begin(struct ops_fs *fs)
{
	atomic_fetch_add(&fs->removals_active, 1);
}

static void removal_end(struct ops_fs *fs)
{
	atomic_fetch_add(&fs->removals_gen, 1);
	atomic_fetch_sub(&fs->removals_active, 1);
}

static int subject_shred_in(struct ops_fs *fs, const char *id, const char *reason,
			    const char *operator_, struct subjects_certificate *cert);

int ops_subject_shred(struct ops_fs *fs, const char *id, const char *reason,
		      const char *operator_, struct subjects_certificate *cert)
{
	int ret;

	removal_begin(fs);
	ret = subject_shred_in(fs, id, reason, operator_, cert);
	removal_end(fs);
	return ret;
}

static int subject_shred_in(struct ops_fs *fs, const char *id, const char *reason,
			    const char *operator_, struct subjects_certificate *cert)
{
	struct subjects_certificate *dry = NULL;
	struct subjects_info *info = NULL;
	struct subjects_usage u;
	struct ops_subject *s = NULL;
	uint8_t hash[CRYPT_HASH_BYTES];
	char sback[SUBJECTS_BACKING_LEN + 1], tname[80];
	bool moved = false;
	int pfd = -1, ret;

	memset(cert, 0, sizeof(*cert));
	dry = calloc(1, sizeof(*dry));
	info = calloc(1, sizeof(*info));
	if (!dry || !info) {
		ret = -ENOMEM;
		goto out;
	}
	/* The engine's checks (hold, shredded, unknown, reason) and counts. */
	ret = subjects_shred(fs->store, NULL, id, reason, operator_, true, dry);
	if (ret < 0)
		goto out;
	memset(&u, 0, sizeof(u));
	u.files = dry->files;
	u.bytes = dry->bytes;
	u.cipher_bytes = dry->cipher_bytes;
	subjects_hash(fs->store->mk, id, hash);
	subjects_backing_name(hash, sback);
	ret = subjects_get(fs->store, hash, info);
	if (ret < 0)
		goto out;

	/* Unreachable first: no request gets in any more, none is inside. */
	s = subj_find(fs, hash);
	if (s) {
		subj_kill(s);
		subj_forget_kernel(fs, s);
	}
	if (info->parent[0] && subjects_resolve_dir(fs->store, info->parent, &pfd) == 0 &&
	    fs->reaper) {
		static atomic_uint seq;

		snprintf(tname, sizeof(tname), "%" PRIx64 "-%u", (uint64_t)clock_now_us(),
			 atomic_fetch_add(&seq, 1));
		if (renameat(pfd, sback, fs->reaper->trash_fd, tname) == 0)
			moved = true;
		else if (errno != ENOENT)
			fuse_log(FUSE_LOG_WARNING,
				 "custodianfs: a subject's directory could not be "
				 "moved to the trash: %s\n",
				 strerror(errno));
		(void)sys.fsync(pfd);
	}

	ret = subjects_destroy_key(fs->store, fs->audit, id, reason, operator_, &u, cert);
	if (cert->ledger_seq == 0) {
		/* Nothing destroyed (a hold came in between...): put it back;
		 * the next lookup opens the subject again. */
		if (moved && renameat(fs->reaper->trash_fd, tname, pfd, sback) != 0)
			fuse_log(FUSE_LOG_ERR,
				 "custodianfs: a subject whose shred failed could not "
				 "be moved back from the trash: %s\n",
				 strerror(errno));
		goto out;
	}
	if (!moved && pfd >= 0) {
		/* Could not move it: remove it here (slower, but complete). */
		int r2 = subjects_remove_tree(fs->store, hash, pfd);

		cert->tree_removed = r2 == 0 || r2 == -ENOENT;
	} else {
		cert->tree_removed = true; /* queued for the remover */
		reaper_kick(fs);
	}
	if (fs->audit && audit_flush(fs->audit) < 0)
		fuse_log(FUSE_LOG_ERR, "custodianfs: shred record not yet committed\n");
out:
	if (pfd >= 0)
		close(pfd);
	subj_unref(s);
	if (info) {
		crypt_wipe(info, sizeof(*info));
		free(info);
	}
	if (dry) {
		crypt_wipe(dry, sizeof(*dry));
		free(dry);
	}
	return ret;
}

int ops_subject_flag(struct ops_fs *fs, pid_t pid, const char *id, const char *verb,
		     bool hold, bool on, const char *reason, bool *changed)
{
	uint8_t hash[CRYPT_HASH_BYTES];
	struct ops_subject *s;
	int ret, aret;

	*changed = false;
	ret = subjects_id_check(id);
	if (ret < 0)
		return ret;
	subjects_hash(fs->store->mk, id, hash);
	ret = hold ? subjects_set_held(fs->store, hash, on, reason, changed)
		   : subjects_set_restricted(fs->store, hash, on, reason, changed);
	/* The next operation sees the change. */
	s = subj_find(fs, hash);
	if (s) {
		atomic_store(&s->flags_us, 0);
		subj_unref(s);
	}
	aret = audit_self(fs, pid, verb, ret, hash, NULL, NULL);
	if (aret == 0 && fs->audit)
		aret = audit_flush(fs->audit);
	if (ret == 0 && aret < 0)
		ret = aret;
	return ret;
}

int ops_holds_reload(struct ops_fs *fs)
{
	return ret_holds_reload(fs);
}

/* ---- live retention sweep (control channel) --------------------------------- */

/* What a live sweep erased, for the kernel's caches afterwards. */
struct sweep_done {
	char **files;    /* paths of erased files (sorted after the sweep) */
	size_t nfiles;   /* used */
	size_t cap;      /* allocated */
	char **subjects; /* paths of shredded subjects */
	size_t nsubj;    /* used */
	size_t scap;     /* allocated */
};

static int sweep_push(char ***v, size_t *n, size_t *cap, const char *s)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		char **nv = realloc(*v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[*n] = strdup(s);
	if (!(*v)[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

static int sweep_item(const struct retention_item *it, void *arg)
{
	struct sweep_done *d = arg;

	if (!it->erased || !it->path || !it->path[0] || it->with_subject)
		return 0;
	/* Out of memory only costs cache validity (entries time out). */
	if (it->kind == RETENTION_SUBJECT)
		(void)sweep_push(&d->subjects, &d->nsubj, &d->scap, it->path);
	else if (it->state != RETENTION_PENDING)
		(void)sweep_push(&d->files, &d->nfiles, &d->cap, it->path);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One name of a node that a sweep erased: the node loses it (and leaves
 * the table if it has no other), the kernel forgets the entry and the
 * pages. */
struct sweep_inval {
	struct ops_node *node;   /* referenced */
	struct ops_node *parent; /* referenced (unless the root) */
	char *name;              /* plaintext name (malloc'd) */
};

static void sweep_forget_files(struct ops_fs *fs, struct sweep_done *d)
{
	struct sweep_inval *v = NULL;
	size_t n = 0, cap = 0;
	struct ops_node *dead = NULL;
	char path[PATH_MAX];

	if (d->nfiles == 0)
		return;
	qsort(d->files, d->nfiles, sizeof(*d->files), cmp_str);
	pthread_mutex_lock(&fs->table_lock);
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct ops_node *x, *xnext;

		for (x = fs->buckets[i]; x; x = xnext) {
			struct ops_name *nm, *next;

			/* x may leave the table below (no name left). */
			xnext = x->hnext;
			if (!S_ISREG(x->type))
				continue;
			for (nm = x->names; nm; nm = next) {
				const char *key = path;
				int len;

				next = nm->next;
				len = nm->parent ? node_path_locked(fs, nm->parent, false,
								    path, sizeof(path))
						 : -ENOENT;
				if (len < 0 ||
				    snprintf(path + len, sizeof(path) - (size_t)len,
					     "%s%s", len == 1 ? "" : "/",
					     nm->name) >= (int)sizeof(path) - len ||
				    !bsearch(&key, d->files, d->nfiles, sizeof(*d->files),
					     cmp_str))
					continue;
				if (n == cap) {
					size_t nc = cap ? cap * 2 : 16;
					struct sweep_inval *nv =
						realloc(v, nc * sizeof(*nv));

					if (!nv)
						continue;
					v = nv;
					cap = nc;
				}
				v[n].name = strdup(nm->name);
				if (!v[n].name)
					continue;
				v[n].node = x;
				v[n].parent = nm->parent;
				x->refs++;
				if (nm->parent != &fs->root)
					nm->parent->refs++;
				n++;
				/* Its backing entry is gone: so is the name. */
				node_name_drop_locked(fs, x, nm->parent, nm->backing,
						      &dead);
			}
		}
	}
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
	for (size_t i = 0; i < n; i++) {
		if (fs->se) {
			(void)fuse_lowlevel_notify_inval_entry(
				fs->se, node_ino(fs, v[i].parent), v[i].name,
				strlen(v[i].name));
			(void)fuse_lowlevel_notify_inval_inode(
				fs->se, node_ino(fs, v[i].node), 0, 0);
		}
		node_unref(fs, v[i].node, 1);
		node_unref(fs, v[i].parent, 1);
		crypt_wipe(v[i].name, strlen(v[i].name));
		free(v[i].name);
	}
	free(v);
}

static int retention_sweep_in(struct ops_fs *fs, pid_t pid, int64_t system_us,
			      int64_t max_jump_us, bool accept, const char *operator_,
			      struct retention_stats *stats, int64_t *now_out, char *msg,
			      size_t cap);

int ops_retention_sweep(struct ops_fs *fs, pid_t pid, int64_t system_us,
			int64_t max_jump_us, bool accept, const char *operator_,
			struct retention_stats *stats, int64_t *now_out, char *msg,
			size_t cap)
{
	int ret;

	removal_begin(fs);
	ret = retention_sweep_in(fs, pid, system_us, max_jump_us, accept, operator_,
				 stats, now_out, msg, cap);
	removal_end(fs);
	return ret;
}

static int retention_sweep_in(struct ops_fs *fs, pid_t pid, int64_t system_us,
			      int64_t max_jump_us, bool accept, const char *operator_,
			      struct retention_stats *stats, int64_t *now_out, char *msg,
			      size_t cap)
{
	struct retention_sweep_opts o;
	struct sweep_done d;
	struct clock_event ev;
	struct ops_policy *pol;
	char note[160] = "";
	int64_t now;
	int ret;

	memset(stats, 0, sizeof(*stats));
	memset(&d, 0, sizeof(d));
	msg[0] = '\0';
	*now_out = 0;
	ret = clock_compliance_at(fs->store->cat, system_us, max_jump_us,
				  accept ? CLOCK_ACCEPT_JUMP : 0, &now, &ev);
	if (ret < 0) {
		snprintf(msg, cap, "reading the compliance clock: %s", strerror(-ret));
		return ret;
	}
	if (ev.kind == CLOCK_EV_SET_BACK || ev.kind == CLOCK_EV_JUMP_AHEAD) {
		bool refused = ev.kind == CLOCK_EV_JUMP_AHEAD && !accept;

		if (ev.kind == CLOCK_EV_JUMP_AHEAD && accept)
			ev.accepted = true;
		clock_event_describe(&ev, note, sizeof(note));
		if (audit_self(fs, pid, AUDIT_OP_ALERT, refused ? EPERM : 0, NULL, note,
			       NULL) < 0) {
			snprintf(msg, cap,
				 "cannot record the clock event; nothing erased");
			return -EIO;
		}
		if (refused) {
			snprintf(msg, cap, "%s", note);
			return -ETIME;
		}
	}
	pthread_mutex_lock(&fs->ret->clock_lock);
	ret_clock_set_locked(fs, now, NULL);
	pthread_mutex_unlock(&fs->ret->clock_lock);

	pthread_mutex_lock(&fs->pol_lock);
	pol = fs->pol;
	if (pol)
		atomic_fetch_add(&pol->refs, 1);
	pthread_mutex_unlock(&fs->pol_lock);
	memset(&o, 0, sizeof(o));
	o.now_us = now;
	o.audit = fs->audit;
	o.operator_ = operator_;
	o.clock_note = note[0] ? note : NULL;
	o.item = sweep_item;
	o.arg = &d;
	ret = retention_sweep(fs->store, pol ? pol->p : NULL, &o, stats);
	pol_put(pol);
	if (ret < 0)
		snprintf(msg, cap, "sweep stopped: %s", strerror(-ret));

	/* What went must vanish from the kernel's caches at once. */
	for (size_t i = 0; i < d.nsubj; i++) {
		const char *id = strrchr(d.subjects[i], '/');
		uint8_t hash[CRYPT_HASH_BYTES];
		struct ops_subject *s;

		subjects_hash(fs->store->mk, id ? id + 1 : d.subjects[i], hash);
		s = subj_find(fs, hash);
		/* (Without a node the kernel holds no entry for it.) */
		if (s) {
			subj_kill(s);
			subj_forget_kernel(fs, s);
			subj_unref(s);
		}
	}
	sweep_forget_files(fs, &d);
	if (fs->audit && audit_flush(fs->audit) < 0 && ret == 0) {
		snprintf(msg, cap, "sweep records not yet committed");
		ret = -EIO;
	}
	for (size_t i = 0; i < d.nfiles; i++) {
		crypt_wipe(d.files[i], strlen(d.files[i]));
		free(d.files[i]);
	}
	for (size_t i = 0; i < d.nsubj; i++) {
		crypt_wipe(d.subjects[i], strlen(d.subjects[i]));
		free(d.subjects[i]);
	}
	free(d.files);
	free(d.subjects);
	*now_out = now;
	return ret;
}
