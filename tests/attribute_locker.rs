//! Live tests of `#[advisory_locked]` with a `Locker` as the lock source: a
//! `&Locker` parameter is found like a `Pool` one; in-process shared holders share
//! one server lock; the lock is released on every way out; a lost lock session
//! stops the body. The modes both sources share (`Busy`, `wait`, `skip`) are
//! tested for each in `attribute_modes.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_released_within_1s, holders, lock_rows, unique, AppError, Exit};
use deadpool_postgres::Client;
use pglock::{advisory_locked, LockKey, Locker};
use tokio::sync::{oneshot, Barrier, Notify, Semaphore};

const SECOND: Duration = Duration::from_secs(1);

fn key_of(name: &str) -> LockKey {
    LockKey::from_name(name)
}

fn locker() -> Locker {
    Locker::new(common::pool(4))
}

#[advisory_locked(key = "{name}")]
async fn at_once(locker: &Locker, name: &str, ran: &AtomicUsize) -> Result<u32, AppError> {
    ran.fetch_add(1, Ordering::SeqCst);
    Ok(7)
}

/// Inside the body (counted on `arrived`) until `gate` opens.
#[advisory_locked(key = "{name}", shared)]
async fn reader(
    locker: &Locker,
    name: &str,
    arrived: &Semaphore,
    inside: &Barrier,
    gate: &Notify,
) -> Result<(), AppError> {
    arrived.add_permits(1);
    inside.wait().await;
    gate.notified().await;
    Ok(())
}

#[tokio::test]
async fn shared_holders_share_one_server_lock_and_keep_an_exclusive_one_out() {
    let locker = locker();
    let pool = common::pool(2);
    let observer = pool.get().await.unwrap();
    let name = unique("locker-shared");
    let key = key_of(&name);
    let ran = AtomicUsize::new(0);
    let arrived = Arc::new(Semaphore::new(0));
    let inside = Arc::new(Barrier::new(3));
    let gate = Arc::new(Notify::new());

    // The second reader (a try, as the first) comes once the first holds the key:
    // it joins the held shared lock. (Two shared tries racing through a Locker
    // while the first is still asking the server get `Busy` for the second.)
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (locker, name, arrived2, inside, gate) = (
            locker.clone(),
            name.clone(),
            arrived.clone(),
            inside.clone(),
            gate.clone(),
        );
        readers.push(tokio::spawn(async move {
            reader(&locker, &name, &arrived2, &inside, &gate).await
        }));
        tokio::time::timeout(Duration::from_secs(10), arrived.acquire())
            .await
            .expect("the reader got in")
            .unwrap()
            .forget();
    }
    tokio::time::timeout(Duration::from_secs(10), inside.wait())
        .await
        .expect("both shared holders must be inside at once");

    let modes: Vec<String> = lock_rows(&observer, key)
        .await
        .into_iter()
        .filter(|row| row.granted)
        .map(|row| row.mode)
        .collect();
    assert_eq!(
        modes,
        ["ShareLock"],
        "one server lock for both in-process holders"
    );

    // Exclusive holders are kept out, through the Locker and from another session.
    assert!(at_once(&locker, &name, &ran)
        .await
        .unwrap_err()
        .lock()
        .is_busy());
    let exclusive = pglock::AdvisoryLock::new(name.as_str());
    assert!(exclusive.try_acquire(&pool).await.unwrap_err().is_busy());

    gate.notify_waiters();
    for r in readers {
        r.await.unwrap().unwrap();
    }
    assert_released_within_1s(&observer, key, "after the shared bodies").await;
    assert_eq!(at_once(&locker, &name, &ran).await.unwrap(), 7);
}

struct Order {
    id: u32,
    region: &'static str,
}

/// Who holds the formatted key, seen from another session while the body runs.
#[advisory_locked(key = "{run}/{order.region}/order:{order.id:04}")]
async fn templated(
    locker: &Locker,
    run: &str,
    order: &Order,
    observer: &Client,
) -> Result<Vec<i32>, AppError> {
    let name = format!("{run}/{}/order:{:04}", order.region, order.id);
    Ok(holders(observer, LockKey::from_name(&name)).await)
}

#[tokio::test]
async fn a_templated_key_is_held_in_pg_locks_while_the_body_runs() {
    let locker = locker();
    let pool = common::pool(2);
    let observer = pool.get().await.unwrap();
    let run = unique("locker-template");
    let order = Order {
        id: 42,
        region: "eu",
    };
    let name = format!("{run}/eu/order:0042");

    assert_eq!(holders(&observer, key_of(&name)).await, Vec::<i32>::new());
    let held_by = templated(&locker, &run, &order, &observer).await.unwrap();
    assert_eq!(
        held_by.len(),
        1,
        "one lock session holds {name}: {held_by:?}"
    );
    assert_released_within_1s(&observer, key_of(&name), "after the body").await;
}

/// Reports who holds the key while the body runs, then leaves as `exit` says.
#[advisory_locked(key = "{name}")]
async fn body(
    locker: &Locker,
    name: &str,
    exit: Exit,
    inside: oneshot::Sender<Vec<i32>>,
    observer: &Client,
) -> Result<u32, AppError> {
    inside
        .send(holders(observer, LockKey::from_name(name)).await)
        .unwrap();
    common::leave!(exit)
}

#[tokio::test]
async fn released_on_every_way_out_of_the_body() {
    let locker = locker();
    let pool = common::pool(2);
    let observer = pool.get().await.unwrap();

    for exit in [
        Exit::Value,
        Exit::Err,
        Exit::Question,
        Exit::Panic,
        Exit::Hang,
    ] {
        let name = unique(&format!("locker-release-{exit:?}"));
        let key = key_of(&name);
        let (tx, rx) = oneshot::channel();
        match exit {
            Exit::Value => assert_eq!(body(&locker, &name, exit, tx, &observer).await.unwrap(), 1),
            Exit::Err => assert!(matches!(
                body(&locker, &name, exit, tx, &observer).await,
                Err(AppError::Body("returned Err"))
            )),
            Exit::Question => assert!(matches!(
                body(&locker, &name, exit, tx, &observer).await,
                Err(AppError::Body("via ?"))
            )),
            Exit::Panic => {
                let task = tokio::spawn({
                    let (locker, name) = (locker.clone(), name.clone());
                    let observer = pool.get().await.unwrap();
                    async move { body(&locker, &name, exit, tx, &observer).await }
                });
                assert!(task.await.unwrap_err().is_panic());
            }
            Exit::Hang => {
                let call = body(&locker, &name, exit, tx, &observer);
                let mut rx = rx;
                tokio::select! {
                    out = call => panic!("the body hangs, yet it returned {out:?}"),
                    seen = &mut rx => {
                        assert_eq!(seen.unwrap().len(), 1, "{exit:?}: held inside");
                    }
                }
                assert_released_within_1s(&observer, key, "after the future was dropped").await;
                assert_eq!(locker.keys_in_use(), 0);
                continue;
            }
        }
        let seen = rx.await.unwrap();
        assert_eq!(
            seen.len(),
            1,
            "{exit:?}: one lock session held the key inside"
        );
        assert_released_within_1s(&observer, key, &format!("after {exit:?}")).await;
        assert_eq!(
            locker.keys_in_use(),
            0,
            "{exit:?}: the Locker forgot the key"
        );
    }
}

#[advisory_locked(key = "{name}")]
async fn until_lost(
    locker: &Locker,
    name: &str,
    entered: &Notify,
    ticks: &AtomicUsize,
) -> Result<(), AppError> {
    entered.notify_one();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        ticks.fetch_add(1, Ordering::SeqCst);
    }
    Ok(())
}

#[tokio::test]
async fn on_lost_abort_stops_the_body_within_a_second_of_the_lock_session_dying() {
    let locker = locker();
    let pool = common::pool(2);
    let observer = pool.get().await.unwrap();
    let name = unique("locker-on-lost");
    let (entered, ticks) = (Notify::new(), AtomicUsize::new(0));

    let call = until_lost(&locker, &name, &entered, &ticks);
    let kill = async {
        entered.notified().await;
        // The lock session: the backend pg_locks names as the key's holder.
        let held_by = holders(&observer, key_of(&name)).await;
        assert_eq!(held_by.len(), 1, "{held_by:?}");
        let done: bool = observer
            .query_one("SELECT pg_terminate_backend($1)", &[&held_by[0]])
            .await
            .unwrap()
            .get(0);
        assert!(done);
        Instant::now()
    };
    let (result, killed_at) = tokio::join!(call, kill);
    let err = result.unwrap_err();
    assert!(err.lock().is_lost(), "{err:?}");
    assert!(err.lock().to_string().contains(&name), "{}", err.lock());
    assert!(
        killed_at.elapsed() < SECOND,
        "the body stopped {:?} after the loss",
        killed_at.elapsed()
    );
    assert!(
        ticks.load(Ordering::SeqCst) < 100,
        "the body did not run to its end"
    );

    // The Locker opens a new session: the key can be taken again.
    let ran = AtomicUsize::new(0);
    assert_eq!(at_once(&locker, &name, &ran).await.unwrap(), 7);
}
