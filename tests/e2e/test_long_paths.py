"""
A path longer than the system allows (PATH_MAX, 4,096 bytes) cannot be read
or watched by name. It is never silently skipped: `status` fails naming it
as not protected, and `scan` lists it and exits 1.
"""
import os

from conftest import wait_for


def make_deep(root, total=5000, component=200):
    """Folders nested below root until the path is longer than total bytes (made with
    openat, as no single path may be that long); a file at the bottom. Its path."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    path = root
    try:
        i = 0
        while len(path) < total:
            name = f"{i:03d}" + "d" * (component - 3)
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
            path = os.path.join(path, name)
            i += 1
        ffd = os.open("deep-invoice.pdf", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
        os.write(ffd, b"%PDF-1.4 deep\n")
        os.close(ffd)
        return os.path.join(path, "deep-invoice.pdf")
    finally:
        os.close(fd)


def test_path_longer_than_path_max_is_reported_not_protected(demo):
    demo.start_agent()
    demo.wait_status(True, 30)
    deep = make_deep(demo.invoices)
    assert len(deep.encode()) > 4096
    st = demo.wait_status(False, 60, "status to report the unprotectable path")
    assert any("NOT protected" in p for p in st["problems"]), st
    assert st["agent"]["unprotected_count"] >= 1
    assert any("longer than the system allows" in u["why"] for u in st["agent"]["unprotected"])
    p = demo.run("scan", check=1)
    assert b"CANNOT be protected" in p.stdout, p.stdout
    assert b"NOT PROTECTED" in p.stderr, p.stderr
    # other files still ship meanwhile
    ok = os.path.join(demo.images, "fine.jpg")
    with open(ok, "wb") as f:
        f.write(b"fine")
    wait_for(lambda: demo.live_version(ok), 30, "a normal file shipped")
    demo.stop_agent()
