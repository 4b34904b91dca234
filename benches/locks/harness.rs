//! The harness: what a group of scenarios is (its members, baseline, limit and
//! targets) and how much of it to measure. Running a group is `run.rs`; what its
//! numbers say is `report.rs`.
//!
//! A group is one workload shape (say, "one task, one key, nobody else") and a list
//! of members; the first member is the baseline. Each round runs one batch of every
//! member, in an order that rotates from round to round, so a baseline and its
//! scenarios see the same machine: on a shared 2-core box the load of other processes
//! drifts by tens of percent within a minute, and a baseline measured a minute
//! earlier would say more about that drift than about the code. A latency group may
//! also name a **limit** member (`select1`: one pooled round trip, no lock): the
//! physical floor of a locked call, reported beside the baseline. The report gives
//! medians over batches, their p10..p90, and ratios to the baseline: the ratio of the
//! medians (what the targets are stated in), and the p10..p90 of the per-round ratios
//! (how much a single round's comparison could be trusted). A target may also be
//! stated between two members that differ in one thing (`versus`: detection on
//! against off), and a group may have a **setup** whose state every member runs
//! against (5,000 locks held), taken once before the first round and given back
//! after the last, outside every timed batch.
//!
//! Two shapes of workload:
//! - latency: a batch runs `n` calls one after another in one task; the value of a
//!   batch is its time per call (lower is better);
//! - throughput: a batch runs its tasks until a deadline; the value is calls completed
//!   per second (higher is better).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::env::Ctx;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

type LatencyFn = dyn Fn(Ctx, usize) -> BoxFuture<()> + Send + Sync;
type ThroughputFn = dyn Fn(Ctx, Instant) -> BoxFuture<u64> + Send + Sync;
type SetupFn = dyn Fn(Ctx) -> BoxFuture<Teardown> + Send + Sync;

/// What a group's setup leaves to do once its rounds are over (give back what the
/// setup took, and check it is given back).
pub type Teardown = BoxFuture<()>;

/// A group's setup: run once before its first round, untimed; its [`Teardown`] is
/// awaited after the last round.
#[derive(Clone)]
pub struct Setup(pub Arc<SetupFn>);

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

/// A group's [`Setup`] from an `async fn(Ctx) -> Teardown`.
macro_rules! setup {
    ($f:path) => {
        $crate::harness::Setup(::std::sync::Arc::new(|ctx| ::std::boxed::Box::pin($f(ctx))))
    };
}

pub(crate) use {latency, setup, throughput};

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
    pub fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(x) => ratio <= x,
            Target::AtLeast(x) => ratio >= x,
        }
    }

    pub fn text(self) -> String {
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
    /// The member that is the physical limit of this shape (latency groups).
    pub limit: Option<&'static str>,
    /// Targets stated as ratios to the limit: `(member, target)`.
    pub limit_targets: Vec<(&'static str, Target)>,
    /// Targets stated as ratios to a member other than the baseline or the limit:
    /// `(member, reference, target)`, judged as the baseline's are.
    pub versus: Vec<(&'static str, &'static str, Target)>,
    /// State every member runs against (locks held for the whole group, say).
    pub setup: Option<Setup>,
}

impl Group {
    pub fn latency(name: &'static str, what: &'static str) -> Group {
        Group {
            name,
            what,
            shape: Shape::Latency,
            members: Vec::new(),
            checks: Vec::new(),
            limit: None,
            limit_targets: Vec::new(),
            versus: Vec::new(),
            setup: None,
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

    /// The limit: a member measured for information whose time per call the others
    /// are also compared with (one pooled round trip: what no lock can beat).
    pub fn limit(mut self, id: &'static str, what: &'static str, workload: Workload) -> Group {
        assert_eq!(self.shape, Shape::Latency, "a limit is a latency");
        assert!(self.limit.is_none(), "{}: one limit", self.name);
        self.limit = Some(id);
        self.push(id, what, workload, None)
    }

    /// `id`'s time per call must meet `target` as a ratio to the limit's.
    pub fn near_limit(mut self, id: &'static str, target: Target) -> Group {
        assert!(self.limit.is_some(), "{}: the limit first", self.name);
        assert!(
            self.members.iter().any(|m| m.id == id),
            "{}/{id}: the member first",
            self.name
        );
        self.limit_targets.push((id, target));
        self
    }

    /// `id`'s ratio to `reference` (both members, in the same rounds) must meet
    /// `target`: a comparison of two scenarios that differ in one thing, measured
    /// interleaved rather than against the baseline.
    pub fn versus(mut self, id: &'static str, reference: &'static str, target: Target) -> Group {
        for m in [id, reference] {
            assert!(
                self.members.iter().any(|x| x.id == m),
                "{}/{m}: the member first",
                self.name
            );
        }
        self.versus.push((id, reference, target));
        self
    }

    /// Runs `setup` once before the first round; its teardown after the last.
    pub fn setup(mut self, setup: Setup) -> Group {
        assert!(self.setup.is_none(), "{}: one setup", self.name);
        self.setup = Some(setup);
        self
    }

    /// The baseline and the member `id` only (for a closer look at one scenario),
    /// with the limit and the references of its `versus` targets if there are any;
    /// `solo`: the member alone (for a profiler: it then shows as the baseline).
    pub fn only(mut self, id: &str, solo: bool) -> Option<Group> {
        if !self.members.iter().any(|m| m.id == id) {
            return None;
        }
        let baseline = if solo { id } else { self.members[0].id };
        let limit = if solo { None } else { self.limit };
        self.versus.retain(|(m, _, _)| !solo && *m == id);
        let references: Vec<&str> = self.versus.iter().map(|(_, r, _)| *r).collect();
        self.members.retain(|m| {
            m.id == baseline || m.id == id || Some(m.id) == limit || references.contains(&m.id)
        });
        if self
            .limit
            .is_some_and(|l| !self.members.iter().any(|m| m.id == l))
        {
            self.limit = None;
        }
        self.limit_targets.retain(|(m, _)| *m == id);
        if self.limit.is_none() {
            self.limit_targets.clear();
        }
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
