#!/usr/bin/python3
"""
A MongoDB wire-protocol server for custodian's tests: Debian's
python3-mockupdb speaks the wire protocol (OP_MSG, and OP_QUERY for the
legacy handshake) to the real libmongoc, and python3-mongomock holds the
data and answers queries (filter, sort, projection, skip, limit) as MongoDB
would. No mongod exists on these machines; see
/work/shared/recipes/mongodb-wire-server.md.

    /usr/bin/python3 tests/servers/mongo_server.py --port P --seed N \
        [--docs 20000] [--replset NAME] [--unknown-log FILE] \
        [--request-log FILE] [--dump-expected FILE]

It prints "ready" once listening and stops on SIGTERM (or SIGINT).

Data: database "billing" with agencies, clinicians, patients, timesheets,
invoices, billing_periods (--docs documents in all, deterministic for a
seed: nested documents, arrays, dates, ObjectIds, Decimal128 amounts, Int64,
doubles, nulls, UUIDs as Binary subtype 4, PNG thumbnails as Binary), an
empty collection "adjustments", a view "unpaid_invoices" on invoices, and
secondary indexes invoices {period_label: 1} and timesheets
{clinician_id: 1, date: -1} (unique).

Commands answered: hello/isMaster/ismaster, ping, buildInfo, listDatabases,
listCollections, listIndexes, find, getMore, killCursors, count, aggregate,
endSessions, insert, update, delete, and with --writable dropDatabase and drop. Cursors are real: batchSize is honoured (101 documents and
16 MiB per batch otherwise), ids are random, getMore walks them, the last
batch says id 0. With --replset NAME the server says it is the primary of a
one-member replica set, reports operationTime/$clusterTime (the cluster
time moves on with every command, as if others wrote), and serves
readConcern "snapshot": the first find gets an atClusterTime, later finds
may ask for it (a time in the future is refused). A standalone refuses
snapshot reads, as mongod does.

Every other command is refused with {ok: 0, code: 59, errmsg: "unknown
command X"}, logged to stderr and appended to --unknown-log, so a test can
fail on a command the server does not know. Internal errors go there too.

--billing FILE adds the collections of FILE (canonical Extended JSON: an
object of collection name -> list of documents) to the database, as a
billing app's periods, invoices and timesheets would be; the write
commands insert, update and delete let a test change them while the
server runs (close a period, correct an invoice), through pymongo.

--writable lets clients write other databases than "billing" too (not
admin, local or config), as a restore does into a scratch database: insert,
update, delete, find, count and aggregate work there, and dropDatabase and
drop remove them; without it only "billing" is writable and dropDatabase is
refused.

--request-log FILE appends one JSON line per command (name, db, collection,
readConcern, batchSize, lsid present) for tests that check what the client
sent. --dump-expected FILE writes the generated data set as a BSON stream:
per collection (in listCollections order) one header document
{"db", "collection", "type", "options", "uuid", "indexes", "count"}
followed by its `count` documents, byte for byte what find returns.
"""
import argparse
import datetime
import decimal
import itertools
import json
import os
import random
import signal
import struct
import sys
import threading
import traceback
import zlib
from collections import OrderedDict

import bson
import mongomock
import mongomock.filtering
from bson import Binary, Decimal128, Int64, ObjectId, Timestamp
from bson.codec_options import CodecOptions
from bson.binary import UuidRepresentation
from bson.raw_bson import RawBSONDocument
import mockupdb
from mockupdb import MockupDB

# mockupdb decodes what clients send with pymongo's default UUID handling, which
# turns a standard UUID (binary subtype 4) into a Python UUID and back into the
# legacy subtype 3: a document written and read back would not be the bytes that
# were written. Binary values are kept as they are instead.
mockupdb.CODEC_OPTIONS = CodecOptions(document_class=OrderedDict,
                                      uuid_representation=UuidRepresentation.UNSPECIFIED)

DB = "billing"
SERVER_VERSION = "6.0.14"
MAX_WIRE_VERSION = 17
MAX_BSON = 16 * 1024 * 1024
DEFAULT_FIRST_BATCH = 101
ENCODE = CodecOptions(document_class=OrderedDict)


def log(msg):
    sys.stderr.write("mongo_server: %s\n" % msg)
    sys.stderr.flush()


# ------------------------------------------------------------------ data set

FIRST = ["Ana", "José", "Zoë", "Łukasz", "Mei", "Olu", "Priya", "Sven", "Fatima", "Noah",
         "Chloé", "Dmitri", "Aiko", "Mateo", "Grace", "Hamid"]
LAST = ["García", "Nguyen", "O'Brien", "Kowalski", "Chen", "Okafor", "Sharma", "Berg",
        "Haddad", "Smith", "Dubois", "Ivanov", "Tanaka", "Rossi", "Müller", "北川"]
CITIES = [("Springfield", "IL"), ("Portland", "OR"), ("Austin", "TX"), ("Madison", "WI"),
          ("Boise", "ID"), ("Albany", "NY"), ("Tucson", "AZ"), ("Raleigh", "NC")]
SPECIALTIES = ["physical therapy", "occupational therapy", "speech therapy", "nursing",
               "home health aide", "wound care", "respiratory therapy"]
CODES = ["G0151", "G0152", "G0153", "G0299", "G0300", "S9131", "T1019"]
PAYERS = ["Medicare", "Medicaid", "Aetna", "Cigna", "BlueCross", "Humana", "self-pay"]


class Gen:
    """Deterministic values from one seeded random.Random."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.oid_counter = itertools.count(self.rng.randrange(1 << 20))
        self.base = datetime.datetime(2025, 1, 1)

    def oid(self, when=None):
        ts = int((when or self.base).replace(tzinfo=datetime.timezone.utc).timestamp())
        return ObjectId(struct.pack(">I", ts) + self.rng.randbytes(5)
                        + struct.pack(">I", next(self.oid_counter) & 0xffffff)[1:])

    def date(self, start_days=0, span_days=730):
        ms = self.rng.randrange(span_days * 86400 * 1000)
        return (self.base + datetime.timedelta(days=start_days, milliseconds=ms))

    def money(self, lo, hi):
        cents = self.rng.randrange(lo * 100, hi * 100)
        return Decimal128(decimal.Decimal(cents) / 100)

    def uuid4(self):
        b = bytearray(self.rng.randbytes(16))
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        return Binary(bytes(b), 4)

    def name(self):
        return OrderedDict([("first", self.rng.choice(FIRST)), ("last", self.rng.choice(LAST))])

    def address(self):
        city, state = self.rng.choice(CITIES)
        return OrderedDict([("street", "%d %s St" % (self.rng.randrange(1, 9999),
                                                      self.rng.choice(LAST))),
                            ("city", city), ("state", state),
                            ("zip", "%05d" % self.rng.randrange(100000))])

    def png(self, size=12):
        """A small real PNG (size x size RGB, noisy), like a stored thumbnail."""
        raw = b"".join(b"\x00" + self.rng.randbytes(size * 3) for _ in range(size))

        def chunk(kind, data):
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
        return Binary(b"\x89PNG\r\n\x1a\n"
                      + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
                      + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""), 0)


def sizes(total):
    """Documents per collection for a total of `total` (at least 6)."""
    total = max(total, 6)
    n = OrderedDict()
    n["agencies"] = max(1, total // 1000)
    n["clinicians"] = max(1, total // 40)
    n["patients"] = max(1, total * 15 // 100)
    n["billing_periods"] = min(24, max(1, total // 800))
    n["invoices"] = max(1, total * 20 // 100)
    n["timesheets"] = max(1, total - sum(n.values()))
    return n


def generate(seed, total):
    """The data set: OrderedDict collection -> list of documents (OrderedDicts)."""
    g = Gen(seed)
    rng = g.rng
    n = sizes(total)
    data = OrderedDict()

    agencies = []
    for i in range(n["agencies"]):
        agencies.append(OrderedDict([
            ("_id", g.oid()),
            ("name", "%s Home Care %d" % (rng.choice(LAST), i)),
            ("address", g.address()),
            ("phone", "+1-555-%04d" % rng.randrange(10000)),
            ("contract", OrderedDict([("plan", rng.choice(["standard", "premium", "pilot"])),
                                      ("start", g.date(-365, 365)),
                                      ("hourly_rate", g.money(30, 90)),
                                      ("net_days", rng.choice([15, 30, 45]))])),
            ("active", rng.random() < 0.9),
            ("tags", rng.sample(["rural", "urban", "pediatric", "geriatric", "24h"], 2)),
        ]))
    data["agencies"] = agencies

    clinicians = []
    for i in range(n["clinicians"]):
        clinicians.append(OrderedDict([
            ("_id", g.oid()),
            ("agency_id", rng.choice(agencies)["_id"]),
            ("external_id", g.uuid4()),
            ("name", g.name()),
            ("license", OrderedDict([("number", "LIC-%07d" % rng.randrange(10 ** 7)),
                                     ("state", rng.choice(CITIES)[1]),
                                     ("expires", g.date(365, 1460))])),
            ("specialties", rng.sample(SPECIALTIES, rng.randrange(1, 4))),
            ("hourly_rate", g.money(25, 120)),
            ("photo_thumb", g.png(8)),
            ("rating", round(rng.uniform(1, 5), 2)),
            ("supervisor_id", None if i % 7 else rng.choice(clinicians)["_id"]
             if clinicians else None),
        ]))
    data["clinicians"] = clinicians

    patients = []
    for i in range(n["patients"]):
        patients.append(OrderedDict([
            ("_id", g.oid()),
            ("mrn", "MRN-%08d" % (1000000 + i)),
            ("name", g.name()),
            ("dob", datetime.datetime(1930, 1, 1) + datetime.timedelta(
                days=rng.randrange(90 * 365))),
            ("address", g.address()),
            ("insurance", OrderedDict([("payer", rng.choice(PAYERS)),
                                       ("member_id", "%s%09d" % (rng.choice("ABCDEFGH"),
                                                                 rng.randrange(10 ** 9))),
                                       ("group", None if rng.random() < 0.3 else
                                        "GRP-%04d" % rng.randrange(10000))])),
            ("allergies", rng.sample(["penicillin", "latex", "peanuts", "sulfa", "iodine"],
                                     rng.randrange(0, 3))),
            ("emergency_contacts", [OrderedDict([("name", g.name()),
                                                 ("phone", "+1-555-%04d" % rng.randrange(10000)),
                                                 ("relation", rng.choice(["spouse", "child",
                                                                          "friend"]))])
                                    for _ in range(rng.randrange(1, 3))]),
            ("thumbnail", g.png(12) if rng.random() < 0.6 else None),
            ("created_at", g.date()),
            ("visits_count", Int64(rng.randrange(0, 5000))),
        ]))
    data["patients"] = patients

    periods = []
    for i in range(n["billing_periods"]):
        year, month = 2025 + i // 12, i % 12 + 1
        start = datetime.datetime(year, month, 1)
        end = datetime.datetime(year + month // 12, month % 12 + 1, 1)
        periods.append(OrderedDict([
            ("_id", "%04d-%02d" % (year, month)),
            ("label", "%04d-%02d" % (year, month)),
            ("start", start),
            ("end", end),
            ("closed", i < n["billing_periods"] - 2),
            ("closed_at", end + datetime.timedelta(days=5) if i < n["billing_periods"] - 2
             else None),
        ]))
    data["billing_periods"] = periods

    invoices = []
    for i in range(n["invoices"]):
        period = rng.choice(periods)
        lines = []
        for _ in range(rng.randrange(1, 6)):
            qty = decimal.Decimal(rng.randrange(1, 40)) / 4
            rate = decimal.Decimal(rng.randrange(2500, 12000)) / 100
            lines.append(OrderedDict([("code", rng.choice(CODES)),
                                      ("description", rng.choice(SPECIALTIES) + " visit"),
                                      ("qty", Decimal128(qty)),
                                      ("rate", Decimal128(rate)),
                                      ("amount", Decimal128((qty * rate).quantize(
                                          decimal.Decimal("0.01"))))]))
        total_amount = sum((line["amount"].to_decimal() for line in lines), decimal.Decimal(0))
        paid = rng.random() < 0.7
        invoices.append(OrderedDict([
            ("_id", g.oid(period["start"])),
            ("number", "INV-%s-%06d" % (period["label"][:4], i)),
            ("patient_id", rng.choice(patients)["_id"]),
            ("agency_id", rng.choice(agencies)["_id"]),
            ("period_label", period["label"]),
            ("lines", lines),
            ("total", Decimal128(total_amount)),
            ("total_cents", Int64(int(total_amount * 100))),
            ("issued_at", period["end"] + datetime.timedelta(
                milliseconds=rng.randrange(86400 * 1000 * 3))),
            ("paid", paid),
            ("payments", [OrderedDict([("at", g.date()), ("amount", Decimal128(total_amount)),
                                       ("method", rng.choice(["ach", "card", "check"]))])]
             if paid else []),
            ("notes", None if rng.random() < 0.8 else "résumé of care — see chart ✓"),
        ]))
    data["invoices"] = invoices

    timesheets = []
    n_clin = len(clinicians)
    for k in range(n["timesheets"]):
        clin = clinicians[k % n_clin]
        day = datetime.datetime(2025, 1, 1) + datetime.timedelta(days=k // n_clin)
        entries = []
        t = day + datetime.timedelta(hours=7)
        for _ in range(rng.randrange(1, 4)):
            minutes = rng.randrange(15, 240)
            entries.append(OrderedDict([("start", t),
                                        ("end", t + datetime.timedelta(minutes=minutes)),
                                        ("code", rng.choice(CODES)),
                                        ("minutes", minutes)]))
            t += datetime.timedelta(minutes=minutes + rng.randrange(0, 60))
        total_min = sum(e["minutes"] for e in entries)
        timesheets.append(OrderedDict([
            ("_id", g.oid(day)),
            ("clinician_id", clin["_id"]),
            ("patient_id", rng.choice(patients)["_id"]),
            ("date", day),
            ("period_label", day.strftime("%Y-%m")),
            ("entries", entries),
            ("total_hours", Decimal128((decimal.Decimal(total_min) / 60).quantize(
                decimal.Decimal("0.01")))),
            ("status", rng.choice(["draft", "submitted", "approved", "approved", "billed"])),
            ("mileage", round(rng.uniform(0, 80), 1)),
            ("signature", Binary(rng.randbytes(32), 0) if rng.random() < 0.5 else None),
        ]))
    data["timesheets"] = timesheets
    return data


# Collection metadata as listCollections reports it; order = listCollections order.
def catalog(seed):
    rng = random.Random(seed ^ 0x5eed)

    def uuid():
        b = bytearray(rng.randbytes(16))
        b[6] = (b[6] & 0x0F) | 0x40
        b[8] = (b[8] & 0x3F) | 0x80
        return Binary(bytes(b), 4)

    id_index = OrderedDict([("v", 2), ("key", OrderedDict([("_id", 1)])), ("name", "_id_")])
    period_validator = OrderedDict([("$jsonSchema", OrderedDict([
        ("bsonType", "object"),
        ("required", ["label", "start", "end"]),
        ("properties", OrderedDict([("label", OrderedDict([("bsonType", "string")]))]))]))])
    cols = OrderedDict()
    for name in ("agencies", "clinicians", "patients", "billing_periods", "invoices",
                 "timesheets", "adjustments"):
        options = OrderedDict()
        if name == "billing_periods":
            options = OrderedDict([("validator", period_validator),
                                   ("validationLevel", "strict"),
                                   ("validationAction", "error")])
        indexes = [id_index]
        if name == "invoices":
            indexes = indexes + [OrderedDict([("v", 2), ("key", OrderedDict([("period_label", 1)])),
                                              ("name", "period_label_1")])]
        if name == "timesheets":
            indexes = indexes + [OrderedDict([
                ("v", 2), ("key", OrderedDict([("clinician_id", 1), ("date", -1)])),
                ("name", "clinician_id_1_date_-1"), ("unique", True)])]
        cols[name] = OrderedDict([("type", "collection"), ("options", options),
                                  ("uuid", uuid()), ("indexes", indexes)])
    cols["unpaid_invoices"] = OrderedDict([
        ("type", "view"),
        ("options", OrderedDict([("viewOn", "invoices"),
                                 ("pipeline", [OrderedDict([("$match",
                                                             OrderedDict([("paid", False)]))])])])),
        ("uuid", None), ("indexes", [])])
    return cols


def write_expected(path, data, cols):
    with open(path, "wb") as f:
        for name, meta in cols.items():
            docs = data.get(name, [])
            header = OrderedDict([("db", DB), ("collection", name), ("type", meta["type"]),
                                  ("options", meta["options"]),
                                  ("uuid", meta["uuid"].hex() if meta["uuid"] else ""),
                                  ("indexes", meta["indexes"]), ("count", len(docs))])
            f.write(bson.encode(header, codec_options=ENCODE))
            for doc in docs:
                f.write(bson.encode(doc, codec_options=ENCODE))


# -------------------------------------------------------------------- server

class CommandError(Exception):
    def __init__(self, code, code_name, errmsg):
        super().__init__(errmsg)
        self.code, self.code_name, self.errmsg = code, code_name, errmsg


class Cursor:
    def __init__(self, ns, docs, single_batch=False):
        self.ns = ns
        self.docs = iter(docs)
        self.pending = None
        self.done = False
        self.single_batch = single_batch

    def batch(self, limit):
        """Up to `limit` documents (0: no count limit) and 16 MiB, as raw BSON."""
        out, size = [], 0
        while not self.done and (limit <= 0 or len(out) < limit):
            if self.pending is None:
                try:
                    doc = next(self.docs)
                except StopIteration:
                    self.done = True
                    break
                self.pending = doc if isinstance(doc, RawBSONDocument) else RawBSONDocument(
                    bson.encode(doc, codec_options=ENCODE))
            n = len(self.pending.raw)
            if out and size + n > MAX_BSON - 1024:
                break
            out.append(self.pending)
            size += n
            self.pending = None
        if not self.done and self.pending is None:
            # peek so that the batch holding the last document already says id 0
            try:
                self.pending = RawBSONDocument(bson.encode(next(self.docs), codec_options=ENCODE))
            except StopIteration:
                self.done = True
        return out


class Server:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.cursors = {}
        self.cursor_ids = random.Random()  # not the data seed: ids differ per run
        self.replset = args.replset
        self.cluster_t = int(datetime.datetime.now(datetime.timezone.utc).timestamp())
        self.cluster_i = 1
        self.connection_ids = itertools.count(1)
        self.client = mongomock.MongoClient()
        self.cols = catalog(args.seed)
        self.data = generate(args.seed, args.docs)
        if args.billing:
            from bson import json_util
            with open(args.billing) as f:
                extra = json_util.loads(f.read(), json_options=json_util.JSONOptions(
                    document_class=OrderedDict))
            for name, docs in extra.items():
                # the app's own collection replaces a generated one of that name
                self.cols.pop(name, None)
                self.add_collection(name)
                self.data[name] = list(docs)
        db = self.client[DB]
        for name, meta in self.cols.items():
            if meta["type"] != "collection":
                continue
            coll = db[name]
            docs = self.data.get(name, [])
            if docs:
                coll.insert_many([OrderedDict(d) for d in docs])
            else:
                db.create_collection(name)
            for index in meta["indexes"][1:]:
                coll.create_index(list(index["key"].items()), name=index["name"],
                                  unique=index.get("unique", False))
        if args.dump_expected:
            write_expected(args.dump_expected, self.data, self.cols)
        self.unknown_log = args.unknown_log
        self.request_log = args.request_log

    def add_collection(self, name):
        """A collection made by the app (--billing, or an insert into a new name)."""
        if name in self.cols:
            return
        rng = random.Random(name)
        uuid = bytearray(rng.randbytes(16))
        uuid[6] = (uuid[6] & 0x0F) | 0x40
        uuid[8] = (uuid[8] & 0x3F) | 0x80
        id_index = OrderedDict([("v", 2), ("key", OrderedDict([("_id", 1)])), ("name", "_id_")])
        self.cols[name] = OrderedDict([("type", "collection"), ("options", OrderedDict()),
                                       ("uuid", Binary(bytes(uuid), 4)), ("indexes", [id_index])])

    # ---- bookkeeping

    def record_unknown(self, line):
        log(line)
        if self.unknown_log:
            with open(self.unknown_log, "a") as f:
                f.write(line + "\n")

    def record_request(self, name, db, cmd):
        if not self.request_log:
            return
        rc = cmd.get("readConcern")
        entry = OrderedDict([("cmd", name), ("db", db)])
        if isinstance(cmd.get(name), str):
            entry["collection"] = cmd[name]
        if name == "getMore":
            entry["collection"] = cmd.get("collection")
        if rc is not None:
            rc = dict(rc)
            if isinstance(rc.get("atClusterTime"), Timestamp):
                ts = rc["atClusterTime"]
                rc["atClusterTime"] = [ts.time, ts.inc]
            entry["readConcern"] = rc
        for key in ("batchSize", "hint", "filter"):
            if key in cmd:
                entry[key] = cmd[key]
        if "cursor" in cmd and isinstance(cmd["cursor"], dict) and "batchSize" in cmd["cursor"]:
            entry["batchSize"] = cmd["cursor"]["batchSize"]
        entry["lsid"] = "lsid" in cmd
        with open(self.request_log, "a") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def tick(self):
        """The cluster time moves on, as if other clients were writing."""
        self.cluster_i += 1
        return Timestamp(self.cluster_t, self.cluster_i)

    def host(self):
        return "127.0.0.1:%d" % self.port

    def gossip(self, reply, ts):
        snapshot = reply.pop("_snapshot", None)
        if self.replset:
            # a snapshot read reports its snapshot as operationTime, as mongod does
            reply["operationTime"] = snapshot or ts
            reply["$clusterTime"] = OrderedDict([
                ("clusterTime", ts),
                ("signature", OrderedDict([("hash", Binary(b"\0" * 20, 0)),
                                           ("keyId", Int64(0))]))])
        return reply

    # ---- dispatch

    def handle(self, request):
        with self.lock:
            try:
                self._handle(request)
            except Exception as e:  # a bug here must fail the test, not hang it
                self.record_unknown("internal error: %r\n%s" % (e, traceback.format_exc()))
                request.replies(OrderedDict([("ok", 0), ("errmsg", "internal error: %r" % e),
                                             ("code", 1)]))
        return True

    def _handle(self, request):
        if not request.is_command:
            self.record_unknown("unknown operation %r" % (request,))
            request.replies(OrderedDict([("ok", 0), ("errmsg", "unsupported legacy opcode"),
                                         ("code", 59)]))
            return
        cmd = request.doc
        if list(cmd)[:1] == ["$query"]:  # legacy OP_QUERY with a read preference
            cmd = cmd["$query"]
        name = next(iter(cmd), "")
        db = request.namespace or ""
        canonical = {"ismaster": "hello", "isMaster": "hello", "hello": "hello",
                     "buildinfo": "buildInfo", "buildInfo": "buildInfo"}.get(name, name)
        handler = getattr(self, "cmd_" + canonical, None)
        self.record_request(name, db, cmd)
        ts = self.tick()
        if handler is None:
            self.record_unknown("unknown command %s db=%s: %r" % (name, db, dict(cmd)))
            reply = OrderedDict([("ok", 0), ("errmsg", "unknown command %s" % name),
                                 ("code", 59), ("codeName", "CommandNotFound")])
        else:
            try:
                reply = handler(cmd, db, name, ts)
                reply["ok"] = 1
            except CommandError as e:
                reply = OrderedDict([("ok", 0), ("errmsg", e.errmsg), ("code", e.code),
                                     ("codeName", e.code_name)])
        request.replies(self.gossip(reply, ts))

    # ---- commands

    def cmd_hello(self, cmd, db, name, ts):
        r = OrderedDict()
        r["helloOk"] = True
        if name == "hello":
            r["isWritablePrimary"] = True
        else:
            r["ismaster"] = True
        if self.replset:
            r["hosts"] = [self.host()]
            r["setName"] = self.replset
            r["setVersion"] = 1
            r["secondary"] = False
            r["primary"] = self.host()
            r["me"] = self.host()
            r["electionId"] = ObjectId("7fffffff0000000000000001")
            now = datetime.datetime.utcnow().replace(microsecond=0)
            optime = OrderedDict([("ts", ts), ("t", Int64(1))])
            r["lastWrite"] = OrderedDict([("opTime", optime), ("lastWriteDate", now),
                                          ("majorityOpTime", optime),
                                          ("majorityWriteDate", now)])
        r["maxBsonObjectSize"] = MAX_BSON
        r["maxMessageSizeBytes"] = 48000000
        r["maxWriteBatchSize"] = 100000
        r["localTime"] = datetime.datetime.utcnow()
        r["logicalSessionTimeoutMinutes"] = 30
        r["connectionId"] = next(self.connection_ids)
        r["minWireVersion"] = 0
        r["maxWireVersion"] = MAX_WIRE_VERSION
        r["readOnly"] = False
        return r

    def cmd_ping(self, cmd, db, name, ts):
        return OrderedDict()

    def cmd_endSessions(self, cmd, db, name, ts):
        return OrderedDict()

    def cmd_buildInfo(self, cmd, db, name, ts):
        parts = [int(p) for p in SERVER_VERSION.split(".")] + [0]
        return OrderedDict([("version", SERVER_VERSION),
                            ("gitVersion", "0" * 40),
                            ("versionArray", parts),
                            ("bits", 64), ("debug", False),
                            ("maxBsonObjectSize", MAX_BSON),
                            ("storageEngines", ["wiredTiger"])])

    def cmd_listDatabases(self, cmd, db, name, ts):
        self.need_admin(db, name)
        names = ["admin", DB, "config", "local"]
        out = []
        for n in names:
            entry = OrderedDict([("name", n)])
            if not cmd.get("nameOnly"):
                entry["sizeOnDisk"] = 40960 if n != DB else 8 << 20
                entry["empty"] = False
            out.append(entry)
        flt = cmd.get("filter")
        if flt:
            out = [e for e in out if mongomock.filtering.filter_applies(flt, e)]
        r = OrderedDict([("databases", out)])
        if not cmd.get("nameOnly"):
            r["totalSize"] = sum(e.get("sizeOnDisk", 0) for e in out)
            r["totalSizeMb"] = r["totalSize"] >> 20
        return r

    def need_admin(self, db, name):
        if db != "admin":
            raise CommandError(13, "Unauthorized", "%s may only be run against the admin "
                                                   "database." % name)

    def collections_of(self, db):
        if db == DB:
            out = []
            for cname, meta in self.cols.items():
                info = OrderedDict([("readOnly", meta["type"] == "view")])
                if meta["uuid"] is not None:
                    info["uuid"] = meta["uuid"]
                entry = OrderedDict([("name", cname), ("type", meta["type"]),
                                     ("options", meta["options"]), ("info", info)])
                if meta["type"] == "collection":
                    entry["idIndex"] = meta["indexes"][0]
                out.append(entry)
            return out
        if db == "admin":
            return [OrderedDict([("name", "system.version"), ("type", "collection"),
                                 ("options", OrderedDict()),
                                 ("info", OrderedDict([("readOnly", False),
                                                       ("uuid", Binary(b"\1" * 16, 4))]))])]
        return []

    def cmd_listCollections(self, cmd, db, name, ts):
        entries = self.collections_of(db)
        flt = cmd.get("filter")
        if flt:
            entries = [e for e in entries if mongomock.filtering.filter_applies(flt, e)]
        if cmd.get("nameOnly"):
            entries = [OrderedDict([("name", e["name"]), ("type", e["type"])]) for e in entries]
        return self.cursor_reply(db + ".$cmd.listCollections", entries,
                                 self.cursor_batch_size(cmd), ts)

    def cmd_listIndexes(self, cmd, db, name, ts):
        coll = cmd.get(name)
        meta = self.cols.get(coll) if db == DB else None
        if meta is None or meta["type"] != "collection":
            raise CommandError(26, "NamespaceNotFound", "ns does not exist: %s.%s" % (db, coll))
        return self.cursor_reply("%s.%s" % (db, coll), meta["indexes"],
                                 self.cursor_batch_size(cmd), ts)

    def cursor_batch_size(self, cmd):
        c = cmd.get("cursor")
        if isinstance(c, dict) and "batchSize" in c:
            return int(c["batchSize"])
        return DEFAULT_FIRST_BATCH

    def cursor_reply(self, ns, docs, first_batch, ts, single_batch=False, at_cluster_time=None):
        cur = Cursor(ns, docs, single_batch)
        batch = cur.batch(first_batch)
        cursor_id = 0
        if not cur.done and not single_batch:
            cursor_id = self.cursor_ids.randrange(1, 1 << 62)
            cur.at_cluster_time = at_cluster_time
            self.cursors[cursor_id] = cur
        c = OrderedDict([("firstBatch", batch), ("id", Int64(cursor_id)), ("ns", ns)])
        reply = OrderedDict([("cursor", c)])
        if at_cluster_time is not None:
            c["atClusterTime"] = at_cluster_time
            reply["_snapshot"] = at_cluster_time  # see gossip()
        return reply

    def read_concern(self, cmd, ts):
        """The snapshot time to read at, or None; refuses what mongod refuses."""
        rc = cmd.get("readConcern") or {}
        level = rc.get("level")
        if level in (None, "local", "majority", "available", "linearizable"):
            if "atClusterTime" in rc:
                raise CommandError(72, "InvalidOptions",
                                   "atClusterTime is only allowed with level snapshot")
            return None
        if level != "snapshot":
            raise CommandError(9, "FailedToParse", "invalid readConcern level %r" % level)
        if not self.replset:
            raise CommandError(123, "NotAReplicaSet",
                               "readConcern level 'snapshot' is only supported on replica sets")
        if "txnNumber" in cmd:
            raise CommandError(263, "OperationNotSupportedInTransaction",
                               "transactions are not supported by this test server")
        at = rc.get("atClusterTime")
        if at is None:
            return ts
        if not isinstance(at, Timestamp):
            raise CommandError(14, "TypeMismatch", "atClusterTime must be a Timestamp")
        if (at.time, at.inc) > (ts.time, ts.inc):
            raise CommandError(72, "InvalidOptions",
                               "atClusterTime %r is in the future (cluster time %r)" % (at, ts))
        return at

    SYSTEM_DBS = ("admin", "local", "config")

    def scratch(self, db):
        """A database other than billing that a --writable server lets clients write."""
        return self.args.writable and db not in (DB,) + self.SYSTEM_DBS and bool(db)

    def collection(self, db, coll):
        if self.scratch(db):
            if coll not in self.client[db].list_collection_names():
                return None, None
            return self.client[db][coll], OrderedDict([("type", "collection")])
        if db != DB or coll not in self.cols:
            return None, None
        return self.client[db][coll], self.cols[coll]

    def cmd_find(self, cmd, db, name, ts):
        coll_name = cmd.get(name)
        at = self.read_concern(cmd, ts)
        coll, meta = self.collection(db, coll_name)
        flt = cmd.get("filter") or {}
        skip = int(cmd.get("skip", 0))
        limit = int(cmd.get("limit", 0))
        single = bool(cmd.get("singleBatch")) or limit < 0
        limit = abs(limit)
        batch = int(cmd.get("batchSize", 0)) or DEFAULT_FIRST_BATCH
        if limit and batch > limit:
            batch = limit
        if coll is None:
            docs = []
        elif meta["type"] == "view":
            pipeline = list(meta["options"]["pipeline"]) + [{"$match": flt}]
            if cmd.get("sort"):
                pipeline.append({"$sort": OrderedDict(cmd["sort"])})
            if skip:
                pipeline.append({"$skip": skip})
            if limit:
                pipeline.append({"$limit": limit})
            if cmd.get("projection"):
                pipeline.append({"$project": cmd["projection"]})
            docs = self.client[db][meta["options"]["viewOn"]].aggregate(pipeline)
        else:
            sort = list(cmd["sort"].items()) if cmd.get("sort") else None
            docs = coll.find(flt, cmd.get("projection") or None, skip=skip, limit=limit,
                             sort=sort)
        return self.cursor_reply("%s.%s" % (db, coll_name), docs, batch, ts, single, at)

    def cmd_getMore(self, cmd, db, name, ts):
        cursor_id = int(cmd.get(name))
        coll = cmd.get("collection")
        cur = self.cursors.get(cursor_id)
        if cur is None:
            raise CommandError(43, "CursorNotFound", "cursor id %d not found" % cursor_id)
        if cur.ns != "%s.%s" % (db, coll):
            raise CommandError(13, "Unauthorized", "cursor %d belongs to %s, not %s.%s"
                               % (cursor_id, cur.ns, db, coll))
        batch = cur.batch(int(cmd.get("batchSize", 0)))
        if cur.done:
            del self.cursors[cursor_id]
        c = OrderedDict([("nextBatch", batch), ("id", Int64(0 if cur.done else cursor_id)),
                         ("ns", cur.ns)])
        reply = OrderedDict([("cursor", c)])
        if getattr(cur, "at_cluster_time", None) is not None:
            c["atClusterTime"] = cur.at_cluster_time
            reply["_snapshot"] = cur.at_cluster_time
        return reply

    def cmd_killCursors(self, cmd, db, name, ts):
        killed, missing = [], []
        for cid in cmd.get("cursors", []):
            (killed if self.cursors.pop(int(cid), None) is not None else missing).append(cid)
        return OrderedDict([("cursorsKilled", killed), ("cursorsNotFound", missing),
                            ("cursorsAlive", []), ("cursorsUnknown", [])])

    def cmd_count(self, cmd, db, name, ts):
        self.read_concern(cmd, ts)
        coll, meta = self.collection(db, cmd.get(name))
        if coll is None:
            return OrderedDict([("n", 0)])
        if meta["type"] == "view":
            n = len(list(self.client[db][meta["options"]["viewOn"]].aggregate(
                list(meta["options"]["pipeline"]) + [{"$match": cmd.get("query") or {}}])))
        else:
            n = coll.count_documents(cmd.get("query") or {})
        return OrderedDict([("n", n)])

    def cmd_aggregate(self, cmd, db, name, ts):
        at = self.read_concern(cmd, ts)
        coll, meta = self.collection(db, cmd.get(name))
        pipeline = list(cmd.get("pipeline", []))
        if coll is None:
            docs = []
        elif meta["type"] == "view":
            docs = self.client[db][meta["options"]["viewOn"]].aggregate(
                list(meta["options"]["pipeline"]) + pipeline)
        else:
            docs = coll.aggregate(pipeline)
        return self.cursor_reply("%s.%s" % (db, cmd.get(name)), docs,
                                 self.cursor_batch_size(cmd), ts, at_cluster_time=at)


    # ---- writes (the app changing its data while custodian runs)

    def writable(self, db, name):
        if self.scratch(db):
            return self.client[db][name]
        if db != DB:
            raise CommandError(13, "Unauthorized", "only %s is writable here" % DB)
        if name not in self.cols:
            self.add_collection(name)
            self.client[db].create_collection(name)
        if self.cols[name]["type"] != "collection":
            raise CommandError(166, "CommandNotSupportedOnView", "%s is a view" % name)
        return self.client[db][name]

    def cmd_insert(self, cmd, db, name, ts):
        coll = self.writable(db, cmd.get(name))
        docs = [OrderedDict(d) for d in cmd.get("documents", [])]
        if docs:
            coll.insert_many(docs)
        return OrderedDict([("n", len(docs))])

    def cmd_update(self, cmd, db, name, ts):
        coll = self.writable(db, cmd.get(name))
        n = modified = 0
        for u in cmd.get("updates", []):
            if u.get("multi"):
                r = coll.update_many(u["q"], u["u"], upsert=bool(u.get("upsert")))
            elif isinstance(u["u"], dict) and not any(k.startswith("$") for k in u["u"]):
                r = coll.replace_one(u["q"], u["u"], upsert=bool(u.get("upsert")))
            else:
                r = coll.update_one(u["q"], u["u"], upsert=bool(u.get("upsert")))
            n += r.matched_count
            modified += r.modified_count
        return OrderedDict([("n", n), ("nModified", modified)])

    def cmd_delete(self, cmd, db, name, ts):
        coll = self.writable(db, cmd.get(name))
        n = 0
        for d in cmd.get("deletes", []):
            r = coll.delete_one(d["q"]) if d.get("limit") == 1 else coll.delete_many(d["q"])
            n += r.deleted_count
        return OrderedDict([("n", n)])


    def cmd_dropDatabase(self, cmd, db, name, ts):
        if not self.scratch(db):
            raise CommandError(13, "Unauthorized", "dropDatabase of %s is not allowed here" % db)
        self.client.drop_database(db)
        return OrderedDict([("dropped", db)])

    def cmd_drop(self, cmd, db, name, ts):
        if not self.scratch(db):
            raise CommandError(13, "Unauthorized", "drop in %s is not allowed here" % db)
        coll = cmd.get(name)
        if coll not in self.client[db].list_collection_names():
            raise CommandError(26, "NamespaceNotFound", "ns not found")
        self.client[db].drop_collection(coll)
        return OrderedDict([("ns", "%s.%s" % (db, coll))])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--replset", default=None)
    ap.add_argument("--unknown-log", default=None)
    ap.add_argument("--request-log", default=None)
    ap.add_argument("--dump-expected", default=None)
    ap.add_argument("--billing", default=None)
    ap.add_argument("--writable", action="store_true")
    args = ap.parse_args()

    server = Server(args)
    mock = MockupDB(port=args.port, request_timeout=int(1e6))
    server.port = args.port
    mock.autoresponds(server.handle)
    mock.run()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    log("listening port=%d docs=%d seed=%d%s" % (
        args.port, sum(len(v) for v in server.data.values()), args.seed,
        " replset=" + args.replset if args.replset else ""))
    while not stop.wait(0.5):
        pass
    mock.stop()
    log("stopped")
    os._exit(0)  # mockupdb's connection threads may still be blocked in recv


if __name__ == "__main__":
    main()
