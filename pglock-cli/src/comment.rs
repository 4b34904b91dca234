//! The comment pglock appends to the statements that take a lock, read back from
//! `pg_stat_activity.query`: `/* pglock: `name` in function at file:line */`, where the
//! name appears only for names fixed at compile time and `in function` only for the
//! attribute (the runtime API gives the caller's `file:line`).

use serde::Serialize;

/// What a pglock statement comment says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comment {
    /// The lock's static name, if the statement carries one.
    pub name: Option<String>,
    /// Where the lock is taken in the program.
    pub site: Option<Site>,
}

/// A call site: the annotated function (attribute only) and `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Site {
    pub function: Option<String>,
    pub location: String,
}

const OPEN: &str = "/* pglock: ";
const CLOSE: &str = " */";

/// The pglock comment of `query`, if it has one (the last one, which is the one pglock
/// appends; text before it cannot end a comment, pglock keeps `*/` out of names).
pub fn parse(query: &str) -> Option<Comment> {
    let start = query.rfind(OPEN)? + OPEN.len();
    let body = &query[start..];
    let body = &body[..body.find(CLOSE)?];
    let (name, rest) = match body.strip_prefix('`') {
        Some(named) => {
            let end = named.find("` ")?;
            (Some(named[..end].to_string()), &named[end + 2..])
        }
        None => (None, body),
    };
    let site = if let Some(location) = rest.strip_prefix("at ") {
        Some(Site {
            function: None,
            location: location.to_string(),
        })
    } else if let Some(in_fn) = rest.strip_prefix("in ") {
        let (function, location) = in_fn.rsplit_once(" at ")?;
        Some(Site {
            function: Some(function.to_string()),
            location: location.to_string(),
        })
    } else {
        None
    };
    Some(Comment { name, site })
}

impl Site {
    /// `function at file:line`, or `file:line`.
    pub fn display(&self) -> String {
        match &self.function {
            Some(function) => format!("{function} at {}", self.location),
            None => self.location.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_shape_pglock_writes() {
        let c = parse("SELECT pg_try_advisory_lock($1::int8) /* pglock: `goldleader` in lead at src/a.rs:3 */")
            .unwrap();
        assert_eq!(c.name.as_deref(), Some("goldleader"));
        let site = c.site.unwrap();
        assert_eq!(site.function.as_deref(), Some("lead"));
        assert_eq!(site.location, "src/a.rs:3");

        let c = parse("SELECT pg_advisory_lock($1::int8) /* pglock: at tests/x.rs:10 */").unwrap();
        assert_eq!(c.name, None);
        assert_eq!(c.site.unwrap().display(), "tests/x.rs:10");

        let c =
            parse("SELECT pg_advisory_lock($1::int8) /* pglock: in ship at src/b.rs:9 */").unwrap();
        assert_eq!(c.site.unwrap().display(), "ship at src/b.rs:9");
    }

    #[test]
    fn other_statements_have_none() {
        assert_eq!(parse("SELECT 1"), None);
        assert_eq!(parse("SELECT 1 /* pglock: unterminated"), None);
        assert_eq!(parse(""), None);
    }
}
