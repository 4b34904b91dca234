//! A try from a pool, answered within its own round trip even when the session it
//! reuses does not answer.
//!
//! A session kept by our last release of the key is reused so that our own unlock,
//! still on its way, is never taken for someone else's hold: the try is sent behind
//! it and both are answered in one round trip. But a backend that stops answering
//! (stopped, swapped out, stuck) would hold the try for as long as it does. So the
//! answer there is awaited for [`OWN_ANSWER_GRACE`]; past that, a fresh session
//! asks the server too and the first answer wins. The server's view is then the
//! truth: a backend that has not run our unlock still holds the key, so `Busy` is
//! right. The try left on the silent session is abandoned as any dropped try is (a
//! lock it is granted later is given back, and the session, its unlock unread, is
//! closed rather than pooled); whether that session is lost is the loss watch's
//! business, not the try's.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::Chosen;
use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::patience::Patience;
use crate::session::Reserved;

/// How long a try waits for its answer on a reused session before a fresh session
/// asks the server too: a few round trips on a loaded host. A shorter grace costs
/// nothing wrong, only a connection now and then: the reused session's answer, if
/// it comes while the fresh one connects, still wins.
pub(super) const OWN_ANSWER_GRACE: Duration = Duration::from_millis(250);

/// Tries `lock` on the chosen session: the session, still reserved, when granted;
/// `None` when the key is held elsewhere.
pub(super) async fn answer(
    pool: &Pool,
    chosen: Chosen,
    lock: &AdvisoryLock,
) -> Result<Option<Reserved>, Error> {
    let reserved = match chosen {
        Chosen::Own(reserved) => return try_on(reserved, lock).await,
        Chosen::Reused(reserved) => reserved,
    };
    let mut reused = Box::pin(try_on(reserved, lock));
    if let Ok(answer) = tokio::time::timeout(OWN_ANSWER_GRACE, reused.as_mut()).await {
        return answer;
    }
    tracing::debug!(lock = %lock.id(), "a reused session has not answered a try; asking on a fresh one");
    tokio::select! {
        biased;
        answer = reused.as_mut() => answer,
        answer = try_fresh(pool, lock) => match answer {
            // No free connection to ask on (a pool of one, say): the reused session
            // is the only one that can answer, for as long as a silent server is
            // tolerated on it at all.
            Err(error @ Error::Pool { .. }) => {
                let bound = lock.keepalive_bound();
                tokio::time::timeout(bound, reused).await.unwrap_or(Err(error))
            }
            answer => answer,
        },
    }
}

async fn try_fresh(pool: &Pool, lock: &AdvisoryLock) -> Result<Option<Reserved>, Error> {
    try_on(super::fresh_session(pool, lock, Patience::Try).await?, lock).await
}

async fn try_on(reserved: Reserved, lock: &AdvisoryLock) -> Result<Option<Reserved>, Error> {
    let granted = reserved.session().try_lock(lock).await?;
    Ok(granted.then_some(reserved))
}
