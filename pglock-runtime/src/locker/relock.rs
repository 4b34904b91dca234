//! Giving a key back to the server's queue while tasks of this process still wait
//! for it, and asking for it again, in one statement ([`Op::Relock`]).
//!
//! After the handoff limit or window, a Locker must let other processes' waiters
//! in. Unlocking, then having the next waiter try again, costs two round trips
//! on the lock session for every such turn, which a contended key pays every
//! few handoffs. An unlock grants the key to a waiter in the server's queue before
//! the statement goes on, so a try of the same key right after it, in the same
//! statement, gets the key back only when no other process waited: fairness across
//! processes for one round trip. The releasing holder sends it, on its waiters'
//! behalf; granted back, the key goes to the first waiter; not granted, the next
//! waiter asks the server as any asker does (and waits in its queue).
//!
//! [`Op::Relock`]: crate::sql::Op::Relock

use std::sync::{Arc, Mutex, Weak};

use crate::error::Error;
use crate::mutex::lock_unpoisoned;
use crate::spawn::spawn_or_drop;

use super::sessions::Sessions;
use super::table::{Regranted, Release, Relock, Table};

/// Does what a released holder must about the server lock, in the background.
pub(super) fn finish_in_background(
    release: Release,
    table: Weak<Mutex<Table>>,
    sessions: Arc<Sessions>,
) {
    match release {
        Release::Kept => {}
        Release::Unlock(session, lock) => sessions.unlock_in_background(session, lock),
        Release::Relock(relock) => {
            // Without a runtime the ticket is dropped unused, which passes the
            // turn on; the lock session cannot run anything then either.
            spawn_or_drop(async move {
                let _logged = ask_again(relock, &table, &sessions).await;
            });
        }
    }
}

/// Sends the relock and acts on its answer; an error is logged, and the next
/// waiter asks the server itself.
pub(super) async fn ask_again(
    relock: Relock,
    table: &Weak<Mutex<Table>>,
    sessions: &Arc<Sessions>,
) -> Result<(), Error> {
    let Relock {
        ticket,
        session,
        lock,
    } = relock;
    let answer = match sessions.relock(&session, &lock).await {
        Some(answer) => answer,
        // No longer a lock session (replaced meanwhile): give the key back plainly.
        None => {
            drop(ticket);
            return sessions.unlock(&session, &lock).await;
        }
    };
    match answer {
        Ok(true) => {}
        // Given to another process's waiter: the next waiter of ours asks anew.
        Ok(false) => return Ok(()),
        // Not held: the lock was lost, as an unlock would say.
        Err(error) if error.is_lost() => return Err(error),
        Err(error) if error.leaves_doubt() => {
            // The session is retired, which frees every lock on it.
            session.retire_if_in_doubt(&error);
            return Err(error);
        }
        Err(error) => {
            // The unlock was done (the batch task reads a failed relock back) and
            // the try failed (a full lock table, say): the key was given back.
            tracing::warn!(lock = %lock.id(), %error, "asking again for a key given back failed; the next waiter asks anew");
            return Ok(());
        }
    }
    let episode = ticket.episode();
    let Some(table) = table.upgrade() else {
        // The Locker is gone: nobody waits.
        return sessions.unlock(&session, &lock).await;
    };
    let me = Arc::downgrade(&table);
    let regranted = lock_unpoisoned(&table).regranted(lock.key(), episode, &session, &me);
    ticket.used();
    match regranted {
        Regranted::HandedOver => Ok(()),
        Regranted::Unwanted | Regranted::Ended => sessions.unlock(&session, &lock).await,
    }
}
