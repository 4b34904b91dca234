//! Backend pids of pooled connections, remembered across checkouts. A connection
//! keeps its backend for as long as it lives, so its pid is asked once per
//! connection, not once per checkout: asking costs the server a statement and the
//! client a reply on every lock taken from a pool and given back.
//!
//! A connection is known by the address of its statement cache, which deadpool
//! makes once per connection and keeps behind an `Arc`. Each entry keeps a `Weak`
//! to that cache, so the address cannot be handed to another allocation while the
//! entry lives: an entry found for a live connection's address is that
//! connection's. Entries of closed connections are dropped as the map grows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use deadpool_postgres::{Object, StatementCache};

use crate::mutex::lock_unpoisoned;

/// Fewest entries at which closed connections' entries are dropped.
const FIRST_SWEEP: usize = 64;

struct Pids {
    by_cache: HashMap<usize, (Weak<StatementCache>, i32)>,
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
    let (_, pid) = pids.as_ref()?.by_cache.get(&address(client))?;
    Some(*pid)
}

/// Remembers that `client`'s connection runs on backend `pid`.
pub(super) fn remember(client: &Object, pid: i32) {
    let mut pids = lock_unpoisoned(&PIDS);
    let pids = pids.get_or_insert_with(|| Pids {
        by_cache: HashMap::new(),
        sweep_at: FIRST_SWEEP,
    });
    let cache = Arc::downgrade(&client.statement_cache);
    pids.by_cache.insert(address(client), (cache, pid));
    if pids.by_cache.len() >= pids.sweep_at {
        pids.by_cache
            .retain(|_, (cache, _)| cache.strong_count() > 0);
        pids.sweep_at = (2 * pids.by_cache.len()).max(FIRST_SWEEP);
    }
}
