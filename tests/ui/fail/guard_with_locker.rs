use pglock::{advisory_locked, Locker};

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

impl From<tokio_postgres::Error> for AppError {
    fn from(_: tokio_postgres::Error) -> Self {
        AppError
    }
}

/// The body uses the guard as a connection: the one mistake is `guard` with a
/// Locker, reported once, on `guard = conn`.
#[advisory_locked(key = "order:{order_id}", guard = conn)]
async fn ship(locker: &Locker, order_id: i64) -> Result<(), AppError> {
    conn.execute("UPDATE orders SET shipped = true WHERE id = $1", &[&order_id])
        .await?;
    Ok(())
}

fn main() {
    let _ = ship;
}
