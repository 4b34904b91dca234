//! Live tests of the throwaway test database (`pglock_runtime::testdb`, feature `testdb`).
//!
//! Besides the usual tests, this binary re-runs itself as a child process (see `child`) to
//! prove that clusters are cleaned up when a test process panics, aborts or is killed.

mod child;
mod cleanup;
mod cluster;
mod pgbouncer;
mod settings;
mod shared;
mod support;
mod tls;
