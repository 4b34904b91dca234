//! How an advisory lock key appears in `pg_locks`: `classid`, `objid` (both `oid`, so
//! unsigned 32-bit) and `objsubid`.
//!
//! A `bigint` key `k` is `classid = k >> 32`, `objid = k & 0xffffffff`, `objsubid = 1`;
//! a pair `(a, b)` is `classid = a`, `objid = b` (as unsigned), `objsubid = 2`. The
//! live tests check both against the server, negative keys included.

use pglock_runtime::LockKey;
use serde::Serialize;

/// A key as `pg_locks` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PgKey {
    pub classid: u32,
    pub objid: u32,
    pub objsubid: i32,
}

impl PgKey {
    /// The `pg_locks` form of `key`.
    pub fn of(key: LockKey) -> PgKey {
        match key {
            LockKey::BigInt(k) => PgKey {
                classid: ((k as u64) >> 32) as u32,
                objid: k as u64 as u32,
                objsubid: 1,
            },
            LockKey::Pair(a, b) => PgKey {
                classid: a as u32,
                objid: b as u32,
                objsubid: 2,
            },
        }
    }

    /// The key this row stands for; `None` for an `objsubid` that is neither 1 nor 2
    /// (not a key space PostgreSQL's advisory lock functions use).
    pub fn key(self) -> Option<LockKey> {
        match self.objsubid {
            1 => Some(LockKey::BigInt(
                ((u64::from(self.classid) << 32) | u64::from(self.objid)) as i64,
            )),
            2 => Some(LockKey::Pair(self.classid as i32, self.objid as i32)),
            _ => None,
        }
    }

    /// `classid/objid/objsubid`, as in `pg_locks`.
    pub fn raw(self) -> String {
        format!("{}/{}/{}", self.classid, self.objid, self.objsubid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_pg_locks_form() {
        for key in [
            LockKey::BigInt(0),
            LockKey::BigInt(-1),
            LockKey::BigInt(i64::MIN),
            LockKey::BigInt(i64::MAX),
            LockKey::BigInt(1 << 32),
            LockKey::Pair(-1, i32::MIN),
            LockKey::Pair(7, 8),
        ] {
            assert_eq!(PgKey::of(key).key(), Some(key));
        }
        assert_eq!(
            PgKey::of(LockKey::BigInt(-1)).raw(),
            "4294967295/4294967295/1"
        );
        let odd = PgKey {
            classid: 1,
            objid: 2,
            objsubid: 3,
        };
        assert_eq!(odd.key(), None);
    }
}
