//! What the live tests share, one helper for each job: connections to the test
//! database (`server`), clusters that count their statements (`counted`), a small lock table filled
//! through a Locker (`lock_table`), one backend's pid and statement (`backend`), `pg_locks` as
//! the judge of who holds or waits for what (`pg_locks`), a session outside the
//! library that holds keys (`foreign`), the error type of annotated fns
//! (`app_error`), how their bodies end (`exit`), a nested wait dropped beside its
//! body's own query (`nested_cancel`), example binaries (`examples`), and a tracing
//! subscriber that keeps events (`capture`).
#![allow(dead_code, unused_imports)] // each test binary uses a different part

pub mod app_error;
pub mod backend;
pub mod capture;
pub mod counted;
pub mod examples;
pub mod exit;
pub mod foreign;
pub mod lock_table;
pub mod nested_cancel;
pub mod pg_locks;
pub mod server;

pub use app_error::AppError;
pub use examples::example_binary;
pub(crate) use exit::{leave, Exit};
pub use foreign::Foreign;
pub use pg_locks::{
    advisory_locks_of, assert_held_by_at_least, assert_released_within_1s, assert_waiting,
    backend_gone_within, columns, gone_within, holders, lock_rows, locks_of, waiter_within,
    LockRow,
};
pub use server::{named_pool, observer, pool, tls_observer, unique};
