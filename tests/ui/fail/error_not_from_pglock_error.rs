use deadpool_postgres::Pool;
use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

#[advisory_locked(key = "order:{order_id}")]
async fn ship(pool: &Pool, order_id: i64) -> Result<(), AppError> {
    let _ = (pool, order_id);
    Ok(())
}

fn main() {
    let _ = ship;
}
