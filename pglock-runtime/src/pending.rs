//! Unlocks still on their way: a guard dropped (or an annotated fn returning) queues
//! its unlock and lets the caller go on at once. Until the server has run that
//! unlock, the next acquisition of the same key from this process takes the same
//! session, where its request queues behind the unlock; so a lock that was released
//! is never reported `Busy` because of our own unlock in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::session::Session;
use crate::LockKey;

/// The session with the latest queued unlock of a key, and that unlock's ticket.
type Pending = HashMap<(usize, LockKey), (Weak<Session>, Ticket)>;

/// Names one queued unlock, so that an older unlock finishing does not clear the
/// entry of a newer one still on its way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

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

/// `session` has an unlock of `key` queued; the ticket is for [`finished`].
pub(crate) fn queued(session: &Arc<Session>, key: LockKey) -> Ticket {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let ticket = Ticket(NEXT.fetch_add(1, Ordering::Relaxed));
    table().insert((session.pool_id(), key), (Arc::downgrade(session), ticket));
    ticket
}

/// The unlock of `key` on `session` queued with `ticket` is done (or failed: either
/// way, not pending). The entry stays if a later unlock of the key was queued since.
pub(crate) fn finished(session: &Arc<Session>, key: LockKey, ticket: Ticket) {
    let mut table = table();
    let id = (session.pool_id(), key);
    if table.get(&id).is_some_and(|(_, t)| *t == ticket) {
        table.remove(&id);
    }
}

/// The session of `pool_id` with an unlock of `key` still queued, if it is fit to
/// take the next lock. The entry is taken out: one acquisition, not every one that
/// comes by before the unlock's reply, follows the unlock on that session. A second
/// one there would be granted by the server as a re-entrant lock of the same session
/// while the first one holds it: two holders of an exclusive lock in this process.
pub(crate) fn session_for(pool_id: usize, key: LockKey) -> Option<Arc<Session>> {
    let (session, _) = table().remove(&(pool_id, key))?;
    let session = session.upgrade()?;
    session.is_reusable().then_some(session)
}
