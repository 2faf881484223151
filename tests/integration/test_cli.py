"""test_cli.py — the admin command's verbs: init, passwd, status, fsck.

Each verb's success path and its error paths, through the real binary
($CUSTODIAN_BUILD/custodian): exit statuses (0 ok, 1 failure, 2 usage), the
one-line "custodian: VERB: reason" errors, the exact output of init, every
passwd mode, status --json, and fsck against stores damaged on purpose.
Tests that need files with encrypted names (fsck of damaged blocks, status of
a mounted store) write them through a real mount (fixture `mounted`).
"""

import fcntl
import hashlib
import json
import os
import re
import select
import subprocess
import termios
import time
from pathlib import Path

import pytest

import helpers
from helpers import PASSPHRASE, WRONG_PASSPHRASE, Store, tool

FAST = ("--kdf-ops", "1", "--kdf-mem", "8")
VERBS = ("init", "passwd", "status", "fsck", "policy")
RECOVERY_RE = re.compile(r"^recovery key: ([0-9a-f]{8}(?:-[0-9a-f]{8}){7})$", re.M)

needs_daemon = pytest.mark.skipif(
    not os.access(helpers.CUSTODIANFS, os.X_OK),
    reason=f"{helpers.CUSTODIANFS} not built")


@pytest.fixture
def cstore(scratch):
    """A fresh store made by `custodian init` (needs only the admin tool)."""
    if not os.access(helpers.CUSTODIAN, os.X_OK):
        pytest.fail(f"{helpers.CUSTODIAN} is not built")
    return Store.create(scratch)


def write(path, data):
    p = Path(path)
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    os.chmod(p, 0o600)
    return p


def one_line_error(r, verb, *fragments):
    """Asserts r failed with exit 1 and exactly one 'custodian: VERB: ...' line."""
    assert r.returncode == 1, (r.returncode, r.out, r.err)
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith(f"custodian: {verb}: "), r.err
    for f in fragments:
        assert f in lines[0], (f, r.err)
    return lines[0]


def recovery_key(store):
    m = RECOVERY_RE.search(store.init_out)
    assert m, store.init_out
    return m.group(1)


def unlocks(store, *how):
    """True if fsck can unlock the store with the given options."""
    r = tool("fsck", store.path, "--quiet", *how, check=False)
    if r.returncode == 0:
        return True
    assert "wrong passphrase or key" in r.err or "has no passphrase slot" in r.err, r.err
    return False


def slots(store):
    r = tool("passwd", store.path, "--list", "--json")
    return [json.loads(line) for line in r.out.splitlines()]


def tree_digest(store):
    """Hash of everything a reader must not change: every name, mode, size,
    mtime and byte under tree/, and the catalogue's content (SQLite's -shm
    and an empty -wal that a read-only open creates are not data)."""
    h = hashlib.sha256()
    for d, dirs, files in sorted(os.walk(store.tree)):
        dirs.sort()
        for name in sorted(files + dirs):
            p = Path(d) / name
            st = p.lstat()
            h.update(f"{p}:{st.st_mode}:{st.st_size}:{st.st_mtime_ns}".encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
            elif p.is_symlink():
                h.update(os.readlink(p).encode())
    for name in ("custodian.db", "custodian.db-wal"):
        p = store.path / name
        h.update(p.read_bytes() if p.exists() else b"")
    return h.hexdigest()


def run_tty(args, answers, timeout=60):
    """Runs custodian with a pseudo-terminal as its controlling terminal and
    answers each passphrase prompt with the next of `answers`.  Returns
    (returncode, stdout, stderr, terminal output)."""
    master, slave = os.openpty()

    def make_ctty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([str(helpers.CUSTODIAN), *map(str, args)], stdin=slave,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True, preexec_fn=make_ctty)
    os.close(slave)
    screen = b""
    answered = 0
    deadline = time.monotonic() + timeout * helpers.SLOW
    prompt = re.compile(rb"(?i)(passphrase[^:\n]*|repeat): ")
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    break
                screen += chunk
            if answered < len(answers) and len(prompt.findall(screen)) > answered:
                os.write(master, answers[answered] + b"\n")
                answered += 1
            if p.poll() is not None and not ready:
                break
        out, err = p.communicate(timeout=timeout * helpers.SLOW)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return p.returncode, out.decode(), err.decode(), screen.decode(errors="replace")


# --- top level ---------------------------------------------------------------

@pytest.mark.parametrize("verb", VERBS)
def test_verb_help(verb):
    for flag in ("--help", "-h"):
        r = tool(verb, flag)
        assert r.out.startswith(f"usage: custodian {verb}"), r.out
        assert r.err == ""
    r = tool("help", verb)
    assert r.out.startswith(f"usage: custodian {verb}"), r.out


@pytest.mark.parametrize("args", [("--help",), ("help",), ("-h",)])
def test_top_level_help(args):
    r = tool(*args)
    assert r.out.startswith("usage: custodian"), r.out
    for verb in VERBS:
        assert f"  {verb} " in r.out
    assert r.err == ""


def test_version():
    r = tool("--version")
    assert re.fullmatch(r"custodian \d+\.\d+\.\d+\n", r.out), r.out


@pytest.mark.parametrize("args", [(), ("frobnicate",), ("--bogus",), ("help", "nope")])
def test_unknown_verb_is_usage_error(args):
    r = tool(*args, check=False)
    assert r.returncode == 2
    assert r.out == ""
    assert "usage: custodian" in r.err


@pytest.mark.parametrize("verb", ("init", "passwd", "status", "fsck"))
def test_usage_errors(verb, scratch):
    r = tool(verb, scratch / "s", "--no-such-option", check=False)
    assert r.returncode == 2
    assert r.err.startswith(f"custodian: {verb}: unknown option --no-such-option\n")
    r = tool(verb, check=False)  # no STORE
    assert r.returncode == 2
    assert r.err.startswith(f"custodian: {verb}: no STORE given\n")
    r = tool(verb, scratch / "a", scratch / "b", check=False)
    assert r.returncode == 2
    assert "too many arguments" in r.err


# Every verb ends its option parsing the same way (cli_getopt_fail and
# cli_operands in tools/cli.c): verb -> (operands, message when too few, an
# option that takes an argument).
OPERANDS = {
    "init": (1, "no STORE given", "--passfile"),
    "passwd": (1, "no STORE given", "--passfile"),
    "status": (1, "no STORE given", None),
    "fsck": (1, "no STORE given", "--passfile"),
    "subjects": (1, "no STORE given", "--apply-ledger"),
    "backup": (1, "no STORE given", "--out"),
    "restore": (1, "no STORE given", "--from"),
    "report": (1, "STORE is required", "--out"),
    "shred": (2, "STORE and SUBJECT are required", "--reason"),
    "export": (2, "STORE and SUBJECT are required", "--out"),
    "hold": (2, "STORE and SUBJECT are required", "--reason"),
    "release": (2, "STORE and SUBJECT are required", "--reason"),
    "restrict": (2, "STORE and SUBJECT are required", "--reason"),
    "unrestrict": (2, "STORE and SUBJECT are required", "--reason"),
    "retention": (2, "report|sweep and STORE are required", "--now"),
}


@pytest.mark.parametrize("verb", sorted(OPERANDS))
def test_option_and_operand_errors_every_verb(verb):
    want, missing, opt = OPERANDS[verb]
    r = tool(verb, "--no-such-option", check=False)
    assert r.returncode == 2 and r.out == ""
    assert r.err.startswith(f"custodian: {verb}: unknown option --no-such-option\n"), r.err
    assert "usage: custodian" in r.err
    if opt:
        r = tool(verb, opt, check=False)
        assert r.returncode == 2 and r.out == ""
        assert r.err.startswith(f"custodian: {verb}: {opt} needs an argument\n"), r.err
        assert "usage: custodian" in r.err
    r = tool(verb, *["x"] * (want - 1), check=False)
    assert r.returncode == 2 and r.out == ""
    assert r.err.startswith(f"custodian: {verb}: {missing}\n"), r.err
    assert "usage: custodian" in r.err
    r = tool(verb, *["x"] * (want + 1), check=False)
    assert r.returncode == 2 and r.out == ""
    assert r.err.startswith(f"custodian: {verb}: too many arguments\n"), r.err
    for flag in ("--help", "-h"):
        r = tool(verb, flag, "--no-such-option")  # help wins, on stdout
        assert r.out.startswith("usage: custodian") and r.err == ""


# --- init ----------------------------------------------------------------------

def test_init_output_and_layout(cstore):
    out = cstore.init_out.splitlines()
    assert out[0] == f"created store {cstore.path}"
    assert RECOVERY_RE.fullmatch(out[1])
    assert "recovery key" in out[2] and "once" in out[2]
    assert len(out) == 3
    assert cstore.db.is_file() and cstore.tree.is_dir()
    # Two slots: the passphrase and the recovery key.
    assert sorted(s["kind"] for s in slots(cstore)) == ["passphrase", "recovery"]
    assert unlocks(cstore, "--passfile", cstore.passfile)


def test_init_json(scratch):
    pf = write(scratch / "pass", PASSPHRASE)
    r = tool("init", scratch / "s", "--passfile", pf, *FAST, "--json")
    obj = json.loads(r.out)
    assert set(obj) == {"store", "recovery_key"}
    assert obj["store"] == str(scratch / "s")
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){7}", obj["recovery_key"])
    rf = write(scratch / "rk", obj["recovery_key"] + "\n")
    assert unlocks(Store(scratch / "s", pf), "--recovery-file", rf)


def test_init_twice_refused(cstore):
    before = tree_digest(cstore)
    r = tool("init", cstore.path, "--passfile", cstore.passfile, *FAST, check=False)
    line = one_line_error(r, "init")
    assert line == f"custodian: init: {cstore.path}: a store already exists there"
    assert r.out == ""
    assert tree_digest(cstore) == before
    assert unlocks(cstore, "--passfile", cstore.passfile)


def test_init_into_nonempty_dir_refused(scratch):
    d = scratch / "full"
    d.mkdir()
    write(d / "precious.txt", "keep me")
    pf = write(scratch / "pass", PASSPHRASE)
    r = tool("init", d, "--passfile", pf, *FAST, check=False)
    assert one_line_error(r, "init") == f"custodian: init: {d}: directory is not empty"
    assert sorted(os.listdir(d)) == ["precious.txt"]


def test_init_into_empty_existing_dir(scratch):
    d = scratch / "empty"
    d.mkdir()
    pf = write(scratch / "pass", PASSPHRASE)
    r = tool("init", d, "--passfile", pf, *FAST)
    assert r.out.startswith(f"created store {d}\n")
    assert (d / "custodian.db").is_file()


def test_init_missing_passfile(scratch):
    r = tool("init", scratch / "s", "--passfile", scratch / "nope", *FAST, check=False)
    one_line_error(r, "init", str(scratch / "nope"), "No such file")
    assert not (scratch / "s").exists()


def test_init_missing_parent(scratch):
    pf = write(scratch / "pass", PASSPHRASE)
    r = tool("init", scratch / "no" / "s", "--passfile", pf, *FAST, check=False)
    one_line_error(r, "init", "No such file or directory")


def test_init_empty_passfile(scratch):
    pf = write(scratch / "pass", "")
    r = tool("init", scratch / "s", "--passfile", pf, *FAST, check=False)
    one_line_error(r, "init", "empty")
    assert not (scratch / "s").exists()


@pytest.mark.parametrize("opt,val", [("--kdf-ops", "0"), ("--kdf-ops", "x"),
                                     ("--kdf-mem", "0"), ("--kdf-mem", "-5")])
def test_init_bad_kdf(scratch, opt, val):
    pf = write(scratch / "pass", PASSPHRASE)
    r = tool("init", scratch / "s", "--passfile", pf, opt, val, check=False)
    assert r.returncode == 2
    assert r.err.startswith(f"custodian: init: {opt}: ")
    assert not (scratch / "s").exists()


def test_init_without_terminal(scratch):
    r = tool("init", scratch / "s", *FAST, check=False, start_new_session=True)
    assert one_line_error(r, "init") == \
        "custodian: init: no passphrase source (use --passfile)"
    assert not (scratch / "s").exists()


def test_init_asks_twice_on_terminal(scratch):
    rc, out, err, screen = run_tty(["init", scratch / "s", *FAST], [b"tty pass", b"tty pass"])
    assert rc == 0, (out, err, screen)
    assert out.startswith(f"created store {scratch / 's'}\n")
    assert len(re.findall(r"(?i)passphrase[^:\n]*: |repeat: ", screen)) == 2, screen
    assert "tty pass" not in screen  # echo was off
    pf = write(scratch / "pass", "tty pass")
    assert unlocks(Store(scratch / "s", pf), "--passfile", pf)


def test_init_terminal_mismatch(scratch):
    rc, out, err, _ = run_tty(["init", scratch / "s", *FAST], [b"one", b"two"])
    assert rc == 1
    assert err.strip() == "custodian: init: the passphrases do not match (or are empty)"
    assert not (scratch / "s").exists()


# --- unlocking -------------------------------------------------------------------

@pytest.mark.parametrize("verb", ("fsck", "passwd"))
def test_wrong_passphrase(cstore, verb):
    bad = write(cstore.path.parent / "bad", WRONG_PASSPHRASE)
    before = tree_digest(cstore)
    r = tool(verb, cstore.path, "--passfile", bad, check=False)
    assert one_line_error(r, verb) == \
        f"custodian: {verb}: {cstore.path}: wrong passphrase or key"
    assert r.out == ""
    assert tree_digest(cstore) == before


def test_unlock_sources(cstore, scratch):
    assert unlocks(cstore, "--extpass", f"cat {cstore.passfile}")
    assert not unlocks(cstore, "--extpass", "echo wrong")
    r = tool("fsck", cstore.path, "--extpass", "false", check=False)
    one_line_error(r, "fsck", "--extpass", "command failed")
    rf = write(scratch / "rk", recovery_key(cstore))
    assert unlocks(cstore, "--recovery-file", rf)
    # dashes and case are the tool's, but a different key is refused
    other = write(scratch / "rk2", "0" * 8 + recovery_key(cstore)[8:])
    assert not unlocks(cstore, "--recovery-file", other)
    r = tool("fsck", cstore.path, "--recovery-file", write(scratch / "junk", "xyz"),
             check=False)
    one_line_error(r, "fsck", "recovery key")
    r = tool("fsck", cstore.path, "--passfile", cstore.passfile, "--extpass", "true",
             check=False)
    one_line_error(r, "fsck", "only one of")
    r = tool("fsck", cstore.path, check=False, start_new_session=True)
    assert one_line_error(r, "fsck") == \
        "custodian: fsck: no passphrase source (use --passfile)"


def test_not_a_store(scratch):
    (scratch / "empty").mkdir()
    for verb in ("status", "fsck"):
        r = tool(verb, scratch / "empty", "--passfile", "/dev/null", check=False) \
            if verb == "fsck" else tool(verb, scratch / "empty", check=False)
        assert one_line_error(r, verb) == \
            f"custodian: {verb}: {scratch / 'empty'}: not a custodian store"
    r = tool("passwd", scratch / "missing", "--list", check=False)
    one_line_error(r, "passwd", "not a custodian store")


# --- passwd ----------------------------------------------------------------------

def test_passwd_change(cstore, scratch):
    old_ids = {s["id"] for s in slots(cstore) if s["kind"] == "passphrase"}
    new = write(scratch / "new", "the new passphrase")
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile,
             "--new-passfile", new, *FAST)
    added = int(re.search(r"^added passphrase slot (\d+)$", r.out, re.M).group(1))
    removed = int(re.search(r"^removed passphrase slot (\d+)$", r.out, re.M).group(1))
    assert removed in old_ids and added not in old_ids
    assert not unlocks(cstore, "--passfile", cstore.passfile)
    assert unlocks(cstore, "--passfile", new)
    kinds = sorted(s["kind"] for s in slots(cstore))
    assert kinds == ["passphrase", "recovery"]
    # the recovery key is untouched
    assert unlocks(cstore, "--recovery-file", write(scratch / "rk", recovery_key(cstore)))


def test_passwd_change_json(cstore, scratch):
    new = write(scratch / "new", "another")
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile,
             "--new-passfile", new, *FAST, "--json")
    obj = json.loads(r.out)
    assert obj["added_slot"] > 0 and obj["removed_slot"] > 0
    assert obj["added_slot"] != obj["removed_slot"]


def test_passwd_change_on_terminal(cstore):
    rc, out, err, screen = run_tty(
        ["passwd", cstore.path, *FAST],
        [PASSPHRASE, b"typed at the terminal", b"typed at the terminal"])
    assert rc == 0, (out, err, screen)
    assert "removed passphrase slot" in out
    assert unlocks(cstore, "--passfile",
                   write(cstore.path.parent / "t", "typed at the terminal"))
    assert not unlocks(cstore, "--passfile", cstore.passfile)


def test_passwd_change_with_bad_new_passfile_keeps_old(cstore, scratch):
    before = slots(cstore)
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile,
             "--new-passfile", scratch / "missing", *FAST, check=False)
    one_line_error(r, "passwd", "No such file")
    assert slots(cstore) == before
    assert unlocks(cstore, "--passfile", cstore.passfile)


def test_passwd_recovery_replaces_forgotten_passphrase(cstore, scratch):
    rf = write(scratch / "rk", recovery_key(cstore) + "\n")
    new = write(scratch / "new", "remembered this time")
    r = tool("passwd", cstore.path, "--recovery-file", rf, "--new-passfile", new, *FAST)
    assert re.search(r"^added passphrase slot \d+$", r.out, re.M)
    assert "removed" not in r.out
    old_id = [s["id"] for s in slots(cstore)
              if s["kind"] == "passphrase"][0]
    assert f"passphrase slot(s) {old_id} still open the store" in r.out
    assert unlocks(cstore, "--passfile", new)
    # the administrator removes the forgotten one as told
    tool("passwd", cstore.path, "--passfile", new, "--remove", str(old_id))
    assert not unlocks(cstore, "--passfile", cstore.passfile)
    assert unlocks(cstore, "--passfile", new)
    assert unlocks(cstore, "--recovery-file", rf)


def test_passwd_wrong_recovery_key(cstore, scratch):
    key = recovery_key(cstore)
    flipped = ("1" if key[0] != "1" else "2") + key[1:]
    r = tool("passwd", cstore.path, "--recovery-file", write(scratch / "rk", flipped),
             "--new-passfile", write(scratch / "new", "x"), *FAST, check=False)
    one_line_error(r, "passwd", "wrong passphrase or key")
    assert len(slots(cstore)) == 2


def test_passwd_add_keeps_old(cstore, scratch):
    second = write(scratch / "second", "a second passphrase")
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile, "--add",
             "--new-passfile", second, *FAST)
    assert re.fullmatch(r"added passphrase slot \d+\n", r.out)
    assert unlocks(cstore, "--passfile", cstore.passfile)
    assert unlocks(cstore, "--passfile", second)
    assert sorted(s["kind"] for s in slots(cstore)) == \
        ["passphrase", "passphrase", "recovery"]


def test_passwd_keyfile(cstore, scratch):
    kf = write(scratch / "key", os.urandom(64))
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile, "--add-keyfile", kf)
    assert re.fullmatch(r"added keyfile slot \d+\n", r.out)
    assert "keyfile" in [s["kind"] for s in slots(cstore)]
    assert unlocks(cstore, "--keyfile", kf)
    assert not unlocks(cstore, "--keyfile", write(scratch / "other", os.urandom(64)))
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile,
             "--add-keyfile", scratch / "missing", check=False)
    one_line_error(r, "passwd", "No such file")


def test_passwd_list(cstore):
    r = tool("passwd", cstore.path, "--list")
    lines = r.out.splitlines()
    assert lines[0].split() == ["ID", "KIND", "LABEL", "CREATED"]
    assert len(lines) == 3
    kinds = sorted(line.split()[1] for line in lines[1:])
    assert kinds == ["passphrase", "recovery"]
    for line in lines[1:]:
        assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", line), line
    js = slots(cstore)
    assert len(js) == 2
    for s in js:
        assert set(s) == {"id", "kind", "label", "created"}
        assert isinstance(s["id"], int)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["created"])


def test_passwd_list_needs_no_unlock(cstore):
    r = tool("passwd", cstore.path, "--list", check=False, start_new_session=True)
    assert r.returncode == 0 and r.err == ""


def test_passwd_remove_and_last_slot_refused(cstore, scratch):
    rf = write(scratch / "rk", recovery_key(cstore))
    ids = {s["kind"]: s["id"] for s in slots(cstore)}
    r = tool("passwd", cstore.path, "--recovery-file", rf, "--remove",
             str(ids["passphrase"]))
    assert r.out == f"removed slot {ids['passphrase']}\n"
    assert not unlocks(cstore, "--passfile", cstore.passfile)
    r = tool("passwd", cstore.path, "--recovery-file", rf, "--remove",
             str(ids["recovery"]), check=False)
    one_line_error(r, "passwd", f"slot {ids['recovery']} is the last slot")
    assert [s["kind"] for s in slots(cstore)] == ["recovery"]
    assert unlocks(cstore, "--recovery-file", rf)


def test_passwd_remove_unknown_slot(cstore):
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile, "--remove", "999",
             check=False)
    one_line_error(r, "passwd", "no slot 999")
    r = tool("passwd", cstore.path, "--passfile", cstore.passfile, "--remove", "abc",
             check=False)
    assert r.returncode == 2


def test_passwd_conflicting_modes(cstore):
    r = tool("passwd", cstore.path, "--list", "--add", check=False)
    assert r.returncode == 2
    assert "only one of" in r.err


# --- status --------------------------------------------------------------------

def test_status_json(cstore):
    r = tool("status", cstore.path, "--json")
    s = json.loads(r.out)
    assert s["store"] == str(cstore.path)
    assert s["path"] == os.path.realpath(cstore.path)
    assert re.fullmatch(r"[0-9a-f]{32}", s["id"])
    assert s["format"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s["created"])
    assert s["slots"] == {"passphrase": 1, "recovery": 1, "keyfile": 0}
    assert s["mounted"] is False and s["mountpoint"] is None
    assert s["files"] == 0 and s["bytes"] == 0 and s["directories"] == 0
    assert s["database_bytes"] >= cstore.db.stat().st_size > 0
    # the id is stable
    assert json.loads(tool("status", cstore.path, "--json").out)["id"] == s["id"]


def test_status_text(cstore):
    r = tool("status", cstore.path, check=False, start_new_session=True)
    assert r.returncode == 0, r.err
    assert f"store:       {os.path.realpath(cstore.path)}\n" in r.out
    assert "key slots:   1 passphrase, 1 recovery\n" in r.out
    assert "mounted:     no\n" in r.out


def test_status_counts_ciphertext(cstore):
    # Counted without keys: any regular file below tree/ except reserved ones.
    write(cstore.tree / "AAAAfake", b"x" * 1000)
    (cstore.tree / "BBBBdir").mkdir()
    write(cstore.tree / "BBBBdir" / "CCCC", b"y" * 24)
    write(cstore.tree / "BBBBdir" / ".iv", b"z" * 16)
    s = json.loads(tool("status", cstore.path, "--json").out)
    assert (s["files"], s["bytes"], s["directories"]) == (2, 1024, 1)


@needs_daemon
def test_status_mounted(mounted):
    (mounted.mnt / "f.txt").write_bytes(b"hello" * 1000)
    s = json.loads(tool("status", mounted.store.path, "--json").out)
    assert s["mounted"] is True
    assert s["mountpoint"] == os.path.realpath(mounted.mnt)
    assert s["files"] == 1
    assert s["bytes"] == helpers.cipher_size(5000)
    r = tool("status", mounted.store.path)
    assert f"mounted:     yes, on {os.path.realpath(mounted.mnt)}\n" in r.out
    mounted.stop()
    assert json.loads(tool("status", mounted.store.path, "--json").out)["mounted"] is False


# --- fsck ----------------------------------------------------------------------

def fsck(store, *args, check=False):
    return tool("fsck", store.path, "--passfile", store.passfile, *args, check=check)


def test_fsck_clean_empty_store(cstore):
    r = fsck(cstore)
    assert r.returncode == 0, r.err
    assert r.out == "0 files, 1 directories checked, 0 problems\n"
    r = fsck(cstore, "--json")
    assert r.returncode == 0
    assert json.loads(r.out) == {"type": "summary", "files": 0, "directories": 1,
                                 "problems": 0}
    r = fsck(cstore, "--quiet")
    assert r.returncode == 0 and r.out == ""


def test_fsck_missing_root_iv(cstore):
    os.unlink(cstore.tree / ".iv")
    r = fsck(cstore)
    assert r.returncode == 1
    assert "damaged: /: directory name IV missing or damaged\n" in r.out
    assert r.out.endswith(", 1 problems\n")


def test_fsck_undecryptable_names(cstore):
    write(cstore.tree / "bm90LWEtcmVhbC1uYW1lLWF0LWFsbA", b"")
    (cstore.tree / "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY").mkdir()
    r = fsck(cstore, "--json")
    assert r.returncode == 1
    objs = [json.loads(line) for line in r.out.splitlines()]
    probs = [o for o in objs if o["type"] == "problem"]
    assert len(probs) == 2
    assert {p["part"] for p in probs} == {"name"}
    assert {p["reason"] for p in probs} == {"undecryptable name"}
    assert {Path(p["backing"]).name for p in probs} == \
        {"bm90LWEtcmVhbC1uYW1lLWF0LWFsbA", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"}
    assert objs[-1] == {"type": "summary", "files": 0, "directories": 1, "problems": 2}
    r = fsck(cstore, "--quiet")
    assert r.returncode == 1
    assert r.out.count("undecryptable name") == 2
    assert "problems" not in r.out


def test_fsck_wrong_passphrase_is_not_a_finding(cstore):
    r = tool("fsck", cstore.path, "--passfile",
             write(cstore.path.parent / "bad", WRONG_PASSPHRASE), check=False)
    one_line_error(r, "fsck", "wrong passphrase or key")


@pytest.fixture
def populated(mounted):
    """A store with /docs/a.bin (3 blocks + tail), /docs/b.txt, /e (empty),
    /docs/sub/c.txt, a symlink /link, written through the daemon and then
    unmounted.  Returns (store, {plain path: backing path})."""
    m = mounted.mnt
    (m / "docs" / "sub").mkdir(parents=True)
    (m / "docs" / "a.bin").write_bytes(os.urandom(3 * 4096 + 100))
    (m / "docs" / "b.txt").write_bytes(b"short record\n")
    (m / "docs" / "sub" / "c.txt").write_bytes(b"c" * 5000)
    (m / "e").write_bytes(b"")
    os.symlink("docs/b.txt", m / "link")
    # Map plain paths to backing files by inode (stable, from the backing files).
    plain = {}
    for d, _dirs, files in os.walk(m):
        for f in files:
            p = Path(d) / f
            plain[os.lstat(p).st_ino] = "/" + str(p.relative_to(m))
    mounted.stop()
    backing = {}
    for d, _dirs, files in os.walk(mounted.store.tree):
        for f in files:
            p = Path(d) / f
            ino = os.lstat(p).st_ino
            if ino in plain:
                backing[plain[ino]] = p
    assert set(backing) == {"/docs/a.bin", "/docs/b.txt", "/docs/sub/c.txt", "/e",
                            "/link"}, backing
    return mounted.store, backing


@needs_daemon
def test_fsck_clean_populated(populated):
    store, _ = populated
    before = tree_digest(store)
    r = fsck(store)
    assert r.returncode == 0, r.out + r.err
    assert r.out == "5 files, 3 directories checked, 0 problems\n"
    assert tree_digest(store) == before  # read-only


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


@needs_daemon
def test_fsck_flipped_block(populated):
    store, backing = populated
    flip(backing["/docs/a.bin"], helpers.block_offset(1) + 100)
    before = tree_digest(store)
    r = fsck(store)
    assert r.returncode == 1
    assert r.out.splitlines() == [
        "damaged: /docs/a.bin: block 1: authentication failed",
        "5 files, 3 directories checked, 1 problems",
    ]
    assert tree_digest(store) == before
    r = fsck(store, "--json")
    probs = [json.loads(x) for x in r.out.splitlines()][:-1]
    assert probs == [{"type": "problem", "path": "/docs/a.bin",
                      "backing": str(store.path / os.path.relpath(backing["/docs/a.bin"],
                                                                  store.path)),
                      "part": "block", "block": 1,
                      "reason": "authentication failed"}]


@needs_daemon
def test_fsck_flipped_header_and_last_block(populated):
    store, backing = populated
    flip(backing["/docs/sub/c.txt"], 50)  # birth time: header MAC fails
    size = backing["/docs/a.bin"].stat().st_size
    flip(backing["/docs/a.bin"], size - 1)  # tag of the short last block
    r = fsck(store)
    assert r.returncode == 1
    assert "damaged: /docs/sub/c.txt: header: authentication failed\n" in r.out
    assert "damaged: /docs/a.bin: block 3: authentication failed\n" in r.out
    assert r.out.endswith(", 2 problems\n")


@needs_daemon
def test_fsck_impossible_size(populated):
    store, backing = populated
    p = backing["/docs/b.txt"]
    os.truncate(p, helpers.HEADER_BYTES + 20)  # 1..40 bytes of a block: impossible
    r = fsck(store)
    assert r.returncode == 1
    assert f"damaged: /docs/b.txt: impossible size {helpers.HEADER_BYTES + 20} bytes\n" \
        in r.out


@needs_daemon
def test_fsck_damaged_symlink_and_name(populated):
    store, backing = populated
    link = backing["/link"]
    target = os.readlink(link)
    os.unlink(link)
    os.symlink(("A" if target[0] != "A" else "B") + target[1:], link)
    sub = backing["/docs/sub/c.txt"].parent
    os.unlink(sub / ".iv")
    r = fsck(store)
    assert r.returncode == 1
    assert "damaged: /link: symlink target does not decrypt\n" in r.out
    assert "damaged: /docs/sub: directory name IV missing or damaged\n" in r.out
    assert r.out.endswith(", 2 problems\n")


def test_keys_is_passwd(cstore):
    """DESIGN's `passwd`/`keys`: the same verb under both names."""
    a = tool("passwd", cstore.path, "--list", "--json")
    b = tool("keys", cstore.path, "--list", "--json")
    rows = [json.loads(line) for line in a.out.splitlines()]
    assert rows and rows == [json.loads(line) for line in b.out.splitlines()]
    assert "keys" in tool("--help").out
