//! Guarantee 1, mutual exclusion across processes: 4 copies of `examples/counter`
//! each do read–sleep–write increments of one counter row under
//! `#[advisory_locked(wait)]`, started at the same moment; the counter ends at exactly
//! the number of increments. The same programs with `--no-lock` are the control: they
//! lose updates, so the test can tell.
//!
//! The same through a `Locker`: 4 processes of 4 tasks each, every task
//! incrementing through `#[advisory_locked(wait)]` on a fn with a `&Locker`
//! parameter, so the tasks of a process queue in the process and the processes on
//! the server; and its control without the lock.

mod common;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

const PROCESSES: u32 = 4;
const INCREMENTS: u32 = 50;
/// Tasks per process through a Locker, and the increments of each.
const TASKS: u32 = 4;
const TASK_INCREMENTS: u32 = 20;

/// A fresh counter table with its row at 0; returns its name.
async fn counter_table(label: &str) -> String {
    let table = common::unique(label).replace(':', "_");
    let db = common::observer().await;
    db.batch_execute(&format!(
        "CREATE TABLE \"{table}\" (id int PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO \"{table}\" VALUES (1, 0);"
    ))
    .await
    .expect("create the counter table");
    table
}

/// Runs `PROCESSES` copies of the counter on `table`, `increments` each (per task),
/// with `flags`, released at the same moment once all are connected; returns the
/// counter's final value.
async fn run_counters(table: &str, increments: u32, flags: &[&str]) -> i64 {
    let binary = common::example_binary("counter");
    let mut children: Vec<Child> = (0..PROCESSES)
        .map(|_| {
            tokio::process::Command::new(&binary)
                .args([pglock::testdb::shared().url(), table])
                .args(["--increments", &increments.to_string(), "--barrier"])
                .args(flags)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .expect("spawn examples/counter")
        })
        .collect();
    let mut outputs = Vec::new();
    for child in &mut children {
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = stdout.next_line().await.unwrap();
        assert_eq!(ready.as_deref(), Some("ready"));
        outputs.push(stdout);
    }
    for child in &mut children {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
    }
    for (child, mut stdout) in children.into_iter().zip(outputs) {
        let done = stdout.next_line().await.unwrap();
        let status = child.wait_with_output().await.unwrap().status;
        assert!(
            status.success(),
            "a counter failed: {status}, said {done:?}"
        );
        assert!(done.is_some_and(|line| line.starts_with("done ")));
    }
    let db = common::observer().await;
    db.query_one(&format!("SELECT n FROM \"{table}\" WHERE id = 1"), &[])
        .await
        .unwrap()
        .get(0)
}

/// The control's verdict: fewer than `total` increments arrived.
fn assert_lost_updates(n: i64, total: u32) {
    println!("without the lock: {n} of {total}");
    assert!(
        n < total as i64,
        "read-sleep-write without a lock lost no update ({n}): the test cannot tell"
    );
}

#[tokio::test]
async fn four_processes_under_the_lock_lose_no_increment() {
    let table = counter_table("counter").await;
    let n = run_counters(&table, INCREMENTS, &[]).await;
    assert_eq!(n, (PROCESSES * INCREMENTS) as i64);
}

#[tokio::test]
async fn control_four_processes_without_the_lock_lose_increments() {
    let table = counter_table("counter-unlocked").await;
    let n = run_counters(&table, INCREMENTS, &["--no-lock"]).await;
    let total = PROCESSES * INCREMENTS;
    assert_lost_updates(n, total);
}

#[tokio::test]
async fn four_processes_of_four_tasks_through_a_locker_lose_no_increment() {
    let table = counter_table("counter-locker").await;
    let tasks = TASKS.to_string();
    let n = run_counters(&table, TASK_INCREMENTS, &["--locker", "--tasks", &tasks]).await;
    assert_eq!(n, (PROCESSES * TASKS * TASK_INCREMENTS) as i64);
}

#[tokio::test]
async fn control_four_processes_of_four_tasks_without_the_lock_lose_increments() {
    let table = counter_table("counter-locker-unlocked").await;
    let tasks = TASKS.to_string();
    let flags = ["--locker", "--tasks", &tasks, "--no-lock"];
    let n = run_counters(&table, TASK_INCREMENTS, &flags).await;
    let total = PROCESSES * TASKS * TASK_INCREMENTS;
    assert_lost_updates(n, total);
}
