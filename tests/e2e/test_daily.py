"""
The daily protection run (`custodian daily --date D`, agent/daily.c) and
what brings it back (`restore db`, `restore point`, `verify --manifest`),
against real servers: the MongoDB wire-protocol test server
(tests/servers/mongo_server.py, a 20,000-document billing data set), Ceph's
RADOS Gateway (S3) and OpenSSH (SFTP).

The mongodump archives that come back are decoded here independently of
custodian (python3-bson, a CRC-64/XZ written out below, the format of
/work/shared/docs/mongodump-archive-format.md) and compared with the data
set the server says it serves (--dump-expected). Nothing here trusts
custodian's own reading of its output: the manifests are checked with the
real sha256sum and an Ed25519 implementation of python3-cryptography, and
the catalog copy is opened with tests/vectors/decode_container_v1.py.
Needs Debian's python3-bson and python3-cryptography.
"""
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import time
from collections import OrderedDict

import pytest

from conftest import PLAIN_BIN, Demo, sha256_file, write_file
from servers import free_ports, mongo_server
from test_remote import s3_section, set_destinations, sftp_section

bson = pytest.importorskip("bson")
from bson import json_util  # noqa: E402
from bson.binary import Binary, UuidRepresentation  # noqa: E402
from bson.codec_options import CodecOptions  # noqa: E402
from bson.decimal128 import Decimal128  # noqa: E402
from bson.int64 import Int64  # noqa: E402
from bson.objectid import ObjectId  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DECODE_CONTAINER = os.path.normpath(os.path.join(HERE, "..", "vectors", "decode_container_v1.py"))
DECODE = CodecOptions(document_class=OrderedDict,
                      uuid_representation=UuidRepresentation.UNSPECIFIED)
ENCODE = CodecOptions(document_class=OrderedDict)
MAGIC = 0x8199E26D
TERM = b"\xff\xff\xff\xff"
MAX_BSON = 16 * 1024 * 1024
COLLECTIONS = ["agencies", "clinicians", "patients", "billing_periods", "invoices",
               "timesheets", "adjustments", "unpaid_invoices"]
DATE = "2026-11-20"


# ------------------------------------------------------------------ helpers

def _crc64_table():
    poly = 0xC96C5795D7870F42  # ECMA-182, reflected
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


CRC64_TABLE = _crc64_table()
ONES = 0xFFFFFFFFFFFFFFFF


def crc64_xz(data, crc=0):
    """CRC-64/XZ (Go's crc64.ECMA): reflected ECMA-182, init and xorout all ones.
    Chainable: crc64_xz(b, crc64_xz(a)) == crc64_xz(a + b)."""
    t = CRC64_TABLE
    c = crc ^ ONES
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ ONES


def test_crc64_xz_check_value():
    assert crc64_xz(b"123456789") == 0x995DC9BBDF1939FA
    assert crc64_xz(b"6789", crc64_xz(b"12345")) == 0x995DC9BBDF1939FA
    assert crc64_xz(b"") == 0


class Archive:
    """A mongodump --archive, parsed the way mongo-tools' parser reads it."""

    def __init__(self, data):
        self.data = data
        assert len(data) >= 8, f"archive of {len(data)} bytes"
        magic = struct.unpack_from("<I", data, 0)[0]
        assert magic == MAGIC, f"magic {magic:#x}, expected {MAGIC:#x}"
        self.pos = 4
        # the prelude: header, metadata*, TERM
        self.header_raw = self._doc()
        self.header = bson.decode(self.header_raw, DECODE)
        self.metadata = []
        while data[self.pos:self.pos + 4] != TERM:
            self.metadata.append(bson.decode(self._doc(), DECODE))
        self.pos += 4
        # namespace blocks: header, documents*, TERM; EOF only at a block boundary
        self.blocks = []
        while self.pos < len(data):
            assert data[self.pos:self.pos + 4] != TERM, \
                f"consecutive terminators at byte {self.pos}"
            header = bson.decode(self._doc(), DECODE)
            docs = []
            while data[self.pos:self.pos + 4] != TERM:
                assert self.pos + 4 <= len(data), f"archive truncated in a block at {self.pos}"
                docs.append(self._doc())
            self.pos += 4
            self.blocks.append((header, docs))

    def _doc(self):
        d = self.data
        assert self.pos + 4 <= len(d), f"archive truncated at byte {self.pos}"
        n = struct.unpack_from("<i", d, self.pos)[0]
        assert 5 <= n <= MAX_BSON, f"BSON length {n} at byte {self.pos}"
        assert self.pos + n <= len(d), f"archive truncated in a document at byte {self.pos}"
        raw = d[self.pos:self.pos + n]
        assert raw[-1] == 0, f"BSON document at {self.pos} does not end in 00"
        self.pos += n
        return raw

    def check_structure(self):
        """What mongorestore checks (and mongodump's own output satisfies):
        header and metadata fields and types, block headers, EOF/CRC, every
        prelude namespace closed once. Returns {(db, coll): [doc bytes]}."""
        h = self.header
        assert list(h) == ["concurrent_collections", "version", "server_version",
                           "tool_version"], list(h)
        assert type(h["concurrent_collections"]) is int and h["concurrent_collections"] >= 1
        assert h["version"] == "0.1"
        assert isinstance(h["server_version"], str) and h["server_version"]
        assert isinstance(h["tool_version"], str) and h["tool_version"]
        # BSON type bytes of the header (int32 0x10, strings 0x02)
        assert self.header_raw[4] == 0x10, "concurrent_collections is not an int32"
        prelude = OrderedDict()
        for m in self.metadata:
            assert list(m) == ["db", "collection", "metadata", "size", "type"], list(m)
            for k in ("db", "collection", "metadata", "type"):
                assert isinstance(m[k], str), (k, m)
            assert type(m["size"]) is int, "size must be an int32"
            assert m["collection"], "an empty collection name"
            ns = (m["db"], m["collection"])
            assert ns not in prelude, f"{ns} listed twice in the prelude"
            prelude[ns] = m
        docs = {ns: [] for ns in prelude}
        closed = {}
        for header, block_docs in self.blocks:
            assert list(header) == ["db", "collection", "EOF", "CRC"], list(header)
            assert isinstance(header["db"], str) and isinstance(header["collection"], str)
            assert type(header["EOF"]) is bool
            assert type(header["CRC"]) is Int64, "CRC must be an int64"
            ns = (header["db"], header["collection"])
            assert ns in prelude, f"no intent for namespace {ns}"
            assert ns not in closed, f"a block for {ns} after its EOF"
            if header["EOF"]:
                assert block_docs == [], f"documents after the EOF header of {ns}"
                closed[ns] = int(header["CRC"]) & ONES
            else:
                assert header["CRC"] == 0, f"EOF=false header of {ns} with CRC {header['CRC']}"
                docs[ns].extend(block_docs)
        assert set(closed) == set(prelude), \
            f"collections never closed: {set(prelude) - set(closed)}"
        for ns, raw_docs in docs.items():
            crc = 0
            for raw in raw_docs:
                crc = crc64_xz(raw, crc)
            assert closed[ns] == crc, f"{ns}: CRC {closed[ns]:#x} in the archive, " \
                                      f"{crc:#x} over its {len(raw_docs)} documents"
        self.prelude = prelude
        return docs


def to_plain(value):
    """OrderedDicts to dicts, recursively (for order-insensitive comparison)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def metadata_of(entry):
    """A prelude entry's metadata.json: (key order, values as BSON types)."""
    text = entry["metadata"]
    order = list(json.loads(text, object_pairs_hook=OrderedDict))
    values = json_util.loads(text, json_options=json_util.JSONOptions(
        document_class=OrderedDict, uuid_representation=UuidRepresentation.UNSPECIFIED))
    return order, values


def daily_row(demo, date):
    rows = demo.query("SELECT status, ran, manifest_written, offsite_verified, db_status, "
                      "files_status, catalog_status, error FROM daily_runs WHERE date = ?", date)
    assert len(rows) == 1, f"daily_runs rows for {date}: {rows}"
    keys = ["status", "ran", "manifest_written", "offsite_verified", "db_status",
            "files_status", "catalog_status", "error"]
    return dict(zip(keys, rows[0]))


def artifact_kinds(demo, date):
    return {r[0] for r in demo.query("SELECT kind FROM artifacts WHERE date = ?", date)}


def copies(demo, date):
    return set(demo.query("SELECT kind, dest FROM artifact_copies WHERE date = ?", date))


def layout(date):
    y, m, d = date.split("-")
    return {
        "db": f"backups/daily/db/{y}/{m}/{d}/mongodb-{date}.archive.cst",
        "files": f"backups/daily/files/{y}/{m}/{d}/restore-point-{date}.tsv.cst",
        "catalog": f"backups/daily/catalog/{y}/{m}/{d}/catalog-{date}.db.cst",
        "manifest-sha256": f"backups/manifests/{date}.sha256",
        "manifest-json": f"backups/manifests/{date}.json",
        "manifest-sig": f"backups/manifests/{date}.sig",
    }


def files_under(root):
    """Relative paths of every file under root (not folders)."""
    out = set()
    for dirpath, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


def today():
    """Today in the demo's zone (America/New_York): the one date `daily --date`
    takes without --backfill."""
    import datetime
    import zoneinfo
    return datetime.datetime.now(zoneinfo.ZoneInfo("America/New_York")).strftime("%Y-%m-%d")


def daily(demo, date, check, binary=None):
    """`daily --date date`: a past date (the tests' fixed DATE) is a backfill."""
    t = time.monotonic()
    extra = ["--backfill"] if date != today() else []
    p = demo.run("daily", "--date", date, *extra, check=check, timeout=300, binary=binary)
    return p, time.monotonic() - t


def write_script(path, text):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + text)
    os.chmod(path, 0o755)
    return str(path)


def live_tree(roots):
    """{absolute path bytes: ("file", bytes, mtime_ns) | ("symlink", target)} of
    everything under the watched folders."""
    out = {}
    for root in roots:
        for dirpath, _, names in os.walk(os.fsencode(root)):
            for n in names:
                p = os.path.join(dirpath, n)
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode):
                    out[p] = ("symlink", os.readlink(p))
                else:
                    with open(p, "rb") as f:
                        out[p] = ("file", f.read(), st.st_mtime_ns)
    return out


def restored_tree(dir):
    out = {}
    base = os.fsencode(str(dir))
    for dirpath, _, names in os.walk(base):
        for n in names:
            p = os.path.join(dirpath, n)
            original = b"/" + os.path.relpath(p, base)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[original] = ("symlink", os.readlink(p))
            else:
                with open(p, "rb") as f:
                    out[original] = ("file", f.read(), st.st_mtime_ns)
    return out


def assert_same_tree(restored, live):
    missing = sorted(set(live) - set(restored))
    extra = sorted(set(restored) - set(live))
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    for p, v in live.items():
        r = restored[p]
        assert r[:2] == v[:2], f"{p!r}: restored {r[0]} differs from the live one"
        if v[0] == "file":
            assert r[2] == v[2], f"{p!r}: mtime {r[2]}, the live file's is {v[2]}"


def assert_archive_is_the_servers_data(archive, expected, server_version):
    """archive (bytes) is a well-formed mongodump archive of exactly the
    server's --dump-expected data set: prelude, metadata, indexes, documents."""
    a = Archive(archive)
    docs = a.check_structure()
    assert a.header["server_version"] == server_version
    assert [ns for ns in a.prelude] == [("billing", c) for c in expected]

    for name, (want, want_docs) in expected.items():
        entry = a.prelude[("billing", name)]
        assert entry["type"] == want["type"], name
        order, meta = metadata_of(entry)
        want_order = (["options"] if want["options"] else []) + ["indexes"] + \
            (["uuid"] if want["uuid"] else []) + ["collectionName", "type"]
        assert order == want_order, (name, order)
        assert meta["collectionName"] == name and meta["type"] == want["type"]
        if want["uuid"]:
            assert meta["uuid"] == want["uuid"], name
        assert to_plain(meta.get("options", {})) == to_plain(want["options"]), name
        # index specs as listIndexes gives them, key order included
        assert meta["indexes"] == want["indexes"], (name, meta["indexes"], want["indexes"])
        assert [list(i["key"]) for i in meta["indexes"]] == \
            [list(i["key"]) for i in want["indexes"]]
        if want["type"] == "collection":
            names = [i["name"] for i in meta["indexes"]]
            assert "_id_" in names, name
        got = docs[("billing", name)]
        assert len(got) == len(want_docs), f"{name}: {len(got)} documents, want {len(want_docs)}"
        for i, (g, w) in enumerate(zip(got, want_docs)):
            assert g == w, "%s document %d differs:\n%r\n%r" % (
                name, i, bson.decode(g, DECODE), bson.decode(w, DECODE))
    index_names = {name: [i["name"] for i in metadata_of(a.prelude[("billing", name)])[1]
                          ["indexes"]] for name in ("invoices", "timesheets")}
    assert "period_label_1" in index_names["invoices"]
    assert "clinician_id_1_date_-1" in index_names["timesheets"]
    ts = [i for i in metadata_of(a.prelude[("billing", "timesheets")])[1]["indexes"]
          if i["name"] == "clinician_id_1_date_-1"][0]
    assert list(ts["key"].items()) == [("clinician_id", 1), ("date", -1)] and ts["unique"] is True


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def billing(tmp_path_factory):
    """The 20,000-document billing data set on a standalone wire server, once per
    module; fails at teardown on any command the server did not know."""
    with mongo_server(tmp_path_factory.mktemp("mongo-daily"), docs=20000, seed=21) as server:
        yield server


def use_mongo(demo, server):
    demo.set_option("mongodb", "uri", f"mongodb://127.0.0.1:{server.port}/billing")


def some_files(demo):
    """A few files in each folder: one in a sub-folder, an empty one, odd names
    (spaces; a Latin-1 byte, a tab and a newline). {path: sha256}"""
    files = {}
    files[os.path.join(demo.invoices, "INV-2026-0113.pdf")] = b"%PDF-1.7 invoice 113\n" * 400
    files[os.path.join(demo.invoices, "2026-11", "INV-2026-0114.pdf")] = os.urandom(70_000)
    files[os.path.join(demo.images, "timesheet-0001.jpg")] = os.urandom(150_000)
    files[os.path.join(demo.images, "scan with spaces.png")] = os.urandom(999)
    files[os.path.join(demo.bug_reports, "report.json")] = b'{"bug": 1}\n'
    files[os.fsdecode(os.path.join(os.fsencode(demo.bug_reports), b"caf\xe9\tnotes\n.txt"))] = \
        b"latin-1 name with a tab and a newline\n"
    files[os.path.join(demo.bug_reports, "empty.log")] = b""
    shas = {}
    for p, data in files.items():
        os.makedirs(os.path.dirname(p), exist_ok=True)
        shas[p] = write_file(p, data)
    return shas


# ------------------------------------------ 1. the native dump, decoded here

def test_native_dump_restores_as_the_servers_data_exactly(demo, billing, tmp_path):
    use_mongo(demo, billing)
    expected = billing.expected()
    assert list(expected) == COLLECTIONS
    assert sum(h["count"] for h, _ in expected.values()) >= 20000
    billing.clear_unknown()

    p, seconds = daily(demo, DATE, check=0)
    print(f"daily run with a 20,000-document dump: {seconds:.1f} s")
    assert billing.unknown() == "", "custodian sent commands the server does not know:\n" + \
        billing.unknown()

    archive = demo.run("restore", "db", DATE, "--stdout", check=0, timeout=300).stdout
    out = tmp_path / "billing.archive"
    p = demo.run("restore", "db", DATE, "--to", str(out), check=0)
    assert str(out) in p.stdout.decode() and "mongorestore --archive=" in p.stdout.decode()
    assert out.read_bytes() == archive, "--to FILE and --stdout differ"
    # an existing file is not replaced
    p = demo.run("restore", "db", DATE, "--to", str(out), check=1)
    assert b"exists" in p.stderr

    with billing.client() as client:
        server_version = client.admin.command("buildInfo")["version"]
    assert_archive_is_the_servers_data(archive, expected, server_version)

    # the manifest says what was dumped
    manifest = json.loads(open(os.path.join(demo.dest, layout(DATE)["manifest-json"])).read())
    db = manifest["db"]
    assert db["status"] == "ok" and db["source"] == "native"
    assert db["server_version"] == server_version
    assert db["collections"] == {f"billing.{n}": h["count"] for n, (h, _) in expected.items()}
    assert db["documents"] == sum(h["count"] for h, _ in expected.values())
    art = {x["kind"]: x for x in manifest["artifacts"]}
    assert art["db"]["plain_sha256"] == hashlib.sha256(archive).hexdigest()
    assert art["db"]["plain_size"] == len(archive)
    assert daily_row(demo, DATE)["db_status"] == "ok"


def test_replica_set_dump_is_one_snapshot(demo, tmp_path):
    """On a replica set member every collection is read in one snapshot: the
    finds carry readConcern snapshot, all at the atClusterTime the first one
    got (only against the imitation server: see docs/restore.md)."""
    with mongo_server(tmp_path / "rs", docs=3000, seed=22, replset="rs0") as server:
        use_mongo(demo, server)
        expected = server.expected()
        server.clear_requests()
        daily(demo, DATE, check=0)
        finds = [r for r in server.requests() if r["cmd"] == "find"]
        with server.client() as client:
            version = client.admin.command("buildInfo")["version"]
    assert [r["collection"] for r in finds] == \
        [n for n, (h, _) in expected.items() if h["type"] == "collection"]
    assert all(r.get("readConcern", {}).get("level") == "snapshot" for r in finds), finds
    times = {tuple(r["readConcern"]["atClusterTime"]) for r in finds[1:]}
    assert len(times) == 1, f"the collections were read at {len(times)} cluster times: {finds}"
    archive = demo.run("restore", "db", DATE, "--stdout", check=0).stdout
    assert_archive_is_the_servers_data(archive, expected, version)
    manifest = json.loads(open(os.path.join(demo.dest, layout(DATE)["manifest-json"])).read())
    assert manifest["db"]["point_in_time"] == "snapshot (replica set)"
    assert manifest["db"]["collections"] == {f"billing.{n}": h["count"]
                                             for n, (h, _) in expected.items()}


# ---------------------------------------------- 2. the operator's dump_command

def encode(doc):
    return bson.encode(doc, codec_options=ENCODE)


def hand_built_archive(big=0):
    """A small archive made here from the format document: two collections
    whose data blocks interleave (one split over two blocks), an empty
    collection and a view; `big` adds that many bytes of random Binary
    documents to the first collection."""
    def meta(name, options=None, indexes=(), uuid=None, type_="collection"):
        m = OrderedDict()
        if options:
            m["options"] = options
        m["indexes"] = list(indexes)
        if uuid:
            m["uuid"] = uuid
        m["collectionName"] = name
        m["type"] = type_
        return json_util.dumps(m, json_options=json_util.CANONICAL_JSON_OPTIONS,
                               separators=(",", ":"))

    id_index = OrderedDict([("v", 2), ("key", OrderedDict([("_id", 1)])), ("name", "_id_")])
    colls = [
        ("agencies", meta("agencies", indexes=[id_index], uuid="0f" * 16), "collection"),
        ("invoices", meta("invoices", indexes=[id_index, OrderedDict([
            ("v", 2), ("key", OrderedDict([("period_label", 1)])), ("name", "period_label_1")])],
            uuid="1e" * 16), "collection"),
        ("adjustments", meta("adjustments", indexes=[id_index], uuid="2d" * 16), "collection"),
        ("unpaid", meta("unpaid", options=OrderedDict([("viewOn", "invoices"), ("pipeline", [
            {"$match": {"paid": False}}])]), type_="view"), "view"),
    ]
    agencies = [encode(OrderedDict([("_id", ObjectId()), ("name", f"Agency {i}"),
                                    ("since", Int64(1700000000000 + i))])) for i in range(3)]
    n_big = 0
    while n_big < big:
        agencies.append(encode(OrderedDict([("_id", ObjectId()),
                                            ("blob", Binary(os.urandom(60_000), 0))])))
        n_big += 60_000
    invoices = [encode(OrderedDict([("_id", ObjectId()), ("number", i),
                                    ("amount", Decimal128(f"{i}.25")), ("paid", i % 2 == 0)]))
                for i in range(5)]
    out = bytearray(struct.pack("<I", MAGIC))
    out += encode(OrderedDict([("concurrent_collections", 4), ("version", "0.1"),
                               ("server_version", "6.0.14"), ("tool_version", "100.8.0")]))
    for name, m, type_ in colls:
        out += encode(OrderedDict([("db", "billing"), ("collection", name), ("metadata", m),
                                   ("size", 0), ("type", type_)]))
    out += TERM

    def block(name, docs, eof=False, crc=0):
        h = encode(OrderedDict([("db", "billing"), ("collection", name), ("EOF", eof),
                                ("CRC", Int64(crc - (1 << 64) if crc >= 1 << 63 else crc))]))
        return h + b"".join(docs) + TERM

    def crc(docs):
        c = 0
        for d in docs:
            c = crc64_xz(d, c)
        return c

    out += block("agencies", agencies[:2])
    out += block("invoices", invoices[:3])
    out += block("agencies", agencies[2:])
    out += block("invoices", invoices[3:])
    out += block("agencies", [], eof=True, crc=crc(agencies))
    out += block("invoices", [], eof=True, crc=crc(invoices))
    out += block("adjustments", [])
    out += block("adjustments", [], eof=True, crc=0)
    out += block("unpaid", [])
    out += block("unpaid", [], eof=True, crc=0)
    counts = {"billing.agencies": len(agencies), "billing.invoices": 5,
              "billing.adjustments": 0, "billing.unpaid": 0}
    return bytes(out), counts


def test_hand_built_archive_is_valid_by_this_files_reader():
    data, counts = hand_built_archive()
    docs = Archive(data).check_structure()
    assert {f"{db}.{c}": len(d) for (db, c), d in docs.items()} == counts


def test_dump_command_archive_is_stored_and_restored_byte_for_byte(demo, tmp_path):
    data, counts = hand_built_archive()
    archive = tmp_path / "known.archive"
    archive.write_bytes(data)
    demo.set_option("mongodb", "dump_command",
                    write_script(tmp_path / "dump.sh", f"cat '{archive}'\n"))
    daily(demo, DATE, check=0)
    assert demo.run("restore", "db", DATE, "--stdout", check=0).stdout == data
    out = tmp_path / "back.archive"
    demo.run("restore", "db", DATE, "--to", str(out), check=0)
    assert out.read_bytes() == data
    manifest = json.loads(open(os.path.join(demo.dest, layout(DATE)["manifest-json"])).read())
    assert manifest["db"]["status"] == "ok"
    assert manifest["db"]["source"] == "dump_command"
    assert manifest["db"]["server_version"] == "6.0.14"
    assert manifest["db"]["collections"] == counts
    assert manifest["db"]["documents"] == sum(counts.values())
    row = daily_row(demo, DATE)
    assert row["status"] == "ok" and row["db_status"] == "ok", row


def assert_db_failed_but_files_shipped(demo, date, stderr, *needles):
    """The run failed because of the dump alone: the message says why, the
    restore point, catalog copy and manifests were still made and shipped."""
    text = stderr.decode(errors="replace")
    for needle in needles:
        assert needle in text, f"{needle!r} not in stderr:\n{text}"
    row = daily_row(demo, date)
    assert row["status"] == "failed", row
    assert row["ran"] == 1 and row["manifest_written"] == 1, row
    assert row["files_status"].startswith("ok"), row
    assert row["catalog_status"] == "ok", row
    assert row["db_status"].startswith("failed"), row
    for needle in needles:
        assert needle in row["db_status"], (needle, row)
        assert needle in row["error"], (needle, row)
    keys = layout(date)
    assert artifact_kinds(demo, date) == set(keys) - {"db"}
    assert copies(demo, date) == {(k, "local") for k in set(keys) - {"db"}}
    present = files_under(os.path.join(demo.dest, "backups"))
    for kind, key in keys.items():
        assert (os.path.relpath(key, "backups") in present) == (kind != "db"), (kind, present)
    manifest = json.loads(open(os.path.join(demo.dest, keys["manifest-json"])).read())
    assert manifest["db"]["status"].startswith("failed")
    p = demo.run("restore", "db", date, "--stdout", check=1)
    assert p.stdout == b""
    assert f"no database dump is recorded for {date}".encode() in p.stderr


def test_failing_dump_command_fails_the_run_but_not_the_files(demo, tmp_path):
    shas = some_files(demo)
    fail = write_script(tmp_path / "fail.sh",
                        "echo 'boom: cannot reach container' >&2\nexit 3\n")
    demo.set_option("mongodb", "dump_command", fail)
    p, _ = daily(demo, DATE, check=1)
    assert_db_failed_but_files_shipped(demo, DATE, p.stderr, "boom: cannot reach container",
                                       "exited with status 3")
    # the restore point of the failed run is whole
    demo.run("restore", "point", DATE, "--to", str(tmp_path / "r"), check=0)
    for path, sha in shas.items():
        assert sha256_file(str(tmp_path / "r") + path) == sha, path
    demo.run("verify", "--manifest", DATE, check=0)


def bad_dump_command(case, tmp_path):
    """(dump_command, what the failure message must say) for each way an
    operator's command can fail to deliver an archive."""
    data, _ = hand_built_archive()
    if case == "echo hello":
        return "echo hello", ["not a mongodump archive"]
    if case == "cut short":  # the stream ends inside a document
        cut = tmp_path / "cut.archive"
        cut.write_bytes(data[:len(data) - 40])
        return f"cat '{cut}'", ["not a mongodump archive"]
    if case == "failed after a whole archive":  # not trusted: mongodump said it failed
        whole = tmp_path / "whole.archive"
        whole.write_bytes(data)
        return write_script(tmp_path / "late.sh",
                            f"cat '{whole}'\necho 'mongodump: lost connection' >&2\nexit 2\n"), \
            ["mongodump: lost connection", "exited with status 2"]
    if case == "gzip":
        # `mongodump --archive --gzip` (the plan's old runbook) is the likely
        # mistake; the command is still writing when custodian stops reading
        big = tmp_path / "big.archive"
        big.write_bytes(hand_built_archive(big=1 << 20)[0])
        return f"gzip -1 -c '{big}'", ["not a mongodump archive"]
    raise ValueError(case)


@pytest.mark.parametrize("case", ["echo hello", "cut short", "failed after a whole archive",
                                  "gzip"])
def test_dump_command_output_that_is_not_an_archive(demo, tmp_path, case):
    some_files(demo)
    command, needles = bad_dump_command(case, tmp_path)
    demo.set_option("mongodb", "dump_command", command)
    p, _ = daily(demo, DATE, check=1)
    assert_db_failed_but_files_shipped(demo, DATE, p.stderr, *needles)


# ------------------------------------------------ 3. MongoDB not reachable

def test_mongo_unreachable_fails_loudly_files_and_catalog_still_shipped(demo, tmp_path):
    port = free_ports(1)[0]  # nothing listens there
    demo.set_option("mongodb", "uri", f"mongodb://127.0.0.1:{port}/billing")
    shas = some_files(demo)
    p, seconds = daily(demo, DATE, check=1)
    assert seconds < 60, f"an unreachable MongoDB took {seconds:.0f} s to fail"
    err = p.stderr.decode(errors="replace")
    assert "MongoDB" in err and f"127.0.0.1:{port}" in err, err
    assert_db_failed_but_files_shipped(demo, DATE, p.stderr, "MongoDB")
    row = daily_row(demo, DATE)
    assert row["status"] == "failed"
    restored = tmp_path / "point"
    demo.run("restore", "point", DATE, "--to", str(restored), check=0)
    for path, sha in shas.items():
        assert sha256_file(str(restored) + path) == sha, path
    demo.run("verify", "--manifest", DATE, check=0)


# ------------------------------------- 4. a full run to S3, SFTP and local

def ed25519_verify(pub_file, sha256_text, json_text, sig_text):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    lines = open(pub_file).read().splitlines()
    assert lines[0] == "custodian signing-public-key v1"
    pk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(lines[1]))
    sig_line = [ln for ln in sig_text.decode().splitlines() if ln.startswith("signature: ")]
    assert len(sig_line) == 1, sig_text
    msg = hashlib.sha256(sha256_text).digest() + hashlib.sha256(json_text).digest()
    pk.verify(bytes.fromhex(sig_line[0][len("signature: "):]), msg)  # raises if bad


# tests/vectors/decode_container_v1.py calls X25519PublicKey.public_bytes_raw(),
# which python3-cryptography has only from version 40 (bookworm ships 38):
# give it that one method, the decoder itself runs unchanged.
RUN_DECODER = """
import runpy, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
pk = type(x25519.X25519PrivateKey.generate().public_key())
if not hasattr(pk, "public_bytes_raw"):
    pk.public_bytes_raw = lambda self: self.public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def decrypt_container(obj_path, out_path, secret_key):
    """Open a .cst with the independent decoder of docs/FORMAT.md appendix A."""
    with open(out_path, "wb") as out:
        p = subprocess.run(["/usr/bin/python3", "-c", RUN_DECODER, DECODE_CONTAINER,
                            str(obj_path), secret_key],
                           stdout=out, stderr=subprocess.PIPE, timeout=120)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def test_full_run_to_s3_sftp_and_local(demo, billing, rgw, sshd, tmp_path):
    t0 = time.monotonic()
    bucket = rgw.new_bucket("daily")
    sftp_root, url = sshd.new_dir("daily")
    local = f"\n[destination local]\ntype = local\nrole = primary\npath = {demo.dest}\n"
    set_destinations(demo, s3_section(rgw, bucket) + sftp_section(sshd, url) + local)
    use_mongo(demo, billing)
    billing.clear_unknown()

    # some files shipped by the agent, some left for the daily run to drain
    demo.start_agent()
    first = some_files(demo)
    demo.wait_shipped(first, timeout=120)
    demo.stop_agent()
    write_file(os.path.join(demo.invoices, "INV-2026-0115.pdf"), os.urandom(5000))
    write_file(os.path.join(demo.invoices, "INV-2026-0113.pdf"), b"%PDF-1.7 corrected\n" * 99)
    os.symlink("INV-2026-0115.pdf", os.path.join(demo.invoices, "latest.pdf"))
    live = live_tree([demo.images, demo.invoices, demo.bug_reports])

    p, seconds = daily(demo, DATE, check=0)
    print(f"full daily run (3 destinations, 20,000 documents): {seconds:.1f} s")
    assert billing.unknown() == "", billing.unknown()
    row = daily_row(demo, DATE)
    assert row["status"] == "ok" and row["ran"] == 1 and row["manifest_written"] == 1 \
        and row["offsite_verified"] == 1, row
    assert row["db_status"] == "ok" and row["catalog_status"] == "ok", row
    assert row["files_status"] == f"ok: {len(live)} files", row
    assert row["error"] is None, row
    keys = layout(DATE)
    assert artifact_kinds(demo, DATE) == set(keys)
    assert copies(demo, DATE) == {(k, d) for k in keys for d in ("s3", "sftp", "local")}

    # the plan's layout on every destination, nothing else under backups/
    want = set(keys.values())
    on_s3 = {o["key"] for o in rgw.list_objects(bucket, "backups/")}
    assert on_s3 == want, on_s3 ^ want
    assert {os.path.join("backups", f) for f in
            files_under(os.path.join(sftp_root, "backups"))} == want
    assert {os.path.join("backups", f) for f in
            files_under(os.path.join(demo.dest, "backups"))} == want

    # a copy of the S3 artifacts, checked with the real sha256sum from its root
    dl = tmp_path / "from-s3"
    for key in want:
        os.makedirs(os.path.dirname(dl / key), exist_ok=True)
        (dl / key).write_bytes(rgw.get(bucket, key))
    p2 = subprocess.run(["sha256sum", "-c", keys["manifest-sha256"]], cwd=dl,
                        capture_output=True, timeout=60)
    assert p2.returncode == 0, p2.stdout + p2.stderr
    assert p2.stdout.decode().count(": OK") == 3
    # the same bytes on SFTP and local
    for key in want:
        body = (dl / key).read_bytes()
        assert open(os.path.join(sftp_root, key), "rb").read() == body, key
        assert open(os.path.join(demo.dest, key), "rb").read() == body, key
    sums = (dl / keys["manifest-sha256"]).read_bytes()
    manifest_json = (dl / keys["manifest-json"]).read_bytes()
    ed25519_verify(os.path.join(demo.root, "keys", "signing.pub"), sums, manifest_json,
                   (dl / keys["manifest-sig"]).read_bytes())
    manifest = json.loads(manifest_json)
    assert manifest["date"] == DATE and manifest["files"]["complete"] is True
    assert manifest["files"]["files"] == len(live)
    assert manifest["db"]["documents"] == sum(h["count"] for h, _ in billing.expected().values())
    stored = {a["kind"]: a for a in manifest["artifacts"]}
    assert set(stored) == {"db", "files", "catalog"}
    for kind, a in stored.items():
        body = (dl / a["key"]).read_bytes()
        assert a["key"] == keys[kind]
        assert hashlib.sha256(body).hexdigest() == a["stored_sha256"] and \
            len(body) == a["stored_size"], kind

    # the catalog copy opens with the secret key and an independent decoder
    secret = os.path.join(demo.root, "keys", "backup.key")
    cat = tmp_path / "catalog-copy.db"
    decrypt_container(dl / keys["catalog"], cat, secret)
    assert hashlib.sha256(cat.read_bytes()).hexdigest() == stored["catalog"]["plain_sha256"]
    c = sqlite3.connect(f"file:{cat}?mode=ro", uri=True)
    try:
        paths = {bytes(r[0]) for r in c.execute("SELECT path FROM paths")}
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        c.close()
    assert set(live) <= paths, set(live) - paths
    # and so does the dump: what restore db gives is what the copy holds
    archive = demo.run("restore", "db", DATE, "--stdout", binary=PLAIN_BIN, check=0).stdout
    plain = tmp_path / "db-from-s3.archive"
    decrypt_container(dl / keys["db"], plain, secret)
    assert plain.read_bytes() == archive
    assert hashlib.sha256(archive).hexdigest() == stored["db"]["plain_sha256"]
    for name in ("s3", "sftp", "local"):
        assert demo.run("restore", "db", DATE, "--stdout", "--from", name, binary=PLAIN_BIN,
                        check=0).stdout == archive, name

    # verify --manifest: every destination, then each one tampered with
    p = demo.run("verify", "--manifest", DATE, check=0)
    out = p.stdout.decode()
    for name in ("s3", "sftp", "local"):
        assert f"ok    {name}: manifest signature verified" in out, out
        for key in (keys["db"], keys["files"], keys["catalog"]):
            assert f"ok    {name}: {key}" in out, out

    def verify_fails_on(name, what):
        p = demo.run("verify", "--manifest", DATE, check=1)
        out = p.stdout.decode()
        bad = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
        assert bad and all(ln.startswith(f"FAIL  {name}: ") for ln in bad), out
        assert any(what in ln for ln in bad), out
        assert b"did not verify on 1 destination(s)" in p.stderr, p.stderr
        others = {"s3", "sftp", "local"} - {name}
        for o in others:
            assert f"ok    {o}: manifest signature verified" in out, out

    # a count changed in the JSON on S3
    tampered = manifest_json.replace(b'"documents":', b'"documents":1')
    assert tampered != manifest_json
    rgw.put(bucket, keys["manifest-json"], tampered)
    verify_fails_on("s3", "manifest signature does not verify")
    rgw.put(bucket, keys["manifest-json"], manifest_json)
    demo.run("verify", "--manifest", DATE, check=0)
    # a line of the .sha256 on SFTP
    sftp_sums = os.path.join(sftp_root, keys["manifest-sha256"])
    assert b"  backups/daily/files/" in sums
    with open(sftp_sums, "wb") as f:
        f.write(sums.replace(b"backups/daily/files", b"backups/daily/filez"))
    verify_fails_on("sftp", "manifest signature does not verify")
    with open(sftp_sums, "wb") as f:
        f.write(sums)
    # an artifact itself damaged on S3: verify names it; restore falls back
    db_body = (dl / keys["db"]).read_bytes()
    damaged = bytearray(db_body)
    damaged[len(damaged) // 2] ^= 0x01
    rgw.put(bucket, keys["db"], bytes(damaged))
    verify_fails_on("s3", keys["db"])
    p = demo.run("restore", "db", DATE, "--stdout", "--from", "s3", check=1)
    assert p.stdout == b"" and b"integrity error" in p.stderr, p.stderr
    p = demo.run("restore", "db", DATE, "--stdout", binary=PLAIN_BIN, check=0)
    assert p.stdout == archive and b"trying the next destination" in p.stderr
    rgw.put(bucket, keys["db"], db_body)
    demo.run("verify", "--manifest", DATE, check=0)

    # the restore point rebuilds the watched folders as they were, from each remote
    for name in ("s3", "sftp"):
        to = tmp_path / f"point-{name}"
        p = demo.run("restore", "point", DATE, "--to", str(to), "--from", name, check=0)
        assert f"restored {len(live)} files".encode() in p.stdout, p.stdout
        assert_same_tree(restored_tree(to), live)
    to = tmp_path / "point"
    demo.run("restore", "point", DATE, "--to", str(to), check=0)
    assert_same_tree(restored_tree(to), live)
    print(f"test_full_run_to_s3_sftp_and_local: {time.monotonic() - t0:.1f} s")


# ------------------------------- the app host is lost: the catalog copy

def test_new_host_restores_from_the_catalog_copy(demo, rgw, sshd, tmp_path):
    """The runbook's disaster case: the app host (its catalog, its local
    destination) is gone. A new host gets the config, the keys and the
    newest catalog copy from a remote destination, decrypted with the secret
    key; from there every file, the restore point and the dump of that day
    come back."""
    bucket = rgw.new_bucket("lost")
    _, url = sshd.new_dir("lost")
    set_destinations(demo, s3_section(rgw, bucket) + sftp_section(sshd, url))
    data, _ = hand_built_archive()
    (tmp_path / "known.archive").write_bytes(data)
    demo.set_option("mongodb", "dump_command", f"cat '{tmp_path / 'known.archive'}'")
    shas = some_files(demo)
    daily(demo, DATE, check=0)
    assert daily_row(demo, DATE)["status"] == "ok"

    host = tmp_path / "new-host"
    shutil.copytree(os.path.join(demo.root, "keys"), host / "keys")
    shutil.copyfile(demo.conf, host / "custodian.conf")
    for sub in ("images", "invoices", "bug-reports"):
        os.makedirs(host / "app" / "data" / sub)
    new = Demo(str(host))
    new.run("init", check=0)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(new.catalog_path + suffix):
            os.unlink(new.catalog_path + suffix)
    obj = tmp_path / "catalog.cst"
    obj.write_bytes(rgw.get(bucket, layout(DATE)["catalog"]))
    decrypt_container(obj, new.catalog_path, os.path.join(host, "keys", "backup.key"))
    os.chmod(new.catalog_path, 0o600)

    new.run("verify", "--manifest", DATE, check=0)
    for name in ("s3", "sftp"):
        for path, sha in shas.items():
            out = tmp_path / f"file-{name}"
            new.run("restore", "file", path, "--from", name, "--to", str(out), check=0)
            assert sha256_file(os.path.join(out, os.path.basename(path))) == sha, path
    p = new.run("restore", "point", DATE, "--to", str(tmp_path / "point"))
    assert p.returncode == 0, (
        "restore point of the catalog copy's own day failed on the new host:\n"
        + p.stderr.decode(errors="replace"))
    for path, sha in shas.items():
        assert sha256_file(str(tmp_path / "point") + path) == sha, path
    p = new.run("restore", "db", DATE, "--stdout")
    assert p.returncode == 0, (
        "restore db of the catalog copy's own day failed on the new host:\n"
        + p.stderr.decode(errors="replace"))
    assert p.stdout == data


# ---------------------------------------------------- 5. restore refusals

def test_restore_refuses_missing_runs_and_never_overwrites(demo, tmp_path):
    shas = some_files(demo)
    daily(demo, DATE, check=0)  # no [mongodb]: no dump, the run is still ok
    row = daily_row(demo, DATE)
    assert row["status"] == "ok" and row["db_status"] == "not configured", row

    p = demo.run("restore", "db", "2026-11-19", "--stdout", check=1)
    assert p.stdout == b""
    assert b"no database dump is recorded for 2026-11-19" in p.stderr, p.stderr
    p = demo.run("restore", "db", DATE, "--to", str(tmp_path / "x.archive"), check=1)
    assert b"no database dump is recorded for " + DATE.encode() in p.stderr, p.stderr
    assert not (tmp_path / "x.archive").exists()
    p = demo.run("restore", "point", "2026-11-19", "--to", str(tmp_path / "none"), check=1)
    assert b"no restore point is recorded for 2026-11-19" in p.stderr, p.stderr
    p = demo.run("verify", "--manifest", "2026-11-19", check=1)
    assert b"did not verify" in p.stderr

    to = tmp_path / "point"
    p = demo.run("restore", "point", DATE, "--to", str(to), check=0)
    assert f"restored {len(shas)} files".encode() in p.stdout, p.stdout
    for path, sha in shas.items():
        assert sha256_file(str(to) + path) == sha, path
    # someone works in the restored folder; a second restore must not touch it
    changed = str(to) + os.path.join(demo.invoices, "INV-2026-0113.pdf")
    with open(changed, "wb") as f:
        f.write(b"edited after the restore")
    before = {p: (open(p, "rb").read(), os.stat(p).st_ino, os.stat(p).st_mtime_ns)
              for p in (str(to) + q for q in shas)}
    p = demo.run("restore", "point", DATE, "--to", str(to), check=1)
    assert f"restored 0 files of the {DATE} restore point".encode() in p.stdout, p.stdout
    assert f"{len(shas)} FAILED".encode() in p.stdout, p.stdout
    assert p.stderr.count(b"exists") == len(shas), p.stderr
    after = {p: (open(p, "rb").read(), os.stat(p).st_ino, os.stat(p).st_mtime_ns)
             for p in before}
    assert after == before
    leftovers = [f for f in files_under(to) if ".custodian-restore." in f]
    assert not leftovers, leftovers
    assert len(files_under(to)) == len(shas)
