//! `pglock release` against the real server: `--terminate --yes` frees the lock,
//! a run without a terminal and without `--yes` refuses and frees nothing, and a
//! `--cancel` of an idle holder says the session lock is still held.

mod common;

use common::{pglock, raw_of_name, stderr, stdout, Db, Psql};

fn lock_sql(name: &str) -> String {
    format!("SELECT pg_advisory_lock(hashtextextended('{name}', 0));")
}

#[test]
fn terminate_with_yes_frees_the_lock() {
    let db = Db::shared();
    let name = "cli-release-terminate";
    let raw = raw_of_name(name);
    let _holder = Psql::start(&db.url, "cli-rel-holder", &lock_sql(name));
    let pid = db.pid_of("cli-rel-holder");
    db.wait_lock(pid, raw, true);
    assert_eq!(db.holders(raw), 1, "premise: psql holds the lock");

    let out = pglock(&db.url)
        .args(["release", name, "--terminate", "--yes"])
        .write_stdin("")
        .assert()
        .success();
    let text = stdout(out.get_output());
    assert!(
        text.contains(&format!("pg_terminate_backend) the session of pid {pid}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "pid {pid}: signalled; it no longer holds the lock"
        )),
        "{text}"
    );
    assert!(text.contains("is now free"), "{text}");
    assert_eq!(db.holders(raw), 0, "pg_locks shows no holder");
    db.wait_until(
        "the terminated session is gone",
        &format!("SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {pid})"),
    );
}

#[test]
fn without_a_terminal_and_without_yes_it_refuses_and_frees_nothing() {
    let db = Db::shared();
    let name = "cli-release-refuse";
    let raw = raw_of_name(name);
    let mut holder = Psql::start(&db.url, "cli-refuse-holder", &lock_sql(name));
    let pid = db.pid_of("cli-refuse-holder");
    db.wait_lock(pid, raw, true);

    let out = pglock(&db.url)
        .args(["release", name, "--terminate"])
        // A "y" on a pipe is not a person's answer: only a terminal is asked.
        .write_stdin("y\n")
        .assert()
        .failure()
        .code(1);
    let text = stdout(out.get_output());
    assert!(
        text.contains(&format!("pid {pid}")),
        "it shows what it would do:\n{text}"
    );
    let err = stderr(out.get_output());
    assert!(err.contains("pass --yes to act; nothing done"), "{err}");
    assert_eq!(db.holders(raw), 1, "the lock is still held");
    assert!(holder.running(), "psql was not terminated");
    db.wait_lock(pid, raw, true);
}

#[test]
fn cancel_of_an_idle_holder_reports_the_lock_still_held() {
    let db = Db::shared();
    let name = "cli-release-cancel";
    let raw = raw_of_name(name);
    let mut holder = Psql::start(&db.url, "cli-cancel-holder", &lock_sql(name));
    let pid = db.pid_of("cli-cancel-holder");
    db.wait_lock(pid, raw, true);

    let out = pglock(&db.url)
        .args(["release", name, "--cancel", "--yes", "--wait", "1s"])
        .assert()
        .failure()
        .code(1);
    let text = stdout(out.get_output());
    assert!(
        text.contains("a session lock stays held"),
        "it warns first:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "pid {pid}: signalled, but it still holds the lock"
        )),
        "{text}"
    );
    assert!(stderr(out.get_output()).contains("did not let go"));
    assert_eq!(db.holders(raw), 1);
    assert!(holder.running());
}

#[test]
fn release_of_a_free_lock_is_refused() {
    let db = Db::shared();
    let out = pglock(&db.url)
        .args(["release", "cli-release-free", "--terminate", "--yes"])
        .assert()
        .failure()
        .code(1);
    let err = stderr(out.get_output());
    assert!(err.contains("nobody holds `cli-release-free`"), "{err}");
}

#[test]
fn release_needs_cancel_or_terminate() {
    let db = Db::shared();
    let out = pglock(&db.url)
        .args(["release", "x", "--yes"])
        .assert()
        .failure()
        .code(2);
    assert!(stderr(out.get_output()).contains("--cancel"));
}
