//! `goldleader --mode lead` on the test database, while the test kills the leader 3
//! times, ~1.5 s apart, each time only once the leader is inside (it has an open
//! entry, with its term's fence, in the run's entries table): twice by terminating
//! its backend (the holder of the lock "goldleader" in `pg_locks`), once by a
//! SIGKILL of its worker process. Leadership hands over each time: at least 4 terms
//! and 2 workers entered, every backend kill is counted as lost, the killed process
//! is shown gone (and never again as leader), the view names the leader and its
//! term, and the run exits 0 with no overlapping entries or terms and fences in time
//! order, by the database.
//!
//! The control: the summary's term checks, run on a table that holds two
//! overlapping terms and fences out of order, count them (so a 0 in the run is the
//! database's answer, not a check that cannot fail).

mod common;
#[allow(dead_code)] // the test reads the terms only; the demo's other queries are unused
#[path = "../examples/goldleader/entries.rs"]
mod entries;
mod goldleader_run;
#[allow(dead_code)]
#[path = "../examples/goldleader/server.rs"]
mod server;

use std::time::Duration;

use goldleader_run::{count, signal, summary_rows, Run};
use tokio::time::Instant;

/// How the leader is killed, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// `pg_terminate_backend` of the session holding the lock.
    Backend,
    /// SIGKILL of the leader's worker process.
    Process,
}

const KILLS: [Kill; 3] = [Kill::Backend, Kill::Process, Kill::Backend];
/// At least this long between two kills: each term leads a while, long enough for
/// the live view (a line a second) to show it.
const APART: Duration = Duration::from_millis(1500);

/// The query for the leader of run `run` while it is inside, in a term whose fence
/// is greater than `$1`: the backend holding the lock, its worker, and the fence of
/// its open entry.
fn leader_inside(run: u32) -> String {
    format!(
        "SELECT l.pid, e.worker, e.fence
         FROM pg_catalog.pg_locks l
         JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
         JOIN goldleader_entries_{run} e
           ON a.application_name = 'goldleader-{run}-worker-' || e.worker
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended('goldleader', 0)
           AND e.ended IS NULL AND e.fence > $1
         ORDER BY e.fence DESC LIMIT 1"
    )
}

/// A leader that was killed: its worker and its term's fence.
#[derive(Clone, Copy, Debug)]
struct Victim {
    worker: i32,
    fence: i64,
    how: Kill,
}

/// Once the leader of a term later than `after` is inside (polling for at most
/// 20 s), kills it `how`; asserts the kill landed.
async fn kill_leader(
    observer: &tokio_postgres::Client,
    run: &Run,
    after: i64,
    how: Kill,
) -> Victim {
    let inside = leader_inside(run.id);
    // One statement for a backend kill: the victim is chosen (MATERIALIZED) and
    // terminated while it is surely the one inside.
    let terminate = format!(
        "WITH victim AS MATERIALIZED ({inside})
         SELECT worker, fence, pg_catalog.pg_terminate_backend(pid) FROM victim"
    );
    let sql = match how {
        Kill::Backend => terminate,
        Kill::Process => format!("SELECT worker, fence, true FROM ({inside}) v"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let row = loop {
        if let Some(row) = observer.query_opt(&sql, &[&after]).await.unwrap() {
            break row;
        }
        assert!(Instant::now() < deadline, "no leader got inside in 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await; // a poll, not a sync
    };
    let (worker, fence, terminated): (i32, i64, bool) = (row.get(0), row.get(1), row.get(2));
    assert!(terminated, "terminated the backend of worker {worker}");
    if how == Kill::Process {
        signal(run.pids[worker as usize], "KILL");
    }
    Victim { worker, fence, how }
}

/// Polls until a term later than `after` has a finished entry (the run goes on
/// after the last kill).
async fn a_term_entered_after(observer: &tokio_postgres::Client, run: u32, after: i64) {
    let sql = format!(
        "SELECT count(*) FROM goldleader_entries_{run} WHERE fence > $1 AND ended IS NOT NULL"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entered: i64 = match observer.query_one(&sql, &[&after]).await {
            Ok(row) => row.get(0),
            Err(e) => panic!("the run ended before a term after {after} entered: {e}"),
        };
        if entered > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no term entered after {after}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every `leader: worker N (term M)` the live view showed, with its line number.
fn leaders_shown(stdout: &str) -> Vec<(usize, i32, i64)> {
    let mut shown = Vec::new();
    for (n, line) in stdout.lines().enumerate() {
        let Some((_, rest)) = line.split_once("leader: worker ") else {
            continue;
        };
        let (worker, rest) = rest.split_once(" (term ").expect("worker N (term M)");
        let term = rest.split(')').next().unwrap();
        shown.push((n, worker.parse().unwrap(), term.parse().unwrap()));
    }
    shown
}

#[tokio::test]
async fn killing_the_leaders_backend_or_process_hands_over_and_terms_stay_in_order() {
    let mut run = Run::start(&["--mode", "lead", "--duration", "10", "--workers", "3"]).await;
    let observer = common::observer().await;
    let mut victims: Vec<Victim> = Vec::new();
    let mut last_kill: Option<Instant> = None;
    for how in KILLS {
        if let Some(at) = last_kill {
            tokio::time::sleep_until(at + APART).await;
        }
        let after = victims.last().map_or(0, |v| v.fence);
        victims.push(kill_leader(&observer, &run, after, how).await);
        last_kill = Some(Instant::now());
    }
    println!("killed: {victims:?}");
    a_term_entered_after(&observer, run.id, victims.last().unwrap().fence).await;
    let process_victim = victims.iter().find(|v| v.how == Kill::Process).unwrap();
    let gone = format!("worker {} gone (", process_victim.worker);
    run.line_where(|l| l.starts_with(&gone)).await;
    let (code, out) = run.finish().await;

    assert_eq!(code, Some(0), "survived kills are not failures");
    assert_eq!(
        count(&out, "overlaps: "),
        Some(0),
        "no two entries overlapped"
    );
    assert_eq!(
        count(&out, "term overlaps: "),
        Some(0),
        "no two terms overlapped"
    );
    assert_eq!(
        count(&out, "fence inversions: "),
        Some(0),
        "fences increase in time"
    );
    let terms = out
        .split_once(" terms)")
        .and_then(|(before, _)| before.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .expect("a line `leaders: N (..., over M terms)`");
    assert!(
        terms > KILLS.len() as u64,
        "a new term after each kill: {terms} terms"
    );
    assert!(
        count(&out, "leaders: ").unwrap() >= 2,
        "at least 2 workers led"
    );
    let entered = summary_rows(&out)
        .iter()
        .filter(|cells| cells[1].parse::<u64>().unwrap() > 0)
        .count();
    assert!(entered >= 2, "at least 2 workers entered: {entered}");
    let backend_kills = KILLS.iter().filter(|k| **k == Kill::Backend).count() as u64;
    let lost = count(&out, "lost: ").unwrap_or(0);
    assert!(
        lost >= backend_kills,
        "each backend kill is a lost term: {lost} lost"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with(&gone) && l.contains("SIGKILL")),
        "the summary says how the killed leader went"
    );

    let shown = leaders_shown(&out);
    // The later victims led at least APART: a line a second shows them.
    let named = victims[1..]
        .iter()
        .filter(|v| {
            shown
                .iter()
                .any(|(_, w, t)| (*w, *t) == (v.worker, v.fence))
        })
        .count();
    assert!(
        named >= 1,
        "the view named the leaders and their terms: {shown:?}"
    );
    let gone_at = out.lines().position(|l| l.starts_with(&gone)).unwrap();
    for (n, worker, term) in &shown {
        assert!(
            *n < gone_at || *worker != process_victim.worker,
            "line {n}: the killed worker is shown leading term {term}"
        );
    }
}

/// A goldleader entries table of a run that never ran: one the test fills itself.
fn made_up_run() -> u32 {
    u32::MAX - std::process::id()
}

#[tokio::test]
async fn control_the_summary_counts_overlapping_terms_and_inverted_fences() {
    let pool = common::pool(1);
    let db = pool.get().await.unwrap();
    let run = made_up_run();
    entries::create(&db, run).await.unwrap();
    let table = entries::table(run);
    let fill = |rows: &str| {
        format!(
            "TRUNCATE {table};
             INSERT INTO {table} (worker, task, waited_us, started, ended, fence)
             SELECT w, 0, 0, '2026-01-01'::timestamptz + s * interval '1 second',
                    '2026-01-01'::timestamptz + e * interval '1 second', f
             FROM (VALUES {rows}) AS v(w, s, e, f)"
        )
    };
    // Terms one after the other, fences in time order: nothing to count.
    db.batch_execute(&fill("(0, 0, 1, 10), (1, 1, 2, 20), (2, 2, 3, 30)"))
        .await
        .unwrap();
    let clean = entries::terms(&db, run).await.unwrap();
    // Term 20 starts inside term 10; term 5 starts last with the smallest fence.
    db.batch_execute(&fill("(0, 0, 2, 10), (1, 1, 3, 20), (2, 4, 5, 5)"))
        .await
        .unwrap();
    let faulty = entries::terms(&db, run).await.unwrap();
    entries::drop(&db, run).await.unwrap();
    println!("clean: {clean:?}\nfaulty: {faulty:?}");
    assert_eq!((clean.terms, clean.leaders), (3, 3));
    assert_eq!((clean.overlaps, clean.inversions), (0, 0));
    assert_eq!(faulty.overlaps, 1, "the two terms that overlap");
    assert_eq!(faulty.inversions, 2, "10 and 20 both began before 5");
}
