"""conftest.py — fixtures for custodian integration tests (real FUSE mounts).

Run as root with Debian's python: `/usr/bin/python3 -m pytest tests/integration`
(`make test-integration` sets CUSTODIAN_BUILD to the build dir; it defaults to
<repo>/build).  The machinery lives in helpers.py (import it directly for
Store, Mount, run_as, try_as, tool, format constants).

Fixtures
--------
users          session  Creates (if missing) groups cust_agents, cust_supervisors,
                        cust_records and users cust_alice (agents), cust_bob
                        (supervisors), cust_carol (records), each with its own
                        user group.  Returns {name: pwd entry}.  Run things as
                        them with helpers.run_as(user, argv) or
                        helpers.try_as(user, op, path) -> (errno or 0, stdout).
scratch        function A fresh 0755 directory under /tmp/custodian-it-XXXX (every
                        component traversable by the test users); removed after
                        the test unless CUSTODIAN_KEEP_TMP=1.
store          function A fresh store scratch/store made by `custodian init
                        --passfile --kdf-ops 1 --kdf-mem 8`.  Attributes .path,
                        .passfile, .tree, .db, .init_out (init's stdout).
mounted        function `store` mounted with -f -o allow_other at scratch/mnt.
                        Attributes .mnt, .store, .proc, .stderr(), .remount(),
                        .stop(), .kill(sig).  Ready when the mount point is in
                        /proc/self/mounts (10 s, x4 under ASan).  The root
                        of the mount (tree/, 0755 after init; stores made
                        before that have 0700) is made 0755 so the test
                        users can traverse it.
mount_factory  function mount_factory(store, options=("-o","allow_other"),
                        mnt=None, passfile=None, start=True, open_root=True)
                        -> Mount, for custom options (e.g. "-o", "ro"); the
                        root is chmod 0755 unless open_root=False or ro.  All
                        are torn down after the test.
module_store   module   Like store/mounted but shared by a whole test module;
module_mount   module   use them where tests do not interfere (each test works in
                        its own subdirectory).

Teardown always: fusermount3 -u (then -u -z), SIGTERM then SIGKILL of the
daemon, and fails the test if the daemon printed an AddressSanitizer /
LeakSanitizer / UBSan report ('runtime error:') or died of a signal we did
not send.  A per-test watchdog (CUSTODIAN_TEST_TIMEOUT seconds, default 300,
x4 under ASan) kills hung daemons so a stuck FUSE request fails the test
instead of hanging the suite.  At session end every mount under the scratch
base is lazily unmounted.
"""

import os
import threading

import pytest

import helpers
from helpers import Mount, Store


@pytest.fixture(scope="session")
def users():
    return helpers.ensure_users()


def _new_scratch(request):
    return helpers.scratch_dir(request.node.name)


def _drop_scratch(d):
    if os.environ.get("CUSTODIAN_KEEP_TMP") != "1":
        helpers.remove_tree(d)


@pytest.fixture
def scratch(request):
    d = _new_scratch(request)
    yield d
    _drop_scratch(d)


@pytest.fixture
def store(scratch):
    helpers.require_binaries()
    return Store.create(scratch)


class _Mounts:
    """Tracks the Mounts a fixture made so teardown stops every one."""

    def __init__(self, base):
        self.base = base
        self.made = []

    def __call__(self, store, options=("-o", "allow_other"), mnt=None, passfile=None,
                 start=True, extra_args=(), open_root=True, env=None):
        if mnt is None:
            mnt = self.base / f"mnt{len(self.made)}"
        m = Mount(store, mnt, options=options, passfile=passfile, extra_args=extra_args,
                  env=env)
        self.made.append(m)
        if start:
            m.start()
            if open_root and "ro" not in ",".join(options).split(","):
                _open_root(m)
        return m

    def teardown(self):
        errors = []
        for m in reversed(self.made):
            try:
                m.stop(check=True)
            except BaseException as e:  # pytest.fail raises Failed
                errors.append(str(e))
        if errors:
            pytest.fail("\n".join(errors))


def _open_root(m):
    """The store's tree/ (the mount's root) is 0755 after init; a store made
    before that has 0700, and tests that use the test users need to get in,
    as an admin would chmod it."""
    if os.stat(m.mnt).st_mode & 0o777 == 0o700:
        os.chmod(m.mnt, 0o755)


@pytest.fixture
def mount_factory(scratch):
    ms = _Mounts(scratch)
    yield ms
    ms.teardown()


@pytest.fixture
def mounted(store, scratch):
    ms = _Mounts(scratch)
    m = ms(store, mnt=scratch / "mnt")
    yield m
    ms.teardown()


@pytest.fixture(scope="module")
def module_scratch(request):
    d = helpers.scratch_dir(request.module.__name__)
    yield d
    _drop_scratch(d)


@pytest.fixture(scope="module")
def module_store(module_scratch):
    helpers.require_binaries()
    return Store.create(module_scratch)


@pytest.fixture(scope="module")
def module_mount(module_store, module_scratch):
    ms = _Mounts(module_scratch)
    m = ms(module_store, mnt=module_scratch / "mnt")
    yield m
    ms.teardown()


@pytest.fixture(autouse=True)
def _watchdog(request):
    limit = float(os.environ.get("CUSTODIAN_TEST_TIMEOUT", "300")) * helpers.SLOW
    fired = []

    def fire():
        fired.append(helpers.kill_all_live("watchdog"))

    t = threading.Timer(limit, fire)
    t.daemon = True
    t.start()
    yield
    t.cancel()
    if fired:
        pytest.fail(f"watchdog: test exceeded {limit:.0f}s; killed daemons of "
                    f"{[str(m.mnt) for m in fired[0]]}")


def pytest_sessionfinish(session, exitstatus):
    helpers.cleanup_all()
    if helpers._BASE is not None:
        helpers.unmount_everything_under(helpers._BASE)
        if os.environ.get("CUSTODIAN_KEEP_TMP") != "1":
            helpers.remove_tree(helpers._BASE)
