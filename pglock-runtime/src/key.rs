//! Lock keys: the two key spaces of PostgreSQL's advisory locks, and the
//! mapping from a lock's name to a key that any SQL client can compute too.

use std::fmt;

/// The identity of an advisory lock: one of the two key spaces of PostgreSQL's
/// `pg_advisory_lock(bigint)` and `pg_advisory_lock(int, int)`.
///
/// Most locks are named: [`LockKey::from_name`] (and `From<&str>` / `From<String>`)
/// turns a name into the `BigInt` key that PostgreSQL's own
/// `hashtextextended(name, 0)` gives, so a plain SQL client takes the very same
/// lock with
///
/// ```sql
/// SELECT pg_advisory_lock(hashtextextended('goldleader', 0));
/// ```
///
/// # The two key spaces in `pg_locks`
///
/// PostgreSQL keeps the two key spaces apart: `BigInt(k)` and a `Pair(a, b)`
/// with the same 64 bits are different locks, and both can be held at once.
/// Both appear in `pg_locks` with `locktype = 'advisory'` (and `database` the
/// current database's oid):
///
/// | key | `classid` | `objid` | `objsubid` |
/// |---|---|---|---|
/// | `BigInt(k)` | high 32 bits of `k` | low 32 bits of `k` | `1` |
/// | `Pair(a, b)` | `a` | `b` | `2` |
///
/// `classid` and `objid` are `oid` (unsigned 32-bit) columns, so a negative
/// `i32` (or the low half of a `BigInt`) shows as its two's-complement value
/// (`-1` shows as `4294967295`). To find the holder of a `BigInt` key `k`:
///
/// ```sql
/// SELECT pid FROM pg_locks
///  WHERE locktype = 'advisory' AND granted AND objsubid = 1
///    AND classid = ((k >> 32) & 4294967295)::oid
///    AND objid = (k & 4294967295)::oid;
/// ```
///
/// # Examples
///
/// ```
/// use pglock_runtime::LockKey;
///
/// const LEADER: LockKey = LockKey::from_name("goldleader");
/// assert_eq!(LEADER, LockKey::BigInt(-3722734951702437678));
/// assert_eq!(LockKey::from("goldleader"), LEADER);
/// assert_eq!(LockKey::from(42_i64), LockKey::BigInt(42));
/// assert_eq!(LockKey::from((1, 2)), LockKey::Pair(1, 2));
/// assert_eq!(LEADER.to_string(), "-3722734951702437678");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockKey {
    /// `pg_advisory_lock(bigint)`.
    BigInt(i64),
    /// `pg_advisory_lock(int, int)`.
    Pair(i32, i32),
}

impl LockKey {
    /// The key of the lock named `name`: `BigInt(h)` where `h` is what PostgreSQL's
    /// `hashtextextended(name, 0)` returns in a UTF-8 database, so that
    ///
    /// ```sql
    /// SELECT pg_advisory_lock(hashtextextended('goldleader', 0));
    /// ```
    ///
    /// from `psql` (or any other client) takes the same lock as
    /// `LockKey::from_name("goldleader")`.
    ///
    /// This is a `const fn`: a literal name costs nothing at run time.
    ///
    /// ```
    /// use pglock_runtime::LockKey;
    ///
    /// const LEADER: LockKey = LockKey::from_name("goldleader");
    /// // SELECT hashtextextended('goldleader', 0)  =>  -3722734951702437678
    /// assert_eq!(LEADER, LockKey::BigInt(-3722734951702437678));
    /// // SELECT hashtextextended('', 0)  =>  -6939563903564495251
    /// assert_eq!(LockKey::from_name(""), LockKey::BigInt(-6939563903564495251));
    /// ```
    ///
    /// # When the server computes something else
    ///
    /// `hashtextextended(t, 0)` hashes the bytes of `t` in the database's encoding
    /// with `hash_bytes_extended` (Bob Jenkins' lookup3, `src/common/hashfn.c`),
    /// as long as the collation is deterministic, which a database's default
    /// collation always is. The result depends on the *server*, never on the client:
    ///
    /// - **Encoding**: names are hashed as UTF-8. In a database of another encoding
    ///   (`LATIN1`, ...) non-ASCII names hash differently; ASCII names are the same.
    /// - **Byte order**: lookup3 reads the bytes as native-endian 32-bit words, so a
    ///   big-endian server (s390x, big-endian POWER) returns other values than a
    ///   little-endian one (x86_64, aarch64, ppc64le, ...) for the same text. This
    ///   function always computes the *little-endian server's* result, on every
    ///   client platform (it reads the bytes explicitly, never with the client's own
    ///   byte order). The lock itself works against any server, since the client
    ///   sends the key as a number; only the SQL one-liner above names another lock
    ///   on a big-endian server.
    /// - **Nondeterministic collations**: `hashtextextended(t COLLATE "x", 0)` with
    ///   a nondeterministic (ICU) collation hashes the sort key instead; do not
    ///   write a `COLLATE` clause in that SQL.
    pub const fn from_name(name: &str) -> LockKey {
        LockKey::BigInt(hash_bytes_extended_seed0(name.as_bytes()) as i64)
    }
}

/// `rot(x, k)` of lookup3.
const fn rot(x: u32, k: u32) -> u32 {
    x.rotate_left(k)
}

/// One line of lookup3's `mix`: `x -= z; x ^= rot(z, k); z += y;` (the C macro
/// writes it six times, turning the roles of a, b and c).
const fn mix_step(x: u32, y: u32, z: u32, k: u32) -> (u32, u32) {
    (x.wrapping_sub(z) ^ rot(z, k), z.wrapping_add(y))
}

/// `mix(a, b, c)` of lookup3: mix three 32-bit values reversibly.
const fn mix(a: u32, b: u32, c: u32) -> (u32, u32, u32) {
    let (a, c) = mix_step(a, b, c, 4);
    let (b, a) = mix_step(b, c, a, 6);
    let (c, b) = mix_step(c, a, b, 8);
    let (a, c) = mix_step(a, b, c, 16);
    let (b, a) = mix_step(b, c, a, 19);
    let (c, b) = mix_step(c, a, b, 4);
    (a, b, c)
}

/// One line of lookup3's `final`: `x ^= y; x -= rot(y, k);`.
const fn final_step(x: u32, y: u32, k: u32) -> u32 {
    (x ^ y).wrapping_sub(rot(y, k))
}

/// `final(a, b, c)` of lookup3: final mixing of three 32-bit values into `b` and `c`.
const fn final_mix(a: u32, b: u32, c: u32) -> (u32, u32, u32) {
    let c = final_step(c, b, 14);
    let a = final_step(a, c, 11);
    let b = final_step(b, a, 25);
    let c = final_step(c, b, 16);
    let a = final_step(a, c, 4);
    let b = final_step(b, a, 14);
    let c = final_step(c, b, 24);
    (a, b, c)
}

/// The little-endian 32-bit word at `k[i..i + 4]`, of which only the first `n`
/// bytes (`n <= 4`) are taken; the missing high bytes count as zero.
const fn word_le(k: &[u8], i: usize, n: usize) -> u32 {
    let mut w = 0u32;
    let mut j = 0;
    while j < n {
        w |= (k[i + j] as u32) << (8 * j);
        j += 1;
    }
    w
}

/// PostgreSQL's `hash_bytes_extended(k, len, 0)` as a little-endian server computes
/// it (`src/common/hashfn.c`, the `!WORDS_BIGENDIAN` branches).
///
/// The C code has an aligned path (reads whole `uint32` words) and an unaligned
/// path (assembles each word from bytes, low byte first on little-endian); on a
/// little-endian machine both give word `i` of a block = the little-endian value of
/// its four bytes, and so does this function. The tail `switch` with fall-through
/// adds the last 0..=11 bytes the same way, except that the bytes of `c` start at
/// bit 8: "the lowest byte of c is reserved for the length" (the length itself was
/// already added to the initial state). With seed 0 the state is not perturbed.
/// The 64-bit result is `(b << 32) | c`.
const fn hash_bytes_extended_seed0(k: &[u8]) -> u64 {
    // `keylen` is a C `int`, copied into a `uint32`; PostgreSQL's text values are
    // at most 1 GB long, so the truncation only matters for names no server holds.
    let init = 0x9e37_79b9_u32
        .wrapping_add(k.len() as u32)
        .wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);

    // Whole 12-byte blocks.
    let mut i = 0;
    let mut len = k.len();
    while len >= 12 {
        a = a.wrapping_add(word_le(k, i, 4));
        b = b.wrapping_add(word_le(k, i + 4, 4));
        c = c.wrapping_add(word_le(k, i + 8, 4));
        (a, b, c) = mix(a, b, c);
        i += 12;
        len -= 12;
    }

    // The last 0..=11 bytes: the fall-through switch adds byte `j` of the tail at
    // bit 8 * (j % 4) of a (j < 4), b (4 <= j < 8), or at bit 8 * (j % 4 + 1)
    // of c (8 <= j < 11).
    if len > 8 {
        c = c.wrapping_add(word_le(k, i + 8, len - 8) << 8);
    }
    if len > 4 {
        let n = if len > 8 { 4 } else { len - 4 };
        b = b.wrapping_add(word_le(k, i + 4, n));
    }
    if len > 0 {
        let n = if len > 4 { 4 } else { len };
        a = a.wrapping_add(word_le(k, i, n));
    }

    (_, b, c) = final_mix(a, b, c);
    ((b as u64) << 32) | c as u64
}

impl From<i64> for LockKey {
    /// The `BigInt` key `k`: `pg_advisory_lock(k)`.
    ///
    /// ```
    /// # use pglock_runtime::LockKey;
    /// assert_eq!(LockKey::from(42_i64), LockKey::BigInt(42));
    /// ```
    fn from(k: i64) -> Self {
        LockKey::BigInt(k)
    }
}

impl From<(i32, i32)> for LockKey {
    /// The `Pair` key `(a, b)`: `pg_advisory_lock(a, b)`.
    ///
    /// ```
    /// # use pglock_runtime::LockKey;
    /// assert_eq!(LockKey::from((1, 2)), LockKey::Pair(1, 2));
    /// ```
    fn from((a, b): (i32, i32)) -> Self {
        LockKey::Pair(a, b)
    }
}

impl From<&str> for LockKey {
    /// The key of the lock named `name`, as [`LockKey::from_name`]:
    /// `pg_advisory_lock(hashtextextended(name, 0))`.
    ///
    /// ```
    /// # use pglock_runtime::LockKey;
    /// assert_eq!(LockKey::from("goldleader"), LockKey::BigInt(-3722734951702437678));
    /// ```
    fn from(name: &str) -> Self {
        LockKey::from_name(name)
    }
}

impl From<String> for LockKey {
    /// The key of the lock named `name`, as [`LockKey::from_name`].
    ///
    /// ```
    /// # use pglock_runtime::LockKey;
    /// let id = 7;
    /// assert_eq!(LockKey::from(format!("order:{id}")), LockKey::from_name("order:7"));
    /// ```
    fn from(name: String) -> Self {
        LockKey::from_name(&name)
    }
}

impl From<&String> for LockKey {
    /// The key of the lock named `name`, as [`LockKey::from_name`].
    ///
    /// ```
    /// # use pglock_runtime::LockKey;
    /// let name = String::from("goldleader");
    /// assert_eq!(LockKey::from(&name), LockKey::from_name("goldleader"));
    /// ```
    fn from(name: &String) -> Self {
        LockKey::from_name(name)
    }
}

impl fmt::Display for LockKey {
    /// A `BigInt` key as its number (`42`), a `Pair` as `(a, b)` (`(1, 2)`): the
    /// arguments of `pg_advisory_lock` that take the lock.
    ///
    /// ```
    /// # use pglock_runtime::LockKey;
    /// assert_eq!(LockKey::BigInt(42).to_string(), "42");
    /// assert_eq!(LockKey::Pair(1, -2).to_string(), "(1, -2)");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LockKey::BigInt(k) => write!(f, "{k}"),
            LockKey::Pair(a, b) => write!(f, "({a}, {b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, SELECT hashtextextended(name, 0))`, each value read from a PostgreSQL
    /// 15.18 server on x86_64-pc-linux-gnu, in a UTF-8 database with `--locale=C`.
    const SERVER_VECTORS: &[(&str, i64)] = &[
        ("", -6939563903564495251),
        ("a", 3591986179850072241),
        ("abc", -6747756470228489321),
        ("abcd", -1038429303365892052),
        ("abcde", 3076356108696143428),
        ("order:7", -6811029746667169779),
        ("abcdefgh", -8882191227074733005),
        ("goldleader", -3722734951702437678),
        ("abcdefghijk", 3112909444737856467),
        ("abcdefghijkl", -7556637188122330412),
        ("abcdefghijklm", 8871624171452417744),
        ("abcdefghijklmnopqrstuvwx", -1933194731779935345),
        ("abcdefghijklmnopqrstuvwxy", 5649064133428767341),
        // 6 bytes: one 2-byte char.
        ("héllo", 2465157995015290115),
        // 21 bytes of CJK, 3 bytes each.
        ("日本語のロック", -8274606288053771062),
        // 9 bytes: a 4-byte emoji.
        ("🔒 lock", 7562449512147983092),
        // 3 bytes: 'e' and U+0301 COMBINING ACUTE ACCENT (not normalised).
        ("e\u{301}", 906497045993010187),
        // 20 bytes: a quote, a backslash, a tab.
        ("quote's \\ back\tslash", -3913297291531218305),
    ];

    #[test]
    fn from_name_matches_server_vectors() {
        for &(name, want) in SERVER_VECTORS {
            assert_eq!(
                LockKey::from_name(name),
                LockKey::BigInt(want),
                "hashtextextended({name:?}, 0), {} bytes",
                name.len()
            );
        }
    }

    #[test]
    fn from_name_matches_server_on_long_strings() {
        // SELECT hashtextextended(repeat('pglock', 100), 0)  (600 bytes)
        assert_eq!(
            LockKey::from_name(&"pglock".repeat(100)),
            LockKey::BigInt(5767613655511187238)
        );
        // SELECT hashtextextended(repeat('é', 1000), 0)  (2000 bytes)
        assert_eq!(
            LockKey::from_name(&"é".repeat(1000)),
            LockKey::BigInt(3014587328140993192)
        );
    }

    #[test]
    fn from_name_is_const() {
        const K: LockKey = LockKey::from_name("goldleader");
        const EMPTY: LockKey = LockKey::from_name("");
        const LONG: LockKey = LockKey::from_name("abcdefghijklmnopqrstuvwxy");
        assert_eq!(K, LockKey::BigInt(-3722734951702437678));
        assert_eq!(EMPTY, LockKey::BigInt(-6939563903564495251));
        assert_eq!(LONG, LockKey::BigInt(5649064133428767341));
    }

    #[test]
    fn from_name_does_not_depend_on_alignment() {
        // PostgreSQL takes another code path for unaligned input; ours has one
        // path, but check that a name's position in memory cannot matter.
        let buf = "xxxxgoldleaderabcdefghijklmnopqrstuvwxy".to_string();
        for start in 0..4 {
            let s = &buf[start..];
            let copy = s.to_string();
            assert_eq!(LockKey::from_name(s), LockKey::from_name(&copy));
        }
        assert_eq!(
            LockKey::from_name(&buf[4..14]),
            LockKey::BigInt(-3722734951702437678)
        );
    }

    #[test]
    fn conversions() {
        assert_eq!(LockKey::from(42_i64), LockKey::BigInt(42));
        assert_eq!(LockKey::from(-1_i64), LockKey::BigInt(-1));
        assert_eq!(LockKey::from((1, 2)), LockKey::Pair(1, 2));
        assert_eq!(
            LockKey::from("goldleader"),
            LockKey::from_name("goldleader")
        );
        assert_eq!(
            LockKey::from(String::from("goldleader")),
            LockKey::from_name("goldleader")
        );
        assert_eq!(
            LockKey::from(&String::from("goldleader")),
            LockKey::from_name("goldleader")
        );
    }

    #[test]
    fn display() {
        assert_eq!(LockKey::BigInt(42).to_string(), "42");
        assert_eq!(
            LockKey::BigInt(i64::MIN).to_string(),
            "-9223372036854775808"
        );
        assert_eq!(LockKey::Pair(1, 2).to_string(), "(1, 2)");
        assert_eq!(LockKey::Pair(-1, i32::MAX).to_string(), "(-1, 2147483647)");
    }

    #[test]
    fn pair_and_bigint_are_different_keys() {
        assert_ne!(LockKey::Pair(0, 42), LockKey::BigInt(42));
        assert_ne!(LockKey::Pair(1, 2), LockKey::BigInt((1 << 32) | 2));
    }

    #[test]
    fn is_send_sync_copy() {
        fn check<T: Send + Sync + Copy + 'static>() {}
        check::<LockKey>();
    }
}
