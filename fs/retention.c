/*
 * retention.c — keep-until, WORM, directory holds and the sweep (see
 * retention.h; the model and its limits are in docs/retention.md).
 *
 * Owns the decision "may this record be changed or removed now" and the
 * erasure of records that are due.  The sweep walks the backing tree the
 * way the daemon sees it: names decrypted with the volume keyring, subject
 * roots (SUBJECTS_BACKING_PREFIX entries) with the subject's keyring.  A
 * file erasure is a small state machine whose every state survives a kill
 * (RECORDED: audit record + retention_erased row; RENAMED: the ciphertext
 * sits under .E<file id>; DONE), so a rerun finishes what was begun, never
 * audits an erasure twice, and never misses one.
 */
#include "retention.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "catalog.h"
#include "names.h"
#include "store.h"
#include "subjects.h"
#include "sys.h"

#define US_PER_S 1000000LL
#define HOLD_HASH_CTX "custodian-retention-hold-hash-v1"
#define HOLD_SEAL_CTX "custodian-retention-hold-seal-v1"
#define HOLD_MAC_LABEL "custodian-retention-hold-v1"
#define WIPE_CHUNK 65536

/* a + b seconds as microseconds, saturating (retain_max is at most 1000y,
 * but a damaged birth time may be anything). */
static int64_t add_s(int64_t base_us, int64_t secs)
{
	int64_t d;

	if (secs <= 0)
		return base_us;
	d = secs > INT64_MAX / US_PER_S ? INT64_MAX : secs * US_PER_S;
	if (base_us > 0 && d > INT64_MAX - base_us)
		return INT64_MAX;
	return base_us + d;
}

/* --- keep-until and checks --------------------------------------------------- */

int64_t retention_keep_until(const struct policy_effective *e, int64_t birth_us)
{
	if (!e || e->retain_min_s <= 0)
		return 0;
	return add_s(birth_us, e->retain_min_s);
}

int64_t retention_effective_keep_until(const struct policy_effective *e,
				       const struct format_header *h)
{
	int64_t now_rule = retention_keep_until(e, h->birth_us);

	return h->keep_until_us > now_rule ? h->keep_until_us : now_rule;
}

int retention_check(const struct policy_effective *e, const struct format_header *h,
		    int64_t now_us, enum retention_op op)
{
	bool locked = now_us < retention_effective_keep_until(e, h);
	bool worm = h->flags & FORMAT_FLAG_WORM;

	switch (op) {
	case RETENTION_UNLINK:
	case RETENTION_RENAME_AWAY:
		return locked ? -EPERM : 0;
	case RETENTION_TRUNCATE:
	case RETENTION_OVERWRITE:
		return locked || worm ? -EPERM : 0;
	case RETENTION_APPEND:
		return worm ? -EPERM : 0;
	case RETENTION_SETATTR:
		return 0;
	}
	return -EINVAL;
}

int retention_check_held(bool held, enum retention_op op)
{
	switch (op) {
	case RETENTION_UNLINK:
	case RETENTION_RENAME_AWAY:
	case RETENTION_TRUNCATE:
	case RETENTION_OVERWRITE:
		return held ? -EPERM : 0;
	case RETENTION_APPEND:
	case RETENTION_SETATTR:
		return 0;
	}
	return -EINVAL;
}

bool retention_worm_due(const struct policy_effective *e, const struct format_header *h,
			bool written, int64_t mtime_us, int64_t now_us)
{
	if (!e || !e->worm || (h->flags & FORMAT_FLAG_WORM))
		return false;
	if (written)
		return true;
	return e->autocommit_s > 0 && now_us >= add_s(mtime_us, e->autocommit_s);
}

int retention_worm_commit(struct format_file *f, const struct policy_effective *e)
{
	if (!f->have_header)
		return -EINVAL;
	f->hdr.keep_until_us = retention_effective_keep_until(e, &f->hdr);
	f->hdr.flags |= FORMAT_FLAG_WORM;
	return format_file_write_header(f);
}

/* --- directory holds ------------------------------------------------------------ */

/* "/a//b/" -> "/a/b"; "/" stays "/".  -EINVAL if not absolute or with
 * "." / ".." components, -ENAMETOOLONG. */
static int norm_path(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	const char *p = in;

	if (!in || in[0] != '/')
		return -EINVAL;
	while (*p) {
		const char *s;
		size_t n;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		s = p;
		while (*p && *p != '/')
			p++;
		n = (size_t)(p - s);
		if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
			return -EINVAL;
		if (o + 1 + n + 1 > cap)
			return -ENAMETOOLONG;
		out[o++] = '/';
		memcpy(out + o, s, n);
		o += n;
	}
	if (o == 0) {
		if (cap < 2)
			return -ENAMETOOLONG;
		out[o++] = '/';
	}
	out[o] = '\0';
	return 0;
}

/* The two keys of the holds table, derived from the volume path key. */
static void hold_keys(struct store *st, uint8_t hk[CRYPT_KEY_BYTES],
		      uint8_t sk[CRYPT_KEY_BYTES])
{
	const struct keyring *v = keys_volume(st->mk);

	crypt_hash(hk, CRYPT_KEY_BYTES, v->path, HOLD_HASH_CTX, sizeof(HOLD_HASH_CTX));
	crypt_hash(sk, CRYPT_KEY_BYTES, v->path, HOLD_SEAL_CTX, sizeof(HOLD_SEAL_CTX));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* MAC over label | hash | u64 len | path_ct | u64 len | reason_ct | u64
 * created, keyed by KEYS_CATALOG_MAC. */
static void hold_mac(struct store *st, const struct catalog_hold *h,
		     uint8_t mac[CRYPT_MAC_BYTES])
{
	size_t cap = sizeof(HOLD_MAC_LABEL) + CRYPT_HASH_BYTES + 24 + h->path_ct_len +
		     h->reason_ct_len;
	uint8_t *buf = malloc(cap), *p;

	if (!buf) {
		/* Cannot compute: a MAC that matches nothing. */
		memset(mac, 0, CRYPT_MAC_BYTES);
		return;
	}
	p = buf;
	memcpy(p, HOLD_MAC_LABEL, sizeof(HOLD_MAC_LABEL));
	p += sizeof(HOLD_MAC_LABEL);
	memcpy(p, h->hash, CRYPT_HASH_BYTES);
	p += CRYPT_HASH_BYTES;
	put_u64(p, h->path_ct_len);
	p += 8;
	memcpy(p, h->path_ct, h->path_ct_len);
	p += h->path_ct_len;
	put_u64(p, h->reason_ct_len);
	p += 8;
	memcpy(p, h->reason_ct, h->reason_ct_len);
	p += h->reason_ct_len;
	put_u64(p, (uint64_t)h->created_us);
	p += 8;
	crypt_hash(mac, CRYPT_MAC_BYTES, keys_master_key(st->mk, KEYS_CATALOG_MAC), buf,
		   (size_t)(p - buf));
	free(buf);
}

int retention_hold_set(struct store *st, const char *path, bool on, const char *reason,
		       int64_t now_us, bool *changed)
{
	uint8_t hk[CRYPT_KEY_BYTES], sk[CRYPT_KEY_BYTES];
	char norm[RETENTION_PATH_MAX];
	struct catalog_hold *h = NULL;
	size_t plen, rlen = 0;
	int ret;

	if (changed)
		*changed = false;
	if (!st || !st->mk)
		return -EINVAL;
	ret = norm_path(path, norm, sizeof(norm));
	if (ret < 0)
		return ret;
	if (on && (!reason || !reason[0] || strlen(reason) >= RETENTION_REASON_MAX))
		return -EINVAL;
	h = malloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	hold_keys(st, hk, sk);
	memset(h, 0, sizeof(*h));
	plen = strlen(norm);
	crypt_hash(h->hash, CRYPT_HASH_BYTES, hk, norm, plen);
	if (!on) {
		ret = catalog_hold_delete(st->cat, h->hash);
		if (ret == 0 && changed)
			*changed = true;
		if (ret == -ENOENT)
			ret = 0;
		goto out;
	}
	h->path_ct_len = plen + CRYPT_AEAD_OVERHEAD;
	ret = crypt_block_seal(h->path_ct, (const uint8_t *)norm, plen, sk, h->hash,
			       CRYPT_HASH_BYTES);
	if (ret == 0) {
		rlen = strlen(reason);
		h->reason_ct_len = rlen + CRYPT_AEAD_OVERHEAD;
		ret = crypt_block_seal(h->reason_ct, (const uint8_t *)reason, rlen, sk,
				       h->hash, CRYPT_HASH_BYTES);
	}
	if (ret < 0)
		goto out;
	h->created_us = now_us;
	hold_mac(st, h, h->mac);
	{
		struct catalog_hold *old = malloc(sizeof(*old));
		bool had = old && catalog_hold_get(st->cat, h->hash, old) == 0;

		free(old);
		ret = catalog_hold_put(st->cat, h);
		if (ret == 0 && changed)
			*changed = !had;
	}
out:
	crypt_wipe(hk, sizeof(hk));
	crypt_wipe(sk, sizeof(sk));
	crypt_wipe(norm, sizeof(norm));
	free(h);
	return ret;
}

/* Opens one row: checks the MAC, unseals path (and reason if wanted). */
static int hold_open(struct store *st, const uint8_t sk[CRYPT_KEY_BYTES],
		     const struct catalog_hold *h, char path[RETENTION_PATH_MAX],
		     char reason[RETENTION_REASON_MAX])
{
	uint8_t mac[CRYPT_MAC_BYTES];
	size_t n;
	int ret;

	hold_mac(st, h, mac);
	if (!crypt_equal(mac, h->mac, CRYPT_MAC_BYTES))
		return -EBADMSG;
	if (h->path_ct_len <= CRYPT_AEAD_OVERHEAD ||
	    h->path_ct_len - CRYPT_AEAD_OVERHEAD >= RETENTION_PATH_MAX)
		return -EBADMSG;
	n = h->path_ct_len - CRYPT_AEAD_OVERHEAD;
	ret = crypt_block_open((uint8_t *)path, h->path_ct, h->path_ct_len, sk, h->hash,
			       CRYPT_HASH_BYTES);
	if (ret < 0)
		return -EBADMSG;
	path[n] = '\0';
	reason[0] = '\0';
	if (h->reason_ct_len > CRYPT_AEAD_OVERHEAD &&
	    h->reason_ct_len - CRYPT_AEAD_OVERHEAD < RETENTION_REASON_MAX) {
		n = h->reason_ct_len - CRYPT_AEAD_OVERHEAD;
		if (crypt_block_open((uint8_t *)reason, h->reason_ct, h->reason_ct_len,
				     sk, h->hash, CRYPT_HASH_BYTES) < 0)
			return -EBADMSG;
		reason[n] = '\0';
	}
	return 0;
}

int retention_hold_list(struct store *st,
			int (*fn)(const char *path, const char *reason,
				  int64_t created_us, void *arg),
			void *arg)
{
	uint8_t hk[CRYPT_KEY_BYTES], sk[CRYPT_KEY_BYTES];
	char *path = NULL, *reason = NULL;
	struct catalog_hold *v = NULL;
	size_t n = 0;
	int ret;

	if (!st || !st->mk)
		return -EINVAL;
	ret = catalog_hold_list(st->cat, &v, &n);
	if (ret < 0)
		return ret;
	hold_keys(st, hk, sk);
	path = malloc(RETENTION_PATH_MAX);
	reason = malloc(RETENTION_REASON_MAX);
	if (!path || !reason) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ret = hold_open(st, sk, &v[i], path, reason);
		if (ret == 0)
			ret = fn(path, reason, v[i].created_us, arg);
		if (ret != 0)
			goto out;
	}
	ret = 0;
out:
	if (path)
		crypt_wipe(path, RETENTION_PATH_MAX);
	if (reason)
		crypt_wipe(reason, RETENTION_REASON_MAX);
	free(path);
	free(reason);
	crypt_wipe(hk, sizeof(hk));
	crypt_wipe(sk, sizeof(sk));
	free(v);
	return ret;
}

/* The loaded holds: the hash key and the hashes (a handful: linear). */
struct retention_holds {
	uint8_t hk[CRYPT_KEY_BYTES];       /* keyed-hash key of held paths */
	size_t n;                          /* holds */
	uint8_t (*hash)[CRYPT_HASH_BYTES]; /* n hashes of verified rows */
};

int retention_holds_load(struct store *st, struct retention_holds **out)
{
	uint8_t hk[CRYPT_KEY_BYTES], sk[CRYPT_KEY_BYTES];
	struct retention_holds *h = NULL;
	struct catalog_hold *v = NULL;
	char *path = NULL, *reason = NULL;
	size_t n = 0;
	int ret;

	*out = NULL;
	if (!st || !st->mk)
		return -EINVAL;
	ret = catalog_hold_list(st->cat, &v, &n);
	if (ret < 0)
		return ret;
	hold_keys(st, hk, sk);
	h = crypt_secure_alloc(sizeof(*h));
	path = malloc(RETENTION_PATH_MAX);
	reason = malloc(RETENTION_REASON_MAX);
	if (!h || !path || !reason) {
		ret = -ENOMEM;
		goto out;
	}
	memset(h, 0, sizeof(*h));
	memcpy(h->hk, hk, sizeof(hk));
	h->hash = n ? calloc(n, CRYPT_HASH_BYTES) : NULL;
	if (n && !h->hash) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		/* An edited row is refused, not ignored: a hold must not be
		 * lifted by damaging it. */
		ret = hold_open(st, sk, &v[i], path, reason);
		if (ret < 0)
			goto out;
		memcpy(h->hash[h->n++], v[i].hash, CRYPT_HASH_BYTES);
	}
	ret = 0;
out:
	if (path)
		crypt_wipe(path, RETENTION_PATH_MAX);
	if (reason)
		crypt_wipe(reason, RETENTION_REASON_MAX);
	free(path);
	free(reason);
	crypt_wipe(hk, sizeof(hk));
	crypt_wipe(sk, sizeof(sk));
	free(v);
	if (ret < 0) {
		retention_holds_free(h);
		return ret;
	}
	*out = h;
	return 0;
}

void retention_holds_free(struct retention_holds *h)
{
	if (!h)
		return;
	free(h->hash);
	crypt_secure_free(h);
}

static bool holds_has(const struct retention_holds *h, const char *p, size_t len)
{
	uint8_t x[CRYPT_HASH_BYTES];

	crypt_hash(x, sizeof(x), h->hk, p, len);
	for (size_t i = 0; i < h->n; i++)
		if (crypt_equal(x, h->hash[i], CRYPT_HASH_BYTES))
			return true;
	return false;
}

bool retention_holds_match(const struct retention_holds *h, const char *path)
{
	char norm[RETENTION_PATH_MAX];
	size_t len;
	bool held = false;

	if (!h || h->n == 0 || norm_path(path, norm, sizeof(norm)) < 0)
		return false;
	len = strlen(norm);
	if (holds_has(h, "/", 1))
		held = true;
	for (size_t i = 1; !held && i <= len; i++)
		if (i == len || norm[i] == '/')
			held = holds_has(h, norm, i);
	crypt_wipe(norm, len);
	return held;
}

int retention_held(struct store *st, const char *path)
{
	struct retention_holds *h;
	int ret = retention_holds_load(st, &h);

	if (ret < 0)
		return ret;
	ret = retention_holds_match(h, path) ? 1 : 0;
	retention_holds_free(h);
	return ret;
}

/* --- the walk ------------------------------------------------------------------------
 */

/* The subject a walk is inside (NULL outside subjects). */
struct subj_ctx {
	const uint8_t *hash;        /* CRYPT_HASH_BYTES */
	const struct keyring *ring; /* its keyring */
	int64_t last_write_us;      /* for retain_from = subject-inactive */
	bool held;                  /* subject on legal hold */
};

/* What a scan-only pass of a subject found. */
struct subj_agg {
	uint64_t files, bytes; /* records and plaintext bytes */
	int64_t max_keep_us;   /* latest effective keep-until */
	bool dir_held;         /* a directory hold covers part of it */
	bool unreadable;       /* something could not be read */
};

/* One walk. */
struct walk {
	struct store *st;
	const struct policy *p;
	const struct retention_sweep_opts *o;
	struct retention_stats *stats;
	struct retention_holds *holds;
	struct audit_who who; /* the operator, for audit records */
	struct subj_agg *agg; /* set during a subject's scan-only pass */
	bool no_act;          /* emit, never act (dry run, or pre-scan) */
	bool with_subject;    /* files go with their subject's shred */
	bool quiet;           /* pre-scan: no items, no stats */
};

static void iso(int64_t us, char out[32])
{
	time_t t = (time_t)(us / US_PER_S);
	struct tm tm;

	if (us < 0 || !gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(out, 32, "unknown");
}

static int emit(struct walk *w, struct retention_item *it)
{
	struct retention_stats *s = w->stats;

	if (w->quiet)
		return 0;
	if (it->kind == RETENTION_FILE) {
		if (it->state != RETENTION_PENDING)
			s->files++;
		s->files_due += it->state == RETENTION_DUE;
		s->files_held += it->state == RETENTION_HELD;
		s->files_unreadable += it->state == RETENTION_UNREADABLE;
		s->files_erased += it->erased;
	} else {
		if (it->state != RETENTION_PENDING)
			s->subjects++;
		s->subjects_due += it->state == RETENTION_DUE;
		s->subjects_held += it->state == RETENTION_HELD;
		s->subjects_shredded += it->erased;
	}
	s->resumed += it->resumed;
	if (it->erased)
		s->bytes_erased += it->bytes;
	if (it->err && it->state != RETENTION_UNREADABLE)
		s->errors++;
	if (it->state == RETENTION_KEPT && it->due_us > w->o->now_us &&
	    (s->next_due_us == 0 || it->due_us < s->next_due_us))
		s->next_due_us = it->due_us;
	return w->o->item ? w->o->item(it, w->o->arg) : 0;
}

static char *join(const char *dir, const char *name)
{
	char *s;

	if (asprintf(&s, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name) < 0)
		return NULL;
	return s;
}

static void stage(struct walk *w, enum retention_stage s)
{
	if (w->o->stage)
		w->o->stage(s, w->o->arg);
}

/* Overwrites, syncs and unlinks the erasing entry `name` of dirfd; the
 * retention_erased row is marked done once the ciphertext is destroyed. */
static int finish_erase(struct walk *w, int dirfd, const char *name,
			const uint8_t *file_id, const struct catalog_erased *row)
{
	uint8_t *buf = NULL;
	struct stat sb;
	int fd, ret = 0;

	fd = sys.openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) != 0) {
		ret = -errno;
		goto out;
	}
	/* A second hard link keeps the record alive elsewhere: only the name
	 * goes (the daemon refuses links across retention rules anyway). */
	if (sb.st_nlink <= 1 && sb.st_size > 0) {
		buf = malloc(WIPE_CHUNK);
		if (!buf) {
			ret = -ENOMEM;
			goto out;
		}
		for (off_t off = 0; off < sb.st_size; off += WIPE_CHUNK) {
			size_t n = sb.st_size - off < WIPE_CHUNK
					   ? (size_t)(sb.st_size - off)
					   : WIPE_CHUNK;
			ssize_t wr;

			crypt_random(buf, n);
			wr = sys_pwrite_full(fd, buf, n, off);
			if (wr < 0) {
				ret = (int)wr;
				goto out;
			}
		}
		if (sys.fsync(fd) != 0) {
			ret = -errno;
			goto out;
		}
	}
	if (file_id) {
		struct catalog_erased e;

		memset(&e, 0, sizeof(e));
		memcpy(e.file_id, file_id, CRYPT_FILE_ID_BYTES);
		e.erased_us = row ? row->erased_us : w->o->now_us;
		e.audit_seq = row ? row->audit_seq : 0;
		e.done = 1;
		ret = catalog_erased_put(w->st->cat, &e);
		if (ret < 0)
			goto out;
	}
	if (sys.unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) {
		ret = -errno;
		goto out;
	}
	if (sys.fsync(dirfd) != 0)
		ret = -errno;
out:
	free(buf);
	close(fd);
	return ret;
}

/* The erasing name of a file id: ".E" + hex. */
static void erasing_name(const uint8_t id[CRYPT_FILE_ID_BYTES], char out[80])
{
	char hex[2 * CRYPT_FILE_ID_BYTES + 1];

	crypt_hex(hex, id, CRYPT_FILE_ID_BYTES);
	snprintf(out, 80, "%s%s", RETENTION_ERASING_PREFIX, hex);
}

/* Erases one due file (backing entry `backing` of dirfd). */
static int erase_file(struct walk *w, int dirfd, const char *backing,
		      const struct format_header *h, const char *path,
		      const struct subj_ctx *sc, bool *resumed)
{
	struct catalog_erased row;
	char ename[80], detail[160], due[32];
	bool have_row;
	int ret;

	*resumed = false;
	ret = catalog_erased_get(w->st->cat, h->file_id, &row);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	have_row = ret == 0;
	if (have_row) {
		*resumed = true; /* recorded by an earlier run: not again */
	} else {
		struct audit_event ev;
		uint64_t seq = 0;

		memset(&row, 0, sizeof(row));
		memcpy(row.file_id, h->file_id, CRYPT_FILE_ID_BYTES);
		row.erased_us = w->o->now_us;
		if (w->o->audit) {
			iso(w->o->now_us, due);
			snprintf(detail, sizeof(detail),
				 "retention erase: retain_max passed; compliance time %s",
				 due);
			memset(&ev, 0, sizeof(ev));
			ev.op = AUDIT_OP_SWEEP;
			ev.who = &w->who;
			ev.subject = sc ? sc->hash : NULL;
			ev.ring = sc ? sc->ring : NULL;
			ev.path = path;
			ev.detail = detail;
			ret = audit_append(w->o->audit, &ev, &seq);
			if (ret < 0)
				return ret; /* unrecorded: erase nothing */
		}
		row.audit_seq = (int64_t)seq;
		ret = catalog_erased_put(w->st->cat, &row);
		if (ret < 0)
			return ret;
	}
	stage(w, RETENTION_STAGE_RECORDED);
	erasing_name(h->file_id, ename);
	if (sys.renameat(dirfd, backing, dirfd, ename) != 0)
		return -errno;
	if (strncmp(backing, NAMES_LONG_PREFIX, strlen(NAMES_LONG_PREFIX)) == 0) {
		char side[NAMES_BACKING_MAX + 8];

		snprintf(side, sizeof(side), "%s%s", NAMES_SIDECAR_PREFIX,
			 backing + strlen(NAMES_LONG_PREFIX));
		if (sys.unlinkat(dirfd, side, 0) != 0 && errno != ENOENT)
			return -errno;
	}
	if (sys.fsync(dirfd) != 0)
		return -errno;
	stage(w, RETENTION_STAGE_RENAMED);
	ret = finish_erase(w, dirfd, ename, h->file_id, &row);
	if (ret == 0)
		stage(w, RETENTION_STAGE_DONE);
	return ret;
}

/* Handles one regular file. */
static int visit_file(struct walk *w, int dirfd, const char *backing, const char *path,
		      const struct policy_effective *eff, const struct policy_rule *rule,
		      const struct subj_ctx *sc, bool dir_held, const struct stat *sb)
{
	struct retention_item it;
	struct format_file f;
	int64_t mtime_us, base, maxdue;
	int fd, ret;

	memset(&it, 0, sizeof(it));
	it.kind = RETENTION_FILE;
	it.path = path;
	it.rule = rule;
	it.eff = eff;
	it.in_subject = sc != NULL;
	it.with_subject = w->with_subject;
	mtime_us = (int64_t)sb->st_mtim.tv_sec * US_PER_S + sb->st_mtim.tv_nsec / 1000;

	fd = sys.openat(dirfd, backing, O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0) {
		it.state = RETENTION_UNREADABLE;
		it.err = -errno;
		goto done;
	}
	ret = format_file_load(&f, fd, sc ? sc->ring : keys_volume(w->st->mk));
	close(fd);
	if (ret < 0) {
		it.state = RETENTION_UNREADABLE;
		it.err = ret;
		goto done;
	}
	if (!f.have_header) {
		/* Empty and never written: its age is its mtime. */
		memset(&f.hdr, 0, sizeof(f.hdr));
		f.hdr.birth_us = mtime_us;
	} else {
		off_t plain = format_plain_size(sb->st_size);

		it.bytes = plain > 0 ? (uint64_t)plain : 0;
	}
	it.birth_us = f.hdr.birth_us;
	it.keep_until_us = retention_effective_keep_until(eff, &f.hdr);
	if (eff->retain_max_s > 0) {
		if (eff->retain_from == POLICY_FROM_CREATED)
			base = f.hdr.birth_us;
		else if (eff->retain_from == POLICY_FROM_SUBJECT_INACTIVE && sc)
			base = sc->last_write_us;
		else
			base = mtime_us;
		maxdue = add_s(base, eff->retain_max_s);
		it.due_us = maxdue > it.keep_until_us ? maxdue : it.keep_until_us;
	}
	if (sc && sc->held) {
		it.state = RETENTION_HELD;
		it.held_by_subject = true;
	} else if (dir_held) {
		it.state = RETENTION_HELD;
	} else if (it.due_us && it.due_us <= w->o->now_us) {
		it.state = RETENTION_DUE;
	} else {
		it.state = RETENTION_KEPT;
	}
	/* Its subject is shredded as a whole (which checked every keep-until). */
	if (w->with_subject && it.state == RETENTION_KEPT)
		it.state = RETENTION_DUE;
	if (w->agg) {
		w->agg->files++;
		w->agg->bytes += it.bytes;
		if (it.keep_until_us > w->agg->max_keep_us)
			w->agg->max_keep_us = it.keep_until_us;
		w->agg->dir_held |= dir_held;
	}
	if (it.state == RETENTION_DUE && !w->no_act && f.have_header) {
		it.err = erase_file(w, dirfd, backing, &f.hdr, path, sc, &it.resumed);
		it.erased = it.err == 0;
	} else if (it.state == RETENTION_DUE && !w->no_act) {
		/* No header, no file id: nothing to note; remove directly. */
		it.err = sys.unlinkat(dirfd, backing, 0) == 0 ? 0 : -errno;
		it.erased = it.err == 0;
	}
done:
	if (w->agg && it.state == RETENTION_UNREADABLE)
		w->agg->unreadable = true;
	return emit(w, &it);
}

/* Finishes (or, in a dry run, reports) an erasure an earlier run began. */
static int visit_erasing(struct walk *w, int dirfd, const char *name, const char *dpath)
{
	uint8_t id[CRYPT_FILE_ID_BYTES];
	struct catalog_erased row;
	struct retention_item it;
	bool have_row = false;
	int n;

	memset(&it, 0, sizeof(it));
	it.kind = RETENTION_FILE;
	it.state = RETENTION_PENDING;
	it.path = dpath; /* the name went with the rename */
	n = crypt_unhex(id, sizeof(id), name + strlen(RETENTION_ERASING_PREFIX));
	if (n == (int)sizeof(id))
		have_row = catalog_erased_get(w->st->cat, id, &row) == 0;
	if (w->quiet)
		return 0;
	if (!w->no_act) {
		it.err = finish_erase(w, dirfd, name, n == (int)sizeof(id) ? id : NULL,
				      have_row ? &row : NULL);
		it.erased = it.err == 0;
		it.resumed = it.erased;
	}
	return emit(w, &it);
}

static int walk_dir(struct walk *w, int dirfd, const char *dpath,
		    const struct keyring *ring, const struct subj_ctx *sc, bool dir_held);

/* A subject root `name` (SUBJECTS_BACKING_PREFIX...) inside dirfd. */
static int visit_subject(struct walk *w, int dirfd, const char *name, const char *dpath,
			 bool dir_held)
{
	uint8_t hash[CRYPT_HASH_BYTES];
	struct subjects_info *info = NULL;
	struct keyring *ring = NULL;
	struct policy_effective eff;
	struct retention_item it;
	struct subj_agg agg;
	struct subj_ctx sc;
	char *spath = NULL;
	int sfd = -1, ret;

	memset(&it, 0, sizeof(it));
	it.kind = RETENTION_SUBJECT;
	it.path = "";
	ret = subjects_parse_backing_name(name, hash);
	if (ret < 0)
		return 0; /* not ours */
	info = malloc(sizeof(*info));
	if (!info)
		return -ENOMEM;
	ret = subjects_get(w->st, hash, info);
	if (ret == 0 && (info->flags & SUBJECTS_SHREDDED)) {
		/* Key destroyed but the tree left: an interrupted shred. */
		it.state = RETENTION_PENDING;
		if (!w->no_act && !w->quiet) {
			it.err = subjects_remove_tree(w->st, hash, dirfd);
			it.resumed = it.err == 0;
		}
		ret = w->quiet ? 0 : emit(w, &it);
		goto out;
	}
	if (ret < 0) {
		it.state = RETENTION_UNREADABLE;
		it.err = ret;
		ret = w->quiet ? 0 : emit(w, &it);
		goto out;
	}
	spath = join(dpath, info->id);
	if (!spath) {
		ret = -ENOMEM;
		goto out;
	}
	it.path = spath;
	ret = policy_effective(w->p, spath, &eff);
	if (ret < 0)
		goto out;
	it.eff = &eff;
	it.rule = policy_rule_for(w->p, spath);
	it.birth_us = info->created_us;
	dir_held = dir_held || retention_holds_match(w->holds, spath);
	ret = subjects_open(w->st, hash, &ring);
	if (ret == 0) {
		sfd = openat(dirfd, name,
			     O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sfd < 0)
			ret = -errno;
	}
	if (ret < 0) {
		it.state = RETENTION_UNREADABLE;
		it.err = ret;
		ret = w->quiet ? 0 : emit(w, &it);
		goto out;
	}
	sc.hash = hash;
	sc.ring = ring;
	sc.last_write_us = info->last_write_us;
	sc.held = info->flags & SUBJECTS_HELD;

	/* Scan-only pass: what is inside, and may the whole subject go? */
	{
		struct walk pre = *w;
		int dfd = dup(sfd);

		memset(&agg, 0, sizeof(agg));
		pre.agg = &agg;
		pre.no_act = true;
		pre.quiet = true;
		ret = dfd < 0 ? -errno : walk_dir(&pre, dfd, spath, ring, &sc, dir_held);
		if (ret < 0)
			goto out;
	}
	it.files = agg.files;
	it.bytes = agg.bytes;
	it.keep_until_us = agg.max_keep_us;
	if (eff.retain_max_s > 0 && eff.retain_from == POLICY_FROM_SUBJECT_INACTIVE) {
		int64_t d = add_s(info->last_write_us, eff.retain_max_s);

		it.due_us = d > agg.max_keep_us ? d : agg.max_keep_us;
	}
	if (sc.held) {
		it.state = RETENTION_HELD;
		it.held_by_subject = true;
	} else if (dir_held) {
		it.state = RETENTION_HELD;
	} else if (it.due_us && it.due_us <= w->o->now_us && !agg.dir_held &&
		   !agg.unreadable) {
		it.state = RETENTION_DUE;
	} else {
		it.state = RETENTION_KEPT;
	}

	/* The files, then (if due) the subject as a whole. */
	{
		struct walk sub = *w;
		int dfd = dup(sfd);

		sub.with_subject = it.state == RETENTION_DUE;
		sub.no_act = w->no_act || sub.with_subject;
		ret = dfd < 0 ? -errno : walk_dir(&sub, dfd, spath, ring, &sc, dir_held);
		if (ret < 0)
			goto out;
	}
	if (it.state == RETENTION_DUE && !w->no_act) {
		struct subjects_certificate *cert = malloc(sizeof(*cert));
		/* The ledger keeps the reason forever: it must not contain the
		 * id, so fall back to shorter texts for ids that collide. */
		static const char *const reasons[] = {
			"retention: retain_max after the last write has passed",
			"retention sweep", "expired", "R"};

		if (!cert) {
			ret = -ENOMEM;
			goto out;
		}
		it.err = -EINVAL;
		close(sfd);
		sfd = -1;
		const char *ops[] = {w->o->operator_ && w->o->operator_[0]
					     ? w->o->operator_
					     : "retention sweep",
				     "-"};

		for (size_t i = 0; i < ARRAY_LEN(reasons) * 2 && it.err == -EINVAL; i++)
			it.err = subjects_shred(w->st, w->o->audit, info->id,
						reasons[i / 2], ops[i % 2], false, cert);
		it.erased = cert->ledger_seq > 0;
		free(cert);
	}
	ret = emit(w, &it);
out:
	if (sfd >= 0)
		close(sfd);
	keys_ring_free(ring);
	if (info) {
		crypt_wipe(info, sizeof(*info));
		free(info);
	}
	free(spath);
	return ret;
}

/* One entry name of a directory, collected before anything is changed. */
struct names_list {
	char **v;   /* entry names (malloc'd each) */
	size_t n;   /* used */
	size_t cap; /* allocated */
};

static void names_list_free(struct names_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* Reads every entry of dirfd (which it keeps open). */
static int read_names(int dirfd, struct names_list *l)
{
	struct dirent *de;
	DIR *d;
	int fd = dup(dirfd), ret = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		ret = -errno;
		close(fd);
		return ret;
	}
	/* A dup shares the offset: an earlier pass may have left it at the end. */
	rewinddir(d);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (l->n == l->cap) {
			size_t cap = l->cap ? l->cap * 2 : 32;
			char **nv = realloc(l->v, cap * sizeof(*nv));

			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			l->v = nv;
			l->cap = cap;
		}
		l->v[l->n] = strdup(de->d_name);
		if (!l->v[l->n]) {
			ret = -ENOMEM;
			break;
		}
		l->n++;
	}
	closedir(d);
	return ret;
}

/* Walks directory dirfd (closed on return), plaintext path dpath. */
static int walk_dir(struct walk *w, int dirfd, const char *dpath,
		    const struct keyring *ring, const struct subj_ctx *sc, bool dir_held)
{
	uint8_t iv[CRYPT_DIRIV_BYTES];
	char plain[NAMES_PLAIN_MAX + 1];
	struct policy_effective eff;
	const struct policy_rule *rule;
	struct names_list l = {0};
	int ret;

	ret = policy_effective(w->p, dpath, &eff);
	if (ret == 0)
		ret = names_diriv_load(dirfd, iv);
	if (ret == 0)
		ret = read_names(dirfd, &l);
	if (ret < 0)
		goto out;
	rule = policy_rule_for(w->p, dpath);
	dir_held = dir_held || retention_holds_match(w->holds, dpath);
	for (size_t i = 0; i < l.n && ret == 0; i++) {
		const char *name = l.v[i];
		struct stat sb;
		char *path;

		if (!sc && strncmp(name, SUBJECTS_BACKING_PREFIX,
				   strlen(SUBJECTS_BACKING_PREFIX)) == 0) {
			ret = visit_subject(w, dirfd, name, dpath, dir_held);
			continue;
		}
		if (strncmp(name, RETENTION_ERASING_PREFIX,
			    strlen(RETENTION_ERASING_PREFIX)) == 0) {
			ret = visit_erasing(w, dirfd, name, dpath);
			continue;
		}
		if (names_reserved(name) ||
		    (name[0] == '.' &&
		     strncmp(name, NAMES_LONG_PREFIX, strlen(NAMES_LONG_PREFIX)) != 0))
			continue;
		if (fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno == ENOENT)
				continue;
			ret = -errno;
			break;
		}
		if (!S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode))
			continue; /* symlinks and specials carry no record */
		if (names_decrypt(ring, iv, dirfd, name, plain) < 0) {
			struct retention_item it;

			if (!S_ISREG(sb.st_mode))
				continue;
			memset(&it, 0, sizeof(it));
			it.kind = RETENTION_FILE;
			it.state = RETENTION_UNREADABLE;
			it.path = dpath;
			it.err = -EIO;
			if (w->agg)
				w->agg->unreadable = true;
			ret = emit(w, &it);
			continue;
		}
		path = join(dpath, plain);
		if (!path) {
			ret = -ENOMEM;
			break;
		}
		if (S_ISDIR(sb.st_mode)) {
			int fd = openat(dirfd, name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			ret = fd < 0 ? -errno : walk_dir(w, fd, path, ring, sc, dir_held);
		} else {
			ret = visit_file(
				w, dirfd, name, path, &eff, rule, sc,
				dir_held || retention_holds_match(w->holds, path), &sb);
		}
		crypt_wipe(path, strlen(path));
		free(path);
	}
out:
	crypt_wipe(plain, sizeof(plain));
	names_list_free(&l);
	close(dirfd);
	return ret;
}

/* Audits the start or the end of a sweep. */
static int audit_note(struct walk *w, const char *detail)
{
	struct audit_event ev;

	if (!w->o->audit)
		return 0;
	memset(&ev, 0, sizeof(ev));
	ev.op = AUDIT_OP_SWEEP;
	ev.who = &w->who;
	ev.detail = detail;
	return audit_append(w->o->audit, &ev, NULL);
}

int retention_sweep(struct store *st, const struct policy *p,
		    const struct retention_sweep_opts *o, struct retention_stats *stats)
{
	struct walk w;
	char detail[CATALOG_AUDIT_DETAIL_MAX], t[32];
	int fd, ret;

	memset(stats, 0, sizeof(*stats));
	if (!st || !st->mk || !o || o->now_us <= 0)
		return -EINVAL;
	if (!o->dry_run && st->readonly)
		return -EROFS;
	memset(&w, 0, sizeof(w));
	w.st = st;
	w.p = p;
	w.o = o;
	w.stats = stats;
	w.no_act = o->dry_run;
	if (o->audit)
		audit_who_self(&w.who);
	ret = retention_holds_load(st, &w.holds);
	if (ret < 0)
		return ret;
	iso(o->now_us, t);
	if (!o->dry_run) {
		snprintf(detail, sizeof(detail),
			 "sweep start; compliance time %s%s%.120s", t,
			 o->clock_note ? "; " : "", o->clock_note ? o->clock_note : "");
		ret = audit_note(&w, detail);
		if (ret < 0)
			goto out;
	}
	fd = openat(st->tree_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ret = fd < 0 ? -errno : walk_dir(&w, fd, "/", keys_volume(st->mk), NULL, false);
	if (!o->dry_run) {
		int r2;

		snprintf(detail, sizeof(detail),
			 "sweep %s; compliance time %s; files erased %" PRIu64
			 ", subjects shredded %" PRIu64 ", resumed %" PRIu64
			 ", held %" PRIu64 ", errors %" PRIu64,
			 ret == 0 ? "done" : "stopped", t, stats->files_erased,
			 stats->subjects_shredded, stats->resumed,
			 stats->files_held + stats->subjects_held, stats->errors);
		r2 = audit_note(&w, detail);
		if (ret == 0)
			ret = r2;
	}
out:
	retention_holds_free(w.holds);
	return ret;
}
