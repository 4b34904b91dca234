//! A Locker's lock session in doubt is retired: once a try or an unlock on it was
//! answered with a cancel (`57014`, from `pg_cancel_backend` or `statement_timeout`),
//! the session may hold a key the Locker takes for free. It is closed (its backend
//! ends, and every lock with it; the guards on it report lost) and replaced by a new
//! one. Shown by a random storm of cancels, and deterministically: a statement of the
//! lock session is held inside the server (at a gate in front of `pg_proc`, see
//! [`ProcGate`]) while a background unlock is cancelled or a try runs out of
//! `statement_timeout`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{gone_within, holders, observer, pool, unique};
use pglock::testdb::Cluster;
use pglock::{AdvisoryLock, Error, Locker};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;

/// How long the storm may run before the test gives up on provoking a cancel.
const STORM: Duration = Duration::from_secs(20);
const TASKS: usize = 8;

fn cancelled(error: &Error) -> bool {
    matches!(error, Error::Db { source, .. } if source.code() == Some(&SqlState::QUERY_CANCELED))
}

/// Cancels whatever backend `pid` runs, again and again, until `stop`.
fn cancel_storm(pid: i32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let canceller = observer().await;
        while !stop.load(Ordering::SeqCst) {
            canceller
                .execute("SELECT pg_cancel_backend($1)", &[&pid])
                .await
                .unwrap();
        }
    })
}

/// Tasks taking and releasing keys of their own through `locker` until `stop`;
/// each cancelled try or release is reported on `doubts`.
fn lockers(
    locker: &Locker,
    prefix: &str,
    stop: &Arc<AtomicBool>,
    doubts: &mpsc::UnboundedSender<&'static str>,
) -> Vec<tokio::task::JoinHandle<Vec<AdvisoryLock>>> {
    (0..TASKS)
        .map(|task| {
            let (locker, stop, doubts) = (locker.clone(), stop.clone(), doubts.clone());
            let prefix = format!("{prefix}:{task}");
            tokio::spawn(async move {
                let mut used = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let lock = AdvisoryLock::new(format!("{prefix}:{i}"));
                    used.push(lock.clone());
                    match lock.try_acquire(&locker).await {
                        Ok(guard) => match guard.release().await {
                            Err(error) if cancelled(&error) => doubts.send("release").unwrap(),
                            _ => {}
                        },
                        Err(error) if cancelled(&error) => doubts.send("try").unwrap(),
                        Err(_) => {}
                    }
                }
                used
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_session_whose_try_or_unlock_was_cancelled_is_closed_and_replaced() {
    let observer = observer().await;
    let locker = Locker::builder(pool(8)).sessions(1).build();
    let first = AdvisoryLock::new(unique("doubt:first"));
    let held = first.try_acquire(&locker).await.expect("the first lock");
    let [pid] = holders(&observer, first.key()).await[..] else {
        panic!("one backend holds the first lock");
    };

    let stop = Arc::new(AtomicBool::new(false));
    let (doubts, mut doubted) = mpsc::unbounded_channel();
    let storm = cancel_storm(pid, stop.clone());
    let tasks = lockers(&locker, &unique("doubt:storm"), &stop, &doubts);
    let what = tokio::time::timeout(STORM, doubted.recv()).await;
    stop.store(true, Ordering::SeqCst);
    storm.await.unwrap();
    let mut used = Vec::new();
    for task in tasks {
        used.extend(task.await.unwrap());
    }
    let what = what
        .expect("a try or an unlock on the lock session was cancelled within the storm")
        .unwrap();
    println!("cancelled: {what}");

    tokio::time::timeout(common::pg_locks::PATIENCE, held.lost())
        .await
        .expect("the guard on the retired session reports lost");
    assert!(held.is_lost());
    let deadline = Instant::now() + common::pg_locks::PATIENCE;
    while observer
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await
        .unwrap()
        .is_some()
    {
        assert!(Instant::now() < deadline, "the session in doubt is closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for lock in used.iter().chain([&first]) {
        let left = gone_within(&observer, lock.key(), Duration::from_secs(1)).await;
        assert!(
            left.is_empty(),
            "nobody holds {}, free for the Locker: {left:?}",
            lock.id()
        );
    }
    drop(held);

    let again = AdvisoryLock::new(unique("doubt:again"));
    let guard = again
        .try_acquire(&locker)
        .await
        .expect("the Locker works on");
    let now = holders(&observer, again.key()).await;
    assert!(
        now.len() == 1 && now[0] != pid,
        "a new session holds it: {now:?}, not {pid}"
    );
    guard.release().await.unwrap();
    assert_eq!(locker.open_sessions(), 1);
}

/// A gate in front of `pg_proc`, to hold a lock session's next statement inside the
/// server for as long as the test needs (where a cancel or a `statement_timeout`
/// then lands on it, not on an idle session). Closing it commits a new schema and a
/// new function, which invalidates every backend's cached plans and function-name
/// lookups, then holds `pg_proc` exclusively: the session's next statement must look
/// its functions up again and waits in `pg_locks` for the catalog.
struct ProcGate {
    /// Holds the catalog lock; the test's observer while the gate is closed (its own
    /// lookups are not blocked by its own lock).
    client: tokio_postgres::Client,
}

/// `pg_catalog.pg_proc`'s fixed oid: read without a lookup the gate would block.
const PG_PROC: u32 = 1255;

impl ProcGate {
    async fn close(cluster: &Cluster, name: &str) -> ProcGate {
        let client = cluster.db().connect().await.unwrap();
        client
            .batch_execute(&format!(
                "CREATE SCHEMA {name}; \
                 CREATE FUNCTION {name}.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"
            ))
            .await
            .unwrap();
        client
            .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_proc IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        ProcGate { client }
    }

    /// Waits until backend `pid` runs a statement containing `statement` and waits
    /// for the catalog behind the gate, as `pg_locks` and `pg_stat_activity` show.
    async fn holds_back(&self, pid: i32, statement: &str) {
        let deadline = Instant::now() + common::pg_locks::PATIENCE;
        loop {
            // The gate's transaction would otherwise read one snapshot of
            // `pg_stat_activity` until it ends.
            self.client
                .batch_execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
                .await
                .unwrap();
            let row = self
                .client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
                       JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid \
                      WHERE l.locktype = 'relation' AND l.relation = $1 AND NOT l.granted \
                        AND l.pid = $2 AND strpos(a.query, $3) > 0)",
                    &[&PG_PROC, &pid, &statement],
                )
                .await
                .unwrap();
            if row.get::<_, bool>(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "backend {pid} never waited at the gate running {statement:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether backend `pid` holds `key` now.
    async fn holds(&self, pid: i32, key: pglock::LockKey) -> bool {
        holders(&self.client, key).await.contains(&pid)
    }

    async fn open(self) {
        self.client.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// What a lock session's statements contain: an unlock and a try (alone, or in a
/// batch of them), and the statement that ends a retired session's own backend.
const UNLOCK_STATEMENT: &str = "pg_catalog.pg_advisory_unlock(";
const TRY_STATEMENT: &str = "pg_catalog.pg_try_advisory_lock(";
const ENDING_STATEMENT: &str = "pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid())";

/// After a lock session `pid` was retired: its backend leaves the server, nothing is
/// left on `keys`, and the next lock of `next` is held by a new backend.
async fn retired_and_replaced(
    observer: &tokio_postgres::Client,
    locker: &Locker,
    pid: i32,
    keys: &[&AdvisoryLock],
    next: &AdvisoryLock,
) {
    assert!(
        common::backend_gone_within(observer, pid, common::pg_locks::PATIENCE).await,
        "the lock session in doubt ({pid}) is closed"
    );
    for lock in keys {
        common::assert_released_within_1s(observer, lock.key(), "retired session").await;
    }
    let guard = next.try_acquire(locker).await.expect("the Locker works on");
    let now = holders(observer, next.key()).await;
    assert!(
        now.len() == 1 && now[0] != pid,
        "a new lock session holds {}: {now:?}, not {pid}",
        next.id()
    );
    guard.release().await.unwrap();
    assert_eq!(locker.open_sessions(), 1);
    for lock in keys.iter().copied().chain([next]) {
        common::assert_released_within_1s(observer, lock.key(), "at the end").await;
    }
}

#[tokio::test]
async fn a_background_unlock_cancelled_on_the_server_retires_its_lock_session() {
    let cluster = Cluster::start().unwrap();
    let observer = cluster.db().connect().await.unwrap();
    let locker = Locker::builder(cluster.db().pool(4)).sessions(1).build();
    let (dropped, kept) = (AdvisoryLock::new(9_001_i64), AdvisoryLock::new(9_002_i64));
    let dropped_guard = dropped.try_acquire(&locker).await.unwrap();
    let kept_guard = kept.try_acquire(&locker).await.unwrap();
    let [pid] = holders(&observer, dropped.key()).await[..] else {
        panic!("one backend holds the lock");
    };
    assert_eq!(holders(&observer, kept.key()).await, [pid], "one session");

    let gate = ProcGate::close(&cluster, "doubt_unlock").await;
    // The unlock goes out in the background and waits at the gate, inside its
    // statement, where the cancel is sure to land.
    drop(dropped_guard);
    gate.holds_back(pid, UNLOCK_STATEMENT).await;
    let cancelled: bool = gate
        .client
        .query_one("SELECT pg_catalog.pg_cancel_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(cancelled);
    // The session ends its own backend next (held at the gate too): the failed
    // unlock really left the key held, so the session was in doubt.
    gate.holds_back(pid, ENDING_STATEMENT).await;
    assert!(
        gate.holds(pid, dropped.key()).await,
        "the premise: the cancelled unlock left the key held"
    );
    gate.open().await;

    tokio::time::timeout(common::pg_locks::PATIENCE, kept_guard.lost())
        .await
        .expect("the other guard on the retired session reports lost");
    retired_and_replaced(&observer, &locker, pid, &[&dropped, &kept], &dropped).await;
    assert!(kept_guard.release().await.unwrap_err().is_lost());
}

#[tokio::test]
async fn a_try_cut_by_statement_timeout_retires_its_lock_session() {
    let cluster = Cluster::start().unwrap();
    let observer = cluster.db().connect().await.unwrap();
    let mut config = cluster.db().config();
    config.options("-c statement_timeout=300ms");
    let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::new(
        config,
        tokio_postgres::NoTls,
    ))
    .max_size(4)
    .build()
    .unwrap();
    let locker = Locker::builder(pool).sessions(1).build();
    let (held, tried) = (AdvisoryLock::new(9_011_i64), AdvisoryLock::new(9_012_i64));
    let held_guard = held.try_acquire(&locker).await.unwrap();
    let [pid] = holders(&observer, held.key()).await[..] else {
        panic!("one backend holds the lock");
    };

    let gate = ProcGate::close(&cluster, "doubt_try").await;
    let try_at_the_gate = tokio::spawn({
        let (tried, locker) = (tried.clone(), locker.clone());
        async move { tried.try_acquire(&locker).await.map(drop) }
    });
    // The premise: the try is held inside the server, where the timeout cuts it.
    gate.holds_back(pid, TRY_STATEMENT).await;
    let error = try_at_the_gate
        .await
        .unwrap()
        .expect_err("the try is cut by statement_timeout at the gate");
    assert!(cancelled(&error), "57014: {error:?}");
    assert!(
        gate.holds(pid, held.key()).await,
        "the premise: the session still holds its other lock"
    );
    gate.open().await;

    tokio::time::timeout(common::pg_locks::PATIENCE, held_guard.lost())
        .await
        .expect("the guard on the retired session reports lost");
    retired_and_replaced(&observer, &locker, pid, &[&held, &tried], &tried).await;
    assert!(held_guard.release().await.unwrap_err().is_lost());
}
