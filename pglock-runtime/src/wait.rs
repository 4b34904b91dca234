//! Waiting for a lock in the server's queue (`pg_advisory_lock`), cancel-safely: a
//! wait that is given up — its future dropped, or its time limit reached — is
//! cancelled on the server, and what the server really did is then checked, so that
//! no session is left holding or waiting for a lock nobody owns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::session::Session;
use crate::sql::{self, Op};

type Reply = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send>>;

/// Waits on `session` until the lock is granted, or for at most `limit`.
pub(crate) async fn wait_for(
    session: &Arc<Session>,
    lock: &AdvisoryLock,
    limit: Option<Duration>,
) -> Result<(), Error> {
    let statement = session.statement(Op::Wait, lock).await?;
    let mut wait = InFlight::send(session.clone(), lock.clone(), statement);
    let reply = match limit {
        None => wait.reply().await,
        Some(limit) => match tokio::time::timeout(limit, wait.reply()).await {
            Ok(reply) => reply,
            Err(_elapsed) => return wait.give_up(limit).await,
        },
    };
    reply.map(drop).map_err(|e| Error::from_db(lock.id(), e))
}

/// A `pg_advisory_lock` sent and not yet answered. Dropped unanswered, it hands
/// itself to a task that cancels it and cleans up.
struct InFlight {
    session: Arc<Session>,
    lock: AdvisoryLock,
    reply: Option<Reply>,
}

impl InFlight {
    fn send(
        session: Arc<Session>,
        lock: AdvisoryLock,
        statement: tokio_postgres::Statement,
    ) -> Self {
        session.prepare_counted();
        let on = session.clone();
        let key = lock.key();
        let reply: Reply =
            Box::pin(async move { on.client().execute(&statement, &sql::params(&key)).await });
        InFlight {
            session,
            lock,
            reply: Some(reply),
        }
    }

    /// The server's answer. A granted lock stays counted on the session; an error
    /// means nothing was granted (the session is then not trusted: it stays counted
    /// only if the error leaves that in doubt).
    async fn reply(&mut self) -> Result<u64, tokio_postgres::Error> {
        let reply = self.reply.as_mut().expect("reply awaited once").await;
        self.reply = None;
        if reply.as_ref().is_err_and(refused) {
            self.session.settle_counted();
        }
        reply
    }

    /// Time is up: cancel the wait, then find out whether the lock was granted after
    /// all. Granted means success, never a timeout.
    async fn give_up(mut self, limit: Duration) -> Result<(), Error> {
        let id = self.lock.id().clone();
        if let Err(source) = self.session.cancel_running().await {
            // Cannot cancel: the connection stays counted and is closed when dropped.
            return Err(Error::Disconnected { lock: id, source });
        }
        let reply = self.reply.take().expect("still waiting").await;
        match settle(&self.session, &self.lock, reply).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Timeout {
                lock: id,
                after: Some(limit),
                source: None,
            }),
            Err(e) => Err(e),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        let session = self.session.clone();
        let lock = self.lock.clone();
        let cleanup = async move {
            if session.cancel_running().await.is_err() {
                return; // still counted: the connection will be closed
            }
            let reply = reply.await;
            if let Ok(true) = settle(&session, &lock, reply).await {
                if let Err(error) = session.unlock(&lock).await {
                    tracing::warn!(lock = %lock.id(), %error, "could not unlock a lock granted to an abandoned wait; closing the session");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(cleanup);
            }
            // No runtime: the session stays counted, so its connection is closed
            // rather than returned to the pool.
            Err(_) => drop(cleanup),
        }
    }
}

/// Errors that mean the server refused the wait, so nothing was granted. Any other
/// error (a cancel, a broken connection) leaves the lock in doubt, and the session
/// stays counted: it is closed rather than returned to the pool.
fn refused(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        error.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::LOCK_NOT_AVAILABLE)
    )
}

/// After a cancel: was the lock granted? `Ok(true)`: granted, and still counted on the
/// session. `Ok(false)`: not granted, no longer counted. A query cancelled just after
/// the grant may report an error although the lock is held, so errors are checked in
/// `pg_locks`, never guessed.
async fn settle(
    session: &Session,
    lock: &AdvisoryLock,
    reply: Result<u64, tokio_postgres::Error>,
) -> Result<bool, Error> {
    if reply.is_ok() {
        return Ok(true);
    }
    // Tried twice: a late cancel signal can only hit the first query after it.
    let held = match session.held_count(lock).await {
        Ok(n) => n,
        Err(_) => session.held_count(lock).await?,
    };
    if held > 0 {
        Ok(true)
    } else {
        session.settle_counted();
        Ok(false)
    }
}
