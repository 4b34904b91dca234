//! The database pglock's tests, examples and benches talk to (crate feature `testdb`).
//!
//! - [`shared()`] is the process-wide database: `DATABASE_URL` when it is set, otherwise one
//!   throwaway cluster per process, started on first use.
//! - [`Cluster`] is a throwaway cluster of your own, always started from the installed server
//!   binaries, for tests that stop, restart or stall the server or need special settings.
//!   [`Cluster::builder`] passes settings through (checked by name) and turns TLS on.
//! - [`PgBouncer`] is Debian's `pgbouncer` in transaction pooling mode in front of a
//!   [`Cluster`], started and cleaned up like it.
//!
//! # How a throwaway cluster runs
//!
//! The server binaries (`initdb`, `pg_ctl`, `postgres`) are taken from `PGLOCK_TESTDB_BINDIR`
//! if set, else `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`, else
//! `PATH`; if none has them, you get an error that says what to install: tests never skip.
//! `initdb -A trust -E UTF8 --locale=C -U postgres` fills a fresh directory under the
//! system temp dir (`TMPDIR`); the server listens on `127.0.0.1` only, on a free port, with
//! its Unix socket in that directory, durability off (`fsync`, `full_page_writes`,
//! `synchronous_commit`) and `max_connections = 200`. As root, every server program runs as
//! the `postgres` OS user (they refuse to run as root) and the directory belongs to it.
//!
//! # Cleanup, however the process ends
//!
//! Each cluster has a watchdog: a small `sh` process, in a process group of its own (so a
//! Ctrl-C or a group kill aimed at the tests does not hit it), whose standard input is a pipe
//! that only this process holds open. When the pipe reaches end of file — because the
//! [`Cluster`] was dropped, or because this process exited, panicked, aborted or was
//! SIGKILLed, which closes every descriptor it had — the watchdog wakes up, resumes the
//! server if a test had stopped it with SIGSTOP, runs `pg_ctl stop -m immediate` (SIGKILL if
//! that fails), and removes the directory. Dropping a [`Cluster`] waits for that to finish;
//! the [`shared()`] cluster, held in a static that is never dropped, is cleaned up by its
//! watchdog within moments of the process ending.
//!
//! # TLS
//!
//! With [`Tls::On`] or [`Tls::Required`] the cluster starts with `ssl = on` and a certificate
//! generated at start into its directory: a throwaway CA and a server certificate it signs
//! for `127.0.0.1` and `localhost`, the key mode 0600 and owned by the server's OS user (the
//! server refuses any other). [`Tls::Required`] also makes `pg_hba.conf` admit TCP clients
//! only over TLS (`hostssl`), so a plain connection is refused, as managed services do.
//! [`TestDb::tls_pool`] gives a deadpool pool with `sslmode=require` over a rustls
//! connector that trusts that CA and nothing else. In libpq `sslmode=require` means "encrypt,
//! don't verify"; in tokio-postgres verification is the connector's, and this one verifies
//! the chain and the name, so the test pools are as strict as `verify-full`.
//!
//! The TLS crates are rustls ones: `tokio-postgres-rustls` (the connector), `rustls` with the
//! `ring` provider, and `rcgen` (the certificates). They need no system TLS library, no
//! `libssl-dev` at build time and no `openssl` program at run time, so a fresh CI machine
//! needs nothing more than a C compiler (for `ring`), which building Rust already assumes;
//! the provider is named explicitly, so another rustls user in the same binary cannot change
//! it. They are maintained by the rustls project (rustls, rcgen) and the connector is the
//! one tokio-postgres users commonly pick; it speaks TLS 1.2 and 1.3, which managed PostgreSQL
//! services offer. `postgres-openssl` or
//! `postgres-native-tls` would have tied the tests to the system OpenSSL and the certificate
//! generation to the `openssl` command line.
//!
//! # PgBouncer
//!
//! [`PgBouncer::transaction_pooling`] runs the `pgbouncer` program (Debian's package:
//! `apt-get install -y pgbouncer`; `PGLOCK_TESTDB_PGBOUNCER` names another) in front of a
//! cluster, in the foreground, as the cluster's OS user, on a free port of 127.0.0.1, with
//! its own configuration, user list, pid file and log in a directory under `TMPDIR`, guarded
//! by a watchdog as the cluster's is. Debian 12 ships PgBouncer 1.18, which does not track
//! protocol-level named prepared statements (that needs 1.21 and `max_prepared_statements`):
//! through it they work only inside a transaction.
//!
//! # Why not the `pgtemp` crate
//!
//! `pgtemp` 0.7 was evaluated and not used: as root it runs `initdb` and `postgres` through
//! `sudo -u postgres`, and `sudo` is missing on many CI images and containers (this one
//! included); it cleans up only in `Drop`, so a static cluster, an abort or a SIGKILL leaves
//! the server running and its directory behind; it finds the binaries only on `PATH` (Debian
//! does not put `initdb` there); it does not wait until the server accepts connections (it
//! sleeps 100 ms); it picks the encoding and locale from the environment, while pglock needs
//! UTF-8 (lock names are hashed as in UTF-8 databases); and it pulls in `tokio` with all
//! features, `url` and `tempfile`. This module needs `libc`, and the TLS crates above.

mod bin;
mod bouncer_bin;
mod bouncer_conf;
mod builder;
mod cert;
mod cluster;
mod command;
mod conf;
mod db;
mod dir;
mod error;
mod hba;
mod initdb;
mod known;
mod os_user;
mod pgbouncer;
mod port;
mod server;
mod shared;
mod tls;
mod tls_setup;
mod watchdog;

pub use builder::{ClusterBuilder, Tls};
pub use cluster::Cluster;
pub use db::TestDb;
pub use error::TestDbError;
pub use pgbouncer::PgBouncer;
pub use shared::shared;
