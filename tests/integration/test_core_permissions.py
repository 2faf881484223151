"""POSIX permission semantics for unprivileged users through the allow_other
mount: the safety net for moving mode-bit checks from the kernel
(default_permissions) into the daemon.

Everything asserted here is what Linux does on a local filesystem (ext4,
tmpfs) for ordinary users; the daemon must reproduce it exactly, including
the errno (EACCES for a missing mode bit, EPERM for a missing ownership or
capability), and leave the file system unchanged when it refuses.
test_core_users.py has the first basics (mode bits between users, files
belonging to their creator, a group-readable file, a 0700/0711 directory);
this module goes further:

 1. Search permission on every walk, also through names the kernel has
    cached (chmod 0700 of a directory whose child was just stat'ed or
    listed denies at once), and the owner class winning over "other"
    (an owner without x on its directory may not search it).
 2. access(2) for R_OK/W_OK/X_OK/F_OK, root's X_OK rule, chdir.
 3. Execute-only binaries (0711), no exec without an x bit, root needs one
    x bit to execute but reads anything.
 4. open(O_TRUNC) (also O_RDONLY|O_TRUNC) and truncate() need write
    permission; ftruncate() on a descriptor open for writing does not
    check the mode again.
 5. chmod/chown/chgrp ownership rules and chmod's silent setgid drop.
 6. utimensat: explicit times need ownership (EPERM), "now" needs
    ownership or write permission (EACCES).
 7. The sticky bit: unlink, rename, rename-over and rmdir.
 8. rename: write on both parents, and write on a directory moved to
    another parent (its '..' changes).
 9. protected_hardlinks=1 (Debian's default).
10. setuid/setgid cleared by writes and chown, beyond
    test_core_setattr_audit.py::test_setuid_bits_cleared_as_linux_does.
11. Group class via a supplementary group, including group bits that deny
    a member what "other" may do.
12. mkdir/create/symlink/mkfifo need write and search on the parent.

Every user operation runs as a separate process made by helpers.run_as
(uid, primary gid and supplementary groups set) executing _RUNNER, which
performs a list of calls and reports each one's errno.  Users (conftest):
cust_alice (supplementary group cust_agents), cust_bob (cust_supervisors),
cust_carol (cust_records); each has its own primary group.
"""

import errno
import grp
import json
import os
import shutil
import stat
import time

import pytest

import helpers

EACCES = errno.EACCES
EPERM = errno.EPERM

# Runs in the user's process: A = {"calls": [[op, arg...], ...]}; prints a
# JSON list with, for each call, {"e": errno or 0, ...outputs}.
_RUNNER = r"""
import errno, json, os, stat, sys
A = json.loads(sys.argv[1])


def _open(path, flags, mode=0o644):
    os.close(os.open(path, flags, mode))


def _read(out, path):
    with open(path, "rb") as f:
        out["data"] = f.read().decode("latin-1")


def _write(path, data="x"):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def _exec(out, path):
    import subprocess
    out["rc"] = subprocess.run([path], stdin=subprocess.DEVNULL).returncode


def _access(path, mode):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    ctypes.set_errno(0)
    if libc.access(os.fsencode(path), int(mode)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def _stat(out, path):
    st = os.stat(path)
    out["mode"] = stat.S_IMODE(st.st_mode)


def _list(out, path):
    out["names"] = sorted(os.listdir(path))


def _fd_sequence(out, path):
    # Opens path for writing, drops write permission with fchmod (the
    # caller owns it), then: ftruncate and pwrite through the descriptor,
    # truncate by path.
    fd = os.open(path, os.O_RDWR)
    try:
        os.fchmod(fd, 0o444)
        out["ftruncate"] = _e(os.ftruncate, fd, 4)
        out["pwrite"] = _e(os.pwrite, fd, b"AB", 0)
        out["truncate"] = _e(os.truncate, path, 1)
    finally:
        os.close(fd)


OPS = {
    "stat": lambda o, p: _stat(o, p),
    "read": _read,
    "list": _list,
    "exec": _exec,
    "fd_sequence": _fd_sequence,
    "open_r": lambda o, p: _open(p, os.O_RDONLY),
    "open_w": lambda o, p: _open(p, os.O_WRONLY),
    "open_w_trunc": lambda o, p: _open(p, os.O_WRONLY | os.O_TRUNC),
    "open_r_trunc": lambda o, p: _open(p, os.O_RDONLY | os.O_TRUNC),
    "create": lambda o, p: _open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL),
    "write": lambda o, p, d="x": _write(p, d),
    "access": lambda o, p, m: _access(p, m),
    "chdir": lambda o, p: os.chdir(p),
    "truncate": lambda o, p, n: os.truncate(p, n),
    "chmod": lambda o, p, m: os.chmod(p, m),
    "chown": lambda o, p, u, g: os.chown(p, u, g),
    "utime": lambda o, p, t=None: os.utime(p, tuple(t) if t is not None else None),
    "link": lambda o, src, dst: os.link(src, dst),
    "symlink": lambda o, target, p: os.symlink(target, p),
    "mkfifo": lambda o, p: os.mkfifo(p, 0o644),
    "mkdir": lambda o, p: os.mkdir(p),
    "rmdir": lambda o, p: os.rmdir(p),
    "unlink": lambda o, p: os.unlink(p),
    "rename": lambda o, src, dst: os.rename(src, dst),
}


def _e(fn, *a):
    try:
        fn(*a)
        return 0
    except OSError as x:
        return x.errno


res = []
for call in A["calls"]:
    out = {}
    out["e"] = _e(OPS[call[0]], out, *call[1:])
    res.append(out)
sys.stdout.write(json.dumps(res))
"""


def calls(user, *cs):
    """Runs calls ((op, arg...) tuples, in order) in one process as user
    ("root" for uid 0); returns one dict per call: {"e": errno or 0, ...}."""
    cs = [[c[0], *[str(a) if isinstance(a, os.PathLike) else a for a in c[1:]]]
          for c in cs]
    r = helpers.run_as(user, [helpers.PYTHON, "-c", _RUNNER, json.dumps({"calls": cs})],
                       timeout=60)
    if r.returncode != 0:
        pytest.fail(f"{user} {cs}: exit {r.returncode}\n{r.err[-3000:]}")
    return json.loads(r.out)


def errs(user, *cs):
    """The errno (or 0) of each call, as a list."""
    return [o["e"] for o in calls(user, *cs)]


def op(user, name, *args):
    """The errno (or 0) of one call."""
    return calls(user, (name, *args))[0]["e"]


def mode_of(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def gid_of(name):
    return grp.getgrnam(name).gr_gid


def mkdir(p, mode=0o755, owner=None, group=None):
    """mkdir as root, then chown (pwd entry or uid) and chmod."""
    os.mkdir(p)
    _own(p, owner, group)
    os.chmod(p, mode)
    return p


def mkfile(p, data=b"data", mode=0o644, owner=None, group=None):
    """A file made by root, then chown'ed and chmod'ed."""
    p.write_bytes(data)
    _own(p, owner, group)
    os.chmod(p, mode)
    return p


def _own(p, owner, group):
    if owner is None and group is None:
        return
    uid = owner.pw_uid if hasattr(owner, "pw_uid") else (owner if owner is not None else -1)
    if group is None and hasattr(owner, "pw_gid"):
        group = owner.pw_gid
    os.chown(p, uid, -1 if group is None else group)


@pytest.fixture
def work(module_mount, users, request):
    """A fresh root-owned 0755 directory on the module's mount."""
    d = module_mount.mnt / request.node.name
    d.mkdir()
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


# --- 1. search permission ------------------------------------------------------

def test_chmod_0700_denies_at_once_through_a_cached_name(work, users):
    d = mkdir(work / "d")
    f = mkfile(d / "inside", b"secret")
    os.stat(f)  # root looks it up: the kernel caches the name
    assert errs("cust_alice", ("stat", f), ("read", f)) == [0, 0]
    os.chmod(d, 0o700)
    # no sleep: a cached name must not let alice walk through
    assert errs("cust_alice", ("stat", f), ("open_r", f), ("read", f)) == [EACCES] * 3
    assert f.read_bytes() == b"secret"
    os.chmod(d, 0o755)
    assert op("cust_alice", "stat", f) == 0


def test_chmod_0700_of_a_listed_directory_denies_its_children_at_once(work, users):
    d = mkdir(work / "populated")
    names = [f"f{i:02d}" for i in range(24)]
    for n in names:
        mkfile(d / n, n.encode())
    assert sorted(os.listdir(d)) == names  # root lists (READDIRPLUS may cache)
    child = d / "f07"
    os.stat(child)
    r = calls("cust_alice", ("list", d), ("stat", child))
    assert r[0] == {"e": 0, "names": names} and r[1]["e"] == 0
    os.chmod(d, 0o700)
    assert errs("cust_alice", ("stat", child), ("open_r", child), ("list", d),
                ("stat", d / "f08")) == [EACCES] * 4
    assert child.read_bytes() == b"f07"


def test_owner_class_wins_over_other_for_search(work, users):
    """Mode bits are chosen by class (owner, else group, else other), never
    combined: an owner without x may not search where others may."""
    alice = users["cust_alice"]
    d = mkdir(work / "alices", 0o755, owner=alice)
    f = mkfile(d / "inside", b"in")
    os.chmod(d, 0o601)  # owner rw-, other --x
    assert errs("cust_alice", ("stat", f), ("open_r", f)) == [EACCES, EACCES]
    assert errs("cust_bob", ("stat", f), ("read", f)) == [0, 0]
    # ...and the other way round for reading the directory
    r = calls("cust_alice", ("list", d))[0]
    assert r == {"e": 0, "names": ["inside"]}
    assert op("cust_bob", "list", d) == EACCES
    os.chmod(d, 0o701)  # owner rwx: both may search
    assert op("cust_alice", "stat", f) == 0
    assert op("cust_bob", "stat", f) == 0


def _walk_tree(work):
    """work/priv (root, 0700) / sub (0755) / f, sub/deeper (0755) / g; root
    walks all of it, so the kernel holds every name (directory names under
    a closed directory are cached; docs/daemon.md, "Path walks")."""
    priv = mkdir(work / "priv", 0o700)
    sub = mkdir(priv / "sub")
    deeper = mkdir(sub / "deeper")
    f = mkfile(sub / "f", b"secret")
    g = mkfile(deeper / "g", b"deeper secret")
    for p in (sub, deeper, f, g):
        os.stat(p)
    assert sorted(os.listdir(sub)) == ["deeper", "f"]
    return priv, sub, deeper, f, g


def _refused_through(sub, deeper, f, g):
    """Every way in through sub is refused to alice, and nothing changes."""
    got = errs("cust_alice",
               ("stat", sub), ("stat", deeper), ("stat", f), ("stat", g),
               ("stat", sub / "absent"), ("list", sub), ("list", deeper),
               ("open_r", f), ("read", g), ("access", sub, os.F_OK),
               ("access", deeper, os.X_OK), ("chdir", sub), ("chdir", deeper),
               ("create", sub / "new"), ("mkdir", deeper / "newdir"),
               ("unlink", f), ("rename", g, deeper / "g2"),
               ("chmod", deeper, 0o777), ("utime", sub))
    assert got == [EACCES] * len(got)
    assert sorted(os.listdir(sub)) == ["deeper", "f"]
    assert os.listdir(deeper) == ["g"]
    assert f.read_bytes() == b"secret" and g.read_bytes() == b"deeper secret"
    assert mode_of(deeper) == 0o755


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict_walks"])
def test_cached_directory_names_under_a_0700_directory_let_nobody_through(
        mount_factory, store, users, strict):
    """The kernel walks cached names without asking; the daemon checks
    search permission on every directory above the one a request is about,
    so names cached by root's walk through a 0700 directory (or, with
    -o strict_walks, never cached there) let no one else in."""
    opts = "allow_other,strict_walks" if strict else "allow_other"
    m = mount_factory(store, options=("-o", opts))
    work = mkdir(m.mnt / "work")
    priv, sub, deeper, f, g = _walk_tree(work)
    _refused_through(sub, deeper, f, g)
    # every refusal was recorded, as the kernel's never were (access and
    # chdir ask, they are not refused operations: 4 of the 19 calls)
    out = helpers.run([helpers.CUSTODIAN, "audit", "log", store.path, "--passfile",
                       store.passfile, "--denied", "--user", "cust_alice", "--json"]).out
    recs = [json.loads(line) for line in out.splitlines()]
    assert len(recs) >= 15 and all(r["outcome"] == EACCES for r in recs), out[-2000:]
    assert sum("mode bits" in (r.get("detail") or "") for r in recs) >= 15, out[-2000:]
    # and once priv opens up, the same names work for alice at once
    os.chmod(m.mnt / "work" / "priv", 0o755)
    assert errs("cust_alice", ("stat", g), ("read", f), ("list", sub)) == [0, 0, 0]


def test_search_through_a_group_only_directory(work, users):
    """0710 with group cust_agents: alice (a member, through a supplementary
    group) walks through the cached names, bob (not a member) is refused."""
    gate = mkdir(work / "gate", 0o710, group=gid_of("cust_agents"))
    sub = mkdir(gate / "sub")
    f = mkfile(sub / "f", b"for agents")
    os.stat(f)
    assert errs("cust_bob", ("stat", sub), ("stat", f), ("read", f)) == [EACCES] * 3
    r = calls("cust_alice", ("stat", sub), ("read", f))
    assert [o["e"] for o in r] == [0, 0] and r[1]["data"] == "for agents"
    assert errs("cust_bob", ("list", sub)) == [EACCES]


def test_chmod_0700_two_levels_up_denies_at_once(work, users):
    a = mkdir(work / "a")
    b = mkdir(a / "b")
    c = mkdir(b / "c")
    f = mkfile(c / "f", b"x")
    assert errs("cust_alice", ("stat", f), ("list", c), ("stat", c / "none")) == \
        [0, 0, errno.ENOENT]  # the kernel may now cache all of these
    os.chmod(a, 0o700)
    assert errs("cust_alice", ("stat", b), ("stat", c), ("stat", f), ("list", c),
                ("stat", c / "none"), ("open_r", f)) == [EACCES] * 6
    os.chmod(a, 0o755)
    assert errs("cust_alice", ("stat", f), ("list", c)) == [0, 0]


def test_rename_into_a_0700_directory_denies_at_once(work, users):
    """A rename moves the kernel's cached names with their timeouts; moving a
    tree (or a file) from where everybody may search to where not everybody
    may must shut them at once."""
    pub = mkdir(work / "pub")
    tree = mkdir(pub / "tree")
    inner = mkdir(tree / "inner")
    f = mkfile(inner / "f", b"moved")
    loose = mkfile(pub / "loose", b"loose")
    assert errs("cust_alice", ("stat", f), ("list", inner), ("stat", loose),
                ("stat", inner / "none")) == [0, 0, 0, errno.ENOENT]
    priv = mkdir(work / "priv", 0o700)
    os.rename(tree, priv / "tree")
    os.rename(loose, priv / "loose")
    assert errs("cust_alice", ("stat", priv / "tree" / "inner" / "f"),
                ("list", priv / "tree" / "inner"), ("stat", priv / "loose"),
                ("read", priv / "loose"),
                ("stat", priv / "tree" / "inner" / "none")) == [EACCES] * 5
    assert (priv / "tree" / "inner" / "f").read_bytes() == b"moved"


# --- 2. access(2), chdir ----------------------------------------------------------

def test_access_matches_mode_bits(work, users):
    alice = users["cust_alice"]
    R, W, X, F = os.R_OK, os.W_OK, os.X_OK, os.F_OK
    f640 = mkfile(work / "f640", mode=0o640)
    f604 = mkfile(work / "f604", mode=0o604)
    f602 = mkfile(work / "f602", mode=0o602)
    f755 = mkfile(work / "f755", mode=0o755)
    mine = mkfile(work / "mine077", mode=0o077, owner=alice)
    priv = mkdir(work / "priv", 0o700)
    child = mkfile(priv / "child")
    trav = mkdir(work / "trav", 0o711)
    checks = [
        (f640, F, 0), (f640, R, EACCES), (f640, W, EACCES), (f640, X, EACCES),
        (f604, R, 0), (f604, W, EACCES), (f604, R | W, EACCES), (f604, X, EACCES),
        (f602, W, 0), (f602, R, EACCES),
        (f755, R | X, 0), (f755, X, 0), (f755, W, EACCES), (f755, R | W, EACCES),
        (mine, R, EACCES), (mine, W, EACCES), (mine, X, EACCES), (mine, F, 0),
        (priv, F, 0), (priv, R, EACCES), (priv, X, EACCES),
        (child, F, EACCES), (child, R, EACCES),
        (trav, X, 0), (trav, R, EACCES), (trav, W, EACCES),
        (work / "absent", F, errno.ENOENT),
    ]
    got = errs("cust_alice", *[("access", p, m) for p, m, _ in checks])
    assert [(p.name, m, e) for (p, m, _), e in zip(checks, got)] == \
           [(p.name, m, e) for p, m, e in checks]
    # the owner class: bob (other) gets what alice (owner, ---) does not
    assert errs("cust_bob", ("access", mine, R | W | X)) == [0]
    # root: R and W on anything, X only where some x bit is set
    f000 = mkfile(work / "f000", mode=0o000)
    f100 = mkfile(work / "f100", mode=0o100)
    f001 = mkfile(work / "f001", mode=0o001)
    f644 = mkfile(work / "f644", mode=0o644)
    d000 = mkdir(work / "d000", 0o000)
    assert errs("root", ("access", f000, R | W), ("access", f000, X),
                ("access", f644, X), ("access", f100, X), ("access", f001, X),
                ("access", d000, R | W | X)) == [0, EACCES, EACCES, 0, 0, 0]


def test_chdir_needs_search(work, users):
    priv = mkdir(work / "priv", 0o700)
    trav = mkdir(work / "trav", 0o711)
    rd = mkdir(work / "readonly", 0o744)  # other r--
    d000 = mkdir(work / "d000", 0o000)
    assert errs("cust_alice", ("chdir", priv), ("chdir", trav), ("chdir", rd),
                ("chdir", d000)) == [EACCES, 0, EACCES, EACCES]
    assert errs("root", ("chdir", d000), ("chdir", priv)) == [0, 0]


# --- 3. execute ------------------------------------------------------------------

def test_execute_only_and_no_execute_without_x(work, users):
    true_bytes = open("/bin/true", "rb").read()
    t711 = mkfile(work / "true711", true_bytes, 0o711)
    t644 = mkfile(work / "true644", true_bytes, 0o644)
    t600 = mkfile(work / "true600", true_bytes, 0o600)
    t744 = mkfile(work / "true744", true_bytes, 0o744)
    r = calls("cust_alice", ("exec", t711), ("read", t711), ("open_r", t711),
              ("exec", t644), ("exec", t744))
    assert r[0] == {"e": 0, "rc": 0}
    assert [o["e"] for o in r[1:]] == [EACCES, EACCES, EACCES, EACCES]
    r = calls("root", ("exec", t600), ("exec", t644), ("read", t600), ("exec", t744))
    assert [o["e"] for o in r] == [EACCES, EACCES, 0, 0]
    assert r[2]["data"].encode("latin-1") == true_bytes
    assert r[3]["rc"] == 0


# --- 4. truncation --------------------------------------------------------------

def test_truncate_needs_write_permission(work, users):
    f = mkfile(work / "ro", b"keep me", 0o664)  # root:root, other r--
    assert errs("cust_alice", ("open_w_trunc", f), ("open_r_trunc", f),
                ("truncate", f, 0), ("truncate", f, 100), ("open_w", f)) == [EACCES] * 5
    assert f.read_bytes() == b"keep me"
    assert os.stat(f).st_size == 7
    # with write permission, O_RDONLY|O_TRUNC truncates (Linux does)
    w = mkfile(work / "rw", b"0123456789", 0o666)
    assert op("cust_alice", "open_r_trunc", w) == 0
    assert w.read_bytes() == b""


def test_ftruncate_uses_the_descriptor_not_the_mode(work, users):
    alice = users["cust_alice"]
    f = mkfile(work / "mine", b"0123456789", 0o644, owner=alice)
    r = calls("cust_alice", ("fd_sequence", f))[0]
    assert r == {"e": 0, "ftruncate": 0, "pwrite": 0, "truncate": EACCES}
    assert mode_of(f) == 0o444
    assert f.read_bytes() == b"AB23"
    # truncate by path with write permission (root's 0666 file) works
    g = mkfile(work / "shared", b"0123456789", 0o666)
    assert op("cust_alice", "truncate", g, 3) == 0
    assert g.read_bytes() == b"012"


# --- 5. ownership ----------------------------------------------------------------

def test_chmod_and_chown_ownership_rules(work, users):
    alice, bob = users["cust_alice"], users["cust_bob"]
    agents, records = gid_of("cust_agents"), gid_of("cust_records")
    f = mkfile(work / "alices", b"a", 0o666, owner=alice)
    # a non-owner may not chmod, even with write permission, nor chgrp
    assert errs("cust_bob", ("chmod", f, 0o600), ("chown", f, -1, bob.pw_gid),
                ("chown", f, bob.pw_uid, -1)) == [EPERM] * 3
    assert errs("cust_carol", ("chmod", f, 0o600)) == [EPERM]
    st = os.stat(f)
    assert (mode_of(f), st.st_uid, st.st_gid) == (0o666, alice.pw_uid, alice.pw_gid)
    # the owner: not give it away, may "chown" to herself, chgrp to her groups
    assert errs("cust_alice", ("chown", f, bob.pw_uid, -1),
                ("chown", f, 0, -1)) == [EPERM, EPERM]
    assert os.stat(f).st_uid == alice.pw_uid
    assert errs("cust_alice", ("chown", f, alice.pw_uid, -1), ("chown", f, -1, -1),
                ("chown", f, -1, agents)) == [0, 0, 0]
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (alice.pw_uid, agents)
    assert errs("cust_alice", ("chown", f, -1, records),
                ("chown", f, alice.pw_uid, bob.pw_gid)) == [EPERM, EPERM]
    assert os.stat(f).st_gid == agents
    assert errs("cust_alice", ("chown", f, -1, alice.pw_gid)) == [0]
    assert os.stat(f).st_gid == alice.pw_gid
    # the owner chmods freely
    assert errs("cust_alice", ("chmod", f, 0o600)) == [0]
    assert mode_of(f) == 0o600
    # a writer who is not the owner may not take a shared directory's
    # setgid (group inheritance) away, nor chmod it to what it already is
    d = work / "shared-sgid"
    d.mkdir()
    os.chown(d, alice.pw_uid, records)
    os.chmod(d, 0o2777)
    assert errs("cust_bob", ("chmod", d, 0o777), ("chmod", d, 0o2777)) == [EPERM, EPERM]
    assert mode_of(d) == 0o2777


def test_chmod_setgid_silently_dropped_outside_the_group(work, users):
    alice = users["cust_alice"]
    records, agents = gid_of("cust_records"), gid_of("cust_agents")
    f = mkfile(work / "f", b"x", 0o644, owner=alice.pw_uid, group=records)
    d = mkdir(work / "d", 0o755, owner=alice.pw_uid, group=records)
    g = mkfile(work / "g", b"x", 0o644, owner=alice.pw_uid, group=agents)
    assert errs("cust_alice", ("chmod", f, 0o2755), ("chmod", d, 0o2775),
                ("chmod", g, 0o2755)) == [0, 0, 0]
    assert mode_of(f) == 0o755        # not in cust_records: setgid dropped
    assert mode_of(d) == 0o775        # (directories too)
    assert mode_of(g) == 0o2755       # in cust_agents: kept
    assert os.stat(f).st_gid == records
    # setuid is the owner's own: kept
    assert errs("cust_alice", ("chmod", f, 0o4755)) == [0]
    assert mode_of(f) == 0o4755


# --- 6. utimes ------------------------------------------------------------------

def test_utime_rules(work, users):
    alice = users["cust_alice"]
    w = mkfile(work / "writable", b"w", 0o666)
    r = mkfile(work / "readonly", b"r", 0o644)
    mine = mkfile(work / "mine", b"m", 0o444, owner=alice)
    os.utime(w, (1000, 1000))
    os.utime(r, (1000, 1000))
    assert errs("cust_alice", ("utime", w, [1, 1])) == [EPERM]
    assert os.stat(w).st_mtime == 1000
    t0 = time.time()
    assert errs("cust_alice", ("utime", w)) == [0]
    assert os.stat(w).st_mtime >= t0 - 2
    assert errs("cust_alice", ("utime", r), ("utime", r, [1, 1])) == [EACCES, EPERM]
    assert os.stat(r).st_mtime == 1000 and os.stat(r).st_atime == 1000
    # the owner may set any time, with or without write permission
    assert errs("cust_alice", ("utime", mine, [1, 2])) == [0]
    st = os.stat(mine)
    assert (st.st_atime, st.st_mtime) == (1, 2)
    assert errs("cust_alice", ("utime", mine)) == [0]
    assert os.stat(mine).st_mtime >= t0 - 2


# --- 7. sticky directories ------------------------------------------------------------

def test_sticky_directory(work, users):
    carol = users["cust_carol"]
    s = mkdir(work / "sticky", 0o1777, owner=carol)
    af, ad = s / "alice-file", s / "alice-dir"
    assert errs("cust_alice", ("create", af), ("chmod", af, 0o666),
                ("mkdir", ad), ("chmod", ad, 0o777)) == [0] * 4
    bf = s / "bob-file"
    assert errs("cust_bob", ("create", bf),
                ("unlink", af), ("rename", af, s / "bobs"), ("rename", af, work / "out"),
                ("rename", bf, af), ("rmdir", ad), ("rename", ad, s / "bobs-dir"),
                ("unlink", bf)) == [0, EPERM, EPERM, EPERM, EPERM, EPERM, EPERM, 0]
    alice_uid = users["cust_alice"].pw_uid
    assert os.stat(af).st_uid == alice_uid and os.stat(ad).st_uid == alice_uid
    assert sorted(os.listdir(s)) == ["alice-dir", "alice-file"]
    assert not (work / "out").exists()
    # the directory's owner may, and the file's owner may
    af2 = s / "renamed-by-carol"
    assert errs("cust_carol", ("rename", af, af2), ("unlink", af2)) == [0, 0]
    assert errs("cust_alice", ("create", af), ("unlink", af), ("rmdir", ad)) == [0, 0, 0]
    assert os.listdir(s) == []
    # without the sticky bit bob may
    os.chmod(s, 0o777)
    assert op("cust_alice", "create", af) == 0
    assert op("cust_bob", "unlink", af) == 0
    assert os.listdir(s) == []


# --- 8. rename ----------------------------------------------------------------

def test_rename_permissions(work, users):
    ro = mkdir(work / "ro", 0o755)
    rw1 = mkdir(work / "rw1", 0o777)
    rw2 = mkdir(work / "rw2", 0o777)
    f = rw1 / "f"
    g = mkfile(ro / "g", b"g")
    assert errs("cust_alice", ("create", f), ("rename", f, ro / "f"),
                ("rename", g, rw1 / "g")) == [0, EACCES, EACCES]
    assert f.exists() and g.exists() and not (ro / "f").exists()
    assert not (rw1 / "g").exists()
    # her own directory: between two writable parents
    ad = rw1 / "ad"
    assert errs("cust_alice", ("mkdir", ad), ("create", ad / "x"),
                ("rename", ad, rw2 / "ad")) == [0, 0, 0]
    assert (rw2 / "ad" / "x").exists() and not ad.exists()
    assert os.stat(rw2 / "ad" / "..").st_ino == os.stat(rw2).st_ino
    # bob's 0755 directory: alice may rename it within its parent, but not
    # move it to another parent (its '..' would change: needs write on it)
    bd = rw1 / "bd"
    assert errs("cust_bob", ("mkdir", bd), ("create", bd / "y")) == [0, 0]
    assert errs("cust_alice", ("rename", bd, rw2 / "bd"),
                ("rename", bd, rw1 / "bd2")) == [EACCES, 0]
    assert not (rw2 / "bd").exists() and not bd.exists()
    assert (rw1 / "bd2" / "y").exists()
    assert os.stat(rw1 / "bd2").st_uid == users["cust_bob"].pw_uid
    # and not over into a directory she cannot write
    assert op("cust_alice", "rename", rw2 / "ad", ro / "ad") == EACCES
    assert (rw2 / "ad").is_dir()


# --- 9. hard links ------------------------------------------------------------

def test_protected_hardlinks(work, users):
    try:
        prot = int(open("/proc/sys/fs/protected_hardlinks").read())
    except OSError:
        prot = 0
    if prot != 1:
        pytest.skip(f"fs.protected_hardlinks is {prot}, not 1")
    alice = users["cust_alice"]
    d = mkdir(work / "links", 0o777)
    ro = mkdir(work / "ro", 0o755)
    r600 = mkfile(work / "r600", b"s", 0o600)
    r644 = mkfile(work / "r644", b"s", 0o644)
    r666 = mkfile(work / "r666", b"s", 0o666)
    r4777 = mkfile(work / "r4777", b"s", 0o4777)
    r2777 = mkfile(work / "r2777", b"s", 0o2777)
    mine = mkfile(work / "mine", b"m", 0o600, owner=alice)
    assert errs("cust_alice",
                ("link", r600, d / "l600"), ("link", r644, d / "l644"),
                ("link", r4777, d / "l4777"), ("link", r2777, d / "l2777"),
                ("link", r666, d / "l666"), ("link", mine, d / "lmine"),
                ("link", mine, ro / "lmine")) == [EPERM] * 4 + [0, 0, EACCES]
    assert sorted(os.listdir(d)) == ["l666", "lmine"]
    assert os.listdir(ro) == []
    assert os.stat(mine).st_nlink == 2 and os.stat(r666).st_nlink == 2
    assert os.stat(r600).st_nlink == 1
    assert os.stat(d / "lmine").st_ino == os.stat(mine).st_ino


# --- 10. setuid / setgid cleared -------------------------------------------------------

def test_setuid_setgid_cleared_by_owner_write_and_chown(work, users):
    alice, bob = users["cust_alice"], users["cust_bob"]
    d = mkdir(work / "k", 0o777)
    f = d / "f"
    assert errs("cust_alice", ("create", f), ("write", f, "a"),
                ("chmod", f, 0o4755)) == [0, 0, 0]
    assert mode_of(f) == 0o4755
    # a write or truncate that is refused changes nothing, bits included
    assert errs("cust_bob", ("write", f, "x"), ("truncate", f, 0),
                ("open_w_trunc", f)) == [EACCES] * 3
    assert mode_of(f) == 0o4755 and f.read_bytes() == b"a"
    assert op("cust_alice", "write", f, "b") == 0         # her own file too
    assert mode_of(f) == 0o755
    assert errs("cust_alice", ("chmod", f, 0o2755), ("write", f, "c")) == [0, 0]
    assert mode_of(f) == 0o755                            # setgid + group x
    assert errs("cust_alice", ("chmod", f, 0o2745), ("write", f, "d")) == [0, 0]
    assert mode_of(f) == 0o2745                           # no group x: kept
    assert errs("cust_alice", ("chmod", f, 0o4755)) == [0]
    with open(f, "ab") as fh:                             # root: kept
        fh.write(b"e")
    assert mode_of(f) == 0o4755
    assert f.read_bytes() == b"abcde"
    # the owner's chgrp clears setuid
    assert op("cust_alice", "chown", f, -1, gid_of("cust_agents")) == 0
    assert mode_of(f) == 0o755
    # root's chown to another owner: setuid, and setgid with group x, go
    os.chmod(f, 0o6755)
    os.chown(f, bob.pw_uid, -1)
    assert mode_of(f) == 0o755 and os.stat(f).st_uid == bob.pw_uid
    os.chmod(f, 0o4755)
    os.chown(f, alice.pw_uid, alice.pw_gid)
    assert mode_of(f) == 0o755
    os.chmod(f, 0o2745)
    os.chown(f, bob.pw_uid, -1)
    assert mode_of(f) == 0o2745
    # directories keep setgid across chown
    sd = mkdir(d / "sd", 0o2775)
    os.chown(sd, bob.pw_uid, bob.pw_gid)
    assert mode_of(sd) == 0o2775


# --- 11. supplementary groups ---------------------------------------------------

def test_group_class_through_supplementary_group(work, users):
    """cust_carol has cust_records as a supplementary group (not primary);
    alice and bob are not in it."""
    records = gid_of("cust_records")
    assert users["cust_carol"].pw_gid != records
    f = mkfile(work / "f640", b"for records", 0o640, owner=0, group=records)
    assert calls("cust_carol", ("read", f))[0] == {"e": 0, "data": "for records"}
    assert errs("cust_carol", ("open_w", f), ("truncate", f, 0)) == [EACCES, EACCES]
    assert errs("cust_alice", ("read", f)) == [EACCES]
    assert errs("cust_bob", ("read", f)) == [EACCES]
    # the group class denies a member what "other" may do
    g = mkfile(work / "f604", b"others", 0o604, owner=0, group=records)
    assert errs("cust_carol", ("read", g)) == [EACCES]
    assert calls("cust_alice", ("read", g))[0] == {"e": 0, "data": "others"}
    d = mkdir(work / "d770", 0o770, owner=0, group=records)
    child = mkfile(d / "child", b"c", 0o644)
    r = calls("cust_carol", ("stat", child), ("list", d), ("create", d / "by-carol"))
    assert [o["e"] for o in r] == [0, 0, 0] and r[1]["names"] == ["child"]
    assert os.stat(d / "by-carol").st_uid == users["cust_carol"].pw_uid
    assert errs("cust_alice", ("stat", child), ("list", d), ("create", d / "by-alice"),
                ("chdir", d)) == [EACCES] * 4
    assert errs("cust_bob", ("stat", child)) == [EACCES]
    assert sorted(os.listdir(d)) == ["by-carol", "child"]


# --- 12. creating names ------------------------------------------------------------

def test_creating_names_needs_write_and_search(work, users):
    nowrite = mkdir(work / "nowrite", 0o755)
    nosearch = mkdir(work / "nosearch", 0o622)   # other -w-
    ok = mkdir(work / "ok", 0o777)

    def attempts(d):
        return [("mkdir", d / "dir"), ("create", d / "file"),
                ("symlink", "target", d / "link"), ("mkfifo", d / "fifo")]

    assert errs("cust_alice", *attempts(nowrite)) == [EACCES] * 4
    assert errs("cust_alice", *attempts(nosearch)) == [EACCES] * 4
    assert errs("cust_alice", *attempts(ok)) == [0] * 4
    assert os.listdir(nowrite) == [] and os.listdir(nosearch) == []
    assert stat.S_ISFIFO(os.lstat(ok / "fifo").st_mode)
    assert os.readlink(ok / "link") == "target"
    assert os.lstat(ok / "dir").st_uid == users["cust_alice"].pw_uid
    # an owner without w on her own directory may not either
    alice = users["cust_alice"]
    own = mkdir(work / "own555", 0o555, owner=alice)
    assert errs("cust_alice", *attempts(own)) == [EACCES] * 4
    assert os.listdir(own) == []
