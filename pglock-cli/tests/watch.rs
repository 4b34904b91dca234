//! `pglock watch`: redraws the `ls` view and ends cleanly (exit 0) on Ctrl-C (SIGINT).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{raw_of_name, Db, Psql};

#[test]
fn watch_redraws_and_ends_on_ctrl_c() {
    let db = Db::shared();
    let name = "cli-watch";
    let _holder = Psql::start(
        &db.url,
        "cli-watch-holder",
        &format!("SELECT pg_advisory_lock(hashtextextended('{name}', 0));"),
    );
    let pid = db.pid_of("cli-watch-holder");
    db.wait_lock(pid, raw_of_name(name), true);

    let mut watch = Command::new(env!("CARGO_BIN_EXE_pglock"))
        .args(["watch", "--interval", "100ms", "--name", name])
        .env("DATABASE_URL", &db.url)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn pglock watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Two views that show the holder: the view is redrawn, not printed once.
    let mut views = 0;
    while views < 2 {
        let line = seen
            .recv_timeout(Duration::from_secs(30))
            .expect("watch keeps printing");
        if line.contains(name) && line.contains(&pid.to_string()) {
            views += 1;
        }
    }
    let status = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let status = watch.wait().expect("watch ends");
    assert_eq!(status.code(), Some(0), "Ctrl-C ends watch with exit 0");
}
