//! Lock sessions in doubt. A try answered with an error that may have come after the
//! grant (a cancel, a `statement_timeout`), or an unlock that failed, leaves it
//! unknown whether the session holds a key the table now takes for free. Such a
//! session is retired: declared lost (every guard on it reports lost, and the table
//! forgets its keys), kept from taking new locks, and its backend ended, which frees
//! every lock it held; the next acquisition opens a new session.

use std::sync::Arc;

use tokio_postgres::error::SqlState;

use crate::error::Error;
use crate::lock::DEFAULT_KEEPALIVE;
use crate::loss::Watch;
use crate::scope::Scope;
use crate::session::Session;
use crate::spawn::spawn_or_drop;

/// Ends the backend of the session it runs on. Sent on the session itself: no other
/// connection (and no pid) is needed, and it runs after every request already queued.
const END_OWN_BACKEND: &str = "SELECT pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid())";

/// How many times the ending statement is sent again when it is itself cancelled.
const END_ATTEMPTS: u32 = 5;

/// Whether a lock statement's `error` leaves it unknown what the session holds: a
/// cancelled statement may have been granted first; an answer that never came says
/// nothing. A server that refused the statement (or said the lock was not held)
/// leaves no doubt.
pub(crate) fn leaves_doubt(error: &Error) -> bool {
    match error {
        Error::Db { source, .. } | Error::Disconnected { source, .. } => {
            source.as_db_error().is_none() || source.code() == Some(&SqlState::QUERY_CANCELED)
        }
        _ => false,
    }
}

/// Retires `session` if it is a Locker's (a pool's session is closed when its last
/// guard lets go, which frees what it holds).
pub(crate) fn retire_lock_session(session: &Arc<Session>) {
    if !matches!(session.scope(), Scope::Locker(_)) {
        return;
    }
    tracing::warn!("a lock session is in doubt about the locks it holds; closing it");
    session.close_when_done();
    // Locker sessions are watched from their checkout on, so `how` is not used.
    let how = Watch {
        keepalive: DEFAULT_KEEPALIVE,
        probe: None,
    };
    session.watch_for_loss(how).token().cancel();
    spawn_or_drop(end_backend(session.clone()));
}

async fn end_backend(session: Arc<Session>) {
    for _ in 0..END_ATTEMPTS {
        match session.client().simple_query(END_OWN_BACKEND).await {
            // Cancelled before it ran (by the same cause as the doubt): again.
            Err(error) if error.code() == Some(&SqlState::QUERY_CANCELED) => continue,
            Err(error)
                if error.as_db_error().is_some()
                    && error.code() != Some(&SqlState::ADMIN_SHUTDOWN) =>
            {
                tracing::warn!(%error, "could not end a lock session in doubt; it closes when its guards let go");
                return;
            }
            // Ended: the server's goodbye, or the connection closed.
            Ok(_) | Err(_) => return,
        }
    }
    tracing::warn!(
        "a lock session in doubt kept cancelling its ending; it closes when its guards let go"
    );
}
