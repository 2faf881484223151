"""Policy enforcement through the mount, as real users (issue 3).

One store and mount for the module.  The tree is built as root before any
policy exists (modes 0777/0666, so mode bits never decide here), then the
policy below is applied live with `custodian policy apply --yes`: the
running daemon must follow it from the next operation on.  Then, as
cust_alice (cust_agents, supplementary), cust_bob (cust_supervisors) and
cust_carol (cust_records), each permission is tried allowed and denied,
with inheritance, most-specific-wins, primary and supplementary groups,
root (denied unless named), the drop box, traversal, the kernel cache
(user A then user B), the read rate, and live reload with files open.
Each test works in its own part of the tree.
"""

import errno
import os
import time

import pytest

import helpers
from helpers import tool, try_as

POLICY = """\
# the mount root: everyone listed may look around, root may do the rest
[/]
list = root @cust_agents @cust_supervisors @cust_records
read = root
write = root
create = root
delete = root

[/pub]
list = @cust_agents @cust_supervisors @cust_records
read = @cust_agents @cust_supervisors
write = @cust_agents
create = @cust_agents
delete = @cust_records

[/pub/private]
read =

[/pub/vip]
read = @cust_supervisors

[/drop]
create = @cust_alice
list = @cust_supervisors

[/inbox]
list = @cust_records
create = @cust_records

[/secret]
list = @cust_supervisors
read = @cust_supervisors

[/rate]
list = root cust_alice
read = root cust_alice
read_rate = 5/h
"""

FILES = {
    "top.txt": b"top",
    "pub/f.txt": b"public record",
    "pub/cache.txt": b"cached record",
    "pub/append.txt": b"a",
    "pub/owned-alice": b"o",
    "pub/owned-bob": b"o",
    "pub/victim1": b"v",
    "pub/victim2": b"v",
    "pub/move1": b"m",
    "pub/move2": b"m",
    "pub/move3": b"m",
    "pub/private/p.txt": b"private",
    "pub/vip/v.txt": b"vip",
    "pub/a/b/c/deep.txt": b"deep",
    "inbox/existing": b"e",
    "secret/s.txt": b"secret",
    "rate/r.txt": b"rated",
}
DIRS = ["pub/emptydir1", "pub/emptydir2", "drop"]


def apply_policy(store, text, name="policy.ini", check=True):
    f = store.path.parent / name
    f.write_text(text)
    return tool("policy", "apply", store.path, f, "--yes", "--passfile", store.passfile,
                check=check)


@pytest.fixture(scope="module")
def pm(module_mount, module_store, users):
    m = module_mount.mnt
    for d in DIRS:
        (m / d).mkdir(parents=True, exist_ok=True)
    for rel, data in FILES.items():
        p = m / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        os.chmod(p, 0o666)
    for d, _dirs, _files in os.walk(m):
        os.chmod(d, 0o777)
    # chmod needs ownership (mode bits, checked by the kernel first)
    for who in ("alice", "bob"):
        uid, gid, _ = helpers.user_ids(f"cust_{who}")
        os.chown(m / f"pub/owned-{who}", uid, gid)
    # before any policy: mode bits alone, anyone reads a 0666 file
    assert try_as("cust_carol", "read", m / "pub/f.txt") == (0, "public record")
    r = apply_policy(module_store, POLICY)
    assert "running daemon: policy version" in r.out, r.out
    # let the kernel forget what root looked up while building the tree
    # (entries and attributes are cached for 1 s across users)
    time.sleep(1.2)
    return module_mount


def denied(user, op, path, arg=None):
    e, _ = try_as(user, op, path, arg)
    return e == errno.EACCES


def test_policy_applied_live_governs_next_operation(pm):
    # the fixture read pub/f.txt as carol before the apply; now she may not
    assert denied("cust_carol", "read", pm.mnt / "pub/f.txt")


def test_list(pm):
    m = pm.mnt
    e, out = try_as("cust_alice", "list", m / "pub")
    assert e == 0 and "f.txt" in out.split("\n")
    assert try_as("cust_carol", "list", m / "pub")[0] == 0
    assert try_as("cust_bob", "list", m / "drop")[0] == 0
    assert denied("cust_alice", "list", m / "drop")  # create only: no listing
    with pytest.raises(PermissionError):
        os.listdir(m / "pub")  # root is not named in [/pub] list
    assert "pub" in os.listdir(m)  # but is at [/]


def test_read(pm):
    m = pm.mnt
    # alice's right comes from a supplementary group (cust_agents)
    assert try_as("cust_alice", "read", m / "pub/f.txt") == (0, "public record")
    assert try_as("cust_bob", "read", m / "pub/f.txt") == (0, "public record")
    assert denied("cust_carol", "read", m / "pub/f.txt")


def test_write(pm):
    m = pm.mnt
    p = m / "pub/append.txt"
    assert try_as("cust_alice", "append", p, "b")[0] == 0
    assert denied("cust_bob", "append", p, "c")
    assert denied("cust_bob", "write", p, "overwrite")  # O_TRUNC is a write
    assert try_as("cust_alice", "read", p) == (0, "ab")
    # chmod/chown/utimes change the file: write in its directory
    assert try_as("cust_alice", "chmod", m / "pub/owned-alice", "640")[0] == 0
    assert denied("cust_bob", "chmod", m / "pub/owned-bob", "640")
    # (root has no `list` in /pub: ask as a user who may look there)
    assert try_as("cust_alice", "stat", m / "pub/owned-bob") == (0, "666")


def test_create(pm):
    m = pm.mnt
    assert try_as("cust_alice", "create", m / "pub/new-alice")[0] == 0
    assert denied("cust_bob", "create", m / "pub/new-bob")
    assert try_as("cust_alice", "mkdir", m / "pub/dir-alice")[0] == 0
    assert denied("cust_bob", "mkdir", m / "pub/dir-bob")
    assert not (m / "pub/new-bob").exists() and not (m / "pub/dir-bob").exists()


def test_delete(pm):
    m = pm.mnt
    assert denied("cust_alice", "unlink", m / "pub/victim1")
    assert try_as("cust_carol", "unlink", m / "pub/victim1")[0] == 0
    assert denied("cust_alice", "rmdir", m / "pub/emptydir1")
    assert try_as("cust_carol", "rmdir", m / "pub/emptydir2")[0] == 0
    assert try_as("cust_alice", "stat", m / "pub/victim2")[0] == 0
    assert try_as("cust_carol", "stat", m / "pub/victim1")[0] == errno.ENOENT


def test_rename_needs_delete_there_and_create_here(pm):
    m = pm.mnt
    # carol: delete in /pub, create in /inbox
    assert try_as("cust_carol", "rename", m / "pub/move1", m / "inbox/move1")[0] == 0
    # alice has create in /pub but no delete: cannot move within /pub
    assert denied("cust_alice", "rename", m / "pub/move2", m / "pub/move2b")
    # carol has no create in /secret
    assert denied("cust_carol", "rename", m / "pub/move2", m / "secret/move2")
    # replacing an entry writes it: carol has no write in /inbox
    assert denied("cust_carol", "rename", m / "pub/move3", m / "inbox/existing")
    e, out = try_as("cust_carol", "list", m / "inbox")
    assert e == 0 and set(out.split("\n")) == {"move1", "existing"}


def test_inheritance_and_most_specific_wins(pm):
    m = pm.mnt
    assert try_as("cust_alice", "read", m / "pub/a/b/c/deep.txt") == (0, "deep")
    assert denied("cust_alice", "read", m / "pub/private/p.txt")  # read = (nobody)
    assert denied("cust_bob", "read", m / "pub/private/p.txt")
    assert try_as("cust_bob", "read", m / "pub/vip/v.txt") == (0, "vip")
    assert denied("cust_alice", "read", m / "pub/vip/v.txt")
    # keys are independent: list at /pub/vip still comes from [/pub]
    assert try_as("cust_alice", "list", m / "pub/vip")[0] == 0


def test_primary_group_drop_box(pm):
    m = pm.mnt
    # @cust_alice is alice's primary (user) group; create only
    assert try_as("cust_alice", "write", m / "drop/report.txt", "dropped")[0] == 0
    assert denied("cust_bob", "create", m / "drop/bob.txt")
    assert try_as("cust_alice", "stat", m / "drop/report.txt")[0] == 0  # traverse
    assert denied("cust_alice", "read", m / "drop/report.txt")
    assert try_as("cust_bob", "list", m / "drop") == (0, "report.txt")


def test_no_right_no_lookup(pm):
    m = pm.mnt
    # alice holds nothing in /secret: she cannot even learn names there
    assert denied("cust_alice", "stat", m / "secret/s.txt")
    assert denied("cust_alice", "stat", m / "secret/absent")
    assert denied("cust_alice", "list", m / "secret")
    assert try_as("cust_bob", "read", m / "secret/s.txt") == (0, "secret")


def test_root_is_nobody_special(pm):
    m = pm.mnt
    with pytest.raises(PermissionError):
        open(m / "pub/f.txt", "rb")
    with pytest.raises(PermissionError):
        (m / "pub/root-was-here").write_bytes(b"x")
    assert (m / "top.txt").read_bytes() == b"top"  # named in [/]


def test_cache_does_not_carry_a_grant_to_another_user(pm):
    """A then B on one path within the kernel's attr/entry timeout: open
    always reaches the daemon, so B is refused although A's lookup and
    attributes are cached."""
    p = pm.mnt / "pub/cache.txt"
    assert try_as("cust_alice", "read", p) == (0, "cached record")
    assert denied("cust_carol", "read", p)
    assert denied("cust_carol", "read", p)


def test_read_rate_limit(pm):
    p = pm.mnt / "rate/r.txt"
    for i in range(5):
        with open(p, "rb") as f:
            assert f.read() == b"rated", i
    with pytest.raises(PermissionError):
        open(p, "rb")
    # per user: alice has her own budget
    assert try_as("cust_alice", "read", p) == (0, "rated")
    # a denial is not counted, and listing is not reading
    with pytest.raises(PermissionError):
        open(p, "rb")
    assert os.listdir(pm.mnt / "rate") == ["r.txt"]


def test_live_reload_while_files_are_open(pm, module_store):
    m = pm.mnt
    held = open(m / "top.txt", "rb")
    try:
        no_root_read = POLICY.replace("[/]\nlist = root @cust_agents @cust_supervisors "
                                      "@cust_records\nread = root\n",
                                      "[/]\nlist = root @cust_agents @cust_supervisors "
                                      "@cust_records\nread =\n")
        assert no_root_read != POLICY
        r = apply_policy(module_store, no_root_read, "v2.ini")
        assert "running daemon: policy version" in r.out
        with pytest.raises(PermissionError):
            open(m / "top.txt", "rb")
        # a handle opened before keeps working, like after chmod
        assert held.read() == b"top"
        # other rules are unchanged
        assert try_as("cust_alice", "read", m / "pub/f.txt") == (0, "public record")
        apply_policy(module_store, POLICY, "v3.ini")
        assert (m / "top.txt").read_bytes() == b"top"
    finally:
        held.close()


def test_bad_policy_changes_nothing(pm, module_store):
    m = pm.mnt
    r = apply_policy(module_store, POLICY + "\n[/pub]\nread = @cust_carol\n", "bad.ini",
                     check=False)
    assert r.returncode == 1
    assert "duplicate section" in r.err and "not applied" in r.err
    assert denied("cust_carol", "read", m / "pub/f.txt")
    assert try_as("cust_alice", "read", m / "pub/f.txt") == (0, "public record")
    r = apply_policy(module_store, "[/]\nlist = @no_such_group_here\nfoo = bar\n",
                     "bad2.ini", check=False)
    assert r.returncode == 1 and "unknown key 'foo'" in r.err
    assert (m / "top.txt").read_bytes() == b"top"


def test_unlinked_open_file_under_policy(pm):
    # root may create, write and delete at / : a temporary file pattern
    p = pm.mnt / "tmp-root"
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.unlink(p)
        os.pwrite(fd, b"temporary", 0)
        os.ftruncate(fd, 4)  # through the write handle: no path needed
        assert os.fstat(fd).st_size == 4
        assert os.pread(fd, 10, 0) == b"temp"
    finally:
        os.close(fd)
