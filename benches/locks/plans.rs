//! How much each mode measures: a full run, a quick one, and the smoke run of
//! `cargo test --benches`.

use std::time::Duration;

use crate::{capacity, fleet, harness, scaling};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Full,
    Quick,
    /// Not run by `cargo bench`: one tiny round after one warm-up, nothing judged.
    Smoke,
}

/// The plan of every part of a run.
pub struct Plans {
    pub groups: harness::Plan,
    pub capacity: capacity::Plan,
    pub scaling: scaling::Plan,
    pub fleet: fleet::Plan,
}

/// The points of issue 13's scaling section.
const HELD: [usize; 4] = [1, 100, 1000, 5000];
const TASKS: [usize; 4] = [1, 4, 16, 64];

/// Issue 13's fleet: 12 processes × 4 tasks, 20 keys, for `seconds`.
fn fleet(seconds: f64) -> fleet::Plan {
    fleet::Plan {
        processes: 12,
        tasks: 4,
        keys: 20,
        seconds,
    }
}

pub fn of(mode: Mode) -> Plans {
    match mode {
        // Many short rounds rather than a few long ones: on a shared machine the load
        // of other processes comes and goes within seconds, and short interleaved
        // batches let every member see the same mix of quiet and busy moments.
        Mode::Full => Plans {
            groups: harness::Plan {
                warmup: 5,
                rounds: 151,
                throughput_rounds: 61,
                calls: 60,
                window: Duration::from_millis(40),
                judge: true,
            },
            capacity: capacity::Plan {
                keys: 5000,
                reps: 3,
            },
            scaling: scaling::Plan {
                held: HELD.to_vec(),
                tasks: TASKS.to_vec(),
                rounds: 21,
                calls: 60,
                window: Duration::from_millis(100),
            },
            fleet: fleet(10.0),
        },
        Mode::Quick => Plans {
            groups: harness::Plan {
                warmup: 2,
                rounds: 21,
                throughput_rounds: 9,
                calls: 30,
                window: Duration::from_millis(20),
                judge: true,
            },
            capacity: capacity::Plan {
                keys: 5000,
                reps: 1,
            },
            scaling: scaling::Plan {
                held: HELD.to_vec(),
                tasks: TASKS.to_vec(),
                rounds: 5,
                calls: 30,
                window: Duration::from_millis(50),
            },
            fleet: fleet(3.0),
        },
        Mode::Smoke => Plans {
            groups: harness::Plan {
                // One warm-up round opens the pool's connections: a 5 ms batch whose
                // 16 tasks must first connect (a debug build, a loaded machine) can
                // end before any of them completes a call.
                warmup: 1,
                rounds: 1,
                throughput_rounds: 1,
                calls: 3,
                window: Duration::from_millis(5),
                judge: false,
            },
            capacity: capacity::Plan { keys: 50, reps: 1 },
            scaling: scaling::Plan {
                held: vec![1, 10],
                tasks: vec![1, 4],
                rounds: 1,
                calls: 3,
                window: Duration::from_millis(5),
            },
            fleet: fleet::Plan {
                processes: 2,
                tasks: 2,
                keys: 4,
                seconds: 1.0,
            },
        },
    }
}
