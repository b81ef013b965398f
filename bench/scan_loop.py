#!/usr/bin/python3
"""The start-up scan and idle memory of bench.py's small-file phase, on their own.

    bench/scan_loop.py setup WORK [--bin B] [--files N]
        generate N small files (bench.py's set) under a demo in WORK and ship them
        (`custodian ship`), once
    bench/scan_loop.py run WORK --bin A [--bin B ...] [--runs 3]
        restart the agent over the unchanged files, the binaries alternately, and print
        per run: the start-up scan (from the fork to the last "(start-up)" line) against
        `find -printf '%s %T@'`, the agent's CPU seconds by then, the slowest `status`
        answer during the scan, idle VmRSS 3 s later; then the median and spread of each

The same measurement as bench.py's "restart over the unchanged files", repeatable on a
kept work dir in seconds, for a developer's loop on that one figure.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def setup(args):
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    demo = os.path.join(work, "demo")
    subprocess.run([args.bin[0], "init", "--demo", demo], check=True, capture_output=True)
    watched = os.path.join(demo, "app", "data", "bug-reports", "small")
    bench.write_small_set(watched, args.files, 11, 64, 4096, "S")
    conf = os.path.join(demo, "custodian.conf")
    t = time.monotonic()
    for cmd in (["scan"], ["ship", "--timeout", "3600"]):
        subprocess.run([args.bin[0], "-c", conf] + cmd, check=True, stdout=subprocess.DEVNULL,
                       stderr=open(os.path.join(work, "ship.stderr"), "ab"))
    print(f"shipped {args.files} files in {time.monotonic() - t:.1f} s")


def one_run(binary, demo):
    data = os.path.join(demo, "app", "data")
    sock = os.path.join(demo, "state", "agent.sock")
    find_s = []
    for _ in range(2):
        t = time.monotonic()
        subprocess.run(["find", data, "-printf", "%s %T@\\n"], stdout=subprocess.DEVNULL,
                       check=True)
        find_s.append(time.monotonic() - t)
    agent = bench.Agent(binary, demo)
    probe = bench.StatusProbe(sock)
    try:
        offset = os.path.getsize(agent.log_path) if os.path.exists(agent.log_path) else 0
        t0 = time.time()
        probe.start()
        agent.start(timeout=120)
        while len(bench.log_times(agent, "(start-up)", offset)) < len(bench.FOLDERS):
            agent.check_alive()
            time.sleep(0.01)
        cpu_scan = bench.proc_cpu_s(agent.proc.pid)
        t_scanned = max(bench.log_times(agent, "(start-up)", offset))
        probe.stop()
        time.sleep(3.0)
        idle_kb = bench.proc_status_kb(agent.proc.pid, "VmRSS")
        with open(f"/proc/{agent.proc.pid}/smaps_rollup") as f:
            rollup = f.read()
        queued = agent.db.execute("SELECT count(*) FROM queue").fetchone()[0]
    finally:
        probe.stop()
        if agent.alive():
            agent.stop()
    first = next((t for t, ms in probe.times if ms is not None), None)
    answered = sorted(ms for t, ms in probe.times
                      if first is not None and first <= t <= t_scanned + 0.05 and ms is not None)
    scan_s = t_scanned - t0
    return {"scan_s": scan_s, "socket_s": (first - t0) if first else None, "find_s": min(find_s), "ratio": scan_s / min(find_s),
            "cpu_s": cpu_scan, "status_max_ms": answered[-1] if answered else None,
            "idle_mib": idle_kb / 1024.0, "queued": queued, "rollup": rollup}


def run(args):
    demo = os.path.join(os.path.abspath(args.work), "demo")
    results = {b: [] for b in args.bin}
    for i in range(args.runs):
        for b in args.bin:
            r = one_run(os.path.abspath(b), demo)
            results[b].append(r)
            print(f"run {i + 1} {b}: scan {r['scan_s']:.3f} s, find {r['find_s']:.3f} s, "
                  f"ratio {r['ratio']:.2f}, socket up {r['socket_s']:.3f} s, cpu {r['cpu_s']:.2f} s, status max "
                  f"{r['status_max_ms']} ms, idle {r['idle_mib']:.1f} MiB, queued {r['queued']}",
                  flush=True)
            if args.rollup:
                print(r["rollup"])
    for b, rs in results.items():
        print(b)
        for k in ("scan_s", "socket_s", "find_s", "ratio", "cpu_s", "status_max_ms", "idle_mib"):
            v = sorted(x[k] for x in rs if x[k] is not None)
            if v:
                print(f"  {k:<14} median {statistics.median(v):8.3f}  spread {v[0]:.3f}..{v[-1]:.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("setup", "run"))
    ap.add_argument("work")
    ap.add_argument("--bin", action="append", required=True)
    ap.add_argument("--files", type=int, default=bench.SMALL_FILES)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rollup", action="store_true", help="print smaps_rollup when idle")
    args = ap.parse_args()
    return setup(args) if args.mode == "setup" else run(args)


if __name__ == "__main__":
    sys.exit(main())
