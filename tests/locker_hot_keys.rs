//! A Locker waiting for keys held in other processes, against the live server: a
//! key a try found busy moments ago is waited for without trying again (counted by
//! `pg_stat_statements`), and the connection a wait held its key on is kept for the
//! next wait, which reads the unlock's reply, so waits spawn no task each (counted
//! by `spawned_tasks`), with parking off as the control; and a connection watched
//! again is not asked its backend again.

mod common;

use std::time::Duration;

use common::{holders, waiter_within};
use pglock::testdb::Cluster;
use pglock::{advisory_locked, LockKey, Locker};

const PATIENCE: Duration = Duration::from_secs(10);

/// The tests count process-wide tasks and server-wide statements: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A throwaway cluster whose statements `pg_stat_statements` counts.
async fn counting_cluster() -> (Cluster, tokio_postgres::Client) {
    let cluster = common::counted::start();
    let observer = common::counted::observer(&cluster).await;
    (cluster, observer)
}

async fn connect(cluster: &Cluster) -> tokio_postgres::Client {
    cluster.db().connect().await.expect("a plain connection")
}

/// Calls of statements whose text contains `text` and not `/* holder */`.
async fn calls(observer: &tokio_postgres::Client, text: &str) -> i64 {
    observer
        .query_one(
            "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements \
              WHERE strpos(query, $1) > 0 AND strpos(query, '/* holder */') = 0",
            &[&text],
        )
        .await
        .expect("pg_stat_statements")
        .get(0)
}

/// Another process's session, holding and freeing one key in plain SQL.
struct Holder {
    client: tokio_postgres::Client,
    pid: i32,
    key: (i32, i32),
}

impl Holder {
    async fn new(cluster: &Cluster, key: (i32, i32)) -> Holder {
        let client = connect(cluster).await;
        let pid = client
            .query_one("SELECT pg_backend_pid() /* holder */", &[])
            .await
            .unwrap()
            .get(0);
        Holder { client, pid, key }
    }

    /// Takes the key (waiting, if need be, for our own unlock to run), as
    /// `pg_locks` then confirms.
    async fn hold(&self, observer: &tokio_postgres::Client) {
        self.client
            .execute(
                "SELECT pg_advisory_lock($1, $2) /* holder */",
                &[&self.key.0, &self.key.1],
            )
            .await
            .unwrap();
        let key = LockKey::Pair(self.key.0, self.key.1);
        assert_eq!(
            holders(observer, key).await,
            [self.pid],
            "held by the holder"
        );
    }

    async fn free(&self) {
        let freed: bool = self
            .client
            .query_one(
                "SELECT pg_advisory_unlock($1, $2) /* holder */",
                &[&self.key.0, &self.key.1],
            )
            .await
            .unwrap()
            .get(0);
        assert!(freed, "the holder held the key");
    }
}

/// One wait through `locker` for the holder's key: the wait is seen in `pg_locks`,
/// `while_waiting` runs, then the holder frees the key, the wait is granted, and the
/// lock is let go as the attribute lets it go (dropped, its loss watched).
async fn one_wait<F: std::future::Future<Output = ()>>(
    locker: &Locker,
    holder: &Holder,
    observer: &tokio_postgres::Client,
    while_waiting: impl FnOnce() -> F,
) {
    #[advisory_locked(key = (13, 1), pool = locker, wait = "10s")]
    async fn enter(locker: &Locker) -> Result<(), pglock::Error> {
        Ok(())
    }
    let (locker_in, key) = (locker.clone(), LockKey::Pair(holder.key.0, holder.key.1));
    let waiting = tokio::spawn(async move { enter(&locker_in).await });
    let waiter = waiter_within(observer, key, PATIENCE).await;
    assert!(waiter.is_some(), "the Locker waits in the server for {key}");
    while_waiting().await;
    holder.free().await;
    waiting
        .await
        .unwrap()
        .expect("granted once the holder lets go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_for_a_key_found_busy_moments_ago_sends_no_try() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (cluster, observer) = counting_cluster().await;
    let holder = Holder::new(&cluster, (13, 1)).await;
    let locker = Locker::new(cluster.db().pool(4));
    holder.hold(&observer).await;
    observer
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();

    // The control: a key not known to be busy is tried on a lock session first.
    one_wait(&locker, &holder, &observer, || async {
        assert_eq!(calls(&observer, "pg_try_advisory_lock").await, 1, "one try");
    })
    .await;
    holder.hold(&observer).await;
    // Found busy moments ago: straight to the server's queue.
    one_wait(&locker, &holder, &observer, || async {
        let tries = calls(&observer, "pg_try_advisory_lock").await;
        assert_eq!(tries, 1, "the second wait sent no try");
    })
    .await;
    let waits = calls(&observer, "pg_advisory_lock(").await;
    assert_eq!(waits, 2, "each wait sent one waiting statement");
}

/// Tasks spawned over `waits` waits through a Locker for a key a holder keeps
/// taking back, counted after one warm-up wait.
async fn tasks_over_waits(waits: u64) -> u64 {
    let (cluster, observer) = counting_cluster().await;
    let holder = Holder::new(&cluster, (13, 1)).await;
    let locker = Locker::new(cluster.db().pool(8));
    holder.hold(&observer).await;
    let nothing = || async {};
    one_wait(&locker, &holder, &observer, nothing).await;
    let before = pglock::__private::spawned_tasks();
    for _ in 0..waits {
        holder.hold(&observer).await;
        one_wait(&locker, &holder, &observer, nothing).await;
    }
    let spawned = pglock::__private::spawned_tasks() - before;
    // Nothing left held once the last unlock is read (parked or in a task).
    drop(locker);
    let key = LockKey::Pair(13, 1);
    assert!(
        common::gone_within(&observer, key, Duration::from_secs(5))
            .await
            .is_empty(),
        "the last unlock ran"
    );
    spawned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_in_the_server_reuse_their_connection_and_spawn_no_task_each() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const WAITS: u64 = 40;
    // The control: every unlock of a waited-for lock finished by a task of its own,
    // on a connection checked out (and watched) anew for each wait.
    pglock::__private::set_release_parking(false);
    let unparked = tasks_over_waits(WAITS).await;
    pglock::__private::set_release_parking(true);
    let parked = tasks_over_waits(WAITS).await;
    println!("tasks over {WAITS} waits: {unparked} without parking, {parked} with");
    assert!(
        unparked >= WAITS,
        "the control spawns a task per wait: {unparked}"
    );
    assert!(
        parked < WAITS / 2,
        "{parked} tasks spawned over {WAITS} waits"
    );
}

/// The pid of the one backend other than `holder` holding or waiting for `key`.
async fn pid_on(observer: &tokio_postgres::Client, key: LockKey, holder: i32) -> i32 {
    let rows = common::lock_rows(observer, key).await;
    let ours: Vec<i32> = rows
        .iter()
        .map(|r| r.pid)
        .filter(|&p| p != holder)
        .collect();
    assert_eq!(ours.len(), 1, "one backend of ours on {key}: {rows:?}");
    ours[0]
}

/// Without waiting for the unlock's reply (the parked connection then is not
/// taken), the second wait goes on a connection checked out anew: another pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_right_after_a_release_waits_on_the_connection_just_let_go() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (cluster, observer) = counting_cluster().await;
    let first = Holder::new(&cluster, (13, 1)).await;
    let second = Holder::new(&cluster, (13, 2)).await;
    let locker = Locker::new(cluster.db().pool(8));
    first.hold(&observer).await;
    second.hold(&observer).await;
    let (k1, k2) = (LockKey::Pair(13, 1), LockKey::Pair(13, 2));
    // A try finds the second key busy: its wait below goes straight to the queue.
    let tried = pglock::AdvisoryLock::new(k2).try_acquire(&locker).await;
    assert!(
        matches!(tried, Err(pglock::Error::Busy { .. })),
        "{tried:?}"
    );

    let locker_in = locker.clone();
    let waiting = tokio::spawn(async move {
        pglock::AdvisoryLock::new(k1)
            .acquire_timeout(&locker_in, PATIENCE)
            .await
    });
    assert!(waiter_within(&observer, k1, PATIENCE).await.is_some());
    first.free().await;
    let guard = waiting
        .await
        .unwrap()
        .expect("granted once the holder lets go");
    let held_on = pid_on(&observer, k1, first.pid).await;
    // Let go, and at once wait for another key: its unlock's reply is still on
    // its way when the wait looks for a connection.
    drop(guard);
    let locker_in = locker.clone();
    let waiting = tokio::spawn(async move {
        pglock::AdvisoryLock::new(k2)
            .acquire_timeout(&locker_in, PATIENCE)
            .await
    });
    assert!(waiter_within(&observer, k2, PATIENCE).await.is_some());
    let waits_on = pid_on(&observer, k2, second.pid).await;
    assert_eq!(
        waits_on, held_on,
        "the wait for {k2} went on the connection {k1} was let go on"
    );
    second.free().await;
    drop(waiting.await.unwrap().expect("granted"));
}

/// What the loss watch asks a connection to learn its backend's start
/// (`pg_stat_activity`, about 2 ms of server time with a couple of hundred backends).
const BACKEND_QUERY: &str =
    "a.backend_start)::pg_catalog.text FROM pg_catalog.pg_stat_activity a WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()";

/// With parking off, every wait checks its connection out anew and watches it for
/// loss, and the watch wants the backend's start. A pool of 2 has at most 2
/// connections, so over 20 waits the start is asked at most twice: once per
/// connection, not once per watch (21 times before it was remembered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_watched_again_is_not_asked_its_backend_again() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const WAITS: usize = 20;
    pglock::__private::set_release_parking(false);
    let (cluster, observer) = counting_cluster().await;
    let holder = Holder::new(&cluster, (13, 1)).await;
    let pool = cluster.db().pool(2);
    let locker = Locker::builder(pool.clone()).sessions(1).build();
    for _ in 0..WAITS {
        holder.hold(&observer).await;
        one_wait(&locker, &holder, &observer, || async {}).await;
    }
    pglock::__private::set_release_parking(true);
    let asked = calls(&observer, BACKEND_QUERY).await;
    let connections = pool.status().size;
    assert!(asked >= 1, "the watch asked for the backend");
    assert!(
        asked as usize <= connections,
        "asked {asked} times over {WAITS} waits on {connections} connections"
    );
}
