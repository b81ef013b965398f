"""
kill -9 mid-ship, a forced inotify overflow, and the agent under valgrind.
"""
import hashlib
import os
import re
import sqlite3
import subprocess
import time

import pytest

from conftest import PLAIN_BIN, sha256_file, wait_for, write_file


def verify_every_version_has_its_copy(demo):
    """No version recorded without its verified copy at the destination."""
    rows = demo.query(
        "SELECT v.object_id, o.stored_size, lower(hex(o.stored_sha256)) FROM versions v "
        "JOIN objects o ON o.id = v.object_id JOIN copies c ON c.object_id = o.id "
        "WHERE c.dest = 'local'")
    all_versions = demo.query("SELECT count(*) FROM versions WHERE kind = 'file'")[0][0]
    assert len(rows) == all_versions, "a version without a recorded copy"
    for object_id, size, stored_sha in rows:
        path = demo.object_path(object_id)
        assert os.path.getsize(path) == size, path
        assert sha256_file(path) == stored_sha, path
    return len(rows)


def test_kill9_while_shipping_1000_files(demo, tmp_path):
    demo.start_agent()
    expected = {}
    folders = [demo.images, demo.invoices, demo.bug_reports]
    for i in range(1000):
        p = os.path.join(folders[i % 3], f"k-{i:04d}.dat")
        expected[p] = write_file(p, os.urandom(1000 + (i * 37) % 60_000))
    # Kill it in the middle: some shipped, not all.
    wait_for(lambda: demo.query("SELECT count(*) FROM versions")[0][0] >= 50, 120,
             "first ships")
    demo.kill_agent()
    shipped_before = demo.query("SELECT count(*) FROM versions")[0][0]
    assert shipped_before < 1000, "agent finished before the kill; the test proves nothing"

    con = sqlite3.connect(demo.catalog_path)
    assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    con.close()
    verify_every_version_has_its_copy(demo)

    demo.start_agent()
    demo.wait_shipped(expected, timeout=300)
    demo.stop_agent()
    assert demo.query("SELECT count(*) FROM queue")[0][0] == 0
    assert verify_every_version_has_its_copy(demo) == 1000
    assert not [f for f in os.listdir(os.path.join(demo.root, "state", "spool"))]
    # every file restorable, byte-identical
    out = tmp_path / "r"
    for path, sha in expected.items():
        demo.restore(path, str(out), binary=PLAIN_BIN)
        assert sha256_file(out / os.path.basename(path)) == sha
    leftovers = [f for d, _, fs in os.walk(demo.dest) for f in fs if ".tmp." in f]
    assert leftovers == []


@pytest.fixture
def tiny_inotify_queue():
    knob = "/proc/sys/fs/inotify/max_queued_events"
    old = open(knob).read().strip()
    try:
        with open(knob, "w") as f:
            f.write("16")
    except OSError as e:
        pytest.fail(f"cannot lower {knob} (tests run as root): {e}")
    try:
        yield
    finally:
        with open(knob, "w") as f:
            f.write(old)


def test_inotify_overflow_loses_no_file(demo, tiny_inotify_queue):
    # The limit applies to inotify instances created after it is set.
    demo.start_agent()
    expected = {}
    for i in range(400):
        p = os.path.join(demo.invoices, f"burst-{i:03d}.pdf")
        expected[p] = write_file(p, os.urandom(2000))
    demo.wait_shipped(expected, timeout=180)
    assert "inotify queue overflowed" in demo.log_text()
    status = demo.run("--json", "status", check=0).stdout
    assert re.search(rb'"inotify_overflows":[1-9]', status), status
    demo.stop_agent()


def test_agent_under_valgrind_no_definite_leaks(demo, tmp_path):
    vlog = str(tmp_path / "valgrind.log")
    demo.start_agent(binary=PLAIN_BIN, wrapper=[
        "valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
        "--error-exitcode=99", f"--log-file={vlog}"])
    expected = {}
    for i in range(10):
        p = os.path.join(demo.images, f"v-{i}.jpg")
        expected[p] = write_file(p, os.urandom(50_000 * (i + 1)))
    os.rename(os.path.join(demo.images, "v-0.jpg"), os.path.join(demo.images, "w-0.jpg"))
    expected[os.path.join(demo.images, "w-0.jpg")] = expected.pop(
        os.path.join(demo.images, "v-0.jpg"))
    os.unlink(os.path.join(demo.images, "v-1.jpg"))
    expected.pop(os.path.join(demo.images, "v-1.jpg"))
    demo.wait_shipped(expected, timeout=240)
    rc = demo.stop_agent(expect=None, timeout=120)
    report = open(vlog).read()
    assert rc == 0, report[-3000:]
    assert "definitely lost: 0 bytes" in report or "no leaks are possible" in report, \
        report[-3000:]
    out = tmp_path / "r"
    demo.run("restore", "file", os.path.join(demo.images, "w-0.jpg"), "--to", str(out),
             binary=PLAIN_BIN, check=0)
    assert sha256_file(out / "w-0.jpg") == expected[os.path.join(demo.images, "w-0.jpg")]


def inotify_watches_in_use():
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fdinfo"):
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    total += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            continue
    return total


@pytest.fixture
def few_inotify_watches():
    knob = "/proc/sys/fs/inotify/max_user_watches"
    old = open(knob).read().strip()

    def limit(extra):
        with open(knob, "w") as f:
            f.write(str(inotify_watches_in_use() + extra))
    try:
        yield limit
    finally:
        with open(knob, "w") as f:
            f.write(old)


def test_out_of_inotify_watches_warns_and_still_ships(demo, few_inotify_watches):
    # Room for two of the three folders' watches only.
    few_inotify_watches(2)
    demo.start_agent()
    assert "out of inotify watches" in demo.log_text()
    assert "max_user_watches" in demo.log_text()
    expected = {}
    for folder in (demo.images, demo.invoices, demo.bug_reports):
        p = os.path.join(folder, "during-shortage.dat")
        expected[p] = write_file(p, os.urandom(3000))
    demo.wait_shipped(expected, timeout=60)
    demo.stop_agent()


BACKLOG_FILES = int(os.environ.get("CUSTODIAN_BACKLOG_FILES", "20000"))


def test_kill9_during_a_backlog_loses_nothing(demo, tmp_path):
    """Day one: a large backlog already on disk (100,000 files with
    CUSTODIAN_BACKLOG_FILES=100000; 20,000 by default, to keep `make test` short), found
    by the start-up scan and shipped in large batches whose spool files are made durable
    together. kill -9 twice in the middle: nothing recorded without its verified copy,
    and after the last start every file is shipped, byte-identical."""
    n = BACKLOG_FILES
    expected = {}
    for i in range(n):
        d = os.path.join(demo.bug_reports, f"old-{i // 1000:03d}")
        if i % 1000 == 0:
            os.makedirs(d)
        p = os.path.join(d, f"r-{i:06d}.json")
        expected[p] = write_file(p, os.urandom(64 + (i * 131) % 4033))
    for fraction in (0.1, 0.4):
        demo.start_agent(binary=PLAIN_BIN)
        wait_for(lambda: demo.query("SELECT count(*) FROM versions")[0][0] >= n * fraction, 300,
                 f"{fraction:.0%} of the backlog shipped")
        demo.kill_agent()
        shipped = demo.query("SELECT count(*) FROM versions")[0][0]
        assert shipped < n, "the backlog was shipped before the kill; the test proves nothing"
        con = sqlite3.connect(demo.catalog_path)
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        # Every file is somewhere: shipped, queued, or sealed and waiting for its copy.
        rows = con.execute(
            "SELECT p.path FROM paths p WHERE "
            "EXISTS (SELECT 1 FROM versions v WHERE v.path_id = p.id) OR "
            "EXISTS (SELECT 1 FROM queue q WHERE q.path_id = p.id) OR "
            "EXISTS (SELECT 1 FROM pending_versions pv WHERE pv.path_id = p.id)").fetchall()
        known = {bytes(r[0]) if not isinstance(r[0], str) else os.fsencode(r[0]) for r in rows}
        accounted = sum(1 for path in expected if os.fsencode(path) in known)
        con.close()
        assert accounted == n, f"{n - accounted} files neither shipped nor queued after kill -9"
        verify_every_version_has_its_copy(demo)
    demo.start_agent(binary=PLAIN_BIN)
    demo.wait_shipped(expected, timeout=600)
    demo.stop_agent()
    assert demo.query("SELECT count(*) FROM queue")[0][0] == 0
    assert demo.query("SELECT count(*) FROM copy_queue")[0][0] == 0
    assert verify_every_version_has_its_copy(demo) == n
    assert not os.listdir(os.path.join(demo.root, "state", "spool"))
    leftovers = [f for d, _, fs in os.walk(demo.dest) for f in fs if ".tmp." in f]
    assert leftovers == []
    p = demo.run("verify", "--deep", "--sample", "300", binary=PLAIN_BIN)
    assert p.returncode == 0, p.stdout + p.stderr
    out = tmp_path / "r"
    for path in list(expected)[:: max(1, n // 25)]:
        demo.restore(path, str(out), binary=PLAIN_BIN)
        assert sha256_file(out / os.path.basename(path)) == expected[path]
