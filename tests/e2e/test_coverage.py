"""
Coverage is an invariant: every configured destination holds every retained
object, whenever it was added and whatever happened to a copy since. A
destination added to a running install receives everything already shipped
(with no new file written); a copy found damaged or deleted by rolling
verification is marked, never used again, and copied anew from a good
source; a destination removed from the config releases its queue. Real
servers for the remote cases (RGW over HTTPS, sshd).
"""
import hashlib
import os

from conftest import sha256_file, wait_for, write_file
from test_remote import objects_on_sftp, s3_section, sftp_section


def ship_files(demo, n, prefix="c"):
    files = {}
    for i in range(n):
        folder = (demo.images, demo.invoices, demo.bug_reports)[i % 3]
        p = os.path.join(folder, f"{prefix}{i:03d}.bin")
        files[p] = write_file(p, os.urandom(500 + i))
    demo.wait_shipped(files, timeout=180)
    return files


def copies_on(demo, dest):
    return {o for (o,) in demo.query(
        "SELECT object_id FROM copies WHERE dest = ? AND damaged_at IS NULL", dest)}


def all_objects(demo):
    return {o for (o,) in demo.query("SELECT id FROM objects")}


def add_and_wait(demo, dest_text, name, files):
    """With files shipped to the first destination only, add `name` and restart: it must
    receive every existing object without a single new file being written."""
    demo.stop_agent()
    with open(demo.conf, "a") as f:
        f.write(dest_text)
    demo.start_agent()
    wanted = all_objects(demo)
    assert len(wanted) == len(files)
    # status says what is missing until it is there
    wait_for(lambda: copies_on(demo, name) == wanted, 180, f"every object on {name}")
    assert "lacks" in demo.log_text()
    st = demo.wait_status(True, 60)
    d = next(d for d in st["destinations"] if d["name"] == name)
    assert d["copies"] == len(files) and d["objects_lacking"] == 0 and d["backlog"] == 0, d
    return wanted


def test_local_destination_added_later_receives_existing_files(demo, tmp_path):
    demo.start_agent()
    files = ship_files(demo, 300)
    usb = os.path.join(demo.root, "usb")
    os.makedirs(usb, mode=0o700)
    wanted = add_and_wait(demo, f"\n[destination usb]\ntype = local\npath = {usb}\n", "usb",
                          files)
    on_disk = {f for _, _, fs in os.walk(os.path.join(usb, "objects")) for f in fs}
    assert on_disk == wanted  # each exactly once, nothing else
    demo.stop_agent()
    # every file restores from the new destination alone
    for path, sha in list(files.items())[:30]:
        demo.restore(path, str(tmp_path / "r"), extra=("--from", "usb", "--force"))
        assert sha256_file(tmp_path / "r" / os.path.basename(path)) == sha
    demo.run("verify", "--from", "usb", check=0)


def test_destination_added_later_is_reported_lacking_until_its_gap_closes(demo):
    """The agent checks coverage after its start-up scan, not before: from the first answer
    on, `status` still reports the new destination's whole gap, and it closes."""
    demo.start_agent()
    files = ship_files(demo, 12, "g")
    demo.stop_agent()
    usb = demo.add_local_destination("usb")
    # usb fails every write (its objects folder is a file) until it is repaired below
    open(os.path.join(usb, "objects"), "w").close()
    demo.start_agent()
    wanted = all_objects(demo)
    assert len(wanted) == len(files)

    def gap_reported():
        rc, st = demo.status()
        d = next(d for d in st["destinations"] if d["name"] == "usb")
        # a problem while nothing copies them yet or the copies fail; a note in between
        said = [p for p in st["problems"] + st["notes"] if "destination usb" in p]
        assert d["objects_lacking"] == 12 and said, (rc, d, st["problems"], st["notes"])
        return demo.query("SELECT count(*) FROM copy_queue WHERE dest = 'usb'")[0][0] == 12
    wait_for(gap_reported, 60, "copies to usb queued, the gap reported meanwhile")
    gap_reported()
    wait_for(lambda: "destination usb lacks 12 objects; copying them" in demo.log_text(), 30,
             "the coverage check's log line")
    os.remove(os.path.join(usb, "objects"))
    wait_for(lambda: copies_on(demo, "usb") == wanted, 120, "every object on usb")
    st = demo.wait_status(True, 60)
    d = next(d for d in st["destinations"] if d["name"] == "usb")
    assert d["copies"] == 12 and d["objects_lacking"] == 0 and d["backlog"] == 0, d


def test_s3_destination_added_later_receives_existing_files(demo, rgw, tmp_path):
    demo.start_agent()
    files = ship_files(demo, 300, "s")
    bucket = rgw.new_bucket("later")
    wanted = add_and_wait(demo, s3_section(rgw, bucket, role="replica"), "s3", files)
    listed = {o["key"].rsplit("/", 1)[-1] for o in rgw.list_objects(bucket, "objects/")}
    assert listed == wanted
    demo.stop_agent()
    path, sha = next(iter(files.items()))
    demo.restore(path, str(tmp_path / "r"), extra=("--from", "s3"))
    assert sha256_file(tmp_path / "r" / os.path.basename(path)) == sha


def test_sftp_destination_added_later_receives_existing_files(demo, sshd, tmp_path):
    demo.start_agent()
    files = ship_files(demo, 300, "f")
    root, url = sshd.new_dir("later")
    wanted = add_and_wait(demo, sftp_section(sshd, url), "sftp", files)
    assert objects_on_sftp(root) == wanted
    demo.stop_agent()
    path, sha = next(iter(files.items()))
    demo.restore(path, str(tmp_path / "r"), extra=("--from", "sftp"))
    assert sha256_file(tmp_path / "r" / os.path.basename(path)) == sha


def test_rolling_verification_repairs_a_corrupted_and_a_deleted_copy(demo, tmp_path):
    usb = demo.add_local_destination("usb")
    demo.start_agent()
    files = ship_files(demo, 20, "v")
    wait_for(lambda: copies_on(demo, "usb") == all_objects(demo), 60, "copies on usb")
    demo.stop_agent()
    objects = sorted(all_objects(demo))
    corrupt, gone = objects[3], objects[7]
    good_usb_copy = open(os.path.join(usb, "objects", corrupt[:2], corrupt), "rb").read()
    p = demo.object_path(corrupt)
    data = bytearray(open(p, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(p, "wb").write(bytes(data))
    os.unlink(os.path.join(usb, "objects", gone[:2], gone))

    # Every copy is re-read within the first rounds.
    demo.set_option("verify", "per_day", "100000000")
    demo.start_agent()
    wait_for(lambda: len(demo.query("SELECT id FROM audit WHERE action = 'copy_damaged'")) >= 2,
             90, "rolling verification to find both damaged copies")
    details = " ".join(d for (d,) in demo.query(
        "SELECT detail FROM audit WHERE action = 'copy_damaged'"))
    assert corrupt in details and gone in details
    # repaired, with no operator action: the corrupted one from usb's good ciphertext,
    # the deleted one from local's
    wait_for(lambda: demo.query("SELECT count(*) FROM copies WHERE damaged_at IS NOT NULL")[0][0]
             == 0, 90, "damaged copies repaired")
    assert open(p, "rb").read() == good_usb_copy  # the very bytes of the good copy
    assert os.path.exists(os.path.join(usb, "objects", gone[:2], gone))
    assert "from destination usb's copy" in demo.log_text()
    demo.wait_status(True, 30)
    demo.stop_agent()
    p = demo.run("verify", "--deep", check=0)
    assert b"checked 40 copies (fetched, decrypted and hashed): 0 failed" in p.stdout, p.stdout
    for path, sha in files.items():
        for dest in ("local", "usb"):
            demo.restore(path, str(tmp_path / dest), extra=("--from", dest, "--force"))
            assert sha256_file(tmp_path / dest / os.path.basename(path)) == sha


def test_damaged_copy_is_never_used_for_dedup(demo):
    """Saving the same content again must not count a damaged copy as shipped."""
    demo.start_agent()
    a = os.path.join(demo.invoices, "a.pdf")
    data = os.urandom(4000)
    demo.wait_shipped({a: write_file(a, data)})
    demo.stop_agent()
    (obj,) = all_objects(demo)
    os.unlink(demo.object_path(obj))
    demo.run("verify", check=1)  # proves it missing: marked damaged
    demo.start_agent()
    b = os.path.join(demo.images, "b.pdf")
    write_file(b, data)
    wait_for(lambda: os.path.exists(demo.object_path(obj)), 60, "the object copied again")
    demo.wait_shipped({b: hashlib.sha256(data).hexdigest()})
    demo.wait_status(True, 30)
    demo.stop_agent()


def test_removed_destination_releases_its_queue(demo):
    usb = demo.add_local_destination("usb")
    # usb fails every write (its objects folder is a file): its copies pile up
    open(os.path.join(usb, "objects"), "w").close()
    demo.start_agent()
    files = ship_files(demo, 12, "r")
    wait_for(lambda: demo.query("SELECT count(*) FROM copy_queue WHERE dest = 'usb'")[0][0]
             == 12, 60, "copies to usb queued")
    demo.wait_status(False, 60)
    demo.stop_agent()
    text = open(demo.conf).read()
    open(demo.conf, "w").write(text[:text.index("\n[destination usb]")] + "\n")
    demo.start_agent()
    assert demo.query("SELECT count(*) FROM copy_queue")[0][0] == 0
    assert "destination usb was removed from the config" in demo.log_text()
    st = demo.wait_status(True, 30)
    assert any("destination usb removed from the config: 12 copies dropped" in n
               for n in st["notes"]), st["notes"]
    audit = demo.query("SELECT detail FROM audit WHERE action = 'dest_removed'")
    assert len(audit) == 1 and '"copies_dropped":12' in audit[0][0]
    spool = os.listdir(os.path.join(demo.root, "state", "spool"))
    assert [f for f in spool if f.endswith(".obj")] == [], spool
    demo.run("ship", "--wait", "--timeout", "30", check=0)
    demo.stop_agent()
    assert len(files) == 12


def test_destination_added_later_gets_the_earlier_daily_points(demo):
    demo.start_agent()
    ship_files(demo, 5, "p")
    demo.stop_agent()
    demo.run("daily", check=0, timeout=300)
    usb = demo.add_local_destination("usb")
    demo.start_agent()  # marks the new folder and copies the files' objects
    wait_for(lambda: copies_on(demo, "usb") == all_objects(demo), 60, "objects on usb")
    rc, st = demo.status()
    assert any("lacks" in p and "artifacts of earlier daily points" in p for p in st["problems"]), st
    demo.stop_agent()
    keys = [k for (k,) in demo.query("SELECT remote_key FROM artifacts WHERE attempt = 1")]
    assert keys and not any(os.path.exists(os.path.join(usb, k)) for k in keys)
    demo.run("daily", check=0, timeout=300)  # the next run closes the gap
    for k in keys:
        assert open(os.path.join(usb, k), "rb").read() == open(os.path.join(demo.dest, k),
                                                                 "rb").read(), k
    demo.start_agent()
    st = demo.wait_status(True, 60)
    assert all(d["objects_lacking"] == 0 for d in st["destinations"])
    demo.stop_agent()
