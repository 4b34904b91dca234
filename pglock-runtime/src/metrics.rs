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
//!
//! Each label set's keys are made once, the first time the set is seen, and kept
//! for the process ([`Series`]): a locked call then builds no key, allocates nothing
//! and hashes nothing for its metrics. Built per event, the keys (label vectors and
//! their hashes) cost a contended Locker handoff about a tenth of its time, with
//! no recorder installed. The sets are bounded as statement texts are: compile-time
//! names times two key spaces, two modes and three sources. The keys are
//! registered with the recorder at each event, as the facade's macros do, so a
//! recorder installed later (or a thread's local one) sees every event.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{Key, Label, Level, Metadata};

use crate::key::LockKey;
use crate::lock::{AdvisoryLock, LockMode};
use crate::mutex::lock_unpoisoned;
use crate::outcome::Outcome;

/// The `name` label of a lock whose name is not known at compile time.
pub(crate) const DYNAMIC: &str = "(dynamic)";

/// What the facade's macros would say of our metrics: their module, at `INFO`.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The keys of one label set's series, one per metric (and per outcome).
pub(crate) struct Series {
    acquire_total: [Key; Outcome::ALL.len()],
    wait_seconds: [Key; Outcome::ALL.len()],
    held: Key,
    hold_seconds: Key,
    lost_total: Key,
}

/// The labels every series of a lock carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct LabelSet {
    name: &'static str,
    key_space: &'static str,
    mode: &'static str,
    source: &'static str,
}

/// The series of `lock` taken from `source`. Each thread remembers the last set it
/// asked for, so that a steady workload (one lock name, mostly) finds its keys
/// without hashing the name, which cost a contended handoff 3 % of its time.
pub(crate) fn series(lock: &AdvisoryLock, source: &'static str) -> &'static Series {
    thread_local! {
        static LAST: Cell<Option<(LabelSet, &'static Series)>> = const { Cell::new(None) };
    }
    let set = LabelSet::of(lock, source);
    LAST.with(|last| match last.get() {
        Some((seen, series)) if seen == set => series,
        _ => {
            let series = known_series(set);
            last.set(Some((set, series)));
            series
        }
    })
}

/// The series of `set`, made the first time it is asked for.
fn known_series(set: LabelSet) -> &'static Series {
    static KNOWN: OnceLock<Mutex<HashMap<LabelSet, &'static Series>>> = OnceLock::new();
    let mut known = lock_unpoisoned(KNOWN.get_or_init(Default::default));
    known
        .entry(set)
        .or_insert_with(|| Box::leak(Box::new(Series::new(set))))
}

impl LabelSet {
    fn of(lock: &AdvisoryLock, source: &'static str) -> Self {
        LabelSet {
            name: lock.id().static_name().unwrap_or(DYNAMIC),
            key_space: match lock.key() {
                LockKey::BigInt(_) => "bigint",
                LockKey::Pair(..) => "pair",
            },
            mode: match lock.mode() {
                LockMode::Exclusive => "exclusive",
                LockMode::Shared => "shared",
            },
            source,
        }
    }

    /// The labels, with `outcome` last when there is one; kept for the process.
    fn labels(self, outcome: Option<Outcome>) -> &'static [Label] {
        let mut labels = vec![
            Label::from_static_parts("name", self.name),
            Label::from_static_parts("key_space", self.key_space),
            Label::from_static_parts("mode", self.mode),
            Label::from_static_parts("source", self.source),
        ];
        if let Some(outcome) = outcome {
            labels.push(Label::from_static_parts("outcome", outcome.name()));
        }
        Box::leak(labels.into_boxed_slice())
    }
}

impl Series {
    fn new(set: LabelSet) -> Self {
        let per_outcome =
            |metric| Outcome::ALL.map(|o| Key::from_static_parts(metric, set.labels(Some(o))));
        let plain = set.labels(None);
        Series {
            acquire_total: per_outcome("pglock_acquire_total"),
            wait_seconds: per_outcome("pglock_wait_seconds"),
            held: Key::from_static_parts("pglock_held", plain),
            hold_seconds: Key::from_static_parts("pglock_hold_seconds", plain),
            lost_total: Key::from_static_parts("pglock_lost_total", plain),
        }
    }
}

/// An acquisition ended with `outcome` after waiting `waited`.
pub(crate) fn acquisition(series: &Series, outcome: Outcome, waited: Duration) {
    let i = outcome as usize;
    metrics::with_recorder(|recorder| {
        recorder
            .register_counter(&series.acquire_total[i], &METADATA)
            .increment(1);
        recorder
            .register_histogram(&series.wait_seconds[i], &METADATA)
            .record(waited);
    });
}

/// A guard holds its lock from now.
pub(crate) fn hold_started(series: &Series) {
    metrics::with_recorder(|recorder| {
        recorder
            .register_gauge(&series.held, &METADATA)
            .increment(1.0)
    });
}

/// A guard let go of its lock after `held`; `lost` if its session was gone.
pub(crate) fn hold_ended(series: &Series, held: Duration, lost: bool) {
    metrics::with_recorder(|recorder| {
        recorder
            .register_gauge(&series.held, &METADATA)
            .decrement(1.0);
        recorder
            .register_histogram(&series.hold_seconds, &METADATA)
            .record(held);
        if lost {
            recorder
                .register_counter(&series.lost_total, &METADATA)
                .increment(1);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A label set is made once: the second lock of the same set gets the same
    /// keys, and another source gets its own.
    #[test]
    fn a_label_sets_keys_are_made_once_and_kept() {
        let a = AdvisoryLock::from_static("metrics-series-test", LockKey::BigInt(1));
        let b = AdvisoryLock::from_static("metrics-series-test", LockKey::BigInt(1));
        let first = series(&a, "pool");
        assert!(std::ptr::eq(first, series(&b, "pool")));
        assert!(!std::ptr::eq(first, series(&a, "locker")));
        let acquired = &first.acquire_total[Outcome::Acquired as usize];
        let labels: Vec<_> = acquired.labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(
            labels,
            [
                ("name", "metrics-series-test"),
                ("key_space", "bigint"),
                ("mode", "exclusive"),
                ("source", "pool"),
                ("outcome", "acquired"),
            ]
        );
    }
}
