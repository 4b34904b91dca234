//! A session's queued unlock: sent the moment its guard was dropped, its reply read
//! later by whoever uses the session next, together with that caller's own
//! statement (pipelined: both answered in one round trip), or by the release
//! reaper when nobody came. Reading the reply is what confirms the session holds
//! nothing more, so until then the session still counts the lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use deadpool_postgres::Object;

use crate::lock::AdvisoryLock;
use crate::sql::{self, Op};

/// What the server said to `pg_advisory_unlock`: whether the lock was held.
pub(crate) type Answer = Result<bool, tokio_postgres::Error>;

type Reply = Pin<Box<dyn Future<Output = Answer> + Send>>;

/// An unlock on the wire, and its answer once polling found it.
pub(crate) struct QueuedUnlock {
    lock: AdvisoryLock,
    reply: Reply,
    answer: Option<Answer>,
}

impl QueuedUnlock {
    /// Sends the unlock of `lock` on `client` before returning: the statement was
    /// prepared with the lock, so the first poll finds it in the connection's cache
    /// and puts the request on the connection.
    pub(crate) fn send(client: Arc<Object>, lock: &AdvisoryLock) -> Self {
        let text = sql::statement(Op::Unlock, lock);
        let key = lock.key();
        let reply: Reply = Box::pin(async move {
            let statement = client.prepare_cached(&text).await?;
            let row = client.query_one(&statement, &sql::params(&key)).await?;
            row.try_get::<_, bool>(0)
        });
        let mut queued = QueuedUnlock {
            lock: lock.clone(),
            reply,
            answer: None,
        };
        queued.is_answered();
        queued
    }

    /// Whether the server's answer is in, looking without waiting. An answered
    /// unlock means every statement sent on the session before it was answered too.
    pub(crate) fn is_answered(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_answered(&mut cx).is_ready()
    }

    /// Ready once the server's answer is in (kept, for [`QueuedUnlock::answer`]).
    pub(crate) fn poll_answered(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.answer.is_none() {
            if let Poll::Ready(answer) = self.reply.as_mut().poll(cx) {
                self.answer = Some(answer);
            }
        }
        if self.answer.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The lock it unlocks.
    pub(crate) fn lock(&self) -> &AdvisoryLock {
        &self.lock
    }

    /// The server's answer (awaited if it has not come yet).
    pub(crate) async fn answer(mut self) -> Answer {
        match self.answer.take() {
            Some(answer) => answer,
            None => self.reply.await,
        }
    }
}
