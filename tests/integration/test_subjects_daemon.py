"""test_subjects_daemon.py — data subjects in the running daemon (issue 5).

A policy marks every child of /customers as a subject root.  Checked on a
real mount: mkdir creates the subject (listed by `custodian subjects`, its
id, names and contents nowhere in the store in plaintext); the test users
read, write and list as the policy says; renames and hard links across a
subject boundary are EXDEV (and `mv` still works by copying); restriction
and legal hold, set live through the control channel, govern other users
at once; rmdir of an empty subject erases it; a remount keeps everything.
Live shred through the control channel is checked at the end.
"""

import errno
import json
import os
import subprocess
import threading
import time

import pytest

import helpers
from helpers import tool, try_as

POLICY = """\
[/]
list = root @cust_agents @cust_supervisors @cust_records
read = root
write = root
create = root
delete = root
admin = root

[/customers]
list = root @cust_agents @cust_supervisors @cust_records
create = root @cust_agents
delete = root @cust_agents @cust_records

[/customers/*]
subject = yes
list = root @cust_agents @cust_supervisors @cust_records
read = root @cust_agents @cust_supervisors @cust_records
write = root @cust_agents
create = root @cust_agents
delete = root @cust_agents @cust_records
admin = root @cust_records

[/archive]
list = root @cust_agents
read = root @cust_agents
write = root @cust_agents
create = root @cust_agents
delete = root @cust_agents
"""


def apply_policy(store, text=POLICY):
    f = store.path.parent / "subjects-policy.ini"
    f.write_text(text)
    return tool("policy", "apply", store.path, f, "--yes", "--passfile", store.passfile)


def subjects(store):
    r = tool("subjects", store.path, "--json", "--passfile", store.passfile)
    return {s["hash"]: s for s in json.loads(r.out)}


def by_id(store):
    return {s["id"]: s for s in subjects(store).values() if s.get("id")}


def audit_records(store, *args, want=None):
    """Records (the audit writer commits in batches: with want(recs) given,
    wait a little until it is true)."""
    deadline = time.monotonic() + 5 * helpers.SLOW
    while True:
        r = tool("audit", "log", store.path, "--json", "--passfile", store.passfile,
                 *args)
        recs = [json.loads(x) for x in r.out.splitlines() if x.strip()]
        if want is None or want(recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.1)


def flag(store, sid, verb, reason="case 17"):
    code, text = helpers.control(store, f"subject-flag {sid} {verb} {reason}")
    assert code == 0, text
    return text


@pytest.fixture
def sm(store, mount_factory, users):
    """A mounted store with the policy applied and /customers, /archive
    open to the test users (mode bits never decide here)."""
    m = mount_factory(store)
    apply_policy(store)
    for d in ("customers", "archive"):
        os.mkdir(m.mnt / d)
        os.chmod(m.mnt / d, 0o777)
    return m


def mksubject(m, sid, files=None):
    d = m.mnt / "customers" / sid
    os.mkdir(d)
    os.chmod(d, 0o777)
    for name, data in (files or {}).items():
        (d / name).write_bytes(data)
        os.chmod(d / name, 0o666)
    return d


def test_mkdir_creates_subject_nothing_in_plaintext(sm):
    store = sm.store
    marker = b"CONTENT-MARKER-7f3a9c1e-the-customer-said"
    d = mksubject(sm, "C-10042", {"complaint-letter.txt": marker * 50})
    os.mkdir(d / "calls")
    (d / "calls" / "recording-note.txt").write_bytes(b"second " + marker)
    os.symlink("complaint-letter.txt", d / "latest-link")
    assert sorted(os.listdir(sm.mnt / "customers")) == ["C-10042"]
    assert sorted(os.listdir(d)) == ["calls", "complaint-letter.txt", "latest-link"]
    assert (d / "complaint-letter.txt").read_bytes() == marker * 50
    assert os.readlink(d / "latest-link") == "complaint-letter.txt"
    s = by_id(store)["C-10042"]
    assert s["state"] == "active" and s["parent"] == "/customers"
    assert s["files"] == 2, s
    # an ordinary directory next to it is not a subject
    os.mkdir(sm.mnt / "archive" / "C-1")
    assert set(by_id(store)) == {"C-10042"}
    # nothing readable anywhere in the store: db, WAL, journal, tree
    found = helpers.grep_store(store, [b"C-10042", b"complaint-letter", b"recording-note",
                                       b"latest-link", marker[:24]])
    assert not found, found
    # the backing root is the .S<hash> directory
    subs = [x for _d, dirs, _f in os.walk(store.tree) for x in dirs if x.startswith(".S")]
    assert len(subs) == 1 and len(subs[0]) == 45, subs
    # audit records inside the subject carry its hash
    mine = lambda recs: any(r.get("subject") == s["hash"] for r in recs)  # noqa: E731
    recs = audit_records(store, "--op", "create", want=mine)
    assert mine(recs), recs[-3:]


def test_users_work_normally_inside_subjects(sm):
    d = mksubject(sm, "C-2")
    assert try_as("cust_alice", "write", d / "a.txt", "from alice")[0] == 0
    assert try_as("cust_alice", "append", d / "a.txt", " more")[0] == 0
    assert try_as("cust_bob", "read", d / "a.txt") == (0, "from alice more")
    assert try_as("cust_bob", "list", d) == (0, "a.txt")
    # supervisors may not write, records may delete
    assert try_as("cust_bob", "write", d / "b.txt")[0] == errno.EACCES
    assert try_as("cust_alice", "mkdir", d / "sub")[0] == 0
    os.chmod(d / "sub", 0o777)  # mode bits are not what this tests
    assert try_as("cust_alice", "rename", d / "a.txt", d / "sub" / "a.txt")[0] == 0
    assert try_as("cust_carol", "unlink", d / "sub" / "a.txt")[0] == 0
    assert try_as("cust_carol", "rmdir", d / "sub")[0] == 0
    # an agent may open a new customer folder
    assert try_as("cust_alice", "mkdir", sm.mnt / "customers" / "C-3")[0] == 0
    assert "C-3" in by_id(sm.store)
    assert try_as("cust_bob", "mkdir", sm.mnt / "customers" / "C-4")[0] == errno.EACCES
    assert "C-4" not in by_id(sm.store)


def test_exdev_across_subjects_and_mv_copies(sm):
    a = mksubject(sm, "C-20", {"f.txt": b"one"})
    b = mksubject(sm, "C-21")
    with pytest.raises(OSError) as e:
        os.rename(a / "f.txt", b / "f.txt")
    assert e.value.errno == errno.EXDEV
    with pytest.raises(OSError) as e:
        os.link(a / "f.txt", b / "hard")
    assert e.value.errno == errno.EXDEV
    with pytest.raises(OSError) as e:
        os.rename(a / "f.txt", sm.mnt / "archive" / "f.txt")
    assert e.value.errno == errno.EXDEV
    # a subject root keeps its id: renaming it is EXDEV too
    with pytest.raises(OSError) as e:
        os.rename(a, sm.mnt / "customers" / "C-22")
    assert e.value.errno == errno.EXDEV
    # inside one subject, rename and link work
    os.rename(a / "f.txt", a / "g.txt")
    os.link(a / "g.txt", a / "h.txt")
    assert (a / "h.txt").read_bytes() == b"one"
    os.unlink(a / "h.txt")
    # mv falls back to copy + delete, through the policy
    helpers.run(["mv", a / "g.txt", b / "g.txt"])
    assert (b / "g.txt").read_bytes() == b"one" and not (a / "g.txt").exists()
    helpers.run(["mv", b, sm.mnt / "customers" / "C-23"])
    ids = by_id(sm.store)
    assert "C-23" in ids and "C-21" not in ids
    assert (sm.mnt / "customers" / "C-23" / "g.txt").read_bytes() == b"one"
    gone = [s for s in subjects(sm.store).values() if s["state"] == "shredded"]
    assert len(gone) == 1  # C-21, erased by mv's rmdir


def test_restricted_subject_only_admin_reads(sm):
    d = mksubject(sm, "C-30", {"r.txt": b"restricted data"})
    assert try_as("cust_alice", "read", d / "r.txt") == (0, "restricted data")
    assert flag(sm.store, "C-30", "restrict") == "changed"
    assert try_as("cust_alice", "read", d / "r.txt")[0] == errno.EACCES
    assert try_as("cust_bob", "read", d / "r.txt")[0] == errno.EACCES
    assert try_as("cust_alice", "write", d / "r.txt")[0] == errno.EACCES
    assert try_as("cust_carol", "read", d / "r.txt") == (0, "restricted data")
    assert (d / "r.txt").read_bytes() == b"restricted data"  # root has admin
    assert by_id(sm.store)["C-30"]["state"] == "restricted"
    restricted = lambda recs: [r for r in recs  # noqa: E731
                               if "processing restricted" in (r.get("detail") or "")]
    recs = audit_records(sm.store, "--denied", want=restricted)
    assert restricted(recs), "restricted reads are audited"
    assert flag(sm.store, "C-30", "unrestrict") == "changed"
    assert try_as("cust_alice", "read", d / "r.txt") == (0, "restricted data")


def test_held_subject_refuses_destruction(sm):
    d = mksubject(sm, "C-40", {"keep.txt": b"evidence", "other.txt": b"x"})
    os.mkdir(d / "empty")
    os.chmod(d / "empty", 0o777)
    assert flag(sm.store, "C-40", "hold", "litigation 2026-17") == "changed"
    for op, path, arg in (("unlink", d / "keep.txt", None),
                          ("write", d / "keep.txt", "overwrite"),  # O_TRUNC
                          ("rename", d / "keep.txt", d / "moved.txt"),
                          ("rmdir", d / "empty", None)):
        assert try_as("cust_alice", op, path, arg)[0] == errno.EPERM, op
    with pytest.raises(OSError) as e:
        os.truncate(d / "keep.txt", 2)
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        with open(d / "keep.txt", "r+b") as f:
            f.write(b"EV")
    assert e.value.errno == errno.EPERM
    # appending and new records are fine
    assert try_as("cust_alice", "append", d / "keep.txt", "+note")[0] == 0
    assert try_as("cust_alice", "create", d / "new.txt")[0] == 0
    assert (d / "keep.txt").read_bytes() == b"evidence+note"
    held = lambda recs: [r for r in recs  # noqa: E731
                         if "legal hold" in (r.get("detail") or "")]
    assert len(held(audit_records(sm.store, "--denied",
                                  want=lambda recs: len(held(recs)) >= 5))) >= 5
    assert flag(sm.store, "C-40", "release", "settled") == "changed"
    assert try_as("cust_alice", "unlink", d / "keep.txt")[0] == 0


def test_rmdir_of_empty_subject_erases_it(sm):
    d = mksubject(sm, "C-50", {"x.txt": b"x"})
    with pytest.raises(OSError) as e:
        os.rmdir(d)
    assert e.value.errno == errno.ENOTEMPTY
    os.unlink(d / "x.txt")
    flag(sm.store, "C-50", "hold")
    with pytest.raises(OSError) as e:
        os.rmdir(d)
    assert e.value.errno == errno.EPERM
    flag(sm.store, "C-50", "release")
    old = by_id(sm.store)["C-50"]["hash"]
    os.rmdir(d)
    assert not d.exists() and os.listdir(sm.mnt / "customers") == []
    assert subjects(sm.store)[old]["state"] == "shredded"
    ledger = tool("subjects", sm.store.path, "--ledger", "--passfile", sm.store.passfile).out
    assert old in ledger or len(ledger.strip().splitlines()) >= 1
    # the same id again: a new, empty subject under a new key
    mksubject(sm, "C-50")
    assert os.listdir(d) == []
    assert by_id(sm.store)["C-50"]["state"] == "active"


def test_remount_keeps_subjects(sm):
    d = mksubject(sm, "C-60", {"a.txt": b"alpha" * 1000})
    os.mkdir(d / "deep")
    (d / "deep" / "b.txt").write_bytes(b"beta")
    flag(sm.store, "C-60", "restrict")
    sm.remount()
    assert os.listdir(sm.mnt / "customers") == ["C-60"]
    assert (d / "a.txt").read_bytes() == b"alpha" * 1000
    assert (d / "deep" / "b.txt").read_bytes() == b"beta"
    assert try_as("cust_alice", "read", d / "a.txt")[0] == errno.EACCES
    assert try_as("cust_carol", "read", d / "deep" / "b.txt") == (0, "beta")


def test_without_policy_there_are_no_subjects(mounted):
    os.mkdir(mounted.mnt / "customers")
    os.mkdir(mounted.mnt / "customers" / "C-1")
    (mounted.mnt / "customers" / "C-1" / "f").write_bytes(b"plain dir")
    assert subjects(mounted.store) == {}


# --- live shred (control verb "shred") ----------------------------------------

def shred(store, sid, *args, check=True):
    return tool("shred", store.path, sid, "--reason", "erasure request 2026-11",
                "--yes", "--passfile", store.passfile, *args, check=check)


def wait_trash_empty(store, limit=20.0):
    trash = store.path / "trash"
    deadline = time.monotonic() + limit * helpers.SLOW
    while time.monotonic() < deadline:
        if not trash.exists() or not os.listdir(trash):
            return
        time.sleep(0.05)
    pytest.fail(f"trash not emptied: {os.listdir(trash)}")


def test_live_shred_while_open(sm):
    marker = b"LIVE-SHRED-MARKER-5d2e"
    d = mksubject(sm, "C-70", {"open-file.txt": marker * 2000, "b.txt": b"bee"})
    os.mkdir(d / "inner")
    (d / "inner" / "deep-name.txt").write_bytes(marker)
    keep = mksubject(sm, "C-71", {"k.txt": b"stays"})
    rf = open(d / "open-file.txt", "rb")
    wf = open(d / "b.txt", "r+b")
    try:
        assert rf.read(100) == (marker * 2000)[:100]
        r = shred(sm.store, "C-70")
        assert "ERASURE CERTIFICATE" in r.out and "subject:        C-70" in r.out, r.out
        assert "files, " in r.out and "ledger entry:" in r.out
        # gone at once from listings and lookups
        assert os.listdir(sm.mnt / "customers") == ["C-71"]
        for p in (d, d / "b.txt", d / "inner" / "deep-name.txt"):
            with pytest.raises(FileNotFoundError):
                os.stat(p)
        # open handles fail from now on (page cache dropped too)
        rf.seek(0)
        with pytest.raises(OSError) as e:
            rf.read()
        assert e.value.errno == errno.EIO
        with pytest.raises(OSError) as e:
            wf.write(b"x")
            wf.flush()
        assert e.value.errno == errno.EIO
    finally:
        rf.close()
        try:
            wf.close()
        except OSError:
            pass
    # the rest of the mount is untouched
    assert (keep / "k.txt").read_bytes() == b"stays"
    s = [x for x in subjects(sm.store).values() if x["state"] == "shredded"]
    assert len(s) == 1
    assert tool("audit", "verify", sm.store.path, "--passfile", sm.store.passfile).returncode == 0
    assert audit_records(sm.store, "--op", "shred", want=bool)
    # nothing of it remains in the store once the background removal ran
    wait_trash_empty(sm.store)
    found = helpers.grep_store(sm.store, [b"C-70", b"open-file", b"deep-name", marker])
    assert not found, found
    # the same id again: a fresh, empty subject
    os.mkdir(d)
    assert os.listdir(d) == []
    assert by_id(sm.store)["C-70"]["state"] == "active"


def test_live_shred_json_refusals_and_remount(sm):
    mksubject(sm, "C-80", {"a": b"a" * 5000})
    mksubject(sm, "C-81", {"b": b"b"})
    flag(sm.store, "C-81", "hold", "court order")
    r = shred(sm.store, "C-81", check=False)
    assert r.returncode == 1 and "hold" in r.err, (r.out, r.err)
    assert (sm.mnt / "customers" / "C-81" / "b").read_bytes() == b"b"
    r = shred(sm.store, "C-404", check=False)
    assert r.returncode == 1 and "no such subject" in r.err, r.err
    r = shred(sm.store, "C-80", "--dry-run")
    assert "dry run" in r.out and os.path.exists(sm.mnt / "customers" / "C-80")
    cert = json.loads(shred(sm.store, "C-80", "--json").out)
    assert cert["subject"] == "C-80" and cert["files"] == 1 and cert["bytes"] == 5000
    assert cert["ledger_seq"] >= 1 and cert["audit_seq"] >= 1 and cert["wal_clean"]
    assert not (sm.mnt / "customers" / "C-80").exists()
    r = shred(sm.store, "C-80", check=False)
    assert r.returncode == 1 and "already shredded" in r.err
    sm.remount()
    assert os.listdir(sm.mnt / "customers") == ["C-81"]
    wait_trash_empty(sm.store)
