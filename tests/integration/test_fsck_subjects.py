"""test_fsck_subjects.py — `custodian fsck` and data subjects.

Subject roots (`.S<hash>` backing directories) are checked with the
subject's own keyring and problems inside them are named by plaintext path,
subject id included; the ciphertext of a shredded or unknown subject is
reported as orphan data; a live subject whose directory is gone is reported.
Stores are built with the engine helper of test_export.py (the daemon does
not create subjects on mkdir yet).
"""

import base64
import json
import os
import shutil
import sqlite3

import pytest

import helpers
from helpers import tool
from test_export import FILES, make_subject, mksubject  # noqa: F401 (fixture)


def fsck(st, *args):
    return tool("fsck", st.path, "--passfile", st.passfile, *args, check=False)


@pytest.fixture
def subj(store, mksubject):  # noqa: F811
    back = make_subject(mksubject, store, "C-1")
    back2 = make_subject(mksubject, store, "C-2", files={"other.txt": b"C-2 record\n"},
                         dirs=[], links={})
    return store, back, back2


def flip(path, off):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x40]))


def test_clean(subj):
    st, _b, _b2 = subj
    r = fsck(st)
    assert r.returncode == 0, r.out + r.err
    # C-1: 5 files + 1 symlink; C-2: 1 file.  Directories: /, /customers,
    # C-1, calls, calls/2026, calls/empty-dir, C-2.
    assert r.out.strip() == "7 files, 7 directories checked, 0 problems"
    r = fsck(st, "--json")
    assert r.returncode == 0
    assert json.loads(r.out.splitlines()[-1]) == {"type": "summary", "files": 7,
                                                  "directories": 7, "problems": 0}


def test_damaged_block_named_by_subject_path(subj):
    st, back, _b2 = subj
    flip(back["calls/2026/call-1.wav"], helpers.block_offset(1) + 100)
    flip(back["notes.txt"], 10)  # header
    r = fsck(st)
    assert r.returncode == 1
    lines = r.out.splitlines()
    assert "damaged: /customers/C-1/calls/2026/call-1.wav: block 1: authentication failed" \
        in lines
    assert "damaged: /customers/C-1/notes.txt: header: authentication failed" in lines
    assert lines[-1] == "7 files, 7 directories checked, 2 problems"
    probs = [json.loads(x) for x in fsck(st, "--json").out.splitlines()][:-1]
    assert {(p["path"], p["part"]) for p in probs} == {
        ("/customers/C-1/calls/2026/call-1.wav", "block"),
        ("/customers/C-1/notes.txt", "header")}
    assert {p["backing"] for p in probs} == {back["calls/2026/call-1.wav"],
                                             back["notes.txt"]}


def test_damaged_name_in_subject(subj):
    st, back, _b2 = subj
    victim = back["calls/2026/call-1.wav"]
    d, name = os.path.split(victim)
    bad = name[:-4] + ("AAAA" if not name.endswith("AAAA") else "BBBB")
    os.rename(victim, os.path.join(d, bad))
    r = fsck(st)
    assert r.returncode == 1
    assert (f"damaged: /customers/C-1/calls/2026: undecryptable name: {d}/{bad}"
            in r.out.splitlines())


def test_shredded_subject_restored_ciphertext_is_orphan(subj, scratch):
    st, _back, back2 = subj
    copy = scratch / "copy"
    shutil.copytree(back2["root"], copy, symlinks=True)
    tool("shred", st.path, "C-2", "--yes", "--reason", "x", "--passfile", st.passfile)
    assert not os.path.exists(back2["root"])
    assert fsck(st).returncode == 0  # shredded and gone: clean
    shutil.copytree(copy, back2["root"], symlinks=True)
    size = os.path.getsize(back2["other.txt"])
    r = fsck(st)
    assert r.returncode == 1
    lines = r.out.splitlines()
    assert (f"orphan: {back2['root']}: unreadable data of a shredded or unknown subject "
            f"(1 files, {size} bytes)") in lines
    assert lines[-1] == "6 files, 6 directories checked, 1 problems"  # C-1 still checked
    probs = [json.loads(x) for x in fsck(st, "--json").out.splitlines()]
    assert probs[0] == {"type": "problem", "path": "/customers", "backing": back2["root"],
                        "part": "orphan", "files": 1, "bytes": size,
                        "reason": "unreadable data of a shredded or unknown subject"}
    # Nothing of the subject is named.
    assert "C-2" not in r.out and "other.txt" not in r.out


def test_unknown_subject_is_orphan(subj):
    st, back, _b2 = subj
    stray = os.path.join(os.path.dirname(back["root"]), ".S" + "A" * 43)
    os.mkdir(stray)
    with open(os.path.join(stray, "x"), "wb") as f:
        f.write(b"z" * 123)
    os.mkdir(os.path.join(stray, "d"))
    os.symlink("nowhere", os.path.join(stray, "d", "l"))
    r = fsck(st)
    assert r.returncode == 1
    assert (f"orphan: {stray}: unreadable data of a shredded or unknown subject "
            f"(2 files, 123 bytes)") in r.out.splitlines()


def test_missing_subject_directory(subj):
    st, _back, back2 = subj
    shutil.rmtree(back2["root"])
    r = fsck(st)
    assert r.returncode == 1
    assert "damaged: /customers/C-2: subject directory missing from the tree" in \
        r.out.splitlines()


def test_edited_subject_row(subj, scratch):
    """A subject row changed outside custodian (its MAC fails): fsck names
    it by hash, checks nothing under it, never crashes; export refuses."""
    st, _back, back2 = subj
    h = base64.urlsafe_b64decode(os.path.basename(back2["root"])[2:] + "=")
    db = sqlite3.connect(st.db)
    assert db.execute("UPDATE subjects SET held = 1 WHERE hash = ?", (h,)).rowcount == 1
    db.commit()
    db.close()
    r = fsck(st)
    assert r.returncode == 1
    lines = r.out.splitlines()
    assert (f"damaged: /customers/(subject {h[:6].hex()}...): subject's catalogue row was "
            "changed outside custodian; its files cannot be checked") in lines
    assert not any("C-1" in x or "C-2" in x for x in lines)
    r = tool("export", st.path, "C-2", "--out", scratch / "p", "--passfile", st.passfile,
             check=False)
    assert r.returncode == 1 and "changed outside custodian" in r.err
    assert not (scratch / "p").exists()
