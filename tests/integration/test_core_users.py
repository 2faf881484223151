"""Unprivileged users through an allow_other mount (issue 2).

The mount uses default_permissions, so the kernel enforces mode bits,
ownership and the sticky bit for the real callers; files a user creates
belong to that user.  Users: cust_alice (agents), cust_bob (supervisors),
cust_carol (records), see conftest.py.
"""

import errno
import os
import stat

import pytest

from helpers import try_as


@pytest.fixture(scope="module")
def shared(module_mount, users):
    d = module_mount.mnt / "shared"
    d.mkdir()
    os.chmod(d, 0o1777)
    return d


def test_mode_bits_enforced_between_users(shared, users):
    f = shared / "bob-only"
    assert try_as("cust_bob", "create", f, "600") == (0, "")
    assert try_as("cust_bob", "append", f, "bob's note")[0] == 0
    assert try_as("cust_bob", "read", f) == (0, "bob's note")
    assert try_as("cust_alice", "read", f)[0] == errno.EACCES
    assert try_as("cust_alice", "append", f)[0] == errno.EACCES
    assert try_as("cust_alice", "chmod", f, "644")[0] == errno.EPERM
    # sticky directory: alice may not remove or rename bob's file
    assert try_as("cust_alice", "unlink", f)[0] == errno.EPERM
    assert try_as("cust_alice", "rename", f, shared / "stolen")[0] == errno.EPERM
    assert f.read_bytes() == b"bob's note"  # root is not restricted by mode bits
    assert try_as("cust_bob", "unlink", f)[0] == 0


def test_files_created_by_a_user_belong_to_it(shared, users):
    alice = users["cust_alice"]
    f = shared / "alice-made"
    assert try_as("cust_alice", "create", f, "664")[0] == 0
    st = f.stat()
    assert (st.st_uid, st.st_gid) == (alice.pw_uid, alice.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o644  # umask 022 applied
    d = shared / "alice-dir"
    assert try_as("cust_alice", "mkdir", d)[0] == 0
    assert (d.stat().st_uid, d.stat().st_gid) == (alice.pw_uid, alice.pw_gid)
    assert try_as("cust_alice", "write", d / "inner", "x")[0] == 0
    assert (d / "inner").stat().st_uid == alice.pw_uid
    # alice's 0755 dir: bob can list but not create
    assert try_as("cust_bob", "list", d) == (0, "inner")
    assert try_as("cust_bob", "create", d / "bobs")[0] == errno.EACCES


def test_group_permissions(shared, users):
    import grp
    records = grp.getgrnam("cust_records").gr_gid
    bob = users["cust_bob"]
    f = shared / "for-records"
    f.write_bytes(b"group readable")
    os.chown(f, bob.pw_uid, records)
    os.chmod(f, 0o640)
    assert try_as("cust_carol", "read", f) == (0, "group readable")
    assert try_as("cust_carol", "append", f)[0] == errno.EACCES
    assert try_as("cust_alice", "read", f)[0] == errno.EACCES
    assert try_as("cust_bob", "read", f)[0] == 0


def test_directory_permissions(shared, users):
    d = shared / "root-private"
    d.mkdir()
    (d / "inside").write_bytes(b"x")
    os.chmod(d, 0o700)
    assert try_as("cust_alice", "list", d)[0] == errno.EACCES
    assert try_as("cust_alice", "stat", d / "inside")[0] == errno.EACCES
    assert try_as("cust_alice", "create", d / "new")[0] == errno.EACCES
    os.chmod(d, 0o711)  # traverse but not list
    assert try_as("cust_alice", "list", d)[0] == errno.EACCES
    assert try_as("cust_alice", "stat", d / "inside")[0] == 0
    assert try_as("cust_alice", "read", d / "inside")[0] == 0  # file is 0644
    assert try_as("cust_alice", "unlink", d / "inside")[0] == errno.EACCES
