"""test_audit_cli.py — `custodian audit log|verify|head` on a known history.

The history is made by tests/bench/bench_audit.c (compiled here against the
build's libcustodian.a) with `--quick`: record i (0-based) is an `open`
(a `close` when i % 5 == 0) by uid 1000 + i % 7 of
/customers/C-(i % 1000)/call-i.wav in subject C-(i % 1000), outcome EACCES
when i % 50 == 0, bytes = i.  The daemon's hooks come with the daemon; these
tests cover the reading side and tampering found by verify.
"""

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

import helpers
from helpers import tool

N = 60


@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    helpers.require_binaries()
    out = tmp_path_factory.mktemp("bench") / "bench_audit"
    return helpers.engine_program(helpers.REPO / "tests/bench/bench_audit.c", out)


@pytest.fixture
def hist(store, gen):
    helpers.run([gen, store.path, store.passfile, str(N), "--quick"])
    return store


def log(st, *args, check=True):
    return tool("audit", "log", st.path, "--passfile", st.passfile, *args, check=check)


def log_json(st, *args):
    return [json.loads(line) for line in log(st, "--json", *args).out.splitlines()]


FIELDS = ["ts", "seq", "op", "outcome", "uid", "user", "gid", "groups", "auid", "ses",
          "pid", "comm", "exe", "subject", "path", "path2", "flags", "bytes", "count",
          "ref", "detail"]


def test_json_schema(hist):
    recs = log_json(hist)
    assert [r["seq"] for r in recs] == list(range(1, N + 1))
    for i, r in enumerate(recs):
        assert list(r.keys()) == FIELDS
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["ts"])
        assert r["op"] == ("close" if i % 5 == 0 else "open")
        assert r["outcome"] == (13 if i % 50 == 0 else 0)
        assert r["uid"] == 1000 + i % 7
        assert r["path"] == f"/customers/C-{i}/call-{i}.wav"
        assert r["path2"] is None
        assert r["bytes"] == i
        assert re.fullmatch(r"[0-9a-f]{64}", r["subject"])
        assert r["comm"] == "bench_audit"
        assert r["exe"].endswith("bench_audit")
        assert r["auid"] is None or isinstance(r["auid"], int)
    assert len({r["subject"] for r in recs}) == N


def test_filters(hist):
    assert [r["seq"] for r in log_json(hist, "--subject", "C-7")] == [8]
    assert [r["seq"] for r in log_json(hist, "--user", "1003")] == [4, 11, 18, 25, 32, 39,
                                                                   46, 53, 60]
    assert [r["seq"] for r in log_json(hist, "--denied")] == [1, 51]
    assert [r["seq"] for r in log_json(hist, "--op", "close")] == list(range(1, N + 1, 5))
    assert [r["seq"] for r in log_json(hist, "--path", "/customers/C-12")] == [13]
    assert [r["seq"] for r in log_json(hist, "--path", "/customers/C-12/")] == [13]
    assert log_json(hist, "--path", "/customers/C-1/call-1") == []
    assert len(log_json(hist, "--since", "1h")) == N
    assert len(log_json(hist, "--since", "2000-01-01", "--until", "2099-12-31")) == N
    assert log_json(hist, "--until", "2000-01-01T00:00:00Z") == []
    assert log_json(hist, "--since", "2099-01-01") == []
    assert log_json(hist, "--subject", "C-99999") == []


def test_bad_options(hist):
    for args in (["--since", "yesterday"], ["--until", "2026-13-01"], ["--user", "nosuchuser"],
                 ["--op", "x" * 40]):
        r = log(hist, *args, check=False)
        assert r.returncode == 2, args
        assert r.err.startswith("custodian: audit: ")
    assert tool("audit", "bogus", hist.path, check=False).returncode == 2
    assert tool("audit", "verify", hist.path, "--json", check=False).returncode == 2


def test_table(hist):
    out = log(hist).out.splitlines()
    assert len(out) == N
    assert "/customers/C-0/call-0.wav" in out[0]
    assert "EACCES" in out[0] and "close" in out[0]


def test_verify_and_head(hist):
    head = tool("audit", "head", hist.path).out.split()
    assert head[0] == str(N) and re.fullmatch(r"[0-9a-f]{64}", head[1])
    r = tool("audit", "verify", hist.path, "--passfile", hist.passfile, "--head", head[1])
    assert f"{N} records" in r.out and head[1] in r.out
    r = tool("audit", "verify", hist.path, "--passfile", hist.passfile, "--head", "0" * 64,
             check=False)
    assert r.returncode == 1 and "--head" in r.err

    db = sqlite3.connect(hist.db)
    db.execute("UPDATE audit SET bytes = 0 WHERE seq = 17")
    db.commit()
    r = tool("audit", "verify", hist.path, "--passfile", hist.passfile, check=False)
    assert r.returncode == 1
    assert r.err.strip() == ("custodian: audit: record 17: MAC mismatch "
                             "(edited, reordered or inserted)")
    db.execute("UPDATE audit SET bytes = 16 WHERE seq = 17")
    db.execute("DELETE FROM audit WHERE seq = 30")
    db.commit()
    r = tool("audit", "verify", hist.path, "--passfile", hist.passfile, check=False)
    assert r.err.strip() == "custodian: audit: record 30 missing (gap after 29)"
    db.close()


def test_no_plaintext_paths(hist):
    for f in hist.path.iterdir():
        if f.is_file():
            data = f.read_bytes()
            assert b"call-1" not in data and b"customers" not in data, f


def test_wrong_passphrase(hist, tmp_path):
    bad = tmp_path / "bad.pass"
    bad.write_bytes(b"wrong")
    r = tool("audit", "verify", hist.path, "--passfile", bad, check=False)
    assert r.returncode == 1 and "wrong passphrase" in r.err


def test_unreadable_path(hist):
    """A sealed path no key opens (here: overwritten in the database) reads
    "(unreadable)", not "(shredded)": its subject was never shredded."""
    con = sqlite3.connect(hist.db)
    con.execute("UPDATE audit SET path = zeroblob(60) WHERE seq = 3")
    con.commit()
    con.close()
    recs = {x["seq"]: x for x in log_json(hist)}
    assert recs[3]["path"] == "(unreadable)"
    assert recs[3]["subject"] is not None
    assert recs[4]["path"] == "/customers/C-3/call-3.wav"
    r = tool("audit", "verify", hist.path, "--passfile", hist.passfile, check=False)
    assert r.returncode == 1 and "record 3" in r.err
