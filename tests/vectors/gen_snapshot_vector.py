#!/usr/bin/python3
"""
gen_snapshot_vector.py - write tests/vectors/snapshot-v1/: the destination
folder a real custodian binary leaves after packaging two billing periods
(one complete; one whose files partly changed or vanished after they were
shipped, so that it has refs.tsv entries, and an invoice without its PDF,
so that it is INCOMPLETE), with the keys that read it.

    gen_snapshot_vector.py BINARY OUT_DIR

Needs the e2e test harness (tests/e2e: the MongoDB wire-protocol server and
the billing-app data set), python3-bson, python3-nacl and python3-zstandard.
Run once, when the vector was made; the output is committed and never
regenerated. Keys as in gen_daily_vectors.py.
"""
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

from gen_daily_vectors import open_object, run, set_option, write_keys  # noqa: E402


def main(binary, out_dir):
    from servers import mongo_server
    from test_snapshots import App

    binary = os.path.abspath(binary)
    root = "/tmp/custodian-vector-snapshot"
    if os.path.exists(root):
        shutil.rmtree(root)
    subprocess.run([binary, "init", "--demo", root], check=True, capture_output=True)
    conf = os.path.join(root, "custodian.conf")
    write_keys(os.path.join(root, "keys"))
    set_option(conf, "agent", "daily_at", "23:59")
    data = os.path.join(root, "app", "data")
    with tempfile.TemporaryDirectory() as tmp:
        app = App(tmp, data, seed=2033, sizes=(300, 3000))
        base = datetime.datetime(2026, 10, 1)
        app.period("2026-10-A", base, datetime.datetime(2026, 10, 15, 21, 30),
                   n_invoices=2, n_timesheets=2)
        b = app.period("Oct 2026/B", base + datetime.timedelta(days=14),
                       datetime.datetime(2026, 10, 30, 2, 0), n_invoices=2, n_timesheets=2)
        with mongo_server(os.path.join(tmp, "mongo"), docs=6, seed=5,
                          billing=app.write(os.path.join(tmp, "billing.json"))) as server:
            set_option(conf, "mongodb", "uri",
                       f"mongodb://127.0.0.1:{server.port}/billing"
                       "?serverSelectionTimeoutMS=3000&connectTimeoutMS=3000")
            for k, v in app.m.items():
                set_option(conf, "snapshots", k, v)
            set_option(conf, "snapshots", "wait_for_files_minutes", "0")
            run(binary, conf, "scan")
            run(binary, conf, "ship", "--timeout", "60")
            # Period B: a PDF regenerated and an image deleted after they were shipped
            # (refs.tsv), and an invoice whose PDF never existed (missing.txt).
            b_invoices = [i for i in app.invoices if i["periodId"] == b["_id"]]
            b_sheets = [t for t in app.timesheets if t["billingPeriodId"] == b["_id"]]
            with open(os.path.join(data, app.get(b_invoices[0], "pdf.file")), "wb") as f:
                f.write(b"%PDF-1.7 regenerated after shipping\n")
            os.unlink(os.path.join(data, app.get(b_sheets[1], "image.path")))
            with server.client() as c:
                c.billing.invoices.insert_one(OrderedDict([
                    ("number", "INV-ghost"), ("periodId", b["_id"]),
                    ("pdf", {"file": "invoices/Oct 2026/B/INV-ghost.pdf"})]))
            p = subprocess.run([binary, "-c", conf, "snapshot", "--pending"],
                               capture_output=True, timeout=300)
            assert p.returncode in (0, 1) and b"INCOMPLETE" in p.stderr, p.stderr
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        shutil.copytree(os.path.join(root, "destination"), os.path.join(out_dir, "destination"))
        shutil.rmtree(os.path.join(out_dir, "destination", "backups", "daily"),
                      ignore_errors=True)
        os.makedirs(os.path.join(out_dir, "keys"))
        for name in ("backup.pub", "backup.key", "naming.key", "signing.key", "signing.pub"):
            shutil.copyfile(os.path.join(root, "keys", name), os.path.join(out_dir, "keys", name))
        expected = os.path.join(out_dir, "expected")
        os.makedirs(expected)
        sk = bytes.fromhex(open(os.path.join(root, "keys", "backup.key")).read().split()[3])
        cycles = os.path.join(out_dir, "destination", "backups", "snapshots", "billing-cycles")
        for dirpath, _, names in os.walk(cycles):
            for n in names:
                if n.endswith(".cst"):
                    with open(os.path.join(expected, n[:-len(".cst")]), "wb") as f:
                        f.write(open_object(os.path.join(dirpath, n), sk))
        # The original bytes of every file a period references, by SHA-256.
        import hashlib
        os.makedirs(os.path.join(expected, "files"))
        for content in app.files.values():
            with open(os.path.join(expected, "files", hashlib.sha256(content).hexdigest()),
                      "wb") as f:
                f.write(content)
    shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(*sys.argv[1:]))
