"""Nothing readable in the store (issue 2).

Writes content, file names, directory names and symlink targets that
carry distinctive markers through every write path (write, append, pwrite
into holes, truncate, mmap, rename, long names, sqlite on the mount), then
scans every byte of every file, every entry name and every symlink target
under STORE (tree/, custodian.db and its -wal/-shm) for the markers: while
mounted (after sync) and after unmount.
"""

import mmap
import os
import sqlite3

CONTENT = b"PLAINTEXT-CONTENT-MARKER-c7d1e9"
NAME = "plainnamemarker4b2f"
DIRNAME = "plaindirmarker9a6e"
LINK = "plainlinkmarker03d5"
ROW = "plainrowmarker71bb"
MARKERS = [CONTENT, NAME.encode(), DIRNAME.encode(), LINK.encode(), ROW.encode(),
           # UTF-8 names are encrypted too
           "Zażółćmarker".encode()]


def _populate(m):
    d = m / f"{DIRNAME}-customers" / f"{DIRNAME}-C-10042"
    d.mkdir(parents=True)
    (d / f"{NAME}-small.txt").write_bytes(CONTENT)
    (d / f"{NAME}-aligned").write_bytes(CONTENT * 5000)  # many blocks, many alignments
    with open(d / f"{NAME}-appended", "ab") as f:
        for _ in range(300):
            f.write(CONTENT + b"\n")
    fd = os.open(d / f"{NAME}-holes", os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, CONTENT, 10 << 20)
    os.pwrite(fd, CONTENT, 4096 - 7)  # straddles a block boundary
    os.ftruncate(fd, (10 << 20) + 5)  # shrink mid-block: re-seals the tail
    os.close(fd)
    p = d / f"{NAME}-mmap"
    p.write_bytes(bytes(8192))
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 0)
        mm[4000:4000 + len(CONTENT)] = CONTENT
        mm.flush()
        mm.close()
    (d / "tmp-name").write_bytes(CONTENT)
    os.rename(d / "tmp-name", d / f"{NAME}-renamed")
    (d / (NAME + "-long-" + "x" * 200)).write_bytes(CONTENT)  # long-name sidecar
    (m / ("Zażółćmarker" + "ł" * 100)).write_bytes(CONTENT)
    os.symlink(f"{LINK}/target/{NAME}", d / f"{NAME}-symlink")
    os.mkdir(d / f"{DIRNAME}-sub")
    os.link(d / f"{NAME}-small.txt", d / f"{DIRNAME}-sub" / f"{NAME}-hardlink")
    con = sqlite3.connect(d / f"{NAME}.db")
    con.execute("PRAGMA journal_mode=wal")
    con.execute(f"CREATE TABLE {ROW} (v TEXT)")
    with con:
        for i in range(200):
            con.execute(f"INSERT INTO {ROW} VALUES (?)", (f"{ROW}-{i}",))
    con.close()
    return d


def _scan(root):
    """Every marker hit under root: (path, what)."""
    hits, nfiles, nbytes = [], 0, 0
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            for mk in MARKERS:
                if mk in os.fsencode(n):
                    hits.append((p, "name"))
            if os.path.islink(p):
                t = os.fsencode(os.readlink(p))
                hits += [(p, "symlink target") for mk in MARKERS if mk in t]
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    data = f.read()
                nfiles += 1
                nbytes += len(data)
                hits += [(p, f"content {mk!r}") for mk in MARKERS if mk in data]
    return hits, nfiles, nbytes


def test_no_plaintext_in_store(mounted, store):
    d = _populate(mounted.mnt)
    # the mount itself shows everything (so the scan below is meaningful)
    assert (d / f"{NAME}-aligned").read_bytes() == CONTENT * 5000
    assert os.readlink(d / f"{NAME}-symlink") == f"{LINK}/target/{NAME}"
    expect = {f"{NAME}-{s}" for s in ("small.txt", "aligned", "appended", "holes", "mmap",
                                      "renamed", "symlink")}
    expect |= {NAME + "-long-" + "x" * 200, f"{DIRNAME}-sub", f"{NAME}.db"}
    assert expect <= set(os.listdir(d))
    os.sync()
    hits, nfiles, nbytes = _scan(store.path)
    assert not hits, f"plaintext found in the store while mounted: {hits[:20]}"
    mounted.stop()
    hits, nfiles, nbytes = _scan(store.path)
    assert not hits, f"plaintext found in the store after unmount: {hits[:20]}"
    # the content really is in there, encrypted
    assert nfiles >= 12
    assert nbytes >= len(CONTENT) * 5000 + 300 * len(CONTENT)
    assert store.db.exists()
