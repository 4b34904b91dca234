//! How an annotated body under test ends, for the tests that its lock is released
//! on every way out.

use super::app_error::AppError;

/// How the body ends.
#[derive(Clone, Copy, Debug)]
pub enum Exit {
    Value,
    Err,
    Question,
    Panic,
    /// Never ends: the caller drops the future.
    Hang,
}

/// Fails, for a body to leave by `?`.
pub fn fails() -> Result<(), AppError> {
    Err(AppError::Body("via ?"))
}

/// Leaves the enclosing body as `$exit` says (`Ok(1)` for a value). A macro, not a
/// fn, so that the `?` and the panic happen in the annotated body itself.
#[allow(unused_macros)] // only the release tests use it
macro_rules! leave {
    ($exit:expr) => {
        match $exit {
            common::Exit::Value => Ok(1),
            common::Exit::Err => Err(common::AppError::Body("returned Err")),
            common::Exit::Question => {
                common::exit::fails()?;
                unreachable!("`?` returned from the body")
            }
            common::Exit::Panic => panic!("the body panics"),
            common::Exit::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        }
    };
}
pub(crate) use leave;
