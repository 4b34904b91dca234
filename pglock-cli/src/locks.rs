//! Reading the advisory locks of the current database: `pg_locks` joined with
//! `pg_stat_activity` (who the session is) and `pg_prepared_xacts` (locks kept by a
//! prepared transaction, whose `pid` is NULL). The SQL lives here and nowhere else.

use tokio_postgres::types::FromSql;
use tokio_postgres::{Client, Row};

use crate::error::CliError;
use crate::keyspace::PgKey;

/// Every advisory lock row of the current database, holders before waiters, waiters
/// in the order they started waiting. Timestamps are UTC, ISO 8601.
const LOCKS: &str = "\
SELECT l.classid::pg_catalog.int8 AS classid, l.objid::pg_catalog.int8 AS objid,
       l.objsubid::pg_catalog.int4 AS objsubid,
       l.mode, l.granted, l.pid, p.gid,
       pg_catalog.to_char(l.waitstart AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS waiting_since,
       a.pid IS NOT NULL AS has_session,
       coalesce(a.query OPERATOR(pg_catalog.=) '<insufficient privilege>', false) AS hidden,
       a.usename::pg_catalog.text AS usename, a.application_name,
       pg_catalog.host(a.client_addr) AS client_addr, a.client_port,
       a.state, a.query,
       pg_catalog.to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS session_start,
       pg_catalog.to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS xact_start,
       pg_catalog.to_char(a.state_change AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS state_change,
       extract(epoch FROM pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) a.backend_start)::pg_catalog.float8
         AS session_age,
       extract(epoch FROM pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) a.state_change)::pg_catalog.float8
         AS state_age,
       extract(epoch FROM pg_catalog.statement_timestamp() OPERATOR(pg_catalog.-) l.waitstart)::pg_catalog.float8
         AS wait_age
  FROM pg_catalog.pg_locks l
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid
  LEFT JOIN LATERAL (
       -- A prepared transaction's locks share its virtualtransaction with the
       -- transactionid lock on its xid, which names it in pg_prepared_xacts.
       SELECT px.gid FROM pg_catalog.pg_locks t
         JOIN pg_catalog.pg_prepared_xacts px ON px.transaction OPERATOR(pg_catalog.=) t.transactionid
        WHERE l.pid IS NULL AND t.pid IS NULL AND t.locktype OPERATOR(pg_catalog.=) 'transactionid'
          AND t.virtualtransaction OPERATOR(pg_catalog.=) l.virtualtransaction
        LIMIT 1) p ON true
 WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory'
   AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                      WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
 ORDER BY l.classid, l.objid, l.objsubid, l.granted DESC, l.waitstart NULLS FIRST, l.pid";

/// The database and the server's time of the listing.
const CONTEXT: &str = "SELECT pg_catalog.current_database()::pg_catalog.text, \
     pg_catalog.to_char(pg_catalog.statement_timestamp() AT TIME ZONE 'UTC', \
     'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

/// One row of `pg_locks`: a holder or a waiter of one lock.
#[derive(Clone, Debug)]
pub struct LockRow {
    pub key: PgKey,
    pub mode: String,
    pub granted: bool,
    /// NULL for a lock kept by a prepared transaction.
    pub pid: Option<i32>,
    /// The prepared transaction's `gid` when `pid` is NULL.
    pub prepared: Option<String>,
    pub waiting_since: Option<String>,
    pub wait_age: Option<f64>,
    /// `None` when `pg_stat_activity` has no row for `pid` (a prepared transaction,
    /// or a session that ended between the two views).
    pub session: Option<Session>,
}

/// What `pg_stat_activity` says about a session. Every field but `user` and
/// `application` is NULL (`None`) when `hidden`.
#[derive(Clone, Debug)]
pub struct Session {
    /// The role may not see this session's details (another role's session, without
    /// `pg_read_all_stats`).
    pub hidden: bool,
    pub user: Option<String>,
    pub application: Option<String>,
    /// NULL for a Unix-socket connection.
    pub client_addr: Option<String>,
    pub client_port: Option<i32>,
    pub state: Option<String>,
    /// The running statement (state `active`) or the last one.
    pub query: Option<String>,
    pub session_start: Option<String>,
    pub xact_start: Option<String>,
    pub state_change: Option<String>,
    pub session_age: Option<f64>,
    pub state_age: Option<f64>,
}

/// A listing: where and when it was taken, and its rows.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub database: String,
    pub taken_at: String,
    pub rows: Vec<LockRow>,
}

/// Reads the current advisory locks.
pub async fn snapshot(client: &Client) -> Result<Snapshot, CliError> {
    let context = client
        .query_one(CONTEXT, &[])
        .await
        .map_err(|source| CliError::Query {
            what: "reading the current database",
            source,
        })?;
    let rows = client
        .query(LOCKS, &[])
        .await
        .map_err(|source| CliError::Query {
            what: "reading pg_locks",
            source,
        })?;
    Ok(Snapshot {
        database: get(&context, 0, "current_database")?,
        taken_at: get(&context, 1, "statement_timestamp")?,
        rows: rows.iter().map(lock_row).collect::<Result<_, _>>()?,
    })
}

fn lock_row(row: &Row) -> Result<LockRow, CliError> {
    let oid = |column: &'static str| -> Result<u32, CliError> {
        let value: i64 = col(row, column)?;
        u32::try_from(value)
            .map_err(|_| CliError::Unexpected(format!("{column} {value} is not an oid")))
    };
    let session = if col(row, "has_session")? {
        Some(Session {
            hidden: col(row, "hidden")?,
            user: col(row, "usename")?,
            application: col(row, "application_name")?,
            client_addr: col(row, "client_addr")?,
            client_port: col(row, "client_port")?,
            state: col(row, "state")?,
            query: col(row, "query")?,
            session_start: col(row, "session_start")?,
            xact_start: col(row, "xact_start")?,
            state_change: col(row, "state_change")?,
            session_age: col(row, "session_age")?,
            state_age: col(row, "state_age")?,
        })
    } else {
        None
    };
    Ok(LockRow {
        key: PgKey {
            classid: oid("classid")?,
            objid: oid("objid")?,
            objsubid: col(row, "objsubid")?,
        },
        mode: col(row, "mode")?,
        granted: col(row, "granted")?,
        pid: col(row, "pid")?,
        prepared: col(row, "gid")?,
        waiting_since: col(row, "waiting_since")?,
        wait_age: col(row, "wait_age")?,
        session,
    })
}

fn col<'a, T: FromSql<'a>>(row: &'a Row, column: &'static str) -> Result<T, CliError> {
    row.try_get(column)
        .map_err(|source| CliError::Reply { column, source })
}

fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    index: usize,
    column: &'static str,
) -> Result<T, CliError> {
    row.try_get(index)
        .map_err(|source| CliError::Reply { column, source })
}

#[cfg(test)]
mod tests {
    use super::{CONTEXT, LOCKS};

    /// The listing's statements leave nothing to the search_path: the runtime's
    /// scanner (bare operators, unqualified calls, casts and relations).
    #[test]
    fn the_listing_leaves_nothing_to_the_search_path() {
        for (name, text) in [("LOCKS", LOCKS), ("CONTEXT", CONTEXT)] {
            assert_eq!(
                pglock_runtime::__unqualified_sql(text),
                None,
                "{name}: {text}"
            );
        }
    }
}
