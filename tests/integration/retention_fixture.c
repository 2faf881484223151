/*
 * retention_fixture.c — builds the known store test_retention_cli.py checks
 * the retention commands against (compiled by the test against the build's
 * libcustodian.a; records are written with the format and names APIs, so
 * no mount is needed and birth times can lie in the past).
 *
 * usage: retention_fixture STORE PASSFILE
 *
 * With T = now: policy below; /records: 5 files born T-2y (due), 3 born
 * T-100d (kept); /records/legal (directory hold): 2 files born T-2y;
 * /customers: subjects C-1 (2 files), C-2 (1 file, legal hold), C-3 (1
 * file), all written now.  Prints nothing; exits non-zero on failure.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "format.h"
#include "names.h"
#include "policy_store.h"
#include "retention.h"
#include "secret.h"
#include "store.h"
#include "subjects.h"

#define YEAR (31557600LL * 1000000)
#define DAY (86400LL * 1000000)

static const char policy_text[] = "[/]\n"
				  "list = root\n"
				  "\n"
				  "[/records]\n"
				  "purpose = quality assurance of calls\n"
				  "categories = voice recordings; phone numbers\n"
				  "read = @cust_agents root\n"
				  "retain_min = 30d\n"
				  "retain_max = 1y\n"
				  "\n"
				  "[/records/legal]\n"
				  "retain_max = 1y\n"
				  "\n"
				  "[/customers/*]\n"
				  "subject = yes\n"
				  "purpose = customer correspondence\n"
				  "read = @cust_agents\n"
				  "retain_max = 2y\n"
				  "retain_from = subject-inactive\n";

#define CHECK(x)                                                                         \
	do {                                                                             \
		int rc_ = (x);                                                           \
		if (rc_ < 0) {                                                           \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x,       \
				strerror(-rc_));                                         \
			exit(1);                                                         \
		}                                                                        \
	} while (0)

static int mkdir_enc(const struct keyring *ring, int dirfd, const char *name)
{
	uint8_t iv[CRYPT_DIRIV_BYTES], civ[CRYPT_DIRIV_BYTES];
	struct names_enc enc;
	int fd;

	CHECK(names_diriv_load(dirfd, iv));
	CHECK(names_encrypt(ring, iv, name, &enc));
	if (mkdirat(dirfd, enc.backing, 0700) != 0)
		CHECK(-1);
	fd = openat(dirfd, enc.backing, O_RDONLY | O_DIRECTORY);
	CHECK(fd < 0 ? -1 : 0);
	CHECK(names_diriv_create(fd, civ));
	return fd;
}

static void put(const struct keyring *ring, int dirfd, const char *name, int64_t birth)
{
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct format_file ff;
	struct names_enc enc;
	int fd;

	CHECK(names_diriv_load(dirfd, iv));
	CHECK(names_encrypt(ring, iv, name, &enc));
	CHECK(names_long_store(dirfd, &enc));
	fd = openat(dirfd, enc.backing, O_RDWR | O_CREAT | O_EXCL, 0600);
	CHECK(fd < 0 ? -1 : 0);
	CHECK(format_file_create(&ff, fd, ring, birth));
	CHECK((int)format_file_write(&ff, name, strlen(name), 0));
	close(fd);
}

static void subject(struct store *st, const char *id, int nfiles)
{
	char bname[SUBJECTS_BACKING_LEN + 1], fname[32];
	uint8_t hash[CRYPT_HASH_BYTES];
	struct keyring *ring = NULL;
	int pfd, sfd;

	CHECK(subjects_create(st, "/customers", -1, id, 0700, &ring, NULL));
	subjects_hash(st->mk, id, hash);
	subjects_backing_name(hash, bname);
	CHECK(subjects_resolve_dir(st, "/customers", &pfd));
	sfd = openat(pfd, bname, O_RDONLY | O_DIRECTORY);
	CHECK(sfd < 0 ? -1 : 0);
	for (int i = 0; i < nfiles; i++) {
		snprintf(fname, sizeof(fname), "call-%d.wav", i);
		put(ring, sfd, fname, clock_now_us());
	}
	close(sfd);
	close(pfd);
	keys_ring_free(ring);
}

int main(int argc, char **argv)
{
	struct secret *pass = NULL;
	struct store *st = NULL;
	const struct keyring *v;
	int64_t now = clock_now_us(), cnow;
	uint8_t hash[CRYPT_HASH_BYTES];
	char name[32];
	int rfd, lfd, cfd;

	if (argc != 3) {
		fprintf(stderr, "usage: retention_fixture STORE PASSFILE\n");
		return 2;
	}
	CHECK(crypt_init());
	CHECK(secret_from_file(argv[2], &pass));
	CHECK(store_open(argv[1], false, &st));
	CHECK(store_unlock_passphrase(st, pass));
	v = keys_volume(st->mk);
	CHECK(policy_store_save(st->cat, st->mk, policy_text, "fixture", now, NULL));
	CHECK(clock_compliance_now(st->cat, &cnow, NULL));

	rfd = mkdir_enc(v, st->tree_fd, "records");
	for (int i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "old-%d.wav", i);
		put(v, rfd, name, now - 2 * YEAR);
	}
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "new-%d.wav", i);
		put(v, rfd, name, now - 100 * DAY);
	}
	lfd = mkdir_enc(v, rfd, "legal");
	put(v, lfd, "case-a.pdf", now - 2 * YEAR);
	put(v, lfd, "case-b.pdf", now - 2 * YEAR);
	CHECK(retention_hold_set(st, "/records/legal", true, "litigation 2026-17", now,
				 NULL));

	cfd = mkdir_enc(v, st->tree_fd, "customers");
	subject(st, "C-1", 2);
	subject(st, "C-2", 1);
	subject(st, "C-3", 1);
	subjects_hash(st->mk, "C-2", hash);
	CHECK(subjects_set_held(st, hash, true, "regulator inquiry", NULL));

	close(rfd);
	close(lfd);
	close(cfd);
	secret_free(pass);
	store_close(st);
	return 0;
}
