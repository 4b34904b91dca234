//! `Leadership` against a real server:
//!
//! - a fleet of 4 processes (`examples/leader`) campaigning for 10 s while the test
//!   terminates the leader's backend every 2 s: by the database, no two terms
//!   overlapped, fences increase with time, and each new leader started within the
//!   campaign interval plus the loss bound of the kill;
//! - graceful shutdown: the follower starts within one campaign interval;
//! - an immediate restart of the server between two terms: the later fence is greater;
//! - a body returning `Ok` steps down (the lock is free in `pg_locks`) and campaigns
//!   again; one returning `Err` ends `run` with it, the lock released;
//! - a stalled server (its backend stopped with SIGSTOP): the body is dropped within
//!   the keepalive bound + 1 s, and once the backend runs again a follower leads with
//!   a greater fence;
//! - elected / lost / stepped down are traced, each with the term's fence;
//! - the future of `run` is `Send`.

mod common;

use common::backend::Stopped;

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, Error, Leadership, LockKey, Term};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Polls (every 20 ms) until `ready` gives a value, for at most `within`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    mut ready: impl FnMut() -> F,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = ready().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The backend holding `key`, as `pg_locks` says.
async fn holder(observer: &tokio_postgres::Client, key: LockKey) -> Option<i32> {
    let rows = common::lock_rows(observer, key).await;
    rows.into_iter().find(|row| row.granted).map(|row| row.pid)
}

/// The next value from `rx`, failing the test rather than hanging if none comes.
async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within 30 s"))
        .unwrap_or_else(|| panic!("{what}: the sender is gone"))
}

fn now_us() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    since.as_micros() as i64
}

/// A term as the table recorded it.
#[derive(Debug, Clone)]
struct TermRow {
    fence: i64,
    started: i64,
    ended: Option<i64>,
}

async fn terms(observer: &tokio_postgres::Client, table: &str) -> Vec<TermRow> {
    observer
        .query(
            &format!("SELECT fence, started, ended FROM \"{table}\" ORDER BY started"),
            &[],
        )
        .await
        .expect("read the terms")
        .into_iter()
        .map(|row| TermRow {
            fence: row.get(0),
            started: row.get(1),
            ended: row.get(2),
        })
        .collect()
}

const FLEET: usize = 4;
const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);
const KEEPALIVE: Duration = Duration::from_secs(2);

/// Spawns `FLEET` copies of `examples/leader`, each connected (`ready`) on return.
async fn spawn_fleet(table: &str, lock: &str) -> Vec<Child> {
    let binary = common::example_binary("leader");
    let mut fleet = Vec::new();
    for _ in 0..FLEET {
        let mut child = tokio::process::Command::new(&binary)
            .args([pglock::testdb::shared().url(), table, "--lock", lock])
            .args([
                "--campaign-every-ms",
                &CAMPAIGN_EVERY.as_millis().to_string(),
            ])
            .args(["--keepalive-ms", &KEEPALIVE.as_millis().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn examples/leader");
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(stdout.next_line().await.unwrap().as_deref(), Some("ready"));
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        fleet.push(child);
    }
    fleet
}

/// Asks every process to shut down, and checks that each exits cleanly.
async fn stop_fleet(fleet: Vec<Child>) {
    for mut child in fleet {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"stop\n").await.unwrap();
        drop(stdin);
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("a leader process exits after shutdown")
            .unwrap();
        assert!(status.success(), "a leader process failed: {status}");
    }
}

async fn terms_table(label: &str) -> String {
    let table = common::unique(label).replace(':', "_");
    let observer = common::observer().await;
    observer
        .batch_execute(&format!(
            "CREATE TABLE \"{table}\" (fence int8 PRIMARY KEY, pid int NOT NULL, \
             started int8 NOT NULL, ended int8)"
        ))
        .await
        .expect("create the terms table");
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_hand_over_without_overlap_while_leaders_are_killed() {
    let table = terms_table("terms").await;
    let name = common::unique("fleet-leader");
    let key = LockKey::from_name(&name);
    let observer = common::observer().await;
    let fleet = spawn_fleet(&table, &name).await;
    let started = Instant::now();
    let mut kills = Vec::new(); // (killed at, the term then leading)
    while started.elapsed() < Duration::from_secs(10) {
        let round = Instant::now();
        // A leader whose body runs: it holds the lock and its term row is there.
        let (obs, table, killed) = (&observer, &table, &kills);
        let leading = eventually(Duration::from_secs(20), || async move {
            let pid = holder(obs, key).await?;
            let rows = terms(obs, table).await;
            let last = rows.last()?.clone();
            (last.ended.is_none() && killed.iter().all(|(_, k): &(i64, i64)| *k != last.fence))
                .then_some((pid, last))
        })
        .await
        .expect("a leader is elected");
        tokio::time::sleep_until(round + Duration::from_secs(2)).await;
        let killed_at = now_us();
        let (pid, term) = leading;
        let terminated: bool = observer
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(terminated, "terminated the leader's backend {pid}");
        kills.push((killed_at, term.fence));
    }
    // The last kill's successor, then everyone steps down.
    let last = kills.last().unwrap().1;
    let (obs, tbl) = (&observer, &table);
    eventually(Duration::from_secs(20), || async move {
        let rows = terms(obs, tbl).await;
        rows.iter().any(|t| t.fence > last).then_some(())
    })
    .await
    .expect("a leader after the last kill");
    stop_fleet(fleet).await;

    let rows = terms(&observer, &table).await;
    println!("{} terms, {} kills: {rows:#?}", rows.len(), kills.len());
    assert!(
        kills.len() >= 4,
        "the scenario killed {} leaders",
        kills.len()
    );
    assert!(
        rows.len() > kills.len(),
        "every kill was followed by a new term"
    );
    for pair in rows.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(
            after.fence > before.fence,
            "fences increase: {before:?} then {after:?}"
        );
        let ended = before.ended.expect("every term ended and recorded its end");
        assert!(
            ended <= after.started,
            "two bodies ran at once: {before:?} and {after:?}"
        );
    }
    // Each kill's successor started within the campaign interval plus the loss
    // bound (a closed connection is noticed within CHECK_EVERY; the follower's next
    // try comes within the interval); plus one second for a machine under load.
    let bound = CAMPAIGN_EVERY + pglock::CHECK_EVERY + Duration::from_secs(1);
    for (killed_at, fence) in &kills {
        let next = rows.iter().find(|t| t.fence > *fence).unwrap();
        let took = Duration::from_micros((next.started - killed_at).max(0) as u64);
        assert!(
            took <= bound,
            "after the kill of term {fence}, {next:?} took {took:?}"
        );
    }
}

/// A Leadership on `pool` whose body reports each term and then leads until dropped.
fn leads(pool: deadpool_postgres::Pool, name: &str) -> Leadership<deadpool_postgres::Pool> {
    Leadership::new(AdvisoryLock::new(name), pool).campaign_every(Duration::from_millis(400))
}

/// Whether a session named `application_name` sent a try for an advisory lock and
/// now sits idle holding no advisory lock: it tried, and the lock was busy.
async fn tried_and_found_busy(observer: &tokio_postgres::Client, application_name: &str) -> bool {
    let row = observer
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_stat_activity a
             WHERE a.application_name = $1 AND a.state = 'idle'
               AND a.query LIKE '%pg_try_advisory_lock%'
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_locks l
                               WHERE l.pid = a.pid AND l.locktype = 'advisory')",
            &[&application_name],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) > 0
}

#[tokio::test]
async fn graceful_shutdown_hands_over_within_one_campaign_interval() {
    let name = common::unique("graceful-leader");
    let every = Duration::from_secs(2);
    let (leader_terms, mut first) = mpsc::unbounded_channel();
    let (follower_terms, mut second) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let leader =
        Leadership::new(AdvisoryLock::new(name.as_str()), common::pool(4)).campaign_every(every);
    let leader = tokio::spawn(async move {
        leader
            .run(async { stopped.await.unwrap() }, move |term| {
                let _ = leader_terms.send(term);
                async { std::future::pending::<Result<(), Error>>().await }
            })
            .await
    });
    let leading = next(&mut first, "the first instance leads").await;
    let follower_name = common::unique("graceful-follower");
    let follower_pool = common::named_pool(4, &follower_name);
    let follower =
        Leadership::new(AdvisoryLock::new(name.as_str()), follower_pool).campaign_every(every);
    let follower = tokio::spawn(async move {
        follower
            .run(std::future::pending(), move |term| {
                let _ = follower_terms.send(term);
                async { std::future::pending::<Result<(), Error>>().await }
            })
            .await
    });
    let observer = common::observer().await;
    let key = LockKey::from_name(&name);
    assert!(
        holder(&observer, key).await.is_some(),
        "the leader holds the lock"
    );
    // The premise: the follower is campaigning, and found the lock busy.
    let (obs, app) = (&observer, follower_name.as_str());
    eventually(Duration::from_secs(10), || async move {
        tried_and_found_busy(obs, app).await.then_some(())
    })
    .await
    .expect("the follower tried for the lock while the leader led");
    assert!(
        second.try_recv().is_err(),
        "no follower term while the leader leads"
    );

    stop.send(()).unwrap();
    leader.await.unwrap().expect("shutdown returns Ok");
    let stepped_down = std::time::Instant::now();
    assert!(
        leading.is_over(),
        "the leader's term is over once run returned"
    );
    let taken_over = next(&mut second, "the follower leads").await;
    let took = taken_over.since().saturating_duration_since(stepped_down);
    println!("handed over in {took:?}");
    assert!(taken_over.fence() > leading.fence());
    // One interval, and the round trips of one try (lock, fence, gate).
    assert!(took <= every + Duration::from_millis(500), "took {took:?}");
    follower.abort();
}

#[tokio::test]
async fn an_immediate_restart_between_two_terms_gives_a_greater_fence() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let pool = cluster.db().pool(4);
    let name = common::unique("restart-leader");
    let (terms_tx, mut terms_rx) = mpsc::unbounded_channel();
    let leadership = Leadership::new(AdvisoryLock::new(name.as_str()), pool)
        .campaign_every(Duration::from_millis(200))
        .max_backoff(Duration::from_millis(500));
    let running = tokio::spawn(async move {
        leadership
            .run(std::future::pending(), move |term| {
                let _ = terms_tx.send(term);
                async { std::future::pending::<Result<(), Error>>().await }
            })
            .await
    });
    let before = next(&mut terms_rx, "elected").await;
    cluster.restart_immediate().expect("immediate restart");
    let after = next(&mut terms_rx, "elected again after the restart").await;
    assert!(before.is_over(), "the first term ended with the server");
    println!(
        "fence {} before the restart, {} after",
        before.fence(),
        after.fence()
    );
    assert!(after.fence() > before.fence());
    running.abort();
}

#[tokio::test]
async fn ok_steps_down_and_campaigns_again_err_ends_run() {
    let name = common::unique("stepping-leader");
    let key = LockKey::from_name(&name);
    let observer = common::observer().await;
    let (terms_tx, mut terms_rx) = mpsc::unbounded_channel::<u64>();
    let leadership = leads(common::pool(4), &name);
    let mut calls = 0;
    let outcome = leadership
        .run(std::future::pending(), |term: Term| {
            calls += 1;
            let (terms_tx, call) = (terms_tx.clone(), calls);
            async move {
                let _ = terms_tx.send(term.fence());
                if call < 3 {
                    Ok(())
                } else {
                    Err(Error::Busy {
                        lock: AdvisoryLock::new("the body's own error").id().clone(),
                    })
                }
            }
        })
        .await;
    let error = outcome.expect_err("the third body's Err ends run");
    assert!(
        error.to_string().contains("the body's own error"),
        "{error}"
    );
    let fences: Vec<u64> = std::iter::from_fn(|| terms_rx.try_recv().ok()).collect();
    assert_eq!(fences.len(), 3, "{fences:?}");
    assert!(fences.windows(2).all(|w| w[1] > w[0]), "{fences:?}");
    let rows = common::gone_within(&observer, key, Duration::from_secs(1)).await;
    assert!(rows.is_empty(), "the lock is released after Err: {rows:?}");
}

#[test]
fn the_future_of_run_is_send() {
    fn assert_send<T: Send>(_: T) {}
    let leadership = leads(
        deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
            tokio_postgres::Config::new(),
            tokio_postgres::NoTls,
        ))
        .build()
        .unwrap(),
        "send",
    );
    assert_send(leadership.run(std::future::pending(), |_term| async {
        Ok::<(), Error>(())
    }));
}

/// When a body started and when it was dropped, as the process saw it.
#[derive(Debug, Clone, Copy)]
struct Span {
    started: std::time::Instant,
    dropped: Option<std::time::Instant>,
}

/// Sends the moment it is dropped.
struct Dropped(Option<tokio::sync::oneshot::Sender<std::time::Instant>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(std::time::Instant::now());
        }
    }
}

/// One handover after the leader's backend is terminated, with a follower that
/// tries every 20 ms (so it wins long before the old leader can notice): the old
/// body's span and the new one's.
async fn handover_after_a_kill(gated: bool) -> (Span, Span) {
    let name = common::unique("gate-leader");
    let key = LockKey::from_name(&name);
    let observer = common::observer().await;
    let every = Duration::from_millis(20);
    let instance = |pool| {
        let leadership =
            Leadership::new(AdvisoryLock::new(name.as_str()), pool).campaign_every(every);
        if gated {
            leadership
        } else {
            leadership.without_handover_gate()
        }
    };
    let (old_started, mut old_rx) = mpsc::unbounded_channel();
    let (old_dropped_tx, old_dropped) = tokio::sync::oneshot::channel();
    let mut old_dropped_tx = Some(old_dropped_tx);
    let old = instance(common::pool(4));
    let old = tokio::spawn(async move {
        old.run(std::future::pending(), move |term: Term| {
            let dropped = Dropped(old_dropped_tx.take());
            let _ = old_started.send(term.since());
            async move {
                let _dropped = dropped;
                std::future::pending::<Result<(), Error>>().await
            }
        })
        .await
    });
    let old_since = next(&mut old_rx, "the first leader").await;
    let (new_started, mut new_rx) = mpsc::unbounded_channel();
    let new = instance(common::pool(4));
    let new = tokio::spawn(async move {
        new.run(std::future::pending(), move |term: Term| {
            let _ = new_started.send(std::time::Instant::now());
            let _ = term;
            std::future::pending::<Result<(), Error>>()
        })
        .await
    });
    let pid = holder(&observer, key)
        .await
        .expect("the leader holds the lock in pg_locks");
    let terminated: bool = observer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(terminated);
    let new_since = next(&mut new_rx, "the new leader").await;
    let old_end = tokio::time::timeout(Duration::from_secs(30), old_dropped)
        .await
        .expect("the old body is dropped")
        .expect("its end is reported");
    old.abort();
    new.abort();
    let old_span = Span {
        started: old_since,
        dropped: Some(old_end),
    };
    let new_span = Span {
        started: new_since,
        dropped: None,
    };
    (old_span, new_span)
}

fn overlapped(old: Span, new: Span) -> bool {
    old.dropped.is_some_and(|dropped| new.started < dropped)
}

#[tokio::test]
async fn the_handover_gate_keeps_a_new_leader_from_starting_before_the_old_body_is_dropped() {
    for round in 0..5 {
        let (old, new) = handover_after_a_kill(true).await;
        println!("round {round}: old {old:?}, new {new:?}");
        assert!(
            !overlapped(old, new),
            "two bodies ran at once: {old:?}, {new:?}"
        );
    }
}

#[tokio::test]
async fn control_without_the_gate_a_new_leader_starts_while_the_old_body_runs() {
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let (old, new) = handover_after_a_kill(false).await;
        rounds.push((old, new));
        if overlapped(old, new) {
            break;
        }
    }
    println!("{rounds:#?}");
    assert!(
        rounds.iter().any(|(old, new)| overlapped(*old, *new)),
        "without the gate no body ever overlapped: the test cannot tell"
    );
}

#[tokio::test]
async fn through_lockers_a_follower_takes_over_with_a_greater_fence() {
    let name = common::unique("locker-leader");
    let every = Duration::from_millis(300);
    let instance = || {
        Leadership::new(
            AdvisoryLock::new(name.as_str()),
            pglock::Locker::new(common::pool(3)),
        )
        .campaign_every(every)
    };
    let (first_tx, mut first) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let leader = instance();
    let leader = tokio::spawn(async move {
        leader
            .run(async { stopped.await.unwrap() }, move |term| {
                let _ = first_tx.send(term);
                std::future::pending::<Result<(), Error>>()
            })
            .await
    });
    let leading = next(&mut first, "the first Locker instance leads").await;
    let (second_tx, mut second) = mpsc::unbounded_channel();
    let follower = instance();
    let follower = tokio::spawn(async move {
        follower
            .run(std::future::pending(), move |term| {
                let _ = second_tx.send(term);
                std::future::pending::<Result<(), Error>>()
            })
            .await
    });
    let observer = common::observer().await;
    assert!(holder(&observer, LockKey::from_name(&name)).await.is_some());
    stop.send(()).unwrap();
    leader.await.unwrap().expect("shutdown returns Ok");
    let taken_over = next(&mut second, "the follower leads").await;
    assert!(taken_over.fence() > leading.fence());
    follower.abort();
}

#[tokio::test]
async fn a_stalled_server_drops_the_body_within_the_keepalive_bound_then_a_follower_leads() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let observer = cluster.db().connect().await.unwrap();
    let name = common::unique("stalled-leader");
    let key = LockKey::from_name(&name);
    let keepalive = Duration::from_secs(1);
    let instance = || {
        let lock = AdvisoryLock::new(name.as_str()).keepalive(keepalive);
        Leadership::new(lock, cluster.db().pool(4)).campaign_every(Duration::from_millis(200))
    };
    let (started, mut first) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = tokio::sync::oneshot::channel();
    let mut dropped_tx = Some(dropped_tx);
    let leader = instance();
    let leader = tokio::spawn(async move {
        leader
            .run(std::future::pending(), move |term: Term| {
                let dropped = Dropped(dropped_tx.take());
                let _ = started.send(term);
                async move {
                    let _dropped = dropped;
                    std::future::pending::<Result<(), Error>>().await
                }
            })
            .await
    });
    let leading = next(&mut first, "the first instance leads").await;
    let (follower_terms, mut second) = mpsc::unbounded_channel();
    let follower = instance();
    let follower = tokio::spawn(async move {
        follower
            .run(std::future::pending(), move |term| {
                let _ = follower_terms.send(term);
                std::future::pending::<Result<(), Error>>()
            })
            .await
    });
    let seat = holder(&observer, key)
        .await
        .expect("the leader's seat holds the lock in pg_locks");

    let resume = Stopped::backend(seat);
    let stopped = std::time::Instant::now();
    let body_dropped = tokio::time::timeout(keepalive + Duration::from_secs(1), dropped).await;
    let body_dropped = body_dropped
        .expect("the body is dropped within the keepalive bound + 1 s")
        .expect("its end is reported");
    println!("body dropped {:?} after the stop", body_dropped - stopped);
    assert!(leading.is_over());
    // The old leader is done with: only the follower may lead next.
    leader.abort();
    assert!(second.try_recv().is_err(), "no follower term while stopped");
    // Running again, the backend finds its client gone and ends, freeing the lock.
    drop(resume);
    let taken_over = next(&mut second, "the follower leads").await;
    println!("fences {} then {}", leading.fence(), taken_over.fence());
    assert!(taken_over.fence() > leading.fence());
    follower.abort();
}

#[tokio::test]
async fn elected_lost_and_stepped_down_are_traced_with_the_fence() {
    let capture = common::capture::Capture::global();
    let name = common::unique("traced-leader");
    let key = LockKey::from_name(&name);
    let observer = common::observer().await;
    let leadership = leads(common::pool(4), &name);
    let (terms_tx, mut terms_rx) = mpsc::unbounded_channel::<Term>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut calls = 0;
    let running = leadership.run(async { stopped.await.unwrap() }, |term: Term| {
        calls += 1;
        let (terms_tx, call) = (terms_tx.clone(), calls);
        async move {
            let _ = terms_tx.send(term);
            // The second term returns (steps down); the others lead until ended.
            if call != 2 {
                std::future::pending::<()>().await;
            }
            Ok::<(), Error>(())
        }
    });
    let script = async {
        let first = next(&mut terms_rx, "the first term").await; // lost: killed
        let pid = holder(&observer, key).await.expect("the leader holds it");
        let terminated: bool = observer
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(terminated);
        let second = next(&mut terms_rx, "the second term").await; // returns Ok
        let third = next(&mut terms_rx, "the third term").await; // shut down
        stop.send(()).unwrap();
        [first.fence(), second.fence(), third.fence()]
    };
    let (outcome, fences) = tokio::join!(running, script);
    outcome.expect("shutdown returns Ok");

    let ours: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.field("lock").is_some_and(|l| l.contains(&name)))
        .filter(|e| e.target.starts_with("pglock_runtime::leadership"))
        .map(|e| {
            let message = e.field("message").unwrap_or_default().to_string();
            let why = e.field("why").map(str::to_string);
            (e.level, message, e.field("fence").map(str::to_string), why)
        })
        .collect();
    println!("{ours:#?}");
    let f = fences.map(|f| Some(f.to_string()));
    let lost = "leadership lost: the lock's session is gone; campaigning again";
    let expected = vec![
        (tracing::Level::INFO, "elected leader", &f[0], None),
        (tracing::Level::WARN, lost, &f[0], None),
        (tracing::Level::INFO, "elected leader", &f[1], None),
        (
            tracing::Level::INFO,
            "stepped down",
            &f[1],
            Some("the body returned"),
        ),
        (tracing::Level::INFO, "elected leader", &f[2], None),
        (
            tracing::Level::INFO,
            "stepped down",
            &f[2],
            Some("shutdown"),
        ),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(level, message, fence, why)| {
            let why = why.map(str::to_string);
            (level, message.to_string(), fence.clone(), why)
        })
        .collect();
    assert_eq!(ours, expected);
}
