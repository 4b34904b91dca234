//! `hold_at_least`: a guard let go before its lock's minimum hold ran out hands its
//! release to a task that waits until it has; the caller goes on at once.
//!
//! The waiting task owns what the guard held (session, key, Locker episode), so
//! nothing else of this process can take the key meanwhile. If the runtime shuts
//! down first, the task is dropped with it: a pooled session that still counts the
//! lock then closes its connection, which frees the lock on the server.

use std::time::{Duration, Instant};

use crate::lock::AdvisoryLock;
use crate::spawn::spawn_or_drop;

/// How much of `lock`'s minimum hold is left for a grant at `since`, if any.
pub(crate) fn remaining(lock: &AdvisoryLock, since: Instant) -> Option<Duration> {
    let left = lock.min_hold()?.checked_sub(since.elapsed())?;
    (!left.is_zero()).then_some(left)
}

/// Runs `then(value)` once `left` has passed, in the background. Without a runtime
/// to wait on, gives `value` back, for the caller to let go of at once.
pub(crate) fn after<T: Send + 'static>(left: Duration, value: T, then: fn(T)) -> Result<(), T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(value);
    }
    spawn_or_drop(async move {
        tokio::time::sleep(left).await;
        then(value);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hold_not_yet_run_out_remains() {
        let lock = AdvisoryLock::new("job");
        assert_eq!(remaining(&lock, Instant::now()), None);
        let held = lock.clone().hold_at_least(Duration::from_secs(30));
        let left = remaining(&held, Instant::now()).unwrap();
        assert!(left > Duration::from_secs(29) && left <= Duration::from_secs(30));
        let long_ago = Instant::now() - Duration::from_secs(31);
        assert_eq!(remaining(&held, long_ago), None);
    }

    #[test]
    fn without_a_runtime_the_value_comes_back() {
        assert_eq!(after(Duration::from_secs(1), 7, drop), Err(7));
    }
}
