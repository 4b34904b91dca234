//! Backend pids of pooled connections, and their backends' start, remembered
//! across checkouts. A connection keeps its backend for as long as it lives, so its
//! pid is asked once per connection, not once per checkout: asking costs the server
//! a statement and the client a reply on every lock taken from a pool and given
//! back. The start is asked once too: it comes from `pg_stat_activity`, which costs
//! the server about 2 ms with a couple of hundred backends, and a Locker's loss
//! watch asks it of every waiting connection it watches (see
//! [`crate::loss::Backend`]).
//!
//! A connection is known by the address of its statement cache, which deadpool
//! makes once per connection and keeps behind an `Arc`. Each entry keeps a `Weak`
//! to that cache, so the address cannot be handed to another allocation while the
//! entry lives: an entry found for a live connection's address is that
//! connection's. Entries of closed connections are dropped as the map grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use deadpool_postgres::{Object, StatementCache};

use crate::loss::Backend;
use crate::mutex::lock_unpoisoned;

/// Fewest entries at which closed connections' entries are dropped.
const FIRST_SWEEP: usize = 64;

/// What is known of one connection's backend.
struct Known {
    /// The connection, alive while this upgrades.
    cache: Weak<StatementCache>,
    pid: i32,
    /// The backend's start, once asked.
    started: Option<String>,
}

struct Pids {
    by_cache: HashMap<usize, Known>,
    /// The size at which the next sweep runs: twice what the last one left, so
    /// sweeping costs O(1) per entry added.
    sweep_at: usize,
}

static PIDS: Mutex<Option<Pids>> = Mutex::new(None);

fn address(client: &Object) -> usize {
    Arc::as_ptr(&client.statement_cache) as usize
}

/// The pid remembered for `client`'s connection, if it was ever learnt.
pub(super) fn remembered(client: &Object) -> Option<i32> {
    let pids = lock_unpoisoned(&PIDS);
    Some(pids.as_ref()?.by_cache.get(&address(client))?.pid)
}

/// The backend remembered for `client`'s connection, if its start was ever asked.
pub(super) fn remembered_backend(client: &Object) -> Option<Backend> {
    let pids = lock_unpoisoned(&PIDS);
    let known = pids.as_ref()?.by_cache.get(&address(client))?;
    Some(Backend {
        pid: known.pid,
        started: known.started.clone()?,
    })
}

/// Remembers that `client`'s connection runs on backend `pid`.
pub(super) fn remember(client: &Object, pid: i32) {
    remember_known(client, pid, None);
}

/// Remembers that `client`'s connection runs on `backend`.
pub(super) fn remember_backend(client: &Object, backend: &Backend) {
    remember_known(client, backend.pid, Some(backend.started.clone()));
}

fn remember_known(client: &Object, pid: i32, started: Option<String>) {
    let mut pids = lock_unpoisoned(&PIDS);
    let pids = pids.get_or_insert_with(|| Pids {
        by_cache: HashMap::new(),
        sweep_at: FIRST_SWEEP,
    });
    let known = pids.by_cache.entry(address(client)).or_insert(Known {
        cache: Arc::downgrade(&client.statement_cache),
        pid,
        started: None,
    });
    // An entry kept for this address is this connection's (see the module docs).
    known.pid = pid;
    known.started = started.or(known.started.take());
    if pids.by_cache.len() >= pids.sweep_at {
        pids.by_cache
            .retain(|_, known| known.cache.strong_count() > 0);
        pids.sweep_at = (2 * pids.by_cache.len()).max(FIRST_SWEEP);
    }
}
