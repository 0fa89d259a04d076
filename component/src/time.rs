//! Time as Vault prints it: RFC 3339 timestamps with nanoseconds in UTC, and
//! Go-style durations (`"0s"`, `"1h0m0s"`, `"90s"` parsed, `"1m30s"` printed).

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, UTC.
pub type Nanos = i64;

pub fn now() -> Nanos {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// A delay of `backoff` with equal jitter: half of it fixed, half drawn
/// from `jitter` (any number, e.g. random bits).
pub fn equal_jitter(backoff: u64, jitter: u64) -> u64 {
    let half = backoff / 2;
    (backoff - half) + jitter % (half + 1)
}

/// `2018-03-22T02:24:06.945319214Z`; `0` (unset) prints as `""`.
pub fn rfc3339(nanos: Nanos) -> String {
    if nanos == 0 {
        return String::new();
    }
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (sod / 3600, (sod % 3600) / 60, sod % 60);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        // Go's RFC3339Nano trims trailing zeros of the fraction.
        let f = format!("{frac:09}");
        format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{}Z",
            f.trim_end_matches('0')
        )
    }
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a Go duration (`"1h30m"`, `"45s"`, `"1.5h"`, `"0"`) or a plain number of
/// seconds into whole seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let mut total: f64 = 0.0;
    let bad = || {
        format!(
            "invalid duration {s:?}: use a number of seconds or a value like \"90s\", \"30m\", \"1h30m\""
        )
    };
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        total += value * factor;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > i64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    let secs = total.trunc() as i64;
    Ok(if neg { -secs } else { secs })
}

/// Go's `time.Duration.String()` for whole seconds: `0s`, `45s`, `1m30s`, `1h0m0s`.
pub fn format_duration(secs: i64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{sign}{h}h{m}m{sec}s")
    } else if m > 0 {
        format!("{sign}{m}m{sec}s")
    } else {
        format!("{sign}{sec}s")
    }
}

/// [`format_duration`] without its zero parts, as Vault's TTL warnings
/// print durations: `768h`, `1h30m`, `20m`, `767h59m59s`.
pub fn human_duration(secs: i64) -> String {
    let mut s = format_duration(secs);
    if s.len() > 3 && s.ends_with("m0s") {
        s.truncate(s.len() - 2);
    }
    if let Some(at) = s.find("h0m") {
        s.replace_range(at + 1..at + 3, "");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339_with_nanoseconds() {
        assert_eq!(
            rfc3339(1_521_685_446_945_319_214),
            "2018-03-22T02:24:06.945319214Z"
        );
        assert_eq!(rfc3339(1_521_685_446_000_000_000), "2018-03-22T02:24:06Z");
        assert_eq!(rfc3339(1_521_685_446_100_000_000), "2018-03-22T02:24:06.1Z");
        assert_eq!(rfc3339(0), "");
        assert_eq!(
            rfc3339(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn parses_and_formats_durations() {
        assert_eq!(parse_duration("0s"), Ok(0));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1.5h"), Ok(5400));
        assert_eq!(parse_duration("3600s"), Ok(3600));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(3600), "1h0m0s");
        assert_eq!(format_duration(90), "1m30s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(2_764_800), "768h");
        assert_eq!(human_duration(2_764_799), "767h59m59s");
        assert_eq!(human_duration(5400), "1h30m");
        assert_eq!(human_duration(3605), "1h5s");
        assert_eq!(human_duration(1200), "20m");
        assert_eq!(human_duration(45), "45s");
    }
}
