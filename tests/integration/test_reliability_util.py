"""test_reliability_util.py — shared machinery of the reliability tests.

Not a test module (it holds no tests; pytest collects nothing here).  It
owns: how long the reliability loops run (CI, ASan, `make torture`), the
worker programs the tests start as other users (run this file as a script:
`python3 test_reliability_util.py crash-writer|load-worker ...`), the
deterministic content those workers write, the checker for files caught
in the middle of a write by a crash, daemon RSS sampling, and a small
backing filesystem (loop-mounted ext4, or tmpfs) that is always cleaned up.

Run-length knobs (environment):
  CUSTODIAN_TORTURE=1     the long loops (`make torture`)
  CUSTODIAN_REL_FACTOR=F  multiply every loop count/duration by F
Under ASan (CUSTODIAN_BUILD ends in build-asan, or the daemon is
sanitized) the CI loops are shortened further.
"""

import errno
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

BLOCK = 4096


# --- how long things run -------------------------------------------------------

def torture():
    return os.environ.get("CUSTODIAN_TORTURE") == "1"


def asan():
    b = os.environ.get("CUSTODIAN_BUILD", "").rstrip("/")
    if b.endswith("build-asan"):
        return True
    try:
        import helpers
        return helpers.SANITIZED
    except Exception:
        return False


def scaled(ci, long, asan_ci=None):
    """A loop count or duration: `long` under torture, else `ci` (or
    `asan_ci` under ASan), times CUSTODIAN_REL_FACTOR."""
    f = float(os.environ.get("CUSTODIAN_REL_FACTOR", "1"))
    if torture():
        v = long
    elif asan() and asan_ci is not None:
        v = asan_ci
    else:
        v = ci
    out = v * f
    return type(v)(max(1, out)) if isinstance(v, int) else out


def report(name, **figures):
    """Prints one line of figures (visible with pytest -s, and in
    CUSTODIAN_REL_REPORT if set) for docs/reliability.md."""
    line = f"reliability {name}: " + " ".join(f"{k}={v}" for k, v in figures.items())
    print(line)
    path = os.environ.get("CUSTODIAN_REL_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


# --- deterministic content -----------------------------------------------------

def content(seed, size):
    """The bytes a worker writes for (seed, size): reproducible anywhere."""
    return random.Random(seed).randbytes(size)


def digest(data):
    return hashlib.sha256(data).hexdigest()


# --- processes as other users --------------------------------------------------

def popen_as(user, argv, **kw):
    """Popen of argv as user (uid, gid, groups), or as root if user is
    None.  stdout/stderr go to files the caller passes (default: DEVNULL)."""
    if user is not None:
        import helpers
        uid, gid, groups = helpers.user_ids(user)
        kw.update(user=uid, group=gid, extra_groups=groups)
    kw.setdefault("stdin", subprocess.DEVNULL)
    kw.setdefault("cwd", "/")
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp"}
    return subprocess.Popen([str(a) for a in argv], env=env, **kw)


def me():
    return [sys.executable if os.path.exists(sys.executable) else "/usr/bin/python3",
            str(Path(__file__).resolve())]


# --- daemon memory ---------------------------------------------------------------

def rss_kib(pid):
    """VmRSS of pid in KiB, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# --- a small backing filesystem ------------------------------------------------------

class SmallFs:
    """A small filesystem mounted at `path`: a loop-mounted ext4 image of
    size_mib (what a real full disk looks like, with its reserved blocks
    and metadata), or tmpfs with size= if loop devices are unavailable.
    .kind is "ext4" or "tmpfs".  close() unmounts (the loop device is
    detached with it: mount -o loop sets autoclear) and removes the image."""

    def __init__(self, path, size_mib=64):
        self.path = Path(path)
        self.image = self.path.parent / (self.path.name + ".img")
        self.kind = None
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.image, "wb") as f:
                f.truncate(size_mib << 20)
            r = subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "0", "-N", "4096",
                                str(self.image)], capture_output=True, timeout=60)
            if r.returncode == 0:
                r = subprocess.run(["mount", "-o", "loop", str(self.image), str(self.path)],
                                   capture_output=True, timeout=60)
            if r.returncode == 0:
                self.kind = "ext4"
        except (OSError, subprocess.SubprocessError):
            pass
        if self.kind is None:
            self.image.unlink(missing_ok=True)
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755",
                                "tmpfs", str(self.path)], capture_output=True, timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"cannot mount a small filesystem: {r.stderr!r}")
            self.kind = "tmpfs"
        os.chmod(self.path, 0o755)

    def free(self):
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def close(self):
        import helpers
        for _ in range(5):
            if not helpers.is_mounted(self.path):
                break
            r = subprocess.run(["umount", str(self.path)], capture_output=True, timeout=60)
            if r.returncode != 0:
                time.sleep(0.2)
                subprocess.run(["umount", "-l", str(self.path)], capture_output=True,
                               timeout=60)
        self.image.unlink(missing_ok=True)


# --- the crash writer --------------------------------------------------------------
#
# Manifest protocol (one line per event, fsynced before the next step):
#   B <op> <args...>   about to do op (intent)
#   E                  the op returned successfully (its effects were fsynced)
#   S <name> <seed> <size>   set by the test after a crash: the file's state
#   G <name>                 set by the test after a crash: the file is gone
#   V                        set by the test: the in-flight op is resolved
# Ops: C name seed size (create), M name seed size (rewrite in place and
# truncate), R old new (rename), X src dst (rename over an existing file),
# D name (unlink).


def replay(lines):
    """Replays a manifest: (state {name: (seed, size)}, pending op or None)."""
    state, pending = {}, None
    for line in lines:
        p = line.split()
        if not p:
            continue
        if p[0] == "B":
            pending = p[1:]
        elif p[0] == "E" and pending is not None:
            op = pending
            if op[0] in ("C", "M"):
                state[op[1]] = (int(op[2]), int(op[3]))
            elif op[0] in ("R", "X"):
                state[op[2]] = state.pop(op[1])
            elif op[0] == "D":
                state.pop(op[1], None)
            pending = None
        elif p[0] == "S":
            state[p[1]] = (int(p[2]), int(p[3]))
            pending = None
        elif p[0] == "G":
            state.pop(p[1], None)
            pending = None
        elif p[0] == "V":
            pending = None
    return state, pending


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def crash_writer(wdir, manifest, seed):
    """Writes, rewrites, renames and deletes files in wdir forever (until
    the mount goes away), logging every step to manifest."""
    rng = random.Random(seed)
    with open(manifest) as f:
        state, pending = replay(f.read().splitlines())
    if pending is not None:
        raise SystemExit(f"unresolved pending op {pending}")
    mf = open(manifest, "a")
    counter = 0
    tag = f"{int(seed):x}"  # names never repeat across rounds

    def log(line):
        mf.write(line + "\n")
        mf.flush()
        os.fsync(mf.fileno())

    def size_pick():
        r = rng.random()
        if r < 0.1:
            return 0
        if r < 0.5:
            return rng.randrange(1, 3 * BLOCK)
        if r < 0.9:
            return rng.randrange(BLOCK, 64 * 1024)
        return rng.randrange(64 * 1024, 400 * 1024)

    def write_all(fd, data):
        off = 0
        while off < len(data):
            n = rng.choice((1000, BLOCK, 3 * BLOCK + 17, 70000, 1 << 20))
            off += os.pwrite(fd, data[off:off + n], off)

    while True:
        counter += 1
        names = sorted(state)
        r = rng.random()
        if len(names) < 8 or r < 0.35:
            name, s, size = f"f{tag}-{counter}", seed * 1000 + counter, size_pick()
            log(f"B C {name} {s} {size}")
            fd = os.open(os.path.join(wdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            write_all(fd, content(s, size))
            os.fsync(fd)
            os.close(fd)
            _fsync_dir(wdir)
            state[name] = (s, size)
        elif r < 0.55:
            name = rng.choice(names)
            s, size = seed * 1000 + counter, size_pick()
            log(f"B M {name} {s} {size}")
            fd = os.open(os.path.join(wdir, name), os.O_WRONLY)
            write_all(fd, content(s, size))
            os.ftruncate(fd, size)
            os.fsync(fd)
            os.close(fd)
            state[name] = (s, size)
        elif r < 0.7:
            old, new = rng.choice(names), f"r{tag}-{counter}"
            log(f"B R {old} {new}")
            os.rename(os.path.join(wdir, old), os.path.join(wdir, new))
            _fsync_dir(wdir)
            state[new] = state.pop(old)
        elif r < 0.8 and len(names) >= 2:
            src, dst = rng.sample(names, 2)
            log(f"B X {src} {dst}")
            os.rename(os.path.join(wdir, src), os.path.join(wdir, dst))
            _fsync_dir(wdir)
            state[dst] = state.pop(src)
        elif len(names) > 30 or r < 0.9:
            name = rng.choice(names)
            log(f"B D {name}")
            os.unlink(os.path.join(wdir, name))
            _fsync_dir(wdir)
            del state[name]
        else:
            continue
        log("E")


def read_blocks(path):
    """(data with None for unreadable 4 KiB blocks as a list, size) of a
    file, reading block by block so one EIO block does not hide the rest.
    Raises FileNotFoundError if absent."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        blocks = []
        for off in range(0, size, BLOCK):
            try:
                blocks.append(os.pread(fd, BLOCK, off))
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                blocks.append(None)
        return blocks, size
    finally:
        os.close(fd)


def mixed_ok(blocks, size, old, new):
    """True if a file caught by a crash in the middle of rewriting `old`
    (bytes) into `new` is in an accepted state (docs/reliability.md):
    its size lies between the two sizes, and every readable 4 KiB block
    is some prefix of the new bytes at that offset followed by the old
    bytes (zero beyond the old end: a hole); unreadable blocks (EIO) are
    counted by the caller."""
    lo, hi = min(len(old), len(new)), max(len(old), len(new))
    if not lo <= size <= hi:
        return False
    oldp = old + bytes(max(0, hi - len(old)))
    newp = new + bytes(max(0, hi - len(new)))
    for i, b in enumerate(blocks):
        if b is None:
            continue
        off = i * BLOCK
        want_len = min(BLOCK, size - off)
        if len(b) != want_len:
            return False
        n, o = newp[off:off + want_len], oldp[off:off + want_len]
        k = 0
        while k < want_len and b[k] == n[k]:
            k += 1
        if b[k:] != o[k:] and b[k:] != bytes(want_len - k):
            return False
    return True


# --- the load worker ---------------------------------------------------------------

def load_worker(wdir, seconds, seed, readdir=None):
    """Writes files of known content, reads them back and checks their
    checksums, for `seconds`; also reads the other workers' files in
    readdir (when given) and checks them against the digest in their
    name.  Prints 'ops N bytes B' and exits 0, or exits 1 naming the
    first mismatch."""
    rng = random.Random(seed)
    end = time.monotonic() + float(seconds)
    ops = nbytes = 0
    mine = []
    while time.monotonic() < end:
        r = rng.random()
        if r < 0.4 or not mine:
            s = rng.randrange(1 << 30)
            size = rng.choice((0, 1, 4095, 4096, 4097, 30000, 200000, rng.randrange(1 << 20)))
            data = content(s, size)
            name = f"{s}-{size}-{digest(data)[:16]}"
            tmp = os.path.join(wdir, "." + name + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.rename(tmp, os.path.join(wdir, name))
            mine.append(name)
            nbytes += size
        elif r < 0.8:
            name = rng.choice(mine)
            with open(os.path.join(wdir, name), "rb") as f:
                data = f.read()
            if digest(data)[:16] != name.split("-")[2]:
                print(f"MISMATCH {wdir}/{name} size {len(data)}", flush=True)
                sys.exit(1)
            nbytes += len(data)
        elif r < 0.9 and readdir:
            try:
                others = [n for n in os.listdir(readdir) if not n.startswith(".")]
            except OSError as e:
                print(f"listdir {readdir}: {e}", flush=True)
                sys.exit(1)
            if others:
                name = rng.choice(others)
                try:
                    with open(os.path.join(readdir, name), "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    continue  # deleted meanwhile by its owner
                if digest(data)[:16] != name.split("-")[2]:
                    print(f"MISMATCH {readdir}/{name} size {len(data)}", flush=True)
                    sys.exit(1)
                nbytes += len(data)
        else:
            if len(mine) > 20:
                name = mine.pop(rng.randrange(len(mine)))
                os.unlink(os.path.join(wdir, name))
        ops += 1
    print(f"ops {ops} bytes {nbytes}", flush=True)


if __name__ == "__main__":
    cmd = sys.argv[1]
    try:
        if cmd == "crash-writer":
            crash_writer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        elif cmd == "load-worker":
            load_worker(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]),
                        sys.argv[5] if len(sys.argv) > 5 else None)
        else:
            raise SystemExit(f"unknown command {cmd}")
    except OSError as e:
        # The crash writer ends this way when the daemon is killed.  The
        # errno of the call caught by the kill depends on where the kernel
        # was in it (ENOTCONN, ECONNABORTED, and EIO or EACCES from a
        # request or attribute refresh the abort cut short), so the test
        # judges by time: CLOCK_MONOTONIC is shared by every process.
        print(f"stopped: errno={e.errno} t={time.monotonic():.6f} {e}", flush=True)
        sys.exit(3)
