//! Starting, restarting and stopping the server of a throwaway cluster with `pg_ctl`.
//!
//! `pg_ctl` detaches the postmaster into a session of its own (a Ctrl-C aimed at the tests
//! does not reach it), sends its output to `server.log`, and with `-w` waits until the
//! postmaster reports that it accepts connections; we then also connect to its TCP port.

use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;

use super::bin::Binaries;
use super::builder::ClusterBuilder;
use super::command::{command_line, server_command};
use super::dir::ClusterDir;
use super::known::check_known;
use super::os_user::RunAs;
use super::tls_setup::tls_setup;
use super::{conf, initdb, port, TestDbError};

/// How long a start, restart or stop may take.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How many ports to try when the chosen one gets taken before the server binds it.
const PORT_TRIES: usize = 8;

/// A running throwaway server and its directory (stopped and removed on drop).
#[derive(Debug)]
pub(crate) struct Server {
    bin: Binaries,
    run_as: RunAs,
    port: u16,
    dir: ClusterDir,
    /// Every setting written to the settings file: TLS's first, then the caller's.
    settings: Vec<(String, String)>,
    /// The CA that signed the server's certificate, when TLS is on.
    ca: Option<CertificateDer<'static>>,
}

impl Server {
    /// Creates a directory, runs `initdb`, and starts a server as `options` say on a free
    /// port.
    pub(crate) fn create(options: &ClusterBuilder) -> Result<Server, TestDbError> {
        Server::create_on(options, port::pick_free_port)
    }

    /// [`Server::create`] on the ports `pick` gives, taking the next one whenever the server
    /// finds its port taken.
    fn create_on(
        options: &ClusterBuilder,
        mut pick: impl FnMut() -> std::io::Result<u16>,
    ) -> Result<Server, TestDbError> {
        let requested = options.setting_pairs();
        conf::render(0, Path::new(""), &requested)?; // refuse bad names before any work
        let bin = Binaries::find()?;
        let run_as = RunAs::detect()?;
        let dir = ClusterDir::create(&bin, run_as)?;
        initdb::initdb(&bin, run_as, &dir)?;
        let names: Vec<&str> = requested.iter().map(|(name, _)| *name).collect();
        check_known(&bin, run_as, &dir, &names)?;
        let (mut settings, ca) = tls_setup(options.tls, run_as, &dir)?;
        settings.extend(options.settings.iter().cloned());
        let mut server = Server {
            bin,
            run_as,
            port: 0,
            dir,
            settings,
            ca,
        };
        for attempt in 1..=PORT_TRIES {
            server.port = pick().map_err(TestDbError::io("find a free TCP port"))?;
            server.write_settings()?;
            match server.pg_ctl("start", &["start"]) {
                Err(TestDbError::Server { log_tail, .. })
                    if attempt < PORT_TRIES && log_tail.contains("Address already in use") =>
                {
                    continue
                }
                result => return result.map(|()| server),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// The CA that signed the server's certificate (None without TLS).
    pub(crate) fn ca(&self) -> Option<&CertificateDer<'static>> {
        self.ca.as_ref()
    }

    /// The TCP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub(crate) fn data(&self) -> &Path {
        self.dir.data()
    }

    /// The directory of the server programs.
    pub(crate) fn bin_dir(&self) -> &Path {
        self.bin.dir()
    }

    /// `pg_ctl restart -m fast`: same settings, same port; waits until it accepts connections.
    pub(crate) fn restart(&self) -> Result<(), TestDbError> {
        self.pg_ctl("restart", &["restart", "-m", "fast"])
    }

    /// `pg_ctl restart -m immediate`: a crash and its recovery; waits until it accepts
    /// connections again.
    pub(crate) fn restart_immediate(&self) -> Result<(), TestDbError> {
        self.pg_ctl("restart", &["restart", "-m", "immediate"])
    }

    /// `pg_ctl stop -m fast`: waits until the server is down.
    pub(crate) fn stop(&self) -> Result<(), TestDbError> {
        self.pg_ctl("stop", &["stop", "-m", "fast"])
    }

    /// `pg_ctl start` after [`Server::stop`]: same settings, same port.
    pub(crate) fn start(&self) -> Result<(), TestDbError> {
        self.pg_ctl("start", &["start"])
    }

    /// The postmaster's pid, from `postmaster.pid` (None while the server is down).
    pub(crate) fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    fn write_settings(&self) -> Result<(), TestDbError> {
        let settings: Vec<(&str, &str)> = self
            .settings
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let text = conf::render(self.port, self.dir.root(), &settings)?;
        let path = self.data().join(conf::FILE);
        std::fs::write(&path, text)
            .map_err(TestDbError::io(format!("write {}", path.display())))?;
        self.run_as.own(&path)
    }

    /// Runs `pg_ctl <args> -w`, then (unless stopping) waits until the port accepts TCP
    /// connections. Failures carry the server log written meanwhile.
    fn pg_ctl(&self, action: &'static str, args: &[&str]) -> Result<(), TestDbError> {
        let log_start = std::fs::metadata(self.dir.log()).map_or(0, |m| m.len());
        let mut cmd = server_command(&self.bin.program("pg_ctl"), self.run_as, self.dir.root());
        cmd.args(args)
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.log())
            .args(["-w", "-s", "-t", &TIMEOUT.as_secs().to_string()]);
        let line = command_line(&cmd);
        let out = cmd
            .output()
            .map_err(TestDbError::io(format!("run `{line}`")))?;
        let reason = if !out.status.success() {
            format!(
                "`{line}` failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        } else if action != "stop" && !self.accepts_tcp(Instant::now() + TIMEOUT) {
            format!(
                "nothing accepted connections on 127.0.0.1:{} within {TIMEOUT:?}",
                self.port
            )
        } else {
            return Ok(());
        };
        Err(TestDbError::Server {
            action,
            data_dir: self.data().to_path_buf(),
            port: self.port,
            reason,
            log_tail: log_tail(self.dir.log(), log_start),
        })
    }

    fn accepts_tcp(&self, deadline: Instant) -> bool {
        let addr = (Ipv4Addr::LOCALHOST, self.port).into();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The last lines of the log written since byte `start`.
fn log_tail(log: &Path, start: u64) -> String {
    const LINES: usize = 30;
    let mut text = String::new();
    let read = std::fs::File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(start))?;
        f.read_to_string(&mut text)
    });
    if let Err(e) = read {
        return format!("(could not read {}: {e})", log.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_taken_before_the_server_binds_it_is_replaced() {
        let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = taken.local_addr().unwrap().port();
        let mut ports = vec![port::pick_free_port().unwrap(), taken];
        let options = ClusterBuilder::default();
        let server = Server::create_on(&options, || Ok(ports.pop().unwrap())).unwrap();
        assert!(ports.is_empty(), "both ports were tried");
        assert_ne!(server.port(), taken);
        let log = std::fs::read_to_string(server.dir.log()).unwrap();
        assert!(log.contains("Address already in use"), "{log}");
    }
}
