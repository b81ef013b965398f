"""
Renames, deletes, new folders with files already inside, hostile names, and
files created while the agent was stopped.
"""
import os
import shutil

import pytest

from conftest import sha256_file, wait_for, write_file


def object_count(demo):
    return demo.query("SELECT count(*) FROM objects")[0][0]


def test_rename_is_known_content_not_reupload(demo, tmp_path):
    demo.start_agent()
    a = os.path.join(demo.invoices, "draft.pdf")
    b = os.path.join(demo.invoices, "INV-7.pdf")
    sha = write_file(a, os.urandom(50_000))
    demo.wait_shipped({a: sha})
    objects = object_count(demo)
    os.rename(a, b)
    demo.wait_shipped({b: sha})
    wait_for(lambda: demo.live_version(a) is None, 10, "old name tombstoned")
    assert object_count(demo) == objects
    assert "renamed from=" + a in demo.log_text()
    # a folder rename moves every file below it
    d1 = os.path.join(demo.images, "2026-11")
    os.mkdir(d1)
    files = {os.path.join(d1, f"ts-{i}.jpg"): None for i in range(5)}
    for p in files:
        files[p] = write_file(p, os.urandom(20_000))
    demo.wait_shipped(files)
    d2 = os.path.join(demo.images, "2026-11-final")
    os.rename(d1, d2)
    moved = {p.replace(d1, d2): s for p, s in files.items()}
    demo.wait_shipped(moved)
    # and the watch follows the renamed folder
    newer = os.path.join(d2, "late.jpg")
    demo.wait_shipped({newer: write_file(newer, os.urandom(1000))})
    demo.stop_agent()
    demo.restore(b, str(tmp_path / "r"))
    assert sha256_file(tmp_path / "r" / "INV-7.pdf") == sha


def test_delete_keeps_versions_and_restores(demo, tmp_path):
    demo.start_agent()
    path = os.path.join(demo.invoices, "INV-9.pdf")
    sha = write_file(path, os.urandom(30_000))
    demo.wait_shipped({path: sha})
    _, object_id, _ = demo.live_version(path)
    os.unlink(path)
    wait_for(lambda: demo.query(
        "SELECT v.deleted_at FROM versions v JOIN paths p ON p.id = v.path_id WHERE p.path = ?",
        os.fsencode(path))[0][0] is not None, 10, "tombstone")
    assert os.path.exists(demo.object_path(object_id)), "nothing remote is removed"
    demo.stop_agent()
    # "someone deleted an invoice": it comes back to where it was
    demo.run("restore", "file", path, check=0)
    assert sha256_file(path) == sha


def test_new_nested_folder_with_files_already_inside(demo, tmp_path):
    demo.start_agent()
    staging = tmp_path / "staging"
    files = {}
    for sub in ["a", "a/b", "a/b/c"]:
        (staging / sub).mkdir(parents=True)
        for i in range(3):
            p = staging / sub / f"f{i}.json"
            files[str(p)] = write_file(str(p), os.urandom(500))
    target = os.path.join(demo.bug_reports, "batch")
    shutil.move(str(staging / "a"), target)  # rename(2): the files exist before any watch
    expected = {p.replace(str(staging / "a"), target): s for p, s in files.items()}
    demo.wait_shipped(expected)
    # mkdir -p then files, as fast as possible: none missed between mkdir and watch
    deep = os.path.join(demo.bug_reports, "x", "y", "z")
    os.makedirs(deep)
    quick = {os.path.join(deep, f"q{i}"): None for i in range(20)}
    for p in quick:
        quick[p] = write_file(p, os.urandom(100))
    demo.wait_shipped(quick)
    demo.stop_agent()


def test_names_with_newline_and_invalid_utf8(demo, tmp_path):
    demo.start_agent()
    names = [b"line\nbreak.pdf", b"caf\xe9-latin1.pdf", b"sp ace & \\back.pdf",
             "日本語.pdf".encode()]
    expected = {}
    for name in names:
        path = os.path.join(os.fsencode(demo.invoices), name)
        expected[os.fsdecode(path)] = write_file(path, os.urandom(1000) + name)
    demo.wait_shipped(expected)
    demo.stop_agent()
    for path, sha in expected.items():
        out = tmp_path / "r"
        demo.run("restore", "file", os.fsencode(path), "--to", str(out), check=0)
        assert sha256_file(os.path.join(os.fsencode(str(out)),
                                        os.path.basename(os.fsencode(path)))) == sha
    # catalog ls shows them escaped, and the escaped form restores too
    ls = demo.run("catalog", "ls", check=0).stdout
    assert b"line\\x0abreak.pdf" in ls and b"caf\\xe9-latin1.pdf" in ls
    assert all(line.count(b"/") >= 2 for line in ls.splitlines()), "one file per line"
    escaped = demo.invoices + "/caf\\xe9-latin1.pdf"
    p = demo.run("restore", "file", escaped, "--stdout", check=0)
    assert p.stdout.endswith(b"caf\xe9-latin1.pdf")


def test_files_created_while_stopped_ship_at_start(demo):
    demo.start_agent()
    first = os.path.join(demo.images, "before.jpg")
    demo.wait_shipped({first: write_file(first, os.urandom(10_000))})
    demo.stop_agent()
    later = {}
    for i in range(25):
        p = os.path.join(demo.images, f"while-down-{i}.jpg")
        later[p] = write_file(p, os.urandom(5000))
    changed_sha = write_file(first, b"edited while down")
    demo.start_agent()
    demo.wait_shipped({**later, first: changed_sha})
    demo.stop_agent()
    assert len(demo.query("SELECT id FROM versions")) == 27


def test_symlinks_recorded_not_followed_and_excludes(demo, tmp_path):
    secret = tmp_path / "outside.txt"
    secret.write_bytes(b"not to be backed up through a link")
    demo.start_agent()
    link = os.path.join(demo.images, "link.jpg")
    os.symlink(str(secret), link)
    skipped = os.path.join(demo.images, "upload.tmp")
    write_file(skipped, b"partial upload")
    kept = os.path.join(demo.images, "kept.jpg")
    kept_sha = write_file(kept, b"kept")
    demo.wait_shipped({kept: kept_sha})
    wait_for(lambda: demo.query(
        "SELECT v.kind, v.link_target, v.object_id FROM versions v JOIN paths p ON "
        "p.id = v.path_id WHERE p.path = ?", os.fsencode(link)), 20, "symlink recorded")
    kind, target, object_id = demo.query(
        "SELECT v.kind, v.link_target, v.object_id FROM versions v JOIN paths p ON "
        "p.id = v.path_id WHERE p.path = ?", os.fsencode(link))[0]
    assert (kind, bytes(target), object_id) == ("symlink", os.fsencode(str(secret)), None)
    assert demo.query("SELECT count(*) FROM paths WHERE path = ?", os.fsencode(skipped)) == [(0,)]
    demo.stop_agent()
    out = tmp_path / "r"
    demo.run("restore", "file", link, "--to", str(out), check=0)
    assert os.readlink(out / "link.jpg") == str(secret)


def test_scan_and_ship_without_the_agent(demo, tmp_path):
    files = {}
    for i in range(12):
        p = os.path.join(demo.bug_reports, f"r{i}.json")
        files[p] = write_file(p, os.urandom(700))
    p = demo.run("--json", "scan", check=0)
    assert b'"queued":12' in p.stdout, p.stdout
    p = demo.run("--json", "ship", "--wait", check=0)
    assert p.stdout.strip() == b'{"queued":0,"waiting_for_first_copy":0,"copies_queued":0}'
    demo.wait_shipped(files, timeout=5)
    # a destination that cannot be written: ship --wait gives up and says so
    os.rename(demo.dest, demo.dest + ".gone")
    open(demo.dest, "w").close()
    more = os.path.join(demo.bug_reports, "late.json")
    write_file(more, b"{}")
    demo.run("scan", check=0)
    p = demo.run("ship", "--wait", "--timeout", "3", check=1)
    assert b"not everything could be shipped" in p.stderr or b"destination" in p.stderr, p.stderr


def test_start_up_scan_walked_by_two_threads_finds_each_change_once(demo):
    """A start-up scan is walked by two threads that hand each other folders. With a
    change of every kind in each of 40 folders (two levels deep), made while the agent was
    stopped, each change is found exactly once whichever thread walked its folder: the
    log's counts are exact, the second thread walked some of the folders, and the catalog
    then matches the disk file for file."""
    top = os.path.join(demo.bug_reports, "many")
    files = {}
    for i in range(40):
        for j in range(10):
            path = os.path.join(top, f"g{i % 4}", f"f{i:02d}", f"n{j}.json")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            files[path] = write_file(path, os.urandom(600))
    demo.start_agent()
    demo.wait_shipped(files)
    demo.stop_agent()
    changed, gone = {}, []
    for i in range(40):
        folder = os.path.join(top, f"g{i % 4}", f"f{i:02d}")
        changed[os.path.join(folder, "n0.json")] = write_file(os.path.join(folder, "n0.json"),
                                                              os.urandom(700))
        os.unlink(os.path.join(folder, "n1.json"))
        gone.append(os.path.join(folder, "n1.json"))
        changed[os.path.join(folder, "new.json")] = write_file(
            os.path.join(folder, "new.json"), os.urandom(50))
    demo.start_agent()
    log = demo.log_text().split("agent started")[-2]
    line = next(x for x in log.splitlines() if f"rescanned {demo.bug_reports} (start-up)" in x)
    assert "files=400 queued=80 deleted=40 folders=46 " in line, line
    assert int(line.split("helper_folders=")[1].split()[0]) > 0, line
    demo.wait_shipped(changed)
    for path in gone:
        assert demo.live_version(path) is None, path
    live = demo.live_paths(top)
    on_disk = {os.fsencode(os.path.join(d, f)) for d, _, fs in os.walk(top) for f in fs}
    assert live == on_disk


@pytest.mark.parametrize("max_listed", [None, "0", "3"])
def test_start_up_scan_finds_every_change_made_while_stopped(demo, monkeypatch, max_listed):
    """The start-up scan merges each folder's sorted listing with the catalog's sorted
    paths: every kind of change made while the agent was stopped is found, in names that
    sort around '/' ("a" "a.b" "a/" "a0"), nested and non-UTF-8 ones included, and nothing
    unchanged is shipped again. A folder with more names than the walk holds at once is
    walked one name at a time (max_listed lowers that bound: 0 for every folder, 3 for
    the larger ones here), with the same outcome."""
    if max_listed is not None:
        monkeypatch.setenv("CUSTODIAN_TEST_MAX_LISTED", max_listed)
    top = os.path.join(demo.images, "scan")
    os.makedirs(os.path.join(top, "a", "deep"))
    os.makedirs(os.path.join(top, "gone", "below"))
    names = ["a.b", "a-c", "a0", "a/inner.jpg", "a/deep/f.jpg", "size.jpg", "mtime.jpg",
             "replaced.jpg", "deleted.jpg", "gone/1.jpg", "gone/below/2.jpg", "same.jpg",
             "b.jpg"]
    files = {os.path.join(top, n): write_file(os.path.join(top, n), os.urandom(3000))
             for n in names}
    odd = os.path.join(os.fsencode(top), b"caf\xe9.jpg")
    files[os.fsdecode(odd)] = write_file(odd, b"latin-1 name")
    link = os.path.join(top, "link")
    os.symlink("a.b", link)
    demo.start_agent()
    demo.wait_shipped(files)
    wait_for(lambda: demo.live_version(link) is not None or demo.query(
        "SELECT 1 FROM versions v JOIN paths p ON p.id = v.path_id WHERE p.path = ? AND "
        "v.deleted_at IS NULL", os.fsencode(link)), 20, "symlink recorded")
    demo.stop_agent()
    before = {bytes(p): n for p, n in demo.query(
        "SELECT p.path, count(*) FROM versions v JOIN paths p ON p.id = v.path_id "
        "GROUP BY p.path")}

    p = lambda n: os.path.join(top, n)  # noqa: E731
    changed = {}
    with open(p("size.jpg"), "ab") as f:  # size
        f.write(b"more")
    changed[p("size.jpg")] = sha256_file(p("size.jpg"))
    st = os.stat(p("mtime.jpg"))  # mtime only, same bytes
    os.utime(p("mtime.jpg"), ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    changed[p("mtime.jpg")] = files[p("mtime.jpg")]
    st = os.stat(p("replaced.jpg"))  # same size and mtime, another inode and content
    write_file(p("replaced.new"), os.urandom(3000))
    os.utime(p("replaced.new"), ns=(st.st_atime_ns, st.st_mtime_ns))
    os.rename(p("replaced.new"), p("replaced.jpg"))
    changed[p("replaced.jpg")] = sha256_file(p("replaced.jpg"))
    for n in ("a.a", "a/new.jpg", "a/deep/g.jpg", "zz.jpg", "new/nested/n.jpg"):
        os.makedirs(os.path.dirname(p(n)), exist_ok=True)
        changed[p(n)] = write_file(p(n), os.urandom(500))
    os.unlink(p("deleted.jpg"))
    shutil.rmtree(p("gone"))
    os.unlink(link)
    os.symlink("a0", link)
    demo.start_agent()
    log = demo.log_text().split("agent started")[-2]
    assert f"rescanned {demo.images} (start-up)" in log and "queued=9 deleted=3" in log, log
    demo.wait_shipped(changed)
    wait_for(lambda: demo.query(
        "SELECT count(*) FROM versions v JOIN paths p ON p.id = v.path_id WHERE p.path = ?",
        os.fsencode(link))[0][0] == 2, 20, "retargeted symlink recorded")
    demo.stop_agent()
    for gone in ("deleted.jpg", "gone/1.jpg", "gone/below/2.jpg"):
        assert demo.live_version(p(gone)) is None, gone
        assert demo.query("SELECT v.deleted_at FROM versions v JOIN paths p ON "
                          "p.id = v.path_id WHERE p.path = ?", os.fsencode(p(gone)))[0][0]
    after = {bytes(q): n for q, n in demo.query(
        "SELECT p.path, count(*) FROM versions v JOIN paths p ON p.id = v.path_id "
        "GROUP BY p.path")}
    for path, n in before.items():
        grew = os.fsdecode(path) in changed or os.fsdecode(path) == link
        assert after[path] == n + (1 if grew else 0), (path, n, after[path])
    assert demo.shipped(os.fsdecode(odd), files[os.fsdecode(odd)])


def test_start_up_scan_deletes_what_waited_for_its_first_copy(demo):
    """A file sealed but still waiting for its first copy (the destination down) when the
    agent stopped, then deleted, or its folder renamed or removed, or a folder put in its
    place, while it was stopped: the start-up scan ends its wait as deleted, so that when
    the destination comes back the catalog does not show as live a file that is no longer
    there (the crash loop found one in a renamed folder). The files still on disk ship, at
    their new paths."""
    top = os.path.join(demo.invoices, "wait")
    names = ["alone.pdf", "sub/in-sub.pdf", "moved/deep/in-moved.pdf", "kept.pdf", "dir-now"]
    for n in names:
        os.makedirs(os.path.dirname(os.path.join(top, n)), exist_ok=True)
    objects = os.path.join(demo.dest, "objects")
    twice = os.path.join(top, "twice.pdf")  # live, then a new version waiting, then deleted
    demo.start_agent()
    first = os.path.join(demo.invoices, "first.pdf")
    demo.wait_shipped({first: write_file(first, os.urandom(100)),
                       twice: write_file(twice, os.urandom(100))})
    # The destination fails: every write of a copy fails, the versions wait.
    shutil.move(objects, objects + ".saved")
    open(objects, "w").close()
    files = {os.path.join(top, n): write_file(os.path.join(top, n), os.urandom(2000))
             for n in names}
    write_file(twice, os.urandom(200))
    wait_for(lambda: demo.query("SELECT count(*) FROM pending_versions")[0][0] == len(names) + 1,
             60, "six versions waiting for their first copy")
    demo.stop_agent(expect=None)
    os.unlink(os.path.join(top, "alone.pdf"))
    shutil.rmtree(os.path.join(top, "sub"))
    os.rename(os.path.join(top, "moved"), os.path.join(top, "moved2"))
    os.unlink(twice)
    os.unlink(os.path.join(top, "dir-now"))
    inner = os.path.join(top, "dir-now", "inner.pdf")
    os.mkdir(os.path.dirname(inner))
    inner_sha = write_file(inner, os.urandom(300))
    os.unlink(objects)
    shutil.move(objects + ".saved", objects)
    demo.start_agent()
    moved = os.path.join(top, "moved2", "deep", "in-moved.pdf")
    kept = os.path.join(top, "kept.pdf")
    demo.wait_shipped({moved: files[os.path.join(top, "moved/deep/in-moved.pdf")],
                       kept: files[kept], inner: inner_sha})
    # each gone file counted once: four by the pass over waiting versions, twice.pdf by
    # the walk (its live version); the moved file and the folder's file queued
    log = demo.log_text().split("agent started")[-2]
    line = next(x for x in log.splitlines() if f"rescanned {demo.invoices} (start-up)" in x)
    assert " queued=2 deleted=5 " in line, line
    wait_for(lambda: demo.query("SELECT (SELECT count(*) FROM queue) + (SELECT count(*) FROM"
                                " copy_queue) + (SELECT count(*) FROM pending_versions)")[0][0]
             == 0, 60, "everything drained")
    demo.stop_agent()
    live = demo.live_paths(top)
    assert live == {os.fsencode(moved), os.fsencode(kept), os.fsencode(inner)}


def test_renamed_away_and_back_while_waiting_for_its_first_copy(demo):
    """A file sealed and waiting for its first copy (the destination down) is renamed
    away and back: the version left at its name by the first rename is a deleted one,
    and must not stand for the file when it comes back, or the file would be recorded
    as deleted while it is there. Once the destination is back it is live, restorable."""
    objects = os.path.join(demo.dest, "objects")
    demo.start_agent()
    first = os.path.join(demo.invoices, "first.pdf")
    demo.wait_shipped({first: write_file(first, os.urandom(100))})
    shutil.move(objects, objects + ".saved")
    open(objects, "w").close()
    path = os.path.join(demo.invoices, "ping.pdf")
    other = os.path.join(demo.invoices, "pong.pdf")
    sha = write_file(path, os.urandom(3000))
    pending = "SELECT count(*) FROM pending_versions pv JOIN paths p ON p.id = pv.path_id " \
              "WHERE p.path = ? AND pv.deleted_at IS NULL"
    wait_for(lambda: demo.query(pending, os.fsencode(path))[0][0] == 1, 60, "ping waiting")
    os.rename(path, other)
    wait_for(lambda: demo.query(pending, os.fsencode(other))[0][0] == 1, 60, "pong waiting")
    os.rename(other, path)
    wait_for(lambda: demo.query(pending, os.fsencode(path))[0][0] == 1, 60, "ping again")
    os.unlink(objects)
    shutil.move(objects + ".saved", objects)
    demo.wait_shipped({path: sha})
    wait_for(lambda: demo.query("SELECT count(*) FROM pending_versions")[0][0] == 0, 60,
             "copies made")
    demo.stop_agent()
    assert demo.live_version(path) is not None
    assert demo.live_version(other) is None


@pytest.mark.parametrize("max_listed", [None, "0"])
def test_file_whose_name_a_folder_took_while_stopped_is_deleted(demo, monkeypatch, max_listed):
    """A file replaced, while the agent was stopped, by a folder of the same name (with
    files inside): the start-up scan records the file deleted, and only the file; the
    folder's files ship. A folder replaced by a file is the other way round. The same
    when folders are walked one name at a time (max_listed 0)."""
    if max_listed is not None:
        monkeypatch.setenv("CUSTODIAN_TEST_MAX_LISTED", max_listed)
    x = os.path.join(demo.invoices, "x")
    y = os.path.join(demo.invoices, "y")
    y_inner = os.path.join(y, "old.pdf")
    os.mkdir(y)
    demo.start_agent()
    demo.wait_shipped({x: write_file(x, os.urandom(100)),
                       y_inner: write_file(y_inner, os.urandom(100))})
    demo.stop_agent()
    os.unlink(x)
    os.makedirs(os.path.join(x, "deeper"))
    changed = {os.path.join(x, "a.pdf"): write_file(os.path.join(x, "a.pdf"), os.urandom(200)),
               os.path.join(x, "deeper", "b.pdf"): write_file(os.path.join(x, "deeper", "b.pdf"),
                                                              os.urandom(300))}
    shutil.rmtree(y)
    changed[y] = write_file(y, os.urandom(400))
    demo.start_agent()
    demo.wait_shipped(changed)
    log = demo.log_text().split("agent started")[-2]
    assert f"rescanned {demo.invoices} (start-up)" in log and "queued=3 deleted=2" in log, log
    demo.stop_agent()
    assert demo.live_version(x) is None
    assert demo.live_version(y_inner) is None
    live = demo.live_paths()
    assert live == {os.fsencode(p) for p in changed}
