"""
`custodian verify`: every recorded copy is there (and with --deep, restores).
"""
import os

from conftest import write_file


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
    assert p.stdout.count(b"FAIL") == 1 and objects[0].encode() in p.stdout, p.stdout
    p = demo.run("verify", "--deep", check=1)  # restores each: finds both
    assert p.stdout.count(b"FAIL") == 2 and b"integrity error" in p.stdout, p.stdout
    assert b"2 failed" in p.stdout
    actions = [a for (a,) in demo.query("SELECT action FROM audit")]
    assert actions.count("verify") == 4
