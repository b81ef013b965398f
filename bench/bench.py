#!/usr/bin/python3
"""custodian benchmark: latency, burst throughput, memory, and rclone/restic/borg.

Usage:
    /usr/bin/python3 bench/bench.py --bin build/release/custodian [--scale 0.1]
        [--workdir DIR] [--keep] [--seed N] [--strict] [--skip-tools]

Standard library only. Phases (see bench/README.md):
  1. latency: with the agent running (demo config, default settings), write
     files one at a time at a steady pace; latency = the catalog's shipped_at
     minus the time the writer closed the file.
  2. burst: copy the pre-generated staging set into the watched folders as fast
     as possible; time from the first write to the last verified copy.
  3. memory: the agent's VmHWM at the end, and VmRSS sampled during the runs.
  4. the same staging set through rclone copy, restic backup and borg create.
Prints progress on stderr, then a table and a final JSON line on stdout.
Exit status: 0 when the benchmark ran (targets met or not, unless --strict),
1 when custodian misbehaved (crash, files not shipped), 2 on usage/setup errors.
"""

import argparse
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

MB = 1_000_000  # throughput and sizes are in decimal megabytes
LATENCY_TARGET_MS = 2000.0
RSS_TARGET_MB = 64.0  # MiB, as /proc reports kB
FOLDERS = ("images", "invoices", "bug-reports")


class BenchError(Exception):
    """custodian misbehaved; the message says what was seen."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data set


class DataGen:
    """A clinic-like data set. Sizes come from a seeded RNG; contents are
    unique per file (no whole-file duplicates), so no tool gets to dedupe."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.serial = 0
        words = (
            "Invoice Patient Consultation Radiograph Periapical Panoramic Crown "
            "Prophylaxis Amount Due Tax Subtotal Insurance Claim Provider NPI Date "
            "Service Description Qty Unit Price Total Balance Payment Received Thank "
            "you for choosing our clinic Dr. Smith Jones Garcia Street Suite City"
        ).split()
        # A pool of text blocks (PDF content-stream-like) reused inside and
        # across invoices; with random streams mixed in, zstd/lz4 save
        # roughly half of an invoice (about a third of its bytes are random).
        self.blocks = []
        for _ in range(48):
            lines = []
            while sum(len(x) for x in lines) < self.rng.randint(1024, 3072):
                n = self.rng.randint(4, 10)
                text = " ".join(self.rng.choice(words) for _ in range(n))
                lines.append(
                    f"BT /F1 {self.rng.randint(8, 14)} Tf {self.rng.randint(20, 560)} "
                    f"{self.rng.randint(20, 800)} Td ({text}) Tj ET\n"
                )
            self.blocks.append("".join(lines).encode())

    def kind_for(self, i):
        # 40% images, 40% invoices, 20% bug reports, interleaved.
        return ("images", "invoices", "images", "invoices", "bug-reports")[i % 5]

    def name_for(self, kind, tag, i):
        ext = {"images": "jpg", "invoices": "pdf", "bug-reports": "json"}[kind]
        prefix = {"images": "IMG", "invoices": "INV", "bug-reports": "BR"}[kind]
        return f"{prefix}_{tag}_{i:06d}.{ext}"

    def image(self):
        # log-uniform 150 KB .. 2 MB (mean ~0.71 MB): many small photos, some big.
        size = int(math.exp(self.rng.uniform(math.log(150_000), math.log(2_000_000))))
        return os.urandom(size)

    def invoice(self):
        size = self.rng.randint(30_000, 200_000)
        self.serial += 1
        out = [
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
            f"1 0 obj << /Type /Catalog /Invoice (INV-{self.serial:08d}) "
            f"/Nonce ({os.urandom(8).hex()}) >> endobj\n".encode(),
        ]
        n = sum(len(x) for x in out)
        while n < size:
            if self.rng.random() < 0.7:
                part = self.rng.choice(self.blocks)
            else:
                k = self.rng.randint(512, 4096)
                part = b"stream\n" + os.urandom(k) + b"\nendstream\n"
            out.append(part)
            n += len(part)
        out.append(b"%%EOF\n")
        return b"".join(out)[:size]

    def bug_report(self):
        size = self.rng.randint(500, 5000)
        self.serial += 1
        r = self.rng
        doc = {
            "id": f"BR-{self.serial:08d}-{os.urandom(4).hex()}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "user": f"staff{r.randint(1, 40)}@clinic.example",
            "severity": r.choice(["low", "medium", "high"]),
            "app_version": f"3.{r.randint(0, 9)}.{r.randint(0, 30)}",
            "summary": r.choice(
                ["Chart does not save", "Printer offline", "Slow image viewer",
                 "Invoice total wrong", "Login loop", "Crash on export"]),
            "steps": [f"step {k}: clicked {r.choice(['Save', 'Print', 'Open', 'Export'])}"
                      for k in range(r.randint(1, 5))],
            "stack": [],
        }
        while len(json.dumps(doc)) < size:
            doc["stack"].append(
                f"at clinic.{r.choice(['ui', 'db', 'img', 'billing'])}."
                f"{r.choice(['Form', 'Query', 'Viewer', 'Pdf'])}"
                f".run(line {r.randint(1, 9999)}) 0x{os.urandom(6).hex()}")
        return json.dumps(doc).encode()

    def make(self, kind):
        if kind == "images":
            return self.image()
        if kind == "invoices":
            return self.invoice()
        return self.bug_report()


# ---------------------------------------------------------------- /proc helpers


def proc_status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def tree_bytes(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def percentile(sorted_vals, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(q / 100.0 * len(sorted_vals)))
    return sorted_vals[min(k, len(sorted_vals)) - 1]


def median(sorted_vals):
    n = len(sorted_vals)
    if n == 0:
        return float("nan")
    m = n // 2
    return sorted_vals[m] if n % 2 else (sorted_vals[m - 1] + sorted_vals[m]) / 2


# ---------------------------------------------------------------- the agent


class Agent:
    def __init__(self, binary, demo_dir):
        self.binary = binary
        self.demo = demo_dir
        self.conf = os.path.join(demo_dir, "custodian.conf")
        self.catalog = os.path.join(demo_dir, "state", "catalog.db")
        self.log_path = os.path.join(os.path.dirname(demo_dir), "agent.stderr")
        self.proc = None
        self.db = None
        self.last_vid = 0
        self.shipped = {}  # path bytes -> first shipped_at (ms)
        self.rss_max_kb = 0
        self.exit_code = None

    def start(self, timeout=20.0):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "-c", self.conf, "agent"],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"agent exited during start-up with status {self.proc.returncode}")
            if b"agent started" in self.read_log():
                break
            time.sleep(0.05)
        else:
            raise BenchError(f"agent did not log 'agent started' within {timeout:.0f} s")
        self.db = sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True, timeout=5.0)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def log_tail(self, n=30):
        lines = self.read_log().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])

    def log_counts(self):
        text = self.read_log()
        return {
            "shipped_lines": text.count(b" info: shipped "),
            "warn_lines": text.count(b" warn: "),
            "error_lines": text.count(b" error: "),
        }

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise BenchError(f"agent died (exit status {self.proc.returncode})")

    def sample_rss(self):
        kb = proc_status_kb(self.proc.pid, "VmRSS")
        if kb:
            self.rss_max_kb = max(self.rss_max_kb, kb)

    def poll_catalog(self):
        """Pick up versions rows added since the last poll."""
        try:
            rows = self.db.execute(
                "SELECT v.id, p.path, v.shipped_at FROM versions v "
                "JOIN paths p ON p.id = v.path_id WHERE v.id > ? ORDER BY v.id",
                (self.last_vid,)).fetchall()
        except sqlite3.OperationalError as e:  # busy during a checkpoint: retry next poll
            log(f"catalog poll: {e} (retrying)")
            return
        for vid, path, shipped_at in rows:
            self.last_vid = max(self.last_vid, vid)
            path = bytes(path)
            if path not in self.shipped:
                self.shipped[path] = shipped_at

    def wait_shipped(self, paths, timeout, interval, label):
        """Poll until every path (bytes) has a versions row. Returns the
        missing ones (empty when all shipped) after at most timeout seconds."""
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 10
        while True:
            self.sample_rss()
            self.poll_catalog()
            missing = [p for p in paths if p not in self.shipped]
            if not missing:
                return []
            if not self.alive():
                raise BenchError(
                    f"{label}: agent died (exit status {self.proc.returncode}) "
                    f"with {len(missing)} of {len(paths)} files not shipped")
            now = time.monotonic()
            if now >= deadline:
                return missing
            if now >= next_note:
                log(f"{label}: {len(paths) - len(missing)}/{len(paths)} shipped")
                next_note = now + 10
            time.sleep(interval)

    def stop(self, timeout=30.0):
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"agent did not stop within {timeout:.0f} s of SIGTERM; killing pid {self.proc.pid}")
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.exit_code = "killed after SIGTERM timeout"
                self.logf.close()
                return self.exit_code
        self.exit_code = self.proc.returncode
        self.logf.close()
        return self.exit_code


# ---------------------------------------------------------------- other tools


def run_tool(name, argv, env, cwd, timeout, outdir):
    """Run one command, wall-clock timed, never longer than timeout. Peak RSS
    and CPU time come from /usr/bin/time -f %M (its own small process forks
    the tool). Without /usr/bin/time: VmHWM sampled from /proc every 20 ms
    (wait4's ru_maxrss would include this script's RSS, inherited across
    fork+exec) and CPU from wait4."""
    out_path = os.path.join(outdir, f"{name}.out")
    stat_path = os.path.join(outdir, f"{name}.time")
    gnu_time = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
    full = ([gnu_time, "-o", stat_path, "-f", "%M %U %S"] + argv) if gnu_time else argv
    hwm_kb = 0
    with open(out_path, "wb") as out:
        t0 = time.monotonic()
        # A session of its own, so that a timeout kills the tool under time(1) too.
        proc = subprocess.Popen(full, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + timeout
        timed_out = False
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid == proc.pid:
                break
            if not gnu_time:
                hwm_kb = max(hwm_kb, proc_status_kb(proc.pid, "VmHWM") or 0)
            if time.monotonic() >= deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, ru = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from reaping again
    res = {"wall_s": wall, "rc": proc.returncode, "timed_out": timed_out,
           "peak_rss_mb": None, "cpu_s": None}
    if gnu_time and not timed_out:
        try:
            with open(stat_path) as f:
                m, u, s = f.read().strip().splitlines()[-1].split()
            res["peak_rss_mb"] = int(m) / 1024.0  # kB -> MiB
            res["cpu_s"] = float(u) + float(s)
            res["rss_method"] = "/usr/bin/time -f %M"
        except (OSError, ValueError, IndexError) as e:
            log(f"{name}: could not read /usr/bin/time output: {e}")
    elif not gnu_time:
        res["peak_rss_mb"] = hwm_kb / 1024.0 if hwm_kb else None
        res["cpu_s"] = ru.ru_utime + ru.ru_stime
        res["rss_method"] = "VmHWM sampled every 20 ms"
    if timed_out or proc.returncode != 0:
        with open(out_path, "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        res["error"] = ("timed out" if timed_out else f"exit status {proc.returncode}")
        log(f"{name} failed ({res['error']}); output tail:\n{tail}")
    return res


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="custodian binary")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies file counts (default 1: 200 latency files, 3000 burst files)")
    ap.add_argument("--workdir", help="parent folder for the temporary work dir (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--interval-ms", type=float, default=50.0, help="latency phase write pace")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--skip-tools", action="store_true", help="do not run rclone/restic/borg")
    args = ap.parse_args()

    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        print(f"bench: {binary} is not an executable; run `make` first", file=sys.stderr)
        return 2
    if args.scale <= 0:
        print("bench: --scale must be > 0", file=sys.stderr)
        return 2

    n_lat = max(20, round(200 * args.scale))
    n_burst = max(10, round(3000 * args.scale))
    lat_timeout = 120.0
    burst_timeout = max(60.0, 400.0 * args.scale)
    tool_timeout = max(60.0, 300.0 * args.scale)

    parent = args.workdir or "/tmp"
    os.makedirs(parent, exist_ok=True)
    work = os.path.realpath(tempfile.mkdtemp(prefix="custodian-bench-", dir=parent))
    log(f"work dir {work}; latency files {n_lat}, burst files {n_burst}")

    result = {"bench": "custodian", "scale": args.scale, "seed": args.seed,
              "cpus": os.cpu_count(), "ok": False}
    rc = 0
    try:
        rc = run(args, binary, work, n_lat, n_burst, lat_timeout, burst_timeout,
                 tool_timeout, result)
    except BenchError as e:
        rc = 1
        result["error"] = str(e)
        log(f"FAILED: {e}")
    except KeyboardInterrupt:
        rc = 130
        result["error"] = "interrupted"
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, sort_keys=True))
    sys.stdout.flush()
    return rc


def run(args, binary, work, n_lat, n_burst, lat_timeout, burst_timeout, tool_timeout, result):
    demo = os.path.join(work, "demo")
    staging = os.path.join(work, "staging")
    gen = DataGen(args.seed)

    # --- set up the demo configuration
    p = subprocess.run([binary, "init", "--demo", demo], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise BenchError(f"custodian init --demo failed ({p.returncode}): "
                         f"{p.stderr.decode('utf-8', 'replace').strip()}")
    data = os.path.join(demo, "app", "data")
    for k in FOLDERS:
        if not os.path.isdir(os.path.join(data, k)):
            raise BenchError(f"init --demo did not create {os.path.join(data, k)}")

    # --- generate the data sets first (not measured)
    log("generating data set ...")
    t0 = time.monotonic()
    lat_files = []  # (kind, name, content)
    for i in range(n_lat):
        kind = gen.kind_for(i)
        lat_files.append((kind, gen.name_for(kind, "lat", i), gen.make(kind)))
    burst_files = []  # (kind, name, size)
    for k in FOLDERS:
        os.makedirs(os.path.join(staging, k))
    for i in range(n_burst):
        kind = gen.kind_for(i)
        name = gen.name_for(kind, "burst", i)
        content = gen.make(kind)
        with open(os.path.join(staging, kind, name), "wb") as f:
            f.write(content)
        burst_files.append((kind, name, len(content)))
    burst_bytes = sum(s for _, _, s in burst_files)
    by_kind = {k: [0, 0] for k in FOLDERS}
    for kind, _, s in burst_files:
        by_kind[kind][0] += 1
        by_kind[kind][1] += s
    os.sync()
    log(f"generated {n_lat} latency files and {n_burst} burst files "
        f"({burst_bytes / MB:.0f} MB) in {time.monotonic() - t0:.1f} s")
    result["dataset"] = {
        "burst_files": n_burst, "burst_mb": round(burst_bytes / MB, 1),
        "by_kind": {k: {"files": v[0], "mb": round(v[1] / MB, 1)} for k, v in by_kind.items()},
        "latency_files": n_lat,
    }

    agent = Agent(binary, demo)
    try:
        agent.start()
        log(f"agent running, pid {agent.proc.pid}")

        # --- 1. latency
        interval = args.interval_ms / 1000.0
        closes = {}  # path bytes -> close time
        log(f"latency: writing {n_lat} files, one every {args.interval_ms:.0f} ms ...")
        t_start = time.monotonic()
        for i, (kind, name, content) in enumerate(lat_files):
            target = t_start + i * interval
            while True:
                d = target - time.monotonic()
                if d <= 0:
                    break
                time.sleep(min(d, 0.01))
            path = os.path.join(data, kind, name)
            with open(path, "wb") as f:
                f.write(content)
            closes[os.fsencode(path)] = time.time()
            if i % 10 == 0:
                agent.sample_rss()
                agent.check_alive()
        missing = agent.wait_shipped(list(closes), lat_timeout, 0.1, "latency")
        if missing:
            raise BenchError(
                f"latency: {len(missing)} of {n_lat} files not shipped within "
                f"{lat_timeout:.0f} s, e.g. {os.fsdecode(missing[0])}")
        lats = sorted(agent.shipped[p] / 1000.0 - t for p, t in closes.items())
        lat_ms = [x * 1000.0 for x in lats]
        result["latency_ms"] = {
            "files": n_lat, "interval_ms": args.interval_ms,
            "median": round(median(lat_ms), 1), "p90": round(percentile(lat_ms, 90), 1),
            "p99": round(percentile(lat_ms, 99), 1), "max": round(lat_ms[-1], 1),
            "min": round(lat_ms[0], 1),
        }
        log(f"latency: median {median(lat_ms):.0f} ms, p99 {percentile(lat_ms, 99):.0f} ms")
        rss_after_latency = agent.rss_max_kb
        lat_files = None  # free the contents: keep this script's own memory small

        # --- 2. burst
        os.sync()
        time.sleep(1.0)
        cpu0 = proc_cpu_s(agent.proc.pid)
        log(f"burst: copying {n_burst} files ({burst_bytes / MB:.0f} MB) into the watched folders ...")
        burst_paths = []
        t_first = time.time()
        for i, (kind, name, _) in enumerate(burst_files):
            dst = os.path.join(data, kind, name)
            shutil.copyfile(os.path.join(staging, kind, name), dst)
            burst_paths.append(os.fsencode(dst))
            if i % 50 == 0:
                agent.sample_rss()
        t_copied = time.time()
        log(f"burst: copy done in {t_copied - t_first:.1f} s; waiting for verified copies ...")
        missing = agent.wait_shipped(burst_paths, burst_timeout - (t_copied - t_first), 0.25, "burst")
        cpu1 = proc_cpu_s(agent.proc.pid)
        if missing:
            got = len(burst_paths) - len(missing)
            raise BenchError(
                f"burst: {len(missing)} of {n_burst} files not shipped within "
                f"{burst_timeout:.0f} s of the first write ({got} shipped), e.g. "
                f"{os.fsdecode(missing[0])}")
        t_last = max(agent.shipped[p] for p in burst_paths) / 1000.0
        wall = t_last - t_first
        result["burst"] = {
            "files": n_burst, "mb": round(burst_bytes / MB, 1),
            "copy_s": round(t_copied - t_first, 2), "wall_s": round(wall, 2),
            "mb_per_s": round(burst_bytes / MB / wall, 1),
            "files_per_s": round(n_burst / wall, 1),
            "agent_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
        }
        log(f"burst: {wall:.1f} s, {burst_bytes / MB / wall:.1f} MB/s, {n_burst / wall:.0f} files/s")

        # --- 3. memory
        hwm = proc_status_kb(agent.proc.pid, "VmHWM")
        agent.sample_rss()
        result["rss_mb"] = {
            "vmhwm": round(hwm / 1024.0, 1) if hwm else None,
            "vmrss_max_sampled": round(agent.rss_max_kb / 1024.0, 1),
            "vmrss_max_sampled_latency": round(rss_after_latency / 1024.0, 1),
        }
    except BenchError:
        agent.stop()
        log("agent stderr (tail):\n" + agent.log_tail())
        raise
    finally:
        if agent.alive():
            agent.stop()
    if agent.exit_code != 0:
        log("agent stderr (tail):\n" + agent.log_tail())
        raise BenchError(f"agent did not exit cleanly on SIGTERM: {agent.exit_code}")
    result["agent_log"] = agent.log_counts()
    dest = os.path.join(demo, "destination")
    cust_stored = tree_bytes(dest)
    result["burst"]["stored_mb_total"] = round(cust_stored / MB, 1)
    shutil.rmtree(dest, ignore_errors=True)  # free the disk for the other tools
    shutil.rmtree(data, ignore_errors=True)

    # --- 4. rclone, restic, borg on the same staging set
    tools = {}
    if not args.skip_tools:
        tools = run_tools(work, staging, burst_bytes, n_burst, tool_timeout)
    result["tools"] = tools
    cust_mbps = result["burst"]["mb_per_s"]
    ratios = {}
    for name, t in tools.items():
        if t.get("mb_per_s"):
            ratios[name] = round(cust_mbps / t["mb_per_s"], 2)
    result["ratios"] = ratios

    targets = {
        "latency_median_lt_2000ms": result["latency_ms"]["median"] < LATENCY_TARGET_MS,
        "peak_rss_lt_64mb": (result["rss_mb"]["vmhwm"] or 1e9) < RSS_TARGET_MB,
    }
    result["targets"] = targets
    result["ok"] = True
    print_table(result)
    if args.strict and not all(targets.values()):
        return 1
    return 0


def run_tools(work, staging, burst_bytes, n_burst, timeout):
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "BORG_", "RCLONE_"))}
    tdir = os.path.join(work, "tools")
    os.makedirs(tdir)
    results = {}

    def record(name, res, dest):
        if "error" not in res:
            res["mb_per_s"] = round(burst_bytes / MB / res["wall_s"], 1)
            res["files_per_s"] = round(n_burst / res["wall_s"], 1)
        res["stored_mb"] = round(tree_bytes(dest) / MB, 1)
        res["wall_s"] = round(res["wall_s"], 2)
        if res.get("peak_rss_mb") is not None:
            res["peak_rss_mb"] = round(res["peak_rss_mb"], 1)
        if res.get("cpu_s") is not None:
            res["cpu_s"] = round(res["cpu_s"], 1)
        results[name] = res
        shutil.rmtree(dest, ignore_errors=True)
        log(f"{name}: {res['wall_s']:.1f} s"
            + (f", {res['mb_per_s']} MB/s" if "mb_per_s" in res else f" ({res.get('error')})"))

    # rclone: local to local, defaults (4 transfers, 8 checkers), no config file.
    if shutil.which("rclone"):
        dest = os.path.join(tdir, "rclone-dest")
        os.sync()
        log("rclone copy ...")
        res = run_tool("rclone", ["rclone", "copy", "--config", "", staging, dest],
                       base_env, tdir, timeout, tdir)
        record("rclone", res, dest)
    else:
        log("rclone not installed; skipped")

    # restic: fresh local repository, default settings (repo format "stable").
    if shutil.which("restic"):
        repo = os.path.join(tdir, "restic-repo")
        env = dict(base_env, RESTIC_PASSWORD="bench-password",
                   RESTIC_CACHE_DIR=os.path.join(tdir, "restic-cache"))
        p = subprocess.run(["restic", "init", "--repo", repo], env=env,
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            log(f"restic init failed: {p.stdout.decode()}{p.stderr.decode()}")
            results["restic"] = {"error": "init failed"}
        else:
            os.sync()
            log("restic backup ...")
            res = run_tool("restic", ["restic", "backup", "--quiet", "--repo", repo, "."],
                           env, staging, timeout, tdir)
            record("restic", res, repo)
        shutil.rmtree(os.path.join(tdir, "restic-cache"), ignore_errors=True)
    else:
        log("restic not installed; skipped")

    # borg: fresh repokey-blake2 repository, default compression (lz4).
    if shutil.which("borg"):
        repo = os.path.join(tdir, "borg-repo")
        env = dict(base_env, BORG_PASSPHRASE="bench-password",
                   BORG_BASE_DIR=os.path.join(tdir, "borg-base"),
                   BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                   BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
                   BORG_DELETE_I_KNOW_WHAT_I_AM_DOING="NO",
                   BORG_CHECK_I_KNOW_WHAT_I_AM_DOING="NO")
        p = subprocess.run(["borg", "init", "--encryption=repokey-blake2", repo], env=env,
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            log(f"borg init failed: {p.stdout.decode()}{p.stderr.decode()}")
            results["borg"] = {"error": "init failed"}
        else:
            os.sync()
            log("borg create ...")
            res = run_tool("borg", ["borg", "create", repo + "::bench", "."],
                           env, staging, timeout, tdir)
            record("borg", res, repo)
        shutil.rmtree(os.path.join(tdir, "borg-base"), ignore_errors=True)
    else:
        log("borg not installed; skipped")
    return results


def num(v, width, prec=1):
    return f"{'n/a':>{width}}" if v is None else f"{v:>{width}.{prec}f}"


def print_table(r):
    ds, lat, b, rss = r["dataset"], r["latency_ms"], r["burst"], r["rss_mb"]
    ok = lambda v: "PASS" if v else "MISS"  # noqa: E731
    t = r["targets"]
    out = []
    w = out.append
    w("")
    w(f"custodian benchmark  (scale {r['scale']}, {r['cpus']} CPUs, MB = 10^6 bytes, RSS in MiB)")
    w("data set: " + ", ".join(
        f"{k} {v['files']} files {v['mb']:.1f} MB" for k, v in ds["by_kind"].items())
      + f"; total {ds['burst_files']} files {ds['burst_mb']:.0f} MB")
    w("")
    w(f"1. latency ({lat['files']} files, one every {lat['interval_ms']:.0f} ms, close -> verified copy)")
    w(f"   median {lat['median']:8.0f} ms   target < {LATENCY_TARGET_MS:.0f} ms  {ok(t['latency_median_lt_2000ms'])}")
    w(f"   p90    {lat['p90']:8.0f} ms")
    w(f"   p99    {lat['p99']:8.0f} ms")
    w(f"   max    {lat['max']:8.0f} ms")
    w("")
    w(f"2. burst ({b['files']} files, {b['mb']:.0f} MB copied into the watched folders as fast as possible)")
    w(f"   first write -> last verified copy  {b['wall_s']:8.1f} s   (the copy itself took {b['copy_s']:.1f} s)")
    w(f"   throughput                         {b['mb_per_s']:8.1f} MB/s  {b['files_per_s']:.0f} files/s")
    w(f"   agent CPU time                     {num(b['agent_cpu_s'], 8)} s")
    w(f"   stored at destination (all files)  {b['stored_mb_total']:8.1f} MB")
    w("")
    w("3. agent memory")
    w(f"   VmHWM (peak RSS) at end            {num(rss['vmhwm'], 8)} MiB   target < {RSS_TARGET_MB:.0f} MiB  {ok(t['peak_rss_lt_64mb'])}")
    w(f"   VmRSS max sampled                  {rss['vmrss_max_sampled']:8.1f} MiB")
    w("")
    w("4. same burst data set, side by side")
    hdr = f"   {'tool':<22}{'wall s':>8}{'MB/s':>9}{'files/s':>9}{'peak RSS':>10}{'CPU s':>8}{'stored MB':>11}{'cust/x':>8}"
    w(hdr)
    w(f"   {'custodian (agent)':<22}{b['wall_s']:>8.1f}{b['mb_per_s']:>9.1f}{b['files_per_s']:>9.0f}"
      f"{num(rss['vmhwm'], 10)}{num(b['agent_cpu_s'], 8)}{b['stored_mb_total']:>11.1f}{'':>8}")
    for name, label in (("rclone", "rclone copy"), ("restic", "restic backup"), ("borg", "borg create")):
        x = r["tools"].get(name)
        if x is None:
            w(f"   {label:<22}  (not run)")
            continue
        if "mb_per_s" not in x:
            w(f"   {label:<22}  failed: {x.get('error')}")
            continue
        w(f"   {label:<22}{x['wall_s']:>8.1f}{x['mb_per_s']:>9.1f}{x['files_per_s']:>9.0f}"
          f"{num(x['peak_rss_mb'], 10)}{num(x['cpu_s'], 8)}{x['stored_mb']:>11.1f}"
          f"{r['ratios'].get(name, float('nan')):>8.2f}")
    w("   cust/x = custodian burst throughput / tool throughput (> 1: custodian faster)")
    w("   fairness: custodian's time includes writing the files into the watched folders")
    w("   and noticing them (inotify), then per file: SHA-256, zstd (auto: level 3 or raw),")
    w("   encryption, copy to the destination made durable (syncfs per batch), read back")
    w("   and SHA-256 compared, and a catalog (SQLite) record. rclone only copies (and")
    w("   checks hashes); restic and borg chunk, dedupe, compress and encrypt into")
    w("   packs/segments, reading the staging folder. All read from a warm page cache.")
    w("   custodian's stored MB includes the latency-phase files; the tools' peak RSS and")
    w("   CPU come from /usr/bin/time -f '%M %U %S'.")
    w("")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
