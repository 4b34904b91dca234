//! The metrics of feature `metrics`, against the real server: every outcome of
//! `pglock_acquire_total` produced for real (a foreign holder, a timeout, a skip
//! through the attribute, a nested wait, the server's deadlock detector, a terminated
//! backend, a refused connection), the `pglock_held` gauge back to 0 after each
//! hold, the wait and hold histograms observed (a hold's length in seconds), and
//! per-argument names folded (the runtime API's and the attribute's).
//!
//! Each test runs on a current-thread runtime inside `metrics::with_local_recorder`,
//! so it sees its own metrics only, whatever the other tests do meanwhile.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use common::{assert_waiting, unique, Foreign};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use pglock::__private::{run, OnLost};
use pglock::{advisory_locked, AdvisoryLock, LockKey, Locker};

/// A series: kind, metric name, labels.
type Series = (MetricKind, String, Vec<(String, String)>);

/// What the recorder was told, added up over snapshots (a snapshot drains the
/// recorder, so every read goes through here).
struct Metrics {
    snapshotter: Snapshotter,
    seen: RefCell<HashMap<Series, Seen>>,
}

#[derive(Debug)]
enum Seen {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

impl Metrics {
    fn take(&self) {
        let mut seen = self.seen.borrow_mut();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let labels = key
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            let series = (kind, key.name().to_string(), labels);
            match (seen.entry(series).or_insert_with(|| empty(kind)), value) {
                (Seen::Counter(n), DebugValue::Counter(more)) => *n += more,
                (Seen::Gauge(g), DebugValue::Gauge(more)) => *g += more.into_inner(),
                (Seen::Histogram(h), DebugValue::Histogram(more)) => {
                    h.extend(more.into_iter().map(|v| v.into_inner()))
                }
                (seen, value) => panic!("{seen:?} then {value:?}"),
            }
        }
    }

    /// The series of metric `name` whose labels include `labels`.
    fn matching(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Vec<Series> {
        self.take();
        self.seen
            .borrow()
            .keys()
            .filter(|(k, n, ls)| {
                *k == kind
                    && n == name
                    && labels
                        .iter()
                        .all(|(lk, lv)| ls.iter().any(|(k, v)| k == lk && v == lv))
            })
            .cloned()
            .collect()
    }

    /// The sum of the counters of `name` whose labels include `labels`.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let series = self.matching(MetricKind::Counter, name, labels);
        let seen = self.seen.borrow();
        series
            .iter()
            .map(|s| match seen[s] {
                Seen::Counter(n) => n,
                _ => unreachable!("a counter"),
            })
            .sum()
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let series = self.matching(MetricKind::Gauge, name, labels);
        let seen = self.seen.borrow();
        series
            .iter()
            .map(|s| match seen[s] {
                Seen::Gauge(g) => g,
                _ => unreachable!("a gauge"),
            })
            .sum()
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let series = self.matching(MetricKind::Histogram, name, labels);
        let seen = self.seen.borrow();
        series
            .iter()
            .flat_map(|s| match &seen[s] {
                Seen::Histogram(h) => h.clone(),
                _ => unreachable!("a histogram"),
            })
            .collect()
    }

    /// Every outcome counted for lock `name`, as (outcome, count).
    fn outcomes(&self, name: &str) -> Vec<(String, u64)> {
        let series = self.matching(
            MetricKind::Counter,
            "pglock_acquire_total",
            &[("name", name)],
        );
        let seen = self.seen.borrow();
        let mut outcomes: Vec<_> = series
            .iter()
            .map(|s| {
                let outcome = s.2.iter().find(|(k, _)| k == "outcome").unwrap();
                let Seen::Counter(n) = seen[s] else {
                    unreachable!("a counter")
                };
                (outcome.1.clone(), n)
            })
            .collect();
        outcomes.sort();
        outcomes
    }
}

fn empty(kind: MetricKind) -> Seen {
    match kind {
        MetricKind::Counter => Seen::Counter(0),
        MetricKind::Gauge => Seen::Gauge(0.0),
        MetricKind::Histogram => Seen::Histogram(Vec::new()),
    }
}

/// Runs `test` on a runtime of its own with a recorder of its own.
fn recorded<F: Future<Output = ()>>(test: impl FnOnce(Rc<MetricsHandle>) -> F) {
    let recorder = DebuggingRecorder::new();
    let metrics = Rc::new(MetricsHandle(Metrics {
        snapshotter: recorder.snapshotter(),
        seen: RefCell::default(),
    }));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || runtime.block_on(test(metrics.clone())));
}

/// The recorder's view, shared by a test's futures (all on one thread).
struct MetricsHandle(Metrics);

impl std::ops::Deref for MetricsHandle {
    type Target = Metrics;
    fn deref(&self) -> &Metrics {
        &self.0
    }
}

/// A lock with a static name (as `AdvisoryLock::from_static` and the attribute's
/// literal keys make), unique to this test run.
fn static_lock(tag: &str) -> (AdvisoryLock, &'static str) {
    let name: &'static str = Box::leak(unique(tag).into_boxed_str());
    (
        AdvisoryLock::from_static(name, LockKey::from_name(name)),
        name,
    )
}

#[test]
fn an_acquisition_counts_its_wait_holds_the_gauge_and_releases_it() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let (lock, name) = static_lock("metrics-held");
        let guard = lock.try_acquire(&pool).await.unwrap();
        let series = [
            ("name", name),
            ("key_space", "bigint"),
            ("mode", "exclusive"),
            ("source", "pool"),
        ];
        assert_eq!(m.outcomes(name), [("acquired".into(), 1)]);
        assert_eq!(m.counter("pglock_acquire_total", &series), 1);
        assert_eq!(m.gauge("pglock_held", &series), 1.0);
        assert_eq!(m.histogram("pglock_wait_seconds", &series).len(), 1);
        assert!(m.histogram("pglock_hold_seconds", &series).is_empty());

        guard.release().await.unwrap();
        assert_eq!(m.gauge("pglock_held", &series), 0.0);
        assert_eq!(m.histogram("pglock_hold_seconds", &series).len(), 1);
        assert_eq!(m.counter("pglock_lost_total", &series), 0);
    });
}

#[test]
fn the_hold_histogram_records_how_long_the_lock_was_held() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let (lock, name) = static_lock("metrics-hold-time");
        let held_for = Duration::from_millis(100);
        let guard = lock.try_acquire(&pool).await.unwrap();
        // The critical section: what the histogram measures.
        tokio::time::sleep(held_for).await;
        guard.release().await.unwrap();
        let held = m.histogram("pglock_hold_seconds", &[("name", name)]);
        assert_eq!(held.len(), 1, "{held:?}");
        assert!(
            held[0] >= held_for.as_secs_f64(),
            "at least the hold: {held:?}"
        );
        // Not a speed bound: 100 ms read as milliseconds would be 100.
        assert!(held[0] < 60.0, "in seconds, not milliseconds: {held:?}");
    });
}

#[test]
fn a_locker_guard_dropped_gives_the_gauge_back_and_records_its_hold() {
    recorded(|m| async move {
        let locker = Locker::new(common::pool(2));
        let (lock, name) = static_lock("metrics-locker");
        let lock = lock.shared();
        let guard = lock.acquire(&locker).await.unwrap();
        let series = [("name", name), ("mode", "shared"), ("source", "locker")];
        assert_eq!(m.gauge("pglock_held", &series), 1.0);
        drop(guard);
        assert_eq!(m.gauge("pglock_held", &series), 0.0);
        assert_eq!(m.histogram("pglock_hold_seconds", &series).len(), 1);
        assert_eq!(m.outcomes(name), [("acquired".into(), 1)]);
    });
}

#[test]
fn names_made_at_run_time_are_folded_and_pair_keys_say_so() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let order = unique("order");
        drop(
            AdvisoryLock::new(order.as_str())
                .try_acquire(&pool)
                .await
                .unwrap(),
        );
        let LockKey::BigInt(h) = LockKey::from_name(&unique("pair")) else {
            unreachable!("a name hashes to a bigint key")
        };
        let pair = LockKey::Pair(h as i32, (h >> 32) as i32);
        drop(AdvisoryLock::new(pair).try_acquire(&pool).await.unwrap());

        let dynamic = [("name", "(dynamic)")];
        assert_eq!(m.counter("pglock_acquire_total", &dynamic), 2);
        let pairs = [("name", "(dynamic)"), ("key_space", "pair")];
        assert_eq!(m.counter("pglock_acquire_total", &pairs), 1);
        for kind in [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
        ] {
            for metric in ["pglock_acquire_total", "pglock_held", "pglock_hold_seconds"] {
                let by_name = m.matching(kind, metric, &[("name", order.as_str())]);
                assert!(
                    by_name.is_empty(),
                    "a series per run-time name: {by_name:?}"
                );
            }
        }
    });
}

#[advisory_locked(key = "metrics-fmt:{id}", pool = pool)]
async fn locked_per_argument(
    pool: &deadpool_postgres::Pool,
    id: u64,
) -> Result<u64, pglock::Error> {
    Ok(id)
}

#[test]
fn an_attribute_key_formatted_per_argument_is_folded() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let id = std::process::id().into();
        assert_eq!(locked_per_argument(&pool, id).await.unwrap(), id);
        let dynamic = [("name", "(dynamic)"), ("outcome", "acquired")];
        assert_eq!(m.counter("pglock_acquire_total", &dynamic), 1);
        assert_eq!(
            m.histogram("pglock_hold_seconds", &[("name", "(dynamic)")])
                .len(),
            1
        );
        let formatted = format!("metrics-fmt:{id}");
        for name in ["metrics-fmt:{id}", formatted.as_str()] {
            let by_name = m.matching(
                MetricKind::Counter,
                "pglock_acquire_total",
                &[("name", name)],
            );
            assert!(by_name.is_empty(), "a series named {name}: {by_name:?}");
        }
    });
}

#[test]
fn busy_and_timeout_are_counted_with_the_wait_they_took() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let (lock, name) = static_lock("metrics-busy");
        let _foreign = Foreign::holding(lock.key()).await;
        assert!(lock.try_acquire(&pool).await.unwrap_err().is_busy());
        let limit = Duration::from_millis(50);
        let timeout = lock.acquire_timeout(&pool, limit).await.unwrap_err();
        assert!(timeout.is_timeout(), "{timeout}");

        assert_eq!(
            m.outcomes(name),
            [("busy".into(), 1), ("timeout".into(), 1)]
        );
        let waited = m.histogram(
            "pglock_wait_seconds",
            &[("name", name), ("outcome", "timeout")],
        );
        assert_eq!(waited.len(), 1);
        assert!(
            waited[0] >= limit.as_secs_f64(),
            "waited the limit: {waited:?}"
        );
        assert_eq!(m.gauge("pglock_held", &[("name", name)]), 0.0);
    });
}

#[advisory_locked(key = "metrics-skip", pool = pool, wait = "20ms", skip)]
async fn skipped_when_busy(pool: &deadpool_postgres::Pool) -> Result<u32, pglock::Error> {
    Ok(1)
}

#[test]
fn an_attribute_fn_with_skip_counts_a_skip_not_a_failure() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let foreign = Foreign::holding(LockKey::from_name("metrics-skip")).await;
        assert_eq!(skipped_when_busy(&pool).await.unwrap(), 0, "skipped");
        assert_eq!(m.outcomes("metrics-skip"), [("skipped".into(), 1)]);
        foreign.unlock(LockKey::from_name("metrics-skip")).await;
        assert_eq!(skipped_when_busy(&pool).await.unwrap(), 1, "ran");
        assert_eq!(
            m.outcomes("metrics-skip"),
            [("acquired".into(), 1), ("skipped".into(), 1)]
        );
    });
}

#[advisory_locked(key = "metrics-skip-xact", xact = tx, skip)]
async fn skipped_in_xact(tx: &deadpool_postgres::Transaction<'_>) -> Result<u32, pglock::Error> {
    Ok(1)
}

#[test]
fn an_attribute_fn_with_skip_in_a_transaction_counts_a_skip_of_source_xact() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let key = LockKey::from_name("metrics-skip-xact");
        let _foreign = Foreign::holding(key).await;
        let mut client = pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        assert_eq!(skipped_in_xact(&tx).await.unwrap(), 0, "skipped");
        tx.rollback().await.unwrap();
        let series = [("name", "metrics-skip-xact"), ("source", "xact")];
        assert_eq!(
            m.counter(
                "pglock_acquire_total",
                &[series[0], series[1], ("outcome", "skipped")]
            ),
            1
        );
        assert_eq!(m.outcomes("metrics-skip-xact"), [("skipped".into(), 1)]);
    });
}

#[test]
fn a_nested_wait_for_a_held_key_counts_would_deadlock() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let (lock, name) = static_lock("metrics-nested");
        let held = lock.try_acquire(&pool).await.unwrap();
        let nested = run(&held, OnLost::Ignore, lock.acquire(&pool))
            .await
            .unwrap();
        assert!(
            matches!(nested, Err(pglock::Error::WouldDeadlock { .. })),
            "{nested:?}"
        );
        held.release().await.unwrap();
        assert_eq!(
            m.outcomes(name),
            [("acquired".into(), 1), ("would_deadlock".into(), 1)]
        );
    });
}

#[test]
fn the_servers_deadlock_victim_counts_deadlock() {
    recorded(|m| async move {
        let (first, first_name) = static_lock("metrics-deadlock-a");
        let (second, second_name) = static_lock("metrics-deadlock-b");
        let barrier = tokio::sync::Barrier::new(2);
        // Two sessions take one key each, then each waits, on the same session
        // (nested in the first lock), for the other's.
        let crosswise = |mine: AdvisoryLock, theirs: AdvisoryLock| {
            let barrier = &barrier;
            async move {
                let pool = common::pool(2);
                let held = mine.acquire(&pool).await.unwrap();
                barrier.wait().await;
                let theirs = async { theirs.acquire(&pool).await.map(drop) };
                run(&held, OnLost::Ignore, theirs).await.unwrap()
            }
        };
        let (a, b) = tokio::join!(
            crosswise(first.clone(), second.clone()),
            crosswise(second.clone(), first.clone())
        );
        let victims = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(pglock::Error::Deadlock { .. })))
            .count();
        assert_eq!(victims, 1, "one victim, the other granted: {a:?} {b:?}");
        let deadlocks = m
            .outcomes(first_name)
            .into_iter()
            .chain(m.outcomes(second_name));
        let mut outcomes: HashMap<String, u64> = HashMap::new();
        for (outcome, n) in deadlocks {
            *outcomes.entry(outcome).or_default() += n;
        }
        assert_eq!(outcomes.get("deadlock"), Some(&1), "{outcomes:?}");
        assert_eq!(outcomes.get("acquired"), Some(&3), "{outcomes:?}");
        assert_eq!(m.gauge("pglock_held", &[("name", first_name)]), 0.0);
        assert_eq!(m.gauge("pglock_held", &[("name", second_name)]), 0.0);
    });
}

#[test]
fn a_terminated_holder_counts_a_lost_lock_and_the_next_task_acquires() {
    recorded(|m| async move {
        let locker = Locker::new(common::pool(2));
        let observer = common::observer().await;
        let (lock, name) = static_lock("metrics-lost");
        let held = lock.acquire(&locker).await.unwrap();
        // A second task of the process queues behind the holder, inside the Locker.
        let mut queued = pin!(lock.acquire(&locker));
        poll_fn(|cx| {
            assert!(
                queued.as_mut().poll(cx).is_pending(),
                "queued behind the holder"
            );
            Poll::Ready(())
        })
        .await;
        let holder = common::holders(&observer, lock.key()).await;
        assert_eq!(holder.len(), 1, "held by the Locker's session: {holder:?}");
        observer
            .execute("SELECT pg_terminate_backend($1)", &[&holder[0]])
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), held.lost())
            .await
            .expect("the loss is noticed");
        let next = queued
            .await
            .expect("the key is free again: the next task takes it");
        assert!(held.release().await.unwrap_err().is_lost());

        let series = [("name", name), ("source", "locker")];
        assert_eq!(m.counter("pglock_lost_total", &series), 1);
        assert_eq!(
            m.gauge("pglock_held", &series),
            1.0,
            "the next task holds it"
        );
        drop(next);
        assert_eq!(m.gauge("pglock_held", &series), 0.0);
        assert_eq!(m.histogram("pglock_hold_seconds", &series).len(), 2);
        assert_eq!(m.outcomes(name), [("acquired".into(), 2)]);
    });
}

#[test]
fn a_refused_connection_counts_error() {
    recorded(|m| async move {
        let mut config = pglock::testdb::shared().config();
        config.port(free_port());
        let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(1)
            .build()
            .unwrap();
        let (lock, name) = static_lock("metrics-error");
        let error = lock.try_acquire(&pool).await.unwrap_err();
        assert!(matches!(error, pglock::Error::Pool { .. }), "{error:?}");
        assert_eq!(m.outcomes(name), [("error".into(), 1)]);
    });
}

/// A local port nobody listens on: bound, then let go.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn waiting_in_the_servers_queue_is_observed_in_the_wait_histogram() {
    recorded(|m| async move {
        let pool = common::pool(2);
        let observer = common::observer().await;
        let (lock, name) = static_lock("metrics-wait");
        let foreign = Foreign::holding(lock.key()).await;
        let mut waiting = pin!(lock.acquire(&pool));
        let row = tokio::select! {
            biased;
            _ = &mut waiting => panic!("granted while held elsewhere"),
            row = assert_waiting(&observer, lock.key(), "the acquisition") => row,
        };
        assert!(!row.granted);
        foreign.unlock(lock.key()).await;
        let guard = waiting.await.unwrap();
        let waited = m.histogram(
            "pglock_wait_seconds",
            &[("name", name), ("outcome", "acquired")],
        );
        assert_eq!(waited.len(), 1);
        assert!(waited[0] > 0.0, "{waited:?}");
        drop(guard);
    });
}
