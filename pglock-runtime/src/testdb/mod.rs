//! The database pglock's tests, examples and benches talk to (crate feature `testdb`).
//!
//! - [`shared()`] is the process-wide database: `DATABASE_URL` when it is set, otherwise one
//!   throwaway cluster per process, started on first use.
//! - [`Cluster`] is a throwaway cluster of your own, always started from the installed server
//!   binaries, for tests that stop, restart or stall the server or need special settings.
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
//! # Why not the `pgtemp` crate
//!
//! `pgtemp` 0.7 was evaluated and not used: as root it runs `initdb` and `postgres` through
//! `sudo -u postgres`, and `sudo` is missing on many CI images and containers (this one
//! included); it cleans up only in `Drop`, so a static cluster, an abort or a SIGKILL leaves
//! the server running and its directory behind; it finds the binaries only on `PATH` (Debian
//! does not put `initdb` there); it does not wait until the server accepts connections (it
//! sleeps 100 ms); it picks the encoding and locale from the environment, while pglock needs
//! UTF-8 (lock names are hashed as in UTF-8 databases); and it pulls in `tokio` with all
//! features, `url` and `tempfile`. This module needs only `libc`.

mod bin;
mod cluster;
mod command;
mod conf;
mod db;
mod dir;
mod error;
mod initdb;
mod os_user;
mod port;
mod server;
mod shared;
mod watchdog;

pub use cluster::Cluster;
pub use db::TestDb;
pub use error::TestDbError;
pub use shared::shared;
