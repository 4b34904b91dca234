//! The goldleader demo survives the faults it demonstrates, run as a user would
//! (without a terminal, so it prints plain lines) on the test database:
//! - the backend of the worker inside the critical section is terminated 4 times,
//!   ~1.2 s apart: every loss is counted in the summary, every worker goes on (each gets
//!   in again after the last kill), the view never shows two workers inside, and the
//!   run exits 0 with `overlaps: 0`; through a Pool and through a Locker, and in
//!   modes `try` and `skip` (there each killed worker gets in again after its kill;
//!   `--mode lead` has its own test, `tests/demo_lead.rs`);
//! - a worker process killed while inside is shown as gone and never again as
//!   inside, the others go on, and the exit status still says whether entries
//!   overlapped: 0 with the lock, 1 without it (the control);
//! - workers that cannot start do fail the run.

mod common;
mod goldleader_run;

use std::time::Duration;

use goldleader_run::{count, insides, server_now, signal, summary_rows, Run};
use tokio::time::Instant;

/// The runs take turns: they all use the lock "goldleader", and one run's workers
/// would wait for another's.
static SHARED_DATABASE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long each entry holds the lock: long enough that a kill right after an
/// entry began lands well before the entry's end is recorded.
const HOLD_MS: &str = "250";
/// A worker counts as just inside when its entry began at most this long ago.
const JUST_INSIDE: &str = "50 milliseconds";

/// Starts goldleader with `args` and this file's hold time.
async fn start(args: &[&str]) -> Run {
    Run::start(&[args, &["--hold-ms", HOLD_MS]].concat()).await
}

/// The condition, on `pg_locks l` and `pg_stat_activity a`, that `a` is a lock
/// session of a worker of run `run` that holds the lock "goldleader", and that the
/// worker is just inside: its entry began within [`JUST_INSIDE`] and has no end.
fn holder_just_inside(run: u32) -> String {
    format!(
        "l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
         AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended('goldleader', 0)
         AND a.application_name LIKE 'goldleader-{run}-worker-%'
         AND EXISTS (SELECT FROM goldleader_entries_{run} e
                     WHERE a.application_name = 'goldleader-{run}-worker-' || e.worker
                       AND e.ended IS NULL
                       AND e.started > clock_timestamp() - interval '{JUST_INSIDE}')"
    )
}

/// Once a worker of `run` holds the lock and is just inside (polling `pg_locks`,
/// for at most 10 s), terminates that worker's backend. Returns the worker's
/// session name and the server's clock at the kill.
async fn terminate_holder(observer: &tokio_postgres::Client, run: u32) -> (String, f64) {
    // The victim is chosen first: in one WHERE clause the server may call
    // pg_terminate_backend on rows the other conditions would have ruled out.
    let sql = format!(
        "WITH victim AS MATERIALIZED (
             SELECT l.pid, a.application_name
             FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
             WHERE {} LIMIT 1)
         SELECT application_name, extract(epoch FROM clock_timestamp())::float8
         FROM victim WHERE pg_catalog.pg_terminate_backend(pid)",
        holder_just_inside(run)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(row) = observer.query_opt(&sql, &[]).await.unwrap() {
            return (row.get(0), row.get(1));
        }
        assert!(Instant::now() < deadline, "no worker got inside in 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the run's entries until each of `workers` has a finished entry that began
/// after `since` (server clock); panics if the run ends first.
async fn each_gets_in_after(
    observer: &tokio_postgres::Client,
    run: u32,
    workers: &[i32],
    since: f64,
) {
    let sql = format!(
        "SELECT count(DISTINCT worker) FROM goldleader_entries_{run}
         WHERE ended IS NOT NULL AND extract(epoch FROM started)::float8 > $1
           AND worker = ANY($2)"
    );
    loop {
        let got_in: i64 = match observer.query_one(&sql, &[&since, &workers]).await {
            Ok(row) => row.get(0),
            Err(e) => panic!("the run ended before workers {workers:?} all got in again: {e}"),
        };
        if got_in == workers.len() as i64 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The summary's `lost` cell of each worker (the fourth cell from the end).
fn lost_per_worker(stdout: &str) -> Vec<u64> {
    let rows = summary_rows(stdout);
    rows.iter()
        .map(|cells| cells[cells.len() - 4].parse().unwrap())
        .collect()
}

/// A count of the summary that it leaves out when it is 0 (`lost`, `unfinished`).
fn count_or_0(stdout: &str, label: &str) -> u64 {
    count(stdout, label).unwrap_or(0)
}

/// How many times a holder's backend is terminated in a run.
const KILLS: usize = 4;

/// Which workers must get in again after the kills, as the proof they carried on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Again {
    /// Every worker, after the last kill: the server's queue lets each in in turn
    /// (`wait`).
    Everyone,
    /// Each killed worker, after its own kill: with `try` and `skip` the next holder
    /// is whoever tries first, so a given worker may wait many rounds for its turn;
    /// the killed ones are those with a loss to carry on from.
    TheKilled,
}

/// Terminates the holder's backend [`KILLS`] times, ~1.2 s apart, while 4 workers
/// run with `args`, then checks that goldleader counted every loss and carried on.
async fn survives_terminated_holders(args: &[&str], again: Again) {
    let _turn = SHARED_DATABASE.lock().await;
    // A longer run where the awaited workers get in only by winning a race of tries.
    let duration = match again {
        Again::Everyone => "10",
        Again::TheKilled => "12",
    };
    let run = start(&[&["--workers", "4", "--duration", duration], args].concat()).await;
    let observer = common::observer().await;
    let mut kills = Vec::new();
    for _ in 0..KILLS {
        kills.push(terminate_holder(&observer, run.id).await);
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    match again {
        Again::Everyone => {
            let last_kill = kills.last().unwrap().1;
            each_gets_in_after(&observer, run.id, &[0, 1, 2, 3], last_kill).await;
        }
        Again::TheKilled => {
            for (session, at) in &kills {
                let worker = session.rsplit('-').next().unwrap().parse().unwrap();
                each_gets_in_after(&observer, run.id, &[worker], *at).await;
            }
        }
    }
    let (code, out) = run.finish().await;
    println!("terminated: {kills:?}");

    assert_eq!(code, Some(0), "survived faults are not failures");
    assert!(out.contains("overlaps: 0 "), "no two entries overlapped");
    let lost = count_or_0(&out, "lost: ");
    assert!(
        lost >= kills.len() as u64,
        "every kill of a worker inside is a lost lock: {lost} lost, {} kills",
        kills.len()
    );
    assert_eq!(
        lost_per_worker(&out).iter().sum::<u64>(),
        lost,
        "the column adds up"
    );
    let warned = out
        .lines()
        .filter(|l| l.contains(" WARN goldleader::worker: lock lost"));
    assert_eq!(warned.count() as u64, lost, "each loss is logged at warn");
    for ending in [" gone (", " failed (", " could not start ("] {
        assert!(!out.contains(ending), "every worker lived to the end");
    }
    for (n, inside) in insides(&out) {
        assert!(
            !inside.contains(" + "),
            "line {n}: two inside at once: {inside}"
        );
    }
}

#[tokio::test]
async fn terminated_holders_are_counted_as_lost_and_the_pool_workers_go_on() {
    survives_terminated_holders(&[], Again::Everyone).await;
}

#[tokio::test]
async fn terminated_holders_are_counted_as_lost_and_the_locker_workers_go_on() {
    survives_terminated_holders(&["--tasks", "4"], Again::Everyone).await;
}

#[tokio::test]
async fn terminated_holders_are_counted_as_lost_and_the_workers_go_on_in_mode_try() {
    survives_terminated_holders(&["--mode", "try"], Again::TheKilled).await;
}

#[tokio::test]
async fn terminated_holders_are_counted_as_lost_and_the_workers_go_on_in_mode_skip() {
    survives_terminated_holders(&["--mode", "skip"], Again::TheKilled).await;
}

/// Kills worker 1's process (SIGKILL) while it is inside, with `args`; returns
/// goldleader's exit status and stdout, having checked that worker 1 is shown gone,
/// never again inside, and that the others went on.
async fn kill_worker_1_inside(args: &[&str]) -> (Option<i32>, String) {
    let _turn = SHARED_DATABASE.lock().await;
    let mut run = start(&[&["--workers", "3", "--duration", "6"], args].concat()).await;
    let observer = common::observer().await;
    // Inside: an entry of worker 1 just began and has no end (with the lock, its
    // session also holds the lock: the premise, checked in pg_locks).
    let inside = match args.contains(&"none") {
        true => format!(
            "SELECT FROM goldleader_entries_{0} e WHERE e.worker = 1 AND e.ended IS NULL
             AND e.started > clock_timestamp() - interval '{JUST_INSIDE}'",
            run.id
        ),
        false => format!(
            "SELECT FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
             WHERE {} AND a.application_name = 'goldleader-{}-worker-1'",
            holder_just_inside(run.id),
            run.id
        ),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while observer.query_opt(&inside, &[]).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "worker 1 never got inside");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    signal(run.pids[1], "KILL");
    let at_kill = server_now(&observer).await;
    each_gets_in_after(&observer, run.id, &[0, 2], at_kill).await;
    run.line_where(|l| l.starts_with("worker 1 gone (")).await;
    let (code, out) = run.finish().await;

    let gone = out
        .lines()
        .position(|l| l.starts_with("worker 1 gone ("))
        .unwrap();
    let after: Vec<_> = insides(&out)
        .into_iter()
        .filter(|(n, _)| *n > gone)
        .collect();
    assert!(!after.is_empty(), "progress lines after the kill");
    for (n, inside) in &after {
        assert!(
            !inside.contains("worker 1"),
            "line {n}: a dead worker inside"
        );
        let line = out.lines().nth(*n).unwrap();
        assert!(
            line.contains("| worker 1 gone ("),
            "line {n} says worker 1 is gone"
        );
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("worker 1 gone (") && l.contains("SIGKILL")),
        "the summary says how worker 1 went"
    );
    assert!(
        count_or_0(&out, "unfinished: ") >= 1,
        "the entry worker 1 was in never ended"
    );
    (code, out)
}

#[tokio::test]
async fn a_worker_killed_inside_is_gone_and_the_others_go_on_without_overlap() {
    let (code, out) = kill_worker_1_inside(&[]).await;
    assert_eq!(code, Some(0), "a killed worker is a survived fault");
    assert!(out.contains("overlaps: 0 "));
}

/// The control: without the lock, a killed worker does not hide the overlaps.
#[tokio::test]
async fn without_the_lock_a_killed_worker_does_not_hide_the_overlaps() {
    let (code, out) = kill_worker_1_inside(&["--mode", "none"]).await;
    assert_eq!(code, Some(1), "overlaps fail the run");
    assert!(count_or_0(&out, "overlaps: ") > 0, "and are found");
}

/// The test database as a role that may open one connection (the leader's), so
/// that the workers cannot connect.
async fn one_connection_database() -> String {
    let admin = common::observer().await;
    admin
        .batch_execute(
            "DO $$ BEGIN
                 CREATE ROLE goldleader_one_connection LOGIN PASSWORD 'goldleader' CONNECTION LIMIT 1;
             EXCEPTION WHEN duplicate_object THEN NULL;
             END $$;
             GRANT CREATE ON SCHEMA public TO goldleader_one_connection",
        )
        .await
        .expect("create a role with a connection limit (the test needs CREATEROLE)");
    let config = pglock::testdb::shared().config();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(dir) => dir.display().to_string(),
    };
    format!(
        "host={host} port={} dbname={} user=goldleader_one_connection password=goldleader",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or("postgres"),
    )
}

/// Unlike the faults above, workers that could not start fail the run.
#[tokio::test]
async fn workers_that_cannot_start_fail_the_run() {
    let _turn = SHARED_DATABASE.lock().await;
    let url = one_connection_database().await;
    let run = Run::start_on(
        &url,
        &["--workers", "2", "--duration", "3", "--hold-ms", HOLD_MS],
    )
    .await;
    let (code, out) = run.finish().await;
    // goldleader dropped its table, so the role owns nothing left.
    common::observer()
        .await
        .batch_execute(
            "REVOKE CREATE ON SCHEMA public FROM goldleader_one_connection;
             DROP ROLE goldleader_one_connection",
        )
        .await
        .expect("drop the role");
    assert_eq!(code, Some(1), "the run fails");
    for w in 0..2 {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("worker {w} could not start ("))),
            "worker {w} is reported as not started"
        );
    }
    assert!(
        out.contains("too many connections for role"),
        "and the reason is shown"
    );
}
