/*
 * store.c — a custodian store on disk: STORE/custodian.db + STORE/tree/.
 *
 * Owns the layout of a store directory and the steps that create, open and
 * unlock one, so the daemon and the admin tool share one implementation.
 * A directory is a store when it holds CATALOG_FILE; creation makes tree/
 * (with its root name IV) first and the catalogue last, and removes what it
 * made if any step fails, so a failed `init` leaves the directory as it was.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "names.h"
#include "sys.h"

/* Files SQLite may leave beside the catalogue. */
static const char *const catalog_files[] = {
	CATALOG_FILE,
	CATALOG_FILE "-wal",
	CATALOG_FILE "-shm",
	CATALOG_FILE "-journal",
};

/* -EEXIST if dirfd holds a store, -ENOTEMPTY if it holds anything else. */
static int store_check_empty(int dirfd)
{
	struct dirent *de;
	DIR *d;
	int fd, ret = 0;

	if (faccessat(dirfd, CATALOG_FILE, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			ret = -ENOTEMPTY;
			break;
		}
	}
	closedir(d);
	return ret;
}

static char *path_join(const char *dir, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

/* Writes meta, the passphrase slot and the recovery slot in one
 * transaction. */
static int store_fill_catalog(struct catalog *cat, const struct keys_master *mk,
			      const struct secret *pass, const struct keys_kdf *kdf,
			      char recovery[KEYS_RECOVERY_TEXT_MAX])
{
	uint8_t id[STORE_ID_BYTES];
	char num[32];
	int ret;

	ret = catalog_begin(cat);
	if (ret < 0)
		return ret;
	crypt_random(id, sizeof(id));
	ret = catalog_meta_put(cat, "store_id", id, sizeof(id));
	if (ret < 0)
		goto out;
	snprintf(num, sizeof(num), "%d", STORE_FORMAT);
	ret = catalog_meta_put(cat, "format", num, strlen(num));
	if (ret < 0)
		goto out;
	snprintf(num, sizeof(num), "%" PRId64, clock_now_us());
	ret = catalog_meta_put(cat, "created_us", num, strlen(num));
	if (ret < 0)
		goto out;
	ret = keys_slot_add_passphrase(cat, mk, pass->buf, pass->len, kdf, NULL);
	if (ret < 0)
		goto out;
	ret = keys_slot_add_recovery(cat, mk, recovery, NULL);
	if (ret < 0)
		goto out;
	ret = catalog_commit(cat);
out:
	if (ret < 0)
		catalog_rollback(cat);
	return ret;
}

/* Undoes a failed store_create: only what it made is removed. */
static void store_create_undo(const char *path, int dirfd, bool made_dir)
{
	int tfd;

	for (size_t i = 0; i < ARRAY_LEN(catalog_files); i++)
		unlinkat(dirfd, catalog_files[i], 0);
	tfd = openat(dirfd, STORE_TREE_DIR, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (tfd >= 0) {
		unlinkat(tfd, NAMES_DIRIV_FILE, 0);
		close(tfd);
	}
	unlinkat(dirfd, STORE_TREE_DIR, AT_REMOVEDIR);
	if (made_dir)
		rmdir(path);
}

int store_create(const char *path, const struct secret *pass, const struct keys_kdf *kdf,
		 char recovery[KEYS_RECOVERY_TEXT_MAX])
{
	char local_recovery[KEYS_RECOVERY_TEXT_MAX];
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct keys_master *mk = NULL;
	struct catalog *cat = NULL;
	char *dbpath = NULL;
	bool made_dir = false, made_any = false;
	int dirfd = -1, tree_fd = -1;
	int ret;

	if (path == NULL || pass == NULL || pass->buf == NULL || pass->len == 0)
		return -EINVAL;
	if (recovery == NULL)
		recovery = local_recovery;
	if (mkdir(path, 0700) == 0)
		made_dir = true;
	else if (errno != EEXIST)
		return -errno;
	dirfd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = -errno;
		goto out;
	}
	if (!made_dir) {
		ret = store_check_empty(dirfd);
		if (ret < 0)
			goto out;
	}
	made_any = true;

	/* STORE is private (a directory that existed is made so); the tree
	 * inside is the mount's root and shows 0755, as a new file system's
	 * root does: a root not everybody may search would make every path
	 * walk through it a LOOKUP (docs/daemon.md, "Permissions"). */
	if (fchmod(dirfd, 0700) != 0 || mkdirat(dirfd, STORE_TREE_DIR, 0700) != 0) {
		ret = -errno;
		goto out;
	}
	tree_fd =
		sys.openat(dirfd, STORE_TREE_DIR, O_DIRECTORY | O_RDONLY | O_CLOEXEC, 0);
	if (tree_fd < 0 || fchmod(tree_fd, 0755) != 0) {
		ret = -errno;
		goto out;
	}
	ret = names_diriv_create(tree_fd, iv);
	if (ret < 0)
		goto out;
	if (sys.fsync(tree_fd) != 0) {
		ret = -errno;
		goto out;
	}

	dbpath = path_join(path, CATALOG_FILE);
	if (dbpath == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	ret = catalog_open(dbpath, CATALOG_CREATE, &cat);
	if (ret < 0)
		goto out;
	ret = keys_master_generate(&mk);
	if (ret < 0)
		goto out;
	ret = store_fill_catalog(cat, mk, pass, kdf, recovery);
	if (ret < 0)
		goto out;
	if (sys.fsync(dirfd) != 0)
		ret = -errno;
out:
	keys_master_free(mk);
	catalog_close(cat);
	free(dbpath);
	if (tree_fd >= 0)
		close(tree_fd);
	if (ret < 0) {
		if (made_any)
			store_create_undo(path, dirfd, made_dir);
		crypt_wipe(recovery, KEYS_RECOVERY_TEXT_MAX);
	} else if (recovery == local_recovery) {
		crypt_wipe(local_recovery, sizeof(local_recovery));
	}
	if (dirfd >= 0)
		close(dirfd);
	return ret;
}

/* Checks meta "store_id" and "format" and fills st->id. */
static int store_check_meta(struct store *st)
{
	char fmt[16];
	size_t len = 0;
	char *end;
	long v;
	int ret;

	ret = catalog_meta_get(st->cat, "store_id", st->id, sizeof(st->id), &len);
	if (ret == -ENOENT || ret == -ENOSPC || (ret == 0 && len != sizeof(st->id)))
		return -EIO;
	if (ret < 0)
		return ret;
	ret = catalog_meta_get(st->cat, "format", fmt, sizeof(fmt) - 1, &len);
	if (ret == -ENOENT || ret == -ENOSPC)
		return -EIO;
	if (ret < 0)
		return ret;
	fmt[len] = '\0';
	errno = 0;
	v = strtol(fmt, &end, 10);
	if (len == 0 || *end != '\0' || errno != 0 || v < 1)
		return -EIO;
	if (v > STORE_FORMAT)
		return -EPROTO;
	return 0;
}

int store_open(const char *path, bool readonly, struct store **out)
{
	struct store *st = NULL;
	char *dbpath = NULL;
	int dirfd = -1;
	int ret;

	*out = NULL;
	if (path == NULL)
		return -EINVAL;
	dirfd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = errno == ENOTDIR ? -ENOENT : -errno;
		goto out;
	}
	if (faccessat(dirfd, CATALOG_FILE, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
		ret = errno == ENOENT ? -ENOENT : -errno;
		goto out;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	st->tree_fd = -1;
	st->readonly = readonly;
	st->path = strdup(path);
	dbpath = path_join(path, CATALOG_FILE);
	if (st->path == NULL || dbpath == NULL) {
		ret = -ENOMEM;
		goto out;
	}
	ret = catalog_open(dbpath, readonly ? CATALOG_RDONLY : 0, &st->cat);
	if (ret < 0)
		goto out;
	ret = store_check_meta(st);
	if (ret < 0)
		goto out;
	st->tree_fd = openat(dirfd, STORE_TREE_DIR, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (st->tree_fd < 0) {
		/* A catalogue without its tree is a damaged store. */
		ret = errno == ENOENT || errno == ENOTDIR ? -EIO : -errno;
		goto out;
	}
out:
	free(dbpath);
	if (dirfd >= 0)
		close(dirfd);
	if (ret < 0)
		store_close(st);
	else
		*out = st;
	return ret;
}

/* Installs a freshly unlocked master key, replacing any earlier one. */
static int store_set_master(struct store *st, int ret, struct keys_master *mk)
{
	if (ret < 0)
		return ret;
	keys_master_free(st->mk);
	st->mk = mk;
	return 0;
}

int store_unlock_passphrase(struct store *st, const struct secret *pass)
{
	struct keys_master *mk = NULL;
	int ret;

	if (st == NULL || pass == NULL)
		return -EINVAL;
	ret = keys_unlock_passphrase(st->cat, pass->buf, pass->len, &mk);
	return store_set_master(st, ret, mk);
}

int store_unlock_recovery(struct store *st, const struct secret *text)
{
	struct keys_master *mk = NULL;
	int ret;

	if (st == NULL || text == NULL)
		return -EINVAL;
	ret = keys_unlock_recovery(st->cat, text->buf, &mk);
	return store_set_master(st, ret, mk);
}

int store_unlock_keyfile(struct store *st, const struct secret *data)
{
	struct keys_master *mk = NULL;
	int ret;

	if (st == NULL || data == NULL)
		return -EINVAL;
	ret = keys_unlock_keyfile(st->cat, (const uint8_t *)data->buf, data->len, &mk);
	return store_set_master(st, ret, mk);
}

void store_close(struct store *st)
{
	if (st == NULL)
		return;
	keys_master_free(st->mk);
	catalog_close(st->cat);
	if (st->tree_fd >= 0)
		close(st->tree_fd);
	free(st->path);
	free(st);
}

const char *store_strerror(int err)
{
	switch (err) {
	case -EACCES:
		return "wrong passphrase or key";
	case -ENOENT:
		return "not a custodian store";
	case -EEXIST:
		return "a store already exists there";
	case -ENOTEMPTY:
		return "directory is not empty";
	case -EIO:
		return "store is damaged";
	case -EPROTO:
		return "store was made by a newer custodian";
	default:
		return strerror(err < 0 ? -err : err);
	}
}
