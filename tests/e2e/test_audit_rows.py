"""
§7: every backup, restore, verify, prune, hold, snapshot and restore-test
operation is an audit row naming the Unix user, the command line and the
outcome; a failed operation that wrote no row of its own still leaves one.
"""
import json
import os
import pwd

from conftest import write_file
from test_daily import today


def newest(demo, action):
    rows = demo.query("SELECT actor, detail FROM audit WHERE action = ? ORDER BY id DESC LIMIT 1",
                      action)
    assert rows, f"no audit row {action}"
    return rows[0][0], json.loads(rows[0][1])


def test_every_operation_names_user_command_and_outcome(demo, tmp_path):
    me = pwd.getpwuid(os.geteuid()).pw_name
    inv = os.path.join(demo.invoices, "INV-1.pdf")
    write_file(inv, os.urandom(3000))
    demo.run("scan", check=0)
    demo.run("ship", "--timeout", "60", check=0)
    demo.run("daily", check=0, timeout=300)
    demo.run("restore", "file", inv, "--to", str(tmp_path / "r"), check=0)
    demo.run("verify", "--manifest", today(), check=0)
    demo.run("hold", "add", "--path", demo.invoices, "--reason", "audit 2026", check=0)
    (hold_id,) = demo.query("SELECT max(id) FROM holds")[0]
    demo.run("hold", "release", str(hold_id), "--reason", "closed", check=0)
    demo.run("prune", "--confirm", check=0, timeout=300)
    # (the restore test runs prune --check too, which is its own audit row)
    demo.run("restore-test", check=0, timeout=300)
    demo.run("prune", "--check", check=0, timeout=300)
    # a failed operation: the file never existed
    demo.run("restore", "file", os.path.join(demo.invoices, "nope.pdf"), "--to",
             str(tmp_path / "r2"), check=1)

    expect = {
        "daily_run": ("daily", "ok"),
        "restore_file": ("restore file", None),
        "verify_manifest": ("verify --manifest", None),
        "hold_add": ("hold add", "done"),
        "hold_release": ("hold release", "done"),
        "prune": ("prune --confirm", "ok"),
        "prune_check": ("prune --check", "passed"),
        "restore_test": ("restore-test", "passed"),
    }
    for action, (words, outcome) in expect.items():
        _, d = newest(demo, action)
        assert d["user"] == me, (action, d)
        assert words in d["command"], (action, d)
        assert d.get("outcome"), (action, d)
        if outcome:
            assert d["outcome"] == outcome, (action, d)
    # the failed restore: a row of its own, naming the failure
    _, d = newest(demo, "restore_file")
    assert d["outcome"] == "failed" and "nope.pdf" in d["command"], d
    assert d.get("error"), d
    demo.run("audit", "verify", check=0)
