//! Runtime of [pglock](https://docs.rs/pglock): PostgreSQL advisory locks as guards of
//! critical sections. Users depend on the facade crate `pglock`, which re-exports
//! everything here together with the `#[advisory_locked]` attribute.
//!
//! # Where each job lives
//!
//! Imports point down this list: a module uses only modules below it.
//!
//! | module | its one job |
//! |---|---|
//! | `private/` | the door generated code uses (`__private`); nothing else imports it |
//! | `leadership/` | `Leadership` and `Term`: campaign, lead while the lock is held, hand over |
//! | `acquire`, `xact` | the public acquire methods, for session and transaction locks |
//! | `source`, `locker/` | lock sources: a `Pool` (a session each) and the `Locker` (shared sessions; its in-process table, batches, placement, and deadlock detection in and across processes) |
//! | `context` | what the current annotated body holds: re-entrancy, conflicts → `WouldDeadlock` or `Busy` |
//! | `guard` | `LockGuard`: the held lock, released on drop |
//! | `fence`, `hold` | fencing tokens taken after the grant; `hold_at_least`, the release kept back |
//! | `holders` | who holds or waits for a key, as `pg_locks` says |
//! | `wait` | waiting in the server's queue, cancel-safely |
//! | `release` | unlocks the caller does not wait for: parked sessions whose unlock the next lock reads, the reaper, and the queued-unlock reuse of a session |
//! | `session` | a pooled connection holding locks: back to the pool only when known clean; its queued unlock; retired when in doubt about what it holds |
//! | `loss` | noticing that a session holding locks is gone |
//! | `in_flight` | a statement sent and not answered yet, cleaned up if dropped |
//! | `sql` | every statement text, bind parameters and `pg_locks` key columns |
//! | `patience` | how long to wait: `Try`, `Forever` or `Until` a deadline |
//! | `error`, `trace`, `metrics`, `outcome` | the one `Error` enum; what is told to `tracing` (events and spans) and, with the `metrics` feature, to `metrics`; how an acquisition ended, as both name it |
//! | `lock`, `key`, `scope` | the lock's identity (`AdvisoryLock`, `LockKey`), and who owns a session |
//! | `drop_guard`, `spawn`, `mutex` | small tools: armed-until-used, spawn-if-a-runtime, poison-tolerant locking |
//!
//! Apart from the list: `testdb` (feature `testdb`), the throwaway PostgreSQL
//! cluster and PgBouncer of the tests and examples; only tests import it.

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
#[cfg(feature = "metrics")]
mod metrics;
mod mutex;
mod outcome;
mod patience;
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
#[path = "private/mod.rs"]
pub mod __private;

#[cfg(feature = "testdb")]
pub mod testdb;

/// For the CLI's tests: the scanner that checks a statement leaves nothing to the
/// search_path (what it checks: `sql::lint`'s docs). Not part of the API.
#[cfg(feature = "testdb")]
#[doc(hidden)]
pub use sql::lint::unqualified as __unqualified_sql;
