//! The main demo (minimal for now): takes the lock "goldleader" on the test
//! database (DATABASE_URL, or a throwaway cluster), shows a second taker is
//! refused, and releases it.

use pglock::AdvisoryLock;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = pglock::testdb::shared();
    let pool = db.pool(4);
    let lock = AdvisoryLock::new("goldleader");
    let guard = lock.try_acquire(&pool).await?;
    let pid: i32 = guard
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    println!("goldleader: held by backend {pid} (key {})", lock.key());
    match lock.try_acquire(&pool).await {
        Err(e) if e.is_busy() => println!("second taker refused: {e}"),
        other => return Err(format!("expected Busy, got {other:?}").into()),
    }
    guard.release().await?;
    println!(
        "released; taking it again: {:?}",
        lock.try_acquire(&pool).await.map(drop)
    );
    Ok(())
}
