//! Where a [`Leadership`](super::Leadership) campaigns: a `Pool` or a `Locker`. Each
//! gives a *seat* (the fenced lock, held) and the pool on which the handover gate is
//! taken (always a session of its own: see [`gate`](super::gate)).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::error::Error;
use crate::guard::LockGuard;
use crate::lock::AdvisoryLock;
use crate::locker::{Locker, LockerGuard};

mod sealed {
    pub trait Sealed {}
    impl Sealed for deadpool_postgres::Pool {}
    impl Sealed for crate::locker::Locker {}
}

/// A lock source a [`Leadership`](super::Leadership) can campaign on: an owned
/// [`Pool`] or [`Locker`]. Callers never name it.
pub trait Electorate: sealed::Sealed + Send + Sync + 'static {
    #[doc(hidden)]
    type Seat: Seat;

    /// Takes `lock` if it is free, with its fencing token.
    #[doc(hidden)]
    fn try_seat<'a>(
        &'a self,
        lock: &'a AdvisoryLock,
    ) -> impl Future<Output = Result<Self::Seat, Error>> + Send + 'a;

    /// The pool the handover gate is taken from.
    #[doc(hidden)]
    fn gate_pool(&self) -> &Pool;

    /// Within how long the loss of a seat's session is noticed.
    #[doc(hidden)]
    fn loss_bound(&self, lock: &AdvisoryLock) -> Duration;
}

/// A future that completes when a seat's session is lost.
pub type LostSignal = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The leader's lock, held, and its fencing token.
#[doc(hidden)]
pub trait Seat: Send + Sync + 'static {
    /// The fencing token taken with the lock.
    fn fence(&self) -> u64;
    /// Completes when the session holding the lock is lost.
    fn lost(&self) -> LostSignal;
    /// Lets go of the lock now.
    fn release(self) -> impl Future<Output = Result<(), Error>> + Send;
}

/// A fenced lock held, with its token.
#[doc(hidden)]
pub struct Seated<G> {
    guard: G,
    fence: u64,
}

/// The token of a guard taken `fenced()` (which every Leadership lock is).
fn seated<G>(guard: G, fence: Option<u64>, lock: &AdvisoryLock) -> Result<Seated<G>, Error> {
    match fence {
        Some(fence) => Ok(Seated { guard, fence }),
        None => Err(Error::Fence {
            lock: lock.id().clone(),
            reason: "the lock was taken without its token",
        }),
    }
}

/// The two guard types have the same three methods under the same names but no
/// trait over them (their futures differ): one macro writes the seat of each.
macro_rules! seat_of {
    ($guard:ty) => {
        impl Seated<$guard> {
            fn taken(guard: $guard, lock: &AdvisoryLock) -> Result<Self, Error> {
                let fence = guard.fence();
                seated(guard, fence, lock)
            }
        }

        impl Seat for Seated<$guard> {
            fn fence(&self) -> u64 {
                self.fence
            }

            fn lost(&self) -> LostSignal {
                Box::pin(self.guard.lost())
            }

            fn release(self) -> impl Future<Output = Result<(), Error>> + Send {
                self.guard.release()
            }
        }
    };
}

seat_of!(LockGuard);
seat_of!(LockerGuard);

impl Electorate for Pool {
    type Seat = Seated<LockGuard>;

    async fn try_seat<'a>(&'a self, lock: &'a AdvisoryLock) -> Result<Self::Seat, Error> {
        Self::Seat::taken(lock.try_acquire(self).await?, lock)
    }

    fn gate_pool(&self) -> &Pool {
        self
    }

    fn loss_bound(&self, lock: &AdvisoryLock) -> Duration {
        lock.keepalive_bound()
    }
}

impl Electorate for Locker {
    type Seat = Seated<LockerGuard>;

    async fn try_seat<'a>(&'a self, lock: &'a AdvisoryLock) -> Result<Self::Seat, Error> {
        Self::Seat::taken(lock.try_acquire(self).await?, lock)
    }

    fn gate_pool(&self) -> &Pool {
        self.pool()
    }

    fn loss_bound(&self, _lock: &AdvisoryLock) -> Duration {
        self.keepalive()
    }
}
