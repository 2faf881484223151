/*
 * subjects.c — data subjects and crypto-shredding, see subjects.h.
 *
 * Owns the meaning of a subject row (what is sealed under which key, the
 * row MAC that makes flags like "held" tamper-evident), the placement of a
 * subject's root in the backing tree (".S" + base64url(hash)), the walk
 * that counts and removes a subject's ciphertext, the shred itself (audit
 * record, key destruction, ledger entry, checkpoint, removal, in that
 * order), certificates and the portable erasure ledger used after a
 * restore.  Keys stay in secure memory; plaintext ids and reasons are
 * wiped from the stack before returning.
 */
#include "subjects.h"

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
#include "clock.h"
#include "format.h"
#include "names.h"
#include "store.h"
#include "sys.h"

#define HASH_B64_LEN 43
#define LEDGER_MAGIC "custodian-erasure-v1"

/* Associated-data labels, so no sealed field can be moved to another. */
static const char AD_ID[] = "custodian-subject-id";
static const char AD_PARENT[] = "custodian-subject-parent";
static const char AD_RESTRICT[] = "custodian-subject-restrict";
static const char AD_HOLD[] = "custodian-subject-hold";
static const char MAC_ROW[] = "custodian-subject-v1";
static const char MAC_KEYFP[] = "custodian-subject-key-v1";
static const char MAC_ERASURE[] = "custodian-erasure-v1";

/* --- names and hashes ----------------------------------------------------- */

void subjects_hash(const struct keys_master *mk, const char *id,
		   uint8_t out[CRYPT_HASH_BYTES])
{
	crypt_hash(out, CRYPT_HASH_BYTES, keys_master_key(mk, KEYS_SUBJECT_HASH), id,
		   strlen(id));
}

int subjects_id_check(const char *id)
{
	size_t n;

	if (id == NULL)
		return -EINVAL;
	n = strnlen(id, SUBJECTS_ID_MAX + 1);
	if (n > SUBJECTS_ID_MAX)
		return -ENAMETOOLONG;
	if (n == 0 || strcmp(id, ".") == 0 || strcmp(id, "..") == 0 || strchr(id, '/'))
		return -EINVAL;
	return 0;
}

void subjects_backing_name(const uint8_t hash[CRYPT_HASH_BYTES],
			   char out[SUBJECTS_BACKING_LEN + 1])
{
	memcpy(out, SUBJECTS_BACKING_PREFIX, 2);
	/* 43 characters always fit: the return value cannot be an error. */
	(void)crypt_b64_encode(out + 2, SUBJECTS_BACKING_LEN - 1, hash, CRYPT_HASH_BYTES);
}

int subjects_parse_backing_name(const char *name, uint8_t hash[CRYPT_HASH_BYTES])
{
	uint8_t buf[CRYPT_HASH_BYTES + 2];
	char again[SUBJECTS_BACKING_LEN + 1];

	if (name == NULL || strncmp(name, SUBJECTS_BACKING_PREFIX, 2) != 0 ||
	    strlen(name) != SUBJECTS_BACKING_LEN)
		return -EINVAL;
	if (crypt_b64_decode(buf, sizeof(buf), name + 2, HASH_B64_LEN) !=
	    CRYPT_HASH_BYTES)
		return -EINVAL;
	/* Strict: only the one canonical spelling of a hash is a subject. */
	subjects_backing_name(buf, again);
	if (strcmp(again, name) != 0)
		return -EINVAL;
	memcpy(hash, buf, CRYPT_HASH_BYTES);
	return 0;
}

/* Canonical absolute path: single slashes, no trailing slash, no "." or
 * ".." components ("/" stays "/"). */
static int norm_path(const char *in, char *out, size_t cap)
{
	size_t o = 0;
	const char *p = in;

	if (in == NULL || in[0] != '/')
		return -EINVAL;
	while (*p) {
		const char *e;
		size_t n;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		e = strchrnul(p, '/');
		n = (size_t)(e - p);
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return -EINVAL;
		if (n > NAMES_PLAIN_MAX)
			return -ENAMETOOLONG;
		if (o + 1 + n + 1 > cap)
			return -ENAMETOOLONG;
		out[o++] = '/';
		memcpy(out + o, p, n);
		o += n;
		p = e;
	}
	if (o == 0) {
		if (cap < 2)
			return -ENAMETOOLONG;
		out[o++] = '/';
	}
	out[o] = 0;
	return 0;
}

/* --- sealing ----------------------------------------------------------------- */

/* out (len + overhead bytes) = seal(plain) under key with ad = label | hash. */
static int seal(const uint8_t key[CRYPT_KEY_BYTES], const char *label,
		const uint8_t hash[CRYPT_HASH_BYTES], const char *plain, uint8_t *out,
		size_t cap, size_t *outlen)
{
	uint8_t ad[64];
	size_t llen = strlen(label), n = strlen(plain);
	int ret;

	if (n + CRYPT_AEAD_OVERHEAD > cap)
		return -ENAMETOOLONG;
	memcpy(ad, label, llen);
	memcpy(ad + llen, hash, CRYPT_HASH_BYTES);
	ret = crypt_block_seal(out, (const uint8_t *)plain, n, key, ad,
			       llen + CRYPT_HASH_BYTES);
	if (ret == 0)
		*outlen = n + CRYPT_AEAD_OVERHEAD;
	return ret;
}

/* Inverse of seal into a NUL-terminated string; -EIO if it does not open
 * (wrong key) or holds a NUL. */
static int unseal(const uint8_t key[CRYPT_KEY_BYTES], const char *label,
		  const uint8_t hash[CRYPT_HASH_BYTES], const uint8_t *in, size_t len,
		  char *out, size_t cap)
{
	uint8_t ad[64];
	size_t llen = strlen(label), n;
	int ret;

	out[0] = 0;
	if (len == 0)
		return 0;
	if (len < CRYPT_AEAD_OVERHEAD || len - CRYPT_AEAD_OVERHEAD >= cap)
		return -EIO;
	n = len - CRYPT_AEAD_OVERHEAD;
	memcpy(ad, label, llen);
	memcpy(ad + llen, hash, CRYPT_HASH_BYTES);
	ret = crypt_block_open((uint8_t *)out, in, len, key, ad, llen + CRYPT_HASH_BYTES);
	if (ret < 0) {
		crypt_wipe(out, cap);
		return -EIO;
	}
	out[n] = 0;
	if (memchr(out, 0, n)) {
		crypt_wipe(out, cap);
		return -EIO;
	}
	return 0;
}

/* --- MACs -------------------------------------------------------------------- */

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

static uint8_t *put_field(uint8_t *p, const void *b, size_t n)
{
	p = put_u64(p, n);
	if (n)
		memcpy(p, b, n);
	return p + n;
}

/* Row MAC over everything but last_write_us (updated on every write, and
 * worthless to forge: it only delays an inactivity sweep). */
static int row_mac(const struct keys_master *mk, const struct catalog_subject *s,
		   uint8_t mac[CRYPT_MAC_BYTES])
{
	size_t cap = sizeof(MAC_ROW) + CRYPT_HASH_BYTES + 8 * 10 + sizeof(s->wrapped) +
		     sizeof(s->id_ct) + sizeof(s->parent_ct) + sizeof(s->restrict_ct) +
		     sizeof(s->hold_ct);
	uint8_t *buf = malloc(cap), *p;

	if (buf == NULL)
		return -ENOMEM;
	p = buf;
	memcpy(p, MAC_ROW, sizeof(MAC_ROW));
	p += sizeof(MAC_ROW);
	memcpy(p, s->hash, CRYPT_HASH_BYTES);
	p += CRYPT_HASH_BYTES;
	p = put_u64(p, (uint64_t)(s->restricted ? 1 : 0) | (s->held ? 2 : 0) |
			       (s->shredded ? 4 : 0) | (s->has_key ? 8 : 0));
	p = put_u64(p, (uint64_t)s->created_us);
	p = put_field(p, s->wrapped, s->has_key ? sizeof(s->wrapped) : 0);
	p = put_field(p, s->id_ct, s->id_ct_len);
	p = put_field(p, s->parent_ct, s->parent_ct_len);
	p = put_field(p, s->restrict_ct, s->restrict_ct_len);
	p = put_field(p, s->hold_ct, s->hold_ct_len);
	crypt_hash(mac, CRYPT_MAC_BYTES, keys_master_key(mk, KEYS_CATALOG_MAC), buf,
		   (size_t)(p - buf));
	free(buf);
	return 0;
}

static int row_verify(const struct keys_master *mk, const struct catalog_subject *s)
{
	uint8_t mac[CRYPT_MAC_BYTES];
	int ret = row_mac(mk, s, mac);

	if (ret == 0 && !crypt_equal(mac, s->mac, CRYPT_MAC_BYTES))
		ret = -EBADMSG;
	return ret;
}

/* Identifies one generation of a subject's key without revealing it. */
static void key_fingerprint(const struct keys_master *mk,
			    const uint8_t wrapped[KEYS_WRAPPED_BYTES],
			    uint8_t fp[CRYPT_HASH_BYTES])
{
	crypt_hash2(fp, CRYPT_HASH_BYTES, keys_master_key(mk, KEYS_CATALOG_MAC),
		    MAC_KEYFP, sizeof(MAC_KEYFP), wrapped, KEYS_WRAPPED_BYTES);
}

void subjects_erasure_mac(const struct keys_master *mk, const struct catalog_erasure *e,
			  uint8_t mac[CRYPT_MAC_BYTES])
{
	uint8_t buf[sizeof(MAC_ERASURE) + 2 * CRYPT_HASH_BYTES + 8 * 8 +
		    sizeof(e->reason) + sizeof(e->operator_)];
	uint8_t *p = buf;

	memcpy(p, MAC_ERASURE, sizeof(MAC_ERASURE));
	p += sizeof(MAC_ERASURE);
	p = put_u64(p, (uint64_t)e->seq);
	memcpy(p, e->hash, CRYPT_HASH_BYTES);
	p += CRYPT_HASH_BYTES;
	memcpy(p, e->key_fp, CRYPT_HASH_BYTES);
	p += CRYPT_HASH_BYTES;
	p = put_u64(p, (uint64_t)e->shredded_us);
	p = put_u64(p, (uint64_t)e->files);
	p = put_u64(p, (uint64_t)e->bytes);
	p = put_u64(p, (uint64_t)e->audit_seq);
	p = put_field(p, e->reason, strnlen(e->reason, sizeof(e->reason)));
	p = put_field(p, e->operator_, strnlen(e->operator_, sizeof(e->operator_)));
	crypt_hash(mac, CRYPT_MAC_BYTES, keys_master_key(mk, KEYS_CATALOG_MAC), buf,
		   (size_t)(p - buf));
}

/* --- the backing tree ---------------------------------------------------------- */

int subjects_resolve_dir(struct store *st, const char *path, int *fd)
{
	char norm[SUBJECTS_PARENT_MAX], *p, *save = NULL;
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct names_enc enc;
	int cur, next, ret;

	*fd = -1;
	if (st == NULL || st->mk == NULL)
		return -EINVAL;
	ret = norm_path(path, norm, sizeof(norm));
	if (ret < 0)
		return ret;
	cur = openat(st->tree_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cur < 0)
		return -errno;
	for (p = strtok_r(norm, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		ret = names_diriv_load(cur, iv);
		if (ret == 0)
			ret = names_encrypt(keys_volume(st->mk), iv, p, &enc);
		if (ret < 0)
			goto out;
		next = openat(cur, enc.backing,
			      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			ret = errno == ELOOP || errno == ENOTDIR ? -ENOENT : -errno;
			goto out;
		}
		close(cur);
		cur = next;
	}
	ret = 0;
out:
	crypt_wipe(norm, sizeof(norm));
	if (ret < 0) {
		close(cur);
		return ret;
	}
	*fd = cur;
	return 0;
}

/* Counts below dirfd (which it closes).  Dot entries are the store's own
 * (IVs, sidecars) and not records; they are still removed by rm_tree. */
static int walk_count(int dirfd, struct subjects_usage *u)
{
	struct dirent *de;
	struct stat sb;
	DIR *d = fdopendir(dirfd);
	int ret = 0;

	if (d == NULL) {
		ret = -errno;
		close(dirfd);
		return ret;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' && !(de->d_name[1] == 'L' && de->d_name[2]))
			continue;
		if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			ret = -errno;
			break;
		}
		if (S_ISREG(sb.st_mode)) {
			off_t plain = format_plain_size(sb.st_size);

			u->files++;
			u->cipher_bytes += (uint64_t)sb.st_size;
			u->bytes += (uint64_t)(plain >= 0 ? plain : 0);
		} else if (S_ISDIR(sb.st_mode)) {
			int fd = openat(dirfd, de->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			u->dirs++;
			if (fd < 0) {
				ret = -errno;
				break;
			}
			ret = walk_count(fd, u);
			if (ret < 0)
				break;
		}
	}
	closedir(d);
	return ret;
}

/* Removes everything below dirfd (which it closes), never following a
 * symlink: every entry is unlinked by name relative to its directory. */
static int rm_below(int dirfd)
{
	struct dirent *de;
	DIR *d = fdopendir(dirfd);
	int ret = 0;

	if (d == NULL) {
		ret = -errno;
		close(dirfd);
		return ret;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (sys.unlinkat(dirfd, de->d_name, 0) == 0)
			continue;
		if (errno != EISDIR && errno != EPERM) {
			ret = -errno;
			break;
		}
		/* A directory: empty it, then remove it. */
		int fd = openat(dirfd, de->d_name,
				O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

		if (fd < 0) {
			ret = -errno;
			break;
		}
		ret = rm_below(fd);
		if (ret == 0 && sys.unlinkat(dirfd, de->d_name, AT_REMOVEDIR) != 0)
			ret = -errno;
		if (ret < 0)
			break;
	}
	closedir(d);
	return ret;
}

/* Removes the directory `name` in parent and everything in it; -ENOENT if
 * it is not there. */
static int rm_tree(int parent, const char *name)
{
	int fd, ret;

	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOTDIR || errno == ELOOP ? -ENOTDIR : -errno;
	ret = rm_below(fd);
	if (ret == 0 && sys.unlinkat(parent, name, AT_REMOVEDIR) != 0)
		ret = -errno;
	if (ret == 0 && sys.fsync(parent) != 0)
		ret = -errno;
	return ret;
}

/* --- rows ------------------------------------------------------------------------ */

/* catalog_begin, waiting a little for another thread's transaction. */
static int begin(struct catalog *cat)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	int ret;

	for (int i = 0; i < 500; i++) {
		ret = catalog_begin(cat);
		if (ret != -EBUSY)
			return ret;
		nanosleep(&ts, NULL);
	}
	return ret;
}

/* Reads and authenticates a row. */
static int row_load(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		    struct catalog_subject *s)
{
	int ret = catalog_subject_get(st->cat, hash, s);

	if (ret == 0)
		ret = row_verify(st->mk, s);
	return ret;
}

static int row_store(struct store *st, struct catalog_subject *s)
{
	int ret = row_mac(st->mk, s, s->mac);

	if (ret == 0)
		ret = catalog_subject_put(st->cat, s);
	return ret;
}

static int need_keys(struct store *st)
{
	return st == NULL || st->mk == NULL || st->cat == NULL ? -EINVAL : 0;
}

/* --- create / open ---------------------------------------------------------------- */

int subjects_create(struct store *st, const char *parent, int parent_fd, const char *id,
		    mode_t mode, struct keyring **ring, uint8_t iv[CRYPT_DIRIV_BYTES])
{
	char norm[SUBJECTS_PARENT_MAX], name[SUBJECTS_BACKING_LEN + 1];
	uint8_t hash[CRYPT_HASH_BYTES], ivbuf[CRYPT_DIRIV_BYTES];
	struct catalog_subject *s = NULL;
	struct keyring *r = NULL;
	int pfd = -1, dfd = -1, ret;
	bool made = false, in_tx = false;

	*ring = NULL;
	ret = need_keys(st);
	if (ret == 0)
		ret = subjects_id_check(id);
	if (ret == 0)
		ret = norm_path(parent, norm, sizeof(norm));
	if (ret < 0)
		return ret;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	subjects_hash(st->mk, id, hash);
	subjects_backing_name(hash, name);

	ret = begin(st->cat);
	if (ret < 0)
		goto out;
	in_tx = true;
	ret = row_load(st, hash, s);
	if (ret == 0 && !s->shredded)
		ret = -EEXIST;
	else if (ret == 0 || ret == -ENOENT)
		ret = 0; /* unknown, or shredded: a new key */
	if (ret < 0)
		goto out;
	if (parent_fd >= 0) {
		pfd = parent_fd;
	} else {
		ret = subjects_resolve_dir(st, norm, &pfd);
		if (ret < 0)
			goto out;
	}
	/* Restored ciphertext of a dead key: unreadable, and in the way. */
	ret = rm_tree(pfd, name);
	if (ret < 0 && ret != -ENOENT)
		goto out;

	memset(s, 0, sizeof(*s));
	memcpy(s->hash, hash, sizeof(hash));
	ret = keys_subject_new(st->mk, hash, sizeof(hash), s->wrapped, &r);
	if (ret < 0)
		goto out;
	s->has_key = 1;
	if (mkdirat(pfd, name, mode & 07777) != 0) {
		ret = -errno;
		goto out;
	}
	made = true;
	dfd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		ret = -errno;
		goto out;
	}
	ret = names_diriv_create(dfd, ivbuf);
	if (ret < 0)
		goto out;
	ret = seal(r->path, AD_ID, hash, id, s->id_ct, sizeof(s->id_ct), &s->id_ct_len);
	if (ret == 0)
		ret = seal(keys_volume(st->mk)->path, AD_PARENT, hash, norm, s->parent_ct,
			   sizeof(s->parent_ct), &s->parent_ct_len);
	if (ret < 0)
		goto out;
	s->created_us = s->last_write_us = clock_now_us();
	ret = row_store(st, s);
	if (ret < 0)
		goto out;
	ret = catalog_commit(st->cat);
	if (ret < 0)
		goto out;
	in_tx = false;
	/* Committed: the subject exists.  A failed fsync leaves only the
	 * durability of the directory entry in doubt, as after any mkdir. */
	(void)sys.fsync(pfd);
	*ring = r;
	r = NULL;
	if (iv)
		memcpy(iv, ivbuf, sizeof(ivbuf));
out:
	if (in_tx)
		catalog_rollback(st->cat);
	if (dfd >= 0)
		close(dfd);
	if (ret < 0 && made)
		(void)rm_tree(pfd, name);
	if (pfd >= 0 && pfd != parent_fd)
		close(pfd);
	keys_ring_free(r);
	if (s)
		crypt_wipe(s, sizeof(*s));
	free(s);
	crypt_wipe(norm, sizeof(norm));
	return ret;
}

/* Opens the keyring of a loaded live row. */
static int row_ring(struct store *st, const struct catalog_subject *s,
		    struct keyring **ring)
{
	int ret;

	if (s->shredded)
		return -SUBJECTS_ESHREDDED;
	ret = keys_subject_open(st->mk, s->hash, CRYPT_HASH_BYTES, s->wrapped, ring);
	return ret < 0 && ret != -ENOMEM ? -EIO : ret;
}

int subjects_open(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		  struct keyring **ring)
{
	struct catalog_subject *s;
	int ret;

	*ring = NULL;
	ret = need_keys(st);
	if (ret < 0)
		return ret;
	s = malloc(sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	ret = row_load(st, hash, s);
	if (ret == 0)
		ret = row_ring(st, s, ring);
	crypt_wipe(s, sizeof(*s));
	free(s);
	return ret;
}

/* Fills info from a loaded row. */
static int row_info(struct store *st, const struct catalog_subject *s,
		    struct subjects_info *out)
{
	struct keyring *r = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	memcpy(out->hash, s->hash, CRYPT_HASH_BYTES);
	out->flags = (s->restricted ? SUBJECTS_RESTRICTED : 0) |
		     (s->held ? SUBJECTS_HELD : 0) |
		     (s->shredded ? SUBJECTS_SHREDDED : 0);
	out->created_us = s->created_us;
	out->last_write_us = s->last_write_us;
	ret = unseal(keys_volume(st->mk)->path, AD_PARENT, s->hash, s->parent_ct,
		     s->parent_ct_len, out->parent, sizeof(out->parent));
	if (ret < 0 || s->shredded)
		return ret;
	ret = row_ring(st, s, &r);
	if (ret == 0)
		ret = unseal(r->path, AD_ID, s->hash, s->id_ct, s->id_ct_len, out->id,
			     sizeof(out->id));
	if (ret == 0)
		ret = unseal(r->path, AD_RESTRICT, s->hash, s->restrict_ct,
			     s->restrict_ct_len, out->restrict_reason,
			     sizeof(out->restrict_reason));
	if (ret == 0)
		ret = unseal(r->path, AD_HOLD, s->hash, s->hold_ct, s->hold_ct_len,
			     out->hold_reason, sizeof(out->hold_reason));
	keys_ring_free(r);
	if (ret < 0)
		crypt_wipe(out, sizeof(*out));
	return ret;
}

int subjects_get(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		 struct subjects_info *out)
{
	struct catalog_subject *s;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = need_keys(st);
	if (ret < 0)
		return ret;
	s = malloc(sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	ret = row_load(st, hash, s);
	if (ret == 0)
		ret = row_info(st, s, out);
	crypt_wipe(s, sizeof(*s));
	free(s);
	return ret;
}

/* Opens the backing root of a subject whose info is known. */
static int open_root(struct store *st, const struct subjects_info *info, int *fd)
{
	char name[SUBJECTS_BACKING_LEN + 1];
	int pfd, ret;

	*fd = -1;
	if (!info->parent[0])
		return -ENOENT;
	ret = subjects_resolve_dir(st, info->parent, &pfd);
	if (ret < 0)
		return ret;
	subjects_backing_name(info->hash, name);
	*fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	ret = *fd < 0 ? -errno : 0;
	close(pfd);
	return ret;
}

static int usage_of(struct store *st, const struct subjects_info *info,
		    struct subjects_usage *out)
{
	int fd, ret;

	memset(out, 0, sizeof(*out));
	ret = open_root(st, info, &fd);
	if (ret == 0)
		ret = walk_count(fd, out);
	return ret;
}

int subjects_usage(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
		   struct subjects_usage *out)
{
	struct subjects_info *info;
	int ret;

	memset(out, 0, sizeof(*out));
	info = malloc(sizeof(*info));
	if (info == NULL)
		return -ENOMEM;
	ret = subjects_get(st, hash, info);
	if (ret == 0)
		ret = usage_of(st, info, out);
	crypt_wipe(info, sizeof(*info));
	free(info);
	return ret;
}

int subjects_list(struct store *st, bool count_usage,
		  int (*fn)(const struct subjects_info *info,
			    const struct subjects_usage *usage, void *arg),
		  void *arg)
{
	uint8_t(*hashes)[CRYPT_HASH_BYTES] = NULL;
	struct subjects_info *info = NULL;
	struct subjects_usage u;
	size_t n = 0;
	int ret;

	ret = need_keys(st);
	if (ret < 0)
		return ret;
	ret = catalog_subject_hashes(st->cat, &hashes, &n);
	if (ret < 0)
		return ret;
	info = malloc(sizeof(*info));
	if (info == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		bool have = false;

		ret = subjects_get(st, hashes[i], info);
		if (ret == -ENOENT)
			continue; /* removed meanwhile */
		if (ret < 0)
			goto out;
		if (count_usage && !(info->flags & SUBJECTS_SHREDDED))
			have = usage_of(st, info, &u) == 0;
		ret = fn(info, have ? &u : NULL, arg);
		if (ret != 0)
			goto out;
	}
	ret = 0;
out:
	if (info)
		crypt_wipe(info, sizeof(*info));
	free(info);
	free(hashes);
	return ret;
}

/* --- restriction and hold ------------------------------------------------------------
 */

static int set_flag(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES], bool hold,
		    bool on, const char *reason, bool *changed)
{
	struct catalog_subject *s = NULL;
	struct keyring *r = NULL;
	bool in_tx = false;
	int ret;

	if (changed)
		*changed = false;
	ret = need_keys(st);
	if (ret < 0)
		return ret;
	if (reason == NULL || !reason[0] ||
	    strnlen(reason, SUBJECTS_REASON_MAX) >= SUBJECTS_REASON_MAX)
		return -EINVAL;
	s = malloc(sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	ret = begin(st->cat);
	if (ret < 0)
		goto out;
	in_tx = true;
	ret = row_load(st, hash, s);
	if (ret == 0)
		ret = row_ring(st, s, &r);
	if (ret < 0)
		goto out;
	if (changed)
		*changed = (hold ? s->held : s->restricted) != on;
	/* The reason of the latest change is kept (sealed), set or lift. */
	if (hold) {
		s->held = on;
		ret = seal(r->path, AD_HOLD, hash, reason, s->hold_ct, sizeof(s->hold_ct),
			   &s->hold_ct_len);
	} else {
		s->restricted = on;
		ret = seal(r->path, AD_RESTRICT, hash, reason, s->restrict_ct,
			   sizeof(s->restrict_ct), &s->restrict_ct_len);
	}
	if (ret == 0)
		ret = row_store(st, s);
	if (ret == 0)
		ret = catalog_commit(st->cat);
	if (ret == 0)
		in_tx = false;
out:
	if (in_tx)
		catalog_rollback(st->cat);
	if (ret < 0 && changed)
		*changed = false;
	keys_ring_free(r);
	crypt_wipe(s, sizeof(*s));
	free(s);
	return ret;
}

int subjects_set_restricted(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
			    bool on, const char *reason, bool *changed)
{
	return set_flag(st, hash, false, on, reason, changed);
}

int subjects_set_held(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES], bool on,
		      const char *reason, bool *changed)
{
	return set_flag(st, hash, true, on, reason, changed);
}

int subjects_touch(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES], int64_t now_us)
{
	if (st == NULL || st->cat == NULL)
		return -EINVAL;
	return catalog_subject_touch(st->cat, hash, now_us);
}

/* --- shredding ------------------------------------------------------------------------
 */

/* Turns a loaded live row into its shredded form: no key, no id, no
 * reasons; the parent path stays (not personal; lets tools find leftover
 * ciphertext). */
static void row_shred(struct catalog_subject *s)
{
	crypt_wipe(s->wrapped, sizeof(s->wrapped));
	crypt_wipe(s->id_ct, sizeof(s->id_ct));
	crypt_wipe(s->restrict_ct, sizeof(s->restrict_ct));
	crypt_wipe(s->hold_ct, sizeof(s->hold_ct));
	s->has_key = 0;
	s->shredded = 1;
	s->restricted = 0;
	s->held = 0;
	s->id_ct_len = s->restrict_ct_len = s->hold_ct_len = 0;
}

/* Checkpoints, retrying while a reader holds the WAL. */
static int checkpoint(struct catalog *cat)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	int ret = -EBUSY;

	for (int i = 0; i < 100 && ret == -EBUSY; i++) {
		ret = catalog_checkpoint(cat);
		if (ret == -EBUSY)
			nanosleep(&ts, NULL);
	}
	return ret;
}

static int check_shred_args(const char *id, const char *reason, const char *operator_)
{
	int ret = subjects_id_check(id);

	if (ret < 0)
		return ret;
	if (reason == NULL || !reason[0] ||
	    strnlen(reason, SUBJECTS_REASON_MAX) >= SUBJECTS_REASON_MAX)
		return -EINVAL;
	if (operator_ == NULL ||
	    strnlen(operator_, SUBJECTS_OPERATOR_MAX) >= SUBJECTS_OPERATOR_MAX)
		return -EINVAL;
	/* The ledger keeps the reason forever: it must not name the subject.
	 * Ids shorter than SUBJECTS_ID_CHECK_MIN would match ordinary words. */
	if (strlen(id) >= SUBJECTS_ID_CHECK_MIN &&
	    (strcasestr(reason, id) || strcasestr(operator_, id)))
		return -EINVAL;
	return 0;
}

static void cert_fill(struct subjects_certificate *cert, const char *id,
		      const struct catalog_erasure *e, const struct subjects_usage *u)
{
	snprintf(cert->id, sizeof(cert->id), "%s", id);
	memcpy(cert->hash, e->hash, CRYPT_HASH_BYTES);
	cert->shredded_us = e->shredded_us;
	snprintf(cert->reason, sizeof(cert->reason), "%s", e->reason);
	snprintf(cert->operator_, sizeof(cert->operator_), "%s", e->operator_);
	cert->files = (uint64_t)e->files;
	cert->bytes = (uint64_t)e->bytes;
	cert->cipher_bytes = u ? u->cipher_bytes : 0;
	cert->ledger_seq = e->seq;
	cert->audit_seq = (uint64_t)e->audit_seq;
	memcpy(cert->mac, e->mac, CRYPT_MAC_BYTES);
}

/* Appends the shred (or its failure) to the audit chain. */
static int audit_shred(struct audit *a, const uint8_t hash[CRYPT_HASH_BYTES], int outcome,
		       const struct subjects_usage *u, uint64_t *seq)
{
	struct audit_event ev;
	struct audit_who who;
	char detail[96];

	*seq = 0;
	if (a == NULL)
		return 0;
	audit_who_self(&who);
	snprintf(detail, sizeof(detail), "files=%" PRIu64 " bytes=%" PRIu64, u->files,
		 u->bytes);
	memset(&ev, 0, sizeof(ev));
	ev.op = AUDIT_OP_SHRED;
	ev.outcome = outcome;
	ev.who = &who;
	ev.subject = hash;
	ev.detail = detail;
	ev.bytes = u->bytes;
	ev.count = u->files;
	return audit_append(a, &ev, seq);
}

int subjects_destroy_key(struct store *st, struct audit *a, const char *id,
			 const char *reason, const char *operator_,
			 const struct subjects_usage *usage,
			 struct subjects_certificate *cert)
{
	struct subjects_usage none = {0};
	struct catalog_subject *s = NULL;
	struct catalog_erasure e;
	uint64_t aseq = 0, dummy;
	bool in_tx = false, audited = false;
	int ret;

	memset(cert, 0, sizeof(*cert));
	memset(&e, 0, sizeof(e));
	if (usage == NULL)
		usage = &none;
	ret = need_keys(st);
	if (ret == 0)
		ret = check_shred_args(id, reason, operator_);
	if (ret < 0)
		return ret;
	if (usage->files > INT64_MAX || usage->bytes > INT64_MAX)
		return -EINVAL;
	s = malloc(sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	subjects_hash(st->mk, id, e.hash);
	/* Checked before the audit record, and again under the write lock. */
	ret = row_load(st, e.hash, s);
	if (ret == 0 && s->shredded)
		ret = -SUBJECTS_ESHREDDED;
	else if (ret == 0 && s->held)
		ret = -EPERM;
	if (ret < 0)
		goto out;
	/* The chain records the shred before it happens; a failure after
	 * this point is recorded too.  Not inside the transaction: the audit
	 * writer commits through the same catalogue. */
	ret = audit_shred(a, e.hash, 0, usage, &aseq);
	if (ret < 0)
		goto out;
	audited = a != NULL;

	ret = begin(st->cat);
	if (ret < 0)
		goto out;
	in_tx = true;
	ret = row_load(st, e.hash, s);
	if (ret == 0 && s->shredded)
		ret = -SUBJECTS_ESHREDDED;
	else if (ret == 0 && s->held)
		ret = -EPERM;
	if (ret < 0)
		goto out;
	key_fingerprint(st->mk, s->wrapped, e.key_fp);
	row_shred(s);
	ret = row_store(st, s);
	if (ret < 0)
		goto out;
	e.shredded_us = clock_now_us();
	snprintf(e.reason, sizeof(e.reason), "%s", reason);
	snprintf(e.operator_, sizeof(e.operator_), "%s", operator_);
	e.files = (int64_t)usage->files;
	e.bytes = (int64_t)usage->bytes;
	e.audit_seq = (int64_t)aseq;
	ret = catalog_erasure_add(st->cat, &e);
	if (ret < 0)
		goto out;
	subjects_erasure_mac(st->mk, &e, e.mac);
	ret = catalog_erasure_set_mac(st->cat, e.seq, e.mac);
	if (ret < 0)
		goto out;
	ret = catalog_commit(st->cat);
	if (ret < 0)
		goto out;
	in_tx = false;
	cert_fill(cert, id, &e, usage);
	/* Until the checkpoint the old page images (with the wrapped key)
	 * may still be in the WAL. */
	ret = checkpoint(st->cat);
	cert->wal_clean = ret == 0;
out:
	if (in_tx)
		catalog_rollback(st->cat);
	/* The chain already says "shred"; say that it did not happen. */
	if (audited && cert->ledger_seq == 0 && ret < 0)
		(void)audit_shred(a, e.hash, -ret, usage, &dummy);
	crypt_wipe(s, sizeof(*s));
	free(s);
	return ret;
}

int subjects_remove_tree(struct store *st, const uint8_t hash[CRYPT_HASH_BYTES],
			 int parent_fd)
{
	char name[SUBJECTS_BACKING_LEN + 1];
	struct subjects_info *info;
	int pfd = parent_fd, ret;

	ret = need_keys(st);
	if (ret < 0)
		return ret;
	info = malloc(sizeof(*info));
	if (info == NULL)
		return -ENOMEM;
	ret = subjects_get(st, hash, info);
	if (ret == 0 && !(info->flags & SUBJECTS_SHREDDED))
		ret = -EBUSY; /* never remove a live subject's data */
	if (ret == 0 && pfd < 0)
		ret = info->parent[0] ? subjects_resolve_dir(st, info->parent, &pfd)
				      : -ENOENT;
	if (ret == 0) {
		subjects_backing_name(hash, name);
		ret = rm_tree(pfd, name);
	}
	if (pfd >= 0 && pfd != parent_fd)
		close(pfd);
	crypt_wipe(info, sizeof(*info));
	free(info);
	return ret;
}

int subjects_shred(struct store *st, struct audit *a, const char *id, const char *reason,
		   const char *operator_, bool dry_run, struct subjects_certificate *cert)
{
	struct subjects_info *info;
	struct subjects_usage u;
	uint8_t hash[CRYPT_HASH_BYTES];
	int ret;

	memset(cert, 0, sizeof(*cert));
	memset(&u, 0, sizeof(u));
	ret = need_keys(st);
	if (ret == 0)
		ret = check_shred_args(id, reason, operator_);
	if (ret < 0)
		return ret;
	info = malloc(sizeof(*info));
	if (info == NULL)
		return -ENOMEM;
	subjects_hash(st->mk, id, hash);
	ret = subjects_get(st, hash, info);
	if (ret == 0 && (info->flags & SUBJECTS_SHREDDED))
		ret = -SUBJECTS_ESHREDDED;
	else if (ret == 0 && (info->flags & SUBJECTS_HELD))
		ret = -EPERM;
	if (ret < 0)
		goto out;
	/* A missing backing root (never written, or already removed) is an
	 * empty subject; any other error stops the shred before it starts. */
	ret = usage_of(st, info, &u);
	if (ret == -ENOENT)
		ret = 0;
	if (ret < 0)
		goto out;
	if (dry_run) {
		snprintf(cert->id, sizeof(cert->id), "%s", id);
		memcpy(cert->hash, hash, sizeof(hash));
		cert->shredded_us = clock_now_us();
		snprintf(cert->reason, sizeof(cert->reason), "%s", reason);
		snprintf(cert->operator_, sizeof(cert->operator_), "%s", operator_);
		cert->files = u.files;
		cert->bytes = u.bytes;
		cert->cipher_bytes = u.cipher_bytes;
		cert->dry_run = true;
		goto out;
	}
	ret = subjects_destroy_key(st, a, id, reason, operator_, &u, cert);
	if (cert->ledger_seq == 0)
		goto out; /* nothing destroyed */
	{
		int r2 = subjects_remove_tree(st, hash, -1);

		cert->tree_removed = r2 == 0 || r2 == -ENOENT;
		if (ret == 0 && !cert->tree_removed)
			ret = r2;
	}
out:
	crypt_wipe(info, sizeof(*info));
	free(info);
	return ret;
}

int subjects_certificate_verify(struct store *st, const struct subjects_certificate *cert)
{
	struct catalog_erasure e;
	uint8_t hash[CRYPT_HASH_BYTES], mac[CRYPT_MAC_BYTES];
	int ret;

	ret = need_keys(st);
	if (ret < 0)
		return ret;
	if (cert->ledger_seq < 1 || subjects_id_check(cert->id) < 0)
		return -EBADMSG;
	ret = catalog_erasure_get(st->cat, cert->ledger_seq, &e);
	if (ret < 0)
		return ret;
	subjects_erasure_mac(st->mk, &e, mac);
	subjects_hash(st->mk, cert->id, hash);
	if (!crypt_equal(mac, e.mac, sizeof(mac)) ||
	    !crypt_equal(hash, e.hash, sizeof(hash)) ||
	    !crypt_equal(cert->hash, e.hash, sizeof(hash)) ||
	    !crypt_equal(cert->mac, e.mac, sizeof(mac)) ||
	    cert->shredded_us != e.shredded_us || cert->files != (uint64_t)e.files ||
	    cert->bytes != (uint64_t)e.bytes ||
	    cert->audit_seq != (uint64_t)e.audit_seq ||
	    strcmp(cert->reason, e.reason) != 0 ||
	    strcmp(cert->operator_, e.operator_) != 0)
		return -EBADMSG;
	return 0;
}

/* --- the portable ledger
 * ---------------------------------------------------------------- */

int subjects_ledger_format(const struct catalog_erasure *e, char *out, size_t cap)
{
	char hash[2 * CRYPT_HASH_BYTES + 1], fp[2 * CRYPT_HASH_BYTES + 1];
	char mac[2 * CRYPT_MAC_BYTES + 1], reason[2 * sizeof(e->reason) + 1];
	char op[2 * sizeof(e->operator_) + 1];
	int n;

	crypt_hex(hash, e->hash, CRYPT_HASH_BYTES);
	crypt_hex(fp, e->key_fp, CRYPT_HASH_BYTES);
	crypt_hex(mac, e->mac, CRYPT_MAC_BYTES);
	/* Free text as hex: one entry is one line whatever it holds. */
	crypt_hex(reason, (const uint8_t *)e->reason,
		  strnlen(e->reason, sizeof(e->reason)));
	crypt_hex(op, (const uint8_t *)e->operator_,
		  strnlen(e->operator_, sizeof(e->operator_)));
	n = snprintf(out, cap,
		     LEDGER_MAGIC " %" PRId64 " %s %s %" PRId64 " %" PRId64 " %" PRId64
				  " %" PRId64 " %s %s %s\n",
		     e->seq, hash, fp, e->shredded_us, e->files, e->bytes, e->audit_seq,
		     reason[0] ? reason : "-", op[0] ? op : "-", mac);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* A non-negative decimal field. */
static int parse_i64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* An exact-length hex field. */
static int parse_hex(const char *s, uint8_t *out, size_t n)
{
	uint8_t buf[1100];

	if (strlen(s) != 2 * n || n > sizeof(buf))
		return -EINVAL;
	if (crypt_unhex(buf, sizeof(buf), s) != (int)n)
		return -EINVAL;
	memcpy(out, buf, n);
	return 0;
}

/* A hex text field into a NUL-terminated string ("-" is empty). */
static int parse_hex_text(const char *s, char *out, size_t cap)
{
	size_t n = strlen(s);

	if (strcmp(s, "-") == 0) {
		out[0] = 0;
		return 0;
	}
	if (n % 2 || n / 2 >= cap)
		return -EINVAL;
	if (parse_hex(s, (uint8_t *)out, n / 2) < 0 || memchr(out, 0, n / 2))
		return -EINVAL;
	out[n / 2] = 0;
	return 0;
}

int subjects_ledger_parse(const char *line, struct catalog_erasure *e)
{
	char *copy, *f[11], *save = NULL;
	size_t nf = 0, len;
	int ret = -EINVAL;

	memset(e, 0, sizeof(*e));
	len = strnlen(line, SUBJECTS_LEDGER_LINE_MAX + 1);
	if (len > SUBJECTS_LEDGER_LINE_MAX)
		return -EINVAL;
	copy = strndup(line, len);
	if (copy == NULL)
		return -ENOMEM;
	if (len && copy[len - 1] == '\n')
		copy[len - 1] = 0;
	for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (nf == ARRAY_LEN(f))
			goto out;
		f[nf++] = t;
	}
	if (nf != ARRAY_LEN(f) || strcmp(f[0], LEDGER_MAGIC) != 0)
		goto out;
	if (parse_i64(f[1], &e->seq) || e->seq < 1 ||
	    parse_hex(f[2], e->hash, CRYPT_HASH_BYTES) ||
	    parse_hex(f[3], e->key_fp, CRYPT_HASH_BYTES) ||
	    parse_i64(f[4], &e->shredded_us) || parse_i64(f[5], &e->files) ||
	    parse_i64(f[6], &e->bytes) || parse_i64(f[7], &e->audit_seq) ||
	    parse_hex_text(f[8], e->reason, sizeof(e->reason)) || !e->reason[0] ||
	    parse_hex_text(f[9], e->operator_, sizeof(e->operator_)) ||
	    parse_hex(f[10], e->mac, CRYPT_MAC_BYTES))
		goto out;
	ret = 0;
out:
	free(copy);
	if (ret < 0)
		memset(e, 0, sizeof(*e));
	return ret;
}

int subjects_ledger_apply(struct store *st, const struct catalog_erasure *e,
			  bool *applied)
{
	struct catalog_subject *s = NULL;
	struct catalog_erasure mine;
	uint8_t mac[CRYPT_MAC_BYTES], fp[CRYPT_HASH_BYTES];
	bool in_tx = false, changed = false, dead = false;
	int ret;

	if (applied)
		*applied = false;
	ret = need_keys(st);
	if (ret < 0)
		return ret;
	subjects_erasure_mac(st->mk, e, mac);
	if (!crypt_equal(mac, e->mac, sizeof(mac)))
		return -EBADMSG;
	s = malloc(sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	ret = begin(st->cat);
	if (ret < 0)
		goto out;
	in_tx = true;
	ret = catalog_erasure_find_key(st->cat, e->key_fp);
	if (ret == -ENOENT) {
		mine = *e;
		ret = catalog_erasure_add(st->cat, &mine);
		if (ret == -EEXIST) {
			/* Its number is taken here (a shred after the restore):
			 * append it under the next one, MAC'd anew. */
			mine = *e;
			mine.seq = 0;
			ret = catalog_erasure_add(st->cat, &mine);
			if (ret == 0) {
				subjects_erasure_mac(st->mk, &mine, mine.mac);
				ret = catalog_erasure_set_mac(st->cat, mine.seq,
							      mine.mac);
			}
		}
		changed = ret == 0;
	}
	if (ret < 0)
		goto out;
	ret = row_load(st, e->hash, s);
	if (ret == -ENOENT) {
		ret = 0; /* this catalogue never knew the subject */
	} else if (ret == 0 && s->shredded) {
		dead = true;
	} else if (ret == 0) {
		key_fingerprint(st->mk, s->wrapped, fp);
		/* Only the key that entry destroyed: a subject re-created
		 * after it has a new key and keeps it. */
		if (crypt_equal(fp, e->key_fp, sizeof(fp))) {
			row_shred(s);
			ret = row_store(st, s);
			changed = dead = ret == 0;
		}
	}
	if (ret < 0)
		goto out;
	ret = catalog_commit(st->cat);
	if (ret < 0)
		goto out;
	in_tx = false;
	ret = checkpoint(st->cat);
	if (ret == 0 && dead) {
		int r2 = subjects_remove_tree(st, e->hash, -1);

		if (r2 == 0)
			changed = true;
		else if (r2 != -ENOENT)
			ret = r2;
	}
out:
	if (in_tx)
		catalog_rollback(st->cat);
	if (applied)
		*applied = changed;
	crypt_wipe(s, sizeof(*s));
	free(s);
	return ret;
}
