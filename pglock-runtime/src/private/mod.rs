//! The only door generated code uses into the runtime. Not public API: it may change
//! in any release without notice.

use std::future::Future;
use std::sync::Arc;

use crate::error::Error;
use crate::guard::LockGuard;
use crate::source::LockSource;
use crate::trace::Refusal;

pub use crate::lock::{AdvisoryLock, CallSite, LockMode};
pub use crate::patience::Patience;
mod xact;

pub use crate::key::LockKey;
pub use core::default::Default;
pub use core::result::Result::{self, Err, Ok};
pub use std::format;
pub use xact::{acquire_xact, acquire_xact_or_skip, transaction, AsTransaction};
// What `#[advisory_locked]` names besides the items below: `Duration` for
// `wait = "5s"` (`Patience::within(Duration::new(5, 0))`), and the macros that fill in its `CallSite`. Re-exported here so
// that generated code goes through this one door (and `crate = path`) only.
pub use core::time::Duration;
pub use core::{concat, file, line, module_path};

/// How many background tasks this process's locks have spawned so far (unlocks
/// finished in a task, abandoned statements, loss watchers, reapers). For tests
/// that prove the steady state spawns none per call; not for applications.
#[doc(hidden)]
pub fn spawned_tasks() -> u64 {
    crate::spawn::spawned()
}

/// Whether a dropped pool guard's session is parked for the next taker, who reads
/// the unlock's answer with its own statement (on, the default), or every such
/// unlock is finished by a task of its own (off). For tests that show what parking
/// saves; not for applications.
#[doc(hidden)]
pub fn set_release_parking(on: bool) {
    crate::release::set_parking(on)
}

/// What `on_lost` asked for.
#[derive(Clone, Copy, Debug)]
pub enum OnLost {
    /// Drop the body at its next await and return `Error::LockLost`.
    Abort,
    /// Let the body run on.
    Ignore,
}

/// `LockKey::from_name`, for keys computed in a `const`.
pub const fn key_of(name: &str) -> LockKey {
    LockKey::from_name(name)
}

/// A lock whose name and key were fixed at compile time.
pub const fn lock_static(
    name: &'static str,
    key: LockKey,
    site: &'static CallSite,
) -> AdvisoryLock {
    AdvisoryLock::from_static(name, key).at(site)
}

/// A lock named at run time (a key template filled from arguments).
pub fn lock_named(name: String, site: &'static CallSite) -> AdvisoryLock {
    AdvisoryLock::new(name).at(site)
}

/// A lock on a literal key (`key = 7`, `key = (1, 2)`).
pub fn lock_key(key: impl Into<LockKey>, site: &'static CallSite) -> AdvisoryLock {
    AdvisoryLock::new(key.into()).at(site)
}

/// What `pool = ...` may be: a lock source, or a reference or `Arc` to one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a lock source",
    label = "`pool = ...` must be a `deadpool_postgres::Pool` or a `pglock::Locker`, or a reference to one",
    note = "write `pool = <expression>` naming the Pool or Locker to take the lock from"
)]
pub trait AsLockSource {
    /// The source behind it.
    type Source: LockSource + ?Sized;
    /// Borrows it.
    fn as_lock_source(&self) -> &Self::Source;
}

impl AsLockSource for deadpool_postgres::Pool {
    type Source = deadpool_postgres::Pool;
    fn as_lock_source(&self) -> &Self::Source {
        self
    }
}

impl AsLockSource for crate::locker::Locker {
    type Source = crate::locker::Locker;
    fn as_lock_source(&self) -> &Self::Source {
        self
    }
}

impl<T: AsLockSource + ?Sized> AsLockSource for &T {
    type Source = T::Source;
    fn as_lock_source(&self) -> &Self::Source {
        (**self).as_lock_source()
    }
}

impl<T: AsLockSource + ?Sized> AsLockSource for &mut T {
    type Source = T::Source;
    fn as_lock_source(&self) -> &Self::Source {
        (**self).as_lock_source()
    }
}

impl<T: AsLockSource + ?Sized> AsLockSource for Arc<T> {
    type Source = T::Source;
    fn as_lock_source(&self) -> &Self::Source {
        (**self).as_lock_source()
    }
}

/// Borrows the lock source of `pool = ...` (never moves it).
pub fn source<S: AsLockSource + ?Sized>(source: &S) -> &S::Source {
    source.as_lock_source()
}

/// Takes the lock as `wait` says.
pub async fn acquire<S: LockSource + ?Sized>(
    source: &S,
    lock: &AdvisoryLock,
    patience: Patience,
) -> Result<S::Guard, Error> {
    let caller = std::panic::Location::caller();
    lock.acquire_with(source, caller, Refusal::Fails, move || patience)
        .await
}

/// Takes the lock as `wait` says, for a fn with `skip`: a busy or timed-out lock is
/// reported as a skipped call, not a failure.
pub async fn acquire_or_skip<S: LockSource + ?Sized>(
    source: &S,
    lock: &AdvisoryLock,
    patience: Patience,
) -> Result<S::Guard, Error> {
    let caller = std::panic::Location::caller();
    lock.acquire_with(source, caller, Refusal::Skips, move || patience)
        .await
}

/// Whether `skip` turns this error into `Ok(Default::default())`.
pub fn skips(error: &Error) -> bool {
    error.is_busy() || error.is_timeout()
}

/// A held lock, as the generated code needs it.
pub trait HeldGuard: Send + Sync {
    /// What the task holds inside the body.
    #[doc(hidden)]
    fn held_inside(&self) -> crate::context::Held;
    /// Completes when the lock is lost.
    #[doc(hidden)]
    fn lost_signal(&self) -> impl Future<Output = ()> + Send + 'static;
    /// The lock.
    #[doc(hidden)]
    fn held_lock(&self) -> &AdvisoryLock;
}

impl HeldGuard for LockGuard {
    fn held_inside(&self) -> crate::context::Held {
        crate::context::Held::current().with(
            self.lock(),
            Some((self.session().pool_id(), self.session().clone())),
        )
    }
    fn lost_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lost()
    }
    fn held_lock(&self) -> &AdvisoryLock {
        self.lock()
    }
}

impl HeldGuard for crate::LockerGuard {
    fn held_inside(&self) -> crate::context::Held {
        crate::context::Held::current()
            .with_registered(self.lock(), None, |body| self.held_by(body))
    }
    fn lost_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.lost()
    }
    fn held_lock(&self) -> &AdvisoryLock {
        self.lock()
    }
}

/// Runs the body with the lock held: nested locks see it, and with
/// `OnLost::Abort` the body is dropped at its next await once the lock is lost.
pub async fn run<G: HeldGuard, F: Future>(
    guard: &G,
    on_lost: OnLost,
    body: F,
) -> Result<F::Output, Error> {
    let body = guard.held_inside().scope(body);
    match on_lost {
        OnLost::Ignore => Ok(body.await),
        OnLost::Abort => {
            let lost = guard.lost_signal();
            tokio::select! {
                biased;
                output = body => Ok(output),
                () = lost => Err(Error::LockLost { lock: guard.held_lock().id().clone() }),
            }
        }
    }
}

/// The error type of an annotated fn: anything `From<pglock::Error>`.
#[diagnostic::on_unimplemented(
    message = "the error type of an `#[advisory_locked]` fn must implement `From<pglock::Error>`",
    label = "`{Self}` does not implement `From<pglock::Error>`",
    note = "add `impl From<pglock::Error> for {Self}` (or a `#[from] pglock::Error` variant with thiserror)"
)]
pub trait FromLockError: Sized {
    /// Converts.
    fn from_lock_error(error: Error) -> Self;
}

impl<E: From<Error>> FromLockError for E {
    fn from_lock_error(error: Error) -> Self {
        E::from(error)
    }
}

/// Converts a lock error into the fn's error type.
pub fn error<E: FromLockError>(error: Error) -> E {
    E::from_lock_error(error)
}

/// A guard with a session of its own: what `guard = name` binds.
///
/// Only a [`LockGuard`] has one, and `bind_guard` returns that concrete type: when
/// the bound fails (a `LockerGuard`), the body's uses of the binding still type-check
/// against a `LockGuard`, so the one mistake gives one error.
#[diagnostic::on_unimplemented(
    message = "`guard = ...` cannot bind a lock taken through a `Locker`: its session is shared",
    label = "a `{Self}` lives on a session the Locker shares with the locks of other tasks, so it gives no connection",
    note = "take the lock from a `deadpool_postgres::Pool` to run queries on the locked session, or drop `guard = ...`"
)]
pub trait OwnSession {
    /// The guard, with its session.
    fn own_session(&self) -> &LockGuard;
}

impl OwnSession for LockGuard {
    fn own_session(&self) -> &LockGuard {
        self
    }
}

/// The guard, as it is (the argument of `bind_guard`, placed where the user wrote
/// `guard = name`).
pub fn held<G>(guard: &G) -> &G {
    guard
}

/// The guard, for `guard = name`.
pub fn bind_guard<G: OwnSession>(guard: &G) -> &LockGuard {
    guard.own_session()
}

/// A guard whose lock may carry a fencing token: what `fence = name` reads.
pub trait Fenced {
    /// The token, `Some` for a lock taken `fenced()`.
    fn token(&self) -> Option<u64>;
}

impl Fenced for LockGuard {
    fn token(&self) -> Option<u64> {
        self.fence()
    }
}

impl Fenced for crate::LockerGuard {
    fn token(&self) -> Option<u64> {
        self.fence()
    }
}

/// The token of a lock the expansion took `fenced()`, for `fence = name`. The
/// acquisition of a fenced lock fails unless it took its token, so a guard of one
/// always has it.
pub fn fence_of<G: Fenced>(guard: &G) -> u64 {
    guard
        .token()
        .expect("an acquisition taken fenced() returns only with its token")
}
