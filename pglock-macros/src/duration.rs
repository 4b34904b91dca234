//! `wait = "1.5s"`: durations checked and converted at compile time.

/// A duration as `core::time::Duration::new` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Duration {
    pub secs: u64,
    pub nanos: u32,
}

const UNITS: &str = "`ms`, `s` or `m` (`\"300ms\"`, `\"1.5s\"`, `\"2m\"`)";

/// Parses `<number><unit>`: a decimal number (`5`, `1.5`, `.5` is not accepted) and
/// one of `ms`, `s`, `m`. The value must be exact to the nanosecond, above zero and
/// fit a `Duration`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let not_a_duration =
        || format!("`wait = \"{text}\"` is not a duration: write a number and a unit, in {UNITS}");
    if number.is_empty() {
        return Err(not_a_duration());
    }
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "" => {
            return Err(format!(
                "`wait = \"{text}\"` has no unit: write it in {UNITS}"
            ))
        }
        other => {
            return Err(format!(
                "unknown unit `{other}` in `wait = \"{text}\"`: write it in {UNITS}"
            ))
        }
    };
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    let well_formed = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (!number.contains('.') || !frac.is_empty())
        && frac.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return Err(not_a_duration());
    }
    let too_long = || format!("`wait = \"{text}\"` is longer than a `Duration` can hold");
    // value = whole.frac exactly, as (whole * 10^len(frac) + frac) / 10^len(frac).
    let scale = 10u128
        .checked_pow(u32::try_from(frac.len()).map_err(|_| too_long())?)
        .ok_or_else(|| format!("`wait = \"{text}\"` has more decimals than nanoseconds"))?;
    let mantissa: u128 = format!("{whole}{frac}").parse().map_err(|_| too_long())?;
    let scaled = mantissa.checked_mul(unit_nanos).ok_or_else(too_long)?;
    if scaled % scale != 0 {
        return Err(format!(
            "`wait = \"{text}\"` is finer than a nanosecond: use fewer decimals"
        ));
    }
    let nanos = scaled / scale;
    if nanos == 0 {
        return Err(format!(
            "`wait = \"{text}\"` waits for nothing: leave `wait` out to fail at once when busy"
        ));
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration {
        secs,
        nanos: (nanos % 1_000_000_000) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> (u64, u32) {
        let d = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (d.secs, d.nanos)
    }

    #[test]
    fn units_and_decimals() {
        assert_eq!(ok("300ms"), (0, 300_000_000));
        assert_eq!(ok("5s"), (5, 0));
        assert_eq!(ok("1.5s"), (1, 500_000_000));
        assert_eq!(ok("2m"), (120, 0));
        assert_eq!(ok("0.5m"), (30, 0));
        assert_eq!(ok("1500ms"), (1, 500_000_000));
        assert_eq!(ok("0.000001ms"), (0, 1));
        assert_eq!(ok("007s"), (7, 0));
        assert_eq!(ok("18446744073709551615s"), (u64::MAX, 0));
    }

    #[test]
    fn rejections_say_why() {
        let err = |t: &str| parse(t).unwrap_err();
        assert!(err("5").contains("has no unit"));
        assert!(err("5h").contains("unknown unit `h`"));
        assert!(err("5 s").contains("unknown unit ` s`"));
        assert!(err("5s ").contains("unknown unit `s `"));
        assert!(err("5sec").contains("unknown unit `sec`"));
        assert!(err("1.5.2s").contains("is not a duration"));
        assert!(err(".5s").contains("is not a duration"));
        assert!(err("5.s").contains("is not a duration"));
        assert!(err("s").contains("is not a duration"));
        assert!(err("-1s").contains("is not a duration"));
        assert!(err("").contains("is not a duration"));
        assert!(err("0s").contains("waits for nothing"));
        assert!(err("0.0000001ms").contains("finer than a nanosecond"));
        assert!(err("18446744073709551616s").contains("longer than a `Duration`"));
        assert!(err("99999999999999999999999999999999999999999m").contains("longer than"));
    }
}
