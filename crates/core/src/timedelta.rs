//! Parsing of Dask time strings (`"100 ms"`, `"60s"`, `"5 minutes"`, `2.5`).

/// Parse a Dask/`dask.utils.parse_timedelta` style duration into seconds.
///
/// A bare number is seconds. Returns `None` for anything unparseable.
pub fn parse_seconds(s: &str) -> Option<f64> {
    let s = s.trim().replace(' ', "").to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
        .unwrap_or(s.len());
    // "e" may be part of an exponent or of a unit; units never start with "e".
    let (num, unit) = s.split_at(split);
    let n: f64 = if num.is_empty() {
        1.0
    } else {
        num.parse().ok()?
    };
    let factor = match unit {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "millisecond" | "milliseconds" => 1e-3,
        "us" | "µs" | "microsecond" | "microseconds" => 1e-6,
        "ns" | "nanosecond" | "nanoseconds" => 1e-9,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        "w" | "wk" | "week" | "weeks" => 604800.0,
        _ => return None,
    };
    Some(n * factor)
}

#[cfg(test)]
mod tests {
    use super::parse_seconds;

    #[test]
    fn parses_dask_strings() {
        let cases = [
            ("100 ms", Some(0.1)),
            ("60s", Some(60.0)),
            ("2", Some(2.0)),
            ("1.5 minutes", Some(90.0)),
            ("5m", Some(300.0)),
            ("1h", Some(3600.0)),
            ("ms", Some(0.001)),
            ("bogus", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_seconds(input), want, "{input}");
        }
    }
}
