//! What the runtime tells `tracing`: every acquisition (with how long it waited) and
//! release (with how long the lock was held), named by lock, key and mode. Outcomes
//! that are part of normal operation are `debug`; a timeout is `info`; a deadlock, a
//! would-be self-deadlock and a lost lock are `warn`; anything else is `error`.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::lock::AdvisoryLock;

/// Runs an acquisition, and reports its outcome.
pub(crate) async fn acquiring<G>(
    lock: &AdvisoryLock,
    how: &'static str,
    acquisition: impl Future<Output = Result<G, Error>>,
) -> Result<G, Error> {
    let started = Instant::now();
    let outcome = acquisition.await;
    let waited_us = micros(started.elapsed());
    let (name, key, mode) = (lock.name().unwrap_or(""), lock.key(), lock.mode());
    match &outcome {
        Ok(_) => {
            tracing::debug!(lock = name, %key, ?mode, how, waited_us, "advisory lock acquired")
        }
        Err(e @ Error::Busy { .. }) => {
            tracing::debug!(lock = name, %key, ?mode, how, waited_us, error = %e, "advisory lock busy")
        }
        Err(e @ Error::Timeout { .. }) => {
            tracing::info!(lock = name, %key, ?mode, how, waited_us, error = %e, "advisory lock timed out")
        }
        Err(
            e @ (Error::Deadlock { .. } | Error::WouldDeadlock { .. } | Error::LockLost { .. }),
        ) => {
            tracing::warn!(lock = name, %key, ?mode, how, waited_us, error = %e, "advisory lock not acquired")
        }
        Err(e) => {
            tracing::error!(lock = name, %key, ?mode, how, waited_us, error = %e, "advisory lock failed")
        }
    }
    outcome
}

/// A guard let go of its lock after holding it since `since`.
pub(crate) fn released(lock: &AdvisoryLock, since: Instant, lost: bool) {
    let held_us = micros(since.elapsed());
    let (name, key, mode) = (lock.name().unwrap_or(""), lock.key(), lock.mode());
    if lost {
        tracing::warn!(lock = name, %key, ?mode, held_us, "advisory lock was lost while held");
    } else {
        tracing::debug!(lock = name, %key, ?mode, held_us, "advisory lock released");
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}
