//! `Session`: a pooled connection that holds session-level advisory locks, and the
//! one rule that keeps the pool clean: the connection goes back to the pool only when
//! we know it holds no lock; otherwise it is closed, which frees everything it held.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use tokio_postgres::Statement;

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::loss::LossWatch;
use crate::pending;
use crate::sql::{self, Op};

/// A connection taken from the pool for locks. Shared (`Arc`) by every guard whose
/// lock lives on it and by any task still finishing an unlock on it.
pub(crate) struct Session {
    client: Option<Object>,
    pool_id: usize,
    /// Locks this session may hold: counted up before a lock statement is sent and
    /// down only once the server confirmed it holds nothing for that request.
    maybe_held: AtomicUsize,
    /// Set once a cancel request was sent for this session: a cancel signal may land
    /// on any later statement, so the connection is closed instead of reused.
    close_when_done: AtomicBool,
    loss: LossWatch,
}

impl Session {
    pub(crate) async fn checkout(pool: &Pool, lock: &AdvisoryLock) -> Result<Arc<Session>, Error> {
        let client = pool.get().await.map_err(|source| Error::Pool {
            lock: lock.id().clone(),
            source,
        })?;
        Ok(Arc::new(Session {
            client: Some(client),
            pool_id: crate::source::pool_id(pool),
            maybe_held: AtomicUsize::new(0),
            close_when_done: AtomicBool::new(false),
            loss: LossWatch::default(),
        }))
    }

    pub(crate) fn client(&self) -> &Object {
        self.client
            .as_ref()
            .expect("a session has its client until it is dropped")
    }

    /// The pool this session came from.
    pub(crate) fn pool_id(&self) -> usize {
        self.pool_id
    }

    /// Fit to take another lock: alive, and not marked for closing.
    pub(crate) fn is_reusable(&self) -> bool {
        !self.is_lost() && !self.close_when_done.load(Ordering::Acquire)
    }

    pub(crate) fn loss(self: &Arc<Self>) -> &LossWatch {
        self.loss.watch(self);
        &self.loss
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.loss.is_lost() || self.client().is_closed()
    }

    pub(crate) fn close_when_done(&self) {
        self.close_when_done.store(true, Ordering::Release);
    }

    pub(crate) fn prepare_counted(&self) {
        self.maybe_held.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn settle_counted(&self) {
        self.maybe_held.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) async fn statement(&self, op: Op, lock: &AdvisoryLock) -> Result<Statement, Error> {
        self.client()
            .prepare_cached(&sql::statement(op, lock))
            .await
            .map_err(|e| Error::from_db(lock.id(), e))
    }

    /// `pg_try_advisory_lock`: `Ok(true)` when granted.
    pub(crate) async fn try_lock(&self, lock: &AdvisoryLock) -> Result<bool, Error> {
        let statement = self.statement(Op::Try, lock).await?;
        self.prepare_counted();
        let row = self
            .client()
            .query_one(&statement, &sql::params(&lock.key()))
            .await
            .map_err(|e| Error::from_db(lock.id(), e))?;
        let granted: bool = row.get(0);
        if !granted {
            self.settle_counted();
        }
        Ok(granted)
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
            self.settle_counted();
            Ok(())
        } else {
            Err(Error::LockLost {
                lock: lock.id().clone(),
            })
        }
    }

    /// How many times this session holds `lock`, from `pg_locks`.
    pub(crate) async fn held_count(&self, lock: &AdvisoryLock) -> Result<i64, Error> {
        let (classid, objid, objsubid) = sql::pg_locks_columns(lock.key());
        let mode = sql::pg_locks_mode(lock.mode());
        let row = self
            .client()
            .query_one(sql::HELD_BY_ME, &[&classid, &objid, &objsubid, &mode])
            .await
            .map_err(|e| Error::from_db(lock.id(), e))?;
        Ok(row.get(0))
    }

    /// Sends a cancel request for whatever the session's backend is running now.
    pub(crate) async fn cancel_running(&self) -> Result<(), tokio_postgres::Error> {
        self.client()
            .cancel_token()
            .cancel_query(tokio_postgres::NoTls)
            .await
    }

    /// Unlocks without making the caller wait: the request is queued on the
    /// connection before this returns (so anything sent on the session afterwards
    /// runs after it), and its reply is awaited by a task that then lets the session
    /// go. A failed unlock is logged; the session then closes instead of going back.
    pub(crate) fn unlock_in_background(self: Arc<Self>, lock: AdvisoryLock) {
        let ticket = pending::queued(&self, lock.key());
        let mut unlock = Box::pin(async move {
            if let Err(error) = self.unlock(&lock).await {
                tracing::warn!(lock = %lock.id(), %error, "unlock failed; closing the session");
            }
            pending::finished(&self, lock.key(), ticket);
        });
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if unlock.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(unlock);
            }
            // No runtime to finish on: dropping the future drops the session, which
            // still counts the lock, so the connection is closed and the server frees it.
            Err(_) => drop(unlock),
        }
    }
}

use std::future::Future as _;

impl Drop for Session {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if *self.maybe_held.get_mut() > 0 || *self.close_when_done.get_mut() {
            // Not known to be clean: take it out of the pool and close it. Closing the
            // connection ends the server session and so frees every lock it held.
            drop(Object::take(client));
        }
    }
}
