//! What the runtime tells `tracing` (and, with the feature `metrics`, the `metrics`
//! facade): every acquisition, as a `pglock.wait` span and an event with how long it
//! waited, and every hold, as a `pglock.hold` span from grant to release and an event
//! with how long the lock was held, named by lock, key, mode, source and call site.
//! Outcomes that are part of normal operation are `debug` events; a timeout is
//! `info`; a deadlock, a would-be self-deadlock and a lost lock are `warn`; anything
//! else is `error`. The spans are `info`, so that a trace shows where time went.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::{Instrument, Span};

use crate::error::Error;
use crate::key::LockKey;
use crate::lock::{AdvisoryLock, LockMode};
#[cfg(feature = "metrics")]
use crate::metrics;
use crate::outcome::Outcome;

/// What a busy or timed-out acquisition means to its caller: an error, or (for an
/// `#[advisory_locked(skip)]` fn) a call skipped on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Fails,
    Skips,
}

/// What an acquisition gives, as spans and metrics name it: where the lock is held
/// (`source`), and the guard's record of its hold, to start once it is granted.
/// (`pub` in this private module: a bound of the public `LockSource::Guard` that
/// nobody outside can name, like a sealed trait.)
pub trait Observed {
    /// `pool`, `locker` or `xact`.
    const SOURCE: &'static str;
    /// The guard's hold, if the lock has a guard.
    fn holding(&mut self) -> Option<&mut Holding>;
}

/// A lock taken inside a transaction has no guard: the server frees it at the end.
impl Observed for () {
    const SOURCE: &'static str = "xact";
    fn holding(&mut self) -> Option<&mut Holding> {
        None
    }
}

/// Runs an acquisition inside its `pglock.wait` span, and reports its outcome.
pub(crate) async fn acquiring<G: Observed>(
    lock: &AdvisoryLock,
    how: &'static str,
    refusal: Refusal,
    acquisition: impl Future<Output = Result<G, Error>>,
) -> Result<G, Error> {
    let reported = Acquiring::start::<G>(lock, how, refusal);
    let outcome = acquisition.instrument(reported.span()).await;
    reported.end(outcome)
}

/// An acquisition being reported: its `pglock.wait` span, and when it started.
/// Apart from the acquisition's future, so that a caller awaits that future in
/// place: an `async fn` taking it by value would hold it twice (the argument,
/// and the instrumented copy it awaits), and a lock's future is a few kilobytes
/// that every poll's caller then moves.
pub(crate) struct Acquiring<'a> {
    lock: &'a AdvisoryLock,
    how: &'static str,
    refusal: Refusal,
    source: &'static str,
    wait: Span,
    started: Instant,
}

impl<'a> Acquiring<'a> {
    /// Opens the span of an acquisition of `lock` for a guard of kind `G`.
    pub(crate) fn start<G: Observed>(
        lock: &'a AdvisoryLock,
        how: &'static str,
        refusal: Refusal,
    ) -> Self {
        Acquiring {
            lock,
            how,
            refusal,
            source: G::SOURCE,
            wait: wait_span(lock, G::SOURCE),
            started: Instant::now(),
        }
    }

    /// The span the acquisition runs in.
    pub(crate) fn span(&self) -> Span {
        self.wait.clone()
    }

    /// Reports the acquisition's `outcome`, and starts the hold of a guard it gave.
    pub(crate) fn end<G: Observed>(self, mut outcome: Result<G, Error>) -> Result<G, Error> {
        let Acquiring {
            lock,
            how,
            refusal,
            source,
            wait,
            started,
        } = self;
        let waited = started.elapsed();
        let named = outcome_of(&outcome, refusal);
        wait.record("outcome", named.name());
        wait.in_scope(|| log_acquisition(lock, how, waited, &outcome));
        drop(wait);
        #[cfg(feature = "metrics")]
        metrics::acquisition(metrics::series(lock, source), named, waited);
        if let Ok(guard) = &mut outcome {
            if let Some(holding) = guard.holding() {
                holding.start(lock, source);
            }
        }
        outcome
    }
}

/// The outcome of an acquisition that gave `outcome`.
fn outcome_of<G>(outcome: &Result<G, Error>, refusal: Refusal) -> Outcome {
    match outcome {
        Ok(_) => Outcome::Acquired,
        Err(Error::Busy { .. } | Error::Timeout { .. }) if refusal == Refusal::Skips => {
            Outcome::Skipped
        }
        Err(Error::Busy { .. }) => Outcome::Busy,
        Err(Error::Timeout { .. }) => Outcome::Timeout,
        Err(Error::WouldDeadlock { .. }) => Outcome::WouldDeadlock,
        Err(Error::Deadlock { .. }) => Outcome::Deadlock,
        Err(Error::LockLost { .. }) => Outcome::Lost,
        Err(_) => Outcome::Error,
    }
}

fn log_acquisition<G>(
    lock: &AdvisoryLock,
    how: &'static str,
    waited: Duration,
    outcome: &Result<G, Error>,
) {
    let waited_us = micros(waited);
    let (name, key, mode) = (lock.name().unwrap_or(""), lock.key(), lock.mode());
    match outcome {
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
}

/// A guard's hold of its lock: once granted, its `pglock.hold` span (and
/// `pglock_held` gauge). Ended by [`end`](Self::end) when the guard lets go. Boxed,
/// so that a guard stays small with or without metrics.
pub struct Holding {
    open: Option<Box<Open>>,
}

/// A started hold: what its end closes.
struct Open {
    span: Span,
    #[cfg(feature = "metrics")]
    series: &'static metrics::Series,
}

impl Holding {
    /// A guard just made; its hold starts when the acquisition reports the grant.
    pub(crate) fn new() -> Self {
        Holding { open: None }
    }

    fn start(&mut self, lock: &AdvisoryLock, source: &'static str) {
        let open = Open {
            span: hold_span(lock, source),
            #[cfg(feature = "metrics")]
            series: metrics::series(lock, source),
        };
        #[cfg(feature = "metrics")]
        metrics::hold_started(open.series);
        self.open = Some(Box::new(open));
    }

    /// The guard let go of `lock`, held `since` (`lost`: its session was gone by
    /// then): the hold span closes, and the hold is reported. A guard ends once
    /// (release or drop).
    pub(crate) fn end(&mut self, lock: &AdvisoryLock, since: Instant, lost: bool) {
        let held = since.elapsed();
        let held_us = micros(held);
        let (name, key, mode) = (lock.name().unwrap_or(""), lock.key(), lock.mode());
        let Some(open) = self.open.take() else {
            return released_event(name, key, mode, held_us, lost);
        };
        open.span.record("lost", lost);
        open.span
            .in_scope(|| released_event(name, key, mode, held_us, lost));
        #[cfg(feature = "metrics")]
        metrics::hold_ended(open.series, held, lost);
    }
}

fn released_event(name: &str, key: LockKey, mode: LockMode, held_us: u64, lost: bool) {
    if lost {
        tracing::warn!(lock = name, %key, ?mode, held_us, "advisory lock was lost while held");
    } else {
        tracing::debug!(lock = name, %key, ?mode, held_us, "advisory lock released");
    }
}

/// The `pglock.wait` span of an acquisition; its `outcome` is recorded at the end.
fn wait_span(lock: &AdvisoryLock, source: &'static str) -> Span {
    let (name, key, mode) = (lock.name().unwrap_or(""), lock.key(), lock.mode());
    tracing::info_span!("pglock.wait", name, %key, ?mode, source, site = %Site(lock), outcome = tracing::field::Empty)
}

/// The `pglock.hold` span of a hold; `lost` is recorded at the end.
fn hold_span(lock: &AdvisoryLock, source: &'static str) -> Span {
    let (name, key, mode) = (lock.name().unwrap_or(""), lock.key(), lock.mode());
    tracing::info_span!("pglock.hold", name, %key, ?mode, source, site = %Site(lock), lost = tracing::field::Empty)
}

/// Where the lock is taken: the declared site (`function (file:line)`), else the
/// caller of the runtime API (`file:line`). Written only where a subscriber takes
/// the span: with none, a locked call formats nothing.
struct Site<'a>(&'a AdvisoryLock);

impl std::fmt::Display for Site<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.site(), self.0.caller()) {
            (Some(site), _) => write!(f, "{} ({}:{})", site.function, site.file, site.line),
            (None, Some(caller)) => write!(f, "{}:{}", caller.file(), caller.line()),
            (None, None) => Ok(()),
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::LockId;

    /// Every error variant's outcome name; `lost` (an acquisition whose session was
    /// lost before the grant was recorded) only comes from a race the live tests
    /// cannot force, so the mapping is checked here.
    #[test]
    fn outcomes_are_named_by_what_happened_and_skip_renames_only_busy_and_timeout() {
        let lock = || LockId::from(7);
        let busy = Err::<(), _>(Error::Busy { lock: lock() });
        let timeout = Err::<(), _>(Error::Timeout {
            lock: lock(),
            after: None,
            source: None,
        });
        let lost = Err::<(), _>(Error::LockLost { lock: lock() });
        let would = Err::<(), _>(Error::WouldDeadlock { lock: lock() });
        let name = |outcome, refusal| outcome_of(outcome, refusal).name();
        assert_eq!(name(&Ok(()), Refusal::Fails), "acquired");
        assert_eq!(name(&busy, Refusal::Fails), "busy");
        assert_eq!(name(&timeout, Refusal::Fails), "timeout");
        assert_eq!(name(&busy, Refusal::Skips), "skipped");
        assert_eq!(name(&timeout, Refusal::Skips), "skipped");
        assert_eq!(name(&lost, Refusal::Fails), "lost");
        assert_eq!(name(&lost, Refusal::Skips), "lost");
        assert_eq!(name(&would, Refusal::Skips), "would_deadlock");
    }
}
