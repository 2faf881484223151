"""test_retention_daemon.py — retention enforced by the running daemon
(issue 6, docs/retention.md "For the daemon").

On a real mount: retain_min refuses delete, truncate, overwrite and rename
away (EPERM, audited) for a normal user and for root, while appending is
allowed; worm = yes makes a file immutable once closed after writing, and
autocommit does it for an idle file; `touch -d` cannot shorten retention;
directory and subject holds block deletion; links across differing rules
are refused; and the live `custodian retention sweep` erases what is due
(files and subjects), respects holds and the compliance clock, and what it
erased vanishes from the mount at once.  Time: the store built by
retention_fixture.c has records born in the past; `--now` (with
--accept-clock) moves the sweep's clock reading, as in test_retention_cli.
"""

import errno
import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

import helpers
from helpers import tool, try_as
from test_retention_cli import gen, rstore  # noqa: F401 (fixtures)

POLICY = """\
[/]
list = root @cust_agents
read = root @cust_agents
write = root @cust_agents
create = root @cust_agents
delete = root @cust_agents
admin = root

[/records]
retain_min = 30d

[/worm]
worm = yes
retain_min = 30d

[/auto]
worm = yes
autocommit = 1h

[/plain]

[/customers/*]
subject = yes
"""


def apply_policy(store, text):
    f = store.path.parent / "retention-policy.ini"
    f.write_text(text)
    return tool("policy", "apply", store.path, f, "--yes", "--passfile", store.passfile)


def denials(store, word, want=1):
    """Refusal records whose detail holds word (the audit writer commits in
    batches: wait a little for at least `want`)."""
    deadline = time.monotonic() + 5 * helpers.SLOW
    while True:
        r = tool("audit", "log", store.path, "--json", "--denied", "--passfile",
                 store.passfile)
        recs = [json.loads(x) for x in r.out.splitlines() if x.strip()]
        found = [x for x in recs if word in (x.get("detail") or "")]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def eperm(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == errno.EPERM, e.value
    return True


@pytest.fixture
def rm_(store, mount_factory, users):
    m = mount_factory(store)
    apply_policy(store, POLICY)
    for d in ("records", "worm", "auto", "plain", "customers"):
        os.mkdir(m.mnt / d)
        os.chmod(m.mnt / d, 0o777)
    return m


def overwrite(path, data=b"X"):
    with open(path, "r+b") as f:
        f.write(data)


def test_retain_min_refusals_root_and_user(rm_):
    r = rm_.mnt / "records"
    (r / "a.wav").write_bytes(b"recording one")
    os.chmod(r / "a.wav", 0o666)
    # root: refused like anybody
    eperm(os.unlink, r / "a.wav")
    eperm(os.truncate, r / "a.wav", 3)
    eperm(overwrite, r / "a.wav")
    eperm(os.rename, r / "a.wav", r / "b.wav")
    eperm(os.rename, r / "a.wav", rm_.mnt / "plain" / "a.wav")
    eperm(lambda p: open(p, "wb").close(), r / "a.wav")  # O_TRUNC
    # a user with every permission: refused too
    assert try_as("cust_alice", "unlink", r / "a.wav")[0] == errno.EPERM
    assert try_as("cust_alice", "write", r / "a.wav", "new")[0] == errno.EPERM
    assert try_as("cust_alice", "rename", r / "a.wav", r / "c.wav")[0] == errno.EPERM
    # appending destroys nothing
    assert try_as("cust_alice", "append", r / "a.wav", " + two")[0] == 0
    with open(r / "a.wav", "ab") as f:
        f.write(b" + three")
    assert (r / "a.wav").read_bytes() == b"recording one + two + three"
    # touch cannot make it older: keep-until is in the authenticated header
    helpers.run(["touch", "-d", "2001-01-01", r / "a.wav"])
    assert os.stat(r / "a.wav").st_mtime < 1e9 + 1e8
    eperm(os.unlink, r / "a.wav")
    # chmod is allowed (it destroys nothing)
    os.chmod(r / "a.wav", 0o640)
    assert len(denials(rm_.store, "retention", 9)) >= 9
    # outside the rule everything goes
    (rm_.mnt / "plain" / "p").write_bytes(b"p")
    os.unlink(rm_.mnt / "plain" / "p")
    # a hard link into another rule would let the record escape it
    eperm(os.link, r / "a.wav", rm_.mnt / "plain" / "a-link")
    os.link(r / "a.wav", r / "a-second-name")


def test_worm_after_close(rm_):
    w = rm_.mnt / "worm" / "w.pdf"
    with open(w, "wb") as f:
        f.write(b"first part, ")
        f.write(b"second part")  # one write session: fine
    assert w.read_bytes() == b"first part, second part"
    def append():
        fd = os.open(w, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"more")
        finally:
            os.close(fd)
    eperm(append)
    eperm(overwrite, w)
    eperm(os.truncate, w, 0)
    eperm(os.truncate, w, 100)  # even growing: immutable
    eperm(os.unlink, w)
    os.chmod(w, 0o666)  # metadata may change, data may not
    eperm(overwrite, w)
    assert w.read_bytes() == b"first part, second part"
    assert try_as("cust_alice", "read", w) == (0, "first part, second part")
    assert try_as("cust_alice", "append", w, "x")[0] == errno.EPERM
    # after a remount, still committed (it is in the header)
    rm_.remount()
    eperm(overwrite, w)
    assert w.read_bytes() == b"first part, second part"


def test_autocommit_of_an_idle_file(rm_):
    p = rm_.mnt / "auto" / "draft.txt"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"draft")
        # idle for 2 h (autocommit = 1h): the next open commits it
        old = time.time() - 7200
        os.utime(p, (old, old))
        assert p.read_bytes() == b"draft"
        with pytest.raises(OSError) as e:
            os.write(fd, b" more")
        assert e.value.errno == errno.EPERM
    finally:
        os.close(fd)
    eperm(overwrite, p)


def test_autocommit_at_lookup(rm_):
    p = rm_.mnt / "auto" / "idle.txt"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"kept open")
        old = time.time() - 7200
        os.utime(p, (old, old))
        time.sleep(1.2)  # the kernel's entry cache (1 s) lapses: a real lookup
        os.stat(p)
        with pytest.raises(OSError) as e:
            os.write(fd, b"!")
        assert e.value.errno == errno.EPERM
    finally:
        os.close(fd)


def test_subject_files_follow_holds_and_are_touched(rm_):
    d = rm_.mnt / "customers" / "C-9"
    os.mkdir(d)
    (d / "f").write_bytes(b"x")
    code, text = helpers.control(rm_.store, "subject-flag C-9 hold inquiry 7")
    assert code == 0, text
    eperm(os.unlink, d / "f")
    code, text = helpers.control(rm_.store, "subject-flag C-9 release done")
    assert code == 0
    os.unlink(d / "f")


def test_holds_from_the_store_and_live_sweep(rstore, mount_factory):  # noqa: F811
    st = rstore
    m = mount_factory(st, open_root=False)  # the fixture's policy: root may not chmod /
    apply_policy(st, """\
[/]
list = root
read = root
write = root
create = root
delete = root

[/records]
retain_min = 30d
retain_max = 1y

[/records/legal]
retain_max = 1y

[/customers/*]
subject = yes
retain_max = 2y
retain_from = subject-inactive
""")
    rec = m.mnt / "records"
    names = sorted(os.listdir(rec))
    assert names == ["legal", "new-0.wav", "new-1.wav", "new-2.wav", "old-0.wav",
                     "old-1.wav", "old-2.wav", "old-3.wav", "old-4.wav"], names
    # directory hold and subject hold: nothing there may be deleted
    eperm(os.unlink, rec / "legal" / "case-a.pdf")
    eperm(os.unlink, m.mnt / "customers" / "C-2" / "call-0.wav")
    d = denials(st, "legal hold")
    assert d, tool("audit", "log", st.path, "--passfile", st.passfile).out[-3000:]
    # an (empty) directory under a directory hold stays too
    os.mkdir(rec / "legal" / "empty")
    eperm(os.rmdir, rec / "legal" / "empty")
    eperm(os.rmdir, rec / "legal")
    code, text = helpers.control(st, "holds-reload")
    assert code == 0, text
    os.stat(rec / "old-0.wav")  # the kernel caches it
    r = tool("retention", "sweep", st.path, "--yes", "--json", "--passfile", st.passfile)
    s = json.loads(r.out)
    assert s["files_erased"] == 5 and s["subjects_shredded"] == 0, s
    assert s["files_held"] == 3 and s["subjects_held"] == 1, s  # legal/ 2, C-2 1
    # gone from the mount at once
    assert sorted(os.listdir(rec)) == ["legal", "new-0.wav", "new-1.wav", "new-2.wav"]
    with pytest.raises(FileNotFoundError):
        os.stat(rec / "old-0.wav")
    assert sorted(os.listdir(rec / "legal")) == ["case-a.pdf", "case-b.pdf", "empty"]
    # a clock moved 3 years ahead is refused (and audited) unless accepted
    later = (datetime.now(timezone.utc) + timedelta(days=3 * 365 + 1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    r = tool("retention", "sweep", st.path, "--yes", "--now", later, "--passfile",
             st.passfile, check=False)
    assert r.returncode == 1 and "jumped ahead" in r.err and "--accept-clock" in r.err
    assert os.path.exists(rec / "new-0.wav")
    r = tool("retention", "sweep", st.path, "--yes", "--json", "--now", later,
             "--accept-clock", "--passfile", st.passfile)
    s = json.loads(r.out)
    assert s["files_erased"] == 3 and s["subjects_shredded"] == 2, s
    assert sorted(os.listdir(m.mnt / "customers")) == ["C-2"]
    assert sorted(os.listdir(rec)) == ["legal"]
    assert (m.mnt / "customers" / "C-2" / "call-0.wav").read_bytes() == b"call-0.wav"
    assert tool("audit", "verify", st.path, "--passfile", st.passfile).returncode == 0
    # the summary line is the unmounted one
    r = tool("retention", "sweep", st.path, "--yes", "--passfile", st.passfile)
    assert r.out.startswith("sweep done at "), r.out
