//! The environment every workload runs in: the pools, the Lockers and the lock names
//! of this bench process. The lowest module of the bench: the harness, the scenarios
//! and the sections all import it, and it imports none of them.

use std::sync::Arc;

use deadpool_postgres::Pool;
use pglock::testdb::TestDb;
use pglock::{LockKey, Locker};
use sqlx::postgres::PgPoolOptions;

/// The shared state every workload gets: pools, key names.
pub type Ctx = Arc<Env>;

/// What the workloads share.
pub struct Env {
    /// Every pglock and raw tokio-postgres scenario takes its connections here
    /// (deadpool, `RecyclingMethod::Fast`: what `TestDb::pool` and users have).
    pub pool: Pool,
    /// sqlx's pool, default options (so `test_before_acquire` is on, as for users).
    pub sqlx: sqlx::PgPool,
    /// A Locker on `pool` with the default options (2 lock sessions), as a service
    /// would have one.
    pub locker: Locker,
    /// The same, built with `deadlock_detection(false)` (`contended16`: what
    /// detection costs, beside `locker` in the same rounds).
    pub locker_undetected: Locker,
    /// A Locker on `pool` with one lock session (`distinct_keys`).
    pub locker_one: Locker,
    /// Two Lockers with one lock session each, alike but for what they hold
    /// (`held`): `held_none` nothing but the 16 tasks' keys, `held_many` 5,000 more
    /// for the whole group (taken by its setup).
    pub held_none: Locker,
    pub held_many: Locker,
    /// Two Lockers on `pool`, as two processes would have (`nested`): with deadlock
    /// detection (the default), and without.
    pub pair: [Locker; 2],
    pub pair_undetected: [Locker; 2],
    prefix: String,
}

impl Env {
    pub async fn connect(db: &TestDb) -> Env {
        let sqlx = PgPoolOptions::new()
            .max_connections(4)
            .connect(db.url())
            .await
            .expect("sqlx pool on the test database");
        let pool = db.pool(48);
        // `None`: the default number of lock sessions.
        let locker = |sessions: Option<usize>, detection: bool| {
            let builder = Locker::builder(pool.clone()).deadlock_detection(detection);
            match sessions {
                Some(n) => builder.sessions(n),
                None => builder,
            }
            .build()
        };
        Env {
            locker: locker(None, true),
            locker_undetected: locker(None, false),
            locker_one: locker(Some(1), true),
            held_none: locker(Some(1), true),
            held_many: locker(Some(1), true),
            pair: [0, 1].map(|_| locker(None, true)),
            pair_undetected: [0, 1].map(|_| locker(None, false)),
            pool,
            sqlx,
            prefix: format!("pglock-bench:{}:", std::process::id()),
        }
    }

    /// A lock name of this process: runs on a shared `DATABASE_URL` do not collide.
    pub fn name(&self, what: &str) -> String {
        format!("{}{what}", self.prefix)
    }

    /// The bigint key of [`Env::name`], for the raw and sqlx baselines.
    pub fn key(&self, what: &str) -> i64 {
        match LockKey::from_name(&self.name(what)) {
            LockKey::BigInt(k) => k,
            LockKey::Pair(..) => unreachable!("names map to bigint keys"),
        }
    }
}
