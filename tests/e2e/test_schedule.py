"""
The agent runs the daily protection run itself: a run missed while it was
down runs soon after start-up, and a failed run is retried, loudly.
"""
import json
import socket

from conftest import wait_for


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_missed_run_catches_up_and_a_failure_is_retried(demo):
    # Installed two days ago, never run: the newest owed run is due at start-up.
    con = __import__("sqlite3").connect(demo.catalog_path)
    con.execute("UPDATE agent_state SET value = value - 2 * 86400000 WHERE key = 'installed_at'")
    con.commit()
    con.close()
    # MongoDB unreachable: the run must fail loudly, the file parts still complete.
    with open(demo.conf, "a") as f:
        f.write(f"\n[mongodb]\nuri = mongodb://127.0.0.1:{closed_port()}/billing"
                "?serverSelectionTimeoutMS=2000&connectTimeoutMS=2000\n")
    demo.start_agent()
    assert "daily run scheduled" in demo.log_text()
    wait_for(lambda: "daily run FAILED" in demo.log_text(), 90, "the daily run to fail")
    assert "next attempt in 15 minutes" in demo.log_text()
    assert demo.agent_proc.poll() is None
    status = json.loads(demo.run("--json", "status").stdout)
    run = status["last_daily_run"]
    assert run["status"] == "failed" and run["ran"] and run["db"].startswith("failed")
    assert run["files"].startswith("ok") and run["catalog"] == "ok"
    assert "mongo" in (run["db"] + (run["error"] or "")).lower()
    demo.stop_agent()
    kinds = {k for (k,) in demo.query("SELECT kind FROM artifact_copies")}
    assert {"files", "catalog", "manifest-sha256", "manifest-json", "manifest-sig"} <= kinds
    assert "db" not in kinds
