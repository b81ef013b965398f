"""
Only what is current is recorded. A file sealed just before it is renamed or
deleted must not be recorded afterwards as a live version: the auditor's
"what existed when" (`catalog ls --at`) lists, at every instant, only files
that existed then. A file that keeps changing (a log written every 200 ms)
still gets a version at least every max_delay_ms.
"""
import datetime
import json
import os
import random
import time

from conftest import wait_for, write_file

SLACK = 1.0  # seconds an event may take to reach the catalog


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_no_phantom_versions_of_renamed_or_deleted_files(demo):
    demo.start_agent()
    rng = random.Random(8)
    existed = {}  # path -> [(from, to)] intervals (to None: still there)
    start = time.time()
    for i in range(200):
        # write then rename: the temp name existed only for a moment
        final = os.path.join(demo.invoices, f"inv-{i:03d}.pdf")
        temp = final + ".part"
        t0 = time.time()
        write_file(temp, os.urandom(rng.randint(100, 20000)))
        os.rename(temp, final)
        t1 = time.time()
        existed[temp] = [(t0, t1)]
        existed[final] = [(t0, None)]
        # write then delete
        gone = os.path.join(demo.bug_reports, f"crash-{i:03d}.txt")
        t0 = time.time()
        write_file(gone, os.urandom(rng.randint(100, 5000)))
        if rng.random() < 0.5:
            time.sleep(rng.random() * 0.02)
        os.unlink(gone)
        existed[gone] = [(t0, time.time())]
        if i % 20 == 0:
            time.sleep(0.05)
    end = time.time()
    finals = {p: None for p in existed if p.endswith(".pdf")}
    wait_for(lambda: all(demo.live_version(p) for p in finals), 120, "renamed files shipped")
    time.sleep(2)
    demo.stop_agent()

    def may_exist(path, t):
        for a, b in existed.get(path, []):
            if a - SLACK <= t and (b is None or t <= b + SLACK):
                return True
        return False

    phantoms = []
    instants = [start + (end + 3 - start) * k / 40 for k in range(41)]
    for t in instants:
        listed = json.loads(demo.run("--json", "catalog", "ls", "--at", iso(t), check=0).stdout)
        for v in listed:
            if not may_exist(v["path"], t):
                phantoms.append((iso(t), v["path"]))
    assert phantoms == [], f"{len(phantoms)} phantom listings, e.g. {phantoms[:5]}"
    # and at the end exactly the 200 final names are live
    live = json.loads(demo.run("--json", "catalog", "ls", check=0).stdout)
    assert sorted(v["path"] for v in live) == sorted(finals)


def test_a_file_that_never_stops_changing_ships_every_max_delay(demo):
    demo.set_option("agent", "max_delay_ms", "5000")
    demo.start_agent()
    path = os.path.join(demo.bug_reports, "app.log")
    duration = 60
    with open(path, "ab", buffering=0) as log:  # open all along: no close events
        t_end = time.monotonic() + duration
        n = 0
        while time.monotonic() < t_end:
            log.write(f"line {n} {os.urandom(8).hex()}\n".encode())
            n += 1
            time.sleep(0.2)
    times = [s / 1000 for (s,) in demo.query(
        "SELECT v.shipped_at FROM versions v JOIN paths p ON p.id = v.path_id WHERE p.path = ?"
        " ORDER BY v.id", os.fsencode(path))]
    assert len(times) >= duration / 5 - 2, times
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) <= 5 + 3, gaps  # max_delay, plus a read and a commit
    # once the writer stops, the final content ships once it settles
    final = open(path, "rb").read()
    import hashlib
    demo.wait_shipped({path: hashlib.sha256(final).hexdigest()}, timeout=30)
    demo.stop_agent()
