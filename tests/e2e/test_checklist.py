"""
`custodian report checklist` (agent/checklist.c): the plan's §6 checklist from
the catalog alone. A month is simulated from two real daily runs of today (one
whose upload to a destination failed, then its successful retry): each earlier
day of the month gets the successful run's records, one day gets the failed
run's, one day none. The checklist must show exactly those two gaps, each with
its reason, and tick every other box.
"""
import datetime
import json
import os
import shutil
import sqlite3
import time

import pytest

from conftest import write_file
from test_daily import today
from test_replication import add_second_local_destination

html5lib = pytest.importorskip("html5lib")

DAY_MS = 86400000


def copy_day(c, src_date, src_attempt, date, days_back):
    """The records of one daily attempt as if made days_back days earlier, for date."""
    shift = days_back * DAY_MS
    c.execute("INSERT INTO daily_attempts (date, attempt, made_on, backfill, pid, status, "
              "started_at, finished_at, ran, manifest_written, offsite_verified, db_status, "
              "files_status, catalog_status, error, audit_rows, audit_head) "
              "SELECT ?, 1, ?, backfill, pid, status, started_at - ?, finished_at - ?, ran, "
              "manifest_written, offsite_verified, db_status, files_status, catalog_status, "
              "error, audit_rows, audit_head FROM daily_attempts WHERE date = ? AND attempt = ?",
              (date, date, shift, shift, src_date, src_attempt))
    c.execute("INSERT INTO artifacts (date, attempt, kind, remote_key, sealed, plain_sha256, "
              "plain_size, stored_sha256, stored_size, created_at) "
              "SELECT ?, 1, kind, replace(remote_key, ?, ?), sealed, plain_sha256, plain_size, "
              "stored_sha256, stored_size, created_at - ? FROM artifacts "
              "WHERE date = ? AND attempt = ?",
              (date, src_date, date, shift, src_date, src_attempt))
    # the copies the attempt itself made, before the next attempt began (that retry's
    # coverage step copies a failed attempt's artifacts too: not what that day recorded)
    c.execute("INSERT INTO artifact_copies (date, attempt, kind, dest, verified_at) "
              "SELECT ?, 1, kind, dest, verified_at - ? FROM artifact_copies "
              "WHERE date = ? AND attempt = ? AND verified_at < coalesce((SELECT started_at "
              "FROM daily_attempts WHERE date = ? AND attempt = ?), 1 << 62)",
              (date, shift, src_date, src_attempt, src_date, src_attempt + 1))


def test_a_simulated_month_shows_exactly_its_missed_day_and_its_failed_upload(demo, tmp_path):
    usb = add_second_local_destination(demo)
    write_file(os.path.join(demo.invoices, "INV-1.pdf"), os.urandom(4000))
    demo.run("scan", check=0)
    demo.run("ship", "--timeout", "60", check=0)
    day = today()
    # attempt 1: the copy to usb fails (its backups folder cannot be made)
    blocker = os.path.join(usb, "backups")
    if os.path.isdir(blocker):
        shutil.rmtree(blocker)
    open(blocker, "w").close()
    demo.run("daily", check=1, timeout=300)
    ((status, offsite, error),) = demo.query(
        "SELECT status, offsite_verified, error FROM daily_attempts WHERE date = ? "
        "AND attempt = 1", day)
    assert status == "failed" and offsite == 0 and "usb" in error, error
    # attempt 2, the retry: usb is back
    os.unlink(blocker)
    demo.run("daily", check=0, timeout=300)
    assert demo.query("SELECT status, offsite_verified FROM daily_attempts WHERE date = ? "
                      "AND attempt = 2", day) == [("ok", 1)]

    # the month before today: installed 30 days ago, a run every day but two
    d0 = datetime.date.fromisoformat(day)
    first = d0 - datetime.timedelta(days=29)
    missed, failed = d0 - datetime.timedelta(days=10), d0 - datetime.timedelta(days=20)
    c = sqlite3.connect(demo.catalog_path, timeout=30)
    c.execute("UPDATE agent_state SET value = ? WHERE key = 'installed_at'",
              (int(time.time() * 1000) - 30 * DAY_MS,))
    for k in range(1, 30):
        date = d0 - datetime.timedelta(days=k)
        if date == missed:
            continue
        copy_day(c, day, 1 if date == failed else 2, date.isoformat(), k)
    # the months' restore tests passed (the monthly boxes are not what this test is about)
    for month in sorted({first.strftime("%Y-%m"), d0.strftime("%Y-%m")}):
        c.execute("INSERT INTO restore_tests (month, trigger, status, started_at, finished_at, "
                  "with_secret_key, db, files, snapshot, archive, pruning, rto, summary) VALUES "
                  "(?, 'schedule', 'passed', ?, ?, 1, 'passed', 'passed', 'not applicable', "
                  "'not applicable', 'passed', 'passed', 'passed')",
                  (month, int(time.time() * 1000), int(time.time() * 1000)))
    c.commit()
    c.close()

    p = demo.run("--json", "report", "checklist", "--from", first.isoformat(), "--to", day,
                 check=None)
    report = json.loads(p.stdout)
    s = {x["id"]: x for x in report["sections"]}
    rows = s["daily"]["rows"]
    assert [r["date"] for r in rows] == [(first + datetime.timedelta(days=i)).isoformat()
                                         for i in range(30)]
    gaps = {r["date"]: r for r in rows if r["result"] != "passed"}
    assert set(gaps) == {missed.isoformat(), failed.isoformat()}, gaps
    m = gaps[missed.isoformat()]
    assert (m["ran"], m["manifest"], m["offsite"]) == (False, False, False), m
    assert m["result"] == "failed" and "no run recorded for this day" in m["gap"], m
    f = gaps[failed.isoformat()]
    assert f["result"] == "failed" and f["offsite"] is False, f
    assert "the run failed (attempt 1): shipping: destination usb" in f["gap"], f
    assert f["destinations"] == "local", f  # only local verified its manifest
    for r in rows:
        if r["date"] not in gaps:
            assert (r["ran"], r["manifest"], r["offsite"]) == (True, True, True), r
            assert set(r["destinations"].split(", ")) == {"local", "usb"}, r
    # today: ticked by its retry, the failed first attempt told
    assert "earlier: attempt 1 failed" in rows[-1]["gap"], rows[-1]
    assert s["daily"]["status"] == "failed"
    assert "2 of 30 days have a gap" in s["daily"]["summary"], s["daily"]["summary"]
    assert s["monthly"]["status"] == "passed", s["monthly"]
    assert s["cycles"]["status"] in ("passed", "not applicable"), s["cycles"]
    assert report["verdict"] == "failed" and p.returncode != 0
    assert "1 section(s) have gaps" in report["verdict_text"]

    # the same as HTML: parses, no scripts, the same verdict
    html = demo.run("report", "checklist", "--from", first.isoformat(), "--to", day, "--html",
                    check=None).stdout
    doc = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)
    assert doc.findall(".//script") == []
    verdict = "".join(doc.find(".//p[@id='verdict']").itertext())
    assert verdict.startswith("Verdict: failed"), verdict
    text = "".join(doc.itertext())
    assert missed.isoformat() in text and "no run recorded for this day" in text
