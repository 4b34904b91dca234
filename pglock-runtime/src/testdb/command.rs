//! Running a server program as the right user and turning its failure into a clear error.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::os_user::RunAs;
use super::TestDbError;

/// A command for `program`, run as `run_as` in `cwd` (which that user can enter), with
/// English messages and no standard input.
pub(crate) fn server_command(program: &Path, run_as: RunAs, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd)
        .env("LC_ALL", "C")
        .env_remove("PGDATA")
        .stdin(Stdio::null());
    run_as.apply(&mut cmd);
    cmd
}

/// Runs `cmd` to completion; a failure to spawn or a non-zero exit is a [`TestDbError`]
/// carrying the command line, its output and `hint` (appended to the message).
pub(crate) fn run(cmd: &mut Command, hint: &str) -> Result<Output, TestDbError> {
    let line = command_line(cmd);
    let out = cmd
        .output()
        .map_err(TestDbError::io(format!("run `{line}`")))?;
    if out.status.success() {
        return Ok(out);
    }
    Err(TestDbError::Command {
        command: line,
        status: out.status.to_string(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        hint: if hint.is_empty() {
            String::new()
        } else {
            format!("; {hint}")
        },
    })
}

/// The program and its arguments, space separated, for messages.
pub(crate) fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
