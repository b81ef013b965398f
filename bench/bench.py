#!/usr/bin/python3
"""custodian benchmark: latency, burst, backlog, memory, rclone/restic/borg, and S3.

Usage:
    /usr/bin/python3 bench/bench.py --bin build/release/custodian [--scale 0.1]
        [--workdir DIR] [--keep] [--seed N] [--strict] [--skip-tools] [--skip-s3]
        [--perf FILE]

Standard library only. Phases (see bench/README.md):
  1. latency: with the agent running (demo config, default settings), write
     files one at a time at a steady pace; latency = the catalog's shipped_at
     minus the time the writer closed the file.
  2. burst: copy a pre-generated staging set (set A) into the watched folders
     as fast as possible; time from the first write to the last verified copy.
  3. backlog: stop the agent, rename a second staging set (set B: same sizes,
     new contents) into fresh subfolders of the watched folders, start the
     agent; time from the agent's start to the last verified copy. This is
     measured the way the other tools are: the files are already on disk.
  4. memory: the agent's VmHWM at the end of each agent run, VmRSS sampled.
  5. set B through rclone copy, restic backup and borg create. Side-by-side
     ratios come from the backlog phase; an "arrival to safety" comparison
     sets the burst against (copying the files in + running the tool).
  6. S3 (--skip-s3 skips it): a private Ceph RGW over HTTPS (tests/servers/
     rgw.sh); the first 1000 x scale files of set B (at most 450 MB) through
     custodian (backlog-style, one s3 destination), rclone copy and restic
     backup, a bucket each.
Prints progress on stderr, then a table and a final JSON line on stdout.
Exit status: 0 when the benchmark ran (targets met or not, unless --strict),
1 when custodian misbehaved (crash, files not shipped), 2 on usage/setup errors.
"""

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
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
    """A clinic-like data set. File sizes come from one seeded RNG (the plan);
    contents come from os.urandom and a second RNG, so two sets made from the
    same plan have the same sizes but different bytes. Contents are unique per
    file (no whole-file duplicates), so no tool gets to dedupe."""

    def __init__(self, seed):
        self.rng = random.Random(seed)  # sizes only
        self.crng = random.Random(seed + 1)  # text content
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
        r = self.crng
        self.blocks = []
        for _ in range(48):
            lines = []
            while sum(len(x) for x in lines) < r.randint(1024, 3072):
                n = r.randint(4, 10)
                text = " ".join(r.choice(words) for _ in range(n))
                lines.append(
                    f"BT /F1 {r.randint(8, 14)} Tf {r.randint(20, 560)} "
                    f"{r.randint(20, 800)} Td ({text}) Tj ET\n"
                )
            self.blocks.append("".join(lines).encode())

    def kind_for(self, i):
        # 40% images, 40% invoices, 20% bug reports, interleaved.
        return ("images", "invoices", "images", "invoices", "bug-reports")[i % 5]

    def name_for(self, kind, tag, i):
        ext = {"images": "jpg", "invoices": "pdf", "bug-reports": "json"}[kind]
        prefix = {"images": "IMG", "invoices": "INV", "bug-reports": "BR"}[kind]
        return f"{prefix}_{tag}_{i:06d}.{ext}"

    def size_for(self, kind):
        if kind == "images":
            # log-uniform 150 KB .. 2 MB (mean ~0.71 MB): many small photos, some big.
            return int(math.exp(self.rng.uniform(math.log(150_000), math.log(2_000_000))))
        if kind == "invoices":
            return self.rng.randint(30_000, 200_000)
        return self.rng.randint(500, 5000)

    def plan(self, n):
        """[(kind, index, size)] for n files."""
        out = []
        for i in range(n):
            kind = self.kind_for(i)
            out.append((kind, i, self.size_for(kind)))
        return out

    def invoice(self, size):
        self.serial += 1
        out = [
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
            f"1 0 obj << /Type /Catalog /Invoice (INV-{self.serial:08d}) "
            f"/Nonce ({os.urandom(8).hex()}) >> endobj\n".encode(),
        ]
        n = sum(len(x) for x in out)
        while n < size:
            if self.crng.random() < 0.7:
                part = self.crng.choice(self.blocks)
            else:
                k = self.crng.randint(512, 4096)
                part = b"stream\n" + os.urandom(k) + b"\nendstream\n"
            out.append(part)
            n += len(part)
        return (b"".join(out)[:size - 6] + b"%%EOF\n")[:size]

    def bug_report(self, size):
        self.serial += 1
        r = self.crng
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
        # Stack lines are under 80 bytes each: stop before the size, pad with
        # whitespace (still valid JSON) to exactly the planned size.
        while len(json.dumps(doc)) + 80 < size:
            doc["stack"].append(
                f"at clinic.{r.choice(['ui', 'db', 'img', 'billing'])}."
                f"{r.choice(['Form', 'Query', 'Viewer', 'Pdf'])}"
                f".run(line {r.randint(1, 9999)}) 0x{os.urandom(6).hex()}")
        text = json.dumps(doc).encode()
        if len(text) < size:
            text += b" " * (size - len(text) - 1) + b"\n"
        return text[:size]

    def make(self, kind, size):
        if kind == "images":
            return os.urandom(size)
        if kind == "invoices":
            return self.invoice(size)
        return self.bug_report(size)


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


def proc_threads_cpu_s(pid):
    """CPU seconds per thread from /proc/PID/task/*/stat: {"main": s,
    "workers": s, "n_workers": n, "groups": {...}}. The thread whose id is the
    pid runs the event loop (and the catalog); the others are the worker
    pools. "groups" sums each thread name (the pools name their threads:
    cst-seal, cst-sync, cst-store, ...): {name: {"threads": n, "cpu_s": s,
    "vcsw": voluntary, "ivcsw": involuntary context switches}}, the loop's
    thread as "loop"."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"main": 0.0, "workers": 0.0, "n_workers": 0, "groups": {}}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue
        s = (int(fields[11]) + int(fields[12])) / tick
        name = "loop" if int(tid) == pid else status.get("Name", "?").strip()
        g = out["groups"].setdefault(name, {"threads": 0, "cpu_s": 0.0, "vcsw": 0, "ivcsw": 0})
        g["threads"] += 1
        g["cpu_s"] += s
        g["vcsw"] += int(status.get("voluntary_ctxt_switches", "0"))
        g["ivcsw"] += int(status.get("nonvoluntary_ctxt_switches", "0"))
        if int(tid) == pid:
            out["main"] += s
        else:
            out["workers"] += s
            out["n_workers"] += 1
    for g in out["groups"].values():
        g["cpu_s"] = round(g["cpu_s"], 2)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def thread_groups_line(threads, n):
    """Per thread group: CPU µs and context switches (voluntary+involuntary) per file."""
    groups = (threads or {}).get("groups") or {}
    parts = []
    for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["cpu_s"]):
        parts.append(f"{name}x{g['threads']} {g['cpu_s'] * 1e6 / n:.0f} us "
                     f"{(g['vcsw'] + g['ivcsw']) / n:.2f} cs")
    return "; ".join(parts)


def cpu_snapshot():
    """(monotonic time, CPU-seconds the whole machine was busy, this script's
    own CPU-seconds). /proc/stat busy = user+nice+system+irq+softirq+steal."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        busy = None
    t = os.times()
    return (time.monotonic(), busy, t.user + t.system)


def background_load(snap0, snap1, measured_cpu_s):
    """CPU the rest of the machine used while a phase ran: busy time minus the
    measured program's CPU minus this script's. It includes kernel threads
    (write-back, I/O completion) working for the measured program, so it is
    never quite zero; more than a few tenths of a core means the numbers of
    that phase were taken on a busy machine."""
    wall = snap1[0] - snap0[0]
    if snap0[1] is None or snap1[1] is None or wall <= 0:
        return None
    busy = snap1[1] - snap0[1]
    mine = snap1[2] - snap0[2]
    other = max(0.0, busy - mine - (measured_cpu_s or 0.0))
    return {"wall_s": round(wall, 2), "machine_busy_cpu_s": round(busy, 2),
            "bench_script_cpu_s": round(mine, 2), "other_cpu_s": round(other, 2),
            "other_cores": round(other / wall, 2)}


def warm_cache(path):
    """Read every file under path once, so the timed run that follows reads it
    from the page cache (as every tool and custodian then do). Returns bytes read."""
    buf = bytearray(1 << 20)
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb", buffering=0) as f:
                while True:
                    n = f.readinto(buf)
                    if not n:
                        break
                    total += n
    return total


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
        self.log_offset = 0

    def start(self, timeout=20.0, on_spawn=None):
        """Start the agent and wait for its 'agent started' line (logged after
        the start-up reconciliation scan). Returns time.time() taken just
        before the fork. on_spawn(pid) runs right after the fork."""
        self.logf = open(self.log_path, "ab")
        self.log_offset = self.logf.tell()  # the log is shared by every run
        self.rss_max_kb = 0
        self.exit_code = None
        t0 = time.time()
        self.proc = subprocess.Popen(
            [self.binary, "-c", self.conf, "agent"],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)
        if on_spawn is not None:
            on_spawn(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"agent exited during start-up with status {self.proc.returncode}")
            if b"agent started" in self.read_log(self.log_offset):
                break
            time.sleep(0.02)
        else:
            raise BenchError(f"agent did not log 'agent started' within {timeout:.0f} s")
        self.db = sqlite3.connect(f"file:{self.catalog}?mode=ro", uri=True, timeout=5.0)
        return t0

    def read_log(self, offset=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
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


# ---------------------------------------------------------------- perf


class Perf:
    """perf record attached to the agent (software cpu-clock event, so it
    works in VMs without hardware counters), and a flat report of it."""

    def __init__(self, out_path, freq=999):
        self.path = out_path
        self.freq = freq
        self.proc = None
        self.error = None

    def attach(self, pid):
        # perf record -p follows the threads that exist when it starts: wait
        # (up to 2 s) until the agent has created its worker threads.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                if len(os.listdir(f"/proc/{pid}/task")) >= 2:
                    time.sleep(0.01)  # the pool creates its threads in one loop
                    break
            except OSError:
                break
            time.sleep(0.002)
        self.logf = open(self.path + ".log", "wb")
        self.proc = subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", str(self.freq), "-g",
             "-p", str(pid), "-o", self.path],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        if self.proc.returncode not in (0, -signal.SIGINT, 130):
            self.error = f"perf record exited with {self.proc.returncode} (see {self.path}.log)"

    def report(self, sort, limit=0.5):
        """[(percent, columns...)] from perf report --sort SORT, self time."""
        p = subprocess.run(
            ["perf", "report", "-i", self.path, "--stdio", "--no-children", "-g", "none",
             "--sort", sort, "--percent-limit", str(limit)],
            capture_output=True, timeout=300)
        rows = []
        for line in p.stdout.decode("utf-8", "replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "%" not in line.split()[0]:
                continue
            parts = line.split(None, 1)
            try:
                pct = float(parts[0].rstrip("%"))
            except ValueError:
                continue
            rows.append([pct, parts[1] if len(parts) > 1 else ""])
        return rows


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
        snap0 = cpu_snapshot()
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
        snap1 = cpu_snapshot()
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
    res["background"] = background_load(snap0, snap1, res["cpu_s"])
    if timed_out or proc.returncode != 0:
        with open(out_path, "rb") as f:
            tail = f.read()[-2000:].decode("utf-8", "replace")
        res["error"] = ("timed out" if timed_out else f"exit status {proc.returncode}")
        log(f"{name} failed ({res['error']}); output tail:\n{tail}")
    return res


# ---------------------------------------------------------------- S3: a private Ceph RGW

RGW_SH = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "..", "tests", "servers", "rgw.sh"))
S3_REGION = "us-east-1"
S3_ACCESS_KEY, S3_SECRET_KEY = "AKTEST", "SKTEST"  # rgw.sh's test user
S3NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
S3_FILES = 1000  # at scale 1: a third of set B (the same mix), about 330 MB
S3_MAX_BYTES = 450 * MB  # three tools write to the RGW's in-memory store (4 GiB)
RGW_START_TIMEOUT = 150.0  # rgw.sh itself gives up after 90 s
S3_TOOL_COMMANDS = ("radosgw", "radosgw-admin", "ceph", "ceph-mon", "ceph-osd", "monmaptool",
                    "openssl", "uuidgen", "curl")


def tool_env():
    """This environment without anything that configures rclone, restic, borg
    or the AWS SDKs (AWS_CA_BUNDLE, for one, makes rclone's S3 backend fail:
    "LoadCustomCABundleError ... unsupported transport")."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("RESTIC_", "BORG_", "RCLONE_", "AWS_"))}


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1, below the ephemeral range and
    away from the ports Ceph's OSD binds (6800-7300)."""
    import socket
    ports = []
    while len(ports) < n:
        p = random.randrange(20000, 32000)
        if p in ports:
            continue
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", p))
            ports.append(p)
        except OSError:
            pass
        finally:
            s.close()
    return ports


class RgwError(Exception):
    """The RGW could not be started or did not answer (a setup problem)."""


class Rgw:
    """A throw-away single-node Ceph RGW (tests/servers/rgw.sh: one monitor,
    one memstore OSD, radosgw over HTTPS with a test CA) in a folder of its
    own. S3 requests go through curl --aws-sigv4, as in tests/e2e/servers.py."""

    def __init__(self, parent):
        self.parent = parent
        self.dir = None
        self.port = None
        self.pids = []
        self.start_s = None

    @property
    def endpoint(self):
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_file(self):
        return os.path.join(self.dir, "ca.pem")

    def start(self):
        """Start it, bounded; a second try on other ports (one taken meanwhile)."""
        t0 = time.monotonic()
        last = ""
        for attempt in range(2):
            self.dir = os.path.join(self.parent, f"try{attempt}")
            os.makedirs(self.dir)
            self.port, mon_port = free_ports(2)
            env = {k: v for k, v in os.environ.items() if k != "RGW_EXTRA_CONF"}
            env["RGW_READY_TIMEOUT"] = "90"
            try:
                p = subprocess.run([RGW_SH, "start", self.dir, str(self.port), str(mon_port)],
                                   capture_output=True, timeout=RGW_START_TIMEOUT,
                                   stdin=subprocess.DEVNULL, env=env)
                ok = p.returncode == 0
                last = (p.stderr.decode("utf-8", "replace")[-3000:].strip()
                        + f"\nrgw.sh start exited with status {p.returncode}")
            except subprocess.TimeoutExpired:
                ok, last = False, f"rgw.sh start: no answer within {RGW_START_TIMEOUT:.0f} s"
            if ok:
                break
            log(f"s3: rgw.sh start failed (try {attempt + 1}):\n{last}")
            self.stop()
        else:
            lines = last.strip().splitlines()
            raise RgwError("the RGW did not start: " + (lines[-1] if lines else "?"))
        self.start_s = time.monotonic() - t0
        for name in ("mon", "osd", "rgw"):
            try:
                with open(os.path.join(self.dir, "run", f"{name}.pid")) as f:
                    self.pids.append(int(f.read().strip()))
            except (OSError, ValueError):
                pass

    def stop(self):
        if self.dir is None or not os.path.exists(os.path.join(self.dir, "ceph.conf")):
            return
        try:
            p = subprocess.run([RGW_SH, "stop", self.dir], capture_output=True, timeout=60,
                               stdin=subprocess.DEVNULL)
            if p.returncode != 0:
                log(f"s3: rgw.sh stop: {p.stderr.decode('utf-8', 'replace')[-1000:]}")
        except subprocess.TimeoutExpired:
            log(f"s3: rgw.sh stop {self.dir} did not finish within 60 s")

    def cpu_s(self):
        """CPU seconds used so far by the monitor, the OSD and radosgw."""
        vals = [proc_cpu_s(pid) for pid in self.pids]
        return sum(v for v in vals if v is not None) if vals else None

    def request(self, method, path, query="", timeout=60):
        """One signed request; returns (HTTP status, body bytes). query must be
        in RGW's canonical form (keys sorted, every key with '=')."""
        url = self.endpoint + path + ("?" + query if query else "")
        cmd = ["curl", "-q", "-sS", "--max-time", str(timeout), "--connect-timeout", "10",
               "--cacert", self.ca_file, "--aws-sigv4", f"aws:amz:{S3_REGION}:s3",
               "--user", f"{S3_ACCESS_KEY}:{S3_SECRET_KEY}",
               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-w", "\n%{http_code}",
               "-X", method]
        if method in ("PUT", "POST"):
            cmd += ["-H", "content-length: 0"]
        cmd.append(url)
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout + 15,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RgwError(f"{method} {path}: no answer within {timeout} s")
        if p.returncode != 0:
            raise RgwError(f"{method} {path}: curl exited {p.returncode}: "
                           f"{p.stderr.decode('utf-8', 'replace').strip()[-500:]}")
        body, _, code = p.stdout.rpartition(b"\n")
        return int(code or 0), body

    def create_bucket(self, name):
        status, body = self.request("PUT", f"/{name}")
        if status != 200:
            raise RgwError(f"creating bucket {name}: HTTP {status} {body[:300]!r}")
        return name

    def usage(self, bucket):
        """(objects, bytes) in the bucket, from ListObjectsV2."""
        import urllib.parse
        import xml.etree.ElementTree as ET
        count = size = 0
        token = None
        while True:
            q = (f"continuation-token={urllib.parse.quote(token, safe='')}&" if token else "")
            q += "list-type=2&max-keys=1000"
            status, body = self.request("GET", f"/{bucket}", q)
            if status != 200:
                raise RgwError(f"listing bucket {bucket}: HTTP {status} {body[:300]!r}")
            root = ET.fromstring(body)
            for c in root.findall(S3NS + "Contents"):
                count += 1
                size += int(c.findtext(S3NS + "Size") or 0)
            if root.findtext(S3NS + "IsTruncated") != "true":
                return count, size
            token = root.findtext(S3NS + "NextContinuationToken")


def write_secret(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o600)
    return path


def s3_destination_only(conf, rgw, bucket, creds_dir):
    """Replace every [destination ...] section of a custodian config with one
    s3 destination on the RGW."""
    out, skip = [], False
    with open(conf) as f:
        for line in f.read().splitlines():
            if line.startswith("["):
                skip = line.startswith("[destination ")
            if not skip:
                out.append(line)
    os.makedirs(creds_dir, exist_ok=True)
    keys = {"type": "s3", "role": "primary", "endpoint": rgw.endpoint, "bucket": bucket,
            "region": S3_REGION, "path_style": "yes", "ca_file": rgw.ca_file,
            "access_key_file": write_secret(os.path.join(creds_dir, "access_key"), S3_ACCESS_KEY),
            "secret_key_file": write_secret(os.path.join(creds_dir, "secret_key"), S3_SECRET_KEY)}
    out.append("\n[destination s3]")
    out += [f"{k} = {v}" for k, v in keys.items()]
    with open(conf, "w") as f:
        f.write("\n".join(out) + "\n")


def minus_server(bg, server_cpu):
    """A background_load() result with the RGW's own CPU taken out of 'other'
    (it is reported in its own column)."""
    if not bg or server_cpu is None:
        return bg
    other = max(0.0, bg["other_cpu_s"] - server_cpu)
    return dict(bg, other_cpu_s=round(other, 2),
                other_cores=round(other / bg["wall_s"], 2) if bg["wall_s"] > 0 else None)


def run_s3(args, binary, work, stage_b, backlog_files, scale, skip_tools):
    """The S3 phase: custodian (one s3 destination), rclone copy and restic backup
    to a private RGW over HTTPS, each into a bucket of its own, on the first
    S3_FILES x scale files of set B (at most S3_MAX_BYTES)."""
    missing_cmds = [c for c in S3_TOOL_COMMANDS if not shutil.which(c)]
    if missing_cmds:
        log(f"s3: {', '.join(missing_cmds)} not installed (scripts/install-deps.sh bench); skipped")
        return {"skipped": "not installed: " + " ".join(missing_cmds)}
    want = max(10, round(S3_FILES * scale))
    files, nbytes = [], 0
    for kind, name, size in backlog_files[:want]:
        if files and nbytes + size > S3_MAX_BYTES:
            break
        files.append((kind, name, size))
        nbytes += size
    n = len(files)
    timeout = max(60.0, 180.0 * scale)
    sdir = os.path.join(work, "s3")
    staging = os.path.join(sdir, "staging")
    for k in FOLDERS:
        os.makedirs(os.path.join(staging, k))
    for kind, name, _ in files:  # hard links: same bytes as set B, nothing copied
        os.link(os.path.join(stage_b, kind, name), os.path.join(staging, kind, name))
    res = {"files": n, "mb": round(nbytes / MB, 1), "timeout_s": timeout, "tools": {}}
    log(f"s3: {n} files ({nbytes / MB:.0f} MB) of set B; starting a private Ceph RGW ...")
    rgw_parent = tempfile.mkdtemp(prefix="cbench-rgw-", dir="/tmp")  # short socket paths
    rgw = Rgw(rgw_parent)
    try:
        try:
            rgw.start()
        except RgwError as e:
            res["error"] = str(e)
            log(f"s3: {e}")
            return res
        res["rgw"] = {"start_s": round(rgw.start_s, 2), "endpoint": rgw.endpoint,
                      "store": "memstore (RAM), 1 OSD, 1 monitor, radosgw beast over TLS"}
        log(f"s3: RGW up at {rgw.endpoint} in {rgw.start_s:.1f} s")
        try:
            res["custodian"] = s3_custodian(binary, sdir, staging, files, nbytes, rgw, timeout)
        except (BenchError, RgwError) as e:
            res["custodian"] = {"error": str(e)}
            log(f"s3: custodian: {e}")
        if not skip_tools:
            s3_tools(sdir, staging, nbytes, n, rgw, timeout, res["tools"])
        cust = res["custodian"]
        res["ratios"] = {name: round(cust["mb_per_s"] / t["mb_per_s"], 2)
                         for name, t in res["tools"].items()
                         if cust.get("mb_per_s") and t.get("mb_per_s")}
        if args.s3_small_files > 0:
            res["small"] = s3_small(args, binary, work, rgw, skip_tools)
    finally:
        rgw.stop()
        if args.keep:
            log(f"kept {rgw_parent}")
        else:
            shutil.rmtree(rgw_parent, ignore_errors=True)
    return res


def s3_small(args, binary, work, rgw, skip_tools):
    """Many small objects (1-8 KB) to the same RGW: custodian, rclone and restic, each into
    a bucket of its own."""
    n = args.s3_small_files
    sdir = os.path.join(work, "s3-small")
    staging = os.path.join(sdir, "staging")
    for k in FOLDERS:
        os.makedirs(os.path.join(staging, k))
    log(f"s3 small: generating {n} files of 1-8 KB ...")
    made = write_small_set(os.path.join(staging, "bug-reports"), n, args.seed + 17, 1000, 8000,
                           "R")
    files = [("bug-reports", name, size) for name, size in made]
    nbytes = sum(size for _, _, size in files)
    timeout = max(60.0, n / 20.0)
    res = {"files": n, "mb": round(nbytes / MB, 2), "tools": {}}
    try:
        res["custodian"] = s3_custodian(binary, sdir, staging, files, nbytes, rgw, timeout,
                                        bucket_name="custodian-small")
    except (BenchError, RgwError) as e:
        res["custodian"] = {"error": str(e)}
        log(f"s3 small: custodian: {e}")
    if not skip_tools:
        s3_tools(sdir, staging, nbytes, n, rgw, timeout, res["tools"], suffix="-small")
    cust = res["custodian"]
    res["ratios"] = {name: round(cust["mb_per_s"] / t["mb_per_s"], 2)
                     for name, t in res["tools"].items()
                     if cust.get("mb_per_s") and t.get("mb_per_s")}
    shutil.rmtree(sdir, ignore_errors=True)
    return res


def s3_custodian(binary, sdir, staging, files, nbytes, rgw, timeout, bucket_name="custodian"):
    """A demo whose only destination is the RGW; backlog-style: the files are
    renamed into the watched folders while the agent is stopped, the time
    runs from the agent's start to the last verified copy (versions rows
    for every file and an empty copy queue)."""
    demo = os.path.join(sdir, "demo")
    p = subprocess.run([binary, "init", "--demo", demo], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise BenchError(f"custodian init --demo failed ({p.returncode}): "
                         f"{p.stderr.decode('utf-8', 'replace').strip()}")
    bucket = rgw.create_bucket(bucket_name)
    s3_destination_only(os.path.join(demo, "custodian.conf"), rgw, bucket,
                        os.path.join(sdir, "credentials"))
    data = os.path.join(demo, "app", "data")
    n = len(files)

    # One empty run first: the configuration loads and the agent has run
    # before, as in the local backlog.
    agent = Agent(binary, demo)
    try:
        agent.start()
    except BenchError:
        agent.stop()
        log("agent stderr (tail):\n" + agent.log_tail())
        raise
    finally:
        if agent.alive():
            agent.stop()
    if agent.exit_code != 0:
        log("agent stderr (tail):\n" + agent.log_tail())
        raise BenchError(f"s3: agent (empty run) did not exit cleanly: {agent.exit_code}")

    moved = []
    try:
        for k in FOLDERS:
            os.rename(os.path.join(staging, k), os.path.join(data, k, "backlog"))
            moved.append(k)
        paths = [os.fsencode(os.path.join(data, kind, "backlog", name)) for kind, name, _ in files]
        os.sync()
        for k in FOLDERS:
            warm_cache(os.path.join(data, k, "backlog"))
        time.sleep(1.0)
        agent = Agent(binary, demo)
        try:
            log(f"s3 custodian: {n} files ({nbytes / MB:.0f} MB) waiting in the watched folders; "
                "starting the agent (one s3 destination) ...")
            srv0 = rgw.cpu_s()
            snap0 = cpu_snapshot()
            t0 = agent.start(timeout=min(60.0, timeout))
            t_started = time.time()
            pid = agent.proc.pid
            missing = agent.wait_shipped(paths, timeout - (t_started - t0), 0.1, "s3 custodian")
            if missing:
                raise BenchError(
                    f"s3: {len(missing)} of {n} files not shipped within {timeout:.0f} s of the "
                    f"agent's start ({n - len(missing)} shipped), e.g. {os.fsdecode(missing[0])}")
            # With one destination a version is recorded when its copy is
            # verified; the copy queue must be empty too.
            deadline = time.monotonic() + max(10.0, timeout - (time.time() - t0))
            while True:
                try:
                    queued = agent.db.execute("SELECT count(*) FROM copy_queue").fetchone()[0]
                except sqlite3.OperationalError as e:  # busy: ask again
                    log(f"s3 custodian: copy_queue poll: {e} (retrying)")
                    queued = None
                if queued == 0:
                    break
                agent.check_alive()
                if time.monotonic() >= deadline:
                    raise BenchError(f"s3: copies still in the copy queue ({queued}) "
                                     f"{timeout:.0f} s after the agent's start")
                time.sleep(0.1)
            t_empty = time.time()
            cpu = proc_cpu_s(pid)
            snap1 = cpu_snapshot()
            srv1 = rgw.cpu_s()
            threads = proc_threads_cpu_s(pid)
            hwm = proc_status_kb(pid, "VmHWM")
            agent.sample_rss()
            copies, last_verified = agent.db.execute(
                "SELECT count(*), max(verified_at) FROM copies WHERE dest = 's3'").fetchone()
        except BenchError:
            agent.stop()
            log("agent stderr (tail):\n" + agent.log_tail())
            raise
        finally:
            if agent.alive():
                agent.stop()
        if agent.exit_code != 0:
            log("agent stderr (tail):\n" + agent.log_tail())
            raise BenchError(f"s3: agent did not exit cleanly on SIGTERM: {agent.exit_code}")
    finally:
        for k in moved:  # back to the S3 staging folder for the tools
            os.rename(os.path.join(data, k, "backlog"), os.path.join(staging, k))
    t_last = max(max(agent.shipped[p] for p in paths), last_verified or 0) / 1000.0
    wall = t_last - t0
    objects, stored = rgw.usage(bucket)
    if objects < copies:
        raise BenchError(f"s3: the catalog records {copies} copies on s3 but the bucket holds "
                         f"{objects} objects")
    srv = srv1 - srv0 if srv0 is not None and srv1 is not None else None
    res = {
        "files": n, "mb": round(nbytes / MB, 1), "wall_s": round(wall, 2),
        "startup_s": round(t_started - t0, 2),
        "queue_empty_after_s": round(t_empty - t0, 2),
        "mb_per_s": round(nbytes / MB / wall, 2), "files_per_s": round(n / wall, 1),
        "agent_cpu_s": round(cpu, 1) if cpu is not None else None,
        "agent_cpu_threads_s": threads,
        "peak_rss_mb": round(hwm / 1024.0, 1) if hwm else None,
        "server_cpu_s": round(srv, 1) if srv is not None else None,
        "copies": copies, "bucket_objects": objects, "stored_mb": round(stored / MB, 1),
        "agent_log": agent.log_counts(),
        "background": minus_server(background_load(snap0, snap1, cpu), srv),
    }
    log(f"s3 custodian: {wall:.1f} s, {res['mb_per_s']} MB/s, {res['files_per_s']:.0f} files/s, "
        f"agent CPU {res['agent_cpu_s']} s, RGW CPU {res['server_cpu_s']} s")
    return res


def s3_tools(sdir, staging, nbytes, n, rgw, timeout, results, suffix=""):
    """rclone copy and restic backup of the S3 staging folder, each into a
    bucket of its own on the same RGW."""
    tdir = os.path.join(sdir, "tools")
    os.makedirs(tdir)
    base_env = tool_env()

    def timed(name, argv, env, cwd, bucket):
        os.sync()
        warm_cache(staging)
        log(f"s3 {name} ...")
        srv0 = rgw.cpu_s()
        res = run_tool("s3-" + name, argv, env, cwd, timeout, tdir)
        srv1 = rgw.cpu_s()
        srv = srv1 - srv0 if srv0 is not None and srv1 is not None else None
        res["server_cpu_s"] = round(srv, 1) if srv is not None else None
        res["background"] = minus_server(res["background"], srv)
        if "error" not in res:
            res["mb_per_s"] = round(nbytes / MB / res["wall_s"], 2)
            res["files_per_s"] = round(n / res["wall_s"], 1)
        res["wall_s"] = round(res["wall_s"], 2)
        for k in ("peak_rss_mb", "cpu_s"):
            if res.get(k) is not None:
                res[k] = round(res[k], 1)
        try:
            objects, stored = rgw.usage(bucket)
            res["bucket_objects"], res["stored_mb"] = objects, round(stored / MB, 1)
        except RgwError as e:
            res["stored_mb"] = None
            log(f"s3 {name}: {e}")
        results[name] = res
        log(f"s3 {name}: {res['wall_s']:.1f} s"
            + (f", {res['mb_per_s']} MB/s" if "mb_per_s" in res else f" ({res.get('error')})")
            + f", RGW CPU {res['server_cpu_s']} s")

    # rclone: an S3 remote configured only through the environment; defaults
    # otherwise (4 transfers, 8 checkers, single PUT below 200 MiB).
    if shutil.which("rclone"):
        try:
            bucket = rgw.create_bucket("rclone" + suffix)
            env = dict(base_env, RCLONE_CONFIG_BENCHS3_TYPE="s3", RCLONE_CONFIG_BENCHS3_PROVIDER="Ceph",
                       RCLONE_CONFIG_BENCHS3_ENDPOINT=rgw.endpoint,
                       RCLONE_CONFIG_BENCHS3_ACCESS_KEY_ID=S3_ACCESS_KEY,
                       RCLONE_CONFIG_BENCHS3_SECRET_ACCESS_KEY=S3_SECRET_KEY,
                       RCLONE_CONFIG_BENCHS3_REGION=S3_REGION,
                       RCLONE_CONFIG_BENCHS3_FORCE_PATH_STYLE="true")
            timed("rclone", ["rclone", "copy", "--config", "", "--ca-cert", rgw.ca_file,
                             staging, f"benchs3:{bucket}"], env, tdir, bucket)
        except RgwError as e:
            results["rclone"] = {"error": str(e)}
            log(f"s3 rclone: {e}")
    else:
        log("rclone not installed; s3 rclone skipped")

    # restic: a fresh repository in its own bucket (init not timed), default
    # settings (s3.connections 5, compression auto).
    if shutil.which("restic"):
        try:
            bucket = rgw.create_bucket("restic" + suffix)
            repo = f"s3:{rgw.endpoint}/{bucket}"
            env = dict(base_env, RESTIC_PASSWORD="bench-password",
                       RESTIC_CACHE_DIR=os.path.join(tdir, "restic-cache"),
                       AWS_ACCESS_KEY_ID=S3_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY)
            try:
                p = subprocess.run(["restic", "init", "--repo", repo, "--cacert", rgw.ca_file],
                                   env=env, capture_output=True, timeout=120,
                                   stdin=subprocess.DEVNULL)
                init_err = None if p.returncode == 0 else (p.stdout + p.stderr).decode()[-2000:]
            except subprocess.TimeoutExpired:
                init_err = "no answer within 120 s"
            if init_err:
                log(f"s3 restic init failed: {init_err}")
                results["restic"] = {"error": "init failed"}
            else:
                timed("restic", ["restic", "backup", "--quiet", "--repo", repo,
                                 "--cacert", rgw.ca_file, "."], env, staging, bucket)
        except RgwError as e:
            results["restic"] = {"error": str(e)}
            log(f"s3 restic: {e}")
    else:
        log("restic not installed; s3 restic skipped")


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="custodian binary")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies file counts (default 1: 200 latency files, "
                         "3000 files in the burst and backlog sets)")
    ap.add_argument("--workdir", help="parent folder for the temporary work dir (default /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--interval-ms", type=float, default=50.0, help="latency phase write pace")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--skip-tools", action="store_true", help="do not run rclone/restic/borg")
    ap.add_argument("--skip-s3", action="store_true",
                    help="skip the S3 phase (custodian, rclone and restic to a private Ceph RGW)")
    ap.add_argument("--skip-snapshot", action="store_true",
                    help="skip the billing-cycle snapshot phase (custodian snapshot against "
                         "tar --zstd)")
    ap.add_argument("--snapshot-only", action="store_true",
                    help="run only the billing-cycle snapshot phase")
    ap.add_argument("--quick", action="store_true",
                    help="a developer's run in minutes: --scale 0.1, 10,000 small files, 2,000 "
                         "to the RGW, no snapshot phase, one run unless --runs says otherwise")
    ap.add_argument("--runs", type=int, default=None,
                    help="repeat everything this many times (default 3, 1 with --quick); the "
                         "goals table shows each figure's median and spread")
    ap.add_argument("--small-files", type=int, default=None,
                    help=f"files in the small-file backlog (default {SMALL_FILES}; 0 skips it)")
    ap.add_argument("--s3-small-files", type=int, default=None,
                    help=f"small files to the RGW (default {S3_SMALL_FILES}; 0 skips them)")
    ap.add_argument("--skip-other-writers", action="store_true",
                    help="skip the other-writers phase")
    ap.add_argument("--small-only", action="store_true",
                    help="only the small-file backlog (with the tools unless --skip-tools, the "
                         "start-up scan and idle memory): the developer's loop on the biggest gap")
    ap.add_argument("--perf", metavar="FILE",
                    help="attach `perf record` (cpu-clock, call graphs) to the agent during the "
                         "backlog phase, write FILE and print its top symbols; perturbs the "
                         "backlog timings a little")
    args = ap.parse_args()
    if args.quick:
        if args.scale == 1.0:
            args.scale = 0.1
        args.skip_snapshot = True
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.small_files is None:
        args.small_files = 10_000 if args.quick else SMALL_FILES
    if args.s3_small_files is None:
        args.s3_small_files = 2_000 if args.quick else S3_SMALL_FILES
    if args.runs < 1:
        print("bench: --runs must be >= 1", file=sys.stderr)
        return 2

    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        print(f"bench: {binary} is not an executable; run `make` first", file=sys.stderr)
        return 2
    if args.scale <= 0:
        print("bench: --scale must be > 0", file=sys.stderr)
        return 2
    if args.perf:
        if not shutil.which("perf"):
            print("bench: --perf needs perf (apt-get install linux-perf)", file=sys.stderr)
            return 2
        args.perf = os.path.abspath(args.perf)

    n_lat = max(20, round(200 * args.scale))
    n_files = max(10, round(3000 * args.scale))
    lat_timeout = 120.0
    burst_timeout = max(60.0, 400.0 * args.scale)
    tool_timeout = max(60.0, 300.0 * args.scale)

    parent = args.workdir or "/tmp"
    os.makedirs(parent, exist_ok=True)
    if args.snapshot_only:
        args.runs = 1
    runs, rc = [], 0
    for i in range(args.runs):
        if args.runs > 1:
            log(f"===== run {i + 1} of {args.runs}")
        result, run_rc = one_run(args, binary, parent, n_lat, n_files, lat_timeout,
                                 burst_timeout, tool_timeout)
        runs.append(result)
        rc = rc or run_rc
        if run_rc not in (0, 1) or (run_rc == 1 and "error" in result and
                                    result.get("error") != "targets missed"):
            break
    summary = {"bench": "custodian", "runs": runs, "ok": rc == 0}
    if not args.snapshot_only:
        summary["goals"] = print_goals(runs)
        for line in perf_hints(runs[-1].get("small", {}).get("profile_sym") or
                               runs[-1].get("backlog", {}).get("profile_sym") or []):
            print("   perf hint: " + line)
    print(json.dumps(summary, sort_keys=True))
    sys.stdout.flush()
    return rc


def one_run(args, binary, parent, n_lat, n_files, lat_timeout, burst_timeout, tool_timeout):
    work = os.path.realpath(tempfile.mkdtemp(prefix="custodian-bench-", dir=parent))
    log(f"work dir {work}; latency files {n_lat}, burst and backlog files {n_files} each")

    result = {"bench": "custodian", "scale": args.scale, "seed": args.seed,
              "cpus": os.cpu_count(), "binary": binary, "ok": False,
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": machine_text()}
    try:
        with open(binary, "rb") as f:
            result["binary_sha256"] = hashlib.sha256(f.read()).hexdigest()
    except OSError:
        pass
    rc = 0
    try:
        if args.small_only:
            n = args.small_files or SMALL_FILES
            result["small"] = sm = run_small(args, binary, work, n, max(120.0, n / 50.0),
                                             args.skip_tools,
                                             args.perf + ".small" if args.perf else None)
            out = []
            print_small(out.append, sm)
            print("\n".join(out), flush=True)
            result["ok"] = True
        elif args.snapshot_only:
            result["snapshot"] = sn = run_snapshot(args, binary, work, args.scale)
            out = []
            print_snapshot(out.append, sn)
            print("\n".join(out), flush=True)
            rc = 1 if "error" in sn else 0
            result["ok"] = rc == 0
        else:
            rc = run(args, binary, work, n_lat, n_files, lat_timeout, burst_timeout,
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
    return result, rc


def machine_text():
    """CPU model, cores, memory and the work folder's filesystem, for RESULTS.md."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        mem = 0
    return f"{model}, {os.cpu_count()} CPUs, {mem} MiB"


def write_set(staging, plan, tag, gen):
    """Write one staging set; returns [(kind, name, size)]."""
    files = []
    for k in FOLDERS:
        os.makedirs(os.path.join(staging, k))
    for kind, i, size in plan:
        name = gen.name_for(kind, tag, i)
        with open(os.path.join(staging, kind, name), "wb") as f:
            f.write(gen.make(kind, size))
        files.append((kind, name, size))
    return files


def run(args, binary, work, n_lat, n_files, lat_timeout, burst_timeout, tool_timeout, result):
    demo = os.path.join(work, "demo")
    stage_a = os.path.join(work, "staging-burst")  # set A: copied in during the burst
    stage_b = os.path.join(work, "staging")  # set B: the backlog, then every tool
    gen = DataGen(args.seed)

    # --- set up the demo configuration
    p = subprocess.run([binary, "init", "--demo", demo], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise BenchError(f"custodian init --demo failed ({p.returncode}): "
                         f"{p.stderr.decode('utf-8', 'replace').strip()}")
    data = os.path.join(demo, "app", "data")
    dest = os.path.join(demo, "destination")
    for k in FOLDERS:
        if not os.path.isdir(os.path.join(data, k)):
            raise BenchError(f"init --demo did not create {os.path.join(data, k)}")

    # --- generate the data sets first (not measured). Sets A and B share one
    # plan (same kinds and sizes) but not their bytes: custodian dedupes by
    # content, so the backlog must not repeat the burst's files.
    log("generating data sets ...")
    t0 = time.monotonic()
    lat_files = [(kind, gen.name_for(kind, "lat", i), gen.make(kind, size))
                 for kind, i, size in gen.plan(n_lat)]
    plan = gen.plan(n_files)
    burst_files = write_set(stage_a, plan, "burst", gen)
    backlog_files = write_set(stage_b, plan, "backlog", gen)
    set_bytes = sum(s for _, _, s in burst_files)
    by_kind = {k: [0, 0] for k in FOLDERS}
    for kind, _, s in burst_files:
        by_kind[kind][0] += 1
        by_kind[kind][1] += s
    os.sync()
    log(f"generated {n_lat} latency files and two sets of {n_files} files "
        f"({set_bytes / MB:.0f} MB each) in {time.monotonic() - t0:.1f} s")
    result["dataset"] = {
        "files": n_files, "mb": round(set_bytes / MB, 1),
        "by_kind": {k: {"files": v[0], "mb": round(v[1] / MB, 1)} for k, v in by_kind.items()},
        "latency_files": n_lat,
        "sets": "A (burst) and B (backlog, arrival copy, tools): same names and sizes, "
                "different contents",
    }

    # ================= agent run 1: latency, then burst
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

        # --- 2. burst: set A copied in while the agent runs
        os.sync()
        warm_cache(stage_a)
        time.sleep(1.0)
        cpu0 = proc_cpu_s(agent.proc.pid)
        snap0 = cpu_snapshot()
        log(f"burst: copying {n_files} files ({set_bytes / MB:.0f} MB) into the watched folders ...")
        burst_paths = []
        t_first = time.time()
        for i, (kind, name, _) in enumerate(burst_files):
            dst = os.path.join(data, kind, name)
            shutil.copyfile(os.path.join(stage_a, kind, name), dst)
            burst_paths.append(os.fsencode(dst))
            if i % 50 == 0:
                agent.sample_rss()
        t_copied = time.time()
        log(f"burst: copy done in {t_copied - t_first:.1f} s; waiting for verified copies ...")
        missing = agent.wait_shipped(burst_paths, burst_timeout - (t_copied - t_first), 0.25, "burst")
        cpu1 = proc_cpu_s(agent.proc.pid)
        snap1 = cpu_snapshot()
        if missing:
            got = len(burst_paths) - len(missing)
            raise BenchError(
                f"burst: {len(missing)} of {n_files} files not shipped within "
                f"{burst_timeout:.0f} s of the first write ({got} shipped), e.g. "
                f"{os.fsdecode(missing[0])}")
        t_last = max(agent.shipped[p] for p in burst_paths) / 1000.0
        wall = t_last - t_first
        result["burst"] = {
            "files": n_files, "mb": round(set_bytes / MB, 1),
            "copy_s": round(t_copied - t_first, 2), "wall_s": round(wall, 2),
            "mb_per_s": round(set_bytes / MB / wall, 1),
            "files_per_s": round(n_files / wall, 1),
            "agent_cpu_s": round(cpu1 - cpu0, 1) if cpu0 is not None and cpu1 is not None else None,
        }
        result["burst"]["background"] = background_load(snap0, snap1, result["burst"]["agent_cpu_s"])
        log(f"burst: {wall:.1f} s, {set_bytes / MB / wall:.1f} MB/s, {n_files / wall:.0f} files/s")

        # --- memory of run 1
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
    result["burst"]["stored_mb_total"] = round(tree_bytes(dest) / MB, 1)

    # --- arrival copy: how long the files take to arrive with no agent running
    # (for "arrival to safety": a tool can only start once they are there).
    arrival = os.path.join(work, "arrival")
    os.sync()
    warm_cache(stage_b)
    time.sleep(0.5)
    snap0 = cpu_snapshot()
    t0 = time.monotonic()
    for k in FOLDERS:
        os.makedirs(os.path.join(arrival, k))
    for kind, name, _ in backlog_files:
        shutil.copyfile(os.path.join(stage_b, kind, name), os.path.join(arrival, kind, name))
    copy_alone = time.monotonic() - t0
    copy_bg = background_load(snap0, cpu_snapshot(), 0.0)
    shutil.rmtree(arrival)
    log(f"arrival copy (no agent running): {copy_alone:.1f} s")

    # ================= agent run 2: the backlog (set B renamed in while stopped)
    result["backlog"] = run_backlog(args, binary, demo, data, dest, stage_b, backlog_files,
                                    set_bytes, burst_timeout)
    result["agent_log"] = Agent(binary, demo).log_counts()
    shutil.rmtree(dest, ignore_errors=True)  # free the disk for the other tools
    shutil.rmtree(data, ignore_errors=True)

    # --- 5. rclone, restic, borg on set B
    tools = {}
    if not args.skip_tools:
        tools = run_tools(work, stage_b, set_bytes, n_files, tool_timeout)
    result["tools"] = tools
    bl, burst = result["backlog"], result["burst"]
    like, arr = {}, {}
    for name, t in tools.items():
        if not t.get("mb_per_s"):
            continue
        like[name] = round(bl["mb_per_s"] / t["mb_per_s"], 2)
        total = copy_alone + t["wall_s"]
        arr[name] = {"copy_plus_tool_s": round(total, 2),
                     "ratio": round(total / burst["wall_s"], 2)}
    result["arrival"] = {"copy_alone_s": round(copy_alone, 2), "copy_background": copy_bg,
                         "custodian_burst_s": burst["wall_s"], "tools": arr}
    result["ratios"] = {
        "like_for_like": like,  # custodian backlog MB/s / tool MB/s
        "arrival_to_safety": {k: v["ratio"] for k, v in arr.items()},  # (copy + tool) / burst
    }

    # --- many small files (local), the start-up scan over them, other writers
    if args.small_files > 0:
        result["small"] = run_small(args, binary, work, args.small_files,
                                    max(120.0, args.small_files / 50.0), args.skip_tools,
                                    args.perf + ".small" if args.perf else None)
    if not args.skip_other_writers:
        result["other_writers"] = run_other_writers(
            args, binary, work, max(20000, args.small_files // 2), max(120.0, args.small_files / 50.0))

    hwms = (result["rss_mb"]["vmhwm"], bl["peak_rss_mb"])  # both agent runs
    targets = {
        "latency_median_lt_2000ms": result["latency_ms"]["median"] < LATENCY_TARGET_MS,
        "peak_rss_lt_64mb": None not in hwms and max(hwms) < RSS_TARGET_MB,
    }
    result["targets"] = targets

    # --- S3: custodian, rclone and restic to a private Ceph RGW (table section 7)
    rc = 0
    if not args.skip_s3:
        s3 = run_s3(args, binary, work, stage_b, backlog_files, args.scale, args.skip_tools)
        result["s3"] = s3
        if "error" in s3.get("custodian", {}):
            result["error"] = "s3: " + s3["custodian"]["error"]
            log(f"FAILED: {result['error']}")
            rc = 1
        elif "error" in s3:
            result["error"] = "s3: " + s3["error"]
            rc = 2
    # --- a billing-cycle snapshot against tar --zstd (table section 8)
    if not args.skip_snapshot:
        result["snapshot"] = run_snapshot(args, binary, work, args.scale)
        if "error" in result["snapshot"]:
            log(f"snapshot phase: {result['snapshot']['error']}")
            rc = rc or 1
        else:
            targets.update({"snapshot_" + k: v
                            for k, v in result["snapshot"]["targets"].items()})
    result["ok"] = rc == 0
    print_table(result)
    if rc:
        return rc
    if args.strict and not all(targets.values()):
        return 1
    return 0


def run_backlog(args, binary, demo, data, dest, stage_b, files, set_bytes, timeout):
    """Rename set B into fresh subfolders of the stopped agent's watched
    folders, start the agent, time from its start to the last verified copy."""
    n = len(files)
    stored0 = tree_bytes(dest)
    moved = []
    try:
        for k in FOLDERS:
            os.rename(os.path.join(stage_b, k), os.path.join(data, k, "backlog"))
            moved.append(k)
        paths = [os.fsencode(os.path.join(data, kind, "backlog", name)) for kind, name, _ in files]
        os.sync()
        for k in FOLDERS:
            warm_cache(os.path.join(data, k, "backlog"))
        time.sleep(1.0)
        perf = Perf(args.perf) if args.perf else None
        agent = Agent(binary, demo)
        try:
            log(f"backlog: {n} files ({set_bytes / MB:.0f} MB) waiting in the watched folders; "
                "starting the agent" + (" under perf record" if perf else "") + " ...")
            snap0 = cpu_snapshot()
            t0 = agent.start(timeout=timeout, on_spawn=perf.attach if perf else None)
            t_started = time.time()
            pid = agent.proc.pid
            missing = agent.wait_shipped(paths, timeout - (t_started - t0), 0.1, "backlog")
            cpu = proc_cpu_s(pid)
            snap1 = cpu_snapshot()
            threads = proc_threads_cpu_s(pid)
            hwm = proc_status_kb(pid, "VmHWM")
            agent.sample_rss()
            if missing:
                got = n - len(missing)
                raise BenchError(
                    f"backlog: {len(missing)} of {n} files not shipped within {timeout:.0f} s "
                    f"of the agent's start ({got} shipped), e.g. {os.fsdecode(missing[0])}")
        except BenchError:
            agent.stop()
            log("agent stderr (tail):\n" + agent.log_tail())
            raise
        finally:
            if perf:
                perf.stop()  # before SIGTERM: the profile leaves out the shutdown
            if agent.alive():
                agent.stop()
        if agent.exit_code != 0:
            log("agent stderr (tail):\n" + agent.log_tail())
            raise BenchError(f"agent did not exit cleanly on SIGTERM: {agent.exit_code}")
    finally:
        for k in moved:  # set B goes back to staging for the tools
            os.rename(os.path.join(data, k, "backlog"), os.path.join(stage_b, k))
    t_last = max(agent.shipped[p] for p in paths) / 1000.0
    wall = t_last - t0
    res = {
        "files": n, "mb": round(set_bytes / MB, 1), "wall_s": round(wall, 2),
        "startup_s": round(t_started - t0, 2),
        "mb_per_s": round(set_bytes / MB / wall, 1), "files_per_s": round(n / wall, 1),
        "agent_cpu_s": round(cpu, 1) if cpu is not None else None,
        "agent_cpu_threads_s": threads,
        "peak_rss_mb": round(hwm / 1024.0, 1) if hwm else None,
        "stored_mb": round((tree_bytes(dest) - stored0) / MB, 1),
        "perf": bool(args.perf),
        # perf record's own CPU, when attached, counts as background here
        "background": background_load(snap0, snap1, cpu),
    }
    log(f"backlog: {wall:.1f} s, {res['mb_per_s']} MB/s, {res['files_per_s']:.0f} files/s, "
        f"agent CPU {res['agent_cpu_s']} s")
    if perf:
        res["perf_file"] = perf.path
        if perf.error:
            res["perf_error"] = perf.error
            log(perf.error)
        else:
            res["profile_dso"] = perf.report("dso", 0.5)
            res["profile_sym"] = perf.report("dso,sym", 0.5)
    return res


def run_tools(work, staging, set_bytes, n_files, timeout, keep_outputs=False):
    """rclone, restic and borg on staging. keep_outputs: leave each tool's output until
    the caller removes it (on ext4 without a journal, inodes freed in the last minute
    make every file creation after them slower: a tool must not pay for the one before)."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "BORG_", "RCLONE_"))}
    tdir = os.path.join(work, "tools")
    os.makedirs(tdir)
    results = {}

    def prepare(name):
        # Write-back of the previous phase is not charged to this one, and the
        # tool reads set B from a warm page cache, as custodian's backlog did.
        os.sync()
        warm_cache(staging)
        log(f"{name} ...")

    def record(name, res, dest):
        if "error" not in res:
            res["mb_per_s"] = round(set_bytes / MB / res["wall_s"], 1)
            res["files_per_s"] = round(n_files / res["wall_s"], 1)
        res["stored_mb"] = round(tree_bytes(dest) / MB, 1)
        res["wall_s"] = round(res["wall_s"], 2)
        if res.get("peak_rss_mb") is not None:
            res["peak_rss_mb"] = round(res["peak_rss_mb"], 1)
        if res.get("cpu_s") is not None:
            res["cpu_s"] = round(res["cpu_s"], 1)
        results[name] = res
        if not keep_outputs:
            shutil.rmtree(dest, ignore_errors=True)
        log(f"{name}: {res['wall_s']:.1f} s"
            + (f", {res['mb_per_s']} MB/s" if "mb_per_s" in res else f" ({res.get('error')})"))

    # rclone: local to local, defaults (4 transfers, 8 checkers), no config file.
    if shutil.which("rclone"):
        dest = os.path.join(tdir, "rclone-dest")
        prepare("rclone copy")
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
            prepare("restic backup")
            res = run_tool("restic", ["restic", "backup", "--quiet", "--repo", repo, "."],
                           env, staging, timeout, tdir)
            record("restic", res, repo)
        if not keep_outputs:
            shutil.rmtree(os.path.join(tdir, "restic-cache"), ignore_errors=True)
    else:
        log("restic not installed; skipped")

    # borg: fresh repokey-blake2 repository, zstd level 3 (custodian's codec and level).
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
            prepare("borg create")
            res = run_tool("borg", ["borg", "create", "--compression", "zstd,3",
                                    repo + "::bench", "."],
                           env, staging, timeout, tdir)
            record("borg", res, repo)
        if not keep_outputs:
            shutil.rmtree(os.path.join(tdir, "borg-base"), ignore_errors=True)
    else:
        log("borg not installed; skipped")
    return results


# ---------------------------------------------------------------- billing-cycle snapshot

MONGO_SERVER = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "..", "tests", "servers", "mongo_server.py"))
SNAP_PDFS, SNAP_IMAGES = 1000, 2000  # at scale 1: about 500 MB
SNAP_RATIO_TARGET = 1.5


def snapshot_files(gen, root, n_pdfs, n_images):
    """The period's files under root (invoices/ and images/): [(rel path, size)]."""
    out = []
    rng = random.Random(gen.rng.random())
    for kind, n, lo, hi, ext in (("invoices", n_pdfs, 50_000, 150_000, "pdf"),
                                 ("images", n_images, 100_000, 300_000, "jpg")):
        d = os.path.join(root, kind, "2026-11-A")
        os.makedirs(d, exist_ok=True)
        for i in range(n):
            size = rng.randint(lo, hi)
            rel = f"{kind}/2026-11-A/{kind[:3]}-{i:05d}.{ext}"
            with open(os.path.join(root, rel), "wb") as f:
                f.write(gen.make(kind, size))
            out.append((rel, size))
    return out


def snapshot_billing_json(path, files):
    """The app's data as canonical Extended JSON, written without a BSON library: one
    closed period, an invoice per PDF, a timesheet per image."""
    def oid(i):
        return {"$oid": f"{0x65a0b000 + i:08x}{i:016x}"}

    def date(ms):
        return {"$date": {"$numberLong": str(ms)}}

    period = {"_id": oid(0), "label": "2026-11-A", "start": date(1793491200000),
              "end": date(1794614400000), "closedAt": date(1794700800000)}
    invoices, timesheets = [], []
    for i, (rel, _) in enumerate(files):
        if rel.startswith("invoices/"):
            invoices.append({"_id": oid(100000 + i), "periodId": oid(0),
                             "total": {"$numberDecimal": f"{100 + i % 900}.25"},
                             "pdf": {"file": rel}})
        else:
            timesheets.append({"_id": oid(200000 + i), "billingPeriodId": oid(0),
                               "hours": {"$numberDecimal": "7.50"}, "image": {"path": rel}})
    with open(path, "w") as f:
        json.dump({"billingPeriods": [period], "invoices": invoices,
                   "timesheets": timesheets}, f)


def run_snapshot(args, binary, work, scale):
    """A period of 1,000 invoice PDFs and 2,000 timesheet images (scaled): custodian snapshot
    against `tar --zstd -cf` over the same files, both from a warm page cache."""
    sdir = os.path.join(work, "snapshot")
    demo = os.path.join(sdir, "demo")
    os.makedirs(sdir)
    res = {}
    if not os.path.exists("/usr/bin/python3") or not shutil.which("zstd"):
        return {"error": "needs Debian's /usr/bin/python3 (mockupdb, mongomock) and zstd"}
    p = subprocess.run([binary, "init", "--demo", demo], capture_output=True, timeout=60)
    if p.returncode != 0:
        return {"error": "custodian init --demo failed: " + p.stderr.decode(errors="replace")}
    data = os.path.join(demo, "app", "data")
    n_pdfs = max(10, round(SNAP_PDFS * scale))
    n_images = max(20, round(SNAP_IMAGES * scale))
    log(f"snapshot phase: generating {n_pdfs} PDFs and {n_images} images ...")
    files = snapshot_files(DataGen(args.seed + 7), data, n_pdfs, n_images)
    nbytes = sum(size for _, size in files)
    res.update(files=len(files), mb=nbytes / MB)
    billing = os.path.join(sdir, "billing.json")
    snapshot_billing_json(billing, files)
    port = free_ports(1)[0]
    server = subprocess.Popen(
        ["/usr/bin/python3", MONGO_SERVER, "--port", str(port), "--docs", "6",
         "--billing", billing], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL)
    try:
        if b"ready" not in server.stdout.readline():
            return {"error": "the MongoDB test server did not start"}
        with open(os.path.join(demo, "custodian.conf"), "a") as f:
            f.write(f"\n[mongodb]\nuri = mongodb://127.0.0.1:{port}/billing\n"
                    "[snapshots]\nwait_for_files_minutes = 0\n")
        conf = os.path.join(demo, "custodian.conf")
        log("snapshot phase: shipping the period's files (not timed) ...")
        for cmd in (["scan"], ["ship", "--timeout", "1800"]):
            p = subprocess.run([binary, "-c", conf] + cmd, capture_output=True, timeout=3600)
            if p.returncode != 0:
                return {"error": f"custodian {cmd[0]} failed: "
                        + p.stderr.decode(errors="replace")[-500:]}
        lst = os.path.join(sdir, "files.txt")
        with open(lst, "w") as f:
            f.write("".join(rel + "\n" for rel, _ in files))
        warm_cache(data)
        log("snapshot phase: tar --zstd -cf ...")
        tar = run_tool("tar-zstd", ["tar", "--zstd", "-cf", os.path.join(sdir, "period.tar.zst"),
                                    "-C", data, "-T", lst], tool_env(), sdir, 3600, sdir)
        warm_cache(data)
        log("snapshot phase: custodian snapshot ...")
        snap = run_tool("custodian-snapshot", [binary, "-c", conf, "snapshot", "2026-11-A"],
                        dict(os.environ), sdir, 3600, sdir)
        res["tar"] = {k: tar[k] for k in ("wall_s", "peak_rss_mb", "cpu_s", "error") if k in tar}
        res["tar"]["mb"] = os.path.getsize(os.path.join(sdir, "period.tar.zst")) / MB \
            if "error" not in tar else None
        res["custodian"] = {k: snap[k] for k in ("wall_s", "peak_rss_mb", "cpu_s", "error")
                            if k in snap}
        res["custodian"]["background"] = snap.get("background")
        res["tar"]["background"] = tar.get("background")
        if "error" in snap or "error" in tar:
            res["error"] = snap.get("error") or tar.get("error")
            return res
        with sqlite3.connect(f"file:{os.path.join(demo, 'state', 'catalog.db')}?mode=ro",
                             uri=True) as db:
            row = db.execute("SELECT files, refs, missing, plain_size FROM snapshots").fetchone()
        res["package"] = {"files": row[0], "refs": row[1], "missing": row[2],
                          "mb": row[3] / MB}
        if row[0] != len(files) or row[2] != 0:
            res["error"] = f"the package holds {row[0]} files ({row[2]} missing), not {len(files)}"
        res["ratio"] = snap["wall_s"] / tar["wall_s"]
        res["targets"] = {"ratio_le_1_5": res["ratio"] <= SNAP_RATIO_TARGET,
                          "peak_rss_lt_64mb": (snap["peak_rss_mb"] or 1e9) < RSS_TARGET_MB}
        return res
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def print_snapshot(w, sn):
    w("")
    if "files" in sn:
        w(f"8. billing-cycle snapshot: one period, {sn['files']} files ({sn['mb']:.0f} MB: invoice PDFs "
          "and timesheet images), warm page cache")
    else:
        w("8. billing-cycle snapshot")
    if sn.get("error") and "custodian" not in sn:
        w(f"   failed: {sn['error']}")
        return
    c, t = sn.get("custodian", {}), sn.get("tar", {})
    w(f"   {'':<28}{'wall s':>8}{'peak RSS':>10}{'CPU s':>8}{'bg cores':>10}")
    for label, x in (("custodian snapshot LABEL", c), ("tar --zstd -cf", t)):
        w(f"   {label:<28}{num(x.get('wall_s'), 8)}{num(x.get('peak_rss_mb'), 10)}"
          f"{num(x.get('cpu_s'), 8)}{num(bg_cores(x), 10, 2)}")
    if sn.get("error"):
        w(f"   failed: {sn['error']}")
        return
    ok = lambda v: "PASS" if v else "MISS"  # noqa: E731
    w(f"   custodian / tar wall time     {sn['ratio']:8.2f}   target <= {SNAP_RATIO_TARGET}  "
      f"{ok(sn['targets']['ratio_le_1_5'])}")
    w(f"   custodian peak RSS            {num(c.get('peak_rss_mb'), 8)} MiB  target < "
      f"{RSS_TARGET_MB:.0f} MiB  {ok(sn['targets']['peak_rss_lt_64mb'])}")
    w("   custodian reads the period from MongoDB (the wire test server), finds each file in")
    w("   the catalog, packs tar + zstd (level 3, as tar --zstd), checks each file's SHA-256,")
    w("   encrypts, signs, records, and stores the package on the local destination;")
    w("   tar only packs and compresses.")


def num(v, width, prec=1):
    return f"{'n/a':>{width}}" if v is None else f"{v:>{width}.{prec}f}"


TOOLS = (("rclone", "rclone copy"), ("restic", "restic backup"), ("borg", "borg create"))


def bg_cores(x):
    bg = (x or {}).get("background")
    return None if not bg else bg["other_cores"]


S3_TOOLS = (("rclone", "rclone copy"), ("restic", "restic backup"))


def print_small(w, sm):
    w("")
    w(f"6b. many small files: {sm['files']} files of 64 B - 4 KB ({sm['mb']:.0f} MB; half JSON, "
      "half random) already on disk, local destination")
    c = sm["custodian"]
    w(f"   {'':<22}{'wall s':>8}{'files/s':>9}{'peak RSS':>10}{'CPU s':>8}{'bg cores':>10}"
      f"{'tool/cust':>11}")
    w(f"   {'custodian (backlog)':<22}{c['wall_s']:>8.1f}{c['files_per_s']:>9.0f}"
      f"{num(c['peak_rss_mb'], 10)}{num(c['agent_cpu_s'], 8)}{num(bg_cores(c), 10, 2)}")
    for name, label in TOOLS:
        x = (sm.get("tools") or {}).get(name)
        if not x or "mb_per_s" not in x:
            continue
        w(f"   {label:<22}{x['wall_s']:>8.1f}{x['files_per_s']:>9.0f}{num(x['peak_rss_mb'], 10)}"
          f"{num(x['cpu_s'], 8)}{num(bg_cores(x), 10, 2)}{sm['ratios'].get(name, 0):>11.2f}")
    th = c.get("agent_cpu_threads_s") or {}
    if th:
        w(f"   custodian CPU: event loop {th['main']:.1f} s, {th['n_workers']} other threads "
          f"{th['workers']:.1f} s ({c['cores_busy']} cores busy)")
    nf = sm.get("new_file_during_backlog")
    if nf:
        w(f"   a file written while {nf['waiting_when_written']} waited was safe after "
          f"{nf['safe_after_s']:.2f} s (target {BACKLOG_NEW_FILE_TARGET_S:.0f} s)")
    sc = sm.get("startup_scan")
    if sc:
        w(f"   restart over {sc['files']} unchanged files: start-up scan {sc['scan_s']:.2f} s, "
          f"find -printf '%s %T@' {sc['find_s']:.2f} s ({sc['ratio']}x); status asked "
          f"{sc['status_asked']}x during it, answered {sc['status_answered']}x, max "
          f"{sc['status_max_ms']} ms; idle RSS {sm.get('idle_rss_mb')} MiB")
    if sm.get("profile_sym"):
        w("   profile (perf record -e cpu-clock, self time), top symbols:")
        for pct, what in sm["profile_sym"][:12]:
            w(f"   {pct:6.2f}%  {what}")


def print_s3(w, s3):
    w("")
    if "skipped" in s3:
        w(f"7. S3: skipped ({s3['skipped']})")
        return
    w(f"7. S3: {s3['files']} files, {s3['mb']:.0f} MB of set B (the same mix) to a private")
    if "error" in s3:
        w(f"   Ceph RGW: failed: {s3['error']}")
        return
    w("   Ceph RGW over HTTPS on 127.0.0.1 (test CA, 1 monitor, 1 OSD in RAM, started in")
    w(f"   {s3['rgw']['start_s']:.1f} s), a bucket per tool")
    hdr = (f"   {'':<22}{'wall s':>8}{'MB/s':>9}{'files/s':>9}{'peak RSS':>10}{'CPU s':>8}"
           f"{'RGW CPU s':>11}{'stored MB':>11}{'bg cores':>10}{'cust/tool':>11}")
    w(hdr)
    c = s3.get("custodian", {})
    if "error" in c:
        w(f"   {'custodian (backlog)':<22}  failed: {c['error']}")
    else:
        w(f"   {'custodian (backlog)':<22}{c['wall_s']:>8.1f}{c['mb_per_s']:>9.1f}"
          f"{c['files_per_s']:>9.0f}{num(c['peak_rss_mb'], 10)}{num(c['agent_cpu_s'], 8)}"
          f"{num(c['server_cpu_s'], 11)}{c['stored_mb']:>11.1f}{num(bg_cores(c), 10, 2)}{'':>11}")
    for name, label in S3_TOOLS:
        x = s3["tools"].get(name)
        if x is None:
            w(f"   {label:<22}  (not run)")
            continue
        if "mb_per_s" not in x:
            w(f"   {label:<22}  failed: {x.get('error')}")
            continue
        ratio = s3.get("ratios", {}).get(name)
        w(f"   {label:<22}{x['wall_s']:>8.1f}{x['mb_per_s']:>9.1f}{x['files_per_s']:>9.0f}"
          f"{num(x['peak_rss_mb'], 10)}{num(x['cpu_s'], 8)}{num(x['server_cpu_s'], 11)}"
          f"{num(x.get('stored_mb'), 11)}{num(bg_cores(x), 10, 2)}{num(ratio, 11, 2)}")
    if "error" not in c:
        th = c.get("agent_cpu_threads_s") or {}
        w(f"   custodian: agent start -> last verified copy (start-up {c['startup_s']:.2f} s)")
        if th:
            w(f"   custodian CPU: event loop {th['main']:.1f} s, {th['n_workers']} other threads "
              f"{th['workers']:.1f} s")
    ss = s3.get("small")
    if ss:
        w(f"   small objects: {ss['files']} files of 1-8 KB ({ss['mb']:.0f} MB)")
        c = ss.get("custodian", {})
        if "error" in c:
            w(f"   {'custodian (backlog)':<22}  failed: {c['error']}")
        else:
            w(f"   {'custodian (backlog)':<22}{c['wall_s']:>8.1f}{c['mb_per_s']:>9.2f}"
              f"{c['files_per_s']:>9.0f}{num(c['peak_rss_mb'], 10)}{num(c['agent_cpu_s'], 8)}"
              f"{num(c['server_cpu_s'], 11)}")
        for name, label in S3_TOOLS:
            x = ss["tools"].get(name)
            if x and "mb_per_s" in x:
                w(f"   {label:<22}{x['wall_s']:>8.1f}{x['mb_per_s']:>9.2f}{x['files_per_s']:>9.0f}"
                  f"{num(x['peak_rss_mb'], 10)}{num(x['cpu_s'], 8)}{num(x['server_cpu_s'], 11)}"
                  f"{num(x.get('stored_mb'), 11)}{num(bg_cores(x), 10, 2)}"
                  f"{num(ss['ratios'].get(name), 11, 2)}")
    w("   cust/tool = custodian MB/s / tool MB/s (> 1: custodian faster). Same bytes, warm")
    w("   page cache; client and RGW share the machine's CPUs (RGW CPU s = monitor + OSD +")
    w("   radosgw during the run; bg cores leaves it out). custodian: per file SHA-256, zstd,")
    w("   encryption, a spool file on disk, one HTTPS PUT per object (SigV4 with the body's")
    w("   SHA-256 as the signed payload hash: both ends hash every byte, and the server's")
    w("   acceptance proves the copy, no HEAD), a catalog record; max_inflight 4, 2 workers.")
    w("   rclone: one HTTPS PUT per file (multipart above 200 MiB) with Content-MD5, 4")
    w("   transfers, no compression or encryption. restic: chunks, dedupes, compresses and")
    w("   encrypts into packs of about 16 MiB, 5 connections, index and snapshot at the end.")
    w("   The RGW keeps objects in RAM.")


def print_table(r):
    ds, lat, b, bl, rss = r["dataset"], r["latency_ms"], r["burst"], r["backlog"], r["rss_mb"]
    ok = lambda v: "PASS" if v else "MISS"  # noqa: E731
    t = r["targets"]
    out = []
    w = out.append
    w("")
    w(f"custodian benchmark  (scale {r['scale']}, {r['cpus']} CPUs, MB = 10^6 bytes, RSS in MiB)")
    w("data set: " + ", ".join(
        f"{k} {v['files']} files {v['mb']:.1f} MB" for k, v in ds["by_kind"].items())
      + f"; total {ds['files']} files {ds['mb']:.0f} MB")
    w("          twice: set A for the burst, set B for the backlog and the tools")
    w("          (same names and sizes, different bytes: custodian dedupes by content)")
    w("")
    w(f"1. latency ({lat['files']} files, one every {lat['interval_ms']:.0f} ms, close -> verified copy)")
    w(f"   median {lat['median']:8.0f} ms   target < {LATENCY_TARGET_MS:.0f} ms  {ok(t['latency_median_lt_2000ms'])}")
    w(f"   p90    {lat['p90']:8.0f} ms")
    w(f"   p99    {lat['p99']:8.0f} ms")
    w(f"   max    {lat['max']:8.0f} ms")
    w("")
    w(f"2. burst: files arriving (set A, {b['mb']:.0f} MB, copied into the watched folders")
    w("   as fast as possible while the agent runs; the copy competes for the CPUs)")
    w(f"   first write -> last verified copy  {b['wall_s']:8.1f} s   (the copy itself took {b['copy_s']:.1f} s)")
    w(f"   throughput                         {b['mb_per_s']:8.1f} MB/s  {b['files_per_s']:.0f} files/s")
    w(f"   agent CPU time                     {num(b['agent_cpu_s'], 8)} s")
    w(f"   other processes' CPU meanwhile     {num(bg_cores(b), 8, 2)} cores")
    w("")
    w(f"3. backlog: files already there (set B, {bl['mb']:.0f} MB, renamed into the watched")
    w("   folders while the agent was stopped; found by its start-up scan)")
    w(f"   agent start -> last verified copy  {bl['wall_s']:8.1f} s   (start-up incl. scan: {bl['startup_s']:.2f} s)")
    w(f"   throughput                         {bl['mb_per_s']:8.1f} MB/s  {bl['files_per_s']:.0f} files/s")
    th = bl.get("agent_cpu_threads_s") or {}
    w(f"   agent CPU time                     {num(bl['agent_cpu_s'], 8)} s"
      + (f"   (event loop {th['main']:.1f} s, {th['n_workers']} workers {th['workers']:.1f} s)"
         if th else ""))
    w(f"   agent peak RSS (VmHWM)             {num(bl['peak_rss_mb'], 8)} MiB")
    w(f"   other processes' CPU meanwhile     {num(bg_cores(bl), 8, 2)} cores")
    if bl.get("perf"):
        w("   (perf record was attached: these timings include its overhead)")
    w("")
    w("4. agent memory (peak RSS, VmHWM, read before SIGTERM)")
    w(f"   latency + burst run                {num(rss['vmhwm'], 8)} MiB   "
      f"target < {RSS_TARGET_MB:.0f} MiB  {ok(t['peak_rss_lt_64mb'])}")
    w(f"   backlog run                        {num(bl['peak_rss_mb'], 8)} MiB")
    w("")
    w(f"5. like for like: set B ({ds['files']} files, {ds['mb']:.0f} MB) already on disk, warm page cache")
    hdr = (f"   {'':<22}{'wall s':>8}{'MB/s':>9}{'files/s':>9}{'peak RSS':>10}{'CPU s':>8}"
           f"{'stored MB':>11}{'bg cores':>10}{'cust/tool':>11}")
    w(hdr)
    w(f"   {'custodian (backlog)':<22}{bl['wall_s']:>8.1f}{bl['mb_per_s']:>9.1f}{bl['files_per_s']:>9.0f}"
      f"{num(bl['peak_rss_mb'], 10)}{num(bl['agent_cpu_s'], 8)}{bl['stored_mb']:>11.1f}"
      f"{num(bg_cores(bl), 10, 2)}{'':>11}")
    for name, label in TOOLS:
        x = r["tools"].get(name)
        if x is None:
            w(f"   {label:<22}  (not run)")
            continue
        if "mb_per_s" not in x:
            w(f"   {label:<22}  failed: {x.get('error')}")
            continue
        w(f"   {label:<22}{x['wall_s']:>8.1f}{x['mb_per_s']:>9.1f}{x['files_per_s']:>9.0f}"
          f"{num(x['peak_rss_mb'], 10)}{num(x['cpu_s'], 8)}{x['stored_mb']:>11.1f}"
          f"{num(bg_cores(x), 10, 2)}{r['ratios']['like_for_like'].get(name, float('nan')):>11.2f}")
    w("   cust/tool = custodian backlog MB/s / tool MB/s = tool wall / custodian wall")
    w("   (> 1: custodian faster). Each reads the same bytes, read once beforehand so")
    w("   they come from the page cache. custodian's time runs from the agent's start")
    w("   (start-up scan included). Per file it does SHA-256, zstd (auto: level 3 or raw),")
    w("   encryption, a spool file that becomes the copy (hard link; a read-back with")
    w("   SHA-256 when it has to be copied), made durable per batch (fdatasync per file")
    w("   on many threads at once, one fsync per folder), and catalog records (SQLite).")
    w("   rclone only copies (and checks hashes; no fsync); restic and borg chunk,")
    w("   dedupe, compress and encrypt into packs or segments, fsynced per pack/segment.")
    w("   Tools' peak RSS and CPU come from /usr/bin/time -f '%M %U %S'.")
    w("   bg cores = CPU used by everything else on the machine during that run (from")
    w("   /proc/stat, kernel write-back included), in cores; compare rows with care when")
    w(f"   it differs between them by more than a few tenths (this machine has {r['cpus']} CPUs).")
    w("")
    a = r["arrival"]
    w(f"6. arrival to safety: {ds['files']} files arrive, then are safe")
    w(f"   {'':<40}{'s':>8}{'tool/cust':>11}")
    w(f"   {'custodian burst (copy and ship overlap)':<40}{b['wall_s']:>8.1f}")
    for name, label in TOOLS:
        x = a["tools"].get(name)
        if x is None:
            continue
        w(f"   {'copy ' + format(a['copy_alone_s'], '.1f') + ' s + ' + label:<40}"
          f"{x['copy_plus_tool_s']:>8.1f}{x['ratio']:>11.2f}")
    w("   tool/cust = (copy + tool wall) / custodian burst wall (> 1: custodian's copies")
    w("   are safe sooner). The copy is timed alone (no agent running) on set B; a tool")
    w("   run can only start once the files are there. The burst's copy shares the CPUs")
    w("   with the agent.")
    if r.get("small"):
        print_small(w, r["small"])
    if r.get("other_writers"):
        ow = r["other_writers"]
        w("")
        w(f"6c. other writers: {ow['writer_mb']} MB written and fsynced by another process on the")
        if ow.get("busy_s") is None:
            w(f"   same filesystem: {ow['idle_s']:.2f} s with the agent idle; the backlog of "
              f"{ow['backlog_files']} files ended before a writer run did: not measured")
        else:
            w(f"   same filesystem, median of {len(ow['idle_runs_s'])} runs each way: "
              f"{ow['idle_s']:.2f} s with the agent idle "
              f"({min(ow['idle_runs_s']):.2f}..{max(ow['idle_runs_s']):.2f}), "
              f"{ow['busy_s']:.2f} s while it shipped a backlog of {ow['backlog_files']} small")
            w(f"   files ({min(ow['busy_runs_s']):.2f}..{max(ow['busy_runs_s']):.2f}; "
              f"{ow['shipped_meanwhile']} shipped by the last): {ow['slowdown'] * 100:+.1f} %")
    if r.get("s3"):
        print_s3(w, r["s3"])
    if r.get("snapshot"):
        print_snapshot(w, r["snapshot"])
    if bl.get("profile_sym"):
        w("")
        w("9. profile of the agent during the backlog (perf record -e cpu-clock, self time)")
        for pct, what in bl["profile_dso"][:8]:
            w(f"   {pct:6.2f}%  {what}")
        w("   top symbols:")
        for pct, what in bl["profile_sym"][:20]:
            w(f"   {pct:6.2f}%  {what}")
    w("")
    print("\n".join(out), flush=True)



# ---------------------------------------------------------------- many small files

SMALL_FILES = 100_000  # the day-one backlog: years of bug reports and timesheet scans
S3_SMALL_FILES = 20_000
SMALL_PER_FOLDER = 1000
STATUS_TARGET_MS = 100.0
BACKLOG_NEW_FILE_TARGET_S = 2.0


def write_small_set(root, n, seed, lo, hi, tag):
    """n files of lo..hi bytes under root/dNNN/ (1000 a folder): half JSON-like text
    (compressible), half random. Returns [(relative name, size)]."""
    rng = random.Random(seed)
    words = ("patient visit invoice claim provider amount balance note scan page "
             "timesheet hours approved pending clinic room chart").split()
    out = []
    for i in range(n):
        d = f"d{i // SMALL_PER_FOLDER:03d}"
        if i % SMALL_PER_FOLDER == 0:
            os.makedirs(os.path.join(root, d), exist_ok=True)
        size = rng.randint(lo, hi)
        if i % 2:
            body = os.urandom(size)
        else:
            head = f'{{"id":"{tag}-{i:07d}-{os.urandom(6).hex()}","text":"'.encode()
            text = " ".join(rng.choice(words) for _ in range(size // 5 + 1)).encode()
            body = (head + text)[:max(0, size - 3)] + b'"}\n'
            body = body[:size] if len(body) >= size else body + b" " * (size - len(body))
        name = f"{d}/{tag}_{i:07d}.{'json' if i % 2 == 0 else 'bin'}"
        with open(os.path.join(root, name), "wb") as f:
            f.write(body)
        out.append((name, size))
    return out


def log_times(agent, marker, offset):
    """UTC times (s since the epoch) of the agent's log lines since offset that contain marker."""
    import datetime
    out = []
    for line in agent.read_log(offset).decode("utf-8", "replace").splitlines():
        if marker in line:
            stamp = line.split(" ", 1)[0]
            try:
                dt = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
                out.append(dt.replace(tzinfo=datetime.timezone.utc).timestamp())
            except ValueError:
                pass
    return out


def ask_status(sock_path, timeout=5.0):
    """One status request on the agent's control socket: ms until its whole answer, or None."""
    import socket
    t = time.monotonic()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock_path)
        while s.recv(65536):
            pass
    except OSError:
        return None
    finally:
        s.close()
    return (time.monotonic() - t) * 1000.0


class StatusProbe:
    """Asks the agent's control socket every 20 ms from a thread; keeps the answer times."""

    def __init__(self, sock_path):
        import threading
        self.sock = sock_path
        self.times = []  # (time.time(), ms or None)
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stop_evt.is_set():
            t = time.time()
            self.times.append((t, ask_status(self.sock)))
            self.stop_evt.wait(0.02)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_evt.set()
        self.thread.join(timeout=10)


def count_versions(agent, prefix):
    """Versions rows whose path starts with prefix (bytes), read incrementally."""
    agent.poll_catalog()
    return sum(1 for p in agent.shipped if p.startswith(prefix))


def run_small(args, binary, work, n, timeout, skip_tools, perf_path=None):
    """The day-one backlog: n files of 64 B - 4 KB already on disk when the agent starts
    (local destination), against rclone/restic/borg on the same files; a new file written
    while they wait (new work goes first); then a restart over the unchanged files (the
    start-up scan against find, status answers during it, idle memory)."""
    sdir = os.path.join(work, "small")
    staging = os.path.join(sdir, "staging")
    os.makedirs(staging)
    log(f"small files: generating {n} files of 64 B - 4 KB ...")
    files = write_small_set(os.path.join(staging, "small"), n, args.seed + 11, 64, 4096, "S")
    nbytes = sum(sz for _, sz in files)
    os.sync()
    res = {"files": n, "mb": round(nbytes / MB, 2)}
    demo = os.path.join(sdir, "demo")
    p = subprocess.run([binary, "init", "--demo", demo], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise BenchError("custodian init --demo failed: " + p.stderr.decode(errors="replace"))
    data = os.path.join(demo, "app", "data")
    watched = os.path.join(data, "bug-reports", "small")
    sock = os.path.join(demo, "state", "agent.sock")
    prefix = os.fsencode(watched + "/")
    os.rename(os.path.join(staging, "small"), watched)
    try:
        warm_cache(watched)
        time.sleep(1.0)
        perf = Perf(perf_path) if perf_path else None
        agent = Agent(binary, demo)
        try:
            log(f"small files: {n} waiting; starting the agent"
                + (" under perf record" if perf else "") + " ...")
            snap0 = cpu_snapshot()
            t0 = agent.start(timeout=timeout, on_spawn=perf.attach if perf else None)
            pid = agent.proc.pid
            # New work while the backlog waits: one file, once shipping has begun.
            deadline = time.monotonic() + timeout
            while count_versions(agent, prefix) == 0 and time.monotonic() < deadline:
                agent.check_alive()
                time.sleep(0.05)
            time.sleep(0.5)
            new_path = os.path.join(data, "invoices", "written-during-backlog.pdf")
            with open(new_path, "wb") as f:
                f.write(b"%PDF-1.4 new invoice " + os.urandom(2000))
            t_new = time.time()
            waiting_then = n - count_versions(agent, prefix)
            new_key = os.fsencode(new_path)
            next_note = time.monotonic() + 10
            while True:
                agent.sample_rss()
                done = count_versions(agent, prefix)
                if done >= n and new_key in agent.shipped:
                    break
                agent.check_alive()
                if time.monotonic() >= deadline:
                    raise BenchError(f"small files: {n - done} of {n} not shipped within "
                                     f"{timeout:.0f} s")
                if time.monotonic() >= next_note:
                    log(f"small files: {done}/{n} shipped")
                    next_note = time.monotonic() + 10
                time.sleep(0.25)
            cpu = proc_cpu_s(pid)
            snap1 = cpu_snapshot()
            threads = proc_threads_cpu_s(pid)
            hwm = proc_status_kb(pid, "VmHWM")
        except BenchError:
            agent.stop()
            log("agent stderr (tail):\n" + agent.log_tail())
            raise
        finally:
            if perf:
                perf.stop()
            if agent.alive():
                agent.stop()
        t_last = max(v for k, v in agent.shipped.items() if k.startswith(prefix)) / 1000.0
        wall = t_last - t0
        res["custodian"] = {
            "wall_s": round(wall, 2), "files_per_s": round(n / wall, 1),
            "mb_per_s": round(nbytes / MB / wall, 2),
            "agent_cpu_s": round(cpu, 1) if cpu is not None else None,
            "agent_cpu_threads_s": threads,
            "cores_busy": round(cpu / wall, 2) if cpu else None,
            "peak_rss_mb": round(hwm / 1024.0, 1) if hwm else None,
            "background": background_load(snap0, snap1, cpu),
        }
        res["new_file_during_backlog"] = {
            "waiting_when_written": waiting_then,
            "safe_after_s": round(agent.shipped[new_key] / 1000.0 - t_new, 3)}
        log(f"small files: custodian CPU per file by thread group (CPU, context switches): "
            + thread_groups_line(threads, n))
        log(f"small files: custodian {wall:.1f} s, {n / wall:.0f} files/s; the file written "
            f"while {waiting_then} waited was safe after "
            f"{res['new_file_during_backlog']['safe_after_s']:.2f} s")
        if perf and not perf.error:
            res["profile_dso"] = perf.report("dso", 0.5)
            res["profile_sym"] = perf.report("dso,sym", 0.5)

        # --- restart over the unchanged files: the start-up scan, status during it, idle RSS
        find_s = []
        for _ in range(2):  # the second one is the warm figure
            t = time.monotonic()
            subprocess.run(["find", data, "-printf", "%s %T@\\n"], stdout=subprocess.DEVNULL,
                           check=True)
            find_s.append(time.monotonic() - t)
        agent = Agent(binary, demo)
        probe = StatusProbe(sock)
        try:
            offset = os.path.getsize(agent.log_path) if os.path.exists(agent.log_path) else 0
            t0 = time.time()
            probe.start()
            agent.start(timeout=timeout)
            deadline = time.monotonic() + timeout
            while len(log_times(agent, "(start-up)", offset)) < len(FOLDERS):
                agent.check_alive()
                if time.monotonic() >= deadline:
                    raise BenchError("small files: the start-up scan did not end in time")
                time.sleep(0.05)
            t_scanned = max(log_times(agent, "(start-up)", offset))
            probe.stop()
            time.sleep(3.0)  # idle: nothing changed, nothing to ship
            idle_kb = proc_status_kb(agent.proc.pid, "VmRSS")
            idle_anon_kb = proc_status_kb(agent.proc.pid, "RssAnon")
            queued = agent.db.execute("SELECT count(*) FROM queue").fetchone()[0]
        finally:
            probe.stop()
            if agent.alive():
                agent.stop()
        # From the first answer (the socket exists) to the end of the scan.
        first = next((t for t, ms in probe.times if ms is not None), None)
        answers = [ms for t, ms in probe.times
                   if first is not None and first <= t <= t_scanned + 0.05]
        answered = sorted(ms for ms in answers if ms is not None)
        scan_s = t_scanned - t0
        res["startup_scan"] = {
            "files": n + 1, "scan_s": round(scan_s, 3), "find_s": round(min(find_s), 3),
            "ratio": round(scan_s / min(find_s), 2) if min(find_s) > 0 else None,
            "queued_after": queued,
            "status_asked": len(answers), "status_answered": len(answered),
            "status_max_ms": round(answered[-1], 1) if answered else None,
            "status_p99_ms": round(percentile(answered, 99), 1) if answered else None,
        }
        res["idle_rss_mb"] = round(idle_kb / 1024.0, 1) if idle_kb else None
        res["idle_anon_mb"] = round(idle_anon_kb / 1024.0, 1) if idle_anon_kb else None
        log(f"small files: start-up scan {scan_s:.2f} s (find {min(find_s):.2f} s), status "
            f"max {res['startup_scan']['status_max_ms']} ms; idle RSS {res['idle_rss_mb']} MiB "
            f"(anonymous {res['idle_anon_mb']})")
    finally:
        os.rename(watched, os.path.join(staging, "small"))
    if not skip_tools:
        res["tools"] = run_tools(sdir, staging, nbytes, n, timeout, keep_outputs=True)
        res["ratios"] = {k: round(t["wall_s"] / res["custodian"]["wall_s"], 2)
                         for k, t in res["tools"].items() if t.get("mb_per_s")}
    shutil.rmtree(sdir, ignore_errors=True)
    return res


# ---------------------------------------------------------------- other writers

OTHER_WRITER_MB = 500
OTHER_WRITER_TARGET = 0.10
OTHER_WRITER_RUNS = 5
OTHER_WRITER = r"""
import os, sys, time
path, mb = sys.argv[1], int(sys.argv[2])
buf = os.urandom(1 << 20)
t = time.monotonic()
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
for i in range(mb):
    os.write(fd, buf)
    if i % 64 == 63:
        os.fsync(fd)
os.fsync(fd)
os.close(fd)
print(time.monotonic() - t)
"""


def other_writer(path, mb):
    p = subprocess.run([sys.executable, "-c", OTHER_WRITER, path, str(mb)], capture_output=True,
                       timeout=600, check=True)
    os.unlink(path)
    return float(p.stdout.decode().strip())


def run_other_writers(args, binary, work, n, timeout):
    """The clinic app writing and fsyncing OTHER_WRITER_MB on the same filesystem: its
    time with the agent idle, and while the agent ships a backlog of n small files.
    The agent makes only its own files durable (fdatasync, folder fsync), never the
    whole filesystem: the writer should barely notice it.

    One writer run is well under a second and moves by a third from one run to the next
    on this machine (the first in a fresh VM's memory is twice as slow), so the writer runs
    OTHER_WRITER_RUNS times each way, with the file system settled in between, and the
    slowdown compares the medians; busy runs count only while the backlog lasts."""
    odir = os.path.join(work, "other-writers")
    os.makedirs(odir)
    demo = os.path.join(odir, "demo")
    p = subprocess.run([binary, "init", "--demo", demo], capture_output=True, timeout=60)
    if p.returncode != 0:
        raise BenchError("custodian init --demo failed: " + p.stderr.decode(errors="replace"))
    data = os.path.join(demo, "app", "data")
    stage = os.path.join(odir, "staging")
    write_small_set(stage, n, args.seed + 13, 64, 4096, "W")
    target = os.path.join(odir, "app-writes.bin")
    os.sync()
    res = {"writer_mb": OTHER_WRITER_MB, "backlog_files": n}

    def settled_runs(count):
        times = []
        for _ in range(count):
            os.sync()
            time.sleep(0.5)
            times.append(round(other_writer(target, OTHER_WRITER_MB), 3))
        return times

    agent = Agent(binary, demo)
    try:
        agent.start(timeout=timeout)
        time.sleep(1.0)
        # Warm-up, not counted: in a VM the first touch of guest memory the host has not
        # backed yet is slow (0.9 s against 0.4 for the same 500 MB here), and only the
        # first run would pay it.
        other_writer(target, OTHER_WRITER_MB)
        log(f"other writers: {OTHER_WRITER_MB} MB written and fsynced, the agent idle, "
            f"{OTHER_WRITER_RUNS} times ...")
        idle = settled_runs(OTHER_WRITER_RUNS)
    finally:
        agent.stop()
    os.sync()
    watched = os.path.join(data, "bug-reports", "backlog")
    os.rename(stage, watched)
    warm_cache(watched)
    prefix = os.fsencode(watched + "/")
    busy, shipped = [], []
    agent = Agent(binary, demo)
    try:
        agent.start(timeout=timeout)
        deadline = time.monotonic() + timeout
        while count_versions(agent, prefix) == 0 and time.monotonic() < deadline:
            agent.check_alive()
            time.sleep(0.05)
        log(f"other writers: {OTHER_WRITER_MB} MB written and fsynced while the agent ships "
            f"{n} files, {OTHER_WRITER_RUNS} times ...")
        for _ in range(OTHER_WRITER_RUNS):
            t = round(other_writer(target, OTHER_WRITER_MB), 3)
            done = count_versions(agent, prefix)
            if done >= n:
                log("other writers: the backlog ended before the writer did (a larger one "
                    "measures better); that run is not counted")
                break
            busy.append(t)
            shipped.append(done)
            time.sleep(0.5)  # not os.sync(): that would flush the agent's work for it
    finally:
        agent.stop()
    os.sync()
    res["idle_runs_s"] = idle
    res["busy_runs_s"] = busy
    res["shipped_meanwhile"] = shipped[-1] if shipped else n
    res["idle_s"] = round(statistics.median(idle), 3)
    res["busy_s"] = round(statistics.median(busy), 3) if busy else None
    res["slowdown"] = round(res["busy_s"] / res["idle_s"] - 1.0, 3) if busy else None
    if busy:
        log(f"other writers: median {res['idle_s']} s idle ({min(idle)}..{max(idle)}), "
            f"{res['busy_s']} s during the backlog ({min(busy)}..{max(busy)}): "
            f"{res['slowdown'] * 100:+.0f} %")
    shutil.rmtree(odir, ignore_errors=True)
    return res


# ---------------------------------------------------------------- goals (issue #10)


def goal_rows(r):
    """[(figure, value, goal text, ok)] from one run's result; value None: not measured."""
    rows = []

    def add(name, value, goal, ok):
        rows.append((name, value, goal, None if value is None else bool(ok)))

    sm = r.get("small") or {}
    cs = sm.get("custodian") or {}
    sr = sm.get("ratios") or {}
    add("small local: rclone wall / custodian wall", sr.get("rclone"), ">= 1.0",
        (sr.get("rclone") or 0) >= 1.0)
    add("small local: custodian files/s", cs.get("files_per_s"), ">= 7000",
        (cs.get("files_per_s") or 0) >= 7000)
    add("small local (stretch): restic wall / custodian wall", sr.get("restic"), ">= 1.0",
        (sr.get("restic") or 0) >= 1.0)
    like = (r.get("ratios") or {}).get("like_for_like") or {}
    add("clinic like for like: custodian / restic", like.get("restic"), ">= 1.5",
        (like.get("restic") or 0) >= 1.5)
    add("clinic like for like: custodian / borg zstd,3", like.get("borg"), ">= 1.3",
        (like.get("borg") or 0) >= 1.3)
    bl = r.get("backlog") or {}
    cores = (bl["agent_cpu_s"] / bl["wall_s"]) if bl.get("agent_cpu_s") and bl.get("wall_s") else None
    add("clinic backlog: agent cores busy", round(cores, 2) if cores else None, ">= 1.8",
        (cores or 0) >= 1.8)
    arr = (r.get("ratios") or {}).get("arrival_to_safety") or {}
    for name in ("rclone", "restic", "borg"):
        add(f"arrival to safety: {name} / custodian", arr.get(name), ">= 1.2",
            (arr.get(name) or 0) >= 1.2)
    s3 = r.get("s3") or {}
    s3r = s3.get("ratios") or {}
    for name in ("rclone", "restic"):
        add(f"RGW clinic MB/s: custodian / {name}", s3r.get(name), ">= 1.2",
            (s3r.get(name) or 0) >= 1.2)
    ss = s3.get("small") or {}
    ssr = ss.get("ratios") or {}
    for name in ("rclone", "restic"):
        add(f"RGW small MB/s: custodian / {name}", ssr.get(name), ">= 1.2",
            (ssr.get(name) or 0) >= 1.2)
    c, t = ss.get("custodian") or {}, (ss.get("tools") or {}).get("rclone") or {}
    objs = round(c["files_per_s"] / t["files_per_s"], 2) \
        if c.get("files_per_s") and t.get("files_per_s") else None
    add("RGW small objects/s: custodian / rclone", objs, ">= 1.0", (objs or 0) >= 1.0)
    ow = r.get("other_writers") or {}
    add("other writer's slowdown during a backlog", ow.get("slowdown"), "<= 0.10",
        ow.get("slowdown") is not None and ow["slowdown"] <= OTHER_WRITER_TARGET)
    sc = sm.get("startup_scan") or {}
    add("start-up scan / find -printf", sc.get("ratio"), "<= 1.5", (sc.get("ratio") or 9) <= 1.5)
    add("status answer during the scan, max ms", sc.get("status_max_ms"), "<= 100",
        sc.get("status_max_ms") is not None and sc["status_max_ms"] <= STATUS_TARGET_MS
        and sc.get("status_answered") == sc.get("status_asked"))
    add("RSS idle, 100k files watched (MiB)", sm.get("idle_rss_mb"), "<= 16",
        (sm.get("idle_rss_mb") or 99) <= 16)
    peak = [x for x in (cs.get("peak_rss_mb"), bl.get("peak_rss_mb"),
                        (r.get("rss_mb") or {}).get("vmhwm")) if x is not None]
    add("RSS shipping, peak (MiB)", max(peak) if peak else None, "<= 32",
        peak and max(peak) <= 32)
    lat = r.get("latency_ms") or {}
    add("latency median (ms)", lat.get("median"), "<= 50", (lat.get("median") or 1e9) <= 50)
    add("latency p99 (ms)", lat.get("p99"), "<= 200", (lat.get("p99") or 1e9) <= 200)
    nf = sm.get("new_file_during_backlog") or {}
    add("new file during the backlog: safe after (s)", nf.get("safe_after_s"), "<= 2",
        (nf.get("safe_after_s") or 1e9) <= BACKLOG_NEW_FILE_TARGET_S)
    return rows


def print_goals(runs):
    """The goals table: per row the median of the runs and their spread (min..max)."""
    per = {}
    order = []
    for r in runs:
        for name, value, goal, _ok in goal_rows(r):
            if name not in per:
                per[name] = (goal, [])
                order.append(name)
            if value is not None:
                per[name][1].append(value)
    out = [""]
    out.append(f"goals (issue #10): median of {len(runs)} run(s), spread = min..max")
    out.append(f"   {'figure':<52}{'median':>9}  {'spread':<17}{'goal':<9}")
    passed = failed = 0
    for name in order:
        goal, vals = per[name]
        if not vals:
            out.append(f"   {name:<52}{'n/a':>9}  {'':<17}{goal:<9}not measured")
            continue
        vals.sort()
        med = median(vals)
        spread = f"{vals[0]:g}..{vals[-1]:g}" if len(vals) > 1 else ""
        ok = goal_ok(goal, med)
        passed += ok
        failed += not ok
        out.append(f"   {name:<52}{med:>9g}  {spread:<17}{goal:<9}{'PASS' if ok else 'FAIL'}")
    out.append(f"   {passed} PASS, {failed} FAIL")
    print("\n".join(out), flush=True)
    return {name: {"median": median(sorted(v)) if v else None, "values": v, "goal": g,
                   "pass": goal_ok(g, median(sorted(v))) if v else None}
            for name, (g, v) in per.items()}


def goal_ok(goal, value):
    op, num_text = goal.split()
    return value >= float(num_text) if op == ">=" else value <= float(num_text)


PERF_HINTS = (
    (("recently_deleted", "find_inode_bit", "ext4_new_inode"),
     "creating inodes: ext4 without a journal skips inodes freed in the last minute; files "
     "deleted just before the run (a previous phase, another process) make every create slow"),
    (("fdatasync", "fsync", "ext4_sync_file", "blkdev_issue_flush", "jbd2"),
     "waiting on the disk: count fdatasync/fsync calls per file (strace -c -f); durability "
     "should be paid per batch"),
    (("sqlite3",), "the catalog: statements per file, transaction size"),
    (("libzstd",), "compression: contexts reused per worker? small files compressed twice?"),
    (("libsodium", "mprotect", "munmap", "mlock"),
     "per-file secure allocations (sodium_malloc guard pages): reuse the sealer per worker"),
    (("libcrypto",), "SHA-256 of plaintext, ciphertext and read-back"),
    (("finish_task_switch", "futex", "schedule"), "thread hand-offs: batches too small?"),
)


def perf_hints(profile_sym):
    """A few lines that say what the top of a profile usually means."""
    hints = []
    for keys, text in PERF_HINTS:
        share = sum(pct for pct, what in profile_sym if any(k in what for k in keys))
        if share >= 3.0:
            hints.append((share, text))
    return [f"{share:5.1f}%  {text}" for share, text in sorted(hints, reverse=True)]


if __name__ == "__main__":
    sys.exit(main())
