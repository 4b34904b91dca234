//! `holders`: who holds or waits for a key, as the server sees it (backends and
//! prepared transactions alike), read without trusting a column to be non-NULL.

use std::time::SystemTime;

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use crate::error::Error;
use crate::lock::{LockId, LockMode};
use crate::sql;

/// A session that holds or waits for an advisory lock, from `pg_locks` joined with
/// `pg_stat_activity`; or a prepared transaction that holds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The backend's process id (`pg_terminate_backend(pid)` ends its session); `0`
    /// for a lock kept by a prepared transaction, which has no backend (see
    /// [`prepared`](Holder::prepared)).
    pub pid: i32,
    /// The client's `application_name`.
    pub application_name: String,
    /// The client's address; `None` for Unix-socket connections.
    pub client_addr: Option<String>,
    /// The session's state (`active`, `idle`, `idle in transaction`, ...).
    pub state: Option<String>,
    /// Since when it is in that state.
    pub state_since: Option<SystemTime>,
    /// The session's current or last statement: for pglock's lock statements, a
    /// comment names the lock and the call site.
    pub query: Option<String>,
    /// Exclusive or shared.
    pub mode: LockMode,
    /// Holds it (`true`) or waits for it (`false`).
    pub granted: bool,
    /// The `gid` of the prepared transaction that keeps this lock (`PREPARE
    /// TRANSACTION 'gid'`); it lasts until `COMMIT PREPARED` or `ROLLBACK PREPARED`.
    /// `None` for a lock of a backend.
    pub prepared: Option<String>,
}

/// Who holds or waits for `key` in this database: holders first, then waiters from
/// the longest waiting.
///
/// ```no_run
/// # async fn demo(pool: deadpool_postgres::Pool) -> Result<(), pglock_runtime::Error> {
/// for holder in pglock_runtime::holders(&pool, "goldleader").await? {
///     println!("{} {} since {:?}", holder.pid, if holder.granted { "holds" } else { "waits" }, holder.state_since);
/// }
/// # Ok(()) }
/// ```
pub async fn holders(pool: &Pool, key: impl Into<LockId>) -> Result<Vec<Holder>, Error> {
    let lock: LockId = key.into();
    let db = |source| Error::Db {
        lock: lock.clone(),
        source,
    };
    let client = pool.get().await.map_err(|source| Error::Pool {
        lock: lock.clone(),
        source,
    })?;
    let key = sql::PgLocksKey::of(lock.key());
    let rows = client
        .query(sql::HOLDERS, &key.params())
        .await
        .map_err(db)?;
    rows.iter()
        .map(holder)
        .collect::<Result<_, _>>()
        .map_err(db)
}

/// One row of [`sql::HOLDERS`]; a column of an unexpected type or NULL is an error,
/// never a panic.
fn holder(row: &Row) -> Result<Holder, tokio_postgres::Error> {
    let pid: Option<i32> = row.try_get(0)?;
    let shared: bool = row.try_get(6)?;
    Ok(Holder {
        pid: pid.unwrap_or(0),
        application_name: row.try_get(1)?,
        client_addr: row.try_get(2)?,
        state: row.try_get(3)?,
        state_since: row.try_get(4)?,
        query: row.try_get(5)?,
        mode: if shared {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        },
        granted: row.try_get(7)?,
        prepared: row.try_get(8)?,
    })
}
