//! Batching on a lock session: the tries and unlocks that arrive together on a
//! session go to the server as one statement ([`sql::BATCH`]). PostgreSQL walks a
//! session's whole local lock table at the end of every statement's transaction, so
//! on a session holding n locks each statement costs O(n); a batch pays that walk
//! once for all its requests.
//!
//! One task per lock session sends the batches, one at a time and in arrival order;
//! what arrives while a batch is in flight makes the next one. A batch has one row
//! per key (an unlock and the try right after it of its key share one: see
//! [`super::request`]), so what a failed batch did for each request can be read
//! back afterwards: the requests it may have left undone are then sent alone, and
//! each caller gets its own answer.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::key::LockKey;
use crate::lock::AdvisoryLock;
use crate::mutex::lock_unpoisoned;
use crate::session::Session;
use crate::spawn::spawn_or_drop;
use crate::sql::{self, BatchParams, Op};

use super::request::{Answer, Request};

/// At most this many requests in one statement: a batch failing in its last row is
/// replayed alone request by request, which must stay short.
const MAX_BATCH: usize = 512;

/// The way into one lock session's batches. Cheap to clone; the session's task ends
/// once every clone is dropped and the requests sent are answered.
#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Request>,
    /// Unlocks queued and not answered yet, per key: a new request for such a key
    /// must go to this session, behind the unlock, or it would find the key busy
    /// with our own lock.
    unlocking: Arc<Mutex<HashMap<LockKey, usize>>>,
}

impl Batcher {
    /// Starts the task that sends `session`'s batches.
    pub(super) fn start(session: Arc<Session>) -> Batcher {
        let (queue, requests) = mpsc::unbounded_channel();
        let unlocking = Arc::new(Mutex::new(HashMap::new()));
        let driver = Driver {
            session,
            requests,
            backlog: VecDeque::new(),
            unlocking: unlocking.clone(),
        };
        // Without a runtime no request can be sent either: each is answered lost.
        spawn_or_drop(driver.run());
        Batcher { queue, unlocking }
    }

    /// `pg_try_advisory_lock`, in the next batch. A caller that gives up before
    /// reading the answer leaves nothing held: a lock granted to nobody is unlocked.
    pub(super) async fn try_lock(&self, lock: &AdvisoryLock) -> Answer {
        self.awaited(Op::Try, lock).await
    }

    /// `pg_advisory_unlock` then `pg_try_advisory_lock` of the same key, in one
    /// request of the next batch ([`Op::Relock`]): whether it was granted again;
    /// [`Error::LockLost`] when the session did not hold it. A caller that gives up
    /// leaves nothing held, as with a try.
    pub(super) async fn relock(&self, lock: &AdvisoryLock) -> Answer {
        self.awaited(Op::Relock, lock).await
    }

    async fn awaited(&self, op: Op, lock: &AdvisoryLock) -> Answer {
        let mut awaited = AwaitedTry {
            answer: self.send(op, lock),
            batcher: self,
            lock,
        };
        (&mut awaited.answer)
            .await
            .unwrap_or_else(|_closed| lost(lock))
    }

    /// `pg_advisory_unlock`, queued now, in order with every request sent before
    /// it; the answer may be awaited or dropped (a failure is then logged).
    pub(super) fn unlock(&self, lock: &AdvisoryLock) -> oneshot::Receiver<Answer> {
        *lock_unpoisoned(&self.unlocking)
            .entry(lock.key())
            .or_default() += 1;
        self.send(Op::Unlock, lock)
    }

    /// Whether an unlock of `key` is queued here and not answered yet.
    pub(super) fn is_unlocking(&self, key: LockKey) -> bool {
        lock_unpoisoned(&self.unlocking).contains_key(&key)
    }

    fn send(&self, op: Op, lock: &AdvisoryLock) -> oneshot::Receiver<Answer> {
        let (tell, answer) = oneshot::channel();
        let request = Request::new(op, lock.clone(), tell);
        if let Err(refused) = self.queue.send(request) {
            let request = refused.0;
            // Nobody listens when the caller dropped the answer already.
            let _unheard = request.tell.send(lost(&request.lock));
        }
        answer
    }
}

/// A try's (or relock's) answer while its caller waits for it. The caller may give up at any
/// moment, even after the batch task handed the answer over: a grant still to come
/// then finds nobody to tell (and the batch task unlocks it), and one that came
/// already is unlocked here; closing the channel first makes it exactly one of
/// the two.
struct AwaitedTry<'a> {
    answer: oneshot::Receiver<Answer>,
    batcher: &'a Batcher,
    lock: &'a AdvisoryLock,
}

impl Drop for AwaitedTry<'_> {
    fn drop(&mut self) {
        self.answer.close();
        if let Ok(Ok(true)) = self.answer.try_recv() {
            // The answer is the batch task's to log when it fails.
            drop(self.batcher.unlock(self.lock));
        }
    }
}

fn lost(lock: &AdvisoryLock) -> Answer {
    Err(Error::LockLost {
        lock: lock.id().clone(),
    })
}

/// The task sending one session's batches.
struct Driver {
    session: Arc<Session>,
    requests: mpsc::UnboundedReceiver<Request>,
    /// Requests to send before any new one: those kept out of the last batch (their
    /// key was in it already), and unlocks of locks granted to callers that gave up.
    backlog: VecDeque<Request>,
    unlocking: Arc<Mutex<HashMap<LockKey, usize>>>,
}

impl Driver {
    async fn run(mut self) {
        while let Some(batch) = self.next_batch().await {
            self.send(batch).await;
        }
    }

    /// The requests waiting now, one row per key: an unlock takes in the try of its
    /// key right after it (fused); any other request for a key already in the batch
    /// waits for the next one, and so does every later request for that key (each
    /// key's requests stay in order; different keys' need no order). A task that
    /// drops a guard and tries the key again at once queues an unlock and a try of
    /// one key back to back; cutting the batch there would send one request per
    /// statement.
    async fn next_batch(&mut self) -> Option<Vec<Request>> {
        let first = match self.backlog.pop_front() {
            Some(request) => request,
            None => self.requests.recv().await?,
        };
        let mut rows = HashMap::from([(first.lock.key(), 0)]);
        let mut batch = vec![first];
        let mut deferred = VecDeque::new();
        let mut deferred_keys = HashSet::new();
        while batch.len() < MAX_BATCH && deferred.len() < MAX_BATCH {
            let next = match self.backlog.pop_front() {
                Some(request) => request,
                None => match self.requests.try_recv() {
                    Ok(request) => request,
                    Err(_empty) => break,
                },
            };
            let key = next.lock.key();
            let refused = match rows.entry(key) {
                _ if deferred_keys.contains(&key) => Some(next),
                Entry::Vacant(row) => {
                    row.insert(batch.len());
                    batch.push(next);
                    None
                }
                Entry::Occupied(row) => batch[*row.get()].fuse(next).err(),
            };
            if let Some(next) = refused {
                deferred_keys.insert(key);
                deferred.push_back(next);
            }
        }
        deferred.append(&mut self.backlog);
        self.backlog = deferred;
        Some(batch)
    }

    async fn send(&mut self, batch: Vec<Request>) {
        for request in &batch {
            if request.op == Op::Try {
                self.session.count_possible_hold();
            }
        }
        let answers = match run_batch(&self.session, &batch).await {
            Ok(answers) => answers,
            Err(error) => {
                let error = Error::from_db(batch[0].lock.id(), error);
                // A lone relock that failed may have done its unlock and not its
                // try: it is read back as a batch's requests are.
                let alone_and_plain = batch.len() == 1 && batch[0].op != Op::Relock;
                if alone_and_plain || error.leaves_doubt() {
                    return self.failed(batch, error);
                }
                tracing::debug!(%error, requests = batch.len(), "a batch failed; sending its requests alone");
                vec![None; batch.len()]
            }
        };
        let mut unknown = Vec::new();
        for (request, row) in batch.into_iter().zip(answers) {
            if request.is_fused() && row == Some(None) {
                self.unlocked_nothing(request);
                continue;
            }
            match row.and_then(|value| answer_of(&request, value)) {
                Some(answer) => self.settle(request, answer),
                None => unknown.push(request),
            }
        }
        for request in unknown {
            let (first, then_try) = request.unfuse();
            self.send_alone(first).await;
            if let Some(then_try) = then_try {
                // Counted as a try sent, which the fused request was not.
                self.session.count_possible_hold();
                self.send_alone(then_try).await;
            }
        }
    }

    /// A fused unlock and try whose unlock found the key not held: the try did not
    /// run, and goes first in the next batch.
    fn unlocked_nothing(&mut self, fused: Request) {
        let (unlock, then_try) = fused.unfuse();
        self.settle(unlock, Ok(false));
        if let Some(then_try) = then_try {
            self.backlog.push_front(then_try);
        }
    }

    /// A batch that failed as a whole: its first request gets the error. When the
    /// error leaves the session in doubt (a cancel, a lost connection), the session
    /// is retired, which frees every lock on it, and the other requests are answered
    /// lost.
    fn failed(&mut self, batch: Vec<Request>, error: Error) {
        let mut requests = batch.into_iter().flat_map(|request| {
            let (first, then_try) = request.unfuse();
            std::iter::once(first).chain(then_try)
        });
        if let Some(first) = requests.next() {
            self.settle(first, Err(error));
        }
        for request in requests {
            let answer = lost(&request.lock);
            self.tell(request, answer);
        }
    }

    /// A request of a failed batch, which may or may not have done it (session
    /// locks ignore the rollback of the failed statement), sent again alone. The
    /// batch is read back without `pg_locks`, which a full lock table would refuse
    /// to read: an unlock tells. Before the batch this session held an unlocked key
    /// once and a tried key not at all (the table asks for a key on one session at a
    /// time, and a batch has one row per key; a fused unlock and try is sent here as
    /// its unlock, then its try); so an unlock answered "not held" was done by the
    /// batch, and a try is undone, if the batch granted it, and asked again.
    async fn send_alone(&mut self, request: Request) {
        let unlock = Request::new(Op::Unlock, request.lock.clone(), oneshot::channel().0);
        let unlocked = self.ask_alone(&unlock).await;
        let answer = match (request.op, unlocked) {
            (_, Err(error)) => Err(error),
            (Op::Unlock, Ok(_held_still)) => Ok(true),
            (Op::Relock, Ok(_held_still)) => {
                // Unlocked now, whatever the batch did: only the try is left.
                self.session.discount_possible_hold();
                self.session.count_possible_hold();
                let again = Request::new(Op::Try, request.lock.clone(), oneshot::channel().0);
                self.ask_alone(&again).await
            }
            (_, Ok(_granted_by_the_batch)) => self.ask_alone(&request).await,
        };
        self.settle(request, answer);
    }

    /// Sends `request` as a batch of its own.
    async fn ask_alone(&self, request: &Request) -> Answer {
        match run_batch(&self.session, std::slice::from_ref(request)).await {
            Ok(answers) => match answers
                .first()
                .copied()
                .flatten()
                .and_then(|value| answer_of(request, value))
            {
                Some(answer) => answer,
                None => {
                    // An answer without the request's row: what it did is unknown.
                    self.session.retire();
                    lost(&request.lock)
                }
            },
            Err(error) => Err(Error::from_db(request.lock.id(), error)),
        }
    }

    /// Hands `answer` to the request's caller, keeping the session's count of
    /// possible holds right. A fused unlock and try is counted as the relock it
    /// was sent as: the key was held before it, and is held after it if granted.
    fn settle(&mut self, request: Request, answer: Answer) {
        match (&answer, request.op) {
            (Ok(false), Op::Try | Op::Relock) | (Ok(true), Op::Unlock) => {
                self.session.discount_possible_hold()
            }
            // The server refused the try (of a relock, after its unlock was read back:
            // see `send_alone`): nothing was granted.
            (Err(error), Op::Try | Op::Relock) if !error.leaves_doubt() => {
                self.session.discount_possible_hold()
            }
            (Err(error), _) if error.leaves_doubt() => self.session.retire(),
            _ => {}
        }
        let (first, then_try) = request.unfuse();
        match then_try {
            // The row ran: the unlock was done (a key not held answers `NULL`,
            // see `unlocked_nothing`), and the try answered.
            Some(then_try) => {
                self.tell(first, Ok(true));
                self.tell(then_try, answer);
            }
            None => self.tell(first, answer),
        }
    }

    /// Hands `answer` to the request's caller. A lock granted to a caller that gave
    /// up is unlocked.
    fn tell(&mut self, request: Request, answer: Answer) {
        debug_assert!(!request.is_fused(), "told apart");
        let Request { op, lock, tell, .. } = request;
        if op == Op::Unlock {
            self.unlocked(lock.key());
        }
        let Err(unheard) = tell.send(answer) else {
            return;
        };
        match (op, unheard) {
            (Op::Try | Op::Relock, Ok(true)) => {
                *lock_unpoisoned(&self.unlocking)
                    .entry(lock.key())
                    .or_default() += 1;
                // First: every request for this key in the backlog (deferred from
                // this batch) came after the one granted here, and must find the
                // key unlocked, as the table assumed when it let them be sent.
                let unlock = Request::new(Op::Unlock, lock, oneshot::channel().0);
                self.backlog.push_front(unlock);
            }
            (Op::Unlock, Ok(false)) => {
                tracing::warn!(lock = %lock.id(), "unlocked a lock the session did not hold");
            }
            (_, Err(error)) => {
                tracing::warn!(lock = %lock.id(), %error, "a lock session's request failed with nobody waiting");
            }
            _ => {}
        }
    }

    fn unlocked(&self, key: LockKey) {
        let mut unlocking = lock_unpoisoned(&self.unlocking);
        if let Some(count) = unlocking.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                unlocking.remove(&key);
            }
        }
    }
}

/// What the server's row says of one request: its boolean, or `NULL`.
type Value = Option<bool>;

/// The answer a request's row gives: `NULL` is a relock of a key the session did not
/// hold (lost), and from any other request an answer that says nothing.
fn answer_of(request: &Request, value: Value) -> Option<Answer> {
    match (value, request.op) {
        (Some(answer), _) => Some(Ok(answer)),
        (None, Op::Relock) => Some(lost(&request.lock)),
        (None, _) => None,
    }
}

/// Sends `batch` as one statement: each request's row, `None` where the server's
/// rows did not give one.
async fn run_batch(
    session: &Session,
    batch: &[Request],
) -> Result<Vec<Option<Value>>, tokio_postgres::Error> {
    if let [request] = batch {
        return Ok(vec![Some(run_single(session, request).await?)]);
    }
    let statement = session
        .client()
        .prepare_typed_cached(sql::BATCH, &sql::BATCH_TYPES)
        .await?;
    let mut params = BatchParams::default();
    for request in batch {
        params.push(request.op, &request.lock);
    }
    // Polled in this order, the pid query (once per session) goes out with the
    // batch, in its round trip: the lock session's backend is what deadlock
    // detection across processes announces as the holder of its keys.
    let params = params.params();
    let ((), rows) = futures_util::future::join(
        session.learn_pid(),
        session.client().query(&statement, &params),
    )
    .await;
    let rows = rows?;
    let mut answers = vec![None; batch.len()];
    for row in rows {
        let (Ok(n), Ok(answer)) = (row.try_get::<_, i64>(0), row.try_get::<_, Value>(1)) else {
            continue;
        };
        if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| answers.get_mut(i)) {
            *slot = Some(answer);
        }
    }
    Ok(answers)
}

/// Sends a request that came alone as the plain statement, not as a batch of
/// one: the server runs it without unpacking arrays, and the client sends one
/// integer or two instead of four arrays. Uncontended Lockers mostly send these.
async fn run_single(session: &Session, request: &Request) -> Result<Value, tokio_postgres::Error> {
    let text = sql::bare_statement(request.op, &request.lock);
    let statement = session.client().prepare_cached(text).await?;
    let key = request.lock.key();
    // As in a batch, the pid query (once per connection) goes out in this round trip.
    let ((), row) = futures_util::future::join(
        session.learn_pid(),
        session.client().query_one(&statement, &sql::params(&key)),
    )
    .await;
    row?.try_get(0)
}

#[cfg(all(test, feature = "testdb"))]
#[path = "batch_tests.rs"]
mod tests;
