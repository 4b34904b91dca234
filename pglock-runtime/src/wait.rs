//! Waiting for a lock in the server's queue (`pg_advisory_lock`), cancel-safely.
//!
//! A time limit is the server's own `lock_timeout`, set for the waiting statement
//! alone: nothing is sent out of band, so the session stays fit for the queries the
//! caller runs on it next. A wait whose future is dropped is cancelled on the server
//! with a cancel request, and its session is then closed rather than reused, because
//! a cancel signal can land late, on whatever statement the session runs next.
//! Whenever the server's answer leaves it in doubt whether the lock was granted, the
//! session's own rows in `pg_locks` decide: checked, never guessed.

use std::sync::Arc;

use tokio_postgres::error::SqlState;

use crate::error::Error;
use crate::in_flight::{InFlight, Reply};
use crate::lock::AdvisoryLock;
use crate::patience::Patience;
use crate::session::Session;
use crate::sql::{self, Op};

/// Waits on `session` until the lock is granted, or until `patience` runs out (a
/// timeout reports the caller's whole limit, not what was left of it for this step).
pub(crate) async fn wait_for(
    session: &Arc<Session>,
    lock: &AdvisoryLock,
    patience: Patience,
) -> Result<(), Error> {
    let timeout = patience.remaining().and_then(sql::lock_timeout);
    let op = if timeout.is_some() {
        Op::WaitLimited
    } else {
        Op::Wait
    };
    let limited = timeout.is_some();
    let statement = session.lock_statement(op, lock).await?;
    let wait = send(session.clone(), lock.clone(), statement, timeout);
    match wait.answer().await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) && limited => {
            // PostgreSQL can grant the lock and still raise lock_timeout for the
            // same statement: the session's rows in pg_locks say which it was.
            if settle(session, lock).await? {
                Ok(())
            } else {
                Err(patience.timed_out(lock, Some(e)))
            }
        }
        Err(e) => {
            if refused(&e) {
                session.discount_possible_hold();
            }
            Err(Error::from_db(lock.id(), e))
        }
    }
}

/// Sends `pg_advisory_lock` (with `timeout` as its `lock_timeout`, if any). Counted
/// as a possible hold from now on; dropped unanswered, the wait is cancelled and a
/// lock it got anyway is given back.
fn send(
    session: Arc<Session>,
    lock: AdvisoryLock,
    statement: tokio_postgres::Statement,
    timeout: Option<String>,
) -> InFlight<u64> {
    session.count_possible_hold();
    let on = session.clone();
    let key = lock.key();
    let reply: Reply<u64> = Box::pin(async move {
        let mut params = sql::params(&key);
        if let Some(timeout) = &timeout {
            params.push(timeout);
        }
        on.client().execute(&statement, &params).await
    });
    InFlight::new(
        reply,
        Box::new(move |reply| {
            // Whatever happens next, this session was (or is about to be) sent a cancel.
            session.close_when_done();
            Box::pin(cancel_abandoned(session, lock, reply))
        }),
    )
}

/// Cancels a wait nobody waits for any more, and gives back a lock it got anyway.
async fn cancel_abandoned(session: Arc<Session>, lock: AdvisoryLock, reply: Reply<u64>) {
    if session.cancel_running().await.is_err() {
        return; // still counted: the connection will be closed
    }
    let granted = match reply.await {
        Ok(_) => true,
        Err(e) if refused(&e) => {
            session.discount_possible_hold();
            false
        }
        Err(_) => settle(&session, &lock).await.unwrap_or(true),
    };
    if granted {
        if let Err(error) = session.unlock(&lock).await {
            tracing::warn!(lock = %lock.id(), %error, "could not unlock a lock granted to an abandoned wait; the connection is closed instead");
        }
    }
}

/// Errors that mean the server refused the wait, so nothing was granted.
fn refused(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED)
}

/// Was the lock granted after all? `true`: it is held, and still counted on the
/// session. `false`: not held, no longer counted.
async fn settle(session: &Session, lock: &AdvisoryLock) -> Result<bool, Error> {
    // Tried twice: a late cancel signal can hit the first query after it.
    let held = match session.held_count(lock).await {
        Ok(n) => n,
        Err(_) => session.held_count(lock).await?,
    };
    if held > 0 {
        Ok(true)
    } else {
        session.discount_possible_hold();
        Ok(false)
    }
}
