/*
 * cmd_backup.c — `custodian backup STORE --out DIR` and `custodian restore
 * STORE --from DIR`: backups of the catalogue that crypto-shredding still
 * reaches (docs/subjects.md, "Backups"; docs/admin.md, "Backups").
 *
 * Owns the backup directory's layout (custodian.db, a consistent copy of
 * the catalogue; ledger.txt, the erasure ledger of that copy; manifest.json,
 * written last, with the store id, time, audit chain head, ledger count and
 * the SHA-256 of the copy) and the restore procedure: checks (unmounted,
 * same store, undamaged copy), the swap of catalogues with the old one kept
 * as custodian.db.before-restore until everything succeeded, what must not
 * roll back with the catalogue (key slots, directory holds, policy versions,
 * the state of subjects both catalogues know, the compliance clock: carried
 * over from the catalogue being replaced), and the
 * re-application of the current erasure ledger with subjects_ledger_apply,
 * so every subject erased since the backup is erased again.
 *
 * The ciphertext tree/ is not part of a backup (unless --with-tree): it is
 * unreadable without the catalogue and is backed up with rsync/snapshots.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "audit.h"
#include "cli.h"
#include "clock.h"
#include "subjects.h"

#define BACKUP_MANIFEST "manifest.json"
#define BACKUP_LEDGER "ledger.txt"
#define BACKUP_FORMAT "custodian-backup-1"
#define RESTORE_TMP CATALOG_FILE ".restoring"
#define RESTORE_OLD CATALOG_FILE ".before-restore"
#define RESTORE_OLD_WAL CATALOG_FILE ".before-restore-wal"
#define RESTORE_OLD_SHM CATALOG_FILE ".before-restore-shm"
#define RESTORE_OLD_JOURNAL AUDIT_JOURNAL_FILE ".before-restore"
#define AUDIT_OP_RESTORE "restore"

extern char **environ;

enum {
	OPT_OUT = CLI_OPT_FIRST_FREE,
	OPT_FROM,
	OPT_LEDGER,
	OPT_WITH_TREE,
	OPT_JSON,
	OPT_YES,
};

/* What a backup's manifest says. */
struct manifest {
	uint8_t store_id[STORE_ID_BYTES];        /* the store it was taken of */
	int64_t created_us;                      /* when */
	uint64_t audit_seq;                      /* chain head of the copy */
	uint64_t ledger_entries;                 /* erasures in the copy */
	uint64_t catalog_bytes;                  /* size of custodian.db */
	uint8_t catalog_sha[CRYPT_SHA256_BYTES]; /* SHA-256 of custodian.db */
};

/* malloc'd "a/b"; NULL on ENOMEM. */
static char *join(const char *a, const char *b)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", a, b) < 0)
		return NULL;
	return p;
}

static int fsync_path(const char *path, bool dir)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | (dir ? O_DIRECTORY : 0));
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* SHA-256 and size of a regular file. */
static int sha256_file(const char *path, uint8_t out[CRYPT_SHA256_BYTES], uint64_t *size)
{
	struct crypt_sha256 s;
	uint8_t buf[65536];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return -errno;
	*size = 0;
	crypt_sha256_init(&s);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		crypt_sha256_update(&s, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	crypt_sha256_final(&s, out);
	if (n < 0) {
		n = -errno;
		close(fd);
		return (int)n;
	}
	close(fd);
	return 0;
}

/* DIR must not exist (it is made 0700: returns 1) or be an empty
 * directory (0). */
static int prepare_out(const char *verb, const char *dir)
{
	struct dirent *de;
	DIR *d;

	if (mkdir(dir, 0700) == 0)
		return 1;
	if (errno != EEXIST) {
		cli_err(verb, "%s: %s", dir, strerror(errno));
		return -errno;
	}
	d = opendir(dir);
	if (d == NULL) {
		cli_err(verb, "%s: %s", dir, strerror(errno));
		return -ENOTDIR;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			closedir(d);
			cli_err(verb,
				"%s: not empty (a backup goes into a new directory)",
				dir);
			return -ENOTEMPTY;
		}
	}
	closedir(d);
	return 0;
}

/* Writes every ledger entry of cat to path (a new file), fsync'd. */
static int write_ledger(struct catalog *cat, const char *path, uint64_t *count)
{
	struct catalog_erasure *list = NULL;
	char line[SUBJECTS_LEDGER_LINE_MAX];
	size_t n = 0;
	FILE *f = NULL;
	int rc;

	*count = 0;
	rc = catalog_erasure_list(cat, &list, &n);
	if (rc)
		goto out;
	f = fopen(path, "wxe");
	if (f == NULL) {
		rc = -errno;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		rc = subjects_ledger_format(&list[i], line, sizeof(line));
		if (rc)
			goto out;
		if (fputs(line, f) == EOF) {
			rc = -EIO;
			goto out;
		}
	}
	if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
		rc = -errno;
		goto out;
	}
	*count = n;
out:
	if (f && fclose(f) != 0 && rc == 0)
		rc = -errno;
	free(list);
	return rc;
}

/* Runs argv (no shell) and waits; 0 if it exited 0. */
static int run_cmd(char *const argv[])
{
	pid_t pid;
	int status, rc;

	rc = posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ);
	if (rc != 0)
		return -rc;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static json_object *manifest_json(const struct manifest *m, const char *store,
				  const uint8_t audit_mac[CRYPT_MAC_BYTES], bool tree)
{
	char hex[2 * CRYPT_SHA256_BYTES + 1], when[CLI_TIME_MAX];
	json_object *o = json_object_new_object();

	json_object_object_add(o, "format", json_object_new_string(BACKUP_FORMAT));
	crypt_hex(hex, m->store_id, sizeof(m->store_id));
	json_object_object_add(o, "store_id", json_object_new_string(hex));
	json_object_object_add(o, "store", json_object_new_string(store));
	cli_time_iso(m->created_us, when);
	json_object_object_add(o, "created", json_object_new_string(when));
	json_object_object_add(o, "created_us", json_object_new_int64(m->created_us));
	json_object_object_add(o, "audit_head_seq", json_object_new_uint64(m->audit_seq));
	crypt_hex(hex, audit_mac, CRYPT_MAC_BYTES);
	json_object_object_add(o, "audit_head_mac", json_object_new_string(hex));
	json_object_object_add(o, "ledger_entries",
			       json_object_new_uint64(m->ledger_entries));
	json_object_object_add(o, "catalog_bytes",
			       json_object_new_uint64(m->catalog_bytes));
	crypt_hex(hex, m->catalog_sha, sizeof(m->catalog_sha));
	json_object_object_add(o, "catalog_sha256", json_object_new_string(hex));
	json_object_object_add(o, "tree", json_object_new_boolean(tree));
	return o;
}

/* --- backup ---------------------------------------------------------------- */

static void backup_usage(FILE *f)
{
	fputs("usage: custodian backup STORE --out DIR [--with-tree] [--json]\n"
	      "\n"
	      "Writes a backup of STORE's catalogue into DIR (a new or empty\n"
	      "directory, made 0700): custodian.db, a consistent copy of the\n"
	      "catalogue (key slots, subject keys, policy, audit chain); ledger.txt,\n"
	      "its erasure ledger; manifest.json (store id, time, audit chain head,\n"
	      "ledger count, SHA-256 of the copy).  Works on a mounted store\n"
	      "without stopping it.  Needs no key.\n"
	      "\n"
	      "The ciphertext tree/ is NOT copied: back it up with rsync or a\n"
	      "snapshot (it is unreadable without a catalogue).  Keep few\n"
	      "generations of catalogue backups, and restore them only with\n"
	      "`custodian restore`, which re-applies every erasure made since.\n"
	      "\n"
	      "  --out DIR     where to write the backup\n"
	      "  --with-tree   also copy tree/ to DIR/tree (cp -a; on a mounted\n"
	      "                store files being written may be copied torn)\n"
	      "  --json        print the manifest as JSON\n"
	      "  -h, --help    show this help\n",
	      f);
}

int cmd_backup(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"out", required_argument, NULL, OPT_OUT},
		{"with-tree", no_argument, NULL, OPT_WITH_TREE},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *verb = "backup", *path, *out = NULL;
	char *db = NULL, *ledger = NULL, *mpath = NULL, *tmp = NULL, *tree = NULL;
	uint8_t audit_mac[CRYPT_MAC_BYTES] = {0};
	uint8_t id[STORE_ID_BYTES];
	struct catalog *copy = NULL;
	struct store *st = NULL;
	struct manifest m = {0};
	json_object *mj = NULL;
	bool with_tree = false, json = false, made = false;
	char *real = NULL;
	int64_t seq = 0;
	size_t len = 0;
	int c, err, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_OUT:
			out = optarg;
			break;
		case OPT_WITH_TREE:
			with_tree = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		default:
			return cli_getopt_fail(verb, c, argv, backup_usage);
		}
	}
	if (cli_operands(verb, argc, 1, "no STORE given", backup_usage))
		return CLI_USAGE;
	if (out == NULL || !*out) {
		cli_err(verb, "--out DIR is required");
		return CLI_USAGE;
	}
	path = argv[optind];
	/* Read-only: the copy is one read transaction, so a mounted store's
	 * daemon keeps writing meanwhile. */
	err = store_open(path, true, &st);
	if (err < 0) {
		cli_err(verb, "%s: %s", path, store_strerror(err));
		goto out;
	}
	err = prepare_out(verb, out);
	if (err < 0)
		goto out;
	made = err == 1;
	real = realpath(path, NULL);
	db = join(out, CATALOG_FILE);
	ledger = join(out, BACKUP_LEDGER);
	mpath = join(out, BACKUP_MANIFEST);
	tmp = join(out, "." BACKUP_MANIFEST ".tmp");
	if (!db || !ledger || !mpath || !tmp) {
		cli_err(verb, "%s", strerror(ENOMEM));
		goto out;
	}
	m.created_us = clock_now_us();
	err = catalog_backup(st->cat, db);
	if (err < 0) {
		cli_err(verb, "copying the catalogue to %s: %s", db, strerror(-err));
		goto out;
	}
	/* Everything else is read from the copy, so it all describes the same
	 * moment. */
	err = catalog_open(db, CATALOG_RDONLY, &copy);
	if (err == 0)
		err = catalog_check(copy);
	if (err == 0)
		err = catalog_meta_get(copy, "store_id", id, sizeof(id), &len);
	if (err == 0 && (len != sizeof(id) || memcmp(id, st->id, sizeof(id)) != 0))
		err = -EIO;
	if (err == 0)
		err = catalog_audit_last(copy, &seq, audit_mac);
	if (err < 0) {
		cli_err(verb, "checking the copy %s: %s", db, store_strerror(err));
		goto out;
	}
	memcpy(m.store_id, id, sizeof(id));
	m.audit_seq = (uint64_t)seq;
	err = write_ledger(copy, ledger, &m.ledger_entries);
	if (err < 0) {
		cli_err(verb, "writing %s: %s", ledger, strerror(-err));
		goto out;
	}
	catalog_close(copy);
	copy = NULL;
	err = sha256_file(db, m.catalog_sha, &m.catalog_bytes);
	if (err < 0) {
		cli_err(verb, "%s: %s", db, strerror(-err));
		goto out;
	}
	if (with_tree) {
		char *src = join(path, STORE_TREE_DIR);
		char *argv_cp[] = {"cp", "-a", "--", src, NULL, NULL};

		tree = join(out, STORE_TREE_DIR);
		argv_cp[4] = tree;
		err = src && tree ? run_cmd(argv_cp) : -ENOMEM;
		free(src);
		if (err < 0) {
			cli_err(verb, "copying %s/%s: %s", path, STORE_TREE_DIR,
				err == -EIO ? "cp failed" : strerror(-err));
			goto out;
		}
	}
	/* The manifest last: its presence marks a complete backup. */
	mj = manifest_json(&m, real ? real : st->path, audit_mac, with_tree);
	if (json_object_to_file_ext(tmp, mj, JSON_C_TO_STRING_PRETTY) != 0 ||
	    fsync_path(tmp, false) < 0 || rename(tmp, mpath) != 0 ||
	    fsync_path(out, true) < 0) {
		cli_err(verb, "writing %s: %s", mpath, strerror(errno));
		goto out;
	}
	if (json) {
		puts(json_object_to_json_string_ext(
			mj, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	} else {
		char when[CLI_TIME_MAX];

		cli_time_iso(m.created_us, when);
		printf("backup of %s written to %s\n"
		       "  time:        %s\n"
		       "  catalogue:   %" PRIu64 " bytes\n"
		       "  erasures:    %" PRIu64 " in the ledger\n"
		       "  audit chain: at record %" PRIu64 "\n",
		       path, out, when, m.catalog_bytes, m.ledger_entries, m.audit_seq);
		if (!with_tree)
			printf("The ciphertext tree/ is not in this backup: back it up "
			       "with rsync or a snapshot.\n");
	}
	ret = CLI_OK;
out:
	/* A failed backup leaves nothing that could pass for one. */
	if (ret != CLI_OK && db && ledger && mpath && tmp) {
		unlink(mpath);
		unlink(tmp);
		unlink(ledger);
		unlink(db);
		if (made)
			rmdir(out);
	}
	json_object_put(mj);
	catalog_close(copy);
	store_close(st);
	free(real);
	free(db);
	free(ledger);
	free(mpath);
	free(tmp);
	free(tree);
	return ret;
}

/* --- restore --------------------------------------------------------------- */

static void restore_usage(FILE *f)
{
	fputs("usage: custodian restore STORE --from DIR [--ledger FILE] [--yes]\n"
	      "                          [unlock options]\n"
	      "\n"
	      "Replaces the catalogue of the UNMOUNTED store STORE with the backup in\n"
	      "DIR (written by `custodian backup` of the same store), then re-applies\n"
	      "the current erasure ledger, so every data subject erased since the\n"
	      "backup is erased again.  The current ledger is read from the catalogue\n"
	      "being replaced (before it is replaced) and merged with --ledger FILE.\n"
	      "Key slots, directory legal holds, policy versions, the state of the\n"
	      "subjects both know and the compliance clock are kept from the\n"
	      "catalogue being replaced.  Subjects created and audit records\n"
	      "written since the backup are lost (the restore record in the audit\n"
	      "log names the chain head it replaced).  The old catalogue is kept as\n"
	      "custodian.db.before-restore until the restore has succeeded.\n"
	      "If the current catalogue is missing or damaged, its ledger is lost\n"
	      "with it: --ledger FILE (the ledger you kept apart) is then required,\n"
	      "and the backup's own key slots unlock.\n"
	      "\n"
	      "  --from DIR     the backup directory\n"
	      "  --ledger FILE  also re-apply the erasures in FILE (from\n"
	      "                 `custodian subjects STORE --ledger`; '-' = stdin)\n"
	      "  --yes          do not ask (needed without a terminal)\n" CLI_UNLOCK_HELP
	      "  -h, --help     show this help\n",
	      f);
}

/* Reads and checks DIR/manifest.json. */
static int read_manifest(const char *verb, const char *dir, struct manifest *m)
{
	char *path = join(dir, BACKUP_MANIFEST);
	json_object *o = path ? json_object_from_file(path) : NULL, *v;
	const char *s;
	int rc = -EINVAL;

	memset(m, 0, sizeof(*m));
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		cli_err(verb, "%s: not a custodian backup (no readable %s)", dir,
			BACKUP_MANIFEST);
		goto out;
	}
	if (!json_object_object_get_ex(o, "format", &v) ||
	    strcmp(json_object_get_string(v), BACKUP_FORMAT) != 0)
		goto bad;
	if (!json_object_object_get_ex(o, "store_id", &v) ||
	    !(s = json_object_get_string(v)) || strlen(s) != 2 * STORE_ID_BYTES ||
	    crypt_unhex(m->store_id, sizeof(m->store_id), s) != STORE_ID_BYTES)
		goto bad;
	if (!json_object_object_get_ex(o, "catalog_sha256", &v) ||
	    !(s = json_object_get_string(v)) || strlen(s) != 2 * CRYPT_SHA256_BYTES ||
	    crypt_unhex(m->catalog_sha, sizeof(m->catalog_sha), s) != CRYPT_SHA256_BYTES)
		goto bad;
	if (!json_object_object_get_ex(o, "created_us", &v))
		goto bad;
	m->created_us = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "catalog_bytes", &v))
		m->catalog_bytes = json_object_get_uint64(v);
	if (json_object_object_get_ex(o, "audit_head_seq", &v))
		m->audit_seq = json_object_get_uint64(v);
	if (json_object_object_get_ex(o, "ledger_entries", &v))
		m->ledger_entries = json_object_get_uint64(v);
	rc = 0;
	goto out;
bad:
	cli_err(verb, "%s: %s is damaged or not a custodian backup manifest", dir,
		BACKUP_MANIFEST);
out:
	json_object_put(o);
	free(path);
	return rc;
}

/* The ledger entries to re-apply: the current catalogue's, then FILE's,
 * without duplicates (same destroyed key). */
struct ledger {
	struct catalog_erasure *v; /* entries */
	size_t n, cap;             /* used, allocated */
};

static int ledger_add(struct ledger *l, const struct catalog_erasure *e)
{
	for (size_t i = 0; i < l->n; i++)
		if (memcmp(l->v[i].key_fp, e->key_fp, sizeof(e->key_fp)) == 0 &&
		    memcmp(l->v[i].hash, e->hash, sizeof(e->hash)) == 0)
			return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct catalog_erasure *v = realloc(l->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = *e;
	return 0;
}

/* Reads FILE's entries, each checked against its MAC now, before anything
 * changes (an edited line, or one from another store, is refused). */
static int ledger_read_file(const char *verb, struct store *st, const char *file,
			    struct ledger *l)
{
	char line[SUBJECTS_LEDGER_LINE_MAX + 2];
	uint8_t mac[CRYPT_MAC_BYTES];
	struct catalog_erasure e;
	FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "re");
	unsigned lineno = 0;
	int rc = 0;

	if (f == NULL) {
		cli_err(verb, "%s: %s", file, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (subjects_ledger_parse(line, &e) < 0) {
			cli_err(verb, "%s:%u: not a ledger line", file, lineno);
			rc = -EINVAL;
			break;
		}
		subjects_erasure_mac(st->mk, &e, mac);
		if (!crypt_equal(mac, e.mac, sizeof(mac))) {
			cli_err(verb,
				"%s:%u: entry does not authenticate (edited, or from "
				"another store)",
				file, lineno);
			rc = -EBADMSG;
			break;
		}
		rc = ledger_add(l, &e);
		if (rc)
			break;
	}
	if (rc == 0 && ferror(f)) {
		cli_err(verb, "%s: %s", file, strerror(EIO));
		rc = -EIO;
	}
	if (f != stdin)
		fclose(f);
	return rc;
}

static int64_t meta_int(struct catalog *cat, const char *key)
{
	char buf[32];
	size_t len = 0;

	if (catalog_meta_get(cat, key, buf, sizeof(buf) - 1, &len) < 0)
		return 0;
	buf[len] = 0;
	return strtoll(buf, NULL, 10);
}

/* Subjects present in both catalogues with the same key: the row of the
 * replaced catalogue (newer state of the same subject: hold, restriction,
 * reasons, last write) wins.  Rows are copied verbatim; their MACs stay
 * valid because the master key never changes. */
static int carry_subjects(struct catalog *dst, struct catalog *src, size_t *kept)
{
	uint8_t(*hashes)[CRYPT_HASH_BYTES] = NULL;
	struct catalog_subject *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	size_t n = 0;
	int rc = a && b ? catalog_subject_hashes(src, &hashes, &n) : -ENOMEM;

	for (size_t i = 0; rc == 0 && i < n; i++) {
		rc = catalog_subject_get(src, hashes[i], a);
		if (rc == 0)
			rc = catalog_subject_get(dst, hashes[i], b);
		if (rc == -ENOENT) {
			rc = 0; /* created since the backup: lost with the restore */
			continue;
		}
		if (rc || !a->has_key || !b->has_key ||
		    memcmp(a->wrapped, b->wrapped, sizeof(a->wrapped)) != 0 ||
		    memcmp(a->mac, b->mac, sizeof(a->mac)) == 0)
			continue;
		rc = catalog_subject_put(dst, a);
		if (rc == 0)
			(*kept)++;
	}
	if (a)
		crypt_wipe(a, sizeof(*a));
	if (b)
		crypt_wipe(b, sizeof(*b));
	free(a);
	free(b);
	free(hashes);
	return rc;
}

/* Policy versions applied since the backup, appended in order. */
static int carry_policies(struct catalog *dst, struct catalog *src)
{
	struct catalog_policy p = {0};
	int64_t next = 0, last = 0;
	int rc = catalog_policy_next_version(dst, &next);

	if (rc == 0)
		rc = catalog_policy_next_version(src, &last);
	for (int64_t v = next; rc == 0 && v < last; v++) {
		rc = catalog_policy_get(src, v, &p);
		if (rc == 0)
			rc = catalog_policy_add(dst, &p);
		catalog_policy_clear(&p);
	}
	return rc;
}

/*
 * What must not roll back with the catalogue, from src (the replaced one)
 * into dst (the restored one), in one transaction: the key slots (a
 * passphrase changed or removed since the backup stays so), directory
 * holds, policy versions applied since, the state of subjects both know,
 * and the compliance clock (only forward).
 */
static int carry_over(struct catalog *dst, struct catalog *src, size_t *kept)
{
	struct catalog_slot *slots = NULL, *old = NULL;
	struct catalog_hold *holds = NULL, *oldh = NULL;
	size_t ns = 0, n = 0, nh = 0, noh = 0;
	int64_t clock_us = meta_int(src, CLOCK_META_KEY);
	char num[32];
	int rc;

	rc = catalog_begin(dst);
	if (rc)
		return rc;
	rc = catalog_slot_list(src, &slots, &ns);
	if (rc == 0)
		rc = catalog_slot_list(dst, &old, &n);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = catalog_slot_remove(dst, old[i].id);
	for (size_t i = 0; rc == 0 && i < ns; i++)
		rc = catalog_slot_add(dst, &slots[i]);
	if (rc == 0)
		rc = catalog_hold_list(src, &holds, &nh);
	if (rc == 0)
		rc = catalog_hold_list(dst, &oldh, &noh);
	for (size_t i = 0; rc == 0 && i < noh; i++)
		rc = catalog_hold_delete(dst, oldh[i].hash);
	for (size_t i = 0; rc == 0 && i < nh; i++)
		rc = catalog_hold_put(dst, &holds[i]);
	if (rc == 0)
		rc = carry_policies(dst, src);
	if (rc == 0)
		rc = carry_subjects(dst, src, kept);
	if (rc == 0 && clock_us > meta_int(dst, CLOCK_META_KEY)) {
		snprintf(num, sizeof(num), "%" PRId64, clock_us);
		rc = catalog_meta_put(dst, CLOCK_META_KEY, num, strlen(num));
	}
	if (rc == 0)
		rc = catalog_commit(dst);
	if (rc)
		catalog_rollback(dst);
	if (slots)
		crypt_wipe(slots, ns * sizeof(*slots));
	if (old)
		crypt_wipe(old, n * sizeof(*old));
	free(slots);
	free(old);
	free(holds);
	free(oldh);
	return rc;
}

/* renameat within the store directory; ENOENT of the source is fine when
 * optional. */
static int move(int dfd, const char *from, const char *to, bool optional)
{
	if (renameat(dfd, from, dfd, to) == 0)
		return 0;
	if (optional && errno == ENOENT)
		return 0;
	return -errno;
}

/* Puts the old catalogue (and journal) back after a failed restore. */
static int put_back(int dfd)
{
	int rc;

	unlinkat(dfd, CATALOG_FILE "-wal", 0);
	unlinkat(dfd, CATALOG_FILE "-shm", 0);
	unlinkat(dfd, AUDIT_JOURNAL_FILE, 0);
	unlinkat(dfd, RESTORE_OLD_SHM, 0);
	/* The catalogue was missing before: it is missing again. */
	if (faccessat(dfd, RESTORE_OLD, F_OK, AT_SYMLINK_NOFOLLOW) != 0 &&
	    errno == ENOENT)
		rc = unlinkat(dfd, CATALOG_FILE, 0) == 0 || errno == ENOENT ? 0 : -errno;
	else
		rc = move(dfd, RESTORE_OLD, CATALOG_FILE, false);
	if (rc == 0)
		rc = move(dfd, RESTORE_OLD_WAL, CATALOG_FILE "-wal", true);
	if (rc == 0)
		rc = move(dfd, RESTORE_OLD_JOURNAL, AUDIT_JOURNAL_FILE, true);
	if (rc == 0)
		fsync(dfd);
	return rc;
}

static bool confirm(const char *path, const struct manifest *m, size_t entries)
{
	char q[PATH_MAX + 64], when[CLI_TIME_MAX];

	cli_time_iso(m->created_us, when);
	printf("Replacing the catalogue of %s with the backup of %s.\n"
	       "Subjects created and audit records written since then are lost;\n"
	       "%zu erasures will be re-applied.\n",
	       path, when, entries);
	snprintf(q, sizeof(q), "Restore %s?", path);
	return cli_confirm(q);
}

/* Appends the restore's records to the restored chain. */
static int audit_restore(const char *verb, struct store *st, const struct ledger *l,
			 const bool *applied, const char *detail)
{
	struct audit_who who;
	struct audit *a = NULL;
	int rc;

	rc = audit_open(st, NULL, &a);
	if (rc < 0) {
		cli_err(verb, "opening the restored audit log: %s", strerror(-rc));
		return rc;
	}
	audit_who_self(&who);
	for (size_t i = 0; rc == 0 && i < l->n; i++) {
		struct audit_event ev = {0};

		if (!applied[i])
			continue;
		ev.op = AUDIT_OP_SHRED;
		ev.who = &who;
		ev.subject = l->v[i].hash;
		ev.detail = "re-applied from the erasure ledger";
		ev.count = (uint64_t)l->v[i].files;
		ev.bytes = (uint64_t)l->v[i].bytes;
		rc = audit_append(a, &ev, NULL);
	}
	if (rc == 0) {
		struct audit_event ev = {0};

		ev.op = AUDIT_OP_RESTORE;
		ev.who = &who;
		ev.detail = detail;
		rc = audit_append(a, &ev, NULL);
	}
	if (rc == 0)
		rc = audit_flush(a);
	audit_close(a);
	if (rc < 0)
		cli_err(verb, "writing the restored audit log: %s", strerror(-rc));
	return rc;
}

int cmd_restore(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"from", required_argument, NULL, OPT_FROM},
		{"ledger", required_argument, NULL, OPT_LEDGER},
		{"yes", no_argument, NULL, OPT_YES},
		{"help", no_argument, NULL, 'h'},
		CLI_UNLOCK_LONGOPTS,
		{NULL, 0, NULL, 0},
	};
	const char *verb = "restore", *path, *from = NULL, *ledger_file = NULL;
	char *bdb = NULL, *tmp = NULL, detail[CATALOG_AUDIT_DETAIL_MAX];
	char when[CLI_TIME_MAX], hex[2 * CRYPT_HASH_BYTES + 1];
	uint8_t sha[CRYPT_SHA256_BYTES], mac[CRYPT_MAC_BYTES], bid[STORE_ID_BYTES];
	struct catalog_erasure *cur = NULL;
	struct cli_unlock how = {0};
	struct catalog *bcat = NULL;
	struct keys_master *mk = NULL;
	struct store *st = NULL;
	struct audit *a = NULL;
	struct ledger l = {0};
	struct catalog *old = NULL;
	char *oldpath = NULL;
	size_t kept = 0;
	struct manifest m;
	uint64_t size = 0, old_seq = 0, jrecords = 0;
	size_t ncur = 0, len = 0, napplied = 0;
	bool yes = false, locked = false, swapped = false, lost = false, *applied = NULL;
	int c, err, dfd = -1, ret = CLI_FAIL;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (cli_unlock_option(&how, c, optarg))
			continue;
		switch (c) {
		case OPT_FROM:
			from = optarg;
			break;
		case OPT_LEDGER:
			ledger_file = optarg;
			break;
		case OPT_YES:
			yes = true;
			break;
		default:
			return cli_getopt_fail(verb, c, argv, restore_usage);
		}
	}
	if (cli_operands(verb, argc, 1, "no STORE given", restore_usage))
		return CLI_USAGE;
	if (from == NULL || !*from) {
		cli_err(verb, "--from DIR is required");
		return CLI_USAGE;
	}
	path = argv[optind];
	if (!yes && !isatty(STDIN_FILENO)) {
		cli_err(verb, "not a terminal: nothing restored (use --yes to restore "
			      "without asking)");
		return CLI_FAIL;
	}

	/* 1. The backup: complete, undamaged, and of this store. */
	if (read_manifest(verb, from, &m) < 0)
		goto out;
	bdb = join(from, CATALOG_FILE);
	if (bdb == NULL)
		goto out;
	err = sha256_file(bdb, sha, &size);
	if (err < 0 || !crypt_equal(sha, m.catalog_sha, sizeof(sha))) {
		cli_err(verb, "%s: the backup is damaged (%s %s)", from, CATALOG_FILE,
			err < 0 ? strerror(-err) : "does not match its manifest");
		goto out;
	}
	err = catalog_open(bdb, CATALOG_RDONLY, &bcat);
	if (err == 0)
		err = catalog_check(bcat);
	if (err == 0)
		err = catalog_meta_get(bcat, "store_id", bid, sizeof(bid), &len);
	if (err < 0 || len != sizeof(bid)) {
		cli_err(verb, "%s: the backup is damaged (%s: %s)", from, CATALOG_FILE,
			err < 0 ? store_strerror(err) : "no store id");
		goto out;
	}
	if (memcmp(bid, m.store_id, sizeof(bid)) != 0) {
		cli_err(verb,
			"%s: the backup is damaged (its manifest names another "
			"store)",
			from);
		goto out;
	}

	/* 2. The store: unmounted, and the one the backup was taken of. */
	if (cli_store_mounted(path) ||
	    (audit_journal_peek(path, &jrecords, &locked) == 0 && locked)) {
		cli_err(verb, "%s is mounted (or in use); unmount it before restoring",
			path);
		goto out;
	}
	dfd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dfd < 0 || faccessat(dfd, STORE_TREE_DIR, F_OK, AT_SYMLINK_NOFOLLOW) != 0) {
		cli_err(verb, "%s: %s", path, store_strerror(-ENOENT));
		goto out;
	}
	if (faccessat(dfd, RESTORE_OLD, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
		cli_err(verb,
			"%s/" RESTORE_OLD " exists: an earlier restore did not finish; "
			"move it away (it is the catalogue before that restore) and try "
			"again",
			path);
		goto out;
	}
	/* A catalogue that is gone or damaged cannot give its ledger: then
	 * only the ledger the operator kept (--ledger) can be re-applied, and
	 * the backup's own key slots unlock. */
	err = store_open(path, false, &st);
	store_close(st);
	st = NULL;
	if (err == -ENOENT || err == -EIO) {
		lost = true;
		if (ledger_file == NULL) {
			cli_err(verb,
				"%s: the current catalogue is %s, and its erasure ledger "
				"with it: give the ledger you kept with --ledger FILE "
				"(--ledger /dev/null restores without re-applying "
				"erasures)",
				path, err == -ENOENT ? "missing" : "damaged");
			goto out;
		}
		fprintf(stderr,
			"custodian: %s: warning: the current catalogue is %s; only the "
			"erasures in %s are re-applied, and key slots, holds and clock "
			"come from the backup\n",
			verb, err == -ENOENT ? "missing" : "damaged", ledger_file);
	} else if (cli_open_unlocked(verb, path, false, &how, &st) < 0) {
		goto out;
	}
	if (!lost && memcmp(st->id, bid, sizeof(bid)) != 0) {
		char h2[2 * STORE_ID_BYTES + 1];

		crypt_hex(hex, bid, sizeof(bid));
		crypt_hex(h2, st->id, sizeof(st->id));
		cli_err(verb, "%s is a backup of another store (id %s; %s is %s)", from,
			hex, path, h2);
		goto out;
	}

	/* 3. The erasures to re-apply: the current ledger and FILE's, every
	 * entry authenticated before anything changes.  (What else must
	 * outlive the swap is read from the old file afterwards: carry_over.) */
	/* st is open unless the old catalogue is lost. */
	// cppcheck-suppress nullPointerRedundantCheck
	err = lost ? 0 : catalog_erasure_list(st->cat, &cur, &ncur);
	for (size_t i = 0; err == 0 && i < ncur; i++)
		err = ledger_add(&l, &cur[i]);
	if (err < 0) {
		cli_err(verb, "%s: reading the current catalogue: %s", path,
			err == -EBADMSG ? "a row was changed outside custodian"
					: store_strerror(err));
		goto out;
	}
	if (!lost && ledger_file && ledger_read_file(verb, st, ledger_file, &l) < 0)
		goto out;
	if (!yes && !confirm(path, &m, l.n)) {
		cli_err(verb, "not confirmed: nothing restored");
		goto out;
	}

	/* 4. Empty the journal into the current chain (and take its head). */
	err = lost ? 0 : audit_open(st, NULL, &a);
	if (err < 0) {
		cli_err(verb, "%s: %s", path,
			err == -EBUSY ? "the store is in use (mounted?)"
				      : store_strerror(err));
		goto out;
	}
	if (a)
		audit_head(a, &old_seq, mac);
	audit_close(a);
	a = NULL;
	if (!lost && audit_journal_peek(path, &jrecords, &locked) == 0 && jrecords > 0) {
		cli_err(verb,
			"%s: the audit journal could not be emptied; nothing "
			"restored",
			path);
		goto out;
	}

	/* 5. A fresh copy of the backup beside the catalogue, then the swap. */
	tmp = join(path, RESTORE_TMP);
	if (tmp == NULL)
		goto out;
	unlink(tmp); /* ours, from an interrupted restore */
	err = catalog_backup(bcat, tmp);
	if (err < 0) {
		cli_err(verb, "copying the backup into %s: %s", path, strerror(-err));
		goto out;
	}
	catalog_close(bcat);
	bcat = NULL;
	if (st) {
		mk = st->mk; /* the master key never changes: keep it across the swap */
		st->mk = NULL;
		store_close(st);
		st = NULL;
	}
	err = move(dfd, CATALOG_FILE, RESTORE_OLD, lost);
	if (err == 0) {
		swapped = true;
		err = move(dfd, CATALOG_FILE "-wal", RESTORE_OLD_WAL, true);
	}
	if (err == 0)
		err = move(dfd, AUDIT_JOURNAL_FILE, RESTORE_OLD_JOURNAL, true);
	/* A -shm belongs to the old database; SQLite rebuilds it. */
	if (err == 0 && unlinkat(dfd, CATALOG_FILE "-shm", 0) != 0 && errno != ENOENT)
		err = -errno;
	if (err == 0)
		err = move(dfd, RESTORE_TMP, CATALOG_FILE, false);
	if (err == 0 && fsync(dfd) != 0)
		err = -errno;
	if (err < 0) {
		cli_err(verb, "%s: swapping the catalogues: %s", path, strerror(-err));
		goto out;
	}

	/* 6. The restored catalogue: what stays in force, then the ledger. */
	if (lost) {
		/* Unlocked with the backup's slots; FILE checked with its key. */
		if (cli_open_unlocked(verb, path, false, &how, &st) < 0 ||
		    ledger_read_file(verb, st, ledger_file, &l) < 0)
			goto out;
	} else {
		err = store_open(path, false, &st);
		if (err < 0) {
			cli_err(verb, "%s: opening the restored catalogue: %s", path,
				store_strerror(err));
			goto out;
		}
		st->mk = mk;
		mk = NULL;
	}
	applied = calloc(l.n + 1, sizeof(*applied));
	if (applied == NULL) {
		cli_err(verb, "%s", strerror(ENOMEM));
		goto out;
	}
	if (!lost) {
		oldpath = join(path, RESTORE_OLD);
		err = oldpath ? catalog_open(oldpath, CATALOG_RDONLY, &old) : -ENOMEM;
		if (err == 0)
			err = carry_over(st->cat, old, &kept);
		catalog_close(old);
		old = NULL;
		if (err < 0) {
			cli_err(verb, "%s: keeping what must not roll back: %s", path,
				store_strerror(err));
			goto out;
		}
	}
	for (size_t i = 0; i < l.n; i++) {
		err = subjects_ledger_apply(st, &l.v[i], &applied[i]);
		if (err < 0) {
			crypt_hex(hex, l.v[i].hash, sizeof(l.v[i].hash));
			cli_err(verb,
				"re-applying erasure %" PRId64 " (subject %.12s...): %s",
				l.v[i].seq, hex, store_strerror(err));
			goto out;
		}
		napplied += applied[i];
	}
	cli_time_iso(m.created_us, when);
	if (lost)
		snprintf(detail, sizeof(detail),
			 "catalogue restored from backup of %s; previous catalogue "
			 "missing or damaged; %zu of %zu erasures re-applied",
			 when, napplied, l.n);
	else
		snprintf(detail, sizeof(detail),
			 "catalogue restored from backup of %s; replaced chain head "
			 "%" PRIu64 "; %zu of %zu erasures re-applied",
			 when, old_seq, napplied, l.n);
	if (audit_restore(verb, st, &l, applied, detail) < 0)
		goto out;
	/* Destroyed keys must not linger in the WAL. */
	err = catalog_checkpoint(st->cat);
	if (err < 0) {
		cli_err(verb, "%s: checkpointing the catalogue: %s", path,
			strerror(-err));
		goto out;
	}
	store_close(st);
	st = NULL;

	/* 7. Success: the old catalogue goes. */
	unlinkat(dfd, RESTORE_OLD, 0);
	unlinkat(dfd, RESTORE_OLD_WAL, 0);
	unlinkat(dfd, RESTORE_OLD_SHM, 0);
	unlinkat(dfd, RESTORE_OLD_JOURNAL, 0);
	fsync(dfd);
	swapped = false;
	printf("restored %s from %s (backup of %s)\n", path, from, when);
	for (size_t i = 0; i < l.n; i++) {
		char t[CLI_TIME_MAX];

		if (!applied[i])
			continue;
		crypt_hex(hex, l.v[i].hash, sizeof(l.v[i].hash));
		cli_time_iso(l.v[i].shredded_us, t);
		printf("re-applied erasure %" PRId64 ": subject %.12s... shredded %s "
		       "(%" PRId64 " files)\n",
		       l.v[i].seq, hex, t, l.v[i].files);
	}
	printf("%zu erasures checked, %zu re-applied\n", l.n, napplied);
	if (!lost)
		printf("kept from the replaced catalogue: key slots, directory holds, "
		       "policy, the compliance clock, and the state of %zu subjects\n",
		       kept);
	ret = CLI_OK;
out:
	if (swapped) {
		store_close(st);
		st = NULL;
		if (put_back(dfd) == 0)
			cli_err(verb, "%s: the previous catalogue was put back", path);
		else
			cli_err(verb,
				"%s: could not put the previous catalogue back: it is "
				"%s/" RESTORE_OLD,
				path, path);
	}
	if (tmp && ret != CLI_OK)
		unlink(tmp);
	audit_close(a);
	catalog_close(bcat);
	store_close(st);
	keys_master_free(mk);
	catalog_close(old);
	free(oldpath);
	free(cur);
	free(l.v);
	free(applied);
	free(bdb);
	free(tmp);
	if (dfd >= 0)
		close(dfd);
	return ret;
}
