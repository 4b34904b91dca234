//! A Locker's lock session in doubt is retired: once a try or an unlock on it was
//! answered with a cancel (`57014`, from `pg_cancel_backend` here), the session may
//! hold a key the Locker takes for free. It is closed (its backend ends, and every
//! lock with it; the guards on it report lost) and replaced by a new one.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{gone_within, holders, observer, pool, unique};
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
