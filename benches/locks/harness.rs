//! The harness: groups of scenarios, each group measured beside its baseline.
//!
//! A group is one workload shape (say, "one task, one key, nobody else") and a list
//! of members; the first member is the baseline. Each round runs one batch of every
//! member, in an order that rotates from round to round, so a baseline and its
//! scenarios see the same machine: on a shared 2-core box the load of other processes
//! drifts by tens of percent within a minute, and a baseline measured a minute
//! earlier would say more about that drift than about the code. The report gives
//! medians over batches, their p10..p90, and ratios to the baseline: the ratio of the
//! medians (what the targets are stated in), and the p10..p90 of the per-round ratios
//! (how much a single round's comparison could be trusted).
//!
//! Two shapes of workload:
//! - latency: a batch runs `n` calls one after another in one task; the value of a
//!   batch is its time per call (lower is better);
//! - throughput: a batch runs its tasks until a deadline; the value is calls completed
//!   per second (higher is better).

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::scenarios::Env;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The shared state every workload gets: pools, key names.
pub type Ctx = Arc<Env>;

type LatencyFn = dyn Fn(Ctx, usize) -> BoxFuture<()> + Send + Sync;
type ThroughputFn = dyn Fn(Ctx, Instant) -> BoxFuture<u64> + Send + Sync;

/// What a member runs.
#[derive(Clone)]
pub enum Workload {
    /// Runs `n` calls one after another.
    Latency(Arc<LatencyFn>),
    /// Runs until the deadline; returns how many calls completed.
    Throughput(Arc<ThroughputFn>),
}

/// A latency workload from an `async fn(Ctx, usize)`.
macro_rules! latency {
    ($f:path) => {
        $crate::harness::Workload::Latency(::std::sync::Arc::new(|ctx, n| {
            ::std::boxed::Box::pin($f(ctx, n))
        }))
    };
}

/// A throughput workload from an `async fn(Ctx, Instant) -> u64`.
macro_rules! throughput {
    ($f:path) => {
        $crate::harness::Workload::Throughput(::std::sync::Arc::new(|ctx, deadline| {
            ::std::boxed::Box::pin($f(ctx, deadline))
        }))
    };
}

pub(crate) use {latency, throughput};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Latency,
    Throughput,
}

/// A bound on a member's ratio to the baseline (ratio of medians).
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// Time per call at most this many times the baseline's (latency).
    AtMost(f64),
    /// Calls per second at least this many times the baseline's (throughput).
    AtLeast(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(x) => ratio <= x,
            Target::AtLeast(x) => ratio >= x,
        }
    }

    fn text(self) -> String {
        match self {
            Target::AtMost(x) => format!("≤ {x:.2}"),
            Target::AtLeast(x) => format!("≥ {x:.2}"),
        }
    }
}

/// One row of a group.
#[derive(Clone)]
pub struct Member {
    /// Short id, used by [`Check`]s and by filters.
    pub id: &'static str,
    /// What it runs, in words.
    pub what: &'static str,
    pub workload: Workload,
    /// Its target ratio to the baseline; `None`: measured for information.
    pub target: Option<Target>,
}

/// A comparison between two measured members of a group other than "vs baseline":
/// `slower` takes at least `factor` times as long per call as `faster`.
#[derive(Clone, Debug)]
pub struct Check {
    pub faster: &'static str,
    pub slower: &'static str,
    pub factor: f64,
    /// Whether this is one of the targets (else: for information).
    pub target: bool,
}

/// A workload shape, its baseline (the first member) and the scenarios beside it.
#[derive(Clone)]
pub struct Group {
    pub name: &'static str,
    pub what: &'static str,
    pub shape: Shape,
    pub members: Vec<Member>,
    pub checks: Vec<Check>,
}

impl Group {
    pub fn latency(name: &'static str, what: &'static str) -> Group {
        Group {
            name,
            what,
            shape: Shape::Latency,
            members: Vec::new(),
            checks: Vec::new(),
        }
    }

    pub fn throughput(name: &'static str, what: &'static str) -> Group {
        Group {
            shape: Shape::Throughput,
            ..Group::latency(name, what)
        }
    }

    fn push(
        mut self,
        id: &'static str,
        what: &'static str,
        workload: Workload,
        target: Option<Target>,
    ) -> Group {
        let shape = match workload {
            Workload::Latency(_) => Shape::Latency,
            Workload::Throughput(_) => Shape::Throughput,
        };
        assert_eq!(
            shape, self.shape,
            "{}/{id}: wrong workload shape",
            self.name
        );
        assert!(
            self.members.iter().all(|m| m.id != id),
            "{}/{id}: duplicate id",
            self.name
        );
        self.members.push(Member {
            id,
            what,
            workload,
            target,
        });
        self
    }

    /// The baseline: must come first.
    pub fn baseline(self, id: &'static str, what: &'static str, workload: Workload) -> Group {
        assert!(self.members.is_empty(), "{}: baseline first", self.name);
        self.push(id, what, workload, None)
    }

    /// A scenario with a target ratio to the baseline.
    pub fn scenario(
        self,
        id: &'static str,
        what: &'static str,
        workload: Workload,
        target: Target,
    ) -> Group {
        self.push(id, what, workload, Some(target))
    }

    /// A scenario measured for information (no target).
    pub fn info(self, id: &'static str, what: &'static str, workload: Workload) -> Group {
        self.push(id, what, workload, None)
    }

    /// The baseline and the member `id` only (for a closer look at one scenario);
    /// `solo`: the member alone (for a profiler: it then shows as the baseline).
    pub fn only(mut self, id: &str, solo: bool) -> Option<Group> {
        if !self.members.iter().any(|m| m.id == id) {
            return None;
        }
        let baseline = if solo { id } else { self.members[0].id };
        self.members.retain(|m| m.id == baseline || m.id == id);
        self.checks.retain(|c| {
            [c.faster, c.slower]
                .iter()
                .all(|x| *x == baseline || *x == id)
        });
        Some(self)
    }

    /// `slower` must take at least `factor` x as long per call as `faster`.
    pub fn check(
        mut self,
        faster: &'static str,
        slower: &'static str,
        factor: f64,
        target: bool,
    ) -> Group {
        assert_eq!(self.shape, Shape::Latency, "checks compare latencies");
        self.checks.push(Check {
            faster,
            slower,
            factor,
            target,
        });
        self
    }
}

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Rounds of warm-up (every member, discarded).
    pub warmup: usize,
    /// Measured rounds of latency groups: each gives one batch of every member.
    pub rounds: usize,
    /// Measured rounds of throughput groups (their batches are longer).
    pub throughput_rounds: usize,
    /// Calls per latency batch.
    pub calls: usize,
    /// Length of a throughput batch.
    pub window: Duration,
    /// Whether ratios are worth judging against targets.
    pub judge: bool,
}

/// What one member measured.
pub struct Measured {
    pub member: Member,
    /// One value per round: time per call (latency), calls per second (throughput).
    pub values: Vec<f64>,
    /// Calls completed over all measured batches.
    pub calls: u64,
    /// Process CPU seconds over all measured batches.
    pub cpu: f64,
}

pub struct Report {
    pub group: Group,
    pub plan: Plan,
    pub rows: Vec<Measured>,
    pub elapsed: Duration,
}

/// CPU time used so far by this process, all threads (the benchmark's tasks, the
/// connections' tasks, pglock's background unlocks; not the server's).
pub fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one batch did.
#[derive(Clone, Copy, Debug)]
pub struct Batch {
    pub calls: u64,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Seconds of this process's CPU time.
    pub cpu: f64,
}

/// Runs one batch of `workload` in a task of its own (so it runs on a worker thread,
/// as a service's code would).
pub async fn batch(ctx: &Ctx, workload: &Workload, plan: &Plan) -> Batch {
    let (ctx, workload, plan) = (ctx.clone(), workload.clone(), *plan);
    tokio::spawn(async move {
        let (start, cpu) = (Instant::now(), process_cpu());
        let calls = match workload {
            Workload::Latency(f) => {
                f(ctx, plan.calls).await;
                plan.calls as u64
            }
            Workload::Throughput(f) => f(ctx, start + plan.window).await,
        };
        Batch {
            calls,
            secs: start.elapsed().as_secs_f64(),
            cpu: (process_cpu() - cpu).as_secs_f64(),
        }
    })
    .await
    .expect("a benchmark batch panicked")
}

pub async fn run_group(ctx: &Ctx, group: Group, plan: Plan) -> Report {
    let start = Instant::now();
    let measured: Vec<(usize, Workload)> = group
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| (i, m.workload.clone()))
        .collect();
    let rounds = match group.shape {
        Shape::Latency => plan.rounds,
        Shape::Throughput => plan.throughput_rounds,
    };
    let mut values = vec![Vec::with_capacity(rounds); group.members.len()];
    let mut calls = vec![0u64; group.members.len()];
    let mut cpu = vec![0f64; group.members.len()];
    for round in 0..plan.warmup + rounds {
        // Rotate the order so no member always runs right after the same neighbour.
        for k in 0..measured.len() {
            let (i, workload) = &measured[(round + k) % measured.len()];
            let b = batch(ctx, workload, &plan).await;
            if round < plan.warmup {
                continue;
            }
            assert!(
                b.calls > 0,
                "{}/{}: no call completed",
                group.name,
                group.members[*i].id
            );
            calls[*i] += b.calls;
            cpu[*i] += b.cpu;
            values[*i].push(match group.shape {
                Shape::Latency => b.secs / b.calls as f64,
                Shape::Throughput => b.calls as f64 / b.secs,
            });
        }
    }
    let rows = group
        .members
        .iter()
        .cloned()
        .zip(values.into_iter().zip(calls).zip(cpu))
        .map(|(member, ((values, calls), cpu))| Measured {
            member,
            values,
            calls,
            cpu,
        })
        .collect();
    Report {
        group,
        plan,
        rows,
        elapsed: start.elapsed(),
    }
}

/// The `q`-quantile (0..=1) of `values`, interpolating between ranks.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

pub fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

/// How a target or check came out.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub group: &'static str,
    pub what: String,
    pub target: String,
    /// Ratio of medians: how the targets are stated.
    pub ratio: f64,
    pub met: bool,
    /// Median of the per-round ratios: the steadier reading on a loaded machine.
    pub paired: f64,
    pub paired_met: bool,
    /// One of the targets (else: shown for information).
    pub counts: bool,
}

impl Report {
    fn row(&self, id: &str) -> Option<&Measured> {
        self.rows
            .iter()
            .find(|r| r.member.id == id && !r.values.is_empty())
    }

    fn baseline(&self) -> &Measured {
        &self.rows[0]
    }

    /// Ratio of `row`'s median to the baseline's (time ratio for latency, rate
    /// ratio for throughput), and the p10, median and p90 of the per-round ratios.
    fn ratios(&self, row: &Measured) -> (f64, f64, f64, f64) {
        let base = &self.baseline().values;
        let paired: Vec<f64> = row.values.iter().zip(base).map(|(v, b)| v / b).collect();
        (
            median(&row.values) / median(base),
            quantile(&paired, 0.1),
            median(&paired),
            quantile(&paired, 0.9),
        )
    }

    pub fn verdicts(&self) -> Vec<Verdict> {
        let mut out = Vec::new();
        for row in &self.rows[1..] {
            if let Some(target) = row.member.target {
                if row.values.is_empty() {
                    continue;
                }
                let (ratio, _, paired, _) = self.ratios(row);
                out.push(Verdict {
                    group: self.group.name,
                    what: format!("{} vs {}", row.member.id, self.baseline().member.id),
                    target: target.text(),
                    ratio,
                    met: target.met(ratio),
                    paired,
                    paired_met: target.met(paired),
                    counts: true,
                });
            }
        }
        for check in &self.group.checks {
            let (Some(fast), Some(slow)) = (self.row(check.faster), self.row(check.slower)) else {
                continue;
            };
            let speedup = median(&slow.values) / median(&fast.values);
            let per_round: Vec<f64> = slow
                .values
                .iter()
                .zip(&fast.values)
                .map(|(s, f)| s / f)
                .collect();
            let paired = median(&per_round);
            out.push(Verdict {
                group: self.group.name,
                what: format!(
                    "{} faster than {}{}",
                    check.faster,
                    check.slower,
                    if check.target { "" } else { " (info)" }
                ),
                target: format!("≥ {:.2}×", check.factor),
                ratio: speedup,
                met: speedup >= check.factor,
                paired,
                paired_met: paired >= check.factor,
                counts: check.target,
            });
        }
        out
    }

    /// The group's table, in Markdown.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let g = &self.group;
        let (unit, spread) = match g.shape {
            Shape::Latency => ("median µs/call", "p10–p90 µs"),
            Shape::Throughput => ("median calls/s", "p10–p90 calls/s"),
        };
        let ratio_head = match g.shape {
            Shape::Latency => "time ÷ baseline",
            Shape::Throughput => "rate ÷ baseline",
        };
        let _ = writeln!(s, "### `{}`: {}\n", g.name, g.what);
        let _ = writeln!(
            s,
            "| scenario | {unit} | {spread} | {ratio_head} (medians) | per-round ratio: median (p10–p90) | target | | client CPU µs/call | calls |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|---:|---:|");
        let mut legend = Vec::new();
        for (i, row) in self.rows.iter().enumerate() {
            let m = &row.member;
            let target = m.target;
            let show = |v: f64| match g.shape {
                Shape::Latency => format!("{:.1}", v * 1e6),
                Shape::Throughput => format!("{:.0}", v),
            };
            let (med, p10, p90) = (
                median(&row.values),
                quantile(&row.values, 0.1),
                quantile(&row.values, 0.9),
            );
            let (ratio, paired, verdict) = if i == 0 {
                ("1 (baseline)".to_string(), "—".to_string(), String::new())
            } else {
                let (r, lo, mid, hi) = self.ratios(row);
                let verdict = match target {
                    Some(t) if !self.plan.judge => format!("({})", t.text()),
                    Some(t) if t.met(r) => "met".to_string(),
                    Some(_) => "**MISSED**".to_string(),
                    None => "info".to_string(),
                };
                (
                    format!("{r:.3}"),
                    format!("{mid:.3} ({lo:.3}–{hi:.3})"),
                    verdict,
                )
            };
            let _ = writeln!(
                s,
                "| `{}` | {} | {}–{} | {} | {} | {} | {} | {:.1} | {} |",
                m.id,
                show(med),
                show(p10),
                show(p90),
                ratio,
                paired,
                target.map(Target::text).unwrap_or_default(),
                verdict,
                row.cpu * 1e6 / row.calls as f64,
                row.calls
            );
            legend.push(format!("- `{}`: {}", m.id, m.what));
        }
        let _ = writeln!(s);
        for line in &legend {
            let _ = writeln!(s, "{line}");
        }
        if !g.checks.is_empty() {
            let _ = writeln!(s);
            for v in self.verdicts().iter().filter(|v| v.what.contains("faster")) {
                let _ = writeln!(
                    s,
                    "- {}: **{:.2}×** (per-round median {:.2}×; target {}){}",
                    v.what,
                    v.ratio,
                    v.paired,
                    v.target,
                    match (self.plan.judge, v.met) {
                        (false, _) => "",
                        (true, true) => ": met",
                        (true, false) => ": **MISSED**",
                    }
                );
            }
        }
        let _ = writeln!(
            s,
            "\n{} rounds after {} warm-up; {}; {:.1} s.\n",
            self.rows[0].values.len(),
            self.plan.warmup,
            match g.shape {
                Shape::Latency => format!("{} calls per batch", self.plan.calls),
                Shape::Throughput => format!("{} ms per batch", self.plan.window.as_millis()),
            },
            self.elapsed.as_secs_f64()
        );
        s
    }
}
