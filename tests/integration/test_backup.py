"""test_backup.py — `custodian backup` and `custodian restore` (issue 5,
"Backups"): a backup of the catalogue that crypto-shredding still reaches.

A store with a policy marking /customers/* as subject roots gets subjects
C-1..C-3 (built through the engine with test_export's helper: the daemon
does not create subjects on mkdir yet) and a plain file written through the
mount.  A backup is taken while mounted, C-1 is shredded, the backup is
restored: C-1 stays erased (not listed, its wrapped key bytes in neither the
db nor its WAL although they are in the backup), the others and their files
are intact, the audit chain verifies and holds the restore.  Negative cases:
restore while mounted, a backup of another store, a damaged backup (row
edited, file truncated, manifest missing), no --yes, an edited --ledger.
"""

import base64
import json
import os
import shutil
import sqlite3

import helpers
from helpers import tool
from test_export import make_subject, mksubject  # noqa: F401 (fixture)

POLICY = """[/]
list = root
read = root
write = root
create = root
delete = root

[/customers/*]
subject = yes
read = root
write = root
create = root
"""

C2_FILES = {"b.txt": b"C-2's letter\n", "calls/c.wav": bytes(range(256)) * 20}


def pf(st):
    return ["--passfile", str(st.passfile)]


def apply_policy(st):
    f = st.path.parent / "policy.ini"
    f.write_text(POLICY)
    tool("policy", "apply", st.path, f, "--yes", *pf(st))


def subject_hash(back):
    """The subject hash from its backing root name (.S + base64url)."""
    name = os.path.basename(back["root"])
    assert name.startswith(".S")
    b = name[2:]
    return base64.urlsafe_b64decode(b + "=" * (-len(b) % 4))


def wrapped_key(db, h):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT wrapped FROM subjects WHERE hash = ?", (h,)).fetchone()
    finally:
        con.close()
    assert row is not None and row[0] is not None
    return bytes(row[0])


def file_has(path, needle):
    try:
        with open(path, "rb") as f:
            return needle in f.read()
    except FileNotFoundError:
        return False


def subjects(st):
    return json.loads(tool("subjects", st.path, "--json", *pf(st)).out)


def audit_ops(st):
    out = tool("audit", "log", st.path, "--json", *pf(st)).out
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def backup(st, out, *args, check=True):
    return tool("backup", st.path, "--out", out, *args, check=check)


def restore(st, frm, *args, check=True, yes=True):
    return tool("restore", st.path, "--from", frm, *(["--yes"] if yes else []), *pf(st),
                *args, check=check)


def build(store, mksubject, mount_factory):  # noqa: F811
    """Policy, a plain record written through the mount, three subjects."""
    apply_policy(store)
    m = mount_factory(store)
    (m.mnt / "records").mkdir()
    (m.mnt / "records" / "r.txt").write_bytes(b"plain record\n")
    m.stop()
    backs = {
        "C-1": make_subject(mksubject, store, "C-1",
                            files={"a.txt": b"C-1's secret\n"}, dirs=[], links={}),
        "C-2": make_subject(mksubject, store, "C-2", files=C2_FILES, dirs=["calls"],
                            links={}),
        "C-3": make_subject(mksubject, store, "C-3", files={"x.txt": b"C-3\n"}, dirs=[],
                            links={}),
    }
    return backs


def test_restore_keeps_shredded_subject_erased(store, mksubject, mount_factory,  # noqa: F811
                                                scratch):
    backs = build(store, mksubject, mount_factory)
    h1 = subject_hash(backs["C-1"])
    key1 = wrapped_key(store.db, h1)

    # the backup is taken while the store is mounted and in use
    m = mount_factory(store)
    (m.mnt / "records" / "during.txt").write_bytes(b"written while backing up\n")
    bdir = scratch / "bk"
    r = backup(store, bdir, "--json")
    man = json.loads(r.out)
    (m.mnt / "records" / "after.txt").write_bytes(b"after the backup\n")
    m.stop()
    assert sorted(os.listdir(bdir)) == ["custodian.db", "ledger.txt", "manifest.json"]
    assert os.stat(bdir).st_mode & 0o777 == 0o700
    assert man["format"] == "custodian-backup-1"
    assert man["ledger_entries"] == 0 and man["audit_head_seq"] > 0
    status = json.loads(tool("status", store.path, "--json").out)
    assert man["store_id"] == status["id"]
    assert man["tree"] is False
    # the copy holds C-1's key: the backup is what a shred must reach
    assert file_has(bdir / "custodian.db", key1)

    # shred C-1 after the backup
    tool("shred", store.path, "C-1", "--reason", "erasure request 17", "--yes", *pf(store))
    assert not file_has(store.db, key1)
    ledger_now = tool("subjects", store.path, "--ledger", *pf(store)).out
    assert len(ledger_now.splitlines()) == 1

    # restore the older catalogue
    r = restore(store, bdir)
    assert "re-applied erasure 1" in r.out, r.out
    assert "1 erasures checked, 1 re-applied" in r.out
    assert not (store.path / "custodian.db.before-restore").exists()
    assert not (store.path / "custodian.db.restoring").exists()

    # C-1 stays erased: not listed, key bytes nowhere in db or WAL
    subs = subjects(store)
    live = sorted(s["id"] for s in subs if s["state"] != "shredded")
    assert live == ["C-2", "C-3"], subs
    assert any(s["state"] == "shredded" for s in subs)
    for f in ("custodian.db", "custodian.db-wal"):
        assert not file_has(store.path / f, key1), f
    assert not os.path.exists(backs["C-1"]["root"])
    # the ledger is whole again
    assert tool("subjects", store.path, "--ledger", *pf(store)).out == ledger_now
    # re-running the restore's ledger step changes nothing
    r = tool("subjects", store.path, "--apply-ledger", "-", *pf(store),
             input=ledger_now.encode(), stdin=None)
    assert "0 re-applied" in r.out

    # the other subjects are intact (read through the engine)
    out = scratch / "exp"
    tool("export", store.path, "C-2", "--out", out, *pf(store))
    for rel, content in C2_FILES.items():
        assert (out / "files" / rel).read_bytes() == content

    # the audit chain verifies and records the restore and the re-applied shred
    tool("audit", "verify", store.path, *pf(store))
    ops = audit_ops(store)
    rest = [o for o in ops if o["op"] == "restore"]
    assert len(rest) == 1 and "re-applied" in rest[0]["detail"]
    assert "replaced chain head" in rest[0]["detail"]
    assert any(o["op"] == "shred" and "re-applied" in (o.get("detail") or "")
               for o in ops)

    # the store mounts with today's passphrase; files written before and
    # after the backup (ciphertext tree is current) read back
    m = mount_factory(store)
    assert (m.mnt / "records" / "r.txt").read_bytes() == b"plain record\n"
    assert (m.mnt / "records" / "during.txt").read_bytes() == b"written while backing up\n"
    assert (m.mnt / "records" / "after.txt").read_bytes() == b"after the backup\n"
    cust = m.mnt / "customers"
    if "C-3" in os.listdir(cust):  # a daemon that serves subjects
        assert "C-1" not in os.listdir(cust)
        for rel, content in C2_FILES.items():
            assert (cust / "C-2" / rel).read_bytes() == content
    m.stop()


def test_restore_keeps_what_must_not_roll_back(store, mksubject, mount_factory,  # noqa: F811
                                                scratch):
    """A passphrase changed after the backup still opens the restored store
    and the old one does not; a directory hold, a subject hold and a policy
    version made after the backup are still in force."""
    build(store, mksubject, mount_factory)
    bdir = scratch / "bk"
    backup(store, bdir)
    newpass = scratch / "new.pass"
    newpass.write_bytes(b"a brand new passphrase")
    tool("passwd", store.path, *pf(store), "--new-passfile", newpass)
    npf = ["--passfile", str(newpass)]
    tool("hold", store.path, "--path", "/records", "--reason", "case 44", *npf)
    tool("hold", store.path, "C-2", "--reason", "case 45", *npf)
    f = scratch / "policy2.ini"
    f.write_text(POLICY + "\n[/records]\nretain_min = 30d\n")
    tool("policy", "apply", store.path, f, "--yes", *npf)

    r = tool("restore", store.path, "--from", bdir, "--yes", *npf)
    assert "0 erasures checked" in r.out
    assert "the state of 1 subjects" in r.out, r.out
    r = tool("subjects", store.path, *pf(store), check=False)
    assert r.returncode == 1 and "wrong passphrase" in r.err
    holds = {(h["kind"], h["what"], h["reason"])
             for h in json.loads(tool("hold", store.path, "--list", "--json", *npf).out)}
    assert holds == {("directory", "/records", "case 44"),
                     ("subject", "/customers/C-2", "case 45")}, holds
    shown = tool("policy", "show", store.path, *npf).out
    assert "retain_min = 30d" in shown
    tool("audit", "verify", store.path, *npf)


def test_restore_refuses_mounted(store, mksubject, mount_factory, scratch):  # noqa: F811
    build(store, mksubject, mount_factory)
    bdir = scratch / "bk"
    backup(store, bdir)
    m = mount_factory(store)
    r = restore(store, bdir, check=False)
    assert r.returncode == 1
    assert "is mounted" in r.err and "unmount it before restoring" in r.err
    assert len(r.err.strip().splitlines()) == 1
    m.stop()
    assert not (store.path / "custodian.db.before-restore").exists()
    # nothing was restored
    assert not any(o["op"] == "restore" for o in audit_ops(store))


def test_restore_refuses_other_store(store, scratch):
    other = helpers.Store.create(scratch, name="other")
    bdir = scratch / "bk-other"
    backup(other, bdir)
    r = restore(store, bdir, check=False)
    assert r.returncode == 1 and "backup of another store" in r.err, r.err
    assert not any(o["op"] == "restore" for o in audit_ops(store))


def test_restore_refuses_damaged_backup(store, scratch):
    bdir = scratch / "bk"
    backup(store, bdir)
    # a row edited with sqlite3
    edited = scratch / "edited"
    shutil.copytree(bdir, edited)
    con = sqlite3.connect(edited / "custodian.db")
    assert con.execute("UPDATE meta SET value = X'00' WHERE key = 'created_us'"
                       ).rowcount == 1
    con.commit()
    con.close()
    r = restore(store, edited, check=False)
    assert r.returncode == 1 and "the backup is damaged" in r.err, r.err
    # truncated
    trunc = scratch / "trunc"
    shutil.copytree(bdir, trunc)
    with open(trunc / "custodian.db", "r+b") as f:
        f.truncate(os.path.getsize(trunc / "custodian.db") // 2)
    r = restore(store, trunc, check=False)
    assert r.returncode == 1 and "the backup is damaged" in r.err
    # no manifest: not a (complete) backup
    nom = scratch / "nomanifest"
    shutil.copytree(bdir, nom)
    os.unlink(nom / "manifest.json")
    r = restore(store, nom, check=False)
    assert r.returncode == 1 and "not a custodian backup" in r.err
    # nothing happened to the store
    assert not any(o["op"] == "restore" for o in audit_ops(store))
    # the intact backup restores
    restore(store, bdir)
    assert sum(o["op"] == "restore" for o in audit_ops(store)) == 1


def test_restore_needs_yes(store, scratch):
    bdir = scratch / "bk"
    backup(store, bdir)
    r = restore(store, bdir, check=False, yes=False)
    assert r.returncode == 1 and "--yes" in r.err
    assert not any(o["op"] == "restore" for o in audit_ops(store))


def test_restore_refuses_edited_ledger(store, mksubject, mount_factory, scratch):  # noqa: F811
    build(store, mksubject, mount_factory)
    bdir = scratch / "bk"
    backup(store, bdir)
    tool("shred", store.path, "C-3", "--reason", "erasure request 9", "--yes", *pf(store))
    line = tool("subjects", store.path, "--ledger", *pf(store)).out.strip()
    fields = line.split(" ")
    # magic seq hash key_fp time FILES bytes audit_seq reason operator mac:
    # change the file count, so the entry's MAC no longer matches
    fields[5] = str(int(fields[5]) + 1)
    bad = scratch / "ledger.txt"
    bad.write_text(" ".join(fields) + "\n")
    r = restore(store, bdir, "--ledger", bad, check=False)
    assert r.returncode == 1 and "does not authenticate" in r.err, r.err
    assert not any(o["op"] == "restore" for o in audit_ops(store))
    # the genuine ledger file is accepted (merged with the current one)
    good = scratch / "good.txt"
    good.write_text(line + "\n")
    r = restore(store, bdir, "--ledger", good)
    assert "1 erasures checked, 1 re-applied" in r.out


def test_backup_usage(store, scratch):
    assert tool("backup", "--help").out.startswith("usage: custodian backup")
    assert tool("restore", "--help").out.startswith("usage: custodian restore")
    r = tool("backup", store.path, check=False)
    assert r.returncode == 2 and "--out" in r.err
    r = tool("restore", store.path, "--yes", check=False)
    assert r.returncode == 2 and "--from" in r.err
    busy = scratch / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    r = backup(store, busy, check=False)
    assert r.returncode == 1 and "not empty" in r.err
    r = tool("backup", scratch / "nostore", "--out", scratch / "b2", check=False)
    assert r.returncode == 1 and "not a custodian store" in r.err


def test_backup_with_tree(store, mount_factory, scratch):
    m = mount_factory(store)
    (m.mnt / "f.txt").write_bytes(b"x" * 5000)
    m.stop()
    bdir = scratch / "bk"
    man = json.loads(backup(store, bdir, "--with-tree", "--json").out)
    assert man["tree"] is True
    src = sorted(os.path.relpath(os.path.join(d, f), store.tree)
                 for d, _s, fs in os.walk(store.tree) for f in fs)
    dst = sorted(os.path.relpath(os.path.join(d, f), bdir / "tree")
                 for d, _s, fs in os.walk(bdir / "tree") for f in fs)
    assert src == dst and src


def test_restore_lost_catalogue(store, mksubject, mount_factory, scratch):  # noqa: F811
    """Disaster recovery: the catalogue is gone.  Its ledger went with it, so
    the one kept apart (`subjects --ledger`) is required, and re-applied."""
    backs = build(store, mksubject, mount_factory)
    key1 = wrapped_key(store.db, subject_hash(backs["C-1"]))
    bdir = scratch / "bk"
    backup(store, bdir)
    tool("shred", store.path, "C-1", "--reason", "erasure request 17", "--yes", *pf(store))
    kept = scratch / "ledger-offsite.txt"
    kept.write_text(tool("subjects", store.path, "--ledger", *pf(store)).out)

    # damaged beyond use: the ledger is required
    with open(store.db, "r+b") as f:
        f.seek(0)
        f.write(b"\0" * 4096)
    r = restore(store, bdir, check=False)
    assert r.returncode == 1 and "damaged" in r.err and "--ledger FILE" in r.err, r.err
    # gone
    for f in ("custodian.db", "custodian.db-wal", "custodian.db-shm"):
        if (store.path / f).exists():
            os.unlink(store.path / f)
    r = restore(store, bdir, check=False)
    assert r.returncode == 1 and "missing" in r.err and "--ledger FILE" in r.err
    assert not store.db.exists()
    # an edited ledger is refused after the swap, and the swap is undone
    fields = kept.read_text().split(" ")
    fields[5] = str(int(fields[5]) + 1)
    bad = scratch / "bad.txt"
    bad.write_text(" ".join(fields))
    r = restore(store, bdir, "--ledger", bad, check=False)
    assert r.returncode == 1 and "does not authenticate" in r.err, r.err
    assert not store.db.exists()

    r = restore(store, bdir, "--ledger", kept)
    assert "warning: the current catalogue is missing" in r.err
    assert "1 erasures checked, 1 re-applied" in r.out, r.out
    live = sorted(s["id"] for s in subjects(store) if s["state"] != "shredded")
    assert live == ["C-2", "C-3"]
    for f in ("custodian.db", "custodian.db-wal"):
        assert not file_has(store.path / f, key1), f
    tool("audit", "verify", store.path, *pf(store))
    rest = [o for o in audit_ops(store) if o["op"] == "restore"]
    assert len(rest) == 1 and "missing or damaged" in rest[0]["detail"]
