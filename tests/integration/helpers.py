"""helpers.py — the machinery behind the integration fixtures.

Owns: where the binaries are, creating stores, mounting and unmounting the
real filesystem (and never leaving a mount behind), the test users and
running code as them, the ciphertext format constants the tamper tests use
to find blocks, and sanitizer-report detection.  conftest.py wraps these in
fixtures; test files may also `import helpers` directly (pytest puts this
directory on sys.path).

Everything here fails loudly: a daemon that does not mount, dies, or prints
an ASan/UBSan report makes the test fail with the daemon's stderr.
"""

import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CUSTODIAN_BUILD", str(REPO / "build"))).resolve()
CUSTODIAN = BUILD / "custodian"
CUSTODIANFS = BUILD / "custodianfs"
PYTHON = "/usr/bin/python3"

PASSPHRASE = b"integration-test passphrase, not secret"
WRONG_PASSPHRASE = b"this is not the passphrase"

# fs/format.h: header, then blocks of nonce(24) | ciphertext(<=4096) | tag(16).
HEADER_BYTES = 80
BLOCK_PLAIN = 4096
BLOCK_OVERHEAD = 40
BLOCK_CIPHER = BLOCK_PLAIN + BLOCK_OVERHEAD

SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "ERROR: UndefinedBehaviorSanitizer",
    "runtime error:",
)


def engine_program(src, out, *flags):
    """Compiles the C program src against build/libcustodian.a into out (with
    the sanitizers when the build under test has them); skips the test if the
    library is not built.  The link libraries are the Makefile's own list
    (build/engine.ldlibs)."""
    lib = BUILD / "libcustodian.a"
    ldlibs = BUILD / "engine.ldlibs"
    if not lib.exists() or not ldlibs.exists():
        pytest.skip("libcustodian.a not built (make all)")
    san = (["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
           if _is_sanitized() else [])
    run(["cc", "-O1", "-g", "-std=c11", "-D_GNU_SOURCE", f"-I{REPO}/fs", f"-I{REPO}/policy",
         "-pthread", *flags, *san, "-o", out, src, lib, *ldlibs.read_text().split()])
    return out


def _is_sanitized():
    try:
        with open(CUSTODIANFS, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"AddressSanitizer" in data
    except OSError:
        return False


SANITIZED = _is_sanitized()
# Timeouts scale with this (ASan builds are several times slower).
SLOW = float(os.environ.get("CUSTODIAN_SLOW", "4" if SANITIZED else "1"))
MOUNT_TIMEOUT = 10.0 * SLOW


def cipher_size(plain):
    """Ciphertext file size for a plaintext size (fs/format.h)."""
    if plain == 0:
        return HEADER_BYTES  # or 0 before the first write
    full, rest = divmod(plain, BLOCK_PLAIN)
    return HEADER_BYTES + full * BLOCK_CIPHER + (rest + BLOCK_OVERHEAD if rest else 0)


def block_offset(i):
    """Offset of ciphertext block i in a backing file."""
    return HEADER_BYTES + i * BLOCK_CIPHER


def sanitizer_report(text):
    """The sanitizer report in text, or None."""
    for m in SANITIZER_MARKERS:
        k = text.find(m)
        if k >= 0:
            return text[max(0, k - 200):k + 4000]
    return None


def require_binaries():
    for b in (CUSTODIAN, CUSTODIANFS):
        if not os.access(b, os.X_OK):
            pytest.fail(f"{b} is not built (CUSTODIAN_BUILD={BUILD})")


# --- running things ----------------------------------------------------------

def run(argv, check=True, timeout=None, **kw):
    """subprocess.run with text output captured; fails the test on error."""
    timeout = (timeout or 120) * SLOW
    kw.setdefault("stdin", subprocess.DEVNULL)
    try:
        r = subprocess.run([str(a) for a in argv], capture_output=True,
                           timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout:.0f}s: {argv}")
    out = r.stdout.decode(errors="replace") if isinstance(r.stdout, bytes) else r.stdout
    err = r.stderr.decode(errors="replace") if isinstance(r.stderr, bytes) else r.stderr
    r.out, r.err = out, err
    if check and r.returncode != 0:
        pytest.fail(f"{argv} exited {r.returncode}\nstdout: {out[-2000:]}\nstderr: {err[-3000:]}")
    return r


def tool(*args, check=True, timeout=None, **kw):
    """Runs build/custodian; fails the test on a sanitizer report."""
    r = run([CUSTODIAN, *args], check=False, timeout=timeout, **kw)
    rep = sanitizer_report(r.err)
    if rep:
        pytest.fail(f"custodian {args[0] if args else ''}: sanitizer report:\n{rep}")
    if check and r.returncode != 0:
        pytest.fail(f"custodian {list(args)} exited {r.returncode}\n"
                    f"stdout: {r.out[-2000:]}\nstderr: {r.err[-2000:]}")
    return r


# --- mounts --------------------------------------------------------------------

def _unescape(s):
    # /proc/mounts escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(s):
        esc = s[i + 1:i + 4]
        if s[i] == "\\" and len(esc) == 3 and esc.isdigit():
            out.append(chr(int(esc, 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def mounts():
    """[(source, mountpoint, fstype, options)] from /proc/self/mounts."""
    res = []
    with open("/proc/self/mounts") as f:
        for line in f:
            p = line.split()
            if len(p) >= 4:
                res.append((_unescape(p[0]), _unescape(p[1]), p[2], p[3]))
    return res


def mount_entry(mnt):
    mnt = os.path.realpath(str(mnt))
    found = None
    for e in mounts():
        if e[1] == mnt:
            found = e  # the last one is on top
    return found


def is_mounted(mnt):
    return mount_entry(mnt) is not None


def lazy_unmount(mnt):
    """fusermount3 -u -z until mnt is no longer a mount point."""
    for _ in range(10):
        if not is_mounted(mnt):
            return
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)],
                       capture_output=True, timeout=30)
    if is_mounted(mnt):
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


# Every Mount that has a live daemon; the session teardown and the watchdog
# use it so nothing is left behind.
LIVE = set()
_LIVE_LOCK = threading.Lock()


class Store:
    """A store on disk: .path (STORE), .passfile, .tree (STORE/tree), .db."""

    def __init__(self, path, passfile):
        self.path = Path(path)
        self.passfile = Path(passfile)
        self.tree = self.path / "tree"
        self.db = self.path / "custodian.db"
        self.init_out = ""

    @classmethod
    def create(cls, parent, name="store", passphrase=PASSPHRASE):
        """`custodian init` (fast KDF) in parent/name, passfile parent/name.pass."""
        parent = Path(parent)
        pf = parent / f"{name}.pass"
        pf.write_bytes(passphrase)
        os.chmod(pf, 0o600)
        st = cls(parent / name, pf)
        r = tool("init", st.path, "--passfile", pf, "--kdf-ops", "1", "--kdf-mem", "8")
        st.init_out = r.out
        if not st.tree.is_dir():
            pytest.fail(f"custodian init did not create {st.tree}")
        return st

    def backing_files(self):
        """Every regular, non-reserved file under tree/ -> size."""
        res = {}
        for d, _dirs, files in os.walk(self.tree):
            for f in files:
                if f.startswith("."):
                    continue
                p = Path(d) / f
                if p.is_file() and not p.is_symlink():
                    res[p] = p.stat().st_size
        return res


class Mount:
    """A custodianfs daemon (foreground, -f) mounted at .mnt.

    .proc is the daemon; .stderr() its output so far.  start() waits until
    the mount appears in /proc/self/mounts; stop() unmounts with
    fusermount3 -u (then -u -z), stops the daemon (TERM, then KILL) and
    fails the test on a sanitizer report or a crash.  remount() = stop +
    start with the same options.  Always registered in LIVE while running.
    """

    counter = 0

    def __init__(self, store, mnt, options=("-o", "allow_other"), passfile=None,
                 extra_args=(), env=None):
        self.store = store
        self.env = env                      # the daemon's environment (None: ours)
        self.mnt = Path(mnt)
        self.options = list(options)
        self.passfile = Path(passfile) if passfile else store.passfile
        self.extra_args = list(extra_args)
        self.proc = None
        self.killed_by_us = False
        self.stderr_path = None
        self.returncode = None
        self.mnt.mkdir(parents=True, exist_ok=True)
        os.chmod(self.mnt, 0o755)

    def argv(self):
        return [str(CUSTODIANFS), str(self.store.path), str(self.mnt),
                "--passfile", str(self.passfile), "-f", *self.options, *self.extra_args]

    def start(self):
        assert self.proc is None, "already running"
        if is_mounted(self.mnt):
            pytest.fail(f"{self.mnt} is already a mount point")
        Mount.counter += 1
        self.stderr_path = self.mnt.parent / f".daemon-{self.mnt.name}-{Mount.counter}.log"
        self.killed_by_us = False
        self.returncode = None
        with open(self.stderr_path, "wb") as errf:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=errf, stderr=errf, env=self.env,
                                         start_new_session=True)
        with _LIVE_LOCK:
            LIVE.add(self)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while time.monotonic() < deadline:
            e = mount_entry(self.mnt)
            if e is not None:
                return self
            if self.proc.poll() is not None:
                self._forget()
                pytest.fail(f"custodianfs exited {self.proc.returncode} before mounting "
                            f"{self.mnt}:\n{self.stderr()}")
            time.sleep(0.02)
        self.stop(check=False)
        pytest.fail(f"custodianfs did not mount {self.mnt} within {MOUNT_TIMEOUT:.0f}s:\n"
                    f"{self.stderr()}")

    def stderr(self):
        try:
            return Path(self.stderr_path).read_text(errors="replace")
        except (OSError, TypeError):
            return ""

    def _forget(self):
        with _LIVE_LOCK:
            LIVE.discard(self)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Sends sig to the daemon (the mount stays until unmounted)."""
        self.killed_by_us = True
        self.proc.send_signal(sig)

    def stop(self, check=True):
        """Unmounts and reaps the daemon; returns its exit status."""
        if self.proc is None:
            return self.returncode
        proc = self.proc
        try:
            if is_mounted(self.mnt) and proc.poll() is None:
                r = subprocess.run(["fusermount3", "-u", str(self.mnt)],
                                   capture_output=True, timeout=30 * SLOW)
                if r.returncode != 0:
                    lazy_unmount(self.mnt)
            try:
                proc.wait(timeout=10 * SLOW)
            except subprocess.TimeoutExpired:
                self.killed_by_us = True
                proc.terminate()
                try:
                    proc.wait(timeout=5 * SLOW)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=30)
        finally:
            lazy_unmount(self.mnt)
            self._forget()
            self.proc = None
        self.returncode = proc.returncode
        if check:
            self.check()
        return self.returncode

    def check(self):
        """Fails on a sanitizer report, or on a crash we did not cause."""
        err = self.stderr()
        rep = sanitizer_report(err)
        if rep:
            pytest.fail(f"custodianfs ({self.mnt}) sanitizer report:\n{rep}")
        rc = self.returncode
        if rc is not None and rc != 0 and not self.killed_by_us:
            pytest.fail(f"custodianfs ({self.mnt}) exited {rc}:\n{err[-3000:]}")

    def remount(self):
        """Unmount (checked) and mount again with the same options."""
        self.stop()
        return self.start()


def kill_all_live(reason):
    """Watchdog / last resort: SIGKILL every daemon and lazily unmount."""
    with _LIVE_LOCK:
        live = list(LIVE)
    for m in live:
        try:
            if m.proc is not None and m.proc.poll() is None:
                m.killed_by_us = True
                m.proc.kill()
        except Exception:
            pass
        try:
            lazy_unmount(m.mnt)
        except Exception:
            pass
    return live


def cleanup_all():
    for m in list(LIVE):
        try:
            m.stop(check=False)
        except Exception:
            kill_all_live("cleanup")


def unmount_everything_under(base):
    """Lazy-unmounts every mount point under base (deepest first)."""
    base = os.path.realpath(str(base)) + "/"
    for _src, mp, _t, _o in sorted(mounts(), key=lambda e: -len(e[1])):
        if mp.startswith(base):
            lazy_unmount(mp)


# --- scratch space -------------------------------------------------------------

_BASE = None


def scratch_base():
    """/tmp/custodian-it-XXXX (0755) for this session: test users must be
    able to traverse to the mount points, which pytest's 0700 tmp does not
    allow."""
    global _BASE
    if _BASE is None:
        _BASE = Path(tempfile.mkdtemp(prefix="custodian-it-", dir="/tmp"))
        os.chmod(_BASE, 0o755)
    return _BASE


def scratch_dir(name):
    base = scratch_base()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]
    d = Path(tempfile.mkdtemp(prefix=safe + "-", dir=base))
    os.chmod(d, 0o755)
    return d


def remove_tree(path):
    """rmtree, but never into a mount point."""
    unmount_everything_under(path)
    for _s, mp, _t, _o in mounts():
        if mp == os.path.realpath(str(path)) or mp.startswith(os.path.realpath(str(path)) + "/"):
            return  # still mounted: leave it rather than descend
    shutil.rmtree(path, ignore_errors=True)


# --- users ---------------------------------------------------------------------

GROUPS = ("cust_agents", "cust_supervisors", "cust_records")
USERS = {  # user -> supplementary groups
    "cust_alice": ("cust_agents",),
    "cust_bob": ("cust_supervisors",),
    "cust_carol": ("cust_records",),
}


def _id(cmd, name):
    import grp
    import pwd
    try:
        return (pwd.getpwnam if cmd == "user" else grp.getgrnam)(name)
    except KeyError:
        return None


def ensure_users():
    """Creates the test groups and users if missing (idempotent); makes sure
    each user is in its groups.  Returns {name: pwd entry}."""
    import grp
    import pwd
    for g in GROUPS:
        if _id("group", g) is None:
            r = subprocess.run(["groupadd", "-f", g], capture_output=True, text=True)
            if r.returncode != 0 and _id("group", g) is None:
                pytest.fail(f"groupadd {g}: {r.stderr}")
    for u, groups in USERS.items():
        if _id("user", u) is None:
            r = subprocess.run(["useradd", "-M", "-U", "-d", "/nonexistent",
                                "-s", "/usr/sbin/nologin", "-G", ",".join(groups), u],
                               capture_output=True, text=True)
            if r.returncode != 0 and _id("user", u) is None:
                pytest.fail(f"useradd {u}: {r.stderr}")
        for g in groups:
            if u not in grp.getgrnam(g).gr_mem:
                subprocess.run(["usermod", "-a", "-G", g, u], capture_output=True)
    return {u: pwd.getpwnam(u) for u in USERS}


def user_ids(user):
    """(uid, primary gid, [supplementary gids]) of a user."""
    import grp
    import pwd
    pw = pwd.getpwnam(user)
    groups = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem]
    return pw.pw_uid, pw.pw_gid, groups


def run_as(user, argv, check=False, timeout=None, **kw):
    """Runs argv as user (uid, primary gid and supplementary groups set, like
    `runuser -u USER --` without PAM).  Returns CompletedProcess with .out/.err."""
    uid, gid, groups = user_ids(user)
    env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp", "LANG": "C.UTF-8",
           "USER": user, "LOGNAME": user}
    env.update(kw.pop("env", {}) or {})
    kw.setdefault("cwd", "/")
    kw.setdefault("umask", 0o022)
    return run(argv, check=check, timeout=timeout, user=uid, group=gid,
               extra_groups=groups, env=env, **kw)


_TRY_OP = r"""
import errno, os, sys
op, path = sys.argv[1], sys.argv[2]
arg = sys.argv[3] if len(sys.argv) > 3 else None
try:
    if op == "read":
        with open(path, "rb") as f: data = f.read()
        sys.stdout.write(data.decode("latin-1"))
    elif op == "write":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, (arg or "x").encode()); os.close(fd)
    elif op == "append":
        fd = os.open(path, os.O_WRONLY | os.O_APPEND); os.write(fd, (arg or "x").encode()); os.close(fd)
    elif op == "create":
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(arg or "644", 8)); os.close(fd)
    elif op == "mkdir": os.mkdir(path)
    elif op == "rmdir": os.rmdir(path)
    elif op == "unlink": os.unlink(path)
    elif op == "list": sys.stdout.write("\n".join(sorted(os.listdir(path))))
    elif op == "stat": sys.stdout.write("%o" % (os.stat(path).st_mode & 0o7777))
    elif op == "chmod": os.chmod(path, int(arg, 8))
    elif op == "rename": os.rename(path, arg)
    else: raise SystemExit("bad op " + op)
except OSError as e:
    sys.stderr.write("errno=%d %s\n" % (e.errno, e)); sys.exit(10 + 0 * e.errno)
"""


def try_as(user, op, path, arg=None):
    """Performs one file operation as user.  Returns (errno or 0, stdout).
    ops: read write append create mkdir rmdir unlink list stat chmod rename
    (stat's stdout: the permission bits in octal)."""
    argv = [PYTHON, "-c", _TRY_OP, op, str(path)] + ([str(arg)] if arg is not None else [])
    r = run_as(user, argv, timeout=60)
    if r.returncode == 0:
        return 0, r.out
    if r.returncode == 10 and r.err.startswith("errno="):
        return int(r.err.split()[0][6:]), r.out
    pytest.fail(f"try_as {user} {op} {path}: exit {r.returncode}: {r.err}")


def errname(e):
    return errno.errorcode.get(e, str(e)) if e else "OK"


# --- the daemon's control channel (added with the live subject verbs) ---------

def control(store, request, timeout=30):
    """Sends one request on STORE/control.sock as the admin tool does
    (AF_UNIX SOCK_SEQPACKET, reached through /proc/self/fd so long store
    paths fit).  Returns (errno or 0, reply text)."""
    import socket
    dfd = os.open(str(store.path), os.O_PATH | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.settimeout(timeout * SLOW)
        s.connect(f"/proc/self/fd/{dfd}/control.sock")
        s.send(request.encode())
        r = s.recv(65536).decode(errors="replace")
    finally:
        s.close()
        os.close(dfd)
    if r == "OK" or r.startswith("OK "):
        return 0, r[3:]
    assert r.startswith("ERR "), r
    code, _, text = r[4:].partition(" ")
    return int(code), text


def grep_store(store, needles):
    """{needle: [files]} for every byte string in needles found anywhere in
    the store directory (database, WAL, journal, tree, trash)."""
    found = {}
    for d, _dirs, files in os.walk(store.path):
        for f in files:
            p = Path(d) / f
            try:
                data = p.read_bytes()
            except OSError:
                continue
            for n in needles:
                if n in data:
                    found.setdefault(n, []).append(str(p))
    return found
