"""
The seven-year lifecycle, driven through simulated years with `prune --as-of`:
a hot NAS and two archive-role destinations (min_copies = 2). At 24 months
and a day the hot copies leave the NAS (the archive tier holds two verified
copies, coverage agrees); at 84 months and two days deleted files' objects
leave every destination, each deletion an audit row written first, while the
live file and the held one stay; releasing the hold lets it go; restore
points follow keep_daily and the first of each month; `prune --check` agrees
with what the destinations hold; kill -9 in the middle of a prune, then a
rerun, reaches the same end state with exactly one audit row per deletion.
"""
import datetime
import json
import os
import signal
import subprocess
import time
import zoneinfo

from conftest import wait_for, write_file

NY = zoneinfo.ZoneInfo("America/New_York")


def later(days=0, months=0):
    """RFC 3339 for now + months + days (calendar months, New York)."""
    t = datetime.datetime.now(NY)
    y, m = divmod(t.month - 1 + months, 12)
    import calendar
    day = min(t.day, calendar.monthrange(t.year + y, m + 1)[1])
    t = t.replace(year=t.year + y, month=m + 1, day=day) + datetime.timedelta(days=days)
    return t.isoformat(timespec="seconds")


def objects_in(root):
    out = set()
    for _, _, fs in os.walk(os.path.join(root, "objects")):
        out.update(f for f in fs if not f.startswith("."))
    return out


def setup_three(demo):
    vault = demo.add_local_destination("vault")
    vault2 = demo.add_local_destination("vault2")
    for name in ("vault", "vault2"):
        text = open(demo.conf).read().replace(
            f"[destination {name}]\ntype = local\nrole = replica",
            f"[destination {name}]\ntype = local\nrole = archive")
        open(demo.conf, "w").write(text)
    return vault, vault2


def ship(demo, names):
    files = {}
    for n in names:
        p = os.path.join(demo.invoices, n)
        files[p] = write_file(p, os.urandom(3000))
    demo.wait_shipped(files)
    return files


def oid(demo, path):
    return demo.live_version(path)[1] if demo.live_version(path) else demo.query(
        "SELECT v.object_id FROM versions v JOIN paths p ON p.id = v.path_id WHERE p.path = ?"
        " ORDER BY v.id DESC LIMIT 1", os.fsencode(path))[0][0]


def prune(demo, as_of, confirm=True, check=0):
    args = ["--json", "prune", "--as-of", as_of] + (["--confirm"] if confirm else [])
    return json.loads(demo.run(*args, check=check).stdout)


def test_seven_years_of_a_clinic(demo):
    vault, vault2 = setup_three(demo)
    demo.start_agent()
    files = ship(demo, ["live.pdf", "gone.pdf", "held.pdf"])
    live, gone, held = (os.path.join(demo.invoices, n) for n in ("live.pdf", "gone.pdf",
                                                                  "held.pdf"))
    ids = {p: oid(demo, p) for p in files}
    wait_for(lambda: all(ids[p] in objects_in(vault) and ids[p] in objects_in(vault2)
                         for p in files), 60, "copies on the archive destinations")
    os.unlink(gone)
    os.unlink(held)
    wait_for(lambda: demo.live_version(gone) is None and demo.live_version(held) is None, 30,
             "tombstones")
    demo.stop_agent()
    demo.run("hold", "add", "--path", held, "--reason", "litigation 2026-17", check=0)
    holds = json.loads(demo.run("--json", "hold", "list", check=0).stdout)
    assert len(holds) == 1 and holds[0]["placed_by"] and holds[0]["reason"] == "litigation 2026-17"

    # A year on: nothing to do.
    assert prune(demo, later(months=12), confirm=False)["actions"] == []

    # 24 months and a day: the NAS gives up its copies, the archive tier has two.
    plan = prune(demo, later(months=24, days=1), confirm=False)
    assert {a["action"] for a in plan["actions"]} == {"delete hot copy"}, plan
    assert all(a["destinations"] == ["local"] for a in plan["actions"])
    assert not os.listdir(os.path.join(demo.dest, "objects")) == []  # a dry run changes nothing
    done = prune(demo, later(months=24, days=1))
    held_id = ids[held]
    # the held object keeps its hot copy: a hold freezes tier deletions too
    assert objects_in(demo.dest) == {held_id}, objects_in(demo.dest)
    assert objects_in(vault) == objects_in(vault2) == set(ids.values())
    assert done["deleted"] == 2 and done["failed"] == 0
    # coverage agrees: nothing lacking, status whole (the agent re-copies nothing)
    demo.start_agent()
    time.sleep(3)
    st = demo.wait_status(True, 30)
    assert objects_in(demo.dest) == {held_id}
    demo.stop_agent()
    demo.run("verify", check=0)
    demo.run("prune", "--check", "--as-of", later(months=24, days=1), check=0)

    # 84 months and two days: the deleted file's object goes everywhere; the live one
    # and the held one stay, each with its reason.
    plan = prune(demo, later(months=84, days=2), confirm=False)
    gone_actions = [a for a in plan["actions"] if a["action"] == "delete object"]
    assert [a["object"] for a in gone_actions] == [ids[gone]], plan
    reasons = {k["object"]: k["reasons"] for k in plan["kept"]}
    assert "past retention, still live" in reasons[ids[live]]
    assert "legal hold" in reasons[held_id]
    before = demo.query("SELECT count(*) FROM audit WHERE action = 'prune_delete'")[0][0]
    prune(demo, later(months=84, days=2))
    for root in (demo.dest, vault, vault2):
        assert ids[gone] not in objects_in(root)
    assert ids[live] in objects_in(vault) and held_id in objects_in(vault)
    rows = [json.loads(d) for (d,) in demo.query(
        "SELECT detail FROM audit WHERE action = 'prune_delete' ORDER BY id")[before:]]
    assert sorted(r["dest"] for r in rows) == ["vault", "vault2"], rows
    assert all(r["object"] == ids[gone] and r["rule"] for r in rows)
    assert any("gone.pdf" in p for p in rows[0]["paths"])
    # the catalog still knows it, marked
    assert demo.query("SELECT deleted_at IS NOT NULL FROM objects WHERE id = ?",
                      ids[gone])[0][0] == 1
    assert demo.query("SELECT count(*) FROM pruned_copies WHERE object_id = ?",
                      ids[gone])[0][0] == 3
    demo.run("prune", "--check", "--as-of", later(months=84, days=2), check=0)
    hist = demo.run("catalog", "history", gone, check=0).stdout.decode()
    assert hist.count("removed from") == 3 and "by retention" in hist, hist

    # The hold released: the held file's object goes too.
    hold_id = holds[0]["id"]
    demo.run("hold", "release", str(hold_id), "--reason", "case closed", check=0)
    prune(demo, later(months=84, days=2))
    for root in (demo.dest, vault, vault2):
        assert held_id not in objects_in(root)
    actions = [a for (a,) in demo.query("SELECT action FROM audit")]
    assert "hold_add" in actions and "hold_release" in actions and "prune" in actions
    # status remembers the last prune
    st = json.loads(demo.run("--json", "status").stdout)
    assert any("last prune" in n for n in st["notes"]), st


def test_restore_points_keep_daily_and_the_first_of_each_month(demo):
    demo.start_agent()
    ship(demo, ["a.pdf"])
    demo.stop_agent()
    today = datetime.datetime.now(NY).date()
    yesterday = today - datetime.timedelta(days=1)
    demo.run("daily", "--date", yesterday.isoformat(), "--backfill", check=0, timeout=300)
    demo.run("daily", check=0, timeout=300)
    points = {d for (d,) in demo.query("SELECT date FROM daily_runs")}
    assert points == {yesterday.isoformat(), today.isoformat()}
    # 40 days on: only the first point of each month remains
    plan = prune(demo, later(days=40), confirm=False)
    deleted = {a["date"] for a in plan["actions"] if a["action"] == "delete restore point"}
    same_month = yesterday.month == today.month
    assert deleted == ({today.isoformat()} if same_month else set()), plan
    prune(demo, later(days=40))
    keys = [k for (k,) in demo.query(
        "SELECT a.remote_key FROM artifacts a WHERE a.date = ?", today.isoformat())]
    for k in keys:
        assert os.path.exists(os.path.join(demo.dest, k)) != same_month, k
    # 84 months and a few days: every point is past keep_monthly_months
    prune(demo, later(months=84, days=3))
    for (k,) in demo.query("SELECT remote_key FROM artifacts"):
        assert not os.path.exists(os.path.join(demo.dest, k)), k
    assert demo.query("SELECT count(*) FROM daily_attempts WHERE pruned_at IS NULL")[0][0] == 0


def test_kill_9_during_prune_then_rerun_is_the_same_end_state(demo):
    vault, vault2 = setup_three(demo)
    demo.start_agent()
    names = [f"d{i:03d}.pdf" for i in range(120)]
    files = ship(demo, names)
    ids = {p: oid(demo, p) for p in files}
    wait_for(lambda: set(ids.values()) <= objects_in(vault2), 120, "archive copies")
    for p in files:
        os.unlink(p)
    wait_for(lambda: all(demo.live_version(p) is None for p in files), 60, "tombstones")
    demo.stop_agent()
    as_of = later(months=84, days=2)
    total = 3 * len(files)
    partial = 0
    for attempt in range(6):
        p = subprocess.Popen([demo.bin, "-c", demo.conf, "prune", "--confirm", "--as-of", as_of],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=demo.env())
        # killed as soon as it has audited some deletions, and not all
        start = demo.query("SELECT count(*) FROM audit WHERE action = 'prune_delete'")[0][0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            n = demo.query("SELECT count(*) FROM audit WHERE action = 'prune_delete'")[0][0]
            if n > start:
                break
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait()
        n = demo.query("SELECT count(*) FROM audit WHERE action = 'prune_delete'")[0][0]
        partial += 0 < n < total
        if n >= total:
            break
    assert partial, "no kill landed in the middle of a prune"
    prune(demo, as_of)
    for root in (demo.dest, vault, vault2):
        assert not (set(ids.values()) & objects_in(root))
    rows = [json.loads(d) for (d,) in demo.query(
        "SELECT detail FROM audit WHERE action = 'prune_delete'")]
    pairs = [(r["object"], r["dest"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == 3 * len(files), (len(pairs), len(set(pairs)))
    assert demo.query("SELECT count(*) FROM prune_pending")[0][0] == 0
    assert demo.query("SELECT count(*) FROM pruned_copies")[0][0] == 3 * len(files)
    assert demo.query("PRAGMA integrity_check")[0][0] == "ok"
    demo.run("audit", "verify", check=0)
