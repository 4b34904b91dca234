//! Running a group: its setup, its rounds (each one batch of every member in rotating
//! order), its teardown, and the process CPU clock read around every batch.

use std::time::{Duration, Instant};

use crate::env::Ctx;
use crate::harness::{Group, Measured, Plan, Shape, Workload};
use crate::report::Report;

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
    let teardown = match &group.setup {
        Some(setup) => Some((setup.0)(ctx.clone()).await),
        None => None,
    };
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
    if let Some(teardown) = teardown {
        teardown.await;
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
