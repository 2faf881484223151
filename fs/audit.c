/*
 * audit.c — the audit log: record encoding, the chain, the journal, the
 * writer thread, replay after a crash, verification (see audit.h).
 *
 * Owns the one canonical encoding of a record (the MAC input, also the
 * journal body; byte for byte in docs/audit.md), the lock discipline that
 * keeps the chain linear (seq, MAC and the journal write happen under one
 * short mutex; encoding, sealing paths and reading /proc happen outside
 * it, on the caller's stack, with no allocation per record), and the rule
 * that the journal is wiped (zeroed, or truncated) only when everything in
 * it is committed to the catalogue.  Zeros end the journal; replay also
 * ends at a torn entry, unless an authentic record the catalogue lacks
 * follows it (then the journal is damaged).  It never stores a plaintext
 * path: paths are sealed before the record is encoded.
 */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "store.h"
#include "sys.h"

/* Journal entry: magic | u32 n | prev | encoding (n bytes) | mac. */
#define J_MAGIC "CAJ1"
#define J_HDR 8
#define J_OVERHEAD (J_HDR + 2 * CRYPT_MAC_BYTES)
#define ENC_VERSION 1
/* Offsets of the two fields patched under the lock (after the version). */
#define ENC_SEQ_OFF 1
#define ENC_TS_OFF 9
/* Upper bound of an encoding: version, 12 integers, 9 length prefixes and
 * the largest fields. */
#define ENC_MAX                                                                          \
	(1 + 12 * 8 + 9 * 4 + CATALOG_AUDIT_OP_MAX + CATALOG_AUDIT_GROUPS_MAX +          \
	 CATALOG_AUDIT_COMM_MAX + CATALOG_AUDIT_EXE_MAX + CRYPT_HASH_BYTES +             \
	 2 * CATALOG_AUDIT_SEALED_MAX + CATALOG_AUDIT_DETAIL_MAX)
#define LEN_ABSENT 0xffffffffu
/* Above this many journal bytes the writer empties the journal even while
 * records keep arriving (a short stall of appenders, once per few MiB). */
#define AUDIT_JOURNAL_MAX (4u << 20)
/* The journal's first bytes, preallocated with written zeros and mapped
 * shared while the log is open: an append is a memcpy under the lock, not
 * a pwrite(2) (about 3 us in this VM, a third of a record's cost on the
 * request path).  Entries past it are written with pwrite.  The page
 * cache holds a mapped write as it holds a pwrite: a killed daemon loses
 * neither. */
#define AUDIT_JOURNAL_MAP (AUDIT_JOURNAL_MAX + (1u << 20))
/* File systems where overwriting a written, mapped page needs no new
 * block (so no SIGBUS for ENOSPC): ext4, XFS, tmpfs.  Elsewhere (btrfs
 * copies on write, NFS, FUSE) appends use pwrite, which can report it. */
#define FS_EXT4 0xEF53
#define FS_XFS 0x58465342
#define FS_TMPFS 0x01021994
/* Queue buffers larger than this are freed after their batch. */
#define AUDIT_BUF_KEEP (256u << 10)
#define PATH_AD "custodian audit path"
#define RETRY_MS 200
#define WHO_SLOTS 256 /* direct-mapped by pid */
#define WHO_SHARDS 16 /* locks over the slots */
/* A hit within this long of the last exe check is served without one: a
 * busy caller (an untar: a record every ~20 us) pays one readlinkat per
 * window instead of one per record.  The price: an exec by a process
 * within this window of its previous record is seen that much late. */
#define WHO_RECHECK_US 2000

/* One cached caller. */
struct who_slot {
	int64_t filled_us;  /* when it was read; 0 = empty */
	int64_t checked_us; /* when its exe was last compared */
	int dfd;            /* /proc/PID it was read from (pins that process:
			       a reused pid reads as gone), -1 if none */
	struct audit_who w; /* as read (uid/gid ignored) */
};

struct audit {
	struct store *st;                     /* the store (owned by the caller) */
	struct audit_options opt;             /* as opened */
	const uint8_t *key;                   /* audit MAC key (in the master's memory) */
	const struct keyring *volume;         /* default ring for paths */
	int jfd;                              /* journal, flock'd LOCK_EX */
	struct catalog *wcat;                 /* the writer's own connection */
	pthread_t writer;                     /* moves records into the catalogue */
	bool writer_started;                  /* writer must be joined */
	pthread_mutex_t lock;                 /* guards everything below */
	pthread_cond_t work_cv;               /* writer: queue non-empty, stop, flush */
	pthread_cond_t done_cv;               /* commits and syncs done */
	uint64_t seq;                         /* last appended */
	uint8_t mac[CRYPT_MAC_BYTES];         /* its MAC */
	off_t jsize;                          /* journal bytes in use; beyond
						 them the journal is zeros */
	uint8_t *jmap;                        /* its first AUDIT_JOURNAL_MAP bytes,
						 mapped shared; NULL: pwrite only */
	size_t jlocked;                       /* bytes of jmap mlock'ed so far */
	bool jlock;                           /* may mlock more of it */
	uint8_t *pend;                        /* journal entries the writer has not
						 taken yet, back to back, seq order */
	size_t plen, pcap;                    /* bytes used in pend, its size */
	uint64_t pend_last;                   /* seq of the last entry in pend */
	struct catalog_audit_row *wrow;       /* the writer's decoding space */
	uint64_t committed;                   /* last seq in the catalogue */
	uint64_t synced;                      /* last seq known on stable storage */
	bool syncing;                         /* an appender is in fdatasync */
	unsigned flushing;                    /* audit_flush callers waiting */
	int werr;                             /* writer's last error, 0 after success */
	bool broken;                          /* journal state unknown: refuse appends */
	bool stop;                            /* audit_close asked the writer to end */
	pthread_mutex_t who_lock[WHO_SHARDS]; /* guard who[] by slot % shards */
	struct who_slot who[WHO_SLOTS];       /* audit_who_cached entries */
	atomic_int who_fds;                   /* slots holding a dfd */
	int who_fds_max;                      /* most that may: a quarter of
						 RLIMIT_NOFILE at open (the
						 daemon's files come first),
						 at most WHO_SLOTS; immutable */
};

int audit_option(struct audit_options *o, const char *key, const char *val)
{
	if (strcmp(key, "audit_sync") == 0) {
		if (val && strcmp(val, "normal") == 0)
			o->sync = AUDIT_SYNC_NORMAL;
		else if (val && strcmp(val, "full") == 0)
			o->sync = AUDIT_SYNC_FULL;
		else
			return -EINVAL;
		return 0;
	}
	if (strcmp(key, "audit_syslog") == 0) {
		if (!val || strcmp(val, "yes") == 0 || strcmp(val, "1") == 0)
			o->syslog = true;
		else if (strcmp(val, "no") == 0 || strcmp(val, "0") == 0)
			o->syslog = false;
		else
			return -EINVAL;
		return 0;
	}
	if (strcmp(key, "audit_batch_ms") == 0) {
		char *end;
		unsigned long v;

		if (!val || *val < '0' || *val > '9')
			return -EINVAL;
		errno = 0;
		v = strtoul(val, &end, 10);
		if (errno || *end || v < 1 || v > 10000)
			return -EINVAL;
		o->batch_ms = (unsigned)v;
		return 0;
	}
	return -ENOENT;
}

/* --- who ------------------------------------------------------------------- */

/* Reads a small /proc file into buf (NUL-terminated); length or -1. */
static ssize_t read_small(int dirfd, const char *name, char *buf, size_t cap)
{
	ssize_t n, got = 0;
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	while ((size_t)got < cap - 1) {
		n = read(fd, buf + got, cap - 1 - (size_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += n;
	}
	close(fd);
	buf[got] = 0;
	return got;
}

static uint32_t parse_id(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || v > UINT32_MAX)
		return AUDIT_UNSET;
	return (uint32_t)v;
}

/* "Groups:\t4 24 27 \n" -> "4,24,27"; cut at a comma with ",..." if long. */
static void parse_groups(const char *status, char *out, size_t cap)
{
	const char *p = strstr(status, "\nGroups:");
	size_t o = 0;

	out[0] = 0;
	if (!p)
		return;
	p += 8;
	while (*p && *p != '\n') {
		size_t n;

		while (*p == ' ' || *p == '\t')
			p++;
		n = strspn(p, "0123456789");
		if (n == 0)
			break;
		if (o + (o ? 1 : 0) + n + 4 >= cap) {
			/* Room is kept for the marker. */
			memcpy(out + o, ",...", 5);
			return;
		}
		if (o)
			out[o++] = ',';
		memcpy(out + o, p, n);
		o += n;
		out[o] = 0;
		p += n;
	}
}

static void who_init(pid_t pid, uid_t uid, gid_t gid, struct audit_who *w)
{
	memset(w, 0, sizeof(*w));
	w->uid = (uint32_t)uid;
	w->gid = (uint32_t)gid;
	w->auid = AUDIT_UNSET;
	w->ses = AUDIT_UNSET;
	w->pid = (int32_t)pid;
}

/* The rest of w from an open /proc/PID: one directory fd, so every file
 * comes from the same process even if its pid is reused meanwhile. */
static void who_from_dir(int dfd, struct audit_who *w)
{
	char buf[4096];
	ssize_t n;

	if (read_small(dfd, "status", buf, sizeof(buf)) > 0)
		parse_groups(buf, w->groups, sizeof(w->groups));
	if (read_small(dfd, "loginuid", buf, 32) > 0)
		w->auid = parse_id(buf);
	if (read_small(dfd, "sessionid", buf, 32) > 0)
		w->ses = parse_id(buf);
	n = read_small(dfd, "comm", buf, sizeof(w->comm));
	if (n > 0) {
		buf[strcspn(buf, "\n")] = 0;
		memcpy(w->comm, buf, strlen(buf) + 1);
	}
	n = readlinkat(dfd, "exe", buf, sizeof(w->exe) - 1);
	if (n > 0) {
		memcpy(w->exe, buf, (size_t)n);
		w->exe[n] = 0;
	}
}

static int proc_dir(pid_t pid)
{
	char path[32];

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

void audit_who(pid_t pid, uid_t uid, gid_t gid, struct audit_who *w)
{
	int dfd;

	who_init(pid, uid, gid, w);
	dfd = proc_dir(pid);
	if (dfd < 0)
		return;
	who_from_dir(dfd, w);
	close(dfd);
}

/*
 * A hit costs one readlinkat(2) relative to the /proc/PID directory kept
 * open in the slot: it sees an exec at once (the executable changed), and
 * a pid reused by another process reads as gone (the fd pins the process
 * it was opened for), without the path walk of /proc/PID/exe.
 */
void audit_who_cached(struct audit *a, pid_t pid, uid_t uid, gid_t gid,
		      struct audit_who *w)
{
	size_t i = (size_t)pid % WHO_SLOTS;
	pthread_mutex_t *l = &a->who_lock[i % WHO_SHARDS];
	struct who_slot *s = &a->who[i];
	char exe[CATALOG_AUDIT_EXE_MAX];
	int64_t now = clock_now_us();
	bool hit = false;
	ssize_t n;
	int dfd;

	pthread_mutex_lock(l);
	if (s->dfd >= 0 && s->w.pid == (int32_t)pid && now >= s->filled_us &&
	    now - s->filled_us < AUDIT_WHO_TTL_MS * 1000LL) {
		if (now >= s->checked_us && now - s->checked_us < WHO_RECHECK_US) {
			hit = true;
		} else {
			n = readlinkat(s->dfd, "exe", exe, sizeof(exe) - 1);
			if (n > 0) {
				exe[n] = 0;
				hit = strcmp(s->w.exe, exe) == 0;
			}
			if (hit)
				s->checked_us = now;
		}
	}
	if (hit)
		*w = s->w;
	pthread_mutex_unlock(l);
	if (hit) {
		w->uid = (uint32_t)uid;
		w->gid = (uint32_t)gid;
		return;
	}
	who_init(pid, uid, gid, w);
	dfd = proc_dir(pid);
	if (dfd < 0)
		return;
	who_from_dir(dfd, w);
	if (!w->exe[0]) {
		close(dfd); /* gone: nothing worth keeping */
		return;
	}
	pthread_mutex_lock(l);
	if (s->dfd < 0) {
		/* A new slot costs a descriptor: not when they run short. */
		int cur = atomic_load(&a->who_fds);
		bool room;

		do
			room = cur < a->who_fds_max;
		while (room && !atomic_compare_exchange_weak(&a->who_fds, &cur, cur + 1));
		if (!room) {
			pthread_mutex_unlock(l);
			close(dfd);
			return;
		}
	} else {
		close(s->dfd);
	}
	s->dfd = dfd;
	s->w = *w;
	s->filled_us = s->checked_us = now;
	pthread_mutex_unlock(l);
}

void audit_who_self(struct audit_who *w)
{
	audit_who(getpid(), geteuid(), getegid(), w);
}

void audit_subject_hash(const struct keys_master *mk, const char *id,
			uint8_t out[CRYPT_HASH_BYTES])
{
	crypt_hash(out, CRYPT_HASH_BYTES, keys_master_key(mk, KEYS_SUBJECT_HASH), id,
		   strlen(id));
}

/* --- encoding --------------------------------------------------------------- */

/* Appends to a buffer of ENC_MAX bytes. */
struct enc {
	uint8_t *p; /* buffer */
	size_t n;   /* bytes used */
};

static void put_u64(struct enc *e, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
		e->p[e->n++] = (uint8_t)(v >> (8 * i));
}

static void put_u32(struct enc *e, uint32_t v)
{
	for (int i = 3; i >= 0; i--)
		e->p[e->n++] = (uint8_t)(v >> (8 * i));
}

static void put_bytes(struct enc *e, const void *b, size_t len, bool present)
{
	if (!present) {
		put_u32(e, LEN_ABSENT);
		return;
	}
	put_u32(e, (uint32_t)len);
	if (len)
		memcpy(e->p + e->n, b, len);
	e->n += len;
}

static void put_str(struct enc *e, const char *s)
{
	put_bytes(e, s, strlen(s), true);
}

/* Fields out of range for the encoding (the catalogue checks the rest). */
static int row_encodable(const struct catalog_audit_row *r)
{
	return r->seq >= 1 && r->outcome >= 0 && r->uid >= 0 && r->gid >= 0 &&
	       r->auid >= 0 && r->ses >= 0 && r->pid >= 0 && r->flags >= 0 &&
	       r->bytes >= 0 && r->count >= 0 && r->ref >= 0 && r->op[0] &&
	       memchr(r->op, 0, sizeof(r->op)) &&
	       memchr(r->groups, 0, sizeof(r->groups)) &&
	       memchr(r->comm, 0, sizeof(r->comm)) && memchr(r->exe, 0, sizeof(r->exe)) &&
	       memchr(r->detail, 0, sizeof(r->detail)) &&
	       r->path_len <= sizeof(r->path) && r->path2_len <= sizeof(r->path2);
}

/* The canonical encoding of every field but prev and mac. */
static size_t encode(const struct catalog_audit_row *r, uint8_t *buf)
{
	struct enc e = {buf, 0};

	e.p[e.n++] = ENC_VERSION;
	put_u64(&e, (uint64_t)r->seq);
	put_u64(&e, (uint64_t)r->ts_us);
	put_str(&e, r->op);
	put_u64(&e, (uint64_t)r->outcome);
	put_u64(&e, (uint64_t)r->uid);
	put_u64(&e, (uint64_t)r->gid);
	put_str(&e, r->groups);
	put_u64(&e, (uint64_t)r->auid);
	put_u64(&e, (uint64_t)r->ses);
	put_u64(&e, (uint64_t)r->pid);
	put_str(&e, r->comm);
	put_str(&e, r->exe);
	put_bytes(&e, r->subject, sizeof(r->subject), r->has_subject);
	put_bytes(&e, r->path, r->path_len, r->path_len > 0);
	put_bytes(&e, r->path2, r->path2_len, r->path2_len > 0);
	put_u64(&e, (uint64_t)r->flags);
	put_u64(&e, (uint64_t)r->bytes);
	put_u64(&e, (uint64_t)r->count);
	put_u64(&e, (uint64_t)r->ref);
	put_str(&e, r->detail);
	return e.n;
}

/* Reads from an encoding; any overrun or bad field sets err. */
struct dec {
	const uint8_t *p; /* encoding */
	size_t n, off;    /* its length, read position */
	int err;          /* -EIO once anything failed */
};

static uint64_t get_u64(struct dec *d)
{
	uint64_t v = 0;

	if (d->n - d->off < 8) {
		d->err = -EIO;
		return 0;
	}
	for (int i = 0; i < 8; i++)
		v = v << 8 | d->p[d->off++];
	return v;
}

static int64_t get_i64(struct dec *d, bool signed_ok)
{
	uint64_t v = get_u64(d);

	if (!signed_ok && v > INT64_MAX)
		d->err = -EIO;
	return (int64_t)v;
}

/* Length-prefixed field into out[cap]; *len = bytes, -1 if absent. */
static void get_bytes(struct dec *d, void *out, size_t cap, ssize_t *len)
{
	uint32_t v = 0;

	*len = -1;
	if (d->n - d->off < 4) {
		d->err = -EIO;
		return;
	}
	for (int i = 0; i < 4; i++)
		v = v << 8 | d->p[d->off++];
	if (v == LEN_ABSENT)
		return;
	if (v > cap || d->n - d->off < v) {
		d->err = -EIO;
		return;
	}
	memcpy(out, d->p + d->off, v);
	d->off += v;
	*len = (ssize_t)v;
}

static void get_str(struct dec *d, char *out, size_t cap)
{
	ssize_t len;

	get_bytes(d, out, cap - 1, &len);
	if (len < 0 || memchr(out, 0, (size_t)len)) {
		d->err = -EIO;
		out[0] = 0;
		return;
	}
	out[len] = 0;
}

static int decode(const uint8_t *buf, size_t n, struct catalog_audit_row *r)
{
	struct dec d = {buf, n, 0, 0};
	ssize_t len;

	/* Every field is set below (the row is 10 KiB: no memset per
	 * record on the writer's path); on -EIO the row is not used. */
	if (n < 1 || buf[0] != ENC_VERSION)
		return -EIO;
	d.off = 1;
	r->seq = get_i64(&d, false);
	r->ts_us = get_i64(&d, true);
	get_str(&d, r->op, sizeof(r->op));
	r->outcome = get_i64(&d, false);
	r->uid = get_i64(&d, false);
	r->gid = get_i64(&d, false);
	get_str(&d, r->groups, sizeof(r->groups));
	r->auid = get_i64(&d, false);
	r->ses = get_i64(&d, false);
	r->pid = get_i64(&d, false);
	get_str(&d, r->comm, sizeof(r->comm));
	get_str(&d, r->exe, sizeof(r->exe));
	get_bytes(&d, r->subject, sizeof(r->subject), &len);
	if (len >= 0 && len != CRYPT_HASH_BYTES)
		d.err = -EIO;
	r->has_subject = len >= 0;
	get_bytes(&d, r->path, sizeof(r->path), &len);
	if (len == 0)
		d.err = -EIO;
	r->path_len = len > 0 ? (size_t)len : 0;
	get_bytes(&d, r->path2, sizeof(r->path2), &len);
	if (len == 0)
		d.err = -EIO;
	r->path2_len = len > 0 ? (size_t)len : 0;
	r->flags = get_i64(&d, false);
	r->bytes = get_i64(&d, false);
	r->count = get_i64(&d, false);
	r->ref = get_i64(&d, false);
	get_str(&d, r->detail, sizeof(r->detail));
	if (d.err || d.off != n || !r->op[0] || r->seq < 1)
		return -EIO;
	return 0;
}

int audit_row_mac(const uint8_t key[CRYPT_KEY_BYTES], const uint8_t prev[CRYPT_MAC_BYTES],
		  const struct catalog_audit_row *r, uint8_t mac[CRYPT_MAC_BYTES])
{
	uint8_t buf[ENC_MAX]; /* on the stack: verify calls this per record */
	size_t n;

	if (!row_encodable(r))
		return -EINVAL;
	n = encode(r, buf);
	crypt_hash2(mac, CRYPT_MAC_BYTES, key, prev, CRYPT_MAC_BYTES, buf, n);
	return 0;
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Decodes a journal entry (already framed: entry holds exactly one) into r
 * with prev and mac, without checking the MAC (the writer's own entries,
 * made in this process).  -EIO if anything is off. */
static int entry_parse(const uint8_t *entry, size_t len, struct catalog_audit_row *r)
{
	size_t n;
	int rc;

	if (len < J_OVERHEAD || memcmp(entry, J_MAGIC, 4) != 0)
		return -EIO;
	n = rd32(entry + 4);
	if (n != len - J_OVERHEAD)
		return -EIO;
	rc = decode(entry + J_HDR + CRYPT_MAC_BYTES, n, r);
	if (rc)
		return rc;
	memcpy(r->prev, entry + J_HDR, CRYPT_MAC_BYTES);
	memcpy(r->mac, entry + J_HDR + CRYPT_MAC_BYTES + n, CRYPT_MAC_BYTES);
	return 0;
}

/* entry_parse, and checks the MAC (entries read back from the journal). */
static int entry_decode(const uint8_t *key, const uint8_t *entry, size_t len,
			struct catalog_audit_row *r)
{
	uint8_t mac[CRYPT_MAC_BYTES];
	int rc = entry_parse(entry, len, r);

	if (rc)
		return rc;
	crypt_hash2(mac, sizeof(mac), key, r->prev, CRYPT_MAC_BYTES,
		    entry + J_HDR + CRYPT_MAC_BYTES, len - J_OVERHEAD);
	return crypt_equal(mac, r->mac, sizeof(mac)) ? 0 : -EIO;
}

/* --- catalogue side ---------------------------------------------------------- */

static int put_head(struct catalog *cat, uint64_t seq, const uint8_t mac[CRYPT_MAC_BYTES])
{
	uint8_t v[8 + CRYPT_MAC_BYTES];

	be64(v, seq);
	memcpy(v + 8, mac, CRYPT_MAC_BYTES);
	return catalog_meta_put(cat, CATALOG_AUDIT_HEAD_KEY, v, sizeof(v));
}

/* meta audit_head; seq 0 if absent, -EIO if malformed. */
static int get_head(struct catalog *cat, uint64_t *seq, uint8_t mac[CRYPT_MAC_BYTES])
{
	uint8_t v[8 + CRYPT_MAC_BYTES];
	size_t len = 0;
	int rc = catalog_meta_get(cat, CATALOG_AUDIT_HEAD_KEY, v, sizeof(v), &len);

	*seq = 0;
	memset(mac, 0, CRYPT_MAC_BYTES);
	if (rc == -ENOENT)
		return 0;
	if (rc == -ENOSPC || (rc == 0 && len != sizeof(v)))
		return -EIO;
	if (rc)
		return rc;
	*seq = rd64(v);
	memcpy(mac, v + 8, CRYPT_MAC_BYTES);
	return *seq > INT64_MAX ? -EIO : 0;
}

/* Commits journal entries (len bytes, back to back, as audit_append
 * made them) in one transaction.  Runs on the writer thread only: it
 * decodes into the writer's row. */
static int commit_entries(struct audit *a, const uint8_t *buf, size_t len)
{
	struct catalog_audit_row *r = a->wrow;
	size_t off = 0, el;
	int rc;

	if (len == 0)
		return 0;
	rc = catalog_begin(a->wcat);
	if (rc)
		return rc;
	while (off < len) {
		el = len - off < J_HDR ? 0 : J_OVERHEAD + (size_t)rd32(buf + off + 4);
		rc = el && el <= len - off ? entry_parse(buf + off, el, r) : -EIO;
		if (!rc)
			rc = catalog_audit_insert(a->wcat, r);
		if (rc)
			break;
		off += el;
	}
	if (!rc)
		rc = put_head(a->wcat, (uint64_t)r->seq, r->mac);
	if (!rc)
		rc = catalog_commit(a->wcat);
	if (rc)
		catalog_rollback(a->wcat);
	return rc;
}

/* With the lock held, after a successful commit: empties the journal when
 * everything in it is in the catalogue.  If records keep arriving and the
 * journal has grown large, commits the rest here, holding appenders off
 * for one transaction. */
static void maybe_truncate(struct audit *a)
{
	if (a->jsize == 0)
		return;
	if (a->plen && a->jsize > (off_t)AUDIT_JOURNAL_MAX) {
		if (commit_entries(a, a->pend, a->plen) != 0)
			return;
		a->committed = a->pend_last;
		a->plen = 0;
	}
	if (a->plen)
		return;
	if (a->jmap) {
		/* Zeros end the journal for replay: wipe the used part rather
		 * than shrink the file, so it stays allocated and mapped.  A
		 * file grown past the mapping goes back to it (if that fails,
		 * what lies past the zeros is committed: replay skips it). */
		memset(a->jmap, 0,
		       a->jsize < (off_t)AUDIT_JOURNAL_MAP ? (size_t)a->jsize
							   : AUDIT_JOURNAL_MAP);
		if (a->jsize > (off_t)AUDIT_JOURNAL_MAP)
			(void)sys.ftruncate(a->jfd, (off_t)AUDIT_JOURNAL_MAP);
		a->jsize = 0;
		return;
	}
	if (sys.ftruncate(a->jfd, 0) == 0)
		a->jsize = 0;
}

/* Takes what appenders queued into the writer's batch (with the lock
 * held).  The batch is empty unless its last commit failed; then the new
 * entries go after it, or stay queued if there is no memory for both. */
static void take_pending(struct audit *a, uint8_t **batch, size_t *blen, size_t *bcap,
			 uint64_t *blast)
{
	if (!a->plen)
		return;
	if (*blen == 0) {
		/* Swap buffers: no copy and no allocation in steady state. */
		uint8_t *t = *batch;
		size_t c = *bcap;

		*batch = a->pend;
		*bcap = a->pcap;
		*blen = a->plen;
		a->pend = t;
		a->pcap = c;
	} else {
		if (*bcap - *blen < a->plen) {
			uint8_t *nb = realloc(*batch, *blen + a->plen);

			if (!nb)
				return;
			*batch = nb;
			*bcap = *blen + a->plen;
		}
		memcpy(*batch + *blen, a->pend, a->plen);
		*blen += a->plen;
	}
	a->plen = 0;
	*blast = a->pend_last;
}

static void *writer_main(void *arg)
{
	struct audit *a = arg;
	uint8_t *batch = NULL;
	size_t blen = 0, bcap = 0;
	uint64_t blast = 0;
	struct timespec dl;
	int rc;

	/* Records are durable in the journal already: committing them can
	 * wait for the requests. */
	sys_background_thread();
	pthread_mutex_lock(&a->lock);
	for (;;) {
		while (!a->plen && !blen && !a->stop)
			pthread_cond_wait(&a->work_cv, &a->lock);
		if (!a->plen && !blen)
			break;
		/* Let a batch gather, unless someone is waiting for it. */
		clock_deadline_ms(&dl, a->opt.batch_ms);
		while (!a->stop && !a->flushing &&
		       pthread_cond_timedwait(&a->work_cv, &a->lock, &dl) == 0)
			;
		take_pending(a, &batch, &blen, &bcap, &blast);
		pthread_mutex_unlock(&a->lock);
		rc = commit_entries(a, batch, blen);
		pthread_mutex_lock(&a->lock);
		if (rc) {
			/* Kept for the next try: the journal still holds them. */
			a->werr = rc;
			pthread_cond_broadcast(&a->done_cv);
			if (a->stop)
				break;
			clock_deadline_ms(&dl, RETRY_MS);
			while (!a->stop &&
			       pthread_cond_timedwait(&a->work_cv, &a->lock, &dl) == 0)
				;
			continue;
		}
		a->werr = 0;
		a->committed = blast;
		blen = 0;
		if (bcap > AUDIT_BUF_KEEP) {
			/* A burst grew it: give the memory back. */
			free(batch);
			batch = NULL;
			bcap = 0;
		}
		if (a->synced < a->committed)
			a->synced = a->committed;
		maybe_truncate(a);
		pthread_cond_broadcast(&a->done_cv);
	}
	pthread_mutex_unlock(&a->lock);
	free(batch);
	return NULL;
}

/* --- replay -------------------------------------------------------------------- */

/* Where the chain continues: the newest of the last row and the committed
 * head.  A head beyond the last row means rows were removed; the chain
 * continues after the head so the gap stays visible to verify. */
static int chain_start(struct catalog *cat, uint64_t *seq, uint8_t mac[CRYPT_MAC_BYTES])
{
	uint8_t hmac[CRYPT_MAC_BYTES];
	uint64_t hseq;
	int64_t last;
	int rc;

	rc = catalog_audit_last(cat, &last, mac);
	if (!rc)
		rc = get_head(cat, &hseq, hmac);
	if (rc)
		return rc;
	*seq = (uint64_t)last;
	if (hseq > *seq) {
		*seq = hseq;
		memcpy(mac, hmac, CRYPT_MAC_BYTES);
	}
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Reads the whole journal (it is small: the writer empties it). */
static int read_journal(int fd, uint8_t **buf, size_t *len)
{
	struct stat sb;
	ssize_t n;

	*buf = NULL;
	*len = 0;
	if (fstat(fd, &sb) < 0)
		return -errno;
	if (sb.st_size == 0)
		return 0;
	*buf = malloc((size_t)sb.st_size);
	if (!*buf)
		return -ENOMEM;
	n = sys_pread_full(fd, *buf, (size_t)sb.st_size, 0);
	if (n < 0) {
		free(*buf);
		*buf = NULL;
		return (int)n;
	}
	*len = (size_t)n;
	return 0;
}

/* Length of the complete entry at p (n bytes left): > 0, 0 if the rest is
 * a torn write (incomplete entry or zeros), -EIO if it is not an entry. */
static ssize_t entry_len(const uint8_t *p, size_t n)
{
	size_t len;

	if (n < J_HDR) {
		/* A prefix of the magic, or zeros, is a torn header. */
		return memcmp(p, J_MAGIC, n) == 0 || all_zero(p, n) ? 0 : -EIO;
	}
	if (memcmp(p, J_MAGIC, 4) != 0)
		return all_zero(p, n) ? 0 : -EIO;
	len = (size_t)rd32(p + 4);
	if (len > ENC_MAX)
		return -EIO;
	len += J_OVERHEAD;
	return len > n ? 0 : (ssize_t)len;
}

/* After the entry that could not be read at off: is there a whole,
 * authentic entry the catalogue lacks?  Then the journal is damaged (a
 * record after it exists).  If not, the crash tore the last write (a
 * mapped append can stop anywhere) and what follows is zeros or stale
 * entries already committed. */
static bool newer_after(struct audit *a, const uint8_t *buf, size_t len, size_t off,
			struct catalog_audit_row *r)
{
	const uint8_t *p;
	ssize_t el;

	while (off < len &&
	       (p = memmem(buf + off, len - off, J_MAGIC, sizeof(J_MAGIC) - 1)) != NULL) {
		off = (size_t)(p - buf);
		el = entry_len(p, len - off);
		if (el > 0 && entry_decode(a->key, p, (size_t)el, r) == 0 &&
		    (uint64_t)r->seq > a->seq)
			return true;
		off++;
	}
	return false;
}

/* Moves journaled records the catalogue does not have yet into it. */
static int replay(struct audit *a)
{
	struct catalog_audit_row *r = NULL;
	uint8_t *buf = NULL;
	size_t len, off = 0;
	bool tx = false;
	ssize_t el;
	int rc;

	rc = read_journal(a->jfd, &buf, &len);
	if (rc || len == 0)
		goto out;
	r = malloc(sizeof(*r));
	if (!r) {
		rc = -ENOMEM;
		goto out;
	}
	while (off < len) {
		el = entry_len(buf + off, len - off);
		if (el <= 0 || entry_decode(a->key, buf + off, (size_t)el, r) != 0) {
			/* The end (torn: its operation never returned), unless a
			 * record the catalogue lacks comes after it. */
			if (newer_after(a, buf, len, off + 1, r)) {
				rc = -EBADMSG;
				goto out;
			}
			break;
		}
		off += (size_t)el;
		if ((uint64_t)r->seq <= a->seq)
			continue; /* committed before the crash */
		if ((uint64_t)r->seq != a->seq + 1 ||
		    !crypt_equal(r->prev, a->mac, CRYPT_MAC_BYTES)) {
			rc = -EBADMSG;
			goto out;
		}
		if (!tx) {
			rc = catalog_begin(a->wcat);
			if (rc)
				goto out;
			tx = true;
		}
		rc = catalog_audit_insert(a->wcat, r);
		if (rc)
			goto out;
		a->seq = (uint64_t)r->seq;
		memcpy(a->mac, r->mac, CRYPT_MAC_BYTES);
	}
	if (tx) {
		rc = put_head(a->wcat, a->seq, a->mac);
		if (!rc)
			rc = catalog_commit(a->wcat);
		tx = false;
		if (rc)
			goto out;
	}
	rc = sys.ftruncate(a->jfd, 0) < 0 ? -errno : 0;
out:
	if (tx)
		catalog_rollback(a->wcat);
	free(r);
	free(buf);
	return rc;
}

/* --- open / append / close ------------------------------------------------------- */

/* With the journal empty (after replay): preallocates its first
 * AUDIT_JOURNAL_MAP bytes as written zeros and maps them.  Best effort:
 * on a file system not listed above, or if anything fails (a full disk),
 * the journal stays empty and appends use pwrite, which reports errors
 * per record. */
static void journal_map(struct audit *a)
{
	static const uint8_t zeros[64 * 1024];
	struct statfs sf;
	struct rlimit rl;
	void *p;

	if (fstatfs(a->jfd, &sf) != 0 ||
	    (sf.f_type != FS_EXT4 && sf.f_type != FS_XFS && sf.f_type != FS_TMPFS))
		return;
	for (size_t off = 0; off < AUDIT_JOURNAL_MAP; off += sizeof(zeros))
		if (sys_pwrite_full(a->jfd, zeros, sizeof(zeros), (off_t)off) !=
		    (ssize_t)sizeof(zeros))
			goto undo;
	p = sys.mmap(NULL, AUDIT_JOURNAL_MAP, PROT_READ | PROT_WRITE, MAP_SHARED, a->jfd,
		     0);
	if (p == MAP_FAILED)
		goto undo;
	/* Pages are locked as appends first reach them (journal_lock), so a
	 * write fault never has to read one back (an I/O error there would
	 * be a SIGBUS).  Root may; an unprivileged daemon only if that
	 * leaves most of its RLIMIT_MEMLOCK to the key memory (sodium_malloc
	 * locks it too).  Unlocked, hot pages stay cached anyway. */
	a->jlock = geteuid() == 0 || (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 &&
				      (rl.rlim_cur == RLIM_INFINITY ||
				       rl.rlim_cur >= 4 * (rlim_t)AUDIT_JOURNAL_MAP));
	a->jmap = p;
	return;
undo:
	(void)sys.ftruncate(a->jfd, 0);
}

static char *store_file(const struct store *st, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", st->path, name) < 0)
		return NULL;
	return p;
}

int audit_open(struct store *st, const struct audit_options *o, struct audit **out)
{
	struct audit *a = NULL;
	char *jpath = NULL, *dbpath = NULL;
	bool locks = false;
	int rc;

	*out = NULL;
	if (!st || !st->mk)
		return -EINVAL;
	if (st->readonly)
		return -EROFS;
	a = calloc(1, sizeof(*a));
	jpath = store_file(st, AUDIT_JOURNAL_FILE);
	dbpath = store_file(st, CATALOG_FILE);
	if (!a || !jpath || !dbpath) {
		rc = -ENOMEM;
		goto out;
	}
	a->st = st;
	a->jfd = -1;
	for (int i = 0; i < WHO_SLOTS; i++)
		a->who[i].dfd = -1;
	{
		struct rlimit rl;

		a->who_fds_max = WHO_SLOTS;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
		    rl.rlim_cur / 4 < WHO_SLOTS)
			a->who_fds_max = (int)(rl.rlim_cur / 4);
	}
	a->wrow = malloc(sizeof(*a->wrow));
	if (!a->wrow) {
		rc = -ENOMEM;
		goto out;
	}
	if (o)
		a->opt = *o;
	if (!a->opt.batch_ms)
		a->opt.batch_ms = AUDIT_BATCH_MS_DEFAULT;
	a->key = keys_master_key(st->mk, KEYS_AUDIT);
	a->volume = keys_volume(st->mk);
	a->jfd = sys.openat(AT_FDCWD, jpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
			    0600);
	if (a->jfd < 0) {
		rc = -errno;
		goto out;
	}
	if (flock(a->jfd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		goto out;
	}
	rc = catalog_open(dbpath, 0, &a->wcat);
	if (rc)
		goto out;
	/* With audit_sync=normal a record is safe against a crash of the
	 * daemon, not a power loss, before and after its commit alike: the
	 * writer need not fsync each batch (an fsync per 20 ms also forces
	 * the file system's journal, stalling the workload's metadata). */
	rc = catalog_audit_set_durable(a->wcat, a->opt.sync == AUDIT_SYNC_FULL);
	if (rc)
		goto out;
	rc = chain_start(a->wcat, &a->seq, a->mac);
	if (!rc)
		rc = replay(a);
	if (rc)
		goto out;
	journal_map(a);
	a->committed = a->synced = a->seq;
	{
		pthread_condattr_t ca;

		/* Timed waits measure intervals: immune to clock steps. */
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		/* These cannot fail on Linux with default attributes. */
		pthread_mutex_init(&a->lock, NULL);
		pthread_cond_init(&a->work_cv, &ca);
		pthread_cond_init(&a->done_cv, &ca);
		pthread_condattr_destroy(&ca);
		for (int i = 0; i < WHO_SHARDS; i++)
			pthread_mutex_init(&a->who_lock[i], NULL);
		locks = true;
	}
	rc = -pthread_create(&a->writer, NULL, writer_main, a);
	if (rc)
		goto out;
	a->writer_started = true;
	/* Seen in top/perf apart from the FUSE threads (cosmetic: may fail). */
	(void)pthread_setname_np(a->writer, "audit-writer");
	if (a->opt.syslog)
		openlog("custodian", LOG_PID | LOG_NDELAY, LOG_AUTHPRIV);
out:
	free(jpath);
	free(dbpath);
	if (rc && a) {
		if (locks) {
			for (int i = 0; i < WHO_SHARDS; i++)
				pthread_mutex_destroy(&a->who_lock[i]);
			pthread_mutex_destroy(&a->lock);
			pthread_cond_destroy(&a->work_cv);
			pthread_cond_destroy(&a->done_cv);
		}
		catalog_close(a->wcat);
		if (a->jmap) {
			munmap(a->jmap, AUDIT_JOURNAL_MAP);
			(void)sys.ftruncate(a->jfd, 0);
		}
		if (a->jfd >= 0)
			close(a->jfd);
		free(a->wrow);
		free(a);
		return rc;
	}
	*out = a;
	return 0;
}

/* A sealed path as an `opt` field: u32 length, then nonce | ciphertext |
 * tag written in place; the u32 absent marker for no path. */
static int put_sealed(struct enc *e, const struct keyring *ring, const char *path)
{
	size_t n;
	int rc;

	if (!path) {
		put_u32(e, LEN_ABSENT);
		return 0;
	}
	n = strlen(path);
	if (n > AUDIT_PATH_MAX)
		return -EINVAL;
	put_u32(e, (uint32_t)(n + CRYPT_AEAD_OVERHEAD));
	rc = crypt_block_seal(e->p + e->n, (const uint8_t *)path, n, ring->path,
			      (const uint8_t *)PATH_AD, sizeof(PATH_AD) - 1);
	if (rc)
		return rc;
	e->n += n + CRYPT_AEAD_OVERHEAD;
	return 0;
}

int audit_path_open(const struct keyring *ring, const uint8_t *sealed, size_t len,
		    char *buf, size_t cap)
{
	int rc;

	if (len < CRYPT_AEAD_OVERHEAD || len > CATALOG_AUDIT_SEALED_MAX)
		return -EIO;
	if (len - CRYPT_AEAD_OVERHEAD >= cap)
		return -ENAMETOOLONG;
	rc = crypt_block_open((uint8_t *)buf, sealed, len, ring->path,
			      (const uint8_t *)PATH_AD, sizeof(PATH_AD) - 1);
	if (rc)
		return rc;
	buf[len - CRYPT_AEAD_OVERHEAD] = 0;
	return 0;
}

/* A C string (NULL = "") that fits a row field of cap bytes. */
static bool fits(const char *str, size_t cap)
{
	return !str || strnlen(str, cap) < cap;
}

/*
 * Encodes ev into buf (ENC_MAX bytes) straight from the event: the same
 * bytes encode() gives for the row the event makes, with seq and ts zero
 * (patched under the lock) and the paths sealed in place.  No row, no
 * allocation: this is the part of an append done on the caller's thread
 * outside the lock.
 */
static int encode_event(struct audit *a, const struct audit_event *ev, uint8_t *buf,
			size_t *len)
{
	const struct keyring *ring = ev->ring ? ev->ring : a->volume;
	const struct audit_who *w = ev->who;
	struct enc e = {buf, 0};
	int rc;

	if (!ev->op || !ev->op[0] || ev->outcome < 0 || !w || ev->flags > INT64_MAX ||
	    ev->bytes > INT64_MAX || ev->count > INT64_MAX || ev->ref > INT64_MAX ||
	    w->pid < 0 || !fits(ev->op, CATALOG_AUDIT_OP_MAX) ||
	    !fits(ev->detail, CATALOG_AUDIT_DETAIL_MAX) ||
	    !fits(w->groups, CATALOG_AUDIT_GROUPS_MAX) ||
	    !fits(w->comm, CATALOG_AUDIT_COMM_MAX) ||
	    !fits(w->exe, CATALOG_AUDIT_EXE_MAX))
		return -EINVAL;
	e.p[e.n++] = ENC_VERSION;
	put_u64(&e, 0); /* seq */
	put_u64(&e, 0); /* ts_us */
	put_str(&e, ev->op);
	put_u64(&e, (uint64_t)ev->outcome);
	put_u64(&e, w->uid);
	put_u64(&e, w->gid);
	put_str(&e, w->groups);
	put_u64(&e, w->auid);
	put_u64(&e, w->ses);
	put_u64(&e, (uint64_t)w->pid);
	put_str(&e, w->comm);
	put_str(&e, w->exe);
	put_bytes(&e, ev->subject, CRYPT_HASH_BYTES, ev->subject != NULL);
	rc = put_sealed(&e, ring, ev->path);
	if (!rc)
		rc = put_sealed(&e, ring, ev->path2);
	if (rc)
		return rc;
	put_u64(&e, ev->flags);
	put_u64(&e, ev->bytes);
	put_u64(&e, ev->count);
	put_u64(&e, ev->ref);
	put_str(&e, ev->detail ? ev->detail : "");
	*len = e.n;
	return 0;
}

/* comm as one syslog token: no spaces, quotes or control characters. */
static void token(char *out, size_t cap, const char *in)
{
	size_t i;

	for (i = 0; in[i] && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)in[i];

		out[i] = (c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\')
				 ? '?'
				 : (char)c;
	}
	out[i] = 0;
}

static void forward(const struct audit_event *ev, uint64_t seq)
{
	char subj[2 * CRYPT_HASH_BYTES + 1] = "-", comm[CATALOG_AUDIT_COMM_MAX];

	if (ev->subject)
		crypt_hex(subj, ev->subject, CRYPT_HASH_BYTES);
	token(comm, sizeof(comm), ev->who->comm);
	syslog(LOG_INFO,
	       "audit seq=%" PRIu64 " op=%s outcome=%d uid=%" PRIu32 " auid=%" PRIu32
	       " pid=%" PRId32 " comm=%s subject=%s",
	       seq, ev->op, ev->outcome, ev->who->uid, ev->who->auid, ev->who->pid,
	       comm[0] ? comm : "-", subj);
}

/* With the lock held: waits until `seq` is on stable storage; the first
 * waiter syncs for everyone who appended before it started. */
static int group_sync(struct audit *a, uint64_t seq)
{
	uint64_t target;
	int rc = 0;

	while (a->synced < seq) {
		if (a->syncing) {
			pthread_cond_wait(&a->done_cv, &a->lock);
			continue;
		}
		a->syncing = true;
		target = a->seq;
		pthread_mutex_unlock(&a->lock);
		rc = sys.fdatasync(a->jfd) < 0 ? -errno : 0;
		pthread_mutex_lock(&a->lock);
		a->syncing = false;
		if (!rc && a->synced < target)
			a->synced = target;
		pthread_cond_broadcast(&a->done_cv);
		if (rc)
			break;
	}
	return rc;
}

/* Locks the mapped pages up to `end` (lock held): one mlock per page the
 * journal first reaches, so only the part in use is resident (a mapping
 * locked whole would add its 5 MiB to the daemon's RSS at mount).  A
 * failure only stops locking. */
static void journal_lock(struct audit *a, size_t end)
{
	size_t pg = 4096, to = (end + pg - 1) / pg * pg;

	if (to > AUDIT_JOURNAL_MAP)
		to = AUDIT_JOURNAL_MAP;
	if (mlock(a->jmap + a->jlocked, to - a->jlocked) == 0)
		a->jlocked = to;
	else
		a->jlock = false;
}

/* Removes what a failed write left past jsize (lock held).  The mapped
 * part is zeroed, not cut: the file must not end inside the mapping. */
static int journal_cut(struct audit *a)
{
	off_t keep = a->jsize;

	if (a->jmap && keep < (off_t)AUDIT_JOURNAL_MAP) {
		memset(a->jmap + keep, 0, AUDIT_JOURNAL_MAP - (size_t)keep);
		keep = (off_t)AUDIT_JOURNAL_MAP;
	}
	return sys.ftruncate(a->jfd, keep) < 0 ? -errno : 0;
}

/* Makes room for n more bytes in pend (lock held). */
static int pend_reserve(struct audit *a, size_t n)
{
	size_t cap = a->pcap ? a->pcap : 64 * 1024;
	uint8_t *p;

	if (a->pcap - a->plen >= n)
		return 0;
	while (cap - a->plen < n)
		cap *= 2;
	p = realloc(a->pend, cap);
	if (!p)
		return -ENOMEM;
	a->pend = p;
	a->pcap = cap;
	return 0;
}

/*
 * The caller's cost of a record: encode and seal outside the lock into a
 * buffer on the stack; under the lock, patch seq and time, one MAC, a
 * memcpy into the mapped journal (a pwrite(2) if it is not mapped or the
 * entry does not fit) and a memcpy into the writer's queue.  No
 * allocation (the queue's buffer only grows until it fits a batch), no
 * SQLite.
 */
int audit_append(struct audit *a, const struct audit_event *ev, uint64_t *seq)
{
	uint8_t entry[J_OVERHEAD + ENC_MAX];
	uint8_t *enc = entry + J_HDR + CRYPT_MAC_BYTES;
	uint64_t myseq = 0;
	size_t n, len;
	ssize_t w;
	bool wake;
	int rc;

	rc = encode_event(a, ev, enc, &n);
	if (rc)
		return rc;
	memcpy(entry, J_MAGIC, 4);
	entry[4] = (uint8_t)(n >> 24);
	entry[5] = (uint8_t)(n >> 16);
	entry[6] = (uint8_t)(n >> 8);
	entry[7] = (uint8_t)n;
	len = n + J_OVERHEAD;

	pthread_mutex_lock(&a->lock);
	if (a->broken) {
		rc = -EIO;
		goto unlock;
	}
	/* Room first: once the entry is in the journal it must be queued. */
	rc = pend_reserve(a, len);
	if (rc)
		goto unlock;
	/* seq, time and prev are fixed here so the chain is in seq order
	 * and time never goes backwards along it by more than clock steps. */
	myseq = a->seq + 1;
	be64(enc + ENC_SEQ_OFF, myseq);
	be64(enc + ENC_TS_OFF, (uint64_t)clock_now_us());
	memcpy(entry + J_HDR, a->mac, CRYPT_MAC_BYTES);
	crypt_hash2(enc + n, CRYPT_MAC_BYTES, a->key, a->mac, CRYPT_MAC_BYTES, enc, n);
	if (a->jmap && a->jsize + (off_t)len <= (off_t)AUDIT_JOURNAL_MAP) {
		if (a->jlock && (size_t)a->jsize + len > a->jlocked)
			journal_lock(a, (size_t)a->jsize + len);
		memcpy(a->jmap + a->jsize, entry, len);
		w = (ssize_t)len;
	} else {
		w = sys_pwrite_full(a->jfd, entry, len, a->jsize);
	}
	if (w < 0 || (size_t)w != len) {
		rc = w < 0 ? (int)w : -EIO;
		myseq = 0;
		/* A partial entry would hide every later one from replay. */
		if (journal_cut(a) < 0)
			a->broken = true;
		goto unlock;
	}
	a->jsize += (off_t)len;
	a->seq = myseq;
	memcpy(a->mac, enc + n, CRYPT_MAC_BYTES);
	wake = a->plen == 0;
	memcpy(a->pend + a->plen, entry, len);
	a->plen += len;
	a->pend_last = myseq;
	if (wake)
		pthread_cond_signal(&a->work_cv);
	if (a->opt.sync == AUDIT_SYNC_FULL)
		rc = group_sync(a, myseq);
unlock:
	pthread_mutex_unlock(&a->lock);
	if (!rc && a->opt.syslog)
		forward(ev, myseq);
	if (!rc && seq)
		*seq = myseq;
	/* The entry holds sealed paths only: the event's plaintext never
	 * entered it, nothing to wipe. */
	return rc;
}

int audit_flush(struct audit *a)
{
	uint64_t target;
	int rc = 0;

	pthread_mutex_lock(&a->lock);
	target = a->seq;
	a->flushing++;
	pthread_cond_signal(&a->work_cv);
	while (a->committed < target) {
		if (a->werr) {
			rc = a->werr;
			break;
		}
		pthread_cond_wait(&a->done_cv, &a->lock);
	}
	a->flushing--;
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void audit_head(struct audit *a, uint64_t *seq, uint8_t mac[CRYPT_MAC_BYTES])
{
	pthread_mutex_lock(&a->lock);
	*seq = a->seq;
	memcpy(mac, a->mac, CRYPT_MAC_BYTES);
	pthread_mutex_unlock(&a->lock);
}

void audit_close(struct audit *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = true;
	pthread_cond_broadcast(&a->work_cv);
	pthread_mutex_unlock(&a->lock);
	if (a->writer_started)
		pthread_join(a->writer, NULL);
	/* Whatever could not be committed stays in the journal; if all was,
	 * the file is emptied as before (nothing for replay or a backup to
	 * see). */
	if (a->jmap) {
		munmap(a->jmap, AUDIT_JOURNAL_MAP);
		if (a->committed == a->seq && !a->broken)
			(void)sys.ftruncate(a->jfd, 0);
	}
	free(a->pend);
	free(a->wrow);
	for (int i = 0; i < WHO_SLOTS; i++)
		if (a->who[i].dfd >= 0)
			close(a->who[i].dfd);
	catalog_close(a->wcat);
	close(a->jfd);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->work_cv);
	pthread_cond_destroy(&a->done_cv);
	for (int i = 0; i < WHO_SHARDS; i++)
		pthread_mutex_destroy(&a->who_lock[i]);
	free(a);
}

/* --- verify ---------------------------------------------------------------------- */

int audit_verify(struct catalog *cat, const struct keys_master *mk, const uint8_t *head,
		 struct audit_report *rep)
{
	const uint8_t *key = keys_master_key(mk, KEYS_AUDIT);
	struct catalog_audit_filter f;
	struct catalog_audit_iter *it = NULL;
	struct catalog_audit_row *r = NULL;
	uint8_t prev[CRYPT_MAC_BYTES] = {0}, mac[CRYPT_MAC_BYTES], hmac[CRYPT_MAC_BYTES];
	uint64_t expect = 1;
	bool found = false;
	int rc;

	memset(rep, 0, sizeof(*rep));
	rc = get_head(cat, &rep->meta_seq, hmac);
	if (rc)
		return rc;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	catalog_audit_filter_all(&f);
	rc = catalog_audit_query(cat, &f, &it);
	if (rc)
		goto out;
	while ((rc = catalog_audit_next(it, r)) == 1) {
		if (r->seq <= 0 || (uint64_t)r->seq < expect) {
			/* Cannot happen in seq order unless the row is damaged. */
			rep->verdict = AUDIT_BAD_MAC;
			rep->seq = expect;
			break;
		}
		if ((uint64_t)r->seq != expect) {
			rep->verdict = AUDIT_GAP;
			rep->seq = expect;
			break;
		}
		if (audit_row_mac(key, prev, r, mac) != 0 ||
		    !crypt_equal(mac, r->mac, sizeof(mac))) {
			rep->verdict = AUDIT_BAD_MAC;
			rep->seq = expect;
			break;
		}
		/* The MAC was computed over the running chain, so a stored
		 * prev that differs was edited on its own. */
		if (!crypt_equal(prev, r->prev, sizeof(prev))) {
			rep->verdict = AUDIT_BAD_PREV;
			rep->seq = expect;
			break;
		}
		if (head && crypt_equal(head, r->mac, CRYPT_MAC_BYTES))
			found = true;
		memcpy(prev, r->mac, sizeof(prev));
		rep->records++;
		rep->head_seq = expect;
		expect++;
	}
	if (rc == -EIO && rep->verdict == AUDIT_OK) {
		/* A row that does not even decode (a field of the wrong type
		 * or size) was edited outside custodian. */
		rep->verdict = AUDIT_BAD_MAC;
		rep->seq = expect;
		rc = 0;
	}
	if (rc < 0)
		goto out;
	rc = 0;
	memcpy(rep->head_mac, prev, sizeof(prev));
	if (rep->verdict != AUDIT_OK)
		goto out;
	if (rep->meta_seq > rep->head_seq) {
		rep->verdict = AUDIT_TRUNCATED;
		rep->seq = rep->head_seq + 1;
	} else if (head && !found) {
		rep->verdict = AUDIT_HEAD_MISSING;
	}
out:
	catalog_audit_iter_free(it);
	free(r);
	return rc;
}

int audit_journal_peek(const char *store_path, uint64_t *records, bool *locked)
{
	uint8_t *buf = NULL;
	size_t len, off = 0;
	char *p = NULL;
	ssize_t el;
	int fd, rc;

	*records = 0;
	*locked = false;
	if (asprintf(&p, "%s/%s", store_path, AUDIT_JOURNAL_FILE) < 0)
		return -ENOMEM;
	fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0)
		*locked = true;
	rc = read_journal(fd, &buf, &len);
	while (!rc && off < len) {
		el = entry_len(buf + off, len - off);
		if (el <= 0)
			break;
		off += (size_t)el;
		(*records)++;
	}
	free(buf);
	close(fd);
	return rc;
}
