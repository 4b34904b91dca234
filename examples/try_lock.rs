//! Tries once to take an advisory lock by name, from a process of its own; the
//! tests spawn it to prove exclusion across processes.
//!
//! `cargo run --example try_lock -- <database-url> <lock-name>`
//! exits 0 when it got (and released) the lock, 3 when the lock was busy, 1 on error.

use std::process::ExitCode;

use pglock::AdvisoryLock;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(name)) = (args.next(), args.next()) else {
        eprintln!("usage: try_lock <database-url> <lock-name>");
        return ExitCode::from(1);
    };
    let config: tokio_postgres::Config = match url.parse() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bad database url: {e}");
            return ExitCode::from(1);
        }
    };
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(1)
        .build()
        .expect("a pool without runtime hooks builds");
    match AdvisoryLock::new(name).try_acquire(&pool).await {
        Ok(guard) => match guard.release().await {
            Ok(()) => {
                println!("acquired");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("release failed: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) if e.is_busy() => {
            println!("busy: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
