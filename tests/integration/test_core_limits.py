"""The daemon under a low descriptor limit (issue 2: fds per node).

The daemon runs under `prlimit --nofile=N:N` (N = 128), far below the
number of files used here.  Files, symlinks and other non-directories
hold no descriptor in the daemon (they are reopened through their parent
directory by name), so a directory of many files lists and stats; open
files each cost one, and when the daemon runs out the caller's open()
fails with EMFILE while the daemon keeps serving.  Also: hard links work
through any current name, files unlinked while open keep working through
their handle, and renamed files are found under their new name.
"""

import errno
import os

import pytest

import helpers

NOFILE = 128
NFILES = 1500


class LimitedMount(helpers.Mount):
    def argv(self):
        return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", "--", *super().argv()]


@pytest.fixture
def lm(store, scratch):
    m = LimitedMount(store, scratch / "mnt")
    m.start()
    yield m
    m.stop()


def test_many_files_with_few_descriptors(lm):
    d = lm.mnt / "many"
    d.mkdir()
    for i in range(NFILES):
        with open(d / f"f{i:05d}", "wb") as f:
            f.write(b"%d" % i)
    os.symlink("f00001", d / "link")
    os.mkfifo(d / "fifo")
    seen = {}
    with os.scandir(d) as it:
        for e in it:
            seen[e.name] = e.stat(follow_symlinks=False)
    assert len(seen) == NFILES + 2
    for i in range(0, NFILES, 7):
        assert (d / f"f{i:05d}").read_bytes() == b"%d" % i
    assert os.readlink(d / "link") == "f00001"
    assert seen["link"].st_size == len("f00001")
    # cold: a fresh daemon finds everything again by name
    lm.remount()
    names = sorted(os.listdir(d))
    assert len(names) == NFILES + 2
    assert sum(os.lstat(d / n).st_size for n in names[:NFILES]) == \
        sum(len(b"%d" % i) for i in range(NFILES))
    assert lm.alive()


def test_out_of_descriptors_is_an_answer(lm):
    d = lm.mnt / "open"
    d.mkdir()
    for i in range(NOFILE + 40):
        (d / f"o{i}").write_bytes(b"x")
    fds, errs = [], set()
    try:
        for i in range(NOFILE + 40):
            try:
                fds.append(os.open(d / f"o{i}", os.O_RDONLY))
            except OSError as e:
                errs.add(e.errno)
        assert errs == {errno.EMFILE}, errs
        assert len(fds) < NOFILE
        # still answering while out of descriptors: what needs none works,
        # what needs one is refused with EMFILE
        assert os.stat(d / "o0").st_size == 1
        with pytest.raises(OSError) as e:
            os.listdir(d)
        assert e.value.errno == errno.EMFILE
    finally:
        for fd in fds:
            os.close(fd)
    # and fully working once they are back
    (d / "after").write_bytes(b"after")
    assert (d / "after").read_bytes() == b"after"
    assert len(os.listdir(d)) == NOFILE + 41
    assert lm.alive()


def test_hard_links_any_current_name(lm):
    d = lm.mnt / "hl"
    d.mkdir()
    (d / "sub").mkdir()
    a, b, c = d / "a", d / "sub" / "b", d / "c"
    a.write_bytes(b"linked")
    os.link(a, b)
    assert os.stat(b).st_nlink == 2
    os.unlink(b)  # the most recent name goes: the first still works
    assert os.stat(a).st_nlink == 1
    assert a.read_bytes() == b"linked"
    os.link(a, b)
    os.unlink(a)  # the oldest name goes
    assert b.read_bytes() == b"linked"
    os.rename(b, c)
    assert c.read_bytes() == b"linked" and os.stat(c).st_nlink == 1
    lm.remount()
    assert c.read_bytes() == b"linked"


def test_unlinked_open_file_keeps_working(lm):
    p = lm.mnt / "gone"
    p.write_bytes(b"0123456789")
    fd = os.open(p, os.O_RDWR)
    try:
        os.unlink(p)
        assert not p.exists()
        assert os.fstat(fd).st_size == 10
        os.pwrite(fd, b"abc", 10)
        os.ftruncate(fd, 12)
        os.fchmod(fd, 0o600)
        assert os.fstat(fd).st_size == 12
        assert os.pread(fd, 100, 0) == b"0123456789ab"
        # reachable through /proc too (an open by inode, not by name)
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            assert f.read() == b"0123456789ab"
    finally:
        os.close(fd)
    # a new file may reuse the freed inode number: it must be a new file
    for i in range(20):
        q = lm.mnt / f"new{i}"
        q.write_bytes(b"fresh %d" % i)
        assert q.read_bytes() == b"fresh %d" % i


def _daemon_fds(m):
    return len(os.listdir(f"/proc/{m.proc.pid}/fd"))


def test_removals_leave_no_descriptor_behind(lm):
    """unlink, rmdir and rename over an entry pin the removed inode with a
    descriptor and close it after the reply (the block frees then run
    while the caller goes on).  Far more removals than the daemon may hold
    descriptors must all succeed, and leave none open."""
    d = lm.mnt / "gone"
    d.mkdir()
    before = _daemon_fds(lm)
    for i in range(NFILES):
        (d / f"f{i:05d}").write_bytes(b"x" * (i % 5000))
    for i in range(0, 400, 2):  # rename over: 200 files replaced
        os.rename(d / f"f{i:05d}", d / f"f{i + 1:05d}")
    # 150 directories made and removed, 25 at a time (a directory the
    # kernel knows holds a descriptor of its own while it exists)
    for r in range(6):
        for i in range(25):
            sub = d / f"d{r}-{i:02d}"
            sub.mkdir()
            (sub / "inner").write_bytes(b"y")
        for i in range(25):
            os.unlink(d / f"d{r}-{i:02d}" / "inner")
            os.rmdir(d / f"d{r}-{i:02d}")
    for name in os.listdir(d):
        os.unlink(d / name)
    assert os.listdir(d) == []
    os.rmdir(d)
    assert not d.exists()
    assert lm.alive()
    # the audit log's cache of callers may have filled meanwhile (at most a
    # quarter of the limit); nothing else may stay open
    assert _daemon_fds(lm) <= before + NOFILE // 4, os.listdir(f"/proc/{lm.proc.pid}/fd")
