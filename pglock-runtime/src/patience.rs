//! `Patience`: how long an acquisition may wait, the one runtime answer to "how long
//! to wait" (the attribute's `wait`, the acquire methods, the Locker's queue and the
//! server's `lock_timeout` all read it).

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::lock::AdvisoryLock;

/// How long an acquisition may wait for its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Patience {
    /// Not at all: `Busy` at once when the lock is held elsewhere.
    Try,
    /// Until the lock is granted.
    Forever,
    /// Until `deadline`; a timeout then reports the whole `limit` it was given.
    Until {
        /// When the limit runs out.
        deadline: Instant,
        /// The limit as the caller gave it (for the error).
        limit: Duration,
    },
}

impl Patience {
    /// At most `limit` from now. A deadline too far away to be represented (say
    /// `Duration::MAX`) is no limit at all: `Forever`.
    pub fn within(limit: Duration) -> Patience {
        match Instant::now().checked_add(limit) {
            Some(deadline) => Patience::Until { deadline, limit },
            None => Patience::Forever,
        }
    }

    /// Whether the acquisition may queue for the lock.
    pub(crate) fn waits(self) -> bool {
        !matches!(self, Patience::Try)
    }

    /// What is left of the limit now; `None` when there is no limit.
    pub(crate) fn remaining(self) -> Option<Duration> {
        match self {
            Patience::Until { deadline, .. } => {
                Some(deadline.saturating_duration_since(Instant::now()))
            }
            Patience::Try | Patience::Forever => None,
        }
    }

    /// The error of a wait that ran out of this patience.
    pub(crate) fn timed_out(
        self,
        lock: &AdvisoryLock,
        source: Option<tokio_postgres::Error>,
    ) -> Error {
        let after = match self {
            Patience::Until { limit, .. } => Some(limit),
            Patience::Try | Patience::Forever => None,
        };
        Error::Timeout {
            lock: lock.id().clone(),
            after,
            source,
        }
    }

    /// Runs `step` (getting a connection, say) within what is left of the limit: a
    /// limit covers the whole acquisition, not only the wait in the server's queue.
    pub(crate) async fn bound<T>(
        self,
        lock: &AdvisoryLock,
        step: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let Patience::Until { deadline, .. } = self else {
            return step.await;
        };
        match tokio::time::timeout_at(deadline, step).await {
            Ok(result) => result,
            Err(_elapsed) => Err(self.timed_out(lock, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unrepresentable_deadline_is_no_limit() {
        assert_eq!(Patience::within(Duration::MAX), Patience::Forever);
    }

    #[test]
    fn a_limit_keeps_what_the_caller_gave() {
        let limit = Duration::from_millis(1500);
        let Patience::Until { limit: kept, .. } = Patience::within(limit) else {
            panic!("a representable limit is a deadline");
        };
        assert_eq!(kept, limit);
        assert!(Patience::within(limit).remaining().unwrap() <= limit);
    }
}
