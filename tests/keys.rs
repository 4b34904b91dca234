//! Live tests of `LockKey` against a real server: `LockKey::from_name` must equal
//! `hashtextextended(name, 0)` on every kind of string, and the two key spaces
//! (`BigInt`, `Pair`) must be distinct locks, laid out in `pg_locks` as the
//! `LockKey` docs say.

use pglock::LockKey;

/// A small deterministic PRNG (SplitMix64), so every run checks the same strings.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A char that a PostgreSQL `text` in a UTF-8 database can hold (anything
    /// but NUL), drawn from ranges of 1, 2, 3 and 4 UTF-8 bytes.
    fn char(&mut self) -> char {
        let ranges: &[(u32, u32)] = &[
            (0x01, 0x1f),          // control chars (tab, newline, escape, ...)
            (0x20, 0x7e),          // printable ASCII: quotes, backslash, ...
            (0x20, 0x7e),          // (twice as likely)
            (0x7f, 0x7f),          // DEL
            (0x80, 0x7ff),         // 2 bytes: Latin, Greek, Cyrillic, Hebrew, ...
            (0x300, 0x36f),        // combining diacritical marks
            (0x800, 0xd7ff),       // 3 bytes below the surrogates (CJK, ...)
            (0xe000, 0xffff),      // 3 bytes above them (private use, U+FFFD, U+FFFF)
            (0x1_0000, 0x10_ffff), // 4 bytes: emoji and the rest
            (0x1_f300, 0x1_faff),  // emoji proper
        ];
        let (lo, hi) = ranges[self.below(ranges.len() as u64) as usize];
        let c = lo + self.below(u64::from(hi - lo + 1)) as u32;
        char::from_u32(c).expect("no surrogates in the ranges")
    }

    fn string(&mut self, chars: usize) -> String {
        (0..chars).map(|_| self.char()).collect()
    }
}

/// Every string the test compares; at least 1,000 of them.
fn corpus() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();

    // Named cases: empty, the design's example, quoting hazards, multibyte.
    for s in [
        "",
        "a",
        "goldleader",
        "order:7",
        "order:{id}",
        "'",
        "''",
        "\"",
        "\\",
        "\\\\",
        "\\'",
        "E'\\x00'",
        "$$",
        "$tag$ body $tag$",
        "%_",
        "; DROP TABLE x; --",
        "a\tb\nc\rd",
        "\u{1}\u{2}\u{1f}\u{7f}",
        "\u{1b}[31mred\u{1b}[0m",
        " leading and trailing spaces ",
        "héllo",
        "naïve café",
        "Ωμέγα",
        "Привет, мир",
        "日本語のロック",
        "中文锁",
        "한국어",
        "🔒",
        "🔒 lock",
        "👩‍👩‍👧‍👦",       // ZWJ sequence
        "🇫🇷",       // regional indicators
        "e\u{301}", // e + combining acute, not normalised
        "\u{e9}",   // the precomposed é: a different name, a different key
        "a\u{300}\u{301}\u{302}\u{303}",
        "\u{feff}BOM",
        "\u{fffd}",
        "\u{ffff}",
        "\u{10ffff}",
    ] {
        v.push(s.to_string());
    }

    // Every length 0..=64 bytes, in ASCII and starting at every offset of a
    // repeating multibyte pattern, so the 12-byte blocks and the 0..=11-byte
    // tail are cut at every byte of 1-, 2-, 3- and 4-byte chars.
    let ascii: String = (0..64u8).map(|i| (b'!' + i % 94) as char).collect();
    let multi = "aé日🔒".repeat(20); // 1 + 2 + 3 + 4 bytes, repeated
    for len in 0..=64 {
        v.push(ascii[..len].to_string());
        v.push("x".repeat(len));
        // The longest char-boundary prefix of `multi` that has at most `len` bytes.
        let mut end = len;
        while !multi.is_char_boundary(end) {
            end -= 1;
        }
        v.push(multi[..end].to_string());
        let mut rng = SplitMix64(len as u64);
        let mut s = String::new();
        while s.len() < len {
            let c = rng.char();
            if s.len() + c.len_utf8() <= len {
                s.push(c);
            } else {
                s.push('z');
            }
        }
        assert_eq!(s.len(), len);
        v.push(s);
    }

    // Long names, up to 10,000 bytes.
    for len in [
        100, 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 2047, 4095, 4096, 4097, 8191,
        8192, 9999, 10_000,
    ] {
        v.push("p".repeat(len));
        let pattern: String = "pglock-日本-🔒-".chars().cycle().take(len).collect();
        v.push(pattern);
    }
    let mut rng = SplitMix64(0x5eed);
    for _ in 0..20 {
        let chars = 1000 + rng.below(3000) as usize;
        let s = rng.string(chars);
        assert!(s.len() <= 10_000 + 4 * 4000);
        v.push(s);
    }

    // Names as the attribute builds them from templates.
    for i in 0..200 {
        v.push(format!("order:{i}"));
        v.push(format!("tenant-{}:job/{:08}", i % 7, i * 7919));
    }

    // Random strings of mixed chars, 0..=80 chars (up to 320 bytes).
    let mut rng = SplitMix64(0x9e37_79b9);
    for _ in 0..1000 {
        let chars = rng.below(81) as usize;
        v.push(rng.string(chars));
    }

    v
}

#[tokio::test]
async fn from_name_matches_hashtextextended_on_the_server() {
    let pool = pglock::testdb::shared().pool(2);
    let client = pool.get().await.expect("a connection to the test database");

    // What from_name promises holds in a UTF-8 database, whose default collation
    // is always deterministic.
    let enc: String = client
        .query_one("SHOW server_encoding", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(enc, "UTF8", "the test database must be UTF-8");

    let names = corpus();
    assert!(names.len() >= 1000, "only {} strings", names.len());
    assert!(names.iter().all(|s| !s.contains('\0')));
    let max = names.iter().map(String::len).max().unwrap();
    assert!(max >= 10_000, "the longest name has {max} bytes");

    // One round trip for every string, as a bind parameter.
    let rows = client
        .query(
            "SELECT i, octet_length(s), hashtextextended(s, 0) \
               FROM unnest($1::text[]) WITH ORDINALITY AS t(s, i) \
              ORDER BY i",
            &[&names],
        )
        .await
        .expect("hashtextextended over the corpus");
    assert_eq!(rows.len(), names.len());

    let mut mismatches = Vec::new();
    for (idx, (row, name)) in rows.iter().zip(&names).enumerate() {
        let i: i64 = row.get(0);
        let octets: i32 = row.get(1);
        let server: i64 = row.get(2);
        assert_eq!(i, idx as i64 + 1);
        assert_eq!(octets as usize, name.len(), "the server got other bytes");
        if LockKey::from_name(name) != LockKey::BigInt(server) {
            mismatches.push((
                name.len(),
                name.chars().take(20).collect::<String>(),
                server,
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} names hash differently from the server, e.g. (bytes, prefix, server): {:?}",
        mismatches.len(),
        names.len(),
        &mismatches[..mismatches.len().min(10)]
    );
    eprintln!(
        "from_name == hashtextextended(name, 0) on all {} names",
        names.len()
    );
}

/// The advisory locks of `pids` in `pg_locks`: (pid, classid, objid, objsubid).
async fn advisory_locks(
    client: &deadpool_postgres::Client,
    pids: &[i32],
) -> Vec<(i32, u32, u32, i16)> {
    let pids = pids.to_vec();
    client
        .query(
            "SELECT pid, classid, objid, objsubid FROM pg_locks \
              WHERE locktype = 'advisory' AND granted \
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                AND pid = ANY($1) \
              ORDER BY pid, objsubid, classid, objid",
            &[&pids],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn pair_and_bigint_keys_are_distinct_locks_on_the_server() {
    let pool = pglock::testdb::shared().pool(2);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let pid_a: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let pid_b: i32 = b
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(pid_a, pid_b);

    // A pair with a negative half and this process's id, and the bigint with the
    // same 64 bits, so other tests on the shared database cannot collide.
    let hi: i32 = -7;
    let lo: i32 = std::process::id() as i32;
    let pair = LockKey::from((hi, lo));
    let bigint = LockKey::from((i64::from(hi) << 32) | i64::from(lo as u32));
    assert_ne!(pair, bigint);
    let LockKey::BigInt(big) = bigint else {
        unreachable!()
    };

    // Session A holds the pair; session B can still take the bigint.
    a.execute("SELECT pg_advisory_lock($1, $2)", &[&hi, &lo])
        .await
        .unwrap();
    let got: bool = b
        .query_one("SELECT pg_try_advisory_lock($1)", &[&big])
        .await
        .unwrap()
        .get(0);
    assert!(got, "{bigint} and {pair} must be different locks");

    // Both are held, under the same classid/objid; objsubid tells them apart.
    let classid = hi as u32; // oid: the two's complement, 4294967289
    let objid = lo as u32;
    let locks = advisory_locks(&a, &[pid_a, pid_b]).await;
    let mut want = vec![(pid_a, classid, objid, 2), (pid_b, classid, objid, 1)];
    want.sort();
    assert_eq!(
        locks, want,
        "pg_locks of {pair} (session A) and {bigint} (session B)"
    );

    // And each still excludes its own key space: B cannot take the pair,
    // A cannot take the bigint.
    let got: bool = b
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&hi, &lo])
        .await
        .unwrap()
        .get(0);
    assert!(!got, "{pair} is held by A");
    let got: bool = a
        .query_one("SELECT pg_try_advisory_lock($1)", &[&big])
        .await
        .unwrap()
        .get(0);
    assert!(!got, "{bigint} is held by B");

    a.execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    b.execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    assert!(advisory_locks(&a, &[pid_a, pid_b]).await.is_empty());
}

#[tokio::test]
async fn sql_one_liner_takes_the_same_lock_as_from_name() {
    let pool = pglock::testdb::shared().pool(2);
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    let pid_a: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let name = format!("pglock-tests/keys/sql-one-liner/{}", std::process::id());
    let key = LockKey::from_name(&name);
    let LockKey::BigInt(k) = key else {
        unreachable!("from_name gives BigInt keys")
    };

    // A plain SQL client takes the lock by name...
    a.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", &[&name])
        .await
        .unwrap();
    // ...and a pglock client, holding only the computed key, finds it taken.
    let got: bool = b
        .query_one("SELECT pg_try_advisory_lock($1)", &[&k])
        .await
        .unwrap()
        .get(0);
    assert!(!got, "{name:?} = {key} must be the lock psql took");

    // pg_locks shows it as the LockKey docs say: high half, low half, objsubid 1.
    let locks = advisory_locks(&a, &[pid_a]).await;
    assert_eq!(locks, vec![(pid_a, (k >> 32) as u32, k as u32, 1)]);

    a.execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    let got: bool = b
        .query_one("SELECT pg_try_advisory_lock($1)", &[&k])
        .await
        .unwrap()
        .get(0);
    assert!(got, "{key} is free once A unlocked");
    b.execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
}
