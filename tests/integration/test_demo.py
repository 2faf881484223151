"""`make demo` (tests/demo.sh) does what the README promises a newcomer.

Runs the demo script into a scratch directory (CUSTODIAN_DEMO_DIR) with
the build under test, then checks what it showed: records written and read
back in plain text through the mount, no plaintext in the store, the data
subjects listed, a live shred with its certificate after which the
customer's folder is gone, and the example policy refusing root.  Always
stops the demo (unmount, daemon gone).
"""

import os
import subprocess

import helpers


def test_demo_shows_the_product_working(scratch):
    env = dict(os.environ, CUSTODIAN_BUILD=str(helpers.BUILD),
               CUSTODIAN_DEMO_DIR=str(scratch / "demo"))
    script = str(helpers.REPO / "tests" / "demo.sh")
    mnt = scratch / "demo" / "mnt"
    try:
        r = subprocess.run(["sh", script], env=env, capture_output=True, text=True,
                           timeout=120 * helpers.SLOW)
        out = r.stdout
        assert r.returncode == 0, out + r.stderr
        assert "wrote /customers/C-10042/contract.txt" in out
        assert "Jan Kowalski" in out  # read back through the mount
        assert "finds nothing: content and names are encrypted" in out
        assert "!! plaintext" not in out
        subj = out.split("--- data subjects")[1].split("---")[0]
        assert "C-10042" in subj and "C-10077" in subj
        shred = out.split("--- erasure request for C-10077")[1].split("--- policy")[0]
        assert "ERASURE CERTIFICATE" in shred and "subject:        C-10077" in shred
        listing = shred.split("ls ")[1]
        assert "C-10042" in listing and "C-10077" not in listing
        assert "Permission denied" in out.split("--- policy: ")[1]
        assert helpers.is_mounted(mnt)
    finally:
        subprocess.run(["sh", script, "stop"], env=env, capture_output=True, timeout=60)
    assert not helpers.is_mounted(mnt)
