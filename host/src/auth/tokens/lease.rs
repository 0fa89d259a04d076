//! Token lifetimes: the TTL a token gets when it is created or renewed, and
//! what its lease shows. Every duration is in whole seconds; times are
//! nanoseconds since the Unix epoch, and the limits are computed on whole
//! seconds (a token created at 12:00:00.7 counts from 12:00:00).
//!
//! The rule (Vault's `CalculateTTL`, for the token store's mount, whose
//! default and maximum TTL are both 768h):
//!
//! - the effective maximum is 768h, or the token's `explicit_max_ttl` when
//!   that is shorter;
//! - a periodic token gets its `period` (capped to the effective maximum,
//!   with a warning); only an `explicit_max_ttl` limits its total life,
//!   counted from its start;
//! - any other token gets the increment asked for, else its current TTL,
//!   else the default (768h), capped so that it ends no later than its
//!   start plus the effective maximum, with a warning;
//! - a token already past that end cannot be renewed.

use kvsync_component::time::human_duration;

use super::TokenError;

/// The token store's default and maximum TTL: 768h (32 days), as Vault's.
pub const DEFAULT_TTL: u64 = 768 * 3600;
pub const MAX_TTL: u64 = 768 * 3600;

const NANOS: u64 = 1_000_000_000;

/// What a TTL is computed from.
#[derive(Debug, Clone, Copy, Default)]
pub struct TtlInput {
    /// Asked for now (a renewal's increment); 0: none.
    pub increment: u64,
    /// The token's own TTL (asked at creation, or granted last); 0: none.
    pub ttl: u64,
    pub period: u64,
    pub explicit_max_ttl: u64,
    /// When the token's life started, in seconds since the epoch.
    pub start: u64,
}

/// The TTL granted at `now` (nanoseconds), and the warnings about capping.
pub fn calculate(input: TtlInput, now: u64) -> Result<(u64, Vec<String>), TokenError> {
    let now = now / NANOS;
    let mut warnings = Vec::new();
    let max = match input.explicit_max_ttl {
        0 => MAX_TTL,
        explicit => explicit.min(MAX_TTL),
    };
    let (mut ttl, ends) = if input.period > 0 {
        let mut period = input.period;
        if period > max {
            warnings.push(format!(
                "period of \"{}\" exceeded the effective max_ttl of \"{}\"; period value is capped accordingly",
                human(period),
                human(max)
            ));
            period = max;
        }
        let ends = (input.explicit_max_ttl > 0)
            .then(|| input.start.saturating_add(input.explicit_max_ttl));
        (period, ends)
    } else {
        let ttl = [input.increment, input.ttl]
            .into_iter()
            .find(|t| *t > 0)
            .unwrap_or(DEFAULT_TTL);
        (ttl, Some(input.start.saturating_add(max)))
    };
    if let Some(ends) = ends {
        let left = ends.saturating_sub(now);
        if left == 0 {
            return Err(TokenError::BadRequest(
                "past the max TTL, cannot renew".to_string(),
            ));
        }
        if left < ttl {
            warnings.push(format!(
                "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
                human(ttl),
                human(left)
            ));
            ttl = left;
        }
    }
    Ok((ttl, warnings))
}

fn human(secs: u64) -> String {
    human_duration(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// `now + secs`, in nanoseconds.
pub fn after(now: u64, secs: u64) -> u64 {
    now.saturating_add(secs.saturating_mul(NANOS))
}

/// Seconds left until `expire` as Vault shows them: from `now` rounded to
/// the second, truncated toward zero.
pub fn seconds_left(expire: u64, now: u64) -> i64 {
    let rounded = (now.saturating_add(NANOS / 2) / NANOS).saturating_mul(NANOS);
    let left = i128::from(expire) - i128::from(rounded);
    i64::try_from(left / i128::from(NANOS)).unwrap_or(0)
}

/// Milliseconds of a time in nanoseconds (the expiry index's unit).
pub fn millis(nanos: u64) -> u64 {
    nanos / 1_000_000
}
