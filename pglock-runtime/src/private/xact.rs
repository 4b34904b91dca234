//! The part of the door (`__private`) that `#[advisory_locked(xact = tx)]` uses: the
//! lock taken inside the caller's transaction, freed by the server at its commit
//! or rollback. No guard, so nothing to release and nothing to watch.

use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::patience::Patience;
use crate::trace::Refusal;
use crate::xact::Transactional;

/// What `xact = ...` may be: a transaction, or a reference to one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a transaction",
    label = "`xact = ...` must be a `tokio_postgres::Transaction` or a `deadpool_postgres::Transaction`, or a reference to one",
    note = "write `xact = <expression>` naming the open transaction to take the lock in"
)]
pub trait AsTransaction {
    /// The transaction behind it.
    type Transaction: Transactional + ?Sized;
    /// Borrows it.
    fn as_transaction(&self) -> &Self::Transaction;
}

impl<'c> AsTransaction for tokio_postgres::Transaction<'c> {
    type Transaction = tokio_postgres::Transaction<'c>;
    fn as_transaction(&self) -> &Self::Transaction {
        self
    }
}

impl<'c> AsTransaction for deadpool_postgres::Transaction<'c> {
    type Transaction = deadpool_postgres::Transaction<'c>;
    fn as_transaction(&self) -> &Self::Transaction {
        self
    }
}

impl<T: AsTransaction + ?Sized> AsTransaction for &T {
    type Transaction = T::Transaction;
    fn as_transaction(&self) -> &Self::Transaction {
        (**self).as_transaction()
    }
}

impl<T: AsTransaction + ?Sized> AsTransaction for &mut T {
    type Transaction = T::Transaction;
    fn as_transaction(&self) -> &Self::Transaction {
        (**self).as_transaction()
    }
}

/// Borrows the transaction of `xact = ...` (never moves it).
pub fn transaction<T: AsTransaction + ?Sized>(transaction: &T) -> &T::Transaction {
    transaction.as_transaction()
}

/// Takes `lock` inside `transaction` as `patience` says (the public methods trace it
/// and refuse a key an enclosing body holds).
///
/// There is no bounded wait inside a transaction: the only server-side bound is
/// `lock_timeout`, and setting it inside the caller's transaction would change it
/// for the rest of that transaction (and a wait that errors aborts the transaction
/// anyway). The attribute refuses `wait = "..."` with `xact` at compile time, so
/// `Patience::Until` never comes from it; given anyway, it waits like `Forever`.
pub async fn acquire_xact<T: Transactional + ?Sized>(
    transaction: &T,
    lock: &AdvisoryLock,
    patience: Patience,
) -> Result<(), Error> {
    match patience {
        Patience::Try => lock.try_acquire_xact(transaction).await,
        Patience::Forever | Patience::Until { .. } => lock.acquire_xact(transaction).await,
    }
}

/// `acquire_xact` for a fn with `skip` (which only tries: `xact` takes no bounded
/// wait): a busy lock is reported as a skipped call, not a failure.
pub async fn acquire_xact_or_skip<T: Transactional + ?Sized>(
    transaction: &T,
    lock: &AdvisoryLock,
    patience: Patience,
) -> Result<(), Error> {
    match patience {
        Patience::Try => lock.try_xact(transaction, Refusal::Skips).await,
        Patience::Forever | Patience::Until { .. } => lock.acquire_xact(transaction).await,
    }
}
