/// The identity of an advisory lock: one of the two key spaces of PostgreSQL's
/// `pg_advisory_lock(bigint)` and `pg_advisory_lock(int, int)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// `pg_advisory_lock(bigint)`.
    BigInt(i64),
    /// `pg_advisory_lock(int, int)`.
    Pair(i32, i32),
}
