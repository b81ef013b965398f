"""
Readable and verifiable in 2033 by a stranger (docs/ARCHIVE.md).

A demo installation backs up a day's files and a MongoDB dump with the real
binary. Then, as someone who has neither custodian nor its catalog would:
only the destination folder is copied to a clean directory, the offline
keys are rebuilt from the printed recovery sheet by typing its commands
into sh, and the reference reader (tools/cstread.py, PyNaCl and
python-zstandard) restores the day's files and the dump, checked against
the signed manifest, with no program on PATH at all. An object damaged in
the copy, an object substituted by someone holding backup.pub, a forged
restore point and a forged manifest are refused, and the rest still comes
back.
"""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import write_file
from test_daily import daily, hand_built_archive, live_tree, restored_tree, today

nacl = pytest.importorskip("nacl.signing")
pytest.importorskip("zstandard")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "vectors"))


def clinic_files(demo):
    """What the app host holds: names that need every escape, an empty file, a
    compressible invoice over 128 KiB and an incompressible scan over 64 KiB."""
    text = b"".join(b"%%PDF-1.7 INV-2026-0113 line %05d Tampa Bay OT\n" % i for i in range(4000))
    files = {
        os.path.join(demo.invoices, "INV-2026-0113.pdf"): text,
        os.path.join(demo.images, "scan 0001.jpg"): b"\xff\xd8\xff\xe0" + os.urandom(90_000),
        os.path.join(demo.bug_reports, "empty.log"): b"",
        os.path.join(demo.bug_reports, "Zoë's notes.txt"): "café\n".encode() * 50,
    }
    raw = {
        os.path.join(os.fsencode(demo.bug_reports), b"odd\nname\t\\ \xe9.txt"): b"odd name\n",
    }
    for path, data in files.items():
        write_file(path, data)
    for path, data in raw.items():
        write_file(path, data)
    os.symlink("INV-2026-0113.pdf", os.path.join(demo.invoices, "latest.pdf"))
    return {**{os.fsencode(k): v for k, v in files.items()}, **raw}


def live(demo):
    return live_tree([demo.images, demo.invoices, demo.bug_reports])


def assert_same(restored, expected):
    assert set(restored) == set(expected), (sorted(set(restored) ^ set(expected))[:5])
    for path, want in expected.items():
        got = restored[path]
        assert got[:2] == want[:2], path
        if want[0] == "file":
            assert got[2] == want[2], f"{path!r}: mtime"


def rebuild_keys_from_sheet(sheet_text, into):
    """Type the sheet's rebuild commands into sh, in an empty folder."""
    begin = sheet_text.index("#--- rebuild commands (begin) ---\n")
    end = sheet_text.index("#--- rebuild commands (end) ---\n")
    os.makedirs(into)
    p = subprocess.run(["sh", "-c", sheet_text[begin:end]], cwd=into, capture_output=True,
                       env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.decode().count(": OK") == 5, p.stdout
    return into


class Stranger:
    """A clean folder holding only a copy of the destination, the offline keys and
    the reference reader; the reader runs with nothing on PATH."""

    def __init__(self, root, dest, keys_from):
        self.root = root
        os.makedirs(root)
        shutil.copytree(dest, os.path.join(root, "destination"))
        os.makedirs(os.path.join(root, "keys"))
        for name in ("backup.key", "signing.pub", "naming.key"):
            shutil.copy2(os.path.join(keys_from, name), os.path.join(root, "keys", name))
        shutil.copy2(os.path.join(ROOT, "tools", "cstread.py"), os.path.join(root, "cstread.py"))
        self.empty_path = os.path.join(root, "no-programs")
        os.makedirs(self.empty_path)

    def read(self, *args):
        return subprocess.run(["/usr/bin/python3", "cstread.py", "--keys", "keys", *map(str, args)],
                              cwd=self.root, capture_output=True, timeout=600,
                              env={"PATH": self.empty_path, "HOME": self.root,
                                   "LANG": "C.UTF-8"})

    def ok(self, *args):
        p = self.read(*args)
        assert p.returncode == 0, f"{args}: exit {p.returncode}\n{p.stdout.decode()[-3000:]}\n" \
                                  f"{p.stderr.decode()[-3000:]}"
        assert b"naming.key does not give" not in p.stderr, p.stderr
        return p.stdout.decode()

    def path(self, *parts):
        return os.path.join(self.root, *parts)


def object_of(demo, path):
    sha, object_id, _ = demo.live_version(os.fsdecode(path))
    return sha, object_id


def test_a_stranger_in_2033_restores_a_day_from_the_destination_and_the_offline_keys(
        demo, tmp_path):
    files = clinic_files(demo)
    archive, counts = hand_built_archive()
    (tmp_path / "known.archive").write_bytes(archive)
    demo.set_option("mongodb", "dump_command", f"cat {tmp_path / 'known.archive'}")
    demo.run("scan", check=0)
    demo.run("ship", "--timeout", "120", check=0, timeout=180)
    day = today()
    first = live(demo)
    daily(demo, day, check=0)
    # A correction later that day, and the run again: attempt 2.
    invoice = os.path.join(os.fsencode(demo.invoices), b"INV-2026-0113.pdf")
    write_file(invoice, files[invoice] + b"corrected total: 101.45\n")
    demo.run("scan", check=0)
    demo.run("ship", "--timeout", "120", check=0, timeout=180)
    daily(demo, day, check=0)
    second = live(demo)

    # 2033. The app host, custodian and its catalog are gone; a copy of the destination
    # and the recovery sheet from the safe are left.
    sheet = open(os.path.join(demo.root, "keys", "recovery-sheet.txt")).read()
    typed = rebuild_keys_from_sheet(sheet, str(tmp_path / "typed-from-the-sheet"))
    for name in ("backup.key", "signing.pub", "naming.key", "signing.key", "backup.pub"):
        assert open(os.path.join(typed, name), "rb").read() == \
            open(os.path.join(demo.root, "keys", name), "rb").read(), name
    s = Stranger(str(tmp_path / "2033"), demo.dest, typed)

    out = s.ok("manifests", "destination", day)
    assert out.count("ok ") == 2 and f"{day} attempt 2" in out, out
    out = s.ok("verify", "destination", day)
    assert "FAILED" not in out and out.count(", 0 refused") == 2, out

    # The day's files, newest attempt and the first; then the dump.
    s.ok("restore-point", "destination", day, "--to", "restored")
    assert_same(restored_tree(s.path("restored")), second)
    s.ok("restore-point", "destination", day, "--attempt", "1", "--to", "restored-1")
    assert_same(restored_tree(s.path("restored-1")), first)
    out = s.ok("db", "destination", day, "-o", "mongodb.archive")
    dump = open(s.path("mongodb.archive"), "rb").read()
    assert dump == archive

    # Checked against the signed manifest by hand too, with PyNaCl alone.
    m = s.path("destination", "backups", "manifests", f"{day}.attempt-2")
    sums, text = open(m + ".sha256", "rb").read(), open(m + ".json", "rb").read()
    sig = [x for x in open(m + ".sig").read().splitlines() if x.startswith("signature: ")][0]
    pk = bytes.fromhex(open(s.path("keys", "signing.pub")).read().split("\n")[1])
    nacl.VerifyKey(pk).verify(hashlib.sha256(sums).digest() + hashlib.sha256(text).digest(),
                              bytes.fromhex(sig[len("signature: "):]))
    manifest = json.loads(text)
    assert (manifest["date"], manifest["attempt"]) == (day, 2)
    arts = {a["kind"]: a for a in manifest["artifacts"]}
    assert arts["db"]["plain_sha256"] == hashlib.sha256(dump).hexdigest()
    assert manifest["db"]["collections"] == counts
    restored_files = [p for p, v in second.items() if v[0] == "file"]
    assert manifest["files"]["files"] == len(second) and len(restored_files) == len(files)

    # One file by the path `ls` shows (escaped), one by its raw bytes as typed.
    odd = [p for p in files if b"odd\n" in p][0]
    shown = [line.split("\t")[-1] for line in s.ok("ls", "destination", day).splitlines()
             if "odd\\x0a" in line][0]
    s.ok("restore", "destination", day, shown, "--to", "one")
    assert open(os.path.join(s.path("one").encode(), os.path.basename(odd)), "rb").read() == \
        files[odd]

    # Damage and substitution in the copy: refused, the rest restored.
    scan = os.path.join(os.fsencode(demo.images), b"scan 0001.jpg")
    notes = os.path.join(os.fsencode(demo.bug_reports), "Zoë's notes.txt".encode())
    _, scan_id = object_of(demo, scan)
    _, notes_id = object_of(demo, notes)
    scan_obj = s.path("destination", "objects", scan_id[:2], scan_id)
    notes_obj = s.path("destination", "objects", notes_id[:2], notes_id)
    os.chmod(scan_obj, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(open(scan_obj, "rb").read())
    data[len(data) // 2] ^= 0x10
    open(scan_obj, "wb").write(data)
    from gen_refused_vectors import seal
    backup_pub = bytes.fromhex(open(os.path.join(typed, "backup.pub")).read().split("\n")[1])
    os.chmod(notes_obj, stat.S_IRUSR | stat.S_IWUSR)
    open(notes_obj, "wb").write(seal("café\n".encode() * 49 + b"forged\n", 0, pk=backup_pub))
    p = s.read("restore-point", "destination", day, "--to", "after-tampering")
    assert p.returncode == 1, p.stdout
    err = p.stderr.decode()
    assert "scan 0001.jpg" in err and "fails authentication" in err, err
    assert "notes.txt" in err and "substituted or wrong object" in err, err
    assert f"{len(second) - 2} restored, 2 refused" in p.stdout.decode(), p.stdout
    after = restored_tree(s.path("after-tampering"))
    assert set(after) == set(second) - {scan, notes}
    assert_same(after, {k: v for k, v in second.items() if k not in (scan, notes)})
    # The substitute is a perfectly valid container: only the signed hash tells.
    p = s.read("open", notes_obj, "-o", "substitute.bin")
    assert p.returncode == 0 and b"not proven genuine" in p.stdout, p.stdout

    # A forged restore point and a manifest re-signed with another key: refused.
    rp = [a["key"] for a in manifest["artifacts"] if a["kind"] == "files"][0]
    forged = open(s.path("mongodb.archive"), "rb").read()  # any bytes, sealed properly
    os.chmod(s.path("destination", rp), stat.S_IRUSR | stat.S_IWUSR)
    open(s.path("destination", rp), "wb").write(seal(forged, 0, pk=backup_pub))
    p = s.read("ls", "destination", day)
    assert p.returncode == 1 and b"not the one manifest" in p.stderr, p.stderr
    other = nacl.SigningKey.generate()
    new_text = text.replace(b'"backfill":false', b'"backfill":true')
    new_sig = other.sign(hashlib.sha256(sums).digest() + hashlib.sha256(new_text).digest())
    os.chmod(m + ".json", stat.S_IRUSR | stat.S_IWUSR)
    os.chmod(m + ".sig", stat.S_IRUSR | stat.S_IWUSR)
    open(m + ".json", "wb").write(new_text)
    head = open(m + ".sig").read().split("signature: ")[0]
    open(m + ".sig", "w").write(head + "signature: " + new_sig.signature.hex() + "\n")
    p = s.read("db", "destination", day, "-o", "forged.archive")
    assert p.returncode == 1 and b"signature does not verify" in p.stderr, p.stderr
    assert not os.path.exists(s.path("forged.archive"))
