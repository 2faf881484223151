"""test_hold_path.py — legal holds on directories (issue 6):
`custodian hold|release STORE --path /DIR --reason R` and
`custodian hold STORE --list [--json]`.

The store is test_retention_cli's known store (retention_fixture.c): /records
holds 5 files due now and 3 not yet due, /records/legal (already held) 2
files, subjects C-1..C-3 under /customers (C-2 held).  A hold on /records
makes the sweep and the report treat all of /records as held; releasing it
brings the due files back.  Every change is audited.  Subjects for the
in-subject paths come from test_export's engine helper.
"""

import errno
import json
import os

import helpers
from helpers import tool, try_as
from test_export import make_subject, mksubject  # noqa: F401 (fixture)
from test_retention_cli import gen, rows, rstore  # noqa: F401 (fixtures)
from test_subjects_daemon import sm  # noqa: F401 (fixture)


def pf(st):
    return ["--passfile", str(st.passfile)]


def dry_run(st):
    return json.loads(tool("retention", "sweep", st.path, "--dry-run", "--json",
                           *pf(st)).out)


def holds(st):
    return json.loads(tool("hold", st.path, "--list", "--json", *pf(st)).out)


def audit(st, op):
    out = tool("audit", "log", st.path, "--op", op, "--json", *pf(st)).out
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_hold_directory_sweep_and_report(rstore):  # noqa: F811
    st = rstore
    s = dry_run(st)
    assert (s["files_due"], s["files_held"]) == (5, 3)

    r = tool("hold", st.path, "--path", "/records", "--reason", "audit 2026-5", *pf(st))
    assert r.out.strip() == "/records: on legal hold"
    # nothing under /records is due while held: the sweep would erase nothing
    s = dry_run(st)
    assert (s["files_due"], s["files_held"]) == (0, 11), s
    rep = json.loads(tool("retention", "report", st.path, "--json", *pf(st)).out)
    rec = rows(rep)["/records"]
    assert (rec["files"], rec["files_due"], rec["files_held"]) == (8, 0, 8)
    hs = {(h["kind"], h["what"]): h["reason"] for h in rep["holds"]}
    assert hs[("directory", "/records")] == "audit 2026-5"
    # a real sweep erases nothing either
    before = st.backing_files()
    s = json.loads(tool("retention", "sweep", st.path, "--yes", "--json", *pf(st)).out)
    assert s["files_erased"] == 0 and st.backing_files() == before

    # --list: subject and directory holds with their reasons
    lst = holds(st)
    assert {(h["kind"], h["what"], h["reason"]) for h in lst} == {
        ("subject", "/customers/C-2", "regulator inquiry"),
        ("directory", "/records/legal", "litigation 2026-17"),
        ("directory", "/records", "audit 2026-5"),
    }
    txt = tool("hold", st.path, "--list", *pf(st)).out
    assert "directory /records: audit 2026-5 (since " in txt
    assert "subject   /customers/C-2: regulator inquiry" in txt

    # holding again changes nothing but the reason
    r = tool("hold", st.path, "--path", "/records/", "--reason", "audit 2026-6", *pf(st))
    assert "(already)" in r.out
    r = tool("release", st.path, "--path", "/records", "--reason", "closed", *pf(st))
    assert r.out.strip() == "/records: legal hold released"
    s = dry_run(st)
    assert (s["files_due"], s["files_held"]) == (5, 3)
    assert all(h["what"] != "/records" for h in holds(st))

    # audited, with the path, and the chain verifies
    hold_recs = [x for x in audit(st, "hold") if x.get("path") == "/records"]
    assert [x["outcome"] for x in hold_recs] == [0, 0], hold_recs
    rel = [x for x in audit(st, "release") if x.get("path") == "/records"]
    assert len(rel) == 1 and rel[0]["outcome"] == 0
    tool("audit", "verify", st.path, *pf(st))


def test_hold_path_refusals(rstore, mount_factory):  # noqa: F811
    st = rstore
    r = tool("hold", st.path, "--path", "/no/such/dir", "--reason", "x", *pf(st),
             check=False)
    assert r.returncode == 1 and "/no/such/dir: no such directory in the store" in r.err
    r = tool("hold", st.path, "--path", "/records", *pf(st), check=False)
    assert r.returncode == 2 and "--reason is required" in r.err
    r = tool("hold", st.path, "--path", "records", "--reason", "x", *pf(st), check=False)
    assert r.returncode == 2 and "absolute" in r.err
    r = tool("hold", st.path, "C-1", "--path", "/records", "--reason", "x", *pf(st),
             check=False)
    assert r.returncode == 2
    r = tool("hold", st.path, "--list", "--path", "/records", *pf(st), check=False)
    assert r.returncode == 2
    r = tool("restrict", st.path, "--path", "/records", "--reason", "x", *pf(st),
             check=False)
    assert r.returncode == 2 and "unknown option" in r.err
    # release of something not held, or held only through an ancestor
    r = tool("release", st.path, "--path", "/records", "--reason", "x", *pf(st),
             check=False)
    assert r.returncode == 1 and "no hold on this directory" in r.err
    r = tool("release", st.path, "--path", "/records/legal/sub", "--reason", "x",
             *pf(st), check=False)
    assert r.returncode == 1 and "no hold on this directory" in r.err
    # none of that changed the holds
    assert {h["what"] for h in holds(st)} == {"/customers/C-2", "/records/legal"}
    # refusals are audited too
    assert any(x.get("path") == "/no/such/dir" and x["outcome"] == errno.ENOENT
               for x in audit(st, "hold")), audit(st, "hold")
    assert sum(x["outcome"] == errno.ESRCH for x in audit(st, "release")) == 2

    # mounted: the same refusals, recorded through the daemon
    m = mount_factory(st, open_root=False)
    r = tool("hold", st.path, "--path", "/no/such/dir", "--reason", "x", *pf(st),
             check=False)
    assert r.returncode == 1 and "/no/such/dir: no such directory in the store" in r.err
    r = tool("release", st.path, "--path", "/records", "--reason", "x", *pf(st),
             check=False)
    assert r.returncode == 1 and "no hold on this directory" in r.err
    # listing only reads: fine while mounted
    assert len(holds(st)) == 2
    m.stop()
    assert sum(x.get("path") == "/no/such/dir" and x["outcome"] == errno.ENOENT
               for x in audit(st, "hold")) == 2
    assert sum(x["outcome"] == errno.ESRCH for x in audit(st, "release")) == 3
    tool("audit", "verify", st.path, *pf(st))


def test_hold_path_mounted_takes_effect_at_once(sm):  # noqa: F811
    st = sm.store
    d = sm.mnt / "archive" / "cases 2026"
    os.mkdir(d)
    os.chmod(d, 0o777)
    for n in ("a.txt", "b.txt", "c.txt"):
        (d / n).write_bytes(b"case file " + n.encode())
        os.chmod(d / n, 0o666)
    assert try_as("cust_alice", "unlink", d / "a.txt")[0] == 0

    r = tool("hold", st.path, "--path", "/archive/cases 2026/", "--reason",
             "inquiry 9", *pf(st))
    assert r.out.strip() == "/archive/cases 2026: on legal hold"
    # the next operation obeys: no waiting, no remount
    assert try_as("cust_alice", "unlink", d / "b.txt")[0] == errno.EPERM
    assert try_as("cust_alice", "rename", d / "b.txt", d / "moved.txt")[0] == errno.EPERM
    assert (d / "b.txt").read_bytes() == b"case file b.txt"
    assert ("directory", "/archive/cases 2026", "inquiry 9") in {
        (h["kind"], h["what"], h["reason"]) for h in holds(st)}
    r = tool("hold", st.path, "--path", "/archive/cases 2026", "--reason", "inquiry 10",
             *pf(st))
    assert "(already)" in r.out
    assert try_as("cust_alice", "unlink", d / "c.txt")[0] == errno.EPERM

    r = tool("release", st.path, "--path", "/archive/cases 2026", "--reason", "closed",
             *pf(st))
    assert r.out.strip() == "/archive/cases 2026: legal hold released"
    assert try_as("cust_alice", "unlink", d / "b.txt")[0] == 0
    assert all(h["what"] != "/archive/cases 2026" for h in holds(st))

    # recorded by the daemon with the plaintext path (sealed in the log)
    txt = tool("audit", "log", st.path, "--op", "hold", *pf(st)).out
    assert "/archive/cases 2026" in txt, txt
    hold_recs = [x for x in audit(st, "hold") if x.get("path") == "/archive/cases 2026"]
    assert [x["outcome"] for x in hold_recs] == [0, 0], hold_recs
    assert all(x.get("detail") == "directory hold" for x in hold_recs)
    rel = [x for x in audit(st, "release") if x.get("path") == "/archive/cases 2026"]
    assert len(rel) == 1 and rel[0]["outcome"] == 0
    assert b"cases 2026" not in b"".join(
        p.read_bytes() for p in st.path.rglob("*") if p.is_file()
        and p.name != "control.sock")

    # the control verb: the old form still works, a bad path field is refused
    code, text = helpers.control(st, f"audit-admin {os.getpid()} policy 0 old form")
    assert code == 0 and text.startswith("seq "), text
    code, text = helpers.control(st, f"audit-admin {os.getpid()} hold 0 path=hex:zz x")
    assert code == errno.EINVAL and "usage" in text, text
    code, text = helpers.control(st, f"audit-admin {os.getpid()} hold 0 path=hex:2f6162 x")
    assert code == 0, text
    assert any(x.get("path") == "/ab" for x in audit(st, "hold"))
    sm.stop()
    tool("audit", "verify", st.path, *pf(st))


def test_hold_path_inside_subject(store, mksubject):  # noqa: F811
    make_subject(mksubject, store, "C-1")
    r = tool("hold", store.path, "--path", "/customers/C-1/calls/2026", "--reason",
             "case 5", *pf(store))
    assert "on legal hold" in r.out
    r = tool("hold", store.path, "--path", "/customers/C-1", "--reason", "case 6",
             *pf(store))
    assert "on legal hold" in r.out
    for bad, why in (("/customers/C-1/calls/nope", "no such directory"),
                     ("/customers/C-9/calls", "no such directory"),
                     ("/customers/C-1/notes.txt", "not a directory")):
        r = tool("hold", store.path, "--path", bad, "--reason", "x", *pf(store),
                 check=False)
        assert r.returncode == 1 and why in r.err, (bad, r.err)
    assert {h["what"] for h in holds(store)} == {"/customers/C-1/calls/2026",
                                                  "/customers/C-1"}
    assert tool("hold", store.path, "--list", *pf(store)).out.count("directory") == 2


def test_hold_list_empty(store):
    assert tool("hold", store.path, "--list", *pf(store)).out.strip() == "no legal holds"
    assert holds(store) == []
