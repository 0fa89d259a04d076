//! The functions a pipeline may call (Vault's `sdk/helper/template`
//! subset that is deterministic), their signatures and their results.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest as _, Sha256};

use super::parser::{Expr, Ty};
use super::render::Value;
use super::{MAX_VALUE_BYTES, by_name, name_of};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    Uppercase,
    Lowercase,
    Replace,
    Truncate,
    TruncateSha256,
    Sha256,
    Base64,
}

pub(super) const FUNCS: [(&str, Func); 7] = [
    ("uppercase", Func::Uppercase),
    ("lowercase", Func::Lowercase),
    ("replace", Func::Replace),
    ("truncate", Func::Truncate),
    ("truncate_sha256", Func::TruncateSha256),
    ("sha256", Func::Sha256),
    ("base64", Func::Base64),
];

/// Vault functions whose results change from one call to the next.
pub(super) const NONDETERMINISTIC: [&str; 5] = [
    "random",
    "uuid",
    "unix_time",
    "unix_time_millis",
    "timestamp",
];

/// Go's builtin functions, and its keywords.
pub(super) const GO_BUILTINS: [&str; 22] = [
    "and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf",
    "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne", "true", "false", "nil",
];
pub(super) const GO_KEYWORDS: [&str; 10] = [
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

impl Func {
    pub(super) fn from_name(name: &str) -> Option<Func> {
        by_name(&FUNCS, name)
    }

    pub(super) fn name(self) -> &'static str {
        name_of(&FUNCS, &self)
    }

    /// Parameter types and names, in call order (a piped value is the last one).
    pub(super) fn params(self) -> &'static [(Ty, &'static str)] {
        match self {
            Func::Uppercase | Func::Lowercase | Func::Sha256 | Func::Base64 => {
                &[(Ty::Str, "value")]
            }
            Func::Replace => &[(Ty::Str, "old"), (Ty::Str, "new"), (Ty::Str, "value")],
            Func::Truncate | Func::TruncateSha256 => &[(Ty::Int, "length"), (Ty::Str, "value")],
        }
    }

    /// Smallest allowed length for the truncating functions (Vault's limits).
    pub(super) fn min_length(self) -> i64 {
        match self {
            Func::TruncateSha256 => 9,
            _ => 1,
        }
    }

    /// The most characters a call renders to when its arguments render to
    /// at most what [`Expr::max_chars`] says, fields being at most `field`
    /// characters (saturating).
    pub(super) fn max_chars(self, args: &[Expr], field: usize) -> usize {
        let max = |i: usize| args.get(i).map_or(0, |a| a.max_chars(field));
        let length = || match args.first() {
            Some(Expr::Int(n)) => usize::try_from(*n).unwrap_or(usize::MAX),
            _ => usize::MAX,
        };
        match self {
            Func::Uppercase | Func::Lowercase => max(0),
            Func::Sha256 => 64,
            // Up to 4 bytes per character, 4 characters per 3 bytes.
            Func::Base64 => max(0).saturating_mul(4).div_ceil(3).saturating_mul(4),
            Func::Truncate | Func::TruncateSha256 => length().min(max(1)),
            Func::Replace => {
                let (new, value) = (max(1), max(2));
                let pattern = args.first().map_or(0, Expr::min_chars);
                // Every match adds at most `new`; an empty pattern matches
                // before every character and at the end.
                let matches = value
                    .checked_div(pattern)
                    .unwrap_or(value.saturating_add(1));
                value.saturating_add(matches.saturating_mul(new))
            }
        }
    }

    pub(super) fn apply(self, args: &[Value]) -> Result<String, String> {
        let len = |n: &i64| usize::try_from(*n).unwrap_or(usize::MAX);
        match (self, args) {
            (Func::Uppercase, [Value::Str(s)]) => Ok(map_case(s, char::to_uppercase)),
            (Func::Lowercase, [Value::Str(s)]) => Ok(map_case(s, char::to_lowercase)),
            (Func::Replace, [Value::Str(old), Value::Str(new), Value::Str(s)]) => {
                // The result's size first: it is refused before it is built.
                let matches = if old.is_empty() {
                    s.chars().count().saturating_add(1)
                } else {
                    s.matches(old.as_str()).count()
                };
                let size = s
                    .len()
                    .saturating_sub(matches.saturating_mul(old.len()))
                    .saturating_add(matches.saturating_mul(new.len()));
                if size > MAX_VALUE_BYTES {
                    return Err(too_long(self));
                }
                Ok(s.replace(old.as_str(), new))
            }
            (Func::Truncate, [Value::Int(n), Value::Str(s)]) => {
                Ok(s.chars().take(len(n)).collect())
            }
            (Func::TruncateSha256, [Value::Int(n), Value::Str(s)]) => {
                Ok(truncate_sha256(s, len(n)))
            }
            (Func::Sha256, [Value::Str(s)]) => Ok(sha256_hex(s)),
            (Func::Base64, [Value::Str(s)]) => Ok(BASE64.encode(s)),
            _ => Err(format!(
                "internal error: function {} called with the wrong arguments",
                self.name()
            )),
        }
    }
}

/// The error of a value that grows past [`MAX_VALUE_BYTES`].
pub(super) fn too_long(func: Func) -> String {
    format!(
        "the result of {} would be longer than {MAX_VALUE_BYTES} bytes",
        func.name()
    )
}

/// Per-character case mapping, close to Go's `strings.ToUpper`/`ToLower`
/// (simple case mapping): a character whose full mapping is several characters
/// maps to the first of them when lower-casing (`İ` → `i`) and is kept when
/// upper-casing (`ß` stays `ß`); no context rules (a final `Σ` becomes `σ`).
pub(super) fn map_case<I: Iterator<Item = char>>(s: &str, f: fn(char) -> I) -> String {
    s.chars()
        .map(|c| {
            let mut mapped = f(c);
            match (mapped.next(), mapped.next()) {
                (Some(m), None) => m,
                (Some(m), Some(_)) if m.is_lowercase() => m,
                _ => c,
            }
        })
        .collect()
}

pub(super) fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Vault's `truncate_sha256`: a value longer than `max` keeps its first
/// `max - 8` characters followed by the first 8 hex digits of the SHA-256 of
/// the characters cut off (Vault hashes the removed tail, not the whole value).
pub(super) fn truncate_sha256(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(8);
    let cut = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let (head, tail) = s.split_at(cut);
    let hash = sha256_hex(tail);
    format!("{head}{}", hash.get(..8).unwrap_or(&hash))
}
