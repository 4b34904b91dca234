//! The table's handoffs against a live server, with the races made deterministic by
//! the table's test hook.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{Admission, Handoff, Release, Table};
use crate::lock::{AdvisoryLock, LockMode};
use crate::mutex::lock_unpoisoned;
use crate::patience::Patience;
use crate::session::Session;

fn unique(name: &str) -> String {
    format!("{name}:{}", std::process::id())
}

/// The shared server lock of `lock`, held on a session of its own, recorded in a
/// fresh table as one episode with one holder.
async fn held_shared(lock: &AdvisoryLock) -> (Arc<Mutex<Table>>, Arc<Session>, super::Episode) {
    let pool = crate::testdb::shared().pool(2);
    let session = Session::checkout(&pool, lock).await.expect("a session");
    assert!(
        session.try_lock(lock).await.expect("try"),
        "the key is free"
    );
    let table = Arc::new(Mutex::new(Table::new(
        Handoff {
            limit: 16,
            window: Duration::from_secs(3600),
        },
        Arc::new(super::Sessions::new(1)),
        unlock_only,
    )));
    let me = Arc::downgrade(&table);
    let mut locked = lock_unpoisoned(&table);
    let Admission::AskServer(ticket) = locked.admit(lock, Patience::Try, &me) else {
        panic!("a new key is asked of the server");
    };
    let episode = ticket.episode();
    assert!(locked.granted(lock.key(), episode, LockMode::Shared, &session, &me));
    ticket.used();
    drop(locked);
    (table, session, episode)
}

#[tokio::test]
async fn a_shared_lock_is_not_handed_to_a_writer_behind_a_reader_that_gave_up() {
    let shared = AdvisoryLock::new(unique("table:mixed-handoff")).shared();
    let exclusive = AdvisoryLock::new(shared.id().clone());
    let (table, session, episode) = held_shared(&shared).await;
    let me = Arc::downgrade(&table);
    let (release, joined, mut writer) = {
        let mut locked = lock_unpoisoned(&table);
        // Queued in this order: a reader, then a writer.
        let Admission::Queued(reader) = locked.queue(shared.key(), &shared, Patience::Forever)
        else {
            panic!("queued");
        };
        let Admission::Queued(writer) = locked.queue(shared.key(), &exclusive, Patience::Forever)
        else {
            panic!("queued");
        };
        // The reader's limit runs out just after the release looked at the queue.
        locked.before_handoff = Some(Box::new(move || drop(reader)));

        let release = locked.release(shared.key(), episode, &me);
        let joined = matches!(
            locked.admit(&shared, Patience::Try, &me),
            Admission::Holds(..)
        );
        (release, joined, writer)
    };

    let turn = writer.try_recv().expect("the writer has its turn");
    let handed_shared = turn.held_on().is_some();
    turn.used();
    assert!(
        !handed_shared,
        "the writer asks the server for an exclusive lock; it is not handed the shared one"
    );
    assert!(
        !joined,
        "no reader joins a key handed to (or asked for by) a writer"
    );
    let Release::Unlock(on, held) = release else {
        panic!("the shared server lock goes back to the server");
    };
    assert!(Arc::ptr_eq(&on, &session));
    on.unlock(&held).await.expect("the shared lock was held");
}

/// What the table does with a release of its own here: the handoff limit is never
/// reached in these tests, so there is no relock to send.
fn unlock_only(release: Release, _: Weak<Mutex<Table>>, sessions: Arc<super::Sessions>) {
    if let Release::Unlock(session, lock) = release {
        sessions.unlock_in_background(session, lock);
    }
}
