/*
 * cmd_status.c — `custodian status STORE`: what a store is, without keys.
 *
 * Owns the facts an administrator can learn from a locked store: its id,
 * format and age, its key slots by kind, whether a daemon has it mounted
 * (from /proc/self/mounts: the daemon mounts with fsname = the store's
 * realpath and subtype custodian), and how much ciphertext and catalogue
 * it holds.  Nothing here unlocks or writes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "cli.h"

#define VERB "status"

enum {
	OPT_JSON = CLI_OPT_FIRST_FREE,
};

static const struct option longopts[] = {
	{"json", no_argument, NULL, OPT_JSON},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0},
};

/* What the walk of STORE/tree counted. */
struct tree_count {
	uint64_t files; /* regular ciphertext files */
	uint64_t bytes; /* their sizes, in bytes */
	uint64_t dirs;  /* directories below tree/ */
	int err;        /* first error met (-errno), 0 if none */
};

/* Slot counts by kind, in the order they are printed. */
struct slot_count {
	const char *kind; /* KEYS_SLOT_* or "other" */
	unsigned n;       /* how many */
};

static void usage(FILE *f)
{
	fputs("usage: custodian status STORE [--json]\n"
	      "\n"
	      "Shows a store's path, id, format, creation time, key slots,\n"
	      "whether it is mounted and where, and the size of its ciphertext\n"
	      "and catalogue.  Needs no passphrase.\n"
	      "\n"
	      "  --json      print one JSON object\n"
	      "  -h, --help  show this help\n",
	      f);
}

/* Counts regular files and bytes under dirfd (which it closes); entries
 * starting with '.' are the store's own (IVs, sidecars) and not counted. */
static void count_tree(int dirfd, struct tree_count *tc)
{
	struct dirent *de;
	struct stat sb;
	DIR *d = fdopendir(dirfd);

	if (d == NULL) {
		if (tc->err == 0)
			tc->err = -errno;
		close(dirfd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
			if (tc->err == 0)
				tc->err = -errno;
			continue;
		}
		if (S_ISREG(sb.st_mode)) {
			tc->files++;
			tc->bytes += (uint64_t)sb.st_size;
		} else if (S_ISDIR(sb.st_mode)) {
			int fd = openat(dirfd, de->d_name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			tc->dirs++;
			if (fd < 0) {
				if (tc->err == 0)
					tc->err = -errno;
				continue;
			}
			count_tree(fd, tc);
		}
	}
	closedir(d);
}

/* Finds a custodian mount of the store whose realpath is `real`; fills
 * mountpoint (malloc'd) or leaves it NULL. */
static void find_mount(const char *real, char **mountpoint)
{
	char *line = NULL, *save, *src, *dst, *type;
	size_t cap = 0;
	FILE *f;

	*mountpoint = NULL;
	f = fopen("/proc/self/mounts", "re");
	if (f == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		src = strtok_r(line, " \t\n", &save);
		dst = strtok_r(NULL, " \t\n", &save);
		type = strtok_r(NULL, " \t\n", &save);
		if (src == NULL || dst == NULL || type == NULL)
			continue;
		/* fuse.custodian from the daemon; fuse.custodianfs via fstab. */
		if (strncmp(type, "fuse.custodian", 14) != 0)
			continue;
		cli_mounts_unescape(src);
		if (strcmp(src, real) != 0)
			continue;
		cli_mounts_unescape(dst);
		free(*mountpoint);
		*mountpoint = strdup(dst); /* the last mount is the visible one */
	}
	free(line);
	fclose(f);
}

/* A meta value as a decimal number (store.c writes them as text). */
static int meta_number(struct catalog *cat, const char *key, int64_t *out)
{
	char buf[32], *end;
	size_t len = 0;
	long long v;
	int err;

	err = catalog_meta_get(cat, key, buf, sizeof(buf) - 1, &len);
	if (err < 0)
		return err;
	buf[len] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (len == 0 || *end != '\0' || errno != 0)
		return -EIO;
	*out = v;
	return 0;
}

static void count_slots(const struct catalog_slot *slots, size_t n,
			struct slot_count counts[4])
{
	counts[0] = (struct slot_count){KEYS_SLOT_PASSPHRASE, 0};
	counts[1] = (struct slot_count){KEYS_SLOT_RECOVERY, 0};
	counts[2] = (struct slot_count){KEYS_SLOT_KEYFILE, 0};
	counts[3] = (struct slot_count){"other", 0};
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;

		while (k < 3 && strcmp(slots[i].kind, counts[k].kind) != 0)
			k++;
		counts[k].n++;
	}
}

int cmd_status(int argc, char **argv)
{
	char id[2 * STORE_ID_BYTES + 1], created[CLI_TIME_MAX], dbpath[PATH_MAX + 32];
	char *real = NULL, *mountpoint = NULL;
	struct catalog_slot *slots = NULL;
	struct slot_count counts[4];
	struct tree_count tc = {0};
	int64_t format = 0, created_us = -1;
	uint64_t db_bytes = 0;
	struct store *st = NULL;
	const char *path;
	bool json = false;
	struct stat sb;
	size_t nslots = 0;
	int c, fd, err, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_JSON:
			json = true;
			break;
		default:
			return cli_getopt_fail(VERB, c, argv, usage);
		}
	}
	if (cli_operands(VERB, argc, 1, "no STORE given", usage))
		return CLI_USAGE;
	path = argv[optind];

	err = store_open(path, true, &st);
	if (err < 0) {
		cli_err(VERB, "%s: %s", path, store_strerror(err));
		goto out;
	}
	real = realpath(path, NULL);
	if (real == NULL) {
		cli_err(VERB, "%s: %s", path, strerror(errno));
		goto out;
	}
	crypt_hex(id, st->id, STORE_ID_BYTES);
	err = meta_number(st->cat, "format", &format);
	if (err < 0) {
		cli_err(VERB, "%s: reading the format: %s", path, store_strerror(err));
		goto out;
	}
	if (meta_number(st->cat, "created_us", &created_us) < 0)
		created_us = -1;
	cli_time_iso(created_us, created);
	err = catalog_slot_list(st->cat, &slots, &nslots);
	if (err < 0) {
		cli_err(VERB, "%s: listing key slots: %s", path, store_strerror(err));
		goto out;
	}
	count_slots(slots, nslots, counts);
	find_mount(real, &mountpoint);

	fd = dup(st->tree_fd);
	if (fd < 0) {
		cli_err(VERB, "%s: %s", path, strerror(errno));
		goto out;
	}
	count_tree(fd, &tc);
	if (tc.err < 0) {
		cli_err(VERB, "%s: reading tree/: %s", path, strerror(-tc.err));
		goto out;
	}
	for (size_t i = 0; i < 2; i++) {
		snprintf(dbpath, sizeof(dbpath), "%s/%s%s", real, CATALOG_FILE,
			 i == 0 ? "" : "-wal");
		if (stat(dbpath, &sb) == 0)
			db_bytes += (uint64_t)sb.st_size;
	}

	if (json) {
		json_object *o = json_object_new_object(), *s = json_object_new_object();

		json_object_object_add(o, "store", json_object_new_string(path));
		json_object_object_add(o, "path", json_object_new_string(real));
		json_object_object_add(o, "id", json_object_new_string(id));
		json_object_object_add(o, "format", json_object_new_int64(format));
		json_object_object_add(o, "created",
				       created_us >= 0 ? json_object_new_string(created)
						       : NULL);
		for (size_t k = 0; k < 4; k++)
			if (k < 3 || counts[k].n > 0)
				json_object_object_add(s, counts[k].kind,
						       json_object_new_int(counts[k].n));
		json_object_object_add(o, "slots", s);
		json_object_object_add(o, "mounted",
				       json_object_new_boolean(mountpoint != NULL));
		json_object_object_add(o, "mountpoint",
				       mountpoint ? json_object_new_string(mountpoint)
						  : NULL);
		json_object_object_add(o, "files", json_object_new_uint64(tc.files));
		json_object_object_add(o, "bytes", json_object_new_uint64(tc.bytes));
		json_object_object_add(o, "directories", json_object_new_uint64(tc.dirs));
		json_object_object_add(o, "database_bytes",
				       json_object_new_uint64(db_bytes));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
	} else {
		printf("store:       %s\n", real);
		printf("id:          %s\n", id);
		printf("format:      %" PRId64 "\n", format);
		printf("created:     %s\n", created);
		printf("key slots:   ");
		for (size_t k = 0, shown = 0; k < 4; k++) {
			if (counts[k].n == 0)
				continue;
			printf("%s%u %s", shown++ ? ", " : "", counts[k].n,
			       counts[k].kind);
		}
		printf("%s\n", nslots == 0 ? "none" : "");
		if (mountpoint != NULL)
			printf("mounted:     yes, on %s\n", mountpoint);
		else
			printf("mounted:     no\n");
		printf("files:       %" PRIu64 " (%" PRIu64 " bytes of ciphertext)\n",
		       tc.files, tc.bytes);
		printf("directories: %" PRIu64 "\n", tc.dirs);
		printf("database:    %" PRIu64 " bytes\n", db_bytes);
	}
	ret = CLI_OK;
out:
	free(slots);
	free(mountpoint);
	free(real);
	store_close(st);
	return ret;
}
