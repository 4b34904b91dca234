//! `Locker`: thousands of locks on a few connections, and waiters that queue in the
//! process instead of on pooled connections.
//!
//! A session lock pins its connection, so one lock per pooled connection would let
//! 500 orders in flight take 500 connections, and 64 tasks waiting for one busy key
//! sit on 64 of them. A Locker keeps a few *lock sessions* and pipelines the locks
//! of every task on them; a key has one holder (or many shared holders) inside the
//! process, decided in memory; and of the tasks waiting for a key, one waits in the
//! server, on a connection of its own (a waiting `pg_advisory_lock` would stall
//! every other lock of a shared session), while the rest wait in the process.

mod batch;
pub(crate) mod deadlock;
mod guard;
mod hot;
mod relock;
mod request;
mod sessions;
mod table;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::context::Held;
use crate::error::Error;
use crate::fence;
use crate::lock::AdvisoryLock;
use crate::lock::DEFAULT_KEEPALIVE;
use crate::loss::Watch;
use crate::mutex::lock_unpoisoned;
use crate::patience::Patience;
use crate::release;
use crate::session::Session;
use crate::source::LockSource;

use deadlock::Deadlocks;
pub use guard::LockerGuard;
use hot::HotKeys;
use sessions::Sessions;
use table::{Admission, Handoff, Table, Ticket};

/// How many lock sessions a Locker opens at most, by default.
pub const DEFAULT_LOCK_SESSIONS: usize = 2;

/// How many times in a row a key is handed from one task of the process to the next
/// without going back to the server, by default.
pub const DEFAULT_HANDOFF_LIMIT: u32 = 16;

/// For how long after the server granted a key the process may keep handing it to
/// its own tasks, by default: long critical sections go back to the server's queue
/// after every holder, short ones after at most [`DEFAULT_HANDOFF_LIMIT`] handoffs.
pub const DEFAULT_HANDOFF_WINDOW: Duration = Duration::from_millis(10);

/// Many advisory locks on a few connections of a pool; a lock source like the pool
/// itself.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock_runtime::Error> {
/// use pglock_runtime::{AdvisoryLock, Locker};
///
/// let locker = Locker::new(pool.clone()); // typically one per process; Clone is cheap
/// let guard = AdvisoryLock::new("order:7").try_acquire(&locker).await?;
/// // ... the critical section ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
///
/// # Rules
///
/// - **Sessions.** A new lock goes on the lock session holding fewest locks (at most
///   [`DEFAULT_LOCK_SESSIONS`] by default, each opened from the pool when it is
///   first chosen and kept while the Locker lives; see
///   [`Locker::locks_per_session`]). One session holds thousands of locks; a
///   second one lets the server work on two backends at once.
/// - **Batches.** The tries and unlocks of all tasks that arrive together on a lock
///   session go to the server as one statement, never serialised behind a mutex.
///   Every statement on a session costs the server more the more locks that session
///   holds (PostgreSQL walks the session's local lock table at the end of each
///   transaction: with 5,000 held, one lock or unlock took ≈ 0.2–0.4 ms instead of
///   ≈ 0.02 ms in the benchmarks), and a batch pays that once for all its requests.
///   A batch that fails (the server's lock table is full, say) is replayed request
///   by request, so each caller gets its own answer and nothing is left held.
/// - **Waiting.** Inside the process a key has one exclusive holder or any number of
///   shared ones. Tasks that must wait queue in the process, first come first
///   served. When the server has the key elsewhere, one of them (at most one per key)
///   waits in the server's queue on a connection of its own; the lock then lives on
///   that connection until the process gives it back.
/// - **Hot keys.** A key a try found held elsewhere is remembered for 1 s: a wait for
///   it within that time skips the try (which would most likely be `Busy` again,
///   one batch round trip wasted) and goes straight to the server's queue, where a
///   free key is granted in the same one round trip. A try (no wait) always tries. A
///   key that cooled down is tried again, on a lock session, after that second.
/// - **Waiting connections are kept.** When a key held on such a connection is let
///   go (dropped), its unlock is sent at once and the connection is parked, its
///   reply unread, for this Locker's next wait in the server (or next request for
///   that key), which reads the reply with its own statement: no task per unlock,
///   no checkout and no new loss watch per wait. A wait for another key takes it
///   only once that reply is in (a request for the unlocked key must find its
///   unlock there until then), waiting for it at most 20 ms before it checks a
///   connection out instead. A parked connection nobody takes is finished by a
///   reaper (one task per Locker while any is parked: its reply read, then back to
///   the pool) within about 40 ms (two rounds of 20 ms). The lock is free in the
///   server once the unlock runs, which it does when sent.
/// - **Fairness.** A released key goes to the next waiting task of the process
///   without a server round trip, at most [`DEFAULT_HANDOFF_LIMIT`] times in a row
///   and only within [`DEFAULT_HANDOFF_WINDOW`] (10 ms) of the server granting it
///   (see [`LockerBuilder::handoff_limit`], [`LockerBuilder::handoff_window`]); then
///   it goes back to the server, where waiters of other processes come first, and
///   this process queues behind them. On a lock session one statement unlocks it and
///   tries it again at once, on the waiting tasks' behalf: the unlock grants it to a
///   waiter in the server's queue first, so the try gets it back only when nobody
///   else waited.
/// - **Readers.** A key held shared admits another shared request of the process
///   after one question to the server, asked on a connection of its own: is an
///   exclusive request of another process queued? If not, the request joins the
///   holders; if so, it queues behind that writer (a try is `Busy`), as it would in
///   the server. The question is asked even right after the grant: a writer may
///   have queued within any window.
/// - **Connections.** At most the lock sessions, plus one connection per key this
///   process waits for in the server (or holds after such a wait), plus one for a
///   moment per reader that asks whether a writer is queued, plus, for at most
///   about 40 ms after such a key was let go, its parked connection.
/// - **Loss.** When a lock session dies every guard on it reports lost, its keys are
///   forgotten, and the next acquisition opens a new session. A session left in
///   doubt about what it holds (a try or an unlock answered with a cancel, say) is
///   retired the same way: declared lost and its backend ended, which frees its
///   locks.
/// - **Deadlocks.** Two annotated bodies of this process that each hold a key through
///   this Locker and wait for the other's get [`Error::Deadlock`] for the wait that
///   closes the cycle, at once, naming the keys (see
///   [`LockerBuilder::deadlock_detection`]); the others proceed. Across processes
///   (or Lockers), a wait in the server from inside annotated bodies announces their
///   keys in its statement's comment, and past the server's `deadlock_timeout`
///   checks `pg_locks` for a cycle through it every `deadlock_timeout`: one waiter
///   of the cycle (the lowest backend pid) gets [`Error::Deadlock`].
#[derive(Clone)]
pub struct Locker {
    inner: Arc<Inner>,
}

/// Options of a [`Locker`].
pub struct LockerBuilder {
    pool: Pool,
    sessions: usize,
    handoff_limit: u32,
    handoff_window: Duration,
    keepalive: Duration,
    deadlock_detection: bool,
}

impl LockerBuilder {
    /// How many lock sessions the Locker may open (at least 1; default 2).
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self
    }

    /// How many times in a row a key may pass between tasks of this process before
    /// it goes back to the server's queue (default 16; 0 always goes back).
    pub fn handoff_limit(mut self, limit: u32) -> Self {
        self.handoff_limit = limit;
        self
    }

    /// For how long after the server granted a key it may pass between tasks of this
    /// process before going back to the server's queue (default 10 ms).
    pub fn handoff_window(mut self, window: Duration) -> Self {
        self.handoff_window = window;
        self
    }

    /// The bound within which a lock session whose server stopped answering is
    /// noticed (default [`DEFAULT_KEEPALIVE`], 5 s); a closed connection is noticed
    /// within [`CHECK_EVERY`](crate::CHECK_EVERY) regardless.
    pub fn keepalive(mut self, bound: Duration) -> Self {
        self.keepalive = bound;
        self
    }

    /// Whether a wait that closes a cycle of waits fails with [`Error::Deadlock`]
    /// (default true) instead of waiting for ever: among this process's tasks at
    /// once, and through the server (other processes, other Lockers) within the
    /// server's `deadlock_timeout` plus a check.
    ///
    /// What is seen: keys held by annotated bodies (`#[advisory_locked]` with this
    /// Locker as its `pool`) for as long as the body runs, and waits in the process for
    /// a key made inside such bodies, at any depth, by the attribute or the runtime
    /// API. Across processes: waits in the server made by a Locker inside annotated
    /// bodies, which announce the keys those bodies hold (through a Locker or a
    /// `Pool`) with the backend holding each, and `Pool` sessions that wait while
    /// holding keys themselves. What is not: guards of the runtime API, which may
    /// move to any task, so whom they block is unknown (counting them could report a
    /// deadlock that is not one); waits through a `Pool` from a body holding a key
    /// through a Locker (they announce nothing); keys an enclosing body holds through
    /// another Locker; locks taken outside pglock. A task that holds keys and waits
    /// in the process behind another task's server wait checks for itself, with its
    /// own holds, past `deadlock_timeout`.
    ///
    /// Cost: a waiting task queues in a graph check under one mutex, once per wait
    /// that has to queue; a wait in the server from inside a body sends a statement
    /// text of its own (it carries the announcement), which the server parses each
    /// time, and, only once it has
    /// lasted `deadlock_timeout`, reads `pg_locks` once per `deadlock_timeout` on a
    /// pooled connection. Every process of a cycle must have detection on: the one
    /// whose turn it is to give up may be any of them.
    pub fn deadlock_detection(mut self, on: bool) -> Self {
        self.deadlock_detection = on;
        self
    }

    /// The Locker.
    pub fn build(self) -> Locker {
        Locker {
            inner: Arc::new({
                let sessions = Arc::new(Sessions::new(self.sessions));
                let handoff = Handoff {
                    limit: self.handoff_limit,
                    window: self.handoff_window,
                };
                Inner {
                    table: Arc::new(Mutex::new(Table::new(
                        handoff,
                        sessions.clone(),
                        relock::finish_in_background,
                    ))),
                    sessions,
                    pool: self.pool,
                    keepalive: self.keepalive,
                    deadlocks: Deadlocks::new(self.deadlock_detection),
                    hot: HotKeys::default(),
                }
            }),
        }
    }
}

pub(crate) struct Inner {
    pool: Pool,
    sessions: Arc<Sessions>,
    table: Arc<Mutex<Table>>,
    keepalive: Duration,
    deadlocks: Deadlocks,
    hot: HotKeys,
}

impl Locker {
    /// A Locker with the default options, taking its sessions from `pool`.
    pub fn new(pool: Pool) -> Locker {
        Locker::builder(pool).build()
    }

    /// A Locker with options.
    pub fn builder(pool: Pool) -> LockerBuilder {
        LockerBuilder {
            pool,
            sessions: DEFAULT_LOCK_SESSIONS,
            handoff_limit: DEFAULT_HANDOFF_LIMIT,
            handoff_window: DEFAULT_HANDOFF_WINDOW,
            keepalive: DEFAULT_KEEPALIVE,
            deadlock_detection: true,
        }
    }

    /// Lock sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.inner.sessions.open()
    }

    /// Locks held (or being asked for) on each open lock session, for diagnostics:
    /// a new lock goes on the session holding fewest.
    pub fn locks_per_session(&self) -> Vec<usize> {
        self.inner.sessions.held_per_session()
    }

    /// Keys this process holds or waits for through this Locker.
    pub fn keys_in_use(&self) -> usize {
        lock_unpoisoned(&self.inner.table).len()
    }
}

impl std::fmt::Debug for Locker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locker")
            .field("open_sessions", &self.open_sessions())
            .field("keys_in_use", &self.keys_in_use())
            .finish()
    }
}

impl crate::source::sealed::Sealed for Locker {}

impl LockSource for Locker {
    type Guard = LockerGuard;

    async fn lock<'a>(
        &'a self,
        lock: &'a AdvisoryLock,
        patience: Patience,
    ) -> Result<LockerGuard, Error> {
        let mut guard = self.inner.acquire(lock, patience).await?;
        if guard.is_lost() {
            // Granted on a lock session retired meanwhile (a try still on its way
            // when a cancel or a lost connection retired it): the caller is told,
            // not handed a guard whose body would start without the lock.
            return Err(Error::LockLost {
                lock: lock.id().clone(),
            });
        }
        // Also after a handoff inside the process: each holder takes its own
        // token, after the previous holder let go.
        fence::take_if_fenced(&mut guard).await?;
        Ok(guard)
    }
}

impl Locker {
    /// The pool the Locker takes its sessions from.
    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The bound within which the loss of a lock session is noticed.
    pub(crate) fn keepalive(&self) -> Duration {
        self.inner.keepalive
    }
}

/// How long a reader's try waits for a connection to ask about writers on. Each
/// such question holds its connection for one round trip, so a short wait rides out
/// a burst of readers; a pool that stays exhausted is answered as one
/// ([`Error::Pool`], `Timeout(Wait)`), as a try from a `Pool` is.
const PROBE_CHECKOUT: Duration = Duration::from_millis(250);

/// How long a wait in the server waits for the reply of the unlock queued on a
/// parked connection before taking it (until then, a request for that unlock's key
/// must still find it there, so it cannot be taken for another key). The reply is
/// one round trip away; a backend slower than this is left parked, and the wait
/// takes a connection from the pool instead.
const SETTLE_WITHIN: Duration = Duration::from_millis(20);

fn no_free_connection(lock: &AdvisoryLock) -> Error {
    Error::Pool {
        lock: lock.id().clone(),
        source: deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait),
    }
}

impl Inner {
    /// How the Locker's sessions are watched: only our own short statements run on
    /// them, so a late keepalive ping is a loss.
    pub(super) fn watch(&self) -> Watch {
        Watch {
            keepalive: self.keepalive,
            probe: None,
        }
    }

    fn table_ref(&self) -> Weak<Mutex<Table>> {
        Arc::downgrade(&self.table)
    }

    /// What to do once a lock session is lost: end the table's episodes on it, so
    /// the tasks waiting for those keys ask the server anew instead of waiting for
    /// holders that hold nothing.
    pub(super) fn forget_keys_on(&self) -> impl FnOnce(&Arc<Session>) + Send + 'static {
        let table = self.table_ref();
        move |session| {
            if let Some(table) = table.upgrade() {
                let me = Arc::downgrade(&table);
                lock_unpoisoned(&table).session_lost(session, &me);
            }
        }
    }

    async fn acquire(
        self: &Arc<Self>,
        lock: &AdvisoryLock,
        patience: Patience,
    ) -> Result<LockerGuard, Error> {
        let held = Held::current();
        held.refuse_conflict(lock, patience)?;
        let mut admission = lock_unpoisoned(&self.table).admit(lock, patience, &self.table_ref());
        let ticket = loop {
            match admission {
                Admission::Holds(session, episode) => {
                    return Ok(LockerGuard::new(
                        self.clone(),
                        lock.clone(),
                        episode,
                        session,
                    ));
                }
                Admission::Busy => {
                    return Err(Error::Busy {
                        lock: lock.id().clone(),
                    })
                }
                Admission::CheckForWriters(episode) => {
                    // Boxed: a rare path, kept out of every acquisition's future
                    // (nested bodies' futures live on one stack).
                    let writer_queued = Box::pin(self.writer_queued(lock, patience)).await?;
                    admission = lock_unpoisoned(&self.table).join_readers(
                        lock,
                        patience,
                        episode,
                        writer_queued,
                        &self.table_ref(),
                    );
                }
                Admission::AskServer(ticket) => break ticket,
                Admission::Queued(turn) => {
                    let _waiting = self.deadlocks.wait_starts(&held, lock, patience)?;
                    let turn = self.wait_in_process(lock, turn, patience);
                    break Box::pin(
                        self.deadlocks
                            .wait_behind(&self.pool, &held, lock, patience, turn),
                    )
                    .await?;
                }
            }
        };
        if let Some(session) = ticket.held_on().cloned() {
            let episode = ticket.episode();
            ticket.used();
            return Ok(LockerGuard::new(
                self.clone(),
                lock.clone(),
                episode,
                session,
            ));
        }
        self.ask_server(&held, lock, ticket, patience).await
    }

    /// Waits in the process for a turn: to hold the key, or to ask the server.
    async fn wait_in_process(
        &self,
        lock: &AdvisoryLock,
        mut turn: tokio::sync::oneshot::Receiver<Ticket>,
        patience: Patience,
    ) -> Result<Ticket, Error> {
        let answer = match patience {
            Patience::Until { deadline, .. } => tokio::time::timeout_at(deadline, &mut turn).await,
            Patience::Try | Patience::Forever => Ok((&mut turn).await),
        };
        match answer {
            Ok(Ok(ticket)) => Ok(ticket),
            Ok(Err(_closed)) => Err(Error::LockLost {
                lock: lock.id().clone(),
            }),
            Err(_elapsed) => {
                // A turn may have come at the last moment: take it rather than drop it.
                turn.close();
                match turn.try_recv() {
                    Ok(ticket) if ticket.held_on().is_some() => Ok(ticket),
                    _ => Err(patience.timed_out(lock, None)),
                }
            }
        }
    }

    /// Whether an exclusive request for `lock`'s key is queued in the server, while
    /// this process holds the key shared. PostgreSQL queues a new shared request
    /// behind a waiting exclusive one, but grants it again at once to a session that
    /// holds the key already; so the question is asked on a connection of its own,
    /// fresh from the pool (which holds no lock), and the shared lock it may be
    /// granted is given back at once. A try waits for that connection at most
    /// [`PROBE_CHECKOUT`].
    async fn writer_queued(&self, lock: &AdvisoryLock, patience: Patience) -> Result<bool, Error> {
        let checkout = Session::checkout_for(&self.pool, lock, self.sessions.scope());
        let probe = if patience.waits() {
            patience.bound(lock, checkout).await?
        } else {
            tokio::time::timeout(PROBE_CHECKOUT, checkout)
                .await
                .map_err(|_elapsed| no_free_connection(lock))??
        };
        let granted = patience.bound(lock, probe.try_lock(lock)).await?;
        if granted {
            if let Err(error) = probe.unlock(lock).await {
                // The session still counts the lock: dropping it closes the
                // connection, which frees the lock in the server.
                tracing::warn!(lock = %lock.id(), %error, "could not give back a reader's probe lock; closing its connection");
            }
        }
        Ok(!granted)
    }

    /// This task is the one of the process that asks the server for the key. If it
    /// fails or gives up, dropping `ticket` passes the turn to the next waiter.
    async fn ask_server(
        self: &Arc<Self>,
        held: &Held,
        lock: &AdvisoryLock,
        ticket: Ticket,
        patience: Patience,
    ) -> Result<LockerGuard, Error> {
        if patience.waits() && self.hot.is_hot(lock.key()) {
            // Found busy moments ago: a try would most likely be answered `Busy`
            // again, and the wait grants a free key in the same one round trip.
            let waiting = self.waiting_session(lock, patience, None).await?;
            return self
                .wait_in_server(held, lock, ticket, patience, waiting)
                .await;
        }
        let session = patience
            .bound(lock, self.sessions.for_key(self, lock, patience))
            .await?;
        match self.sessions.try_lock(&session, lock).await {
            Ok(true) => return self.granted(lock, ticket, session),
            Ok(false) => {}
            Err(error) => {
                session.retire_if_in_doubt(&error);
                return Err(error);
            }
        }
        self.hot.found_busy(lock.key());
        if !patience.waits() {
            return Err(Error::Busy {
                lock: lock.id().clone(),
            });
        }
        let waiting = self.waiting_session(lock, patience, Some(session)).await?;
        self.wait_in_server(held, lock, ticket, patience, waiting)
            .await
    }

    /// A connection of its own to wait for `lock` in the server's queue on: the one
    /// the try just went on if it was such a connection already (a parked one, whose
    /// unlock of this key it read), else one parked by an earlier wait's holder
    /// (see [`release::park_alone`]): with an unlock of this key queued, or one
    /// answered, or, once its unlock is answered within [`SETTLE_WITHIN`], any
    /// (typically the one this very task let go a moment ago, its reply still on
    /// its way); else a new one from the pool.
    async fn waiting_session(
        &self,
        lock: &AdvisoryLock,
        patience: Patience,
        tried: Option<Arc<Session>>,
    ) -> Result<Arc<Session>, Error> {
        let tried = tried.filter(|s| s.is_reusable() && !self.sessions.is_lock_session(s));
        let scope = self.sessions.scope();
        if let Some(session) = tried.or_else(|| release::take_parked_for(scope, lock)) {
            return Ok(session);
        }
        let settled = release::take_settled_pool_session(scope, lock, SETTLE_WITHIN);
        if let Some(session) = patience.bound(lock, async { Ok(settled.await) }).await? {
            return Ok(session);
        }
        let checkout = Session::checkout_for(&self.pool, lock, scope);
        patience.bound(lock, checkout).await
    }

    /// Waits for `lock` in the server's queue on `waiting`, where the key then lives.
    async fn wait_in_server(
        self: &Arc<Self>,
        held: &Held,
        lock: &AdvisoryLock,
        ticket: Ticket,
        patience: Patience,
        waiting: Arc<Session>,
    ) -> Result<LockerGuard, Error> {
        self.deadlocks
            .wait_in_server(&self.pool, held, &waiting, lock, patience)
            .await?;
        waiting.holds_alone(lock);
        self.granted(lock, ticket, waiting)
    }

    fn granted(
        self: &Arc<Self>,
        lock: &AdvisoryLock,
        ticket: Ticket,
        session: Arc<Session>,
    ) -> Result<LockerGuard, Error> {
        let episode = ticket.episode();
        let recorded = lock_unpoisoned(&self.table).granted(
            lock.key(),
            episode,
            lock.mode(),
            &session,
            &self.table_ref(),
        );
        ticket.used();
        if !recorded {
            // The episode was ended meanwhile (its session was lost): give it back.
            self.sessions.unlock_in_background(session, lock.clone());
            return Err(Error::LockLost {
                lock: lock.id().clone(),
            });
        }
        Ok(LockerGuard::new(
            self.clone(),
            lock.clone(),
            episode,
            session,
        ))
    }
}
