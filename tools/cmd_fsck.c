/*
 * cmd_fsck.c — `custodian fsck STORE`: finds what no longer decrypts.
 *
 * Owns the offline check of a store's tree: every directory's name IV,
 * every entry name, every block and header of every file, every symlink
 * target, reported against the plaintext path so the administrator knows
 * which record is damaged.  It only detects: the store is opened read-only
 * and every backing file with O_RDONLY.  Subject roots (`.S<hash>`
 * directories, docs/subjects.md) are looked up in the catalogue: a live
 * subject is checked with its own keyring and its problems are named by
 * plaintext path (id included); the ciphertext of a shredded or unknown
 * subject can no longer be read by anyone and is reported as orphan data;
 * a live subject whose directory is missing is reported too.
 *
 * With --repair (unmounted store only) what can never be read again is
 * moved out of the tree into STORE/quarantine/STAMP/ (nothing is deleted:
 * the ciphertext stays for forensics and for retention), each move is
 * audited with the plaintext path, and the tool prints what was lost.
 * What a newer catalogue or a backup could still open (a subject whose
 * key does not unwrap, a missing subject directory, I/O errors) is left in
 * place and named as not repaired.  See docs/admin.md, "Repairing".
 */
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

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "format.h"
#include "linktarget.h"
#include "names.h"
#include "subjects.h"

#define VERB "fsck"
#define FSCK_QUARANTINE_DIR "quarantine" /* inside STORE, beside tree/ */

enum {
	OPT_JSON = CLI_OPT_FIRST_FREE,
	OPT_QUIET,
	OPT_REPAIR,
	OPT_DRY_RUN,
	OPT_YES,
};

static const struct option longopts[] = {
	CLI_UNLOCK_LONGOPTS,
	{"json", no_argument, NULL, OPT_JSON},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"repair", no_argument, NULL, OPT_REPAIR},
	{"dry-run", no_argument, NULL, OPT_DRY_RUN},
	{"yes", no_argument, NULL, OPT_YES},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* Something --repair moves to the quarantine. */
struct fsck_fix {
	char *backing;                  /* absolute backing path */
	char *plain;                    /* plaintext path (for the operator) */
	char *lost;                     /* what is lost, one phrase */
	bool in_subject;                /* plain lies inside subject `hash` */
	uint8_t hash[CRYPT_HASH_BYTES]; /* that subject (audit sealing) */
};

/* State of one check run. */
struct fsck {
	struct store *st;                  /* the unlocked store (subject lookups) */
	const struct keyring *ring;        /* keyring of the directory being checked */
	uint8_t (*seen)[CRYPT_HASH_BYTES]; /* subject roots found in the tree */
	size_t nseen;                      /* entries in seen */
	bool json;                         /* JSON lines instead of text */
	uint64_t files;                    /* non-directories checked */
	uint64_t dirs;                     /* directories checked, the root included */
	uint64_t problems;                 /* everything reported */
	const char *cur_plain;             /* file under format_file_verify */
	const char *cur_backing;           /* its backing path */
	unsigned cur_bad;                  /* blocks reported for it */
	const uint8_t *cur_subject;        /* subject being walked, or NULL */
	struct fsck_fix *fixes;            /* what --repair would quarantine */
	size_t nfixes;                     /* entries in fixes */
	bool oom;                          /* a fix could not be remembered */
};

static void usage(FILE *f)
{
	fputs("usage: custodian fsck STORE [unlock options] [--json] [--quiet]\n"
	      "       custodian fsck STORE --repair [--dry-run] [--yes] [unlock "
	      "options]\n"
	      "\n"
	      "Checks every directory, name, file block and symlink of STORE\n"
	      "and lists what fails to decrypt or authenticate, by plaintext\n"
	      "path.  Without --repair it never modifies the store.  Data\n"
	      "subjects are checked with their own keys; the ciphertext of a\n"
	      "shredded or unknown subject (e.g. restored from a copy) is listed\n"
	      "as orphan data.  Exit status 0 if clean, 1 if anything is\n"
	      "damaged (after --repair: 0 if everything found was quarantined).\n"
	      "\n"
	      "--repair (store unmounted) moves what can never be read again —\n"
	      "damaged files and symlinks, undecryptable names, directories\n"
	      "whose name IV is lost, orphan subject data — out of the tree into\n"
	      "STORE/quarantine/STAMP/, audits each move, and prints what was\n"
	      "lost.  Nothing is deleted.  It asks first unless --yes.\n"
	      "\n",
	      f);
	fputs(CLI_UNLOCK_HELP, f);
	fputs("  --json                one JSON object per problem, then a summary\n"
	      "  -q, --quiet           no summary line (problems are still listed)\n"
	      "  --repair              quarantine what cannot be read (see above)\n"
	      "  --dry-run             with --repair: list what would move, move "
	      "nothing\n"
	      "  --yes                 with --repair: do not ask\n"
	      "  -h, --help            show this help\n",
	      f);
}

/* Records one problem.  part: "header", "block", "name", "size", "symlink",
 * "directory", "subject" or "io"; block is used only for "block". */
static void report(struct fsck *fk, const char *plain, const char *backing,
		   const char *part, int64_t block, const char *reason)
{
	fk->problems++;
	if (fk->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "type", json_object_new_string("problem"));
		json_object_object_add(o, "path", json_object_new_string(plain));
		json_object_object_add(o, "backing", json_object_new_string(backing));
		json_object_object_add(o, "part", json_object_new_string(part));
		if (strcmp(part, "block") == 0)
			json_object_object_add(o, "block", json_object_new_int64(block));
		json_object_object_add(o, "reason", json_object_new_string(reason));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		return;
	}
	if (strcmp(part, "io") == 0)
		printf("error: %s: %s\n", plain, reason);
	else if (strcmp(part, "block") == 0)
		printf("damaged: %s: block %" PRId64 ": %s\n", plain, block, reason);
	else if (strcmp(part, "header") == 0)
		printf("damaged: %s: header: %s\n", plain, reason);
	else if (strcmp(part, "name") == 0)
		printf("damaged: %s: %s: %s\n", plain, reason, backing);
	else
		printf("damaged: %s: %s\n", plain, reason);
}

static const char *verify_reason(int err)
{
	return err == -EIO ? "authentication failed" : strerror(-err);
}

/* Remembers an entry for --repair (whatever the mode: the list is small
 * and the summary counts it). */
static void add_fix(struct fsck *fk, const char *plain, const char *backing,
		    const char *lost)
{
	struct fsck_fix *v = realloc(fk->fixes, (fk->nfixes + 1) * sizeof(*v));
	struct fsck_fix *x;

	if (v == NULL) {
		fk->oom = true;
		return;
	}
	fk->fixes = v;
	x = &v[fk->nfixes];
	memset(x, 0, sizeof(*x));
	x->plain = strdup(plain);
	x->backing = strdup(backing);
	x->lost = strdup(lost);
	if (x->plain == NULL || x->backing == NULL || x->lost == NULL) {
		free(x->plain);
		free(x->backing);
		free(x->lost);
		fk->oom = true;
		return;
	}
	if (fk->cur_subject) {
		x->in_subject = true;
		memcpy(x->hash, fk->cur_subject, CRYPT_HASH_BYTES);
	}
	fk->nfixes++;
}

static void on_bad_block(int64_t block, int err, void *arg)
{
	struct fsck *fk = arg;

	fk->cur_bad++;
	report(fk, fk->cur_plain, fk->cur_backing, block < 0 ? "header" : "block", block,
	       verify_reason(err));
}

static char *join(const char *dir, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", name) < 0)
		return NULL;
	return p;
}

static void check_file(struct fsck *fk, int dirfd, const char *entry, const char *plain,
		       const char *backing)
{
	char reason[96];
	struct stat sb;
	bool bad_size = false;
	int fd, err;

	fk->files++;
	fd = openat(dirfd, entry, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &sb) != 0) {
		report(fk, plain, backing, "io", 0, strerror(errno));
		goto out;
	}
	if (format_plain_size(sb.st_size) < 0) {
		snprintf(reason, sizeof(reason), "impossible size %lld bytes",
			 (long long)sb.st_size);
		report(fk, plain, backing, "size", 0, reason);
		bad_size = true;
	}
	fk->cur_plain = plain;
	fk->cur_backing = backing;
	fk->cur_bad = 0;
	err = format_file_verify(fd, fk->ring, on_bad_block, fk);
	/* A failure the callback did not itemise still has to be counted. */
	if (err == -EIO && fk->cur_bad == 0 && !bad_size)
		report(fk, plain, backing, "header", -1, "authentication failed");
	else if (err < 0 && err != -EIO)
		report(fk, plain, backing, "io", 0, strerror(-err));
	if (bad_size || err == -EIO || fk->cur_bad > 0) {
		off_t size = format_plain_size(sb.st_size);

		if (size >= 0)
			snprintf(reason, sizeof(reason),
				 "file of %lld bytes, %u unreadable part(s)",
				 (long long)size, fk->cur_bad ? fk->cur_bad : 1);
		else
			snprintf(reason, sizeof(reason), "file of unknown size");
		add_fix(fk, plain, backing, reason);
	}
out:
	if (fd >= 0)
		close(fd);
}

static void check_link(struct fsck *fk, int dirfd, const char *entry, const char *plain,
		       const char *backing)
{
	char stored[LINKTARGET_STORED_MAX], target[LINKTARGET_PLAIN_MAX + 1];
	ssize_t n;
	int err;

	fk->files++;
	n = readlinkat(dirfd, entry, stored, sizeof(stored));
	if (n < 0) {
		report(fk, plain, backing, "io", 0, strerror(errno));
		return;
	}
	if ((size_t)n >= sizeof(stored)) {
		report(fk, plain, backing, "symlink", 0, "symlink target too long");
		return;
	}
	stored[n] = '\0';
	err = linktarget_decrypt(fk->ring, stored, target, sizeof(target));
	crypt_wipe(target, sizeof(target));
	if (err < 0) {
		report(fk, plain, backing, "symlink", 0,
		       err == -EIO ? "symlink target does not decrypt" : strerror(-err));
		if (err == -EIO)
			add_fix(fk, plain, backing, "symlink target");
	}
}

/* Counts what lies below dirfd (which it closes): records (entries that
 * are not the store's own) and their ciphertext bytes. */
static void count_tree(int dirfd, uint64_t *files, uint64_t *bytes)
{
	struct dirent *de;
	struct stat sb;
	DIR *d = fdopendir(dirfd);

	if (d == NULL) {
		close(dirfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (names_reserved(de->d_name) ||
		    fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			int fd = openat(dirfd, de->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (fd >= 0)
				count_tree(fd, files, bytes);
		} else {
			(*files)++;
			if (S_ISREG(sb.st_mode))
				*bytes += (uint64_t)sb.st_size;
		}
	}
	closedir(d);
}

/* Ciphertext nobody can read any more: a shredded subject's, restored from
 * a copy, or a subject the catalogue never knew. */
static void report_orphan(struct fsck *fk, const char *plain, const char *backing,
			  uint64_t files, uint64_t bytes)
{
	fk->problems++;
	if (fk->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "type", json_object_new_string("problem"));
		json_object_object_add(o, "path", json_object_new_string(plain));
		json_object_object_add(o, "backing", json_object_new_string(backing));
		json_object_object_add(o, "part", json_object_new_string("orphan"));
		json_object_object_add(o, "files", json_object_new_uint64(files));
		json_object_object_add(o, "bytes", json_object_new_uint64(bytes));
		json_object_object_add(
			o, "reason",
			json_object_new_string(
				"unreadable data of a shredded or unknown subject"));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		return;
	}
	printf("orphan: %s: unreadable data of a shredded or unknown subject (%" PRIu64
	       " files, %" PRIu64 " bytes)\n",
	       backing, files, bytes);
}

static void check_dir(struct fsck *fk, int dirfd, const char *plain, const char *backing);

/* A `.S<hash>` entry of directory dirfd (plaintext path plain). */
static void check_subject(struct fsck *fk, int dirfd, const char *entry,
			  const uint8_t hash[CRYPT_HASH_BYTES], const char *plain,
			  const char *backing)
{
	const struct keyring *outer = fk->ring;
	struct subjects_info *info = calloc(1, sizeof(*info));
	struct keyring *ring = NULL;
	uint64_t files = 0, bytes = 0;
	char *cplain = NULL, label[64];
	struct stat sb;
	int err, fd = -1;

	if (info == NULL) {
		report(fk, plain, backing, "io", 0, strerror(ENOMEM));
		return;
	}
	fd = openat(dirfd, entry, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		if (fstatat(dirfd, entry, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		    !S_ISDIR(sb.st_mode))
			report(fk, plain, backing, "subject", 0,
			       "subject root is not a directory");
		else
			report(fk, plain, backing, "io", 0, strerror(errno));
		goto out;
	}
	err = subjects_get(fk->st, hash, info);
	if (err == -ENOENT || (err == 0 && (info->flags & SUBJECTS_SHREDDED))) {
		count_tree(fd, &files, &bytes);
		fd = -1;
		report_orphan(fk, plain, backing, files, bytes);
		snprintf(label, sizeof(label), "%" PRIu64 " unreadable files", files);
		add_fix(fk, plain, backing, label);
		goto out;
	}
	if (err == 0)
		err = subjects_open(fk->st, hash, &ring);
	if (err < 0) {
		/* No readable id: name it by the start of its hash. */
		char hex[2 * 6 + 1];

		crypt_hex(hex, hash, 6);
		snprintf(label, sizeof(label), "(subject %s...)", hex);
		cplain = join(plain, label);
		report(fk, cplain ? cplain : plain, backing, "subject", 0,
		       err == -EBADMSG ? "subject's catalogue row was changed outside "
					 "custodian; its files cannot be checked"
		       : err == -EIO ? "subject's key does not unwrap; its files cannot "
				       "be checked"
				     : strerror(-err));
		goto out;
	}
	{
		uint8_t(*seen)[CRYPT_HASH_BYTES] =
			realloc(fk->seen, (fk->nseen + 1) * sizeof(*seen));

		if (seen == NULL) {
			report(fk, plain, backing, "io", 0, strerror(ENOMEM));
			goto out;
		}
		fk->seen = seen;
		memcpy(fk->seen[fk->nseen++], hash, CRYPT_HASH_BYTES);
	}
	cplain = join(plain, info->id);
	if (cplain == NULL) {
		report(fk, plain, backing, "io", 0, strerror(ENOMEM));
		goto out;
	}
	fk->ring = ring;
	fk->cur_subject = info->hash;
	check_dir(fk, fd, cplain, backing);
	fd = -1;
	fk->cur_subject = NULL;
	fk->ring = outer;
out:
	if (fd >= 0)
		close(fd);
	keys_ring_free(ring);
	crypt_wipe(info, sizeof(*info));
	free(info);
	free(cplain);
}

/* Checks directory dirfd (which it closes) and everything below it. */
static void check_dir(struct fsck *fk, int dirfd, const char *plain, const char *backing)
{
	uint8_t hash[CRYPT_HASH_BYTES];
	uint8_t iv[CRYPT_DIRIV_BYTES];
	char name[NAMES_PLAIN_MAX + 1];
	char *cplain = NULL, *cbacking = NULL;
	struct dirent *de;
	struct stat sb;
	DIR *d = NULL;
	int err, fd;

	fk->dirs++;
	err = names_diriv_load(dirfd, iv);
	if (err < 0) {
		/* Without the IV no name below can be decrypted: report once. */
		report(fk, plain, backing, "directory", 0,
		       err == -EIO ? "directory name IV missing or damaged"
				   : strerror(-err));
		/* The tree's root stays (the mount needs it), and so does a
		 * subject's root (its catalogue row expects it there). */
		const char *base = strrchr(backing, '/');

		if (err == -EIO && fk->dirs > 1 && base &&
		    strncmp(base + 1, SUBJECTS_BACKING_PREFIX,
			    strlen(SUBJECTS_BACKING_PREFIX)) != 0)
			add_fix(fk, plain, backing, "every name in the directory");
		close(dirfd);
		return;
	}
	d = fdopendir(dirfd);
	if (d == NULL) {
		report(fk, plain, backing, "io", 0, strerror(errno));
		close(dirfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		free(cplain);
		free(cbacking);
		cplain = NULL;
		cbacking = join(backing, de->d_name);
		if (cbacking == NULL)
			goto nomem;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (subjects_parse_backing_name(de->d_name, hash) == 0) {
			check_subject(fk, dirfd, de->d_name, hash, plain, cbacking);
			continue;
		}
		err = names_decrypt(fk->ring, iv, dirfd, de->d_name, name);
		if (err == -ENOENT)
			continue; /* the store's own entries */
		if (err < 0) {
			report(fk, plain, cbacking, "name", 0,
			       err == -EIO ? "undecryptable name" : strerror(-err));
			if (err == -EIO)
				add_fix(fk, plain, cbacking,
					"an entry in this directory whose name is lost");
			continue;
		}
		cplain = join(plain, name);
		if (cplain == NULL)
			goto nomem;
		if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			report(fk, cplain, cbacking, "io", 0, strerror(errno));
			continue;
		}
		if (S_ISDIR(sb.st_mode)) {
			fd = openat(dirfd, de->d_name,
				    O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				report(fk, cplain, cbacking, "io", 0, strerror(errno));
			else
				check_dir(fk, fd, cplain, cbacking);
		} else if (S_ISREG(sb.st_mode)) {
			check_file(fk, dirfd, de->d_name, cplain, cbacking);
		} else if (S_ISLNK(sb.st_mode)) {
			check_link(fk, dirfd, de->d_name, cplain, cbacking);
		} else {
			fk->files++; /* fifos, sockets, devices: only a name */
		}
	}
	goto out;
nomem:
	report(fk, plain, backing, "io", 0, strerror(ENOMEM));
out:
	crypt_wipe(name, sizeof(name));
	free(cplain);
	free(cbacking);
	closedir(d);
}

/* subjects_list callback: a live subject whose root the walk never met. */
static int check_missing(const struct subjects_info *info,
			 const struct subjects_usage *usage, void *arg)
{
	struct fsck *fk = arg;
	char *p;

	(void)usage;
	if (info->flags & SUBJECTS_SHREDDED)
		return 0;
	for (size_t i = 0; i < fk->nseen; i++)
		if (memcmp(fk->seen[i], info->hash, CRYPT_HASH_BYTES) == 0)
			return 0;
	if (asprintf(&p, "%s%s%s", info->parent, strcmp(info->parent, "/") ? "/" : "",
		     info->id) < 0)
		return -ENOMEM;
	report(fk, p, "-", "subject", 0, "subject directory missing from the tree");
	free(p);
	return 0;
}

/* Moves one entry (and a long name's sidecar) into qfd as "N.BASENAME";
 * 0 or -errno. */
static int quarantine_one(int qfd, size_t n, const struct fsck_fix *x, char *as,
			  size_t cap)
{
	const char *base = strrchr(x->backing, '/');
	char *side = NULL;
	int ret = 0;

	if (base == NULL)
		return -EINVAL;
	base++;
	snprintf(as, cap, "%zu.%s", n, base);
	if (renameat(AT_FDCWD, x->backing, qfd, as) != 0)
		return -errno;
	if (strncmp(base, NAMES_LONG_PREFIX, strlen(NAMES_LONG_PREFIX)) == 0) {
		char sas[NAMES_BACKING_MAX + 32];

		if (asprintf(&side, "%.*s%s%s", (int)(base - x->backing), x->backing,
			     NAMES_SIDECAR_PREFIX, base + strlen(NAMES_LONG_PREFIX)) < 0)
			return -ENOMEM;
		snprintf(sas, sizeof(sas), "%zu.%s%s", n, NAMES_SIDECAR_PREFIX,
			 base + strlen(NAMES_LONG_PREFIX));
		if (renameat(AT_FDCWD, side, qfd, sas) != 0 && errno != ENOENT)
			ret = -errno;
		free(side);
	}
	return ret;
}

/* Records one move in the audit log, the path sealed under the right
 * keyring (the subject's, reopened, for entries inside one). */
static int audit_fix(struct store *st, struct audit *a, const struct audit_who *who,
		     const struct fsck_fix *x, int outcome, const char *detail)
{
	struct audit_event ev = {0};
	struct keyring *ring = NULL;
	int ret;

	if (x->in_subject && subjects_open(st, x->hash, &ring) < 0)
		ring = NULL; /* sealed under the volume key instead: still recorded */
	ev.op = AUDIT_OP_REPAIR;
	ev.outcome = outcome < 0 ? -outcome : outcome;
	ev.who = who;
	ev.subject = x->in_subject ? x->hash : NULL;
	ev.ring = ring;
	ev.path = x->plain;
	ev.detail = detail;
	ret = audit_append(a, &ev, NULL);
	keys_ring_free(ring);
	return ret;
}

/* --repair: quarantines everything in fk->fixes.  CLI_OK if every entry
 * moved, else CLI_FAIL. */
static int repair(struct fsck *fk, struct store *st, bool dry_run, bool yes)
{
	char stamp[32], qdir[64], as[NAMES_BACKING_MAX + 32],
		detail[CATALOG_AUDIT_DETAIL_MAX];
	struct audit *a = NULL;
	struct audit_who who;
	int sfd = -1, qfd = -1, err, ret = CLI_FAIL;
	size_t moved = 0;
	time_t t = time(NULL);
	struct tm tm;

	if (fk->nfixes == 0) {
		printf("nothing to quarantine\n");
		return fk->problems == 0 ? CLI_OK : CLI_FAIL;
	}
	for (size_t i = 0; i < fk->nfixes; i++)
		printf("%s: %s (lost: %s)\n",
		       dry_run ? "would quarantine" : "to quarantine", fk->fixes[i].plain,
		       fk->fixes[i].lost);
	if (dry_run) {
		printf("dry run: nothing moved\n");
		return CLI_FAIL;
	}
	if (!yes && !cli_confirm("Move these out of the tree into the quarantine?")) {
		printf("nothing moved\n");
		return CLI_FAIL;
	}
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	snprintf(qdir, sizeof(qdir), "%s/%s", FSCK_QUARANTINE_DIR, stamp);
	err = audit_open(st, NULL, &a);
	if (err < 0) {
		cli_err(VERB, "%s: cannot open the audit log: %s", st->path,
			err == -EBUSY ? "it is in use (mounted?)" : strerror(-err));
		goto out;
	}
	audit_who_self(&who);
	sfd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sfd < 0 ||
	    (mkdirat(sfd, FSCK_QUARANTINE_DIR, 0700) != 0 && errno != EEXIST) ||
	    (mkdirat(sfd, qdir, 0700) != 0 && errno != EEXIST) ||
	    (qfd = openat(sfd, qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		cli_err(VERB, "%s/%s: %s", st->path, qdir, strerror(errno));
		goto out;
	}
	for (size_t i = 0; i < fk->nfixes; i++) {
		const struct fsck_fix *x = &fk->fixes[i];

		err = quarantine_one(qfd, i, x, as, sizeof(as));
		if (err == 0) {
			snprintf(detail, sizeof(detail),
				 "quarantined as %s/%zu.* (lost: %.96s)", qdir, i,
				 x->lost);
			moved++;
			printf("quarantined: %s -> %s/%s\n", x->plain, qdir, as);
		} else {
			snprintf(detail, sizeof(detail), "not quarantined: %s",
				 strerror(-err));
			cli_err(VERB, "%s: %s", x->plain, strerror(-err));
		}
		/* The move happened (or not) either way: record what did. */
		if (audit_fix(st, a, &who, x, err, detail) < 0) {
			cli_err(VERB, "%s: the audit log could not record the repair",
				x->plain);
			goto out;
		}
	}
	printf("%zu of %zu entries moved to %s/%s; run fsck again to check\n", moved,
	       fk->nfixes, st->path, qdir);
	ret = moved == fk->nfixes ? CLI_OK : CLI_FAIL;
out:
	if (qfd >= 0)
		close(qfd);
	if (sfd >= 0)
		close(sfd);
	audit_close(a);
	return ret;
}

int cmd_fsck(int argc, char **argv)
{
	struct cli_unlock how = {0};
	struct fsck fk = {0};
	struct store *st = NULL;
	bool quiet = false, do_repair = false, dry_run = false, yes = false;
	char *root = NULL;
	const char *path;
	int c, fd, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hq", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_JSON:
			fk.json = true;
			break;
		case 'q':
		case OPT_QUIET:
			quiet = true;
			break;
		case OPT_REPAIR:
			do_repair = true;
			break;
		case OPT_DRY_RUN:
			dry_run = true;
			break;
		case OPT_YES:
			yes = true;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 1, "no STORE given", usage))
		return CLI_USAGE;
	path = argv[optind];
	if ((dry_run || yes) && !do_repair) {
		cli_err(VERB, "--dry-run and --yes go with --repair");
		usage(stderr);
		return CLI_USAGE;
	}
	if (do_repair && fk.json) {
		cli_err(VERB, "--repair does not combine with --json");
		return CLI_USAGE;
	}
	if (do_repair && cli_store_mounted(path)) {
		cli_err(VERB, "%s is mounted; unmount it before --repair", path);
		goto out;
	}
	if (do_repair && !dry_run && !yes && !isatty(STDIN_FILENO)) {
		cli_err(VERB, "not a terminal: nothing repaired (use --yes to repair "
			      "without confirmation)");
		goto out;
	}

	if (cli_open_unlocked(VERB, path, !do_repair || dry_run, &how, &st) < 0)
		goto out;
	fk.ring = keys_volume(st->mk);
	if (asprintf(&root, "%s/%s", path, STORE_TREE_DIR) < 0) {
		root = NULL;
		cli_err(VERB, "%s", strerror(ENOMEM));
		goto out;
	}
	fd = dup(st->tree_fd);
	if (fd < 0) {
		cli_err(VERB, "%s: %s", path, strerror(errno));
		goto out;
	}
	fk.st = st;
	check_dir(&fk, fd, "/", root);
	c = subjects_list(st, false, check_missing, &fk);
	if (c < 0)
		report(&fk, "/", root, "subject", 0,
		       c == -EBADMSG
			       ? "a subject's catalogue row was changed outside custodian"
			       : store_strerror(c));

	if (fk.json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "type", json_object_new_string("summary"));
		json_object_object_add(o, "files", json_object_new_uint64(fk.files));
		json_object_object_add(o, "directories", json_object_new_uint64(fk.dirs));
		json_object_object_add(o, "problems",
				       json_object_new_uint64(fk.problems));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else if (!quiet) {
		printf("%" PRIu64 " files, %" PRIu64 " directories checked, %" PRIu64
		       " problems\n",
		       fk.files, fk.dirs, fk.problems);
	}
	ret = fk.problems == 0 ? CLI_OK : CLI_FAIL;
	if (fk.oom) {
		cli_err(VERB, "out of memory: the repair list is incomplete");
		ret = CLI_FAIL;
	} else if (do_repair) {
		ret = repair(&fk, st, dry_run, yes);
	}
out:
	for (size_t i = 0; i < fk.nfixes; i++) {
		free(fk.fixes[i].backing);
		crypt_wipe(fk.fixes[i].plain, strlen(fk.fixes[i].plain));
		free(fk.fixes[i].plain);
		free(fk.fixes[i].lost);
	}
	free(fk.fixes);
	free(fk.seen);
	free(root);
	store_close(st);
	return ret;
}
