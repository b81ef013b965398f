"""
No event is dropped when the catalog cannot be written: the state disk full
during a burst, or another process holding the catalog's write lock for 15 s.
Every file written meanwhile ends up shipped with no operator action,
`status` fails while it lasts ("catalog not writable") and is OK after, and
the agent keeps answering `status` throughout.
"""
import os
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import wait_for, write_file


@pytest.fixture
def state_on_small_disk(demo, tmp_path):
    """The demo's state folder on a 64 MiB tmpfs of its own (tests run as root)."""
    state = os.path.join(demo.root, "state")
    saved = str(tmp_path / "state.saved")
    shutil.move(state, saved)
    os.mkdir(state, 0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", state],
                   check=True)
    try:
        for name in os.listdir(saved):
            shutil.move(os.path.join(saved, name), os.path.join(state, name))
        yield state
    finally:
        subprocess.run(["umount", "-l", state], check=False)


def fill(folder):
    """Fill the filesystem of folder; returns the filler's path."""
    path = os.path.join(folder, "filler")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for block in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * block)
            except OSError:
                pass
    finally:
        os.close(fd)
    return path


def test_state_disk_full_during_a_burst_loses_nothing(demo, state_on_small_disk):
    demo.start_agent()
    first = os.path.join(demo.invoices, "first.pdf")
    demo.wait_shipped({first: write_file(first, os.urandom(2000))})
    filler = fill(state_on_small_disk)
    files = {}
    for i in range(200):
        p = os.path.join((demo.images, demo.invoices)[i % 2], f"full-{i:03d}.bin")
        files[p] = write_file(p, os.urandom(1000 + i))
    st = demo.wait_status(False, 30, "status to fail while the state disk is full")
    assert any("catalog not writable" in p or "failing" in p for p in st["problems"]), st
    time.sleep(10)
    assert demo.agent_proc.poll() is None, "the agent must not exit"
    demo.status()  # still answering
    os.unlink(filler)
    demo.wait_shipped(files, timeout=120)
    demo.wait_status(True, 60, "status OK once there is room")
    demo.stop_agent()
    assert demo.query("PRAGMA integrity_check")[0][0] == "ok"


def test_catalog_write_lock_held_for_15s_loses_nothing(demo):
    demo.start_agent()
    first = os.path.join(demo.invoices, "first.pdf")
    demo.wait_shipped({first: write_file(first, os.urandom(2000))})
    locked, release = threading.Event(), threading.Event()

    def hold():
        c = sqlite3.connect(demo.catalog_path, timeout=30, isolation_level=None)
        c.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(60)
        c.execute("ROLLBACK")
        c.close()

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert locked.wait(30)
        started = time.monotonic()
        files = {}
        for i in range(50):
            p = os.path.join(demo.bug_reports, f"locked-{i:02d}.txt")
            files[p] = write_file(p, os.urandom(500 + i))
        st = demo.wait_status(False, 12, "status to fail while the catalog is locked")
        assert any("catalog not writable" in p for p in st["problems"]), st
        # the loop never waits long on the lock: status keeps getting answers quickly
        for _ in range(5):
            t0 = time.monotonic()
            rc, st = demo.status()
            assert st["agent"] is not None, st
            assert time.monotonic() - t0 < 3
        time.sleep(max(0, 15 - (time.monotonic() - started)))
    finally:
        release.set()
        t.join()
    demo.wait_shipped(files, timeout=90)
    demo.wait_status(True, 60, "status OK once the lock is gone")
    assert "catalog writable again" in demo.log_text()
    demo.stop_agent()


def test_scan_and_daily_walks_never_hold_the_write_lock(demo):
    """`custodian scan` over 3,000 files commits in short transactions: the agent's own
    events keep getting in while it walks."""
    for i in range(3000):
        write_file(os.path.join(demo.images, f"pre-{i:04d}.jpg"), b"x" * (i % 50 + 1))
    demo.start_agent()
    stop = threading.Event()
    longest = [0.0]

    def probe():
        c = sqlite3.connect(demo.catalog_path, timeout=30, isolation_level=None)
        while not stop.is_set():
            t0 = time.monotonic()
            c.execute("BEGIN IMMEDIATE")
            c.execute("ROLLBACK")
            longest[0] = max(longest[0], time.monotonic() - t0)
            time.sleep(0.01)
        c.close()

    t = threading.Thread(target=probe)
    t.start()
    try:
        demo.run("scan", check=0)
    finally:
        stop.set()
        t.join()
    assert longest[0] < 2.0, f"a writer waited {longest[0]:.1f}s for the catalog"
    wait_for(lambda: demo.query("SELECT count(*) FROM versions")[0][0] >= 3000, 180,
             "the 3,000 files shipped")
    demo.stop_agent()
