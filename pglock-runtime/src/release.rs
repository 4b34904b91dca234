//! Releases the caller does not wait for: a guard dropped (or an annotated fn
//! returning) sends its unlock at once and lets the caller go on. Who reads the
//! server's answer:
//!
//! - **The next lock taken from the pool** (see [`parked`]): a pool session no other
//!   guard or task of ours uses is parked with its unlock's reply unread, and the
//!   next acquisition from that pool takes it and reads that reply together with its
//!   own lock statement, both answered in one round trip. No task, no extra
//!   statement. A parked session nobody takes soon is finished by the pool's reaper.
//! - **A Locker's next wait in the server**: a connection a Locker waited on, let go
//!   by the one lock it held, is parked the same way in that Locker's scope, for its
//!   next wait (see [`park_alone`]).
//! - **A task**, in every other case (a session still shared, a Locker's lock
//!   session, no runtime to park on): it awaits the reply, then lets the session go.
//!
//! Either way a failed unlock is logged, and the session, still counting the lock,
//! is closed instead of going back to the pool. And until the server has run that
//! unlock, the next acquisition of the same key from this process takes the same
//! session, where its request queues behind the unlock; so a lock that was released
//! is never reported `Busy` because of our own unlock in flight. A try waits there
//! only briefly: a backend that does not answer our unlock still holds the key, and
//! a fresh session then says so (see `source::tries`).

mod parked;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::key::LockKey;
use crate::lock::AdvisoryLock;
use crate::mutex::lock_unpoisoned;
use crate::scope::Scope;
use crate::session::{Reserved, Session};
use crate::spawn::spawn_or_drop;

/// Whether pool sessions are parked for the next taker (on by default). Off, every
/// unlock is finished by a task: the path the parking replaced, kept switchable so
/// that tests can show what it costs.
static PARKING: AtomicBool = AtomicBool::new(true);

/// Turns parking on or off (see [`PARKING`]).
pub(crate) fn set_parking(on: bool) {
    PARKING.store(on, Ordering::Relaxed);
}

/// One unlock awaited by a task: its session, and a number telling it from earlier
/// unlocks of the same key on the same session.
struct Queued {
    session: Weak<Session>,
    seq: u64,
}

/// (scope, key) → the latest unlock of that key awaited by a task.
type Pending = HashMap<(Scope, LockKey), Queued>;

fn table() -> std::sync::MutexGuard<'static, Pending> {
    static PENDING: OnceLock<Mutex<Pending>> = OnceLock::new();
    lock_unpoisoned(PENDING.get_or_init(Mutex::default))
}

/// `session` has an unlock of `key` queued; give the returned sequence number to [`finished`].
fn queued(session: &Arc<Session>, key: LockKey) -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seq = NEXT.fetch_add(1, Ordering::Relaxed);
    let queued = Queued {
        session: Arc::downgrade(session),
        seq,
    };
    table().insert((session.scope(), key), queued);
    seq
}

/// That unlock is done (or failed: either way, not pending). A later unlock of the
/// same key, queued meanwhile, stays pending.
fn finished(session: &Session, key: LockKey, seq: u64) {
    let mut table = table();
    let id = (session.scope(), key);
    if table.get(&id).is_some_and(|q| q.seq == seq) {
        table.remove(&id);
    }
}

/// The session of `scope` (a pool, or a Locker) with an unlock of `key` still
/// awaited by a task, if it is fit to take the next lock. It is handed out once: a
/// second taker on the same session would be granted the key again (session locks
/// are re-entrant), and two holders of one key is exactly what must never happen.
pub(crate) fn take_session_for(scope: Scope, key: LockKey) -> Option<Arc<Session>> {
    let session = table().remove(&(scope, key))?.session.upgrade()?;
    session.is_reusable().then_some(session)
}

/// The session a lock from a pool should be taken on, if one of ours waits: one
/// with an unlock of this key queued, parked or awaited by a task (the request then
/// runs after it), else a parked one whose unlock was answered and that can watch
/// this lock. Each is handed out once.
pub(crate) fn take_pool_session_for(scope: Scope, lock: &AdvisoryLock) -> Option<Arc<Session>> {
    parked::take_with_key(scope, lock.key())
        .or_else(|| take_session_for(scope, lock.key()))
        .or_else(|| parked::take_answered(scope, lock))
        // A closed pool gives no more connections, kept ones included (dropped,
        // the session goes back to it, which closes it).
        .filter(|session| !session.pool_is_closed())
}

/// A parked session of `scope` for a try that found no connection free in the pool:
/// the connections we released last are parked, not back in the pool yet. Taken
/// once its unlock is answered within `within` (so no lock of ours is left on it);
/// a session whose backend does not answer that soon is parked again, as it was.
pub(crate) async fn take_settled_pool_session(
    scope: Scope,
    lock: &AdvisoryLock,
    within: std::time::Duration,
) -> Option<Arc<Session>> {
    let (session, key) = parked::take_any(scope, lock)?;
    if session.pool_is_closed() {
        return None;
    }
    if !session.queued_unlock_answered_within(within).await {
        parked::park(session, key);
        return None;
    }
    session.read_queued_unlock().await;
    session.is_reusable().then_some(session)
}

/// A pool guard let go: unlocks its lock on its session without making the caller
/// wait (see the module docs for who reads the answer). `reserved` is the guard's
/// key on that session, kept until the unlock is on the wire.
pub(crate) fn unlock_dropped(reserved: Reserved, lock: AdvisoryLock) {
    let session = reserved.session().clone();
    if !parked::may_park(&session, &reserved) {
        unlock_in_background(session, lock);
        drop(reserved);
        return;
    }
    session.queue_unlock(&lock);
    drop(reserved);
    parked::park(session, lock.key());
}

/// A Locker's connection of its own (one it waited in the server on) let go by
/// the only lock it held: the unlock is sent now and the session parked in the
/// Locker's scope, for that Locker's next wait in the server (see
/// [`take_parked_for`]), which reads the reply together with its own statement.
/// No task, and the next wait needs no checkout. `Err` gives the session back when
/// it cannot be parked (parking off, a second lock counted on it, no runtime).
pub(crate) fn park_alone(session: Arc<Session>, lock: &AdvisoryLock) -> Result<(), Arc<Session>> {
    let parkable = parking()
        && matches!(session.scope(), Scope::Locker(_))
        && session.counts_one_lock()
        && session.is_reusable()
        && !session.was_lent()
        && tokio::runtime::Handle::try_current().is_ok();
    if !parkable {
        return Err(session);
    }
    session.queue_unlock(lock);
    parked::park(session, lock.key());
    Ok(())
}

/// The parked session of `scope` with an unlock of `key` queued, if any: a request
/// for that key must run after that unlock, on that session.
pub(crate) fn take_parked_with_key(scope: Scope, key: LockKey) -> Option<Arc<Session>> {
    parked::take_with_key(scope, key)
}

/// A parked session of `scope` to wait for `lock` on: one with an unlock of its key
/// queued, else one whose unlock was answered (so no lock of ours is left on it).
pub(crate) fn take_parked_for(scope: Scope, lock: &AdvisoryLock) -> Option<Arc<Session>> {
    parked::take_with_key(scope, lock.key()).or_else(|| parked::take_answered(scope, lock))
}

/// Whether parking is on.
fn parking() -> bool {
    PARKING.load(Ordering::Relaxed)
}

/// Unlocks `lock` on `session` without making the caller wait: the request is on the
/// connection before this returns (the unlock statement was prepared when the lock
/// was taken, so the first poll sends it), anything sent on the session afterwards
/// runs after it, and a task awaits the reply and then lets the session go. A failed
/// unlock is logged; the session, still counting the lock, then closes instead of
/// going back to the pool.
pub(crate) fn unlock_in_background(session: Arc<Session>, lock: AdvisoryLock) {
    let seq = queued(&session, lock.key());
    let mut unlock = Box::pin(async move {
        if let Err(error) = session.unlock(&lock).await {
            tracing::warn!(lock = %lock.id(), %error, "unlock failed; closing the session");
            session.retire_if_in_doubt(&error);
        }
        finished(&session, lock.key(), seq);
    });
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    if unlock.as_mut().poll(&mut cx).is_ready() {
        return;
    }
    // No runtime to finish on: dropping the future drops the session, which still
    // counts the lock, so the connection is closed and the server frees it.
    spawn_or_drop(unlock);
}
