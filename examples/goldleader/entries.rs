//! The table of entries into the critical section: one row per entry, with the
//! server's clock at its start and end. Each row's interval lies within a time its
//! worker held the lock, by the database's word: the start is recorded after the
//! grant, and the end only if, when the statement came in, a session of the worker
//! still held the lock (so a worker whose lock was lost while inside cannot record
//! an end after another worker's start). If the lock excludes, no two finished
//! entries intersect.

use deadpool_postgres::Client;
use tokio_postgres::Error;

use crate::server::{lock_columns, HELD_BY};

/// The entries table of a run (the leader's process id).
pub fn table(run: u32) -> String {
    format!("goldleader_entries_{run}")
}

/// The connection name of a worker's lock pool, for `pg_stat_activity`.
pub fn application_name(run: u32, worker: u32) -> String {
    format!("goldleader-{run}-worker-{worker}")
}

/// The connection name of the pools that record entries (not counted as lock
/// connections).
pub fn recorder_name(run: u32) -> String {
    format!("goldleader-{run}-entries")
}

pub async fn create(db: &Client, run: u32) -> Result<(), Error> {
    let table = table(run);
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (
             id bigserial PRIMARY KEY,
             worker int NOT NULL,
             task int NOT NULL,
             waited_us bigint NOT NULL,
             started timestamptz NOT NULL,
             ended timestamptz,
             fence int8
         )"
    ))
    .await
}

pub async fn drop(db: &Client, run: u32) -> Result<(), Error> {
    db.batch_execute(&format!("DROP TABLE IF EXISTS {}", table(run)))
        .await
}

/// Records the start of an entry, when the statement reached the server; returns
/// its id.
pub async fn start(
    db: &Client,
    run: u32,
    worker: u32,
    task: u32,
    waited_us: i64,
    fence: Option<i64>,
) -> Result<i64, Error> {
    let sql = format!(
        "INSERT INTO {} (worker, task, waited_us, started, fence) \
         VALUES ($1, $2, $3, statement_timestamp(), $4) RETURNING id",
        table(run)
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&(worker as i32), &(task as i32), &waited_us, &fence];
    let row = db.query_one(&sql, &params).await?;
    Ok(row.get(0))
}

/// Records the end of entry `id`, when the statement reached the server, if a
/// session named `holder` held the lock then (always, when `holder` is `None`: no
/// lock is taken). Returns whether the end was recorded.
///
/// The time is the statement's arrival (`statement_timestamp()`), which precedes the
/// check of `pg_locks`: the end recorded is a moment the lock was still held.
pub async fn end(db: &Client, run: u32, id: i64, holder: Option<&str>) -> Result<bool, Error> {
    let sql = format!(
        "UPDATE {} SET ended = statement_timestamp() WHERE id = $1 AND ($4::text IS NULL OR {HELD_BY})",
        table(run)
    );
    let (classid, objid) = lock_columns();
    let updated = db.execute(&sql, &[&id, &classid, &objid, &holder]).await?;
    Ok(updated == 1)
}

/// What the database says of the terms of `--mode lead` (entries with a fence).
#[derive(Debug, Default)]
pub struct Terms {
    /// Terms that entered at least once.
    pub terms: i64,
    /// Different workers that led.
    pub leaders: i64,
    /// Pairs of terms whose spans (first start to last recorded end of their
    /// finished entries) intersect: two leaders at once.
    pub overlaps: i64,
    /// Pairs of entries where the later one started has the smaller fence.
    pub inversions: i64,
}

pub async fn terms(db: &Client, run: u32) -> Result<Terms, Error> {
    let table = table(run);
    let sql = format!(
        "WITH span AS (
             SELECT fence, min(started) s, max(ended) e FROM {table}
             WHERE fence IS NOT NULL AND ended IS NOT NULL GROUP BY fence)
         SELECT
           (SELECT count(DISTINCT fence) FROM {table} WHERE fence IS NOT NULL),
           (SELECT count(DISTINCT worker) FROM {table} WHERE fence IS NOT NULL),
           (SELECT count(*) FROM span a JOIN span b ON a.fence < b.fence
              AND tstzrange(a.s, a.e) && tstzrange(b.s, b.e)),
           (SELECT count(*) FROM {table} a JOIN {table} b ON a.started < b.started
              WHERE a.fence > b.fence)"
    );
    let row = db.query_one(&sql, &[]).await?;
    Ok(Terms {
        terms: row.get(0),
        leaders: row.get(1),
        overlaps: row.get(2),
        inversions: row.get(3),
    })
}

/// Entries whose end was never recorded: cut short by a lost lock or a worker that
/// died inside.
pub async fn unfinished(db: &Client, run: u32) -> Result<i64, Error> {
    let sql = format!("SELECT count(*) FROM {} WHERE ended IS NULL", table(run));
    Ok(db.query_one(&sql, &[]).await?.get(0))
}

/// One worker's entries, as the database recorded them.
#[derive(Debug, Default, Clone)]
pub struct WorkerStats {
    pub entries: i64,
    /// How many of the worker's tasks got in at least once.
    pub tasks: i64,
    pub wait_p50_us: i64,
    pub wait_p99_us: i64,
    pub held_us: i64,
}

/// Every worker's finished entries, by worker.
pub async fn stats(db: &Client, run: u32) -> Result<Vec<(u32, WorkerStats)>, Error> {
    let sql = format!(
        "SELECT worker, count(*), count(DISTINCT task),
                percentile_disc(0.5) WITHIN GROUP (ORDER BY waited_us),
                percentile_disc(0.99) WITHIN GROUP (ORDER BY waited_us),
                (extract(epoch FROM sum(ended - started)) * 1e6)::int8
         FROM {} WHERE ended IS NOT NULL GROUP BY worker ORDER BY worker",
        table(run)
    );
    Ok(db
        .query(&sql, &[])
        .await?
        .iter()
        .map(|row| {
            let worker: i32 = row.get(0);
            let stats = WorkerStats {
                entries: row.get(1),
                tasks: row.get(2),
                wait_p50_us: row.get(3),
                wait_p99_us: row.get(4),
                held_us: row.get(5),
            };
            (worker as u32, stats)
        })
        .collect())
}

/// Two entries that were in the critical section at the same time.
#[derive(Debug)]
pub struct Overlap {
    pub first: String,
    pub second: String,
}

/// The overlaps: how many pairs of finished entries intersect, and a few of them.
pub async fn overlaps(db: &Client, run: u32) -> Result<(i64, Vec<Overlap>), Error> {
    let table = table(run);
    let pairs = format!(
        "FROM {table} a JOIN {table} b ON a.id < b.id
         WHERE a.ended IS NOT NULL AND b.ended IS NOT NULL
           AND tstzrange(a.started, a.ended) && tstzrange(b.started, b.ended)"
    );
    let count: i64 = db
        .query_one(&format!("SELECT count(*) {pairs}"), &[])
        .await?
        .get(0);
    let entry = |t: &str| {
        format!(
            "format('worker %s task %s [%s, %s)', {t}.worker, {t}.task, \
             to_char({t}.started, 'HH24:MI:SS.US'), to_char({t}.ended, 'HH24:MI:SS.US'))"
        )
    };
    let examples = db
        .query(
            &format!(
                "SELECT {}, {} {pairs} ORDER BY a.started LIMIT 3",
                entry("a"),
                entry("b")
            ),
            &[],
        )
        .await?
        .iter()
        .map(|row| Overlap {
            first: row.get(0),
            second: row.get(1),
        })
        .collect();
    Ok((count, examples))
}
