//! What the leader knows so far of each worker: from its events, from its exit, and
//! (its lock sessions) from the server.

use std::collections::BTreeSet;
use std::process::ExitStatus;
use std::time::Duration;

use crate::event::Event;
use crate::server::Sessions;

/// Where a worker process is in its life.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Life {
    /// Started, not yet ready.
    #[default]
    Starting,
    /// Ready: its tasks go round.
    Running,
    /// Exited when told to stop.
    Stopped,
    /// Exited on its own with an error, before it was ready.
    NotStarted(String),
    /// Exited on its own with an error, after it was ready.
    Failed(String),
    /// Killed from outside (a signal) while it ran: a fault the run survives.
    Gone(String),
}

impl Life {
    /// What became of a worker that exited with `status` after living `self`.
    fn exited(&self, status: &std::io::Result<ExitStatus>) -> Life {
        let ready = *self == Life::Running;
        match status {
            Ok(status) if status.success() => Life::Stopped,
            Ok(status) if status.code().is_none() && ready => Life::Gone(status.to_string()),
            Ok(status) if ready => Life::Failed(status.to_string()),
            Ok(status) => Life::NotStarted(status.to_string()),
            Err(e) => Life::Failed(format!("cannot wait for it: {e}")),
        }
    }

    /// Whether the worker process is alive.
    pub fn alive(&self) -> bool {
        matches!(self, Life::Starting | Life::Running)
    }

    /// Whether the run fails because of it: it could not start, or failed on its own.
    pub fn fails_the_run(&self) -> bool {
        matches!(self, Life::NotStarted(_) | Life::Failed(_))
    }

    /// How it ended, for people: `gone (signal: 9 (SIGKILL))`; `None` while it runs
    /// or when it stopped as told.
    pub fn ending(&self) -> Option<String> {
        match self {
            Life::Starting | Life::Running | Life::Stopped => None,
            Life::NotStarted(why) => Some(format!("could not start ({why})")),
            Life::Failed(why) => Some(format!("failed ({why})")),
            Life::Gone(why) => Some(format!("gone ({why})")),
        }
    }
}

#[derive(Default)]
pub struct Tally {
    pub life: Life,
    /// Tasks in the critical section now, by their own word.
    pub inside: BTreeSet<u32>,
    pub entries: u64,
    pub waits: Vec<Duration>,
    pub busy: u64,
    pub skipped: u64,
    /// Locks lost (the worker went on with a fresh round each time).
    pub lost: u64,
    /// The most lock connections seen open at once.
    pub connections: u32,
    /// Whether the server last said one of its sessions holds the lock.
    pub holding: bool,
}

impl Tally {
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Ready => self.life = Life::Running,
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
            Event::Lost { task } => {
                self.inside.remove(&task);
                self.lost += 1;
            }
            Event::Elected { .. } => {}
        }
    }

    /// The worker exited: none of its tasks is inside any more.
    pub fn exited(&mut self, status: &std::io::Result<ExitStatus>) {
        self.life = self.life.exited(status);
        self.inside.clear();
        self.holding = false;
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
    /// Whether the workers take the lock (not `--mode none`).
    locked: bool,
    /// `--mode lead`: the current leader and its term's fence, by its own word.
    pub leader: Option<(u32, u64)>,
}

impl Board {
    pub fn new(workers: u32, locked: bool) -> Board {
        Board {
            workers: (0..workers).map(|_| Tally::default()).collect(),
            locked,
            leader: None,
        }
    }

    pub fn apply(&mut self, worker: u32, event: Event) {
        match event {
            Event::Elected { fence } => self.leader = Some((worker, fence)),
            Event::Lost { .. } if self.leader.is_some_and(|(w, _)| w == worker) => {
                self.leader = None;
            }
            _ => {}
        }
        if let Some(tally) = self.workers.get_mut(worker as usize) {
            tally.apply(event);
        }
    }

    pub fn exited(&mut self, worker: u32, status: &std::io::Result<ExitStatus>) {
        if self.leader.is_some_and(|(w, _)| w == worker) {
            self.leader = None;
        }
        if let Some(tally) = self.workers.get_mut(worker as usize) {
            tally.exited(status);
        }
    }

    pub fn saw_sessions(&mut self, sessions: &[Sessions]) {
        for (tally, s) in self.workers.iter_mut().zip(sessions) {
            tally.connections = tally.connections.max(s.open);
            tally.holding = s.holding && tally.life.alive();
        }
    }

    /// The tasks of worker `w` inside now. With the lock, a worker is inside only
    /// while the server says it holds the lock: one whose lock was just lost may not
    /// know it yet (and will not record the entry's end), so it is not shown.
    pub fn inside_of(&self, w: usize) -> impl Iterator<Item = u32> + '_ {
        let tally = &self.workers[w];
        let confirmed = tally.holding || !self.locked;
        tally.inside.iter().copied().filter(move |_| confirmed)
    }

    /// Who is in the critical section now: `worker 2`, `worker 2 task 3`, or
    /// several of them (only ever without the lock).
    pub fn inside(&self, tasks: bool) -> String {
        let names: Vec<String> = (0..self.workers.len())
            .flat_map(|w| {
                self.inside_of(w).map(move |t| match tasks {
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

    /// `--mode lead`: `leader: worker 2 (term 7301)`, or `leader: none`.
    pub fn leader(&self) -> String {
        match self.leader {
            Some((w, fence)) => format!("leader: worker {w} (term {fence})"),
            None => "leader: none".into(),
        }
    }

    /// Workers whose process is gone, failed or never started: `worker 1 gone (...)`.
    pub fn endings(&self) -> Vec<String> {
        let endings = self.workers.iter().enumerate();
        endings
            .filter_map(|(w, t)| t.life.ending().map(|e| format!("worker {w} {e}")))
            .collect()
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
