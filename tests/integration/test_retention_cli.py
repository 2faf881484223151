"""test_retention_cli.py — `custodian retention report|sweep` and
`custodian report` on a known store.

The store is built by tests/integration/retention_fixture.c (compiled here
against the build's libcustodian.a): with T = now, /records holds 5 files born
T-2y (due: retain_max 1y) and 3 born T-100d; /records/legal (directory hold)
2 files born T-2y; /customers has subjects C-1 (2 files), C-2 (1 file, legal
hold) and C-3 (1 file), written now (retain_max 2y after the last write).
Daemon enforcement (EPERM on unlink etc.) comes with the daemon integration.
"""

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

import helpers
from helpers import tool

YEAR = timedelta(days=365.25)


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    helpers.require_binaries()
    out = tmp_path_factory.mktemp("retfix") / "retention_fixture"
    return helpers.engine_program(helpers.REPO / "tests/integration/retention_fixture.c", out)


@pytest.fixture
def rstore(store, gen):
    helpers.run([gen, store.path, store.passfile])
    return store


def ret(st, *args, check=True):
    return tool("retention", *args[:1], st.path, "--passfile", st.passfile, *args[1:],
                check=check)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def report(st, *args):
    return json.loads(ret(st, "report", "--json", *args).out)


def rows(rep):
    return {r["rule"]: r for r in rep["rules"]}


def sweep_records(st):
    """Audit records of per-file erasures (op sweep with a path)."""
    out = tool("audit", "log", st.path, "--passfile", st.passfile, "--op", "sweep",
               "--json").out
    recs = [json.loads(line) for line in out.splitlines() if line.strip()]
    return [r for r in recs if r.get("path")]


def erasing_entries(st):
    return [f for _d, _s, fs in os.walk(st.tree) for f in fs if f.startswith(".E")]


def test_report_numbers(rstore):
    rep = report(rstore)
    r = rows(rep)
    assert set(r) == {"/records", "/records/legal", "/customers/*"}
    assert (r["/records"]["files"], r["/records"]["files_due"],
            r["/records"]["files_held"]) == (8, 5, 0)
    assert r["/records"]["retain_min"] == "30d" and r["/records"]["retain_max"] == "1y"
    assert r["/records"]["retain_from"] == "created"
    # the next due date: the files born 100 days ago, one year on
    nd = datetime.strptime(r["/records"]["next_due"], "%Y-%m-%dT%H:%M:%SZ")
    want = datetime.utcnow() - timedelta(days=100) + YEAR
    assert abs((nd - want).total_seconds()) < 120
    assert (r["/records/legal"]["files"], r["/records/legal"]["files_due"],
            r["/records/legal"]["files_held"]) == (2, 0, 2)
    c = r["/customers/*"]
    assert (c["subjects"], c["subjects_held"], c["subjects_due"]) == (3, 1, 0)
    assert (c["files"], c["files_held"], c["files_due"]) == (4, 1, 0)
    assert c["retain_from"] == "subject-inactive"
    holds = {(h["kind"], h["what"]): h["reason"] for h in rep["holds"]}
    assert holds == {("directory", "/records/legal"): "litigation 2026-17",
                     ("subject", "/customers/C-2"): "regulator inquiry"}
    assert rep["pending_erasures"] == 0

    # the text form: aligned table, holds listed
    txt = ret(rstore, "report").out
    assert "RULE" in txt and "NEXT DUE" in txt
    line = next(ln for ln in txt.splitlines() if ln.startswith("/records "))
    assert line.split()[1:8] == ["30d", "1y", "(created)", "0", "8", "5", "0"]
    assert "directory /records/legal: litigation 2026-17" in txt
    assert "subject   /customers/C-2: regulator inquiry" in txt


def test_report_future_needs_accept(rstore):
    later = iso(datetime.now(timezone.utc) + 3 * YEAR)
    # a --now far ahead is a clock jump: the report warns and keeps the stored time
    r = ret(rstore, "report", "--json", "--now", later)
    assert "jumped ahead" in r.err
    assert rows(json.loads(r.out))["/customers/*"]["subjects_due"] == 0
    # accepted (for this read-only report): a forecast
    c = rows(report(rstore, "--now", later, "--accept-clock"))["/customers/*"]
    assert (c["subjects_due"], c["subjects_held"]) == (2, 1)


def test_sweep_dry_run_changes_nothing(rstore):
    before = rstore.backing_files()
    r = ret(rstore, "sweep", "--dry-run", "--json")
    s = json.loads(r.out)
    assert s["dry_run"] is True
    assert (s["files"], s["files_due"], s["files_held"]) == (14, 5, 3)
    assert (s["subjects"], s["subjects_due"], s["subjects_held"]) == (3, 0, 1)
    assert s["files_erased"] == 0
    assert rstore.backing_files() == before


def test_sweep(rstore):
    before = rstore.backing_files()
    # without a terminal, --yes is required
    r = ret(rstore, "sweep", check=False)
    assert r.returncode == 1 and "--yes" in r.err
    r = ret(rstore, "sweep", "--yes")
    assert r.out.count("erased /records/old-") == 5
    assert "5 files erased" in r.out and "0 errors" in r.out
    after = rstore.backing_files()
    assert len(before) - len(after) == 5
    assert not erasing_entries(rstore)
    recs = sweep_records(rstore)
    assert sorted(x["path"] for x in recs) == [f"/records/old-{i}.wav" for i in range(5)]
    # a second sweep finds nothing
    s = json.loads(ret(rstore, "sweep", "--yes", "--json").out)
    assert (s["files_erased"], s["files_due"], s["resumed"]) == (0, 0, 0)
    assert len(sweep_records(rstore)) == 5
    tool("audit", "verify", rstore.path, "--passfile", rstore.passfile)


def test_sweep_interrupted(rstore):
    r = ret(rstore, "sweep", "--yes", "--test-stop-after", "2", check=False)
    assert r.returncode == -9, (r.returncode, r.err)
    # killed in the middle of the third erasure: its ciphertext sits under .E
    assert len(erasing_entries(rstore)) == 1
    rep = report(rstore)
    assert rep["pending_erasures"] == 1
    assert rows(rep)["/records"]["files_due"] == 2
    r = ret(rstore, "sweep", "--yes", "--json")
    s = json.loads(r.out)
    # the finished one counts as erased (and resumed) in this run
    assert s["resumed"] == 1 and s["files_erased"] == 3 and s["errors"] == 0
    assert not erasing_entries(rstore)
    # nothing erased twice, nothing missed: one record per file, all five
    recs = sweep_records(rstore)
    assert sorted(x["path"] for x in recs) == [f"/records/old-{i}.wav" for i in range(5)]
    assert rows(report(rstore))["/records"]["files"] == 3
    tool("audit", "verify", rstore.path, "--passfile", rstore.passfile)


def test_sweep_clock_jump(rstore):
    later = iso(datetime.now(timezone.utc) + 3 * YEAR)
    before = rstore.backing_files()
    r = ret(rstore, "sweep", "--yes", "--now", later, check=False)
    assert r.returncode == 1
    assert "jumped ahead" in r.err and "--accept-clock" in r.err
    assert rstore.backing_files() == before
    # the refusal is in the audit log
    out = tool("audit", "log", rstore.path, "--passfile", rstore.passfile, "--op",
               "alert", "--json").out
    alerts = [json.loads(x) for x in out.splitlines() if x.strip()]
    assert any("jumped ahead" in a["detail"] and "not accepted" in a["detail"]
               for a in alerts)
    # accepted: C-1 and C-3 are shredded, C-2 is held; /records/old-* and new-* go
    r = ret(rstore, "sweep", "--yes", "--json", "--now", later, "--accept-clock")
    s = json.loads(r.out)
    assert s["subjects_shredded"] == 2 and s["subjects_held"] == 1
    assert s["files_erased"] == 8 and s["files_held"] == 3
    subj = tool("subjects", rstore.path, "--passfile", rstore.passfile, check=False).out
    assert "C-2" in subj
    out = tool("audit", "log", rstore.path, "--passfile", rstore.passfile, "--op",
               "alert", "--json").out
    assert any("accepted by the operator" in json.loads(x)["detail"]
               for x in out.splitlines() if x.strip())
    # the clock moved: an ordinary run now sees a clock set back, and refuses nothing
    r = ret(rstore, "sweep", "--yes")
    assert "set back" in r.err
    tool("audit", "verify", rstore.path, "--passfile", rstore.passfile)


def test_sweep_mounted_goes_through_the_daemon(mounted):
    # (the live sweep itself: test_retention_daemon.py)
    st = mounted.store
    r = tool("retention", "sweep", st.path, "--passfile", st.passfile, "--yes",
             check=False)
    assert r.returncode == 0, r.err
    assert r.out.startswith("sweep done at "), r.out


def test_usage(rstore):
    assert tool("retention", "--help").out.startswith("usage: custodian retention")
    assert tool("retention", "frob", rstore.path, check=False).returncode == 2
    assert tool("retention", "sweep", check=False).returncode == 2
    r = ret(rstore, "sweep", "--now", "yesterday", check=False)
    assert r.returncode == 2 and "--now" in r.err
    r = ret(rstore, "sweep", "--max-clock-jump", "5m", check=False)
    assert r.returncode == 2


def test_register_of_processing(rstore, tmp_path):
    md = tool("report", rstore.path, "--passfile", rstore.passfile).out
    assert md.startswith("\n# Register of processing activities") or \
        "# Register of processing activities" in md
    assert "quality assurance of calls" in md
    assert "voice recordings; phone numbers" in md
    assert "@cust\\_agents root" in md
    assert "| Records (most specific rule) | 8 files, 0 subjects |" in md
    assert "| Records (most specific rule) | 4 files, 3 subjects |" in md
    assert "1y from creation, then erased by the sweep" in md
    assert "2y from the subject's last write" in md
    assert "XChaCha20-Poly1305" in md and "Argon2id" in md
    assert "Policy version 1, applied by fixture" in md
    out = tmp_path / "r.html"
    tool("report", rstore.path, "--passfile", rstore.passfile, "--format", "html",
         "--out", out)
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<th>Purpose</th><td>quality assurance of calls</td>" in html
    assert "<th>Access: read</th><td>@cust_agents root</td>" in html
    assert tool("report", rstore.path, "--format", "pdf", check=False).returncode == 2
