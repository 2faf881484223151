"""Mounting, unmounting, persistence and the daemon's life cycle (issue 2).

/proc/mounts entry, data/inode/attribute persistence across remounts,
-o ro, a wrong passphrase, SIGTERM, kill -9 + fusermount3 -u -z + remount,
daemonizing without -f, and -o passfile=.
"""

import errno
import mmap
import os
import signal
import stat
import subprocess
import time

import pytest

import helpers
from helpers import CUSTODIANFS, run


def test_proc_mounts_entry(mounted, store):
    src, mp, fstype, opts = helpers.mount_entry(mounted.mnt)
    assert fstype == "fuse.custodian"
    assert src == os.path.realpath(store.path)
    assert mp == os.path.realpath(mounted.mnt)
    # mode bits are the daemon's (docs/daemon.md, "Permissions")
    assert "default_permissions" not in opts.split(",")
    assert "allow_other" in opts.split(",")
    st = os.stat(mounted.mnt)
    assert stat.S_ISDIR(st.st_mode)
    assert os.listdir(mounted.mnt) == []


def _snapshot(root):
    res = {}
    for dirpath, dirs, files in os.walk(root):
        for n in sorted(dirs + files):
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            content = None
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = f.read()
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            res[os.path.relpath(p, root)] = dict(
                ino=st.st_ino, mode=st.st_mode, uid=st.st_uid, gid=st.st_gid,
                size=st.st_size, nlink=st.st_nlink, content=content,
                mtime=None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns)
    return res


def _read_ahead_kb(mnt):
    """The kernel read-ahead of the mount at mnt, from its backing device
    info (sysfs), found through /proc/self/mountinfo."""
    real = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        devs = [line.split()[2] for line in f
                if line.split()[4].replace("\\040", " ") == real]
    assert devs, f"{real} not in mountinfo"
    with open(f"/sys/class/bdi/{devs[-1]}/read_ahead_kb") as f:
        return int(f.read())


def test_read_ahead_raised_and_configurable(store, mount_factory):
    """The daemon raises the mount's read-ahead from the kernel's 128 KiB
    (it may only lower it at INIT, so it writes sysfs after INIT);
    -o read_ahead_kb=N sets another value, 0 leaves the kernel's."""
    m = mount_factory(store)
    os.listdir(m.mnt)  # the first request after INIT applies it
    assert _read_ahead_kb(m.mnt) == 1024
    m.stop()
    m = mount_factory(store, options=("-o", "allow_other,read_ahead_kb=256"))
    os.listdir(m.mnt)
    assert _read_ahead_kb(m.mnt) == 256
    m.stop()
    m = mount_factory(store, options=("-o", "allow_other,read_ahead_kb=0"))
    os.listdir(m.mnt)
    assert _read_ahead_kb(m.mnt) == 128


def test_data_inodes_attributes_persist_across_remount(mounted, users):
    m = mounted.mnt
    (m / "customers" / "C-1").mkdir(parents=True)
    (m / "customers" / "C-1" / "note.txt").write_text("call back tomorrow\n")
    (m / "big").write_bytes(os.urandom(3 * 4096 + 123))
    os.link(m / "big", m / "customers" / "big-link")
    os.symlink("customers/C-1/note.txt", m / "shortcut")
    os.chmod(m / "big", 0o604)
    alice = users["cust_alice"]
    os.chown(m / "customers" / "C-1" / "note.txt", alice.pw_uid, alice.pw_gid)
    os.utime(m / "big", ns=(1_000_000_000_000_000_001, 1_100_000_000_000_000_002))
    with open(m / "sparse", "wb") as f:
        f.truncate(10 << 20)
    before = _snapshot(m)
    mounted.remount()
    after = _snapshot(m)
    assert after == before
    mounted.remount()
    assert _snapshot(m) == before


def test_mmap_write_survives_remount(mounted):
    p = mounted.mnt / "mapped"
    p.write_bytes(bytes(3 * 4096))
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        mm[4000:4200] = b"M" * 200
        mm[-3:] = b"END"
        mm.flush()
        mm.close()
    exp = bytearray(3 * 4096)
    exp[4000:4200] = b"M" * 200
    exp[-3:] = b"END"
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.read(fd, 20000) == bytes(exp)
    finally:
        os.close(fd)
    mounted.remount()
    assert p.read_bytes() == bytes(exp)
    with open(p, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        assert mm[:] == bytes(exp)
        mm.close()


def test_read_only_mount(store, mount_factory):
    rw = mount_factory(store)
    (rw.mnt / "existing").write_bytes(b"read me")
    (rw.mnt / "dir").mkdir()
    rw.stop()
    ro = mount_factory(store, options=("-o", "allow_other", "-o", "ro"), mnt=rw.mnt)
    assert "ro" in helpers.mount_entry(ro.mnt)[3].split(",")
    m = ro.mnt
    assert (m / "existing").read_bytes() == b"read me"
    attempts = [
        lambda: os.open(m / "existing", os.O_WRONLY),
        lambda: os.open(m / "new", os.O_WRONLY | os.O_CREAT, 0o644),
        lambda: os.mkdir(m / "newdir"),
        lambda: os.unlink(m / "existing"),
        lambda: os.rmdir(m / "dir"),
        lambda: os.rename(m / "existing", m / "renamed"),
        lambda: os.chmod(m / "existing", 0o600),
        lambda: os.truncate(m / "existing", 0),
        lambda: os.symlink("x", m / "ln"),
        lambda: os.link(m / "existing", m / "hl"),
        lambda: os.utime(m / "existing"),
    ]
    for i, fn in enumerate(attempts):
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == errno.EROFS, f"attempt {i}: {e.value}"
    assert sorted(os.listdir(m)) == ["dir", "existing"]
    assert (m / "existing").read_bytes() == b"read me"


def _one_line_error(text):
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{text}"
    assert not helpers.sanitizer_report(text)


@pytest.mark.parametrize("foreground", [True, False])
def test_wrong_passphrase_does_not_mount(store, scratch, foreground):
    bad = scratch / "bad.pass"
    bad.write_bytes(helpers.WRONG_PASSPHRASE)
    mnt = scratch / "mnt"
    mnt.mkdir()
    argv = [CUSTODIANFS, store.path, mnt, "--passfile", bad, "-o", "allow_other"]
    if foreground:
        argv.append("-f")
    try:
        r = run(argv, check=False, timeout=60)
        assert r.returncode == 1
        _one_line_error(r.err)
        assert not helpers.is_mounted(mnt)
    finally:
        helpers.lazy_unmount(mnt)


def test_not_a_store_does_not_mount(scratch):
    (scratch / "notastore").mkdir()
    (scratch / "p").write_bytes(helpers.PASSPHRASE)
    mnt = scratch / "mnt"
    mnt.mkdir()
    try:
        r = run([CUSTODIANFS, scratch / "notastore", mnt, "--passfile", scratch / "p", "-f"],
                check=False, timeout=60)
        assert r.returncode != 0
        _one_line_error(r.err)
        assert not helpers.is_mounted(mnt)
    finally:
        helpers.lazy_unmount(mnt)


def test_sigterm_unmounts_cleanly(store, mount_factory):
    m = mount_factory(store)
    (m.mnt / "kept").write_bytes(b"before SIGTERM")
    m.kill(signal.SIGTERM)
    m.killed_by_us = False  # SIGTERM must lead to a clean exit, status 0
    try:
        m.proc.wait(timeout=15 * helpers.SLOW)
    except subprocess.TimeoutExpired:
        pytest.fail("daemon still running 15 s after SIGTERM")
    assert not helpers.is_mounted(m.mnt), "SIGTERM left the mount behind"
    assert m.stop() == 0
    m.start()
    assert (m.mnt / "kept").read_bytes() == b"before SIGTERM"


def test_kill9_then_lazy_unmount_and_remount(store, mount_factory):
    m = mount_factory(store)
    p = m.mnt / "durable"
    data = os.urandom(50000)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    (m.mnt / "dir").mkdir()
    dfd = os.open(m.mnt, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    m.kill(signal.SIGKILL)
    m.proc.wait(timeout=30)
    assert helpers.is_mounted(m.mnt)
    with pytest.raises(OSError) as e:
        os.stat(m.mnt / "durable")
    assert e.value.errno == errno.ENOTCONN
    run(["fusermount3", "-u", "-z", m.mnt])
    assert not helpers.is_mounted(m.mnt)
    m.stop()
    m2 = mount_factory(store, mnt=m.mnt)
    assert (m2.mnt / "durable").read_bytes() == data
    assert (m2.mnt / "dir").is_dir()
    (m2.mnt / "after").write_bytes(b"works")
    m2.remount()
    assert (m2.mnt / "after").read_bytes() == b"works"


def _daemon_pids(mnt):
    """Pids of custodianfs processes whose command line names mnt."""
    pids = []
    want = os.path.realpath(str(mnt)).encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"custodianfs") and any(
                os.path.realpath(a) == want for a in argv[1:] if a):
            pids.append(int(d))
    return pids


def _pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_pid_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _mount_background(argv, mnt):
    """Runs a daemonizing mount; returns the daemon pids.  The caller unmounts."""
    r = run(argv, check=False, timeout=60)
    assert r.returncode == 0, f"custodianfs exited {r.returncode}: {r.err}"
    assert not helpers.sanitizer_report(r.err)
    # "daemonizes after the mount is ready": no polling needed
    assert helpers.is_mounted(mnt), "launcher returned before the mount was ready"
    pids = _daemon_pids(mnt)
    assert pids, "no daemon process left running"
    return pids


def _unmount_background(mnt, pids):
    try:
        if helpers.is_mounted(mnt):
            run(["fusermount3", "-u", mnt])
        assert _wait_gone(pids, 15 * helpers.SLOW), "daemon did not exit after unmount"
    finally:
        helpers.lazy_unmount(mnt)
        for p in pids:
            if _pid_alive(p):
                os.kill(p, signal.SIGKILL)


def test_daemonizes_without_f(store, scratch):
    mnt = scratch / "mnt"
    mnt.mkdir()
    os.chmod(mnt, 0o755)
    pids = []
    try:
        pids = _mount_background([CUSTODIANFS, store.path, mnt, "--passfile",
                                  store.passfile, "-o", "allow_other"], mnt)
        (mnt / "f").write_bytes(b"daemon")
        assert (mnt / "f").read_bytes() == b"daemon"
    finally:
        _unmount_background(mnt, pids)


def test_passfile_as_mount_option(store, scratch):
    """-o passfile=FILE, so an fstab line through mount.fuse3 works."""
    mnt = scratch / "mnt"
    mnt.mkdir()
    pids = []
    try:
        pids = _mount_background([CUSTODIANFS, store.path, mnt,
                                  "-o", f"passfile={store.passfile},allow_other"], mnt)
        assert os.listdir(mnt) == []
    finally:
        _unmount_background(mnt, pids)


def test_init_prints_recovery_key_and_refuses_existing(store, scratch):
    assert any(ln.startswith("recovery key: ") and len(ln) > len("recovery key: ") + 10
               for ln in store.init_out.splitlines()), store.init_out
    # an existing store, and a non-empty directory, are refused with one line
    r = helpers.tool("init", store.path, "--passfile", store.passfile,
                     "--kdf-ops", "1", "--kdf-mem", "8", check=False)
    assert r.returncode == 1
    _one_line_error(r.err)
    other = scratch / "nonempty"
    other.mkdir()
    (other / "somefile").write_text("x")
    r = helpers.tool("init", other, "--passfile", store.passfile,
                     "--kdf-ops", "1", "--kdf-mem", "8", check=False)
    assert r.returncode == 1
    _one_line_error(r.err)
    assert sorted(os.listdir(other)) == ["somefile"]
