"""
verify --manifest reads the day's manifests with a strict parser
(agent/manifest.c): a validly signed trio of another day, put where the
asked day's belongs, is refused; so is a trio whose two lists disagree.
"""
import os
import shutil

from conftest import write_file


def test_another_days_signed_manifest_is_refused(demo):
    write_file(os.path.join(demo.invoices, "INV-1.pdf"), b"invoice\n")
    demo.run("scan", check=0)
    demo.run("ship", check=0)
    demo.run("daily", check=0, timeout=300)
    day = demo.query("SELECT date FROM daily_runs ORDER BY started_at DESC LIMIT 1")[0][0]
    demo.run("verify", "--manifest", day, check=0)

    other = "2001-01-01"
    manifests = os.path.join(demo.dest, "backups", "manifests")
    for ext in ("sha256", "json", "sig"):
        shutil.copyfile(os.path.join(manifests, f"{day}.{ext}"),
                        os.path.join(manifests, f"{other}.{ext}"))
    p = demo.run("verify", "--manifest", other, check=1)
    out = p.stdout.decode()
    assert "manifest signature verified" in out, out  # signed, by the right key...
    assert f"the manifest found for {other} is the one of {day}" in out, out  # ...but not that day

