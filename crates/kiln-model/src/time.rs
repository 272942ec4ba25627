use crate::{ModelError, Result};

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Converts a unix timestamp in seconds, milliseconds, microseconds or nanoseconds, told apart
/// by magnitude, into nanoseconds.
pub fn timestamp_to_nanos(ts: i64) -> i64 {
    let magnitude = ts.unsigned_abs();
    if magnitude < 10_000_000_000 {
        ts.saturating_mul(NANOS_PER_SECOND)
    } else if magnitude < 10_000_000_000_000 {
        ts.saturating_mul(1_000_000)
    } else if magnitude < 10_000_000_000_000_000 {
        ts.saturating_mul(1_000)
    } else {
        ts
    }
}

/// Parses a time parameter into unix nanoseconds: a number (seconds to nanoseconds, by
/// magnitude), `now`, or `now-<duration>` / `now+<duration>` with units s, m, h, d, w.
pub fn parse_time_nanos(value: &str, now_nanos: i64) -> Result<i64> {
    let invalid = |reason: &str| ModelError::InvalidTime {
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let value_trimmed = value.trim();
    if let Ok(number) = value_trimmed.parse::<i64>() {
        return Ok(timestamp_to_nanos(number));
    }
    let Some(rest) = value_trimmed.strip_prefix("now") else {
        return Err(invalid("expected a unix timestamp or now[-+]<duration>"));
    };
    if rest.is_empty() {
        return Ok(now_nanos);
    }
    let (sign, duration) = match rest.split_at(1) {
        ("-", d) => (-1, d),
        ("+", d) => (1, d),
        _ => return Err(invalid("expected '-' or '+' after now")),
    };
    let offset = parse_duration_nanos(duration).ok_or_else(|| invalid("bad duration"))?;
    Ok(now_nanos.saturating_add(sign * offset))
}

fn parse_duration_nanos(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let amount: i64 = digits.parse().ok()?;
    let unit_nanos = match unit {
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        "d" => 86_400 * NANOS_PER_SECOND,
        "w" => 7 * 86_400 * NANOS_PER_SECOND,
        _ => return None,
    };
    amount.checked_mul(unit_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_units_apart_by_magnitude() {
        let nanos = 1_700_000_000_000_000_000;
        for ts in [
            1_700_000_000,
            1_700_000_000_000,
            1_700_000_000_000_000,
            nanos,
        ] {
            assert_eq!(timestamp_to_nanos(ts), nanos, "{ts}");
        }
    }

    #[test]
    fn parses_relative_times() {
        let now = 1_700_000_000 * NANOS_PER_SECOND;
        assert_eq!(parse_time_nanos("now", now).unwrap(), now);
        assert_eq!(
            parse_time_nanos("now-1h", now).unwrap(),
            now - 3_600 * NANOS_PER_SECOND
        );
        assert_eq!(
            parse_time_nanos("now+2m", now).unwrap(),
            now + 120 * NANOS_PER_SECOND
        );
        assert_eq!(parse_time_nanos("1700000000", now).unwrap(), now);
        for bad in ["", "yesterday", "now-", "now-1y", "now*1h"] {
            assert!(parse_time_nanos(bad, now).is_err(), "{bad}");
        }
    }
}
