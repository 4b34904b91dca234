//! When to try for the lock next: a jittered campaign interval while the lock is held
//! elsewhere, and exponential backoff while trying fails.
//!
//! Campaigning tries (`pg_try_advisory_lock`) on the interval rather than waiting in
//! the server's queue (`pg_advisory_lock`): a waiting candidate would pin a connection
//! of its own for as long as another instance leads (hours), with a statement whose
//! silence cannot be told from a stalled server; and between tries the candidate
//! notices shutdown, errors and a dead database at once. The price is the takeover
//! delay: at most one interval after the leader lets go. The jitter (each wait is
//! drawn between half the interval and the interval) keeps a fleet that started
//! together from trying in lockstep.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The campaign interval of a new [`Leadership`](super::Leadership).
pub const DEFAULT_CAMPAIGN_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between tries after errors, by default.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The timing of one candidate's tries.
#[derive(Clone, Debug)]
pub(crate) struct Schedule {
    every: Duration,
    max_backoff: Duration,
    /// Errors in a row since the last try that reached the server and got an answer.
    errors: u32,
}

impl Schedule {
    pub(crate) fn new(every: Duration, max_backoff: Duration) -> Self {
        Schedule {
            every,
            max_backoff,
            errors: 0,
        }
    }

    /// The wait before the next try after the lock was busy (or after a term).
    pub(crate) fn after_busy(&mut self) -> Duration {
        self.errors = 0;
        jittered(self.every)
    }

    /// The wait before the next try after an error: the interval, doubled for each
    /// error in a row, at most the backoff limit.
    pub(crate) fn after_error(&mut self) -> Duration {
        self.errors = self.errors.saturating_add(1);
        let factor = 1_u32 << (self.errors - 1).min(16);
        let backoff = self.every.saturating_mul(factor).min(self.max_backoff);
        jittered(backoff.max(self.every))
    }
}

/// A random duration between half of `d` and `d`.
fn jittered(d: Duration) -> Duration {
    // A fresh RandomState is seeded from the OS once per thread and then stepped:
    // random enough to spread a fleet's tries, and no dependency for it.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = (random >> 11) as f64 / (1_u64 << 53) as f64; // [0, 1)
    d.div_f64(2.0).mul_f64(1.0 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_stay_within_one_interval() {
        let every = Duration::from_millis(400);
        let mut schedule = Schedule::new(every, DEFAULT_MAX_BACKOFF);
        let waits: Vec<_> = (0..200).map(|_| schedule.after_busy()).collect();
        assert!(
            waits.iter().all(|w| *w >= every / 2 && *w <= every),
            "{waits:?}"
        );
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 100, "the jitter varies: {distinct:?}");
    }

    #[test]
    fn errors_back_off_up_to_the_limit_and_an_answer_resets_it() {
        let every = Duration::from_millis(100);
        let limit = Duration::from_millis(1000);
        let mut schedule = Schedule::new(every, limit);
        let first = schedule.after_error();
        assert!(first <= every);
        // 200, 400, 800 ms (each jittered down to half at most), then the limit.
        let waits: Vec<_> = (0..40).map(|_| schedule.after_error()).collect();
        assert!(waits.iter().all(|w| *w <= limit), "{waits:?}");
        assert!(waits[3..].iter().all(|w| *w >= limit / 2), "{waits:?}");
        assert!(waits[0] <= every * 2 && waits[0] >= every, "{waits:?}");
        assert!(schedule.after_busy() <= every);
        assert!(schedule.after_error() <= every, "the backoff starts over");
    }
}
