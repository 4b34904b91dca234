use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

#[advisory_locked(key = "order:{order_id}")]
async fn ship(pool: &Pool, order_id: i64) -> Result<(), AppError> {
    let _ = (pool, order_id);
    let n: u32 = "not a number";
    let _ = n;
    Ok(())
}

fn main() {
    let _ = ship;
}
