/*
 * fsx.c — a random-operation file exerciser in the spirit of fsx (Apple,
 * Linux Test Project), used by the reliability tests against a mount.
 *
 * It keeps one or a few files open in a directory of the mount and an
 * in-memory model of each file's content, then runs a seeded random
 * sequence of writes, truncates, reads, mmap reads, mmap writes, fsyncs
 * and close/reopens.  Every read (and every reopen, which re-reads the
 * whole file) is compared byte for byte with the model.  On the first
 * mismatch or unexpected error it prints the seed and the last operations
 * and exits 1, so a failure can be replayed with the same -S.
 *
 * It owns nothing in the engine: it only talks to the kernel, so it tests
 * the mount the way any program would.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FSX_MAX_FILES 8
#define FSX_LOG 64 /* operations kept for the failure report */

enum fsx_op {
	OP_WRITE,
	OP_TRUNC,
	OP_READ,
	OP_MAPREAD,
	OP_MAPWRITE,
	OP_FSYNC,
	OP_REOPEN,
	OP_N
};

static const char *const op_names[OP_N] = {"write",    "truncate", "read",  "mapread",
					   "mapwrite", "fsync",    "reopen"};

/* One file under test. */
struct fsx_file {
	char path[4096]; /* where it lives in the mount */
	int fd;          /* open read-write */
	uint8_t *model;  /* what the file must contain (maxlen bytes) */
	size_t size;     /* current size per the model */
};

/* One logged operation. */
struct fsx_rec {
	uint64_t n;     /* operation number, from 1 */
	int file;       /* index of the file */
	enum fsx_op op; /* what was done */
	uint64_t off;   /* offset (truncate: new size) */
	uint64_t len;   /* length (0 for truncate/fsync/reopen) */
};

static struct fsx_file files[FSX_MAX_FILES];
static struct fsx_rec log_ring[FSX_LOG];
static uint64_t nops, seed, opno;
static size_t maxlen = 256 * 1024, maxop = 64 * 1024;
static int nfiles = 1, quiet, use_mmap = 1;
static uint64_t counts[OP_N];
static uint8_t *buf;

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: small, seedable, the same on every machine */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static void dump_log(void)
{
	uint64_t first = opno > FSX_LOG ? opno - FSX_LOG + 1 : 1;

	fprintf(stderr, "fsx: seed %" PRIu64 ", last %" PRIu64 " operations:\n", seed,
		opno - first + 1);
	for (uint64_t i = first; i <= opno; i++) {
		const struct fsx_rec *r = &log_ring[i % FSX_LOG];

		fprintf(stderr,
			"  %6" PRIu64 " file %d %-8s off %8" PRIu64 " len %7" PRIu64 "\n",
			r->n, r->file, op_names[r->op], r->off, r->len);
	}
}

static void fail(struct fsx_file *f, const char *what, uint64_t off, int err)
{
	fprintf(stderr,
		"fsx: FAILED op %" PRIu64 " on %s: %s at %" PRIu64
		"%s%s (model size %zu)\n",
		opno, f->path, what, off, err ? ": " : "", err ? strerror(err) : "",
		f->size);
	dump_log();
	exit(1);
}

/* Compares got[0..len) with the model at off; reports the first bad byte. */
static void compare(struct fsx_file *f, const uint8_t *got, size_t len, size_t off,
		    const char *what)
{
	if (memcmp(got, f->model + off, len) == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		if (got[i] != f->model[off + i]) {
			fprintf(stderr,
				"fsx: %s mismatch at offset %zu: got 0x%02x want "
				"0x%02x\n",
				what, off + i, got[i], f->model[off + i]);
			fail(f, what, off + i, 0);
		}
	}
}

static void do_write(struct fsx_file *f, size_t off, size_t len)
{
	ssize_t r;

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(rnd() >> 32);
	r = pwrite(f->fd, buf, len, (off_t)off);
	if (r != (ssize_t)len)
		fail(f, "pwrite", off, r < 0 ? errno : EIO);
	if (off > f->size)
		memset(f->model + f->size, 0, off - f->size);
	memcpy(f->model + off, buf, len);
	if (off + len > f->size)
		f->size = off + len;
}

static void do_truncate(struct fsx_file *f, size_t size)
{
	if (ftruncate(f->fd, (off_t)size) < 0)
		fail(f, "ftruncate", size, errno);
	if (size > f->size)
		memset(f->model + f->size, 0, size - f->size);
	f->size = size;
}

static void do_read(struct fsx_file *f, size_t off, size_t len)
{
	size_t want = off >= f->size ? 0 : (off + len > f->size ? f->size - off : len);
	size_t got = 0;

	while (got < len) {
		ssize_t r = pread(f->fd, buf + got, len - got, (off_t)(off + got));

		if (r < 0)
			fail(f, "pread", off + got, errno);
		if (r == 0)
			break;
		got += (size_t)r;
	}
	if (got != want) {
		fprintf(stderr, "fsx: pread at %zu len %zu returned %zu, want %zu\n", off,
			len, got, want);
		fail(f, "short read", off, 0);
	}
	compare(f, buf, want, off, "read");
}

static void do_mapread(struct fsx_file *f, size_t off, size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), start, mlen;
	uint8_t *p;

	if (f->size == 0)
		return;
	if (off >= f->size)
		off = f->size - 1;
	if (off + len > f->size)
		len = f->size - off;
	start = off & ~(pg - 1);
	mlen = off + len - start;
	p = mmap(NULL, mlen, PROT_READ, MAP_SHARED, f->fd, (off_t)start);
	if (p == MAP_FAILED)
		fail(f, "mmap read", off, errno);
	compare(f, p + (off - start), len, off, "mapread");
	munmap(p, mlen);
}

static void do_mapwrite(struct fsx_file *f, size_t off, size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), start, mlen;
	uint8_t *p;

	/* A shared mapping cannot grow the file: extend it first, as fsx does. */
	if (off + len > f->size)
		do_truncate(f, off + len);
	start = off & ~(pg - 1);
	mlen = off + len - start;
	p = mmap(NULL, mlen, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, (off_t)start);
	if (p == MAP_FAILED)
		fail(f, "mmap write", off, errno);
	for (size_t i = 0; i < len; i++)
		f->model[off + i] = (uint8_t)(rnd() >> 32);
	memcpy(p + (off - start), f->model + off, len);
	if (msync(p, mlen, MS_SYNC) < 0)
		fail(f, "msync", off, errno);
	munmap(p, mlen);
}

static void open_file(struct fsx_file *f, int flags)
{
	f->fd = open(f->path, O_RDWR | O_CLOEXEC | flags, 0644);
	if (f->fd < 0)
		fail(f, "open", 0, errno);
}

/* Close, reopen and check the whole file: what the daemon stored, not
 * only what a handle saw. */
static void do_reopen(struct fsx_file *f)
{
	struct stat sb;

	if (close(f->fd) < 0)
		fail(f, "close", 0, errno);
	open_file(f, 0);
	if (fstat(f->fd, &sb) < 0)
		fail(f, "fstat", 0, errno);
	if ((size_t)sb.st_size != f->size) {
		fprintf(stderr, "fsx: size after reopen %jd, want %zu\n",
			(intmax_t)sb.st_size, f->size);
		fail(f, "size", 0, 0);
	}
	for (size_t off = 0; off < f->size; off += maxop)
		do_read(f, off, f->size - off < maxop ? f->size - off : maxop);
}

static void step(void)
{
	int fi = (int)rnd_below((uint64_t)nfiles);
	struct fsx_file *f = &files[fi];
	uint64_t pick = rnd_below(100);
	enum fsx_op op;
	size_t off, len;
	struct fsx_rec *r;

	/* writes and reads dominate; truncates, syncs and reopens are rarer */
	if (pick < 30)
		op = OP_WRITE;
	else if (pick < 38)
		op = OP_TRUNC;
	else if (pick < 68)
		op = OP_READ;
	else if (pick < 80)
		op = use_mmap ? OP_MAPREAD : OP_READ;
	else if (pick < 88)
		op = use_mmap ? OP_MAPWRITE : OP_WRITE;
	else if (pick < 95)
		op = OP_FSYNC;
	else
		op = OP_REOPEN;
	/* Offsets cluster near block boundaries and the end of file, where
	 * read-modify-write and re-sealing of the short last block happen. */
	switch (rnd_below(4)) {
	case 0:
		off = (size_t)rnd_below(maxlen / 4096) * 4096 + (size_t)rnd_below(3) - 1;
		break;
	case 1:
		off = f->size + (size_t)rnd_below(9000);
		if (off >= 4096)
			off -= (size_t)rnd_below(4096);
		break;
	default:
		off = (size_t)rnd_below(maxlen);
		break;
	}
	if (off >= maxlen)
		off = maxlen - 1;
	len = 1 + (size_t)rnd_below(rnd_below(4) ? 4096 + 2 : maxop);
	if (off + len > maxlen)
		len = maxlen - off;

	opno++;
	r = &log_ring[opno % FSX_LOG];
	*r = (struct fsx_rec){opno, fi, op, off, len};
	counts[op]++;
	switch (op) {
	case OP_WRITE:
		do_write(f, off, len);
		break;
	case OP_TRUNC:
		r->len = 0;
		do_truncate(f, off);
		break;
	case OP_READ:
		do_read(f, off, len);
		break;
	case OP_MAPREAD:
		do_mapread(f, off, len);
		break;
	case OP_MAPWRITE:
		do_mapwrite(f, off, len);
		break;
	case OP_FSYNC:
		r->off = r->len = 0;
		if (fsync(f->fd) < 0)
			fail(f, "fsync", 0, errno);
		break;
	default:
		r->off = r->len = 0;
		do_reopen(f);
		break;
	}
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fsx [-N ops] [-S seed] [-l maxlen] [-o maxop] [-f files] [-M] "
		"[-q] DIR\n"
		"  random writes, truncates, reads, mmap reads/writes, fsyncs and "
		"reopens\n"
		"  on DIR/fsx.0.. checked byte for byte against an in-memory model.\n"
		"  -N ops     operations to run (default 10000)\n"
		"  -S seed    random seed (default: from the clock; printed)\n"
		"  -l maxlen  largest file size (default 262144)\n"
		"  -o maxop   largest single read/write (default 65536)\n"
		"  -f files   files exercised at once, 1..8 (default 1)\n"
		"  -M         no mmap operations\n"
		"  -q         quiet: print only the summary or the failure\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int c;

	nops = 10000;
	seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16);
	while ((c = getopt(argc, argv, "N:S:l:o:f:Mq")) != -1) {
		switch (c) {
		case 'N':
			nops = strtoull(optarg, NULL, 0);
			break;
		case 'S':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'l':
			maxlen = strtoull(optarg, NULL, 0);
			break;
		case 'o':
			maxop = strtoull(optarg, NULL, 0);
			break;
		case 'f':
			nfiles = atoi(optarg);
			break;
		case 'M':
			use_mmap = 0;
			break;
		case 'q':
			quiet = 1;
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc || nfiles < 1 || nfiles > FSX_MAX_FILES || maxlen < 8192 ||
	    maxop < 1 || maxop > maxlen)
		usage();
	rng_state = seed * 2654435761ULL + 0x9E3779B97F4A7C15ULL;
	if (!rng_state)
		rng_state = 1;
	buf = malloc(maxlen);
	if (!buf)
		return 2;
	for (int i = 0; i < nfiles; i++) {
		struct fsx_file *f = &files[i];

		snprintf(f->path, sizeof(f->path), "%s/fsx.%d", argv[optind], i);
		f->model = calloc(1, maxlen);
		if (!f->model)
			return 2;
		open_file(f, O_CREAT | O_TRUNC);
	}
	if (!quiet)
		printf("fsx: seed %" PRIu64 ", %" PRIu64 " ops, %d file(s), maxlen %zu\n",
		       seed, nops, nfiles, maxlen);
	while (opno < nops)
		step();
	for (int i = 0; i < nfiles; i++) {
		do_reopen(&files[i]);
		close(files[i].fd);
		free(files[i].model);
	}
	printf("fsx: %" PRIu64 " ops OK (seed %" PRIu64 "):", opno, seed);
	for (int i = 0; i < OP_N; i++)
		printf(" %s=%" PRIu64, op_names[i], counts[i]);
	printf("\n");
	free(buf);
	return 0;
}
