//! Transaction-scoped locks (`pg_advisory_xact_lock`): taken inside the caller's
//! transaction and freed by the server at its commit or rollback. They cannot
//! outlive the transaction, so they are the safe choice behind a
//! transaction-pooling PgBouncer.

use crate::context::Held;
use crate::error::Error;
use crate::lock::AdvisoryLock;
use crate::patience::Patience;
use crate::sql::{self, Op};
use crate::trace::{self, Refusal};

mod sealed {
    pub trait Sealed {}
    impl Sealed for tokio_postgres::Transaction<'_> {}
    impl Sealed for deadpool_postgres::Transaction<'_> {}
}

/// An open transaction a lock can be taken in: `tokio_postgres::Transaction` or
/// `deadpool_postgres::Transaction`.
pub trait Transactional: sealed::Sealed + Sync {
    #[doc(hidden)]
    fn transaction(&self) -> &tokio_postgres::Transaction<'_>;
}

impl Transactional for tokio_postgres::Transaction<'_> {
    fn transaction(&self) -> &tokio_postgres::Transaction<'_> {
        self
    }
}

impl Transactional for deadpool_postgres::Transaction<'_> {
    fn transaction(&self) -> &tokio_postgres::Transaction<'_> {
        self
    }
}

impl AdvisoryLock {
    /// Waits for the lock inside `transaction`; the server frees it at commit or
    /// rollback (there is no guard).
    ///
    /// ```no_run
    /// # async fn demo(mut client: deadpool_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use pglock_runtime::AdvisoryLock;
    ///
    /// let tx = client.transaction().await?;
    /// AdvisoryLock::new("invoice:42").acquire_xact(&tx).await?;
    /// tx.execute("UPDATE invoices SET paid = true WHERE id = 42", &[]).await?;
    /// tx.commit().await?; // the lock is freed here
    /// # Ok(()) }
    /// ```
    pub async fn acquire_xact<T: Transactional + ?Sized>(
        &self,
        transaction: &T,
    ) -> Result<(), Error> {
        trace::acquiring(self, "xact wait", Refusal::Fails, async {
            self.refuse_enclosing(Patience::Forever)?;
            self.run_xact(Op::WaitXact, transaction).await.map(drop)
        })
        .await
    }

    /// Takes the lock inside `transaction` if it is free, else [`Error::Busy`].
    pub async fn try_acquire_xact<T: Transactional + ?Sized>(
        &self,
        transaction: &T,
    ) -> Result<(), Error> {
        self.try_xact(transaction, Refusal::Fails).await
    }

    /// `try_acquire_xact`, telling `tracing` of a busy lock as `refusal` says.
    pub(crate) async fn try_xact<T: Transactional + ?Sized>(
        &self,
        transaction: &T,
        refusal: Refusal,
    ) -> Result<(), Error> {
        trace::acquiring(self, "xact try", refusal, async {
            self.refuse_enclosing(Patience::Try)?;
            let row = self.run_xact(Op::TryXact, transaction).await?;
            if row.get::<_, bool>(0) {
                Ok(())
            } else {
                Err(Error::Busy {
                    lock: self.id().clone(),
                })
            }
        })
        .await
    }

    /// A key that an enclosing annotated body of this task holds with a session lock
    /// is refused at once (`WouldDeadlock` when waiting, `Busy` when trying): that
    /// lock lives on another session, so a wait for it would never end. Locks taken
    /// inside a transaction are not recorded for nested calls: a second xact lock on
    /// the same key in the same transaction is granted by PostgreSQL itself (they
    /// are re-entrant within a transaction).
    fn refuse_enclosing(&self, patience: Patience) -> Result<(), Error> {
        Held::current().refuse_conflict(self, patience)
    }

    async fn run_xact<T: Transactional + ?Sized>(
        &self,
        op: Op,
        transaction: &T,
    ) -> Result<tokio_postgres::Row, Error> {
        let text = sql::statement(op, self);
        let key = self.key();
        let params = sql::typed_params(&key);
        // One round trip: the statement is parsed, bound and run together.
        transaction
            .transaction()
            .query_typed_one(&text, &params)
            .await
            .map_err(|e| Error::from_db(self.id(), e))
    }
}
