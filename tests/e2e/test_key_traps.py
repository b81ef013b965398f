"""
Key and trust-file traps (issue 9) are refused when the agent starts and
flagged by doctor, instead of surfacing at the first daily run or restore:
a signing key other users can read, a public key that is not the secret
key's, and a ca_file or known_hosts that another user can write or owns.
"""
import json
import os
import shutil
import subprocess

from conftest import BIN

NOBODY = 65534


def doctor(demo):
    p = demo.run("--json", "doctor", check=None)
    report = json.loads(p.stdout)
    return p.returncode, {(c["area"], c["check"]): c for c in report["checks"]}


def test_group_readable_signing_key_refused_at_start(demo):
    key = os.path.join(demo.root, "keys", "signing.key")
    os.chmod(key, 0o640)
    p = demo.run("agent", check=2, timeout=60)
    assert b"signing.key is readable by other users" in p.stderr, p.stderr
    assert b"chmod 600" in p.stderr
    rc, checks = doctor(demo)
    assert rc == 1 and checks[("keys", "signing-secret-key")]["result"] == "FAIL"
    os.chmod(key, 0o600)
    demo.start_agent()
    demo.stop_agent()


def test_public_key_that_is_not_the_secret_keys_is_refused(demo, tmp_path):
    rc, checks = doctor(demo)
    assert checks[("keys", "key pair")]["result"] == "ok", checks[("keys", "key pair")]
    subprocess.run([BIN, "keygen", "--out", str(tmp_path / "other")], check=True,
                   capture_output=True)
    os.chmod(os.path.join(demo.root, "keys", "backup.pub"), 0o644)
    shutil.copyfile(tmp_path / "other" / "backup.pub",
                    os.path.join(demo.root, "keys", "backup.pub"))
    p = demo.run("agent", check=2, timeout=60)
    assert b"backup.key does not belong to the public key" in p.stderr, p.stderr
    rc, checks = doctor(demo)
    assert rc == 1
    assert checks[("keys", "key pair")]["result"] == "FAIL"
    assert "does not belong to the public key" in checks[("keys", "key pair")]["detail"]
    p = demo.run("restore", "file", os.path.join(demo.invoices, "x"), "--stdout", check=2)
    assert b"does not belong to the public key" in p.stderr, p.stderr
    # Without a secret key configured (the app host) there is nothing to compare.
    text = "".join(line for line in open(demo.conf) if not line.startswith("secret_key"))
    open(demo.conf, "w").write(text)
    demo.start_agent()
    demo.stop_agent()


def remote_destinations(demo, tmp_path):
    """An S3 and an SFTP destination (never contacted here) with their trust files."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot contacted\n-----END CERTIFICATE-----\n")
    known = tmp_path / "known_hosts"
    known.write_text("[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ\n")
    for name in ("access", "secret"):
        (tmp_path / name).write_text(name + "\n")
        os.chmod(tmp_path / name, 0o600)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(tmp_path / "id")], check=True)
    for f in (ca, known):
        os.chmod(f, 0o644)
    with open(demo.conf, "a") as f:
        f.write(f"\n[destination s3]\ntype = s3\nrole = replica\nendpoint = https://127.0.0.1:1\n"
                f"bucket = b\npath_style = yes\nca_file = {ca}\n"
                f"access_key_file = {tmp_path / 'access'}\n"
                f"secret_key_file = {tmp_path / 'secret'}\n"
                f"\n[destination sftp]\ntype = sftp\nrole = replica\n"
                f"url = sftp://u@127.0.0.1:1/base\nidentity = {tmp_path / 'id'}\n"
                f"known_hosts = {known}\n")
    return ca, known


def test_ca_file_and_known_hosts_others_can_write_are_refused(demo, tmp_path):
    ca, known = remote_destinations(demo, tmp_path)
    rc, checks = doctor(demo)
    assert checks[("keys", "ca_file")]["result"] == "ok", checks[("keys", "ca_file")]
    assert checks[("keys", "known_hosts")]["result"] == "ok"

    traps = [
        (ca, lambda: os.chmod(ca, 0o666), "ca_file", b"is writable by other users"),
        (ca, lambda: os.chmod(ca, 0o664), "ca_file", b"is writable by other users"),
        (ca, lambda: os.chown(ca, NOBODY, NOBODY), "ca_file", b"belongs to uid 65534"),
        (known, lambda: os.chmod(known, 0o646), "known_hosts", b"is writable by other users"),
        (known, lambda: os.chown(known, NOBODY, NOBODY), "known_hosts", b"belongs to uid 65534"),
    ]
    for path, spoil, key, message in traps:
        spoil()
        p = demo.run("agent", check=1, timeout=60)
        assert f"destination {'s3' if key == 'ca_file' else 'sftp'}: {key} {path}".encode() \
            in p.stderr, p.stderr
        assert message in p.stderr, p.stderr
        rc, checks = doctor(demo)
        assert rc == 1
        assert checks[("keys", key)]["result"] == "FAIL", checks[("keys", key)]
        assert message.decode() in checks[("keys", key)]["detail"]
        # a restore (any command that opens the destinations) refuses it too
        p = demo.run("restore", "file", os.path.join(demo.invoices, "x"), "--stdout", check=1)
        assert message in p.stderr, p.stderr
        os.chown(path, 0, 0)
        os.chmod(path, 0o644)
