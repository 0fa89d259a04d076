//! The one field vocabulary of the engine: every endpoint's body and query
//! fields, every path parameter and every destination type's
//! `connection_details` are [`FieldSpec`]s. A spec says how a value is coerced
//! ([`FieldType`]), what it means (`description`, one line, as Vault's
//! `FieldSchema.Description`), and the rules the stored form follows: default,
//! required, sensitive (masked on reads, never shown in errors), immutable,
//! endpoint and credential (a moved endpoint needs the credentials again), a
//! value [`Check`], and where reads show it.
//!
//! Coercion of request data against specs is [`super::parse`]; applying specs
//! to a stored record (defaults, immutability, required) is the destination
//! schema's `merge`.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// How request values are coerced (Vault's `framework` field types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Bool,
    Int,
    /// A floating-point number, from a number or its text.
    Float,
    String,
    /// Whole seconds, from a number or a Go duration string.
    Duration,
    /// A list of strings, from an array or one comma-separated string.
    CommaStringSlice,
    /// A list of strings, from an array or one string (one element, commas
    /// and all).
    StringSlice,
    /// A list of integers, from an array or one comma-separated string.
    CommaIntSlice,
    /// A map of strings, from an object or an array of `k=v` strings.
    KvPairs,
    /// A JSON object, as sent.
    Map,
}

impl FieldType {
    /// The value Vault's parser gives a field sent as `null`.
    pub fn zero(self) -> Value {
        match self {
            FieldType::Bool => Value::Bool(false),
            FieldType::Int | FieldType::Duration => Value::from(0),
            FieldType::Float => Value::from(0.0),
            FieldType::String => Value::from(""),
            FieldType::CommaStringSlice | FieldType::StringSlice | FieldType::CommaIntSlice => {
                Value::Array(Vec::new())
            }
            FieldType::KvPairs | FieldType::Map => Value::Object(serde_json::Map::new()),
        }
    }
}

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
    /// An absolute `http` or `https` URL without credentials.
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

/// One field: of a request (body or query), of a path (a `{name}` in its
/// pattern), or of a destination type's `connection_details`.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    /// One line: what the field means (API help and OpenAPI descriptions).
    pub description: &'static str,
    pub default: Preset,
    /// The request must give it (handlers say so with their own messages), or,
    /// for `connection_details`, the stored record must have it after merging.
    pub required: bool,
    /// Read back as [`MASK`], never shown in an error.
    pub sensitive: bool,
    /// Cannot change once the object exists.
    pub immutable: bool,
    /// Decides where the credentials are sent (a URL, a cloud, a region): a
    /// change must come with every stored [`FieldSpec::credential`] field
    /// given again, and a URL in it must be `https` unless the destination
    /// disables strict networking.
    pub endpoint: bool,
    /// Authenticates to the provider, or names what does (a GitHub App):
    /// stored credentials are never sent to a changed endpoint unless the
    /// same request gives them again, in clear.
    pub credential: bool,
    pub check: Check,
    /// Reads show the field inside this object of `connection_details`.
    pub read_under: Option<&'static str>,
    /// A `null` entry of this map field removes that key (JSON merge patch):
    /// coercion leaves it out of the value and [`super::Fields::removed`]
    /// lists it. Other map fields refuse `null` entries.
    pub null_removes_entries: bool,
}

impl FieldSpec {
    pub const fn new(name: &'static str, ty: FieldType) -> Self {
        FieldSpec {
            name,
            ty,
            description: "",
            default: Preset::None,
            required: false,
            sensitive: false,
            immutable: false,
            endpoint: false,
            credential: false,
            check: Check::None,
            read_under: None,
            null_removes_entries: false,
        }
    }

    pub const fn string(name: &'static str) -> Self {
        Self::new(name, FieldType::String)
    }

    pub const fn describe(self, description: &'static str) -> Self {
        FieldSpec {
            description,
            ..self
        }
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

    pub const fn endpoint(self) -> Self {
        FieldSpec {
            endpoint: true,
            ..self
        }
    }

    pub const fn credential(self) -> Self {
        FieldSpec {
            credential: true,
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

    pub const fn null_removes_entries(self) -> Self {
        FieldSpec {
            null_removes_entries: true,
            ..self
        }
    }

    /// Runs the field's [`Check`] on a coerced value; messages name the field
    /// and never show a sensitive value.
    pub fn validate(&self, value: &Value) -> ApiResult<()> {
        let name = self.name;
        let shown = |s: &str| {
            if self.sensitive {
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
        match self.check {
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
}

fn bad(msg: String) -> ApiError {
    ApiError::BadRequest(msg)
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
        let err = spec.validate(&Value::from("hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("token"));
    }
}
