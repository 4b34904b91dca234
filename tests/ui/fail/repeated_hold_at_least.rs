use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

#[advisory_locked(key = "order:{order_id}", hold_at_least = "1s", hold_at_least = "2s")]
async fn ship(pool: &Pool, order_id: i64) -> Result<(), AppError> {
    let _ = order_id;
    Ok(())
}

// The fn is still emitted: the rest of the crate compiles against it.
fn main() {
    let _ = ship;
}
