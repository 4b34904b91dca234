//! Handoff inside a process skips the server, but must not starve other processes:
//! two processes of 8 tasks each, contending for one key through a Locker for 5 s,
//! both make progress. A Locker that never gives the key back to the server
//! (no handoff limit, no handoff window) is the control: there one process starves.

mod common;

use std::process::Stdio;

async fn contend(name: &str, tasks: usize, seconds: u64, unbounded: bool) -> tokio::process::Child {
    tokio::process::Command::new(common::example_binary("locker_contend"))
        .args([
            pglock::testdb::shared().url(),
            name,
            &tasks.to_string(),
            &seconds.to_string(),
        ])
        .args(unbounded.then_some("unbounded"))
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn examples/locker_contend")
}

async fn entries(child: tokio::process::Child) -> u64 {
    let output = child.wait_with_output().await.unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    text.trim()
        .strip_prefix("entries ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output: {text}"))
}

#[tokio::test]
async fn two_processes_of_eight_tasks_both_make_progress() {
    let name = common::unique("fairness");
    let (a, b) = (
        contend(&name, 8, 5, false).await,
        contend(&name, 8, 5, false).await,
    );
    let (a, b) = (entries(a).await, entries(b).await);
    let total = a + b;
    println!("entries: {a} and {b}");
    assert!(total > 0);
    for share in [a, b] {
        assert!(
            share * 5 >= total,
            "each process gets at least 20% of the entries: {a} vs {b}"
        );
    }
}

#[tokio::test]
async fn control_without_a_handoff_limit_one_process_starves() {
    let name = common::unique("unfair");
    let (a, b) = (
        contend(&name, 8, 3, true).await,
        contend(&name, 8, 3, true).await,
    );
    let (a, b) = (entries(a).await, entries(b).await);
    println!("entries: {a} and {b}");
    assert!(
        a.min(b) * 5 < a + b,
        "keeping the key in one process starves the other: {a} vs {b}"
    );
}
