"""Ordinary tools on the mount: cp -a, tar, rsync, git, sqlite (issue 2).

Each tool's result is compared with the source by `diff -r` (content and
names) plus a metadata walk (mode, mtime, symlink targets), so a tool that
"worked" but left different files behind fails.
"""

import os
import sqlite3
import stat
import subprocess

import pytest

from helpers import run


@pytest.fixture
def d(module_mount, request):
    p = module_mount.mnt / request.node.name[:60]
    p.mkdir()
    return p


@pytest.fixture(scope="module")
def source_tree(module_scratch):
    """A small tree with the things archivers care about."""
    src = module_scratch / "src"
    (src / "dir one" / "nested").mkdir(parents=True)
    (src / "empty dir").mkdir()
    (src / "plain.txt").write_text("hello\n" * 100)
    (src / "dir one" / "data.bin").write_bytes(os.urandom(70000))
    (src / "dir one" / "nested" / "zażółć.txt").write_text("utf-8 name\n")
    (src / "exec.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(src / "exec.sh", 0o755)
    (src / "private").write_text("secret-ish\n")
    os.chmod(src / "private", 0o600)
    os.symlink("plain.txt", src / "link-to-plain")
    os.symlink("dir one/nested", src / "link-to-dir")
    os.link(src / "plain.txt", src / "hardlink-to-plain")
    with open(src / "sparse", "wb") as f:
        f.seek(1 << 20)
        f.write(b"end")
    for i, p in enumerate(sorted(src.rglob("*"))):
        os.utime(p, ns=(1_400_000_000_000_000_000 + i, 1_500_000_000_000_000_000 + i * 1000),
                 follow_symlinks=False)
    return src


def _meta(root, coarse=False):
    res = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None
            if coarse and mtime is not None:
                mtime //= 10**9  # tar's ustar/gnu formats keep whole seconds
            res[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), mtime,
                        link, st.st_size if stat.S_ISREG(st.st_mode) else None)
    return res


def _same_tree(a, b, coarse=False):
    r = run(["diff", "-r", "--no-dereference", a, b], check=False, timeout=300)
    assert r.returncode == 0, f"diff -r {a} {b}:\n{r.out[-3000:]}{r.err[-1000:]}"
    ma, mb = _meta(a, coarse), _meta(b, coarse)
    assert ma.keys() == mb.keys()
    bad = {k: (ma[k], mb[k]) for k in ma if ma[k] != mb[k]}
    assert not bad, f"metadata differs: {bad}"


def test_cp_a(d, source_tree):
    run(["cp", "-a", source_tree, d / "copy"])
    _same_tree(source_tree, d / "copy")
    st = os.stat(d / "copy" / "plain.txt")
    assert st.st_nlink == 2
    assert st.st_ino == os.stat(d / "copy" / "hardlink-to-plain").st_ino
    # and back out again
    run(["cp", "-a", d / "copy", d.parent.parent / "back-out"])
    try:
        _same_tree(source_tree, d.parent.parent / "back-out")
    finally:
        run(["rm", "-rf", d.parent.parent / "back-out"])


def test_tar_x_of_linux_headers(d, module_scratch):
    tarball = module_scratch / "linux-headers.tar"
    if not tarball.exists():
        run(["tar", "-C", "/usr/include", "-cf", tarball, "linux"])
    run(["tar", "-C", d, "-xf", tarball], timeout=300)
    _same_tree("/usr/include/linux", d / "linux", coarse=True)
    # tar can also read it back and the listing matches
    r1 = run(["tar", "-tf", tarball])
    r2 = run(["tar", "-C", d, "-cf", "-", "linux"], text=False)
    lst = subprocess.run(["tar", "-tf", "-"], input=r2.stdout, capture_output=True)
    assert sorted(r1.out.split("\n")) == sorted(lst.stdout.decode().split("\n"))


def test_rsync_a(d, source_tree):
    run(["rsync", "-aH", f"{source_tree}/", f"{d}/r/"], timeout=300)
    _same_tree(source_tree, d / "r")
    # a second run finds nothing to do: sizes, mtimes, modes all round-trip
    r = run(["rsync", "-aHi", f"{source_tree}/", f"{d}/r/"])
    assert r.out.strip() == "", f"rsync found differences on the second run:\n{r.out}"
    # and with checksums, content matches too
    r = run(["rsync", "-aHic", f"{source_tree}/", f"{d}/r/"])
    assert r.out.strip() == ""


def _git(*args, cwd=None):
    return run(["git", "-c", "user.name=Test", "-c", "user.email=t@example.invalid",
                "-c", "init.defaultBranch=main", "-c", "safe.directory=*", *args],
               cwd=cwd, env={**os.environ, "HOME": "/tmp", "GIT_CONFIG_NOSYSTEM": "1"})


def test_git_clone(d, module_scratch):
    repo = module_scratch / "repo"
    if not repo.exists():
        _git("init", "-q", repo)
        for i in range(20):
            (repo / f"file{i % 5}.txt").write_text(f"revision {i}\n" * (i + 1))
            (repo / "sub").mkdir(exist_ok=True)
            (repo / "sub" / "binary").write_bytes(os.urandom(3000 + i))
            _git("add", "-A", cwd=repo)
            _git("commit", "-q", "-m", f"commit {i}", cwd=repo)
    _git("clone", "-q", "--no-hardlinks", str(repo), str(d / "clone"))
    _git("fsck", "--full", "--strict", cwd=d / "clone")
    assert _git("rev-parse", "HEAD", cwd=d / "clone").out == _git("rev-parse", "HEAD", cwd=repo).out
    assert _git("rev-list", "--count", "HEAD", cwd=d / "clone").out.strip() == "20"
    assert _git("status", "--porcelain", cwd=d / "clone").out == ""
    # work in the clone: commit, gc (repacks, renames, deletes), still sound
    (d / "clone" / "new.txt").write_text("new\n")
    _git("add", "new.txt", cwd=d / "clone")
    _git("commit", "-q", "-m", "in the mount", cwd=d / "clone")
    _git("gc", "-q", "--aggressive", cwd=d / "clone")
    _git("fsck", "--full", cwd=d / "clone")
    assert _git("rev-list", "--count", "HEAD", cwd=d / "clone").out.strip() == "21"


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_sqlite_database(d, journal):
    path = d / f"records-{journal}.db"
    con = sqlite3.connect(path)
    try:
        mode = con.execute(f"PRAGMA journal_mode={journal}").fetchone()[0]
        assert mode == journal
        con.execute("CREATE TABLE rec (id INTEGER PRIMARY KEY, customer TEXT, body BLOB)")
        with con:
            for i in range(1000):
                con.execute("INSERT INTO rec (customer, body) VALUES (?, ?)",
                            (f"C-{i:05d}", os.urandom(200 + i % 300)))
        with con:
            con.execute("UPDATE rec SET customer = customer || '-x' WHERE id % 3 = 0")
            con.execute("DELETE FROM rec WHERE id % 10 = 0")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM rec").fetchone()[0] == 900
    finally:
        con.close()
    # another connection (another process) sees the same data
    r = run(["sqlite3", path, "PRAGMA integrity_check; SELECT count(*) FROM rec;"])
    assert r.out.split() == ["ok", "900"]
    con = sqlite3.connect(path)
    try:
        con.execute("VACUUM")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
