"""
The reference reader (tools/cstread.py) and the commands of docs/ARCHIVE.md
section 10 against the released vectors (tests/vectors/): containers it
must open or refuse, daily runs written by custodian before and after the
attempts, billing-cycle packages. Nothing here runs custodian: what is
checked is that the documents and the reader written from them are enough
to get every byte back, and to refuse what is not genuine.

Needs Debian's python3-nacl, python3-zstandard, openssl, sqlite3 and GNU tar.
"""
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys

import pytest

nacl = pytest.importorskip("nacl.bindings")
pytest.importorskip("zstandard")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
READER = os.path.join(ROOT, "tools", "cstread.py")
VECTORS = os.path.join(ROOT, "tests", "vectors")
ARCHIVE_MD = os.path.join(ROOT, "docs", "ARCHIVE.md")
DATE = "2026-11-20"
sys.path.insert(0, VECTORS)


def reader(*args, cwd=None, env=None):
    """Run the reader as a stranger would: Debian's python, no custodian on PATH."""
    return subprocess.run(["/usr/bin/python3", READER, *map(str, args)], capture_output=True,
                          cwd=cwd, env=env or {"PATH": "/nonexistent", "LANG": "C.UTF-8"},
                          timeout=300)


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout.decode()[-3000:]}\n" \
                              f"stderr: {p.stderr.decode()[-3000:]}"
    return p.stdout.decode()


def sha(data):
    return hashlib.sha256(data).hexdigest()


def copy_vector(name, tmp_path):
    """A writable copy of a vector (the released files are never touched)."""
    dst = tmp_path / name
    shutil.copytree(os.path.join(VECTORS, name), dst)
    return dst


def restore_point_entries(text):
    """(kind, sha256, size, mtime_ns, object id, escaped path, target) per entry line."""
    out = []
    for line in text.split("\n")[1:-1]:
        f = line.split("\t")
        out.append((f[0], f[1], f[2], f[3], f[4], f[5], f[6] if len(f) > 6 else None))
    return out


def unescape(text):
    out, i = bytearray(), 0
    while i < len(text):
        if text[i] != "\\":
            out += text[i].encode()
            i += 1
        elif text[i + 1] == "\\":
            out += b"\\"
            i += 2
        else:
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
    return bytes(out)


# ------------------------------------------------------------------ containers

def test_container_vector_opens_only_with_its_signed_hash(tmp_path):
    v = os.path.join(VECTORS, "container-v1")
    plain = open(os.path.join(v, "plain.bin"), "rb").read()
    out = ok(reader("--backup-key", f"{v}/backup.key", "open", f"{v}/object.bin",
                    "-o", tmp_path / "plain", "--sha256", sha(plain), "--size", len(plain)))
    assert (tmp_path / "plain").read_bytes() == plain
    assert "not proven genuine" not in out
    out = ok(reader("--backup-key", f"{v}/backup.key", "open", f"{v}/object-empty.bin",
                    "-o", tmp_path / "empty"))
    assert (tmp_path / "empty").read_bytes() == b""
    assert "intact, but not proven genuine" in out  # no signed hash given
    # the right bytes' hash, the wrong object: refused, nothing left behind
    p = reader("--backup-key", f"{v}/backup.key", "open", f"{v}/object-empty.bin",
               "-o", tmp_path / "wrong", "--sha256", sha(plain), "--size", len(plain))
    assert p.returncode == 1 and b"substituted or wrong object" in p.stderr, p.stderr
    assert not (tmp_path / "wrong").exists()


def test_refused_vectors_get_their_verdicts(tmp_path):
    d = os.path.join(VECTORS, "container-v1-refused")
    key = os.path.join(VECTORS, "container-v1", "backup.key")
    rows = [line.split("\t") for line in open(os.path.join(d, "expected.tsv")).read()
            .splitlines()[1:]]
    assert len(rows) >= 29
    for name, verdict, want, why in rows:
        out = tmp_path / name
        p = reader("--backup-key", key, "open", os.path.join(d, name), "-o", out)
        if verdict == "open":
            assert p.returncode == 0, (name, p.stderr)
            assert sha(out.read_bytes()) == want, name
            continue
        assert p.returncode == 1, (name, verdict, p.stdout, p.stderr)
        assert not out.exists(), f"{name}: a refused object left its plaintext behind"
        mismatch = b"sealed to another key" in p.stderr
        assert mismatch == (verdict == "key-mismatch"), (name, verdict, p.stderr)


# --------------------------------------------------------------------- daily runs

def check_daily_vector(name, tmp_path, attempts):
    v = os.path.join(VECTORS, name)
    keys, dest = f"{v}/keys", f"{v}/destination"
    out = ok(reader("--keys", keys, "manifests", dest))
    assert out.count("ok ") == len(attempts) and "FAILED" not in out, out
    out = ok(reader("--keys", keys, "verify", dest, DATE))
    assert "FAILED" not in out and out.count("0 refused") == len(attempts), out
    db = open(f"{v}/expected/mongodb-{DATE}.archive", "rb").read()
    for attempt in attempts:
        suffix = "" if attempt == 1 else f".attempt-{attempt}"
        rp_text = open(f"{v}/expected/restore-point-{DATE}{suffix}.tsv").read()
        entries = restore_point_entries(rp_text)
        to = tmp_path / f"{name}-{attempt}"
        ok(reader("--keys", keys, "restore-point", dest, DATE, "--attempt", attempt,
                  "--to", to))
        restored = {}
        for dirpath, _, names in os.walk(os.fsencode(to)):
            for n in names:
                p = os.path.join(dirpath, n)
                restored[b"/" + os.path.relpath(p, os.fsencode(to))] = p
        assert set(restored) == {unescape(e[5]) for e in entries}, name
        for kind, digest, size, mtime, _, path, target in entries:
            p = restored[unescape(path)]
            st = os.lstat(p)
            assert st.st_mtime_ns == int(mtime), path
            if kind == "symlink":
                assert os.readlink(p) == unescape(target), path
            else:
                body = open(p, "rb").read()
                assert sha(body) == digest and len(body) == int(size), path
                assert body == open(f"{v}/expected/files/{digest}", "rb").read(), path
        ok(reader("--keys", keys, "db", dest, DATE, "--attempt", attempt,
                  "-o", tmp_path / f"{name}-{attempt}.archive"))
        assert (tmp_path / f"{name}-{attempt}.archive").read_bytes() == db

        # The catalog copy of that attempt: the query of ARCHIVE.md section 7 gives back
        # every line of the restore point (the tables are what the page says).
        cat = tmp_path / f"{name}-{attempt}.db"
        ok(reader("--keys", keys, "catalog", dest, DATE, "--attempt", attempt, "-o", cat))
        at = int(re.search(r"\tat=(\d+)", rp_text.split("\n")[0]).group(1))
        c = sqlite3.connect(f"file:{cat}?mode=ro", uri=True)
        try:
            for kind, digest, size, mtime, object_id, path, target in entries:
                row = c.execute(
                    "SELECT v.kind, lower(hex(v.sha256)), v.size, v.object_id, v.link_target "
                    "FROM versions v JOIN paths p ON p.id = v.path_id WHERE p.path = ? "
                    "AND v.first_seen <= ? AND (v.deleted_at IS NULL OR v.deleted_at > ?) "
                    "ORDER BY v.first_seen DESC, v.id DESC LIMIT 1",
                    (unescape(path), at, at)).fetchone()
                if kind == "file":
                    assert row[:4] == ("file", digest, int(size), object_id), path
                else:
                    assert row[0] == "symlink" and bytes(row[4]) == unescape(target), path
            schema = c.execute("PRAGMA user_version").fetchone()[0]
        finally:
            c.close()
        assert schema >= 3
    return keys, dest


def test_daily_v2_two_attempts_restore_and_match_the_catalog_copy(tmp_path):
    keys, dest = check_daily_vector("daily-v2", tmp_path, [1, 2])
    # Without --attempt, the newest: attempt 2's version of the changed invoice.
    out = ok(reader("--keys", keys, "ls", dest, DATE))
    assert "attempt 2, 13 entries" in out, out
    path = "/tmp/custodian-vector-v2/app/data/invoices/INV-2026-0113.pdf"
    ok(reader("--keys", keys, "restore", dest, DATE, path, "--to", tmp_path / "new"))
    ok(reader("--keys", keys, "restore", dest, DATE, path, "--attempt", 1,
              "--to", tmp_path / "old"))
    new, old = (tmp_path / "new" / "INV-2026-0113.pdf").read_bytes(), \
        (tmp_path / "old" / "INV-2026-0113.pdf").read_bytes()
    assert new.endswith(b"corrected total: 101.45\n") and new.startswith(old)
    # A path as `ls` shows it (escaped) and raw, as typed.
    ok(reader("--keys", keys, "restore", dest, DATE,
              "/tmp/custodian-vector-v2/app/data/bug-reports/new\\x0aline.txt",
              "--to", tmp_path / "esc"))
    ok(reader("--keys", keys, "restore", dest, DATE,
              os.fsdecode(b"/tmp/custodian-vector-v2/app/data/bug-reports/latin1-\xe9t\xe9.txt"),
              "--to", tmp_path / "raw"))
    assert (tmp_path / "esc" / "new\nline.txt").read_bytes() == b"a name with a newline\n"
    assert os.listdir(os.fsencode(tmp_path / "raw")) == [b"latin1-\xe9t\xe9.txt"]
    # Nothing is ever replaced.
    p = reader("--keys", keys, "restore", dest, DATE, path, "--to", tmp_path / "new")
    assert p.returncode == 1 and b"exists already" in p.stderr, p.stderr
    assert (tmp_path / "new" / "INV-2026-0113.pdf").read_bytes() == new
    # naming.key given: object ids recomputed, no warning; another naming key: a warning.
    p = reader("--keys", keys, "verify", dest, DATE)
    assert p.returncode == 0 and b"naming.key does not give" not in p.stderr
    other = tmp_path / "other-naming.key"
    other.write_text("custodian naming-key v1\n" + "ab" * 32 + "\n")
    p = reader("--backup-key", f"{keys}/backup.key", "--signing-pub", f"{keys}/signing.pub",
               "--naming-key", other, "verify", dest, DATE)
    assert p.returncode == 0 and b"naming.key does not give" in p.stderr, p.stderr


def test_daily_v1_from_before_the_attempts(tmp_path):
    check_daily_vector("daily-v1", tmp_path, [1])


# ------------------------------------------------------------------------- tampering

def seal(payload, pk):
    """A valid container of payload, as anyone holding backup.pub can make one."""
    from gen_refused_vectors import seal as seal_with
    return seal_with(payload, 0, pk=pk)


def test_tampered_and_substituted_vectors_are_refused(tmp_path):
    v = copy_vector("daily-v2", tmp_path)
    keys, dest = v / "keys", v / "destination"
    pk = bytes.fromhex(open(keys / "backup.pub").read().split("\n")[1])
    entries = restore_point_entries(open(v / "expected" /
                                         f"restore-point-{DATE}.attempt-2.tsv").read())
    victim = next(e for e in entries if e[5].endswith("/INV-2026-0114.pdf"))
    obj = dest / "objects" / victim[4][:2] / victim[4]

    # an object sealed by someone else, with other content, in the genuine one's place
    genuine = obj.read_bytes()
    obj.write_bytes(seal(b"%PDF-1.7 a forged invoice\n", pk))
    p = reader("--keys", keys, "restore-point", dest, DATE, "--to", tmp_path / "a")
    assert p.returncode == 1, p.stdout
    assert b"INV-2026-0114.pdf" in p.stderr and b"substituted or wrong object" in p.stderr, p.stderr
    assert b"12 restored, 1 refused" in p.stdout, p.stdout
    assert not os.path.exists(tmp_path / "a" / victim[5].lstrip("/"))
    # a damaged one: one bit flipped in its last chunk
    obj.write_bytes(genuine[:-5] + bytes([genuine[-5] ^ 1]) + genuine[-4:])
    p = reader("--keys", keys, "restore", dest, DATE, unescape(victim[5]).decode(),
               "--to", tmp_path / "b")
    assert p.returncode == 1 and b"fails authentication" in p.stderr, p.stderr
    assert os.listdir(tmp_path / "b") == []
    obj.write_bytes(genuine)

    # the restore point replaced by a well-formed, sealed forgery pointing at the forged object
    rp = dest / "backups/daily/files/2026/11/20/restore-point-2026-11-20.attempt-2.tsv.cst"
    forged_text = open(v / "expected" / f"restore-point-{DATE}.attempt-2.tsv").read().replace(
        victim[1], sha(b"forged")).encode()
    rp_genuine = rp.read_bytes()
    rp.write_bytes(seal(forged_text, pk))
    p = reader("--keys", keys, "ls", dest, DATE)
    assert p.returncode == 1 and b"not the one manifest" in p.stderr, p.stderr
    rp.write_bytes(rp_genuine)

    # the manifest JSON altered (a byte of a hash), then re-signed with another key
    mj = dest / "backups/manifests/2026-11-20.attempt-2.json"
    text = mj.read_bytes()
    mj.write_bytes(text.replace(b'"attempt":2', b'"attempt":2 '))
    p = reader("--keys", keys, "db", dest, DATE, "-o", tmp_path / "db")
    assert p.returncode == 1 and b"signature does not verify" in p.stderr, p.stderr
    assert b"--attempt" in p.stderr  # it does not quietly fall back to attempt 1
    assert not (tmp_path / "db").exists()
    out = reader("--keys", keys, "manifests", dest).stdout.decode()
    assert "FAILED 2026-11-20.attempt-2" in out and "ok 2026-11-20:" in out, out
    ok(reader("--keys", keys, "db", dest, DATE, "--attempt", 1, "-o", tmp_path / "db1"))
    mj.write_bytes(text)

    # another day's genuine manifest stored under this day's names
    m = dest / "backups" / "manifests"
    for ext in ("sha256", "json", "sig"):
        shutil.copyfile(m / f"{DATE}.{ext}", m / f"2026-11-21.{ext}")
    p = reader("--keys", keys, "manifests", dest, "2026-11-21")
    assert p.returncode == 1 and b"another day's place" in p.stdout, p.stdout

    # a signing.pub that is not the key set's: nothing verifies
    fake = tmp_path / "fake.pub"
    fake.write_text("custodian signing-public-key v1\n" + "11" * 32 + "\n")
    p = reader("--backup-key", keys / "backup.key", "--signing-pub", fake, "ls", dest, DATE)
    assert p.returncode == 1 and b"signature does not verify" in p.stderr, p.stderr


# -------------------------------------------------------------------------- snapshots

def test_snapshot_packages_restore_and_unpack(tmp_path):
    v = os.path.join(VECTORS, "snapshot-v1")
    keys, dest = f"{v}/keys", f"{v}/destination"
    out = ok(reader("--keys", keys, "snapshot", dest))
    assert out.count("ok ") == 2, out
    for label, package in (("2026-10-A", "snapshot_2026-10-A_20261015.tar.zst"),
                           ("Oct 2026/B", "snapshot_Oct 2026%2FB_20261029.tar.zst")):
        to = tmp_path / label.replace("/", "_")
        out = ok(reader("--keys", keys, "snapshot", dest, label, "--to", to, "--extract"))
        assert (to / package).read_bytes() == open(f"{v}/expected/{package}", "rb").read()
        into = to / package[:-len(".tar.zst")]
        manifest = json.loads((into / "snapshot.json").read_text())
        for f in manifest["files"]:
            body = (into / "files" / f["path"]).read_bytes()
            assert sha(body) == f["sha256"] and body == \
                open(f"{v}/expected/files/{f['sha256']}", "rb").read(), f["path"]
        p = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=into,
                           capture_output=True)
        assert p.returncode == 0, p.stdout
        refs = (into / "refs.tsv").read_text().splitlines()[1:]
        assert (len(refs), manifest["complete"]) == ((0, True) if label == "2026-10-A"
                                                      else (2, False)), refs
        assert f"{len(refs)} refs.tsv files restored" in out, out

    # a package whose signature was altered, and one put in another's place
    w = copy_vector("snapshot-v1", tmp_path)
    year = w / "destination/backups/snapshots/billing-cycles/2026"
    sig = year / "snapshot_2026-10-A_20261015.tar.zst.sig"
    sig.write_text(sig.read_text().replace("package-size: 7972", "package-size: 7973")
                   .replace("package-sha256: b", "package-sha256: c"))
    p = reader("--keys", w / "keys", "snapshot", w / "destination", "2026-10-A",
               "--to", tmp_path / "x")
    assert p.returncode == 1 and b"does not verify" in p.stderr, p.stderr
    b_cst = year / "snapshot_Oct 2026%2FB_20261029.tar.zst.cst"
    shutil.copyfile(year / "snapshot_2026-10-A_20261015.tar.zst.cst", b_cst)
    p = reader("--keys", w / "keys", "snapshot", w / "destination", "Oct 2026/B")
    assert p.returncode == 1 and b"not the sealed package" in p.stderr, p.stderr


# ---------------------------------------------------- the commands of ARCHIVE.md §10

def doc_blocks():
    """{name: text} of the code blocks marked <!-- tested: NAME --> in ARCHIVE.md."""
    text = open(ARCHIVE_MD).read()
    return {m.group(1): m.group(2) for m in re.finditer(
        r"<!-- tested: (\S+) -->\n```[a-z]*\n(.*?)\n```", text, re.S)}


def test_archive_md_commands_verify_and_restore_by_hand(tmp_path):
    blocks = doc_blocks()
    assert set(blocks) == {"verify-by-hand", "cstsig.py", "cstopen.py", "restore-by-hand"}
    for name in ("cstsig.py", "cstopen.py"):
        (tmp_path / name).write_text(blocks[name] + "\n")
    v = os.path.join(VECTORS, "daily-v2")
    entries = restore_point_entries(open(f"{v}/expected/restore-point-{DATE}.tsv").read())
    target = next(e for e in entries if e[5].endswith("/new\\x0aline.txt"))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "DEST": f"{v}/destination",
           "KEYS": f"{v}/keys", "D": DATE, "FILE": target[5]}
    script = "set -e\n" + blocks["verify-by-hand"] + "\n" + blocks["restore-by-hand"] + "\n"
    p = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       timeout=120)
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    assert "Signature Verified Successfully" in out, out
    assert out.count(": OK") == 4, out  # three artifacts, then the restored file
    manifest = json.load(open(f"{v}/destination/backups/manifests/{DATE}.json"))
    plain = {a["kind"]: a["plain_sha256"] for a in manifest["artifacts"]}
    assert f'"date":"{DATE}"' in out and plain["files"] in out and plain["db"] in out, out
    assert (tmp_path / "restored.bin").read_bytes() == b"a name with a newline\n"
    assert (tmp_path / "mongodb.archive").read_bytes() == \
        open(f"{v}/expected/mongodb-{DATE}.archive", "rb").read()

    # the same commands on an altered manifest stop at the signature
    w = copy_vector("daily-v2", tmp_path)
    j = w / "destination" / "backups" / "manifests" / f"{DATE}.json"
    j.write_bytes(j.read_bytes().replace(b'"files":12', b'"files":13'))
    work = tmp_path / "altered"
    work.mkdir()
    p = subprocess.run(["bash", "-c", "set -e\n" + blocks["verify-by-hand"]], cwd=work,
                       env={**env, "DEST": str(w / "destination")}, capture_output=True)
    assert p.returncode != 0 and b"Signature Verified Successfully" not in p.stdout

    # cstsig.py: the genuine trio, and the altered one
    m = f"{v}/destination/backups/manifests/{DATE}.attempt-2"
    p = subprocess.run(["/usr/bin/python3", tmp_path / "cstsig.py", f"{v}/keys/signing.pub",
                        f"{m}.sha256", f"{m}.json", f"{m}.sig"], capture_output=True)
    assert p.returncode == 0 and p.stdout == b"signature OK\n", p.stderr
    a = w / "destination" / "backups" / "manifests" / DATE
    p = subprocess.run(["/usr/bin/python3", tmp_path / "cstsig.py", f"{v}/keys/signing.pub",
                        f"{a}.sha256", f"{a}.json", f"{a}.sig"], capture_output=True)
    assert p.returncode != 0 and b"BadSignatureError" in p.stderr

    # cstopen.py: every verdict of the refused vectors (it refuses, or opens to the hash)
    d = os.path.join(VECTORS, "container-v1-refused")
    key = os.path.join(VECTORS, "container-v1", "backup.key")
    for line in open(os.path.join(d, "expected.tsv")).read().splitlines()[1:]:
        name, verdict, want, _ = line.split("\t")
        p = subprocess.run(["/usr/bin/python3", tmp_path / "cstopen.py", key,
                            os.path.join(d, name)], capture_output=True)
        if verdict == "open":
            assert p.returncode == 0 and sha(p.stdout) == want, (name, p.stderr)
        else:
            assert p.returncode != 0, (name, verdict)
    p = subprocess.run(["/usr/bin/python3", tmp_path / "cstopen.py", key,
                        os.path.join(VECTORS, "container-v1", "object.bin")], capture_output=True)
    assert p.stdout == open(os.path.join(VECTORS, "container-v1", "plain.bin"), "rb").read()
