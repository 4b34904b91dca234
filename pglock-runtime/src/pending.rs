//! Unlocks still on their way: a guard dropped (or an annotated fn returning) queues
//! its unlock and lets the caller go on at once. Until the server has run that
//! unlock, the next acquisition of the same key from this process takes the same
//! session, where its request queues behind the unlock; so a lock that was released
//! is never reported `Busy` because of our own unlock in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::session::Session;
use crate::LockKey;

/// (scope, key) → the session where an unlock of that key is queued.
type Pending = HashMap<(usize, LockKey), Weak<Session>>;

fn pending() -> &'static Mutex<Pending> {
    static PENDING: std::sync::OnceLock<Mutex<Pending>> = std::sync::OnceLock::new();
    PENDING.get_or_init(Mutex::default)
}

fn table() -> std::sync::MutexGuard<'static, Pending> {
    // The table holds only weak pointers; a panic elsewhere cannot leave it torn.
    pending()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `session` has an unlock of `key` queued.
pub(crate) fn queued(session: &Arc<Session>, key: LockKey) {
    table().insert((session.scope(), key), Arc::downgrade(session));
}

/// The unlock of `key` on `session` is done (or failed: either way, not pending).
pub(crate) fn finished(session: &Arc<Session>, key: LockKey) {
    let mut table = table();
    let id = (session.scope(), key);
    if table
        .get(&id)
        .is_some_and(|s| s.as_ptr() == Arc::as_ptr(session))
    {
        table.remove(&id);
    }
}

/// The session of `scope` (a pool, or a Locker) with an unlock of `key` still
/// queued, if it is fit to take the next lock.
pub(crate) fn session_for(scope: usize, key: LockKey) -> Option<Arc<Session>> {
    let session = table().get(&(scope, key))?.upgrade()?;
    session.is_reusable().then_some(session)
}
