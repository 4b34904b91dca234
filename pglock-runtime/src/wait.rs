//! Waiting for a lock in the server's queue (`pg_advisory_lock`), cancel-safely.
//!
//! A time limit is the server's own `lock_timeout`, set for the waiting statement
//! alone, and the client stops waiting for the answer shortly after the deadline
//! too (the statement may sit behind another one on the session, where
//! `lock_timeout` has not started).
//!
//! A wait whose future is dropped is cancelled with `pg_cancel_backend(pid)` over a
//! new connection that the pool's manager makes (so with the pool's own TLS: a cancel
//! request needs the TLS connector, which a `Pool` does not give out, and sent
//! without TLS it is refused by a TLS-only server). The check that the backend is
//! running *this* wait, blocked on a lock, is part of the cancelling statement, so a
//! nested wait sharing its session with the body's own queries never cancels them.
//! The pid is asked once per session, pipelined with its first wait: no extra round
//! trip, one extra small message; cancelling costs a new connection (a TLS handshake
//! on TLS pools), paid only when a wait is abandoned. The session is then closed
//! rather than reused, as a signal can still race with the wait's grant.
//! Whenever the server's answer leaves it in doubt whether the lock was granted, the
//! session's own rows in `pg_locks` decide: checked, never guessed.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

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
    // Everything, preparing the statement included, may queue behind another
    // statement on the session, where the server's lock_timeout has not started.
    // Dropped at the limit, a wait already sent is cancelled once it runs.
    // Boxed: nested acquisitions stack these futures inside one another.
    wait_noted(session, lock, patience, None).await
}

/// [`wait_for`], with `note` (a complete SQL comment) at the end of the waiting
/// statement, where `pg_stat_activity.query` shows it to every session while the
/// wait lasts. Notes vary, so such a text is sent unnamed, never prepared or cached.
pub(crate) async fn wait_noted(
    session: &Arc<Session>,
    lock: &AdvisoryLock,
    patience: Patience,
    note: Option<&str>,
) -> Result<(), Error> {
    // A queued unlock on the session is read meanwhile: answered just before the
    // wait, in its round trip.
    let wait = futures_util::future::join(
        session.read_queued_unlock(),
        wait_in_queue(session, lock, patience, note),
    );
    within_the_limit(patience, Box::pin(wait))
        .await
        .map_or_else(
            |_elapsed| Err(patience.timed_out(lock, None)),
            |((), waited)| waited,
        )
}

async fn wait_in_queue(
    session: &Arc<Session>,
    lock: &AdvisoryLock,
    patience: Patience,
    note: Option<&str>,
) -> Result<(), Error> {
    let timeout = patience.remaining().and_then(sql::lock_timeout);
    let op = if timeout.is_some() {
        Op::WaitLimited
    } else {
        Op::Wait
    };
    let limited = timeout.is_some();
    let mut text = sql::statement(op, lock);
    let statement = match note {
        None => WaitStatement::Cached(session.lock_statement(op, lock).await?),
        Some(note) => {
            text = Cow::Owned(format!("{text} {note}"));
            WaitStatement::Noted(text.to_string())
        }
    };
    let wait = send(session.clone(), lock.clone(), statement, timeout, text);
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

/// How long past the caller's deadline the server's own `lock_timeout` answer is
/// awaited before the client gives up on it: about one round trip on a loaded host.
const ANSWER_GRACE: Duration = Duration::from_millis(100);

/// Awaits `answer` until the caller's deadline plus [`ANSWER_GRACE`]: the server's
/// `lock_timeout` counts only the time spent waiting for the lock, not the time the
/// statement spends queued behind others on the session.
async fn within_the_limit<T>(
    patience: Patience,
    answer: impl std::future::Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    match patience {
        Patience::Until { deadline, .. } => {
            let limit = deadline.checked_add(ANSWER_GRACE).unwrap_or(deadline);
            tokio::time::timeout_at(limit, answer).await
        }
        Patience::Try | Patience::Forever => Ok(answer.await),
    }
}

/// Sends `pg_advisory_lock` (with `timeout` as its `lock_timeout`, if any), with the
/// session's pid query before it in the same round trip the first time. Counted as a
/// possible hold from now on; dropped unanswered, the wait is cancelled and a lock
/// it got anyway is given back.
fn send(
    session: Arc<Session>,
    lock: AdvisoryLock,
    statement: WaitStatement,
    timeout: Option<String>,
    text: Cow<'static, str>,
) -> InFlight<u64> {
    session.count_possible_hold();
    let on = session.clone();
    let waited = lock.clone();
    let reply: Reply<u64> = Box::pin(async move {
        // Polled in this order, the pid query goes out before the wait.
        let ((), answer) = futures_util::future::join(
            on.learn_pid(),
            execute(&on, &waited, &statement, timeout.as_ref()),
        )
        .await;
        answer
    });
    InFlight::new(
        reply,
        Box::new(move |reply| {
            // Whatever happens next, this session was (or is about to be) sent a cancel.
            session.close_when_done();
            Box::pin(cancel_abandoned(session, lock, reply, text))
        }),
    )
}

/// The statement a wait runs: the session's cached one, or a text of this wait's
/// own (ending with a note), which would be prepared for one use only.
enum WaitStatement {
    Cached(tokio_postgres::Statement),
    Noted(String),
}

/// Runs the waiting statement. A noted one goes unnamed, with its parameters'
/// types, so parse, bind and execute travel together and no prepare round trip is
/// paid for a statement used once; the lock's unlock is prepared in that same round
/// trip, as a cached wait statement would have had it.
async fn execute(
    on: &Session,
    lock: &AdvisoryLock,
    statement: &WaitStatement,
    timeout: Option<&String>,
) -> Result<u64, tokio_postgres::Error> {
    let key = lock.key();
    match statement {
        WaitStatement::Cached(statement) => {
            let mut params = sql::params(&key);
            params.extend(timeout.map(|t| t as &(dyn ToSql + Sync)));
            on.client().execute(statement, &params).await
        }
        WaitStatement::Noted(text) => {
            let mut params = sql::typed_params(&key);
            params.extend(timeout.map(|t| (t as &(dyn ToSql + Sync), Type::TEXT)));
            let unlock = sql::statement(Op::Unlock, lock);
            let (unlock, rows) = futures_util::future::join(
                on.client().prepare_cached(&unlock),
                on.client().query_typed(text, &params),
            )
            .await;
            unlock?;
            Ok(rows?.len() as u64)
        }
    }
}

/// Cancels a wait nobody waits for any more, and gives back a lock it got anyway.
async fn cancel_abandoned(
    session: Arc<Session>,
    lock: AdvisoryLock,
    mut reply: Reply<u64>,
    text: Cow<'static, str>,
) {
    tokio::select! {
        answer = &mut reply => return give_back(&session, &lock, answer).await,
        () = cancel_when_waiting(&session, &text) => {}
    }
    give_back(&session, &lock, reply.await).await;
}

/// Cancels the session's wait once its backend is seen waiting in it, over a
/// connection of its own made as the pool makes its connections (so with the pool's
/// TLS; a cancel request would need the pool's connector, which a `Pool` does not
/// give out). The server tells no one when a backend starts waiting, so until then
/// (the wait may be queued behind other statements of the session, a body's own
/// query for a nested lock) it looks again after a growing pause; it never signals
/// the backend while it runs anything else.
async fn cancel_when_waiting(session: &Session, text: &str) {
    let pid = session.known_pid().await;
    let mut pause = Duration::from_millis(5);
    let mut warned = false;
    loop {
        match cancel_if_waiting(session, pid, text).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(%error, pid, "could not cancel an abandoned wait yet; trying again");
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

async fn cancel_if_waiting(
    session: &Session,
    pid: i32,
    text: &str,
) -> Result<bool, tokio_postgres::Error> {
    let client = session.side_connection().await?;
    let rows = client.query(sql::CANCEL_IF_WAITING, &[&pid, &text]).await?;
    Ok(!rows.is_empty())
}

/// After an abandoned wait's answer: unlocks a lock it was granted.
async fn give_back(
    session: &Session,
    lock: &AdvisoryLock,
    answer: Result<u64, tokio_postgres::Error>,
) {
    let granted = match answer {
        Ok(_) => true,
        Err(e) if refused(&e) => {
            session.discount_possible_hold();
            false
        }
        Err(_) => settle(session, lock).await.unwrap_or(true),
    };
    if granted {
        if let Err(error) = session.unlock(lock).await {
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
