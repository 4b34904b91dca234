//! Parked sessions: pool sessions let go by their last guard, their unlock sent and
//! its reply unread, kept out of the pool for the next lock taken from it. That
//! taker reads the reply together with its own lock statement (one round trip, no
//! task); a connection whose reply is unread is never handed to anyone else, since
//! the next user of a pooled connection would have no way to read it.
//!
//! Nobody may come: a pool's reaper, one task per pool started by the first parked
//! session, finishes the unlocks of sessions parked for [`REAP_AFTER`] (reads the
//! reply, then lets the session go back to the pool, or closes it if the unlock
//! failed) and ends once nothing was parked for [`IDLE_ROUNDS`] rounds. The lock
//! itself is free as soon as the server has run the unlock, which was sent when
//! the guard was dropped: the reaper bounds only how long the connection stays out
//! of the pool. A timer in one task per pool, not a task per unlock: in steady use
//! the reaper finds nothing to do.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::drop_guard::DropGuard;
use crate::key::LockKey;
use crate::lock::AdvisoryLock;
use crate::mutex::lock_unpoisoned;
use crate::scope::Scope;
use crate::session::{Reserved, Session};
use crate::spawn::spawn_or_drop;

/// How long a parked session waits for a taker before the reaper finishes its
/// unlock and lets it go back to the pool: long enough for a caller's next locked
/// call even on a loaded host (a session reaped between two calls comes back from
/// the pool as a new session, which asks its pid and starts its loss watch again),
/// short enough that a pool of one stays usable by plain `pool.get()`.
pub(crate) const REAP_AFTER: Duration = Duration::from_millis(20);

/// How long a reaper may go without a round before a session parked meanwhile
/// starts another on its own runtime: the first one's runtime may be kept but no
/// longer driven (a `block_on` that returned), which would strand every session
/// parked after it.
const REAPER_STALE: Duration = Duration::from_millis(200);

/// How many reaper rounds in a row in which nothing was parked end the reaper.
const IDLE_ROUNDS: u32 = 20;

struct Parked {
    session: Arc<Session>,
    key: LockKey,
    since: Instant,
}

/// The parked sessions of one pool, and which reaper (by number) finishes them.
#[derive(Default)]
struct Lot {
    parked: Vec<Parked>,
    reaper: Option<u64>,
    /// When the reaper last ran a round: one that has not for [`REAPER_STALE`] is
    /// taken for stranded (its runtime is not being driven) and replaced.
    reaper_seen: Option<Instant>,
    /// Whether a session was parked since the reaper's last round: in steady use
    /// each is taken within microseconds, so an empty lot says nothing of idleness.
    parked_lately: bool,
}

fn lots() -> MutexGuard<'static, HashMap<Scope, Lot>> {
    static LOTS: OnceLock<Mutex<HashMap<Scope, Lot>>> = OnceLock::new();
    lock_unpoisoned(LOTS.get_or_init(Mutex::default))
}

/// Whether the guard letting go of `reserved` can park its session: parking is on,
/// it is a pool's session, fit for reuse, whose client was not lent out (a body's
/// statements may have left a transaction open or aborted, or a `SET`, which the
/// next lock must not run into), with a runtime for its reaper, where no
/// other guard of ours is (the guard's key is the only one reserved) and nothing
/// else of ours may be held or asked for (it counts just this lock: an abandoned
/// statement still on its way counts one more).
pub(super) fn may_park(session: &Arc<Session>, reserved: &Reserved) -> bool {
    super::parking()
        && matches!(session.scope(), Scope::Pool(_))
        && Arc::ptr_eq(session, reserved.session())
        && reserved.is_alone()
        && session.counts_one_lock()
        && session.is_reusable()
        && !session.was_lent()
        && tokio::runtime::Handle::try_current().is_ok()
}

/// Parks `session`, whose unlock of `key` is queued on it, and makes sure its
/// pool's reaper runs.
pub(super) fn park(session: Arc<Session>, key: LockKey) {
    let scope = session.scope();
    let mut lots = lots();
    let lot = lots.entry(scope).or_default();
    lot.parked.push(Parked {
        session,
        key,
        since: Instant::now(),
    });
    lot.parked_lately = true;
    let alive = lot
        .reaper_seen
        .is_some_and(|seen| seen.elapsed() < REAPER_STALE);
    if lot.reaper.is_some() && alive {
        return;
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let number = NEXT.fetch_add(1, Ordering::Relaxed);
    lot.reaper = Some(number);
    lot.reaper_seen = Some(Instant::now());
    drop(lots);
    // Made before the task, so that a reaper dropped unstarted (or with its
    // runtime) still gives up its lot.
    let gone = DropGuard::new((scope, number), reaper_gone);
    spawn_or_drop(async move {
        reap(scope, number).await;
        drop(gone);
    });
}

/// The parked session of `scope` with an unlock of `key` queued, if any (fit for
/// reuse or not: taken out either way, it is handed out once).
pub(super) fn take_with_key(scope: Scope, key: LockKey) -> Option<Arc<Session>> {
    let mut lots = lots();
    let lot = lots.get_mut(&scope)?;
    let at = lot.parked.iter().rposition(|p| p.key == key)?;
    let session = lot.parked.swap_remove(at).session;
    drop(lots);
    session.is_reusable().then_some(session)
}

/// A parked session of `scope` whose unlock has been answered (so nothing of an
/// earlier user still runs on it and no lock of ours is left on it), whose loss
/// watch, if started, fits `lock`.
pub(super) fn take_answered(scope: Scope, lock: &AdvisoryLock) -> Option<Arc<Session>> {
    let keepalive = lock.keepalive_bound();
    let mut lots = lots();
    let lot = lots.get_mut(&scope)?;
    let fits = |p: &Parked| {
        p.session.is_reusable()
            && p.session.watch_fits(keepalive)
            && p.session.queued_unlock_answered()
    };
    let at = lot.parked.iter().rposition(fits)?;
    Some(lot.parked.swap_remove(at).session)
}

/// The parked session of `scope` parked last that can watch `lock`, with the key
/// of its queued unlock, whatever that key (its unlock may still be unanswered).
pub(super) fn take_any(scope: Scope, lock: &AdvisoryLock) -> Option<(Arc<Session>, LockKey)> {
    let keepalive = lock.keepalive_bound();
    let mut lots = lots();
    let lot = lots.get_mut(&scope)?;
    let fits = |p: &Parked| p.session.is_reusable() && p.session.watch_fits(keepalive);
    let at = lot.parked.iter().rposition(fits)?;
    let parked = lot.parked.swap_remove(at);
    Some((parked.session, parked.key))
}

/// Finishes the unlocks of sessions parked too long, until the lot stays empty.
async fn reap(scope: Scope, number: u64) {
    let mut idle = 0;
    loop {
        tokio::time::sleep(REAP_AFTER).await;
        let Some(stale) = take_stale(scope, number, &mut idle) else {
            return;
        };
        // Each session goes back to the pool (or is closed, if its unlock failed) as
        // soon as its own unlock is answered: one whose backend does not answer
        // keeps only itself out of the pool.
        let finish = |parked: Parked| async move {
            parked.session.read_queued_unlock().await;
            drop(parked);
        };
        futures_util::future::join_all(stale.into_iter().map(finish)).await;
    }
}

/// The sessions parked for at least [`REAP_AFTER`]; `None` once the reaper is to
/// end (given up under the lot's lock, so a session parked after it starts a new
/// one).
fn take_stale(scope: Scope, number: u64, idle: &mut u32) -> Option<Vec<Parked>> {
    let mut lots = lots();
    let lot = lots.get_mut(&scope)?;
    if lot.reaper != Some(number) {
        // Taken for stranded and replaced while this one was not driven.
        return None;
    }
    lot.reaper_seen = Some(Instant::now());
    if std::mem::take(&mut lot.parked_lately) {
        *idle = 0;
    } else if lot.parked.is_empty() {
        *idle += 1;
        if *idle < IDLE_ROUNDS {
            return Some(Vec::new());
        }
        lots.remove(&scope);
        return None;
    }
    let (stale, fresh) = std::mem::take(&mut lot.parked)
        .into_iter()
        .partition(|p| p.since.elapsed() >= REAP_AFTER);
    lot.parked = fresh;
    Some(stale)
}

/// A reaper ended without giving up its lot (dropped with its runtime, or never
/// started): the sessions it would have finished are closed, which frees whatever
/// they held, and the next parked session starts a new reaper.
fn reaper_gone((scope, number): (Scope, u64)) {
    let mut lots = lots();
    let Some(lot) = lots.get_mut(&scope) else {
        return;
    };
    if lot.reaper != Some(number) {
        return;
    }
    let parked = std::mem::take(&mut lot.parked);
    lots.remove(&scope);
    drop(lots);
    drop(parked);
}
