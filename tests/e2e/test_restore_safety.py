"""
Restore writes only where it was told to (issue 9): a hard link or symlink
planted by another user (`nobody`) receives nothing, nothing is written
outside the target and nothing restored is readable by that user; an
in-place restore never writes through a folder that became a symlink; a
kill -9 leaves nothing behind; a forged object that inflates stops at its
recorded size; a 255-byte name restores; an ambiguous escaped path is
refused; audit details stay valid JSON whatever the operator typed.
"""
import json
import os
import resource
import shutil
import subprocess
import tempfile

import pytest

from conftest import PLAIN_BIN, Demo, sha256_file, wait_for, write_file
from test_daily import hand_built_archive, write_script

NOBODY = 65534


def as_nobody(*cmd):
    return subprocess.run([str(c) for c in cmd], user=NOBODY, group=NOBODY, extra_groups=[],
                          capture_output=True)


@pytest.fixture
def open_dir():
    """A folder under /tmp that `nobody` can reach (pytest's tmp_path is root's, 0700)."""
    d = tempfile.mkdtemp(prefix="cst-restore-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def nobody_folder(parent, name):
    """parent/name, every folder made from parent down owned by nobody."""
    path = os.path.join(parent, name)
    if os.stat(parent).st_uid != NOBODY:
        first = os.path.join(parent, name.split("/")[0])
        os.mkdir(first)
        os.chown(first, NOBODY, NOBODY)
    r = as_nobody("mkdir", "-p", path)
    assert r.returncode == 0, r.stderr
    return path


def start_paused(demo, *args, binary=None):
    """custodian ARGS, held before exec so that its pid (the name old code used) is known."""
    cmd = ["sh", "-c", 'read go; exec "$@"', "sh", binary or demo.bin, "-c", demo.conf] + \
        [str(a) for a in args]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=demo.env())


def resume(p, timeout=300):
    out, err = p.communicate(b"go\n", timeout=timeout)
    return p.returncode, out, err


def ship(demo, files):
    """{path: bytes} written and shipped by the agent, then the agent stopped."""
    demo.start_agent()
    expected = {}
    for path, data in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        expected[path] = write_file(path, data)
    demo.wait_shipped(expected, timeout=180)
    demo.stop_agent()
    return expected


def today_point(demo):
    """Run the daily run now; the date of its restore point."""
    demo.run("daily", check=0, timeout=300)
    return demo.query("SELECT date FROM daily_runs ORDER BY started_at DESC LIMIT 1")[0][0]


def files_below(root):
    return sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names)


def assert_private(path):
    st = os.lstat(path)
    assert st.st_uid == 0 and st.st_mode & 0o077 == 0, (path, oct(st.st_mode), st.st_uid)
    assert as_nobody("cat", path).returncode != 0, f"nobody can read {path}"


SECRET = b"patient 4711, DOB 1950-01-01, invoice INV-2026-0001 $ 1,234.00\n" * 300


def test_planted_hard_link_receives_nothing(demo, open_dir):
    path = os.path.join(demo.invoices, "INV-secret.pdf")
    sha = ship(demo, {path: SECRET})[path]
    date = today_point(demo)
    bait = os.path.join(nobody_folder(open_dir, "home"), "bait")
    assert as_nobody("sh", "-c", f"touch {bait} && chmod 666 {bait}").returncode == 0

    # restore file --to a folder nobody owns: a link at the name the old code used
    to = nobody_folder(open_dir, "file-to")
    p = start_paused(demo, "restore", "file", path, "--to", to)
    r = as_nobody("ln", bait, os.path.join(to, f".INV-secret.pdf.custodian-restore.{p.pid}"))
    assert r.returncode == 0, r.stderr
    rc, out, err = resume(p)
    assert rc == 0, err
    assert os.path.getsize(bait) == 0, "the planted hard link received the restored file"
    assert sha256_file(os.path.join(to, "INV-secret.pdf")) == sha
    assert_private(os.path.join(to, "INV-secret.pdf"))

    # restore point: nobody made the folders and planted the link inside them
    to = nobody_folder(open_dir, "point-to")
    inside = nobody_folder(to, demo.invoices.lstrip("/"))
    p = start_paused(demo, "restore", "point", date, "--to", to)
    r = as_nobody("ln", bait, os.path.join(inside, f".INV-secret.pdf.custodian-restore.{p.pid}"))
    assert r.returncode == 0, r.stderr
    rc, out, err = resume(p)
    assert rc == 0, err
    assert os.path.getsize(bait) == 0, "the planted hard link received the restored file"
    assert sha256_file(os.path.join(inside, "INV-secret.pdf")) == sha
    assert_private(os.path.join(inside, "INV-secret.pdf"))


def test_symlink_planted_in_to_is_never_followed(demo, open_dir):
    path = os.path.join(demo.invoices, "INV-secret.pdf")
    sub = os.path.join(demo.images, "2026", "scan.png")
    sha = ship(demo, {path: SECRET, sub: os.urandom(5000)})
    date = today_point(demo)
    outside = nobody_folder(open_dir, "outside")

    # restore point: nobody replaced the first folder below --to with a symlink
    to = nobody_folder(open_dir, "point-to")
    first = demo.invoices.lstrip("/").split("/")[0]
    assert as_nobody("ln", "-s", outside, os.path.join(to, first)).returncode == 0
    p = demo.run("restore", "point", date, "--to", to, check=1)
    assert b"is a symlink" in p.stderr and b"never follows" in p.stderr, p.stderr
    assert files_below(outside) == [], "restore wrote through a planted symlink"
    assert os.listdir(outside) == []

    # a symlink deeper down, at the file's own name and at its folder's
    to = nobody_folder(open_dir, "file-to")
    assert as_nobody("ln", "-s", os.path.join(outside, "stolen.pdf"),
                     os.path.join(to, "INV-secret.pdf")).returncode == 0
    p = demo.run("restore", "file", path, "--to", to, check=1)
    assert b"exists" in p.stderr, p.stderr
    p = demo.run("restore", "file", path, "--to", to, "--force", check=0)
    assert os.path.islink(os.path.join(to, "INV-secret.pdf")) is False
    assert sha256_file(os.path.join(to, "INV-secret.pdf")) == sha[path]
    assert_private(os.path.join(to, "INV-secret.pdf"))
    assert os.listdir(outside) == []

    # restored symlinks are made, not followed, and ".." never climbs out
    link = os.path.join(demo.invoices, "up")
    os.symlink("../../..", link)
    demo.start_agent()
    wait_for(lambda: demo.query("SELECT 1 FROM versions v JOIN paths p ON p.id = v.path_id "
                                "WHERE p.path = ?", os.fsencode(link)), 60, "symlink shipped")
    demo.stop_agent()
    to = nobody_folder(open_dir, "link-to")
    demo.run("restore", "file", link, "--to", to, check=0)
    assert os.readlink(os.path.join(to, "up")) == "../../.."
    assert files_below(outside) == []


def test_in_place_restore_never_writes_through_a_folder_that_became_a_symlink(demo, tmp_path):
    path = os.path.join(demo.invoices, "2026-11", "INV-7.pdf")
    sha = ship(demo, {path: SECRET})[path]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(os.path.dirname(path))
    os.symlink(elsewhere, os.path.dirname(path))  # the app user could do this
    p = demo.run("restore", "file", path, check=1)
    assert b"is a symlink" in p.stderr, p.stderr
    assert os.listdir(elsewhere) == []
    # once the folder is a folder again, the file goes back
    os.unlink(os.path.dirname(path))
    demo.run("restore", "file", path, check=0)
    assert sha256_file(path) == sha


def test_kill9_during_restore_leaves_nothing_in_the_target(demo, tmp_path):
    path = os.path.join(demo.images, "big.tiff")
    ship(demo, {path: os.urandom(96 << 20)})
    to = tmp_path / "to"
    to.mkdir()
    for attempt in range(3):
        p = start_paused(demo, "restore", "file", path, "--to", to)
        p.stdin.write(b"go\n")
        p.stdin.flush()

        def writing_into_target():
            try:
                for fd in os.listdir(f"/proc/{p.pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{p.pid}/fd/{fd}").startswith(str(to)):
                            return True
                    except OSError:
                        pass
            except OSError:
                pass
            return p.poll() is not None
        wait_for(writing_into_target, 120, "the restore to write into the target", 0.002)
        killed = p.poll() is None
        p.kill()
        p.communicate()
        if killed:
            break
    assert killed, "the restore finished before it could be killed"
    assert os.listdir(to) == [], f"left behind: {os.listdir(to)}"


def test_forged_oversized_object_stops_at_its_size(demo, tmp_path):
    """Anyone with the public key can seal an object. One that decompresses to
    1 GiB, put where a 20-byte invoice's object is, must stop at 20 bytes."""
    path = os.path.join(demo.invoices, "small.pdf")
    ship(demo, {path: b"twenty bytes invoice"})
    _, object_id, size = demo.live_version(path)
    assert size == 20

    # The forger: a second install sealing to the same public key.
    forger = Demo(str(tmp_path / "forger"), binary=PLAIN_BIN)
    subprocess.run([PLAIN_BIN, "init", "--demo", forger.root], check=True, capture_output=True)
    shutil.copyfile(os.path.join(demo.root, "keys", "backup.pub"),
                    os.path.join(forger.root, "keys", "backup.pub"))
    # The forger has the public key only.
    text = "".join(line for line in open(forger.conf) if not line.startswith("secret_key"))
    open(forger.conf, "w").write(text)
    big = os.path.join(forger.invoices, "zeros.bin")
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    forger.run("scan", check=0)
    forger.run("ship", check=0, timeout=600)
    _, forged_id, _ = forger.live_version(big)
    forged = forger.object_path(forged_id)
    assert os.path.getsize(forged) < 1 << 20
    shutil.copyfile(forged, demo.object_path(object_id))

    to = tmp_path / "to"

    def limit_file_size():  # old code wrote the whole gigabyte before the hash check
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))
    p = subprocess.run([PLAIN_BIN, "-c", demo.conf, "restore", "file", path, "--to", str(to)],
                       capture_output=True, preexec_fn=limit_file_size, timeout=300)
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert b"integrity error: object decompresses to more than the 20 bytes expected" in \
        p.stderr, p.stderr
    assert not to.exists() or os.listdir(to) == []
    # verify --deep reads the stored bytes back before it decrypts anything: the
    # substituted object is not what was stored, and is marked damaged
    p = demo.run("verify", "--deep", check=1)
    assert b"not what was stored" in p.stdout + p.stderr, p.stdout + p.stderr


def test_255_byte_name_restores_as_file_and_point(demo, tmp_path):
    name = "n" * 251 + ".pdf"
    assert len(name.encode()) == 255
    path = os.path.join(demo.invoices, name)
    sha = ship(demo, {path: SECRET})[path]
    date = today_point(demo)
    demo.run("restore", "file", path, "--to", tmp_path / "file", check=0)
    assert sha256_file(tmp_path / "file" / name) == sha
    demo.run("restore", "point", date, "--to", tmp_path / "point", check=0)
    assert sha256_file(str(tmp_path / "point") + path) == sha
    os.unlink(path)
    demo.run("restore", "file", path, check=0)
    assert sha256_file(path) == sha


def test_ambiguous_escaped_path_is_refused_with_both_candidates(demo, tmp_path):
    literal = os.path.join(demo.bug_reports, "a\\x0ab")  # a name holding a backslash
    newline = os.path.join(demo.bug_reports, "a\nb")     # shown as a\x0ab
    shas = ship(demo, {literal: b"the literal one\n", newline: b"the newline one\n"})
    arg = os.path.join(demo.bug_reports, "a\\x0ab")
    for cmd in (["restore", "file", arg, "--to", tmp_path / "x"], ["catalog", "history", arg]):
        p = demo.run(*cmd, check=2)
        text = p.stderr.decode()
        assert "is ambiguous" in text, text
        assert "as typed it is the cataloged path " + os.path.join(
            demo.bug_reports, "a\\\\x0ab") in text, text
        assert "escaped path it is the cataloged path " + os.path.join(
            demo.bug_reports, "a\\x0ab") in text, text
        assert "--literal or --escaped" in text, text
    assert not (tmp_path / "x").exists()
    demo.run("restore", "file", arg, "--literal", "--to", tmp_path / "lit", check=0)
    assert sha256_file(tmp_path / "lit" / "a\\x0ab") == shas[literal]
    demo.run("restore", "file", arg, "--escaped", "--to", tmp_path / "esc", check=0)
    assert sha256_file(tmp_path / "esc" / "a\nb") == shas[newline]
    # the escaped form of each, given back with --escaped, is unambiguous
    p = demo.run("--json", "catalog", "history", "--escaped",
                 os.path.join(demo.bug_reports, "a\\\\x0ab"), check=0)
    assert json.loads(p.stdout)[0]["version"]["path"].endswith("a\\\\x0ab")
    # neither reading cataloged: an ordinary "no versions"
    only = os.path.join(demo.bug_reports, "c\\x0ad")
    p = demo.run("catalog", "history", only, check=1)
    assert b"no versions" in p.stderr


def test_audit_details_stay_valid_json(demo, tmp_path):
    path = os.path.join(demo.invoices, "INV-q.pdf")
    sha = ship(demo, {path: b"quoted\n"})[path]
    data, _ = hand_built_archive()
    (tmp_path / "known.archive").write_bytes(data)
    demo.set_option("mongodb", "dump_command",
                    write_script(tmp_path / "dump.sh", f"cat '{tmp_path / 'known.archive'}'\n"))
    date = today_point(demo)
    odd = tmp_path / 'to "quoted" \\ \x01 dir'
    demo.run("restore", "file", path, "--to", odd, check=0)
    assert sha256_file(odd / "INV-q.pdf") == sha
    demo.run("restore", "point", date, "--to", odd / "point", check=0)
    demo.run("restore", "db", date, "--to", odd / 'db "x".archive', check=0)
    p = demo.run("--json", "audit", "log", check=0)
    rows = json.loads(p.stdout)
    details = {r["action"]: json.loads(r["detail"]) for r in rows}
    assert details["restore_file"]["to"].endswith('INV-q.pdf')
    assert '"quoted"' in details["restore_file"]["to"]
    assert '"quoted"' in details["restore_point"]["to"]
    assert details["restore_db"]["to"].endswith('db "x".archive')
    for action, detail in demo.query("SELECT action, detail FROM audit"):
        json.loads(detail)  # every row, whoever wrote it
    demo.run("audit", "verify", check=0)
