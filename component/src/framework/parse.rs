//! Coercion of request data against field specs, the lenient way Vault's
//! field parser does it (booleans and numbers from strings, comma-separated
//! lists, `k=v` pairs, Go durations). Unknown fields are reported as a
//! warning instead of failing; an explicit `null` leaves the field unset but
//! is remembered ([`Fields::is_null`]).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::field::{FieldSpec, FieldType};
use crate::error::ApiError;
use crate::time;

/// The coerced values of the fields present in a request.
#[derive(Debug, Default)]
pub struct Fields {
    values: BTreeMap<&'static str, Value>,
    /// Declared fields the request set to `null`.
    nulls: Vec<&'static str>,
    /// Keys set to `null` inside map fields that take them as removals.
    removed: BTreeMap<&'static str, Vec<String>>,
    /// Names in the request that the schema does not declare.
    pub unknown: Vec<String>,
}

/// Coerces `data` against `schema`.
pub fn parse(schema: &[FieldSpec], data: &Map<String, Value>) -> Result<Fields, ApiError> {
    parse_tables(&[schema], data, &[])
}

/// Coerces `data` against the fields of several tables (looked up in order).
/// Names in `ignored` are neither coerced nor reported as unknown: the
/// parameters of the request's path, whose value comes from the path, as in
/// Vault (the URL wins over a body field of the same name).
pub fn parse_tables(
    tables: &[&[FieldSpec]],
    data: &Map<String, Value>,
    ignored: &[&str],
) -> Result<Fields, ApiError> {
    let mut fields = Fields::default();
    for (name, raw) in data {
        let Some(field) = find(tables, name) else {
            if !ignored.contains(&name.as_str()) {
                fields.unknown.push(name.clone());
            }
            continue;
        };
        if raw.is_null() {
            fields.nulls.push(field.name);
            continue;
        }
        let value = match (raw, field.null_removes_entries) {
            (Value::Object(map), true) if map.values().any(Value::is_null) => {
                let (nulls, kept): (Map<_, _>, Map<_, _>) =
                    map.clone().into_iter().partition(|(_, v)| v.is_null());
                fields
                    .removed
                    .insert(field.name, nulls.into_iter().map(|(k, _)| k).collect());
                coerce(field, &Value::Object(kept))?
            }
            _ => coerce(field, raw)?,
        };
        fields.values.insert(field.name, value);
    }
    Ok(fields)
}

/// The spec of `name` in the first table that declares it.
pub fn find<'t>(tables: &[&'t [FieldSpec]], name: &str) -> Option<&'t FieldSpec> {
    tables
        .iter()
        .find_map(|table| table.iter().find(|f| f.name == name))
}

fn type_error(field: &FieldSpec, raw: &Value, expected: &str) -> ApiError {
    let shown = match raw {
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
        other => other.to_string(),
    };
    ApiError::BadRequest(format!(
        "error converting input {shown} for field \"{}\": expected {expected}",
        field.name
    ))
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// An integer the way Vault's field parser reads one: Go's `mapstructure`
/// weak decoding into an `int` of JSON decoded with `UseNumber`. A JSON number
/// only when written as an integer (`7`; `7.0` and `7e0` are refused); a
/// string as Go's `strconv.ParseInt(s, 0, 64)` reads it ([`go_parse_int`]),
/// `""` being 0; `true` 1 and `false` 0; `null` 0.
pub fn weak_int(raw: &Value) -> Option<i64> {
    match raw {
        Value::Null => Some(0),
        Value::Bool(b) => Some(i64::from(*b)),
        Value::Number(n) => n.as_i64(),
        Value::String(s) if s.is_empty() => Some(0),
        Value::String(s) => go_parse_int(s),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`: an optional sign, then decimal digits,
/// or after a prefix hexadecimal (`0x`), octal (`0o`, or a leading `0`) or
/// binary (`0b`) ones, with single `_` between digits; no spaces; within the
/// range of an `i64`.
fn go_parse_int(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(unsigned) => 0i64.checked_sub_unsigned(go_parse_uint(unsigned)?),
        None => i64::try_from(go_parse_uint(s.strip_prefix('+').unwrap_or(s))?).ok(),
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)` (see [`go_parse_int`]).
fn go_parse_uint(s: &str) -> Option<u64> {
    let (base, digits): (u32, &[u8]) = match s.as_bytes() {
        [] => return None,
        [b'0', prefix, rest @ ..] if !rest.is_empty() && matches!(prefix, b'x' | b'X') => {
            (16, rest)
        }
        [b'0', prefix, rest @ ..] if !rest.is_empty() && matches!(prefix, b'o' | b'O') => (8, rest),
        [b'0', prefix, rest @ ..] if !rest.is_empty() && matches!(prefix, b'b' | b'B') => (2, rest),
        [b'0', rest @ ..] => (8, rest),
        all => (10, all),
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        if c == b'_' {
            underscores = true;
            continue;
        }
        let digit = char::from(c).to_digit(base)?;
        n = n
            .checked_mul(u64::from(base))?
            .checked_add(u64::from(digit))?;
    }
    (!underscores || underscores_separate_digits(s)).then_some(n)
}

/// Go's `underscoreOK`: every `_` stands between two digits (a base prefix
/// counts as one).
fn underscores_separate_digits(s: &str) -> bool {
    let bytes = s.as_bytes();
    let (hex, start) = match bytes {
        [b'0', p, ..] if matches!(p.to_ascii_lowercase(), b'b' | b'o' | b'x') => {
            (p.eq_ignore_ascii_case(&b'x'), 2)
        }
        _ => (false, 0),
    };
    // What came before: a digit (or the prefix), an underscore, the start, or something else.
    let mut last = if start > 0 { b'0' } else { b'^' };
    for &c in bytes.get(start..).unwrap_or_default() {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            last = b'0';
        } else if c == b'_' {
            if last != b'0' {
                return false;
            }
            last = b'_';
        } else if last == b'_' {
            return false;
        } else {
            last = b'!';
        }
    }
    last != b'_'
}

/// A whole number of a list or a duration: a JSON number written as an
/// integer, or a string of decimal digits.
fn coerce_int(raw: &Value) -> Option<i64> {
    match raw {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The items of a JSON array of strings (numbers are taken as their text),
/// trimmed.
fn string_items(field: &FieldSpec, raw: &Value) -> Result<Value, ApiError> {
    let items = raw.as_array().map(Vec::as_slice).unwrap_or_default();
    items
        .iter()
        .map(|item| match item {
            Value::String(s) => Ok(Value::String(s.trim().to_string())),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            _ => Err(type_error(field, raw, "a list of strings")),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn coerce(field: &FieldSpec, raw: &Value) -> Result<Value, ApiError> {
    match field.ty {
        FieldType::Bool => match raw {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::String(s) => parse_bool(s)
                .map(Value::Bool)
                .ok_or_else(|| type_error(field, raw, "a boolean")),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(Value::Bool(n.as_i64() == Some(1)))
            }
            _ => Err(type_error(field, raw, "a boolean")),
        },
        FieldType::Int => weak_int(raw)
            .map(Value::from)
            .ok_or_else(|| type_error(field, raw, "an integer")),
        FieldType::Float => match raw {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|f| f.is_finite())
        .map(Value::from)
        .ok_or_else(|| type_error(field, raw, "a number")),
        FieldType::String => match raw {
            Value::String(s) => Ok(Value::String(s.clone())),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(type_error(field, raw, "a string")),
        },
        FieldType::Duration => match raw {
            Value::Number(_) => coerce_int(raw)
                .map(Value::from)
                .ok_or_else(|| type_error(field, raw, "a duration")),
            Value::String(s) => time::parse_duration(s)
                .map(Value::from)
                .map_err(|e| ApiError::BadRequest(format!("field \"{}\": {e}", field.name))),
            _ => Err(type_error(
                field,
                raw,
                "a duration like \"30m\" or a number of seconds",
            )),
        },
        FieldType::CommaStringSlice => match raw {
            Value::String(s) => Ok(Value::Array(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
            )),
            Value::Array(_) => string_items(field, raw),
            _ => Err(type_error(field, raw, "a list of strings")),
        },
        FieldType::StringSlice => match raw {
            Value::String(s) => Ok(Value::Array(vec![Value::String(s.clone())])),
            Value::Array(_) => string_items(field, raw),
            _ => Err(type_error(field, raw, "a list of strings")),
        },
        FieldType::CommaIntSlice => {
            let items: Vec<Value> = match raw {
                Value::String(s) => s
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| Value::String(p.to_string()))
                    .collect(),
                Value::Array(items) => items.clone(),
                Value::Number(_) => vec![raw.clone()],
                _ => return Err(type_error(field, raw, "a list of integers")),
            };
            items
                .iter()
                .map(|item| {
                    coerce_int(item)
                        .map(Value::from)
                        .ok_or_else(|| type_error(field, raw, "a list of integers"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        FieldType::KvPairs => match raw {
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), Value::String(s.clone()))),
                    Value::Number(_) | Value::Bool(_) => {
                        Ok((k.clone(), Value::String(v.to_string())))
                    }
                    _ => Err(type_error(field, raw, "a map of strings")),
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .and_then(|s| s.split_once('='))
                        .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
                        .ok_or_else(|| {
                            type_error(field, raw, "a map of strings or a list of \"key=value\"")
                        })
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            Value::String(s) => s
                .split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
                        .ok_or_else(|| {
                            type_error(field, raw, "a map of strings or a list of \"key=value\"")
                        })
                })
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object),
            _ => Err(type_error(field, raw, "a map of strings")),
        },
        FieldType::Map => match raw {
            Value::Object(_) => Ok(raw.clone()),
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => Ok(v),
                _ => Err(type_error(field, raw, "a map")),
            },
            _ => Err(type_error(field, raw, "a map")),
        },
    }
}

impl Fields {
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Whether the request set the declared field `name` to `null` (Vault's
    /// parser reads that as the field's zero value).
    pub fn is_null(&self, name: &str) -> bool {
        self.nulls.contains(&name)
    }

    /// The fields as Vault's parser reads them: every declared field the
    /// request set to `null` holds its type's zero value (`false`, `0`, `""`,
    /// `[]`, `{}`), which clears it where an empty value does.
    pub fn nulls_as_zero(&self, tables: &[&[FieldSpec]]) -> Fields {
        let mut values = self.values.clone();
        for name in &self.nulls {
            if let Some(spec) = find(tables, name) {
                values.insert(spec.name, spec.ty.zero());
            }
        }
        Fields {
            values,
            nulls: Vec::new(),
            removed: self.removed.clone(),
            unknown: self.unknown.clone(),
        }
    }

    /// The keys a request set to `null` inside the map field `name` (one that
    /// takes them as removals).
    pub fn removed(&self, name: &str) -> &[String] {
        self.removed.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.values.get(name).and_then(Value::as_bool)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.values.get(name).and_then(Value::as_i64)
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        self.values.get(name).and_then(Value::as_f64)
    }

    /// Durations are stored as whole seconds.
    pub fn duration(&self, name: &str) -> Option<i64> {
        self.int(name)
    }

    pub fn string(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(Value::as_str)
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        self.values
            .get(name)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.values
            .get(name)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_i64).collect())
    }

    /// `KvPairs` as a string map.
    pub fn string_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.values.get(name).and_then(Value::as_object).map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
    }

    pub fn map(&self, name: &str) -> Option<&Map<String, Value>> {
        self.values.get(name).and_then(Value::as_object)
    }

    /// Vault's warning for fields the endpoint does not declare, if any.
    pub fn unknown_warning(&self) -> Option<String> {
        if self.unknown.is_empty() {
            return None;
        }
        Some(format!(
            "Endpoint ignored these unrecognized parameters: [{}]",
            self.unknown.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &[FieldSpec] = &[
        FieldSpec::new("flag", FieldType::Bool),
        FieldSpec::new("n", FieldType::Int),
        FieldSpec::new("ttl", FieldType::Duration),
        FieldSpec::new("names", FieldType::CommaStringSlice),
        FieldSpec::new("ports", FieldType::CommaIntSlice),
        FieldSpec::new("tags", FieldType::KvPairs),
        FieldSpec::new("labels", FieldType::KvPairs).null_removes_entries(),
    ];

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn coerces_like_vault() {
        let f = parse(
            SCHEMA,
            &data(
                json!({"flag": "true", "n": "5", "ttl": "1h", "names": "a, b", "ports": "80,443",
                         "tags": ["k=v"], "extra": 1}),
            ),
        )
        .unwrap();
        assert_eq!(f.bool("flag"), Some(true));
        assert_eq!(f.int("n"), Some(5));
        assert_eq!(f.duration("ttl"), Some(3600));
        assert_eq!(f.strings("names").unwrap(), vec!["a", "b"]);
        assert_eq!(f.ints("ports").unwrap(), vec![80, 443]);
        assert_eq!(
            f.string_map("tags").unwrap().get("k").map(String::as_str),
            Some("v")
        );
        assert_eq!(
            f.unknown_warning().unwrap(),
            "Endpoint ignored these unrecognized parameters: [extra]"
        );
    }

    #[test]
    fn integers_as_vault_reads_them() {
        for (raw, n) in [
            (json!(7), Some(7)),
            (json!(-7), Some(-7)),
            (json!(7.0), None),
            (json!(7.5), None),
            (json!(1e2), None),
            (json!(u64::MAX), None),
            (json!(null), Some(0)),
            (json!(true), Some(1)),
            (json!(false), Some(0)),
            (json!(""), Some(0)),
            (json!("12"), Some(12)),
            (json!("+12"), Some(12)),
            (json!("-12"), Some(-12)),
            (json!(" 12"), None),
            (json!("12 "), None),
            (json!("1.0"), None),
            (json!("1e2"), None),
            (json!("0x1F"), Some(31)),
            (json!("0X1f"), Some(31)),
            (json!("0o17"), Some(15)),
            (json!("017"), Some(15)),
            (json!("0b101"), Some(5)),
            (json!("0"), Some(0)),
            (json!("00"), Some(0)),
            (json!("08"), None),
            (json!("0x"), None),
            (json!("1_000"), Some(1000)),
            (json!("0x_1f"), Some(31)),
            (json!("_1"), None),
            (json!("1_"), None),
            (json!("1__0"), None),
            (json!("-"), None),
            (json!("+-1"), None),
            (json!("9223372036854775807"), Some(i64::MAX)),
            (json!("9223372036854775808"), None),
            (json!("-9223372036854775808"), Some(i64::MIN)),
            (json!("-9223372036854775809"), None),
            (json!([1]), None),
            (json!({}), None),
        ] {
            assert_eq!(weak_int(&raw), n, "{raw}");
        }
        // Int fields read the same way; lists and durations take whole numbers only.
        let f = parse(SCHEMA, &data(json!({"n": true, "ttl": 60, "ports": [80]}))).unwrap();
        assert_eq!(f.int("n"), Some(1));
        for bad in [
            json!({"n": 7.0}),
            json!({"ttl": 1.5}),
            json!({"ports": [80.0]}),
        ] {
            assert_eq!(parse(SCHEMA, &data(bad)).unwrap_err().status(), 400);
        }
    }

    #[test]
    fn rejects_wrong_types() {
        for bad in [
            json!({"flag": "maybe"}),
            json!({"n": "abc"}),
            json!({"n": [1]}),
            json!({"ttl": "soon"}),
            json!({"ports": "a,b"}),
            json!({"tags": ["novalue"]}),
        ] {
            let err = parse(SCHEMA, &data(bad)).unwrap_err();
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn nulls_are_remembered_and_removals_listed() {
        let request = data(json!({"n": null, "labels": {"a": null, "b": "1"}, "path": [1]}));
        let f = parse_tables(&[SCHEMA], &request, &["path"]).unwrap();
        assert!(!f.has("n") && f.is_null("n") && !f.is_null("flag"));
        assert_eq!(f.removed("labels"), ["a"]);
        assert_eq!(f.string_map("labels").unwrap().len(), 1);
        assert!(f.removed("tags").is_empty());
        // Path parameters are neither coerced nor unknown.
        assert!(f.unknown_warning().is_none());
        // Other maps refuse null entries.
        let err = parse(SCHEMA, &data(json!({"tags": {"a": null}}))).unwrap_err();
        assert_eq!(err.status(), 400);
    }
}
