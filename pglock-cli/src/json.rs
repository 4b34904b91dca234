//! `--json`: the listing in a stable schema, `"schema": "pglock.locks/1"`.
//!
//! Fields are only ever added within a schema version; a renamed, removed or retyped
//! field makes a new version. Absent values are `null`, never missing. The README
//! ("In production") documents every field.

use pglock_runtime::LockKey;
use serde::Serialize;

use crate::comment::Site;
use crate::keyspace::PgKey;
use crate::listing::{mode, Entry, Listing, Lock};

/// The schema's name and version.
pub const SCHEMA: &str = "pglock.locks/1";

#[derive(Serialize)]
struct Document<'a> {
    schema: &'static str,
    database: &'a str,
    taken_at: &'a str,
    complete: bool,
    locks: Vec<JsonLock<'a>>,
}

#[derive(Serialize)]
struct JsonLock<'a> {
    key: JsonKey,
    pg_locks: PgKey,
    name: Option<&'a str>,
    holders: Vec<JsonEntry<'a>>,
    waiters: Vec<JsonEntry<'a>>,
}

#[derive(Serialize)]
struct JsonKey {
    /// `bigint`, `pair`, or `unknown` (an `objsubid` that is neither 1 nor 2).
    space: &'static str,
    bigint: Option<i64>,
    pair: Option<[i32; 2]>,
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    pid: Option<i32>,
    mode: &'a str,
    prepared_transaction: Option<&'a str>,
    visible: bool,
    user: Option<&'a str>,
    application: Option<&'a str>,
    client_addr: Option<&'a str>,
    client_port: Option<i32>,
    state: Option<&'a str>,
    session_start: Option<&'a str>,
    xact_start: Option<&'a str>,
    state_change: Option<&'a str>,
    waiting_since: Option<&'a str>,
    site: Option<&'a Site>,
}

/// The JSON text of `listing`.
pub fn render(listing: &Listing) -> Result<String, serde_json::Error> {
    let document = Document {
        schema: SCHEMA,
        database: &listing.database,
        taken_at: &listing.taken_at,
        complete: listing.hidden() == 0,
        locks: listing.locks.iter().map(lock).collect(),
    };
    serde_json::to_string_pretty(&document)
}

fn lock(lock: &Lock) -> JsonLock<'_> {
    JsonLock {
        key: key(lock.key),
        pg_locks: lock.key,
        name: lock.name.as_deref(),
        holders: lock.holders.iter().map(entry).collect(),
        waiters: lock.waiters.iter().map(entry).collect(),
    }
}

fn key(key: PgKey) -> JsonKey {
    match key.key() {
        Some(LockKey::BigInt(k)) => JsonKey {
            space: "bigint",
            bigint: Some(k),
            pair: None,
        },
        Some(LockKey::Pair(a, b)) => JsonKey {
            space: "pair",
            bigint: None,
            pair: Some([a, b]),
        },
        None => JsonKey {
            space: "unknown",
            bigint: None,
            pair: None,
        },
    }
}

fn entry(entry: &Entry) -> JsonEntry<'_> {
    let row = &entry.row;
    let session = row.session.as_ref();
    let text =
        |f: fn(&crate::locks::Session) -> &Option<String>| session.and_then(|s| f(s).as_deref());
    JsonEntry {
        pid: row.pid,
        mode: mode(&row.mode),
        prepared_transaction: row.prepared.as_deref(),
        visible: !session.is_some_and(|s| s.hidden),
        user: text(|s| &s.user),
        application: text(|s| &s.application),
        client_addr: text(|s| &s.client_addr),
        client_port: session.and_then(|s| s.client_port),
        state: text(|s| &s.state),
        session_start: text(|s| &s.session_start),
        xact_start: text(|s| &s.xact_start),
        state_change: text(|s| &s.state_change),
        waiting_since: row.waiting_since.as_deref(),
        site: entry.site.as_ref(),
    }
}
