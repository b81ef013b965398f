"""
Files dropped into the watched folders while the agent runs are shipped and
restore byte for byte; a slow writer ships once; tampering is refused.
"""
import os
import random
import time

from conftest import PLAIN_BIN, sha256_file, wait_for, write_file


def mixed_content(rng, size):
    """Half incompressible (images), half text-like (invoices, reports)."""
    if rng.random() < 0.5:
        return os.urandom(size)
    line = b"INV-%06d patient visit 97110 units 4 amount 123.45\n" % rng.randrange(10**6)
    return (line * (size // len(line) + 1))[:size]


def test_300_mixed_files_restore_identical(demo, tmp_path):
    rng = random.Random(300)
    demo.start_agent()
    folders = [demo.images, demo.invoices, demo.bug_reports]
    sizes = [rng.randint(1024, 512 * 1024) for _ in range(280)]
    sizes += [rng.randint(1 << 20, 20 << 20) for _ in range(19)] + [20 << 20]
    expected = {}
    for i, size in enumerate(sizes):
        folder = folders[i % 3]
        path = os.path.join(folder, f"file-{i:03d}.bin")
        expected[path] = write_file(path, mixed_content(rng, size))
    demo.wait_shipped(expected, timeout=300)
    demo.stop_agent()

    # Every file restores byte-identical (through the real restore path).
    out = tmp_path / "restored"
    for path, sha in expected.items():
        to = out / os.path.basename(os.path.dirname(path))
        demo.restore(path, str(to), binary=PLAIN_BIN)
        assert sha256_file(to / os.path.basename(path)) == sha, path
    # Some content compressed, some stored raw; every object is encrypted.
    compressed = demo.query("SELECT compressed, count(*) FROM objects GROUP BY compressed")
    assert dict(compressed).get(0) and dict(compressed).get(1)
    assert len(demo.query("SELECT id FROM versions")) == 300
    audit = demo.run("audit", "verify", check=0)
    assert b"intact" in audit.stdout


def test_slow_writer_ships_once_complete(demo):
    demo.start_agent()
    path = os.path.join(demo.invoices, "slow.pdf")
    chunks = [os.urandom(4096) for _ in range(10)]
    with open(path, "wb") as f:
        for chunk in chunks:  # 10 writes over ~3 s, each well inside settle_ms
            f.write(chunk)
            f.flush()
            time.sleep(0.3)
    whole = b"".join(chunks)
    import hashlib
    sha = hashlib.sha256(whole).hexdigest()
    demo.wait_shipped({path: sha}, timeout=60)
    time.sleep(2)  # settle_ms has passed: a second version would be there by now
    rows = demo.query("SELECT v.size, lower(hex(v.sha256)) FROM versions v JOIN paths p "
                      "ON p.id = v.path_id WHERE p.path = ?", os.fsencode(path))
    assert rows == [(len(whole), sha)], rows
    assert demo.log_text().count("shipped path=" + path) == 1
    demo.stop_agent()


def test_tampered_object_refused_and_no_output(demo, tmp_path):
    demo.start_agent()
    path = os.path.join(demo.invoices, "INV-1.pdf")
    sha = write_file(path, os.urandom(100_000))
    demo.wait_shipped({path: sha})
    demo.stop_agent()
    _, object_id, _ = demo.live_version(path)
    obj = demo.object_path(object_id)
    data = bytearray(open(obj, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(obj, "wb").write(bytes(data))

    out = tmp_path / "out"
    p = demo.restore(path, str(out), check=1)
    assert b"integrity error" in p.stderr, p.stderr
    assert not out.exists() or os.listdir(out) == []
    # --stdout prints nothing that failed verification
    p = demo.run("restore", "file", path, "--stdout", check=1)
    assert p.stdout == b"" and b"integrity error" in p.stderr


def test_restore_never_overwrites_without_force(demo, tmp_path):
    demo.start_agent()
    path = os.path.join(demo.invoices, "INV-2.pdf")
    sha = write_file(path, b"original invoice\n")
    demo.wait_shipped({path: sha})
    demo.stop_agent()
    write_file(path, b"someone changed it\n")
    p = demo.run("restore", "file", path, check=1)
    assert b"--force" in p.stderr
    assert open(path, "rb").read() == b"someone changed it\n"
    demo.run("restore", "file", path, "--force", check=0)
    assert open(path, "rb").read() == b"original invoice\n"
    # stdout restore
    p = demo.run("restore", "file", path, "--stdout", check=0)
    assert p.stdout == b"original invoice\n"


def test_restore_as_it_was_at_a_time(demo, tmp_path):
    import datetime
    import time as _time
    demo.start_agent()
    path = os.path.join(demo.invoices, "INV-3.pdf")
    v1 = write_file(path, b"first issue of the invoice\n")
    demo.wait_shipped({path: v1})
    _time.sleep(0.05)
    between = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    _time.sleep(0.05)
    v2 = write_file(path, b"corrected invoice, second issue\n")
    demo.wait_shipped({path: v2})
    demo.stop_agent()
    p = demo.run("restore", "file", path, "--at", between, "--stdout", check=0)
    assert p.stdout == b"first issue of the invoice\n"
    p = demo.run("restore", "file", path, "--stdout", check=0)
    assert p.stdout == b"corrected invoice, second issue\n"
    ls = demo.run("--json", "catalog", "ls", demo.invoices, "--at", between, check=0).stdout
    assert b'"size":27' in ls and b"INV-3.pdf" in ls
    p = demo.run("restore", "file", path, "--at", "2001-01-01", "--stdout", check=1)
    assert b"no version" in p.stderr
    hist = demo.run("--json", "catalog", "history", path, check=0).stdout
    assert hist.count(b'"version":{') == 2
