//! `scaling`: what one uncontended locked call (`try_acquire` + drop, what the
//! attribute does) costs as the load around it grows, along two axes:
//!
//! - **locks already held on the session** (1, 100, 1,000, 5,000), one task: through a
//!   Locker with one lock session, through a Pool whose one connection holds them, and
//!   raw try + unlock on that same connection (the server's own cost: PostgreSQL walks
//!   a session's whole local lock table at the end of every transaction);
//! - **tasks** (1, 4, 16, 64), each its own key: through the default Locker and through
//!   a Pool with a connection for every task; the cost of a call is then the wall time
//!   of a batch over the calls of all its tasks (the inverse of the throughput).
//!
//! Measures only: no targets. Rounds alternate the series, as the groups' do, so they
//! see the same moments of the machine; each point is the median over rounds.

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use pglock::testdb::TestDb;
use pglock::{AdvisoryLock, LockKey, Locker, LockerGuard};
use tokio::task::JoinSet;

use crate::env::Ctx;
use crate::run::process_cpu;
use crate::stats::median;

/// How much to measure.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Points of the "locks held" axis.
    pub held: Vec<usize>,
    /// Points of the "tasks" axis.
    pub tasks: Vec<usize>,
    /// Rounds per point; each gives one batch of every series.
    pub rounds: usize,
    /// Calls per batch on the "locks held" axis.
    pub calls: usize,
    /// Length of a batch on the "tasks" axis.
    pub window: Duration,
}

/// One point of a series: the median over rounds.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub x: usize,
    /// Wall-clock µs per call.
    pub micros: f64,
    /// This process's CPU µs per call.
    pub cpu: f64,
}

/// One line of the chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: &'static str,
    pub points: Vec<Point>,
}

/// One axis: its series over the same points.
#[derive(Clone, Debug)]
pub struct Axis {
    pub title: &'static str,
    pub x_label: &'static str,
    pub series: Vec<Series>,
}

/// The section's results.
pub struct Scaling {
    pub held: Axis,
    pub tasks: Axis,
    pub plan: Plan,
    pub elapsed: Duration,
}

/// What one batch did: calls, wall seconds, CPU seconds.
#[derive(Clone, Copy, Debug)]
struct Sample {
    calls: u64,
    secs: f64,
    cpu: f64,
}

/// Runs `work` (which returns how many calls it completed) and times it.
async fn timed(work: impl Future<Output = u64>) -> Sample {
    let (start, cpu) = (Instant::now(), process_cpu());
    let calls = work.await;
    assert!(calls > 0, "a scaling batch completed no call");
    Sample {
        calls,
        secs: start.elapsed().as_secs_f64(),
        cpu: (process_cpu() - cpu).as_secs_f64(),
    }
}

/// The median point of `samples` at `x`.
fn point(x: usize, samples: &[Sample]) -> Point {
    let per_call = |f: fn(&Sample) -> f64| -> f64 {
        let v: Vec<f64> = samples
            .iter()
            .map(|s| f(s) * 1e6 / s.calls as f64)
            .collect();
        median(&v)
    };
    Point {
        x,
        micros: per_call(|s| s.secs),
        cpu: per_call(|s| s.cpu),
    }
}

/// The bigint key of a lock (names map to bigint keys).
fn bigint(lock: &AdvisoryLock) -> i64 {
    match lock.key() {
        LockKey::BigInt(k) => k,
        LockKey::Pair(..) => unreachable!("names map to bigint keys"),
    }
}

const TRY: &str = "SELECT pg_try_advisory_lock($1::int8)";
const UNLOCK: &str = "SELECT pg_advisory_unlock($1::int8)";
const HOLD_ALL: &str = "SELECT count(pg_advisory_lock(k)) FROM unnest($1::int8[]) AS k";
const HELD_HERE: &str = "SELECT count(*) FROM pg_locks \
     WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()";

/// The sessions that hold the locks of the "locks held" axis, and the locks.
struct Holders {
    /// One lock session; its guards are the locks held.
    locker: Locker,
    guards: Vec<LockerGuard>,
    /// One connection, holding as many locks taken with raw SQL.
    pool: Pool,
    held_on_pool: usize,
    /// The probes: the one more key each series takes per call.
    probes: [AdvisoryLock; 3],
    ctx: Ctx,
}

impl Holders {
    fn new(ctx: &Ctx, db: &TestDb) -> Holders {
        let probe = |what: &str| AdvisoryLock::new(ctx.name(&format!("scaling/held/{what}")));
        Holders {
            locker: Locker::builder(ctx.pool.clone()).sessions(1).build(),
            guards: Vec::new(),
            pool: db.pool(1),
            held_on_pool: 0,
            probes: [probe("locker"), probe("pool"), probe("raw")],
            ctx: ctx.clone(),
        }
    }

    /// Takes more locks until both sessions hold `n`, and checks they do.
    async fn hold(&mut self, n: usize) {
        let from = self.guards.len();
        let mut tasks = JoinSet::new();
        for i in from..n {
            let lock = AdvisoryLock::new(self.ctx.name(&format!("scaling/held/l{i}")));
            let locker = self.locker.clone();
            tasks.spawn(async move { lock.try_acquire(&locker).await.expect("a free key") });
        }
        self.guards.extend(tasks.join_all().await);
        let from = self.held_on_pool;
        let keys: Vec<i64> = (from..n)
            .map(|i| {
                bigint(&AdvisoryLock::new(
                    self.ctx.name(&format!("scaling/held/p{i}")),
                ))
            })
            .collect();
        let client = self.pool.get().await.expect("the holding connection");
        client.execute(HOLD_ALL, &[&keys]).await.expect("hold keys");
        self.held_on_pool = n;
        let held: i64 = client.query_one(HELD_HERE, &[]).await.unwrap().get(0);
        assert_eq!(held, n as i64, "the pool's session holds the locks");
        assert_eq!(self.locker.keys_in_use(), n, "the Locker holds the locks");
    }

    /// One batch of `calls` calls of series `s` (0: Locker, 1: Pool, 2: raw).
    async fn batch(&self, s: usize, calls: usize) -> Sample {
        let probe = &self.probes[s];
        timed(async {
            for _ in 0..calls {
                match s {
                    0 => drop(probe.try_acquire(&self.locker).await.expect("free probe")),
                    1 => drop(probe.try_acquire(&self.pool).await.expect("free probe")),
                    _ => raw_try_unlock(&self.pool, bigint(probe)).await,
                }
            }
            calls as u64
        })
        .await
    }

    /// Gives every lock back.
    async fn release(self) {
        let mut tasks = JoinSet::new();
        for guard in self.guards {
            tasks.spawn(async move { guard.release().await.expect("released") });
        }
        tasks.join_all().await;
        let client = self.pool.get().await.expect("the holding connection");
        client
            .execute("SELECT pg_advisory_unlock_all()", &[])
            .await
            .expect("unlock all");
    }
}

/// Raw try + unlock on a client of `pool`, each awaited (2 round trips).
async fn raw_try_unlock(pool: &Pool, key: i64) {
    let client = pool.get().await.expect("a pooled client");
    let lock = client.prepare_cached(TRY).await.unwrap();
    let unlock = client.prepare_cached(UNLOCK).await.unwrap();
    let granted: bool = client.query_one(&lock, &[&key]).await.unwrap().get(0);
    assert!(granted, "raw try found the probe busy");
    let freed: bool = client.query_one(&unlock, &[&key]).await.unwrap().get(0);
    assert!(freed);
}

async fn held_axis(ctx: &Ctx, db: &TestDb, plan: &Plan) -> Axis {
    let names = [
        "Locker, one lock session",
        "Pool, one connection",
        "raw SQL, same connection",
    ];
    let mut series: Vec<Series> = names
        .iter()
        .map(|name| Series {
            name,
            points: Vec::new(),
        })
        .collect();
    let mut holders = Holders::new(ctx, db);
    for &n in &plan.held {
        holders.hold(n).await;
        let mut samples = vec![Vec::new(); names.len()];
        for round in 0..plan.rounds + 1 {
            for k in 0..names.len() {
                let s = (round + k) % names.len();
                let sample = holders.batch(s, plan.calls).await;
                if round > 0 {
                    samples[s].push(sample); // round 0 warms the point up
                }
            }
        }
        for (line, samples) in series.iter_mut().zip(&samples) {
            line.points.push(point(n, samples));
        }
    }
    holders.release().await;
    Axis {
        title: "cost per call against locks already held on the session (1 task, try + drop)",
        x_label: "locks already held on the session",
        series,
    }
}

/// `tasks` tasks, each trying and dropping a key of its own from `source` until
/// `window` has passed; the calls of all of them.
async fn tasks_batch<S>(ctx: &Ctx, source: &S, name: &str, tasks: usize, window: Duration) -> Sample
where
    S: pglock::LockSource + Clone + Send + Sync + 'static,
{
    let deadline = Instant::now() + window;
    let locks: Vec<AdvisoryLock> = (0..tasks)
        .map(|i| AdvisoryLock::new(ctx.name(&format!("scaling/tasks/{name}/{i}"))))
        .collect();
    timed(async {
        let mut set = JoinSet::new();
        for lock in locks {
            let source = source.clone();
            set.spawn(async move {
                let mut calls = 0;
                while Instant::now() < deadline {
                    drop(lock.try_acquire(&source).await.expect("a free key"));
                    calls += 1;
                }
                calls
            });
        }
        set.join_all().await.into_iter().sum()
    })
    .await
}

async fn tasks_axis(ctx: &Ctx, db: &TestDb, plan: &Plan) -> Axis {
    let most = plan.tasks.iter().copied().max().unwrap_or(1);
    // A connection for every task, so the Pool line shows locking, not queueing for
    // a connection.
    let pool = db.pool(most);
    let mut locker = Vec::new();
    let mut pooled = Vec::new();
    for &t in &plan.tasks {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..plan.rounds + 1 {
            let order = [round % 2 == 0, round % 2 == 1];
            for through_locker in order {
                let sample = if through_locker {
                    tasks_batch(ctx, &ctx.locker, "locker", t, plan.window).await
                } else {
                    tasks_batch(ctx, &pool, "pool", t, plan.window).await
                };
                if round == 0 {
                    continue; // warms the point up (and opens the pool's connections)
                }
                if through_locker { &mut a } else { &mut b }.push(sample);
            }
        }
        locker.push(point(t, &a));
        pooled.push(point(t, &b));
    }
    Axis {
        title: "cost per call against tasks (each its own key, try + drop; wall time ÷ calls of all tasks)",
        x_label: "tasks",
        series: vec![
            Series {
                name: "Locker, 2 lock sessions",
                points: locker,
            },
            Series {
                name: "Pool, a connection per task",
                points: pooled,
            },
        ],
    }
}

/// Runs the scaling section.
pub async fn run(ctx: &Ctx, db: &TestDb, plan: Plan) -> Scaling {
    let start = Instant::now();
    let held = held_axis(ctx, db, &plan).await;
    let tasks = tasks_axis(ctx, db, &plan).await;
    Scaling {
        held,
        tasks,
        plan,
        elapsed: start.elapsed(),
    }
}

impl Axis {
    /// The axis as a Markdown table: µs per call, then CPU µs per call, per series.
    fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "#### {}\n", self.title);
        let mut head = format!("| {} |", self.x_label);
        let mut align = String::from("|---:|");
        for what in ["µs/call", "client CPU µs/call"] {
            for line in &self.series {
                let _ = write!(head, " {}: {what} |", line.name);
                align.push_str("---:|");
            }
        }
        let _ = writeln!(s, "{head}\n{align}");
        let xs = self.series.first().map(|l| l.points.len()).unwrap_or(0);
        for i in 0..xs {
            let _ = write!(s, "| {} |", self.series[0].points[i].x);
            for value in [|p: &Point| p.micros, |p: &Point| p.cpu] {
                for line in &self.series {
                    let _ = write!(s, " {:.1} |", value(&line.points[i]));
                }
            }
            let _ = writeln!(s);
        }
        s
    }
}

impl std::fmt::Display for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "### `scaling`: cost per uncontended call against locks held and against tasks\n"
        )?;
        writeln!(f, "{}", self.held.table())?;
        writeln!(f, "{}", self.tasks.table())?;
        writeln!(
            f,
            "Medians over {} rounds after 1 warm-up per point; {} calls per batch (locks held), \
             {} ms per batch (tasks); {:.1} s.\n",
            self.plan.rounds,
            self.plan.calls,
            self.plan.window.as_millis(),
            self.elapsed.as_secs_f64()
        )
    }
}
