//! What a server-side waiter of a Locker tells every other session: the keys its
//! task holds, each with the backend holding it, in a comment at the end of its
//! waiting statement (`pg_stat_activity.query` shows it for as long as the wait
//! lasts, and no longer). Bounded by the server's `track_activity_query_size`:
//! holds that do not fit are counted, not shown, so a check sees fewer edges (it may
//! miss a cycle) and never one that is not there.

use crate::key::LockKey;
use crate::sql::PgLocksKey;

/// A key as `pg_locks` shows it: `classid`, `objid`, `objsubid`.
pub(super) type ServerKey = (i64, i64, i16);

/// A key a waiting task holds, and the backend that holds it in the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Announced {
    pub(super) key: ServerKey,
    pub(super) holder: i32,
}

const OPEN: &str = "/* pglock-holds:";
const CLOSE: &str = " */";

pub(super) fn server_key(key: LockKey) -> ServerKey {
    PgLocksKey::of(key).parts()
}

/// The key `pg_locks` names by `key`.
pub(super) fn lock_key((classid, objid, objsubid): ServerKey) -> Option<LockKey> {
    let high = u32::try_from(classid).ok()?;
    let low = u32::try_from(objid).ok()?;
    match objsubid {
        1 => Some(LockKey::BigInt(
            ((u64::from(high) << 32) | u64::from(low)) as i64,
        )),
        2 => Some(LockKey::Pair(high as i32, low as i32)),
        _ => None,
    }
}

/// The comment announcing `holds`, at most `budget` bytes long (`None` when not even
/// the empty announcement fits).
pub(super) fn note(holds: &[Announced], budget: usize) -> Option<String> {
    let mut text = String::from(OPEN);
    let mut shown = 0;
    for hold in holds {
        let (classid, objid, objsubid) = hold.key;
        let entry = format!(" {classid}.{objid}.{objsubid}@{}", hold.holder);
        // Room kept for the count of what is left out, and the end.
        if text.len() + entry.len() + " +9999999999".len() + CLOSE.len() > budget {
            break;
        }
        text.push_str(&entry);
        shown += 1;
    }
    if shown < holds.len() {
        text.push_str(&format!(" +{}", holds.len() - shown));
    }
    text.push_str(CLOSE);
    (text.len() <= budget).then_some(text)
}

/// The holds announced in a waiting statement's text: `None` when it announces
/// nothing, or when the announcement is cut short or malformed (then nothing of it
/// is believed).
pub(super) fn read(query: &str) -> Option<Vec<Announced>> {
    let start = query.rfind(OPEN)? + OPEN.len();
    let body = query[start..].strip_suffix(CLOSE)?;
    let mut holds = Vec::new();
    for entry in body.split_ascii_whitespace() {
        if entry.starts_with('+') {
            continue;
        }
        holds.push(entry_of(entry)?);
    }
    Some(holds)
}

fn entry_of(entry: &str) -> Option<Announced> {
    let (key, holder) = entry.split_once('@')?;
    let mut parts = key.split('.');
    let classid = parts.next()?.parse().ok()?;
    let objid = parts.next()?.parse().ok()?;
    let objsubid = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Announced {
        key: (classid, objid, objsubid),
        holder: holder.parse().ok()?,
    })
}

/// The call-site comment pglock puts on its lock statements (`pglock: ...`), if any.
pub(super) fn site(query: &str) -> Option<&str> {
    let start = query.find("/* pglock: ")? + "/* pglock: ".len();
    let len = query[start..].find(CLOSE)?;
    Some(&query[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(n: i64, holder: i32) -> Announced {
        Announced {
            key: (0, n, 1),
            holder,
        }
    }

    #[test]
    fn what_is_announced_is_read_back() {
        let holds = [hold(7, 100), hold(8, 101)];
        let note = note(&holds, 200).unwrap();
        let query = format!("SELECT pg_catalog.pg_advisory_lock($1::int8) {note}");
        assert_eq!(read(&query).unwrap(), holds);
    }

    #[test]
    fn holds_that_do_not_fit_are_counted_and_the_rest_still_read() {
        let holds: Vec<Announced> = (0..100).map(|n| hold(n, 4242)).collect();
        let note = note(&holds, 120).unwrap();
        assert!(note.len() <= 120, "{note}");
        assert!(note.contains(" +"), "{note}");
        let read = read(&note).unwrap();
        assert!(!read.is_empty() && read.len() < holds.len());
        assert_eq!(read, holds[..read.len()]);
    }

    #[test]
    fn a_text_cut_short_is_not_believed() {
        let note = note(&[hold(7, 100), hold(8, 101)], 200).unwrap();
        for cut in 1..note.len() {
            assert_eq!(read(&note[..cut]), None, "{}", &note[..cut]);
        }
    }

    #[test]
    fn a_malformed_entry_spoils_the_whole_announcement() {
        assert_eq!(read("x /* pglock-holds: 0.7.1@100 0.8@101 */"), None);
        assert_eq!(read("x /* pglock-holds: 0.7.1@abc */"), None);
        assert_eq!(read("SELECT 1"), None);
    }

    #[test]
    fn keys_go_to_pg_locks_and_back() {
        for key in [
            LockKey::BigInt(-1),
            LockKey::BigInt(i64::MIN),
            LockKey::BigInt(42),
            LockKey::Pair(-5, 7),
            LockKey::Pair(i32::MIN, i32::MAX),
        ] {
            assert_eq!(lock_key(server_key(key)), Some(key));
        }
        assert_eq!(lock_key((0, 0, 3)), None);
        assert_eq!(lock_key((-1, 0, 1)), None);
    }
}
