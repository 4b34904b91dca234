//! Fencing tokens: a number, taken on the session that holds a lock right after the
//! grant, that is strictly greater than the token of every earlier holder of any key
//! on the same server, without a table or any other DDL.
//!
//! # What the token is
//!
//! The 64-bit id (`xid8`, epoch included, so it never wraps) of a transaction that
//! commits durably on the session holding the lock, while it holds it. One statement,
//! in an implicit transaction of its own:
//!
//! ```sql
//! SELECT CASE WHEN now() = statement_timestamp() THEN
//!     (SELECT pg_current_xact_id()::text FROM
//!         (SELECT set_config('synchronous_commit', 'on', true),
//!                 pg_logical_emit_message(true, 'pglock', 'fence')) AS durable)
//! END
//! ```
//!
//! (every function schema-qualified in the real text).
//!
//! - **Order.** PostgreSQL assigns transaction ids in increasing order. Holder A takes
//!   its token after its grant and before its release (on the session that holds the
//!   lock: if that session died meanwhile the statement fails and A gets no token);
//!   holder B is granted after A's release or loss, and takes its token after that:
//!   so B's is greater.
//! - **Crash and restart.** After a crash, the server continues past the greatest
//!   transaction id it finds in the write-ahead log it recovers. A transaction that
//!   writes no WAL of its own has its commit record written *asynchronously* even with
//!   `synchronous_commit = on` (PostgreSQL skips the flush for transactions that
//!   changed nothing), so an id handed out that way can be handed out again after an
//!   immediate shutdown: measured, and tested (`tests/fence.rs`, the control). The
//!   one-byte logical message (`pg_logical_emit_message`, allowed for every role,
//!   nothing to create) makes the transaction write WAL, and `synchronous_commit = on`
//!   for this transaction alone makes its commit wait until that WAL is flushed: the
//!   token is returned only once it is durable.
//! - **An open transaction.** The statement is refused (`Error::Fence`) when it would
//!   run inside a transaction the caller left open on the session (possible only for a
//!   lock nested in another's body on a shared session): its id would become durable
//!   only if the caller committed. Sent as a simple query, `now() =
//!   statement_timestamp()` holds exactly when the statement started its own
//!   transaction; in an open block, `now()` is when the block began, a round trip or
//!   more earlier (equal only if the clock read the same microsecond twice across a
//!   round trip).
//!
//! # What it relies on, and what breaks it
//!
//! - **The primary.** A standby cannot assign transaction ids (the statement fails).
//!   After a failover the new primary continues from the WAL it received: tokens stay
//!   increasing only with synchronous replication (`synchronous_standby_names`; the
//!   `synchronous_commit = on` above then also waits for the standby). With
//!   asynchronous replication a promoted standby may hand out ids again.
//! - **Durable storage.** With `fsync = off` (the test clusters run so) a server
//!   crash keeps the WAL in the OS's cache and the tokens survive; an OS crash or
//!   power loss may not.
//! - **The cluster's history.** `pg_resetwal` (its `-x`/`-e` options, or a guessed
//!   next id) can move the counter backwards, and a dump restored into a new cluster
//!   starts a new counter: tokens compared across such an event are meaningless.
//!   `pg_upgrade` keeps the counter.
//! - **Cost.** One more round trip after the grant, a WAL record of ~60 bytes and a
//!   WAL flush (an `fsync` on a durable server), and one transaction id consumed: see
//!   the README for measured numbers.

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::session::Session;

/// A guard whose lock may carry a token (both guard types): what
/// [`take_if_fenced`] needs of it.
pub(crate) trait Fenceable {
    /// The session holding the lock, the lock, and where its token goes.
    fn fence_parts(&mut self) -> (&Session, &AdvisoryLock, &mut Option<u64>);
}

/// Takes the token of a lock taken `fenced()`, on the session that holds it; a lock
/// taken otherwise needs none. On error the caller drops the guard, so no lock is
/// kept without its token.
pub(crate) async fn take_if_fenced(guard: &mut impl Fenceable) -> Result<(), Error> {
    let (session, lock, slot) = guard.fence_parts();
    if lock.is_fenced() {
        *slot = Some(take(session.client(), lock).await?);
    }
    Ok(())
}

/// The statement that takes a token: NULL inside an open transaction.
pub(crate) const TAKE: &str =
    "SELECT CASE WHEN pg_catalog.now() OPERATOR(pg_catalog.=) pg_catalog.statement_timestamp() THEN \
     (SELECT pg_catalog.pg_current_xact_id()::pg_catalog.text FROM \
     (SELECT pg_catalog.set_config('synchronous_commit', 'on', true), \
     pg_catalog.pg_logical_emit_message(true, 'pglock', 'fence')) AS durable) END";

/// Takes a fencing token for `lock` on `client`, the session that holds it. Sent as a
/// simple query: that protocol starts the statement's transaction with the
/// statement's own timestamp, which is what tells an open transaction apart (the
/// extended protocol stamps Bind and Execute apart, so the two always differ there).
pub(crate) async fn take(
    client: &tokio_postgres::Client,
    lock: &AdvisoryLock,
) -> Result<u64, Error> {
    let messages = client
        .simple_query(TAKE)
        .await
        .map_err(|e| Error::from_db(lock.id(), e))?;
    let answer = messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => Some(row.get(0)),
        _ => None,
    });
    match answer {
        Some(value) => parse(value, lock),
        None => Err(Error::Fence {
            lock: lock.id().clone(),
            reason: "the server returned no row",
        }),
    }
}

/// The token from the statement's answer.
fn parse(answer: Option<&str>, lock: &AdvisoryLock) -> Result<u64, Error> {
    let refused = |reason| Error::Fence {
        lock: lock.id().clone(),
        reason,
    };
    let text = answer.ok_or_else(|| {
        refused("the lock's session is inside an open transaction, whose id is not durable")
    })?;
    text.parse()
        .map_err(|_| refused("the server answered something that is not a transaction id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_id_is_a_token() {
        let lock = AdvisoryLock::new("leader");
        assert_eq!(
            parse(Some("18446744073709551615"), &lock).unwrap(),
            u64::MAX
        );
        assert_eq!(parse(Some("731"), &lock).unwrap(), 731);
    }

    #[test]
    fn anything_else_is_a_named_error() {
        let lock = AdvisoryLock::new("leader");
        for answer in [None, Some(""), Some("-1"), Some("12:34")] {
            let error = parse(answer, &lock).unwrap_err();
            assert!(matches!(error, Error::Fence { .. }), "{answer:?}: {error}");
            assert!(error.to_string().contains("`leader`"), "{error}");
        }
    }
}
