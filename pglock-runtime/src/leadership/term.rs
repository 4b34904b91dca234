//! `Term`: one leader's time in office, as its body sees it.

use std::future::Future;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

/// One term of leadership: given to the body of [`Leadership::run`](super::Leadership::run)
/// each time this instance is elected.
///
/// The body is dropped when the term ends, so it needs [`lost`](Self::lost) only for
/// work it hands to other tasks: those must stop too, and every write they make on
/// behalf of the term should carry [`fence`](Self::fence).
#[derive(Clone, Debug)]
pub struct Term {
    fence: u64,
    since: Instant,
    over: CancellationToken,
}

impl Term {
    pub(crate) fn new(fence: u64) -> Self {
        Term {
            fence,
            since: Instant::now(),
            over: CancellationToken::new(),
        }
    }

    /// The fencing token of this term: strictly greater than that of every earlier
    /// term of any leader of this database (see [`AdvisoryLock::fenced`](crate::AdvisoryLock)).
    /// Storage that records the greatest token it has seen can refuse a stale leader:
    /// `UPDATE ... SET ..., last_fence = $fence WHERE last_fence < $fence`.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Completes when the term is over: the lock was lost (noticed within the loss
    /// bound), or the leadership stepped down (shutdown, or the body returned).
    pub fn lost(&self) -> impl Future<Output = ()> + Send + 'static {
        self.over.clone().cancelled_owned()
    }

    /// Whether the term is over.
    pub fn is_over(&self) -> bool {
        self.over.is_cancelled()
    }

    /// When this instance became leader (after the handover gate: when the body started).
    pub fn since(&self) -> Instant {
        self.since
    }

    /// Ends the term for every clone.
    pub(crate) fn end(&self) {
        self.over.cancel();
    }
}
