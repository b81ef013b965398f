"""
[alerts] command (agent/alerts.c): run without a shell for each event an
operator must act on, once when it begins and once when it clears, with the
event in CUSTODIAN_ALERT_* and as JSON on stdin; each alert is an audit row.
"""
import json
import os
import shutil

from conftest import wait_for, write_file
from test_replication import add_second_local_destination, dest_status

RECORDER = """\
import json, os, sys
event = {"env": {k: v for k, v in os.environ.items() if k.startswith("CUSTODIAN_ALERT_")},
         "stdin": json.load(sys.stdin), "argv": sys.argv[1:]}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(event) + "\\n")
"""


def received(log):
    try:
        return [json.loads(line) for line in open(log)]
    except FileNotFoundError:
        return []


def test_a_destination_outage_is_told_once_and_its_recovery_once(demo, tmp_path):
    script, log = tmp_path / "alert.py", tmp_path / "alert log.jsonl"
    script.write_text(RECORDER)
    # a path with a space: the words are quoted as in dump_command, never given to a shell
    demo.set_option("alerts", "command", f'/usr/bin/python3 {script} "{log}"')
    demo.set_option("alerts", "after_minutes", "0")
    usb = add_second_local_destination(demo)
    demo.start_agent()
    first = os.path.join(demo.invoices, "first.pdf")
    demo.wait_shipped({first: write_file(first, os.urandom(5000))})
    wait_for(lambda: dest_status(demo, "usb")["copies"] == 1, 30, "copy on usb")

    def usb_events():
        return [e for e in received(log) if e["env"].get("CUSTODIAN_ALERT_KIND")
                == "destination_failing" and e["env"].get("CUSTODIAN_ALERT_SUBJECT") == "usb"]

    # the usb disk fails: every write to it fails
    shutil.move(os.path.join(usb, "objects"), os.path.join(usb, "objects.saved"))
    open(os.path.join(usb, "objects"), "w").close()
    for i in range(3):
        write_file(os.path.join(demo.invoices, f"during-{i}.pdf"), os.urandom(3000 + i))
    wait_for(lambda: usb_events(), 90, "the alert command told of the outage")
    (fired,) = usb_events()
    assert fired["env"]["CUSTODIAN_ALERT_EVENT"] == "firing", fired
    assert fired["stdin"]["event"] == "firing" and fired["stdin"]["kind"] == "destination_failing"
    assert fired["stdin"]["subject"] == "usb" and "usb is failing" in fired["stdin"]["message"]
    assert fired["argv"] == [str(log)]
    # still failing a while later (several evaluations every 15 s): not told again
    wait_for(lambda: dest_status(demo, "usb")["backlog"] >= 3, 60, "usb backlog")
    assert len(usb_events()) == 1

    # the disk comes back: the backlog drains, and the command hears it once
    os.unlink(os.path.join(usb, "objects"))
    shutil.move(os.path.join(usb, "objects.saved"), os.path.join(usb, "objects"))
    wait_for(lambda: dest_status(demo, "usb")["backlog"] == 0, 360, "usb to catch up")
    wait_for(lambda: len(usb_events()) == 2, 60, "the alert command told of the recovery")
    cleared = usb_events()[1]
    assert cleared["env"]["CUSTODIAN_ALERT_EVENT"] == "cleared"
    assert cleared["stdin"]["event"] == "cleared"
    assert cleared["env"]["CUSTODIAN_ALERT_KEY"] == fired["env"]["CUSTODIAN_ALERT_KEY"]
    # two more evaluations: nothing more
    before = len(received(log))
    wait_for(lambda: demo.query("SELECT count(*) FROM alerts WHERE key LIKE "
                                "'destination_failing:usb%'") == [(0,)], 30,
             "the cleared alert forgotten")
    demo.stop_agent()
    assert len(usb_events()) == 2 and len(received(log)) >= before
    # each alert is an audit row
    rows = [json.loads(d) for (d,) in demo.query(
        "SELECT detail FROM audit WHERE action = 'alert' ORDER BY id")]
    usb_rows = [r for r in rows if r.get("kind") == "destination_failing"
                and r.get("subject") == "usb"]
    assert [r["event"] for r in usb_rows] == ["firing", "cleared"], usb_rows
    demo.run("audit", "verify", check=0)
