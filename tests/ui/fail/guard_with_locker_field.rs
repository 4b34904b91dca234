use pglock::{advisory_locked, Locker};

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

pub struct Shipping {
    locker: Locker,
}

impl Shipping {
    #[advisory_locked(key = "order:{order_id}", pool = self.locker, guard = conn)]
    async fn ship(&self, order_id: i64) -> Result<(), AppError> {
        let _ = (conn, order_id);
        Ok(())
    }
}

fn main() {
    let _ = Shipping::ship;
}
