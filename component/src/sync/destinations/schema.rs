//! The `connection_details` of each destination type, declared as data: a
//! table of [`FieldSpec`]s (type, default, required, sensitive, immutable,
//! endpoint, credential, value check, where a read shows the field) plus a
//! function for the rules that span fields, which sees the merged details
//! through [`Details`].
//!
//! [`merge`] applies a table to a request: values made only of `*` mean
//! "unchanged" (clients echo masked reads back), zero values (`""`, `0`, `[]`,
//! `{}`) clear a field, then checks, defaults, immutability, credentials
//! given again for a moved endpoint, and required fields, in that order.
//! [`render`] is the masked read form.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::framework::{Check, FieldSpec, FieldType, Fields, MASK, Preset};

/// Workload identity federation (Vault 2.0+), shared by the cloud types.
pub const IDENTITY_TOKEN_AUDIENCE: FieldSpec = FieldSpec::string("identity_token_audience")
    .sensitive()
    .describe(
        "Audience of the identity tokens presented to the provider (workload identity federation).",
    );
pub const IDENTITY_TOKEN_KEY: FieldSpec = FieldSpec::string("identity_token_key")
    .sensitive()
    .describe("Name of the key that signs the identity tokens; the default key when unset.");
pub const IDENTITY_TOKEN_TTL: FieldSpec = FieldSpec::new("identity_token_ttl", FieldType::Duration)
    .default(Preset::Int(3600))
    .check(Check::Positive)
    .describe("Lifetime of the identity tokens (Go duration or seconds).");

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
}

/// The request's value of `spec`, as stored (lists without empty items).
fn requested(spec: &FieldSpec, fields: &Fields) -> Option<Value> {
    let name = spec.name;
    match spec.ty {
        FieldType::Bool => fields.bool(name).map(Value::from),
        FieldType::Int | FieldType::Duration => fields.int(name).map(Value::from),
        FieldType::Float => fields.float(name).map(Value::from),
        FieldType::String => fields.string(name).map(Value::from),
        FieldType::CommaStringSlice | FieldType::StringSlice => fields.strings(name).map(|items| {
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
        spec.validate(&value)?;
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
        check_credentials_follow(specs, fields, old, &details)?;
    }
    match specs
        .iter()
        .find(|s| s.required && !details.contains_key(s.name))
    {
        Some(spec) => Err(bad(format!("missing required field {}", spec.name))),
        None => Ok(details),
    }
}

/// Stored credentials are never sent to a moved endpoint: when an endpoint
/// field changes (cleared included), every credential field the record keeps
/// must be given again, in clear, by the same request. A masked echo or an
/// absent field is not a credential given.
fn check_credentials_follow(
    specs: &[FieldSpec],
    fields: &Fields,
    old: &Map<String, Value>,
    new: &Map<String, Value>,
) -> ApiResult<()> {
    let moved: Vec<&str> = specs
        .iter()
        .filter(|s| s.endpoint && old.get(s.name) != new.get(s.name))
        .map(|s| s.name)
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let given =
        |spec: &FieldSpec| requested(spec, fields).is_some_and(|v| !is_masked(&v) && !is_zero(&v));
    let stale: Vec<&str> = specs
        .iter()
        .filter(|s| s.credential && new.contains_key(s.name) && !given(s))
        .map(|s| s.name)
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    Err(bad(format!(
        "changing {} needs the credentials again: re-enter {} in the same request (stored \
         credentials are not sent to a new endpoint, and masked values do not count)",
        moved.join(", "),
        stale.join(", ")
    )))
}

/// Under strict networking, no endpoint field may send the credentials over
/// plain `http`: neither a URL-valued field nor a URL inside a JSON-valued
/// one (a GCP key file's `token_uri`). Values are never shown: the key file is
/// a credential.
pub fn check_https_endpoints(
    specs: &[FieldSpec],
    details: &Map<String, Value>,
    strict_networking: bool,
) -> ApiResult<()> {
    if !strict_networking {
        return Ok(());
    }
    let plain = |s: &str| {
        s.get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
    };
    for spec in specs.iter().filter(|s| s.endpoint) {
        let Some(text) = details.get(spec.name).and_then(Value::as_str) else {
            continue;
        };
        let found = if plain(text) {
            Some(spec.name.to_string())
        } else if let Ok(Value::Object(inner)) = serde_json::from_str::<Value>(text) {
            inner
                .iter()
                .find(|(_, v)| v.as_str().is_some_and(plain))
                .map(|(k, _)| format!("{} ({k})", spec.name))
        } else {
            None
        };
        if let Some(field) = found {
            return Err(bad(format!(
                "{field}: a plain http:// URL would carry the credentials in clear; use https, \
                 or set disable_strict_networking"
            )));
        }
    }
    Ok(())
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
