"""
[metrics] textfile: the agent rewrites a Prometheus text file every 15 s for
node_exporter's textfile collector. A real parser (python3-prometheus-client)
reads it, and its values are those `status --json` shows.
"""
import os

from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for, write_file


def read_metrics(path):
    out = {}
    for family in text_string_to_metric_families(open(path).read()):
        for s in family.samples:
            key = s.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
                            if s.labels else "")
            out[key] = s.value
    return out


def test_metrics_file_parses_and_matches_status(demo):
    prom = os.path.join(demo.root, "textfile", "custodian.prom")
    os.makedirs(os.path.dirname(prom))
    demo.set_option("metrics", "textfile", prom)
    usb = demo.add_local_destination("usb")
    open(os.path.join(usb, "objects"), "w").close()  # usb fails every write
    demo.start_agent()
    files = {}
    for i in range(5):
        p = os.path.join(demo.invoices, f"m{i}.pdf")
        files[p] = write_file(p, os.urandom(1000 + i))
    demo.wait_shipped(files)
    wait_for(lambda: demo.status()[1]["destinations"][1]["failing"] > 0, 60, "usb failing")
    before = os.stat(prom).st_mtime if os.path.exists(prom) else 0
    wait_for(lambda: os.path.exists(prom) and os.stat(prom).st_mtime > before, 40,
             "the metrics file rewritten")
    m = read_metrics(prom)
    rc, st = demo.status()
    assert m["custodian_up"] == 1
    assert m["custodian_queue_depth"] == st["queue_depth"]
    assert m["custodian_live_files"] == st["live_files"]
    assert m["custodian_catalog_writable"] == 1
    assert m["custodian_watched_roots"] == 3 and m["custodian_watched_roots_unwatched"] == 0
    for d in st["destinations"]:
        lab = "{destination=" + d["name"] + "}"
        assert m["custodian_destination_backlog" + lab] == d["backlog"], (lab, m, d)
        assert m["custodian_destination_lacking_objects" + lab] == d["objects_lacking"]
        assert m["custodian_destination_damaged_copies" + lab] == d["damaged"]
        assert (m["custodian_destination_failing_copies" + lab] > 0) == (d["failing"] > 0)
    assert m["custodian_destination_backlog{destination=usb}"] == 5
    assert m["custodian_destination_last_success_timestamp_seconds{destination=local}"] > 0
    assert not [f for f in os.listdir(os.path.dirname(prom)) if ".tmp." in f]
    demo.stop_agent()


def epoch_s(iso):
    """status --json's times (RFC 3339, UTC) as the metrics' Unix seconds; None: 0."""
    import datetime
    if iso is None:
        return 0.0
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_every_jobs_last_success_matches_status(demo):
    """The daily run, prune, the restore test and the snapshot job: each one's last
    success and failure in the metrics file is what status --json says."""
    prom = os.path.join(demo.root, "textfile", "custodian.prom")
    os.makedirs(os.path.dirname(prom))
    demo.set_option("metrics", "textfile", prom)
    for i in range(3):
        write_file(os.path.join(demo.invoices, f"j{i}.pdf"), os.urandom(2000 + i))
    demo.run("scan", check=0)
    demo.run("ship", "--timeout", "60", check=0)
    demo.run("daily", check=0, timeout=300)
    demo.run("prune", "--confirm", check=0, timeout=300)
    demo.run("restore-test", check=0, timeout=300)
    demo.start_agent()
    wait_for(lambda: os.path.exists(prom), 40, "the metrics file")
    m = read_metrics(prom)
    demo.stop_agent()
    rc, st = demo.status()
    jobs = {j["job"]: j for j in st["jobs"]}
    assert set(jobs) == {"daily", "snapshot", "restore_test", "prune"}, jobs
    for job, name in (("daily", "custodian_daily_last_success_timestamp_seconds"),
                      ("snapshot", "custodian_snapshot_job_last_success_timestamp_seconds"),
                      ("restore_test", "custodian_restore_test_last_success_timestamp_seconds"),
                      ("prune", "custodian_prune_last_success_timestamp_seconds")):
        assert abs(m[name] - epoch_s(jobs[job]["last_success_at"])) < 0.002, (job, m[name], jobs)
    assert abs(m["custodian_next_lock_expiry_timestamp_seconds"]
               - epoch_s(st["next_lock_expiry"])) < 0.002, st["next_lock_expiry"]
    for job in ("daily", "restore_test", "prune"):
        assert jobs[job]["last_result"] in ("ok", "passed"), jobs[job]
        assert jobs[job]["last_success_at"] is not None, jobs[job]
    assert m["custodian_daily_last_run_failed"] == 0
    assert m["custodian_restore_test_last_failed"] == 0
    assert m["custodian_prune_last_failed"] == 0
    assert st["last_restore_test"]["status"] == "passed"
