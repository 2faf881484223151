/*
 * perm.c — POSIX mode-bit decisions for the daemon (see perm.h).
 *
 * Each function mirrors one kernel rule, named in its comment, so the
 * mount behaves as a local file system does for ordinary users; root
 * (uid 0) is treated as holding the capabilities those rules test.
 */
#include "perm.h"

#include <errno.h>

bool perm_in_group(const struct perm_caller *c, gid_t gid)
{
	const gid_t *gids;
	int n;

	if (gid == c->gid)
		return true;
	if (!c->groups)
		return false;
	n = c->groups(c->ctx, &gids);
	for (int i = 0; i < n; i++)
		if (gids[i] == gid)
			return true;
	return false;
}

/* generic_permission(): the owner class, else the group class, else
 * other; only one class applies (an owner with fewer bits than other is
 * denied).  Root may read and write anything, search any directory and
 * execute a file with any execute bit. */
int perm_check(const struct perm_caller *c, const struct perm_obj *o, int mask)
{
	mode_t bits;

	mask &= PERM_READ | PERM_WRITE | PERM_EXEC;
	if (perm_root(c)) {
		if (!(mask & PERM_EXEC) || S_ISDIR(o->mode) || (o->mode & 0111))
			return 0;
		return -EACCES;
	}
	if (c->uid == o->uid)
		bits = (o->mode >> 6) & 7;
	else if (((o->mode >> 3) & 7) == (o->mode & 7))
		/* Group and other agree: membership cannot matter, and the
		 * groups need not be fetched. */
		bits = o->mode & 7;
	else if (perm_in_group(c, o->gid))
		bits = (o->mode >> 3) & 7;
	else
		bits = o->mode & 7;
	return ((mode_t)mask & ~bits) ? -EACCES : 0;
}

/* check_sticky(): in a sticky directory only the entry's owner, the
 * directory's owner or root may remove or rename it. */
int perm_sticky(const struct perm_caller *c, const struct perm_obj *dir,
		const struct perm_obj *victim)
{
	if (!(dir->mode & S_ISVTX) || perm_root(c))
		return 0;
	if (c->uid == dir->uid || c->uid == victim->uid)
		return 0;
	return -EPERM;
}

/* setattr_prepare() and chmod_common(): only the owner or root; an
 * unprivileged owner outside the file's group loses setgid. */
int perm_chmod(const struct perm_caller *c, const struct perm_obj *o, mode_t *mode)
{
	if (perm_root(c))
		return 0;
	if (c->uid != o->uid)
		return -EPERM;
	if ((*mode & S_ISGID) && !perm_in_group(c, o->gid))
		*mode &= (mode_t)~S_ISGID;
	return 0;
}

/* chown_ok() / chgrp_ok(): root changes anything; the owner may "change"
 * the owner to itself and the group to one of its groups; nobody else
 * may name either. */
int perm_chown(const struct perm_caller *c, const struct perm_obj *o, uid_t uid,
	       gid_t gid)
{
	if (perm_root(c))
		return 0;
	if (uid != (uid_t)-1 && (c->uid != o->uid || uid != o->uid))
		return -EPERM;
	if (gid != (gid_t)-1 &&
	    (c->uid != o->uid || (gid != o->gid && !perm_in_group(c, gid))))
		return -EPERM;
	return 0;
}

/* setattr_prepare() and notify_change()'s ATTR_TOUCH: explicit times need
 * the owner (or CAP_FOWNER); "now" is also allowed to anyone who may
 * write. */
int perm_utimes(const struct perm_caller *c, const struct perm_obj *o, bool both_now)
{
	if (perm_root(c) || c->uid == o->uid)
		return 0;
	if (!both_now)
		return -EPERM;
	return perm_check(c, o, PERM_WRITE);
}

/* ---- killing privileges ------------------------------------------------- */

mode_t perm_kill_write(mode_t mode)
{
	mode_t kill = 0;

	if (S_ISDIR(mode))
		return 0;
	if (mode & S_ISUID)
		kill |= S_ISUID;
	if ((mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	return kill;
}

mode_t perm_kill_truncate(const struct perm_caller *c, mode_t mode)
{
	return perm_root(c) ? 0 : perm_kill_write(mode);
}

mode_t perm_kill_chown(const struct perm_caller *c, const struct perm_obj *o)
{
	mode_t kill = 0;

	if (S_ISDIR(o->mode))
		return 0;
	if (o->mode & S_ISUID)
		kill |= S_ISUID;
	if ((o->mode & S_ISGID) &&
	    ((o->mode & S_IXGRP) || (!perm_root(c) && !perm_in_group(c, o->gid))))
		kill |= S_ISGID;
	return kill;
}
