//! The server settings of a throwaway cluster, written to a file that `postgresql.conf`
//! includes (so they survive `pg_ctl restart` and need no shell quoting).

use std::path::Path;

use super::TestDbError;

/// Name of the settings file inside the data directory.
pub(crate) const FILE: &str = "pglock-testdb.conf";

/// The line appended to `postgresql.conf` once, after `initdb`.
pub(crate) const INCLUDE_LINE: &str = "\n# pglock testdb settings\ninclude 'pglock-testdb.conf'\n";

/// Settings that make tests fast: a throwaway cluster needs no durability.
const FAST: [(&str, &str); 4] = [
    ("fsync", "off"),
    ("full_page_writes", "off"),
    ("synchronous_commit", "off"),
    ("max_connections", "200"),
];

/// Settings the cluster manages itself: where it listens is what its URL says.
const RESERVED: [&str; 3] = ["listen_addresses", "port", "unix_socket_directories"];

/// Unix socket paths are limited to about 107 bytes, `/.s.PGSQL.NNNNN` included.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// The settings file for a server on 127.0.0.1:`port` with its socket in `socket_dir`: the
/// fast defaults, then `extra` (later lines win, so `extra` overrides the defaults).
pub(crate) fn render(
    port: u16,
    socket_dir: &Path,
    extra: &[(&str, &str)],
) -> Result<String, TestDbError> {
    let socket_dir = socket_dir.to_string_lossy();
    // A socket path too long for the kernel would fail the start: listen on TCP only then.
    let socket_dir = if socket_dir.len() <= MAX_SOCKET_DIR_LEN {
        socket_dir
    } else {
        "".into()
    };
    let port = port.to_string();
    let base = [
        ("listen_addresses", "127.0.0.1"),
        ("port", port.as_str()),
        ("unix_socket_directories", socket_dir.as_ref()),
    ];
    for (name, _) in extra {
        check_name(name)?;
    }
    let mut text = String::new();
    for (name, value) in base.iter().chain(&FAST).chain(extra) {
        text.push_str(&format!("{name} = '{}'\n", quote(value)));
    }
    Ok(text)
}

fn check_name(name: &str) -> Result<(), TestDbError> {
    let reason = if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        "not a parameter name; use one such as max_connections (letters, digits, `_` and `.`)"
    } else if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        "the cluster chooses where it listens (127.0.0.1, a free port, a socket in its directory) \
         and its URL says so"
    } else {
        return Ok(());
    };
    Err(TestDbError::InvalidSetting {
        name: name.to_string(),
        reason,
    })
}

/// `value` with `'` and `\` escaped for a single-quoted string in postgresql.conf.
fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_settings_come_last_and_are_quoted() {
        let text = render(5433, Path::new("/tmp/x"), &[("application_name", "it's")]).unwrap();
        assert!(text.starts_with("listen_addresses = '127.0.0.1'\nport = '5433'\n"));
        assert!(text.contains("unix_socket_directories = '/tmp/x'\n"));
        assert!(text.contains("fsync = 'off'\n"));
        assert!(text.ends_with("application_name = 'it''s'\n"), "{text}");
    }

    #[test]
    fn bad_names_are_refused() {
        let err = render(5433, Path::new("/tmp"), &[("fsync = on #", "x")]).unwrap_err();
        assert!(matches!(err, TestDbError::InvalidSetting { .. }), "{err}");
        assert!(err.to_string().contains("not a parameter name"), "{err}");
    }

    #[test]
    fn where_it_listens_is_not_for_callers_to_set() {
        for name in ["port", "Listen_Addresses", "unix_socket_directories"] {
            let err = render(5433, Path::new("/tmp"), &[(name, "1")]).unwrap_err();
            assert!(
                err.to_string().contains("chooses where it listens"),
                "{err}"
            );
        }
    }

    #[test]
    fn long_socket_dirs_fall_back_to_tcp_only() {
        let long = format!("/tmp/{}", "d".repeat(120));
        let text = render(5433, Path::new(&long), &[]).unwrap();
        assert!(text.contains("unix_socket_directories = ''\n"), "{text}");
    }
}
