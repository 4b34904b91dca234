//! `InFlight`: a statement sent and not answered yet. Its caller may give up (its
//! future dropped) before the answer comes; the answer must still be read, and a
//! lock it granted to nobody given back. Dropped unanswered, an `InFlight` hands
//! its reply to a background task that does that.

use std::future::Future;
use std::pin::Pin;

use crate::drop_guard::DropGuard;
use crate::spawn::spawn_or_drop;

/// The server's answer to a statement, still to come.
pub(crate) type Reply<T> = Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send>>;

/// What to do with an answer nobody waits for any more.
pub(crate) type Abandoned<T> = Box<dyn FnOnce(Reply<T>) -> Cleanup + Send>;

/// The cleanup of an abandoned statement.
pub(crate) type Cleanup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A statement on its way: `answer` awaits it; dropped first, `abandoned` runs in
/// the background (or, with no runtime, is dropped: then the session stays counted
/// as holding the lock, so its connection is closed rather than reused).
pub(crate) struct InFlight<T: 'static> {
    reply: DropGuard<(Reply<T>, Abandoned<T>)>,
}

impl<T: 'static> InFlight<T> {
    pub(crate) fn new(reply: Reply<T>, abandoned: Abandoned<T>) -> Self {
        InFlight {
            reply: DropGuard::new((reply, abandoned), |(reply, abandoned)| {
                spawn_or_drop(abandoned(reply));
            }),
        }
    }

    /// The server's answer. Cancel-safe: dropped before it completes, the reply is
    /// handed to the cleanup.
    pub(crate) async fn answer(mut self) -> Result<T, tokio_postgres::Error> {
        let answer = (&mut self.reply.get_mut().0).await;
        // Answered: nothing is left to clean up.
        drop(self.reply.disarm());
        answer
    }
}
