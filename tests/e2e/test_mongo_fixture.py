"""
The MongoDB test server (tests/servers/mongo_server.py: python3-mockupdb on
the wire, python3-mongomock behind it) behaves like a mongod to a real
driver, here Debian's python3-pymongo: the generated billing data set is
served byte for byte as --dump-expected says, counts match, batchSize is
honoured with real cursor ids across getMores, killCursors is answered,
filters/sorts/projections are MongoDB's, listCollections/listIndexes carry
what mongodump needs (options, info.uuid, index specs), a replica set
member serves snapshot reads at one atClusterTime and a standalone refuses
them, unknown commands are refused and recorded, SIGTERM stops it.

custodian's own dump (agent/mongo_dump.c) is checked against this server
in test_daily.py; this file proves the server itself. The server's harness
(MongoServer, mongo_server) lives in servers.py.
"""
import signal
import time
from collections import OrderedDict

import pytest

from servers import MongoServer, mongo_server

bson = pytest.importorskip("bson")
pymongo = pytest.importorskip("pymongo")
from bson.binary import UuidRepresentation  # noqa: E402
from bson.codec_options import CodecOptions  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from bson.timestamp import Timestamp  # noqa: E402
from pymongo.errors import OperationFailure  # noqa: E402

COLLECTIONS = ["agencies", "clinicians", "patients", "billing_periods", "invoices",
               "timesheets", "adjustments", "unpaid_invoices"]
DECODE = CodecOptions(document_class=OrderedDict,
                      uuid_representation=UuidRepresentation.UNSPECIFIED)


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    with mongo_server(tmp_path_factory.mktemp("mongo-standalone"), docs=20000, seed=11) as server:
        yield server


@pytest.fixture(scope="module")
def replset(tmp_path_factory):
    with mongo_server(tmp_path_factory.mktemp("mongo-replset"), docs=3000, seed=12,
                      replset="rs0") as server:
        yield server


def test_data_set_served_byte_for_byte(standalone):
    expected = standalone.expected()
    assert list(expected) == COLLECTIONS
    total = sum(h["count"] for h, _ in expected.values())
    assert total >= 20000
    assert expected["adjustments"][0]["count"] == 0
    with standalone.client() as client:
        db = client.get_database("billing", codec_options=CodecOptions(
            document_class=RawBSONDocument))
        for name, (header, docs) in expected.items():
            if header["type"] == "view":
                continue
            got = [d.raw for d in db[name].find(batch_size=500)]
            assert len(got) == header["count"], name
            assert db[name].count_documents({}) == header["count"], name
            assert db[name].estimated_document_count() == header["count"], name
            for i, (a, b) in enumerate(zip(got, docs)):
                assert a == b, "%s document %d differs:\n%r\n%r" % (
                    name, i, bson.decode(a, DECODE), bson.decode(b, DECODE))


def test_data_set_has_the_types_a_dump_must_carry(standalone):
    expected = standalone.expected()
    seen = set()

    def walk(value):
        seen.add(type(value).__name__)
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for name, (_, docs) in expected.items():
        for raw in docs[:300]:
            doc = bson.decode(raw, DECODE)
            walk(doc)
            if isinstance(doc.get("external_id"), bson.Binary):
                assert doc["external_id"].subtype == 4
            if isinstance(doc.get("thumbnail"), bson.Binary):
                assert bytes(doc["thumbnail"][:8]) == b"\x89PNG\r\n\x1a\n"
    for t in ("ObjectId", "datetime", "Decimal128", "Binary", "Int64", "float", "int", "bool",
              "NoneType", "list", "OrderedDict", "str"):
        assert t in seen, t


def test_batch_size_and_getmore_with_real_cursor_ids(standalone):
    n = standalone.expected()["timesheets"][0]["count"]
    standalone.clear_requests()
    with standalone.client() as client:
        docs = list(client.billing.timesheets.find({}, batch_size=700))
    assert len(docs) == n
    reqs = [r for r in standalone.requests() if r["cmd"] in ("find", "getMore")]
    assert reqs[0]["cmd"] == "find" and reqs[0]["batchSize"] == 700
    getmores = reqs[1:]
    assert len(getmores) == (n + 699) // 700 - 1
    assert all(r["cmd"] == "getMore" and r["batchSize"] == 700 for r in getmores)
    # the last batch said id 0: the driver did not need killCursors
    assert not any(r["cmd"] == "killCursors" for r in standalone.requests())

    # a cursor closed early is killed, with its real id
    standalone.clear_requests()
    with standalone.client() as client:
        cursor = client.billing.invoices.find({}, batch_size=50)
        first = [next(cursor) for _ in range(60)]  # one getMore
        cursor_id = cursor.cursor_id
        assert cursor_id not in (None, 0)
        cursor.close()
        # a getMore on the killed cursor is refused like mongod does
        with pytest.raises(OperationFailure) as e:
            client.billing.command("getMore", bson.Int64(cursor_id), collection="invoices")
        assert e.value.code == 43
    assert len(first) == 60
    assert any(r["cmd"] == "killCursors" for r in standalone.requests())


def test_filter_sort_projection_limit(standalone):
    invoices = [bson.decode(d, DECODE) for d in standalone.expected()["invoices"][1]]
    want = sorted((d for d in invoices if d["period_label"] == "2025-03"),
                  key=lambda d: d["number"], reverse=True)
    with standalone.client() as client:
        got = list(client.billing.invoices.find({"period_label": "2025-03"},
                                                {"number": 1, "_id": 0})
                   .sort("number", pymongo.DESCENDING))
        assert got == [{"number": d["number"]} for d in want]
        assert len(got) > 0
        top = list(client.billing.invoices.find({"paid": False}).sort("number", 1).skip(3)
                   .limit(5))
        unpaid = sorted((d for d in invoices if not d["paid"]), key=lambda d: d["number"])
        assert [d["number"] for d in top] == [d["number"] for d in unpaid[3:8]]
        # the view: the pipeline of its definition
        assert client.billing.unpaid_invoices.count_documents({}) == len(unpaid)


def test_list_collections_and_indexes(standalone):
    expected = standalone.expected()
    with standalone.client() as client:
        db = client.get_database("billing", codec_options=DECODE)
        # (list_collections() would decode info.uuid with pymongo 3.11's legacy UUID rule)
        reply = db.command("listCollections", codec_options=DECODE)
        assert reply["cursor"]["id"] == 0
        infos = reply["cursor"]["firstBatch"]
        assert [c["name"] for c in infos] == COLLECTIONS
        for info in infos:
            header = expected[info["name"]][0]
            assert info["type"] == header["type"]
            assert info["options"] == header["options"]
            if header["type"] == "collection":
                uuid = info["info"]["uuid"]
                assert isinstance(uuid, bson.Binary) and uuid.subtype == 4
                assert uuid.hex() == header["uuid"]
                got = list(db[info["name"]].list_indexes())
                assert got == header["indexes"]
                assert [list(i) for i in got] == [list(i) for i in header["indexes"]]
            else:
                assert info["options"]["viewOn"] == "invoices"
        ts = {i["name"]: i for i in db.timesheets.list_indexes()}
        assert list(ts["clinician_id_1_date_-1"]["key"].items()) == [("clinician_id", 1),
                                                                      ("date", -1)]
        assert ts["clinician_id_1_date_-1"]["unique"] is True
        assert "period_label_1" in {i["name"] for i in db.invoices.list_indexes()}
        assert sorted(client.list_database_names()) == ["admin", "billing", "config", "local"]
        build = client.admin.command("buildInfo")
        assert build["version"].count(".") == 2


def test_standalone_refuses_snapshot_reads(standalone):
    with standalone.client() as client:
        hello = client.admin.command("hello")
        assert "setName" not in hello and hello["maxWireVersion"] >= 17
        with pytest.raises(OperationFailure) as e:
            client.billing.command("find", "invoices", readConcern={"level": "snapshot"})
        assert e.value.code == 123


def test_unknown_commands_refused_and_recorded(standalone):
    with standalone.client() as client:
        with pytest.raises(OperationFailure) as e:
            client.billing.command("frobnicate", 1)
        assert e.value.code == 59 and "unknown command frobnicate" in str(e.value)
    assert "unknown command frobnicate" in standalone.unknown()
    standalone.clear_unknown()  # expected here; the fixture fails on any other


def test_replica_set_snapshot_reads(replset):
    with replset.client() as client:
        hello = client.admin.command("hello")
        assert hello["setName"] == "rs0" and hello["isWritablePrimary"]
        assert hello["hosts"] == ["127.0.0.1:%d" % replset.port]
        first = client.billing.command("find", "invoices", readConcern={"level": "snapshot"},
                                       batchSize=10)
        at = first["cursor"]["atClusterTime"]
        assert isinstance(at, Timestamp)
        assert first["operationTime"] == at  # a snapshot read reports its time
        assert first["$clusterTime"]["clusterTime"] >= at
        more = client.billing.command("getMore", first["cursor"]["id"], collection="invoices",
                                      batchSize=10)
        assert more["cursor"]["atClusterTime"] == at
        assert len(more["cursor"]["nextBatch"]) == 10
        again = client.billing.command("find", "patients", readConcern={
            "level": "snapshot", "atClusterTime": at}, batchSize=5)
        assert again["cursor"]["atClusterTime"] == at
        assert again["operationTime"] == at
        assert again["$clusterTime"]["clusterTime"] > at  # the cluster moved on; the read did not
        plain = client.billing.command("find", "patients", batchSize=1)
        assert plain["operationTime"] > at
        with pytest.raises(OperationFailure) as e:
            client.billing.command("find", "patients", readConcern={
                "level": "snapshot", "atClusterTime": Timestamp(at.time + 3600, 1)})
        assert e.value.code == 72
    reqs = [r for r in replset.requests() if r["cmd"] == "find" and "readConcern" in r]
    assert reqs[0]["readConcern"] == {"level": "snapshot"}
    assert reqs[1]["readConcern"] == {"level": "snapshot", "atClusterTime": [at.time, at.inc]}


def test_sigterm_stops_the_server(tmp_path):
    server = MongoServer(tmp_path, docs=50, seed=1)
    with server.client() as client:
        assert client.billing.agencies.count_documents({}) >= 1
    t = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0
    assert time.monotonic() - t < 10
    server.stderr.close()
    assert server.unknown() == ""
