"""
libmongoc and libarchive are loaded with dlopen by the commands that need
them (agent/mongoc_lib.h, agent/archive_lib.h), never by the agent itself
(issue #10: idle memory):

- the running agent's /proc/PID/maps holds neither library nor their heavy
  dependencies (libicu, libstdc++, libmongocrypt, libxml2, libsnappy) while
  the `custodian snapshot` children it starts use both to make a snapshot;
- a library that does not load (a file that is not a library, a library
  without the symbols) makes each command that needs it fail with exit 1 and
  an error naming the soname, the Debian package and the loader's words:
  `snapshot` before it records anything, `daily` as its dump step (the files,
  the catalog copy and the manifests are still made, as for any dump
  failure); and the agent, which needs neither, starts and ships all the
  same, with its snapshot children's error in its log.

The broken libraries are put first on the loader's path with
LD_LIBRARY_PATH: the binary is the one that ships, with no test-only switch.
"""
import datetime
import hashlib
import os
import re
import shutil

import pytest

from conftest import PLAIN_BIN, wait_for, write_file
from servers import free_ports, mongo_server

pytest.importorskip("bson")
from test_daily import DATE, assert_db_failed_but_files_shipped, daily  # noqa: E402
from test_snapshots import App, snapshot_rows  # noqa: E402

# Mapped by a process linked with libmongoc or libarchive, by neither library's users here.
NOT_IN_AGENT = ("libmongoc", "libarchive", "libicu", "libstdc++", "libmongocrypt", "libxml2",
                "libsnappy")


def mapped_libraries(pid):
    """The file names of the shared objects mapped by pid."""
    names = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and ".so" in fields[5]:
                names.add(os.path.basename(fields[5].strip()))
    return names


def configure_snapshots(demo, tmp_path, port):
    """One closed period whose files are in the watched folders; snapshots polled every 3 s."""
    a = App(str(tmp_path), demo.data)
    a.period("2026-10-A", datetime.datetime(2026, 10, 1), datetime.datetime(2026, 10, 15, 20))
    a.configure(demo, port, wait_for_files_minutes=0, poll_minutes="0.05")
    return a


def test_the_agent_maps_neither_library_while_its_children_use_both(demo, tmp_path):
    port = free_ports(1)[0]
    a = configure_snapshots(demo, tmp_path, port)
    with mongo_server(tmp_path / "mongo", docs=6, seed=5, port=port,
                      billing=a.write(tmp_path / "billing.json")):
        # the optimised binary, as shipped (the ASan runtime itself maps libstdc++)
        demo.start_agent(binary=PLAIN_BIN)
        demo.wait_shipped({os.path.join(demo.data, rel): hashlib.sha256(b).hexdigest()
                           for rel, b in a.files.items()})
        # a child `custodian snapshot --pending` read the period from MongoDB and packed it
        wait_for(lambda: len(snapshot_rows(demo)) == 1, 90, "the snapshot made by the agent")
        libs = mapped_libraries(demo.agent_proc.pid)
        # what the agent does need is there: the maps were read
        assert any(n.startswith("libbson-1.0.so") for n in libs), libs
        assert any(n.startswith("libcurl.so") for n in libs), libs
        heavy = sorted(n for n in libs if n.startswith(NOT_IN_AGENT))
        assert heavy == [], f"the agent maps {heavy}"
        demo.stop_agent()


@pytest.fixture
def broken_libs(tmp_path):
    """{soname: folder} of folders with one broken library each: libmongoc not a
    library at all, libarchive a real library (zlib) without libarchive's symbols."""
    mongoc = tmp_path / "broken-mongoc"
    archive = tmp_path / "broken-archive"
    mongoc.mkdir()
    archive.mkdir()
    (mongoc / "libmongoc-1.0.so.0").write_bytes(b"not a library\n")
    zlib = [p for p in ("/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1",
                        "/lib/libz.so.1", "/usr/lib/libz.so.1") if os.path.exists(p)]
    assert zlib, "zlib (libz.so.1) not found"
    shutil.copy(zlib[0], archive / "libarchive.so.13")
    return {"libmongoc-1.0.so.0": str(mongoc), "libarchive.so.13": str(archive)}


def loading_from(demo, folder):
    """Every later run of demo (commands and the agent) loads libraries from folder first."""
    env = demo.env()
    env["LD_LIBRARY_PATH"] = folder
    demo.env = lambda: dict(env)


def test_snapshot_without_libmongoc_fails_clearly_before_recording(demo, tmp_path, broken_libs):
    configure_snapshots(demo, tmp_path, free_ports(1)[0])
    loading_from(demo, broken_libs["libmongoc-1.0.so.0"])
    p = demo.run("snapshot", "--pending", check=1)
    err = p.stderr.decode(errors="replace")
    assert "cannot load libmongoc-1.0.so.0 (Debian package libmongoc-1.0-0)" in err, err
    assert "file too short" in err, err  # dlerror()'s own words
    assert snapshot_rows(demo) == []
    assert demo.query("SELECT * FROM snapshot_job") == []
    assert not os.path.exists(os.path.join(demo.dest, "backups", "snapshots"))


def test_snapshot_without_libarchive_symbols_fails_clearly(demo, tmp_path, broken_libs):
    configure_snapshots(demo, tmp_path, free_ports(1)[0])
    loading_from(demo, broken_libs["libarchive.so.13"])
    p = demo.run("snapshot", "--pending", check=1)
    err = p.stderr.decode(errors="replace")
    assert "cannot load libarchive.so.13 (Debian package libarchive13): symbol archive_" in err, err
    assert re.search(r"undefined symbol: archive_\w+", err), err
    assert snapshot_rows(demo) == []
    assert demo.query("SELECT * FROM snapshot_job") == []


def test_daily_without_libmongoc_fails_its_dump_step_only(demo, broken_libs):
    demo.set_option("mongodb", "uri", f"mongodb://127.0.0.1:{free_ports(1)[0]}/billing")
    write_file(os.path.join(demo.invoices, "INV-1.pdf"), b"%PDF-1.7 invoice\n" * 100)
    loading_from(demo, broken_libs["libmongoc-1.0.so.0"])
    p, _ = daily(demo, DATE, check=1)
    assert_db_failed_but_files_shipped(
        demo, DATE, p.stderr, "cannot load libmongoc-1.0.so.0 (Debian package libmongoc-1.0-0)",
        "file too short")


def test_the_agent_runs_and_ships_with_both_libraries_broken(demo, tmp_path, broken_libs):
    configure_snapshots(demo, tmp_path, free_ports(1)[0])
    both = broken_libs["libmongoc-1.0.so.0"] + ":" + broken_libs["libarchive.so.13"]
    loading_from(demo, both)
    demo.start_agent()
    data = b"%PDF-1.7 shipped without libmongoc\n" * 50
    path = os.path.join(demo.invoices, "INV-2.pdf")
    write_file(path, data)
    demo.wait_shipped({path: hashlib.sha256(data).hexdigest()})
    # its snapshot children could not load libmongoc, said so, and the agent goes on
    wait_for(lambda: "cannot load libmongoc-1.0.so.0" in demo.log_text() and
             "billing-cycle snapshots FAILED" in demo.log_text(), 60,
             "the snapshot child's load error, and its failure, in the agent's log")
    assert demo.agent_proc.poll() is None
    demo.stop_agent()
