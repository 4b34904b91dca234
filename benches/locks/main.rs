//! pglock's benchmarks: what a lock costs, beside what the same work costs without
//! pglock, in the same run. See `BENCHMARKS.md` for the last full run.
//!
//! ```text
//! cargo bench --bench locks                      # full run (groups, capacity, scaling, fleet)
//! cargo bench --bench locks -- --quick           # shorter run: few short rounds (also PGLOCK_BENCH_QUICK=1)
//! cargo bench --bench locks -- contended         # only the named groups or sections
//! cargo bench --bench locks -- fence             # what a fencing token adds, Pool and Locker
//! cargo bench --bench locks -- held              # 16 tasks with and without 5,000 other locks held
//! cargo bench --bench locks -- capacity          # only the capacity section (5,000 locks on one session)
//! cargo bench --bench locks -- scaling           # only the scaling section (writes benches/scaling.svg)
//! cargo bench --bench locks -- fleet             # only the fleet: 12 processes through a Pool and a Locker, twice each
//! cargo bench --bench locks -- uncontended/runtime_drop   # one scenario beside its baseline and limit
//! cargo bench --bench locks -- --solo uncontended/runtime_drop   # that scenario alone (for perf)
//! cargo bench --bench locks -- --statements      # statements per call, from the server log (no timing)
//! cargo bench --bench locks -- --current-thread  # on a current-thread tokio runtime (default: multi-thread)
//! cargo bench --bench locks -- --svg PATH        # where the scaling chart goes (default benches/scaling.svg)
//! ```
//!
//! Run by `cargo test --benches` (without cargo's `--bench` flag) it does one tiny
//! round (after one warm-up) of every group, capacity and scaling (no chart, no fleet unless named) and
//! judges nothing: a check that the scenarios still run.
//!
//! The database is `pglock::testdb::shared()`: `DATABASE_URL` if set, else a
//! throwaway cluster started for the run. Layout, each module importing only those
//! listed before it: `env.rs` (the pools, Lockers and lock names the workloads
//! share), `stats.rs` (quantiles), `harness.rs` (what a group is: members,
//! baseline, limit, targets, setup), `held.rs` (the locks the `held` group keeps
//! held), `report.rs` (ratios, verdicts, tables), `run.rs` (rounds and batches),
//! `scenarios.rs` (the table of scenarios and their code),
//! `capacity.rs` (thousands of locks held at once: times, server memory),
//! `scaling.rs` (cost per call against locks held and tasks), `chart.rs` (its SVG),
//! `fleet.rs` (a dozen processes, Pool beside Locker), `profile.rs`
//! (`--statements`), `machine.rs` (facts printed with the results), `plans.rs` (how
//! much each mode measures), and this file (options, order, output).

mod capacity;
mod chart;
mod env;
mod fleet;
mod harness;
mod held;
mod machine;
mod plans;
mod profile;
mod report;
mod run;
mod scaling;
mod scenarios;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use harness::Group;
use plans::{Mode, Plans};
use report::{Report, Verdict};

const HELP: &str = "usage: cargo bench --bench locks -- [--quick] [--statements] [--solo] [--current-thread] [--svg PATH] [GROUP | GROUP/SCENARIO | SECTION ...]\n\
groups: uncontended wait_uncontended contended contended16 distinct_keys held nested fence\n\
sections: capacity scaling fleet";

/// The command line.
struct Options {
    mode: Mode,
    statements: bool,
    solo: bool,
    current_thread: bool,
    svg: PathBuf,
    filters: Vec<String>,
}

/// The options, or `None` after printing the help.
fn options() -> Option<Options> {
    let mut bench = false;
    let mut quick = std::env::var("PGLOCK_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut o = Options {
        mode: Mode::Smoke,
        statements: false,
        solo: false,
        current_thread: false,
        svg: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/scaling.svg"),
        filters: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--statements" => o.statements = true,
            "--solo" => o.solo = true,
            "--current-thread" => o.current_thread = true,
            "--svg" => o.svg = args.next().map(PathBuf::from).unwrap_or(o.svg),
            "--help" | "-h" => {
                println!("{HELP}");
                return None;
            }
            flag if flag.starts_with('-') => eprintln!("locks: ignoring {flag}"),
            filter => o.filters.push(filter.to_string()),
        }
    }
    o.mode = match (bench, quick) {
        (false, _) => Mode::Smoke,
        (true, true) => Mode::Quick,
        (true, false) => Mode::Full,
    };
    Some(o)
}

impl Options {
    /// The groups the filters name ("group", or "group/member": that member beside
    /// its baseline); every group without filters.
    fn groups(&self) -> Vec<Group> {
        let filters = &self.filters;
        scenarios::groups()
            .into_iter()
            .filter_map(|g| {
                if filters.is_empty() || filters.iter().any(|f| f == g.name) {
                    return Some(g);
                }
                let id = filters
                    .iter()
                    .find_map(|f| f.strip_prefix(g.name)?.strip_prefix('/'))?;
                g.only(id, self.solo)
            })
            .collect()
    }

    /// Whether the section `name` runs: named, or no filter at all (the fleet then
    /// only in a measured run: it starts two dozen processes).
    fn section(&self, name: &str) -> bool {
        if self.statements {
            return false;
        }
        if self.filters.iter().any(|f| f == name) {
            return true;
        }
        self.filters.is_empty() && (name != "fleet" || self.mode != Mode::Smoke)
    }

    /// The flags and filters of the command, as it was typed.
    fn command(&self) -> String {
        let mut args: Vec<&str> = Vec::new();
        for (on, flag) in [
            (self.mode == Mode::Quick, "--quick"),
            (self.solo, "--solo"),
            (self.current_thread, "--current-thread"),
        ] {
            if on {
                args.push(flag);
            }
        }
        args.extend(self.filters.iter().map(String::as_str));
        format!(
            "cargo {} --bench locks{}{}",
            if self.mode == Mode::Smoke {
                "test"
            } else {
                "bench"
            },
            if args.is_empty() { "" } else { " -- " },
            args.join(" ")
        )
    }
}

/// Everything one run measured.
struct Results {
    facts: String,
    reports: Vec<Report>,
    capacity: Option<String>,
    scaling: Option<scaling::Scaling>,
    fleet: Option<fleet::Fleet>,
}

/// Runs the groups, then the sections, in that order.
async fn measure(o: &Options, groups: Vec<Group>, plans: Plans) -> Results {
    let db = pglock::testdb::shared();
    let ctx: env::Ctx = Arc::new(env::Env::connect(db).await);
    let facts = machine::facts(&ctx.pool, o.current_thread).await;
    let mut reports = Vec::new();
    for group in groups {
        eprintln!("locks: {} ...", group.name);
        reports.push(run::run_group(&ctx, group, plans.groups).await);
    }
    // The sections on a worker thread, as a service's code (and every batch) runs.
    let mut capacity = None;
    if o.section("capacity") {
        eprintln!("locks: capacity ...");
        let (ctx, plan) = (ctx.clone(), plans.capacity);
        let section = tokio::spawn(async move { capacity::run(&ctx, plan).await });
        capacity = Some(section.await.expect("the capacity section panicked"));
    }
    let mut scaling = None;
    if o.section("scaling") {
        eprintln!("locks: scaling ...");
        let (ctx, plan) = (ctx.clone(), plans.scaling.clone());
        let section = tokio::spawn(async move { scaling::run(&ctx, db, plan).await });
        scaling = Some(section.await.expect("the scaling section panicked"));
    }
    let mut fleet = None;
    if o.section("fleet") {
        eprintln!("locks: fleet ...");
        fleet = Some(fleet::run(db, plans.fleet).await);
    }
    Results {
        facts,
        reports,
        capacity,
        scaling,
        fleet,
    }
}

fn main() {
    let Some(o) = options() else { return };
    let groups = o.groups();
    let sections = ["capacity", "scaling", "fleet"];
    if groups.is_empty() && !sections.iter().any(|s| o.section(s)) {
        eprintln!("locks: no group or section named {:?}\n{HELP}", o.filters);
        std::process::exit(2);
    }
    let runtime = if o.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("tokio runtime");

    if o.statements {
        print!("{}", profile::run(&runtime, groups));
        return;
    }
    let start = Instant::now();
    let load_before = machine::load();
    let results = runtime.block_on(measure(&o, groups, plans::of(o.mode)));
    println!("# pglock benchmarks ({:?} run)\n", o.mode);
    print!("{}", results.facts);
    println!(
        "- load average (1, 5, 15 min): {load_before} before, {} after; whole run {:.0} s",
        machine::load(),
        start.elapsed().as_secs_f64()
    );
    println!("- command: `{}`\n", o.command());
    print_results(&o, &results);
}

fn print_results(o: &Options, results: &Results) {
    println!(
        "Time ratios below 1 and rate ratios above 1 favour the scenario. \
         \"per round\" is each round's scenario batch over the reference's batch \
         of the same round. In latency groups, `select1` (one pooled round trip, no \
         lock) is the limit a locked call can reach.\n"
    );
    for report in &results.reports {
        print!("{}", report.table());
    }
    if let Some(capacity) = &results.capacity {
        print!("{capacity}");
    }
    if let Some(scaling) = &results.scaling {
        print!("{scaling}");
        write_chart(o, scaling);
    }
    if let Some(fleet) = &results.fleet {
        print!("{fleet}");
    }
    if o.mode == Mode::Smoke {
        println!("Smoke run (no `--bench` flag): every scenario ran once; nothing is judged.");
        return;
    }
    let verdicts: Vec<Verdict> = results.reports.iter().flat_map(|r| r.verdicts()).collect();
    if !verdicts.is_empty() {
        print_targets(&verdicts);
    }
}

/// The scaling chart, in a measured run (a smoke run's numbers are no chart).
fn write_chart(o: &Options, scaling: &scaling::Scaling) {
    if o.mode == Mode::Smoke {
        return;
    }
    let title = format!(
        "pglock scaling ({:?} run, {}, load {})",
        o.mode,
        machine::now(),
        machine::load()
    );
    match chart::write(&o.svg, &title, scaling) {
        Ok(()) => println!("Chart: `{}`.\n", o.svg.display()),
        Err(e) => {
            eprintln!("locks: writing {}: {e}", o.svg.display());
            std::process::exit(1);
        }
    }
}

fn print_targets(verdicts: &[Verdict]) {
    println!(
        "## Targets\n\n\
         Judged on the ratio of medians, as the targets are stated; the median of the \
         per-round ratios is shown beside it (steadier when the machine is loaded).\n\n\
         | group | comparison | target | ratio of medians | | per-round median | |\n\
         |---|---|---:|---:|---|---:|---|"
    );
    let word = |met: bool, counts: bool| match (met, counts) {
        (true, _) => "met",
        (false, true) => "**MISSED**",
        (false, false) => "not met (info)",
    };
    for v in verdicts {
        println!(
            "| {} | {} | {} | {:.3} | {} | {:.3} | {} |",
            v.group,
            v.what,
            v.target,
            v.ratio,
            word(v.met, v.counts),
            v.paired,
            word(v.paired_met, v.counts)
        );
    }
    let targets: Vec<&Verdict> = verdicts.iter().filter(|v| v.counts).collect();
    println!(
        "\n{} of {} targets met on the ratio of medians ({} on the per-round medians).",
        targets.iter().filter(|v| v.met).count(),
        targets.len(),
        targets.iter().filter(|v| v.paired_met).count(),
    );
}
