//! `AdvisoryLock`: which key, in which mode, named how — the description of a lock,
//! independent of where it is taken.

use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use crate::key::LockKey;

/// The default bound within which a server that stopped answering is noticed while
/// a lock is held and watched (see [`AdvisoryLock::keepalive`]).
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(5);

/// Exclusive or shared, as PostgreSQL's `pg_advisory_lock` / `pg_advisory_lock_shared`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockMode {
    /// One holder at a time (the default).
    Exclusive,
    /// Any number of shared holders, no exclusive one.
    Shared,
}

impl LockMode {
    /// Whether two holders in these modes may hold the same key at once.
    pub(crate) fn compatible(self, other: LockMode) -> bool {
        self == LockMode::Shared && other == LockMode::Shared
    }
}

/// Where a lock is taken in the program; named in the SQL comment of the statement
/// that takes the lock, so that `pg_stat_activity` shows who waits on what.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CallSite {
    /// The function that takes the lock.
    pub function: &'static str,
    /// The source file (`file!()`).
    pub file: &'static str,
    /// The line (`line!()`).
    pub line: u32,
}

/// The name and key of a lock, as errors and logs show it:
/// `` `goldleader` (key 1234) `` or `key (1, 2)`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LockId {
    key: LockKey,
    name: Option<Name>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Name {
    Static(&'static str),
    Owned(Arc<str>),
}

impl LockId {
    /// The key PostgreSQL locks.
    pub fn key(&self) -> LockKey {
        self.key
    }

    /// The name the key was derived from, if it has one.
    pub fn name(&self) -> Option<&str> {
        match &self.name {
            Some(Name::Static(s)) => Some(s),
            Some(Name::Owned(s)) => Some(s),
            None => None,
        }
    }
}

impl LockId {
    /// The name, when it was fixed at compile time (a bounded set of texts: fit for
    /// statement texts, which are prepared once per connection).
    pub(crate) fn static_name(&self) -> Option<&'static str> {
        match self.name {
            Some(Name::Static(name)) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "`{name}` (key {})", self.key),
            None => write!(f, "key {}", self.key),
        }
    }
}

impl fmt::Debug for LockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<LockKey> for LockId {
    fn from(key: LockKey) -> Self {
        LockId { key, name: None }
    }
}

impl From<i64> for LockId {
    fn from(key: i64) -> Self {
        LockKey::BigInt(key).into()
    }
}

impl From<(i32, i32)> for LockId {
    fn from((a, b): (i32, i32)) -> Self {
        LockKey::Pair(a, b).into()
    }
}

impl From<&str> for LockId {
    fn from(name: &str) -> Self {
        LockId {
            key: LockKey::from_name(name),
            name: Some(Name::Owned(name.into())),
        }
    }
}

impl From<String> for LockId {
    fn from(name: String) -> Self {
        LockId {
            key: LockKey::from_name(&name),
            name: Some(Name::Owned(name.into())),
        }
    }
}

impl From<&String> for LockId {
    fn from(name: &String) -> Self {
        name.as_str().into()
    }
}

/// A PostgreSQL advisory lock: a key, a mode, and (for diagnostics) a name.
///
/// It describes the lock; the `acquire` methods take it, from a lock source:
/// a [`deadpool_postgres::Pool`] (the guard owns a pooled session and derefs to its
/// client) or a [`Locker`](crate::Locker) (many locks share a few sessions).
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), Box<dyn std::error::Error>> {
/// use pglock_runtime::AdvisoryLock;
///
/// let lock = AdvisoryLock::new("goldleader");
/// let guard = lock.try_acquire(&pool).await?; // Error::Busy if held elsewhere
/// let one: i32 = guard.query_one("SELECT 1", &[]).await?.get(0);
/// guard.release().await?;
/// # let _ = one; Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AdvisoryLock {
    id: LockId,
    mode: LockMode,
    site: Option<&'static CallSite>,
    /// Where the runtime API was called from, when no site was declared.
    caller: Option<&'static Location<'static>>,
    keepalive: Duration,
    fenced: bool,
    min_hold: Option<Duration>,
}

impl AdvisoryLock {
    /// An exclusive lock on `key`: a name (`"goldleader"`, hashed with
    /// [`LockKey::from_name`]), an `i64`, an `(i32, i32)` pair or a [`LockKey`].
    pub fn new(key: impl Into<LockId>) -> Self {
        Self::with_id(key.into())
    }

    /// A lock whose name is known at compile time, with its key computed there too
    /// (what `#[advisory_locked]` generates for literal keys: no hashing at run time).
    pub const fn from_static(name: &'static str, key: LockKey) -> Self {
        Self::with_id(LockId {
            key,
            name: Some(Name::Static(name)),
        })
    }

    /// An exclusive lock on `id` with every option at its default.
    const fn with_id(id: LockId) -> Self {
        AdvisoryLock {
            id,
            mode: LockMode::Exclusive,
            site: None,
            caller: None,
            keepalive: DEFAULT_KEEPALIVE,
            fenced: false,
            min_hold: None,
        }
    }

    /// The same lock in shared mode: shared holders exclude exclusive ones only.
    pub fn shared(mut self) -> Self {
        self.mode = LockMode::Shared;
        self
    }

    /// The same lock, taken with a **fencing token**: right after the grant, on the
    /// session that holds it, the acquisition takes a number strictly greater than
    /// the token of every earlier fenced holder of any key on this server, across
    /// processes, crashes and restarts; the guard's `fence()` gives it. It costs one
    /// round trip and a WAL flush per acquisition; what it relies on (the primary,
    /// synchronous replication after a failover, no `pg_resetwal`) is in the README
    /// ("Leadership and fencing"). An acquisition that cannot take its token fails
    /// ([`Error::Fence`](crate::Error::Fence), or the server's error) and keeps no lock.
    pub fn fenced(mut self) -> Self {
        self.fenced = true;
        self
    }

    /// Whether acquisitions take a fencing token.
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    /// The same lock, held at least `hold` after its grant: a guard dropped or
    /// released sooner lets go in the background at grant + `hold` (`release()`
    /// then returns `Ok` at once). With `skip`-like use (`try_acquire`, busy means
    /// someone else ran it), a job that N instances start on the same schedule runs
    /// once per period even when their clocks disagree by less than `hold`. Through a
    /// [`Locker`](crate::Locker) the hold costs no connection; from a `Pool` the
    /// guard's session stays out of the pool until the release.
    pub fn hold_at_least(mut self, hold: Duration) -> Self {
        self.min_hold = Some(hold);
        self
    }

    /// How long after the grant the lock is held at least, if set.
    pub fn min_hold(&self) -> Option<Duration> {
        self.min_hold
    }

    /// The same lock in the given mode.
    pub fn with_mode(mut self, mode: LockMode) -> Self {
        self.mode = mode;
        self
    }

    /// The bound within which a server that stops answering (without closing the
    /// connection) is noticed while this lock is held from a `Pool` and watched
    /// ([`LockGuard::lost`](crate::LockGuard::lost), `on_lost`); default
    /// [`DEFAULT_KEEPALIVE`] (5 s). A closed connection is noticed within
    /// [`CHECK_EVERY`](crate::CHECK_EVERY) whatever this says. A Locker's locks
    /// follow [`LockerBuilder::keepalive`](crate::LockerBuilder::keepalive).
    pub const fn keepalive(mut self, bound: Duration) -> Self {
        self.keepalive = bound;
        self
    }

    /// The keepalive bound of this lock.
    pub fn keepalive_bound(&self) -> Duration {
        self.keepalive
    }

    /// Names the place in the program that takes this lock, for `pg_stat_activity`.
    pub const fn at(mut self, site: &'static CallSite) -> Self {
        self.site = Some(site);
        self
    }

    /// The key PostgreSQL locks.
    pub fn key(&self) -> LockKey {
        self.id.key
    }

    /// The name the key was derived from, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.id.name()
    }

    /// Name and key, as errors show them.
    pub fn id(&self) -> &LockId {
        &self.id
    }

    /// Exclusive or shared.
    pub fn mode(&self) -> LockMode {
        self.mode
    }

    /// The call site set with [`at`](Self::at).
    pub fn site(&self) -> Option<&'static CallSite> {
        self.site
    }

    /// The place the acquire method was called from, unless a site was declared.
    pub(crate) fn caller(&self) -> Option<&'static Location<'static>> {
        self.caller
    }

    /// This lock, naming `caller` as its call site when none was declared (what the
    /// runtime API does, so its lock statements name the caller's file and line).
    pub(crate) fn called_from(&self, caller: &'static Location<'static>) -> Cow<'_, AdvisoryLock> {
        if self.site.is_some() || self.caller == Some(caller) {
            Cow::Borrowed(self)
        } else {
            Cow::Owned(AdvisoryLock {
                caller: Some(caller),
                ..self.clone()
            })
        }
    }
}
