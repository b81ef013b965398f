"""
The seven-year lifecycle on S3, against Ceph RGW (tests/e2e/servers.py):
Object Lock on every object and artifact of a destination with
`object_lock = yes`, each retained until its own deletion date by the
retention planner's rules (a file's object: its newest version's capture +
delete_after_months; a daily point's artifacts: keep_daily, or
keep_monthly_months for the first point of a month); content that comes back
in a new version has its stored copy's retention extended in place (no second
upload, no second version) before that version counts as shipped; a plain
client's DELETE of a locked version is refused. Legal holds set and clear the
S3 legal-hold flag. The tier transition at hot_months is the bucket's own
lifecycle rule, which custodian installs and doctor checks (a self-copy under
Object Lock would make a second locked version); its pass is driven two years
ahead with faketime on a gateway of the test's own.
"""
import calendar
import json
import xml.etree.ElementTree as ET
import datetime
import os
import subprocess
import zoneinfo

import pytest

from conftest import sha256_file as sha_of, wait_for, write_file
from servers import rgw_server

NY = zoneinfo.ZoneInfo("America/New_York")
UTC = datetime.timezone.utc


def add_months(ms, months):
    """ms + months calendar months at the same New York wall time (day clamped), in
    whole seconds (what S3 keeps of a retain-until date)."""
    t = datetime.datetime.fromtimestamp(ms / 1000, NY)
    y, m = divmod(t.month - 1 + months, 12)
    day = min(t.day, calendar.monthrange(t.year + y, m + 1)[1])
    wall = t.replace(year=t.year + y, month=m + 1, day=day, tzinfo=None)
    return int(wall.replace(tzinfo=NY).timestamp())


def local_midnight(date, days):
    d = datetime.date.fromisoformat(date) + datetime.timedelta(days=days)
    return int(datetime.datetime(d.year, d.month, d.day, tzinfo=NY).timestamp())


def retain_until(h):
    """The retain-until date HEAD shows, in seconds since the epoch."""
    s = h["x-amz-object-lock-retain-until-date"]
    return int(datetime.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=UTC).timestamp())


def object_key(object_id):
    return f"objects/{object_id[:2]}/{object_id}"


def lock_demo(demo, rgw, **extra):
    from test_remote import s3_section, set_destinations

    bucket = rgw.new_bucket("life-lock", object_lock=True)
    set_destinations(demo, s3_section(rgw, bucket, name="vault", object_lock="yes",
                                      lock_mode="COMPLIANCE", **extra))
    return bucket


def versions_of(demo, path):
    return demo.query(
        "SELECT v.object_id, v.first_seen FROM versions v JOIN paths p ON p.id = v.path_id"
        " WHERE p.path = ? ORDER BY v.id", os.fsencode(path))


def test_every_object_is_locked_until_its_own_date_and_dedup_extends_it(demo, rgw):
    bucket = lock_demo(demo, rgw)
    demo.start_agent()
    content = os.urandom(5000)
    first = os.path.join(demo.invoices, "INV-1.pdf")
    demo.wait_shipped({first: write_file(first, content)})
    ((oid, seen1),) = versions_of(demo, first)
    key = object_key(oid)
    h = rgw.head(bucket, key)
    assert h["x-amz-object-lock-mode"] == "COMPLIANCE", h
    assert retain_until(h) == add_months(seen1, 84), (h, seen1)
    assert demo.query("SELECT locked_until / 1000 FROM copies WHERE object_id = ?",
                      oid)[0][0] == add_months(seen1, 84)

    # The same content again, later: the stored copy must now be kept until the new
    # version's own date. Extended in place, before the version counts as shipped.
    wait_for(lambda: add_months(int(datetime.datetime.now().timestamp() * 1000), 84) >
             add_months(seen1, 84), 5, "a later second")
    second = os.path.join(demo.bug_reports, "copy-of-INV-1.pdf")
    demo.wait_shipped({second: write_file(second, content)})
    ((oid2, seen2),) = versions_of(demo, second)
    assert oid2 == oid and add_months(seen2, 84) > add_months(seen1, 84)
    h = rgw.head(bucket, key)
    assert retain_until(h) == add_months(seen2, 84), (h, seen1, seen2)
    assert "lock extended dest=vault object=" + oid[:16] in demo.log_text()
    # one version in the bucket: nothing was uploaded twice
    assert [v["key"] for v in rgw.list_versions(bucket, key)] == [key]
    assert demo.query("SELECT count(*) FROM lock_extend")[0][0] == 0
    assert demo.query("SELECT locked_until / 1000 FROM copies WHERE object_id = ?",
                      oid)[0][0] == add_months(seen2, 84)

    # A client that is not custodian cannot delete the version before its date.
    (v,) = rgw.list_versions(bucket, key)
    status, _, body = rgw.request("DELETE", f"/{bucket}/{key}?versionId={v['version_id']}")
    assert status == 403, (status, body)
    assert rgw.get(bucket, key, v["version_id"])
    demo.stop_agent()


def test_daily_artifacts_are_locked_until_the_plan_lets_the_point_go(demo, rgw):
    bucket = lock_demo(demo, rgw)
    demo.start_agent()
    path = os.path.join(demo.invoices, "a.pdf")
    demo.wait_shipped({path: write_file(path, os.urandom(2000))})
    demo.stop_agent()
    today = datetime.datetime.now(NY).date()
    yesterday = today - datetime.timedelta(days=1)
    demo.run("daily", check=0, timeout=300)
    demo.run("daily", "--date", yesterday.isoformat(), "--backfill", check=0, timeout=300)
    at = dict(demo.query("SELECT date, min(started_at) FROM daily_attempts WHERE status = 'ok'"
                         " GROUP BY date"))
    assert set(at) == {today.isoformat(), yesterday.isoformat()}, at
    arts = demo.query("SELECT date, remote_key FROM artifacts")
    assert {d for d, _ in arts} == set(at)
    for date, key in arts:
        # today's point was taken first: the first of its month, kept keep_monthly_months;
        # yesterday's came later in the same month (unless today is the 1st): keep_daily
        first = date == today.isoformat() or yesterday.month != today.month
        want = add_months(at[date], 84) if first else local_midnight(date, 35)
        h = rgw.head(bucket, key)
        assert h["x-amz-object-lock-mode"] == "COMPLIANCE", (key, h)
        assert retain_until(h) == want, (date, key, h, want)


def test_a_copy_without_its_lock_is_not_verified_and_the_agent_locks_it(demo, rgw):
    from test_remote import s3_section, set_destinations

    # Shipped while the config did not ask for Object Lock (the bucket has it).
    bucket = rgw.new_bucket("life-late", object_lock=True)
    set_destinations(demo, s3_section(rgw, bucket, name="vault"))
    demo.start_agent()
    path = os.path.join(demo.invoices, "early.pdf")
    demo.wait_shipped({path: write_file(path, os.urandom(3000))})
    demo.stop_agent()
    ((oid, seen),) = versions_of(demo, path)
    key = object_key(oid)
    assert "x-amz-object-lock-mode" not in rgw.head(bucket, key)
    set_destinations(demo, s3_section(rgw, bucket, name="vault", object_lock="yes",
                                      lock_mode="GOVERNANCE"))
    p = demo.run("verify", check=1)
    out = p.stdout.decode()
    assert f"FAIL  vault: {key}: not locked until" in out and "no lock" in out, out
    # the agent extends what verify found
    demo.start_agent()
    wait_for(lambda: demo.query("SELECT count(*) FROM lock_extend")[0][0] == 0, 60,
             "the lock extension")
    h = rgw.head(bucket, key)
    assert h["x-amz-object-lock-mode"] == "GOVERNANCE", h
    assert retain_until(h) == add_months(seen, 84), h
    demo.stop_agent()
    demo.run("verify", check=0)


def legal_hold(rgw, bucket, key):
    """GetObjectLegalHold of key's only version: "ON", "OFF", or None (never set)."""
    (v,) = rgw.list_versions(bucket, key)
    status, _, body = rgw.request("GET", f"/{bucket}/{key}?legal-hold&versionId={v['version_id']}")
    if status == 404:
        return None
    assert status == 200, (status, body)
    return ET.fromstring(body).findtext("{http://s3.amazonaws.com/doc/2006-03-01/}Status") or \
        ET.fromstring(body).findtext("Status")


def test_holds_set_the_legal_hold_flag_and_release_clears_it_unless_still_held(demo, rgw):
    bucket = lock_demo(demo, rgw)
    demo.start_agent()
    held_dir = os.path.join(demo.invoices, "case-117")
    os.makedirs(held_dir)
    a, b = os.path.join(held_dir, "a.pdf"), os.path.join(demo.invoices, "b.pdf")
    demo.wait_shipped({a: write_file(a, os.urandom(1000)), b: write_file(b, os.urandom(1000))})
    demo.stop_agent()
    ka, kb = (object_key(versions_of(demo, p)[0][0]) for p in (a, b))
    assert legal_hold(rgw, bucket, ka) is None and legal_hold(rgw, bucket, kb) is None

    out = demo.run("hold", "add", "--path", held_dir, "--reason", "subpoena 26-117",
                   check=0).stdout.decode()
    assert "legal-hold flag set on 1 copies" in out, out
    assert rgw.head(bucket, ka)["x-amz-object-lock-legal-hold"] == "ON"
    assert legal_hold(rgw, bucket, ka) == "ON" and legal_hold(rgw, bucket, kb) is None
    demo.run("hold", "add", "--all", "--reason", "insurer", check=0)
    assert legal_hold(rgw, bucket, ka) == "ON" and legal_hold(rgw, bucket, kb) == "ON"
    ids = {h["kind"]: h["id"] for h in json.loads(demo.run("--json", "hold", "list").stdout)}

    # releasing --all clears b; a stays held by the path hold
    demo.run("hold", "release", str(ids["all"]), "--reason", "settled", check=0)
    assert legal_hold(rgw, bucket, ka) == "ON" and legal_hold(rgw, bucket, kb) == "OFF"
    assert rgw.head(bucket, kb).get("x-amz-object-lock-legal-hold", "OFF") == "OFF"
    demo.run("hold", "release", str(ids["path"]), "--reason", "case closed", check=0)
    assert legal_hold(rgw, bucket, ka) == "OFF"
    flags = [json.loads(d) for (d,) in demo.query(
        "SELECT detail FROM audit WHERE action = 'hold_flags' ORDER BY id")]
    assert [(f["legal_hold"], f["copies"], f["failed"]) for f in flags] == [
        ("ON", 1, 0), ("ON", 2, 0), ("OFF", 1, 0), ("OFF", 1, 0)], flags


def test_a_copy_shipped_after_a_hold_is_flagged_by_the_next_prune(demo, rgw):
    bucket = lock_demo(demo, rgw)
    demo.run("hold", "add", "--all", "--reason", "audit 2026", check=0)
    demo.start_agent()
    late = os.path.join(demo.invoices, "late.pdf")
    demo.wait_shipped({late: write_file(late, os.urandom(1500))})
    demo.stop_agent()
    key = object_key(versions_of(demo, late)[0][0])
    assert legal_hold(rgw, bucket, key) is None  # shipped after the hold was placed
    out = demo.run("prune", "--confirm", check=0).stdout.decode()
    assert "legal-hold flag set on 1 copies shipped since the last prune" in out, out
    assert legal_hold(rgw, bucket, key) == "ON"
    # the next prune asks again only for copies made since (a day's overlap): idempotent
    demo.run("prune", "--confirm", check=0)
    assert legal_hold(rgw, bucket, key) == "ON"


def later(days=0, months=0):
    """RFC 3339 for now + months + days (calendar months, New York)."""
    t = datetime.datetime.now(NY)
    y, m = divmod(t.month - 1 + months, 12)
    day = min(t.day, calendar.monthrange(t.year + y, m + 1)[1])
    t = t.replace(year=t.year + y, month=m + 1, day=day) + datetime.timedelta(days=days)
    return t.isoformat(timespec="seconds")


def lc_process(r, days):
    """One lifecycle pass of the gateway as if `days` days had passed (the recipe's
    faketime: only the wall clock is faked, else the pass hangs)."""
    p = subprocess.run(["faketime", "-f", f"+{days}d", "radosgw-admin", "-c", r.conf, "lc",
                        "process"], capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, FAKETIME_DONT_FAKE_MONOTONIC="1"))
    assert p.returncode == 0, p.stderr.decode()[-2000:]


def doctor_check(demo, area, check):
    checks = json.loads(demo.run("--json", "doctor", check=None).stdout)["checks"]
    return next(c for c in checks if c["area"] == area and c["check"] == check)


def test_at_24_months_and_a_day_the_lifecycle_rule_has_moved_copies_to_the_archive_class(
        demo, tmp_path):
    from test_remote import s3_section, set_destinations

    with rgw_server(str(tmp_path / "rgw")) as r:
        bucket = r.new_bucket("life-tier", object_lock=True)
        vault = str(tmp_path / "vault")
        os.makedirs(vault)
        set_destinations(demo, f"""
[destination nas]
type = local
path = {demo.dest}
""" + s3_section(r, bucket, name="cloud", role="replica", archive_class="DEEP_ARCHIVE",
                 object_lock="yes", lock_mode="COMPLIANCE") + f"""
[destination vault]
type = local
role = archive
path = {vault}
""")
        demo.start_agent()
        files = {}
        for n in ("t1.png", "t2.png"):
            p = os.path.join(demo.images, n)
            files[p] = write_file(p, os.urandom(4000))
        demo.wait_shipped(files)
        ids = [versions_of(demo, p)[0][0] for p in files]
        wait_for(lambda: demo.query("SELECT count(*) FROM copies")[0][0] == 6, 60, "copies")
        demo.stop_agent()
        before = {v["key"]: v for v in r.list_versions(bucket, "objects/")}
        assert {v["storage_class"] for v in before.values()} == {"STANDARD"}, before

        c = doctor_check(demo, "destination cloud", "lifecycle rule")
        assert c["result"] != "ok" and "no lifecycle rule" in c["detail"], c
        plan = json.loads(demo.run("--json", "prune", "--confirm", check=0).stdout)
        assert plan["failed"] == 0, plan
        c = doctor_check(demo, "destination cloud", "lifecycle rule")
        assert c["result"] == "ok" and "DEEP_ARCHIVE 731 days" in c["detail"], c

        # Before the rule's day nothing moves; 24 months on, the plan waits for it.
        lc_process(r, 700)
        assert {v["storage_class"] for v in r.list_versions(bucket, "objects/")} == {"STANDARD"}
        plan = json.loads(demo.run("--json", "prune", "--confirm", "--as-of",
                                   later(months=24, days=1), check=0).stdout)
        assert plan["waiting_transition"] == 2 and plan["transitioned"] == 0, plan
        assert all(os.path.exists(os.path.join(demo.dest, object_key(i))) for i in ids)

        # The server's own pass, two years on: same versions, same locks, archive class.
        lc_process(r, 733)
        after = {v["key"]: v for v in r.list_versions(bucket, "objects/")}
        assert set(after) == set(before) and len(after) == 2, after
        for k, v in after.items():
            assert v["storage_class"] == "DEEP_ARCHIVE", v
            assert v["version_id"] == before[k]["version_id"], (v, before[k])
            h = r.head(bucket, k)
            assert h["x-amz-object-lock-mode"] == "COMPLIANCE", h
        assert len(r.list_versions(bucket, "objects/")) == 2  # no second version anywhere
        plan = json.loads(demo.run("--json", "prune", "--confirm", "--as-of",
                                   later(months=24, days=1), check=0).stdout)
        assert plan["transitioned"] == 2 and plan["failed"] == 0, plan
        assert {t for (t,) in demo.query("SELECT tier FROM copies WHERE dest = 'cloud'")} == \
            {"archive"}
        # two verified archive copies (the bucket's, the vault's): the NAS copies go
        for i in ids:
            assert not os.path.exists(os.path.join(demo.dest, object_key(i))), i
            assert os.path.exists(os.path.join(vault, object_key(i))), i
        assert demo.query("SELECT count(*) FROM copies WHERE dest = 'nas'")[0][0] == 0
        # the listings agree with the plan: nothing missing, nothing left, nothing unknown
        p = demo.run("prune", "--check", "--as-of", later(months=24, days=1), check=0)
        assert b"cloud" in p.stdout and b"nas" in p.stdout, p.stdout


# ---------------------------------------------------------------- archive restores
#
# RGW cannot thaw (it answers RestoreObject with 400 and serves archive classes at once),
# so these tests talk to tests/servers/thaw_shim.py, a small protocol shim in front of the
# session's RGW that implements RestoreObject, x-amz-restore and 403 InvalidObjectState for
# GLACIER and DEEP_ARCHIVE objects and passes every other request through untouched.

SHIM = os.path.join(os.path.dirname(__file__), "..", "servers", "thaw_shim.py")


@pytest.fixture
def shim(rgw, tmp_path):
    port_file, log = str(tmp_path / "shim.port"), str(tmp_path / "shim.log")
    p = subprocess.Popen(["/usr/bin/python3", SHIM, "--upstream", rgw.endpoint, "--ca",
                          rgw.ca_file, "--port-file", port_file, "--delay", "4", "--log", log],
                         stdout=subprocess.DEVNULL, stderr=open(str(tmp_path / "shim.err"), "w"))
    try:
        wait_for(lambda: os.path.exists(port_file) or p.poll() is not None, 30, "the shim")
        assert p.poll() is None, open(str(tmp_path / "shim.err")).read()
        port = int(open(port_file).read())

        class Shim:
            endpoint = f"http://127.0.0.1:{port}"

            @staticmethod
            def requests(op=None):
                if not os.path.exists(log):
                    return []
                rows = [json.loads(line) for line in open(log)]
                return [r for r in rows if op is None or r["op"] == op]
        yield Shim
    finally:
        p.terminate()
        p.wait(timeout=30)


def to_deep_archive(rgw, bucket, key):
    """What a transition does to the copy (the test's shortcut: RGW's own self-copy)."""
    rgw.ok("PUT", f"/{bucket}/{key}", headers={
        "x-amz-copy-source": f"/{bucket}/{key}", "x-amz-metadata-directive": "COPY",
        "x-amz-storage-class": "DEEP_ARCHIVE"})
    assert rgw.head(bucket, key)["x-amz-storage-class"] == "DEEP_ARCHIVE"


def test_archived_restore_prefers_a_hot_copy_then_thaws_records_a_job_and_resumes(
        demo, rgw, shim, tmp_path):
    from test_remote import s3_section, set_destinations

    bucket = rgw.new_bucket("thaw")
    # the bucket first: a restore must still prefer the NAS's hot copy
    set_destinations(demo, s3_section(rgw, bucket, name="cold", endpoint=shim.endpoint,
                                      ca_file=None) + f"""
[destination nas]
type = local
path = {demo.dest}
""")
    demo.start_agent()
    files = {}
    for n in ("one.pdf", "two.pdf"):
        p = os.path.join(demo.invoices, n)
        files[p] = write_file(p, os.urandom(30000))
    demo.wait_shipped(files)
    wait_for(lambda: demo.query("SELECT count(*) FROM copies")[0][0] == 4, 60, "copies")
    demo.stop_agent()
    one, two = sorted(files)
    for p in files:
        to_deep_archive(rgw, bucket, object_key(versions_of(demo, p)[0][0]))

    # 1. a hot copy exists: no thaw
    p = demo.run("restore", "file", one, "--to", str(tmp_path / "r1"), check=0)
    assert "is in the archive class DEEP_ARCHIVE" in p.stderr.decode(), p.stderr
    assert shim.requests("RestoreObject") == []
    assert sha_of(str(tmp_path / "r1" / "one.pdf")) == files[one]

    # 2. only the archived copy: the thaw is asked for and recorded; come back later
    p = demo.run("restore", "file", one, "--to", str(tmp_path / "r2"), "--from", "cold",
                 check=1)
    err = p.stderr.decode()
    assert "thaw requested (restore job 1, tier Standard, expected within 12 hours" in err, err
    assert "run this restore again then, or with --wait" in err, err
    assert [r["tier"] for r in shim.requests("RestoreObject")] == ["Standard"]
    jobs = json.loads(demo.run("--json", "restore", "jobs", check=0).stdout)
    assert [(j["id"], j["dest"], j["state"], j["storage_class"]) for j in jobs] == \
        [(1, "cold", "pending", "DEEP_ARCHIVE")], jobs
    assert demo.query("SELECT count(*) FROM audit WHERE action = 'restore_thaw'")[0][0] == 1
    # ... picked up where it left off: once thawed, the same restore fetches it, asking
    # for no second thaw
    wait_for(lambda: json.loads(demo.run("--json", "restore", "jobs", check=0).stdout)[0][
        "state"] == "ready", 60, "the thaw")
    demo.run("restore", "file", one, "--to", str(tmp_path / "r2"), "--from", "cold", check=0)
    assert sha_of(str(tmp_path / "r2" / "one.pdf")) == files[one]
    assert len(shim.requests("RestoreObject")) == 1
    assert demo.query("SELECT status FROM restore_jobs WHERE id = 1")[0][0] == "done"
    assert "no pending restore jobs" in demo.run("restore", "jobs", check=0).stdout.decode()

    # 3. --wait, at the Bulk tier: waits with progress, byte-identical content
    demo.set_option("destination cold", "restore_tier", "Bulk")
    p = demo.run("restore", "file", two, "--to", str(tmp_path / "r3"), "--from", "cold",
                 "--wait", check=0, timeout=300)
    err = p.stderr.decode()
    assert "tier Bulk, expected within 48 hours" in err, err
    assert "waiting for the thaw of object" in err, err
    assert sha_of(str(tmp_path / "r3" / "two.pdf")) == files[two]
    assert [r["tier"] for r in shim.requests("RestoreObject")] == ["Standard", "Bulk"]
    assert demo.query("SELECT status, tier FROM restore_jobs ORDER BY id") == \
        [("done", "Standard"), ("done", "Bulk")]


def test_prune_on_a_versioned_bucket_removes_every_version_not_only_the_latest(demo, rgw):
    from test_remote import s3_section, set_destinations

    bucket = rgw.new_bucket("life-ver", versioning=True)
    set_destinations(demo, s3_section(rgw, bucket, name="vault"))
    demo.start_agent()
    path = os.path.join(demo.invoices, "gone.pdf")
    demo.wait_shipped({path: write_file(path, os.urandom(2000))})
    ((oid, _),) = versions_of(demo, path)
    os.unlink(path)
    wait_for(lambda: demo.live_version(path) is None, 60, "the tombstone")
    demo.stop_agent()
    key = object_key(oid)
    assert len(rgw.list_versions(bucket, key)) == 1
    plan = json.loads(demo.run("--json", "prune", "--confirm", "--as-of",
                               later(months=84, days=2), check=0).stdout)
    assert plan["deleted"] >= 1 and plan["failed"] == 0, plan
    # no delete marker hiding a version that still holds the bytes
    assert rgw.list_versions(bucket, key) == []
    demo.run("prune", "--check", check=0)


def test_restore_point_wait_asks_for_every_thaw_before_waiting(demo, rgw, shim, tmp_path):
    from test_remote import s3_section, set_destinations

    bucket = rgw.new_bucket("thaw-point")
    set_destinations(demo, s3_section(rgw, bucket, name="cold", endpoint=shim.endpoint,
                                      ca_file=None))
    demo.start_agent()
    files = {}
    for n in ("a.pdf", "b.pdf", "c.pdf"):
        p = os.path.join(demo.invoices, n)
        files[p] = write_file(p, os.urandom(20000))
    demo.wait_shipped(files)
    demo.stop_agent()
    demo.run("daily", check=0, timeout=300)
    (date,) = [d for (d,) in demo.query("SELECT date FROM daily_runs")]
    for p in files:
        to_deep_archive(rgw, bucket, object_key(versions_of(demo, p)[0][0]))
    p = demo.run("restore", "point", date, "--to", str(tmp_path / "pt"), "--wait", check=0,
                 timeout=300)
    err = p.stderr.decode()
    lines = err.splitlines()
    asked = [i for i, line in enumerate(lines) if "thaw requested" in line]
    waited = [i for i, line in enumerate(lines) if "waiting for the thaw" in line]
    assert len(asked) == 3 and waited and max(asked) < min(waited), err
    assert len(shim.requests("RestoreObject")) == 3
    for path, sha in files.items():
        assert sha_of(str(tmp_path / "pt") + path) == sha, path


def test_archived_snapshot_restore_thaws_the_package_and_waits(demo, rgw, shim, tmp_path):
    """The plan's "archived snapshot restore < 24 h": the package lives in DEEP_ARCHIVE on
    an archive-role bucket (its .sig in the hot class, readable at once)."""
    from test_remote import s3_section, set_destinations
    from test_snapshots import App, mongo_server, ship_everything

    bucket = rgw.new_bucket("thaw-snap")
    set_destinations(demo, s3_section(rgw, bucket, name="cold", role="archive",
                                      archive_class="DEEP_ARCHIVE", endpoint=shim.endpoint,
                                      ca_file=None))
    a = App(str(tmp_path), demo.data)
    a.period("2026-10-A", datetime.datetime(2026, 10, 1), datetime.datetime(2026, 10, 15, 21, 30))
    with mongo_server(tmp_path / "mongo", docs=6, seed=5,
                      billing=a.write(tmp_path / "billing.json")) as server:
        a.configure(demo, server.port, wait_for_files_minutes=0)
        ship_everything(demo)
        demo.run("snapshot", "--pending", check=0, timeout=300)
    (key,) = [k for (k,) in demo.query("SELECT remote_key FROM snapshots")]
    assert rgw.head(bucket, key)["x-amz-storage-class"] == "DEEP_ARCHIVE"
    out = tmp_path / "snap"
    p = demo.run("restore", "snapshot", "2026-10-A", "--to", str(out), check=1)
    err = p.stderr.decode()
    assert "the package on cold is in the archive class DEEP_ARCHIVE" in err, err
    assert "thaw requested (restore job 1" in err and "run this restore again then" in err, err
    p = demo.run("restore", "snapshot", "2026-10-A", "--to", str(out), "--wait", check=0,
                 timeout=300)
    assert "waiting for the thaw of " + key in p.stderr.decode(), p.stderr
    assert (out / "snapshot_2026-10-A_20261015.tar.zst").stat().st_size > 0
    assert len(shim.requests("RestoreObject")) == 1
    assert demo.query("SELECT status FROM restore_jobs") == [("done",)]


def test_the_restore_tests_archive_probe_thaws_and_the_next_test_fetches(
        demo, rgw, shim, tmp_path):
    """[restore_test] archive_probe on a DEEP_ARCHIVE package (through the thaw shim): the
    first test asks for the thaw (a restore job) and says "in progress", never "passed"; the
    next one, after the provider's thaw, fetches the package whole and the job is done."""
    from test_remote import s3_section, set_destinations
    from test_snapshots import App, mongo_server, ship_everything

    bucket = rgw.new_bucket("thaw-probe")
    set_destinations(demo, s3_section(rgw, bucket, name="cold", role="archive",
                                      archive_class="DEEP_ARCHIVE", endpoint=shim.endpoint,
                                      ca_file=None))
    a = App(str(tmp_path), demo.data)
    a.period("2026-10-A", datetime.datetime(2026, 10, 1), datetime.datetime(2026, 10, 15, 21, 30))
    with mongo_server(tmp_path / "mongo", docs=6, seed=7,
                      billing=a.write(tmp_path / "billing.json")) as server:
        a.configure(demo, server.port, wait_for_files_minutes=0)
        ship_everything(demo)
        demo.run("snapshot", "--pending", check=0, timeout=300)
    demo.set_option("restore_test", "archive_probe", "yes")

    def probe():
        p = demo.run("--json", "restore-test", check=None, timeout=600)
        (s,) = [s for s in json.loads(p.stdout)["sections"] if s["id"] == "archive"]
        return s, {f["key"]: f["value"] for f in s["facts"]}

    s, facts = probe()
    assert facts["probe"].startswith("in progress: "), facts
    assert "is being thawed from DEEP_ARCHIVE (restore job 1" in facts["probe"], facts
    assert s["status"] != "failed", s["summary"]
    assert demo.query("SELECT status FROM restore_jobs") == [("pending",)]
    assert len(shim.requests("RestoreObject")) == 1
    seen = []
    try:
        wait_for(lambda: seen.append(probe()) or seen[-1][1]["probe"].startswith(
            "passed: "), 60, "the probe after the provider's thaw")
    except AssertionError:
        raise AssertionError(f"{seen[-1][1]}\n{seen[-1][0]['summary']}")
    assert demo.query("SELECT status FROM restore_jobs") == [("done",)]
    assert len(shim.requests("RestoreObject")) == 1  # asked for once, found again
