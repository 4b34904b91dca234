//! `DropGuard`: "armed until used", the one way the runtime says "if this value is
//! dropped before its owner is done with it, clean up". Tickets, guards and replies
//! in flight each carry one, and disarm it once their work is done.

/// Holds `T`, and hands it to `on_drop` when dropped while still armed. Disarming
/// consumes the guard, so an existing guard is always armed.
pub(crate) struct DropGuard<T> {
    armed: Option<(T, fn(T))>,
}

impl<T> DropGuard<T> {
    /// Armed: dropping it runs `on_drop(value)`.
    pub(crate) fn new(value: T, on_drop: fn(T)) -> Self {
        DropGuard {
            armed: Some((value, on_drop)),
        }
    }

    /// Done: the value is returned, and nothing runs on drop.
    pub(crate) fn disarm(mut self) -> T {
        self.armed.take().map(|(value, _)| value).expect(ARMED)
    }

    pub(crate) fn get(&self) -> &T {
        self.armed.as_ref().map(|(value, _)| value).expect(ARMED)
    }

    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.armed.as_mut().map(|(value, _)| value).expect(ARMED)
    }
}

// `armed` is `None` only inside `disarm` and `drop`, which consume the guard.
const ARMED: &str = "a guard is armed until disarm or drop consumes it";

impl<T> Drop for DropGuard<T> {
    fn drop(&mut self) {
        if let Some((value, on_drop)) = self.armed.take() {
            on_drop(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPPED: AtomicUsize = AtomicUsize::new(0);

    fn count(n: usize) {
        DROPPED.fetch_add(n, Ordering::SeqCst);
    }

    #[test]
    fn runs_on_drop_unless_disarmed() {
        drop(DropGuard::new(2, count));
        assert_eq!(DROPPED.load(Ordering::SeqCst), 2);
        assert_eq!(DropGuard::new(5, count).disarm(), 5);
        assert_eq!(DROPPED.load(Ordering::SeqCst), 2);
    }
}
