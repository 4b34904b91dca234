//! What the leader knows so far of each worker, from its events (and, for the
//! connections, from `pg_stat_activity`).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::event::Event;

#[derive(Default)]
pub struct Tally {
    /// Tasks in the critical section now.
    pub inside: BTreeSet<u32>,
    pub entries: u64,
    pub waits: Vec<Duration>,
    pub busy: u64,
    pub skipped: u64,
    /// The most lock connections seen open at once.
    pub connections: u32,
}

impl Tally {
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Enter { task, waited } => {
                self.inside.insert(task);
                self.entries += 1;
                self.waits.push(waited);
            }
            Event::Leave { task, .. } => {
                self.inside.remove(&task);
            }
            Event::Busy { .. } => self.busy += 1,
            Event::Skip { .. } => self.skipped += 1,
        }
    }

    /// The median wait so far.
    pub fn wait_p50(&self) -> Option<Duration> {
        let mut waits = self.waits.clone();
        waits.sort_unstable();
        waits.get(waits.len() / 2).copied()
    }
}

/// Every worker's tally.
pub struct Board {
    pub workers: Vec<Tally>,
}

impl Board {
    pub fn new(workers: u32) -> Board {
        Board {
            workers: (0..workers).map(|_| Tally::default()).collect(),
        }
    }

    pub fn apply(&mut self, worker: u32, event: Event) {
        if let Some(tally) = self.workers.get_mut(worker as usize) {
            tally.apply(event);
        }
    }

    pub fn saw_connections(&mut self, counts: &[u32]) {
        for (tally, &n) in self.workers.iter_mut().zip(counts) {
            tally.connections = tally.connections.max(n);
        }
    }

    /// Who is in the critical section now: `worker 2`, `worker 2 task 3`, or
    /// several of them (only ever without the lock).
    pub fn inside(&self, tasks: bool) -> String {
        let names: Vec<String> = self
            .workers
            .iter()
            .enumerate()
            .flat_map(|(w, tally)| {
                tally.inside.iter().map(move |t| match tasks {
                    true => format!("worker {w} task {t}"),
                    false => format!("worker {w}"),
                })
            })
            .collect();
        match names.is_empty() {
            true => "nobody".into(),
            false => names.join(" + "),
        }
    }
}

/// `38 ms`, `1.20 s`.
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
