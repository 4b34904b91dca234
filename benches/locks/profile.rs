//! `cargo bench --bench locks -- --statements`: what each scenario asks of the server,
//! per locked call, from the server's own log. No timing: counts.
//!
//! A throwaway cluster of its own is started with `log_min_duration_statement = 0`, so
//! the server logs every parse, bind and execute of the extended protocol and every
//! simple-protocol statement. Each measured member runs one batch between two marker
//! statements; the lines between the markers are counted. A round trip is one or more
//! statements the client waits for together, so the log bounds round trips from above
//! (pipelined statements share one) and shows extra work directly: a statement
//! prepared again on every call shows as one `parse` per call, a check query as an
//! extra `execute`. Messages that are not statements (sqlx's checkout ping is a bare
//! Sync) leave no line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use pglock::testdb::Cluster;

use crate::env::{Ctx, Env};
use crate::harness::{Group, Plan};

#[derive(Default)]
struct Counts {
    parse: u64,
    bind: u64,
    execute: u64,
    simple: u64,
    /// Executed statement texts (extended and simple protocol), with counts.
    texts: BTreeMap<String, u64>,
}

fn count(lines: &[&str]) -> Counts {
    let mut c = Counts::default();
    for line in lines {
        // "... LOG:  duration: 0.012 ms  execute s3: SELECT ..."
        let Some((_, rest)) = line.split_once(" ms  ") else {
            continue;
        };
        let (kind, text) = rest.split_once(": ").unwrap_or((rest, ""));
        let kind = kind.split(' ').next().unwrap_or("");
        match kind {
            "parse" => c.parse += 1,
            "bind" => c.bind += 1,
            "execute" | "statement" => {
                if kind == "execute" {
                    c.execute += 1;
                } else {
                    c.simple += 1;
                }
                *c.texts.entry(short(text)).or_default() += 1;
            }
            _ => {}
        }
    }
    c
}

fn short(sql: &str) -> String {
    let sql: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match sql.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &sql[..i]),
        None => sql,
    }
}

pub fn run(runtime: &tokio::runtime::Runtime, groups: Vec<Group>) -> String {
    let cluster = Cluster::start_with(&[("log_min_duration_statement", "0")])
        .expect("a throwaway cluster for --statements (needs the PostgreSQL server binaries)");
    let log = cluster
        .data_dir()
        .parent()
        .expect("the data directory has a parent")
        .join("server.log");
    let plan = Plan {
        warmup: 1,
        rounds: 1,
        throughput_rounds: 1,
        calls: 100,
        window: Duration::from_millis(100),
        judge: false,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## Statements per locked call (server log, `log_min_duration_statement = 0`)\n\n\
         {} calls per latency member, {} ms per throughput member, after one warm-up batch.\n\n\
         | group | scenario | calls | parse/call | bind/call | execute/call | simple/call | statements executed, per call |\n\
         |---|---|---:|---:|---:|---:|---:|---|",
        plan.calls,
        plan.window.as_millis()
    );
    runtime.block_on(async {
        let ctx: Ctx = Arc::new(Env::connect(cluster.db()).await);
        let marker = cluster.db().connect().await.expect("marker connection");
        for group in groups {
            let teardown = match &group.setup {
                Some(setup) => Some((setup.0)(ctx.clone()).await),
                None => None,
            };
            for member in &group.members {
                let workload = &member.workload;
                crate::run::batch(&ctx, workload, &plan).await; // warm-up: connections, caches
                let tag = format!("pglock-bench-mark {}/{}", group.name, member.id);
                marker
                    .simple_query(&format!("SELECT '{tag} begin'"))
                    .await
                    .unwrap();
                let calls = crate::run::batch(&ctx, workload, &plan).await.calls;
                // Let queued unlocks of the batch reach the server before the end mark.
                tokio::time::sleep(Duration::from_millis(50)).await;
                marker
                    .simple_query(&format!("SELECT '{tag} end'"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let text = std::fs::read_to_string(&log).expect("read the server log");
                let lines: Vec<&str> = text.lines().collect();
                let begin = lines
                    .iter()
                    .rposition(|l| l.contains(&format!("{tag} begin")))
                    .expect("begin mark in the log");
                let end = lines
                    .iter()
                    .rposition(|l| l.contains(&format!("{tag} end")))
                    .expect("end mark in the log");
                let c = count(&lines[begin + 1..end]);
                let per = |n: u64| n as f64 / calls as f64;
                let texts: Vec<String> = c
                    .texts
                    .iter()
                    .map(|(t, n)| format!("{:.2} × `{t}`", per(*n)))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} | `{}` | {calls} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                    group.name,
                    member.id,
                    per(c.parse),
                    per(c.bind),
                    per(c.execute),
                    per(c.simple),
                    texts.join("<br>")
                );
            }
            if let Some(teardown) = teardown {
                teardown.await;
            }
        }
    });
    out
}
