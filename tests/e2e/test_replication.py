"""
Every object goes to every destination; each copy is its own queue entry, so
one destination that is down holds up no other and catches up later.
"""
import json
import os
import shutil

from conftest import sha256_file, wait_for, write_file


def add_second_local_destination(demo, name="usb"):
    path = os.path.join(demo.root, name)
    # The operator makes the folder: custodian never creates a destination's root (a missing
    # one is a disk that is not mounted); it marks the empty folder at first use.
    os.makedirs(path, mode=0o700)
    with open(demo.conf, "a") as f:
        f.write(f"\n[destination {name}]\ntype = local\nrole = replica\npath = {name}\n")
    return path


def dest_status(demo, name):
    status = json.loads(demo.run("--json", "status").stdout)
    return next(d for d in status["destinations"] if d["name"] == name)


def test_one_destination_down_holds_up_no_other(demo, tmp_path):
    usb = add_second_local_destination(demo)
    demo.start_agent()
    first = os.path.join(demo.invoices, "first.pdf")
    demo.wait_shipped({first: write_file(first, os.urandom(5000))})
    wait_for(lambda: dest_status(demo, "usb")["copies"] == 1, 30, "copy on usb")

    # The usb disk "fails": its objects folder becomes a file, so every write fails.
    shutil.move(os.path.join(usb, "objects"), os.path.join(usb, "objects.saved"))
    open(os.path.join(usb, "objects"), "w").close()
    files = {}
    for i in range(20):
        p = os.path.join(demo.invoices, f"during-outage-{i}.pdf")
        files[p] = write_file(p, os.urandom(3000 + i))
    # Shipped (restorable from "local") although usb is down.
    demo.wait_shipped(files, timeout=60)
    wait_for(lambda: dest_status(demo, "usb")["backlog"] == 20, 30, "usb backlog")
    usb_state = dest_status(demo, "usb")
    assert usb_state["last_error"] and "usb" in demo.log_text()
    assert dest_status(demo, "local")["backlog"] == 0
    assert demo.agent_proc.poll() is None

    # The disk comes back: the backlog drains by itself.
    os.unlink(os.path.join(usb, "objects"))
    shutil.move(os.path.join(usb, "objects.saved"), os.path.join(usb, "objects"))
    wait_for(lambda: dest_status(demo, "usb")["backlog"] == 0, 120, "usb to catch up")
    demo.stop_agent()
    assert dest_status(demo, "usb")["copies"] == 21
    # every version once, and restorable from either destination alone
    assert demo.query("SELECT count(*) FROM versions")[0][0] == 21
    assert demo.query("SELECT count(*) FROM pending_versions")[0][0] == 0
    assert os.listdir(os.path.join(demo.root, "state", "spool")) == []
    for dest in ("local", "usb"):
        out = tmp_path / dest
        for path, sha in files.items():
            demo.run("restore", "file", path, "--to", str(out), "--from", dest, check=0)
            assert sha256_file(out / os.path.basename(path)) == sha


def test_restore_falls_back_to_another_destination(demo, tmp_path):
    add_second_local_destination(demo)
    demo.start_agent()
    path = os.path.join(demo.images, "scan.jpg")
    sha = write_file(path, os.urandom(40_000))
    demo.wait_shipped({path: sha})
    wait_for(lambda: dest_status(demo, "usb")["copies"] == 1, 30, "copy on usb")
    demo.stop_agent()
    _, object_id, _ = demo.live_version(path)
    damaged = demo.object_path(object_id)  # the first destination's copy
    data = bytearray(open(damaged, "rb").read())
    data[100] ^= 0xff
    open(damaged, "wb").write(bytes(data))
    p = demo.run("restore", "file", path, "--to", str(tmp_path / "r"), check=0)
    assert b"integrity error" in p.stderr and b"trying the next destination" in p.stderr
    assert sha256_file(tmp_path / "r" / "scan.jpg") == sha
    p = demo.run("restore", "file", path, "--to", str(tmp_path / "r2"), "--from", "local",
                 check=1)
    assert b"integrity error" in p.stderr
