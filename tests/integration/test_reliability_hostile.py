"""Hostile callers: odd names, deep trees, symlinks, races, fd exhaustion,
reading around mode bits (issue 7).

Each test does what an unfriendly local user (or a careless program)
could do through the mount and checks that the daemon answers with the
errno a normal filesystem gives, hands out nothing the caller may not
read, and keeps serving (the daemon is alive and a control file reads
back after each test; teardown fails on a crash or a sanitizer report).
"""

import errno
import os
import resource
import stat
import subprocess
import time

import pytest

import helpers
import test_reliability_util as U
from helpers import try_as

PATH_MAX = 4096


def _alive(m):
    (m.mnt / "control").write_bytes(b"ok")
    assert (m.mnt / "control").read_bytes() == b"ok"
    assert m.alive()


def test_reliability_every_byte_in_names(mounted):
    d = os.fsencode(mounted.mnt / "bytes")
    os.mkdir(d)
    allowed = bytes(b for b in range(1, 256) if b != ord("/"))
    names = {b"n" + bytes([b]) + b"n" for b in allowed}
    names.add(allowed)  # one 254-byte name holding every allowed byte
    names |= {bytes([b]) for b in allowed if b != ord(".")}
    names |= {b"..." , b".hidden", b".L" + b"A" * 43, b".N" + b"x" * 43, b".iv"}
    for n in names:
        with open(os.path.join(d, n), "wb") as f:
            f.write(n)
    assert set(os.listdir(d)) == names
    mounted.remount()
    assert set(os.listdir(d)) == names
    for n in names:
        with open(os.path.join(d, n), "rb") as f:
            assert f.read() == n, f"content of {n!r}"
        os.rename(os.path.join(d, n), os.path.join(d, n[:-1] + b"!" if len(n) > 1 else n + b"!"))
    assert len(os.listdir(d)) == len(names)
    for n in os.listdir(d):
        os.unlink(os.path.join(d, n))
    assert os.listdir(d) == []
    _alive(mounted)


def test_reliability_255_byte_names(mounted):
    d = mounted.mnt / "long"
    d.mkdir()
    ascii255 = "a" * 255
    utf8 = "\u00e9" * 127 + "b"  # 255 bytes of UTF-8
    assert len(utf8.encode()) == 255
    for n in (ascii255, utf8, "x" * 175, "y" * 176):
        (d / n).write_text(n)
        (d / (n[:-1] + "D")).mkdir()
    with pytest.raises(OSError) as ei:
        (d / ("z" * 256)).write_text("too long")
    assert ei.value.errno == errno.ENAMETOOLONG
    mounted.remount()
    for n in (ascii255, utf8, "x" * 175, "y" * 176):
        assert (d / n).read_text() == n
        assert (d / (n[:-1] + "D")).is_dir()
    os.rename(d / ascii255, d / ("q" * 255))
    assert (d / ("q" * 255)).read_text() == ascii255
    assert not (d / ascii255).exists()
    _alive(mounted)


def test_reliability_deep_tree_to_path_max(mounted):
    """Directories of 200-byte names nested until the path passes
    PATH_MAX (reached with openat, as `find` and `rm -rf` do)."""
    top = os.open(mounted.mnt, os.O_RDONLY | os.O_DIRECTORY)
    fds = [top]
    depth, plen, beyond = 0, len(str(mounted.mnt)), 0
    name = "d" * 200
    try:
        while plen < PATH_MAX + 1000:
            try:
                os.mkdir(name, dir_fd=fds[-1])
                fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
            except OSError as e:
                # past PATH_MAX the daemon may refuse; below it never
                assert e.errno == errno.ENAMETOOLONG and plen + 201 > PATH_MAX, \
                    f"depth {depth} (path {plen} bytes): {e}"
                break
            depth += 1
            plen += 201
            if plen > PATH_MAX:
                beyond += 1
            fd = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fds[-1])
            os.write(fd, str(depth).encode())
            os.close(fd)
    finally:
        for fd in fds[1:]:
            os.close(fd)
    assert plen > PATH_MAX - 201, f"stopped at depth {depth}, path {plen} bytes"
    os.close(top)
    mounted.remount()
    # walk it again with fds and check every leaf
    fd = os.open(mounted.mnt, os.O_RDONLY | os.O_DIRECTORY)
    for i in range(1, depth + 1):
        nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = nfd
        lf = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        assert os.read(lf, 100) == str(i).encode()
        os.close(lf)
    os.close(fd)
    r = subprocess.run(["rm", "-rf", "--", str(mounted.mnt / name)], capture_output=True,
                       timeout=120 * helpers.SLOW)
    assert r.returncode == 0, r.stderr
    assert not (mounted.mnt / name).exists()
    U.report("deep-tree", depth=depth, path_bytes=plen, levels_beyond_path_max=beyond)
    _alive(mounted)


def test_reliability_symlink_loops_and_escapes(mounted, users):
    m = mounted.mnt
    os.symlink("loop-b", m / "loop-a")
    os.symlink("loop-a", m / "loop-b")
    os.symlink("self", m / "self")
    for p in ("loop-a", "self"):
        with pytest.raises(OSError) as ei:
            (m / p).read_bytes()
        assert ei.value.errno == errno.ELOOP
    # Pointing out of the mount: the kernel resolves it in the caller's
    # namespace with the caller's rights; it gives nothing a direct path
    # would not (the store is 0700).
    store = mounted.store
    os.symlink(os.path.relpath(store.tree, m), m / "to-store")
    os.symlink(str(store.db), m / "to-db")
    assert try_as("cust_alice", "list", m / "to-store")[0] == errno.EACCES
    assert try_as("cust_alice", "read", m / "to-db")[0] == errno.EACCES
    # A symlink planted in the backing tree (someone with write access to
    # the store) must not make the daemon open what it points to.
    (m / "victim").write_bytes(b"victim")
    mounted.stop()
    size80 = [p for p, s in store.backing_files().items() if s == helpers.cipher_size(6)]
    assert len(size80) == 1
    os.unlink(size80[0])
    os.symlink("/etc/passwd", size80[0])
    mounted.start()
    os.chmod(m, 0o755)
    secret = open("/etc/passwd", "rb").read()
    try:
        data = (m / "victim").read_bytes()
        assert data != secret and b"root:" not in data, "daemon followed a planted symlink"
    except OSError as e:
        assert e.errno in (errno.EIO, errno.ELOOP, errno.ENOENT, errno.EINVAL), e
    try:
        target = os.readlink(m / "victim")
        assert target != "/etc/passwd", "a backing symlink target was passed through"
    except OSError as e:
        assert e.errno in (errno.EIO, errno.EINVAL, errno.ENOENT), e
    _alive(mounted)


RENAMER = r"""
import os, sys, time
d, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    n += 1
    tmp = os.path.join(d, ".tmp")
    with open(tmp, "wb") as f:
        f.write((b"version %d\n" % n) * 500)
    os.rename(tmp, os.path.join(d, "A" if n % 2 else "B"))
    try:
        os.rename(os.path.join(d, "A"), os.path.join(d, "B"))
    except FileNotFoundError:
        pass
print(n)
"""

OPENER = r"""
import errno, os, sys, time
d, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
reads = missing = 0
while time.monotonic() < end:
    for name in ("A", "B"):
        try:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            missing += 1
            continue
        first = data.split(b"\n", 1)[0]
        if not first.startswith(b"version ") or data != (first + b"\n") * 500:
            print("WRONG", name, len(data), data[:40]); sys.exit(1)
        reads += 1
print(reads, missing)
"""


def test_reliability_rename_open_race_two_users(mounted, users):
    d = mounted.mnt / "race"
    d.mkdir()
    uid, gid, _ = helpers.user_ids("cust_alice")
    os.chown(d, uid, gid)
    secs = U.scaled(3.0, 60.0, asan_ci=2.0)
    ren = U.popen_as("cust_alice", [helpers.PYTHON, "-c", RENAMER, d, secs],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    opn = U.popen_as("cust_bob", [helpers.PYTHON, "-c", OPENER, d, secs],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_r, err_r = ren.communicate(timeout=secs * 10 + 60)
    out_o, err_o = opn.communicate(timeout=secs * 10 + 60)
    assert ren.returncode == 0, err_r.decode()
    assert opn.returncode == 0, (out_o + err_o).decode()
    reads, missing = map(int, out_o.split())
    assert reads > 0
    U.report("rename-open-race", renames=int(out_r) * 2, reads=reads, enoent=missing)
    _alive(mounted)


OPEN_MANY = r"""
import errno, os, resource, sys
d, limit = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
fds, err = [], 0
for i in range(1000000):
    try:
        fds.append(os.open(os.path.join(d, "f%d" % (i % 50)), os.O_RDONLY))
    except OSError as e:
        err = e.errno
        break
ok = all(os.pread(fd, 5, 0) == b"hello" for fd in fds[-50:])
print(len(fds), err, int(ok))
"""


def test_reliability_many_open_handles(mounted, users):
    d = mounted.mnt / "many"
    d.mkdir()
    for i in range(50):
        (d / f"f{i}").write_bytes(b"hello")
    limit = U.scaled(4096, 20000, asan_ci=2048)
    limit = min(limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    r = helpers.run_as("cust_alice", [helpers.PYTHON, "-c", OPEN_MANY, d, limit],
                       timeout=300)
    assert r.returncode == 0, r.err
    n, err, ok = map(int, r.out.split())
    assert err in (errno.EMFILE, errno.ENFILE), f"opening stopped with errno {err}"
    assert n > limit - 100 and ok == 1
    _alive(mounted)
    # Now the daemon runs out of descriptors instead of the client.
    daemon_limit = 256
    # The client's handles are released to the daemon asynchronously
    # after it exits; with 20 000 of them (torture) the daemon may still
    # hold thousands, and a limit below what it holds makes every open
    # fail at once (0 handles: nothing tested).  Wait until it is idle.
    fd_dir = f"/proc/{mounted.proc.pid}/fd"
    deadline = time.monotonic() + 60 * helpers.SLOW
    while len(os.listdir(fd_dir)) > daemon_limit // 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    held = len(os.listdir(fd_dir))
    assert held <= daemon_limit // 2, \
        f"daemon still holds {held} descriptors after the client exited"
    hard = subprocess.run(["prlimit", f"--pid={mounted.proc.pid}", "--nofile", "-o",
                           "HARD", "--noheadings", "--raw"], capture_output=True, text=True,
                          check=True).stdout.strip()
    soft = subprocess.run(["prlimit", f"--pid={mounted.proc.pid}", "--nofile", "-o",
                           "SOFT", "--noheadings", "--raw"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run(["prlimit", f"--pid={mounted.proc.pid}",
                    f"--nofile={daemon_limit}:{hard}"], check=True)
    r = helpers.run_as("cust_alice", [helpers.PYTHON, "-c", OPEN_MANY, d, 4096],
                       timeout=300)
    assert r.returncode == 0, f"client crashed: {r.err}"
    n2, err2, ok2 = map(int, r.out.split())
    assert mounted.alive(), "daemon died when it ran out of file descriptors"
    assert err2 in (errno.EMFILE, errno.ENFILE, errno.ENOMEM), \
        f"daemon fd exhaustion gave errno {err2} to the client"
    assert n2 > 0 and ok2 == 1, f"{n2} handles under the daemon's limit of {daemon_limit}"
    subprocess.run(["prlimit", f"--pid={mounted.proc.pid}", f"--nofile={soft}:{hard}"],
                   check=True)
    _alive(mounted)
    U.report("many-open", client_handles=n, daemon_fds_idle=held, daemon_limited_handles=n2,
             client_errno=errno.errorcode[err], daemon_errno=errno.errorcode.get(err2))


def test_reliability_reading_around_mode_bits(mounted, users):
    m = mounted.mnt
    shared = m / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    secret = shared / "bob-secret"
    assert try_as("cust_bob", "create", secret, "600") == (0, "")
    assert try_as("cust_bob", "append", secret, "bob only")[0] == 0
    # hard link by alice: refused (protected_hardlinks) or useless
    link = shared / "alice-link"
    r = helpers.run_as("cust_alice", [helpers.PYTHON, "-c",
                                      "import os,sys; os.link(sys.argv[1], sys.argv[2])",
                                      secret, link])
    if r.returncode == 0:
        assert try_as("cust_alice", "read", link)[0] == errno.EACCES
    else:
        assert "Operation not permitted" in r.err, r.err
    # a hard link made by root into alice's reach reads no better
    os.link(secret, shared / "root-link")
    assert try_as("cust_alice", "read", shared / "root-link")[0] == errno.EACCES
    assert stat.S_IMODE(os.stat(shared / "root-link").st_mode) == 0o600
    # permission revoked while alice holds the file open: her open fd
    # keeps working (POSIX: pread, and a new mmap of that same fd), a new
    # open and a reopen via /proc/self/fd do not
    pub = shared / "was-public"
    assert try_as("cust_bob", "create", pub, "644") == (0, "")
    assert try_as("cust_bob", "append", pub, "public then private")[0] == 0
    script = r"""
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
print("opened", flush=True)
sys.stdin.readline()  # bob revokes now
res = []
res.append(os.pread(fd, 100, 0) == b"public then private")
try:
    os.open("/proc/self/fd/%d" % fd, os.O_RDONLY); res.append(False)
except PermissionError:
    res.append(True)
try:
    os.open(sys.argv[1], os.O_RDONLY); res.append(False)
except PermissionError:
    res.append(True)
mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
res.append(mm[:6] == b"public")
print(" ".join("1" if x else "0" for x in res), flush=True)
"""
    uid, gid, groups = helpers.user_ids("cust_alice")
    p = subprocess.Popen([helpers.PYTHON, "-c", script, str(pub)], user=uid, group=gid,
                         extra_groups=groups, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "opened"
        assert try_as("cust_bob", "chmod", pub, "600")[0] == 0
        out, err = p.communicate("go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err
    assert out.split() == ["1", "1", "1", "1"], f"fd / proc reopen / open / mmap: {out}"
    # /proc/PID/fd of bob's process holding the secret open
    holder = U.popen_as("cust_bob", [helpers.PYTHON, "-c",
                                     "import sys,time; f=open(sys.argv[1],'rb'); print(f.fileno(), flush=True); time.sleep(60)",
                                     secret], stdout=subprocess.PIPE)
    try:
        fdn = int(holder.stdout.readline())
        e, _ = try_as("cust_alice", "read", f"/proc/{holder.pid}/fd/{fdn}")
        assert e == errno.EACCES, f"alice read bob's fd via /proc: {helpers.errname(e)}"
    finally:
        holder.kill()
        holder.wait()
    _alive(mounted)
