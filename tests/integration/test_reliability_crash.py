"""Crash safety: kill -9 the daemon while several users write (issue 7).

Three writer processes — root, cust_alice and cust_bob, each in its own
directory of the mount — create, rewrite, rename (also over an existing
file) and delete files of deterministic content, fsyncing file and
directory, and log every step to a manifest outside the mount: an intent
line before the operation, a done line after it returned (see
test_reliability_util.crash_writer).  At a random moment the daemon is
killed with SIGKILL; the dead mount is lazily unmounted, `custodian fsck`
runs on the store, the store is mounted again, and every writer's
directory is compared with its manifest:

- every file whose last operation completed (and so was fsynced) reads
  back exactly, with the right size; no file is missing, none is extra;
- the one operation each writer had in flight may be in any state the
  format allows (docs/reliability.md, "What a crash may leave"): a rename
  or unlink either happened or not (never both names, never neither); a
  create or rewrite left a size between the old and new sizes, and each
  4 KiB block some prefix of the new bytes followed by the old bytes (or
  zeros, a hole); a block that fails to authenticate (EIO) is accepted
  only in that file and is counted;
- `custodian fsck` exits 0, or exits 1 naming only files in flight;
- the test then settles each in-flight file (keeps it if it matches the
  old or new content exactly, deletes it otherwise) and the next round
  starts.  At the end `custodian fsck` and `custodian audit verify` pass.

20 kills in CI (5 under ASan), 200 with CUSTODIAN_TORTURE=1.
"""

import errno
import os
import random
import time

import pytest

import helpers
import test_reliability_util as U
from helpers import tool

WRITERS = (None, "cust_alice", "cust_bob")  # None = root


def _fsck(store):
    return tool("fsck", store.path, "--passfile", store.passfile, check=False)


def _check_dir(wdir, state, pending):
    """Compares a writer's directory with its manifest state.  Returns
    (problems, settle, eio_blocks): settle is the manifest lines that
    record the in-flight operation's outcome."""
    problems, settle, eio = [], [], 0
    try:
        present = {n for n in os.listdir(wdir) if not n.startswith(".")}
    except OSError as e:
        return [f"listdir {wdir}: {e}"], settle, 0
    touched = set()
    if pending:
        op = pending[0]
        touched = {pending[1]} if op in ("C", "M", "D") else {pending[1], pending[2]}
    for name, (s, size) in state.items():
        if name in touched:
            continue
        p = os.path.join(wdir, name)
        if name not in present:
            problems.append(f"{p}: fsynced file missing")
            continue
        try:
            blocks, got_size = U.read_blocks(p)
        except OSError as e:
            problems.append(f"{p}: {e}")
            continue
        if None in blocks:
            problems.append(f"{p}: EIO in a file that was not being written")
        elif got_size != size or b"".join(blocks) != U.content(s, size):
            problems.append(f"{p}: content differs from what was fsynced "
                            f"(size {got_size}, want {size})")
    extra = present - set(state) - touched
    for name in sorted(extra):
        problems.append(f"{wdir}/{name}: unexpected file")
    if not pending:
        return problems, settle, eio

    op = pending[0]

    def expect(name):
        s, size = state[name]
        return U.content(s, size)

    def settle_file(name, old, new, new_state, old_state):
        """Checks a create/rewrite target and decides what to record."""
        nonlocal eio
        p = os.path.join(wdir, name)
        if name not in present:
            if old is None:
                settle.append(f"G {name}")  # the create never reached the store
                return
            problems.append(f"{p}: disappeared while being rewritten")
            return
        blocks, size = U.read_blocks(p)
        eio += blocks.count(None)
        if not U.mixed_ok(blocks, size, old or b"", new):
            problems.append(f"{p}: in-flight {op} left a state no write produced "
                            f"(size {size}, old {len(old or b'')}, new {len(new)})")
            return
        data = None if None in blocks else b"".join(blocks)
        if data == new:
            settle.append(f"S {name} {new_state[0]} {new_state[1]}")
        elif old is not None and data == old:
            settle.append(f"S {name} {old_state[0]} {old_state[1]}")
        else:
            os.unlink(p)  # a torn record: the writer's intent is void
            settle.append(f"G {name}")

    if op == "C":
        name, s, size = pending[1], int(pending[2]), int(pending[3])
        settle_file(name, None, U.content(s, size), (s, size), None)
    elif op == "M":
        name, s, size = pending[1], int(pending[2]), int(pending[3])
        settle_file(name, expect(name), U.content(s, size), (s, size), state[name])
    elif op == "R":
        old, new = pending[1], pending[2]
        a, b = old in present, new in present
        if a == b:
            problems.append(f"{wdir}: rename {old} -> {new} in flight: "
                            f"{'both names' if a else 'neither name'} present")
        else:
            have = old if a else new
            blocks, size = U.read_blocks(os.path.join(wdir, have))
            if None in blocks or b"".join(blocks) != expect(old):
                problems.append(f"{wdir}/{have}: renamed file's content changed")
            if b:
                settle += [f"S {new} {state[old][0]} {state[old][1]}", f"G {old}"]
    elif op == "X":
        src, dst = pending[1], pending[2]
        if dst not in present:
            problems.append(f"{wdir}/{dst}: rename-over target vanished")
        else:
            blocks, _ = U.read_blocks(os.path.join(wdir, dst))
            data = None if None in blocks else b"".join(blocks)
            if src in present:  # not done: both as they were
                if data != expect(dst):
                    problems.append(f"{wdir}/{dst}: changed before rename-over happened")
            elif data != expect(src):
                problems.append(f"{wdir}/{dst}: rename-over left neither content")
            else:
                settle += [f"S {dst} {state[src][0]} {state[src][1]}", f"G {src}"]
    elif op == "D":
        name = pending[1]
        if name in present:
            blocks, _ = U.read_blocks(os.path.join(wdir, name))
            if None in blocks or b"".join(blocks) != expect(name):
                problems.append(f"{wdir}/{name}: file being deleted changed")
        else:
            settle.append(f"G {name}")
    return problems, settle, eio


def _fsck_problems(out):
    """Plain paths fsck names as damaged."""
    res = []
    for line in out.splitlines():
        if line.startswith("damaged: "):
            res.append(line[len("damaged: "):].split(": ")[0])
    return res


def test_reliability_kill9_while_writing(store, mount_factory, users, scratch):
    kills = U.scaled(20, 200, asan_ci=5)
    seed = int(os.environ.get("CUSTODIAN_SEED", time.time()))
    rng = random.Random(seed)  # failure messages name it: CUSTODIAN_SEED=seed replays
    m = mount_factory(store)
    mdir = scratch / "manifests"
    mdir.mkdir()
    os.chmod(mdir, 0o755)
    wdirs, manifests = [], []
    for i, user in enumerate(WRITERS):
        d = m.mnt / f"w{i}"
        d.mkdir()
        mf = mdir / f"w{i}.log"
        mf.write_text("")
        if user is not None:
            uid, gid, _ = helpers.user_ids(user)
            os.chown(d, uid, gid)
            os.chown(mf, uid, gid)
        wdirs.append(d)
        manifests.append(mf)
    eio_blocks = in_flight = ops_done = fsck_named = 0
    procs = []
    try:
        for k in range(kills):
            logs = []
            for i, user in enumerate(WRITERS):
                lf = open(mdir / f"w{i}.out", "ab")
                logs.append(lf)
                procs.append(U.popen_as(user, [*U.me(), "crash-writer", wdirs[i],
                                               manifests[i], rng.randrange(1 << 30)],
                                        stdout=lf, stderr=lf))
            time.sleep(rng.uniform(0.15, 0.8) * helpers.SLOW)
            t_kill = time.monotonic()
            m.kill()  # SIGKILL: no unmount, no flush, no goodbye
            for p in procs:
                try:
                    p.wait(timeout=30 * helpers.SLOW)
                except Exception:
                    p.kill()
                    p.wait()
            procs = []
            for lf in logs:
                lf.close()
            # a writer may only have stopped because the mount went away
            for i in range(len(WRITERS)):
                out = (mdir / f"w{i}.out").read_text(errors="replace")
                last = out.strip().splitlines()[-1:] if out.strip() else []
                if last and last[0].startswith("stopped: errno="):
                    e = int(last[0].split()[1][6:])
                    t_fail = float(last[0].split()[2][2:])
                    # Any error the kill caused is expected; an error before
                    # it is a daemon bug, whatever its errno.
                    assert e in (errno.ENOTCONN, errno.ECONNABORTED) or t_fail >= t_kill, \
                        f"after kill {k + 1} (seed {seed}): writer {i} failed " \
                        f"{t_kill - t_fail:.3f} s before the kill: {last[0]}"
                elif last:
                    pytest.fail(f"writer {i} ended unexpectedly (seed {seed}): {out[-2000:]}")
                (mdir / f"w{i}.out").write_text("")
            m.stop()  # lazy unmount of the dead mount; reaps the daemon
            r = _fsck(store)
            named = _fsck_problems(r.out)
            assert r.returncode in (0, 1), f"fsck crashed: {r.returncode}\n{r.err}"
            m.start()
            problems = []
            pendings = []
            for i, wdir in enumerate(wdirs):
                state, pending = U.replay(manifests[i].read_text().splitlines())
                pendings.append((wdir, pending))
                p, settle, eio = _check_dir(wdir, state, pending)
                problems += p
                eio_blocks += eio
                in_flight += pending is not None
                with open(manifests[i], "a") as f:
                    for line in settle:
                        f.write(line + "\n")
                    if pending is not None:
                        f.write("V\n")  # the in-flight op is resolved
            # fsck may only name files that were being written at the kill
            allowed = set()
            for wdir, pending in pendings:
                if pending:
                    rel = "/" + os.path.relpath(wdir, m.mnt)
                    allowed |= {f"{rel}/{n}" for n in pending[1:3] if not n.isdigit()}
            bad_fsck = [n for n in named if n not in allowed]
            fsck_named += len(named)
            if bad_fsck:
                problems.append(f"fsck named files that were not in flight: {bad_fsck}\n{r.out}")
            if r.returncode == 1 and not named:
                problems.append(f"fsck failed without naming a file:\n{r.out}\n{r.err}")
            assert not problems, f"after kill {k + 1} (seed {seed}):\n" + "\n".join(problems)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    m.stop()
    r = _fsck(store)
    assert r.returncode == 0, f"fsck after the last kill:\n{r.out}\n{r.err}"
    r = tool("audit", "verify", store.path, "--passfile", store.passfile, check=False)
    assert r.returncode == 0, f"audit verify:\n{r.out}\n{r.err}"
    ops_done = sum(mf.read_text().splitlines().count("E") for mf in manifests)
    U.report("crash", kills=kills, ops_completed=ops_done, in_flight=in_flight,
             eio_blocks_in_flight=eio_blocks, fsck_named_in_flight=fsck_named)
