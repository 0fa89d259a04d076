//! The `connection_details` of each destination type, declared as data: a
//! table of [`FieldSpec`]s (type, default, required, sensitive, immutable,
//! value check, where a read shows the field) plus a function for the rules
//! that span fields, which sees the merged details through [`Details`].
//!
//! [`merge`] applies a table to a request: values made only of `*` mean
//! "unchanged" (clients echo masked reads back), zero values (`""`, `0`, `[]`,
//! `{}`) clear a field, then checks, defaults, immutability and required
//! fields, in that order. [`render`] is the masked read form.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::framework::{FieldType, Fields};

/// What a sensitive value reads back as.
pub const MASK: &str = "*****";

/// A field's default, stored when the field is unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    None,
    Str(&'static str),
    Int(i64),
}

/// A check of one field's value (each item, for lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    None,
    OneOf(&'static [&'static str]),
    /// An absolute `http` or `https` URL without credentials (decision 20).
    HttpUrl,
    /// `name@project.iam.gserviceaccount.com`.
    ServiceAccountEmail,
    /// A JSON object (a service-account key file).
    JsonObject,
    /// An integer above zero (zero itself means unset).
    Positive,
    /// At most this many characters.
    MaxLen(usize),
}

/// One field of a type's `connection_details`.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    pub default: Preset,
    pub required: bool,
    /// Read back as [`MASK`], never shown in an error.
    pub sensitive: bool,
    /// Cannot change once the destination exists.
    pub immutable: bool,
    pub check: Check,
    /// Reads show the field inside this object of `connection_details`.
    pub read_under: Option<&'static str>,
}

impl FieldSpec {
    pub const fn new(name: &'static str, ty: FieldType) -> Self {
        FieldSpec {
            name,
            ty,
            default: Preset::None,
            required: false,
            sensitive: false,
            immutable: false,
            check: Check::None,
            read_under: None,
        }
    }

    pub const fn string(name: &'static str) -> Self {
        Self::new(name, FieldType::String)
    }

    pub const fn required(self) -> Self {
        FieldSpec {
            required: true,
            ..self
        }
    }

    pub const fn sensitive(self) -> Self {
        FieldSpec {
            sensitive: true,
            ..self
        }
    }

    pub const fn immutable(self) -> Self {
        FieldSpec {
            immutable: true,
            ..self
        }
    }

    pub const fn default(self, default: Preset) -> Self {
        FieldSpec { default, ..self }
    }

    pub const fn check(self, check: Check) -> Self {
        FieldSpec { check, ..self }
    }

    pub const fn read_under(self, parent: &'static str) -> Self {
        FieldSpec {
            read_under: Some(parent),
            ..self
        }
    }
}

/// Workload identity federation (Vault 2.0+), shared by the cloud types.
pub const IDENTITY_TOKEN_AUDIENCE: FieldSpec =
    FieldSpec::string("identity_token_audience").sensitive();
pub const IDENTITY_TOKEN_KEY: FieldSpec = FieldSpec::string("identity_token_key").sensitive();
pub const IDENTITY_TOKEN_TTL: FieldSpec = FieldSpec::new("identity_token_ttl", FieldType::Duration)
    .default(Preset::Int(3600))
    .check(Check::Positive);

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

/// The request's value of `spec`, as stored (lists without empty items).
fn requested(spec: &FieldSpec, fields: &Fields) -> Option<Value> {
    let name = spec.name;
    match spec.ty {
        FieldType::Bool => fields.bool(name).map(Value::from),
        FieldType::Int | FieldType::Duration => fields.int(name).map(Value::from),
        FieldType::String => fields.string(name).map(Value::from),
        FieldType::CommaStringSlice => fields.strings(name).map(|items| {
            Value::from(
                items
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            )
        }),
        FieldType::CommaIntSlice => fields.ints(name).map(Value::from),
        FieldType::KvPairs | FieldType::Map => fields.map(name).cloned().map(Value::Object),
    }
}

/// A string made only of `*`: a masked value echoed back.
pub fn is_masked(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| !s.is_empty() && s.chars().all(|c| c == '*'))
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// Runs the field's [`Check`]; messages name the field and never show a sensitive value.
fn check(spec: &FieldSpec, value: &Value) -> ApiResult<()> {
    let name = spec.name;
    let shown = |s: &str| {
        if spec.sensitive {
            MASK.to_string()
        } else {
            format!("{s:?}")
        }
    };
    let items: Vec<&str> = match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    match spec.check {
        Check::None => Ok(()),
        Check::OneOf(allowed) => match items.iter().find(|s| !allowed.contains(s)) {
            Some(s) => Err(bad(format!(
                "invalid {name} {}: use {}",
                shown(s),
                one_of(allowed)
            ))),
            None => Ok(()),
        },
        Check::HttpUrl => match items.iter().find(|s| !is_http_url(s)) {
            Some(s) => Err(bad(format!(
                "invalid {name} {}: use an absolute http or https URL without credentials, like https://host.example.com",
                shown(s)
            ))),
            None => Ok(()),
        },
        Check::ServiceAccountEmail => match items.iter().find(|s| !is_service_account(s)) {
            Some(s) => Err(bad(format!(
                "invalid {name} {}: invalid service account email format, expected format: \
                 project-id@project-id.iam.gserviceaccount.com",
                shown(s)
            ))),
            None => Ok(()),
        },
        Check::JsonObject => match items
            .iter()
            .find(|s| !matches!(serde_json::from_str(s), Ok(Value::Object(_))))
        {
            Some(_) => Err(bad(format!(
                "invalid {name}: expected the JSON key file of a service account"
            ))),
            None => Ok(()),
        },
        Check::Positive => match value.as_i64() {
            Some(n) if n <= 0 => Err(bad(format!(
                "invalid {name} {n}: must be a positive number"
            ))),
            _ => Ok(()),
        },
        Check::MaxLen(max) => match items.iter().find(|s| s.chars().count() > max) {
            Some(_) => Err(bad(format!(
                "invalid {name}: must be at most {max} characters long"
            ))),
            None => Ok(()),
        },
    }
}

/// `a`, `a or b`, `a, b or c`.
pub fn one_of(allowed: &[&str]) -> String {
    match allowed.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_string(),
        None => String::new(),
    }
}

/// An absolute `http(s)://host[:port][/...]` URL with no credentials or spaces.
fn is_http_url(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, rest)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                match rest.strip_prefix(':') {
                    Some(port) => ("v6", Some(port)),
                    None if rest.is_empty() => ("v6", None),
                    None => return false,
                }
            }
            _ => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port_ok = port.is_none_or(|p| {
        p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok_and(|n| n > 0)
    });
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_'));
    port_ok && host_ok
}

fn is_service_account(s: &str) -> bool {
    let Some((user, domain)) = s.split_once('@') else {
        return false;
    };
    let plain = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    };
    plain(user)
        && domain
            .strip_suffix(".iam.gserviceaccount.com")
            .is_some_and(plain)
}

/// Applies the request's values of `specs` to the stored details (`old`; `None`
/// on create) and returns the checked result.
pub fn merge(
    specs: &[FieldSpec],
    fields: &Fields,
    old: Option<&Map<String, Value>>,
) -> ApiResult<Map<String, Value>> {
    let mut details = old.cloned().unwrap_or_default();
    for spec in specs {
        let Some(value) = requested(spec, fields) else {
            continue;
        };
        if is_masked(&value) {
            continue;
        }
        if is_zero(&value) {
            details.remove(spec.name);
            continue;
        }
        check(spec, &value)?;
        details.insert(spec.name.to_string(), value);
    }
    for spec in specs {
        if details.contains_key(spec.name) {
            continue;
        }
        match spec.default {
            Preset::None => {}
            Preset::Str(s) => {
                details.insert(spec.name.to_string(), Value::from(s));
            }
            Preset::Int(n) => {
                details.insert(spec.name.to_string(), Value::from(n));
            }
        }
    }
    if let Some(old) = old {
        let changed = specs
            .iter()
            .find(|s| s.immutable && old.get(s.name) != details.get(s.name));
        if let Some(spec) = changed {
            return Err(bad(format!(
                "{} cannot be changed after the destination is created; create a new destination instead",
                spec.name
            )));
        }
    }
    match specs
        .iter()
        .find(|s| s.required && !details.contains_key(s.name))
    {
        Some(spec) => Err(bad(format!("missing required field {}", spec.name))),
        None => Ok(details),
    }
}

/// The masked read form of stored details, in table order.
pub fn render(specs: &[FieldSpec], details: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for spec in specs {
        let Some(value) = details.get(spec.name) else {
            continue;
        };
        let shown = if spec.sensitive {
            Value::from(MASK)
        } else {
            value.clone()
        };
        let target = match spec.read_under {
            Some(parent) => match out
                .entry(parent)
                .or_insert_with(|| Value::Object(Map::new()))
            {
                Value::Object(m) => m,
                _ => continue,
            },
            None => &mut out,
        };
        target.insert(spec.name.to_string(), shown);
    }
    out
}

/// The merged `connection_details`, for a type's cross-field rules.
pub struct Details<'a>(pub &'a Map<String, Value>);

impl Details<'_> {
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn is(&self, name: &str, value: &str) -> bool {
        self.str(name) == Some(value)
    }

    pub fn map(&self, name: &str) -> Option<&Map<String, Value>> {
        self.0.get(name).and_then(Value::as_object)
    }

    /// At most one of each pair.
    pub fn exclusive(&self, pairs: &[(&str, &str)]) -> ApiResult<()> {
        match pairs.iter().find(|(a, b)| self.has(a) && self.has(b)) {
            Some((a, b)) => Err(bad(format!(
                "{a} and {b} are mutually exclusive: set only one of them"
            ))),
            None => Ok(()),
        }
    }

    /// Both or neither.
    pub fn together(&self, a: &str, b: &str) -> ApiResult<()> {
        if self.has(a) == self.has(b) {
            Ok(())
        } else {
            Err(bad(format!("{a} and {b} must be set together")))
        }
    }

    /// `field` only with `other`.
    pub fn needs(&self, field: &str, other: &str) -> ApiResult<()> {
        if self.has(field) && !self.has(other) {
            Err(bad(format!("{field} requires {other} to be set")))
        } else {
            Ok(())
        }
    }

    /// `field` is set exactly when `condition` holds (described by `when`).
    pub fn exactly_when(&self, field: &str, condition: bool, when: &str) -> ApiResult<()> {
        match (self.has(field), condition) {
            (false, true) => Err(bad(format!("{field} is required when {when}"))),
            (true, false) => Err(bad(format!("{field} can only be set when {when}"))),
            _ => Ok(()),
        }
    }

    /// `field` may only be set when `condition` holds.
    pub fn only_when(&self, field: &str, condition: bool, when: &str) -> ApiResult<()> {
        if self.has(field) && !condition {
            Err(bad(format!("{field} can only be set when {when}")))
        } else {
            Ok(())
        }
    }
}

/// The cross-field rules of a type without any.
pub fn no_rules(
    _tx: &mut crate::storage::Tx,
    _new: &Details,
    _old: Option<&Details>,
) -> ApiResult<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        for good in [
            "https://myvault.vault.azure.net",
            "http://ghe.example.com:8080/api/v3",
            "HTTPS://x.example.com/",
            "https://[::1]:8443",
            "https://10.0.0.1",
        ] {
            assert!(is_http_url(good), "{good}");
        }
        for bad in [
            "",
            "ftp://x.example.com",
            "myvault.vault.azure.net",
            "https://",
            "https:///path",
            "https://user:pass@host.example.com",
            "https://host .example.com",
            "https://host:0",
            "https://host:99999",
            "https://host:+80",
            "https://[nope]",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn service_account_emails() {
        assert!(is_service_account("sync@my-proj.iam.gserviceaccount.com"));
        for bad in [
            "sync@my-proj.gserviceaccount.com",
            "@my-proj.iam.gserviceaccount.com",
            "sync@.iam.gserviceaccount.com",
            "sync",
            "a b@p.iam.gserviceaccount.com",
        ] {
            assert!(!is_service_account(bad), "{bad}");
        }
    }

    #[test]
    fn lists_are_named_in_prose() {
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
    }

    #[test]
    fn sensitive_values_are_never_shown_in_errors() {
        let spec = FieldSpec::string("token")
            .sensitive()
            .check(Check::OneOf(&["x"]));
        let err = check(&spec, &Value::from("hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("token"));
    }
}
