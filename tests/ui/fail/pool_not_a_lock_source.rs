use pglock::advisory_locked;

#[derive(Debug)]
pub struct AppError;

impl From<pglock::Error> for AppError {
    fn from(_: pglock::Error) -> Self {
        AppError
    }
}

pub struct Service {
    pool: String,
}

impl Service {
    #[advisory_locked(key = "order:{order_id}", pool = self.pool)]
    async fn ship(&self, order_id: i64) -> Result<(), AppError> {
        let _ = order_id;
        Ok(())
    }
}

fn main() {
    let _ = Service::ship;
}
