"""
A destination disk that fills up: nothing is lost, nothing is recorded as
shipped that is not there, and everything ships once there is room again.
"""
import json
import os
import subprocess

import pytest

from conftest import sha256_file, wait_for, write_file


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (tests run as root); unmounted afterwards."""
    path = tmp_path / "small-disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_destination_disk_full_loses_nothing(demo, small_disk, tmp_path):
    dest = small_disk / "custodian"
    dest.mkdir(mode=0o700)  # the operator makes it: custodian never creates a destination's root
    text = open(demo.conf).read().replace("path = destination", f"path = {dest}")
    open(demo.conf, "w").write(text)
    demo.start_agent()
    files = {}
    for i in range(8):  # 8 x 600 KB of random data: more than the disk holds
        p = os.path.join(demo.images, f"scan-{i}.jpg")
        files[p] = write_file(p, os.urandom(600_000))
    wait_for(lambda: json.loads(demo.run("--json", "status").stdout)[
        "destinations"][0]["last_error"], 60, "the disk-full error in status")
    status = json.loads(demo.run("--json", "status").stdout)
    assert "No space left on device" in status["destinations"][0]["last_error"]
    assert demo.agent_proc.poll() is None, "the agent must not exit"
    # what is recorded is really there, complete
    for object_id, size in demo.query(
            "SELECT c.object_id, c.stored_size FROM copies c"):
        assert os.path.getsize(os.path.join(dest, "objects", object_id[:2], object_id)) == size
    shipped = demo.query("SELECT count(*) FROM versions")[0][0]
    assert shipped < 8
    # room again: a bigger disk in the same place
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    demo.wait_shipped(files, timeout=120)
    demo.stop_agent()
    out = tmp_path / "r"
    for path, sha in files.items():
        demo.restore(path, str(out))
        assert sha256_file(out / os.path.basename(path)) == sha
