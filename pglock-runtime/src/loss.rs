//! Loss detection: notices that the session holding a lock is gone and fires a
//! token every guard on it can await.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::session::Session;

/// How often a watched session's connection is checked. The check is an in-process
/// flag read (no server round trip), so it is cheap enough to run often; it bounds
/// how late a closed connection is noticed.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The loss signal of one session. The watcher task starts on first use of
/// [`LossWatch::watch`], so sessions nobody watches cost nothing.
#[derive(Default)]
pub(crate) struct LossWatch {
    lost: CancellationToken,
    /// Fires when the watched session is dropped (so followers of `lost` can stop).
    retired: CancellationToken,
    started: OnceLock<()>,
}

impl LossWatch {
    pub(crate) fn watch(&self, session: &Arc<Session>) {
        self.started.get_or_init(|| {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(watch(
                    Arc::downgrade(session),
                    self.lost.clone(),
                    self.retired.clone(),
                ));
            }
        });
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    pub(crate) fn token(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub(crate) fn retired(&self) -> CancellationToken {
        self.retired.clone()
    }
}

/// Runs until the session is lost (then fires `lost`) or dropped.
async fn watch(session: Weak<Session>, lost: CancellationToken, retired: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(session) = session.upgrade() else {
            retired.cancel();
            return;
        };
        if session.client().is_closed() {
            tracing::warn!("the session holding advisory locks is gone; its locks are lost");
            lost.cancel();
            return;
        }
    }
}
