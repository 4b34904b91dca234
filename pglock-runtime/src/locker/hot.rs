//! Hot keys: the keys a Locker's try found held elsewhere in the server moments
//! ago. A waiting acquisition of such a key skips the try on a lock session (one
//! batch round trip that would most likely say `Busy` again) and goes straight to
//! the server's queue on a connection of its own, where a free key is granted in
//! that same one round trip. The memory is short ([`HOT_FOR`]) so that a key that
//! cooled down goes back on a shared lock session, which is the Locker's point;
//! it is bounded ([`MOST_REMEMBERED`]) so that a process touching millions of
//! keys keeps only the recent ones.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::key::LockKey;
use crate::mutex::lock_unpoisoned;

/// For how long after a try found a key held elsewhere its waits skip the try.
/// A key contended across processes is found busy again at its next try after
/// this, which renews it: one try per key per second at most.
pub(super) const HOT_FOR: Duration = Duration::from_secs(1);

/// How many hot keys a Locker remembers at most; past it, the cooled ones are
/// forgotten, and if none has cooled, all of them (a try per key is only a cost).
pub(super) const MOST_REMEMBERED: usize = 4096;

/// The keys found busy in the server lately, with when.
#[derive(Default)]
pub(super) struct HotKeys {
    seen: Mutex<HashMap<LockKey, Instant>>,
}

impl HotKeys {
    /// A try found `key` held by another session.
    pub(super) fn found_busy(&self, key: LockKey) {
        let now = Instant::now();
        let mut seen = lock_unpoisoned(&self.seen);
        if seen.len() >= MOST_REMEMBERED {
            seen.retain(|_, at| now.duration_since(*at) < HOT_FOR);
            if seen.len() >= MOST_REMEMBERED {
                seen.clear();
            }
        }
        seen.insert(key, now);
    }

    /// Whether `key` was found busy within [`HOT_FOR`].
    pub(super) fn is_hot(&self, key: LockKey) -> bool {
        let seen = lock_unpoisoned(&self.seen);
        seen.get(&key).is_some_and(|at| at.elapsed() < HOT_FOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_hot_once_found_busy_and_others_are_not() {
        let hot = HotKeys::default();
        assert!(!hot.is_hot(LockKey::Pair(1, 1)));
        hot.found_busy(LockKey::Pair(1, 1));
        assert!(hot.is_hot(LockKey::Pair(1, 1)));
        assert!(!hot.is_hot(LockKey::Pair(1, 2)));
    }

    #[test]
    fn the_memory_stays_bounded() {
        let hot = HotKeys::default();
        for k in 0..(3 * MOST_REMEMBERED as i32) {
            hot.found_busy(LockKey::Pair(2, k));
        }
        assert!(lock_unpoisoned(&hot.seen).len() <= MOST_REMEMBERED);
        assert!(hot.is_hot(LockKey::Pair(2, 3 * MOST_REMEMBERED as i32 - 1)));
    }
}
