"""
Billing-cycle snapshots (agent/snapshot.c) against the MongoDB wire server
serving a billing app's periods, invoices and timesheets (--billing), with
the PDFs and timesheet images they reference on disk and shipped.

What comes back is read with stock tools and independent code, never with
custodian's own reader alone: packages are decrypted with
tests/vectors/decode_container_v1.py, listed and unpacked with `tar --zstd`,
checked with `sha256sum -c`, their signatures with python3-cryptography's
Ed25519, their JSON lines decoded with python3-bson and compared byte for
byte with what pymongo reads off the server.
"""
import datetime
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import OrderedDict

import pytest

from conftest import BIN, sha256_file, wait_for, write_file
from servers import free_ports, mongo_server

bson = pytest.importorskip("bson")
from bson import json_util  # noqa: E402
from bson.binary import Binary, UuidRepresentation  # noqa: E402
from bson.codec_options import CodecOptions  # noqa: E402
from bson.decimal128 import Decimal128  # noqa: E402
from bson.int64 import Int64  # noqa: E402
from bson.objectid import ObjectId  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402

from test_daily import decrypt_container  # noqa: E402

ENCODE = CodecOptions(document_class=OrderedDict)
JSON_IN = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL,
                                document_class=OrderedDict,
                                uuid_representation=UuidRepresentation.UNSPECIFIED)
PREFIX = "backups/snapshots/billing-cycles/"
UTC = datetime.timezone.utc


# ------------------------------------------------------------------ the app's data

class App:
    """A billing app's data: periods, invoices, timesheets (documents as pymongo
    writes them) and the files they reference, written under files_root.

    mapping: the [snapshots] keys this data set needs (collections and fields)."""

    def __init__(self, root, files_root, seed=11, mapping=None, sizes=(20_000, 60_000)):
        self.root = root
        self.files_root = files_root
        self.rng = random.Random(seed)
        self.sizes = sizes
        self.m = {"periods_collection": "billingPeriods", "period_label_field": "label",
                  "period_start_field": "start", "period_end_field": "end",
                  "period_closed_field": "closedAt", "period_key_field": "_id",
                  "invoices_collection": "invoices", "invoice_period_field": "periodId",
                  "invoice_file_field": "pdf.file", "invoice_timesheets_field": "timesheetIds",
                  "timesheets_collection": "timesheets",
                  "timesheet_period_field": "billingPeriodId",
                  "timesheet_file_field": "image.path"}
        self.m.update(mapping or {})
        self.periods, self.invoices, self.timesheets = [], [], []
        self.files = {}  # rel path -> bytes

    @staticmethod
    def put(doc, dotted, value):
        """Set a dotted field in a (nested) OrderedDict."""
        *parents, last = dotted.split(".")
        for p in parents:
            doc = doc.setdefault(p, OrderedDict())
        doc[last] = value

    @staticmethod
    def get(doc, dotted):
        for p in dotted.split("."):
            doc = doc[p]
        return doc

    def file(self, rel, kind):
        lo, hi = self.sizes
        body = os.urandom(self.rng.randrange(lo, hi))
        data = (b"%PDF-1.7\n" if kind == "pdf" else b"\xff\xd8\xff\xe0JFIF") + body
        self.files[rel] = data
        path = os.path.join(self.files_root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return rel

    def period(self, label, start, closed_at, n_invoices=3, n_timesheets=4, key=None):
        """A period with its invoices and timesheets; closed_at None: open."""
        m = self.m
        p = OrderedDict()
        p["_id"] = key if key is not None else ObjectId()
        self.put(p, m["period_label_field"], label)
        self.put(p, m["period_start_field"], start)
        self.put(p, m["period_end_field"], start + datetime.timedelta(days=13))
        self.put(p, m["period_closed_field"], closed_at)
        p["generatedBy"] = "billing-automation 1.2"
        self.periods.append(p)
        pkey = self.get(p, m["period_key_field"])
        ts_ids = []
        for t in range(n_timesheets):
            ts = OrderedDict([("_id", ObjectId())])
            self.put(ts, m["timesheet_period_field"], pkey)
            ts["clinician"] = OrderedDict([("name", "Zoë O'Brien"), ("npi", Int64(1234567890))])
            ts["hours"] = Decimal128("7.25")
            ts["visitDate"] = start + datetime.timedelta(days=t)
            ts["ocr"] = OrderedDict([("confidence", 0.93), ("thumb", Binary(os.urandom(12), 0))])
            self.put(ts, m["timesheet_file_field"],
                     self.file(f"images/{label}/timesheet-{t:03d}.jpg", "jpg"))
            self.timesheets.append(ts)
            ts_ids.append(ts["_id"])
        for i in range(n_invoices):
            inv = OrderedDict([("_id", ObjectId()), ("number", f"INV-{label}-{i:04d}")])
            self.put(inv, m["invoice_period_field"], pkey)
            inv["total"] = Decimal128(f"{100 + i}.45")
            inv["issuedAt"] = start + datetime.timedelta(days=14)
            inv["lines"] = [OrderedDict([("code", "G0151"), ("qty", 2),
                                         ("amount", Decimal128("50.20"))])]
            self.put(inv, m["invoice_file_field"],
                     self.file(f"invoices/{label}/INV-{i:04d}.pdf", "pdf"))
            if m.get("invoice_timesheets_field"):
                self.put(inv, m["invoice_timesheets_field"], ts_ids[i:i + 2])
            self.invoices.append(inv)
        return p

    def write(self, path):
        doc = OrderedDict([(self.m["periods_collection"], self.periods),
                           (self.m["invoices_collection"], self.invoices),
                           (self.m["timesheets_collection"], self.timesheets)])
        with open(path, "w") as f:
            f.write(json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS))
        return path

    def configure(self, demo, server_port, **extra):
        demo.set_option("mongodb", "uri",
                        f"mongodb://127.0.0.1:{server_port}/billing"
                        "?serverSelectionTimeoutMS=3000&connectTimeoutMS=3000")
        for k, v in self.m.items():
            if v is not None:
                demo.set_option("snapshots", k, v)
        for k, v in extra.items():
            demo.set_option("snapshots", k, v)


def close_date(dt):
    """The snapshot's YYYYMMDD: the close instant's date in New York."""
    import zoneinfo
    return dt.replace(tzinfo=UTC).astimezone(zoneinfo.ZoneInfo("America/New_York")).strftime(
        "%Y%m%d")


def snapshot_key(label, date, ext=".cst"):
    return f"{PREFIX}{date[:4]}/snapshot_{label}_{date}.tar.zst{ext}"


def snapshot_rows(demo):
    return demo.query("SELECT label, close_date, complete, files, refs, missing, invoices, "
                      "timesheets FROM snapshots ORDER BY id")


def remote_snapshots(root):
    base = os.path.join(root, PREFIX)
    out = set()
    for d, _, names in os.walk(base):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def ship_everything(demo):
    demo.run("scan", check=0)
    demo.run("ship", "--timeout", "120", check=0, timeout=180)


def raw_docs(server, collection, flt):
    """What the server holds, as raw BSON, in _id order."""
    with server.client(document_class=RawBSONDocument) as c:
        return [d.raw for d in c.billing[collection].find(flt, sort=[("_id", 1)])]


def jsonl_as_bson(data):
    """Each line of a .jsonl member, decoded from canonical Extended JSON and encoded
    back to BSON (lossless: the bytes must equal the server's)."""
    return [bson.encode(json_util.loads(line, json_options=JSON_IN), codec_options=ENCODE)
            for line in data.decode().splitlines()]


def ed25519_check(demo, sig_text):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    lines = open(os.path.join(demo.root, "keys", "signing.pub")).read().splitlines()
    pk = Ed25519PublicKey.from_public_bytes(bytes.fromhex(lines[1]))
    fields = dict(line.split(": ", 1) for line in sig_text.decode().splitlines()[1:])
    pk.verify(bytes.fromhex(fields["signature"]),
              bytes.fromhex(fields["package-sha256"]) + bytes.fromhex(fields["sealed-sha256"]))
    return fields


def unpack_with_tar(package, into):
    """List and unpack a .tar.zst with GNU tar; returns the member names."""
    os.makedirs(into, exist_ok=True)
    p = subprocess.run(["tar", "--zstd", "-tf", str(package)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    names = p.stdout.decode().splitlines()
    p = subprocess.run(["tar", "--zstd", "-xf", str(package), "-C", str(into)],
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=into,
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.decode().count(": OK") == len(names) - 1
    return names


@pytest.fixture
def app(demo, tmp_path):
    """The app's data set (3 periods: two closed, one open) served by the wire server,
    its files on disk, custodian configured for it; yields (app, server)."""
    a = App(str(tmp_path), demo.data)
    base = datetime.datetime(2026, 10, 1)
    a.period("2026-10-A", base, datetime.datetime(2026, 10, 15, 21, 30))  # 17:30 in New York
    a.period("2026-10-B", base + datetime.timedelta(days=14),
             datetime.datetime(2026, 10, 30, 2, 0))  # 22:00 the day before in New York
    a.period("2026-11-A", base + datetime.timedelta(days=28), None)
    # a timesheet of another period, listed on an invoice of A: it belongs to A too
    a.invoices[0][a.m["invoice_timesheets_field"]].append(a.timesheets[5]["_id"])
    with mongo_server(tmp_path / "mongo", docs=6, seed=5,
                      billing=a.write(tmp_path / "billing.json")) as server:
        a.configure(demo, server.port, wait_for_files_minutes=0)
        yield a, server


# ------------------------------------------------------- 1. what the package holds

def test_package_is_the_periods_data_and_files_read_by_stock_tools(demo, app, tmp_path):
    a, server = app
    ship_everything(demo)
    p = demo.run("snapshot", "--pending", check=0, timeout=300)
    assert server.unknown() == "", server.unknown()
    rows = snapshot_rows(demo)
    dates = {r[0]: r[1] for r in rows}
    assert dates == {"2026-10-A": "20261015", "2026-10-B": "20261029"}, rows  # not the open one
    assert all(r[2] == 1 and r[5] == 0 for r in rows), rows
    assert remote_snapshots(demo.dest) == {snapshot_key(label, d, ext) for label, d in
                                           dates.items() for ext in (".cst", ".sig")}, p.stdout

    period = a.periods[0]
    key = snapshot_key("2026-10-A", "20261015")
    sealed = os.path.join(demo.dest, key)
    sig = open(os.path.join(demo.dest, snapshot_key("2026-10-A", "20261015", ".sig")), "rb").read()
    fields = ed25519_check(demo, sig)
    assert hashlib.sha256(open(sealed, "rb").read()).hexdigest() == fields["sealed-sha256"]

    # decrypted by the independent decoder, read by GNU tar and sha256sum
    package = tmp_path / "snapshot.tar.zst"
    decrypt_container(sealed, package, os.path.join(demo.root, "keys", "backup.key"))
    assert hashlib.sha256(package.read_bytes()).hexdigest() == fields["package-sha256"]
    out = tmp_path / "unpacked"
    names = unpack_with_tar(package, out)
    assert names[:4] == ["period.json", "invoices.jsonl", "timesheets.jsonl",
                         "timesheet-ids.txt"], names
    assert names[-4:] == ["refs.tsv", "missing.txt", "snapshot.json", "SHA256SUMS"], names

    # the documents: exactly the server's, this period's and no other
    pid = period["_id"]
    assert jsonl_as_bson((out / "period.json").read_bytes()) == \
        raw_docs(server, "billingPeriods", {"_id": pid})
    assert jsonl_as_bson((out / "invoices.jsonl").read_bytes()) == \
        raw_docs(server, "invoices", {"periodId": pid})
    listed_elsewhere = a.timesheets[5]["_id"]
    want_ts = raw_docs(server, "timesheets", {"billingPeriodId": pid}) + \
        raw_docs(server, "timesheets", {"_id": listed_elsewhere})
    assert jsonl_as_bson((out / "timesheets.jsonl").read_bytes()) == want_ts
    ids = (out / "timesheet-ids.txt").read_text().split()
    assert ids == [str(bson.decode(d)["_id"]) for d in want_ts]

    # the files: byte-identical to the cataloged versions; the other period's are absent
    want_files = {a.get(d, "pdf.file") for d in a.invoices if d["periodId"] == pid} | \
        {a.get(bson.decode(d), "image.path") for d in want_ts}
    got_files = {n[len("files/"):] for n in names if n.startswith("files/")}
    assert got_files == want_files
    for rel in want_files:
        body = (out / "files" / rel).read_bytes()
        assert body == a.files[rel], rel
        sha, _, _ = demo.live_version(os.path.join(demo.data, rel))
        assert hashlib.sha256(body).hexdigest() == sha, rel
    assert (out / "refs.tsv").read_text() == "path\tversion\tobject_id\tsha256\tsize\n"
    assert (out / "missing.txt").read_text() == "path\twhy\n"
    manifest = json.loads((out / "snapshot.json").read_text())
    assert manifest["label"] == "2026-10-A" and manifest["close_date"] == "20261015"
    assert manifest["period_key"] == {"$oid": str(pid)} and manifest["complete"] is True
    assert manifest["counts"] == {"invoices": 3, "timesheets": 5, "timesheet_ids": 5,
                                  "files": len(want_files), "refs": 0, "missing": 0}
    assert manifest["closed"] == "2026-10-15T21:30:00.000Z" and manifest["custodian_version"]
    assert {f["path"] for f in manifest["files"]} == want_files
    assert all(f["in"] == "package" for f in manifest["files"])

    # the catalog: the versions each holds, history, audit, list
    held = demo.query("SELECT count(*) FROM snapshot_versions sv JOIN snapshots s ON "
                      "s.id = sv.snapshot_id WHERE s.label = '2026-10-A' AND sv.held = 1")[0][0]
    assert held == len(want_files)
    rel = sorted(want_files)[0]
    hist = demo.run("catalog", "history", os.path.join(demo.data, rel), check=0).stdout.decode()
    assert "in snapshot 2026-10-A of 20261015 (its bytes in the package)" in hist, hist
    audits = [json.loads(d) for (d,) in demo.query(
        "SELECT detail FROM audit WHERE action = 'snapshot' ORDER BY id")]
    assert [x["label"] for x in audits] == ["2026-10-A", "2026-10-B"]
    assert audits[0]["package_sha256"] == fields["package-sha256"]
    listing = json.loads(demo.run("--json", "snapshot", "list", check=0).stdout)
    assert [(x["label"], x["date"], x["complete"]) for x in listing] == \
        [("2026-10-A", "20261015", True), ("2026-10-B", "20261029", True)]
    assert listing[0]["copies"][0]["dest"] == "local"
    assert listing[0]["retain_until"] == "2033-10-15T00:00:00.000Z"
    assert listing[0]["checklist"]["created"] and listing[0]["checklist"]["metadata_verified"] \
        is None

    # restore snapshot (plain) gives the same package and signature
    r = tmp_path / "restored"
    demo.run("restore", "snapshot", "2026-10-A", "--to", str(r), check=0)
    assert (r / "snapshot_2026-10-A_20261015.tar.zst").read_bytes() == package.read_bytes()
    assert (r / "snapshot_2026-10-A_20261015.tar.zst.sig").read_bytes() == sig
    # verify --snapshot: the full check, recorded as the checklist item
    p = demo.run("verify", "--snapshot", "2026-10-A", check=0)
    assert b"members against SHA256SUMS and snapshot.json" in p.stdout, p.stdout
    listing = json.loads(demo.run("--json", "snapshot", "list", check=0).stdout)
    assert listing[0]["checklist"]["metadata_verified"]

    # a second run makes nothing new
    before = {k: os.stat(os.path.join(demo.dest, k)).st_mtime_ns
              for k in remote_snapshots(demo.dest)}
    p = demo.run("snapshot", "--pending", check=0)
    assert b"0 made" in p.stdout, p.stdout
    assert len(snapshot_rows(demo)) == 2
    assert {k: os.stat(os.path.join(demo.dest, k)).st_mtime_ns
            for k in remote_snapshots(demo.dest)} == before


def test_open_period_refused_without_force(demo, app):
    a, server = app
    ship_everything(demo)
    p = demo.run("snapshot", "2026-11-A", check=1)
    assert b"is open" in p.stderr and b"--force" in p.stderr, p.stderr
    assert snapshot_rows(demo) == []
    demo.run("snapshot", "2026-11-A", "--force", check=0)
    (label, date, complete, *_), = snapshot_rows(demo)
    assert label == "2026-11-A" and date.endswith("-open") and complete == 1
    p = demo.run("snapshot", "nope", check=1)
    assert b"no period" in p.stderr, p.stderr


# ------------------------------------- 2. changed files, missing files, waiting

def test_changed_pdf_is_a_reference_and_extract_restores_the_cataloged_bytes(demo, app,
                                                                             tmp_path):
    a, server = app
    ship_everything(demo)
    period = a.periods[0]
    changed = a.get(a.invoices[0], "pdf.file")
    original = a.files[changed]
    write_file(os.path.join(demo.data, changed), b"%PDF-1.7 regenerated after shipping\n")
    deleted = a.get(a.timesheets[1], "image.path")
    os.unlink(os.path.join(demo.data, deleted))
    # an invoice whose PDF never existed
    with server.client() as c:
        c.billing.invoices.insert_one(OrderedDict([
            ("number", "INV-ghost"), ("periodId", period["_id"]),
            ("pdf", {"file": "invoices/2026-10-A/INV-ghost.pdf"})]))
    p = demo.run("snapshot", "2026-10-A", check=1)
    assert b"INCOMPLETE" in p.stderr, p.stderr
    (label, date, complete, files, refs, missing, invoices, _), = snapshot_rows(demo)
    assert (complete, refs, missing, invoices) == (0, 2, 1, 4)
    status = demo.status()[1]
    assert any("2026-10-A of 20261015 is INCOMPLETE" in x for x in status["problems"]), status
    assert status["last_snapshot"]["complete"] is False

    out = tmp_path / "x"
    p = demo.run("restore", "snapshot", "2026-10-A", "--to", str(out), "--extract", check=0)
    assert b"2 refs.tsv files restored" in p.stdout, p.stdout
    refs = (out / "refs.tsv").read_text().splitlines()[1:]
    assert sorted(r.split("\t")[0] for r in refs) == sorted([changed, deleted])
    for r in refs:
        path, version, object_id, sha, size = r.split("\t")
        body = (out / "files" / path).read_bytes()
        assert hashlib.sha256(body).hexdigest() == sha and len(body) == int(size)
        assert body == a.files[path]
    assert (out / "files" / changed).read_bytes() == original  # not the new bytes
    missing = (out / "missing.txt").read_text().splitlines()
    assert missing[0] == "path\twhy" and len(missing) == 2
    assert missing[1].startswith("invoices/2026-10-A/INV-ghost.pdf\tnever seen"), missing
    p = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    hist = demo.run("catalog", "history", os.path.join(demo.data, changed), check=0).stdout
    assert b"by reference, refs.tsv" in hist, hist


def test_files_not_yet_in_the_catalog_are_waited_for_then_missing(demo, app):
    a, server = app
    ship_everything(demo)
    demo.set_option("snapshots", "wait_for_files_minutes", "60")
    closed = datetime.datetime.now(UTC).replace(tzinfo=None, microsecond=0) - \
        datetime.timedelta(minutes=10)
    late = "invoices/2026-11-A/INV-late.pdf"
    with server.client() as c:
        pid = a.periods[2]["_id"]
        c.billing.invoices.insert_one(OrderedDict([("periodId", pid), ("pdf", {"file": late})]))
        c.billing.billingPeriods.update_one({"_id": pid}, {"$set": {"closedAt": closed}})
    p = demo.run("snapshot", "--pending", check=0)
    assert b"1 waiting for files" in p.stdout, p.stdout
    assert [r[0] for r in snapshot_rows(demo)] == ["2026-10-A", "2026-10-B"]
    rc, status = demo.status()
    assert any("snapshot waits for files: 2026-11-A" in n for n in status["notes"]), status
    # the file arrives (no agent runs: the job scans and ships it itself)
    write_file(os.path.join(demo.data, late), b"%PDF-1.7 late\n")
    demo.run("snapshot", "--pending", check=0)
    row = [r for r in snapshot_rows(demo) if r[0] == "2026-11-A"]
    assert row and row[0][2] == 1 and row[0][5] == 0, row
    # a period whose file never comes: waited for, then listed as missing
    with server.client() as c:
        pid = c.billing.billingPeriods.insert_one(OrderedDict([
            ("label", "2026-12-A"), ("start", closed), ("end", closed),
            ("closedAt", closed)])).inserted_id
        c.billing.invoices.insert_one(OrderedDict([("periodId", pid),
                                                   ("pdf", {"file": "invoices/never.pdf"})]))
    p = demo.run("snapshot", "--pending", check=0)
    assert b"1 waiting for files" in p.stdout, p.stdout
    assert len(snapshot_rows(demo)) == 3
    demo.set_option("snapshots", "wait_for_files_minutes", "0")
    demo.run("snapshot", "--pending", check=0)
    row = snapshot_rows(demo)[-1]
    assert row[0] == "2026-12-A" and row[2] == 0 and row[5] == 1, row


# ------------------------------------------------- 3. the agent, re-closing

def test_agent_snapshots_a_period_closing_while_it_runs_then_a_reclosed_one(demo, app):
    a, server = app
    demo.set_option("snapshots", "poll_minutes", "0.05")  # 3 s
    demo.start_agent()
    demo.wait_shipped({os.path.join(demo.data, rel): hashlib.sha256(b).hexdigest()
                       for rel, b in a.files.items()})
    wait_for(lambda: len(snapshot_rows(demo)) == 2, 60, "the closed periods' snapshots")
    pid = a.periods[2]["_id"]
    closed = datetime.datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    t0 = time.monotonic()
    with server.client() as c:
        c.billing.billingPeriods.update_one({"_id": pid}, {"$set": {"closedAt": closed}})
    wait_for(lambda: len(snapshot_rows(demo)) == 3, 60, "the snapshot of the period just closed")
    took = time.monotonic() - t0
    print(f"closed to snapshotted: {took:.1f} s (poll_minutes 0.05)")
    assert took < 3 + 20, took  # within a poll, plus the job's own time under ASan
    # later polls make nothing more
    polls = demo.log_text().count("billing-cycle snapshots:")
    wait_for(lambda: demo.log_text().count("billing-cycle snapshots:") >= polls + 2, 60,
             "two more polls")
    assert len(snapshot_rows(demo)) == 3
    assert len(remote_snapshots(demo.dest)) == 6
    # closed again after a correction, on another day: a second package; both are kept
    with server.client() as c:
        c.billing.invoices.update_one({"periodId": pid}, {"$set": {"total": Decimal128("1.00")}})
        c.billing.billingPeriods.update_one(
            {"_id": pid}, {"$set": {"closedAt": closed + datetime.timedelta(days=2)}})
    wait_for(lambda: len(snapshot_rows(demo)) == 4, 60, "the second snapshot of the period")
    dates = [r[1] for r in snapshot_rows(demo) if r[0] == "2026-11-A"]
    assert dates == [close_date(closed), close_date(closed + datetime.timedelta(days=2))]
    assert len(remote_snapshots(demo.dest)) == 8
    rc, status = demo.status()
    assert rc == 0, status["problems"]
    assert status["last_snapshot"]["label"] == "2026-11-A"
    assert status["snapshot_job"]["failures"] == 0
    demo.stop_agent()
    assert server.unknown() == ""


def test_mongodb_down_is_retried_and_shown_in_status(demo, tmp_path):
    a = App(str(tmp_path), demo.data)
    a.period("2026-10-A", datetime.datetime(2026, 10, 1), datetime.datetime(2026, 10, 15, 20))
    port = free_ports(1)[0]
    a.configure(demo, port, poll_minutes="0.05")
    demo.start_agent()
    demo.wait_shipped({os.path.join(demo.data, rel): hashlib.sha256(b).hexdigest()
                       for rel, b in a.files.items()})
    status = demo.wait_status(False, 90, "the snapshot job to fail")
    wait_for(lambda: demo.status()[1]["snapshot_job"]["failures"] >= 2, 90, "a retry")
    rc, status = demo.status()
    problem = [x for x in status["problems"] if "snapshots are FAILING" in x]
    assert problem and f"127.0.0.1:{port}" in problem[0], status["problems"]
    assert status["snapshot_job"]["next_run_at"], status["snapshot_job"]
    assert "next attempt in" in demo.log_text()
    with mongo_server(tmp_path / "mongo", docs=6, seed=5, port=port,
                      billing=a.write(tmp_path / "billing.json")):
        wait_for(lambda: len(snapshot_rows(demo)) == 1, 120, "the snapshot once MongoDB is back")
        status = demo.wait_status(True, 60, "status OK again")
        assert status["snapshot_job"]["failures"] == 0 and status["snapshot_job"]["last_ok_at"]
        demo.stop_agent()


# ------------------------------------------------------------ 4. the mapping

def test_a_mapping_that_names_a_missing_field_is_an_error_naming_the_key(demo, app):
    a, server = app
    ship_everything(demo)
    demo.set_option("snapshots", "invoice_file_field", "pdf.path")
    p = demo.run("snapshot", "--pending", check=1)
    err = p.stderr.decode()
    assert "invoice_file_field" in err and "pdf.path" in err and "billing.invoices" in err, err
    assert snapshot_rows(demo) == [] and remote_snapshots(demo.dest) == set()
    checks = {(c["area"], c["check"]): c for c in
              json.loads(demo.run("--json", "doctor", check=1).stdout)["checks"]}
    bad = checks[("snapshots", "invoice_file_field")]
    assert bad["result"] == "FAIL" and "pdf.path" in bad["detail"], bad
    assert checks[("snapshots", "invoice_period_field")]["result"] == "ok"
    status = demo.status()[1]
    assert any("invoice_file_field" in x for x in status["problems"]), status["problems"]

    demo.set_option("snapshots", "invoice_file_field", "pdf.file")
    demo.set_option("snapshots", "periods_collection", "periods")
    p = demo.run("snapshot", "--pending", check=1)
    assert b"periods_collection" in p.stderr and b"no collection periods" in p.stderr, p.stderr
    # a period key and an invoice field that can never be equal
    demo.set_option("snapshots", "periods_collection", "billingPeriods")
    demo.set_option("snapshots", "period_key_field", "label")
    p = demo.run("snapshot", "--pending", check=1)
    assert b"invoice_period_field" in p.stderr and b"never match" in p.stderr, p.stderr
    assert snapshot_rows(demo) == []


def test_a_closed_period_nothing_refers_to_is_never_an_empty_snapshot(demo, app):
    a, server = app
    ship_everything(demo)
    with server.client() as c:
        c.billing.billingPeriods.insert_one(OrderedDict([
            ("label", "2026-12-empty"), ("start", datetime.datetime(2026, 12, 1)),
            ("end", datetime.datetime(2026, 12, 14)),
            ("closedAt", datetime.datetime(2026, 12, 15, 20))]))
    p = demo.run("snapshot", "--pending", check=1)
    err = p.stderr.decode()
    assert "2026-12-empty" in err and "invoice_period_field periodId" in err and \
        "--force" in err, err
    assert "2026-12-empty" not in [r[0] for r in snapshot_rows(demo)]
    assert len(snapshot_rows(demo)) == 2  # the others are made all the same
    p = demo.run("snapshot", "2026-12-empty", "--force", check=0)
    row = [r for r in snapshot_rows(demo) if r[0] == "2026-12-empty"]
    assert row and row[0][2] == 1 and row[0][6] == 0 and row[0][7] == 0, row


def test_non_default_mapping_period_key_label_and_dotted_fields(demo, tmp_path):
    mapping = {"periods_collection": "cycles", "period_label_field": "name",
               "period_start_field": "span.from", "period_end_field": "span.to",
               "period_closed_field": "state.closedOn", "period_key_field": "name",
               "invoices_collection": "bills", "invoice_period_field": "cycle.name",
               "invoice_file_field": "files.pdf", "invoice_timesheets_field": None,
               "timesheets_collection": "sheets", "timesheet_period_field": "cycleName",
               "timesheet_file_field": "scan"}
    a = App(str(tmp_path), demo.data, mapping=mapping)
    a.period("Nov 2026/1", datetime.datetime(2026, 11, 1), datetime.datetime(2026, 11, 16, 18))
    a.period(".hidden", datetime.datetime(2026, 11, 15), datetime.datetime(2026, 11, 30, 18))
    a.period("open", datetime.datetime(2026, 12, 1), None)
    with mongo_server(tmp_path / "mongo", docs=6, seed=6,
                      billing=a.write(tmp_path / "billing.json")) as server:
        a.configure(demo, server.port)
        ship_everything(demo)
        demo.run("snapshot", "--pending", check=0)
        rows = snapshot_rows(demo)
        assert [(r[0], r[1], r[2], r[6], r[7]) for r in rows] == [
            ("Nov 2026/1", "20261116", 1, 3, 4), (".hidden", "20261130", 1, 3, 4)], rows
        # labels that cannot be file names as they are: escaped, never refused
        assert remote_snapshots(demo.dest) == {
            snapshot_key("Nov 2026%2F1", "20261116"), snapshot_key("Nov 2026%2F1", "20261116", ".sig"),
            snapshot_key("%2Ehidden", "20261130"), snapshot_key("%2Ehidden", "20261130", ".sig")}
        out = tmp_path / "x"
        demo.run("restore", "snapshot", "Nov 2026/1", "--to", str(out), "--extract", check=0)
        inv = jsonl_as_bson((out / "invoices.jsonl").read_bytes())
        assert inv == raw_docs(server, "bills", {"cycle.name": "Nov 2026/1"}) and len(inv) == 3
        assert jsonl_as_bson((out / "timesheets.jsonl").read_bytes()) == \
            raw_docs(server, "sheets", {"cycleName": "Nov 2026/1"})
        manifest = json.loads((out / "snapshot.json").read_text())
        assert manifest["period_key"] == "Nov 2026/1"
        for rel in a.files:
            if "Nov 2026/1" in rel:
                assert (out / "files" / rel).read_bytes() == a.files[rel]


# --------------------------------------------------- 5. kill -9 while packing

def test_kill9_during_assembly_leaves_nothing_half_made(demo, tmp_path):
    a = App(str(tmp_path), demo.data, sizes=(1_000_000, 1_600_000))
    a.period("2026-10-A", datetime.datetime(2026, 10, 1), datetime.datetime(2026, 10, 15, 20),
             n_invoices=25, n_timesheets=35)
    with mongo_server(tmp_path / "mongo", docs=6, seed=7,
                      billing=a.write(tmp_path / "billing.json")) as server:
        a.configure(demo, server.port, poll_minutes="0.05")
        ship_everything(demo)
        folder = os.path.join(demo.root, "state", "snapshots")

        def partial():
            try:
                return [n for n in os.listdir(folder) if n.endswith(".partial") and
                        os.path.getsize(os.path.join(folder, n)) > 1 << 20]
            except FileNotFoundError:
                return []
        proc = subprocess.Popen([BIN, "-c", demo.conf, "snapshot", "2026-10-A"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=demo.env())
        try:
            wait_for(lambda: partial() or proc.poll() is not None, 120, "packing to start",
                     interval=0.01)
            assert proc.poll() is None, "the package was made before the kill"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert snapshot_rows(demo) == [], "a row for a package that was never finished"
        assert demo.query("SELECT count(*) FROM snapshot_versions")[0][0] == 0
        assert remote_snapshots(demo.dest) == set()
        assert partial(), "the kill left no partial package: the test proved nothing"

        demo.start_agent()
        wait_for(lambda: demo.query("SELECT count(*) FROM snapshots WHERE spool IS NULL")[0][0]
                 == 1, 180, "the snapshot after the restart, stored")
        demo.stop_agent()
        (label, date, complete, files, *_), = snapshot_rows(demo)
        assert complete == 1 and files == 60
        assert os.listdir(folder) == [], os.listdir(folder)
        assert remote_snapshots(demo.dest) == {snapshot_key(label, date),
                                               snapshot_key(label, date, ".sig")}
        demo.run("verify", "--snapshot", "2026-10-A", check=0, timeout=300)


def test_a_write_error_while_sealing_ends_the_job_clearly_with_nothing_recorded(demo, tmp_path):
    """The package is sealed on a thread of its own: a write error there (here the file
    size limit, EFBIG, with the package half written) ends the job with an error naming
    the package and the cause; no row, nothing remote, no partial file; the next run
    makes the snapshot."""
    import resource
    a = App(str(tmp_path), demo.data, sizes=(1_000_000, 1_600_000))
    a.period("2026-10-A", datetime.datetime(2026, 10, 1), datetime.datetime(2026, 10, 15, 20),
             n_invoices=25, n_timesheets=35)
    with mongo_server(tmp_path / "mongo", docs=6, seed=7,
                      billing=a.write(tmp_path / "billing.json")) as server:
        a.configure(demo, server.port)
        ship_everything(demo)
        folder = os.path.join(demo.root, "state", "snapshots")
        catalog = max(os.path.getsize(os.path.join(demo.root, "state", n))
                      for n in os.listdir(os.path.join(demo.root, "state"))
                      if os.path.isfile(os.path.join(demo.root, "state", n)))
        limit = max(catalog * 2, 16 << 20)
        assert limit < 60_000_000, "the package would fit under the limit: nothing is proved"

        def small_files():  # write(2) fails with EFBIG past the limit, no signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        p = subprocess.run([BIN, "-c", demo.conf, "snapshot", "2026-10-A"], capture_output=True,
                           env=demo.env(), preexec_fn=small_files, timeout=300)
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert b"cannot write the package " in p.stderr, p.stderr
        assert b".partial: cannot write sealed object: File too large" in p.stderr, p.stderr
        assert snapshot_rows(demo) == []
        assert demo.query("SELECT count(*) FROM snapshot_versions")[0][0] == 0
        assert remote_snapshots(demo.dest) == set()
        assert [n for n in os.listdir(folder) if n.endswith(".partial")] == []

        demo.run("snapshot", "2026-10-A", check=0, timeout=300)
        (label, date, complete, files, *_), = snapshot_rows(demo)
        assert complete == 1 and files == 60
        assert remote_snapshots(demo.dest) == {snapshot_key(label, date),
                                               snapshot_key(label, date, ".sig")}
        demo.run("verify", "--snapshot", "2026-10-A", check=0, timeout=300)


# ------------------------------------------- 6. S3: classes and Object Lock, on RGW

def test_rgw_archive_class_hot_class_and_object_lock_single_and_multipart(demo, rgw, tmp_path):
    from test_remote import s3_section, set_destinations

    hot = rgw.new_bucket("snap-hot")
    locked = rgw.new_bucket("snap-lock", object_lock=True)
    set_destinations(demo, s3_section(rgw, hot, name="hot", hot_class="STANDARD_IA",
                                      part_size_mb=5) +
                     s3_section(rgw, locked, name="archive", role="archive",
                                archive_class="DEEP_ARCHIVE", object_lock="yes",
                                lock_mode="COMPLIANCE", part_size_mb=5))
    a = App(str(tmp_path), demo.data, sizes=(20_000, 40_000))
    a.period("2026-10-A", datetime.datetime(2026, 10, 1), datetime.datetime(2026, 10, 15, 20),
             n_invoices=2, n_timesheets=2)
    big = App(str(tmp_path / "big"), demo.data, seed=12, sizes=(1_500_000, 2_000_000))
    big.period("2026-10-B", datetime.datetime(2026, 10, 15), datetime.datetime(2026, 10, 29, 20),
               n_invoices=2, n_timesheets=3)
    a.periods += big.periods
    a.invoices += big.invoices
    a.timesheets += big.timesheets
    a.files.update(big.files)
    with mongo_server(tmp_path / "mongo", docs=6, seed=8,
                      billing=a.write(tmp_path / "billing.json")) as server:
        a.configure(demo, server.port)
        checks = {(c["area"], c["check"]): c for c in
                  json.loads(demo.run("--json", "doctor", check=0).stdout)["checks"]}
        assert checks[("destination archive", "object lock")]["result"] == "ok", checks
        ship_everything(demo)
        log = demo.run("snapshot", "--pending", check=0, timeout=600).stderr.decode()
    sizes = dict(demo.query("SELECT label, stored_size FROM snapshots"))
    assert sizes["2026-10-A"] < 5 << 20 < sizes["2026-10-B"], sizes  # one PUT, one multipart
    # RGW dropped the lock headers of the multipart upload: set on the stored version
    fixed = [line for line in log.splitlines() if "setting the retention" in line]
    assert len(fixed) == 1 and "dest=archive" in fixed[0] and \
        snapshot_key("2026-10-B", "20261029") in fixed[0], log
    for label, date in (("2026-10-A", "20261015"), ("2026-10-B", "20261029")):
        key, sig = snapshot_key(label, date), snapshot_key(label, date, ".sig")
        h = rgw.head(hot, key)
        assert h["x-amz-storage-class"] == "STANDARD_IA", h
        assert "x-amz-object-lock-mode" not in h
        h = rgw.head(locked, key)
        assert h["x-amz-storage-class"] == "DEEP_ARCHIVE", (label, h)
        assert h["x-amz-object-lock-mode"] == "COMPLIANCE", (label, h)
        assert h["x-amz-object-lock-retain-until-date"].startswith(
            f"{int(date[:4]) + 7}-{date[4:6]}-{date[6:8]}T00:00:00"), (label, h)
        assert h.get("x-amz-storage-class", "STANDARD") == "DEEP_ARCHIVE"
        hs = rgw.head(locked, sig)
        assert hs.get("x-amz-storage-class", "STANDARD") == "STANDARD", hs  # readable at once
        assert hs["x-amz-object-lock-mode"] == "COMPLIANCE", hs
        for k in (key, sig):
            (v,) = [x for x in rgw.list_versions(locked, k) if x["key"] == k]
            status, _, body = rgw.request(
                "DELETE", f"/{locked}/{rgw.quote(k)}?versionId={v['version_id']}")
            assert status == 403, (k, status, body)
            assert rgw.get(locked, k, v["version_id"])  # still there
        # the catalog says so too
        listing = {x["label"]: x for x in
                   json.loads(demo.run("--json", "snapshot", "list", check=0).stdout)}
        copies = {c["dest"]: c for c in listing[label]["copies"]}
        assert copies["archive"]["storage_class"] == "DEEP_ARCHIVE"
        assert copies["archive"]["retain_until"].startswith(f"{int(date[:4]) + 7}-")
        assert copies["hot"]["storage_class"] == "STANDARD_IA" and \
            copies["hot"]["retain_until"] is None
        assert listing[label]["checklist"]["uploaded_to_archive"]
    # the app host's check, without the secret key: ciphertext, signature, class
    demo.set_option("keys", "secret_key", "/nonexistent/backup.key")
    text = open(demo.conf).read().replace("secret_key = /nonexistent/backup.key\n", "")
    open(demo.conf, "w").write(text)
    p = demo.run("verify", "--snapshot", "2026-10-B", check=0, timeout=300)
    out = p.stdout.decode()
    assert "archive: signature, ciphertext SHA-256 and size, storage class DEEP_ARCHIVE " \
           "(archive); the members were NOT checked: no secret key" in out, out
    assert "hot: signature, ciphertext SHA-256 and size, storage class STANDARD_IA" in out, out


def test_object_lock_needs_a_lock_mode_and_a_lock_bucket(demo, rgw):
    from test_remote import s3_section, set_destinations

    plain = rgw.new_bucket("nolock")
    set_destinations(demo, s3_section(rgw, plain, object_lock="yes"))
    p = demo.run("doctor", check=2)
    assert b"lock_mode: required with object_lock = yes" in p.stderr, p.stderr
    set_destinations(demo, s3_section(rgw, plain, lock_mode="GOVERNANCE"))
    p = demo.run("doctor", check=2)
    assert b"lock_mode: does nothing without object_lock = yes" in p.stderr, p.stderr
    set_destinations(demo, s3_section(rgw, plain, object_lock="yes", lock_mode="GOVERNANCE"))
    checks = {(c["area"], c["check"]): c for c in
              json.loads(demo.run("--json", "doctor", check=1).stdout)["checks"]}
    bad = checks[("destination s3", "object lock")]
    assert bad["result"] == "FAIL" and "has no Object Lock" in bad["detail"], bad
