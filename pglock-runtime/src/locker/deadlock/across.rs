//! Deadlocks through Lockers of different processes (or of different Lockers):
//! cycles no single process can see, found from what the server shows everyone.
//!
//! Each wait a Locker makes in the server from inside an annotated body announces
//! the keys its task holds, and the backend holding each (see `announce`). A wait
//! that lasts longer than the server's `deadlock_timeout` (read once per Locker)
//! then checks, every `deadlock_timeout` while it lasts: one statement reads
//! `pg_locks` and the announcements of every waiting backend, and the check follows
//! waiter → the holders of the key it waits for → the waiters whose tasks hold that
//! key there (or a waiting backend holding it itself, as a pool's session does) →
//! ... back to itself. The waiter with the lowest backend pid among the announcing
//! waiters of a cycle is the one that gives up (every participant can tell which),
//! with [`Error::Deadlock`]; the others keep waiting until its body lets go.
//!
//! Why this design: it needs nothing but the server (no table, no extension, no
//! channel between processes), costs nothing before `deadlock_timeout` (one extra
//! prepare per announced wait), and every edge it follows is seen in one snapshot
//! of `pg_locks`, each announcement checked against it (a hold is believed only
//! where `pg_locks` shows that backend holding that key, and only the text of the
//! statement that is waiting). What it cannot see: locks taken outside pglock or
//! outside annotated bodies (nobody announces their holders), keys an enclosing
//! body holds through another Locker (their sessions are that Locker's to know),
//! waits through a pool (they announce nothing), keys held by a task
//! that waits in its own process behind another task's server wait (only the task
//! waiting in the server announces), announcements cut short by
//! `track_activity_query_size`, and processes whose detection is off.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures_util::FutureExt;
use tokio_postgres::SimpleQueryMessage;

use super::announce::{self, Announced, ServerKey};
use super::Deadlocks;
use crate::context::Held;
use crate::error::Error;
use crate::lock::{AdvisoryLock, LockId};
use crate::patience::Patience;
use crate::session::Session;
use crate::sql::{self, Op};
use crate::wait::{wait_for, wait_noted};

/// What a Locker reads from the server once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Settings {
    pub(super) deadlock_timeout: Duration,
    /// How much of a statement's text `pg_stat_activity.query` keeps, in bytes.
    pub(super) query_size: usize,
}

pub(crate) const SETTINGS: &str = "SELECT pg_catalog.current_setting('deadlock_timeout'), \
     pg_catalog.current_setting('track_activity_query_size')";

/// Every advisory wait of this database, the holders of the keys waited for, and
/// the text of each waiting statement. `pg_locks` is read first (its first row
/// takes the whole snapshot); a text read after it is kept only if that statement
/// started before its wait did, so it is the statement that waits in the snapshot.
pub(crate) const WAITS: &str = "WITH l AS MATERIALIZED (\
       SELECT pid, classid::pg_catalog.int8 AS c, objid::pg_catalog.int8 AS o, objsubid::pg_catalog.int2 AS s, granted, waitstart \
       FROM pg_catalog.pg_locks \
       WHERE locktype OPERATOR(pg_catalog.=) 'advisory' AND pid IS NOT NULL \
         AND database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database \
             WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())) \
     SELECT l.pid, l.c, l.o, l.s, l.granted, \
       CASE WHEN NOT l.granted THEN (SELECT a.query FROM pg_catalog.pg_stat_activity a \
         WHERE a.pid OPERATOR(pg_catalog.=) l.pid \
           AND a.query_start OPERATOR(pg_catalog.<=) l.waitstart) END \
     FROM l WHERE EXISTS (SELECT 1 FROM l w WHERE NOT w.granted \
       AND w.c OPERATOR(pg_catalog.=) l.c AND w.o OPERATOR(pg_catalog.=) l.o \
       AND w.s OPERATOR(pg_catalog.=) l.s)";

impl Deadlocks {
    /// Waits on `session` in the server's queue for `lock`, for the task holding
    /// `held`; a wait from inside annotated bodies announces their holds and, past
    /// `deadlock_timeout`, checks for a cycle through it.
    pub(in crate::locker) async fn wait_in_server(
        &self,
        pool: &Pool,
        held: &Held,
        session: &Arc<Session>,
        lock: &AdvisoryLock,
        patience: Patience,
    ) -> Result<(), Error> {
        let holds = self.holds_of(held);
        if holds.is_empty() || !patience.waits() {
            return wait_for(session, lock, patience).await;
        }
        let settings = self.settings(session).await;
        let budget = settings
            .query_size
            .saturating_sub(sql::statement(Op::WaitLimited, lock).len() + 2);
        let Some(note) = announce::note(&holds, budget) else {
            return wait_for(session, lock, patience).await;
        };
        let wait = wait_noted(session, lock, patience, Some(&note));
        let watch = watch(pool, session, lock, settings.deadlock_timeout);
        tokio::select! {
            biased;
            waited = wait => waited,
            deadlock = Box::pin(watch) => Err(deadlock),
        }
    }

    /// The server's settings, read on `session` the first time.
    async fn settings(&self, session: &Session) -> Settings {
        *self
            .settings
            .get_or_init(|| async {
                let read = session.client().simple_query(SETTINGS).await;
                let texts = read.ok().and_then(|messages| {
                    messages.into_iter().find_map(|m| match m {
                        SimpleQueryMessage::Row(row) => {
                            Some((row.get(0)?.to_owned(), row.get(1)?.to_owned()))
                        }
                        _ => None,
                    })
                });
                let settings = texts.and_then(|(timeout, size)| parse_settings(&timeout, &size));
                settings.unwrap_or_else(|| {
                    tracing::warn!("could not read deadlock_timeout and track_activity_query_size; assuming 1s and 1kB");
                    DEFAULTS
                })
            })
            .await
    }
}

/// PostgreSQL's defaults.
const DEFAULTS: Settings = Settings {
    deadlock_timeout: Duration::from_secs(1),
    query_size: 1024,
};

/// Checks every `period` until this wait is found in a cycle it must break.
async fn watch(pool: &Pool, session: &Session, lock: &AdvisoryLock, period: Duration) -> Error {
    let mut warned = false;
    loop {
        tokio::time::sleep(period).await;
        // Learnt with the wait, in its round trip; unknown means it cannot be told.
        let Some(me) = session.known_pid().now_or_never() else {
            continue;
        };
        match check(pool, period).await {
            Ok(waits) => {
                if let Some(cycle) = waits.cycle_to_break(me) {
                    return deadlock(lock, &waits, &cycle);
                }
            }
            Err(error) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(lock = %lock.id(), %error, "could not check for a deadlock across processes; trying again");
                }
            }
        }
    }
}

async fn check(pool: &Pool, period: Duration) -> Result<Waits, String> {
    let client = tokio::time::timeout(period, pool.get())
        .await
        .map_err(|_| "no pool connection free".to_owned())?
        .map_err(|e| e.to_string())?;
    let statement = client
        .prepare_cached(WAITS)
        .await
        .map_err(|e| e.to_string())?;
    let rows = client
        .query(&statement, &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(Waits::from_rows(rows.iter().map(|row| Row {
        pid: row.get(0),
        key: (row.get(1), row.get(2), row.get(3)),
        granted: row.get(4),
        query: row.get(5),
    })))
}

/// One row of [`WAITS`].
pub(super) struct Row {
    pub(super) pid: i32,
    pub(super) key: ServerKey,
    pub(super) granted: bool,
    pub(super) query: Option<String>,
}

/// The server's advisory waits at one moment.
#[derive(Default)]
pub(super) struct Waits {
    holders: HashMap<ServerKey, Vec<i32>>,
    /// Each waiting backend: the key it waits for.
    waiting: HashMap<i32, ServerKey>,
    /// The waiting backends that announce, and what.
    announced: HashMap<i32, HashSet<Announced>>,
    /// The call-site comment of each waiting statement that has one.
    sites: HashMap<i32, String>,
}

impl Waits {
    pub(super) fn from_rows(rows: impl Iterator<Item = Row>) -> Waits {
        let mut waits = Waits::default();
        for row in rows {
            if row.granted {
                waits.holders.entry(row.key).or_default().push(row.pid);
                continue;
            }
            waits.waiting.insert(row.pid, row.key);
            let Some(query) = row.query else { continue };
            if let Some(site) = announce::site(&query) {
                waits.sites.insert(row.pid, site.to_owned());
            }
            if let Some(holds) = announce::read(&query) {
                waits.announced.insert(row.pid, holds.into_iter().collect());
            }
        }
        waits
    }

    /// Whether `waiter`'s task holds `key` where `holder` holds it: announced, or
    /// held by the waiting backend itself.
    fn holds(&self, waiter: i32, key: ServerKey, holder: i32) -> bool {
        waiter == holder
            || self
                .announced
                .get(&waiter)
                .is_some_and(|a| a.contains(&Announced { key, holder }))
    }

    /// The waiting backends `waiter` waits for.
    fn blockers(&self, waiter: i32) -> Vec<i32> {
        let Some(key) = self.waiting.get(&waiter) else {
            return Vec::new();
        };
        let holders = self.holders.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let mut found: Vec<i32> = self
            .waiting
            .keys()
            .copied()
            .filter(|&other| other != waiter)
            .filter(|&other| holders.iter().any(|&h| self.holds(other, *key, h)))
            .collect();
        found.sort_unstable();
        found
    }

    /// A cycle through `me` that `me` must break: one in which no announcing waiter
    /// has a lower pid. Every participant of a cycle agrees on who that is, so one
    /// gives up. The cycle's waiters, starting with `me`.
    pub(super) fn cycle_to_break(&self, me: i32) -> Option<Vec<i32>> {
        if !self.announced.contains_key(&me) {
            return None;
        }
        let mut came_from: HashMap<i32, i32> = HashMap::new();
        let mut frontier = vec![me];
        while let Some(at) = frontier.pop() {
            for next in self.blockers(at) {
                if next == me {
                    return Some(path(me, at, &came_from));
                }
                let outranks = self.announced.contains_key(&next) && next < me;
                if outranks || came_from.contains_key(&next) {
                    continue;
                }
                came_from.insert(next, at);
                frontier.push(next);
            }
        }
        None
    }
}

fn path(me: i32, last: i32, came_from: &HashMap<i32, i32>) -> Vec<i32> {
    let mut cycle = vec![last];
    let mut at = last;
    while at != me {
        at = came_from[&at];
        cycle.push(at);
    }
    cycle.reverse();
    cycle
}

/// The error for this wait, told to `tracing` with every waiter on the cycle.
fn deadlock(lock: &AdvisoryLock, waits: &Waits, cycle: &[i32]) -> Error {
    let described: Vec<String> = cycle
        .iter()
        .map(|pid| {
            let key = waits.waiting.get(pid).copied().and_then(announce::lock_key);
            let key = key.map_or_else(|| "?".to_owned(), |k| k.to_string());
            match waits.sites.get(pid) {
                Some(site) => format!("backend {pid} waits for {key} ({site})"),
                None => format!("backend {pid} waits for {key}"),
            }
        })
        .collect();
    tracing::warn!(
        lock = lock.name().unwrap_or(""),
        key = %lock.key(),
        cycle = %described.join(" -> "),
        "deadlock through Lockers across processes: this wait gives up"
    );
    let mut ids = vec![lock.id().clone()];
    ids.extend(cycle.iter().skip(1).filter_map(|pid| {
        let key = announce::lock_key(*waits.waiting.get(pid)?)?;
        Some(LockId::from(key))
    }));
    Error::Deadlock {
        lock: lock.id().clone(),
        source: None,
        cycle: ids,
    }
}

/// Reads the two settings as the server prints them (`200ms`, `1s`, `1kB`).
pub(super) fn parse_settings(timeout: &str, size: &str) -> Option<Settings> {
    let deadlock_timeout = quantity(
        timeout,
        "ms",
        &[
            ("us", 1e-6),
            ("ms", 1e-3),
            ("s", 1.0),
            ("min", 60.0),
            ("h", 3600.0),
            ("d", 86400.0),
        ],
    )?;
    let query_size = quantity(size, "B", &[("B", 1.0), ("kB", 1024.0), ("MB", 1048576.0)])?;
    // A wait checks at least every 10 ms and at most every day: far outside that,
    // the setting means something we do not understand.
    let deadlock_timeout = Duration::try_from_secs_f64(deadlock_timeout).ok()?;
    let deadlock_timeout =
        deadlock_timeout.clamp(Duration::from_millis(10), Duration::from_secs(86400));
    (query_size >= 100.0).then_some(Settings {
        deadlock_timeout,
        query_size: query_size.min(1048576.0) as usize,
    })
}

/// `text` as a number of base units: digits, then one of `units` (or `default`).
fn quantity(text: &str, default: &str, units: &[(&str, f64)]) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse::<u64>().ok()? as f64;
    let unit = if unit.is_empty() { default } else { unit };
    let (_, scale) = units.iter().find(|(name, _)| *name == unit)?;
    Some(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(pid: i32, key: i64, holds: &[(i64, i32)]) -> Row {
        let holds: Vec<Announced> = holds
            .iter()
            .map(|&(k, holder)| Announced {
                key: (0, k, 1),
                holder,
            })
            .collect();
        Row {
            pid,
            key: (0, key, 1),
            granted: false,
            query: announce::note(&holds, 500),
        }
    }

    fn holding(pid: i32, key: i64) -> Row {
        Row {
            pid,
            key: (0, key, 1),
            granted: true,
            query: None,
        }
    }

    #[test]
    fn two_waiters_holding_each_others_key_one_breaks_the_cycle() {
        // 10 waits for 2 (held by session 20, for 11's task); 11 for 1 (session 21, 10's).
        let rows = [
            waiting(10, 2, &[(1, 21)]),
            waiting(11, 1, &[(2, 20)]),
            holding(20, 2),
            holding(21, 1),
        ];
        let waits = Waits::from_rows(rows.into_iter());
        assert_eq!(waits.cycle_to_break(10), Some(vec![10, 11]));
        assert_eq!(waits.cycle_to_break(11), None);
    }

    #[test]
    fn a_hold_believed_only_where_pg_locks_shows_it() {
        // 11 announces key 2 on session 20, but session 22 holds it now.
        let rows = [
            waiting(10, 2, &[(1, 21)]),
            waiting(11, 1, &[(2, 20)]),
            holding(22, 2),
            holding(21, 1),
        ];
        let waits = Waits::from_rows(rows.into_iter());
        assert_eq!(waits.cycle_to_break(10), None);
        assert_eq!(waits.cycle_to_break(11), None);
    }

    #[test]
    fn a_waiting_session_blocks_with_what_it_holds_itself() {
        // 30 is a pool's session: holds 1 itself and waits for 2; 10 (a Locker's
        // waiter) holds 2 on session 20 and waits for 1.
        let rows = [
            waiting(10, 1, &[(2, 20)]),
            holding(20, 2),
            holding(30, 1),
            Row {
                query: None,
                ..waiting(30, 2, &[])
            },
        ];
        let waits = Waits::from_rows(rows.into_iter());
        // 30 announces nothing, so the Locker's waiter breaks it whatever the pids.
        assert_eq!(waits.cycle_to_break(10), Some(vec![10, 30]));
        assert_eq!(waits.cycle_to_break(30), None);
    }

    #[test]
    fn a_chain_that_ends_is_no_cycle_and_three_parties_are_one() {
        let chain = [
            waiting(10, 2, &[(1, 21)]),
            waiting(11, 3, &[(2, 20)]),
            holding(20, 2),
            holding(21, 1),
            holding(22, 3),
        ];
        let waits = Waits::from_rows(chain.into_iter());
        assert!([10, 11].iter().all(|&p| waits.cycle_to_break(p).is_none()));
        let ring = [
            waiting(12, 2, &[(1, 21)]),
            waiting(11, 3, &[(2, 20)]),
            waiting(10, 1, &[(3, 22)]),
            holding(20, 2),
            holding(21, 1),
            holding(22, 3),
        ];
        let waits = Waits::from_rows(ring.into_iter());
        assert_eq!(waits.cycle_to_break(10), Some(vec![10, 12, 11]));
        assert_eq!(waits.cycle_to_break(11), None);
        assert_eq!(waits.cycle_to_break(12), None);
    }

    #[test]
    fn settings_are_read_as_the_server_prints_them() {
        let s = parse_settings("200ms", "1kB").unwrap();
        assert_eq!(s.deadlock_timeout, Duration::from_millis(200));
        assert_eq!(s.query_size, 1024);
        assert_eq!(
            parse_settings("1min", "4096").unwrap().deadlock_timeout,
            Duration::from_secs(60)
        );
        assert_eq!(
            parse_settings("1", "1kB").unwrap().deadlock_timeout,
            Duration::from_millis(10)
        );
        assert!(parse_settings("soon", "1kB").is_none());
        assert!(parse_settings("1s", "-1").is_none());
        assert!(parse_settings("1.5s", "1kB").is_none());
    }
}
