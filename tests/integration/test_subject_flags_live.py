"""`custodian restrict|unrestrict|hold|release` on a MOUNTED store.

The tool hands the change to the running daemon (control verb
subject-flag): it takes effect at the next operation of any user, the
daemon writes the audit record (the tool cannot: the daemon holds the
journal), and the tool prints what it prints for an unmounted store.
Unknown and shredded subjects are one-line errors with exit 1.
"""

import errno

from helpers import tool, try_as
from test_subjects_daemon import audit_records, mksubject, sm  # noqa: F401 (fixture)


def cli(store, verb, sid, reason="case 17", check=True):
    return tool(verb, store.path, sid, "--reason", reason, check=check)


def test_restrict_and_hold_live_through_the_tool(sm):  # noqa: F811
    d = mksubject(sm, "C 50", {"r.txt": b"live data"})  # an id with a space
    assert try_as("cust_alice", "read", d / "r.txt") == (0, "live data")

    r = cli(sm.store, "restrict", "C 50")
    assert r.out.strip() == "C 50: processing restricted", r.out
    assert try_as("cust_alice", "read", d / "r.txt")[0] == errno.EACCES
    assert try_as("cust_carol", "read", d / "r.txt") == (0, "live data")  # admin
    r = cli(sm.store, "restrict", "C 50")
    assert r.out.strip() == "C 50: processing restricted (already)", r.out

    r = cli(sm.store, "hold", "C 50", "litigation 2026-17")
    assert r.out.strip() == "C 50: on legal hold"
    assert try_as("cust_alice", "unlink", d / "r.txt")[0] == errno.EPERM
    assert try_as("root", "unlink", d / "r.txt")[0] == errno.EPERM

    assert cli(sm.store, "unrestrict", "C 50").out.strip() == "C 50: restriction lifted"
    assert try_as("cust_alice", "read", d / "r.txt") == (0, "live data")
    assert cli(sm.store, "release", "C 50", "settled").out.strip() == \
        "C 50: legal hold released"
    assert try_as("cust_alice", "unlink", d / "r.txt")[0] == 0

    ops = ["restrict", "restrict", "hold", "unrestrict", "release"]
    recs = audit_records(sm.store, want=lambda rs: [r["op"] for r in rs
                                                   if r["op"] in set(ops)] == ops)
    mine = [r for r in recs if r["op"] in set(ops)]
    assert [r["op"] for r in mine] == ops
    assert all(r["outcome"] == 0 and r.get("subject") for r in mine), mine
    assert len({r["subject"] for r in mine}) == 1


def test_live_flag_errors(sm):  # noqa: F811
    r = cli(sm.store, "hold", "C-NOBODY", check=False)
    assert r.returncode == 1 and "no such subject" in r.err, r.out + r.err
    mksubject(sm, "C-51")
    tool("shred", sm.store.path, "C-51", "--reason", "erasure request 9", "--yes",
         "--passfile", sm.store.passfile)
    r = cli(sm.store, "restrict", "C-51", check=False)
    assert r.returncode == 1 and "shredded" in r.err, r.out + r.err
    r = cli(sm.store, "hold", "C-52", reason="", check=False)
    assert r.returncode == 2 and "--reason is required" in r.err
