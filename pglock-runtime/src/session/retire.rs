//! Ending the backend of a lock session in doubt (see
//! [`Session::retire_if_in_doubt`](super::Session::retire_if_in_doubt)), on the
//! session itself.

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::sql::END_OWN_BACKEND;

/// How many times the ending statement is sent again when it is itself cancelled.
const END_ATTEMPTS: u32 = 5;

/// Ends the backend behind `client`; a failure is logged, and the session then
/// closes when its guards let go.
pub(super) async fn end_own_backend(client: &Client) {
    for _ in 0..END_ATTEMPTS {
        match client.simple_query(END_OWN_BACKEND).await {
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
