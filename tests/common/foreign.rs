//! A session outside the library that takes and frees keys in plain SQL: "held
//! elsewhere", as another process would.

use pglock::LockKey;

use super::pg_locks::holders;
use super::server::observer;

/// Holds keys from a plain connection of its own, outside the library.
pub struct Foreign {
    pub client: tokio_postgres::Client,
    pub pid: i32,
}

impl Foreign {
    pub async fn connect() -> Foreign {
        let client = observer().await;
        let pid = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        Foreign { client, pid }
    }

    /// A new session holding `key` exclusively, as `pg_locks` confirms: the premise
    /// "held elsewhere" of the tests that use it.
    pub async fn holding(key: LockKey) -> Foreign {
        let foreign = Foreign::connect().await;
        foreign.lock(key).await;
        let held = holders(&foreign.client, key).await;
        assert_eq!(
            held,
            [foreign.pid],
            "{key} is held by the foreign session alone"
        );
        foreign
    }

    pub async fn lock(&self, key: LockKey) {
        match key {
            LockKey::BigInt(k) => self
                .client
                .execute("SELECT pg_advisory_lock($1)", &[&k])
                .await
                .unwrap(),
            LockKey::Pair(a, b) => self
                .client
                .execute("SELECT pg_advisory_lock($1, $2)", &[&a, &b])
                .await
                .unwrap(),
        };
    }

    /// Frees `key`; fails the test unless this session held it.
    pub async fn unlock(&self, key: LockKey) {
        let freed: bool = match key {
            LockKey::BigInt(k) => self
                .client
                .query_one("SELECT pg_advisory_unlock($1)", &[&k])
                .await
                .unwrap()
                .get(0),
            LockKey::Pair(a, b) => self
                .client
                .query_one("SELECT pg_advisory_unlock($1, $2)", &[&a, &b])
                .await
                .unwrap()
                .get(0),
        };
        assert!(freed, "the foreign session held {key}");
    }
}
