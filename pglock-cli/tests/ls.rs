//! `pglock ls`, `who` and `key` against the real server: locks held by psql and by
//! pglock's runtime API, waiters under their holders, the `--json` schema field by
//! field, locks of prepared transactions, and the psql one-liner of `key`.

mod common;

use common::{pglock, raw_of_bigint, raw_of_name, stdout, Db, Psql};
use pglock_runtime::testdb::Cluster;
use pglock_runtime::{AdvisoryLock, LockKey, Locker};
use serde_json::Value;

fn lock_sql(name: &str) -> String {
    format!("SELECT pg_advisory_lock(hashtextextended('{name}', 0));")
}

/// The lines of `text` that mention `needle`, with their index.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<(usize, &'a str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .collect()
}

#[test]
fn ls_lists_a_psql_holder_with_its_waiter_under_it() {
    let db = Db::shared();
    let name = "cli-ls-psql";
    let raw = raw_of_name(name);
    let _holder = Psql::start(&db.url, "cli-ls-holder", &lock_sql(name));
    let holder = db.pid_of("cli-ls-holder");
    db.wait_lock(holder, raw, true);
    let _waiter = Psql::start(&db.url, "cli-ls-waiter", &lock_sql(name));
    let waiter = db.pid_of("cli-ls-waiter");
    db.wait_lock(waiter, raw, false);
    let _alone = Psql::start(&db.url, "cli-ls-alone", &lock_sql("cli-ls-alone"));
    let alone = db.pid_of("cli-ls-alone");
    db.wait_lock(alone, raw_of_name("cli-ls-alone"), true);

    let out = pglock(&db.url)
        .args(["ls", "--name", name])
        .assert()
        .success();
    let text = stdout(out.get_output());
    let key = LockKey::from_name(name).to_string();
    let rows = lines_with(&text, &key);
    assert_eq!(rows.len(), 1, "one row carries the key:\n{text}");
    let (at, holder_row) = rows[0];
    for cell in [
        name,
        "holds",
        "exclusive",
        &holder.to_string(),
        "cli-ls-holder",
        "idle",
    ] {
        assert!(
            holder_row.contains(cell),
            "holder row lacks {cell}:\n{text}"
        );
    }
    let raw_text = format!("{}/{}/{}", raw.0, raw.1, raw.2);
    assert!(holder_row.contains(&raw_text), "{text}");
    let waiter_row = text.lines().nth(at + 1).expect("a row under the holder");
    assert!(waiter_row.starts_with("  └"), "{text}");
    for cell in [
        "waits",
        "exclusive",
        &waiter.to_string(),
        "cli-ls-waiter",
        "active",
    ] {
        assert!(
            waiter_row.contains(cell),
            "waiter row lacks {cell}:\n{text}"
        );
    }
    assert!(text.contains(&alone.to_string()), "{text}");

    let out = pglock(&db.url).args(["ls", "--waiting"]).assert().success();
    let waiting = stdout(out.get_output());
    assert!(
        waiting.contains(&key),
        "--waiting shows the lock waited for:\n{waiting}"
    );
    assert!(waiting.contains(&waiter.to_string()), "{waiting}");
    assert!(
        !waiting.contains(&LockKey::from_name("cli-ls-alone").to_string()),
        "--waiting leaves out a lock nobody waits for:\n{waiting}"
    );
}

/// The lock with `bigint` key `key` in a `--json` document.
fn json_lock<'a>(doc: &'a Value, space: &str, key: Value) -> &'a Value {
    doc["locks"]
        .as_array()
        .expect("locks is an array")
        .iter()
        .find(|l| l["key"]["space"] == space && l["key"][space] == key)
        .unwrap_or_else(|| panic!("no {space} lock {key} in {doc:#}"))
}

fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

fn is_utc_timestamp(value: &Value) -> bool {
    let text = value.as_str().unwrap_or("");
    text.len() == 24 && text.as_bytes()[10] == b'T' && text.ends_with('Z')
}

fn activity(db: &Db, pid: i32) -> (String, String, Option<String>) {
    let row = db
        .runtime
        .block_on(db.client.query_one(
            "SELECT usename::text, application_name, host(client_addr) FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        ))
        .expect("read pg_stat_activity");
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn json_schema_field_by_field_for_a_pglock_holder_and_a_psql_waiter() {
    let db = Db::shared();
    let name = "cli-json-static";
    let raw = raw_of_name(name);
    let pool = pglock_runtime::testdb::shared().pool(2);
    let lock = AdvisoryLock::from_static(name, LockKey::from_name(name));
    let line = line!() + 1;
    let guard = db.runtime.block_on(lock.acquire(&pool)).expect("acquire");
    let holder: i32 = db
        .runtime
        .block_on(db.client.query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1",
            &[&i64::from(raw.0), &i64::from(raw.1)],
        ))
        .expect("the holder in pg_locks")
        .get(0);
    let shared_sql = format!("SELECT pg_advisory_lock_shared(hashtextextended('{name}', 0));");
    let _waiter = Psql::start(&db.url, "cli-json-waiter", &shared_sql);
    let waiter = db.pid_of("cli-json-waiter");
    db.wait_lock(waiter, raw, false);
    let _pair = Psql::start(&db.url, "cli-json-pair", "SELECT pg_advisory_lock(-3, 5);");
    let pair_pid = db.pid_of("cli-json-pair");
    db.wait_lock(pair_pid, (4294967293, 5, 2), true);
    let _neg = Psql::start(&db.url, "cli-json-neg", "SELECT pg_advisory_lock(-42);");
    let neg_pid = db.pid_of("cli-json-neg");
    db.wait_lock(neg_pid, raw_of_bigint(-42), true);

    let out = pglock(&db.url).args(["ls", "--json"]).assert().success();
    let doc: Value = serde_json::from_str(&stdout(out.get_output())).expect("valid JSON");
    assert_eq!(
        keys_of(&doc),
        ["complete", "database", "locks", "schema", "taken_at"]
    );
    assert_eq!(doc["schema"], "pglock.locks/1");
    assert_eq!(doc["complete"], true);
    assert!(doc["database"].is_string());
    assert!(is_utc_timestamp(&doc["taken_at"]), "{}", doc["taken_at"]);

    let key = LockKey::from_name(name);
    let LockKey::BigInt(bigint) = key else {
        unreachable!()
    };
    let lock = json_lock(&doc, "bigint", bigint.into());
    assert_eq!(
        keys_of(lock),
        ["holders", "key", "name", "pg_locks", "waiters"]
    );
    assert_eq!(keys_of(&lock["key"]), ["bigint", "pair", "space"]);
    assert_eq!(lock["key"]["pair"], Value::Null);
    assert_eq!(lock["pg_locks"]["classid"], raw.0);
    assert_eq!(lock["pg_locks"]["objid"], raw.1);
    assert_eq!(lock["pg_locks"]["objsubid"], 1);
    assert_eq!(
        lock["name"], name,
        "the name comes from pglock's statement comment"
    );

    let entry_fields = [
        "application",
        "client_addr",
        "client_port",
        "mode",
        "pid",
        "prepared_transaction",
        "session_start",
        "site",
        "state",
        "state_change",
        "user",
        "visible",
        "waiting_since",
        "xact_start",
    ];
    let holders = lock["holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{lock:#}");
    let h = &holders[0];
    assert_eq!(keys_of(h), entry_fields);
    let (user, app, addr) = activity(&db, holder);
    assert_eq!(h["pid"], holder);
    assert_eq!(h["mode"], "exclusive");
    assert_eq!(h["prepared_transaction"], Value::Null);
    assert_eq!(h["visible"], true);
    assert_eq!(h["user"], user.as_str());
    assert_eq!(h["application"], app.as_str());
    assert_eq!(h["client_addr"], addr.map_or(Value::Null, Value::from));
    assert!(h["client_port"].is_i64());
    assert_eq!(h["state"], "idle");
    assert!(is_utc_timestamp(&h["session_start"]), "{h:#}");
    assert!(is_utc_timestamp(&h["state_change"]), "{h:#}");
    assert_eq!(
        h["xact_start"],
        Value::Null,
        "an idle session has no transaction"
    );
    assert_eq!(h["waiting_since"], Value::Null);
    assert_eq!(h["site"]["function"], Value::Null);
    let location = h["site"]["location"].as_str().expect("a call site");
    assert!(
        location.ends_with(&format!("tests/ls.rs:{line}")),
        "{location}"
    );

    let waiters = lock["waiters"].as_array().unwrap();
    assert_eq!(waiters.len(), 1, "{lock:#}");
    let w = &waiters[0];
    assert_eq!(keys_of(w), entry_fields);
    assert_eq!(w["pid"], waiter);
    assert_eq!(w["mode"], "shared");
    assert_eq!(w["application"], "cli-json-waiter");
    assert_eq!(w["state"], "active");
    assert!(is_utc_timestamp(&w["waiting_since"]), "{w:#}");
    assert!(is_utc_timestamp(&w["xact_start"]), "{w:#}");
    assert_eq!(
        w["site"],
        Value::Null,
        "psql's statement has no pglock comment"
    );

    // The key spaces as the server stores them: a negative pair and a negative bigint.
    let pair = json_lock(&doc, "pair", serde_json::json!([-3, 5]));
    assert_eq!(pair["key"]["bigint"], Value::Null);
    assert_eq!(
        pair["pg_locks"],
        serde_json::json!({"classid": 4294967293u32, "objid": 5, "objsubid": 2})
    );
    assert_eq!(pair["holders"][0]["pid"], pair_pid);
    let neg = json_lock(&doc, "bigint", (-42).into());
    assert_eq!(
        neg["pg_locks"],
        serde_json::json!({"classid": 4294967295u32, "objid": 4294967254u32, "objsubid": 1})
    );
    assert_eq!(neg["holders"][0]["pid"], neg_pid);
    assert_eq!(neg["name"], Value::Null, "no name is known for a plain key");

    db.runtime.block_on(guard.release()).expect("release");
}

/// What `pg_stat_activity` shows of `pid`: `state`, `query`, and `query_start` as text.
fn statement_of(db: &Db, pid: i32) -> (String, String, String) {
    let row = db
        .runtime
        .block_on(db.client.query_one(
            "SELECT state, query, query_start::text FROM pg_stat_activity WHERE pid = $1",
            &[&pid],
        ))
        .expect("read pg_stat_activity");
    (row.get(0), row.get(1), row.get(2))
}

/// Waits until `pid`, in `state`, last ran a statement started after `since` that is
/// no `SELECT`: the keepalive ping (pglock's other statements on a lock's session, and
/// the tests', are all `SELECT`s), whatever it says.
fn wait_for_a_ping(db: &Db, pid: i32, since: &str, state: &str) {
    db.wait_until(
        "the keepalive pinged the idle session",
        &format!(
            "SELECT query_start > '{since}'::timestamptz AND state = '{state}' \
             AND query NOT LIKE 'SELECT%' FROM pg_stat_activity WHERE pid = {pid}"
        ),
    );
}

/// The name and call site of the only holder of the bigint lock `key`, per `ls --json`.
fn json_name_and_site(db: &Db, key: LockKey) -> (Value, Value) {
    let LockKey::BigInt(bigint) = key else {
        unreachable!("a name hashes to a bigint key")
    };
    let out = pglock(&db.url).args(["ls", "--json"]).assert().success();
    let doc: Value = serde_json::from_str(&stdout(out.get_output())).expect("valid JSON");
    let lock = json_lock(&doc, "bigint", bigint.into());
    (lock["name"].clone(), lock["holders"][0]["site"].clone())
}

/// The 3 a.m. case: a lock held for hours by an idle session, with the default
/// keepalive. Its pings (sent while it is idle) are its last statements, and carry
/// the lock statement's comment, so `ls` still tells the lock's name and site, also
/// in a transaction the body left aborted.
#[test]
fn a_long_held_lock_keeps_its_name_and_site() {
    let db = Db::shared();
    let name = "cli-long-held";
    let key = LockKey::from_name(name);
    let pool = pglock_runtime::testdb::shared().pool(2);
    let lock = AdvisoryLock::from_static(name, key);
    let line = line!() + 1;
    let guard = db.runtime.block_on(lock.acquire(&pool)).expect("acquire");
    // Watched for loss, as the attribute and leadership watch their guards: the
    // keepalive pings from now on (from a task on the test's runtime).
    let lost = {
        let _runtime = db.runtime.enter();
        guard.lost()
    };
    let holder: i32 = db
        .runtime
        .block_on(guard.query_one("SELECT pg_backend_pid()", &[]))
        .expect("the holder's pid")
        .get(0);
    db.wait_lock(holder, raw_of_name(name), true);
    let site = format!("tests/ls.rs:{line}");

    let (_, query, since) = statement_of(&db, holder);
    wait_for_a_ping(&db, holder, &since, "idle");
    let (_, ping, _) = statement_of(&db, holder);
    assert!(
        ping.starts_with("/* pglock: `cli-long-held` at ") && ping.ends_with(" */"),
        "the ping, not {query:?}, is the session's last statement: {ping:?}"
    );
    let (shown_name, shown_site) = json_name_and_site(&db, key);
    assert_eq!(shown_name, name);
    let location = shown_site["location"].as_str().unwrap_or_default();
    assert!(location.ends_with(&site), "{shown_site}");

    // A body that left the locked session's transaction aborted: the ping is still
    // answered (the guard is not lost) and still names the lock.
    db.runtime
        .block_on(guard.batch_execute("BEGIN"))
        .expect("begin");
    let failed = db.runtime.block_on(guard.execute("SELECT 1/0", &[]));
    assert!(failed.is_err(), "the premise: the transaction is aborted");
    let (_, _, since) = statement_of(&db, holder);
    wait_for_a_ping(&db, holder, &since, "idle in transaction (aborted)");
    assert!(
        !guard.is_lost(),
        "a ping in an aborted transaction is answered"
    );
    let (shown_name, shown_site) = json_name_and_site(&db, key);
    assert_eq!(shown_name, name);
    let location = shown_site["location"].as_str().unwrap_or_default();
    assert!(location.ends_with(&site), "{shown_site}");

    db.runtime
        .block_on(guard.batch_execute("ROLLBACK"))
        .expect("rollback");
    db.runtime.block_on(guard.release()).expect("release");
    drop(lost);
}

/// The pid of the session that holds (`granted`) or waits for the advisory lock `raw`.
fn pid_on(db: &Db, raw: (u32, u32, i32), granted: bool) -> i32 {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid::int8 = {} \
         AND objid::int8 = {} AND objsubid = {} AND granted = {granted})",
        raw.0, raw.1, raw.2
    );
    db.wait_until(&format!("a session on {raw:?}, granted={granted}"), &sql);
    let row = db
        .runtime
        .block_on(db.client.query_one(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::int8 = $1 \
             AND objid::int8 = $2 AND objsubid = $3 AND granted = $4",
            &[
                &i64::from(raw.0),
                &i64::from(raw.1),
                &(raw.2 as i16),
                &granted,
            ],
        ))
        .expect("read pg_locks");
    row.get(0)
}

/// A Locker lock that had to wait in the server's queue lives on a session of its
/// own, whose pings name it as a pool guard's do.
#[test]
fn a_contended_locker_lock_keeps_its_name_and_site() {
    let db = Db::shared();
    let name = "cli-long-held-locker";
    let key = LockKey::from_name(name);
    let raw = raw_of_name(name);
    let first = Psql::start(&db.url, "cli-locker-first", &lock_sql(name));
    db.wait_lock(db.pid_of("cli-locker-first"), raw, true);
    let locker = Locker::new(pglock_runtime::testdb::shared().pool(4));
    let lock = AdvisoryLock::from_static(name, key);
    let line = line!() + 2;
    let acquiring = async move {
        let guard = lock.acquire(&locker).await;
        guard.map(|guard| (locker, guard))
    };
    let acquiring = db.runtime.spawn(acquiring);
    let waiter = pid_on(&db, raw, false);
    drop(first);
    let (_locker, guard) = db
        .runtime
        .block_on(acquiring)
        .expect("the task")
        .expect("acquire once psql is gone");
    assert_eq!(pid_on(&db, raw, true), waiter, "held where it waited");
    let lost = {
        let _runtime = db.runtime.enter();
        guard.lost()
    };

    let (_, _, since) = statement_of(&db, waiter);
    wait_for_a_ping(&db, waiter, &since, "idle");
    let (_, ping, _) = statement_of(&db, waiter);
    assert!(
        ping.starts_with("/* pglock: `cli-long-held-locker` at "),
        "{ping:?}"
    );
    let (shown_name, shown_site) = json_name_and_site(&db, key);
    assert_eq!(shown_name, name);
    let location = shown_site["location"].as_str().unwrap_or_default();
    assert!(
        location.ends_with(&format!("tests/ls.rs:{line}")),
        "{shown_site}"
    );
    drop(guard);
    drop(lost);
}

#[test]
fn who_shows_one_lock_by_name_or_by_key() {
    let db = Db::shared();
    let name = "cli-who";
    let _holder = Psql::start(&db.url, "cli-who-holder", &lock_sql(name));
    let holder = db.pid_of("cli-who-holder");
    db.wait_lock(holder, raw_of_name(name), true);
    let _waiter = Psql::start(&db.url, "cli-who-waiter", &lock_sql(name));
    let waiter = db.pid_of("cli-who-waiter");
    db.wait_lock(waiter, raw_of_name(name), false);
    let _pair = Psql::start(&db.url, "cli-who-pair", "SELECT pg_advisory_lock(7, -8);");
    let pair = db.pid_of("cli-who-pair");
    db.wait_lock(pair, (7, (-8i32) as u32, 2), true);

    let out = pglock(&db.url).args(["who", name]).assert().success();
    let text = stdout(out.get_output());
    assert!(text.contains(name), "{text}");
    assert!(
        lines_with(&text, &holder.to_string())[0]
            .1
            .contains("holds"),
        "{text}"
    );
    assert!(
        lines_with(&text, &waiter.to_string())[0]
            .1
            .contains("waits"),
        "{text}"
    );
    assert!(
        !text.contains(&pair.to_string()),
        "who shows only that lock:\n{text}"
    );

    let out = pglock(&db.url)
        .args(["who", "7,-8", "--json"])
        .assert()
        .success();
    let doc: Value = serde_json::from_str(&stdout(out.get_output())).expect("JSON");
    let locks = doc["locks"].as_array().unwrap();
    assert_eq!(locks.len(), 1, "{doc:#}");
    assert_eq!(locks[0]["key"]["pair"], serde_json::json!([7, -8]));
    assert_eq!(locks[0]["holders"][0]["pid"], pair);

    let out = pglock(&db.url)
        .args(["who", "cli-who-free"])
        .assert()
        .success();
    let text = stdout(out.get_output());
    assert!(
        text.contains("nobody holds or waits for `cli-who-free`"),
        "{text}"
    );
}

/// The `sql` line of `pglock key`.
fn sql_line(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("sql"))
        .expect("an sql line")
        .trim()
        .to_string()
}

#[test]
fn key_prints_the_key_and_sql_that_takes_the_same_lock() {
    let db = Db::shared();
    for (i, name) in [
        "cli-key it's",
        r"cli-key back\slash 'q'",
        "cli-key ünïcode ✓",
    ]
    .into_iter()
    .enumerate()
    {
        let out = pglock(&db.url).args(["key", name]).assert().success();
        let text = stdout(out.get_output());
        let key = LockKey::from_name(name).to_string();
        let key_line = text
            .lines()
            .find(|l| l.starts_with("key"))
            .expect("a key line");
        assert_eq!(
            key_line.split_whitespace().nth(1),
            Some(key.as_str()),
            "{text}"
        );
        let app = format!("cli-key-{i}");
        let _psql = Psql::start(&db.url, &app, &sql_line(&text));
        let pid = db.pid_of(&app);
        db.wait_lock(pid, raw_of_name(name), true);
        let out = pglock(&db.url).args(["who", name]).assert().success();
        let who = stdout(out.get_output());
        assert!(
            lines_with(&who, &pid.to_string())[0].1.contains("holds"),
            "{who}"
        );
    }
}

#[test]
fn locks_of_prepared_transactions_are_listed_without_a_pid() {
    let cluster = Cluster::start_with(&[("max_prepared_transactions", "2")]).expect("a cluster");
    let db = Db::of(cluster.db());
    db.execute("BEGIN; SELECT pg_advisory_xact_lock(4242); PREPARE TRANSACTION 'cli-px'");
    db.wait_until(
        "the prepared transaction holds 4242",
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid IS NULL \
         AND objid = 4242 AND granted)",
    );

    let out = pglock(&db.url).args(["ls"]).assert().success();
    let text = stdout(out.get_output());
    let row = lines_with(&text, "4242");
    assert!(row[0].1.contains("prepared xact 'cli-px'"), "{text}");

    let out = pglock(&db.url).args(["ls", "--json"]).assert().success();
    let doc: Value = serde_json::from_str(&stdout(out.get_output())).expect("JSON");
    let holder = &json_lock(&doc, "bigint", 4242.into())["holders"][0];
    assert_eq!(holder["pid"], Value::Null);
    assert_eq!(holder["prepared_transaction"], "cli-px");
    assert_eq!(holder["visible"], true);

    let out = pglock(&db.url)
        .args(["release", "4242", "--terminate", "--yes"])
        .assert()
        .failure()
        .code(1);
    let text = stdout(out.get_output());
    assert!(text.contains("ROLLBACK PREPARED 'cli-px'"), "{text}");
    assert_eq!(db.holders(raw_of_bigint(4242)), 1, "nothing was released");
    db.execute("ROLLBACK PREPARED 'cli-px'");
}
