//! Loss detection: notices that the session holding a lock is gone, and fires a
//! token every guard on it can await.
//!
//! Two kinds of loss, two bounds:
//! - **The connection closes** (the backend was terminated, the server restarted or
//!   shut down, the socket broke): noticed by the next check of the connection's
//!   state, every [`CHECK_EVERY`] — well within one second.
//! - **The server stops answering without closing the socket** (a frozen host, a
//!   network that drops packets, a stopped backend): a keepalive ping is sent when
//!   the session has been quiet for half the keepalive bound; if it is not answered
//!   within the other half, the state of the backend holding the lock is read over a
//!   fresh connection. A backend that is running a statement (`active`: the caller's
//!   own long query on the locked session, whose reply the ping waits behind) is
//!   alive; any other answer, or none within the bound, means lost. (A Locker's
//!   sessions run only our own short statements, so there a late ping is a loss.)
//!   Before a late ping counts, what has arrived is read (the connection task runs
//!   first), and time this process itself did not run (a blocked runtime thread, a
//!   VM or GC pause, seen as a watcher tick that comes late) is not counted: a pause
//!   of ours is not a loss of theirs.
//!   So a stall is noticed within the keepalive bound
//!   ([`DEFAULT_KEEPALIVE`](crate::DEFAULT_KEEPALIVE), 5 s),
//!   and a body that uses the locked session itself, even for a long statement or
//!   inside a transaction, is never taken for a stall: the ping is an empty
//!   statement that succeeds in any transaction state, and a statement error still
//!   proves the server answered.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::key::LockKey;
use crate::lock::LockMode;
use crate::spawn::spawn_or_drop;

/// How often a watched session's connection state is read. It is an in-process
/// flag (no server round trip), so it can run often; it bounds how late a closed
/// connection is noticed.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The loss signal of one session. The watcher task starts on first use of
/// [`LossWatch::watch`], so sessions nobody watches cost nothing.
#[derive(Default)]
pub(crate) struct LossWatch {
    lost: CancellationToken,
    /// Fires when the watched session is dropped (so followers of `lost` can stop).
    retired: CancellationToken,
    started: OnceLock<()>,
}

/// How a session is watched.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watch {
    /// The bound within which a server that stopped answering is noticed.
    pub(crate) keepalive: Duration,
    /// A lock the session holds, to find its backend in `pg_locks` when a ping is
    /// late; `None` for sessions that run only our own short statements.
    pub(crate) probe: Option<(LockKey, LockMode)>,
}

impl LossWatch {
    pub(crate) fn watch<W: Watched>(&self, session: &Arc<W>, how: Watch) {
        self.started.get_or_init(|| {
            // Without a runtime there is nothing to watch on: the session is not
            // watched (its loss still shows in `is_closed`).
            spawn_or_drop(watch(
                Arc::downgrade(session),
                self.lost.clone(),
                self.retired.clone(),
                how,
            ));
        });
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    pub(crate) fn token(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub(crate) fn retired(&self) -> CancellationToken {
        self.retired.clone()
    }
}

/// A keepalive ping on its way.
pub(crate) type Ping = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What the watcher needs of a watched connection.
pub(crate) trait Watched: Send + Sync + 'static {
    /// Whether the connection is known to be closed.
    fn is_closed(&self) -> bool;
    /// Sends a keepalive ping; the future completes when it is answered (or fails).
    fn ping(self: Arc<Self>) -> Ping;
    /// `Some(true)` if the backend holding `probe` is running a statement, read
    /// within `within` over another connection; `None` when that cannot be told.
    fn holder_is_running_a_statement(
        &self,
        probe: Option<(LockKey, LockMode)>,
        within: Duration,
    ) -> impl Future<Output = Option<bool>> + Send;
    /// Called once, when the connection is declared lost.
    fn declared_lost(&self);
    /// Who this session's backend is, asked on the session itself: only for
    /// sessions that run nothing but our own short statements (a statement sent
    /// into a caller's transaction could take its snapshot).
    fn identify(self: Arc<Self>) -> impl Future<Output = Option<Backend>> + Send;
    /// Ends `backend` from another connection, so that a session we gave up on
    /// holds nothing once its backend runs again.
    fn end_backend(&self, backend: Backend) -> impl Future<Output = ()> + Send;
}

/// A backend as the server names it: its pid, and when it started (as
/// `extract(epoch ...)` text), so a pid the server reused for another session is
/// never taken for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Backend {
    pub(crate) pid: i32,
    pub(crate) started: String,
}

/// Runs until the session is lost (then fires `lost`) or dropped (then `retired`).
async fn watch<W: Watched>(
    session: Weak<W>,
    lost: CancellationToken,
    retired: CancellationToken,
    how: Watch,
) {
    let half = how.keepalive / 2;
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let backend = match how.probe {
        None => identify(&session, half).await,
        Some(_) => None,
    };
    let mut clock = PauseClock::new();
    let mut quiet_since = Instant::now();
    let mut ping: Option<(Instant, Ping)> = None;
    loop {
        tick.tick().await;
        let Some(session) = session.upgrade() else {
            retired.cancel();
            return;
        };
        if session.is_closed() {
            return declare_lost(&*session, &lost, "its connection closed", None).await;
        }
        // Time this process did not run is not time the server kept us waiting.
        let paused = clock.pause_before_this_tick();
        quiet_since += paused;
        match &mut ping {
            None if quiet_since.elapsed() >= half => {
                ping = Some((Instant::now(), session.clone().ping()));
            }
            None => {}
            Some((sent, reply)) => {
                *sent += paused;
                if poll_once(reply).await || (sent.elapsed() >= half && answered_soon(reply).await)
                {
                    ping = None;
                    quiet_since = Instant::now();
                } else if sent.elapsed() >= half {
                    match session.holder_is_running_a_statement(how.probe, half).await {
                        // Busy with the caller's own statement: alive. Ask again later.
                        Some(true) => *sent = Instant::now(),
                        _ => {
                            let why = "the server stopped answering";
                            return declare_lost(&*session, &lost, why, backend).await;
                        }
                    }
                }
            }
        }
        clock.ticked();
    }
}

/// Tells how long the watcher was kept from running between two ticks: a blocked
/// runtime thread, a VM or GC pause. Such a pause is ours, not the server's, so the
/// watcher's clocks skip it.
struct PauseClock {
    last: Instant,
}

impl PauseClock {
    fn new() -> Self {
        PauseClock {
            last: Instant::now(),
        }
    }

    /// How much later than one tick period after the last tick's work this tick
    /// came, when that is more than a period (scheduling jitter below that counts
    /// as running time).
    fn pause_before_this_tick(&self) -> Duration {
        let late = self.last.elapsed().saturating_sub(CHECK_EVERY);
        if late > CHECK_EVERY {
            late
        } else {
            Duration::ZERO
        }
    }

    /// This tick's work is done (its own waits are not a pause).
    fn ticked(&mut self) {
        self.last = Instant::now();
    }
}

/// Before a late ping counts against the server: lets the connection task read what
/// has arrived (the reply may be waiting in the socket, unread while this process
/// was paused), for at most one check period.
async fn answered_soon(ping: &mut Ping) -> bool {
    tokio::time::timeout(CHECK_EVERY, ping.as_mut())
        .await
        .is_ok()
}

/// The backend of a session that runs only our statements, asked within `within`
/// (`None` when the session is gone or does not answer in time).
async fn identify<W: Watched>(session: &Weak<W>, within: Duration) -> Option<Backend> {
    let session = session.upgrade()?;
    tokio::time::timeout(within, session.identify())
        .await
        .ok()
        .flatten()
}

/// Tells every guard the lock is gone, then makes it so on the server: a session
/// declared lost is closed when dropped, and its backend (when known) is ended
/// now, so it cannot hold on when it runs again.
async fn declare_lost<W: Watched>(
    session: &W,
    lost: &CancellationToken,
    why: &str,
    backend: Option<Backend>,
) {
    tracing::warn!(
        reason = why,
        "the session holding advisory locks is lost; so are its locks"
    );
    session.declared_lost();
    lost.cancel();
    if let Some(backend) = backend {
        session.end_backend(backend).await;
    }
}

async fn poll_once(ping: &mut Ping) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(ping.as_mut().poll(cx).is_ready())).await
}
