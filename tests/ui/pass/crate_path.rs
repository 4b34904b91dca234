//! `crate = path`: generated code reaches the runtime through another path, as in
//! a crate that re-exports pglock (and does not depend on it under that name).
#![deny(warnings)]

use deadpool_postgres::Pool;

mod reexport {
    pub use pglock as locks;
}

#[derive(Debug)]
pub struct AppError;

impl From<reexport::locks::Error> for AppError {
    fn from(_: reexport::locks::Error) -> Self {
        AppError
    }
}

#[reexport::locks::advisory_locked(key = "job", crate = crate::reexport::locks)]
async fn job(pool: &Pool) -> Result<(), AppError> {
    Ok(())
}

#[reexport::locks::advisory_locked(key = "job2", crate = "crate::reexport::locks")]
async fn job2(pool: &Pool) -> Result<(), AppError> {
    Ok(())
}

fn main() {
    let _ = job;
    let _ = job2;
}
