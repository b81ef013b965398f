#!/usr/bin/python3
"""
cstread.py - a reference reader for custodian's backups, without custodian.

Written from docs/FORMAT.md (keys, object ids, the container) and
docs/ARCHIVE.md (the destination folder, manifests, restore points, dumps,
catalog copies, snapshots, the trust chain), not from custodian's C
sources. It needs Python 3 and two Debian packages, python3-nacl (PyNaCl,
for libsodium) and python3-zstandard; no custodian binary and no catalog:
only a copy of a destination folder and the offline keys.

Every restore is verified end to end before a byte is kept: the manifest's
Ed25519 signature (signing.pub), that it is the manifest of the date and
attempt it is stored as, the stored and plaintext SHA-256 and size of each
artifact, and each file's SHA-256 and size from the signed restore point.
What fails a check is refused and nothing of it is left behind.

    cstread.py [--keys DIR] COMMAND ...

    manifests DEST [DATE]                  list and check the daily manifests
    ls DEST DATE                           the files of DATE's restore point
    restore DEST DATE PATH... --to DIR     files by path (as `ls` shows them, or raw)
    restore-point DEST DATE --to DIR       every file and symlink of DATE
    db DEST DATE -o FILE                   the MongoDB dump (mongorestore --archive=FILE)
    catalog DEST DATE -o FILE              the catalog copy (SQLite)
    verify DEST DATE                       every artifact and object DATE's manifest leads to
    snapshot DEST [NAME] [--to DIR [--extract]]   billing-cycle packages
    open OBJECT -o FILE [--sha256 HEX --size N]   one container, by itself
    report FILE...                         a stored report's signature (FILE.sig)

DATE is YYYY-MM-DD (the day of the daily run); --attempt N picks an attempt
(default: the newest whose manifest lists what is asked). --keys DIR holds
backup.key and signing.pub (and optionally naming.key, for one more check);
--backup-key, --signing-pub and --naming-key name them one by one.

Exit status: 0 everything asked for was restored and verified; 1 something
was refused or failed (stderr says what); 2 usage.
"""
import argparse
import errno
import hashlib
import json
import os
import re
import sys
import tarfile

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public
import nacl.signing
import zstandard

PIECE = 1 << 16


class Refused(Exception):
    """Something is damaged, altered, not genuine, or not what it should be."""


class Usage(Exception):
    pass


def warn(msg):
    print(f"cstread: {msg}", file=sys.stderr)


# --------------------------------------------------------------- keys (FORMAT.md 1, 2)

def read_key(path, kind, nbytes):
    try:
        with open(path, "rb") as f:
            text = f.read(1024)
    except OSError as e:
        raise Usage(f"cannot read key file {path}: {e.strerror}")
    lines = text.split(b"\n")
    if len(lines) == 3 and lines[2] == b"":
        lines = lines[:2]
    if len(lines) != 2 or lines[0] != f"custodian {kind} v1".encode():
        raise Usage(f"{path} is not a {kind} key file (its first line should be "
                    f"'custodian {kind} v1')")
    if not re.fullmatch(rb"[0-9a-f]{%d}" % (2 * nbytes), lines[1]):
        raise Usage(f"{path}: line 2 must be {2 * nbytes} lowercase hex digits")
    return bytes.fromhex(lines[1].decode())


def key_id(pk):
    return hashlib.blake2b(pk, digest_size=32).digest()[:8]


class Keys:
    def __init__(self, backup_key=None, signing_pub=None, naming_key=None):
        self.sk = self.pk = self.signing = self.naming = None
        if backup_key:
            self.sk = read_key(backup_key, "backup-secret-key", 32)
            self.pk = sodium.crypto_scalarmult_base(self.sk)
        if signing_pub:
            self.signing = nacl.signing.VerifyKey(read_key(signing_pub, "signing-public-key", 32))
        if naming_key:
            self.naming = read_key(naming_key, "naming-key", 32)
        self.naming_warned = False

    def need(self, backup=True, signing=True):
        if backup and self.sk is None:
            raise Usage("backup.key is needed (--keys DIR or --backup-key FILE)")
        if signing and self.signing is None:
            raise Usage("signing.pub is needed (--keys DIR or --signing-pub FILE)")

    def check_object_id(self, object_id, sha256_hex):
        """FORMAT.md 3: id = BLAKE2b-256(key = naming key, data = SHA-256). An extra check:
        genuineness already follows from the signed SHA-256."""
        if self.naming is None:
            return
        want = hashlib.blake2b(bytes.fromhex(sha256_hex), key=self.naming,
                               digest_size=32).hexdigest()
        if want != object_id and not self.naming_warned:
            self.naming_warned = True
            warn(f"naming.key does not give object {object_id} from its content's SHA-256: "
                 "is it this key set's naming key? (the content itself checked out)")


# --------------------------------------------------------- the container (FORMAT.md 4, 5)

MAGIC = b"CSTDOBJ\n"
HEADER = 122
TAG_MESSAGE, TAG_FINAL = 0, 3
WINDOW_MAX = 8 << 20


def check_frame_head(h):
    """FORMAT.md 4.3: True when the zstd frame header in h is acceptable, False when more
    bytes are needed; Refused otherwise."""
    zmagic = b"\x28\xb5\x2f\xfd"
    if h[:4] != zmagic[:len(h[:4])]:
        if len(h) >= 4 and h[0] & 0xF0 == 0x50 and h[1:4] == b"\x2a\x4d\x18":
            raise Refused("the payload starts with a skippable zstd frame")
        raise Refused("the payload is not a zstd frame")
    if len(h) < 5:
        return False
    fhd = h[4]
    if fhd & 0x08:
        raise Refused("the zstd frame header has its reserved bit set")
    if not fhd & 0x04:
        raise Refused("the zstd frame has no content checksum")
    if fhd & 0x03:
        raise Refused("the zstd frame needs a dictionary")
    single = fhd >> 5 & 1
    n = single if fhd >> 6 == 0 else 1 << (fhd >> 6)
    if len(h) < 5 + (1 - single) + n:
        return False
    if not single:
        base = 1 << (10 + (h[5] >> 3))
        window = base + base // 8 * (h[5] & 7)
    else:
        window = int.from_bytes(h[5:5 + n], "little") + (256 if n == 2 else 0)
    if window > WINDOW_MAX:
        raise Refused(f"the zstd frame asks for a {window}-byte window (at most {WINDOW_MAX})")
    return True


def read_exact(f, n):
    data = f.read(n)
    while len(data) < n:
        more = f.read(n - len(data))
        if not more:
            break
        data += more
    return data


def open_container(src, sink, keys, max_size=None):
    """Open the container read from file object src, handing the plaintext to sink(bytes)
    a piece at a time. Returns (SHA-256 hex, size) of the plaintext. Refused on anything
    FORMAT.md 4.5 refuses; the plaintext seen before an error must be thrown away."""
    keys.need(signing=False)
    h = read_exact(src, HEADER)
    if h[:len(MAGIC)] != MAGIC[:len(h)]:
        raise Refused("not a custodian object (bad magic)")
    if len(h) < HEADER:
        raise Refused(f"truncated: {len(h)} of {HEADER} header bytes")
    if h[8] != 1:
        raise Refused(f"container version {h[8]}; this reader knows version 1")
    if h[9] & 0xFE:
        raise Refused(f"unknown flags 0x{h[9]:02x}")
    compressed = h[9] & 1
    ours = key_id(keys.pk)
    try:
        object_key = nacl.public.SealedBox(nacl.public.PrivateKey(keys.sk)).decrypt(h[18:98])
    except nacl.exceptions.CryptoError:
        if h[10:18] != ours:
            raise Refused(f"sealed to another key (key id {h[10:18].hex()}; this backup.key's "
                          f"is {ours.hex()}): use that key set's backup.key")
        raise Refused("the sealed object key does not open: the header is damaged")
    if h[10:18] != ours:
        raise Refused("the key id field of the header is damaged")
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, h[98:122], object_key)

    digest, size = hashlib.sha256(), 0
    z = zstandard.ZstdDecompressor(max_window_size=WINDOW_MAX).decompressobj() \
        if compressed else None
    frame_head, head_ok = b"", False

    def emit(plain):
        nonlocal size
        if not plain:
            return
        if max_size is not None and size + len(plain) > max_size:
            raise Refused(f"it holds more than the {max_size} bytes the signed list gives "
                          "(a substituted or wrong object); stopped there")
        digest.update(plain)
        size += len(plain)
        sink(plain)

    def payload(data):
        nonlocal frame_head, head_ok
        if not compressed:
            emit(data)
            return
        if not head_ok:
            frame_head += data
            if not check_frame_head(frame_head[:14]):
                return
            head_ok, data = True, frame_head
        if z.eof:
            if data:
                raise Refused("the payload goes on after its zstd frame")
            return
        try:
            emit(z.decompress(data))
        except zstandard.ZstdError as e:
            raise Refused(f"the payload is not a valid zstd frame: {e}")
        if z.eof and z.unused_data:
            raise Refused("the payload goes on after its zstd frame")

    index, tag = 0, TAG_MESSAGE
    while tag != TAG_FINAL:
        length = read_exact(src, 4)
        if len(length) < 4:
            raise Refused(f"truncated: no final chunk (it ends after chunk {index})"
                          if not length else f"truncated inside chunk {index}'s length")
        n = int.from_bytes(length, "little")
        if not 17 <= n <= 65553:
            raise Refused(f"chunk {index} has an impossible length {n}")
        ct = read_exact(src, n)
        if len(ct) < n:
            raise Refused(f"truncated inside chunk {index}")
        try:
            m, tag = sodium.crypto_secretstream_xchacha20poly1305_pull(state, ct, h)
        except nacl.exceptions.CryptoError:
            raise Refused(f"chunk {index} fails authentication (damaged or altered)")
        if tag not in (TAG_MESSAGE, TAG_FINAL):
            raise Refused(f"chunk {index} carries tag {tag}")
        payload(m)
        index += 1
    if src.read(1):
        raise Refused("data follows the final chunk")
    if compressed:
        if not head_ok:
            raise Refused("the payload ends before a whole zstd frame header")
        if not z.eof:
            raise Refused("the zstd frame in the payload is cut short")
    return digest.hexdigest(), size


def open_file(path, sink, keys, sha256=None, size=None, what=None):
    """Open the container at path; with sha256/size (from a signed list), the plaintext
    must have them: then, and only then, it is genuine."""
    what = what or path
    try:
        with open(path, "rb") as src:
            got_sha, got_size = open_container(src, sink, keys, max_size=size)
    except FileNotFoundError:
        raise Refused(f"{what}: not in the destination copy")
    except Refused as e:
        raise Refused(f"{what}: {e}")
    if size is not None and got_size != size:
        raise Refused(f"{what}: opens to {got_size} bytes, not the {size} the signed list "
                      "gives (a substituted or wrong object)")
    if sha256 is not None and got_sha != sha256:
        raise Refused(f"{what}: opens to content whose SHA-256 is not the signed one "
                      "(a substituted or wrong object)")
    return got_sha, got_size


def sha256_of(path):
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(PIECE), b""):
            h.update(piece)
            n += len(piece)
    return h.hexdigest(), n


# ------------------------------------------------------- the destination (ARCHIVE.md 2, 4)

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
KINDS = {
    "files": "backups/daily/files/{y}/{m}/{d}/restore-point-{D}{a}.tsv.cst",
    "db": "backups/daily/db/{y}/{m}/{d}/mongodb-{D}{a}.archive.cst",
    "catalog": "backups/daily/catalog/{y}/{m}/{d}/catalog-{D}{a}.db.cst",
}


def manifest_name(date, attempt):
    return date if attempt == 1 else f"{date}.attempt-{attempt}"


def artifact_key(kind, date, attempt):
    y, m, d = date.split("-")
    return KINDS[kind].format(y=y, m=m, d=d, D=date,
                              a="" if attempt == 1 else f".attempt-{attempt}")


def list_manifests(dest, date=None):
    """(date, attempt) of every NAME.json in backups/manifests, oldest first."""
    folder = os.path.join(dest, "backups", "manifests")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    found = []
    for n in names:
        m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:\.attempt-([1-9][0-9]*))?\.json", n)
        if m and (m.group(2) is None or int(m.group(2)) >= 2):
            if date is None or m.group(1) == date:
                found.append((m.group(1), int(m.group(2) or 1)))
    return sorted(found)


def read_small(path, what):
    try:
        with open(path, "rb") as f:
            data = f.read((1 << 20) + 1)
    except FileNotFoundError:
        raise Refused(f"{what} is missing")
    if len(data) > 1 << 20:
        raise Refused(f"{what} is too large to be a manifest")
    return data


def load_manifest(dest, date, attempt, keys):
    """ARCHIVE.md 4.4, steps 1 to 3. Returns the JSON, with the artifacts by kind."""
    keys.need(backup=False)
    name = manifest_name(date, attempt)
    base = os.path.join(dest, "backups", "manifests", name)
    sums = read_small(base + ".sha256", f"{name}.sha256")
    text = read_small(base + ".json", f"{name}.json")
    sig = read_small(base + ".sig", f"{name}.sig")
    sig_hex = [x[len(b"signature: "):] for x in sig.split(b"\n") if x.startswith(b"signature: ")]
    if len(sig_hex) != 1 or not re.fullmatch(rb"[0-9a-f]{128}", sig_hex[0]) or \
            not sig.startswith(b"custodian manifest-signature v1\n"):
        raise Refused(f"{name}.sig is malformed")
    message = hashlib.sha256(sums).digest() + hashlib.sha256(text).digest()
    try:
        keys.signing.verify(message, bytes.fromhex(sig_hex[0].decode()))
    except nacl.exceptions.BadSignatureError:
        raise Refused(f"manifest {name}: the signature does not verify with signing.pub "
                      "(the manifest or its signature was altered, or made with another key)")
    try:
        doc = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Refused(f"manifest {name}: the signed JSON does not parse: {e}")
    if not isinstance(doc, dict) or doc.get("date") != date or \
            doc.get("attempt", 1) != attempt:
        raise Refused(f"manifest {name}: the signed JSON is the manifest of "
                      f"{doc.get('date') if isinstance(doc, dict) else '?'} attempt "
                      f"{doc.get('attempt', 1) if isinstance(doc, dict) else '?'}: "
                      "it was put in another day's place")
    arts = doc.get("artifacts")
    if not isinstance(arts, list):
        raise Refused(f"manifest {name}: no artifacts list")
    lines = sums.split(b"\n")
    if lines[-1] != b"":
        raise Refused(f"manifest {name}.sha256 does not end with a newline")
    lines = lines[:-1]
    if len(lines) != len(arts):
        raise Refused(f"manifest {name}: .sha256 lists {len(lines)} artifacts, the JSON "
                      f"{len(arts)}")
    by_kind = {}
    for line, a in zip(lines, arts):
        m = re.fullmatch(rb"([0-9a-f]{64})  (.+)", line)
        fields = ("kind", "key", "plain_sha256", "plain_size", "stored_sha256", "stored_size")
        if not isinstance(a, dict) or any(k not in a for k in fields) or \
                a["kind"] not in KINDS or a["kind"] in by_kind or \
                a["key"] != artifact_key(a["kind"], date, attempt) or \
                not all(isinstance(a[k], int) and a[k] >= 0 for k in ("plain_size",
                                                                      "stored_size")) or \
                not all(isinstance(a[k], str) and re.fullmatch("[0-9a-f]{64}", a[k])
                        for k in ("plain_sha256", "stored_sha256")):
            raise Refused(f"manifest {name}: an artifact that is not one of this day's "
                          f"and attempt's: {a!r}")
        if m is None or m.group(1).decode() != a["stored_sha256"] or \
                m.group(2).decode("utf-8", "replace") != a["key"]:
            raise Refused(f"manifest {name}: .sha256 and the JSON disagree about {a['key']}")
        by_kind[a["kind"]] = a
    doc["_artifacts"] = by_kind
    doc["_name"] = name
    return doc


def pick_manifest(dest, date, attempt, keys, kind):
    """The manifest to restore `kind` of date from: the attempt asked for, or the newest
    whose manifest lists that kind. A newer manifest that does not verify stops it."""
    if not DATE_RE.fullmatch(date):
        raise Usage(f"{date}: a date is YYYY-MM-DD")
    if attempt is not None:
        doc = load_manifest(dest, date, attempt, keys)
        if kind not in doc["_artifacts"]:
            raise Refused(f"manifest {doc['_name']} lists no {kind} artifact "
                          f"({kind} status: {doc.get(kind, {}).get('status', 'unknown')})")
        return doc
    found = [a for d, a in list_manifests(dest, date)]
    if not found:
        raise Refused(f"no manifest for {date} in {dest}/backups/manifests")
    for a in reversed(found):
        try:
            doc = load_manifest(dest, date, a, keys)
        except Refused as e:
            raise Refused(f"{e}; name --attempt N to use an earlier attempt of {date}")
        if kind in doc["_artifacts"]:
            return doc
        warn(f"{doc['_name']} lists no {kind} artifact; trying the attempt before")
    raise Refused(f"no manifest of {date} lists a {kind} artifact")


def open_artifact(dest, doc, kind, sink, keys):
    """ARCHIVE.md 4.4 step 4: the stored file, then its plaintext, against the manifest."""
    a = doc["_artifacts"][kind]
    path = os.path.join(dest, a["key"])
    try:
        sha, size = sha256_of(path)
    except FileNotFoundError:
        raise Refused(f"{a['key']} is missing")
    if sha != a["stored_sha256"] or size != a["stored_size"]:
        raise Refused(f"{a['key']}: the stored file is not the one manifest {doc['_name']} "
                      "signed (damaged or replaced)")
    return open_file(path, sink, keys, a["plain_sha256"], a["plain_size"], what=a["key"])


# -------------------------------------------------------- restore points (ARCHIVE.md 5)

def escape(raw):
    """ARCHIVE.md 5.3."""
    out, i = [], 0
    while i < len(raw):
        b = raw[i]
        n = utf8_len(raw, i)
        if b == 0x5C:
            out.append("\\\\")
            i += 1
        elif n == 0 or b < 0x20 or b == 0x7F or (n == 2 and b == 0xC2 and raw[i + 1] < 0xA0):
            for k in range(max(n, 1)):
                out.append("\\x%02x" % raw[i + k])
            i += max(n, 1)
        else:
            out.append(raw[i:i + n].decode("utf-8"))
            i += n
    return "".join(out)


def utf8_len(raw, i):
    b = raw[i]
    if b < 0x80:
        return 1
    for need, lo, hi, low_cp in ((2, 0xC2, 0xDF, 0x80), (3, 0xE0, 0xEF, 0x800),
                                 (4, 0xF0, 0xF4, 0x10000)):
        if lo <= b <= hi:
            seq = raw[i:i + need]
            if len(seq) < need or any(c & 0xC0 != 0x80 for c in seq[1:]):
                return 0
            try:
                cp = ord(seq.decode("utf-8"))
            except UnicodeDecodeError:
                return 0
            return need if cp >= low_cp else 0
    return 0


def unescape(text):
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
        elif text[i + 1:i + 2] == "\\":
            out += b"\\"
            i += 2
        elif text[i + 1:i + 2] == "x" and re.fullmatch("[0-9a-fA-F]{2}", text[i + 2:i + 4]):
            v = int(text[i + 2:i + 4], 16)
            if v == 0:
                raise ValueError("\\x00 in a path")
            out.append(v)
            i += 4
        else:
            raise ValueError(f"a lone backslash at {i}")
    return bytes(out)


def parse_restore_point(data, date, attempt):
    """The entries of a restore point (a list of dicts), checked line by line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the restore point is not UTF-8")
    if not text.endswith("\n"):
        raise Refused("the restore point does not end with a newline")
    lines = text[:-1].split("\n")
    head = lines[0].split("\t")
    if head[0] not in ("custodian restore-point v1", "custodian restore-point v2"):
        raise Refused(f"not a restore point this reader knows: {head[0][:60]!r}")
    fields = dict(f.split("=", 1) for f in head[1:] if "=" in f)
    if fields.get("date") != date or int(fields.get("attempt", "1")) != attempt:
        raise Refused(f"the restore point is {fields.get('date')} attempt "
                      f"{fields.get('attempt', '1')}'s, not {date} attempt {attempt}'s")
    entries, last = [], None
    for number, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        try:
            if f[0] == "file" and len(f) == 6 and re.fullmatch("[0-9a-f]{64}", f[1]) and \
                    re.fullmatch("[0-9a-f]{64}", f[4]) and re.fullmatch("[0-9]+", f[2]) and \
                    re.fullmatch("-?[0-9]+", f[3]):
                e = {"kind": "file", "sha256": f[1], "size": int(f[2]), "mtime_ns": int(f[3]),
                     "object_id": f[4], "shown": f[5], "path": unescape(f[5])}
            elif f[0] == "symlink" and len(f) == 7 and f[1] == "-" and f[2] == "0" and \
                    f[4] == "-" and re.fullmatch("-?[0-9]+", f[3]):
                e = {"kind": "symlink", "mtime_ns": int(f[3]), "shown": f[5],
                     "path": unescape(f[5]), "target": unescape(f[6])}
            else:
                raise ValueError("not a file or symlink line")
            if not e["path"].startswith(b"/") or (e["kind"] == "symlink" and not e["target"]):
                raise ValueError("not an absolute path")
        except ValueError as why:
            raise Refused(f"restore point line {number} is malformed: {why}")
        if last is not None and e["path"] <= last:
            raise Refused(f"restore point line {number} is out of order")
        last = e["path"]
        entries.append(e)
    return fields, entries


def load_restore_point(dest, date, attempt, keys):
    doc = pick_manifest(dest, date, attempt, keys, "files")
    chunks = []
    open_artifact(dest, doc, "files", chunks.append, keys)
    fields, entries = parse_restore_point(b"".join(chunks), date, doc.get("attempt", 1))
    return doc, fields, entries


# ----------------------------------------------------- writing beneath a folder, safely

def open_dir_beneath(root, parts):
    """A descriptor of root/parts..., made 0700 where missing, never through a symlink."""
    os.makedirs(root, mode=0o700, exist_ok=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            if part in (b"", b".", b".."):
                raise Refused(f"a path with an empty, . or .. component: {parts!r}")
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Refused(f"{escape(b'/'.join(parts))} is a symlink or not a folder below "
                          f"{root}: never followed")
        raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def restore_object_to(dest, keys, target_dir, rel, entry):
    """Open entry's object into target_dir/rel (raw bytes, no leading /): written under a
    temporary name, checked, then linked to its name; never replaces anything."""
    parts = rel.split(b"/")
    dfd = open_dir_beneath(target_dir, parts[:-1])
    tmp = b".cstread-" + os.urandom(6).hex().encode()
    try:
        if os.path.lexists(os.path.join(os.fsencode(target_dir), rel)):
            raise Refused(f"{escape(rel)} exists already in {target_dir}: not replaced")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as out:
                object_id = entry["object_id"]
                open_file(os.path.join(dest, "objects", object_id[:2], object_id), out.write,
                          keys, entry["sha256"], entry["size"], what=f"object {object_id}")
                out.flush()
                os.fsync(out.fileno())
            os.utime(tmp, ns=(entry["mtime_ns"], entry["mtime_ns"]), dir_fd=dfd)
            os.link(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
        finally:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except FileNotFoundError:
                pass
        keys.check_object_id(entry["object_id"], entry["sha256"])
    except FileExistsError:
        raise Refused(f"{escape(rel)} exists already in {target_dir}: not replaced")
    finally:
        os.close(dfd)


def restore_symlink_to(target_dir, rel, entry):
    parts = rel.split(b"/")
    dfd = open_dir_beneath(target_dir, parts[:-1])
    try:
        os.symlink(entry["target"], parts[-1], dir_fd=dfd)
        os.utime(parts[-1], ns=(entry["mtime_ns"], entry["mtime_ns"]), dir_fd=dfd,
                 follow_symlinks=False)
    except FileExistsError:
        raise Refused(f"{escape(rel)} exists already in {target_dir}: not replaced")
    finally:
        os.close(dfd)


def new_output(path):
    """A file of ours to write a plaintext into; never an existing one."""
    try:
        return open(path, "xb")
    except FileExistsError:
        raise Refused(f"{path} exists already: not replaced")


def write_checked(path, producer):
    """producer(write) fills path; on a refusal the partial file is removed."""
    out = new_output(path)
    try:
        with out:
            result = producer(out.write)
            out.flush()
            os.fsync(out.fileno())
        return result
    except BaseException:
        os.unlink(path)
        raise


# ------------------------------------------------------------------------- commands

def cmd_manifests(args, keys):
    keys.need(backup=False)
    found = list_manifests(args.dest, args.date)
    if not found:
        raise Refused(f"no manifests in {args.dest}/backups/manifests"
                      + (f" for {args.date}" if args.date else ""))
    failed = 0
    for date, attempt in found:
        try:
            doc = load_manifest(args.dest, date, attempt, keys)
        except Refused as e:
            print(f"FAILED {manifest_name(date, attempt)}: {e}")
            failed += 1
            continue
        arts = ", ".join(f"{k} {a['plain_size']} bytes" for k, a in doc["_artifacts"].items())
        extra = f", a backfill made on {doc.get('made_on')}" if doc.get("backfill") else ""
        print(f"ok {doc['_name']}: {date} attempt {attempt}{extra}: {arts or 'no artifacts'}")
    return 1 if failed else 0


def cmd_ls(args, keys):
    doc, fields, entries = load_restore_point(args.dest, args.date, args.attempt, keys)
    print(f"# {doc['_name']}: restore point of {args.date} attempt {doc.get('attempt', 1)}, "
          f"{len(entries)} entries")
    for e in entries:
        if e["kind"] == "file":
            print(f"file\t{e['size']}\t{e['sha256']}\t{e['shown']}")
        else:
            print(f"symlink\t-\t-\t{e['shown']} -> {escape(e['target'])}")
    return 0


def match_entries(entries, wanted):
    """Each PATH as typed: the escaped form `ls` shows, or the raw bytes; both readings
    naming different entries is refused, never guessed."""
    chosen = []
    for w in wanted:
        by_shown = [e for e in entries if e["shown"] == w]
        by_raw = [e for e in entries if e["path"] == os.fsencode(w)]
        hits = {id(e): e for e in by_shown + by_raw}
        if len(hits) > 1:
            raise Usage(f"{w} names two paths: {by_shown[0]['shown']} (as escaped) and "
                        f"{escape(by_raw[0]['path'])} (as typed); type the one you mean in "
                        "its escaped form")
        if not hits:
            raise Refused(f"{w} is not in the restore point")
        chosen.append(next(iter(hits.values())))
    return chosen


def restore_entries(args, keys, entries, full_paths):
    failed = 0
    for e in entries:
        rel = e["path"].lstrip(b"/") if full_paths else e["path"].rsplit(b"/", 1)[-1]
        try:
            if e["kind"] == "file":
                restore_object_to(args.dest, keys, args.to, rel, e)
            else:
                restore_symlink_to(args.to, rel, e)
            print(f"ok {e['shown']}")
        except Refused as why:
            print(f"REFUSED {e['shown']}: {why}", file=sys.stderr)
            failed += 1
    print(f"{len(entries) - failed} restored, {failed} refused, into {args.to}")
    return 1 if failed else 0


def cmd_restore(args, keys):
    _, _, entries = load_restore_point(args.dest, args.date, args.attempt, keys)
    return restore_entries(args, keys, match_entries(entries, args.paths), False)


def cmd_restore_point(args, keys):
    _, _, entries = load_restore_point(args.dest, args.date, args.attempt, keys)
    return restore_entries(args, keys, entries, True)


def cmd_artifact(kind):
    def run(args, keys):
        doc = pick_manifest(args.dest, args.date, args.attempt, keys, kind)
        sha, size = write_checked(args.output,
                                  lambda w: open_artifact(args.dest, doc, kind, w, keys))
        print(f"ok {doc['_artifacts'][kind]['key']}: {size} bytes, SHA-256 {sha}, as "
              f"manifest {doc['_name']} signed; written to {args.output}")
        return 0
    return run


def cmd_verify(args, keys):
    """Everything the day's manifests lead to: artifacts, and every object of the
    restore point, opened and hashed; nothing written."""
    found = [a for d, a in list_manifests(args.dest, args.date)]
    if args.attempt is not None:
        found = [a for a in found if a == args.attempt]
    if not found:
        raise Refused(f"no manifest for {args.date}")
    failed = 0
    for attempt in found:
        try:
            doc = load_manifest(args.dest, args.date, attempt, keys)
        except Refused as e:
            print(f"FAILED {manifest_name(args.date, attempt)}: {e}")
            failed += 1
            continue
        for kind in doc["_artifacts"]:
            chunks = []
            try:
                open_artifact(args.dest, doc, kind,
                              chunks.append if kind == "files" else (lambda b: None), keys)
                print(f"ok {doc['_artifacts'][kind]['key']}")
            except Refused as e:
                print(f"FAILED {e}")
                failed += 1
                continue
            if kind != "files":
                continue
            try:
                _, entries = parse_restore_point(b"".join(chunks), args.date, attempt)
            except Refused as e:
                print(f"FAILED {doc['_artifacts'][kind]['key']}: {e}")
                failed += 1
                continue
            bad = 0
            for e in entries:
                if e["kind"] != "file":
                    continue
                oid = e["object_id"]
                try:
                    open_file(os.path.join(args.dest, "objects", oid[:2], oid), lambda b: None,
                              keys, e["sha256"], e["size"], what=f"{e['shown']} (object {oid})")
                    keys.check_object_id(oid, e["sha256"])
                except Refused as why:
                    print(f"FAILED {why}")
                    bad += 1
            print(f"{'ok' if not bad else 'FAILED'} {len(entries)} entries of "
                  f"{doc['_name']}'s restore point, {bad} refused")
            failed += bad
    return 1 if failed else 0


# -------------------------------------------------------- snapshots (ARCHIVE.md 8)

CYCLES = os.path.join("backups", "snapshots", "billing-cycles")


def escape_label(label):
    """ARCHIVE.md 8.1."""
    raw, out, i, cut = label.encode("utf-8", "surrogateescape"), b"", 0, 0
    while i < len(raw):
        n = utf8_len(raw, i)
        b = raw[i]
        if n == 0 or b < 0x20 or b == 0x7F or b in b"/\\%~" or (i == 0 and b == 0x2E):
            out += b"%%%02X" % b
            i += 1
        else:
            out += raw[i:i + n]
            i += n
        if len(out) <= 180:
            cut = len(out)
    if len(out) > 200:
        out = out[:cut] + b"~" + hashlib.sha256(raw).hexdigest()[:16].encode()
    return out.decode("utf-8")


def read_snapshot_sig(path, keys):
    text = read_small(path, os.path.basename(path))
    lines = text.decode("utf-8", "replace").split("\n")
    if lines[0] != "custodian snapshot-signature v1" or lines[-1] != "":
        raise Refused(f"{os.path.basename(path)} is not a snapshot signature")
    fields = dict(x.split(": ", 1) for x in lines[1:-1] if ": " in x)
    need = ("package", "package-sha256", "sealed-sha256", "signature")
    if any(k not in fields for k in need) or \
            not all(re.fullmatch("[0-9a-f]{64}", fields[k])
                    for k in ("package-sha256", "sealed-sha256")) or \
            not re.fullmatch("[0-9a-f]{128}", fields["signature"]):
        raise Refused(f"{os.path.basename(path)} is malformed")
    message = bytes.fromhex(fields["package-sha256"]) + bytes.fromhex(fields["sealed-sha256"])
    try:
        keys.signing.verify(message, bytes.fromhex(fields["signature"]))
    except nacl.exceptions.BadSignatureError:
        raise Refused(f"{os.path.basename(path)}: the signature does not verify with "
                      "signing.pub")
    if os.path.basename(path) != fields["package"] + ".sig":
        raise Refused(f"{os.path.basename(path)} signs {fields['package']}: it was put in "
                      "another package's place")
    for k in ("package-size", "sealed-size"):
        fields[k] = int(fields[k]) if re.fullmatch("[0-9]+", fields.get(k, "")) else None
    return fields


def find_snapshots(dest, name):
    base = os.path.join(dest, CYCLES)
    sigs = []
    for year in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for n in sorted(os.listdir(os.path.join(base, year))):
            if n.endswith(".tar.zst.sig"):
                sigs.append(os.path.join(base, year, n))
    if name is None:
        return sigs
    pkg = name if name.endswith(".tar.zst") else None
    prefix = f"snapshot_{escape_label(name)}_"
    hits = [s for s in sigs if os.path.basename(s)[:-len(".sig")] == pkg or
            (pkg is None and os.path.basename(s).startswith(prefix))]
    if not hits:
        raise Refused(f"no billing-cycle package {name} in {base}")
    return hits


def safe_member_name(name):
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Refused(f"the package holds an unsafe member name {name!r}")
    return parts


def parse_sha256sums(text):
    sums = {}
    for line in text.split("\n")[:-1]:
        escaped = line.startswith("\\")
        if escaped:
            line = line[1:]
        m = re.fullmatch("([0-9a-f]{64})  (.+)", line)
        if not m:
            raise Refused(f"SHA256SUMS line {line[:80]!r} is malformed")
        name = m.group(2)
        if escaped:
            name = re.sub(r"\\(.)", lambda x: {"n": "\n", "\\": "\\"}[x.group(1)], name)
        sums[name] = m.group(1)
    return sums


def extract_package(package_path, into, dest, keys):
    """Unpack a verified .tar.zst into `into` (a new folder), check SHA256SUMS and
    snapshot.json, and bring each refs.tsv file back from its object."""
    os.makedirs(into, mode=0o700)
    digests = {}
    with open(package_path, "rb") as raw:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    raise Refused(f"the package holds {member.name!r}, which is not a file")
                parts = safe_member_name(member.name)
                dfd = open_dir_beneath(into, [p.encode() for p in parts[:-1]])
                try:
                    fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                                 os.O_NOFOLLOW, 0o600, dir_fd=dfd)
                finally:
                    os.close(dfd)
                h = hashlib.sha256()
                with os.fdopen(fd, "wb") as out:
                    src = tar.extractfile(member)
                    for piece in iter(lambda: src.read(PIECE), b""):
                        h.update(piece)
                        out.write(piece)
                digests[member.name] = (h.hexdigest(), member.size)
    try:
        sums = parse_sha256sums(open(os.path.join(into, "SHA256SUMS"), encoding="utf-8").read())
    except FileNotFoundError:
        raise Refused("the package has no SHA256SUMS")
    if set(sums) != set(digests) - {"SHA256SUMS"}:
        raise Refused("SHA256SUMS does not list exactly the package's other members")
    for name, sha in sums.items():
        if digests[name][0] != sha:
            raise Refused(f"member {name}: its SHA-256 is not the one SHA256SUMS gives")
    manifest = json.load(open(os.path.join(into, "snapshot.json"), encoding="utf-8"))
    refs = []
    for f in manifest.get("files", []):
        if f["in"] == "package":
            if digests.get("files/" + f["path"]) != (f["sha256"], f["size"]):
                raise Refused(f"files/{f['path']} is not what snapshot.json says")
        else:
            refs.append(f)
    lines = open(os.path.join(into, "refs.tsv"), encoding="utf-8").read().split("\n")
    if lines[0] != "path\tversion\tobject_id\tsha256\tsize" or lines[-1] != "":
        raise Refused("refs.tsv is malformed")
    listed = {}
    for line in lines[1:-1]:
        path, version, object_id, sha, size = line.split("\t")
        listed[unescape(path)] = (object_id, sha, int(size))
    if {os.fsencode(f["path"]) for f in refs} != set(listed):
        raise Refused("refs.tsv and snapshot.json do not list the same references")
    for rel, (object_id, sha, size) in sorted(listed.items()):
        entry = {"object_id": object_id, "sha256": sha, "size": size, "shown": escape(rel),
                 "mtime_ns": int(os.stat(package_path).st_mtime_ns)}
        restore_object_to(dest, keys, into, b"files/" + rel, entry)
    return manifest, len(listed)


def cmd_snapshot(args, keys):
    keys.need(backup=args.to is not None)
    sigs = find_snapshots(args.dest, args.name)
    if not sigs:
        raise Refused(f"no billing-cycle packages in {args.dest}")
    failed = 0
    for sig_path in sigs:
        try:
            fields = read_snapshot_sig(sig_path, keys)
            sealed = sig_path[:-len(".sig")] + ".cst"
            sha, size = sha256_of(sealed)
            if sha != fields["sealed-sha256"] or fields["sealed-size"] not in (None, size):
                raise Refused(f"{os.path.basename(sealed)} is not the sealed package the "
                              "signature names (damaged or replaced)")
            if args.to is None:
                print(f"ok {fields['package']}: signature and sealed package verified")
                continue
            os.makedirs(args.to, mode=0o700, exist_ok=True)
            out = os.path.join(args.to, fields["package"])
            write_checked(out, lambda w: open_file(sealed, w, keys, fields["package-sha256"],
                                                   fields["package-size"],
                                                   what=os.path.basename(sealed)))
            print(f"ok {fields['package']}: signature, sealed and opened package verified; "
                  f"written to {out}")
            if args.extract:
                into = out[:-len(".tar.zst")]
                manifest, n_refs = extract_package(out, into, args.dest, keys)
                print(f"ok {fields['package']}: unpacked into {into}, SHA256SUMS and "
                      f"snapshot.json checked, {n_refs} refs.tsv files restored"
                      + ("" if manifest.get("complete") else "; INCOMPLETE: see missing.txt"))
        except Refused as e:
            print(f"FAILED {os.path.basename(sig_path)}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_open(args, keys):
    if (args.sha256 is None) != (args.size is None):
        raise Usage("--sha256 and --size go together")
    sha, size = write_checked(args.output, lambda w: open_file(args.object, w, keys,
                                                               args.sha256, args.size))
    print(f"ok {args.object}: {size} bytes, SHA-256 {sha}")
    if args.sha256 is None:
        print("intact, but not proven genuine: anyone with backup.pub can seal an object; "
              "give --sha256 and --size from a signed list (ARCHIVE.md section 3)")
    return 0


def cmd_report(args, keys):
    """ARCHIVE.md section 9: FILE.sig is Ed25519 over the header line and SHA-256(FILE)."""
    keys.need(backup=False)
    failed = 0
    for path in args.files:
        try:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 16), b""):
                    h.update(block)
            sig = read_small(path + ".sig", os.path.basename(path) + ".sig")
            header = b"custodian report-signature v1\n"
            fields = {}
            for line in sig.split(b"\n")[1:]:
                name, sep, value = line.partition(b": ")
                if sep:
                    fields[name.decode("ascii", "replace")] = value
            sig_hex = fields.get("signature", b"")
            if not sig.startswith(header) or not re.fullmatch(rb"[0-9a-f]{128}", sig_hex):
                raise Refused(f"{os.path.basename(path)}.sig is not a report signature")
            digest = h.digest()
            if "sha256" in fields and fields["sha256"] != digest.hex().encode():
                raise Refused(f"{os.path.basename(path)} is not the file that was signed (its "
                              "SHA-256 differs from the one its .sig names)")
            try:
                keys.signing.verify(header + digest, bytes.fromhex(sig_hex.decode()))
            except nacl.exceptions.BadSignatureError:
                raise Refused(f"{os.path.basename(path)}: the signature does not verify with "
                              "signing.pub (changed after signing, or signed by another key)")
            print(f"ok {path}: signed by signing.pub")
        except Refused as e:
            print(f"FAILED {path}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


# --------------------------------------------------------------------------- main

def main(argv=None):
    p = argparse.ArgumentParser(prog="cstread.py", description=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", metavar="DIR", help="folder holding backup.key, signing.pub "
                   "and optionally naming.key")
    p.add_argument("--backup-key", metavar="FILE")
    p.add_argument("--signing-pub", metavar="FILE")
    p.add_argument("--naming-key", metavar="FILE")
    sub = p.add_subparsers(dest="command", required=True)

    def day(name, help_text):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("dest", help="the copy of the destination folder")
        s.add_argument("date", help="YYYY-MM-DD, the day of the daily run")
        s.add_argument("--attempt", type=int)
        return s

    s = sub.add_parser("manifests", help="list and check the daily manifests")
    s.add_argument("dest")
    s.add_argument("date", nargs="?")
    s.set_defaults(run=cmd_manifests)
    day("ls", "the files of a day's restore point").set_defaults(run=cmd_ls)
    s = day("restore", "files of a day by path, into DIR/<name>")
    s.add_argument("paths", nargs="+", metavar="PATH")
    s.add_argument("--to", required=True, metavar="DIR")
    s.set_defaults(run=cmd_restore)
    s = day("restore-point", "every file of a day, into DIR/<absolute path>")
    s.add_argument("--to", required=True, metavar="DIR")
    s.set_defaults(run=cmd_restore_point)
    for kind, what in (("db", "the MongoDB dump"), ("catalog", "the catalog copy")):
        s = day(kind, what)
        s.add_argument("-o", "--output", required=True, metavar="FILE")
        s.set_defaults(run=cmd_artifact(kind))
    day("verify", "everything a day's manifests lead to").set_defaults(run=cmd_verify)
    s = sub.add_parser("snapshot", help="billing-cycle packages: check, restore, unpack")
    s.add_argument("dest")
    s.add_argument("name", nargs="?", help="a label, or a package's file name")
    s.add_argument("--to", metavar="DIR")
    s.add_argument("--extract", action="store_true")
    s.set_defaults(run=cmd_snapshot)
    s = sub.add_parser("open", help="one container by itself")
    s.add_argument("object")
    s.add_argument("-o", "--output", required=True, metavar="FILE")
    s.add_argument("--sha256")
    s.add_argument("--size", type=int)
    s.set_defaults(run=cmd_open)
    s = sub.add_parser("report", help="a stored report's signature (FILE.sig beside FILE)")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.set_defaults(run=cmd_report)
    args = p.parse_args(argv)

    def pick(explicit, name):
        if explicit:
            return explicit
        if args.keys and os.path.exists(os.path.join(args.keys, name)):
            return os.path.join(args.keys, name)
        return None
    try:
        if getattr(args, "extract", False) and not args.to:
            raise Usage("--extract needs --to DIR")
        keys = Keys(pick(args.backup_key, "backup.key"), pick(args.signing_pub, "signing.pub"),
                    pick(args.naming_key, "naming.key"))
        return args.run(args, keys)
    except Usage as e:
        warn(str(e))
        return 2
    except Refused as e:
        warn(f"refused: {e}")
        return 1
    except OSError as e:
        warn(f"{e.filename or ''}: {e.strerror}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
