//! `pglock release` against the real server: `--terminate --yes` frees the lock,
//! a run without a terminal and without `--yes` refuses and frees nothing, on a
//! terminal it asks and acts only on "y", a `--cancel` of an idle holder says the
//! session lock is still held while one of a running statement frees its
//! transaction's lock, and a pglock guard whose session is terminated reports lost.

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

/// Runs `pglock ARGS` under a pseudo-terminal (util-linux `script`), typing `answer`
/// (with its newline) on it. Everything the command prints, the prompt on stderr
/// included, comes out of the terminal, on `script`'s stdout.
fn on_a_terminal(url: &str, args: &str, answer: &str) -> std::process::Output {
    let command = format!("'{}' {args}", env!("CARGO_BIN_EXE_pglock"));
    let out = assert_cmd::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("DATABASE_URL", url)
        .write_stdin(format!("{answer}\n"))
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run pglock under script");
    out
}

#[test]
fn on_a_terminal_an_answer_of_n_frees_nothing() {
    let db = Db::shared();
    let name = "cli-release-tty-n";
    let raw = raw_of_name(name);
    let mut holder = Psql::start(&db.url, "cli-tty-n-holder", &lock_sql(name));
    let pid = db.pid_of("cli-tty-n-holder");
    db.wait_lock(pid, raw, true);

    let out = on_a_terminal(&db.url, &format!("release {name} --terminate"), "n");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("pg_terminate_backend) the session of pid {pid}")),
        "{text}"
    );
    assert!(text.contains("Proceed? [y/N]"), "it asks:\n{text}");
    assert!(text.contains("not confirmed; nothing done"), "{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(db.holders(raw), 1, "the lock is still held");
    assert!(holder.running(), "psql was not terminated");
}

#[test]
fn on_a_terminal_an_answer_of_y_releases() {
    let db = Db::shared();
    let name = "cli-release-tty-y";
    let raw = raw_of_name(name);
    let _holder = Psql::start(&db.url, "cli-tty-y-holder", &lock_sql(name));
    let pid = db.pid_of("cli-tty-y-holder");
    db.wait_lock(pid, raw, true);

    let out = on_a_terminal(&db.url, &format!("release {name} --terminate"), "y");
    let text = stdout(&out);
    assert!(text.contains("Proceed? [y/N]"), "it asks:\n{text}");
    assert!(
        text.contains(&format!(
            "pid {pid}: signalled; it no longer holds the lock"
        )),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_eq!(db.holders(raw), 0, "pg_locks shows no holder");
}

/// A holder inside a running statement: the cancel ends the statement, the error
/// aborts the transaction, and the transaction's lock goes with it.
#[test]
fn cancel_of_a_running_statement_frees_its_transaction_lock() {
    let db = Db::shared();
    let name = "cli-release-cancel-active";
    let raw = raw_of_name(name);
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtextextended('{name}', 0)); SELECT pg_sleep(60);"
    );
    let _holder = Psql::start(&db.url, "cli-cancel-active", &sql);
    let pid = db.pid_of("cli-cancel-active");
    db.wait_lock(pid, raw, true);
    db.wait_until(
        "the holder runs pg_sleep",
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = {pid} \
             AND state = 'active' AND query LIKE '%pg_sleep%')"
        ),
    );

    let out = pglock(&db.url)
        .args(["release", name, "--cancel", "--yes"])
        .assert()
        .success();
    let text = stdout(out.get_output());
    assert!(
        !text.contains("a session lock stays held"),
        "no warning for a running statement:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "pid {pid}: signalled; it no longer holds the lock"
        )),
        "{text}"
    );
    assert!(text.contains("is now free"), "{text}");
    assert_eq!(db.holders(raw), 0, "pg_locks shows no holder");
}

/// A lock held by pglock itself (a pool guard): once `release --terminate` ended its
/// session, the guard says its lock is lost.
#[test]
fn terminating_a_pglock_holder_makes_its_guard_report_lost() {
    let db = Db::shared();
    let name = "cli-release-pglock";
    let raw = raw_of_name(name);
    let pool = pglock_runtime::testdb::shared().pool(2);
    let guard = db
        .runtime
        .block_on(pglock_runtime::AdvisoryLock::new(name).acquire(&pool))
        .expect("acquire");
    let lost = {
        let _runtime = db.runtime.enter();
        guard.lost()
    };
    assert_eq!(db.holders(raw), 1, "premise: the guard holds the lock");
    assert!(!guard.is_lost());

    pglock(&db.url)
        .args(["release", name, "--terminate", "--yes"])
        .assert()
        .success();
    let patience = std::time::Duration::from_secs(30);
    db.runtime
        .block_on(async { tokio::time::timeout(patience, lost).await })
        .expect("the guard notices the loss");
    assert!(guard.is_lost());
    let released = db.runtime.block_on(guard.release());
    assert!(
        matches!(released, Err(pglock_runtime::Error::LockLost { .. })),
        "{released:?}"
    );
}
