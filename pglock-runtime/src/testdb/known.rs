//! Which setting names the installed server knows, so that a misspelt name is refused by
//! name instead of failing the start with a line in the server log.
//!
//! The server itself is asked (`postgres -C name`, which reads the configuration and exits
//! without starting anything), with an empty configuration file so that nothing but the
//! name is judged: `postgres --describe-config` would be one call for all, but it leaves
//! out some settings (`application_name`, for one).

use super::bin::Binaries;
use super::command::{run, server_command};
use super::dir::ClusterDir;
use super::os_user::RunAs;
use super::TestDbError;

/// Refuses the first of `names` that the server in `bin` does not know, asked against the
/// freshly initialised cluster in `dir` (before our settings are written). Names with a `.`
/// are custom settings (`extension.name`), which any server accepts.
pub(crate) fn check_known(
    bin: &Binaries,
    run_as: RunAs,
    dir: &ClusterDir,
    names: &[&str],
) -> Result<(), TestDbError> {
    for name in names.iter().filter(|n| !n.contains('.')) {
        // `postgres` refuses to run as root even to print a setting: run it as the server user.
        let mut cmd = server_command(&bin.program("postgres"), run_as, dir.root());
        cmd.arg("-D")
            .arg(dir.data())
            .args(["-c", "config_file=/dev/null", "-C", name]);
        match run(&mut cmd, "") {
            Ok(_) => {}
            Err(TestDbError::Command { output, .. })
                if output.contains("unrecognized configuration parameter") =>
            {
                return Err(TestDbError::UnknownSetting {
                    name: name.to_string(),
                    bin_dir: bin.dir().to_path_buf(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
