"""test_audit_daemon.py — the daemon's audit records (issue 4), read back with
`custodian audit log --json` and checked with `custodian audit verify`.

Real mounts, real users: cust_alice reads with cat (the open record names
uid, comm, exe, the decrypted path and the flags; the close record has the
bytes read and refers to the open); policy denials are recorded with the
errno; every change (create, mkdir, rename, link, symlink, setattr, unlink,
rmdir) is recorded with its path(s); mount and unmount and policy reloads
are recorded; the policy's `audit = none|opens|reads` level is honoured;
`kill -9` of the daemon right after a read never loses that read's open
record (CUSTODIAN_AUDIT_CRASH_N times, default 10); the log filters answer
a known history; verify passes after a workload and names a row edited
with sqlite3.  The log is read after the daemon has stopped (or after its
writer has committed), since the tool reads the catalogue.
"""

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import helpers
from helpers import run, run_as, tool, try_as
from test_export import make_subject, mksubject  # noqa: F401 (fixture)

FIELDS = ["ts", "seq", "op", "outcome", "uid", "user", "gid", "groups", "auid", "ses",
          "pid", "comm", "exe", "subject", "path", "path2", "flags", "bytes", "count",
          "ref", "detail"]


def log_json(st, *args):
    r = tool("audit", "log", st.path, "--passfile", st.passfile, "--json", *args)
    return [json.loads(line) for line in r.out.splitlines() if line.strip()]


def verify(st, check=True):
    return tool("audit", "verify", st.path, "--passfile", st.passfile, check=check)


def apply_policy(store, text, check=True):
    f = store.path.parent / "policy.ini"
    f.write_text(text)
    return tool("policy", "apply", store.path, f, "--yes", "--passfile", store.passfile,
                check=check)


def uid_of(user):
    return helpers.user_ids(user)[0]


def wait_log(st, pred, timeout=10.0):
    """Polls the log of a mounted store until pred(records) holds (the
    daemon's writer commits journaled records within ~20 ms)."""
    deadline = time.monotonic() + timeout * helpers.SLOW
    recs = []
    while time.monotonic() < deadline:
        recs = log_json(st)
        if pred(recs):
            return recs
        time.sleep(0.1)
    pytest.fail(f"audit log never matched; last records: {recs[-10:]}")


READS_POLICY = """\
[/]
list = root @cust_agents
read = root @cust_agents
write = root
create = root
delete = root
audit = reads
"""


def test_read_by_alice_open_and_close(store, mount_factory, users):
    m = mount_factory(store)
    data = b"customer call notes\n" * 300
    (m.mnt / "calls").mkdir(mode=0o755)
    (m.mnt / "calls" / "c1.txt").write_bytes(data)
    os.chmod(m.mnt / "calls" / "c1.txt", 0o644)
    (m.mnt / "calls" / "c1.txt").read_bytes()  # no policy: level opens
    apply_policy(store, READS_POLICY)  # audit = reads: bytes read at close
    m.remount()  # cold page cache: the reads reach the daemon
    r = run_as("cust_alice", ["cat", str(m.mnt / "calls" / "c1.txt")])
    assert r.returncode == 0 and r.stdout.encode("latin-1") == data if isinstance(
        r.stdout, str) else r.stdout == data
    m.stop()
    recs = log_json(store)
    for rec in recs:
        assert list(rec.keys()) == FIELDS
    alice = uid_of("cust_alice")
    opens = [x for x in recs if x["op"] == "open" and x["uid"] == alice]
    assert len(opens) == 1, opens
    o = opens[0]
    assert o["path"] == "/calls/c1.txt"
    assert o["comm"] == "cat"
    assert o["exe"] in ("/usr/bin/cat", "/bin/cat")
    assert o["outcome"] == 0
    assert o["flags"] & os.O_ACCMODE == os.O_RDONLY
    assert o["user"] == "cust_alice"
    assert o["gid"] == helpers.user_ids("cust_alice")[1]
    assert o["subject"] is None and o["path2"] is None
    closes = [x for x in recs if x["op"] == "close" and x["ref"] == o["seq"]]
    assert len(closes) == 1, recs
    c = closes[0]
    assert c["uid"] == alice and c["bytes"] == len(data) and c["count"] >= 1
    assert c["path"] == "/calls/c1.txt" and c["seq"] > o["seq"]
    ops = [x["op"] for x in recs]
    assert ops.count("mount") == 2 and ops.count("unmount") == 2
    # Without a policy (the first mount) the level is the policy's default,
    # opens: root's read-only open is recorded, its close is not.
    first = [x for x in recs if x["op"] == "open" and x["uid"] == 0
             and x["path"] == "/calls/c1.txt" and x["flags"] & os.O_ACCMODE == 0]
    assert len(first) == 1
    assert not [x for x in recs if x["op"] == "close" and x["ref"] == first[0]["seq"]]
    assert ops[0] == "mount" and ops[-1] == "unmount"
    # Root's write session: create then a write record with the bytes.
    cr = [x for x in recs if x["op"] == "create" and x["path"] == "/calls/c1.txt"]
    assert len(cr) == 1
    w = [x for x in recs if x["op"] == "write" and x["ref"] == cr[0]["seq"]]
    assert len(w) == 1 and w[0]["bytes"] == len(data)
    # No plaintext name in the database or the journal.
    for f in (store.db, store.path / "audit.journal"):
        if f.exists():
            assert b"c1.txt" not in f.read_bytes()
    verify(store)


def test_query_on_a_mounted_store_sees_what_returned(store, mount_factory):
    """The daemon commits records in batches; `audit log` and `audit verify`
    on a mounted store have it commit first, so what returned is there at
    once (no waiting, unlike a reader of the catalogue alone)."""
    m = mount_factory(store)
    for i in range(8):
        p = m.mnt / f"q{i}"
        p.write_bytes(b"x")
        os.unlink(p)
        recs = log_json(store, "--op", "unlink")
        assert [r["path"] for r in recs] == [f"/q{k}" for k in range(i + 1)]
    out = verify(store).out
    assert "audit chain OK" in out
    assert m.alive()


def test_changes_recorded(store, mount_factory):
    m = mount_factory(store)
    d = m.mnt / "dir"
    d.mkdir()
    (d / "a").write_bytes(b"x")
    os.rename(d / "a", d / "b")
    os.link(d / "b", d / "hard")
    os.symlink("b", d / "sym")
    os.chmod(d / "b", 0o600)
    os.truncate(d / "b", 0)
    os.utime(d / "b", (1000, 2000))
    os.unlink(d / "hard")
    os.unlink(d / "sym")
    os.unlink(d / "b")
    os.rmdir(d)
    (m.mnt / "full").mkdir()
    (m.mnt / "full" / "x").write_bytes(b"")
    with pytest.raises(OSError) as e:
        os.rmdir(m.mnt / "full")
    assert e.value.errno == errno.ENOTEMPTY
    m.stop()
    recs = log_json(store)

    def one(op, path, **kw):
        hits = [x for x in recs if x["op"] == op and x["path"] == path
                and all(x[k] == v for k, v in kw.items())]
        assert len(hits) >= 1, (op, path, kw, [(x["op"], x["path"]) for x in recs])
        return hits[0]

    one("mkdir", "/dir", outcome=0)
    one("create", "/dir/a", outcome=0)
    one("rename", "/dir/a", path2="/dir/b", outcome=0)
    one("link", "/dir/b", path2="/dir/hard", outcome=0)
    one("symlink", "/dir/sym", path2="b", outcome=0)
    # A hard-linked file is named by the name the kernel used last.
    sa = [x for x in recs if x["op"] == "setattr" and x["path"] in ("/dir/b", "/dir/hard")]
    assert [x["detail"] for x in sa] == ["mode=0600", "size=0", "atime=1000 mtime=2000"]
    assert all(x["outcome"] == 0 for x in sa)
    one("unlink", "/dir/hard", outcome=0)
    one("unlink", "/dir/sym", outcome=0)
    one("unlink", "/dir/b", outcome=0)
    one("rmdir", "/dir", outcome=0)
    # A change is recorded before it is made; if it then fails, a second
    # record with the errno refers to the first.
    first = one("rmdir", "/full", outcome=0)
    second = one("rmdir", "/full", outcome=errno.ENOTEMPTY)
    assert second["ref"] == first["seq"] and second["detail"] == "not done"
    verify(store)


POLICY = """\
[/]
list = root @cust_agents
read = root
write = root
create = root
delete = root

[/pub]
list = root @cust_agents
read = root @cust_agents
audit = reads

[/opens]
list = root @cust_agents
read = root @cust_agents
audit = opens

[/quiet]
list = root @cust_agents
read = root @cust_agents
create = root @cust_agents
write = root @cust_agents
audit = none

[/secret]
list = root
read = root
"""


def test_denials_and_levels(store, mount_factory, users):
    m = mount_factory(store)
    for d in ("pub", "opens", "quiet", "secret"):
        (m.mnt / d).mkdir()
        os.chmod(m.mnt / d, 0o777)  # mode bits never decide here
        (m.mnt / d / "f").write_bytes(b"hello " + d.encode())
        os.chmod(m.mnt / d / "f", 0o666)
    apply_policy(store, POLICY)
    m.remount()
    assert try_as("cust_alice", "read", m.mnt / "pub" / "f")[0] == 0
    assert try_as("cust_alice", "read", m.mnt / "opens" / "f")[0] == 0
    assert try_as("cust_alice", "read", m.mnt / "quiet" / "f")[0] == 0
    assert try_as("cust_alice", "write", m.mnt / "quiet" / "g", "changed")[0] == 0
    assert try_as("cust_alice", "read", m.mnt / "secret" / "f")[0] == errno.EACCES
    assert try_as("cust_alice", "list", m.mnt / "secret")[0] == errno.EACCES
    assert try_as("cust_alice", "create", m.mnt / "pub" / "newfile")[0] == errno.EACCES
    assert try_as("cust_alice", "append", m.mnt / "opens" / "f")[0] == errno.EACCES
    m.stop()
    recs = log_json(store)
    alice = uid_of("cust_alice")
    mine = [x for x in recs if x["uid"] == alice]
    by = {(x["op"], x["path"]) for x in mine}
    # reads: open and close; opens: open only; none: nothing for the read,
    # but the write session in the same directory is recorded.
    assert ("open", "/pub/f") in by and ("close", "/pub/f") in by
    assert ("open", "/opens/f") in by and ("close", "/opens/f") not in by
    assert not [x for x in mine if x["path"] == "/quiet/f"]
    assert ("create", "/quiet/g") in by and ("write", "/quiet/g") in by
    # Denials, each with its errno and a detail naming the operation.
    den = [x for x in mine if x["outcome"] == errno.EACCES]
    ops = {(x["op"], x["path"]) for x in den}
    assert ("deny", "/secret/f") in ops  # lookup refused
    assert ("deny", "/secret") in ops  # opendir refused
    assert ("create", "/pub/newfile") in ops
    assert ("open", "/opens/f") in ops  # open for writing refused
    wo = [x for x in den if x["op"] == "open"][0]
    assert wo["flags"] & os.O_ACCMODE == os.O_WRONLY
    assert all("denied by policy" in x["detail"] for x in den)
    # The policy's application (reload when mounted) is recorded.
    assert [x for x in recs if x["op"] == "policy" and x["outcome"] == 0]
    # --denied and --user filters.
    d2 = log_json(store, "--denied", "--user", "cust_alice")
    assert {x["seq"] for x in d2} == {x["seq"] for x in den}
    verify(store)


def test_filters(store, mount_factory, users):
    m = mount_factory(store)
    (m.mnt / "f").write_bytes(b"data")
    os.chmod(m.mnt / "f", 0o644)
    (m.mnt / "g").write_bytes(b"more")
    m.remount()
    assert try_as("cust_alice", "read", m.mnt / "f")[0] == 0
    m.stop()
    recs = log_json(store)
    alice = uid_of("cust_alice")
    assert [x["seq"] for x in log_json(store, "--user", "cust_alice")] == \
        [x["seq"] for x in recs if x["uid"] == alice]
    assert [x["seq"] for x in log_json(store, "--user", str(alice))] == \
        [x["seq"] for x in recs if x["uid"] == alice]
    creates = log_json(store, "--op", "create")
    assert [x["path"] for x in creates] == ["/f", "/g"]
    assert log_json(store, "--op", "open", "--user", "cust_alice")[0]["path"] == "/f"
    assert log_json(store, "--since", "1h") == recs
    assert log_json(store, "--since", "2999-01-01") == []
    assert log_json(store, "--until", "2000-01-01") == []
    assert [x["path"] for x in log_json(store, "--path", "/g")] == \
        [x["path"] for x in recs if x["path"] == "/g"]
    # Nothing in this store belongs to a subject (subjects come with the
    # subjects module): a --subject query finds nothing.
    assert log_json(store, "--subject", "C-10042") == []
    assert log_json(store, "--denied") == []


def test_verify_detects_edit(store, mount_factory):
    m = mount_factory(store)
    for i in range(20):
        (m.mnt / f"f{i}").write_bytes(b"x" * i)
        (m.mnt / f"f{i}").read_bytes()
    os.rename(m.mnt / "f1", m.mnt / "renamed")
    m.stop()
    r = verify(store)
    recs = log_json(store)
    assert len(recs) > 40
    target = recs[len(recs) // 2]["seq"]
    con = sqlite3.connect(store.db)
    con.execute("UPDATE audit SET uid = uid + 1 WHERE seq = ?", (target,))
    con.commit()
    con.close()
    r = verify(store, check=False)
    assert r.returncode == 1
    assert f"record {target}" in r.err


def test_kill9_keeps_open_record(store, mount_factory, users):
    n = int(os.environ.get("CUSTODIAN_AUDIT_CRASH_N", "10"))
    # The writer would commit only after 10 s: every open record below can
    # survive the kill only through the journal.
    opts = ("-o", "allow_other", "-o", "audit_batch_ms=10000")
    m = mount_factory(store, options=opts)
    (m.mnt / "f").write_bytes(b"read me before the crash")
    os.chmod(m.mnt / "f", 0o644)
    script = "import os, sys; print(os.getpid()); open(sys.argv[1], 'rb').read()"
    pids = []
    for _ in range(n):
        r = run_as("cust_alice", [helpers.PYTHON, "-c", script, str(m.mnt / "f")],
                   check=True)
        pids.append(int(r.out.split()[0]))
        # At once: the record may still be only in the journal.
        m.kill(signal.SIGKILL)
        m.proc.wait(timeout=30)
        run(["fusermount3", "-u", "-z", m.mnt])
        m.stop(check=False)
        m = mount_factory(store, mnt=m.mnt, options=opts)  # replays the journal
    m.stop()
    recs = log_json(store)
    opened = {x["pid"] for x in recs if x["op"] == "open" and x["path"] == "/f"
              and x["uid"] == uid_of("cust_alice")}
    assert set(pids) <= opened, (pids, opened)
    assert sum(1 for x in recs if x["op"] == "mount") == n + 1
    verify(store)


def test_mount_options(store, mount_factory, scratch):
    m = mount_factory(store, options=("-o", "allow_other", "-o", "audit_sync=full",
                                      "-o", "audit_batch_ms=5"))
    (m.mnt / "f").write_bytes(b"durable")
    # The writer commits within the batch interval: visible while mounted.
    wait_log(store, lambda rs: any(x["op"] == "create" and x["path"] == "/f" for x in rs))
    # A second daemon on the same store is refused (the journal is locked or
    # the control socket answers), with one line.
    mnt2 = scratch / "mnt2"
    mnt2.mkdir()
    r = run([helpers.CUSTODIANFS, "-f", store.path, mnt2, "--passfile", store.passfile],
            check=False, timeout=60)
    assert r.returncode == 1 and len(r.err.strip().splitlines()) == 1, r.err
    m.stop()
    for bad in ("audit_sync=sometimes", "audit_batch_ms=-3", "audit_syslog=maybe"):
        r = run([helpers.CUSTODIANFS, "-f", store.path, mnt2, "--passfile", store.passfile,
                 "-o", bad], check=False, timeout=60)
        assert r.returncode == 1, (bad, r.err)
        assert "invalid value for -o" in r.err and len(r.err.strip().splitlines()) == 1
        assert not helpers.is_mounted(mnt2)
    verify(store)


def test_read_only_mount_is_audited(store, mount_factory):
    m = mount_factory(store)
    (m.mnt / "f").write_bytes(b"ro")
    m.stop()
    ro = mount_factory(store, options=("-o", "allow_other", "-o", "ro"), mnt=m.mnt)
    assert (ro.mnt / "f").read_bytes() == b"ro"
    ro.stop()
    recs = log_json(store)
    assert [x for x in recs if x["op"] == "open" and x["path"] == "/f"]
    assert "ro " in [x for x in recs if x["op"] == "mount"][-1]["detail"]


def test_admin_events_mounted_and_not(store, mount_factory, scratch):
    # Unmounted: the tools open the audit log themselves.
    apply_policy(store, "[/]\nlist = root\nread = root\nwrite = root\n"
                        "create = root\ndelete = root\n")
    newpass = scratch / "new.pass"
    newpass.write_bytes(b"a second passphrase for the audit test")
    tool("passwd", store.path, "--passfile", store.passfile, "--add",
         "--new-passfile", newpass, "--kdf-ops", "1", "--kdf-mem", "8")
    # Mounted: the daemon holds the journal; they go through control.sock.
    m = mount_factory(store)
    apply_policy(store, "[/]\nlist = root\nread = root\nwrite = root\n"
                        "create = root\ndelete = root\n\n[/x]\nread = root\n")
    tool("passwd", store.path, "--passfile", store.passfile, "--add",
         "--new-passfile", newpass, "--kdf-ops", "1", "--kdf-mem", "8")
    m.stop()
    recs = log_json(store)
    pol = [x for x in recs if x["op"] == "policy"]
    applies = [x for x in pol if x["detail"].startswith("apply: version")]
    assert len(applies) == 2 and all(x["comm"] == "custodian" for x in applies)
    assert all(x["uid"] == 0 and x["outcome"] == 0 for x in applies)
    # The running daemon's reload is recorded after the apply.
    reload = [x for x in pol if x["detail"].startswith("reload:")]
    assert reload and reload[-1]["seq"] > applies[1]["seq"]
    keys = [x for x in recs if x["op"] == "keys"]
    assert len(keys) == 2 and all("passphrase slot" in x["detail"] for x in keys)
    assert all(x["comm"] == "custodian" for x in keys)
    mount_seq = [x["seq"] for x in recs if x["op"] == "mount"][0]
    assert keys[0]["seq"] < mount_seq < keys[1]["seq"]
    verify(store)


SUBJECT_POLICY = """\
[/]
list = root
read = root
write = root
create = root
delete = root

[/customers]
list = root
read = root

[/customers/*]
subject = yes
list = root
read = root
write = root
create = root
delete = root
"""


def test_subject_paths_in_log(store, mount_factory, mksubject):  # noqa: F811
    """Paths inside a subject are sealed under the subject's keyring; `audit
    log` opens them with it, and says (shredded) once the key is gone."""
    make_subject(mksubject, store, "C-7", files={"a.txt": b"hello from C-7\n"},
                 dirs=[], links={})
    apply_policy(store, SUBJECT_POLICY)
    m = mount_factory(store)
    assert (m.mnt / "customers" / "C-7" / "a.txt").read_bytes() == b"hello from C-7\n"
    m.stop()
    opens = [x for x in log_json(store, "--subject", "C-7", "--op", "open")]
    assert opens, log_json(store)
    o = opens[-1]
    assert o["path"] == "/customers/C-7/a.txt"
    assert o["subject"] is not None and o["comm"] and o["outcome"] == 0
    # The path filter works on the decrypted subject paths too.
    assert [x["seq"] for x in log_json(store, "--path", "/customers/C-7")
            if x["op"] == "open"] == [x["seq"] for x in opens]
    # The sealed path does not open with the volume keyring: the subject's
    # key is what the log reader used (so a shred erases it).
    con = sqlite3.connect(store.db)
    sealed = con.execute("SELECT path FROM audit WHERE seq = ?", (o["seq"],)).fetchone()[0]
    con.close()
    assert b"a.txt" not in sealed and b"C-7" not in sealed
    # Table output shows it as well.
    r = tool("audit", "log", store.path, "--passfile", store.passfile, "--op", "open",
             "--subject", "C-7")
    assert "/customers/C-7/a.txt" in r.out
    tool("shred", store.path, "C-7", "--reason", "erasure request", "--yes",
         "--passfile", store.passfile)
    after = [x for x in log_json(store) if x["seq"] == o["seq"]]
    assert after and after[0]["path"] == "(shredded)", after
    verify(store)


def _syslog_listener(path):
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(0.2)
    return s


def test_syslog_forwarding(store, scratch):
    """-o audit_syslog=yes: each record also goes to syslog(3), without
    names.  No syslog daemon here: the daemon runs in a private mount
    namespace whose /dev is a tmpfs with /dev/log a link to a datagram
    socket this test reads."""
    import shutil

    if not shutil.which("unshare"):
        pytest.skip("unshare not installed")
    (scratch / "m").mkdir()
    sock = scratch / "log.sock"
    lst = _syslog_listener(sock)
    script = f"""
set -e
mount -t tmpfs -o mode=755 none /dev
mknod -m 666 /dev/fuse c 10 229
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/zero c 1 5
mknod -m 666 /dev/urandom c 1 9
mknod -m 666 /dev/random c 1 8
ln -s {sock} /dev/log
{helpers.CUSTODIANFS} {store.path} {scratch}/m --passfile {store.passfile} -f \
    -o audit_syslog=yes >{scratch}/fs.log 2>&1 &
pid=$!
for i in $(seq 1 400); do
    grep -q " {scratch}/m " /proc/self/mounts && break
    sleep 0.05
done
chmod 755 {scratch}/m
echo secret-content > {scratch}/m/named-file.txt
cat {scratch}/m/named-file.txt >/dev/null
umount {scratch}/m
wait $pid
"""
    try:
        r = run(["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                check=False, timeout=120 * helpers.SLOW)
        msgs = []
        while True:
            try:
                msgs.append(lst.recv(65536).decode("utf-8", "replace"))
            except OSError:
                break
    finally:
        lst.close()
    assert r.returncode == 0, (r.out, r.err, (scratch / "fs.log").read_text())
    audit = [x for x in msgs if "audit seq=" in x]
    assert audit, msgs
    # LOG_AUTHPRIV | LOG_INFO, ident custodian[pid].
    assert all(x.startswith("<86>") and "custodian[" in x for x in audit), audit
    recs = log_json(store)
    byseq = {x["seq"]: x for x in recs}
    fields = {}
    for x in audit:
        kv = dict(p.split("=", 1) for p in x.split("audit ", 1)[1].split())
        fields[int(kv["seq"])] = kv
    # Every record of the session (from its mount on) was forwarded, with
    # the same fields.
    session = {s for s in byseq if s >= min(fields)}
    assert set(fields) == session, (sorted(fields), sorted(session))
    assert byseq[min(fields)]["op"] == "mount"
    for seq, kv in fields.items():
        rec = byseq[seq]
        assert kv["op"] == rec["op"] and int(kv["outcome"]) == rec["outcome"]
        assert int(kv["uid"]) == rec["uid"] and int(kv["pid"]) == rec["pid"]
        assert kv["subject"] == "-" and rec["subject"] is None
    cat_open = [kv for kv in fields.values() if kv["op"] == "open" and kv["comm"] == "cat"]
    assert cat_open, fields
    # Names never leave in clear.
    assert not any("named-file" in x or "secret-content" in x for x in msgs)
    verify(store)


def test_handle_open_at_unmount_gets_its_record(store, mount_factory):
    """SIGTERM while a file is open for writing: the kernel sends no release
    any more, so the daemon records the write session itself at unmount,
    with the bytes written so far."""
    m = mount_factory(store)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\n"
         "os.write(fd, b'x' * 1000); os.write(fd, b'y' * 234)\n"
         "print('ready', flush=True); time.sleep(60)\n",
         str(m.mnt / "held.txt")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        m.kill(signal.SIGTERM)
        m.proc.wait(timeout=30 * helpers.SLOW)
        m.stop()
    finally:
        holder.kill()
        holder.wait()
    recs = log_json(store)
    creates = [x for x in recs if x["op"] == "create" and x["path"] == "/held.txt"]
    assert len(creates) == 1, recs
    ends = [x for x in recs if x["ref"] == creates[0]["seq"]]
    assert len(ends) == 1, recs
    e = ends[0]
    assert e["op"] == "write" and e["bytes"] == 1234 and e["count"] == 2, e
    assert e["detail"] == "still open at unmount" and e["path"] == "/held.txt"
    ops = [x["op"] for x in recs]
    assert ops.index("write") < len(ops) - 1 - ops[::-1].index("unmount")
    verify(store)
