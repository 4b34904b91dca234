//! Creating the data directory of a throwaway cluster with `initdb`.

use std::io::Write;

use super::bin::Binaries;
use super::command::{run, server_command};
use super::conf;
use super::dir::ClusterDir;
use super::os_user::RunAs;
use super::TestDbError;

/// Runs `initdb` into `dir.data()`: trust authentication, UTF-8 (lock names are hashed as in
/// UTF-8 databases), locale C, superuser `postgres`, no fsync; then makes `postgresql.conf`
/// include our settings file.
pub(crate) fn initdb(bin: &Binaries, run_as: RunAs, dir: &ClusterDir) -> Result<(), TestDbError> {
    let mut cmd = server_command(&bin.program("initdb"), run_as, dir.root());
    cmd.arg("-D")
        .arg(dir.data())
        .args(["-A", "trust", "-E", "UTF8", "--locale=C", "-U", "postgres"])
        .arg("--no-sync");
    let hint = match run_as {
        RunAs::Me => String::new(),
        RunAs::User { .. } => format!(
            "running as root, so initdb runs as the `postgres` user, which must be able to \
             enter {}: set TMPDIR to a directory it can reach, such as /tmp",
            dir.root().display()
        ),
    };
    run(&mut cmd, &hint)?;
    let path = dir.data().join("postgresql.conf");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(conf::INCLUDE_LINE.as_bytes()))
        .map_err(TestDbError::io(format!("append to {}", path.display())))
}
