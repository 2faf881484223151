"""The policy at mount and the daemon's control channel (issue 3).

- a policy row edited in the database: the mount is refused with one line,
  and a running daemon refuses to reload it (the old policy stays);
- STORE/control.sock: 0600, removed at unmount, a stale one left by a
  killed daemon does not block the next mount, a second daemon on a
  mounted store is refused, only root is answered;
- allow_other is the default for root (-o noallow_other turns it off);
- a store with no policy is governed by mode bits alone.
"""

import errno
import os
import socket
import sqlite3
import stat
import subprocess

import pytest

import helpers
from helpers import tool, try_as

POLICY = """\
[/]
list = root @cust_agents
read = root @cust_agents
write = root
create = root
delete = root
"""


def apply_policy(store, text, name="policy.ini", check=True):
    f = store.path.parent / name
    f.write_text(text)
    return tool("policy", "apply", store.path, f, "--yes", "--passfile", store.passfile,
                check=check)


def control(store, request, timeout=10):
    """One request on STORE/control.sock -> reply text (b"" on EOF).  The
    socket is addressed through /proc/self/fd so long paths fit."""
    dfd = os.open(store.path, os.O_PATH | os.O_DIRECTORY)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.settimeout(timeout)
        s.connect(f"/proc/self/fd/{dfd}/control.sock")
        s.send(request.encode())
        return s.recv(4096).decode()
    finally:
        s.close()
        os.close(dfd)


def tamper_newest_policy(store):
    db = sqlite3.connect(store.db)
    try:
        db.execute("UPDATE policies SET text = replace(text, 'write = root', "
                   "'write = root @cust_agents') WHERE version = "
                   "(SELECT max(version) FROM policies)")
        db.commit()
        assert db.total_changes == 1
    finally:
        db.close()


def run_daemon(store, mnt, *extra):
    """custodianfs in the foreground, expected to fail before mounting."""
    r = helpers.run([helpers.CUSTODIANFS, store.path, mnt, "--passfile", store.passfile,
                     "-f", *extra], check=False, timeout=30)
    assert not helpers.is_mounted(mnt)
    return r


def test_tampered_policy_refused_live_and_at_mount(store, mount_factory, users):
    m = mount_factory(store)
    (m.mnt / "f").write_bytes(b"data")
    os.chmod(m.mnt / "f", 0o666)
    apply_policy(store, POLICY)
    assert try_as("cust_alice", "read", m.mnt / "f") == (0, "data")
    assert try_as("cust_alice", "append", m.mnt / "f", "x")[0] == errno.EACCES
    tamper_newest_policy(store)
    reply = control(store, "policy-reload")
    assert reply.startswith(f"ERR {errno.EBADMSG} "), reply
    assert "failed authentication" in reply and "stays in force" in reply
    # the version in force is the one loaded before the edit
    assert try_as("cust_alice", "append", m.mnt / "f", "x")[0] == errno.EACCES
    assert (m.mnt / "f").read_bytes() == b"data"
    m.stop()
    r = run_daemon(store, m.mnt)
    assert r.returncode == 1
    assert r.err.strip().splitlines() == [
        f"custodianfs: {store.path}: stored policy failed authentication"], r.err
    # apply replaces the edited version; the store mounts again
    r = apply_policy(store, POLICY + "\n[/sub]\nlist = cust_bob\n", "v2.ini")
    assert "fails authentication" in r.err
    m.start()
    assert try_as("cust_alice", "read", m.mnt / "f") == (0, "data")


def test_control_socket_lifecycle(store, mount_factory, scratch):
    sock = store.path / "control.sock"
    m = mount_factory(store)
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and st.st_mode & 0o777 == 0o600 and st.st_uid == 0
    assert control(store, "no-such-verb").startswith("ERR ")
    reply = control(store, "policy-reload")
    assert reply == "OK no policy stored: mode bits alone", reply
    # a second daemon on a mounted store is refused
    other = scratch / "other"
    other.mkdir()
    r = run_daemon(store, other)
    assert r.returncode == 1 and "already mounted" in r.err, r.err
    m.stop()
    assert not os.path.lexists(sock)
    # a daemon killed with SIGKILL leaves its socket; the next mount works
    m.start()
    m.kill(9)
    m.stop(check=False)
    assert os.path.lexists(sock)
    m.start()
    assert control(store, "policy-reload").startswith("OK")
    m.stop()
    assert not os.path.lexists(sock)


def test_control_answers_root_only(store, mount_factory, users):
    mount_factory(store)
    os.chmod(store.path, 0o755)
    os.chmod(store.path / "control.sock", 0o666)  # only the uid check is left
    code = ("import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "s.connect(sys.argv[1]); s.send(b'policy-reload')\n"
            "sys.stdout.write(s.recv(4096).decode())\n")
    r = helpers.run_as("cust_alice", [helpers.PYTHON, "-c", code,
                                      str(store.path / "control.sock")])
    assert r.returncode == 0, r.err
    assert r.out.startswith(f"ERR {errno.EPERM} "), r.out


def test_apply_without_daemon_and_tool_notice(store, mount_factory, users):
    r = apply_policy(store, POLICY)  # nothing mounted: nothing to notify
    assert "running daemon" not in r.out and r.returncode == 0
    m = mount_factory(store, open_root=False)
    os.chmod(m.mnt, 0o755)  # root has write in / (allowed by the policy)
    (m.mnt / "g").write_bytes(b"g")
    r = apply_policy(store, POLICY)  # unchanged text: the daemon is told anyway
    assert "policy unchanged" in r.out and "already in force" in r.out


def test_allow_other_is_default_for_root(store, mount_factory, users):
    m = mount_factory(store, options=())
    assert "allow_other" in helpers.mount_entry(m.mnt)[3].split(",")
    (m.mnt / "x").write_bytes(b"x")
    assert try_as("cust_alice", "read", m.mnt / "x") == (0, "x")
    m.stop()
    m2 = mount_factory(store, options=("-o", "noallow_other"), mnt=m.mnt)
    assert "allow_other" not in helpers.mount_entry(m2.mnt)[3].split(",")
    assert try_as("cust_alice", "read", m2.mnt / "x")[0] == errno.EACCES
    assert (m2.mnt / "x").read_bytes() == b"x"


def test_no_policy_means_mode_bits_alone(mounted, users):
    p = mounted.mnt / "m"
    p.write_bytes(b"mode")
    os.chmod(p, 0o644)
    assert try_as("cust_carol", "read", p) == (0, "mode")
    assert try_as("cust_carol", "append", p, "x")[0] == errno.EACCES
    os.chmod(p, 0o600)
    assert try_as("cust_carol", "read", p)[0] == errno.EACCES
