//! Which OS user runs the server programs: this process's user, or `postgres` when root.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::TestDbError;

/// The user that `initdb`, `pg_ctl`, `postgres` and the watchdog run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// This process's own user (not root).
    Me,
    /// Another user: `postgres`, because this process is root.
    User {
        /// Its user id.
        uid: u32,
        /// Its primary group id.
        gid: u32,
    },
}

impl RunAs {
    /// `Me` for a normal user; the `postgres` user when this process is root.
    pub(crate) fn detect() -> Result<RunAs, TestDbError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(RunAs::Me);
        }
        let (uid, gid) = lookup_user("postgres").ok_or(TestDbError::NoPostgresUser)?;
        if uid == 0 {
            return Err(TestDbError::NoPostgresUser);
        }
        Ok(RunAs::User { uid, gid })
    }

    /// Makes `cmd` run as this user.
    pub(crate) fn apply(self, cmd: &mut Command) {
        if let RunAs::User { uid, gid } = self {
            // std drops the supplementary groups of root when it switches user.
            cmd.uid(uid).gid(gid);
        }
    }

    /// Gives `path` to this user (nothing to do for `Me`).
    pub(crate) fn own(self, path: &Path) -> Result<(), TestDbError> {
        match self {
            RunAs::Me => Ok(()),
            RunAs::User { uid, gid } => {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(TestDbError::io(
                    format!("chown {} to postgres", path.display()),
                ))
            }
        }
    }
}

/// The uid and gid of the user called `name`, through the system's user database (NSS).
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    let mut buf_len = 4096;
    loop {
        let mut buf = vec![0 as libc::c_char; buf_len];
        // SAFETY: passwd is plain old data; getpwnam_r fills it and points its strings into buf.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and buf_len is buf's length.
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf_len < 1 << 20 {
            buf_len *= 4;
            continue;
        }
        return (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_uid_zero_and_strangers_are_unknown() {
        assert_eq!(lookup_user("root").map(|(uid, _)| uid), Some(0));
        assert_eq!(lookup_user("no-such-user-pglock"), None);
    }
}
