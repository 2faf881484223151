#!/usr/bin/python3
"""shred_live.py — how long a live shred of a big subject takes, and how
long it stalls another user of the mount (docs/subjects.md, "Speed").

usage (as root, after make):  CUSTODIAN_BUILD=build /usr/bin/python3 tests/bench/shred_live.py [WORKDIR]

Builds a store, mounts it, applies a policy with /customers/* as subject
roots, fills subject C-BIG with 100 x 10 MiB + 9,900 small files (1 GiB,
10,000 files), and a plain directory /other with 200 x 64 KiB files.  A
reader process then reads the /other files in a loop (each open+read+close
timed, page cache dropped first so reads reach the daemon); while it runs,
`custodian shred ... --yes` erases C-BIG.  Prints the shred's wall time,
the time until the background removal finished, and the reader's longest
single read before, during and after.  Not a pass/fail test.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = Path(os.environ.get("CUSTODIAN_BUILD", "build")).resolve()
PASS = b"bench passphrase"

POLICY = """[/]
list = root
read = root
write = root
create = root
delete = root
admin = root

[/customers/*]
subject = yes
"""

READER = r"""
import os, sys, time
files = sys.argv[1:]
while True:
    for f in files:
        t0 = time.monotonic()
        with open(f, "rb") as fh:
            fh.read()
        t1 = time.monotonic()
        print(f"{t0:.6f} {t1 - t0:.6f}", flush=True)
"""


def run(*argv, **kw):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, **kw)


def main():
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="shredbench-"))
    work.mkdir(parents=True, exist_ok=True)
    store, mnt, pf = work / "store", work / "mnt", work / "pass"
    pf.write_bytes(PASS)
    os.chmod(pf, 0o600)
    run(BUILD / "custodian", "init", store, "--passfile", pf, "--kdf-ops", "1", "--kdf-mem", "8")
    mnt.mkdir(exist_ok=True)
    daemon = subprocess.Popen([BUILD / "custodianfs", store, mnt, "--passfile", pf, "-f"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if os.path.ismount(mnt):
                break
            time.sleep(0.05)
        pol = work / "policy.ini"
        pol.write_text(POLICY)
        run(BUILD / "custodian", "policy", "apply", store, pol, "--yes", "--passfile", pf)
        os.makedirs(mnt / "customers")
        big = mnt / "customers" / "C-BIG"
        os.mkdir(big)
        t0 = time.monotonic()
        chunk = os.urandom(1 << 20)
        for i in range(100):
            with open(big / f"rec-{i:03d}.wav", "wb") as f:
                for _ in range(10):
                    f.write(chunk)
        small = os.urandom(1000)
        for i in range(9900):
            if i % 1000 == 0:
                os.mkdir(big / f"d{i // 1000}")
            (big / f"d{i // 1000}" / f"note-{i:05d}.txt").write_bytes(small)
        fill = time.monotonic() - t0
        os.mkdir(mnt / "other")
        others = []
        for i in range(200):
            p = mnt / "other" / f"o{i:03d}"
            p.write_bytes(os.urandom(64 << 10))
            others.append(str(p))
        subprocess.run(["sync"])
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        # (a file, not a pipe: a full pipe would stall the reader itself)
        rlog = open(work / "reader.log", "w")
        reader = subprocess.Popen([sys.executable, "-c", READER, *others], stdout=rlog)
        time.sleep(3)
        t_start = time.monotonic()
        r = run(BUILD / "custodian", "shred", store, "C-BIG", "--reason", "benchmark",
                "--yes", "--passfile", pf)
        t_shred = time.monotonic()
        trash = store / "trash"
        while trash.exists() and os.listdir(trash):
            time.sleep(0.01)
        t_gone = time.monotonic()
        time.sleep(3)
        reader.send_signal(signal.SIGTERM)
        reader.wait()
        rlog.close()
        lines = (work / "reader.log").read_text().splitlines()
        before = during = after = 0.0
        n_during = 0
        for ln in lines:
            try:
                ts, dt = map(float, ln.split())
            except ValueError:
                continue  # the line SIGTERM cut
            if ts + dt < t_start:
                before = max(before, dt)
            elif ts > t_gone:
                after = max(after, dt)
            else:
                during = max(during, dt)
                n_during += 1
        print(f"fill: 1 GiB, 10,000 files in {fill:.1f} s")
        print(f"shred (custodian shred, wall): {t_shred - t_start:.3f} s")
        print(f"background removal done after: {t_gone - t_start:.3f} s")
        print(f"reader: longest read before {before * 1000:.1f} ms, during "
              f"{during * 1000:.1f} ms ({n_during} reads), after {after * 1000:.1f} ms")
        print(r.stdout.decode().splitlines()[0])
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
        daemon.wait(timeout=60)
        if len(sys.argv) <= 1:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
