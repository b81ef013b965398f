#!/usr/bin/python3
"""
gen_daily_vectors.py - write a daily-run test vector: the destination folder
a real custodian binary leaves after daily runs over a fixed set of files,
with the keys that read it and the plaintexts a reader must get back.

    gen_daily_vectors.py v2 BINARY OUT_DIR   # tests/vectors/daily-v2 (attempts 1 and 2)
    gen_daily_vectors.py v1 BINARY OUT_DIR   # tests/vectors/daily-v1, with a binary built
                                             # from before the attempts (commit 7d4598c)

Run once per vector when it was made; the output is committed and never
regenerated (sealing is randomised, times are real: a rerun differs).
Keys: backup.pub, backup.key and naming.key are those of
tests/vectors/container-v1/; the signing key is the Ed25519 key whose seed
is SHA-256("custodian test signing key v1"). Needs python3-nacl,
python3-zstandard and python3-bson (for the dump; the e2e tests' archive
builder is reused).
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

import nacl.bindings as sodium
import nacl.public
import nacl.signing
import zstandard

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
DATE = "2026-11-20"
SIGNING_SEED = hashlib.sha256(b"custodian test signing key v1").digest()
MTIME = 1795000000_123456789  # 2026-11-18T...Z, a fixed mtime for every file

# (folder under app/data, name as bytes, content); names exercise the escaping.
TEXT = b"".join(b"%%PDF-1.7 line %06d: invoice INV-2026-0113, Tampa Bay OT LLC, G0151 x2\n" % i
                for i in range(1850))
FILES = [
    ("invoices", b"INV-2026-0113.pdf", TEXT),  # 133 KB (over 128 KiB): zstd, no content size
    ("invoices", b"INV-2026-0114.pdf", hashlib.shake_256(b"0114").digest(70000)),  # raw
    ("images", b"scan 001.jpg", b"\xff\xd8\xff\xe0JFIF" + hashlib.shake_256(b"scan").digest(3000)),
    ("bug-reports", b"empty.txt", b""),
    ("bug-reports", "notes-Zoë.txt".encode(), "café au lait, Zoë's notes\n".encode() * 20),
    ("bug-reports", b"back\\slash.txt", b"a name with a backslash\n"),
    ("bug-reports", b"new\nline.txt", b"a name with a newline\n"),
    ("bug-reports", b"tab\there.txt", b"a name with a tab\n"),
    ("bug-reports", b"latin1-\xe9t\xe9.txt", b"a name that is not UTF-8\n"),
    ("bug-reports", b"c1-\xc2\x85.txt", b"a name with a C1 control (U+0085)\n"),
]
SYMLINKS = [
    ("invoices", b"latest.pdf", b"INV-2026-0113.pdf"),
    ("images", b"dangling", b"../gone/\xff\\x"),
]


def key_file(kind, key):
    return "custodian %s v1\n%s\n" % (kind, key.hex())


def write_keys(keys):
    for name in ("backup.pub", "backup.key", "naming.key"):
        shutil.copyfile(os.path.join(HERE, "container-v1", name), os.path.join(keys, name))
    signing = nacl.signing.SigningKey(SIGNING_SEED)
    with open(os.path.join(keys, "signing.key"), "w") as f:
        f.write(key_file("signing-secret-key", SIGNING_SEED + bytes(signing.verify_key)))
    with open(os.path.join(keys, "signing.pub"), "w") as f:
        f.write(key_file("signing-public-key", bytes(signing.verify_key)))
    for name in ("backup.key", "naming.key", "signing.key"):
        os.chmod(os.path.join(keys, name), 0o600)
    for name in ("backup.pub", "signing.pub"):
        os.chmod(os.path.join(keys, name), 0o644)
    sheet = os.path.join(keys, "recovery-sheet.txt")
    if os.path.exists(sheet):
        os.unlink(sheet)


def set_option(conf, section, key, value):
    lines = open(conf).read().splitlines()
    out, current, done = [], None, False
    for line in lines:
        s = line.strip()
        if s.startswith("["):
            if current == section and not done:
                out.append(f"{key} = {value}")
                done = True
            current = s.strip("[]")
        elif current == section and s.split("=")[0].strip() == key:
            continue
        out.append(line)
    if not done:
        if current != section:
            out.append(f"[{section}]")
        out.append(f"{key} = {value}")
    open(conf, "w").write("\n".join(out) + "\n")


def open_object(path, sk):
    """A plain decoder (docs/FORMAT.md section 5), independent of tools/cstread.py."""
    obj = open(path, "rb").read()
    key = nacl.public.SealedBox(nacl.public.PrivateKey(sk)).decrypt(obj[18:98])
    st = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(st, obj[98:122], key)
    at, out, tag = 122, b"", 0
    while tag != 3:
        n = int.from_bytes(obj[at:at + 4], "little")
        m, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(st, obj[at + 4:at + 4 + n],
                                                                 obj[:122])
        out += m
        at += 4 + n
    assert at == len(obj)
    if obj[9] & 1:
        out = zstandard.ZstdDecompressor().decompress(out)
    return out


def run(binary, conf, *args):
    p = subprocess.run([binary, "-c", conf, *args], capture_output=True, timeout=300)
    if p.returncode != 0:
        raise SystemExit(f"{args} failed ({p.returncode}):\n{p.stdout.decode()}\n"
                         f"{p.stderr.decode()}")
    return p.stdout


def write_tree(data, files):
    for folder, name, content in files:
        path = os.path.join(os.fsencode(data), folder.encode(), name)
        with open(path, "wb") as f:
            f.write(content)
        os.utime(path, ns=(MTIME, MTIME))


def main(version, binary, out_dir):
    from test_daily import hand_built_archive

    binary = os.path.abspath(binary)
    # A fixed root, so that the paths in the restore points read the same in every vector.
    root = f"/tmp/custodian-vector-{version}"
    if os.path.exists(root):
        shutil.rmtree(root)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([binary, "init", "--demo", root], check=True, capture_output=True)
        conf = os.path.join(root, "custodian.conf")
        write_keys(os.path.join(root, "keys"))
        set_option(conf, "agent", "daily_at", "23:59")
        archive, _ = hand_built_archive()
        with open(os.path.join(tmp, "known.archive"), "wb") as f:
            f.write(archive)
        set_option(conf, "mongodb", "dump_command", f"cat {tmp}/known.archive")
        data = os.path.join(root, "app", "data")
        write_tree(data, FILES)
        for folder, name, target in SYMLINKS:
            link = os.path.join(os.fsencode(data), folder.encode(), name)
            os.symlink(target, link)
            os.utime(link, ns=(MTIME, MTIME), follow_symlinks=False)
        daily = ["daily", "--date", DATE] + (["--backfill"] if version == "v2" else [])
        run(binary, conf, "scan")
        run(binary, conf, "ship", "--timeout", "60")
        run(binary, conf, *daily)
        contents = {hashlib.sha256(c).hexdigest(): c for _, _, c in FILES}
        if version == "v2":
            # Attempt 2 of the same date: one file changed, one added.
            more = [("invoices", b"INV-2026-0113.pdf", TEXT + b"corrected total: 101.45\n"),
                    ("invoices", b"INV-2026-0115.pdf", b"%PDF-1.7 a new invoice\n" * 30)]
            write_tree(data, more)
            contents.update({hashlib.sha256(c).hexdigest(): c for _, _, c in more})
            run(binary, conf, "scan")
            run(binary, conf, "ship", "--timeout", "60")
            run(binary, conf, *daily)

        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        shutil.copytree(os.path.join(root, "destination"), os.path.join(out_dir, "destination"))
        os.makedirs(os.path.join(out_dir, "keys"))
        for name in ("backup.pub", "backup.key", "naming.key", "signing.key", "signing.pub"):
            shutil.copyfile(os.path.join(root, "keys", name), os.path.join(out_dir, "keys", name))
        expected = os.path.join(out_dir, "expected")
        os.makedirs(os.path.join(expected, "files"))
        for sha, content in contents.items():
            with open(os.path.join(expected, "files", sha), "wb") as f:
                f.write(content)
        with open(os.path.join(expected, f"mongodb-{DATE}.archive"), "wb") as f:
            f.write(archive)
        sk = bytes.fromhex(open(os.path.join(root, "keys", "backup.key")).read().split()[3])
        files_dir = os.path.join(out_dir, "destination", "backups", "daily", "files")
        for dirpath, _, names in os.walk(files_dir):
            for n in names:
                plain = open_object(os.path.join(dirpath, n), sk)
                with open(os.path.join(expected, n[:-len(".cst")]), "wb") as f:
                    f.write(plain)
    shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("v1", "v2"):
        raise SystemExit(__doc__)
    sys.exit(main(*sys.argv[1:]))
