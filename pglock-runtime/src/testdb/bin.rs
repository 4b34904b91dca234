//! Finding the installed PostgreSQL server programs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::TestDbError;

/// The programs a throwaway cluster needs; a directory must hold all of them.
const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Environment variable naming the directory of the server programs, overriding the search.
pub(crate) const BINDIR_VAR: &str = "PGLOCK_TESTDB_BINDIR";

/// A directory holding `initdb`, `pg_ctl` and `postgres`.
#[derive(Clone, Debug)]
pub(crate) struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// `PGLOCK_TESTDB_BINDIR` if set, else `pg_config --bindir`, else the newest
    /// `/usr/lib/postgresql/*/bin`, else the first `PATH` entry with the programs.
    pub(crate) fn find() -> Result<Binaries, TestDbError> {
        if let Some(dir) = std::env::var_os(BINDIR_VAR).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            return match PROGRAMS.iter().find(|p| !is_executable(&dir.join(p))) {
                Some(program) => Err(TestDbError::BadBinDir { dir, program }),
                None => Ok(Binaries { dir }),
            };
        }
        let mut looked = Vec::new();
        let found = pg_config_bindir(&mut looked)
            .or_else(|| newest_debian_bindir(Path::new("/usr/lib/postgresql"), &mut looked))
            .or_else(|| path_bindir(&mut looked));
        match found {
            Some(dir) => Ok(Binaries { dir }),
            None => Err(TestDbError::NoBinaries {
                looked: looked.join(", "),
            }),
        }
    }

    /// The directory itself.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one of the programs in it, e.g. `initdb`.
    pub(crate) fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn has_programs(dir: &Path) -> bool {
    PROGRAMS.iter().all(|p| is_executable(&dir.join(p)))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pg_config_bindir(looked: &mut Vec<String>) -> Option<PathBuf> {
    looked.push("`pg_config --bindir`".into());
    let out = Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && has_programs(&dir)).then_some(dir)
}

/// The `bin` directory of the highest version under `root` (Debian's layout: `root/15/bin`).
fn newest_debian_bindir(root: &Path, looked: &mut Vec<String>) -> Option<PathBuf> {
    looked.push(format!("{}/*/bin", root.display()));
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_programs(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn path_bindir(looked: &mut Vec<String>) -> Option<PathBuf> {
    looked.push("PATH".into());
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_programs(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bindir(root: &Path, version: &str) {
        let bin = root.join(version).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for p in PROGRAMS {
            std::fs::write(bin.join(p), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(bin.join(p), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn newest_version_wins_numerically() {
        let root = std::env::temp_dir().join(format!("pglock-bin-test-{}", std::process::id()));
        for v in ["9.6", "15", "10", "notaversion"] {
            fake_bindir(&root, v);
        }
        std::fs::create_dir_all(root.join("16/bin")).unwrap(); // no programs: ignored
        let mut looked = Vec::new();
        let found = newest_debian_bindir(&root, &mut looked);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, Some(root.join("15/bin")));
        assert_eq!(looked, [format!("{}/*/bin", root.display())]);
    }

    #[test]
    fn no_binaries_message_says_what_to_install() {
        let msg = TestDbError::NoBinaries {
            looked: "`pg_config --bindir`, /usr/lib/postgresql/*/bin, PATH".into(),
        }
        .to_string();
        assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
        assert!(msg.contains("/usr/lib/postgresql/*/bin"), "{msg}");
    }
}
