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
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"
#include "format.h"
#include "linktarget.h"
#include "names.h"
#include "subjects.h"

#define VERB "fsck"

enum {
	OPT_JSON = CLI_OPT_FIRST_FREE,
	OPT_QUIET,
	OPT_HELP,
};

static const struct option longopts[] = {
	CLI_UNLOCK_LONGOPTS,
	{"json", no_argument, NULL, OPT_JSON},
	{"quiet", no_argument, NULL, OPT_QUIET},
	{"help", no_argument, NULL, OPT_HELP},
	{NULL, 0, NULL, 0},
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
};

static void usage(FILE *f)
{
	fputs("usage: custodian fsck STORE [unlock options] [--json] [--quiet]\n"
	      "\n"
	      "Checks every directory, name, file block and symlink of STORE\n"
	      "and lists what fails to decrypt or authenticate, by plaintext\n"
	      "path.  Never modifies the store.  Data subjects are checked with\n"
	      "their own keys; the ciphertext of a shredded or unknown subject\n"
	      "(e.g. restored from a copy) is listed as orphan data.  Exit\n"
	      "status 0 if clean, 1 if anything is damaged.\n"
	      "\n",
	      f);
	fputs(CLI_UNLOCK_HELP, f);
	fputs("  --json                one JSON object per problem, then a summary\n"
	      "  -q, --quiet           no summary line (problems are still listed)\n"
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
	char reason[64];
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
	if (err < 0)
		report(fk, plain, backing, "symlink", 0,
		       err == -EIO ? "symlink target does not decrypt" : strerror(-err));
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
	check_dir(fk, fd, cplain, backing);
	fd = -1;
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

int cmd_fsck(int argc, char **argv)
{
	struct cli_unlock how = {0};
	struct fsck fk = {0};
	struct store *st = NULL;
	bool quiet = false;
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
		case 'h':
		case OPT_HELP:
			usage(stdout);
			return CLI_OK;
		case ':':
			cli_err(VERB, "%s needs an argument", argv[optind - 1]);
			usage(stderr);
			return CLI_USAGE;
		default:
			cli_err(VERB, "unknown option %s", argv[optind - 1]);
			usage(stderr);
			return CLI_USAGE;
		}
	}
	if (argc - optind != 1) {
		cli_err(VERB,
			argc - optind == 0 ? "no STORE given" : "too many arguments");
		usage(stderr);
		return CLI_USAGE;
	}
	path = argv[optind];

	if (cli_open_unlocked(VERB, path, true, &how, &st) < 0)
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
out:
	free(fk.seen);
	free(root);
	store_close(st);
	return ret;
}
