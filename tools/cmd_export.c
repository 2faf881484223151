/*
 * cmd_export.c — `custodian export STORE SUBJECT --out DIR|FILE.tar`: the
 * data-subject access package (GDPR art. 15) of one subject.
 *
 * Owns the package: the subject's files in plain form under files/ (names
 * decrypted with the subject's keyring, directories kept, symlinks
 * recreated), manifest.json (per entry: path, type, size, created, sha256,
 * or "error": "damaged"), audit.json (the subject's audit history as JSON
 * lines with the field names of `custodian audit log --json`) and
 * summary.txt (who accessed what and when, counts per user); optionally
 * packed as a tar archive by /bin/tar from a private 0700 staging
 * directory that is always removed.  The export is itself audited (op
 * "export").  On a mounted store the ciphertext is read as it stands and
 * the daemon records the export (cli_audit_admin); a file that reads torn
 * because it is being written is read once more, then listed as damaged.
 * A damaged file is listed and skipped (exit 1); a failure to write
 * the package removes everything written so far, since a half package is
 * plaintext nobody asked to keep.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "format.h"
#include "linktarget.h"
#include "names.h"
#include "subjects.h"

#define VERB "export"
#define COPY_BUF (64 * 1024)
/* Pause before reading a torn file of a mounted store again (ns). */
#define EXPORT_RETRY_NS 200000000L
#define TAR_PROGRAM "/bin/tar"

enum {
	OPT_OUT = CLI_OPT_FIRST_FREE,
	OPT_JSON,
};

static const struct option longopts[] = {
	{"out", required_argument, NULL, OPT_OUT},
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	CLI_UNLOCK_LONGOPTS,
	{NULL, 0, NULL, 0},
};

static void usage(FILE *f)
{
	fputs("usage: custodian export STORE SUBJECT --out DIR|FILE.tar [--json]\n"
	      "                        [unlock options]\n"
	      "\n"
	      "Writes the access package of data subject SUBJECT (GDPR art. 15):\n"
	      "its files in plain form under files/, manifest.json (path, size,\n"
	      "created, sha256 per file), audit.json (who accessed what and when,\n"
	      "JSON lines as `custodian audit log --json`) and summary.txt.  With\n"
	      "an --out ending in .tar, a tar archive instead of a directory.  The\n"
	      "export is recorded in the audit log.  The store may be mounted (a\n"
	      "file being written that reads torn is read again once, then\n"
	      "listed as damaged).  DIR must not exist or be empty (it is made\n"
	      "0700).  Exit 1 if any file is damaged (the others are still\n"
	      "exported; manifest.json and standard error list it).\n"
	      "\n"
	      "  --out DIR|FILE.tar  where to write the package (plaintext: keep\n"
	      "                      it safe, hand it over, delete it)\n"
	      "  --json              print the result as one JSON "
	      "object\n" CLI_UNLOCK_HELP "  -h, --help          show this help\n",
	      f);
}

/* The manifest's sha256 lets the subject check each file with sha256sum. */
static void sha_hex(struct crypt_sha256 *s, char out[2 * CRYPT_SHA256_BYTES + 1])
{
	uint8_t dig[CRYPT_SHA256_BYTES];

	crypt_sha256_final(s, dig);
	crypt_hex(out, dig, sizeof(dig));
}

/* --- helpers ------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Removes everything below dirfd (not following symlinks); dirfd stays
 * open.  Best effort: returns the first error. */
static int rm_below(int dirfd)
{
	struct dirent *de;
	struct stat sb;
	DIR *d;
	int fd, ret = 0, r;

	fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			int sub = openat(dirfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub >= 0) {
				r = rm_below(sub);
				if (r < 0 && ret == 0)
					ret = r;
				close(sub);
			}
			r = unlinkat(dirfd, de->d_name, AT_REMOVEDIR);
		} else {
			r = unlinkat(dirfd, de->d_name, 0);
		}
		if (r != 0 && ret == 0)
			ret = -errno;
	}
	rewinddir(d);
	closedir(d);
	return ret;
}

static char *join(const char *dir, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s%s%s", dir, dir[0] ? "/" : "", name) < 0)
		return NULL;
	return p;
}

/* User name of uid, or NULL. */
static const char *user_name(int64_t uid, char buf[64])
{
	struct passwd *pw = getpwuid((uid_t)uid);

	if (pw == NULL || strlen(pw->pw_name) >= 64)
		return NULL;
	strcpy(buf, pw->pw_name);
	return buf;
}

/* --- the export ----------------------------------------------------------------- */

/* Accesses of one user (uid), for summary.txt. */
struct usage_row {
	int64_t uid;      /* caller uid */
	uint64_t records; /* records of this uid */
	uint64_t opens;   /* op "open" */
	uint64_t
		changes; /* create/write/unlink/rename/setattr/link/symlink/mkdir/rmdir */
	uint64_t denied; /* outcome != 0 */
	int64_t first, last; /* times of the first and last record */
};

/* One export run. */
struct export
{
	struct store *st;           /* unlocked store */
	const struct keyring *ring; /* the subject's keyring */
	const char *root;           /* subject's plaintext path, "/customers/C-1" */
	json_object *entries;       /* manifest "files" array */
	uint8_t *buf;               /* plaintext copy buffer (COPY_BUF) */
	uint64_t files;             /* regular files exported */
	uint64_t bytes;             /* their plaintext bytes */
	uint64_t dirs;              /* directories below the root */
	uint64_t links;             /* symlinks recreated */
	uint64_t damaged;           /* entries that could not be read */
	uint64_t retried;           /* files read a second time (mounted) */
	bool live;                  /* the store is mounted: files may change */
	uint64_t records;           /* audit records in audit.json */
	struct usage_row *users;    /* per-uid counts */
	size_t nusers;              /* used entries of users */
	int err;                    /* first failure writing the package */
};

static void fail(struct export *ex, int err)
{
	if (ex->err == 0)
		ex->err = err;
}

/* Lists an entry that could not be read, on stderr and in the manifest. */
static void damaged(struct export *ex, const char *rel, const char *backing,
		    const char *what, int err)
{
	json_object *o = json_object_new_object();
	const char *why = err == -EIO ? "authentication failed" : strerror(-err);

	ex->damaged++;
	cli_err(VERB, "damaged: %s%s%s: %s: %s (%s)", ex->root, rel ? "/" : "",
		rel ? rel : "", what, why, backing);
	json_object_object_add(o, "path", rel ? json_object_new_string(rel) : NULL);
	json_object_object_add(o, "type", json_object_new_string(what));
	json_object_object_add(o, "backing", json_object_new_string(backing));
	json_object_object_add(o, "error", json_object_new_string("damaged"));
	json_object_object_add(o, "reason", json_object_new_string(why));
	json_object_array_add(ex->entries, o);
}

/* One attempt at copying a record out.  True if it could not be read
 * (*derr says why; nothing is left in the package), false if it was
 * copied or the package itself failed (ex->err). */
static bool export_file_try(struct export *ex, int bdir, const char *bname, int odir,
			    const char *oname, const char *rel, int *derr)
{
	struct format_file ff;
	struct crypt_sha256 sha;
	struct stat sb;
	char created[40], hex[65];
	off_t size, off = 0;
	bool made = false, dmg = false;
	int fd, ofd = -1, err;
	json_object *o;

	fd = openat(bdir, bname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		*derr = -errno;
		dmg = true;
		goto out;
	}
	size = format_plain_size(sb.st_size);
	err = size < 0 ? -EIO : format_file_load(&ff, fd, ex->ring);
	if (err < 0) {
		*derr = err;
		dmg = true;
		goto out;
	}
	ofd = openat(odir, oname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		     0600);
	if (ofd < 0) {
		cli_err(VERB, "files/%s: %s", rel, strerror(errno));
		fail(ex, -errno);
		goto out;
	}
	made = true;
	crypt_sha256_init(&sha);
	while (off < size && !interrupted) {
		ssize_t n = format_file_read(&ff, ex->buf, COPY_BUF, off);

		if (n < 0) {
			crypt_wipe(&sha, sizeof(sha));
			*derr = (int)n;
			dmg = true;
			goto out;
		}
		if (n == 0)
			break;
		crypt_sha256_update(&sha, ex->buf, (size_t)n);
		err = write_all(ofd, ex->buf, (size_t)n);
		if (err < 0) {
			crypt_wipe(&sha, sizeof(sha));
			cli_err(VERB, "files/%s: %s", rel, strerror(-err));
			fail(ex, err);
			goto out;
		}
		off += n;
	}
	if (interrupted) {
		crypt_wipe(&sha, sizeof(sha));
		fail(ex, -EINTR);
		goto out;
	}
	sha_hex(&sha, hex);
	if (close(ofd) != 0) {
		ofd = -1;
		cli_err(VERB, "files/%s: %s", rel, strerror(errno));
		fail(ex, -errno);
		goto out;
	}
	ofd = -1;
	/* The record's own times, so the subject sees when it was written. */
	(void)utimensat(odir, oname, (struct timespec[2]){sb.st_atim, sb.st_mtim},
			AT_SYMLINK_NOFOLLOW);
	made = false;
	ex->files++;
	ex->bytes += (uint64_t)off;
	o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(rel));
	json_object_object_add(o, "type", json_object_new_string("file"));
	json_object_object_add(o, "size", json_object_new_int64(off));
	if (ff.have_header)
		cli_time_iso_us(ff.hdr.birth_us, created);
	json_object_object_add(o, "created",
			       ff.have_header ? json_object_new_string(created) : NULL);
	json_object_object_add(o, "sha256", json_object_new_string(hex));
	json_object_array_add(ex->entries, o);
out:
	if (ofd >= 0)
		close(ofd);
	if (made)
		(void)unlinkat(odir, oname, 0);
	if (fd >= 0)
		close(fd);
	return dmg;
}

/* Copies one record out; damaged ones are listed and removed again.  On a
 * mounted store a file being written at this moment may read torn (a
 * block half rewritten fails authentication): it is read once more a
 * moment later, and listed as damaged only if that fails too.  A file
 * removed meanwhile is left out. */
static void export_file(struct export *ex, int bdir, const char *bname, int odir,
			const char *oname, const char *rel, const char *backing)
{
	int derr = 0;

	if (!export_file_try(ex, bdir, bname, odir, oname, rel, &derr))
		return;
	if (ex->live && derr == -ENOENT)
		return;
	if (ex->live && !interrupted) {
		ex->retried++;
		(void)nanosleep(&(struct timespec){0, EXPORT_RETRY_NS}, NULL);
		derr = 0;
		if (!export_file_try(ex, bdir, bname, odir, oname, rel, &derr))
			return;
		if (derr == -ENOENT)
			return;
	}
	damaged(ex, rel, backing, "file", derr);
}

static void export_link(struct export *ex, int bdir, const char *bname, int odir,
			const char *oname, const char *rel, const char *backing)
{
	char stored[LINKTARGET_STORED_MAX], target[LINKTARGET_PLAIN_MAX + 1];
	json_object *o;
	ssize_t n;
	int err;

	n = readlinkat(bdir, bname, stored, sizeof(stored));
	if (n < 0 || (size_t)n >= sizeof(stored)) {
		damaged(ex, rel, backing, "symlink", n < 0 ? -errno : -ENAMETOOLONG);
		return;
	}
	stored[n] = '\0';
	err = linktarget_decrypt(ex->ring, stored, target, sizeof(target));
	if (err < 0) {
		damaged(ex, rel, backing, "symlink", err);
		goto out;
	}
	if (symlinkat(target, odir, oname) != 0) {
		cli_err(VERB, "files/%s: %s", rel, strerror(errno));
		fail(ex, -errno);
		goto out;
	}
	ex->links++;
	o = json_object_new_object();
	json_object_object_add(o, "path", json_object_new_string(rel));
	json_object_object_add(o, "type", json_object_new_string("symlink"));
	json_object_object_add(o, "target", json_object_new_string(target));
	json_object_array_add(ex->entries, o);
out:
	crypt_wipe(target, sizeof(target));
}

/* Exports backing directory bdir (closed here) into output directory odir
 * (closed here); rel is the path inside the subject ("" at its root). */
static void export_dir(struct export *ex, int bdir, int odir, const char *rel,
		       const char *backing)
{
	uint8_t iv[CRYPT_DIRIV_BYTES];
	char name[NAMES_PLAIN_MAX + 1];
	char *crel = NULL, *cback = NULL;
	struct dirent *de;
	struct stat sb;
	DIR *d = NULL;
	int err;

	err = names_diriv_load(bdir, iv);
	if (err < 0) {
		damaged(ex, rel[0] ? rel : NULL, backing, "directory", err);
		close(bdir);
		goto out;
	}
	d = fdopendir(bdir);
	if (d == NULL) {
		damaged(ex, rel[0] ? rel : NULL, backing, "directory", -errno);
		close(bdir);
		goto out;
	}
	while (ex->err == 0 && (de = readdir(d)) != NULL) {
		if (interrupted) {
			fail(ex, -EINTR);
			break;
		}
		if (crel)
			crypt_wipe(crel, strlen(crel));
		free(crel);
		free(cback);
		crel = NULL;
		cback = join(backing, de->d_name);
		if (cback == NULL) {
			fail(ex, -ENOMEM);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		err = names_decrypt(ex->ring, iv, bdir, de->d_name, name);
		if (err == -ENOENT)
			continue; /* the store's own entries */
		if (err < 0) {
			damaged(ex, NULL, cback, "name", err);
			continue;
		}
		crel = join(rel, name);
		if (crel == NULL) {
			fail(ex, -ENOMEM);
			break;
		}
		if (fstatat(bdir, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			damaged(ex, crel, cback, "file", -errno);
			continue;
		}
		if (S_ISDIR(sb.st_mode)) {
			int sb_fd, so_fd;

			if (mkdirat(odir, name, 0700) != 0) {
				cli_err(VERB, "files/%s: %s", crel, strerror(errno));
				fail(ex, -errno);
				break;
			}
			so_fd = openat(odir, name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (so_fd < 0) {
				fail(ex, -errno);
				break;
			}
			sb_fd = openat(bdir, de->d_name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sb_fd < 0) {
				damaged(ex, crel, cback, "directory", -errno);
				close(so_fd);
				continue;
			}
			ex->dirs++;
			json_object *o = json_object_new_object();

			json_object_object_add(o, "path", json_object_new_string(crel));
			json_object_object_add(o, "type",
					       json_object_new_string("directory"));
			json_object_array_add(ex->entries, o);
			export_dir(ex, sb_fd, so_fd, crel, cback);
		} else if (S_ISREG(sb.st_mode)) {
			export_file(ex, bdir, de->d_name, odir, name, crel, cback);
		} else if (S_ISLNK(sb.st_mode)) {
			export_link(ex, bdir, de->d_name, odir, name, crel, cback);
		}
		/* fifos, sockets, devices hold no data: nothing to hand over. */
	}
out:
	crypt_wipe(name, sizeof(name));
	if (crel)
		crypt_wipe(crel, strlen(crel));
	free(crel);
	free(cback);
	if (d)
		closedir(d);
	close(odir);
}

static struct usage_row *user_row(struct export *ex, int64_t uid)
{
	struct usage_row *u;

	for (size_t i = 0; i < ex->nusers; i++)
		if (ex->users[i].uid == uid)
			return &ex->users[i];
	u = realloc(ex->users, (ex->nusers + 1) * sizeof(*u));
	if (u == NULL)
		return NULL;
	ex->users = u;
	u = &ex->users[ex->nusers++];
	memset(u, 0, sizeof(*u));
	u->uid = uid;
	return u;
}

/* A sealed path from a record: the subject's keyring, else the volume's. */
static void path_text(struct export *ex, const uint8_t *sealed, size_t len, char *out,
		      size_t cap)
{
	out[0] = 0;
	if (len == 0)
		return;
	if (audit_path_open(ex->ring, sealed, len, out, cap) != 0 &&
	    audit_path_open(keys_volume(ex->st->mk), sealed, len, out, cap) != 0)
		snprintf(out, cap, "(shredded)"); /* as `audit log` says */
}

static bool is_change(const char *op)
{
	static const char *const ops[] = {"create",  "write",   "unlink",
					  "rename",  "setattr", "link",
					  "symlink", "mkdir",   "rmdir"};

	for (size_t i = 0; i < ARRAY_LEN(ops); i++)
		if (strcmp(op, ops[i]) == 0)
			return true;
	return false;
}

/* Writes audit.json (and the "when/who/what" lines of summary.txt to
 * `lines`) from the subject's records; counts per user. */
static int write_audit(struct export *ex, const uint8_t hash[CRYPT_HASH_BYTES],
		       int64_t since_us, FILE *json, FILE *lines)
{
	struct catalog_audit_filter flt;
	struct catalog_audit_iter *it = NULL;
	struct catalog_audit_row *r = malloc(sizeof(*r));
	char *path = malloc(AUDIT_PATH_MAX + 1), *path2 = malloc(AUDIT_PATH_MAX + 1);
	char ts[40], ubuf[64];
	int rc;

	if (!r || !path || !path2) {
		rc = -ENOMEM;
		goto out;
	}
	catalog_audit_filter_all(&flt);
	flt.subject = hash;
	/* An id shredded and created again has the same hash: the records of
	 * the earlier subject are not this subject's history. */
	flt.since_us = since_us;
	rc = catalog_audit_query(ex->st->cat, &flt, &it);
	if (rc < 0)
		goto out;
	while ((rc = catalog_audit_next(it, r)) == 1) {
		const char *user = user_name(r->uid, ubuf);
		struct usage_row *u = user_row(ex, r->uid);
		json_object *o;

		if (u == NULL) {
			rc = -ENOMEM;
			break;
		}
		ex->records++;
		u->records++;
		u->opens += strcmp(r->op, "open") == 0;
		u->changes += is_change(r->op);
		u->denied += r->outcome != 0;
		if (u->records == 1)
			u->first = r->ts_us;
		u->last = r->ts_us;
		path_text(ex, r->path, r->path_len, path, AUDIT_PATH_MAX + 1);
		path_text(ex, r->path2, r->path2_len, path2, AUDIT_PATH_MAX + 1);
		cli_time_iso_us(r->ts_us, ts);
		o = cli_audit_json(r, user, path, path2);
		if (o == NULL) {
			rc = -ENOMEM;
			break;
		}
		fputs(json_object_to_json_string_ext(
			      o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
		      json);
		fputc('\n', json);
		json_object_put(o);
		fprintf(lines, "  %s  %-12s %-8s %-7s %s%s%s%s%s\n", ts,
			user ? user : "?", r->op, r->outcome ? "DENIED" : "ok",
			r->path_len ? path : "-", r->path2_len ? " -> " : "",
			r->path2_len ? path2 : "", r->detail[0] ? "  " : "", r->detail);
	}
	if (rc == 0 && (ferror(json) || ferror(lines)))
		rc = -EIO;
out:
	catalog_audit_iter_free(it);
	if (path)
		crypt_wipe(path, AUDIT_PATH_MAX + 1);
	if (path2)
		crypt_wipe(path2, AUDIT_PATH_MAX + 1);
	free(path);
	free(path2);
	free(r);
	return rc;
}

/* Opens a new file of the package for writing as a stream. */
static FILE *package_file(int outfd, const char *name)
{
	int fd = openat(outfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			0600);
	FILE *f;

	if (fd < 0)
		return NULL;
	f = fdopen(fd, "w");
	if (f == NULL)
		close(fd);
	return f;
}

static int close_file(FILE *f)
{
	int bad = ferror(f);

	if (fclose(f) != 0 || bad)
		return errno ? -errno : -EIO;
	return 0;
}

/* Manifest entries by path (damaged names, without one, last). */
static int entry_cmp(const void *x, const void *y)
{
	json_object *a = NULL, *b = NULL;
	const char *pa, *pb;

	json_object_object_get_ex(*(json_object *const *)x, "path", &a);
	json_object_object_get_ex(*(json_object *const *)y, "path", &b);
	pa = a ? json_object_get_string(a) : NULL;
	pb = b ? json_object_get_string(b) : NULL;
	if (!pa || !pb)
		return !pa - !pb;
	return strcmp(pa, pb);
}

/* Writes the whole package into outfd: files/, audit.json, manifest.json,
 * summary.txt.  rootfd (the subject's backing root) is closed here. */
static int write_package(struct export *ex, int outfd, int rootfd, const char *id,
			 const struct subjects_info *info, const char *backing,
			 const char *operator_)
{
	FILE *aj = NULL, *lines = NULL, *mf = NULL, *sm = NULL;
	char *lbuf = NULL, when[CLI_TIME_MAX], hash[2 * CRYPT_HASH_BYTES + 1],
	     sid[2 * STORE_ID_BYTES + 1], created[CLI_TIME_MAX], t1[40], t2[40], ubuf[64];
	size_t llen = 0;
	json_object *m = NULL;
	bool walked = false;
	int filesfd = -1, rc;

	cli_time_iso((int64_t)time(NULL) * 1000000, when);
	crypt_hex(hash, info->hash, sizeof(info->hash));
	crypt_hex(sid, ex->st->id, STORE_ID_BYTES);
	cli_time_iso(info->created_us, created);

	/* audit.json first: the history up to (not including) this export. */
	aj = package_file(outfd, "audit.json");
	lines = open_memstream(&lbuf, &llen);
	if (aj == NULL || lines == NULL) {
		rc = -errno;
		goto out;
	}
	rc = write_audit(ex, info->hash, info->created_us, aj, lines);
	if (rc == 0)
		rc = close_file(aj);
	else
		fclose(aj);
	aj = NULL;
	if (rc < 0) {
		cli_err(VERB, "audit.json: %s", store_strerror(rc));
		goto out;
	}
	fclose(lines);
	lines = NULL;

	if (mkdirat(outfd, "files", 0700) != 0 ||
	    (filesfd = openat(outfd, "files", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		rc = -errno;
		cli_err(VERB, "files/: %s", strerror(errno));
		goto out;
	}
	walked = true;
	export_dir(ex, rootfd, filesfd, "", backing);
	filesfd = -1; /* closed by the walk */
	if (ex->err) {
		rc = ex->err;
		goto out;
	}

	m = json_object_new_object();
	json_object_object_add(m, "subject", json_object_new_string(id));
	json_object_object_add(m, "subject_hash", json_object_new_string(hash));
	json_object_object_add(m, "root", json_object_new_string(ex->root));
	json_object_object_add(m, "subject_created", json_object_new_string(created));
	json_object_object_add(m, "store", json_object_new_string(ex->st->path));
	json_object_object_add(m, "store_id", json_object_new_string(sid));
	json_object_object_add(m, "exported_at", json_object_new_string(when));
	json_object_object_add(m, "exported_by", json_object_new_string(operator_));
	json_object_object_add(m, "file_count", json_object_new_uint64(ex->files));
	json_object_object_add(m, "bytes", json_object_new_uint64(ex->bytes));
	json_object_object_add(m, "damaged", json_object_new_uint64(ex->damaged));
	json_object_object_add(m, "audit_records", json_object_new_uint64(ex->records));
	json_object_array_sort(ex->entries, entry_cmp);
	json_object_object_add(m, "files", json_object_get(ex->entries));
	mf = package_file(outfd, "manifest.json");
	if (mf == NULL) {
		rc = -errno;
		goto out;
	}
	fputs(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PRETTY |
							JSON_C_TO_STRING_NOSLASHESCAPE),
	      mf);
	fputc('\n', mf);
	rc = close_file(mf);
	mf = NULL;
	if (rc < 0) {
		cli_err(VERB, "manifest.json: %s", strerror(-rc));
		goto out;
	}

	sm = package_file(outfd, "summary.txt");
	if (sm == NULL) {
		rc = -errno;
		goto out;
	}
	fprintf(sm,
		"Data-subject access package (GDPR art. 15)\n"
		"\n"
		"Subject:        %s (%s)\n"
		"Subject since:  %s\n"
		"State:          %s%s\n"
		"Store:          %s (id %s)\n"
		"Exported at:    %s by %s\n"
		"\n"
		"Files:          %" PRIu64 " files, %" PRIu64 " bytes, %" PRIu64
		" directories, %" PRIu64 " symlinks\n"
		"                contents under files/, sizes, creation times and\n"
		"                SHA-256 checksums in manifest.json\n",
		id, ex->root, created,
		(info->flags & SUBJECTS_RESTRICTED) ? "processing restricted" : "active",
		(info->flags & SUBJECTS_HELD) ? ", on legal hold" : "", ex->st->path, sid,
		when, operator_, ex->files, ex->bytes, ex->dirs, ex->links);
	if (ex->damaged)
		fprintf(sm,
			"Damaged:        %" PRIu64
			" entries could not be read (listed in manifest.json)\n",
			ex->damaged);
	fprintf(sm,
		"\nAccess history: %" PRIu64
		" audit records (audit.json, one JSON object per line)\n",
		ex->records);
	if (ex->nusers) {
		fprintf(sm, "\nAccesses per user:\n  %-12s %8s %8s %8s %8s  %-27s %s\n",
			"USER", "RECORDS", "OPENS", "CHANGES", "DENIED", "FIRST (UTC)",
			"LAST (UTC)");
		for (size_t i = 0; i < ex->nusers; i++) {
			const struct usage_row *u = &ex->users[i];
			const char *name = user_name(u->uid, ubuf);
			char num[24];

			snprintf(num, sizeof(num), "uid %" PRId64, u->uid);
			cli_time_iso_us(u->first, t1);
			cli_time_iso_us(u->last, t2);
			fprintf(sm,
				"  %-12s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64
				"  %-27s %s\n",
				name ? name : num, u->records, u->opens, u->changes,
				u->denied, t1, t2);
		}
		fprintf(sm, "\nWho accessed what, and when (UTC):\n%s", lbuf ? lbuf : "");
	}
	rc = close_file(sm);
	sm = NULL;
	if (rc < 0)
		cli_err(VERB, "summary.txt: %s", strerror(-rc));
out:
	if (aj)
		fclose(aj);
	if (lines)
		fclose(lines);
	if (lbuf) {
		crypt_wipe(lbuf, llen);
		free(lbuf);
	}
	if (mf)
		fclose(mf);
	if (sm)
		fclose(sm);
	json_object_put(m);
	if (filesfd >= 0)
		close(filesfd);
	if (!walked)
		close(rootfd);
	return rc;
}

/* Packs the staging directory into tarpath (which exists, empty, ours). */
static int run_tar(const char *staging, const char *tarpath)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		execl(TAR_PROGRAM, "tar", "--format=pax", "--sort=name",
		      "--numeric-owner", "--owner=0", "--group=0", "-C", staging, "-cf",
		      tarpath, "--", "manifest.json", "summary.txt", "audit.json",
		      "files", (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -EIO;
	return 0;
}

/* The absolute form of a path that may not exist yet (its directory must). */
static char *abs_path(const char *p)
{
	char cwd[PATH_MAX], *r = NULL;

	if (p[0] == '/')
		return strdup(p);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	if (asprintf(&r, "%s/%s", cwd, p) < 0)
		return NULL;
	return r;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);

	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* An existing directory with nothing in it? */
static int dir_empty(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int n = 0;

	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n == 0;
}

/* Who is exporting: the login behind sudo if there is one. */
static void operator_name(char out[SUBJECTS_OPERATOR_MAX])
{
	struct passwd *pw = getpwuid(getuid());
	const char *sudo = getenv("SUDO_USER");

	if (getuid() == 0 && sudo && *sudo)
		snprintf(out, SUBJECTS_OPERATOR_MAX, "%.40s (sudo)", sudo);
	else if (pw)
		snprintf(out, SUBJECTS_OPERATOR_MAX, "%.63s", pw->pw_name);
	else
		snprintf(out, SUBJECTS_OPERATOR_MAX, "#%u", (unsigned)getuid());
}

static const char *subject_reason(int err)
{
	switch (err) {
	case -ENOENT:
	case -ENOKEY:
		return "no such subject (or shredded)";
	case -EBADMSG:
		return "the subject's catalogue row was changed outside custodian; "
		       "refusing";
	case -EIO:
		return "the subject's key does not unwrap (damaged catalogue)";
	default:
		return store_strerror(err);
	}
}

int cmd_export(int argc, char **argv)
{
	struct cli_unlock how = {0};
	struct export ex = {0};
	struct subjects_info *info = NULL;
	struct keyring *ring = NULL;
	struct audit *a = NULL;
	struct store *st = NULL;
	struct sigaction sa = {0}, old_int, old_term, old_hup;
	char who[SUBJECTS_OPERATOR_MAX], bname[SUBJECTS_BACKING_LEN + 1], detail[128];
	char *real = NULL, *outabs = NULL, *staging = NULL, *root = NULL, *backing = NULL;
	const char *path, *id, *out = NULL;
	bool json = false, tar, made_out = false, made_tar = false, keep = false;
	bool signals = false, mounted;
	int c, err, pfd = -1, rootfd = -1, outfd = -1, ret = CLI_FAIL;
	uint64_t seq = 0;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_OUT:
			out = optarg;
			break;
		case OPT_JSON:
			json = true;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 2, "STORE and SUBJECT are required", usage))
		return CLI_USAGE;
	path = argv[optind];
	id = argv[optind + 1];
	if (out == NULL || out[0] == '\0') {
		cli_err(VERB, "--out DIR|FILE.tar is required");
		return CLI_USAGE;
	}
	if (cli_check_subject_id(VERB, id))
		return CLI_USAGE;
	tar = ends_with(out, ".tar");

	real = realpath(path, NULL);
	if (real == NULL) {
		cli_err(VERB, "%s: %s", path, strerror(errno));
		goto out;
	}
	/* Mounted: the ciphertext is read as it is (read-only), the daemon
	 * records the export; files written meanwhile are read twice. */
	mounted = cli_store_mounted(real);
	/* Refuse a destination in the way before asking for the passphrase. */
	outabs = abs_path(out);
	if (outabs == NULL) {
		cli_err(VERB, "%s: %s", out, strerror(errno ? errno : ENOMEM));
		goto out;
	}
	if (tar) {
		struct stat sb;

		if (lstat(outabs, &sb) == 0) {
			cli_err(VERB, "%s already exists; not overwriting it", out);
			goto out;
		}
	} else {
		err = dir_empty(outabs);
		if (err == 0) {
			cli_err(VERB, "%s exists and is not empty", out);
			goto out;
		}
		if (err < 0 && err != -ENOENT) {
			cli_err(VERB, "%s: %s", out, strerror(-err));
			goto out;
		}
	}

	if (cli_open_unlocked(VERB, path, mounted, &how, &st) < 0)
		goto out;
	info = calloc(1, sizeof(*info));
	if (info == NULL) {
		cli_err(VERB, "%s", strerror(ENOMEM));
		goto out;
	}
	{
		uint8_t hash[CRYPT_HASH_BYTES];

		subjects_hash(st->mk, id, hash);
		err = subjects_get(st, hash, info);
		if (err == 0 && (info->flags & SUBJECTS_SHREDDED))
			err = -ENOKEY;
		if (err == 0)
			err = subjects_open(st, hash, &ring);
	}
	if (err < 0) {
		cli_err(VERB, "%s: %s", id, subject_reason(err));
		goto out;
	}
	/* The log is opened before any plaintext is written: an export that
	 * cannot be recorded does not happen.  -EBUSY: mounted meanwhile. */
	err = mounted ? 0 : audit_open(st, NULL, &a);
	if (err == -EBUSY) {
		cli_err(VERB, "%s is mounted; unmount it first", path);
		goto out;
	}
	if (err < 0) {
		cli_err(VERB, "%s: opening the audit log: %s", path, store_strerror(err));
		goto out;
	}
	subjects_backing_name(info->hash, bname);
	err = subjects_resolve_dir(st, info->parent, &pfd);
	if (err == 0) {
		rootfd = openat(pfd, bname,
				O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (rootfd < 0)
			err = -errno;
	}
	if (err < 0) {
		cli_err(VERB, "%s: the subject's directory cannot be opened: %s", id,
			strerror(-err));
		goto out;
	}
	{
		char fdlink[64], pdir[PATH_MAX];
		ssize_t n;

		snprintf(fdlink, sizeof(fdlink), "/proc/self/fd/%d", pfd);
		n = readlink(fdlink, pdir, sizeof(pdir) - 1);
		pdir[n > 0 ? n : 0] = '\0';
		err = asprintf(&backing, "%s/%s", pdir, bname);
	}
	if (err < 0 || asprintf(&root, "%s%s%s", info->parent,
				strcmp(info->parent, "/") ? "/" : "", id) < 0) {
		root = backing = NULL;
		cli_err(VERB, "%s", strerror(ENOMEM));
		goto out;
	}

	/* From here on plaintext is written: a signal must not leave it. */
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGHUP, &sa, &old_hup);
	signals = true;

	if (tar) {
		char *slash;
		int tfd;

		/* Claim the name first (O_EXCL), so nothing else is overwritten. */
		tfd = open(outabs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			   0600);
		if (tfd < 0) {
			cli_err(VERB, "%s: %s", out, strerror(errno));
			goto out;
		}
		close(tfd);
		made_tar = true;
		slash = strrchr(outabs, '/');
		if (asprintf(&staging, "%.*s/.custodian-export-XXXXXX",
			     (int)(slash - outabs), outabs) < 0) {
			staging = NULL;
			cli_err(VERB, "%s", strerror(ENOMEM));
			goto out;
		}
		if (mkdtemp(staging) == NULL) {
			cli_err(VERB, "staging directory beside %s: %s", out,
				strerror(errno));
			free(staging);
			staging = NULL;
			goto out;
		}
		outfd = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	} else {
		if (mkdir(outabs, 0700) == 0)
			made_out = true;
		else if (errno != EEXIST) {
			cli_err(VERB, "%s: %s", out, strerror(errno));
			goto out;
		}
		outfd = open(outabs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		/* Created empty a moment ago, or checked empty: still ours? */
		if (outfd >= 0 && !made_out && dir_empty(outabs) != 1) {
			cli_err(VERB, "%s exists and is not empty", out);
			close(outfd);
			outfd = -1;
			goto out;
		}
		/* Plaintext inside: only its owner may enter. */
		if (outfd >= 0 && !made_out && fchmod(outfd, 0700) != 0) {
			cli_err(VERB, "%s: %s", out, strerror(errno));
			goto out;
		}
	}
	if (outfd < 0) {
		cli_err(VERB, "%s: %s", out, strerror(errno));
		goto out;
	}

	ex.st = st;
	ex.live = mounted;
	ex.ring = ring;
	ex.root = root;
	ex.entries = json_object_new_array();
	ex.buf = malloc(COPY_BUF);
	if (ex.entries == NULL || ex.buf == NULL) {
		cli_err(VERB, "%s", strerror(ENOMEM));
		goto out;
	}
	operator_name(who);
	if (mounted) /* so audit.json holds what was done up to now */
		cli_audit_flush(VERB, real, "audit.json");
	err = write_package(&ex, outfd, rootfd, id, info, backing, who);
	rootfd = -1; /* closed by the walk */
	if (err == 0 && interrupted)
		err = -EINTR;
	if (err == 0 && tar) {
		err = run_tar(staging, outabs);
		if (err < 0)
			cli_err(VERB, "%s: %s failed", out, TAR_PROGRAM);
	}
	if (err == 0 && interrupted)
		err = -EINTR;

	if (err < 0)
		snprintf(detail, sizeof(detail), "failed; nothing kept");
	else
		snprintf(detail, sizeof(detail),
			 "files %" PRIu64 ", damaged %" PRIu64 ", %s%s", ex.files,
			 ex.damaged, tar ? "tar" : "directory",
			 mounted ? ", mounted" : "");
	{
		struct audit_who w;
		struct audit_event ev = {
			.op = AUDIT_OP_EXPORT,
			.outcome = err < 0 ? -err : (ex.damaged ? EIO : 0),
			.who = &w,
			.subject = info->hash,
			.ring = ring,
			.path = root,
			.detail = detail,
		};
		int aerr;

		audit_who_self(&w);
		if (mounted) {
			/* Through the daemon, which holds the log: with the
			 * subject's hash but without its path (the daemon
			 * would seal it under the volume keys, where it
			 * would outlive a shred). */
			aerr = cli_audit_admin_ex(VERB, st, AUDIT_OP_EXPORT, ev.outcome,
						  NULL, info->hash, detail, &seq);
		} else {
			aerr = audit_append(a, &ev, &seq);
			if (aerr == 0)
				aerr = audit_flush(a);
		}
		if (aerr < 0 && err == 0) {
			cli_err(VERB,
				"the export could not be recorded in the audit log (%s); "
				"package removed",
				store_strerror(aerr));
			err = aerr;
		}
	}
	if (err < 0) {
		cli_err(VERB, "%s; nothing kept",
			err == -EINTR ? "interrupted"
				      : "the package could not be written");
		goto out;
	}
	keep = true;
	if (json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "subject", json_object_new_string(id));
		json_object_object_add(o, "out", json_object_new_string(outabs));
		json_object_object_add(o, "format",
				       json_object_new_string(tar ? "tar" : "directory"));
		json_object_object_add(o, "files", json_object_new_uint64(ex.files));
		json_object_object_add(o, "bytes", json_object_new_uint64(ex.bytes));
		json_object_object_add(o, "directories", json_object_new_uint64(ex.dirs));
		json_object_object_add(o, "symlinks", json_object_new_uint64(ex.links));
		json_object_object_add(o, "damaged", json_object_new_uint64(ex.damaged));
		json_object_object_add(o, "retried", json_object_new_uint64(ex.retried));
		json_object_object_add(o, "audit_records",
				       json_object_new_uint64(ex.records));
		json_object_object_add(o, "audit_seq", json_object_new_uint64(seq));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		printf("exported subject %s: %" PRIu64 " files (%" PRIu64
		       " bytes), %" PRIu64 " damaged, %" PRIu64
		       " audit records -> %s (audit record %" PRIu64 ")\n",
		       id, ex.files, ex.bytes, ex.damaged, ex.records, out, seq);
	}
	ret = ex.damaged ? CLI_FAIL : CLI_OK;
out:
	if (outfd >= 0) {
		/* The staging copy always goes; the package only on failure. */
		if (staging || !keep)
			(void)rm_below(outfd);
		close(outfd);
	}
	if (staging)
		(void)rmdir(staging);
	if (!keep && made_out)
		(void)rmdir(outabs);
	if (!keep && made_tar)
		(void)unlink(outabs);
	if (signals) {
		sigaction(SIGINT, &old_int, NULL);
		sigaction(SIGTERM, &old_term, NULL);
		sigaction(SIGHUP, &old_hup, NULL);
	}
	if (rootfd >= 0)
		close(rootfd);
	if (pfd >= 0)
		close(pfd);
	audit_close(a);
	json_object_put(ex.entries);
	if (ex.buf) {
		crypt_wipe(ex.buf, COPY_BUF);
		free(ex.buf);
	}
	free(ex.users);
	keys_ring_free(ring);
	if (info) {
		crypt_wipe(info, sizeof(*info));
		free(info);
	}
	free(root);
	free(backing);
	free(staging);
	free(outabs);
	free(real);
	store_close(st);
	return ret;
}
