"""Tampered ciphertext reads as EIO, never as wrong data; fsck names it.

After unmount, the ciphertext of several files is damaged in the ways
fs/format.h must detect: a flipped bit in a block, two blocks swapped, a
block copied from another file at the same position, a ciphertext cut in
the middle of a block, a length no block layout can produce, a flipped bit
in the header and in the tag of a short last block.  Backing files are
found by their size (every victim has a distinct plaintext size, so a
distinct ciphertext size).  After remount: every damaged file gives EIO
(errno 5) on the damaged range; whatever is returned matches the original;
the other files and the daemon keep working; `custodian fsck` exits 1 and
prints `damaged: /plain/path: ...` for each damaged file and no other.
"""

import errno
import os

import pytest

import helpers
from helpers import BLOCK_CIPHER, HEADER_BYTES, block_offset, cipher_size, tool

DIR = "case files"
K = 3 * 4096  # every victim has 3 full blocks plus a distinct tail


def _content(name, size):
    seed = name.encode() * (size // len(name) + 1)
    return bytes((b + i) % 256 for i, b in enumerate(seed[:size]))


def _xor(data, off, mask=0x01):
    data = bytearray(data)
    data[off] ^= mask
    return bytes(data)


def _tamper_flip(b, _files):
    b.write_bytes(_xor(b.read_bytes(), block_offset(1) + 24 + 100))


def _tamper_swap(b, _files):
    c = bytearray(b.read_bytes())
    b0 = c[block_offset(0):block_offset(1)]
    b1 = c[block_offset(1):block_offset(2)]
    c[block_offset(0):block_offset(1)] = b1
    c[block_offset(1):block_offset(2)] = b0
    b.write_bytes(bytes(c))


def _tamper_foreign(b, files):
    donor = files["donor.bin"].read_bytes()
    c = bytearray(b.read_bytes())
    c[block_offset(1):block_offset(2)] = donor[block_offset(1):block_offset(2)]
    b.write_bytes(bytes(c))


def _tamper_cut_mid_block(b, _files):
    os.truncate(b, block_offset(2) + 1000)


def _tamper_impossible_length(b, _files):
    os.truncate(b, block_offset(3) + 20)  # 1..40 bytes past a block: no layout


def _tamper_header(b, _files):
    b.write_bytes(_xor(b.read_bytes(), 12))  # inside the file id


def _tamper_short_tag(b, _files):
    data = b.read_bytes()
    b.write_bytes(_xor(data, len(data) - 1, 0x80))  # last tag byte of the short last block


VICTIMS = {  # name -> (plaintext size, tamper, plaintext range that must fail)
    "flip.bin": (K + 100, _tamper_flip, (4096, 8192)),
    "swap.bin": (K + 200, _tamper_swap, (0, 4096)),
    "foreign.bin": (K + 300, _tamper_foreign, (4096, 8192)),
    "cut.bin": (K + 500, _tamper_cut_mid_block, (8192, 9000)),
    "oddlength.bin": (K + 600, _tamper_impossible_length, (0, 100)),
    "header.bin": (K + 700, _tamper_header, (0, 100)),
    "shorttag.bin": (K + 800, _tamper_short_tag, (K, K + 800)),
}
INTACT = {"donor.bin": K + 400, "intact.bin": K + 900, "tiny.txt": 10}


def _read_all(path):
    """(bytes read before the error, errno or 0)."""
    got = b""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return got, e.errno
    try:
        while True:
            b = os.read(fd, 4096)
            if not b:
                return got, 0
            got += b
    except OSError as e:
        return got, e.errno
    finally:
        os.close(fd)


def _pread(path, off, n):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        return None, e.errno
    try:
        return os.pread(fd, n, off), 0
    except OSError as e:
        return None, e.errno
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def tampered(module_store, module_scratch):
    """Writes the files, damages the victims, returns (mount, originals)."""
    m = helpers.Mount(module_store, module_scratch / "mnt")
    m.start()
    try:
        d = m.mnt / DIR
        d.mkdir()
        originals = {}
        for name, size in [(n, v[0]) for n, v in VICTIMS.items()] + list(INTACT.items()):
            originals[name] = _content(name, size)
            (d / name).write_bytes(originals[name])
    finally:
        m.stop()
    r = tool("fsck", module_store.path, "--passfile", module_store.passfile, check=False)
    assert r.returncode == 0, f"fsck of an undamaged store exited {r.returncode}: {r.out}{r.err}"
    by_size = {}
    for p, s in module_store.backing_files().items():
        by_size.setdefault(s, []).append(p)
    files = {}
    for name, data in originals.items():
        cands = by_size.get(cipher_size(len(data)), [])
        assert len(cands) == 1, f"cannot find the backing file of {name}"
        files[name] = cands[0]
    for name, (_size, fn, _rng) in VICTIMS.items():
        before = files[name].read_bytes()
        fn(files[name], files)
        assert files[name].read_bytes() != before
    m.start()
    yield m, originals
    m.stop()


@pytest.mark.parametrize("name", sorted(VICTIMS))
def test_damaged_file_reads_eio_never_wrong_data(tampered, name):
    m, originals = tampered
    p = m.mnt / DIR / name
    orig = originals[name]
    lo, hi = VICTIMS[name][2]
    data, err = _pread(p, lo, hi - lo)
    assert err == errno.EIO, f"{name}: reading {lo}..{hi} gave {helpers.errname(err)}, " \
                             f"{len(data or b'')} bytes of {'correct' if data == orig[lo:hi] else 'WRONG'} data"
    got, err = _read_all(p)
    assert err == errno.EIO, f"{name}: whole read gave {helpers.errname(err)}"
    assert got == orig[:len(got)], f"{name}: wrong data returned before EIO"
    # any block that does read must be the original block
    for blk in range(len(orig) // 4096 + 1):
        data, err = _pread(p, blk * 4096, 4096)
        if err == 0:  # short only where the damaged file now ends
            assert data == orig[blk * 4096:blk * 4096 + len(data)], f"{name}: block {blk} wrong"
        else:
            assert err == errno.EIO, f"{name}: block {blk}: {helpers.errname(err)}"


def test_other_files_still_read(tampered):
    m, originals = tampered
    for name in INTACT:
        assert (m.mnt / DIR / name).read_bytes() == originals[name]
    listing = set(os.listdir(m.mnt / DIR))
    assert set(INTACT) <= listing
    (m.mnt / "after-tamper").write_bytes(b"the daemon still works")
    assert (m.mnt / "after-tamper").read_bytes() == b"the daemon still works"
    assert m.alive()


def test_fsck_names_each_damaged_file(tampered, module_store):
    m, _ = tampered
    m.stop()
    try:
        r = tool("fsck", module_store.path, "--passfile", module_store.passfile, check=False)
    finally:
        m.start()
    assert r.returncode == 1, f"fsck exited {r.returncode}:\n{r.out}\n{r.err}"
    lines = (r.out + r.err).splitlines()
    damaged = [ln for ln in lines if ln.startswith("damaged: ")]
    for name in VICTIMS:
        want = f"damaged: /{DIR}/{name}:"
        assert any(ln.startswith(want) for ln in damaged), f"fsck did not name {name}:\n{r.out}"
    for name in INTACT:
        assert not any(f"/{name}:" in ln for ln in damaged), f"fsck blamed intact {name}"


def test_format_constants_match_header():
    """The offsets used above come from fs/format.h; fail loudly if it changes."""
    text = (helpers.REPO / "fs" / "format.h").read_text()
    assert f"#define FORMAT_HEADER_BYTES {HEADER_BYTES}" in text
    assert BLOCK_CIPHER == 4136 and "80 + i * CRYPT_BLOCK_CIPHER" in text
