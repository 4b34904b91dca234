//! Runtime of [pglock](https://docs.rs/pglock): PostgreSQL advisory locks as guards of
//! critical sections. Users depend on the facade crate `pglock`, which re-exports
//! everything here together with the `#[advisory_locked]` attribute.

#![warn(missing_docs)]

mod acquire;
mod context;
mod drop_guard;
mod error;
mod fence;
mod guard;
mod hold;
mod holders;
mod in_flight;
mod key;
mod leadership;
mod lock;
mod locker;
mod loss;
mod mutex;
mod patience;
mod private_xact;
mod release;
mod scope;
mod session;
mod source;
mod spawn;
mod sql;
mod trace;
mod wait;
mod xact;

pub use error::Error;
pub use guard::LockGuard;
pub use holders::{holders, Holder};
pub use key::LockKey;
pub use leadership::{Electorate, Leadership, Term, DEFAULT_CAMPAIGN_EVERY, DEFAULT_MAX_BACKOFF};
#[doc(hidden)]
pub use leadership::{LostSignal, Seat};
pub use lock::{AdvisoryLock, CallSite, LockId, LockMode, DEFAULT_KEEPALIVE};
pub use locker::{
    Locker, LockerBuilder, LockerGuard, DEFAULT_HANDOFF_LIMIT, DEFAULT_HANDOFF_WINDOW,
    DEFAULT_LOCK_SESSIONS,
};
pub use loss::CHECK_EVERY;
pub use source::LockSource;
pub use xact::Transactional;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "testdb")]
pub mod testdb;
