"""custodian hold|release|restrict|unrestrict on an unmounted store
(issue 5): the flags reach the catalogue, every change is audited, a held
subject cannot be shredded, and the verbs refuse bad input and a mounted
store.  Subjects are built with the engine helper of test_export.py."""
import json

import helpers
from test_export import make_subject, mksubject  # noqa: F401 (fixture)


def cli(st, *args, check=False):
    return helpers.run([helpers.BUILD / "custodian", *args], check=check)


def test_flag_verbs_round_trip(store, mksubject):  # noqa: F811
    make_subject(mksubject, store, "C-7", files={"a.txt": b"hello"}, dirs=[], links={})
    pf = ["--passfile", str(store.passfile)]
    for verb, want in (("hold", "on legal hold"), ("hold", "(already)"),
                       ("restrict", "processing restricted"),
                       ("release", "legal hold released"),
                       ("release", "(was not held)"),
                       ("unrestrict", "restriction lifted")):
        r = cli(store, verb, str(store.path), "C-7", "--reason", f"case {verb}", *pf)
        assert r.returncode == 0, r.err
        assert want in r.out, (verb, r.out)
    # every change is in the audit chain, and the chain verifies
    log = cli(store, "audit", "log", str(store.path), "--json", *pf, check=True)
    ops = [json.loads(x)["op"] for x in log.out.splitlines() if x.strip()]
    for verb in ("hold", "release", "restrict", "unrestrict"):
        assert verb in ops, ops
    assert cli(store, "audit", "verify", str(store.path), *pf).returncode == 0


def test_held_subject_cannot_be_shredded(store, mksubject):  # noqa: F811
    make_subject(mksubject, store, "C-8", files={"a.txt": b"keep me"}, dirs=[], links={})
    pf = ["--passfile", str(store.passfile)]
    assert cli(store, "hold", str(store.path), "C-8", "--reason", "litigation",
               *pf).returncode == 0
    r = cli(store, "shred", str(store.path), "C-8", "--reason", "erasure request",
            "--yes", *pf)
    assert r.returncode == 1 and "hold" in r.err.lower(), (r.out, r.err)
    assert cli(store, "release", str(store.path), "C-8", "--reason", "settled",
               *pf).returncode == 0
    r = cli(store, "shred", str(store.path), "C-8", "--reason", "erasure request",
            "--yes", *pf)
    assert r.returncode == 0, r.err


def test_flag_verbs_refuse_bad_input(store, mksubject, mount_factory):  # noqa: F811
    pf = ["--passfile", str(store.passfile)]
    r = cli(store, "restrict", str(store.path), "C-1", *pf)
    assert r.returncode == 2 and "--reason is required" in r.err
    r = cli(store, "hold", str(store.path), "no/such", "--reason", "x", *pf)
    assert r.returncode == 2
    r = cli(store, "hold", str(store.path), "C-404", "--reason", "x", *pf)
    assert r.returncode == 1 and "no such subject" in r.err
    m = mount_factory(store)
    try:
        # mounted: the daemon answers (tests/integration/test_subject_flags_live.py)
        r = cli(store, "unrestrict", str(store.path), "C-404", "--reason", "x", *pf)
        assert r.returncode == 1 and "no such subject" in r.err
    finally:
        m.stop()
