"""
A watched root that goes away is watched again when it comes back, and
rescanned: deleted and made again, replaced by a rename (`mv new invoices`),
a bind mount unmounted and mounted again, a symlink root and a symlink
re-pointed. While a root is not watched, `status` fails naming it; once it is
back, files written there are shipped and `status` is OK again.
"""
import os
import shutil
import subprocess

import pytest

from conftest import write_file


def roots(st):
    return {r["path"]: r for r in st["agent"]["roots"]}


def test_root_deleted_and_made_again(demo):
    demo.start_agent()
    a = os.path.join(demo.invoices, "before.pdf")
    demo.wait_shipped({a: write_file(a, os.urandom(3000))})
    shutil.rmtree(demo.invoices)
    st = demo.wait_status(False, 30)
    assert not roots(st)[demo.invoices]["watched"], st
    assert any("is NOT watched" in p and demo.invoices in p for p in st["problems"]), st
    os.mkdir(demo.invoices)
    b = os.path.join(demo.invoices, "after.pdf")
    demo.wait_shipped({b: write_file(b, os.urandom(3000))}, timeout=60)
    demo.wait_status(True, 30)
    # the deleted file is tombstoned, the new one live
    assert demo.live_version(a) is None
    demo.stop_agent()


def test_root_replaced_by_rename(demo):
    demo.start_agent()
    old = os.path.join(demo.invoices, "old.pdf")
    demo.wait_shipped({old: write_file(old, os.urandom(3000))})
    new = os.path.join(demo.data, "invoices.new")
    os.mkdir(new)
    staged = write_file(os.path.join(new, "staged.pdf"), os.urandom(4000))
    os.rename(demo.invoices, os.path.join(demo.data, "invoices.old"))
    os.rename(new, demo.invoices)  # the deploy pattern: mv new invoices
    later = os.path.join(demo.invoices, "later.pdf")
    expected = {os.path.join(demo.invoices, "staged.pdf"): staged,
                later: write_file(later, os.urandom(5000))}
    demo.wait_shipped(expected, timeout=60)
    # the folder moved away is not watched under the old name any more
    write_file(os.path.join(demo.data, "invoices.old", "ghost.pdf"), os.urandom(100))
    demo.wait_status(True, 30)
    assert demo.live_version(os.path.join(demo.invoices, "ghost.pdf")) is None
    assert demo.live_version(old) is None  # not in the folder that is there now
    demo.stop_agent()


@pytest.fixture
def bind_mounted_invoices(demo, tmp_path):
    src = tmp_path / "nas-invoices"
    src.mkdir()
    subprocess.run(["mount", "--bind", str(src), demo.invoices], check=True)
    try:
        yield src
    finally:
        subprocess.run(["umount", "-l", demo.invoices], check=False)


def test_root_bind_mount_unmounted_and_mounted_again(demo, bind_mounted_invoices):
    demo.start_agent()
    a = os.path.join(demo.invoices, "on-nas.pdf")
    sha = write_file(a, os.urandom(3000))
    demo.wait_shipped({a: sha})
    subprocess.run(["umount", demo.invoices], check=True)
    st = demo.wait_status(False, 30)
    assert "not mounted" in (roots(st)[demo.invoices]["why"] or ""), st
    # an unmounted share is not a deleted one: nothing is tombstoned
    assert demo.live_version(a) is not None
    subprocess.run(["mount", "--bind", str(bind_mounted_invoices), demo.invoices], check=True)
    b = os.path.join(demo.invoices, "after-remount.pdf")
    demo.wait_shipped({a: sha, b: write_file(b, os.urandom(3000))}, timeout=60)
    demo.wait_status(True, 30)
    demo.stop_agent()


def test_symlink_root_and_a_symlink_pointed_elsewhere(demo, tmp_path):
    release1, release2 = tmp_path / "release-1", tmp_path / "release-2"
    release1.mkdir()
    release2.mkdir()
    link = os.path.join(demo.data, "current")
    os.symlink(release1, link)
    # the symlink is the only root
    lines = [ln for ln in open(demo.conf).read().splitlines()
             if not ln.replace(" ", "").startswith("path=app/data/")]
    lines.insert(lines.index("[watch]") + 1, f"path = {link}")
    open(demo.conf, "w").write("\n".join(lines) + "\n")
    demo.start_agent()
    a = os.path.join(link, "a.pdf")
    sha_a = write_file(str(release1 / "a.pdf"), os.urandom(2000))
    demo.wait_shipped({a: sha_a})  # recorded under the configured path
    st = demo.wait_status(True, 30)
    assert roots(st)[link]["watched"]
    # deploy: the symlink now points at release 2
    b_sha = write_file(str(release2 / "b.pdf"), os.urandom(2000))
    tmp_link = link + ".tmp"
    os.symlink(release2, tmp_link)
    os.rename(tmp_link, link)
    c = os.path.join(link, "c.pdf")
    demo.wait_shipped({os.path.join(link, "b.pdf"): b_sha}, timeout=60)
    demo.wait_shipped({c: write_file(c, os.urandom(2000))}, timeout=60)
    assert demo.live_version(a) is None  # not in the tree the symlink shows now
    demo.wait_status(True, 30)
    demo.stop_agent()
