/*
 * ops.c — the FUSE low-level operations of custodianfs and the node table
 * they share.
 *
 * Each kernel inode is a struct ops_node (its address is the FUSE nodeid)
 * holding an O_PATH fd of the backing object in STORE/tree, found again by
 * backing (st_dev, st_ino) in a hash table, so inode numbers are the
 * backing ones and stable across remounts.  Names are encrypted with
 * names.h, contents with format.h, symlink targets with linktarget.h; the
 * kernel enforces mode bits (default_permissions), so the operations only
 * translate.  Modelled on libfuse's passthrough_ll.c.
 *
 * Locking:
 *   - fs->table_lock (mutex) guards the hash table and each node's refs,
 *     parent and name.  It is held only for table operations, never
 *     across I/O or crypto.
 *   - node->lock (rwlock) guards a regular file's content and its shared
 *     header state: shared for read, exclusive for write, truncate and
 *     header load (format.h's rule).
 *   - Lock order: table_lock, then a node's lock; never the reverse.  (No
 *     code path currently holds both.)
 *   - Namespace races (two creates of one name, rmdir against create
 *     inside) are excluded by the kernel's directory locks: every change
 *     goes through this one mount.
 *
 * Every handler saves errno right after the failing call and replies
 * exactly once.
 */
#include "ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "clock.h"
#include "linktarget.h"
#include "names.h"
#include "sys.h"

_Static_assert(sizeof(fuse_ino_t) >= sizeof(uintptr_t), "fuse_ino_t must hold a pointer");

#define OPS_MAX_WRITE (1U << 20)
#define OPS_INITIAL_BUCKETS 4096

/* An open regular file. */
struct ops_handle {
	int fd; /* backing fd: O_RDWR if the caller may write, else O_RDONLY */
};

/* An open directory. */
struct ops_dir {
	pthread_mutex_t lock; /* guards the fields below between requests */
	DIR *dp;              /* backing directory stream */
	off_t offset;         /* offset of the next entry to return */
	struct dirent *entry; /* read but not yet returned (did not fit) */
	unsigned hidden;      /* names that failed to decrypt, this listing */
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

/* Converts a backing stat to what the kernel sees: plaintext sizes. */
static void stat_convert(const struct ops_node *n, int fd, struct stat *st)
{
	if (S_ISREG(st->st_mode)) {
		off_t ps = format_plain_size(st->st_size);

		/* An impossible size is a damaged file: reads give EIO. */
		st->st_size = ps < 0 ? 0 : ps;
	} else if (S_ISLNK(st->st_mode) && n) {
		char stored[LINKTARGET_STORED_MAX];
		char plain[LINKTARGET_PLAIN_MAX + 1];
		ssize_t len = readlinkat(fd, "", stored, sizeof(stored) - 1);

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

/* fstat of a node (or any O_PATH fd), converted. */
static int node_stat(const struct ops_node *n, int fd, struct stat *st)
{
	if (fstatat(fd, "", st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	stat_convert(n, fd, st);
	return 0;
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
}

/* Caller holds table_lock. */
static void table_remove(struct ops_fs *fs, struct ops_node *n)
{
	struct ops_node **pp = &fs->buckets[node_hash(n->dev, n->ino, fs->nbuckets)];

	while (*pp && *pp != n)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = n->hnext;
		fs->count--;
	}
}

static void node_free(struct ops_node *n)
{
	if (n->fd >= 0)
		close(n->fd);
	pthread_rwlock_destroy(&n->lock);
	free(n->name);
	free(n);
}

/* Drops `count` references; nodes that reach zero leave the table and are
 * chained on *dead (via hnext) for the caller to free after unlocking.
 * Caller holds table_lock. */
static void node_unref_locked(struct ops_fs *fs, struct ops_node *n, uint64_t count,
			      struct ops_node **dead)
{
	while (n && n != &fs->root) {
		struct ops_node *parent;

		if (n->refs < count) {
			fuse_log(FUSE_LOG_ERR, "custodianfs: node refcount underflow\n");
			n->refs = count;
		}
		n->refs -= count;
		if (n->refs > 0)
			return;
		table_remove(fs, n);
		parent = n->parent;
		n->parent = NULL;
		n->hnext = *dead;
		*dead = n;
		/* Its reference on the parent goes with it. */
		n = parent;
		count = 1;
	}
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

	if (n == &fs->root || count == 0)
		return;
	pthread_mutex_lock(&fs->table_lock);
	node_unref_locked(fs, n, count, &dead);
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
}

/* Points n at (parent, name): last name wins.  Caller holds table_lock;
 * old parents that lose their last reference go on *dead. */
static void node_rename_locked(struct ops_fs *fs, struct ops_node *n,
			       struct ops_node *parent, const char *name,
			       struct ops_node **dead)
{
	char *copy;

	if (n == &fs->root)
		return;
	if (n->parent == parent && n->name && strcmp(n->name, name) == 0)
		return;
	copy = strdup(name);
	if (!copy)
		return; /* keep the old name: paths are advisory until policy */
	free(n->name);
	n->name = copy;
	if (n->parent != parent) {
		struct ops_node *old = n->parent;

		if (parent != &fs->root)
			parent->refs++;
		n->parent = parent;
		node_unref_locked(fs, old, 1, dead);
	}
}

int ops_node_path(struct ops_fs *fs, const struct ops_node *n, char *buf, size_t cap)
{
	size_t pos = cap;
	int ret = 0;

	if (cap < 2)
		return -ENAMETOOLONG;
	buf[--pos] = '\0';
	pthread_mutex_lock(&fs->table_lock);
	for (; n && n != &fs->root; n = n->parent) {
		size_t len = n->name ? strlen(n->name) : 0;

		if (!n->name || !n->parent) {
			/* Detached: never looked up by name (cannot happen for
			 * nodes the kernel reached from the root). */
			ret = -ENOENT;
			goto out;
		}
		if (pos < len + 1) {
			ret = -ENAMETOOLONG;
			goto out;
		}
		pos -= len;
		memcpy(buf + pos, n->name, len);
		buf[--pos] = '/';
	}
	if (pos == cap - 1) {
		if (pos < 1) {
			ret = -ENAMETOOLONG;
			goto out;
		}
		buf[--pos] = '/';
	}
	memmove(buf, buf + pos, cap - pos);
	ret = (int)(cap - pos - 1);
out:
	pthread_mutex_unlock(&fs->table_lock);
	return ret;
}

/*
 * Finds or creates the node for backing entry `backing` of directory
 * `parent` (plaintext `name`), takes one kernel reference on it, and fills
 * the entry reply.  iv, if not NULL, is a freshly created directory's IV
 * (saves re-reading it).
 */
static int node_get(struct ops_fs *fs, struct ops_node *parent, const char *backing,
		    const char *name, const uint8_t *iv, struct fuse_entry_param *e)
{
	struct ops_node *n = NULL, *found, *dead = NULL;
	struct stat st;
	int fd, ret;

	memset(e, 0, sizeof(*e));
	fd = openat(parent->fd, backing, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
		ret = -errno;
		goto out;
	}

	pthread_mutex_lock(&fs->table_lock);
	found = table_find(fs, st.st_dev, st.st_ino);
	if (found) {
		found->refs++;
		node_rename_locked(fs, found, parent, name, &dead);
	}
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
	dead = NULL;

	if (!found) {
		/* Built outside the lock: loading a directory IV is I/O. */
		n = calloc(1, sizeof(*n));
		if (!n || !(n->name = strdup(name))) {
			ret = -ENOMEM;
			goto out;
		}
		n->fd = -1;
		n->dev = st.st_dev;
		n->ino = st.st_ino;
		n->type = st.st_mode & S_IFMT;
		n->ring = parent->ring;
		n->ff.fd = -1;
		n->ff.ring = n->ring;
		if (pthread_rwlock_init(&n->lock, NULL) != 0) {
			free(n->name);
			free(n);
			n = NULL;
			ret = -ENOMEM;
			goto out;
		}
		if (S_ISDIR(st.st_mode)) {
			if (iv) {
				memcpy(n->iv, iv, sizeof(n->iv));
				n->iv_ok = true;
			} else {
				/* A directory without its IV still stats and can
				 * be removed; naming inside it fails with EIO. */
				n->iv_ok = names_diriv_load(fd, n->iv) == 0;
			}
		}

		pthread_mutex_lock(&fs->table_lock);
		found = table_find(fs, st.st_dev, st.st_ino);
		if (found) {
			/* Another thread won the race; use its node. */
			found->refs++;
			node_rename_locked(fs, found, parent, name, &dead);
		} else {
			n->fd = fd;
			fd = -1;
			n->refs = 1;
			n->parent = parent;
			if (parent != &fs->root)
				parent->refs++;
			n->generation = ++fs->next_generation;
			table_insert(fs, n);
			found = n;
			n = NULL;
		}
		pthread_mutex_unlock(&fs->table_lock);
		free_dead(dead);
	}

	stat_convert(found, found->fd, &st);
	e->ino = node_ino(fs, found);
	e->generation = found->generation;
	e->attr = st;
	e->attr_timeout = fs->cfg.attr_timeout;
	e->entry_timeout = fs->cfg.entry_timeout;
	ret = 0;
out:
	if (n)
		node_free(n);
	if (fd >= 0)
		close(fd);
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
	/* We do not clear setuid bits on write ourselves: let the kernel. */
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

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct fuse_entry_param e;
	struct names_enc enc;
	int ret;

	ret = dir_encrypt(dir, name, &enc);
	if (ret == 0)
		ret = node_get(fs, dir, enc.backing, name, NULL, &e);
	if (ret == -ENOENT) {
		/* Negative entry: cached like a positive one, since every
		 * create goes through this mount and invalidates it. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->cfg.entry_timeout;
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

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct fuse_entry_param e;
	struct names_enc enc;
	bool made = false;
	uid_t uid;
	gid_t gid;
	int fd = -1, ret;

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
	ret = node_get(fs, dir, enc.backing, name, NULL, &e);
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0) {
		if (made)
			undo_entry(dir, &enc, 0);
		else if (ret != -EEXIST)
			sidecar_drop(dir->fd, &enc);
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct fuse_entry_param e;
	struct names_enc enc;
	bool made = false;
	uid_t uid;
	gid_t gid;
	int dfd = -1, ret;

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
	ret = names_diriv_create(dfd, iv);
	if (ret < 0)
		goto out;
	if (fchownat(dfd, "", uid, gid, AT_EMPTY_PATH) != 0) {
		ret = -errno;
		goto out;
	}
	ret = node_get(fs, dir, enc.backing, name, iv, &e);
out:
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

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	char stored[LINKTARGET_STORED_MAX];
	struct fuse_entry_param e;
	struct names_enc enc;
	bool made = false;
	uid_t uid;
	gid_t gid;
	int ret;

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
	ret = node_get(fs, dir, enc.backing, name, NULL, &e);
out:
	if (ret < 0) {
		if (made)
			undo_entry(dir, &enc, 0);
		else if (ret != -EEXIST)
			sidecar_drop(dir->fd, &enc);
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &e);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *n = ops_node(req, ino);
	struct ops_node *dir = ops_node(req, parent);
	struct fuse_entry_param e;
	struct names_enc enc;
	bool made = false;
	int ret;

	/* Different keyrings (subjects) cannot share an inode's content. */
	if (n->ring != dir->ring) {
		ret = -EXDEV;
		goto out;
	}
	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = names_long_store(dir->fd, &enc);
	if (ret < 0)
		goto out;
	if (linkat(n->fd, "", dir->fd, enc.backing, AT_EMPTY_PATH) != 0) {
		ret = -errno;
		goto out;
	}
	made = true;
	ret = node_get(fs, dir, enc.backing, name, NULL, &e);
out:
	if (ret < 0) {
		if (made)
			undo_entry(dir, &enc, 0);
		else if (ret != -EEXIST)
			sidecar_drop(dir->fd, &enc);
		fuse_reply_err(req, -ret);
		return;
	}
	reply_entry(req, &e);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ops_node *dir = ops_node(req, parent);
	struct names_enc enc;
	int ret;

	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	if (unlinkat(dir->fd, enc.backing, 0) != 0) {
		ret = -errno;
		goto out;
	}
	sidecar_drop(dir->fd, &enc);
out:
	fuse_reply_err(req, -ret);
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
};

/* Opens backing entry `backing` of dirfd; -ENOTEMPTY unless it holds
 * nothing but the store's own entries (an entry whose name does not
 * decrypt still holds data, so it counts).  Then strips those entries,
 * the IV last, so the directory stays readable as long as possible. */
static int dying_dir_strip(int dirfd, const char *backing, struct dying_dir *dd)
{
	struct dirent *de;
	int dfd;

	memset(dd, 0, sizeof(*dd));
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
	if (unlinkat(dfd, NAMES_DIRIV_FILE, 0) == 0)
		dd->iv_gone = true;
	return 0;
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

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct ops_node *dir = ops_node(req, parent);
	struct dying_dir dd = {.dp = NULL};
	struct names_enc enc;
	int ret;

	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = dying_dir_strip(dir->fd, enc.backing, &dd);
	if (ret < 0)
		goto out;
	if (unlinkat(dir->fd, enc.backing, AT_REMOVEDIR) != 0) {
		ret = -errno;
		goto out;
	}
	sidecar_drop(dir->fd, &enc);
out:
	dying_dir_end(&dd, ret < 0);
	fuse_reply_err(req, -ret);
}

/* Points the node of entry `backing` in dir (if the kernel knows it) at
 * (dir, name). */
static void rename_node(struct ops_fs *fs, struct ops_node *dir, const char *backing,
			const char *name)
{
	struct ops_node *n, *dead = NULL;
	struct stat st;

	if (fstatat(dir->fd, backing, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return;
	pthread_mutex_lock(&fs->table_lock);
	n = table_find(fs, st.st_dev, st.st_ino);
	if (n)
		node_rename_locked(fs, n, dir, name, &dead);
	pthread_mutex_unlock(&fs->table_lock);
	free_dead(dead);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname, unsigned int flags)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct ops_node *ndir = ops_node(req, newparent);
	struct names_enc oldenc, newenc;
	struct dying_dir dd = {.dp = NULL};
	bool exchange = flags & RENAME_EXCHANGE;
	struct stat st;
	int ret;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE)) {
		ret = -EINVAL;
		goto out;
	}
	if (dir->ring != ndir->ring) {
		ret = -EXDEV;
		goto out;
	}
	ret = dir_encrypt(dir, name, &oldenc);
	if (ret == 0)
		ret = dir_encrypt(ndir, newname, &newenc);
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
	if (!(flags & (RENAME_EXCHANGE | RENAME_NOREPLACE)) &&
	    fstatat(ndir->fd, newenc.backing, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISDIR(st.st_mode)) {
		ret = dying_dir_strip(ndir->fd, newenc.backing, &dd);
		if (ret < 0)
			goto out;
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
	rename_node(fs, ndir, newenc.backing, newname);
	if (exchange)
		rename_node(fs, dir, oldenc.backing, name);
out:
	dying_dir_end(&dd, ret < 0);
	fuse_reply_err(req, -ret);
}

/* ---- attributes ----------------------------------------------------------- */

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	struct stat st;
	int ret;

	(void)fi;
	ret = node_stat(n, n->fd, &st);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, ops_fs(req)->cfg.attr_timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid,
		       struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	char proc[64];
	struct stat st;
	int tfd = -1, ret = 0;

	proc_path(proc, n->fd);
	if ((valid & FUSE_SET_ATTR_MODE) && !S_ISLNK(n->type)) {
		if (chmod(proc, attr->st_mode & 07777) != 0) {
			ret = -errno;
			goto out;
		}
	}
	if (valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
		uid_t uid = (valid & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
		gid_t gid = (valid & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;

		if (fchownat(n->fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) !=
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
		if (fi) {
			fd = ops_handle(fi)->fd;
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
		if (utimensat(n->fd, "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) {
			ret = -errno;
			goto out;
		}
	}
	ret = node_stat(n, n->fd, &st);
out:
	if (tfd >= 0)
		close(tfd);
	if (ret < 0)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, ops_fs(req)->cfg.attr_timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct ops_node *n = ops_node(req, ino);
	char stored[LINKTARGET_STORED_MAX];
	char plain[LINKTARGET_PLAIN_MAX + 1];
	ssize_t len;
	int ret;

	len = readlinkat(n->fd, "", stored, sizeof(stored));
	if (len < 0) {
		fuse_reply_err(req, errno);
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

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct ops_node *n = ops_node(req, ino);
	struct stat st;

	/* Mode bits are the kernel's (default_permissions). */
	(void)mask;
	if (fstatat(n->fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
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

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, ENOSYS);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	(void)name;
	fuse_reply_err(req, ENOSYS);
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

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *n = ops_node(req, ino);
	struct ops_handle *h = NULL;
	char proc[64];
	int fd = -1, ret;

	if (!S_ISREG(n->type)) {
		ret = S_ISDIR(n->type) ? -EISDIR : -EINVAL;
		goto out;
	}
	proc_path(proc, n->fd);
	fd = open(proc, backing_flags(fs, fi->flags));
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	h = malloc(sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto out;
	}
	h->fd = fd;
	if (fi->flags & O_TRUNC) {
		ret = node_truncate(n, fd, 0);
	} else {
		pthread_rwlock_wrlock(&n->lock);
		ret = node_load_header(n, fd);
		pthread_rwlock_unlock(&n->lock);
	}
	if (ret < 0)
		goto out;
	fi->fh = (uintptr_t)h;
	/* Every change passes through this mount: the page cache stays
	 * valid from one open to the next. */
	fi->keep_cache = 1;
	if (fuse_reply_open(req, fi) != 0) {
		/* Interrupted: no release will come for this handle. */
		close(fd);
		free(h);
	}
	return;
out:
	if (fd >= 0)
		close(fd);
	free(h);
	fuse_reply_err(req, -ret);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, parent);
	struct fuse_entry_param e;
	struct ops_handle *h = NULL;
	struct format_file f;
	struct names_enc enc;
	struct ops_node *n;
	bool made = false, have_entry = false;
	uid_t uid;
	gid_t gid;
	int fd = -1, ret;

	ret = dir_encrypt(dir, name, &enc);
	if (ret < 0)
		goto out;
	ret = new_owner(req, dir, &uid, &gid);
	if (ret < 0)
		goto out;
	h = malloc(sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto out;
	}
	ret = names_long_store(dir->fd, &enc);
	if (ret < 0)
		goto out;
	fd = openat(dir->fd, enc.backing,
		    (backing_flags(fs, fi->flags) & ~O_ACCMODE) | O_RDWR | O_CREAT |
			    O_EXCL | O_NOFOLLOW,
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
	if (ret < 0)
		goto out;
	ret = node_get(fs, dir, enc.backing, name, NULL, &e);
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
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 1;
	if (fuse_reply_create(req, &e, fi) != 0) {
		close(fd);
		free(h);
		node_unref(fs, n, 1);
	}
	return;
out:
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

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
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
	r = format_file_read(&f, buf, size, off);
	pthread_rwlock_unlock(&n->lock);
	if (r < 0) {
		fuse_reply_err(req, (int)-r);
		return;
	}
	fuse_reply_buf(req, (const char *)buf, (size_t)r);
	crypt_wipe(buf, (size_t)r);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	struct format_file f;
	ssize_t r;

	pthread_rwlock_wrlock(&n->lock);
	f = n->ff;
	f.fd = ops_handle(fi)->fd;
	r = format_file_write(&f, buf, size, off);
	n->ff.have_header = f.have_header;
	n->ff.hdr = f.hdr;
	pthread_rwlock_unlock(&n->lock);
	if (r < 0)
		fuse_reply_err(req, (int)-r);
	else
		fuse_reply_write(req, (size_t)r);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* Writes are not buffered here: nothing to push. */
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_handle *h = ops_handle(fi);

	(void)ino;
	close(h->fd);
	free(h);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	int fd = ops_handle(fi)->fd;
	int r;

	(void)ino;
	r = datasync ? sys.fdatasync(fd) : sys.fsync(fd);
	fuse_reply_err(req, r != 0 ? errno : 0);
}

/* ---- directories ---------------------------------------------------------- */

static struct ops_dir *ops_dir(struct fuse_file_info *fi)
{
	return (struct ops_dir *)(uintptr_t)fi->fh;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct ops_node *n = ops_node(req, ino);
	struct ops_dir *d;
	int fd, err;

	if (!n->iv_ok) {
		fuse_reply_err(req, EIO);
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
	if (fuse_reply_open(req, fi) != 0) {
		closedir(d->dp);
		pthread_mutex_destroy(&d->lock);
		free(d);
	}
}

static bool is_dot(const char *name)
{
	return name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset,
		       struct fuse_file_info *fi, bool plus)
{
	struct ops_fs *fs = ops_fs(req);
	struct ops_node *dir = ops_node(req, ino);
	struct ops_dir *d = ops_dir(fi);
	char plain[NAMES_PLAIN_MAX + 1];
	size_t rem = size;
	char *buf, *p;
	int err = 0;

	buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
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
				int r = node_get(fs, dir, d->entry->d_name, plain, NULL,
						 &e);

				if (r == -ENOENT) {
					/* Removed since it was listed. */
					d->entry = NULL;
					d->offset = nextoff;
					continue;
				}
				if (r == -EMFILE || r == -ENFILE || r == -ENOMEM) {
					/* Out of descriptors for nodes: send the name
					 * alone (nodeid 0), as plain readdir would; a
					 * later lookup may succeed. */
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
	crypt_wipe(plain, sizeof(plain));
	/* Entries already in the buffer carry lookup references: send them
	 * and report the error only if there are none. */
	if (err && rem == size)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, size - rem);
	crypt_wipe(buf, size - rem);
	free(buf);
}

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
	closedir(d->dp);
	pthread_mutex_destroy(&d->lock);
	free(d);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	int fd = dirfd(ops_dir(fi)->dp);
	int r;

	(void)ino;
	r = datasync ? sys.fdatasync(fd) : sys.fsync(fd);
	fuse_reply_err(req, r != 0 ? errno : 0);
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

int ops_fs_init(struct ops_fs *fs, struct store *store, const struct ops_config *cfg)
{
	struct ops_node *root = &fs->root;
	struct stat st;
	int ret;

	memset(fs, 0, sizeof(*fs));
	root->fd = -1;
	if (!store || !store->mk)
		return -EINVAL;
	fs->store = store;
	fs->cfg = *cfg;
	if (pthread_mutex_init(&fs->table_lock, NULL) != 0)
		return -ENOMEM;
	if (pthread_rwlock_init(&root->lock, NULL) != 0) {
		ret = -ENOMEM;
		goto fail_mutex;
	}
	fs->nbuckets = OPS_INITIAL_BUCKETS;
	fs->buckets = calloc(fs->nbuckets, sizeof(*fs->buckets));
	if (!fs->buckets) {
		ret = -ENOMEM;
		goto fail_rwlock;
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
	root->refs = 1;
	root->ring = keys_volume(store->mk);
	ret = names_diriv_load(root->fd, root->iv);
	if (ret < 0)
		goto fail_fd;
	root->iv_ok = true;
	return 0;

fail_fd:
	close(root->fd);
	root->fd = -1;
fail_buckets:
	free(fs->buckets);
	fs->buckets = NULL;
fail_rwlock:
	pthread_rwlock_destroy(&root->lock);
fail_mutex:
	pthread_mutex_destroy(&fs->table_lock);
	return ret;
}

void ops_fs_destroy(struct ops_fs *fs)
{
	if (!fs->buckets)
		return;
	for (size_t i = 0; i < fs->nbuckets; i++) {
		struct ops_node *n = fs->buckets[i], *next;

		for (; n; n = next) {
			next = n->hnext;
			node_free(n);
		}
	}
	free(fs->buckets);
	fs->buckets = NULL;
	fs->count = 0;
	if (fs->root.fd >= 0)
		close(fs->root.fd);
	fs->root.fd = -1;
	crypt_wipe(fs->root.iv, sizeof(fs->root.iv));
	pthread_rwlock_destroy(&fs->root.lock);
	pthread_mutex_destroy(&fs->table_lock);
}
