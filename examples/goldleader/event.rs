//! What a worker tells the leader, one line on its stdout per event.

use std::fmt;
use std::time::Duration;

/// Something a worker, or one of its tasks, did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The worker is up: its pools are built and the database answered.
    Ready,
    /// Went into the critical section after wanting it for `waited`.
    Enter { task: u32, waited: Duration },
    /// Came out of it after `held`.
    Leave { task: u32, held: Duration },
    /// Tried, and the lock was busy (`--mode try`).
    Busy { task: u32 },
    /// The lock was busy, so the round was skipped (`--mode skip`).
    Skip { task: u32 },
    /// The lock was lost (its session died) while the task wanted or held it; the
    /// task is out of the critical section and goes on with a fresh round.
    Lost { task: u32 },
    /// Elected leader (`--mode lead`), for the term with this fence.
    Elected { fence: u64 },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Ready => write!(f, "ready"),
            Event::Enter { task, waited } => write!(f, "enter {task} {}", waited.as_micros()),
            Event::Leave { task, held } => write!(f, "leave {task} {}", held.as_micros()),
            Event::Busy { task } => write!(f, "busy {task}"),
            Event::Skip { task } => write!(f, "skip {task}"),
            Event::Lost { task } => write!(f, "lost {task}"),
            Event::Elected { fence } => write!(f, "elected {fence}"),
        }
    }
}

impl Event {
    /// The event a line of a worker's stdout reports, if it is one.
    pub fn parse(line: &str) -> Option<Event> {
        let mut words = line.split_ascii_whitespace();
        let kind = words.next()?;
        match kind {
            "ready" => return Some(Event::Ready),
            "elected" => {
                let fence = words.next()?.parse().ok()?;
                return Some(Event::Elected { fence });
            }
            _ => {}
        }
        let task = words.next()?.parse().ok()?;
        let mut micros = || words.next()?.parse().ok().map(Duration::from_micros);
        Some(match kind {
            "enter" => Event::Enter {
                task,
                waited: micros()?,
            },
            "leave" => Event::Leave {
                task,
                held: micros()?,
            },
            "busy" => Event::Busy { task },
            "skip" => Event::Skip { task },
            "lost" => Event::Lost { task },
            _ => return None,
        })
    }

    /// Tells the leader.
    pub fn report(self) {
        println!("{self}");
    }
}
