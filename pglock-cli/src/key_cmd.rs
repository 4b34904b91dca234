//! `pglock key NAME`: the key of a name and the psql one-liner that takes the same lock.

use std::process::ExitCode;

use pglock_runtime::LockKey;

use crate::cli::KeyArgs;
use crate::error::CliError;
use crate::keyspace::PgKey;

/// Prints the key, its `pg_locks` form, and the SQL.
pub fn run(args: &KeyArgs) -> Result<ExitCode, CliError> {
    let key = LockKey::from_name(&args.name);
    let sql = lock_sql(&args.name)?;
    println!("name      {}", args.name);
    println!("key       {key}");
    println!(
        "pg_locks  classid/objid/objsubid = {}",
        PgKey::of(key).raw()
    );
    println!("sql       {sql}");
    Ok(ExitCode::SUCCESS)
}

/// `SELECT pg_advisory_lock(hashtextextended('<name>', 0));` with the name quoted so
/// that psql reads back exactly its characters.
pub fn lock_sql(name: &str) -> Result<String, CliError> {
    Ok(format!(
        "SELECT pg_advisory_lock(hashtextextended({}, 0));",
        sql_literal(name)?
    ))
}

/// A string literal: `'...'` with quotes doubled; `E'...'` with backslashes doubled
/// too when the name has any, so the literal means the same whatever
/// `standard_conforming_strings` is.
fn sql_literal(text: &str) -> Result<String, CliError> {
    if text.contains('\0') {
        return Err(CliError::BadLock(
            "the name contains a NUL character, which no PostgreSQL text value can hold".into(),
        ));
    }
    let quoted = text.replace('\'', "''");
    Ok(if text.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_for_psql() {
        assert_eq!(sql_literal("goldleader").unwrap(), "'goldleader'");
        assert_eq!(sql_literal("it's").unwrap(), "'it''s'");
        assert_eq!(sql_literal(r"a\'b").unwrap(), r"E'a\\''b'");
        assert!(sql_literal("a\0b").is_err());
    }
}
