//! `Session`: a pooled connection that holds session-level advisory locks, and the
//! one rule that keeps the pool clean: the connection goes back to the pool only when
//! we know it holds no lock; otherwise it is closed, which frees everything it held.
//!
//! A session may carry one queued unlock (see [`queued`]): sent when a guard was
//! dropped, its reply read by the next statement's caller on this session, in the
//! same round trip as that statement. Until it is read the lock stays counted, so a
//! session dropped with its unlock unread is closed, never pooled.

mod pids;
mod queued;
mod retire;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use deadpool::managed::Manager as _;

use deadpool_postgres::{Object, Pool};
use tokio::sync::Notify;
use tokio_postgres::error::SqlState;
use tokio_postgres::{SimpleQueryMessage, Statement};

use crate::error::Error;
use crate::in_flight::{InFlight, Reply};
use crate::key::LockKey;
use crate::lock::AdvisoryLock;
use crate::lock::{LockMode, DEFAULT_KEEPALIVE};
use crate::loss::{Backend, LossWatch, Ping, Watch, Watched};
use crate::mutex::lock_unpoisoned;
use crate::scope::{PoolId, Scope};
use crate::spawn::spawn_or_drop;
use crate::sql::{self, Op};
use queued::{Answer, QueuedUnlock};

/// A connection taken from the pool for locks. Shared (`Arc`) by every guard whose
/// lock lives on it and by any task still finishing an unlock on it.
pub(crate) struct Session {
    /// Shared only with this session's queued unlock, whose reply needs the client
    /// while it is on its way (see `Drop`).
    client: Option<Arc<Object>>,
    pool: Pool,
    pool_id: PoolId,
    /// Who takes locks on this session. Queued unlocks are found again only within
    /// the same scope.
    scope: Scope,
    /// Locks this session may hold: counted up before a lock statement is sent and
    /// down only once the server confirmed it holds nothing for that request.
    maybe_held: AtomicUsize,
    /// Set once a cancel request was sent for this session: a cancel signal may land
    /// on any later statement, so the connection is closed instead of reused.
    close_when_done: AtomicBool,
    /// Keys that guards (or acquisitions on their way) hold on this session, in the
    /// order they were reserved. The server grants a key again to a session that
    /// holds it (advisory locks are re-entrant per session), so a session is used
    /// for a key only while no one else of ours holds that key on it.
    reserved: Mutex<Vec<Reservation>>,
    loss: LossWatch,
    /// The backend's pid, learnt with the first wait (see [`Session::learn_pid`]): a
    /// wait is cancelled by pid, over a connection of its own.
    pid: OnceLock<i32>,
    pid_known: Notify,
    /// The unlock sent when the last guard on this session was dropped, its reply
    /// not read yet.
    queued: Mutex<Option<QueuedUnlock>>,
    /// Set once a guard lent its client out: the caller may have left statements
    /// running on it (a dropped query future), which a queued unlock then waits
    /// behind. Cleared when a queued unlock's answer shows all of them answered.
    lent: AtomicBool,
    /// The keepalive bound the loss watch was started with, if it was.
    watched: OnceLock<Duration>,
    /// The comment of the one lock a session opened to wait for it holds (a Locker's
    /// wait in the server's queue), for the pings of a session with nothing reserved.
    /// The latest such lock: a Locker reuses its waiting connections (parked between
    /// waits), each time for one lock alone.
    alone: Mutex<Option<sql::Comment>>,
}

/// One key reserved on a session, with the comment of its lock's statements, which
/// the keepalive ping repeats (see [`Session::ping_text`]).
struct Reservation {
    key: LockKey,
    comment: Option<sql::Comment>,
}

/// A key reserved on a session for one guard: released when dropped.
pub(crate) struct Reserved {
    session: Arc<Session>,
    key: LockKey,
}

impl Reserved {
    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Whether this is the only key reserved on its session: no other guard (or
    /// acquisition on its way) of ours is on it.
    pub(crate) fn is_alone(&self) -> bool {
        let reserved = self.session.reserved();
        reserved.len() == 1 && reserved[0].key == self.key
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut reserved = self.session.reserved();
        if let Some(at) = reserved.iter().position(|r| r.key == self.key) {
            reserved.remove(at);
        }
    }
}

impl Session {
    pub(crate) async fn checkout(pool: &Pool, lock: &AdvisoryLock) -> Result<Arc<Session>, Error> {
        Self::checkout_for(pool, lock, Scope::Pool(PoolId::of(pool))).await
    }

    /// A session for `scope` (a Locker's own sessions are not shared with its pool's
    /// other users).
    pub(crate) async fn checkout_for(
        pool: &Pool,
        lock: &AdvisoryLock,
        scope: Scope,
    ) -> Result<Arc<Session>, Error> {
        let client = pool.get().await.map_err(|source| Error::Pool {
            lock: lock.id().clone(),
            source,
        })?;
        Ok(Self::around(client, pool, scope))
    }

    /// A session from `pool` only if a connection is free now (an idle one, or room
    /// to open one): a try waits for nobody, so never for another caller to give a
    /// connection back. The pool's own create and recycle timeouts still apply. No
    /// free connection is [`Error::Pool`] with the pool's `Timeout(Wait)`.
    pub(crate) async fn checkout_if_free(
        pool: &Pool,
        lock: &AdvisoryLock,
    ) -> Result<Arc<Session>, Error> {
        Self::checkout_if_free_for(pool, lock, Scope::Pool(PoolId::of(pool))).await
    }

    /// A session for `scope` as `patience` allows: a caller that waits may wait for
    /// a connection; a try takes one only if it is free now
    /// ([`Session::checkout_if_free`]).
    pub(crate) async fn checkout_with(
        pool: &Pool,
        lock: &AdvisoryLock,
        scope: Scope,
        patience: crate::patience::Patience,
    ) -> Result<Arc<Session>, Error> {
        if patience.waits() {
            Self::checkout_for(pool, lock, scope).await
        } else {
            Self::checkout_if_free_for(pool, lock, scope).await
        }
    }

    async fn checkout_if_free_for(
        pool: &Pool,
        lock: &AdvisoryLock,
        scope: Scope,
    ) -> Result<Arc<Session>, Error> {
        let at_once = deadpool_postgres::Timeouts {
            wait: Some(Duration::ZERO),
            ..pool.timeouts()
        };
        let client = pool
            .timeout_get(&at_once)
            .await
            .map_err(|source| Error::Pool {
                lock: lock.id().clone(),
                source,
            })?;
        Ok(Self::around(client, pool, scope))
    }

    fn around(client: Object, pool: &Pool, scope: Scope) -> Arc<Session> {
        let pid = OnceLock::new();
        if let Some(known) = pids::remembered(&client) {
            let _first = pid.set(known);
        }
        Arc::new(Session {
            client: Some(Arc::new(client)),
            pool: pool.clone(),
            pool_id: PoolId::of(pool),
            scope,
            maybe_held: AtomicUsize::new(0),
            close_when_done: AtomicBool::new(false),
            reserved: Default::default(),
            loss: LossWatch::default(),
            pid,
            pid_known: Notify::new(),
            queued: Mutex::new(None),
            lent: AtomicBool::new(false),
            watched: OnceLock::new(),
            alone: Mutex::new(None),
        })
    }

    pub(crate) fn client(&self) -> &Object {
        self.client
            .as_deref()
            .expect("a session has its client until it is dropped")
    }

    /// The client, for the caller's own statements: from now on, statements of
    /// theirs may still be running when the lock is let go.
    pub(crate) fn lend_client(&self) -> &Object {
        self.lent.store(true, Ordering::Release);
        self.client()
    }

    /// Whether a guard lent the client out since the last confirmed unlock: the
    /// caller's statements may have left state on the session (an open or aborted
    /// transaction, a `SET`).
    pub(crate) fn was_lent(&self) -> bool {
        self.lent.load(Ordering::Acquire)
    }

    /// The pool this session came from.
    pub(crate) fn pool_id(&self) -> PoolId {
        self.pool_id
    }

    /// Whether the pool this session came from was closed.
    pub(crate) fn pool_is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    fn reserved(&self) -> std::sync::MutexGuard<'_, Vec<Reservation>> {
        lock_unpoisoned(&self.reserved)
    }

    /// Reserves `lock`'s key on this session unless someone of ours holds it here
    /// already.
    pub(crate) fn reserve(self: &Arc<Self>, lock: &AdvisoryLock) -> Option<Reserved> {
        let key = lock.key();
        self.reserve_if(lock, |reserved| reserved.iter().all(|r| r.key != key))
    }

    /// Reserves `lock`'s key on this session only if no one of ours holds anything here:
    /// for a session picked up because an unlock is queued on it, which must not
    /// belong to a lock still held (an enclosing body's, say).
    pub(crate) fn reserve_alone(self: &Arc<Self>, lock: &AdvisoryLock) -> Option<Reserved> {
        self.reserve_if(lock, <[Reservation]>::is_empty)
    }

    /// Reserves `lock`'s key if `allowed` says so of what is reserved now (one
    /// decision under the lock, so two callers cannot both pass the check).
    fn reserve_if(
        self: &Arc<Self>,
        lock: &AdvisoryLock,
        allowed: impl FnOnce(&[Reservation]) -> bool,
    ) -> Option<Reserved> {
        let key = lock.key();
        let mut reserved = self.reserved();
        if !allowed(&reserved) {
            return None;
        }
        reserved.push(Reservation {
            key,
            comment: sql::Comment::of(lock),
        });
        drop(reserved);
        Some(Reserved {
            session: self.clone(),
            key,
        })
    }

    /// Who takes locks on this session.
    pub(crate) fn scope(&self) -> Scope {
        self.scope
    }

    /// Fit to take another lock: alive, and not marked for closing.
    pub(crate) fn is_reusable(&self) -> bool {
        !self.is_lost() && !self.close_when_done.load(Ordering::Acquire)
    }

    /// The loss signal, watched from now on (the first caller's `how` applies).
    pub(crate) fn watch_for_loss(self: &Arc<Self>, how: Watch) -> &LossWatch {
        self.watched.get_or_init(|| how.keepalive);
        self.loss.watch(self, how);
        &self.loss
    }

    /// Whether a lock with `keepalive` as its bound can be watched on this session:
    /// the watch, once started, keeps the bound of its first lock.
    pub(crate) fn watch_fits(&self, keepalive: Duration) -> bool {
        self.watched.get().is_none_or(|bound| *bound == keepalive)
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.loss.is_lost() || self.client().is_closed()
    }

    pub(crate) fn close_when_done(&self) {
        self.close_when_done.store(true, Ordering::Release);
    }

    /// After a lock statement ended with `error`: if it leaves it unknown what this
    /// Locker session holds (a try answered with a cancel may have been granted
    /// first; an unlock that failed may not have run), the session is *retired*:
    /// declared lost (every guard on it reports lost, and the Locker's table forgets
    /// its keys), kept from taking new locks, and its backend ended, which frees
    /// every lock it held; the Locker's next acquisition opens a new session. A
    /// pool's session needs none of this: it is closed when its last guard lets go.
    pub(crate) fn retire_if_in_doubt(self: &Arc<Self>, error: &Error) {
        if error.leaves_doubt() {
            self.retire();
        }
    }

    /// Retires this Locker session, whose holds are in doubt whatever the cause (see
    /// [`Session::retire_if_in_doubt`]); a pool's session is left alone.
    pub(crate) fn retire(self: &Arc<Self>) {
        if !matches!(self.scope, Scope::Locker(_)) {
            return;
        }
        tracing::warn!("a lock session is in doubt about the locks it holds; closing it");
        self.close_when_done();
        // Locker sessions are watched from their checkout on, so `how` is not used.
        let how = Watch {
            keepalive: DEFAULT_KEEPALIVE,
            probe: None,
        };
        self.watch_for_loss(how).token().cancel();
        let session = self.clone();
        spawn_or_drop(async move { retire::end_own_backend(session.client()).await });
    }

    /// A lock statement is about to be sent: until the server's answer rules it
    /// out, this session may hold one more lock.
    pub(crate) fn count_possible_hold(&self) {
        self.maybe_held.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether this session may hold exactly one lock.
    pub(crate) fn counts_one_lock(&self) -> bool {
        self.maybe_held.load(Ordering::Acquire) == 1
    }

    /// The server confirmed a counted lock is not (or no longer) held here.
    pub(crate) fn discount_possible_hold(&self) {
        self.maybe_held.fetch_sub(1, Ordering::AcqRel);
    }

    /// The prepared statement for `op`, together with the lock's unlock statement:
    /// a guard dropped later must be able to send its unlock at once, without a
    /// round trip to prepare it first, or a request queued after it on this session
    /// could overtake it. Both are prepared in one round trip on first use, and come
    /// from the connection's statement cache afterwards.
    pub(crate) async fn lock_statement(
        &self,
        op: Op,
        lock: &AdvisoryLock,
    ) -> Result<Statement, Error> {
        let (statement, _unlock) = futures_util::future::try_join(
            self.statement(op, lock),
            self.statement(Op::Unlock, lock),
        )
        .await?;
        Ok(statement)
    }

    pub(crate) async fn statement(&self, op: Op, lock: &AdvisoryLock) -> Result<Statement, Error> {
        self.client()
            .prepare_cached(&sql::statement(op, lock))
            .await
            .map_err(|e| Error::from_db(lock.id(), e))
    }

    /// `pg_try_advisory_lock`: `Ok(true)` when granted. If the caller gives up before
    /// the answer, a task waits for it and unlocks a lock granted to nobody: other
    /// locks may live on this session, so it cannot simply be closed. A queued
    /// unlock on the session is read meanwhile: it is answered just before the try,
    /// in the same round trip.
    pub(crate) async fn try_lock(self: &Arc<Self>, lock: &AdvisoryLock) -> Result<bool, Error> {
        let ((), answer) =
            futures_util::future::join(self.read_queued_unlock(), self.try_lock_alone(lock)).await;
        answer
    }

    async fn try_lock_alone(self: &Arc<Self>, lock: &AdvisoryLock) -> Result<bool, Error> {
        let statement = self.lock_statement(Op::Try, lock).await?;
        self.count_possible_hold();
        let answer = send_try(self.clone(), lock.clone(), statement);
        match answer.answer().await {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.discount_possible_hold();
                Ok(false)
            }
            Err(e) => {
                if e.as_db_error().is_some() && e.code() != Some(&SqlState::QUERY_CANCELED) {
                    // The server refused the statement (e.g. its lock table is full):
                    // nothing was granted.
                    self.discount_possible_hold();
                }
                Err(Error::from_db(lock.id(), e))
            }
        }
    }

    /// `pg_advisory_unlock`. A lock the server says we did not hold means it was lost.
    pub(crate) async fn unlock(&self, lock: &AdvisoryLock) -> Result<(), Error> {
        let statement = self.statement(Op::Unlock, lock).await?;
        let row = self
            .client()
            .query_one(&statement, &sql::params(&lock.key()))
            .await
            .map_err(|e| Error::from_db(lock.id(), e))?;
        if row.get::<_, bool>(0) {
            self.discount_possible_hold();
            Ok(())
        } else {
            Err(Error::LockLost {
                lock: lock.id().clone(),
            })
        }
    }

    /// Sends the unlock of `lock` now, and keeps its reply for the next caller of
    /// [`Session::read_queued_unlock`]. The caller makes sure no other guard of
    /// ours is on this session.
    pub(crate) fn queue_unlock(&self, lock: &AdvisoryLock) {
        let client = self
            .client
            .clone()
            .expect("a session has its client until it is dropped");
        let unlock = QueuedUnlock::send(client, lock);
        let earlier = lock_unpoisoned(&self.queued).replace(unlock);
        debug_assert!(earlier.is_none(), "one queued unlock per session");
    }

    /// Whether the queued unlock (if any) has been answered, looking without waiting.
    pub(crate) fn queued_unlock_answered(&self) -> bool {
        lock_unpoisoned(&self.queued)
            .as_mut()
            .is_some_and(QueuedUnlock::is_answered)
    }

    /// Whether the queued unlock (if any) is answered within `within`: its reply is
    /// awaited in place, kept for [`Session::read_queued_unlock`], so a session
    /// whose backend does not answer can be parked again as it was.
    pub(crate) async fn queued_unlock_answered_within(&self, within: Duration) -> bool {
        let answered = std::future::poll_fn(|cx| match lock_unpoisoned(&self.queued).as_mut() {
            Some(unlock) => unlock.poll_answered(cx),
            None => std::task::Poll::Ready(()),
        });
        tokio::time::timeout(within, answered).await.is_ok()
    }

    /// Whether nothing but our own queued unlock can be running on this session:
    /// it is answered, or the client was never lent out since the last confirmed
    /// unlock (our own statements are all awaited before a guard is let go).
    fn only_our_unlock_in_flight(&self) -> bool {
        let mut queued = lock_unpoisoned(&self.queued);
        let Some(unlock) = queued.as_mut() else {
            return false;
        };
        unlock.is_answered() || !self.lent.load(Ordering::Acquire)
    }

    /// Reads the queued unlock's reply, if one is queued: awaited together with
    /// the whole of the next request on this session (polled first, so that the
    /// connection never waits for it to be read), so both are answered in one
    /// round trip.
    /// A failed unlock is handled as a dropped guard's always is: logged, and the
    /// session, still counting the lock, is never reused and closes when let go.
    pub(crate) async fn read_queued_unlock(&self) {
        let Some(unlock) = lock_unpoisoned(&self.queued).take() else {
            return;
        };
        let lock = unlock.lock().clone();
        let answer = unlock.answer().await;
        self.settle_unlock(&lock, answer);
    }

    fn settle_unlock(&self, lock: &AdvisoryLock, answer: Answer) {
        let error = match answer {
            Ok(true) => {
                self.lent.store(false, Ordering::Release);
                self.discount_possible_hold();
                return;
            }
            Ok(false) => Error::LockLost {
                lock: lock.id().clone(),
            },
            Err(e) => Error::from_db(lock.id(), e),
        };
        tracing::warn!(lock = %lock.id(), %error, "unlock failed; closing the session");
        self.close_when_done();
    }

    /// How many times this session holds `lock`, from `pg_locks`.
    pub(crate) async fn held_count(&self, lock: &AdvisoryLock) -> Result<i64, Error> {
        let key = sql::PgLocksKey::of(lock.key());
        let mode = sql::pg_locks_mode(lock.mode());
        let [classid, objid, objsubid] = key.params();
        let row = self
            .client()
            .query_one(sql::HELD_BY_ME, &[classid, objid, objsubid, &mode])
            .await
            .map_err(|e| Error::from_db(lock.id(), e))?;
        Ok(row.get(0))
    }

    /// Learns this session's backend pid, once per connection (see [`pids`]): the
    /// first call sends [`sql::BACKEND_PID`] at its first poll, so a statement polled
    /// right after it travels in the same round trip. A failure leaves the pid unknown (a wait on
    /// this session then cannot be cancelled, and its session is closed instead).
    pub(crate) async fn learn_pid(&self) {
        if self.pid.get().is_some() {
            return;
        }
        let Ok(messages) = self.client().simple_query(sql::BACKEND_PID).await else {
            return;
        };
        let pid = messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0)?.parse::<i32>().ok(),
            _ => None,
        });
        if let Some(pid) = pid {
            let _first = self.pid.set(pid);
            pids::remember(self.client(), pid);
            self.pid_known.notify_waiters();
        }
    }

    /// This session's backend pid, once [`Session::learn_pid`] has learnt it.
    pub(crate) async fn known_pid(&self) -> i32 {
        loop {
            let notified = self.pid_known.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(pid) = self.pid.get() {
                return *pid;
            }
            notified.await;
        }
    }

    /// Whether the server shows this session idle, or running only `statement` (its
    /// queued unlock, say), asked over a connection of its own: a session whose unlock
    /// waits behind another statement (a dropped body's) must not be reused by a try,
    /// which would then wait for that statement. `false` when it cannot be told.
    pub(crate) async fn runs_at_most(&self, statement: &str) -> bool {
        if self.only_our_unlock_in_flight() {
            return true;
        }
        let Some(pid) = self.pid.get() else {
            return false;
        };
        let Ok(client) = self.side_connection().await else {
            return false;
        };
        let row = client
            .query_opt(sql::RUNS_AT_MOST, &[pid, &statement])
            .await;
        matches!(row, Ok(Some(row)) if row.get::<_, Option<bool>>(0) == Some(true))
    }

    /// This session was opened to wait for `lock` alone, and holds it now: its pings
    /// name it (see [`Session::ping_text`]).
    pub(crate) fn holds_alone(&self, lock: &AdvisoryLock) {
        *lock_unpoisoned(&self.alone) = sql::Comment::of(lock);
    }

    /// The keepalive ping: the comment of the lock statement of the key reserved
    /// last (the innermost of nested locks sharing this session), or of the lock
    /// the session [holds alone](Session::holds_alone), so that a lock held for hours
    /// still shows its name and call site in `pg_stat_activity.query`, which a ping
    /// would otherwise blank out. Empty otherwise: a Locker's lock session holds many
    /// locks at once and takes them in batches, whose statements name no lock either.
    fn ping_text(&self) -> String {
        let reserved = self.reserved();
        let comment = reserved.iter().rev().find_map(|r| r.comment);
        let comment = comment.or_else(|| *lock_unpoisoned(&self.alone));
        comment.map(|c| c.to_string()).unwrap_or_default()
    }

    /// A new connection made as the pool makes its own (same TLS, same settings), not
    /// taken from the pool, which may be exhausted by the very waits to cancel.
    pub(crate) async fn side_connection(
        &self,
    ) -> Result<deadpool_postgres::ClientWrapper, tokio_postgres::Error> {
        self.pool.manager().create().await
    }
}

/// Sends `pg_try_advisory_lock`. Dropped unanswered, a task waits for the answer
/// and unlocks a lock granted to nobody.
fn send_try(session: Arc<Session>, lock: AdvisoryLock, statement: Statement) -> InFlight<bool> {
    let on = session.clone();
    let key = lock.key();
    let reply: Reply<bool> = Box::pin(async move {
        // Polled in this order, the pid query goes out with the try, in its round trip.
        let ((), row) = futures_util::future::join(
            on.learn_pid(),
            on.client().query_one(&statement, &sql::params(&key)),
        )
        .await;
        Ok(row?.get(0))
    });
    InFlight::new(
        reply,
        Box::new(move |reply| Box::pin(finish_abandoned_try(session, lock, reply))),
    )
}

async fn finish_abandoned_try(session: Arc<Session>, lock: AdvisoryLock, reply: Reply<bool>) {
    match reply.await {
        Ok(true) => {
            if let Err(error) = session.unlock(&lock).await {
                tracing::warn!(lock = %lock.id(), %error, "could not unlock a lock granted to an abandoned try");
            }
        }
        Ok(false) => session.discount_possible_hold(),
        // In doubt: still counted, so the session is closed, not reused; a Locker's
        // session, shared by other locks, is retired now.
        Err(error) => {
            session.retire_if_in_doubt(&Error::from_db(lock.id(), error));
        }
    }
}

impl Watched for Session {
    fn is_closed(&self) -> bool {
        self.client().is_closed()
    }

    /// An empty statement, answered in any transaction state (an error would still
    /// prove the server is there). Only a comment, it keeps the held lock's
    /// name and site in `pg_stat_activity.query` (see [`Session::ping_text`]).
    fn ping(self: Arc<Self>) -> Ping {
        Box::pin(async move {
            let text = self.ping_text();
            let _answered = self.client().simple_query(&text).await;
        })
    }

    /// Reads the state of the backend holding `probe` over a fresh connection (not
    /// from the pool, which may be exhausted).
    async fn holder_is_running_a_statement(
        &self,
        probe: Option<(LockKey, LockMode)>,
        within: Duration,
    ) -> Option<bool> {
        let (key, mode) = probe?;
        let key = sql::PgLocksKey::of(key);
        let mode = sql::pg_locks_mode(mode);
        let check = async {
            let client = match self.pool.manager().create().await {
                Ok(client) => client,
                // The server answered (a connection limit, say): it has not stopped
                // answering, and this backend's state is unknown: not a loss.
                Err(e) if e.as_db_error().is_some() => return Some(true),
                Err(_) => return None,
            };
            // By pid when known: a session reused for other locks after its queued
            // unlock may no longer hold the lock it was first watched for.
            let row = match self.pid.get() {
                Some(pid) => client.query_opt(sql::BACKEND_IS_ACTIVE, &[pid]).await,
                None => {
                    let [classid, objid, objsubid] = key.params();
                    let params = [classid, objid, objsubid, &mode];
                    client.query_opt(sql::HOLDER_IS_ACTIVE, &params).await
                }
            };
            row.ok()??.try_get::<_, Option<bool>>(0).ok()?
        };
        tokio::time::timeout(within, check).await.ok().flatten()
    }

    fn declared_lost(&self) {
        self.close_when_done();
    }

    async fn identify(self: Arc<Self>) -> Option<Backend> {
        if let Some(known) = pids::remembered_backend(self.client()) {
            return Some(known);
        }
        let row = self.client().query_one(sql::BACKEND, &[]).await.ok()?;
        let backend = Backend {
            pid: row.try_get(0).ok()?,
            started: row.try_get(1).ok()?,
        };
        pids::remember_backend(self.client(), &backend);
        Some(backend)
    }

    async fn end_backend(&self, backend: Backend) {
        let ended = async {
            let client = self.pool.manager().create().await.ok()?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] =
                [&backend.pid, &backend.started];
            client.execute(sql::END_BACKEND, &params).await.ok()
        };
        if tokio::time::timeout(Duration::from_secs(5), ended)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            tracing::warn!(
                pid = backend.pid,
                "could not end the backend of a lost session; the server ends it when the connection does"
            );
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // An unlock never read leaves its lock counted below. Its reply holds the
        // other handle on the client: let it go first.
        drop(lock_unpoisoned(&self.queued).take());
        let Some(client) = self.client.take() else {
            return;
        };
        let Ok(client) = Arc::try_unwrap(client) else {
            // Only a queued unlock shares the client, and it is gone. Were it not,
            // the connection would reach the pool when the last handle goes, so
            // this must never be reached unnoticed.
            tracing::error!("a session's client is still shared when the session ends");
            return;
        };
        if *self.maybe_held.get_mut() > 0 || *self.close_when_done.get_mut() {
            // Not known to be clean: take it out of the pool and close it. Closing the
            // connection ends the server session and so frees every lock it held.
            drop(Object::take(client));
        }
    }
}
