//! Fencing tokens against a real server:
//!
//! - the control: a transaction id taken the naive way (a transaction that writes no
//!   WAL, even with `synchronous_commit = on`) is handed out again after an immediate
//!   shutdown, so a token must be more than "the current transaction id";
//! - a fenced lock's token is strictly greater after each of several immediate
//!   restarts, after each handover between sessions and processes, and after the
//!   process holding it is killed (SIGKILL);
//! - a fenced lock taken inside a transaction left open on its session is refused
//!   with a named error, and not kept.

mod common;

use common::AppError;
use deadpool_postgres::Pool;
use pglock::testdb::Cluster;
use pglock::{advisory_locked, AdvisoryLock, Error, LockKey, Locker};

/// `pg_current_xact_id()` in a transaction of its own that writes nothing else.
async fn naive_xid(client: &tokio_postgres::Client) -> u64 {
    let messages = client
        .simple_query("SET synchronous_commit = on; SELECT pg_catalog.pg_current_xact_id()::text")
        .await
        .expect("take a transaction id");
    messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .expect("a row")
        .parse()
        .expect("a transaction id")
}

async fn connect(cluster: &Cluster) -> tokio_postgres::Client {
    cluster
        .db()
        .connect()
        .await
        .expect("connect to the cluster")
}

#[tokio::test]
async fn control_a_naive_transaction_id_comes_back_after_an_immediate_restart() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let before = naive_xid(&connect(&cluster).await).await;
        cluster.restart_immediate().expect("immediate restart");
        let after = naive_xid(&connect(&cluster).await).await;
        seen.push((before, after));
        if after <= before {
            break;
        }
    }
    println!("naive ids before and after each restart: {seen:?}");
    assert!(
        seen.iter().any(|(before, after)| after <= before),
        "the naive id always grew: the control cannot show why tokens must be flushed"
    );
}

/// Runs `examples/fenced_write` with `args`: its exit status and what it printed.
async fn fenced_write_example(args: &[&str]) -> (bool, String) {
    let binary = common::example_binary("fenced_write");
    let out = tokio::process::Command::new(binary)
        .args(args)
        .env("DATABASE_URL", pglock::testdb::shared().url())
        .output()
        .await
        .expect("run examples/fenced_write");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn the_fenced_write_example_refuses_the_stale_leader() {
    let (ok, out) = fenced_write_example(&[]).await;
    println!("{out}");
    assert!(ok, "{out}");
    assert!(out.contains("A's late write with fence"), "{out}");
    assert!(out.contains("refused (stale fence)"), "{out}");
    assert!(out.contains("balance 10,"), "{out}");
}

#[tokio::test]
async fn control_without_the_fence_condition_the_stale_write_lands() {
    let (ok, out) = fenced_write_example(&["--unfenced"]).await;
    println!("{out}");
    assert!(!ok, "the example reports the stale write: {out}");
    assert!(out.contains("balance 110,"), "{out}");
}

#[tokio::test]
async fn fenced_tokens_increase_across_immediate_restarts() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let name = common::unique("fenced-restart");
    let lock = AdvisoryLock::new(name.as_str()).fenced();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let pool = cluster.db().pool(2);
        let guard = lock.try_acquire(&pool).await.expect("fenced lock");
        tokens.push(guard.fence().expect("a fenced guard has its token"));
        cluster.restart_immediate().expect("immediate restart");
        drop(guard);
    }
    let locker = Locker::new(cluster.db().pool(2));
    let guard = lock
        .try_acquire(&locker)
        .await
        .expect("fenced through a Locker");
    tokens.push(guard.fence().expect("a fenced Locker guard has its token"));
    println!("tokens across immediate restarts: {tokens:?}");
    assert!(tokens.windows(2).all(|w| w[1] > w[0]), "{tokens:?}");
}

#[tokio::test]
async fn each_holder_gets_a_greater_token_from_pools_and_through_locker_handoffs() {
    let name = common::unique("fenced-holders");
    let lock = AdvisoryLock::new(name.as_str()).fenced();
    let (first, second) = (common::pool(2), common::pool(2));
    let mut tokens = Vec::new();
    for pool in [&first, &second, &first] {
        let guard = lock.acquire(pool).await.unwrap();
        tokens.push(guard.fence().unwrap());
    }
    // Tasks of one process hand the key to each other without the server: each
    // still takes a token of its own.
    let locker = Locker::new(common::pool(3));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (lock, locker) = (lock.clone(), locker.clone());
            tokio::spawn(async move {
                let guard = lock.acquire(&locker).await.unwrap();
                let token = guard.fence().unwrap();
                tokio::task::yield_now().await;
                token
            })
        })
        .collect();
    let mut handed: Vec<u64> = Vec::new();
    for task in tasks {
        handed.push(task.await.unwrap());
    }
    handed.sort_unstable();
    handed.dedup();
    assert_eq!(handed.len(), 4, "one token per holder: {handed:?}");
    assert!(handed[0] > *tokens.last().unwrap());
    assert!(tokens.windows(2).all(|w| w[1] > w[0]), "{tokens:?}");
    // The Locker's last unlock may still be on its way (a try from another source
    // right after it may rightly be Busy): wait until the server shows it done.
    let observer = common::observer().await;
    let left = common::gone_within(&observer, lock.key(), std::time::Duration::from_secs(1)).await;
    assert!(left.is_empty(), "the Locker let go within 1 s: {left:?}");
    let plain = AdvisoryLock::new(name.as_str())
        .try_acquire(&first)
        .await
        .unwrap();
    assert_eq!(
        plain.fence(),
        None,
        "a lock not taken fenced() has no token"
    );
}

#[advisory_locked(key = "fence-attr:{name}", pool = pool, wait, fence = token)]
async fn token_of(pool: &Pool, name: &str) -> Result<u64, AppError> {
    Ok(token)
}

#[advisory_locked(key = "fence-attr:{name}", wait, fence = token)]
async fn token_through(locker: &Locker, name: &str) -> Result<u64, AppError> {
    Ok(token)
}

#[tokio::test]
async fn the_attribute_binds_the_token() {
    let name = common::unique("fence-attr");
    let pool = common::pool(2);
    let locker = Locker::new(common::pool(2));
    let a = token_of(&pool, &name).await.unwrap();
    let b = token_through(&locker, &name).await.unwrap();
    let c = token_of(&pool, &name).await.unwrap();
    assert!(a < b && b < c, "{a} {b} {c}");
}

#[advisory_locked(key = "fence-inner:{name}", pool = pool, fence = token)]
async fn fenced_inner(pool: &Pool, name: &str) -> Result<u64, AppError> {
    Ok(token)
}

/// Opens a transaction on the locked session, then takes a fenced lock nested in
/// the body (so on the same session).
#[advisory_locked(key = "fence-outer:{name}", pool = pool, guard = conn)]
async fn fenced_inside_an_open_transaction(
    pool: &Pool,
    name: &str,
) -> Result<Result<u64, AppError>, AppError> {
    conn.batch_execute("BEGIN").await?;
    let inner = fenced_inner(pool, name).await;
    conn.batch_execute("ROLLBACK").await?;
    Ok(inner)
}

#[tokio::test]
async fn a_fenced_lock_inside_an_open_transaction_is_refused_and_not_kept() {
    let name = common::unique("fence-open-tx");
    let pool = common::pool(2);
    let inner = fenced_inside_an_open_transaction(&pool, &name)
        .await
        .expect("the outer body ran");
    match inner {
        Err(AppError::Lock(Error::Fence { reason, .. })) => {
            assert!(reason.contains("open transaction"), "{reason}")
        }
        other => panic!("expected Error::Fence, got {other:?}"),
    }
    let observer = common::observer().await;
    let key = LockKey::from_name(&format!("fence-inner:{name}"));
    let rows = common::gone_within(&observer, key, std::time::Duration::from_secs(1)).await;
    assert!(rows.is_empty(), "the refused lock is not kept: {rows:?}");
    // The control: outside a transaction the same nested lock gets its token.
    assert!(fenced_inner(&pool, &name).await.is_ok());
}

/// Runs `examples/leader` for the lock `name` until it leads: the process and its
/// term's fence.
async fn a_leader_process(name: &str) -> (tokio::process::Child, u64) {
    use tokio::io::AsyncBufReadExt;
    let table = common::unique("crash-terms").replace(':', "_");
    common::observer()
        .await
        .batch_execute(&format!(
            "CREATE TABLE \"{table}\" (fence int8 PRIMARY KEY, pid int NOT NULL, \
             started int8 NOT NULL, ended int8)"
        ))
        .await
        .expect("create the terms table");
    let mut child = tokio::process::Command::new(common::example_binary("leader"))
        .args([pglock::testdb::shared().url(), &table, "--lock", name])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn examples/leader");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let elected = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(fence) = line.strip_prefix("elected ") {
                return fence.parse::<u64>().expect("a fence");
            }
        }
        panic!("examples/leader ended before it led");
    });
    let fence = elected.await.expect("the leader process leads within 30 s");
    (child, fence)
}

#[tokio::test]
async fn after_a_fenced_holder_process_is_killed_the_next_token_is_greater() {
    let name = common::unique("fenced-crash");
    let key = LockKey::from_name(&name);
    let (mut child, crashed) = a_leader_process(&name).await;
    let observer = common::observer().await;
    let held = common::assert_held_by_at_least(&observer, key, 1, "the leader process").await;
    let pid = child.id().expect("the leader process runs");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "SIGKILL the fenced holder {pid}");
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), None, "killed by a signal: {status}");
    // Its backend ends once it reads the closed socket, and the lock with it.
    let left = common::gone_within(&observer, key, std::time::Duration::from_secs(5)).await;
    assert!(
        left.is_empty(),
        "backend {held:?} still holds the lock: {left:?}"
    );
    let pool = common::pool(2);
    let guard = AdvisoryLock::new(name.as_str())
        .fenced()
        .try_acquire(&pool)
        .await
        .expect("free after the crash");
    let next = guard.fence().unwrap();
    println!("token {crashed} before the crash, {next} after");
    assert!(next > crashed, "{next} after {crashed}");
}
