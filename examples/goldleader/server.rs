//! What the server says of a run: the lock's row in `pg_locks`, and per worker the
//! sessions its lock pool has open and whether one of them holds the lock.

use deadpool_postgres::Client;
use pglock::LockKey;
use tokio_postgres::Error;

use crate::entries::application_name;

/// The name of the lock the workers take (also spelled out in each
/// `#[advisory_locked]` of the worker, which needs a literal).
pub const LOCK: &str = "goldleader";

/// The lock's `classid` and `objid` in `pg_locks` (its `objsubid` is 1: a bigint key).
pub fn lock_columns() -> (i64, i64) {
    match LockKey::from_name(LOCK) {
        LockKey::BigInt(k) => ((k as u64 >> 32) as i64, (k as u64 & 0xffff_ffff) as i64),
        LockKey::Pair(..) => unreachable!("a name maps to a bigint key"),
    }
}

/// A condition on `$2` (classid), `$3` (objid) and `$4` (an `application_name`):
/// a session with that name holds the lock now.
pub const HELD_BY: &str = "EXISTS (
    SELECT FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid::int8 = $2 AND l.objid::int8 = $3 AND a.application_name = $4)";

/// One worker's lock sessions, as the server sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Connections of its lock pool open now.
    pub open: u32,
    /// Whether one of them holds the lock now.
    pub holding: bool,
}

/// Every worker's lock sessions, by worker.
pub async fn sessions(db: &Client, run: u32, workers: u32) -> Result<Vec<Sessions>, Error> {
    let names: Vec<String> = (0..workers).map(|w| application_name(run, w)).collect();
    let (classid, objid) = lock_columns();
    let rows = db
        .query(
            "SELECT a.application_name, count(*), bool_or(l.granted IS TRUE)
             FROM pg_catalog.pg_stat_activity a
             LEFT JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory'
                 AND l.granted AND l.objsubid = 1
                 AND l.classid::int8 = $2 AND l.objid::int8 = $3
             WHERE a.application_name = ANY($1) GROUP BY a.application_name",
            &[&names, &classid, &objid],
        )
        .await?;
    let mut sessions = vec![Sessions::default(); workers as usize];
    for row in rows {
        let name: String = row.get(0);
        let open: i64 = row.get(1);
        if let Some(worker) = names.iter().position(|x| *x == name) {
            sessions[worker] = Sessions {
                open: open.try_into().unwrap_or(u32::MAX),
                holding: row.get(2),
            };
        }
    }
    Ok(sessions)
}
