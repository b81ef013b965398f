"""
`custodian verify`: every recorded copy is there (and with --deep, restores).
"""
import os

from conftest import sha256_file, wait_for, write_file


def test_verify_finds_missing_and_damaged_copies(demo):
    demo.start_agent()
    files = {}
    for i in range(6):
        p = os.path.join(demo.invoices, f"v{i}.pdf")
        files[p] = write_file(p, os.urandom(20_000 + i))
    demo.wait_shipped(files)
    demo.stop_agent()
    p = demo.run("verify", check=0)
    assert b"checked 6 copies (present, right size): 0 failed" in p.stdout, p.stdout
    p = demo.run("verify", "--deep", "--sample", "3", check=0)
    assert b"checked 3 copies (fetched, decrypted and hashed): 0 failed" in p.stdout, p.stdout

    objects = sorted(o for (o,) in demo.query("SELECT object_id FROM copies"))
    os.unlink(demo.object_path(objects[0]))
    damaged = demo.object_path(objects[1])
    data = bytearray(open(damaged, "rb").read())
    data[-5] ^= 0x40
    open(damaged, "wb").write(bytes(data))

    p = demo.run("verify", check=1)  # presence and size: finds the missing one only
    assert p.stdout.count(b"FAIL  local: objects/") == 1 and objects[0].encode() in p.stdout, \
        p.stdout
    # A copy proven missing is marked damaged at once: never used again, copied again.
    assert b"lacks 1 objects, 1 copies known damaged" in p.stdout, p.stdout
    p = demo.run("verify", "--deep", check=1)  # reads each back: finds the other one too
    assert p.stdout.count(b"FAIL  local: objects/") == 1 and objects[1].encode() in p.stdout, \
        p.stdout
    assert b"not what was stored" in p.stdout, p.stdout
    assert b"lacks 2 objects, 2 copies known damaged" in p.stdout, p.stdout
    damaged = demo.query("SELECT object_id FROM copies WHERE damaged_at IS NOT NULL")
    assert sorted(o for (o,) in damaged) == objects[:2]
    actions = [a for (a,) in demo.query("SELECT action FROM audit")]
    assert actions.count("verify") == 4
    # status fails while copies are damaged ...
    assert b"DAMAGED" in demo.run("status", check=1).stdout
    # ... and the agent repairs them from the unchanged live files (the only source with
    # one destination), with no operator action.
    demo.start_agent()
    wait_for(lambda: demo.query("SELECT count(*) FROM copies WHERE damaged_at IS NOT NULL")[0][0]
             == 0, 60, "damaged copies repaired")
    demo.stop_agent()
    p = demo.run("verify", "--deep", check=0)
    assert b"checked 6 copies (fetched, decrypted and hashed): 0 failed" in p.stdout, p.stdout
    for path, sha in files.items():
        out = os.path.join(demo.root, "restored")
        demo.restore(path, out, extra=("--force",))
        assert sha256_file(os.path.join(out, os.path.basename(path))) == sha
