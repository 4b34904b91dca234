//! The metrics of feature `metrics`, through the `metrics` facade (so any exporter
//! works): `pglock_acquire_total{outcome}` and `pglock_wait_seconds{outcome}` per
//! acquisition, `pglock_held` while a guard holds its lock, `pglock_hold_seconds`
//! and `pglock_lost_total` when it lets go.
//!
//! Every series is labelled `name`, `key_space` (`bigint`/`pair`), `mode`
//! (`exclusive`/`shared`) and `source` (`pool`/`locker`/`xact`). `name` is the lock's
//! name only when it was fixed at compile time ([`AdvisoryLock::from_static`], the
//! attribute's literal keys): a name made at run time (`"order:{id}"`) or a bare key
//! is folded into [`DYNAMIC`], because one series per order id would grow a metric
//! store without bound.

use std::time::Duration;

use metrics::Label;

use crate::key::LockKey;
use crate::lock::{AdvisoryLock, LockMode};

/// The `name` label of a lock whose name is not known at compile time.
pub(crate) const DYNAMIC: &str = "(dynamic)";

/// The labels of a lock's series: name, key space, mode, source.
pub(crate) type Labels = [Label; 4];

pub(crate) fn labels(lock: &AdvisoryLock, source: &'static str) -> Labels {
    let name = lock.id().static_name().unwrap_or(DYNAMIC);
    let key_space = match lock.key() {
        LockKey::BigInt(_) => "bigint",
        LockKey::Pair(..) => "pair",
    };
    let mode = match lock.mode() {
        LockMode::Exclusive => "exclusive",
        LockMode::Shared => "shared",
    };
    [
        Label::from_static_parts("name", name),
        Label::from_static_parts("key_space", key_space),
        Label::from_static_parts("mode", mode),
        Label::from_static_parts("source", source),
    ]
}

/// An acquisition ended with `outcome` after waiting `waited`.
pub(crate) fn acquisition(labels: &Labels, outcome: &'static str, waited: Duration) {
    let mut with_outcome = labels.to_vec();
    with_outcome.push(Label::from_static_parts("outcome", outcome));
    metrics::counter!("pglock_acquire_total", with_outcome.clone()).increment(1);
    metrics::histogram!("pglock_wait_seconds", with_outcome).record(waited);
}

/// A guard holds its lock from now.
pub(crate) fn hold_started(labels: &Labels) {
    metrics::gauge!("pglock_held", labels.to_vec()).increment(1.0);
}

/// A guard let go of its lock after `held`; `lost` if its session was gone.
pub(crate) fn hold_ended(labels: &Labels, held: Duration, lost: bool) {
    metrics::gauge!("pglock_held", labels.to_vec()).decrement(1.0);
    metrics::histogram!("pglock_hold_seconds", labels.to_vec()).record(held);
    if lost {
        metrics::counter!("pglock_lost_total", labels.to_vec()).increment(1);
    }
}
