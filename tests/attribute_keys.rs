//! Live tests of the keys `#[advisory_locked]` takes: a templated key is
//! `LockKey::from_name` of the formatted string, a literal one is fixed at compile
//! time, `key = 7` and `key = (1, 2)` are the two integer key spaces; `pg_locks`
//! shows each where the `LockKey` docs say. Argument values are data, never SQL.

mod common;

use std::fmt;

use common::{columns, locks_of, unique, AppError};
use deadpool_postgres::{Client, Pool};
use pglock::{advisory_locked, LockKey};

/// What the body saw: its session's pid and every advisory lock that session holds.
type Seen = (i32, Vec<(u32, u32, i16)>);

async fn seen(conn: &Client, observer: &Client) -> Result<Seen, AppError> {
    let pid: i32 = conn.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    Ok((pid, locks_of(observer, pid).await))
}

struct Order {
    id: u32,
    customer: Customer,
}

struct Customer {
    name: String,
}

/// `Debug` quotes the name; `Display` of `Region` is its own.
struct Region(&'static str);

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "region-{}", self.0)
    }
}

#[advisory_locked(
    key = "{run}/order:{order.id:08}/{order.customer.name:?}/{region}/{pair.1}/{{literal}}",
    guard = conn
)]
async fn templated(
    pool: &Pool,
    observer: &Client,
    run: &str,
    order: &Order,
    region: Region,
    pair: (u8, i64),
) -> Result<Seen, AppError> {
    seen(conn, observer).await
}

#[tokio::test]
async fn a_templated_key_is_from_name_of_the_formatted_string() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let run = unique("template");
    let order = Order {
        id: 42,
        customer: Customer {
            name: "Zoë \"Z\"".into(),
        },
    };
    let (_, locks) = templated(&pool, &observer, &run, &order, Region("eu"), (1, -5))
        .await
        .unwrap();

    let name = format!("{run}/order:00000042/\"Zoë \\\"Z\\\"\"/region-eu/-5/{{literal}}");
    let key = LockKey::from_name(&name);
    assert_eq!(locks, vec![columns(key)], "held while the body ran: {name}");
    // As the LockKey docs say: a bigint k is (high half, low half, 1) as unsigned.
    let LockKey::BigInt(k) = key else {
        unreachable!()
    };
    assert_eq!(locks[0], ((k >> 32) as u32, k as u32, 1));
}

#[advisory_locked(key = "{run}:{value}", guard = conn)]
async fn keyed_by_text(
    pool: &Pool,
    observer: &Client,
    run: &str,
    value: &str,
) -> Result<Seen, AppError> {
    seen(conn, observer).await
}

#[tokio::test]
async fn quotes_and_sql_in_an_argument_are_just_data() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let run = unique("hostile");
    observer
        .batch_execute("CREATE TABLE IF NOT EXISTS pglock_attr_canary (x int)")
        .await
        .unwrap();
    for value in [
        "'); DROP TABLE pglock_attr_canary; --",
        "' OR '1'='1",
        "\"; SELECT pg_advisory_unlock_all(); --",
        "$$ $tag$ \\' E'\\x00'",
        "{order_id} {{}} }",
        "",
    ] {
        let (_, locks) = keyed_by_text(&pool, &observer, &run, value).await.unwrap();
        let key = LockKey::from_name(&format!("{run}:{value}"));
        assert_eq!(locks, vec![columns(key)], "value {value:?}");
    }
    // Still there: nothing was run as SQL.
    observer
        .execute("SELECT count(*) FROM pglock_attr_canary", &[])
        .await
        .expect("the canary table survives");
}

#[advisory_locked(key = "pglock-tests/attribute/literal-key", guard = conn)]
async fn literal(pool: &Pool, observer: &Client) -> Result<Seen, AppError> {
    seen(conn, observer).await
}

#[advisory_locked(key = 7_301_000_000_042, guard = conn)]
async fn bigint(pool: &Pool, observer: &Client) -> Result<Seen, AppError> {
    seen(conn, observer).await
}

#[advisory_locked(key = (-7301, 42), guard = conn)]
async fn pair(pool: &Pool, observer: &Client) -> Result<Seen, AppError> {
    seen(conn, observer).await
}

#[tokio::test]
async fn literal_integer_and_pair_keys_are_the_locks_they_name() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();

    let (_, locks) = literal(&pool, &observer).await.unwrap();
    let key = LockKey::from_name("pglock-tests/attribute/literal-key");
    assert_eq!(locks, vec![columns(key)]);
    // The same lock a plain SQL client takes by name.
    let server: i64 = observer
        .query_one(
            "SELECT hashtextextended('pglock-tests/attribute/literal-key', 0)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(key, LockKey::BigInt(server));

    let (_, locks) = bigint(&pool, &observer).await.unwrap();
    let k: i64 = 7_301_000_000_042;
    assert_eq!(locks, vec![((k >> 32) as u32, k as u32, 1)]);

    let (_, locks) = pair(&pool, &observer).await.unwrap();
    assert_eq!(locks, vec![((-7301_i32) as u32, 42, 2)]);
}

struct Tenant {
    name: String,
    pool: Pool,
}

impl Tenant {
    #[advisory_locked(key = "{self.name}/job/{job:>4}", pool = self.pool, guard = conn)]
    async fn job(&self, observer: &Client, job: u16) -> Result<Seen, AppError> {
        seen(conn, observer).await
    }
}

#[tokio::test]
async fn self_fields_fill_a_template() {
    let pool = common::pool(4);
    let observer = pool.get().await.unwrap();
    let tenant = Tenant {
        name: unique("tenant"),
        pool: pool.clone(),
    };
    let (_, locks) = tenant.job(&observer, 7).await.unwrap();
    let key = LockKey::from_name(&format!("{}/job/   7", tenant.name));
    assert_eq!(locks, vec![columns(key)]);
}
