//! `capacity`: what holding thousands of locks on one lock session costs — the time to
//! take and give back N distinct keys through a Locker with one session, the memory
//! of that session's server backend, and the slots the locks take in the server's
//! shared lock table. Figures, not ratios: there is no raw baseline that holds 5,000
//! locks on one connection without pglock, other than the same statements in a loop.
//!
//! Memory is read from `/proc/<backend pid>/status`, so only when the server runs on
//! this machine (the throwaway cluster does): `RssAnon` is the backend's private
//! memory (its local lock table grows with the locks it holds), `RssShmem` the pages
//! of shared memory it has touched (the shared lock table is allocated once, at
//! server start, with `max_locks_per_transaction × (max_connections +
//! max_prepared_transactions)` slots; touching more of it grows no server memory).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use pglock::{AdvisoryLock, LockKey, Locker, LockerGuard};
use tokio::task::JoinSet;

use crate::env::Ctx;
use crate::stats::median;

/// How much to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Keys held at once.
    pub keys: usize,
    /// Repetitions of every timed phase.
    pub reps: usize,
}

/// Memory figures of one process, in kB, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    rss: u64,
    anon: u64,
    shmem: u64,
}

fn memory_of(pid: i32) -> Option<Memory> {
    // Only a local PostgreSQL backend: with a remote DATABASE_URL the pid may name
    // some unrelated local process, or none.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if !String::from_utf8_lossy(&cmdline).contains("postgres") {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        shmem: field("RssShmem:")?,
    })
}

/// `pg_locks`' columns of a bigint key: its high and low 32 bits, objsubid 1.
fn pg_locks_columns(key: LockKey) -> (i64, i64) {
    match key {
        LockKey::BigInt(k) => ((k as u64 >> 32) as i64, (k as u64 & 0xffff_ffff) as i64),
        LockKey::Pair(..) => unreachable!("names map to bigint keys"),
    }
}

const HOLDER: &str = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
     AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1";
const HELD_BY: &str =
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// How many blocks the one-by-one acquisition is timed in (to show whether a lock
/// costs more when the session already holds many).
const BLOCKS: usize = 5;

/// Takes every lock of `locks` in one task, one after another; also gives the time
/// of each of [`BLOCKS`] equal blocks of them.
async fn acquire_one_by_one(
    locker: &Locker,
    locks: &[AdvisoryLock],
) -> (Vec<LockerGuard>, Vec<Duration>) {
    let mut guards = Vec::with_capacity(locks.len());
    let mut blocks = Vec::new();
    for block in locks.chunks(locks.len().div_ceil(BLOCKS)) {
        let t = Instant::now();
        for lock in block {
            guards.push(lock.try_acquire(locker).await.expect("a free key"));
        }
        blocks.push(t.elapsed());
    }
    (guards, blocks)
}

/// Microseconds per `try_acquire` + `release()` of `lock` through `locker`, over
/// `calls` calls: what one more lock costs on a session holding many.
async fn probe(locker: &Locker, lock: &AdvisoryLock, calls: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..calls {
        let guard = lock.try_acquire(locker).await.expect("a free key");
        guard.release().await.expect("released");
    }
    t.elapsed().as_secs_f64() * 1e6 / calls as f64
}

const PROBE_CALLS: usize = 200;

/// Takes every lock of `locks` at once, one task each (their requests are pipelined
/// on the lock session).
async fn acquire_at_once(locker: &Locker, locks: &[AdvisoryLock]) -> Vec<LockerGuard> {
    let mut tasks = JoinSet::new();
    for lock in locks {
        let (locker, lock) = (locker.clone(), lock.clone());
        tasks.spawn(async move { lock.try_acquire(&locker).await.expect("a free key") });
    }
    tasks.join_all().await
}

async fn release_one_by_one(guards: Vec<LockerGuard>) {
    for guard in guards {
        guard.release().await.expect("released");
    }
}

async fn release_at_once(guards: Vec<LockerGuard>) {
    let mut tasks = JoinSet::new();
    for guard in guards {
        tasks.spawn(async move { guard.release().await.expect("released") });
    }
    tasks.join_all().await;
}

/// Locks held by `pid`, from `pg_locks`.
async fn held_by(client: &tokio_postgres::Client, pid: i32) -> i64 {
    client.query_one(HELD_BY, &[&pid]).await.unwrap().get(0)
}

/// Runs the capacity section and gives its Markdown.
pub async fn run(ctx: &Ctx, plan: Plan) -> String {
    let start = Instant::now();
    let n = plan.keys;
    let locker = Locker::builder(ctx.pool.clone()).sessions(1).build();
    let observer = ctx.pool.get().await.expect("an observer connection");
    let settings = observer
        .query_one(
            "SELECT current_setting('max_locks_per_transaction')::int8, \
                    current_setting('max_connections')::int8, \
                    current_setting('max_prepared_transactions')::int8",
            &[],
        )
        .await
        .unwrap();
    let (per_xact, connections, prepared): (i64, i64, i64) =
        (settings.get(0), settings.get(1), settings.get(2));
    let slots = per_xact * (connections + prepared);

    // One lock first: it opens the lock session, whose backend is then found by it.
    let first = AdvisoryLock::new(ctx.name("capacity/first"));
    let first_guard = first.try_acquire(&locker).await.expect("a free key");
    let (classid, objid) = pg_locks_columns(first.key());
    let pid: i32 = observer
        .query_one(HOLDER, &[&classid, &objid])
        .await
        .unwrap()
        .get(0);
    let locks: Vec<AdvisoryLock> = (0..n)
        .map(|i| AdvisoryLock::new(ctx.name(&format!("capacity/{i}"))))
        .collect();

    let probe_lock = AdvisoryLock::new(ctx.name("capacity/probe"));
    // Warm-up: a process that just started (this section run alone) answers its first
    // few hundred milliseconds of calls several times slower on this kind of machine.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(300) {
        probe(&locker, &probe_lock, 10).await;
    }
    let mut probes = vec![(1, probe(&locker, &probe_lock, PROBE_CALLS).await)];
    let mut blocks_first_rep = Vec::new();
    let mut memory: Vec<(String, i64, Option<Memory>)> = Vec::new();
    let mut snapshot = |what: String, held: i64| memory.push((what, held, memory_of(pid)));
    snapshot(
        "lock session opened, 1 lock held".into(),
        held_by(&observer, pid).await,
    );

    let mut times: Vec<(&str, Vec<f64>)> = vec![
        (
            "take them one by one (`try_acquire(&locker).await` in one task)",
            vec![],
        ),
        ("release them one by one (`release().await`)", vec![]),
        (
            "take them at once (one task per key, requests pipelined on the session)",
            vec![],
        ),
        (
            "release them at once (one task per guard, `release()`)",
            vec![],
        ),
        (
            "drop them at once (queued unlocks), until `pg_locks` shows none",
            vec![],
        ),
    ];
    for rep in 0..plan.reps {
        let t = Instant::now();
        let (guards, blocks) = acquire_one_by_one(&locker, &locks).await;
        times[0].1.push(ms(t.elapsed()));
        assert_eq!(locker.keys_in_use(), n + 1);
        if rep == 0 {
            blocks_first_rep = blocks;
            snapshot(
                format!("{n} more held (taken one by one)"),
                held_by(&observer, pid).await,
            );
            probes.push((n + 1, probe(&locker, &probe_lock, PROBE_CALLS).await));
        }
        let t = Instant::now();
        release_one_by_one(guards).await;
        times[1].1.push(ms(t.elapsed()));
        if rep == 0 {
            snapshot(format!("the {n} released"), held_by(&observer, pid).await);
        }

        let t = Instant::now();
        let guards = acquire_at_once(&locker, &locks).await;
        times[2].1.push(ms(t.elapsed()));
        let t = Instant::now();
        release_at_once(guards).await;
        times[3].1.push(ms(t.elapsed()));

        let guards = acquire_at_once(&locker, &locks).await;
        let t = Instant::now();
        drop(guards);
        while held_by(&observer, pid).await > 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times[4].1.push(ms(t.elapsed()));
    }
    snapshot(
        format!("after {} repetitions of every phase", plan.reps),
        held_by(&observer, pid).await,
    );
    first_guard.release().await.expect("released");

    let mut s = String::new();
    let _ = writeln!(
        s,
        "### `capacity`: {n} distinct keys held at once through a Locker with one lock session\n"
    );
    let _ = write!(s, "| phase ({n} keys) |");
    for rep in 1..=plan.reps {
        let _ = write!(s, " rep {rep} ms |");
    }
    let _ = writeln!(s, " median ms | median µs per key |");
    let _ = writeln!(s, "|---|{}---:|---:|", "---:|".repeat(plan.reps));
    for (what, values) in &times {
        let _ = write!(s, "| {what} |");
        for v in values {
            let _ = write!(s, " {v:.1} |");
        }
        let m = median(values);
        let _ = writeln!(s, " {m:.1} | {:.1} |", m * 1e3 / n as f64);
    }
    let _ = writeln!(
        s,
        "\nServer side, the lock session's backend (pid {pid}), from `pg_locks` and \
         `/proc/{pid}/status` (kB):\n\n\
         | point | advisory locks it holds | VmRSS | RssAnon (private) | RssShmem (shared pages touched) |\n\
         |---|---:|---:|---:|---:|"
    );
    for (what, held, mem) in &memory {
        match mem {
            Some(m) => {
                let _ = writeln!(
                    s,
                    "| {what} | {held} | {} | {} | {} |",
                    m.rss, m.anon, m.shmem
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {what} | {held} | not readable (server not on this machine) | | |"
                );
            }
        }
    }
    let block = n.div_ceil(BLOCKS);
    let per_block: Vec<String> = blocks_first_rep
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let keys = block.min(n - i * block);
            format!(
                "{}–{}: {:.0} µs",
                i * block,
                i * block + keys,
                d.as_secs_f64() * 1e6 / keys as f64
            )
        })
        .collect();
    let _ = writeln!(
        s,
        "\nPer key while taking them one by one (rep 1), by how many the session already \
         held: {}.\n\n\
         One more lock (`try_acquire` + `release()` of another key, {PROBE_CALLS} calls in a row) on \
         the same session: {}.",
        per_block.join("; "),
        probes
            .iter()
            .map(|(held, us)| format!("{us:.1} µs per call with {held} held"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let held_max = memory.iter().map(|(_, h, _)| *h).max().unwrap_or(0);
    let _ = writeln!(
        s,
        "\nShared lock table: `max_locks_per_transaction` ({per_xact}) × (`max_connections` \
         ({connections}) + `max_prepared_transactions` ({prepared})) = {slots} slots for the whole \
         server, allocated at start; {held_max} locks on one session take {held_max} of them \
         ({:.0} %), as they would on {held_max} sessions. The server's limit is that table, \
         not the session.\n",
        100.0 * held_max as f64 / slots as f64
    );
    let _ = writeln!(s, "{:.1} s.\n", start.elapsed().as_secs_f64());
    s
}
