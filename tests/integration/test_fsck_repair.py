"""`custodian fsck --repair`: what can never be read again leaves the tree.

A store gets four kinds of damage fsck can see: a file with a flipped bit
(short name) and one with a long name (stored as `.L…` plus a `.N…`
sidecar), an entry whose name does not decrypt, and a directory whose
name IV was deleted.  `--repair --dry-run` and a refusal without a
terminal move nothing; `--repair --yes` moves exactly the damaged entries
into STORE/quarantine/STAMP/, prints what was lost, audits each move with
the plaintext path, and afterwards fsck is clean, the intact files still
read, and the audit chain verifies.  Negative cases: mounted store,
--yes/--dry-run without --repair.
"""

import json
import os

import helpers
from helpers import block_offset, cipher_size, tool

LONG = "L" * 200 + ".txt"  # past the long-name threshold: .L + .N sidecar


def _content(tag, size):
    return bytes((i * 7 + len(tag)) % 251 for i in range(size))


def _fsck(store, *args, **kw):
    return tool("fsck", store.path, "--passfile", store.passfile, *args, check=False, **kw)


def _snapshot(store):
    """Every path under STORE/tree (names only) -> size or None (dirs)."""
    res = {}
    for d, dirs, files in os.walk(store.tree):
        for n in dirs:
            res[os.path.relpath(os.path.join(d, n), store.tree)] = None
        for n in files:
            p = os.path.join(d, n)
            res[os.path.relpath(p, store.tree)] = os.lstat(p).st_size
    return res


def _damage(store, scratch):
    """Writes the files through a mount, then damages them unmounted."""
    sizes = {"good.txt": 5000, "bad.bin": 3 * 4096 + 11, LONG: 2 * 4096 + 23}
    m = helpers.Mount(store, scratch / "mnt")
    m.start()
    try:
        for name, size in sizes.items():
            (m.mnt / name).write_bytes(_content(name, size))
        (m.mnt / "lostdir").mkdir()
        (m.mnt / "lostdir" / "inside.txt").write_bytes(b"inside")
    finally:
        m.stop()
    assert _fsck(store).returncode == 0
    top = {e.name: e for e in os.scandir(store.tree)}
    # bad.bin: a flipped bit in block 1 (found by its unique ciphertext size)
    bad = [e for e in top.values() if e.is_file() and not e.name.startswith(".")
           and e.stat().st_size == cipher_size(sizes["bad.bin"])]
    assert len(bad) == 1
    data = bytearray(open(bad[0].path, "rb").read())
    data[block_offset(1) + 40] ^= 0x10
    open(bad[0].path, "wb").write(bytes(data))
    # the long-named file: its .L entry, header flipped
    longs = [e for e in top.values() if e.name.startswith(".L")]
    assert len(longs) == 1 and ".N" + longs[0].name[2:] in top
    data = bytearray(open(longs[0].path, "rb").read())
    data[20] ^= 0x01
    open(longs[0].path, "wb").write(bytes(data))
    # the directory's name IV
    dirs = [e for e in top.values() if e.is_dir()]
    assert len(dirs) == 1
    os.unlink(os.path.join(dirs[0].path, ".iv"))
    # an entry whose name does not decrypt (valid base64url, wrong SIV)
    (store.tree / ("A" * 43)).write_bytes(b"x" * 100)
    return {"bad": bad[0].name, "long": longs[0].name, "dir": dirs[0].name,
            "noname": "A" * 43}


def test_repair_quarantines_exactly_the_damage(store, scratch):
    names = _damage(store, scratch)
    before = _snapshot(store)

    r = _fsck(store)
    assert r.returncode == 1, r.out + r.err

    r = _fsck(store, "--repair", "--dry-run")
    assert r.returncode == 1, r.out + r.err
    would = [ln for ln in r.out.splitlines() if ln.startswith("would quarantine: ")]
    assert len(would) == 4, r.out
    assert any(ln.startswith("would quarantine: /bad.bin (lost: file of 12299 bytes")
               for ln in would), r.out
    assert any(ln.startswith(f"would quarantine: /{LONG} ") for ln in would), r.out
    assert any(ln.startswith("would quarantine: /lostdir (lost: every name") for ln in would), r.out
    assert "dry run: nothing moved" in r.out
    assert _snapshot(store) == before
    assert not (store.path / "quarantine").exists()

    # no terminal, no --yes: refused before anything is opened for writing
    r = _fsck(store, "--repair", stdin=open(os.devnull))
    assert r.returncode == 1 and "not a terminal" in r.err, r.out + r.err
    assert _snapshot(store) == before

    r = _fsck(store, "--repair", "--yes")
    assert r.returncode == 0, r.out + r.err
    assert "4 of 4 entries moved" in r.out, r.out
    after = _snapshot(store)
    gone = set(before) - set(after)
    want_gone = {names["bad"], names["long"], ".N" + names["long"][2:], names["dir"],
                 names["noname"]}
    assert want_gone <= gone, gone
    assert all(g.split("/")[0] in want_gone for g in gone), gone
    assert not set(after) - set(before)

    qroot = store.path / "quarantine"
    stamps = os.listdir(qroot)
    assert len(stamps) == 1
    moved = os.listdir(qroot / stamps[0])
    assert sorted(n.split(".", 1)[1] for n in moved) == sorted(want_gone)
    assert oct(os.stat(qroot).st_mode & 0o777) == "0o700"
    # quarantine names are backing names: no plaintext name leaks there
    for n in moved:
        for plain in ("bad.bin", "lostdir", "inside", "good.txt", "LLLLLLLLLL"):
            assert plain not in n

    r = _fsck(store)
    assert r.returncode == 0, r.out + r.err

    m = helpers.Mount(store, scratch / "mnt")
    m.start()
    try:
        assert sorted(os.listdir(m.mnt)) == ["good.txt"]
        assert (m.mnt / "good.txt").read_bytes() == _content("good.txt", 5000)
    finally:
        m.stop()

    r = tool("audit", "log", store.path, "--passfile", store.passfile, "--json",
             "--op", "repair")
    recs = [json.loads(ln) for ln in r.out.splitlines() if ln.strip()]
    assert sorted(x["path"] for x in recs) == sorted(["/bad.bin", f"/{LONG}", "/lostdir", "/"])
    assert all(x["outcome"] == 0 and "quarantined as quarantine/" in x["detail"] for x in recs), recs
    r = tool("audit", "verify", store.path, "--passfile", store.passfile, check=False)
    assert r.returncode == 0, r.out + r.err


def test_repair_of_a_clean_store_moves_nothing(store):
    r = _fsck(store, "--repair", "--yes")
    assert r.returncode == 0, r.out + r.err
    assert "nothing to quarantine" in r.out
    assert not (store.path / "quarantine").exists()


def test_repair_refused_while_mounted(mounted, store):
    (mounted.mnt / "f").write_bytes(b"data")
    r = _fsck(store, "--repair", "--yes")
    assert r.returncode == 1 and "is mounted" in r.err, r.out + r.err
    assert (mounted.mnt / "f").read_bytes() == b"data"


def test_repair_options_need_repair(store):
    for opt in ("--yes", "--dry-run"):
        r = _fsck(store, opt)
        assert r.returncode == 2 and "go with --repair" in r.err, r.out + r.err
    r = _fsck(store, "--repair", "--json")
    assert r.returncode == 2, r.out + r.err
