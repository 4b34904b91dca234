//! The metric keys made once per label set and found through a one-entry
//! cache per thread: label sets that differ only in mode, key space or source,
//! alternating on one thread, each count on their own series; equal names from two
//! `&'static str`s count on one; a recorder installed after the first lock sees
//! what follows, and a thread's local recorder and the global one each see only
//! their own thread's events.

mod common;

use std::collections::HashMap;

use common::unique;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use pglock::{AdvisoryLock, LockKey, Locker};

/// Counters and gauges of one snapshot, by (kind, name, sorted labels).
type Values = HashMap<(MetricKind, String, Vec<(String, String)>), f64>;

fn values(snapshotter: &Snapshotter) -> Values {
    let mut values = Values::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        let value = match value {
            DebugValue::Counter(n) => n as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        };
        *values
            .entry((kind, key.name().to_string(), labels))
            .or_default() += value;
    }
    values
}

/// The value of the one series of `name` with exactly these labels (0 if none).
fn value(values: &Values, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<_> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    values
        .get(&(kind, name.to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

fn leaked(text: &str) -> &'static str {
    Box::leak(text.to_string().into_boxed_str())
}

/// Takes `lock` from `pool` and releases it.
async fn take_and_release(lock: &AdvisoryLock, pool: &deadpool_postgres::Pool) {
    lock.try_acquire(pool)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Five locks, four label sets, one name text: alternating on one thread (so the
/// thread's cache changes set at every event), each set counts its own
/// acquisitions, holds and releases, and the two `&'static str`s of equal text
/// count on one series.
#[test]
fn alternating_label_sets_on_one_thread_each_count_on_their_own_series() {
    const ROUNDS: usize = 3;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let name = leaked(&unique("metrics-alternating"));
    let same_text = leaked(name);
    assert!(!std::ptr::eq(name, same_text), "two allocations");
    let key = LockKey::from_name(name);
    let exclusive = AdvisoryLock::from_static(name, key);
    let shared = AdvisoryLock::from_static(name, key).shared();
    let pair = AdvisoryLock::from_static(name, LockKey::Pair(7, 11));
    let other_str = AdvisoryLock::from_static(same_text, key);
    // Another key of the same label set: the Locker lets go of a dropped guard's
    // key in the background, after the next pool lock of the round is tried.
    let in_locker = AdvisoryLock::from_static(name, LockKey::from_name(&unique(name)));
    metrics::with_local_recorder(&recorder, || {
        current_thread().block_on(async {
            let pool = common::pool(2);
            let locker = Locker::new(common::pool(2));
            for _ in 0..ROUNDS {
                for lock in [&exclusive, &shared, &pair] {
                    take_and_release(lock, &pool).await;
                }
                drop(in_locker.acquire(&locker).await.unwrap());
                take_and_release(&other_str, &pool).await;
            }
        })
    });
    let seen = values(&snapshotter);
    let sets = [
        ("bigint", "exclusive", "pool", 2 * ROUNDS),
        ("bigint", "shared", "pool", ROUNDS),
        ("pair", "exclusive", "pool", ROUNDS),
        ("bigint", "exclusive", "locker", ROUNDS),
    ];
    for (key_space, mode, source, times) in sets {
        let labels = [
            ("name", name),
            ("key_space", key_space),
            ("mode", mode),
            ("source", source),
        ];
        let with_outcome = [&labels[..], &[("outcome", "acquired")]].concat();
        let times = times as f64;
        let what = format!("{key_space}/{mode}/{source}: {seen:#?}");
        let counted = |kind, metric, labels: &[(&str, &str)]| value(&seen, kind, metric, labels);
        use MetricKind::{Counter, Gauge, Histogram};
        assert_eq!(
            counted(Counter, "pglock_acquire_total", &with_outcome),
            times,
            "{what}"
        );
        assert_eq!(
            counted(Histogram, "pglock_wait_seconds", &with_outcome),
            times,
            "{what}"
        );
        assert_eq!(
            counted(Histogram, "pglock_hold_seconds", &labels),
            times,
            "{what}"
        );
        assert_eq!(counted(Gauge, "pglock_held", &labels), 0.0, "{what}");
    }
    let series_of_name = seen
        .keys()
        .filter(|(_, _, labels)| labels.iter().any(|(k, v)| k == "name" && v == name))
        .count();
    // Per set: acquire_total, wait_seconds (outcome acquired), held, hold_seconds.
    assert_eq!(series_of_name, 4 * sets.len(), "no other series: {seen:#?}");
}

/// The only test of this binary that installs a global recorder. A lock taken
/// before any recorder is installed is seen by none; once the global one is
/// installed it sees the next lock; a thread inside `with_local_recorder` counts
/// on its local recorder only, while another thread keeps counting globally.
#[test]
fn a_late_global_recorder_and_a_threads_local_one_each_see_their_own_events() {
    let name = leaked(&unique("metrics-recorders"));
    let lock = AdvisoryLock::from_static(name, LockKey::from_name(name));
    // The same label set on another key: the two threads lock at the same time.
    let other_key = AdvisoryLock::from_static(name, LockKey::from_name(&unique(name)));
    let acquired = [
        ("name", name),
        ("key_space", "bigint"),
        ("mode", "exclusive"),
        ("source", "pool"),
        ("outcome", "acquired"),
    ];
    let runtime = current_thread();
    // Each thread's pool is made on its runtime: a connection's task runs there.
    let once = |lock: &AdvisoryLock| {
        let lock = lock.clone();
        async move { take_and_release(&lock, &common::pool(1)).await }
    };
    // Before any recorder: this thread's cache now holds the set.
    runtime.block_on(once(&lock));

    let global = DebuggingRecorder::new();
    let global_view = global.snapshotter();
    global
        .install()
        .expect("no other global recorder in this binary");
    runtime.block_on(once(&lock));

    let local = DebuggingRecorder::new();
    let local_view = local.snapshotter();
    let (in_local, other_thread) = std::thread::scope(|scope| {
        let other = scope.spawn(|| {
            let runtime = current_thread();
            for _ in 0..3 {
                runtime.block_on(once(&other_key));
            }
        });
        metrics::with_local_recorder(&local, || {
            for _ in 0..2 {
                runtime.block_on(once(&lock));
            }
        });
        other.join().unwrap();
        (values(&local_view), values(&global_view))
    });
    let count = |seen: &Values| value(seen, MetricKind::Counter, "pglock_acquire_total", &acquired);
    assert_eq!(count(&in_local), 2.0, "the local recorder: {in_local:#?}");
    assert_eq!(
        count(&other_thread),
        1.0 + 3.0,
        "the global recorder: one after its install on this thread, three on the other: {other_thread:#?}"
    );
}
