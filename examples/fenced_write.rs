//! A stale leader's write, refused by its fencing token.
//!
//! Two instances of a service campaign for the same lock. Instance A leads and hands
//! a write to a task that does not watch its term (a GC pause, a slow disk, a retry
//! loop: anything that runs late). A's session dies, B takes over with a greater
//! fence and writes. When A's late write finally arrives it carries A's fence, and
//! the row refuses it: every write says `WHERE last_fence < $fence` and records its
//! own fence.
//!
//! `cargo run --example fenced_write` (uses `DATABASE_URL`, or starts a throwaway
//! cluster) prints what happens and exits non-zero if the stale write got through.
//! With `--unfenced` the writes leave out the fence condition (the control: the
//! stale write then lands, and the program says so and exits non-zero).

use std::time::Duration;

use deadpool_postgres::Pool;
use pglock::{holders, AdvisoryLock, Leadership, Term};
use tokio::sync::mpsc;

type AppError = Box<dyn std::error::Error + Send + Sync>;

/// Adds `amount` to the account, on behalf of the term with `fence`; whether the
/// row took it. A write from an older term than the last one that wrote is refused.
async fn fenced_write(pool: &Pool, table: &str, fence: u64, amount: i64) -> Result<bool, AppError> {
    let fence = i64::try_from(fence)?;
    let condition = if unfenced() {
        ""
    } else {
        " AND last_fence < $1"
    };
    let sql = format!(
        "UPDATE {table} SET balance = balance + $2, last_fence = $1 WHERE id = 1{condition}"
    );
    let rows = pool.get().await?.execute(&sql, &[&fence, &amount]).await?;
    Ok(rows == 1)
}

/// Starts an instance campaigning for `name` every `every` (the first campaign at
/// once); its terms arrive on the channel.
fn instance(name: &str, pool: Pool, every: Duration) -> mpsc::UnboundedReceiver<Term> {
    let (terms, elected) = mpsc::unbounded_channel();
    let leadership = Leadership::new(AdvisoryLock::new(name), pool).campaign_every(every);
    tokio::spawn(async move {
        leadership
            .run(std::future::pending(), move |term| {
                let _ = terms.send(term);
                std::future::pending::<Result<(), pglock::Error>>()
            })
            .await
    });
    elected
}

async fn elected(terms: &mut mpsc::UnboundedReceiver<Term>) -> Result<Term, AppError> {
    let term = tokio::time::timeout(Duration::from_secs(30), terms.recv()).await?;
    term.ok_or_else(|| "the instance stopped campaigning".into())
}

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let db = pglock::testdb::shared();
    let pool = db.pool(4);
    let table = format!("fenced_write_{}", std::process::id());
    let name = format!("fenced-write:{table}");
    pool.get()
        .await?
        .batch_execute(&format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, balance bigint NOT NULL, last_fence bigint NOT NULL);
             INSERT INTO {table} VALUES (1, 0, 0);"
        ))
        .await?;

    // A campaigns again only a minute after losing, so that B, campaigning every
    // 200 ms, is the one that takes over: the story needs a stale A.
    let mut a = instance(&name, db.pool(3), Duration::from_secs(60));
    let a_term = elected(&mut a).await?;
    println!("A leads with fence {}", a_term.fence());
    // A hands a write to a task that ignores `term.lost()`: it will run late.
    let (wake, late) = tokio::sync::oneshot::channel::<()>();
    let stale = {
        let (pool, table, fence) = (pool.clone(), table.clone(), a_term.fence());
        tokio::spawn(async move {
            let _ = late.await;
            fenced_write(&pool, &table, fence, 100).await
        })
    };
    let mut b = instance(&name, db.pool(3), Duration::from_millis(200));

    // A's session dies (here an operator terminates it; in life a network cut).
    let holder = holders(&pool, name.as_str())
        .await?
        .into_iter()
        .find(|h| h.granted);
    let pid = holder.ok_or("A holds the lock")?.pid;
    pool.get()
        .await?
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await?;
    let b_term = elected(&mut b).await?;
    println!("B leads with fence {}", b_term.fence());
    let accepted = fenced_write(&pool, &table, b_term.fence(), 10).await?;
    println!(
        "B's write with fence {}: {}",
        b_term.fence(),
        verdict(accepted)
    );

    // A's late write arrives.
    let _ = wake.send(());
    let stale_accepted = stale.await??;
    println!(
        "A's late write with fence {}: {}",
        a_term.fence(),
        verdict(stale_accepted)
    );
    let row = pool
        .get()
        .await?
        .query_one(
            &format!("SELECT balance, last_fence FROM {table} WHERE id = 1"),
            &[],
        )
        .await?;
    let (balance, last_fence): (i64, i64) = (row.get(0), row.get(1));
    println!("balance {balance}, last fence {last_fence}");
    pool.get()
        .await?
        .batch_execute(&format!("DROP TABLE {table}"))
        .await?;
    if stale_accepted || !accepted || balance != 10 {
        return Err("the stale leader's write got through".into());
    }
    Ok(())
}

/// The control: writes without the fence condition.
fn unfenced() -> bool {
    std::env::args().any(|arg| arg == "--unfenced")
}

fn verdict(accepted: bool) -> &'static str {
    if accepted {
        "accepted"
    } else {
        "refused (stale fence)"
    }
}
