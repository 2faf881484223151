"""Full disk: the store lives on a small filesystem that fills up (issue 7).

The store is created on a 64 MiB loop-mounted ext4 image (tmpfs with
size= where loop devices are unavailable; test_reliability_util.SmallFs).
Files written and fsynced before the disk fills are the "keep" set.
Then, through the mount:

- a writer (cust_alice) fills the disk with one large file: it gets
  ENOSPC (errno 28) and nothing else; whatever write() accepted before
  reads back exactly;
- root appends to a kept file on the full disk: ENOSPC, and the file is
  its old content plus exactly the bytes write() reported as written;
- the remaining space is used up with small files, then creates, mkdirs,
  long names (sidecar files), a rename to a long name, and a symlink are
  tried: each either works completely or fails with ENOSPC and leaves no
  trace (no entry in the listing, the source of a failed rename intact);
- all the while the daemon keeps serving reads of the kept files;
- after deleting the filler, writing resumes (a new file is written,
  fsynced and read back);
- unmounted, `custodian fsck` is clean and `custodian audit verify` passes.
"""

import errno
import os
import shutil

import pytest

import helpers
import test_reliability_util as U
from helpers import Mount, Store, tool

MIB = 1 << 20
LONG = "L" * 200  # > 175 bytes: stored hashed, with a sidecar (docs/format.md)


@pytest.fixture
def small_store(scratch):
    helpers.require_binaries()
    fs = U.SmallFs(scratch / "small", size_mib=64)
    mounts = []
    try:
        store = Store.create(fs.path)
        yield store, fs, mounts
    finally:
        for m in mounts:
            m.stop(check=False)
        fs.close()


def _fill_with_one_file(path, chunk=MIB):
    """Writes until ENOSPC; returns bytes accepted.  Other errors raise."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    total = 0
    try:
        while True:
            data = U.content(total, chunk)
            try:
                n = os.write(fd, data)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                return total
            total += n
    finally:
        os.close(fd)


FILL_AS_USER = r"""
import errno, os, random, sys
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
total = 0
while True:
    data = random.Random(total).randbytes(1 << 20)
    try:
        total += os.write(fd, data)
    except OSError as e:
        print(e.errno, total)
        break
os.close(fd)
"""


def _expected_fill(total):
    out, off = bytearray(), 0
    while off < total:
        chunk = __import__("random").Random(off).randbytes(MIB)
        out += chunk
        off += len(chunk)
    return bytes(out[:total])


def test_reliability_full_disk(small_store, users):
    store, fs, mounts = small_store
    m = Mount(store, fs.path.parent / "mnt")
    mounts.append(m)
    m.start()
    os.chmod(m.mnt, 0o755)
    enospc = {}

    keep = {}
    kd = m.mnt / "keep"
    kd.mkdir()
    for i, size in enumerate((0, 1, 4095, 4097, 100000, 3 * MIB)):
        p = kd / f"k{i}"
        data = U.content(1000 + i, size)
        with open(p, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        keep[p] = data
    (kd / LONG).write_bytes(b"long name kept")
    keep[kd / LONG] = b"long name kept"

    def check_keep(when):
        for p, data in keep.items():
            assert p.read_bytes() == data, f"{p} damaged {when}"

    # 1. A user fills the disk with one file.
    ud = m.mnt / "alice"
    ud.mkdir()
    uid, gid, _ = helpers.user_ids("cust_alice")
    os.chown(ud, uid, gid)
    r = helpers.run_as("cust_alice", [helpers.PYTHON, "-c", FILL_AS_USER, ud / "filler"],
                       timeout=300)
    assert r.returncode == 0, r.err
    err, total = map(int, r.out.split())
    assert err == errno.ENOSPC, f"filling the disk gave errno {err}, not ENOSPC"
    enospc["user write"] = 1
    assert total > 40 * MIB, f"only {total} bytes fit on a 64 MiB disk"
    with open(ud / "filler", "rb") as f:
        got = f.read()
    assert len(got) == total and got == _expected_fill(total), \
        "bytes accepted before ENOSPC do not read back"
    del got
    check_keep("after the disk filled")

    # 2. Append to a kept file on the full disk: old + what write() took.
    victim = kd / "k4"
    fd = os.open(victim, os.O_WRONLY | os.O_APPEND)
    took = 0
    extra = U.content(77, 4 * MIB)
    try:
        while took < len(extra):
            took += os.write(fd, extra[took:])
        pytest.fail("appending 4 MiB to a full disk did not fail")
    except OSError as e:
        assert e.errno == errno.ENOSPC, f"append on a full disk: {e}"
        enospc["append"] = 1
    finally:
        os.close(fd)
    keep[victim] = keep[victim] + extra[:took]
    check_keep("after a failed append")

    # 3. Use up what is left with small files (data blocks and inodes).
    sd = m.mnt / "small"
    try:
        sd.mkdir()
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
        sd = kd
    made = []
    for i in range(20000):
        p = sd / f"s{i}"
        try:
            with open(p, "wb") as f:
                f.write(b"s" * 3000)
            made.append(p)
        except OSError as e:
            assert e.errno == errno.ENOSPC, f"small file {i}: {e}"
            enospc["small files"] = 1
            break
    # A failed create may or may not leave an empty entry (the kernel
    # creates before it writes); it must never be unreadable.
    listed = set(os.listdir(sd))
    for n in listed:
        (sd / n).stat()

    # 4. Metadata on a full disk: all or nothing, ENOSPC otherwise.
    def attempt(label, fn, *paths):
        try:
            fn()
        except OSError as e:
            assert e.errno == errno.ENOSPC, f"{label}: {e}"
            enospc[label] = enospc.get(label, 0) + 1
            for p in paths:
                assert not os.path.lexists(p), f"{label} failed but left {p}"
            return False
        for p in paths:
            assert os.path.lexists(p), f"{label} succeeded but {p} is missing"
        return True

    d = m.mnt / "keep"
    attempt("mkdir", lambda: os.mkdir(d / "newdir"), d / "newdir")
    attempt("mkdir long name", lambda: os.mkdir(d / ("D" * 220)), d / ("D" * 220))
    attempt("create long name", lambda: open(d / ("F" * 230), "wb").close(), d / ("F" * 230))
    attempt("symlink", lambda: os.symlink("t" * 1000, d / "sym"), d / "sym")
    src = kd / "k3"
    if attempt("rename to long name", lambda: os.rename(src, kd / ("R" * 240)),
               kd / ("R" * 240)):
        keep[kd / ("R" * 240)] = keep.pop(src)
    else:
        assert src.read_bytes() == keep[src]
    attempt("write new file", lambda: (d / "w").write_bytes(b"x" * 100000))
    if (d / "w").exists():
        data = (d / "w").read_bytes()
        assert data == b"x" * len(data), "partial write on a full disk is not a prefix"
    check_keep("after metadata on a full disk")
    for p in os.listdir(d):
        os.stat(d / p)  # every listed name decrypts (no EIO)
    assert m.alive(), "daemon died on a full disk"

    # 5. Free space: writing resumes.
    os.unlink(ud / "filler")
    for p in made:
        p.unlink()
    fresh = U.content(5, 2 * MIB + 3)
    with open(m.mnt / "fresh", "wb") as f:
        f.write(fresh)
        f.flush()
        os.fsync(f.fileno())
    assert (m.mnt / "fresh").read_bytes() == fresh
    os.mkdir(m.mnt / "after")
    (m.mnt / "after" / ("N" * 250)).write_bytes(b"ok")
    check_keep("after space was freed")
    m.stop()

    r = tool("fsck", store.path, "--passfile", store.passfile, check=False)
    assert r.returncode == 0, f"fsck after a full disk:\n{r.out}\n{r.err}"
    r = tool("audit", "verify", store.path, "--passfile", store.passfile, check=False)
    assert r.returncode == 0, f"audit verify after a full disk:\n{r.out}\n{r.err}"
    U.report("enospc", backing=fs.kind, cases=len(enospc), which="/".join(sorted(enospc)))
