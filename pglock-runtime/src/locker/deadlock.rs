//! Deadlocks among the tasks of one process that lock through one Locker: which
//! annotated body holds which key, which body waits for which key, and the cycle a
//! new wait would close.
//!
//! PostgreSQL cannot see these cycles: a Locker's holds live on shared lock sessions
//! and its waits in the process, so the server sees neither edge. The Locker keeps the
//! graph itself, under one mutex, and checks it when a wait starts. A cycle can only be
//! closed by a wait (a body that begins to hold a key has not started waiting yet), so
//! the wait that closes it is found at once, and gets [`Error::Deadlock`]; the others
//! proceed once its body lets go.
//!
//! A *hold* is a key held by an annotated body, for as long as its future runs (the
//! attribute scopes it; see `context`). A *wait* is a task queued in the process for a
//! key, made from inside annotated bodies; it keeps every enclosing body from ending.
//! So a wait blocks on the bodies that hold its key, and those bodies on every wait
//! made inside them, at any depth. Guards of the runtime API held outside an annotated
//! body's own lock are not holds: such a guard can move to another task, so whose it
//! is cannot be known, and counting it could report a deadlock that is not one.
//!
//! Cycles through the server, across processes, are `across`'s concern.

pub(crate) mod across;
mod announce;
mod behind;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use crate::context::{BodyId, Held, Registration};
use crate::drop_guard::DropGuard;
use crate::error::Error;
use crate::key::LockKey;
use crate::lock::{AdvisoryLock, LockId};
use crate::mutex::lock_unpoisoned;
use crate::patience::Patience;
use crate::session::Session;

use announce::Announced;
use futures_util::FutureExt;

/// The wait-for graph of one Locker; inert when detection is off.
pub(super) struct Deadlocks {
    graph: Option<Arc<Mutex<Graph>>>,
    /// The server's settings that checks across processes need, read once.
    settings: tokio::sync::OnceCell<across::Settings>,
    /// This Locker's waits in the server, by key (see `behind`).
    in_server: behind::InServer,
}

#[derive(Default)]
struct Graph {
    holds: HashMap<LockKey, Vec<Hold>>,
    waits: HashMap<u64, Wait>,
    next: u64,
}

struct Hold {
    id: u64,
    body: BodyId,
    lock: AdvisoryLock,
    /// The backend of the session holding the key, when known.
    holder: Option<i32>,
}

struct Wait {
    /// The waiting body and every body enclosing it, innermost first.
    bodies: Vec<BodyId>,
    lock: AdvisoryLock,
}

/// One edge of a cycle: a wait for `lock`, blocked by the body holding it as `held`.
struct Step {
    waited: AdvisoryLock,
    held: AdvisoryLock,
}

/// A record in the graph, removed when dropped.
struct Record {
    graph: Weak<Mutex<Graph>>,
    key: Option<LockKey>,
    id: u64,
}

/// A wait in the graph, for as long as it lasts.
pub(super) struct Waiting {
    _record: Option<DropGuard<Record>>,
}

impl Deadlocks {
    pub(super) fn new(enabled: bool) -> Self {
        Deadlocks {
            graph: enabled.then(Arc::default),
            settings: tokio::sync::OnceCell::new(),
            in_server: behind::InServer::default(),
        }
    }

    /// `body` runs holding `lock` on the session of backend `holder` (if known): a
    /// hold until the returned registration is dropped.
    pub(super) fn body_holds(
        &self,
        body: BodyId,
        lock: &AdvisoryLock,
        holder: Option<i32>,
    ) -> Option<Registration> {
        let graph = self.graph.as_ref()?;
        let mut g = lock_unpoisoned(graph);
        let id = g.id();
        g.holds.entry(lock.key()).or_default().push(Hold {
            id,
            body,
            lock: lock.clone(),
            holder,
        });
        let record = Record {
            graph: Arc::downgrade(graph),
            key: Some(lock.key()),
            id,
        };
        Some(Box::new(DropGuard::new(record, forget)))
    }

    /// The task inside `held` queues for `lock`. [`Error::Deadlock`] when this wait
    /// closes a cycle (nothing is recorded then); otherwise the wait is in the graph
    /// until the returned value is dropped. A try queued for one answer of the server
    /// is no wait: it ends `Busy` at worst.
    pub(super) fn wait_starts(
        &self,
        held: &Held,
        lock: &AdvisoryLock,
        patience: Patience,
    ) -> Result<Waiting, Error> {
        let bodies = held.bodies();
        let graph = self.graph.as_ref();
        let Some(graph) = graph.filter(|_| patience.waits() && !bodies.is_empty()) else {
            // Outside every annotated body this task holds nothing the graph knows.
            return Ok(Waiting { _record: None });
        };
        let mut g = lock_unpoisoned(graph);
        if let Some(cycle) = g.cycle_through(&bodies, lock) {
            drop(g);
            return Err(deadlock(lock, &cycle));
        }
        let id = g.id();
        g.waits.insert(
            id,
            Wait {
                bodies,
                lock: lock.clone(),
            },
        );
        let record = Record {
            graph: Arc::downgrade(graph),
            key: None,
            id,
        };
        Ok(Waiting {
            _record: Some(DropGuard::new(record, forget)),
        })
    }
}

/// The backend of `session`, if known yet (a lock session learns it with its first
/// statement).
pub(super) fn backend_of(session: &Session) -> Option<i32> {
    session.known_pid().now_or_never()
}

impl Deadlocks {
    /// The keys the bodies enclosing a wait hold, each with the backend holding it
    /// where known: through this Locker, or through a pool. Empty when detection is
    /// off.
    fn holds_of(&self, held: &Held) -> Vec<Announced> {
        let Some(graph) = self.graph.as_ref() else {
            return Vec::new();
        };
        let holds = held.holds();
        if holds.is_empty() {
            // Outside every annotated body: nothing to look up, and no lock taken on
            // the graph every waiting task of the Locker shares.
            return Vec::new();
        }
        let g = lock_unpoisoned(graph);
        holds
            .into_iter()
            .filter_map(|(body, key, home)| {
                let holder = match home {
                    Some(session) => backend_of(&session),
                    None => g
                        .holds
                        .get(&key)?
                        .iter()
                        .find(|h| h.body == body)
                        .and_then(|h| h.holder),
                }?;
                Some(Announced {
                    key: announce::server_key(key),
                    holder,
                })
            })
            .collect()
    }
}

fn forget(record: Record) {
    let Some(graph) = record.graph.upgrade() else {
        return;
    };
    let mut g = lock_unpoisoned(&graph);
    match record.key {
        None => {
            g.waits.remove(&record.id);
        }
        Some(key) => {
            if let Some(holds) = g.holds.get_mut(&key) {
                holds.retain(|h| h.id != record.id);
                if holds.is_empty() {
                    g.holds.remove(&key);
                }
            }
        }
    }
}

impl Graph {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// The cycle a wait for `lock` by the innermost of `bodies` would close: from the
    /// bodies holding `lock`, through the waits inside them, back to one of `bodies`.
    fn cycle_through(&self, bodies: &[BodyId], lock: &AdvisoryLock) -> Option<Vec<Step>> {
        // For each body reached: the step that reached it, and the body it came from.
        let mut reached: HashMap<BodyId, (Step, Option<BodyId>)> = HashMap::new();
        let mut frontier: Vec<BodyId> = Vec::new();
        self.reach(lock, None, &mut reached, &mut frontier);
        let mut expanded: HashSet<BodyId> = HashSet::new();
        while let Some(holder) = frontier.pop() {
            if bodies.contains(&holder) {
                return Some(path_to(holder, &mut reached));
            }
            if !expanded.insert(holder) {
                continue;
            }
            for wait in self.waits.values().filter(|w| w.bodies.contains(&holder)) {
                self.reach(&wait.lock, Some(holder), &mut reached, &mut frontier);
            }
        }
        None
    }

    /// Marks the bodies holding `waited`'s key as reached from `from`.
    fn reach(
        &self,
        waited: &AdvisoryLock,
        from: Option<BodyId>,
        reached: &mut HashMap<BodyId, (Step, Option<BodyId>)>,
        frontier: &mut Vec<BodyId>,
    ) {
        for hold in self.holds.get(&waited.key()).into_iter().flatten() {
            if reached.contains_key(&hold.body) {
                continue;
            }
            let step = Step {
                waited: waited.clone(),
                held: hold.lock.clone(),
            };
            reached.insert(hold.body, (step, from));
            frontier.push(hold.body);
        }
    }
}

/// The steps from the new wait to `last`, in the order the cycle runs.
fn path_to(last: BodyId, reached: &mut HashMap<BodyId, (Step, Option<BodyId>)>) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut at = Some(last);
    while let Some((step, from)) = at.and_then(|body| reached.remove(&body)) {
        steps.push(step);
        at = from;
    }
    steps.reverse();
    steps
}

/// The error for the wait that closes `cycle`, told to `tracing` with every key and
/// call site on it.
fn deadlock(lock: &AdvisoryLock, cycle: &[Step]) -> Error {
    let described: Vec<String> = cycle.iter().map(describe).collect();
    tracing::warn!(
        lock = lock.name().unwrap_or(""),
        key = %lock.key(),
        cycle = %described.join(" -> "),
        "deadlock through a Locker: this wait closes a cycle, so it fails"
    );
    Error::Deadlock {
        lock: lock.id().clone(),
        source: None,
        cycle: cycle
            .iter()
            .map(|s| s.waited.id().clone())
            .collect::<Vec<LockId>>(),
    }
}

fn describe(step: &Step) -> String {
    format!(
        "{} (waited for{}; held by a body{})",
        step.waited.id(),
        site(&step.waited),
        site(&step.held)
    )
}

fn site(lock: &AdvisoryLock) -> String {
    match (lock.site(), lock.caller()) {
        (Some(site), _) => format!(" at {} ({}:{})", site.function, site.file, site.line),
        (None, Some(caller)) => format!(" at {caller}"),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(name: &str) -> AdvisoryLock {
        AdvisoryLock::new(name.to_owned())
    }

    /// A body holding `name` inside `outer`, recorded in `deadlocks`.
    fn body(deadlocks: &Deadlocks, outer: &Held, name: &str) -> Held {
        let lock = lock(name);
        outer.with_registered(&lock, None, |body| deadlocks.body_holds(body, &lock, None))
    }

    #[test]
    fn a_wait_inside_a_body_blocks_the_bodies_around_it() {
        let deadlocks = Deadlocks::new(true);
        let parent = body(&deadlocks, &Held::default(), "a");
        let child = body(&deadlocks, &parent, "c");
        let other = body(&deadlocks, &Held::default(), "b");
        // The child waits for b: its parent, holding a, cannot end meanwhile.
        let _child_waits = deadlocks
            .wait_starts(&child, &lock("b"), Patience::Forever)
            .unwrap();
        let closing = deadlocks.wait_starts(&other, &lock("a"), Patience::Forever);
        match closing {
            Err(Error::Deadlock { cycle, .. }) => {
                let keys: Vec<LockKey> = cycle.iter().map(LockId::key).collect();
                assert_eq!(keys, [lock("a").key(), lock("b").key()]);
            }
            Err(e) => panic!("expected Deadlock, got {e:?}"),
            Ok(_) => panic!("expected Deadlock, got a wait"),
        }
    }

    #[test]
    fn a_wait_that_ended_or_a_body_that_ended_closes_no_cycle() {
        let deadlocks = Deadlocks::new(true);
        let first = body(&deadlocks, &Held::default(), "a");
        let second = body(&deadlocks, &Held::default(), "b");
        drop(
            deadlocks
                .wait_starts(&first, &lock("b"), Patience::Forever)
                .unwrap(),
        );
        let second_waits = deadlocks
            .wait_starts(&second, &lock("a"), Patience::Forever)
            .unwrap();
        drop(second_waits);
        drop(second);
        assert!(deadlocks
            .wait_starts(&first, &lock("b"), Patience::Forever)
            .is_ok());
    }

    #[test]
    fn siblings_of_one_parent_are_not_one_party() {
        let deadlocks = Deadlocks::new(true);
        let parent = body(&deadlocks, &Held::default(), "p");
        let first = body(&deadlocks, &parent, "a");
        let _second = body(&deadlocks, &parent, "b");
        // The second sibling waits for nothing, so the first may wait for its key.
        assert!(deadlocks
            .wait_starts(&first, &lock("b"), Patience::Forever)
            .is_ok());
    }

    /// Body 1 holds `a` and waits for `b`; body 2, holding `b`, then asks for `a`
    /// with `patience`: whether that closes a cycle the detector reports.
    fn second_closes_the_cycle(detection: bool, patience: Patience) -> bool {
        let deadlocks = Deadlocks::new(detection);
        let first = body(&deadlocks, &Held::default(), "a");
        let second = body(&deadlocks, &Held::default(), "b");
        let _first_waits = deadlocks
            .wait_starts(&first, &lock("b"), Patience::Forever)
            .unwrap();
        deadlocks
            .wait_starts(&second, &lock("a"), patience)
            .is_err()
    }

    #[test]
    fn a_try_queued_for_an_answer_is_no_wait() {
        assert!(
            second_closes_the_cycle(true, Patience::Forever),
            "the premise"
        );
        assert!(!second_closes_the_cycle(true, Patience::Try));
    }

    #[test]
    fn with_detection_off_nothing_is_recorded() {
        assert!(!second_closes_the_cycle(false, Patience::Forever));
    }
}
