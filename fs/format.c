/*
 * format.c — the encrypted file format: header, 4 KiB AEAD blocks, holes,
 * the size rule, and plaintext read/write/truncate on top of them.
 *
 * This module owns the byte layout of every ciphertext file (see format.h
 * and docs/format.md).  It does all backing-file I/O through the sys seam
 * so tests can inject ENOSPC/EIO.  It keeps no state between calls except a
 * per-thread ciphertext buffer: the per-file key is derived on the stack for
 * each request and wiped before returning, and plaintext scratch lives on
 * the stack and is wiped too.
 */
#include "format.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "sys.h"

#define BP ((off_t)CRYPT_BLOCK_PLAIN)
#define BC ((off_t)CRYPT_BLOCK_CIPHER)
#define HDR ((off_t)FORMAT_HEADER_BYTES)
#define AD_BYTES (CRYPT_FILE_ID_BYTES + 8)

/* Blocks sealed or opened per backing pread/pwrite: a 1 MiB request at any
 * alignment (257 blocks) plus the old short last block it may re-seal. */
#define CHUNK_BLOCKS 258

/* Largest plaintext size we accept (4 PiB): keeps every cipher offset far
 * from off_t overflow. */
#define FORMAT_PLAIN_MAX ((off_t)1 << 52)

/* ---- little-endian helpers --------------------------------------------- */

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- keys, associated data, holes --------------------------------------- */

static void file_key(uint8_t key[CRYPT_KEY_BYTES], const struct keyring *ring,
		     const uint8_t id[CRYPT_FILE_ID_BYTES])
{
	crypt_hash(key, CRYPT_KEY_BYTES, ring->content, id, CRYPT_FILE_ID_BYTES);
}

static void block_ad(uint8_t ad[AD_BYTES], const uint8_t id[CRYPT_FILE_ID_BYTES],
		     off_t block)
{
	memcpy(ad, id, CRYPT_FILE_ID_BYTES);
	put_le64(ad + CRYPT_FILE_ID_BYTES, (uint64_t)block);
}

/* A stored block that is all zero bytes is a hole.  A sealed block starts
 * with a random 24-byte nonce, so checking the first word rejects real
 * blocks at once and full scans only happen for holes. */
static bool is_hole(const uint8_t *p, size_t n)
{
	uint64_t w;

	if (n >= sizeof(w)) {
		memcpy(&w, p, sizeof(w));
		if (w != 0)
			return false;
	}
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Opens one stored block (length stored, >= overhead) into plain; a hole
 * becomes zeros.  -EIO on authentication failure (plain zeroed). */
static int open_block(uint8_t *plain, const uint8_t *stored, size_t stored_len,
		      const uint8_t key[CRYPT_KEY_BYTES],
		      const uint8_t id[CRYPT_FILE_ID_BYTES], off_t block)
{
	uint8_t ad[AD_BYTES];
	size_t plen;

	if (stored_len <= CRYPT_AEAD_OVERHEAD)
		return -EIO;
	plen = stored_len - CRYPT_AEAD_OVERHEAD;
	if (is_hole(stored, stored_len)) {
		memset(plain, 0, plen);
		return 0;
	}
	block_ad(ad, id, block);
	if (crypt_block_open(plain, stored, stored_len, key, ad, sizeof(ad)) != 0)
		return -EIO;
	return 0;
}

static int seal_block(uint8_t *out, const uint8_t *plain, size_t len,
		      const uint8_t key[CRYPT_KEY_BYTES],
		      const uint8_t id[CRYPT_FILE_ID_BYTES], off_t block)
{
	uint8_t ad[AD_BYTES];

	block_ad(ad, id, block);
	return crypt_block_seal(out, plain, len, key, ad, sizeof(ad));
}

static off_t block_pos(off_t block)
{
	return HDR + block * BC;
}

/* ---- per-thread ciphertext buffer --------------------------------------- */

/* One reusable buffer per thread (FUSE worker threads come and go, so the
 * key's destructor frees it).  It only ever holds ciphertext. */
struct span_buf {
	size_t cap;    /* usable bytes in data */
	uint8_t *data; /* malloc'd */
};

static pthread_key_t span_key;
static pthread_once_t span_once = PTHREAD_ONCE_INIT;

static void span_free(void *p)
{
	struct span_buf *sb = p;

	if (sb) {
		free(sb->data);
		free(sb);
	}
}

static void span_init(void)
{
	(void)pthread_key_create(&span_key, span_free);
}

/* Returns a buffer of at least n bytes or NULL. */
static uint8_t *span_get(size_t n)
{
	struct span_buf *sb;

	pthread_once(&span_once, span_init);
	sb = pthread_getspecific(span_key);
	if (!sb) {
		sb = calloc(1, sizeof(*sb));
		if (!sb)
			return NULL;
		if (pthread_setspecific(span_key, sb) != 0) {
			free(sb);
			return NULL;
		}
	}
	if (sb->cap < n) {
		/* Grow straight to a whole chunk: after the first large request
		 * there are no more reallocations on this thread. */
		size_t want = n < (size_t)(16 * BC) ? (size_t)(16 * BC)
						    : (size_t)(CHUNK_BLOCKS * BC);
		uint8_t *d;

		if (want < n)
			want = n;
		d = malloc(want);
		if (!d)
			return NULL;
		free(sb->data);
		sb->data = d;
		sb->cap = want;
	}
	return sb->data;
}

/* ---- header ------------------------------------------------------------- */

int format_header_encode(uint8_t out[FORMAT_HEADER_BYTES], const struct format_header *h,
			 const struct keyring *ring)
{
	uint8_t key[CRYPT_KEY_BYTES];

	memset(out, 0, FORMAT_HEADER_BYTES);
	memcpy(out, FORMAT_MAGIC, FORMAT_MAGIC_BYTES);
	put_le16(out + 4, h->version);
	put_le16(out + 6, h->flags);
	memcpy(out + 8, h->file_id, CRYPT_FILE_ID_BYTES);
	put_le64(out + 40, (uint64_t)h->birth_us);
	put_le64(out + 48, (uint64_t)h->keep_until_us);
	file_key(key, ring, h->file_id);
	crypt_hash(out + 64, FORMAT_HEADER_MAC_BYTES, key, out, 64);
	crypt_wipe(key, sizeof(key));
	return 0;
}

int format_header_decode(const uint8_t in[FORMAT_HEADER_BYTES], struct format_header *h,
			 const struct keyring *ring)
{
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t mac[FORMAT_HEADER_MAC_BYTES];
	int ret = 0;

	memset(h, 0, sizeof(*h));
	if (memcmp(in, FORMAT_MAGIC, FORMAT_MAGIC_BYTES) != 0)
		return -EIO;
	if (get_le16(in + 4) != FORMAT_VERSION)
		return -EIO;
	file_key(key, ring, in + 8);
	crypt_hash(mac, sizeof(mac), key, in, 64);
	if (!crypt_equal(mac, in + 64, sizeof(mac))) {
		ret = -EIO;
		goto out;
	}
	/* Reserved bytes are authenticated, but a writer of a future minor
	 * revision would have bumped the version; insist on zero. */
	if (get_le64(in + 56) != 0) {
		ret = -EIO;
		goto out;
	}
	h->version = FORMAT_VERSION;
	h->flags = get_le16(in + 6);
	memcpy(h->file_id, in + 8, CRYPT_FILE_ID_BYTES);
	h->birth_us = (int64_t)get_le64(in + 40);
	h->keep_until_us = (int64_t)get_le64(in + 48);
out:
	crypt_wipe(key, sizeof(key));
	return ret;
}

/* ---- size rule ---------------------------------------------------------- */

off_t format_plain_size(off_t cipher_size)
{
	off_t k, r;

	if (cipher_size == 0)
		return 0;
	if (cipher_size < HDR)
		return -EIO;
	k = (cipher_size - HDR) / BC;
	r = (cipher_size - HDR) % BC;
	if (r == 0)
		return k * BP;
	if (r <= (off_t)CRYPT_AEAD_OVERHEAD)
		return -EIO;
	return k * BP + r - (off_t)CRYPT_AEAD_OVERHEAD;
}

off_t format_cipher_size(off_t plain_size)
{
	off_t k = plain_size / BP, r = plain_size % BP;

	return HDR + k * BC + (r ? r + (off_t)CRYPT_AEAD_OVERHEAD : 0);
}

/* ---- files -------------------------------------------------------------- */

static int cipher_size_of(int fd, off_t *cs)
{
	*cs = 0;
	return sys.fsize(fd, cs);
}

static int write_header(struct format_file *f)
{
	uint8_t buf[FORMAT_HEADER_BYTES];
	ssize_t n;
	int ret;

	ret = format_header_encode(buf, &f->hdr, f->ring);
	if (ret < 0)
		return ret;
	n = sys_pwrite_full(f->fd, buf, sizeof(buf), 0);
	if (n < 0)
		return (int)n;
	return 0;
}

/* Gives a header-less (0-byte) file its header: a new record. */
static int header_init(struct format_file *f, int64_t birth_us)
{
	int ret;

	memset(&f->hdr, 0, sizeof(f->hdr));
	f->hdr.version = FORMAT_VERSION;
	f->hdr.birth_us = birth_us;
	crypt_random_public(f->hdr.file_id, sizeof(f->hdr.file_id));
	ret = write_header(f);
	if (ret < 0) {
		/* Leave the file as it was: empty and header-less. */
		(void)sys.ftruncate(f->fd, 0);
		return ret;
	}
	f->have_header = true;
	return 0;
}

int format_file_create(struct format_file *f, int fd, const struct keyring *ring,
		       int64_t birth_us)
{
	off_t cs;
	int ret;

	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->ring = ring;
	ret = cipher_size_of(fd, &cs);
	if (ret < 0)
		return ret;
	if (cs != 0)
		return -EEXIST;
	return header_init(f, birth_us);
}

int format_file_load(struct format_file *f, int fd, const struct keyring *ring)
{
	uint8_t buf[FORMAT_HEADER_BYTES];
	off_t cs;
	ssize_t n;
	int ret;

	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->ring = ring;
	ret = cipher_size_of(fd, &cs);
	if (ret < 0)
		return ret;
	if (cs == 0)
		return 0;
	n = sys_pread_full(fd, buf, sizeof(buf), 0);
	if (n < 0)
		return (int)n;
	if (n != (ssize_t)sizeof(buf))
		return -EIO;
	ret = format_header_decode(buf, &f->hdr, ring);
	if (ret < 0)
		return ret;
	f->have_header = true;
	return 0;
}

int format_file_write_header(struct format_file *f)
{
	if (!f->have_header)
		return -EINVAL;
	return write_header(f);
}

int format_file_size(struct format_file *f, off_t *size)
{
	off_t cs, ps;
	int ret;

	ret = cipher_size_of(f->fd, &cs);
	if (ret < 0)
		return ret;
	ps = format_plain_size(cs);
	if (ps < 0)
		return (int)ps;
	*size = ps;
	return 0;
}

/* Reads and opens block b of a file whose cipher size is cs into plain
 * (which gets its plaintext length in *plen).  The block must exist. */
static int read_one_block(struct format_file *f, const uint8_t key[CRYPT_KEY_BYTES],
			  off_t cs, off_t b, uint8_t plain[CRYPT_BLOCK_PLAIN],
			  size_t *plen, bool *hole)
{
	uint8_t stored[CRYPT_BLOCK_CIPHER];
	off_t pos = block_pos(b);
	size_t want = (size_t)(cs - pos < BC ? cs - pos : BC);
	ssize_t n;
	int ret;

	if (cs <= pos)
		return -EIO;
	n = sys_pread_full(f->fd, stored, want, pos);
	if (n < 0)
		return (int)n;
	if ((size_t)n != want)
		return -EIO;
	ret = open_block(plain, stored, want, key, f->hdr.file_id, b);
	if (ret < 0)
		return ret;
	*plen = want - CRYPT_AEAD_OVERHEAD;
	/* Whether the stored bytes are zero, not the plaintext: a sealed block
	 * of zeros must still be re-sealed when its length changes. */
	*hole = is_hole(stored, want);
	return 0;
}

/* read_chunk's cs when the caller has not asked the length: every block of
 * the span is taken to be whole, and a span that runs past the end of the
 * file returns -ENODATA (nothing decrypted) instead of -EIO. */
#define CS_UNKNOWN ((off_t)-1)

/* Reads [off, off+len) where the range lies within the plaintext size and
 * spans at most CHUNK_BLOCKS blocks. */
static int read_chunk(struct format_file *f, const uint8_t key[CRYPT_KEY_BYTES],
		      uint8_t *out, size_t len, off_t off, off_t cs)
{
	uint8_t scratch[CRYPT_BLOCK_PLAIN];
	off_t end = off + (off_t)len;
	off_t fb = off / BP, lb = (end - 1) / BP;
	off_t start = block_pos(fb);
	off_t stop = cs == CS_UNKNOWN || block_pos(lb + 1) < cs ? block_pos(lb + 1) : cs;
	size_t span = (size_t)(stop - start);
	uint8_t *ct;
	ssize_t n;
	int ret = 0;

	ct = span_get(span);
	if (!ct)
		return -ENOMEM;
	/* The whole span in one call: the kernel's readahead and large FUSE
	 * requests turn into one backing read. */
	n = sys_pread_full(f->fd, ct, span, start);
	if (n < 0)
		return (int)n;
	if ((size_t)n != span)
		return cs == CS_UNKNOWN ? -ENODATA /* past the end: ask the size */
					: -EIO;    /* shrank underneath us */
	for (off_t b = fb; b <= lb; b++) {
		const uint8_t *stored = ct + (size_t)((b - fb) * BC);
		off_t bstart = b * BP;
		size_t slen =
			(size_t)(block_pos(b + 1) < stop ? BC : stop - block_pos(b));
		size_t plen, a, z;

		if (slen <= CRYPT_AEAD_OVERHEAD) {
			ret = -EIO;
			goto out;
		}
		plen = slen - CRYPT_AEAD_OVERHEAD;
		a = (size_t)(off > bstart ? off - bstart : 0);
		z = (size_t)(end < bstart + (off_t)plen ? end - bstart : (off_t)plen);
		if (a == 0 && z == plen) {
			ret = open_block(out + (bstart - off), stored, slen, key,
					 f->hdr.file_id, b);
		} else {
			ret = open_block(scratch, stored, slen, key, f->hdr.file_id, b);
			if (ret == 0)
				memcpy(out + (bstart + (off_t)a - off), scratch + a,
				       z - a);
		}
		if (ret < 0)
			goto out;
	}
out:
	crypt_wipe(scratch, sizeof(scratch));
	return ret;
}

/* Clips len to the plaintext size, read from the backing file (*cs). */
static int clip_to_size(struct format_file *f, off_t off, size_t *len, off_t *cs)
{
	off_t size;
	int ret = cipher_size_of(f->fd, cs);

	if (ret < 0)
		return ret;
	size = format_plain_size(*cs);
	if (size < 0)
		return (int)size;
	if (off >= size)
		*len = 0;
	else if ((off_t)*len > size - off)
		*len = (size_t)(size - off);
	return 0;
}

ssize_t format_file_read(struct format_file *f, void *buf, size_t len, off_t off)
{
	uint8_t key[CRYPT_KEY_BYTES];
	off_t cs = CS_UNKNOWN;
	size_t done = 0;
	ssize_t ret;

	if (off < 0)
		return -EINVAL;
	if (len == 0 || !f->have_header)
		return 0;
	/* Only the end of a file needs its length: with len_ok, the blocks
	 * are read first and the fstat comes only for a span that runs past
	 * the end (one system call less per read of a whole page). */
	if (!f->len_ok) {
		ret = clip_to_size(f, off, &len, &cs);
		if (ret < 0)
			return ret;
	}
	file_key(key, f->ring, f->hdr.file_id);
	while (done < len) {
		off_t o = off + (off_t)done;
		size_t n = (size_t)(CHUNK_BLOCKS * BP - o % BP);

		if (n > len - done)
			n = len - done;
		ret = read_chunk(f, key, (uint8_t *)buf + done, n, o, cs);
		if (ret == -ENODATA) {
			ret = clip_to_size(f, off, &len, &cs);
			if (ret < 0)
				goto fail;
			continue;
		}
		if (ret < 0)
			goto fail;
		done += n;
	}
	ret = (ssize_t)(done < len ? done : len);
	goto out;
fail:
	/* Never hand back a mix of good and unauthenticated data. */
	crypt_wipe(buf, done > len ? done : len);
out:
	crypt_wipe(key, sizeof(key));
	return ret;
}

/* Undoes the growth of a failed write so the old content and size stay. */
static void roll_back(struct format_file *f, off_t old_cs)
{
	off_t cs;

	if (cipher_size_of(f->fd, &cs) == 0 && cs > old_cs)
		(void)sys.ftruncate(f->fd, old_cs);
}

/* Writes the stored bytes [pos, pos+n) of a span, where the file's cipher
 * size is old_cs.  The part beyond the old end goes first: if it fails,
 * nothing that existed has been touched and truncating back restores the
 * file exactly. */
static int put_span(struct format_file *f, const uint8_t *p, size_t n, off_t pos,
		    off_t old_cs)
{
	ssize_t w;

	if (pos < old_cs && pos + (off_t)n > old_cs) {
		size_t head = (size_t)(old_cs - pos);

		w = sys_pwrite_full(f->fd, p + head, n - head, old_cs);
		if (w < 0)
			return (int)w;
		n = head;
	}
	w = sys_pwrite_full(f->fd, p, n, pos);
	return w < 0 ? (int)w : 0;
}

/* Writes [off, off+len) (spanning at most CHUNK_BLOCKS-1 blocks) into a
 * file of plaintext size *cur; updates *cur. */
static int write_chunk(struct format_file *f, const uint8_t key[CRYPT_KEY_BYTES],
		       const uint8_t *src, size_t len, off_t off, off_t *cur)
{
	uint8_t scratch[CRYPT_BLOCK_PLAIN];
	uint8_t pad[CRYPT_BLOCK_CIPHER]; /* re-sealed old last block */
	const uint8_t *id = f->hdr.file_id;
	off_t old = *cur, old_cs = format_cipher_size(old);
	off_t end = off + (off_t)len, newsize = end > old ? end : old;
	off_t fb = off / BP, lb = (end - 1) / BP, first = fb, ob = -1;
	size_t pad_len = 0, span = 0;
	uint8_t *ct;
	int ret = 0;

	/* Growing past a short last block: that block must become a full
	 * block, or the size rule would read its tag position wrong. */
	if (end > old && old % BP != 0 && old / BP < fb) {
		ob = old / BP;
		if (ob == fb - 1) {
			first = ob; /* contiguous: seal it with the rest */
			ob = -1;
		}
	}
	if (ob >= 0) {
		size_t plen;
		bool hole;

		ret = read_one_block(f, key, old_cs, ob, scratch, &plen, &hole);
		if (ret < 0)
			goto out;
		/* A hole stays a hole: the zero bytes that growth adds make it
		 * a full zero block. */
		if (!hole) {
			memset(scratch + plen, 0, (size_t)BP - plen);
			ret = seal_block(pad, scratch, (size_t)BP, key, id, ob);
			if (ret < 0)
				goto out;
			pad_len = (size_t)BC;
		}
	}
	ct = span_get((size_t)((lb - first + 1) * BC));
	if (!ct) {
		ret = -ENOMEM;
		goto out;
	}
	for (off_t b = first; b <= lb; b++) {
		off_t bstart = b * BP;
		size_t plen = (size_t)(newsize - bstart < BP ? newsize - bstart : BP);
		uint8_t *o = ct + span;
		size_t a, z;

		if (b < fb) {
			a = z = 0; /* the old last block, padded only */
		} else {
			a = (size_t)(off > bstart ? off - bstart : 0);
			z = (size_t)(end < bstart + (off_t)plen ? end - bstart
								: (off_t)plen);
		}
		if (a == 0 && z == plen) {
			ret = seal_block(o, src + (bstart - off), plen, key, id, b);
		} else {
			size_t have = 0;
			bool hole;

			if (bstart < old) {
				ret = read_one_block(f, key, old_cs, b, scratch, &have,
						     &hole);
				if (ret < 0)
					goto out;
			}
			memset(scratch + have, 0, (size_t)BP - have);
			if (z > a)
				memcpy(scratch + a, src + (bstart + (off_t)a - off),
				       z - a);
			ret = seal_block(o, scratch, plen, key, id, b);
		}
		if (ret < 0)
			goto out;
		span += plen + CRYPT_AEAD_OVERHEAD;
	}
	ret = put_span(f, ct, span, block_pos(first), old_cs);
	if (ret == 0 && pad_len) {
		ssize_t w = sys_pwrite_full(f->fd, pad, pad_len, block_pos(ob));

		if (w < 0)
			ret = (int)w;
	}
	if (ret < 0) {
		roll_back(f, old_cs);
		goto out;
	}
	*cur = newsize;
out:
	crypt_wipe(scratch, sizeof(scratch));
	return ret;
}

ssize_t format_file_write(struct format_file *f, const void *buf, size_t len, off_t off)
{
	uint8_t key[CRYPT_KEY_BYTES];
	off_t cs, cur;
	size_t done = 0;
	ssize_t ret;

	if (off < 0)
		return -EINVAL;
	if (len == 0)
		return 0;
	if (off > FORMAT_PLAIN_MAX || len > (size_t)FORMAT_PLAIN_MAX ||
	    (off_t)len > FORMAT_PLAIN_MAX - off)
		return -EFBIG;
	if (!f->have_header) {
		ret = header_init(f, clock_now_us());
		if (ret < 0)
			return ret;
	}
	ret = cipher_size_of(f->fd, &cs);
	if (ret < 0)
		return ret;
	cur = format_plain_size(cs);
	if (cur < 0)
		return cur;
	file_key(key, f->ring, f->hdr.file_id);
	while (done < len) {
		off_t o = off + (off_t)done;
		size_t n = (size_t)((CHUNK_BLOCKS - 1) * BP - o % BP);

		if (n > len - done)
			n = len - done;
		ret = write_chunk(f, key, (const uint8_t *)buf + done, n, o, &cur);
		if (ret < 0) {
			/* Earlier chunks are complete blocks: report them as a
			 * short write, as a full disk does. */
			if (done > 0)
				ret = (ssize_t)done;
			goto out;
		}
		done += n;
	}
	ret = (ssize_t)done;
out:
	crypt_wipe(key, sizeof(key));
	return ret;
}

int format_file_truncate(struct format_file *f, off_t size)
{
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t scratch[CRYPT_BLOCK_PLAIN];
	uint8_t sealed[CRYPT_BLOCK_CIPHER];
	off_t cs, cur, b = -1;
	size_t keep = 0;
	int ret;

	if (size < 0)
		return -EINVAL;
	if (size > FORMAT_PLAIN_MAX)
		return -EFBIG;
	if (!f->have_header) {
		if (size == 0)
			return 0;
		ret = header_init(f, clock_now_us());
		if (ret < 0)
			return ret;
	}
	ret = cipher_size_of(f->fd, &cs);
	if (ret < 0)
		return ret;
	cur = format_plain_size(cs);
	if (cur < 0) {
		/* A damaged tail: cutting back to a block boundary below it
		 * needs no damaged data, so O_TRUNC of such a file works. */
		if (size % BP == 0 && format_cipher_size(size) <= cs)
			return sys.ftruncate(f->fd, format_cipher_size(size)) ? -errno
									      : 0;
		return (int)cur;
	}
	if (size == cur)
		return 0;
	file_key(key, f->ring, f->hdr.file_id);
	if (size < cur && size % BP != 0) {
		/* Shrink: the new last block is re-sealed short. */
		b = size / BP;
		keep = (size_t)(size % BP);
	} else if (size > cur && cur % BP != 0) {
		/* Grow: the old short last block is padded with zeros to a full
		 * block, or to the new size if that ends inside it. */
		b = cur / BP;
		keep = (size_t)(size - b * BP < BP ? size - b * BP : BP);
	}
	if (b >= 0) {
		size_t plen;
		bool hole;

		ret = read_one_block(f, key, cs, b, scratch, &plen, &hole);
		if (ret < 0)
			goto out;
		if (!hole) {
			if (keep > plen)
				memset(scratch + plen, 0, keep - plen);
			ret = seal_block(sealed, scratch, keep, key, f->hdr.file_id, b);
			if (ret < 0)
				goto out;
			ssize_t w = sys_pwrite_full(
				f->fd, sealed, keep + CRYPT_AEAD_OVERHEAD, block_pos(b));

			if (w < 0) {
				ret = (int)w;
				roll_back(f, cs);
				goto out;
			}
		}
	}
	if (sys.ftruncate(f->fd, format_cipher_size(size)) != 0)
		ret = -errno;
out:
	crypt_wipe(scratch, sizeof(scratch));
	crypt_wipe(key, sizeof(key));
	return ret;
}

int format_file_verify(int fd, const struct keyring *ring,
		       void (*bad)(int64_t block, int err, void *arg), void *arg)
{
	uint8_t key[CRYPT_KEY_BYTES];
	uint8_t scratch[CRYPT_BLOCK_PLAIN];
	uint8_t hbuf[FORMAT_HEADER_BYTES];
	struct format_header h;
	off_t cs, nblocks, b;
	bool any_bad = false;
	ssize_t n;
	int ret;

	ret = cipher_size_of(fd, &cs);
	if (ret < 0)
		return ret;
	if (cs == 0)
		return 0;
	n = cs < HDR ? 0 : sys_pread_full(fd, hbuf, sizeof(hbuf), 0);
	if (n < 0)
		return (int)n;
	if (n != (ssize_t)sizeof(hbuf) || format_header_decode(hbuf, &h, ring) != 0) {
		/* Without a trusted header no block can be checked. */
		if (bad)
			bad(-1, -EIO, arg);
		return -EIO;
	}
	file_key(key, ring, h.file_id);
	nblocks = (cs - HDR + BC - 1) / BC;
	for (b = 0; b < nblocks;) {
		off_t cnt = nblocks - b < CHUNK_BLOCKS ? nblocks - b : CHUNK_BLOCKS;
		off_t start = block_pos(b);
		off_t stop = block_pos(b + cnt) < cs ? block_pos(b + cnt) : cs;
		uint8_t *ct = span_get((size_t)(stop - start));

		if (!ct) {
			ret = -ENOMEM;
			goto out;
		}
		n = sys_pread_full(fd, ct, (size_t)(stop - start), start);
		if (n < 0) {
			ret = (int)n;
			goto out;
		}
		if (n != stop - start) {
			ret = -EIO;
			goto out;
		}
		for (off_t i = 0; i < cnt; i++, b++) {
			off_t pos = block_pos(b);
			size_t slen = (size_t)(pos + BC < stop ? BC : stop - pos);

			/* A tail of 1..40 bytes (the size rule's impossible
			 * sizes) fails here too: open_block refuses it. */
			if (open_block(scratch, ct + (size_t)(i * BC), slen, key,
				       h.file_id, b) != 0) {
				any_bad = true;
				if (bad)
					bad((int64_t)b, -EIO, arg);
			}
		}
	}
	ret = any_bad ? -EIO : 0;
out:
	crypt_wipe(scratch, sizeof(scratch));
	crypt_wipe(key, sizeof(key));
	return ret;
}
