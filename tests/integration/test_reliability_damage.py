"""Damaged store: random damage gives EIO or a refusal, never wrong data (issue 7).

test_core_tamper.py checks one hand-made case of each kind of block
damage.  This module damages stores at random and in the ways it does not
cover, and checks the same promise every time: whatever the mount returns
is the original data, anything else is EIO (or the entry is hidden, or the
mount is refused with a one-line reason), and the daemon stays alive and
keeps serving the undamaged files.

- random damage: many files, each hit by one of: a flipped bit anywhere
  (header, nonce, ciphertext, tag), a cut at a random offset, two blocks
  swapped, a block copied from another file, a header swapped with
  another file's; read block by block after remount;
- a ciphertext file renamed over another file's backing name in the same
  directory: NOT detected by design (docs/format.md, "Whole files"); the
  test asserts the documented result (the victim's name shows the other
  file's content, intact) so a change in behaviour is noticed;
- a backing file moved into another directory: its name no longer
  decrypts there and is not listed;
- a replaced directory .iv: names in it are not listed (EIO), never other
  names;
- custodian.db damaged: deleted, truncated, each page zeroed in turn,
  random bytes flipped: custodianfs either refuses (exit status 1..125, a
  short message, nothing mounted) or mounts and serves only correct data;
  custodian fsck never crashes;
- a WAL from another store (same passphrase) planted beside the
  database: refusal, or names hidden and content EIO — never the other
  store's or wrong plaintext.
"""

import errno
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time

import pytest

import helpers
import test_reliability_util as U
from helpers import BLOCK_CIPHER, HEADER_BYTES, Store, block_offset, cipher_size, tool

CONTROL = b"control file: must always read back\n" * 100


def _map_backing(store, sizes, exclude=()):
    """plaintext name -> backing path, matching by ciphertext size (backing
    files in `exclude` are not candidates)."""
    by_size = {}
    for p, s in store.backing_files().items():
        if p not in exclude:
            by_size.setdefault(s, []).append(p)
    res = {}
    for name, size in sizes.items():
        c = by_size.get(cipher_size(size), [])
        assert len(c) == 1, f"cannot find the backing file of {name} ({size} bytes)"
        res[name] = c[0]
    return res


def _read_checked(path, orig):
    """Reads path block by block; asserts every block read is the
    original.  Returns the number of EIO blocks (-1: open failed EIO).

    A ciphertext of impossible length (a cut leaving 1..40 bytes of a
    block) stats as 0 bytes (ops.c stat_convert) and reads as EIO, so
    the read at the reported end of file, which must give nothing or
    EIO, counts too: reading only up to st_size would see an empty,
    undamaged file."""
    try:
        blocks, size = U.read_blocks(path)
    except OSError as e:
        assert e.errno == errno.EIO, f"{path}: open gave {e}"
        return -1
    for i, b in enumerate(blocks):
        if b is not None:
            off = i * 4096
            assert b == orig[off:off + len(b)], \
                f"{path}: block {i} returned WRONG plaintext"
    fd = os.open(path, os.O_RDONLY)
    try:
        tail = os.pread(fd, 4096, size)
        assert tail == b"", f"{path}: {len(tail)} bytes past the reported size {size}"
    except OSError as e:
        assert e.errno == errno.EIO, f"{path}: read at end of file gave {e}"
        blocks.append(None)
    finally:
        os.close(fd)
    return blocks.count(None)


def _boundary_cut(label):
    """True for a cut exactly at a block boundary (after the header and
    whole blocks): format.md "File length at block granularity" documents
    it as undetected.  Any other cut must read as EIO somewhere."""
    if not label.startswith("cut@"):
        return False
    pos = int(label[len("cut@"):])
    return pos >= HEADER_BYTES and (pos - HEADER_BYTES) % BLOCK_CIPHER == 0


def _damage(rng, b, d):
    """Damages backing file b (d: another file's undamaged ciphertext).
    Returns a label."""
    c = bytearray(b.read_bytes())
    nblocks = (len(c) - HEADER_BYTES + BLOCK_CIPHER - 1) // BLOCK_CIPHER
    kind = rng.choice(("flip", "flip", "flip", "cut", "swap", "foreign", "header"))
    if kind == "flip":
        pos = rng.randrange(len(c))
        c[pos] ^= 1 << rng.randrange(8)
        label = f"flip@{pos}"
    elif kind == "cut":
        pos = rng.randrange(1, len(c))
        del c[pos:]
        label = f"cut@{pos}"
    elif kind == "swap" and nblocks >= 3:
        i = rng.randrange(nblocks - 2)
        j = i + 1
        bi = c[block_offset(i):block_offset(j)]
        bj = c[block_offset(j):block_offset(j + 1)]
        c[block_offset(i):block_offset(j)] = bj
        c[block_offset(j):block_offset(j + 1)] = bi
        label = f"swap{i}-{j}"
    elif kind == "foreign" and nblocks >= 2 and len(d) >= block_offset(1):
        c[block_offset(0):block_offset(1)] = d[block_offset(0):block_offset(1)]
        label = "foreign0"
    else:
        c[:HEADER_BYTES] = d[:HEADER_BYTES]
        label = "header-swap"
    b.write_bytes(bytes(c))
    return label


def test_reliability_random_damage(store, mount_factory):
    rounds = U.scaled(3, 20, asan_ci=1)
    seed = int(os.environ.get("CUSTODIAN_SEED", time.time()))
    rng = random.Random(seed)
    m = mount_factory(store)
    (m.mnt / "control").write_bytes(CONTROL)
    eio_files = eio_blocks = cases = boundary_cuts = 0
    for rnd in range(rounds):
        d = m.mnt / f"round{rnd}"
        d.mkdir()
        before = set(store.backing_files())
        sizes, origs = {}, {}
        used = {cipher_size(len(CONTROL))}
        for i in range(24):
            while True:
                size = rng.choice((rng.randrange(1, 4096), rng.randrange(4096, 40000)))
                if cipher_size(size) not in used and size not in sizes.values():
                    break
            used.add(cipher_size(size))
            sizes[f"v{i}"] = size
            origs[f"v{i}"] = U.content(rng.randrange(1 << 30), size)
            (d / f"v{i}").write_bytes(origs[f"v{i}"])
        m.stop()
        # only this round's files (earlier rounds are damaged already)
        allb = _map_backing(store, sizes, exclude=before)
        labels = {}
        names = sorted(sizes)
        pristine = {n: allb[n].read_bytes() for n in names}
        for name in names:
            donor = pristine[rng.choice([n for n in names if n != name])]
            labels[name] = _damage(rng, allb[name], donor)
        m.start()
        for name in names:
            n = _read_checked(d / name, origs[name])
            cases += 1
            eio_files += n != 0
            eio_blocks += max(n, 0)
            # a file cut exactly at a block boundary is a documented,
            # undetected shortening; every other damage must be seen
            lab = labels[name]
            if n == 0 and not _boundary_cut(lab):
                pytest.fail(f"{name}: {lab} went undetected (seed {seed}, round {rnd})")
            boundary_cuts += n == 0
        assert (m.mnt / "control").read_bytes() == CONTROL
        assert m.alive()
    U.report("damage", files_damaged=cases, files_eio=eio_files, blocks_eio=eio_blocks,
             boundary_cuts_undetected=boundary_cuts, seed=seed)


def test_reliability_renamed_ciphertext_is_documented_limit(store, mount_factory):
    """docs/format.md "Whole files": renaming a ciphertext file over another
    in the same directory (same keyring) is not detected."""
    m = mount_factory(store)
    d = m.mnt / "d"
    d.mkdir()
    a, b = U.content(1, 5000), U.content(2, 9000)
    (d / "a").write_bytes(a)
    (d / "b").write_bytes(b)
    m.stop()
    bk = _map_backing(store, {"a": 5000, "b": 9000})
    os.rename(bk["a"], bk["b"])  # b's backing name now holds a's ciphertext
    m.start()
    assert sorted(os.listdir(d)) == ["b"]
    # Documented: b now shows a's content, authentic and intact (the
    # audit log, not the format, records who changed what).
    assert (d / "b").read_bytes() == a


def test_reliability_moved_backing_file_is_hidden(store, mount_factory):
    m = mount_factory(store)
    for sub in ("d1", "d2"):
        (m.mnt / sub).mkdir()
    x = U.content(3, 7777)
    (m.mnt / "d1" / "x").write_bytes(x)
    (m.mnt / "d2" / "y").write_bytes(b"y")
    m.stop()
    bx = _map_backing(store, {"x": 7777})["x"]
    by = _map_backing(store, {"y": 1})["y"]
    os.rename(bx, by.parent / bx.name)  # into d2's backing directory
    m.start()
    assert os.listdir(m.mnt / "d2") == ["y"], "a name from another directory was listed"
    assert os.listdir(m.mnt / "d1") == []
    assert (m.mnt / "d2" / "y").read_bytes() == b"y"


def test_reliability_replaced_dir_iv(store, mount_factory):
    m = mount_factory(store)
    (m.mnt / "d").mkdir()
    (m.mnt / "d" / "f").write_bytes(b"f")
    (m.mnt / "e").mkdir()
    (m.mnt / "e" / "g").write_bytes(b"gg")
    m.stop()
    bf = _map_backing(store, {"f": 1})["f"]
    iv = bf.parent / ".iv"
    os.chmod(iv, 0o600)
    iv.write_bytes(os.urandom(16))
    m.start()
    try:
        listing = os.listdir(m.mnt / "d")
        assert listing == [], f"names listed under a wrong IV: {listing}"
    except OSError as e:
        assert e.errno == errno.EIO
    assert (m.mnt / "e" / "g").read_bytes() == b"gg"
    assert m.alive()


# --- the database ------------------------------------------------------------------

def _try_mount(store, mnt):
    """Starts custodianfs on a possibly damaged store.  Returns (mounted,
    returncode, stderr, proc).  If mounted, proc is running."""
    mnt.mkdir(exist_ok=True)
    errf = mnt.parent / f".{mnt.name}.err"
    with open(errf, "wb") as ef:
        proc = subprocess.Popen([str(helpers.CUSTODIANFS), str(store.path), str(mnt),
                                 "--passfile", str(store.passfile), "-f", "-o", "allow_other"],
                                stdin=subprocess.DEVNULL, stdout=ef, stderr=ef,
                                start_new_session=True)
    deadline = time.monotonic() + helpers.MOUNT_TIMEOUT
    while time.monotonic() < deadline:
        if helpers.is_mounted(mnt):
            return True, None, errf.read_text(errors="replace"), proc
        if proc.poll() is not None:
            return False, proc.returncode, errf.read_text(errors="replace"), proc
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    helpers.lazy_unmount(mnt)
    pytest.fail(f"custodianfs neither mounted nor exited in {helpers.MOUNT_TIMEOUT}s")


def _stop(mnt, proc):
    subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, timeout=60)
    try:
        proc.wait(timeout=10 * helpers.SLOW)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    helpers.lazy_unmount(mnt)
    return proc.returncode


def _probe(store, mnt, originals, label):
    """Mounts a damaged store and checks the promise.  Returns 'refused',
    'mounted' or raises."""
    mounted, rc, err, proc = _try_mount(store, mnt)
    rep = helpers.sanitizer_report(err)
    assert rep is None, f"{label}: sanitizer report:\n{rep}"
    if not mounted:
        assert 1 <= rc <= 125, f"{label}: custodianfs exited {rc} (a crash?):\n{err}"
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert 1 <= len(lines) <= 3, f"{label}: refusal is not a short message:\n{err}"
        return "refused"
    try:
        for name, data in originals.items():
            p = mnt / name
            try:
                got = p.read_bytes()
            except OSError as e:
                assert e.errno in (errno.EIO, errno.ENOENT), f"{label}: {name}: {e}"
                continue
            assert got == data, f"{label}: {name} returned WRONG plaintext"
        try:
            os.listdir(mnt)
        except OSError as e:
            assert e.errno == errno.EIO, f"{label}: listdir: {e}"
        assert proc.poll() is None, f"{label}: daemon died serving a damaged store"
    finally:
        rc = _stop(mnt, proc)
        err = (mnt.parent / f".{mnt.name}.err").read_text(errors="replace")
        assert helpers.sanitizer_report(err) is None, f"{label}: {err}"
        assert rc is not None and rc >= 0, f"{label}: daemon died of signal {-rc}:\n{err}"
    return "mounted"


def _fsck_survives(store, label):
    r = tool("fsck", store.path, "--passfile", store.passfile, check=False)
    assert 0 <= r.returncode <= 125, f"{label}: fsck exited {r.returncode}:\n{r.err}"
    if r.returncode != 0:
        assert (r.out + r.err).strip(), f"{label}: fsck failed silently"


@pytest.fixture
def db_store(scratch, mount_factory):
    """A store with a few files, unmounted and checkpointed; returns
    (store, originals, pristine copy of the database)."""
    helpers.require_binaries()
    store = Store.create(scratch)
    tool("policy", "apply", store.path, _policy(scratch), "--yes",
         "--passfile", store.passfile, check=False)
    m = mount_factory(store)
    originals = {f"f{i}": U.content(i, 1000 * i + 1) for i in range(5)}
    for n, data in originals.items():
        (m.mnt / n).write_bytes(data)
    m.stop()
    for sfx in ("-wal", "-shm"):
        assert not os.path.exists(str(store.db) + sfx) or \
            os.path.getsize(str(store.db) + sfx) == 0 or sfx == "-shm"
    return store, originals, store.db.read_bytes()


def _policy(scratch):
    p = scratch / "policy.ini"
    p.write_text("[/]\nlist = root\nread = root\nwrite = root\ncreate = root\n"
                 "delete = root\n")
    return p


def test_reliability_damaged_database(db_store, scratch):
    store, originals, pristine = db_store
    mnt = scratch / "dbmnt"
    seed = int(os.environ.get("CUSTODIAN_SEED", time.time()))
    rng = random.Random(seed)
    outcomes = {}

    def reset():
        for sfx in ("-wal", "-shm"):
            try:
                os.unlink(str(store.db) + sfx)
            except FileNotFoundError:
                pass
        store.db.write_bytes(pristine)
        os.chmod(store.db, 0o600)

    cases = [("deleted", lambda: store.db.unlink()),
             ("empty", lambda: store.db.write_bytes(b"")),
             ("half", lambda: store.db.write_bytes(pristine[:len(pristine) // 2])),
             ("not sqlite", lambda: store.db.write_bytes(os.urandom(len(pristine))))]
    page = 4096
    for k in range(len(pristine) // page):
        def zero(k=k):
            b = bytearray(pristine)
            b[k * page:(k + 1) * page] = bytes(page)
            store.db.write_bytes(bytes(b))
        cases.append((f"page {k + 1} zeroed", zero))
    for j in range(U.scaled(4, 40, asan_ci=2)):
        def flip(j=j):
            b = bytearray(pristine)
            for _ in range(rng.randrange(1, 20)):
                b[rng.randrange(100, len(b))] ^= 1 << rng.randrange(8)
            store.db.write_bytes(bytes(b))
        cases.append((f"random flips #{j} (seed {seed})", flip))
    for label, damage in cases:
        reset()
        damage()
        outcomes[label] = _probe(store, mnt, originals, label)
        _fsck_survives(store, label)
    reset()
    assert _probe(store, mnt, originals, "restored") == "mounted"
    refused = sum(v == "refused" for v in outcomes.values())
    U.report("database-damage", cases=len(outcomes), refused=refused,
             mounted=len(outcomes) - refused, seed=seed)


def test_reliability_foreign_wal(db_store, scratch):
    """A WAL from another store with the same passphrase: SQLite does not
    bind a WAL to its database, so its pages may be replayed; the keys
    that come with them cannot decrypt this store's names or content."""
    store, originals, pristine = db_store
    other = Store.create(scratch, name="other")
    # Make the other store's WAL hold its key-slot pages: open it with
    # automatic checkpoints off, rewrite the slots, keep the connection
    # open while copying the WAL (as a crash would leave it).
    con = sqlite3.connect(other.db)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute("UPDATE slots SET label = 'from another store'")
        con.execute("INSERT INTO meta VALUES('foreign', x'00')")
        con.commit()
        wal = open(str(other.db) + "-wal", "rb").read()
    finally:
        con.close()
    assert len(wal) > 32, "could not make a WAL with frames"
    for sfx in ("-shm",):
        try:
            os.unlink(str(store.db) + sfx)
        except FileNotFoundError:
            pass
    with open(str(store.db) + "-wal", "wb") as f:
        f.write(wal)
    mnt = scratch / "walmnt"
    outcome = _probe(store, mnt, originals, "foreign WAL")
    _fsck_survives(store, "foreign WAL")
    U.report("foreign-wal", outcome=outcome, wal_bytes=len(wal))
