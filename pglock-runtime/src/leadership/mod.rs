//! `Leadership`: one instance of a fleet leads, the others campaign; the leader's
//! body runs only while it holds the lock, and every term carries a fencing token.
//!
//! The loop of [`Leadership::run`]: campaign ([`campaign`]: tries on a jittered
//! interval, backoff after errors), pass the handover gate ([`gate`]), run the body
//! with a [`Term`] until it returns, the lock is lost or shutdown comes, let go, and
//! campaign again.

mod campaign;
mod electorate;
mod gate;
mod term;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::context::Held;
use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::patience::Patience;

pub use campaign::{DEFAULT_CAMPAIGN_EVERY, DEFAULT_MAX_BACKOFF};
pub use electorate::{Electorate, LostSignal, Seat};
pub use term::Term;

use campaign::Schedule;
use gate::Passed;

/// Leadership of a fleet through one advisory lock.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
/// use pglock_runtime::{AdvisoryLock, Leadership, Term};
///
/// let leadership = Leadership::new(AdvisoryLock::new("goldleader"), pool)
///     .campaign_every(Duration::from_millis(500));
/// let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
/// leadership
///     .run(shutdown, |term: Term| async move {
///         println!("leading with fence {}", term.fence());
///         std::future::pending::<()>().await; // lead until lost or shut down
///         Ok::<(), pglock_runtime::Error>(())
///     })
///     .await?;
/// # Ok(()) }
/// ```
///
/// # Guarantees
///
/// - **One body at a time.** The body runs only while this instance holds the lock,
///   and, after taking over from a leader that lost its session, only once that
///   leader's body was dropped (the handover gate; at most the loss bound later).
/// - **Loss.** When the lock's session is lost the body is dropped within the loss
///   bound (a closed connection within [`CHECK_EVERY`](crate::CHECK_EVERY); a server
///   that stopped answering within the lock's
///   [`keepalive`](AdvisoryLock::keepalive) bound), and the instance campaigns again.
/// - **Handover.** On `shutdown` the body is dropped and the lock released at once;
///   a follower takes over within one campaign interval.
/// - **Fencing.** Each term's [`Term::fence`] is strictly greater than every earlier
///   term's, across processes, crashes and server restarts (see
///   [`Term::fence`] and the README for what it relies on).
///
/// A body that returns `Ok` steps down: the lock is released and the instance
/// campaigns again after one interval (so a short body does not keep the lead by
/// reflex). A body that returns `Err` ends `run` with it. Errors while campaigning
/// (no connection, the server down) are logged at `warn` and retried with backoff.
pub struct Leadership<S> {
    lock: AdvisoryLock,
    source: S,
    every: Duration,
    max_backoff: Duration,
    gated: bool,
}

/// How a term ended.
enum Ended<E> {
    Shutdown,
    Lost,
    SteppedDown,
    Failed(E),
}

impl<S: Electorate> Leadership<S> {
    /// Leadership through `lock` (always taken [`fenced()`](AdvisoryLock::fenced)),
    /// campaigning on `source`: an owned `Pool` or `Locker`.
    pub fn new(lock: AdvisoryLock, source: S) -> Self {
        Leadership {
            lock: lock.fenced(),
            source,
            every: DEFAULT_CAMPAIGN_EVERY,
            max_backoff: DEFAULT_MAX_BACKOFF,
            gated: true,
        }
    }

    /// Leads without the handover gate: a new leader may then start while the body of
    /// one that lost its session still runs. Only for the tests that show why the
    /// gate exists.
    #[doc(hidden)]
    pub fn without_handover_gate(mut self) -> Self {
        self.gated = false;
        self
    }

    /// How often a follower tries for the lock (default 1 s): each wait is drawn
    /// between half of `every` and `every`, so a follower takes over within one
    /// interval of the leader letting go.
    pub fn campaign_every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// The longest wait between tries while trying fails (default 30 s); the wait
    /// starts at the campaign interval and doubles with each error in a row.
    pub fn max_backoff(mut self, limit: Duration) -> Self {
        self.max_backoff = limit;
        self
    }

    /// The lock this leadership campaigns for.
    pub fn lock(&self) -> &AdvisoryLock {
        &self.lock
    }

    /// Campaigns, and runs `body` each time this instance leads, until `shutdown`
    /// completes (then returns `Ok` after stepping down) or a body returns `Err`
    /// (then returns it). [`Error::WouldDeadlock`] at once if the calling task holds
    /// the lock already (in an enclosing annotated body): it could never win.
    pub async fn run<F, Fut, E>(
        &self,
        shutdown: impl Future<Output = ()> + Send,
        mut body: F,
    ) -> Result<(), E>
    where
        F: FnMut(Term) -> Fut + Send,
        Fut: Future<Output = Result<(), E>> + Send,
        E: From<Error> + Send,
    {
        // A campaign that this task's own enclosing lock would always refuse.
        Held::current().refuse_conflict(&self.lock, Patience::Forever)?;
        let mut shutdown = std::pin::pin!(shutdown);
        let mut schedule = Schedule::new(self.every, self.max_backoff);
        let mut wait = Duration::ZERO;
        loop {
            let elected = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                elected = self.elect(&mut schedule, wait) => elected,
            };
            match self.lead(elected, shutdown.as_mut(), &mut body).await {
                Ended::Shutdown => return Ok(()),
                Ended::Failed(error) => return Err(error),
                Ended::Lost | Ended::SteppedDown => wait = schedule.after_busy(),
            }
        }
    }

    /// Campaigns until elected: the seat, the gate, and the term's fence.
    async fn elect(&self, schedule: &mut Schedule, first_wait: Duration) -> Elected<S::Seat> {
        let mut wait = first_wait;
        loop {
            tokio::time::sleep(wait).await;
            match self.try_once().await {
                Ok(elected) => return elected,
                Err(error) if error.is_busy() => wait = schedule.after_busy(),
                Err(error) => {
                    wait = schedule.after_error();
                    tracing::warn!(lock = %self.lock.id(), %error, retry_in = ?wait, "campaign failed; retrying");
                }
            }
        }
    }

    /// One try: the lock with its fence, then the handover gate.
    async fn try_once(&self) -> Result<Elected<S::Seat>, Error> {
        let seat = self.source.try_seat(&self.lock).await?;
        if !self.gated {
            return Ok(Elected {
                seat,
                gate: Passed::Ungated,
            });
        }
        let lost = seat.lost();
        let gate = gate::gate_of(&self.lock);
        let bound = self.source.loss_bound(&self.lock);
        let passed = tokio::select! {
            biased;
            () = lost => return Err(Error::LockLost { lock: self.lock.id().clone() }),
            passed = gate::pass(self.source.gate_pool(), &gate, bound) => passed?,
        };
        Ok(Elected { seat, gate: passed })
    }

    /// Runs one term, and lets go of the lock as the way it ended demands.
    async fn lead<F, Fut, E>(
        &self,
        elected: Elected<S::Seat>,
        shutdown: Pin<&mut impl Future<Output = ()>>,
        body: &mut F,
    ) -> Ended<E>
    where
        F: FnMut(Term) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let Elected { seat, gate } = elected;
        let fence = seat.fence();
        let term = Term::new(fence);
        tracing::info!(lock = %self.lock.id(), fence, "elected leader");
        let lost = seat.lost();
        let ended = tokio::select! {
            biased;
            () = shutdown => Ended::Shutdown,
            () = lost => Ended::Lost,
            outcome = body(term.clone()) => match outcome {
                Ok(()) => Ended::SteppedDown,
                Err(error) => Ended::Failed(error),
            },
        };
        // The body is dropped: only now may the gate, and then the lock, be let go.
        term.end();
        drop(gate);
        self.let_go(seat, fence, &ended).await;
        ended
    }

    async fn let_go<E>(&self, seat: S::Seat, fence: u64, ended: &Ended<E>) {
        let lock = self.lock.id();
        if let Ended::Lost = ended {
            drop(seat);
            tracing::warn!(lock = %lock, fence, "leadership lost: the lock's session is gone; campaigning again");
            return;
        }
        let why = match ended {
            Ended::Shutdown => "shutdown",
            Ended::Failed(_) => "the body failed",
            _ => "the body returned",
        };
        match seat.release().await {
            Ok(()) => tracing::info!(lock = %lock, fence, why, "stepped down"),
            Err(error) => {
                tracing::warn!(lock = %lock, fence, why, %error, "stepped down; the lock was already gone")
            }
        }
    }
}

/// A won campaign: the lock with its fence, and the gate (or its wait) passed.
struct Elected<Seat> {
    seat: Seat,
    gate: Passed,
}

impl<S> std::fmt::Debug for Leadership<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("lock", self.lock.id())
            .field("campaign_every", &self.every)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}
