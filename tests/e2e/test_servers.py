"""
The real-server fixtures (servers.py) are real: RGW checks signatures,
refuses anonymous reads, serves HTTPS only to clients trusting the test CA,
keeps storage classes, and survives a gateway restart; sshd serves SFTP to
the client key and is refused under a wrong host key.
"""
import os
import sys
import time

import pytest

if "servers" not in sys.modules:  # conftest.py imports them; until it does:
    from servers import rgw, sshd  # noqa: F401

from servers import CurlError


def test_rgw_signed_put_get(rgw):
    b = rgw.new_bucket("srv")
    data = os.urandom(100_000) + b"\0end"
    rgw.put(b, "a/b c.bin", data)
    assert rgw.get(b, "a/b c.bin") == data
    h = rgw.head(b, "a/b c.bin")
    assert h["content-length"] == str(len(data))
    assert [o["key"] for o in rgw.list_objects(b, "a/")] == ["a/b c.bin"]
    assert rgw.endpoint.startswith("https://127.0.0.1:")
    for f, v in ((rgw.access_key_file, "AKTEST"), (rgw.secret_key_file, "SKTEST")):
        assert open(f).read() == v + "\n"
        assert os.stat(f).st_mode & 0o777 == 0o600


def test_rgw_checks_signature_and_refuses_anonymous(rgw):
    b = rgw.new_bucket("srv")
    rgw.put(b, "k", b"secret bytes")
    status, _, body = rgw.request("PUT", f"/{b}/k2", data=b"x", sign_key="WRONG")
    assert status == 403 and b"SignatureDoesNotMatch" in body, body
    status, _, body = rgw.request("GET", f"/{b}/k", sign_key="WRONG")
    assert status == 403 and b"SignatureDoesNotMatch" in body, body
    status, _, body = rgw.request("GET", f"/{b}/k", access_key="AKNOBODY")
    assert status == 403 and b"InvalidAccessKeyId" in body, body
    status, _, body = rgw.request("GET", f"/{b}/k", anonymous=True)
    assert status == 403 and b"AccessDenied" in body, body
    status, _, _ = rgw.request("GET", f"/{b}?list-type=2", anonymous=True)
    assert status == 403
    # another user cannot read it either
    status, _, _ = rgw.request("GET", f"/{b}/k", access_key=rgw.other_access_key,
                               sign_key=rgw.other_secret_key)
    assert status == 403
    # query canonicalisation: bare subresource keys are signed with '='
    status, _, body = rgw.request("GET", f"/{b}?versioning")
    assert status == 200 and b"VersioningConfiguration" in body, body


def test_rgw_https_needs_the_test_ca(rgw):
    status, _, _ = rgw.request("GET", "/")
    assert status == 200
    with pytest.raises(CurlError) as e:
        rgw.request("GET", "/", ca_file=None)
    assert e.value.exit_code == 60, e.value.stderr  # certificate not trusted


def test_rgw_storage_classes(rgw):
    b = rgw.new_bucket("srv")
    for sc in ("DEEP_ARCHIVE", "GLACIER", "STANDARD_IA"):
        rgw.put(b, f"c/{sc}", sc.encode(), headers={"x-amz-storage-class": sc})
        assert rgw.head(b, f"c/{sc}")["x-amz-storage-class"] == sc
    rgw.put(b, "c/plain", b"plain")
    listed = {o["key"]: o["storage_class"] for o in rgw.list_objects(b, "c/")}
    assert listed == {"c/DEEP_ARCHIVE": "DEEP_ARCHIVE", "c/GLACIER": "GLACIER",
                      "c/STANDARD_IA": "STANDARD_IA", "c/plain": "STANDARD"}
    status, _, body = rgw.request("PUT", f"/{b}/c/x", data=b"x",
                                  headers={"x-amz-storage-class": "NO_SUCH_CLASS"})
    assert status == 400, body


def test_rgw_object_lock(rgw):
    b = rgw.new_bucket("srvlock", object_lock=True)
    h = rgw.put(b, "s", b"locked", headers={
        "x-amz-object-lock-mode": "COMPLIANCE",
        "x-amz-object-lock-retain-until-date": "2099-01-01T00:00:00Z"})
    vid = h["x-amz-version-id"]
    assert rgw.head(b, "s")["x-amz-object-lock-mode"] == "COMPLIANCE"
    status, _, body = rgw.request("DELETE", f"/{b}/s?versionId={vid}")
    assert status == 403, body
    assert rgw.get(b, "s", version_id=vid) == b"locked"


def test_sftp_upload_and_host_key_check(sshd):
    local, url = sshd.new_dir("srv")
    src = os.path.join(sshd.dir, "upload-src")
    data = os.urandom(50_000)
    open(src, "wb").write(data)
    p = sshd.curl("-T", src, "--ftp-create-dirs", url + "/sub/f.bin")
    assert p.returncode == 0, p.stderr
    assert open(os.path.join(local, "sub", "f.bin"), "rb").read() == data
    p = sshd.curl(url + "/sub/f.bin")
    assert p.returncode == 0 and p.stdout == data, p.stderr
    # a changed host key, or none known, is refused before anything is sent
    for kh in (sshd.wrong_known_hosts, os.devnull):
        p = sshd.curl("-T", src, url + "/sub/g.bin", known_hosts=kh)
        assert p.returncode == 60, (kh, p.returncode, p.stderr)
    assert not os.path.exists(os.path.join(local, "sub", "g.bin"))
    # the host key fingerprint the fixture reports is the server's
    p = sshd.curl("--hostpubsha256", sshd.host_key_sha256, url + "/sub/f.bin", known_hosts=None)
    assert p.returncode == 0, p.stderr
    p = sshd.curl("--hostpubmd5", sshd.host_key_md5, url + "/sub/f.bin", known_hosts=None)
    assert p.returncode == 0, p.stderr
    for f in (sshd.identity,):
        assert os.stat(f).st_mode & 0o777 == 0o600


def test_sshd_outage(sshd):
    local, url = sshd.new_dir("srvout")
    open(os.path.join(local, "f"), "wb").write(b"before")
    sshd.stop()
    try:
        p = sshd.curl(url + "/f", timeout=10)
        assert p.returncode == 7, (p.returncode, p.stderr)  # connection refused
    finally:
        sshd.start()
    p = sshd.curl(url + "/f")
    assert p.returncode == 0 and p.stdout == b"before", p.stderr


def test_rgw_gateway_outage(rgw):
    b = rgw.new_bucket("srvout")
    rgw.put(b, "before", b"kept across the outage")
    t0 = time.monotonic()
    rgw.stop_gateway()
    try:
        with pytest.raises(CurlError) as e:
            rgw.request("GET", f"/{b}/before", timeout=10)
        assert e.value.exit_code == 7, e.value.stderr  # connection refused
    finally:
        t1 = time.monotonic()
        rgw.start_gateway()
    t2 = time.monotonic()
    assert rgw.get(b, "before") == b"kept across the outage"
    rgw.put(b, "after", b"new")
    assert rgw.get(b, "after") == b"new"
    print(f"gateway stop {t1 - t0:.1f}s, start {t2 - t1:.1f}s, "
          f"first start (whole cluster) {rgw.start_seconds:.1f}s")
