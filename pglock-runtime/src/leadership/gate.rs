//! The handover gate: a second lock a leader holds, on a session of its own, for as
//! long as its body runs, so that a new leader never starts while the previous body
//! may still run.
//!
//! When the session holding the leader's lock dies (its backend terminated, the
//! server restarted), the server frees the lock at once, but the old leader's body
//! runs on until its process notices the loss (within the loss bound). A follower
//! may win the lock in that window. So a new leader first takes the gate — a key
//! derived from the lock's, waited for in the server's queue on another session —
//! which the old leader lets go only after its body was dropped:
//!
//! - handed over gracefully (shutdown, a body that returned), the gate is already
//!   free and the new body starts at once;
//! - after a loss, the new body starts when the old one was dropped;
//! - if the old leader cannot let go (its process froze with the gate's session
//!   still open), the new leader waits the loss bound, by which time the old body
//!   was dropped, and leads without the gate. (Its own successor then waits the loss
//!   bound too, unless that stale session closes meanwhile.)

use std::time::Duration;

use deadpool_postgres::Pool;

use crate::error::Error;
use crate::guard::LockGuard;
use crate::key::LockKey;
use crate::lock::AdvisoryLock;

/// The gate of `lock`: a key of its own, derived from the lock's key.
pub(crate) fn gate_of(lock: &AdvisoryLock) -> AdvisoryLock {
    AdvisoryLock::new(LockKey::from_name(&format!(
        "pglock:leadership-gate:{}",
        lock.key()
    )))
    .keepalive(lock.keepalive_bound())
}

/// What taking the gate gave: the gate, or nothing after waiting the loss bound.
pub(crate) enum Passed {
    /// Held until the term ends (let go on drop).
    Held {
        _gate: LockGuard,
    },
    WaitedOut,
    /// The gate is off (only the tests that show why it exists turn it off).
    Ungated,
}

/// Takes the gate, waiting at most `loss_bound` for the previous leader to let go.
pub(crate) async fn pass(
    pool: &Pool,
    gate: &AdvisoryLock,
    loss_bound: Duration,
) -> Result<Passed, Error> {
    match gate.acquire_timeout(pool, loss_bound).await {
        Ok(guard) => Ok(Passed::Held { _gate: guard }),
        Err(Error::Timeout { .. }) => {
            tracing::warn!(
                lock = %gate.id(),
                ?loss_bound,
                "the previous leader did not let go of the handover gate within the loss bound; its body is gone by now"
            );
            Ok(Passed::WaitedOut)
        }
        Err(error) => Err(error),
    }
}
