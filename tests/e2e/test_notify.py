"""
The agent tells systemd how it is doing (Type=notify, sd_notify): a datagram
socket read by the test stands in for systemd's NOTIFY_SOCKET.

- READY=1 comes after the start-up scan has queued what changed while down;
- WATCHDOG=1 comes at least every WatchdogSec/2, from the event loop;
- a loop blocked on purpose (CUSTODIAN_TEST_STALL_MS) stops the pings;
- STATUS= carries the queue depth and the oldest unshipped change's age;
- STOPPING=1 comes on SIGTERM.
"""
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import wait_for, write_file

WATCHDOG_S = 2.0  # WatchdogSec= the test pretends the unit has


class NotifySocket:
    """systemd's side of sd_notify: every datagram, with when it came."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages = []
        self.lock = threading.Lock()
        self.running = True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self.lock:
                self.messages.append((time.monotonic(), fields))

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait(self, key, timeout=60):
        """The first message carrying key, waiting for it."""
        return wait_for(lambda: next((m for m in self.snapshot() if key in m[1]), None), timeout,
                        f"{key} on the notify socket")

    def pings(self, since=0.0):
        return [t for t, f in self.snapshot() if f.get("WATCHDOG") == "1" and t >= since]

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    s = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_S * 1e6)))
    yield s
    s.close()


def status_numbers(fields):
    m = re.match(r"(\d+) files unshipped(?:, oldest (\d+) s)?; (\d+) copies waiting",
                 fields.get("STATUS", ""))
    assert m, f"STATUS= not understood: {fields}"
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3))


def test_ready_comes_after_the_startup_scan(demo, notify):
    # Written while the agent is down: only the start-up scan can find them.
    names = [os.path.join(demo.invoices, f"INV-{i}.pdf") for i in range(3)]
    for n in names:
        write_file(n, os.urandom(5000))
    demo.start_agent()
    _, ready = notify.wait("READY")
    # When READY=1 arrived, every file was already in the catalog.
    known = {bytes(p).decode() for (p,) in demo.query("SELECT path FROM paths")}
    assert set(names) <= known, (names, known)
    log = demo.log_text()
    assert log.index("rescanned") < log.index("told systemd: ready"), log
    assert ready.get("STATUS"), ready
    first_ready = [i for i, (_, f) in enumerate(notify.snapshot()) if "READY" in f]
    assert first_ready == [0], notify.snapshot()
    demo.stop_agent()


def test_watchdog_pings_from_the_loop_and_status_shows_the_queue(demo, notify, capsys):
    demo.set_option("agent", "settle_ms", "600000")
    demo.set_option("agent", "max_delay_ms", "600000")
    demo.start_agent()
    t_ready, _ = notify.wait("READY")
    # A file being written and not closed waits for settle_ms: it stays queued.
    open_file = open(os.path.join(demo.invoices, "open.pdf"), "wb")
    open_file.write(b"%PDF- partly written")
    open_file.flush()
    wait_for(lambda: status_numbers(notify.snapshot()[-1][1])[0] >= 1, 30,
             "STATUS= to show the queued file")
    time.sleep(3 * WATCHDOG_S)
    pings = notify.pings(t_ready)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    with capsys.disabled():
        print(f"\nWATCHDOG=1 pings: {len(pings)} in {pings[-1] - pings[0]:.1f} s, "
              f"largest gap {max(gaps):.2f} s (WatchdogSec={WATCHDOG_S} s)")
    assert len(pings) >= 8, pings
    assert max(gaps) <= WATCHDOG_S / 2, gaps
    depth, age, _ = status_numbers(notify.snapshot()[-1][1])
    assert depth >= 1 and age >= 2, notify.snapshot()[-1]

    # Closed, it ships at once; STATUS= follows.
    open_file.close()
    wait_for(lambda: status_numbers(notify.snapshot()[-1][1])[0] == 0, 60,
             "STATUS= to show an empty queue")
    demo.stop_agent()


def test_a_blocked_loop_stops_the_pings(demo, notify, monkeypatch):
    stall_s = 2.5 * WATCHDOG_S
    monkeypatch.setenv("CUSTODIAN_TEST_STALL_MS", str(int(stall_s * 1000)))
    demo.start_agent()
    t_ready, _ = notify.wait("READY")
    wait_for(lambda: "test hook: blocking the loop" in demo.log_text(), 30, "the stall")
    # After the stall the loop pings again: the silence was the loop's.
    stalled = time.monotonic()
    wait_for(lambda: len(notify.pings(stalled)) >= 3, 30 + stall_s, "pings after the stall")
    pings = notify.pings(t_ready)
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    print(f"largest gap between WATCHDOG=1 pings: {max(gaps):.2f} s while the loop was blocked "
          f"for {stall_s} s (WatchdogSec={WATCHDOG_S} s: systemd would have restarted it)")
    assert max(gaps) >= stall_s - 0.5 and max(gaps) > WATCHDOG_S, gaps
    demo.stop_agent()


def test_stopping_on_sigterm(demo, notify):
    demo.start_agent()
    notify.wait("READY")
    proc = demo.agent_proc
    proc.send_signal(signal.SIGTERM)
    _, stopping = notify.wait("STOPPING", timeout=30)
    assert stopping["STOPPING"] == "1" and "stopping" in stopping.get("STATUS", ""), stopping
    assert proc.wait(timeout=60) == 0, demo.log_tail()
    demo.agent_proc = None


def test_without_systemd_nothing_is_sent(demo, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    demo.start_agent()
    demo.stop_agent()
    assert "told systemd" not in demo.log_text()
