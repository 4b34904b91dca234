//! pglock through PgBouncer in transaction pooling mode (Debian's `pgbouncer`, started by
//! `pglock::testdb` in front of a throwaway cluster).
//!
//! # What works through transaction pooling, and what does not
//!
//! - **Transaction-scoped locks work**: `#[advisory_locked(xact = tx)]` and
//!   `AdvisoryLock::acquire_xact` take `pg_advisory_xact_lock` inside the caller's
//!   transaction, and PgBouncer keeps one server connection for a transaction from `BEGIN`
//!   to `COMMIT`; the server frees the lock at the end of it. pglock sends the lock
//!   statement unnamed (parse, bind and execute in one round trip), so it needs no support
//!   for prepared statements from PgBouncer.
//! - **Session locks do not work**: `acquire`/`try_acquire` through a `Pool`, a `Locker`, and
//!   the attribute without `xact`. The lock belongs to the server session, and PgBouncer
//!   hands that session to other clients after each transaction: another client then holds
//!   the key too (session locks are re-entrant) and the holder's own later statements may
//!   run elsewhere. The control tests below show two guards for one key and a lost update.
//! - **Named prepared statements** (tokio-postgres's `prepare`, deadpool's
//!   `prepare_cached`) need PgBouncer >= 1.21 with `max_prepared_statements` set. Debian 12
//!   ships 1.18, which passes them to whichever server connection is current, where they
//!   may not exist. Inside one transaction they work (one server connection throughout),
//!   which is where these tests use them.

use deadpool_postgres::{Pool, Transaction};
use pglock::testdb::{Cluster, PgBouncer};
use pglock::{advisory_locked, AdvisoryLock};
use tokio_postgres::types::Type;

/// Concurrent tasks, and read-modify-write increments each.
const TASKS: usize = 8;
const ROUNDS: usize = 25;

#[derive(Debug)]
#[allow(dead_code)] // the fields are read through Debug, when a test fails
enum AppError {
    Lock(pglock::Error),
    Db(tokio_postgres::Error),
}

impl From<pglock::Error> for AppError {
    fn from(e: pglock::Error) -> Self {
        AppError::Lock(e)
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(e: tokio_postgres::Error) -> Self {
        AppError::Db(e)
    }
}

/// A cluster with a counter table, and PgBouncer in front of it with `server_connections`
/// server connections. (PgBouncer goes first when dropped: it is declared first.)
struct Setup {
    bouncer: PgBouncer,
    cluster: Cluster,
}

async fn setup(server_connections: u32) -> Setup {
    let cluster = Cluster::start().unwrap();
    let client = cluster.db().connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL)")
        .await
        .unwrap();
    let bouncer = PgBouncer::transaction_pooling(&cluster, server_connections).unwrap();
    Setup { bouncer, cluster }
}

/// A new counter row, through `pool`; returns its id.
async fn new_counter(pool: &Pool, id: i32) -> i32 {
    let client = pool.get().await.unwrap();
    client
        .query_typed("INSERT INTO counter VALUES ($1, 0)", &[(&id, Type::INT4)])
        .await
        .unwrap();
    id
}

async fn count(pool: &Pool, id: i32) -> i64 {
    let client = pool.get().await.unwrap();
    let rows = client
        .query_typed("SELECT n FROM counter WHERE id = $1", &[(&id, Type::INT4)])
        .await
        .unwrap();
    rows[0].get(0)
}

/// Reads the counter, lets the other tasks run, writes it back plus one: without mutual
/// exclusion, increments are lost.
async fn read_modify_write(tx: &Transaction<'_>, id: i32) -> Result<(), AppError> {
    let n: i64 = tx
        .query_one("SELECT n FROM counter WHERE id = $1", &[&id])
        .await?
        .get(0);
    tokio::task::yield_now().await;
    tx.execute("UPDATE counter SET n = $2 WHERE id = $1", &[&id, &(n + 1)])
        .await?;
    Ok(())
}

#[advisory_locked(key = "counter:{id}", xact = tx, wait)]
async fn increment_with_attribute(tx: &Transaction<'_>, id: i32) -> Result<(), AppError> {
    read_modify_write(tx, id).await
}

async fn increment_with_acquire_xact(tx: &Transaction<'_>, id: i32) -> Result<(), AppError> {
    AdvisoryLock::new(format!("counter:{id}"))
        .acquire_xact(tx)
        .await?;
    read_modify_write(tx, id).await
}

/// Which lock the increments take.
#[derive(Clone, Copy)]
enum Via {
    Attribute,
    AcquireXact,
    /// The control: no lock at all.
    NoLock,
}

/// `TASKS` tasks, each with its own client, run `ROUNDS` transactions of one increment.
async fn hammer(pool: &Pool, id: i32, via: Via) {
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut client = pool.get().await.unwrap();
                for _ in 0..ROUNDS {
                    let tx = client.transaction().await.unwrap();
                    match via {
                        Via::Attribute => increment_with_attribute(&tx, id).await.unwrap(),
                        Via::AcquireXact => increment_with_acquire_xact(&tx, id).await.unwrap(),
                        Via::NoLock => read_modify_write(&tx, id).await.unwrap(),
                    }
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xact_attribute_loses_no_update_through_transaction_pooling() {
    let setup = setup(3).await;
    let pool = setup.bouncer.db().pool(TASKS);
    let id = new_counter(&pool, 1).await;
    hammer(&pool, id, Via::Attribute).await;
    assert_eq!(count(&pool, id).await, (TASKS * ROUNDS) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acquire_xact_loses_no_update_through_transaction_pooling() {
    let setup = setup(3).await;
    let pool = setup.bouncer.db().pool(TASKS);
    let id = new_counter(&pool, 2).await;
    hammer(&pool, id, Via::AcquireXact).await;
    assert_eq!(count(&pool, id).await, (TASKS * ROUNDS) as i64);
}

/// Control for the two tests above: the same increments without a lock lose updates, so
/// their count is the lock's doing. (Not deterministic in principle, but 200 overlapping
/// read-modify-writes on 3 server connections without a lost one do not happen.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_the_same_increments_without_a_lock_lose_updates() {
    let setup = setup(3).await;
    let pool = setup.bouncer.db().pool(TASKS);
    let id = new_counter(&pool, 4).await;
    hammer(&pool, id, Via::NoLock).await;
    let n = count(&pool, id).await;
    assert!(
        n < (TASKS * ROUNDS) as i64,
        "no update lost without a lock: {n}"
    );
}

/// The backend that runs a statement of `client` (simple protocol: no prepared statement).
async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    let rows = client
        .query_typed("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap();
    rows[0].get(0)
}

async fn read_on(client: &tokio_postgres::Client, id: i32) -> i64 {
    let rows = client
        .query_typed("SELECT n FROM counter WHERE id = $1", &[(&id, Type::INT4)])
        .await
        .unwrap();
    rows[0].get(0)
}

async fn write_on(client: &tokio_postgres::Client, id: i32, n: i64) {
    client
        .query_typed(
            "UPDATE counter SET n = $2 WHERE id = $1",
            &[(&id, Type::INT4), (&n, Type::INT8)],
        )
        .await
        .unwrap();
}

/// Control: a session lock through transaction pooling does not exclude. With one server
/// connection behind PgBouncer, every client's statements run on the same server session,
/// so a second `try_acquire` of a held key is granted (session locks are re-entrant), and
/// two "exclusive" read-modify-write increments lose one, deterministically.
#[tokio::test]
async fn control_session_locks_through_transaction_pooling_admit_two_holders_and_lose_an_update() {
    let setup = setup(1).await;
    let pool = setup.bouncer.db().pool(4);
    let id = new_counter(&pool, 3).await;
    let lock = AdvisoryLock::new("control:two-holders");
    let first = lock.try_acquire(&pool).await.unwrap();
    let second = lock
        .try_acquire(&pool)
        .await
        .expect("control: a second holder of the same key through transaction pooling");

    // The premise, as the server sees it: one session holds the key, and both guards'
    // statements run on it.
    let direct = setup.cluster.db().pool(1);
    let holders = pglock::holders(&direct, "control:two-holders")
        .await
        .unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].granted);
    assert_eq!(backend_pid(&first).await, holders[0].pid);
    assert_eq!(backend_pid(&second).await, holders[0].pid);

    let (seen_first, seen_second) = (read_on(&first, id).await, read_on(&second, id).await);
    write_on(&first, id, seen_first + 1).await;
    write_on(&second, id, seen_second + 1).await;
    assert_eq!(
        count(&pool, id).await,
        1,
        "two increments under the lock, one lost"
    );
    drop((first, second));
}

/// Control for the module doc's claim about prepared statements on Debian's PgBouncer
/// (1.18, which does not track them): a statement prepared on one server connection is
/// missing when its next use is sent to another. Deterministic: the only server
/// connection is taken by another client's open transaction, so PgBouncer opens a second
/// one for the execute.
#[tokio::test]
async fn control_a_named_prepared_statement_breaks_across_server_connections() {
    let setup = setup(2).await;
    let pool = setup.bouncer.db().pool(2);
    let (a, mut b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    let statement = a.prepare("SELECT 1").await.unwrap();
    let prepared_on = backend_pid(&a).await;
    let tx = b.transaction().await.unwrap();
    let in_tx: i32 = tx
        .query_typed("SELECT pg_catalog.pg_backend_pid()", &[])
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(
        in_tx, prepared_on,
        "the premise: the other client's transaction holds the connection it was prepared on"
    );
    let err = a.query(&statement, &[]).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME),
        "{err:?}"
    );
    tx.rollback().await.unwrap();
}
