"""test_export.py — `custodian export STORE SUBJECT --out DIR|FILE.tar`.

The daemon does not create subjects on mkdir yet, so stores with subjects are
built through the engine by a small C helper (MKSUBJECT_C below, compiled
against the build's libcustodian.a, with the sanitizers when the build has
them).  It creates /PARENT as a plain directory, the subject PARENT/ID with
subjects_create, and then what stdin lists, one per line:

    d REL                      directory
    f REL BIRTH_US HEX|-       file with that content and birth time
    l REL TARGET               symlink
    a UID OP OUTCOME REL|.     audit record in the subject (path PARENT/ID/REL)

and prints "root BACKING" then "REL<TAB>BACKING" per entry, so the tests can
damage or copy the ciphertext of a known file.  test_fsck_subjects.py reuses it.
"""

import errno
import hashlib
import json
import os
import re
import shutil
import tarfile

import pytest

import helpers
from helpers import tool
from test_subjects_daemon import sm  # noqa: F401 (fixture)

MKSUBJECT_C = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit.h"
#include "format.h"
#include "linktarget.h"
#include "names.h"
#include "secret.h"
#include "store.h"
#include "subjects.h"

static void die(const char *what, int err)
{
	fprintf(stderr, "mksubject: %s: %s\n", what, strerror(-err));
	exit(1);
}

static void fdpath(int fd, const char *name, char *out, size_t cap)
{
	char l[64], p[4096];
	ssize_t n;

	snprintf(l, sizeof(l), "/proc/self/fd/%d", fd);
	n = readlink(l, p, sizeof(p) - 1);
	p[n > 0 ? n : 0] = 0;
	snprintf(out, cap, "%s%s%s", p, name ? "/" : "", name ? name : "");
}

/* Opens (creating when missing) each component of a volume path. */
static int volume_dir(struct store *st, const char *path)
{
	char *copy = strdup(path), *save = NULL, *c;
	uint8_t iv[CRYPT_DIRIV_BYTES];
	struct names_enc enc;
	int cur = dup(st->tree_fd), next, rc;

	for (c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if ((rc = names_diriv_load(cur, iv)) < 0 ||
		    (rc = names_encrypt(keys_volume(st->mk), iv, c, &enc)) < 0)
			die("volume dir", rc);
		next = openat(cur, enc.backing, O_RDONLY | O_DIRECTORY);
		if (next < 0) {
			if (mkdirat(cur, enc.backing, 0700) != 0)
				die("mkdir", -errno);
			next = openat(cur, enc.backing, O_RDONLY | O_DIRECTORY);
			if ((rc = names_diriv_create(next, iv)) < 0)
				die("iv", rc);
		}
		close(cur);
		cur = next;
	}
	free(copy);
	return cur;
}

/* Parent directory fd of rel inside the subject, and the last name. */
static int resolve(const struct keyring *ring, int rootfd, char *rel, struct names_enc *enc)
{
	uint8_t iv[CRYPT_DIRIV_BYTES];
	char *slash, *p = rel;
	int cur = dup(rootfd), next, rc;

	while ((slash = strchr(p, '/')) != NULL) {
		*slash = 0;
		if ((rc = names_diriv_load(cur, iv)) < 0 ||
		    (rc = names_encrypt(ring, iv, p, enc)) < 0)
			die("resolve", rc);
		next = openat(cur, enc->backing, O_RDONLY | O_DIRECTORY);
		if (next < 0)
			die("open dir", -errno);
		close(cur);
		cur = next;
		*slash = '/';
		p = slash + 1;
	}
	if ((rc = names_diriv_load(cur, iv)) < 0 || (rc = names_encrypt(ring, iv, p, enc)) < 0)
		die("name", rc);
	if ((rc = names_long_store(cur, enc)) < 0)
		die("sidecar", rc);
	return cur;
}

int main(int argc, char **argv)
{
	uint8_t hash[CRYPT_HASH_BYTES], iv[CRYPT_DIRIV_BYTES];
	char bname[SUBJECTS_BACKING_LEN + 1], out[8192], *line = NULL;
	struct keyring *ring = NULL;
	struct secret *sec = NULL;
	struct store *st = NULL;
	struct audit *a = NULL;
	struct names_enc enc;
	size_t cap = 0;
	int rc, pfd, rootfd;

	if (argc != 5) {
		fprintf(stderr, "usage: mksubject STORE PASSFILE PARENT ID < spec\n");
		return 2;
	}
	if (crypt_init() != 0)
		return 1;
	if ((rc = store_open(argv[1], false, &st)) < 0 ||
	    (rc = secret_from_file(argv[2], &sec)) < 0 ||
	    (rc = store_unlock_passphrase(st, sec)) < 0)
		die("open", rc);
	secret_free(sec);
	pfd = volume_dir(st, argv[3]);
	rc = subjects_create(st, argv[3], pfd, argv[4], 0700, &ring, NULL);
	subjects_hash(st->mk, argv[4], hash);
	if (rc == -EEXIST)
		rc = subjects_open(st, hash, &ring);
	if (rc < 0)
		die("subject", rc);
	subjects_backing_name(hash, bname);
	rootfd = openat(pfd, bname, O_RDONLY | O_DIRECTORY);
	if (rootfd < 0)
		die("root", -errno);
	fdpath(rootfd, NULL, out, sizeof(out));
	printf("root\t%s\n", out);
	while (getline(&line, &cap, stdin) > 0) {
		char *f[5] = {0}, *save = NULL;
		int n = 0, dfd, fd;

		line[strcspn(line, "\n")] = 0;
		for (char *t = strtok_r(line, "\t", &save); t && n < 5;
		     t = strtok_r(NULL, "\t", &save))
			f[n++] = t;
		if (n < 2)
			continue;
		if (f[0][0] == 'a') {
			struct audit_who w;
			char path[4096];
			struct audit_event ev = {0};

			if (!a && (rc = audit_open(st, NULL, &a)) < 0)
				die("audit", rc);
			audit_who_self(&w);
			w.uid = (uint32_t)atoi(f[1]);
			snprintf(path, sizeof(path), "%s/%s%s%s", argv[3], argv[4],
				 strcmp(f[4], ".") ? "/" : "", strcmp(f[4], ".") ? f[4] : "");
			ev.op = f[2];
			ev.outcome = atoi(f[3]);
			ev.who = &w;
			ev.subject = hash;
			ev.ring = ring;
			ev.path = path;
			if ((rc = audit_append(a, &ev, NULL)) < 0)
				die("append", rc);
			continue;
		}
		dfd = resolve(ring, rootfd, f[1], &enc);
		if (f[0][0] == 'd') {
			if (mkdirat(dfd, enc.backing, 0700) != 0)
				die("mkdir", -errno);
			fd = openat(dfd, enc.backing, O_RDONLY | O_DIRECTORY);
			if ((rc = names_diriv_create(fd, iv)) < 0)
				die("iv", rc);
			close(fd);
		} else if (f[0][0] == 'f') {
			struct format_file ff;
			size_t hl = strcmp(f[3], "-") ? strlen(f[3]) : 0;
			uint8_t *buf = malloc(hl / 2 + 1);
			int len = hl ? crypt_unhex(buf, hl / 2 + 1, f[3]) : 0;

			fd = openat(dfd, enc.backing, O_RDWR | O_CREAT | O_EXCL, 0600);
			if (fd < 0 || len < 0)
				die("create", fd < 0 ? -errno : len);
			if ((rc = format_file_create(&ff, fd, ring, atoll(f[2]))) < 0)
				die("format", rc);
			if (len && format_file_write(&ff, buf, (size_t)len, 0) != len)
				die("write", -EIO);
			free(buf);
			close(fd);
		} else if (f[0][0] == 'l') {
			char stored[LINKTARGET_STORED_MAX];

			if ((rc = linktarget_encrypt(ring, f[2], stored, sizeof(stored))) < 0)
				die("link", rc);
			if (symlinkat(stored, dfd, enc.backing) != 0)
				die("symlink", -errno);
		}
		fdpath(dfd, enc.backing, out, sizeof(out));
		printf("%s\t%s\n", f[1], out);
		close(dfd);
	}
	free(line);
	close(rootfd);
	close(pfd);
	if (a && (rc = audit_flush(a)) < 0)
		die("flush", rc);
	audit_close(a);
	keys_ring_free(ring);
	store_close(st);
	return 0;
}
"""

# A subject with nested directories, a long name, an empty file, a symlink,
# a name with spaces and non-ASCII letters, and a multi-block file.
BIRTH = 1767323045123456  # 2026-01-02T03:04:05.123456Z
LONG = "Gesprächsnotiz " + "x" * 200 + ".txt"
FILES = {
    "notes.txt": b"hello C-1\n",
    "calls/2026/call-1.wav": bytes(range(256)) * 40 + b"tail",  # 3 blocks
    "calls/2026/" + LONG: b"long name content",
    "Brief an Müller.txt": b"Sehr geehrter Herr M\xc3\xbcller\n",
    "empty.txt": b"",
}
DIRS = ["calls", "calls/2026", "calls/empty-dir"]
LINKS = {"latest": "calls/2026/call-1.wav"}


@pytest.fixture(scope="session")
def mksubject(tmp_path_factory):
    helpers.require_binaries()
    d = tmp_path_factory.mktemp("mksubject")
    src = d / "mksubject.c"
    src.write_text(MKSUBJECT_C)
    return helpers.engine_program(src, d / "mksubject", "-Wall", "-Werror")


def make_subject(mk, st, sid, parent="/customers", files=None, dirs=None, links=None,
                 audit=()):
    """Creates subject parent/sid with the given content; returns
    {"root": backing root, REL: backing path}."""
    files = FILES if files is None else files
    dirs = DIRS if dirs is None else dirs
    links = LINKS if links is None else links
    spec = [f"d\t{d}" for d in dirs]
    spec += [f"f\t{p}\t{BIRTH}\t{c.hex() if c else '-'}" for p, c in files.items()]
    spec += [f"l\t{p}\t{t}" for p, t in links.items()]
    spec += [f"a\t{uid}\t{op}\t{outcome}\t{rel}" for uid, op, outcome, rel in audit]
    r = helpers.run([mk, st.path, st.passfile, parent, sid],
                    input=("\n".join(spec) + "\n").encode(), stdin=None)
    rep = helpers.sanitizer_report(r.err)
    assert rep is None, rep
    return dict(line.split("\t", 1) for line in r.out.splitlines())


def export(st, sid, out, *args, check=True):
    return tool("export", st.path, sid, "--out", out, "--passfile", st.passfile, *args,
                check=check)


def audit_ops(st, sid):
    r = tool("audit", "log", st.path, "--passfile", st.passfile, "--json", "--subject", sid)
    return [json.loads(x) for x in r.out.splitlines()]


def tree_listing(root):
    """{relpath: ("f", bytes) | ("l", target) | ("d", None)} below root."""
    res = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                res[rel] = ("l", os.readlink(p))
            elif os.path.isdir(p):
                res[rel] = ("d", None)
            else:
                res[rel] = ("f", open(p, "rb").read())
    return res


def expected_listing(files=FILES, dirs=DIRS, links=LINKS):
    exp = {p: ("f", c) for p, c in files.items()}
    exp.update({d: ("d", None) for d in dirs})
    exp.update({p: ("l", t) for p, t in links.items()})
    return exp


@pytest.fixture
def subj(store, mksubject):
    audit = [(1000, "open", 0, "notes.txt"), (1001, "open", 13, "calls/2026/call-1.wav"),
             (1000, "write", 0, "notes.txt")]
    back = make_subject(mksubject, store, "C-1", audit=audit)
    make_subject(mksubject, store, "C-2", files={"other.txt": b"not C-1's"}, dirs=[],
                 links={})
    return store, back


def test_round_trip(subj, scratch):
    st, _back = subj
    out = scratch / "pkg"
    r = export(st, "C-1", out)
    assert "exported subject C-1: 5 files" in r.out
    assert sorted(os.listdir(out)) == ["audit.json", "files", "manifest.json", "summary.txt"]
    assert tree_listing(out / "files") == expected_listing()
    assert os.stat(out).st_mode & 0o077 == 0
    assert os.stat(out / "files" / "notes.txt").st_mode & 0o077 == 0

    m = json.loads((out / "manifest.json").read_text())
    assert m["subject"] == "C-1" and m["root"] == "/customers/C-1"
    assert m["file_count"] == 5 and m["damaged"] == 0
    by_path = {e["path"]: e for e in m["files"]}
    for p, c in FILES.items():
        e = by_path[p]
        assert e["type"] == "file"
        assert e["size"] == len(c)
        assert e["sha256"] == hashlib.sha256(c).hexdigest()
        assert e["created"] == "2026-01-02T03:04:05.123456Z"
        assert "error" not in e
    assert by_path["latest"] == {"path": "latest", "type": "symlink",
                                 "target": "calls/2026/call-1.wav"}
    assert by_path["calls/empty-dir"]["type"] == "directory"
    assert set(by_path) == set(expected_listing())
    # sha256sum agrees with the manifest (the format a subject would check).
    for p in FILES:
        assert hashlib.sha256((out / "files" / p).read_bytes()).hexdigest() == \
            by_path[p]["sha256"]

    recs = [json.loads(x) for x in (out / "audit.json").read_text().splitlines()]
    assert [(r["uid"], r["op"], r["outcome"], r["path"]) for r in recs] == [
        (1000, "open", 0, "/customers/C-1/notes.txt"),
        (1001, "open", 13, "/customers/C-1/calls/2026/call-1.wav"),
        (1000, "write", 0, "/customers/C-1/notes.txt")]
    from test_audit_cli import FIELDS
    assert all(list(r.keys()) == FIELDS for r in recs)
    s = (out / "summary.txt").read_text()
    assert "C-1" in s and "5 files" in s and "3 audit records" in s
    assert re.search(r"^\s+(\S+)\s+2\s+1\s+1\s+0\s", s, re.M), s  # uid 1000: 2 records
    assert re.search(r"^\s+(\S+)\s+1\s+1\s+0\s+1\s", s, re.M), s  # uid 1001: 1 denied
    assert "/customers/C-1/calls/2026/call-1.wav" in s
    # Nothing of the other subject.
    assert "other.txt" not in (out / "manifest.json").read_text()

    # The export is audited, and a second export's history contains it.
    ex = [r for r in audit_ops(st, "C-1") if r["op"] == "export"]
    assert len(ex) == 1 and ex[0]["outcome"] == 0
    assert ex[0]["detail"] == "files 5, damaged 0, directory"
    # (audit log opens paths with the volume keyring only, for now: the path
    # is checked below, in the package, which uses the subject's keyring.)
    out2 = scratch / "pkg2"
    r = export(st, "C-1", out2, "--json")
    res = json.loads(r.out)
    assert res["files"] == 5 and res["damaged"] == 0 and res["audit_records"] == 4
    recs = [json.loads(x) for x in (out2 / "audit.json").read_text().splitlines()]
    assert recs[-1]["op"] == "export" and recs[-1]["seq"] == ex[0]["seq"]
    assert recs[-1]["detail"] == "files 5, damaged 0, directory"
    assert recs[-1]["path"] == "/customers/C-1" and recs[-1]["subject"] == ex[0]["subject"]
    assert len([r for r in audit_ops(st, "C-1") if r["op"] == "export"]) == 2
    tool("audit", "verify", st.path, "--passfile", st.passfile)


def test_tar(subj, scratch):
    st, _back = subj
    out = scratch / "pkg.tar"
    export(st, "C-1", out)
    assert os.stat(out).st_mode & 0o077 == 0
    with tarfile.open(out) as t:
        names = {m.name.removeprefix("./"): m for m in t.getmembers()}
        got = {}
        for n, m in names.items():
            if not n.startswith("files/"):
                continue
            rel = n[len("files/"):]
            if m.issym():
                got[rel] = ("l", m.linkname)
            elif m.isdir():
                got[rel] = ("d", None)
            else:
                got[rel] = ("f", t.extractfile(m).read())
        assert got == expected_listing()
        for n in ("manifest.json", "audit.json", "summary.txt"):
            assert n in names
        m = json.loads(t.extractfile(names["manifest.json"]).read())
        assert m["file_count"] == 5
    # No staging directory (plaintext) left beside the archive.
    assert sorted(p.name for p in scratch.iterdir() if p.name.startswith(".custodian")) == []
    ex = [r for r in audit_ops(st, "C-1") if r["op"] == "export"]
    assert ex[-1]["detail"] == "files 5, damaged 0, tar"


def test_refusals(subj, scratch, mount_factory, mksubject):
    st, _back = subj
    r = export(st, "C-9", scratch / "x", check=False)
    assert r.returncode == 1
    assert r.err.strip() == "custodian: export: C-9: no such subject (or shredded)"
    assert not (scratch / "x").exists()

    busy = scratch / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    r = export(st, "C-1", busy, check=False)
    assert r.returncode == 1 and "exists and is not empty" in r.err
    assert os.listdir(busy) == ["keep"]
    (scratch / "there.tar").write_bytes(b"old")
    r = export(st, "C-1", scratch / "there.tar", check=False)
    assert r.returncode == 1 and "already exists" in r.err
    assert (scratch / "there.tar").read_bytes() == b"old"

    empty = scratch / "empty"
    empty.mkdir()
    os.chmod(empty, 0o755)
    export(st, "C-1", empty)  # an empty directory is fine, and made private
    assert (empty / "manifest.json").exists()
    assert os.stat(empty).st_mode & 0o777 == 0o700

    assert tool("export", st.path, "C-1", check=False).returncode == 2  # no --out

    tool("shred", st.path, "C-2", "--yes", "--reason", "erasure request", "--passfile",
         st.passfile)
    r = export(st, "C-2", scratch / "y", check=False)
    assert r.returncode == 1
    assert r.err.strip() == "custodian: export: C-2: no such subject (or shredded)"
    assert not (scratch / "y").exists()
    # The id created again is a new subject: none of the old files, and
    # none of the old subject's history (same hash, earlier records).
    make_subject(mksubject, st, "C-2", files={"new.txt": b"new"}, dirs=[], links={})
    export(st, "C-2", scratch / "y")
    assert tree_listing(scratch / "y" / "files") == {"new.txt": ("f", b"new")}
    assert (scratch / "y" / "audit.json").read_text() == ""
    assert any(r["op"] == "shred" for r in audit_ops(st, "C-2"))

    # mounted: the same refusals (test_export_mounted has the live export)
    m = mount_factory(st)
    r = export(st, "C-9", scratch / "z", check=False)
    m.stop()
    assert r.returncode == 1
    assert r.err.strip() == "custodian: export: C-9: no such subject (or shredded)"
    assert not (scratch / "z").exists()


def test_export_mounted(sm, scratch):
    """A DPO answers a request on a live system: the subject made through
    the mount (policy: /customers/* are subject roots) is exported while
    mounted, and the daemon records the export."""
    st = sm.store
    d = sm.mnt / "customers" / "C-77"
    os.mkdir(d)
    os.mkdir(d / "calls")
    files = {"letter.txt": b"dear custodian " * 100,
             "calls/call-1.txt": os.urandom(70000)}
    for rel, data in files.items():
        (d / rel).write_bytes(data)
    out = scratch / "live"
    r = export(st, "C-77", out, "--json")
    res = json.loads(r.out)
    assert (res["files"], res["damaged"], res["retried"]) == (2, 0, 0), res
    got = tree_listing(out / "files")
    assert got == {"calls": ("d", None), "letter.txt": ("f", files["letter.txt"]),
                   "calls/call-1.txt": ("f", files["calls/call-1.txt"])}
    m = json.loads((out / "manifest.json").read_text())
    sha = {e["path"]: e["sha256"] for e in m["files"] if e.get("sha256")}
    assert sha["letter.txt"] == hashlib.sha256(files["letter.txt"]).hexdigest()
    # the history of the subject includes what was done through the mount
    hist = [json.loads(x) for x in (out / "audit.json").read_text().splitlines()]
    assert any(h["op"] == "create" for h in hist), hist

    # the daemon recorded the export, in the subject's history (no path:
    # the daemon would seal it under the volume keys, outliving a shred)
    def exports():
        r = tool("audit", "log", st.path, "--op", "export", "--json", "--passfile",
                 st.passfile)
        return [json.loads(x) for x in r.out.splitlines() if x.strip()]
    ex = exports()
    assert len(ex) == 1 and ex[0]["outcome"] == 0, ex
    assert ex[0]["seq"] == res["audit_seq"]
    assert ex[0]["detail"] == "files 2, damaged 0, directory, mounted"
    assert "path" not in ex[0] or ex[0]["path"] is None
    assert [x["seq"] for x in audit_ops(st, "C-77") if x["op"] == "export"] == [ex[0]["seq"]]
    # the control verb refuses a malformed subject field
    for bad in ("subject=zz", "subject=" + "a" * 63, "subject=" + "a" * 65):
        code, text = helpers.control(st, f"audit-admin {os.getpid()} export 0 {bad} x")
        assert code == errno.EINVAL and "usage" in text, (bad, text)

    # tar works the same; a file changed while mounted is exported as it is now
    (d / "letter.txt").write_bytes(b"rewritten")
    r = export(st, "C-77", scratch / "live.tar")
    with tarfile.open(scratch / "live.tar") as t:
        names = t.getnames()
        letter = [n for n in names if n.endswith("files/letter.txt")]
        assert letter and t.extractfile(letter[0]).read() == b"rewritten"
    assert len(exports()) == 2
    # a file that does not read back (here: a flipped ciphertext bit, not
    # a write in progress) is read a second time, then listed as damaged
    (d / "calls" / "call-2.txt").write_bytes(b"y" * 3 * helpers.BLOCK_PLAIN)
    victim = max((os.path.join(dp, f) for dp, _dn, fs in os.walk(st.tree) for f in fs),
                 key=lambda p: os.stat(p).st_mtime_ns)
    with open(victim, "r+b") as f:
        f.seek(helpers.block_offset(1) + 30)
        b = f.read(1)
        f.seek(helpers.block_offset(1) + 30)
        f.write(bytes([b[0] ^ 0x01]))
    r = export(st, "C-77", scratch / "torn", "--json", check=False)
    assert r.returncode == 1
    res = json.loads(r.out)
    assert (res["files"], res["damaged"], res["retried"]) == (2, 1, 1), res
    assert r.err.count("damaged: /customers/C-77/calls/call-2.txt") == 1, r.err
    assert not (scratch / "torn" / "files" / "calls" / "call-2.txt").exists()
    m = json.loads((scratch / "torn" / "manifest.json").read_text())
    assert [e["path"] for e in m["files"] if e.get("error")] == ["calls/call-2.txt"]
    assert exports()[-1]["outcome"] == errno.EIO
    # the refusals hold while mounted too
    r = export(st, "C-78", scratch / "none", check=False)
    assert r.returncode == 1 and "no such subject" in r.err
    assert not (scratch / "none").exists()
    sm.stop()
    tool("audit", "verify", st.path, "--passfile", st.passfile)


def test_damaged_block(subj, scratch):
    st, back = subj
    # A name that no longer decrypts, too.
    nd, nn = os.path.split(back["notes.txt"])
    badname = os.path.join(nd, ("B" if nn[0] != "B" else "C") + nn[1:])
    os.rename(back["notes.txt"], badname)
    victim = back["calls/2026/call-1.wav"]
    with open(victim, "r+b") as f:
        f.seek(helpers.block_offset(1) + 30)
        b = f.read(1)
        f.seek(helpers.block_offset(1) + 30)
        f.write(bytes([b[0] ^ 0x01]))
    out = scratch / "pkg"
    r = export(st, "C-1", out, check=False)
    assert r.returncode == 1
    assert "damaged: /customers/C-1/calls/2026/call-1.wav" in r.err
    assert f"damaged: /customers/C-1: name: authentication failed ({badname})" in r.err
    got = tree_listing(out / "files")
    exp = expected_listing()
    del exp["calls/2026/call-1.wav"]
    del exp["notes.txt"]
    assert got == exp  # everything else, and no partial copy of the victim
    m = json.loads((out / "manifest.json").read_text())
    assert m["damaged"] == 2 and m["file_count"] == 3
    bad = [e for e in m["files"] if e.get("error")]
    assert bad == [{"path": "calls/2026/call-1.wav", "type": "file",
                    "backing": victim, "error": "damaged",
                    "reason": "authentication failed"},
                   {"path": None, "type": "name", "backing": badname, "error": "damaged",
                    "reason": "authentication failed"}]
    ex = [r for r in audit_ops(st, "C-1") if r["op"] == "export"]
    assert ex[-1]["outcome"] == 5 and ex[-1]["detail"] == "files 3, damaged 2, directory"


def test_failure_leaves_nothing(subj, scratch):
    """A package that cannot be written (full disk) is removed, staging
    directory included, and the failed attempt is audited."""
    st, _back = subj
    small = scratch / "small"
    small.mkdir()
    helpers.run(["mount", "-t", "tmpfs", "-o", "size=8k,mode=0700", "tmpfs", small])
    try:
        for name in ("pkg", "pkg.tar"):
            r = export(st, "C-1", small / name, check=False)
            assert r.returncode == 1, r.out
            assert "nothing kept" in r.err
            assert os.listdir(small) == []
    finally:
        helpers.run(["umount", small])
    r = export(st, "C-1", scratch / "nodir" / "pkg", check=False)
    assert r.returncode == 1 and not (scratch / "nodir").exists()
    ex = [r for r in audit_ops(st, "C-1") if r["op"] == "export"]
    assert [e["detail"] for e in ex] == ["failed; nothing kept"] * 2
    assert all(e["outcome"] != 0 for e in ex)
