//! The listing behind `ls`, `who`, `watch` and `release`: the rows of
//! [`locks`](crate::locks) grouped per lock (holders, then their waiters), with the
//! names and call sites that can be told. What the views print, not how.

use std::collections::HashMap;

use pglock_runtime::LockKey;

use crate::comment::{self, Site};
use crate::keyspace::PgKey;
use crate::locks::{LockRow, Snapshot};

/// The advisory locks of a database at one moment.
#[derive(Clone, Debug)]
pub struct Listing {
    pub database: String,
    pub taken_at: String,
    pub locks: Vec<Lock>,
}

/// One lock: its key, its name if known, who holds it and who waits for it.
#[derive(Clone, Debug)]
pub struct Lock {
    pub key: PgKey,
    pub name: Option<String>,
    pub holders: Vec<Entry>,
    pub waiters: Vec<Entry>,
}

/// A holder or a waiter, with the call site its statement's pglock comment names.
#[derive(Clone, Debug)]
pub struct Entry {
    pub row: LockRow,
    pub site: Option<Site>,
}

impl Listing {
    /// Groups `snapshot` per lock. A lock gets a name when one of `names`, or a name in
    /// the pglock comment of any session's statement, hashes to its key.
    pub fn build(snapshot: Snapshot, names: &[String]) -> Listing {
        let mut known: HashMap<PgKey, String> = HashMap::new();
        let comments = snapshot.rows.iter().filter_map(|row| {
            row.session
                .as_ref()?
                .query
                .as_deref()
                .and_then(comment::parse)
        });
        for name in comments.filter_map(|c| c.name) {
            known.insert(PgKey::of(LockKey::from_name(&name)), name);
        }
        for name in names {
            known.insert(PgKey::of(LockKey::from_name(name)), name.clone());
        }
        let mut locks: Vec<Lock> = Vec::new();
        for row in snapshot.rows {
            if locks.last().is_none_or(|lock| lock.key != row.key) {
                locks.push(Lock {
                    key: row.key,
                    name: known.get(&row.key).cloned(),
                    holders: Vec::new(),
                    waiters: Vec::new(),
                });
            }
            let Some(lock) = locks.last_mut() else {
                continue;
            };
            let entry = Entry {
                site: site_for(&row),
                row,
            };
            if entry.row.granted {
                lock.holders.push(entry);
            } else {
                lock.waiters.push(entry);
            }
        }
        Listing {
            database: snapshot.database,
            taken_at: snapshot.taken_at,
            locks,
        }
    }

    /// Only the locks that somebody waits for.
    pub fn waiting_only(mut self) -> Listing {
        self.locks.retain(|lock| !lock.waiters.is_empty());
        self
    }

    /// Only the lock of `key`.
    pub fn only(mut self, key: LockKey) -> Listing {
        let key = PgKey::of(key);
        self.locks.retain(|lock| lock.key == key);
        self
    }

    /// How many listed holders and waiters the role may not see the details of.
    pub fn hidden(&self) -> usize {
        self.entries()
            .filter(|e| e.row.session.as_ref().is_some_and(|s| s.hidden))
            .count()
    }

    /// Every holder and waiter.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.locks
            .iter()
            .flat_map(|lock| lock.holders.iter().chain(&lock.waiters))
    }
}

/// The call site of the pglock statement the session runs (a waiter) or ran last (a
/// holder), unless that statement names another lock.
fn site_for(row: &LockRow) -> Option<Site> {
    let query = row.session.as_ref()?.query.as_deref()?;
    let comment = comment::parse(query)?;
    match &comment.name {
        Some(name) if PgKey::of(LockKey::from_name(name)) != row.key => None,
        _ => comment.site,
    }
}

/// `shared` or `exclusive` (`ShareLock` / `ExclusiveLock` in `pg_locks`); any other
/// mode as `pg_locks` names it.
pub fn mode(pg_mode: &str) -> &str {
    match pg_mode {
        "ShareLock" => "shared",
        "ExclusiveLock" => "exclusive",
        other => other,
    }
}
