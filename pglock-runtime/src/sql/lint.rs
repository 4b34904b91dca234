//! A check, for tests, that a statement leaves nothing for the `search_path` to
//! choose. It is a token scanner, not a SQL parser; what it rejects:
//!
//! - a bare operator (`=`, `<`, `<=`, `<>`, `-`, `||`, ...): each must be written
//!   `OPERATOR(pg_catalog.x)`; `*` is let through only as `count(*)`;
//! - an `OPERATOR(...)` whose schema is not `pg_catalog`;
//! - a cast (`::`) to a type not written `pg_catalog.type`;
//! - a call `name(` not written `pg_catalog.name(`, except the SQL keywords whose
//!   parenthesis is no function call (`FROM (`, `EXISTS (`, `AS r(a, b)`, ...) and
//!   `EXTRACT(` and `COALESCE(`, which the server's grammar turns into
//!   `pg_catalog.extract` and a built-in expression whatever the search_path;
//! - a relation after `FROM` or `JOIN` not written `pg_catalog.name`, unless the
//!   statement names it in its own `WITH`;
//! - the constructs that look an operator up by name behind the text: `IN`, `ANY`,
//!   `SOME`, `ALL`, `LIKE`, `ILIKE`, `SIMILAR`, `BETWEEN`, `DISTINCT`, `NULLIF`,
//!   `OVERLAPS`, and a `CASE` not followed by `WHEN` (`CASE x WHEN` compares with `=`).
//!
//! What it does not see: string literals, quoted identifiers and comments are
//! skipped whole (a name in double quotes is not checked); column names are not
//! checked (they are resolved in the statement's own relations, not the
//! search_path); `ORDER BY` and `GROUP BY` are let through, since the server sorts
//! and groups with the type's default operator class, found without the search_path.

/// The first thing in `sql` that a `search_path` could redirect, described; `None`
/// when the scanner finds nothing (see the module docs for what it checks).
pub fn unqualified(sql: &str) -> Option<String> {
    let tokens = tokens(sql);
    let ctes = cte_names(&tokens);
    let mut extract_parens: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i].as_str();
        let upper = token.to_ascii_uppercase();
        let prev = i.checked_sub(1).map(|p| tokens[p].as_str());
        let next = tokens.get(i + 1).map(String::as_str);
        match token {
            "(" => extract_parens.push(prev.is_some_and(|p| p.eq_ignore_ascii_case("EXTRACT"))),
            ")" => {
                extract_parens.pop();
            }
            "::" if !qualified_at(&tokens, i + 1) => {
                return Some(format!(
                    "a cast to an unqualified type at `:: {}`",
                    next.unwrap_or("")
                ));
            }
            "*" if prev == Some("(") && next == Some(")") => {}
            t if is_operator(t) => return Some(format!("a bare operator `{t}`")),
            _ if upper == "OPERATOR" => {
                if next != Some("(") || !qualified_at(&tokens, i + 2) {
                    return Some("an OPERATOR(...) outside pg_catalog".into());
                }
                i += 5; // OPERATOR ( pg_catalog . op )
                continue;
            }
            _ if HIDDEN_OPERATORS.contains(&upper.as_str()) => {
                return Some(format!("`{token}`, which finds its operator by name"));
            }
            _ if upper == "CASE" && !next.is_some_and(|n| n.eq_ignore_ascii_case("WHEN")) => {
                return Some("a `CASE x WHEN`, which compares with a bare `=`".into());
            }
            _ if next == Some("(") && is_word(token) => {
                if let Some(problem) = call(&tokens, i) {
                    return Some(problem);
                }
            }
            _ if (upper == "FROM" && extract_parens.last() != Some(&true)) || upper == "JOIN" => {
                if let Some(problem) = relation(&tokens, i + 1, &ctes) {
                    return Some(problem);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Keywords that look up `=` (or another operator) by name without showing it.
const HIDDEN_OPERATORS: [&str; 11] = [
    "IN", "ANY", "SOME", "ALL", "LIKE", "ILIKE", "SIMILAR", "BETWEEN", "DISTINCT", "NULLIF",
    "OVERLAPS",
];

/// Keywords followed by a parenthesis that calls no function.
const NOT_CALLS: [&str; 16] = [
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "EXISTS",
    "ON",
    "THEN",
    "ELSE",
    "WHEN",
    "LATERAL",
    "MATERIALIZED",
    "JOIN",
    "EXTRACT",
    "COALESCE",
];

/// The problem with the call whose name is token `at`, if any.
fn call(tokens: &[String], at: usize) -> Option<String> {
    let name = &tokens[at];
    let schema = at.checked_sub(2).filter(|&s| tokens[s + 1] == ".");
    match schema {
        Some(s) if tokens[s].eq_ignore_ascii_case("pg_catalog") => None,
        Some(s) => Some(format!(
            "a call of `{}.{name}`, outside pg_catalog",
            tokens[s]
        )),
        None if NOT_CALLS.contains(&name.to_ascii_uppercase().as_str()) => None,
        // `AS r(a, b)`: names for the columns of a relation, no call.
        None if at
            .checked_sub(1)
            .is_some_and(|p| tokens[p].eq_ignore_ascii_case("AS")) =>
        {
            None
        }
        None => Some(format!("an unqualified call of `{name}(`")),
    }
}

/// The problem with the relation named at token `at` (after FROM or JOIN), if any.
fn relation(tokens: &[String], at: usize, ctes: &[String]) -> Option<String> {
    let name = tokens.get(at)?;
    let upper = name.to_ascii_uppercase();
    if !is_word(name) || ["LATERAL", "ROWS", "ONLY"].contains(&upper.as_str()) {
        return None;
    }
    if qualified_at(tokens, at) || ctes.iter().any(|c| c.eq_ignore_ascii_case(name)) {
        return None;
    }
    Some(format!("an unqualified relation `{name}`"))
}

/// Whether tokens `at..` read `pg_catalog . name`.
fn qualified_at(tokens: &[String], at: usize) -> bool {
    tokens
        .get(at)
        .is_some_and(|t| t.eq_ignore_ascii_case("pg_catalog"))
        && tokens.get(at + 1).is_some_and(|t| t == ".")
}

/// The names a `WITH` in the statement defines: the word after `WITH` and after
/// each `),` that closes one of its queries and starts the next `name AS`.
fn cte_names(tokens: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let defines =
            token.eq_ignore_ascii_case("WITH") || (token == "," && i > 0 && tokens[i - 1] == ")");
        let named = tokens
            .get(i + 2)
            .is_some_and(|t| t.eq_ignore_ascii_case("AS"));
        if defines && named {
            names.push(tokens[i + 1].clone());
        }
    }
    names
}

fn is_word(token: &str) -> bool {
    token
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
}

fn is_operator(token: &str) -> bool {
    token.chars().all(|c| OPERATOR_CHARS.contains(c))
}

const OPERATOR_CHARS: &str = "+-*/<>=~!@#%^&|`?";

/// `sql` as words, numbers, `$n` parameters, `::`, operators and single punctuation,
/// with comments, string literals and quoted identifiers left out (a literal or a
/// quoted name stands as one placeholder token).
fn tokens(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if c.is_whitespace() {
            i += 1;
        } else if rest == "/*" {
            i = find(&chars, i + 2, "*/").map_or(chars.len(), |end| end + 2);
        } else if rest == "--" {
            i = find(&chars, i, "\n").map_or(chars.len(), |end| end + 1);
        } else if c == '\'' || c == '"' {
            i = quoted_end(&chars, i, c);
            out.push(if c == '\'' { "'literal'" } else { "\"name\"" }.to_string());
        } else if rest == "::" {
            out.push("::".into());
            i += 2;
        } else {
            let class = |ch: char| {
                if ch.is_ascii_alphanumeric() || ch == '_' || ch == '$' {
                    0
                } else if OPERATOR_CHARS.contains(ch) {
                    1
                } else {
                    2
                }
            };
            let start = i;
            i += 1;
            if class(c) != 2 {
                while i < chars.len() && class(chars[i]) == class(c) {
                    i += 1;
                }
            }
            out.push(chars[start..i].iter().collect());
        }
    }
    out
}

/// Where `needle` starts at or after `from`.
fn find(chars: &[char], from: usize, needle: &str) -> Option<usize> {
    let needle: Vec<char> = needle.chars().collect();
    (from..chars.len()).find(|&at| chars[at..].starts_with(&needle))
}

/// The index just past the quoted text opening at `start` (a doubled quote stays
/// inside it).
fn quoted_end(chars: &[char], start: usize, quote: char) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::unqualified;

    #[test]
    fn the_scanner_rejects_what_a_search_path_could_redirect() {
        for bad in [
            "SELECT 1 WHERE a.x = $1",
            "SELECT a.x <= $1",
            "SELECT a.x <> $1",
            "SELECT now() - x",
            "SELECT pg_try_advisory_lock($1)",
            "SELECT evil.pg_try_advisory_lock($1)",
            "SELECT pg_catalog.f($1::int8)",
            "SELECT 1 FROM pg_locks",
            "SELECT 1 WHERE a OPERATOR(evil.=) b",
            "SELECT 1 WHERE a IN (1, 2)",
            "SELECT 1 WHERE a IS NOT DISTINCT FROM b",
            "SELECT 1 WHERE a LIKE 'x%'",
            "SELECT CASE a WHEN 1 THEN 2 END",
        ] {
            assert!(unqualified(bad).is_some(), "let through: {bad}");
        }
    }

    #[test]
    fn the_scanner_lets_qualified_sql_through() {
        for good in [
            "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8) /* pglock: = f( */",
            "SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l WHERE l.x OPERATOR(pg_catalog.=) 'a = b'",
            "SELECT EXTRACT(epoch FROM a.t)::pg_catalog.text FROM pg_catalog.pg_stat_activity a",
            "WITH l AS MATERIALIZED (SELECT 1 AS c FROM pg_catalog.pg_locks) SELECT c FROM l",
            "SELECT r.n FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int2[])) WITH ORDINALITY AS r(op, n)",
            "SELECT CASE WHEN coalesce(a, false) THEN 1 END FROM pg_catalog.x a LEFT JOIN LATERAL (SELECT 1) p ON true",
        ] {
            assert_eq!(unqualified(good), None, "{good}");
        }
    }
}
