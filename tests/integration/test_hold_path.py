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

from helpers import tool
from test_export import make_subject, mksubject  # noqa: F401 (fixture)
from test_retention_cli import gen, rows, rstore  # noqa: F401 (fixtures)


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

    # mounted: changed only through the daemon, later
    m = mount_factory(st, open_root=False)
    r = tool("hold", st.path, "--path", "/records", "--reason", "x", *pf(st), check=False)
    assert r.returncode == 1 and "is mounted; unmount it first" in r.err
    # listing only reads: fine while mounted
    assert len(holds(st)) == 2
    m.stop()
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
