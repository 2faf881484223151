/*
 * test_perm.c — unit tests for fs/perm.c, the daemon's POSIX mode-bit
 * decisions, against the Linux rules they mirror: group membership
 * (primary gid, supplementary groups, a failing fetch); perm_check's
 * classes (only one of owner, group, other applies, even when another has
 * more bits), root (reads and writes anything, executes a file only with
 * some x bit, searches any directory) and combined masks; the laziness of
 * the groups callback (not called for root, the owner, equal group and
 * other bits, or the caller's primary group); the sticky bit; chmod (owner
 * or root, setgid dropped outside the file's group); chown and chgrp;
 * setting times (explicit: owner or root; "now": also any writer); and
 * the setuid/setgid bits a write, truncate or chown clears.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "perm.h"

/* A fake group fetch: reports gids[0..n) or fails, counting calls. */
struct fake {
	int calls;     /* times called */
	int ret;       /* groups to report; < 0: fail with this -errno */
	gid_t gids[8]; /* the caller's groups, primary first */
};

static int fake_groups(void *ctx, const gid_t **gids)
{
	struct fake *f = ctx;

	f->calls++;
	if (f->ret < 0)
		return f->ret;
	*gids = f->gids;
	return f->ret;
}

/* A caller uid/gid whose groups come from f (NULL: no callback). */
static struct perm_caller caller(uid_t uid, gid_t gid, struct fake *f)
{
	struct perm_caller c = {uid, gid, NULL, NULL};

	if (f) {
		c.groups = fake_groups;
		c.ctx = f;
	}
	return c;
}

static struct perm_obj obj(mode_t mode, uid_t uid, gid_t gid)
{
	struct perm_obj o = {mode, uid, gid};

	return o;
}

static void test_in_group(void **state)
{
	struct fake f = {.ret = 3, .gids = {50, 60, 70}};
	struct perm_caller c = caller(1000, 50, &f);
	struct perm_caller bare = caller(1000, 50, NULL);

	(void)state;
	/* the primary group answers without a fetch */
	assert_true(perm_in_group(&c, 50));
	assert_int_equal(f.calls, 0);
	/* supplementary groups come from the callback */
	assert_true(perm_in_group(&c, 60));
	assert_true(perm_in_group(&c, 70));
	assert_false(perm_in_group(&c, 80));
	assert_int_equal(f.calls, 3);
	/* a primary gid not listed by the fetch still counts */
	f.ret = 1;
	f.gids[0] = 99;
	assert_true(perm_in_group(&c, 50));
	/* no callback: the primary group only */
	assert_true(perm_in_group(&bare, 50));
	assert_false(perm_in_group(&bare, 60));
	/* a failing fetch: the primary group only */
	f = (struct fake){.ret = -EIO, .gids = {50, 60}};
	assert_true(perm_in_group(&c, 50));
	assert_false(perm_in_group(&c, 60));
	assert_int_equal(f.calls, 1);
}

static void test_check_owner_class(void **state)
{
	struct fake f = {.ret = 2, .gids = {100, 200}};
	struct perm_caller c = caller(1000, 100, &f);
	struct perm_obj o;

	(void)state;
	/* the owner gets the owner bits, not the group's or other's */
	o = obj(S_IFREG | 0070, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), -EACCES);
	assert_int_equal(perm_check(&c, &o, PERM_WRITE), -EACCES);
	assert_int_equal(perm_check(&c, &o, PERM_EXEC), -EACCES);
	o = obj(S_IFREG | 0077, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), -EACCES);
	o = obj(S_IFREG | 0477, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&c, &o, PERM_WRITE), -EACCES);
	o = obj(S_IFREG | 0600, 1000, 300);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&c, &o, PERM_WRITE), 0);
	assert_int_equal(perm_check(&c, &o, PERM_EXEC), -EACCES);
	/* a directory the owner may not search */
	o = obj(S_IFDIR | 0677, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_EXEC), -EACCES);
	assert_int_equal(perm_check(&c, &o, PERM_READ | PERM_WRITE), 0);
	/* the owner's decisions never need the groups */
	assert_int_equal(f.calls, 0);
}

static void test_check_group_class(void **state)
{
	struct fake f = {.ret = 3, .gids = {50, 100, 101}};
	struct perm_caller primary = caller(2000, 100, NULL);
	struct perm_caller supp = caller(2000, 50, &f);
	struct perm_obj o;

	(void)state;
	/* group via the primary gid */
	o = obj(S_IFREG | 0750, 1000, 100);
	assert_int_equal(perm_check(&primary, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&primary, &o, PERM_EXEC), 0);
	assert_int_equal(perm_check(&primary, &o, PERM_WRITE), -EACCES);
	/* group via a supplementary group */
	assert_int_equal(perm_check(&supp, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&supp, &o, PERM_READ | PERM_EXEC), 0);
	assert_int_equal(perm_check(&supp, &o, PERM_WRITE), -EACCES);
	o = obj(S_IFREG | 0640, 1000, 101);
	assert_int_equal(perm_check(&supp, &o, PERM_READ), 0);
	assert_true(f.calls >= 1);
	/* a member gets the group bits even when other has more */
	o = obj(S_IFREG | 0707, 1000, 100);
	assert_int_equal(perm_check(&primary, &o, PERM_READ), -EACCES);
	assert_int_equal(perm_check(&supp, &o, PERM_READ), -EACCES);
	assert_int_equal(perm_check(&supp, &o, PERM_EXEC), -EACCES);
	o = obj(S_IFREG | 0746, 1000, 100);
	assert_int_equal(perm_check(&supp, &o, PERM_WRITE), -EACCES);
	assert_int_equal(perm_check(&supp, &o, PERM_READ), 0);
	/* a group directory: search and create */
	o = obj(S_IFDIR | 0770, 1000, 101);
	assert_int_equal(perm_check(&supp, &o, PERM_WRITE | PERM_EXEC), 0);
	assert_int_equal(perm_check(&primary, &o, PERM_EXEC), -EACCES);
}

static void test_check_other_class(void **state)
{
	struct fake f = {.ret = 2, .gids = {50, 60}};
	struct perm_caller c = caller(2000, 50, &f);
	struct perm_caller bare = caller(2000, 50, NULL);
	struct perm_obj o;

	(void)state;
	/* neither owner nor in the group: the other bits */
	o = obj(S_IFREG | 0754, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&c, &o, PERM_EXEC), -EACCES);
	assert_int_equal(perm_check(&c, &o, PERM_WRITE), -EACCES);
	assert_int_equal(perm_check(&bare, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&bare, &o, PERM_EXEC), -EACCES);
	/* other may have more than the group */
	o = obj(S_IFREG | 0006, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ | PERM_WRITE), 0);
	assert_int_equal(perm_check(&bare, &o, PERM_READ | PERM_WRITE), 0);
	/* a directory closed to other */
	o = obj(S_IFDIR | 0770, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_EXEC), -EACCES);
	assert_int_equal(perm_check(&c, &o, PERM_READ), -EACCES);
	o = obj(S_IFDIR | 0701, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_EXEC), 0);
	assert_int_equal(perm_check(&c, &o, PERM_READ), -EACCES);
	/* nothing for anyone */
	o = obj(S_IFREG | 0000, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), -EACCES);
}

static void test_check_root(void **state)
{
	struct fake f = {.ret = 1, .gids = {0}};
	struct perm_caller root = caller(0, 0, &f);
	struct perm_obj o;

	(void)state;
	/* read and write anything */
	o = obj(S_IFREG | 0000, 1000, 100);
	assert_int_equal(perm_check(&root, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&root, &o, PERM_WRITE), 0);
	assert_int_equal(perm_check(&root, &o, PERM_READ | PERM_WRITE), 0);
	/* execute a regular file only with some x bit */
	assert_int_equal(perm_check(&root, &o, PERM_EXEC), -EACCES);
	o = obj(S_IFREG | 0600, 0, 0);
	assert_int_equal(perm_check(&root, &o, PERM_EXEC), -EACCES);
	assert_int_equal(perm_check(&root, &o, PERM_READ | PERM_EXEC), -EACCES);
	o = obj(S_IFREG | 0001, 1000, 100);
	assert_int_equal(perm_check(&root, &o, PERM_EXEC), 0);
	o = obj(S_IFREG | 0010, 1000, 100);
	assert_int_equal(perm_check(&root, &o, PERM_EXEC), 0);
	o = obj(S_IFREG | 0100, 1000, 100);
	assert_int_equal(perm_check(&root, &o, PERM_READ | PERM_WRITE | PERM_EXEC), 0);
	/* search, list and write any directory */
	o = obj(S_IFDIR | 0000, 1000, 100);
	assert_int_equal(perm_check(&root, &o, PERM_EXEC), 0);
	assert_int_equal(perm_check(&root, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&root, &o, PERM_WRITE | PERM_EXEC), 0);
	assert_int_equal(perm_check(&root, &o, PERM_READ | PERM_WRITE | PERM_EXEC), 0);
	assert_int_equal(f.calls, 0);
}

static void test_check_combined_masks(void **state)
{
	struct fake f = {.ret = 2, .gids = {50, 100}};
	struct perm_caller owner = caller(1000, 50, &f);
	struct perm_caller member = caller(2000, 50, &f);
	struct perm_caller other = caller(3000, 300, NULL);
	struct perm_obj o = obj(S_IFREG | 0541, 1000, 100);

	(void)state;
	/* every bit asked for must be granted */
	assert_int_equal(perm_check(&owner, &o, PERM_READ | PERM_EXEC), 0);
	assert_int_equal(perm_check(&owner, &o, PERM_READ | PERM_WRITE), -EACCES);
	assert_int_equal(perm_check(&owner, &o, PERM_READ | PERM_WRITE | PERM_EXEC),
			 -EACCES);
	assert_int_equal(perm_check(&member, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&member, &o, PERM_READ | PERM_EXEC), -EACCES);
	assert_int_equal(perm_check(&other, &o, PERM_EXEC), 0);
	assert_int_equal(perm_check(&other, &o, PERM_READ | PERM_EXEC), -EACCES);
	/* an empty mask asks for nothing; bits beyond PERM_* are ignored */
	o = obj(S_IFREG | 0000, 1000, 100);
	assert_int_equal(perm_check(&other, &o, 0), 0);
	o = obj(S_IFREG | 0004, 1000, 100);
	assert_int_equal(perm_check(&other, &o, PERM_READ | 8), 0);
}

static void test_groups_laziness(void **state)
{
	struct fake f = {.ret = 2, .gids = {50, 100}};
	struct perm_caller root = caller(0, 0, &f);
	struct perm_caller owner = caller(1000, 50, &f);
	struct perm_caller c = caller(2000, 50, &f);
	struct perm_obj o;

	(void)state;
	/* root: never */
	o = obj(S_IFREG | 0070, 1000, 100);
	assert_int_equal(perm_check(&root, &o, PERM_READ), 0);
	assert_int_equal(f.calls, 0);
	/* the owner: never, though group and other differ */
	assert_int_equal(perm_check(&owner, &o, PERM_READ), -EACCES);
	assert_int_equal(f.calls, 0);
	/* group and other bits equal: membership cannot matter */
	o = obj(S_IFREG | 0755, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&c, &o, PERM_WRITE), -EACCES);
	o = obj(S_IFDIR | 0700, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_EXEC), -EACCES);
	assert_int_equal(f.calls, 0);
	/* the object's group is the caller's primary group */
	o = obj(S_IFREG | 0640, 1000, 50);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0);
	assert_int_equal(perm_check(&c, &o, PERM_WRITE), -EACCES);
	assert_int_equal(f.calls, 0);
	/* needed: another group, with group and other bits differing */
	o = obj(S_IFREG | 0640, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0);
	assert_int_equal(f.calls, 1);
	o = obj(S_IFREG | 0640, 1000, 101);
	assert_int_equal(perm_check(&c, &o, PERM_READ), -EACCES);
	assert_int_equal(f.calls, 2);
	/* a failing fetch: only the primary group counts */
	f = (struct fake){.ret = -EIO, .gids = {50, 100}};
	o = obj(S_IFREG | 0640, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), -EACCES);
	assert_int_equal(f.calls, 1);
	o = obj(S_IFREG | 0604, 1000, 100);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0); /* other bits */
	o = obj(S_IFREG | 0640, 1000, 50);
	assert_int_equal(perm_check(&c, &o, PERM_READ), 0);
	assert_int_equal(f.calls, 2);
}

static void test_sticky(void **state)
{
	struct fake f = {.ret = 2, .gids = {30, 20}};
	struct perm_caller root = caller(0, 0, &f);
	struct perm_caller dir_owner = caller(10, 99, &f);
	struct perm_caller victim_owner = caller(20, 99, &f);
	struct perm_caller stranger = caller(30, 20, &f); /* in the victim's group */
	struct perm_obj plain = obj(S_IFDIR | 0777, 10, 10);
	struct perm_obj sticky = obj(S_IFDIR | 01777, 10, 10);
	struct perm_obj victim = obj(S_IFREG | 0666, 20, 20);

	(void)state;
	/* no sticky bit: write and search on the directory are enough */
	assert_int_equal(perm_sticky(&stranger, &plain, &victim), 0);
	assert_int_equal(perm_sticky(&root, &plain, &victim), 0);
	/* sticky: root, the directory's owner, the entry's owner */
	assert_int_equal(perm_sticky(&root, &sticky, &victim), 0);
	assert_int_equal(perm_sticky(&dir_owner, &sticky, &victim), 0);
	assert_int_equal(perm_sticky(&victim_owner, &sticky, &victim), 0);
	/* anyone else, even in the entry's group and able to write it */
	assert_int_equal(perm_sticky(&stranger, &sticky, &victim), -EPERM);
	/* a sticky directory is judged the same for a directory entry */
	victim = obj(S_IFDIR | 0777, 20, 20);
	assert_int_equal(perm_sticky(&stranger, &sticky, &victim), -EPERM);
	assert_int_equal(perm_sticky(&victim_owner, &sticky, &victim), 0);
	assert_int_equal(f.calls, 0);
}

static void test_chmod(void **state)
{
	struct fake f = {.ret = 2, .gids = {50, 60}};
	struct perm_caller root = caller(0, 0, &f);
	struct perm_caller owner = caller(1000, 50, &f);
	struct perm_caller owner_in = caller(1000, 100, &f);
	struct perm_caller stranger = caller(2000, 100, &f);
	struct perm_obj o = obj(S_IFREG | 0644, 1000, 100);
	mode_t mode;

	(void)state;
	/* root: anything, setgid kept outside the group */
	mode = 02755;
	assert_int_equal(perm_chmod(&root, &o, &mode), 0);
	assert_int_equal(mode, 02755);
	/* not the owner (even in the file's group) */
	mode = 0600;
	assert_int_equal(perm_chmod(&stranger, &o, &mode), -EPERM);
	assert_int_equal(mode, 0600);
	/* the owner, no setgid: no group fetch needed */
	mode = 04700;
	assert_int_equal(perm_chmod(&owner, &o, &mode), 0);
	assert_int_equal(mode, 04700);
	assert_int_equal(f.calls, 0);
	/* the owner in the file's group (primary) keeps setgid */
	mode = 02755;
	assert_int_equal(perm_chmod(&owner_in, &o, &mode), 0);
	assert_int_equal(mode, 02755);
	assert_int_equal(f.calls, 0);
	/* the owner outside it: setgid silently dropped, the rest kept */
	mode = 06755;
	assert_int_equal(perm_chmod(&owner, &o, &mode), 0);
	assert_int_equal(mode, 04755);
	assert_int_equal(f.calls, 1);
	/* the owner in the file's group through a supplementary group */
	o = obj(S_IFREG | 0644, 1000, 60);
	mode = 02755;
	assert_int_equal(perm_chmod(&owner, &o, &mode), 0);
	assert_int_equal(mode, 02755);
	/* directories too */
	o = obj(S_IFDIR | 0755, 1000, 100);
	mode = 02775;
	assert_int_equal(perm_chmod(&owner, &o, &mode), 0);
	assert_int_equal(mode, 0775);
	/* a failing fetch: only the primary group counts */
	f = (struct fake){.ret = -EIO, .gids = {50, 60}};
	o = obj(S_IFREG | 0644, 1000, 60);
	mode = 02755;
	assert_int_equal(perm_chmod(&owner, &o, &mode), 0);
	assert_int_equal(mode, 0755);
}

static void test_chown(void **state)
{
	struct fake f = {.ret = 2, .gids = {50, 60}};
	struct perm_caller root = caller(0, 0, &f);
	struct perm_caller owner = caller(1000, 50, &f);
	struct perm_caller stranger = caller(2000, 100, &f);
	struct perm_obj o = obj(S_IFREG | 0644, 1000, 100);
	const uid_t nou = (uid_t)-1;
	const gid_t nog = (gid_t)-1;

	(void)state;
	/* root: anything */
	assert_int_equal(perm_chown(&root, &o, 2000, 300), 0);
	assert_int_equal(perm_chown(&root, &o, 0, 0), 0);
	assert_int_equal(perm_chown(&root, &o, nou, 7), 0);
	assert_int_equal(perm_chown(&root, &o, nou, nog), 0);
	/* the owner: the owner may only stay itself */
	assert_int_equal(perm_chown(&owner, &o, 1000, nog), 0);
	assert_int_equal(perm_chown(&owner, &o, 2000, nog), -EPERM);
	assert_int_equal(perm_chown(&owner, &o, 0, nog), -EPERM);
	assert_int_equal(perm_chown(&owner, &o, nou, nog), 0);
	assert_int_equal(f.calls, 0);
	/* ... and the group go to one of its groups, or stay as it is */
	assert_int_equal(perm_chown(&owner, &o, nou, 50), 0);  /* primary */
	assert_int_equal(perm_chown(&owner, &o, nou, 60), 0);  /* supplementary */
	assert_int_equal(perm_chown(&owner, &o, nou, 100), 0); /* unchanged */
	assert_int_equal(perm_chown(&owner, &o, nou, 70), -EPERM);
	assert_int_equal(perm_chown(&owner, &o, 1000, 60), 0);
	assert_int_equal(perm_chown(&owner, &o, 1000, 70), -EPERM);
	assert_int_equal(perm_chown(&owner, &o, 2000, 60), -EPERM);
	/* anyone else may name neither, not even the current values */
	assert_int_equal(perm_chown(&stranger, &o, 1000, nog), -EPERM);
	assert_int_equal(perm_chown(&stranger, &o, 2000, nog), -EPERM);
	assert_int_equal(perm_chown(&stranger, &o, nou, 100), -EPERM);
	assert_int_equal(perm_chown(&stranger, &o, 1000, 100), -EPERM);
	assert_int_equal(perm_chown(&stranger, &o, nou, nog), 0);
	/* a failing fetch: the owner's primary group only */
	f = (struct fake){.ret = -EIO, .gids = {50, 60}};
	assert_int_equal(perm_chown(&owner, &o, nou, 60), -EPERM);
	assert_int_equal(perm_chown(&owner, &o, nou, 50), 0);
}

static void test_utimes(void **state)
{
	struct fake f = {.ret = 2, .gids = {50, 100}};
	struct perm_caller root = caller(0, 0, &f);
	struct perm_caller owner = caller(1000, 50, &f);
	struct perm_caller member = caller(2000, 50, &f);
	struct perm_caller other = caller(3000, 300, NULL);
	struct perm_obj o = obj(S_IFREG | 0664, 1000, 100);

	(void)state;
	/* root and the owner: explicit times and "now" */
	assert_int_equal(perm_utimes(&root, &o, false), 0);
	assert_int_equal(perm_utimes(&root, &o, true), 0);
	assert_int_equal(perm_utimes(&owner, &o, false), 0);
	assert_int_equal(perm_utimes(&owner, &o, true), 0);
	/* ... even without write permission */
	o = obj(S_IFREG | 0444, 1000, 100);
	assert_int_equal(perm_utimes(&owner, &o, true), 0);
	assert_int_equal(perm_utimes(&owner, &o, false), 0);
	/* anyone else: never explicit times, even able to write */
	o = obj(S_IFREG | 0666, 1000, 100);
	assert_int_equal(perm_utimes(&member, &o, false), -EPERM);
	assert_int_equal(perm_utimes(&other, &o, false), -EPERM);
	/* "now" with write permission */
	assert_int_equal(perm_utimes(&other, &o, true), 0);
	o = obj(S_IFREG | 0664, 1000, 100);
	assert_int_equal(perm_utimes(&member, &o, true), 0);
	/* "now" without it */
	assert_int_equal(perm_utimes(&other, &o, true), -EACCES);
	o = obj(S_IFREG | 0646, 1000, 100); /* the group class has no w */
	assert_int_equal(perm_utimes(&member, &o, true), -EACCES);
}

static void test_kill(void **state)
{
	struct fake f = {.ret = 2, .gids = {50, 60}};
	struct perm_caller root = caller(0, 0, &f);
	struct perm_caller owner = caller(1000, 50, &f);
	struct perm_caller outsider = caller(1000, 70, NULL); /* owner, not in 100 */

	(void)state;
	/* a write: setuid always, setgid only with group execute */
	assert_int_equal(perm_kill_write(S_IFREG | 06755), S_ISUID | S_ISGID);
	assert_int_equal(perm_kill_write(S_IFREG | 04700), S_ISUID);
	assert_int_equal(perm_kill_write(S_IFREG | 02745), 0); /* locking mark */
	assert_int_equal(perm_kill_write(S_IFREG | 02775), S_ISGID);
	assert_int_equal(perm_kill_write(S_IFREG | 00777), 0);
	assert_int_equal(perm_kill_write(S_IFDIR | 06775), 0);
	/* a truncate: the same, except by root */
	assert_int_equal(perm_kill_truncate(&owner, S_IFREG | 06755), S_ISUID | S_ISGID);
	assert_int_equal(perm_kill_truncate(&owner, S_IFREG | 02745), 0);
	assert_int_equal(perm_kill_truncate(&root, S_IFREG | 06755), 0);
	assert_int_equal(perm_kill_truncate(&owner, S_IFDIR | 04755), 0);
	assert_int_equal(f.calls, 0);
	/* a chown: setuid even by root; setgid with group execute, or when
	 * the caller is not in the file's group */
	struct perm_obj o = obj(S_IFREG | 06755, 1000, 100);

	assert_int_equal(perm_kill_chown(&root, &o), S_ISUID | S_ISGID);
	assert_int_equal(perm_kill_chown(&owner, &o), S_ISUID | S_ISGID);
	o = obj(S_IFREG | 02745, 1000, 100);
	assert_int_equal(perm_kill_chown(&root, &o), 0);
	assert_int_equal(perm_kill_chown(&outsider, &o), S_ISGID);
	o = obj(S_IFREG | 02745, 1000, 60); /* a supplementary group of owner */
	assert_int_equal(perm_kill_chown(&owner, &o), 0);
	assert_int_equal(f.calls, 1);
	o = obj(S_IFREG | 00755, 1000, 100);
	assert_int_equal(perm_kill_chown(&outsider, &o), 0);
	/* directories keep both (setgid is their group inheritance) */
	o = obj(S_IFDIR | 06775, 1000, 100);
	assert_int_equal(perm_kill_chown(&root, &o), 0);
	assert_int_equal(perm_kill_chown(&outsider, &o), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_group),
		cmocka_unit_test(test_check_owner_class),
		cmocka_unit_test(test_check_group_class),
		cmocka_unit_test(test_check_other_class),
		cmocka_unit_test(test_check_root),
		cmocka_unit_test(test_check_combined_masks),
		cmocka_unit_test(test_groups_laziness),
		cmocka_unit_test(test_sticky),
		cmocka_unit_test(test_chmod),
		cmocka_unit_test(test_chown),
		cmocka_unit_test(test_utimes),
		cmocka_unit_test(test_kill),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
