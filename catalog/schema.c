/*
 * schema.c - the catalog's schema as a list of forward migrations.
 *
 * Migration N takes a catalog from user_version N-1 to N. Released
 * migrations are never edited: a change is a new entry at the end. Each one
 * runs in the same transaction as the user_version bump, so a crash leaves
 * the catalog at N-1 or N, never in between.
 */
#include "catalog_int.h"

static const char *const migrations[] = {
    /* 1: the foundation. */
    "CREATE TABLE paths ("
    "  id INTEGER PRIMARY KEY,"
    "  path BLOB NOT NULL UNIQUE"
    ");"
    "CREATE TABLE objects ("
    "  id TEXT PRIMARY KEY,"  /* keyed BLAKE2b-256 of sha256, hex */
    "  sha256 BLOB NOT NULL," /* of the plaintext */
    "  plain_size INTEGER NOT NULL,"
    "  stored_size INTEGER NOT NULL," /* of the sealed container */
    "  stored_sha256 BLOB NOT NULL,"  /* of the sealed container */
    "  compressed INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE copies ("
    "  object_id TEXT NOT NULL REFERENCES objects(id),"
    "  dest TEXT NOT NULL,"
    "  remote_key TEXT NOT NULL,"
    "  storage_class TEXT,"
    "  verified_at INTEGER NOT NULL,"
    "  PRIMARY KEY (object_id, dest)"
    ") WITHOUT ROWID;"
    "CREATE TABLE versions ("
    "  id INTEGER PRIMARY KEY,"
    "  path_id INTEGER NOT NULL REFERENCES paths(id),"
    "  kind TEXT NOT NULL CHECK (kind IN ('file', 'symlink')),"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  inode INTEGER NOT NULL,"
    "  sha256 BLOB,"
    "  object_id TEXT REFERENCES objects(id),"
    "  link_target BLOB,"
    "  first_seen INTEGER NOT NULL,"
    "  shipped_at INTEGER NOT NULL,"
    "  deleted_at INTEGER,"
    "  CHECK (kind = 'symlink' OR object_id IS NOT NULL)"
    ");"
    "CREATE INDEX versions_by_path ON versions (path_id, first_seen);"
    "CREATE INDEX versions_by_object ON versions (object_id);"
    "CREATE TABLE queue ("
    "  path_id INTEGER PRIMARY KEY REFERENCES paths(id),"
    "  reason TEXT NOT NULL,"
    "  queued_at INTEGER NOT NULL,"
    "  ready_at INTEGER NOT NULL,"
    "  gen INTEGER NOT NULL DEFAULT 1,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT"
    ");"
    "CREATE INDEX queue_by_ready ON queue (ready_at);"
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  action TEXT NOT NULL,"
    "  detail TEXT NOT NULL,"
    "  prev_hash BLOB NOT NULL,"
    "  hash BLOB NOT NULL"
    ");"
    "CREATE TABLE agent_state ("
    "  key TEXT PRIMARY KEY,"
    "  value"
    ") WITHOUT ROWID;"
    /* Views for auditors using the sqlite3 shell: readable paths and times. */
    "CREATE VIEW file_versions AS"
    "  SELECT CAST(p.path AS TEXT) AS path, v.kind, v.size, hex(v.sha256) AS sha256,"
    "         v.object_id,"
    "         strftime('%Y-%m-%dT%H:%M:%fZ', v.first_seen / 1000.0, 'unixepoch') AS first_seen,"
    "         strftime('%Y-%m-%dT%H:%M:%fZ', v.shipped_at / 1000.0, 'unixepoch') AS shipped,"
    "         strftime('%Y-%m-%dT%H:%M:%fZ', v.deleted_at / 1000.0, 'unixepoch') AS deleted"
    "  FROM versions v JOIN paths p ON p.id = v.path_id;"
    "CREATE VIEW audit_trail AS"
    "  SELECT id, strftime('%Y-%m-%dT%H:%M:%fZ', at / 1000.0, 'unixepoch') AS at,"
    "         actor, action, detail FROM audit;",

    /* 2: replication. Each copy of an object to a destination is its own queue
     * entry, so a destination that is down holds up no other; a version waits
     * in pending_versions until its object has a first verified copy. */
    "CREATE TABLE copy_queue ("
    "  object_id TEXT NOT NULL REFERENCES objects(id),"
    "  dest TEXT NOT NULL,"
    "  spool TEXT NOT NULL," /* file name under state_dir/spool */
    "  stored_size INTEGER NOT NULL,"
    "  stored_sha256 BLOB NOT NULL,"
    "  queued_at INTEGER NOT NULL,"
    "  ready_at INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  error_kind TEXT,"
    "  last_error TEXT,"
    "  PRIMARY KEY (object_id, dest)"
    ") WITHOUT ROWID;"
    "CREATE INDEX copy_queue_by_dest ON copy_queue (dest, ready_at);"
    "CREATE TABLE pending_versions ("
    "  id INTEGER PRIMARY KEY,"
    "  path_id INTEGER NOT NULL REFERENCES paths(id),"
    "  size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL,"
    "  inode INTEGER NOT NULL,"
    "  sha256 BLOB NOT NULL,"
    "  object_id TEXT NOT NULL REFERENCES objects(id),"
    "  first_seen INTEGER NOT NULL,"
    "  deleted_at INTEGER" /* deleted before its first copy landed */
    ");"
    "CREATE INDEX pending_by_object ON pending_versions (object_id);"
    /* Each copy remembers the exact bytes stored (a re-sealed object differs). */
    "ALTER TABLE copies ADD COLUMN stored_size INTEGER;"
    "ALTER TABLE copies ADD COLUMN stored_sha256 BLOB;"
    "UPDATE copies SET stored_size = (SELECT stored_size FROM objects o WHERE o.id = object_id),"
    "  stored_sha256 = (SELECT stored_sha256 FROM objects o WHERE o.id = object_id);",

    /* 3: the daily protection run: one row per local date with the plan's
     * checklist, and the artifacts it produced with their copies. */
    "CREATE TABLE daily_runs ("
    "  date TEXT PRIMARY KEY," /* YYYY-MM-DD in the configured zone */
    "  status TEXT NOT NULL,"  /* running | ok | failed */
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  attempts INTEGER NOT NULL DEFAULT 1,"
    "  ran INTEGER NOT NULL DEFAULT 0,"
    "  manifest_written INTEGER NOT NULL DEFAULT 0,"
    "  offsite_verified INTEGER NOT NULL DEFAULT 0,"
    "  db_status TEXT,"
    "  files_status TEXT,"
    "  catalog_status TEXT,"
    "  error TEXT"
    ") WITHOUT ROWID;"
    "CREATE TABLE artifacts ("
    "  date TEXT NOT NULL,"
    "  kind TEXT NOT NULL," /* db | files | catalog | manifest-sha256 | manifest-json | manifest-sig
                             */
    "  remote_key TEXT NOT NULL,"
    "  sealed INTEGER NOT NULL,"
    "  plain_sha256 BLOB,"
    "  plain_size INTEGER,"
    "  stored_sha256 BLOB NOT NULL,"
    "  stored_size INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (date, kind)"
    ") WITHOUT ROWID;"
    "CREATE TABLE artifact_copies ("
    "  date TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  dest TEXT NOT NULL,"
    "  verified_at INTEGER NOT NULL,"
    "  PRIMARY KEY (date, kind, dest)"
    ") WITHOUT ROWID;",

    /* 4: coverage as an invariant. A copy found missing or different by a check
     * is marked damaged (never used for dedup or restore) until it is copied
     * again; checked_at drives rolling verification, oldest first. A copy queue
     * entry whose spool is '' still needs its bytes (from the spool of another
     * entry, another destination's ciphertext, or a re-seal of the live file).
     * dest_notices keep what happened to destinations that left the config. */
    "ALTER TABLE copies ADD COLUMN damaged_at INTEGER;"
    "ALTER TABLE copies ADD COLUMN damage TEXT;"
    "ALTER TABLE copies ADD COLUMN checked_at INTEGER;"
    "UPDATE copies SET checked_at = verified_at;"
    "CREATE INDEX copies_by_check ON copies (checked_at);"
    "CREATE INDEX copy_queue_by_object ON copy_queue (object_id);"
    "CREATE TABLE dest_notices ("
    "  id INTEGER PRIMARY KEY,"
    "  at INTEGER NOT NULL,"
    "  dest TEXT NOT NULL,"
    "  notice TEXT NOT NULL"
    ");",

    /* 5: every attempt of a daily run is kept. A retry used to overwrite the
     * date's row and delete the earlier attempt's artifact records; now each
     * attempt is a row of its own, artifacts and their copies are keyed by
     * attempt, and daily_runs becomes a view of each date's latest attempt
     * (same columns as before, plus attempt, made_on, backfill, ok_attempt).
     * Rows from schema 3 become the attempt they were (their count): the
     * earlier attempts they replaced are gone already. made_on is NULL for
     * them (not recorded then). */
    "CREATE TABLE daily_attempts ("
    "  date TEXT NOT NULL,"       /* the day the point is for, YYYY-MM-DD in the configured zone */
    "  attempt INTEGER NOT NULL," /* 1, 2, ... per date, never reused */
    "  made_on TEXT,"             /* the local date it ran on; differs from date: a backfill */
    "  backfill INTEGER NOT NULL DEFAULT 0,"
    "  pid INTEGER,"          /* of the process that ran it */
    "  status TEXT NOT NULL," /* running | ok | failed */
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  ran INTEGER NOT NULL DEFAULT 0,"
    "  manifest_written INTEGER NOT NULL DEFAULT 0,"
    "  offsite_verified INTEGER NOT NULL DEFAULT 0,"
    "  db_status TEXT,"
    "  files_status TEXT,"
    "  catalog_status TEXT,"
    "  error TEXT,"
    "  audit_rows INTEGER," /* the audit chain head its manifest published */
    "  audit_head BLOB,"
    "  PRIMARY KEY (date, attempt)"
    ") WITHOUT ROWID;"
    "INSERT INTO daily_attempts (date, attempt, status, started_at, finished_at, ran,"
    "  manifest_written, offsite_verified, db_status, files_status, catalog_status, error)"
    "  SELECT date, attempts, status, started_at, finished_at, ran, manifest_written,"
    "  offsite_verified, db_status, files_status, catalog_status, error FROM daily_runs;"
    "ALTER TABLE artifacts RENAME TO artifacts_v3;"
    "ALTER TABLE artifact_copies RENAME TO artifact_copies_v3;"
    "CREATE TABLE artifacts ("
    "  date TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  remote_key TEXT NOT NULL,"
    "  sealed INTEGER NOT NULL,"
    "  plain_sha256 BLOB,"
    "  plain_size INTEGER,"
    "  stored_sha256 BLOB NOT NULL,"
    "  stored_size INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (date, attempt, kind)"
    ") WITHOUT ROWID;"
    "CREATE TABLE artifact_copies ("
    "  date TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  dest TEXT NOT NULL,"
    "  verified_at INTEGER NOT NULL,"
    "  PRIMARY KEY (date, attempt, kind, dest)"
    ") WITHOUT ROWID;"
    "INSERT INTO artifacts SELECT a.date,"
    "  coalesce((SELECT r.attempts FROM daily_runs r WHERE r.date = a.date), 1), a.kind,"
    "  a.remote_key, a.sealed, a.plain_sha256, a.plain_size, a.stored_sha256, a.stored_size,"
    "  a.created_at FROM artifacts_v3 a;"
    "INSERT INTO artifact_copies SELECT c.date,"
    "  coalesce((SELECT r.attempts FROM daily_runs r WHERE r.date = c.date), 1), c.kind, c.dest,"
    "  c.verified_at FROM artifact_copies_v3 c;"
    "DROP TABLE artifacts_v3;"
    "DROP TABLE artifact_copies_v3;"
    "DROP TABLE daily_runs;"
    "CREATE VIEW daily_runs AS"
    "  SELECT a.date, a.status, a.started_at, a.finished_at, a.attempt AS attempts, a.ran,"
    "         a.manifest_written, a.offsite_verified, a.db_status, a.files_status,"
    "         a.catalog_status, a.error, a.attempt, a.made_on, a.backfill,"
    "         (SELECT max(o.attempt) FROM daily_attempts o"
    "           WHERE o.date = a.date AND o.status = 'ok') AS ok_attempt"
    "  FROM daily_attempts a"
    "  WHERE a.attempt = (SELECT max(l.attempt) FROM daily_attempts l WHERE l.date = a.date);",

    /* 6: billing-cycle snapshots. One row per package made, never rewritten
     * (the same period and close date is never packaged twice); the versions
     * each holds (bytes in the package) or references (refs.tsv: the stored
     * object is the content), so that retention keeps them as long as the
     * snapshot; its copies per destination; the plan's per-cycle checklist
     * (created_at, archived_at, verified_at); and the one row of the job's
     * state, which `status` reads. */
    "CREATE TABLE snapshots ("
    "  id INTEGER PRIMARY KEY,"
    "  label TEXT NOT NULL,"
    "  period_key TEXT NOT NULL," /* the period's key, canonical Extended JSON */
    "  close_date TEXT NOT NULL," /* YYYYMMDD in the configured zone */
    "  closed_at INTEGER,"        /* NULL: an open period snapshotted with --force */
    "  period_start INTEGER,"
    "  period_end INTEGER,"
    "  remote_key TEXT NOT NULL," /* the sealed package (.tar.zst.cst) */
    "  sig_key TEXT NOT NULL,"    /* its signature (.tar.zst.sig) */
    "  sig TEXT NOT NULL,"        /* the signature file's text */
    "  spool TEXT,"               /* under state_dir/snapshots until every destination has it */
    "  plain_sha256 BLOB NOT NULL,"
    "  plain_size INTEGER NOT NULL,"
    "  stored_sha256 BLOB NOT NULL,"
    "  stored_size INTEGER NOT NULL,"
    "  invoices INTEGER NOT NULL,"
    "  timesheets INTEGER NOT NULL,"
    "  files INTEGER NOT NULL,"   /* held in the package */
    "  refs INTEGER NOT NULL,"    /* listed in refs.tsv */
    "  missing INTEGER NOT NULL," /* listed in missing.txt */
    "  file_bytes INTEGER NOT NULL,"
    "  complete INTEGER NOT NULL,"
    "  retain_until INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  archived_at INTEGER,"
    "  verified_at INTEGER,"
    "  verify_detail TEXT,"
    "  last_error TEXT,"
    "  UNIQUE (period_key, close_date)"
    ");"
    "CREATE INDEX snapshots_by_label ON snapshots (label, close_date);"
    "CREATE TABLE snapshot_copies ("
    "  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),"
    "  dest TEXT NOT NULL,"
    "  storage_class TEXT,"
    "  retain_until INTEGER," /* Object Lock retain-until of this copy, NULL: none */
    "  verified_at INTEGER NOT NULL,"
    "  PRIMARY KEY (snapshot_id, dest)"
    ") WITHOUT ROWID;"
    "CREATE TABLE snapshot_versions ("
    "  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),"
    "  version_id INTEGER NOT NULL REFERENCES versions(id),"
    "  held INTEGER NOT NULL," /* 1: bytes in the package; 0: a refs.tsv entry */
    "  PRIMARY KEY (snapshot_id, version_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX snapshot_versions_by_version ON snapshot_versions (version_id);"
    "CREATE TABLE snapshot_job ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  last_run_at INTEGER,"
    "  last_ok_at INTEGER,"
    "  failures INTEGER NOT NULL DEFAULT 0," /* runs in a row that failed */
    "  failing_since INTEGER,"
    "  last_error TEXT,"
    "  waiting TEXT," /* periods waiting for files, one per line */
    "  next_run_at INTEGER"
    ");"
    "CREATE VIEW snapshot_contents AS"
    "  SELECT s.label, s.close_date, CAST(p.path AS TEXT) AS path, v.id AS version,"
    "         v.object_id, lower(hex(v.sha256)) AS sha256, v.size,"
    "         CASE sv.held WHEN 1 THEN 'in package' ELSE 'refs.tsv' END AS held"
    "  FROM snapshot_versions sv JOIN snapshots s ON s.id = sv.snapshot_id"
    "  JOIN versions v ON v.id = sv.version_id JOIN paths p ON p.id = v.path_id;",

    /* 7: the seven-year lifecycle. Legal holds (released, never deleted: the
     * record stays). What pruning removed stays queryable: objects carry the
     * time they were deleted everywhere, a removed copy moves to pruned_copies
     * with the audit row that removed it, a pruned daily point or snapshot is
     * marked. A copy removed from a hot-only destination because the archive
     * tier holds the object is an exemption coverage respects (dest_exempt). A
     * deletion in progress (audit row written, remote delete not yet recorded) is
     * a prune_pending row, so a rerun after a crash neither misses nor repeats
     * its audit row. copies.tier says which class a copy is stored in. */
    "CREATE TABLE holds ("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL CHECK (kind IN ('path', 'period', 'before', 'all')),"
    "  value TEXT,"
    "  reason TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  created_by TEXT NOT NULL,"
    "  released_at INTEGER,"
    "  released_by TEXT,"
    "  release_reason TEXT"
    ");"
    "ALTER TABLE objects ADD COLUMN deleted_at INTEGER;"
    "ALTER TABLE copies ADD COLUMN tier TEXT;"
    "ALTER TABLE copies ADD COLUMN locked_until INTEGER;"
    "CREATE TABLE pruned_copies ("
    "  object_id TEXT NOT NULL,"
    "  dest TEXT NOT NULL,"
    "  remote_key TEXT NOT NULL,"
    "  verified_at INTEGER,"
    "  pruned_at INTEGER NOT NULL,"
    "  rule TEXT NOT NULL,"
    "  audit_id INTEGER"
    ");"
    "CREATE INDEX pruned_copies_by_object ON pruned_copies (object_id);"
    "CREATE TABLE dest_exempt ("
    "  object_id TEXT NOT NULL,"
    "  dest TEXT NOT NULL,"
    "  since INTEGER NOT NULL,"
    "  PRIMARY KEY (object_id, dest)"
    ") WITHOUT ROWID;"
    "CREATE TABLE prune_pending ("
    "  what TEXT NOT NULL," /* object | point | snapshot */
    "  id TEXT NOT NULL,"   /* object id, date, snapshot id */
    "  dest TEXT NOT NULL,"
    "  remote_key TEXT NOT NULL,"
    "  audit_id INTEGER NOT NULL,"
    "  PRIMARY KEY (what, id, dest, remote_key)"
    ") WITHOUT ROWID;"
    "CREATE TABLE prune_runs ("
    "  id INTEGER PRIMARY KEY,"
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  as_of INTEGER NOT NULL,"
    "  confirmed INTEGER NOT NULL,"
    "  status TEXT NOT NULL," /* running | ok | failed */
    "  deleted INTEGER NOT NULL DEFAULT 0,"
    "  kept INTEGER NOT NULL DEFAULT 0,"
    "  error TEXT"
    ");"
    "ALTER TABLE daily_attempts ADD COLUMN pruned_at INTEGER;"
    "ALTER TABLE snapshots ADD COLUMN pruned_at INTEGER;",

    /* 8: proof. What each daily dump held per namespace as it was written (its
     * document count and the CRC-64 of its documents, which the monthly restore
     * test checks the stored dump against); every restore test with the outcome
     * of each of its checks and where its signed report is; and the alerts the
     * agent raised that have not cleared yet, so that a restart neither raises
     * them again nor forgets to say when they clear. */
    "CREATE TABLE dump_collections ("
    "  date TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  db TEXT NOT NULL,"
    "  coll TEXT NOT NULL,"
    "  type TEXT NOT NULL," /* collection | view | timeseries */
    "  docs INTEGER NOT NULL,"
    "  doc_bytes INTEGER NOT NULL,"
    "  crc64 TEXT," /* 16 hex digits, CRC-64/XZ of the documents as mongodump's archive has it */
    "  PRIMARY KEY (date, attempt, db, coll)"
    ") WITHOUT ROWID;"
    "CREATE TABLE restore_tests ("
    "  id INTEGER PRIMARY KEY,"
    "  month TEXT NOT NULL,"   /* YYYY-MM the test is for */
    "  trigger TEXT NOT NULL," /* schedule | operator */
    "  pid INTEGER,"
    "  status TEXT NOT NULL," /* running | passed | failed | incomplete */
    "  started_at INTEGER NOT NULL,"
    "  finished_at INTEGER,"
    "  with_secret_key INTEGER NOT NULL,"
    /* each check: passed | failed | not done | not applicable */
    "  db TEXT, files TEXT, snapshot TEXT, archive TEXT, pruning TEXT, rto TEXT,"
    "  summary TEXT,"     /* the verdict and each failure's cause */
    "  report_json TEXT," /* the signed report, under state_dir/reports */
    "  report_html TEXT,"
    "  stored_on TEXT" /* destinations holding a verified copy of the report */
    ");"
    "CREATE INDEX restore_tests_by_month ON restore_tests (month, id);"
    "CREATE TABLE alerts ("
    "  key TEXT PRIMARY KEY," /* kind and subject: destination_failing:offsite */
    "  kind TEXT NOT NULL,"
    "  subject TEXT,"
    "  message TEXT NOT NULL,"
    "  seen_at INTEGER NOT NULL," /* first seen */
    "  fired_at INTEGER"          /* the alert command was told (NULL: not yet) */
    ") WITHOUT ROWID;"
    "CREATE VIEW restore_test_results AS"
    "  SELECT month, status, db, files, snapshot, archive, pruning, rto, summary,"
    "         strftime('%Y-%m-%dT%H:%M:%fZ', started_at / 1000.0, 'unixepoch') AS started,"
    "         strftime('%Y-%m-%dT%H:%M:%fZ', finished_at / 1000.0, 'unixepoch') AS finished,"
    "         report_json, stored_on"
    "  FROM restore_tests;",

    /* 9: Object Lock on every object. A new version whose content an object-locked
     * destination holds already, locked until a date earlier than the new version
     * needs, waits (in pending_versions) until that copy's retention is extended on
     * the stored version: a lock_extend row per (object, destination), done by the
     * shipper like a copy. */
    "CREATE TABLE lock_extend ("
    "  object_id TEXT NOT NULL,"
    "  dest TEXT NOT NULL,"
    "  until INTEGER NOT NULL," /* the retain-until the copy must show, ms */
    "  queued_at INTEGER NOT NULL,"
    "  ready_at INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  last_error TEXT,"
    "  PRIMARY KEY (object_id, dest)"
    ") WITHOUT ROWID;"
    "CREATE INDEX lock_extend_by_dest ON lock_extend (dest, ready_at);"
    /* Archive restores: a copy in an archive class is thawed before it can be read
     * (RestoreObject); each thaw asked for is a job, pending until the copy is readable,
     * so that a restore run again (or restore jobs) picks up where it left off. */
    "CREATE TABLE restore_jobs ("
    "  id INTEGER PRIMARY KEY,"
    "  dest TEXT NOT NULL,"
    "  remote_key TEXT NOT NULL,"
    "  what TEXT NOT NULL," /* for operators: "object <id>", an artifact's key */
    "  tier TEXT NOT NULL,"
    "  storage_class TEXT,"
    "  requested_at INTEGER NOT NULL,"
    "  requested_by TEXT NOT NULL,"
    "  expected_by INTEGER NOT NULL,"
    "  status TEXT NOT NULL," /* pending | ready | done */
    "  checked_at INTEGER,"
    "  ready_at INTEGER"
    ");"
    "CREATE INDEX restore_jobs_by_key ON restore_jobs (dest, remote_key);",

    /* 10: pending versions by path: every sealed result asks whether its path already waits
     * with this content (catalog_pending_match); without it each asked by scanning every
     * pending version, quadratic in a start-up backlog. */
    "CREATE INDEX pending_by_path ON pending_versions (path_id);",

    /* 11: copy_queue_by_object repeats the first column of copy_queue's primary key
     * (object_id, dest), which answers every lookup by object already. Each queued copy
     * paid for it twice (insert, delete) in a page of its own, since object ids are
     * random: about a fifth of the catalog pages a sealed small file dirtied. */
    "DROP INDEX IF EXISTS copy_queue_by_object;",

    /* 12: copies still waiting for their bytes (spool = ''), the ones the shipper sources on
     * every fill (catalog_copy_queue_unsourced). Without it each fill scanned the whole copy
     * queue: in a backlog to S3 every finished upload changes the queue, so the loop scanned
     * it once per object, quadratic (20,000 small files: 70 s of the loop's CPU). Partial:
     * sourced copies, nearly all of them, are not in it. */
    "CREATE INDEX copy_queue_unsourced ON copy_queue (ready_at) WHERE spool = '';",
};

int catalog_schema_latest(void)
{
    return (int)(sizeof(migrations) / sizeof(migrations[0]));
}

const char *catalog_migration_sql(int version)
{
    if (version < 1 || version > catalog_schema_latest())
        return NULL;
    return migrations[version - 1];
}
