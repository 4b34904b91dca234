//! The `NAME|KEY` argument: which lock a command is about.

use pglock_runtime::LockKey;

use crate::cli::LockArg;
use crate::error::CliError;

/// A lock given on the command line: its key, and the name it was given by, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub key: LockKey,
    pub name: Option<String>,
}

impl Target {
    /// Reads `42` / `-7` as a `BigInt` key, `1,2` (or `(1, 2)`) as a `Pair`, anything
    /// else (or anything with `--as-name`) as a name hashed as `LockKey::from_name`.
    pub fn parse(arg: &LockArg) -> Result<Target, CliError> {
        let text = arg.lock.as_str();
        if arg.as_name {
            return Ok(Target::named(text));
        }
        if looks_like_integer(text) {
            let key = text.trim().parse::<i64>().map_err(|_| {
                out_of_range(
                    text,
                    "a bigint key (-9223372036854775808..9223372036854775807)",
                )
            })?;
            return Ok(Target {
                key: LockKey::BigInt(key),
                name: None,
            });
        }
        let inner = text.trim();
        let inner = inner
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or(inner);
        if let Some((a, b)) = inner.split_once(',') {
            if looks_like_integer(a) && looks_like_integer(b) {
                let half = |t: &str| {
                    t.trim().parse::<i32>().map_err(|_| {
                        out_of_range(
                            text,
                            "a pair key, whose halves are int4 (-2147483648..2147483647)",
                        )
                    })
                };
                return Ok(Target {
                    key: LockKey::Pair(half(a)?, half(b)?),
                    name: None,
                });
            }
        }
        Ok(Target::named(text))
    }

    fn named(name: &str) -> Target {
        Target {
            key: LockKey::from_name(name),
            name: Some(name.to_string()),
        }
    }

    /// How the lock is shown in messages: `` `name` (key 123) `` or `key (1, 2)`.
    pub fn describe(&self) -> String {
        match &self.name {
            Some(name) => format!("`{name}` (key {})", self.key),
            None => format!("key {}", self.key),
        }
    }
}

fn looks_like_integer(text: &str) -> bool {
    let digits = text.trim();
    let digits = digits.strip_prefix(['-', '+']).unwrap_or(digits);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn out_of_range(text: &str, what: &str) -> CliError {
    CliError::BadLock(format!(
        "`{text}` is out of range for {what}; pass --as-name to use it as a lock name"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, as_name: bool) -> Result<Target, CliError> {
        Target::parse(&LockArg {
            lock: text.into(),
            as_name,
        })
    }

    #[test]
    fn integers_pairs_and_names() {
        assert_eq!(parse("42", false).unwrap().key, LockKey::BigInt(42));
        assert_eq!(parse("-7", false).unwrap().key, LockKey::BigInt(-7));
        assert_eq!(parse("1,-2", false).unwrap().key, LockKey::Pair(1, -2));
        assert_eq!(parse("(1, 2)", false).unwrap().key, LockKey::Pair(1, 2));
        let named = parse("order:7", false).unwrap();
        assert_eq!(named.key, LockKey::from_name("order:7"));
        assert_eq!(named.name.as_deref(), Some("order:7"));
        assert_eq!(parse("42", true).unwrap().key, LockKey::from_name("42"));
        assert_eq!(parse("a,b", false).unwrap().key, LockKey::from_name("a,b"));
    }

    #[test]
    fn out_of_range_keys_are_named_errors() {
        let err = parse("9223372036854775808", false).unwrap_err().to_string();
        assert!(err.contains("out of range for a bigint key"), "{err}");
        let err = parse("1,2147483648", false).unwrap_err().to_string();
        assert!(err.contains("int4"), "{err}");
    }
}
