"""
Off-server destinations against real servers started by the harness: Ceph's
RADOS Gateway (S3 over HTTPS with a test CA, signatures checked) and
OpenSSH's sshd (SFTP). Replication, multipart, outages, wrong credentials,
unknown host keys and CAs, doctor, storage classes.
"""
import json
import os
import random
import re
import time

import pytest

from conftest import PLAIN_BIN, sha256_file, wait_for, write_file


def set_destinations(demo, text):
    """Replace every [destination ...] section of the demo config with text."""
    out, skip = [], False
    for line in open(demo.conf).read().splitlines():
        if line.startswith("["):
            skip = line.startswith("[destination ")
        if not skip:
            out.append(line)
    open(demo.conf, "w").write("\n".join(out) + "\n" + text)


def s3_section(rgw, bucket, name="s3", **extra):
    keys = {"type": "s3", "role": "primary", "endpoint": rgw.endpoint, "bucket": bucket,
            "region": rgw.region, "path_style": "yes", "ca_file": rgw.ca_file,
            "access_key_file": rgw.access_key_file, "secret_key_file": rgw.secret_key_file}
    keys.update(extra)
    return f"\n[destination {name}]\n" + "".join(
        f"{k} = {v}\n" for k, v in keys.items() if v is not None)


def sftp_section(sshd, url, name="sftp", **extra):
    keys = {"type": "sftp", "role": "replica", "url": url, "identity": sshd.identity,
            "known_hosts": sshd.known_hosts}
    keys.update(extra)
    return f"\n[destination {name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def status(demo):
    return json.loads(demo.run("--json", "status").stdout)


def dest(demo, name):
    return next(d for d in status(demo)["destinations"] if d["name"] == name)


def objects_on_sftp(root):
    return {f for _, _, fs in os.walk(os.path.join(root, "objects")) for f in fs
            if not f.startswith(".")}


def mixed(rng, size):
    if rng.random() < 0.5:
        return os.urandom(size)
    line = b"timesheet %d clinician 17 visit 97110\n" % rng.randrange(10**6)
    return (line * (size // len(line) + 1))[:size]


def test_300_files_to_s3_and_sftp_restorable_from_either(demo, rgw, sshd, tmp_path):
    bucket = rgw.new_bucket("both")
    root, url = sshd.new_dir("both")
    set_destinations(demo, s3_section(rgw, bucket) + sftp_section(sshd, url))
    rng = random.Random(3)
    demo.start_agent()
    files = {}
    folders = [demo.images, demo.invoices, demo.bug_reports]
    for i in range(300):
        size = rng.randint(1000, 300_000) if i % 50 else rng.randint(1 << 20, 3 << 20)
        p = os.path.join(folders[i % 3], f"f{i:03d}.bin")
        files[p] = write_file(p, mixed(rng, size))
    demo.wait_shipped(files, timeout=240)
    wait_for(lambda: dest(demo, "s3")["backlog"] == 0 and dest(demo, "sftp")["backlog"] == 0,
             240, "both destinations drained")
    demo.stop_agent()
    objects = {r[0] for r in demo.query("SELECT id FROM objects")}
    assert len(objects) == 300
    on_s3 = {o["key"].rsplit("/", 1)[1] for o in rgw.list_objects(bucket, "objects/")}
    assert on_s3 == objects
    assert objects_on_sftp(root) == objects
    for name in ("s3", "sftp"):
        assert demo.query("SELECT count(*) FROM copies WHERE dest = ?", name)[0][0] == 300
    # metadata on S3 lets HEAD verify a copy
    some = sorted(objects)[0]
    h = rgw.head(bucket, f"objects/{some[:2]}/{some}")
    stored = demo.query("SELECT lower(hex(stored_sha256)) FROM copies WHERE object_id = ? AND "
                        "dest = 's3'", some)[0][0]
    assert h["x-amz-meta-custodian-stored-sha256"] == stored
    for name in ("s3", "sftp"):
        out = tmp_path / name
        for path, sha in files.items():
            demo.run("restore", "file", path, "--to", str(out), "--from", name,
                     binary=PLAIN_BIN, check=0)
            assert sha256_file(out / os.path.basename(path)) == sha, (name, path)


def test_multipart_upload_restores_identical(demo, rgw, tmp_path):
    bucket = rgw.new_bucket("mp")
    set_destinations(demo, s3_section(rgw, bucket, part_size_mb=5))
    demo.start_agent()
    path = os.path.join(demo.images, "big.tif")
    sha = write_file(path, os.urandom(13 << 20))
    demo.wait_shipped({path: sha}, timeout=120)
    demo.stop_agent()
    _, object_id, _ = demo.live_version(path)
    h = rgw.head(bucket, f"objects/{object_id[:2]}/{object_id}")
    assert re.search(r"-3\"?$", h["etag"]), h["etag"]  # three parts of at most 5 MiB
    assert b"<Upload>" not in rgw.ok("GET", f"/{bucket}?uploads")[2]  # none abandoned
    demo.restore(path, str(tmp_path / "r"))
    assert sha256_file(tmp_path / "r" / "big.tif") == sha


def outage_burst(demo, stop, start, dest_name, n=500):
    demo.start_agent()
    files = {}
    for i in range(n):
        p = os.path.join(demo.invoices, f"o{i:03d}.pdf")
        files[p] = write_file(p, os.urandom(2000 + i))
        if i == 100:
            wait_for(lambda: demo.query("SELECT count(*) FROM copies WHERE dest = ?",
                                        dest_name)[0][0] > 0, 60, "first copies")
            stop()
            down_at = time.monotonic()
    time.sleep(max(0, 30 - (time.monotonic() - down_at)))
    assert demo.agent_proc.poll() is None, "the agent exited during the outage"
    assert dest(demo, dest_name)["backlog"] > 0
    start()
    back_at = time.monotonic()
    demo.wait_shipped(files, timeout=180)
    wait_for(lambda: dest(demo, dest_name)["backlog"] == 0, 180, f"{dest_name} drained")
    print(f"{dest_name}: drained {time.monotonic() - back_at:.1f}s after it came back")
    demo.stop_agent()
    # nothing recorded twice
    assert demo.query("SELECT count(*) FROM versions")[0][0] == n
    assert demo.query("SELECT count(*) FROM copies WHERE dest = ?", dest_name)[0][0] == n
    assert "is back after" in demo.log_text()


def test_s3_down_for_30s_mid_burst(demo, rgw):
    bucket = rgw.new_bucket("outage")
    set_destinations(demo, s3_section(rgw, bucket))
    try:
        outage_burst(demo, rgw.stop_gateway, rgw.start_gateway, "s3")
    finally:
        if getattr(rgw, "gateway_down", False):
            rgw.start_gateway()
    assert len(rgw.list_objects(bucket, "objects/")) == 500


def test_sshd_down_for_30s_mid_burst(demo, sshd):
    root, url = sshd.new_dir("outage")
    set_destinations(demo, sftp_section(sshd, url))
    try:
        outage_burst(demo, sshd.stop, sshd.start, "sftp")
    finally:
        if not sshd.running:
            sshd.start()
    assert len(objects_on_sftp(root)) == 500


def ship_one_and_expect_error(demo, dest_name, pattern):
    demo.start_agent()
    path = os.path.join(demo.invoices, "never.pdf")
    write_file(path, os.urandom(1000))
    wait_for(lambda: (dest(demo, dest_name)["last_error"] or ""), 60, "an error in status")
    err = dest(demo, dest_name)["last_error"]
    assert re.search(pattern, err), err
    assert dest_name in err
    assert demo.agent_proc.poll() is None
    demo.stop_agent()
    assert demo.query("SELECT count(*) FROM versions")[0][0] == 0, "nothing marked shipped"
    assert demo.query("SELECT count(*) FROM copies")[0][0] == 0
    return err


def test_wrong_secret_key_is_a_clear_error(demo, rgw, tmp_path):
    bad = tmp_path / "bad.secret"
    bad.write_text("not-the-secret\n")
    os.chmod(bad, 0o600)
    set_destinations(demo, s3_section(rgw, rgw.new_bucket("bad"), secret_key_file=str(bad)))
    ship_one_and_expect_error(demo, "s3", r"refused the credentials.*SignatureDoesNotMatch")


def test_unknown_ssh_host_key_refused(demo, sshd):
    _, url = sshd.new_dir("hk")
    set_destinations(demo, sftp_section(sshd, url, known_hosts=sshd.wrong_known_hosts))
    ship_one_and_expect_error(demo, "sftp", r"host key")


def test_certificate_from_unknown_ca_refused(demo, rgw):
    set_destinations(demo, s3_section(rgw, rgw.new_bucket("ca"), ca_file=None))
    ship_one_and_expect_error(demo, "s3", r"(?i)certificate|TLS")


def test_storage_class_is_set(demo, rgw):
    bucket = rgw.new_bucket("cls")
    set_destinations(demo, s3_section(rgw, bucket, hot_class="STANDARD_IA"))
    demo.start_agent()
    path = os.path.join(demo.images, "c.jpg")
    demo.wait_shipped({path: write_file(path, os.urandom(3000))})
    demo.stop_agent()
    _, object_id, _ = demo.live_version(path)
    assert rgw.head(bucket, f"objects/{object_id[:2]}/{object_id}")[
        "x-amz-storage-class"] == "STANDARD_IA"
    assert [o["storage_class"] for o in rgw.list_objects(bucket, "objects/")] == ["STANDARD_IA"]


def doctor(demo, check):
    p = demo.run("--json", "doctor", check=check)
    report = json.loads(p.stdout)
    return {(c["area"], c["check"]): (c["result"], c["detail"]) for c in report["checks"]}


def test_doctor_against_real_servers(demo, rgw, sshd, tmp_path):
    bucket = rgw.new_bucket("doc")
    _, url = sshd.new_dir("doc")
    set_destinations(demo, s3_section(rgw, bucket) + sftp_section(sshd, url))
    checks = doctor(demo, 0)
    for area in ("destination s3", "destination sftp"):
        failed = [k for k, v in checks.items() if k[0] == area and v[0] != "ok"]
        assert not failed, failed
    assert checks[("destination s3", "no anonymous access")][0] == "ok"

    # a wrong credential: doctor fails and says why
    bad = tmp_path / "bad.secret"
    bad.write_text("wrong\n")
    os.chmod(bad, 0o600)
    set_destinations(demo, s3_section(rgw, bucket, secret_key_file=str(bad)))
    checks = doctor(demo, 1)
    fails = [v[1] for k, v in checks.items() if k[0] == "destination s3" and v[0] == "FAIL"]
    assert any("credentials" in f for f in fails), fails

    # a bucket policy that lets anyone read: doctor refuses it
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/*"]}]})
    rgw.ok("PUT", f"/{bucket}?policy", data=policy.encode(), expect=(200, 204))
    set_destinations(demo, s3_section(rgw, bucket))
    checks = doctor(demo, 1)
    result, detail = checks[("destination s3", "no anonymous access")]
    assert result == "FAIL" and "the bucket allows public access" in detail, detail
