"""
The crash loop: a mixed workload (creates, rewrites, appends, renames,
deletes, new folders) runs while the agent is killed with SIGKILL at a random
instant, again and again (20 times in `make test`, 200 in `make torture`).
At the end every file's final content is live in the catalog and on every
destination exactly once, nothing else is, `verify --deep` is clean and the
catalog passes PRAGMA integrity_check.
"""
import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time

from conftest import wait_for

LOOPS = int(os.environ.get("CUSTODIAN_CRASH_LOOPS", "20"))


class Workload(threading.Thread):
    def __init__(self, demo, seed):
        super().__init__(daemon=True)
        self.demo = demo
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.ops = 0

    def files(self):
        out = []
        for root in (self.demo.images, self.demo.invoices, self.demo.bug_reports):
            for d, _, fs in os.walk(root):
                out.extend(os.path.join(d, f) for f in fs)
        return out

    def folders(self):
        out = []
        for root in (self.demo.images, self.demo.invoices, self.demo.bug_reports):
            out.extend(d for d, _, _ in os.walk(root))
        return out

    def step(self):
        rng = self.rng
        files = self.files()
        op = rng.random()
        if op < 0.35 or not files:
            folder = rng.choice(self.folders())
            with open(os.path.join(folder, f"f{rng.getrandbits(32):08x}.bin"), "wb") as f:
                f.write(os.urandom(rng.randint(0, 60000)))
        elif op < 0.5:
            with open(rng.choice(files), "wb") as f:
                f.write(os.urandom(rng.randint(0, 30000)))
        elif op < 0.6:
            with open(rng.choice(files), "ab") as f:
                f.write(os.urandom(rng.randint(1, 5000)))
        elif op < 0.7:
            src = rng.choice(files)
            os.rename(src, os.path.join(rng.choice(self.folders()),
                                        f"r{rng.getrandbits(32):08x}.bin"))
        elif op < 0.85:
            os.unlink(rng.choice(files))
        elif op < 0.95:
            folder = rng.choice(self.folders())
            if folder.count("/") - self.demo.data.count("/") < 4:
                os.mkdir(os.path.join(folder, f"d{rng.getrandbits(16):04x}"))
        else:
            # a whole folder renamed (with what is inside)
            folder = rng.choice(self.folders())
            if folder not in (self.demo.images, self.demo.invoices, self.demo.bug_reports):
                os.rename(folder, folder + "x")

    def run(self):
        while not self.stop.is_set():
            try:
                self.step()
            except OSError:
                pass  # raced with itself (a folder renamed away meanwhile)
            self.ops += 1
            time.sleep(self.rng.random() * 0.02)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_kill_9_at_random_instants_loses_nothing(demo):
    usb = demo.add_local_destination("usb")
    rng = random.Random(int(os.environ.get("CUSTODIAN_CRASH_SEED", "5")))
    work = Workload(demo, rng.getrandbits(32))
    work.start()
    try:
        for i in range(LOOPS):
            if rng.random() < 0.25:
                # killed during start-up (the reconciliation, the first seals)
                log = open(demo.agent_log, "ab")
                p = subprocess.Popen([demo.bin, "-c", demo.conf, "agent"], stdout=log,
                                     stderr=log, env=demo.env())
                log.close()
                time.sleep(rng.random() * 0.5)
                p.send_signal(signal.SIGKILL)
                p.wait()
            else:
                demo.start_agent()
                time.sleep(rng.uniform(0.05, 1.5))
                demo.kill_agent()
    finally:
        work.stop.set()
        work.join()
    assert work.ops > LOOPS
    demo.start_agent()
    expected = {p: sha(p) for p in work.files()}
    demo.wait_shipped(expected, timeout=300)
    wait_for(lambda: demo.query("SELECT (SELECT count(*) FROM queue) + (SELECT count(*) FROM"
                                " copy_queue) + (SELECT count(*) FROM pending_versions)")[0][0]
             == 0, 180, "everything drained")
    demo.wait_status(True, 60)
    demo.stop_agent()

    # exactly the files on disk are live, as the catalog's newest versions and as an
    # auditor's `catalog ls` lists them
    live = {p.decode() for p in demo.live_paths()}
    assert live == set(expected), (sorted(live - set(expected))[:5],
                                   sorted(set(expected) - live)[:5])
    listed = {v["path"] for v in json.loads(demo.run("--json", "catalog", "ls").stdout)}
    assert listed == set(expected), (sorted(listed - set(expected))[:5],
                                     sorted(set(expected) - listed)[:5])
    # every destination holds every object exactly once, and nothing else
    for name, root in (("local", demo.dest), ("usb", usb)):
        on_disk = [f for _, _, fs in os.walk(os.path.join(root, "objects")) for f in fs]
        recorded = {o for (o,) in demo.query(
            "SELECT object_id FROM copies WHERE dest = ? AND damaged_at IS NULL", name)}
        needed = {o for (o,) in demo.query(
            "SELECT object_id FROM versions WHERE object_id IS NOT NULL")}
        assert sorted(on_disk) == sorted(set(on_disk)), f"{name}: a name twice"
        assert set(on_disk) == recorded, (name, sorted(set(on_disk) ^ recorded)[:5])
        assert needed <= recorded, (name, sorted(needed - recorded)[:5])
    p = demo.run("verify", "--deep", check=0, timeout=600)
    assert b" 0 failed" in p.stdout, p.stdout
    assert demo.query("PRAGMA integrity_check")[0][0] == "ok"
    print(f"{LOOPS} kills, {work.ops} operations, {len(expected)} files at the end")
