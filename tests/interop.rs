//! Interop with a client we did not write: `psql` and the library exclude each
//! other on the same name, because `LockKey::from_name` is `hashtextextended(name, 0)`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use pglock::AdvisoryLock;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

static GOLDLEADER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TRY_IN_PSQL: &str = "SELECT pg_try_advisory_lock(hashtextextended('goldleader', 0))";

fn psql() -> Command {
    let mut command = Command::new("psql");
    command
        .arg(pglock::testdb::shared().url())
        .args(["--no-psqlrc", "--tuples-only", "--no-align", "--quiet"])
        .kill_on_drop(true);
    command
}

async fn psql_once(sql: &str) -> String {
    let output = psql()
        .args(["-c", sql])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run psql (package postgresql-client)");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn psql_sees_the_library_lock() {
    let _turn = GOLDLEADER.lock().await;
    let pool = common::pool(2);
    let guard = AdvisoryLock::new("goldleader")
        .try_acquire(&pool)
        .await
        .unwrap();
    assert_eq!(psql_once(TRY_IN_PSQL).await, "f", "held by the library");
    guard.release().await.unwrap();
    // psql's session ends with the command, so its lock goes with it.
    assert_eq!(psql_once(TRY_IN_PSQL).await, "t", "free after release");
}

#[tokio::test]
async fn the_library_sees_a_psql_lock() {
    let _turn = GOLDLEADER.lock().await;
    let pool = common::pool(2);
    let mut session = psql()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start psql");
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = BufReader::new(session.stdout.take().unwrap()).lines();
    stdin
        .write_all(b"SELECT pg_advisory_lock(hashtextextended('goldleader', 0));\n\\echo held\n")
        .await
        .unwrap();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .expect("psql answers")
            .unwrap()
            .expect("psql is running");
        if line.trim() == "held" {
            break;
        }
    }
    let lock = AdvisoryLock::new("goldleader");
    let busy = lock.try_acquire(&pool).await.unwrap_err();
    assert!(busy.is_busy(), "{busy:?}");

    stdin.write_all(b"\\q\n").await.unwrap();
    assert!(session.wait().await.unwrap().success());
    // psql's session is gone, and its lock with it; the server may take a moment
    // to clean up after the disconnect.
    let observer = common::observer().await;
    assert_eq!(
        common::gone_within(&observer, lock.key(), Duration::from_secs(1)).await,
        vec![]
    );
    lock.try_acquire(&pool)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}
