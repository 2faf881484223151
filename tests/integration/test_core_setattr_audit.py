"""Small-file path of the daemon (docs/daemon.md, docs/audit.md): what a
setattr records, that closes cost no FLUSH, and that a directory hold placed
while a file is open stops that handle's next overwrite.

- A chmod/chown/utimens that changes nothing is neither made nor recorded;
  one that changes something records exactly the attributes it changes.
  tar extracting as root (create as root, then chown 0:0, chmod, utimens)
  therefore makes no chown record.
- A chown of a setuid file is a change even to the same owner (it clears
  the setuid bit), so it is made and recorded.
- Closing a file sends no FLUSH (the daemon buffers nothing; locks are the
  kernel's), checked with the daemon's -d request log.
- A chown sends no GETATTR: the INIT reply carries FUSE_HANDLE_KILLPRIV
  (fs/chan.h), so the daemon, not the kernel, clears setuid/setgid.  It
  clears them as Linux does: on a write, as the kernel's capability check
  decides (root without CAP_FSETID loses them, a user with it keeps them);
  on a truncate or an O_TRUNC open by anyone but root; on any chown.
"""

import errno
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

import helpers
from helpers import tool


def setattr_details(st):
    """detail of every setattr record, in order."""
    db = sqlite3.connect(f"file:{st.db}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT detail FROM audit WHERE op = 'setattr' "
                          "ORDER BY seq").fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def test_setattr_records_only_changes(store, mount_factory):
    m = mount_factory(store)
    d = m.mnt / "sa"
    d.mkdir()
    f = d / "f"
    f.write_bytes(b"x")
    os.chmod(f, 0o640)
    st0 = os.stat(f)
    os.chmod(f, 0o640)                      # same mode: nothing
    os.chown(f, st0.st_uid, st0.st_gid)     # same owner: nothing
    os.utime(f, ns=(st0.st_atime_ns, st0.st_mtime_ns))  # same times: nothing
    os.chmod(f, 0o600)                      # a change
    os.chown(f, 1234, st0.st_gid)           # uid only
    os.utime(f, (1700000000, 1700000000))   # both times
    os.chmod(f, 0o4755)                     # setuid
    os.chown(f, 1234, st0.st_gid)           # same owner, but clears setuid
    st1 = os.stat(f)
    assert st1.st_mode & 0o7777 == 0o755, oct(st1.st_mode)
    assert (st1.st_uid, int(st1.st_mtime)) == (1234, 1700000000)
    m.stop()
    got = setattr_details(store)
    got = got[got.index("mode=0640"):]  # before: the fixture's chmod of the root
    # the last: the daemon clears setuid along with the chown, one record
    assert got == ["mode=0640", "mode=0600", "uid=1234",
                   "atime=1700000000 mtime=1700000000", "mode=4755",
                   "mode=0755 uid=1234 gid=%d" % st0.st_gid], got


def test_untar_as_root_records_no_chown(store, mount_factory, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        p = src / f"f{i}"
        p.write_bytes(b"data %d\n" % i * 100)
        os.chmod(p, 0o644)
        os.utime(p, (1600000000 + i, 1600000000 + i))
    tarball = tmp_path / "t.tar"
    subprocess.run(["tar", "-C", str(src), "-cf", str(tarball), "."], check=True)
    m = mount_factory(store)
    out = m.mnt / "x"
    out.mkdir()
    subprocess.run(["tar", "-C", str(out), "-xf", str(tarball)], check=True)
    for i in range(5):
        s = os.stat(out / f"f{i}")
        assert (s.st_mode & 0o7777, s.st_uid, int(s.st_mtime)) == \
            (0o644, 0, 1600000000 + i)
        assert (out / f"f{i}").read_bytes() == b"data %d\n" % i * 100
    m.stop()
    got = setattr_details(store)
    assert not [x for x in got if "uid=" in x or "gid=" in x], got
    # every file's real changes are there: its mode and its mtime
    assert sum(1 for x in got if x == "mode=0644") >= 5, got
    for i in range(5):
        assert any(f"mtime={1600000000 + i}" in x for x in got), got
    assert tool("audit", "verify", store.path, "--passfile",
                store.passfile).returncode == 0


def test_close_sends_no_flush(store, mount_factory):
    m = mount_factory(store, options=("-o", "allow_other", "-d"))
    f = m.mnt / "nf"
    for _ in range(3):
        with open(f, "wb") as fh:
            fh.write(b"abc")
        assert f.read_bytes() == b"abc"
    m.stop()
    text = m.stderr()
    assert "opcode: RELEASE" in text
    assert "opcode: FLUSH" not in text


def test_hold_placed_while_open_stops_the_handle(store, mount_factory):
    m = mount_factory(store)
    d = m.mnt / "records"
    d.mkdir()
    f = d / "f"
    f.write_bytes(b"0123456789")
    fd = os.open(f, os.O_RDWR)
    try:
        os.pwrite(fd, b"A", 0)              # no hold yet: an overwrite works
        tool("hold", store.path, "--path", "/records", "--reason", "case 1",
             "--passfile", store.passfile)
        with pytest.raises(OSError) as e:
            os.pwrite(fd, b"B", 1)          # the same handle, now held
        assert e.value.errno == errno.EPERM
        os.pwrite(fd, b"tail", 10)          # appending stays allowed
        tool("release", store.path, "--path", "/records", "--reason", "done",
             "--passfile", store.passfile)
        os.pwrite(fd, b"C", 2)              # released: overwrites again
    finally:
        os.close(fd)
    assert f.read_bytes() == b"A1C3456789tail"


_TRUNC = "import os, sys; os.truncate(sys.argv[1], 1)"


def shared_file(m):
    """A file "abc" in a directory everyone may write, and a function
    returning its permission bits."""
    d = m.mnt / "k"
    d.mkdir()
    os.chmod(d, 0o777)
    f = d / "f"
    f.write_bytes(b"abc")
    return f, lambda: os.stat(f).st_mode & 0o7777


def check_linux_kill_rules(f, mode):
    """On shared_file's f: a write or truncate by an ordinary user clears
    setuid (and setgid when group-executable); root's writes keep them; a
    chown to the same owner clears setuid."""
    os.chmod(f, 0o6777)
    with open(f, "r+b") as fh:             # root (CAP_FSETID): kept
        fh.write(b"R")
    assert mode() == 0o6777
    assert helpers.try_as("cust_alice", "append", f, "u")[0] == 0
    assert mode() == 0o777                 # a user's write clears both
    os.chmod(f, 0o6767)                    # setgid without group exec
    r = helpers.run_as("cust_alice", [helpers.PYTHON, "-c", _TRUNC, str(f)])
    assert r.returncode == 0, r.err
    assert mode() == 0o2767                # truncate: setuid goes, this setgid stays
    os.chmod(f, 0o4755)
    os.chown(f, 0, 0)                      # same owner: still clears setuid
    assert mode() == 0o755
    assert f.read_bytes() == b"R"


def test_setuid_bits_cleared_as_linux_does(store, mount_factory, users):
    """setuid/setgid as Linux clears them locally, now that a setattr may be
    skipped (a chown to the same owner is not skipped, since it clears
    them)."""
    check_linux_kill_rules(*shared_file(mount_factory(store)))


_TAR_LIKE = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
os.write(fd, b"data")
os.fchmod(fd, int(sys.argv[2], 8))
os.utime(fd, (1600000000, 1600000000))
os.fchown(fd, 0, 0)
os.fchmod(fd, 0o644 if sys.argv[2] == "644" else int(sys.argv[2], 8))
os.close(fd)
"""


def tar_like_files(m):
    """Makes t/plain (0644) and t/suid (4755) in mount m the way tar does
    (_TAR_LIKE, one process each) and checks their modes; returns the
    processes' pids (the -d request log names each request's pid)."""
    d = m.mnt / "t"
    d.mkdir()
    os.chmod(d, 0o777)
    pids = []
    for name, mode in (("plain", "644"), ("suid", "4755")):
        child = subprocess.Popen([helpers.PYTHON, "-c", _TAR_LIKE, str(d / name), mode])
        assert child.wait(timeout=60) == 0
        pids.append(child.pid)
    assert os.stat(d / "plain").st_mode & 0o7777 == 0o644
    # the chown cleared setuid and the fchmod after it set it again
    assert os.stat(d / "suid").st_mode & 0o7777 == 0o4755
    return pids


def request_ops(m, pids):
    """The opcodes of the requests that processes pids sent, in order, from
    the request log of m (mounted with -d, stopped)."""
    mine = [ln for ln in m.stderr().splitlines()
            if any(ln.endswith(f"pid: {pid}") for pid in pids)]
    return [ln.split("opcode: ")[1].split(" ")[0] for ln in mine if "opcode: " in ln]


def test_chown_sends_no_getattr(store, mount_factory):
    """tar's sequence (create, write, utimens, fchown, fchmod) without the
    kernel's GETATTR before the chown, for a plain and a setuid file."""
    m = mount_factory(store, options=("-o", "allow_other", "-d"))
    pids = tar_like_files(m)        # the daemon cleared setuid at the chown
    m.stop()
    ops = request_ops(m, pids)
    assert ops.count("CREATE") == 2 and ops.count("SETATTR") >= 6, ops
    assert "GETATTR" not in ops, ops


_WRITE = "import os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND); " \
         "os.write(fd, b'w'); os.close(fd)"
_OTRUNC = "import os, sys; os.close(os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC))"


def test_setuid_cleared_as_the_kernel_decides(store, mount_factory, users):
    """Writes follow the kernel's CAP_FSETID check, not the uid; truncates
    and O_TRUNC opens clear for every caller but root."""
    f, mode = shared_file(mount_factory(store))

    def as_root_without_fsetid(code):
        r = helpers.run(["setpriv", "--bounding-set", "-fsetid", "--inh-caps", "-fsetid",
                         helpers.PYTHON, "-c", code, str(f)], check=False)
        assert r.returncode == 0, r.err

    def as_alice(code, fsetid=False):
        uid, gid, groups = helpers.user_ids("cust_alice")
        caps = ["--inh-caps", "+fsetid", "--ambient-caps", "+fsetid"] if fsetid else []
        r = helpers.run(["setpriv", f"--reuid={uid}", f"--regid={gid}",
                         "--groups=" + ",".join(str(g) for g in groups or [gid]),
                         *caps, helpers.PYTHON, "-c", code, str(f)], check=False)
        assert r.returncode == 0, r.err

    os.chmod(f, 0o6777)
    as_root_without_fsetid(_WRITE)          # root, but no CAP_FSETID: cleared
    assert mode() == 0o777
    os.chmod(f, 0o6777)
    as_alice(_WRITE, fsetid=True)           # a user holding CAP_FSETID: kept
    assert mode() == 0o6777
    as_alice(_WRITE)                        # without it: cleared
    assert mode() == 0o777
    for code in (_TRUNC, _OTRUNC):
        os.chmod(f, 0o6777)
        as_alice(code)                      # setuid, and setgid with group x
        assert mode() == 0o777, code
        os.chmod(f, 0o6767)
        as_alice(code)                      # setgid without group x stays
        assert mode() == 0o2767, code
        os.chmod(f, 0o6777)
        helpers.run([helpers.PYTHON, "-c", code, str(f)])   # root: kept
        assert mode() == 0o6777, code
    assert f.read_bytes() == b""


def test_kernel_clears_setuid_without_killpriv(store, mount_factory, users, tmp_path):
    """The fallback of fs/chan.h: a kernel that does not offer
    FUSE_HANDLE_KILLPRIV (simulated by a preloaded shim that hides the offer
    from the INIT request the daemon reads) clears setuid/setgid itself,
    with a GETATTR before each chown and a mode-only SETATTR on behalf of
    the writer; the daemon must let those through, and the bits must end
    as they do in the daemon's own mode."""
    shim = tmp_path / "nokillpriv.so"
    helpers.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(shim),
                 str(Path(__file__).with_name("nokillpriv.c")), "-ldl"])
    env = dict(os.environ, LD_PRELOAD=str(shim))
    # The shim comes before the sanitizer runtime in a sanitized daemon.
    env["ASAN_OPTIONS"] = ":".join(x for x in (os.environ.get("ASAN_OPTIONS"),
                                               "verify_asan_link_order=0") if x)
    m = mount_factory(store, options=("-o", "allow_other", "-d"), env=env)
    pids = tar_like_files(m)        # the kernel cleared setuid before the chown
    check_linux_kill_rules(*shared_file(m))
    m.stop()
    ops = request_ops(m, pids)
    # The kernel refreshed the mode before each chown: the fallback ran.
    assert ops.count("CREATE") == 2 and "GETATTR" in ops, ops
