use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

pub struct Receipt;

#[advisory_locked(key = "order:{order_id}", skip)]
async fn ship(pool: &Pool, order_id: i64) -> Result<Receipt, AppError> {
    let _ = (pool, order_id);
    Ok(Receipt)
}

fn main() {
    let _ = ship;
}
