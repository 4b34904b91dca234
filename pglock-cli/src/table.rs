//! The listing as a table for a terminal: one row per holder, its waiters right under it.

use crate::keyspace::PgKey;
use crate::listing::{mode, Entry, Listing, Lock};
use crate::locks::Session;

const HEADER: [&str; 13] = [
    "KEY",
    "PG_LOCKS",
    "NAME",
    "ROLE",
    "MODE",
    "PID",
    "USER",
    "APPLICATION",
    "CLIENT",
    "STATE",
    "CONNECTED",
    "IN STATE",
    "SITE",
];

/// The table, with a title line; a line saying so when there is no lock.
pub fn render(listing: &Listing) -> String {
    let title = format!(
        "advisory locks of database {} at {}\n",
        listing.database, listing.taken_at
    );
    if listing.locks.is_empty() {
        return format!("{title}(none)\n");
    }
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    for lock in &listing.locks {
        for (i, holder) in lock.holders.iter().enumerate() {
            rows.push(row(lock, holder, i == 0, "holds"));
        }
        for (i, waiter) in lock.waiters.iter().enumerate() {
            rows.push(row(
                lock,
                waiter,
                lock.holders.is_empty() && i == 0,
                "waits",
            ));
        }
    }
    title + &align(&rows)
}

/// The cells of one holder or waiter; the key and name only on the lock's first row.
fn row(lock: &Lock, entry: &Entry, first: bool, role: &str) -> Vec<String> {
    let r = &entry.row;
    let (key, raw, name) = if first {
        (
            key_text(lock.key),
            lock.key.raw(),
            lock.name.clone().unwrap_or_else(|| "-".into()),
        )
    } else {
        ("  └".into(), String::new(), String::new())
    };
    let pid = r.pid.map_or_else(|| "-".into(), |p| p.to_string());
    let mut cells = vec![key, raw, name, role.into(), mode(&r.mode).into(), pid];
    cells.extend(session_cells(entry));
    cells.push(
        entry
            .site
            .as_ref()
            .map_or_else(|| "-".into(), |s| s.display()),
    );
    cells
}

/// USER, APPLICATION, CLIENT, STATE, CONNECTED, IN STATE.
fn session_cells(entry: &Entry) -> [String; 6] {
    let r = &entry.row;
    let Some(s) = &r.session else {
        let state = match (&r.prepared, r.pid) {
            (Some(gid), _) => format!("prepared xact '{gid}'"),
            (None, None) => "prepared xact".into(),
            (None, Some(_)) => "(session ended)".into(),
        };
        return [
            "-".into(),
            "-".into(),
            "-".into(),
            state,
            "-".into(),
            "-".into(),
        ];
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    if s.hidden {
        let hidden = || "<hidden>".to_string();
        return [
            text(&s.user),
            text(&s.application),
            hidden(),
            hidden(),
            hidden(),
            hidden(),
        ];
    }
    // A waiter's time in its state is its wait so far (pg_locks.waitstart).
    let in_state = if r.granted {
        s.state_age
    } else {
        r.wait_age.or(s.state_age)
    };
    [
        text(&s.user),
        text(&s.application).chars().take(24).collect(),
        client(s),
        text(&s.state),
        age(s.session_age),
        age(in_state),
    ]
}

fn client(s: &Session) -> String {
    match (&s.client_addr, s.client_port) {
        (Some(addr), Some(port)) if port > 0 => format!("{addr}:{port}"),
        (Some(addr), _) => addr.clone(),
        (None, _) => "local".into(),
    }
}

fn key_text(key: PgKey) -> String {
    match key.key() {
        Some(key) => key.to_string(),
        None => format!("? (objsubid {})", key.objsubid),
    }
}

/// `45s`, `5m03s`, `2h04m`, `3d02h`.
fn age(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds.filter(|s| s.is_finite()) else {
        return "-".into();
    };
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Left-aligned columns, two spaces apart, no trailing blanks.
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(Some(0.4)), "0s");
        assert_eq!(age(Some(45.0)), "45s");
        assert_eq!(age(Some(303.0)), "5m03s");
        assert_eq!(age(Some(7440.0)), "2h04m");
        assert_eq!(age(Some(266400.0)), "3d02h");
        assert_eq!(age(None), "-");
        assert_eq!(age(Some(f64::NAN)), "-");
    }
}
