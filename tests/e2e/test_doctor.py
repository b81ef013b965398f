"""
`custodian doctor` passes on a healthy install and names what is wrong.
"""
import json
import os


def test_doctor_passes_on_the_demo(demo):
    p = demo.run("--json", "doctor", check=0)
    report = json.loads(p.stdout)
    assert report["failed"] == 0
    checks = {(c["area"], c["check"]): c["result"] for c in report["checks"]}
    for name in ("reachable", "write probe", "read probe", "delete probe", "private"):
        assert checks[("destination local", name)] == "ok"
    assert checks[("state", "catalog")] == "ok"
    assert ("inotify", "max_user_watches") in checks


def test_doctor_fails_with_the_reason(demo):
    os.chmod(demo.dest, 0o755)
    os.chmod(os.path.join(demo.root, "keys", "signing.key"), 0o640)
    p = demo.run("doctor", check=1)
    out = p.stdout.decode()
    assert "FAIL  destination local      private" in out and "chmod o-rwx" in out, out
    assert "signing.key is readable by other users" in out, out
    assert "2 failed" in out
