//! The Locker's in-process table: for each key this process is interested in, who
//! holds it here, on which session the server lock lives, and who waits for it, in
//! FIFO order. Every decision is made under one short mutex, before (and without)
//! asking the server; the server is asked by at most one task per key at a time.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::drop_guard::DropGuard;
use crate::key::LockKey;
use crate::lock::{AdvisoryLock, LockMode};
use crate::mutex::lock_unpoisoned;
use crate::patience::Patience;
use crate::session::Session;

use super::sessions::Sessions;

/// One holding episode of a key: the server lock taken once, held by one or more
/// tasks of this process in turn (or together, when shared), then given back.
pub(super) type Episode = u64;

pub(super) struct Table {
    keys: HashMap<LockKey, Entry>,
    next_episode: Episode,
    handoff: Handoff,
    /// Where the table's unlocks go: the lock sessions count what they hold.
    sessions: Arc<Sessions>,
    /// What a release the table decides on its own (a ticket dropped unused) does
    /// about the server lock: given by the Locker, which owns the relock.
    finish: Finish,
    /// Runs once, as a handoff begins: lets a test close a waiter's turn at the
    /// worst moment.
    #[cfg(test)]
    before_handoff: Option<Box<dyn FnOnce() + Send>>,
}

/// Carries out a [`Release`] in the background: an unlock, or a relock.
pub(super) type Finish = fn(Release, Weak<Mutex<Table>>, Arc<Sessions>);

/// How long the process may keep a key for its own tasks before giving it back to
/// the server's queue: at most `limit` handoffs, and no handoff once `window` has
/// passed since the server granted it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Handoff {
    pub(super) limit: u32,
    pub(super) window: Duration,
}

struct Entry {
    episode: Episode,
    /// The lock as the server holds it (or is asked for it): key, name and mode.
    lock: AdvisoryLock,
    /// The mode the server lock is (being) taken in.
    mode: LockMode,
    /// Tasks of this process holding it now.
    holders: usize,
    /// Where the server lock lives; `None` while a task is asking the server.
    session: Option<Arc<Session>>,
    waiters: VecDeque<Waiter>,
    /// Handoffs inside the process since the server lock was taken.
    handoffs: u32,
    /// When the server granted the lock of this episode.
    since: Instant,
    /// How long the task asking the server now may wait (a try's answer comes at once).
    asker: Patience,
}

struct Waiter {
    lock: AdvisoryLock,
    /// How long it may wait (a try must not wait longer than one answer of the server).
    patience: Patience,
    tell: oneshot::Sender<Ticket>,
}

/// What a task gets from the table.
pub(super) enum Admission {
    /// Held: shares the server lock already held (shared mode).
    Holds(Arc<Session>, Episode),
    /// Ask the server: this task is the one task of the process that does.
    AskServer(Ticket),
    /// Wait in the process for a ticket.
    Queued(oneshot::Receiver<Ticket>),
    /// A try that would have to wait.
    Busy,
    /// A shared request that may join the shared holders of `Episode` unless an
    /// exclusive request is queued in the server: ask it, then
    /// [`Table::join_readers`].
    CheckForWriters(Episode),
}

/// What a released holder must do about the server lock.
pub(super) enum Release {
    /// Nothing: other holders remain, or the key was handed to a waiter.
    Kept,
    /// Unlock it on this session (the table no longer refers to it).
    Unlock(Arc<Session>, AdvisoryLock),
    /// Give it back to the server's queue and ask for it again at once, for the
    /// tasks of this process still waiting (see [`super::relock`]).
    Relock(Relock),
}

/// What became of a key its relock got back.
pub(super) enum Regranted {
    /// Held by the first waiter now.
    HandedOver,
    /// No waiter wants it in its mode any more: unlock it.
    Unwanted,
    /// The episode ended meanwhile (its session was lost): unlock it.
    Ended,
}

/// A key to give back to the server and ask for again, in one statement on the lock
/// session holding it, on behalf of this process's waiters: the handoff limit or
/// window ran out while they waited. The ticket is the asking turn; dropped unused
/// (its task gave up), it passes the turn to the next waiter.
pub(super) struct Relock {
    pub(super) ticket: Ticket,
    pub(super) session: Arc<Session>,
    pub(super) lock: AdvisoryLock,
}

/// A turn handed to a task: to hold the key, or to ask the server for it. Dropped
/// without being used (its task gave up), it passes the turn on, so no key is ever
/// stuck with a holder or asker that no longer exists.
pub(super) struct Ticket(DropGuard<Turn>);

struct Turn {
    table: Weak<Mutex<Table>>,
    key: LockKey,
    episode: Episode,
    kind: TicketKind,
}

pub(super) enum TicketKind {
    Hold(Arc<Session>),
    Ask,
}

impl Ticket {
    fn new(table: &Weak<Mutex<Table>>, key: LockKey, episode: Episode, kind: TicketKind) -> Self {
        let turn = Turn {
            table: table.clone(),
            key,
            episode,
            kind,
        };
        Ticket(DropGuard::new(turn, pass_unused_turn_on))
    }

    pub(super) fn episode(&self) -> Episode {
        self.0.get().episode
    }

    /// The session of a Hold ticket; `None` for an Ask ticket.
    pub(super) fn held_on(&self) -> Option<&Arc<Session>> {
        match &self.0.get().kind {
            TicketKind::Hold(session) => Some(session),
            TicketKind::Ask => None,
        }
    }

    /// The turn was taken: the ticket's task holds the key, or got it from the server
    /// (or the ticket never reached a task, and must not pass the turn again).
    pub(super) fn used(self) {
        drop(self.0.disarm());
    }
}

/// A ticket dropped unused: its holder lets go, or its asker gave up.
fn pass_unused_turn_on(turn: Turn) {
    let Some(table) = turn.table.upgrade() else {
        return;
    };
    let mut table = lock_unpoisoned(&table);
    match &turn.kind {
        TicketKind::Hold(_) => {
            let release = table.release(turn.key, turn.episode, &turn.table);
            let (sessions, finish) = (table.sessions.clone(), table.finish);
            drop(table);
            finish(release, turn.table.clone(), sessions);
        }
        TicketKind::Ask => table.asked_in_vain(turn.key, turn.episode, &turn.table),
    }
}

impl Table {
    pub(super) fn new(handoff: Handoff, sessions: Arc<Sessions>, finish: Finish) -> Self {
        Table {
            keys: HashMap::new(),
            next_episode: 1,
            handoff,
            sessions,
            finish,
            #[cfg(test)]
            before_handoff: None,
        }
    }

    fn episode(&mut self) -> Episode {
        self.next_episode += 1;
        self.next_episode
    }

    /// A task of this process wants `lock`; `patience` says whether it may queue.
    pub(super) fn admit(
        &mut self,
        lock: &AdvisoryLock,
        patience: Patience,
        me: &Weak<Mutex<Table>>,
    ) -> Admission {
        let key = lock.key();
        let session_lost = self
            .keys
            .get(&key)
            .and_then(|e| e.session.as_ref())
            .is_some_and(|s| s.is_lost());
        if session_lost {
            // Its session died: the lock is not held any more. End the episode
            // (its guards report lost and release nothing) and start again.
            self.pass_ask_on(key, me);
            return self.admit(lock, patience, me);
        }
        let Some(entry) = self.keys.get_mut(&key) else {
            let episode = self.episode();
            self.keys.insert(
                key,
                Entry {
                    episode,
                    lock: lock.clone(),
                    mode: lock.mode(),
                    holders: 0,
                    session: None,
                    waiters: VecDeque::new(),
                    handoffs: 0,
                    since: Instant::now(),
                    asker: patience,
                },
            );
            return Admission::AskServer(Ticket::new(me, key, episode, TicketKind::Ask));
        };
        entry.waiters.retain(|w| !w.tell.is_closed());
        let wait = patience.waits();
        let joins_shared = entry.mode == LockMode::Shared
            && lock.mode() == LockMode::Shared
            && entry.waiters.is_empty();
        match &entry.session {
            // Readers admit readers unless a writer of another process is queued,
            // and only the server knows that: even right after the grant (a handoff
            // window) a writer may have queued meanwhile (guarantee 11).
            Some(_) if joins_shared && entry.holders > 0 => {
                Admission::CheckForWriters(entry.episode)
            }
            // A shared try while a shared *try* of this process is on its way to the
            // server waits for that answer (one round trip) and joins it, as it would
            // on the server; behind a waiting request it is Busy at once.
            None if joins_shared && (wait || !entry.asker.waits()) => {
                self.queue(key, lock, patience)
            }
            _ if !wait => Admission::Busy,
            _ => self.queue(key, lock, patience),
        }
    }

    /// The server answered whether a writer is queued for the key held shared in
    /// `episode`: without one, a shared request joins the holders (the server would
    /// grant it too); with one, it queues behind it (or is Busy). If the episode ended
    /// meanwhile, the request is admitted anew.
    pub(super) fn join_readers(
        &mut self,
        lock: &AdvisoryLock,
        patience: Patience,
        episode: Episode,
        writer_queued: bool,
        me: &Weak<Mutex<Table>>,
    ) -> Admission {
        let key = lock.key();
        let Some(entry) = self
            .keys
            .get_mut(&key)
            .filter(|e| e.episode == episode && e.holders > 0)
        else {
            return self.admit(lock, patience, me);
        };
        let Some(session) = entry.session.clone().filter(|s| !s.is_lost()) else {
            return self.admit(lock, patience, me);
        };
        entry.waiters.retain(|w| !w.tell.is_closed());
        if !writer_queued && entry.waiters.is_empty() {
            entry.holders += 1;
            return Admission::Holds(session, episode);
        }
        if !patience.waits() {
            return Admission::Busy;
        }
        self.queue(key, lock, patience)
    }

    fn queue(&mut self, key: LockKey, lock: &AdvisoryLock, patience: Patience) -> Admission {
        let entry = self.keys.get_mut(&key).expect("queued behind an entry");
        let (tell, ticket) = oneshot::channel();
        entry.waiters.push_back(Waiter {
            lock: lock.clone(),
            patience,
            tell,
        });
        Admission::Queued(ticket)
    }

    /// The asker of `episode` got the server lock on `session` in `mode`. Shared
    /// waiters at the head of the queue join it.
    pub(super) fn granted(
        &mut self,
        key: LockKey,
        episode: Episode,
        mode: LockMode,
        session: &Arc<Session>,
        me: &Weak<Mutex<Table>>,
    ) -> bool {
        let Some(entry) = self.keys.get_mut(&key).filter(|e| e.episode == episode) else {
            return false;
        };
        entry.mode = mode;
        entry.holders = 1;
        entry.session = Some(session.clone());
        entry.handoffs = 0;
        entry.since = Instant::now();
        if mode == LockMode::Shared {
            self.admit_shared_waiters(key, me);
        }
        true
    }

    /// The asker of `episode` did not get the lock (busy, timed out, failed, gave up):
    /// the next waiter asks in its place, or the key is forgotten.
    pub(super) fn asked_in_vain(
        &mut self,
        key: LockKey,
        episode: Episode,
        me: &Weak<Mutex<Table>>,
    ) {
        let Some(entry) = self.keys.get_mut(&key).filter(|e| e.episode == episode) else {
            return;
        };
        debug_assert_eq!(entry.holders, 0);
        self.pass_ask_on(key, me);
    }

    /// Gives the asking turn of `key` (which nobody holds) to its first live waiter,
    /// or forgets the key.
    fn pass_ask_on(&mut self, key: LockKey, me: &Weak<Mutex<Table>>) {
        let episode = self.episode();
        let Some(entry) = self.keys.get_mut(&key) else {
            return;
        };
        entry.episode = episode;
        entry.holders = 0;
        entry.session = None;
        entry.handoffs = 0;
        while let Some(waiter) = entry.waiters.pop_front() {
            let ticket = Ticket::new(me, key, episode, TicketKind::Ask);
            entry.mode = waiter.lock.mode();
            entry.asker = waiter.patience;
            entry.lock = waiter.lock;
            match waiter.tell.send(ticket) {
                Ok(()) => return,
                // That waiter is gone; its ticket must not pass the turn again.
                Err(ticket) => ticket.used(),
            }
        }
        self.keys.remove(&key);
    }

    /// A holder of `episode` lets go. The key goes to the next waiter of the process
    /// without asking the server, unless the handoff limit or window is reached
    /// (then the key goes back to the server's queue, where other processes' waiters
    /// come first: on a lock session in one statement that also asks for it again,
    /// [`Release::Relock`]) or the next waiter wants another mode.
    pub(super) fn release(
        &mut self,
        key: LockKey,
        episode: Episode,
        me: &Weak<Mutex<Table>>,
    ) -> Release {
        let handoff = self.handoff;
        let Some(entry) = self.keys.get_mut(&key).filter(|e| e.episode == episode) else {
            // The episode ended already (its session was lost): nothing is held.
            return Release::Kept;
        };
        entry.holders -= 1;
        if entry.holders > 0 {
            return Release::Kept;
        }
        let Some(session) = entry.session.clone() else {
            return Release::Kept;
        };
        entry.waiters.retain(|w| !w.tell.is_closed());
        let held = entry.lock.clone();
        let Some(next) = entry.waiters.front() else {
            self.keys.remove(&key);
            return Release::Unlock(session, held);
        };
        let lost = session.is_lost();
        let may_hand_off = entry.handoffs < handoff.limit && entry.since.elapsed() < handoff.window;
        if !lost && next.lock.mode() == entry.mode {
            if may_hand_off {
                entry.handoffs += 1;
                if self.hand_to_next(key, &session, me) {
                    return Release::Kept;
                }
            } else if self.sessions.is_lock_session(&session) {
                return self.relock(key, session, held, me);
            }
        }
        // Back to the server: unlock, and let the next waiter queue there behind
        // anyone else's waiter (or ask anew, when the session was lost); with no
        // waiter left, the key is forgotten.
        self.pass_ask_on(key, me);
        Release::Unlock(session, held)
    }

    /// The handoff limit or window ran out with waiters left, on a lock session: a new
    /// episode starts with nobody holding it, and the releaser asks the server again
    /// for the waiters (new arrivals queue behind them meanwhile). One statement
    /// gives the key back, so a waiter of another process gets it first, and takes
    /// it again when nobody else waited.
    fn relock(
        &mut self,
        key: LockKey,
        session: Arc<Session>,
        lock: AdvisoryLock,
        me: &Weak<Mutex<Table>>,
    ) -> Release {
        let episode = self.episode();
        let entry = self.keys.get_mut(&key).expect("the entry released");
        entry.episode = episode;
        entry.holders = 0;
        entry.session = None;
        entry.handoffs = 0;
        // Its answer comes at once, as a try's does.
        entry.asker = Patience::Try;
        let ticket = Ticket::new(me, key, episode, TicketKind::Ask);
        Release::Relock(Relock {
            ticket,
            session,
            lock,
        })
    }

    /// The relock of `episode` got the key back on `session`: it goes to the first
    /// waiter, whatever the handoff limit (the server was asked just now).
    pub(super) fn regranted(
        &mut self,
        key: LockKey,
        episode: Episode,
        session: &Arc<Session>,
        me: &Weak<Mutex<Table>>,
    ) -> Regranted {
        let Some(entry) = self.keys.get_mut(&key).filter(|e| e.episode == episode) else {
            return Regranted::Ended;
        };
        entry.session = Some(session.clone());
        entry.since = Instant::now();
        if self.hand_to_next(key, session, me) {
            return Regranted::HandedOver;
        }
        self.pass_ask_on(key, me);
        Regranted::Unwanted
    }

    /// Hands the held server lock to the first live waiter (and, when shared, to
    /// every shared waiter after it). False when no waiter was left to take it, or
    /// the first live one wants the other mode: the mode is checked on the waiter
    /// that takes the lock, since the one the caller saw in front may have given up
    /// since.
    fn hand_to_next(
        &mut self,
        key: LockKey,
        session: &Arc<Session>,
        me: &Weak<Mutex<Table>>,
    ) -> bool {
        #[cfg(test)]
        if let Some(hook) = self.before_handoff.take() {
            hook();
        }
        let Some(entry) = self.keys.get_mut(&key) else {
            return false;
        };
        let episode = entry.episode;
        while let Some(waiter) = entry.waiters.pop_front() {
            if waiter.lock.mode() != entry.mode {
                entry.waiters.push_front(waiter);
                return false;
            }
            let ticket = Ticket::new(me, key, episode, TicketKind::Hold(session.clone()));
            match waiter.tell.send(ticket) {
                Ok(()) => {
                    entry.holders = 1;
                    if entry.mode == LockMode::Shared {
                        self.admit_shared_waiters(key, me);
                    }
                    return true;
                }
                Err(ticket) => ticket.used(),
            }
        }
        false
    }

    fn admit_shared_waiters(&mut self, key: LockKey, me: &Weak<Mutex<Table>>) {
        let Some(entry) = self.keys.get_mut(&key) else {
            return;
        };
        let Some(session) = entry.session.clone() else {
            return;
        };
        while entry
            .waiters
            .front()
            .is_some_and(|w| w.lock.mode() == LockMode::Shared)
        {
            let waiter = entry.waiters.pop_front().expect("front exists");
            let ticket = Ticket::new(me, key, entry.episode, TicketKind::Hold(session.clone()));
            match waiter.tell.send(ticket) {
                Ok(()) => entry.holders += 1,
                Err(ticket) => ticket.used(),
            }
        }
    }

    /// `session` is gone, and every lock on it: end those episodes. Their holders
    /// learn it from the session's loss signal; their waiters ask the server anew.
    pub(super) fn session_lost(&mut self, session: &Arc<Session>, me: &Weak<Mutex<Table>>) {
        let on_it: Vec<LockKey> = self
            .keys
            .iter()
            .filter(|(_, e)| e.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)))
            .map(|(k, _)| *k)
            .collect();
        for key in on_it {
            self.pass_ask_on(key, me);
        }
    }

    /// Keys this process holds or waits for (for tests and diagnostics).
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(all(test, feature = "testdb"))]
#[path = "table_tests.rs"]
mod tests;
