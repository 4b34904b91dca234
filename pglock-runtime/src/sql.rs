//! The SQL pglock runs, all of it: one statement text per operation, mode and key
//! space, with the key always a bind parameter (and its parameters built here too);
//! the `pg_locks` view of a key; and the statements that read `pg_locks`. Every
//! function, operator and relation is schema-qualified (`pg_catalog.`), so a
//! search_path cannot put another `pg_advisory_lock` (or `=`) in front of the server's.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::Mutex;

#[cfg(any(test, feature = "testdb"))]
pub(crate) mod lint;

use tokio_postgres::types::{ToSql, Type};

use crate::key::LockKey;
use crate::lock::{AdvisoryLock, CallSite, LockMode};
use crate::mutex::lock_unpoisoned;

/// What a statement does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `pg_try_advisory_lock`: returns whether it was granted.
    Try,
    /// `pg_advisory_lock`: waits in the server's queue.
    Wait,
    /// `pg_advisory_lock` under a `lock_timeout` given as the last parameter, set for
    /// this statement's transaction only (so nothing is left on the session).
    WaitLimited,
    /// `pg_advisory_unlock`: returns whether it was held.
    Unlock,
    /// `pg_advisory_unlock`, then at once `pg_try_advisory_lock` of the same key, in
    /// one statement: returns whether it was granted again, `NULL` when it was not
    /// held. The unlock grants the lock to a waiter in the server's queue before the
    /// try runs, so the try gets it back only when nobody else waited: a Locker gives
    /// its key back to other processes for the price of one round trip, not two.
    Relock,
    /// `pg_try_advisory_xact_lock`.
    TryXact,
    /// `pg_advisory_xact_lock`.
    WaitXact,
}

macro_rules! texts {
    ($func:literal) => {
        [
            concat!("SELECT pg_catalog.", $func, "($1::pg_catalog.int8)"),
            concat!(
                "SELECT pg_catalog.",
                $func,
                "($1::pg_catalog.int4, $2::pg_catalog.int4)"
            ),
            concat!("SELECT pg_catalog.", $func, "_shared($1::pg_catalog.int8)"),
            concat!(
                "SELECT pg_catalog.",
                $func,
                "_shared($1::pg_catalog.int4, $2::pg_catalog.int4)"
            ),
        ]
    };
}

const TRY: [&str; 4] = texts!("pg_try_advisory_lock");
const WAIT: [&str; 4] = texts!("pg_advisory_lock");
const WAIT_LIMITED: [&str; 4] = [
    "SELECT pg_catalog.pg_advisory_lock($1::pg_catalog.int8) FROM (SELECT pg_catalog.set_config('lock_timeout', $2, true)) AS lock_timeout",
    "SELECT pg_catalog.pg_advisory_lock($1::pg_catalog.int4, $2::pg_catalog.int4) FROM (SELECT pg_catalog.set_config('lock_timeout', $3, true)) AS lock_timeout",
    "SELECT pg_catalog.pg_advisory_lock_shared($1::pg_catalog.int8) FROM (SELECT pg_catalog.set_config('lock_timeout', $2, true)) AS lock_timeout",
    "SELECT pg_catalog.pg_advisory_lock_shared($1::pg_catalog.int4, $2::pg_catalog.int4) FROM (SELECT pg_catalog.set_config('lock_timeout', $3, true)) AS lock_timeout",
];
const UNLOCK: [&str; 4] = texts!("pg_advisory_unlock");
const RELOCK: [&str; 4] = [
    "SELECT CASE WHEN pg_catalog.pg_advisory_unlock($1::pg_catalog.int8) THEN pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8) END",
    "SELECT CASE WHEN pg_catalog.pg_advisory_unlock($1::pg_catalog.int4, $2::pg_catalog.int4) THEN pg_catalog.pg_try_advisory_lock($1::pg_catalog.int4, $2::pg_catalog.int4) END",
    "SELECT CASE WHEN pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int8) THEN pg_catalog.pg_try_advisory_lock_shared($1::pg_catalog.int8) END",
    "SELECT CASE WHEN pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int4, $2::pg_catalog.int4) THEN pg_catalog.pg_try_advisory_lock_shared($1::pg_catalog.int4, $2::pg_catalog.int4) END",
];
const TRY_XACT: [&str; 4] = texts!("pg_try_advisory_xact_lock");
const WAIT_XACT: [&str; 4] = texts!("pg_advisory_xact_lock");

/// The statement text for `op` on `lock`. Statements that take a lock carry a
/// comment naming the lock and its call site, so `pg_stat_activity.query` shows who
/// waits on what; the comment is built from sanitised text, never from raw input.
pub(crate) fn statement(op: Op, lock: &AdvisoryLock) -> Cow<'static, str> {
    let text = bare_statement(op, lock);
    if matches!(op, Op::Unlock | Op::Relock) {
        return Cow::Borrowed(text);
    }
    match Comment::of(lock) {
        Some(comment) => with_comment(text, comment),
        None => Cow::Borrowed(text),
    }
}

/// Most texts with a comment kept for the life of the process (see [`with_comment`]).
const MAX_COMMENTED_TEXTS: usize = 4096;

/// `text` with `comment`, formatted once per text, name and call site and kept, so
/// a lock statement is borrowed on every call rather than formatted (and hashed
/// anew) each time. Names and sites are fixed at compile time, so a program has as
/// many as it has lock call sites; past [`MAX_COMMENTED_TEXTS`] (a program leaking
/// names it makes at run time as `&'static str`) texts are formatted per call.
fn with_comment(text: &'static str, comment: Comment) -> Cow<'static, str> {
    type Address = (usize, usize);
    type Texts = HashMap<(Address, Option<Address>, usize), &'static str>;
    static TEXTS: Mutex<Option<Texts>> = Mutex::new(None);
    let name = comment
        .name
        .map(|name| (name.as_ptr() as usize, name.len()));
    let key = (
        (text.as_ptr() as usize, text.len()),
        name,
        comment.place.address(),
    );
    let mut texts = lock_unpoisoned(&TEXTS);
    let texts = texts.get_or_insert_with(HashMap::new);
    if let Some(known) = texts.get(&key) {
        return Cow::Borrowed(known);
    }
    let formatted = format!("{text} {comment}");
    if texts.len() >= MAX_COMMENTED_TEXTS {
        return Cow::Owned(formatted);
    }
    let kept: &'static str = Box::leak(formatted.into_boxed_str());
    texts.insert(key, kept);
    Cow::Borrowed(kept)
}

/// The statement text for `op` on `lock`, without the lock's comment: one of a few
/// fixed texts, for a session that takes many locks (a Locker's lock session, whose
/// pings name none of them) and so would otherwise prepare one text per lock name.
pub(crate) fn bare_statement(op: Op, lock: &AdvisoryLock) -> &'static str {
    let texts = match op {
        Op::Try => &TRY,
        Op::Wait => &WAIT,
        Op::WaitLimited => &WAIT_LIMITED,
        Op::Unlock => &UNLOCK,
        Op::Relock => &RELOCK,
        Op::TryXact => &TRY_XACT,
        Op::WaitXact => &WAIT_XACT,
    };
    let index = match (lock.mode(), lock.key()) {
        (LockMode::Exclusive, LockKey::BigInt(_)) => 0,
        (LockMode::Exclusive, LockKey::Pair(..)) => 1,
        (LockMode::Shared, LockKey::BigInt(_)) => 2,
        (LockMode::Shared, LockKey::Pair(..)) => 3,
    };
    texts[index]
}

/// The comment a lock statement carries, `/* pglock: ... */`: the lock's name (when
/// fixed at compile time) and its call site, built from sanitised text. Alone, it is
/// also the keepalive ping of a session holding the lock (see `Session::ping`): a
/// statement that is only a comment is an empty query to the server, and keeps
/// `pg_stat_activity.query` saying who holds what. Never longer than the lock
/// statement, so it fits `track_activity_query_size` wherever that statement does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Comment {
    name: Option<&'static str>,
    place: Place,
}

#[derive(Clone, Copy, Debug)]
enum Place {
    Site(&'static CallSite),
    Caller(&'static Location<'static>),
}

impl Place {
    /// Where the site is described: its address tells it from every other.
    fn address(self) -> usize {
        match self {
            Place::Site(site) => site as *const CallSite as usize,
            Place::Caller(caller) => caller as *const Location<'static> as usize,
        }
    }
}

impl Comment {
    /// The comment of `lock`'s statements; `None` when there is no site to name.
    pub(crate) fn of(lock: &AdvisoryLock) -> Option<Comment> {
        let place = match (lock.site(), lock.caller()) {
            (Some(site), _) => Place::Site(site),
            (None, Some(caller)) => Place::Caller(caller),
            (None, None) => return None,
        };
        // The name goes in only when it is fixed at compile time: names formatted at
        // run time (`order:7`) would make a new statement text, to prepare again, for
        // every key. pg_locks and `holders` show the key itself.
        Some(Comment {
            name: lock.id().static_name(),
            place,
        })
    }
}

impl std::fmt::Display for Comment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("/* pglock: ")?;
        if let Some(name) = self.name {
            write!(f, "`{}` ", comment_safe(name))?;
        }
        match self.place {
            Place::Site(site) => write!(
                f,
                "in {} at {}:{}",
                comment_safe(site.function),
                comment_safe(site.file),
                site.line
            )?,
            Place::Caller(caller) => {
                write!(f, "at {}:{}", comment_safe(caller.file()), caller.line())?
            }
        }
        f.write_str(" */")
    }
}

/// Many session-level tries and unlocks in one statement, run in the order given:
/// row `n` (from 1) of the answer is request `n`'s result. `$1` says what each
/// request does (see [`batch_op`]); `$2` holds its bigint key, `$3, $4` its pair key
/// (the other form is 0). One statement, so the server's end-of-transaction walk of
/// the session's lock table is paid once for the whole batch. A failed statement
/// keeps what its earlier rows did (session locks ignore transaction rollback).
pub(crate) const BATCH: &str = "SELECT r.n, CASE \
     WHEN r.op OPERATOR(pg_catalog.=) 0 THEN pg_catalog.pg_try_advisory_lock(r.k) \
     WHEN r.op OPERATOR(pg_catalog.=) 1 THEN pg_catalog.pg_try_advisory_lock(r.a, r.b) \
     WHEN r.op OPERATOR(pg_catalog.=) 2 THEN pg_catalog.pg_try_advisory_lock_shared(r.k) \
     WHEN r.op OPERATOR(pg_catalog.=) 3 THEN pg_catalog.pg_try_advisory_lock_shared(r.a, r.b) \
     WHEN r.op OPERATOR(pg_catalog.=) 4 THEN pg_catalog.pg_advisory_unlock(r.k) \
     WHEN r.op OPERATOR(pg_catalog.=) 5 THEN pg_catalog.pg_advisory_unlock(r.a, r.b) \
     WHEN r.op OPERATOR(pg_catalog.=) 6 THEN pg_catalog.pg_advisory_unlock_shared(r.k) \
     WHEN r.op OPERATOR(pg_catalog.=) 7 THEN pg_catalog.pg_advisory_unlock_shared(r.a, r.b) \
     WHEN r.op OPERATOR(pg_catalog.=) 8 THEN CASE WHEN pg_catalog.pg_advisory_unlock(r.k) THEN pg_catalog.pg_try_advisory_lock(r.k) END \
     WHEN r.op OPERATOR(pg_catalog.=) 9 THEN CASE WHEN pg_catalog.pg_advisory_unlock(r.a, r.b) THEN pg_catalog.pg_try_advisory_lock(r.a, r.b) END \
     WHEN r.op OPERATOR(pg_catalog.=) 10 THEN CASE WHEN pg_catalog.pg_advisory_unlock_shared(r.k) THEN pg_catalog.pg_try_advisory_lock_shared(r.k) END \
     WHEN r.op OPERATOR(pg_catalog.=) 11 THEN CASE WHEN pg_catalog.pg_advisory_unlock_shared(r.a, r.b) THEN pg_catalog.pg_try_advisory_lock_shared(r.a, r.b) END \
     END \
     FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int2[]), pg_catalog.unnest($2::pg_catalog.int8[]), \
       pg_catalog.unnest($3::pg_catalog.int4[]), pg_catalog.unnest($4::pg_catalog.int4[])) \
       WITH ORDINALITY AS r(op, k, a, b, n)";

/// The parameter types of [`BATCH`], for preparing it.
pub(crate) const BATCH_TYPES: [Type; 4] = [
    Type::INT2_ARRAY,
    Type::INT8_ARRAY,
    Type::INT4_ARRAY,
    Type::INT4_ARRAY,
];

/// The code of `op` (`Try` or `Unlock`) on `lock` in [`BATCH`]'s `$1`.
pub(crate) fn batch_op(op: Op, lock: &AdvisoryLock) -> i16 {
    let unlock = match op {
        Op::Unlock => 4,
        Op::Relock => 8,
        _ => 0,
    };
    let shared = match lock.mode() {
        LockMode::Exclusive => 0,
        LockMode::Shared => 2,
    };
    let pair = match lock.key() {
        LockKey::BigInt(_) => 0,
        LockKey::Pair(..) => 1,
    };
    unlock + shared + pair
}

/// The parameters of one [`BATCH`] statement, built request by request.
#[derive(Default)]
pub(crate) struct BatchParams {
    ops: Vec<i16>,
    bigints: Vec<i64>,
    firsts: Vec<i32>,
    seconds: Vec<i32>,
}

impl BatchParams {
    /// Adds a request: `op` (`Try` or `Unlock`) on `lock`.
    pub(crate) fn push(&mut self, op: Op, lock: &AdvisoryLock) {
        let (bigint, first, second) = match lock.key() {
            LockKey::BigInt(k) => (k, 0, 0),
            LockKey::Pair(a, b) => (0, a, b),
        };
        self.ops.push(batch_op(op, lock));
        self.bigints.push(bigint);
        self.firsts.push(first);
        self.seconds.push(second);
    }

    /// `$1 .. $4` of [`BATCH`].
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.ops, &self.bigints, &self.firsts, &self.seconds]
    }
}

/// Keeps what can never end or nest a comment: `*/` and `/*` are broken up, control
/// characters dropped, and the text cut to a length that keeps statements short.
fn comment_safe(text: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::with_capacity(text.len().min(MAX));
    let mut prev = '\0';
    for c in text.chars().take(MAX) {
        let c = match c {
            '/' if prev == '*' => '|',
            '*' if prev == '/' => '|',
            c if c.is_control() => ' ',
            c => c,
        };
        out.push(c);
        prev = c;
    }
    out
}

/// A limit as `lock_timeout` reads it: whole milliseconds, at least 1 (0 would
/// mean no limit at all). `None` above what PostgreSQL accepts (`i32::MAX` ms,
/// about 24.8 days): such a limit is no limit, and the wait goes without one.
pub(crate) fn lock_timeout(limit: std::time::Duration) -> Option<String> {
    let millis = limit.as_millis().max(1);
    (millis <= i32::MAX as u128).then(|| format!("{millis}ms"))
}

/// The bind parameters of `key`, with their types: `int8`, or `int4, int4`.
pub(crate) fn typed_params(key: &LockKey) -> Vec<(&(dyn ToSql + Sync), Type)> {
    match key {
        LockKey::BigInt(k) => vec![(k, Type::INT8)],
        LockKey::Pair(a, b) => vec![(a, Type::INT4), (b, Type::INT4)],
    }
}

/// The bind parameters of `key`, for a prepared statement (which knows their types).
pub(crate) fn params(key: &LockKey) -> Vec<&(dyn ToSql + Sync)> {
    typed_params(key)
        .into_iter()
        .map(|(param, _)| param)
        .collect()
}

/// The condition on `pg_locks` (as `l`) that picks the advisory key in `$1, $2, $3`
/// (see [`PgLocksKey`]) in the current database. Operators are qualified too
/// (`OPERATOR(pg_catalog.=)`): an `=` in a schema ahead of `pg_catalog` on the
/// search_path would otherwise be chosen for these text and oid comparisons.
macro_rules! is_advisory_key {
    () => {
        "l.locktype OPERATOR(pg_catalog.=) 'advisory' \
         AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
         AND l.classid::pg_catalog.int8 OPERATOR(pg_catalog.=) $1 AND l.objid::pg_catalog.int8 OPERATOR(pg_catalog.=) $2 AND l.objsubid OPERATOR(pg_catalog.=) $3::pg_catalog.int2"
    };
}

/// How many times this session holds the lock (mode in `$4`), read from
/// `pg_locks`. Answers what a cancelled or timed-out wait really did, instead of
/// guessing.
pub(crate) const HELD_BY_ME: &str = concat!(
    "SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l WHERE ",
    is_advisory_key!(),
    " AND l.granted AND l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() AND l.mode OPERATOR(pg_catalog.=) $4"
);

/// Whether a backend holding the lock (mode in `$4`) is running a statement now
/// (NULL when nobody holds it).
pub(crate) const HOLDER_IS_ACTIVE: &str = concat!(
    "SELECT pg_catalog.bool_or(a.state OPERATOR(pg_catalog.=) 'active') \
     FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid WHERE ",
    is_advisory_key!(),
    " AND l.granted AND l.mode OPERATOR(pg_catalog.=) $4"
);

/// Whether backend `$1` runs a statement while holding an advisory lock: asked by
/// pid for a pool session, which may have been reused for other locks since the
/// one it was first watched for.
pub(crate) const BACKEND_IS_ACTIVE: &str =
    "SELECT a.state OPERATOR(pg_catalog.=) 'active' FROM pg_catalog.pg_stat_activity a \
     WHERE a.pid OPERATOR(pg_catalog.=) $1 AND EXISTS (SELECT 1 FROM pg_catalog.pg_locks l \
     WHERE l.pid OPERATOR(pg_catalog.=) a.pid AND l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted)";

/// The session's backend pid, sent with the simple protocol so that it goes out in
/// one message, pipelined with the statement sent after it.
pub(crate) const BACKEND_PID: &str = "SELECT pg_catalog.pg_backend_pid()";

/// Cancels backend `$1` only while it runs statement `$2` and waits for a lock: the
/// check and the signal are one statement, so a cancel meant for a wait cannot land
/// on another statement the session runs before or after it. One row when sent.
pub(crate) const CANCEL_IF_WAITING: &str = "SELECT pg_catalog.pg_cancel_backend(a.pid) \
     FROM pg_catalog.pg_stat_activity a \
     WHERE a.pid OPERATOR(pg_catalog.=) $1 AND a.state OPERATOR(pg_catalog.=) 'active' \
     AND a.wait_event_type OPERATOR(pg_catalog.=) 'Lock' AND a.query OPERATOR(pg_catalog.=) $2";

/// Whether backend `$1` runs nothing, or only statement `$2`, as the server sees it now.
pub(crate) const RUNS_AT_MOST: &str = "SELECT a.state OPERATOR(pg_catalog.=) 'idle' \
     OR (a.state OPERATOR(pg_catalog.=) 'active' AND a.query OPERATOR(pg_catalog.=) $2) \
     FROM pg_catalog.pg_stat_activity a WHERE a.pid OPERATOR(pg_catalog.=) $1";

/// Who holds or waits for the key, holders first, then waiters from the longest
/// waiting (see [`crate::holders()`]).
pub(crate) const HOLDERS: &str = concat!(
    "SELECT l.pid, coalesce(a.application_name, ''), pg_catalog.host(a.client_addr), \
     a.state, a.state_change, a.query, l.mode OPERATOR(pg_catalog.=) 'ShareLock', l.granted, p.gid \
     FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid \
     LEFT JOIN LATERAL (",
    // A prepared transaction's locks (pid NULL) share its virtualtransaction with
    // the transactionid lock on its xid, which names it in pg_prepared_xacts.
    "SELECT px.gid FROM pg_catalog.pg_locks t \
       JOIN pg_catalog.pg_prepared_xacts px ON px.transaction OPERATOR(pg_catalog.=) t.transactionid \
      WHERE l.pid IS NULL AND t.pid IS NULL AND t.locktype OPERATOR(pg_catalog.=) 'transactionid' \
        AND t.virtualtransaction OPERATOR(pg_catalog.=) l.virtualtransaction LIMIT 1) p ON true WHERE ",
    is_advisory_key!(),
    " ORDER BY l.granted DESC, a.state_change"
);

/// This session's backend: pid and start (exact `numeric` text, the same in every
/// session whatever its float settings), for [`END_BACKEND`].
pub(crate) const BACKEND: &str =
    "SELECT a.pid, EXTRACT(epoch FROM a.backend_start)::pg_catalog.text \
     FROM pg_catalog.pg_stat_activity a \
     WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()";

/// Terminates the backend `$1` if it is still the one that started at `$2` (see
/// [`BACKEND`]); a pid reused by another session is left alone.
pub(crate) const END_BACKEND: &str = "SELECT pg_catalog.pg_terminate_backend(a.pid) \
     FROM pg_catalog.pg_stat_activity a WHERE a.pid OPERATOR(pg_catalog.=) $1 \
     AND EXTRACT(epoch FROM a.backend_start)::pg_catalog.text OPERATOR(pg_catalog.=) $2";

/// `pg_locks`' view of a key: `classid`, `objid` (oids, read as `int8`) and
/// `objsubid`. A bigint key is split into its high and low 32 bits with objsubid
/// 1; a pair is its two halves with objsubid 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PgLocksKey {
    classid: i64,
    objid: i64,
    objsubid: i16,
}

impl PgLocksKey {
    pub(crate) fn of(key: LockKey) -> Self {
        let (classid, objid, objsubid) = match key {
            LockKey::BigInt(k) => ((k as u64 >> 32) as i64, (k as u64 & 0xffff_ffff) as i64, 1),
            LockKey::Pair(a, b) => (a as u32 as i64, b as u32 as i64, 2),
        };
        PgLocksKey {
            classid,
            objid,
            objsubid,
        }
    }

    /// `classid`, `objid` and `objsubid`, as `pg_locks` shows them.
    pub(crate) fn parts(&self) -> (i64, i64, i16) {
        (self.classid, self.objid, self.objsubid)
    }

    /// `$1, $2, $3` of the `pg_locks` statements above.
    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.classid, &self.objid, &self.objsubid]
    }
}

/// `pg_locks.mode` of a lock in `mode`.
pub(crate) fn pg_locks_mode(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Exclusive => "ExclusiveLock",
        LockMode::Shared => "ShareLock",
    }
}

/// Ends the backend of the session it runs on (a lock session in doubt). Sent on the
/// session itself: no other connection (and no pid) is needed, and it runs after
/// every request already queued.
pub(crate) const END_OWN_BACKEND: &str =
    "SELECT pg_catalog.pg_terminate_backend(pg_catalog.pg_backend_pid())";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement the runtime sends: the tables of lock texts (with and without
    /// the call-site comment), the `pg_locks` and session statements here, the
    /// fencing token's and the cross-process deadlock check's. The CLI's are checked
    /// by its own test with the same scanner.
    fn every_statement() -> Vec<(String, String)> {
        use crate::fence;
        use crate::locker::deadlock::across;
        let mut all: Vec<(String, String)> = [
            ("TRY", &TRY),
            ("WAIT", &WAIT),
            ("WAIT_LIMITED", &WAIT_LIMITED),
            ("UNLOCK", &UNLOCK),
            ("RELOCK", &RELOCK),
            ("TRY_XACT", &TRY_XACT),
            ("WAIT_XACT", &WAIT_XACT),
        ]
        .iter()
        .flat_map(|(name, texts)| texts.iter().map(move |t| (name.to_string(), t.to_string())))
        .collect();
        static SITE: CallSite = CallSite {
            function: "ship = f(",
            file: "src/a.rs",
            line: 3,
        };
        let lock = AdvisoryLock::from_static("o = r(", LockKey::BigInt(1)).at(&SITE);
        for op in [
            Op::Try,
            Op::Wait,
            Op::WaitLimited,
            Op::Unlock,
            Op::Relock,
            Op::TryXact,
            Op::WaitXact,
        ] {
            all.push((
                format!("statement({op:?})"),
                statement(op, &lock).into_owned(),
            ));
        }
        for (name, text) in [
            ("BATCH", BATCH),
            ("HELD_BY_ME", HELD_BY_ME),
            ("HOLDER_IS_ACTIVE", HOLDER_IS_ACTIVE),
            ("BACKEND_IS_ACTIVE", BACKEND_IS_ACTIVE),
            ("BACKEND_PID", BACKEND_PID),
            ("CANCEL_IF_WAITING", CANCEL_IF_WAITING),
            ("RUNS_AT_MOST", RUNS_AT_MOST),
            ("HOLDERS", HOLDERS),
            ("BACKEND", BACKEND),
            ("END_BACKEND", END_BACKEND),
            ("END_OWN_BACKEND", END_OWN_BACKEND),
            ("fence::TAKE", fence::TAKE),
            ("across::SETTINGS", across::SETTINGS),
            ("across::WAITS", across::WAITS),
        ] {
            all.push((name.to_string(), text.to_string()));
        }
        all
    }

    #[test]
    fn every_statement_leaves_nothing_to_the_search_path() {
        for (name, text) in every_statement() {
            assert_eq!(lint::unqualified(&text), None, "{name}: {text}");
        }
    }

    #[test]
    fn texts_pick_function_mode_and_key_space() {
        let pair = AdvisoryLock::new((1, 2)).shared();
        assert_eq!(
            statement(Op::Unlock, &pair),
            "SELECT pg_catalog.pg_advisory_unlock_shared($1::pg_catalog.int4, $2::pg_catalog.int4)"
        );
        let big = AdvisoryLock::new(7_i64);
        assert_eq!(
            statement(Op::TryXact, &big),
            "SELECT pg_catalog.pg_try_advisory_xact_lock($1::pg_catalog.int8)"
        );
    }

    #[test]
    fn batch_codes_pick_function_mode_and_key_space() {
        let code = |op, lock: AdvisoryLock| batch_op(op, &lock);
        assert_eq!(code(Op::Try, AdvisoryLock::new(7_i64)), 0);
        assert_eq!(code(Op::Try, AdvisoryLock::new((1, 2))), 1);
        assert_eq!(code(Op::Try, AdvisoryLock::new(7_i64).shared()), 2);
        assert_eq!(code(Op::Unlock, AdvisoryLock::new((1, 2)).shared()), 7);
        assert_eq!(code(Op::Relock, AdvisoryLock::new(7_i64)), 8);
        assert_eq!(code(Op::Relock, AdvisoryLock::new((1, 2)).shared()), 11);
        for (n, function) in [
            "pg_try_advisory_lock(r.k)",
            "pg_try_advisory_lock(r.a, r.b)",
            "pg_try_advisory_lock_shared(r.k)",
            "pg_try_advisory_lock_shared(r.a, r.b)",
            "pg_advisory_unlock(r.k)",
            "pg_advisory_unlock(r.a, r.b)",
            "pg_advisory_unlock_shared(r.k)",
            "pg_advisory_unlock_shared(r.a, r.b)",
        ]
        .iter()
        .enumerate()
        {
            let branch = format!("OPERATOR(pg_catalog.=) {n} THEN pg_catalog.{function} ");
            assert!(BATCH.contains(&branch), "{branch}");
        }
    }

    #[test]
    fn lock_timeout_never_turns_a_limit_into_no_limit() {
        use std::time::Duration;
        assert_eq!(
            lock_timeout(Duration::from_micros(10)).as_deref(),
            Some("1ms")
        );
        assert_eq!(
            lock_timeout(Duration::from_millis(1500)).as_deref(),
            Some("1500ms")
        );
    }

    #[test]
    fn lock_timeout_above_the_servers_range_is_no_limit() {
        use std::time::Duration;
        let most = Duration::from_millis(i32::MAX as u64);
        assert_eq!(lock_timeout(most), Some(format!("{}ms", i32::MAX)));
        assert_eq!(lock_timeout(most + Duration::from_millis(1)), None);
        assert_eq!(lock_timeout(Duration::MAX), None);
    }

    #[test]
    fn comment_cannot_be_closed_by_a_name() {
        static SITE: CallSite = CallSite {
            function: "ship",
            file: "src/a.rs",
            line: 3,
        };
        let lock = AdvisoryLock::from_static("x */ DROP TABLE t; /*", LockKey::BigInt(1)).at(&SITE);
        let text = statement(Op::Wait, &lock);
        assert_eq!(text.matches("*/").count(), 1, "{text}");
        assert!(text.ends_with("in ship at src/a.rs:3 */"), "{text}");
        // A name formatted at run time stays out of the text.
        let dynamic = AdvisoryLock::new("order:7").at(&SITE);
        assert_eq!(
            statement(Op::Try, &dynamic),
            "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8) /* pglock: in ship at src/a.rs:3 */"
        );
    }

    #[test]
    fn the_ping_comment_is_the_lock_statements_own() {
        static SITE: CallSite = CallSite {
            function: "lead",
            file: "src/l.rs",
            line: 8,
        };
        let lock = AdvisoryLock::from_static("leader */", LockKey::BigInt(1)).at(&SITE);
        let comment = Comment::of(&lock).expect("a site to name").to_string();
        assert_eq!(comment, "/* pglock: `leader *|` in lead at src/l.rs:8 */");
        for op in [
            Op::Try,
            Op::Wait,
            Op::WaitLimited,
            Op::TryXact,
            Op::WaitXact,
        ] {
            let text = statement(op, &lock);
            assert!(text.ends_with(&format!(" {comment}")), "{text}");
        }
        assert!(Comment::of(&AdvisoryLock::new(1_i64)).is_none());
    }

    #[test]
    fn a_commented_text_is_formatted_once_per_site_and_kept() {
        static HERE: CallSite = CallSite {
            function: "keep",
            file: "src/k.rs",
            line: 1,
        };
        static THERE: CallSite = CallSite {
            function: "keep",
            file: "src/k.rs",
            line: 2,
        };
        let here = AdvisoryLock::from_static("kept", LockKey::BigInt(1)).at(&HERE);
        let (first, again) = (statement(Op::Try, &here), statement(Op::Try, &here));
        let (Cow::Borrowed(first), Cow::Borrowed(again)) = (first, again) else {
            panic!("kept texts are borrowed");
        };
        assert_eq!(first.as_ptr(), again.as_ptr(), "formatted once");
        assert_eq!(first, format!("{} {}", TRY[0], Comment::of(&here).unwrap()));
        let there = AdvisoryLock::from_static("kept", LockKey::BigInt(1)).at(&THERE);
        assert!(statement(Op::Try, &there).ends_with("src/k.rs:2 */"));
        assert!(statement(Op::Wait, &here).starts_with(WAIT[0]));
    }

    #[test]
    fn pg_locks_columns_split_keys_as_the_server_does() {
        let columns = |classid, objid, objsubid| PgLocksKey {
            classid,
            objid,
            objsubid,
        };
        assert_eq!(
            PgLocksKey::of(LockKey::BigInt(-1)),
            columns(0xffff_ffff, 0xffff_ffff, 1)
        );
        assert_eq!(
            PgLocksKey::of(LockKey::BigInt(1 << 32 | 5)),
            columns(1, 5, 1)
        );
        assert_eq!(
            PgLocksKey::of(LockKey::Pair(-1, 2)),
            columns(0xffff_ffff, 2, 2)
        );
    }
}
