//! `goldleader --mode lead` on the test database, while the test terminates the
//! leader's backend (the holder of the lock "goldleader" in `pg_locks`) twice: the
//! leadership hands over each time, and the run exits 0 with `overlaps: 0`, no two
//! terms overlapping, fences in time order, and at least 2 different leaders.

mod common;

use std::process::Stdio;
use std::time::Duration;

use pglock::LockKey;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The holder of the lock "goldleader" (its backend pid) once there is one other
/// than `not`, polling `pg_locks`.
async fn holder_other_than(observer: &tokio_postgres::Client, not: Option<i32>) -> i32 {
    let key = LockKey::from_name("goldleader");
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let holders = common::holders(observer, key).await;
            if let Some(pid) = holders.into_iter().find(|pid| Some(*pid) != not) {
                return pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // a poll, not a sync
        }
    })
    .await;
    found.expect("a (new) leader holds the lock within 10 s")
}

/// The number after `label` in `out`.
fn count(out: &str, label: &str) -> i64 {
    out.split_once(label)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a line with {label:?}"))
}

#[tokio::test]
async fn terminating_the_leaders_backend_hands_over_and_terms_stay_in_order() {
    let mut child = tokio::process::Command::new(common::example_binary("goldleader"))
        .args(["--mode", "lead", "--duration", "8", "--workers", "3"])
        .env("DATABASE_URL", pglock::testdb::shared().url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start goldleader");
    let stdout = child.stdout.take().unwrap();
    let reader = tokio::spawn(async move {
        let (mut lines, mut all) = (BufReader::new(stdout).lines(), String::new());
        while let Ok(Some(line)) = lines.next_line().await {
            all += &line;
            all.push('\n');
        }
        all
    });
    let observer = common::observer().await;
    let mut previous = None;
    for _ in 0..2 {
        let leader = holder_other_than(&observer, previous).await;
        observer
            .execute("SELECT pg_terminate_backend($1)", &[&leader])
            .await
            .unwrap();
        previous = Some(leader);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("goldleader ends in time")
        .unwrap();
    let out = reader.await.unwrap();
    println!("{out}");
    assert_eq!(status.code(), Some(0));
    assert_eq!(count(&out, "overlaps: "), 0);
    assert_eq!(count(&out, "term overlaps: "), 0);
    assert_eq!(
        count(&out, "fence inversions: "),
        0,
        "fences increase in time"
    );
    assert!(
        count(&out, "leaders: ") >= 2,
        "at least 2 different leaders"
    );
    assert!(out.contains("leader: worker "), "the view shows the leader");
}
