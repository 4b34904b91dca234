//! pglock's benchmarks: what a lock costs, beside what the same work costs without
//! pglock, in the same run. See `BENCHMARKS.md` for the last full run.
//!
//! ```text
//! cargo bench --bench locks                      # full run (under a minute once built)
//! cargo bench --bench locks -- --quick           # smoke run: few short rounds (also PGLOCK_BENCH_QUICK=1)
//! cargo bench --bench locks -- contended         # only the named groups
//! cargo bench --bench locks -- capacity          # only the capacity section (5,000 locks on one session)
//! cargo bench --bench locks -- uncontended/runtime_drop   # one scenario beside its baseline
//! cargo bench --bench locks -- --solo uncontended/runtime_drop   # that scenario alone (for perf)
//! cargo bench --bench locks -- --statements      # statements per call, from the server log (no timing)
//! cargo bench --bench locks -- --current-thread  # on a current-thread tokio runtime (default: multi-thread)
//! ```
//!
//! Run by `cargo test --benches` (without cargo's `--bench` flag) it does one tiny
//! round of everything and judges nothing: a check that the scenarios still run.
//!
//! The database is `pglock::testdb::shared()`: `DATABASE_URL` if set, else a
//! throwaway cluster started for the run. Layout: `harness.rs` (groups, rounds,
//! statistics, tables), `scenarios.rs` (the table of scenarios and their code),
//! `capacity.rs` (thousands of locks held at once: times, server memory),
//! `profile.rs` (`--statements`), `machine.rs` (facts printed with the results).

mod capacity;
mod harness;
mod machine;
mod profile;
mod scenarios;

use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{Plan, Verdict};

const HELP: &str =
    "usage: cargo bench --bench locks -- [--quick] [--statements] [--solo] [--current-thread] [GROUP | GROUP/SCENARIO ...]\n\
groups: uncontended wait_uncontended contended contended16 distinct_keys capacity";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Full,
    Quick,
    /// Not run by `cargo bench`: one tiny round, nothing judged.
    Smoke,
}

fn main() {
    let mut bench = false;
    let mut quick = std::env::var("PGLOCK_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let mut statements = false;
    let mut solo = false;
    let mut current_thread = false;
    let mut filters = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--bench" => bench = true,
            "--quick" => quick = true,
            "--statements" => statements = true,
            "--solo" => solo = true,
            "--current-thread" => current_thread = true,
            "--help" | "-h" => {
                println!("{HELP}");
                return;
            }
            flag if flag.starts_with('-') => eprintln!("locks: ignoring {flag}"),
            filter => filters.push(filter.to_string()),
        }
    }
    let mode = match (bench, quick) {
        (false, _) => Mode::Smoke,
        (true, true) => Mode::Quick,
        (true, false) => Mode::Full,
    };
    let capacity = match mode {
        Mode::Full => capacity::Plan {
            keys: 5000,
            reps: 3,
        },
        Mode::Quick => capacity::Plan {
            keys: 5000,
            reps: 1,
        },
        Mode::Smoke => capacity::Plan { keys: 50, reps: 1 },
    };
    let plan = match mode {
        // Many short rounds rather than a few long ones: on a shared machine the load
        // of other processes comes and goes within seconds, and short interleaved
        // batches let every member see the same mix of quiet and busy moments.
        Mode::Full => Plan {
            warmup: 5,
            rounds: 151,
            throughput_rounds: 61,
            calls: 60,
            window: Duration::from_millis(40),
            judge: true,
        },
        Mode::Quick => Plan {
            warmup: 2,
            rounds: 21,
            throughput_rounds: 9,
            calls: 30,
            window: Duration::from_millis(20),
            judge: true,
        },
        Mode::Smoke => Plan {
            warmup: 0,
            rounds: 1,
            throughput_rounds: 1,
            calls: 3,
            window: Duration::from_millis(5),
            judge: false,
        },
    };
    let groups: Vec<_> = scenarios::groups()
        .into_iter()
        .filter_map(|g| {
            if filters.is_empty() || filters.iter().any(|f| f == g.name) {
                return Some(g);
            }
            // "group/member": that member beside its baseline.
            let id = filters
                .iter()
                .find_map(|f| f.strip_prefix(g.name)?.strip_prefix('/'))?;
            g.only(id, solo)
        })
        .collect();
    let with_capacity =
        !statements && (filters.is_empty() || filters.iter().any(|f| f == "capacity"));
    if groups.is_empty() && !with_capacity {
        eprintln!("locks: no group named {filters:?}\n{HELP}");
        std::process::exit(2);
    }
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()
    .expect("tokio runtime");

    if statements {
        print!("{}", profile::run(&runtime, groups));
        return;
    }

    let db = pglock::testdb::shared();
    let start = Instant::now();
    let load_before = machine::load();
    let (facts, reports, capacity) = runtime.block_on(async {
        let ctx: harness::Ctx = Arc::new(scenarios::Env::connect(db).await);
        let facts = machine::facts(&ctx.pool, current_thread).await;
        let mut reports = Vec::new();
        for group in groups {
            eprintln!("locks: {} ...", group.name);
            reports.push(harness::run_group(&ctx, group, plan).await);
        }
        let capacity = if with_capacity {
            eprintln!("locks: capacity ...");
            // On a worker thread, as a service's code (and every batch) runs.
            let ctx = ctx.clone();
            let section = tokio::spawn(async move { capacity::run(&ctx, capacity).await });
            Some(section.await.expect("the capacity section panicked"))
        } else {
            None
        };
        (facts, reports, capacity)
    });

    println!("# pglock benchmarks ({mode:?} run)\n");
    print!("{facts}");
    println!(
        "- load average (1, 5, 15 min): {load_before} before, {} after; whole run {:.0} s",
        machine::load(),
        start.elapsed().as_secs_f64()
    );
    let mut args: Vec<&str> = Vec::new();
    for (on, flag) in [
        (mode == Mode::Quick, "--quick"),
        (solo, "--solo"),
        (current_thread, "--current-thread"),
    ] {
        if on {
            args.push(flag);
        }
    }
    args.extend(filters.iter().map(String::as_str));
    println!(
        "- command: `cargo {} --bench locks{}{}`\n",
        if mode == Mode::Smoke { "test" } else { "bench" },
        if args.is_empty() { "" } else { " -- " },
        args.join(" ")
    );
    println!(
        "Time ratios below 1 and rate ratios above 1 favour the scenario. \
         \"per-round ratio\" is each round's scenario batch over the baseline batch \
         of the same round.\n"
    );
    for report in &reports {
        print!("{}", report.table());
    }
    if let Some(capacity) = &capacity {
        print!("{capacity}");
    }
    let verdicts: Vec<Verdict> = reports.iter().flat_map(|r| r.verdicts()).collect();
    if mode == Mode::Smoke {
        println!("Smoke run (no `--bench` flag): every scenario ran once; nothing is judged.");
        return;
    }
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
    for v in &verdicts {
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
