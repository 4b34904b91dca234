//! The error type of the annotated fns under test.

/// What an annotated fn under test returns: the lock's error, a query's, or the
/// body's own.
#[derive(Debug)]
pub enum AppError {
    Lock(pglock::Error),
    Db(deadpool_postgres::tokio_postgres::Error),
    /// The body's own failure, to tell it apart from the lock's.
    Body(&'static str),
}

impl From<pglock::Error> for AppError {
    fn from(e: pglock::Error) -> Self {
        AppError::Lock(e)
    }
}

impl From<deadpool_postgres::tokio_postgres::Error> for AppError {
    fn from(e: deadpool_postgres::tokio_postgres::Error) -> Self {
        AppError::Db(e)
    }
}

impl AppError {
    pub fn lock(&self) -> &pglock::Error {
        match self {
            AppError::Lock(e) => e,
            other => panic!("expected a lock error, got {other:?}"),
        }
    }
}
