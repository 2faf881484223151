/*
 * perm.h — POSIX mode-bit permissions, decided in the daemon.
 *
 * custodianfs checks mode bits itself instead of mounting with
 * default_permissions: with kernel checks, every create or unlink in a
 * directory made the kernel fetch that directory's attributes again
 * (one GETATTR round trip per file in tar x and rm -rf) before its next
 * check.  These functions make the decisions the kernel's
 * generic_permission(), may_delete() and setattr_prepare() make, on the
 * backing object's mode and owner (no ACLs: the store has no xattrs),
 * for a caller given by fsuid, fsgid and its groups.  A caller with uid 0
 * is treated as holding CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN and
 * CAP_FSETID.
 *
 * Pure C, no I/O: the caller's supplementary groups are fetched through a
 * callback only when a decision depends on them (the caller is neither
 * root nor the owner, and the object's group is not its primary group).
 * See docs/daemon.md, "Permissions".
 */
#ifndef CUSTODIAN_PERM_H
#define CUSTODIAN_PERM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "errs.h"

/* Access masks, as in access(2) and MAY_* in the kernel. */
#define PERM_EXEC 1
#define PERM_WRITE 2
#define PERM_READ 4

/* The mode bits a write, truncate or chown may clear ("kill privileges"):
 * without FUSE_HANDLE_KILLPRIV the kernel clears them with a chmod it
 * sends as the caller; with it, the daemon clears them (perm_kill_*). */
#define PERM_KILLPRIV_MASK ((mode_t)(S_ISUID | S_ISGID))

/* What a decision looks at of a file or directory. */
struct perm_obj {
	mode_t mode; /* type and permission bits (st_mode) */
	uid_t uid;   /* owner */
	gid_t gid;   /* group */
};

/* Fetches the caller's groups (primary first) into *gids; returns how
 * many (>= 1), or -errno (the caller then counts as in its primary group
 * only: fewer groups can only deny more). */
typedef int (*perm_groups_fn)(void *ctx, const gid_t **gids);

/* Who asks. */
struct perm_caller {
	uid_t uid;             /* fsuid of the request */
	gid_t gid;             /* fsgid of the request */
	perm_groups_fn groups; /* fetches the supplementary groups; NULL: none */
	void *ctx;             /* passed to groups */
};

/* Is the caller root (all the capabilities a check considers)? */
static inline bool perm_root(const struct perm_caller *c)
{
	return c->uid == 0;
}

/* Is gid the caller's primary group or one of its groups? */
bool perm_in_group(const struct perm_caller *c, gid_t gid);

/* May the caller access o with mask (PERM_*)?  0 or -EACCES. */
int perm_check(const struct perm_caller *c, const struct perm_obj *o,
	       int mask) MUST_CHECK;

/* May the caller remove or rename entry `victim` from directory dir, as
 * far as the sticky bit goes (write and search on dir are perm_check's)?
 * 0 or -EPERM. */
int perm_sticky(const struct perm_caller *c, const struct perm_obj *dir,
		const struct perm_obj *victim) MUST_CHECK;

/* chmod of o to *mode: 0 (with S_ISGID dropped from *mode when the caller
 * is neither root nor in o's group, as Linux does silently) or -EPERM. */
int perm_chmod(const struct perm_caller *c, const struct perm_obj *o,
	       mode_t *mode) MUST_CHECK;

/* chown of o to uid and/or gid ((uid_t)-1 / (gid_t)-1: unchanged): root
 * may do anything, the owner may only change the group to one of its
 * own groups.  0 or -EPERM. */
int perm_chown(const struct perm_caller *c, const struct perm_obj *o, uid_t uid,
	       gid_t gid) MUST_CHECK;

/* Setting o's times: to explicit values needs the owner or root (-EPERM);
 * to "now" (both_now) also write permission (-EACCES). */
int perm_utimes(const struct perm_caller *c, const struct perm_obj *o,
		bool both_now) MUST_CHECK;

/*
 * The bits to clear from a file of mode `mode`, as Linux does locally
 * (should_remove_suid, setattr_should_drop_sgid); 0 for directories.
 * - perm_kill_write: a write by a caller without CAP_FSETID (the kernel
 *   decides that and says so; see ops.c, "Killing privileges"): setuid,
 *   and setgid when group-executable (without group execute it marks
 *   mandatory locking, which a write keeps).
 * - perm_kill_truncate: a truncate by the caller: as a write, unless the
 *   caller is root (counted as holding CAP_FSETID).
 * - perm_kill_chown: a chown or chgrp, by anyone, root included: setuid
 *   always; setgid when group-executable, or when the caller is neither
 *   root nor in the file's group o->gid (its group before the change).
 */
mode_t perm_kill_write(mode_t mode);
mode_t perm_kill_truncate(const struct perm_caller *c, mode_t mode);
mode_t perm_kill_chown(const struct perm_caller *c, const struct perm_obj *o);

#endif
