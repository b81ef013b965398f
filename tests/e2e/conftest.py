"""
Fixtures for custodian's end-to-end tests: each test gets its own demo
installation (config, keys, data folders, local destination, catalog) in a
private temporary folder, and drives the real binary.

CUSTODIAN_BIN is the ASan/UBSan build (what most tests run);
CUSTODIAN_PLAIN_BIN the optimised build (valgrind, bulk restores).
"""
import hashlib
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from servers import rgw, sshd  # noqa: F401  (session-scoped real S3 and SFTP servers)

BIN = os.environ.get("CUSTODIAN_BIN", os.path.abspath("build/asan/custodian"))
PLAIN_BIN = os.environ.get("CUSTODIAN_PLAIN_BIN", os.path.abspath("build/release/custodian"))
# A leak in the agent fails the test through its exit status.
ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=66",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wait_for(predicate, timeout, what, interval=0.1):
    """Poll predicate() until it is truthy; fail naming `what` after timeout s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Demo:
    def __init__(self, root, binary=BIN):
        self.root = root
        self.bin = binary
        self.conf = os.path.join(root, "custodian.conf")
        self.data = os.path.join(root, "app", "data")
        self.images = os.path.join(self.data, "images")
        self.invoices = os.path.join(self.data, "invoices")
        self.bug_reports = os.path.join(self.data, "bug-reports")
        self.dest = os.path.join(root, "destination")
        self.catalog_path = os.path.join(root, "state", "catalog.db")
        self.agent_proc = None
        self.agent_log = os.path.join(root, "agent.log")
        self.agent_runs = 0

    def env(self):
        env = dict(os.environ)
        env.update(ASAN_ENV)
        return env

    def run(self, *args, binary=None, check=None, input=None, timeout=120):
        """Run custodian -c CONF args...; returns CompletedProcess (bytes)."""
        cmd = [binary or self.bin, "-c", self.conf] + [
            a if isinstance(a, (bytes, str)) else str(a) for a in args]
        p = subprocess.run(cmd, capture_output=True, env=self.env(), input=input,
                           timeout=timeout)
        if check is not None:
            assert p.returncode == check, (
                f"{cmd} exited {p.returncode}, expected {check}\n"
                f"stdout: {p.stdout[-2000:]!r}\nstderr: {p.stderr[-4000:]!r}")
        return p

    def set_option(self, section, key, value):
        """Replace key's value in [section] of the demo config."""
        lines = open(self.conf).read().splitlines()
        out, current, done = [], None, False
        for line in lines:
            s = line.strip()
            if s.startswith("["):
                if current == section and not done:
                    out.append(f"{key} = {value}")
                    done = True
                current = s.strip("[]")
            elif current == section and s.split("=")[0].strip() == key:
                out.append(f"{key} = {value}")
                done = True
                continue
            out.append(line)
        if not done:
            out.append(f"[{section}]" if current != section else "")
            out.append(f"{key} = {value}")
        open(self.conf, "w").write("\n".join(out) + "\n")

    # --- the agent ---
    def start_agent(self, binary=None, wrapper=None):
        assert self.agent_proc is None
        self.agent_runs += 1
        log = open(self.agent_log, "ab")
        cmd = (wrapper or []) + [binary or self.bin, "-c", self.conf, "agent"]
        self.agent_proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=self.env())
        log.close()
        # Started means: the start-up scan is done and watches are in place.
        start_lines = self.agent_runs
        wait_for(lambda: self.log_text().count("agent started") >= start_lines or
                 self.agent_proc.poll() is not None, 60, "agent start")
        assert self.agent_proc.poll() is None, f"agent exited at start:\n{self.log_text()}"
        return self.agent_proc

    def stop_agent(self, expect=0, timeout=60):
        p, self.agent_proc = self.agent_proc, None
        if p is None:
            return None
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError(f"agent did not stop on SIGTERM:\n{self.log_tail()}")
        if expect is not None:
            assert rc == expect, f"agent exited {rc}:\n{self.log_tail()}"
        return rc

    def kill_agent(self):
        p, self.agent_proc = self.agent_proc, None
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)

    def log_text(self):
        try:
            return open(self.agent_log, "rb").read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    # --- the catalog, read directly as an auditor would ---
    def db(self):
        c = sqlite3.connect(f"file:{self.catalog_path}?mode=ro", uri=True, timeout=30)
        return c

    def query(self, sql, *args):
        c = self.db()
        try:
            return c.execute(sql, args).fetchall()
        finally:
            c.close()

    # A path's newest version is the one first seen last, as the catalog orders them: a
    # version sealed earlier can be recorded later (its first copy made later), so the
    # largest id is not always the newest.
    NEWEST = ("(SELECT nv.id FROM versions nv WHERE nv.path_id = p.id "
              "ORDER BY nv.first_seen DESC, nv.id DESC LIMIT 1)")

    def live_version(self, path):
        """(sha256 hex, object id, size) of path's newest live version, or None."""
        p = os.fsencode(path)
        rows = self.query(
            "SELECT hex(v.sha256), v.object_id, v.size, v.deleted_at FROM versions v "
            "JOIN paths p ON p.id = v.path_id WHERE p.path = ? AND v.id = " + self.NEWEST, p)
        if not rows or rows[0][3] is not None:
            return None
        return rows[0][0].lower() if rows[0][0] else None, rows[0][1], rows[0][2]

    def live_paths(self, folder=None):
        """The paths (bytes) whose newest version is live, at or below folder if given."""
        sql = ("SELECT p.path FROM paths p JOIN versions v ON v.id = " + self.NEWEST +
               " WHERE v.deleted_at IS NULL")
        if folder is None:
            return {bytes(r[0]) for r in self.query(sql)}
        return {bytes(r[0]) for r in self.query(sql + " AND p.path >= ? AND p.path < ?",
                                                os.fsencode(folder + "/"),
                                                os.fsencode(folder + "0"))}

    def shipped(self, path, sha=None):
        v = self.live_version(path)
        return v is not None and (sha is None or v[0] == sha)

    def wait_shipped(self, expected, timeout=120):
        """expected: {path: sha256hex}. Waits until each path's live version has that hash."""
        def missing():
            shipped = {}
            for path, sha, deleted in self.query(
                    "SELECT p.path, lower(hex(v.sha256)), v.deleted_at FROM versions v JOIN "
                    "paths p ON p.id = v.path_id ORDER BY v.id"):
                shipped[bytes(path)] = (sha, deleted)
            left = []
            for p, s in expected.items():
                sha, deleted = shipped.get(os.fsencode(p), (None, 1))
                if sha != s or deleted is not None:
                    left.append(p)
            return left
        deadline = time.monotonic() + timeout
        while True:
            try:
                left = missing()
            except sqlite3.OperationalError:
                left = list(expected)
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(left)} of {len(expected)} files not shipped after {timeout}s, "
                    f"e.g. {left[:3]}\nagent log:\n{self.log_tail()}")
            if self.agent_proc is not None and self.agent_proc.poll() is not None:
                raise AssertionError(f"agent died:\n{self.log_tail()}")
            time.sleep(0.2)

    def status(self):
        """(exit status, the --json document) of `custodian status`."""
        import json
        p = self.run("--json", "status")
        return p.returncode, json.loads(p.stdout)

    def wait_status(self, ok, timeout=60, what=None):
        """Poll status until its verdict is ok (True) or failing (False); the document."""
        want = "ok" if ok else "failing"
        last = {}

        def check():
            nonlocal last
            rc, last = self.status()
            assert (rc == 0) == (last["verdict"] == "ok"), (rc, last)
            return last if last["verdict"] == want else None
        try:
            return wait_for(check, timeout, what or f"status {want}")
        except AssertionError as e:
            raise AssertionError(f"{e}\nlast status: {last}\nagent log:\n{self.log_tail()}")

    def add_local_destination(self, name, path=None):
        """Append a [destination NAME] of type local; returns its folder."""
        path = path or os.path.join(self.root, name)
        os.makedirs(path, mode=0o700, exist_ok=True)
        with open(self.conf, "a") as f:
            f.write(f"\n[destination {name}]\ntype = local\nrole = replica\npath = {path}\n")
        return path

    def object_path(self, object_id):
        return os.path.join(self.dest, "objects", object_id[:2], object_id)

    def restore(self, path, to_dir, binary=None, check=0, extra=()):
        return self.run("restore", "file", path, "--to", to_dir, *extra, binary=binary,
                        check=check)


@pytest.fixture
def demo(tmp_path):
    root = str(tmp_path / "demo")
    p = subprocess.run([BIN, "init", "--demo", root], capture_output=True, env={
        **os.environ, **ASAN_ENV})
    assert p.returncode == 0, p.stderr
    d = Demo(root)
    # The daily run is scheduled at daily_at: keep it half a day away from any test
    # (tests of the daily run start it by hand or set it up themselves).
    import datetime
    import zoneinfo
    far = datetime.datetime.now(zoneinfo.ZoneInfo("America/New_York")) + datetime.timedelta(
        hours=12)
    d.set_option("agent", "daily_at", far.strftime("%H:%M"))
    yield d
    if d.agent_proc is not None:
        d.agent_proc.kill()
        d.agent_proc.wait()


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()
